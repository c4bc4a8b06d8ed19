//! Tests of what the endpoint answers before trust: OPTIONS and response routing, the
//! INVITE's checks, error answers, loops, stateless answers, CANCEL, limits, malformed input.

use super::*;
use crate::sip::endpoint::responses::response_head;

#[test]
fn options_gets_200_with_allow_accept_rport_and_to_tag() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    // the phone's Via says 5062 but the datagram comes from 40000 (NAT): rport wins
    ep.handle_receive(
        now,
        Transport::Udp,
        addr("127.0.0.1:40000"),
        request("OPTIONS", "sip:127.0.0.1:5086", "o1", 1, "").as_bytes(),
    );
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].destination, addr("127.0.0.1:40000"));
    let msg = Message::parse(&out[0].payload).unwrap();
    assert_eq!(msg.status(), Some(200));
    assert!(msg.header(HeaderName::Allow).unwrap().contains("INVITE"));
    assert_eq!(msg.header(HeaderName::Accept), Some("application/sdp"));
    let via = msg.top_via().unwrap();
    assert_eq!(via.rport, Some(Some(40000)));
    assert_eq!(via.received, Some("127.0.0.1"));
    assert!(msg.to().unwrap().tag.is_some());
    assert_eq!(msg.cseq().unwrap().seq, 1);
}

#[test]
fn without_rport_the_response_goes_to_the_via_port() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let text = request("OPTIONS", "sip:127.0.0.1:5086", "o2", 1, "").replace(";rport", "");
    ep.handle_receive(
        now,
        Transport::Udp,
        addr("127.0.0.1:40000"),
        text.as_bytes(),
    );
    assert_eq!(sent(&mut ep)[0].destination, addr(PHONE));
}

#[test]
fn standalone_invite_needs_proxy_auth_then_one_without_contact_gets_400_retransmitted_until_ack() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let uri = "sip:2000@127.0.0.1:5086";
    send(&mut ep, now, PHONE, &request("INVITE", uri, "i1", 1, ""));
    let (code, text) = only_status(&mut ep);
    assert_eq!(code, 407);
    send(&mut ep, now, PHONE, &request("ACK", uri, "i1", 1, ""));
    let auth = credentials(&text, "INVITE", uri, "1001", "pw1001", true);
    let invite = request("INVITE", uri, "i2", 2, &auth);
    send(&mut ep, now, PHONE, &invite);
    assert_eq!(only_status(&mut ep).0, 400);
    // (served: no Contact, 400) Timer G: the 400 is sent again after T1, then 2*T1,
    // until the ACK
    ep.handle_timeout(now + Duration::from_millis(499));
    assert!(sent(&mut ep).is_empty());
    ep.handle_timeout(now + Duration::from_millis(500));
    assert_eq!(only_status(&mut ep).0, 400);
    // a retransmitted INVITE is absorbed: the 400 again, nothing new
    send(&mut ep, now + Duration::from_millis(600), PHONE, &invite);
    assert_eq!(only_status(&mut ep).0, 400);
    let ack = request("ACK", uri, "i2", 2, "");
    send(&mut ep, now + Duration::from_millis(700), PHONE, &ack);
    assert!(sent(&mut ep).is_empty(), "ACK is never answered");
    ep.handle_timeout(now + Duration::from_secs(2));
    assert!(sent(&mut ep).is_empty(), "no retransmission after the ACK");
    // Timer I ends the transaction
    ep.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(ep.server_txs.len(), 0);
}

#[test]
fn standalone_invite_with_wrong_password_is_forbidden() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let uri = "sip:2000@127.0.0.1:5086";
    send(&mut ep, now, PHONE, &request("INVITE", uri, "w1", 1, ""));
    let (_, text) = only_status(&mut ep);
    let auth = credentials(&text, "INVITE", uri, "1001", "bad", true);
    send(&mut ep, now, PHONE, &request("INVITE", uri, "w2", 2, &auth));
    assert_eq!(only_status(&mut ep).0, 403);
}

