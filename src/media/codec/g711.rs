//! G.711 (ITU-T G.711, 11/1988) μ-law (PCMU, RTP payload type 0) and A-law (PCMA, payload
//! type 8) companding, 8 kHz, one byte per sample (RFC 3551 §4.5.14).
//!
//! Both directions go through tables computed at compile time from the segment rules of
//! G.711: decoding is one lookup, encoding one lookup on the top 14 (μ-law) or 13 (A-law)
//! bits of the linear sample. Nothing here allocates.

/// μ-law: magnitude bias (33 in 14-bit units) and the largest magnitude before the bias.
const ULAW_BIAS: i32 = 33;
const ULAW_CLIP: i32 = 8159;

/// μ-law code of a 14-bit linear sample (-8192..=8191).
const fn ulaw_from_14(sample: i32) -> u8 {
    let (sign, magnitude) = if sample < 0 {
        (0x80u8, -sample)
    } else {
        (0x00u8, sample)
    };
    let m = if magnitude > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude
    } + ULAW_BIAS;
    // m is 33..=8192: the segment is the position of its top bit, counted from bit 5;
    // 8192 itself is past the last segment and takes the largest code.
    let top = 31 - (m as u32).leading_zeros() as i32;
    let (segment, mantissa) = if top > 12 {
        (7, 0x0f)
    } else {
        (top - 5, (m >> (top - 4)) & 0x0f)
    };
    !(sign | ((segment as u8) << 4) | mantissa as u8)
}

/// Linear 16-bit value of a μ-law code.
const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let segment = (u >> 4) & 0x07;
    let mantissa = (u & 0x0f) as i32;
    // Rebuild the biased magnitude at the middle of the quantisation step, in 16-bit scale
    // (the 14-bit value shifted left by 2), then remove the bias.
    let biased = ((mantissa << 3) + 0x84) << segment;
    let magnitude = biased - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// A-law code of a 13-bit linear sample (-4096..=4095).
const fn alaw_from_13(sample: i32) -> u8 {
    // A-law's sign bit is 1 for positive values; even bits are inverted on the line.
    let (sign, magnitude) = if sample < 0 {
        (0x00u8, -sample - 1)
    } else {
        (0x80u8, sample)
    };
    let m = if magnitude > 4095 { 4095 } else { magnitude };
    let code = if m < 32 {
        (m >> 1) as u8
    } else {
        let top = 31 - (m as u32).leading_zeros() as i32;
        let segment = top - 4;
        ((segment as u8) << 4) | ((m >> segment) & 0x0f) as u8
    };
    (sign | code) ^ 0x55
}

/// Linear 16-bit value of an A-law code.
const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let segment = (a >> 4) & 0x07;
    let mantissa = (a & 0x0f) as i32;
    let mut magnitude = (mantissa << 4) + 8;
    if segment > 0 {
        magnitude = (magnitude + 0x100) << (segment - 1);
    }
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_ulaw_encode() -> [u8; 1 << 14] {
    let mut t = [0u8; 1 << 14];
    let mut i = 0;
    while i < t.len() {
        // Index = the top 14 bits of the 16-bit sample, as unsigned; sign-extend it.
        let sample = ((i as i32) << 18) >> 18;
        t[i] = ulaw_from_14(sample);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; 1 << 13] {
    let mut t = [0u8; 1 << 13];
    let mut i = 0;
    while i < t.len() {
        let sample = ((i as i32) << 19) >> 19;
        t[i] = alaw_from_13(sample);
        i += 1;
    }
    t
}

const fn build_decode(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_ENCODE: [u8; 1 << 14] = build_ulaw_encode();
static ALAW_ENCODE: [u8; 1 << 13] = build_alaw_encode();
static ULAW_DECODE: [i16; 256] = build_decode(false);
static ALAW_DECODE: [i16; 256] = build_decode(true);

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law, PCMU.
    Mu,
    /// A-law, PCMA.
    A,
}

impl Law {
    /// The static RTP payload type (RFC 3551 table 4).
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }
}

/// μ-law code of a 16-bit linear sample.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    // The shift keeps the top 14 bits; as u16 it indexes the table (< 2^14).
    ULAW_ENCODE[usize::from((sample as u16) >> 2)]
}

/// 16-bit linear value of a μ-law code.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// A-law code of a 16-bit linear sample.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[usize::from((sample as u16) >> 3)]
}

/// 16-bit linear value of an A-law code.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

/// Encodes `pcm` into `out` (one byte per sample) and returns the number of bytes written:
/// `min(pcm.len(), out.len())`.
pub fn encode(law: Law, pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    let table: fn(i16) -> u8 = match law {
        Law::Mu => ulaw_encode,
        Law::A => alaw_encode,
    };
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = table(s);
    }
    n
}

