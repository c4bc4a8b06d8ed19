//! Parsing of `Digest` challenges and credentials (RFC 3261 §25.1 `challenge` / `credentials`,
//! RFC 2617 §3.2, RFC 7616 §3.3–§3.4), borrowing the header value.
//!
//! The grammar is read liberally (RFC 4475 spirit): linear white space (including folded
//! lines) anywhere between elements, empty list elements (`a=1,,b=2`), case-insensitive scheme
//! and parameter names, unknown parameters skipped, unquoted values where quotes are expected.
//! It is strict where safety needs it: an unterminated quoted string, a missing `=`, garbage
//! between parameters or a duplicated known parameter is a [`DigestError`].

use super::{Algorithm, DigestError};

/// A parameter value as it appears in the header: the text between the quotes for a
/// quoted-string (escapes still in place), or the bare token.
///
/// Nothing is copied: [`ParamValue::bytes`] yields the unescaped bytes on the fly, which is
/// what the digest hashes take and what comparisons use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamValue<'a> {
    raw: &'a str,
    quoted: bool,
}

impl<'a> ParamValue<'a> {
    /// A value given by the caller (no escapes inside).
    pub(crate) fn plain(text: &'a str) -> Self {
        ParamValue {
            raw: text,
            quoted: false,
        }
    }

    /// The value as on the wire, without the surrounding quotes (escapes kept).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the value was a quoted-string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The value itself when it holds no escape (the usual case), else `None`.
    pub fn as_plain(&self) -> Option<&'a str> {
        if self.quoted && self.raw.contains('\\') {
            None
        } else {
            Some(self.raw)
        }
    }

    /// The unescaped bytes of the value.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        let quoted = self.quoted;
        let mut escaped = false;
        self.raw.bytes().filter(move |&b| {
            if quoted && !escaped && b == b'\\' {
                escaped = true;
                false
            } else {
                escaped = false;
                true
            }
        })
    }

    /// Whether the unescaped value equals `text` exactly.
    pub fn eq_str(&self, text: &str) -> bool {
        self.bytes().eq(text.bytes())
    }

    /// Whether the unescaped value equals `text` ignoring ASCII case.
    pub fn eq_ignore_ascii_case(&self, text: &str) -> bool {
        self.bytes()
            .map(|b| b.to_ascii_lowercase())
            .eq(text.bytes().map(|b| b.to_ascii_lowercase()))
    }

    /// Number of unescaped bytes.
    pub fn len(&self) -> usize {
        self.bytes().count()
    }

    /// Whether the unescaped value is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Writes the value as a quoted-string (the raw text of a quoted value is already
    /// correctly escaped; a bare value gets escapes where needed).
    pub(crate) fn write_quoted(&self, out: &mut String) {
        out.push('"');
        if self.quoted {
            out.push_str(self.raw);
        } else {
            push_escaped(out, self.raw);
        }
        out.push('"');
    }
}

/// Appends `text` escaped for a quoted-string (`"` and `\` get a backslash).
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 §25.1 `token` characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Splits off the auth scheme; returns the parameter list after it when it is `Digest`.
fn digest_params(value: &str) -> Result<&str, DigestError> {
    let value = value.trim_start_matches(|c: char| c.is_ascii() && is_lws(c as u8));
    let scheme_len = value.bytes().take_while(|&b| is_token(b)).count();
    let (scheme, rest) = value.split_at(scheme_len);
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(DigestError::NotDigest);
    }
    match rest.bytes().next() {
        None => Ok(rest),
        Some(b) if is_lws(b) => Ok(rest),
        Some(_) => Err(DigestError::NotDigest),
    }
}

/// Iterator over `name=value` pairs of a comma-separated auth-param list.
struct Params<'a> {
    text: &'a str,
    pos: usize,
    failed: bool,
}

impl<'a> Params<'a> {
    fn new(text: &'a str) -> Self {
        Params {
            text,
            pos: 0,
            failed: false,
        }
    }

