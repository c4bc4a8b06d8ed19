//! Kamailio as the PBX/registrar at srgate's `sip_svr`: tests/peers/kamailio.cfg.in with a
//! db_text user table (1000/1234 = srgate's proxy account, 1006/1006pw = a phone).
//!
//! Runs in the foreground (`-DD -E`) so the main process is our child; its worker processes
//! are found through /proc and stopped by PID too. All state lives in the test's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{local, wait_port_bound, wait_port_free};
use super::process::{Process, children_of, send_sigkill, wait_gone};
use super::{find_binary, repo_path};

/// Kamailio needs ~2 s to start its 9 processes on a busy machine; allow more.
const START_BOUND: Duration = Duration::from_secs(15);
/// Kamailio's main process stops its workers on SIGTERM; measured ~2 s here.
const STOP_BOUND: Duration = Duration::from_secs(8);

pub struct Kamailio {
    process: Option<Process>,
    dir: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
    pub port: u16,
    /// SIP over TLS: its port (`-A WITH_TLS`).
    pub tls_port: Option<u16>,
    starts: u32,
}

impl Kamailio {
    /// Writes the configuration (listening on 127.0.0.1:`port`, UDP and TCP, routing app
    /// users to the proxy account `gateway_account`) and the db_text folder into
    /// `dir/kamailio`, then starts Kamailio and waits until it listens.
    pub fn start(dir: &Path, port: u16, gateway_account: &str) -> Kamailio {
        Kamailio::start_with(dir, port, gateway_account, None)
    }

    /// [`Kamailio::start`], also listening for SIP over TLS on `tls_port` with the server
    /// certificate `cert` and key `key` (it does not check certificates of its clients or
    /// of the servers it connects to).
    pub fn start_tls(
        dir: &Path,
        port: u16,
        gateway_account: &str,
        (tls_port, cert, key): (u16, &Path, &Path),
    ) -> Kamailio {
        let tls_dir = dir.join("kamailio");
        std::fs::create_dir_all(&tls_dir).expect("the test dir is writable");
        let tls_config = tls_dir.join("tls.cfg");
        std::fs::write(
            &tls_config,
            format!(
                "[server:default]
                 method = TLSv1.2+
                 verify_certificate = no
                 require_certificate = no
                 private_key = {}
                 certificate = {}
                 
                 [client:default]
                 method = TLSv1.2+
                 verify_certificate = no
                 require_certificate = no
",
                key.display(),
                cert.display()
            ),
        )
        .expect("the test dir is writable");
        Kamailio::start_with(dir, port, gateway_account, Some((tls_port, &tls_config)))
    }

    fn start_with(
        dir: &Path,
        port: u16,
        gateway_account: &str,
        tls: Option<(u16, &Path)>,
    ) -> Kamailio {
        let dir = dir.join("kamailio");
        let db_dir = dir.join("db");
        std::fs::create_dir_all(&db_dir).expect("the test dir is writable");
        for table in ["version", "subscriber"] {
            std::fs::copy(
                repo_path(&format!("tests/peers/kamailio-db/{table}")),
                db_dir.join(table),
            )
            .expect("tests/peers/kamailio-db is part of the repository");
        }
        let template = std::fs::read_to_string(repo_path("tests/peers/kamailio.cfg.in"))
            .expect("tests/peers/kamailio.cfg.in is part of the repository");
        let config_text = template
            .replace("@PORT@", &port.to_string())
            .replace("@MODPATH@", &module_dir().display().to_string())
            .replace("@DBDIR@", &db_dir.display().to_string())
            .replace("@GW_USER@", gateway_account)
            .replace("@TLS_PORT@", &tls.map_or(0, |t| t.0).to_string())
            .replace(
                "@TLS_CONFIG@",
                &tls.map(|t| t.1.display().to_string()).unwrap_or_default(),
            );
        let config = dir.join("kamailio.cfg");
        std::fs::write(&config, config_text).expect("the test dir is writable");

        let mut kamailio = Kamailio {
            process: None,
            pid_file: dir.join("kamailio.pid"),
            dir,
            config,
            port,
            tls_port: tls.map(|t| t.0),
            starts: 0,
        };
        kamailio.restart();
        kamailio
    }

