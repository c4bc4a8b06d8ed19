//! srgate's G.722 against ffmpeg's (`adpcm_g722`), on the same 16 kHz test signal: tones in
//! both sub-bands, a sweep across the whole band, noise, full-scale bursts and silence.
//!
//! - encoder: srgate's bytes against `ffmpeg -c:a g722`'s, byte for byte;
//! - decoder: srgate's PCM from ffmpeg's bytes against `ffmpeg -f g722`'s PCM, sample for
//!   sample;
//! - and each decodes the other's stream (srgate's bytes through ffmpeg's decoder).
//!
//! The tolerance is none: both must be bit-exact (documented in the README). A mismatch
//! prints where the streams part and how far.

mod common;

use std::path::Path;
use std::process::Command;

use srgate::media::codec::SampleRate;
use srgate::media::codec::g722::{G722Decoder, G722Encoder};

use common::TestDir;

const RATE: u32 = 16_000;

/// Three seconds of test signal at 16 kHz.
fn signal() -> Vec<i16> {
    let rate = f64::from(RATE);
    let mut noise = 0x2545_f491_u32;
    let mut out = Vec::new();
    for i in 0..(3 * RATE as usize) {
        let t = i as f64 / rate;
        let tau = std::f64::consts::TAU;
        let s = match i / 8_000 {
            // 1 kHz and 5.5 kHz: one tone per sub-band
            0 => 6_000.0 * (tau * 1_000.0 * t).sin() + 4_000.0 * (tau * 5_500.0 * t).sin(),
            // a sweep from 50 Hz to 7.9 kHz
            1 => 9_000.0 * (tau * (50.0 + 3_925.0 * (t - 0.5) / 0.5) * t).sin(),
            // white noise
            2 => {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                f64::from((noise >> 16) as i16) * 0.5
            }
            // full-scale bursts of a square wave, then silence
            3 if i % 8_000 < 4_000 => {
                if (i / 7) % 2 == 0 {
                    32_767.0
                } else {
                    -32_768.0
                }
            }
            3 => 0.0,
            // speech-like: a 200 Hz pulse train through a decaying resonance at 2.7 kHz
            4 => {
                let since = (i % 80) as f64 / rate;
                12_000.0 * (-since * 400.0).exp() * (tau * 2_700.0 * since).sin()
            }
            _ => 3_000.0 * (tau * 300.0 * t).sin() + 3_000.0 * (tau * 7_000.0 * t).sin(),
        };
        out.push(s.clamp(-32_768.0, 32_767.0) as i16);
    }
    out
}

fn ffmpeg(args: &[&str]) {
    let binary = common::find_binary("ffmpeg").expect("ffmpeg installed");
    let out = Command::new(binary)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ffmpeg's decoding of the G.722 stream in `g722`, through the file `pcm`.
fn ffmpeg_decode(g722: &Path, pcm: &Path) -> Vec<i16> {
    let rate = RATE.to_string();
    ffmpeg(&[
        "-f",
        "g722",
        "-i",
        g722.to_str().unwrap(),
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        &rate,
        pcm.to_str().unwrap(),
    ]);
    read_pcm(pcm)
}

fn pcm_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn read_pcm(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .expect("ffmpeg wrote it")
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn encode(pcm: &[i16]) -> Vec<u8> {
    let mut enc = G722Encoder::new(SampleRate::Hz16000).unwrap();
    let mut out = vec![0u8; pcm.len() / 2];
    // 20 ms at a time, as srgate sends it
    for (frame, bytes) in pcm.chunks(320).zip(out.chunks_mut(160)) {
        assert_eq!(enc.encode(frame, bytes).unwrap(), frame.len() / 2);
    }
    out
}

fn decode(bytes: &[u8]) -> Vec<i16> {
    let mut dec = G722Decoder::new(SampleRate::Hz16000).unwrap();
    let mut out = vec![0i16; bytes.len() * 2];
    for (packet, pcm) in bytes.chunks(160).zip(out.chunks_mut(320)) {
        assert_eq!(dec.decode(packet, pcm).unwrap(), packet.len() * 2);
    }
    out
}

/// Where two sequences first differ, how many elements differ and the largest difference.
fn compare<T: Copy + Into<i32>>(ours: &[T], theirs: &[T]) -> Option<String> {
    if ours.len() != theirs.len() {
        return Some(format!("lengths {} and {}", ours.len(), theirs.len()));
    }
    let differ: Vec<usize> = (0..ours.len())
        .filter(|&i| ours[i].into() != theirs[i].into())
        .collect();
    let first = *differ.first()?;
    let largest = differ
        .iter()
        .map(|&i| (ours[i].into() - theirs[i].into()).abs())
        .max()
        .unwrap_or(0);
    Some(format!(
        "{} of {} differ, the first at {first}, the largest by {largest}",
        differ.len(),
        ours.len()
    ))
}

#[test]
fn g722_is_bit_exact_with_ffmpeg_both_ways() {
    if !common::peers_available(&[common::FFMPEG]) {
        return;
    }
    let dir = TestDir::new("g722-ffmpeg");
    let input = signal();
    let raw = dir.join("input.s16");
    std::fs::write(&raw, pcm_bytes(&input)).unwrap();
    let theirs_g722 = dir.join("ffmpeg.g722");
    let raw_s = raw.to_str().unwrap();
    let rate = RATE.to_string();
    ffmpeg(&[
        "-f",
        "s16le",
        "-ar",
        &rate,
        "-ac",
        "1",
        "-i",
        raw_s,
        "-c:a",
        "g722",
        "-f",
        "g722",
        theirs_g722.to_str().unwrap(),
    ]);
    let theirs_bytes = std::fs::read(&theirs_g722).unwrap();
    let ours_bytes = encode(&input);
    if let Some(diff) = compare(&ours_bytes, &theirs_bytes) {
        panic!("encoder: srgate's G.722 bytes against ffmpeg's: {diff}");
    }

    let theirs_decoded = ffmpeg_decode(&theirs_g722, &dir.join("ffmpeg.s16"));
    let ours_decoded = decode(&theirs_bytes);
    if let Some(diff) = compare(&ours_decoded, &theirs_decoded) {
        panic!("decoder: srgate's PCM from ffmpeg's G.722 against ffmpeg's: {diff}");
    }

    // srgate's stream through ffmpeg's decoder: the same PCM as srgate's own decoder
    let ours_g722 = dir.join("srgate.g722");
    std::fs::write(&ours_g722, &ours_bytes).unwrap();
    let cross = ffmpeg_decode(&ours_g722, &dir.join("cross.s16"));
    if let Some(diff) = compare(&decode(&ours_bytes), &cross) {
        panic!("srgate's G.722 decoded by ffmpeg and by srgate: {diff}");
    }
    // and the codec did code: the decoded tone section is close to the input (delay 22)
    let (mut signal, mut noise) = (0f64, 0f64);
    for i in 1_000..7_900 {
        let want = f64::from(input[i]);
        signal += want * want;
        noise += (want - f64::from(ours_decoded[i + 22])).powi(2);
    }
    let snr = 10.0 * (signal / noise).log10();
    assert!(snr > 15.0, "two tones through G.722: SNR {snr:.1} dB");
}
