//! The REST API's calls published to RTMP, with real peers: a standalone srgate, baresip
//! registered as the `[users]` phone 1007 (answering by itself, playing 1000 Hz) and nginx
//! with `libnginx-mod-rtmp`. `startup` makes srgate call the phone and publish the call's
//! audio: ffprobe sees an AAC track in the live stream, `find` follows the call, and once
//! `terminate` ended it nginx's recording of the stream decodes to the phone's tone. Bad
//! requests get JSON errors and change nothing; with `[api] token` a request must carry it.

#![cfg(feature = "aac")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::TestDir;
use common::audio::{dominant_frequency, read_wav, rms_dbfs};
use common::calls;
use common::nginx_rtmp::{self, NginxRtmp};
use common::sip_phone::SipPhone;
use serde_json::{Value, json};

use calls::PHONE_HZ;

/// `POST path` with `body` (and `Authorization: Bearer token`): the status and the JSON.
fn post(api: SocketAddr, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&api, timeout).expect("the API listens");
    stream.set_read_timeout(Some(timeout)).expect("socket");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut raw = String::new();
    stream
        .take(1 << 20)
        .read_to_string(&mut raw)
        .expect("an answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"));
    (status, json)
}

fn find(api: SocketAddr, call_id: &str) -> Value {
    let (status, json) = post(
        api,
        "/rest-api/call/find",
        &json!({"callId": call_id}).to_string(),
        None,
    );
    assert_eq!(status, 200, "{json}");
    json
}

/// A hook receiver on loopback: each POSTed JSON body, until one says `FINISHED` or
/// `FAILED` (or 30 s pass, or 64 posts came).
fn hook_server() -> (SocketAddr, std::thread::JoinHandle<Vec<Value>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.set_nonblocking(true).expect("socket");
    let addr = listener.local_addr().expect("bound");
    let server = std::thread::spawn(move || {
        let deadline = common::Deadline::after(Duration::from_secs(30));
        let mut bodies = Vec::new();
        while !deadline.passed() && bodies.len() < 64 {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            s.set_nonblocking(false).expect("socket");
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("socket");
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // bounded: one small request, until its body is whole
            for _ in 0..64 {
                let Ok(n) = s.read(&mut buf) else { break };
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw);
                let whole = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                    head.lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        == Some(body.len())
                });
                if n == 0 || whole {
                    break;
                }
            }
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            let text = String::from_utf8_lossy(&raw).into_owned();
            let Some((_, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let Ok(json) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            let done = json["state"] == "FINISHED" || json["state"] == "FAILED";
            bodies.push(json);
            if done {
                break;
            }
        }
        bodies
    });
    (addr, server)
}

/// Stops nginx once its recording of `stream` decodes (the publisher gone: deleteStream),
/// and checks it: at least `seconds` long, the phone's tone after the first second.
fn assert_recorded_tone(nginx: &mut NginxRtmp, dir: &TestDir, stream: &str, seconds: f64) {
    let flv = nginx.record_dir.join(format!("{stream}.flv"));
    let wav = dir.join(&format!("{stream}.wav"));
    let decoded = common::wait_for(Duration::from_secs(5), Duration::from_millis(200), || {
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&flv)
            .args(["-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le"])
            .arg(&wav)
            .status()
            .ok()?
            .success();
        ok.then(|| read_wav(&wav)).flatten()
    });
    nginx.stop();
    let (pcm, rate) =
        decoded.unwrap_or_else(|| panic!("the recording decodes\n{}", nginx.output()));
    let recorded = pcm.len() as f64 / f64::from(rate);
    assert!(recorded >= seconds, "recorded {recorded:.2} s");
    // skip the first second: the jitter buffer's start and the answer
    let pcm = &pcm[rate as usize..];
    let level = rms_dbfs(pcm);
    assert!(level > -35.0, "the phone's audio is there: {level:.1} dBFS");
    let hz = dominant_frequency(pcm, rate);
    assert!((hz - PHONE_HZ).abs() <= 20.0, "the phone's tone: {hz} Hz");
    // no gaps: every 200 ms but the last holds the tone
    let window = rate as usize / 5;
    let quiet = pcm
        .chunks(window)
        .filter(|w| w.len() == window && rms_dbfs(w) < -30.0)
        .count();
    assert!(
        quiet <= 1,
        "{quiet} silent windows of 200 ms in the recording"
    );
    eprintln!("recorded {recorded:.2} s, {hz} Hz, {level:.1} dBFS");
}

