//! srgate as a digest client (RFC 3261 §22.2–§22.3): answering 401 (`WWW-Authenticate` →
//! `Authorization`) and 407 (`Proxy-Authenticate` → `Proxy-Authorization`).
//!
//! [`ClientAuth`] keeps the last chosen challenge per kind (one for 401, one for 407), so
//! later requests carry credentials pre-emptively with `nc` counting up on the same nonce
//! (RFC 7616 §3.4: `nc` restarts at 1 with every new nonce; one `cnonce` per nonce).
//!
//! When to give up, so a caller never loops on 401/407 (checked in this order):
//! 1. no usable challenge in the response ([`GiveUp::NoUsableChallenge`]);
//! 2. more than [`MAX_CHALLENGES_IN_ROW`] challenges without a success in between
//!    ([`GiveUp::TooManyChallenges`]) — bounds a server that keeps saying `stale=true`;
//! 3. a challenge repeating the nonce just used, stale or not ([`GiveUp::Rejected`]);
//! 4. a non-stale challenge (same realm) after credentials sent on the *first* use of a
//!    nonce: that answer was computed from a fresh challenge, so the password is wrong
//!    ([`GiveUp::Rejected`]). Servers hand out a new nonce with every 401, so "same nonce"
//!    alone would loop forever on a wrong password.
//!
//! Otherwise (first challenge, `stale=true` with a new nonce, a nonce reused pre-emptively
//! and refused, e.g. after the registrar restarted) the caller retries with [`ClientAuth::authorize`].

use super::params::push_escaped;
use super::{Challenge, ParamValue, ResponseInput, choose_challenge, hex_into, response};
use core::fmt;
use sha2::{Digest, Sha256};

/// How many challenges in a row [`ClientAuth`] answers before giving up. A success
/// ([`ClientAuth::handle_success`], or reusing a nonce for a new request) resets the count.
/// Four allows a 407 then a 401 then a `stale=true` on each.
pub const MAX_CHALLENGES_IN_ROW: u8 = 4;

/// Which pair of headers a challenge came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// 401, `WWW-Authenticate` → `Authorization` (registrars, UASs).
    Www,
    /// 407, `Proxy-Authenticate` → `Proxy-Authorization` (proxies).
    Proxy,
}

impl AuthKind {
    /// 401 → `Www`, 407 → `Proxy`, anything else `None`.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            401 => Some(AuthKind::Www),
            407 => Some(AuthKind::Proxy),
            _ => None,
        }
    }

    /// The response header carrying challenges.
    pub fn challenge_header(self) -> &'static str {
        match self {
            AuthKind::Www => "WWW-Authenticate",
            AuthKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// The request header carrying credentials.
    pub fn credentials_header(self) -> &'static str {
        match self {
            AuthKind::Www => "Authorization",
            AuthKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// Why [`ClientAuth::handle_challenge`] says not to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUp {
    /// No `Digest` challenge srgate can answer (other schemes, unsupported algorithm,
    /// only `qop=auth-int`, malformed).
    NoUsableChallenge,
    /// The server refused the credentials (wrong user name or password).
    Rejected,
    /// Too many challenges in a row ([`MAX_CHALLENGES_IN_ROW`]).
    TooManyChallenges,
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GiveUp::NoUsableChallenge => "no usable digest challenge",
            GiveUp::Rejected => "credentials rejected",
            GiveUp::TooManyChallenges => "too many digest challenges in a row",
        })
    }
}

impl std::error::Error for GiveUp {}

/// One header to add to a request: `name: value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthHeader {
    /// `Authorization` or `Proxy-Authorization`.
    pub name: &'static str,
    /// The credentials.
    pub value: String,
}

