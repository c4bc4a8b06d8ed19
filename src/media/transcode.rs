//! One direction of transcoded media: incoming RTP → jitter buffer → decode (PLC or FEC
//! for a missing packet) → PCM at the transcoding rate → encode → outgoing RTP with
//! srgate's own SSRC and a continuous sequence number and timestamp (RFC 3550 §5.1: the
//! timestamp jumps over a pause, the marker bit starts each talkspurt, RFC 3551 §4.1).
//!
//! Packet times are re-framed: incoming packets may carry 10 to 60 ms each (the sender's
//! `ptime`; a G.711 phone at 30 ms, a browser's Opus at 20 ms), found from each packet
//! itself (G.711: one byte a sample; Opus: its TOC byte). The jitter buffer plays them at
//! their own cadence, their decoded audio queues in a small PCM buffer, and outgoing
//! packets are cut from it at the output's packet time ([`TranscoderConfig::output_frame`]:
//! 20 ms toward browsers, the SIP side's `ptime` for G.711).
//!
//! The PCM rate is a parameter: 8 kHz between Opus and G.711, 48 kHz for Opus to Opus
//! (the echo service). The echo service uses one [`Transcoder`]; a bridged call uses one
//! per direction.
//!
//! Sans-IO: [`Transcoder::push_rtp`] takes a packet and the time it arrived,
//! [`Transcoder::poll_rtp`] writes the next outgoing packet into the caller's buffer once
//! [`Transcoder::poll_timeout`] has passed. All state, codec state included, is allocated
//! in [`Transcoder::new`]; the packet path allocates nothing.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

use super::codec::{Codec, CodecError, Decoder, Encoder, FRAME, SampleRate};
use super::jitter::{JitterBuffer, JitterConfig, JitterError, JitterStats, Pop};
use super::stats::ReceiveStats;
use crate::wire::rtcp::{ReportBlock, SenderInfo};
use crate::wire::rtp;

/// Output buffers of [`Transcoder::poll_rtp`] of this size always suffice (an RTP header
/// and the largest 20 ms Opus frame; 60 ms of G.711 is 480 bytes).
pub const MAX_RTP_OUT: usize = rtp::HEADER_LEN + 1276;

/// The shortest and longest packet time taken in and sent out: RFC 3551 §4.5's common
/// G.711 packet times (10 to 60 ms) and Opus' 10 to 60 ms packets (RFC 7587 §4.2 allows
/// 2.5 ms frames and 120 ms packets; no VoIP sender uses them).
pub const MIN_PACKET_TIME: Duration = Duration::from_millis(10);
pub const MAX_PACKET_TIME: Duration = Duration::from_millis(60);

/// Packets in a row of another packet time that make it the stream's.
pub const PACKET_TIME_SWITCH: u8 = 3;

/// Settings of one direction, fixed at setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscoderConfig {
    /// Codec and payload type of incoming packets; other payload types are refused.
    pub input: Codec,
    pub input_payload_type: u8,
    /// Codec and payload type of outgoing packets.
    pub output: Codec,
    pub output_payload_type: u8,
    /// Audio in each outgoing packet: 20 ms for Opus (the only Opus frame srgate sends);
    /// G.711 from [`MIN_PACKET_TIME`] to [`MAX_PACKET_TIME`] (others are set up as 20 ms).
    pub output_frame: Duration,
    /// The rate of the PCM between decoder and encoder.
    pub pcm_rate: SampleRate,
    /// `[media] opus_complexity`.
    pub opus_complexity: u8,
    /// srgate's SSRC for the outgoing stream and the first sequence number and timestamp
    /// (random, RFC 3550 §5.1; the caller draws them).
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
    /// Jitter buffer delays; its clock rate is taken from `input`.
    pub jitter: JitterConfig,
}

/// Why an incoming packet was not taken. Each reason is also counted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Not a valid RTP packet.
    Malformed(rtp::Error),
    /// A payload type other than the stream's codec (telephone-event, comfort noise, ...):
    /// the caller routes those elsewhere.
    PayloadType(u8),
    /// Refused by the jitter buffer: late, duplicate or too large.
    Jitter(JitterError),
    /// A payload whose audio is shorter than [`MIN_PACKET_TIME`] or longer than
    /// [`MAX_PACKET_TIME`] (or that the codec cannot size).
    PacketTime,
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Malformed(e) => write!(f, "malformed RTP: {e}"),
            PushError::PayloadType(pt) => write!(f, "unexpected payload type {pt}"),
            PushError::Jitter(e) => write!(f, "jitter buffer: {e}"),
            PushError::PacketTime => f.write_str("packet time not between 10 and 60 ms"),
        }
    }
}

