//! G.722 (ITU-T G.722, 7 kHz audio coding within 64 kbit/s) in its 64 kbit/s mode (mode 1),
//! the one RTP carries (RFC 3551 §4.5.2: payload type 9, `G722/8000`).
//!
//! Sub-band ADPCM: a 24-tap quadrature mirror filter splits 16 kHz PCM into a lower and a
//! higher band of 8 kHz each; the lower band is coded with 6 bits per sample, the higher
//! with 2, one byte per pair of input samples (`ihigh << 6 | ilow`). Each band has its own
//! adaptive quantiser scale and a pole-zero predictor (two poles, six zeros) that encoder
//! and decoder update alike from the quantised difference signal, so the arithmetic below
//! is the integer arithmetic of the Recommendation: saturation to 16 bits where it says so,
//! arithmetic right shifts, the tables of its quantisers and scale factors.
//!
//! The codec also runs at 8 kHz, for a G.711 leg on the other side of the transcoder: the
//! lower band alone is then the signal (encoding puts the 8 kHz samples into it at the gain
//! the filter bank would, with a silent higher band; decoding plays the lower band). That
//! is narrowband audio, all G.711 can carry anyway, without a resampler.
//!
//! RTP's clock for G.722 is 8 000 Hz although the audio is sampled at 16 kHz (an error of
//! RFC 1890 kept for compatibility): a 20 ms packet is 160 bytes and 160 timestamp units.
//! Nothing here allocates; the state is 200-odd bytes per direction.

use super::{CodecError, SampleRate};

/// The filter bank's 24 coefficients, symmetric (`H[i] == H[23 - i]`), scaled by 2^13.
const H: [i32; 24] = [
    3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876, 3876, 951, -805, -210, 362, 32,
    -156, 12, 53, -11, -11, 3,
];

/// Lower band: decision levels of the 6-bit quantiser (in units of the scale factor / 2^12)
/// for magnitude intervals 1..=29; interval 30 is everything above the last level.
const Q6: [i32; 30] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];

/// Lower band: the 4-bit inverse quantiser (the top four bits of a 6-bit code), which feeds
/// the predictor and the scale adaptation in encoder and decoder alike.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];

/// Lower band: the 6-bit inverse quantiser, for the decoder's output at 64 kbit/s.
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];

/// Lower band: log-scale factor steps, indexed through [`RIL4`].
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];

/// Lower band: the magnitude class of a 4-bit code, the index into [`WL`].
const RIL4: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];

/// 2^(i/32) scaled by 2^11: the log-to-linear table of both bands' scale factors.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

/// Higher band: the single decision level of the 2-bit quantiser.
const Q2: i32 = 564;

/// Higher band: the 2-bit inverse quantiser.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];

/// Higher band: log-scale factor steps by magnitude class (0 unused).
const WH: [i32; 3] = [0, -214, 798];

/// Higher band: the magnitude class of a 2-bit code.
const RIH2: [usize; 4] = [2, 1, 2, 1];

/// Limits of the log-scale factors (lower, higher band).
const NB_MAX_LOW: i32 = 18_432;
const NB_MAX_HIGH: i32 = 22_528;

fn sat16(x: i32) -> i32 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// The sign of a 16-bit value as the Recommendation tests it: negative or not.
fn negative(x: i32) -> bool {
    x < 0
}

/// One band's adaptive state: quantiser scale and pole-zero predictor.
#[derive(Debug, Clone)]
struct Band {
    /// The log-scale factor (`nbl`/`nbh`).
    log_scale: i32,
    /// The linear scale factor (`detl`/`deth`).
    scale: i32,
    /// Signal estimate: pole part + zero part.
    estimate: i32,
    /// The zero part of the estimate.
    zero_part: i32,
    /// Pole coefficients a1, a2 (index 0 unused).
    poles: [i32; 3],
    /// Zero coefficients b1..b6 (index 0 unused).
    zeros: [i32; 7],
    /// Quantised differences d(k-1)..d(k-6) (index 0 unused).
    diffs: [i32; 7],
    /// Reconstructed signal r(k-1), r(k-2) (index 0 unused).
    recon: [i32; 3],
    /// Partially reconstructed signal p(k-1), p(k-2) (index 0 unused).
    partial: [i32; 3],
}

