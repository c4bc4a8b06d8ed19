//! What srgate answers to a browser's offer (RFC 3264) and the answer's text.
//!
//! srgate accepts the first audio section that is DTLS-SRTP with rtcp-mux and answers it
//! with exactly one codec (the first of [`AnswerPolicy::codecs`] the offer has) plus one
//! telephone-event format. Every other media section is rejected with port 0 (RFC 3264
//! §6) and left out of the BUNDLE group (RFC 8843 §7.3.3). srgate is an ICE-lite
//! answerer (RFC 8839 §5.3, session-level `a=ice-lite`) and answers `a=setup:passive` to
//! `actpass`: the browser, being the full ICE agent and controlling, opens DTLS as soon as
//! its checks succeed (RFC 5763 §5, RFC 8842 §5.3).

use core::fmt::Write;
use std::net::SocketAddr;

use super::offer::{MediaSection, Offer};
use super::sip::{VideoCodec, VideoFormat};
use super::{Codec, Error, Fingerprint, Setup};

/// The answerer's choices that come from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerPolicy {
    /// Enabled codecs, most preferred first (`[media] codecs`).
    pub codecs: Vec<Codec>,
}

impl Default for AnswerPolicy {
    fn default() -> Self {
        AnswerPolicy {
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722],
        }
    }
}

/// ICE username fragment and password (RFC 8839 §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// The telephone-event format srgate answers (RFC 4733).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub payload_type: u8,
    pub clock_rate: u32,
}

/// Media direction of srgate's side, as the answer states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction for an offered one (RFC 3264 §6.1).
    fn answering(offered: Option<&str>) -> Self {
        match offered {
            Some("sendonly") => Direction::RecvOnly,
            Some("recvonly") => Direction::SendOnly,
            Some("inactive") => Direction::Inactive,
            _ => Direction::SendRecv,
        }
    }
}

/// The outcome of negotiation: everything the WebRTC leg and the media path need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec both sides use.
    pub codec: Codec,
    /// Its payload type (the offer's number; the answer echoes it).
    pub payload_type: u8,
    /// The telephone-event format, if the offer had one.
    pub telephone_event: Option<TelephoneEvent>,
    /// The browser's first `a=ssrc`, if it announced one.
    pub remote_ssrc: Option<u32>,
    /// The browser's ICE credentials.
    pub remote_ice: IceCredentials,
    /// The fingerprint the browser's DTLS certificate must match.
    pub remote_fingerprint: Fingerprint,
    /// The audio section's mid, echoed in the answer.
    pub mid: Option<String>,
    /// Whether the audio mid was in the offer's BUNDLE group.
    pub bundle: bool,
    /// srgate's setup: [`Setup::Passive`] (DTLS server) or [`Setup::Active`] (client).
    pub setup: Setup,
    /// srgate's direction.
    pub direction: Direction,
    /// Index of the audio section in the offer.
    pub media_index: usize,
    /// Every offered section, so the answer can reject the others in order.
    pub offered: Vec<OfferedSection>,
    /// The video section srgate sends into, when it takes one ([`negotiate_video`]).
    pub video: Option<NegotiatedVideo>,
}

/// A browser video section srgate answers: it sends one format into it, passed through
/// from the SIP side (never transcoded), and takes picture requests (PLI, FIR) back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedVideo {
    /// Index of the section in the offer.
    pub index: usize,
    pub mid: Option<String>,
    /// The browser's payload type for the format and its `a=fmtp` (the answer echoes both).
    pub payload_type: u8,
    pub codec: VideoCodec,
    pub fmtp: String,
    /// srgate's direction: `sendonly`, or `inactive` when the browser will not receive.
    pub direction: Direction,
}

