//! SDP security descriptions (SDES, RFC 4568): the `a=crypto` lines of an `RTP/SAVP`
//! session toward SIP, for the suites srgate's SRTP code implements: `AES_CM_128_HMAC_SHA1_80`
//! and `AES_CM_128_HMAC_SHA1_32` (RFC 4568 §6.2) and `AEAD_AES_128_GCM` / `AEAD_AES_256_GCM`
//! (RFC 7714 §14.2).
//!
//! A line is `a=crypto:<tag> <suite> inline:<base64 key||salt>[|lifetime][|MKI:len]
//! [session params]`. srgate takes one key per line and no MKI (its SRTP has none), accepts a
//! lifetime (a call never reaches 2^31 packets; the key is not renewed) and the harmless
//! `WSH=` window hint, and refuses every other session parameter (`UNENCRYPTED_SRTP` and its
//! kin would be a downgrade, `KDR`/`FEC_*` are not implemented). Keys are never formatted:
//! [`SdesKey`]'s `Debug` names the suite only.

use std::fmt;

use crate::webrtc::srtp::{self, SrtpContext, SrtpProfile};

/// The suites srgate offers, in its order of preference.
pub const OFFERED: [SrtpProfile; 4] = [
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::Aes128CmHmacSha1_80,
    SrtpProfile::AeadAes256Gcm,
    SrtpProfile::Aes128CmHmacSha1_32,
];

/// The SDES name of a suite.
pub const fn suite_name(p: SrtpProfile) -> &'static str {
    match p {
        SrtpProfile::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        SrtpProfile::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        SrtpProfile::AeadAes128Gcm => "AEAD_AES_128_GCM",
        SrtpProfile::AeadAes256Gcm => "AEAD_AES_256_GCM",
    }
}

fn suite(name: &str) -> Option<SrtpProfile> {
    OFFERED
        .into_iter()
        .find(|p| suite_name(*p).eq_ignore_ascii_case(name))
}

/// Why an `a=crypto` line is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// No tag, no suite or no key parameter.
    Malformed,
    /// A suite srgate does not implement.
    UnknownSuite,
    /// A key method other than `inline:`, or several keys on one line.
    KeyMethod,
    /// The key is not valid base64.
    BadBase64,
    /// The key||salt length does not fit the suite.
    KeyLength,
    /// A lifetime that is not a number or `2^n`.
    BadLifetime,
    /// An MKI (srgate's SRTP carries none).
    Mki,
    /// A session parameter srgate does not implement.
    SessionParam,
    /// The SDP asks for SRTP but has no `a=crypto` line.
    Missing,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoError::Malformed => "malformed a=crypto",
            CryptoError::UnknownSuite => "unsupported a=crypto suite",
            CryptoError::KeyMethod => "a=crypto key method is not a single inline: key",
            CryptoError::BadBase64 => "a=crypto key is not base64",
            CryptoError::KeyLength => "a=crypto key length does not fit its suite",
            CryptoError::BadLifetime => "malformed a=crypto key lifetime",
            CryptoError::Mki => "a=crypto MKI is not supported",
            CryptoError::SessionParam => "unsupported a=crypto session parameter",
            CryptoError::Missing => "RTP/SAVP without a=crypto",
        })
    }
}

/// One side's SDES key: the tag and suite of its `a=crypto` line, the master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey {
    pub tag: u32,
    pub profile: SrtpProfile,
    /// key || salt.
    material: heapless::Vec<u8, 46>,
}

impl fmt::Debug for SdesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        write!(f, "SdesKey({} {})", self.tag, suite_name(self.profile))
    }
}

impl SdesKey {
    /// A fresh random key for `profile` under `tag`.
    pub fn generate(tag: u32, profile: SrtpProfile) -> Result<SdesKey, getrandom::Error> {
        let len = profile.master_key_len() + profile.master_salt_len();
        let mut material = heapless::Vec::new();
        // 46 >= 32 + 14: never fails.
        let _ = material.resize(len, 0);
        getrandom::getrandom(&mut material)?;
        Ok(SdesKey {
            tag,
            profile,
            material,
        })
    }

