//! The proxy account over TCP: when sip_svr closes the connection a REGISTER is waiting on,
//! that attempt fails at once and srgate tries again after its first backoff (2 s), not
//! after Timer F (32 s).

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{Deadline, GatewayConfig, Srgate, Stopwatch, TestDir};

/// Accepts srgate's next connection and reads one whole REGISTER head from it.
fn next_register(listener: &TcpListener, within: Duration) -> Option<(TcpStream, String)> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Deadline::after(within);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if deadline.passed() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !deadline.passed() && !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    text.starts_with("REGISTER ").then_some((stream, text))
}

#[test]
fn a_register_on_a_connection_sip_svr_closes_is_retried_after_the_backoff() {
    let dir = TestDir::new("sip-tcp-proxy-closed");
    let pbx = TcpListener::bind("127.0.0.1:0").unwrap();
    let pbx_addr = pbx.local_addr().unwrap();
    let mut config = GatewayConfig::proxy(pbx_addr);
    config.sip_svr = format!("sip:127.0.0.1:{};transport=tcp", pbx_addr.port());
    let _srgate = Srgate::start(config, dir.path());

    let (first, text) =
        next_register(&pbx, Duration::from_secs(10)).expect("srgate connects and registers");
    assert!(text.contains("SIP/2.0/TCP"), "{text}");
    // sip_svr goes away without answering
    let watch = Stopwatch::start();
    drop(first);

    let (_second, _) =
        next_register(&pbx, Duration::from_secs(20)).expect("srgate registers again");
    let waited = watch.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "retried {waited:?} after the close (backoff 2 s, Timer F would be 32 s)"
    );
}
