//! Tests of the SIP endpoint's calls: the helpers of their INFO bodies and headers, and
//! calls from and toward SIP played against a PBX.

use super::*;

#[test]
fn info_bodies() {
    assert_eq!(
        info_digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
        Some(('5', 160))
    );
    assert_eq!(
        info_digit("application/dtmf-relay", "Signal=#\n"),
        Some(('#', 160))
    );
    assert_eq!(info_digit("application/dtmf", "9"), Some(('9', 250)));
    assert_eq!(info_digit("text/plain", "Signal=5"), None);
    assert_eq!(info_digit("application/dtmf-relay", "Signal=x"), None);
}

#[test]
fn tags_and_headers() {
    assert_eq!(tag_of("<sip:a@b>;tag=abc;x=1"), Some("abc"));
    assert_eq!(tag_of("<sip:a@b>"), None);
    assert!(header_ok("X-ArInfo", "hello"));
    assert!(!header_ok("X-ArInfo", "a\r\nVia: x"));
    assert!(!header_ok("Bad Name", "x"));
    assert_eq!(quote("A \"B\""), "\"A B\"");
}

use super::super::{EndpointConfig, ProxyAccount, Server};
use crate::sip::auth::Algorithm;

pub(super) const PBX: &str = "127.0.0.1:5060";
pub(super) const OURS: &str = "127.0.0.1:5086";
pub(super) const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

#[allow(clippy::disallowed_methods)]
pub(super) fn t0() -> Instant {
    Instant::now()
}

fn ep(now: Instant) -> Endpoint {
    ep_with_groups(now, Default::default())
}

/// An endpoint in proxy mode (the PBX at [`PBX`]) with ring groups `groups`.
pub(super) fn ep_with_groups(now: Instant, groups: crate::config::Groups) -> Endpoint {
    ep_with(now, |c| c.groups = groups)
}

/// An endpoint in proxy mode (the PBX at [`PBX`]), its configuration changed by `tune`.
pub(super) fn ep_with(now: Instant, tune: impl FnOnce(&mut EndpointConfig)) -> Endpoint {
    let mut config = EndpointConfig {
        local: OURS.parse().unwrap(),
        tls_local: None,
        domain: "127.0.0.1".into(),
        server: Some(Server {
            addr: PBX.parse().unwrap(),
            transport: Transport::Udp,
            host_port: PBX.into(),
        }),
        proxy: Some(ProxyAccount {
            user: "1000".into(),
            password: "1234".into(),
            expires: 300,
        }),
        users: vec![],
        digest: vec![Algorithm::Md5],
        seed: [3; 32],
        user_agent: "srgate-test".into(),
        groups: Default::default(),
        session_expires: 0,
    };
    tune(&mut config);
    let mut ep = Endpoint::new(config, now);
    while ep.poll_transmit().is_some() {}
    ep
}

pub(super) fn send(ep: &mut Endpoint, now: Instant, text: &str) {
    ep.handle_receive(now, Transport::Udp, PBX.parse().unwrap(), text.as_bytes());
}

pub(super) fn sent(ep: &mut Endpoint) -> Vec<String> {
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| String::from_utf8(t.payload).unwrap())
        .collect()
}

/// The responses sent (the proxy account's REGISTERs left out).
pub(super) fn responses(ep: &mut Endpoint) -> Vec<u16> {
    sent(ep)
        .iter()
        .filter(|t| t.starts_with("SIP/2.0 "))
        .map(|t| status(t))
        .collect()
}

pub(super) fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

pub(super) fn with_body(head: &str, ct: &str, body: &str) -> String {
    format!(
        "{head}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(super) fn invite(branch: &str, cseq: u32, to_tag: &str, body: &str) -> String {
    with_body(
        &format!(
            "INVITE sip:1000@{OURS} SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: \"Door\" <sip:1006@127.0.0.1>;tag=pbx1\r\n\
             To: <sip:1000@127.0.0.1>{to_tag}\r\nCall-ID: c1@pbx\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:1006@{PBX}>\r\nX-Number: <sip:1001@127.0.0.1>\r\nX-CusData: hello\r\n"
        ),
        "application/sdp",
        body,
    )
}

pub(super) fn in_dialog(method: &str, branch: &str, cseq: u32, tag: &str, extra: &str) -> String {
    format!(
        "{method} sip:1000@{OURS} SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1006@127.0.0.1>;tag=pbx1\r\n\
         To: <sip:1000@127.0.0.1>;tag={tag}\r\nCall-ID: c1@pbx\r\nCSeq: {cseq} {method}\r\n{extra}"
    )
}

pub(super) fn status(text: &str) -> u16 {
    text.get(8..11)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text}"))
}

