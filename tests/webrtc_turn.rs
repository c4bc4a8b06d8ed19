//! A browser that may only use TURN relays (`iceTransportPolicy: "relay"`, a strict
//! network) reaches srgate through Debian's coturn: srgate hands out the TURN server with
//! a time-limited credential in `login_ok` (`[webrtc] ice_servers`, `turn_secret`, coturn's
//! `use-auth-secret`), Chromium allocates a relay with it, ICE selects the relayed pair,
//! and the call to baresip carries audio both ways (checked by frequency). In a private
//! network namespace.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use common::calls;
use common::process::Process;
use common::{TestDir, free_ports};

const APP: &str = "1001";
const TURN_SECRET: &str = "turn-shared-secret-for-tests";

fn ready() -> bool {
    calls::browser_and_baresip_ready()
        && (common::find_binary("turnserver").is_some() || {
            assert!(
                std::env::var_os("CI").is_none(),
                "turnserver is missing (apt-get install coturn)"
            );
            eprintln!("SKIPPED: turnserver (coturn) is missing");
            false
        })
}

#[test]
fn a_relay_only_browser_calls_through_coturn() {
    if !ready()
        || !common::netns::enter(
            "a_relay_only_browser_calls_through_coturn",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("webrtc-turn");
    let [turn_port] = free_ports::<1>();
    let turn_dir = dir.join("coturn");
    std::fs::create_dir_all(&turn_dir).expect("writable");
    let _coturn = Process::spawn(
        "coturn",
        Command::new("turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log"])
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={turn_port}"))
            .args(["--min-port=51000", "--max-port=51999"])
            .args(["--use-auth-secret", "--realm=srgate.test"])
            .arg(format!("--static-auth-secret={TURN_SECRET}"))
            // srgate is on loopback too: the relay may send there
            .arg("--allow-loopback-peers")
            .arg("--log-file=stdout")
            .arg(format!("--pidfile={}", turn_dir.join("turn.pid").display()))
            .current_dir(&turn_dir),
        &turn_dir,
    )
    .expect("turnserver starts");
    assert!(
        common::net::wait_port_bound(turn_port, true, Duration::from_secs(10)),
        "coturn listens on {turn_port}/udp"
    );

    let tones = calls::tones(&dir, 40.0, 60.0);
    let (srgate, sip, mut app) = calls::standalone_pair(
        &dir,
        &tones,
        APP,
        &format!(
            "[webrtc]\nice_servers = turn:127.0.0.1:{turn_port}?transport=udp\nturn_secret = {TURN_SECRET}\n"
        ),
    );
    let _ = &srgate;
    app.must(json!({"cmd": "relay_only"}));
    // log in again so that the client takes the servers of a fresh login_ok
    app.must(json!({"cmd": "login", "user": APP}));
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    let path = app.must(json!({"cmd": "ice_path"}));
    assert_eq!(
        path["local"], "relay",
        "the browser sends through coturn: {path}"
    );
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, calls::PHONE_HZ, "through the relay");
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    calls::assert_phone_heard_browser(&sip, "through the relay");
}
