//! SIP floods and scanners: what reaches the endpoint from sources srgate has no reason
//! to trust is limited per source address and in all, and known scanners are dropped.
//!
//! - **Per source** (an IPv4 address or an IPv6 /64, [`source_key`]):
//!   [`PER_SOURCE_RATE`] datagrams a second, bursts of [`PER_SOURCE_BURST`]; over it,
//!   datagrams are dropped unanswered (and counted). A flood from one address cannot make
//!   srgate answer it at wire speed (stateless answers are larger than the requests they
//!   answer: no reflection amplifier), nor starve the others.
//! - **In all**: untrusted sources together get [`GLOBAL_RATE`] a second, bursts of
//!   [`GLOBAL_BURST`] (many addresses flooding at once).
//! - **Trusted sources are never limited**: `sip_svr`'s address, and for
//!   [`TRUST_FOR`] after it, every address a request authenticated from (a phone that
//!   registered keeps refreshing, so it stays trusted while it is registered).
//! - **Scanners**: requests whose `User-Agent` names a known SIP scanner
//!   ([`is_scanner`]) are dropped without an answer.
//!
//! The table of sources is bounded ([`MAX_SOURCES`]); when full, the records of sources
//! that are neither trusted nor over their limit go (they hold nothing worth keeping).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::rate::{TokenBucket, source_key};

/// Datagrams a second an untrusted source may send, sustained, and in a burst.
pub const PER_SOURCE_RATE: u32 = 50;
pub const PER_SOURCE_BURST: u32 = 200;
/// Datagrams a second all untrusted sources together may send, sustained and in a burst.
pub const GLOBAL_RATE: u32 = 2_000;
pub const GLOBAL_BURST: u32 = 8_000;
/// How long an address that authenticated stays trusted.
pub const TRUST_FOR: Duration = Duration::from_secs(3_600);
/// Source records kept.
pub const MAX_SOURCES: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Source {
    bucket: TokenBucket,
    trusted_until: Option<Instant>,
}

/// The per-source and global limits; see the module doc.
#[derive(Debug)]
pub struct FloodGuard {
    sources: HashMap<IpAddr, Source>,
    global: TokenBucket,
    /// sip_svr's address: never limited.
    server: Option<IpAddr>,
    /// Datagrams dropped for a limit, and scanner requests dropped.
    pub dropped: u64,
    pub scanners: u64,
}

impl FloodGuard {
    pub fn new(now: Instant, server: Option<IpAddr>) -> Self {
        FloodGuard {
            sources: HashMap::new(),
            global: TokenBucket::full(now, GLOBAL_BURST),
            server,
            dropped: 0,
            scanners: 0,
        }
    }

    /// Whether a datagram from `source` may be handled; counts it against the limits.
    pub fn admit(&mut self, now: Instant, source: IpAddr) -> bool {
        if Some(source) == self.server {
            return true;
        }
        let record = self.record(now, source);
        if record.trusted_until.is_some_and(|t| now < t) {
            return true;
        }
        let ok = record.bucket.take(now, PER_SOURCE_RATE, PER_SOURCE_BURST)
            && self.global.take(now, GLOBAL_RATE, GLOBAL_BURST);
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    /// A request from `source` authenticated: the address is trusted for [`TRUST_FOR`].
    pub fn trust(&mut self, now: Instant, source: IpAddr) {
        self.record(now, source).trusted_until = Some(now + TRUST_FOR);
    }

    /// The record of `source`'s key, made (with a full bucket) when there is none.
    fn record(&mut self, now: Instant, source: IpAddr) -> &mut Source {
        let source = source_key(source);
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.make_room(now);
        }
        self.sources.entry(source).or_insert(Source {
            bucket: TokenBucket::full(now, PER_SOURCE_BURST),
            trusted_until: None,
        })
    }