/// An answered incoming call: (endpoint, id, our tag).
fn answered(now: Instant) -> (Endpoint, SipCallId, String) {
    let mut ep = ep(now);
    send(&mut ep, now, &invite("i1", 1, "", OFFER));
    assert_eq!(responses(&mut ep), [100]);
    let ev = events(&mut ep);
    let Some(Event::IncomingCall {
        id,
        app_user,
        caller,
        caller_name,
        cus_data,
        sdp,
        ..
    }) = ev.first().cloned()
    else {
        panic!("{ev:?}");
    };
    assert_eq!((app_user.as_str(), caller.as_str()), ("1001", "1006"));
    assert_eq!(
        (caller_name.as_deref(), cus_data.as_deref()),
        (Some("Door"), Some("hello"))
    );
    assert_eq!(sdp, OFFER);
    ep.ring(now, id);
    let ringing = sent(&mut ep);
    assert_eq!(status(&ringing[0]), 180);
    ep.answer(now, id, OFFER);
    let ok = sent(&mut ep);
    assert_eq!(status(&ok[0]), 200);
    assert!(ok[0].contains("Content-Type: application/sdp"), "{}", ok[0]);
    let tag = to_tag(&ok[0]);
    (ep, id, tag)
}

/// The To tag of a response (srgate's tag on an incoming call).
pub(super) fn to_tag(response: &str) -> String {
    response
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split("tag=").nth(1))
        .unwrap_or_else(|| panic!("a To tag: {response}"))
        .trim()
        .to_string()
}

/// A picture request for a door's video goes as SIP INFO (RFC 5168) in the dialog.
#[test]
fn a_picture_request_goes_as_info_with_the_media_control_body() {
    let now = t0();
    let (mut ep, id, tag) = answered(now);
    ep.picture_update(now, id);
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1, "{out:?}");
    let info = &out[0];
    assert!(info.starts_with("INFO sip:1006@"), "{info}");
    assert!(info.contains(&format!("tag={tag}")), "{info}");
    assert!(
        info.contains("Content-Type: application/media_control+xml"),
        "{info}"
    );
    assert!(info.contains("<picture_fast_update/>"), "{info}");
}

/// A digit srgate sends as SIP INFO (door opening): in the dialog, after the answer only.
#[test]
fn a_digit_goes_as_info_in_the_dialog_once_answered() {
    let now = t0();
    let mut ep = ep(now);
    send(&mut ep, now, &invite("d1", 1, "", OFFER));
    let id = match events(&mut ep).first() {
        Some(Event::IncomingCall { id, .. }) => *id,
        other => panic!("{other:?}"),
    };
    sent(&mut ep);
    ep.info(now, id, '#', 160);
    assert!(sent(&mut ep).is_empty(), "not before the answer");
    ep.answer(now, id, OFFER);
    let tag = to_tag(&sent(&mut ep)[0]);
    ep.info(now, id, '#', 160);
    let out = sent(&mut ep);
    let info = out
        .iter()
        .find(|t| t.starts_with("INFO sip:1006@127.0.0.1:5060 SIP/2.0\r\n"))
        .unwrap_or_else(|| panic!("an INFO to the caller's Contact: {out:?}"));
    assert!(info.contains(&format!(";tag={tag}")), "{info}");
    assert!(info.contains("Call-ID: c1@pbx\r\n"), "{info}");
    assert!(info.contains("CSeq: 1 INFO\r\n"), "{info}");
    assert!(
        info.contains("Content-Type: application/dtmf-relay\r\n"),
        "{info}"
    );
    assert!(
        info.ends_with("\r\n\r\nSignal=#\r\nDuration=160\r\n"),
        "{info}"
    );
}

