//! Digest replay protection for srgate as a digest server: the uses of each nonce.
//!
//! With `qop=auth` a client counts its requests on one nonce in `nc`; srgate accepts a
//! nonce again only with a greater `nc` than the last it accepted. Credentials without
//! `qop` (RFC 2069) carry no count: their nonce is good for one request. A replayed
//! Authorization header (same nonce, same or lower `nc`) is therefore refused, whatever
//! Call-ID or Contact the replaying request has.
//!
//! The table is bounded. A use is remembered while its nonce is fresh (issue time plus
//! the nonce lifetime); when the table is full the oldest remembered use is dropped and
//! every nonce issued up to that one's issue second that is not remembered counts as
//! used up from then on (its client is re-challenged with `stale=true`), so dropping an
//! entry never opens a replay.

use std::collections::{HashMap, VecDeque};

/// Uses remembered by default: a registrar answering 50 REGISTERs a second keeps every
/// use of a 5-minute nonce lifetime.
pub const NONCE_USES: usize = 16_384;

/// One of srgate's nonces: its issue second and issue counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NonceId {
    pub issued: u32,
    pub counter: u32,
}

/// The uses of srgate's nonces; see the module doc.
#[derive(Debug)]
pub struct NonceUses {
    /// The highest `nc` accepted per nonce (0 for a use without `qop`).
    last_nc: HashMap<NonceId, u32>,
    /// Nonces in the order their first use was accepted.
    order: VecDeque<NonceId>,
    /// Nonces issued at or before this second and not in `last_nc` count as used.
    floor: Option<u32>,
    capacity: usize,
}

impl NonceUses {
    /// A table remembering at most `capacity` (at least 1) nonces.
    pub fn new(capacity: usize) -> Self {
        NonceUses {
            last_nc: HashMap::new(),
            order: VecDeque::new(),
            floor: None,
            capacity: capacity.max(1),
        }
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.last_nc.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.last_nc.is_empty()
    }

    /// Accepts one use of `nonce` with `nc` (`None`: credentials without `qop`) and
    /// remembers it, or refuses it as a replay. `now` is the current second on the nonce
    /// clock; uses of nonces older than `lifetime` seconds are forgotten first (such a
    /// nonce is stale anyway).
    pub fn accept(&mut self, nonce: NonceId, nc: Option<u32>, now: u32, lifetime: u32) -> bool {
        while let Some(front) = self.order.front()
            && front.issued.saturating_add(lifetime) < now
        {
            self.last_nc.remove(front);
            self.order.pop_front();
        }
        if let Some(last) = self.last_nc.get_mut(&nonce) {
            return match nc {
                Some(nc) if nc > *last => {
                    *last = nc;
                    true
                }
                _ => false,
            };
        }
        if self.floor.is_some_and(|floor| nonce.issued <= floor) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.last_nc.remove(&oldest);
            self.floor = Some(self.floor.map_or(oldest.issued, |f| f.max(oldest.issued)));
        }
        self.last_nc.insert(nonce, nc.unwrap_or(0));
        self.order.push_back(nonce);
        true
    }
}

/// `nc` as the client sent it: 1–8 hex digits.
pub fn parse_nc(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 8 {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(issued: u32, counter: u32) -> NonceId {
        NonceId { issued, counter }
    }

    #[test]
    fn nc_must_grow_and_a_nonce_without_qop_is_good_once() {
        let mut uses = NonceUses::new(8);
        assert!(uses.accept(id(10, 1), Some(1), 10, 300));
        assert!(!uses.accept(id(10, 1), Some(1), 11, 300), "same nc: replay");
        assert!(uses.accept(id(10, 1), Some(2), 12, 300));
        assert!(
            !uses.accept(id(10, 1), Some(1), 12, 300),
            "lower nc: replay"
        );
        assert!(
            !uses.accept(id(10, 1), None, 12, 300),
            "qop dropped: replay"
        );
        assert!(uses.accept(id(10, 2), None, 12, 300));
        assert!(!uses.accept(id(10, 2), None, 13, 300), "no qop: one use");
        // another nonce of the same second is not affected
        assert!(uses.accept(id(10, 3), Some(1), 13, 300));
    }

    #[test]
    fn uses_are_forgotten_once_their_nonce_is_stale() {
        let mut uses = NonceUses::new(8);
        assert!(uses.accept(id(0, 1), Some(1), 0, 300));
        assert!(uses.accept(id(200, 2), Some(1), 200, 300));
        assert_eq!(uses.len(), 2);
        assert!(uses.accept(id(350, 3), Some(1), 350, 300));
        assert_eq!(uses.len(), 2, "the nonce of second 0 is stale at 350");
        assert!(
            !uses.accept(id(200, 2), Some(1), 350, 300),
            "still remembered"
        );
    }

    #[test]
    fn a_full_table_never_lets_a_dropped_nonce_be_replayed() {
        let mut uses = NonceUses::new(2);
        assert!(uses.accept(id(1, 1), Some(1), 5, 300));
        assert!(uses.accept(id(2, 2), Some(1), 5, 300));
        assert!(uses.accept(id(3, 3), Some(1), 5, 300)); // drops nonce (1, 1)
        assert_eq!(uses.len(), 2);
        assert!(!uses.accept(id(1, 1), Some(1), 6, 300), "dropped: used up");
        assert!(
            !uses.accept(id(1, 9), Some(1), 6, 300),
            "issued before the floor"
        );
        assert!(uses.accept(id(2, 2), Some(2), 6, 300), "still remembered");
        assert!(
            uses.accept(id(4, 4), Some(1), 6, 300),
            "issued after the floor"
        );
    }

    #[test]
    fn nc_is_read_as_hex() {
        assert_eq!(parse_nc("00000001"), Some(1));
        assert_eq!(parse_nc("0000000a"), Some(10));
        assert_eq!(parse_nc("FFFFFFFF"), Some(u32::MAX));
        assert_eq!(parse_nc(""), None);
        assert_eq!(parse_nc("123456789"), None);
        assert_eq!(parse_nc("xyz"), None);
    }
}
