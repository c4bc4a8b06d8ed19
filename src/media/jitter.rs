//! An adaptive jitter buffer for one incoming RTP stream of equally long packets (20 ms
//! unless the stream says otherwise: [`JitterBuffer::set_frame`]).
//!
//! Packets are stored by sequence number (with wrap-around) in a fixed ring of [`SLOTS`]
//! slots, their payloads one after the other in a byte ring of [`ARENA`] bytes, both
//! allocated when the stream is set up; nothing allocates afterwards. The buffer
//! owns the playout cadence: [`JitterBuffer::poll_timeout`] says when the next frame is
//! due and [`JitterBuffer::pop`] then yields exactly one [`Pop`]: the packet, or
//! [`Pop::Missing`] so the decoder conceals the gap (Opus PLC, or FEC from the next packet,
//! which `Missing` hands over when it is already here).
//!
//! Delay control:
//! - the interarrival jitter J is estimated as RFC 3550 §6.4.1 / A.8 define it, and the
//!   target delay is `3 J` held between `min_delay` and `max_delay`;
//! - playout of a talkspurt starts one target delay after its first packet arrived;
//! - when the next packet is not here and no later one is either (an underrun: the stream
//!   runs late), one concealed frame is played without advancing, so the delay grows by a
//!   frame; when a later packet is here, the missing one counts as lost and is skipped;
//! - when the fewest frames buffered over the last [`WATERMARK_WINDOW`] pops stayed above
//!   the target, one frame is discarded, so the delay shrinks back after a burst and a
//!   sender whose clock runs fast cannot fill the buffer;
//! - after `idle_after` of underruns the stream counts as paused (silence suppression,
//!   hold): no more pops until a packet comes, which starts a new talkspurt.
//!
//! Late packets (their frame was already played or concealed) and duplicates are dropped
//! and counted; a jump of the sequence number by more than the ring holds restarts the
//! buffer, as RFC 3550 A.1 treats a source that restarted.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

/// Slots in the ring: 16 frames of 20 ms = 320 ms, above the largest `max_delay` plus
/// reordering.
pub const SLOTS: usize = 16;

/// Largest payload a slot stores: one 20 ms Opus frame (TOC + 1275 bytes, RFC 6716
/// §3.2.1), rounded up; a 20 ms G.711 payload is 160 bytes.
pub const MAX_PAYLOAD: usize = 1280;

/// Bytes the buffered payloads share: each is written after the previous one, wrapping to
/// the start (a payload is never split), so only what is buffered takes room. Every slot
/// holds a packet of up to 384 bytes at once (Opus up to about 150 kbit/s at 20 ms, G.711
/// at 40 ms); larger packets are taken too, and when the room runs out the oldest payload
/// written is given up (its frame concealed). A slot each of [`MAX_PAYLOAD`] would be
/// 20 KiB per stream, most of a transcoded call's memory.
pub const ARENA: usize = SLOTS * 384;

/// Pops over which the low watermark of buffered frames is taken before shrinking.
pub const WATERMARK_WINDOW: u32 = 25;

/// A packet this far behind the next one to play is a restarted source, not a late one
/// (RFC 3550 A.1 MAX_MISORDER).
const MAX_MISORDER: u16 = 100;

/// Frames skipped across a pause up to this many are counted as lost; a larger jump is a
/// restarted source (RFC 3550 A.1 MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;

/// If the owner falls this far behind the cadence, the cadence restarts from now instead
/// of catching up in a burst.
const MAX_LAG: Duration = Duration::from_millis(200);

/// Settings of one buffer, fixed at stream setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP timestamp clock (48000 for Opus, 8000 for G.711).
    pub clock_rate: u32,
    /// Duration of one packet's audio; the pop cadence.
    pub frame: Duration,
    /// Least playout delay.
    pub min_delay: Duration,
    /// Largest playout delay the target may grow to.
    pub max_delay: Duration,
    /// Underruns for this long pause the stream.
    pub idle_after: Duration,
}