#[test]
fn an_incoming_call_refused_for_overload_gets_503_with_retry_after() {
    let now = t0();
    let mut ep = ep(now);
    send(&mut ep, now, &invite("o1", 1, "", OFFER));
    assert_eq!(responses(&mut ep), [100]);
    let Some(Event::IncomingCall { id, .. }) = events(&mut ep).first().cloned() else {
        panic!("an incoming call");
    };
    ep.reject(now, id, 503);
    let out = sent(&mut ep);
    assert_eq!(status(&out[0]), 503, "{out:?}");
    assert!(out[0].contains("\r\nRetry-After: 5\r\n"), "{}", out[0]);
    // other refusals say nothing of coming back
    let mut ep2 = super::tests::ep(now);
    send(&mut ep2, now, &invite("o2", 1, "", OFFER));
    let _ = responses(&mut ep2);
    let Some(Event::IncomingCall { id, .. }) = events(&mut ep2).first().cloned() else {
        panic!("an incoming call");
    };
    ep2.reject(now, id, 486);
    let out = sent(&mut ep2);
    assert_eq!(status(&out[0]), 486);
    assert!(!out[0].contains("Retry-After"), "{}", out[0]);
}

#[test]
fn an_incoming_200_is_retransmitted_until_the_ack_and_bye_ends_the_call() {
    let now = t0();
    let (mut ep, id, tag) = answered(now);
    ep.handle_timeout(now + Duration::from_millis(500));
    assert_eq!(responses(&mut ep), [200]);
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_dialog("ACK", "a1", 1, &tag, "")
        ),
    );
    ep.handle_timeout(now + Duration::from_millis(1500));
    assert!(responses(&mut ep).is_empty(), "no 200 after the ACK");
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_dialog("BYE", "b1", 2, &tag, "")
        ),
    );
    assert_eq!(responses(&mut ep), [200]);
    assert_eq!(events(&mut ep), vec![Event::CallEnded { id, code: None }]);
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn without_an_ack_the_call_ends_with_a_bye() {
    let now = t0();
    let (mut ep, id, _) = answered(now);
    ep.handle_timeout(now + Duration::from_secs(33));
    let out = sent(&mut ep);
    assert!(
        out.iter().any(|t| t.starts_with("BYE sip:1006@")),
        "{out:?}"
    );
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            id,
            code: Some(408)
        }]
    );
}

#[test]
fn a_hold_reinvite_is_answered_recvonly_and_info_brings_digits() {
    let now = t0();
    let (mut ep, id, tag) = answered(now);
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_dialog("ACK", "a1", 1, &tag, "")
        ),
    );
    let hold = OFFER.replace("sendrecv", "sendonly");
    send(
        &mut ep,
        now,
        &invite("r1", 2, &format!(";tag={tag}"), &hold),
    );
    let out = sent(&mut ep);
    let ok = out
        .iter()
        .find(|t| status(t) == 200)
        .expect("200 to the re-INVITE");
    assert!(ok.contains("a=recvonly"), "{ok}");
    assert_eq!(events(&mut ep), vec![Event::CallUpdated { id, sdp: hold }]);
    let info = with_body(
        &in_dialog("INFO", "n1", 3, &tag, ""),
        "application/dtmf-relay",
        "Signal=5\r\nDuration=160\r\n",
    );
    send(&mut ep, now, &info);
    assert_eq!(status(&sent(&mut ep)[0]), 200);
    assert_eq!(
        events(&mut ep),
        vec![Event::Dtmf {
            id,
            digit: '5',
            duration_ms: 160
        }]
    );
    let odd = with_body(&in_dialog("INFO", "n2", 4, &tag, ""), "text/plain", "hi");
    send(&mut ep, now, &odd);
    assert_eq!(status(&sent(&mut ep)[0]), 415);
    assert_eq!(ep.active_calls(), 1, "the call lives on");
}

