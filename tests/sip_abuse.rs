//! The standalone registrar against a digest attacker, through the whole SIP endpoint on a
//! simulated clock: a captured Authorization header replayed in a new REGISTER (new
//! Call-ID, the attacker's Contact) is refused from the victim's address and from any
//! other; password guesses from one address are blocked after a few failures (even the
//! right password, while blocked), without locking the real phone out; an authenticated
//! phone cannot pose as another caller (the app sees the identity that authenticated, and
//! in proxy mode what sip_svr asserts); a UDP flood from one address is cut to its limit
//! while others are answered, and scanners get no answer at all.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use srgate::sip::auth::{Challenge, credentials};
use srgate::sip::endpoint::{Endpoint, EndpointConfig, Event, ProxyAccount, Server, Transport};

const DOMAIN: &str = "example.com";
const URI: &str = "sip:example.com";

fn endpoint(now: Instant) -> Endpoint {
    let cfg = EndpointConfig::standalone(
        "127.0.0.1:5086".parse().unwrap(),
        DOMAIN,
        &[("1001", "pw1001")],
        [3; 32],
    );
    Endpoint::new(cfg, now)
}

/// A REGISTER from `from` for user 1001 with its Contact at `from`.
fn register(from: SocketAddr, call_id: &str, cseq: u32, authorization: Option<&str>) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER {URI} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@{DOMAIN}>;tag=t-{call_id}\r\n\
         To: <sip:1001@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:1001@{from}>\r\n\
         Expires: 300\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    )
}

/// Sends one request and returns srgate's answer: status code and text.
fn send(ep: &mut Endpoint, now: Instant, from: SocketAddr, request: &str) -> (u16, String) {
    ep.handle_receive(now, Transport::Udp, from, request.as_bytes());
    let out: Vec<_> = std::iter::from_fn(|| ep.poll_transmit()).collect();
    assert_eq!(out.len(), 1, "one answer to {request}");
    let text = String::from_utf8_lossy(&out[0].payload).to_string();
    assert_eq!(out[0].destination, from, "{text}");
    (text[8..11].parse().unwrap(), text)
}

/// The challenge of a 401 and credentials for it (nc 1).
fn answer_challenge(text401: &str, password: &str, nc: u32) -> String {
    let value = text401
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .expect("a challenge");
    let challenge = Challenge::parse(value).expect("our challenge parses");
    credentials(&challenge, "REGISTER", URI, "1001", password, "cafe01", nc)
}

#[allow(clippy::disallowed_methods)] // the simulated clock's origin
fn t0() -> Instant {
    Instant::now()
}

/// `/metrics`' SIP responses by class count what the endpoint answers and what it
/// receives.
#[test]
fn responses_are_counted_by_class() {
    let now = t0();
    let mut ep = endpoint(now);
    let phone: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let (code, challenge) = send(&mut ep, now, phone, &register(phone, "c1", 1, None));
    assert_eq!(code, 401);
    let auth = answer_challenge(&challenge, "pw1001", 1);
    let (code, _) = send(&mut ep, now, phone, &register(phone, "c1", 2, Some(&auth)));
    assert_eq!(code, 200);

    let (received, sent) = ep.responses_by_class();
    assert_eq!(sent, [0, 1, 0, 1, 0, 0], "a 401 and a 200");
    // a stray 180 from the phone: received (and dropped, no transaction)
    let stray = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5086;branch=z9hG4bK-none\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: s\r\nCSeq: 1 INVITE\r\n\
                 Content-Length: 0\r\n\r\n";
    ep.handle_receive(now, Transport::Udp, phone, stray.as_bytes());
    assert_eq!(ep.responses_by_class().0, [received[0] + 1, 0, 0, 0, 0, 0]);
}

