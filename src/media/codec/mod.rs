//! Audio codecs of srgate's media path: Opus through libopus ([`opus`]), G.711 with our
//! own tables ([`g711`]), G.722 written here from the ITU-T Recommendation ([`g722`]), all
//! behind one [`Decoder`] / [`Encoder`] pair that the
//! transcoder drives, and the AAC-LC encoder of RTMP publishing ([`aac`]). Every codec
//! works on mono 16-bit PCM in caller-owned buffers: srgate sends 20 ms frames (G.711 also
//! at the SIP side's packet time) and decodes packets of any common packet time; codec
//! state is created once per stream and nothing allocates per frame.

#[cfg(feature = "aac")]
pub mod aac;
pub mod g711;
pub mod g722;
pub mod opus;

use core::fmt;
use core::time::Duration;

pub use g711::Law;

/// One frame: srgate packetises every codec at 20 ms (the default ptime of RFC 7587 §4.2
/// for Opus and of RFC 3551 §4.5 for G.711).
pub const FRAME: Duration = Duration::from_millis(20);

/// Samples in the largest frame: 20 ms at 48 kHz.
pub const MAX_FRAME_SAMPLES: usize = 960;

/// A caller-owned buffer for one frame of mono PCM at any supported rate.
pub type PcmFrame = [i16; MAX_FRAME_SAMPLES];

/// The PCM rates the transcoding point runs at: 8 kHz for G.711, 16 kHz for G.722,
/// 48 kHz for Opus end to end. libopus encodes from and decodes to each of them directly,
/// so no resampler is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleRate {
    Hz8000,
    Hz16000,
    Hz48000,
}

impl SampleRate {
    pub const fn hz(self) -> u32 {
        match self {
            SampleRate::Hz8000 => 8_000,
            SampleRate::Hz16000 => 16_000,
            SampleRate::Hz48000 => 48_000,
        }
    }

    /// Samples in one 20 ms frame.
    pub const fn frame_samples(self) -> usize {
        match self {
            SampleRate::Hz8000 => 160,
            SampleRate::Hz16000 => 320,
            SampleRate::Hz48000 => 960,
        }
    }

    /// Samples in `duration` (rounded down).
    pub fn samples(self, duration: Duration) -> usize {
        let n = duration.as_nanos() * u128::from(self.hz()) / 1_000_000_000;
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// How long `samples` last at this rate.
    pub fn duration(self, samples: usize) -> Duration {
        let nanos = samples as u128 * 1_000_000_000 / u128::from(self.hz());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A payload format on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus (RFC 7587): RTP clock always 48 kHz whatever the audio bandwidth.
    Opus,
    /// G.711 μ-law or A-law at 8 kHz.
    G711(Law),
    /// G.722 at 64 kbit/s: 16 kHz audio, an 8 kHz RTP clock (RFC 3551 §4.5.2).
    G722,
}

impl Codec {
    /// The RTP timestamp clock rate (RFC 7587 §4.1, RFC 3551 table 4).
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::G711(_) | Codec::G722 => 8_000,
        }
    }

    /// The PCM rate a transcoder between `self` and `other` runs at: the widest band both
    /// carry without a resampler (G.711 on either side: 8 kHz; G.722 with Opus or G.722:
    /// 16 kHz; Opus with Opus: 48 kHz).
    pub const fn pcm_rate_with(self, other: Codec) -> SampleRate {
        match (self, other) {
            (Codec::G711(_), _) | (_, Codec::G711(_)) => SampleRate::Hz8000,
            (Codec::G722, _) | (_, Codec::G722) => SampleRate::Hz16000,
            (Codec::Opus, Codec::Opus) => SampleRate::Hz48000,
        }
    }

    /// RTP timestamp units in one 20 ms frame.
    pub const fn frame_ticks(self) -> u32 {
        self.clock_rate() / 50
    }
}

/// Why a codec could not be set up or could not code a frame.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// libopus refused: the code is its error number (`OPUS_BAD_ARG` = -1,
    /// `OPUS_BUFFER_TOO_SMALL` = -2, `OPUS_INVALID_PACKET` = -4, ...).
    Opus(i32),
    /// G.711 runs at 8 kHz only, G.722 at 16 or 8 kHz; this build has no resampler.
    UnsupportedRate,
    /// A packet holds more audio than the PCM buffer, or a PCM slice is not a frame the
    /// encoder takes.
    FrameSize,
    /// The output buffer cannot hold the coded frame.
    BufferTooSmall,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Opus(code) => write!(f, "libopus error {code}"),
            CodecError::UnsupportedRate => f.write_str(
                "PCM rate not supported by the codec (G.711: 8 kHz, G.722: 8 or 16 kHz)",
            ),
            CodecError::FrameSize => f.write_str("frame size not supported"),
            CodecError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl std::error::Error for CodecError {}

/// A decoder for one incoming stream.
pub enum Decoder {
    Opus(opus::OpusDecoder),
    G711(Law),
    G722(Box<g722::G722Decoder>),
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decoder::Opus(d) => f.debug_tuple("Opus").field(&d.rate()).finish(),
            Decoder::G711(law) => f.debug_tuple("G711").field(law).finish(),
            Decoder::G722(d) => f.debug_tuple("G722").field(&d.rate()).finish(),
        }
    }
}

