//! RFC 4475's torture messages through the whole SIP endpoint (not only the parser): no
//! message panics it, each gets the answer the RFC asks of a UAS, and a message that cannot
//! be answered is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use srgate::sip::auth::Algorithm;
use srgate::sip::endpoint::{Endpoint, EndpointConfig, Transport};

fn endpoint(now: Instant) -> Endpoint {
    let cfg = EndpointConfig {
        digest: vec![Algorithm::Md5, Algorithm::Sha256],
        ..EndpointConfig::standalone(
            "127.0.0.1:5086".parse().unwrap(),
            "example.com",
            &[("1001", "pw1001")],
            [3; 32],
        )
    };
    Endpoint::new(cfg, now)
}

/// What srgate answers to one torture message: the status code, or `None` (dropped).
fn answer(name: &str) -> (Option<u16>, HashMap<&'static str, u64>) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let path = format!(
        "{}/tests/data/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read(&path).unwrap();
    let mut ep = endpoint(now);
    let source: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    ep.handle_receive(now, Transport::Udp, source, &raw);
    let out: Vec<_> = std::iter::from_fn(|| ep.poll_transmit()).collect();
    assert!(out.len() <= 1, "{name}: one answer at most");
    let status = out.first().map(|t| {
        let text = String::from_utf8_lossy(&t.payload).to_string();
        assert!(text.starts_with("SIP/2.0 "), "{name}: {text}");
        text[8..11].parse::<u16>().unwrap()
    });
    (status, ep.metrics().into_iter().collect())
}

fn expect(name: &str, status: Option<u16>) {
    let (got, metrics) = answer(name);
    assert_eq!(got, status, "{name}");
    if status.is_none() {
        assert!(
            metrics["sip_dropped_total"] + metrics["sip_parse_errors_total"] >= 1
                || name == "wsinv-ack",
            "{name}: a dropped message is counted"
        );
    }
}
#[test]
fn badaspec() {
    expect("badaspec", Some(400));
}
#[test]
fn badbranch() {
    expect("badbranch", Some(200));
}
#[test]
fn baddate() {
    expect("baddate", Some(400));
}
#[test]
fn baddn() {
    expect("baddn", Some(400));
}
#[test]
fn badinv01() {
    expect("badinv01", Some(400));
}
#[test]
fn badvers() {
    expect("badvers", Some(505));
}
#[test]
fn bcast() {
    expect("bcast", None); // a response to nothing of ours
}
#[test]
fn bext01() {
    expect("bext01", Some(420));
}
#[test]
fn bigcode() {
    expect("bigcode", None); // a response with an impossible code
}
#[test]
fn clerr() {
    expect("clerr", Some(400));
}
#[test]
fn cparam01() {
    expect("cparam01", Some(401));
}
#[test]
fn cparam02() {
    expect("cparam02", Some(401));
}
#[test]
fn dblreq() {
    expect("dblreq", Some(401)); // only the first message of the datagram counts
}
#[test]
fn esc01() {
    expect("esc01", Some(407));
}
#[test]
fn esc02() {
    expect("esc02", Some(501)); // an unknown (escaped) method name
}
#[test]
fn escnull() {
    expect("escnull", Some(401));
}
#[test]
fn escruri() {
    expect("escruri", Some(400));
}
#[test]
fn insuf() {
    expect("insuf", None); // no Call-ID/From/To: no response can be formed
}
#[test]
fn intmeth() {
    expect("intmeth", Some(501));
}
#[test]
fn inv2543() {
    expect("inv2543", Some(407));
}
#[test]
fn invut() {
    expect("invut", Some(415)); // unknown body type: 415 before authentication (RFC 3261 §8.2.3)
}
#[test]
fn longreq() {
    expect("longreq", Some(407));
}
#[test]
fn ltgtruri() {
    expect("ltgtruri", Some(400));
}
#[test]
fn lwsdisp() {
    expect("lwsdisp", Some(200));
}
#[test]
fn lwsruri() {
    expect("lwsruri", Some(400));
}
#[test]
fn lwsstart() {
    expect("lwsstart", Some(400));
}
#[test]
fn mcl01() {
    expect("mcl01", Some(400));
}
#[test]
fn mismatch01() {
    expect("mismatch01", Some(400));
}
#[test]
fn mismatch02() {
    expect("mismatch02", Some(501));
}
#[test]
fn mpart01() {
    expect("mpart01", Some(405)); // MESSAGE is known but not accepted
}
#[test]
fn multi01() {
    expect("multi01", Some(400));
}
#[test]
fn ncl() {
    expect("ncl", Some(400));
}
#[test]
fn noreason() {
    expect("noreason", None); // a response
}
#[test]
fn novelsc() {
    expect("novelsc", Some(416));
}
#[test]
fn quotbal() {
    expect("quotbal", Some(400));
}
#[test]
fn regaut01() {
    expect("regaut01", Some(401));
}
#[test]
fn regbadct() {
    expect("regbadct", Some(400));
}
#[test]
fn regescrt() {
    expect("regescrt", Some(401));
}
#[test]
fn scalar02() {
    expect("scalar02", Some(400));
}
#[test]
fn scalarlg() {
    expect("scalarlg", None); // a response
}
#[test]
fn sdp01() {
    expect("sdp01", Some(407));
}
#[test]
fn semiuri() {
    expect("semiuri", Some(200));
}
#[test]
fn transports() {
    expect("transports", Some(200));
}
#[test]
fn trws() {
    expect("trws", Some(400));
}
#[test]
fn unkscm() {
    expect("unkscm", Some(416));
}
#[test]
fn unksm2() {
    expect("unksm2", Some(401));
}
#[test]
fn unreason() {
    expect("unreason", None); // a response
}
#[test]
fn wsinv() {
    expect("wsinv", Some(481)); // it has a To tag: a request in a dialog srgate does not have
}
#[test]
fn zeromf() {
    expect("zeromf", Some(200)); // Max-Forwards 0 on an OPTIONS that ends at srgate: processed as usual (RFC 4475 asks this of endpoints)
}
