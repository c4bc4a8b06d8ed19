//! `[webrtc] listen`: HTTP for the demo page (`/`, `/srgate.js`) and the browser protocol's
//! WebSocket at `/ws` (RFC 6455 via tungstenite over non-blocking mio streams). The upgrade
//! is answered here (with the `allowed_origins` check); frames go to the sans-IO
//! [`Hub`]. Every connection is bounded: request head 8 KiB and 10 s, frames 64 KiB
//! (larger ones get `TOO_LARGE` and are dropped, far larger ones close the socket), a send
//! queue of 1 MiB, and a WebSocket that says nothing for 90 s (our pings every 30 s
//! included) is closed.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
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

pub enum WebConn {
    Http {
        stream: TcpStream,
        peer: SocketAddr,
        buf: Vec<u8>,
        out: Vec<u8>,
        since: Instant,
    },
    Ws {
        ws: Box<WebSocket<TcpStream>>,
        peer: SocketAddr,
        session: SessionId,
        last_heard: Instant,
        last_ping: Instant,
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
    pub fn new(stream: TcpStream, peer: SocketAddr, now: Instant) -> Self {
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
            WebConn::Http { stream, .. } => stream,
            WebConn::Ws { ws, .. } => ws.get_mut(),
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

    pub fn interest(&self) -> Interest {
        let wants_write = match self {
            WebConn::Http { out, .. } => !out.is_empty(),
            WebConn::Ws { .. } => true, // tungstenite keeps its own queue; writable events are cheap
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
                if stream.write_all(response.as_bytes()).is_err() {
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
        } = self
        else {
            return Next::Close;
        };
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
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
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
            Ok(()) => Next::Keep,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Next::Keep,
            Err(_) => Next::Close,
        }
    }

    /// Queues a text frame (from the hub). False: the connection is broken or its queue is
    /// full (a client that does not read); the caller closes it.
    pub fn send_text(&mut self, text: String) -> bool {
        let WebConn::Ws { ws, .. } = self else {
            return false;
        };
        match ws.write(Message::Text(text.into())) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        !matches!(ws.flush(), Err(e) if !matches!(&e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock))
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

fn flush_plain(stream: &mut TcpStream, out: &mut Vec<u8>) -> Next {
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
