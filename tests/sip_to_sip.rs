//! SIP ↔ SIP calls of standalone mode with real phones: baresip as the door station (1006,
//! playing 1000 Hz) calls baresip as the indoor monitor (1007, playing 600 Hz, answering by
//! itself) through srgate, which relays the media on its own ports. Each phone hears the
//! other's tone (by frequency), the door's keys reach the monitor as RFC 4733 events, the
//! BYE of one ends the other, and the call leaves one `sip_to_sip` record. Then the monitor
//! as a `sip:` member of a flat's ring group answers before the app member does: the app's
//! invitation ends as answered elsewhere.

mod common;

use std::time::Duration;

use common::TestDir;
use common::audio::{dominant_frequency, read_wav, rms_dbfs, write_tone};
use common::calls::{self, assert_heard};
use common::sip_phone::SipPhone;
use serde_json::{Value, json};

const DOOR_HZ: f64 = 1000.0;
const MONITOR_HZ: f64 = 600.0;

/// The dominant frequency of what `phone` heard last (the first half second skipped),
/// asserting it is not silence.
fn heard(phone: &SipPhone, what: &str) -> f64 {
    // baresip finishes the file a moment after the call ends: waited for, bounded
    let (pcm, rate) = common::wait_for(Duration::from_secs(3), Duration::from_millis(100), || {
        let (pcm, rate) = read_wav(&phone.last_recording()?)?;
        (pcm.len() > rate as usize).then_some((pcm, rate))
    })
    .or_else(|| read_wav(&phone.last_recording()?))
    .expect("baresip recorded the call");
    let pcm = pcm.get(rate as usize / 2..).unwrap_or(&[]);
    assert!(
        pcm.len() > rate as usize && rms_dbfs(pcm) > -40.0,
        "{what}: the recording holds sound ({} samples, {:.1} dBFS)",
        pcm.len(),
        rms_dbfs(pcm)
    );
    dominant_frequency(pcm, rate)
}

fn assert_hz(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 25.0,
        "{what}: want {want} Hz, got {got}"
    );
}

/// The door (1006) and the monitor (1007) registered at a standalone srgate with `extra`.
fn door_and_monitor(dir: &TestDir, extra: &str) -> (common::Srgate, SipPhone, SipPhone) {
    let door_tone = dir.join("door1000.wav");
    let monitor_tone = dir.join("monitor600.wav");
    write_tone(&door_tone, DOOR_HZ, 120.0, 8000);
    write_tone(&monitor_tone, MONITOR_HZ, 120.0, 8000);
    let srgate = calls::standalone_gateway(dir, &["1006", "1007"], extra);
    let within = Duration::from_secs(10);
    let door = SipPhone::registered(
        dir.path(),
        srgate.sip_addr(),
        "1006",
        "1006pw",
        &door_tone,
        within,
        "",
    );
    let monitor = SipPhone::registered(
        dir.path(),
        srgate.sip_addr(),
        "1007",
        "1007pw",
        &monitor_tone,
        within,
        "",
    );
    (srgate, door, monitor)
}

/// Waits until `phone`'s output since `mark` has a line with `needle`.
fn saw(phone: &SipPhone, mark: usize, needle: &str, within: Duration) -> bool {
    phone.wait_for_line(mark, &[needle], within).is_some()
}

