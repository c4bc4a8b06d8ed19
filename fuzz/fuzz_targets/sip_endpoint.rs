//! Fuzzes the whole sans-IO SIP endpoint and the browser protocol parser with arbitrary
//! datagrams: standalone (registrar) and proxy mode, a datagram from the trusted sip_svr
//! address and one from a stranger, then timers. Any panic is a bug, and every answer must
//! be a SIP response.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use srgate::sip::auth::Algorithm;
use srgate::sip::endpoint::{Endpoint, EndpointConfig, ProxyAccount, Server, Transport};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn config(proxy: bool) -> EndpointConfig {
    let pbx: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    EndpointConfig {
        local: "127.0.0.1:5086".parse().unwrap(),
        tls_local: None,
        domain: "127.0.0.1".into(),
        server: proxy.then(|| Server {
            addr: pbx,
            transport: Transport::Udp,
            host_port: "127.0.0.1:5060".into(),
        }),
        proxy: proxy.then(|| ProxyAccount {
            user: "1000".into(),
            password: "1234".into(),
            expires: 300,
        }),
        users: vec![("1001".into(), "pw1001".into())],
        digest: vec![Algorithm::Md5, Algorithm::Sha256],
        seed: [5; 32],
        user_agent: "srgate/fuzz".into(),
        groups: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let now = base();
    for proxy in [false, true] {
        let mut ep = Endpoint::new(config(proxy), now);
        ep.handle_timeout(now);
        while ep.poll_transmit().is_some() {}
        for from in ["127.0.0.1:5060", "192.0.2.9:5062"] {
            let from: SocketAddr = from.parse().unwrap();
            ep.handle_receive(now, Transport::Udp, from, data);
            ep.handle_receive(now, Transport::Tcp, from, data);
            while let Some(t) = ep.poll_transmit() {
                assert!(t.payload.starts_with(b"SIP/2.0 ") || t.payload.starts_with(b"REGISTER "));
            }
        }
        ep.handle_timeout(now + Duration::from_secs(40));
        while ep.poll_transmit().is_some() {}
        ep.shutdown(now + Duration::from_secs(41));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = srgate::signal::protocol::parse(text);
    }
});
