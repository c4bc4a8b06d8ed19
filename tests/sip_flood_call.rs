//! A SIP flood while a call is up: one address sends srgate's SIP port 20 000 datagrams a
//! second (junk and INVITEs in turn) for several seconds, in the middle of a call between
//! headless Chromium (app user 1001, 440 Hz) and baresip registered as 1006 (1000 Hz).
//! The call's audio stays whole both ways (checked by frequency), an OPTIONS from a
//! third address srgate has never heard from is answered during the flood, the flooder gets no more than its
//! per-source allowance of answers, and srgate counts what it dropped. In a private
//! network namespace.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use common::calls;
use common::{Stopwatch, TestDir};

const APP: &str = "1001";
/// Datagrams a second the flooder aims at, and for how long at most.
const FLOOD_RATE: u64 = 20_000;
const FLOOD_FOR: Duration = Duration::from_secs(6);

/// What the flooder did: datagrams sent, answers it got, and how long it ran.
struct Flood {
    sent: u64,
    answers: u64,
    ran: Duration,
}

/// Floods `target` from 127.0.0.2 at [`FLOOD_RATE`] until `stop` (or [`FLOOD_FOR`]):
/// every other datagram is junk, the others INVITEs with fresh Call-IDs.
fn flood(target: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Flood> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.2:0").expect("127.0.0.2 is on loopback");
        socket.set_nonblocking(true).expect("non-blocking");
        let local = socket.local_addr().expect("bound");
        let start = Stopwatch::start();
        let (mut sent, mut answers) = (0u64, 0u64);
        let mut buf = [0u8; 4096];
        let mut junk = [0u8; 300];
        // bounded: at most FLOOD_FOR, in 5 ms ticks
        while !stop.load(Ordering::SeqCst) && start.elapsed() < FLOOD_FOR {
            // catch up to the rate: what should have been sent by now
            let due = (start.elapsed().as_micros() as u64 * FLOOD_RATE / 1_000_000).min(sent + 500);
            while sent < due {
                if sent.is_multiple_of(2) {
                    for (i, b) in junk.iter_mut().enumerate() {
                        *b = (sent as u8).wrapping_mul(31).wrapping_add(i as u8);
                    }
                    let _ = socket.send_to(&junk, target);
                } else {
                    let invite = format!(
                        "INVITE sip:1006@{target} SIP/2.0\r\n\
                         Via: SIP/2.0/UDP {local};branch=z9hG4bKf{sent}\r\n\
                         Max-Forwards: 70\r\n\
                         From: <sip:666@{local}>;tag=f{sent}\r\n\
                         To: <sip:1006@{target}>\r\n\
                         Call-ID: flood-{sent}\r\n\
                         CSeq: 1 INVITE\r\n\
                         Contact: <sip:666@{local}>\r\n\
                         Content-Length: 0\r\n\r\n"
                    );
                    let _ = socket.send_to(invite.as_bytes(), target);
                }
                sent += 1;
            }
            while socket.recv_from(&mut buf).is_ok() {
                answers += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let ran = start.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        while socket.recv_from(&mut buf).is_ok() {
            answers += 1;
        }
        Flood { sent, answers, ran }
    })
}

/// Sends OPTIONS from `from` and waits for its 200 (up to three tries, 1 s each).
fn options_answered(from: &str, target: SocketAddr) -> bool {
    let socket = UdpSocket::bind((from, 0)).expect("an address on loopback");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let local = socket.local_addr().expect("bound");
    for attempt in 0..3 {
        let options = format!(
            "OPTIONS sip:{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bKprobe{attempt}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@{local}>;tag=p{attempt}\r\n\
             To: <sip:{target}>\r\n\
             Call-ID: probe-{attempt}\r\n\
             CSeq: {} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            attempt + 1
        );
        socket.send_to(options.as_bytes(), target).expect("send");
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && buf[..n].starts_with(b"SIP/2.0 200")
        {
            return true;
        }
    }
    false
}

#[test]
fn a_sip_flood_leaves_the_call_up_and_options_answered() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "a_sip_flood_leaves_the_call_up_and_options_answered",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("sip-flood-call");
    let tones = calls::tones(&dir, 40.0, 60.0);
    let (srgate, sip, mut app) = calls::standalone_pair(&dir, &tones, APP, "");
    let gw = srgate.sip_addr();
    app.must(json!({"cmd": "call", "callee": "1006"}));
    app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));

    let dropped_before = srgate.metric("sip_flood_dropped_total");
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(gw, stop.clone());
    std::thread::sleep(Duration::from_millis(500)); // well into the flood
    // from an address srgate has never heard of (not the phone's, not the flooder's): no
    // trust earned, only the per-source fairness of the flood limits
    let answered = options_answered("127.0.0.3", gw);
    let heard = app.must(json!({"cmd": "measure", "seconds": 3}));
    stop.store(true, Ordering::SeqCst);
    let f = flooder.join().expect("the flooder ends");

    let rate = f.sent as f64 / f.ran.as_secs_f64();
    eprintln!(
        "flood: {} datagrams in {:.1} s ({rate:.0}/s), {} answers",
        f.sent,
        f.ran.as_secs_f64(),
        f.answers
    );
    assert!(
        rate >= 0.9 * FLOOD_RATE as f64,
        "the flood reached its rate: {rate:.0}/s"
    );
    assert!(
        answered,
        "an OPTIONS from a stranger's address is answered during the flood"
    );
    calls::assert_heard(&heard, calls::PHONE_HZ, "through the flood");
    // the flooder's allowance: a burst of 200 and 50 a second, far below what it sent
    let allowance = 200 + 50 * (f.ran.as_secs() + 1);
    assert!(
        f.answers <= allowance,
        "the flooder got {} answers (allowance {allowance})",
        f.answers
    );
    // what got past the kernel's socket buffer was dropped unread, but the allowance
    let dropped = srgate.metric("sip_flood_dropped_total") - dropped_before;
    assert!(
        dropped >= f.sent * 9 / 10,
        "srgate counted {dropped} of {} datagrams as flood",
        f.sent
    );
    assert_eq!(
        srgate.health().expect("health").calls,
        1,
        "the call is still up"
    );

    app.must(json!({"cmd": "hangup"}));
    app.must(json!({"cmd": "wait_end"}));
    calls::assert_phone_heard_browser(&sip, "through the flood");
}