    /// Reads the value of one `a=crypto:` attribute (what follows the colon).
    pub fn parse(value: &str) -> Result<SdesKey, CryptoError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| *t <= 999_999_999)
            .ok_or(CryptoError::Malformed)?;
        let profile =
            suite(fields.next().ok_or(CryptoError::Malformed)?).ok_or(CryptoError::UnknownSuite)?;
        let key_params = fields.next().ok_or(CryptoError::Malformed)?;
        for param in fields {
            if !window_hint(param) {
                return Err(CryptoError::SessionParam);
            }
        }
        if key_params.contains(';') {
            return Err(CryptoError::KeyMethod);
        }
        let inline = key_params
            .get(..7)
            .filter(|m| m.eq_ignore_ascii_case("inline:"))
            .ok_or(CryptoError::KeyMethod)?;
        let mut parts = key_params[inline.len()..].split('|');
        let key = parts.next().unwrap_or("");
        let mut material = heapless::Vec::new();
        decode_base64(key, &mut material)?;
        if material.len() != profile.master_key_len() + profile.master_salt_len() {
            return Err(CryptoError::KeyLength);
        }
        let mut seen_lifetime = false;
        for part in parts {
            if part.contains(':') {
                return Err(CryptoError::Mki);
            }
            if seen_lifetime || !lifetime(part) {
                return Err(CryptoError::BadLifetime);
            }
            seen_lifetime = true;
        }
        Ok(SdesKey {
            tag,
            profile,
            material,
        })
    }

    /// The attribute line, `a=crypto:<tag> <suite> inline:<key>` and CRLF.
    pub fn attribute(&self) -> String {
        let mut line = format!("a=crypto:{} {} inline:", self.tag, suite_name(self.profile));
        encode_base64(&self.material, &mut line);
        line.push_str("\r\n");
        line
    }

    /// The SRTP context of this key.
    pub fn context(&self) -> Result<SrtpContext, srtp::Error> {
        let (key, salt) = self.material.split_at(self.profile.master_key_len());
        SrtpContext::new(self.profile, key, salt)
    }
}

/// `WSH=<n>`: a replay window hint (RFC 4568 §6.3.7); srgate's window (128) is kept.
fn window_hint(param: &str) -> bool {
    param
        .strip_prefix("WSH=")
        .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 64))
}

