//! REST calls through the call layer without sockets: the SIP leg and the RTMP connection
//! as commands, the clock simulated; and the fault isolation, with a panic injected where
//! a call's own code runs.

#![cfg_attr(not(feature = "aac"), allow(dead_code))] // the fault test needs the encoder

use std::time::{Duration, Instant};

use super::*;
use crate::call::link::{SipCommand, SipOutbox};
use crate::call::{CallsConfig, RtpPorts};

/// Where a test makes a call's code panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// In its audio tick (a timer).
    Tick,
    /// While it is being ended.
    End,
    /// While it starts, once its INVITE is out (callee [`PANIC_AFTER_INVITE`]).
    Start,
}

/// The callee whose startup panics once its INVITE is out.
pub(super) const PANIC_AFTER_INVITE: &str = "7777";

/// Panics when the call's `fault` is `at`.
pub(super) fn fault_at(fault: Option<Fault>, at: Fault) {
    if fault == Some(at) {
        panic!("injected fault at {at:?}");
    }
}

/// RTP ports handed out in turn, never bound; the ones open.
#[derive(Default)]
struct Ports {
    next: u16,
    open: Vec<u16>,
}

impl RtpPorts for Ports {
    fn open(&mut self) -> Option<u16> {
        let port = 30_000 + 2 * self.next;
        self.next += 1;
        self.open.push(port);
        Some(port)
    }
    fn close(&mut self, port: u16) {
        assert!(self.open.contains(&port), "port {port} closed twice");
        self.open.retain(|p| *p != port);
    }
}

struct Shard {
    now: Instant,
    calls: Calls,
    sip: SipOutbox,
    ports: Ports,
}

impl Shard {
    fn new() -> Shard {
        #[allow(clippy::disallowed_methods)] // the simulated clock's origin
        let now = Instant::now();
        let config = CallsConfig {
            media_addr: "127.0.0.1:20000".parse().unwrap(),
            rtp_ip: "127.0.0.1".parse().unwrap(),
            loop_ip: "127.0.0.1".parse().unwrap(),
            ice_tcp: false,
            codecs: vec![Codec::Opus, Codec::Pcmu],
            opus_complexity: 5,
            rtp_timeout: Duration::from_secs(30),
            sip_srtp: crate::config::SipSrtp::Optional,
            invitation_timeout: Duration::from_secs(60),
            rtm2sip: None,
            standalone: false,
            anonymous_caller: "1086".into(),
            app_display_name: false,
            shard: 0,
            max_calls: 100,
            door: None,
            rest_hook: None,
            seed: [9; 32],
            clock_anchor: (now, 1_700_000_000_000),
        };
        let cert = crate::webrtc::cert::Certificate::generate().unwrap();
        let dtls = crate::webrtc::dtls::DtlsContext::new(&cert).unwrap();
        Shard {
            now,
            calls: Calls::new(config, dtls),
            sip: SipOutbox::default(),
            ports: Ports::default(),
        }
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Calls, Instant, &mut Ctx<'_>) -> T) -> T {
        let online = |_: &str| true;
        let mut ctx = Ctx {
            sip: &mut self.sip,
            ports: &mut self.ports,
            online: &online,
        };
        f(&mut self.calls, self.now, &mut ctx)
    }

    fn rest(&mut self, name: &str, body: &str) -> (u16, serde_json::Value) {
        let request =
            crate::rest::parse("POST", &format!("/rest-api/call/{name}"), body.as_bytes())
                .expect("a valid request");
        let (status, body) = self.with(|c, now, ctx| c.handle_rest(now, request, ctx));
        (status, serde_json::from_str(&body).expect("JSON"))
    }

