//! AAC-LC (ISO/IEC 14496-3) for RTMP: mono at 48 kHz through the Fraunhofer FDK AAC
//! library (`fdk-aac`, bundled and built statically; the README says why this encoder).
//!
//! The call's PCM comes in 20 ms frames at 8, 16 or 48 kHz (what srgate's decoders give),
//! is brought to 48 kHz by a polyphase windowed-sinc interpolator, and leaves as raw AAC
//! frames of 1024 samples each with a timestamp counted in samples, so the timeline is
//! steady by construction: a caller with no audio to give pushes
//! [`AacEncoder::push_silence`] instead, and the stream has no gap. The
//! AudioSpecificConfig for the FLV sequence header is
//! [`AacEncoder::audio_specific_config`]. Everything is sized at creation: encoding a
//! frame allocates nothing.

use core::fmt;

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::SampleRate;

/// The AAC sample rate.
pub const AAC_RATE: u32 = 48_000;

/// Samples in one AAC-LC frame.
pub const AAC_FRAME: usize = 1024;

/// Largest AAC frame: 6144 bits per channel (ISO/IEC 14496-3 §4.5.3.2), one channel.
pub const MAX_AAC_FRAME_BYTES: usize = 768;

/// The bit rate: transparent for speech and tones, small next to any uplink.
pub const DEFAULT_BITRATE: u32 = 64_000;

/// Taps per phase of the interpolator (its prototype has `TAPS × factor` taps).
const TAPS: usize = 16;

/// Largest interpolation factor: 8 kHz → 48 kHz.
const MAX_FACTOR: usize = 6;

/// Room for one 20 ms frame at 48 kHz on top of an almost full AAC frame.
const PCM_CAPACITY: usize = 2 * AAC_FRAME;

/// Why the AAC encoder could not be set up or could not encode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AacError {
    /// libfdk-aac refused; its message.
    Library(String),
    /// A PCM slice that is not one 20 ms frame at the encoder's input rate.
    FrameSize,
    /// Frames were pushed without [`AacEncoder::poll_frame`] draining the encoded ones.
    NotDrained,
}

impl fmt::Display for AacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AacError::Library(message) => write!(f, "libfdk-aac: {message}"),
            AacError::FrameSize => f.write_str("not a 20 ms PCM frame at the input rate"),
            AacError::NotDrained => f.write_str("encoded AAC frames were not drained"),
        }
    }
}

impl std::error::Error for AacError {}

/// One encoded frame, borrowed from the encoder until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacFrame<'a> {
    /// The raw AAC frame (no ADTS header): FLV's AACPacketType 1 payload.
    pub data: &'a [u8],
    /// The frame's first sample on the 48 kHz timeline, from 0.
    pub sample: u64,
}

impl AacFrame<'_> {
    /// The frame's time in milliseconds (RTMP timestamps wrap at 32 bits).
    pub fn timestamp_ms(&self) -> u32 {
        (self.sample * 1000 / u64::from(AAC_RATE)) as u32
    }
}

/// Encodes one call's audio to AAC-LC mono at 48 kHz.
pub struct AacEncoder {
    encoder: Encoder,
    input: SampleRate,
    upsampler: Upsampler,
    pcm: [i16; PCM_CAPACITY],
    filled: usize,
    out: [u8; MAX_AAC_FRAME_BYTES],
    asc: [u8; 8],
    asc_len: usize,
    frames: u64,
}

impl fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AacEncoder")
            .field("input", &self.input)
            .field("frames", &self.frames)
            .finish()
    }
}

