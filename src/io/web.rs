//! `[webrtc] listen` (and `tls_listen`, the same over rustls): HTTP for the demo page (`/`,
//! `/srgate.js`) and the browser protocol's WebSocket at `/ws` (RFC 6455 via tungstenite
//! over non-blocking mio streams). The upgrade
//! is answered here (with the Origin check of [`WebPolicy`]); frames go to the sans-IO
//! [`Hub`]. Every connection is bounded: request head 8 KiB and 10 s, frames 64 KiB
//! (larger ones get `TOO_LARGE` and are dropped, far larger ones close the socket), a send
//! queue of 1 MiB, buffers that start at 4 KiB and grow only for what a peer really sends,
//! a login within 5 s (the hub's deadline), and a WebSocket that says nothing for 90 s (our
//! pings every 30 s included) is closed. How many connections one address may hold is the
//! shard's business (`[webrtc] max_conns_per_ip`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::stream::Stream;
use crate::gateway::Sessions;
use crate::rate::TokenBucket;
use crate::signal::hub::SessionId;
use crate::signal::protocol::MAX_FRAME;

const MAX_HEAD: usize = 8192;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const WS_PING_EVERY: Duration = Duration::from_secs(30);
const WS_IDLE: Duration = Duration::from_secs(90);
/// tungstenite refuses frames above this; between MAX_FRAME and it we answer TOO_LARGE.
const WS_HARD_LIMIT: usize = 4 * MAX_FRAME;
pub const MAX_WEB_CONNS: usize = 4096;
/// The WebSocket read buffer's starting size (tungstenite's default is 128 KiB, which a
/// flood of idle sockets turns into hundreds of MB). It grows for a large frame.
const WS_READ_BUFFER: usize = 4096;

pub use crate::rate::source_key;

/// Who may open the browser WebSocket.
#[derive(Clone, Debug, Default)]
pub struct WebPolicy {
    /// `[webrtc] allowed_origins`: empty = only the page's own origin; `*` = any.
    pub allowed_origins: Vec<String>,
    /// Open login on a loopback listener: the request must also name a loopback host, so a
    /// web page whose name resolves to 127.0.0.1 (DNS rebinding) cannot log in either.
    pub loopback_host_only: bool,
}

const INDEX_HTML: &str = include_str!("../../web/index.html");
const SRGATE_JS: &str = include_str!("../../web/srgate.js");

