//! Transcoding speed: srgate's whole per-frame media path against raw libopus doing the same
//! codec work with the same settings, in the same run.
//!
//! - `opus_pcm8k_opus`: one direction Opus (48 kHz RTP) → PCM 8 kHz → Opus. srgate: RTP
//!   parse, jitter buffer, decode, encode, RTP write (`Transcoder`). Raw: libopus decode at
//!   8 kHz + encode at 8 kHz (VoIP, complexity 5, in-band FEC, 10 % expected loss).
//! - `bridge_opus_pcmu`: both directions of a bridged call, Opus → PCMU and PCMU → Opus at
//!   8 kHz. Raw: libopus decode + G.711 encode, G.711 decode + libopus encode.
//!
//! - `pcmu_pcm8k_pcmu`: srgate's path with G.711 on both sides: what RTP, the jitter
//!   buffer and the cadence cost per frame around the codecs.
//! - `pcm16k_encode_decode`: srgate's G.722 against libopus, both encoding and decoding
//!   one 20 ms frame of 16 kHz audio (what a G.722 phone's call adds to the Opus side).
//!
//! One iteration is one 20 ms frame (per direction). After criterion, a plain timed loop
//! prints the ratio srgate / raw in frames per second (target ≥ 0.8) and the heap
//! allocations per frame of srgate's path.
//!
//! Run: `cargo bench --bench transcode -- --warm-up-time 1 --measurement-time 3`

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use srgate::media::codec::{Codec, Decoder, Encoder, FRAME, Law, SampleRate, g711};
use srgate::media::jitter::JitterConfig;
use srgate::media::transcode::{MAX_RTP_OUT, Transcoder, TranscoderConfig};
use srgate::wire::rtp;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const COMPLEXITY: i32 = 5;
const LOOP: usize = 50;

fn sine(freq: f64, rate: f64, frame: usize, out: &mut [i16]) {
    let len = out.len();
    for (i, s) in out.iter_mut().enumerate() {
        let t = (frame * len + i) as f64 / rate;
        *s = (9_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
    }
}

fn rtp_packet(pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; rtp::HEADER_LEN + payload.len()];
    rtp::Header {
        marker: false,
        payload_type: pt,
        sequence_number: 0,
        timestamp: 0,
        ssrc: 0x5555_0001,
    }
    .emit(&mut p)
    .expect("room");
    p[rtp::HEADER_LEN..].copy_from_slice(payload);
    p
}

/// A second of a browser's Opus (48 kHz, full band) and of a phone's PCMU, as RTP.
fn streams() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    enc.set_inband_fec(true).expect("fec");
    enc.set_packet_loss_perc(10).expect("loss");
    let mut pcm48 = [0i16; 960];
    let mut pcm8 = [0i16; 160];
    let mut buf = [0u8; 1500];
    let mut opus_rtp = Vec::new();
    let mut pcmu_rtp = Vec::new();
    for f in 0..LOOP {
        sine(440.0, 48_000.0, f, &mut pcm48);
        let n = enc.encode(&pcm48, &mut buf).expect("encode");
        opus_rtp.push(rtp_packet(111, &buf[..n]));
        sine(1000.0, 8_000.0, f, &mut pcm8);
        g711::encode(Law::Mu, &pcm8, &mut buf[..160]);
        pcmu_rtp.push(rtp_packet(0, &buf[..160]));
    }
    (opus_rtp, pcmu_rtp)
}

fn transcoder(input: Codec, in_pt: u8, output: Codec, out_pt: u8) -> Transcoder {
    Transcoder::new(TranscoderConfig {
        input,
        input_payload_type: in_pt,
        output,
        output_payload_type: out_pt,
        output_frame: FRAME,
        pcm_rate: SampleRate::Hz8000,
        opus_complexity: COMPLEXITY as u8,
        ssrc: 0x0bad_cafe,
        initial_sequence: 1,
        initial_timestamp: 1,
        jitter: JitterConfig::new(input.clock_rate()),
    })
    .expect("transcoder")
}

