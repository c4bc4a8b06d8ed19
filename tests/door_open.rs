//! Door opening (`[door]`) with real peers: SIPp is the door station (a `[users]` phone)
//! calling a resident's app in Chromium; the app keys `*1`, and srgate sends the
//! sequence to the door station as SIP INFO (the scenario fails without both INFOs) and
//! POSTs the opening to the door controller's relay (a listener of this test).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::TestDir;
use common::calls;
use serde_json::{Value, json};

const APP: &str = "flat301";

fn ready() -> bool {
    common::netns::available()
        && common::phone::available()
        && common::peers_available(&[common::SIPP])
}

#[test]
fn the_residents_dtmf_opens_the_door_by_info_and_hook() {
    if !ready()
        || !common::netns::enter(
            "the_residents_dtmf_opens_the_door_by_info_and_hook",
            Duration::from_secs(180),
        )
    {
        return;
    }
    let dir = TestDir::new("door-open");
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let srgate = calls::standalone_gateway(
        &dir,
        &["1006"],
        &format!("[door]\nopen_dtmf = *1\nopen_hook = http://{relay_addr}/relay/1\n"),
    );
    let tones = calls::tones(&dir, 30.0, 5.0);
    let mut app = calls::logged_in(&srgate, &tones, APP);
    let sipp =
        calls::sipp_1006_calls_the_app("uac_door_open.xml", srgate.sip_addr(), &dir, &mut app, APP);
    // the 200 toward the door goes once the browser's DTLS is up: key after it
    std::thread::sleep(Duration::from_secs(2));
    app.must(json!({"cmd": "dtmf", "digits": "*1"}));

    let (request, body) = relay_request(&relay);
    assert!(
        request.starts_with("POST /relay/1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert_eq!(body["event"], "door_open", "{body}");
    assert_eq!(body["door"], "1006", "{body}");
    assert_eq!(body["user"], APP, "{body}");
    assert_eq!(body["digits"], "*1", "{body}");

    let end = app.must(json!({"cmd": "wait_end", "timeout": 20}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    sipp.wait(Duration::from_secs(20))
        .assert_success("the door station got the sequence as SIP INFO");
    let log = srgate.log();
    assert!(log.contains("opened by"), "the opening is logged:\n{log}");
}

/// The relay's one request (head, JSON body), answered 200 (at most 20 s).
fn relay_request(relay: &TcpListener) -> (String, Value) {
    relay.set_nonblocking(true).unwrap();
    let (mut conn, _) =
        common::wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            relay.accept().ok()
        })
        .expect("srgate posted to the door relay");
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // bounded: one small request, closed by the client's Content-Length
    for _ in 0..64 {
        let n = conn.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if n == 0 || text.contains("\r\n\r\n") && text.ends_with('}') {
            break;
        }
    }
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(got).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.to_string() + "\r\n",
        serde_json::from_str(body).expect("JSON"),
    )
}
