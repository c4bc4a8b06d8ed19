//! Tests of the proxy account's registration at sip_svr: digest, refresh, backoff,
//! expiry, recovery, shutdown.

use super::*;
use crate::sip::transaction::TIMER_F;

/// Plays the registrar for the proxy account's REGISTER in `t`.
fn registrar_answer(t: &Transmit, code: u16, extra: &str) -> String {
    let msg = Message::parse(&t.payload).unwrap();
    let mut out = format!("SIP/2.0 {code} {}\r\n", reason_phrase(code));
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        out.push_str(&format!(
            "{}: {}\r\n",
            name.as_str(),
            msg.header(name).unwrap()
        ));
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[test]
fn proxy_account_registers_with_digest_refreshes_backs_off_and_unregisters() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    ep.handle_timeout(now);
    let first = sent(&mut ep);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].destination, addr(PBX));
    assert!(!ep.is_registered());
    let reg = Message::parse(&first[0].payload).unwrap();
    assert_eq!(reg.method(), Some(Method::Register));
    assert_eq!(reg.expires().unwrap(), Some(300));
    assert!(reg.header(HeaderName::Authorization).is_none());

    send(
        &mut ep,
        now,
        PBX,
        &registrar_answer(
            &first[0],
            401,
            "WWW-Authenticate: Digest realm=\"127.0.0.1\", nonce=\"n1\", qop=\"auth\", algorithm=MD5\r\n",
        ),
    );
    let second = sent(&mut ep);
    assert_eq!(second.len(), 1);
    let reg2 = Message::parse(&second[0].payload).unwrap();
    let creds = reg2
        .header(HeaderName::Authorization)
        .expect("answers the challenge");
    assert!(creds.contains("username=\"1000\"") && creds.contains("nonce=\"n1\""));
    assert_eq!(
        reg2.call_id().unwrap(),
        reg.call_id().unwrap(),
        "same Call-ID"
    );
    assert_eq!(reg2.cseq().unwrap().seq, reg.cseq().unwrap().seq + 1);

    send(
        &mut ep,
        now,
        PBX,
        &registrar_answer(
            &second[0],
            200,
            "Contact: <sip:1000@127.0.0.1:5086>;expires=120\r\n",
        ),
    );
    assert!(ep.is_registered());
    assert_eq!(ep.poll_event(), Some(Event::Registered { expires: 120 }));
    assert_eq!(refresh_after(120), Duration::from_secs(80));
    ep.handle_timeout(now + Duration::from_secs(79));
    assert!(sent(&mut ep).is_empty(), "no refresh before 80 s");

    // refresh: sent with credentials already (no round trip); the registrar is gone
    let t1 = now + Duration::from_secs(80);
    ep.handle_timeout(t1);
    let refresh = sent(&mut ep);
    assert_eq!(refresh.len(), 1);

    assert!(
        Message::parse(&refresh[0].payload)
            .unwrap()
            .header(HeaderName::Authorization)
            .is_some()
    );
    // retransmissions (Timer E) then Timer F
    let mut retransmits = 0;
    for ms in (500..=32_000).step_by(250) {
        ep.handle_timeout(t1 + Duration::from_millis(ms));
        retransmits += sent(&mut ep).len();
    }
    assert!(retransmits >= 6, "timer E retransmitted ({retransmits})");
    // the refresh failed at 112 s, but the binding granted at 0 lasts until 120 s
    assert!(
        ep.is_registered(),
        "still registered while the binding lasts"
    );
    assert!(matches!(
        ep.poll_event(),
        Some(Event::RegistrationFailed { .. })
    ));
    // backoff 2 s, then 4 s
    let t2 = t1 + TIMER_F;
    assert_eq!(
        ep.poll_timeout()
            .map(|t| t > t2 && t <= t2 + REGISTER_BACKOFF_FIRST),
        Some(true)
    );

    // shutdown while not registered: nothing to un-register
    let mut ep2 = Endpoint::new(proxy_mode(), now);
    ep2.shutdown(now);
    assert!(ep2.is_shutdown_complete());
}

