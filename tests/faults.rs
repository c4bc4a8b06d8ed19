//! Faults during a call between headless Chromium (app user 1001, 440 Hz) and baresip
//! (SIP user 1006, 1000 Hz), with the audio measured, in a private network namespace:
//!
//! - 5 % of the media datagrams lost at random (nftables) both ways: the tone still comes
//!   through, at a level close to the unimpaired one;
//! - the browser's network cut for 5 s (its media and its WebSocket): the call survives
//!   (ICE consent allows 30 s, TCP retransmits) and the audio comes back;
//! - the phone vanishes (SIGKILL): srgate ends the call after `rtp_timeout` and tells the
//!   app (`TIMEOUT`); nothing is left;
//! - the registrar (Kamailio, proxy mode) restarts mid-call: the call goes on with its
//!   audio, the proxy account registers at the new instance, and the app's hang-up still
//!   reaches the phone through it.
//!
//! - 40 ms of jitter (packets overtaking each other: 30 ms packets) and 5 % loss from the
//!   SIP side: SIPp plays a capture the test writes with those send times, once clean and
//!   once impaired; the browser hears the tone at a level close to the clean call's.
//!
//! This kernel has no netem (CONFIG_NET_SCH_NETEM is not set): jitter and reordering come
//! from the capture's send times instead, so they are tested toward the browser only.

mod common;

use std::time::Duration;

use serde_json::json;

use common::calls::{self, PHONE_HZ};
use common::nft::{self, Faults};
use common::pcap::{Impairment, write_g711_stream};
use common::phone::Phone;
use common::{GatewayConfig, Kamailio, Srgate, Stopwatch, TestDir, free_ports};
use srgate::media::codec::Law;

const APP: &str = "1001";

/// The browser's `measure` of `seconds`: (dominant frequency, RMS).
fn measure(app: &mut Phone, seconds: u32) -> (f64, f64) {
    let heard = app.must(json!({"cmd": "measure", "seconds": seconds}));
    calls::assert_heard(&heard, PHONE_HZ, "measure");
    (
        heard["dominant_hz"].as_f64().unwrap_or(0.0),
        heard["rms"].as_f64().unwrap_or(0.0),
    )
}

#[test]
fn a_call_carries_its_audio_through_loss_and_a_cut_and_ends_when_the_phone_vanishes() {
    if !calls::browser_and_baresip_ready()
        || !nft::available()
        || !common::netns::enter(
            "a_call_carries_its_audio_through_loss_and_a_cut_and_ends_when_the_phone_vanishes",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let dir = TestDir::new("faults-media");
    let tones = calls::tones(&dir, 60.0, 90.0);
    let (srgate, mut sip, mut app) =
        calls::standalone_pair(&dir, &tones, APP, "[media]\nrtp_timeout = 3\n");
    let sip_port = srgate.sip_addr().port();
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    let (_, clean_rms) = measure(&mut app, 2);

    // 5 % loss both ways (every media datagram on loopback passes the rule once)
    let loss = Faults::udp_loss(5, sip_port);
    let (_, lossy_rms) = measure(&mut app, 3);
    loss.clear();
    assert!(
        lossy_rms > clean_rms * 0.5,
        "with 5 % loss the tone keeps most of its level: RMS {lossy_rms} against {clean_rms}"
    );

    // the browser's network gone for 5 s — media and its WebSocket — then back: the
    // call survives (ICE consent allows 30 s, the WebSocket's TCP retransmits), and the
    // audio comes back
    let cut = Faults::browser_cut(srgate.config.webrtc_udp_port, srgate.config.webrtc_port);
    std::thread::sleep(Duration::from_secs(5));
    cut.clear();
    std::thread::sleep(Duration::from_secs(2));
    measure(&mut app, 2); // the phone's tone is heard again
    assert_eq!(
        srgate.health().expect("health").calls,
        1,
        "the call survived the cut"
    );
    let state =
        app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 1}));
    assert_eq!(
        state["state"], "ACCEPTED_BY_REMOTE",
        "the app's call is still up: {state}"
    );

    // the phone vanishes: no BYE from it, srgate notices by rtp_timeout
    let watch = Stopwatch::start();
    sip.vanish();
    let end = app.must(json!({"cmd": "wait_end", "timeout": 15}));
    assert_eq!(end["reason"], "TIMEOUT", "{end}");
    assert!(
        watch.elapsed() < Duration::from_secs(3 + 5),
        "ended {:?} after the phone vanished (rtp_timeout 3 s)",
        watch.elapsed()
    );
    let left = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        (srgate.health()?.calls == 0 && srgate.metric("rtp_ports_in_use") == 0).then_some(())
    });
    assert!(left.is_some(), "no call or port is left behind");
}

