//! One call's scene for the call-layer scenario tests: a [`Shard`] on a simulated clock,
//! one scripted browser, one phone (its RTP played as datagrams on the call's port), and
//! the steps every scenario takes. Included by each call-layer test file, next to
//! `benches/support/browser_sim.rs` (as `crate::browser_sim`) and `support/stun.rs`.

#![allow(dead_code)] // each test file takes the steps it needs

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use srgate::call::link::SipCommand;
use srgate::call::{CallsConfig, Cdr, MediaSocket, MediaTransmit};
use srgate::signal::protocol::Request;
use srgate::sip::endpoint::{Event, OutgoingCall, SipCallId};
use srgate::wire::rtp;

use crate::browser_sim::{
    Browser, BrowserIdentity, CONSENT_EVERY, PAYLOAD, Shard, pcmu_packet, phone_sdp,
};

pub const BROWSER: &str = "10.1.0.1:50000";
pub const PHONE: &str = "10.2.0.1:40000";
/// The telephone-event payload type of the phone's SDP.
pub const PHONE_TE: u8 = 101;
/// The simulated time one step of [`Scene::advance`] takes: one packet interval.
pub const STEP: Duration = Duration::from_millis(20);

/// A shard's settings, on a clock that starts now, changed by `tune`.
pub fn config(tune: impl FnOnce(&mut CallsConfig)) -> CallsConfig {
    #[allow(clippy::disallowed_methods)] // the simulated clock's origin
    let origin = Instant::now();
    let mut config = crate::browser_sim::config(origin);
    tune(&mut config);
    config
}

pub struct Scene {
    pub shard: Shard,
    pub identity: BrowserIdentity,
    pub browser: Browser,
    pub phone: SocketAddr,
    /// The app user and the call's id in the browser protocol.
    pub user: String,
    pub id: String,
    /// The SIP leg: its endpoint id and RTP port.
    pub sip: SipCallId,
    pub port: u16,
    browser_seq: u16,
    phone_seq: u16,
    /// When the browser sends its next ICE consent check (`None`: it sends none, as a
    /// browser whose peer connection closed).
    pub next_check: Option<Instant>,
}

/// What a datagram srgate sent is.
pub fn is_to(t: &MediaTransmit, socket: MediaSocket, destination: SocketAddr) -> bool {
    t.socket == socket && t.destination == destination
}

/// A plain RTP packet's payload type and payload.
pub fn rtp_parts(packet: &[u8]) -> (u8, Vec<u8>) {
    let p = rtp::Packet::new_checked(packet).expect("RTP");
    (p.payload_type(), p.payload().to_vec())
}

impl Scene {
    pub fn new(config: CallsConfig, user: &str) -> Scene {
        Scene {
            shard: Shard::new(config),
            identity: BrowserIdentity::generate(),
            browser: Browser::new(BROWSER.parse().unwrap(), "brws"),
            phone: PHONE.parse().unwrap(),
            user: user.into(),
            id: String::new(),
            sip: SipCallId(0),
            port: 0,
            browser_seq: 1,
            phone_seq: 1,
            next_check: None,
        }
    }

    /// The browser's `invite` of `callee` as call `id`; returns the message srgate sent
    /// back and the call it started toward SIP (after checking there is exactly one of
    /// each).
    pub fn invite(
        &mut self,
        id: &str,
        callee: &str,
        content: Option<&str>,
    ) -> (Value, OutgoingCall) {
        self.id = id.into();
        let invite = Request::Invite {
            id: id.into(),
            callee: callee.into(),
            sdp: self.browser.offer(&self.identity, false),
            content: content.map(str::to_owned),
            channel_id: None,
        };
        self.shard.request(&self.user.clone(), invite);
        let reply = self.one_message();
        if let Some(sdp) = reply["sdp"].as_str() {
            self.browser.answered(sdp);
        }
        let call = match self.shard.commands().as_slice() {
            [SipCommand::Start(call)] => call.clone(),
            other => panic!("one call started toward SIP: {other:?}"),
        };
        self.sip = call.id;
        self.port = *self.shard.ports.opened.last().expect("an RTP port");
        (reply, call)
    }

