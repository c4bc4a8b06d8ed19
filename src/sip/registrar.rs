//! The built-in registrar's location service (RFC 3261 §10.3): bindings of an
//! address-of-record (a `[users]` name) to contact URIs, each with its own expiry.
//! Pure bookkeeping; the endpoint does authentication and the wire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::endpoint::Transport;

/// Longest registration granted; longer requests are shortened to it.
pub const MAX_EXPIRES: u32 = 3600;
/// Shortest non-zero registration accepted; shorter gets 423 Interval Too Brief.
pub const MIN_EXPIRES: u32 = 60;
/// Used when the REGISTER names no expiry at all.
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Bindings kept per user: a phone, a softphone and a few more; more gets 403.
pub const MAX_BINDINGS_PER_USER: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI exactly as the phone sent it (without `<>` and header params).
    pub contact: String,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from: requests to this phone go there (it is behind NAT
    /// more often than not, and RFC 5626-less phones expect it).
    pub source: SocketAddr,
    pub transport: Transport,
}

impl Binding {
    pub fn remaining(&self, now: Instant) -> u32 {
        self.expires_at.saturating_duration_since(now).as_secs() as u32
    }
}

/// One contact of a REGISTER, as the endpoint extracted it.
#[derive(Clone, Debug)]
pub struct ContactUpdate<'a> {
    pub contact: &'a str,
    pub expires: u32,
}

/// Why a REGISTER was refused; each maps to one response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// 500: same Call-ID with a CSeq not higher than the binding's (RFC 3261 §10.3 step 7).
    OutOfOrder,
    /// 423 Interval Too Brief, with Min-Expires.
    IntervalTooBrief,
    /// 403: the user already has `MAX_BINDINGS_PER_USER` bindings.
    TooManyBindings,
}

#[derive(Default)]
pub struct Registrar {
    bindings: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    pub fn new() -> Self {
        Registrar::default()
    }

    /// Applies one REGISTER's contacts for `user` (RFC 3261 §10.3 steps 6-8): expiry 0
    /// removes, others add or refresh. All or nothing: on error nothing changes.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        now: Instant,
        user: &str,
        call_id: &str,
        cseq: u32,
        source: SocketAddr,
        transport: Transport,
        contacts: &[ContactUpdate<'_>],
    ) -> Result<(), RegisterError> {
        self.purge_user(now, user);
        let current = self.bindings.get(user).map(Vec::as_slice).unwrap_or(&[]);
        for c in contacts {
            if c.expires != 0 && c.expires < MIN_EXPIRES {
                return Err(RegisterError::IntervalTooBrief);
            }
            if let Some(b) = current.iter().find(|b| same_contact(&b.contact, c.contact))
                && b.call_id == call_id
                && cseq <= b.cseq
            {
                return Err(RegisterError::OutOfOrder);
            }
        }
        let mut next: Vec<Binding> = current.to_vec();
        for c in contacts {
            next.retain(|b| !same_contact(&b.contact, c.contact));
            if c.expires > 0 {
                next.push(Binding {
                    contact: c.contact.to_string(),
                    expires_at: now + Duration::from_secs(u64::from(c.expires.min(MAX_EXPIRES))),
                    call_id: call_id.to_string(),
                    cseq,
                    source,
                    transport,
                });
            }
        }
        if next.len() > MAX_BINDINGS_PER_USER {
            return Err(RegisterError::TooManyBindings);
        }
        if next.is_empty() {
            self.bindings.remove(user);
        } else {
            self.bindings.insert(user.to_string(), next);
        }
        Ok(())
    }

    /// `Contact: *` with `Expires: 0`: removes every binding of `user`, unless one of them
    /// has the same Call-ID and a higher or equal CSeq (then the request is out of order).
    pub fn remove_all(
        &mut self,
        now: Instant,
        user: &str,
        call_id: &str,
        cseq: u32,
    ) -> Result<(), RegisterError> {
        self.purge_user(now, user);
        if let Some(list) = self.bindings.get(user)
            && list.iter().any(|b| b.call_id == call_id && cseq <= b.cseq)
        {
            return Err(RegisterError::OutOfOrder);
        }
        self.bindings.remove(user);
        Ok(())
    }

    /// The live bindings of `user`.
    pub fn bindings(&self, now: Instant, user: &str) -> impl Iterator<Item = &Binding> {
        self.bindings
            .get(user)
            .into_iter()
            .flatten()
            .filter(move |b| b.expires_at > now)
    }

    pub fn is_registered(&self, now: Instant, user: &str) -> bool {
        self.bindings(now, user).next().is_some()
    }

    /// Whether `source` is the address a live binding registered from: such a phone may
    /// send requests without authenticating each one again. (Used for in-dialog requests
    /// later; INVITEs always authenticate.)
    pub fn registered_from(&self, now: Instant, source: SocketAddr) -> Option<&str> {
        self.bindings.iter().find_map(|(user, list)| {
            list.iter()
                .any(|b| b.source == source && b.expires_at > now)
                .then_some(user.as_str())
        })
    }