fn raw_encoder() -> opus::Encoder {
    let mut e =
        opus::Encoder::new(8_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    e.set_complexity(COMPLEXITY).expect("complexity");
    e.set_inband_fec(true).expect("fec");
    e.set_packet_loss_perc(10).expect("loss");
    e
}

/// srgate's path for one direction, driven on a simulated clock: each step stamps the
/// next packet with the next sequence number and timestamp (in place), pushes it and
/// takes the frame that is due.
struct Ours {
    t: Transcoder,
    packets: Vec<Vec<u8>>,
    ticks: u32,
    now: Instant,
    step: u64,
    out: [u8; MAX_RTP_OUT],
}

impl Ours {
    fn new(t: Transcoder, packets: Vec<Vec<u8>>, ticks: u32, now: Instant) -> Ours {
        let mut o = Ours {
            t,
            packets,
            ticks,
            now,
            step: 0,
            out: [0; MAX_RTP_OUT],
        };
        // Fill the jitter buffer to its playout delay.
        for _ in 0..5 {
            o.frame();
        }
        o
    }

    fn frame(&mut self) -> usize {
        let i = (self.step % LOOP as u64) as usize;
        let seq = self.step as u16;
        let ts = (self.step as u32).wrapping_mul(self.ticks);
        {
            let mut p = rtp::Packet::new_unchecked(&mut self.packets[i][..]);
            p.set_sequence_number(seq);
            p.set_timestamp(ts);
        }
        self.step += 1;
        self.now += Duration::from_millis(20);
        let _ = self.t.push_rtp(self.now, &self.packets[i]);
        let mut n = 0;
        while let Some(len) = self.t.poll_rtp(self.now, &mut self.out) {
            n += len;
        }
        n
    }
}

/// Raw libopus: decode the payload at 8 kHz, encode again.
struct RawOpus {
    dec: opus::Decoder,
    enc: opus::Encoder,
    packets: Vec<Vec<u8>>,
    i: usize,
    pcm: [i16; 160],
    out: [u8; 1500],
}

impl RawOpus {
    fn frame(&mut self) -> usize {
        let p = &self.packets[self.i % LOOP][rtp::HEADER_LEN..];
        self.i += 1;
        let n = self.dec.decode(p, &mut self.pcm, false).expect("decode");
        self.enc
            .encode(&self.pcm[..n], &mut self.out)
            .expect("encode")
    }
}

/// Raw codec work of a bridged call: Opus → PCMU and PCMU → Opus.
struct RawBridge {
    dec: opus::Decoder,
    enc: opus::Encoder,
    opus_packets: Vec<Vec<u8>>,
    pcmu_packets: Vec<Vec<u8>>,
    i: usize,
    pcm: [i16; 160],
    out: [u8; 1500],
}

impl RawBridge {
    fn frame(&mut self) -> usize {
        let o = &self.opus_packets[self.i % LOOP][rtp::HEADER_LEN..];
        let u = &self.pcmu_packets[self.i % LOOP][rtp::HEADER_LEN..];
        self.i += 1;
        let n = self.dec.decode(o, &mut self.pcm, false).expect("decode");
        let a = g711::encode(Law::Mu, &self.pcm[..n], &mut self.out);
        let m = g711::decode(Law::Mu, u, &mut self.pcm);
        a + self
            .enc
            .encode(&self.pcm[..m], &mut self.out)
            .expect("encode")
    }
}

struct OursBridge {
    to_sip: Ours,
    to_app: Ours,
}

impl OursBridge {
    fn frame(&mut self) -> usize {
        self.to_sip.frame() + self.to_app.frame()
    }
}

/// Encode + decode of one 20 ms frame of a 16 kHz tone through a codec at 16 kHz.
struct Wideband {
    encoder: Encoder,
    decoder: Decoder,
    pcm: [i16; 320],
    out: [i16; 960],
    payload: [u8; 1500],
}

impl Wideband {
    fn new(codec: Codec) -> Wideband {
        let mut pcm = [0i16; 320];
        sine(6_000.0, 16_000.0, 0, &mut pcm);
        Wideband {
            encoder: Encoder::new(codec, SampleRate::Hz16000, COMPLEXITY as u8).unwrap(),
            decoder: Decoder::new(codec, SampleRate::Hz16000).unwrap(),
            pcm,
            out: [0; 960],
            payload: [0; 1500],
        }
    }

    fn frame(&mut self) -> usize {
        let n = self.encoder.encode(&self.pcm, &mut self.payload).unwrap();
        self.decoder
            .decode(&self.payload[..n], &mut self.out)
            .unwrap()
    }
}

#[allow(clippy::disallowed_methods)]
fn wall_clock() -> Instant {
    Instant::now()
}

fn setups(t0: Instant) -> (Ours, RawOpus, OursBridge, RawBridge) {
    let (opus_rtp, pcmu_rtp) = streams();
    let ours = Ours::new(
        transcoder(Codec::Opus, 111, Codec::Opus, 111),
        opus_rtp.clone(),
        960,
        t0,
    );
    let raw = RawOpus {
        dec: opus::Decoder::new(8_000, opus::Channels::Mono).expect("decoder"),
        enc: raw_encoder(),
        packets: opus_rtp.clone(),
        i: 0,
        pcm: [0; 160],
        out: [0; 1500],
    };
    let bridge = OursBridge {
        to_sip: Ours::new(
            transcoder(Codec::Opus, 111, Codec::G711(Law::Mu), 0),
            opus_rtp.clone(),
            960,
            t0,
        ),
        to_app: Ours::new(
            transcoder(Codec::G711(Law::Mu), 0, Codec::Opus, 111),
            pcmu_rtp.clone(),
            160,
            t0,
        ),
    };
    let raw_bridge = RawBridge {
        dec: opus::Decoder::new(8_000, opus::Channels::Mono).expect("decoder"),
        enc: raw_encoder(),
        opus_packets: opus_rtp,
        pcmu_packets: pcmu_rtp,
        i: 0,
        pcm: [0; 160],
        out: [0; 1500],
    };
    (ours, raw, bridge, raw_bridge)
}

/// Frames per second of `a` and of `b`: rounds of `frames` frames, alternating between the
/// two so that load from other processes hits both alike; the best round of each counts.
fn fps_pair(
    frames: usize,
    mut a: impl FnMut() -> usize,
    mut b: impl FnMut() -> usize,
) -> (f64, f64) {
    let (mut best_a, mut best_b) = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        let start = wall_clock();
        for _ in 0..frames {
            black_box(a());
        }
        best_a = best_a.min(start.elapsed().as_secs_f64());
        let start = wall_clock();
        for _ in 0..frames {
            black_box(b());
        }
        best_b = best_b.min(start.elapsed().as_secs_f64());
    }
    (frames as f64 / best_a, frames as f64 / best_b)
}

