//! One echo call: the browser's WebRTC leg and the echo media pipeline between its SRTP
//! contexts. Decrypts in place, encrypts into the caller's buffer: no allocation per packet.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use super::{MediaTransmit, SRTP_TAIL};
use crate::media::codec::SampleRate;
use crate::media::echo::{Echo, EchoConfig};
use crate::sdp::Codec;
use crate::sdp::answer::{AnswerPolicy, IceCredentials, LocalDescription, build_answer, negotiate};
use crate::sdp::offer::Offer;
use crate::webrtc::dtls::DtlsContext;
use crate::webrtc::ice::Transmit;
use crate::webrtc::leg::{FailReason, LegEvent, WebRtcLeg};
use crate::webrtc::srtp::SrtpContext;

/// What a call needs to be set up.
pub struct Setup<'a> {
    pub now: Instant,
    pub offer: &'a str,
    pub codecs: &'a [Codec],
    pub dtls: &'a DtlsContext,
    pub media_addr: SocketAddr,
    pub ufrag: &'a str,
    pub pwd: &'a str,
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub session_id: u64,
    pub opus_complexity: u8,
}

/// What the call layer does next with a call.
pub enum Step {
    Continue,
    /// End it, with this hangup reason.
    Failed(&'static str),
}

/// Why an echo call could not be set up.
#[derive(Debug)]
pub enum SetupError {
    Sdp(crate::sdp::Error),
    NoOpus,
    Leg(crate::webrtc::leg::LegError),
    Codec(crate::media::codec::CodecError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Sdp(e) => write!(f, "{e:?}"),
            SetupError::NoOpus => f.write_str("the echo service needs Opus in the offer"),
            SetupError::Leg(e) => write!(f, "{e:?}"),
            SetupError::Codec(e) => write!(f, "{e:?}"),
        }
    }
}

/// Counters for the end-of-call log line.
#[derive(Default, Debug)]
struct Counters {
    rtp_in: u64,
    rtp_out: u64,
    rtcp_in: u64,
    srtp_errors: u64,
}

pub struct EchoCall {
    leg: WebRtcLeg,
    echo: Echo,
    /// Unprotects what the browser sends / protects what srgate sends (after DTLS).
    rx: Option<SrtpContext>,
    tx: Option<SrtpContext>,
    /// Setup traffic of the leg (STUN answers, DTLS flights) waiting to be sent.
    pending: VecDeque<Transmit>,
    counters: Counters,
    /// DTLS connected: the call counts as answered (media can flow both ways).
    connected: bool,
    /// `connected` became true and the user has not been told yet.
    newly_connected: bool,
}

impl EchoCall {
    /// Negotiates the offer and builds the leg and pipeline; returns the SDP answer too.
    pub fn new(s: Setup<'_>) -> Result<(EchoCall, String), SetupError> {
        let offer = Offer::parse(s.offer).map_err(SetupError::Sdp)?;
        // Echo runs Opus → PCM → Opus; other codecs come with the SIP bridge.
        let policy = AnswerPolicy {
            codecs: s
                .codecs
                .iter()
                .copied()
                .filter(|c| *c == Codec::Opus)
                .collect(),
        };
        if policy.codecs.is_empty() {
            return Err(SetupError::NoOpus);
        }
        let negotiated = negotiate(&offer, &policy).map_err(SetupError::Sdp)?;
        if negotiated.codec != Codec::Opus {
            return Err(SetupError::NoOpus);
        }
        let ice = IceCredentials {
            ufrag: s.ufrag.to_string(),
            pwd: s.pwd.to_string(),
        };
        let candidates = [s.media_addr];
        let leg = WebRtcLeg::new(s.now, s.dtls, &ice, &candidates, &negotiated)
            .map_err(SetupError::Leg)?;
        let echo = Echo::new(EchoConfig {
            payload_type: negotiated.payload_type,
            pcm_rate: SampleRate::Hz48000,
            opus_complexity: s.opus_complexity,
            ssrc: s.ssrc,
            initial_sequence: s.sequence,
            initial_timestamp: s.timestamp,
        })
        .map_err(SetupError::Codec)?;
        let answer = build_answer(
            &negotiated,
            &LocalDescription {
                ice: &ice,
                fingerprint: s.dtls.fingerprint(),
                candidates: &candidates,
                ssrc: s.ssrc,
                cname: "srgate",
                session_id: s.session_id,
            },
        );
        let mut call = EchoCall {
            leg,
            echo,
            rx: None,
            tx: None,
            pending: VecDeque::new(),
            counters: Counters::default(),
            connected: false,
            newly_connected: false,
        };
        call.collect();
        Ok((call, answer))
    }