    fn find(&mut self, call_id: &str) -> serde_json::Value {
        let (status, info) = self.rest("find", &format!(r#"{{"callId":"{call_id}"}}"#));
        assert_eq!(status, 200, "{info}");
        info
    }

    /// A call to 1007 publishing to `rtmp://127.0.0.1/live/<id>`: its SIP leg.
    fn startup(&mut self, call_id: &str) -> SipCallId {
        let (status, info) = self.rest("startup", &startup_body(call_id));
        assert_eq!(
            (status, info["state"].as_str()),
            (200, Some("NEW")),
            "{info}"
        );
        match self.sip.pop() {
            Some(SipCommand::Start(call)) => call.id,
            other => panic!("an INVITE: {other:?}"),
        }
    }

    /// The phone answers PCMU (and telephone-event) from 127.0.0.1:`port`.
    fn answer(&mut self, id: SipCallId, port: u16) {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        );
        self.answer_with(id, sdp);
    }

    fn answer_with(&mut self, id: SipCallId, sdp: String) {
        self.with(|c, now, ctx| c.handle_sip_event(now, SipEvent::CallAnswered { id, sdp }, ctx));
    }

    /// Moves the clock by `d` in 20 ms steps, running every timer due.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            while self.calls.poll_timeout().is_some_and(|t| t <= self.now) {
                self.with(|c, now, ctx| c.handle_timeout(now, ctx));
            }
        }
    }

    fn commands(&mut self) -> Vec<SipCommand> {
        std::iter::from_fn(|| self.sip.pop()).collect()
    }

    fn outputs(&mut self) -> Vec<RtmpOutput> {
        std::iter::from_fn(|| self.calls.poll_rtmp_output()).collect()
    }

    fn cdrs(&mut self) -> Vec<crate::call::Cdr> {
        std::iter::from_fn(|| self.calls.poll_cdr()).collect()
    }

    /// The call on leg `leg` ended: BYE toward its phone, its connection `conn` closed.
    fn assert_freed(&mut self, leg: SipCallId, conn: u64) {
        let commands = self.commands();
        assert!(
            matches!(commands.as_slice(), [SipCommand::Hangup(id)] if *id == leg),
            "BYE toward the phone: {commands:?}"
        );
        assert_eq!(conns(&self.outputs()).1, vec![conn], "the stream is closed");
    }

    fn call_mut(&mut self, call_id: &str) -> &mut RtmpCall {
        let i = self.calls.rtmp.by_call_id(call_id).expect("the call is up");
        &mut self.calls.rtmp.calls[i]
    }
}

/// A startup request calling 1007, publishing to `rtmp://127.0.0.1/live/<call_id>`.
fn startup_body(call_id: &str) -> String {
    format!(
        r#"{{"callId":"{call_id}","callee":"1007","rtmpUrl":"rtmp://127.0.0.1/live/","rtmpStream":"{call_id}"}}"#
    )
}

fn conns(outputs: &[RtmpOutput]) -> (Vec<u64>, Vec<u64>) {
    let mut connect = Vec::new();
    let mut close = Vec::new();
    for o in outputs {
        match o {
            RtmpOutput::Connect { conn, .. } => connect.push(*conn),
            RtmpOutput::Close { conn } => close.push(*conn),
        }
    }
    (connect, close)
}

