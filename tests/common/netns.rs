//! Tests that need headless Chromium run in a private network namespace with loopback
//! only: the test re-executes its own binary, filtered to itself, inside
//! `unshare -n`, and every peer it starts there (srgate, Kamailio, baresip, SIPp,
//! Chromium) lives and dies in that namespace.

use std::process::Command;
use std::time::Duration;

const INSIDE: &str = "SRGATE_TEST_NETNS";

/// True when the caller should run its body here (it is inside the namespace). Outside,
/// runs `test` (the test function's name, as libtest filters it) inside a new namespace,
/// asserts that it passed, and returns false.
pub fn enter(test: &str, bound: Duration) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let out = Command::new("timeout")
        .arg(bound.as_secs().to_string())
        .args([
            "unshare",
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a private network namespace failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stdout}\n{stderr}");
    false
}

/// Whether the tools for namespace tests exist (`unshare`, `ip`); CI must have them.
pub fn available() -> bool {
    let ok = ["unshare", "ip"]
        .iter()
        .all(|t| super::find_binary(t).is_some());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare/ip missing: the namespace tests cannot run"
        );
        eprintln!("SKIPPED: unshare or ip missing");
    }
    ok
}
