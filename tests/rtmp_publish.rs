//! srgate's RTMP publisher against a real server: nginx with Debian's `libnginx-mod-rtmp`.
//!
//! The test is the shell: a plain blocking `TcpStream` on loopback carries what the sans-IO
//! `Publisher` says. Three seconds of a 1 kHz tone at 8 kHz (a G.711 call's rate) are
//! encoded to AAC-LC, with 100 ms of pushed silence in the middle, and published in real
//! time. `ffprobe` reads the live stream back and must see an AAC track; nginx records the
//! stream, and `ffmpeg` decodes the recording, whose dominant frequency must be 1 kHz and
//! whose length must be the three seconds sent. The same again over RTMPS: rustls with
//! srgate's own client configuration (`[tls] ca` = a test authority) through nginx's
//! stream module terminating TLS in front of nginx-rtmp. And once to a second server
//! implementation, ffmpeg listening (`-listen 1`), whose FLV must decode to the same.
#![cfg(feature = "aac")]
#![allow(clippy::disallowed_methods)] // a real server on a real clock: Instant::now belongs here

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nginx_rtmp::{self, NginxRtmp};
use common::process::Process;
use common::{Deadline, TestDir, audio};
use srgate::media::codec::SampleRate;
use srgate::media::codec::aac::{AacEncoder, DEFAULT_BITRATE};
use srgate::rtmp::{self, Event, Publisher, PublisherConfig, RtmpUrl};

/// Writes what the publisher has to send, then reads what the server sent (waiting at most
/// the socket's read timeout), and returns the events that followed.
fn pump(socket: &mut impl ReadWrite, publisher: &mut Publisher) -> Vec<Event> {
    write_out(socket, publisher);
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
    write_out(socket, publisher);
    std::iter::from_fn(|| publisher.poll_event()).collect()
}

/// Writes what the publisher has to send. A TLS stream still in its handshake may time
/// out reading the server's part: what is left goes on the next call.
fn write_out(socket: &mut impl ReadWrite, publisher: &mut Publisher) {
    while let Some(bytes) = publisher.poll_transmit() {
        match socket.write(bytes) {
            Ok(n) => publisher.advance_transmit(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            Err(e) => panic!("writing to nginx: {e}"),
        }
    }
    socket.flush().expect("flushing to nginx");
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A TCP connection to the URL's port on loopback, reads waiting at most 5 ms.
fn connect(url: &RtmpUrl) -> TcpStream {
    let socket = TcpStream::connect(("127.0.0.1", url.port)).expect("connecting to nginx");
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    socket
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.set_nodelay(true).unwrap();
    socket
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
fn publishes_an_aac_tone_over_rtmp_that_nginx_serves_and_records() {
    let peers = [common::NGINX, common::FFMPEG, common::FFPROBE];
    if !common::peers_available(&peers)
        || !nginx_rtmp::module_available(nginx_rtmp::RTMP_MODULE, "libnginx-mod-rtmp")
    {
        return;
    }
    let dir = TestDir::new("rtmp_publish");
    let mut nginx = NginxRtmp::start(dir.path(), None);
    let url = RtmpUrl::parse(&nginx.url(), "tone").unwrap();
    assert!(!url.tls);
    let mut socket = connect(&url);
    publish_tone_and_check(&mut nginx, dir.path(), &url, &mut socket);
}

#[test]
fn publishes_over_rtmps_through_a_tls_terminator() {
    let peers = [common::NGINX, common::FFMPEG, common::FFPROBE];
    if !common::peers_available(&peers)
        || !nginx_rtmp::module_available(nginx_rtmp::RTMP_MODULE, "libnginx-mod-rtmp")
        || !nginx_rtmp::module_available(nginx_rtmp::STREAM_MODULE, "libnginx-mod-stream")
    {
        return;
    }
    let dir = TestDir::new("rtmps_publish");
    let pki = common::tls::test_pki(dir.path(), "rtmps");
    let mut nginx = NginxRtmp::start(dir.path(), Some((&pki.cert, &pki.key)));
    let url = RtmpUrl::parse(&nginx.tls_url().unwrap(), "tone").unwrap();
    assert!(url.tls);

    // a server whose certificate srgate does not trust is refused in the TLS handshake
    let system = srgate::io::tls_client_config(None);
    if let Ok(config) = system {
        let name = rustls_pki_types::ServerName::try_from(url.host.clone()).unwrap();
        let tls = rustls::ClientConnection::new(config, name).unwrap();
        let mut stream = rustls::StreamOwned::new(tls, connect(&url));
        let publisher = Publisher::new(PublisherConfig::new(&url, 1));
        let bytes = publisher.poll_transmit().unwrap().to_vec();
        // reads time out every 5 ms: retry those until the handshake's own verdict
        let deadline = Deadline::after(Duration::from_secs(5));
        let err = loop {
            assert!(
                !deadline.passed(),
                "the TLS handshake did not end within 5 s"
            );
            let attempt = stream.write(&bytes).and_then(|_| stream.flush());
            let attempt = attempt.and_then(|()| stream.read(&mut [0u8; 16]).map(|_| ()));
            match attempt {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => break e,
                Ok(()) => panic!("an untrusted certificate must fail the handshake"),
            }
        };
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    let config = srgate::io::tls_client_config(Some(&pki.ca)).expect("the test CA loads");
    let name = rustls_pki_types::ServerName::try_from(url.host.clone()).unwrap();
    let tls = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, connect(&url));
    publish_tone_and_check(&mut nginx, dir.path(), &url, &mut stream);
}

/// A second, independent server implementation: ffmpeg listening for one publisher and
/// writing what it gets to an FLV file.
#[test]
fn publishes_to_ffmpeg_as_rtmp_server() {
    if !common::peers_available(&[common::FFMPEG]) {
        return;
    }
    let dir = TestDir::new("rtmp_ffmpeg");
    let [port] = common::free_ports::<1>();
    let flv = dir.join("ffmpeg.flv");
    let mut server = Process::spawn(
        "ffmpeg-server",
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-listen", "1", "-timeout", "10", "-i"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/tone"))
            .args(["-c", "copy"])
            .arg(&flv),
        dir.path(),
    )
    .expect("ffmpeg starts");
    assert!(
        common::net::wait_port_bound(port, false, Duration::from_secs(10)),
        "ffmpeg did not listen\n{}",
        server.output()
    );
    let url = RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/"), "tone").unwrap();
    let mut socket = connect(&url);
    publish_tone(&url, &mut socket, |_| {});
    drop(socket);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg as server: {status:?}\n{}",
        server.output()
    );
    let summary = decode(&flv, &dir.join("ffmpeg.wav"))
        .unwrap_or_else(|| panic!("ffmpeg could not decode its recording\n{}", server.output()));
    eprintln!("{summary}");
}