    fn skip_lws(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.pos).is_some_and(|&b| is_lws(b)) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn error(&mut self) -> Option<Result<(&'a str, ParamValue<'a>), DigestError>> {
        self.failed = true;
        Some(Err(DigestError::Syntax { at: self.pos }))
    }

    fn value(&mut self) -> Result<ParamValue<'a>, DigestError> {
        let bytes = self.text.as_bytes();
        if self.peek() == Some(b'"') {
            let start = self.pos + 1;
            let mut i = start;
            // Bounded by the text length: every step advances `i`.
            loop {
                match bytes.get(i) {
                    None => return Err(DigestError::Syntax { at: self.pos }),
                    Some(b'\\') => {
                        if i + 1 >= bytes.len() {
                            return Err(DigestError::Syntax { at: i });
                        }
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            let raw = self
                .text
                .get(start..i)
                .ok_or(DigestError::Syntax { at: start })?;
            self.pos = i + 1;
            Ok(ParamValue { raw, quoted: true })
        } else {
            // Liberal: any run up to a separator, so `nonce=abc==` from sloppy peers is read.
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|b| b != b',' && b != b'"' && !is_lws(b))
            {
                self.pos += 1;
            }
            let raw = self
                .text
                .get(start..self.pos)
                .ok_or(DigestError::Syntax { at: start })?;
            if raw.is_empty() {
                return Err(DigestError::Syntax { at: start });
            }
            Ok(ParamValue { raw, quoted: false })
        }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a str, ParamValue<'a>), DigestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // Skip empty list elements: `*( LWS "," )`.
        loop {
            self.skip_lws();
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.peek()?;
        let start = self.pos;
        while self.peek().is_some_and(is_token) {
            self.pos += 1;
        }
        let Some(name) = self.text.get(start..self.pos).filter(|n| !n.is_empty()) else {
            return self.error();
        };
        self.skip_lws();
        if self.peek() != Some(b'=') {
            return self.error();
        }
        self.pos += 1;
        self.skip_lws();
        let value = match self.value() {
            Ok(v) => v,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        self.skip_lws();
        match self.peek() {
            None => {}
            Some(b',') => self.pos += 1,
            Some(_) => return self.error(),
        }
        Some(Ok((name, value)))
    }
}

/// Stores `value` into `slot`, refusing a second occurrence of a known parameter.
fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), DigestError> {
    if slot.is_some() {
        return Err(DigestError::DuplicateParam(name));
    }
    *slot = Some(value);
    Ok(())
}

/// Which `qop` values a challenge offers (RFC 2617 §3.2.1 `qop-options`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QopOffer {
    /// `auth` offered.
    pub auth: bool,
    /// `auth-int` offered (srgate never uses it).
    pub auth_int: bool,
}

impl QopOffer {
    fn parse(value: ParamValue<'_>) -> QopOffer {
        let mut offer = QopOffer::default();
        // The raw text of a qop list never needs unescaping to find its tokens.
        for item in value.raw().split(',') {
            let item = item.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8));
            if item.eq_ignore_ascii_case("auth") {
                offer.auth = true;
            } else if item.eq_ignore_ascii_case("auth-int") {
                offer.auth_int = true;
            }
        }
        offer
    }
}

