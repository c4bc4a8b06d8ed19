//! Session descriptions of the SIP side: RTP (`RTP/AVP`, RFC 3551) or SRTP keyed by SDES
//! (`RTP/SAVP` with `a=crypto`, RFC 4568, see [`super::sdes`]), the way phones and PBXs
//! offer and answer (RFC 3264). srgate builds its offers and answers with [`build_rtp_sdp`]
//! and reads the other side's with [`parse_rtp_sdp`].
//!
//! What is read: the first audio section with a non-zero port, its `c=` (media level,
//! else session level; `0.0.0.0` is the RFC 2543 hold), its formats (static payload types
//! 0 PCMU, 8 PCMA, 9 G722 understood without `a=rtpmap`, dynamic ones through it),
//! `telephone-event/8000`, the direction, `a=ptime` and, for `RTP/SAVP(F)`, the first
//! usable `a=crypto` line. Codecs srgate does not know are skipped.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::answer::Direction;
use super::offer::Offer;
use super::sdes::{self, SdesKey};
use super::{Codec, CodecSet, Error};

/// srgate's side of a plain-RTP session.
#[derive(Debug, Clone)]
pub struct RtpDescription<'a> {
    /// The RTP address (`c=` and the `m=` port).
    pub addr: SocketAddr,
    /// Formats, most preferred first: (payload type, codec).
    pub codecs: &'a [(u8, Codec)],
    /// The payload type of `telephone-event/8000`, if offered.
    pub telephone_event: Option<u8>,
    pub direction: Direction,
    pub session_id: u64,
    pub version: u64,
    /// Packet time in milliseconds.
    pub ptime: u8,
    /// srgate's SDES keys: none for `RTP/AVP`; else `RTP/SAVP` with one `a=crypto` line a
    /// key (an offer may hold several suites, an answer holds one).
    pub crypto: &'a [SdesKey],
    /// The keys go in an `RTP/AVP` section: the answer to a "best effort" SRTP offer
    /// (see [`RemoteRtp::best_effort`]).
    pub best_effort: bool,
    /// The sections in order (an answer mirrors the offer's); empty: the audio one only.
    pub layout: &'a [Section<'a>],
}

/// A media section of a description as its answer must mirror it (RFC 3264 §6: one
/// section per offered one, in order; a rejected one keeps its kind and protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionShape {
    pub kind: String,
    pub proto: String,
    /// The first format (a rejected section still names one).
    pub format: String,
}

/// A video codec srgate passes through to browsers (never transcoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (RFC 6184), packetization-mode 1 (or 0: single NAL units, a subset).
    H264,
    /// VP8 (RFC 7741).
    Vp8,
}

impl VideoCodec {
    pub fn encoding_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
        }
    }
}

/// One video format of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFormat {
    pub payload_type: u8,
    pub codec: VideoCodec,
    /// The `a=fmtp` parameters as written (empty without one).
    pub fmtp: String,
}

impl VideoFormat {
    /// H.264's `profile-level-id` (`None` for VP8 or when not given).
    pub fn h264_profile(&self) -> Option<&str> {
        fmtp_value(&self.fmtp, "profile-level-id")
    }

    /// H.264's `packetization-mode` (0 when not given, RFC 6184 §8.1).
    pub fn h264_mode(&self) -> u8 {
        fmtp_value(&self.fmtp, "packetization-mode")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The value of `name` in `a=fmtp` parameters (`a=1;b=2`).
pub fn fmtp_value<'a>(fmtp: &'a str, name: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The other side's video section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteVideo {
    /// Its position among the description's sections.
    pub index: usize,
    /// Its transport (`RTP/AVP`, `RTP/AVPF`, ...).
    pub proto: String,
    /// Where its RTP goes, and its RTCP (`a=rtcp`, else the next port).
    pub addr: SocketAddr,
    pub rtcp: SocketAddr,
    /// The formats srgate passes through, in its order of preference.
    pub formats: Vec<VideoFormat>,
    pub direction: Direction,
    /// It named RTCP feedback for picture requests (`a=rtcp-fb:… nack pli` or `ccm fir`):
    /// a browser's request goes to it as RTCP; without, as SIP INFO too.
    pub feedback: bool,
}

/// srgate's video section: the format taken from the other side's offer, srgate's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoDescription {
    pub port: u16,
    /// The offered transport, kept in the answer (`RTP/AVP` or `RTP/AVPF`, RFC 3264 §6).
    pub proto: String,
    pub format: VideoFormat,
    pub direction: Direction,
    /// `a=rtcp-fb` for picture requests in the answer: only to an offer that is AVPF or
    /// named such feedback itself.
    pub feedback: bool,
}

impl VideoDescription {
    /// srgate's answer to `remote`'s video with `format` on `port`: its transport kept,
    /// `recvonly` (srgate sends no video back), `inactive` to a side that sends none.
    pub fn answering(remote: &RemoteVideo, format: VideoFormat, port: u16) -> VideoDescription {
        VideoDescription {
            port,
            proto: remote.proto.clone(),
            format,
            direction: match remote.direction {
                Direction::SendOnly | Direction::SendRecv => Direction::RecvOnly,
                _ => Direction::Inactive,
            },
            feedback: remote.feedback || remote.proto.eq_ignore_ascii_case("RTP/AVPF"),
        }
    }
}