/// The browser's video section and payload type for the SIP side's `formats` (its order of
/// preference): the first video section bundled with the audio one that takes one of them
/// (H.264 of the same packetization mode, the same profile if it has it, else any of that
/// mode; VP8 as VP8). `None` when the browser offered no such section.
pub fn negotiate_video(
    offer: &Offer,
    negotiated: &Negotiated,
    formats: &[VideoFormat],
) -> Option<(NegotiatedVideo, VideoFormat)> {
    let (index, media) = offer.media.iter().enumerate().find(|(i, m)| {
        m.kind == "video"
            && m.port != 0
            && *i != negotiated.media_index
            && m.proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVPF")
            && negotiated.bundle
            && match (&offer.bundle, &m.mid) {
                (Some(group), Some(mid)) => group.contains(mid),
                _ => false,
            }
    })?;
    let browser = super::sip::video_formats(media);
    // the first 4 hex digits of profile-level-id: profile_idc and constraints
    let profile = |f: &VideoFormat| {
        f.h264_profile()
            .map(|p| p.get(..4).unwrap_or(p).to_ascii_lowercase())
    };
    let (ours, theirs) = formats.iter().find_map(|sip| {
        let same_kind = |b: &&VideoFormat| {
            b.codec == sip.codec
                && (sip.codec != VideoCodec::H264 || b.h264_mode() == sip.h264_mode())
        };
        let exact = browser
            .iter()
            .filter(same_kind)
            .find(|b| sip.codec != VideoCodec::H264 || profile(b) == profile(sip));
        exact
            .or_else(|| browser.iter().find(same_kind))
            .map(|b| (sip.clone(), b.clone()))
    })?;
    let direction = match media.direction.as_deref() {
        Some("sendonly") | Some("inactive") => Direction::Inactive,
        _ => Direction::SendOnly,
    };
    Some((
        NegotiatedVideo {
            index,
            mid: media.mid.clone(),
            payload_type: theirs.payload_type,
            codec: theirs.codec,
            fmtp: theirs.fmtp,
            direction,
        },
        ours,
    ))
}

/// What the answer echoes of an offered section it rejects (RFC 3264 §6, RFC 8829 §5.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedSection {
    pub kind: String,
    pub proto: String,
    /// The first offered format (a rejected section still needs one).
    pub format: String,
    pub mid: Option<String>,
}

/// Picks the audio section, codec, DTLS role and remote credentials.
pub fn negotiate(offer: &Offer, policy: &AnswerPolicy) -> Result<Negotiated, Error> {
    let (media_index, media) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == "audio" && m.port != 0)
        .ok_or(Error::NoAudio)?;

    let proto = media.proto.to_ascii_uppercase();
    if proto != "UDP/TLS/RTP/SAVPF" && proto != "UDP/TLS/RTP/SAVP" {
        return Err(Error::NotDtlsSrtp);
    }
    if !media.rtcp_mux {
        return Err(Error::NoRtcpMux);
    }

    let remote_ice = ice_credentials(offer, media)?;
    let remote_fingerprint = fingerprint(offer, media)?;

    let offered_setup = media
        .transport
        .setup
        .as_deref()
        .or(offer.session.setup.as_deref());
    let setup = match offered_setup.map(Setup::from_name) {
        // RFC 5763 §5: an offer without a=setup is treated as actpass.
        None | Some(Some(Setup::ActPass | Setup::Active)) => Setup::Passive,
        Some(Some(Setup::Passive)) => Setup::Active,
        Some(Some(Setup::HoldConn)) | Some(None) => return Err(Error::BadSetup),
    };

    let (codec, payload_type) = policy
        .codecs
        .iter()
        .find_map(|&c| find_codec(media, c).map(|pt| (c, pt)))
        .ok_or(Error::NoCommonCodec)?;

    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: telephone_event(media, codec.clock_rate()),
        remote_ssrc: media.ssrcs.first().copied(),
        remote_ice,
        remote_fingerprint,
        mid: media.mid.clone(),
        bundle: match (&offer.bundle, &media.mid) {
            (Some(group), Some(mid)) => group.contains(mid),
            _ => false,
        },
        setup,
        direction: Direction::answering(media.direction.as_deref()),
        media_index,
        offered: offer
            .media
            .iter()
            .map(|m| OfferedSection {
                kind: m.kind.clone(),
                proto: m.proto.clone(),
                format: m.formats.first().cloned().unwrap_or_else(|| "0".to_owned()),
                mid: m.mid.clone(),
            })
            .collect(),
        video: None,
    })
}

/// RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/".
fn is_ice_chars(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn ice_credentials(offer: &Offer, media: &MediaSection) -> Result<IceCredentials, Error> {
    let ufrag = media
        .transport
        .ice_ufrag
        .as_ref()
        .or(offer.session.ice_ufrag.as_ref());
    let pwd = media
        .transport
        .ice_pwd
        .as_ref()
        .or(offer.session.ice_pwd.as_ref());
    match (ufrag, pwd) {
        (Some(u), Some(p)) if is_ice_chars(u) && is_ice_chars(p) => Ok(IceCredentials {
            ufrag: u.clone(),
            pwd: p.clone(),
        }),
        _ => Err(Error::BadIceCredentials),
    }
}

fn fingerprint(offer: &Offer, media: &MediaSection) -> Result<Fingerprint, Error> {
    // Media-level fingerprints replace session-level ones (RFC 8122 §5).
    let level = if media.transport.fingerprints.is_empty()
        && !media.transport.unsupported_fingerprint
        && !media.transport.bad_fingerprint
    {
        &offer.session
    } else {
        &media.transport
    };
    if let Some(f) = level.fingerprints.first() {
        return Ok(f.clone());
    }
    Err(if level.bad_fingerprint {
        Error::BadFingerprint
    } else if level.unsupported_fingerprint {
        Error::UnsupportedFingerprint
    } else {
        Error::NoFingerprint
    })
}

/// The offered payload type of `codec`, by rtpmap or by static payload type.
fn find_codec(media: &MediaSection, codec: Codec) -> Option<u8> {
    media.payload_types().find(|&pt| {
        match media.rtpmaps.iter().find(|m| m.payload_type == pt) {
            Some(map) => {
                map.encoding.eq_ignore_ascii_case(codec.encoding_name())
                    && map.clock_rate == codec.clock_rate()
                    // Opus must be signalled with 2 channels (RFC 7587 §7).
                    && (codec != Codec::Opus || map.channels == 2)
            }
            None => codec.static_payload_type() == Some(pt),
        }
    })
}

/// The offered telephone-event at the codec's clock rate, else any offered one.
fn telephone_event(media: &MediaSection, clock_rate: u32) -> Option<TelephoneEvent> {
    let offered: Vec<TelephoneEvent> = media
        .payload_types()
        .filter_map(|pt| {
            media
                .rtpmaps
                .iter()
                .find(|m| {
                    m.payload_type == pt && m.encoding.eq_ignore_ascii_case("telephone-event")
                })
                .map(|m| TelephoneEvent {
                    payload_type: pt,
                    clock_rate: m.clock_rate,
                })
        })
        .collect();
    offered
        .iter()
        .find(|t| t.clock_rate == clock_rate)
        .or(offered.first())
        .copied()
}

/// srgate's side of the answer.
#[derive(Debug, Clone, Copy)]
pub struct LocalDescription<'a> {
    pub ice: &'a IceCredentials,
    /// The fingerprint of srgate's DTLS certificate.
    pub fingerprint: &'a Fingerprint,
    /// Host candidates, in preference order; the first is the default address.
    pub candidates: &'a [SocketAddr],
    /// ICE-TCP (RFC 6544): each candidate's address is also a passive TCP candidate,
    /// below every UDP one in priority.
    pub tcp: bool,
    /// The SSRC srgate sends with.
    pub ssrc: u32,
    /// The SSRC of srgate's video toward the browser (used with a video section).
    pub video_ssrc: u32,
    /// RTCP CNAME (RFC 7022).
    pub cname: &'a str,
    /// `o=` session id (RFC 8866 §5.2), random per call.
    pub session_id: u64,
}

/// Host candidate priority (RFC 8445 §5.1.2.1): type preference 126, local preference
/// descending with the candidate's rank, component 1.
fn host_priority(rank: usize) -> u32 {
    let local_pref = 65535u32.saturating_sub(u32::try_from(rank).unwrap_or(u32::MAX));
    (126 << 24) | (local_pref << 8) | 255
}

/// A passive TCP host candidate's priority (RFC 6544 §4.2): local preference
/// 2^13 · 4 (passive) + other preference, so below every UDP host candidate.
fn tcp_passive_priority(rank: usize) -> u32 {
    let other = 8191u32.saturating_sub(u32::try_from(rank).unwrap_or(u32::MAX));
    (126 << 24) | (((4 << 13) | other) << 8) | 255
}

fn ip_words(addr: &SocketAddr) -> (&'static str, String) {
    match addr {
        SocketAddr::V4(a) => ("IP4", a.ip().to_string()),
        SocketAddr::V6(a) => ("IP6", a.ip().to_string()),
    }
}

