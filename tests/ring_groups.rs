//! Ring groups (`[groups]`) with real peers: baresip, a registered SIP user, dials a flat's
//! number; two Chromium app users of the group ring at once (a third member is not logged
//! in). The first to accept gets the call and hears the phone, the other is told the call
//! was answered elsewhere; a member who refuses leaves the other ringing.

mod common;

use std::time::Duration;

use common::TestDir;
use common::calls::{self, PHONE_HZ, assert_heard, assert_phone_heard_browser};
use serde_json::{Value, json};

#[test]
fn a_flat_number_rings_every_member_and_the_first_to_accept_takes_it() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "a_flat_number_rings_every_member_and_the_first_to_accept_takes_it",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let dir = TestDir::new("ring-groups");
    let tones = calls::tones(&dir, 60.0, 120.0);
    let (srgate, sip, mut anna) = calls::standalone_pair(
        &dir,
        &tones,
        "anna",
        "[groups]\n301 = app:anna, app:ben, app:carl, sip:3011\n",
    );
    let mut ben = calls::logged_in(&srgate, &tones, "ben");
    let flat = format!("sip:301@{}", srgate.sip_addr());

    // both ring, the invitation names the group; ben takes the call
    sip.dial(&flat);
    for app in [&mut anna, &mut ben] {
        let invitation = app.must(json!({"cmd": "wait_invite", "timeout": 15}));
        assert_eq!(invitation["group"], "301", "{invitation}");
        assert_eq!(invitation["peer"], "1006", "{invitation}");
    }
    ben.must(json!({"cmd": "accept"}));
    ben.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    let end = anna.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(
        (end["reason"].as_str(), end["cause"].as_str()),
        (Some("CANCELED"), Some("ANSWERED_ELSEWHERE")),
        "{end}"
    );
    let heard = ben.must(json!({"cmd": "measure", "seconds": 2}));
    assert_heard(&heard, PHONE_HZ, "flat 301 → ben");
    sip.hangup();
    let end = ben.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    assert_phone_heard_browser(&sip, "ben → the door phone");
    let records = cdrs(&dir, 3);
    let anna_record = records
        .iter()
        .find(|r| r["user"] == "anna")
        .expect("anna's record");
    assert_eq!(anna_record["reason"], "ANSWERED_ELSEWHERE", "{anna_record}");

    // anna refuses (busy): ben still rings and takes the call
    sip.dial(&flat);
    anna.must(json!({"cmd": "wait_invite", "timeout": 15}));
    ben.must(json!({"cmd": "wait_invite", "timeout": 15}));
    anna.must(json!({"cmd": "refuse", "response": "busy"}));
    anna.must(json!({"cmd": "wait_end", "timeout": 10}));
    std::thread::sleep(Duration::from_secs(1));
    let still = ben.must(json!({"cmd": "wait_invite", "timeout": 1}));
    assert_eq!(still["group"], "301", "ben still rings: {still}");
    ben.must(json!({"cmd": "accept"}));
    ben.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    let heard = ben.must(json!({"cmd": "measure", "seconds": 2}));
    assert_heard(&heard, PHONE_HZ, "flat 301 → ben, anna busy");
    ben.must(json!({"cmd": "hangup"}));
    ben.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_phone_heard_browser(&sip, "ben → the door phone, anna busy");
}

/// The CDR lines written so far, once there are `at_least` (at most 5 s).
fn cdrs(dir: &TestDir, at_least: usize) -> Vec<Value> {
    common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let text = std::fs::read_to_string(dir.join("srgate-cdr.jsonl")).ok()?;
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (lines.len() >= at_least).then_some(lines)
    })
    .expect("the calls' CDR lines")
}