/// One parsed `Digest` challenge (a `WWW-Authenticate` or `Proxy-Authenticate` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// `realm` (required).
    pub realm: ParamValue<'a>,
    /// `nonce` (required).
    pub nonce: ParamValue<'a>,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<ParamValue<'a>>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop` options; `None` when absent (RFC 2069 compatibility: no cnonce, no nc).
    pub qop: Option<QopOffer>,
    /// `stale=true`: the previous credentials were right but their nonce had expired.
    pub stale: bool,
}

impl<'a> Challenge<'a> {
    /// Parses one challenge header value.
    ///
    /// Errors: [`DigestError::NotDigest`] for another scheme (`Basic`, `Bearer`),
    /// [`DigestError::UnsupportedAlgorithm`] for an algorithm srgate cannot compute,
    /// [`DigestError::MissingParam`], [`DigestError::DuplicateParam`], [`DigestError::Syntax`].
    pub fn parse(value: &'a str) -> Result<Self, DigestError> {
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut stale = None;
        for param in Params::new(digest_params(value)?) {
            let (name, v) = param?;
            if name.eq_ignore_ascii_case("realm") {
                set_once(&mut realm, v, "realm")?;
            } else if name.eq_ignore_ascii_case("nonce") {
                set_once(&mut nonce, v, "nonce")?;
            } else if name.eq_ignore_ascii_case("opaque") {
                set_once(&mut opaque, v, "opaque")?;
            } else if name.eq_ignore_ascii_case("algorithm") {
                set_once(&mut algorithm, v, "algorithm")?;
            } else if name.eq_ignore_ascii_case("qop") {
                set_once(&mut qop, QopOffer::parse(v), "qop")?;
            } else if name.eq_ignore_ascii_case("stale") {
                set_once(&mut stale, v.eq_ignore_ascii_case("true"), "stale")?;
            }
        }
        let algorithm = match algorithm {
            None => Algorithm::Md5,
            Some(v) => Algorithm::from_param(v).ok_or(DigestError::UnsupportedAlgorithm)?,
        };
        Ok(Challenge {
            realm: realm.ok_or(DigestError::MissingParam("realm"))?,
            nonce: nonce.ok_or(DigestError::MissingParam("nonce"))?,
            opaque,
            algorithm,
            qop,
            stale: stale.unwrap_or(false),
        })
    }

    /// Whether srgate can answer this challenge: `qop` absent (RFC 2069 style) or offering
    /// `auth`. A challenge that offers only `auth-int` is not usable.
    pub fn is_usable(&self) -> bool {
        self.qop.is_none_or(|q| q.auth)
    }
}

/// Picks, among several challenge header values (one per header, any order), the one a
/// client should answer: the strongest supported algorithm (SHA-256 over MD5, see
/// [`Algorithm::strength`]), the first one on a tie. Values that are not `Digest`, do not
/// parse, name an unsupported algorithm or offer only `qop=auth-int` are skipped.
pub fn choose_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge<'a>> {
    let mut best: Option<Challenge<'a>> = None;
    for value in values {
        let Ok(challenge) = Challenge::parse(value) else {
            continue;
        };
        if !challenge.is_usable() {
            continue;
        }
        if best.is_none_or(|b| challenge.algorithm.strength() > b.algorithm.strength()) {
            best = Some(challenge);
        }
    }
    best
}

/// `qop` in credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qop {
    /// `qop=auth`.
    Auth,
    /// `qop=auth-int`.
    AuthInt,
    /// Any other token.
    Other,
}

/// Parsed `Digest` credentials (an `Authorization` or `Proxy-Authorization` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username` (required).
    pub username: ParamValue<'a>,
    /// `realm` (required).
    pub realm: ParamValue<'a>,
    /// `nonce` (required).
    pub nonce: ParamValue<'a>,
    /// `uri`, the digest-uri (required).
    pub uri: ParamValue<'a>,
    /// `response` (required).
    pub response: ParamValue<'a>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `cnonce`.
    pub cnonce: Option<ParamValue<'a>>,
    /// `opaque`.
    pub opaque: Option<ParamValue<'a>>,
    /// `qop`.
    pub qop: Option<Qop>,
    /// `nc` as sent (8 hex digits; the hash takes it as sent).
    pub nc: Option<ParamValue<'a>>,
    /// `userhash=true` (RFC 7616 §3.4.4).
    pub userhash: bool,
}

