//! RTP sockets of SIP legs: one even port of `[media] rtp_ports` for RTP and the next for
//! RTCP per call (RFC 3550 §11), bound when a call needs them and closed when it ends.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::call::RtpPorts;

/// Tokens of RTP sockets: `RTP_TOKEN_BASE + port`.
pub const RTP_TOKEN_BASE: usize = 4 << 20;

pub struct RtpSockets {
    registry: Registry,
    ip: IpAddr,
    /// Even ports of the range, in turn.
    first: u16,
    pairs: u16,
    next: u16,
    open: HashMap<u16, (UdpSocket, UdpSocket)>,
    pub bind_failures: u64,
}

impl RtpSockets {
    pub fn new(registry: Registry, ip: IpAddr, range: RangeInclusive<u16>) -> Self {
        let first = range.start().saturating_add(range.start() % 2);
        let pairs = if *range.end() > first {
            (range.end() - first).div_ceil(2)
        } else {
            0
        };
        RtpSockets {
            registry,
            ip,
            first,
            pairs,
            next: 0,
            open: HashMap::new(),
            bind_failures: 0,
        }
    }

    pub fn in_use(&self) -> usize {
        self.open.len()
    }

    /// The socket for `port` (the RTP port, or the RTCP port next to it).
    pub fn socket(&self, port: u16) -> Option<&UdpSocket> {
        if port.is_multiple_of(2) {
            self.open.get(&port).map(|(rtp, _)| rtp)
        } else {
            self.open.get(&port.wrapping_sub(1)).map(|(_, rtcp)| rtcp)
        }
    }

    fn bind(&mut self, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
        let mut rtp = UdpSocket::bind(SocketAddr::new(self.ip, port))?;
        let mut rtcp = UdpSocket::bind(SocketAddr::new(self.ip, port + 1))?;
        let token = RTP_TOKEN_BASE + usize::from(port);
        self.registry
            .register(&mut rtp, Token(token), Interest::READABLE)?;
        if let Err(e) = self
            .registry
            .register(&mut rtcp, Token(token + 1), Interest::READABLE)
        {
            let _ = self.registry.deregister(&mut rtp);
            return Err(e);
        }
        Ok((rtp, rtcp))
    }
}

impl RtpPorts for RtpSockets {
    fn open(&mut self) -> Option<u16> {
        // Ports in turn, so a closed port is not reused at once (late packets of the
        // previous call land nowhere); skips ports another program holds.
        for _ in 0..self.pairs.min(512) {
            let port = self.first + 2 * self.next;
            self.next = (self.next + 1) % self.pairs.max(1);
            if self.open.contains_key(&port) {
                continue;
            }
            match self.bind(port) {
                Ok(pair) => {
                    self.open.insert(port, pair);
                    return Some(port);
                }
                Err(e) => {
                    self.bind_failures += 1;
                    log::debug!("RTP port {port}: {e}");
                }
            }
        }
        None
    }

    fn close(&mut self, port: u16) {
        if let Some((mut rtp, mut rtcp)) = self.open.remove(&port) {
            let _ = self.registry.deregister(&mut rtp);
            let _ = self.registry.deregister(&mut rtcp);
        }
    }
}