/// Publishes 3 s of the tone on `socket` in real time, calling `at_frame` after each
/// 20 ms frame, and ends the session cleanly.
fn publish_tone(url: &RtmpUrl, socket: &mut impl ReadWrite, mut at_frame: impl FnMut(usize)) {
    let mut publisher = Publisher::new(PublisherConfig::new(url, 0x5eed));
    let deadline = Deadline::after(Duration::from_secs(10));
    let mut seen = Vec::new();
    while !seen.contains(&Event::Publishing) {
        assert!(!deadline.passed(), "no Publishing within 10 s: {seen:?}");
        let events = pump(socket, &mut publisher);
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
        let events = pump(socket, &mut publisher);
        assert!(events.is_empty(), "{events:?}");
        at_frame(index);
        // real time: frame `index` ends (index + 1) × 20 ms after the start
        let due = started + Duration::from_millis(20 * (index as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    assert_eq!(sent, frames * 960 / 1024);

    publisher.close().unwrap();
    let deadline = Deadline::after(Duration::from_secs(5));
    let mut end = Vec::new();
    while !end.contains(&Event::Closed) {
        assert!(!deadline.passed(), "no Closed within 5 s: {end:?}");
        end.extend(pump(socket, &mut publisher));
    }
    assert_eq!(end, [Event::Closed]);
}

/// Publishes the tone to nginx with a player joining the live stream, then checks what the
/// player saw and what nginx recorded.
fn publish_tone_and_check(
    nginx: &mut NginxRtmp,
    dir: &Path,
    url: &RtmpUrl,
    socket: &mut impl ReadWrite,
) {
    let live = format!("{}tone", nginx.url());
    let mut probe: Option<Process> = None;
    publish_tone(url, socket, |index| {
        if index == 5 {
            probe = Some(nginx_rtmp::probe_live(&live, dir));
        }
    });

    let mut probe = probe.expect("ffprobe was started");
    let status = probe.wait_exit(Duration::from_secs(10));
    let probed = probe.stdout_text();
    assert!(
        status.is_some_and(|s| s.success()) && probed.contains("codec_name=aac"),
        "ffprobe of the live stream: {status:?}\n{}\n{}",
        probe.output(),
        nginx.output()
    );
    assert!(probed.contains("sample_rate=48000"), "{probed}");
    assert!(probed.contains("channels=1"), "{probed}");

    // nginx closes the recording when the publisher has gone
    let flv = nginx.record_dir.join("tone.flv");
    let decoded = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        decode(&flv, &dir.join("tone.wav"))
    });
    nginx.stop();
    let Some(summary) = decoded else {
        panic!(
            "ffmpeg could not decode {}\n{}",
            flv.display(),
            nginx.output()
        );
    };
    eprintln!("{summary}; live: {probed}");
}

/// Decodes `flv` to `wav` with ffmpeg and checks the tone: 3 s, 1 kHz, loud enough.
/// `None` while ffmpeg cannot read the file (yet).
fn decode(flv: &Path, wav: &Path) -> Option<String> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(flv)
        .args(["-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le"])
        .arg(wav)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let (pcm, rate) = audio::read_wav(wav).expect("ffmpeg wrote a WAV");
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
    Some(format!(
        "recorded {seconds:.2} s, dominant {frequency} Hz, {level:.1} dBFS"
    ))
}