impl JitterConfig {
    /// 20 ms frames, delay between 40 and 200 ms, paused after 100 ms without packets.
    pub const fn new(clock_rate: u32) -> JitterConfig {
        JitterConfig {
            clock_rate,
            frame: Duration::from_millis(20),
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(200),
            idle_after: Duration::from_millis(100),
        }
    }
}

/// Why a pushed packet was not stored. The packet is counted in [`JitterStats`] either way.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterError {
    /// Its frame was already played or concealed.
    Late,
    /// The same sequence number is already buffered.
    Duplicate,
    /// The payload is larger than [`MAX_PAYLOAD`].
    TooLarge,
}

impl fmt::Display for JitterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JitterError::Late => "packet arrived after its playout time",
            JitterError::Duplicate => "duplicate packet",
            JitterError::TooLarge => "payload larger than a jitter buffer slot",
        })
    }
}

impl std::error::Error for JitterError {}

/// Counters of one buffer since setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterStats {
    /// Packets pushed, stored or not.
    pub received: u64,
    /// Packets played.
    pub played: u64,
    /// Packets that arrived after their frame was played or concealed.
    pub late: u64,
    /// Packets whose sequence number was already buffered.
    pub duplicate: u64,
    /// Packets larger than a slot.
    pub too_large: u64,
    /// Frames skipped as lost (a later packet had arrived); each was a `Missing`.
    pub lost: u64,
    /// Frames concealed on underrun without advancing (the delay grew by a frame).
    pub stretched: u64,
    /// Buffered packets discarded to shrink the delay.
    pub discarded: u64,
    /// Restarts on a sequence jump (buffered packets dropped).
    pub restarts: u64,
    /// Talkspurts started (the first packet, and each one after a pause).
    pub talkspurts: u64,
}

/// A packet handed out by [`JitterBuffer::pop`], borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub sequence_number: u16,
    pub timestamp: u32,
    pub payload: &'a [u8],
    /// The first frame of a talkspurt: the outgoing RTP packet gets the marker bit.
    pub talkspurt_start: bool,
}

