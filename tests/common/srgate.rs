//! srgate under test: its configuration file, its process and its `/health` answer.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::net::{free_ports, local, port_bound};
use super::process::Process;
use super::{Deadline, http, wait_for};

/// The proxy account srgate registers at `sip_svr` (Kamailio's db_text has it).
pub const PROXY_ACCOUNT: &str = "1000";
pub const PROXY_PASSWORD: &str = "1234";

/// How long srgate may take from spawn to a healthy `/health`.
pub const STARTUP_BOUND: Duration = Duration::from_secs(10);

/// Bound for srgate to exit after SIGTERM: the 2 s un-registering bound (README, SIP behaviour)
/// plus scheduling slack on a loaded 2-core machine.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(4);

/// An srgate configuration for one test (conf/srgate.ini keys), with free loopback
/// ports already chosen.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// `[global] sip_svr`: empty = standalone registrar.
    pub sip_svr: String,
    pub sip_port: u16,
    pub webrtc_port: u16,
    pub webrtc_udp_port: u16,
    pub api_port: u16,
    /// `[proxy] expires` in seconds.
    pub expires: u32,
    /// `[users]` (standalone registrar): name = password.
    pub users: Vec<(String, String)>,
    /// `[log] level` (0 SENSITIVE ... 5 NONE).
    pub log_level: u8,
    /// Extra INI text appended as is (for keys a single test needs).
    pub extra: String,
    /// Run another build of srgate through an emulator: (`qemu-aarch64-static`, binary).
    pub emulated: Option<(PathBuf, PathBuf)>,
    /// `[global] shards` (the WebRTC UDP port of shard i is `webrtc_udp_port + i`).
    pub shards: usize,
}

impl GatewayConfig {
    /// Standalone mode (no sip_svr) with SIP users 1001/pw1001 and 1002/pw1002.
    pub fn standalone() -> Self {
        let [sip_port, webrtc_port, webrtc_udp_port, api_port] = free_ports::<4>();
        GatewayConfig {
            sip_svr: String::new(),
            sip_port,
            webrtc_port,
            webrtc_udp_port,
            api_port,
            expires: 300,
            users: vec![
                ("1001".into(), "pw1001".into()),
                ("1002".into(), "pw1002".into()),
            ],
            log_level: 1,
            extra: String::new(),
            emulated: None,
            shards: 1,
        }
    }

    /// Proxy mode: srgate registers its proxy account 1000/1234 at `sip_svr`.
    pub fn proxy(sip_svr: SocketAddr) -> Self {
        GatewayConfig {
            sip_svr: sip_svr.to_string(),
            users: Vec::new(),
            ..GatewayConfig::standalone()
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        local(self.sip_port)
    }

    pub fn api_addr(&self) -> SocketAddr {
        local(self.api_port)
    }

    /// The INI text; the log goes to `log_file`.
    pub fn ini(&self, log_file: &Path) -> String {
        let mut ini = String::new();
        // writing to a String cannot fail
        let _ = write!(
            ini,
            "; written by srgate's integration tests\n\
             [global]\n\
             sip_svr = {sip_svr}\n\
             shards = {shards}\n\
             \n\
             [sip]\n\
             listen = 127.0.0.1:{sip_port}\n\
             domain = 127.0.0.1\n\
             \n\
             [proxy]\n\
             on = 1\n\
             sip_account = {PROXY_ACCOUNT}\n\
             sip_pwd = {PROXY_PASSWORD}\n\
             expires = {expires}\n\
             \n\
             [users]\n",
            sip_svr = self.sip_svr,
            shards = self.shards,
            sip_port = self.sip_port,
            expires = self.expires,
        );
        for (name, password) in &self.users {
            let _ = writeln!(ini, "{name} = {password}");
        }
        let _ = write!(
            ini,
            "\n\
             [webrtc]\n\
             listen = 127.0.0.1:{webrtc_port}\n\
             udp = 127.0.0.1:{webrtc_udp_port}\n\
             \n\
             [api]\n\
             listen = 127.0.0.1:{api_port}\n\
             \n\
             [log]\n\
             level = {log_level}\n\
             file = {log_file}\n\
             {extra}\n",
            webrtc_port = self.webrtc_port,
            webrtc_udp_port = self.webrtc_udp_port,
            api_port = self.api_port,
            log_level = self.log_level,
            log_file = log_file.display(),
            extra = self.extra,
        );
        ini
    }
}

/// srgate's `GET /health` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub calls: u64,
    /// `None`: srgate has no proxy account (`null`).
    pub registered: Option<bool>,
}

