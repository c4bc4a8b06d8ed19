//! The browser's side of a call: the WebRTC leg (ICE-lite, DTLS) and the SRTP contexts
//! it keys. Shared by the echo service and bridged calls: each hands the decrypted media
//! to its own pipeline and gives back plain RTP/RTCP to protect and send.
//!
//! Decrypts in place in the receive buffer and encrypts in place in the caller's send
//! buffer: no allocation per packet.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{MediaSocket, MediaTransmit, SRTP_TAIL, Step};
use crate::sdp::Codec;
use crate::sdp::answer::{
    AnswerPolicy, IceCredentials, LocalDescription, NegotiatedVideo, TelephoneEvent, build_answer,
    negotiate, negotiate_video,
};
use crate::sdp::offer::Offer;
use crate::sdp::sip::VideoFormat;
use crate::signal::protocol::HangupReason;
use crate::webrtc::dtls::DtlsContext;
use crate::webrtc::ice::Transmit;
use crate::webrtc::leg::{FailReason, LegEvent, WebRtcLeg};
use crate::webrtc::srtp::SrtpContext;

/// What the browser side needs to answer an offer.
pub struct BrowserSetup<'a> {
    pub now: Instant,
    pub offer: &'a str,
    /// Codecs srgate may answer with, most preferred first.
    pub codecs: &'a [Codec],
    pub dtls: &'a DtlsContext,
    pub media_addr: SocketAddr,
    /// The media address also takes ICE-TCP (a passive TCP candidate in the answer).
    pub ice_tcp: bool,
    pub ufrag: &'a str,
    pub pwd: &'a str,
    /// srgate's SSRC toward the browser (announced in the answer).
    pub ssrc: u32,
    pub session_id: u64,
    /// The SIP side's video formats (empty: no video), and srgate's video SSRC toward
    /// the browser: a browser video section that takes one of them is answered.
    pub video: &'a [VideoFormat],
    pub video_ssrc: u32,
}

/// Why the browser's offer could not be answered.
#[derive(Debug)]
pub enum SetupError {
    Sdp(crate::sdp::Error),
    /// None of the codecs srgate may use here is in the offer.
    NoCodec,
    Leg(crate::webrtc::leg::LegError),
    Codec(crate::media::codec::CodecError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Sdp(e) => write!(f, "{e:?}"),
            SetupError::NoCodec => f.write_str("no usable codec in the offer"),
            SetupError::Leg(e) => write!(f, "{e:?}"),
            SetupError::Codec(e) => write!(f, "{e:?}"),
        }
    }
}

/// Packet counters of the browser leg (the CDR and the end-of-call log line).
#[derive(Default, Debug, Clone, Copy)]
pub struct BrowserCounters {
    pub rtp_in: u64,
    pub rtp_out: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    pub srtp_errors: u64,
    /// The leg failed at ICE (no connectivity check in time, or consent expired).
    pub ice_failed: bool,
    /// The leg failed at DTLS (handshake, fingerprint, certificate, keys).
    pub dtls_failed: bool,
}

/// What the call keeps of the negotiation with the browser (the rest of it, credentials
/// and fingerprint, went to the leg; the offer's sections to the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaFormat {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<TelephoneEvent>,
}

pub struct BrowserSide {
    leg: WebRtcLeg,
    negotiated: MediaFormat,
    /// Unprotects what the browser sends / protects what srgate sends (after DTLS).
    rx: Option<SrtpContext>,
    tx: Option<SrtpContext>,
    /// Setup traffic of the leg (STUN answers, DTLS flights) waiting to be sent.
    pending: VecDeque<Transmit>,
    counters: BrowserCounters,
    connected: bool,
    newly_connected: bool,
    /// The handshake's room was freed (see [`WebRtcLeg::release_handshake_room`]).
    settled: bool,
    /// When the browser's last authenticated SRTP or SRTCP packet came.
    media_at: Option<Instant>,
    /// A DTLS alert came after DTLS was retired (see [`LegEvent::PeerAlert`]): the call
    /// ends unless the browser shows it is there within [`ALERT_GRACE`].
    alert_at: Option<Instant>,
    /// The browser's video section srgate sends into, and the SIP side's format it takes.
    video: Option<(NegotiatedVideo, VideoFormat)>,
}

/// How long a browser whose DTLS alert came (after DTLS was retired) has to show it is
/// still there: by authenticated media, RTCP, or an ICE consent check (browsers send one
/// every 5 s or so, RFC 7675, also while they hold): a browser that closed sends none of
/// them. Three consent intervals, so a forged alert never ends a live call.
const ALERT_GRACE: Duration = Duration::from_secs(15);

