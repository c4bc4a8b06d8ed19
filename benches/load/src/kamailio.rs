//! Proxy mode's PBX: Kamailio as the registrar srgate registers its proxy account at, and
//! the phone too, with the configuration and user table of srgate's own Kamailio tests
//! (`tests/peers/kamailio.cfg.in`, `tests/peers/kamailio-db`: 1000/1234 is srgate's proxy
//! account, 1006/1006pw the phone). Calls from the browsers go srgate → Kamailio (digest,
//! location lookup, Record-Route) → phone; the media flows between srgate and the phone.
//!
//! Kamailio runs in the foreground (`-DD -E`) so its main process is the harness's child;
//! SIGTERM to it (by PID) stops its workers.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::Daemon;

/// srgate's proxy account at Kamailio, and the phone's.
pub const GATEWAY_ACCOUNT: (&str, &str) = ("1000", "1234");
pub const PHONE_ACCOUNT: (&str, &str) = ("1006", "1006pw");

const CONFIG: &str = include_str!("../../../tests/peers/kamailio.cfg.in");
const TABLES: [(&str, &str); 2] = [
    (
        "version",
        include_str!("../../../tests/peers/kamailio-db/version"),
    ),
    (
        "subscriber",
        include_str!("../../../tests/peers/kamailio-db/subscriber"),
    ),
];

pub struct Kamailio {
    child: Daemon,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Kamailio {
    /// Whether Kamailio and its modules are installed.
    pub fn installed() -> bool {
        binary().is_some() && module_dir().is_some()
    }

    /// Starts Kamailio on 127.0.0.1:`port` (UDP and TCP) with its files in `dir`, and waits
    /// (at most 15 s) until it answers an OPTIONS.
    pub fn start(dir: &Path, port: u16) -> Result<Kamailio, String> {
        let (Some(binary), Some(modules)) = (binary(), module_dir()) else {
            return Err("Kamailio is not installed (apt-get install kamailio)".into());
        };
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Kamailio runs in `dir` and reads every path of its configuration from there:
        // all of them absolute (`--out` may be relative)
        let dir = &fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let db = dir.join("db");
        fs::create_dir_all(&db).map_err(|e| format!("{}: {e}", db.display()))?;
        for (table, text) in TABLES {
            fs::write(db.join(table), text).map_err(|e| format!("{table}: {e}"))?;
        }
        let config = dir.join("kamailio.cfg");
        let text = CONFIG
            .replace("@PORT@", &port.to_string())
            .replace("@MODPATH@", &modules.display().to_string())
            .replace("@DBDIR@", &db.display().to_string())
            .replace("@GW_USER@", GATEWAY_ACCOUNT.0)
            .replace("@TLS_PORT@", "0")
            .replace("@TLS_CONFIG@", "");
        fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = dir.join("kamailio.log");
        let child = Daemon(
            Command::new(binary)
                .args(["-DD", "-E", "-f"])
                .arg(&config)
                .arg("-P")
                .arg(dir.join("kamailio.pid"))
                .arg("-Y")
                .arg(dir)
                .arg("-w")
                .arg(dir)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?)
                .spawn()
                .map_err(|e| format!("kamailio: {e}"))?,
        );
        let mut k = Kamailio {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_path_buf(),
        };
        let end = Instant::now() + Duration::from_secs(15);
        // bounded: 15 s, an OPTIONS every 200 ms
        while Instant::now() < end {
            if let Ok(Some(status)) = k.child.try_wait() {
                return Err(format!("Kamailio exited ({status}); see {}", log.display()));
            }
            if k.answers_options() {
                return Ok(k);
            }
        }
        k.stop();
        Err(format!(
            "Kamailio did not answer within 15 s; see {}",
            log.display()
        ))
    }

    /// Sends an OPTIONS and waits up to 200 ms for any answer.
    fn answers_options(&self) -> bool {
        let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let Ok(local) = s.local_addr() else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let probe = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{port}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=probe\r\nTo: <sip:{addr}>\r\n\
             Call-ID: probe-{port}@srgate-load\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            addr = self.addr,
            port = local.port(),
        );
        let mut buf = [0u8; 2048];
        s.send_to(probe.as_bytes(), self.addr).is_ok() && s.recv_from(&mut buf).is_ok()
    }

    /// Where its log is.
    pub fn log(&self) -> PathBuf {
        self.dir.join("kamailio.log")
    }

    /// SIGTERM to the main process (it stops its workers), SIGKILL after 8 s; then any
    /// worker still there is killed by its PID (a main process that was killed leaves its
    /// workers running: seen after a 50-call run).
    pub fn stop(&mut self) {
        let workers = crate::procfs::children_of(self.child.id());
        self.child.stop_within(Duration::from_secs(8));
        let end = Instant::now() + Duration::from_secs(3);
        // bounded: 3 s, then SIGKILL
        // a worker, not a process that took its PID since
        let running = |w: &u32| {
            fs::read_to_string(format!("/proc/{w}/comm")).is_ok_and(|c| c.trim() == "kamailio")
        };
        while Instant::now() < end && workers.iter().any(running) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for w in workers {
            if running(&w) {
                let _ = Command::new("kill")
                    .args(["-KILL", &w.to_string()])
                    .status();
            }
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // before the daemon's own drop (SIGKILL), which would leave the workers behind
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn binary() -> Option<PathBuf> {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Debian keeps the modules under the multiarch triplet (`/usr/lib/<triplet>/kamailio`).
fn module_dir() -> Option<PathBuf> {
    let triplets = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"));
    triplets
        .chain(["/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules"].map(PathBuf::from))
        .find(|d| d.join("tm.so").is_file())
}
