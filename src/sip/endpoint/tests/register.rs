//! Tests of the built-in registrar: REGISTER with digest, challenge order, wrong
//! credentials, other users' addresses-of-record, stale nonces.

use super::*;

#[test]
fn register_digest_challenge_order_success_wrong_password_and_unregister() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let contact = "Contact: <sip:1001@127.0.0.1:5062>\r\nExpires: 600\r\n";
    send(
        &mut ep,
        now,
        PHONE,
        &request("REGISTER", "sip:127.0.0.1", "r1", 1, contact),
    );
    let (code, text) = only_status(&mut ep);
    assert_eq!(code, 401);
    let md5 = text.find("algorithm=MD5").expect("MD5 challenge");
    let sha = text.find("algorithm=SHA-256").expect("SHA-256 challenge");
    assert!(md5 < sha, "MD5 first, as [sip] digest says");

    let auth = credentials(&text, "REGISTER", "sip:127.0.0.1", "1001", "pw1001", false);
    send(
        &mut ep,
        now,
        PHONE,
        &request(
            "REGISTER",
            "sip:127.0.0.1",
            "r2",
            2,
            &format!("{contact}{auth}"),
        ),
    );
    let (code, text) = only_status(&mut ep);
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("<sip:1001@127.0.0.1:5062>;expires=600"),
        "{text}"
    );
    assert!(ep.registrar().is_registered(now, "1001"));

    let wrong = credentials(
        &text_401(&mut ep, now),
        "REGISTER",
        "sip:127.0.0.1",
        "1001",
        "nope",
        false,
    );
    send(
        &mut ep,
        now,
        PHONE,
        &request(
            "REGISTER",
            "sip:127.0.0.1",
            "r3",
            3,
            &format!("{contact}{wrong}"),
        ),
    );
    assert_eq!(only_status(&mut ep).0, 403);

    let auth = credentials(
        &text_401(&mut ep, now),
        "REGISTER",
        "sip:127.0.0.1",
        "1001",
        "pw1001",
        false,
    );
    send(
        &mut ep,
        now,
        PHONE,
        &request(
            "REGISTER",
            "sip:127.0.0.1",
            "r4",
            4,
            &format!("Contact: *\r\nExpires: 0\r\n{auth}"),
        ),
    );
    assert_eq!(only_status(&mut ep).0, 200);
    assert!(
        !ep.registrar().is_registered(now, "1001"),
        "wildcard un-REGISTER removed it"
    );
}

fn text_401(ep: &mut Endpoint, now: Instant) -> String {
    send(
        ep,
        now,
        PHONE,
        &request("REGISTER", "sip:127.0.0.1", "rx", 1, ""),
    );
    let (code, text) = only_status(ep);
    assert_eq!(code, 401);
    text
}

#[test]
fn unknown_user_and_someone_elses_aor_are_forbidden() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let challenge = text_401(&mut ep, now);
    let auth = credentials(&challenge, "REGISTER", "sip:127.0.0.1", "9999", "x", false);
    send(
        &mut ep,
        now,
        PHONE,
        &request(
            "REGISTER",
            "sip:127.0.0.1",
            "u1",
            2,
            &format!("Contact: <sip:9999@h>\r\n{auth}"),
        ),
    );
    assert_eq!(only_status(&mut ep).0, 403);
    // right credentials of 1001 but binding 1002's address-of-record
    let auth = credentials(
        &challenge,
        "REGISTER",
        "sip:127.0.0.1",
        "1001",
        "pw1001",
        false,
    );
    let text = request(
        "REGISTER",
        "sip:127.0.0.1",
        "u2",
        3,
        &format!("Contact: <sip:1002@h>\r\n{auth}"),
    )
    .replace("To: <sip:1001@", "To: <sip:1002@");
    send(&mut ep, now, PHONE, &text);
    assert_eq!(only_status(&mut ep).0, 403);
}

#[test]
fn stale_nonce_is_rechallenged_with_stale_true() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let auth = credentials(
        &text_401(&mut ep, now),
        "REGISTER",
        "sip:127.0.0.1",
        "1001",
        "pw1001",
        false,
    );
    let later = now + Duration::from_secs(3600);
    send(
        &mut ep,
        later,
        PHONE,
        &request(
            "REGISTER",
            "sip:127.0.0.1",
            "s1",
            2,
            &format!("Contact: <sip:1001@h>\r\n{auth}"),
        ),
    );
    let (code, text) = only_status(&mut ep);
    assert_eq!(code, 401);
    assert!(text.to_ascii_lowercase().contains("stale=true"), "{text}");
}
