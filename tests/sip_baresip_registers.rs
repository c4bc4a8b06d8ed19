//! A real SIP phone, baresip, registers to standalone srgate with digest authentication
//! against `[users]`.

mod common;

use std::time::Duration;

use common::{BARESIP, Baresip, GatewayConfig, Srgate, TestDir, peers_available};

/// REGISTER, 401, REGISTER with digest, 200: instant on loopback; baresip itself needs about
/// a second to start.
const REGISTRATION_BOUND: Duration = Duration::from_secs(10);

/// Standalone srgate challenging with MD5 only. baresip 1.0 (libre) gives up on any 401
/// that also carries a SHA-256 challenge ("Register: Function not implemented"), even when
/// MD5 comes first, so phones built on it need `[sip] digest = md5` (see conf/srgate.ini).
fn md5_only() -> GatewayConfig {
    let mut config = GatewayConfig::standalone();
    config.extra.push_str("[sip]\ndigest = md5\n");
    config
}

#[test]
fn baresip_registers_to_standalone_srgate() {
    if !peers_available(&[BARESIP]) {
        return;
    }
    let dir = TestDir::new("baresip-registers");
    let srgate = Srgate::start(md5_only(), dir.path());
    let sip = srgate.sip_addr();

    let mut phone = Baresip::start(
        dir.path(),
        &format!("<sip:1001@{sip};transport=udp>;auth_pass=pw1001;regint=60"),
    );
    // baresip 1.0 prints "1001@127.0.0.1: {0/UDP/v4} 200 OK (...) [1 binding]" on success
    let line = phone.wait_for_line(&["1001@", "200 OK"], REGISTRATION_BOUND);
    assert!(
        line.is_some(),
        "baresip did not report a successful registration within {REGISTRATION_BOUND:?}:\n{}",
        phone.output()
    );
    let line = line.unwrap_or_default();
    assert!(
        line.contains("[1 binding]"),
        "srgate's 200 should list exactly baresip's one binding: {line}"
    );
    phone.stop();
}

#[test]
fn baresip_with_a_wrong_password_is_not_registered() {
    if !peers_available(&[BARESIP]) {
        return;
    }
    let dir = TestDir::new("baresip-wrong-password");
    let srgate = Srgate::start(md5_only(), dir.path());
    let sip = srgate.sip_addr();

    let mut phone = Baresip::start(
        dir.path(),
        &format!("<sip:1001@{sip};transport=udp>;auth_pass=wrong;regint=60"),
    );
    // baresip reports a failed registration as "reg: sip:...: 403 Forbidden ..."
    let line = phone.wait_for_line(&["reg: ", "403"], REGISTRATION_BOUND);
    assert!(
        line.is_some(),
        "baresip did not report the refused registration within {REGISTRATION_BOUND:?}:\n{}",
        phone.output()
    );
    assert!(
        !phone.output().contains("200 OK"),
        "a wrong password was accepted:\n{}",
        phone.output()
    );
    phone.stop();
}
