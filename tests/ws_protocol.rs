//! The browser protocol over a real WebSocket (no browser): every error path, the limits,
//! login tokens, KICKED, the Origin allow-list, and that a broken message changes nothing.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{GatewayConfig, Srgate, TestDir};
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

fn connect(srgate: &Srgate, origin: Option<&str>) -> Result<Ws, Box<tungstenite::Error>> {
    connect_host(srgate, origin, None)
}

/// `host`: a Host header other than the address connected to (as after DNS rebinding).
fn connect_host(
    srgate: &Srgate,
    origin: Option<&str>,
    host: Option<&str>,
) -> Result<Ws, Box<tungstenite::Error>> {
    let addr = srgate.web_addr();
    let stream = TcpStream::connect(addr).expect("srgate listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    if let Some(host) = host {
        request.headers_mut().insert("Host", host.parse().unwrap());
    }
    tungstenite::client(request, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => Box::new(e),
            tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
        })
}

fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).unwrap();
}

/// The next JSON message (pings are skipped; the read timeout bounds the wait).
fn recv(ws: &mut Ws) -> Value {
    for _ in 0..16 {
        match ws.read().expect("a message within 5 s") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(_) => return json!({"closed": true}),
            _ => continue,
        }
    }
    panic!("no text message");
}

fn ask(ws: &mut Ws, text: &str) -> Value {
    send(ws, text);
    recv(ws)
}

fn start(dir: &TestDir, extra: &str) -> Srgate {
    let mut config = GatewayConfig::standalone();
    config.extra.push_str(extra);
    Srgate::start(config, dir.path())
}

