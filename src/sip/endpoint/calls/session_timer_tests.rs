//! Session timers (RFC 4028) at the endpoint, on a simulated clock: srgate asking for an
//! interval, raising it after a 422, refreshing by UPDATE when it is the refresher and
//! ending a call whose refresh fails; a peer refresher's refreshes renewing the interval,
//! and its silence ending the call with a BYE.

use std::time::Duration;

use super::tests::{OFFER, OURS, PBX, ep_with, send, sent, status, t0, with_body};
use super::*;

/// A header line of `text` (`name` with its colon).
fn field(text: &str, name: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .to_string()
}

/// The PBX's response `code` to srgate's request `request`, with `extra` headers and an
/// SDP `body` (none when empty); the To gets the tag `far` unless it has one.
fn reply(code: &str, request: &str, extra: &str, body: &str) -> String {
    let to = field(request, "To:");
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag=far")
    };
    let head = format!(
        "SIP/2.0 {code}\r\n{}\r\n{}\r\n{to}\r\n{}\r\n{}\r\nContact: <sip:1006@{PBX}>\r\n{extra}",
        field(request, "Via:"),
        field(request, "From:"),
        field(request, "Call-ID:"),
        field(request, "CSeq:"),
    );
    if body.is_empty() {
        format!("{head}Content-Length: 0\r\n\r\n")
    } else {
        with_body(&head, "application/sdp", body)
    }
}

/// The calls' events (the proxy account's registration left out).
fn events(ep: &mut Endpoint) -> Vec<Event> {
    super::tests::events(ep)
        .into_iter()
        .filter(|e| e.call_id().is_some())
        .collect()
}

/// Runs the endpoint's timers from `from` to `to` in 1 s steps: what it sent for calls
/// (the proxy account's REGISTERs left out).
fn run(ep: &mut Endpoint, from: Instant, to: Instant) -> Vec<String> {
    let mut out = Vec::new();
    let mut now = from;
    while now < to {
        now = (now + Duration::from_secs(1)).min(to);
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        out.extend(sent(ep).into_iter().filter(|m| !m.starts_with("REGISTER ")));
    }
    out
}

fn requests<'a>(out: &'a [String], method: &str) -> Vec<&'a String> {
    out.iter()
        .filter(|m| m.starts_with(&format!("{method} ")))
        .collect()
}

/// srgate's call `id` to 1006 through the PBX.
fn to_1006(id: u64) -> OutgoingCall {
    OutgoingCall {
        id: SipCallId(id),
        callee: "1006".into(),
        caller: "1001".into(),
        display_name: None,
        sdp: OFFER.into(),
        headers: vec![],
        reach: Reach::GroupOrPhone,
        account: None,
    }
}

/// srgate (asking for 1800 s) calls 1006 through the PBX, which answers `extra`: the
/// endpoint and the 2xx's INVITE.
fn placed(now: Instant, extra: &str) -> (Endpoint, String) {
    let mut ep = ep_with(now, |c| c.session_expires = 1800);
    ep.start_call(now, to_1006(5)).unwrap();
    let invite = sent(&mut ep).remove(0);
    send(&mut ep, now, &reply("200 OK", &invite, extra, OFFER));
    let out = sent(&mut ep);
    assert!(
        out.iter().any(|m| m.starts_with("ACK ")),
        "the 2xx is ACKed: {invite} {out:?}"
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallAnswered { .. }]
    ));
    (ep, invite)
}

#[test]
fn srgate_asks_for_an_interval_and_raises_it_after_a_422() {
    let now = t0();
    let mut ep = ep_with(now, |c| c.session_expires = 1800);
    let call = to_1006(4);
    ep.start_call(now, call).unwrap();
    let invite = sent(&mut ep).remove(0);
    for header in [
        "Supported: timer\r\n",
        "Session-Expires: 1800\r\n",
        "Min-SE: 90\r\n",
    ] {
        assert!(invite.contains(header), "{header:?} in {invite}");
    }
    send(
        &mut ep,
        now,
        &reply(
            "422 Session Interval Too Small",
            &invite,
            "Min-SE: 3600\r\n",
            "",
        ),
    );
    let out = sent(&mut ep);
    assert!(out[0].starts_with("ACK "), "the 422 is ACKed: {out:?}");
    let again = &out[1];
    assert!(
        again.starts_with("INVITE ")
            && again.contains("CSeq: 2 INVITE\r\n")
            && again.contains("Session-Expires: 3600\r\n")
            && again.contains("Min-SE: 3600\r\n"),
        "{again}"
    );
    // a second 422 naming no longer interval ends the call
    send(
        &mut ep,
        now,
        &reply(
            "422 Session Interval Too Small",
            again,
            "Min-SE: 3600\r\n",
            "",
        ),
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallFailed { code: 422, .. }]
    ));

    // [sip] session_expires = 0: nothing asked
    let mut ep = ep_with(now, |c| c.session_expires = 0);
    let call = to_1006(6);
    ep.start_call(now, call).unwrap();
    let invite = sent(&mut ep).remove(0);
    assert!(
        !invite.contains("Session-Expires") && !invite.contains("Supported: timer"),
        "{invite}"
    );
}

