//! srgate as a digest server (registrar / UAS, RFC 3261 §22.1, §22.4): challenges and
//! verification with stateless nonces.
//!
//! # Nonces
//!
//! A nonce is 48 lowercase hex digits: the issue time (whole seconds since the
//! [`NonceSecret`] was made, 4 bytes), an issue counter (4 bytes, so two challenges in the
//! same second differ) and the first 16 bytes of
//! `HMAC-SHA256(secret, label ‖ time ‖ counter ‖ algorithm ‖ realm ‖ source address)`. A
//! nonce is ours when its tag verifies; it is bound to the algorithm and realm it was
//! issued for and to the address of the client it was issued to (credentials captured and
//! sent from elsewhere do not verify), and it is fresh while its age in whole seconds is
//! at most the lifetime ([`NONCE_LIFETIME`] by default). A new secret (restart)
//! invalidates every older nonce; clients then get a fresh challenge
//! ([`Verdict::Challenge`]).
//!
//! # Replays
//!
//! Each accepted use of a nonce is remembered while the nonce is fresh
//! ([`super::replay`]): `nc` must grow from one request to the next on the same nonce, and
//! a nonce answered without `qop` is good for one request. A replayed header gets
//! [`Verdict::Replayed`] (a fresh challenge with `stale=true`: an honest client simply
//! answers it).
//!
//! # Verdicts and answers
//!
//! | [`Verdict`] | answer |
//! |---|---|
//! | `Ok { user, .. }` | go on with the request as `user` |
//! | `Stale`, `Replayed` | 401/407 with fresh challenges, `stale=true` |
//! | `Challenge(_)` | 401/407 with fresh challenges (no credentials for our realm, or a nonce that is not ours) |
//! | `Forbidden(_)` | 403 (unknown user or wrong password; a re-challenge is also correct, and a [`super::ClientAuth`] gives up on either) |
//! | `BadRequest(_)` | 400 (malformed credentials, `uri` not the Request-URI, unsupported `qop`) |

use super::replay::{NONCE_USES, NonceId, NonceUses, parse_nc};
use super::{
    Algorithm, Credentials, DigestError, ParamValue, Qop, ResponseInput, constant_time_eq,
    hex_into, params::push_escaped, response,
};
use core::fmt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a nonce stays fresh by default.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Longest user name [`NonceSecret::verify`] accepts (bytes, unescaped); a longer one is
/// treated as an unknown user.
pub const USERNAME_MAX: usize = 128;

/// An authenticated user name.
pub type UserName = heapless::String<USERNAME_MAX>;

const NONCE_LEN: usize = 48;
const TAG_LEN: usize = 16;
const LABEL: &[u8] = b"srgate digest nonce v2\0";

/// The outcome of [`NonceSecret::verify`]; see the module doc for the answer to each.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Authenticated.
    Ok {
        /// The user name, unescaped.
        user: UserName,
        /// The algorithm the client used.
        algorithm: Algorithm,
    },
    /// Right password on a nonce older than the lifetime: re-challenge with `stale=true`.
    Stale,
    /// Right password, but the nonce was used with this `nc` (or a greater one) before,
    /// or used once without `qop`: a replay, or a client that lost count. Re-challenge
    /// with `stale=true`.
    Replayed,
    /// Re-challenge (`stale=false`).
    Challenge(Rejection),
    /// Answer 403.
    Forbidden(Rejection),
    /// Answer 400.
    BadRequest(Rejection),
}

/// Why credentials were not accepted (for logs; the answer follows the [`Verdict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Digest` credentials for our realm.
    NoCredentials,
    /// The nonce is not ours: forged, tampered with, from an older secret, or issued for
    /// another algorithm or realm.
    BadNonce,
    /// The credentials for our realm do not parse (or none parse and one is `Digest`).
    Malformed(DigestError),
    /// `qop` other than `auth`.
    UnsupportedQop,
    /// `qop=auth` without `cnonce`/`nc`, or a `-sess` algorithm without `cnonce`.
    MissingCnonce,
    /// `userhash=true` (not supported, never offered).
    Userhash,
    /// `uri` differs from the Request-URI.
    UriMismatch,
    /// No such user (or a user name over [`USERNAME_MAX`]).
    UnknownUser,
    /// The `response` does not match.
    WrongPassword,
}