#[test]
fn a_call_is_started_answered_and_terminated_with_its_leg_port_stream_and_record() {
    let mut s = Shard::new();
    let leg = s.startup("c1");
    let (connect, _) = conns(&s.outputs());
    assert_eq!(connect.len(), 1, "the stream is asked for with the request");
    assert_eq!(s.ports.open.len(), 1);
    s.answer(leg, 40_000);
    assert_eq!(s.find("c1")["state"], "ESTABLISHED");
    let (status, info) = s.rest("terminate", r#"{"callId":"c1"}"#);
    assert_eq!(
        (status, info["state"].as_str()),
        (200, Some("FINISHED")),
        "{info}"
    );
    assert_eq!(info["rtmpState"], "CLOSED", "no attempt failed: {info}");
    assert!(
        matches!(s.commands().as_slice(), [SipCommand::Hangup(id)] if *id == leg),
        "BYE toward the phone"
    );
    assert!(s.ports.open.is_empty(), "the port is closed");
    assert_eq!(conns(&s.outputs()).1, connect, "the connection is closed");
    let cdrs = s.cdrs();
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0].get("mode").and_then(|v| v.as_str()), Some("rtmp"));
    assert_eq!(s.calls.rtmp_calls(), 0);
    // ended: find still answers, terminate does not find it
    assert_eq!(s.find("c1")["state"], "FINISHED");
    assert_eq!(s.rest("terminate", r#"{"callId":"c1"}"#).0, 404);
}

#[test]
fn a_call_that_ends_while_its_stream_is_down_ends_it_failed() {
    let mut s = Shard::new();
    let leg = s.startup("c2");
    let (connect, _) = conns(&s.outputs());
    s.answer(leg, 40_000);
    // the server refuses: retried after the back-off, the call goes on
    s.with(|calls, now, _| calls.rtmp_closed(now, connect[0], Some("connection refused".into())));
    let found = s.find("c2");
    assert_eq!(
        (found["state"].as_str(), found["rtmpState"].as_str()),
        (Some("ESTABLISHED"), Some("RETRYING")),
        "{found}"
    );
    let (status, info) = s.rest("terminate", r#"{"callId":"c2"}"#);
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        (info["state"].as_str(), info["rtmpState"].as_str()),
        (Some("FINISHED"), Some("FAILED")),
        "{info}"
    );
    assert_eq!(info["rtmpError"], "connection refused", "{info}");
}

#[test]
#[cfg(feature = "aac")]
fn a_call_whose_code_panics_ends_with_an_error_and_the_others_go_on() {
    let mut s = Shard::new();
    let a = s.startup("a");
    let b = s.startup("b");
    let (connect, _) = conns(&s.outputs());
    s.answer(a, 40_000);
    s.answer(b, 40_002);
    s.run(Duration::from_millis(100));
    let frames_b = s.find("b")["aacFrames"].as_u64().unwrap();
    assert!(frames_b > 0, "b's audio clock runs");

    // a panic in a's audio tick: a ends, b goes on
    s.call_mut("a").fault = Some(Fault::Tick);
    s.run(Duration::from_millis(100));
    let info = s.find("a");
    assert_eq!(
        (info["state"].as_str(), info["sipReason"].as_str()),
        (Some("FINISHED"), Some("ERROR")),
        "{info}"
    );
    s.assert_freed(a, connect[0]);
    assert_eq!(s.ports.open.len(), 1, "a's port is closed, b's is not");
    assert_eq!(s.calls.metrics().panicked, 1);
    let cdrs = s.cdrs();
    assert_eq!(cdrs.len(), 1);
    assert_eq!(
        cdrs[0].get("reason").and_then(|v| v.as_str()),
        Some("ERROR")
    );
    assert_eq!(s.find("b")["state"], "ESTABLISHED");
    assert!(s.find("b")["aacFrames"].as_u64().unwrap() > frames_b);

    // a panic while b is ended (terminate), and again when it is ended after: the
    // request gets 500, and b is dropped with its leg, port and stream freed
    s.call_mut("b").fault = Some(Fault::End);
    let (status, error) = s.rest("terminate", r#"{"callId":"b"}"#);
    assert_eq!(
        (status, error["error"].as_str()),
        (500, Some("INTERNAL")),
        "{error}"
    );
    s.run(Duration::from_millis(40));
    assert_eq!(s.calls.rtmp_calls(), 0);
    s.assert_freed(b, connect[1]);
    assert!(s.ports.open.is_empty(), "every port is closed");
    assert_eq!(s.calls.metrics().panicked, 2);
    // a third call works as the first did
    let c = s.startup("c");
    s.answer(c, 40_004);
    s.run(Duration::from_millis(60));
    assert_eq!(s.find("c")["state"], "ESTABLISHED");
}

#[test]
fn startup_counts_toward_the_call_limits_and_refuses_a_duplicate() {
    let mut s = Shard::new();
    s.startup("x");
    let refused = |s: &mut Shard, call_id: &str| {
        let (status, error) = s.rest("startup", &startup_body(call_id));
        (
            status,
            error["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(refused(&mut s, "x"), (409, "DUPLICATE".into()));
    assert!(s.commands().is_empty(), "no second INVITE");
    // a stream without audio would be empty (no video yet): refused, not published silent
    let no_audio = startup_body("w").replace('}', r#","hasAudio":"false"}"#);
    let (status, error) = s.rest("startup", &no_audio);
    assert_eq!(
        (status, error["error"].as_str()),
        (501, Some("NOT_SUPPORTED")),
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("hasAudio")
    );
    assert!(s.commands().is_empty(), "no INVITE");
    for i in 1..MAX_RTMP_CALLS {
        s.startup(&format!("y{i}"));
    }
    assert_eq!(refused(&mut s, "z"), (503, "TOO_MANY_CALLS".into()));
    assert!(s.commands().is_empty(), "no INVITE beyond the limit");
    assert_eq!(s.ports.open.len(), MAX_RTMP_CALLS);
}

/// A phone without telephone-event gets `send_dtmf`'s digits as SIP INFO, one every 250 ms
/// (separate key presses), never all at once; too many waiting is refused.
#[test]
#[cfg(feature = "aac")]
fn dtmf_to_a_phone_without_telephone_event_goes_as_paced_info() {
    let mut s = Shard::new();
    let leg = s.startup("d");
    s.answer_with(
        leg,
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
            .into(),
    );
    let (status, _) = s.rest("send_dtmf", r#"{"callId":"d","dtmf":"123"}"#);
    assert_eq!(status, 200);
    let digits = |commands: Vec<SipCommand>| -> String {
        commands
            .into_iter()
            .filter_map(|c| match c {
                SipCommand::Info(id, digit, 160) if id == leg => Some(digit),
                _ => None,
            })
            .collect()
    };
    assert_eq!(digits(s.commands()), "1", "the first at once");
    s.run(Duration::from_millis(200));
    assert_eq!(digits(s.commands()), "", "not the next before 250 ms");
    s.run(Duration::from_millis(60));
    assert_eq!(digits(s.commands()), "2");
    s.run(Duration::from_millis(260));
    assert_eq!(digits(s.commands()), "3");
    s.run(Duration::from_secs(1));
    assert_eq!(digits(s.commands()), "", "nothing more");
    let many = format!(r#"{{"callId":"d","dtmf":"{}"}}"#, "5".repeat(20));
    assert_eq!(s.rest("send_dtmf", &many).0, 200);
    let (status, error) = s.rest("send_dtmf", &many);
    assert_eq!(
        (status, error["error"].as_str()),
        (409, Some("DTMF_BUSY")),
        "{error}"
    );
}

/// A startup that panics after its INVITE went out answers 500 and leaves nothing: the
/// INVITE is cancelled and the port closed.
#[test]
fn a_startup_that_panics_frees_its_port_and_sip_leg() {
    let mut s = Shard::new();
    let body = startup_body("p").replace("\"1007\"", &format!("\"{PANIC_AFTER_INVITE}\""));
    let (status, error) = s.rest("startup", &body);
    assert_eq!(
        (status, error["error"].as_str()),
        (500, Some("INTERNAL")),
        "{error}"
    );
    let commands = s.commands();
    match commands.as_slice() {
        [SipCommand::Start(call), SipCommand::Hangup(id)] => assert_eq!(call.id, *id),
        other => panic!("the INVITE, then its CANCEL: {other:?}"),
    }
    assert!(s.ports.open.is_empty(), "the port is closed");
    assert_eq!(s.calls.rtmp_calls(), 0);
    // and the next startup works
    s.startup("q");
}
