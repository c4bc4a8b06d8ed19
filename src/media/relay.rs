//! One relayed direction of a bridged call (same codec on both legs): the header is
//! rewritten — the other leg's payload type, srgate's SSRC, a sequence number and
//! timestamp that stay continuous when the incoming SSRC changes (RFC 3550 §5.1) — and the
//! payload is left as it is.
//!
//! A relayed packet leaves in the wake-up it came in, so its bytes wait in one buffer
//! shared by every call of the shard, a [`RelayArena`], not in a queue of each call's own:
//! the arena is filled from its start as packets arrive and starts over once the shard has
//! sent everything ([`RelayArena::clear`]). A call keeps only where its few waiting
//! packets lie. A packet still queued when the arena starts over (its leg could not send
//! in that wake-up) is stale and dropped when it comes up.

use crate::wire::rtp;

/// Relayed packets waiting per direction at most (they leave in the same wake-up).
pub const RELAY_QUEUE: usize = 4;
/// The largest relayed packet: Opus frames reach 1 275 bytes.
pub const RELAY_MAX: usize = 1400;
/// Bytes of a shard's arena: a wake-up's relayed packets, thousands of G.711 frames. Its
/// pages are touched only as far as a wake-up fills it (zeroed memory from the system),
/// so the resident cost is what the busiest wake-up used — until the shell gives back
/// what no recent wake-up needed ([`RelayArena::unneeded`]).
pub const ARENA_BYTES: usize = 512 * 1024;
/// The least worth giving back: smaller excesses stay resident.
pub const ARENA_GIVE_BACK_MIN: usize = 64 * 1024;

/// The bytes of every relayed packet of a shard waiting to leave in this wake-up.
pub struct RelayArena {
    buf: Box<[u8]>,
    used: usize,
    /// Told apart from the packets of earlier rounds by this number (64 bits: it never
    /// comes round again).
    round: u64,
    /// Packets refused because the arena was full.
    full: u64,
    /// How far wake-ups have filled it since its tail was last given back (its resident
    /// part), and the most one filled since the last [`RelayArena::unneeded`].
    touched: usize,
    recent: usize,
}

impl core::fmt::Debug for RelayArena {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RelayArena")
            .field("capacity", &self.buf.len())
            .field("used", &self.used)
            .field("full", &self.full)
            .finish()
    }
}

impl Default for RelayArena {
    fn default() -> Self {
        RelayArena::new(ARENA_BYTES)
    }
}

impl RelayArena {
    pub fn new(capacity: usize) -> RelayArena {
        RelayArena {
            buf: vec![0; capacity].into_boxed_slice(),
            used: 0,
            round: 0,
            full: 0,
            touched: 0,
            recent: 0,
        }
    }

    /// The part of the arena a burst made resident and no wake-up since the last call
    /// needed (at least [`ARENA_GIVE_BACK_MIN`]): the shell gives its pages back to the
    /// kernel (`io::sys::discard`); they read as zeros when a later burst needs them.
    /// The shell asks every few seconds, so a burst's memory goes back after it.
    pub fn unneeded(&mut self) -> Option<&mut [u8]> {
        let keep = self.recent.max(self.used);
        self.recent = self.used;
        if self.touched < keep + ARENA_GIVE_BACK_MIN {
            return None;
        }
        let tail = keep..self.touched;
        self.touched = keep;
        Some(&mut self.buf[tail])
    }

    /// Everything that could leave has left: the space is used again from the start, and
    /// packets still queued become stale.
    pub fn clear(&mut self) {
        if self.used > 0 {
            self.used = 0;
            self.round = self.round.wrapping_add(1);
        }
    }

    /// Packets refused so far because a wake-up relayed more than the arena holds.
    pub fn full(&self) -> u64 {
        self.full
    }

    fn alloc(&mut self, len: usize) -> Option<usize> {
        let start = self.used;
        if len > self.buf.len() - start {
            self.full += 1;
            return None;
        }
        self.used += len;
        self.recent = self.recent.max(self.used);
        self.touched = self.touched.max(self.used);
        Some(start)
    }
}

/// Why [`Relay::push`] did not take a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// Larger than a relayed packet of the codec may be.
    TooLarge,
    /// The shard's arena is full in this wake-up.
    Full,
}

