//! SDP for the browser leg: read a browser's offer, decide what srgate answers, write the
//! answer.
//!
//! SDP is signalling (one offer per call, over the WebSocket), so this module owns its
//! strings; only the packet path must not allocate.
//!
//! - [`offer`]: a liberal reader of RFC 8866 session descriptions as Chrome and Firefox
//!   write them (unknown lines are skipped, nothing panics, hard limits on size and counts).
//! - [`answer`]: RFC 3264 offer/answer for srgate's one audio stream over DTLS-SRTP:
//!   RFC 8843 BUNDLE, RFC 5761 rtcp-mux, RFC 8839 ICE attributes (srgate is ICE-lite),
//!   RFC 8122 / RFC 5763 fingerprint and setup, RFC 7587 Opus, RFC 4733 telephone-event.

pub mod answer;
pub mod offer;
pub mod sdes;
pub mod sip;

use core::fmt;

pub use answer::{
    AnswerPolicy, Direction, IceCredentials, LocalDescription, Negotiated, OfferedSection,
    TelephoneEvent, build_answer, negotiate,
};
pub use offer::{MediaSection, Offer, RtpMap};

/// The largest SDP srgate reads: the browser protocol caps a frame at 64 KiB.
pub const MAX_SDP: usize = 65536;

/// Why an offer cannot be read or answered.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The SDP is larger than [`MAX_SDP`].
    TooLarge,
    /// The first line is not `v=0`: not a session description.
    NotSdp,
    /// More media sections than [`offer::MAX_MEDIA`].
    TooManyMedia,
    /// An `m=` line does not follow RFC 8866 §5.14 (1-based line number).
    BadMediaLine(usize),
    /// No usable audio section (none, or every one has port 0).
    NoAudio,
    /// The audio section is not DTLS-SRTP (`UDP/TLS/RTP/SAVPF`), e.g. plain `RTP/AVP`.
    NotDtlsSrtp,
    /// The audio section lacks `a=rtcp-mux`, which srgate requires (RFC 8858 style).
    NoRtcpMux,
    /// No `a=ice-ufrag` / `a=ice-pwd`, or they hold characters outside RFC 8839 ice-char.
    BadIceCredentials,
    /// No `a=fingerprint` at media or session level.
    NoFingerprint,
    /// Only fingerprints with hash functions srgate does not verify (e.g. sha-1).
    UnsupportedFingerprint,
    /// A fingerprint value is not colon-separated hex of the hash's length.
    BadFingerprint,
    /// `a=setup:holdconn` or an unknown setup value.
    BadSetup,
    /// No offered codec is enabled in the policy.
    NoCommonCodec,
    /// A plain-RTP description (SIP side) has no usable `c=` address.
    NoConnection,
    /// The SIP side's audio is neither RTP (`RTP/AVP(F)`) nor SDES-keyed SRTP
    /// (`RTP/SAVP(F)`), e.g. DTLS-SRTP: refused, never answered in the clear.
    NotPlainRtp,
    /// An `RTP/SAVP(F)` section without a usable `a=crypto` line (the first line's reason).
    Crypto(sdes::CryptoError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge => write!(f, "SDP larger than {MAX_SDP} bytes"),
            Error::NotSdp => f.write_str("not an SDP (no v=0)"),
            Error::TooManyMedia => f.write_str("too many media sections"),
            Error::BadMediaLine(n) => write!(f, "malformed m= line at line {n}"),
            Error::NoAudio => f.write_str("no audio media section"),
            Error::NotDtlsSrtp => f.write_str("audio is not UDP/TLS/RTP/SAVPF"),
            Error::NotPlainRtp => f.write_str("audio is neither RTP/AVP nor RTP/SAVP"),
            Error::Crypto(e) => write!(f, "{e}"),
            Error::NoRtcpMux => f.write_str("a=rtcp-mux is required"),
            Error::BadIceCredentials => f.write_str("missing or malformed ICE credentials"),
            Error::NoFingerprint => f.write_str("no a=fingerprint"),
            Error::UnsupportedFingerprint => f.write_str("no fingerprint with a supported hash"),
            Error::BadFingerprint => f.write_str("malformed a=fingerprint"),
            Error::BadSetup => f.write_str("unusable a=setup"),
            Error::NoCommonCodec => f.write_str("no common audio codec"),
            Error::NoConnection => f.write_str("no usable c= connection address"),
        }
    }
}

impl std::error::Error for Error {}

/// Hash functions srgate verifies certificate fingerprints with (RFC 8122 §5).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// The SDP token (`sha-256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha-256",
            HashAlgorithm::Sha384 => "sha-384",
            HashAlgorithm::Sha512 => "sha-512",
        }
    }

    /// Reads the SDP token, case-insensitively (RFC 8122 §5: hash-func is a token).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }
}