/// One section of srgate's description, in order.
#[derive(Debug, Clone, Copy)]
pub enum Section<'a> {
    /// The audio section [`RtpDescription`] describes.
    Audio,
    /// An offered section srgate does not take (port 0).
    Rejected(&'a SectionShape),
    Video(&'a VideoDescription),
}

/// Writes a description (offer or answer alike).
pub fn build_rtp_sdp(d: &RtpDescription<'_>) -> String {
    let (family, ip) = match d.addr.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let mut sdp = String::with_capacity(320);
    // Writing into a String cannot fail.
    let _ = write!(
        sdp,
        "v=0\r\no=srgate {} {} IN {family} {ip}\r\ns=srgate\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        d.session_id, d.version,
    );
    let layout: &[Section<'_>] = if d.layout.is_empty() {
        &[Section::Audio]
    } else {
        d.layout
    };
    for section in layout {
        match section {
            Section::Audio => write_audio(&mut sdp, d),
            Section::Rejected(shape) => {
                let _ = write!(
                    sdp,
                    "m={} 0 {} {}\r\n",
                    shape.kind, shape.proto, shape.format
                );
            }
            Section::Video(v) => write_video(&mut sdp, v),
        }
    }
    sdp
}

/// srgate's video section: one format, passed through (RFC 4585 feedback for picture
/// requests; srgate forwards them).
fn write_video(sdp: &mut String, v: &VideoDescription) {
    let pt = v.format.payload_type;
    let _ = write!(
        sdp,
        "m=video {} {} {pt}\r\na=rtpmap:{pt} {}/90000\r\n",
        v.port,
        v.proto,
        v.format.codec.encoding_name()
    );
    if !v.format.fmtp.is_empty() {
        let _ = write!(sdp, "a=fmtp:{pt} {}\r\n", v.format.fmtp);
    }
    if v.feedback {
        let _ = write!(sdp, "a=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n");
    }
    let _ = write!(sdp, "a={}\r\n", v.direction.name());
}

fn write_audio(sdp: &mut String, d: &RtpDescription<'_>) {
    let _ = write!(
        sdp,
        "m=audio {} {}",
        d.addr.port(),
        if d.crypto.is_empty() || d.best_effort {
            "RTP/AVP"
        } else {
            "RTP/SAVP"
        }
    );
    for (pt, _) in d.codecs {
        let _ = write!(sdp, " {pt}");
    }
    if let Some(te) = d.telephone_event {
        let _ = write!(sdp, " {te}");
    }
    sdp.push_str("\r\n");
    for (pt, codec) in d.codecs {
        let _ = write!(
            sdp,
            "a=rtpmap:{pt} {}/{}",
            codec.encoding_name(),
            codec.clock_rate()
        );
        if codec.channels() > 1 {
            let _ = write!(sdp, "/{}", codec.channels());
        }
        sdp.push_str("\r\n");
    }
    for (pt, codec) in d.codecs {
        if *codec == Codec::Opus {
            // in-band FEC both ways (RFC 7587 §6.1)
            let _ = write!(sdp, "a=fmtp:{pt} useinbandfec=1\r\n");
        }
    }
    if let Some(te) = d.telephone_event {
        let _ = write!(
            sdp,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        );
    }
    let _ = write!(sdp, "a=ptime:{}\r\na={}\r\n", d.ptime, d.direction.name());
    for key in d.crypto {
        sdp.push_str(&key.attribute());
    }
}

/// The other side's plain-RTP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRtp {
    /// Where its RTP goes (`0.0.0.0`: on hold, RFC 2543 style).
    pub addr: SocketAddr,
    /// Known codecs in its order of preference.
    pub codecs: Vec<(u8, Codec)>,
    /// Its `telephone-event/8000` payload type.
    pub telephone_event: Option<u8>,
    /// Its direction (`sendrecv` when not stated).
    pub direction: Direction,
    pub ptime: Option<u8>,
    /// Its SDES key when the section is `RTP/SAVP(F)`: SRTP with this key, never plain;
    /// or when a plain `RTP/AVP` section carries a usable `a=crypto` ([`best_effort`]).
    ///
    /// [`best_effort`]: RemoteRtp::best_effort
    pub crypto: Option<SdesKey>,
    /// The key came in an `RTP/AVP` section: "best effort" SRTP (baresip's and linphone's
    /// optional SRTP, FreeSWITCH's and Asterisk's too): answered in kind (`RTP/AVP` with a
    /// key) it is SRTP; where SRTP is off, the key is dropped ([`RemoteRtp::plain`]) and
    /// the session is plain RTP, which such an offer allows.
    pub best_effort: bool,
    /// Every section of the description, in order (an answer mirrors them), and which of
    /// them is the audio one described here.
    pub sections: Vec<SectionShape>,
    pub audio_index: usize,
    /// Its first video section with a format srgate passes through (H.264, VP8).
    pub video: Option<RemoteVideo>,
}

impl RemoteRtp {
    /// This description without a "best effort" key: the plain session its sender also
    /// takes (a key in `RTP/SAVP` stays: such a peer must never be answered plain).
    pub fn plain(mut self) -> RemoteRtp {
        if self.best_effort {
            self.crypto = None;
            self.best_effort = false;
        }
        self
    }
}

fn direction(name: Option<&str>) -> Direction {
    match name {
        Some("sendonly") => Direction::SendOnly,
        Some("recvonly") => Direction::RecvOnly,
        Some("inactive") => Direction::Inactive,
        _ => Direction::SendRecv,
    }
}