impl Band {
    const fn new(scale: i32) -> Band {
        Band {
            log_scale: 0,
            scale,
            estimate: 0,
            zero_part: 0,
            poles: [0; 3],
            zeros: [0; 7],
            diffs: [0; 7],
            recon: [0; 3],
            partial: [0; 3],
        }
    }

    /// Adapts the scale factor to a code of magnitude step `step` (`WL`/`WH` entry):
    /// leaky log-domain integration, then 2^x from [`ILB`]; `base` is 8 for the lower
    /// band and 10 for the higher (their scales differ by 2^2).
    fn adapt_scale(&mut self, step: i32, max: i32, base: i32) {
        self.log_scale = (((self.log_scale * 127) >> 7) + step).clamp(0, max);
        let mantissa = ILB[((self.log_scale >> 6) & 31) as usize];
        let shift = base - (self.log_scale >> 11);
        let linear = if shift < 0 {
            mantissa << -shift
        } else {
            mantissa >> shift
        };
        self.scale = linear << 2;
    }

    /// Updates the predictor with the quantised difference `d` and computes the estimate
    /// of the next sample.
    fn predict(&mut self, d: i32) {
        let r = sat16(self.estimate + d);
        let p = sat16(self.zero_part + d);

        // second pole: leak, correlation of p with p(k-2), minus f(a1) times its correlation
        // with p(k-1)
        let a1x4 = sat16(self.poles[1] << 2);
        let mut f = if negative(p) == negative(self.partial[1]) {
            -a1x4
        } else {
            a1x4
        };
        f = f.min(32_767);
        let c2 = if negative(p) == negative(self.partial[2]) {
            128
        } else {
            -128
        };
        let a2 = (c2 + (f >> 7) + ((self.poles[2] * 32_512) >> 15)).clamp(-12_288, 12_288);

        // first pole, kept inside the stability triangle that a2 leaves
        let c1 = if negative(p) == negative(self.partial[1]) {
            192
        } else {
            -192
        };
        let a1 = sat16(c1 + ((self.poles[1] * 32_640) >> 15));
        let bound = sat16(15_360 - a2);
        let a1 = a1.clamp(-bound, bound);

        // zeros: leak, and a step toward the sign correlation of d with each past d
        let step = if d == 0 { 0 } else { 128 };
        for i in 1..7 {
            let c = if negative(d) == negative(self.diffs[i]) {
                step
            } else {
                -step
            };
            self.zeros[i] = sat16(c + ((self.zeros[i] * 32_640) >> 15));
        }

        // delay lines
        for i in (2..7).rev() {
            self.diffs[i] = self.diffs[i - 1];
        }
        self.diffs[1] = d;
        self.recon = [0, r, self.recon[1]];
        self.partial = [0, p, self.partial[1]];
        self.poles = [0, a1, a2];

        // the next estimate: poles on the reconstructed signal, zeros on the differences
        let pole_part = sat16(
            ((self.poles[1] * sat16(self.recon[1] * 2)) >> 15)
                + ((self.poles[2] * sat16(self.recon[2] * 2)) >> 15),
        );
        let zero_part: i32 = (1..7)
            .map(|i| (self.zeros[i] * sat16(self.diffs[i] * 2)) >> 15)
            .sum();
        self.zero_part = sat16(zero_part);
        self.estimate = sat16(pole_part + self.zero_part);
    }

    /// The lower band's 6-bit code for the input sample `x`, its state updated.
    fn encode_low(&mut self, x: i32) -> u8 {
        let e = sat16(x - self.estimate);
        // magnitude as the Recommendation takes it: one's complement of negatives
        let m = if e < 0 { -(e + 1) } else { e };
        let mut interval = 30;
        for (i, &level) in Q6.iter().enumerate().skip(1) {
            if m < (level * self.scale) >> 12 {
                interval = i;
                break;
            }
        }
        let code = match (e < 0, interval) {
            (true, 1) => 63,
            (true, 2) => 62,
            (true, i) => 34 - i,
            (false, i) => 62 - i,
        } as u8;
        self.update_low(code);
        code
    }

