//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966) as borrowed views, plus the
//! URI comparison rules of RFC 3261 §19.1.4. Other schemes are kept as opaque text so that
//! the caller can answer 416 where a Request-URI needs a SIP URI.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use nom::bytes::complete::take_while1;

use super::Error;
use super::lex::{self, PResult, class};
use super::params::{self, Params};

/// A host: a domain name, an IPv4 address or an IPv6 reference (`[::1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A host name as written (compare with [`Host::eq_host`], case-insensitively).
    Name(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host<'_> {
    /// RFC 3261 §19.1.4: host names compare case-insensitively, addresses by value.
    pub fn eq_host(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::V4(a), Host::V4(b)) => a == b,
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// `host`: IPv6 reference, IPv4 address or host name.
pub(crate) fn host(i: &str) -> PResult<'_, Host<'_>> {
    if let Some(r) = i.strip_prefix('[') {
        let (r, addr) = take_while1(|c: char| c.is_ascii_hexdigit() || c == ':' || c == '.')(r)?;
        let r = r.strip_prefix(']').ok_or(nom::Err::Error(()))?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| nom::Err::Error(()))?;
        return Ok((r, Host::V6(addr)));
    }
    let (r, name) = lex::take_class1(i, class::HOSTNAME)?;
    let b = name.as_bytes();
    if matches!(b.first(), Some(b'.' | b'-')) || b.windows(2).any(|w| w == b"..") {
        return Err(nom::Err::Error(()));
    }
    if b.first().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|&c| c.is_ascii_digit() || c == b'.')
        && let Ok(a) = name.parse::<Ipv4Addr>()
    {
        return Ok((r, Host::V4(a)));
    }
    Ok((r, Host::Name(name)))
}

/// `host [":" port]` without white space (URIs).
pub(crate) fn host_port(i: &str) -> PResult<'_, (Host<'_>, Option<u16>)> {
    let (r, h) = host(i)?;
    match r.strip_prefix(':') {
        Some(r) => {
            let (r, digits) = take_while1(|c: char| c.is_ascii_digit())(r)?;
            let port = lex::parse_u16(digits).ok_or(nom::Err::Error(()))?;
            Ok((r, (h, Some(port))))
        }
        None => Ok((r, (h, None))),
    }
}

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    Sip,
    Sips,
    Tel,
    /// Any other scheme (`http`, `isbn`, ...), as received.
    Other(&'a str),
}

impl<'a> Scheme<'a> {
    pub fn as_str(&self) -> &'a str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// A borrowed URI.
///
/// For `sip:`/`sips:` every field is filled from the text. For `tel:` the number is in
/// `user` and `host` is an empty name. For other schemes only `scheme` and [`Uri::as_str`]
/// say anything; the rest is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme<'a>,
    /// The user part, raw (escapes kept).
    pub user: Option<&'a str>,
    /// The password part, raw (escapes kept).
    pub password: Option<&'a str>,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// `;name=value` parameters (RFC 3261 §19.1.1).
    pub params: Params<'a>,
    /// The `?name=value&...` headers, without the leading `?` (empty when absent).
    pub headers: &'a str,
    raw: &'a str,
}

