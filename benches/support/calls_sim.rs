//! A shard's call layer driven without sockets: N relayed app → SIP calls (PCMU on both
//! legs: SRTP ⇄ RTP) set up through the real path — the browser's offer, an ICE check, a
//! DTLS handshake with srgate's own DTLS code as the browser, the SIP side's answer as an
//! endpoint event — then fed RTP both ways on a simulated clock, with the browser's ICE
//! consent checks every 2 s. Shared by the `calls` benchmark and the `calls_zero_alloc`
//! and `calls_memory` tests; all count heap allocations with `stats_alloc` as their global allocator
//! (`crate::GLOBAL`), and the allocations made while srgate answers a consent check are
//! counted apart (the STUN agent, a dependency, allocates a few per check). Its users
//! also include `support/stun.rs` as `crate::stun`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use srgate::call::link::{SipCommand, SipOutbox};
use srgate::call::{Calls, CallsConfig, Ctx, Rtm2SipRule, RtpPorts};
use srgate::config::AccRule;
use srgate::sdp::{Codec, Fingerprint, HashAlgorithm};
use srgate::signal::hub::CallRequest;
use srgate::signal::protocol::Request;
use srgate::sip::endpoint::{Event, SipCallId};
use srgate::webrtc::cert::Certificate;
use srgate::webrtc::dtls::{DtlsContext, DtlsEvent, DtlsRole, DtlsTransport};
use srgate::webrtc::srtp::SrtpContext;
use srgate::wire::rtp;

const SRGATE_MEDIA: &str = "127.0.0.1:20000";
const BROWSER_PWD: &str = "browserpassword0123456789";
const PAYLOAD: usize = 160; // 20 ms of PCMU
const CONSENT_EVERY: Duration = Duration::from_secs(2);

/// RTP ports handed out in turn; none is ever bound.
#[derive(Default)]
pub struct Ports {
    next: u16,
    /// The port opened last.
    pub opened: Option<u16>,
}

impl RtpPorts for Ports {
    fn open(&mut self) -> Option<u16> {
        let port = 20_002 + 2 * self.next;
        self.next += 1;
        self.opened = Some(port);
        Some(port)
    }
    fn close(&mut self, _port: u16) {}
}

struct Leg {
    /// ICE consent checks (RFC 7675) the browser sends every 2 s, made up front.
    checks: Vec<Vec<u8>>,
    next_check: Instant,
    browser: SocketAddr,
    phone: SocketAddr,
    port: u16,
    tx: SrtpContext,
    seq: u16,
    ts: u32,
    phone_seq: u16,
}

/// What [`Sim::measure`] found.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub ns_per_packet: f64,
    pub media_allocations: u64,
    pub packets: u64,
}

pub struct Sim {
    pub now: Instant,
    pub calls: Calls,
    sip: SipOutbox,
    ports: Ports,
    legs: Vec<Leg>,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Datagrams srgate sent during [`Sim::packets`], and of them to browsers.
    pub sent: u64,
    pub sent_to_browsers: u64,
    /// Real time spent in srgate's code during [`Sim::packets`].
    pub srgate_time: Duration,
    /// ICE consent checks sent, and heap allocations while srgate answered them.
    pub checks_sent: u64,
    pub check_allocations: u64,
    /// Heap bytes the simulation itself keeps for its browsers and phones (not srgate's).
    pub harness_bytes: i64,
    browser_ctx: DtlsContext,
    fingerprint: String,
}

/// Live heap bytes the allocator's counters say `change` added.
pub fn live_bytes(change: &stats_alloc::Stats) -> i64 {
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64
}

macro_rules! ctx {
    ($s:ident) => {
        &mut Ctx {
            sip: &mut $s.sip,
            ports: &mut $s.ports,
            online: &|_: &str| true,
        }
    };
}

fn offer(i: usize, fingerprint: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:b{i:05}\r\na=ice-pwd:{BROWSER_PWD}\r\n\
         a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\n\
         a=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// A 20 ms PCMU packet (payload bytes all `fill`) written into `buf`; its length.
fn pcmu_packet(buf: &mut [u8], seq: u16, ts: u32, ssrc: u32, fill: u8) -> usize {
    rtp::Header {
        marker: false,
        payload_type: 0,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
    }
    .emit(buf)
    .expect("room");
    buf[rtp::HEADER_LEN..rtp::HEADER_LEN + PAYLOAD].fill(fill);
    rtp::HEADER_LEN + PAYLOAD
}

fn phone_answer(phone: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = phone.ip(),
        port = phone.port()
    )
}

