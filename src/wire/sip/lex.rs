//! Lexical building blocks of RFC 3261 §25.1 (token, LWS, quoted-string, escapes) as small
//! `nom` parsers over `&str`. Header values handed to these parsers are already cut at their
//! final CRLF, so any CR or LF inside them is folding and counts as whitespace.

use nom::IResult;

/// Parser result with a unit error: the callers map failures to their own [`super::Error`].
pub(crate) type PResult<'a, O> = IResult<&'a str, O, ()>;

/// Character classes of RFC 3261 §25.1 as bit flags in a 256-entry table, so that the hot
/// scans test one byte with one load. Every class holds ASCII bytes only, so a scan over
/// bytes always stops on a UTF-8 character boundary.
pub(crate) mod class {
    /// `token`
    pub const TOKEN: u16 = 1;
    /// `user` of a SIP URI (unreserved / user-unreserved / `%`)
    pub const USER: u16 = 1 << 1;
    /// `password` (with `%`)
    pub const PASSWORD: u16 = 1 << 2;
    /// `paramchar` of a URI parameter, `%` included
    pub const URI_PARAM: u16 = 1 << 3;
    /// host name characters (`_` tolerated)
    pub const HOSTNAME: u16 = 1 << 4;
    /// `hname` / `hvalue` of URI headers with `=` and `&`, `%` included
    pub const URI_HEADER: u16 = 1 << 5;
    /// unquoted header parameter value: `token` or `host` (`[`, `]`, `:`)
    pub const GEN_VALUE: u16 = 1 << 6;
    /// characters of an opaque absolute URI (no space, quote or angle bracket)
    pub const OPAQUE: u16 = 1 << 7;
    /// URI scheme characters
    pub const SCHEME: u16 = 1 << 8;
    /// SP, HTAB, CR, LF
    pub const LWS: u16 = 1 << 9;

    const fn build() -> [u16; 256] {
        let mut t = [0u16; 256];
        let mut b = 0usize;
        while b < 256 {
            let c = b as u8;
            let alnum = c.is_ascii_alphanumeric();
            let mark = matches!(
                c,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
            let mut f = 0;
            if alnum
                || matches!(
                    c,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
            {
                f |= TOKEN | GEN_VALUE;
            }
            if matches!(c, b'[' | b']' | b':') {
                f |= GEN_VALUE;
            }
            if alnum
                || mark
                || matches!(
                    c,
                    b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
                )
            {
                f |= USER;
            }
            if alnum || mark || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',') {
                f |= PASSWORD;
            }
            if alnum || mark || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'%') {
                f |= URI_PARAM;
            }
            if alnum || matches!(c, b'-' | b'.' | b'_') {
                f |= HOSTNAME;
            }
            if alnum
                || mark
                || matches!(
                    c,
                    b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
                )
            {
                f |= URI_HEADER;
            }
            if c.is_ascii_graphic()
                && !matches!(
                    c,
                    b'<' | b'>' | b'"' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
                )
            {
                f |= OPAQUE;
            }
            if alnum || matches!(c, b'+' | b'-' | b'.') {
                f |= SCHEME;
            }
            if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
                f |= LWS;
            }
            t[b] = f;
            b += 1;
        }
        t
    }

    pub static TABLE: [u16; 256] = build();

    #[inline(always)]
    pub fn is(b: u8, class: u16) -> bool {
        TABLE[b as usize] & class != 0
    }
}

/// Length of the longest prefix of `s` whose bytes are all in `class`.
#[inline]
pub(crate) fn span(s: &str, class: u16) -> usize {
    s.bytes()
        .position(|b| !class::is(b, class))
        .unwrap_or(s.len())
}

/// `take_while` over a byte class: `(rest, matched)`; the split is a character boundary
/// because every class is ASCII.
#[inline]
pub(crate) fn take_class(s: &str, class: u16) -> (&str, &str) {
    let n = span(s, class);
    (s.get(n..).unwrap_or(""), s.get(..n).unwrap_or(""))
}

/// `take_while1` over a byte class, as a parser.
#[inline]
pub(crate) fn take_class1(s: &str, class: u16) -> PResult<'_, &str> {
    match take_class(s, class) {
        (_, "") => Err(nom::Err::Error(())),
        ok => Ok(ok),
    }
}

/// Linear white space inside an isolated header value (SP, HTAB and folding CR/LF).
pub(crate) fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(crate) fn token(i: &str) -> PResult<'_, &str> {
    take_class1(i, class::TOKEN)
}

/// `SWS`: optional white space.
pub(crate) fn sws(i: &str) -> PResult<'_, &str> {
    Ok(take_class(i, class::LWS))
}

/// `LWS`: at least one white space character.
pub(crate) fn lws(i: &str) -> PResult<'_, &str> {
    take_class1(i, class::LWS)
}

/// A separator with optional white space around it (`SEMI`, `COLON`, `SLASH`, `EQUAL`, `COMMA`).
pub(crate) fn sep(c: char) -> impl Fn(&str) -> PResult<'_, char> {
    move |i: &str| {
        let (i, _) = sws(i)?;
        let (i, got) = nom::character::complete::char(c)(i)?;
        let (i, _) = sws(i)?;
        Ok((i, got))
    }
}