/// What one due frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop<'a> {
    /// The packet of this frame.
    Packet(Frame<'a>),
    /// No packet for this frame: conceal it. `next` is the payload of the following packet
    /// when it is already buffered (for Opus FEC).
    Missing { next: Option<&'a [u8]> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No stream, or paused: waiting for a packet.
    Idle,
    /// A talkspurt's first packet is here; playout starts at `next_pop`.
    Buffering,
    Playing,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    filled: bool,
    sequence_number: u16,
    timestamp: u32,
    /// The payload: `arena[start..start + len]`.
    start: u16,
    len: u16,
}

/// The interarrival jitter estimator of RFC 3550 A.8, in timestamp units.
#[derive(Debug, Clone, Copy)]
struct JitterEstimate {
    epoch: Option<Instant>,
    last_transit: Option<u32>,
    jitter: f64,
}

impl JitterEstimate {
    fn update(&mut self, now: Instant, timestamp: u32, clock_rate: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let elapsed = now.saturating_duration_since(epoch);
        let arrival = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
        // Arrival and timestamps both wrap modulo 2^32; only differences matter.
        let transit = (arrival as u32).wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }
}

/// The jitter buffer of one incoming stream.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Box<[Slot]>,
    /// The payloads of the slots (see [`ARENA`]); `head`: where the next one goes.
    arena: Box<[u8]>,
    head: usize,
    state: State,
    /// Sequence number of the next frame to play.
    next_seq: u16,
    /// Highest sequence number stored since the talkspurt started.
    newest_seq: u16,
    /// Some packet of a talkspurt was seen, so `next_seq` means something.
    has_history: bool,
    next_pop: Option<Instant>,
    talkspurt_pending: bool,
    underrun_for: Duration,
    estimate: JitterEstimate,
    watermark: usize,
    watermark_pops: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Allocates the ring (the only allocation of the buffer's life).
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let empty = Slot {
            filled: false,
            sequence_number: 0,
            timestamp: 0,
            start: 0,
            len: 0,
        };
        JitterBuffer {
            config,
            slots: vec![empty; SLOTS].into_boxed_slice(),
            arena: vec![0; ARENA].into_boxed_slice(),
            head: 0,
            state: State::Idle,
            next_seq: 0,
            newest_seq: 0,
            has_history: false,
            next_pop: None,
            talkspurt_pending: false,
            underrun_for: Duration::ZERO,
            estimate: JitterEstimate {
                epoch: None,
                last_transit: None,
                jitter: 0.0,
            },
            watermark: usize::MAX,
            watermark_pops: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    /// The RFC 3550 interarrival jitter in timestamp units (as an RTCP report block
    /// carries it).
    pub fn jitter(&self) -> u32 {
        // Saturating float-to-int conversion is the intent.
        self.estimate.jitter as u32
    }

    /// The current target delay: `3 J` between `min_delay` and `max_delay`, and never
    /// more than the ring holds with room for reordering (10 ms packets: 140 ms).
    pub fn target_delay(&self) -> Duration {
        let j = Duration::from_secs_f64(
            3.0 * self.estimate.jitter / f64::from(self.config.clock_rate.max(1)),
        );
        let ring = self.config.frame.saturating_mul(SLOTS as u32 - 2);
        let max = self.config.max_delay.min(ring);
        j.clamp(self.config.min_delay.min(max), max)
    }

    /// Sets the duration of one packet (the pop cadence), e.g. once the stream shows the
    /// sender's packet time. Buffered packets stay and play at the new cadence, which
    /// goes on from the next due pop.
    pub fn set_frame(&mut self, frame: Duration) {
        if !frame.is_zero() {
            self.config.frame = frame;
        }
    }

    fn target_frames(&self) -> usize {
        let frame = self.config.frame.as_nanos().max(1);
        usize::try_from(self.target_delay().as_nanos().div_ceil(frame)).unwrap_or(SLOTS)
    }

    /// Frames from the next one to play up to the newest stored, inclusive (0 when the
    /// newest is already behind).
    fn span(&self) -> usize {
        let d = self.newest_seq.wrapping_sub(self.next_seq);
        if d < 0x8000 { usize::from(d) + 1 } else { 0 }
    }

    fn slot_index(seq: u16) -> usize {
        usize::from(seq) % SLOTS
    }

    /// When the next frame is due, `None` while idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_pop
    }

    /// Forgets the stream (a new SSRC): buffered packets, the jitter estimate and the
    /// sequence history; counters are kept.
    pub fn reset(&mut self) {
        self.clear_slots();
        self.state = State::Idle;
        self.has_history = false;
        self.next_pop = None;
        self.estimate = JitterEstimate {
            epoch: None,
            last_transit: None,
            jitter: 0.0,
        };
    }

    fn clear_slots(&mut self) -> u64 {
        let mut dropped = 0;
        for slot in self.slots.iter_mut() {
            if slot.filled {
                dropped += 1;
                slot.filled = false;
            }
        }
        dropped
    }

    fn start_talkspurt(&mut self, now: Instant, seq: u16) {
        self.state = State::Buffering;
        self.has_history = true;
        self.next_seq = seq;
        self.newest_seq = seq;
        self.talkspurt_pending = true;
        self.underrun_for = Duration::ZERO;
        self.watermark = usize::MAX;
        self.watermark_pops = 0;
        self.next_pop = Some(now + self.target_delay());
        self.stats.talkspurts += 1;
    }

    fn store(&mut self, seq: u16, timestamp: u32, payload: &[u8]) -> Result<(), JitterError> {
        let slot = &mut self.slots[Self::slot_index(seq)];
        if slot.filled && slot.sequence_number == seq {
            self.stats.duplicate += 1;
            return Err(JitterError::Duplicate);
        }
        let len = payload.len();
        if len > MAX_PAYLOAD {
            return Err(JitterError::TooLarge);
        }
        let start = if self.head + len > ARENA {
            0
        } else {
            self.head
        };
        let end = start + len;
        // payloads whose bytes this one takes are given up (their frames concealed)
        for other in self.slots.iter_mut() {
            let (s, e) = (
                usize::from(other.start),
                usize::from(other.start + other.len),
            );
            if other.filled && s < end && start < e {
                other.filled = false;
                self.stats.discarded += 1;
            }
        }
        self.arena[start..end].copy_from_slice(payload);
        self.head = end;
        let slot = &mut self.slots[Self::slot_index(seq)];
        // (MAX_PAYLOAD and ARENA fit in u16)
        slot.start = start as u16;
        slot.len = len as u16;
        slot.filled = true;
        slot.sequence_number = seq;
        slot.timestamp = timestamp;
        if seq.wrapping_sub(self.newest_seq) < 0x8000 {
            self.newest_seq = seq;
        }
        Ok(())
    }

    /// Takes in one packet that arrived at `now`.
    pub fn push(
        &mut self,
        now: Instant,
        sequence_number: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), JitterError> {
        self.stats.received += 1;
        if payload.len() > MAX_PAYLOAD {
            self.stats.too_large += 1;
            return Err(JitterError::TooLarge);
        }
        self.estimate.update(now, timestamp, self.config.clock_rate);
        let seq = sequence_number;
        let ahead = seq.wrapping_sub(self.next_seq);
        let behind = self.next_seq.wrapping_sub(seq);

        if self.state == State::Idle {
            if self.has_history && (1..=MAX_MISORDER).contains(&behind) {
                self.stats.late += 1;
                return Err(JitterError::Late);
            }
            if self.has_history && ahead <= MAX_DROPOUT {
                // Frames skipped while paused that never came.
                self.stats.lost += u64::from(ahead);
            }
            self.start_talkspurt(now, seq);
            return self.store(seq, timestamp, payload);
        }

        if (1..=MAX_MISORDER).contains(&behind) {
            // Before the frame playing next. While still buffering, a packet that was
            // overtaken by the talkspurt's first one moves the start back, if it fits.
            let span_with = usize::from(self.newest_seq.wrapping_sub(seq)) + 1;
            if self.state == State::Buffering && span_with <= SLOTS {
                self.next_seq = seq;
                return self.store(seq, timestamp, payload);
            }
            self.stats.late += 1;
            return Err(JitterError::Late);
        }
        if usize::from(ahead) >= SLOTS {
            // Far ahead or far behind: the source restarted or jumped; start over.
            self.stats.restarts += 1;
            self.stats.discarded += self.clear_slots();
            self.start_talkspurt(now, seq);
            return self.store(seq, timestamp, payload);
        }
        self.store(seq, timestamp, payload)
    }

    /// The frame due at `now`, or `None` when nothing is due yet (or the stream is idle).
    /// Call it whenever [`JitterBuffer::poll_timeout`] has passed; each call yields at most
    /// one frame and moves the cadence on by one frame.
    pub fn pop(&mut self, now: Instant) -> Option<Pop<'_>> {
        let due = self.next_pop?;
        if now < due {
            return None;
        }
        let frame = self.config.frame;
        self.next_pop = Some(if now.saturating_duration_since(due) > MAX_LAG {
            now + frame
        } else {
            due + frame
        });
        self.state = State::Playing;

        self.shrink_if_persistently_deep();

        let i = Self::slot_index(self.next_seq);
        if self.slots[i].filled && self.slots[i].sequence_number == self.next_seq {
            self.slots[i].filled = false;
            self.next_seq = self.next_seq.wrapping_add(1);
            self.underrun_for = Duration::ZERO;
            self.stats.played += 1;
            let talkspurt_start = core::mem::take(&mut self.talkspurt_pending);
            let slot = self.slots[i];
            return Some(Pop::Packet(Frame {
                sequence_number: slot.sequence_number,
                timestamp: slot.timestamp,
                payload: self.payload(slot),
                talkspurt_start,
            }));
        }

        if self.span() > 1 {
            // A later packet is here: this one is lost (or so late it will not matter).
            self.next_seq = self.next_seq.wrapping_add(1);
            self.underrun_for = Duration::ZERO;
            self.stats.lost += 1;
            let j = Self::slot_index(self.next_seq);
            let slot = self.slots[j];
            let next =
                (slot.filled && slot.sequence_number == self.next_seq).then(|| self.payload(slot));
            return Some(Pop::Missing { next });
        }

        // Underrun: nothing after the missing frame has arrived either.
        self.underrun_for += frame;
        if self.underrun_for > self.config.idle_after {
            self.state = State::Idle;
            self.next_pop = None;
            return None;
        }
        self.stats.stretched += 1;
        Some(Pop::Missing { next: None })
    }

    fn payload(&self, slot: Slot) -> &[u8] {
        let start = usize::from(slot.start);
        &self.arena[start..start + usize::from(slot.len)]
    }

    /// Discards the next frame when the low watermark of the last window stayed above the
    /// target: the delay is larger than the jitter needs.
    fn shrink_if_persistently_deep(&mut self) {
        let span = self.span();
        self.watermark = self.watermark.min(span);
        self.watermark_pops += 1;
        if self.watermark_pops < WATERMARK_WINDOW {
            return;
        }
        // At pop time the frame being played is buffered too: one more than the target.
        let excess = self.watermark > self.target_frames() + 1;
        self.watermark = usize::MAX;
        self.watermark_pops = 0;
        if excess {
            let i = Self::slot_index(self.next_seq);
            if self.slots[i].filled && self.slots[i].sequence_number == self.next_seq {
                self.slots[i].filled = false;
                self.stats.discarded += 1;
            } else {
                self.stats.lost += 1;
            }
            self.next_seq = self.next_seq.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_MS: u64 = 20;
    const TICKS: u32 = 960;

    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// What the consumer saw, frame by frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Packet(u16),
        Fec(u16),
        Plc,
    }

    /// Feeds packets `(seq, arrival offset in µs)` (in any order) and pops at every due
    /// time until `until_us`; returns what was played and the deepest span seen.
    fn run(
        jb: &mut JitterBuffer,
        t0: Instant,
        arrivals: &[(u16, u64)],
        until_us: u64,
    ) -> (Vec<Out>, usize) {
        let mut arrivals = arrivals.to_vec();
        arrivals.sort_by_key(|&(_, at)| at);
        let mut out = Vec::new();
        let mut deepest = 0;
        let mut a = 0;
        let mut now_us = 0u64;
        // Bounded: one step per event, events are finite.
        for _ in 0..1_000_000 {
            let next_arrival = arrivals.get(a).map(|&(_, at)| at);
            let next_pop = jb.poll_timeout().map(|t| (t - t0).as_micros() as u64);
            let step = match (next_arrival, next_pop) {
                (Some(x), Some(p)) => x.min(p),
                (Some(x), None) => x,
                (None, Some(p)) => p,
                (None, None) => break,
            };
            if step > until_us {
                break;
            }
            now_us = now_us.max(step);
            let now = t0 + Duration::from_micros(now_us);
            if next_arrival == Some(step) {
                let (seq, _) = arrivals[a];
                a += 1;
                let ts = u32::from(seq).wrapping_mul(TICKS);
                let payload = seq.to_be_bytes();
                let _ = jb.push(now, seq, ts, &payload);
                deepest = deepest.max(jb.span());
                continue;
            }
            match jb.pop(now) {
                Some(Pop::Packet(f)) => {
                    assert_eq!(f.payload, f.sequence_number.to_be_bytes());
                    assert_eq!(
                        f.timestamp,
                        u32::from(f.sequence_number).wrapping_mul(TICKS)
                    );
                    out.push(Out::Packet(f.sequence_number));
                }
                Some(Pop::Missing { next: Some(p) }) => {
                    out.push(Out::Fec(u16::from_be_bytes([p[0], p[1]])))
                }
                Some(Pop::Missing { next: None }) => out.push(Out::Plc),
                None => {}
            }
        }
        (out, deepest)
    }

    fn played(out: &[Out]) -> Vec<u16> {
        out.iter()
            .filter_map(|o| match o {
                Out::Packet(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    fn steady(
        first: u16,
        count: u16,
        period_us: u64,
        jitter: impl Fn(u16) -> u64,
    ) -> Vec<(u16, u64)> {
        (0..count)
            .map(|i| (first.wrapping_add(i), u64::from(i) * period_us + jitter(i)))
            .collect()
    }

    #[test]
    fn steady_stream_plays_every_packet_in_order_after_min_delay() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let arrivals = steady(100, 50, 20_000, |_| 0);
        // First pop one min_delay (40 ms) after the first packet.
        jb.push(t0, 100, 100 * TICKS, &100u16.to_be_bytes())
            .expect("stored");
        assert_eq!(jb.poll_timeout(), Some(t0 + ms(40)));
        assert!(jb.pop(t0 + ms(39)).is_none(), "not due yet");
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let (out, _) = run(&mut jb, t0, &arrivals, 1_200_000);
        let expect: Vec<u16> = (100..150).collect();
        assert_eq!(played(&out), expect);
        assert!(matches!(out[0], Out::Packet(100)));
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.duplicate, s.discarded), (0, 0, 0, 0));
        assert_eq!(s.talkspurts, 1);
        assert_eq!(jb.target_delay(), ms(40));
        // After the last packet: a few concealed frames, then paused.
        assert_eq!(jb.poll_timeout(), None);
    }

    /// The payloads share one byte ring: many small ones are kept whole across its
    /// wrap-around, and when large ones run it out the oldest buffered payload is given
    /// up (its frame concealed, counted as discarded), never a newer one mangled.
    #[test]
    fn payloads_share_the_arena_and_the_oldest_gives_way() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        // 200 packets of 100 bytes (each filled with its sequence number's low byte),
        // played as they come: the ring wraps several times
        let mut played = 0;
        for seq in 0..200u16 {
            let now = t0 + ms(20 * u64::from(seq));
            jb.push(now, seq, u32::from(seq) * TICKS, &[seq as u8; 100])
                .expect("stored");
            while let Some(pop) = jb.pop(now) {
                if let Pop::Packet(f) = pop {
                    assert_eq!(f.payload, &[f.sequence_number as u8; 100][..]);
                    played += 1;
                }
            }
        }
        assert!(played >= 195, "{played} played");
        assert_eq!(jb.stats().discarded, 0);

        // six packets of MAX_PAYLOAD at once do not fit the ring: the first gives way
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let big = ARENA / MAX_PAYLOAD + 1;
        for seq in 0..big as u16 {
            jb.push(
                t0,
                seq,
                u32::from(seq) * TICKS,
                &[seq as u8 + 1; MAX_PAYLOAD],
            )
            .expect("stored");
        }
        assert_eq!(jb.stats().discarded, 1);
        let mut frames = Vec::new();
        let mut now = t0;
        while frames.len() < big {
            now += ms(20);
            match jb.pop(now) {
                Some(Pop::Packet(f)) => {
                    assert_eq!(f.payload, &[f.sequence_number as u8 + 1; MAX_PAYLOAD][..]);
                    frames.push(Some(f.sequence_number));
                }
                Some(Pop::Missing { .. }) => frames.push(None),
                None => {}
            }
        }
        let expected: Vec<Option<u16>> = std::iter::once(None)
            .chain((1..big as u16).map(Some))
            .collect();
        assert_eq!(frames, expected);
    }

    #[test]
    fn reordering_within_the_delay_is_absorbed() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        // Swap each pair: 1 arrives 5 ms after 2, etc. (also at the very start).
        let arrivals: Vec<(u16, u64)> = (0..40u16)
            .map(|i| {
                let slot = if i % 2 == 0 { i + 1 } else { i - 1 };
                (i, u64::from(slot) * 20_000 + 5_000)
            })
            .collect();
        let (out, _) = run(&mut jb, t0, &arrivals, 2_000_000);
        assert_eq!(played(&out), (0..40).collect::<Vec<u16>>());
        assert_eq!(jb.stats().lost, 0);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn a_lost_packet_becomes_missing_with_the_next_one_for_fec() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let arrivals: Vec<(u16, u64)> = steady(0, 30, 20_000, |_| 0)
            .into_iter()
            .filter(|&(s, _)| s != 10 && s != 20 && s != 21)
            .collect();
        let (out, _) = run(&mut jb, t0, &arrivals, 1_000_000);
        let pos = out
            .iter()
            .position(|o| *o == Out::Packet(9))
            .expect("9 played");
        assert_eq!(out[pos + 1], Out::Fec(11), "10 lost, 11 offered for FEC");
        assert_eq!(out[pos + 2], Out::Packet(11));
        let pos = out
            .iter()
            .position(|o| *o == Out::Packet(19))
            .expect("19 played");
        assert_eq!(
            out[pos + 1..pos + 4],
            [Out::Plc, Out::Fec(22), Out::Packet(22)]
        );
        assert_eq!(jb.stats().lost, 3);
        assert_eq!(jb.stats().played, 27);
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped_and_counted() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        for seq in 0..5u16 {
            let now = t0 + ms(u64::from(seq) * FRAME_MS);
            jb.push(now, seq, u32::from(seq) * TICKS, &[1])
                .expect("stored");
        }
        assert_eq!(
            jb.push(t0 + ms(85), 4, 4 * TICKS, &[1]),
            Err(JitterError::Duplicate)
        );
        // Play 0..=2.
        for k in 0..3u64 {
            assert!(matches!(jb.pop(t0 + ms(40 + 20 * k)), Some(Pop::Packet(_))));
        }
        assert_eq!(jb.push(t0 + ms(90), 1, TICKS, &[1]), Err(JitterError::Late));
        assert_eq!(
            jb.push(t0 + ms(90), 5, 5 * TICKS, &[0; MAX_PAYLOAD + 1]),
            Err(JitterError::TooLarge)
        );
        let s = jb.stats();
        assert_eq!((s.duplicate, s.late, s.too_large, s.received), (1, 1, 1, 8));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let arrivals = steady(65_530, 20, 20_000, |i| if i == 6 { 25_000 } else { 0 });
        let (out, _) = run(&mut jb, t0, &arrivals, 1_000_000);
        let expect: Vec<u16> = (0..20u16).map(|i| 65_530u16.wrapping_add(i)).collect();
        assert_eq!(played(&out), expect);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn burst_after_a_stall_is_played_and_the_delay_shrinks_back() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        // Packets 50..55 are held up by the network and arrive together just before 56.
        let arrivals = steady(0, 300, 20_000, |i| {
            if (50..56).contains(&i) {
                (56 - u64::from(i)) * 20_000 - 1_000
            } else {
                0
            }
        });
        let (out, deepest) = run(&mut jb, t0, &arrivals, 7_000_000);
        let s = *jb.stats();
        assert_eq!(s.lost, 0, "{s:?}");
        assert_eq!(s.late, 0, "{s:?}");
        assert!(s.stretched >= 4, "underruns concealed: {s:?}");
        assert_eq!(s.played + s.discarded, 300, "{s:?}");
        let p = played(&out);
        assert!(p.windows(2).all(|w| w[0] < w[1]), "in order");
        assert!(deepest <= SLOTS, "{deepest}");
        // The delay came back down: by the end the buffer was shallow again.
        assert!(s.discarded >= 1, "{s:?}");
    }

    #[test]
    fn jitter_raises_the_target_delay() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        // Deterministic pseudo-random delays of 0..40 ms.
        let arrivals = steady(0, 500, 20_000, |i| {
            (u64::from(i).wrapping_mul(2_654_435_761) >> 7) % 40_000
        });
        let (out, _) = run(&mut jb, t0, &arrivals, 11_000_000);
        let target = jb.target_delay();
        assert!(target > ms(40) && target <= ms(200), "target {target:?}");
        // RFC 3550 J for uniform 0..40 ms delays is about 13 ms = 640 ticks.
        assert!((400..1000).contains(&jb.jitter()), "J = {}", jb.jitter());
        let s = jb.stats();
        // Most frames play; what is lost early is the price of adapting.
        assert!(s.played >= 480, "{s:?}");
        assert!(played(&out).windows(2).all(|w| w[0] < w[1]));

        let mut calm = JitterBuffer::new(JitterConfig::new(48_000));
        let _ = run(&mut calm, t0, &steady(0, 100, 20_000, |_| 0), 3_000_000);
        assert_eq!(calm.jitter(), 0);
        assert_eq!(calm.target_delay(), ms(40));
    }

    #[test]
    fn fast_sender_clock_cannot_fill_the_buffer() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        // 1 % fast: a 20 ms frame every 19.8 ms, for 60 s.
        let arrivals = steady(0, 3000, 19_800, |_| 0);
        let (out, deepest) = run(&mut jb, t0, &arrivals, 60_000_000);
        let s = *jb.stats();
        assert_eq!(s.late + s.lost, 0, "{s:?}");
        assert!(deepest <= 5, "deepest span {deepest}");
        // 3000 frames in 59.4 s: about 30 must go to keep the delay.
        assert!((20..=40).contains(&s.discarded), "{s:?}");
        assert_eq!(s.played + s.discarded, 3000, "{s:?}");
        assert!(played(&out).windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn slow_sender_clock_is_bridged_by_concealment() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        // 1 % slow: a frame every 20.2 ms.
        let arrivals = steady(0, 3000, 20_200, |_| 0);
        let (out, _) = run(&mut jb, t0, &arrivals, 61_000_000);
        let s = *jb.stats();
        assert_eq!(s.late + s.lost + s.discarded, 0, "{s:?}");
        assert_eq!(s.played, 3000);
        assert!((20..=40).contains(&s.stretched), "{s:?}");
        assert_eq!(played(&out), (0..3000).collect::<Vec<u16>>());
    }

    #[test]
    fn pause_and_resume_starts_a_new_talkspurt() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let mut arrivals = steady(0, 10, 20_000, |_| 0);
        // Silence suppression: seq continues at 10 after 1 s without packets.
        arrivals.extend(steady(10, 10, 20_000, |_| 1_000_000));
        let mut talkspurts = 0;
        let (out, _) = run(&mut jb, t0, &arrivals, 3_000_000);
        assert_eq!(played(&out), (0..20).collect::<Vec<u16>>());
        talkspurts += jb.stats().talkspurts;
        assert_eq!(talkspurts, 2);
        // Only a few concealed frames between the two (100 ms idle_after).
        let plc = out.iter().filter(|o| **o == Out::Plc).count();
        assert!(plc <= 2 * 5, "{plc} concealed frames");
        // A packet from before the pause is late, not a restart.
        assert_eq!(
            jb.push(t0 + ms(3_000), 15, 15 * TICKS, &[0]),
            Err(JitterError::Late)
        );
    }

    #[test]
    fn talkspurt_flag_on_first_frame_only() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(8_000));
        jb.push(t0, 7, 0, &[0; 160]).expect("stored");
        jb.push(t0 + ms(20), 8, 160, &[0; 160]).expect("stored");
        match jb.pop(t0 + ms(40)) {
            Some(Pop::Packet(f)) => assert!(f.talkspurt_start),
            other => panic!("{other:?}"),
        }
        match jb.pop(t0 + ms(60)) {
            Some(Pop::Packet(f)) => assert!(!f.talkspurt_start),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sequence_jump_restarts() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        for seq in 0..3u16 {
            jb.push(
                t0 + ms(u64::from(seq) * 20),
                seq,
                u32::from(seq) * TICKS,
                &[0],
            )
            .expect("stored");
        }
        jb.push(t0 + ms(60), 30_000, 0, &[0])
            .expect("a restarted source is stored");
        assert_eq!(jb.stats().restarts, 1);
        assert_eq!(jb.stats().discarded, 3);
        assert_eq!(jb.poll_timeout(), Some(t0 + ms(100)));
        match jb.pop(t0 + ms(100)) {
            Some(Pop::Packet(f)) => assert_eq!(f.sequence_number, 30_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stalled_owner_resumes_the_cadence_from_now() {
        let t0 = base();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        jb.push(t0, 0, 0, &[0]).expect("stored");
        assert!(jb.pop(t0 + ms(1_000)).is_some());
        assert_eq!(jb.poll_timeout(), Some(t0 + ms(1_020)));
    }
}
