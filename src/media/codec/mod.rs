//! Audio codecs of srgate's media path: Opus through libopus ([`opus`]), G.711 with our
//! own tables ([`g711`]), both behind one [`Decoder`] / [`Encoder`] pair that the
//! transcoder drives, and the AAC-LC encoder of RTMP publishing ([`aac`]). Every codec
//! works on mono 16-bit PCM in caller-owned buffers: srgate sends 20 ms frames (G.711 also
//! at the SIP side's packet time) and decodes packets of any common packet time; codec
//! state is created once per stream and nothing allocates per frame.

#[cfg(feature = "aac")]
pub mod aac;
pub mod g711;
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
}

impl Codec {
    /// The RTP timestamp clock rate (RFC 7587 §4.1, RFC 3551 table 4).
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::G711(_) => 8_000,
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
    /// G.711 runs at 8 kHz only and this build has no resampler.
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
            CodecError::UnsupportedRate => f.write_str("G.711 needs 8 kHz PCM"),
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
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decoder::Opus(d) => f.debug_tuple("Opus").field(&d.rate()).finish(),
            Decoder::G711(law) => f.debug_tuple("G711").field(law).finish(),
        }
    }
}

impl Decoder {
    /// Creates the decoder of `codec` producing PCM at `rate` (G.711: 8 kHz only).
    pub fn new(codec: Codec, rate: SampleRate) -> Result<Decoder, CodecError> {
        match codec {
            Codec::Opus => Ok(Decoder::Opus(opus::OpusDecoder::new(rate)?)),
            Codec::G711(law) if rate == SampleRate::Hz8000 => Ok(Decoder::G711(law)),
            Codec::G711(_) => Err(CodecError::UnsupportedRate),
        }
    }

    /// The PCM rate this decoder produces.
    pub fn rate(&self) -> SampleRate {
        match self {
            Decoder::Opus(d) => d.rate(),
            Decoder::G711(_) => SampleRate::Hz8000,
        }
    }

    /// The samples (at the decoder's rate) a packet's payload holds, whatever its packet
    /// time; `None` for a payload that cannot be a packet of the codec.
    pub fn packet_samples(&self, payload: &[u8]) -> Option<usize> {
        match self {
            Decoder::Opus(d) => d.packet_samples(payload),
            Decoder::G711(_) => (!payload.is_empty()).then_some(payload.len()),
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
        }
    }

    /// Fills all of `pcm` (the missing packet's duration) for a packet that never came:
    /// from the in-band FEC of the packet after it when there is one (Opus), else by
    /// concealment (Opus PLC; G.711 has none here and plays silence).
    pub fn conceal(&mut self, next: Option<&[u8]>, pcm: &mut [i16]) -> Result<usize, CodecError> {
        match self {
            Decoder::Opus(d) => match next {
                Some(next) => d.recover(next, pcm),
                None => d.conceal(pcm),
            },
            Decoder::G711(_) => {
                pcm.fill(0);
                Ok(pcm.len())
            }
        }
    }

    /// Forgets the stream's history (a new SSRC).
    pub fn reset(&mut self) {
        if let Decoder::Opus(d) = self {
            d.reset();
        }
    }
}

/// An encoder for one outgoing stream.
pub enum Encoder {
    Opus(opus::OpusEncoder),
    G711(Law),
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encoder::Opus(e) => f.debug_tuple("Opus").field(&e.rate()).finish(),
            Encoder::G711(law) => f.debug_tuple("G711").field(law).finish(),
        }
    }
}

impl Encoder {
    /// Creates the encoder of `codec` taking PCM at `rate` (G.711: 8 kHz only);
    /// `opus_complexity` is `[media] opus_complexity` (0-10).
    pub fn new(codec: Codec, rate: SampleRate, opus_complexity: u8) -> Result<Encoder, CodecError> {
        match codec {
            Codec::Opus => Ok(Encoder::Opus(opus::OpusEncoder::new(
                rate,
                opus_complexity,
            )?)),
            Codec::G711(law) if rate == SampleRate::Hz8000 => Ok(Encoder::G711(law)),
            Codec::G711(_) => Err(CodecError::UnsupportedRate),
        }
    }

    /// The PCM rate this encoder takes.
    pub fn rate(&self) -> SampleRate {
        match self {
            Encoder::Opus(e) => e.rate(),
            Encoder::G711(_) => SampleRate::Hz8000,
        }
    }

    /// Encodes one frame into `out` and returns the payload length. Opus takes exactly
    /// 20 ms (`rate().frame_samples()`); G.711 any non-empty frame (one byte per sample).
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
        }
    }
}
