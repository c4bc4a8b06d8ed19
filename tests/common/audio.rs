//! Test audio: tones written as WAV files, and the dominant frequency of what a peer
//! recorded (a Goertzel scan), so that tests check audio by its content.

use std::path::Path;

/// Writes a 16-bit mono WAV with a sine of `hz` for `secs` seconds at `rate`.
pub fn write_tone(path: &Path, hz: f64, secs: f64, rate: u32) {
    write_tone_channels(path, hz, secs, rate, 1);
}

/// [`write_tone`] with the tone on each of `channels` channels (baresip's aufile wants
/// the codec's channel count: 2 for Opus).
pub fn write_tone_channels(path: &Path, hz: f64, secs: f64, rate: u32, channels: u16) {
    let n = (secs * f64::from(rate)) as usize;
    let mut data = Vec::with_capacity(n * 2 * usize::from(channels));
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let s = ((t * hz * std::f64::consts::TAU).sin() * 12_000.0) as i16;
        for _ in 0..channels {
            data.extend_from_slice(&s.to_le_bytes());
        }
    }
    let block = 2 * channels;
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    wav.extend_from_slice(&block.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).expect("the test dir is writable");
}

/// Reads a 16-bit PCM WAV: (samples of the first channel, rate). `None` if it is not one.
pub fn read_wav(path: &Path) -> Option<(Vec<i16>, u32)> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let (mut channels, mut rate, mut bits) = (1u16, 8000u32, 16u16);
    let mut pos = 12;
    // Bounded by the file size: each chunk moves `pos` forward.
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            channels = u16::from_le_bytes(bytes.get(body + 2..body + 4)?.try_into().ok()?);
            rate = u32::from_le_bytes(bytes.get(body + 4..body + 8)?.try_into().ok()?);
            bits = u16::from_le_bytes(bytes.get(body + 14..body + 16)?.try_into().ok()?);
        } else if id == b"data" {
            if bits != 16 {
                return None;
            }
            let end = (body + size).min(bytes.len());
            let frame = 2 * usize::from(channels.max(1));
            let samples = bytes[body..end]
                .chunks_exact(frame)
                .map(|f| i16::from_le_bytes([f[0], f[1]]))
                .collect();
            return Some((samples, rate));
        }
        pos = body + size + (size & 1);
    }
    None
}

fn goertzel(pcm: &[i16], rate: f64, freq: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The strongest frequency between 200 and 3400 Hz (5 Hz steps) in `pcm`.
pub fn dominant_frequency(pcm: &[i16], rate: u32) -> f64 {
    dominant_frequency_between(pcm, rate, 200.0, 3400.0)
}

/// The strongest frequency between `low` and `high` Hz (5 Hz steps) in `pcm`.
pub fn dominant_frequency_between(pcm: &[i16], rate: u32, low: f64, high: f64) -> f64 {
    let mut best = (0.0, 0.0);
    let mut f = low;
    // bounded: (high - low) / 5 steps
    while f <= high {
        let p = goertzel(pcm, f64::from(rate), f);
        if p > best.1 {
            best = (f, p);
        }
        f += 5.0;
    }
    best.0
}

/// RMS level in dBFS.
pub fn rms_dbfs(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return -120.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / pcm.len() as f64).sqrt() / 32768.0;
    20.0 * rms.max(1e-6).log10()
}

/// Whether a measured frequency is the expected tone's (± 25 Hz: the FFT bins, jitter
/// buffer resampling and codec shifts the tests have seen stay well inside).
pub fn close_to(got: f64, want: f64) -> bool {
    (got - want).abs() <= 25.0
}