#[test]
fn a_call_goes_on_while_the_registrar_restarts() {
    if !calls::browser_and_baresip_ready()
        || !common::peers_available(&[common::KAMAILIO])
        || !common::netns::enter(
            "a_call_goes_on_while_the_registrar_restarts",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let dir = TestDir::new("faults-registrar");
    let tones = calls::tones(&dir, 60.0, 90.0);
    let [kamailio_port] = free_ports::<1>();
    let mut kamailio = Kamailio::start(dir.path(), kamailio_port, "1000");
    let mut config = GatewayConfig::proxy(kamailio.addr());
    config.expires = 10;
    let srgate = Srgate::start(config, dir.path());
    assert!(
        srgate
            .wait_registered(true, Duration::from_secs(10))
            .is_some(),
        "srgate's proxy account registers at Kamailio"
    );
    let sip = calls::phone_at_kamailio(&dir, &tones, kamailio_port);
    let mut app = calls::logged_in(&srgate, &tones, APP);
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    let answered = Stopwatch::start();
    measure(&mut app, 2);

    let registrations = |k: &Kamailio| k.output().matches("REGISTERED 1000").count();
    kamailio.stop();
    measure(&mut app, 2); // media does not pass through the registrar
    let before = registrations(&kamailio);
    kamailio.restart();
    // the restarted registrar knows nothing: srgate's next refresh (expires 10 s) fills it
    let again = common::wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        (registrations(&kamailio) > before).then_some(())
    });
    assert!(
        again.is_some(),
        "srgate registers at the restarted Kamailio:\n{}",
        kamailio.output()
    );
    // the call lasts 15 s at least: srgate's first sender report (5 s) and the phone's
    // next receiver report (its interval is about 5 s, randomized up to 1.5 ×) both come,
    // however fast the registrar came back
    measure(&mut app, 3);
    if let Some(rest) = Duration::from_secs(15).checked_sub(answered.elapsed()) {
        std::thread::sleep(rest);
    }
    assert_eq!(srgate.health().expect("health").calls, 1);

    // the app hangs up: the BYE follows the record-route through the new Kamailio
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    // baresip reports a remote BYE as "session closed: Connection reset by peer"
    assert!(
        sip.wait_for_line(0, &["session closed"], Duration::from_secs(10))
            .is_some(),
        "baresip got the BYE:\n{}",
        sip.output()
    );
    calls::assert_phone_heard_browser(&sip, "across the registrar's restart");
    // the call lasted long enough for RTCP both ways: its round-trip time (from the report
    // blocks naming srgate's sender reports) is in the histogram
    let rtt = common::wait_for(Duration::from_secs(3), Duration::from_millis(100), || {
        (srgate.metric("call_rtt_seconds_count") >= 1).then_some(())
    });
    assert!(rtt.is_some(), "the call's round-trip time was measured");
    assert!(
        srgate.metric("call_rtt_seconds_bucket{le=\"0.1\"}") >= 1,
        "under 100 ms between processes on one machine"
    );
}

/// SIPp (as SIP user 1006) calls the app with 6 s of a 1000 Hz tone in 30 ms PCMA packets,
/// sent as `impair` says; returns the browser's (frequency, RMS) over 2 s and the call's
/// CDR line.
fn call_from_a_capture(
    dir: &TestDir,
    srgate: &Srgate,
    app: &mut Phone,
    impair: Impairment,
) -> ((f64, f64), serde_json::Value) {
    let (sent, overtaking) = write_g711_stream(
        &dir.join("pcma_30ms.pcap"),
        Law::A,
        PHONE_HZ,
        30,
        6.0,
        impair,
    );
    if impair.jitter_ms > 30 {
        // delays up to 40 ms on 30 ms packets: a few overtake (4 of 188 with this seed)
        assert!(
            overtaking >= 3,
            "the capture reorders: {overtaking} of {sent}"
        );
    }
    let before = calls::cdr_count(dir);
    let sipp =
        calls::sipp_1006_calls_the_app("uac_pcma_30ms.xml", srgate.sip_addr(), dir, app, APP);
    std::thread::sleep(Duration::from_millis(500));
    let heard = measure(app, 2);
    app.must(json!({"cmd": "wait_end", "timeout": 15}));
    sipp.wait(Duration::from_secs(20))
        .assert_success("the capture played, BYE");
    let cdr = calls::last_cdr(dir, before);
    assert_eq!(cdr["codec_sip"], "PCMA", "{cdr}");
    (heard, cdr)
}

#[test]
fn jitter_reordering_and_loss_from_sip_are_absorbed() {
    if !common::netns::available()
        || !common::phone::available()
        || !common::peers_available(&[common::SIPP])
        || !common::netns::enter(
            "jitter_reordering_and_loss_from_sip_are_absorbed",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("faults-jitter");
    let tones = calls::tones(&dir, 60.0, 10.0);
    let srgate = calls::standalone_gateway(&dir, &["1006"], "");
    let mut app = calls::logged_in(&srgate, &tones, APP);

    let ((_, clean_rms), clean) =
        call_from_a_capture(&dir, &srgate, &mut app, Impairment::default());
    assert_eq!(clean["sip"]["lost"], 0, "{clean}");
    let impair = Impairment {
        jitter_ms: 40,
        loss_percent: 5,
    };
    let ((_, rms), cdr) = call_from_a_capture(&dir, &srgate, &mut app, impair);
    eprintln!(
        "clean RMS {clean_rms}, impaired RMS {rms}, lost {}, jitter histogram: {} calls",
        cdr["sip"]["lost"],
        srgate.metric("call_jitter_seconds_count")
    );
    assert!(
        cdr["sip"]["lost"].as_i64().unwrap_or(0) > 0,
        "the capture lost packets on the way: {cdr}"
    );
    assert!(
        rms > clean_rms * 0.7,
        "with 40 ms of jitter, reordering and 5 % loss the tone keeps its level: RMS {rms} \
         against {clean_rms} clean"
    );
}
