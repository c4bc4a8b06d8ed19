//! Fuzzes the REST API's request reading (`rest::parse`, `rest::authorized`). The input's
//! first byte picks the path and method, the rest is the body (or, for the token check,
//! an `Authorization` value). Invariants: every refusal is a 4xx JSON error naming a code;
//! a startup that is taken has a valid call id and callee (its characters, its lengths),
//! an RTMP URL whose tcUrl reads back, and its stream key never shows in its `Debug`; a
//! dtmf is 1 to 32 of `0-9*#A-D`; no fuzzed Authorization value passes for a token the
//! fuzzer cannot know, and the right one always does.
//!
//! Run: `cargo +nightly fuzz run rest fuzz/seeds/rest`
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::rest::{self, RestRequest};

const PATHS: [&str; 6] = [
    "/rest-api/call/startup",
    "/rest-api/call/terminate",
    "/rest-api/call/find",
    "/rest-api/call/find_all",
    "/rest-api/call/send_dtmf",
    "/rest-api/call/other",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(pick) % PATHS.len()];
    let method = if pick & 0x80 == 0 { "POST" } else { "GET" };

    // the token check: only the exact value passes
    let token = "k3y-the-fuzzer-cannot-know-1234";
    assert!(!rest::authorized(Some(token), Some(body)) || body.ends_with(token.as_bytes()));
    assert!(rest::authorized(
        Some(token),
        Some(format!("Bearer {token}").as_bytes())
    ));

    match rest::parse(method, path, body) {
        Err(e) => {
            assert!(
                (400..500).contains(&e.status) && !e.code.is_empty(),
                "{e:?}"
            );
            let json: serde_json::Value = serde_json::from_str(&e.json()).expect("JSON");
            assert_eq!(json["error"], e.code);
        }
        Ok(request) => {
            assert_eq!(method, "POST");
            match request {
                RestRequest::Startup(s) => {
                    assert!(!s.call_id.is_empty() && s.call_id.len() <= rest::MAX_CALL_ID);
                    assert!(!s.callee.is_empty() && s.callee.len() <= rest::MAX_USER);
                    assert!(!s.callee.contains(['@', ':', '<', '>', ' ', '\r', '\n']));
                    let again =
                        srgate::rtmp::RtmpUrl::parse(&s.rtmp_url.tc_url(), &s.rtmp_url.stream)
                            .expect("a taken URL reads back");
                    assert_eq!(again, s.rtmp_url);
                    // a key long enough not to be part of the rest by chance
                    let key = &s.rtmp_url.stream;
                    let hook = s
                        .hook_url
                        .as_ref()
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    let elsewhere = [
                        s.rtmp_url.tc_url(),
                        s.call_id.clone(),
                        s.callee.clone(),
                        hook,
                    ]
                    .iter()
                    .any(|t| t.contains(key.as_str()));
                    if key.len() >= 12 && !elsewhere {
                        let shown = format!("{s:?}");
                        assert!(!shown.contains(key.as_str()), "{shown}");
                    }
                }
                RestRequest::SendDtmf { dtmf, .. } => {
                    assert!((1..=rest::MAX_DTMF).contains(&dtmf.len()));
                    assert!(dtmf.chars().all(|c| "0123456789*#ABCD".contains(c)));
                }
                RestRequest::Terminate { call_id } | RestRequest::Find { call_id } => {
                    assert!(!call_id.is_empty() && call_id.len() <= rest::MAX_CALL_ID);
                }
                RestRequest::FindAll => {}
            }
        }
    }
});
