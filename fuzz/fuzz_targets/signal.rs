//! Fuzzes the browser protocol: `signal::protocol::parse` of a client's text frame, and
//! the hub (`Hub::handle_text`) with a login secret and with open login, fed the input as
//! a sequence of frames (split at 0x1E) on two sessions, one logged in with a valid token.
//! Invariants: a parsed request holds only what the protocol allows (lengths, user names,
//! DTMF digits); every refusal and every frame the hub sends is a JSON object with a
//! string `type`; a call request is only ever made for the logged-in user.
//!
//! Run: `cargo +nightly fuzz run signal fuzz/seeds/signal`
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use srgate::signal::hub::{CallRequest, Hub, HubOutput};
use srgate::signal::protocol::{
    MAX_CONTENT, MAX_DIGITS, MAX_FRAME, MAX_ID, Request, parse, valid_user,
};
use srgate::signal::token;

const SECRET: &str = "fuzz-secret-0123456789";
const NOW: u64 = 1_800_000_000;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_parse(text);
    for secret in [SECRET, ""] {
        hub(secret, text);
    }
});

fn json_object(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v.get("type").is_some_and(Value::is_string), "{text}");
}

fn check_parse(text: &str) {
    match parse(text) {
        Err(refusal) => {
            json_object(&refusal.to_json());
            if let Some(id) = &refusal.id {
                assert!(!id.is_empty() && id.len() <= MAX_ID);
            }
        }
        Ok(request) => {
            assert!(text.len() <= MAX_FRAME);
            if let Some(id) = request.id() {
                assert!(!id.is_empty() && id.len() <= MAX_ID);
            }
            match &request {
                Request::Login { user, token } => {
                    assert!(valid_user(user));
                    assert!(token.len() <= 1024);
                }
                Request::Invite {
                    callee,
                    sdp,
                    content,
                    channel_id,
                    ..
                } => {
                    assert!(valid_user(callee));
                    assert!(!sdp.is_empty() && sdp.len() <= MAX_FRAME);
                    assert!(content.as_ref().is_none_or(|c| c.len() <= MAX_CONTENT));
                    assert!(channel_id.as_ref().is_none_or(|c| c.len() <= MAX_ID));
                }
                Request::Accept { sdp, response, .. } => {
                    assert!(!sdp.is_empty());
                    assert!(response.as_ref().is_none_or(|c| c.len() <= MAX_CONTENT));
                }
                Request::Preview { sdp, .. } => assert!(!sdp.is_empty()),
                Request::Refuse { response, .. } => {
                    assert!(response.as_ref().is_none_or(|c| c.len() <= MAX_CONTENT));
                }
                Request::Dtmf { digits, .. } => {
                    assert!(!digits.is_empty() && digits.len() <= MAX_DIGITS);
                    assert!(digits.bytes().all(|b| b"0123456789*#ABCD".contains(&b)));
                }
                Request::Cancel { .. } | Request::Hangup { .. } | Request::Ping => {}
                Request::Offer { .. } => panic!("srgate's internal offer request parsed: {text}"),
            }
        }
    }
}

fn hub(secret: &str, text: &str) {
    let now = base();
    let mut hub = Hub::new(secret);
    hub.open(now, 1);
    hub.open(now, 2);
    let login = format!(
        r#"{{"type":"login","user":"1001","token":"{}"}}"#,
        token::mint(secret.as_bytes(), "1001", NOW + 60)
    );
    hub.handle_text(now, NOW, 1, &login);
    assert_eq!(hub.user_of(1), Some("1001"));
    for (i, frame) in text.split('\u{1e}').take(16).enumerate() {
        let session = 1 + (i as u64 % 2);
        hub.handle_text(now, NOW, session, frame);
        drain(&mut hub);
    }
    hub.handle_timeout(now + Duration::from_secs(6));
    drain(&mut hub);
    hub.close(now + Duration::from_secs(6), 1);
    hub.handle_timeout(now + Duration::from_secs(20));
    drain(&mut hub);
}

fn drain(hub: &mut Hub) {
    while let Some(out) = hub.poll_output() {
        if let HubOutput::Send { text, .. } = out {
            json_object(&text);
        }
    }
    while let Some(req) = hub.poll_request() {
        match req {
            CallRequest::Call { user, request } => {
                assert!(valid_user(&user));
                assert!(!matches!(request, Request::Login { .. } | Request::Ping));
            }
            CallRequest::UserGone { user } => assert!(valid_user(&user)),
        }
    }
}
