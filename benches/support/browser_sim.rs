//! A shard's call layer with its surroundings played in memory: the RTP ports (never
//! bound), the SIP side as a [`SipOutbox`], and a scripted browser — its SDP offer, its
//! ICE check, a DTLS handshake with srgate's own DTLS code in the browser's role, and the
//! SRTP contexts that handshake keys. No socket, no thread, no real time: the clock is a
//! simulated `Instant` the caller moves. Shared by the `calls` benchmark (through
//! `calls_sim.rs`), the `calls_zero_alloc` test and the call-layer scenario tests; its
//! users include `support/stun.rs` as `crate::stun`.

#![allow(dead_code)] // each user takes the part it needs

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use srgate::call::link::{SipCommand, SipOutbox};
use srgate::call::{Calls, CallsConfig, Ctx, MediaTransmit, Rtm2SipRule, RtpPorts};
use srgate::config::AccRule;
use srgate::sdp::{Codec, Fingerprint, HashAlgorithm};
use srgate::signal::hub::CallRequest;
use srgate::signal::protocol::Request;
use srgate::sip::endpoint::Event;
use srgate::webrtc::cert::Certificate;
use srgate::webrtc::dtls::{DtlsContext, DtlsEvent, DtlsRole, DtlsTransport};
use srgate::webrtc::srtp::SrtpContext;
use srgate::wire::rtp;

/// srgate's ICE host candidate (the shard's media socket).
pub const SRGATE_MEDIA: &str = "127.0.0.1:20000";
/// 20 ms of PCMU.
pub const PAYLOAD: usize = 160;
/// How often a browser refreshes ICE consent (RFC 7675), as Chrome does.
pub const CONSENT_EVERY: Duration = Duration::from_secs(2);
const BROWSER_PWD: &str = "browserpassword0123456789";

/// RTP ports handed out in turn; none is ever bound. Records what was opened and closed.
#[derive(Default)]
pub struct Ports {
    next: u16,
    pub opened: Vec<u16>,
    pub closed: Vec<u16>,
}

impl RtpPorts for Ports {
    fn open(&mut self) -> Option<u16> {
        let port = 20_002 + 2 * self.next;
        self.next += 1;
        self.opened.push(port);
        Some(port)
    }
    fn close(&mut self, port: u16) {
        self.closed.push(port);
    }
}

/// The call layer's settings for a proxy-mode shard that may call any SIP number.
pub fn config(now: Instant) -> CallsConfig {
    CallsConfig {
        media_addr: SRGATE_MEDIA.parse().unwrap(),
        rtp_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        loop_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ice_tcp: false,
        codecs: vec![Codec::Opus, Codec::Pcmu],
        opus_complexity: 5,
        rtp_timeout: Duration::from_secs(30),
        sip_srtp: srgate::config::SipSrtp::Optional,
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
        door: None,
        rest_hook: None,
        seed: [5; 32],
        clock_anchor: (now, 1_700_000_000_000),
    }
}

/// The call layer and what it works with, on a simulated clock.
pub struct Shard {
    pub now: Instant,
    pub calls: Calls,
    pub sip: SipOutbox,
    pub ports: Ports,
    /// The send buffer handed to `poll_transmit`.
    pub out: Vec<u8>,
}

/// Every app user is logged in.
static ONLINE: fn(&str) -> bool = |_| true;

impl Shard {
    /// A shard whose clock starts at `config.clock_anchor`'s instant.
    pub fn new(config: CallsConfig) -> Shard {
        let now = config.clock_anchor.0;
        let cert = Certificate::generate().expect("certificate");
        Shard {
            now,
            calls: Calls::new(config, DtlsContext::new(&cert).expect("dtls")),
            sip: SipOutbox::default(),
            ports: Ports::default(),
            out: vec![0; 2048],
        }
    }

    /// The call layer and the [`Ctx`] it is driven with.
    pub fn ctx(&mut self) -> (&mut Calls, Ctx<'_>) {
        let ctx = Ctx {
            sip: &mut self.sip,
            ports: &mut self.ports,
            online: &ONLINE,
        };
        (&mut self.calls, ctx)
    }

    /// Fires the call layer's timers that are due.
    pub fn tick(&mut self) {
        if self.calls.poll_timeout().is_some_and(|t| t <= self.now) {
            let now = self.now;
            let (calls, mut ctx) = self.ctx();
            calls.handle_timeout(now, &mut ctx);
        }
    }