/// The address of a `c=IN IP4 <addr>` value.
fn connection(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_whitespace();
    if parts.next()? != "IN" {
        return None;
    }
    let family = parts.next()?;
    // A multicast TTL suffix (`/127`) is not for unicast RTP; take the address part.
    let addr = parts.next()?.split('/').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    match (family, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

/// Reads the other side's description (see the module doc).
pub fn parse_rtp_sdp(sdp: &str) -> Result<RemoteRtp, Error> {
    let offer = Offer::parse(sdp)?;
    let audio = |m: &&crate::sdp::MediaSection| m.kind == "audio" && m.port != 0;
    // RTP, or SRTP keyed by SDES. Any other profile (DTLS-SRTP, ...) is refused: a peer
    // that asks for SRTP must not get an answer in the clear.
    let secure = |proto: &str| {
        proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF")
    };
    let known = |proto: &str| {
        proto.eq_ignore_ascii_case("RTP/AVP")
            || proto.eq_ignore_ascii_case("RTP/AVPF")
            || secure(proto)
    };
    let index = match offer
        .media
        .iter()
        .position(|m| audio(&m) && known(&m.proto))
    {
        Some(i) => i,
        None if offer.media.iter().any(|m| audio(&m)) => return Err(Error::NotPlainRtp),
        None => return Err(Error::NoAudio),
    };
    let media = &offer.media[index];
    // c= lines: the Offer reader skips them, so find the session one (before the first
    // m=) and the one of our section.
    let mut session_c = None;
    let mut media_c = None;
    let mut ptime = None;
    let mut crypto = Vec::new();
    let mut section: Option<usize> = None;
    // the video section's own c=, a=rtcp port and whether it asks for picture feedback
    let video_index = offer
        .media
        .iter()
        .position(|m| m.kind == "video" && m.port != 0 && known(&m.proto));
    let (mut video_c, mut video_rtcp, mut video_feedback) = (None, None, false);
    for line in sdp.split('\n').map(|l| l.trim_end_matches('\r').trim()) {
        if line.starts_with("m=") {
            section = Some(section.map_or(0, |s| s + 1));
            continue;
        }
        if section.is_some() && section == video_index {
            if let Some(value) = line.strip_prefix("c=") {
                video_c = connection(value);
            } else if let Some(value) = line.strip_prefix("a=rtcp:") {
                video_rtcp = value
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
            } else if let Some(value) = line.strip_prefix("a=rtcp-fb:") {
                let value = value.to_ascii_lowercase();
                video_feedback |= value.contains("nack pli") || value.contains("ccm fir");
            }
            continue;
        }
        if let Some(value) = line.strip_prefix("c=") {
            match section {
                None => session_c = connection(value),
                Some(s) if s == index => media_c = connection(value),
                _ => {}
            }
        } else if let Some(value) = line.strip_prefix("a=ptime:")
            && section == Some(index)
        {
            ptime = value.trim().parse::<u8>().ok();
        } else if let Some(value) = line.strip_prefix("a=crypto:")
            && section == Some(index)
        {
            crypto.push(value);
        }
    }
    // An SRTP section without a usable key is refused as a whole (never answered plain);
    // a=crypto in a plain section (a "best effort" offer) is taken when usable, else the
    // section is plain.
    let best_effort = !secure(&media.proto) && !crypto.is_empty();
    let crypto = if secure(&media.proto) {
        Some(sdes::choose(crypto).map_err(Error::Crypto)?)
    } else if best_effort {
        sdes::choose(crypto).ok()
    } else {
        None
    };
    let best_effort = best_effort && crypto.is_some();
    let ip = media_c.or(session_c).ok_or(Error::NoConnection)?;
    let mut codecs = Vec::new();
    let mut telephone_event = None;
    for pt in media.payload_types() {
        let map = media.rtpmaps.iter().find(|m| m.payload_type == pt);
        let codec = match map {
            Some(m) if m.encoding.eq_ignore_ascii_case("telephone-event") => {
                if m.clock_rate == 8000 && telephone_event.is_none() {
                    telephone_event = Some(pt);
                }
                continue;
            }
            Some(m) => [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus]
                .into_iter()
                .find(|c| {
                    c.encoding_name().eq_ignore_ascii_case(&m.encoding)
                        && c.clock_rate() == m.clock_rate
                }),
            // RFC 3551 static payload types need no rtpmap.
            None => [Codec::Pcmu, Codec::Pcma, Codec::G722]
                .into_iter()
                .find(|c| c.static_payload_type() == Some(pt)),
        };
        if let Some(codec) = codec {
            codecs.push((pt, codec));
        }
    }
    if codecs.is_empty() {
        return Err(Error::NoCommonCodec);
    }
    let video = video_index.and_then(|i| {
        let m = &offer.media[i];
        let ip = video_c.or(session_c)?;
        let formats: Vec<VideoFormat> = video_formats(m)
            .into_iter()
            // H.264 in a mode srgate can pass (0 and 1: no interleaving)
            .filter(|f| f.codec != VideoCodec::H264 || f.h264_mode() <= 1)
            .collect();
        (!formats.is_empty()).then(|| RemoteVideo {
            index: i,
            proto: m.proto.clone(),
            addr: SocketAddr::new(ip, m.port),
            rtcp: SocketAddr::new(ip, video_rtcp.unwrap_or(m.port.wrapping_add(1))),
            formats,
            direction: direction(m.direction.as_deref()),
            feedback: video_feedback,
        })
    });
    let sections = offer
        .media
        .iter()
        .map(|m| SectionShape {
            kind: m.kind.clone(),
            proto: m.proto.clone(),
            format: m.formats.first().cloned().unwrap_or_else(|| "0".into()),
        })
        .collect();
    Ok(RemoteRtp {
        addr: SocketAddr::new(ip, media.port),
        codecs,
        telephone_event,
        direction: direction(media.direction.as_deref()),
        ptime,
        crypto,
        best_effort,
        sections,
        audio_index: index,
        video,
    })
}

/// The format a re-offer's video keeps from the one in use (`current`): the same payload
/// type and codec, else the same codec (H.264: the same packetization mode); `None` when
/// the re-offer has neither (its video is then rejected). The endpoint's re-answer and
/// the call layer's video leg follow this one rule.
pub fn keep_video_format(current: &VideoFormat, offer: &RemoteVideo) -> Option<VideoFormat> {
    let same_kind = |f: &&VideoFormat| {
        f.codec == current.codec
            && (f.codec != VideoCodec::H264 || f.h264_mode() == current.h264_mode())
    };
    offer
        .formats
        .iter()
        .filter(same_kind)
        .find(|f| f.payload_type == current.payload_type)
        .or_else(|| offer.formats.iter().find(same_kind))
        .cloned()
}

/// The H.264 and VP8 formats of a video section (by `a=rtpmap`, 90 kHz), in its order.
pub fn video_formats(m: &crate::sdp::MediaSection) -> Vec<VideoFormat> {
    m.payload_types()
        .filter_map(|pt| {
            let map = m.rtpmaps.iter().find(|r| r.payload_type == pt)?;
            let codec = [VideoCodec::H264, VideoCodec::Vp8]
                .into_iter()
                .find(|c| c.encoding_name().eq_ignore_ascii_case(&map.encoding))?;
            (map.clock_rate == 90_000).then(|| VideoFormat {
                payload_type: pt,
                codec,
                fmtp: m.fmtp(pt).unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The sections of srgate's answer to `remote`: its audio one where the offer's is,
/// `video` where its video one is (when srgate takes it), every other one rejected.
pub fn answer_layout<'a>(
    remote: &'a RemoteRtp,
    video: Option<&'a VideoDescription>,
) -> Vec<Section<'a>> {
    remote
        .sections
        .iter()
        .enumerate()
        .map(|(i, shape)| {
            if i == remote.audio_index {
                Section::Audio
            } else if let (Some(v), Some(rv)) = (video, &remote.video)
                && rv.index == i
            {
                Section::Video(v)
            } else {
                Section::Rejected(shape)
            }
        })
        .collect()
}

/// The direction srgate answers to an offered one (RFC 3264 §6.1).
pub fn mirror(d: Direction) -> Direction {
    match d {
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        Direction::Inactive => Direction::Inactive,
        Direction::SendRecv => Direction::SendRecv,
    }
}

/// The SIP-side codecs srgate's media bridge carries: G.711 both laws, G.722 (transcoded
/// to and from the browser's Opus at 16 kHz, relayed to a G.722 browser) and Opus (relayed
/// to an Opus browser untouched). `[media] codecs` narrows them.
pub const BRIDGED: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

/// The payload type srgate gives Opus in its SIP offers (dynamic, RFC 3551 §3; the one
/// browsers use).
pub const OPUS_PT: u8 = 111;

/// The format srgate takes from an offer (or answer) `remote`: `current` (the codec in
/// use, under the payload type `remote` gives it) while `remote` still has it, else the
/// first of `remote`'s formats in `allowed` (the bridged codecs `[media] codecs` names);
/// `None` when it has none.
pub fn pick_format(
    remote: &[(u8, Codec)],
    current: Option<Codec>,
    allowed: CodecSet,
) -> Option<(u8, Codec)> {
    remote
        .iter()
        .copied()
        .find(|&(_, c)| Some(c) == current)
        .or_else(|| {
            remote
                .iter()
                .copied()
                .find(|&(_, c)| allowed.contains(c) && BRIDGED.contains(&c))
        })
}

/// srgate's answer to a re-offer in a dialog: its previous description with the version
/// one higher, the direction mirrored from the re-offer (a hold is accepted) and the codec
/// in use, or the re-offer's first one srgate carries when the codec in use is not
/// offered any more ([`pick_format`]; the call layer switches its media to it). `None`
/// (answered 488, the session goes on as it was) when the previous description cannot be
/// read, when the re-offer has no codec srgate carries, or when its security differs
/// from the session's (SRTP is never dropped by a re-offer, nor added, nor its suite
/// changed).
pub fn reanswer(previous: &str, offer: &RemoteRtp, allowed: CodecSet) -> Option<String> {
    let ours = parse_rtp_sdp(previous).ok()?;
    match (&ours.crypto, &offer.crypto) {
        (None, None) => {}
        // a plain session re-offered with a best-effort key stays plain
        (None, Some(_)) if offer.best_effort => {}
        // srgate's key stays; the offer must keep the suite under the same tag
        (Some(o), Some(t)) if o.tag == t.tag && o.profile == t.profile => {}
        _ => return None,
    }
    let (session_id, version) = origin(previous)?;
    let current = ours.codecs.first().map(|&(_, c)| c);
    let codecs = [pick_format(&offer.codecs, current, allowed)?];
    // video goes on as it was answered while the re-offer keeps its format; every other
    // section of the re-offer is rejected in place
    let video = ours.video.as_ref().and_then(|v| {
        let theirs = offer.video.as_ref()?;
        let format = keep_video_format(v.formats.first()?, theirs)?;
        Some(VideoDescription::answering(theirs, format, v.addr.port()))
    });
    let layout = answer_layout(offer, video.as_ref());
    Some(build_rtp_sdp(&RtpDescription {
        addr: ours.addr,
        codecs: &codecs,
        telephone_event: ours.telephone_event.and(offer.telephone_event),
        direction: mirror(offer.direction),
        session_id,
        version: version.saturating_add(1),
        ptime: ours.ptime.unwrap_or(20),
        crypto: ours.crypto.as_slice(),
        best_effort: offer.best_effort, // the answer takes the offer's transport
        layout: &layout,
    }))
}

/// srgate's fresh offer in the 2xx to an offerless re-INVITE: its previous description
/// with the version one higher and `sendrecv` (RFC 3264 §8: the codec in use, its
/// address and keys). `None` when the previous one cannot be read.
pub fn reoffer(previous: &str) -> Option<String> {
    let ours = parse_rtp_sdp(previous).ok()?;
    let (session_id, version) = origin(previous)?;
    // every section as it was (RFC 3264 §8: never fewer m= lines), video included
    let video = ours.video.as_ref().and_then(|v| {
        Some(VideoDescription {
            port: v.addr.port(),
            proto: v.proto.clone(),
            format: v.formats.first()?.clone(),
            direction: v.direction,
            feedback: v.feedback,
        })
    });
    let layout = answer_layout(&ours, video.as_ref());
    Some(build_rtp_sdp(&RtpDescription {
        addr: ours.addr,
        codecs: &ours.codecs,
        telephone_event: ours.telephone_event,
        direction: Direction::SendRecv,
        session_id,
        version: version.saturating_add(1),
        ptime: ours.ptime.unwrap_or(20),
        crypto: ours.crypto.as_slice(),
        best_effort: ours.best_effort,
        layout: &layout,
    }))
}

/// The session id and version of a description's `o=` line ((1, 1) without one).
fn origin(description: &str) -> Option<(u64, u64)> {
    let mut found = (1, 1);
    for line in description.lines() {
        if let Some(o) = line.trim().strip_prefix("o=") {
            let mut parts = o.split_whitespace().skip(1);
            found = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        }
    }
    Some(found)
}

/// srgate's offer once answered: the same description holding only the codec the answer
/// chose ([`pick_format`] of the answer), so that a later re-offer is answered with the
/// codec in use. `None` (the offer is kept as it is) when either cannot be read, when
/// the answer chose nothing srgate offered, or for an SRTP offer (its several keys are
/// not all read back here).
pub fn settle(offer: &str, answer: &RemoteRtp) -> Option<String> {
    let ours = parse_rtp_sdp(offer).ok()?;
    if ours.crypto.is_some() {
        return None;
    }
    let (session_id, version) = origin(offer)?;
    let (_, chosen) = pick_format(&answer.codecs, None, CodecSet::ALL)?;
    let codec = ours.codecs.iter().copied().find(|&(_, c)| c == chosen)?;
    Some(build_rtp_sdp(&RtpDescription {
        addr: ours.addr,
        codecs: &[codec],
        telephone_event: ours.telephone_event,
        direction: ours.direction,
        session_id,
        version,
        ptime: ours.ptime.unwrap_or(20),
        crypto: ours.crypto.as_slice(),
        best_effort: ours.best_effort,
        layout: &[],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: CodecSet = CodecSet::ALL;

    const BARESIP_OFFER: &str = "v=0\r\no=- 123 456 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 10000 RTP/AVP 9 0 8 101\r\na=rtpmap:9 G722/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

    #[test]
    fn reads_a_phone_offer() {
        let r = parse_rtp_sdp(BARESIP_OFFER).unwrap();
        assert_eq!(r.addr, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(
            r.codecs,
            vec![(9, Codec::G722), (0, Codec::Pcmu), (8, Codec::Pcma)]
        );
        assert_eq!(r.telephone_event, Some(101));
        assert_eq!(r.direction, Direction::SendRecv);
        assert_eq!(r.ptime, Some(20));
    }

    const CRYPTO: &str =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn an_sdes_offer_is_read_with_its_key_and_never_as_plain() {
        for proto in ["RTP/SAVP", "RTP/SAVPF"] {
            let sdp = BARESIP_OFFER.replace("RTP/AVP", proto).replace(
                "a=sendrecv",
                &format!("a=crypto:9 BOGUS inline:AAAA\r\n{CRYPTO}\r\na=sendrecv"),
            );
            let r = parse_rtp_sdp(&sdp).unwrap();
            let key = r.crypto.expect("the key");
            assert_eq!(key.tag, 1, "{proto}");
            assert_eq!(
                key.profile,
                crate::webrtc::srtp::SrtpProfile::Aes128CmHmacSha1_80
            );
        }
        // SRTP without a usable key: refused, not read as plain RTP
        let bare = BARESIP_OFFER.replace("RTP/AVP", "RTP/SAVP");
        assert_eq!(
            parse_rtp_sdp(&bare),
            Err(Error::Crypto(sdes::CryptoError::Missing))
        );
        let bad = bare.replace(
            "a=sendrecv",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%%%%",
        );
        assert_eq!(
            parse_rtp_sdp(&bad),
            Err(Error::Crypto(sdes::CryptoError::BadBase64))
        );
        // DTLS-SRTP toward SIP is not implemented
        let dtls = BARESIP_OFFER.replace("RTP/AVP", "UDP/TLS/RTP/SAVP");
        assert_eq!(parse_rtp_sdp(&dtls), Err(Error::NotPlainRtp));
        assert!(parse_rtp_sdp(&BARESIP_OFFER.replace("RTP/AVP", "RTP/AVPF")).is_ok());
    }

    /// "Best effort" SRTP: a usable key in an `RTP/AVP` section is taken (and marked so),
    /// an unusable one leaves the section plain; answered in kind, the answer stays
    /// `RTP/AVP` with srgate's key and reads back the same; without the key it is plain.
    #[test]
    fn a_best_effort_sdes_offer_is_taken_and_answered_in_kind() {
        let offer = BARESIP_OFFER.replace("a=sendrecv", &format!("{CRYPTO}\r\na=sendrecv"));
        let r = parse_rtp_sdp(&offer).unwrap();
        assert!(r.best_effort && r.crypto.as_ref().is_some_and(|k| k.tag == 1));
        let plain = r.clone().plain();
        assert!(!plain.best_effort && plain.crypto.is_none());
        let unusable = BARESIP_OFFER.replace("a=sendrecv", "a=crypto:1 BOGUS inline:AAAA");
        let r2 = parse_rtp_sdp(&unusable).unwrap();
        assert!(!r2.best_effort && r2.crypto.is_none());
        // a key in RTP/SAVP is not best effort: plain() keeps it
        let savp = offer.replace("RTP/AVP", "RTP/SAVP");
        let strict = parse_rtp_sdp(&savp).unwrap();
        assert!(!strict.best_effort && strict.clone().plain().crypto.is_some());

        let key = SdesKey::generate(1, r.crypto.as_ref().unwrap().profile).unwrap();
        let answer = pcmu_answer_at_16384(&key, true);
        assert!(answer.contains("m=audio 16384 RTP/AVP 0\r\n"), "{answer}");
        assert!(answer.contains("a=crypto:1 "), "{answer}");
        let back = parse_rtp_sdp(&answer).unwrap();
        assert!(back.best_effort && back.crypto == Some(key));
        // a re-offer of the same key is answered in kind; a plain session re-offered
        // with a best-effort key stays plain
        let again = reanswer(&answer, &r, CodecSet::ALL).expect("answered");
        assert!(
            again.contains("RTP/AVP") && again.contains("a=crypto:1 "),
            "{again}"
        );
        let plain_session = ours_at_16384(&[(0, Codec::Pcmu)]);
        let kept_plain = reanswer(&plain_session, &r, CodecSet::ALL).expect("answered");
        assert!(!kept_plain.contains("a=crypto"), "{kept_plain}");
    }

    /// srgate's PCMU answer at 192.0.2.7:16384 keyed by `key` (`RTP/AVP` when
    /// `best_effort`, else `RTP/SAVP`).
    fn pcmu_answer_at_16384(key: &SdesKey, best_effort: bool) -> String {
        build_rtp_sdp(&RtpDescription {
            addr: "192.0.2.7:16384".parse().unwrap(),
            codecs: &[(0, Codec::Pcmu)],
            telephone_event: None,
            direction: Direction::SendRecv,
            session_id: 42,
            version: 1,
            ptime: 20,
            crypto: std::slice::from_ref(key),
            best_effort,
            layout: &[],
        })
    }

    #[test]
    fn an_srtp_answer_carries_one_fresh_key_and_reads_back() {
        use crate::webrtc::srtp::SrtpProfile;
        let key = SdesKey::generate(1, SrtpProfile::Aes128CmHmacSha1_80).unwrap();
        let sdp = pcmu_answer_at_16384(&key, false);
        assert!(sdp.contains("m=audio 16384 RTP/SAVP 0\r\n"), "{sdp}");
        assert!(sdp.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
        assert_eq!(parse_rtp_sdp(&sdp).unwrap().crypto, Some(key));
        // A re-offer keeps the security of the session: plain after SRTP is refused, SRTP
        // after SRTP is answered with srgate's key again.
        let plain = parse_rtp_sdp(BARESIP_OFFER).unwrap();
        assert_eq!(reanswer(&sdp, &plain, ALL), None);
        let again = BARESIP_OFFER
            .replace("RTP/AVP", "RTP/SAVP")
            .replace("a=sendrecv", CRYPTO);
        let answer = reanswer(&sdp, &parse_rtp_sdp(&again).unwrap(), ALL).unwrap();
        assert!(answer.contains("RTP/SAVP 0"), "{answer}");
        let line = sdp.lines().find(|l| l.starts_with("a=crypto")).unwrap();
        assert!(answer.contains(line), "{answer}");
        // another suite in the re-offer: refused
        assert_eq!(
            reanswer(&answer, &parse_rtp_sdp(&again).unwrap(), ALL).map(|_| ()),
            Some(())
        );
        let other = again.replace(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_32",
        );
        assert_eq!(reanswer(&sdp, &parse_rtp_sdp(&other).unwrap(), ALL), None);
    }

    #[test]
    fn media_level_connection_wins_and_hold_is_understood() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\n";
        let r = parse_rtp_sdp(sdp).unwrap();
        assert!(r.addr.ip().is_unspecified());
        assert_eq!(r.direction, Direction::SendOnly);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert_eq!(parse_rtp_sdp("hello"), Err(Error::NotSdp));
        let no_c = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(parse_rtp_sdp(no_c), Err(Error::NoConnection));
        let video = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n";
        assert_eq!(parse_rtp_sdp(video), Err(Error::NoAudio));
        let unknown = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 3\r\n";
        assert_eq!(parse_rtp_sdp(unknown), Err(Error::NoCommonCodec));
    }

    #[test]
    fn builds_what_it_reads() {
        let codecs = [(0, Codec::Pcmu), (8, Codec::Pcma)];
        let sdp = build_rtp_sdp(&RtpDescription {
            addr: "192.0.2.7:16384".parse().unwrap(),
            codecs: &codecs,
            telephone_event: Some(101),
            direction: Direction::SendRecv,
            session_id: 42,
            version: 1,
            ptime: 20,
            crypto: &[],
            best_effort: false,
            layout: &[],
        });
        let r = parse_rtp_sdp(&sdp).unwrap();
        assert_eq!(r.addr, "192.0.2.7:16384".parse().unwrap());
        assert_eq!(r.codecs, codecs.to_vec());
        assert_eq!(r.telephone_event, Some(101));
        assert!(sdp.contains("m=audio 16384 RTP/AVP 0 8 101\r\n"), "{sdp}");
    }

    /// srgate's plain description at 127.0.0.1:16384 with `codecs` and telephone-event
    /// 101, session 7 version 1.
    fn ours_at_16384(codecs: &[(u8, Codec)]) -> String {
        build_rtp_sdp(&RtpDescription {
            addr: "127.0.0.1:16384".parse().unwrap(),
            codecs,
            telephone_event: Some(101),
            direction: Direction::SendRecv,
            session_id: 7,
            version: 1,
            ptime: 20,
            crypto: &[],
            best_effort: false,
            layout: &[],
        })
    }

    #[test]
    fn a_hold_reoffer_gets_recvonly_and_a_new_version() {
        let ours = ours_at_16384(&[(0, Codec::Pcmu)]);
        let hold = parse_rtp_sdp(&BARESIP_OFFER.replace("sendrecv", "sendonly")).unwrap();
        let answer = reanswer(&ours, &hold, ALL).unwrap();
        assert!(answer.contains("o=srgate 7 2 IN IP4"), "{answer}");
        assert!(answer.contains("a=recvonly"), "{answer}");
        assert!(answer.contains("m=audio 16384 RTP/AVP 0 101"), "{answer}");
    }

    #[test]
    fn a_reoffer_without_the_codec_in_use_is_answered_from_its_own_codecs() {
        let ours = ours_at_16384(&[(0, Codec::Pcmu)]);
        // PCMA only: answered PCMA
        let pcma = BARESIP_OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 8 101");
        let answer = reanswer(&ours, &parse_rtp_sdp(&pcma).unwrap(), ALL).unwrap();
        assert!(
            answer.contains("m=audio 16384 RTP/AVP 8 101\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=rtpmap:8 PCMA/8000"), "{answer}");
        assert!(!answer.contains("PCMU"), "{answer}");
        // G.722 then PCMA: the first offered that srgate carries
        let g722 = BARESIP_OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 9 8 101");
        let answer = reanswer(&ours, &parse_rtp_sdp(&g722).unwrap(), ALL).unwrap();
        assert!(
            answer.contains("m=audio 16384 RTP/AVP 9 101\r\n"),
            "{answer}"
        );
        // ... unless [media] codecs leaves G.722 out
        let narrow = CodecSet::of(&[Codec::Pcmu, Codec::Pcma]);
        let answer = reanswer(&ours, &parse_rtp_sdp(&g722).unwrap(), narrow).unwrap();
        assert!(
            answer.contains("m=audio 16384 RTP/AVP 8 101\r\n"),
            "{answer}"
        );
        // the codec in use is kept while offered, even after others
        let both = BARESIP_OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 8 0 101");
        let answer = reanswer(&ours, &parse_rtp_sdp(&both).unwrap(), ALL).unwrap();
        assert!(
            answer.contains("m=audio 16384 RTP/AVP 0 101\r\n"),
            "{answer}"
        );
        // nothing srgate may use (G.722 only, left out of codecs): no answer (488), never a
        // format that was not offered
        let g722_only = BARESIP_OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 9 101");
        let offer = parse_rtp_sdp(&g722_only).unwrap();
        assert_eq!(reanswer(&ours, &offer, narrow), None);
        assert_eq!(
            pick_format(&[(9, Codec::G722)], Some(Codec::Pcmu), narrow),
            None
        );
        assert_eq!(
            pick_format(
                &[(9, Codec::G722), (8, Codec::Pcma), (0, Codec::Pcmu)],
                None,
                narrow
            ),
            Some((8, Codec::Pcma))
        );
    }

    #[test]
    fn an_answered_offer_settles_on_the_answer_codec_and_reoffers_keep_it() {
        let offer = ours_at_16384(&[(0, Codec::Pcmu), (8, Codec::Pcma)]);
        let answer = BARESIP_OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 8 101");
        let settled = settle(&offer, &parse_rtp_sdp(&answer).unwrap()).unwrap();
        assert!(
            settled.contains("m=audio 16384 RTP/AVP 8 101\r\n"),
            "{settled}"
        );
        assert!(settled.contains("o=srgate 7 1 "), "{settled}");
        // a re-offer of both: the answer keeps PCMA, the codec in use
        let both = BARESIP_OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 0 8 101");
        let re = reanswer(&settled, &parse_rtp_sdp(&both).unwrap(), ALL).unwrap();
        assert!(re.contains("m=audio 16384 RTP/AVP 8 101\r\n"), "{re}");
        assert!(re.contains("o=srgate 7 2 "), "{re}");
        // an answer with nothing srgate offered (G.722, not in this offer) settles nothing
        let g722 = BARESIP_OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 9 101");
        assert_eq!(settle(&offer, &parse_rtp_sdp(&g722).unwrap()), None);
    }

    #[test]
    fn opus_toward_sip_is_offered_with_fec_and_taken_only_when_allowed() {
        let offer = ours_at_16384(&[(OPUS_PT, Codec::Opus), (0, Codec::Pcmu)]);
        assert!(
            offer.contains("m=audio 16384 RTP/AVP 111 0 101\r\n"),
            "{offer}"
        );
        assert!(offer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{offer}");
        assert!(offer.contains("a=fmtp:111 useinbandfec=1\r\n"), "{offer}");
        let back = parse_rtp_sdp(&offer).unwrap();
        assert_eq!(back.codecs, vec![(111, Codec::Opus), (0, Codec::Pcmu)]);
        // a phone offering Opus first gets Opus, unless [media] codecs leaves it out
        let remote = [(96, Codec::Opus), (8, Codec::Pcma)];
        assert_eq!(pick_format(&remote, None, ALL), Some((96, Codec::Opus)));
        let g711 = CodecSet::of(&[Codec::Pcmu, Codec::Pcma]);
        assert_eq!(pick_format(&remote, None, g711), Some((8, Codec::Pcma)));
    }

    /// A door station's offer: audio, H.264 video (two formats, one srgate cannot pass:
    /// mode 2), and a text section.
    const DOOR_OFFER: &str = "v=0\r\no=door 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\n\
        t=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
        m=video 4002 RTP/AVP 97 96\r\nc=IN IP4 10.0.0.10\r\na=rtpmap:97 H264/90000\r\n\
        a=fmtp:97 packetization-mode=2;profile-level-id=42e01f\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\na=rtcp:4009\r\n\
        a=rtcp-fb:96 nack pli\r\na=sendonly\r\nm=text 4004 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\n";

    #[test]
    fn a_video_offer_is_read_and_the_answer_mirrors_every_section() {
        let r = parse_rtp_sdp(DOOR_OFFER).unwrap();
        assert_eq!(r.sections.len(), 3);
        assert_eq!(r.audio_index, 0);
        let v = r.video.clone().expect("the H.264 section");
        assert_eq!(v.index, 1);
        assert_eq!(v.addr, "10.0.0.10:4002".parse().unwrap());
        assert_eq!(v.rtcp, "10.0.0.10:4009".parse().unwrap());
        assert_eq!(v.direction, Direction::SendOnly);
        assert!(v.feedback);
        // mode 2 (interleaved) is left out
        assert_eq!(v.formats.len(), 1);
        assert_eq!(v.formats[0].payload_type, 96);
        assert_eq!(v.formats[0].h264_profile(), Some("42e01f"));
        assert_eq!(v.formats[0].h264_mode(), 1);

        // without video: the video and text sections are rejected in place
        let layout = answer_layout(&r, None);
        let d = RtpDescription {
            addr: "127.0.0.1:16384".parse().unwrap(),
            codecs: &[(0, Codec::Pcmu)],
            telephone_event: Some(101),
            direction: Direction::SendRecv,
            session_id: 7,
            version: 1,
            ptime: 20,
            crypto: &[],
            best_effort: false,
            layout: &layout,
        };
        let answer = build_rtp_sdp(&d);
        let m: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=audio 16384 RTP/AVP 0 101",
                "m=video 0 RTP/AVP 97",
                "m=text 0 RTP/AVP 98"
            ],
            "{answer}"
        );

        // with video: the offered format at srgate's port, recvonly to a sendonly offer
        let video = VideoDescription::answering(&v, v.formats[0].clone(), 16390);
        let layout = answer_layout(&r, Some(&video));
        let answer = build_rtp_sdp(&RtpDescription {
            layout: &layout,
            ..d.clone()
        });
        // the offer's transport (RTP/AVP) kept; feedback because the offer named it
        assert!(
            answer.contains(
                "m=video 16390 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                 a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
                 a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\na=recvonly\r\n"
            ),
            "{answer}"
        );
        // an offer without feedback gets none; a sendrecv one is answered recvonly
        let plain = RemoteVideo {
            feedback: false,
            direction: Direction::SendRecv,
            ..v.clone()
        };
        let d2 = VideoDescription::answering(&plain, v.formats[0].clone(), 16390);
        assert_eq!(d2.direction, Direction::RecvOnly);
        let layout2 = answer_layout(&r, Some(&d2));
        let a2 = build_rtp_sdp(&RtpDescription {
            layout: &layout2,
            ..d.clone()
        });
        assert!(!a2.contains("rtcp-fb"), "{a2}");
        // srgate's own answer reads back with its video, and a re-offer keeps it
        let ours = parse_rtp_sdp(&answer).unwrap();
        assert_eq!(ours.video.as_ref().map(|v| v.addr.port()), Some(16390));
        let re = reanswer(&answer, &r, ALL).unwrap();
        assert!(re.contains("m=video 16390 RTP/AVP 96\r\n"), "{re}");
        // an offerless re-INVITE gets every section back as it was (RFC 3264 §8)
        let again = reoffer(&answer).unwrap();
        let m: Vec<&str> = again.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=audio 16384 RTP/AVP 0 101",
                "m=video 16390 RTP/AVP 96",
                "m=text 0 RTP/AVP 98"
            ],
            "{again}"
        );
        assert!(
            again.contains("a=recvonly\r\n"),
            "srgate still sends no video: {again}"
        );
        // a re-offer that moves the video to another payload type of the same kind
        let moved = DOOR_OFFER
            .replace("RTP/AVP 97 96", "RTP/AVP 97 100")
            .replace("rtpmap:96", "rtpmap:100")
            .replace("fmtp:96", "fmtp:100")
            .replace("rtcp-fb:96", "rtcp-fb:100");
        let re = reanswer(&answer, &parse_rtp_sdp(&moved).unwrap(), ALL).unwrap();
        assert!(re.contains("m=video 16390 RTP/AVP 100\r\n"), "{re}");
        assert!(re.contains("m=text 0 RTP/AVP 98\r\n"), "{re}");
        assert!(re.contains("o=srgate 7 2 "), "{re}");
        // a re-offer without video: its answer has none either
        let audio_only = DOOR_OFFER.split("m=video").next().unwrap().to_string();
        let re = reanswer(&answer, &parse_rtp_sdp(&audio_only).unwrap(), ALL).unwrap();
        assert_eq!(re.matches("m=").count(), 1, "{re}");
    }
}
