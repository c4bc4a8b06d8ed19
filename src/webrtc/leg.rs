//! The browser leg of a call: ICE-lite ([`super::ice`]) and DTLS-SRTP ([`super::dtls`])
//! behind srgate's four sans-IO verbs.
//!
//! The caller hands every datagram of this leg to [`WebRtcLeg::handle_receive`], then
//! drains [`WebRtcLeg::poll_transmit`] and [`WebRtcLeg::poll_event`], and sleeps until
//! [`WebRtcLeg::poll_timeout`]. Datagrams are split by their first byte (RFC 7983):
//! STUN goes to the ICE agent, DTLS to the DTLS endpoint, and SRTP/SRTCP is reported as
//! [`LegEvent::RtpReceived`] (still encrypted; the SRTP context is the caller's) once keys
//! exist. DTLS and media are accepted only from addresses that passed an ICE check.
//!
//! The leg ends with exactly one [`LegEvent::Failed`] or [`LegEvent::Closed`]:
//! a certificate that does not match the offer's fingerprint, a failed handshake, or no
//! valid check for [`super::ice::CONSENT_TIMEOUT`] (RFC 7675) fail it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::demux::{self, Datagram};
use super::dtls::{DtlsContext, DtlsEvent, DtlsFailure, DtlsRole, DtlsTransport, SrtpKeys};
pub use super::ice::Transmit;
use super::ice::{IceEvent, IceLite, IceSetupError};
use crate::sdp::{IceCredentials, Negotiated, Setup};

/// Why a leg failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The browser's DTLS certificate does not match the offer's `a=fingerprint`.
    FingerprintMismatch,
    /// The DTLS handshake completed without a peer certificate.
    NoPeerCertificate,
    /// The DTLS handshake failed or timed out, or the peer sent a fatal alert.
    DtlsHandshake,
    /// The exported keys did not fit the negotiated SRTP profile.
    BadKeyingMaterial,
    /// No connectivity check ever arrived within the consent timeout.
    NoConnectivity,
    /// Checks stopped for the consent timeout (RFC 7675): the browser is gone.
    ConsentExpired,
}

impl core::fmt::Display for FailReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FailReason::FingerprintMismatch => "DTLS fingerprint mismatch",
            FailReason::NoPeerCertificate => "no DTLS peer certificate",
            FailReason::DtlsHandshake => "DTLS handshake failed",
            FailReason::BadKeyingMaterial => "bad SRTP keying material",
            FailReason::NoConnectivity => "no ICE connectivity",
            FailReason::ConsentExpired => "consent expired",
        })
    }
}

impl From<DtlsFailure> for FailReason {
    fn from(f: DtlsFailure) -> Self {
        match f {
            DtlsFailure::FingerprintMismatch => FailReason::FingerprintMismatch,
            DtlsFailure::NoPeerCertificate => FailReason::NoPeerCertificate,
            DtlsFailure::BadKeyingMaterial => FailReason::BadKeyingMaterial,
            _ => FailReason::DtlsHandshake,
        }
    }
}

/// What a leg reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// ICE connected; media goes to `remote`.
    IceConnected { remote: SocketAddr },
    /// DTLS connected and the peer verified: the SRTP profile and keys, split into what
    /// srgate sends with (`local`) and what it receives with (`remote`).
    DtlsConnected(SrtpKeys),
    /// An SRTP (`rtcp == false`) or SRTCP packet, still encrypted, is `range` of the
    /// datagram handed to the `handle_receive` call that queued this event. Drain events
    /// after every `handle_receive`.
    RtpReceived { range: Range<usize>, rtcp: bool },
    /// The leg failed; it sends and reports nothing more.
    Failed { reason: FailReason },
    /// The peer or srgate closed the DTLS association.
    Closed,
    /// After [`WebRtcLeg::retire_dtls`]: the peer sent a DTLS alert, which srgate can no
    /// longer authenticate. A peer closing (close_notify) stops its media and consent
    /// checks too; the caller ends the call if neither follows (an alert forged by someone
    /// who can spoof the browser's address changes nothing while the browser is there).
    PeerAlert,
}

/// Why a leg could not be made.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegError {
    Ice(IceSetupError),
    /// The negotiated setup is not a DTLS role (`actpass`/`holdconn` in an answer).
    BadSetup,
}