/// A key lifetime: decimal or `2^n` (RFC 4568 §6.1).
fn lifetime(s: &str) -> bool {
    match s.strip_prefix("2^") {
        Some(n) => n.parse::<u8>().is_ok_and(|n| n <= 48),
        None => !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The first usable key of the `a=crypto` values offered (in order of preference, RFC 4568
/// §7.1.2: the answerer takes one it supports); the first line's error if none is.
pub fn choose<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<SdesKey, CryptoError> {
    let mut first_error = None;
    for value in values {
        match SdesKey::parse(value) {
            Ok(key) => return Ok(key),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(CryptoError::Missing))
}

/// Standard base64; the padding of a key may be there or not (RFC 4568 does not say).
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn encode_base64(data: &[u8], out: &mut String) {
    use base64::Engine as _;
    BASE64.encode_string(data, out);
}

/// Decodes standard base64 (padding optional) into `out`; too long a value is a bad length.
fn decode_base64<const N: usize>(
    text: &str,
    out: &mut heapless::Vec<u8, N>,
) -> Result<(), CryptoError> {
    use base64::Engine as _;
    let mut buf = [0u8; N];
    let n = BASE64.decode_slice(text, &mut buf).map_err(|e| match e {
        base64::DecodeSliceError::OutputSliceTooSmall => CryptoError::KeyLength,
        base64::DecodeSliceError::DecodeError(_) => CryptoError::BadBase64,
    })?;
    out.extend_from_slice(&buf[..n])
        .map_err(|_| CryptoError::KeyLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4568 §6.1's example key (30 octets: a 16-octet key and a 14-octet salt).
    const RFC_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn reads_the_rfc_examples_and_refuses_mki() {
        let k =
            SdesKey::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20")).unwrap();
        assert_eq!((k.tag, k.profile), (1, SrtpProfile::Aes128CmHmacSha1_80));
        assert!(k.context().is_ok());
        assert_eq!(
            SdesKey::parse(&format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4"
            )),
            Err(CryptoError::Mki)
        );
        let k = SdesKey::parse(&format!(
            "7 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY} WSH=128"
        ))
        .unwrap();
        assert_eq!((k.tag, k.profile), (7, SrtpProfile::Aes128CmHmacSha1_32));
    }

    #[test]
    fn every_suite_round_trips_through_its_attribute() {
        for p in OFFERED {
            let k = SdesKey::generate(3, p).unwrap();
            let line = k.attribute();
            assert!(line.ends_with("\r\n"));
            let value = line
                .trim_end()
                .strip_prefix("a=crypto:")
                .expect("attribute name");
            assert_eq!(SdesKey::parse(value).unwrap(), k, "{p:?}");
            assert!(!format!("{k:?}").contains("inline"));
            let mut local = k.context().unwrap();
            let mut remote = k.context().unwrap();
            let mut buf = [0u8; 64];
            buf[..12].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4]);
            buf[12..20].copy_from_slice(b"payload!");
            let n = local.protect_rtp(&mut buf, 20).unwrap();
            assert_eq!(remote.unprotect_rtp(&mut buf[..n]), Ok(20));
            assert_eq!(&buf[12..20], b"payload!");
        }
        // Fresh keys differ.
        let a = SdesKey::generate(1, SrtpProfile::AeadAes128Gcm).unwrap();
        let b = SdesKey::generate(1, SrtpProfile::AeadAes128Gcm).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        let gcm_key = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3OA=="; // 28 octets: not 30
        let cases = [
            ("", CryptoError::Malformed),
            (
                "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                CryptoError::Malformed,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80", CryptoError::Malformed),
            (
                "1 F8_128_HMAC_SHA1_80 inline:AAAA",
                CryptoError::UnknownSuite,
            ),
            (
                "1 AES_256_CM_HMAC_SHA1_80 inline:AAAA",
                CryptoError::UnknownSuite,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 uri:http://x",
                CryptoError::KeyMethod,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA;inline:BBBB",
                CryptoError::KeyMethod,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
                CryptoError::BadBase64,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:A", CryptoError::BadBase64),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA===",
                CryptoError::BadBase64,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                CryptoError::KeyLength,
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{gcm_key}"),
                CryptoError::KeyLength,
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}{RFC_KEY}{RFC_KEY}"),
                CryptoError::KeyLength,
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^x"),
                CryptoError::BadLifetime,
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|2^20"),
                CryptoError::BadLifetime,
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTP"),
                CryptoError::SessionParam,
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=1"),
                CryptoError::SessionParam,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(SdesKey::parse(line), Err(want), "{line}");
        }
        assert!(SdesKey::parse(&format!("1 AEAD_AES_128_GCM inline:{gcm_key}|1000")).is_ok());
    }

    #[test]
    fn the_first_usable_offered_line_is_chosen() {
        let good = format!("2 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}");
        let k = choose(["1 AES_256_CM_HMAC_SHA1_80 inline:AAAA", good.as_str()]).unwrap();
        assert_eq!(k.tag, 2);
        assert_eq!(
            choose(["1 F8_128_HMAC_SHA1_80 inline:AAAA", "2 x"]),
            Err(CryptoError::UnknownSuite)
        );
        assert_eq!(choose([]), Err(CryptoError::Missing));
    }

    #[test]
    fn base64_matches_known_values() {
        let mut s = String::new();
        encode_base64(b"foobar", &mut s);
        encode_base64(b"fo", &mut s);
        encode_base64(b"f", &mut s);
        assert_eq!(s, "Zm9vYmFyZm8=Zg==");
        let mut v: heapless::Vec<u8, 8> = heapless::Vec::new();
        decode_base64("Zm9vYg==", &mut v).unwrap();
        assert_eq!(&v[..], b"foob");
        v.clear();
        decode_base64("Zm9vYg", &mut v).unwrap();
        assert_eq!(&v[..], b"foob");
    }
}
