//! `[webrtc] listen` (and `tls_listen`, the same over rustls): HTTP for the demo page (`/`,
//! `/srgate.js`) and the browser protocol's WebSocket at `/ws` (RFC 6455 via tungstenite
//! over non-blocking mio streams). The upgrade
//! is answered here (with the `allowed_origins` check); frames go to the sans-IO
//! [`Hub`]. Every connection is bounded: request head 8 KiB and 10 s, frames 64 KiB
//! (larger ones get `TOO_LARGE` and are dropped, far larger ones close the socket), a send
//! queue of 1 MiB, and a WebSocket that says nothing for 90 s (our pings every 30 s
//! included) is closed.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::signal::hub::{Hub, SessionId};
use crate::signal::protocol::MAX_FRAME;

const MAX_HEAD: usize = 8192;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const WS_PING_EVERY: Duration = Duration::from_secs(30);
const WS_IDLE: Duration = Duration::from_secs(90);
/// tungstenite refuses frames above this; between MAX_FRAME and it we answer TOO_LARGE.
const WS_HARD_LIMIT: usize = 4 * MAX_FRAME;
pub const MAX_WEB_CONNS: usize = 4096;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const SRGATE_JS: &str = include_str!("../../web/srgate.js");

/// A client's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    pub fn tls(tcp: TcpStream, config: &Arc<ServerConfig>) -> Option<Stream> {
        let conn = ServerConnection::new(config.clone()).ok()?;
        Some(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }

    fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut s.sock,
        }
    }

    /// Whether TLS records are waiting for the socket to take them.
    fn tls_wants_write(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.conn.wants_write())
    }

    /// Pushes pending TLS records (handshake or data) out; Err when broken.
    fn push_tls(&mut self) -> io::Result<()> {
        if let Stream::Tls(s) = self {
            while s.conn.wants_write() {
                match s.conn.write_tls(&mut s.sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => {
                // Take in what the socket has, then hand out plaintext; answer the
                // handshake as it goes.
                loop {
                    match s.conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                        Err(_) => {}
                    }
                    match s.conn.read_tls(&mut s.sock) {
                        Ok(0) => return Ok(0),
                        Ok(_) => {
                            s.conn
                                .process_new_packets()
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                            while s.conn.wants_write() {
                                match s.conn.write_tls(&mut s.sock) {
                                    Ok(_) => {}
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => {
                let n = s.conn.writer().write(buf)?;
                let _ = self.push_tls();
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(_) => {
                self.push_tls()?;
                if self.tls_wants_write() {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

pub enum WebConn {
    Http {
        stream: Stream,
        peer: SocketAddr,
        buf: Vec<u8>,
        out: Vec<u8>,
        since: Instant,
    },
    Ws {
        ws: Box<WebSocket<Stream>>,
        peer: SocketAddr,
        session: SessionId,
        last_heard: Instant,
        last_ping: Instant,
        /// The socket did not take everything: wait for writability.
        want_write: bool,
        /// The read budget ran out with data left: service again soon.
        more: bool,
    },
    /// Passing from one state to the other, or done.
    Closed,
}

/// What happened to a connection after it was serviced.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Keep,
    Close,
}

impl WebConn {
    pub fn new(stream: Stream, peer: SocketAddr, now: Instant) -> Self {
        WebConn::Http {
            stream,
            peer,
            buf: Vec::new(),
            out: Vec::new(),
            since: now,
        }
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        match self {
            WebConn::Http { stream, .. } => stream.tcp(),
            WebConn::Ws { ws, .. } => ws.get_mut().tcp(),
            WebConn::Closed => unreachable!("a closed connection is removed before any I/O"),
        }
    }

    pub fn session(&self) -> Option<SessionId> {
        match self {
            WebConn::Ws { session, .. } => Some(*session),
            WebConn::Http { .. } | WebConn::Closed => None,
        }
    }

    /// When this connection needs attention without any I/O (timeouts, pings).
    pub fn deadline(&self) -> Instant {
        match self {
            WebConn::Http { since, .. } => *since + HEAD_TIMEOUT,
            WebConn::Ws {
                last_heard,
                last_ping,
                ..
            } => (*last_ping + WS_PING_EVERY).min(*last_heard + WS_IDLE),
            WebConn::Closed => Instant::now(),
        }
    }

    /// Readable always; writable only while output waits (asking for writability of a
    /// socket that is writable wakes an edge-triggered poll at once, every time).
    pub fn interest(&self) -> Interest {
        let wants_write = match self {
            WebConn::Http { out, stream, .. } => !out.is_empty() || stream.tls_wants_write(),
            WebConn::Ws { want_write, ws, .. } => *want_write || ws.get_ref().tls_wants_write(),
            WebConn::Closed => false,
        };
        if wants_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Services the connection: reads what is there, answers HTTP, upgrades, passes
    /// WebSocket text frames to `hub`, pings and times out.
    #[allow(clippy::too_many_arguments)]
    pub fn service(
        &mut self,
        now: Instant,
        unix_now: u64,
        hub: &mut Hub,
        next_session: &mut SessionId,
        allowed_origins: &[String],
        registry: &Registry,
        token: Token,
    ) -> Next {
        let next = match self {
            WebConn::Http { .. } => self.service_http(now, hub, next_session, allowed_origins),
            WebConn::Ws { .. } => self.service_ws(now, unix_now, hub),
            WebConn::Closed => Next::Close,
        };
        if next == Next::Keep {
            let interest = self.interest();
            let _ = registry.reregister(self.stream_mut(), token, interest);
        }
        next
    }

    fn service_http(
        &mut self,
        now: Instant,
        hub: &mut Hub,
        next_session: &mut SessionId,
        allowed: &[String],
    ) -> Next {
        let WebConn::Http {
            stream,
            peer,
            buf,
            out,
            since,
        } = self
        else {
            return Next::Close;
        };
        if !out.is_empty() {
            return flush_plain(stream, out);
        }
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > MAX_HEAD {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if now >= *since + HEAD_TIMEOUT {
            return Next::Close;
        }
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Next::Keep,
            Ok(httparse::Status::Partial) => {
                *out = reply(
                    431,
                    "Request Header Fields Too Large",
                    "text/plain",
                    b"request too large\n",
                );
                return flush_plain(stream, out);
            }
            Err(_) => {
                *out = reply(400, "Bad Request", "text/plain", b"bad request\n");
                return flush_plain(stream, out);
            }
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
        };
        let path = req.path.unwrap_or("/").split('?').next().unwrap_or("/");
        if req.method != Some("GET") {
            *out = reply(
                405,
                "Method Not Allowed",
                "text/plain",
                b"method not allowed\n",
            );
            return flush_plain(stream, out);
        }
        match path {
            "/" | "/index.html" => {
                *out = reply(200, "OK", "text/html; charset=utf-8", INDEX_HTML.as_bytes())
            }
            "/srgate.js" => {
                *out = reply(
                    200,
                    "OK",
                    "text/javascript; charset=utf-8",
                    SRGATE_JS.as_bytes(),
                )
            }
            "/ws" => {
                let upgrade =
                    header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
                let key = header("Sec-WebSocket-Key");
                let version_ok = header("Sec-WebSocket-Version").is_some_and(|v| v.trim() == "13");
                let (true, Some(key), true) = (upgrade, key, version_ok) else {
                    *out = reply(
                        400,
                        "Bad Request",
                        "text/plain",
                        b"expected a WebSocket upgrade (version 13)\n",
                    );
                    return flush_plain(stream, out);
                };
                if !origin_allowed(header("Origin"), allowed) {
                    log::info!(
                        "WebSocket from {peer} refused: Origin {:?} not allowed",
                        header("Origin")
                    );
                    *out = reply(403, "Forbidden", "text/plain", b"origin not allowed\n");
                    return flush_plain(stream, out);
                }
                let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                // The 101 is tiny: a fresh socket takes it whole, and if not, the peer is
                // broken and loses the connection.
                if stream.write_all(response.as_bytes()).is_err() || stream.push_tls().is_err() {
                    return Next::Close;
                }
                let rest = buf[head_len..].to_vec();
                let config = WebSocketConfig::default()
                    .max_message_size(Some(WS_HARD_LIMIT))
                    .max_frame_size(Some(WS_HARD_LIMIT))
                    .max_write_buffer_size(1 << 20);
                let peer = *peer;
                let WebConn::Http { stream, .. } = std::mem::replace(self, WebConn::Closed) else {
                    return Next::Close;
                };
                let ws = WebSocket::from_partially_read(stream, rest, Role::Server, Some(config));
                *next_session += 1;
                let session = *next_session;
                hub.open(session);
                log::debug!("WebSocket session {session} from {peer}");
                *self = WebConn::Ws {
                    ws: Box::new(ws),
                    peer,
                    session,
                    last_heard: now,
                    last_ping: now,
                    want_write: false,
                    more: false,
                };
                return Next::Keep;
            }
            _ => *out = reply(404, "Not Found", "text/plain", b"not found\n"),
        }
        let WebConn::Http { stream, out, .. } = self else {
            return Next::Close;
        };
        flush_plain(stream, out)
    }

    fn service_ws(&mut self, now: Instant, unix_now: u64, hub: &mut Hub) -> Next {
        let WebConn::Ws {
            ws,
            peer,
            session,
            last_heard,
            last_ping,
            want_write,
            more,
        } = self
        else {
            return Next::Close;
        };
        *more = true;
        for _ in 0..256 {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    *last_heard = now;
                    if text.len() > MAX_FRAME {
                        hub.frame_too_large(*session);
                    } else {
                        hub.handle_text(now, unix_now, *session, text.as_str());
                    }
                }
                Ok(Message::Binary(_)) => {
                    // The protocol is text only: a binary frame is answered as bad JSON.
                    *last_heard = now;
                    hub.handle_text(now, unix_now, *session, "\u{1}binary frame");
                }
                Ok(Message::Close(_)) => {
                    // tungstenite queued the answering close frame: send it before we go.
                    let _ = ws.flush();
                    return Next::Close;
                }
                Ok(_) => *last_heard = now, // ping, pong, frame
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    *more = false;
                    break;
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    log::info!("WebSocket {peer}: {e}; closing");
                    return Next::Close;
                }
                Err(_) => return Next::Close,
            }
        }
        if now >= *last_heard + WS_IDLE {
            log::info!("WebSocket {peer} silent for {WS_IDLE:?}; closing");
            return Next::Close;
        }
        if now >= *last_ping + WS_PING_EVERY {
            *last_ping = now;
            let _ = ws.write(Message::Ping(Vec::new().into()));
        }
        match ws.flush() {
            Ok(()) => {
                *want_write = false;
                Next::Keep
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                *want_write = true;
                Next::Keep
            }
            Err(_) => Next::Close,
        }
    }

    /// Queues a text frame (from the hub). False: the connection is broken or its queue is
    /// full (a client that does not read); the caller closes it.
    pub fn send_text(&mut self, text: String) -> bool {
        let WebConn::Ws { ws, want_write, .. } = self else {
            return false;
        };
        match ws.write(Message::Text(text.into())) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        match ws.flush() {
            Ok(()) => true,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                *want_write = true;
                true
            }
            Err(_) => false,
        }
    }

    /// Sends a close frame (best effort).
    pub fn close(&mut self) {
        if let WebConn::Ws { ws, .. } = self {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }
}

fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true; // DESIGN §5: an empty list admits any Origin, and a missing one
    }
    origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o.trim())))
}

fn flush_plain(stream: &mut Stream, out: &mut Vec<u8>) -> Next {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(0) => return Next::Close,
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    if stream.tls_wants_write() {
        return Next::Keep; // the last TLS records are still on their way
    }
    Next::Close // one answer per connection
}

fn reply(code: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The rustls server configuration of `[webrtc] tls_listen` from `[tls] cert` and `key`
/// (PEM: the certificate chain, and a PKCS#8, PKCS#1 or SEC1 private key).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("[tls] cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("[tls] cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "[tls] cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("[tls] key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("[tls] cert/key: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(origin_allowed(None, &[]));
        assert!(origin_allowed(Some("https://evil.example"), &[]));
        let allowed = vec!["https://app.example".to_string()];
        assert!(origin_allowed(Some("https://app.example"), &allowed));
        assert!(!origin_allowed(Some("https://evil.example"), &allowed));
        assert!(!origin_allowed(None, &allowed));
    }
}