impl<'a> Credentials<'a> {
    /// Parses one credentials header value.
    ///
    /// Errors as for [`Challenge::parse`]; a malformed `nc` (not 1–8 hex digits) is
    /// [`DigestError::BadNc`].
    pub fn parse(value: &'a str) -> Result<Self, DigestError> {
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = None;
        let mut cnonce = None;
        let mut opaque = None;
        let mut qop = None;
        let mut nc = None;
        let mut userhash = None;
        for param in Params::new(digest_params(value)?) {
            let (name, v) = param?;
            if name.eq_ignore_ascii_case("username") {
                set_once(&mut username, v, "username")?;
            } else if name.eq_ignore_ascii_case("realm") {
                set_once(&mut realm, v, "realm")?;
            } else if name.eq_ignore_ascii_case("nonce") {
                set_once(&mut nonce, v, "nonce")?;
            } else if name.eq_ignore_ascii_case("uri") {
                set_once(&mut uri, v, "uri")?;
            } else if name.eq_ignore_ascii_case("response") {
                set_once(&mut response, v, "response")?;
            } else if name.eq_ignore_ascii_case("algorithm") {
                set_once(&mut algorithm, v, "algorithm")?;
            } else if name.eq_ignore_ascii_case("cnonce") {
                set_once(&mut cnonce, v, "cnonce")?;
            } else if name.eq_ignore_ascii_case("opaque") {
                set_once(&mut opaque, v, "opaque")?;
            } else if name.eq_ignore_ascii_case("qop") {
                // Some peers quote it; either way it is one token.
                let q = if v.eq_ignore_ascii_case("auth") {
                    Qop::Auth
                } else if v.eq_ignore_ascii_case("auth-int") {
                    Qop::AuthInt
                } else {
                    Qop::Other
                };
                set_once(&mut qop, q, "qop")?;
            } else if name.eq_ignore_ascii_case("nc") {
                let raw = v.raw();
                if raw.is_empty() || raw.len() > 8 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DigestError::BadNc);
                }
                set_once(&mut nc, v, "nc")?;
            } else if name.eq_ignore_ascii_case("userhash") {
                set_once(&mut userhash, v.eq_ignore_ascii_case("true"), "userhash")?;
            }
        }
        let algorithm = match algorithm {
            None => Algorithm::Md5,
            Some(v) => Algorithm::from_param(v).ok_or(DigestError::UnsupportedAlgorithm)?,
        };
        Ok(Credentials {
            username: username.ok_or(DigestError::MissingParam("username"))?,
            realm: realm.ok_or(DigestError::MissingParam("realm"))?,
            nonce: nonce.ok_or(DigestError::MissingParam("nonce"))?,
            uri: uri.ok_or(DigestError::MissingParam("uri"))?,
            response: response.ok_or(DigestError::MissingParam("response"))?,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            userhash: userhash.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rfc2617_challenge() {
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(c.realm.eq_str("testrealm@host.com"));
        assert_eq!(c.nonce.raw(), "dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(c.opaque.unwrap().raw(), "5ccc069c403ebaf9f0171e9517f40e41");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(
            c.qop,
            Some(QopOffer {
                auth: true,
                auth_int: true
            })
        );
        assert!(!c.stale);
        assert!(c.is_usable());
    }

    #[test]
    fn parse_is_liberal_with_lws_case_escapes_and_unknown_params() {
        let c = Challenge::parse(
            "  dIgEsT\r\n\tREALM = \"a \\\"quoted\\\" \\\\realm\" ,, Nonce=abc== ,\
             domain=\"sip:x\", ALGORITHM=sha-256 , stale = TRUE, qop=auth, x-foo=\"bar,baz\"",
        )
        .unwrap();
        assert!(c.realm.eq_str("a \"quoted\" \\realm"));
        assert_eq!(c.realm.as_plain(), None);
        assert_eq!(c.nonce.raw(), "abc==");
        assert!(!c.nonce.is_quoted());
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.stale);
        assert_eq!(
            c.qop,
            Some(QopOffer {
                auth: true,
                auth_int: false
            })
        );
    }

    #[test]
    fn parse_rejects_garbage_with_typed_errors() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digestrealm=\"x\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x"),
            Err(DigestError::Syntax { at: 7 })
        );
        assert!(matches!(
            Challenge::parse("Digest realm \"x\""),
            Err(DigestError::Syntax { .. })
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"x\" nonce=\"y\""),
            Err(DigestError::Syntax { .. })
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"x\\"),
            Err(DigestError::Syntax { .. })
        ));
        assert!(matches!(
            Challenge::parse("Digest =x"),
            Err(DigestError::Syntax { .. })
        ));
        assert_eq!(
            Challenge::parse("Digest nonce=\"y\""),
            Err(DigestError::MissingParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=x"),
            Err(DigestError::MissingParam("nonce"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=x, realm=y, nonce=z"),
            Err(DigestError::DuplicateParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=x, nonce=z, algorithm=SHA-512-256"),
            Err(DigestError::UnsupportedAlgorithm)
        );
        assert_eq!(Challenge::parse(""), Err(DigestError::NotDigest));
        assert_eq!(
            Challenge::parse("Digest"),
            Err(DigestError::MissingParam("realm"))
        );
    }

    #[test]
    fn parse_never_panics_on_truncations() {
        let full = "Digest realm=\"r\\\"e\", nonce=\"n\", qop=\"auth\", opaque=o, stale=true";
        for end in 0..=full.len() {
            if let Some(prefix) = full.get(..end) {
                let _ = Challenge::parse(prefix);
                let _ = Credentials::parse(prefix);
            }
        }
        // Multi-byte UTF-8 inside and around values.
        let _ = Challenge::parse("Digest realm=\"é\\é\", nonce=ü");
        let _ = Credentials::parse("Digest username=é, realm=\"\\");
    }

    #[test]
    fn choose_prefers_sha256_then_first() {
        let md5 = "Digest realm=\"r\", nonce=\"1\", algorithm=MD5, qop=\"auth\"";
        let sha = "Digest realm=\"r\", nonce=\"2\", algorithm=SHA-256, qop=\"auth\"";
        let md5b = "Digest realm=\"r\", nonce=\"3\"";
        let only_int = "Digest realm=\"r\", nonce=\"4\", algorithm=SHA-256, qop=\"auth-int\"";
        let other = "Digest realm=\"r\", nonce=\"5\", algorithm=SHA-512-256";
        let c = choose_challenge([md5, "Basic realm=x", sha, md5b]).unwrap();
        assert_eq!(c.nonce.raw(), "2");
        let c = choose_challenge([md5, only_int, other, md5b]).unwrap();
        assert_eq!(c.nonce.raw(), "1");
        assert!(choose_challenge([only_int, other, "garbage"]).is_none());
        assert!(choose_challenge([]).is_none());
    }

    #[test]
    fn parse_credentials() {
        let c = Credentials::parse(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"6629fae49393a05397450978507c4ef1\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(c.username.eq_str("Mufasa"));
        assert_eq!(c.uri.raw(), "/dir/index.html");
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(c.nc.unwrap().raw(), "00000001");
        assert_eq!(c.cnonce.unwrap().raw(), "0a4f113b");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(!c.userhash);
        assert_eq!(
            Credentials::parse("Digest username=u, realm=r, nonce=n, uri=u, response=r, nc=xyz"),
            Err(DigestError::BadNc)
        );
        assert_eq!(
            Credentials::parse("Digest username=u, realm=r, nonce=n, uri=u"),
            Err(DigestError::MissingParam("response"))
        );
        assert_eq!(
            Credentials::parse(
                "Digest username=u, realm=r, nonce=n, uri=u, response=a, response=b"
            ),
            Err(DigestError::DuplicateParam("response"))
        );
        let q = Credentials::parse(
            "Digest username=u, realm=r, nonce=n, uri=u, response=r, qop=\"auth-int\"",
        )
        .unwrap();
        assert_eq!(q.qop, Some(Qop::AuthInt));
    }

    #[test]
    fn quoted_writing_round_trips() {
        let mut out = String::new();
        ParamValue::plain("a\"b\\c").write_quoted(&mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\"");
        let header = format!("Digest realm={out}, nonce=n");
        let c = Challenge::parse(&header).unwrap();
        assert!(c.realm.eq_str("a\"b\\c"));
        assert_eq!(c.realm.len(), 5);
        let mut again = String::new();
        c.realm.write_quoted(&mut again);
        assert_eq!(again, out);
    }
}
