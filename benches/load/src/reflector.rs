//! The floor: a bare userspace UDP relay with srgate's own `recvmmsg`/`sendmmsg` batches
//! and nothing else. Like srgate it has one socket toward the browsers ("A") and one per
//! call toward the phone ("B"): a datagram on A from browser i leaves on B_i for phone i,
//! a datagram on B_i leaves on A for browser i. It runs as its own process (its CPU time
//! is read from `/proc` like srgate's) and is set up over stdin/stdout:
//!
//! ```text
//! reflector → A <port>
//! harness   → call <browser addr> <phone addr>     (one line per call)
//! reflector → B <port>                             (the call's B socket)
//! harness   → go
//! ```
//! after `go` it relays until killed.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use srgate::io::sys::{RecvBatch, SendBatch};

const A: Token = Token(usize::MAX - 1);
const BATCH: usize = 64;
const SLOT: usize = 2048;

pub fn run() -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = io::stdout().lock();
    let poll = Poll::new()?;
    let mut a = UdpSocket::bind("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()))?;
    poll.registry().register(&mut a, A, Interest::READABLE)?;
    writeln!(out, "A {}", a.local_addr()?.port())?;
    out.flush()?;

    let mut by_browser: HashMap<SocketAddr, usize> = HashMap::new();
    let mut calls: Vec<(UdpSocket, SocketAddr, SocketAddr)> = Vec::new();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match words.next() {
            Some("call") => {
                let parse = |w: Option<&str>| -> io::Result<SocketAddr> {
                    w.and_then(|w| w.parse().ok())
                        .ok_or_else(|| io::Error::other(format!("bad line: {line}")))
                };
                let browser = parse(words.next())?;
                let phone = parse(words.next())?;
                let std = StdUdpSocket::bind("127.0.0.1:0")?;
                std.set_nonblocking(true)?;
                let mut b = UdpSocket::from_std(std);
                poll.registry()
                    .register(&mut b, Token(calls.len()), Interest::READABLE)?;
                writeln!(out, "B {}", b.local_addr()?.port())?;
                out.flush()?;
                by_browser.insert(browser, calls.len());
                calls.push((b, browser, phone));
            }
            Some("go") => break,
            _ => return Err(io::Error::other(format!("bad line: {line}"))),
        }
    }
    drop(out);
    relay(poll, a, by_browser, calls)
}

fn relay(
    mut poll: Poll,
    a: UdpSocket,
    by_browser: HashMap<SocketAddr, usize>,
    calls: Vec<(UdpSocket, SocketAddr, SocketAddr)>,
) -> io::Result<()> {
    let mut events = Events::with_capacity(1024);
    let mut rx = RecvBatch::new(BATCH, SLOT);
    let mut tx = SendBatch::new(BATCH, SLOT);
    let afd = a.as_raw_fd();
    // runs until the harness kills the process
    loop {
        poll.poll(&mut events, None)?;
        for event in &events {
            if event.token() == A {
                // browser → phone: each datagram leaves on its call's own socket
                while rx.recv(afd).is_ok() {
                    for i in 0..rx.len() {
                        let Some((Some(from), data, _)) = rx.get(i) else {
                            continue;
                        };
                        if let Some(&call) = by_browser.get(&from) {
                            let (b, _, phone) = &calls[call];
                            let _ = b.send_to(data, *phone);
                        }
                    }
                }
            } else if let Some((b, browser, _)) = calls.get(event.token().0) {
                // phone → browser: batched on A
                while rx.recv(b.as_raw_fd()).is_ok() {
                    for i in 0..rx.len() {
                        let Some((_, data, _)) = rx.get(i) else {
                            continue;
                        };
                        if tx.is_full() {
                            tx.flush(afd);
                        }
                        let n = data.len();
                        tx.slot()[..n].copy_from_slice(data);
                        tx.commit(*browser, n);
                    }
                }
            }
        }
        if !tx.is_empty() {
            tx.flush(afd);
        }
    }
}