impl From<IceSetupError> for LegError {
    fn from(e: IceSetupError) -> Self {
        LegError::Ice(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Ended,
}

/// A browser's media transport: one ICE-lite agent and one DTLS association.
#[derive(Debug)]
pub struct WebRtcLeg {
    ice: IceLite,
    /// `None` once retired ([`WebRtcLeg::retire_dtls`]): a connected association's state
    /// is most of a call's memory and nothing needs it once the browser's media proved
    /// the handshake over.
    dtls: Option<Box<DtlsTransport>>,
    /// Retired DTLS: the close_notify made at retirement (its record sequence number is
    /// the next: nothing else is sent after it), sent when srgate ends the leg.
    farewell: Vec<Vec<u8>>,
    local_ufrag: String,
    state: State,
    /// The source of the latest valid DTLS datagram: where DTLS replies go before
    /// nomination (browsers may finish DTLS before nominating an ICE-lite peer).
    dtls_peer: Option<SocketAddr>,
    events: VecDeque<LegEvent>,
    transmits: VecDeque<Transmit>,
    dropped: u64,
}

/// Events and transmits queued at most; past this a misbehaving peer's output is dropped.
const MAX_QUEUE: usize = 64;

impl WebRtcLeg {
    /// A leg answering checks for `local_ice` on `candidates` (the exact addresses
    /// datagrams arrive on), with the remote credentials, fingerprint and DTLS role
    /// from `negotiated`.
    pub fn new(
        now: Instant,
        ctx: &DtlsContext,
        local_ice: &IceCredentials,
        candidates: &[SocketAddr],
        negotiated: &Negotiated,
    ) -> Result<Self, LegError> {
        let role = match negotiated.setup {
            Setup::Passive => DtlsRole::Server,
            Setup::Active => DtlsRole::Client,
            Setup::ActPass | Setup::HoldConn => return Err(LegError::BadSetup),
        };
        let ice = IceLite::new(now, local_ice, &negotiated.remote_ice, candidates)?;
        let dtls = DtlsTransport::new(now, ctx, role, negotiated.remote_fingerprint.clone());
        Ok(WebRtcLeg {
            ice,
            dtls: Some(Box::new(dtls)),
            farewell: Vec::new(),
            local_ufrag: local_ice.ufrag.clone(),
            state: State::Running,
            dtls_peer: None,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            dropped: 0,
        })
    }

    /// The local ICE ufrag: the routing key of STUN requests ([`demux::route`]).
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Whether datagrams from `addr` belong to this leg (routing by 5-tuple).
    pub fn accepts_from(&self, addr: SocketAddr) -> bool {
        self.ice.is_valid_remote(addr)
    }

    /// Where media for the browser goes, once known.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.ice.send_address()
    }

    /// Datagrams dropped so far (unknown source, wrong class, media before keys).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the leg has failed or closed.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Feeds one datagram received on `local` from `from`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        buf: &[u8],
    ) {
        if self.state == State::Ended {
            return;
        }
        match demux::classify(buf) {
            Datagram::Stun(b) => {
                if !self.ice.handle_stun(now, from, local, b) {
                    self.dropped += 1;
                }
            }
            Datagram::Dtls(b) if self.ice.is_valid_remote(from) => match self.dtls.as_mut() {
                Some(dtls) => {
                    self.dtls_peer = Some(from);
                    dtls.handle_packet(now, b);
                }
                // retired: a record of content type 21 is an alert (its text encrypted)
                None if b.first() == Some(&21) => self.push_event(LegEvent::PeerAlert),
                None => self.dropped += 1,
            },
            Datagram::Rtp(_) | Datagram::Rtcp(_)
                if self.keyed() && self.ice.is_valid_remote(from) =>
            {
                let rtcp = matches!(demux::classify(buf), Datagram::Rtcp(_));
                self.push_event(LegEvent::RtpReceived {
                    range: 0..buf.len(),
                    rtcp,
                });
            }
            _ => self.dropped += 1,
        }
        self.progress(now);
    }