    /// Drops expired bindings everywhere; returns how many went.
    pub fn purge(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        self.bindings.retain(|_, list| {
            let before = list.len();
            list.retain(|b| b.expires_at > now);
            gone += before - list.len();
            !list.is_empty()
        });
        gone
    }

    /// When the next binding expires (so the endpoint can purge on time).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.bindings.values().flatten().map(|b| b.expires_at).min()
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    fn purge_user(&mut self, now: Instant, user: &str) {
        if let Some(list) = self.bindings.get_mut(user) {
            list.retain(|b| b.expires_at > now);
            if list.is_empty() {
                self.bindings.remove(user);
            }
        }
    }
}

/// Contact URIs compared as RFC 3261 §10.3 step 6 asks (URI equality). Good enough here:
/// case-insensitive scheme and host parts, exact user; parameters in any order are rare
/// in practice, so we compare the whole text case-insensitively except the user part.
fn same_contact(a: &str, b: &str) -> bool {
    let user_end = |s: &str| s.find('@').unwrap_or(0);
    let (ua, ub) = (user_end(a), user_end(b));
    a[..ua] == b[..ub] && a[ua..].eq_ignore_ascii_case(&b[ub..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn src() -> SocketAddr {
        "127.0.0.1:5062".parse().unwrap()
    }

    fn c(contact: &str, expires: u32) -> ContactUpdate<'_> {
        ContactUpdate { contact, expires }
    }

    #[test]
    fn bindings_are_added_refreshed_expire_and_are_removed() {
        let now = t0();
        let mut r = Registrar::new();
        r.update(
            now,
            "1001",
            "cid",
            1,
            src(),
            Transport::Udp,
            &[c("sip:1001@h:5062", 120)],
        )
        .unwrap();
        assert!(r.is_registered(now, "1001"));
        assert!(!r.is_registered(now, "1002"));
        assert_eq!(r.bindings(now, "1001").next().unwrap().remaining(now), 120);
        // refresh with a higher CSeq; the same contact with a different host case is the same binding
        r.update(
            now + Duration::from_secs(60),
            "1001",
            "cid",
            2,
            src(),
            Transport::Udp,
            &[c("sip:1001@H:5062", 120)],
        )
        .unwrap();
        assert_eq!(r.binding_count(), 1);
        assert!(r.is_registered(now + Duration::from_secs(179), "1001"));
        assert!(!r.is_registered(now + Duration::from_secs(180), "1001"));
        assert_eq!(r.purge(now + Duration::from_secs(180)), 1);
        assert_eq!(r.binding_count(), 0);
        r.update(
            now,
            "1001",
            "cid",
            3,
            src(),
            Transport::Udp,
            &[c("sip:1001@h:5062", 120)],
        )
        .unwrap();
        r.update(
            now,
            "1001",
            "cid",
            4,
            src(),
            Transport::Udp,
            &[c("sip:1001@h:5062", 0)],
        )
        .unwrap();
        assert!(
            !r.is_registered(now, "1001"),
            "expires 0 removes the binding"
        );
    }

    #[test]
    fn out_of_order_too_brief_capped_and_wildcard() {
        let now = t0();
        let mut r = Registrar::new();
        r.update(
            now,
            "u",
            "cid",
            5,
            src(),
            Transport::Udp,
            &[c("sip:u@a", 7200)],
        )
        .unwrap();
        assert_eq!(
            r.bindings(now, "u").next().unwrap().remaining(now),
            MAX_EXPIRES,
            "capped"
        );
        assert_eq!(
            r.update(
                now,
                "u",
                "cid",
                5,
                src(),
                Transport::Udp,
                &[c("sip:u@a", 100)]
            ),
            Err(RegisterError::OutOfOrder)
        );
        assert_eq!(
            r.update(
                now,
                "u",
                "other",
                1,
                src(),
                Transport::Udp,
                &[c("sip:u@b", 30)]
            ),
            Err(RegisterError::IntervalTooBrief)
        );
        r.update(
            now,
            "u",
            "other",
            1,
            src(),
            Transport::Udp,
            &[c("sip:u@b", 100)],
        )
        .unwrap();
        assert_eq!(r.binding_count(), 2);
        assert_eq!(r.registered_from(now, src()), Some("u"));
        assert_eq!(
            r.remove_all(now, "u", "cid", 5),
            Err(RegisterError::OutOfOrder)
        );
        r.remove_all(now, "u", "cid", 6).unwrap();
        assert_eq!(r.binding_count(), 0);
    }

    #[test]
    fn too_many_bindings_changes_nothing() {
        let now = t0();
        let mut r = Registrar::new();
        let uris: Vec<String> = (0..=MAX_BINDINGS_PER_USER)
            .map(|i| format!("sip:u@h{i}"))
            .collect();
        for u in &uris[..MAX_BINDINGS_PER_USER] {
            r.update(now, "u", u, 1, src(), Transport::Udp, &[c(u, 100)])
                .unwrap();
        }
        let last = &uris[MAX_BINDINGS_PER_USER];
        assert_eq!(
            r.update(now, "u", last, 1, src(), Transport::Udp, &[c(last, 100)]),
            Err(RegisterError::TooManyBindings)
        );
        assert_eq!(r.binding_count(), MAX_BINDINGS_PER_USER);
    }
}