/// srgate's offer toward a browser (a SIP-over-WebSocket client, whose INVITE must carry
/// one): one audio section with one `codec` (and telephone-event at its clock rate),
/// `a=setup:actpass`, ICE-lite, BUNDLE'd and rtcp-mux, srgate's candidates. The browser's
/// answer then goes through [`negotiate`] as if it were an offer: its `active` makes srgate
/// the DTLS server, its codec is this one.
pub fn build_offer(codec: Codec, local: &LocalDescription<'_>) -> String {
    let payload_type = match codec {
        Codec::Opus => 111,
        other => other.static_payload_type().unwrap_or(111),
    };
    let clock_rate = if codec == Codec::Opus { 48_000 } else { 8000 };
    let offered = Negotiated {
        codec,
        payload_type,
        telephone_event: Some(TelephoneEvent {
            payload_type: if clock_rate == 48_000 { 110 } else { 101 },
            clock_rate,
        }),
        remote_ssrc: None,
        remote_ice: IceCredentials {
            ufrag: String::new(),
            pwd: String::new(),
        },
        remote_fingerprint: Fingerprint::of_certificate(super::HashAlgorithm::Sha256, &[]),
        mid: Some("0".into()),
        bundle: true,
        setup: Setup::ActPass,
        direction: Direction::SendRecv,
        media_index: 0,
        offered: vec![OfferedSection {
            kind: "audio".into(),
            proto: "UDP/TLS/RTP/SAVPF".into(),
            format: payload_type.to_string(),
            mid: Some("0".into()),
        }],
        video: None,
    };
    build_answer(&offered, local)
}

/// Writes the answer for `negotiated` (CRLF line ends, RFC 8866 §5).
pub fn build_answer(negotiated: &Negotiated, local: &LocalDescription<'_>) -> String {
    let mut s = String::with_capacity(1024);
    // Writing into a String cannot fail; the results are ignored on purpose.
    let (addr_type, addr) = local
        .candidates
        .first()
        .map(ip_words)
        .unwrap_or(("IP4", "0.0.0.0".to_owned()));
    let port = local.candidates.first().map_or(9, SocketAddr::port);

    let _ = write!(
        s,
        "v=0\r\no=- {} 2 IN {addr_type} {addr}\r\ns=-\r\nt=0 0\r\n",
        local.session_id
    );
    if negotiated.bundle
        && let Some(mid) = &negotiated.mid
    {
        let _ = write!(s, "a=group:BUNDLE {mid}");
        if let Some(video_mid) = negotiated.video.as_ref().and_then(|v| v.mid.as_ref()) {
            let _ = write!(s, " {video_mid}");
        }
        s.push_str("\r\n");
    }
    s.push_str("a=ice-lite\r\n");
    let _ = write!(s, "a=msid-semantic: WMS srgate\r\n");

    for (i, section) in negotiated.offered.iter().enumerate() {
        if let Some(v) = negotiated.video.as_ref().filter(|v| v.index == i) {
            write_video(&mut s, negotiated, v, local, port, addr_type, &addr);
            continue;
        }
        if i != negotiated.media_index {
            // Rejected: port 0, the offered proto and a format, the mid (RFC 3264 §6).
            let _ = write!(
                s,
                "m={} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\n",
                section.kind, section.proto, section.format
            );
            if let Some(mid) = &section.mid {
                let _ = write!(s, "a=mid:{mid}\r\n");
            }
            continue;
        }
        write_audio(&mut s, negotiated, local, port, addr_type, &addr);
    }
    s
}

/// The video section: the same transport as the audio one (BUNDLE), one format.
fn write_video(
    s: &mut String,
    n: &Negotiated,
    v: &NegotiatedVideo,
    local: &LocalDescription<'_>,
    port: u16,
    addr_type: &str,
    addr: &str,
) {
    let pt = v.payload_type;
    let _ = write!(
        s,
        "m=video {port} UDP/TLS/RTP/SAVPF {pt}\r\nc=IN {addr_type} {addr}\r\n"
    );
    if let Some(mid) = &v.mid {
        let _ = write!(s, "a=mid:{mid}\r\n");
    }
    let _ = write!(
        s,
        "a={}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{}\r\na=rtcp-mux\r\n\
         a=rtpmap:{pt} {}/90000\r\n",
        v.direction.name(),
        local.ice.ufrag,
        local.ice.pwd,
        local.fingerprint,
        n.setup.name(),
        v.codec.encoding_name(),
    );
    if !v.fmtp.is_empty() {
        let _ = write!(s, "a=fmtp:{pt} {}\r\n", v.fmtp);
    }
    let _ = write!(
        s,
        "a=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n\
         a=ssrc:{ssrc} cname:{cname}\r\na=ssrc:{ssrc} msid:srgate video\r\na=msid:srgate video\r\n",
        ssrc = local.video_ssrc,
        cname = local.cname
    );
}

