//! The browser side of a reflector run: the same marked PCMU frames at the same rate, in
//! plain RTP padded to the size of srgate's SRTP packets (the 10-byte auth tag), one UDP
//! socket per call.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::payload::{self, FRAME, Mark};
use crate::stats::{self, Echo, Rtt, Totals};

const HEADER: usize = 12;
const TAG: usize = 10;

struct Peer {
    udp: UdpSocket,
    next_send: Instant,
    seq: u32,
    echo: Echo,
}

pub struct PlainBrowsers {
    poll: Poll,
    events: Events,
    peers: Vec<Peer>,
    to: SocketAddr,
    tone: [u8; FRAME],
    epoch: Instant,
    rtt: Rtt,
    buf: Vec<u8>,
    pub late_sends: u64,
}

impl PlainBrowsers {
    /// `calls` sockets, not sending until [`PlainBrowsers::start`].
    pub fn new(calls: usize) -> io::Result<PlainBrowsers> {
        let poll = Poll::new()?;
        let now = Instant::now();
        let mut peers = Vec::with_capacity(calls);
        for i in 0..calls {
            let mut udp =
                UdpSocket::bind("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()))?;
            poll.registry()
                .register(&mut udp, Token(i), Interest::READABLE)?;
            peers.push(Peer {
                udp,
                next_send: now,
                seq: 0,
                echo: Echo::default(),
            });
        }
        Ok(PlainBrowsers {
            poll,
            events: Events::with_capacity(4096),
            peers,
            to: SocketAddr::from(([127, 0, 0, 1], 0)),
            tone: payload::tone_frame(),
            epoch: now,
            rtt: Rtt::default(),
            buf: vec![0; 2048],
            late_sends: 0,
        })
    }

    pub fn addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.peers.iter().map(|p| p.udp.local_addr()).collect()
    }

    /// Starts sending to `to`, the calls spread over one 20 ms period.
    pub fn start(&mut self, to: SocketAddr) {
        self.to = to;
        let now = Instant::now();
        let n = self.peers.len().max(1) as u32;
        for (i, p) in self.peers.iter_mut().enumerate() {
            p.next_send = now + Duration::from_millis(20) * i as u32 / n;
        }
    }

    pub fn totals(&self) -> Totals {
        Totals::sum(self.peers.iter().map(|p| &p.echo))
    }

    pub fn take_rtt(&mut self) -> Rtt {
        std::mem::take(&mut self.rtt)
    }

    pub fn turn(&mut self, wait: Duration) -> io::Result<()> {
        self.poll.poll(&mut self.events, Some(wait))?;
        for event in &self.events {
            let Some(p) = self.peers.get_mut(event.token().0) else {
                continue;
            };
            // bounded: at most 1 000 datagrams per wake of one socket
            for _ in 0..1000 {
                let Ok((n, _)) = p.udp.recv_from(&mut self.buf) else {
                    break;
                };
                let Some(frame) = self.buf.get(HEADER..n - TAG.min(n)) else {
                    continue;
                };
                let Some((mark, intact)) = payload::read(frame, &self.tone) else {
                    continue;
                };
                p.echo.on_receive(mark.seq);
                if !intact || mark.call != event.token().0 as u32 {
                    p.echo.damaged += 1;
                }
                let now_us = Instant::now().duration_since(self.epoch).as_micros() as u64;
                self.rtt.add(now_us.saturating_sub(mark.sent_us));
            }
        }
        let now = Instant::now();
        let mut packet = [0u8; HEADER + FRAME + TAG];
        for (i, p) in self.peers.iter_mut().enumerate() {
            if now < p.next_send {
                continue;
            }
            let (late, next) = stats::pace(p.next_send, now);
            self.late_sends += u64::from(late);
            p.next_send = next;
            packet[0] = 0x80;
            packet[1] = 0; // PCMU
            packet[2..4].copy_from_slice(&(p.seq as u16).to_be_bytes());
            packet[4..8].copy_from_slice(&(p.seq * FRAME as u32).to_be_bytes());
            packet[8..12].copy_from_slice(&(0x5000_0000u32 + i as u32).to_be_bytes());
            let mut frame = [0u8; FRAME];
            payload::fill(
                &mut frame,
                &self.tone,
                Mark {
                    call: i as u32,
                    seq: p.seq,
                    sent_us: now.duration_since(self.epoch).as_micros() as u64,
                },
            );
            packet[HEADER..HEADER + FRAME].copy_from_slice(&frame);
            if p.udp.send_to(&packet, self.to).is_ok() {
                p.seq += 1;
                p.echo.sent += 1;
            }
        }
        Ok(())
    }
}
