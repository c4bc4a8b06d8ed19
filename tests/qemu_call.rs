//! A static ARM build of srgate on an emulated board (qemu-user), doing a real call over
//! loopback: SIPp registers to it with digest, baresip registers too, and headless
//! Chromium (app user 1001) calls baresip through it: Opus ⇄ PCMU transcoded on the
//! emulated CPU, audio checked by frequency both ways (1000 Hz heard by the browser, 440 Hz
//! recorded by baresip). Runs when `SRGATE_QEMU` (e.g. `qemu-aarch64-static`) and
//! `SRGATE_QEMU_BIN` (the cross-built binary) are set — scripts/test sets them after the
//! aarch64 build; otherwise it says why it does nothing.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use common::audio::{dominant_frequency, read_wav, write_tone};
use common::phone::Phone;
use common::sip_phone::SipPhone;
use common::{GatewayConfig, Sipp, Srgate, TestDir};

fn emulated() -> Option<(PathBuf, PathBuf)> {
    let qemu = std::env::var_os("SRGATE_QEMU")?;
    let binary = std::env::var_os("SRGATE_QEMU_BIN")?;
    Some((
        common::find_binary(&qemu.to_string_lossy())?,
        PathBuf::from(binary),
    ))
}

#[test]
fn an_emulated_arm_build_registers_sip_users_and_bridges_a_call() {
    let Some((qemu, binary)) = emulated() else {
        eprintln!(
            "SKIPPED: set SRGATE_QEMU and SRGATE_QEMU_BIN (scripts/test does, after cross/build)"
        );
        return;
    };
    assert!(binary.is_file(), "{} is not built", binary.display());
    if !common::netns::available()
        || !common::phone::available()
        || !common::peers_available(&[common::BARESIP, common::SIPP])
        || !common::netns::enter(
            "an_emulated_arm_build_registers_sip_users_and_bridges_a_call",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let dir = TestDir::new("qemu-call");
    let browser_tone = dir.join("tone440.wav");
    let phone_tone = dir.join("tone1000.wav");
    write_tone(&browser_tone, 440.0, 30.0, 48_000);
    write_tone(&phone_tone, 1000.0, 60.0, 8000);
    let mut config = GatewayConfig::standalone();
    config.users = vec![
        ("1006".into(), "1006pw".into()),
        ("1002".into(), "pw1002".into()),
    ];
    config.extra = "[sip]\ndigest = md5\n".into();
    config.emulated = Some((qemu, binary));
    let srgate = Srgate::start(config, dir.path());
    let gw = srgate.sip_addr();

    Sipp::run(
        "register_digest.xml",
        &[
            "-s",
            "1002",
            "-au",
            "1002",
            "-ap",
            "pw1002",
            &gw.to_string(),
        ],
        dir.path(),
        Duration::from_secs(30),
    )
    .assert_success("SIPp registers with digest to the emulated srgate");

    let sip = SipPhone::registered(
        dir.path(),
        gw,
        "1006",
        "1006pw",
        &phone_tone,
        Duration::from_secs(15),
        "",
    );
    let mut app = Phone::start(&format!("http://{}/", srgate.web_addr()), &browser_tone);
    app.must(json!({"cmd": "login", "user": "1001"}));
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 30}));
    let heard = app.must(json!({"cmd": "measure", "seconds": 3}));
    let hz = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        (hz - 1000.0).abs() <= 25.0,
        "the browser hears 1000 Hz: {heard}"
    );
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    let (pcm, rate) = read_wav(&sip.last_recording().expect("a recording")).expect("a WAV");
    let phone_hz = dominant_frequency(pcm.get(rate as usize / 2..).unwrap_or(&[]), rate);
    assert!(
        (phone_hz - 440.0).abs() <= 25.0,
        "baresip hears 440 Hz, got {phone_hz}"
    );
    assert_eq!(srgate.health().unwrap().calls, 0);
}