impl<'a> Uri<'a> {
    /// Parses a whole URI; nothing may follow it.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, Error> {
        match uri(s) {
            Ok(("", u)) => Ok(u),
            _ => Err(Error::BadUri),
        }
    }

    /// The URI text as received.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// True for `sip:` and `sips:`.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The first URI parameter named `name` (case-insensitive): `None` absent, `Some(None)`
    /// a flag (`;lr`), `Some(Some(v))` a raw value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// The user part with `%HH` escapes decoded, written into `out`.
    /// Errors with [`Error::BadUri`] when the result does not fit or is not UTF-8.
    pub fn user_unescaped<const N: usize>(
        &self,
        out: &mut heapless::String<N>,
    ) -> Result<(), Error> {
        out.clear();
        let Some(user) = self.user else { return Ok(()) };
        let mut bytes: heapless::Vec<u8, N> = heapless::Vec::new();
        for b in lex::Unescaped::new(user) {
            bytes.push(b).map_err(|_| Error::BadUri)?;
        }
        let text = core::str::from_utf8(&bytes).map_err(|_| Error::BadUri)?;
        out.push_str(text).map_err(|_| Error::BadUri)
    }

    /// Compares the user part with `plain` (unescaped text), decoding escapes on the fly.
    pub fn user_is(&self, plain: &str) -> bool {
        match self.user {
            Some(u) => lex::Unescaped::new(u).eq(plain.bytes()),
            None => plain.is_empty(),
        }
    }

    /// URI equivalence of RFC 3261 §19.1.4 for SIP and SIPS URIs: same scheme, user and
    /// password compared case-sensitively after unescaping, host case-insensitively, port
    /// present in both or in neither; `user`, `ttl`, `method`, `maddr` and `transport`
    /// parameters must match when present in either, other parameters when present in
    /// both; headers must match. Other schemes compare their text exactly.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        if !self.is_sip() || !other.is_sip() {
            return self.raw == other.raw;
        }
        if self.scheme != other.scheme
            || self.port != other.port
            || !self.host.eq_host(&other.host)
            || !opt_eq(self.user, other.user, false)
            || !opt_eq(self.password, other.password, false)
        {
            return false;
        }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            match (self.params.get(name), other.params.get(name)) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    if !opt_eq(a, b, true) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        // first occurrences only, so that a repeated parameter cannot make the relation
        // asymmetric
        for (name, _) in self.params.iter() {
            if let (Some(ours), Some(theirs)) = (self.params.get(name), other.params.get(name))
                && !opt_eq(ours, theirs, true)
            {
                return false;
            }
        }
        headers_equivalent(self.headers, other.headers)
            && headers_equivalent(other.headers, self.headers)
    }
}

fn opt_eq(a: Option<&str>, b: Option<&str>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => lex::eq_unescaped(a, b, ignore_case),
        _ => false,
    }
}

/// Every header of `a` is in `b` with an equal value (names case-insensitive).
fn headers_equivalent(a: &str, b: &str) -> bool {
    a.split('&').filter(|h| !h.is_empty()).all(|h| {
        let (name, value) = h.split_once('=').unwrap_or((h, ""));
        b.split('&').any(|g| {
            let (n2, v2) = g.split_once('=').unwrap_or((g, ""));
            lex::eq_unescaped(name, n2, true) && lex::eq_unescaped(value, v2, false)
        })
    })
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// Parses a URI at the start of `i`; the rest is returned.
pub(crate) fn uri(i: &str) -> PResult<'_, Uri<'_>> {
    let start = i;
    let (r, scheme) = lex::take_class1(i, class::SCHEME)?;
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(nom::Err::Error(()));
    }
    let r = r.strip_prefix(':').ok_or(nom::Err::Error(()))?;
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        Scheme::Other(scheme)
    };
    let empty = Uri {
        scheme,
        user: None,
        password: None,
        host: Host::Name(""),
        port: None,
        params: Params::EMPTY,
        headers: "",
        raw: "",
    };
    let (rest, u) = match scheme {
        Scheme::Sip | Scheme::Sips => sip_rest(r, empty)?,
        Scheme::Tel => {
            let (r, number) = take_while1(|c: char| {
                c.is_ascii_hexdigit() || matches!(c, '+' | '-' | '.' | '(' | ')' | '*' | '#')
            })(r)?;
            let (r, params) = params::uri_params(r)?;
            (
                r,
                Uri {
                    user: Some(number),
                    params,
                    ..empty
                },
            )
        }
        Scheme::Other(_) => {
            let (r, opaque) = lex::take_class1(r, class::OPAQUE)?;
            if !lex::escapes_valid(opaque) {
                return Err(nom::Err::Error(()));
            }
            (r, empty)
        }
    };
    let raw = &start[..start.len() - rest.len()];
    Ok((rest, Uri { raw, ..u }))
}