#[test]
fn a_door_station_calls_the_indoor_monitor_and_both_hear_each_other() {
    if !common::netns::available()
        || !common::peers_available(&[common::BARESIP])
        || !common::netns::enter(
            "a_door_station_calls_the_indoor_monitor_and_both_hear_each_other",
            Duration::from_secs(180),
        )
    {
        return;
    }
    let dir = TestDir::new("sip-to-sip");
    let (srgate, door, monitor) = door_and_monitor(&dir, "");
    let before = calls::cdr_count(&dir);
    let (door_mark, monitor_mark) = (door.mark(), monitor.mark());
    door.dial(&format!("sip:1007@{}", srgate.sip_addr()));
    assert!(
        saw(
            &monitor,
            monitor_mark,
            "established",
            Duration::from_secs(15)
        ),
        "the monitor answers:\n{}",
        &monitor.output()[monitor_mark..]
    );
    std::thread::sleep(Duration::from_secs(3));
    // the door's keys reach the monitor as RFC 4733 events
    for d in ["5", "#"] {
        door.send(d);
        std::thread::sleep(Duration::from_millis(300));
    }
    // (baresip ends a key's event when the next key comes: the last one stays open)
    assert!(
        saw(
            &monitor,
            monitor_mark,
            "received event: '#'",
            Duration::from_secs(5)
        ) && monitor.output()[monitor_mark..].contains("received event: '5' (end=1)"),
        "the monitor got the door's digits:\n{}",
        &monitor.output()[monitor_mark..]
    );
    std::thread::sleep(Duration::from_secs(1));
    door.hangup();
    assert!(
        saw(
            &monitor,
            monitor_mark,
            "session closed",
            Duration::from_secs(5)
        ),
        "the door's BYE ends the monitor's call:\n{}",
        &monitor.output()[monitor_mark..]
    );
    assert!(
        saw(&door, door_mark, "terminated", Duration::from_secs(5)),
        "{}",
        &door.output()[door_mark..]
    );
    assert_hz(
        heard(&door, "door"),
        MONITOR_HZ,
        "the door hears the monitor",
    );
    assert_hz(
        heard(&monitor, "monitor"),
        DOOR_HZ,
        "the monitor hears the door",
    );

    let cdr = calls::last_cdr(&dir, before);
    assert_eq!(
        (&cdr["direction"], &cdr["user"], &cdr["peer"], &cdr["mode"]),
        (
            &json!("sip_to_sip"),
            &json!("1007"),
            &json!("1006"),
            &json!("relay")
        ),
        "{cdr}"
    );
    assert_eq!(cdr["reason"], "REMOTE", "{cdr}");
    // 20 ms packets for about 4 s, both ways, every one passed on
    for leg in ["caller", "callee"] {
        let (rtp_in, rtp_out) = (
            cdr[leg]["rtp_in"].as_u64().unwrap_or(0),
            cdr[leg]["rtp_out"].as_u64().unwrap_or(0),
        );
        assert!(rtp_in > 150 && rtp_out > 150, "{leg}: {cdr}");
    }
    let health = srgate.health().expect("/health answers");
    assert_eq!(health.calls, 0, "no call is left at srgate after the BYE");
    assert!(srgate.metric("calls_relayed_total") >= 1);
}

#[test]
fn a_monitor_in_a_ring_group_answers_and_the_app_member_stops_ringing() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "a_monitor_in_a_ring_group_answers_and_the_app_member_stops_ringing",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("sip-to-sip-group");
    let (srgate, door, monitor) =
        door_and_monitor(&dir, "[groups]\n301 = app:anna, sip:1007, sip:1006\n");
    let tones = calls::tones(&dir, 60.0, 60.0);
    let mut anna = calls::logged_in(&srgate, &tones, "anna");
    let monitor_mark = monitor.mark();
    // the door dials the flat: anna's app rings, the monitor answers by itself (the
    // door, a member too, is not rung by its own call)
    door.dial(&format!("sip:301@{}", srgate.sip_addr()));
    // (the monitor may answer before the page shows the invitation: its messages tell)
    let end = anna.must(json!({"cmd": "wait_end", "timeout": 15}));
    assert_eq!(
        (end["reason"].as_str(), end["cause"].as_str()),
        (Some("CANCELED"), Some("ANSWERED_ELSEWHERE")),
        "{end}"
    );
    let seen = anna.must(json!({"cmd": "messages"}));
    let invitation = seen["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["type"] == "remote_invitation"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(invitation["group"], "301", "{seen}");
    assert!(
        saw(
            &monitor,
            monitor_mark,
            "established",
            Duration::from_secs(5)
        ),
        "{}",
        &monitor.output()[monitor_mark..]
    );
    std::thread::sleep(Duration::from_secs(3));
    monitor.hangup();
    assert!(
        saw(&door, 0, "session closed", Duration::from_secs(5)),
        "the monitor's BYE ends the door's call:\n{}",
        door.output()
    );
    assert_hz(
        heard(&door, "door"),
        MONITOR_HZ,
        "the door hears the monitor",
    );
    assert_hz(
        heard(&monitor, "monitor"),
        DOOR_HZ,
        "the monitor hears the door",
    );
    let records = std::fs::read_to_string(dir.join("srgate-cdr.jsonl")).unwrap_or_default();
    let pair = records
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["direction"] == "sip_to_sip")
        .expect("a sip_to_sip record");
    assert_eq!(
        (&pair["group"], &pair["user"], &pair["reason"]),
        (&json!("301"), &json!("1007"), &json!("REMOTE")),
        "{pair}"
    );
}