#[test]
fn a_captured_authorization_replayed_in_a_new_register_is_refused() {
    let now = t0();
    let mut ep = endpoint(now);
    let victim: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let (code, challenge) = send(&mut ep, now, victim, &register(victim, "v1", 1, None));
    assert_eq!(code, 401);
    let captured = answer_challenge(&challenge, "pw1001", 1);
    let (code, _) = send(
        &mut ep,
        now,
        victim,
        &register(victim, "v1", 2, Some(&captured)),
    );
    assert_eq!(code, 200, "the victim registers");

    // the attacker sends the captured header in a REGISTER of its own: from another
    // address, and from the victim's (a shared NAT, or a spoofed UDP source)
    let attacker: SocketAddr = "203.0.113.5:5070".parse().unwrap();
    let later = now + Duration::from_secs(3);
    let (code, text) = send(
        &mut ep,
        later,
        attacker,
        &register(attacker, "a1", 1, Some(&captured)),
    );
    assert_eq!(code, 401, "a nonce issued to another address: {text}");
    let (code, text) = send(
        &mut ep,
        later,
        victim,
        &register(attacker, "a2", 1, Some(&captured)),
    );
    assert_eq!(code, 401, "the same nc on the same nonce: {text}");
    assert!(
        text.contains("stale=true"),
        "an honest client just answers anew: {text}"
    );

    // the victim's own next request on its nonce counts on, and is taken
    let next = answer_challenge(&challenge, "pw1001", 2);
    let (code, _) = send(
        &mut ep,
        later,
        victim,
        &register(victim, "v1", 3, Some(&next)),
    );
    assert_eq!(code, 200);
}

