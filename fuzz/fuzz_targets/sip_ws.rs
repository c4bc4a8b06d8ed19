//! Fuzzes srgate's SIP-over-WebSocket user agent (`signal::sip_ws::SipWs`): the input is a
//! sequence of frames (split at 0x1E), each either a SIP text frame from the client (first
//! byte even) or a JSON event of the call layer for the session (first byte odd), with a
//! context whose digest check passes credentials naming `1003`. Invariants: nothing panics;
//! every frame srgate sends parses as a SIP message (a request or a response, never a
//! half-built one), but for the 4xx/5xx to a request that does not parse itself (which
//! echoes its headers); every call request is made for the authenticated user; the ids it
//! makes for the client's calls are within the call layer's bound (64 bytes).
//!
//! Run: `cargo +nightly fuzz run sip_ws fuzz/corpus/sip_ws`
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use srgate::signal::hub::{CallRequest, HubOutput, SessionId};
use srgate::signal::protocol::MAX_ID;
use srgate::signal::sip_ws::{MAX_CALLS, SipWs, WsContext};
use srgate::sip::endpoint::WsAuth;
use srgate::wire::sip::{HeaderName, Message};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

struct Ctx(u64);

impl WsContext for Ctx {
    fn authenticate(
        &mut self,
        _: Instant,
        msg: &Message<'_>,
        proxy: bool,
        _: SocketAddr,
    ) -> WsAuth {
        let name = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        match msg.header(HeaderName::new(name)) {
            Some(v) if v.contains("1003") => WsAuth::Ok("1003".into()),
            _ => WsAuth::Refused {
                code: 401,
                reason: "Unauthorized",
                headers: vec![("WWW-Authenticate", "Digest realm=\"f\", nonce=\"1\"".into())],
            },
        }
    }
    fn login(&mut self, _: Instant, _: SessionId, user: &str) {
        assert_eq!(user, "1003");
    }
    fn logout(&mut self, _: Instant, _: SessionId) {}
    fn token(&mut self, len: usize) -> String {
        self.0 += 1;
        format!("{:0len$x}", self.0)
    }
}

const S: SessionId = 1;

fuzz_target!(|data: &[u8]| {
    let mut ws = SipWs::new("fuzz.example");
    let mut ctx = Ctx(0);
    ws.open(S, "127.0.0.1:5000".parse().unwrap());
    let mut now = base();
    for frame in data.split(|b| *b == 0x1e) {
        let Some((&kind, rest)) = frame.split_first() else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(rest) else {
            continue;
        };
        let malformed = ws.malformed;
        if kind % 2 == 0 {
            ws.handle_text(now, S, text, &mut ctx);
        } else {
            ws.handle_event(S, text, &mut ctx);
        }
        now += Duration::from_millis(u64::from(kind) * 100);
        if ws.poll_timeout().is_some_and(|t| t <= now) {
            ws.handle_timeout(now, &mut ctx);
        }
        while let Some(out) = ws.poll_output() {
            if let HubOutput::Send { session, text } = out {
                assert_eq!(session, S);
                match Message::parse(text.as_bytes()) {
                    Ok(msg) => assert!(msg.call_id().is_ok() && msg.cseq().is_ok(), "{text:?}"),
                    // the stateless answer to a request that does not parse echoes its
                    // headers as they came
                    Err(_) if ws.malformed > malformed => {
                        assert!(text.starts_with("SIP/2.0 4") || text.starts_with("SIP/2.0 5"))
                    }
                    Err(e) => panic!("srgate sent a frame that is not SIP ({e}): {text:?}"),
                }
            }
        }
        let mut calls = 0;
        while let Some(request) = ws.poll_request() {
            let CallRequest::Call { user, request } = request else {
                panic!("the agent ends no user");
            };
            assert_eq!(user, "1003");
            // the ids srgate makes for the client's calls are short; the call layer's
            // (its invitations, echoed back) are whatever its events said
            if let Some(id) = request.id().filter(|id| id.starts_with("ws")) {
                assert!(id.len() <= MAX_ID, "{id:?}");
            }
            calls += 1;
        }
        assert!(calls <= MAX_CALLS + 8);
    }
});