fn sip_rest<'a>(i: &'a str, empty: Uri<'a>) -> PResult<'a, Uri<'a>> {
    // '@' cannot appear unescaped anywhere but after the userinfo, and the userinfo may hold
    // ';', '?' and ':' (RFC 4475 §3.1.1.2), so it is found by the first '@' before any
    // character that can only follow the host part.
    let userinfo_end = i
        .bytes()
        .position(|c| !class::is(c, class::USER | class::PASSWORD) && c != b':' && c != b'@')
        .unwrap_or(i.len());
    let at = i
        .as_bytes()
        .get(..userinfo_end)
        .and_then(|b| b.iter().position(|&c| c == b'@'));
    let (user, password, r) = match at {
        Some(at) => {
            let userinfo = &i[..at];
            let colon = memchr::memchr(b':', userinfo.as_bytes());
            let (user, password) = match colon {
                Some(c) => (userinfo.get(..c).unwrap_or(""), userinfo.get(c + 1..)),
                None => (userinfo, None),
            };
            if user.is_empty()
                || lex::span(user, class::USER) != user.len()
                || !lex::escapes_valid(user)
                || !password.is_none_or(|p| {
                    lex::span(p, class::PASSWORD) == p.len() && lex::escapes_valid(p)
                })
            {
                return Err(nom::Err::Error(()));
            }
            (Some(user), password, &i[at + 1..])
        }
        None => (None, None, i),
    };
    let (r, (host, port)) = host_port(r)?;
    let (r, params) = params::uri_params(r)?;
    let (r, headers) = match r.strip_prefix('?') {
        Some(h) => {
            let (r, headers) = lex::take_class(h, class::URI_HEADER);
            if headers.is_empty() || !lex::escapes_valid(headers) {
                return Err(nom::Err::Error(()));
            }
            (r, headers)
        }
        None => (r, ""),
    };
    Ok((
        r,
        Uri {
            user,
            password,
            host,
            port,
            params,
            headers,
            ..empty
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple() {
        let u = Uri::parse("sip:alice@example.com:5070;transport=tcp;lr").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.host, Host::Name("example.com"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.as_str(), "sip:alice@example.com:5070;transport=tcp;lr");
    }

    #[test]
    fn addresses() {
        let u = Uri::parse("sips:[2001:db8::10]:5061").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.host.to_string(), "[2001:db8::10]");
        let u = Uri::parse("sip:192.0.2.4").unwrap();
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(192, 0, 2, 4)));
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:host:70000").is_err());
    }

    #[test]
    fn unusual_userinfo() {
        let u = Uri::parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.host, Host::Name("example.com"));
    }

    #[test]
    fn escapes_and_headers() {
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        let mut s: heapless::String<32> = heapless::String::new();
        u.user_unescaped(&mut s).unwrap();
        assert_eq!(s.as_str(), "sips:user@example.com");
        assert!(u.user_is("sips:user@example.com"));
        let u = Uri::parse("sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert_eq!(u.headers, "Route=%3Csip:example.com%3E");
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:a%4@example.com").is_err());
    }

    #[test]
    fn other_schemes() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some("+1-201-555-0123"));
        let u = Uri::parse("isbn:2983792873").unwrap();
        assert_eq!(u.scheme, Scheme::Other("isbn"));
        assert!(!u.is_sip());
        assert!(Uri::parse("1sip:a").is_err());
    }

    #[test]
    fn equivalence() {
        // RFC 3261 §19.1.4 examples
        let eq = |a: &str, b: &str| Uri::parse(a).unwrap().equivalent(&Uri::parse(b).unwrap());
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:carol@chicago.com;newparam=5",
            "sip:carol@chicago.com;newparam=6"
        ));
        assert!(!eq(
            "sip:alice@atlanta.com?subject=project%20x",
            "sip:alice@atlanta.com"
        ));
    }
}
