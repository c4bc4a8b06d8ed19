//! Tests of per-call accounts: register first, call, un-register at the end; refusals fail
//! the call; a call given up while registering undoes the binding.

use super::tests::{OFFER, ep_with, events, t0, with_body};
use super::*;
use crate::pii::Secret;

const PROXY: &str = "127.0.0.2:5070";

fn account(register: bool) -> CallAccount {
    CallAccount {
        user: "2001".into(),
        auth_user: "auth2001".into(),
        password: Secret::new("pw2001"),
        domain: "voip.example".into(),
        proxy: PROXY.parse().unwrap(),
        register,
    }
}

fn call(id: u64, register: bool) -> OutgoingCall {
    OutgoingCall {
        id: SipCallId(id),
        callee: "3003".into(),
        caller: "rest".into(),
        display_name: None,
        sdp: OFFER.into(),
        headers: vec![],
        reach: Reach::GroupOrPhone,
        account: Some(Box::new(account(register))),
    }
}

/// What the endpoint sent, each with where it went (the proxy account's REGISTERs to the
/// PBX left out).
fn out(ep: &mut Endpoint) -> Vec<(SocketAddr, String)> {
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| (t.destination, String::from_utf8(t.payload).unwrap()))
        .filter(|(d, _)| d.to_string() == PROXY)
        .collect()
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// The response `code` to request `text` (its Via, From, To, Call-ID and CSeq), with a
/// To tag and `extra` headers.
fn answer(code: &str, text: &str, extra: &str, body: &str) -> String {
    let to = header(text, "To:");
    let to = if to.contains("tag=") {
        to.to_string()
    } else {
        format!("{to};tag=far")
    };
    let head = format!(
        "SIP/2.0 {code}\r\n{}\r\n{}\r\n{to}\r\n{}\r\n{}\r\n{extra}",
        header(text, "Via:"),
        header(text, "From:"),
        header(text, "Call-ID:"),
        header(text, "CSeq:"),
    );
    if body.is_empty() {
        format!("{head}Content-Length: 0\r\n\r\n")
    } else {
        with_body(&head, "application/sdp", body)
    }
}

fn deliver(ep: &mut Endpoint, now: Instant, text: &str) {
    ep.handle_receive(now, Transport::Udp, PROXY.parse().unwrap(), text.as_bytes());
}

const CHALLENGE: &str =
    "WWW-Authenticate: Digest realm=\"voip.example\", nonce=\"n1\", algorithm=MD5\r\n";

#[test]
fn a_registered_account_registers_calls_from_itself_and_unregisters_at_the_end() {
    let now = t0();
    let mut ep = ep_with(now, |_| {});
    ep.start_call(now, call(5, true)).unwrap();
    let sent = out(&mut ep);
    assert_eq!(sent.len(), 1, "the REGISTER only, no INVITE yet: {sent:?}");
    let register = &sent[0].1;
    assert!(
        register.starts_with("REGISTER sip:voip.example SIP/2.0"),
        "{register}"
    );
    assert!(
        register.contains("From: <sip:2001@voip.example>;tag="),
        "{register}"
    );
    assert!(register.contains("Expires: 3600"), "{register}");
    // a binding of its own: the Contact carries a token, used again to remove it
    let contact = header(register, "Contact:").to_string();
    assert!(contact.contains(";srgate-call="), "{contact}");
    assert!(!register.contains("pw2001"), "{register}");

    deliver(
        &mut ep,
        now,
        &answer("401 Unauthorized", register, CHALLENGE, ""),
    );
    let sent = out(&mut ep);
    let again = &sent[0].1;
    assert!(again.contains("CSeq: 2 REGISTER"), "{again}");
    assert!(again.contains("username=\"auth2001\""), "{again}");
    assert!(!again.contains("pw2001"), "{again}");
    assert!(events(&mut ep).is_empty());

    deliver(
        &mut ep,
        now,
        &answer("200 OK", again, "Expires: 3600\r\n", ""),
    );
    let sent = out(&mut ep);
    let invite = &sent[0].1;
    assert!(
        invite.starts_with("INVITE sip:3003@voip.example SIP/2.0"),
        "{invite}"
    );
    assert!(invite.contains("<sip:2001@voip.example>;tag="), "{invite}");

    // the INVITE answers a challenge with the account's credentials too
    let proxy_challenge = CHALLENGE.replace("WWW-Authenticate", "Proxy-Authenticate");
    deliver(
        &mut ep,
        now,
        &answer(
            "407 Proxy Authentication Required",
            invite,
            &proxy_challenge,
            "",
        ),
    );
    let sent = out(&mut ep);
    assert!(sent[0].1.starts_with("ACK "), "{sent:?}");
    let invite = &sent[1].1;
    assert!(
        invite.contains("Proxy-Authorization: Digest username=\"auth2001\""),
        "{invite}"
    );
    deliver(
        &mut ep,
        now,
        &answer(
            "200 OK",
            invite,
            &format!("Contact: <sip:3003@{PROXY}>\r\n"),
            OFFER,
        ),
    );
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallAnswered { .. }]
    ));
    assert!(out(&mut ep)[0].1.starts_with("ACK "));

    // the call ends: BYE, and the binding goes
    ep.hangup(now, SipCallId(5));
    let sent = out(&mut ep);
    assert!(sent[0].1.starts_with("BYE "), "{sent:?}");
    let unregister = &sent[1].1;
    assert!(
        unregister.starts_with("REGISTER sip:voip.example"),
        "{unregister}"
    );
    assert!(unregister.contains("Expires: 0"), "{unregister}");
    assert_eq!(header(unregister, "Contact:"), contact, "the same binding");
    assert!(
        unregister.contains("Authorization: Digest username=\"auth2001\""),
        "{unregister}"
    );
    deliver(&mut ep, now, &answer("200 OK", unregister, "", ""));
    assert!(ep.calls.accounts.is_empty() && ep.calls.account_branches.is_empty());
}