    /// The lower band after its 6-bit `code`: predictor and scale, from the 4-bit part.
    fn update_low(&mut self, code: u8) {
        let top = usize::from(code >> 2);
        let d = (self.scale * QM4[top]) >> 15;
        self.adapt_scale(WL[RIL4[top]], NB_MAX_LOW, 8);
        self.predict(d);
    }

    /// The lower band's reconstructed sample of a 6-bit `code` (the full-precision inverse
    /// quantiser), its state updated.
    fn decode_low(&mut self, code: u8) -> i32 {
        let d = (self.scale * QM6[usize::from(code & 0x3f)]) >> 15;
        let r = (self.estimate + d).clamp(-16_384, 16_383);
        self.update_low(code & 0x3f);
        r
    }

    /// The higher band's 2-bit code for the input sample `x`, its state updated.
    fn encode_high(&mut self, x: i32) -> u8 {
        let e = sat16(x - self.estimate);
        let m = if e < 0 { -(e + 1) } else { e };
        let outer = m >= (Q2 * self.scale) >> 12;
        let code = match (e < 0, outer) {
            (true, false) => 1,
            (true, true) => 0,
            (false, false) => 3,
            (false, true) => 2,
        };
        self.update_high(code);
        code
    }

    /// The higher band after its 2-bit `code`; returns the quantised difference.
    fn update_high(&mut self, code: u8) -> i32 {
        let code = usize::from(code & 3);
        let d = (self.scale * QM2[code]) >> 15;
        self.adapt_scale(WH[RIH2[code]], NB_MAX_HIGH, 10);
        let estimate = self.estimate;
        self.predict(d);
        (estimate + d).clamp(-16_384, 16_383)
    }
}

/// The filter bank's two sums over a history (oldest first): the taps at odd positions
/// and the ones at even positions.
fn filter(history: &[i32; 24]) -> (i32, i32) {
    let (mut odd, mut even) = (0i32, 0i32);
    for (i, (&x, &h)) in history.iter().zip(H.iter()).enumerate() {
        if i % 2 == 1 {
            odd += x * h;
        } else {
            even += x * h;
        }
    }
    (odd, even)
}

/// How many PCM samples one G.722 byte stands for at `rate` (16 kHz: 2; 8 kHz: 1).
fn samples_per_byte(rate: SampleRate) -> Result<usize, CodecError> {
    match rate {
        SampleRate::Hz16000 => Ok(2),
        SampleRate::Hz8000 => Ok(1),
        SampleRate::Hz48000 => Err(CodecError::UnsupportedRate),
    }
}

/// What an encoder and a decoder both hold: the PCM rate, the filter bank's history and
/// the two bands.
#[derive(Debug, Clone)]
struct Coder {
    rate: SampleRate,
    /// The filter bank's last 24 inputs, oldest first (the encoder's PCM samples; the
    /// decoder's pairs of lower + higher, lower - higher).
    history: [i32; 24],
    low: Band,
    high: Band,
}

impl Coder {
    fn new(rate: SampleRate) -> Result<Coder, CodecError> {
        samples_per_byte(rate)?;
        Ok(Coder {
            rate,
            history: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
        })
    }

    /// Samples per byte at this coder's rate (checked at creation).
    fn per_byte(&self) -> usize {
        samples_per_byte(self.rate).unwrap_or(2)
    }

    /// Two more filter-bank inputs (`first` the older): the sums of the taps at odd and at
    /// even positions over the history.
    fn filter_pair(&mut self, first: i32, second: i32) -> (i32, i32) {
        self.history.copy_within(2.., 0);
        self.history[22] = first;
        self.history[23] = second;
        filter(&self.history)
    }
}

/// A G.722 encoder for one outgoing stream.
#[derive(Debug, Clone)]
pub struct G722Encoder(Coder);

