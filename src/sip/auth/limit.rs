//! Failed digest authentications, limited per source address and per user, so that
//! passwords cannot be guessed at the speed of the network.
//!
//! - **Per source** (an IPv4 address or an IPv6 /64): the first [`FREE_FAILURES`]
//!   failures cost nothing; each one after that blocks the address for a back-off that
//!   doubles (1 s, 2 s, 4 s … up to
//!   [`MAX_BACKOFF`]). While blocked, every request of the address that carries
//!   credentials is refused (403) without the password being checked, so a guess made
//!   then says nothing. A success from the address clears its record; so does
//!   [`FORGET_AFTER`] without a failure.
//! - **Per user** (only for names that exist: guessing names costs the source, not the
//!   user): after [`FREE_USER_FAILURES`] failures from any addresses the user is blocked
//!   the same way, except from the addresses it authenticated from before
//!   ([`KNOWN_ADDRESSES`] per user): many guessing hosts cannot lock the real phone out.
//!
//! Both tables are bounded ([`MAX_SOURCES`]; users are the configured ones); a full
//! source table drops the sources that are not blocked. Sans-IO: the caller passes the
//! time, logs (one line per failure while not blocked, see the endpoint) and answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::rate::source_key;

/// Failures per source before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// Failures per user (from all sources) before the back-off starts.
pub const FREE_USER_FAILURES: u32 = 10;
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A record without a new failure for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Source addresses remembered.
pub const MAX_SOURCES: usize = 65_536;
/// Addresses remembered per user as ones it authenticated from.
pub const KNOWN_ADDRESSES: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Self {
        Record {
            failures: 0,
            last: now,
            blocked_until: None,
        }
    }

    /// Counts a failure; the back-off it starts, if any.
    fn fail(&mut self, now: Instant, free: u32) -> Option<Duration> {
        if now.saturating_duration_since(self.last) >= FORGET_AFTER {
            *self = Record::new(now);
        }
        self.failures = self.failures.saturating_add(1);
        self.last = now;
        let over = self.failures.checked_sub(free).filter(|&o| o > 0)?;
        let backoff = Duration::from_secs(1u64 << over.saturating_sub(1).min(16)).min(MAX_BACKOFF);
        self.blocked_until = Some(now + backoff);
        Some(backoff)
    }

    fn blocked(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|&until| now < until)
            .map(|until| until - now)
    }
}

#[derive(Debug, Default)]
struct UserRecord {
    record: Option<Record>,
    known: heapless::Vec<IpAddr, KNOWN_ADDRESSES>,
}

/// What [`AuthLimiter::failed`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Failures counted for the source (since its last success or its record was
    /// forgotten).
    pub failures: u32,
    /// The back-off this failure started for the source or the user, if any.
    pub backoff: Option<Duration>,
}

/// The failure records; see the module doc.
#[derive(Debug, Default)]
pub struct AuthLimiter {
    sources: HashMap<IpAddr, Record>,
    users: HashMap<String, UserRecord>,
}

impl AuthLimiter {
    /// How much longer a request with credentials from `source` (for `user`, when its
    /// name is known) is refused without being checked; `None`: check it.
    pub fn blocked(&self, now: Instant, source: IpAddr, user: Option<&str>) -> Option<Duration> {
        let source = source_key(source);
        let by_source = self.sources.get(&source).and_then(|r| r.blocked(now));
        let by_user = user
            .and_then(|u| self.users.get(u))
            .filter(|u| !u.known.contains(&source))
            .and_then(|u| u.record.as_ref())
            .and_then(|r| r.blocked(now));
        by_source.max(by_user)
    }