/// A standalone srgate with the `[users]` phone 1007 (and `extra` INI text), and baresip
/// registered as 1007, answering by itself and playing the phone's tone.
fn gateway_with_phone(dir: &TestDir, extra: &str) -> (common::Srgate, SipPhone) {
    let tones = calls::tones(dir, 1.0, 120.0);
    let srgate = calls::standalone_gateway(dir, &["1007"], extra);
    let phone = SipPhone::registered(
        dir.path(),
        srgate.sip_addr(),
        "1007",
        "1007pw",
        &tones.phone,
        Duration::from_secs(10),
        "",
    );
    (srgate, phone)
}

fn peers_ready() -> bool {
    let peers = [
        common::NGINX,
        common::FFMPEG,
        common::FFPROBE,
        common::BARESIP,
    ];
    common::peers_available(&peers)
        && nginx_rtmp::module_available(nginx_rtmp::RTMP_MODULE, "libnginx-mod-rtmp")
}

#[test]
fn a_rest_call_publishes_the_phones_audio_to_rtmp_until_terminated() {
    if !peers_ready() {
        return;
    }
    let dir = TestDir::new("rest-rtmp");
    let mut nginx = NginxRtmp::start(dir.path(), None);
    let (srgate, phone) = gateway_with_phone(&dir, "");
    let api = srgate.config.api_addr();
    let before = calls::cdr_count(&dir);
    let (hook, hook_posts) = hook_server();
    // WCS clients send booleans as strings
    let startup = json!({"callId": "door-1", "callee": "1007", "rtmpUrl": nginx.url(),
        "rtmpStream": "door1", "hasAudio": "true", "hasVideo": "false",
        "hookUrl": format!("http://{hook}/srgate/events")})
    .to_string();
    let (status, state) = post(api, "/rest-api/call/startup", &startup, None);
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["callId"], "door-1");
    assert!(
        ["NEW", "RINGING", "ESTABLISHED"].contains(&state["state"].as_str().unwrap_or("")),
        "{state}"
    );

    // the phone answers, the stream publishes
    let up = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = find(api, "door-1");
        (s["state"] == "ESTABLISHED" && s["rtmpState"] == "PUBLISHING").then_some(s)
    });
    let up = up.unwrap_or_else(|| {
        panic!(
            "established and publishing: {}\n{}\n{}",
            find(api, "door-1"),
            srgate.log(),
            nginx.output()
        )
    });
    assert_eq!(up["sipStatus"], 200);
    assert!(
        !up.to_string().contains("door1"),
        "the stream key is never shown: {up}"
    );
    assert_eq!(
        srgate.health().expect("/health").calls,
        1,
        "the REST call counts"
    );
    // a second startup under the same id changes nothing
    let (status, e) = post(api, "/rest-api/call/startup", &startup, None);
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("DUPLICATE")),
        "{e}"
    );
    // send_dtmf while up: RFC 4733 events (baresip takes telephone-event)
    let mark = phone.mark();
    let (status, e) = post(
        api,
        "/rest-api/call/send_dtmf",
        &json!({"callId": "door-1", "dtmf": "1#"}).to_string(),
        None,
    );
    assert_eq!(status, 200, "{e}");
    for key in ["'1'", "'#'"] {
        assert!(
            phone
                .wait_for_line(mark, &["received event", key], Duration::from_secs(3))
                .is_some(),
            "the phone got {key}: {}",
            phone.output()
        );
    }

    // the live stream carries AAC at 48 kHz mono
    let live = format!("{}door1", nginx.url());
    let mut probe = nginx_rtmp::probe_live(&live, dir.path());
    let probed_ok = probe.wait_exit(Duration::from_secs(10));
    let probed = probe.stdout_text();
    assert!(
        probed_ok.is_some_and(|s| s.success()) && probed.contains("codec_name=aac"),
        "ffprobe of the live stream: {probed_ok:?}\n{}\n{}",
        probe.output(),
        nginx.output()
    );
    assert!(
        probed.contains("sample_rate=48000") && probed.contains("channels=1"),
        "{probed}"
    );
    // a few seconds of the phone's audio go out, then the call is ended by the API
    std::thread::sleep(Duration::from_secs(2));
    let running = find(api, "door-1");
    assert!(running["packetsIn"].as_u64().unwrap_or(0) > 50, "{running}");
    assert!(running["aacFrames"].as_u64().unwrap_or(0) > 50, "{running}");
    let (status, ended) = post(
        api,
        "/rest-api/call/terminate",
        &json!({"callId": "door-1"}).to_string(),
        None,
    );
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["state"], "FINISHED", "{ended}");
    assert_eq!(find(api, "door-1")["state"], "FINISHED");
    let idle = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        (srgate.health()?.calls == 0).then_some(())
    });
    assert!(idle.is_some(), "the call is gone from /health");
    let cdr = calls::last_cdr(&dir, before);
    assert_eq!(cdr["mode"], "rtmp", "{cdr}");
    assert_eq!(cdr["direction"], "rest_to_sip", "{cdr}");
    assert_eq!(cdr["call"], "door-1", "{cdr}");
    assert!(
        cdr["rtmp"]["aac_frames"].as_u64().unwrap_or(0) > 100,
        "{cdr}"
    );
    assert!(
        !cdr.to_string().contains("door1"),
        "no stream key in the record: {cdr}"
    );
    // the hook was told each change, the last one FINISHED
    let posts = hook_posts.join().expect("the hook server");
    let states: Vec<String> = posts
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["state"].as_str().unwrap_or("?"),
                p["rtmpState"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert!(
        posts
            .iter()
            .all(|p| p["event"] == "call_state" && p["callId"] == "door-1"),
        "{posts:?}"
    );
    assert!(
        states.iter().any(|s| s == "ESTABLISHED/PUBLISHING"),
        "{states:?}"
    );
    assert_eq!(
        states.last().map(String::as_str),
        Some("FINISHED/CLOSED"),
        "{states:?}"
    );
    assert!(
        !format!("{posts:?}").contains("door1"),
        "no stream key in hook posts"
    );
    eprintln!("hook: {states:?}");
    assert!(!srgate.log().contains("door1"), "no stream key in the log");
    assert!(
        phone
            .wait_for_line(0, &["terminated"], Duration::from_secs(5))
            .is_some(),
        "the phone's call ended: {}",
        phone.output()
    );

    // nginx closes its recording once the publisher has gone (deleteStream): the phone's
    // tone is in it
    assert_recorded_tone(&mut nginx, &dir, "door1", 3.0);
}

