//! One bridged call (B2BUA): the browser's side ([`BrowserSide`]) and a SIP leg (a dialog
//! driven through the SIP endpoint, RTP on a port of `[media] rtp_ports`, or SRTP keyed by
//! SDES when the SIP side offers or answers `RTP/SAVP`, see `[media] sip_srtp`), with the
//! media [`Bridge`] between them: relayed when both sides use the same codec, otherwise
//! transcoded Opus ⇄ G.711.
//!
//! The SIP side's RTP is symmetric (RFC 4961 practice): srgate sends to the address the
//! SDP names until packets arrive, then to the source they actually come from (phones
//! behind NAT), and takes RTP only from that source until a re-offer changes the address. A call whose SIP side sends nothing for `[media] rtp_timeout` ends, except
//! while the SIP side holds it (its SDP says sendonly or inactive).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::browser::BrowserSide;
use super::latch::RtpSource;
use super::video::VideoLeg;
use super::{MediaSocket, MediaTransmit, Step};
use crate::media::bridge::{Bridge, BridgeConfig, BridgeMode, LegFormat, PushError};
use crate::media::codec::{Codec as MediaCodec, FRAME, g711::Law};
use crate::media::jitter::JitterConfig;
use crate::media::relay::RelayArena;
use crate::media::transcode::{MAX_PACKET_TIME, MIN_PACKET_TIME};
use crate::sdp::Codec;
use crate::sdp::CodecSet;
use crate::sdp::answer::Direction;
use crate::sdp::sdes::{self, SdesKey};
use crate::sdp::sip::{
    BRIDGED, RemoteRtp, RemoteVideo, RtpDescription, VideoDescription, answer_layout,
    build_rtp_sdp, keep_video_format, pick_format,
};
use crate::sip::endpoint::SipCallId;
use crate::webrtc::srtp::SrtpContext;

/// Tail room kept for the SRTP/SRTCP trailer when srgate protects toward SIP.
const SRTP_ROOM: usize = 32;
/// The largest SRTP datagram from the SIP side that is unprotected.
const SRTP_MAX_IN: usize = 1500;

/// The SIP leg's SRTP: one context a direction, and where received packets are
/// unprotected (the receive buffer is shared, so they are copied first).
struct SipSrtp {
    send: SrtpContext,
    recv: SrtpContext,
    scratch: [u8; SRTP_MAX_IN],
}

/// `data` as plain RTP (RTCP): itself on a plain leg, else unprotected in the leg's
/// scratch buffer. `None`: refused (too large, forged, replayed).
fn unprotect<'a>(srtp: Option<&'a mut SipSrtp>, data: &'a [u8], rtcp: bool) -> Option<&'a [u8]> {
    let Some(srtp) = srtp else {
        return Some(data);
    };
    let packet = srtp.scratch.get_mut(..data.len())?;
    packet.copy_from_slice(data);
    let n = if rtcp {
        srtp.recv.unprotect_rtcp(packet)
    } else {
        srtp.recv.unprotect_rtp(packet)
    };
    packet.get(..n.ok()?)
}

/// The payload type srgate uses for telephone-event/8000 in its own SIP offers.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// Who called whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// An app user called a SIP number.
    AppToSip,
    /// A SIP caller called an app user.
    SipToApp,
}

impl Way {
    pub fn name(self) -> &'static str {
        match self {
            Way::AppToSip => "app_to_sip",
            Way::SipToApp => "sip_to_app",
        }
    }
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// App → SIP: the INVITE is out, nothing heard yet.
    Calling,
    /// App → SIP: 180/183 came.
    Early,
    /// SIP → app: the app user was invited and has not answered.
    Offered,
    /// SIP → app: the app user accepted; the 200 goes out once the browser's DTLS is up.
    Accepting,
    /// SIP → app: the app user previews the caller (its early media, a 183) before
    /// answering; nothing of the browser goes to the caller.
    Previewing,
    /// Both sides talk.
    Answered,
}

/// The media codec of an SDP codec, if the bridge can code it.
pub fn media_codec(codec: Codec) -> Option<MediaCodec> {
    match codec {
        Codec::Opus => Some(MediaCodec::Opus),
        Codec::Pcmu => Some(MediaCodec::G711(Law::Mu)),
        Codec::Pcma => Some(MediaCodec::G711(Law::A)),
        Codec::G722 => Some(MediaCodec::G722),
    }
}

