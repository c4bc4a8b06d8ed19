//! Session timers (RFC 4028) with real SIP agents, on a short interval: a SIP ↔ SIP call
//! of standalone mode from SIPp as 1007 — who asks srgate to refresh (`refresher=uas`) —
//! to SIPp as the phone 1006 — who makes srgate the refresher of the other leg too
//! (`refresher=uac` in its 200 to srgate's INVITE, which must ask for `[sip]
//! session_expires = 90`). srgate must refresh both legs by UPDATE about half an interval
//! after their answer (not at once, not never), each agent answers, and the caller's BYE
//! ends the callee's leg. SIPp sends no RTP: `rtp_timeout` is set above the wait.

mod common;

use std::time::{Duration, Instant};

use common::{Sipp, TestDir};

#[test]
#[allow(clippy::disallowed_methods)] // the wall clock: the refreshes must come late enough
fn srgate_refreshes_both_legs_of_a_call_at_half_the_session_interval() {
    if !common::peers_available(&[common::SIPP]) {
        return;
    }
    let dir = TestDir::new("session-timers");
    let srgate = common::calls::standalone_gateway(
        &dir,
        &["1006", "1007"],
        "session_expires = 90\n[media]\nrtp_timeout = 120\n",
    );
    let gw = srgate.sip_addr();

    // the phone 1006: registered from the port its answering SIPp then listens on (srgate
    // sends a phone's calls where its REGISTER came from)
    let [port_number] = common::net::free_ports::<1>();
    let port = port_number.to_string();
    Sipp::call(
        "register_contact.xml",
        gw,
        &[
            "-s",
            "1006",
            "-au",
            "1006",
            "-ap",
            "1006pw",
            "-key",
            "contact_port",
            &port,
            "-p",
            &port,
        ],
        dir.path(),
        Duration::from_secs(15),
    )
    .assert_success("phone 1006 registers");
    let wait = ["-recv_timeout", "80000"];
    let mut phone_args = vec!["-p", port.as_str(), "-s", "1006"];
    phone_args.extend(wait);
    let phone = Sipp::spawn("uas_session_refreshed.xml", &phone_args, dir.path());
    // (its own `-p` overrides the one the helper picked)
    assert!(common::net::wait_port_bound(
        port_number,
        true,
        Duration::from_secs(5)
    ));

    let started = Instant::now();
    let gw_text = gw.to_string();
    let mut caller_args = vec![
        "-s", "1006", "-key", "caller", "1007", "-au", "1007", "-ap", "1007pw",
    ];
    caller_args.extend(wait);
    caller_args.push(&gw_text);
    let caller = Sipp::spawn(
        "uac_session_refreshed_by_srgate.xml",
        &caller_args,
        dir.path(),
    );
    caller
        .wait(Duration::from_secs(100))
        .assert_success("srgate grants refresher=uas and refreshes the caller's leg by UPDATE");
    phone
        .wait(Duration::from_secs(20))
        .assert_success("srgate asks for 90 s, refreshes the phone's leg by UPDATE, then BYE");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(44),
        "the refreshes came after half the interval, not at once ({took:?})"
    );
    assert!(
        !srgate.log().contains("panicked"),
        "srgate logged no internal error"
    );
    assert_eq!(srgate.health().map(|h| h.calls), Some(0), "the call ended");
}
