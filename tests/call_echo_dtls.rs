//! An echo call driven through the call layer against a simulated browser (hand-made STUN
//! checks and a `dimpl` DTLS client) on a simulated clock: with the right certificate the
//! call is answered once DTLS connects; with a fingerprint that does not match it fails
//! cleanly (`FAILURE` `MEDIA_FAILED`, no hangup, nothing left: no call, nothing more sent);
//! a browser that vanishes loses its answered call within 30 s (ICE consent, RFC 7675).

#[path = "../benches/support/stun.rs"]
mod stun;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::{Dtls, Output};
use serde_json::Value;

use srgate::call::{Calls, CallsConfig, Ctx, RtpPorts};
use srgate::sdp::Codec;
use srgate::signal::hub::CallRequest;
use srgate::signal::protocol::Request;
use srgate::sip::endpoint::{Endpoint, EndpointConfig};
use srgate::webrtc::cert::Certificate;
use srgate::webrtc::dtls::DtlsContext;

const SRGATE: &str = "127.0.0.1:20000";
const BROWSER: &str = "127.0.0.1:53123";
const BROWSER_UFRAG: &str = "brWs";
const BROWSER_PWD: &str = "browserpassword0123456789";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Echo calls need no RTP port: any request for one is a failure.
struct NoPorts;

impl RtpPorts for NoPorts {
    fn open(&mut self) -> Option<u16> {
        panic!("an echo call asked for an RTP port")
    }
    fn close(&mut self, _port: u16) {}
}

fn calls_config(seed: u8, now: Instant) -> CallsConfig {
    CallsConfig {
        media_addr: addr(SRGATE),
        rtp_ip: addr(SRGATE).ip(),
        loop_ip: addr(SRGATE).ip(),
        ice_tcp: false,
        codecs: vec![Codec::Opus],
        opus_complexity: 5,
        rtp_timeout: Duration::from_secs(30),
        sip_srtp: srgate::config::SipSrtp::Optional,
        invitation_timeout: Duration::from_secs(60),
        rtm2sip: None,
        standalone: true,
        anonymous_caller: "1086".into(),
        app_display_name: false,
        shard: 0,
        max_calls: 4096,
        door: None,
        rest_hook: None,
        seed: [seed; 32],
        clock_anchor: (now, 1_700_000_000_000),
    }
}

fn endpoint(now: Instant) -> Endpoint {
    Endpoint::new(
        EndpointConfig::standalone(addr("127.0.0.1:5086"), "127.0.0.1", &[], [9; 32]),
        now,
    )
}

/// Runs `f` with a call-layer context over `sip`.
macro_rules! ctx {
    ($sip:expr) => {
        &mut Ctx {
            sip: &mut $sip,
            ports: &mut NoPorts,
            online: &|_: &str| true,
        }
    };
}

fn offer(fingerprint: &srgate::sdp::Fingerprint) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:{BROWSER_UFRAG}\r\na=ice-pwd:{BROWSER_PWD}\r\n\
         a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\n\
         a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    )
}

fn attribute<'a>(sdp: &'a str, name: &str) -> &'a str {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("a={name}:")))
        .unwrap_or_else(|| panic!("answer has a={name}: {sdp}"))
        .trim()
}

struct Run {
    states: Vec<String>,
    other: Vec<Value>,
    calls_left: usize,
    sent_after_end: usize,
}

