//! The control shard's SIP transports: the UDP socket (datagrams in batches) and SIP over
//! TCP and TLS (connections accepted and opened, RFC 3261 §18.3 framing, RFC 5626
//! keepalives, per-address caps, idle expiry); the endpoint's [`Transmit`]s carried out.
//! srgate opens TLS connections to `sip_svr` only (the name its certificate must carry is
//! the configured host); phones on TLS are reached over the connection they opened.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use super::{
    BATCHES_PER_WAKE, ControlShard, SIP_CONN_BASE, SIP_TCP_CHUNK, SIP_TCP_CHUNKS_PER_WAKE,
    SIP_TCP_FIRST_MESSAGE, SIP_TCP_IDLE, SIP_TCP_MAX_CONNS, SIP_TCP_PER_IP, SIP_TCP_READ_MAX,
    SIP_TCP_RESERVED, SIP_TCP_WRITE_MAX, UDP_SLOT,
};
use crate::io::stream::Stream;
use crate::io::tcp::{Conn, ReadOutcome};
use crate::sip::endpoint::{Transmit, Transport};

/// SIP over TLS: `[sip] tls_listen` with its server configuration, and `sip_svr` over TLS:
/// its address, the name its certificate must carry and the client configuration.
#[derive(Default)]
pub struct SipTls {
    pub listener: Option<(TcpListener, Arc<ServerConfig>)>,
    pub server: Option<(SocketAddr, ServerName<'static>, Arc<ClientConfig>)>,
}

/// The transport of a SIP connection.
fn transport_of(conn: &Conn) -> Transport {
    if conn.stream.is_tls() {
        Transport::Tls
    } else {
        Transport::Tcp
    }
}

impl ControlShard {
    pub(super) fn read_udp(&mut self, now: Instant) {
        self.udp_pending = false;
        for _ in 0..BATCHES_PER_WAKE {
            match self.batch.recv(self.udp.as_raw_fd()) {
                Ok(_) => {
                    for i in 0..self.batch.len() {
                        let Some((from, bytes, truncated)) = self.batch.get(i) else {
                            break;
                        };
                        let Some(from) = from else { continue };
                        if truncated {
                            self.udp_truncated += 1;
                            log::debug!(
                                "dropped a datagram from {from} larger than {UDP_SLOT} bytes"
                            );
                            continue;
                        }
                        self.core.handle_sip(now, Transport::Udp, from, bytes);
                    }
                    if self.batch.drained() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP errors surface here on some kernels; they do not stop the socket.
                    log::debug!("UDP receive: {e}");
                    return;
                }
            }
        }
        // Budget used up: come back after the other sources had their turn.
        self.udp_pending = true;
    }

    pub(super) fn send(&mut self, now: Instant, t: Transmit) {
        match t.transport {
            Transport::Udp => match self.udp.send_to(&t.payload, t.destination) {
                Ok(_) => {}
                Err(e) => {
                    // A full socket buffer drops the message; SIP retransmits over UDP.
                    self.udp_send_dropped += 1;
                    log::debug!("UDP send to {} failed: {e}", t.destination);
                }
            },
            Transport::Tcp | Transport::Tls => {
                let index = match self.sip_by_peer.get(&t.destination) {
                    Some(&i) => i,
                    // A response whose connection closed: srgate does not dial back (the
                    // client's port is an ephemeral one, and a scanner must not make
                    // srgate connect where it likes); the client retries or gives up.
                    None if t.payload.starts_with(b"SIP/2.0 ") => {
                        self.tcp_dropped += 1;
                        log::debug!(
                            "SIP TCP response to {}: its connection is closed; dropped",
                            t.destination
                        );
                        return;
                    }
                    None => match self.connect_sip(now, t.destination, t.transport) {
                        Some(i) => i,
                        None => {
                            self.tcp_dropped += 1;
                            self.core
                                .handle_transport_error(now, t.transport, t.destination);
                            return;
                        }
                    },
                };
                let Some(conn) = self.sip_conns.get_mut(index).and_then(Option::as_mut) else {
                    return;
                };
                if transport_of(conn) != t.transport {
                    // never TLS's message on a plain connection (or the other way round)
                    self.tcp_dropped += 1;
                    log::warn!(
                        "SIP {:?} message to {}: its connection is {:?}; dropped",
                        t.transport,
                        t.destination,
                        transport_of(conn)
                    );
                    self.core
                        .handle_transport_error(now, t.transport, t.destination);
                    return;
                }
                if !conn.queue(&t.payload) {
                    log::warn!("SIP TCP peer {} does not read; closing", conn.peer);
                    self.close_sip(now, index);
                    return;
                }
                if !conn.connecting && conn.flush(now).is_err() {
                    self.close_sip(now, index);
                    return;
                }
                self.reregister_sip(index);
            }
        }
    }

