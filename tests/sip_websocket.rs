//! SIP over WebSocket (RFC 7118) with the real SIP stacks web developers use: the `jssip` and
//! `sip.js` npm packages run in headless Chromium (`tests/browser/sipws.mjs`) and register
//! at a standalone srgate's web listener as `[users]` user 1003 (digest); baresip is SIP
//! user 1006 over UDP. Each library calls baresip and is called by it, audio checked both
//! ways by frequency (440 Hz from the browser, 1000 Hz from baresip); with JsSIP also DTMF
//! both ways (SIP INFO and RFC 4733 from the page reach baresip as RFC 4733, baresip's RFC
//! 4733 reaches the page as SIP INFO), hold and resume by re-INVITE, a call to `echo`, and a JSON app
//! user calling the JsSIP user, a ring group ringing the JsSIP user (its `sip:` member) and
//! an app user, and un-REGISTER. In a private network namespace.

mod common;

use std::time::Duration;

use serde_json::json;

use common::calls::{self, BROWSER_HZ, PHONE_HZ, Tones};
use common::phone::Phone;
use common::sip_phone::SipPhone;
use common::{GatewayConfig, Srgate, TestDir};

const WS_USER: &str = "1003";
const WS_PASSWORD: &str = "1003-ws-pw";

fn ready() -> bool {
    calls::browser_and_baresip_ready()
}

/// srgate with users 1003 (the page) and 1006 (baresip, registered and answering by
/// itself), and the page's softphone registered as 1003 with `lib`.
/// `shards`: the calls spread over them (a worker shard makes the offer and answer of a
/// call it holds, with its own media address).
fn setup(dir: &TestDir, tones: &Tones, lib: &str, shards: usize) -> (Srgate, SipPhone, Phone) {
    let mut config = GatewayConfig::standalone();
    config.shards = shards;
    config.users = vec![
        (WS_USER.into(), WS_PASSWORD.into()),
        ("1006".into(), "1006pw".into()),
    ];
    // baresip 1.0 takes MD5 only; both libraries do MD5 too
    // ring group 301: the app user app-7 and SIP user 1003 (the page, over WebSocket)
    config.extra = "[sip]\ndigest = md5\n[media]\nrtp_ports = 32000-32999\n\
                    [groups]\n301 = app:app-7, sip:1003\n"
        .into();
    let srgate = Srgate::start(config, dir.path());
    let sip = SipPhone::registered(
        dir.path(),
        srgate.sip_addr(),
        "1006",
        "1006pw",
        &tones.phone,
        Duration::from_secs(10),
        "",
    );
    let url = format!("http://{}/", srgate.web_addr());
    let mut page = Phone::sip_ws(lib, &url, "127.0.0.1", &tones.browser);
    page.must(json!({"cmd": "register", "user": WS_USER, "password": WS_PASSWORD}));
    (srgate, sip, page)
}

/// The page calls baresip (1006): each hears the other; the page hangs up.
fn page_calls_phone(page: &mut Phone, sip: &SipPhone) {
    let mark = sip.mark();
    page.must(json!({"cmd": "call", "callee": "1006"}));
    page.must(json!({"cmd": "wait_established", "timeout": 20}));
    let heard = page.must(json!({"cmd": "measure", "seconds": 3}));
    calls::assert_heard(&heard, PHONE_HZ, "page → phone");
    page.must(json!({"cmd": "hangup"}));
    page.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert!(
        sip.wait_for_line(mark, &["session closed"], Duration::from_secs(5))
            .is_some(),
        "baresip's call ends with the page's BYE:\n{}",
        sip.output()
    );
    calls::assert_phone_heard_browser(sip, "page → phone");
}