#[test]
fn password_guessing_is_blocked_per_address_without_locking_the_phone_out() {
    let now = t0();
    let mut ep = endpoint(now);
    let guesser: SocketAddr = "203.0.113.9:5060".parse().unwrap();
    let (_, challenge) = send(&mut ep, now, guesser, &register(guesser, "g", 1, None));
    let mut refused = 0;
    for i in 0..20u32 {
        let guess = answer_challenge(&challenge, &format!("guess{i}"), 1);
        let (code, _) = send(
            &mut ep,
            now,
            guesser,
            &register(guesser, "g", 2 + i, Some(&guess)),
        );
        assert_eq!(code, 403);
        refused += 1;
    }
    assert_eq!(refused, 20);
    // blocked now: even the right password is refused unchecked
    let right = answer_challenge(&challenge, "pw1001", 1);
    let (code, _) = send(
        &mut ep,
        now,
        guesser,
        &register(guesser, "g", 30, Some(&right)),
    );
    assert_eq!(code, 403, "the right password while blocked");
    // the phone at its own address is not affected
    let phone: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let (_, phone_challenge) = send(&mut ep, now, phone, &register(phone, "p", 1, None));
    let creds = answer_challenge(&phone_challenge, "pw1001", 1);
    let (code, _) = send(&mut ep, now, phone, &register(phone, "p", 2, Some(&creds)));
    assert_eq!(
        code, 200,
        "the phone registers while the guesser is blocked"
    );
    // the sixth failure started a 1 s back-off; the attempts made while blocked were not
    // checked and do not count: once it has run out, the right password works
    let later = now + Duration::from_secs(2);
    let (_, challenge) = send(&mut ep, later, guesser, &register(guesser, "g", 31, None));
    let right = answer_challenge(&challenge, "pw1001", 1);
    let (code, _) = send(
        &mut ep,
        later,
        guesser,
        &register(guesser, "g", 32, Some(&right)),
    );
    assert_eq!(code, 200, "after the back-off the right password works");
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// An INVITE for app user 2001 from `from`, whose From names `from_header`.
fn invite(from: SocketAddr, from_header: &str, cseq: u32, extra: &str) -> String {
    format!(
        "INVITE sip:2001@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-inv-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: {from_header};tag=f1\r\n\
         To: <sip:2001@{DOMAIN}>\r\n\
         Call-ID: spoof-1\r\n\
         CSeq: {cseq} INVITE\r\n\
         Contact: <sip:1001@{from}>\r\n\
         {extra}Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    )
}

/// The caller and display name of the call offered to the app.
fn offered(ep: &mut Endpoint) -> (String, Option<String>) {
    while ep.poll_transmit().is_some() {}
    std::iter::from_fn(|| ep.poll_event())
        .find_map(|e| match e {
            Event::IncomingCall {
                caller,
                caller_name,
                ..
            } => Some((caller, caller_name)),
            _ => None,
        })
        .expect("the call is offered to the app")
}

#[test]
fn an_authenticated_phone_cannot_pose_as_another_caller() {
    let now = t0();
    let mut ep = endpoint(now);
    let phone: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let spoofed = "\"The Boss\" <sip:9999@example.com>";
    let (code, text) = send(&mut ep, now, phone, &invite(phone, spoofed, 1, ""));
    assert_eq!(code, 407);
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("Proxy-Authenticate: "))
        .expect("a challenge");
    let challenge = Challenge::parse(value).unwrap();
    let creds = credentials(
        &challenge,
        "INVITE",
        "sip:2001@example.com",
        "1001",
        "pw1001",
        "c1",
        1,
    );
    let extra = format!("Proxy-Authorization: {creds}\r\n");
    ep.handle_receive(
        now,
        Transport::Udp,
        phone,
        invite(phone, spoofed, 2, &extra).as_bytes(),
    );
    let (caller, name) = offered(&mut ep);
    assert_eq!(
        caller, "1001",
        "the identity that authenticated, not the From's 9999"
    );
    assert_eq!(
        name.as_deref(),
        Some("The Boss"),
        "the From's display name stays a name"
    );
}

/// A proxy-mode endpoint whose sip_svr is `pbx`.
fn proxy_endpoint(now: Instant, pbx: SocketAddr) -> Endpoint {
    let cfg = EndpointConfig {
        server: Some(Server {
            addr: pbx,
            transport: Transport::Udp,
            host_port: pbx.to_string(),
        }),
        proxy: Some(ProxyAccount {
            user: "1000".into(),
            password: "1234".into(),
            expires: 300,
        }),
        ..EndpointConfig::standalone("127.0.0.1:5086".parse().unwrap(), DOMAIN, &[], [3; 32])
    };
    Endpoint::new(cfg, now)
}

#[test]
fn in_proxy_mode_the_caller_is_what_sip_svr_asserts() {
    let now = t0();
    let pbx: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let pai = "P-Asserted-Identity: \"Reception\" <sip:100@pbx.example.com>\r\n";
    let from = "\"Whoever\" <sip:555@pbx.example.com>";
    let mut ep = proxy_endpoint(now, pbx);
    ep.handle_receive(
        now,
        Transport::Udp,
        pbx,
        invite(pbx, from, 1, pai).as_bytes(),
    );
    assert_eq!(offered(&mut ep).0, "100");
    // without an assertion the PBX's From is the caller
    let mut ep = proxy_endpoint(now, pbx);
    ep.handle_receive(
        now,
        Transport::Udp,
        pbx,
        invite(pbx, from, 1, "").as_bytes(),
    );
    assert_eq!(offered(&mut ep).0, "555");
}

fn options(from: SocketAddr, i: u32, user_agent: &str) -> String {
    format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-opt-{i};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag=o{i}\r\n\
         To: <sip:{DOMAIN}>\r\n\
         Call-ID: opt-{i}\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Answers to `count` OPTIONS from `from` sent at one instant.
fn answered(ep: &mut Endpoint, now: Instant, from: SocketAddr, count: u32, ua: &str) -> usize {
    let mut answers = 0;
    for i in 0..count {
        ep.handle_receive(now, Transport::Udp, from, options(from, i, ua).as_bytes());
        answers += std::iter::from_fn(|| ep.poll_transmit()).count();
    }
    answers
}

#[test]
fn a_udp_flood_from_one_address_is_cut_to_its_limit_and_scanners_get_nothing() {
    let now = t0();
    let mut ep = endpoint(now);
    let flooder: SocketAddr = "203.0.113.7:5060".parse().unwrap();
    let answers = answered(&mut ep, now, flooder, 5_000, "flood");
    assert_eq!(answers, 200, "the burst of one source, no more");
    let dropped = ep
        .metrics()
        .into_iter()
        .find(|(n, _)| *n == "sip_flood_dropped_total")
        .map(|(_, v)| v);
    assert_eq!(dropped, Some(4_800));
    // another address is answered meanwhile, and the flooder again a second later at
    // the sustained rate
    let other: SocketAddr = "192.0.2.44:5060".parse().unwrap();
    assert_eq!(answered(&mut ep, now, other, 1, "Linphone/5.2"), 1);
    let later = now + Duration::from_secs(1);
    assert_eq!(answered(&mut ep, later, flooder, 1_000, "flood"), 50);
    // a scanner learns nothing
    let scanner: SocketAddr = "198.51.100.3:5060".parse().unwrap();
    assert_eq!(answered(&mut ep, now, scanner, 3, "friendly-scanner"), 0);
    // sip_svr is never limited
    let pbx: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let mut ep = proxy_endpoint(now, pbx);
    assert_eq!(answered(&mut ep, now, pbx, 2_000, "PBX"), 2_000);
}