#[test]
fn bad_rest_requests_get_json_errors_and_change_nothing() {
    let dir = TestDir::new("rest-errors");
    let srgate = calls::standalone_gateway(&dir, &["1007"], "");
    let api = srgate.config.api_addr();
    let startup = "/rest-api/call/startup";
    let cases = [
        (
            startup,
            json!({"callId": "a", "rtmpUrl": "rtmp://127.0.0.1/live/", "rtmpStream": "s"})
                .to_string(),
            400,
            "BAD_FIELD",
            "callee",
        ),
        (
            startup,
            json!({"callId": "a", "callee": "1007", "rtmpUrl": "http://x/", "rtmpStream": "s"})
                .to_string(),
            400,
            "BAD_FIELD",
            "rtmpUrl",
        ),
        (startup, "{not json".to_owned(), 400, "BAD_JSON", "not JSON"),
        (
            "/rest-api/call/terminate",
            json!({"callId": "nobody"}).to_string(),
            404,
            "UNKNOWN_CALL",
            "callId",
        ),
        (
            "/rest-api/call/find",
            json!({"callId": "nobody"}).to_string(),
            404,
            "UNKNOWN_CALL",
            "callId",
        ),
        (
            startup,
            // a per-call account whose domain cannot be a SIP host
            json!({"callId": "a", "callee": "1007", "rtmpUrl": "rtmp://127.0.0.1/live/",
                   "rtmpStream": "s", "sipLogin": "x", "sipDomain": "pbx>;x",
                   "sipPassword": "secret-pw"})
            .to_string(),
            400,
            "BAD_FIELD",
            "sipDomain",
        ),
    ];
    for (path, body, code, error, field) in cases {
        let (status, json) = post(api, path, &body, None);
        assert_eq!(status, code, "{path} {body}: {json}");
        assert_eq!(json["error"], error, "{path} {body}: {json}");
        let message = json["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{path} {body}: {json}");
    }
    // GET is not how the API is used
    let get = common::http::get(api, "/rest-api/call/find", Duration::from_secs(3)).expect("GET");
    assert_eq!(get.status, 405, "{}", get.body);
    // a callee that is not registered: the call fails at once, nothing is up
    let (status, failed) = post(
        api,
        startup,
        &json!({"callId": "b", "callee": "1999", "rtmpUrl": "rtmp://127.0.0.1:9/live/",
                "rtmpStream": "s"})
        .to_string(),
        None,
    );
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["state"], "FAILED", "{failed}");
    assert_eq!(failed["sipStatus"], 480, "{failed}");
    assert_eq!(find(api, "b")["state"], "FAILED");
    let (status, all) = post(api, "/rest-api/call/find_all", "{}", None);
    assert_eq!(status, 200);
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), 1, "only the failed call: {all:?}");
    assert_eq!(srgate.health().expect("/health").calls, 0);
    assert!(
        !srgate.log().contains("secret-pw"),
        "no password in the log"
    );
}

