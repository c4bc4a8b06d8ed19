//! App ↔ app calls of standalone mode with real browsers: two Chromium pages logged in as
//! anna (playing 440 Hz) and ben (playing 700 Hz) call each other through srgate with the
//! browser protocol alone — the caller's states, the callee's invitation, audio both ways
//! by frequency, the hangup on the other side, records — and anna calls a ring group
//! whose app member ben takes the call.

mod common;

use std::time::Duration;

use common::TestDir;
use common::audio::write_tone;
use common::calls::{self, assert_heard};
use common::phone::Phone;
use serde_json::{Value, json};

const ANNA_HZ: f64 = 440.0;
const BEN_HZ: f64 = 700.0;

fn records(dir: &TestDir) -> Vec<Value> {
    std::fs::read_to_string(dir.join("srgate-cdr.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `caller` calls `callee` (a user or a group), `answerer` accepts: both hear each other.
fn call_and_talk(caller: &mut Phone, callee: &str, answerer: &mut Phone, group: Option<&str>) {
    caller.must(json!({"cmd": "call", "callee": callee}));
    let invitation = answerer.must(json!({"cmd": "wait_invite", "timeout": 15}));
    assert_eq!(invitation["peer"], "anna", "{invitation}");
    assert_eq!(invitation["group"].as_str(), group, "{invitation}");
    caller.must(json!({"cmd": "wait_state", "states": ["RECEIVED_BY_REMOTE"], "timeout": 10}));
    answerer.must(json!({"cmd": "accept"}));
    answerer.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    caller.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 15}));
    let heard = caller.must(json!({"cmd": "measure", "seconds": 2}));
    assert_heard(&heard, BEN_HZ, "anna hears ben");
    let heard = answerer.must(json!({"cmd": "measure", "seconds": 2}));
    assert_heard(&heard, ANNA_HZ, "ben hears anna");
}

#[test]
fn two_app_users_call_each_other_and_a_group_through_srgate() {
    if !common::phone::available()
        || !common::netns::available()
        || !common::netns::enter(
            "two_app_users_call_each_other_and_a_group_through_srgate",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("app-to-app");
    let (anna_tone, ben_tone) = (dir.join("anna440.wav"), dir.join("ben700.wav"));
    write_tone(&anna_tone, ANNA_HZ, 90.0, 48_000);
    write_tone(&ben_tone, BEN_HZ, 90.0, 48_000);
    let srgate = calls::standalone_gateway(&dir, &[], "[groups]\n301 = app:anna, app:ben\n");
    let url = format!("http://{}/", srgate.web_addr());
    let mut anna = Phone::start(&url, &anna_tone);
    anna.must(json!({"cmd": "login", "user": "anna"}));
    let mut ben = Phone::start(&url, &ben_tone);
    ben.must(json!({"cmd": "login", "user": "ben"}));

    // anna calls ben; ben hangs up
    call_and_talk(&mut anna, "ben", &mut ben, None);
    ben.must(json!({"cmd": "hangup"}));
    let end = anna.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    ben.must(json!({"cmd": "wait_end", "timeout": 10}));
    let recs = calls::last_cdr(&dir, 1);
    assert_eq!(recs["mode"], "relay", "Opus end to end: {recs}");
    let both = records(&dir);
    assert_eq!(both.len(), 2, "one record a leg: {both:?}");
    for r in &both {
        assert_eq!(r["mode"], "relay", "{r}");
        assert_eq!(r["codec_sip"], "opus", "{r}");
    }

    // anna calls flat 301 (anna, ben): only ben rings, and takes it; anna hangs up
    call_and_talk(&mut anna, "301", &mut ben, Some("301"));
    anna.must(json!({"cmd": "hangup"}));
    let end = ben.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");

    // a user nobody is logged in as: the caller is told at once
    anna.must(json!({"cmd": "call", "callee": "zed"}));
    let end = anna.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["error"], "PEER_OFFLINE", "{end}");
    let health = srgate.health().expect("/health");
    assert_eq!(health.calls, 0, "no call is left");
}
