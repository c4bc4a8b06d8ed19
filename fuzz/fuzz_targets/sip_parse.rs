//! Fuzzes srgate's SIP parser: message parsing with every typed accessor, stream framing,
//! the standalone header parsers, and a build → parse round trip of every accepted
//! message. Any panic is a bug; so is a broken invariant asserted below.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::wire::sip::{
    CSeq, Contact, Frame, HeaderName, MAX_HEADERS, MAX_MESSAGE, Message, MessageBuilder, NameAddr,
    Uri, Via, frame, frame_len,
};

fuzz_target!(|data: &[u8]| {
    check_framing(data);
    if let Ok(m) = Message::parse(data) {
        touch(&m, data);
        round_trip(&m);
    }
    if let Ok(text) = core::str::from_utf8(data) {
        pieces(text);
    }
});

fn check_framing(data: &[u8]) {
    match frame(data) {
        Ok(Some(Frame::Message(n))) => assert!(n > 0 && n <= data.len() && n <= MAX_MESSAGE),
        Ok(Some(Frame::Keepalive(n))) => assert!(n > 0 && n <= data.len()),
        _ => {}
    }
    if let Ok(Some(n)) = frame_len(data) {
        assert!(n <= data.len());
    }
}

fn touch(m: &Message<'_>, data: &[u8]) {
    let bytes = m.as_bytes();
    let body = m.body();
    assert!(bytes.len() <= data.len());
    assert!(body.len() <= bytes.len());
    assert!(bytes.ends_with(body));
    if let Some(n) = m.content_length() {
        assert_eq!(n, body.len());
    }
    assert_eq!(m.is_request(), m.method().is_some());
    assert_eq!(m.is_request(), m.request_uri().is_some());
    assert_eq!(
        !m.is_request(),
        m.status().is_some() && m.reason().is_some()
    );
    if let Some(Ok(uri)) = m.sip_request_uri() {
        let _ = uri.param("transport");
    }
    for (name, value) in m.headers() {
        let _ = (name.as_str(), name.compact(), value.len());
        assert!(m.header_all(name).next().is_some());
    }
    // parse() validated these: the accessors must agree
    let vias: usize = m
        .vias()
        .map(|v| v.expect("validated Via"))
        .map(|v| {
            let _ = (
                v.branch,
                v.rport,
                v.received,
                v.param("ttl"),
                v.has_rfc3261_branch(),
            );
            let _ = v.host.to_string();
        })
        .count();
    assert!(vias > 0);
    assert!(m.top_via().is_ok());
    let cseq = m.cseq().expect("validated CSeq");
    if let Some(method) = m.method() {
        assert_eq!(method.as_str(), cseq.method.as_str());
    }
    m.call_id().expect("validated Call-ID");
    for addr in [
        m.from().expect("validated From"),
        m.to().expect("validated To"),
    ] {
        let _ = (
            addr.display,
            addr.tag,
            addr.param("x"),
            addr.uri.param("lr"),
        );
        let mut user: heapless::String<256> = heapless::String::new();
        let _ = addr.uri.user_unescaped(&mut user);
        let _ = addr.uri.equivalent(&addr.uri);
    }
    for c in m.contacts() {
        let c = c.expect("validated Contact");
        let _ = (c.expires(), c.q(), c.addr().map(|a| a.tag));
    }
    for r in m.routes().chain(m.record_routes()) {
        let _ = r.map(|r| r.uri.param("lr"));
    }
    let _ = m.max_forwards().expect("validated Max-Forwards");
    let _ = m.expires().expect("validated Expires");
    let _ = m.content_type();
}

/// Rebuilding an accepted message with the builder gives a message that parses the same.
fn round_trip(m: &Message<'_>) {
    if m.headers().count() + 2 > MAX_HEADERS {
        return;
    }
    let mut b = match (m.method(), m.request_uri(), m.status(), m.reason()) {
        (Some(method), Some(uri), _, _) => MessageBuilder::request(method, uri),
        (_, _, Some(code), Some(reason)) => MessageBuilder::response(code, reason),
        _ => unreachable!("a message is a request or a response"),
    };
    for (name, value) in m.headers() {
        if name != HeaderName::ContentLength && name != HeaderName::ContentType {
            b.push_header(name, value);
        }
    }
    if let Some(ct) = m.content_type() {
        b.set_body(ct, m.body());
    } else if !m.body().is_empty() {
        b.set_body("application/octet-stream", m.body());
    }
    let raw = b.build();
    if raw.len() > MAX_MESSAGE {
        return;
    }
    let again = match Message::parse(&raw) {
        Ok(again) => again,
        Err(e) => panic!(
            "rebuilt message rejected: {e:?}\n{}",
            String::from_utf8_lossy(&raw)
        ),
    };
    assert_eq!(again.method(), m.method());
    assert_eq!(again.status(), m.status());
    assert_eq!(again.body(), m.body());
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.cseq(), m.cseq());
    assert_eq!(again.vias().count(), m.vias().count());
    assert_eq!(again.contacts().count(), m.contacts().count());
}

fn pieces(text: &str) {
    if let Ok(u) = Uri::parse(text) {
        assert_eq!(u.as_str(), text);
        let _ = (u.param("user"), u.user_is("alice"), u.is_sip());
        let mut s: heapless::String<64> = heapless::String::new();
        let _ = u.user_unescaped(&mut s);
        assert!(u.equivalent(&u));
    }
    let _ = Via::parse(text);
    let _ = NameAddr::parse(text);
    let _ = Contact::parse(text).map(|c| (c.expires(), c.q()));
    let _ = CSeq::parse(text);
}
