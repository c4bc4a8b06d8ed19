//! `scripts/srgate`, the rtx.sh-style control script (issue 5): start/status/stop with
//! their LSB exit codes, and the watchdog bringing back a gateway killed with SIGKILL.
//!
//! The script runs the srgate binary Cargo built for this test run (`SRGATE_BIN`), on a
//! config with free loopback ports, with its pid file in the test's own folder
//! (`SRGATE_RUN_DIR`). Every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::process::{Process, send_sigkill};
use common::{GatewayConfig, Srgate, TestDir, http, wait_for};

/// A gateway config in `dir`, its pid file, and the environment the script needs.
struct Setup {
    config: GatewayConfig,
    config_file: PathBuf,
    run_dir: PathBuf,
}

impl Setup {
    fn new(dir: &Path) -> Setup {
        let config = GatewayConfig::standalone();
        let config_file = dir.join("srgate.ini");
        std::fs::write(&config_file, config.ini(&dir.join("srgate.log")))
            .expect("the test dir is writable");
        Setup {
            config,
            config_file,
            run_dir: dir.join("run"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(common::repo_path("scripts/srgate"));
        command
            .args(args)
            .arg("-c")
            .arg(&self.config_file)
            .env("SRGATE_BIN", Srgate::binary())
            .env("SRGATE_RUN_DIR", &self.run_dir);
        command
    }

    /// Runs `scripts/srgate ACTION -c FILE` to its end (each action is bounded inside the
    /// script: start 10 s, stop 5 s + 2 s).
    fn run(&self, action: &str) -> Output {
        self.command(&[action])
            .output()
            .expect("bash runs scripts/srgate")
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.run_dir.join("srgate.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn healthy(&self) -> bool {
        http::get(self.config.api_addr(), "/health", Duration::from_secs(1))
            .is_ok_and(|response| response.status == 200 && response.body.contains("\"ok\""))
    }
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Alive and not a zombie (a SIGKILLed gateway the script started is not our child, so it
/// is reaped by init, but check the state anyway).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|line| line.starts_with("State:\tZ")))
}

#[test]
fn start_status_stop_exit_codes_and_process_gone() {
    let dir = TestDir::new("ops_control_script");
    let setup = Setup::new(dir.path());

    let status = setup.run("status");
    assert_eq!(
        code(&status),
        Some(3),
        "not started yet: {}",
        describe(&status)
    );

    let start = setup.run("start");
    assert_eq!(code(&start), Some(0), "start: {}", describe(&start));
    let stdout = String::from_utf8_lossy(&start.stdout);
    assert!(stdout.contains("log: "), "start names the log: {stdout}");
    let pid = setup.pid().expect("start wrote the pid file");
    assert!(alive(pid), "pid {pid} runs after start");
    assert!(setup.healthy(), "start reports only once /health answers");

    let again = setup.run("start");
    assert_eq!(
        code(&again),
        Some(1),
        "second start refuses: {}",
        describe(&again)
    );
    assert_eq!(setup.pid(), Some(pid), "a refused start keeps the pid file");

    let status = setup.run("status");
    assert_eq!(code(&status), Some(0), "running: {}", describe(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains(&pid.to_string()));
    // the one-shot check for cron: healthy (standalone: no account to register)
    let check = setup.run("check");
    assert_eq!(code(&check), Some(0), "check: {}", describe(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("\"registered\":null"));

    let stop = setup.run("stop");
    assert_eq!(code(&stop), Some(0), "stop: {}", describe(&stop));
    assert!(!alive(pid), "pid {pid} is gone after stop");
    assert!(setup.pid().is_none(), "stop removes the pid file");
    assert!(!setup.healthy(), "/health no longer answers");

    let status = setup.run("status");
    assert_eq!(code(&status), Some(3), "stopped: {}", describe(&status));
    let check = setup.run("check");
    assert_eq!(
        code(&check),
        Some(1),
        "check when stopped: {}",
        describe(&check)
    );
    // SRProxy's habit: `rtx.sh start SRProxy`
    let start = setup
        .command(&["start", "SRProxy"])
        .output()
        .expect("bash runs scripts/srgate");
    assert_eq!(code(&start), Some(0), "start SRProxy: {}", describe(&start));
    let stop = setup.run("stop");
    assert_eq!(code(&stop), Some(0), "stop: {}", describe(&stop));
    let stop = setup.run("stop");
    assert_eq!(
        code(&stop),
        Some(0),
        "stop when stopped: {}",
        describe(&stop)
    );

    // a pid file naming a process that is not srgate (this test) means "dead"
    std::fs::create_dir_all(&setup.run_dir).expect("run dir");
    std::fs::write(
        setup.run_dir.join("srgate.pid"),
        format!("{}\n", std::process::id()),
    )
    .expect("pid file");
    let status = setup.run("status");
    assert_eq!(
        code(&status),
        Some(1),
        "stale pid file: {}",
        describe(&status)
    );
    let stop = setup.run("stop");
    assert_eq!(
        code(&stop),
        Some(0),
        "stop clears a stale pid file: {}",
        describe(&stop)
    );
    assert!(setup.pid().is_none());
}

#[test]
fn watchdog_restarts_a_killed_gateway() {
    let dir = TestDir::new("ops_control_watchdog");
    let setup = Setup::new(dir.path());

    let mut watchdog = Process::spawn(
        "watchdog",
        &mut setup.command(&["watchdog", "-i", "1"]),
        dir.path(),
    )
    .expect("bash runs scripts/srgate watchdog");

    // the watchdog starts the gateway that is not running yet
    let first = wait_for(Duration::from_secs(8), Duration::from_millis(100), || {
        setup.pid().filter(|&pid| alive(pid) && setup.healthy())
    });
    let Some(first) = first else {
        watchdog.terminate(Duration::from_secs(2));
        let _ = setup.run("stop");
        panic!(
            "the watchdog did not start the gateway\n{}",
            watchdog.output()
        );
    };

    send_sigkill(first);
    let second = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        setup
            .pid()
            .filter(|&pid| pid != first && alive(pid) && setup.healthy())
    });
    let watchdog_output = watchdog.output();

    let (exit, in_time) = watchdog.terminate(Duration::from_secs(3));
    let stop = setup.run("stop");
    let second = second.unwrap_or_else(|| {
        panic!("the watchdog did not bring the gateway back\n{watchdog_output}")
    });
    assert!(!alive(first), "the killed gateway {first} stays dead");
    assert!(
        in_time,
        "the watchdog ends on SIGTERM\n{}",
        watchdog.output()
    );
    assert!(
        exit.success(),
        "watchdog exit {exit:?}\n{}",
        watchdog.output()
    );
    assert!(
        watchdog_output.contains("starting it"),
        "the watchdog logs what it does\n{watchdog_output}"
    );
    assert_eq!(code(&stop), Some(0), "stop: {}", describe(&stop));
    assert!(!alive(second), "the restarted gateway {second} is stopped");
}
