//! baresip (Debian package baresip-core 1.0) as a SIP phone on 127.0.0.1.
//!
//! Configured from tests/peers/baresip.config.in with one account; no audio device is
//! needed (registration only). baresip 1.0 prints a line like
//! `1001@127.0.0.1: {0/UDP/v4} 200 OK (srgate ...) [1 binding]` when its REGISTER succeeded,
//! and `reg: sip:...: 401 Unauthorized ...` (or another status) when it failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::free_ports;
use super::process::Process;
use super::{find_binary, repo_path, wait_for};

/// baresip exits by itself after this long (`-t`), whatever happens to the test.
const SELF_EXIT_AFTER: Duration = Duration::from_secs(120);

pub struct Baresip {
    process: Process,
    dir: PathBuf,
    /// The port baresip's SIP stack listens on.
    pub sip_port: u16,
}

impl Baresip {
    /// Starts baresip with one account line, e.g.
    /// `<sip:1001@127.0.0.1:5086;transport=udp>;auth_pass=pw1001;regint=60`.
    pub fn start(dir: &Path, account: &str) -> Baresip {
        let [sip_port] = free_ports::<1>();
        let dir = dir.join("baresip");
        std::fs::create_dir_all(&dir).expect("the test dir is writable");
        let template = std::fs::read_to_string(repo_path("tests/peers/baresip.config.in"))
            .expect("tests/peers/baresip.config.in is part of the repository");
        std::fs::write(
            dir.join("config"),
            template.replace("@SIP_PORT@", &sip_port.to_string()),
        )
        .expect("the test dir is writable");
        std::fs::write(dir.join("accounts"), format!("{account}\n"))
            .expect("the test dir is writable");
        // baresip creates a contacts file if missing; an empty one keeps it quiet
        std::fs::write(dir.join("contacts"), "").expect("the test dir is writable");

        let binary = find_binary("baresip").unwrap_or_else(|| PathBuf::from("baresip"));
        let process = Process::spawn(
            "baresip",
            Command::new(binary)
                .arg("-f")
                .arg(&dir)
                .arg("-t")
                .arg(SELF_EXIT_AFTER.as_secs().to_string())
                .current_dir(&dir),
            &dir,
        )
        .expect("baresip starts");
        Baresip {
            process,
            dir,
            sip_port,
        }
    }

    /// Everything baresip printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        format!(
            "{}{}",
            self.process.stdout_text(),
            self.process.stderr_text()
        )
    }

    /// Waits until baresip's output contains a line with every one of `needles`; returns
    /// that line.
    pub fn wait_for_line(&mut self, needles: &[&str], within: Duration) -> Option<String> {
        wait_for(within, Duration::from_millis(100), || {
            self.output()
                .lines()
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
                .map(str::to_owned)
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGTERM by PID (baresip un-registers on the way out), SIGKILL after 5 s.
    pub fn stop(&mut self) {
        self.process.terminate(super::process::TERM_GRACE);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("----- baresip output -----\n{}", self.output());
        }
    }
}
