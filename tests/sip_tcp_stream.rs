//! SIP over one TCP connection: a burst far larger than srgate's receive buffer is answered
//! message by message (nothing reset, nothing stuck), and an RFC 5626 CRLFCRLF ping gets
//! its CRLF pong.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Deadline, GatewayConfig, Srgate, TestDir};

fn options(i: usize, port: u16) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKburst{i}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:burst@127.0.0.1>;tag=b{i}\r\nTo: <sip:srgate@127.0.0.1>\r\n\
         Call-ID: burst-{i}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_burst_of_1600_options_on_one_connection_all_get_200() {
    let dir = TestDir::new("sip-tcp-burst");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let mut stream = TcpStream::connect(srgate.sip_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let port = stream.local_addr().unwrap().port();
    let burst: String = (0..1600).map(|i| options(i, port)).collect();
    assert!(
        burst.len() > 256 * 1024,
        "larger than srgate's receive buffer"
    );
    // Read while writing, so neither side's socket buffer blocks the other.
    let mut reader = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || stream.write_all(burst.as_bytes()));
    let mut got = Vec::new();
    let deadline = Deadline::after(Duration::from_secs(30));
    let mut buf = [0u8; 65536];
    while !deadline.passed() {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {
                if String::from_utf8_lossy(&got)
                    .matches("SIP/2.0 200 OK")
                    .count()
                    >= 1600
                {
                    break;
                }
            }
        }
    }
    writer.join().unwrap().expect("srgate took the whole burst");
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        text.matches("SIP/2.0 200 OK").count(),
        1600,
        "every OPTIONS answered"
    );
    assert!(text.contains("z9hG4bKburst1599"), "the last one too");
}

#[test]
fn a_crlf_keepalive_ping_gets_a_pong() {
    let dir = TestDir::new("sip-tcp-ping");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let mut stream = TcpStream::connect(srgate.sip_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.write_all(b"\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).expect("a pong within 3 s");
    assert_eq!(&buf[..n], b"\r\n");
}

/// A client that sends a request and closes at once gets no connection back to its
/// ephemeral port: the answer has nowhere to go and is dropped (a scanner cannot make
/// srgate dial out to addresses of its choosing).
#[test]
fn no_dial_back_to_a_client_that_closed() {
    let dir = TestDir::new("sip-tcp-no-dial-back");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let mut ports = Vec::new();
    for i in 0..5 {
        let mut stream = TcpStream::connect(srgate.sip_addr()).unwrap();
        let port = stream.local_addr().unwrap().port();
        stream.write_all(options(i, port).as_bytes()).unwrap();
        drop(stream);
        ports.push(port);
    }
    // srgate answers on its next turn; give it time to (not) dial
    std::thread::sleep(Duration::from_millis(500));
    let log = srgate.log();
    for port in ports {
        assert!(
            !log.contains(&format!("SIP TCP connect to 127.0.0.1:{port}")),
            "srgate dialled back to {port}:\n{log}"
        );
    }
    // each answer was dropped and counted, not sent down a new connection
    assert!(
        srgate.metric("tcp_send_dropped_total") >= 1,
        "the answers to the closed connections are counted as dropped"
    );
    assert!(srgate.health().is_some(), "srgate still answers");
}