impl BrowserSide {
    /// Negotiates the offer and builds the leg; returns srgate's SDP answer too.
    pub fn new(s: BrowserSetup<'_>) -> Result<(BrowserSide, String), SetupError> {
        let offer = Offer::parse(s.offer).map_err(SetupError::Sdp)?;
        if s.codecs.is_empty() {
            return Err(SetupError::NoCodec);
        }
        let policy = AnswerPolicy {
            codecs: s.codecs.to_vec(),
        };
        let mut negotiated = negotiate(&offer, &policy).map_err(|e| match e {
            crate::sdp::Error::NoCommonCodec => SetupError::NoCodec,
            e => SetupError::Sdp(e),
        })?;
        let video = if s.video.is_empty() {
            None
        } else {
            negotiate_video(&offer, &negotiated, s.video)
        };
        negotiated.video = video.as_ref().map(|(browser, _)| browser.clone());
        let ice = IceCredentials {
            ufrag: s.ufrag.to_string(),
            pwd: s.pwd.to_string(),
        };
        let candidates = [s.media_addr];
        let leg = WebRtcLeg::new(s.now, s.dtls, &ice, &candidates, &negotiated)
            .map_err(SetupError::Leg)?;
        let answer = build_answer(
            &negotiated,
            &LocalDescription {
                ice: &ice,
                fingerprint: s.dtls.fingerprint(),
                candidates: &candidates,
                tcp: s.ice_tcp,
                ssrc: s.ssrc,
                video_ssrc: s.video_ssrc,
                cname: "srgate",
                session_id: s.session_id,
            },
        );
        let mut side = BrowserSide {
            leg,
            negotiated: MediaFormat {
                codec: negotiated.codec,
                payload_type: negotiated.payload_type,
                telephone_event: negotiated.telephone_event,
            },
            rx: None,
            tx: None,
            pending: VecDeque::new(),
            counters: BrowserCounters::default(),
            connected: false,
            newly_connected: false,
            settled: false,
            media_at: None,
            alert_at: None,
            video,
        };
        side.collect();
        Ok((side, answer))
    }

    /// The browser's video section srgate sends into and the SIP side's format for it.
    pub fn video(&self) -> Option<&(NegotiatedVideo, VideoFormat)> {
        self.video.as_ref()
    }

    /// Codec, payload types and telephone-event chosen for this browser.
    pub fn negotiated(&self) -> &MediaFormat {
        &self.negotiated
    }

    /// Moves the leg's setup datagrams to our queue; once DTLS is up (its events drained
    /// and its flight collected), frees the room the handshake took.
    fn collect(&mut self) {
        while let Some(t) = self.leg.poll_transmit() {
            self.pending.push_back(t);
        }
        if self.connected && !self.settled {
            self.settled = true;
            self.leg.release_handshake_room();
        }
    }