/// Session refreshes (RFC 4028) as PBXs send them: an UPDATE without a body and an UPDATE
/// with an offer each get a 200 and the call lives on; a re-INVITE's 200 is repeated
/// until its ACK; an offerless re-INVITE (srgate would have to make a fresh offer) gets
/// 488 and the call lives on.
#[test]
fn session_refreshes_by_update_and_reinvite_keep_the_call() {
    let now = t0();
    let (mut ep, id, tag) = answered(now);
    let ack = |branch: &str, cseq: u32| {
        format!(
            "{}Content-Length: 0\r\n\r\n",
            in_dialog("ACK", branch, cseq, &tag, "")
        )
    };
    send(&mut ep, now, &ack("a1", 1));
    // a refresh by UPDATE, no body: 200, nothing for the call layer
    let update = format!(
        "{}Session-Expires: 90;refresher=uac\r\nContent-Length: 0\r\n\r\n",
        in_dialog("UPDATE", "u1", 2, &tag, "")
    );
    send(&mut ep, now, &update);
    let out = sent(&mut ep);
    assert_eq!(status(&out[0]), 200, "{out:?}");
    assert!(!out[0].contains("application/sdp"), "{}", out[0]);
    assert!(events(&mut ep).is_empty());
    // an UPDATE with an offer is answered like a re-INVITE
    let moved = OFFER.replace("40000", "40010");
    let update = with_body(
        &in_dialog("UPDATE", "u2", 3, &tag, ""),
        "application/sdp",
        &moved,
    );
    send(&mut ep, now, &update);
    let out = sent(&mut ep);
    assert_eq!(status(&out[0]), 200);
    assert!(out[0].contains("m=audio"), "srgate's answer: {}", out[0]);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallUpdated {
            id,
            sdp: moved.clone()
        }]
    );
    // a refresh by re-INVITE: its 200 is repeated until the ACK
    send(
        &mut ep,
        now,
        &invite("r2", 4, &format!(";tag={tag}"), &moved),
    );
    let ok = sent(&mut ep);
    assert_eq!(status(&ok[0]), 200);
    events(&mut ep);
    let later = now + Duration::from_millis(600);
    ep.handle_timeout(later);
    let again = sent(&mut ep);
    assert!(
        again
            .iter()
            .any(|t| t.starts_with("SIP/2.0 200") && t.contains("CSeq: 4 INVITE")),
        "the 200 again, no ACK yet: {again:?}"
    );
    send(&mut ep, later, &ack("a2", 4));
    ep.handle_timeout(later + Duration::from_secs(2));
    assert!(
        sent(&mut ep).iter().all(|t| !t.contains("CSeq: 4 INVITE")),
        "not after the ACK"
    );
    // an offerless re-INVITE: srgate offers in the 200, the ACK answers, the call goes on
    let reinvite = format!(
        "{}Content-Length: 0\r\n\r\n",
        in_dialog("INVITE", "r3", 5, &tag, "")
    );
    send(&mut ep, later, &reinvite);
    let ok = sent(&mut ep).remove(0);
    assert_eq!(status(&ok), 200);
    assert!(ok.contains("m=audio "), "{ok}");
    let _ = events(&mut ep);
    let answer = with_body(
        &in_dialog("ACK", "a3", 5, &tag, ""),
        "application/sdp",
        OFFER,
    );
    send(&mut ep, later, &answer);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallUpdated { .. }]
    ));
    assert_eq!(ep.active_calls(), 1, "the call lives on");
    // UPDATE is allowed
    let options = format!(
        "{}Content-Length: 0\r\n\r\n",
        in_dialog("OPTIONS", "o1", 6, &tag, "")
    );
    send(&mut ep, later, &options);
    let out = sent(&mut ep);
    assert!(out[0].contains("UPDATE"), "{}", out[0]);
}

