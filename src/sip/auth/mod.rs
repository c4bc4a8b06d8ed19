//! HTTP digest authentication for SIP: RFC 3261 §22 (its use in SIP), RFC 2617 (MD5,
//! `qop=auth`, and RFC 2069 compatibility without `qop`), RFC 7616 (SHA-256, `-sess`
//! variants) and RFC 8760 (SHA-256 in SIP).
//!
//! - [`params`]: parse challenges ([`Challenge`]) and credentials ([`Credentials`]) without
//!   copying; [`choose_challenge`] picks the strongest supported one.
//! - [`client`]: [`ClientAuth`], srgate as a UAC answering 401/407 (the proxy account's
//!   REGISTER, outgoing INVITEs), and [`credentials`] for one-off computations.
//! - [`server`]: [`NonceSecret`], srgate as registrar/UAS: stateless expiring nonces,
//!   challenges in a configured order, and [`NonceSecret::verify`] giving a [`Verdict`].
//!
//! Algorithms: `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess` are all computed (client and
//! server). `qop=auth-int` is never used: a challenge offering only `auth-int` is unusable
//! and credentials with `qop=auth-int` are refused. `userhash` (RFC 7616 §3.4.4) is not
//! supported.
//!
//! Passwords never reach a log line: nothing here logs, and [`ClientAuth`]'s `Debug` hides
//! the password.

pub mod client;
pub mod limit;
pub mod params;
pub mod replay;
pub mod server;

use core::fmt;
use core::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256};

pub use client::{AuthHeader, AuthKind, ClientAuth, GiveUp, MAX_CHALLENGES_IN_ROW, credentials};
pub use params::{Challenge, Credentials, ParamValue, Qop, QopOffer, choose_challenge};
pub use server::{NONCE_LIFETIME, NonceSecret, Rejection, USERNAME_MAX, UserName, Verdict};

/// A digest algorithm (RFC 7616 §3.3 `algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `MD5` (RFC 2617), the default when no `algorithm` is given.
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// The token used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Preference as a client: SHA-256 (either form) over MD5 (either form).
    pub fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
        }
    }

    /// Whether this is a `-sess` variant (HA1 also covers nonce and cnonce).
    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// A byte naming the algorithm inside srgate's nonce tags.
    fn id(self) -> u8 {
        match self {
            Algorithm::Md5 => 1,
            Algorithm::Md5Sess => 2,
            Algorithm::Sha256 => 3,
            Algorithm::Sha256Sess => 4,
        }
    }

    fn from_param(v: ParamValue<'_>) -> Option<Self> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| v.eq_ignore_ascii_case(a.name()))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads an algorithm as written in the configuration (`[sip] digest = md5,sha256`):
/// the wire names, case-insensitive, and also `sha256` / `sha256-sess` without the dash.
impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, DigestError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("sha256") {
            return Ok(Algorithm::Sha256);
        }
        if s.eq_ignore_ascii_case("sha256-sess") {
            return Ok(Algorithm::Sha256Sess);
        }
        Algorithm::from_param(ParamValue::plain(s)).ok_or(DigestError::UnsupportedAlgorithm)
    }
}

/// Why a challenge or credentials value was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestError {
    /// The scheme is not `Digest` (e.g. `Basic`), or nothing is there.
    NotDigest,
    /// Bad syntax at this byte offset of the parameter list.
    Syntax {
        /// Offset into the text after the scheme.
        at: usize,
    },
    /// A required parameter is missing.
    MissingParam(&'static str),
    /// A known parameter appears twice.
    DuplicateParam(&'static str),
    /// `algorithm` names something srgate does not compute.
    UnsupportedAlgorithm,
    /// `nc` is not 1–8 hex digits.
    BadNc,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::NotDigest => f.write_str("not a Digest challenge or credentials"),
            DigestError::Syntax { at } => write!(f, "digest parameter syntax error at byte {at}"),
            DigestError::MissingParam(p) => write!(f, "digest parameter `{p}` missing"),
            DigestError::DuplicateParam(p) => write!(f, "digest parameter `{p}` repeated"),
            DigestError::UnsupportedAlgorithm => f.write_str("unsupported digest algorithm"),
            DigestError::BadNc => f.write_str("digest `nc` is not 1-8 hex digits"),
        }
    }
}

impl std::error::Error for DigestError {}

