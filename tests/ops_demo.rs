//! The first minute: `scripts/run`'s demo configuration (made by `scripts/demo-config`)
//! lets a newcomer register a softphone and call the browser demo and back, without
//! editing anything. The softphone users' passwords are random, printed once, and kept in
//! a file only its owner reads; SIP listens on loopback. baresip is the softphone,
//! headless Chromium the demo page, audio checked by frequency; in a private network
//! namespace (the demo's fixed ports are free there).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::calls;
use common::sip_phone::SipPhone;
use common::{GatewayConfig, Srgate, TestDir};

/// The demo's SIP users and passwords, as `scripts/demo-config` printed them.
fn printed_users(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (user, password) = line.trim().split_once(" / ")?;
            (user.len() == 4 && user.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (user.to_string(), password.trim().to_string()))
        })
        .collect()
}

#[test]
fn a_softphone_registers_with_the_demo_users_and_calls_the_browser_demo() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "a_softphone_registers_with_the_demo_users_and_calls_the_browser_demo",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("ops-demo");
    let file = dir.join("run/demo.ini");
    let demo_config = |file: &std::path::Path| {
        Command::new(common::repo_path("scripts/demo-config"))
            .arg(file)
            .output()
            .expect("bash runs scripts/demo-config")
    };
    let first = demo_config(&file);
    assert!(first.status.success(), "{first:?}");
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    let users = printed_users(&stdout);
    assert_eq!(users.len(), 2, "two softphone users printed: {stdout}");
    for (_, password) in &users {
        assert_eq!(password.len(), 16, "{stdout}");
        assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the owner reads the passwords");
    // a second run keeps the users and does not print the passwords again
    let again = demo_config(&file);
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && printed_users(&again_out).is_empty());
    assert!(!again_out.contains(&users[0].1), "{again_out}");
    // two demo files get different passwords
    let other = demo_config(&dir.join("other.ini"));
    let other_users = printed_users(&String::from_utf8_lossy(&other.stdout));
    assert_ne!(other_users, users, "passwords are made at random");

    // srgate on the demo file as shipped: SIP 5086 on loopback, web 8080, API 9091
    let ports = GatewayConfig {
        sip_port: 5086,
        webrtc_port: 8080,
        webrtc_udp_port: 50000,
        api_port: 9091,
        ..GatewayConfig::standalone()
    };
    let srgate = Srgate::start_file(&file, ports, dir.path());
    let tones = calls::tones(&dir, 40.0, 60.0);
    let (user, password) = &users[0];
    let sip = SipPhone::registered(
        dir.path(),
        srgate.sip_addr(),
        user,
        password,
        &tones.phone,
        Duration::from_secs(10),
        "",
    );
    let mut app = calls::logged_in(&srgate, &tones, "alice");
    calls::app_calls_phone(&mut app, &sip, user, 2);
    calls::phone_calls_app(&mut app, &sip, "sip:alice@127.0.0.1:5086");
}