    pub fn addr(&self) -> SocketAddr {
        local(self.port)
    }

    /// (Re)starts Kamailio with the same configuration and waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "Kamailio is already running");
        assert!(
            wait_port_free(self.port, STOP_BOUND),
            "port {} is still taken before starting Kamailio",
            self.port
        );
        let _ = std::fs::remove_file(&self.pid_file);
        self.starts += 1;
        let binary = find_binary("kamailio").unwrap_or_else(|| PathBuf::from("kamailio"));
        let process = Process::spawn(
            "kamailio",
            Command::new(binary)
                .arg("-DD")
                .arg("-E")
                .arg("-f")
                .arg(&self.config)
                .arg("-P")
                .arg(&self.pid_file)
                .arg("-Y")
                .arg(&self.dir)
                .arg("-w")
                .arg(&self.dir)
                .args(
                    self.tls_port
                        .map(|_| ["-A", "WITH_TLS"])
                        .into_iter()
                        .flatten(),
                )
                .current_dir(&self.dir),
            &self.dir,
        )
        .expect("kamailio starts");
        self.process = Some(process);
        let ready = wait_port_bound(self.port, true, START_BOUND)
            && wait_port_bound(self.port, false, START_BOUND)
            && self
                .tls_port
                .is_none_or(|p| wait_port_bound(p, false, START_BOUND));
        if !ready {
            let output = self.output();
            self.stop();
            panic!(
                "Kamailio did not listen on 127.0.0.1:{} within {START_BOUND:?}\n{output}",
                self.port
            );
        }
    }

    /// Stops Kamailio: SIGTERM to its main process (by PID), which stops its workers; any
    /// worker still there after the bound is killed by its PID. Waits until the port is free.
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        let workers = process.pid().map(children_of).unwrap_or_default();
        let (_, in_time) = process.terminate(STOP_BOUND);
        if !in_time || !wait_gone(&workers, STOP_BOUND) {
            for pid in &workers {
                send_sigkill(*pid);
            }
            wait_gone(&workers, STOP_BOUND);
        }
        assert!(
            wait_port_free(self.port, STOP_BOUND),
            "Kamailio's port {} is still taken after stopping it",
            self.port
        );
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// Kamailio's log (stderr, all starts so far).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.stderr")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "----- Kamailio log ({} start(s)) -----\n{}",
                self.starts,
                self.output()
            );
        }
        // never panic inside a drop that may run during a panic
        if let Some(mut process) = self.process.take() {
            let workers = process.pid().map(children_of).unwrap_or_default();
            process.terminate(STOP_BOUND);
            if !wait_gone(&workers, STOP_BOUND) {
                for pid in &workers {
                    send_sigkill(*pid);
                }
            }
        }
    }
}

/// Whether Kamailio's tls module is installed (Debian: kamailio-tls-modules); in CI it must
/// be.
pub fn tls_available() -> bool {
    let ok = module_dir().join("tls.so").is_file();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "Kamailio's tls module is missing (apt-get install kamailio-tls-modules)"
        );
        eprintln!("SKIPPED: Kamailio's tls module is missing");
    }
    ok
}

/// Kamailio's module folder: Debian puts it under the multiarch triplet.
fn module_dir() -> PathBuf {
    let candidates = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("kamailio/modules"))
        .chain(
            [
                "/usr/lib/kamailio/modules",
                "/usr/lib64/kamailio/modules",
                "/usr/local/lib64/kamailio/modules",
                "/usr/local/lib/kamailio/modules",
            ]
            .map(PathBuf::from),
        );
    for candidate in candidates {
        if candidate.join("tm.so").is_file() {
            return candidate;
        }
    }
    PathBuf::from("/usr/lib/x86_64-linux-gnu/kamailio/modules")
}