/// A hash in lowercase hex (32 chars for MD5, 64 for SHA-256).
#[derive(Clone, Copy)]
pub(crate) struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl Hex {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into `buf`.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` (which must hold twice as many bytes; extra
/// input is ignored).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0f)];
        n += 2;
    }
    n
}

/// The hash function of an algorithm, fed piece by piece.
enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Md5 | Algorithm::Md5Sess => Hasher::Md5(Md5::new()),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn value(&mut self, v: &ParamValue<'_>) {
        // Unescaped bytes, in runs, without allocating.
        let mut chunk = [0u8; 64];
        let mut n = 0;
        for b in v.bytes() {
            chunk[n] = b;
            n += 1;
            if n == chunk.len() {
                self.update(&chunk);
                n = 0;
            }
        }
        self.update(&chunk[..n]);
    }

    fn colon(&mut self) {
        self.update(b":");
    }

    fn finish(self) -> Hex {
        let mut hex = Hex {
            buf: [0; 64],
            len: 0,
        };
        hex.len = match self {
            Hasher::Md5(h) => hex_into(&h.finalize(), &mut hex.buf),
            Hasher::Sha256(h) => hex_into(&h.finalize(), &mut hex.buf),
        };
        hex
    }
}

/// Everything the `response` hash covers (RFC 7616 §3.4.1–§3.4.3).
pub(crate) struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    pub username: ParamValue<'a>,
    pub realm: ParamValue<'a>,
    pub password: &'a [u8],
    pub nonce: ParamValue<'a>,
    /// `Some` with `qop=auth`, `None` for RFC 2069 style.
    pub qop_auth: Option<(ParamValue<'a>, ParamValue<'a>)>,
    /// Needed by `-sess` algorithms (with or without qop).
    pub cnonce: Option<ParamValue<'a>>,
    pub method: &'a str,
    pub uri: ParamValue<'a>,
}

/// Computes the `response` value.
pub(crate) fn response(input: &ResponseInput<'_>) -> Hex {
    let mut h = Hasher::new(input.algorithm);
    h.value(&input.username);
    h.colon();
    h.value(&input.realm);
    h.colon();
    h.update(input.password);
    let mut ha1 = h.finish();
    if input.algorithm.is_sess() {
        let mut h = Hasher::new(input.algorithm);
        h.update(ha1.as_bytes());
        h.colon();
        h.value(&input.nonce);
        h.colon();
        if let Some(cnonce) = &input.cnonce {
            h.value(cnonce);
        }
        ha1 = h.finish();
    }
    let mut h = Hasher::new(input.algorithm);
    h.update(input.method.as_bytes());
    h.colon();
    h.value(&input.uri);
    let ha2 = h.finish();

    let mut h = Hasher::new(input.algorithm);
    h.update(ha1.as_bytes());
    h.colon();
    h.value(&input.nonce);
    h.colon();
    if let Some((nc, cnonce)) = &input.qop_auth {
        h.value(nc);
        h.colon();
        h.value(cnonce);
        h.colon();
        h.update(b"auth:");
    }
    h.update(ha2.as_bytes());
    h.finish()
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_and_config_spelling() {
        assert_eq!("md5".parse::<Algorithm>(), Ok(Algorithm::Md5));
        assert_eq!(" SHA256 ".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!("sha-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!("md5-SESS".parse::<Algorithm>(), Ok(Algorithm::Md5Sess));
        assert_eq!(
            "sha256-sess".parse::<Algorithm>(),
            Ok(Algorithm::Sha256Sess)
        );
        assert_eq!(
            "sha512".parse::<Algorithm>(),
            Err(DigestError::UnsupportedAlgorithm)
        );
        assert_eq!(Algorithm::Sha256Sess.to_string(), "SHA-256-sess");
        assert!(Algorithm::Sha256.strength() > Algorithm::Md5Sess.strength());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn long_escaped_values_hash_like_plain_ones() {
        // Values over the 64-byte chunk hash the same whether escaped or not.
        let plain: String = "r".repeat(150) + "\"";
        let escaped = "r".repeat(150) + "\\\"";
        let header = format!("Digest realm=\"{escaped}\", nonce=n");
        let c = Challenge::parse(&header).unwrap();
        let mk = |realm| ResponseInput {
            algorithm: Algorithm::Sha256,
            username: ParamValue::plain("u"),
            realm,
            password: b"p",
            nonce: ParamValue::plain("n"),
            qop_auth: None,
            cnonce: None,
            method: "REGISTER",
            uri: ParamValue::plain("sip:x"),
        };
        assert_eq!(
            response(&mk(c.realm)).as_str(),
            response(&mk(ParamValue::plain(&plain))).as_str()
        );
    }
}