    /// A request of the logged-in `user`.
    pub fn request(&mut self, user: &str, request: Request) {
        let now = self.now;
        let request = CallRequest::Call {
            user: user.into(),
            request,
        };
        let (calls, mut ctx) = self.ctx();
        calls.handle_request(now, request, &mut ctx);
    }

    /// An event of the SIP endpoint.
    pub fn sip_event(&mut self, event: Event) {
        let now = self.now;
        let (calls, mut ctx) = self.ctx();
        calls.handle_sip_event(now, event, &mut ctx);
    }

    /// A datagram on the WebRTC media socket.
    pub fn datagram(&mut self, from: SocketAddr, data: &mut [u8]) {
        let now = self.now;
        let (calls, mut ctx) = self.ctx();
        calls.handle_datagram(now, from, data, &mut ctx);
    }

    /// A datagram on a SIP leg's socket `port`.
    pub fn rtp(&mut self, port: u16, from: SocketAddr, data: &[u8]) {
        let now = self.now;
        let (calls, mut ctx) = self.ctx();
        calls.handle_rtp(now, port, from, data, &mut ctx);
    }

    /// Every datagram srgate has to send now, with its bytes.
    pub fn transmits(&mut self) -> Vec<(MediaTransmit, Vec<u8>)> {
        let mut sent = Vec::new();
        while let Some(t) = self.calls.poll_transmit(self.now, &mut self.out) {
            sent.push((t, self.out[..t.len].to_vec()));
        }
        sent
    }

    /// Every message srgate has for users: `(user, JSON)`.
    pub fn messages(&mut self) -> Vec<(String, Value)> {
        std::iter::from_fn(|| self.calls.poll_message())
            .map(|(user, text)| (user, serde_json::from_str(&text).expect("JSON")))
            .collect()
    }

    /// Every command queued toward the SIP endpoint.
    pub fn commands(&mut self) -> Vec<SipCommand> {
        std::iter::from_fn(|| self.sip.pop()).collect()
    }
}

/// The certificate a simulated browser (or many) does DTLS with.
pub struct BrowserIdentity {
    pub dtls: DtlsContext,
    /// `sha-256 AB:CD:…`, as an offer's `a=fingerprint:` says it.
    pub fingerprint: String,
}

impl BrowserIdentity {
    pub fn generate() -> BrowserIdentity {
        let cert = Certificate::generate().expect("certificate");
        BrowserIdentity {
            dtls: DtlsContext::new(&cert).expect("dtls"),
            fingerprint: cert.fingerprint().to_string(),
        }
    }
}

/// srgate's ICE credentials and certificate fingerprint, from its SDP answer.
pub struct Answered {
    ufrag: String,
    pwd: String,
    fingerprint: Fingerprint,
}

/// One browser's side of a call: its address, its ICE username fragment, and after
/// [`Browser::connect`] the SRTP contexts: `tx` protects what it sends, `rx` unprotects
/// what srgate sends it.
pub struct Browser {
    pub addr: SocketAddr,
    pub ufrag: String,
    answered: Option<Answered>,
    pub tx: Option<SrtpContext>,
    pub rx: Option<SrtpContext>,
}

/// The `a={name}:` value of an SDP.
pub fn attribute(sdp: &str, name: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("a={name}:")))
        .unwrap_or_else(|| panic!("a={name}: in {sdp}"))
        .trim()
        .to_owned()
}

impl Browser {
    pub fn new(addr: SocketAddr, ufrag: &str) -> Browser {
        Browser {
            addr,
            ufrag: ufrag.into(),
            answered: None,
            tx: None,
            rx: None,
        }
    }