#[test]
fn srgate_refreshes_by_update_every_half_interval_and_ends_the_call_on_481() {
    let now = t0();
    let (mut ep, _) = placed(
        now,
        "Supported: timer\r\nRequire: timer\r\nSession-Expires: 90;refresher=uac\r\n",
    );
    let half = now + Duration::from_secs(45);
    assert!(
        requests(&run(&mut ep, now, half - Duration::from_secs(1)), "UPDATE").is_empty(),
        "no refresh before half the interval"
    );
    let out = run(&mut ep, half - Duration::from_secs(1), half);
    let updates = requests(&out, "UPDATE");
    assert_eq!(updates.len(), 1, "{out:?}");
    let update = updates[0].clone();
    assert!(
        update.starts_with(&format!("UPDATE sip:1006@{PBX} SIP/2.0\r\n")),
        "{update}"
    );
    assert!(
        update.contains("Session-Expires: 90;refresher=uac\r\n")
            && update.contains("Supported: timer\r\n")
            && update.contains("Content-Length: 0\r\n"),
        "{update}"
    );
    // the 2xx renews the interval: the next refresh 45 s after it
    let renewed = half + Duration::from_secs(2);
    send(
        &mut ep,
        renewed,
        &reply(
            "200 OK",
            &update,
            "Require: timer\r\nSession-Expires: 90;refresher=uac\r\n",
            "",
        ),
    );
    let next = renewed + Duration::from_secs(45);
    assert!(
        requests(
            &run(&mut ep, renewed, next - Duration::from_secs(1)),
            "UPDATE"
        )
        .is_empty()
    );
    let out = run(&mut ep, next - Duration::from_secs(1), next);
    let update = requests(&out, "UPDATE")
        .first()
        .map(|m| m.to_string())
        .expect("the second refresh");
    assert!(events(&mut ep).is_empty(), "the call goes on");
    // 481: the peer lost the dialog; srgate ends the call (BYE) as a timeout
    send(
        &mut ep,
        next,
        &reply("481 Call/Transaction Does Not Exist", &update, "", ""),
    );
    assert_eq!(requests(&sent(&mut ep), "BYE").len(), 1);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallEnded {
            code: Some(408),
            ..
        }]
    ));
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn a_refresh_nobody_answers_ends_the_call_and_one_refused_as_unsupported_stops_refreshing() {
    let now = t0();
    let extra = "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n";
    let (mut ep, _) = placed(now, extra);
    let half = now + Duration::from_secs(45);
    assert_eq!(requests(&run(&mut ep, now, half), "UPDATE").len(), 1);
    // no answer: the UPDATE's transaction times out (64·T1) and the call ends
    let out = run(&mut ep, half, half + Duration::from_secs(40));
    let byes = requests(&out, "BYE");
    assert!(!byes.is_empty(), "{out:?}");
    assert!(
        byes.iter().all(|b| *b == byes[0]),
        "one BYE (retransmitted)"
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallEnded {
            code: Some(408),
            ..
        }]
    ));

    // 501 to the UPDATE: srgate stops refreshing, the call goes on
    let (mut ep, _) = placed(now, extra);
    let out = run(&mut ep, now, half);
    let update = requests(&out, "UPDATE")[0].clone();
    send(
        &mut ep,
        half,
        &reply("501 Not Implemented", &update, "", ""),
    );
    let out = run(&mut ep, half, half + Duration::from_secs(600));
    assert!(requests(&out, "UPDATE").is_empty(), "{out:?}");
    assert!(requests(&out, "BYE").is_empty(), "{out:?}");
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.active_calls(), 1);
}

/// An UPDATE from the PBX in the dialog of srgate's call `invite` (the PBX refreshing).
fn peer_refresh(invite: &str, cseq: u32) -> String {
    let from = field(invite, "From:").replacen("From:", "To:", 1);
    format!(
        "UPDATE sip:1001@{OURS} SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bKup{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1006@127.0.0.1>;tag=far\r\n{from}\r\n{}\r\n\
         CSeq: {cseq} UPDATE\r\nSupported: timer\r\nSession-Expires: 90;refresher=uac\r\n\
         Content-Length: 0\r\n\r\n",
        field(invite, "Call-ID:")
    )
}