#[test]
fn with_an_api_token_rest_requests_must_carry_it() {
    let token = "Zq4vT8mPw2nR6xL0cH3jY7sB";
    let dir = TestDir::new("rest-token");
    let srgate = calls::standalone_gateway(&dir, &[], &format!("[api]\ntoken = {token}\n"));
    let api = srgate.config.api_addr();
    let (status, e) = post(api, "/rest-api/call/find_all", "{}", None);
    assert_eq!(
        (status, e["error"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{e}"
    );
    let (status, e) = post(
        api,
        "/rest-api/call/find_all",
        "{}",
        Some("wrong-token-wrong-token"),
    );
    assert_eq!(status, 401, "{e}");
    let (status, all) = post(api, "/rest-api/call/find_all", "{}", Some(token));
    assert_eq!(status, 200, "{all}");
    assert_eq!(all, json!([]));
    // /health needs no token
    assert!(srgate.health().is_some());
}

/// Sends `head`, then (after `pause`) `body` as far as srgate takes it, and reads the
/// answer's status line: a refusal must reach a client that is still sending.
fn refused_while_sending(api: SocketAddr, head: &str, body: &[u8], pause: Duration) -> String {
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(5)).expect("listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("socket");
    stream.write_all(head.as_bytes()).expect("head sent");
    std::thread::sleep(pause);
    // srgate may have answered and shut its side already: a refused write is no failure
    let sent = stream.write_all(body);
    let mut answer = String::new();
    match stream.take(1 << 16).read_to_string(&mut answer) {
        Ok(_) => answer.lines().next().unwrap_or("").to_owned(),
        Err(e) => panic!("the answer was lost ({e}); the body's write: {sent:?}"),
    }
}

#[test]
fn refusals_reach_clients_still_sending_their_bodies() {
    let dir = TestDir::new("rest-refusals");
    let srgate = calls::standalone_gateway(&dir, &[], "[api]\ntoken = Zq4vT8mPw2nR6xL0cH3jY7sB\n");
    let api = srgate.config.api_addr();
    // a missing token, its body late: the 401 comes once the body is in
    let head = format!(
        "POST /rest-api/call/find_all HTTP/1.1\r\nHost: {api}\r\nContent-Length: 2\r\n\r\n"
    );
    let status = refused_while_sending(api, &head, b"{}", Duration::from_millis(300));
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    // a body over the limit, sent with its head and refused on it while 200 kB more come:
    // srgate reads and drops them, and the 413 is not lost to a reset
    let size = 200_000;
    let head = format!(
        "POST /rest-api/call/find_all HTTP/1.1\r\nHost: {api}\r\nContent-Length: {size}\r\n\r\n"
    );
    let status = refused_while_sending(api, &head, &vec![b' '; size], Duration::ZERO);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // and the API goes on answering
    assert!(srgate.health().is_some());
}

#[test]
fn a_rest_call_publishes_over_rtmps_and_reports_a_lost_server_while_the_call_goes_on() {
    if !peers_ready()
        || !nginx_rtmp::module_available(nginx_rtmp::STREAM_MODULE, "libnginx-mod-stream")
    {
        return;
    }
    let dir = TestDir::new("rest-rtmps");
    let pki = common::tls::test_pki(dir.path(), "rtmps");
    let mut nginx = NginxRtmp::start(dir.path(), Some((&pki.cert, &pki.key)));
    // srgate trusts the test authority for rtmps://
    let (srgate, _phone) = gateway_with_phone(&dir, &format!("[tls]\nca = {}\n", pki.ca.display()));
    let api = srgate.config.api_addr();
    let url = nginx.tls_url().expect("a TLS front");
    let (status, state) = post(
        api,
        "/rest-api/call/startup",
        &json!({"callId": "door-2", "callee": "1007", "rtmpUrl": url, "toStream": "door2"})
            .to_string(),
        None,
    );
    assert_eq!(status, 200, "{state}");
    let up = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = find(api, "door-2");
        (s["state"] == "ESTABLISHED" && s["rtmpState"] == "PUBLISHING").then_some(s)
    });
    assert!(
        up.is_some(),
        "publishing over TLS: {}\n{}\n{}",
        find(api, "door-2"),
        srgate.log(),
        nginx.output()
    );
    // the server goes away: the call goes on, the session is retried and says why
    nginx.stop();
    let retrying = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = find(api, "door-2");
        (s["rtmpState"] == "RETRYING" && !s["rtmpError"].is_null()).then_some(s)
    });
    let retrying = retrying.unwrap_or_else(|| panic!("retrying: {}", find(api, "door-2")));
    assert_eq!(retrying["state"], "ESTABLISHED", "{retrying}");
    // a retry or two fail (connection refused) while the call lasts
    let retried = common::wait_for(Duration::from_secs(8), Duration::from_millis(200), || {
        let s = find(api, "door-2");
        (s["rtmpReconnects"].as_u64().unwrap_or(0) >= 1).then_some(s)
    });
    assert!(retried.is_some(), "retried: {}", find(api, "door-2"));
    let (status, ended) = post(
        api,
        "/rest-api/call/terminate",
        &json!({"callId": "door-2"}).to_string(),
        None,
    );
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["state"], "FINISHED", "{ended}");
    // ended while the stream was down: FAILED, and why
    assert_eq!(ended["rtmpState"], "FAILED", "{ended}");
    assert!(ended["rtmpError"].is_string(), "{ended}");
    assert!(
        srgate.log().contains("RTMP session to rtmps://127.0.0.1"),
        "the lost session is logged"
    );
}