pub enum WebConn {
    Http {
        stream: Stream,
        peer: SocketAddr,
        buf: Vec<u8>,
        out: Vec<u8>,
        since: Instant,
        /// The one answer of the connection is queued: what remains is sending it (over
        /// TLS, records may wait in rustls after `out` is empty), never a second one.
        answered: bool,
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
            answered: false,
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
    /// WebSocket text frames to the sessions (`hub`), pings and times out.
    #[allow(clippy::too_many_arguments)]
    pub fn service(
        &mut self,
        now: Instant,
        unix_now: u64,
        hub: &mut dyn Sessions,
        next_session: &mut SessionId,
        policy: &WebPolicy,
        registry: &Registry,
        token: Token,
    ) -> Next {
        let next = match self {
            WebConn::Http { .. } => self.service_http(now, hub, next_session, policy),
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
        hub: &mut dyn Sessions,
        next_session: &mut SessionId,
        policy: &WebPolicy,
    ) -> Next {
        let WebConn::Http {
            stream,
            peer,
            buf,
            out,
            since,
            answered,
        } = self
        else {
            return Next::Close;
        };
        // The whole exchange, answer included, has HEAD_TIMEOUT: a client that does not
        // read its answer cannot keep its slot (nor the loop waking for its deadline).
        if now >= *since + HEAD_TIMEOUT {
            return Next::Close;
        }
        if *answered {
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
        let (response, head_len, sip) =
            match read_head(buf, matches!(stream, Stream::Tls(_)), *peer, policy) {
                Head::Partial => return Next::Keep,
                Head::Reply(answer) => {
                    *out = answer;
                    *answered = true;
                    return flush_plain(stream, out);
                }
                Head::Upgrade {
                    response,
                    head_len,
                    sip,
                } => (response, head_len, sip),
            };
        // The 101 is tiny: a fresh socket takes it whole, and if not, the peer is broken
        // and loses the connection.
        if stream.write_all(response.as_bytes()).is_err() || stream.push_tls().is_err() {
            return Next::Close;
        }
        let rest = buf[head_len..].to_vec();
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0)
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
        if sip {
            hub.open_sip(now, session, peer);
            log::debug!("WebSocket session {session} from {peer} (SIP)");
        } else {
            hub.open(now, session);
            log::debug!("WebSocket session {session} from {peer}");
        }
        *self = WebConn::Ws {
            ws: Box::new(ws),
            peer,
            session,
            last_heard: now,
            last_ping: now,
            want_write: false,
            more: false,
        };
        Next::Keep
    }

    fn service_ws(&mut self, now: Instant, unix_now: u64, hub: &mut dyn Sessions) -> Next {
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

/// What to do with the bytes a client sent so far on a fresh HTTP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The request head is not complete yet (and not over the 8 KiB bound): read more.
    Partial,
    /// Send this whole answer, then close.
    Reply(Vec<u8>),
    /// A WebSocket upgrade srgate accepts: send `response` (the 101), then speak WebSocket;
    /// the bytes after `head_len` are the first WebSocket bytes. `sip`: the client asked
    /// for the `sip` subprotocol (RFC 7118): the socket speaks SIP, not the JSON protocol.
    Upgrade {
        response: String,
        head_len: usize,
        sip: bool,
    },
}

/// The HTTP side of the web listener, without sockets: reads the request head in `buf`
/// (what a client sent so far on a connection over TLS or not, from `peer`, for the
/// logs), serves the demo page and its script, and checks a WebSocket upgrade at `/ws`
/// against `policy`.
pub fn read_head(buf: &[u8], tls: bool, peer: SocketAddr, policy: &WebPolicy) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Head::Partial,
        Ok(httparse::Status::Partial) => {
            return Head::Reply(reply(
                431,
                "Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
            ));
        }
        Err(_) => return Head::Reply(reply(400, "Bad Request", "text/plain", b"bad request\n")),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let path = req.path.unwrap_or("/").split('?').next().unwrap_or("/");
    if req.method != Some("GET") {
        return Head::Reply(reply(
            405,
            "Method Not Allowed",
            "text/plain",
            b"method not allowed\n",
        ));
    }
    match path {
        "/" | "/index.html" => Head::Reply(reply(
            200,
            "OK",
            "text/html; charset=utf-8",
            INDEX_HTML.as_bytes(),
        )),
        "/srgate.js" => Head::Reply(reply(
            200,
            "OK",
            "text/javascript; charset=utf-8",
            SRGATE_JS.as_bytes(),
        )),
        "/ws" => {
            let upgrade = header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            let key = header("Sec-WebSocket-Key");
            let version_ok = header("Sec-WebSocket-Version").is_some_and(|v| v.trim() == "13");
            let (true, Some(key), true) = (upgrade, key, version_ok) else {
                return Head::Reply(reply(
                    400,
                    "Bad Request",
                    "text/plain",
                    b"expected a WebSocket upgrade (version 13)\n",
                ));
            };
            if !origin_allowed(
                header("Origin"),
                header("Host"),
                tls,
                &policy.allowed_origins,
            ) {
                log::info!(
                    "WebSocket from {peer} refused: Origin {:?} not allowed (Host {:?})",
                    header("Origin"),
                    header("Host")
                );
                return Head::Reply(reply(
                    403,
                    "Forbidden",
                    "text/plain",
                    b"origin not allowed\n",
                ));
            }
            if policy.loopback_host_only && !header("Host").is_some_and(host_is_loopback) {
                log::info!(
                    "WebSocket from {peer} refused: open login needs a loopback Host, got {:?}",
                    header("Host")
                );
                return Head::Reply(reply(403, "Forbidden", "text/plain", b"host not allowed\n"));
            }
            let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
            // SIP over WebSocket (RFC 7118): the client lists `sip` among its subprotocols
            let sip = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim() == "sip");
            let protocol = if sip {
                "Sec-WebSocket-Protocol: sip\r\n"
            } else {
                ""
            };
            Head::Upgrade {
                response: format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
                ),
                head_len,
                sip,
            }
        }
        _ => Head::Reply(reply(404, "Not Found", "text/plain", b"not found\n")),
    }
}

