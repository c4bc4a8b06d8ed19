//! name-addr / addr-spec values of From, To, Contact, Route and Record-Route
//! (RFC 3261 §20.10, §20.20, §20.39, §25.1), and the Contact header with its `*` form.

use super::Error;
use super::lex::{self, class, quoted_string, sws};
use super::params::{self, Params};
use super::uri::Uri;

/// An address with its optional display name and header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name: the text inside the quotes (escapes kept) or the unquoted tokens.
    pub display: Option<&'a str>,
    pub uri: Uri<'a>,
    /// Header parameters after the address (`;tag=...`, `;expires=...`, ...).
    pub params: Params<'a>,
    pub tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (no commas outside quotes and `<>`).
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, Error> {
        name_addr(s).ok_or(Error::BadNameAddr)
    }

    /// The first header parameter named `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }
}

fn name_addr(s: &str) -> Option<NameAddr<'_>> {
    let (s, _) = sws(s).ok()?;
    // name-addr form: quoted display name or tokens, then '<'; else addr-spec
    let (display, after_display) = if s.starts_with('"') {
        let (r, d) = quoted_string(s).ok()?;
        let (r, _) = sws(r).ok()?;
        if !r.starts_with('<') {
            return None;
        }
        (Some(d), r)
    } else {
        let (rest, tokens) = lex::take_class(s, class::TOKEN | class::LWS);
        if rest.starts_with('<') {
            let d = lex::trim_lws(tokens);
            (if d.is_empty() { None } else { Some(d) }, rest)
        } else {
            (None, s)
        }
    };
    let (uri, rest) = if let Some(inner) = after_display.strip_prefix('<') {
        let close = inner.find('>')?;
        let text = &inner[..close];
        (Uri::parse(text).ok()?, &inner[close + 1..])
    } else {
        // addr-spec: the URI ends at LWS or ';' (what follows are header parameters) and
        // may not carry '?' or ',' (RFC 3261 §20.10)
        let end = after_display
            .bytes()
            .position(|c| c == b';' || class::is(c, class::LWS))
            .unwrap_or(after_display.len());
        let u = Uri::parse(after_display.get(..end)?).ok()?;
        if !u.headers.is_empty() || u.as_str().contains(',') {
            return None;
        }
        (u, &after_display[end..])
    };
    let (rest, params) = params::header_params(rest).ok()?;
    if !lex::trim_lws(rest).is_empty() {
        return None;
    }
    let tag = match params.get("tag") {
        Some(Some(t)) => Some(t),
        Some(None) => return None,
        None => None,
    };
    Some(NameAddr {
        display,
        uri,
        params,
        tag,
    })
}

/// A Contact value (RFC 3261 §20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removing every binding).
    Star,
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value; `expires` must fit in 32 bits and `q` be a valid q-value.
    pub fn parse(s: &'a str) -> Result<Contact<'a>, Error> {
        if lex::trim_lws(s) == "*" {
            return Ok(Contact::Star);
        }
        let addr = NameAddr::parse(s)?;
        match addr.params.get("expires") {
            None => {}
            Some(Some(v)) if lex::parse_u32(v).is_some() => {}
            Some(_) => return Err(Error::BadContact),
        }
        match addr.params.get("q") {
            None => {}
            Some(Some(v)) if parse_q(v).is_some() => {}
            Some(_) => return Err(Error::BadContact),
        }
        Ok(Contact::Addr(addr))
    }

    /// The `expires` parameter in seconds.
    pub fn expires(&self) -> Option<u32> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => a.params.get("expires").flatten().and_then(lex::parse_u32),
        }
    }

    /// The `q` parameter in thousandths (`q=0.33` → 330, `q=1` → 1000).
    pub fn q(&self) -> Option<u16> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => a.params.get("q").flatten().and_then(parse_q),
        }
    }

    /// The address, unless this is `*`.
    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::uri::Host;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display, Some(r#"J Rosenberg \\\""#));
        assert_eq!(a.uri.user, Some("jdrosen"));
        assert_eq!(a.tag, Some("98asjd8"));

        let a = NameAddr::parse("\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
            .unwrap();
        assert_eq!(a.display, None);
        assert_eq!(a.uri.host, Host::Name("chair-dnrc.example.com"));
        assert_eq!(a.tag, Some("1918181833n"));

        let a = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display, Some("caller"));
        let a = NameAddr::parse("Bob  Smith <sip:b@example.com;lr>").unwrap();
        assert_eq!(a.display, Some("Bob  Smith"));
        assert_eq!(a.uri.param("lr"), Some(None));
        assert_eq!(a.tag, None);
    }

    #[test]
    fn rejects() {
        for bad in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            r#""Watson, Thomas" < sip:t.watson@example.org >"#,
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b>;;",
            "<sip:a@b>;tag",
            "",
        ] {
            assert_eq!(NameAddr::parse(bad), Err(Error::BadNameAddr), "{bad}");
        }
    }

    #[test]
    fn contacts() {
        assert_eq!(Contact::parse(" * "), Ok(Contact::Star));
        let c = Contact::parse(
            "\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33",
        )
        .unwrap();
        assert_eq!(c.q(), Some(330));
        assert_eq!(c.addr().unwrap().param("newparam"), Some(Some("newvalue")));
        assert_eq!(c.addr().unwrap().param("secondparam"), Some(None));
        let c = Contact::parse("<sip:a@b>;expires=3600").unwrap();
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(
            Contact::parse("<sip:a@b>;expires=280297596632815"),
            Err(Error::BadContact)
        );
        assert_eq!(Contact::parse("<sip:a@b>;q=1.5"), Err(Error::BadContact));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.1234"), None);
    }
}