#[test]
fn a_refused_registration_fails_the_call_with_its_code() {
    let now = t0();
    let mut ep = ep_with(now, |_| {});
    ep.start_call(now, call(6, true)).unwrap();
    let register = out(&mut ep).remove(0).1;
    deliver(
        &mut ep,
        now,
        &answer("401 Unauthorized", &register, CHALLENGE, ""),
    );
    let again = out(&mut ep).remove(0).1;
    // the same challenge again: the credentials were refused, no third try
    deliver(
        &mut ep,
        now,
        &answer("401 Unauthorized", &again, CHALLENGE, ""),
    );
    let ev = events(&mut ep);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::CallFailed {
                id: SipCallId(6),
                code: 401,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert!(
        out(&mut ep).iter().all(|(_, t)| !t.starts_with("INVITE")),
        "no INVITE"
    );
    assert!(ep.calls.accounts.is_empty());
    assert!(ep.calls.calls.is_empty());
}

#[test]
fn a_call_given_up_while_registering_undoes_the_binding() {
    let now = t0();
    let mut ep = ep_with(now, |_| {});
    ep.start_call(now, call(8, true)).unwrap();
    let register = out(&mut ep).remove(0).1;
    ep.hangup(now, SipCallId(8));
    assert!(out(&mut ep).is_empty(), "nothing to cancel");
    deliver(&mut ep, now, &answer("200 OK", &register, "", ""));
    let sent = out(&mut ep);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].1.contains("Expires: 0"), "{sent:?}");
    assert!(
        events(&mut ep).is_empty(),
        "the call layer gave it up: no event"
    );
    deliver(&mut ep, now, &answer("200 OK", &sent[0].1, "", ""));
    assert!(ep.calls.accounts.is_empty() && ep.calls.calls.is_empty());
}

#[test]
fn without_register_the_invite_goes_to_the_accounts_proxy_at_once() {
    let now = t0();
    let mut ep = ep_with(now, |c| {
        // standalone: no PBX, no proxy account
        c.server = None;
        c.proxy = None;
    });
    ep.start_call(now, call(9, false)).unwrap();
    let sent = out(&mut ep);
    assert!(
        sent[0].1.starts_with("INVITE sip:3003@voip.example"),
        "{sent:?}"
    );
    ep.hangup(now, SipCallId(9));
    assert!(ep.calls.accounts.is_empty());
}

#[test]
fn a_registrar_that_never_answers_fails_the_call_with_408() {
    let mut now = t0();
    let mut ep = ep_with(now, |_| {});
    ep.start_call(now, call(10, true)).unwrap();
    out(&mut ep);
    // bounded: Timer F is 32 s
    for _ in 0..100 {
        match ep.poll_timeout() {
            Some(t) if t <= now + Duration::from_secs(40) => {
                now = t.max(now);
                ep.handle_timeout(now);
            }
            _ => break,
        }
        if ep.calls.accounts.is_empty() {
            break;
        }
    }
    let ev = events(&mut ep);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::CallFailed {
                id: SipCallId(10),
                code: 408,
                ..
            }
        )),
        "{ev:?}"
    );
}
