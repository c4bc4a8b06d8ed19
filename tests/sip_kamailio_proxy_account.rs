//! srgate's proxy account at a real registrar: Kamailio with digest auth (db_text user
//! 1000/1234). srgate registers; an OPTIONS to sip:1000 sent through Kamailio reaches
//! srgate and comes back 200; when Kamailio goes away srgate notices, and when Kamailio
//! comes back srgate registers again within twice its retry interval.

mod common;

use std::time::Duration;

use common::srgate::PROXY_ACCOUNT;
use common::{
    GatewayConfig, KAMAILIO, Kamailio, SIPP, Sipp, Srgate, TestDir, free_ports, peers_available,
};

const SIPP_BOUND: Duration = Duration::from_secs(20);

/// `[proxy] expires` for these tests; Kamailio's `min_expires` (5) grants it.
const EXPIRES_S: u32 = 10;

/// First registration: REGISTER, 401, REGISTER with digest, 200; a second is plenty on
/// loopback, the rest is slack for a loaded machine.
const FIRST_REGISTRATION_BOUND: Duration = Duration::from_secs(8);

/// After the registrar vanishes, the binding it granted runs out at most `EXPIRES_S` after
/// the last successful refresh, which was at most `EXPIRES_S` before the registrar went.
/// From then on srgate is not registered and `/health` must say so. 3 s of slack for the
/// poll interval and a loaded machine.
const NOTICE_BOUND: Duration = Duration::from_secs(EXPIRES_S as u64 + 3);

/// Re-registration bound after the registrar is back, as srgate documents it: failed attempts are
/// retried after 2, 4, 8 ... 60 s. Kamailio is down for at most NOTICE_BOUND (13 s) here,
/// so at most three waits (2 + 4 + 8 = 14 s) can have started and the current wait is at
/// most 8 s; a REGISTER still in flight when Kamailio returns is retransmitted at least every
/// T2 = 4 s and answered at once. Either way srgate is registered within one retry interval
/// (8 s); the bound allows two: 2 x 8 s.
const REREGISTER_BOUND: Duration = Duration::from_secs(2 * 8);

fn start_kamailio_and_srgate(dir: &TestDir) -> (Kamailio, Srgate) {
    let [kamailio_port] = free_ports::<1>();
    let kamailio = Kamailio::start(dir.path(), kamailio_port, PROXY_ACCOUNT);
    let mut config = GatewayConfig::proxy(kamailio.addr());
    config.expires = EXPIRES_S;
    let srgate = Srgate::start(config, dir.path());
    let took = srgate.wait_registered(true, FIRST_REGISTRATION_BOUND);
    assert!(
        took.is_some(),
        "srgate did not register its proxy account at Kamailio within \
         {FIRST_REGISTRATION_BOUND:?}: {:?}\n----- Kamailio -----\n{}",
        srgate.health(),
        kamailio.output()
    );
    (kamailio, srgate)
}

#[test]
fn proxy_account_registers_and_answers_options_through_kamailio() {
    if !peers_available(&[SIPP, KAMAILIO]) {
        return;
    }
    let dir = TestDir::new("kamailio-proxy-account");
    let (kamailio, srgate) = start_kamailio_and_srgate(&dir);

    // Kamailio knows sip:1000 only through srgate's registration: it looks the account up
    // and relays the OPTIONS to srgate's contact; without that binding it answers 404
    let run = Sipp::call(
        "options.xml",
        kamailio.addr(),
        &["-s", PROXY_ACCOUNT],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("OPTIONS to sip:1000 through Kamailio");
    let log = kamailio.output();
    let routed = format!("127.0.0.1:{}", srgate.sip_addr().port());
    assert!(
        log.lines()
            .any(|line| line.contains("ROUTE OPTIONS to registered 1000") && line.contains(&routed)),
        "Kamailio did not route the OPTIONS to srgate's contact ({routed}):\n{log}"
    );
}

#[test]
fn proxy_account_registers_again_after_kamailio_restarts() {
    if !peers_available(&[KAMAILIO]) {
        return;
    }
    let dir = TestDir::new("kamailio-restart");
    let (mut kamailio, srgate) = start_kamailio_and_srgate(&dir);

    kamailio.stop();
    let noticed = srgate.wait_registered(false, NOTICE_BOUND);
    assert!(
        noticed.is_some(),
        "srgate still reports registered {NOTICE_BOUND:?} after its registrar stopped \
         (expires = {EXPIRES_S} s): {:?}",
        srgate.health()
    );

    // Kamailio keeps its bindings in memory only (usrloc db_mode 0): after the restart it
    // knows nothing of srgate, so "registered" can only come from a new REGISTER
    kamailio.restart();
    let took = srgate.wait_registered(true, REREGISTER_BOUND);
    assert!(
        took.is_some(),
        "srgate did not register again within {REREGISTER_BOUND:?} after Kamailio came back \
         (noticed the loss after {noticed:?}): {:?}\n----- Kamailio -----\n{}",
        srgate.health(),
        kamailio.output()
    );
    eprintln!(
        "registration loss noticed after {:?}; registered again {:?} after Kamailio restarted",
        noticed.unwrap_or_default(),
        took.unwrap_or_default()
    );
    assert!(
        kamailio
            .output()
            .lines()
            .filter(|line| line.contains("REGISTERED 1000"))
            .count()
            >= 2,
        "Kamailio did not log a registration of 1000 after its restart"
    );
}