#[test]
fn proxy_mode_trusts_only_sip_svr() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    sent(&mut ep); // the first REGISTER
    let invite = request(
        "INVITE",
        "sip:1000@127.0.0.1:5086",
        "p1",
        1,
        "X-Number: <sip:1234@127.0.0.1>\r\n",
    );
    send(
        &mut ep,
        now,
        "127.0.0.1:6666",
        &invite.replace(PHONE, "127.0.0.1:6666"),
    );
    assert_eq!(only_status(&mut ep).0, 403, "a stranger may not call");
    let from_pbx = invite
        .replace(PHONE, PBX)
        .replace("z9hG4bKp1", "z9hG4bKp2")
        .replace("call-p1", "call-p2");
    send(&mut ep, now, PBX, &from_pbx);
    assert_eq!(
        only_status(&mut ep).0,
        400,
        "the PBX may; its INVITE (no Contact here) is served: 400"
    );

    // [proxy] on = 0: sip_svr is known, but srgate takes no calls from it
    let mut ep = Endpoint::new(
        EndpointConfig {
            proxy: None,
            ..proxy_mode()
        },
        now,
    );
    assert!(sent(&mut ep).is_empty(), "no account, no REGISTER");
    assert_eq!(ep.registration(), None);
    send(&mut ep, now, PBX, &from_pbx);
    assert_eq!(only_status(&mut ep).0, 403, "the proxy role is off");
}

#[test]
fn error_answers() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let uri = "sip:127.0.0.1:5086";
    send(&mut ep, now, PHONE, &request("CANCEL", uri, "c1", 1, ""));
    assert_eq!(only_status(&mut ep).0, 481, "CANCEL of nothing");
    send(
        &mut ep,
        now,
        PHONE,
        &request("BYE", uri, "b1", 1, "")
            .replace("To: <sip:1001@127.0.0.1>", "To: <sip:1001@127.0.0.1>;tag=x"),
    );
    assert_eq!(only_status(&mut ep).0, 481, "BYE outside any dialog");
    send(
        &mut ep,
        now,
        PHONE,
        &request("INVITE", uri, "m1", 1, "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    assert_eq!(only_status(&mut ep).0, 483);
    send(&mut ep, now, PHONE, &request("FOO", uri, "f1", 1, ""));
    let (code, text) = only_status(&mut ep);
    assert_eq!(code, 501);
    assert!(text.contains("Allow:"));
    send(&mut ep, now, PHONE, &request("SUBSCRIBE", uri, "s1", 1, ""));
    assert_eq!(only_status(&mut ep).0, 405);
    send(
        &mut ep,
        now,
        PHONE,
        &request("OPTIONS", uri, "q1", 1, "Require: 100rel, foo\r\n"),
    );
    let (code, text) = only_status(&mut ep);
    assert_eq!(code, 420);
    assert!(text.contains("Unsupported: 100rel, foo"), "{text}");
    send(
        &mut ep,
        now,
        PHONE,
        &request("OPTIONS", "tel:+123", "t1", 1, ""),
    );
    assert_eq!(only_status(&mut ep).0, 416);
    // a request that went through srgate before (its own Via) → loop
    let looped = request(
        "OPTIONS",
        uri,
        "l1",
        1,
        "Via: SIP/2.0/UDP 127.0.0.1:5086;branch=z9hG4bK-sg-abc\r\n",
    );
    send(&mut ep, now, PHONE, &looped);
    assert_eq!(only_status(&mut ep).0, 482);
}

#[test]
fn a_merged_request_is_a_loop() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    sent(&mut ep);
    // a call from the PBX (trusted: its transaction is kept)
    let first = request("INVITE", "sip:1000@127.0.0.1:5086", "g1", 1, "").replace(PHONE, PBX);
    send(&mut ep, now, PBX, &first);
    assert_eq!(only_status(&mut ep).0, 400);
    // the same request (Call-ID, From tag, CSeq) by another path: another branch
    send(&mut ep, now, PBX, &first.replace("z9hG4bKg1", "z9hG4bKg2"));
    assert_eq!(only_status(&mut ep).0, 482);
}