impl AacEncoder {
    /// An encoder for 20 ms frames of mono PCM at `input`, at `bitrate` bits per second.
    pub fn new(input: SampleRate, bitrate: u32) -> Result<AacEncoder, AacError> {
        let library = |e: fdk_aac::enc::EncoderError| AacError::Library(e.to_string());
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate),
            sample_rate: AAC_RATE,
            transport: Transport::Raw,
            channels: ChannelMode::Mono,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(library)?;
        let info = encoder.info().map_err(library)?;
        if info.frameLength as usize != AAC_FRAME {
            return Err(AacError::Library(format!(
                "frame length {} instead of {AAC_FRAME}",
                info.frameLength
            )));
        }
        let asc_len = info.confSize as usize;
        let mut asc = [0u8; 8];
        match info.confBuf.get(..asc_len) {
            Some(conf) if asc_len <= asc.len() => asc[..asc_len].copy_from_slice(conf),
            _ => return Err(AacError::Library("no AudioSpecificConfig".into())),
        }
        Ok(AacEncoder {
            encoder,
            input,
            upsampler: Upsampler::new((AAC_RATE / input.hz()) as usize),
            pcm: [0; PCM_CAPACITY],
            filled: 0,
            out: [0; MAX_AAC_FRAME_BYTES],
            asc,
            asc_len,
            frames: 0,
        })
    }

    /// The AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): FLV's AAC sequence header.
    pub fn audio_specific_config(&self) -> &[u8] {
        &self.asc[..self.asc_len]
    }

    pub fn input_rate(&self) -> SampleRate {
        self.input
    }

    /// Adds one 20 ms frame of the call's audio; drain [`poll_frame`](Self::poll_frame)
    /// after each.
    pub fn push_pcm(&mut self, pcm: &[i16]) -> Result<(), AacError> {
        if pcm.len() != self.input.frame_samples() {
            return Err(AacError::FrameSize);
        }
        let factor = self.upsampler.factor;
        if self.filled + pcm.len() * factor > PCM_CAPACITY {
            return Err(AacError::NotDrained);
        }
        let out = &mut self.pcm[self.filled..self.filled + pcm.len() * factor];
        self.upsampler.process(pcm, out);
        self.filled += pcm.len() * factor;
        Ok(())
    }

    /// Adds 20 ms of silence: what a caller pushes when the call gave no audio in time
    /// (hold, a silent phone, lost packets), so the stream's timeline has no gap.
    pub fn push_silence(&mut self) -> Result<(), AacError> {
        const ZEROS: [i16; 960] = [0; 960];
        self.push_pcm(&ZEROS[..self.input.frame_samples()])
    }

    /// The next encoded frame, once 1024 samples are buffered.
    pub fn poll_frame(&mut self) -> Option<Result<AacFrame<'_>, AacError>> {
        if self.filled < AAC_FRAME {
            return None;
        }
        let encoded = self.encoder.encode(&self.pcm[..AAC_FRAME], &mut self.out);
        let drop_frame = |this: &mut AacEncoder| {
            // a frame the library did not take is dropped, so a caller draining frames
            // in a loop always ends
            this.pcm.copy_within(AAC_FRAME..this.filled, 0);
            this.filled -= AAC_FRAME;
        };
        let info = match encoded {
            Ok(info) if info.input_consumed > 0 => info,
            Ok(_) => {
                drop_frame(self);
                return Some(Err(AacError::Library("no input taken".into())));
            }
            Err(e) => {
                drop_frame(self);
                return Some(Err(AacError::Library(e.to_string())));
            }
        };
        // the encoder takes whole frames; anything else would shift the timeline
        let consumed = info.input_consumed.min(self.filled);
        self.pcm.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        let sample = self.frames * AAC_FRAME as u64;
        self.frames += 1;
        let len = info.output_size.min(self.out.len());
        Some(Ok(AacFrame {
            data: &self.out[..len],
            sample,
        }))
    }
}

/// Integer-factor interpolation by a polyphase FIR: a windowed-sinc low-pass (Blackman
/// window, cut-off at 90 % of the input's Nyquist frequency) split into `factor` phases.
struct Upsampler {
    factor: usize,
    /// `phases[p][k]`: tap `k` of phase `p`; each phase sums to about 1.
    phases: [[f32; TAPS]; MAX_FACTOR],
    /// The last `TAPS` input samples, newest first.
    history: [f32; TAPS],
}

impl Upsampler {
    fn new(factor: usize) -> Upsampler {
        let factor = factor.clamp(1, MAX_FACTOR);
        let mut phases = [[0f32; TAPS]; MAX_FACTOR];
        if factor == 1 {
            phases[0][0] = 1.0;
        } else {
            let n = factor * TAPS;
            let center = (n - 1) as f64 / 2.0;
            let cutoff = 0.9;
            for m in 0..n {
                let t = (m as f64 - center) / factor as f64 * cutoff;
                let sinc = if t.abs() < 1e-9 {
                    1.0
                } else {
                    (core::f64::consts::PI * t).sin() / (core::f64::consts::PI * t)
                };
                let x = 2.0 * core::f64::consts::PI * m as f64 / (n - 1) as f64;
                let blackman = 0.42 - 0.5 * x.cos() + 0.08 * (2.0 * x).cos();
                phases[m % factor][m / factor] = (cutoff * sinc * blackman) as f32;
            }
            // exact unity gain per phase: no ripple at the input rate
            for phase in phases.iter_mut().take(factor) {
                let sum: f32 = phase.iter().sum();
                phase.iter_mut().for_each(|h| *h /= sum);
            }
        }
        Upsampler {
            factor,
            phases,
            history: [0.0; TAPS],
        }
    }

