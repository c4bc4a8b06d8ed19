//! Heap allocations per packet in steady state through the media pipeline: 0.
//!
//! A counting global allocator watches the echo (Opus → PCM 48 kHz → Opus) and both
//! directions of a transcoded call (Opus → PCM 8 kHz → PCMU, PCMU → PCM 8 kHz → Opus, and
//! G.722 ⇄ Opus at 16 kHz)
//! while packets, with jitter, reordering and losses, go in and out after a warm-up.
//! Setup may allocate; the packet path may not. (libopus itself is built with C99
//! variable-length arrays, `OPUS_VAR_ARRAYS`, so it works on the stack too; a Rust
//! allocator cannot see C's malloc, which is why that is stated here and not measured.)
//!
//! One test function only: the counter is process-wide, and parallel tests would add
//! their own allocations to it.

use std::alloc::System;
use std::time::{Duration, Instant};

use srgate::media::codec::{Codec, Encoder, FRAME, Law, SampleRate, g711};
use srgate::media::echo::{Echo, EchoConfig};
use srgate::media::jitter::JitterConfig;
use srgate::media::transcode::{MAX_RTP_OUT, Transcoder, TranscoderConfig};
use srgate::wire::rtp;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const FRAMES: usize = 400;
const WARM_UP: usize = 100;

#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn sine(freq: f64, rate: f64, frame: usize, out: &mut [i16]) {
    let len = out.len();
    for (i, s) in out.iter_mut().enumerate() {
        let t = (frame * len + i) as f64 / rate;
        *s = (9_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
    }
}

fn rtp_packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; rtp::HEADER_LEN + payload.len()];
    rtp::Header {
        marker: false,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc: 0x5555_0001,
    }
    .emit(&mut p)
    .expect("room");
    p[rtp::HEADER_LEN..].copy_from_slice(payload);
    p
}

fn opus_stream() -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    enc.set_inband_fec(true).expect("fec");
    enc.set_packet_loss_perc(10).expect("loss");
    let mut pcm = [0i16; 960];
    let mut buf = [0u8; 1500];
    (0..FRAMES)
        .map(|f| {
            sine(440.0, 48_000.0, f, &mut pcm);
            let n = enc.encode(&pcm, &mut buf).expect("encode");
            rtp_packet(
                111,
                60_000u16.wrapping_add(f as u16),
                (f * 960) as u32,
                &buf[..n],
            )
        })
        .collect()
}

fn pcmu_stream() -> Vec<Vec<u8>> {
    let mut pcm = [0i16; 160];
    let mut buf = [0u8; 160];
    (0..FRAMES)
        .map(|f| {
            sine(440.0, 8_000.0, f, &mut pcm);
            g711::encode(Law::Mu, &pcm, &mut buf);
            rtp_packet(0, 60_000u16.wrapping_add(f as u16), (f * 160) as u32, &buf)
        })
        .collect()
}

fn g722_stream() -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(Codec::G722, SampleRate::Hz16000, 5).expect("encoder");
    let mut pcm = [0i16; 320];
    let mut buf = [0u8; 160];
    (0..FRAMES)
        .map(|f| {
            sine(5_000.0, 16_000.0, f, &mut pcm);
            let n = enc.encode(&pcm, &mut buf).expect("encode");
            rtp_packet(
                9,
                60_000u16.wrapping_add(f as u16),
                (f * 160) as u32,
                &buf[..n],
            )
        })
        .collect()
}

/// Arrival time of packet `i`: 20 ms apart with up to 8 ms of jitter, every 50th pair
/// swapped; `None` for the lost ones.
fn arrival(i: usize) -> Option<Duration> {
    if i % 37 == 20 {
        return None;
    }
    let ms = match i % 50 {
        30 => (i as u64 + 1) * 20 + 3,
        31 => (i as u64 - 1) * 20 + 9,
        _ => i as u64 * 20 + (i as u64 * 7) % 9,
    };
    Some(Duration::from_millis(ms))
}

/// Feeds packets `range` on the simulated clock and drains every output packet; returns
/// (packets out, payload checksum). Allocates nothing itself.
fn drive<F, G>(
    packets: &[Vec<u8>],
    range: std::ops::Range<usize>,
    t0: Instant,
    mut push: F,
    mut poll: G,
    timeout: impl Fn() -> Option<Instant>,
) -> (usize, u64)
where
    F: FnMut(Instant, &[u8]),
    G: FnMut(Instant, &mut [u8]) -> Option<usize>,
{
    let mut out = [0u8; MAX_RTP_OUT];
    let (mut sent, mut sum) = (0usize, 0u64);
    let mut i = range.start;
    let end_time = t0 + Duration::from_millis(range.end as u64 * 20);
    for _ in 0..10 * FRAMES {
        while i < range.end && arrival(i).is_none() {
            i += 1;
        }
        let next_arrival = (i < range.end).then(|| t0 + arrival(i).expect("skipped lost"));
        let now = match (next_arrival, timeout()) {
            (Some(a), Some(d)) => a.min(d),
            (Some(a), None) => a,
            (None, Some(d)) if d <= end_time => d,
            _ => break,
        };
        if next_arrival == Some(now) {
            push(now, &packets[i]);
            i += 1;
            continue;
        }
        while let Some(n) = poll(now, &mut out) {
            sent += 1;
            sum = sum.wrapping_add(out[..n].iter().map(|&b| u64::from(b)).sum::<u64>());
        }
    }
    (sent, sum)
}