/// Whether the credentials' `uri` names the request's target. Equal URIs do; so does the
/// same URI without its user part, which SIPp's `[authentication]` sends for INVITEs
/// (`uri="sip:host:port"` for `sip:user@host:port`): liberal there, since the nonce
/// already binds the answer to our realm and a few minutes. Another host is refused.
fn same_target(uri: &str, request_uri: &str) -> bool {
    fn without_user(u: &str) -> (&str, &str) {
        let (scheme, rest) = u.split_once(':').unwrap_or(("", u));
        let end = rest.find([';', '?']).unwrap_or(rest.len());
        match rest[..end].rfind('@') {
            Some(at) => (scheme, &rest[at + 1..]),
            None => (scheme, rest),
        }
    }
    if uri.eq_ignore_ascii_case(request_uri) {
        return true;
    }
    let (s1, h1) = without_user(uri);
    let (s2, h2) = without_user(request_uri);
    !uri.contains('@') && s1.eq_ignore_ascii_case(s2) && h1.eq_ignore_ascii_case(h2)
}

/// The registrar's nonce key and clock base: issues challenges and verifies credentials,
/// remembering the uses of its nonces.
pub struct NonceSecret {
    key: [u8; 32],
    base: Instant,
    lifetime: Duration,
    issued: u32,
    uses: NonceUses,
}

impl fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSecret")
            .field("key", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .field("nonces_used", &self.uses.len())
            .finish()
    }
}

