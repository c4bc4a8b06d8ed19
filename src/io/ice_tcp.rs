//! ICE-TCP (RFC 6544) on a shard's media port: browsers whose network drops UDP reach
//! srgate over TCP instead. Each shard's media address also listens on TCP (the answer's
//! passive TCP candidate); a browser's active candidate connects, and every RFC 4571 frame
//! on the connection (a 16-bit length, then one STUN, DTLS, SRTP or SRTCP packet) is a
//! datagram from the connection's peer address, handed to the shard's core as if it had
//! come on UDP. What the core sends to that address goes back framed on the connection.
//!
//! Bounded like every listener of srgate: at most `[webrtc] max_conns_per_ip` connections
//! from one address and [`MAX_CONNS`] per shard (more are closed at once and counted),
//! frames of at most [`FRAME_MAX`] bytes (a longer one closes the connection), at most
//! [`WRITE_MAX`] bytes waiting to be written (a packet that does not fit is dropped, as
//! UDP would lose it). A connection counts as a browser's only once srgate has sent on it
//! (the core answers only STUN that carries a session's credentials): one that srgate has
//! not answered within [`GRACE`] is closed, and so is one srgate has sent nothing on for
//! [`IDLE`]. What a peer sends does not keep a connection open, so a stranger cannot hold
//! slots; when the shard is full, the oldest connection not yet answered makes room.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// Connections one shard holds at once.
pub const MAX_CONNS: usize = 256;
/// A connection srgate sends nothing on this long is closed (it answers the browser's ICE
/// consent checks, every few seconds while a call is up).
pub const IDLE: Duration = Duration::from_secs(30);
/// A new connection srgate has not answered on within this is closed (a browser sends its
/// first connectivity check as soon as it connects).
pub const GRACE: Duration = Duration::from_secs(10);
/// The largest frame taken (any packet srgate handles fits).
pub const FRAME_MAX: usize = 2048;
/// Bytes waiting to be written on one connection at most.
pub const WRITE_MAX: usize = 64 * 1024;
/// The first connection's token (above every RTP socket's).
pub const CONN_BASE: usize = 5 << 20;
/// Connections accepted per readiness event of the listener (a later turn takes more).
const ACCEPT_BUDGET: usize = 64;
/// Reads per readiness event of one connection (a later turn of the loop goes on).
const READ_BUDGET: usize = 64;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes read and not yet framed.
    read: Box<[u8]>,
    read_len: usize,
    /// Framed packets waiting to be written.
    write: Vec<u8>,
    /// When it was accepted.
    accepted: Instant,
    /// When srgate last sent on it (none yet: not a browser's so far).
    last_sent: Option<Instant>,
}

impl Conn {
    /// When it is closed unless srgate sends on it before.
    fn expires(&self) -> Instant {
        match self.last_sent {
            Some(t) => t + IDLE,
            None => self.accepted + GRACE,
        }
    }
}

/// The address a per-address limit counts: the IP, an IPv6 address by its /64.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        ip => ip,
    }
}

/// A shard's ICE-TCP listener and connections.
pub struct IceTcp {
    listener: TcpListener,
    registry: Registry,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_peer: HashMap<SocketAddr, usize>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections from one address at most.
    max_per_ip: usize,
    last_sweep: Option<Instant>,
    /// Connections whose read budget ran out with bytes left: read again at once.
    pending: Vec<usize>,
    /// The accept budget ran out with connections maybe waiting: accept again at once.
    accept_pending: bool,
    /// Connections closed at once for a limit.
    pub refused: u64,
    /// Packets dropped because their connection's write queue was full.
    pub dropped: u64,
}

impl IceTcp {
    /// Takes `listener` (registered as `token`) and registers connections in `registry`;
    /// `max_per_ip`: connections from one address (an IPv6 /64) at most.
    pub fn new(
        mut listener: TcpListener,
        registry: Registry,
        token: Token,
        max_per_ip: usize,
    ) -> io::Result<Self> {
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(IceTcp {
            listener,
            registry,
            conns: Vec::new(),
            free: Vec::new(),
            by_peer: HashMap::new(),
            per_ip: HashMap::new(),
            max_per_ip: max_per_ip.max(1),
            last_sweep: None,
            pending: Vec::new(),
            accept_pending: false,
            refused: 0,
            dropped: 0,
        })
    }

    /// The connection of token `t`, if it is one of these.
    pub fn conn_of(t: usize) -> Option<usize> {
        t.checked_sub(CONN_BASE).filter(|i| *i < MAX_CONNS)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.by_peer.len()
    }