    /// An INVITE from SIP for the app user: returns the message the user got.
    pub fn incoming(&mut self, sip: SipCallId) -> Value {
        self.sip = sip;
        self.shard.sip_event(Event::IncomingCall {
            id: sip,
            app_user: self.user.clone(),
            caller: "1006".into(),
            caller_name: Some("Front door".into()),
            cus_data: Some("floor 2".into()),
            sdp: phone_sdp(self.phone, true, "sendrecv"),
            group: None,
            sip_member: false,
            internal: false,
        });
        let invitation = self.one_message();
        self.id = invitation["id"].as_str().expect("an id").to_owned();
        self.port = *self.shard.ports.opened.last().expect("an RTP port");
        invitation
    }

    /// The browser's `accept` of the invitation with its offer: returns srgate's reply
    /// (the claim of the SIP call checked and consumed).
    pub fn accept(&mut self) -> Value {
        let accept = Request::Accept {
            id: self.id.clone(),
            sdp: self.browser.offer(&self.identity, true),
            response: None,
        };
        self.shard.request(&self.user.clone(), accept);
        let reply = self.one_message();
        if let Some(sdp) = reply["sdp"].as_str() {
            self.browser.answered(sdp);
            // the accept claims the call at the endpoint (a ring group's other members'
            // invitations end)
            let commands = self.shard.commands();
            assert!(
                matches!(commands.as_slice(), [SipCommand::Claim(id)] if *id == self.sip),
                "an accepted invitation claims its SIP call: {commands:?}"
            );
        }
        reply
    }

    /// A request of the browser about this call.
    pub fn request(&mut self, request: Request) {
        self.shard.request(&self.user.clone(), request);
    }

    /// The ICE check and DTLS handshake; the browser then refreshes consent every 2 s
    /// in [`Scene::advance`].
    pub fn connect(&mut self) {
        self.browser.connect(&mut self.shard, &self.identity);
        self.next_check = Some(self.shard.now + CONSENT_EVERY);
    }

    /// The phone's 200 for an outgoing call: returns the message the user got.
    pub fn answer(&mut self) -> Value {
        self.shard.sip_event(Event::CallAnswered {
            id: self.sip,
            sdp: phone_sdp(self.phone, true, "sendrecv"),
        });
        self.one_message()
    }

    /// An app → SIP call `c1` of `alice`'s to 1006, ringing, DTLS up and answered, with
    /// everything srgate said and sent so far consumed.
    pub fn established(config: CallsConfig) -> Scene {
        let mut scene = Scene::new(config, "alice");
        scene.invite("c1", "1006", None);
        scene.connect();
        assert_eq!(scene.answer()["state"], "ACCEPTED_BY_REMOTE");
        scene.shard.transmits();
        scene
    }

    /// The one message srgate has for the user now.
    pub fn one_message(&mut self) -> Value {
        match self.shard.messages().as_slice() {
            [(user, message)] => {
                assert_eq!(user, &self.user, "{message}");
                message.clone()
            }
            other => panic!("one message for {}: {other:?}", self.user),
        }
    }

    /// The one record of an ended call.
    pub fn one_cdr(&mut self) -> Cdr {
        let cdr = self.shard.calls.poll_cdr().expect("a CDR");
        assert!(self.shard.calls.poll_cdr().is_none(), "one CDR");
        cdr
    }

    /// Checks that the call is gone and its port closed.
    pub fn assert_gone(&mut self) {
        assert_eq!(self.shard.calls.count(), 0, "no call left");
        assert_eq!(
            self.shard.ports.closed,
            [self.port],
            "the call's port closed"
        );
        assert_eq!(
            self.shard.ports.opened, self.shard.ports.closed,
            "every port opened is closed"
        );
    }

