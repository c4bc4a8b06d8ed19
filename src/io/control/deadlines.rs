//! The deadlines of shard 0's connections (web, SIP TCP, API), one min-heap per kind, so
//! that neither finding the next deadline nor expiring the due ones visits every
//! connection on every turn of the loop.
//!
//! A connection's deadline only moves later while it lives (more was heard, a ping went
//! out), so the heap keeps at most one entry per slot, which may be earlier than the
//! slot's deadline: when it comes up, the caller looks at the connection and schedules it
//! again for its real deadline. An entry for a slot that was cancelled or scheduled
//! earlier since is stale and skipped when it comes up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per slot: the entry of the heap that counts.
    scheduled: Vec<Option<Instant>>,
}

impl Deadlines {
    /// Slot `slot` is due at `at` at the latest (a later one than it has changes nothing:
    /// that entry comes up first and is looked at then).
    pub fn schedule(&mut self, slot: usize, at: Instant) {
        if self.scheduled.len() <= slot {
            self.scheduled.resize(slot + 1, None);
        }
        if self.scheduled[slot].is_some_and(|t| t <= at) {
            return;
        }
        self.scheduled[slot] = Some(at);
        self.heap.push(Reverse((at, slot)));
    }

    /// Slot `slot` was closed.
    pub fn cancel(&mut self, slot: usize) {
        if let Some(s) = self.scheduled.get_mut(slot) {
            *s = None;
        }
    }

    /// The earliest entry (perhaps a stale one: a wake-up that then finds nothing due).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// A slot whose entry is due at `now`, taken off the heap; `None` when none is.
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((t, slot))) = self.heap.peek() {
            if t > now {
                return None;
            }
            self.heap.pop();
            if self.scheduled.get(slot).copied().flatten() == Some(t) {
                self.scheduled[slot] = None;
                return Some(slot);
            }
        }
        None
    }

    /// Gives back the memory a burst of connections grew (`slots`: the table's length now).
    pub fn shrink(&mut self, slots: usize) {
        self.scheduled.truncate(slots);
        self.scheduled.shrink_to_fit();
        self.heap.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn due_slots_come_up_in_order_once() {
        let t = t0();
        let mut d = Deadlines::default();
        d.schedule(2, t + s(30));
        d.schedule(0, t + s(10));
        d.schedule(1, t + s(20));
        assert_eq!(d.next(), Some(t + s(10)));
        assert_eq!(d.pop_due(t + s(5)), None);
        assert_eq!(d.pop_due(t + s(25)), Some(0));
        assert_eq!(d.pop_due(t + s(25)), Some(1));
        assert_eq!(d.pop_due(t + s(25)), None);
        assert_eq!(d.next(), Some(t + s(30)));
    }

    #[test]
    fn a_later_deadline_waits_for_the_earlier_entry_and_an_earlier_one_replaces_it() {
        let t = t0();
        let mut d = Deadlines::default();
        d.schedule(0, t + s(10));
        // later: the entry at 10 s stays; the caller looks then and schedules again
        d.schedule(0, t + s(40));
        assert_eq!(d.next(), Some(t + s(10)));
        assert_eq!(d.pop_due(t + s(10)), Some(0));
        d.schedule(0, t + s(40));
        // earlier: it counts, and the 40 s entry is stale
        d.schedule(0, t + s(15));
        assert_eq!(d.pop_due(t + s(15)), Some(0));
        assert_eq!(d.pop_due(t + s(60)), None, "the stale entry is skipped");
        assert_eq!(d.next(), None);
    }

    #[test]
    fn a_cancelled_slot_never_comes_up_even_when_reused_later() {
        let t = t0();
        let mut d = Deadlines::default();
        d.schedule(3, t + s(10));
        d.cancel(3);
        d.schedule(3, t + s(20)); // the slot's next connection
        assert_eq!(d.pop_due(t + s(15)), None);
        assert_eq!(d.pop_due(t + s(20)), Some(3));
        d.schedule(4, t + s(5));
        d.cancel(4);
        d.shrink(4);
        assert_eq!(d.pop_due(t + s(100)), None);
    }
}
