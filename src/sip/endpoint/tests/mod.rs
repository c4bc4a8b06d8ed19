//! The SIP endpoint's tests (its calls' are in `calls`), by topic: `admission` (answers
//! before trust, stateless or not), `register` (the built-in registrar), `account` (the
//! proxy account's registration); here, the helpers they share.

use super::*;
use crate::sip::auth;
use crate::wire::sip::reason_phrase;

mod account;
mod admission;
mod register;

const SRGATE: &str = "127.0.0.1:5086";
const PHONE: &str = "127.0.0.1:5062";
const PBX: &str = "127.0.0.1:5060";

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn standalone() -> EndpointConfig {
    EndpointConfig {
        local: addr(SRGATE),
        tls_local: None,
        domain: "127.0.0.1".into(),
        server: None,
        proxy: None,
        users: vec![("1001".into(), "pw1001".into())],
        digest: vec![Algorithm::Md5, Algorithm::Sha256],
        seed: [7; 32],
        user_agent: "srgate/test".into(),
        groups: Default::default(),
        session_expires: 0,
    }
}

fn proxy_mode() -> EndpointConfig {
    EndpointConfig {
        server: Some(Server {
            addr: addr(PBX),
            transport: Transport::Udp,
            host_port: PBX.into(),
        }),
        proxy: Some(ProxyAccount {
            user: "1000".into(),
            password: "1234".into(),
            expires: 300,
        }),
        users: vec![],
        ..standalone()
    }
}

#[test]
fn debug_output_shows_no_password() {
    let text = format!("{:?} {:?}", standalone(), proxy_mode());
    assert!(text.contains("1001") && text.contains("1000"), "{text}");
    assert!(!text.contains("pw1001") && !text.contains("1234"), "{text}");
}

/// A request from the phone; `extra` goes before Content-Length.
fn request(method: &str, uri: &str, branch: &str, cseq: u32, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@127.0.0.1>;tag=ft1\r\n\
         To: <sip:1001@127.0.0.1>\r\n\
         Call-ID: call-{branch}\r\n\
         CSeq: {cseq} {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn send(ep: &mut Endpoint, now: Instant, from: &str, text: &str) {
    ep.handle_receive(now, Transport::Udp, addr(from), text.as_bytes());
}

fn sent(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

/// The status code of a response, read from its status line (a 400 may carry the very
/// header that made the request unparseable).
fn status_of(t: &Transmit) -> u16 {
    let text = std::str::from_utf8(&t.payload).unwrap();
    assert!(text.starts_with("SIP/2.0 "), "{text}");
    text[8..11].parse().unwrap()
}

fn only_status(ep: &mut Endpoint) -> (u16, String) {
    let out = sent(ep);
    assert_eq!(out.len(), 1, "exactly one message expected, got {out:?}");
    (
        status_of(&out[0]),
        String::from_utf8(out[0].payload.clone()).unwrap(),
    )
}

/// Answers the first challenge in `response` as a phone would.
fn credentials(
    response: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
    proxy: bool,
) -> String {
    let msg = Message::parse(response.as_bytes()).unwrap();
    let name = if proxy {
        HeaderName::ProxyAuthenticate
    } else {
        HeaderName::WwwAuthenticate
    };
    let challenge = auth::Challenge::parse(msg.header(name).unwrap()).unwrap();
    let value = auth::credentials(&challenge, method, uri, user, password, "0a4f113b", 1);
    let header = if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    format!("{header}: {value}\r\n")
}