    /// Moves the leg's setup datagrams to our queue.
    fn collect(&mut self) {
        while let Some(t) = self.leg.poll_transmit() {
            self.pending.push_back(t);
        }
    }

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        data: &mut [u8],
    ) -> Step {
        self.leg.handle_receive(now, from, local, data);
        let step = self.drain_events(now, Some(data));
        self.collect();
        step
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Step {
        self.leg.handle_timeout(now);
        let step = self.drain_events(now, None);
        self.collect();
        step
    }

    fn drain_events(&mut self, now: Instant, mut data: Option<&mut [u8]>) -> Step {
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
                        _ => step = Step::Failed("ERROR"),
                    }
                }
                LegEvent::RtpReceived { range, rtcp } => {
                    let (Some(data), Some(rx)) = (data.as_deref_mut(), self.rx.as_mut()) else {
                        continue;
                    };
                    let Some(packet) = data.get_mut(range) else {
                        continue;
                    };
                    if rtcp {
                        match rx.unprotect_rtcp(packet) {
                            Ok(_) => self.counters.rtcp_in += 1,
                            Err(_) => self.counters.srtp_errors += 1,
                        }
                        continue;
                    }
                    match rx.unprotect_rtp(packet) {
                        Ok(len) => {
                            self.counters.rtp_in += 1;
                            if let Some(plain) = packet.get(..len) {
                                let _ = self.echo.push_rtp(now, plain);
                            }
                        }
                        Err(_) => self.counters.srtp_errors += 1,
                    }
                }
                LegEvent::Failed { reason } => {
                    log::info!("WebRTC leg failed: {reason:?}");
                    step = Step::Failed(match reason {
                        FailReason::ConsentExpired | FailReason::NoConnectivity => "TIMEOUT",
                        _ => "ERROR",
                    });
                }
                LegEvent::Closed => step = Step::Failed("REMOTE"),
            }
        }
        step
    }

    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<MediaTransmit> {
        if let Some(t) = self.pending.pop_front() {
            let len = t.contents.len().min(buf.len());
            buf[..len].copy_from_slice(&t.contents[..len]);
            return Some(MediaTransmit {
                destination: t.destination,
                len,
            });
        }
        let destination = self.leg.remote()?;
        let tx = self.tx.as_mut()?;
        let room = buf.len().checked_sub(SRTP_TAIL)?;
        // Bounded: the echo yields at most what is due at `now`.
        for _ in 0..16 {
            let n = self.echo.poll_rtp(now, &mut buf[..room])?;
            match tx.protect_rtp(buf, n) {
                Ok(len) => {
                    self.counters.rtp_out += 1;
                    return Some(MediaTransmit { destination, len });
                }
                Err(_) => self.counters.srtp_errors += 1,
            }
        }
        None
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let leg = self.leg.poll_timeout();
        // The echo's 20 ms cadence matters only once it can send.
        let echo = if self.tx.is_some() {
            self.echo.poll_timeout()
        } else {
            None
        };
        match (leg, echo) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True once, when DTLS has just connected: time to say ACCEPTED_BY_REMOTE.
    pub fn take_newly_connected(&mut self) -> bool {
        std::mem::take(&mut self.newly_connected)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn close(&mut self) {
        self.leg.close();
    }

    pub fn summary(&self) -> String {
        let s = self.echo.stats();
        format!(
            "RTP in {} out {}, RTCP in {}, SRTP errors {}, PLC {} FEC {}",
            self.counters.rtp_in,
            self.counters.rtp_out,
            self.counters.rtcp_in,
            self.counters.srtp_errors,
            s.plc_frames,
            s.fec_frames
        )
    }
}
