//! The echo service's media path checked by the audio it returns: a tone is Opus-encoded
//! into RTP the way a browser sends it (with reordering and a lost packet), run through
//! `Echo` on a simulated clock, and the echoed RTP is decoded again; the dominant frequency
//! of what comes back must be the tone's.

use std::time::{Duration, Instant};

use srgate::media::codec::SampleRate;
use srgate::media::echo::{Echo, EchoConfig};
use srgate::media::transcode::{MAX_RTP_OUT, PushError};
use srgate::wire::rtp;

const PT: u8 = 111;
const BROWSER_SSRC: u32 = 0x1234_5678;
const OUR_SSRC: u32 = 0x0bad_cafe;
const FRAME: usize = 960;

#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

/// The browser's side: `frames` 20 ms Opus packets of a sine at `freq`, as RTP, starting
/// at sequence number `first_seq`.
fn browser_packets(freq: f64, frames: usize, first_seq: u16) -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    enc.set_inband_fec(true).expect("fec");
    enc.set_packet_loss_perc(10).expect("loss");
    let mut out = Vec::new();
    let mut pcm = [0i16; FRAME];
    for f in 0..frames {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * FRAME + i) as f64 / 48_000.0;
            *s = (10_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        }
        let mut packet = vec![0u8; 1500];
        let header = rtp::Header {
            marker: f == 0,
            payload_type: PT,
            sequence_number: first_seq.wrapping_add(f as u16),
            timestamp: 1_000_000u32.wrapping_add((f * FRAME) as u32),
            ssrc: BROWSER_SSRC,
        };
        let h = header.emit(&mut packet).expect("header");
        let n = enc.encode(&pcm, &mut packet[h..]).expect("encode");
        packet.truncate(h + n);
        out.push(packet);
    }
    out
}

/// Runs `echo` over packets arriving at the given offsets; returns every echoed packet.
fn run_echo(
    echo: &mut Echo,
    t0: Instant,
    arrivals: &[(Duration, Vec<u8>)],
    until: Duration,
) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    let mut out = [0u8; MAX_RTP_OUT];
    let mut a = 0;
    // Bounded: each step consumes an arrival or a due frame.
    for _ in 0..100_000 {
        let next_arrival = arrivals.get(a).map(|(at, _)| t0 + *at);
        let next_due = echo.poll_timeout();
        let now = match (next_arrival, next_due) {
            (Some(x), Some(d)) => x.min(d),
            (Some(x), None) => x,
            (None, Some(d)) => d,
            (None, None) => break,
        };
        if now > t0 + until {
            break;
        }
        if next_arrival == Some(now) {
            echo.push_rtp(now, &arrivals[a].1)
                .expect("browser packet accepted");
            a += 1;
            continue;
        }
        while let Some(n) = echo.poll_rtp(now, &mut out) {
            sent.push(out[..n].to_vec());
        }
    }
    sent
}

/// Decodes echoed RTP the way the browser would.
fn decode_all(packets: &[Vec<u8>]) -> Vec<i16> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = Vec::new();
    let mut frame = [0i16; 5760];
    for p in packets {
        let view = rtp::Packet::new_checked(&p[..]).expect("echo sends valid RTP");
        let n = dec
            .decode(view.payload(), &mut frame, false)
            .expect("decodes");
        pcm.extend_from_slice(&frame[..n]);
    }
    pcm
}