impl G722Encoder {
    /// An encoder taking PCM at `rate` (16 kHz, or 8 kHz: lower band only).
    pub fn new(rate: SampleRate) -> Result<G722Encoder, CodecError> {
        Coder::new(rate).map(G722Encoder)
    }

    pub fn rate(&self) -> SampleRate {
        self.0.rate
    }

    /// Encodes `pcm` into `out` and returns the bytes written: one per two samples at
    /// 16 kHz (an odd count is [`CodecError::FrameSize`]), one per sample at 8 kHz.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let c = &mut self.0;
        let per_byte = c.per_byte();
        if pcm.is_empty() || !pcm.len().is_multiple_of(per_byte) {
            return Err(CodecError::FrameSize);
        }
        let n = pcm.len() / per_byte;
        if out.len() < n {
            return Err(CodecError::BufferTooSmall);
        }
        for (byte, input) in out.iter_mut().zip(pcm.chunks_exact(per_byte)) {
            let (low, high) = match *input {
                // the analysis filter bank: taps at odd positions see the newer sample of
                // each pair, even ones the older; their sum is the lower band and their
                // difference the higher
                [a, b] => {
                    let (odd, even) = c.filter_pair(i32::from(a), i32::from(b));
                    ((odd + even) >> 14, (odd - even) >> 14)
                }
                // 8 kHz: the filter bank's lower band is the signal at half the amplitude
                [a] => (i32::from(a) >> 1, 0),
                _ => unreachable!("chunks of one or two samples"),
            };
            let ihigh = c.high.encode_high(high);
            let ilow = c.low.encode_low(low);
            *byte = (ihigh << 6) | ilow;
        }
        Ok(n)
    }
}

/// A G.722 decoder for one incoming stream.
#[derive(Debug, Clone)]
pub struct G722Decoder(Coder);

impl G722Decoder {
    /// A decoder producing PCM at `rate` (16 kHz, or 8 kHz: lower band only).
    pub fn new(rate: SampleRate) -> Result<G722Decoder, CodecError> {
        Coder::new(rate).map(G722Decoder)
    }

    pub fn rate(&self) -> SampleRate {
        self.0.rate
    }

    /// The samples `payload` decodes to.
    pub fn samples(&self, payload: &[u8]) -> usize {
        payload.len() * self.0.per_byte()
    }

