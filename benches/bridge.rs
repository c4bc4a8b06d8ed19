//! A bridged call's media path, measured: srgate's `Bridge` with the browser leg's SRTP
//! (AES-256-GCM, what Chrome negotiates with srgate), fed synthetic packets both ways.
//!
//! Printed after criterion (one run, side by side):
//! - heap allocations per packet in steady state, relayed and transcoded (target 0);
//! - memory per call as the RSS slope over 500 calls set up at once, relayed (target
//!   ≤ 32 KB) and transcoded (target ≤ 128 KB; libopus allocates its state with C's
//!   malloc, which a Rust allocator cannot see, hence RSS);
//! - transcoded frames per second (both directions: SRTP → Opus decode → PCMU and PCMU →
//!   Opus encode → SRTP) against raw libopus decode + encode at the same settings
//!   (target ≥ 0.8).
//!
//! Run: `cargo bench --bench bridge -- --warm-up-time 1 --measurement-time 3`

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use srgate::media::bridge::{Bridge, BridgeConfig, BridgeMode, LegFormat};
use srgate::media::codec::{Codec, Law, g711};
use srgate::media::jitter::JitterConfig;
use srgate::media::relay::RelayArena;
use srgate::webrtc::srtp::{SrtpContext, SrtpProfile};
use srgate::wire::rtp;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEY: [u8; 32] = [7; 32];
const SALT: [u8; 12] = [9; 12];

fn config(webrtc: Codec, pt: u8) -> BridgeConfig {
    let leg = |codec, payload_type, dtmf, ssrc| LegFormat {
        codec,
        payload_type,
        dtmf_payload_type: Some(dtmf),
        dtmf_clock: 8000,
        packet_time: srgate::media::codec::FRAME,
        ssrc,
        initial_sequence: 1,
        initial_timestamp: 1,
    };
    BridgeConfig {
        webrtc: leg(webrtc, pt, 126, 0xaaaa),
        sip: leg(Codec::G711(Law::Mu), 0, 101, 0xbbbb),
        opus_complexity: 5,
        jitter: JitterConfig::new(webrtc.clock_rate()),
    }
}

fn packet(pt: u8, seq: u16, ts: u32, payload: &[u8], out: &mut [u8]) -> usize {
    rtp::Header {
        marker: false,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc: 0x1234,
    }
    .emit(out)
    .expect("room");
    out[rtp::HEADER_LEN..rtp::HEADER_LEN + payload.len()].copy_from_slice(payload);
    rtp::HEADER_LEN + payload.len()
}

fn opus_frames(n: usize) -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("enc");
    let mut out = Vec::new();
    let mut pcm = [0i16; 960];
    for f in 0..n {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * 960 + i) as f64 / 48_000.0;
            *s = (9000.0 * (t * 440.0 * std::f64::consts::TAU).sin()) as i16;
        }
        out.push(enc.encode_vec(&pcm, 400).expect("encode"));
    }
    out
}

/// One call's media: the bridge and the browser leg's SRTP both ways.
struct CallMedia {
    bridge: Bridge,
    /// What the simulated browser uses to protect, and srgate to unprotect.
    browser_tx: SrtpContext,
    srgate_rx: SrtpContext,
    srgate_tx: SrtpContext,
}

impl CallMedia {
    fn new(webrtc: Codec, pt: u8) -> CallMedia {
        let ctx = || SrtpContext::new(SrtpProfile::AeadAes256Gcm, &KEY, &SALT).expect("keys");
        CallMedia {
            bridge: Bridge::new(config(webrtc, pt)).expect("bridge"),
            browser_tx: ctx(),
            srgate_rx: ctx(),
            srgate_tx: ctx(),
        }
    }

    /// One 20 ms frame each way at `now`: browser SRTP in, SIP RTP out, SIP RTP in,
    /// browser SRTP out. Returns the packets sent.
    fn frame(
        &mut self,
        arena: &mut RelayArena,
        now: Instant,
        i: usize,
        webrtc_payload: &[u8],
        pt: u8,
        buf: &mut [u8],
    ) -> usize {
        let mut sent = 0;
        let ticks = if pt == 111 { 960 } else { 160 };
        let n = packet(pt, i as u16, (i as u32) * ticks, webrtc_payload, buf);
        let n = self.browser_tx.protect_rtp(buf, n).expect("protect");
        let plain = self
            .srgate_rx
            .unprotect_rtp(&mut buf[..n])
            .expect("unprotect");
        let _ = self.bridge.push_webrtc(now, &buf[..plain], arena);
        while let Some(n) = self.bridge.poll_sip(now, buf, arena) {
            black_box(&buf[..n]);
            sent += 1;
        }
        let pcmu = [0x55u8; 160];
        let n = packet(0, i as u16, (i as u32) * 160, &pcmu, buf);
        let _ = self.bridge.push_sip(now, &buf[..n], arena);
        while let Some(n) = self.bridge.poll_webrtc(now, &mut buf[..1400], arena) {
            if self.srgate_tx.protect_rtp(buf, n).is_ok() {
                sent += 1;
            }
        }
        arena.clear();
        sent
    }
}