    fn connect_sip(&mut self, now: Instant, to: SocketAddr, transport: Transport) -> Option<usize> {
        let tls = match (transport, &self.sip_tls.server) {
            (Transport::Tls, Some((addr, name, config))) if *addr == to => {
                Some((name.clone(), config.clone()))
            }
            (Transport::Tls, _) => {
                log::warn!("SIP over TLS to {to}: srgate opens TLS connections to sip_svr only");
                return None;
            }
            _ => None,
        };
        let index = Self::free_slot(&mut self.sip_conns, SIP_TCP_MAX_CONNS)?;
        let stream = match TcpStream::connect(to) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("SIP {transport:?} connect to {to}: {e}");
                return None;
            }
        };
        let mut stream = match tls {
            None => Stream::Plain(stream),
            Some((name, config)) => match Stream::tls_client(stream, &config, name) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("SIP TLS to {to}: {e}");
                    return None;
                }
            },
        };
        let token = Token(SIP_CONN_BASE + index);
        if let Err(e) = self.poll.registry().register(
            stream.tcp(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("register: {e}");
            return None;
        }
        let mut conn = Conn::new(stream, to, now, SIP_TCP_READ_MAX, SIP_TCP_WRITE_MAX);
        conn.connecting = true;
        self.sip_conns[index] = Some(conn);
        self.sip_by_peer.insert(to, index);
        self.sip_deadlines.schedule(index, now + SIP_TCP_IDLE);
        Some(index)
    }

    /// Accepts connections on the SIP TCP listener, or (`tls`) on `[sip] tls_listen`.
    pub(super) fn accept_sip(&mut self, now: Instant, tls: bool) {
        for _ in 0..256 {
            let (accepted, config) = match (&self.sip_tls.listener, tls) {
                (Some((listener, config)), true) => (listener.accept(), Some(config.clone())),
                (None, true) => return,
                (_, false) => (self.sip_listener.accept(), None),
            };
            match accepted {
                Ok((mut stream, peer)) => {
                    let (open, from_same) = self
                        .sip_conns
                        .iter()
                        .flatten()
                        .fold((0, 0), |(open, same), c| {
                            (open + 1, same + usize::from(c.peer.ip() == peer.ip()))
                        });
                    if Some(peer.ip()) != self.trusted_ip && from_same >= SIP_TCP_PER_IP {
                        log::info!(
                            "SIP TCP connection from {peer} refused: {from_same} already open from it"
                        );
                        continue;
                    }
                    // Counted, not sized by the vector: a slot freed by srgate's own
                    // connection must not let accepted ones eat the reserve.
                    let index = if open < SIP_TCP_MAX_CONNS - SIP_TCP_RESERVED {
                        Self::free_slot(&mut self.sip_conns, SIP_TCP_MAX_CONNS)
                    } else {
                        None
                    };
                    let Some(index) = index else {
                        log::warn!("SIP TCP connection from {peer} refused: too many connections");
                        continue;
                    };
                    let token = Token(SIP_CONN_BASE + index);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let stream = match config {
                        None => Stream::Plain(stream),
                        Some(config) => match Stream::tls_server(stream, &config) {
                            Some(s) => s,
                            None => continue,
                        },
                    };
                    let mut conn =
                        Conn::new(stream, peer, now, SIP_TCP_READ_MAX, SIP_TCP_WRITE_MAX);
                    conn.awaiting_first = true;
                    self.sip_conns[index] = Some(conn);
                    self.sip_by_peer.insert(peer, index);
                    self.sip_deadlines
                        .schedule(index, now + SIP_TCP_FIRST_MESSAGE);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("SIP TCP accept: {e}");
                    return;
                }
            }
        }
    }

    /// Services SIP connection `index`: the socket is `readable`, `writable` or has an
    /// `error` (from the poll; a connection whose last read budget ran out is read again
    /// with `readable` alone).
    pub(super) fn sip_conn_ready(
        &mut self,
        now: Instant,
        index: usize,
        (readable, writable, error): (bool, bool, bool),
    ) {
        let Some(conn) = self.sip_conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if conn.connecting && (writable || error) {
            match conn.stream.tcp().take_error() {
                Ok(None) if conn.stream.tcp().peer_addr().is_ok() => conn.connecting = false,
                _ => {
                    log::warn!("SIP TCP connect to {} failed", conn.peer);
                    self.close_sip(now, index);
                    return;
                }
            }
        }
        if !conn.connecting && conn.flush(now).is_err() {
            self.close_sip(now, index);
            return;
        }
        // Read a share, hand every complete message to the endpoint (RFC 3261 §18.3
        // framing), and again, until the socket is empty: a burst larger than the buffer
        // is taken message by message instead of overflowing it. When this wake-up's
        // budget is spent, re-registering below re-arms the edge-triggered readiness, so
        // the rest comes with the next poll.
        let peer = conn.peer;
        let transport = transport_of(conn);
        let mut outcome = ReadOutcome::Open;
        let mut broken = false;
        for _ in 0..SIP_TCP_CHUNKS_PER_WAKE {
            outcome = if readable {
                conn.read_available(now, SIP_TCP_CHUNK)
            } else {
                ReadOutcome::Open
            };
            let mut consumed = 0;
            loop {
                match crate::wire::sip::frame(&conn.rbuf[consumed..]) {
                    Ok(Some(crate::wire::sip::Frame::Keepalive(n))) => {
                        // RFC 5626 §4.4.1: a CRLFCRLF ping gets a CRLF pong.
                        if n >= 4 && !conn.queue(b"\r\n") {
                            broken = true;
                        }
                        consumed += n;
                    }
                    Ok(Some(crate::wire::sip::Frame::Message(n))) => {
                        conn.awaiting_first = false;
                        self.core.handle_sip(
                            now,
                            transport,
                            peer,
                            &conn.rbuf[consumed..consumed + n],
                        );
                        consumed += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        log::debug!("SIP TCP from {peer}: unframeable stream ({e:?}); closing");
                        broken = true;
                        break;
                    }
                }
            }
            conn.rbuf.drain(..consumed);
            if broken || outcome != ReadOutcome::More {
                break;
            }
        }
        if !broken && !conn.connecting && conn.flush(now).is_err() {
            broken = true;
        }
        if broken || !matches!(outcome, ReadOutcome::Open | ReadOutcome::More) {
            self.close_sip(now, index);
        } else {
            if outcome == ReadOutcome::More && !self.sip_pending.contains(&index) {
                // the budget ran out with bytes left: read on at the next turn (over TLS
                // they may wait inside rustls, where no readiness would announce them)
                self.sip_pending.push(index);
            }
            self.reregister_sip(index);
        }
    }

    fn reregister_sip(&mut self, index: usize) {
        if let Some(conn) = self.sip_conns.get_mut(index).and_then(Option::as_mut) {
            let interest = if conn.wants_write() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self.poll.registry().reregister(
                conn.stream.tcp(),
                Token(SIP_CONN_BASE + index),
                interest,
            );
        }
    }

    /// Closes SIP TCP connection `index`; what srgate sent on it and still waits an answer
    /// for (a REGISTER to sip_svr) fails now instead of at Timer F.
    pub(super) fn close_sip(&mut self, now: Instant, index: usize) {
        self.sip_deadlines.cancel(index);
        if let Some(mut conn) = self.sip_conns.get_mut(index).and_then(Option::take) {
            let _ = self.poll.registry().deregister(conn.stream.tcp());
            if self.sip_by_peer.get(&conn.peer) == Some(&index) {
                self.sip_by_peer.remove(&conn.peer);
            }
            self.core
                .handle_transport_error(now, transport_of(&conn), conn.peer);
        }
    }
}