/// The Origin check of a WebSocket upgrade. `allowed`: `["*"]` admits any origin; a list
/// admits those origins only (a missing Origin is refused); an empty list admits the page's
/// own origin: `http(s)://` + the Host the request was sent to. A request without Origin
/// passes then, since browsers always send one and other clients cannot be held to it.
fn origin_allowed(origin: Option<&str>, host: Option<&str>, tls: bool, allowed: &[String]) -> bool {
    let origin = origin.map(str::trim);
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    if !allowed.is_empty() {
        return origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
    }
    let Some(origin) = origin else {
        return true;
    };
    let (scheme, default_port) = if tls {
        ("https://", ":443")
    } else {
        ("http://", ":80")
    };
    let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
        return false;
    };
    let Some(origin_host) = origin
        .get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .map(|_| &origin[scheme.len()..])
    else {
        return false;
    };
    let strip = |h: &str| -> String {
        let h = h.to_ascii_lowercase();
        match h.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => h,
        }
    };
    !origin_host.contains('/') && strip(origin_host) == strip(host)
}

/// Whether a Host header names this machine: `localhost` (or a name under it), an IPv4
/// address in 127.0.0.0/8 or `[::1]`, with or without a port.
fn host_is_loopback(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, _)) => {
                return v6
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|a| a.is_loopback());
            }
            None => return false,
        }
    } else {
        host.rsplit_once(':')
            .map_or(host.as_str(), |(name, _)| name)
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
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
    // the last TLS records (a service call with `out` already empty pushes them here)
    if stream.push_tls().is_err() {
        return Next::Close;
    }
    if stream.tls_wants_write() {
        return Next::Keep;
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

/// New web connections all sources together may open a second, and at once. A source
/// key ([`source_key`]) may open `[webrtc] max_conns_per_ip` at once, then a quarter of
/// that a second (at least one).
pub const ACCEPTS: u32 = 1_000;
pub const ACCEPTS_BURST: u32 = 4_000;
/// Source keys whose accept rate is remembered.
const ACCEPT_SOURCES: usize = 65_536;

/// The rate of new web connections, per source key and in all (on top of the cap of
/// connections open at once per source).
pub struct AcceptRate {
    sources: HashMap<IpAddr, TokenBucket>,
    global: TokenBucket,
    /// Per source: the burst (`max_conns_per_ip`) and the rate a second.
    burst: u32,
    rate: u32,
}

impl AcceptRate {
    /// Limits for sources that may hold `per_source_max` connections at once.
    pub fn new(now: Instant, per_source_max: u32) -> Self {
        AcceptRate {
            sources: HashMap::new(),
            global: TokenBucket::full(now, ACCEPTS_BURST),
            burst: per_source_max.max(1),
            rate: (per_source_max / 4).max(1),
        }
    }

    /// Whether `source` may open one more connection now (and counts it).
    pub fn admit(&mut self, now: Instant, source: IpAddr) -> bool {
        if !self.sources.contains_key(&source) && self.sources.len() >= ACCEPT_SOURCES {
            // sources that opened little lately hold nothing worth keeping
            let burst = self.burst;
            self.sources.retain(|_, b| b.below_half(burst));
            if self.sources.len() >= ACCEPT_SOURCES {
                self.sources.clear();
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self
            .sources
            .entry(source)
            .or_insert_with(|| TokenBucket::full(now, burst));
        bucket.take(now, rate, burst) && self.global.take(now, ACCEPTS, ACCEPTS_BURST)
    }

    /// Sources remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sources.len()
    }

    /// Gives back the table's memory after a flood (with the other web tables).
    pub fn shrink(&mut self) {
        self.sources.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // the test's clock origin
    fn new_connections_are_limited_per_source_and_in_all() {
        let t0 = Instant::now();
        let mut rate = AcceptRate::new(t0, 64);
        let a = IpAddr::from([203, 0, 113, 1]);
        let opened = (0..1_000).filter(|_| rate.admit(t0, a)).count();
        assert_eq!(opened, 64, "max_conns_per_ip at once");
        let t1 = t0 + Duration::from_secs(1);
        let opened = (0..1_000).filter(|_| rate.admit(t1, a)).count();
        assert_eq!(opened, 16, "then a quarter of it a second");
        assert!(
            rate.admit(t1, IpAddr::from([198, 51, 100, 1])),
            "another source"
        );
        let mut rate = AcceptRate::new(t0, 64);
        let all = (0..10_000u32)
            .filter(|i| rate.admit(t0, IpAddr::from((0x0a00_0000 + i).to_be_bytes())))
            .count();
        assert_eq!(all, ACCEPTS_BURST as usize);
        assert!(rate.len() <= ACCEPT_SOURCES);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the test's clock origin
    fn an_answer_the_client_does_not_read_is_dropped_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let t0 = Instant::now();
        // more than the kernel's buffers hold: the client never reads
        let mut conn = WebConn::Http {
            stream: Stream::Plain(TcpStream::from_std(server)),
            peer,
            buf: Vec::new(),
            out: vec![b'x'; 64 << 20],
            since: t0,
            answered: true,
        };
        let poll = mio::Poll::new().unwrap();
        let mut hub = crate::signal::hub::Hub::new("");
        let mut next_session = 0;
        let policy = WebPolicy {
            allowed_origins: Vec::new(),
            loopback_host_only: false,
        };
        let mut service = |conn: &mut WebConn, now: Instant| {
            conn.service(
                now,
                0,
                &mut hub,
                &mut next_session,
                &policy,
                poll.registry(),
                Token(1),
            )
        };
        assert_eq!(
            service(&mut conn, t0),
            Next::Keep,
            "the answer is on its way"
        );
        assert_eq!(conn.deadline(), t0 + HEAD_TIMEOUT);
        assert_eq!(
            service(&mut conn, t0 + HEAD_TIMEOUT),
            Next::Close,
            "at the deadline the connection goes, answer or not"
        );
        drop(client);
    }

    #[test]
    fn origins() {
        let list = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // an explicit list
        let allowed = list(&["https://app.example"]);
        assert!(origin_allowed(
            Some("https://app.example"),
            None,
            true,
            &allowed
        ));
        assert!(!origin_allowed(
            Some("https://evil.example"),
            None,
            true,
            &allowed
        ));
        assert!(!origin_allowed(None, None, true, &allowed));
        // `*`
        assert!(origin_allowed(
            Some("https://evil.example"),
            Some("gw"),
            false,
            &list(&["*"])
        ));
        // the default: the page's own origin only
        let own = |o, h, tls| origin_allowed(o, h, tls, &[]);
        assert!(own(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            false
        ));
        assert!(own(
            Some("http://LOCALHOST:8080"),
            Some("localhost:8080"),
            false
        ));
        assert!(own(
            Some("https://gw.example"),
            Some("gw.example:443"),
            true
        ));
        assert!(own(Some("http://gw.example:80"), Some("gw.example"), false));
        assert!(
            own(None, Some("gw.example"), false),
            "non-browser clients send no Origin"
        );
        assert!(!own(
            Some("https://evil.example"),
            Some("127.0.0.1:8080"),
            false
        ));
        assert!(!own(
            Some("http://127.0.0.1:8081"),
            Some("127.0.0.1:8080"),
            false
        ));
        assert!(
            !own(
                Some("https://127.0.0.1:8080"),
                Some("127.0.0.1:8080"),
                false
            ),
            "scheme"
        );
        assert!(!own(Some("http://127.0.0.1:8080"), None, false));
        assert!(!own(Some("null"), Some("127.0.0.1:8080"), false));
    }

    #[test]
    fn sources_are_counted_by_ipv4_address_or_ipv6_64() {
        let key = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn the_sip_subprotocol_makes_a_sip_session() {
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let own = WebPolicy::default();
        let head = |protocols: &str| {
            format!(
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nOrigin: http://127.0.0.1:8080\r\n{protocols}\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
        };
        for (protocols, sip) in [
            ("Sec-WebSocket-Protocol: sip\r\n", true),
            ("Sec-WebSocket-Protocol: chat, sip\r\n", true),
            (
                "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: sip\r\n",
                true,
            ),
            ("Sec-WebSocket-Protocol: sips, SIP\r\n", false),
            ("", false),
        ] {
            match read_head(head(protocols).as_bytes(), false, peer, &own) {
                Head::Upgrade {
                    response, sip: s, ..
                } => {
                    assert_eq!(s, sip, "{protocols}");
                    // the 101 names the subprotocol chosen, and only then
                    assert_eq!(
                        response.contains("\r\nSec-WebSocket-Protocol: sip\r\n"),
                        sip,
                        "{response}"
                    );
                }
                other => panic!("{protocols}: {other:?}"),
            }
        }
        // the Origin rules hold for SIP sessions too
        let foreign = head("Sec-WebSocket-Protocol: sip\r\n").replace(
            "Origin: http://127.0.0.1:8080",
            "Origin: http://evil.example",
        );
        assert!(matches!(
            read_head(foreign.as_bytes(), false, peer, &own),
            Head::Reply(r) if r.starts_with(b"HTTP/1.1 403 ")
        ));
    }

    #[test]
    fn request_heads() {
        let peer: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let own = WebPolicy::default();
        let upgrade = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n\
                        Connection: Upgrade\r\nOrigin: http://127.0.0.1:8080\r\n\
                        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let mut with_frame = upgrade.to_vec();
        with_frame.extend_from_slice(b"\x81\x80");
        match read_head(&with_frame, false, peer, &own) {
            Head::Upgrade {
                response,
                head_len,
                sip,
            } => {
                assert!(!sip);
                assert!(!response.contains("Sec-WebSocket-Protocol"));
                assert_eq!(head_len, upgrade.len());
                // RFC 6455 §1.3's example key
                assert!(
                    response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(read_head(&upgrade[..40], false, peer, &own), Head::Partial);
        // over TLS the origin must be https
        assert!(matches!(
            read_head(upgrade, true, peer, &own),
            Head::Reply(r) if r.starts_with(b"HTTP/1.1 403 ")
        ));
        let status = |req: &[u8]| match read_head(req, false, peer, &own) {
            Head::Reply(r) => String::from_utf8_lossy(&r[9..12]).into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "200");
        assert_eq!(status(b"GET /srgate.js?x HTTP/1.1\r\n\r\n"), "200");
        assert_eq!(status(b"GET /nope HTTP/1.1\r\n\r\n"), "404");
        assert_eq!(status(b"POST / HTTP/1.1\r\n\r\n"), "405");
        assert_eq!(status(b"GET /ws HTTP/1.1\r\n\r\n"), "400");
        assert_eq!(status(b"\x01\r\n\r\n"), "400");
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(status(&long), "431");
    }

    #[test]
    fn loopback_hosts() {
        for yes in [
            "127.0.0.1:8080",
            "localhost",
            "LocalHost:80",
            "[::1]:8080",
            "127.9.9.9",
            "a.localhost:1",
        ] {
            assert!(host_is_loopback(yes), "{yes}");
        }
        for no in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "[2001:db8::1]:80",
            "localhost.evil.example",
            "",
            "[::1",
        ] {
            assert!(!host_is_loopback(no), "{no}");
        }
    }
}
