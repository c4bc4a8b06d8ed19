//! Rate limiting: the one token bucket of srgate (SIP floods, failed logins' neighbours,
//! CDRs of refused calls, new web connections) and the key a source is limited under.
//! Sans-IO: the caller passes the time.

use std::net::IpAddr;
use std::time::Instant;

/// The key under which one source is counted and limited: the IPv4 address (also when it
/// arrives IPv4-mapped on a dual-stack socket) or the IPv6 /64, which one host usually
/// holds whole (so it cannot step around a limit by changing its address in there).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// Up to `burst` events at once, `rate` a second sustained. Kept in thousandths of an
/// event, so rates below one a millisecond refill smoothly.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    milli: u64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(now: Instant, burst: u32) -> Self {
        TokenBucket {
            milli: u64::from(burst) * 1000,
            at: now,
        }
    }

    /// Takes one token if there is one, after refilling for the time since the last call.
    pub fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        let refill = (elapsed.as_micros() as u64).saturating_mul(u64::from(rate)) / 1000;
        self.milli = self
            .milli
            .saturating_add(refill)
            .min(u64::from(burst) * 1000);
        match self.milli.checked_sub(1000) {
            Some(left) => {
                self.milli = left;
                true
            }
            None => false,
        }
    }

    /// Whether less than half of `burst` is left (the owner has been busy lately).
    pub fn below_half(&self, burst: u32) -> bool {
        self.milli < u64::from(burst) * 500
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut b = TokenBucket::full(t0, 10);
        assert_eq!((0..100).filter(|_| b.take(t0, 4, 10)).count(), 10);
        assert!(b.below_half(10));
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.take(t1, 4, 10)).count(), 2);
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(
            (0..100).filter(|_| b.take(t2, 4, 10)).count(),
            10,
            "never above the burst"
        );
    }
}
