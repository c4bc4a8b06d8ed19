//! A person's first call, done by headless Chromium: the demo page logs in, calls `echo`,
//! and the audio that comes back through srgate's whole media path (ICE-lite, DTLS-SRTP,
//! SRTP, jitter buffer, Opus decode and encode) is measured in the page with WebAudio: its
//! dominant frequency must be the tone's. Then the call is hung up and `/health` must show
//! no call left. Over HTTP/WS and over HTTPS/WSS with a test certificate.
//!
//! srgate and Chromium run together in a private network namespace (`unshare -n`) with
//! loopback only; both are stopped by PID inside it.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestDir;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Peers this test needs; missing ones skip it, or fail it when CI is set.
fn peers_ready() -> bool {
    let missing: Vec<&str> = ["chromium", "node", "sox", "unshare", "openssl", "curl"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let harness =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if missing.is_empty() && harness.exists() {
        return true;
    }
    let why = format!("missing {missing:?}, or tests/browser/node_modules (run npm ci there)");
    assert!(
        std::env::var_os("CI").is_none(),
        "browser test cannot run: {why}"
    );
    eprintln!("SKIPPED: {why}");
    false
}

struct Outcome {
    harness: String,
    health_after: String,
    metrics_after: String,
    srgate_log: String,
}

/// Runs one echo call at `hz` in a fresh namespace; `tls` uses tls_listen and WSS.
fn echo_call(dir: &TestDir, hz: u32, tls: bool) -> Outcome {
    let d = dir.path();
    let tone = d.join(format!("tone{hz}.wav"));
    let status = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "1"])
        .arg(&tone)
        .args(["synth", "8", "sine", &hz.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "sox made the tone");
    let mut tls_ini = String::new();
    let url = if tls {
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl made a test certificate");
        tls_ini = format!(
            "tls_listen = 127.0.0.1:18443\n[tls]\ncert = {}\nkey = {}\n",
            cert.display(),
            key.display()
        );
        "https://127.0.0.1:18443/"
    } else {
        "http://127.0.0.1:18080/"
    };
    // The namespace is private: fixed ports cannot collide with anything.
    let ini = format!(
        "[global]\nshards = 1\n[sip]\nlisten = 127.0.0.1:15060\n[api]\nlisten = 127.0.0.1:19091\n\
         [log]\nlevel = 1\nfile = {log}\n[webrtc]\nlisten = 127.0.0.1:18080\nudp = 127.0.0.1:20000\n{tls_ini}",
        log = d.join("srgate.log").display()
    );
    let config = d.join("srgate.ini");
    std::fs::write(&config, ini).unwrap();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/run.mjs");
    let insecure = if tls { "--insecure-certs" } else { "" };
    let script = format!(
        r#"set -u
ip link set lo up
"$SRGATE" -c "$CONFIG" > "$DIR/srgate.out" 2>&1 &
pid=$!
i=0; until curl -sf http://127.0.0.1:19091/health >/dev/null; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done
node "$HARNESS" --url {url} --user 1001 --callee echo --tone "$TONE" --seconds 5 --expect-hz {hz} {insecure} --timeout 60 > "$DIR/harness.json" 2> "$DIR/harness.err"
sleep 0.5
curl -s http://127.0.0.1:19091/health > "$DIR/health.json"
curl -s http://127.0.0.1:19091/metrics > "$DIR/metrics.txt"
kill -TERM $pid; wait $pid
echo "srgate exit $?" >> "$DIR/srgate.out"
"#
    );
    let out = Command::new("timeout")
        .args(["150", "unshare", "-n", "sh", "-c", &script])
        .env("SRGATE", env!("CARGO_BIN_EXE_srgate"))
        .env("CONFIG", &config)
        .env("DIR", d)
        .env("HARNESS", &harness)
        .env("TONE", &tone)
        .output()
        .unwrap();
    let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap_or_default();
    assert!(
        out.status.success(),
        "namespace run failed: {:?}\n{}\nharness stderr:\n{}\nsrgate:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        read("harness.err"),
        read("srgate.out")
    );
    Outcome {
        harness: read("harness.json"),
        health_after: read("health.json"),
        metrics_after: read("metrics.txt"),
        srgate_log: read("srgate.log"),
    }
}

fn check(o: &Outcome, hz: u32) {
    let ctx = format!("harness: {}\nsrgate log:\n{}", o.harness, o.srgate_log);
    let result: serde_json::Value =
        serde_json::from_str(o.harness.trim()).unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    assert_eq!(result["ok"], true, "{ctx}");
    let got = result["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        (got - f64::from(hz)).abs() <= 20.0,
        "heard {got} Hz, sent {hz} Hz\n{ctx}"
    );
    let states: Vec<&str> = result["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        states.contains(&"SENT_TO_REMOTE") && states.contains(&"ACCEPTED_BY_REMOTE"),
        "{ctx}"
    );
    assert_eq!(result["hangup"], "LOCAL", "{ctx}");
    // After the hangup: no call, and the call's media state is gone.
    assert!(
        o.health_after.contains("\"calls\":0"),
        "health after hangup: {}",
        o.health_after
    );
    assert!(
        o.metrics_after.contains("srgate_calls 0\n"),
        "{}",
        o.metrics_after
    );
    assert!(
        o.metrics_after.contains("srgate_calls_ended_total 1\n"),
        "{}",
        o.metrics_after
    );
}

#[test]
fn chromium_hears_itself_through_echo_440_and_1000_hz() {
    if !peers_ready() {
        return;
    }
    for hz in [440, 1000] {
        let dir = TestDir::new(&format!("browser-echo-{hz}"));
        let o = echo_call(&dir, hz, false);
        check(&o, hz);
    }
}

#[test]
fn chromium_echo_over_wss() {
    if !peers_ready() {
        return;
    }
    let dir = TestDir::new("browser-echo-wss");
    let o = echo_call(&dir, 440, true);
    check(&o, 440);
}