    /// Writes `input.len() × factor` samples into `out`.
    fn process(&mut self, input: &[i16], out: &mut [i16]) {
        if self.factor == 1 {
            out.copy_from_slice(input);
            return;
        }
        for (x, block) in input.iter().zip(out.chunks_exact_mut(self.factor)) {
            self.history.copy_within(0..TAPS - 1, 1);
            self.history[0] = f32::from(*x);
            for (y, phase) in block.iter_mut().zip(&self.phases) {
                let acc: f32 = phase.iter().zip(&self.history).map(|(h, s)| h * s).sum();
                *y = acc.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, samples: usize, start: usize) -> Vec<i16> {
        (start..start + samples)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (8000.0 * (2.0 * core::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    fn power_at(pcm: &[i16], rate: f64, hz: f64) -> f64 {
        let w = 2.0 * core::f64::consts::PI * hz / rate;
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in pcm.iter().enumerate() {
            re += f64::from(s) * (w * i as f64).cos();
            im += f64::from(s) * (w * i as f64).sin();
        }
        (re * re + im * im) / (pcm.len() as f64).powi(2)
    }

    #[test]
    fn upsampling_keeps_the_tone_and_suppresses_images() {
        let mut up = Upsampler::new(6);
        let input = tone(8000, 1000.0, 800, 0);
        let mut out = vec![0i16; 4800];
        up.process(&input, &mut out);
        let settled = &out[480..];
        let wanted = power_at(settled, 48_000.0, 1000.0);
        // the images of 1 kHz at 8 kHz: 7, 9, 15, 17 kHz
        for image in [7000.0, 9000.0, 15_000.0, 17_000.0] {
            let p = power_at(settled, 48_000.0, image);
            assert!(p < wanted / 1000.0, "image at {image} Hz: {p} vs {wanted}");
        }
        // amplitude preserved within 1 dB
        let amplitude = 2.0 * wanted.sqrt();
        assert!((amplitude - 8000.0).abs() < 8000.0 * 0.11, "{amplitude}");
    }

    #[test]
    fn steady_frames_from_every_input_rate() {
        for rate in [SampleRate::Hz8000, SampleRate::Hz16000, SampleRate::Hz48000] {
            let mut enc = AacEncoder::new(rate, DEFAULT_BITRATE).unwrap();
            // AAC-LC (2), 48 kHz (index 3), mono (1): 0x11 0x88
            assert_eq!(enc.audio_specific_config(), &[0x11, 0x88]);
            let per_frame = rate.frame_samples();
            let mut frames = Vec::new();
            for i in 0..100 {
                if i % 10 == 9 {
                    enc.push_silence().unwrap();
                } else {
                    let pcm = tone(rate.hz(), 1000.0, per_frame, i * per_frame);
                    enc.push_pcm(&pcm).unwrap();
                }
                while let Some(frame) = enc.poll_frame() {
                    let frame = frame.unwrap();
                    assert!(frame.data.len() <= MAX_AAC_FRAME_BYTES);
                    frames.push((frame.sample, frame.timestamp_ms(), frame.data.len()));
                }
            }
            // 2 s of input: 93 whole frames of 1024 samples, numbered without a gap
            assert_eq!(frames.len(), 96_000 / AAC_FRAME);
            for (i, (sample, ms, _)) in frames.iter().enumerate() {
                assert_eq!(*sample, i as u64 * 1024);
                assert_eq!(*ms, (i as u64 * 1024 * 1000 / 48_000) as u32);
            }
            assert!(frames.iter().all(|f| f.2 > 0), "no empty frame: {rate:?}");
        }
    }

    #[test]
    fn wrong_sizes_and_backlog_are_errors() {
        let mut enc = AacEncoder::new(SampleRate::Hz8000, DEFAULT_BITRATE).unwrap();
        assert_eq!(enc.push_pcm(&[0; 100]), Err(AacError::FrameSize));
        for _ in 0..10 {
            if enc.push_silence().is_err() {
                return;
            }
        }
        panic!("pushing without draining never failed");
    }
}