/// The codecs srgate offers or accepts on SIP (G.711, G.722 and Opus), in the configured
/// order.
pub fn sip_codecs(configured: &[Codec]) -> Vec<Codec> {
    configured
        .iter()
        .copied()
        .filter(|c| BRIDGED.contains(c))
        .collect()
}

/// Random values of one call's outgoing streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamIds {
    pub ssrc_webrtc: u32,
    pub ssrc_sip: u32,
    pub seq_webrtc: u16,
    pub seq_sip: u16,
    pub ts_webrtc: u32,
    pub ts_sip: u32,
}

/// Packet counters of the SIP leg.
#[derive(Debug, Default, Clone, Copy)]
pub struct SipCounters {
    pub rtp_in: u64,
    pub rtp_out: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// Datagrams that the bridge refused (malformed, wrong payload type, late).
    pub refused: u64,
}

pub struct BridgeCall {
    pub way: Way,
    pub sip: SipCallId,
    /// The SIP party: the number called, or the caller.
    pub peer: String,
    pub phase: Phase,
    pub browser: Option<BrowserSide>,
    media: Option<Bridge>,
    ids: StreamIds,
    /// The SIP leg's RTP port (RTCP: port + 1).
    pub port: u16,
    rtp_ip: IpAddr,
    /// srgate's SDP toward SIP (offer or answer) until it is sent (then empty).
    pub local_sdp: String,
    /// The SIP side's media, from its SDP.
    remote: Option<RemoteRtp>,
    sip_format: Option<(u8, Codec)>,
    /// Which source RTP is taken from and sent back to (symmetric RTP, guarded).
    source: RtpSource,
    last_sip_rtp: Instant,
    /// Invitation timeout (Calling, Early, Offered) or the accept's DTLS wait (Accepting).
    pub deadline: Option<Instant>,
    pub started: Instant,
    pub answered: Option<Instant>,
    /// The SIP leg still exists at the endpoint (a hangup must reach it).
    pub sip_alive: bool,
    /// The last digits the app user keyed (`[door] open_dtmf`).
    pub keyed: super::door::Keyed,
    pub sip_counters: SipCounters,
    pub opus_complexity: u8,
    /// `[media] rtp_timeout`.
    pub rtp_timeout: Duration,
    /// The codecs the SIP side's SDP may pick (`[media] codecs`, bridged ones).
    pub sip_allowed: CodecSet,
    /// srgate made the SDP offer toward SIP (app → SIP, or an offerless INVITE): the SIP
    /// side's description is an answer to it.
    pub srgate_offers: bool,
    /// srgate's SDES keys toward SIP: those of its offer (one a suite) until the answer
    /// picks one, then that one; empty for plain RTP.
    sdes_local: Vec<SdesKey>,
    /// Set once both sides' keys are known: from then on the SIP leg is SRTP only.
    srtp: Option<Box<SipSrtp>>,
    /// The SIP side's video passed through to the browser, when both have it.
    pub video: Option<Box<VideoLeg>>,
    /// SIP → app: the call comes from another app user inside srgate (no preview then).
    pub internal: bool,
    /// SIP → app: srgate made the browser an offer with these ICE credentials (`ufrag`,
    /// `pwd`): the `accept` carries the browser's answer to it (a SIP-over-WebSocket
    /// client, whose INVITE must carry an offer).
    pub browser_offer: Option<(String, String)>,
}

