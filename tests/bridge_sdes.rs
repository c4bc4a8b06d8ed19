//! SRTP toward SIP keyed by SDES (RFC 4568), end to end: srgate in standalone mode with
//! `[media] sip_srtp = mandatory`; baresip registers as SIP user 1006 with its srtp module
//! and `mediaenc=srtp-mand` (it offers RTP/SAVP with a=crypto and accepts nothing plain;
//! 1000 Hz tone, records, answers by itself); headless Chromium is app user 1001 (440 Hz).
//! Both directions with audio checked by frequency; a plain baresip (1007) is refused with
//! 488; then srgate with `sip_srtp = off` refuses baresip's RTP/SAVP offer with 488. In a
//! private network namespace.

mod common;

use std::time::Duration;

use serde_json::json;

use common::audio::{dominant_frequency, read_wav, write_tone};
use common::phone::Phone;
use common::sip_phone::SipPhone;
use common::{GatewayConfig, Srgate, TestDir};

const APP: &str = "1001";
const SRTP: &str = ";mediaenc=srtp-mand";

fn ready() -> bool {
    common::netns::available()
        && common::phone::available()
        && common::peers_available(&[common::BARESIP])
}

/// Standalone srgate with users 1006 and 1007 and `[media] sip_srtp = <mode>`.
fn gateway(dir: &TestDir, mode: &str) -> Srgate {
    let mut config = GatewayConfig::standalone();
    config.users = vec![
        ("1006".into(), "1006pw".into()),
        ("1007".into(), "1007pw".into()),
    ];
    // baresip 1.0 gives up on any 401 that offers SHA-256: MD5 only.
    config.extra = format!(
        "[media]\nrtp_ports = 32000-32999\nrtp_timeout = 3\nsip_srtp = {mode}\n\
         [sip]\ndigest = md5\n"
    );
    Srgate::start(config, dir.path())
}

fn assert_hears(app: &mut Phone, hz: f64) {
    let heard = app.must(json!({"cmd": "measure", "seconds": 3}));
    let got = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!((got - hz).abs() <= 25.0, "browser hears {hz} Hz: {heard}");
}

fn assert_phone_heard(phone: &SipPhone, hz: f64) {
    let (pcm, rate) = read_wav(&phone.last_recording().expect("a recording")).unwrap();
    let got = dominant_frequency(pcm.get(rate as usize / 2..).unwrap_or(&[]), rate);
    assert!((got - hz).abs() <= 25.0, "baresip hears {hz} Hz, got {got}");
}