/// `quoted-string`: returns the text between the quotes, escapes left as they are.
pub(crate) fn quoted_string(i: &str) -> PResult<'_, &str> {
    let bytes = i.as_bytes();
    if bytes.first() != Some(&b'"') {
        return Err(nom::Err::Error(()));
    }
    let mut pos = 1;
    while pos < bytes.len() {
        match bytes[pos] {
            b'"' => return Ok((&i[pos + 1..], &i[1..pos])),
            // quoted-pair: the escaped byte must not be CR or LF
            b'\\' => match bytes.get(pos + 1) {
                Some(b'\r' | b'\n') | None => return Err(nom::Err::Error(())),
                Some(_) => pos += 2,
            },
            _ => pos += 1,
        }
    }
    Err(nom::Err::Error(()))
}

/// Trims LWS on both sides.
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = span(s, class::LWS);
    let end = b
        .iter()
        .rposition(|&c| !class::is(c, class::LWS))
        .map_or(start, |e| e + 1);
    s.get(start..end.max(start)).unwrap_or("")
}

/// A decimal number that fits in `u32`; leading zeros allowed, nothing else.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u32 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

/// A decimal number that fits in `u16`.
pub(crate) fn parse_u16(s: &str) -> Option<u16> {
    parse_u32(s).and_then(|v| u16::try_from(v).ok())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks that every `%` in `s` starts a valid `%HH` escape.
pub(crate) fn escapes_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) {
                (Some(_), Some(_)) => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Iterator over the bytes of `s` with `%HH` escapes decoded (an invalid escape is kept as
/// the literal `%`).
#[derive(Clone)]
pub(crate) struct Unescaped<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Unescaped<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Unescaped {
            bytes: s.as_bytes(),
            pos: 0,
        }
    }
}

impl Iterator for Unescaped<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        if b == b'%' {
            let hi = self.bytes.get(self.pos + 1).copied().and_then(hex_val);
            let lo = self.bytes.get(self.pos + 2).copied().and_then(hex_val);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                self.pos += 3;
                return Some(hi << 4 | lo);
            }
        }
        self.pos += 1;
        Some(b)
    }
}

/// Compares two strings after decoding `%HH` escapes, optionally ignoring ASCII case
/// (RFC 3261 §19.1.4).
pub(crate) fn eq_unescaped(a: &str, b: &str, ignore_case: bool) -> bool {
    let mut x = Unescaped::new(a);
    let mut y = Unescaped::new(b);
    // each step consumes at least one byte of each side: bounded by the shorter length
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) => {
                let same = if ignore_case {
                    p.eq_ignore_ascii_case(&q)
                } else {
                    p == q
                };
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Splits a comma-separated header value into its elements, ignoring commas inside
/// quoted strings and `<...>` (RFC 3261 §7.3.1). Elements are trimmed; empty elements are
/// yielded so that the typed parsers can reject them.
#[derive(Clone, Debug)]
pub(crate) struct ListIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> ListIter<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        ListIter { rest: Some(s) }
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let b = s.as_bytes();
        // most values hold one element: no comma at all
        if memchr::memchr(b',', b).is_none() {
            self.rest = None;
            return Some(trim_lws(s));
        }
        let mut i = 0;
        let mut in_quotes = false;
        let mut in_angle = false;
        while i < b.len() {
            match b[i] {
                b'\\' if in_quotes => i += 1,
                b'"' if !in_angle => in_quotes = !in_quotes,
                b'<' if !in_quotes => in_angle = true,
                b'>' if !in_quotes => in_angle = false,
                b',' if !in_quotes && !in_angle => {
                    self.rest = s.get(i + 1..);
                    return Some(trim_lws(s.get(..i).unwrap_or("")));
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(trim_lws(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted() {
        assert_eq!(
            quoted_string(r#""a \"b\"" rest"#),
            Ok((" rest", r#"a \"b\""#))
        );
        assert!(quoted_string(r#""open"#).is_err());
        assert!(quoted_string(r#""ends in \"#).is_err());
    }

    #[test]
    fn classes() {
        assert_eq!(token("INVITE sip"), Ok((" sip", "INVITE")));
        assert!(token(" x").is_err());
        assert_eq!(sws(" \r\n\tx"), Ok(("x", " \r\n\t")));
        assert_eq!(trim_lws(" \r\n a b \t"), "a b");
        assert_eq!(trim_lws("   "), "");
        assert_eq!(take_class("abcé", class::TOKEN), ("é", "abc"));
        for b in 0..=255u8 {
            assert_eq!(
                class::is(b, class::TOKEN),
                b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
            );
            if b >= 0x80 {
                assert_eq!(class::TABLE[b as usize], 0);
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0068"), Some(68));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32(""), None);
        assert_eq!(parse_u16("65536"), None);
    }

    #[test]
    fn escapes() {
        assert!(escapes_valid("a%20b"));
        assert!(!escapes_valid("a%2"));
        assert!(!escapes_valid("%ZK"));
        assert!(eq_unescaped("cal%6Cer", "caller", false));
        assert!(!eq_unescaped("Caller", "caller", false));
        assert!(eq_unescaped("Caller", "c%61LLER", true));
        assert!(!eq_unescaped("abc", "ab", true));
    }

    #[test]
    fn list_split() {
        let v: Vec<_> = ListIter::new(r#""Doe, J" <sip:a@b>;q=1 , <sip:c,d@e> ,"#).collect();
        assert_eq!(v, [r#""Doe, J" <sip:a@b>;q=1"#, "<sip:c,d@e>", ""]);
        assert_eq!(ListIter::new("x").collect::<Vec<_>>(), ["x"]);
    }
}