#[test]
fn an_outgoing_call_authenticates_rings_is_answered_and_hangs_up_with_bye() {
    let now = t0();
    let mut ep = ep(now);
    let id = SipCallId(7);
    ep.start_call(
        now,
        OutgoingCall {
            id,
            callee: "1006".into(),
            caller: "1001".into(),
            display_name: None,
            sdp: OFFER.into(),
            headers: vec![("X-ArInfo".into(), "data".into())],
            reach: Reach::GroupOrPhone,
            account: None,
        },
    )
    .unwrap();
    assert_eq!(
        ep.start_call(
            now,
            OutgoingCall {
                id,
                callee: "1".into(),
                caller: "1".into(),
                display_name: None,
                sdp: String::new(),
                headers: vec![],
                reach: Reach::GroupOrPhone,
                account: None,
            }
        ),
        Err(CallError::Duplicate)
    );
    let first = sent(&mut ep).remove(0);
    assert!(
        first.starts_with(&format!("INVITE sip:1006@{PBX} SIP/2.0")),
        "{first}"
    );
    assert!(
        first.contains("From: \"1001\" <sip:1000@127.0.0.1>;tag="),
        "{first}"
    );
    assert!(first.contains("X-ArInfo: data"), "{first}");
    let copy = |name: &str, text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    let response = |code: &str, text: &str, extra: &str, body: &str| -> String {
        let head = format!(
            "SIP/2.0 {code}\r\n{}\r\n{}\r\n{}\r\n{}\r\n{}\r\n{extra}",
            copy("Via:", text),
            copy("From:", text),
            copy("To:", text),
            copy("Call-ID:", text),
            copy("CSeq:", text)
        );
        if body.is_empty() {
            format!("{head}Content-Length: 0\r\n\r\n")
        } else {
            with_body(&head, "application/sdp", body)
        }
    };
    send(
        &mut ep,
        now,
        &response(
            "407 Proxy Authentication Required",
            &first,
            "Proxy-Authenticate: Digest realm=\"127.0.0.1\", nonce=\"abc\", algorithm=MD5\r\n",
            "",
        ),
    );
    let out = sent(&mut ep);
    assert!(out[0].starts_with("ACK "), "the 407 is ACKed: {out:?}");
    let second = &out[1];
    assert!(
        second.starts_with("INVITE ") && second.contains("Proxy-Authorization: Digest"),
        "{second}"
    );
    assert!(second.contains("CSeq: 2 INVITE"), "{second}");
    let with_tag = second.replace(
        &copy("To:", second),
        &format!("{};tag=far", copy("To:", second)),
    );
    send(
        &mut ep,
        now,
        &response(
            "180 Ringing",
            &with_tag,
            &format!("Contact: <sip:1006@{PBX}>\r\n"),
            "",
        ),
    );
    assert_eq!(
        events(&mut ep),
        vec![Event::CallProgress {
            id,
            code: 180,
            sdp: None
        }]
    );
    send(
        &mut ep,
        now,
        &response(
            "200 OK",
            &with_tag,
            &format!("Contact: <sip:1006@{PBX}>\r\n"),
            OFFER,
        ),
    );
    let out = sent(&mut ep);
    assert!(
        out.iter()
            .any(|t| t.starts_with(&format!("ACK sip:1006@{PBX}"))),
        "{out:?}"
    );
    assert_eq!(
        events(&mut ep),
        vec![Event::CallAnswered {
            id,
            sdp: OFFER.into()
        }]
    );
    ep.hangup(now, id);
    let out = sent(&mut ep);
    assert!(
        out.iter()
            .any(|t| t.starts_with("BYE ") && t.contains("tag=far")),
        "{out:?}"
    );
    assert!(
        events(&mut ep).is_empty(),
        "no event after the call layer's own hangup"
    );
    assert_eq!(ep.active_calls(), 0);
}

/// A session refresh by UPDATE (no body) asking for `seconds`, the caller refreshing.
fn refresh(tag: &str, seconds: u32) -> String {
    format!(
        "{}Content-Length: 0\r\n\r\n",
        in_dialog(
            "UPDATE",
            "u1",
            2,
            tag,
            &format!("Supported: timer\r\nSession-Expires: {seconds};refresher=uac\r\n")
        )
    )
}