#[test]
fn strangers_and_challenges_leave_no_state_and_get_the_same_answer_again() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let uri = "sip:2000@127.0.0.1:5086";
    let invite = request("INVITE", uri, "st1", 1, "");
    send(&mut ep, now, PHONE, &invite);
    let (code, first) = only_status(&mut ep);
    assert_eq!(code, 407);
    assert!(ep.server_txs.is_empty(), "a challenge keeps nothing");
    ep.handle_timeout(now + Duration::from_millis(500));
    assert!(
        sent(&mut ep).is_empty(),
        "and is never retransmitted (no reflection)"
    );
    send(&mut ep, now, PHONE, &invite);
    let (_, again) = only_status(&mut ep);
    let tag = |t: &str| {
        Message::parse(t.as_bytes())
            .unwrap()
            .to()
            .unwrap()
            .tag
            .map(str::to_string)
    };
    assert_eq!(
        tag(&first),
        tag(&again),
        "the retransmitted request gets the same To tag"
    );
    send(&mut ep, now, PHONE, &request("OPTIONS", uri, "st2", 1, ""));
    assert_eq!(only_status(&mut ep).0, 200);
    assert!(ep.server_txs.is_empty(), "OPTIONS keeps nothing");
}

#[test]
fn cancel_of_a_pending_invite_gets_200_and_the_invite_487() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let uri = "sip:2000@127.0.0.1:5086";
    // An INVITE still waiting for its callee (the call side answers later): its server
    // transaction exists and has no final answer yet.
    let invite = request("INVITE", uri, "pend1", 1, "");
    let msg = Message::parse(invite.as_bytes()).unwrap();
    let ids = Endpoint::request_ids(&msg).unwrap();
    let head = response_head(&msg, &ids, addr(PHONE), Some("tt1"));
    let key: ServerKey = (ids.branch.clone(), ids.sent_by.clone(), "INVITE");
    ep.server_txs.insert(
        key.clone(),
        ServerTx {
            machine: ServerMachine::Invite(ServerInviteTransaction::new(now, false)),
            destination: (Transport::Udp, addr(PHONE)),
            head,
            origin: (
                ids.call_id.to_string(),
                ids.from_tag.to_string(),
                ids.cseq,
                "INVITE",
            ),
            final_sent: false,
            keep: true,
        },
    );
    ep.respond(now, &key, 180, "Ringing", &[]);
    assert_eq!(only_status(&mut ep).0, 180);
    send(&mut ep, now, PHONE, &request("CANCEL", uri, "pend1", 1, ""));
    let out = sent(&mut ep);
    let codes: Vec<u16> = out.iter().map(status_of).collect();
    assert_eq!(
        codes,
        vec![200, 487],
        "200 for the CANCEL, 487 ends the INVITE"
    );
    let cseq_of = |t: &Transmit| Message::parse(&t.payload).unwrap().cseq().unwrap().seq;
    assert!(String::from_utf8_lossy(&out[0].payload).contains("CSeq: 1 CANCEL"));
    assert!(String::from_utf8_lossy(&out[1].payload).contains("CSeq: 1 INVITE"));
    assert_eq!(cseq_of(&out[1]), 1);
    let to_tag = |t: &Transmit| {
        Message::parse(&t.payload)
            .unwrap()
            .to()
            .unwrap()
            .tag
            .map(str::to_string)
    };
    assert_eq!(
        to_tag(&out[0]).as_deref(),
        Some("tt1"),
        "the CANCEL's 200 has the INVITE's To tag (RFC 3261 §9.2)"
    );
    assert_eq!(to_tag(&out[1]).as_deref(), Some("tt1"));
    // the CANCEL of a kept INVITE is a real transaction: a copy of it is absorbed
    let absorbed = ep.metrics.retransmissions_absorbed;
    send(&mut ep, now, PHONE, &request("CANCEL", uri, "pend1", 1, ""));
    let (code, again) = only_status(&mut ep);
    assert_eq!(code, 200);
    assert!(again.contains("CSeq: 1 CANCEL") && again.contains("tag=tt1"));
    assert_eq!(ep.metrics.retransmissions_absorbed, absorbed + 1);
    // the 487 waits for its ACK (Timer G) like any non-2xx final answer
    ep.handle_timeout(now + Duration::from_millis(500));
    assert_eq!(only_status(&mut ep).0, 487);
}

#[test]
fn cancel_after_the_final_answer_gets_200_only() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    sent(&mut ep);
    let uri = "sip:1000@127.0.0.1:5086";
    send(
        &mut ep,
        now,
        PBX,
        &request("INVITE", uri, "k1", 1, "").replace(PHONE, PBX),
    );
    assert_eq!(only_status(&mut ep).0, 400);
    send(
        &mut ep,
        now,
        PBX,
        &request("CANCEL", uri, "k1", 1, "").replace(PHONE, PBX),
    );
    assert_eq!(
        only_status(&mut ep).0,
        200,
        "the INVITE is known but already answered"
    );
}