    /// Accepts waiting connections, within the limits.
    pub fn accept(&mut self, now: Instant) {
        self.accept_pending = false;
        for _ in 0..ACCEPT_BUDGET {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("ICE-TCP accept: {e}");
                    return;
                }
            };
            let key = limit_key(peer.ip());
            if self.per_ip.get(&key).copied().unwrap_or(0) >= self.max_per_ip
                || self.open() >= MAX_CONNS
            {
                self.expire(now);
            }
            if self.open() >= MAX_CONNS {
                self.close_oldest_unanswered();
            }
            let from_there = self.per_ip.get(&key).copied().unwrap_or(0);
            // (a second connection from the same address and port would take the first
            // one's packets)
            if self.open() >= MAX_CONNS
                || from_there >= self.max_per_ip
                || self.by_peer.contains_key(&peer)
            {
                self.refused += 1;
                log::debug!("ICE-TCP connection from {peer} refused: connection limit");
                continue; // dropped: closed
            }
            let index = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            if let Err(e) = self.registry.register(
                &mut stream,
                Token(CONN_BASE + index),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::debug!("ICE-TCP register: {e}");
                self.free.push(index);
                continue;
            }
            let _ = stream.set_nodelay(true);
            self.by_peer.insert(peer, index);
            *self.per_ip.entry(key).or_insert(0) += 1;
            self.conns[index] = Some(Conn {
                stream,
                peer,
                read: vec![0; 2 + FRAME_MAX].into_boxed_slice(),
                read_len: 0,
                write: Vec::new(),
                accepted: now,
                last_sent: None,
            });
        }
        self.accept_pending = true;
    }

    /// Connection `index` is ready: reads its frames (each handed to `deliver` with the
    /// peer's address) and writes what waits.
    pub fn ready(&mut self, index: usize, deliver: &mut dyn FnMut(SocketAddr, &mut [u8])) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let mut open = flush(conn);
        // Read until the socket has nothing more (edge-triggered), within a budget: a
        // connection with bytes left is read again on the next turn of the loop.
        let mut drained = false;
        for _ in 0..READ_BUDGET {
            if !open {
                break;
            }
            match conn.stream.read(&mut conn.read[conn.read_len..]) {
                Ok(0) => open = false,
                Ok(n) => {
                    conn.read_len += n;
                    open = frames(conn, deliver);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => open = false,
            }
        }
        if !open {
            self.close(index);
        } else if !drained && !self.pending.contains(&index) {
            self.pending.push(index);
        }
    }

    /// Whether a connection has bytes left from the last turn, or connections may wait to
    /// be accepted (the loop must not sleep).
    pub fn has_backlog(&self) -> bool {
        !self.pending.is_empty() || self.accept_pending
    }

    /// Accepts and reads what the last turn left.
    pub fn read_backlog(&mut self, now: Instant, deliver: &mut dyn FnMut(SocketAddr, &mut [u8])) {
        if self.accept_pending {
            self.accept(now);
        }
        for index in std::mem::take(&mut self.pending) {
            self.ready(index, deliver);
        }
    }

    /// Sends `packet` to `to` framed, when `to` is a connection's peer; whether it is.
    pub fn send(&mut self, now: Instant, to: SocketAddr, packet: &[u8]) -> bool {
        let Some(&index) = self.by_peer.get(&to) else {
            return false;
        };
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return false;
        };
        conn.last_sent = Some(now);
        let Ok(len) = u16::try_from(packet.len()) else {
            self.dropped += 1;
            return true;
        };
        if conn.write.len() + 2 + packet.len() > WRITE_MAX {
            self.dropped += 1;
            return true;
        }
        conn.write.extend_from_slice(&len.to_be_bytes());
        conn.write.extend_from_slice(packet);
        if !flush(conn) {
            self.close(index);
        }
        true
    }

    /// When [`sweep`](Self::sweep) wants to run next: every [`SWEEP_EVERY`] while
    /// connections are open.
    pub fn next_sweep(&self) -> Option<Instant> {
        if self.by_peer.is_empty() {
            return None;
        }
        Some(self.last_sweep.map_or(Instant::now(), |t| t + SWEEP_EVERY))
    }

    /// Closes connections not answered within [`GRACE`] or idle for [`IDLE`] (looked
    /// for every [`SWEEP_EVERY`]).
    pub fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.expire(now);
    }

    /// Closes every connection past its [`Conn::expires`].
    fn expire(&mut self, now: Instant) {
        self.last_sweep = Some(now);
        for index in 0..self.conns.len() {
            if self.conns[index]
                .as_ref()
                .is_some_and(|c| c.expires() <= now)
            {
                self.close(index);
            }
        }
        if self.by_peer.is_empty() {
            self.conns.clear();
            self.conns.shrink_to_fit();
            self.free.clear();
            self.free.shrink_to_fit();
        }
    }

    /// Makes room: closes the connection srgate has not answered on that came first.
    fn close_oldest_unanswered(&mut self) {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| c.last_sent.is_none()).map(|c| (i, c)))
            .min_by_key(|(_, c)| c.accepted)
            .map(|(i, _)| i);
        if let Some(index) = oldest {
            self.refused += 1;
            self.close(index);
        }
    }

    fn close(&mut self, index: usize) {
        let Some(mut conn) = self.conns.get_mut(index).and_then(Option::take) else {
            return;
        };
        let _ = self.registry.deregister(&mut conn.stream);
        self.by_peer.remove(&conn.peer);
        let key = limit_key(conn.peer.ip());
        if let Some(n) = self.per_ip.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
        self.free.push(index);
    }
}

/// Hands every whole frame read so far to `deliver`; false when the peer broke the
/// framing (an empty or oversized frame).
fn frames(conn: &mut Conn, deliver: &mut dyn FnMut(SocketAddr, &mut [u8])) -> bool {
    let mut start = 0;
    while conn.read_len - start >= 2 {
        let len = usize::from(u16::from_be_bytes([conn.read[start], conn.read[start + 1]]));
        if len == 0 || len > FRAME_MAX {
            return false;
        }
        if conn.read_len - start < 2 + len {
            break;
        }
        deliver(conn.peer, &mut conn.read[start + 2..start + 2 + len]);
        start += 2 + len;
    }
    conn.read.copy_within(start..conn.read_len, 0);
    conn.read_len -= start;
    true
}

/// Writes what waits on `conn` as far as the socket takes it; false when it failed.
fn flush(conn: &mut Conn) -> bool {
    let mut written = 0;
    while written < conn.write.len() {
        match conn.stream.write(&conn.write[written..]) {
            Ok(0) => return false,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    conn.write.drain(..written);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_limited_by_ip_and_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(limit_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(limit_key(mapped), v4);
        assert_eq!(IceTcp::conn_of(CONN_BASE + 3), Some(3));
        assert_eq!(IceTcp::conn_of(CONN_BASE + MAX_CONNS), None);
        assert_eq!(IceTcp::conn_of(7), None);
    }
}
