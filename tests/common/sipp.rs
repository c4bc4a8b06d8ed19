//! SIPp (Debian package sip-tester, v3.6.1) running one of our scenarios in tests/sipp/.
//!
//! Every run makes one call (`-m 1`) from its own free port on 127.0.0.1, with stdin closed,
//! in its own folder (so `-trace_err`/`-trace_msg` logs can be shown on failure), and is
//! killed by its PID if it outlives its bound. SIPp exits 0 only when every call succeeded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::net::{free_ports, wait_port_bound};
use super::process::Process;
use super::{find_binary, repo_path};

/// Per-message receive bound given to SIPp unless the caller passes `-recv_timeout`:
/// a lost answer fails the call instead of hanging until our outer bound.
const RECV_TIMEOUT_MS: &str = "5000";

pub struct Sipp {
    process: Process,
    dir: PathBuf,
    scenario: String,
    /// The port SIPp sends from and listens on.
    pub local_port: u16,
    command_line: String,
}

/// The outcome of a finished (or killed) SIPp run.
#[derive(Debug)]
pub struct SippRun {
    /// `None` when SIPp outlived its bound and was killed.
    pub status: Option<ExitStatus>,
    /// What SIPp printed, its `*_errors.log` and `*_messages.log`, and its command line.
    pub report: String,
    /// Every SIP message sent and received, from `*_messages.log`.
    pub messages: String,
}

impl SippRun {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    /// Panics with SIPp's report unless every call succeeded.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.succeeded(),
            "{what}: SIPp failed ({})\n{}",
            match self.status {
                Some(status) => status.to_string(),
                None => "killed after its time bound".to_owned(),
            },
            self.report
        );
    }
}

impl Sipp {
    /// The path of a scenario in tests/sipp/.
    pub fn scenario(name: &str) -> PathBuf {
        repo_path(&format!("tests/sipp/{name}"))
    }

    /// Starts `sipp -sf tests/sipp/SCENARIO ARGS` in a new sub-folder of `dir` and returns
    /// at once. `args` carries the remote address (for a UAC) and scenario keys.
    pub fn spawn(scenario: &str, args: &[&str], dir: &Path) -> Sipp {
        let [local_port] = free_ports::<1>();
        let scenario_path = Sipp::scenario(scenario);
        assert!(
            scenario_path.is_file(),
            "no scenario {}",
            scenario_path.display()
        );
        let label: String = scenario
            .trim_end_matches(".xml")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let run_dir = dir.join(format!("sipp-{label}-{local_port}"));
        std::fs::create_dir_all(&run_dir).expect("the test dir is writable");

        let local_port_text = local_port.to_string();
        let mut full_args: Vec<&str> = vec![
            "-sf",
            scenario_path
                .to_str()
                .expect("the repository path is UTF-8"),
            "-i",
            "127.0.0.1",
            "-p",
            &local_port_text,
            "-m",
            "1",
            "-nostdin",
            "-trace_err",
            "-trace_msg",
        ];
        if !args.contains(&"-recv_timeout") {
            full_args.extend(["-recv_timeout", RECV_TIMEOUT_MS]);
        }
        full_args.extend_from_slice(args);
        let binary = find_binary("sipp").unwrap_or_else(|| PathBuf::from("sipp"));
        let command_line = format!("{} {}", binary.display(), full_args.join(" "));
        let process = Process::spawn(
            "sipp",
            Command::new(&binary).args(&full_args).current_dir(&run_dir),
            &run_dir,
        )
        .unwrap_or_else(|err| panic!("cannot start {command_line}: {err}"));
        Sipp {
            process,
            dir: run_dir,
            scenario: scenario.to_owned(),
            local_port,
            command_line,
        }
    }

    /// Runs a scenario to its end, bounded by `within` (then killed by PID).
    pub fn run(scenario: &str, args: &[&str], dir: &Path, within: Duration) -> SippRun {
        Sipp::spawn(scenario, args, dir).wait(within)
    }

    /// Runs a client scenario against `remote` (e.g. srgate's SIP address).
    pub fn call(
        scenario: &str,
        remote: SocketAddr,
        args: &[&str],
        dir: &Path,
        within: Duration,
    ) -> SippRun {
        let remote = remote.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.push(&remote);
        Sipp::run(scenario, &all, dir, within)
    }

    /// The folder SIPp runs in (its working directory: relative file names in a
    /// scenario, e.g. an `rtp_stream` file, are found here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn local_addr(&self) -> SocketAddr {
        super::net::local(self.local_port)
    }

    /// Waits until SIPp has bound its UDP port (a server scenario is ready to receive).
    pub fn wait_listening(&self, within: Duration) -> bool {
        wait_port_bound(self.local_port, true, within)
    }

    /// Waits for SIPp to finish, up to `within`; kills it by PID after that.
    pub fn wait(mut self, within: Duration) -> SippRun {
        let status = self.process.wait_exit(within);
        if status.is_none() {
            self.process.terminate(Duration::from_secs(1));
        }
        let messages = self.read_logs("_messages.log");
        let report = format!(
            "scenario {} in {}\ncommand: {}\n{}\n----- SIPp errors -----\n{}\n----- SIPp messages -----\n{}",
            self.scenario,
            self.dir.display(),
            self.command_line,
            self.process.output(),
            self.read_logs("_errors.log"),
            messages
        );
        SippRun {
            status,
            report,
            messages,
        }
    }

    fn read_logs(&self, suffix: &str) -> String {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return String::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.ends_with(suffix))
            })
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