fn attribute(sdp: &str, name: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("a={name}:")))
        .unwrap_or_else(|| panic!("a={name}: in {sdp}"))
        .trim()
        .to_owned()
}

fn binding_request(i: usize, ufrag: &str, pwd: &str) -> Vec<u8> {
    crate::stun::binding_request(&format!("{ufrag}:b{i:05}"), pwd, true)
}

impl Sim {
    /// `calls` relayed calls, answered and with DTLS up.
    pub fn new(calls: usize) -> Sim {
        #[allow(clippy::disallowed_methods)] // the simulated clock's origin
        let now = Instant::now();
        let srgate_cert = Certificate::generate().expect("certificate");
        let config = CallsConfig {
            media_addr: SRGATE_MEDIA.parse().unwrap(),
            rtp_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            codecs: vec![Codec::Opus, Codec::Pcmu],
            opus_complexity: 5,
            rtp_timeout: Duration::from_secs(30),
            invitation_timeout: Duration::from_secs(60),
            rtm2sip: Some(Rtm2SipRule {
                acc_rule: AccRule::parse("").expect("empty rule"),
                allow_any: true,
            }),
            standalone: false,
            anonymous_caller: "1086".into(),
            app_display_name: false,
            shard: 0,
            max_calls: 100_000,
            seed: [5; 32],
            clock_anchor: (now, 1_700_000_000_000),
        };
        let browser_cert = Certificate::generate().expect("certificate");
        let mut sim = Sim {
            now,
            calls: Calls::new(config, DtlsContext::new(&srgate_cert).expect("dtls")),
            sip: SipOutbox::default(),
            ports: Ports::default(),
            legs: Vec::with_capacity(calls),
            buf: vec![0; 2048],
            out: vec![0; 2048],
            sent: 0,
            sent_to_browsers: 0,
            checks_sent: 0,
            check_allocations: 0,
            srgate_time: Duration::ZERO,
            harness_bytes: 0,
            browser_ctx: DtlsContext::new(&browser_cert).expect("dtls"),
            fingerprint: browser_cert.fingerprint().to_string(),
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
        assert_eq!(self.calls.count(), first + n);
    }

    fn add_call(&mut self, i: usize) {
        let browser = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)),
            50_000,
        );
        let phone = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8)),
            40_000,
        );
        let invite = Request::Invite {
            id: format!("c{i}"),
            callee: "1006".into(),
            sdp: offer(i, &self.fingerprint),
            content: None,
            channel_id: None,
        };
        let request = CallRequest::Call {
            user: format!("u{i}"),
            request: invite,
        };
        let now = self.now;
        self.calls.handle_request(now, request, ctx!(self));
        let mut answer = None;
        while let Some((_, text)) = self.calls.poll_message() {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["state"] == "SENT_TO_REMOTE" {
                answer = v["sdp"].as_str().map(str::to_owned);
            }
        }
        let answer = answer.expect("srgate answers the browser");
        let port = self.ports.opened.expect("an RTP port");
        let sip_id: SipCallId = match self.sip.pop() {
            Some(SipCommand::Start(call)) => call.id,
            other => panic!("the call starts toward SIP: {other:?}"),
        };
        let (ufrag, pwd) = (
            attribute(&answer, "ice-ufrag"),
            attribute(&answer, "ice-pwd"),
        );
        let fp = attribute(&answer, "fingerprint");
        let hex = fp.strip_prefix("sha-256 ").expect("a SHA-256 fingerprint");
        let srgate_fp =
            Fingerprint::parse(HashAlgorithm::Sha256, hex).expect("srgate's fingerprint");
        let mut check = binding_request(i, &ufrag, &pwd);
        self.calls
            .handle_datagram(now, browser, &mut check, ctx!(self));
        let mut dtls = DtlsTransport::new(now, &self.browser_ctx, DtlsRole::Client, srgate_fp);
        let mut keys = None;
        for _ in 0..200 {
            dtls.poll_output();
            while let Some(mut p) = dtls.poll_transmit() {
                let now = self.now;
                self.calls.handle_datagram(now, browser, &mut p, ctx!(self));
            }
            while let Some(t) = self.calls.poll_transmit(self.now, &mut self.out) {
                if t.destination == browser && (20..=63).contains(&self.out[0]) {
                    dtls.handle_packet(self.now, &self.out[..t.len]);
                }
            }
            dtls.poll_output();
            while let Some(e) = dtls.poll_event() {
                if let DtlsEvent::Connected(k) = e {
                    keys = Some(k);
                }
            }
            if keys.is_some() {
                break;
            }
            self.now += Duration::from_millis(1);
            dtls.handle_timeout(self.now);
            self.tick();
        }
        let keys = keys.expect("DTLS connects");
        let region = stats_alloc::Region::new(crate::GLOBAL);
        let tx = SrtpContext::new(keys.profile, keys.local.key(), keys.local.salt()).unwrap();
        self.harness_bytes += live_bytes(&region.change());
        let answered = Event::CallAnswered {
            id: sip_id,
            sdp: phone_answer(phone),
        };
        let now = self.now;
        self.calls.handle_sip_event(now, answered, ctx!(self));
        while self.calls.poll_message().is_some() {}
        while self.calls.poll_transmit(self.now, &mut self.out).is_some() {}
        // a shard hands its route changes to the router
        while self.calls.poll_route().is_some() {}
        let region = stats_alloc::Region::new(crate::GLOBAL);
        let checks = (0..16).map(|_| binding_request(i, &ufrag, &pwd)).collect();
        self.harness_bytes += live_bytes(&region.change());
        self.legs.push(Leg {
            checks,
            next_check: self.now + CONSENT_EVERY,
            browser,
            phone,
            port,
            tx,
            seq: 1,
            ts: 0,
            phone_seq: 1,
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

    /// Fires the call layer's timers that are due.
    fn tick(&mut self) {
        if self.calls.poll_timeout().is_some_and(|t| t <= self.now) {
            let now = self.now;
            self.calls.handle_timeout(now, ctx!(self));
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
            if self.now >= leg.next_check {
                // the browser's consent check, as Chrome sends them
                leg.next_check = self.now + CONSENT_EVERY;
                let check = &leg.checks[(k / n) % leg.checks.len()];
                let len = check.len();
                self.buf[..len].copy_from_slice(check);
                let browser = leg.browser;
                let now = self.now;
                let region = stats_alloc::Region::new(crate::GLOBAL);
                self.calls
                    .handle_datagram(now, browser, &mut self.buf[..len], ctx!(self));
                while let Some(t) = self.calls.poll_transmit(now, &mut self.out) {
                    self.sent += 1;
                    self.sent_to_browsers += u64::from(t.destination == browser);
                }
                let change = region.change();
                self.check_allocations += (change.allocations + change.reallocations) as u64;
                self.checks_sent += 1;
            }
            let leg = &mut self.legs[k % n];
            // browser → SIP: SRTP
            let plain = pcmu_packet(
                &mut self.buf,
                leg.seq,
                leg.ts,
                0x1000 + (k % n) as u32,
                0x55,
            );
            let len = leg.tx.protect_rtp(&mut self.buf, plain).expect("protect");
            let (browser, phone, port) = (leg.browser, leg.phone, leg.port);
            let now = self.now;
            let started = Instant::now();
            self.calls
                .handle_datagram(now, browser, &mut self.buf[..len], ctx!(self));
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
            leg.seq = leg.seq.wrapping_add(1);
            leg.phone_seq = leg.phone_seq.wrapping_add(1);
            leg.ts = leg.ts.wrapping_add(PAYLOAD as u32);
            let started = Instant::now();
            self.calls
                .handle_rtp(now, port, phone, &self.buf[..len], ctx!(self));
            while let Some(t) = self.calls.poll_transmit(now, &mut self.out) {
                self.sent += 1;
                if t.destination == browser {
                    self.sent_to_browsers += 1;
                }
            }
            self.now += step;
            self.tick();
            self.srgate_time += started.elapsed();
        }
    }
}