    /// Its SDP offer, as a browser makes it: PCMU only, BUNDLE, rtcp-mux, DTLS actpass,
    /// telephone-event/8000 as payload type 126 when `telephone_event`.
    pub fn offer(&self, identity: &BrowserIdentity, telephone_event: bool) -> String {
        let (formats, rtpmap) = if telephone_event {
            (" 126", "a=rtpmap:126 telephone-event/8000\r\n")
        } else {
            ("", "")
        };
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 0{formats}\r\nc=IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:{ufrag}\r\na=ice-pwd:{BROWSER_PWD}\r\n\
             a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\n\
             a=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\n{rtpmap}",
            ufrag = self.ufrag,
            fingerprint = identity.fingerprint,
        )
    }

    /// Its SDP offer with Opus only (payload type 111, in-band FEC), as a browser whose
    /// call srgate transcodes to G.711 makes it.
    pub fn offer_opus(&self, identity: &BrowserIdentity) -> String {
        self.offer(identity, false)
            .replace("UDP/TLS/RTP/SAVPF 0\r\n", "UDP/TLS/RTP/SAVPF 111\r\n")
            .replace(
                "a=rtpmap:0 PCMU/8000\r\n",
                "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n",
            )
    }

    /// Reads srgate's SDP answer: its ICE credentials and fingerprint.
    pub fn answered(&mut self, answer: &str) {
        let fp = attribute(answer, "fingerprint");
        let hex = fp.strip_prefix("sha-256 ").expect("a SHA-256 fingerprint");
        self.answered = Some(Answered {
            ufrag: attribute(answer, "ice-ufrag"),
            pwd: attribute(answer, "ice-pwd"),
            fingerprint: Fingerprint::parse(HashAlgorithm::Sha256, hex)
                .expect("srgate's fingerprint"),
        });
    }

    /// An ICE check (or consent refresh) toward srgate, nominating the pair.
    pub fn check(&self) -> Vec<u8> {
        let a = self.answered.as_ref().expect("srgate answered");
        crate::stun::binding_request(&format!("{}:{}", a.ufrag, self.ufrag), &a.pwd, true)
    }

    /// The ICE check, then the DTLS handshake as its client, 1 ms of simulated time a
    /// round (at most 200 rounds, the shard's timers fired): keys the SRTP contexts.
    /// Everything srgate sends meanwhile is consumed.
    pub fn connect(&mut self, shard: &mut Shard, identity: &BrowserIdentity) {
        assert!(self.try_connect(shard, identity), "DTLS connects");
    }

    /// [`Browser::connect`], saying whether the handshake completed.
    pub fn try_connect(&mut self, shard: &mut Shard, identity: &BrowserIdentity) -> bool {
        let mut check = self.check();
        shard.datagram(self.addr, &mut check);
        let fingerprint = self
            .answered
            .as_ref()
            .expect("answered")
            .fingerprint
            .clone();
        let mut dtls = DtlsTransport::new(shard.now, &identity.dtls, DtlsRole::Client, fingerprint);
        let mut keys = None;
        for _ in 0..200 {
            dtls.poll_output();
            while let Some(mut p) = dtls.poll_transmit() {
                shard.datagram(self.addr, &mut p);
            }
            while let Some(t) = shard.calls.poll_transmit(shard.now, &mut shard.out) {
                if t.destination == self.addr && (20..=63).contains(&shard.out[0]) {
                    dtls.handle_packet(shard.now, &shard.out[..t.len]);
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
            shard.now += Duration::from_millis(1);
            dtls.handle_timeout(shard.now);
            shard.tick();
        }
        let Some(keys) = keys else {
            return false;
        };
        self.tx =
            Some(SrtpContext::new(keys.profile, keys.local.key(), keys.local.salt()).unwrap());
        self.rx =
            Some(SrtpContext::new(keys.profile, keys.remote.key(), keys.remote.salt()).unwrap());
        true
    }

    /// Sends one SRTP PCMU packet (payload bytes all `fill`) to srgate.
    pub fn send_pcmu(&mut self, shard: &mut Shard, seq: u16, fill: u8) {
        let mut buf = vec![0; 2048];
        let plain = pcmu_packet(&mut buf, seq, u32::from(seq) * PAYLOAD as u32, 0xb0b0, fill);
        let tx = self.tx.as_mut().expect("connected");
        let len = tx.protect_rtp(&mut buf, plain).expect("protect");
        shard.datagram(self.addr, &mut buf[..len]);
    }

    /// The plain RTP of an SRTP packet srgate sent (`None`: not SRTP of this browser's
    /// keys).
    pub fn unprotect(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let mut buf = packet.to_vec();
        let len = self.rx.as_mut()?.unprotect_rtp(&mut buf).ok()?;
        buf.truncate(len);
        Some(buf)
    }
}

/// A 20 ms PCMU packet (payload bytes all `fill`) written into `buf`; its length.
pub fn pcmu_packet(buf: &mut [u8], seq: u16, ts: u32, ssrc: u32, fill: u8) -> usize {
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

/// A phone's SDP (offer or answer): PCMU at `phone`, telephone-event/8000 as payload
/// type 101 when `telephone_event`, and `direction` (`sendrecv`, `sendonly`, …).
pub fn phone_sdp(phone: SocketAddr, telephone_event: bool, direction: &str) -> String {
    let (formats, rtpmap) = if telephone_event {
        (
            " 101",
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
        )
    } else {
        ("", "")
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0{formats}\r\na=rtpmap:0 PCMU/8000\r\n{rtpmap}a={direction}\r\n",
        ip = phone.ip(),
        port = phone.port()
    )
}
