//! The echo service (the callee `echo`, docs/protocol.md): what a browser sends comes back to it
//! through srgate's whole media path, the same jitter buffer, Opus decoding with PLC/FEC,
//! PCM transcoding point and encoder that a SIP call uses (a [`Transcoder`] from Opus to
//! Opus), so one browser alone can test everything on its side of the gateway.
//!
//! Sans-IO: feed decrypted RTP with [`Echo::push_rtp`], drain [`Echo::poll_rtp`] when
//! [`Echo::poll_timeout`] has passed, then protect and send what it wrote.

use std::time::Instant;

use super::codec::{Codec, CodecError, SampleRate};
use super::jitter::{JitterConfig, JitterStats};
use super::transcode::{PushError, TranscodeStats, Transcoder, TranscoderConfig};
use crate::wire::rtcp::{ReportBlock, SenderInfo};

/// Settings of one echo call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoConfig {
    /// The Opus payload type negotiated in the SDP (both directions use it).
    pub payload_type: u8,
    /// Rate of the PCM between decoder and encoder: 48 kHz keeps full band; 8 kHz runs the
    /// echo through the same narrowband path as a G.711 call.
    pub pcm_rate: SampleRate,
    /// `[media] opus_complexity`.
    pub opus_complexity: u8,
    /// srgate's SSRC (the one in the SDP answer) and the random start of the sequence
    /// number and timestamp.
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
}

/// One echo call's media.
#[derive(Debug)]
pub struct Echo {
    transcoder: Transcoder,
}

impl Echo {
    /// Sets up the pipeline; all its memory is allocated here.
    pub fn new(config: EchoConfig) -> Result<Echo, CodecError> {
        let transcoder = Transcoder::new(TranscoderConfig {
            input: Codec::Opus,
            input_payload_type: config.payload_type,
            output: Codec::Opus,
            output_payload_type: config.payload_type,
            output_frame: crate::media::codec::FRAME,
            pcm_rate: config.pcm_rate,
            opus_complexity: config.opus_complexity,
            ssrc: config.ssrc,
            initial_sequence: config.initial_sequence,
            initial_timestamp: config.initial_timestamp,
            jitter: JitterConfig::new(Codec::Opus.clock_rate()),
        })?;
        Ok(Echo { transcoder })
    }

    /// Takes in one decrypted RTP packet that arrived at `now`.
    pub fn push_rtp(&mut self, now: Instant, packet: &[u8]) -> Result<(), PushError> {
        self.transcoder.push_rtp(now, packet)
    }

    /// Writes the next echoed packet due at `now` into `out`; `None` when nothing is due.
    pub fn poll_rtp(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        self.transcoder.poll_rtp(now, out)
    }

    /// When the next echoed packet is due; `None` while the browser sends nothing.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transcoder.poll_timeout()
    }

    pub fn stats(&self) -> &TranscodeStats {
        self.transcoder.stats()
    }

    pub fn jitter_stats(&self) -> &JitterStats {
        self.transcoder.jitter_stats()
    }

    /// SR sender information for the echoed stream (see [`Transcoder::sender_info`]).
    pub fn sender_info(&self, now: Instant, ntp: u64) -> SenderInfo {
        self.transcoder.sender_info(now, ntp)
    }

    /// A report block on the browser's stream (see [`Transcoder::report_block`]).
    pub fn report_block(&mut self) -> Option<ReportBlock> {
        self.transcoder.report_block()
    }
}