fn run(lie_about_fingerprint: bool) -> Run {
    #[allow(clippy::disallowed_methods)] // the simulated clock's origin
    let mut now = Instant::now();
    let srgate_cert = Certificate::generate().unwrap();
    let mut sip = endpoint(now);
    let mut calls = Calls::new(
        calls_config(1, now),
        DtlsContext::new(&srgate_cert).unwrap(),
    );
    let browser_cert = Certificate::generate().unwrap();
    let offered = if lie_about_fingerprint {
        Certificate::generate().unwrap().fingerprint().clone()
    } else {
        browser_cert.fingerprint().clone()
    };
    let invite = Request::Invite {
        id: "c1".into(),
        callee: "echo".into(),
        sdp: offer(&offered),
        content: None,
        channel_id: None,
    };
    calls.handle_request(
        now,
        CallRequest::Call {
            user: "1001".into(),
            request: invite,
        },
        ctx!(sip),
    );
    let mut states = Vec::new();
    let mut other = Vec::new();
    let mut collect = |calls: &mut Calls, states: &mut Vec<String>| {
        while let Some((user, text)) = calls.poll_message() {
            assert_eq!(user, "1001");
            let v: Value = serde_json::from_str(&text).unwrap();
            match v["type"].as_str() {
                Some("local_state") => states.push(format!(
                    "{}{}",
                    v["state"].as_str().unwrap(),
                    v["error"]
                        .as_str()
                        .map(|e| format!(":{e}"))
                        .unwrap_or_default()
                )),
                _ => other.push(v),
            }
        }
    };
    let mut answer = String::new();
    while let Some((_, text)) = calls.poll_message() {
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "local_state", "{v}");
        states.push(v["state"].as_str().unwrap().to_string());
        answer = v["sdp"].as_str().unwrap_or_default().to_string();
    }
    let (ufrag, pwd) = (
        attribute(&answer, "ice-ufrag").to_string(),
        attribute(&answer, "ice-pwd").to_string(),
    );

    let mut browser = Dtls::new_12(
        Arc::new(dimpl::Config::default()),
        browser_cert.dtls_certificate(),
        now,
    );
    browser.set_active(true); // srgate answers passive
    browser.handle_timeout(now).unwrap();
    let mut check = stun::binding_request(&format!("{ufrag}:{BROWSER_UFRAG}"), &pwd, true);
    calls.handle_datagram(now, addr(BROWSER), &mut check, ctx!(sip));
    let mut buf = vec![0u8; 2048];
    let mut sent_after_end = 0;
    for _ in 0..300 {
        // browser → srgate
        loop {
            match browser.poll_output(&mut buf) {
                Output::Packet(p) => {
                    let mut p = p.to_vec();
                    calls.handle_datagram(now, addr(BROWSER), &mut p, ctx!(sip));
                }
                Output::Timeout(_) => break,
                Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                _ => {}
            }
        }
        // srgate → browser
        let mut out = vec![0u8; 2048];
        while let Some(t) = calls.poll_transmit(now, &mut out) {
            assert_eq!(t.destination, addr(BROWSER));
            if calls.count() == 0 {
                sent_after_end += 1;
            }
            if out[0] >= 20 && out[0] <= 63 {
                let _ = browser.handle_packet(&out[..t.len]);
            }
        }
        collect(&mut calls, &mut states);
        if states.iter().any(|s| s != "SENT_TO_REMOTE") {
            break;
        }
        now += Duration::from_millis(10);
        calls.handle_timeout(now, ctx!(sip));
        let _ = browser.handle_timeout(now);
    }
    // A browser that vanishes (no more ICE checks) loses its call within 30 s (RFC 7675).
    now += Duration::from_secs(31);
    calls.handle_timeout(now, ctx!(sip));
    let mut out = vec![0u8; 2048];
    if calls.count() == 0 {
        while calls.poll_transmit(now, &mut out).is_some() {
            sent_after_end += 1;
        }
    }
    collect(&mut calls, &mut states);
    Run {
        states,
        other,
        calls_left: calls.count(),
        sent_after_end,
    }
}

#[test]
fn the_echo_answers_when_dtls_connects() {
    let r = run(false);
    assert_eq!(r.states, vec!["SENT_TO_REMOTE", "ACCEPTED_BY_REMOTE"]);
    // then the simulated browser vanished: consent expired, the call ended with one hangup
    assert_eq!(r.other.len(), 1, "{:?}", r.other);
    assert_eq!(r.other[0]["type"], "hangup");
    assert_eq!(r.other[0]["reason"], "TIMEOUT");
    assert_eq!(r.calls_left, 0);
}

#[test]
fn a_dtls_fingerprint_mismatch_fails_the_call_cleanly() {
    let r = run(true);
    assert_eq!(r.states, vec!["SENT_TO_REMOTE", "FAILURE:MEDIA_FAILED"]);
    assert!(
        r.other.is_empty(),
        "no hangup for a call never answered: {:?}",
        r.other
    );
    assert_eq!(r.calls_left, 0, "nothing of the call is left");
    assert_eq!(r.sent_after_end, 0, "and nothing more is sent");
}

#[test]
fn one_user_cannot_open_calls_without_end() {
    #[allow(clippy::disallowed_methods)] // the simulated clock's origin
    let now = Instant::now();
    let cert = Certificate::generate().unwrap();
    let mut sip = endpoint(now);
    let mut calls = Calls::new(calls_config(2, now), DtlsContext::new(&cert).unwrap());
    let fp = Certificate::generate().unwrap().fingerprint().clone();
    for i in 0..=srgate::call::MAX_CALLS_PER_USER {
        let invite = Request::Invite {
            id: format!("c{i}"),
            callee: "echo".into(),
            sdp: offer(&fp),
            content: None,
            channel_id: None,
        };
        calls.handle_request(
            now,
            CallRequest::Call {
                user: "1001".into(),
                request: invite,
            },
            ctx!(sip),
        );
    }
    let last: Vec<Value> = std::iter::from_fn(|| calls.poll_message())
        .map(|(_, t)| serde_json::from_str(&t).unwrap())
        .collect();
    assert_eq!(calls.count(), srgate::call::MAX_CALLS_PER_USER);
    let refused = last.last().unwrap();
    assert_eq!(
        (refused["code"].as_str(), refused["id"].as_str()),
        (Some("BAD_REQUEST"), Some("c8"))
    );
    // another user is not affected
    let invite = Request::Invite {
        id: "x".into(),
        callee: "echo".into(),
        sdp: offer(&fp),
        content: None,
        channel_id: None,
    };
    calls.handle_request(
        now,
        CallRequest::Call {
            user: "1002".into(),
            request: invite,
        },
        ctx!(sip),
    );
    assert_eq!(calls.count(), srgate::call::MAX_CALLS_PER_USER + 1);
}
