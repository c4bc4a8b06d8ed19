//! Harness shared by srgate's integration tests (`tests/sip_*.rs`).
//!
//! The tests drive real processes over loopback: srgate itself (the binary Cargo built for
//! this test run), SIPp, Kamailio and baresip. Rules every helper keeps:
//!
//! - only 127.0.0.1 is ever used, and every port is picked free at run time;
//! - every wait is bounded by a [`Deadline`];
//! - every process is stopped by its own PID (SIGTERM, then SIGKILL after a bound) when its
//!   handle is dropped, and its output is printed when the test failed;
//! - a missing peer binary skips the test with a message, except when the environment
//!   variable `CI` is set: then it is a failure ([`peers_available`]).
#![allow(dead_code, unused_imports)] // each test binary uses a different part of this harness
#![allow(clippy::disallowed_methods)] // real processes on a real clock: Instant::now belongs here

pub mod audio;
pub mod baresip;
pub mod calls;
pub mod camera;
pub mod http;
pub mod kamailio;
pub mod net;
pub mod netns;
pub mod nft;
pub mod nginx_rtmp;
pub mod pcap;
pub mod phone;
pub mod process;
pub mod sip_phone;
pub mod sipp;
pub mod srgate;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use baresip::Baresip;
pub use kamailio::Kamailio;
pub use net::free_ports;
pub use sipp::{Sipp, SippRun};
pub use srgate::{GatewayConfig, Health, Srgate};

/// A point in time after which a bounded wait gives up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(bound: Duration) -> Self {
        Deadline(Instant::now() + bound)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Measures how long something took, for assertions on timing.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Polls `probe` every `every` until it yields a value or `within` has passed.
pub fn wait_for<T>(
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Deadline::after(within);
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if deadline.passed() {
            return None;
        }
        std::thread::sleep(every.min(deadline.remaining()));
    }
}

/// A program the tests talk to, and the Debian package that provides it.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub binary: &'static str,
    pub package: &'static str,
}

pub const SIPP: Peer = Peer {
    binary: "sipp",
    package: "sip-tester",
};
pub const KAMAILIO: Peer = Peer {
    binary: "kamailio",
    package: "kamailio",
};
pub const BARESIP: Peer = Peer {
    binary: "baresip",
    package: "baresip-core",
};
pub const NGINX: Peer = Peer {
    binary: "nginx",
    package: "nginx",
};
pub const FFMPEG: Peer = Peer {
    binary: "ffmpeg",
    package: "ffmpeg",
};
pub const FFPROBE: Peer = Peer {
    binary: "ffprobe",
    package: "ffmpeg",
};

/// Where `binary` is installed: `PATH` first, then the sbin folders (Kamailio lives in
/// /usr/sbin, which a non-root `PATH` may lack).
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// True when every peer is installed. Otherwise prints why the test is skipped and returns
/// false, or panics when `CI` is set (CI must run every test, so a missing peer is a failure).
pub fn peers_available(peers: &[Peer]) -> bool {
    let missing: Vec<String> = peers
        .iter()
        .filter(|peer| find_binary(peer.binary).is_none())
        .map(|peer| format!("{} (Debian package {})", peer.binary, peer.package))
        .collect();
    if missing.is_empty() {
        return true;
    }
    peer_missing(&format!(
        "missing test peer(s): {}; scripts/test installs them",
        missing.join(", ")
    ))
}

/// Says why a test is skipped and returns false, or panics when `CI` is set.
pub fn peer_missing(why: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set, so a missing peer fails the test)");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// A file or folder of the repository (tests/sipp/..., tests/peers/...).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A scratch folder for one test under Cargo's target/tmp. Removed when the test passes,
/// kept (and named on stderr) when it fails, so its logs can be read afterwards.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let pid = std::process::id();
        // folders kept by earlier runs of this test are stale now: keep only the newest
        let ours = format!("{test}-{pid}-");
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let earlier_run = name
                .strip_prefix(&format!("{test}-"))
                .is_some_and(|rest| rest.split('-').count() == 2 && !name.starts_with(&ours));
            if earlier_run {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let path = root.join(format!(
            "{test}-{pid}-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("target/tmp is writable");
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