impl Health {
    fn from_json(json: &str) -> Option<Health> {
        Some(Health {
            status: http::json_field(json, "status")?.to_owned(),
            calls: http::json_field(json, "calls")?.parse().ok()?,
            registered: match http::json_field(json, "registered")? {
                "true" => Some(true),
                "false" => Some(false),
                "null" => None,
                _ => return None,
            },
        })
    }
}

/// A running srgate, stopped (SIGTERM by PID, then SIGKILL) when dropped; its output and
/// log are printed if the test failed.
pub struct Srgate {
    pub config: GatewayConfig,
    process: Process,
    config_file: PathBuf,
    log_file: PathBuf,
}

impl Srgate {
    /// The srgate binary under test: the one Cargo built for this test run, or the file
    /// named by the environment variable `SRGATE_BIN` (e.g. a static build from
    /// `cross/build`, to run the same tests against it).
    pub fn binary() -> PathBuf {
        std::env::var_os("SRGATE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_srgate")))
    }

    /// Writes `config` into `dir`, starts `srgate -c FILE` and waits (bounded) until
    /// `/health` answers `"status":"ok"`. Panics with srgate's output if it does not.
    ///
    /// Ports are picked free before srgate binds them, and another test process may take
    /// one in between: when srgate stops at startup because its API, web or WebRTC port is
    /// in use, those are picked again and srgate started again (three tries). The SIP port
    /// is never changed (peers may have been told it).
    pub fn start(mut config: GatewayConfig, dir: &Path) -> Srgate {
        for attempt in 0..3 {
            let mut srgate = Srgate::spawn(config.clone(), dir);
            match srgate.wait_healthy(STARTUP_BOUND) {
                Ok(()) => return srgate,
                Err(why) => {
                    let output = srgate.process.output();
                    let taken = output.contains("Address already in use")
                        && ["[api] listen", "[webrtc] listen", "[webrtc] udp"]
                            .iter()
                            .any(|key| output.contains(key));
                    if !taken || attempt == 2 {
                        // Drop prints srgate's output, log and configuration
                        panic!("{why}");
                    }
                    eprintln!("srgate's port was taken by another test; starting it again");
                    drop(srgate);
                    let mut udp = free_ports::<1>()[0];
                    // shard i uses the WebRTC port + i: keep the neighbours free too
                    for _ in 0..50 {
                        if (1..config.shards as u16).all(|i| {
                            let p = udp.wrapping_add(i);
                            p > 1024 && !port_bound(p, true)
                        }) {
                            break;
                        }
                        udp = free_ports::<1>()[0];
                    }
                    let [web, api] = free_ports::<2>();
                    config.webrtc_port = web;
                    config.api_port = api;
                    config.webrtc_udp_port = udp;
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// srgate on a configuration file of its own (the demo's, say), run from `dir`;
    /// `config` names the ports that file uses, for the helpers that talk to srgate.
    /// Panics with srgate's output unless `/health` answers.
    pub fn start_file(file: &Path, config: GatewayConfig, dir: &Path) -> Srgate {
        let process = Process::spawn(
            "srgate",
            Command::new(Srgate::binary())
                .arg("-c")
                .arg(file)
                .current_dir(dir),
            dir,
        )
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", Srgate::binary().display()));
        let mut srgate = Srgate {
            config,
            process,
            config_file: file.to_path_buf(),
            log_file: dir.join("srgate.log"),
        };
        if let Err(why) = srgate.wait_healthy(STARTUP_BOUND) {
            panic!("{why}");
        }
        srgate
    }

    fn spawn(config: GatewayConfig, dir: &Path) -> Srgate {
        // named by SIP port, so that two srgates in one test keep separate files
        let name = format!("srgate-{}", config.sip_port);
        let config_file = dir.join(format!("{name}.ini"));
        let log_file = dir.join(format!("{name}.log"));
        std::fs::write(&config_file, config.ini(&log_file)).expect("the test dir is writable");
        let mut command = match &config.emulated {
            Some((emulator, binary)) => {
                let mut c = Command::new(emulator);
                c.arg(binary);
                c
            }
            None => Command::new(Srgate::binary()),
        };
        let process = Process::spawn(
            &name,
            command.arg("-c").arg(&config_file).current_dir(dir),
            dir,
        )
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", Srgate::binary().display()));
        Srgate {
            config,
            process,
            config_file,
            log_file,
        }
    }

    fn wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Deadline::after(within);
        loop {
            if let Some(status) = self.process.try_status() {
                return Err(format!("srgate exited during startup with {status}"));
            }
            if let Some(health) = self.health() {
                assert_eq!(health.status, "ok", "srgate /health: {health:?}");
                return Ok(());
            }
            if deadline.passed() {
                return Err(format!(
                    "srgate's /health on {} did not answer within {within:?}",
                    self.config.api_addr()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter or gauge of `GET /metrics` (`srgate_NAME`); panics when it is missing.
    pub fn metric(&self, name: &str) -> u64 {
        let r = http::get(self.config.api_addr(), "/metrics", Duration::from_secs(3))
            .expect("/metrics answers");
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("srgate_{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} in {}", r.body))
    }

    /// `GET /health`, or `None` when it does not answer a well-formed 200.
    pub fn health(&self) -> Option<Health> {
        let response = http::get(self.config.api_addr(), "/health", Duration::from_secs(1)).ok()?;
        if response.status != 200 {
            return None;
        }
        Health::from_json(&response.body)
    }

    /// Waits until `/health` reports `registered == wanted`; returns how long that took
    /// from the call, or `None` if it did not happen within `within`.
    pub fn wait_registered(&self, wanted: bool, within: Duration) -> Option<Duration> {
        let watch = super::Stopwatch::start();
        wait_for(within, Duration::from_millis(100), || {
            (self.health()?.registered == Some(wanted)).then(|| watch.elapsed())
        })
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.config.sip_addr()
    }

    /// `[webrtc] listen`: demo page and WebSocket.
    pub fn web_addr(&self) -> SocketAddr {
        local(self.config.webrtc_port)
    }

    /// `[api] listen`'s port (the harness may have picked it again at start).
    pub fn api_port(&self) -> u16 {
        self.config.api_port
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// Where srgate's log file is.
    #[allow(dead_code)] // not every test binary looks at the file itself
    pub fn log_path(&self) -> &Path {
        &self.log_file
    }

    /// srgate's log file so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// SIGTERM and wait for the exit, bounded by [`SHUTDOWN_BOUND`] before SIGKILL.
    /// Returns the exit status and whether srgate exited by itself within the bound.
    pub fn stop(&mut self) -> (ExitStatus, bool) {
        self.process.terminate(SHUTDOWN_BOUND)
    }

    /// Output, log and configuration, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "{}\n----- srgate log ({}) -----\n{}\n----- srgate config ({}) -----\n{}",
            self.process.output(),
            self.log_file.display(),
            self.log(),
            self.config_file.display(),
            std::fs::read_to_string(&self.config_file).unwrap_or_default()
        )
    }
}

impl Drop for Srgate {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.stop();
        if panicking {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// Runs `srgate ARGS` to completion (for `check` and `--version`), bounded by `within`.
pub fn run_srgate(args: &[&str], dir: &Path, within: Duration) -> (Option<ExitStatus>, String) {
    let label: String = args
        .first()
        .copied()
        .unwrap_or("run")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let name = format!("srgate-{label}");
    let mut process = Process::spawn(
        &name,
        Command::new(Srgate::binary()).args(args).current_dir(dir),
        dir,
    )
    .unwrap_or_else(|err| panic!("cannot start {}: {err}", Srgate::binary().display()));
    let status = process.wait_exit(within);
    if status.is_none() {
        process.terminate(Duration::from_secs(1));
    }
    (status, process.output())
}
