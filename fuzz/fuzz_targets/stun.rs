//! Fuzzes what reads STUN on the shared WebRTC port: the demultiplexer (`classify`,
//! `route`, `local_ufrag`), the zero-copy `wire::stun::Message` view with its attribute
//! iterator, and the ICE-lite agent's `handle_stun`, fed the datagram as it came and
//! re-signed as a Binding request with a valid MESSAGE-INTEGRITY and FINGERPRINT (so the
//! agent's code past the integrity check is reached). Invariants: the classes follow RFC
//! 7983's first-byte ranges, attributes lie inside the message, a routing ufrag is
//! non-empty without ':', and every datagram the agent sends is a well-formed STUN
//! message to the address the check came from, from a local candidate.
//!
//! Run: `cargo +nightly fuzz run stun fuzz/seeds/stun`
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use srgate::sdp::IceCredentials;
use srgate::webrtc::demux::{Datagram, Route, classify, local_ufrag, route};
use srgate::webrtc::ice::IceLite;
use srgate::wire::stun::{self, HEADER_LEN, MAGIC_COOKIE, Message};

const LOCAL_UFRAG: &str = "srgT";
const LOCAL_PWD: &str = "0123456789abcdefghijkl";
const REMOTE_UFRAG: &str = "brWs";
const REMOTE_PWD: &str = "mnopqrstuvwxyz012345ab";

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    demux(data);
    view(data);
    let signed = sign(data);
    view(&signed);
    assert!(Message::new_checked(&signed[..]).is_ok());
    ice(&[data, &signed]);
});

fn demux(data: &[u8]) {
    match classify(data) {
        Datagram::Stun(b) => assert!(b.len() == data.len() && data[0] <= 3),
        Datagram::Dtls(_) => assert!((20..=63).contains(&data[0])),
        Datagram::Rtp(_) => assert!((128..=191).contains(&data[0]) && data.len() >= 2),
        Datagram::Rtcp(_) => {
            assert!((128..=191).contains(&data[0]) && (192..=223).contains(&data[1]))
        }
        Datagram::Other(_) => {}
    }
    match route(data) {
        Route::LocalUfrag(u) => {
            assert!(!u.is_empty() && !u.contains(':'));
            assert_eq!(local_ufrag(data), Some(u));
            assert!(matches!(classify(data), Datagram::Stun(_)));
        }
        Route::FiveTuple => {}
    }
}

fn view(data: &[u8]) {
    let Ok(m) = Message::new_checked(data) else {
        return;
    };
    assert_eq!(data.len() % 4, 0);
    assert!(data.len() >= HEADER_LEN);
    assert_eq!(m.transaction_id().len(), 12);
    assert_eq!(
        m.is_binding_request(),
        m.message_type() == stun::BINDING_REQUEST
    );
    let mut covered = HEADER_LEN;
    for (_, value) in m.attributes() {
        covered += 4 + value.len().div_ceil(4) * 4;
        assert!(covered <= data.len() + 3);
    }
    assert_eq!(
        m.username(),
        Message::new_checked(data).unwrap().into_username()
    );
}

/// The attributes of `data` (after a header's worth of bytes, cut to whole TLVs) in a
/// Binding request with USERNAME from the input, then MESSAGE-INTEGRITY keyed with the
/// local password and FINGERPRINT (RFC 8489 §14.5, §14.7).
fn sign(data: &[u8]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0, 0];
    m.extend_from_slice(&MAGIC_COOKIE);
    let mut tid = [0u8; 12];
    for (t, b) in tid.iter_mut().zip(data.iter().skip(8)) {
        *t = *b;
    }
    m.extend_from_slice(&tid);
    let mut rest = data.get(HEADER_LEN..).unwrap_or_default();
    while rest.len() >= 4 && m.len() < 1200 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let Some(value) = rest.get(4..4 + len) else {
            break;
        };
        // integrity and fingerprint come last, added below
        if typ != 0x0008 && typ != 0x8028 {
            m.extend_from_slice(&rest[..4 + len]);
            m.resize(m.len().div_ceil(4) * 4, 0);
        }
        let _ = value;
        rest = rest.get(4 + len.div_ceil(4) * 4..).unwrap_or_default();
    }
    let set_len = |m: &mut Vec<u8>, extra: usize| {
        let len = u16::try_from(m.len() - HEADER_LEN + extra).unwrap_or(u16::MAX);
        m[2..4].copy_from_slice(&len.to_be_bytes());
    };
    set_len(&mut m, 24);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(LOCAL_PWD.as_bytes()).unwrap();
    mac.update(&m);
    m.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    m.extend_from_slice(&mac.finalize().into_bytes());
    set_len(&mut m, 8);
    let crc = crc32(&m) ^ 0x5354_554e;
    m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn ice(datagrams: &[&[u8]]) {
    let now = base();
    let local = IceCredentials {
        ufrag: LOCAL_UFRAG.into(),
        pwd: LOCAL_PWD.into(),
    };
    let remote = IceCredentials {
        ufrag: REMOTE_UFRAG.into(),
        pwd: REMOTE_PWD.into(),
    };
    let candidates: [SocketAddr; 2] = [
        "192.0.2.1:40000".parse().unwrap(),
        "[2001:db8::1]:40000".parse().unwrap(),
    ];
    let mut agent = IceLite::new(now, &local, &remote, &candidates).expect("agent");
    let from: [SocketAddr; 2] = [
        "198.51.100.7:50000".parse().unwrap(),
        "[2001:db8::7]:50000".parse().unwrap(),
    ];
    for (i, d) in datagrams.iter().enumerate() {
        for (f, l) in from.iter().zip(&candidates) {
            let t = now + Duration::from_millis(10 * i as u64);
            let passed = agent.handle_stun(t, *f, *l, d);
            if passed {
                assert_eq!(agent.local_for(*f), Some(*l));
            }
            while let Some(tx) = agent.poll_transmit() {
                assert_eq!(tx.destination, *f);
                assert!(candidates.contains(&tx.source));
                assert!(Message::new_checked(&tx.contents[..]).is_ok(), "{tx:?}");
            }
            while agent.poll_event().is_some() {}
        }
    }
    agent.handle_timeout(now + Duration::from_secs(31));
    while agent.poll_transmit().is_some() {}
    while agent.poll_event().is_some() {}
    let _ = (
        agent.send_address(),
        agent.had_consent(),
        agent.poll_timeout(),
    );
}
