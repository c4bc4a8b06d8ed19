use super::wire::reanswer;
use super::*;
use crate::sip::endpoint::WsAuth;
use std::time::Duration;

/// A context whose digest check passes any `Authorization`/`Proxy-Authorization` naming
/// `1003` and challenges the rest; logins are recorded.
#[derive(Default)]
struct Ctx {
    logins: Vec<(SessionId, String)>,
    logouts: Vec<SessionId>,
    n: u64,
}

impl WsContext for Ctx {
    fn authenticate(
        &mut self,
        _now: Instant,
        msg: &Message<'_>,
        proxy: bool,
        _peer: SocketAddr,
    ) -> WsAuth {
        let header = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        match msg.header(HeaderName::new(header)) {
            Some(v) if v.contains("username=\"1003\"") => WsAuth::Ok("1003".into()),
            Some(v) if v.contains("username=\"1004\"") => WsAuth::Ok("1004".into()),
            Some(_) => WsAuth::Refused {
                code: 403,
                reason: "Forbidden",
                headers: Vec::new(),
            },
            None => WsAuth::Refused {
                code: if proxy { 407 } else { 401 },
                reason: "Unauthorized",
                headers: vec![("WWW-Authenticate", "Digest realm=\"x\"".into())],
            },
        }
    }
    fn login(&mut self, _now: Instant, session: SessionId, user: &str) {
        self.logins.push((session, user.to_string()));
    }
    fn logout(&mut self, _now: Instant, session: SessionId) {
        self.logouts.push(session);
    }
    fn token(&mut self, len: usize) -> String {
        self.n += 1;
        format!("{:0len$x}", self.n)
    }
}

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

const S: SessionId = 7;

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn request(method: &str, uri: &str, cseq: u32, call_id: &str, extra: &str, body: &str) -> String {
    let branch = call_id.replace('@', "-");
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/WSS abc.invalid;branch=z9hG4bK{branch}{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1003@example.org>;tag=ft\r\nTo: <sip:1003@example.org>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:k2@abc.invalid;transport=ws>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Every SIP frame the agent queued, as (start line, whole text).
fn frames(ws: &mut SipWs) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(o) = ws.poll_output() {
        match o {
            HubOutput::Send { session, text } => {
                assert_eq!(session, S);
                out.push(text);
            }
            HubOutput::Close { .. } => out.push("CLOSE".into()),
        }
    }
    out
}

fn status_lines(frames: &[String]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f.lines().next().unwrap_or(""))
        .collect()
}

fn requests(ws: &mut SipWs) -> Vec<Request> {
    let mut out = Vec::new();
    while let Some(CallRequest::Call { user, request }) = ws.poll_request() {
        assert_eq!(user, "1003");
        out.push(request);
    }
    out
}

/// A session registered as 1003.
fn registered(now: Instant) -> (SipWs, Ctx) {
    let mut ws = SipWs::new("example.org");
    let mut ctx = Ctx::default();
    ws.open(S, peer());
    let reg = request(
        "REGISTER",
        "sip:example.org",
        1,
        "reg1",
        "Expires: 600\r\n",
        "",
    );
    ws.handle_text(now, S, &reg, &mut ctx);
    let f = frames(&mut ws);
    assert_eq!(status_lines(&f), ["SIP/2.0 401 Unauthorized"]);
    let reg = request(
        "REGISTER",
        "sip:example.org",
        2,
        "reg1",
        "Expires: 600\r\nAuthorization: Digest username=\"1003\"\r\n",
        "",
    );
    ws.handle_text(now, S, &reg, &mut ctx);
    let f = frames(&mut ws);
    assert_eq!(status_lines(&f), ["SIP/2.0 200 OK"]);
    assert!(
        f[0].contains("Contact: <sip:k2@abc.invalid;transport=ws>;expires=600\r\n"),
        "{}",
        f[0]
    );
    assert_eq!(ctx.logins, [(S, "1003".to_string())]);
    (ws, ctx)
}

