//! Per-packet figures of a run: frames sent and echoed back, loss, reordering, damaged
//! payloads, and the round-trip time as a histogram (fixed buckets: nothing allocated per
//! packet).

use std::time::{Duration, Instant};

/// Round-trip times in 50 µs buckets up to 2 s; slower ones land in the last bucket.
const BUCKET_US: u64 = 50;
const BUCKETS: usize = 40_000;

#[derive(Clone)]
pub struct Rtt {
    counts: Vec<u32>,
    total: u64,
}

impl Default for Rtt {
    fn default() -> Self {
        Rtt {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Rtt {
    pub fn add(&mut self, us: u64) {
        let i = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
    }

    /// The `q` quantile (0..=1) in milliseconds: the upper edge of its bucket.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let want = ((self.total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= want {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        (BUCKETS as u64 * BUCKET_US) as f64 / 1000.0
    }
}

/// What one call's browser side saw of its own frames coming back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo {
    /// Frames sent.
    pub sent: u64,
    /// Frames received back (duplicates not counted).
    pub received: u64,
    /// Frames that came back before one sent earlier.
    pub reordered: u64,
    /// Frames whose tone bytes came back changed.
    pub damaged: u64,
    /// The highest sequence number received so far, plus one (0: none yet).
    pub next_seq: u32,
}

impl Echo {
    pub fn on_receive(&mut self, seq: u32) {
        if seq + 1 > self.next_seq {
            self.next_seq = seq + 1;
        } else {
            self.reordered += 1;
        }
        self.received += 1;
    }
}

/// The 20 ms send grid of one call: the frame due at `due` leaves at `now`. Returns whether
/// it left late (over 10 ms: the generator fell behind) and when the next frame is due —
/// on the grid, or from `now` again after a stall of over 100 ms.
pub fn pace(due: Instant, now: Instant) -> (bool, Instant) {
    let late = now > due + Duration::from_millis(10);
    let next = due + Duration::from_millis(20);
    let next = if next + Duration::from_millis(100) < now {
        now
    } else {
        next
    };
    (late, next)
}

/// Figures over a measurement window: the window's counts are the difference of two
/// totals, so frames in flight at the edges are not counted lost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    pub reordered: u64,
    pub damaged: u64,
}

impl Totals {
    /// The calls' figures added up.
    pub fn sum<'a>(echoes: impl Iterator<Item = &'a Echo>) -> Totals {
        let mut t = Totals::default();
        for e in echoes {
            t.sent += e.sent;
            t.received += e.received;
            t.reordered += e.reordered;
            t.damaged += e.damaged;
        }
        t
    }

    pub fn minus(&self, before: &Totals) -> Totals {
        Totals {
            sent: self.sent - before.sent,
            received: self.received - before.received,
            reordered: self.reordered - before.reordered,
            damaged: self.damaged - before.damaged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_keeps_the_grid_and_restarts_after_a_stall() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(pace(t0, t0 + ms(3)), (false, t0 + ms(20)));
        assert_eq!(pace(t0, t0 + ms(15)), (true, t0 + ms(20)));
        assert_eq!(pace(t0, t0 + ms(500)), (true, t0 + ms(500)));
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut rtt = Rtt::default();
        for us in 0..1000 {
            rtt.add(us);
        }
        assert_eq!(rtt.total, 1000);
        assert_eq!(rtt.quantile_ms(0.5), 0.5);
        assert_eq!(rtt.quantile_ms(0.99), 1.0);
        rtt.add(10_000_000);
        assert_eq!(rtt.quantile_ms(1.0), 2000.0);
    }

    #[test]
    fn a_late_frame_counts_as_reordered() {
        let mut e = Echo::default();
        for seq in [0, 1, 3, 2, 4] {
            e.on_receive(seq);
        }
        assert_eq!((e.received, e.reordered, e.next_seq), (5, 1, 5));
    }
}