impl std::error::Error for PushError {}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TranscodeStats {
    pub malformed: u64,
    pub wrong_payload_type: u64,
    /// Packets refused for their packet time ([`PushError::PacketTime`]).
    pub wrong_packet_time: u64,
    /// Changes of the incoming packet time after the first packet (the jitter buffer's
    /// cadence follows).
    pub packet_time_changes: u64,
    /// Incoming SSRC changes (each resets the jitter buffer and decoder).
    pub ssrc_changes: u64,
    /// Frames rebuilt from the next packet's in-band FEC.
    pub fec_frames: u64,
    /// Frames concealed without FEC (PLC, or silence for G.711).
    pub plc_frames: u64,
    /// Packets that failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Frames that failed to encode or did not fit the output buffer (not sent).
    pub encode_errors: u64,
    /// Packets sent and their payload bytes (the SR sender information).
    pub packets_sent: u32,
    pub octets_sent: u32,
}

/// One direction of a transcoded stream.
pub struct Transcoder {
    config: TranscoderConfig,
    jitter: JitterBuffer,
    decoder: Decoder,
    encoder: Encoder,
    remote_ssrc: Option<u32>,
    /// Decoded audio not yet sent: `pcm[..queued]`. Never more than one output packet
    /// less a sample plus one incoming packet ([`pcm_capacity`]).
    pcm: Box<[i16]>,
    queued: usize,
    /// Samples in one outgoing packet.
    output_samples: usize,
    /// The next outgoing packet starts a talkspurt (its marker bit).
    marker_pending: bool,
    /// When decoded audio was last queued: a full packet queued is due from then.
    queued_at: Option<Instant>,
    /// The incoming stream's packet time (the jitter buffer's cadence), once a packet
    /// came, and how many packets in a row since had another one.
    packet_time: Option<(Duration, u8)>,
    sequence: u16,
    timestamp: u32,
    output_ticks: u32,
    last_sent: Option<Instant>,
    received: ReceiveStats,
    stats: TranscodeStats,
}

impl fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transcoder")
            .field("config", &self.config)
            .field("decoder", &self.decoder)
            .field("encoder", &self.encoder)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The PCM queue's size at `rate`: one outgoing and one incoming packet of the longest
/// packet time.
fn pcm_capacity(rate: SampleRate) -> usize {
    2 * rate.samples(MAX_PACKET_TIME)
}