#[test]
fn every_error_path_answers_and_changes_nothing() {
    let dir = TestDir::new("ws-errors");
    let srgate = start(&dir, "");
    let mut ws = connect(&srgate, None).unwrap();
    assert_eq!(ask(&mut ws, r#"{"type":"ping"}"#), json!({"type":"pong"}));
    let e = ask(
        &mut ws,
        r#"{"type":"invite","id":"c1","callee":"echo","sdp":"v=0"}"#,
    );
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("NOT_LOGGEDIN"), Some("c1"))
    );
    assert_eq!(ask(&mut ws, "{not json")["code"], "BAD_JSON");
    assert_eq!(
        ask(&mut ws, r#"{"type":"teleport","id":"x"}"#)["code"],
        "UNKNOWN_TYPE"
    );
    assert_eq!(ask(&mut ws, r#"{"type":"login"}"#)["code"], "BAD_REQUEST");
    assert_eq!(
        ask(&mut ws, r#"{"type":"login","user":"no spaces"}"#)["code"],
        "BAD_REQUEST"
    );
    let big = format!(
        r#"{{"type":"invite","id":"c2","callee":"echo","sdp":"{}"}}"#,
        "a".repeat(70_000)
    );
    assert_eq!(ask(&mut ws, &big)["code"], "TOO_LARGE");
    ws.send(Message::Binary(vec![1, 2, 3].into())).unwrap();
    assert_eq!(recv(&mut ws)["code"], "BAD_JSON");
    // the socket still works after every refusal
    assert_eq!(
        ask(&mut ws, r#"{"type":"login","user":"1001"}"#),
        json!({"type":"login_ok","user":"1001"})
    );
    let long = "x".repeat(8193);
    let e = ask(
        &mut ws,
        &format!(r#"{{"type":"invite","id":"c3","callee":"1006","sdp":"v=0","content":"{long}"}}"#),
    );
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("BAD_REQUEST"), Some("c3"))
    );
    for request in [
        r#"{"type":"hangup","id":"nope"}"#,
        r#"{"type":"cancel","id":"nope"}"#,
        r#"{"type":"accept","id":"nope","sdp":"v=0"}"#,
        r#"{"type":"refuse","id":"nope"}"#,
        r##"{"type":"dtmf","id":"nope","digits":"1#"}"##,
    ] {
        let e = ask(&mut ws, request);
        let got = (e["code"].as_str(), e["id"].as_str());
        assert_eq!(got, (Some("NO_SUCH_CALL"), Some("nope")), "{request}");
    }
    // a SIP call with an offer that is not usable SDP is refused and leaves nothing
    let e = ask(
        &mut ws,
        r#"{"type":"invite","id":"c4","callee":"1006","sdp":"v=0"}"#,
    );
    let got = (e["code"].as_str(), e["id"].as_str());
    assert_eq!(got, (Some("BAD_REQUEST"), Some("c4")));
    // an echo call with an offer that is not SDP is refused and leaves nothing
    let e = ask(
        &mut ws,
        r#"{"type":"invite","id":"c5","callee":"echo","sdp":"not sdp"}"#,
    );
    let got = (e["code"].as_str(), e["id"].as_str());
    assert_eq!(got, (Some("BAD_REQUEST"), Some("c5")));
    let health = srgate.health().unwrap();
    assert_eq!(health.calls, 0);
}

#[test]
fn a_second_login_kicks_the_first_socket() {
    let dir = TestDir::new("ws-kick");
    let srgate = start(&dir, "");
    let mut first = connect(&srgate, None).unwrap();
    assert_eq!(
        ask(&mut first, r#"{"type":"login","user":"1001"}"#)["type"],
        "login_ok"
    );
    let mut second = connect(&srgate, None).unwrap();
    assert_eq!(
        ask(&mut second, r#"{"type":"login","user":"1001"}"#)["type"],
        "login_ok"
    );
    assert_eq!(recv(&mut first)["code"], "KICKED");
    // then the first socket is closed by srgate
    let closed = matches!(first.read(), Ok(Message::Close(_)) | Err(_));
    assert!(closed, "the kicked socket is closed");
    assert_eq!(ask(&mut second, r#"{"type":"ping"}"#)["type"], "pong");
}

#[test]
fn tokens_expired_forged_and_valid() {
    let dir = TestDir::new("ws-tokens");
    let secret = "0123456789abcdef0123456789abcdef";
    let srgate = start(&dir, &format!("[auth]\nsecret = {secret}\n"));
    let mut ws = connect(&srgate, None).unwrap();
    #[allow(clippy::disallowed_methods)] // the test plays the app backend minting tokens
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = srgate::signal::token::mint(secret.as_bytes(), "1001", now - 1);
    let forged = srgate::signal::token::mint(b"not the secret", "1001", now + 600);
    let good = srgate::signal::token::mint(secret.as_bytes(), "1001", now + 600);
    for (token, want) in [
        ("", "AUTH_FAILED"),
        (expired.as_str(), "AUTH_FAILED"),
        (forged.as_str(), "AUTH_FAILED"),
    ] {
        let e = ask(
            &mut ws,
            &format!(r#"{{"type":"login","user":"1001","token":"{token}"}}"#),
        );
        assert_eq!(e["code"], want, "{token}");
    }
    let e = ask(&mut ws, r#"{"type":"hangup","id":"c1"}"#);
    assert_eq!(e["code"], "NOT_LOGGEDIN", "a refused login logs nobody in");
    let ok = ask(
        &mut ws,
        &format!(r#"{{"type":"login","user":"1001","token":"{good}"}}"#),
    );
    assert_eq!(ok["type"], "login_ok");
    // the token printed by the command line works too
    let out = std::process::Command::new(Srgate::binary())
        .args(["token", "1002", "--ttl", "60", "-c"])
        .arg(srgate.config_file())
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let mut ws2 = connect(&srgate, None).unwrap();
    let ok = ask(
        &mut ws2,
        &format!(
            r#"{{"type":"login","user":"1002","token":"{}"}}"#,
            printed.trim()
        ),
    );
    assert_eq!(ok["type"], "login_ok");
}

#[test]
fn origins_outside_the_allow_list_are_refused() {
    let dir = TestDir::new("ws-origins");
    let srgate = start(&dir, "[webrtc]\nallowed_origins = https://app.example\n");
    assert!(connect(&srgate, Some("https://evil.example")).is_err());
    assert!(
        connect(&srgate, None).is_err(),
        "a missing Origin is refused when a list is set"
    );
    let mut ws = connect(&srgate, Some("https://app.example")).unwrap();
    assert_eq!(ask(&mut ws, r#"{"type":"ping"}"#)["type"], "pong");
}

#[test]
fn by_default_only_the_pages_own_origin_may_open_the_websocket() {
    let dir = TestDir::new("ws-same-origin");
    let srgate = start(&dir, "");
    let own = format!("http://{}", srgate.web_addr());
    // cross-site WebSocket hijacking: a page elsewhere, in a visitor's browser
    for foreign in [
        "https://evil.example",
        "http://127.0.0.1:1",
        &own.replace("http:", "https:"),
        "null",
    ] {
        assert!(
            connect(&srgate, Some(foreign)).is_err(),
            "Origin {foreign} is refused"
        );
    }
    let mut ws = connect(&srgate, Some(&own)).unwrap();
    assert_eq!(
        ask(&mut ws, r#"{"type":"login","user":"1001"}"#)["type"],
        "login_ok"
    );
    // native clients send no Origin
    let mut ws = connect(&srgate, None).unwrap();
    assert_eq!(ask(&mut ws, r#"{"type":"ping"}"#)["type"], "pong");
    // the page's own origin under the name localhost
    let port = srgate.web_addr().port();
    let local = format!("localhost:{port}");
    let mut ws = connect_host(&srgate, Some(&format!("http://{local}")), Some(&local)).unwrap();
    assert_eq!(ask(&mut ws, r#"{"type":"ping"}"#)["type"], "pong");
    // DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1 is
    // same-origin with itself, but open login (no secret) wants a loopback Host
    let rebound = format!("evil.example:{port}");
    assert!(
        connect_host(&srgate, Some(&format!("http://{rebound}")), Some(&rebound)).is_err(),
        "open login refuses a foreign Host"
    );
    assert!(connect_host(&srgate, None, Some(&rebound)).is_err());
}

#[test]
fn allowed_origins_star_admits_any_origin_and_a_secret_any_host() {
    let dir = TestDir::new("ws-any-origin");
    let srgate = start(
        &dir,
        "[webrtc]\nallowed_origins = *\n[auth]\nsecret = 0123456789abcdef0123456789abcdef\n",
    );
    let port = srgate.web_addr().port();
    let host = format!("gw.example:{port}");
    let mut ws = connect_host(&srgate, Some("https://app.example"), Some(&host)).unwrap();
    assert_eq!(ask(&mut ws, r#"{"type":"ping"}"#)["type"], "pong");
}

/// A browser offer good enough for srgate to answer (no media will flow).
const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
a=ice-pwd:browserpassword0123456789\r\na=fingerprint:sha-256 \
AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

#[test]
fn at_max_calls_new_calls_are_refused_overloaded_and_the_call_up_goes_on() {
    let dir = TestDir::new("ws-overload");
    let srgate = start(&dir, "[calls]\nmax_calls = 1\n");
    let invite =
        |id: &str| json!({"type": "invite", "id": id, "callee": "echo", "sdp": OFFER}).to_string();
    let mut anna = connect(&srgate, None).unwrap();
    assert_eq!(
        ask(&mut anna, r#"{"type":"login","user":"anna"}"#)["type"],
        "login_ok"
    );
    let first = ask(&mut anna, &invite("a1"));
    assert_eq!(first["state"], "SENT_TO_REMOTE", "{first}");
    let mut ben = connect(&srgate, None).unwrap();
    assert_eq!(
        ask(&mut ben, r#"{"type":"login","user":"ben"}"#)["type"],
        "login_ok"
    );
    let refused = ask(&mut ben, &invite("b1"));
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["code"].as_str(),
            refused["id"].as_str()
        ),
        (Some("error"), Some("OVERLOADED"), Some("b1")),
        "{refused}"
    );
    assert_eq!(srgate.metric("calls_refused_overload_total"), 1);
    assert_eq!(srgate.health().unwrap().calls, 1, "the call up goes on");
    // once the first call ends, the next one is taken
    // (never answered: a hangup before the answer cancels it)
    let ended = ask(&mut anna, r#"{"type":"hangup","id":"a1"}"#);
    assert_eq!(ended["state"], "CANCELED", "{ended}");
    let again = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let v = ask(&mut ben, &invite("b2"));
        (v["state"] == "SENT_TO_REMOTE").then_some(v)
    });
    assert!(again.is_some(), "a call is taken again below the limit");
}

/// `[webrtc] ice_servers` reach the browser in `login_ok`: STUN as is, TURN with a
/// credential of coturn's `use-auth-secret` scheme made for this login (checked against
/// openssl's HMAC-SHA1), valid `turn_ttl` seconds from now; without ice_servers there is
/// no `iceServers` field.
#[test]
fn login_ok_hands_out_ice_servers_with_time_limited_turn_credentials() {
    let dir = TestDir::new("ws-ice-servers");
    let srgate = start(
        &dir,
        "[webrtc]\nice_servers = stun:stun.example.org:3478, turn:turn.example.org:3478?transport=udp\n\
         turn_secret = north-wind\nturn_ttl = 600\n",
    );
    let mut ws = connect(&srgate, None).unwrap();
    let ok = ask(&mut ws, r#"{"type":"login","user":"alice"}"#);
    assert_eq!(ok["type"], "login_ok", "{ok}");
    let servers = ok["iceServers"].as_array().expect("iceServers");
    assert_eq!(servers[0]["urls"][0], "stun:stun.example.org:3478");
    assert!(
        servers[0].get("credential").is_none(),
        "no credential for STUN"
    );
    let turn = &servers[1];
    assert_eq!(turn["urls"][0], "turn:turn.example.org:3478?transport=udp");
    let username = turn["username"].as_str().expect("a username");
    let (expiry, user) = username.split_once(':').expect("EXPIRY:USER");
    assert_eq!(user, "alice");
    #[allow(clippy::disallowed_methods)] // the wall clock the expiry is counted in
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().expect("Unix seconds");
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "valid turn_ttl from now: {expiry} vs {now}"
    );
    let openssl = std::process::Command::new("sh")
        .args([
            "-c",
            "printf %s \"$1\" | openssl dgst -sha1 -hmac north-wind -binary | base64",
            "sh",
            username,
        ])
        .output()
        .expect("openssl runs");
    let expected = String::from_utf8_lossy(&openssl.stdout).trim().to_string();
    assert_eq!(turn["credential"], expected.as_str(), "coturn's scheme");
    assert!(!ok.to_string().contains("north-wind"), "the secret stays");

    let plain = start(&TestDir::new("ws-no-ice-servers"), "");
    let mut ws = connect(&plain, None).unwrap();
    let ok = ask(&mut ws, r#"{"type":"login","user":"bob"}"#);
    assert!(ok.get("iceServers").is_none(), "{ok}");
}

#[test]
fn the_demo_page_and_client_are_served() {
    let dir = TestDir::new("web-page");
    let srgate = start(&dir, "");
    let page = common::http::get(srgate.web_addr(), "/", Duration::from_secs(2)).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("srgate"));
    let js = common::http::get(srgate.web_addr(), "/srgate.js", Duration::from_secs(2)).unwrap();
    assert_eq!(js.status, 200);
    let missing = common::http::get(srgate.web_addr(), "/nope", Duration::from_secs(2)).unwrap();
    assert_eq!(missing.status, 404);
}

/// The test harness itself: a port taken between picking and binding (by another test
/// process) makes srgate stop at startup; the harness picks again and srgate runs.
#[test]
fn the_harness_starts_srgate_again_when_its_api_port_was_taken() {
    let dir = TestDir::new("ws-port-taken");
    let config = GatewayConfig::standalone();
    let squatter = std::net::TcpListener::bind(config.api_addr()).expect("the port is free");
    let taken = config.api_port;
    let srgate = Srgate::start(config, dir.path());
    assert_ne!(srgate.api_port(), taken);
    assert_eq!(srgate.health().expect("srgate runs").status, "ok");
    drop(squatter);
}