#[test]
fn register_logs_the_socket_in_and_expiry_or_unregister_logs_it_out() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    // a refresh is no second login
    let reg = request(
        "REGISTER",
        "sip:example.org",
        3,
        "reg1",
        "Expires: 99999\r\nAuthorization: Digest username=\"1003\"\r\n",
        "",
    );
    ws.handle_text(now, S, &reg, &mut ctx);
    let f = frames(&mut ws);
    assert!(f[0].contains(";expires=3600\r\n"), "capped: {}", f[0]);
    assert_eq!(ctx.logins.len(), 1);
    // the registration runs out: logged out
    let end = now + Duration::from_secs(3600);
    assert_eq!(ws.poll_timeout(), Some(end));
    ws.handle_timeout(end, &mut ctx);
    assert_eq!(ctx.logouts, [S]);
    assert_eq!(ws.poll_timeout(), None);

    // again, then Expires: 0
    let (mut ws, mut ctx) = registered(now);
    let reg = request(
        "REGISTER",
        "sip:example.org",
        3,
        "reg1",
        "Expires: 0\r\nAuthorization: Digest username=\"1003\"\r\n",
        "",
    );
    ws.handle_text(now, S, &reg, &mut ctx);
    let f = frames(&mut ws);
    assert_eq!(status_lines(&f), ["SIP/2.0 200 OK"]);
    assert!(!f[0].contains("Contact:"));
    assert_eq!(ctx.logouts, [S]);
}