#[test]
fn an_app_member_answers_first_and_the_ringing_monitor_is_cancelled_as_completed_elsewhere() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "an_app_member_answers_first_and_the_ringing_monitor_is_cancelled_as_completed_elsewhere",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("sip-to-sip-group-app");
    let door_tone = dir.join("door1000.wav");
    let monitor_tone = dir.join("monitor600.wav");
    write_tone(&door_tone, DOOR_HZ, 120.0, 8000);
    write_tone(&monitor_tone, MONITOR_HZ, 120.0, 8000);
    let srgate = calls::standalone_gateway(
        &dir,
        &["1006", "1007"],
        "[groups]\n301 = app:anna, sip:1007\n",
    );
    let door = SipPhone::registered(
        dir.path(),
        srgate.sip_addr(),
        "1006",
        "1006pw",
        &door_tone,
        Duration::from_secs(10),
        "",
    );
    // the monitor rings and waits for a hand to pick it up
    let monitor = SipPhone::start(
        dir.path(),
        "baresip-1007",
        &format!(
            "<sip:1007@{};transport=udp>;auth_pass=1007pw;regint=60;answermode=manual",
            srgate.sip_addr()
        ),
        &monitor_tone,
    );
    monitor.must_register("1007", Duration::from_secs(10));
    let tones = calls::tones(&dir, 60.0, 60.0);
    let mut anna = calls::logged_in(&srgate, &tones, "anna");
    let monitor_mark = monitor.mark();
    door.dial(&format!("sip:301@{}", srgate.sip_addr()));
    let invitation = anna.must(json!({"cmd": "wait_invite", "timeout": 15}));
    assert_eq!(invitation["group"], "301", "{invitation}");
    assert!(
        saw(
            &monitor,
            monitor_mark,
            "Incoming call",
            Duration::from_secs(10)
        ),
        "the monitor rings too:\n{}",
        &monitor.output()[monitor_mark..]
    );
    anna.must(json!({"cmd": "accept"}));
    anna.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    // the monitor's INVITE is cancelled (baresip closes a cancelled session as a reset;
    // the CANCEL's Reason header is checked by the endpoint's tests)
    assert!(
        saw(
            &monitor,
            monitor_mark,
            "session closed",
            Duration::from_secs(10)
        ),
        "the monitor stops ringing:\n{}",
        &monitor.output()[monitor_mark..]
    );
    let heard = anna.must(json!({"cmd": "measure", "seconds": 2}));
    assert_heard(&heard, DOOR_HZ, "anna hears the door");
    anna.must(json!({"cmd": "hangup"}));
    assert!(
        saw(&door, 0, "session closed", Duration::from_secs(10)),
        "{}",
        door.output()
    );
    let records = std::fs::read_to_string(dir.join("srgate-cdr.jsonl")).unwrap_or_default();
    let pair = records
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["direction"] == "sip_to_sip")
        .expect("the monitor's record");
    assert_eq!(
        (&pair["reason"], &pair["answer"]),
        (&json!("ANSWERED_ELSEWHERE"), &Value::Null),
        "{pair}"
    );
    let log = srgate.log();
    assert!(!log.contains("panicked"), "srgate logged no internal error");
}
