//! What one client may hold of srgate's connections: at most 32 SIP TCP connections per
//! address (sip_svr's address is exempt), a SIP connection that delivers no whole message
//! within 10 s (only CRLF keepalives) is closed, and an API connection is closed 5 s after
//! its accept however slowly it trickles its request (no slowloris).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Deadline, GatewayConfig, Srgate, Stopwatch, TestDir};

/// The cap srgate applies to one address.
const PER_ADDRESS: usize = 32;

fn options(i: usize, port: u16) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKcap{i}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:cap@127.0.0.1>;tag=c{i}\r\nTo: <sip:srgate@127.0.0.1>\r\n\
         Call-ID: cap-{i}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends one OPTIONS on `stream`; what came back within `within` (empty when srgate closed
/// the connection or said nothing).
fn ask(stream: &mut TcpStream, i: usize, within: Duration) -> String {
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    // srgate may have closed the connection already: a failed write is an answer too
    if stream.write_all(options(i, port).as_bytes()).is_err() {
        return String::new();
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Deadline::after(within);
    while !deadline.passed() && !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            let answer = ask(&mut s, i, Duration::from_secs(5));
            assert!(
                answer.starts_with("SIP/2.0 200"),
                "connection {i} is served: {answer:?}"
            );
            s
        })
        .collect()
}

#[test]
fn one_address_holds_at_most_32_sip_tcp_connections() {
    let dir = TestDir::new("sip-tcp-per-address");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let mut held = open(srgate.sip_addr(), PER_ADDRESS);

    let mut extra = TcpStream::connect(srgate.sip_addr()).unwrap();
    let answer = ask(&mut extra, 100, Duration::from_secs(3));
    assert!(
        answer.is_empty(),
        "the 33rd connection from 127.0.0.1 is refused: {answer:?}"
    );

    // the ones held are still served, and a closed one frees its place
    assert!(ask(&mut held[0], 200, Duration::from_secs(5)).starts_with("SIP/2.0 200"));
    drop(held.pop());
    let again = common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let mut s = TcpStream::connect(srgate.sip_addr()).ok()?;
        ask(&mut s, 300, Duration::from_secs(1))
            .starts_with("SIP/2.0 200")
            .then_some(s)
    });
    assert!(again.is_some(), "a freed place is given again");
}

#[test]
fn sip_svr_address_is_exempt_from_the_per_address_cap() {
    let dir = TestDir::new("sip-tcp-sip-svr-exempt");
    // a sip_svr on 127.0.0.1 that never answers (srgate's REGISTERs go nowhere)
    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let srgate = Srgate::start(GatewayConfig::proxy(pbx.local_addr().unwrap()), dir.path());
    let held = open(srgate.sip_addr(), PER_ADDRESS + 8);
    assert_eq!(held.len(), PER_ADDRESS + 8);
}

#[test]
fn an_api_client_trickling_its_request_is_cut_off_after_the_timeout() {
    let dir = TestDir::new("api-slowloris");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let mut api = TcpStream::connect(srgate.config.api_addr()).unwrap();
    api.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let watch = Stopwatch::start();
    let request = b"GET /health HTTP/1.1\r\nHost: srgate\r\nX-Slow: ";
    let mut closed_after = None;
    let deadline = Deadline::after(Duration::from_secs(15));
    let mut sent = 0;
    let mut buf = [0u8; 256];
    while !deadline.passed() {
        // one byte every 300 ms: never idle for long, never done
        let byte = request.get(sent).copied().unwrap_or(b'x');
        if api.write_all(&[byte]).is_err() {
            closed_after = Some(watch.elapsed());
            break;
        }
        sent += 1;
        match api.read(&mut buf) {
            Ok(0) => {
                closed_after = Some(watch.elapsed());
                break;
            }
            Ok(_) => panic!("an unfinished request got an answer"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed_after = Some(watch.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let closed_after = closed_after.expect("srgate closed the trickling connection");
    assert!(
        closed_after >= Duration::from_secs(4) && closed_after < Duration::from_secs(9),
        "closed {closed_after:?} after accept (API timeout 5 s)"
    );
}

#[test]
fn a_sip_connection_that_never_sends_a_message_is_closed() {
    let dir = TestDir::new("sip-tcp-first-message");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let addr = srgate.sip_addr();
    // a client that only pings (RFC 5626 CRLFs) and one that talks first
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut talker = TcpStream::connect(addr).unwrap();
    assert!(ask(&mut talker, 0, Duration::from_secs(5)).starts_with("SIP/2.0 200"));
    silent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let watch = Stopwatch::start();
    let deadline = Deadline::after(Duration::from_secs(20));
    let mut buf = [0u8; 64];
    let closed_after = loop {
        assert!(
            !deadline.passed(),
            "srgate kept a connection that said nothing for 20 s"
        );
        let _ = silent.write_all(b"\r\n\r\n");
        match silent.read(&mut buf) {
            Ok(0) => break watch.elapsed(),
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                break watch.elapsed();
            }
            _ => {} // a pong, or nothing yet
        }
    };
    assert!(
        closed_after >= Duration::from_secs(9) && closed_after <= Duration::from_secs(14),
        "closed {closed_after:?} after the connect (deadline 10 s)"
    );
    // the connection that delivered a message is still served
    assert!(
        ask(&mut talker, 1, Duration::from_secs(5)).starts_with("SIP/2.0 200"),
        "a connection that talked stays open"
    );
}
