//! srgate's RTMP publisher against a real server: nginx with Debian's `libnginx-mod-rtmp`.
//!
//! The test is the shell: a plain blocking `TcpStream` on loopback carries what the sans-IO
//! `Publisher` says. Three seconds of a 1 kHz tone at 8 kHz (a G.711 call's rate) are
//! encoded to AAC-LC, with 100 ms of pushed silence in the middle, and published in real
//! time. `ffprobe` reads the live stream back and must see an AAC track; nginx records the
//! stream, and `ffmpeg` decodes the recording, whose dominant frequency must be 1 kHz and
//! whose length must be the three seconds sent.
#![cfg(feature = "aac")]
#![allow(clippy::disallowed_methods)] // a real server on a real clock: Instant::now belongs here

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::nginx_rtmp::{self, NginxRtmp};
use common::process::Process;
use common::{Deadline, TestDir, audio};
use srgate::media::codec::SampleRate;
use srgate::media::codec::aac::{AacEncoder, DEFAULT_BITRATE};
use srgate::rtmp::{self, Event, Publisher, PublisherConfig, RtmpUrl};

/// Writes what the publisher has to send, then reads what the server sent (waiting at most
/// the socket's read timeout), and returns the events that followed.
fn pump(socket: &mut TcpStream, publisher: &mut Publisher) -> Vec<Event> {
    while let Some(bytes) = publisher.poll_transmit() {
        let n = bytes.len();
        socket.write_all(bytes).expect("writing to nginx");
        publisher.advance_transmit(n);
    }
    let mut buf = [0u8; 8192];
    match socket.read(&mut buf) {
        Ok(0) => publisher.handle_eof(),
        Ok(n) => {
            if let Err(e) = publisher.handle_input(&buf[..n]) {
                eprintln!("publisher: {e}");
            }
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => panic!("reading from nginx: {e}"),
    }
    // what the input made the publisher say goes out at once
    while let Some(bytes) = publisher.poll_transmit() {
        let n = bytes.len();
        socket.write_all(bytes).expect("writing to nginx");
        publisher.advance_transmit(n);
    }
    std::iter::from_fn(|| publisher.poll_event()).collect()
}

fn tone_frame(index: usize) -> [i16; 160] {
    let mut pcm = [0i16; 160];
    for (i, s) in pcm.iter_mut().enumerate() {
        let t = (index * 160 + i) as f64 / 8000.0;
        *s = (10_000.0 * (std::f64::consts::TAU * 1000.0 * t).sin()) as i16;
    }
    pcm
}

#[test]
fn publishes_an_aac_tone_that_nginx_rtmp_serves_and_records() {
    let peers = [common::NGINX, common::FFMPEG, common::FFPROBE];
    if !common::peers_available(&peers) || !nginx_rtmp::module_available() {
        return;
    }
    let dir = TestDir::new("rtmp_publish");
    let mut nginx = NginxRtmp::start(dir.path());

    let url = RtmpUrl::parse(&nginx.url(), "tone").unwrap();
    let mut publisher = Publisher::new(PublisherConfig::new(&url, 0x5eed));
    let mut socket = TcpStream::connect(("127.0.0.1", url.port)).expect("connecting to nginx");
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    socket.set_nodelay(true).unwrap();

    let deadline = Deadline::after(Duration::from_secs(10));
    let mut seen = Vec::new();
    while !seen.contains(&Event::Publishing) {
        assert!(
            !deadline.passed(),
            "no Publishing within 10 s: {seen:?}\n{}",
            nginx.output()
        );
        let events = pump(&mut socket, &mut publisher);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Error(_) | Event::Closed)),
            "{events:?}"
        );
        seen.extend(events);
    }
    assert_eq!(seen, [Event::Connected, Event::Publishing]);

    let mut encoder = AacEncoder::new(SampleRate::Hz8000, DEFAULT_BITRATE).unwrap();
    publisher
        .send_metadata(&[
            ("audiocodecid", rtmp::FLV_AUDIO_AAC),
            ("audiosamplerate", 48_000.0),
            ("audiosamplesize", 16.0),
            ("audiodatarate", f64::from(DEFAULT_BITRATE) / 1000.0),
        ])
        .unwrap();
    publisher
        .send_audio(
            0,
            &[&rtmp::AAC_SEQUENCE_HEADER, encoder.audio_specific_config()],
        )
        .unwrap();

    // a player joins the live stream while it is being published
    let mut probe: Option<Process> = None;
    let started = Instant::now();
    let frames = 150; // 3 s of 20 ms frames
    let mut sent = 0;
    for index in 0..frames {
        if (70..75).contains(&index) {
            encoder.push_silence().unwrap();
        } else {
            encoder.push_pcm(&tone_frame(index)).unwrap();
        }
        while let Some(frame) = encoder.poll_frame() {
            let frame = frame.unwrap();
            publisher
                .send_audio(frame.timestamp_ms(), &[&rtmp::AAC_RAW, frame.data])
                .unwrap();
            sent += 1;
        }
        let events = pump(&mut socket, &mut publisher);
        assert!(events.is_empty(), "{events:?}\n{}", nginx.output());
        if index == 5 {
            probe = Some(
                Process::spawn(
                    "ffprobe",
                    Command::new("ffprobe")
                        .args(["-v", "error", "-rw_timeout", "5000000"])
                        // audio only: do not wait the default 5 s for a video track
                        .args(["-analyzeduration", "1000000"])
                        .args([
                            "-show_entries",
                            "stream=codec_type,codec_name,sample_rate,channels",
                        ])
                        .args(["-of", "default=noprint_wrappers=1"])
                        .arg(format!("{}tone", nginx.url())),
                    dir.path(),
                )
                .expect("ffprobe starts"),
            );
        }
        // real time: frame `index` ends (index + 1) × 20 ms after the start
        let due = started + Duration::from_millis(20 * (index as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    assert_eq!(sent, frames * 960 / 1024);

    let mut probe = probe.expect("ffprobe was started");
    let status = probe.wait_exit(Duration::from_secs(10));
    let probed = probe.stdout_text();
    assert!(
        status.is_some_and(|s| s.success()) && probed.contains("codec_name=aac"),
        "ffprobe of the live stream: {status:?}\n{}",
        probe.output()
    );
    assert!(probed.contains("sample_rate=48000"), "{probed}");
    assert!(probed.contains("channels=1"), "{probed}");

    publisher.close().unwrap();
    let deadline = Deadline::after(Duration::from_secs(5));
    let mut end = Vec::new();
    while !end.contains(&Event::Closed) {
        assert!(!deadline.passed(), "no Closed within 5 s: {end:?}");
        end.extend(pump(&mut socket, &mut publisher));
    }
    assert_eq!(end, [Event::Closed]);
    drop(socket);

    // nginx closes the recording when the publisher has gone
    let flv = nginx.record_dir.join("tone.flv");
    let wav = dir.join("tone.wav");
    let decoded = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&flv)
            .args(["-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le"])
            .arg(&wav)
            .status()
            .ok()?;
        status.success().then_some(())
    });
    nginx.stop();
    assert!(
        decoded.is_some(),
        "ffmpeg could not decode {}\n{}",
        flv.display(),
        nginx.output()
    );
    let (pcm, rate) = audio::read_wav(&wav).expect("ffmpeg wrote a WAV");
    assert_eq!(rate, 48_000);
    let seconds = pcm.len() as f64 / 48_000.0;
    assert!((2.8..=3.2).contains(&seconds), "recorded {seconds} s");
    let frequency = audio::dominant_frequency(&pcm, rate);
    assert!(
        audio::close_to(frequency, 1000.0),
        "dominant frequency {frequency} Hz"
    );
    let level = audio::rms_dbfs(&pcm[4800..]);
    assert!(level > -20.0, "the tone is there: {level} dBFS");
    eprintln!("recorded {seconds:.2} s, dominant {frequency} Hz, {level:.1} dBFS; live: {probed}");
}