/// Header rewriting of one relayed direction and where its waiting packets lie.
#[derive(Debug)]
pub struct Relay {
    out_pt: u8,
    ssrc: u32,
    /// The incoming SSRC the offsets are for.
    source: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    started: bool,
    max: usize,
    /// The waiting packets, oldest at `head`: start in the arena, length, arena round.
    starts: [usize; RELAY_QUEUE],
    lens: [u16; RELAY_QUEUE],
    rounds: [u64; RELAY_QUEUE],
    head: usize,
    queued: usize,
    /// Packets dropped because they were still waiting when the arena started over.
    stale: u64,
}

impl Relay {
    /// A direction sending `out_pt` in `ssrc` from `seq`/`ts` on, packets of at most
    /// `max` bytes.
    pub fn new(out_pt: u8, ssrc: u32, seq: u16, ts: u32, max: usize) -> Relay {
        Relay {
            out_pt,
            ssrc,
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: seq.wrapping_sub(1),
            last_ts: ts,
            started: false,
            max: max.min(RELAY_MAX),
            starts: [0; RELAY_QUEUE],
            lens: [0; RELAY_QUEUE],
            rounds: [0; RELAY_QUEUE],
            head: 0,
            queued: 0,
            stale: 0,
        }
    }

    /// Packets dropped as stale so far.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Queues `packet` (checked RTP) rewritten; a new incoming SSRC continues the outgoing
    /// stream one frame (`frame_ticks`) later. With `RELAY_QUEUE` waiting, the oldest goes.
    pub fn push(
        &mut self,
        packet: &rtp::Packet<&[u8]>,
        frame_ticks: u32,
        arena: &mut RelayArena,
    ) -> Result<(), RelayError> {
        self.push_as(packet, self.out_pt, frame_ticks, arena)
    }

