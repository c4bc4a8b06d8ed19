//! The bridge end to end, the way SRProxy's users run it: Kamailio is the PBX at
//! `sip_svr` (srgate's proxy account 1000 registers there; its route sends calls for
//! unregistered 4-digit numbers to 1000 with `X-Number`, like SRProxy's FreeSWITCH
//! dialplan), baresip is SIP phone 1006 (plays a 1000 Hz tone, records what it hears,
//! answers by itself), headless Chromium is app user 1001 on srgate's demo page (plays a
//! 440 Hz tone). Everything runs in a private network namespace with loopback only.
//!
//! Checked: both directions with audio by frequency both ways, hangup from each side,
//! refuse → 486, caller cancels → CANCELED, no answer → INVITATION_EXPIRE and 480, app
//! user not logged in → 480, DTMF from the browser reaches baresip, a PCMU-only browser
//! is relayed without transcoding, 183 early media is heard before the answer, every call
//! leaves a CDR line, and nothing is left.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::audio::{close_to, dominant_frequency, read_wav, rms_dbfs, write_tone};
use common::phone::Phone;
use common::sip_phone::SipPhone;
use common::{GatewayConfig, Kamailio, Sipp, Srgate, TestDir, free_ports};

const APP: &str = "1001";

/// What baresip heard in its last call: its dominant frequency.
fn baresip_heard(phone: &SipPhone) -> f64 {
    let file = phone.last_recording().expect("baresip recorded the call");
    let (pcm, rate) = read_wav(&file).expect("a WAV recording");
    // Skip the first half second (jitter buffer fill, codec start).
    let skip = (rate / 2) as usize;
    let pcm = pcm.get(skip..).unwrap_or(&[]);
    assert!(
        rms_dbfs(pcm) > -40.0,
        "baresip's recording is silent ({:.1} dBFS, {} samples)",
        rms_dbfs(pcm),
        pcm.len()
    );
    dominant_frequency(pcm, rate)
}

fn ready() -> bool {
    common::netns::available()
        && common::phone::available()
        && common::peers_available(&[common::KAMAILIO, common::BARESIP])
}

