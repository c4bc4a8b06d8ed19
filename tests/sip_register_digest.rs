//! The standalone registrar: REGISTER with digest authentication against `[users]`
//! (RFC 3261 section 10.3, RFC 2617): 401 with an MD5 challenge first, the right password
//! gets 200 with the binding and its expiry, un-REGISTER (Expires: 0) gets 200; a wrong
//! password or an unknown user gets 403.

mod common;

use std::time::Duration;

use common::{GatewayConfig, SIPP, Sipp, Srgate, TestDir, peers_available};

const SIPP_BOUND: Duration = Duration::from_secs(20);

#[test]
fn register_with_the_right_password_then_unregister() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("register-right-password");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "register_digest.xml",
        srgate.sip_addr(),
        &["-s", "1001", "-au", "1001", "-ap", "pw1001"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("REGISTER 1001 with its password, then un-REGISTER");
    assert!(
        !srgate.log().contains("pw1001"),
        "a password reached srgate's log"
    );
}

#[test]
fn register_with_a_wrong_password_gets_403() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("register-wrong-password");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "register_wrong_password.xml",
        srgate.sip_addr(),
        &["-s", "1001", "-au", "1001", "-ap", "not-the-password"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("REGISTER 1001 with a wrong password");
}

#[test]
fn register_as_an_unknown_user_gets_403() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("register-unknown-user");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    let run = Sipp::call(
        "register_wrong_password.xml",
        srgate.sip_addr(),
        &["-s", "7777", "-au", "7777", "-ap", "anything"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("REGISTER as a user that is not in [users]");
}
