//! The Via header (RFC 3261 §20.42, §18.2.2) with `rport` (RFC 3581).

use super::Error;
use super::lex::{self, lws, sep, sws, token};
use super::params::{self, Params};
use super::uri::{self, Host};

/// One Via value (a header line may carry several, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The protocol name, normally `SIP`.
    pub protocol: &'a str,
    /// The protocol version, normally `2.0`.
    pub version: &'a str,
    /// The transport token as received (`UDP`, `TCP`, `TLS`, `WS`, ...).
    pub transport: &'a str,
    pub host: Host<'a>,
    pub port: Option<u16>,
    pub branch: Option<&'a str>,
    /// `None`: no `rport`; `Some(None)`: `;rport` without a value (a request asking for
    /// it); `Some(Some(p))`: filled in.
    pub rport: Option<Option<u16>>,
    pub received: Option<&'a str>,
    /// Every parameter, `branch`, `rport` and `received` included.
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (no commas).
    pub fn parse(s: &'a str) -> Result<Via<'a>, Error> {
        via(s).ok_or(Error::BadVia)
    }

    /// The first parameter named `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// True when the branch carries the RFC 3261 magic cookie `z9hG4bK` (§8.1.1.7) followed
    /// by an identifier (a bare cookie is RFC 4475 §3.2.1's malformed branch).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .is_some_and(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }
}

fn via(s: &str) -> Option<Via<'_>> {
    let (r, _) = sws(s).ok()?;
    let (r, protocol) = token(r).ok()?;
    let (r, _) = sep('/')(r).ok()?;
    let (r, version) = token(r).ok()?;
    let (r, _) = sep('/')(r).ok()?;
    let (r, transport) = token(r).ok()?;
    let (r, _) = lws(r).ok()?;
    let (r, host) = uri::host(r).ok()?;
    let (r, port) = match sep(':')(r) {
        Ok((r, _)) => {
            let (r, digits) = nom::character::complete::digit1::<_, ()>(r).ok()?;
            (r, Some(lex::parse_u16(digits)?))
        }
        Err(_) => (r, None),
    };
    let (r, params) = params::header_params(r).ok()?;
    if !lex::trim_lws(r).is_empty() {
        return None;
    }
    let mut branch = None;
    let mut rport = None;
    let mut received = None;
    for (name, value) in params.iter() {
        if name.eq_ignore_ascii_case("branch") && branch.is_none() {
            branch = Some(value?);
        } else if name.eq_ignore_ascii_case("rport") && rport.is_none() {
            rport = Some(match value {
                Some(v) => Some(lex::parse_u16(v)?),
                None => None,
            });
        } else if name.eq_ignore_ascii_case("received") && received.is_none() {
            received = Some(value?);
        }
    }
    Some(Via {
        protocol,
        version,
        transport,
        host,
        port,
        branch,
        rport,
        received,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn plain() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(v.rport, Some(None));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn folded_and_spaced() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(v.branch, Some("390skdjuw"));
        let v = Via::parse("SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239")
            .unwrap();
        assert_eq!(v.branch, Some("z9hG4bK30239"));
        let v = Via::parse("SIP/2.0/TCP [2001:db8::9:1] : 5070 ;received=2001:db8::9:255;rport=1")
            .unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received, Some("2001:db8::9:255"));
        assert_eq!(v.rport, Some(Some(1)));
    }

    #[test]
    fn rejects() {
        assert_eq!(Via::parse("SIP/2.0/UDP 192.0.2.15;;"), Err(Error::BadVia));
        assert_eq!(Via::parse(""), Err(Error::BadVia));
        assert_eq!(Via::parse("SIP/2.0/UDP"), Err(Error::BadVia));
        assert_eq!(
            Via::parse("SIP/2.0/UDP host;rport=99999"),
            Err(Error::BadVia)
        );
        assert_eq!(Via::parse("SIP/2.0/UDP host;branch"), Err(Error::BadVia));
        assert_eq!(Via::parse("SIP/2.0/UDP host junk"), Err(Error::BadVia));
    }
}