    /// Advances timers: ICE, DTLS retransmission and handshake deadline, consent.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Ended {
            return;
        }
        self.ice.handle_timeout(now);
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.handle_timeout(now);
        }
        self.progress(now);
    }

    /// DTLS is connected (or was, and is retired): media keys exist.
    fn keyed(&self) -> bool {
        self.dtls.as_ref().is_none_or(|d| d.is_connected())
    }

    /// Drops the DTLS association's state once the handshake is over for both sides
    /// (call it when the browser's first SRTP or SRTCP packet authenticated: the browser
    /// sends media only after srgate's last flight reached it), keeping only the
    /// close_notify to send at the end. Afterwards a DTLS alert from the peer is reported
    /// as [`LegEvent::PeerAlert`] and other DTLS records are dropped. Nothing before the
    /// handshake's end, and nothing twice.
    pub fn retire_dtls(&mut self) {
        if self.state == State::Ended || !self.dtls.as_ref().is_some_and(|d| d.is_connected()) {
            return;
        }
        let Some(mut dtls) = self.dtls.take() else {
            return;
        };
        dtls.close();
        while let Some(contents) = dtls.poll_transmit() {
            self.farewell.push(contents);
        }
    }

    /// When the browser's last connectivity check that passed came (RFC 7675 consent:
    /// authenticated, every few seconds while its peer connection is open).
    pub fn last_consent(&self) -> Option<Instant> {
        self.ice.last_consent()
    }

    /// Whether DTLS was retired ([`WebRtcLeg::retire_dtls`]).
    pub fn dtls_retired(&self) -> bool {
        self.dtls.is_none()
    }

    fn progress(&mut self, now: Instant) {
        if now >= self.ice.consent_deadline() {
            let reason = if self.ice.had_consent() {
                FailReason::ConsentExpired
            } else {
                FailReason::NoConnectivity
            };
            return self.fail(reason);
        }
        while let Some(IceEvent::Connected { remote }) = self.ice.poll_event() {
            self.push_event(LegEvent::IceConnected { remote });
        }
        for _ in 0..MAX_QUEUE {
            let Some(t) = self.ice.poll_transmit() else {
                break;
            };
            self.push_transmit(t);
        }

        // A client may only start once it knows where to send; a server only talks back.
        let Some(dtls) = self.dtls.as_mut() else {
            return; // retired: nothing more from DTLS
        };
        let destination = self.dtls_peer.or_else(|| self.ice.send_address());
        if let Some(destination) = destination {
            dtls.poll_output();
            let source = self.ice.local_for(destination);
            for _ in 0..MAX_QUEUE {
                let Some(contents) = dtls.poll_transmit() else {
                    break;
                };
                if let Some(source) = source {
                    push_transmit(
                        &mut self.transmits,
                        &mut self.dropped,
                        Transmit {
                            source,
                            destination,
                            contents,
                        },
                    );
                }
            }
        }
        while let Some(e) = self.dtls.as_mut().and_then(|d| d.poll_event()) {
            match e {
                DtlsEvent::Connected(keys) => self.push_event(LegEvent::DtlsConnected(keys)),
                DtlsEvent::Failed(why) => return self.fail(why.into()),
                DtlsEvent::Closed => {
                    self.state = State::Ended;
                    self.push_event(LegEvent::Closed);
                    return;
                }
            }
        }
    }

    fn fail(&mut self, reason: FailReason) {
        if self.state == State::Ended {
            return;
        }
        log::info!("webrtc leg {}: {reason}", self.local_ufrag);
        self.state = State::Ended;
        self.transmits.clear();
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.close();
            // Nothing more goes out: a failed peer gets no close_notify.
            while dtls.poll_transmit().is_some() {}
        }
        self.farewell = Vec::new();
        self.push_event(LegEvent::Failed { reason });
    }

    fn push_event(&mut self, e: LegEvent) {
        // The terminal event always fits: it replaces the oldest when full.
        if self.events.len() >= MAX_QUEUE {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }

    fn push_transmit(&mut self, t: Transmit) {
        push_transmit(&mut self.transmits, &mut self.dropped, t);
    }

    /// Ends the leg: sends DTLS close_notify if connected and reports [`LegEvent::Closed`].
    pub fn close(&mut self) {
        if self.state == State::Ended {
            return;
        }
        self.state = State::Ended;
        let mut farewell = std::mem::take(&mut self.farewell);
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.close();
            while let Some(contents) = dtls.poll_transmit() {
                farewell.push(contents);
            }
        }
        if let Some(destination) = self.dtls_peer.or_else(|| self.ice.send_address())
            && let Some(source) = self.ice.local_for(destination)
        {
            for contents in farewell {
                self.push_transmit(Transmit {
                    source,
                    destination,
                    contents,
                });
            }
        }
        self.push_event(LegEvent::Closed);
    }

    /// Frees the room the handshake's traffic took, once DTLS is connected and the
    /// caller has drained the leg: what stays is a queue slot each for the one event per
    /// media packet and the one answer per consent check.
    pub fn release_handshake_room(&mut self) {
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.release_handshake_room();
        }
        self.events.shrink_to(1);
        self.transmits.shrink_to(1);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LegEvent> {
        self.events.pop_front()
    }

    /// When to call [`WebRtcLeg::handle_timeout`]; `None` once the leg has ended.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.state == State::Ended {
            return None;
        }
        let consent = self.ice.consent_deadline();
        [
            self.ice.poll_timeout(),
            self.dtls.as_ref().and_then(|d| d.poll_timeout()),
            Some(consent),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Queues `t` unless [`MAX_QUEUE`] datagrams wait already (then it is dropped and counted).
fn push_transmit(transmits: &mut VecDeque<Transmit>, dropped: &mut u64, t: Transmit) {
    if transmits.len() >= MAX_QUEUE {
        *dropped += 1;
        return;
    }
    transmits.push_back(t);
}
