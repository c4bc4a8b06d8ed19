//! A liberal reader of the session descriptions browsers offer (RFC 8866).
//!
//! Only what srgate negotiates is kept: per media section the kind, port, protocol,
//! formats, `a=mid`, ICE credentials, fingerprints, `a=setup`, `a=rtcp-mux`, `a=rtpmap`,
//! `a=fmtp`, `a=ssrc` and the direction; per session the same transport attributes and
//! the BUNDLE group. Everything else (extmap, rtcp-fb, msid, candidates, ...) is skipped.
//! Lines may end in CRLF or LF; malformed attribute lines are skipped (RFC 8866 §5.13:
//! unknown attributes are ignored); only a malformed `m=` line, a missing `v=0` or an
//! exceeded limit is an error.

use super::{Error, Fingerprint, HashAlgorithm, MAX_SDP};

/// Media sections read at most.
pub const MAX_MEDIA: usize = 16;
/// `a=rtpmap` / `a=fmtp` lines kept per media section (more are ignored).
pub const MAX_FORMATS: usize = 64;
/// Fingerprints kept per level (RFC 8122 allows several).
pub const MAX_FINGERPRINTS: usize = 4;
/// Distinct SSRCs kept per media section.
pub const MAX_SSRCS: usize = 8;

/// Transport attributes that may stand at session or media level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    /// Fingerprints with a hash srgate supports, in offer order.
    pub fingerprints: Vec<Fingerprint>,
    /// Whether a fingerprint with an unsupported hash (e.g. sha-1) was seen.
    pub unsupported_fingerprint: bool,
    /// Whether a fingerprint line was malformed.
    pub bad_fingerprint: bool,
    /// The raw `a=setup` value, if any.
    pub setup: Option<String>,
    pub ice_lite: bool,
}

/// One `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u8,
}