impl NonceSecret {
    /// A random 32-byte secret from the OS; `now` becomes the clock base.
    pub fn new(now: Instant) -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key)?;
        Ok(Self::from_key(key, now))
    }

    /// A given secret (tests, or a secret from elsewhere).
    pub fn from_key(key: [u8; 32], base: Instant) -> Self {
        NonceSecret {
            key,
            base,
            lifetime: NONCE_LIFETIME,
            issued: 0,
            uses: NonceUses::new(NONCE_USES),
        }
    }

    /// Sets how long nonces stay fresh.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// How long nonces stay fresh.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn seconds(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.base).as_secs()).unwrap_or(u32::MAX)
    }

    fn tag(&self, id: NonceId, algorithm: Algorithm, realm: &str, source: IpAddr) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(LABEL);
        mac.update(&id.issued.to_be_bytes());
        mac.update(&id.counter.to_be_bytes());
        mac.update(&[algorithm.id()]);
        mac.update(realm.as_bytes());
        mac.update(&[0]);
        match source.to_canonical() {
            IpAddr::V4(ip) => mac.update(&ip.octets()),
            IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac
    }

    /// A fresh nonce for `realm` and `algorithm`, for the client at `source`.
    pub fn nonce(
        &mut self,
        now: Instant,
        realm: &str,
        algorithm: Algorithm,
        source: IpAddr,
    ) -> heapless::String<NONCE_LEN> {
        let secs = self.seconds(now);
        let counter = self.issued;
        self.issued = self.issued.wrapping_add(1);
        let id = NonceId {
            issued: secs,
            counter,
        };
        let tag = self
            .tag(id, algorithm, realm, source)
            .finalize()
            .into_bytes();
        let mut raw = [0u8; 8 + TAG_LEN];
        raw[..4].copy_from_slice(&secs.to_be_bytes());
        raw[4..8].copy_from_slice(&counter.to_be_bytes());
        raw[8..].copy_from_slice(&tag[..TAG_LEN]);
        let mut hex = [0u8; NONCE_LEN];
        hex_into(&raw, &mut hex);
        let mut out = heapless::String::new();
        for b in hex {
            // 48 hex digits fill exactly the capacity.
            let _ = out.push(char::from(b));
        }
        out
    }

    /// One challenge header value (`WWW-Authenticate` or `Proxy-Authenticate`):
    /// `Digest realm="…", nonce="…", algorithm=…, qop="auth"` and `, stale=true` when asked.
    pub fn challenge(
        &mut self,
        now: Instant,
        realm: &str,
        algorithm: Algorithm,
        stale: bool,
        source: IpAddr,
    ) -> String {
        let nonce = self.nonce(now, realm, algorithm, source);
        let mut out = String::with_capacity(120 + realm.len());
        out.push_str("Digest realm=\"");
        push_escaped(&mut out, realm);
        out.push_str("\", nonce=\"");
        out.push_str(&nonce);
        out.push_str("\", algorithm=");
        out.push_str(algorithm.name());
        out.push_str(", qop=\"auth\"");
        if stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// One challenge per algorithm, in the given order (`[sip] digest = md5,sha256`: many
    /// phones answer only the first header, so MD5 usually goes first). Add each as its
    /// own header, in order.
    pub fn challenges(
        &mut self,
        now: Instant,
        realm: &str,
        algorithms: &[Algorithm],
        stale: bool,
        source: IpAddr,
    ) -> Vec<String> {
        algorithms
            .iter()
            .map(|&a| self.challenge(now, realm, a, stale, source))
            .collect()
    }

    /// Checks the credentials of a request.
    ///
    /// - `method`, `request_uri`: from the request line (`uri` must equal the Request-URI,
    ///   ASCII case aside);
    /// - `realm`: ours; the first `Digest` credentials with this realm are checked, others
    ///   are ignored (they are for other servers);
    /// - `credentials`: every `Authorization` (or `Proxy-Authorization`) value of the request;
    /// - `password`: looks a user name up; `None` for an unknown user;
    /// - `source`: the address the request came from (the nonce must have been issued to
    ///   it).
    ///
    /// The `response` comparison takes constant time; an unknown user costs the same hashing
    /// as a known one. An accepted use of a nonce is remembered (see the module doc).
    #[allow(clippy::too_many_arguments)] // the request's parts, each needed
    pub fn verify<'c, P: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        source: IpAddr,
        method: &str,
        request_uri: &str,
        realm: &str,
        credentials: impl IntoIterator<Item = &'c str>,
        password: impl FnOnce(&str) -> Option<P>,
    ) -> Verdict {
        let mut malformed = None;
        let mut chosen = None;
        for value in credentials {
            match Credentials::parse(value) {
                Ok(c) if c.realm.eq_str(realm) => {
                    chosen = Some(c);
                    break;
                }
                Ok(_) | Err(DigestError::NotDigest) => {}
                Err(e) => {
                    malformed.get_or_insert(e);
                }
            }
        }
        let Some(creds) = chosen else {
            return match malformed {
                Some(e) => Verdict::BadRequest(Rejection::Malformed(e)),
                None => Verdict::Challenge(Rejection::NoCredentials),
            };
        };

        if creds.userhash {
            return Verdict::BadRequest(Rejection::Userhash);
        }
        let qop_auth = match creds.qop {
            None => None,
            Some(Qop::Auth) => match (creds.nc, creds.cnonce) {
                (Some(nc), Some(cnonce)) => Some((nc, cnonce)),
                _ => return Verdict::BadRequest(Rejection::MissingCnonce),
            },
            Some(_) => return Verdict::BadRequest(Rejection::UnsupportedQop),
        };
        if creds.algorithm.is_sess() && creds.cnonce.is_none() {
            return Verdict::BadRequest(Rejection::MissingCnonce);
        }
        if !same_target(creds.uri.raw(), request_uri) {
            return Verdict::BadRequest(Rejection::UriMismatch);
        }
        let Some(nonce) = self.check_nonce(creds.nonce, creds.algorithm, realm, source) else {
            return Verdict::Challenge(Rejection::BadNonce);
        };

        let mut user = UserName::new();
        let found = if unescape_utf8(&creds.username, &mut user) {
            password(user.as_str())
        } else {
            None
        };
        let known = found.is_some();
        let secret: &[u8] = found.as_ref().map_or(&[], |p| p.as_ref());
        let expected = response(&ResponseInput {
            algorithm: creds.algorithm,
            username: creds.username,
            realm: creds.realm,
            password: secret,
            nonce: creds.nonce,
            qop_auth,
            cnonce: creds.cnonce,
            method,
            uri: creds.uri,
        });
        let mut given = [0u8; 64];
        let mut len = 0;
        let mut fits = true;
        for b in creds.response.bytes() {
            match given.get_mut(len) {
                Some(slot) => *slot = b.to_ascii_lowercase(),
                None => {
                    fits = false;
                    break;
                }
            }
            len += 1;
        }
        let matches = fits && constant_time_eq(&given[..len], expected.as_bytes());
        if !known {
            return Verdict::Forbidden(Rejection::UnknownUser);
        }
        if !matches {
            return Verdict::Forbidden(Rejection::WrongPassword);
        }
        let secs = self.seconds(now);
        let age = u64::from(secs.saturating_sub(nonce.issued));
        if age > self.lifetime.as_secs() {
            return Verdict::Stale;
        }
        let nc = match qop_auth {
            // the parser keeps only 1–8 hex digits
            Some((nc, _)) => match nc.as_plain().and_then(parse_nc) {
                Some(nc) => Some(nc),
                None => return Verdict::BadRequest(Rejection::Malformed(DigestError::BadNc)),
            },
            None => None,
        };
        let lifetime = u32::try_from(self.lifetime.as_secs()).unwrap_or(u32::MAX);
        if !self.uses.accept(nonce, nc, secs, lifetime) {
            return Verdict::Replayed;
        }
        Verdict::Ok {
            user,
            algorithm: creds.algorithm,
        }
    }

    /// One of our nonces for this algorithm, realm and client, or `None`.
    fn check_nonce(
        &self,
        nonce: ParamValue<'_>,
        algorithm: Algorithm,
        realm: &str,
        source: IpAddr,
    ) -> Option<NonceId> {
        let text = nonce.as_plain()?.as_bytes();
        if text.len() != NONCE_LEN {
            return None;
        }
        let mut raw = [0u8; 8 + TAG_LEN];
        for (out, pair) in raw.iter_mut().zip(text.chunks_exact(2)) {
            let hi = hex_value(*pair.first()?)?;
            let lo = hex_value(*pair.get(1)?)?;
            *out = (hi << 4) | lo;
        }
        let (head, tag) = raw.split_at(8);
        let (secs, counter) = head.split_at(4);
        let id = NonceId {
            issued: u32::from_be_bytes(secs.try_into().ok()?),
            counter: u32::from_be_bytes(counter.try_into().ok()?),
        };
        self.tag(id, algorithm, realm, source)
            .verify_truncated_left(tag)
            .ok()?;
        Some(id)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Unescapes a (possibly non-ASCII) value into `out`; false when it does not fit.
fn unescape_utf8(value: &ParamValue<'_>, out: &mut UserName) -> bool {
    let mut buf = [0u8; USERNAME_MAX];
    let mut len = 0;
    for b in value.bytes() {
        let Some(slot) = buf.get_mut(len) else {
            return false;
        };
        *slot = b;
        len += 1;
    }
    // Removing ASCII backslashes from valid UTF-8 leaves valid UTF-8.
    match core::str::from_utf8(&buf[..len]) {
        Ok(s) => out.push_str(s).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AuthKind, Challenge, ClientAuth, credentials};
    use super::*;

    const REALM: &str = "srgate.test";
    const URI: &str = "sip:srgate.test";
    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn users(name: &str) -> Option<&'static str> {
        match name {
            "1001" => Some("secret1001"),
            "al\"ice" => Some("pw"),
            "jösé" => Some("pw2"),
            _ => None,
        }
    }

    fn secret(t0: Instant) -> NonceSecret {
        NonceSecret::from_key([42; 32], t0)
    }

    fn answer(challenge: &str, user: &str, password: &str, method: &str) -> String {
        let c = Challenge::parse(challenge).unwrap();
        credentials(&c, method, URI, user, password, "c0ffee", 1)
    }

    fn check(s: &mut NonceSecret, now: Instant, creds: &str) -> Verdict {
        s.verify(now, SRC, "REGISTER", URI, REALM, [creds], users)
    }

    #[test]
    fn round_trip_every_algorithm() {
        let t0 = base();
        let mut s = secret(t0);
        for alg in [
            Algorithm::Md5,
            Algorithm::Sha256,
            Algorithm::Md5Sess,
            Algorithm::Sha256Sess,
        ] {
            let ch = s.challenge(t0, REALM, alg, false, SRC);
            let creds = answer(&ch, "1001", "secret1001", "REGISTER");
            assert_eq!(
                check(&mut s, t0 + Duration::from_secs(2), &creds),
                Verdict::Ok {
                    user: "1001".try_into().unwrap(),
                    algorithm: alg
                },
                "{alg}"
            );
        }
    }

    #[test]
    fn round_trip_through_client_auth() {
        let t0 = base();
        let mut s = secret(t0);
        let mut client = ClientAuth::with_seed("1001", "secret1001", [9; 16]);
        let values = s.challenges(t0, REALM, &[Algorithm::Md5, Algorithm::Sha256], false, SRC);
        client
            .handle_challenge(AuthKind::Www, values.iter().map(String::as_str))
            .unwrap();
        let headers = client.authorize("REGISTER", URI);
        let v = s.verify(
            t0 + Duration::from_secs(1),
            SRC,
            "REGISTER",
            URI,
            REALM,
            headers.iter().map(|h| h.value.as_str()),
            users,
        );
        // The client picked SHA-256 although MD5 came first.
        assert!(matches!(
            v,
            Verdict::Ok {
                algorithm: Algorithm::Sha256,
                ..
            }
        ));
        // The same nonce again with nc=2 is fine within the lifetime.
        let headers = client.authorize("REGISTER", URI);
        assert!(headers[0].value.contains("nc=00000002"));
        let v = s.verify(
            t0 + Duration::from_secs(200),
            SRC,
            "REGISTER",
            URI,
            REALM,
            headers.iter().map(|h| h.value.as_str()),
            users,
        );
        assert!(matches!(v, Verdict::Ok { .. }));
    }

    #[test]
    fn rfc2069_credentials_without_qop_are_accepted() {
        let t0 = base();
        let mut s = secret(t0);
        let nonce = s.nonce(t0, REALM, Algorithm::Md5, SRC);
        let ch = format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\"");
        let creds = answer(&ch, "1001", "secret1001", "REGISTER");
        assert!(!creds.contains("qop"));
        assert!(matches!(check(&mut s, t0, &creds), Verdict::Ok { .. }));
    }

    #[test]
    fn nonce_goes_stale_after_the_lifetime() {
        let t0 = base();
        let mut s = secret(t0).with_lifetime(Duration::from_secs(300));
        let issued = t0 + Duration::from_secs(10);
        let ch = s.challenge(issued, REALM, Algorithm::Md5, false, SRC);
        let creds = answer(&ch, "1001", "secret1001", "REGISTER");
        assert!(matches!(
            check(&mut s, issued + Duration::from_secs(300), &creds),
            Verdict::Ok { .. }
        ));
        assert_eq!(
            check(&mut s, issued + Duration::from_secs(301), &creds),
            Verdict::Stale
        );
        // Stale is only said for the right password.
        let wrong = answer(&ch, "1001", "nope", "REGISTER");
        assert_eq!(
            check(&mut s, issued + Duration::from_secs(301), &wrong),
            Verdict::Forbidden(Rejection::WrongPassword)
        );
        // The re-challenge carries stale=true and its answer passes.
        let again = s.challenge(
            issued + Duration::from_secs(301),
            REALM,
            Algorithm::Md5,
            true,
            SRC,
        );
        assert!(again.ends_with(", stale=true"));
        assert!(Challenge::parse(&again).unwrap().stale);
        let creds = answer(&again, "1001", "secret1001", "REGISTER");
        assert!(matches!(
            check(&mut s, issued + Duration::from_secs(302), &creds),
            Verdict::Ok { .. }
        ));
    }

    #[test]
    fn forged_and_tampered_nonces_are_not_ours() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let nonce = Challenge::parse(&ch).unwrap().nonce.raw().to_owned();
        let forge = |n: &str| {
            let fake = format!("Digest realm=\"{REALM}\", nonce=\"{n}\", qop=\"auth\"");
            answer(&fake, "1001", "secret1001", "REGISTER")
        };
        // Entirely made up.
        assert_eq!(
            check(&mut s, t0, &forge(&"0".repeat(48))),
            Verdict::Challenge(Rejection::BadNonce)
        );
        assert_eq!(
            check(&mut s, t0, &forge("abc")),
            Verdict::Challenge(Rejection::BadNonce)
        );
        // Issue time pushed forward to extend its life: the tag no longer matches.
        let mut tampered = nonce.clone().into_bytes();
        tampered[7] = if tampered[7] == b'f' { b'e' } else { b'f' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            check(&mut s, t0, &forge(&tampered)),
            Verdict::Challenge(Rejection::BadNonce)
        );
        // Uppercased hex is not what we issued.
        assert_eq!(
            check(&mut s, t0, &forge(&nonce.to_uppercase())),
            Verdict::Challenge(Rejection::BadNonce)
        );
        // A nonce issued for MD5 answered with SHA-256.
        let sha =
            format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\"");
        assert_eq!(
            check(&mut s, t0, &answer(&sha, "1001", "secret1001", "REGISTER")),
            Verdict::Challenge(Rejection::BadNonce)
        );
        // A nonce issued for another realm.
        let other = s.challenge(t0, "elsewhere", Algorithm::Md5, false, SRC);
        let n = Challenge::parse(&other).unwrap().nonce.raw().to_owned();
        assert_eq!(
            check(&mut s, t0, &forge(&n)),
            Verdict::Challenge(Rejection::BadNonce)
        );
        // Another secret (srgate restarted).
        let mut restarted = NonceSecret::from_key([43; 32], t0);
        let creds = answer(&ch, "1001", "secret1001", "REGISTER");
        assert_eq!(
            check(&mut restarted, t0, &creds),
            Verdict::Challenge(Rejection::BadNonce)
        );
        assert!(matches!(check(&mut s, t0, &creds), Verdict::Ok { .. }));
    }

    #[test]
    fn wrong_password_and_unknown_user_are_forbidden() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Sha256, false, SRC);
        assert_eq!(
            check(&mut s, t0, &answer(&ch, "1001", "secret1002", "REGISTER")),
            Verdict::Forbidden(Rejection::WrongPassword)
        );
        assert_eq!(
            check(&mut s, t0, &answer(&ch, "9999", "secret1001", "REGISTER")),
            Verdict::Forbidden(Rejection::UnknownUser)
        );
        let long = "x".repeat(USERNAME_MAX + 1);
        assert_eq!(
            check(&mut s, t0, &answer(&ch, &long, "secret1001", "REGISTER")),
            Verdict::Forbidden(Rejection::UnknownUser)
        );
        // Another method than the one hashed.
        assert_eq!(
            check(&mut s, t0, &answer(&ch, "1001", "secret1001", "INVITE")),
            Verdict::Forbidden(Rejection::WrongPassword)
        );
    }

    #[test]
    fn escaped_and_non_ascii_user_names() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let creds = answer(&ch, "al\"ice", "pw", "REGISTER");
        assert!(creds.contains("username=\"al\\\"ice\""));
        assert_eq!(
            check(&mut s, t0, &creds),
            Verdict::Ok {
                user: "al\"ice".try_into().unwrap(),
                algorithm: Algorithm::Md5
            }
        );
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let creds = answer(&ch, "jösé", "pw2", "REGISTER");
        assert!(matches!(check(&mut s, t0, &creds), Verdict::Ok { user, .. } if user == "jösé"));
    }

    #[test]
    fn a_replayed_header_is_refused_and_nc_must_grow() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let creds = answer(&ch, "1001", "secret1001", "REGISTER");
        assert!(creds.contains("nc=00000001"), "{creds}");
        assert!(matches!(check(&mut s, t0, &creds), Verdict::Ok { .. }));
        // the same header again (a new REGISTER with another Call-ID and Contact carries
        // the captured Authorization unchanged)
        let later = t0 + Duration::from_secs(5);
        assert_eq!(check(&mut s, later, &creds), Verdict::Replayed);
        // the honest client's next request on the nonce counts on
        let c = Challenge::parse(&ch).unwrap();
        let next = credentials(&c, "REGISTER", URI, "1001", "secret1001", "c0ffee", 2);
        assert!(matches!(check(&mut s, later, &next), Verdict::Ok { .. }));
        assert_eq!(check(&mut s, later, &next), Verdict::Replayed);
    }

    #[test]
    fn a_nonce_answers_only_from_the_address_it_was_issued_to() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let creds = answer(&ch, "1001", "secret1001", "REGISTER");
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 9));
        assert_eq!(
            s.verify(
                t0,
                elsewhere,
                "REGISTER",
                URI,
                REALM,
                [creds.as_str()],
                users
            ),
            Verdict::Challenge(Rejection::BadNonce)
        );
        assert!(matches!(check(&mut s, t0, &creds), Verdict::Ok { .. }));
    }

    #[test]
    fn uppercase_response_hex_is_accepted() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let creds = answer(&ch, "1001", "secret1001", "REGISTER");
        let start = creds.find("response=\"").unwrap() + 10;
        let mut up = creds.clone();
        up.replace_range(start..start + 32, &creds[start..start + 32].to_uppercase());
        assert_ne!(up, creds);
        assert!(matches!(check(&mut s, t0, &up), Verdict::Ok { .. }));
    }

    #[test]
    fn request_shape_errors() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let creds = answer(&ch, "1001", "secret1001", "REGISTER");
        assert_eq!(
            s.verify(
                t0,
                SRC,
                "REGISTER",
                "sip:other.test",
                REALM,
                [creds.as_str()],
                users
            ),
            Verdict::BadRequest(Rejection::UriMismatch)
        );
        assert!(same_target("sip:127.0.0.1:5086", "sip:2001@127.0.0.1:5086"));
        assert!(!same_target(
            "sip:127.0.0.1:5087",
            "sip:2001@127.0.0.1:5086"
        ));
        assert!(!same_target(
            "sip:1999@127.0.0.1:5086",
            "sip:2001@127.0.0.1:5086"
        ));
        assert!(!same_target("sip:other.test", "sip:2001@127.0.0.1:5086"));
        assert!(matches!(
            s.verify(
                t0,
                SRC,
                "REGISTER",
                "SIP:SRGATE.TEST",
                REALM,
                [creds.as_str()],
                users
            ),
            Verdict::Ok { .. }
        ));
        let int = creds.replace("qop=auth", "qop=auth-int");
        assert_eq!(
            check(&mut s, t0, &int),
            Verdict::BadRequest(Rejection::UnsupportedQop)
        );
        let no_cnonce = creds.replace(", cnonce=\"c0ffee\"", "");
        assert_eq!(
            check(&mut s, t0, &no_cnonce),
            Verdict::BadRequest(Rejection::MissingCnonce)
        );
        let hashed = format!("{creds}, userhash=true");
        assert_eq!(
            check(&mut s, t0, &hashed),
            Verdict::BadRequest(Rejection::Userhash)
        );
        assert_eq!(
            check(&mut s, t0, "Digest username=\"1001\", realm="),
            Verdict::BadRequest(Rejection::Malformed(DigestError::Syntax { at: 24 }))
        );
        assert_eq!(
            s.verify(t0, SRC, "REGISTER", URI, REALM, [], users),
            Verdict::Challenge(Rejection::NoCredentials)
        );
        assert_eq!(
            check(&mut s, t0, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Verdict::Challenge(Rejection::NoCredentials)
        );
    }

    #[test]
    fn picks_the_credentials_for_our_realm() {
        let t0 = base();
        let mut s = secret(t0);
        let ch = s.challenge(t0, REALM, Algorithm::Md5, false, SRC);
        let ours = answer(&ch, "1001", "secret1001", "REGISTER");
        let theirs = ours.replace(REALM, "pbx.example");
        assert_eq!(
            check(&mut s, t0, &theirs),
            Verdict::Challenge(Rejection::NoCredentials)
        );
        assert!(matches!(
            s.verify(
                t0,
                SRC,
                "REGISTER",
                URI,
                REALM,
                [theirs.as_str(), ours.as_str()],
                users
            ),
            Verdict::Ok { .. }
        ));
    }

    #[test]
    fn challenges_follow_the_configured_order_and_nonces_differ() {
        let t0 = base();
        let mut s = secret(t0);
        let list = s.challenges(t0, REALM, &[Algorithm::Md5, Algorithm::Sha256], false, SRC);
        assert_eq!(list.len(), 2);
        let a = Challenge::parse(&list[0]).unwrap();
        let b = Challenge::parse(&list[1]).unwrap();
        assert_eq!(a.algorithm, Algorithm::Md5);
        assert_eq!(b.algorithm, Algorithm::Sha256);
        assert!(a.realm.eq_str(REALM));
        assert!(a.qop.unwrap().auth && !a.qop.unwrap().auth_int);
        assert!(!a.stale);
        assert_eq!(a.nonce.raw().len(), 48);
        assert_ne!(a.nonce, b.nonce);
        let rev = s.challenges(t0, REALM, &[Algorithm::Sha256, Algorithm::Md5], true, SRC);
        assert!(rev[0].contains("algorithm=SHA-256"));
        assert!(rev[1].contains("algorithm=MD5"));
        assert!(rev.iter().all(|c| c.ends_with("stale=true")));
        // Same second, same algorithm: still different nonces.
        assert_ne!(
            s.nonce(t0, REALM, Algorithm::Md5, SRC),
            s.nonce(t0, REALM, Algorithm::Md5, SRC)
        );
        assert!(s.challenges(t0, REALM, &[], false, SRC).is_empty());
    }

    #[test]
    fn debug_hides_the_key() {
        let s = secret(base());
        assert!(!format!("{s:?}").contains("42"));
    }
}