/// Computes one credentials value (for `Authorization` / `Proxy-Authorization`) answering
/// `challenge` for a request `method` with Request-URI `uri`.
///
/// With `qop=auth` offered, the answer uses `qop=auth`, `cnonce` and `nc` (8 hex digits);
/// without `qop` it is RFC 2069 style (no `cnonce`/`nc`, except that `-sess` algorithms
/// still send `cnonce`). `opaque` is echoed; `algorithm` is always written.
pub fn credentials(
    challenge: &Challenge<'_>,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let mut nc_buf = [0u8; 8];
    hex_into(&nc.to_be_bytes(), &mut nc_buf);
    // Only hex digits were written.
    let nc_text = core::str::from_utf8(&nc_buf).unwrap_or("00000001");
    let qop_auth = challenge.qop.is_some();
    let with_cnonce = qop_auth || challenge.algorithm.is_sess();
    let digest = response(&ResponseInput {
        algorithm: challenge.algorithm,
        username: ParamValue::plain(username),
        realm: challenge.realm,
        password: password.as_bytes(),
        nonce: challenge.nonce,
        qop_auth: qop_auth.then(|| (ParamValue::plain(nc_text), ParamValue::plain(cnonce))),
        cnonce: with_cnonce.then(|| ParamValue::plain(cnonce)),
        method,
        uri: ParamValue::plain(uri),
    });

    let mut out = String::with_capacity(256);
    out.push_str("Digest username=\"");
    push_escaped(&mut out, username);
    out.push_str("\", realm=");
    challenge.realm.write_quoted(&mut out);
    out.push_str(", nonce=");
    challenge.nonce.write_quoted(&mut out);
    out.push_str(", uri=\"");
    push_escaped(&mut out, uri);
    out.push_str("\", response=\"");
    out.push_str(digest.as_str());
    out.push_str("\", algorithm=");
    out.push_str(challenge.algorithm.name());
    if with_cnonce {
        out.push_str(", cnonce=\"");
        push_escaped(&mut out, cnonce);
        out.push('"');
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(", opaque=");
        opaque.write_quoted(&mut out);
    }
    if qop_auth {
        out.push_str(", qop=auth, nc=");
        out.push_str(nc_text);
    }
    out
}

/// The challenge answered for one [`AuthKind`], kept as the header value it came in.
#[derive(Clone, Debug)]
struct Slot {
    /// The chosen challenge value (re-parsed when used; it parsed when stored).
    header: String,
    /// Requests sent with this nonce so far.
    nc: u32,
    cnonce: heapless::String<16>,
}

impl Slot {
    fn challenge(&self) -> Option<Challenge<'_>> {
        Challenge::parse(&self.header).ok()
    }
}

/// The password, kept out of `Debug` output.
#[derive(Clone)]
struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Digest client state for one account (user name + password).
///
/// Use: send the request without credentials (or with [`ClientAuth::authorize`]'s headers
/// once a challenge is known); on 401/407 call [`ClientAuth::handle_challenge`] with the
/// status's [`AuthKind`] and all its challenge header values; on `Ok` build the request
/// again (new CSeq) with the headers from [`ClientAuth::authorize`]; on `Err` fail the
/// request. On any other final response to a request that carried credentials call
/// [`ClientAuth::handle_success`].
///
/// Two requests in flight at once with the same nonce are fine (`nc` still counts), but the
/// give-up rules judge a challenge against the last credentials sent.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    username: String,
    password: Password,
    seed: [u8; 16],
    cnonces: u64,
    www: Option<Slot>,
    proxy: Option<Slot>,
    challenges_in_row: u8,
}

impl ClientAuth {
    /// A client for `username` / `password`. The cnonce seed comes from the OS random
    /// source; if that fails, cnonces are still unique (a counter) but predictable, which
    /// only weakens the protection against a malicious server's chosen-plaintext attacks.
    pub fn new(username: &str, password: &str) -> Self {
        let mut seed = [0u8; 16];
        if getrandom::getrandom(&mut seed).is_err() {
            seed = [0; 16];
        }
        Self::with_seed(username, password, seed)
    }

    /// As [`ClientAuth::new`] with a given cnonce seed (deterministic tests).
    pub fn with_seed(username: &str, password: &str, seed: [u8; 16]) -> Self {
        ClientAuth {
            username: username.to_owned(),
            password: Password(password.to_owned()),
            seed,
            cnonces: 0,
            www: None,
            proxy: None,
            challenges_in_row: 0,
        }
    }