fn rss_kb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn bench(c: &mut Criterion) {
    let opus = opus_frames(500);
    let pcmu = vec![0x55u8; 160];
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut buf = vec![0u8; 2048];

    let mut arena = RelayArena::default();

    let mut relay = CallMedia::new(Codec::G711(Law::Mu), 0);
    assert_eq!(relay.bridge.mode(), BridgeMode::Relay);
    let mut i = 0usize;
    c.bench_function("relay_frame_both_ways", |b| {
        b.iter(|| {
            i += 1;
            relay.frame(
                &mut arena,
                t0 + Duration::from_millis(20 * i as u64),
                i,
                &pcmu,
                0,
                &mut buf,
            )
        })
    });
    let mut arena = RelayArena::default();
    let mut transcode = CallMedia::new(Codec::Opus, 111);
    let mut j = 0usize;
    c.bench_function("transcode_frame_both_ways", |b| {
        b.iter(|| {
            j += 1;
            let p = &opus[j % opus.len()];
            transcode.frame(
                &mut arena,
                t0 + Duration::from_millis(20 * j as u64),
                j,
                p,
                111,
                &mut buf,
            )
        })
    });

    // --- allocations per packet in steady state
    for (name, codec, pt) in [
        ("relay", Codec::G711(Law::Mu), 0u8),
        ("transcode", Codec::Opus, 111),
    ] {
        let mut arena = RelayArena::default();
        let mut m = CallMedia::new(codec, pt);
        let mut packets = 0;
        for k in 0..100 {
            let p: &[u8] = if pt == 111 {
                &opus[k % opus.len()]
            } else {
                &pcmu
            };
            m.frame(
                &mut arena,
                t0 + Duration::from_millis(20 * k as u64),
                k,
                p,
                pt,
                &mut buf,
            );
        }
        let region = Region::new(GLOBAL);
        for k in 100..600 {
            let p: &[u8] = if pt == 111 {
                &opus[k % opus.len()]
            } else {
                &pcmu
            };
            packets += m.frame(
                &mut arena,
                t0 + Duration::from_millis(20 * k as u64),
                k,
                p,
                pt,
                &mut buf,
            );
        }
        let s = region.change();
        println!(
            "{name}: {} heap allocations over {packets} packets in steady state",
            s.allocations
        );
        assert_eq!(
            s.allocations, 0,
            "{name}: the packet path must not allocate"
        );
    }

    // --- memory per call (RSS slope)
    for (name, codec, pt) in [
        ("relay", Codec::G711(Law::Mu), 0u8),
        ("transcode", Codec::Opus, 111),
    ] {
        let before = rss_kb();
        let calls: Vec<CallMedia> = (0..500).map(|_| CallMedia::new(codec, pt)).collect();
        let after = rss_kb();
        println!(
            "{name}: {:.1} KB per call (RSS slope over {} calls)",
            (after.saturating_sub(before)) as f64 / calls.len() as f64,
            calls.len()
        );
        drop(black_box(calls));
    }

    // --- transcoded frames/s against raw libopus (same settings), alternating loops
    let mut dec = opus::Decoder::new(8000, opus::Channels::Mono).expect("dec");
    let mut enc =
        opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip).expect("enc");
    enc.set_complexity(5).expect("complexity");
    enc.set_inband_fec(true).expect("fec");
    enc.set_packet_loss_perc(10).expect("loss");
    let mut pcm = [0i16; 160];
    let mut out = [0u8; 400];
    let mut arena = RelayArena::default();
    let mut m = CallMedia::new(Codec::Opus, 111);
    let (mut ours, mut raw) = (Duration::ZERO, Duration::ZERO);
    let rounds = 20;
    let per = 200;
    let mut k = 0usize;
    for _ in 0..rounds {
        #[allow(clippy::disallowed_methods)]
        let s = Instant::now();
        for _ in 0..per {
            k += 1;
            let p = &opus[k % opus.len()];
            black_box(m.frame(
                &mut arena,
                t0 + Duration::from_millis(20 * k as u64),
                k,
                p,
                111,
                &mut buf,
            ));
        }
        ours += s.elapsed();
        #[allow(clippy::disallowed_methods)]
        let s = Instant::now();
        for n in 0..per {
            let p = &opus[n % opus.len()];
            let got = dec.decode(p, &mut pcm, false).unwrap_or(0);
            for x in &pcm[..got] {
                black_box(g711::ulaw_encode(*x));
            }
            for (x, y) in pcm.iter_mut().zip(pcmu.iter()) {
                *x = g711::ulaw_decode(*y);
            }
            black_box(enc.encode(&pcm, &mut out).unwrap_or(0));
        }
        raw += s.elapsed();
    }
    let frames = (rounds * per) as f64;
    println!(
        "transcode: srgate {:.0} frames/s (both ways, with SRTP), raw libopus {:.0} frames/s: ratio {:.2} (target ≥ 0.8)",
        frames / ours.as_secs_f64(),
        frames / raw.as_secs_f64(),
        raw.as_secs_f64() / ours.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
