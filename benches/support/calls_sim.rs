//! A shard's call layer driven without sockets: N relayed app → SIP calls (PCMU on both
//! legs: SRTP ⇄ RTP) set up through the real path — the browser's offer, an ICE check, a
//! DTLS handshake with srgate's own DTLS code as the browser, the SIP side's answer as an
//! endpoint event — then fed RTP both ways on a simulated clock, with the browser's ICE
//! consent checks every 2 s. [`Sim::with_sdes`] makes the SIP leg SRTP too (srgate offers
//! RTP/SAVP under `[media] sip_srtp = mandatory`, the phone answers one suite). Shared by the `calls` benchmark and the `calls_zero_alloc`
//! and `calls_memory` tests; all count heap allocations with `stats_alloc` as their global allocator
//! (`crate::GLOBAL`), and the allocations made while srgate answers a consent check are
//! counted apart (the STUN agent, a dependency, allocates a few per check). The shard, the
//! fake ports and the scripted browser are `support/browser_sim.rs`'s; its users include
//! it as `crate::browser_sim` and `support/stun.rs` as `crate::stun`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use srgate::call::link::SipCommand;
use srgate::config::SipSrtp;
use srgate::sdp::sdes::SdesKey;
use srgate::signal::protocol::Request;
use srgate::sip::endpoint::{Event, SipCallId};
use srgate::webrtc::srtp::SrtpContext;

use crate::browser_sim::{
    Browser, BrowserIdentity, CONSENT_EVERY, PAYLOAD, Shard, pcmu_packet, phone_sdp,
};

struct Leg {
    /// ICE consent checks (RFC 7675) the browser sends every 2 s, made up front.
    checks: Vec<Vec<u8>>,
    next_check: Instant,
    browser: SocketAddr,
    phone: SocketAddr,
    port: u16,
    tx: SrtpContext,
    /// The phone's SRTP (SDES) context, when the SIP leg is SRTP.
    phone_tx: Option<SrtpContext>,
    seq: u16,
    ts: u32,
    phone_seq: u16,
    /// The browser's RTP timestamp when it sends Opus (48 kHz).
    ts_opus: u32,
}

/// What [`Sim::measure`] found.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub ns_per_packet: f64,
    pub media_allocations: u64,
    pub packets: u64,
}

pub struct Sim {
    pub shard: Shard,
    legs: Vec<Leg>,
    buf: Vec<u8>,
    /// Datagrams srgate sent during [`Sim::packets`], and of them to browsers.
    pub sent: u64,
    pub sent_to_browsers: u64,
    /// Real time spent in srgate's code during [`Sim::packets`].
    pub srgate_time: Duration,
    /// ICE consent checks sent, and heap allocations while srgate answered them.
    pub checks_sent: u64,
    pub check_allocations: u64,
    /// Heap bytes the simulation keeps for its browsers and phones (not srgate's).
    pub harness_bytes: i64,
    identity: BrowserIdentity,
    sdes: bool,
    /// Transcoded calls: the browsers send these Opus frames (a 440 Hz tone, 20 ms each)
    /// in turn, the phones PCMU; empty for relayed calls.
    opus_frames: Vec<Vec<u8>>,
}

/// Live heap bytes the allocator's counters say `change` added.
pub fn live_bytes(change: &stats_alloc::Stats) -> i64 {
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64
}

impl Sim {
    /// `calls` relayed calls, answered and with DTLS up.
    pub fn new(calls: usize) -> Sim {
        Sim::build(calls, false)
    }

    /// As [`Sim::new`], the SIP leg SRTP keyed by SDES.
    #[allow(dead_code)] // not every user of this module runs SDES calls
    pub fn with_sdes(calls: usize) -> Sim {
        Sim::build(calls, true)
    }

    /// `calls` transcoded calls: the browsers offer Opus only, the phones answer PCMU, so
    /// srgate decodes and encodes both ways.
    #[allow(dead_code)] // not every user of this module runs transcoded calls
    pub fn transcoded(calls: usize) -> Sim {
        Sim::with_frames(calls, false, opus_tone())
    }

    fn build(calls: usize, sdes: bool) -> Sim {
        Sim::with_frames(calls, sdes, Vec::new())
    }

    fn with_frames(calls: usize, sdes: bool, opus_frames: Vec<Vec<u8>>) -> Sim {
        #[allow(clippy::disallowed_methods)] // the simulated clock's origin
        let now = Instant::now();
        let mut config = crate::browser_sim::config(now);
        if sdes {
            config.sip_srtp = SipSrtp::Mandatory;
        }
        let mut sim = Sim {
            shard: Shard::new(config),
            legs: Vec::with_capacity(calls),
            buf: vec![0; 2048],
            sent: 0,
            sent_to_browsers: 0,
            checks_sent: 0,
            check_allocations: 0,
            srgate_time: Duration::ZERO,
            harness_bytes: 0,
            identity: BrowserIdentity::generate(),
            sdes,
            opus_frames,
        };
        sim.add_calls(calls);
        sim
    }