#[test]
fn oversized_via_from_to_are_refused_statelessly_even_from_sip_svr() {
    let now = t0();
    let mut ep = Endpoint::new(proxy_mode(), now);
    sent(&mut ep);
    let uri = "sip:1000@127.0.0.1:5086";
    // 20 proxies on the way, each with a 200-character branch: 5 KB to copy
    let pad = "x".repeat(200);
    let vias: String = (0..20)
        .map(|i| format!("Via: SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bK{i}{pad}\r\n"))
        .collect();
    let big = request("INVITE", uri, "big1", 1, "")
        .replace(PHONE, PBX)
        .replacen("Max-Forwards", &format!("{vias}Max-Forwards"), 1);
    assert!(big.len() > MAX_RESPONSE_HEAD + 100);
    send(&mut ep, now, PBX, &big);
    let (code, text) = only_status(&mut ep);
    assert_eq!(code, 400, "{text}");
    assert!(ep.server_txs.is_empty(), "nothing of it is kept");
    // below the bound the same call is served (and kept, as it comes from sip_svr)
    let small = request("INVITE", uri, "big2", 1, "").replace(PHONE, PBX);
    send(&mut ep, now, PBX, &small);
    assert_eq!(only_status(&mut ep).0, 400);
    assert_eq!(ep.server_txs.len(), 1);
}

#[test]
fn overload_503_is_stateless_and_has_a_to_tag() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let filler = request("INVITE", "sip:2000@127.0.0.1", "fill", 1, "");
    let msg = Message::parse(filler.as_bytes()).unwrap();
    let ids = Endpoint::request_ids(&msg).unwrap();
    for i in 0..MAX_SERVER_TRANSACTIONS {
        ep.server_txs.insert(
            (format!("z9hG4bKfill{i}"), "127.0.0.1:5062".into(), "INVITE"),
            ServerTx {
                machine: ServerMachine::Invite(ServerInviteTransaction::new(now, false)),
                destination: (Transport::Udp, addr(PHONE)),
                head: Vec::new(),
                origin: (ids.call_id.to_string(), format!("f{i}"), 1, "INVITE"),
                final_sent: false,
                keep: true,
            },
        );
    }
    let options = request("OPTIONS", "sip:127.0.0.1:5086", "ov1", 1, "");
    send(&mut ep, now, PHONE, &options);
    let (code, first) = only_status(&mut ep);
    assert_eq!(code, 503);
    assert_eq!(ep.server_txs.len(), MAX_SERVER_TRANSACTIONS);
    let tag = |t: &str| {
        Message::parse(t.as_bytes())
            .unwrap()
            .to()
            .unwrap()
            .tag
            .map(str::to_string)
    };
    assert!(tag(&first).is_some(), "{first}");
    send(&mut ep, now, PHONE, &options);
    let (_, again) = only_status(&mut ep);
    assert_eq!(
        tag(&first),
        tag(&again),
        "the same answer to the same request"
    );
}

#[test]
fn malformed_requests_get_400_or_are_dropped_and_counted() {
    let now = t0();
    let mut ep = Endpoint::new(standalone(), now);
    let no_cseq = request("OPTIONS", "sip:127.0.0.1", "x1", 1, "")
        .replace("CSeq: 1 OPTIONS\r\n", "CSeq: one OPTIONS\r\n");
    send(&mut ep, now, PHONE, &no_cseq);
    let (code, _) = only_status(&mut ep);
    assert_eq!(code, 400);
    send(
        &mut ep,
        now,
        PHONE,
        "\x16\x03\x01garbage that is not SIP\r\n\r\n",
    );
    assert!(sent(&mut ep).is_empty());
    send(&mut ep, now, PHONE, "SIP/2.0 200 OK\r\nVia: x\r\n\r\n");
    assert!(
        sent(&mut ep).is_empty(),
        "broken responses are never answered"
    );
    let m: HashMap<_, _> = ep.metrics().into_iter().collect();
    assert!(m["sip_parse_errors_total"] >= 2);
    assert!(m["sip_dropped_total"] >= 1);
    // and keepalives are ignored silently
    send(&mut ep, now, PHONE, "\r\n\r\n");
    assert!(sent(&mut ep).is_empty());
}
