//! A video phone's camera for the video tests: ffmpeg's test card (320×240 at 15 fps,
//! libx264 baseline, a key frame every 2 s) as H.264 RTP, and a relay standing for the
//! phone's network that holds the first second back, so the receiver starts in the middle
//! of a group of pictures and must ask for a key frame.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use super::process::Process;
use super::{Deadline, find_binary};

/// Starts ffmpeg sending `seconds` of the test card as RTP (payload type 96) to
/// 127.0.0.1:`to`.
pub fn start(dir: &Path, to: u16, seconds: u32) -> Process {
    let seconds = seconds.to_string();
    let target = format!("rtp://127.0.0.1:{to}");
    Process::spawn(
        "ffmpeg-camera",
        Command::new(find_binary("ffmpeg").expect("ffmpeg")).args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=15",
            "-t",
            &seconds,
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rtp",
            "-payload_type",
            "96",
            &target,
        ]),
        dir,
    )
    .expect("ffmpeg starts")
}

/// What arrives on 127.0.0.1:`camera` goes to srgate's `to` from 127.0.0.1:`from` (the
/// phone's SDP port), except for the first second. Runs until nothing came for 2 s (at
/// most 30 s); returns the packets sent on.
#[allow(dead_code)]
pub fn relay(camera: u16, from: u16, to: u16) -> JoinHandle<usize> {
    relay_with(camera, from, move || Some(to))
}

/// Like [`relay`], to the port written in `port_file` (read again every 300 ms): a phone
/// whose SDP peer changes while it sends (a ring group's preview handed on).
#[allow(dead_code)]
pub fn relay_following(camera: u16, from: u16, port_file: PathBuf) -> JoinHandle<usize> {
    let mut port = None;
    let mut read = Deadline::after(Duration::ZERO);
    relay_with(camera, from, move || {
        if read.passed() {
            read = Deadline::after(Duration::from_millis(300));
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
            {
                port = Some(p);
            }
        }
        port
    })
}

fn relay_with(
    camera: u16,
    from: u16,
    mut to: impl FnMut() -> Option<u16> + Send + 'static,
) -> JoinHandle<usize> {
    let inbound = UdpSocket::bind(("127.0.0.1", camera)).expect("the camera's port");
    let outbound = UdpSocket::bind(("127.0.0.1", from)).expect("the phone's port");
    inbound
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("socket");
    std::thread::spawn(move || {
        let end = Deadline::after(Duration::from_secs(30));
        let held_back = Deadline::after(Duration::from_secs(1));
        let mut buf = [0u8; 2048];
        let mut sent = 0;
        // bounded: a packet (or the 2 s timeout) per round, 30 s in all
        while !end.passed() {
            let Ok(n) = inbound.recv(&mut buf) else { break };
            if held_back.passed()
                && let Some(port) = to()
            {
                let _ = outbound.send_to(&buf[..n], ("127.0.0.1", port));
                sent += 1;
            }
        }
        sent
    })
}