/// RFC 4028 as srgate answers it: a caller that supports session timers and asks for an
/// interval gets it back in srgate's 200 with `refresher=uac` and `Require: timer`, on
/// the INVITE and on each refresh; a caller that asks srgate to refresh, or does not
/// support them (a proxy put the interval in), gets `refresher=uas` (srgate refreshes,
/// see `session_timer_tests`); one whose `Allow` leaves UPDATE out, or whose interval is
/// not a number, gets none (the session does not expire).
#[test]
fn a_session_interval_is_granted_to_a_caller_that_refreshes() {
    let now = t0();
    let timer = "Supported: timer, 100rel\r\nSession-Expires: 1800\r\nMin-SE: 90\r\n";
    let answer_to = |extra: &str| {
        let mut ep = ep(now);
        let head = invite("s1", 1, "", OFFER).replacen(
            "X-CusData: hello\r\n",
            &format!("X-CusData: hello\r\n{extra}"),
            1,
        );
        send(&mut ep, now, &head);
        let Some(Event::IncomingCall { id, .. }) = events(&mut ep).first().cloned() else {
            panic!("an incoming call");
        };
        sent(&mut ep);
        ep.answer(now, id, OFFER);
        let ok = sent(&mut ep).remove(0);
        assert_eq!(status(&ok), 200, "{ok}");
        (ep, ok)
    };
    let (mut ep, ok) = answer_to(timer);
    assert!(
        ok.contains("Session-Expires: 1800;refresher=uac\r\n") && ok.contains("Require: timer\r\n"),
        "{ok}"
    );
    // the refresh by UPDATE is answered with the interval again
    let tag = to_tag(&ok);
    send(&mut ep, now, &refresh(&tag, 1800));
    let out = sent(&mut ep);
    assert_eq!(status(&out[0]), 200);
    assert!(
        out[0].contains("Session-Expires: 1800;refresher=uac\r\n"),
        "{}",
        out[0]
    );

    for (extra, granted) in [
        // no Supported: timer: srgate refreshes, without Require
        (
            "Session-Expires: 1800\r\n",
            "Session-Expires: 1800;refresher=uas\r\n",
        ),
        // the same when a proxy wrote refresher=uac for a caller that cannot refresh
        (
            "Session-Expires: 1800;refresher=uac\r\n",
            "Session-Expires: 1800;refresher=uas\r\n",
        ),
        // srgate asked to refresh
        (
            "Supported: timer\r\nSession-Expires: 1800;refresher=uas\r\n",
            "Session-Expires: 1800;refresher=uas\r\nRequire: timer\r\n",
        ),
    ] {
        let (_, ok) = answer_to(extra);
        assert!(ok.contains(granted), "{extra:?}: {ok}");
        assert_eq!(
            ok.contains("Require:"),
            granted.contains("Require:"),
            "{ok}"
        );
    }
    for extra in [
        // srgate asked to refresh by a caller that takes no UPDATE
        "Supported: timer\r\nSession-Expires: 1800;refresher=uas\r\nAllow: INVITE, ACK, BYE\r\n",
        // a value that is not a number
        "Supported: timer\r\nSession-Expires: soon\r\n",
    ] {
        let (_, ok) = answer_to(extra);
        assert!(
            !ok.contains("Session-Expires") && !ok.contains("Require:"),
            "{extra:?}: {ok}"
        );
    }
}

/// RFC 4028 §9: a caller that supports session timers and asks for an interval below 90 s
/// gets 422 with `Min-SE: 90` (it may retry with a longer one), on the INVITE and on a
/// refresh, which leaves the call as it was; a caller that does not support them is not
/// refused (its session just does not expire), and 90 s itself is granted.
#[test]
fn a_session_interval_below_90_s_is_refused_with_422() {
    let now = t0();
    let with = |extra: &str| {
        invite("s1", 1, "", OFFER).replacen(
            "X-CusData: hello\r\n",
            &format!("X-CusData: hello\r\n{extra}"),
            1,
        )
    };
    let mut ep = ep(now);
    send(
        &mut ep,
        now,
        &with("Supported: timer\r\nSession-Expires: 60\r\n"),
    );
    let out = sent(&mut ep);
    let refusal = out.iter().find(|m| status(m) == 422).expect("a 422");
    assert!(refusal.contains("Min-SE: 90\r\n"), "{refusal}");
    assert!(events(&mut ep).is_empty(), "no call for the app");

    // without Supported: timer the short interval is not refused
    let mut ep = self::ep(now);
    send(&mut ep, now, &with("Session-Expires: 60\r\n"));
    assert!(matches!(
        events(&mut ep).first(),
        Some(Event::IncomingCall { .. })
    ));

    // 90 s is granted; a refresh asking for 30 s is refused and the call goes on
    let mut ep = self::ep(now);
    send(
        &mut ep,
        now,
        &with("Supported: timer\r\nSession-Expires: 90\r\n"),
    );
    let Some(Event::IncomingCall { id, .. }) = events(&mut ep).first().cloned() else {
        panic!("an incoming call");
    };
    sent(&mut ep);
    ep.answer(now, id, OFFER);
    let ok = sent(&mut ep).remove(0);
    assert!(ok.contains("Session-Expires: 90;refresher=uac\r\n"), "{ok}");
    let tag = to_tag(&ok);
    send(&mut ep, now, &refresh(&tag, 30));
    let out = sent(&mut ep);
    assert_eq!(status(&out[0]), 422, "{}", out[0]);
    assert!(out[0].contains("Min-SE: 90\r\n"), "{}", out[0]);
    assert!(events(&mut ep).is_empty(), "the call goes on");
}