impl Decoder {
    /// Creates the decoder of `codec` producing PCM at `rate` (G.711: 8 kHz only; G.722:
    /// 16 kHz, or 8 kHz from its lower band).
    pub fn new(codec: Codec, rate: SampleRate) -> Result<Decoder, CodecError> {
        match codec {
            Codec::Opus => Ok(Decoder::Opus(opus::OpusDecoder::new(rate)?)),
            Codec::G711(law) if rate == SampleRate::Hz8000 => Ok(Decoder::G711(law)),
            Codec::G711(_) => Err(CodecError::UnsupportedRate),
            Codec::G722 => Ok(Decoder::G722(Box::new(g722::G722Decoder::new(rate)?))),
        }
    }

    /// The PCM rate this decoder produces.
    pub fn rate(&self) -> SampleRate {
        match self {
            Decoder::Opus(d) => d.rate(),
            Decoder::G711(_) => SampleRate::Hz8000,
            Decoder::G722(d) => d.rate(),
        }
    }

    /// The samples (at the decoder's rate) a packet's payload holds, whatever its packet
    /// time; `None` for a payload that cannot be a packet of the codec.
    pub fn packet_samples(&self, payload: &[u8]) -> Option<usize> {
        match self {
            Decoder::Opus(d) => d.packet_samples(payload),
            Decoder::G711(_) => (!payload.is_empty()).then_some(payload.len()),
            Decoder::G722(d) => (!payload.is_empty()).then_some(d.samples(payload)),
        }
    }

    /// Decodes one packet's payload into `pcm` and returns the number of samples; a
    /// packet holding more than `pcm` takes is [`CodecError::FrameSize`].
    pub fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        match self {
            Decoder::Opus(d) => d.decode(payload, pcm),
            Decoder::G711(law) => {
                if payload.len() > pcm.len() {
                    return Err(CodecError::FrameSize);
                }
                Ok(g711::decode(*law, payload, pcm))
            }
            Decoder::G722(d) => d.decode(payload, pcm),
        }
    }

    /// Fills all of `pcm` (the missing packet's duration) for a packet that never came:
    /// from the in-band FEC of the packet after it when there is one (Opus), else by
    /// concealment (Opus PLC; G.711 and G.722 have none here and play silence).
    pub fn conceal(&mut self, next: Option<&[u8]>, pcm: &mut [i16]) -> Result<usize, CodecError> {
        match self {
            Decoder::Opus(d) => match next {
                Some(next) => d.recover(next, pcm),
                None => d.conceal(pcm),
            },
            Decoder::G711(_) | Decoder::G722(_) => {
                pcm.fill(0);
                Ok(pcm.len())
            }
        }
    }

    /// Forgets the stream's history (a new SSRC).
    pub fn reset(&mut self) {
        match self {
            Decoder::Opus(d) => d.reset(),
            Decoder::G722(d) => {
                if let Ok(fresh) = g722::G722Decoder::new(d.rate()) {
                    **d = fresh;
                }
            }
            Decoder::G711(_) => {}
        }
    }
}

/// An encoder for one outgoing stream.
pub enum Encoder {
    Opus(opus::OpusEncoder),
    G711(Law),
    G722(Box<g722::G722Encoder>),
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encoder::Opus(e) => f.debug_tuple("Opus").field(&e.rate()).finish(),
            Encoder::G711(law) => f.debug_tuple("G711").field(law).finish(),
            Encoder::G722(e) => f.debug_tuple("G722").field(&e.rate()).finish(),
        }
    }
}

impl Encoder {
    /// Creates the encoder of `codec` taking PCM at `rate` (G.711: 8 kHz only; G.722:
    /// 16 kHz, or 8 kHz into its lower band);
    /// `opus_complexity` is `[media] opus_complexity` (0-10).
    pub fn new(codec: Codec, rate: SampleRate, opus_complexity: u8) -> Result<Encoder, CodecError> {
        match codec {
            Codec::Opus => Ok(Encoder::Opus(opus::OpusEncoder::new(
                rate,
                opus_complexity,
            )?)),
            Codec::G711(law) if rate == SampleRate::Hz8000 => Ok(Encoder::G711(law)),
            Codec::G711(_) => Err(CodecError::UnsupportedRate),
            Codec::G722 => Ok(Encoder::G722(Box::new(g722::G722Encoder::new(rate)?))),
        }
    }

    /// The PCM rate this encoder takes.
    pub fn rate(&self) -> SampleRate {
        match self {
            Encoder::Opus(e) => e.rate(),
            Encoder::G711(_) => SampleRate::Hz8000,
            Encoder::G722(e) => e.rate(),
        }
    }

    /// Encodes one frame into `out` and returns the payload length. Opus takes exactly
    /// 20 ms (`rate().frame_samples()`); G.711 any non-empty frame (one byte per sample),
    /// G.722 too (one byte per two samples at 16 kHz).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        match self {
            Encoder::Opus(e) => e.encode(pcm, out),
            Encoder::G711(law) => {
                if pcm.is_empty() {
                    return Err(CodecError::FrameSize);
                }
                if out.len() < pcm.len() {
                    return Err(CodecError::BufferTooSmall);
                }
                Ok(g711::encode(*law, pcm, out))
            }
            Encoder::G722(e) => e.encode(pcm, out),
        }
    }
}