impl BridgeCall {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        way: Way,
        sip: SipCallId,
        peer: String,
        phase: Phase,
        ids: StreamIds,
        port: u16,
        rtp_ip: IpAddr,
        opus_complexity: u8,
    ) -> Self {
        BridgeCall {
            way,
            sip,
            peer,
            phase,
            browser: None,
            media: None,
            ids,
            port,
            rtp_ip,
            local_sdp: String::new(),
            remote: None,
            sip_format: None,
            source: RtpSource::default(),
            last_sip_rtp: now,
            deadline: None,
            started: now,
            answered: None,
            sip_alive: true,
            keyed: Default::default(),
            sip_counters: SipCounters::default(),
            opus_complexity,
            rtp_timeout: Duration::from_secs(30),
            sip_allowed: CodecSet::of(&BRIDGED),
            srgate_offers: way == Way::AppToSip,
            sdes_local: Vec::new(),
            srtp: None,
            video: None,
            internal: false,
            browser_offer: None,
        }
    }

    /// Makes srgate's SIP offer an SRTP one (`[media] sip_srtp = mandatory`): a fresh key
    /// for each suite srgate implements.
    pub fn offer_srtp(&mut self) -> Result<(), getrandom::Error> {
        self.sdes_local = sdes::OFFERED
            .iter()
            .zip(1..)
            .map(|(p, tag)| SdesKey::generate(tag, *p))
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Whether the SIP leg is SRTP.
    pub fn is_srtp(&self) -> bool {
        self.srtp.is_some()
    }

    /// Takes the SIP side's SDES key (answer to srgate's offer, or its offer, for which
    /// srgate makes a fresh key of the same suite) and builds the SRTP contexts. A plain
    /// description after an SRTP offer is refused; a later description (re-offer, 200
    /// after 183) keeps srgate's key and, when the SIP side changed its own (a re-offer
    /// may, RFC 4568 §7.1.4), takes the new one for what it sends.
    fn apply_crypto(&mut self, remote: &RemoteRtp) -> Result<(), &'static str> {
        let Some(theirs) = remote.crypto.as_ref() else {
            return if self.sdes_local.is_empty() {
                Ok(())
            } else {
                Err("plain RTP from the SIP side after SRTP")
            };
        };
        if let Some(srtp) = self.srtp.as_mut() {
            let previous = self.remote.as_ref().and_then(|r| r.crypto.as_ref());
            if previous != Some(theirs) {
                let ours = self.sdes_local.first();
                if ours.is_none_or(|k| k.tag != theirs.tag || k.profile != theirs.profile) {
                    return Err("a re-offer's a=crypto changes the suite");
                }
                srtp.recv = theirs.context().map_err(|_| "SRTP context setup failed")?;
            }
            return Ok(());
        }
        // The SIP side offered (srgate answers with a key of its own), or it answered
        // srgate's offer (with one of the suites srgate offered, under the same tag; an
        // offerless INVITE's answer in the ACK too).
        let local = if !self.srgate_offers {
            SdesKey::generate(theirs.tag, theirs.profile)
                .map_err(|_| "no random numbers for an SRTP key")?
        } else {
            self.sdes_local
                .iter()
                .find(|k| k.tag == theirs.tag && k.profile == theirs.profile)
                .cloned()
                .ok_or("the SIP side's a=crypto answers none of srgate's")?
        };
        let (Ok(send), Ok(recv)) = (local.context(), theirs.context()) else {
            return Err("SRTP context setup failed");
        };
        self.sdes_local = vec![local];
        self.srtp = Some(Box::new(SipSrtp {
            send,
            recv,
            scratch: [0; SRTP_MAX_IN],
        }));
        Ok(())
    }

    /// srgate's SSRC toward the browser.
    pub fn ids_ssrc_sip(&self) -> u32 {
        self.ids.ssrc_sip
    }

    pub fn ids_ssrc_webrtc(&self) -> u32 {
        self.ids.ssrc_webrtc
    }

    /// The SIP side's telephone-event payload type, if its SDP had one.
    pub fn remote_telephone_event(&self) -> Option<u8> {
        self.remote.as_ref().and_then(|r| r.telephone_event)
    }

    /// srgate's SIP address for media.
    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.rtp_ip, self.port)
    }

    /// srgate's SDP toward SIP with `codecs` (payload type, codec) and `direction`.
    pub fn build_sip_sdp(
        &self,
        codecs: &[(u8, Codec)],
        telephone_event: Option<u8>,
        direction: Direction,
        session_id: u64,
    ) -> String {
        // an answer mirrors the offer's sections: video where srgate takes it, the others
        // rejected in place (RFC 3264 §6)
        let layout = match (&self.remote, self.srgate_offers) {
            (Some(remote), false) => answer_layout(remote, self.video_answer()),
            _ => Vec::new(),
        };
        build_rtp_sdp(&RtpDescription {
            addr: self.rtp_addr(),
            codecs,
            telephone_event,
            direction,
            session_id,
            version: 1,
            ptime: self.sip_ptime(),
            crypto: &self.sdes_local,
            // a best-effort offer is answered in kind (srgate's own offers are RTP/SAVP)
            best_effort: !self.srgate_offers && self.remote.as_ref().is_some_and(|r| r.best_effort),
            layout: &layout,
        })
    }

    /// SIP → app, the browser's media up: the caller's 200 with srgate's answer (needed
    /// no more once sent); the call is answered. Returns its media mode (for the metrics).
    pub fn answer_sip(
        &mut self,
        now: Instant,
        sip: &mut dyn super::link::SipLink,
    ) -> Option<BridgeMode> {
        sip.answer(now, self.sip, &std::mem::take(&mut self.local_sdp));
        self.phase = Phase::Answered;
        self.answered = Some(now);
        self.deadline = None;
        self.touch_rtp(now);
        self.mode()
    }

    /// Whether the app may `preview` this invitation: a SIP caller's own offer (srgate's
    /// answer goes in a 183; a ring group's members one at a time, the endpoint sees to
    /// it), not an app's call inside srgate.
    pub fn may_preview(&self) -> bool {
        !self.srgate_offers && !self.internal && self.remote.is_some()
    }

    /// srgate's video section toward SIP, when the call passes the SIP side's video on.
    fn video_answer(&self) -> Option<&VideoDescription> {
        self.video.as_ref().map(|v| &v.answer)
    }

    /// The SIP side's video, when srgate can pass it to the browser: offered in plain RTP
    /// (`RTP/AVP(F)`) by a side that sends it, on a call whose audio is not SRTP either
    /// (srgate's SDES keys cover the audio section only).
    pub fn sip_video_offer(&self) -> Option<&RemoteVideo> {
        let remote = self.remote.as_ref()?;
        let video = remote.video.as_ref()?;
        let proto = &remote.sections.get(video.index)?.proto;
        let plain = proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF");
        let sends = matches!(video.direction, Direction::SendOnly | Direction::SendRecv);
        (plain
            && sends
            && remote.crypto.is_none()
            && self.sdes_local.is_empty()
            && !self.srgate_offers)
            .then_some(video)
    }

    /// srgate's answer toward SIP written again (the video section taken, once the browser
    /// took the video), when it is an answer not sent yet.
    pub fn rewrite_answer(&mut self) {
        if self.srgate_offers || self.local_sdp.is_empty() {
            return;
        }
        let Some(format) = self.sip_format else {
            return;
        };
        let session_id = self
            .local_sdp
            .lines()
            .find_map(|l| l.strip_prefix("o=srgate "))
            .and_then(|o| o.split_whitespace().next())
            .and_then(|id| id.parse().ok());
        let Some(session_id) = session_id else {
            return;
        };
        let te = self.remote_telephone_event();
        self.local_sdp = self.build_sip_sdp(&[format], te, Direction::SendRecv, session_id);
    }

    /// A datagram on the video leg's RTP (`rtcp == false`) or RTCP port.
    pub fn handle_sip_video(&mut self, from: SocketAddr, data: &[u8], rtcp: bool) {
        if let Some(video) = self.video.as_mut() {
            video.handle_sip(from, data, rtcp);
        }
    }

    /// Whether `port` is the video leg's RTP or RTCP port.
    pub fn is_video_port(&self, port: u16) -> bool {
        self.video
            .as_ref()
            .is_some_and(|v| port == v.port || port == v.port.wrapping_add(1))
    }

    /// The packet time of the SIP leg in ms: the SIP side's `a=ptime` when it is one
    /// srgate sends (10 to 60 ms: srgate's answer repeats it and transcoded G.711 goes out
    /// at it), else 20.
    fn sip_ptime(&self) -> u8 {
        let min = MIN_PACKET_TIME.as_millis();
        let max = MAX_PACKET_TIME.as_millis();
        self.remote
            .as_ref()
            .and_then(|r| r.ptime)
            .filter(|&p| (min..=max).contains(&u128::from(p)))
            .unwrap_or(20)
    }

    /// The SIP side's SDP (answer, early media, offer or re-offer): where to send, in
    /// which format. Builds the media bridge once both sides' formats are known; a
    /// re-offer without the codec in use moves the bridge to the one srgate's answer
    /// picked from it (the same [`pick_format`]).
    pub fn apply_remote(&mut self, now: Instant, remote: RemoteRtp) -> Result<(), &'static str> {
        // srgate offered plain RTP, or the session is plain already: a key in an RTP/AVP
        // section (the answer, a later re-offer) does not make it SRTP (the endpoint
        // answered such a re-offer plain)
        let remote = if self.sdes_local.is_empty() && (self.srgate_offers || self.remote.is_some())
        {
            remote.plain()
        } else {
            remote
        };
        let current = self.sip_format.map(|(_, c)| c);
        let Some(format) = pick_format(&remote.codecs, current, self.sip_allowed) else {
            return Err("no common codec with the SIP side");
        };
        let before = (
            self.sip_format,
            self.remote.as_ref().and_then(|r| r.telephone_event),
            self.sip_ptime(),
        );
        self.apply_crypto(&remote)?;
        self.source.set_expected(remote.addr);
        let (old_format, old_remote) =
            (self.sip_format.replace(format), self.remote.replace(remote));
        // the door's video follows its re-offer the way the endpoint's re-answer does
        // (the format it keeps, its new address), or stops when the re-offer has none
        if let Some(video) = self.video.as_mut() {
            let kept = self
                .remote
                .as_ref()
                .and_then(|r| r.video.as_ref())
                .and_then(|rv| {
                    keep_video_format(&video.answer.format, rv).map(|f| (rv.clone(), f))
                });
            video.update(kept);
        }
        let packet_time = self.sip_ptime();
        let te = self.remote.as_ref().and_then(|r| r.telephone_event);
        // the format in use moved (codec, its payload type, telephone-event or ptime)
        let changed = before.0.is_some() && before != (Some(format), te, packet_time);
        if changed && let Some(media) = self.media.as_mut() {
            let switched = media_codec(format.1)
                .ok_or("codec not supported by the bridge")
                .and_then(|codec| {
                    let ptime = Duration::from_millis(u64::from(packet_time));
                    media
                        .switch_sip_format(now, codec, format.0, te, ptime)
                        .map_err(|_| "codec setup failed")
                });
            if let Err(why) = switched {
                // the media goes on as it was
                self.sip_format = old_format;
                self.remote = old_remote;
                return Err(why);
            }
            return Ok(());
        }
        self.ensure_media()
    }

    /// The browser side, once it answered.
    pub fn set_browser(&mut self, browser: BrowserSide) -> Result<(), &'static str> {
        self.browser = Some(browser);
        self.ensure_media()
    }

    fn ensure_media(&mut self) -> Result<(), &'static str> {
        if self.media.is_some() {
            return Ok(());
        }
        let (Some(browser), Some((sip_pt, sip_codec)), Some(remote)) =
            (self.browser.as_ref(), self.sip_format, self.remote.as_ref())
        else {
            return Ok(());
        };
        let n = browser.negotiated();
        let (Some(webrtc_codec), Some(sip_media)) = (media_codec(n.codec), media_codec(sip_codec))
        else {
            return Err("codec not supported by the bridge");
        };
        let config = BridgeConfig {
            webrtc: LegFormat {
                codec: webrtc_codec,
                payload_type: n.payload_type,
                dtmf_payload_type: n.telephone_event.map(|t| t.payload_type),
                dtmf_clock: n.telephone_event.map_or(8000, |t| t.clock_rate),
                packet_time: FRAME,
                ssrc: self.ids.ssrc_webrtc,
                initial_sequence: self.ids.seq_webrtc,
                initial_timestamp: self.ids.ts_webrtc,
            },
            sip: LegFormat {
                codec: sip_media,
                payload_type: sip_pt,
                dtmf_payload_type: remote.telephone_event,
                dtmf_clock: 8000,
                packet_time: Duration::from_millis(u64::from(self.sip_ptime())),
                ssrc: self.ids.ssrc_sip,
                initial_sequence: self.ids.seq_sip,
                initial_timestamp: self.ids.ts_sip,
            },
            opus_complexity: self.opus_complexity,
            jitter: JitterConfig::new(webrtc_codec.clock_rate()),
        };
        match Bridge::new(config) {
            Ok(bridge) => {
                self.media = Some(bridge);
                Ok(())
            }
            Err(_) => Err("codec setup failed"),
        }
    }

    pub fn mode(&self) -> Option<BridgeMode> {
        self.media.as_ref().map(Bridge::mode)
    }

    pub fn media(&self) -> Option<&Bridge> {
        self.media.as_ref()
    }

    pub fn sip_format(&self) -> Option<(u8, Codec)> {
        self.sip_format
    }

    /// Whether the SIP side is expected to send: its SDP says sendrecv. On hold (sendonly:
    /// music on hold, which many phones do not play; inactive) or when it only receives,
    /// silence is normal.
    fn remote_sends(&self) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|r| r.direction == Direction::SendRecv && !r.addr.ip().is_unspecified())
    }

    /// Where srgate sends RTP to the SIP side.
    fn sip_destination(&self) -> Option<SocketAddr> {
        if let Some(addr) = self.source.latched() {
            return Some(addr);
        }
        let remote = self.remote.as_ref()?;
        if remote.addr.ip().is_unspecified() || remote.addr.port() == 0 {
            return None;
        }
        Some(remote.addr)
    }

    fn sip_rtcp_destination(&self) -> Option<SocketAddr> {
        let rtp = self.sip_destination()?;
        Some(SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)))
    }

    /// May srgate send toward the SIP side (not while the SIP side holds the call with
    /// `sendonly`/`inactive` toward us... RFC 3264 §5.1: our answer then says recvonly or
    /// inactive, so we must not send).
    fn may_send_sip(&self) -> bool {
        self.phase != Phase::Previewing
            && self
                .remote
                .as_ref()
                .is_some_and(|r| !matches!(r.direction, Direction::SendOnly | Direction::Inactive))
    }

    /// A datagram from the browser.
    pub fn handle_browser(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        data: &mut [u8],
        arena: &mut RelayArena,
    ) -> Step {
        let Some(browser) = self.browser.as_mut() else {
            return Step::Continue;
        };
        let media = &mut self.media;
        let video = &mut self.video;
        browser.handle_datagram(now, from, local, data, &mut |now, packet, rtcp| {
            if rtcp && let Some(video) = video.as_mut() {
                video.handle_browser_rtcp(now, packet);
            }
            if let Some(media) = media.as_mut() {
                if rtcp {
                    media.handle_rtcp_webrtc(now, packet);
                } else {
                    let _ = media.push_webrtc(now, packet, arena);
                }
            }
        })
    }

    /// A datagram on the SIP leg's RTP (`rtcp == false`) or RTCP port; a relayed packet
    /// waits in the shard's `arena`.
    pub fn handle_sip(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        rtcp: bool,
        arena: &mut RelayArena,
    ) {
        if rtcp {
            if !self.source.admits_rtcp(from) {
                self.sip_counters.refused += 1;
                return;
            }
            let Some(data) = unprotect(self.srtp.as_deref_mut(), data, true) else {
                self.sip_counters.refused += 1;
                return;
            };
            self.sip_counters.rtcp_in += 1;
            if let Some(media) = self.media.as_mut() {
                media.handle_rtcp_sip(now, data);
            }
            return;
        }
        let Some(media) = self.media.as_mut() else {
            return;
        };
        // Symmetric RTP, guarded (see `latch`): the SDP's address always, another source
        // only where the SDP's address cannot be the real one (NAT), never a stranger
        // over the phone.
        if !self.source.admits(from) {
            self.sip_counters.refused += 1;
            return;
        }
        // SRTP: a packet that fails authentication or replay is refused like a
        // stranger's, the latch unmoved.
        let Some(data) = unprotect(self.srtp.as_deref_mut(), data, false) else {
            self.sip_counters.refused += 1;
            return;
        };
        match media.push_sip(now, data, arena) {
            // A packet the shard had no room for in this wake-up (counted there) still
            // came from the phone: the source and the silence clock count it.
            Ok(()) | Err(PushError::Full) => {
                self.sip_counters.rtp_in += 1;
                self.last_sip_rtp = now;
                self.source.latch(from);
            }
            Err(_) => self.sip_counters.refused += 1,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Step {
        match self.browser.as_mut() {
            Some(browser) => browser.handle_timeout(now),
            None => Step::Continue,
        }
    }

    /// Whether the SIP side has been silent too long (only while it should be sending).
    pub fn rtp_timed_out(&self, now: Instant, timeout: Duration) -> bool {
        self.phase == Phase::Answered
            && self.remote_sends()
            && now.saturating_duration_since(self.last_sip_rtp) >= timeout
    }

    /// Restarts the silence clock (after the answer or a re-offer).
    pub fn touch_rtp(&mut self, now: Instant) {
        self.last_sip_rtp = now;
    }

    pub fn send_dtmf(&mut self, now: Instant, digits: &str) -> bool {
        match self.media.as_mut() {
            Some(media) => media.send_dtmf(now, digits).is_ok(),
            None => false,
        }
    }

    pub fn poll_dtmf(&mut self) -> Option<char> {
        self.media.as_mut()?.poll_dtmf()
    }

    /// A digit the browser keyed in its media (RFC 4733 from its RTCDTMFSender).
    pub fn poll_browser_dtmf(&mut self) -> Option<char> {
        self.media.as_mut()?.poll_browser_dtmf()
    }

    /// The next datagram of the call: setup traffic, then media both ways, then RTCP.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        ntp: u64,
        buf: &mut [u8],
        arena: &RelayArena,
    ) -> Option<MediaTransmit> {
        let browser = self.browser.as_mut()?;
        if let Some(t) = browser.poll_setup(buf) {
            return Some(t);
        }
        let room = BrowserSide::room(buf.len())?;
        let media = self.media.as_mut()?;
        if browser.can_send() {
            // Bounded: the bridge yields only what is due at `now`.
            for _ in 0..16 {
                let Some(n) = media.poll_webrtc(now, &mut buf[..room], arena) else {
                    break;
                };
                if let Some(t) = browser.protect(buf, n, false) {
                    return Some(t);
                }
            }
            // the door's video, as it came (bounded: one packet a call, a turn)
            if let Some(video) = self.video.as_mut()
                && let Some(n) = video.poll_browser(&mut buf[..room])
                && let Some(t) = browser.protect(buf, n, false)
            {
                return Some(t);
            }
            if let Some(n) = media.poll_rtcp_webrtc(now, ntp, &mut buf[..room])
                && let Some(t) = browser.protect(buf, n, true)
            {
                return Some(t);
            }
        }
        // a picture request for the door (the browser's PLI or FIR)
        if let Some(video) = self.video.as_mut()
            && let Some((n, destination)) = video.poll_request(buf)
        {
            return Some(MediaTransmit {
                socket: MediaSocket::Rtp(video.port.wrapping_add(1)),
                destination,
                len: n,
            });
        }
        let destination = self.sip_destination();
        let may_send = self.may_send_sip();
        let media = self.media.as_mut()?;
        // Room for the SRTP trailer, protected in place.
        let room = buf.len().checked_sub(SRTP_ROOM)?;
        for _ in 0..16 {
            let Some(n) = media.poll_sip(now, &mut buf[..room], arena) else {
                break;
            };
            let n = match self.srtp.as_mut() {
                Some(srtp) => match srtp.send.protect_rtp(buf, n) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
                None => n,
            };
            if let (Some(destination), true) = (destination, may_send) {
                self.sip_counters.rtp_out += 1;
                return Some(MediaTransmit {
                    socket: MediaSocket::Rtp(self.port),
                    destination,
                    len: n,
                });
            }
            // Nowhere to send (hold, or no address yet): the packet is dropped, the
            // stream's clock keeps running.
        }
        if let (Some(n), Some(destination), true) = (
            media.poll_rtcp_sip(now, ntp, &mut buf[..room]),
            self.sip_rtcp_destination(),
            // nothing toward the caller before the answer of a preview
            self.phase != Phase::Previewing,
        ) {
            let n = match self.srtp.as_mut() {
                Some(srtp) => srtp.send.protect_rtcp(buf, n).ok()?,
                None => n,
            };
            self.sip_counters.rtcp_out += 1;
            return Some(MediaTransmit {
                socket: MediaSocket::Rtp(self.port.wrapping_add(1)),
                destination,
                len: n,
            });
        }
        None
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let browser = self.browser.as_mut().and_then(BrowserSide::poll_timeout);
        let media = self.media.as_ref().and_then(Bridge::poll_timeout);
        let silence = (self.phase == Phase::Answered && self.remote_sends())
            .then(|| self.last_sip_rtp + self.rtp_timeout);
        let own = super::earliest(self.deadline, silence);
        super::earliest(super::earliest(browser, media), own)
    }

    /// Ends the browser's leg; what it still has to send goes into `farewells`.
    pub fn close(
        &mut self,
        farewells: &mut std::collections::VecDeque<crate::webrtc::ice::Transmit>,
    ) {
        if let Some(browser) = self.browser.as_mut() {
            browser.close(farewells);
        }
    }
}
