//! Which source a SIP leg takes its RTP from, and sends its RTP back to.
//!
//! The SIP side's SDP names where its media lives (`c=` and `m=` port). A packet from
//! exactly that address is always taken, and srgate latches to it for good: nobody else is
//! heard from then on. Before that:
//! - a packet from the SDP's IP address on another port is taken (a phone that sends from
//!   one port and receives on another), and latched to until the SDP address itself sends;
//! - a packet from another IP address is taken only when the SDP's address is one that
//!   cannot be the real source (private, shared or link-local, or unspecified: the phone is
//!   behind NAT) — symmetric RTP, RFC 4961 — and only from the first such source, until a
//!   packet from the SDP's IP address appears (then that one wins).
//!
//! So a stranger who guesses a port is refused when the SDP names a public or loopback
//! address, and when it names a private one it can be heard at most until the phone's own
//! first packet. RTCP is taken from the IP address RTP is taken from.

use crate::sdp::answer::Direction;
use crate::sdp::sip::RemoteRtp;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug, Default)]
pub struct RtpSource {
    /// The SDP's media address.
    expected: Option<SocketAddr>,
    /// Where RTP was last taken from (and where srgate sends).
    latched: Option<SocketAddr>,
}

/// Whether `ip` cannot be where a phone's packets come from over the network: a private
/// (RFC 1918, RFC 4193), shared (RFC 6598) or link-local address, or none.
pub fn behind_nat(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => behind_nat(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

impl RtpSource {
    /// The SDP's media address (an answer, or a re-offer). A new address starts over.
    pub fn set_expected(&mut self, addr: SocketAddr) {
        if self.expected != Some(addr) {
            self.expected = Some(addr);
            self.latched = None;
        }
    }

    /// Whether an RTP packet from `from` may be taken. Call [`RtpSource::latch`] once it
    /// proved to be RTP of the call.
    pub fn admits(&self, from: SocketAddr) -> bool {
        let Some(expected) = self.expected else {
            return false;
        };
        if from == expected || self.latched == Some(from) {
            return true;
        }
        match self.latched {
            // locked on the SDP's own address
            Some(latched) if latched == expected => false,
            // one source of the SDP's host at a time
            Some(latched) if latched.ip() == expected.ip() => false,
            // the SDP's host beats a NAT source
            _ if from.ip() == expected.ip() => true,
            Some(_) => false,
            None => behind_nat(expected.ip()),
        }
    }

    /// Takes `from` as the source (after [`RtpSource::admits`] said yes).
    pub fn latch(&mut self, from: SocketAddr) {
        self.latched = Some(from);
    }

    /// Whether an RTCP packet from `from` may be taken: from the IP address RTP comes from
    /// (or, before any RTP, the SDP's).
    pub fn admits_rtcp(&self, from: SocketAddr) -> bool {
        match self.latched.or(self.expected) {
            Some(source) => source.ip() == from.ip(),
            None => false,
        }
    }

    /// Where srgate sends RTP: where it comes from, else the SDP's address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.expected)
    }

    /// Where srgate sends to a phone described by `remote`: where its RTP comes from,
    /// else its SDP's address; nowhere while it does not receive (sendonly, inactive).
    pub fn send_to(&self, remote: &RemoteRtp) -> Option<SocketAddr> {
        if matches!(remote.direction, Direction::SendOnly | Direction::Inactive) {
            return None;
        }
        self.latched().or_else(|| {
            (!remote.addr.ip().is_unspecified() && remote.addr.port() != 0).then_some(remote.addr)
        })
    }

    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Offers `from` a packet and latches when admitted, as the bridge does.
    fn packet(source: &mut RtpSource, from: &str) -> bool {
        let ok = source.admits(a(from));
        if ok {
            source.latch(a(from));
        }
        ok
    }

    #[test]
    fn a_stranger_first_does_not_hijack_a_public_or_loopback_phone() {
        for phone in ["203.0.113.5:4000", "127.0.0.1:4000"] {
            let mut s = RtpSource::default();
            s.set_expected(a(phone));
            // five packets from an attacker before the phone's first RTP
            for _ in 0..5 {
                assert!(!packet(&mut s, "198.51.100.66:5000"), "{phone}");
            }
            assert!(!packet(&mut s, "127.0.0.2:4000"), "{phone}");
            assert!(packet(&mut s, phone));
            assert_eq!(s.destination(), Some(a(phone)));
            assert!(!packet(&mut s, "198.51.100.66:5000"));
            assert!(s.admits_rtcp(a(&phone.replace("4000", "4001"))));
            assert!(!s.admits_rtcp(a("198.51.100.66:5001")));
        }
    }

    #[test]
    fn the_phone_wins_over_a_source_latched_behind_nat() {
        let mut s = RtpSource::default();
        s.set_expected(a("192.168.1.20:4000"));
        // behind NAT: the first outside source is taken (symmetric RTP) ...
        assert!(packet(&mut s, "198.51.100.7:61000"));
        assert_eq!(s.destination(), Some(a("198.51.100.7:61000")));
        // ... and nobody else's
        assert!(!packet(&mut s, "198.51.100.66:5000"));
        assert!(
            packet(&mut s, "198.51.100.7:61000"),
            "the latched source goes on"
        );
        // the SDP's own address, when it shows up, wins for good
        assert!(packet(&mut s, "192.168.1.20:4000"));
        assert!(!packet(&mut s, "198.51.100.7:61000"));
        assert_eq!(s.destination(), Some(a("192.168.1.20:4000")));
    }

    #[test]
    fn the_sdp_host_on_another_port_is_taken_until_its_own_port_sends() {
        let mut s = RtpSource::default();
        s.set_expected(a("203.0.113.5:4000"));
        assert!(packet(&mut s, "203.0.113.5:4010"));
        assert!(
            !packet(&mut s, "203.0.113.5:4020"),
            "one port of the host at a time"
        );
        assert!(packet(&mut s, "203.0.113.5:4000"));
        assert!(!packet(&mut s, "203.0.113.5:4010"));
    }

    #[test]
    fn a_new_address_in_a_re_offer_starts_over() {
        let mut s = RtpSource::default();
        assert!(!s.admits(a("203.0.113.5:4000")), "nothing before an SDP");
        s.set_expected(a("203.0.113.5:4000"));
        assert!(packet(&mut s, "203.0.113.5:4000"));
        s.set_expected(a("203.0.113.5:4000"));
        assert_eq!(s.latched(), Some(a("203.0.113.5:4000")), "same SDP: kept");
        s.set_expected(a("203.0.113.9:6000"));
        assert_eq!(s.latched(), None);
        assert!(!packet(&mut s, "203.0.113.5:4000"));
        assert!(packet(&mut s, "203.0.113.9:6000"));
    }

    #[test]
    fn nat_ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(behind_nat(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "203.0.113.5",
            "127.0.0.1",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::1",
        ] {
            assert!(!behind_nat(ip.parse().unwrap()), "{ip}");
        }
    }
}