/// Power of `freq` in `pcm` (Goertzel).
fn goertzel(pcm: &[i16], rate: f64, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The dominant frequency between 100 Hz and 4 kHz: a 20 Hz scan, then 1 Hz around the peak.
fn dominant_frequency(pcm: &[i16], rate: f64) -> f64 {
    let peak = |from: f64, to: f64, step: f64| {
        let mut best = (from, 0.0);
        let mut f = from;
        while f <= to {
            let p = goertzel(pcm, rate, f);
            if p > best.1 {
                best = (f, p);
            }
            f += step;
        }
        best.0
    };
    let coarse = peak(100.0, 4000.0, 20.0);
    peak(coarse - 20.0, coarse + 20.0, 1.0)
}

fn echo_config(pcm_rate: SampleRate) -> EchoConfig {
    EchoConfig {
        payload_type: PT,
        pcm_rate,
        opus_complexity: 5,
        ssrc: OUR_SSRC,
        initial_sequence: 40_000,
        initial_timestamp: 7,
    }
}

fn tone_through_echo(freq: f64, pcm_rate: SampleRate) {
    let t0 = base();
    let packets = browser_packets(freq, 100, 65_500);
    // 20 ms apart with a little jitter; packets 30 and 31 swapped; packet 50 lost.
    let mut arrivals: Vec<(Duration, Vec<u8>)> = packets
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 50)
        .map(|(i, p)| {
            let jitter = (i * 7919 % 9) as u64;
            let at = match i {
                30 => 31 * 20 + 3,
                31 => 30 * 20 + 9,
                _ => i as u64 * 20 + jitter,
            };
            (Duration::from_millis(at), p)
        })
        .collect();
    arrivals.sort_by_key(|(at, _)| *at);

    let mut echo = Echo::new(echo_config(pcm_rate)).expect("echo set up");
    let sent = run_echo(&mut echo, t0, &arrivals, Duration::from_secs(3));

    // 99 packets arrived, one was lost and rebuilt, a few frames concealed at the end.
    assert!(
        (100..=106).contains(&sent.len()),
        "{} packets echoed",
        sent.len()
    );
    let stats = *echo.stats();
    assert_eq!(stats.fec_frames, 1, "{stats:?}");
    assert_eq!(stats.decode_errors + stats.encode_errors, 0, "{stats:?}");
    let js = *echo.jitter_stats();
    assert_eq!((js.late, js.lost, js.played), (0, 1, 99), "{js:?}");

    // Our SSRC, continuous sequence numbers and timestamps, marker on the first only.
    for (k, p) in sent.iter().enumerate() {
        let v = rtp::Packet::new_checked(&p[..]).expect("valid RTP");
        assert_eq!(v.ssrc(), OUR_SSRC);
        assert_eq!(v.payload_type(), PT);
        assert_eq!(v.sequence_number(), 40_000u16.wrapping_add(k as u16));
        assert_eq!(v.timestamp(), 7 + 960 * k as u32);
        assert_eq!(v.marker(), k == 0, "marker on packet {k}");
    }

    let pcm = decode_all(&sent);
    // Skip the codec start-up, stop before the concealed tail.
    let body = &pcm[10 * FRAME..95 * FRAME];
    let f = dominant_frequency(body, 48_000.0);
    let rms = (body.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / body.len() as f64).sqrt();
    assert!(
        (f - freq).abs() <= 20.0,
        "{pcm_rate:?}: sent {freq} Hz, echoed {f} Hz"
    );
    eprintln!("{pcm_rate:?}: sent {freq} Hz, echoed {f} Hz, RMS {rms:.0}, {stats:?}");
    // The tone's RMS is 7071; the echo must carry most of it.
    assert!(rms > 3_000.0, "{pcm_rate:?}: echoed RMS {rms:.0}");
}

#[test]
fn echo_returns_440_hz_at_48_khz() {
    tone_through_echo(440.0, SampleRate::Hz48000);
}

#[test]
fn echo_returns_1000_hz_at_48_khz() {
    tone_through_echo(1000.0, SampleRate::Hz48000);
}

#[test]
fn echo_returns_440_hz_through_the_8_khz_transcoding_point() {
    tone_through_echo(440.0, SampleRate::Hz8000);
}

#[test]
fn echo_returns_1000_hz_through_the_8_khz_transcoding_point() {
    tone_through_echo(1000.0, SampleRate::Hz8000);
}

#[test]
fn a_pause_starts_a_new_talkspurt_with_marker_and_timestamp_jump() {
    let t0 = base();
    let first = browser_packets(440.0, 25, 10);
    let second = browser_packets(440.0, 25, 35);
    let mut arrivals: Vec<(Duration, Vec<u8>)> = Vec::new();
    for (i, p) in first.into_iter().enumerate() {
        arrivals.push((Duration::from_millis(i as u64 * 20), p));
    }
    // One second of silence suppression, then the next talkspurt.
    for (i, p) in second.into_iter().enumerate() {
        arrivals.push((Duration::from_millis(1_500 + i as u64 * 20), p));
    }
    let mut echo = Echo::new(echo_config(SampleRate::Hz48000)).expect("echo set up");
    let sent = run_echo(&mut echo, t0, &arrivals, Duration::from_secs(4));
    let views: Vec<rtp::Header> = sent
        .iter()
        .map(|p| rtp::Header::parse(&rtp::Packet::new_checked(&p[..]).expect("valid")))
        .collect();
    let markers: Vec<usize> = (0..views.len()).filter(|&k| views[k].marker).collect();
    assert_eq!(markers.len(), 2, "{markers:?}");
    let k = markers[1];
    assert!(
        views
            .windows(2)
            .all(|w| w[1].sequence_number == w[0].sequence_number.wrapping_add(1))
    );
    let jump = views[k].timestamp.wrapping_sub(views[k - 1].timestamp);
    // The gap between the last packet before the pause and the first after it is about
    // 1.5 s - 25 * 20 ms - the concealed tail: far more than one frame.
    assert!(jump > 30 * 960 && jump < 60 * 960, "timestamp jump {jump}");
    assert_eq!(jump % 960, 0);
}