    /// The account's user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    fn slot_mut(&mut self, kind: AuthKind) -> &mut Option<Slot> {
        match kind {
            AuthKind::Www => &mut self.www,
            AuthKind::Proxy => &mut self.proxy,
        }
    }

    fn next_cnonce(&mut self) -> heapless::String<16> {
        self.cnonces = self.cnonces.wrapping_add(1);
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.cnonces.to_be_bytes());
        let digest = h.finalize();
        let mut buf = [0u8; 16];
        hex_into(&digest, &mut buf);
        let mut s = heapless::String::new();
        for b in buf {
            // 16 hex digits fill exactly the 16-byte capacity.
            let _ = s.push(char::from(b));
        }
        s
    }

    /// Takes a 401 or 407: `kind` from the status, `values` the response's
    /// `WWW-Authenticate` / `Proxy-Authenticate` values. `Ok(())`: retry the request with
    /// [`ClientAuth::authorize`]. `Err`: stop (see the module doc for the rules); the
    /// remembered challenge of that kind is dropped, so a later attempt starts afresh.
    pub fn handle_challenge<'a>(
        &mut self,
        kind: AuthKind,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), GiveUp> {
        let Some(new) = choose_challenge(values) else {
            *self.slot_mut(kind) = None;
            return Err(GiveUp::NoUsableChallenge);
        };
        if self.challenges_in_row >= MAX_CHALLENGES_IN_ROW {
            *self.slot_mut(kind) = None;
            return Err(GiveUp::TooManyChallenges);
        }
        let verdict = match self.slot_mut(kind).as_ref() {
            Some(slot) if slot.nc > 0 => match slot.challenge() {
                Some(old) => {
                    let same_realm = old.realm.raw() == new.realm.raw();
                    let same_nonce = old.nonce.raw() == new.nonce.raw();
                    // Rule 3 (same nonce) and rule 4 (fresh nonce refused).
                    if same_realm && (same_nonce || (!new.stale && slot.nc == 1)) {
                        Err(GiveUp::Rejected)
                    } else {
                        Ok(())
                    }
                }
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = verdict {
            *self.slot_mut(kind) = None;
            return Err(e);
        }
        let header = new_header(new);
        let cnonce = self.next_cnonce();
        *self.slot_mut(kind) = Some(Slot {
            header,
            nc: 0,
            cnonce,
        });
        self.challenges_in_row += 1;
        Ok(())
    }

    /// A request that carried credentials got a final response other than 401/407.
    pub fn handle_success(&mut self) {
        self.challenges_in_row = 0;
    }

    /// Forgets every remembered challenge (e.g. when the account's password changes).
    pub fn clear(&mut self) {
        self.www = None;
        self.proxy = None;
        self.challenges_in_row = 0;
    }

    /// The credentials headers for a new request (`method`, Request-URI `uri`), one per
    /// remembered challenge (none before the first challenge). Each call counts a use of
    /// the nonce (`nc` + 1), so call it once per request sent, retransmissions excluded.
    pub fn authorize(&mut self, method: &str, uri: &str) -> heapless::Vec<AuthHeader, 2> {
        let mut out = heapless::Vec::new();
        for kind in [AuthKind::Proxy, AuthKind::Www] {
            let username = self.username.as_str();
            let password = self.password.0.as_str();
            let slot = match kind {
                AuthKind::Www => &mut self.www,
                AuthKind::Proxy => &mut self.proxy,
            };
            let Some(slot) = slot.as_mut() else {
                continue;
            };
            slot.nc = slot.nc.saturating_add(1);
            let reused = slot.nc >= 2;
            let Some(challenge) = slot.challenge() else {
                continue;
            };
            let value = credentials(
                &challenge,
                method,
                uri,
                username,
                password,
                &slot.cnonce,
                slot.nc,
            );
            // Capacity 2 = the two kinds.
            let _ = out.push(AuthHeader {
                name: kind.credentials_header(),
                value,
            });
            if reused {
                // The nonce survived a round trip: the server took it.
                self.challenges_in_row = 0;
            }
        }
        out
    }
}

/// Rebuilds a canonical challenge header from its parsed parts, so the slot owns it.
fn new_header(c: Challenge<'_>) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("Digest realm=");
    c.realm.write_quoted(&mut out);
    out.push_str(", nonce=");
    c.nonce.write_quoted(&mut out);
    if let Some(opaque) = &c.opaque {
        out.push_str(", opaque=");
        opaque.write_quoted(&mut out);
    }
    out.push_str(", algorithm=");
    out.push_str(c.algorithm.name());
    if let Some(q) = c.qop {
        out.push_str(match (q.auth, q.auth_int) {
            (true, true) => ", qop=\"auth,auth-int\"",
            (true, false) => ", qop=\"auth\"",
            (false, true) => ", qop=\"auth-int\"",
            (false, false) => ", qop=\"\"",
        });
    }
    if c.stale {
        out.push_str(", stale=true");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617_CHALLENGE: &str = "Digest realm=\"testrealm@host.com\", \
        qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
        opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    fn param<'a>(value: &'a str, name: &str) -> &'a str {
        let start = value.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = &value[start..];
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        let end = rest.find(['"', ',']).unwrap_or(rest.len());
        &rest[..end]
    }

    #[test]
    fn rfc2617_md5_qop_auth_vector() {
        let c = Challenge::parse(RFC2617_CHALLENGE).unwrap();
        let v = credentials(
            &c,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "0a4f113b",
            1,
        );
        assert_eq!(param(&v, "response"), "6629fae49393a05397450978507c4ef1");
        assert_eq!(param(&v, "nc"), "00000001");
        assert_eq!(param(&v, "cnonce"), "0a4f113b");
        assert_eq!(param(&v, "qop"), "auth");
        assert_eq!(param(&v, "opaque"), "5ccc069c403ebaf9f0171e9517f40e41");
        assert_eq!(param(&v, "algorithm"), "MD5");
        assert!(v.starts_with("Digest username=\"Mufasa\", realm=\"testrealm@host.com\""));
    }

    #[test]
    fn rfc7616_sha256_and_md5_vectors() {
        let sha = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
             algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let v = credentials(
            &sha,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            cnonce,
            1,
        );
        assert_eq!(
            param(&v, "response"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(param(&v, "algorithm"), "SHA-256");
        let md5 = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
             algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let v = credentials(
            &md5,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            cnonce,
            1,
        );
        assert_eq!(param(&v, "response"), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc2069_style_without_qop() {
        // RFC 2069 §2.4 example: no qop, no cnonce, no nc.
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let v = credentials(
            &c,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "CircleOfLife",
            "x",
            1,
        );
        assert_eq!(param(&v, "response"), "1949323746fe6a43ef61f9606e7febea");
        assert!(!v.contains("cnonce"));
        assert!(!v.contains("nc="));
        assert!(!v.contains("qop"));
    }

    #[test]
    fn sess_sends_cnonce_even_without_qop() {
        let c = Challenge::parse("Digest realm=r, nonce=n, algorithm=MD5-sess").unwrap();
        let v = credentials(&c, "REGISTER", "sip:x", "u", "p", "cn", 1);
        assert_eq!(param(&v, "cnonce"), "cn");
        assert!(!v.contains("qop"));
        // Different cnonce, different HA1, different response.
        let w = credentials(&c, "REGISTER", "sip:x", "u", "p", "cm", 1);
        assert_ne!(param(&v, "response"), param(&w, "response"));
    }

    #[test]
    fn escaped_user_and_realm_are_written_back_escaped() {
        let c = Challenge::parse("Digest realm=\"a\\\"b\", nonce=n, qop=auth").unwrap();
        let v = credentials(&c, "REGISTER", "sip:x", "we\"ird", "p", "cn", 1);
        assert!(v.contains("username=\"we\\\"ird\""));
        assert!(v.contains("realm=\"a\\\"b\""));
    }

    fn challenge(nonce: &str, stale: bool) -> String {
        format!(
            "Digest realm=\"srgate\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{}",
            if stale { ", stale=true" } else { "" }
        )
    }

    #[test]
    fn nc_counts_per_nonce_and_resets_on_new_nonce() {
        let mut a = ClientAuth::with_seed("1000", "1234", [7; 16]);
        assert!(a.authorize("REGISTER", "sip:srgate").is_empty());
        a.handle_challenge(AuthKind::Www, [challenge("n1", false).as_str()])
            .unwrap();
        let h1 = a.authorize("REGISTER", "sip:srgate");
        assert_eq!(h1.len(), 1);
        assert_eq!(h1[0].name, "Authorization");
        assert_eq!(param(&h1[0].value, "nc"), "00000001");
        let cnonce = param(&h1[0].value, "cnonce").to_owned();
        assert_eq!(cnonce.len(), 16);
        a.handle_success();
        let h2 = a.authorize("REGISTER", "sip:srgate");
        assert_eq!(param(&h2[0].value, "nc"), "00000002");
        assert_eq!(param(&h2[0].value, "cnonce"), cnonce);
        assert_ne!(
            param(&h1[0].value, "response"),
            param(&h2[0].value, "response")
        );
        // The pre-emptive nc=2 was refused with a new nonce (registrar restarted): retry.
        a.handle_challenge(AuthKind::Www, [challenge("n2", false).as_str()])
            .unwrap();
        let h3 = a.authorize("REGISTER", "sip:srgate");
        assert_eq!(param(&h3[0].value, "nc"), "00000001");
        assert_eq!(param(&h3[0].value, "nonce"), "n2");
        assert_ne!(param(&h3[0].value, "cnonce"), cnonce);
    }

    #[test]
    fn gives_up_on_same_nonce_and_on_fresh_nonce_refused() {
        let mut a = ClientAuth::with_seed("1000", "wrong", [1; 16]);
        a.handle_challenge(AuthKind::Www, [challenge("n1", false).as_str()])
            .unwrap();
        a.authorize("REGISTER", "sip:srgate");
        assert_eq!(
            a.handle_challenge(AuthKind::Www, [challenge("n1", false).as_str()]),
            Err(GiveUp::Rejected)
        );
        // Dropped: the next request goes without credentials.
        assert!(a.authorize("REGISTER", "sip:srgate").is_empty());

        a.handle_challenge(AuthKind::Www, [challenge("n2", false).as_str()])
            .unwrap();
        a.authorize("REGISTER", "sip:srgate");
        assert_eq!(
            a.handle_challenge(AuthKind::Www, [challenge("n3", false).as_str()]),
            Err(GiveUp::Rejected)
        );
    }

    #[test]
    fn retries_on_stale_with_new_nonce_but_not_same_nonce() {
        let mut a = ClientAuth::with_seed("1000", "1234", [2; 16]);
        a.handle_challenge(AuthKind::Www, [challenge("n1", false).as_str()])
            .unwrap();
        a.authorize("REGISTER", "sip:srgate");
        a.handle_challenge(AuthKind::Www, [challenge("n2", true).as_str()])
            .unwrap();
        let h = a.authorize("REGISTER", "sip:srgate");
        assert_eq!(param(&h[0].value, "nonce"), "n2");
        assert_eq!(param(&h[0].value, "nc"), "00000001");
        assert_eq!(
            a.handle_challenge(AuthKind::Www, [challenge("n2", true).as_str()]),
            Err(GiveUp::Rejected)
        );
    }

    #[test]
    fn endless_stale_is_bounded() {
        let mut a = ClientAuth::with_seed("1000", "1234", [3; 16]);
        let mut retries = 0;
        for i in 0..20 {
            match a.handle_challenge(AuthKind::Www, [challenge(&format!("n{i}"), true).as_str()]) {
                Ok(()) => retries += 1,
                Err(e) => {
                    assert_eq!(e, GiveUp::TooManyChallenges);
                    break;
                }
            }
            a.authorize("REGISTER", "sip:srgate");
        }
        assert_eq!(retries, usize::from(MAX_CHALLENGES_IN_ROW));
    }

    #[test]
    fn proxy_and_www_are_both_answered() {
        let mut a = ClientAuth::with_seed("1000", "1234", [4; 16]);
        a.handle_challenge(
            AuthKind::Proxy,
            [
                challenge("p1", false).as_str(),
                "Digest realm=\"srgate\", nonce=\"p2\", algorithm=SHA-256, qop=\"auth\"",
            ],
        )
        .unwrap();
        a.authorize("INVITE", "sip:1005@pbx");
        a.handle_challenge(AuthKind::Www, [challenge("w1", false).as_str()])
            .unwrap();
        let h = a.authorize("INVITE", "sip:1005@pbx");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "Proxy-Authorization");
        assert_eq!(param(&h[0].value, "nonce"), "p2");
        assert_eq!(param(&h[0].value, "algorithm"), "SHA-256");
        assert_eq!(param(&h[0].value, "nc"), "00000002");
        assert_eq!(h[1].name, "Authorization");
        assert_eq!(param(&h[1].value, "nc"), "00000001");
    }

    #[test]
    fn unusable_challenges_give_up() {
        let mut a = ClientAuth::with_seed("u", "p", [5; 16]);
        assert_eq!(
            a.handle_challenge(AuthKind::Www, ["Basic realm=\"x\""]),
            Err(GiveUp::NoUsableChallenge)
        );
        assert_eq!(
            a.handle_challenge(AuthKind::Www, ["Digest realm=x, nonce=y, qop=\"auth-int\""]),
            Err(GiveUp::NoUsableChallenge)
        );
        assert_eq!(
            a.handle_challenge(AuthKind::Proxy, []),
            Err(GiveUp::NoUsableChallenge)
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let a = ClientAuth::new("1000", "s3cr3t-pw");
        let text = format!("{a:?}");
        assert!(!text.contains("s3cr3t-pw"));
        assert!(text.contains("<redacted>"));
    }
}
