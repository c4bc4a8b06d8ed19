//! OPTIONS to srgate is answered 200 with Allow and Accept, without authentication
//! (keepalive pings from PBXs and phones), over UDP and over TCP.

mod common;

use std::time::Duration;

use common::{GatewayConfig, SIPP, Sipp, Srgate, TestDir, peers_available};

const SIPP_BOUND: Duration = Duration::from_secs(20);

#[test]
fn options_over_udp_is_answered_200_with_allow_and_accept() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("options-udp");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "options.xml",
        srgate.sip_addr(),
        &["-s", "1000"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("OPTIONS over UDP");
    // the product, never its version: a scanner learns nothing to match exploits with
    let servers: Vec<&str> = run
        .messages
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("server:"))
        .collect();
    assert!(
        !servers.is_empty(),
        "srgate's answer names its Server:\n{}",
        run.messages
    );
    assert!(
        servers.iter().all(|l| l.trim_end() == "Server: srgate"),
        "Server header without a version: {servers:?}"
    );
}

#[test]
fn options_over_tcp_is_answered_200_with_allow_and_accept() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("options-tcp");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "options.xml",
        srgate.sip_addr(),
        &["-s", "1000", "-t", "t1"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("OPTIONS over TCP");
}

#[test]
fn options_to_an_unknown_user_needs_no_authentication() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("options-any-user");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    // not a [users] entry and not the proxy account: still 200, never 401/407
    let run = Sipp::call(
        "options.xml",
        srgate.sip_addr(),
        &["-s", "someone"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("OPTIONS to an unknown user");
}
