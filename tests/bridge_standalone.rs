//! The bridge on a door-intercom board: srgate in standalone mode is the registrar itself.
//! baresip registers at srgate as SIP user 1006 (1000 Hz tone, records, answers by itself);
//! headless Chromium is app user 1001 (440 Hz). Both directions with audio checked by
//! frequency, DTMF as SIP INFO from SIPp to the app, a stranger spraying RTP at srgate's
//! port who is never heard, hold, a session timer granted to a SIPp caller and its
//! refreshes answered, and 50 calls in a row that leave the process with the file
//! descriptors it had. In a private network namespace.

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use common::audio::write_tone;
use common::calls;
use common::phone::Phone;
use common::sip_phone::SipPhone;
use common::{GatewayConfig, Sipp, Srgate, TestDir};

const APP: &str = "1001";

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// An attacker at 127.0.0.2 sending well-formed PCMU RTP of a `hz` tone to every even
/// `port` (20 ms packets) until `stop`.
fn spray_rtp(ports: Vec<u16>, hz: f64, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.2:0").expect("127.0.0.2 is on loopback");
        let mut sent = 0u64;
        let mut packet = [0u8; 12 + 160];
        for n in 0..3000u32 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            packet[0] = 0x80;
            packet[1] = 0; // PCMU
            packet[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            packet[4..8].copy_from_slice(&(n * 160).to_be_bytes());
            packet[8..12].copy_from_slice(&0x5eed_0bad_u32.to_be_bytes());
            for (i, b) in packet[12..].iter_mut().enumerate() {
                let t = f64::from(n * 160 + i as u32) / 8000.0;
                let sample = (12_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
                *b = srgate::media::codec::g711::ulaw_encode(sample);
            }
            for &port in ports.iter().filter(|p| p.is_multiple_of(2)) {
                if socket.send_to(&packet, ("127.0.0.1", port)).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    })
}

/// SIPp as SIP user 1007 (digest at srgate) calling the app user with `scenario`.
fn sip_user_1007_calls_the_app(
    scenario: &str,
    gw: std::net::SocketAddr,
    dir: &std::path::Path,
) -> Sipp {
    Sipp::spawn(
        scenario,
        &[
            "-s",
            APP,
            "-key",
            "caller",
            "1007",
            "-au",
            "1007",
            "-ap",
            "1007pw",
            &gw.to_string(),
        ],
        dir,
    )
}

fn ready() -> bool {
    common::netns::available()
        && common::phone::available()
        && common::peers_available(&[common::BARESIP, common::SIPP])
}

#[test]
fn standalone_gateway_bridges_a_registered_phone_and_an_app_user() {
    if !ready()
        || !common::netns::enter(
            "standalone_gateway_bridges_a_registered_phone_and_an_app_user",
            Duration::from_secs(420),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-standalone");
    let browser_tone = dir.join("tone440.wav");
    let phone_tone = dir.join("tone1000.wav");
    write_tone(&browser_tone, 440.0, 30.0, 48_000);
    write_tone(&phone_tone, 1000.0, 120.0, 8000);

    let mut config = GatewayConfig::standalone();
    config.users = vec![
        ("1006".into(), "1006pw".into()),
        ("1007".into(), "1007pw".into()),
    ];
    // baresip 1.0 gives up on any 401 that offers SHA-256 ("Function not implemented"): MD5 only.
    config.extra =
        "[media]\nrtp_ports = 32000-32999\nrtp_timeout = 3\n[sip]\ndigest = md5\n".into();
    let srgate = Srgate::start(config, dir.path());
    let gw = srgate.sip_addr();
    let sip = SipPhone::registered(
        dir.path(),
        gw,
        "1006",
        "1006pw",
        &phone_tone,
        Duration::from_secs(10),
        "",
    );
    let url = format!("http://{}/", srgate.web_addr());
    let mut app = Phone::start(&url, &browser_tone);
    app.must(json!({"cmd": "login", "user": APP}));

    // app → registered phone
    calls::app_calls_phone(&mut app, &sip, "1006", 3);
    // registered phone → app (digest 407 at srgate), the phone hangs up
    calls::phone_calls_app(&mut app, &sip, &format!("sip:{APP}@{gw}"));

    // A stranger who knows srgate's RTP port for the call (here: reads it off the
    // namespace's socket table) and sprays a 3000 Hz tone at it from before the phone's
    // first packet to the end of the call is never heard: the phone's SDP names 127.0.0.1.
    sip.dial(&format!("sip:{APP}@{gw}"));
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    let ports = common::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        // srgate's RTP and RTCP ports: nothing else in this namespace binds there
        let ports: Vec<u16> = common::net::bound_ports(true)
            .into_iter()
            .filter(|p| (32000..=32999).contains(p))
            .collect();
        Some(ports).filter(|p| !p.is_empty())
    })
    .expect("srgate bound the call's RTP port");
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = spray_rtp(ports, 3000.0, stop.clone());
    std::thread::sleep(Duration::from_millis(300)); // a dozen packets before the answer
    app.must(json!({"cmd": "accept"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    stop.store(true, Ordering::SeqCst);
    let sent = attacker.join().expect("the attacker thread ends");
    assert!(sent >= 60, "the attacker sent {sent} packets");
    let hz = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        (hz - 1000.0).abs() <= 25.0,
        "the browser hears the phone's 1000 Hz, not the stranger's 3000 Hz: {heard}"
    );
    sip.hangup();
    app.must(json!({"cmd": "wait_end", "timeout": 10}));
    // the stranger's packets did arrive, and were refused (the call's CDR line)
    let cdr = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let text = std::fs::read_to_string(dir.join("srgate-cdr.jsonl")).ok()?;
        let last: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
        (last["sip"]["refused"].as_u64()? > 0).then_some(last)
    })
    .expect("a CDR line for the call");
    let refused = cdr["sip"]["refused"].as_u64().unwrap_or(0);
    assert!(
        refused >= 50,
        "srgate refused {refused} of the stranger's packets: {cdr}"
    );

    // SIP INFO DTMF from a SIP caller (SIPp as user 1007) reaches the app
    let sipp = sip_user_1007_calls_the_app("uac_info_dtmf.xml", gw, dir.path());
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "accept"}));
    let dtmf = app.must(json!({"cmd": "wait_dtmf", "count": 2, "timeout": 15}));
    assert_eq!(dtmf["digits"], "79", "{dtmf}");
    let end = app.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    sipp.wait(Duration::from_secs(20))
        .assert_success("SIP INFO DTMF scenario");

    // RFC 4733 events from a SIP caller (SIPp playing its own captures of 5 and #)
    let sipp = sip_user_1007_calls_the_app("uac_rfc4733_dtmf.xml", gw, dir.path());
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "accept"}));
    let dtmf = app.must(json!({"cmd": "wait_dtmf", "count": 4, "timeout": 15}));
    assert_eq!(
        dtmf["digits"], "795#",
        "after the INFO digits 7 and 9: {dtmf}"
    );
    app.must(json!({"cmd": "wait_end", "timeout": 10}));
    sipp.wait(Duration::from_secs(20))
        .assert_success("RFC 4733 DTMF scenario");

    // A hold (re-INVITE a=inactive) longer than rtp_timeout keeps the call; after it,
    // a SIP side that sends no RTP gets a BYE after rtp_timeout and the app a TIMEOUT.
    let sipp = sip_user_1007_calls_the_app("uac_hold_then_silence.xml", gw, dir.path());
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "accept"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    let end = app.must(json!({"cmd": "wait_end", "timeout": 25}));
    assert_eq!(end["reason"], "TIMEOUT", "{end}");
    sipp.wait(Duration::from_secs(30))
        .assert_success("hold answered inactive and kept, then BYE after rtp_timeout");

    // A caller with session timers (RFC 4028) gets its interval granted with itself as
    // refresher, and its refreshes (UPDATE) are answered with the interval again
    let sipp = sip_user_1007_calls_the_app("uac_session_timer.xml", gw, dir.path());
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "accept"}));
    let end = app.must(json!({"cmd": "wait_end", "timeout": 15}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    sipp.wait(Duration::from_secs(20))
        .assert_success("session interval granted, two refreshes answered, BYE");

    // 50 calls in a row leave nothing behind (after one to warm up)
    let pid = srgate.pid().expect("srgate runs");
    let one_call = |app: &mut Phone| {
        app.must(json!({"cmd": "call", "callee": "1006"}));
        app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
        app.must(json!({"cmd": "hangup"}));
        app.must(json!({"cmd": "wait_end"}));
    };
    one_call(&mut app);
    std::thread::sleep(Duration::from_millis(300));
    let fds_before = open_fds(pid);
    let ended_before = srgate.metric("calls_ended_total");
    for _ in 0..50 {
        one_call(&mut app);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(srgate.metric("calls_ended_total"), ended_before + 50);
    // every one of them is in the histograms: answered, and its media's loss
    assert!(srgate.metric("call_answer_seconds_count") >= 50);
    assert!(srgate.metric("call_loss_ratio_count") >= 50);
    assert!(
        srgate.metric("call_loss_ratio_bucket{le=\"0.01\"}") >= 50,
        "calls on loopback lose under 1 %"
    );
    // and their jitter, measured on what a leg sent srgate: a call hung up at once may have
    // carried one packet per leg (no jitter yet), but not all of them
    let jittered = srgate.metric("call_jitter_seconds_count");
    assert!(jittered >= 1, "no call's jitter was measured");
    assert_eq!(
        srgate.metric("call_jitter_seconds_bucket{le=\"0.1\"}"),
        jittered,
        "calls on loopback have under 100 ms of jitter"
    );
    assert_eq!(srgate.health().unwrap().calls, 0);
    assert_eq!(srgate.metric("rtp_ports_in_use"), 0);
    assert_eq!(
        open_fds(pid),
        fds_before,
        "srgate holds the file descriptors (sockets) it held before the 50 calls"
    );
}