/// RTP timestamp units of `duration` at `clock_rate` (at most 60 ms here, so it fits).
fn ticks(clock_rate: u32, duration: Duration) -> u32 {
    let n = u128::from(clock_rate) * duration.as_nanos() / 1_000_000_000;
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The outgoing packet time for `codec`: Opus always 20 ms; G.711 and G.722 as asked when it is
/// between [`MIN_PACKET_TIME`] and [`MAX_PACKET_TIME`] in whole milliseconds, else 20 ms.
fn output_frame(codec: Codec, asked: Duration) -> Duration {
    let whole_ms = asked.subsec_nanos().is_multiple_of(1_000_000);
    match codec {
        Codec::G711(_) | Codec::G722
            if whole_ms && (MIN_PACKET_TIME..=MAX_PACKET_TIME).contains(&asked) =>
        {
            asked
        }
        _ => FRAME,
    }
}

impl Transcoder {
    /// Sets up the direction: jitter buffer, decoder, encoder and PCM queue (the only
    /// allocations).
    pub fn new(mut config: TranscoderConfig) -> Result<Transcoder, CodecError> {
        let decoder = Decoder::new(config.input, config.pcm_rate)?;
        let encoder = Encoder::new(config.output, config.pcm_rate, config.opus_complexity)?;
        let jitter = JitterBuffer::new(JitterConfig {
            clock_rate: config.input.clock_rate(),
            ..config.jitter
        });
        config.output_frame = output_frame(config.output, config.output_frame);
        let output_ticks = ticks(config.output.clock_rate(), config.output_frame);
        Ok(Transcoder {
            config,
            jitter,
            decoder,
            encoder,
            remote_ssrc: None,
            pcm: vec![0; pcm_capacity(config.pcm_rate)].into_boxed_slice(),
            queued: 0,
            output_samples: config.pcm_rate.samples(config.output_frame),
            marker_pending: false,
            queued_at: None,
            packet_time: None,
            sequence: config.initial_sequence,
            timestamp: config.initial_timestamp,
            output_ticks,
            last_sent: None,
            received: ReceiveStats::default(),
            stats: TranscodeStats::default(),
        })
    }

    pub fn config(&self) -> &TranscoderConfig {
        &self.config
    }

    pub fn stats(&self) -> &TranscodeStats {
        &self.stats
    }

    pub fn jitter_stats(&self) -> &JitterStats {
        self.jitter.stats()
    }

    /// The SSRC of the incoming stream, once a packet came.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    /// Takes in one RTP packet (already decrypted) that arrived at `now`.
    pub fn push_rtp(&mut self, now: Instant, packet: &[u8]) -> Result<(), PushError> {
        let packet = match rtp::Packet::new_checked(packet) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(PushError::Malformed(e));
            }
        };
        if packet.payload_type() != self.config.input_payload_type {
            self.stats.wrong_payload_type += 1;
            return Err(PushError::PayloadType(packet.payload_type()));
        }
        // The packet's own duration sets the jitter buffer's cadence (a new packet time
        // restarts it, as a new source would).
        let rate = self.config.pcm_rate;
        let duration = self
            .decoder
            .packet_samples(packet.payload())
            .map(|n| rate.duration(n))
            .filter(|d| (MIN_PACKET_TIME..=MAX_PACKET_TIME).contains(d));
        let Some(duration) = duration else {
            self.stats.wrong_packet_time += 1;
            return Err(PushError::PacketTime);
        };
        let ssrc = packet.ssrc();
        if self.remote_ssrc != Some(ssrc) {
            if self.remote_ssrc.is_some() {
                self.stats.ssrc_changes += 1;
                self.jitter.reset();
                self.decoder.reset();
            }
            self.remote_ssrc = Some(ssrc);
            self.packet_time = None;
        }
        self.follow_packet_time(duration);
        self.received.update(ssrc, packet.sequence_number());
        self.jitter
            .push(
                now,
                packet.sequence_number(),
                packet.timestamp(),
                packet.payload(),
            )
            .map_err(PushError::Jitter)
    }

    /// Sets the jitter buffer's cadence to the stream's packet time: at once for the
    /// stream's first packet; after that only once [`PACKET_TIME_SWITCH`] packets in a
    /// row show a new one, so a stray packet (or garbage whose TOC byte says anything)
    /// does not disturb playout: its audio is queued whatever its length.
    fn follow_packet_time(&mut self, duration: Duration) {
        let Some((current, pending)) = self.packet_time.as_mut() else {
            self.packet_time = Some((duration, 0));
            self.jitter.set_frame(duration);
            return;
        };
        if duration == *current {
            *pending = 0;
            return;
        }
        *pending += 1;
        if *pending >= PACKET_TIME_SWITCH {
            self.packet_time = Some((duration, 0));
            self.jitter.set_frame(duration);
            self.stats.packet_time_changes += 1;
        }
    }

    /// When [`Transcoder::poll_rtp`] has the next packet, `None` while the incoming stream
    /// is idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.queued >= self.output_samples {
            return self.queued_at;
        }
        self.jitter.poll_timeout()
    }

    /// Writes the packet due at `now` into `out` and returns its length; `None` when
    /// nothing is due. Call it until `None` after each wake-up. `out` should hold
    /// [`MAX_RTP_OUT`] bytes; a frame that does not fit is counted and dropped.
    pub fn poll_rtp(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        // Each pass sends a packet, drops one that failed to encode, or queues one
        // incoming packet's audio; a few at most are due at once.
        for _ in 0..4 * crate::media::jitter::SLOTS {
            if self.queued >= self.output_samples {
                if let Some(n) = self.encode_packet(now, out) {
                    return Some(n);
                }
                continue;
            }
            self.queue_next(now)?;
        }
        None
    }

    /// Writes the decoded audio of the outgoing packet due at `now` into `pcm` (one
    /// output packet time at the PCM rate: 160 samples at 8 kHz for 20 ms) and returns
    /// its length; `None` when nothing is due. For a consumer of the PCM itself (the
    /// RTMP publisher's AAC encoder): the encoder is not used, the jitter buffer, decoder
    /// and concealment are as for [`Transcoder::poll_rtp`].
    pub fn poll_pcm(&mut self, now: Instant, pcm: &mut [i16]) -> Option<usize> {
        let samples = self.output_samples;
        if pcm.len() < samples {
            return None;
        }
        for _ in 0..4 * crate::media::jitter::SLOTS {
            if self.queued >= samples {
                pcm[..samples].copy_from_slice(&self.pcm[..samples]);
                self.pcm.copy_within(samples..self.queued, 0);
                self.queued -= samples;
                self.marker_pending = false;
                return Some(samples);
            }
            self.queue_next(now)?;
        }
        None
    }

    /// The PCM rate and samples of one [`Transcoder::poll_pcm`] frame.
    pub fn pcm_frame(&self) -> (SampleRate, usize) {
        (self.config.pcm_rate, self.output_samples)
    }

    /// Pops one due packet from the jitter buffer and queues its audio (decoded, or
    /// concealed when missing or undecodable); `None` when nothing is due.
    fn queue_next(&mut self, now: Instant) -> Option<()> {
        let frame = self.jitter.config().frame;
        let rate = self.config.pcm_rate;
        // The queue holds less than one outgoing packet, so one incoming packet fits.
        let tail = &mut self.pcm[self.queued..];
        let missing = rate.samples(frame).min(tail.len());
        let mut new_talkspurt = false;
        let result = match self.jitter.pop(now)? {
            Pop::Packet(packet) => {
                new_talkspurt = packet.talkspurt_start;
                match self.decoder.decode(packet.payload, tail) {
                    Ok(n) => Ok(n),
                    Err(_) => {
                        self.stats.decode_errors += 1;
                        self.stats.plc_frames += 1;
                        self.decoder.conceal(None, &mut tail[..missing])
                    }
                }
            }
            Pop::Missing { next } => {
                if next.is_some() && matches!(self.decoder, Decoder::Opus(_)) {
                    self.stats.fec_frames += 1;
                } else {
                    self.stats.plc_frames += 1;
                }
                self.decoder.conceal(next, &mut tail[..missing])
            }
        };
        let samples = match result {
            Ok(n) => n.min(tail.len()),
            Err(_) => {
                // A failed concealment plays silence for the packet's time.
                self.stats.decode_errors += 1;
                tail[..missing].fill(0);
                missing
            }
        };
        if new_talkspurt {
            // The next packet gets the marker bit, and what was left of the last
            // talkspurt (less than a packet) is dropped from the front.
            self.marker_pending = true;
            self.pcm.copy_within(self.queued..self.queued + samples, 0);
            self.queued = 0;
        }
        self.queued += samples;
        self.queued_at = Some(now);
        Some(())
    }

    /// Encodes the first outgoing packet's worth of queued audio into `out` (which drops
    /// it from the queue either way); `None` when it failed to encode or fit.
    fn encode_packet(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let samples = self.output_samples;
        let talkspurt_start = core::mem::take(&mut self.marker_pending);
        let result = self.encode_front(now, talkspurt_start, out);
        self.pcm.copy_within(samples..self.queued, 0);
        self.queued -= samples;
        result
    }

    fn encode_front(
        &mut self,
        now: Instant,
        talkspurt_start: bool,
        out: &mut [u8],
    ) -> Option<usize> {
        if let (true, Some(last)) = (talkspurt_start, self.last_sent) {
            // RFC 3550 §5.1: the timestamp advances by the time that passed during the
            // pause (in whole packets), beyond the one packet added per packet.
            let frame = self.config.output_frame.as_nanos().max(1);
            let frames = now.saturating_duration_since(last).as_nanos() / frame;
            let skip = u32::try_from(frames.saturating_sub(1)).unwrap_or(u32::MAX);
            self.timestamp = self
                .timestamp
                .wrapping_add(skip.wrapping_mul(self.output_ticks));
        }
        let header = rtp::Header {
            marker: talkspurt_start,
            payload_type: self.config.output_payload_type,
            sequence_number: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.config.ssrc,
        };
        let Some(payload_out) = out.get_mut(rtp::HEADER_LEN..) else {
            self.stats.encode_errors += 1;
            return None;
        };
        let len = match self
            .encoder
            .encode(&self.pcm[..self.output_samples], payload_out)
        {
            Ok(len) => len,
            Err(_) => {
                self.stats.encode_errors += 1;
                return None;
            }
        };
        header
            .emit(out)
            .expect("the payload was written after HEADER_LEN bytes, so they exist");
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.output_ticks);
        self.last_sent = Some(now);
        self.stats.packets_sent = self.stats.packets_sent.wrapping_add(1);
        // A payload is at most MAX_RTP_OUT bytes.
        self.stats.octets_sent = self.stats.octets_sent.wrapping_add(len as u32);
        Some(rtp::HEADER_LEN + len)
    }

    /// The sender information for an SR on the outgoing stream: `ntp` is the wall clock
    /// at `now` as [`crate::wire::rtcp::ntp_timestamp`] makes it; the RTP timestamp is the
    /// one the next packet would carry at `now`.
    pub fn sender_info(&self, now: Instant, ntp: u64) -> SenderInfo {
        let since = self
            .last_sent
            .map_or(0, |t| now.saturating_duration_since(t).as_micros());
        let extra = since * u128::from(self.config.output.clock_rate()) / 1_000_000;
        // Modulo 2^32 is the RTP timestamp's own arithmetic.
        let rtp_timestamp =
            self.timestamp
                .wrapping_add(extra as u32)
                .wrapping_sub(if self.last_sent.is_some() {
                    self.output_ticks
                } else {
                    0
                });
        SenderInfo {
            ntp_timestamp: ntp,
            rtp_timestamp,
            packet_count: self.stats.packets_sent,
            octet_count: self.stats.octets_sent,
        }
    }

    /// A report block on the incoming stream (RFC 3550 §6.4.1, A.3), `None` before its
    /// first packet. Updates the interval counters behind the fraction lost, so call it
    /// once per report sent. LSR/DLSR are left 0: the caller fills them from the SRs it
    /// received.
    pub fn report_block(&mut self) -> Option<ReportBlock> {
        self.received.report_block(self.jitter.jitter())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::codec::{Law, g711};

    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn config(input: Codec, in_pt: u8, output: Codec, out_pt: u8) -> TranscoderConfig {
        TranscoderConfig {
            input,
            input_payload_type: in_pt,
            output,
            output_payload_type: out_pt,
            output_frame: FRAME,
            pcm_rate: SampleRate::Hz8000,
            opus_complexity: 5,
            ssrc: 0x0bad_cafe,
            initial_sequence: 65_535,
            initial_timestamp: 0xffff_ff00,
            jitter: JitterConfig::new(8_000),
        }
    }

    fn pcmu(seq: u16, ssrc: u32) -> [u8; 172] {
        let mut p = [0u8; 172];
        rtp::Header {
            marker: false,
            payload_type: 0,
            sequence_number: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
        }
        .emit(&mut p)
        .expect("room");
        let mut pcm = [0i16; 160];
        for (i, s) in pcm.iter_mut().enumerate() {
            *s = if (i / 4) % 2 == 0 { 3000 } else { -3000 };
        }
        g711::encode(Law::Mu, &pcm, &mut p[12..]);
        p
    }

    #[test]
    fn poll_pcm_gives_the_decoded_audio_at_the_packet_cadence() {
        let t0 = base();
        let mut t = Transcoder::new(config(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0))
            .expect("set up");
        assert_eq!(t.pcm_frame(), (SampleRate::Hz8000, 160));
        for seq in 0..5u16 {
            let now = t0 + Duration::from_millis(u64::from(seq) * 20);
            t.push_rtp(now, &pcmu(seq, 9)).expect("taken");
        }
        let mut pcm = [0i16; 160];
        let mut frames = 0;
        let mut now = t0;
        for _ in 0..15 {
            now += Duration::from_millis(20);
            while let Some(n) = t.poll_pcm(now, &mut pcm) {
                assert_eq!(n, 160);
                if pcm.iter().all(|s| *s == 0) {
                    // concealment after the stream's end, until the buffer goes idle
                    assert!(frames >= 5, "silence before the audio");
                    continue;
                }
                // the square wave of ±3000 comes back through G.711 (within its step)
                assert!(
                    pcm[..4].iter().all(|s| (2900..=3100).contains(s)),
                    "{pcm:?}"
                );
                assert!(
                    pcm[4..8].iter().all(|s| (-3100..=-2900).contains(s)),
                    "{pcm:?}"
                );
                frames += 1;
            }
        }
        assert_eq!(frames, 5);
        assert_eq!(t.stats().packets_sent, 0, "nothing was encoded");
        assert_eq!(t.poll_pcm(now, &mut [0i16; 80]), None, "a buffer too small");
    }

    #[test]
    fn g711_needs_8_khz() {
        let mut c = config(Codec::Opus, 111, Codec::G711(Law::A), 8);
        c.pcm_rate = SampleRate::Hz48000;
        assert_eq!(Transcoder::new(c).err(), Some(CodecError::UnsupportedRate));
    }

    #[test]
    fn pcmu_to_pcma_keeps_cadence_wraps_and_reports() {
        let t0 = base();
        let mut t = Transcoder::new(config(Codec::G711(Law::Mu), 0, Codec::G711(Law::A), 8))
            .expect("set up");
        // Packets 0..10 without 4, every 20 ms.
        for seq in (0..10u16).filter(|&s| s != 4) {
            let now = t0 + Duration::from_millis(u64::from(seq) * 20);
            t.push_rtp(now, &pcmu(seq, 77)).expect("taken");
        }
        let mut out = [0u8; MAX_RTP_OUT];
        let mut seen = Vec::new();
        let mut now = t0;
        for _ in 0..20 {
            now += Duration::from_millis(20);
            while let Some(n) = t.poll_rtp(now, &mut out) {
                let p = rtp::Packet::new_checked(&out[..n]).expect("valid");
                assert_eq!(p.payload().len(), 160);
                assert_eq!(p.payload_type(), 8);
                assert_eq!(p.ssrc(), 0x0bad_cafe);
                seen.push((p.sequence_number(), p.timestamp(), p.marker()));
            }
        }
        assert!(seen.len() >= 10, "{seen:?}");
        assert_eq!(seen[0], (65_535, 0xffff_ff00, true));
        assert_eq!(seen[1], (0, 0xffff_ffa0, false));
        assert_eq!(seen[2], (1, 0x40, false));
        assert_eq!(t.stats().plc_frames, 1 + (seen.len() as u64 - 10));
        assert_eq!(t.stats().packets_sent as usize, seen.len());
        assert_eq!(t.stats().octets_sent as usize, 160 * seen.len());

        let block = t.report_block().expect("a stream came");
        assert_eq!(block.ssrc, 77);
        assert_eq!(block.highest_sequence, 9);
        assert_eq!(block.cumulative_lost, 1);
        assert_eq!(block.fraction_lost, 25, "1 of 10 = 25.6/256");
        // The next interval has nothing new: fraction 0, cumulative kept.
        let again = t.report_block().expect("a stream came");
        assert_eq!((again.fraction_lost, again.cumulative_lost), (0, 1));

        let last_sent = t0 + Duration::from_millis(20 * seen.len() as u64 + 20);
        let si = t.sender_info(last_sent + Duration::from_millis(10), 42);
        assert_eq!(si.ntp_timestamp, 42);
        assert_eq!(si.packet_count as usize, seen.len());
    }

    #[test]
    fn new_remote_ssrc_resets_and_counts() {
        let t0 = base();
        let mut t = Transcoder::new(config(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0))
            .expect("set up");
        t.push_rtp(t0, &pcmu(100, 1)).expect("taken");
        t.push_rtp(t0 + Duration::from_millis(20), &pcmu(5, 2))
            .expect("a new source starts over");
        assert_eq!(t.stats().ssrc_changes, 1);
        assert_eq!(t.remote_ssrc(), Some(2));
        let mut out = [0u8; MAX_RTP_OUT];
        let n = t
            .poll_rtp(t0 + Duration::from_millis(60), &mut out)
            .expect("due");
        let p = rtp::Packet::new_checked(&out[..n]).expect("valid");
        assert!(p.marker(), "the new source starts a talkspurt");
        assert_eq!(t.report_block().map(|b| b.highest_sequence), Some(5));
    }

    #[test]
    fn a_small_output_buffer_drops_the_frame_without_panic() {
        let t0 = base();
        let mut t = Transcoder::new(config(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0))
            .expect("set up");
        t.push_rtp(t0, &pcmu(1, 1)).expect("taken");
        let mut small = [0u8; 100];
        assert_eq!(t.poll_rtp(t0 + Duration::from_millis(40), &mut small), None);
        assert_eq!(t.stats().encode_errors, 1);
        // Two concealed frames are due at 80 ms; neither fits, both are counted.
        let mut tiny = [0u8; 4];
        assert_eq!(t.poll_rtp(t0 + Duration::from_millis(80), &mut tiny), None);
        assert_eq!(t.stats().encode_errors, 3);
    }

    /// `count` PCMU packets of `ms` each carrying one continuous 1 kHz tone (seq, the
    /// packet's bytes).
    fn pcmu_tone(ms: usize, count: usize) -> Vec<Vec<u8>> {
        let n = 8 * ms;
        (0..count)
            .map(|k| {
                let mut p = vec![0u8; rtp::HEADER_LEN + n];
                rtp::Header {
                    marker: k == 0,
                    payload_type: 0,
                    sequence_number: k as u16,
                    timestamp: (k * n) as u32,
                    ssrc: 9,
                }
                .emit(&mut p)
                .expect("room");
                let pcm: Vec<i16> = (0..n)
                    .map(|i| {
                        let t = (k * n + i) as f64 / 8000.0;
                        (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
                    })
                    .collect();
                g711::encode(Law::Mu, &pcm, &mut p[rtp::HEADER_LEN..]);
                p
            })
            .collect()
    }

    /// Feeds `packets` (each `in_ms` long) at their cadence and collects what comes out
    /// over the same time plus half a second: (payload bytes in order, packets out).
    fn run_through(
        t: &mut Transcoder,
        packets: &[Vec<u8>],
        in_ms: u64,
    ) -> (Vec<u8>, Vec<(u16, u32, usize)>) {
        let t0 = base();
        let mut out = [0u8; MAX_RTP_OUT];
        let (mut audio, mut sent) = (Vec::new(), Vec::new());
        let end_ms = in_ms * packets.len() as u64 + 500;
        for ms in 0..end_ms {
            let now = t0 + Duration::from_millis(ms);
            if ms % in_ms == 0
                && let Some(p) = packets.get((ms / in_ms) as usize)
            {
                t.push_rtp(now, p).expect("taken");
            }
            while let Some(n) = t.poll_rtp(now, &mut out) {
                let p = rtp::Packet::new_checked(&out[..n]).expect("valid");
                audio.extend_from_slice(p.payload());
                sent.push((p.sequence_number(), p.timestamp(), p.payload().len()));
            }
        }
        (audio, sent)
    }

    /// Where `needle` (the start of the sent audio) begins in `heard`.
    fn offset_of(heard: &[u8], needle: &[u8]) -> usize {
        heard
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the sent audio is in what came out")
    }

    #[test]
    fn g711_of_every_common_packet_time_comes_out_whole_in_20_ms_packets() {
        for ms in [10usize, 20, 30, 40, 50, 60] {
            let packets = pcmu_tone(ms, 1200 / ms);
            let sent_audio: Vec<u8> = packets
                .iter()
                .flat_map(|p| p[rtp::HEADER_LEN..].to_vec())
                .collect();
            let mut t = Transcoder::new(config(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0))
                .expect("set up");
            let (heard, out) = run_through(&mut t, &packets, ms as u64);
            // Every outgoing packet is 20 ms, numbered and stamped without a gap.
            assert!(
                out.iter().all(|&(_, _, len)| len == 160),
                "{ms} ms: {out:?}"
            );
            for w in out.windows(2) {
                assert_eq!(w[1].0, w[0].0.wrapping_add(1), "{ms} ms");
                assert_eq!(w[1].1, w[0].1.wrapping_add(160), "{ms} ms");
            }
            // G.711 decodes and re-encodes to the same bytes: the tone came through in
            // order with nothing concealed, dropped or repeated.
            let start = offset_of(&heard, &sent_audio[..400]);
            let tail = sent_audio.len() - sent_audio.len() % 160;
            assert_eq!(
                &heard[start..start + tail - 160],
                &sent_audio[..tail - 160],
                "{ms} ms"
            );
            assert!(
                heard[..start].iter().all(|&b| b == 0xff),
                "{ms} ms: silence before"
            );
            assert_eq!(t.stats().plc_frames, t.jitter_stats().stretched, "{ms} ms");
            assert_eq!(t.jitter_stats().lost, 0, "{ms} ms");
            assert_eq!(t.stats().packet_time_changes, 0, "{ms} ms");
        }
    }

    #[test]
    fn g711_goes_out_at_the_asked_packet_time() {
        for ms in [10u64, 30, 40, 60] {
            let packets = pcmu_tone(20, 60);
            let sent_audio: Vec<u8> = packets
                .iter()
                .flat_map(|p| p[rtp::HEADER_LEN..].to_vec())
                .collect();
            let mut c = config(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0);
            c.output_frame = Duration::from_millis(ms);
            let mut t = Transcoder::new(c).expect("set up");
            let (heard, out) = run_through(&mut t, &packets, 20);
            let n = 8 * ms as usize;
            assert!(out.iter().all(|&(_, _, len)| len == n), "{ms} ms: {out:?}");
            for w in out.windows(2) {
                assert_eq!(w[1].1, w[0].1.wrapping_add(n as u32), "{ms} ms");
            }
            let start = offset_of(&heard, &sent_audio[..400]);
            let whole = (sent_audio.len() - n) / n * n;
            assert_eq!(
                &heard[start..start + whole],
                &sent_audio[..whole],
                "{ms} ms"
            );
        }
        // A packet time srgate does not send falls back to 20 ms.
        let mut c = config(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0);
        c.output_frame = Duration::from_millis(90);
        assert_eq!(
            Transcoder::new(c).expect("set up").config().output_frame,
            FRAME
        );
        let mut c = config(Codec::G711(Law::Mu), 0, Codec::Opus, 111);
        c.output_frame = Duration::from_millis(30);
        assert_eq!(
            Transcoder::new(c).expect("set up").config().output_frame,
            FRAME
        );
    }

    #[test]
    fn opus_packets_of_40_and_60_ms_are_decoded_whole() {
        for ms in [40usize, 60] {
            let mut enc =
                ::opus::Encoder::new(8000, ::opus::Channels::Mono, ::opus::Application::Voip)
                    .expect("encoder");
            let n = 8 * ms;
            let mut packets = Vec::new();
            for k in 0..(1200 / ms) {
                let pcm: Vec<i16> = (0..n)
                    .map(|i| {
                        let t = (k * n + i) as f64 / 8000.0;
                        (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
                    })
                    .collect();
                let mut p = vec![0u8; rtp::HEADER_LEN + 1500];
                let len = enc.encode(&pcm, &mut p[rtp::HEADER_LEN..]).expect("encode");
                p.truncate(rtp::HEADER_LEN + len);
                rtp::Header {
                    marker: k == 0,
                    payload_type: 111,
                    sequence_number: k as u16,
                    timestamp: (k * 6 * n) as u32,
                    ssrc: 5,
                }
                .emit(&mut p)
                .expect("room");
                packets.push(p);
            }
            let mut t =
                Transcoder::new(config(Codec::Opus, 111, Codec::G711(Law::Mu), 0)).expect("set up");
            let (heard, out) = run_through(&mut t, &packets, ms as u64);
            assert!(out.len() >= 55, "{ms} ms: {} packets", out.len());
            assert_eq!(
                t.stats().decode_errors + t.stats().wrong_packet_time,
                0,
                "{ms} ms"
            );
            // From 200 ms on (after the start and before the end) every 20 ms carries the
            // tone: nothing became silence.
            let mut pcm = [0i16; 160];
            for frame in heard.chunks(160).skip(10).take(40) {
                g711::decode(Law::Mu, frame, &mut pcm);
                let energy = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 160.0;
                assert!(energy > 1.0e6, "{ms} ms: a frame of energy {energy}");
            }
        }
    }

    #[test]
    fn a_packet_time_outside_10_to_60_ms_is_refused_and_a_lasting_change_is_followed() {
        let t0 = base();
        let mut t = Transcoder::new(config(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0))
            .expect("set up");
        let long = pcmu_tone(80, 1);
        assert_eq!(t.push_rtp(t0, &long[0]), Err(PushError::PacketTime));
        let short = pcmu_tone(5, 1);
        assert_eq!(t.push_rtp(t0, &short[0]), Err(PushError::PacketTime));
        assert_eq!(t.stats().wrong_packet_time, 2);
        // the first packet sets the cadence
        let twenty = pcmu_tone(20, 10);
        t.push_rtp(t0, &twenty[0]).expect("20 ms");
        assert_eq!(t.jitter.config().frame, FRAME);
        // one stray 30 ms packet is played as it is; three in a row move the cadence
        let thirty = pcmu_tone(30, 10);
        t.push_rtp(t0, &thirty[1]).expect("30 ms");
        t.push_rtp(t0, &twenty[2]).expect("20 ms");
        assert_eq!(t.jitter.config().frame, FRAME);
        for packet in &thirty[3..6] {
            t.push_rtp(t0, packet).expect("30 ms");
        }
        assert_eq!(t.jitter.config().frame, Duration::from_millis(30));
        assert_eq!(t.stats().packet_time_changes, 1);
        assert_eq!(t.jitter_stats().discarded, 0);
    }

    /// Power of `hz` in `pcm` at `rate` (Goertzel), relative to the signal's total power.
    fn share_at(pcm: &[i16], rate: u32, hz: f64) -> f64 {
        let w = std::f64::consts::TAU * hz / f64::from(rate);
        let (mut s1, mut s2) = (0f64, 0f64);
        let mut total = 0f64;
        for &x in pcm {
            let x = f64::from(x);
            total += x * x;
            let s0 = x + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        // a pure tone of N samples gives N/2 * total here
        power / (total.max(1.0) * pcm.len() as f64 / 2.0)
    }

    /// `count` 20 ms RTP packets (payload type `pt`, `ticks` apart) of a `hz` tone coded by
    /// `encoder` from PCM at `rate`.
    fn tone_packets(
        encoder: &mut Encoder,
        pt: u8,
        ticks: u32,
        hz: f64,
        count: usize,
    ) -> Vec<Vec<u8>> {
        let rate = encoder.rate();
        let n = rate.frame_samples();
        (0..count)
            .map(|k| {
                let pcm: Vec<i16> = (0..n)
                    .map(|i| {
                        let t = (k * n + i) as f64 / f64::from(rate.hz());
                        (8_000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16
                    })
                    .collect();
                let mut p = vec![0u8; 12 + 400];
                rtp::Header {
                    marker: false,
                    payload_type: pt,
                    sequence_number: k as u16,
                    timestamp: k as u32 * ticks,
                    ssrc: 5,
                }
                .emit(&mut p)
                .expect("room");
                let len = encoder.encode(&pcm, &mut p[12..]).expect("encoded");
                p.truncate(12 + len);
                p
            })
            .collect()
    }

    /// Pushes `packets` 20 ms apart and decodes what comes out with `decoder`.
    fn through(t: &mut Transcoder, packets: &[Vec<u8>], decoder: &mut Decoder) -> Vec<i16> {
        let t0 = base();
        let mut heard = Vec::new();
        let mut out = [0u8; MAX_RTP_OUT];
        let mut pcm = [0i16; 960];
        for (k, packet) in packets.iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * k as u64);
            t.push_rtp(now, packet).expect("taken");
            while let Some(n) = t.poll_rtp(now, &mut out) {
                let p = rtp::Packet::new_checked(&out[..n]).expect("valid");
                let got = decoder.decode(p.payload(), &mut pcm).expect("decodes");
                heard.extend_from_slice(&pcm[..got]);
            }
        }
        heard
    }

    #[test]
    fn g722_and_opus_carry_wideband_audio_through_16_khz() {
        let rate = Codec::G722.pcm_rate_with(Codec::Opus);
        assert_eq!(rate, SampleRate::Hz16000);
        // 6 kHz: above anything G.711 carries, inside G.722's 7 kHz
        for (from, from_pt, to, to_pt) in [
            (Codec::G722, 9, Codec::Opus, 111),
            (Codec::Opus, 111, Codec::G722, 9),
        ] {
            let mut c = config(from, from_pt, to, to_pt);
            c.pcm_rate = rate;
            c.jitter = JitterConfig::new(from.clock_rate());
            let mut t = Transcoder::new(c).expect("set up");
            let mut encoder = Encoder::new(from, rate, 5).unwrap();
            let packets = tone_packets(&mut encoder, from_pt, from.frame_ticks(), 6_000.0, 60);
            let mut decoder = Decoder::new(to, rate).unwrap();
            let heard = through(&mut t, &packets, &mut decoder);
            assert!(
                heard.len() >= 40 * 320,
                "{from:?} → {to:?}: {}",
                heard.len()
            );
            let tail = &heard[heard.len() - 20 * 320..];
            let share = share_at(tail, 16_000, 6_000.0);
            assert!(
                share > 0.8,
                "{from:?} → {to:?}: 6 kHz is {share:.2} of the power"
            );
        }
        assert_eq!(
            Codec::G722.pcm_rate_with(Codec::G711(Law::A)),
            SampleRate::Hz8000
        );
        assert_eq!(Codec::Opus.pcm_rate_with(Codec::Opus), SampleRate::Hz48000);
    }

    #[test]
    fn g722_and_g711_meet_at_8_khz() {
        for (from, from_pt, to, to_pt) in [
            (Codec::G722, 9, Codec::G711(Law::Mu), 0),
            (Codec::G711(Law::Mu), 0, Codec::G722, 9),
        ] {
            let t = Transcoder::new(config(from, from_pt, to, to_pt));
            let mut t = t.expect("set up at 8 kHz");
            let mut encoder = Encoder::new(from, SampleRate::Hz8000, 5).unwrap();
            let packets = tone_packets(&mut encoder, from_pt, 160, 1_000.0, 40);
            assert_eq!(packets[0].len(), 12 + 160, "{from:?}: 160 bytes per 20 ms");
            let mut decoder = Decoder::new(to, SampleRate::Hz8000).unwrap();
            let heard = through(&mut t, &packets, &mut decoder);
            let tail = &heard[heard.len() - 20 * 160..];
            let share = share_at(tail, 8_000, 1_000.0);
            assert!(
                share > 0.8,
                "{from:?} → {to:?}: 1 kHz is {share:.2} of the power"
            );
        }
    }
}
