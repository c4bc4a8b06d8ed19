//! ICE-TCP (RFC 6544): a browser whose network drops UDP to srgate's media port (nftables
//! in a private network namespace) still reaches srgate, over the passive TCP candidate of
//! the answer: Chromium's echo call connects on a TCP pair and hears its own tone back
//! (by frequency) through srgate's whole media path, framed on the connection.

mod common;

use std::time::{Duration, Instant};

use common::TestDir;
use common::calls::{self, BROWSER_HZ, assert_heard};
use common::nft::{self, Faults};
use serde_json::json;

#[test]
fn a_browser_without_udp_reaches_srgate_over_ice_tcp() {
    if !common::phone::available()
        || !common::netns::available()
        || !nft::available()
        || !common::netns::enter(
            "a_browser_without_udp_reaches_srgate_over_ice_tcp",
            Duration::from_secs(180),
        )
    {
        return;
    }
    let dir = TestDir::new("ice-tcp");
    let tones = calls::tones(&dir, 60.0, 1.0);
    let srgate = calls::standalone_gateway(&dir, &[], "[webrtc]\nmax_conns_per_ip = 8\n");
    let _no_udp = Faults::udp_cut(srgate.config.webrtc_udp_port);
    let mut app = calls::logged_in(&srgate, &tones, "anna");
    app.must(json!({"cmd": "call", "callee": "echo"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 30}));
    let path = app.must(json!({"cmd": "ice_path", "timeout": 10}));
    assert_eq!(path["protocol"], "tcp", "the selected pair is TCP: {path}");
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    assert_heard(&heard, BROWSER_HZ, "the echo over ICE-TCP");
    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end", "timeout": 10}));
    let health = srgate.health().expect("/health");
    assert_eq!(health.calls, 0);
}

/// srgate's ICE-TCP listener keeps its limits: at most `max_conns_per_ip` connections from
/// one address (a ninth is closed at once, and one of the eight closing makes room), a
/// frame longer than any packet (or empty) closes its connection, and a connection srgate
/// never answers on is closed after its grace time however much its peer sends.
#[test]
fn ice_tcp_connections_are_limited_per_address_and_broken_framing_closes_them() {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    /// Whether srgate closed `conn` (EOF or reset) within 3 s.
    fn closed(conn: &mut TcpStream) -> bool {
        conn.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("socket");
        let mut byte = [0u8; 1];
        match conn.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    let dir = TestDir::new("ice-tcp-limits");
    let srgate = calls::standalone_gateway(&dir, &[], "[webrtc]\nmax_conns_per_ip = 8\n");
    let media = SocketAddr::from(([127, 0, 0, 1], srgate.config.webrtc_udp_port));
    let mut conns: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(media).expect("srgate takes ICE-TCP"))
        .collect();
    let mut ninth = TcpStream::connect(media).expect("accepted, then closed");
    assert!(
        closed(&mut ninth),
        "a ninth connection from one address is closed"
    );
    assert_eq!(srgate.metric("ice_tcp_refused_total"), 1);
    assert_eq!(srgate.metric("ice_tcp_connections"), 8);
    // a frame of 65 535 bytes is no packet srgate takes: the connection goes
    conns[0].write_all(&[0xff, 0xff, 1, 2, 3]).expect("write");
    assert!(
        closed(&mut conns[0]),
        "an oversized frame closes the connection"
    );
    // an empty frame too
    conns[1].write_all(&[0, 0]).expect("write");
    assert!(
        closed(&mut conns[1]),
        "an empty frame closes the connection"
    );
    // a well-framed packet nobody expects is dropped, the connection stays
    conns[2].write_all(&[0, 4, 1, 2, 3, 4]).expect("write");
    conns[2]
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("socket");
    let mut byte = [0u8; 1];
    assert!(
        matches!(conns[2].read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "no answer and no close for a stray packet"
    );
    // two connections went: a new one is taken again
    let mut again = TcpStream::connect(media).expect("connect");
    again
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("socket");
    assert!(
        matches!(again.read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "a connection is taken once others closed"
    );
    // conns[2] keeps sending packets nobody answers: they do not keep it open (10 s of
    // grace, swept every 2 s even while srgate is idle)
    #[allow(clippy::disallowed_methods)] // a test measures real time
    let start = Instant::now();
    let mut gone = None;
    for _ in 0..20 {
        let sent = conns[2].write_all(&[0, 4, 1, 2, 3, 4]).is_ok();
        conns[2]
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("socket");
        let read = conns[2].read(&mut byte);
        if !sent
            || matches!(read, Ok(0))
            || matches!(read, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        {
            gone = Some(start.elapsed());
            break;
        }
    }
    let gone = gone.expect("an unanswered connection is closed within 20 s");
    assert!(
        gone >= Duration::from_secs(7),
        "closed after its grace, not before: {gone:?}"
    );
    assert!(srgate.metric("ice_tcp_connections") < 8);
}