/// A certificate fingerprint (`a=fingerprint:sha-256 AB:CD:...`, RFC 8122 §5).
///
/// `Display` writes the attribute value: the hash name, a space and uppercase hex pairs
/// joined by colons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    algorithm: HashAlgorithm,
    bytes: heapless::Vec<u8, 64>,
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_certificate(algorithm: HashAlgorithm, der: &[u8]) -> Self {
        use sha2::Digest;
        let mut bytes = heapless::Vec::new();
        let digest: &[u8] = match algorithm {
            HashAlgorithm::Sha256 => &sha2::Sha256::digest(der),
            HashAlgorithm::Sha384 => &sha2::Sha384::digest(der),
            HashAlgorithm::Sha512 => &sha2::Sha512::digest(der),
        };
        bytes
            .extend_from_slice(digest)
            .expect("a SHA-2 digest is at most 64 bytes");
        Fingerprint { algorithm, bytes }
    }

    /// Reads the hex part of the attribute (`AB:CD:...`, case-insensitive) for `algorithm`.
    pub fn parse(algorithm: HashAlgorithm, hex: &str) -> Result<Self, Error> {
        let mut bytes = heapless::Vec::new();
        for pair in hex.trim().split(':') {
            let b = pair.as_bytes();
            // from_str_radix alone would take a sign ("+1").
            if b.len() != 2 || !b.iter().all(u8::is_ascii_hexdigit) {
                return Err(Error::BadFingerprint);
            }
            let byte = u8::from_str_radix(pair, 16).map_err(|_| Error::BadFingerprint)?;
            bytes.push(byte).map_err(|_| Error::BadFingerprint)?;
        }
        if bytes.len() != algorithm.digest_len() {
            return Err(Error::BadFingerprint);
        }
        Ok(Fingerprint { algorithm, bytes })
    }

    /// The hash function.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// The digest bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `der` is the certificate this fingerprint names.
    pub fn matches(&self, der: &[u8]) -> bool {
        Fingerprint::of_certificate(self.algorithm, der) == *self
    }

    /// The colon-separated uppercase hex (`AB:CD:...`), without the hash name.
    pub fn hex(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(self.bytes.len() * 3);
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            let _ = write!(s, "{b:02X}");
        }
        s
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm.name(), self.hex())
    }
}

/// The DTLS role as SDP states it (RFC 4145 §4, RFC 5763 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `active`: this side opens the DTLS connection (DTLS client).
    Active,
    /// `passive`: this side waits for the ClientHello (DTLS server).
    Passive,
    /// `actpass`: the offerer lets the answerer choose.
    ActPass,
    /// `holdconn`: no connection for now.
    HoldConn,
}

impl Setup {
    /// Reads the attribute value (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        [
            Setup::Active,
            Setup::Passive,
            Setup::ActPass,
            Setup::HoldConn,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The attribute value.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }
}

/// A set of [`Codec`]s (which ones srgate takes on a side), small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodecSet(u8);

impl CodecSet {
    /// Every codec.
    pub const ALL: CodecSet = CodecSet(0xf);

    pub fn of(codecs: &[Codec]) -> CodecSet {
        CodecSet(codecs.iter().fold(0, |bits, c| bits | Self::bit(*c)))
    }

    pub fn contains(self, codec: Codec) -> bool {
        self.0 & Self::bit(codec) != 0
    }

    fn bit(codec: Codec) -> u8 {
        match codec {
            Codec::Opus => 1,
            Codec::Pcmu => 2,
            Codec::Pcma => 4,
            Codec::G722 => 8,
        }
    }
}

/// The audio codecs srgate can answer with.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus, `opus/48000/2` (RFC 7587).
    Opus,
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722, static payload type 9; its RTP clock is 8000 (RFC 3551 §4.5.2).
    G722,
}

impl Codec {
    /// The encoding name in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48000,
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8000,
        }
    }

    /// Channels in `a=rtpmap` (Opus is always signalled as 2, RFC 7587 §7).
    pub fn channels(self) -> u8 {
        match self {
            Codec::Opus => 2,
            _ => 1,
        }
    }

    /// The RFC 3551 static payload type, if it has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
        }
    }

    /// Reads a `[media] codecs` name (`opus`, `pcmu`, `pcma`, `g722`).
    pub fn from_config_name(name: &str) -> Option<Self> {
        [Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trip() {
        let f = Fingerprint::of_certificate(HashAlgorithm::Sha256, b"certificate");
        let hex = f.hex();
        assert_eq!(hex.len(), 32 * 3 - 1);
        assert_eq!(
            Fingerprint::parse(HashAlgorithm::Sha256, &hex),
            Ok(f.clone())
        );
        // Lowercase hex is accepted too.
        assert_eq!(
            Fingerprint::parse(HashAlgorithm::Sha256, &hex.to_lowercase()),
            Ok(f.clone())
        );
        assert!(f.matches(b"certificate"));
        assert!(!f.matches(b"certificatf"));
        assert!(f.to_string().starts_with("sha-256 "));
    }

    #[test]
    fn fingerprint_rejects_bad_values() {
        let bad = [
            "",
            "AB",
            "AB:CD:",
            "ABC:DE",
            "G1:00",
            "AB::CD",
            "+1:00",
            // 31 bytes for sha-256
            "00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E",
        ];
        for b in bad {
            assert_eq!(
                Fingerprint::parse(HashAlgorithm::Sha256, b),
                Err(Error::BadFingerprint),
                "{b:?}"
            );
        }
        // 65 pairs overflow the fixed buffer without panicking.
        let long = vec!["AA"; 65].join(":");
        assert_eq!(
            Fingerprint::parse(HashAlgorithm::Sha512, &long),
            Err(Error::BadFingerprint)
        );
        // A multi-byte character where a hex pair should be.
        assert_eq!(
            Fingerprint::parse(HashAlgorithm::Sha256, "é"),
            Err(Error::BadFingerprint)
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            HashAlgorithm::from_name("SHA-256"),
            Some(HashAlgorithm::Sha256)
        );
        assert_eq!(HashAlgorithm::from_name("sha-1"), None);
        assert_eq!(Setup::from_name("ACTPASS"), Some(Setup::ActPass));
        assert_eq!(Setup::from_name("x"), None);
        assert_eq!(Codec::from_config_name("G722"), Some(Codec::G722));
        assert_eq!(Codec::from_config_name("speex"), None);
    }
}
