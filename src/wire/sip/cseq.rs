//! The CSeq header (RFC 3261 §20.16).

use super::Error;
use super::lex::{self, lws, sws, token};
use super::method::Method;

/// Sequence number and method of a request or of the request a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`; the number must fit in 32 bits.
    pub fn parse(s: &'a str) -> Result<CSeq<'a>, Error> {
        let parsed = (|| {
            let (r, _) = sws(s).ok()?;
            let (r, digits) = nom::character::complete::digit1::<_, ()>(r).ok()?;
            let (r, _) = lws(r).ok()?;
            let (r, method) = token(r).ok()?;
            if !lex::trim_lws(r).is_empty() {
                return None;
            }
            Some(CSeq {
                seq: lex::parse_u32(digits)?,
                method: Method::from_token(method),
            })
        })();
        parsed.ok_or(Error::BadCSeq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE"),
            Ok(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert_eq!(
            CSeq::parse("3882 RE%47IST%45R").unwrap().method,
            Method::Other("RE%47IST%45R")
        );
        assert_eq!(
            CSeq::parse("36893488147419103232 INVITE"),
            Err(Error::BadCSeq)
        );
        assert_eq!(CSeq::parse("1INVITE"), Err(Error::BadCSeq));
        assert_eq!(CSeq::parse("1 INVITE x"), Err(Error::BadCSeq));
        assert_eq!(CSeq::parse("INVITE"), Err(Error::BadCSeq));
    }
}