fn write_audio(
    s: &mut String,
    n: &Negotiated,
    local: &LocalDescription<'_>,
    port: u16,
    addr_type: &str,
    addr: &str,
) {
    let _ = write!(s, "m=audio {port} UDP/TLS/RTP/SAVPF {}", n.payload_type);
    if let Some(te) = n.telephone_event {
        let _ = write!(s, " {}", te.payload_type);
    }
    let _ = write!(s, "\r\nc=IN {addr_type} {addr}\r\n");
    if let Some(mid) = &n.mid {
        let _ = write!(s, "a=mid:{mid}\r\n");
    }
    let _ = write!(
        s,
        "a={}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{}\r\na=rtcp-mux\r\n",
        n.direction.name(),
        local.ice.ufrag,
        local.ice.pwd,
        local.fingerprint,
        n.setup.name(),
    );
    let codec = n.codec;
    if codec.channels() > 1 {
        let _ = write!(
            s,
            "a=rtpmap:{} {}/{}/{}\r\n",
            n.payload_type,
            codec.encoding_name(),
            codec.clock_rate(),
            codec.channels()
        );
    } else {
        let _ = write!(
            s,
            "a=rtpmap:{} {}/{}\r\n",
            n.payload_type,
            codec.encoding_name(),
            codec.clock_rate()
        );
    }
    if codec == Codec::Opus {
        let _ = write!(
            s,
            "a=fmtp:{} minptime=10;useinbandfec=1\r\n",
            n.payload_type
        );
    }
    if let Some(te) = n.telephone_event {
        let _ = write!(
            s,
            "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} 0-15\r\n",
            pt = te.payload_type,
            rate = te.clock_rate
        );
    }
    let _ = write!(
        s,
        "a=ssrc:{ssrc} cname:{cname}\r\na=ssrc:{ssrc} msid:srgate audio\r\na=msid:srgate audio\r\n",
        ssrc = local.ssrc,
        cname = local.cname
    );
    for (rank, c) in local.candidates.iter().enumerate() {
        let _ = write!(
            s,
            "a=candidate:{} 1 udp {} {} {} typ host\r\n",
            rank + 1,
            host_priority(rank),
            c.ip(),
            c.port()
        );
    }
    if local.tcp {
        for (rank, c) in local.candidates.iter().enumerate() {
            let _ = write!(
                s,
                "a=candidate:{} 1 tcp {} {} {} typ host tcptype passive\r\n",
                local.candidates.len() + rank + 1,
                tcp_passive_priority(rank),
                c.ip(),
                c.port()
            );
        }
    }
    s.push_str("a=end-of-candidates\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::HashAlgorithm;
    use super::super::offer::tests::{CHROME_OFFER, FIREFOX_OFFER};
    use super::*;

    fn policy(codecs: &[Codec]) -> AnswerPolicy {
        AnswerPolicy {
            codecs: codecs.to_vec(),
        }
    }

    fn negotiate_str(sdp: &str, p: &AnswerPolicy) -> Result<Negotiated, Error> {
        negotiate(&Offer::parse(sdp)?, p)
    }

    #[test]
    fn chrome_opus() {
        let n = negotiate_str(CHROME_OFFER, &AnswerPolicy::default()).unwrap();
        assert_eq!(n.codec, Codec::Opus);
        assert_eq!(n.payload_type, 111);
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 110,
                clock_rate: 48000
            })
        );
        assert_eq!(n.remote_ssrc, Some(3735928559));
        assert_eq!(n.remote_ice.ufrag, "Qx7v");
        assert_eq!(n.remote_ice.pwd, "hM3kP9tTq2LwZ8aRb5NcYf1e");
        assert_eq!(n.remote_fingerprint.algorithm(), HashAlgorithm::Sha256);
        assert_eq!(n.remote_fingerprint.bytes()[31], 0xB0);
        assert_eq!(n.mid.as_deref(), Some("0"));
        assert!(n.bundle);
        assert_eq!(n.setup, Setup::Passive);
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn chrome_g711_when_preferred() {
        let n = negotiate_str(CHROME_OFFER, &policy(&[Codec::Pcma, Codec::Opus])).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        assert_eq!(n.telephone_event.map(|t| t.payload_type), Some(126));
        let n = negotiate_str(CHROME_OFFER, &policy(&[Codec::G722])).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::G722, 9));
        assert_eq!(n.telephone_event.map(|t| t.clock_rate), Some(8000));
    }

    #[test]
    fn firefox_opus_with_8000_events() {
        let n = negotiate_str(FIREFOX_OFFER, &AnswerPolicy::default()).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Opus, 109));
        // Firefox offers only telephone-event/8000: srgate takes it.
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 8000
            })
        );
        // Session-level fingerprint.
        assert_eq!(n.remote_fingerprint.bytes()[0], 0xA1);
        assert_eq!(n.remote_ice.ufrag, "9f8e7d6c");
        assert_eq!(n.remote_ssrc, Some(1193046));
    }

    #[test]
    fn static_payload_type_without_rtpmap() {
        let sdp = CHROME_OFFER.replace("a=rtpmap:0 PCMU/8000\r\n", "");
        let n = negotiate_str(&sdp, &policy(&[Codec::Pcmu])).unwrap();
        assert_eq!(n.payload_type, 0);
    }

    #[test]
    fn refusals() {
        let p = AnswerPolicy::default();
        let cases: Vec<(String, Error)> = vec![
            (
                CHROME_OFFER.replace("m=audio 9", "m=audio 0"),
                Error::NoAudio,
            ),
            (CHROME_OFFER.replace("m=audio", "m=video"), Error::NoAudio),
            (
                CHROME_OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"),
                Error::NotDtlsSrtp,
            ),
            (CHROME_OFFER.replace("a=rtcp-mux\r\n", ""), Error::NoRtcpMux),
            (
                CHROME_OFFER.replace("a=ice-pwd:hM3kP9tTq2LwZ8aRb5NcYf1e\r\n", ""),
                Error::BadIceCredentials,
            ),
            (
                CHROME_OFFER.replace("a=ice-ufrag:Qx7v", "a=ice-ufrag:Qx 7v:"),
                Error::BadIceCredentials,
            ),
            (
                CHROME_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1"),
                Error::UnsupportedFingerprint,
            ),
            (
                CHROME_OFFER.replace("3C:41:", "3C:4:"),
                Error::BadFingerprint,
            ),
            (
                CHROME_OFFER.replace("a=setup:actpass", "a=setup:holdconn"),
                Error::BadSetup,
            ),
        ];
        for (sdp, err) in cases {
            assert_eq!(negotiate_str(&sdp, &p), Err(err));
        }
        let no_fp: String = CHROME_OFFER
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(negotiate_str(&no_fp, &p), Err(Error::NoFingerprint));
        assert_eq!(
            negotiate_str(FIREFOX_OFFER, &policy(&[])),
            Err(Error::NoCommonCodec)
        );
        let only_opus = FIREFOX_OFFER.replace("109 9 0 8 101", "109 101");
        assert_eq!(
            negotiate_str(&only_opus, &policy(&[Codec::Pcmu, Codec::G722])),
            Err(Error::NoCommonCodec)
        );
    }

    #[test]
    fn setup_roles() {
        let p = AnswerPolicy::default();
        let passive = CHROME_OFFER.replace("a=setup:actpass", "a=setup:passive");
        assert_eq!(negotiate_str(&passive, &p).unwrap().setup, Setup::Active);
        let active = CHROME_OFFER.replace("a=setup:actpass", "a=setup:active");
        assert_eq!(negotiate_str(&active, &p).unwrap().setup, Setup::Passive);
        let none = CHROME_OFFER.replace("a=setup:actpass\r\n", "");
        assert_eq!(negotiate_str(&none, &p).unwrap().setup, Setup::Passive);
        let sendonly = CHROME_OFFER.replace("a=sendrecv", "a=sendonly");
        assert_eq!(
            negotiate_str(&sendonly, &p).unwrap().direction,
            Direction::RecvOnly
        );
    }

    #[test]
    fn ice_tcp_adds_passive_tcp_candidates_below_the_udp_ones() {
        let n = negotiate_str(CHROME_OFFER, &AnswerPolicy::default()).unwrap();
        let ice = IceCredentials {
            ufrag: "srgU".into(),
            pwd: "abcdefghijklmnopqrstuvwx".into(),
        };
        let fp = Fingerprint::of_certificate(HashAlgorithm::Sha256, b"cert");
        let cands = ["192.0.2.7:20000".parse().unwrap()];
        let local = LocalDescription {
            ice: &ice,
            fingerprint: &fp,
            candidates: &cands,
            tcp: true,
            ssrc: 42,
            video_ssrc: 0,
            cname: "c",
            session_id: 7,
        };
        let a = build_answer(&n, &local);
        let udp = "a=candidate:1 1 udp 2130706431 192.0.2.7 20000 typ host\r\n";
        let tcp = format!(
            "a=candidate:2 1 tcp {} 192.0.2.7 20000 typ host tcptype passive\r\n",
            (126u32 << 24) | (((4 << 13) | 8191) << 8) | 255
        );
        assert!(a.contains(udp) && a.contains(&tcp), "{a}");
        assert!(tcp_passive_priority(0) < host_priority(3));
        assert!(a.find(&tcp).unwrap() < a.find("a=end-of-candidates").unwrap());
    }

    #[test]
    fn answer_text() {
        let n = negotiate_str(CHROME_OFFER, &AnswerPolicy::default()).unwrap();
        let ice = IceCredentials {
            ufrag: "srgU".into(),
            pwd: "abcdefghijklmnopqrstuvwx".into(),
        };
        let fp = Fingerprint::of_certificate(HashAlgorithm::Sha256, b"cert");
        let cands = [
            "192.0.2.7:20000".parse().unwrap(),
            "[2001:db8::7]:20000".parse().unwrap(),
        ];
        let local = LocalDescription {
            ice: &ice,
            fingerprint: &fp,
            candidates: &cands,
            tcp: false,
            ssrc: 42,
            video_ssrc: 0,
            cname: "srgatecname",
            session_id: 7,
        };
        let a = build_answer(&n, &local);
        let lines: Vec<&str> = a.split("\r\n").collect();
        for want in [
            "v=0",
            "o=- 7 2 IN IP4 192.0.2.7",
            "a=group:BUNDLE 0",
            "a=ice-lite",
            "m=audio 20000 UDP/TLS/RTP/SAVPF 111 110",
            "c=IN IP4 192.0.2.7",
            "a=mid:0",
            "a=sendrecv",
            "a=ice-ufrag:srgU",
            "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            &format!("a=fingerprint:sha-256 {}", fp.hex()),
            "a=setup:passive",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:110 telephone-event/48000",
            "a=fmtp:110 0-15",
            "a=ssrc:42 cname:srgatecname",
            "a=candidate:1 1 udp 2130706431 192.0.2.7 20000 typ host",
            "a=candidate:2 1 udp 2130706175 2001:db8::7 20000 typ host",
            "a=end-of-candidates",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{a}");
        }
        assert!(a.ends_with("\r\n"));
        // ice-lite is session level: before the first m= line.
        assert!(a.find("a=ice-lite").unwrap() < a.find("m=audio").unwrap());
        // The answer is itself readable, and negotiating it back gives our values.
        let back = Offer::parse(&a).unwrap();
        assert!(back.session.ice_lite);
        assert_eq!(back.media[0].transport.fingerprints[0], fp);
        assert_eq!(back.media[0].ssrcs, [42]);
    }

    #[test]
    fn answer_rejects_extra_sections() {
        let sdp = CHROME_OFFER.to_owned()
            + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n";
        let sdp = sdp.replace("a=group:BUNDLE 0", "a=group:BUNDLE 0 1");
        let n = negotiate_str(&sdp, &AnswerPolicy::default()).unwrap();
        let ice = IceCredentials {
            ufrag: "u".into(),
            pwd: "p".into(),
        };
        let fp = Fingerprint::of_certificate(HashAlgorithm::Sha256, b"c");
        let a = build_answer(
            &n,
            &LocalDescription {
                ice: &ice,
                fingerprint: &fp,
                candidates: &[],
                tcp: false,
                ssrc: 1,
                video_ssrc: 0,
                cname: "c",
                session_id: 1,
            },
        );
        assert!(a.contains("m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"));
        assert!(a.contains("a=group:BUNDLE 0\r\n"));
        assert!(a.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\n"));
        assert!(a.find("m=audio").unwrap() < a.find("m=video").unwrap());
    }

    /// Chrome's offer with a `recvonly` video section (H.264 in both modes, VP8) bundled
    /// with the audio.
    fn chrome_with_video(direction: &str, bundled: bool) -> String {
        let group = if bundled {
            "a=group:BUNDLE 0 1"
        } else {
            "a=group:BUNDLE 0"
        };
        CHROME_OFFER.replace("a=group:BUNDLE 0", group)
            + &format!(
                "m=video 9 UDP/TLS/RTP/SAVPF 96 102 104 108\r\nc=IN IP4 0.0.0.0\r\n\
                 a=ice-ufrag:Qx7v\r\na=ice-pwd:hM3kP9tTq2LwZ8aRb5NcYf1e\r\na=mid:1\r\n\
                 a={direction}\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n\
                 a=rtpmap:102 H264/90000\r\n\
                 a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
                 a=rtpmap:104 H264/90000\r\n\
                 a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
                 a=rtpmap:108 H264/90000\r\n\
                 a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
            )
    }

    fn door(codec: VideoCodec, fmtp: &str) -> VideoFormat {
        VideoFormat {
            payload_type: 97,
            codec,
            fmtp: fmtp.into(),
        }
    }

    #[test]
    fn a_browser_video_section_takes_the_doors_format() {
        let offer = Offer::parse(&chrome_with_video("recvonly", true)).unwrap();
        let n = negotiate(&offer, &AnswerPolicy::default()).unwrap();
        // H.264 mode 1 42e01f: the browser's exact profile (108), not the first H.264 (102)
        let h264 = door(
            VideoCodec::H264,
            "profile-level-id=42E01F;packetization-mode=1",
        );
        let (v, ours) = negotiate_video(&offer, &n, std::slice::from_ref(&h264)).unwrap();
        assert_eq!(
            (v.index, v.payload_type, v.mid.as_deref()),
            (1, 108, Some("1"))
        );
        assert_eq!(v.direction, Direction::SendOnly);
        assert_eq!(ours, h264);
        // mode 0: the mode-0 format
        let mode0 = door(VideoCodec::H264, "profile-level-id=42e01f");
        let (v, _) = negotiate_video(&offer, &n, &[mode0]).unwrap();
        assert_eq!(v.payload_type, 104);
        // another profile: an H.264 of the same mode
        let main = door(
            VideoCodec::H264,
            "profile-level-id=4d0032;packetization-mode=1",
        );
        assert_eq!(
            negotiate_video(&offer, &n, &[main]).unwrap().0.payload_type,
            102
        );
        // VP8 as VP8; the door's order decides
        let vp8 = door(VideoCodec::Vp8, "");
        let (v, _) = negotiate_video(&offer, &n, &[vp8.clone(), h264.clone()]).unwrap();
        assert_eq!((v.payload_type, v.codec), (96, VideoCodec::Vp8));

        // the answer: video in the BUNDLE group, srgate's SSRC, the browser's fmtp
        let mut n = n;
        n.video = Some(
            negotiate_video(&offer, &n, std::slice::from_ref(&h264))
                .unwrap()
                .0,
        );
        let ice = IceCredentials {
            ufrag: "srgU".into(),
            pwd: "abcdefghijklmnopqrstuvwx".into(),
        };
        let fp = Fingerprint::of_certificate(HashAlgorithm::Sha256, b"cert");
        let cands = ["192.0.2.7:20000".parse().unwrap()];
        let local = LocalDescription {
            ice: &ice,
            fingerprint: &fp,
            candidates: &cands,
            tcp: false,
            ssrc: 42,
            video_ssrc: 4242,
            cname: "c",
            session_id: 7,
        };
        let a = build_answer(&n, &local);
        assert!(a.contains("a=group:BUNDLE 0 1\r\n"), "{a}");
        assert!(a.contains("m=video 20000 UDP/TLS/RTP/SAVPF 108\r\n"), "{a}");
        assert!(a.contains("a=mid:1\r\na=sendonly\r\n"), "{a}");
        assert!(
            a.contains("a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"),
            "{a}"
        );
        assert!(a.contains("a=rtcp-fb:108 nack pli\r\n"), "{a}");
        assert!(a.contains("a=ssrc:4242 cname:c\r\n"), "{a}");
        assert!(a.find("m=audio").unwrap() < a.find("m=video").unwrap());

        // not bundled, or the door has nothing the browser takes: no video
        let unbundled = Offer::parse(&chrome_with_video("recvonly", false)).unwrap();
        let n2 = negotiate(&unbundled, &AnswerPolicy::default()).unwrap();
        assert!(negotiate_video(&unbundled, &n2, std::slice::from_ref(&h264)).is_none());
        let mode2 = door(VideoCodec::H264, "packetization-mode=2");
        assert!(negotiate_video(&offer, &n2, &[mode2]).is_none());
        // a browser that will not receive: inactive
        let inactive = Offer::parse(&chrome_with_video("inactive", true)).unwrap();
        let n3 = negotiate(&inactive, &AnswerPolicy::default()).unwrap();
        let (v, _) = negotiate_video(&inactive, &n3, &[h264]).unwrap();
        assert_eq!(v.direction, Direction::Inactive);
    }
}
