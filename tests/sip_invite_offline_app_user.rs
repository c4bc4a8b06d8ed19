//! Standalone mode: an INVITE must authenticate as a `[users]` entry (407 challenge), and a
//! call to an app user nobody is logged in as is answered 480 Temporarily Unavailable.

mod common;

use std::time::Duration;

use common::{GatewayConfig, SIPP, Sipp, Srgate, TestDir, peers_available};

const SIPP_BOUND: Duration = Duration::from_secs(20);

#[test]
fn invite_to_an_app_user_nobody_is_logged_in_as_gets_480() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("invite-offline-app-user");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    // 2001 is neither a [users] entry nor registered: an app user, and nobody is logged in
    let run = Sipp::call(
        "invite_offline_app_user.xml",
        srgate.sip_addr(),
        &[
            "-s", "2001", "-key", "caller", "1001", "-au", "1001", "-ap", "pw1001",
        ],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("INVITE from 1001 to offline app user 2001");
    let health = srgate.health().expect("srgate still answers /health");
    assert_eq!(health.calls, 0, "a refused INVITE left a call behind");
}

/// A flood of refused INVITEs (each one a CDR of a call that never connected) leaves at
/// most the burst plus the sustained rate in the CDR file; the rest are counted. The CDR
/// and log files srgate creates are not readable by other users.
#[test]
fn a_flood_of_refused_invites_does_not_fill_the_cdr_file() {
    use std::os::unix::fs::PermissionsExt;
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("invite-flood-cdr");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let calls = 600u64;
    #[allow(clippy::disallowed_methods)] // the test's own wall clock
    let started = std::time::Instant::now();
    let run = Sipp::call(
        "invite_offline_app_user.xml",
        srgate.sip_addr(),
        &[
            "-s", "2001", "-key", "caller", "1001", "-au", "1001", "-ap", "pw1001", "-m", "600",
            "-r", "300", "-l", "100",
        ],
        dir.path(),
        Duration::from_secs(60),
    );
    let seconds = started.elapsed().as_secs() + 1;
    run.assert_success("600 INVITEs from 1001 to offline app user 2001");
    let cdr_path = dir.path().join("srgate-cdr.jsonl");
    let lines = std::fs::read_to_string(&cdr_path)
        .unwrap_or_default()
        .lines()
        .count() as u64;
    let suppressed = srgate.metric("cdr_suppressed_total");
    assert_eq!(
        lines + suppressed,
        calls,
        "every refused call is written or counted"
    );
    assert!(
        (200..=200 + 20 * seconds).contains(&lines),
        "{lines} records in {seconds} s: the burst (200) and 20 a second at most"
    );
    for file in [cdr_path.as_path(), srgate.log_path()] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "{} is mode {mode:o}", file.display());
    }
}