    /// Decodes `payload` into `pcm` and returns the samples written; a payload holding more
    /// than `pcm` takes is [`CodecError::FrameSize`].
    pub fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        let c = &mut self.0;
        let per_byte = c.per_byte();
        let n = payload.len() * per_byte;
        if n > pcm.len() {
            return Err(CodecError::FrameSize);
        }
        for (&byte, output) in payload.iter().zip(pcm.chunks_exact_mut(per_byte)) {
            let low = c.low.decode_low(byte & 0x3f);
            let high = c.high.update_high(byte >> 6);
            match output {
                // the synthesis filter bank: two output samples from the pair of bands
                [a, b] => {
                    let (odd, even) = c.filter_pair(low + high, low - high);
                    *a = sat16(odd >> 11) as i16;
                    *b = sat16(even >> 11) as i16;
                }
                [a] => *a = sat16(low << 1) as i16,
                _ => unreachable!("chunks of one or two samples"),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, n: usize, amplitude: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    /// Signal-to-noise ratio of `got` against `want` delayed by `delay` samples, in dB.
    fn snr(want: &[i16], got: &[i16], delay: usize) -> f64 {
        let (mut signal, mut noise) = (0f64, 0f64);
        for (w, g) in want.iter().zip(&got[delay..]) {
            signal += f64::from(*w).powi(2);
            noise += (f64::from(*w) - f64::from(*g)).powi(2);
        }
        10.0 * (signal / noise.max(1.0)).log10()
    }

    fn round_trip(rate: SampleRate, pcm: &[i16]) -> Vec<i16> {
        let mut enc = G722Encoder::new(rate).unwrap();
        let mut dec = G722Decoder::new(rate).unwrap();
        let mut out = vec![0i16; pcm.len()];
        let mut bytes = [0u8; 160];
        let per_frame = rate.frame_samples();
        for (frame, decoded) in pcm.chunks(per_frame).zip(out.chunks_mut(per_frame)) {
            let n = enc.encode(frame, &mut bytes).unwrap();
            assert_eq!(n, 160, "20 ms is 160 bytes at either rate");
            assert_eq!(dec.decode(&bytes[..n], decoded).unwrap(), frame.len());
        }
        out
    }

    /// The filter bank delays the signal by 22 samples at 16 kHz (23 taps' worth less the
    /// pair's own sample), the sub-band coders by nothing.
    const DELAY_16K: usize = 22;

    #[test]
    fn wideband_tones_come_back_through_the_codec() {
        // 1 kHz in the lower band, 6 kHz in the higher: both must come back
        for hz in [1_000.0, 6_000.0] {
            let pcm = tone(hz, 16_000, 16_000, 8_000.0);
            let out = round_trip(SampleRate::Hz16000, &pcm);
            let skip = 3_200; // the predictors and scales settle
            let got = snr(&pcm[skip..14_000], &out[skip..], DELAY_16K);
            let floor = if hz < 4_000.0 { 20.0 } else { 8.0 };
            assert!(got > floor, "{hz} Hz: SNR {got:.1} dB");
        }
    }

    #[test]
    fn eight_khz_mode_carries_narrowband_audio() {
        let pcm = tone(1_000.0, 8_000, 8_000, 8_000.0);
        let out = round_trip(SampleRate::Hz8000, &pcm);
        let got = snr(&pcm[1_600..7_000], &out[1_600..], 0);
        assert!(got > 20.0, "SNR {got:.1} dB");
    }

    #[test]
    fn silence_stays_silent_and_loud_input_does_not_overflow() {
        // the idle noise of the adaptive quantisers at their smallest step: a few LSBs
        let out = round_trip(SampleRate::Hz16000, &[0; 3_200]);
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak <= 8, "silence comes back at {peak}: {:?}", &out[..20]);
        // full-scale square wave: every clamp on the way is exercised, nothing panics
        let square: Vec<i16> = (0..16_000)
            .map(|i| {
                if (i / 20) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let out = round_trip(SampleRate::Hz16000, &square);
        let loud = out[4_000..]
            .iter()
            .filter(|s| s.unsigned_abs() > 16_000)
            .count();
        assert!(loud > 6_000, "a full-scale input comes back loud: {loud}");
    }

    #[test]
    fn any_byte_sequence_decodes() {
        let mut dec = G722Decoder::new(SampleRate::Hz16000).unwrap();
        let mut pcm = [0i16; 512];
        let mut x = 0x1234_5678u32;
        for _ in 0..200 {
            let mut bytes = [0u8; 256];
            for b in &mut bytes {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            assert_eq!(dec.decode(&bytes, &mut pcm).unwrap(), 512);
        }
    }

    #[test]
    fn sizes_and_rates_are_checked() {
        assert_eq!(
            G722Encoder::new(SampleRate::Hz48000).err(),
            Some(CodecError::UnsupportedRate)
        );
        assert_eq!(
            G722Decoder::new(SampleRate::Hz48000).err(),
            Some(CodecError::UnsupportedRate)
        );
        let mut enc = G722Encoder::new(SampleRate::Hz16000).unwrap();
        let mut out = [0u8; 160];
        assert_eq!(enc.encode(&[0; 3], &mut out), Err(CodecError::FrameSize));
        assert_eq!(enc.encode(&[], &mut out), Err(CodecError::FrameSize));
        assert_eq!(
            enc.encode(&[0; 322], &mut out),
            Err(CodecError::BufferTooSmall)
        );
        let mut dec = G722Decoder::new(SampleRate::Hz16000).unwrap();
        let mut pcm = [0i16; 100];
        assert_eq!(dec.decode(&[0; 51], &mut pcm), Err(CodecError::FrameSize));
        assert_eq!(dec.samples(&[0; 160]), 320);
        assert_eq!(
            G722Decoder::new(SampleRate::Hz8000)
                .unwrap()
                .samples(&[0; 160]),
            160
        );
    }
}