    /// One SRTP PCMU packet of the browser's (payload all `fill`); returns what srgate
    /// sent then.
    pub fn browser_says(&mut self, fill: u8) -> Vec<(MediaTransmit, Vec<u8>)> {
        self.browser_seq = self.browser_seq.wrapping_add(1);
        self.browser
            .send_pcmu(&mut self.shard, self.browser_seq, fill);
        self.shard.transmits()
    }

    /// The payloads of the plain RTP packets srgate sent to the phone from the call's
    /// port, with their payload types.
    pub fn phone_gets(&self, sent: &[(MediaTransmit, Vec<u8>)]) -> Vec<(u8, Vec<u8>)> {
        sent.iter()
            .filter(|(t, _)| is_to(t, MediaSocket::Rtp(self.port), self.phone))
            .map(|(_, p)| rtp_parts(p))
            .collect()
    }

    /// One PCMU packet of the phone's (payload all `fill`) to the call's port; returns
    /// what srgate sent then.
    pub fn phone_says(&mut self, fill: u8) -> Vec<(MediaTransmit, Vec<u8>)> {
        self.phone_seq = self.phone_seq.wrapping_add(1);
        let mut buf = [0u8; 256];
        let ts = u32::from(self.phone_seq) * PAYLOAD as u32;
        let len = pcmu_packet(&mut buf, self.phone_seq, ts, 0xf0f0, fill);
        self.shard.rtp(self.port, self.phone, &buf[..len]);
        self.shard.transmits()
    }

    /// One RFC 4733 event packet of the phone's.
    pub fn phone_event(&mut self, code: u8, end: bool, ts: u32) {
        self.phone_seq = self.phone_seq.wrapping_add(1);
        let mut buf = [0u8; 16];
        rtp::Header {
            marker: !end,
            payload_type: PHONE_TE,
            sequence_number: self.phone_seq,
            timestamp: ts,
            ssrc: 0xf0f0,
        }
        .emit(&mut buf)
        .expect("room");
        buf[rtp::HEADER_LEN..].copy_from_slice(&[code, if end { 0x8a } else { 0x0a }, 0, 160]);
        self.shard.rtp(self.port, self.phone, &buf);
    }

    /// The plain RTP packets srgate sent the browser as SRTP, unprotected with the
    /// browser's keys: payload types and payloads.
    pub fn browser_gets(&mut self, sent: &[(MediaTransmit, Vec<u8>)]) -> Vec<(u8, Vec<u8>)> {
        let addr = self.browser.addr;
        sent.iter()
            // RTP, not RTCP (RFC 5761 §4: packet types 200-206 in the second byte)
            .filter(|(t, p)| {
                is_to(t, MediaSocket::WebRtc, addr)
                    && (128..192).contains(&p[0])
                    && !(200..=206).contains(&p[1])
            })
            .map(|(_, p)| {
                rtp_parts(
                    &self
                        .browser
                        .unprotect(p)
                        .expect("SRTP of the browser's keys"),
                )
            })
            .collect()
    }

    /// Moves the clock by `d` in 20 ms steps (the browser's consent checks sent, the
    /// phone sending PCMU when `phone_talks`, srgate's timers fired); returns what srgate
    /// sent meanwhile.
    pub fn advance(&mut self, d: Duration, phone_talks: bool) -> Vec<(MediaTransmit, Vec<u8>)> {
        let steps = d.as_millis().div_ceil(STEP.as_millis());
        let mut sent = Vec::new();
        for _ in 0..steps {
            self.shard.now += STEP;
            if let Some(at) = self.next_check
                && self.shard.now >= at
                && self.shard.calls.count() > 0
            {
                let mut check = self.browser.check();
                self.shard.datagram(self.browser.addr, &mut check);
                self.next_check = Some(at + CONSENT_EVERY);
            }
            if phone_talks {
                sent.extend(self.phone_says(0x2a));
            }
            self.shard.tick();
            sent.extend(self.shard.transmits());
        }
        sent
    }
}
