//! SIP over TLS. A phone (baresip, trusting a test CA) registers at srgate's
//! `[sip] tls_listen` over TLS, is called by an app user (headless Chromium) and calls
//! it, with audio checked by frequency both ways; a plaintext SIP request on the TLS port
//! gets nowhere (in a private network namespace). The proxy account registers at
//! Kamailio (its tls module) over TLS when Kamailio's certificate chains to `[tls] ca`,
//! takes an OPTIONS Kamailio relays to it over TLS, and does not register when the
//! certificate is signed by another authority.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use common::calls;
use common::phone::Phone;
use common::sip_phone::SipPhone;
use common::srgate::PROXY_ACCOUNT;
use common::tls::test_pki;
use common::{GatewayConfig, KAMAILIO, Kamailio, SIPP, Sipp, Srgate, TestDir, free_ports};

const APP: &str = "1001";

#[test]
fn a_phone_registers_calls_and_is_called_over_tls() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "a_phone_registers_calls_and_is_called_over_tls",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("sip-tls-phone");
    let pki = test_pki(dir.path(), "srgate");
    let tones = calls::tones(&dir, 40.0, 60.0);

    let [tls_port] = free_ports::<1>();
    let mut config = GatewayConfig::standalone();
    config.users = vec![("1006".into(), "1006pw".into())];
    // baresip 1.0 takes MD5 challenges only
    config.extra = format!(
        "[sip]\ndigest = md5\ntls_listen = 127.0.0.1:{tls_port}\n\
         [tls]\ncert = {}\nkey = {}\n",
        pki.cert.display(),
        pki.key.display()
    );
    let srgate = Srgate::start(config, dir.path());
    let tls_addr = format!("127.0.0.1:{tls_port}").parse().unwrap();

    // plaintext on the TLS port: no SIP answer comes back
    let mut plain = TcpStream::connect(tls_addr).expect("the TLS port listens");
    plain
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = plain.write_all(
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKp\r\n\
          From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: p\r\n\
          CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    );
    let mut buf = [0u8; 512];
    let answer = plain.read(&mut buf).unwrap_or(0);
    assert!(
        !buf[..answer].starts_with(b"SIP/2.0"),
        "plaintext SIP is not answered on the TLS port"
    );

    let sip = SipPhone::registered_tls(
        dir.path(),
        tls_addr,
        "1006",
        "1006pw",
        &tones.phone,
        &pki.ca,
        Duration::from_secs(10),
    );
    let url = format!("http://{}/", srgate.web_addr());
    let mut app = Phone::start(&url, &tones.browser);
    app.must(json!({"cmd": "login", "user": APP}));

    // app → the phone on TLS: srgate's INVITE goes over the phone's TLS connection
    calls::app_calls_phone(&mut app, &sip, "1006", 2);
    // the phone on TLS → app (srgate's Contact names the TLS port: the phone's BYE gets
    // there), and the phone hangs up
    calls::phone_calls_app(
        &mut app,
        &sip,
        &format!("sip:{APP}@{tls_addr};transport=tls"),
    );
    assert!(
        srgate.metric("sip_tcp_connections") >= 1,
        "the phone's TLS connection is counted"
    );
}

/// srgate at Kamailio over TLS: sip_svr = sip:127.0.0.1:PORT;transport=tls, trusting
/// `ca`, with its own `[sip] tls_listen` (where Kamailio reaches the account's contact).
fn tls_gateway(dir: &TestDir, kamailio: &Kamailio, ca: &std::path::Path) -> Srgate {
    let own = test_pki(dir.path(), "srgate");
    let [tls_listen] = free_ports::<1>();
    let mut config = GatewayConfig::proxy(kamailio.addr());
    config.sip_svr = format!(
        "sip:127.0.0.1:{};transport=tls",
        kamailio.tls_port.expect("Kamailio on TLS")
    );
    config.expires = 10;
    config.extra = format!(
        "[sip]\ntls_listen = 127.0.0.1:{tls_listen}\n\
         [tls]\ncert = {}\nkey = {}\nca = {}\n",
        own.cert.display(),
        own.key.display(),
        ca.display()
    );
    Srgate::start(config, dir.path())
}

#[test]
fn the_proxy_account_registers_over_tls_and_checks_the_certificate() {
    if !common::peers_available(&[KAMAILIO, SIPP]) || !common::kamailio::tls_available() {
        return;
    }
    let dir = TestDir::new("sip-tls-kamailio");
    let pbx = test_pki(dir.path(), "pbx");
    let [port, tls_port] = free_ports::<2>();
    let kamailio = Kamailio::start_tls(
        dir.path(),
        port,
        PROXY_ACCOUNT,
        (tls_port, &pbx.cert, &pbx.key),
    );
    let srgate = tls_gateway(&dir, &kamailio, &pbx.ca);
    assert!(
        srgate
            .wait_registered(true, Duration::from_secs(10))
            .is_some(),
        "srgate registers over TLS: {:?}\n----- Kamailio -----\n{}",
        srgate.health(),
        kamailio.output()
    );
    let log = kamailio.output();
    assert!(
        log.lines()
            .any(|l| l.contains("REQ REGISTER") && l.contains("proto=tls")),
        "the REGISTER came over TLS:\n{log}"
    );

    // Kamailio relays an OPTIONS for the account to srgate's contact, over TLS
    let run = Sipp::call(
        "options.xml",
        kamailio.addr(),
        &["-s", PROXY_ACCOUNT],
        dir.path(),
        Duration::from_secs(20),
    );
    run.assert_success("OPTIONS to sip:1000 through Kamailio, relayed over TLS");
    let log = kamailio.output();
    assert!(
        log.lines()
            .any(|l| l.contains("ROUTE OPTIONS to registered 1000") && l.contains("transport=tls")),
        "Kamailio routed the OPTIONS to srgate's TLS contact:\n{log}"
    );
    drop(srgate);

    // trusting another authority: no registration, and the log says why
    let other = test_pki(dir.path(), "other");
    let srgate = tls_gateway(&dir, &kamailio, &other.ca);
    assert!(
        srgate
            .wait_registered(true, Duration::from_secs(6))
            .is_none(),
        "srgate must not register with a certificate it cannot trust"
    );
    let log = srgate.log();
    assert!(
        log.contains("TLS with") && log.contains("certificate"),
        "srgate's log names the certificate problem:\n{log}"
    );
}
