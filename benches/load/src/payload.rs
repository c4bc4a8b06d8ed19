//! The media the harness sends: G.711 µ-law frames of a 1 kHz tone, each carrying in its
//! first bytes a marker with the call, a sequence number and the send time, so that loss,
//! reordering and the round-trip time are measured per packet. The rest of the frame is
//! the tone itself; on a relayed call it must come back byte for byte.

/// Samples (and bytes) in one 20 ms PCMU frame.
pub const FRAME: usize = 160;
/// Bytes of the marker at the start of each frame.
pub const MARK: usize = 20;
const MAGIC: [u8; 4] = *b"SGLD";

/// One period-aligned second of a 1 kHz tone at 8 kHz, µ-law coded (a 20 ms frame is a
/// whole number of periods, so every frame carries the same bytes).
pub fn tone_frame() -> [u8; FRAME] {
    let mut frame = [0u8; FRAME];
    for (i, b) in frame.iter_mut().enumerate() {
        let t = i as f64 / 8000.0;
        let sample = (f64::sin(2.0 * std::f64::consts::PI * 1000.0 * t) * 8000.0) as i16;
        *b = ulaw(sample);
    }
    frame
}

/// G.711 µ-law encoding of one linear sample (ITU-T G.711, with the usual bias of 0x84).
pub fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Linear value of one µ-law byte.
pub fn ulaw_decode(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// A frame's marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub call: u32,
    pub seq: u32,
    /// Microseconds since the run's epoch when the frame was sent.
    pub sent_us: u64,
}

/// Writes `mark` and the tone into `frame`.
pub fn fill(frame: &mut [u8; FRAME], tone: &[u8; FRAME], mark: Mark) {
    frame.copy_from_slice(tone);
    frame[..4].copy_from_slice(&MAGIC);
    frame[4..8].copy_from_slice(&mark.call.to_be_bytes());
    frame[8..12].copy_from_slice(&mark.seq.to_be_bytes());
    frame[12..20].copy_from_slice(&mark.sent_us.to_be_bytes());
}

/// The marker of a received frame, and whether the rest of it is the tone unchanged.
pub fn read(frame: &[u8], tone: &[u8; FRAME]) -> Option<(Mark, bool)> {
    if frame.len() != FRAME || frame[..4] != MAGIC {
        return None;
    }
    let word =
        |at: usize| u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&frame[12..20]);
    let mark = Mark {
        call: word(4),
        seq: word(8),
        sent_us: u64::from_be_bytes(t),
    };
    Some((mark, frame[MARK..] == tone[MARK..]))
}

/// The strongest frequency among 50 Hz steps from 100 to 3900 Hz of µ-law audio cut into
/// `chunk`-byte pieces (the tone part of each frame heard): Goertzel power summed over the
/// pieces, so the jump in phase where two pieces meet does not count.
pub fn dominant_hz(ulaw_bytes: &[u8], chunk: usize) -> f64 {
    let pieces: Vec<Vec<f64>> = ulaw_bytes
        .chunks_exact(chunk.max(1))
        .map(|piece| piece.iter().map(|b| ulaw_decode(*b) as f64).collect())
        .collect();
    strongest(&pieces, 8000.0)
}

/// The strongest frequency of linear PCM at `rate` (one continuous piece).
pub fn dominant_hz_pcm(pcm: &[i16], rate: f64) -> f64 {
    strongest(&[pcm.iter().map(|s| *s as f64).collect()], rate)
}

fn strongest(pieces: &[Vec<f64>], rate: f64) -> f64 {
    let mut best = (0.0, 0.0);
    for step in 2..=78 {
        let hz = step as f64 * 50.0;
        let w = 2.0 * std::f64::consts::PI * hz / rate;
        let mut power = 0.0;
        for piece in pieces {
            let (mut s1, mut s2) = (0.0, 0.0);
            for x in piece {
                let s0 = x + 2.0 * w.cos() * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            power += s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        }
        if power > best.1 {
            best = (hz, power);
        }
    }
    best.0
}

/// One second of a 1 kHz tone at 48 kHz, Opus-coded in 20 ms frames with the encoder
/// srgate uses (VoIP, in-band FEC, complexity 5): the browsers' media for transcoded calls.
pub fn opus_tone_frames() -> Result<Vec<Vec<u8>>, String> {
    use srgate::media::codec::SampleRate;
    use srgate::media::codec::opus::OpusEncoder;
    let mut enc = OpusEncoder::new(SampleRate::Hz48000, 5).map_err(|e| format!("{e:?}"))?;
    let mut frames = Vec::with_capacity(50);
    let mut pcm = [0i16; 960];
    let mut out = [0u8; 1500];
    for f in 0..50 {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * 960 + i) as f64 / 48_000.0;
            *s = (f64::sin(2.0 * std::f64::consts::PI * 1000.0 * t) * 8000.0) as i16;
        }
        let n = enc.encode(&pcm, &mut out).map_err(|e| format!("{e:?}"))?;
        frames.push(out[..n].to_vec());
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trips_within_its_step() {
        for s in [-30000i16, -1000, -1, 0, 1, 100, 1000, 30000] {
            let back = ulaw_decode(ulaw(s)) as i32;
            let step = (s as i32).abs() / 16 + 8;
            assert!((back - s as i32).abs() <= step, "{s} -> {back}");
        }
    }

    #[test]
    fn the_opus_tone_decodes_to_1_khz() {
        use srgate::media::codec::opus::OpusDecoder;
        use srgate::media::codec::{PcmFrame, SampleRate};
        let frames = opus_tone_frames().unwrap();
        let mut dec = OpusDecoder::new(SampleRate::Hz48000).unwrap();
        let mut pcm = Vec::new();
        let mut frame: PcmFrame = [0; srgate::media::codec::MAX_FRAME_SAMPLES];
        for f in &frames[..25] {
            let n = dec.decode(f, &mut frame).unwrap();
            pcm.extend_from_slice(&frame[..n]);
        }
        assert_eq!(dominant_hz_pcm(&pcm[4800..], 48_000.0), 1000.0);
    }

    #[test]
    fn a_marked_frame_reads_back_and_is_heard_as_1_khz() {
        let tone = tone_frame();
        let mut frame = [0u8; FRAME];
        let mark = Mark {
            call: 7,
            seq: 9,
            sent_us: 123_456_789,
        };
        fill(&mut frame, &tone, mark);
        assert_eq!(read(&frame, &tone), Some((mark, true)));
        frame[100] ^= 1;
        assert_eq!(read(&frame, &tone), Some((mark, false)));
        assert_eq!(dominant_hz(&tone[MARK..], FRAME - MARK), 1000.0);
        let mut two = tone[MARK..].to_vec();
        two.extend_from_slice(&tone[MARK..]);
        assert_eq!(dominant_hz(&two, FRAME - MARK), 1000.0);
    }
}