/// Decodes `payload` into `out` and returns the number of samples written:
/// `min(payload.len(), out.len())`.
pub fn decode(law: Law, payload: &[u8], out: &mut [i16]) -> usize {
    let n = payload.len().min(out.len());
    let table = match law {
        Law::Mu => &ULAW_DECODE,
        Law::A => &ALAW_DECODE,
    };
    for (o, &c) in out.iter_mut().zip(payload) {
        *o = table[usize::from(c)];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over the codes of every 16-bit input in order -32768..=32767.
    fn fnv_all(encode: fn(i16) -> u8) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for x in i16::MIN..=i16::MAX {
            h ^= u64::from(encode(x));
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    #[test]
    fn known_codewords() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x7f), 0, "negative zero");
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);

        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);

        assert_eq!(Law::Mu.payload_type(), 0);
        assert_eq!(Law::A.payload_type(), 8);
    }

    /// Reference values from an independent G.711 implementation (CPython's `audioop`,
    /// derived from the Sun reference code): (linear input, μ-law code, A-law code).
    const REFERENCE: [(i16, u8, u8); 18] = [
        (0, 0xff, 0xd5),
        (1, 0xff, 0xd5),
        (-1, 0x7e, 0x55),
        (7, 0xfe, 0xd5),
        (8, 0xfe, 0xd5),
        (-8, 0x7e, 0x55),
        (100, 0xf2, 0xd3),
        (-100, 0x72, 0x53),
        (1000, 0xce, 0xfa),
        (-1000, 0x4e, 0x7a),
        (4000, 0xaf, 0x9a),
        (-4000, 0x2f, 0x1a),
        (12345, 0x97, 0xbd),
        (-12345, 0x17, 0x3d),
        (32767, 0x80, 0xaa),
        (-32768, 0x00, 0x2a),
        (31000, 0x81, 0xab),
        (-31000, 0x01, 0x2b),
    ];

    #[test]
    fn matches_reference_values() {
        for (x, mu, a) in REFERENCE {
            assert_eq!(ulaw_encode(x), mu, "μ-law of {x}");
            assert_eq!(alaw_encode(x), a, "A-law of {x}");
        }
    }

    #[test]
    fn whole_tables_match_reference() {
        // The same hashes computed over the reference implementation's output for every
        // 16-bit input (encode) and every code (decode, little-endian i16 bytes).
        assert_eq!(fnv_all(ulaw_encode), 0xd5ee_23f7_d0ff_ae91);
        assert_eq!(fnv_all(alaw_encode), 0xf030_666e_b780_cf25);
        let decode_hash = |decode: fn(u8) -> i16| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for code in 0..=255u8 {
                for b in decode(code).to_le_bytes() {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
            h
        };
        assert_eq!(decode_hash(ulaw_decode), 0xb91e_65d6_8481_a1a8);
        assert_eq!(decode_hash(alaw_decode), 0x693a_40ca_62a3_d2a5);
    }

    #[test]
    fn decode_encode_round_trip_of_every_code() {
        for code in 0..=255u8 {
            // μ-law 0x7f is negative zero, which encodes as positive zero.
            if code != 0x7f {
                assert_eq!(ulaw_encode(ulaw_decode(code)), code, "μ-law {code:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#x}");
        }
    }

    /// The quantisation error stays within half a step of the segment, G.711's
    /// defining property: steps of 2^(s+3) for μ-law segment s (16-bit scale), 2^(s+4) for
    /// A-law (segments 0 and 1 share the smallest step); the clipped top end excepted.
    #[test]
    fn error_bounds() {
        for x in i16::MIN..=i16::MAX {
            let xi = i32::from(x);
            if xi.abs() < 32_000 {
                let code = ulaw_encode(x);
                let seg = u32::from((!code >> 4) & 7);
                let err = (i32::from(ulaw_decode(code)) - xi).abs();
                assert!(err <= (1 << (seg + 3)) / 2 + 4, "μ-law {x}: error {err}");

                let code = alaw_encode(x);
                let seg = u32::from(((code ^ 0x55) >> 4) & 7).max(1);
                let err = (i32::from(alaw_decode(code)) - xi).abs();
                assert!(err <= (1 << (seg + 3)) / 2 + 8, "A-law {x}: error {err}");
            }
        }
    }

    #[test]
    fn decode_is_monotonic() {
        // Positive μ-law codes run 0xff (smallest) down to 0x80 (largest).
        let mut prev = -1;
        for code in (0x80..=0xffu8).rev() {
            let v = i32::from(ulaw_decode(code));
            assert!(v > prev, "μ-law {code:#x}");
            prev = v;
        }
        // Positive A-law values ordered by the un-inverted code.
        let mut prev = 0;
        for raw in 0x80..=0xffu8 {
            let v = i32::from(alaw_decode(raw ^ 0x55));
            assert!(v > prev, "A-law {raw:#x}");
            prev = v;
        }
    }

    #[test]
    fn sine_snr_above_35_db() {
        let n = 8000;
        let mut pcm = [0i16; 8000];
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = i as f64 / 8000.0;
            *s = (16_000.0 * (2.0 * core::f64::consts::PI * 440.0 * t).sin()) as i16;
        }
        for law in [Law::Mu, Law::A] {
            let mut coded = [0u8; 8000];
            let mut back = [0i16; 8000];
            assert_eq!(encode(law, &pcm, &mut coded), n);
            assert_eq!(decode(law, &coded, &mut back), n);
            let (mut sig, mut noise) = (0f64, 0f64);
            for (a, b) in pcm.iter().zip(back.iter()) {
                sig += f64::from(*a).powi(2);
                noise += (f64::from(*a) - f64::from(*b)).powi(2);
            }
            let snr = 10.0 * (sig / noise).log10();
            assert!(snr > 35.0, "{law:?}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn slices_stop_at_the_shorter() {
        let mut out = [0u8; 3];
        assert_eq!(encode(Law::Mu, &[0, 0, 0, 0, 0], &mut out), 3);
        assert_eq!(out, [0xff; 3]);
        let mut pcm = [1i16; 4];
        assert_eq!(decode(Law::A, &[0xd5, 0xd5], &mut pcm), 2);
        assert_eq!(pcm, [8, 8, 1, 1]);
    }
}