#[test]
fn app_and_sip_phone_call_each_other_through_kamailio() {
    if !ready()
        || !common::netns::enter(
            "app_and_sip_phone_call_each_other_through_kamailio",
            Duration::from_secs(420),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-kamailio");
    let browser_tone = dir.join("tone440.wav");
    let phone_tone = dir.join("tone1000.wav");
    write_tone(&browser_tone, 440.0, 30.0, 48_000);
    write_tone(&phone_tone, 1000.0, 60.0, 8000);

    let [kamailio_port] = free_ports::<1>();
    let kamailio = Kamailio::start(dir.path(), kamailio_port, "1000");
    let mut config = GatewayConfig::proxy(kamailio.addr());
    config.extra = "[calls]\ninvitation_timeout = 8\n[media]\nrtp_ports = 31000-31999\n".into();
    let srgate = Srgate::start(config, dir.path());
    assert!(
        srgate
            .wait_registered(true, Duration::from_secs(10))
            .is_some(),
        "srgate's proxy account registers at Kamailio"
    );
    let sip = SipPhone::start(
        dir.path(),
        "baresip-1006",
        &format!(
            "<sip:1006@127.0.0.1:{kamailio_port};transport=udp>;auth_pass=1006pw;regint=60;answermode=auto"
        ),
        &phone_tone,
    );
    assert!(
        sip.wait_for_line(0, &["1006@127.0.0.1", "200 OK"], Duration::from_secs(10))
            .is_some(),
        "baresip registers at Kamailio:\n{}",
        sip.output()
    );
    let url = format!("http://{}/", srgate.web_addr());
    let mut app = Phone::start(&url, &browser_tone);
    app.must(json!({"cmd": "login", "user": APP}));

    // 1. app → SIP phone: audio both ways, DTMF to the phone, the app hangs up.
    let mark = sip.mark();
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    let heard = app.must(json!({"cmd": "measure", "seconds": 3}));
    let hz = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        close_to(hz, 1000.0),
        "the browser hears baresip's 1000 Hz: {heard}"
    );
    app.must(json!({"cmd": "dtmf", "digits": "123#"}));
    // baresip prints "received event: 'D' (end=1)" once per RFC 4733 event it got.
    let got = sip.wait_for_line(
        mark,
        &["received event: '#' (end=1)"],
        Duration::from_secs(5),
    );
    let events = &sip.output()[mark..];
    assert!(
        got.is_some()
            && ["1", "2", "3", "#"]
                .iter()
                .all(|d| events.contains(&format!("received event: '{d}' (end=1)"))),
        "baresip received DTMF 123# as RFC 4733 events:\n{events}"
    );
    app.must(json!({"cmd": "hangup"}));
    let end = app.must(json!({"cmd": "wait_end"}));
    assert_eq!(end["reason"], "LOCAL", "{end}");
    assert!(
        sip.wait_for_line(mark, &["session closed"], Duration::from_secs(5))
            .is_some()
            || sip
                .wait_for_line(mark, &["terminated"], Duration::from_secs(1))
                .is_some(),
        "baresip saw the BYE:\n{}",
        &sip.output()[mark..]
    );
    let phone_hz = baresip_heard(&sip);
    assert!(
        close_to(phone_hz, 440.0),
        "baresip heard the browser's 440 Hz, got {phone_hz}"
    );
    assert!(srgate.metric("calls_transcoded_total") >= 1);

    // 2. app → SIP phone, the phone hangs up: the browser sees REMOTE.
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    std::thread::sleep(Duration::from_millis(500));
    sip.hangup();
    let end = app.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");

    // 3. SIP phone → app through Kamailio's X-Number route: accept, audio both ways.
    let mark = sip.mark();
    sip.dial(&format!("sip:{APP}@127.0.0.1:{kamailio_port}"));
    let invite = app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    assert_eq!(invite["peer"], "1006", "{invite}");
    app.must(json!({"cmd": "accept"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    let heard = app.must(json!({"cmd": "measure", "seconds": 3}));
    let hz = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        close_to(hz, 1000.0),
        "the browser hears baresip's 1000 Hz: {heard}"
    );
    // RFC 4733 events from the phone reach the app as dtmf messages, one per digit.
    for d in ["4", "5", "*"] {
        sip.send(d);
        std::thread::sleep(Duration::from_millis(300));
    }
    let dtmf = app.must(json!({"cmd": "wait_dtmf", "count": 3, "timeout": 5}));
    assert_eq!(dtmf["digits"], "45*", "{dtmf}");
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    assert!(
        sip.wait_for_line(mark, &["session closed"], Duration::from_secs(5))
            .is_some(),
        "{}",
        &sip.output()[mark..]
    );
    let phone_hz = baresip_heard(&sip);
    assert!(
        close_to(phone_hz, 440.0),
        "baresip heard the browser's 440 Hz, got {phone_hz}"
    );

    // 4. refused by the app → the phone gets 486.
    let mark = sip.mark();
    sip.dial(&format!("sip:{APP}@127.0.0.1:{kamailio_port}"));
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "refuse"}));
    assert!(
        sip.wait_for_line(mark, &["486"], Duration::from_secs(5))
            .is_some(),
        "baresip sees 486:\n{}",
        &sip.output()[mark..]
    );

    // 5. the phone gives up while the app rings → the app sees CANCELED.
    sip.dial(&format!("sip:{APP}@127.0.0.1:{kamailio_port}"));
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    std::thread::sleep(Duration::from_millis(300));
    sip.hangup();
    let end = app.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "CANCELED", "{end}");

    // 6. nobody answers → INVITATION_EXPIRE for the app, 480 for the phone.
    let mark = sip.mark();
    sip.dial(&format!("sip:{APP}@127.0.0.1:{kamailio_port}"));
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    let end = app.must(json!({"cmd": "wait_end", "timeout": 15}));
    assert_eq!(
        (end["reason"].as_str(), end["error"].as_str()),
        (Some("FAILURE"), Some("INVITATION_EXPIRE")),
        "{end}"
    );
    assert!(
        sip.wait_for_line(mark, &["480"], Duration::from_secs(5))
            .is_some(),
        "{}",
        &sip.output()[mark..]
    );

    // 7. early media: phone 1009 (SIPp) answers 183 with SDP and plays a 700 Hz tone (PCMA,
    // 20 ms packets) for 4 s before its 200: the browser hears it while the call is
    // RECEIVED_BY_REMOTE.
    let status = std::process::Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-e", "a-law"])
        .arg(dir.join("early.wav"))
        .args(["synth", "10", "sine", "700"])
        .status()
        .expect("sox runs");
    assert!(status.success(), "sox wrote the A-law tone");
    let early_phone = Sipp::spawn("uas_early_media.xml", &[], dir.path());
    assert!(early_phone.wait_listening(Duration::from_secs(5)));
    let contact_port = early_phone.local_addr().port().to_string();
    Sipp::call(
        "register_contact.xml",
        kamailio.addr(),
        &[
            "-s",
            "1009",
            "-au",
            "1009",
            "-ap",
            "1009pw",
            "-key",
            "contact_port",
            &contact_port,
        ],
        dir.path(),
        Duration::from_secs(15),
    )
    .assert_success("phone 1009 registers at Kamailio");
    app.must(json!({"cmd": "call", "callee": "1009"}));
    app.must(json!({"cmd": "wait_state", "states": ["RECEIVED_BY_REMOTE"], "timeout": 10}));
    std::thread::sleep(Duration::from_millis(800));
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    let hz = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    let still_early =
        app.must(json!({"cmd": "wait_state", "states": ["RECEIVED_BY_REMOTE"], "timeout": 1}));
    assert!(
        close_to(hz, 700.0) && still_early["state"] == "RECEIVED_BY_REMOTE",
        "the phone's 700 Hz early media is heard before the answer: {heard} {still_early}"
    );
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 10}));
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    early_phone
        .wait(Duration::from_secs(20))
        .assert_success("the early-media phone got ACK and BYE");

    // 8. a browser that offers PCMU only is relayed, not transcoded.
    let relayed = srgate.metric("calls_relayed_total");
    app.must(json!({"cmd": "only_codecs", "mime": ["audio/PCMU", "audio/telephone-event"]}));
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    let heard = app.must(json!({"cmd": "measure", "seconds": 3}));
    let hz = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(close_to(hz, 1000.0), "relayed audio: {heard}");
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    assert_eq!(srgate.metric("calls_relayed_total"), relayed + 1);

    // 9. the app user is gone → the phone gets 480.
    drop(app);
    std::thread::sleep(Duration::from_secs(11)); // the reconnection grace
    let mark = sip.mark();
    sip.dial(&format!("sip:{APP}@127.0.0.1:{kamailio_port}"));
    assert!(
        sip.wait_for_line(mark, &["480"], Duration::from_secs(8))
            .is_some(),
        "{}",
        &sip.output()[mark..]
    );

    // Nothing is left; every call has its record.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(srgate.health().unwrap().calls, 0);
    assert_eq!(srgate.metric("rtp_ports_in_use"), 0);
    let cdr = std::fs::read_to_string(dir.join("srgate-cdr.jsonl")).unwrap_or_default();
    let records: Vec<Value> = cdr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.len() >= 8, "CDR lines: {cdr}");
    assert!(
        records
            .iter()
            .any(|r| r["direction"] == "sip_to_app" && r["sip_code"] == 486),
        "{cdr}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["direction"] == "app_to_sip" && r["mode"] == "relay"),
        "{cdr}"
    );
    drop(kamailio);
}