    /// `n` more relayed calls, answered and with DTLS up.
    pub fn add_calls(&mut self, n: usize) {
        let region = stats_alloc::Region::new(crate::GLOBAL);
        self.legs.reserve(n);
        self.harness_bytes += live_bytes(&region.change());
        let first = self.legs.len();
        for i in first..first + n {
            self.add_call(i);
        }
        assert_eq!(self.shard.calls.count(), first + n);
    }

    fn add_call(&mut self, i: usize) {
        let identity = &self.identity;
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)),
            50_000,
        );
        let phone = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8)),
            40_000,
        );
        let mut browser = Browser::new(addr, &format!("b{i:05}"));
        let invite = Request::Invite {
            id: format!("c{i}"),
            callee: "1006".into(),
            sdp: if self.opus_frames.is_empty() {
                browser.offer(identity, false)
            } else {
                browser.offer_opus(identity)
            },
            content: None,
            channel_id: None,
        };
        let shard = &mut self.shard;
        shard.request(&format!("u{i}"), invite);
        let mut answer = None;
        while let Some((_, text)) = shard.calls.poll_message() {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["state"] == "SENT_TO_REMOTE" {
                answer = v["sdp"].as_str().map(str::to_owned);
            }
        }
        browser.answered(&answer.expect("srgate answers the browser"));
        let port = *shard.ports.opened.last().expect("an RTP port");
        let (sip_id, offer): (SipCallId, String) = match shard.sip.pop() {
            Some(SipCommand::Start(call)) => (call.id, call.sdp),
            other => panic!("the call starts toward SIP: {other:?}"),
        };
        browser.connect(shard, identity);
        let mut sdp = phone_sdp(phone, false, "sendrecv");
        let mut phone_tx = None;
        if self.sdes {
            // the phone takes srgate's first suite, under a key of its own
            let first = offer
                .lines()
                .find_map(|l| l.strip_prefix("a=crypto:"))
                .map(|v| SdesKey::parse(v).expect("srgate's a=crypto"))
                .expect("srgate offers SRTP");
            let key = SdesKey::generate(first.tag, first.profile).expect("random numbers");
            sdp = sdp.replace("RTP/AVP", "RTP/SAVP") + &key.attribute();
            phone_tx = Some(key.context().expect("a context"));
        }
        shard.sip_event(Event::CallAnswered { id: sip_id, sdp });
        while shard.calls.poll_message().is_some() {}
        while shard
            .calls
            .poll_transmit(shard.now, &mut shard.out)
            .is_some()
        {}
        // a shard hands its route changes to the router
        while shard.calls.poll_route().is_some() {}
        let region = stats_alloc::Region::new(crate::GLOBAL);
        let checks = (0..16).map(|_| browser.check()).collect();
        self.harness_bytes += live_bytes(&region.change());
        self.legs.push(Leg {
            checks,
            next_check: shard.now + CONSENT_EVERY,
            browser: addr,
            phone,
            port,
            tx: browser.tx.take().expect("keyed"),
            phone_tx,
            seq: 1,
            ts: 0,
            phone_seq: 1,
            ts_opus: 0,
        });
    }

    /// Runs `pairs` packet pairs from fresh counters and says what they cost: srgate's
    /// time per packet and the heap allocations of the media path (the consent checks'
    /// left out). Panics unless every packet was relayed.
    pub fn measure(&mut self, pairs: usize) -> Measured {
        self.sent = 0;
        self.sent_to_browsers = 0;
        self.checks_sent = 0;
        self.check_allocations = 0;
        self.srgate_time = Duration::ZERO;
        let region = stats_alloc::Region::new(crate::GLOBAL);
        self.packets(pairs);
        let stats = region.change();
        let packets = 2 * pairs as u64;
        assert!(
            self.sent >= packets,
            "srgate relays both ways: {} datagrams ({} to browsers) for {packets} packets",
            self.sent,
            self.sent_to_browsers
        );
        Measured {
            ns_per_packet: self.srgate_time.as_nanos() as f64 / packets as f64,
            media_allocations: (stats.allocations + stats.reallocations) as u64
                - self.check_allocations,
            packets,
        }
    }

    /// `pairs` rounds of one RTP packet each way through call `k % N` (every call sends
    /// every 20 ms of simulated time), with srgate's output drained and timers fired as a
    /// shard would. The real time spent in srgate's code (not in the simulated browsers
    /// and phones) adds up in [`Sim::srgate_time`].
    #[allow(clippy::disallowed_methods)] // measures srgate's share of the real time
    pub fn packets(&mut self, pairs: usize) {
        let n = self.legs.len();
        let step = Duration::from_micros(20_000 / n as u64);
        for k in 0..pairs {
            let leg = &mut self.legs[k % n];
            if self.shard.now >= leg.next_check {
                // the browser's consent check, as Chrome sends them
                leg.next_check = self.shard.now + CONSENT_EVERY;
                let check = &leg.checks[(k / n) % leg.checks.len()];
                let len = check.len();
                self.buf[..len].copy_from_slice(check);
                let browser = leg.browser;
                let now = self.shard.now;
                let region = stats_alloc::Region::new(crate::GLOBAL);
                let (calls, mut ctx) = self.shard.ctx();
                calls.handle_datagram(now, browser, &mut self.buf[..len], &mut ctx);
                let shard = &mut self.shard;
                while let Some(t) = shard.calls.poll_transmit(now, &mut shard.out) {
                    self.sent += 1;
                    self.sent_to_browsers += u64::from(t.destination == browser);
                }
                let change = region.change();
                self.check_allocations += (change.allocations + change.reallocations) as u64;
                self.checks_sent += 1;
            }
            let leg = &mut self.legs[k % n];
            // browser → SIP: SRTP (PCMU, or Opus for transcoded calls)
            let plain = if self.opus_frames.is_empty() {
                pcmu_packet(
                    &mut self.buf,
                    leg.seq,
                    leg.ts,
                    0x1000 + (k % n) as u32,
                    0x55,
                )
            } else {
                let frame = &self.opus_frames[usize::from(leg.seq) % self.opus_frames.len()];
                let header = srgate::wire::rtp::Header {
                    marker: false,
                    payload_type: 111,
                    sequence_number: leg.seq,
                    timestamp: leg.ts_opus,
                    ssrc: 0x1000 + (k % n) as u32,
                };
                header.emit(&mut self.buf).expect("room");
                let end = srgate::wire::rtp::HEADER_LEN + frame.len();
                self.buf[srgate::wire::rtp::HEADER_LEN..end].copy_from_slice(frame);
                leg.ts_opus = leg.ts_opus.wrapping_add(960);
                end
            };
            let len = leg.tx.protect_rtp(&mut self.buf, plain).expect("protect");
            let (browser, phone, port) = (leg.browser, leg.phone, leg.port);
            let now = self.shard.now;
            let started = Instant::now();
            let (calls, mut ctx) = self.shard.ctx();
            calls.handle_datagram(now, browser, &mut self.buf[..len], &mut ctx);
            self.srgate_time += started.elapsed();
            // SIP → browser: RTP
            let leg = &mut self.legs[k % n];
            let len = pcmu_packet(
                &mut self.buf,
                leg.phone_seq,
                leg.ts,
                0x2000 + (k % n) as u32,
                0x2a,
            );
            let len = match leg.phone_tx.as_mut() {
                Some(tx) => tx.protect_rtp(&mut self.buf, len).expect("protect"),
                None => len,
            };
            leg.seq = leg.seq.wrapping_add(1);
            leg.phone_seq = leg.phone_seq.wrapping_add(1);
            leg.ts = leg.ts.wrapping_add(PAYLOAD as u32);
            let started = Instant::now();
            let (calls, mut ctx) = self.shard.ctx();
            calls.handle_rtp(now, port, phone, &self.buf[..len], &mut ctx);
            let shard = &mut self.shard;
            while let Some(t) = shard.calls.poll_transmit(now, &mut shard.out) {
                self.sent += 1;
                if t.destination == browser {
                    self.sent_to_browsers += 1;
                }
            }
            self.shard.now += step;
            self.shard.tick();
            self.srgate_time += started.elapsed();
        }
    }
}

/// One second of a 440 Hz tone as 20 ms Opus frames (48 kHz mono, srgate's encoder).
fn opus_tone() -> Vec<Vec<u8>> {
    use srgate::media::codec::SampleRate;
    use srgate::media::codec::opus::OpusEncoder;
    let mut encoder = OpusEncoder::new(SampleRate::Hz48000, 5).expect("an Opus encoder");
    let mut pcm = [0i16; 960];
    let mut out = [0u8; 400];
    (0..50)
        .map(|f| {
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (f * 960 + i) as f64 / 48_000.0;
                *s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
            }
            let n = encoder.encode(&pcm, &mut out).expect("encoded");
            out[..n].to_vec()
        })
        .collect()
}
