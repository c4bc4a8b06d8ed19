//! RFC 3550 receive statistics of one incoming RTP stream (A.1 sequence tracking, A.3
//! loss, A.8 interarrival jitter), and the report block they make (§6.4.1). Shared by the transcoder and the
//! relay. A new SSRC starts the statistics afresh.

use std::time::Instant;

use crate::wire::rtcp::ReportBlock;

#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiveStats {
    ssrc: Option<u32>,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// The first arrival: arrival times in timestamp units count from it.
    anchor: Option<Instant>,
    /// The last packet's relative transit time (arrival − RTP timestamp, wrapping).
    transit: Option<u32>,
    /// Interarrival jitter × 16 (A.8 keeps it scaled for integer arithmetic).
    jitter16: u32,
}

impl ReceiveStats {
    /// One packet of `ssrc` with sequence number `seq`.
    pub fn update(&mut self, ssrc: u32, seq: u16) {
        if self.ssrc != Some(ssrc) {
            *self = ReceiveStats {
                ssrc: Some(ssrc),
                base_seq: seq,
                max_seq: seq,
                ..ReceiveStats::default()
            };
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        }
        self.received = self.received.wrapping_add(1);
    }

    /// RFC 3550 A.8: the packet that `update` just counted carried RTP timestamp `ts` at
    /// `clock_rate` and arrived at `now`; the interarrival jitter follows it.
    pub fn arrived(&mut self, ts: u32, now: Instant, clock_rate: u32) {
        let anchor = *self.anchor.get_or_insert(now);
        // u64 microseconds times a clock rate: centuries before it wraps
        let micros = now.saturating_duration_since(anchor).as_micros() as u64;
        // arrival in timestamp units, modulo 2^32 as RTP timestamps are
        let arrival = (micros.saturating_mul(u64::from(clock_rate)) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(ts);
        if let Some(previous) = self.transit {
            let d = (transit.wrapping_sub(previous) as i32).unsigned_abs();
            self.jitter16 = self
                .jitter16
                .saturating_add(d)
                .saturating_sub(self.jitter16.saturating_add(8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// The extended highest sequence number received.
    pub fn extended_max(&self) -> u32 {
        self.cycles | u32::from(self.max_seq)
    }

    fn expected(&self) -> u32 {
        self.extended_max()
            .wrapping_sub(u32::from(self.base_seq))
            .wrapping_add(1)
    }

    /// Packets lost since the stream started (negative with duplicates).
    pub fn lost(&self) -> i64 {
        if self.ssrc.is_none() {
            return 0;
        }
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// A report block (`None` before the first packet); updates the interval counters
    /// behind the fraction lost, so call it once per report sent. LSR/DLSR are left 0.
    pub fn report_block(&mut self, jitter: u32) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so the quotient fits in 8 bits.
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_sequence: self.extended_max(),
            jitter,
            last_sr: 0,
            delay_since_last_sr: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_follows_uneven_arrivals() {
        use std::time::Duration;
        let t0 = base();
        let mut s = ReceiveStats::default();
        for i in 0..200u32 {
            s.update(1, i as u16);
            s.arrived(
                5000 + i * 160,
                t0 + Duration::from_millis(u64::from(i) * 20),
                8000,
            );
        }
        assert_eq!(s.jitter(), 0);
        // every other packet 10 ms late: |D| is 80 ticks each time, the estimate nears it
        let mut s = ReceiveStats::default();
        for i in 0..400u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            s.update(1, i as u16);
            s.arrived(
                i * 160,
                t0 + Duration::from_millis(u64::from(i) * 20 + late),
                8000,
            );
        }
        assert!((75..=80).contains(&s.jitter()), "{}", s.jitter());
        assert_eq!(s.report_block(s.jitter()).unwrap().jitter, s.jitter());
        // a new SSRC starts over
        s.update(2, 7);
        s.arrived(0, t0 + Duration::from_secs(9), 8000);
        assert_eq!(s.jitter(), 0);
    }

    #[test]
    fn counts_loss_across_a_wrap_and_restarts_on_a_new_ssrc() {
        let mut s = ReceiveStats::default();
        assert!(s.report_block(0).is_none());
        for seq in [65_533u16, 65_534, 0, 2, 3] {
            s.update(1, seq);
        }
        assert_eq!(s.lost(), 2); // 65_535 and 1
        let b = s.report_block(7).unwrap();
        assert_eq!(
            (b.cumulative_lost, b.highest_sequence, b.jitter),
            (2, 65_539, 7)
        );
        assert_eq!(b.fraction_lost, (2 * 256 / 7) as u8);
        s.update(2, 100);
        assert_eq!(s.lost(), 0);
    }
}