#[test]
fn sdes_srtp_calls_both_ways_and_the_policy_refusals() {
    if !ready()
        || !common::netns::enter(
            "sdes_srtp_calls_both_ways_and_the_policy_refusals",
            Duration::from_secs(420),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-sdes");
    let browser_tone = dir.join("tone440.wav");
    let phone_tone = dir.join("tone1000.wav");
    write_tone(&browser_tone, 440.0, 30.0, 48_000);
    write_tone(&phone_tone, 1000.0, 120.0, 8000);

    let srgate = gateway(&dir, "mandatory");
    let gw = srgate.sip_addr();
    let within = Duration::from_secs(10);
    let sip = SipPhone::registered(dir.path(), gw, "1006", "1006pw", &phone_tone, within, SRTP);
    let url = format!("http://{}/", srgate.web_addr());
    let mut app = Phone::start(&url, &browser_tone);
    app.must(json!({"cmd": "login", "user": APP}));

    // app → phone: srgate offers RTP/SAVP with a=crypto, baresip (SRTP only) answers
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    assert_hears(&mut app, 1000.0);
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    assert_phone_heard(&sip, 440.0);

    // phone → app: baresip offers RTP/SAVP, srgate answers with a key of its own
    sip.dial(&format!("sip:{APP}@{gw}"));
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "accept"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    assert_hears(&mut app, 1000.0);
    sip.hangup();
    let end = app.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    assert_phone_heard(&sip, 440.0);
    let log = srgate.log();
    assert!(
        log.contains("SRTP port"),
        "srgate logs the SRTP leg:\n{log}"
    );
    assert!(!log.contains("inline:"), "no SDES key in srgate's log");

    // mandatory: a plain RTP/AVP offer is refused
    let plain = SipPhone::registered(dir.path(), gw, "1007", "1007pw", &phone_tone, within, "");
    let mark = plain.mark();
    plain.dial(&format!("sip:{APP}@{gw}"));
    assert!(
        plain
            .wait_for_line(mark, &["488"], Duration::from_secs(15))
            .is_some(),
        "srgate refuses a plain offer with 488:\n{}",
        plain.output()
    );
    drop(plain);
    drop(sip);
    drop(app);
    drop(srgate);

    // off: baresip's RTP/SAVP offer is refused, never answered in the clear
    let dir = TestDir::new("bridge-sdes-off");
    let srgate = gateway(&dir, "off");
    let gw = srgate.sip_addr();
    let sip = SipPhone::registered(dir.path(), gw, "1006", "1006pw", &phone_tone, within, SRTP);
    let url = format!("http://{}/", srgate.web_addr());
    let mut app = Phone::start(&url, &browser_tone);
    app.must(json!({"cmd": "login", "user": APP}));
    let mark = sip.mark();
    sip.dial(&format!("sip:{APP}@{gw}"));
    assert!(
        sip.wait_for_line(mark, &["488"], Duration::from_secs(15))
            .is_some(),
        "srgate (sip_srtp = off) refuses RTP/SAVP with 488:\n{}",
        sip.output()
    );
}

/// "Best effort" SRTP: baresip with `mediaenc=srtp` offers `RTP/AVP` with `a=crypto`.
/// With `sip_srtp = optional` srgate answers in kind (`RTP/AVP` with a key of its own) and
/// the call is SRTP; srgate's own offer toward it stays plain and baresip takes that; with
/// `sip_srtp = off` the same offer is answered plain (no 488), as the offer allows. Audio
/// is checked by frequency each time.
#[test]
fn best_effort_sdes_is_answered_in_kind_or_plain_where_srtp_is_off() {
    if !ready()
        || !common::netns::enter(
            "best_effort_sdes_is_answered_in_kind_or_plain_where_srtp_is_off",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let browser_tone_hz = 440.0;
    for mode in ["optional", "off"] {
        let dir = TestDir::new(&format!("bridge-sdes-best-effort-{mode}"));
        let browser_tone = dir.join("tone440.wav");
        let phone_tone = dir.join("tone1000.wav");
        write_tone(&browser_tone, browser_tone_hz, 30.0, 48_000);
        write_tone(&phone_tone, 1000.0, 120.0, 8000);
        let srgate = gateway(&dir, mode);
        let gw = srgate.sip_addr();
        let within = Duration::from_secs(10);
        let sip = SipPhone::registered(
            dir.path(),
            gw,
            "1006",
            "1006pw",
            &phone_tone,
            within,
            ";mediaenc=srtp",
        );
        let url = format!("http://{}/", srgate.web_addr());
        let mut app = Phone::start(&url, &browser_tone);
        app.must(json!({"cmd": "login", "user": APP}));

        // phone → app: the best-effort offer
        sip.dial(&format!("sip:{APP}@{gw}"));
        app.must(json!({"cmd": "wait_invite", "timeout": 15}));
        app.must(json!({"cmd": "accept"}));
        app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
        assert_hears(&mut app, 1000.0);
        sip.hangup();
        let end = app.must(json!({"cmd": "wait_end", "timeout": 10}));
        assert_eq!(end["reason"], "REMOTE", "{mode}: {end}");
        assert_phone_heard(&sip, browser_tone_hz);
        let log = srgate.log();
        let srtp = log.contains("SRTP port");
        assert_eq!(
            srtp,
            mode == "optional",
            "{mode}: the call is SRTP exactly where srgate takes SRTP:\n{log}"
        );
        assert!(!log.contains("inline:"), "no SDES key in srgate's log");

        // app → phone: srgate's plain offer, which baresip takes
        app.must(json!({"cmd": "call", "callee": "1006"}));
        app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
        assert_hears(&mut app, 1000.0);
        app.must(json!({"cmd": "hangup"}));
        app.must(json!({"cmd": "wait_end"}));
        assert_phone_heard(&sip, browser_tone_hz);
    }
}