/// baresip calls the page (srgate's INVITE carries no offer: the page offers in its 200,
/// srgate answers in the ACK): each hears the other; baresip hangs up.
/// `on_worker`: srgate, when the call must be on its worker shard (1).
fn phone_calls_page(page: &mut Phone, sip: &SipPhone, srgate: &Srgate, on_worker: bool) {
    let gw = srgate.sip_addr();
    let on_worker = on_worker.then_some(srgate);
    sip.dial(&format!("sip:{WS_USER}@{gw}"));
    let invite = page.must(json!({"cmd": "wait_invite", "timeout": 15}));
    assert_eq!(invite["from"], "1006", "{invite}");
    page.must(json!({"cmd": "accept"}));
    page.must(json!({"cmd": "wait_established", "timeout": 15}));
    if let Some(srgate) = on_worker {
        let held = srgate.metric("shard_calls{shard=\"1\"}");
        assert_eq!(held, 1, "the call to the page is on the worker shard");
    }
    let heard = page.must(json!({"cmd": "measure", "seconds": 3}));
    calls::assert_heard(&heard, PHONE_HZ, "phone → page");
    sip.hangup();
    let end = page.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["originator"], "remote", "{end}");
    calls::assert_phone_heard_browser(sip, "phone → page");
}

#[test]
fn jssip_registers_calls_and_is_called_with_dtmf_hold_and_echo() {
    if !ready()
        || !common::netns::enter(
            "jssip_registers_calls_and_is_called_with_dtmf_hold_and_echo",
            Duration::from_secs(420),
        )
    {
        return;
    }
    let dir = TestDir::new("sip-ws-jssip");
    let tones = calls::tones(&dir, 120.0, 120.0);
    let (srgate, sip, mut page) = setup(&dir, &tones, "jssip", 1);
    let gw = srgate.sip_addr();

    // 1. the page calls baresip; DTMF both ways and hold in the middle
    let mark = sip.mark();
    page.must(json!({"cmd": "call", "callee": "1006"}));
    page.must(json!({"cmd": "wait_established", "timeout": 20}));
    let heard = page.must(json!({"cmd": "measure", "seconds": 3}));
    calls::assert_heard(&heard, PHONE_HZ, "JsSIP → baresip");
    page.must(json!({"cmd": "dtmf", "digits": "12#"}));
    let got = sip.wait_for_line(
        mark,
        &["received event: '#' (end=1)"],
        Duration::from_secs(5),
    );
    let events = &sip.output()[mark..];
    assert!(
        got.is_some()
            && ["1", "2", "#"]
                .iter()
                .all(|d| events.contains(&format!("received event: '{d}' (end=1)"))),
        "the page's SIP INFO digits 12# reach baresip as RFC 4733 events:\n{events}"
    );
    // and in the media (RFC 4733 from the page's RTCDTMFSender)
    let mark = sip.mark();
    page.must(json!({"cmd": "dtmf", "digits": "4", "rfc4733": true}));
    assert!(
        sip.wait_for_line(
            mark,
            &["received event: '4' (end=1)"],
            Duration::from_secs(5)
        )
        .is_some(),
        "the page's RFC 4733 digit reaches baresip:\n{}",
        &sip.output()[mark..]
    );
    sip.send("5");
    sip.send("9");
    let digits = page.must(json!({"cmd": "wait_dtmf", "count": 2, "timeout": 10}));
    assert_eq!(
        digits["digits"], "59",
        "baresip's RFC 4733 reaches the page as SIP INFO"
    );
    let held = page.must(json!({"cmd": "hold"}));
    assert_eq!(held["remote_direction"], "recvonly", "{held}");
    let resumed = page.must(json!({"cmd": "unhold"}));
    assert_eq!(resumed["remote_direction"], "sendrecv", "{resumed}");
    let heard = page.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, PHONE_HZ, "JsSIP after resume");
    page.must(json!({"cmd": "hangup"}));
    page.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert!(
        sip.wait_for_line(mark, &["session closed"], Duration::from_secs(5))
            .is_some(),
        "baresip's call ends with the page's BYE:\n{}",
        sip.output()
    );
    calls::assert_phone_heard_browser(&sip, "JsSIP → baresip");

    // 2. baresip calls the page
    phone_calls_page(&mut page, &sip, &srgate, false);

    // 3. echo: the page hears its own tone back
    page.must(json!({"cmd": "call", "callee": "echo"}));
    page.must(json!({"cmd": "wait_established", "timeout": 15}));
    let heard = page.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, BROWSER_HZ, "JsSIP → echo");
    page.must(json!({"cmd": "hangup"}));
    page.must(json!({"cmd": "wait_end", "timeout": 10}));

    // 4. an app user of the JSON protocol calls the JsSIP user, who refuses, then accepts
    let url = format!("http://{}/", srgate.web_addr());
    let app_tone = dir.join("tone700.wav");
    common::audio::write_tone(&app_tone, 700.0, 60.0, 48_000);
    let mut app = Phone::start(&url, &app_tone);
    app.must(json!({"cmd": "login", "user": "app-7"}));
    app.must(json!({"cmd": "call", "callee": WS_USER}));
    let invite = page.must(json!({"cmd": "wait_invite", "timeout": 15}));
    assert_eq!(invite["from"], "app-7", "{invite}");
    page.must(json!({"cmd": "reject"}));
    let refused = app.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(refused["reason"], "REFUSED_BY_REMOTE", "{refused}");
    page.must(json!({"cmd": "wait_end", "timeout": 10}));
    app.must(json!({"cmd": "call", "callee": WS_USER}));
    page.must(json!({"cmd": "wait_invite", "timeout": 15}));
    page.must(json!({"cmd": "accept"}));
    page.must(json!({"cmd": "wait_established", "timeout": 15}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 10}));
    let heard = page.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, 700.0, "app → JsSIP");
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, BROWSER_HZ, "JsSIP → app");
    app.must(json!({"cmd": "hangup"}));
    let end = page.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["originator"], "remote", "{end}");

    // 5. baresip calls ring group 301: the page (its `sip:` member, registered over
    // WebSocket) and the app both ring; the app answers, the page's INVITE is cancelled
    sip.dial(&format!("sip:301@{gw}"));
    page.must(json!({"cmd": "wait_invite", "timeout": 15}));
    let invite = app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    assert_eq!(invite["group"], "301", "{invite}");
    app.must(json!({"cmd": "accept"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    let end = page.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(
        end["originator"], "remote",
        "the page's INVITE is cancelled: {end}"
    );
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, PHONE_HZ, "group 301 → app");
    sip.hangup();
    app.must(json!({"cmd": "wait_end", "timeout": 10}));

    // 6. un-REGISTER: the page is nobody now; baresip's call to it is not delivered
    page.must(json!({"cmd": "unregister"}));
    let mark = sip.mark();
    sip.dial(&format!("sip:{WS_USER}@{gw}"));
    assert!(
        sip.wait_for_line(mark, &["480"], Duration::from_secs(10))
            .is_some()
            || sip
                .wait_for_line(mark, &["session closed"], Duration::from_secs(1))
                .is_some(),
        "a call to the un-registered page fails at once:\n{}",
        &sip.output()[mark..]
    );
}

/// On two shards: the calls land on the second (shard 0 also signals), whose offers and
/// answers carry its own media port.
#[test]
fn sipjs_registers_calls_and_is_called() {
    if !ready()
        || !common::netns::enter(
            "sipjs_registers_calls_and_is_called",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let dir = TestDir::new("sip-ws-sipjs");
    let tones = calls::tones(&dir, 120.0, 120.0);
    let (srgate, sip, mut page) = setup(&dir, &tones, "sipjs", 2);
    let on_shard_1 = || srgate.metric("shard_calls{shard=\"1\"}");
    assert_eq!(on_shard_1(), 0);
    page.must(json!({"cmd": "call", "callee": "1006"}));
    page.must(json!({"cmd": "wait_established", "timeout": 20}));
    assert_eq!(on_shard_1(), 1, "the page's call is on the worker shard");
    page.must(json!({"cmd": "hangup"}));
    page.must(json!({"cmd": "wait_end", "timeout": 10}));
    page_calls_phone(&mut page, &sip);
    phone_calls_page(&mut page, &sip, &srgate, true);
    // DTMF as SIP INFO from SIP.js reaches baresip
    let mark = sip.mark();
    page.must(json!({"cmd": "call", "callee": "1006"}));
    page.must(json!({"cmd": "wait_established", "timeout": 20}));
    page.must(json!({"cmd": "dtmf", "digits": "7"}));
    assert!(
        sip.wait_for_line(
            mark,
            &["received event: '7' (end=1)"],
            Duration::from_secs(5)
        )
        .is_some(),
        "SIP.js's INFO digit reaches baresip:\n{}",
        &sip.output()[mark..]
    );
    page.must(json!({"cmd": "hangup"}));
    page.must(json!({"cmd": "wait_end", "timeout": 10}));
}