/// An INVITE without SDP for the app: offered to it with an empty `sdp`.
fn offerless_incoming(ep: &mut Endpoint, now: Instant, branch: &str) -> SipCallId {
    let head = invite(branch, 1, "", "");
    let head = head.replace("Content-Type: application/sdp\r\n", "");
    send(ep, now, &head);
    assert_eq!(responses(ep), [100]);
    let ev = events(ep);
    match ev.first() {
        Some(Event::IncomingCall { id, sdp, .. }) if sdp.is_empty() => *id,
        _ => panic!("an offerless incoming call: {ev:?}"),
    }
}

#[test]
fn an_offerless_invite_is_offered_in_the_200_and_answered_in_the_ack() {
    let now = t0();
    let mut ep = ep(now);
    let id = offerless_incoming(&mut ep, now, "n1");
    // srgate's offer (PCMU and PCMA) goes in the 200
    let offer = OFFER.replace("RTP/AVP 0 101", "RTP/AVP 0 8 101");
    ep.answer(now, id, &offer);
    let ok = sent(&mut ep);
    assert_eq!(status(&ok[0]), 200);
    assert!(ok[0].ends_with(&offer), "{}", ok[0]);
    let tag = to_tag(&ok[0]);
    // the ACK answers PCMA: the call layer gets it
    let answer = OFFER.replace("RTP/AVP 0 101", "RTP/AVP 8 101");
    let ack = with_body(
        &in_dialog("ACK", "a1", 1, &tag, ""),
        "application/sdp",
        &answer,
    );
    send(&mut ep, now, &ack);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallUpdated {
            id,
            sdp: answer.clone()
        }]
    );
    // a retransmitted ACK is not a second answer
    send(&mut ep, now, &ack);
    assert!(events(&mut ep).is_empty());
    // an offerless re-INVITE: srgate offers the codec in use (PCMA, settled from the
    // answer) with a new version; the ACK answers again
    let reinvite = format!(
        "{}Contact: <sip:1006@{PBX}>\r\nContent-Length: 0\r\n\r\n",
        in_dialog("INVITE", "r1", 2, &tag, "")
    );
    send(&mut ep, now, &reinvite);
    let ok = sent(&mut ep);
    let ok = ok
        .iter()
        .find(|t| t.starts_with("SIP/2.0 200"))
        .expect("a 200");
    assert!(ok.contains("RTP/AVP 8 101\r\n"), "{ok}");
    assert!(!ok.contains("PCMU"), "{ok}");
    // a late ACK of the first INVITE (CSeq 1, no body) is not the answer: no BYE
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_dialog("ACK", "a9", 1, &tag, "")
        ),
    );
    assert!(events(&mut ep).is_empty());
    assert!(sent(&mut ep).iter().all(|t| !t.starts_with("BYE ")));
    let ack = with_body(
        &in_dialog("ACK", "a2", 2, &tag, ""),
        "application/sdp",
        &answer,
    );
    send(&mut ep, now, &ack);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallUpdated { .. }]
    ));
    assert_eq!(ep.active_calls(), 1);
}

