//! Fuzzes the whole sans-IO SIP endpoint and the browser protocol parser with arbitrary
//! datagrams: standalone (registrar) and proxy mode, a datagram from the trusted sip_svr
//! address and one from a stranger, then timers. Every incoming call the endpoint offers
//! (ring group 301's branches included) gets the call layer's verbs in an order the input
//! picks (ring, claim, answer, reject, 488, hang up, early media: a group's previews),
//! then the datagram comes again (a CANCEL, a BYE, a retransmission). In standalone mode
//! an app user's call is also placed inside srgate (to the group, an app user or a SIP
//! user, as the input picks), its branches driven the same way and the caller's side
//! hung up or keyed. Any panic is a bug, and everything sent must be a SIP response or
//! one of srgate's own requests.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use srgate::sip::auth::Algorithm;
use srgate::sip::endpoint::{
    Endpoint, EndpointConfig, Event, OutgoingCall, ProxyAccount, Reach, Server, SipCallId,
    Transport,
};

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
        groups: {
            let mut groups = srgate::config::Groups::default();
            groups.add("301", "app:anna, app:ben, sip:3011").unwrap();
            groups.add("3[02-99]", "app:flat{n}").unwrap();
            groups
        },
        // session timers on: INVITEs, 422s, refreshes and their answers are fuzzed too
        session_expires: 1800,
    }
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

/// What srgate may send: responses, and its own requests.
fn sendable(payload: &[u8]) -> bool {
    ["SIP/2.0 ", "REGISTER ", "BYE ", "CANCEL ", "ACK ", "INFO "]
        .iter()
        .any(|p| payload.starts_with(p.as_bytes()))
}

/// The call layer's verbs on every call offered, in an order `data` picks.
fn drive_calls(ep: &mut Endpoint, now: Instant, data: &[u8]) {
    let offered: Vec<_> = std::iter::from_fn(|| ep.poll_event())
        .filter_map(|e| match e {
            Event::IncomingCall { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    for (i, id) in offered.iter().enumerate() {
        let pick = data
            .get(data.len().saturating_sub(1 + i))
            .copied()
            .unwrap_or(0);
        match pick % 8 {
            0 => ep.ring(now, *id),
            7 => ep.early_media(now, *id, SDP),
            1 => ep.claim(*id),
            2 => ep.answer(now, *id, SDP),
            3 => ep.reject(now, *id, 486),
            4 => ep.reject_offer(now, *id, "no common codec"),
            5 => ep.hangup(now, *id),
            _ => {
                ep.claim(*id);
                ep.answer(now, *id, SDP);
                ep.info(now, *id, '#', 160);
            }
        }
    }
    while ep.poll_event().is_some() {}
}

/// An app user's call placed inside srgate (standalone), driven as the input picks.
fn internal_call(ep: &mut Endpoint, now: Instant, data: &[u8]) {
    let pick = data.first().copied().unwrap_or(0);
    let callee = ["301", "anna", "3011", "flat7", "305"][usize::from(pick % 5)];
    let id = SipCallId(7000 + u64::from(pick));
    let call = OutgoingCall {
        id,
        callee: callee.into(),
        caller: "anna".into(),
        display_name: None,
        sdp: SDP.into(),
        headers: vec![("X-ArInfo".into(), "fuzz".into())],
        reach: match pick >> 6 {
            0 => Reach::Phone,
            1 | 2 => Reach::GroupOrPhone,
            _ => Reach::App,
        },
        account: None,
    };
    if ep.start_call(now, call).is_err() {
        return;
    }
    drive_calls(ep, now, data);
    match pick % 3 {
        0 => ep.hangup(now, id),
        1 => ep.info(now, id, '5', 160),
        _ => ep.cancel_elsewhere(now, id),
    }
    drive_calls(ep, now, data);
    ep.hangup(now, id);
    while ep.poll_event().is_some() {}
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
            drive_calls(&mut ep, now, data);
            ep.handle_receive(now, Transport::Udp, from, data);
            drive_calls(&mut ep, now, data);
            while let Some(t) = ep.poll_transmit() {
                assert!(
                    sendable(&t.payload),
                    "{:?}",
                    String::from_utf8_lossy(&t.payload)
                );
            }
        }
        if !proxy {
            internal_call(&mut ep, now, data);
        }
        ep.handle_timeout(now + Duration::from_secs(40));
        while ep.poll_transmit().is_some() {}
        ep.shutdown(now + Duration::from_secs(41));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = srgate::signal::protocol::parse(text);
    }
});
