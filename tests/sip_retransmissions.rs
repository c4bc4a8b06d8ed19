//! Retransmissions over UDP (RFC 3261 section 17): srgate as UAS repeats its final response
//! to an INVITE until the ACK comes (timer G), and as UAC repeats its REGISTER when the
//! registrar's answer does not come (timer E), with the same branch.

mod common;

use std::time::Duration;

use common::{GatewayConfig, SIPP, Sipp, Srgate, TestDir, peers_available};

const SIPP_BOUND: Duration = Duration::from_secs(20);

#[test]
fn final_response_to_invite_is_retransmitted_until_ack() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("final-response-retransmitted");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    // -nr: SIPp itself must not absorb the repeated 480 as a retransmission
    let run = Sipp::call(
        "invite_final_response_retransmitted.xml",
        srgate.sip_addr(),
        &[
            "-nr", "-s", "2001", "-key", "caller", "1001", "-au", "1001", "-ap", "pw1001",
        ],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("480 withheld ACK, repeated 480 within 2 s");
}

#[test]
fn proxy_account_register_is_retransmitted_when_the_registrar_drops_it() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("register-retransmitted");
    // the registrar (SIPp, server scenario) must listen before srgate sends its REGISTER
    let registrar = Sipp::spawn(
        "registrar_drops_first_register.xml",
        &[
            "-nr",
            "-key",
            "user",
            "1000",
            "-key",
            "pass",
            "1234",
            "-key",
            "expires",
            "60",
            "-recv_timeout",
            "15000",
        ],
        dir.path(),
    );
    assert!(
        registrar.wait_listening(Duration::from_secs(5)),
        "SIPp registrar did not bind its port"
    );
    let srgate = Srgate::start(GatewayConfig::proxy(registrar.local_addr()), dir.path());

    let run = registrar.wait(SIPP_BOUND);
    run.assert_success("registrar saw REGISTER twice (same branch), then a right digest");
    let registered = srgate.wait_registered(true, Duration::from_secs(5));
    assert!(
        registered.is_some(),
        "registrar answered 200 but /health says unregistered: {:?}",
        srgate.health()
    );
}