#[test]
fn registration_ends_when_the_binding_expires_unrefreshed() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    ep.handle_timeout(now);
    let first = sent(&mut ep);
    send(
        &mut ep,
        now,
        PBX,
        &registrar_answer(&first[0], 200, "Expires: 10\r\n"),
    );
    assert!(ep.is_registered());
    assert_eq!(ep.poll_event(), Some(Event::Registered { expires: 10 }));
    ep.handle_timeout(now + refresh_after(10));
    assert_eq!(
        sent(&mut ep).len(),
        1,
        "refresh sent at 5 s; the registrar is gone"
    );
    ep.handle_timeout(now + Duration::from_millis(9_999));
    sent(&mut ep);
    assert!(ep.is_registered());
    assert_eq!(
        ep.poll_timeout()
            .map(|t| t <= now + Duration::from_secs(10)),
        Some(true)
    );
    ep.handle_timeout(now + Duration::from_secs(10));
    assert!(!ep.is_registered(), "the binding ran out at 10 s");
    assert!(matches!(
        ep.poll_event(),
        Some(Event::RegistrationFailed { .. })
    ));
    // the refresh is still being retransmitted: a registrar back in time answers it
    ep.handle_timeout(now + Duration::from_secs(12));
    let again = sent(&mut ep);
    assert_eq!(again.len(), 1, "timer E retransmission");
    send(
        &mut ep,
        now + Duration::from_secs(12),
        PBX,
        &registrar_answer(&again[0], 200, "Expires: 10\r\n"),
    );
    assert!(ep.is_registered());
}

#[test]
fn granted_expiry_is_read_from_our_own_contact_only() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    ep.handle_timeout(now);
    let first = sent(&mut ep);
    // other bindings whose text contains "1000@127.0.0.1:5086" come first
    let contacts = "Contact: <sip:21000@127.0.0.1:5086>;expires=30\r\n\
                    Contact: <sip:1000@127.0.0.1:50860>;expires=40\r\n\
                    Contact: <sip:1000@127.0.0.1:5086;transport=udp>;expires=90\r\n\
                    Expires: 300\r\n";
    send(
        &mut ep,
        now,
        PBX,
        &registrar_answer(&first[0], 200, contacts),
    );
    assert_eq!(ep.poll_event(), Some(Event::Registered { expires: 90 }));
}

#[test]
fn proxy_registration_recovers_after_repeated_auth_failures() {
    let mut now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    let mut n = 0;
    let mut challenge = || {
        n += 1;
        format!("WWW-Authenticate: Digest realm=\"r\", nonce=\"n{n}\", qop=\"auth\"\r\n")
    };
    for _ in 0..6 {
        ep.handle_timeout(now);
        let t = sent(&mut ep);
        assert_eq!(t.len(), 1, "a retry is sent");
        send(
            &mut ep,
            now,
            PBX,
            &registrar_answer(&t[0], 401, &challenge()),
        );
        let answered = sent(&mut ep);
        assert_eq!(answered.len(), 1, "every attempt answers its first 401");
        send(
            &mut ep,
            now,
            PBX,
            &registrar_answer(&answered[0], 401, &challenge()),
        );
        assert!(
            sent(&mut ep).is_empty(),
            "a second 401 means wrong credentials"
        );
        now = ep.poll_timeout().unwrap().max(now) + Duration::from_secs(61);
    }
}

#[test]
fn shutdown_unregisters_with_expires_zero() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    ep.handle_timeout(now);
    let first = sent(&mut ep);
    send(
        &mut ep,
        now,
        PBX,
        &registrar_answer(&first[0], 200, "Expires: 300\r\n"),
    );
    assert!(ep.is_registered());
    ep.shutdown(now);
    assert!(!ep.is_shutdown_complete());
    let unreg = sent(&mut ep);
    assert_eq!(unreg.len(), 1);
    let m = Message::parse(&unreg[0].payload).unwrap();
    assert_eq!(m.expires().unwrap(), Some(0));
    send(&mut ep, now, PBX, &registrar_answer(&unreg[0], 200, ""));
    assert!(ep.is_shutdown_complete());
}

#[test]
fn wrong_proxy_password_gives_up_instead_of_looping() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    ep.handle_timeout(now);
    let challenge = "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"\r\n";
    let mut t = sent(&mut ep);
    send(&mut ep, now, PBX, &registrar_answer(&t[0], 401, challenge));
    t = sent(&mut ep);
    assert_eq!(t.len(), 1, "answered once");
    send(&mut ep, now, PBX, &registrar_answer(&t[0], 401, challenge));
    assert!(
        sent(&mut ep).is_empty(),
        "the same challenge again: credentials are wrong, stop"
    );
    assert!(matches!(
        ep.poll_event(),
        Some(Event::RegistrationFailed { .. })
    ));
}
