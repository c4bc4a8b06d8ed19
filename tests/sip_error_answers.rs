//! Requests srgate must refuse with a precise status: CANCEL for an unknown transaction
//! (481, RFC 3261 9.2), Max-Forwards: 0 (483, RFC 3261 16.3) and an unknown method (501, or
//! 405 with Allow; RFC 3261 8.2.1).

mod common;

use std::time::Duration;

use common::{GatewayConfig, SIPP, Sipp, Srgate, TestDir, peers_available};

const SIPP_BOUND: Duration = Duration::from_secs(20);

#[test]
fn cancel_for_an_unknown_transaction_gets_481() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("cancel-unknown");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "cancel_unknown_transaction.xml",
        srgate.sip_addr(),
        &["-s", "2001"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("CANCEL matching no transaction");
}

#[test]
fn max_forwards_zero_gets_483() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("max-forwards-zero");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "max_forwards_zero.xml",
        srgate.sip_addr(),
        &[
            "-s", "2001", "-key", "caller", "1001", "-au", "1001", "-ap", "pw1001",
        ],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("INVITE with Max-Forwards: 0");
}

#[test]
fn unknown_method_gets_501_or_405() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("unknown-method");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "unknown_method.xml",
        srgate.sip_addr(),
        &["-s", "1001"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("FROBNICATE request");
}