    /// Source records held.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Drops the records of sources neither trusted nor short of tokens; when every
    /// record is one of those, the untrusted ones all go.
    fn make_room(&mut self, now: Instant) {
        let trusted = |s: &Source| s.trusted_until.is_some_and(|t| now < t);
        self.sources
            .retain(|_, s| trusted(s) || s.bucket.below_half(PER_SOURCE_BURST));
        if self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, s| trusted(s));
        }
    }
}

/// Whether a `User-Agent` names a known SIP scanner (SIPVicious and its relatives). Such
/// requests are dropped without an answer: a scanner learns nothing, not even that SIP
/// is here.
pub fn is_scanner(user_agent: &str) -> bool {
    const SCANNERS: [&str; 6] = [
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "sip-scan",
        "sundayddr",
        "iwar",
    ];
    let ua = user_agent.trim().to_ascii_lowercase();
    SCANNERS.iter().any(|s| ua.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let t0 = t0();
        let mut g = FloodGuard::new(t0, None);
        let admitted = (0..1_000).filter(|_| g.admit(t0, ip(1))).count();
        assert_eq!(admitted, PER_SOURCE_BURST as usize);
        assert!(g.admit(t0, ip(2)), "another source is not affected");
        let t1 = t0 + Duration::from_secs(1);
        let admitted = (0..1_000).filter(|_| g.admit(t1, ip(1))).count();
        assert_eq!(admitted, PER_SOURCE_RATE as usize);
        assert_eq!(g.dropped, (1_000 - 200 + 1_000 - 50) as u64);
    }

    #[test]
    fn sip_svr_and_authenticated_addresses_are_never_limited() {
        let t0 = t0();
        let server = ip(9);
        let mut g = FloodGuard::new(t0, Some(server));
        assert!((0..10_000).all(|_| g.admit(t0, server)));
        for _ in 0..PER_SOURCE_BURST {
            g.admit(t0, ip(1));
        }
        assert!(!g.admit(t0, ip(1)), "over its limit");
        g.trust(t0, ip(1));
        assert!(
            (0..10_000).all(|_| g.admit(t0, ip(1))),
            "trusted after authenticating"
        );
        let later = t0 + TRUST_FOR + Duration::from_secs(1);
        assert!((0..1_000).any(|_| !g.admit(later, ip(1))), "trust expires");
    }

    #[test]
    fn many_sources_together_meet_the_global_limit() {
        let t0 = t0();
        let mut g = FloodGuard::new(t0, None);
        let mut admitted = 0;
        for i in 0..20_000u32 {
            let source = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            admitted += usize::from(g.admit(t0, source));
        }
        assert_eq!(admitted, GLOBAL_BURST as usize);
    }

    #[test]
    fn the_source_table_stays_bounded_and_keeps_the_trusted() {
        let t0 = t0();
        let mut g = FloodGuard::new(t0, None);
        g.trust(t0, ip(5));
        for i in 0..(MAX_SOURCES as u32 + 1_000) {
            g.admit(t0, IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            assert!(g.sources() <= MAX_SOURCES);
        }
        assert!((0..1_000).all(|_| g.admit(t0, ip(5))));
    }

    #[test]
    fn the_addresses_of_one_ipv6_64_share_a_limit() {
        let t0 = t0();
        let mut g = FloodGuard::new(t0, None);
        let host = |i: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
        let admitted = (0..1_000).filter(|&i| g.admit(t0, host(i))).count();
        assert_eq!(admitted, PER_SOURCE_BURST as usize);
        let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert!(g.admit(t0, other), "another /64");
    }

    #[test]
    fn scanners_are_known_by_their_user_agent() {
        for ua in [
            "friendly-scanner",
            "sipvicious 0.3.0",
            "SIPCLI/v1.8",
            "sundayddr",
            "iWar",
        ] {
            assert!(is_scanner(ua), "{ua}");
        }
        for ua in [
            "Linphone/5.2",
            "baresip v3.10",
            "Yealink SIP-T46S",
            "srgate",
        ] {
            assert!(!is_scanner(ua), "{ua}");
        }
    }
}