/// One `m=` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    /// 0 means the section is rejected or disabled.
    pub port: u16,
    pub proto: String,
    /// The format list as written (payload types for RTP).
    pub formats: Vec<String>,
    pub mid: Option<String>,
    pub transport: Transport,
    pub rtcp_mux: bool,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    /// Distinct `a=ssrc` ids in order of appearance.
    pub ssrcs: Vec<u32>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive`, if stated.
    pub direction: Option<String>,
}

impl MediaSection {
    /// The payload types of the format list (non-numeric formats are skipped).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok())
    }

    /// The `a=fmtp` parameters of a payload type.
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(pt, _)| *pt == payload_type)
            .map(|(_, p)| p.as_str())
    }
}

/// A parsed offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// Session-level transport attributes (media-level ones take precedence).
    pub session: Transport,
    /// The mids of `a=group:BUNDLE`, if the offer has one.
    pub bundle: Option<Vec<String>>,
    pub media: Vec<MediaSection>,
}

impl Offer {
    /// Reads an SDP. Never panics; see the module doc for what is an error.
    pub fn parse(sdp: &str) -> Result<Offer, Error> {
        if sdp.len() > MAX_SDP {
            return Err(Error::TooLarge);
        }
        let mut lines = sdp
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());

        match lines.next() {
            Some((_, l)) if l.trim() == "v=0" => {}
            _ => return Err(Error::NotSdp),
        }

        let mut offer = Offer::default();
        for (index, line) in lines {
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "m" => {
                    if offer.media.len() == MAX_MEDIA {
                        return Err(Error::TooManyMedia);
                    }
                    let media = parse_media_line(value).ok_or(Error::BadMediaLine(index + 1))?;
                    offer.media.push(media);
                }
                "a" => {
                    let (name, attr_value) = match value.split_once(':') {
                        Some((n, v)) => (n, Some(v)),
                        None => (value, None),
                    };
                    match offer.media.last_mut() {
                        Some(media) => media_attribute(media, name, attr_value),
                        None => session_attribute(&mut offer, name, attr_value),
                    }
                }
                _ => {}
            }
        }
        Ok(offer)
    }
}

/// `<media> <port>[/<number>] <proto> <fmt> ...`
fn parse_media_line(value: &str) -> Option<MediaSection> {
    let mut words = value.split_ascii_whitespace();
    let kind = words.next()?;
    let port_word = words.next()?;
    let port_str = port_word.split_once('/').map_or(port_word, |(p, _)| p);
    let port = port_str.parse::<u16>().ok()?;
    let proto = words.next()?;
    let formats: Vec<String> = words.take(MAX_FORMATS).map(str::to_owned).collect();
    Some(MediaSection {
        kind: kind.to_ascii_lowercase(),
        port,
        proto: proto.to_owned(),
        formats,
        ..MediaSection::default()
    })
}

/// An SDP token (RFC 4566 §9: visible ASCII), as a mid must be.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

fn session_attribute(offer: &mut Offer, name: &str, value: Option<&str>) {
    if name == "group"
        && let Some(v) = value
    {
        let mut words = v.split_ascii_whitespace();
        if words
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("BUNDLE"))
        {
            // A group naming a mid that is not a token (a control character, ...) is
            // not taken: srgate's answer repeats these names.
            let mids: Vec<String> = words.take(MAX_MEDIA).map(str::to_owned).collect();
            offer.bundle = mids.iter().all(|m| is_token(m)).then_some(mids);
        }
        return;
    }
    transport_attribute(&mut offer.session, name, value);
}

fn media_attribute(media: &mut MediaSection, name: &str, value: Option<&str>) {
    match (name, value) {
        ("mid", Some(v)) => media.mid = Some(v.trim()).filter(|m| is_token(m)).map(str::to_owned),
        ("rtcp-mux", _) => media.rtcp_mux = true,
        ("sendrecv" | "sendonly" | "recvonly" | "inactive", None) => {
            media.direction = Some(name.to_owned());
        }
        ("rtpmap", Some(v)) => {
            if media.rtpmaps.len() < MAX_FORMATS
                && let Some(map) = parse_rtpmap(v)
            {
                media.rtpmaps.push(map);
            }
        }
        ("fmtp", Some(v)) => {
            if media.fmtps.len() < MAX_FORMATS
                && let Some((pt, params)) = v.trim().split_once(' ')
                && let Ok(pt) = pt.parse::<u8>()
            {
                media.fmtps.push((pt, params.trim().to_owned()));
            }
        }
        ("ssrc", Some(v)) => {
            let id = v
                .split_ascii_whitespace()
                .next()
                .and_then(|s| s.parse().ok());
            if let Some(id) = id
                && !media.ssrcs.contains(&id)
                && media.ssrcs.len() < MAX_SSRCS
            {
                media.ssrcs.push(id);
            }
        }
        _ => transport_attribute(&mut media.transport, name, value),
    }
}

fn transport_attribute(t: &mut Transport, name: &str, value: Option<&str>) {
    match (name, value) {
        ("ice-ufrag", Some(v)) => t.ice_ufrag = Some(v.trim().to_owned()),
        ("ice-pwd", Some(v)) => t.ice_pwd = Some(v.trim().to_owned()),
        ("ice-lite", _) => t.ice_lite = true,
        ("setup", Some(v)) => t.setup = Some(v.trim().to_owned()),
        ("fingerprint", Some(v)) => {
            let Some((alg, hex)) = v.trim().split_once(' ') else {
                t.bad_fingerprint = true;
                return;
            };
            match HashAlgorithm::from_name(alg) {
                None => t.unsupported_fingerprint = true,
                Some(alg) => match Fingerprint::parse(alg, hex) {
                    Ok(f) if t.fingerprints.len() < MAX_FINGERPRINTS => t.fingerprints.push(f),
                    Ok(_) => {}
                    Err(_) => t.bad_fingerprint = true,
                },
            }
        }
        _ => {}
    }
}

/// `<pt> <encoding>/<clock>[/<channels>]`
fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let payload_type = pt.parse::<u8>().ok().filter(|pt| *pt < 128)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_owned();
    let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => c.trim().parse::<u8>().ok()?,
        None => 1,
    };
    Some(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An offer as Chrome 12x writes it for `addTransceiver('audio')` / getUserMedia audio
    /// (values made up here; structure, order and attributes as Chrome emits them).
    pub(crate) const CHROME_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS 5e2b8c4d-0f43-4b8e-9a57-3d1c2f6e7a90\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Qx7v\r\n\
a=ice-pwd:hM3kP9tTq2LwZ8aRb5NcYf1e\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 3C:41:9E:07:B5:62:D8:1A:F0:4E:93:2B:7C:A6:55:E1:08:DF:34:9A:C2:6B:17:F5:8E:40:AD:73:1C:E9:62:B0\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendrecv\r\n\
a=msid:5e2b8c4d-0f43-4b8e-9a57-3d1c2f6e7a90 a1b2c3d4-e5f6-4789-8abc-def012345678\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:3735928559 cname:k2Vn8sQ0pLm4TxYz\r\n\
a=ssrc:3735928559 msid:5e2b8c4d-0f43-4b8e-9a57-3d1c2f6e7a90 a1b2c3d4-e5f6-4789-8abc-def012345678\r\n";

    /// An offer as Firefox (ESR 115/128) writes it: session-level fingerprint, attributes
    /// in alphabetical order, `/1` channel suffixes, telephone-event/8000 only.
    pub(crate) const FIREFOX_OFFER: &str = "v=0\r\n\
o=mozilla...THIS_IS_SDPARTA-128.5.0 7281938471629047331 0 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=fingerprint:sha-256 A1:09:5C:E4:22:7B:90:3F:6D:18:C7:4A:E2:55:0B:9D:31:F6:84:2C:7E:A0:13:D9:5B:66:C2:08:F7:4E:91:3A\r\n\
a=group:BUNDLE 0\r\n\
a=ice-options:trickle\r\n\
a=msid-semantic:WMS *\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101\r\n\
c=IN IP4 0.0.0.0\r\n\
a=sendrecv\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n\
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1\r\n\
a=fmtp:101 0-15\r\n\
a=ice-pwd:6b1e0f3c9a2d47e58c0b1a2f3e4d5c6b\r\n\
a=ice-ufrag:9f8e7d6c\r\n\
a=mid:0\r\n\
a=msid:{2c6a1e9f-3b4d-4f70-8e21-5a9c0d7b3e64} {8d0f2a4c-6e1b-4c93-a7f5-0b2d4e6f8a1c}\r\n\
a=rtcp-mux\r\n\
a=rtpmap:109 opus/48000/2\r\n\
a=rtpmap:9 G722/8000/1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000/1\r\n\
a=setup:actpass\r\n\
a=ssrc:1193046 cname:{f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9}\r\n";

    #[test]
    fn chrome_offer() {
        let o = Offer::parse(CHROME_OFFER).unwrap();
        assert_eq!(o.bundle, Some(vec!["0".to_owned()]));
        assert_eq!(o.media.len(), 1);
        let m = &o.media[0];
        assert_eq!(m.kind, "audio");
        assert_eq!(m.port, 9);
        assert_eq!(m.proto, "UDP/TLS/RTP/SAVPF");
        assert_eq!(
            m.payload_types().collect::<Vec<_>>(),
            [111, 63, 9, 0, 8, 13, 110, 126]
        );
        assert_eq!(m.mid.as_deref(), Some("0"));
        assert!(m.rtcp_mux);
        assert_eq!(m.transport.ice_ufrag.as_deref(), Some("Qx7v"));
        assert_eq!(
            m.transport.ice_pwd.as_deref(),
            Some("hM3kP9tTq2LwZ8aRb5NcYf1e")
        );
        assert_eq!(m.transport.fingerprints.len(), 1);
        assert_eq!(m.transport.fingerprints[0].bytes()[..2], [0x3C, 0x41]);
        assert_eq!(m.transport.setup.as_deref(), Some("actpass"));
        assert_eq!(m.rtpmaps.len(), 8);
        assert_eq!(
            m.rtpmaps[0],
            RtpMap {
                payload_type: 111,
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: 2
            }
        );
        assert_eq!(m.fmtp(111), Some("minptime=10;useinbandfec=1"));
        assert_eq!(m.ssrcs, [3735928559]);
        assert_eq!(m.direction.as_deref(), Some("sendrecv"));
    }

    #[test]
    fn firefox_offer() {
        let o = Offer::parse(FIREFOX_OFFER).unwrap();
        assert_eq!(o.session.fingerprints.len(), 1);
        let m = &o.media[0];
        assert!(m.transport.fingerprints.is_empty());
        assert_eq!(m.transport.ice_ufrag.as_deref(), Some("9f8e7d6c"));
        assert_eq!(m.rtpmaps[1].channels, 1);
        assert_eq!(m.rtpmaps[4].encoding, "telephone-event");
        assert_eq!(m.fmtp(101), Some("0-15"));
        assert_eq!(m.ssrcs, [1193046]);
    }

    #[test]
    fn lf_only_and_junk_lines_are_tolerated() {
        let sdp = CHROME_OFFER.replace("\r\n", "\n")
            + "garbage\nx\na=\na=rtpmap:\na=rtpmap:300 x/1\na=fmtp:\na=ssrc:nope\n";
        let o = Offer::parse(&sdp).unwrap();
        assert_eq!(o.media[0].rtpmaps.len(), 8);
        assert_eq!(o.media[0].ssrcs.len(), 1);
    }

    #[test]
    fn errors() {
        assert_eq!(Offer::parse(""), Err(Error::NotSdp));
        assert_eq!(
            Offer::parse("o=- 1 1 IN IP4 0.0.0.0\r\n"),
            Err(Error::NotSdp)
        );
        assert_eq!(
            Offer::parse("v=0\r\nm=audio\r\n"),
            Err(Error::BadMediaLine(2))
        );
        assert_eq!(
            Offer::parse("v=0\r\nm=audio 99999 RTP/AVP 0\r\n"),
            Err(Error::BadMediaLine(2))
        );
        let big = "v=0\r\n".to_owned() + &"a=x\r\n".repeat(MAX_SDP / 5 + 1);
        assert_eq!(Offer::parse(&big), Err(Error::TooLarge));
        let many = "v=0\r\n".to_owned() + &"m=audio 9 RTP/AVP 0\r\n".repeat(MAX_MEDIA + 1);
        assert_eq!(Offer::parse(&many), Err(Error::TooManyMedia));
    }

    #[test]
    fn fingerprint_flags() {
        let o = Offer::parse(
            "v=0\na=fingerprint:sha-1 AA:BB\na=fingerprint:sha-256 zz\na=fingerprint:nospace\n",
        )
        .unwrap();
        assert!(o.session.unsupported_fingerprint);
        assert!(o.session.bad_fingerprint);
        assert!(o.session.fingerprints.is_empty());
    }

    #[test]
    fn never_panics_on_mangled_offers() {
        // Truncate and corrupt the Chrome offer at every position (bounded: one pass).
        let bytes = CHROME_OFFER.as_bytes();
        for cut in 0..bytes.len() {
            let s = String::from_utf8_lossy(&bytes[..cut]);
            let _ = Offer::parse(&s);
            let mut v = bytes.to_vec();
            v[cut] = b"\n:/ =a9"[cut % 7];
            let _ = Offer::parse(&String::from_utf8_lossy(&v));
        }
    }

    #[test]
    fn mids_that_are_not_tokens_are_not_taken() {
        // found by fuzzing: a vertical tab is not split on as whitespace
        let offer = CHROME_OFFER
            .replace("a=group:BUNDLE 0", "a=group:BUNDLE 0\u{b}x")
            .replace("a=mid:0", "a=mid:0\u{0}");
        let o = Offer::parse(&offer).unwrap();
        assert_eq!(o.bundle, None);
        assert_eq!(o.media[0].mid, None);
        let o = Offer::parse(CHROME_OFFER).unwrap();
        assert_eq!(o.bundle, Some(vec!["0".to_string()]));
        assert_eq!(o.media[0].mid.as_deref(), Some("0"));
    }
}