fn bench(c: &mut Criterion) {
    let t0 = wall_clock();
    let (mut ours, mut raw, mut bridge, mut raw_bridge) = setups(t0);
    assert!(ours.frame() > rtp::HEADER_LEN && raw.frame() > 0);
    assert!(bridge.frame() > 2 * rtp::HEADER_LEN && raw_bridge.frame() > 0);

    let mut group = c.benchmark_group("opus_pcm8k_opus");
    group.bench_function("srgate", |b| b.iter(|| black_box(ours.frame())));
    group.bench_function("libopus_raw", |b| b.iter(|| black_box(raw.frame())));
    group.finish();

    let mut group = c.benchmark_group("bridge_opus_pcmu");
    group.bench_function("srgate", |b| b.iter(|| black_box(bridge.frame())));
    group.bench_function("libopus_raw", |b| b.iter(|| black_box(raw_bridge.frame())));
    group.finish();

    // What the path costs around the codecs: PCMU → PCM → PCMU, where the codec work is
    // two table lookups per sample.
    let (_, pcmu_rtp) = streams();
    let mut plain = Ours::new(
        transcoder(Codec::G711(Law::Mu), 0, Codec::G711(Law::Mu), 0),
        pcmu_rtp,
        160,
        t0,
    );
    c.bench_function("pcmu_pcm8k_pcmu/srgate", |b| {
        b.iter(|| black_box(plain.frame()))
    });

    // G.722 (srgate's own, bit-exact with ffmpeg's) against libopus at the same 16 kHz:
    // one 20 ms frame encoded and decoded.
    let mut g722 = Wideband::new(Codec::G722);
    let mut opus16 = Wideband::new(Codec::Opus);
    let mut group = c.benchmark_group("pcm16k_encode_decode");
    group.bench_function("g722", |b| b.iter(|| black_box(g722.frame())));
    group.bench_function("opus", |b| b.iter(|| black_box(opus16.frame())));
    group.finish();
    let region = Region::new(GLOBAL);
    let (g, o) = fps_pair(500, || g722.frame(), || opus16.frame());
    println!(
        "pcm16k_encode_decode: G.722 {g:.0} frames/s, libopus {o:.0} frames/s \
         (G.722 costs {:.3} of Opus), heap allocations: {}",
        o / g,
        region.change().allocations
    );

    // The ratio in one place, and allocations per frame on srgate's side.
    let (mut ours, mut raw, mut bridge, mut raw_bridge) = setups(t0);
    let region = Region::new(GLOBAL);
    for _ in 0..LOOP {
        black_box(ours.frame());
        black_box(bridge.frame());
    }
    let allocs = region.change().allocations;
    let frames = 500;
    let (a, b) = fps_pair(frames, || ours.frame(), || raw.frame());
    let (c2, d) = fps_pair(frames, || bridge.frame(), || raw_bridge.frame());
    println!(
        "opus_pcm8k_opus: srgate {a:.0} frames/s, raw libopus {b:.0} frames/s, ratio {:.3}",
        a / b
    );
    println!(
        "bridge_opus_pcmu (both directions per frame): srgate {c2:.0}/s, raw {d:.0}/s, ratio {:.3}",
        c2 / d
    );
    println!("heap allocations over {} srgate frames: {allocs}", LOOP * 3);
}

criterion_group!(benches, bench);
criterion_main!(benches);
