//! RTP sockets of SIP legs: one even port of `[media] rtp_ports` for RTP and the next for
//! RTCP per call (RFC 3550 §11), bound when a call needs them and closed when it ends.
//! Ports are picked at random from the range, never one of the last ones closed, so the
//! port of the next call cannot be guessed from earlier ones (nor does a late packet of an
//! ended call land in a new one).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::call::RtpPorts;
use crate::sip::rng::Rng;

/// How many recently closed ports are kept out of use.
const RECENT: usize = 64;

/// Picks port pairs at random (sans-IO: whether a port can be bound is the caller's
/// question).
struct PortPicker {
    /// The first even port, and how many pairs the range holds.
    first: u16,
    pairs: u16,
    rng: Rng,
    recent: VecDeque<u16>,
}

impl PortPicker {
    fn new(range: RangeInclusive<u16>, seed: [u8; 32]) -> Self {
        let first = range.start().saturating_add(range.start() % 2);
        let pairs = if *range.end() > first {
            (range.end() - first).div_ceil(2)
        } else {
            0
        };
        PortPicker {
            first,
            pairs,
            rng: Rng::new(seed),
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    fn below(&mut self, n: u16) -> u16 {
        ((u32::from(u16::from_le_bytes(self.rng.bytes())) * u32::from(n)) >> 16) as u16
    }

    /// Up to `tries` candidate RTP ports, none of them in use (`busy`) or recently
    /// closed: random picks first, then (for a nearly full range) the pairs in turn from a
    /// random one.
    fn candidates(&mut self, tries: usize, busy: impl Fn(u16) -> bool) -> Vec<u16> {
        let mut out = Vec::with_capacity(tries.min(64));
        if self.pairs == 0 {
            return out;
        }
        let pairs = usize::from(self.pairs);
        let usable = |p: u16, recent: &VecDeque<u16>| !busy(p) && !recent.contains(&p);
        for _ in 0..32 {
            let port = self.first + 2 * self.below(self.pairs);
            if usable(port, &self.recent) && !out.contains(&port) {
                out.push(port);
                if out.len() >= tries {
                    return out;
                }
            }
        }
        let start = usize::from(self.below(self.pairs));
        for i in 0..pairs {
            let port = self.first + 2 * ((start + i) % pairs) as u16;
            if usable(port, &self.recent) && !out.contains(&port) {
                out.push(port);
                if out.len() >= tries {
                    break;
                }
            }
        }
        out
    }

    fn closed(&mut self, port: u16) {
        // a small range cannot spare many ports to the quarantine
        let keep = RECENT.min(usize::from(self.pairs) / 4);
        if keep == 0 {
            return;
        }
        while self.recent.len() >= keep {
            self.recent.pop_front();
        }
        self.recent.push_back(port);
    }
}

/// Tokens of RTP sockets: `RTP_TOKEN_BASE + port`.
pub const RTP_TOKEN_BASE: usize = 4 << 20;

pub struct RtpSockets {
    registry: Registry,
    ip: IpAddr,
    picker: PortPicker,
    open: HashMap<u16, (UdpSocket, UdpSocket)>,
    pub bind_failures: u64,
}

impl RtpSockets {
    /// `seed`: from the OS's random source.
    pub fn new(registry: Registry, ip: IpAddr, range: RangeInclusive<u16>, seed: [u8; 32]) -> Self {
        RtpSockets {
            registry,
            ip,
            picker: PortPicker::new(range, seed),
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
        // Skips ports another program holds; at most 512 tries.
        let open = &self.open;
        let candidates = self.picker.candidates(512, |p| open.contains_key(&p));
        for port in candidates {
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
            self.picker.closed(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_random_even_in_range_and_not_reused_at_once() {
        let mut picker = PortPicker::new(16384..=32768, [7; 32]);
        let mut open = std::collections::HashSet::new();
        let mut sequence = Vec::new();
        for _ in 0..200 {
            let port = picker.candidates(1, |p| open.contains(&p))[0];
            assert!(
                (16384..=32766).contains(&port) && port.is_multiple_of(2),
                "{port}"
            );
            assert!(open.insert(port), "{port} handed out twice");
            sequence.push(port);
        }
        // not in turn: consecutive picks are rarely neighbours
        let neighbours = sequence.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(
            neighbours < 5,
            "{neighbours} of 199 picks followed the previous port"
        );
        // spread over the range
        let low = sequence.iter().filter(|&&p| p < 24576).count();
        assert!((60..=140).contains(&low), "{low} of 200 in the lower half");
        // a closed port sits out while others are free
        let last = sequence[199];
        open.remove(&last);
        picker.closed(last);
        for _ in 0..500 {
            assert_ne!(picker.candidates(1, |p| open.contains(&p))[0], last);
        }
    }

    #[test]
    fn a_nearly_full_range_still_finds_the_free_pair() {
        let mut picker = PortPicker::new(30000..=30019, [3; 32]);
        let free = 30012;
        let got = picker.candidates(1, |p| p != free);
        assert_eq!(got, vec![free]);
        let all = picker.candidates(512, |_| false);
        assert_eq!(all.len(), 10, "every pair once: {all:?}");
        assert!(
            PortPicker::new(30000..=30000, [0; 32])
                .candidates(5, |_| false)
                .is_empty()
        );
    }
}
