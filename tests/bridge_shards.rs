//! Calls spread over shards: srgate with `shards = 2` in standalone mode, baresip 1006
//! registered (1000 Hz, answers by itself), two Chromium app users. A bridged call and an
//! echo call at the same time land on different shards, each with its audio checked by
//! frequency and its packets counted on its own shard; a SIP call to an app user on the
//! second shard; and a shutdown with a call up on the second shard sends its BYE before
//! srgate exits. In a private network namespace.

mod common;

use std::time::Duration;

use serde_json::json;

use common::audio::{close_to, dominant_frequency, read_wav, write_tone};
use common::phone::Phone;
use common::sip_phone::SipPhone;
use common::{GatewayConfig, Srgate, TestDir};

/// CPU time (ns) each thread of `pid` has run, by thread name (`srgate` is shard 0,
/// `shard-N` the others), from /proc/PID/task/*/schedstat.
fn thread_cpu(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.push((name.trim().to_owned(), ns));
    }
    out
}

fn shard_metric(srgate: &Srgate, name: &str, shard: usize) -> u64 {
    srgate.metric(&format!("{name}{{shard=\"{shard}\"}}"))
}

#[test]
fn calls_spread_over_two_shards_with_audio_on_each() {
    let ready = common::netns::available()
        && common::phone::available()
        && common::peers_available(&[common::BARESIP]);
    if !ready
        || !common::netns::enter(
            "calls_spread_over_two_shards_with_audio_on_each",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-shards");
    let tone440 = dir.join("tone440.wav");
    let tone660 = dir.join("tone660.wav");
    let tone1000 = dir.join("tone1000.wav");
    write_tone(&tone440, 440.0, 60.0, 48_000);
    write_tone(&tone660, 660.0, 60.0, 48_000);
    write_tone(&tone1000, 1000.0, 120.0, 8000);

    let mut config = GatewayConfig::standalone();
    config.shards = 2;
    config.users = vec![("1006".into(), "1006pw".into())];
    config.extra = "[media]\nrtp_ports = 32000-32999\n[sip]\ndigest = md5\n".into();
    let mut srgate = Srgate::start(config, dir.path());
    assert_eq!(srgate.metric("shards"), 2);
    let gw = srgate.sip_addr();
    let sip = SipPhone::registered(
        dir.path(),
        gw,
        "1006",
        "1006pw",
        &tone1000,
        Duration::from_secs(10),
        "",
    );
    let url = format!("http://{}/", srgate.web_addr());
    let mut anna = Phone::start(&url, &tone440);
    anna.must(json!({"cmd": "login", "user": "1001"}));
    let mut ben = Phone::start(&url, &tone660);
    ben.must(json!({"cmd": "login", "user": "1002"}));

    // anna → the SIP phone: the first call goes to shard 1 (shard 0 also signals)
    anna.must(json!({"cmd": "call", "callee": "1006"}));
    anna.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    assert_eq!(shard_metric(&srgate, "shard_calls", 1), 1);
    // ben → echo while anna's call is up: shard 0 has fewer calls now
    ben.must(json!({"cmd": "call", "callee": "echo"}));
    ben.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    assert_eq!(shard_metric(&srgate, "shard_calls", 0), 1);
    assert_eq!(srgate.health().unwrap().calls, 2);
    let pid = srgate.pid().expect("srgate runs");
    let cpu_before = thread_cpu(pid);
    let heard_anna = anna.must(json!({"cmd": "measure", "seconds": 2}));
    let heard_ben = ben.must(json!({"cmd": "measure", "seconds": 2}));
    let hz = heard_anna["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        close_to(hz, 1000.0),
        "anna hears the phone's 1000 Hz: {heard_anna}"
    );
    let hz = heard_ben["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        close_to(hz, 660.0),
        "ben hears his own 660 Hz back: {heard_ben}"
    );
    // the second shard's thread did real work while both calls ran
    let cpu_after = thread_cpu(pid);
    let shard1 = |cpu: &[(String, u64)]| {
        cpu.iter()
            .find(|(name, _)| name == "shard-1")
            .map_or(0, |(_, ns)| *ns)
    };
    let worked = shard1(&cpu_after).saturating_sub(shard1(&cpu_before));
    assert!(
        worked > 5_000_000,
        "shard-1 ran {worked} ns during 2 s of a call: {cpu_after:?}"
    );
    for shard in [0, 1] {
        let received = shard_metric(&srgate, "shard_packets_received_total", shard);
        let sent = shard_metric(&srgate, "shard_packets_sent_total", shard);
        assert!(
            received > 100 && sent > 100,
            "shard {shard} carries media: {received} in, {sent} out"
        );
    }
    anna.must(json!({"cmd": "hangup"}));
    anna.must(json!({"cmd": "wait_end"}));
    ben.must(json!({"cmd": "hangup"}));
    ben.must(json!({"cmd": "wait_end"}));
    let (pcm, rate) = read_wav(&sip.last_recording().unwrap()).unwrap();
    let phone_hz = dominant_frequency(pcm.get(rate as usize / 2..).unwrap_or(&[]), rate);
    assert!(
        close_to(phone_hz, 440.0),
        "baresip heard anna's 440 Hz, got {phone_hz}"
    );

    // the SIP phone → anna: the call lands on shard 1 (a tie goes to the other shard)
    sip.dial(&format!("sip:1001@{gw}"));
    anna.must(json!({"cmd": "wait_invite", "timeout": 15}));
    anna.must(json!({"cmd": "accept"}));
    anna.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    assert_eq!(shard_metric(&srgate, "shard_calls", 1), 1);
    let heard = anna.must(json!({"cmd": "measure", "seconds": 2}));
    let hz = heard["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!(
        close_to(hz, 1000.0),
        "anna hears the caller's 1000 Hz: {heard}"
    );
    sip.hangup();
    let end = anna.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srgate.health().unwrap().calls, 0);
    assert_eq!(srgate.metric("rtp_ports_in_use"), 0);

    // a call up on shard 1 when srgate stops: the phone gets its BYE, srgate exits 0
    anna.must(json!({"cmd": "call", "callee": "1006"}));
    anna.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
    assert_eq!(shard_metric(&srgate, "shard_calls", 1), 1);
    let mark = sip.mark();
    let (status, in_time) = srgate.stop();
    assert!(
        status.success() && in_time,
        "srgate exits 0 in time: {status}"
    );
    assert!(
        sip.wait_for_line(mark, &["session closed"], Duration::from_secs(5))
            .is_some()
            || sip
                .wait_for_line(mark, &["terminated"], Duration::from_secs(1))
                .is_some(),
        "baresip got the BYE of the call on shard 1:\n{}",
        &sip.output()[mark..]
    );
    let end = anna.must(json!({"cmd": "wait_end", "timeout": 10}));
    assert_eq!(end["reason"], "ERROR", "{end}");
}