#[test]
fn register_for_another_user_too_brief_or_wrong_is_refused() {
    let now = t0();
    let mut ws = SipWs::new("example.org");
    let mut ctx = Ctx::default();
    ws.open(S, peer());
    // authenticated as 1003 but binding 1004's address-of-record
    let reg = request(
        "REGISTER",
        "sip:example.org",
        1,
        "r",
        "Authorization: Digest username=\"1003\"\r\n",
        "",
    )
    .replace("To: <sip:1003@", "To: <sip:1004@");
    ws.handle_text(now, S, &reg, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 403 Forbidden"]);
    let reg = request(
        "REGISTER",
        "sip:example.org",
        2,
        "r",
        "Expires: 10\r\nAuthorization: Digest username=\"1003\"\r\n",
        "",
    );
    ws.handle_text(now, S, &reg, &mut ctx);
    let f = frames(&mut ws);
    assert_eq!(status_lines(&f), ["SIP/2.0 423 Interval Too Brief"]);
    assert!(f[0].contains("Min-Expires: 60\r\n"));
    let reg = request(
        "REGISTER",
        "sip:example.org",
        3,
        "r",
        "Authorization: Digest username=\"9\"\r\n",
        "",
    );
    ws.handle_text(now, S, &reg, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 403 Forbidden"]);
    assert!(ctx.logins.is_empty());
    // not SIP at all: dropped and counted; a request with a bad header: 400
    ws.handle_text(now, S, "hello", &mut ctx);
    assert!(frames(&mut ws).is_empty());
    let bad = request(
        "OPTIONS",
        "sip:example.org",
        1,
        "o",
        "Max-Forwards: x\r\n",
        "",
    )
    .replace("Max-Forwards: 70\r\n", "");
    ws.handle_text(now, S, &bad, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 400 Bad Request"]);
    assert_eq!(ws.malformed, 2);
}

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n";

/// The client's INVITE with `OFFER` to 1001, CSeq 1, in call `call_id`.
fn invite_1001(call_id: &str) -> String {
    request(
        "INVITE",
        "sip:1001@example.org",
        1,
        call_id,
        "Content-Type: application/sdp\r\n",
        OFFER,
    )
}
const ANSWER: &str = "v=0\r\no=srgate 5 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n";

/// A socket that registers as another user is that user's only: the previous one's calls
/// are no longer its own (a BYE for one is a 481).
#[test]
fn registering_as_another_user_leaves_the_previous_users_calls_behind() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    let invite = invite_1001("c1");
    ws.handle_text(now, S, &invite, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 100 Trying"]);
    assert_eq!(requests(&mut ws).len(), 1);
    // logged out first (Expires 0), then another user: the calls are still 1003's
    let unreg = request(
        "REGISTER",
        "sip:example.org",
        3,
        "reg1",
        "Expires: 0\r\nAuthorization: Digest username=\"1003\"\r\n",
        "",
    );
    ws.handle_text(now, S, &unreg, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 200 OK"]);
    let reg = request(
        "REGISTER",
        "sip:example.org",
        4,
        "reg1",
        "Expires: 600\r\nAuthorization: Digest username=\"1004\"\r\n",
        "",
    )
    .replace("To: <sip:1003@", "To: <sip:1004@");
    ws.handle_text(now, S, &reg, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 200 OK"]);
    assert_eq!(ctx.logins.last(), Some(&(S, "1004".to_string())));
    let bye = request("BYE", "sip:1001@example.org", 2, "c1", "", "");
    ws.handle_text(now, S, &bye, &mut ctx);
    assert_eq!(
        status_lines(&frames(&mut ws)),
        ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
    assert!(ws.poll_request().is_none(), "no hangup for 1004");
}

#[test]
fn the_clients_call_becomes_an_invite_and_srgates_states_its_answers() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    let invite = invite_1001("c1");
    ws.handle_text(now, S, &invite, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 100 Trying"]);
    let r = requests(&mut ws);
    let [
        Request::Invite {
            id, callee, sdp, ..
        },
    ] = &r[..]
    else {
        panic!("{r:?}")
    };
    assert_eq!((callee.as_str(), sdp.as_str()), ("1001", OFFER));
    let id = id.clone();
    let ev = |v: serde_json::Value| v.to_string();
    ws.handle_event(
        S,
        &ev(
            serde_json::json!({"type":"local_state","id":id,"state":"SENT_TO_REMOTE","sdp":ANSWER}),
        ),
        &mut ctx,
    );
    ws.handle_event(
        S,
        &ev(serde_json::json!({"type":"local_state","id":id,"state":"RECEIVED_BY_REMOTE"})),
        &mut ctx,
    );
    ws.handle_event(
        S,
        &ev(serde_json::json!({"type":"local_state","id":id,"state":"ACCEPTED_BY_REMOTE"})),
        &mut ctx,
    );
    let f = frames(&mut ws);
    assert_eq!(
        status_lines(&f),
        [
            "SIP/2.0 183 Session Progress",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ]
    );
    assert!(f[0].ends_with(ANSWER) && f[2].ends_with(ANSWER));
    // one To tag on every answer, the Via and CSeq copied
    let tag = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split(";tag=").nth(1))
            .map(str::to_string)
    };
    assert!(tag(&f[0]).is_some());
    assert_eq!(tag(&f[0]), tag(&f[2]));
    assert!(f[2].contains("Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bKc11\r\n"));
    assert!(f[2].contains("CSeq: 1 INVITE\r\n"));

    // hold: the answer mirrors sendonly, with a new o= version; resume returns to sendrecv
    let hold = request(
        "INVITE",
        "sip:srgate@example.org",
        2,
        "c1",
        "Content-Type: application/sdp\r\n",
        &OFFER.replace("a=sendrecv", "a=sendonly"),
    )
    .replace(
        "To: <sip:1003@example.org>",
        &format!("To: <sip:1003@example.org>;tag={}", tag(&f[0]).unwrap()),
    );
    ws.handle_text(now, S, &hold, &mut ctx);
    let f2 = frames(&mut ws);
    assert_eq!(status_lines(&f2), ["SIP/2.0 200 OK"]);
    assert!(
        f2[0].contains("a=recvonly\r\n") && f2[0].contains("o=srgate 5 2 "),
        "{}",
        f2[0]
    );
    assert!(
        requests(&mut ws).is_empty(),
        "hold stays on the client's leg"
    );

    // DTMF by INFO, both ways
    let info = request(
        "INFO",
        "sip:srgate@example.org",
        3,
        "c1",
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=100\r\n",
    );
    ws.handle_text(now, S, &info, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 200 OK"]);
    assert_eq!(
        requests(&mut ws),
        [Request::Dtmf {
            id: id.clone(),
            digits: "5".into()
        }]
    );
    ws.handle_event(
        S,
        &ev(serde_json::json!({"type":"dtmf","id":id,"digits":"#"})),
        &mut ctx,
    );
    let f3 = frames(&mut ws);
    assert!(f3[0].starts_with("INFO sip:k2@abc.invalid;transport=ws SIP/2.0\r\n"));
    assert!(f3[0].ends_with("Signal=#\r\nDuration=160\r\n"));

    // the far end hangs up: BYE to the client, in its dialog
    ws.handle_event(
        S,
        &ev(serde_json::json!({"type":"hangup","id":id,"reason":"REMOTE"})),
        &mut ctx,
    );
    let f4 = frames(&mut ws);
    assert!(f4[0].starts_with("BYE sip:k2@abc.invalid;transport=ws SIP/2.0\r\n"));
    assert!(f4[0].contains("To: <sip:1003@example.org>;tag=ft\r\n"));
    assert!(f4[0].contains("Call-ID: c1\r\n"));
    // a BYE from the client for the gone call: 481
    let bye = request("BYE", "sip:srgate@example.org", 4, "c1", "", "");
    ws.handle_text(now, S, &bye, &mut ctx);
    assert_eq!(
        status_lines(&frames(&mut ws)),
        ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
}

#[test]
fn a_refused_or_cancelled_call_gets_its_final_answer_once() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    ws.handle_text(now, S, &invite_1001("a"), &mut ctx);
    ws.handle_text(now, S, &invite_1001("b"), &mut ctx);
    let ids: Vec<String> = requests(&mut ws)
        .iter()
        .map(|r| r.id().unwrap().to_string())
        .collect();
    frames(&mut ws);
    // busy, with the SIP code the callee gave
    let busy = serde_json::json!({"type":"local_state","id":ids[0],"state":"REFUSED_BY_REMOTE","sip":{"code":600,"reason":"Busy Everywhere"}});
    ws.handle_event(S, &busy.to_string(), &mut ctx);
    ws.handle_event(S, &busy.to_string(), &mut ctx);
    assert_eq!(
        status_lines(&frames(&mut ws)),
        ["SIP/2.0 600 Busy Everywhere"]
    );
    // the client cancels: 200 to the CANCEL, 487 to the INVITE, `cancel` to the call layer
    let cancel = request("CANCEL", "sip:1001@example.org", 1, "b", "", "");
    ws.handle_text(now, S, &cancel, &mut ctx);
    assert_eq!(
        status_lines(&frames(&mut ws)),
        ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]
    );
    assert_eq!(requests(&mut ws), [Request::Cancel { id: ids[1].clone() }]);
    let canceled = serde_json::json!({"type":"local_state","id":ids[1],"state":"CANCELED"});
    ws.handle_event(S, &canceled.to_string(), &mut ctx);
    assert!(frames(&mut ws).is_empty());
    // srgate overloaded
    ws.handle_text(now, S, &invite_1001("c"), &mut ctx);
    let id = requests(&mut ws)[0].id().unwrap().to_string();
    frames(&mut ws);
    let over = serde_json::json!({"type":"error","id":id,"code":"OVERLOADED","message":"…"});
    ws.handle_event(S, &over.to_string(), &mut ctx);
    assert_eq!(
        status_lines(&frames(&mut ws)),
        ["SIP/2.0 503 Service Unavailable"]
    );
}

#[test]
fn an_unregistered_socket_is_challenged_and_an_offerless_invite_refused() {
    let now = t0();
    let mut ws = SipWs::new("example.org");
    let mut ctx = Ctx::default();
    ws.open(S, peer());
    let invite = invite_1001("x");
    ws.handle_text(now, S, &invite, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 407 Unauthorized"]);
    assert!(requests(&mut ws).is_empty());
    // with credentials: logged in by the INVITE itself
    let invite = request(
        "INVITE",
        "sip:1001@example.org",
        2,
        "x",
        "Proxy-Authorization: Digest username=\"1003\"\r\n",
        "",
    );
    ws.handle_text(now, S, &invite, &mut ctx);
    let f = frames(&mut ws);
    assert_eq!(status_lines(&f), ["SIP/2.0 488 Not Acceptable Here"]);
    assert!(f[0].contains("Warning: 399 srgate "));
    assert_eq!(ctx.logins, [(S, "1003".to_string())]);
    // an invalid callee
    let invite = request(
        "INVITE",
        "sip:example.org",
        3,
        "y",
        "Content-Type: application/sdp\r\n",
        OFFER,
    );
    ws.handle_text(now, S, &invite, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 404 Not Found"]);
}

/// The client's response to srgate's INVITE, in its dialog.
fn response_to(invite: &str, code: u16, reason: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for l in invite.lines() {
        if l.starts_with("Via:")
            || l.starts_with("From:")
            || l.starts_with("Call-ID:")
            || l.starts_with("CSeq:")
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
        if l.starts_with("To:") {
            out.push_str(l);
            out.push_str(";tag=client\r\n");
        }
    }
    out.push_str("Contact: <sip:k2@abc.invalid;transport=ws>\r\n");
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// The call layer's invitation `id`: srgate asks for an offer, and the INVITE carries it.
fn invite_with_offer(ws: &mut SipWs, ctx: &mut Ctx, invitation: serde_json::Value) -> String {
    let id = invitation["id"].as_str().unwrap().to_string();
    ws.handle_event(S, &invitation.to_string(), ctx);
    assert!(frames(ws).is_empty(), "no INVITE before the offer");
    assert_eq!(requests(ws), [Request::Offer { id: id.clone() }]);
    let offer = serde_json::json!({"type":"offer","id":id,"sdp":ANSWER});
    ws.handle_event(S, &offer.to_string(), ctx);
    let f = frames(ws);
    assert_eq!(f.len(), 1);
    f[0].clone()
}

#[test]
fn an_invitation_is_an_invite_with_srgates_offer_whose_200_carries_the_accept() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    let inv = serde_json::json!({"type":"remote_invitation","id":"in1","caller":"1001","callerName":"Door \"1\""});
    let f = [invite_with_offer(&mut ws, &mut ctx, inv)];
    assert!(
        f[0].starts_with("INVITE sip:k2@abc.invalid;transport=ws SIP/2.0\r\n"),
        "{}",
        f[0]
    );
    assert!(f[0].contains("From: \"Door 1\" <sip:1001@example.org>;tag="));
    assert!(f[0].contains("To: <sip:1003@example.org>\r\n"));
    assert!(f[0].ends_with(ANSWER), "srgate's offer");
    // ringing, then the 200 with the client's answer → accept
    ws.handle_text(now, S, &response_to(&f[0], 180, "Ringing", ""), &mut ctx);
    assert!(requests(&mut ws).is_empty());
    ws.handle_text(now, S, &response_to(&f[0], 200, "OK", OFFER), &mut ctx);
    assert_eq!(
        requests(&mut ws),
        [Request::Accept {
            id: "in1".into(),
            sdp: OFFER.into(),
            response: None
        }]
    );
    // the ACK (no body) goes to the client's Contact, with its tag
    let acc = serde_json::json!({"type":"remote_state","id":"in1","state":"ACCEPTED","sdp":ANSWER});
    ws.handle_event(S, &acc.to_string(), &mut ctx);
    let f2 = frames(&mut ws);
    assert!(f2[0].starts_with("ACK sip:k2@abc.invalid;transport=ws SIP/2.0\r\n"));
    assert!(f2[0].contains("To: <sip:1003@example.org>;tag=client\r\n"));
    assert!(f2[0].contains("CSeq: 1 ACK\r\n"));
    assert!(f2[0].ends_with("Content-Length: 0\r\n\r\n"));
    // the client hangs up
    let bye = request(
        "BYE",
        "sip:srgate@example.org",
        9,
        &call_id_of(&f[0]),
        "",
        "",
    );
    ws.handle_text(now, S, &bye, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 200 OK"]);
    assert_eq!(requests(&mut ws), [Request::Hangup { id: "in1".into() }]);
}

fn call_id_of(msg: &str) -> String {
    msg.lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap()
        .to_string()
}

#[test]
fn an_invitation_answered_elsewhere_is_cancelled_and_a_refusal_refuses() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    let f: Vec<String> = ["g1", "g2"]
        .iter()
        .map(|id| {
            let inv = serde_json::json!({"type":"remote_invitation","id":id,"caller":"1001","group":"301"});
            invite_with_offer(&mut ws, &mut ctx, inv)
        })
        .collect();
    // the first rings (a CANCEL may go only after a provisional answer)
    ws.handle_text(now, S, &response_to(&f[0], 180, "Ringing", ""), &mut ctx);
    assert!(frames(&mut ws).is_empty() && requests(&mut ws).is_empty());
    let c = serde_json::json!({"type":"remote_state","id":"g1","state":"CANCELED","reason":"ANSWERED_ELSEWHERE"});
    ws.handle_event(S, &c.to_string(), &mut ctx);
    let f2 = frames(&mut ws);
    assert!(f2[0].starts_with("CANCEL "));
    assert!(f2[0].contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n"));
    let branch = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("Via:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        branch(&f2[0]),
        branch(&f[0]),
        "CANCEL is in the INVITE's transaction"
    );
    // the 487 is ACKed and nothing more goes up
    ws.handle_text(
        now,
        S,
        &response_to(&f[0], 487, "Request Terminated", ""),
        &mut ctx,
    );
    let f3 = frames(&mut ws);
    assert!(f3[0].starts_with("ACK ") && f3[0].contains("CSeq: 1 ACK\r\n"));
    assert!(requests(&mut ws).is_empty());
    // the other is declined
    ws.handle_text(now, S, &response_to(&f[1], 603, "Decline", ""), &mut ctx);
    assert!(frames(&mut ws)[0].starts_with("ACK "));
    assert_eq!(
        requests(&mut ws),
        [Request::Refuse {
            id: "g2".into(),
            response: Some("decline".into())
        }]
    );
}

#[test]
fn reanswer_mirrors_the_direction_and_keeps_an_unchanged_answer() {
    assert_eq!(reanswer(ANSWER, OFFER), ANSWER);
    let inactive = reanswer(ANSWER, &OFFER.replace("a=sendrecv", "a=inactive"));
    assert!(inactive.contains("a=inactive\r\n") && inactive.contains("o=srgate 5 2 "));
    let back = reanswer(&inactive, OFFER);
    assert!(back.contains("a=sendrecv\r\n") && back.contains("o=srgate 5 3 "));
}

#[test]
fn an_invitation_nobody_can_be_invited_for_is_refused_and_a_failed_accept_ends_both_sides() {
    let now = t0();
    // logged in by an authenticated INVITE only: no Contact to send srgate's INVITE to
    let mut ws = SipWs::new("example.org");
    let mut ctx = Ctx::default();
    ws.open(S, peer());
    let invite = request(
        "INVITE",
        "sip:1001@example.org",
        1,
        "x",
        "Proxy-Authorization: Digest username=\"1003\"\r\nContent-Type: application/sdp\r\n",
        OFFER,
    );
    ws.handle_text(now, S, &invite, &mut ctx);
    frames(&mut ws);
    requests(&mut ws);
    let inv = serde_json::json!({"type":"remote_invitation","id":"n1","caller":"1001"});
    ws.handle_event(S, &inv.to_string(), &mut ctx);
    assert!(frames(&mut ws).is_empty());
    assert_eq!(
        requests(&mut ws),
        [Request::Refuse {
            id: "n1".into(),
            response: None
        }]
    );

    // registered: the client answers, but srgate cannot take its answer
    let (mut ws, mut ctx) = registered(now);
    let inv = serde_json::json!({"type":"remote_invitation","id":"in2","caller":"1001"});
    let invite = invite_with_offer(&mut ws, &mut ctx, inv);
    ws.handle_text(now, S, &response_to(&invite, 200, "OK", OFFER), &mut ctx);
    requests(&mut ws);
    let refused =
        serde_json::json!({"type":"error","id":"in2","code":"BAD_REQUEST","message":"unusable"});
    ws.handle_event(S, &refused.to_string(), &mut ctx);
    let f = frames(&mut ws);
    assert!(
        f[0].starts_with("ACK ") && f[1].starts_with("BYE "),
        "{f:?}"
    );
    assert_eq!(
        requests(&mut ws),
        [Request::Refuse {
            id: "in2".into(),
            response: None
        }]
    );
}

#[test]
fn a_contact_with_uri_headers_is_called_without_them_and_other_schemes_are_refused() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    let invite = invite_1001("h1").replace(
        "Contact: <sip:k2@abc.invalid;transport=ws>",
        "Contact: <sip:k2@abc.invalid;transport=ws?Subject=x>",
    );
    ws.handle_text(now, S, &invite, &mut ctx);
    let id = requests(&mut ws)[0].id().unwrap().to_string();
    frames(&mut ws);
    for event in [
        serde_json::json!({"type":"local_state","id":id,"state":"SENT_TO_REMOTE","sdp":ANSWER}),
        serde_json::json!({"type":"local_state","id":id,"state":"ACCEPTED_BY_REMOTE"}),
        serde_json::json!({"type":"dtmf","id":id,"digits":"1"}),
    ] {
        ws.handle_event(S, &event.to_string(), &mut ctx);
    }
    let f = frames(&mut ws);
    let info = f.last().unwrap();
    assert!(
        info.starts_with("INFO sip:k2@abc.invalid;transport=ws SIP/2.0\r\n"),
        "{info}"
    );
    assert!(Message::parse(info.as_bytes()).is_ok());
    // a tel: Contact is nowhere to send requests to
    let reg = request(
        "REGISTER",
        "sip:example.org",
        9,
        "reg1",
        "Authorization: Digest username=\"1003\"\r\n",
        "",
    )
    .replace(
        "Contact: <sip:k2@abc.invalid;transport=ws>",
        "Contact: <tel:+4930123>",
    );
    ws.handle_text(now, S, &reg, &mut ctx);
    assert_eq!(status_lines(&frames(&mut ws)), ["SIP/2.0 400 Bad Contact"]);
    // and a caller's name with a control character is quoted without it
    let inv = serde_json::json!({"type":"remote_invitation","id":"q1","caller":"1001","callerName":"Door\u{1}1"});
    let invite = invite_with_offer(&mut ws, &mut ctx, inv);
    assert!(
        invite.contains("From: \"Door1\" <sip:1001@example.org>;tag="),
        "{invite}"
    );
    assert!(Message::parse(invite.as_bytes()).is_ok());
}

#[test]
fn a_resent_200_an_error_after_the_answer_and_a_failure_when_up_end_cleanly() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    let inv = serde_json::json!({"type":"remote_invitation","id":"r1","caller":"1001"});
    let invite = invite_with_offer(&mut ws, &mut ctx, inv);
    let ok = response_to(&invite, 200, "OK", OFFER);
    ws.handle_text(now, S, &ok, &mut ctx);
    assert_eq!(requests(&mut ws).len(), 1, "one accept");
    // the 200 again before srgate took the answer: no second accept, no ACK yet
    ws.handle_text(now, S, &ok, &mut ctx);
    assert!(requests(&mut ws).is_empty());
    assert!(frames(&mut ws).is_empty());
    let acc = serde_json::json!({"type":"remote_state","id":"r1","state":"ACCEPTED","sdp":ANSWER});
    ws.handle_event(S, &acc.to_string(), &mut ctx);
    assert!(frames(&mut ws)[0].starts_with("ACK "));
    // an error about the call now (a digit srgate could not send) changes nothing: no
    // refusal that would be refused again
    let err = serde_json::json!({"type":"error","id":"r1","code":"BAD_REQUEST","message":"DTMF"});
    ws.handle_event(S, &err.to_string(), &mut ctx);
    assert!(requests(&mut ws).is_empty());
    assert!(frames(&mut ws).is_empty());
    // the call layer gives the call up: BYE, and the call is gone
    let failed = serde_json::json!({"type":"remote_state","id":"r1","state":"FAILURE","error":"MEDIA_FAILED"});
    ws.handle_event(S, &failed.to_string(), &mut ctx);
    let f = frames(&mut ws);
    assert!(f.len() == 1 && f[0].starts_with("BYE "), "{f:?}");
    let bye = request(
        "BYE",
        "sip:srgate@example.org",
        5,
        &call_id_of(&invite),
        "",
        "",
    );
    ws.handle_text(now, S, &bye, &mut ctx);
    assert_eq!(
        status_lines(&frames(&mut ws)),
        ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
}

#[test]
fn a_cancel_waits_for_the_clients_first_provisional_answer() {
    let now = t0();
    let (mut ws, mut ctx) = registered(now);
    let inv = serde_json::json!({"type":"remote_invitation","id":"w1","caller":"1001"});
    let invite = invite_with_offer(&mut ws, &mut ctx, inv);
    // the caller gives up before the client said anything: no CANCEL yet (RFC 3261 §9.1)
    let c = serde_json::json!({"type":"remote_state","id":"w1","state":"CANCELED"});
    ws.handle_event(S, &c.to_string(), &mut ctx);
    assert!(
        frames(&mut ws).is_empty(),
        "no CANCEL before a provisional answer"
    );
    // its 100 lets the CANCEL go, in the INVITE's transaction, once
    ws.handle_text(now, S, &response_to(&invite, 100, "Trying", ""), &mut ctx);
    let f = frames(&mut ws);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("CANCEL ") && f[0].contains("CSeq: 1 CANCEL\r\n"),
        "{}",
        f[0]
    );
    assert!(!f[0].contains("Reason:"), "not answered elsewhere");
    ws.handle_text(now, S, &response_to(&invite, 180, "Ringing", ""), &mut ctx);
    assert!(frames(&mut ws).is_empty(), "one CANCEL");
    // the 487 is ACKed; the call layer already knows
    ws.handle_text(
        now,
        S,
        &response_to(&invite, 487, "Request Terminated", ""),
        &mut ctx,
    );
    let f = frames(&mut ws);
    assert!(f[0].starts_with("ACK ") && f[0].contains("CSeq: 1 ACK\r\n"));
    assert!(requests(&mut ws).is_empty());

    // a client that answers instead of ringing: its 200 is ACKed and the call ended
    let inv = serde_json::json!({"type":"remote_invitation","id":"w2","caller":"1001"});
    let invite = invite_with_offer(&mut ws, &mut ctx, inv);
    let c = serde_json::json!({"type":"remote_state","id":"w2","state":"FAILURE"});
    ws.handle_event(S, &c.to_string(), &mut ctx);
    assert!(frames(&mut ws).is_empty());
    ws.handle_text(now, S, &response_to(&invite, 200, "OK", ANSWER), &mut ctx);
    let f = frames(&mut ws);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f[0].starts_with("ACK ") && f[1].starts_with("BYE "),
        "{f:?}"
    );
    assert!(
        requests(&mut ws).is_empty(),
        "the call layer gave it up already"
    );
}