/// An UPDATE or re-INVITE with an offer while srgate's offer (in its 200) awaits the
/// ACK's answer crosses it: 491, and the call goes on; once the ACK answered, the same
/// UPDATE is taken.
#[test]
fn an_offer_crossing_srgates_pending_offer_gets_491() {
    let now = t0();
    let mut ep = ep(now);
    let id = offerless_incoming(&mut ep, now, "g1");
    ep.answer(now, id, OFFER);
    let tag = to_tag(&sent(&mut ep)[0]);
    let update = |branch: &str, cseq: u32| {
        with_body(
            &format!(
                "{}Contact: <sip:1006@{PBX}>\r\n",
                in_dialog("UPDATE", branch, cseq, &tag, "")
            ),
            "application/sdp",
            OFFER,
        )
    };
    send(&mut ep, now, &update("u1", 2));
    assert_eq!(responses(&mut ep), [491]);
    let reinvite = with_body(
        &format!(
            "{}Contact: <sip:1006@{PBX}>\r\n",
            in_dialog("INVITE", "r1", 3, &tag, "")
        ),
        "application/sdp",
        OFFER,
    );
    send(&mut ep, now, &reinvite);
    assert_eq!(responses(&mut ep), [491]);
    assert!(events(&mut ep).is_empty());
    // the ACK answers srgate's offer; the UPDATE again is answered
    let ack = with_body(
        &in_dialog("ACK", "a1", 1, &tag, ""),
        "application/sdp",
        OFFER,
    );
    send(&mut ep, now, &ack);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallUpdated { .. }]
    ));
    send(&mut ep, now, &update("u2", 4));
    assert_eq!(responses(&mut ep), [200]);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallUpdated { .. }]
    ));
    assert_eq!(ep.active_calls(), 1);
}

#[test]
fn an_ack_that_does_not_answer_srgates_offer_ends_the_call() {
    let now = t0();
    let mut ep = ep(now);
    let id = offerless_incoming(&mut ep, now, "n2");
    ep.answer(now, id, OFFER);
    let tag = to_tag(&sent(&mut ep)[0]);
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_dialog("ACK", "a1", 1, &tag, "")
        ),
    );
    assert_eq!(events(&mut ep), vec![Event::CallEnded { id, code: None }]);
    assert!(sent(&mut ep).iter().any(|t| t.starts_with("BYE ")));
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn a_refused_offer_says_why_in_a_warning() {
    let now = t0();
    let mut ep = ep(now);
    send(&mut ep, now, &invite("w1", 1, "", OFFER));
    let _ = responses(&mut ep);
    let Some(Event::IncomingCall { id, .. }) = events(&mut ep).first().cloned() else {
        panic!("an incoming call");
    };
    ep.reject_offer(now, id, "no common \"codec\"\r\nX-Evil: 1");
    let out = sent(&mut ep);
    assert_eq!(status(&out[0]), 488, "{out:?}");
    assert!(
        out[0].contains("\r\nWarning: 305 srgate \"no common codecX-Evil: 1\"\r\n"),
        "{}",
        out[0]
    );
}

#[test]
fn a_call_answered_elsewhere_is_cancelled_with_a_reason() {
    let now = t0();
    let mut ep = ep(now);
    let call = |id: u64| OutgoingCall {
        id: SipCallId(id),
        callee: "3011".into(),
        caller: "1006".into(),
        display_name: None,
        sdp: OFFER.into(),
        headers: vec![],
        reach: Reach::GroupOrPhone,
        account: None,
    };
    for (id, elsewhere) in [(21, true), (22, false)] {
        ep.start_call(now, call(id)).unwrap();
        let invite = sent(&mut ep).remove(0);
        let field = |name: &str| {
            invite
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        let ringing = format!(
            "SIP/2.0 180 Ringing\r\n{}\r\n{}\r\n{};tag=mon\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
            field("Via:"),
            field("From:"),
            field("To:"),
            field("Call-ID:"),
            field("CSeq:")
        );
        send(&mut ep, now, &ringing);
        if elsewhere {
            ep.cancel_elsewhere(now, SipCallId(id));
        } else {
            ep.hangup(now, SipCallId(id));
        }
        let cancel = sent(&mut ep)
            .into_iter()
            .find(|m| m.starts_with("CANCEL "))
            .expect("a CANCEL");
        let reason = "Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n";
        assert_eq!(cancel.contains(reason), elsewhere, "{cancel}");
    }
}