    /// Records a failed authentication from `source`; `user` when the name exists.
    pub fn failed(&mut self, now: Instant, source: IpAddr, user: Option<&str>) -> Failure {
        let source = source_key(source);
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.make_room(now);
        }
        let record = self
            .sources
            .entry(source)
            .or_insert_with(|| Record::new(now));
        let mut backoff = record.fail(now, FREE_FAILURES);
        let failures = record.failures;
        if let Some(user) = user {
            let entry = self.users.entry(user.to_owned()).or_default();
            if !entry.known.contains(&source) {
                let record = entry.record.get_or_insert_with(|| Record::new(now));
                backoff = backoff.max(record.fail(now, FREE_USER_FAILURES));
            }
        }
        Failure { failures, backoff }
    }

    /// Records a successful authentication of `user` from `source`.
    pub fn succeeded(&mut self, source: IpAddr, user: &str) {
        let source = source_key(source);
        self.sources.remove(&source);
        let entry = match self.users.get_mut(user) {
            Some(entry) => entry,
            None => self.users.entry(user.to_owned()).or_default(),
        };
        if !entry.known.contains(&source) {
            if entry.known.is_full() {
                entry.known.remove(0);
            }
            let _ = entry.known.push(source);
        }
    }

    /// Source records held.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Makes room in a full source table: the records that hold nothing worth keeping
    /// go (fewer than [`FREE_FAILURES`] failures, or forgotten by age); blocked sources and
    /// those already past their free failures stay, so a back-off never restarts from
    /// nothing. When every record is worth keeping, all go (logged).
    fn make_room(&mut self, now: Instant) {
        self.sources.retain(|_, r| {
            r.blocked(now).is_some()
                || (r.failures > FREE_FAILURES
                    && now.saturating_duration_since(r.last) < FORGET_AFTER)
        });
        if self.sources.len() >= MAX_SOURCES {
            log::warn!(
                "{} addresses are held back for failed SIP authentications: forgetting them all",
                self.sources.len()
            );
            self.sources.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_source_backs_off_after_its_free_failures_doubling_up_to_the_cap() {
        let t0 = t0();
        let mut l = AuthLimiter::default();
        for i in 1..=FREE_FAILURES {
            let f = l.failed(t0, ip(1), None);
            assert_eq!(
                f,
                Failure {
                    failures: i,
                    backoff: None
                }
            );
            assert_eq!(l.blocked(t0, ip(1), None), None);
        }
        let f = l.failed(t0, ip(1), None);
        assert_eq!(f.backoff, Some(Duration::from_secs(1)));
        assert_eq!(l.blocked(t0, ip(1), None), Some(Duration::from_secs(1)));
        assert_eq!(
            l.blocked(t0, ip(2), None),
            None,
            "another source is not affected"
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.blocked(t1, ip(1), None), None, "the back-off ran out");
        assert_eq!(
            l.failed(t1, ip(1), None).backoff,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            l.failed(t1, ip(1), None).backoff,
            Some(Duration::from_secs(4))
        );
        let mut last = None;
        for _ in 0..30 {
            last = l.failed(t1, ip(1), None).backoff;
        }
        assert_eq!(last, Some(MAX_BACKOFF));
        // forgotten after a quiet spell; a success clears it at once
        let later = t1 + MAX_BACKOFF + FORGET_AFTER;
        assert_eq!(l.failed(later, ip(1), None).failures, 1);
        l.succeeded(ip(1), "1001");
        assert_eq!(l.sources(), 0);
    }

    #[test]
    fn many_sources_guessing_one_user_block_it_except_where_it_logged_in_before() {
        let t0 = t0();
        let mut l = AuthLimiter::default();
        l.succeeded(ip(200), "1001");
        for i in 0..FREE_USER_FAILURES {
            // one failure per source: no source is blocked by itself
            assert_eq!(l.failed(t0, ip(i as u8), Some("1001")).backoff, None);
        }
        let f = l.failed(t0, ip(100), Some("1001"));
        assert_eq!(f.failures, 1);
        assert_eq!(f.backoff, Some(Duration::from_secs(1)));
        assert!(
            l.blocked(t0, ip(101), Some("1001")).is_some(),
            "a new guesser"
        );
        assert_eq!(
            l.blocked(t0, ip(200), Some("1001")),
            None,
            "the phone's address"
        );
        assert_eq!(l.blocked(t0, ip(101), Some("1002")), None, "another user");
        // failures from the phone's own address do not count against the user
        for _ in 0..3 {
            l.failed(t0, ip(200), Some("1001"));
        }
        assert_eq!(l.blocked(t0, ip(200), Some("1001")), None);
    }

    #[test]
    fn the_source_table_stays_bounded_and_keeps_the_blocked() {
        let t0 = t0();
        let mut l = AuthLimiter::default();
        for _ in 0..FREE_FAILURES + 1 {
            l.failed(t0, ip(7), None);
        }
        for i in 0..(2 * MAX_SOURCES as u32) {
            l.failed(t0, IpAddr::from((0x0a00_0000 + i).to_be_bytes()), None);
            assert!(l.sources() <= MAX_SOURCES);
        }
        assert!(l.blocked(t0, ip(7), None).is_some(), "still blocked");
    }
}
