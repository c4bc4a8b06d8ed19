//! A scripted browser softphone: headless Chromium on srgate's demo page, driven through
//! `tests/browser/phone.mjs` one JSON command at a time. Use inside a private network
//! namespace ([`super::netns`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

pub struct Phone {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Every command and reply, for failure messages.
    pub transcript: Vec<String>,
}

/// Whether Chromium, node and the harness's node modules are there (CI must have them).
pub fn available() -> bool {
    let harness = harness_dir().join("node_modules/playwright-core");
    let ok = super::find_binary("chromium").is_some()
        && super::find_binary("node").is_some()
        && harness.exists();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium, node or tests/browser/node_modules missing"
        );
        eprintln!("SKIPPED: chromium, node or tests/browser/node_modules (npm ci) missing");
    }
    ok
}

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

impl Phone {
    /// Starts Chromium on `url` with `tone` (a WAV file) as its microphone.
    pub fn start(url: &str, tone: &Path) -> Phone {
        Phone::start_script("phone.mjs", &[], url, tone)
    }

    /// A SIP-over-WebSocket softphone (`tests/browser/sipws.mjs`): the npm package `lib`
    /// (`jssip` or `sipjs`) in Chromium, against srgate's web listener at `url`, SIP
    /// domain `domain`.
    #[allow(dead_code)]
    pub fn sip_ws(lib: &str, url: &str, domain: &str, tone: &Path) -> Phone {
        Phone::start_script("sipws.mjs", &["--lib", lib, "--domain", domain], url, tone)
    }

    fn start_script(script: &str, extra: &[&str], url: &str, tone: &Path) -> Phone {
        let mut child = Command::new("node")
            .arg(harness_dir().join(script))
            .args(extra)
            .args(["--url", url, "--tone"])
            .arg(tone)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut phone = Phone {
            child,
            stdin,
            lines: rx,
            transcript: Vec::new(),
        };
        let ready = phone.read(Duration::from_secs(60));
        assert_eq!(ready["ready"], true, "{script} did not start: {ready}");
        phone
    }

    fn read(&mut self, bound: Duration) -> Value {
        match self.lines.recv_timeout(bound) {
            Ok(line) => {
                self.transcript.push(format!("< {line}"));
                serde_json::from_str(&line).unwrap_or_else(|_| json!({"ok": false, "error": line}))
            }
            Err(_) => json!({"ok": false, "error": "no answer from phone.mjs"}),
        }
    }

    /// Sends one command and returns its answer (bounded by the command's own timeout
    /// plus slack).
    pub fn cmd(&mut self, command: Value) -> Value {
        let wait = command["timeout"].as_u64().unwrap_or(20)
            + command["seconds"].as_u64().unwrap_or(0)
            + 30;
        let line = command.to_string();
        self.transcript.push(format!("> {line}"));
        writeln!(self.stdin, "{line}").expect("phone.mjs reads");
        self.stdin.flush().expect("phone.mjs reads");
        self.read(Duration::from_secs(wait))
    }

    /// Like [`Phone::cmd`], panicking unless the answer is ok.
    pub fn must(&mut self, command: Value) -> Value {
        let answer = self.cmd(command.clone());
        assert_eq!(
            answer["ok"],
            true,
            "phone command {command} failed: {answer}\ntranscript:\n{}",
            self.transcript.join("\n")
        );
        answer
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.stdin.flush();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