    /// One datagram from the browser; decrypted media goes to `media(now, packet, rtcp)`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        data: &mut [u8],
        media: &mut dyn FnMut(Instant, &[u8], bool),
    ) -> Step {
        self.leg.handle_receive(now, from, local, data);
        let step = self.drain_events(now, Some(data), media);
        self.collect();
        step
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Step {
        self.leg.handle_timeout(now);
        let step = self.drain_events(now, None, &mut |_, _, _| {});
        self.collect();
        step
    }

    fn drain_events(
        &mut self,
        now: Instant,
        mut data: Option<&mut [u8]>,
        media: &mut dyn FnMut(Instant, &[u8], bool),
    ) -> Step {
        let mut step = Step::Continue;
        while let Some(event) = self.leg.poll_event() {
            match event {
                LegEvent::IceConnected { .. } => {}
                LegEvent::DtlsConnected(keys) => {
                    let profile = keys.profile;
                    let rx = SrtpContext::new(profile, keys.remote.key(), keys.remote.salt());
                    let tx = SrtpContext::new(profile, keys.local.key(), keys.local.salt());
                    match (rx, tx) {
                        (Ok(rx), Ok(tx)) => {
                            self.rx = Some(rx);
                            self.tx = Some(tx);
                            self.connected = true;
                            self.newly_connected = true;
                        }
                        _ => step = Step::Failed(HangupReason::Error),
                    }
                }
                LegEvent::RtpReceived { range, rtcp } => {
                    let (Some(data), Some(rx)) = (data.as_deref_mut(), self.rx.as_mut()) else {
                        continue;
                    };
                    let Some(packet) = data.get_mut(range) else {
                        continue;
                    };
                    let result = if rtcp {
                        rx.unprotect_rtcp(packet)
                    } else {
                        rx.unprotect_rtp(packet)
                    };
                    match result {
                        Ok(len) => {
                            if rtcp {
                                self.counters.rtcp_in += 1;
                            } else {
                                self.counters.rtp_in += 1;
                            }
                            if self.media_at.is_none() {
                                // the browser finished the handshake: its state can go
                                self.leg.retire_dtls();
                            }
                            self.media_at = Some(now);
                            if let Some(plain) = packet.get(..len) {
                                media(now, plain, rtcp);
                            }
                        }
                        Err(_) => self.counters.srtp_errors += 1,
                    }
                }
                LegEvent::Failed { reason } => {
                    log::info!("WebRTC leg failed: {reason:?}");
                    step = Step::Failed(match reason {
                        FailReason::ConsentExpired | FailReason::NoConnectivity => {
                            self.counters.ice_failed = true;
                            HangupReason::Timeout
                        }
                        _ => {
                            self.counters.dtls_failed = true;
                            HangupReason::Error
                        }
                    });
                }
                LegEvent::Closed => step = Step::Failed(HangupReason::Remote),
                LegEvent::PeerAlert => {
                    self.alert_at.get_or_insert(now);
                }
            }
        }
        if let Some(at) = self.alert_at
            && now >= at + ALERT_GRACE
            && matches!(step, Step::Continue)
        {
            self.alert_at = None;
            let alive = |t: Option<Instant>| t.is_some_and(|t| t > at);
            if !alive(self.media_at) && !alive(self.leg.last_consent()) {
                log::info!("WebRTC leg: DTLS alert and no media since: the browser closed");
                step = Step::Failed(HangupReason::Remote);
            }
        }
        step
    }

    /// The next setup datagram (STUN, DTLS), copied into `buf`.
    pub fn poll_setup(&mut self, buf: &mut [u8]) -> Option<MediaTransmit> {
        let Some(t) = self.pending.pop_front() else {
            if self.settled && self.pending.capacity() > 1 {
                // the last of the handshake's flight is out: room for one answer stays
                self.pending.shrink_to(1);
            }
            return None;
        };
        let len = t.contents.len().min(buf.len());
        buf[..len].copy_from_slice(&t.contents[..len]);
        Some(MediaTransmit {
            socket: MediaSocket::WebRtc,
            destination: t.destination,
            len,
        })
    }

    /// Where media goes, once DTLS is up and the browser's address is known.
    pub fn can_send(&self) -> bool {
        self.tx.is_some() && self.leg.remote().is_some()
    }

    /// Protects the plain RTP (`rtcp == false`) or RTCP packet `buf[..len]` in place
    /// (`buf` has [`SRTP_TAIL`] bytes of room behind it) and says where it goes.
    pub fn protect(&mut self, buf: &mut [u8], len: usize, rtcp: bool) -> Option<MediaTransmit> {
        let destination = self.leg.remote()?;
        let tx = self.tx.as_mut()?;
        let result = if rtcp {
            tx.protect_rtcp(buf, len)
        } else {
            tx.protect_rtp(buf, len)
        };
        match result {
            Ok(len) => {
                if rtcp {
                    self.counters.rtcp_out += 1;
                } else {
                    self.counters.rtp_out += 1;
                }
                Some(MediaTransmit {
                    socket: MediaSocket::WebRtc,
                    destination,
                    len,
                })
            }
            Err(_) => {
                self.counters.srtp_errors += 1;
                None
            }
        }
    }

    /// Room a plain packet may take in a buffer of `len` bytes.
    pub fn room(len: usize) -> Option<usize> {
        len.checked_sub(SRTP_TAIL)
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let alert = self.alert_at.map(|at| at + ALERT_GRACE);
        match (self.leg.poll_timeout(), alert) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True once, when DTLS has just connected.
    pub fn take_newly_connected(&mut self) -> bool {
        std::mem::take(&mut self.newly_connected)
    }

    /// Whether datagrams from `addr` belong to this browser: an ICE check from it passed
    /// (MESSAGE-INTEGRITY included).
    /// srgate's ICE ufrag for this browser: its key in `by_ufrag`.
    pub fn local_ufrag(&self) -> &str {
        self.leg.local_ufrag()
    }

    pub fn accepts_from(&self, addr: SocketAddr) -> bool {
        self.leg.accepts_from(addr)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn counters(&self) -> &BrowserCounters {
        &self.counters
    }

    /// Ends the leg; the DTLS close_notify (and anything else still queued for the
    /// browser) goes into `farewells`, to be sent after the call is gone.
    pub fn close(&mut self, farewells: &mut VecDeque<Transmit>) {
        self.leg.close();
        self.collect();
        farewells.extend(self.pending.drain(..));
    }
}