    /// [`Relay::push`] with payload type `out_pt` instead of the direction's own (a
    /// telephone-event packet in the same stream: one sequence and timestamp space).
    pub fn push_as(
        &mut self,
        packet: &rtp::Packet<&[u8]>,
        out_pt: u8,
        frame_ticks: u32,
        arena: &mut RelayArena,
    ) -> Result<(), RelayError> {
        let bytes = packet.as_bytes();
        if bytes.len() > self.max {
            return Err(RelayError::TooLarge);
        }
        let start = arena.alloc(bytes.len()).ok_or(RelayError::Full)?;
        let (seq, ts) = (packet.sequence_number(), packet.timestamp());
        let mut marker = packet.marker();
        if self.source != Some(packet.ssrc()) {
            // A new incoming stream continues ours: next number, one frame later.
            self.source = Some(packet.ssrc());
            self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
            let next_ts = if self.started {
                self.last_ts.wrapping_add(frame_ticks)
            } else {
                self.last_ts
            };
            self.ts_offset = next_ts.wrapping_sub(ts);
            marker = true;
            self.started = true;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        // Only later packets move the stream's end (a late one keeps its own numbers).
        if out_seq.wrapping_sub(self.last_seq) < 0x8000 {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        if self.queued == RELAY_QUEUE {
            // the oldest is dropped
            self.head = (self.head + 1) % RELAY_QUEUE;
            self.queued -= 1;
        }
        let slot = &mut arena.buf[start..start + bytes.len()];
        slot.copy_from_slice(bytes);
        let mut out = rtp::Packet::new_unchecked(slot);
        out.set_payload_type(out_pt);
        out.set_marker(marker);
        out.set_sequence_number(out_seq);
        out.set_timestamp(out_ts);
        out.set_ssrc(self.ssrc);
        let at = (self.head + self.queued) % RELAY_QUEUE;
        self.starts[at] = start;
        // bytes.len() <= RELAY_MAX
        self.lens[at] = bytes.len() as u16;
        self.rounds[at] = arena.round;
        self.queued += 1;
        Ok(())
    }

    /// Copies the oldest waiting packet of this arena round into `out`; stale ones and
    /// one that does not fit `out` are dropped.
    pub fn pop(&mut self, out: &mut [u8], arena: &RelayArena) -> Option<usize> {
        while self.queued > 0 {
            let at = self.head;
            self.head = (self.head + 1) % RELAY_QUEUE;
            self.queued -= 1;
            if self.rounds[at] != arena.round {
                self.stale += 1;
                continue;
            }
            let len = usize::from(self.lens[at]);
            let start = self.starts[at];
            let (Some(dst), Some(src)) = (out.get_mut(..len), arena.buf.get(start..start + len))
            else {
                continue;
            };
            dst.copy_from_slice(src);
            return Some(len);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        rtp::test_packet(0, seq, ts, ssrc, payload)
    }

    fn push(r: &mut Relay, a: &mut RelayArena, p: &[u8]) -> Result<(), RelayError> {
        r.push(&rtp::Packet::new_checked(p).unwrap(), 160, a)
    }

    /// One wake-up that fills `bytes` of the arena, then its packets have left.
    fn wake(a: &mut RelayArena, bytes: usize) {
        for _ in 0..bytes / 1000 {
            a.alloc(1000).unwrap();
        }
        a.clear();
    }

    #[test]
    fn a_bursts_tail_is_given_back_once_no_wake_up_needs_it() {
        let mut a = RelayArena::new(ARENA_BYTES);
        wake(&mut a, 10_000);
        assert!(a.unneeded().is_none(), "only what wake-ups use");
        // a burst fills 300 kB once: not given back while it is the recent peak
        wake(&mut a, 300_000);
        wake(&mut a, 10_000);
        assert!(a.unneeded().is_none(), "the burst was recent");
        // a period of ordinary wake-ups: the burst's tail goes back, once
        wake(&mut a, 12_000);
        let tail = a.unneeded().expect("the burst's tail").len();
        assert_eq!(tail, 300_000 - 12_000);
        assert!(a.unneeded().is_none());
        // an excess under the minimum stays
        wake(&mut a, 12_000 + ARENA_GIVE_BACK_MIN - 2000);
        assert!(a.unneeded().is_none());
        wake(&mut a, 12_000);
        assert!(a.unneeded().is_none(), "{a:?}");
    }

    #[test]
    fn calls_share_the_arena_and_it_starts_over_when_all_has_left() {
        let mut arena = RelayArena::new(1000);
        let mut a = Relay::new(8, 0xa, 100, 0, 640);
        let mut b = Relay::new(8, 0xb, 200, 0, 640);
        let mut out = [0u8; 1400];
        for round in 0..3u16 {
            push(&mut a, &mut arena, &packet(round, 0, 1, &[1; 160])).unwrap();
            push(&mut b, &mut arena, &packet(round, 0, 2, &[2; 160])).unwrap();
            let n = a.pop(&mut out, &arena).unwrap();
            assert_eq!(&out[rtp::HEADER_LEN..n], &[1; 160][..]);
            assert_eq!(rtp::Packet::new_checked(&out[..n]).unwrap().ssrc(), 0xa);
            let n = b.pop(&mut out, &arena).unwrap();
            assert_eq!(&out[rtp::HEADER_LEN..n], &[2; 160][..]);
            assert!(a.pop(&mut out, &arena).is_none());
            arena.clear();
        }
        assert_eq!(arena.full(), 0);
    }

    #[test]
    fn a_full_arena_refuses_and_a_packet_left_over_goes_stale() {
        let mut arena = RelayArena::new(400);
        let mut a = Relay::new(8, 0xa, 100, 0, 640);
        let mut out = [0u8; 1400];
        push(&mut a, &mut arena, &packet(1, 0, 1, &[1; 160])).unwrap();
        push(&mut a, &mut arena, &packet(2, 160, 1, &[1; 160])).unwrap();
        assert_eq!(
            push(&mut a, &mut arena, &packet(3, 320, 1, &[1; 160])),
            Err(RelayError::Full)
        );
        assert_eq!(arena.full(), 1);
        assert!(a.pop(&mut out, &arena).is_some());
        // the second one was not sent in this wake-up: after the arena starts over it is
        // stale, never a copy of someone else's bytes
        arena.clear();
        assert!(a.pop(&mut out, &arena).is_none());
        assert_eq!(a.stale(), 1);
        assert_eq!(
            push(&mut a, &mut arena, &packet(4, 480, 1, &[1; 700])),
            Err(RelayError::TooLarge)
        );
    }

    #[test]
    fn a_burst_keeps_the_newest_packets_of_a_call() {
        let mut arena = RelayArena::default();
        let mut a = Relay::new(8, 0xa, 100, 0, 640);
        let mut out = [0u8; 1400];
        for seq in 0..6u16 {
            push(
                &mut a,
                &mut arena,
                &packet(seq, u32::from(seq) * 160, 1, &[seq as u8; 160]),
            )
            .unwrap();
        }
        let mut payloads = Vec::new();
        while let Some(n) = a.pop(&mut out, &arena) {
            payloads.push(out[rtp::HEADER_LEN]);
            assert!(payloads.len() <= RELAY_QUEUE);
            let _ = n;
        }
        assert_eq!(payloads, vec![2, 3, 4, 5]);
    }
}