fn transcoder(input: Codec, in_pt: u8, output: Codec, out_pt: u8) -> Transcoder {
    Transcoder::new(TranscoderConfig {
        input,
        input_payload_type: in_pt,
        output,
        output_payload_type: out_pt,
        output_frame: FRAME,
        pcm_rate: input.pcm_rate_with(output),
        opus_complexity: 5,
        ssrc: 0x0bad_cafe,
        initial_sequence: 1,
        initial_timestamp: 1,
        jitter: JitterConfig::new(input.clock_rate()),
    })
    .expect("transcoder")
}

#[test]
fn no_heap_allocation_per_packet_in_steady_state() {
    let t0 = base();
    let opus_packets = opus_stream();
    let pcmu_packets = pcmu_stream();
    let g722_packets = g722_stream();

    // Echo, Opus at 48 kHz both ways.
    let setup = Region::new(GLOBAL);
    let echo = Echo::new(EchoConfig {
        payload_type: 111,
        pcm_rate: SampleRate::Hz48000,
        opus_complexity: 5,
        ssrc: 1,
        initial_sequence: 1,
        initial_timestamp: 1,
    })
    .expect("echo");
    let setup = setup.change();
    // The Rust side of a call's media state: the jitter ring and the PCM frame (libopus
    // allocates its codec state with C malloc, which this allocator does not see).
    assert!(setup.bytes_allocated < 32 * 1024, "{setup:?}");
    println!(
        "echo setup: {} heap allocations, {} bytes on the Rust heap",
        setup.allocations, setup.bytes_allocated
    );
    let echo = std::cell::RefCell::new(echo);
    let push = |now, p: &[u8]| {
        let _ = echo.borrow_mut().push_rtp(now, p);
    };
    let poll = |now, out: &mut [u8]| echo.borrow_mut().poll_rtp(now, out);
    let (warm, _) = drive(&opus_packets, 0..WARM_UP, t0, push, poll, || {
        echo.borrow().poll_timeout()
    });
    assert!(warm > 80, "warm-up echoed {warm}");
    let region = Region::new(GLOBAL);
    let (sent, sum) = drive(&opus_packets, WARM_UP..FRAMES, t0, push, poll, || {
        echo.borrow().poll_timeout()
    });
    let change = region.change();
    assert!(sent >= 290, "echoed {sent}");
    assert_ne!(sum, 0);
    assert!(echo.borrow().stats().fec_frames > 0, "losses were rebuilt");
    assert_eq!(
        (
            change.allocations,
            change.reallocations,
            change.deallocations
        ),
        (0, 0, 0),
        "echo: {sent} packets, {change:?}"
    );
    println!(
        "echo: {sent} packets in steady state, heap allocations {}",
        change.allocations
    );

    // Transcoded call, Opus → PCMU and PCMU → Opus, PCM at 8 kHz.
    for (name, packets, input, in_pt, output, out_pt) in [
        (
            "opus→pcmu",
            &opus_packets,
            Codec::Opus,
            111,
            Codec::G711(Law::Mu),
            0,
        ),
        (
            "pcmu→opus",
            &pcmu_packets,
            Codec::G711(Law::Mu),
            0,
            Codec::Opus,
            111,
        ),
        // G.722 ⇄ Opus at 16 kHz
        ("opus→g722", &opus_packets, Codec::Opus, 111, Codec::G722, 9),
        ("g722→opus", &g722_packets, Codec::G722, 9, Codec::Opus, 111),
    ] {
        let t = std::cell::RefCell::new(transcoder(input, in_pt, output, out_pt));
        let push = |now, p: &[u8]| {
            let _ = t.borrow_mut().push_rtp(now, p);
        };
        let poll = |now, out: &mut [u8]| t.borrow_mut().poll_rtp(now, out);
        drive(packets, 0..WARM_UP, t0, push, poll, || {
            t.borrow().poll_timeout()
        });
        let region = Region::new(GLOBAL);
        let (sent, _) = drive(packets, WARM_UP..FRAMES, t0, push, poll, || {
            t.borrow().poll_timeout()
        });
        let change = region.change();
        assert!(sent >= 290, "{name}: sent {sent}");
        assert_eq!(
            (
                change.allocations,
                change.reallocations,
                change.deallocations
            ),
            (0, 0, 0),
            "{name}: {sent} packets, {change:?}"
        );
        println!(
            "{name}: {sent} packets in steady state, heap allocations {}",
            change.allocations
        );
    }
}