#[test]
fn a_peer_that_refreshes_keeps_the_call_and_one_that_stops_gets_a_bye() {
    let now = t0();
    let (mut ep, invite) = placed(
        now,
        "Supported: timer\r\nRequire: timer\r\nSession-Expires: 90;refresher=uas\r\n",
    );
    // the PBX refreshes at 50 s: the session now lasts until 50 + 90 − 30 s
    let refreshed = now + Duration::from_secs(50);
    assert!(run(&mut ep, now, refreshed).is_empty());
    send(&mut ep, refreshed, &peer_refresh(&invite, 1));
    let ok = sent(&mut ep).remove(0);
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(ok.contains("Session-Expires: 90;refresher=uac\r\n"), "{ok}");
    let expiry = refreshed + Duration::from_secs(60);
    let out = run(&mut ep, refreshed, expiry - Duration::from_secs(1));
    assert!(out.is_empty() && events(&mut ep).is_empty(), "{out:?}");
    // then nothing: srgate ends the call with a BYE, seen as a timeout
    let out = run(&mut ep, expiry - Duration::from_secs(1), expiry);
    assert_eq!(requests(&out, "BYE").len(), 1, "{out:?}");
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallEnded {
            code: Some(408),
            ..
        }]
    ));
    // no interval in the 2xx: no timer
    let (mut ep, _) = placed(now, "");
    assert!(run(&mut ep, now, now + Duration::from_secs(4000)).is_empty());
    assert!(events(&mut ep).is_empty());
}

#[test]
fn a_caller_that_asks_srgate_to_refresh_gets_updates() {
    let now = t0();
    let mut ep = ep_with(now, |_| {});
    let invite = super::tests::invite("r1", 1, "", OFFER).replacen(
        "X-CusData: hello\r\n",
        "X-CusData: hello\r\nSupported: timer\r\nSession-Expires: 120;refresher=uas\r\n",
        1,
    );
    send(&mut ep, now, &invite);
    let Some(Event::IncomingCall { id, .. }) = events(&mut ep).first().cloned() else {
        panic!("an incoming call");
    };
    sent(&mut ep);
    ep.answer(now, id, OFFER);
    let ok = sent(&mut ep).remove(0);
    assert!(
        ok.contains("Session-Expires: 120;refresher=uas\r\n") && ok.contains("Require: timer\r\n"),
        "{ok}"
    );
    let tag = super::tests::to_tag(&ok);
    let ack = super::tests::in_dialog("ACK", "a1", 1, &tag, "Content-Length: 0\r\n\r\n");
    send(&mut ep, now, &ack);
    let out = run(&mut ep, now, now + Duration::from_secs(60));
    let updates = requests(&out, "UPDATE");
    assert_eq!(updates.len(), 1, "{out:?}");
    assert!(
        updates[0].starts_with(&format!("UPDATE sip:1006@{PBX} SIP/2.0\r\n")),
        "to the caller's Contact: {}",
        updates[0]
    );
    assert!(
        updates[0].contains("Session-Expires: 120;refresher=uac\r\n"),
        "{}",
        updates[0]
    );
}

/// Refreshes the peer keeps refusing (500) are tried again every 10 s, and when the
/// session lapses unrefreshed (a third of the interval before its end) the call ends.
#[test]
fn refreshes_refused_until_the_session_lapses_end_the_call() {
    let now = t0();
    let (mut ep, _) = placed(
        now,
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
    );
    let mut at = now;
    let mut refused = 0;
    for until in [45, 55] {
        let to = now + Duration::from_secs(until);
        let out = run(&mut ep, at, to);
        at = to;
        let update = requests(&out, "UPDATE")
            .first()
            .map(|m| m.to_string())
            .unwrap_or_else(|| panic!("a refresh by {until} s: {out:?}"));
        send(
            &mut ep,
            at,
            &reply("500 Server Internal Error", &update, "", ""),
        );
        refused += 1;
        assert!(
            events(&mut ep).is_empty(),
            "the call goes on after {refused}"
        );
    }
    // the session lapses at 90 − 30 s: BYE, seen as a timeout
    let out = run(&mut ep, at, now + Duration::from_secs(61));
    assert!(!requests(&out, "BYE").is_empty(), "{out:?}");
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallEnded {
            code: Some(408),
            ..
        }]
    ));
}