#[test]
fn in_proxy_mode_a_rest_call_goes_from_the_proxy_account_through_kamailio() {
    if !peers_ready()
        || !common::peers_available(&[common::KAMAILIO])
        || !common::netns::available()
        || !common::netns::enter(
            "in_proxy_mode_a_rest_call_goes_from_the_proxy_account_through_kamailio",
            Duration::from_secs(120),
        )
    {
        return;
    }
    let dir = TestDir::new("rest-kamailio");
    let mut nginx = NginxRtmp::start(dir.path(), None);
    let tones = calls::tones(&dir, 1.0, 60.0);
    let [kamailio_port] = common::net::free_ports::<1>();
    let kamailio = common::kamailio::Kamailio::start(dir.path(), kamailio_port, "1000");
    let srgate = common::Srgate::start(common::GatewayConfig::proxy(kamailio.addr()), dir.path());
    assert!(
        srgate
            .wait_registered(true, Duration::from_secs(10))
            .is_some(),
        "srgate's proxy account registers at Kamailio"
    );
    let phone = calls::phone_at_kamailio(&dir, &tones, kamailio_port);
    let api = srgate.config.api_addr();
    let (status, state) = post(
        api,
        "/rest-api/call/startup",
        &json!({"callId": "pbx-1", "callee": "1006", "rtmpUrl": nginx.url(),
                "rtmpStream": "pbx1"})
        .to_string(),
        None,
    );
    assert_eq!(status, 200, "{state}");
    let up = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = find(api, "pbx-1");
        (s["state"] == "ESTABLISHED" && s["rtmpState"] == "PUBLISHING").then_some(s)
    });
    assert!(up.is_some(), "up: {}\n{}", find(api, "pbx-1"), srgate.log());
    assert!(
        phone
            .wait_for_line(0, &["from sip:1000@"], Duration::from_secs(3))
            .is_some(),
        "the call came from the proxy account: {}",
        phone.output()
    );
    std::thread::sleep(Duration::from_secs(3));
    let (status, ended) = post(
        api,
        "/rest-api/call/terminate",
        &json!({"callId": "pbx-1"}).to_string(),
        None,
    );
    assert_eq!(
        (status, ended["state"].as_str()),
        (200, Some("FINISHED")),
        "{ended}"
    );
    assert_recorded_tone(&mut nginx, &dir, "pbx1", 2.5);
}

