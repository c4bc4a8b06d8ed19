//! Parameter lists: `;name=value` after a URI (RFC 3261 §19.1.1 uri-parameters) or after a
//! header value (§25.1 generic-param). A [`Params`] is a borrowed view of the raw text;
//! it is checked once by the parser that builds it and read lazily.

use super::lex::{self, PResult, class, is_lws, quoted_string, sep, token};

/// A borrowed parameter list. The raw text starts at the first `;` (or is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// An empty list.
    pub const EMPTY: Params<'static> = Params { raw: "" };

    pub(crate) fn from_raw(raw: &'a str) -> Params<'a> {
        Params { raw }
    }

    /// The raw text, starting with `;` unless empty.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The parameters in order: name and value (`None` for a flag such as `;lr`). Names and
    /// values are raw (URI parameters may hold `%` escapes); quoted values lose their quotes.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// The first parameter named `name` (ASCII case-insensitive): `None` when absent,
    /// `Some(None)` for a flag, `Some(Some(value))` otherwise.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`Params`] list.
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        // bounded: every round consumes at least the leading ';' or ends the iteration
        loop {
            let s = self.rest.trim_start_matches(is_lws);
            let s = s.strip_prefix(';')?;
            // the element ends at the next ';' outside a quoted string
            let bytes = s.as_bytes();
            let mut i = 0;
            let mut in_quotes = false;
            // fast path: the next ';' comes before any quote
            match memchr::memchr2(b';', b'"', bytes) {
                Some(p) if bytes.get(p) == Some(&b';') => i = p,
                None => i = bytes.len(),
                Some(_) => {}
            }
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_quotes => i += 1,
                    b'"' => in_quotes = !in_quotes,
                    b';' if !in_quotes => break,
                    _ => {}
                }
                i += 1;
            }
            let end = i.min(s.len());
            let element = s.get(..end).unwrap_or(s);
            self.rest = s.get(end..).unwrap_or("");
            let eq = memchr::memchr(b'=', element.as_bytes());
            let split = eq.and_then(|p| Some((element.get(..p)?, element.get(p + 1..)?)));
            let (name, value) = match split {
                Some((n, v)) => {
                    let v = lex::trim_lws(v);
                    let v = match quoted_string(v) {
                        Ok(("", inner)) => inner,
                        _ => v,
                    };
                    (lex::trim_lws(n), Some(v))
                }
                None => (lex::trim_lws(element), None),
            };
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

/// Parses `*( SEMI generic-param )` after a header value, LWS allowed around the
/// separators. Returns the list and the unparsed rest (which starts with neither `;` nor
/// a parameter).
pub(crate) fn header_params(i: &str) -> PResult<'_, Params<'_>> {
    let start = i;
    let mut rest = i;
    let mut consumed = 0;
    // each round consumes at least the ';' and a token
    loop {
        let Ok((r, _)) = sep(';')(rest) else { break };
        let (r, _) = token(r)?;
        let r = match sep('=')(r) {
            Ok((r, _)) => {
                if r.starts_with('"') {
                    quoted_string(r)?.0
                } else {
                    lex::take_class1(r, class::GEN_VALUE)?.0
                }
            }
            Err(_) => r,
        };
        rest = r;
        consumed = start.len() - rest.len();
    }
    Ok((rest, Params::from_raw(&start[..consumed])))
}

/// Parses `*( ";" uri-parameter )` of a SIP URI (no LWS allowed). Values may be empty
/// (`;lr=`), as RFC 4475 §3.1.1.3 shows.
pub(crate) fn uri_params(i: &str) -> PResult<'_, Params<'_>> {
    let mut rest = i;
    while let Some(r) = rest.strip_prefix(';') {
        let (r, name) = lex::take_class(r, class::URI_PARAM);
        if name.is_empty() || !lex::escapes_valid(name) {
            return Err(nom::Err::Error(()));
        }
        let r = match r.strip_prefix('=') {
            Some(r) => {
                let (r, value) = lex::take_class(r, class::URI_PARAM);
                if !lex::escapes_valid(value) {
                    return Err(nom::Err::Error(()));
                }
                r
            }
            None => r,
        };
        rest = r;
    }
    let consumed = i.len() - rest.len();
    Ok((rest, Params::from_raw(&i[..consumed])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_list() {
        let (rest, p) = header_params(" ;   tag    = 1918181833n ; lr ;x=\"a;b\" , next").unwrap();
        assert_eq!(rest, " , next");
        assert_eq!(p.get("TAG"), Some(Some("1918181833n")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("x"), Some(Some("a;b")));
        assert_eq!(p.get("y"), None);
        assert_eq!(p.iter().count(), 3);
    }

    #[test]
    fn header_list_rejects_empty() {
        assert!(header_params(";;").is_err());
        assert!(header_params(";a=").is_err());
        assert!(header_params(";a=\"open").is_err());
        assert_eq!(header_params("").unwrap().1, Params::EMPTY);
    }

    #[test]
    fn folded_value() {
        let (_, p) = header_params("; branch=\r\n z9hG4bK30239").unwrap();
        assert_eq!(p.get("branch"), Some(Some("z9hG4bK30239")));
    }

    #[test]
    fn uri_list() {
        let (rest, p) = uri_params(";%6C%72=;%6Eat?x").unwrap();
        assert_eq!(rest, "?x");
        assert_eq!(p.get("%6C%72"), Some(Some("")));
        assert_eq!(p.get("%6eat"), Some(None));
        assert!(uri_params(";;").is_err());
        assert!(uri_params(";a=%G1").is_err());
        assert!(uri_params("; lr").is_err());
    }
}
