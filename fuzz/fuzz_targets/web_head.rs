//! Fuzzes the web listener's HTTP side without sockets (`io::read_head`): request
//! heads of a plain and a TLS connection under several Origin policies. Invariants: more
//! is read only while the head is incomplete and within 8 KiB; an answer is a whole HTTP
//! response whose Content-Length is its body; an upgrade comes only for `GET /ws` with a
//! head inside the input, and its 101 carries a 28-character accept key; a more liberal
//! Origin policy never refuses what a stricter one accepts; bytes after a complete head
//! do not change the outcome.
//!
//! Run: `cargo +nightly fuzz run web_head fuzz/seeds/web_head`
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use srgate::io::{Head, WebPolicy, read_head};

fuzz_target!(|data: &[u8]| {
    let peer: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    let strict = WebPolicy {
        allowed_origins: vec!["https://app.example".into()],
        loopback_host_only: false,
    };
    let own = WebPolicy::default();
    let any = WebPolicy {
        allowed_origins: vec!["*".into()],
        loopback_host_only: false,
    };
    let loopback = WebPolicy {
        allowed_origins: Vec::new(),
        loopback_host_only: true,
    };
    for tls in [false, true] {
        let heads: Vec<Head> = [&strict, &own, &any, &loopback]
            .iter()
            .map(|policy| {
                let head = read_head(data, tls, peer, policy);
                check(data, &head);
                head
            })
            .collect();
        // "*" admits whatever the others admit
        if heads.iter().any(|h| matches!(h, Head::Upgrade { .. })) {
            assert!(matches!(heads[2], Head::Upgrade { .. }));
        }
        // open login on loopback is at most what the page's own origin admits
        if matches!(heads[3], Head::Upgrade { .. }) {
            assert_eq!(heads[3], heads[1]);
        }
        if !matches!(heads[1], Head::Partial) {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\x81\x85more bytes");
            assert_eq!(read_head(&longer, tls, peer, &own), heads[1]);
        }
    }
});

fn check(data: &[u8], head: &Head) {
    match head {
        Head::Partial => assert!(data.len() <= 8192),
        Head::Reply(answer) => {
            assert!(answer.starts_with(b"HTTP/1.1 "));
            let split = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a head")
                + 4;
            let head = std::str::from_utf8(&answer[..split]).expect("ASCII head");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("Content-Length")
                .parse()
                .unwrap();
            assert_eq!(length, answer.len() - split);
        }
        Head::Upgrade {
            response, head_len, ..
        } => {
            assert!(*head_len <= data.len());
            // httparse skips empty lines before the request line
            assert!(data.trim_ascii_start().starts_with(b"GET "));
            assert!(data[..*head_len].ends_with(b"\n"));
            assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(response.ends_with("\r\n\r\n"));
            let key = response
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Accept: "))
                .expect("accept key");
            assert_eq!(key.len(), 28);
        }
    }
}
