//! Packet indices and replay protection.
//!
//! - RFC 3711 §3.3.1 and Appendix A: the 48-bit SRTP index `2^16 * ROC + SEQ`, with the
//!   rollover counter guessed from the highest index seen so far.
//! - RFC 3711 §3.3.2: a sliding replay window per SSRC ([`WINDOW`] packets), used for the
//!   SRTP index and, separately, for the 31-bit SRTCP index (§3.4).

/// Packets the replay window spans, as libsrtp's default.
pub(super) const WINDOW: u64 = 128;

/// The highest index accepted so far and which of the [`WINDOW`] indices at and below it
/// have been seen. For SRTP the highest index also holds the ROC and `s_l` of RFC 3711.
///
/// Kept in 24 bytes aligned to 8 (a context holds two per SSRC, a call four contexts' worth):
/// no index reaches `NONE` (they have 48 bits), and the bits are two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReplayWindow {
    /// `NONE` until the first packet is accepted.
    top: u64,
    /// Bit `i` of the 128 (low word first) set: index `top - i` was accepted.
    seen: [u64; 2],
}

const NONE: u64 = u64::MAX;

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: NONE,
            seen: [0; 2],
        }
    }
}

/// Why an index is refused before any cryptography is spent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Already accepted once, or older than the window.
    Replay,
    /// The rollover counter would leave its 32 bits: the key is worn out.
    Exhausted,
}

impl ReplayWindow {
    fn top_index(&self) -> Option<u64> {
        (self.top != NONE).then_some(self.top)
    }

    fn bits(&self) -> u128 {
        u128::from(self.seen[0]) | u128::from(self.seen[1]) << 64
    }

    fn set_bits(&mut self, bits: u128) {
        self.seen = [bits as u64, (bits >> 64) as u64];
    }

    /// The SRTP index of a packet carrying `seq` (RFC 3711 Appendix A): the candidate
    /// among ROC-1, ROC and ROC+1 whose index is closest to the highest one seen.
    pub(super) fn estimate_srtp_index(&self, seq: u16) -> Result<u64, Refusal> {
        let Some(top) = self.top_index() else {
            // The first packet of a stream has ROC 0 (RFC 3711 §3.3.1).
            return Ok(u64::from(seq));
        };
        let roc = top >> 16;
        let s_l = top as u16;
        let roc = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                // From before the last wrap; before the stream began if ROC is 0.
                roc.checked_sub(1).ok_or(Refusal::Replay)?
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        if roc > u64::from(u32::MAX) {
            return Err(Refusal::Exhausted);
        }
        Ok(roc << 16 | u64::from(seq))
    }

    /// The rollover counter of an index.
    pub(super) fn roc_of(index: u64) -> u32 {
        (index >> 16) as u32
    }

    /// Whether `index` may still be accepted.
    pub(super) fn check(&self, index: u64) -> Result<(), Refusal> {
        let Some(top) = self.top_index() else {
            return Ok(());
        };
        if index > top {
            return Ok(());
        }
        let age = top - index;
        if age >= WINDOW || self.bits() & (1 << age) != 0 {
            return Err(Refusal::Replay);
        }
        Ok(())
    }

    /// Records `index` as accepted (after [`Self::check`] and authentication).
    pub(super) fn accept(&mut self, index: u64) {
        match self.top_index() {
            Some(top) if index <= top => {
                let age = top - index;
                if age < WINDOW {
                    self.set_bits(self.bits() | 1 << age);
                }
            }
            Some(top) => {
                let shift = index - top;
                self.set_bits(if shift >= WINDOW {
                    1
                } else {
                    (self.bits() << shift) | 1
                });
                self.top = index;
            }
            None => {
                self.set_bits(1);
                self.top = index;
            }
        }
    }

    /// The highest accepted index.
    #[cfg(test)]
    pub(super) fn top(&self) -> Option<u64> {
        self.top_index()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(indices: &[u64]) -> ReplayWindow {
        let mut w = ReplayWindow::default();
        for &i in indices {
            assert_eq!(w.check(i), Ok(()), "index {i}");
            w.accept(i);
        }
        w
    }

    #[test]
    fn window_refuses_duplicates_and_the_too_old() {
        let w = accepted(&[10, 12, 11, 200]);
        assert_eq!(w.check(200), Err(Refusal::Replay));
        assert_eq!(w.check(200 - WINDOW), Err(Refusal::Replay));
        assert_eq!(w.check(10), Err(Refusal::Replay));
        assert_eq!(w.check(200 - WINDOW + 1), Ok(()));
        assert_eq!(w.check(199), Ok(()));
        assert_eq!(w.check(201), Ok(()));
        let w = accepted(&[5, 3, 4, 1]);
        for i in [1, 3, 4, 5] {
            assert_eq!(w.check(i), Err(Refusal::Replay), "index {i}");
        }
        assert_eq!(w.check(2), Ok(()));
        assert_eq!(w.check(0), Ok(()));
        assert_eq!(w.top(), Some(5));
    }

    #[test]
    fn a_jump_of_exactly_the_window_clears_it() {
        let w = accepted(&[0, 1, 1 + WINDOW]);
        assert_eq!(w.check(1), Err(Refusal::Replay));
        assert_eq!(w.check(2), Ok(()));
        let w = accepted(&[0, WINDOW - 1]);
        assert_eq!(w.check(0), Err(Refusal::Replay));
    }

    #[test]
    fn index_estimation_follows_rfc3711_appendix_a() {
        let w = ReplayWindow::default();
        assert_eq!(w.estimate_srtp_index(65_000), Ok(65_000));
        // s_l = 65000, ROC 0: a small SEQ has wrapped.
        let w = accepted(&[65_000]);
        assert_eq!(w.estimate_srtp_index(3), Ok(65_536 + 3));
        assert_eq!(w.estimate_srtp_index(64_000), Ok(64_000));
        assert_eq!(w.estimate_srtp_index(65_535), Ok(65_535));
        // s_l = 2 after the wrap: a late 65530 belongs to ROC 0.
        let w = accepted(&[65_000, 65_536 + 2]);
        assert_eq!(w.estimate_srtp_index(65_530), Ok(65_530));
        assert_eq!(w.estimate_srtp_index(7), Ok(65_536 + 7));
        // A packet from "before" ROC 0 cannot exist.
        let w = accepted(&[2]);
        assert_eq!(w.estimate_srtp_index(65_530), Err(Refusal::Replay));
        // The 32-bit ROC cannot wrap.
        let w = accepted(&[u64::from(u32::MAX) << 16 | 65_000]);
        assert_eq!(w.estimate_srtp_index(1), Err(Refusal::Exhausted));
        assert_eq!(ReplayWindow::roc_of(7 << 16 | 9), 7);
    }
}
