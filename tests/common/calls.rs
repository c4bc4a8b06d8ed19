//! The steps the audio tests share: a browser (headless Chromium, [`Phone`]) playing 440 Hz
//! and a SIP phone (baresip, [`SipPhone`]) playing 1000 Hz call each other; each side's
//! audio is checked by its dominant frequency.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::TestDir;
use super::audio::{dominant_frequency, read_wav, write_tone};
use super::phone::Phone;
use super::sip_phone::SipPhone;

/// What the browser and the phone play.
pub const BROWSER_HZ: f64 = 440.0;
pub const PHONE_HZ: f64 = 1000.0;
/// How far a measured frequency may be from the one played.
const TOLERANCE_HZ: f64 = 25.0;

/// The WAV files the browser and the phone play, written into `dir`.
pub struct Tones {
    pub browser: PathBuf,
    pub phone: PathBuf,
}

/// Writes the two tones: the browser's (48 kHz) lasts `browser_s` seconds, the phone's
/// (8 kHz) `phone_s`.
pub fn tones(dir: &TestDir, browser_s: f64, phone_s: f64) -> Tones {
    let browser = dir.join("tone440.wav");
    let phone = dir.join("tone1000.wav");
    write_tone(&browser, BROWSER_HZ, browser_s, 48_000);
    write_tone(&phone, PHONE_HZ, phone_s, 8000);
    Tones { browser, phone }
}

/// Whether the peers of a browser ⇄ baresip test are here (and the namespace tools).
pub fn browser_and_baresip_ready() -> bool {
    super::netns::available()
        && super::phone::available()
        && super::peers_available(&[super::BARESIP])
}

/// Asserts that a `measure` answer of the browser heard `hz`.
pub fn assert_heard(heard: &Value, hz: f64, what: &str) {
    let got = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        (got - hz).abs() <= TOLERANCE_HZ,
        "{what}: the browser hears {hz} Hz: {heard}"
    );
}

/// Asserts that the phone's latest recording carries the browser's tone.
pub fn assert_phone_heard_browser(sip: &SipPhone, what: &str) {
    let (pcm, rate) = read_wav(&sip.last_recording().expect("baresip recorded")).unwrap();
    let hz = dominant_frequency(pcm.get(rate as usize / 2..).unwrap_or(&[]), rate);
    assert!(
        (hz - BROWSER_HZ).abs() <= TOLERANCE_HZ,
        "{what}: baresip hears {BROWSER_HZ} Hz, got {hz}"
    );
}

/// The app user calls `callee` (the phone, answering by itself): the browser hears the
/// phone for `seconds`, hangs up, and the phone heard the browser.
pub fn app_calls_phone(app: &mut Phone, sip: &SipPhone, callee: &str, seconds: u32) {
    app.must(json!({"cmd": "call", "callee": callee}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    let heard = app.must(json!({"cmd": "measure", "seconds": seconds}));
    assert_heard(&heard, PHONE_HZ, "app → phone");
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    assert_phone_heard_browser(sip, "app → phone");
}

/// The phone dials `uri` (the app user), the app accepts and hears the phone for two
/// seconds, the phone hangs up: the app's call ends `REMOTE`.
pub fn phone_calls_app(app: &mut Phone, sip: &SipPhone, uri: &str) {
    sip.dial(uri);
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "accept"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    assert_heard(&heard, PHONE_HZ, "phone → app");
    sip.hangup();
    let end = app.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
}

/// A standalone srgate with SIP user 1006 (MD5 digest only: baresip 1.0 takes no other),
/// baresip registered as 1006 playing the phone's tone, and Chromium logged in as `app`
/// playing the browser's; `extra`: more INI text for srgate.
pub fn standalone_pair(
    dir: &TestDir,
    tones: &Tones,
    app: &str,
    extra: &str,
) -> (super::Srgate, SipPhone, Phone) {
    let mut config = super::GatewayConfig::standalone();
    config.users = vec![("1006".into(), "1006pw".into())];
    config.extra = format!("[sip]\ndigest = md5\n{extra}");
    let srgate = super::Srgate::start(config, dir.path());
    let sip = SipPhone::registered(
        dir.path(),
        srgate.sip_addr(),
        "1006",
        "1006pw",
        &tones.phone,
        std::time::Duration::from_secs(10),
        "",
    );
    let phone = logged_in(&srgate, tones, app);
    (srgate, sip, phone)
}

/// Chromium on srgate's demo page, logged in as `app`, playing the browser's tone.
pub fn logged_in(srgate: &super::Srgate, tones: &Tones, app: &str) -> Phone {
    let url = format!("http://{}/", srgate.web_addr());
    let mut phone = Phone::start(&url, &tones.browser);
    phone.must(json!({"cmd": "login", "user": app}));
    phone
}

/// baresip as 1006 registered at Kamailio on `kamailio_port` (UDP), playing the phone's
/// tone and answering by itself.
pub fn phone_at_kamailio(dir: &TestDir, tones: &Tones, kamailio_port: u16) -> SipPhone {
    let sip = SipPhone::start(
        dir.path(),
        "baresip-1006",
        &format!(
            "<sip:1006@127.0.0.1:{kamailio_port};transport=udp>;auth_pass=1006pw;regint=60;answermode=auto"
        ),
        &tones.phone,
    );
    assert!(
        sip.wait_for_line(
            0,
            &["1006@127.0.0.1", "200 OK"],
            std::time::Duration::from_secs(10)
        )
        .is_some(),
        "baresip registers at Kamailio:\n{}",
        sip.output()
    );
    sip
}

/// A standalone srgate in `dir` with SIP users `users` (password: the user and `pw`,
/// MD5 digest only, which baresip 1.0 needs) and `extra` INI text.
pub fn standalone_gateway(dir: &TestDir, users: &[&str], extra: &str) -> super::Srgate {
    let mut config = super::GatewayConfig::standalone();
    config.users = users
        .iter()
        .map(|u| (u.to_string(), format!("{u}pw")))
        .collect();
    config.extra = format!("[sip]\ndigest = md5\n{extra}");
    super::Srgate::start(config, dir.path())
}

/// The number of lines in `dir`'s CDR file so far.
pub fn cdr_count(dir: &TestDir) -> usize {
    std::fs::read_to_string(dir.join("srgate-cdr.jsonl")).map_or(0, |t| t.lines().count())
}

/// The CDR line of the call that ended last, once there are more than `before` lines
/// (at most 5 s).
pub fn last_cdr(dir: &TestDir, before: usize) -> Value {
    super::wait_for(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(100),
        || {
            let text = std::fs::read_to_string(dir.join("srgate-cdr.jsonl")).ok()?;
            let lines: Vec<&str> = text.lines().collect();
            (lines.len() > before)
                .then(|| serde_json::from_str(lines.last()?).ok())
                .flatten()
        },
    )
    .expect("a CDR line for the call")
}

/// SIPp as SIP user 1006 (password 1006pw) runs `scenario` calling app user `app_user` at
/// srgate's `gw`; the app accepts. Returns once the call is up on the app's side.
pub fn sipp_1006_calls_the_app(
    scenario: &str,
    gw: std::net::SocketAddr,
    dir: &TestDir,
    app: &mut Phone,
    app_user: &str,
) -> super::Sipp {
    let gw = gw.to_string();
    let args = [
        "-s", app_user, "-key", "caller", "1006", "-au", "1006", "-ap", "1006pw", &gw,
    ];
    let sipp = super::Sipp::spawn(scenario, &args, dir.path());
    app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    app.must(json!({"cmd": "accept"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    sipp
}
