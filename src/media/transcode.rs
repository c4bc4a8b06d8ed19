//! One direction of transcoded media: incoming RTP → jitter buffer → decode (PLC or FEC
//! for a missing frame) → one 20 ms PCM frame at the transcoding rate → encode → outgoing
//! RTP with srgate's own SSRC and a continuous sequence number and timestamp
//! (RFC 3550 §5.1: the timestamp jumps over a pause, the marker bit starts each
//! talkspurt, RFC 3551 §4.1).
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
use std::time::Instant;

use super::codec::{
    Codec, CodecError, Decoder, Encoder, FRAME, MAX_FRAME_SAMPLES, PcmFrame, SampleRate,
};
use super::jitter::{JitterBuffer, JitterConfig, JitterError, JitterStats, Pop};
use super::stats::ReceiveStats;
use crate::wire::rtcp::{ReportBlock, SenderInfo};
use crate::wire::rtp;

/// Output buffers of [`Transcoder::poll_rtp`] of this size always suffice (an RTP header
/// and the largest 20 ms Opus frame).
pub const MAX_RTP_OUT: usize = rtp::HEADER_LEN + 1276;

/// Settings of one direction, fixed at setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscoderConfig {
    /// Codec and payload type of incoming packets; other payload types are refused.
    pub input: Codec,
    pub input_payload_type: u8,
    /// Codec and payload type of outgoing packets.
    pub output: Codec,
    pub output_payload_type: u8,
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
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Malformed(e) => write!(f, "malformed RTP: {e}"),
            PushError::PayloadType(pt) => write!(f, "unexpected payload type {pt}"),
            PushError::Jitter(e) => write!(f, "jitter buffer: {e}"),
        }
    }
}

impl std::error::Error for PushError {}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TranscodeStats {
    pub malformed: u64,
    pub wrong_payload_type: u64,
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
    pcm: Box<PcmFrame>,
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

impl Transcoder {
    /// Sets up the direction: jitter buffer, decoder and encoder (the only allocations).
    pub fn new(config: TranscoderConfig) -> Result<Transcoder, CodecError> {
        let decoder = Decoder::new(config.input, config.pcm_rate)?;
        let encoder = Encoder::new(config.output, config.pcm_rate, config.opus_complexity)?;
        let jitter = JitterBuffer::new(JitterConfig {
            clock_rate: config.input.clock_rate(),
            ..config.jitter
        });
        Ok(Transcoder {
            config,
            jitter,
            decoder,
            encoder,
            remote_ssrc: None,
            pcm: Box::new([0; MAX_FRAME_SAMPLES]),
            sequence: config.initial_sequence,
            timestamp: config.initial_timestamp,
            output_ticks: config.output.frame_ticks(),
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
        let ssrc = packet.ssrc();
        if self.remote_ssrc != Some(ssrc) {
            if self.remote_ssrc.is_some() {
                self.stats.ssrc_changes += 1;
                self.jitter.reset();
                self.decoder.reset();
            }
            self.remote_ssrc = Some(ssrc);
        }
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

    /// When [`Transcoder::poll_rtp`] has the next packet, `None` while the incoming stream
    /// is idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.jitter.poll_timeout()
    }

    /// Writes the packet due at `now` into `out` and returns its length; `None` when
    /// nothing is due. Call it until `None` after each wake-up. `out` should hold
    /// [`MAX_RTP_OUT`] bytes; a frame that does not fit is counted and dropped.
    pub fn poll_rtp(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        // A frame that fails to encode is dropped; then the next due frame is tried. Each
        // pass consumes one frame, and at most a few are due at once.
        for _ in 0..crate::media::jitter::SLOTS {
            let (samples, talkspurt_start) = self.next_pcm_frame(now)?;
            if let Some(n) = self.encode_packet(now, samples, talkspurt_start, out) {
                return Some(n);
            }
        }
        None
    }

    /// Pops one due frame and decodes or conceals it into `self.pcm`.
    fn next_pcm_frame(&mut self, now: Instant) -> Option<(usize, bool)> {
        let frame_samples = self.config.pcm_rate.frame_samples();
        let pcm = &mut *self.pcm;
        let (result, talkspurt_start) = match self.jitter.pop(now)? {
            Pop::Packet(frame) => match self.decoder.decode(frame.payload, pcm) {
                Ok(n) => (Ok(n), frame.talkspurt_start),
                Err(_) => {
                    self.stats.decode_errors += 1;
                    self.stats.plc_frames += 1;
                    (self.decoder.conceal(None, pcm), frame.talkspurt_start)
                }
            },
            Pop::Missing { next } => {
                if next.is_some() && matches!(self.decoder, Decoder::Opus(_)) {
                    self.stats.fec_frames += 1;
                } else {
                    self.stats.plc_frames += 1;
                }
                (self.decoder.conceal(next, pcm), false)
            }
        };
        let samples = match result {
            Ok(n) => n.min(frame_samples),
            Err(_) => {
                self.stats.decode_errors += 1;
                0
            }
        };
        // A short frame (a 10 ms packet, a failed concealment) is padded with silence so
        // the outgoing stream keeps its 20 ms cadence.
        pcm[samples..frame_samples].fill(0);
        Some((frame_samples, talkspurt_start))
    }

    fn encode_packet(
        &mut self,
        now: Instant,
        samples: usize,
        talkspurt_start: bool,
        out: &mut [u8],
    ) -> Option<usize> {
        if let (true, Some(last)) = (talkspurt_start, self.last_sent) {
            // RFC 3550 §5.1: the timestamp advances by the time that passed during the
            // pause (in whole frames), beyond the one frame added per packet.
            let frames = now.saturating_duration_since(last).as_nanos() / FRAME.as_nanos();
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
        let len = match self.encoder.encode(&self.pcm[..samples], payload_out) {
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
}