/// A REST call from a per-call SIP account (`sipLogin` 1009 at Kamailio, reached by the
/// name `localhost`, `sipRegisterRequired`): srgate (standalone, no `[proxy]` account)
/// registers 1009 with its digest, calls the phone registered at Kamailio as 1009, publishes
/// the phone's tone, and un-registers 1009 when the call is terminated. A wrong password
/// fails the call with the registrar's 401 and sends no INVITE; a proxy name that does not
/// resolve is a 400 naming the field. The password is in no log line and no answer.
#[test]
fn a_rest_call_from_a_per_call_account_registers_calls_and_unregisters() {
    if !peers_ready()
        || !common::peers_available(&[common::KAMAILIO])
        || !common::netns::available()
        || !common::netns::enter(
            "a_rest_call_from_a_per_call_account_registers_calls_and_unregisters",
            Duration::from_secs(120),
        )
    {
        return;
    }
    let dir = TestDir::new("rest-account");
    let mut nginx = NginxRtmp::start(dir.path(), None);
    let tones = calls::tones(&dir, 1.0, 60.0);
    let [kamailio_port] = common::net::free_ports::<1>();
    let kamailio = common::kamailio::Kamailio::start(dir.path(), kamailio_port, "1000");
    let srgate = calls::standalone_gateway(&dir, &[], "");
    let phone = calls::phone_at_kamailio(&dir, &tones, kamailio_port);
    let api = srgate.config.api_addr();
    let startup = |call_id: &str, password: &str, proxy: &str| {
        json!({"callId": call_id, "callee": "1006", "rtmpUrl": nginx.url(),
               "rtmpStream": call_id, "sipLogin": "1009", "sipPassword": password,
               "sipDomain": "127.0.0.1", "sipOutboundProxy": proxy,
               "sipPort": kamailio_port.to_string(), "sipRegisterRequired": "true"})
        .to_string()
    };
    let registrations = |k: &common::kamailio::Kamailio, expires: &str| {
        k.output()
            .lines()
            .filter(|l| l.contains("REGISTERED 1009") && l.contains(expires))
            .count()
    };

    // a wrong password: the registrar's 401 fails the call, no INVITE reaches the phone
    let before_bad = phone.mark();
    let (status, state) = post(
        api,
        "/rest-api/call/startup",
        &startup("acct-bad", "not-the-password", "127.0.0.1"),
        None,
    );
    assert_eq!(status, 200, "{state}");
    let failed = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = find(api, "acct-bad");
        (s["state"] == "FAILED").then_some(s)
    });
    let failed = failed.unwrap_or_else(|| panic!("FAILED: {}", find(api, "acct-bad")));
    assert_eq!(failed["sipStatus"], 401, "{failed}");
    assert_eq!(registrations(&kamailio, "expires="), 0);
    assert!(
        phone
            .wait_for_line(before_bad, &["from sip:1009@"], Duration::from_millis(500))
            .is_none(),
        "no INVITE after a refused registration: {}",
        phone.output()
    );

    // a proxy name that does not resolve: the field is named
    let (status, error) = post(
        api,
        "/rest-api/call/startup",
        &startup("acct-nx", "1009pw", "nowhere.invalid"),
        None,
    );
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("BAD_FIELD")),
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sipOutboundProxy: "),
        "{error}"
    );

    // the right one, by name: registered, called from 1009, published, un-registered
    let mark = phone.mark();
    let (status, state) = post(
        api,
        "/rest-api/call/startup",
        &startup("acct-1", "1009pw", "localhost"),
        None,
    );
    assert_eq!(status, 200, "{state}");
    let up = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = find(api, "acct-1");
        (s["state"] == "ESTABLISHED" && s["rtmpState"] == "PUBLISHING").then_some(s)
    });
    assert!(
        up.is_some(),
        "up: {}\n{}",
        find(api, "acct-1"),
        srgate.log()
    );
    assert_eq!(
        registrations(&kamailio, "expires=3600"),
        1,
        "{}",
        kamailio.output()
    );
    assert!(
        phone
            .wait_for_line(mark, &["from sip:1009@"], Duration::from_secs(3))
            .is_some(),
        "the call came from the per-call account: {}",
        phone.output()
    );
    std::thread::sleep(Duration::from_secs(3));
    let (status, ended) = post(
        api,
        "/rest-api/call/terminate",
        &json!({"callId": "acct-1"}).to_string(),
        None,
    );
    assert_eq!(
        (status, ended["state"].as_str()),
        (200, Some("FINISHED")),
        "{ended}"
    );
    let unregistered = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        (registrations(&kamailio, "expires=0") == 1).then_some(())
    });
    assert!(unregistered.is_some(), "un-REGISTER: {}", kamailio.output());
    assert_recorded_tone(&mut nginx, &dir, "acct-1", 2.5);
    let answers = format!("{} {} {failed} {ended}", find(api, "acct-1"), state);
    for text in [srgate.log(), answers] {
        assert!(!text.contains("1009pw") && !text.contains("not-the-password"));
    }
}