#[test]
fn other_payload_types_and_garbage_are_refused_without_harm() {
    let t0 = base();
    let mut echo = Echo::new(echo_config(SampleRate::Hz48000)).expect("echo set up");
    // telephone-event (DTMF) on the same stream.
    let mut dtmf = [0u8; 16];
    rtp::Header {
        marker: true,
        payload_type: 126,
        sequence_number: 1,
        timestamp: 0,
        ssrc: BROWSER_SSRC,
    }
    .emit(&mut dtmf)
    .expect("header");
    assert_eq!(echo.push_rtp(t0, &dtmf), Err(PushError::PayloadType(126)));
    assert!(matches!(
        echo.push_rtp(t0, &[0x80, 0x6f, 0, 1]),
        Err(PushError::Malformed(_))
    ));
    // A corrupt Opus payload is concealed, not sent on as garbage or a panic.
    let mut bad = [0u8; 20];
    rtp::Header {
        marker: false,
        payload_type: PT,
        sequence_number: 2,
        timestamp: 960,
        ssrc: BROWSER_SSRC,
    }
    .emit(&mut bad)
    .expect("header");
    bad[12] = 0x03; // code-3 packet with a frame count of 0: no packet time at all
    assert_eq!(echo.push_rtp(t0, &bad[..14]), Err(PushError::PacketTime));
    // code 2 (two 20 ms SILK frames) whose first frame's length runs past the end: its
    // packet time reads, its audio does not decode
    bad[12] = 0x0a;
    bad[13] = 0xfb;
    echo.push_rtp(t0, &bad[..14])
        .expect("stored; decoding happens later");
    assert_eq!(echo.poll_timeout(), Some(t0 + Duration::from_millis(40)));
    let mut out = [0u8; MAX_RTP_OUT];
    let n = echo
        .poll_rtp(t0 + Duration::from_millis(40), &mut out)
        .expect("a concealed frame goes out");
    assert!(n > rtp::HEADER_LEN);
    assert_eq!(echo.stats().decode_errors, 1);
}

#[test]
fn random_opus_payloads_never_panic_and_output_stays_well_formed() {
    let t0 = base();
    let mut echo = Echo::new(echo_config(SampleRate::Hz8000)).expect("echo set up");
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut packet = [0u8; 200];
    let mut out = [0u8; MAX_RTP_OUT];
    let mut sent = 0u32;
    for k in 0..1_000u32 {
        let now = t0 + Duration::from_millis(u64::from(k) * 20);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 13 + (x % 180) as usize;
        rtp::Header {
            marker: false,
            payload_type: PT,
            sequence_number: k as u16,
            timestamp: k * 960,
            ssrc: BROWSER_SSRC,
        }
        .emit(&mut packet)
        .expect("header");
        for (i, b) in packet[12..len].iter_mut().enumerate() {
            *b = (x >> ((i % 8) * 8)) as u8 ^ (i as u8);
        }
        let _ = echo.push_rtp(now, &packet[..len]);
        while let Some(n) = echo.poll_rtp(now, &mut out) {
            let p = rtp::Packet::new_checked(&out[..n]).expect("valid RTP out");
            assert_eq!(p.ssrc(), OUR_SSRC);
            sent += 1;
        }
    }
    // Every frame goes out, decodable or concealed.
    assert!(sent >= 990, "{sent}");
    let s = echo.stats();
    assert!(
        s.decode_errors > 0,
        "random bytes include invalid Opus: {s:?}"
    );
}