/// `hasVideo`: srgate offers the phone H.264 next to the audio and publishes the phone's
/// pictures on the stream unchanged. SIPp as a camera phone (reached through a per-call
/// account's outbound proxy) answers with H.264; ffmpeg's test card is its camera, through
/// a relay that holds back the first second so the stream must start with a picture
/// srgate asks for (RTCP PLI to the phone). nginx's recording then holds H.264 at the
/// card's size, decoding without errors, next to the AAC audio.
#[test]
fn a_rest_call_with_video_publishes_the_phones_h264() {
    if !peers_ready()
        || !common::peers_available(&[common::SIPP])
        || !common::netns::available()
        || !common::netns::enter(
            "a_rest_call_with_video_publishes_the_phones_h264",
            Duration::from_secs(120),
        )
    {
        return;
    }
    const PHONE_VIDEO: u16 = 30_000;
    const CAMERA: u16 = 30_020;
    let dir = TestDir::new("rest-video");
    let mut nginx = NginxRtmp::start(dir.path(), None);
    let srgate = calls::standalone_gateway(&dir, &[], "");
    let api = srgate.config.api_addr();
    let rtcp = std::net::UdpSocket::bind(("127.0.0.1", PHONE_VIDEO + 1)).expect("RTCP port");
    rtcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("socket");
    let [phone_port] = common::net::free_ports::<1>();
    let port_file = dir.join("srgate_video_port");
    let (phone_port_text, vport) = (phone_port.to_string(), PHONE_VIDEO.to_string());
    let phone = common::Sipp::spawn(
        "uas_video_answer.xml",
        &[
            "-p",
            &phone_port_text,
            "-key",
            "vport",
            &vport,
            "-key",
            "portfile",
            port_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(common::net::wait_port_bound(
        phone_port,
        true,
        Duration::from_secs(5)
    ));
    let (status, state) = post(
        api,
        "/rest-api/call/startup",
        &json!({"callId": "cam-1", "callee": "cam", "rtmpUrl": nginx.url(),
                "rtmpStream": "cam1", "hasVideo": "true", "sipLogin": "rest",
                "sipDomain": "127.0.0.1",
                "sipOutboundProxy": format!("127.0.0.1:{phone_port}")})
        .to_string(),
        None,
    );
    assert_eq!(status, 200, "{state}");
    let srgate_port = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    })
    .unwrap_or_else(|| panic!("srgate offered video: {}", srgate.log()));

    // the camera: ffmpeg → relay (the first second held back) → srgate, from the SDP's port
    let relay = common::camera::relay(CAMERA, PHONE_VIDEO, srgate_port);
    let mut camera = common::camera::start(dir.path(), CAMERA, 9);
    let up = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = find(api, "cam-1");
        (s["state"] == "ESTABLISHED" && s["rtmpState"] == "PUBLISHING").then_some(s)
    });
    assert!(up.is_some(), "up: {}\n{}", find(api, "cam-1"), srgate.log());
    // the live stream, pulled while the call goes on: AAC and H.264 at the card's size
    std::thread::sleep(Duration::from_secs(2));
    let live = format!("{}cam1", nginx.url());
    let mut probe = common::process::Process::spawn(
        "ffprobe-live",
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "5000000"])
            .args(["-analyzeduration", "3000000"])
            .args(["-show_entries", "stream=codec_type,codec_name,width,height"])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(&live),
        dir.path(),
    )
    .expect("ffprobe starts");
    let probed_ok = probe.wait_exit(Duration::from_secs(10));
    let probed = probe.stdout_text();
    assert!(
        probed_ok.is_some_and(|s| s.success())
            && probed.contains("codec_name=h264")
            && probed.contains("width=320")
            && probed.contains("codec_name=aac"),
        "ffprobe of the live stream: {probed_ok:?}\n{probed}\n{}",
        probe.output()
    );
    std::thread::sleep(Duration::from_secs(3));
    let (status, ended) = post(
        api,
        "/rest-api/call/terminate",
        &json!({"callId": "cam-1"}).to_string(),
        None,
    );
    assert_eq!(
        (status, ended["state"].as_str()),
        (200, Some("FINISHED")),
        "{ended}"
    );
    camera.terminate(Duration::from_secs(2));
    assert!(relay.join().expect("relay") > 50, "video relayed");
    phone
        .wait(Duration::from_secs(10))
        .assert_success("the phone answered with video and got srgate's BYE");

    // srgate asked the phone for a picture (the stream starts at a key frame)
    let mut buf = [0u8; 1500];
    let mut plis = 0;
    // bounded: 10 reads of at most 200 ms (the requests are queued in the socket)
    for _ in 0..10 {
        if let Ok((n, _)) = rtcp.recv_from(&mut buf)
            && n >= 20
            && buf[1] == 201
            && buf[9] == 206
        {
            plis += 1;
        }
    }
    assert!(
        plis > 0,
        "no picture request reached the phone\n{}",
        srgate.log()
    );

    // the recording: H.264 at the card's size, every picture decoding, and the AAC audio
    let flv = nginx.record_dir.join("cam1.flv");
    let probe = |args: &[&str]| -> Option<String> {
        let out = Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(&flv)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let streams = common::wait_for(Duration::from_secs(5), Duration::from_millis(200), || {
        probe(&[
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .filter(|s| s.contains("codec_name=h264"))
    });
    nginx.stop();
    let streams = streams.unwrap_or_else(|| panic!("h264 in the recording\n{}", nginx.output()));
    assert!(
        streams.contains("width=320") && streams.contains("height=240"),
        "{streams}"
    );
    assert!(streams.contains("codec_name=aac"), "{streams}");
    let frames = probe(&[
        "-count_frames",
        "-select_streams",
        "v",
        "-show_entries",
        "stream=nb_read_frames",
        "-of",
        "default=noprint_wrappers=1:nokey=1",
    ])
    .and_then(|s| s.trim().parse::<u64>().ok())
    .unwrap_or(0);
    assert!(
        frames >= 45,
        "{frames} pictures decoded (15 fps for 5 s and more)"
    );
    // decoded at the recording's own times (milliseconds): ffmpeg's default, a time base
    // of its guess of the frame rate, merges pictures less than a frame apart
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&flv)
        .args(["-map", "0:v", "-enc_time_base", "-1", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(
        decode.status.success() && errors.trim().is_empty(),
        "the pictures decode without errors: {errors}\npictures (ms, flags): {}",
        probe(&[
            "-select_streams",
            "v",
            "-show_entries",
            "packet=dts,flags",
            "-of",
            "csv=p=0"
        ])
        .unwrap_or_default()
        .replace('\n', " ")
    );
}
