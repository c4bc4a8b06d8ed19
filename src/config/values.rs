//! Parsers for single values. Each returns what it read or a message saying what was
//! expected; the caller adds file, line and key.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;

use super::{Codec, DigestAlgorithm, LogLevel, SipSrtp, Transport};

pub(super) fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 0 or 1, got `{s}`")),
    }
}

pub(super) fn number<T: FromStr + PartialOrd + std::fmt::Display + Copy>(
    s: &str,
    range: RangeInclusive<T>,
) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from {} to {}, got `{s}`",
            range.start(),
            range.end()
        )),
    }
}

/// `ADDRESS:PORT`; port 0 lets the system choose (useful in tests).
pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(s)
        .map_err(|_| format!("expected ADDRESS:PORT such as 0.0.0.0:5086 or [::]:5086, got `{s}`"))
}

/// A DTMF sequence: 1 to 8 of `0-9 * # A-D` (empty: off).
pub(super) fn dtmf_sequence(s: &str) -> Result<String, String> {
    if s.len() > 8 {
        return Err("at most 8 digits".into());
    }
    match s
        .chars()
        .find(|c| !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D'))
    {
        Some(c) => Err(format!("`{c}` is not a DTMF digit (0-9, *, #, A-D)")),
        None => Ok(s.to_owned()),
    }
}

/// `http://IP:PORT/PATH` (empty: none). Host names are refused: srgate resolves nothing
/// while calls run.
pub(super) fn hook_url(s: &str) -> Result<Option<super::HookUrl>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let expected =
        || format!("expected http://IP:PORT/PATH such as http://127.0.0.1:8000/open, got `{s}`");
    let rest = s.strip_prefix("http://").ok_or_else(|| {
        if s.starts_with("https://") {
            "https is not supported: give the relay's http:// address on the local network"
                .to_string()
        } else {
            expected()
        }
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr = SocketAddr::from_str(authority).map_err(|_| {
        if authority.parse::<IpAddr>().is_ok() {
            format!("`{authority}` needs a port, e.g. {authority}:80")
        } else {
            format!("`{authority}` is not IP:PORT (host names are not looked up)")
        }
    })?;
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(expected());
    }
    Ok(Some(super::HookUrl {
        addr,
        path: path.to_owned(),
    }))
}

/// Empty means off.
pub(super) fn optional_socket_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        Ok(None)
    } else {
        socket_addr(s).map(Some)
    }
}

/// Comma-separated items, blanks around items ignored; an empty item is an error.
/// A STUN or TURN server URL as browsers take it (RFC 7064, RFC 7065): `stun:`, `stuns:`,
/// `turn:` or `turns:`, then a host, an optional port and (TURN) `?transport=udp|tcp`.
pub(super) fn ice_server(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let rest = ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
        .ok_or_else(|| format!("`{s}` is not a stun:, stuns:, turn: or turns: URL"))?;
    let (host_port, query) = rest.split_once('?').unwrap_or((rest, ""));
    let ok_host = !host_port.is_empty()
        && !host_port.contains('/')
        && host_port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let ok_query = query.is_empty() || query == "transport=udp" || query == "transport=tcp";
    if !ok_host || !ok_query || (lower.starts_with("stun") && !query.is_empty()) {
        return Err(format!(
            "`{s}`: expected e.g. stun:host:3478 or turn:host:3478?transport=udp"
        ));
    }
    Ok(s.to_owned())
}

pub(super) fn list<T>(
    s: &str,
    what: &str,
    item: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String>
where
    T: PartialEq,
{
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("empty item in the list of {what} (a stray `,`?)"));
        }
        let value = item(part)?;
        if out.contains(&value) {
            return Err(format!("`{part}` is listed twice"));
        }
        out.push(value);
    }
    Ok(out)
}

pub(super) fn digest(s: &str) -> Result<DigestAlgorithm, String> {
    match s.to_ascii_lowercase().as_str() {
        "md5" => Ok(DigestAlgorithm::Md5),
        "sha256" | "sha-256" => Ok(DigestAlgorithm::Sha256),
        _ => Err(format!("unknown digest algorithm `{s}` (md5, sha256)")),
    }
}

pub(super) fn codec(s: &str) -> Result<Codec, String> {
    match s.to_ascii_lowercase().as_str() {
        "opus" => Ok(Codec::Opus),
        "pcmu" => Ok(Codec::Pcmu),
        "pcma" => Ok(Codec::Pcma),
        "g722" => Ok(Codec::G722),
        _ => Err(format!("unknown codec `{s}` (opus, pcmu, pcma, g722)")),
    }
}

pub(super) fn sip_srtp(s: &str) -> Result<SipSrtp, String> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(SipSrtp::Off),
        "optional" => Ok(SipSrtp::Optional),
        "mandatory" => Ok(SipSrtp::Mandatory),
        _ => Err(format!("expected off, optional or mandatory, got `{s}`")),
    }
}

pub(super) fn log_level(s: &str) -> Result<LogLevel, String> {
    let by_name = match s.to_ascii_lowercase().as_str() {
        "sensitive" => Some(LogLevel::Sensitive),
        "verbose" => Some(LogLevel::Verbose),
        "info" => Some(LogLevel::Info),
        "warning" => Some(LogLevel::Warning),
        "error" => Some(LogLevel::Error),
        "none" => Some(LogLevel::None),
        _ => None,
    };
    by_name
        .or_else(|| s.parse::<u8>().ok().and_then(LogLevel::from_number))
        .ok_or_else(|| {
            format!(
                "expected 0 SENSITIVE, 1 VERBOSE, 2 INFO, 3 WARNING, 4 ERROR or 5 NONE, got `{s}`"
            )
        })
}

/// `A-B`, an even first port and at least two ports.
pub(super) fn port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let expected = || format!("expected FIRST-LAST such as 16384-32768, got `{s}`");
    let (first, last) = s.split_once('-').ok_or_else(expected)?;
    let (Ok(first), Ok(last)) = (first.trim().parse::<u16>(), last.trim().parse::<u16>()) else {
        return Err(expected());
    };
    if first == 0 {
        return Err("port 0 cannot start a range".into());
    }
    if first % 2 != 0 {
        return Err(format!(
            "the first port must be even (RTP on even, RTCP on odd ports), got {first}"
        ));
    }
    if last <= first {
        return Err(format!(
            "the range must hold at least two ports, got {first}-{last}"
        ));
    }
    Ok(first..=last)
}

/// An address others can reach: not 0.0.0.0 or ::.
pub(super) fn public_ip(s: &str) -> Result<Option<IpAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let ip = IpAddr::from_str(s).map_err(|_| format!("expected an IP address, got `{s}`"))?;
    if ip.is_unspecified() {
        return Err(format!(
            "`{s}` is not an address others can reach; give the host's public address"
        ));
    }
    Ok(Some(ip))
}

/// A DNS name: labels of letters, digits and `-`, separated by dots.
pub(super) fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[sip] domain`: a host name, an IPv4 address or a bracketed IPv6 address.
pub(super) fn domain(s: &str) -> Result<Option<String>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bracketed_v6 = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| Ipv6Addr::from_str(inner).is_ok());
    if is_hostname(s) || bracketed_v6 {
        Ok(Some(s.to_owned()))
    } else {
        Err(format!(
            "expected a host name or IP address such as sip.example.com, got `{s}`"
        ))
    }
}

/// A SIP user part as srgate accepts it in its own accounts: 1-64 characters out of
/// letters, digits and RFC 3261's unreserved / user-unreserved marks except `;`.
pub(super) fn is_sip_user(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,?/%".contains(&b))
}

/// An app user name (the browser protocol's `user`): 1-64 of `A-Za-z0-9_.+@-`.
pub(super) fn is_app_user(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+@-".contains(&b))
}

/// A WebSocket Origin as browsers send it: `http(s)://host[:port]`, kept lower-case.
pub(super) fn origin(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let expected = || format!("expected an origin such as https://app.example.com, got `{s}`");
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(expected)?;
    if rest.contains('/') {
        return Err(format!(
            "an origin has no path, not even a trailing `/`: `{s}`"
        ));
    }
    let (host, port) = split_host_port(rest).map_err(|_| expected())?;
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(expected());
    }
    if host.starts_with('[') || is_hostname(host) {
        Ok(lower)
    } else {
        Err(expected())
    }
}

/// Splits `host[:port]` or `[v6][:port]`; the host keeps its brackets, the IPv6 address
/// inside them is checked.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if s.starts_with('[') {
        let close = s.find(']').ok_or("`[` without `]`")?;
        let host = &s[..=close];
        Ipv6Addr::from_str(&s[1..close]).map_err(|_| format!("bad IPv6 address `{host}`"))?;
        match &s[close + 1..] {
            "" => Ok((host, None)),
            rest => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected `{rest}` after `{host}`")),
            },
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => Ok((host, Some(port))),
            None => Ok((s, None)),
        }
    }
}

/// `[global] sip_svr` before name resolution: host (IPv6 without brackets), port, transport.
#[derive(Debug, PartialEq)]
pub(super) struct SipServerSpec {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

/// Reads `host`, `host:port`, `[v6]:port`, `sip:host:port;transport=tcp` or `sips:host:port`.
pub(super) fn sip_server(s: &str) -> Result<Option<SipServerSpec>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("sips:") {
        (Some("sips"), &s[5..])
    } else if lower.starts_with("sip:") {
        (Some("sip"), &s[4..])
    } else {
        (None, s)
    };
    let (host_port, params) = match rest.split_once(';') {
        Some((hp, params)) => (hp, Some(params)),
        None => (rest, None),
    };
    if scheme.is_none() && params.is_some() {
        return Err(
            "URI parameters need the SIP URI form, e.g. sip:pbx.example.com:5060;transport=tcp"
                .into(),
        );
    }
    if host_port.contains('@') {
        return Err("give the server, not an account: no `user@` part".into());
    }
    if host_port.contains('?') {
        return Err("URI headers (`?…`) are not allowed here".into());
    }
    let mut transport = match scheme {
        Some("sips") => Transport::Tls,
        _ => Transport::Udp,
    };
    for param in params.into_iter().flat_map(|p| p.split(';')) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if !name.trim().eq_ignore_ascii_case("transport") {
            return Err(format!(
                "unsupported URI parameter `{param}` (only transport= is understood)"
            ));
        }
        transport = match (value.trim().to_ascii_lowercase().as_str(), scheme) {
            ("udp", Some("sips")) => return Err("sips: cannot use UDP".into()),
            ("udp", _) => Transport::Udp,
            // RFC 3261 §19.1.2: a sips URI with transport=tcp means TLS over TCP.
            ("tcp", Some("sips")) | ("tls", _) => Transport::Tls,
            ("tcp", _) => Transport::Tcp,
            _ => return Err(format!("transport must be udp, tcp or tls, got `{value}`")),
        };
    }
    // A bare IPv6 address has no port; `::1` cannot be told apart from host:port otherwise.
    if let Ok(v6) = Ipv6Addr::from_str(host_port) {
        return Ok(Some(SipServerSpec {
            host: v6.to_string(),
            port: transport.default_port(),
            transport,
        }));
    }
    if !host_port.starts_with('[') && host_port.matches(':').count() > 1 {
        return Err("an IPv6 address with a port needs brackets: [2001:db8::1]:5060".into());
    }
    let (host, port) = split_host_port(host_port)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !host.contains(':') && !is_hostname(host) {
        return Err(format!(
            "expected host:port, host or a sip:/sips: URI, got `{s}`"
        ));
    }
    let port = match port {
        None => transport.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(format!("port must be 1-65535, got `{p}`")),
        },
    };
    Ok(Some(SipServerSpec {
        host: host.to_owned(),
        port,
        transport,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str, port: u16, transport: Transport) -> Option<SipServerSpec> {
        Some(SipServerSpec {
            host: host.into(),
            port,
            transport,
        })
    }

    #[test]
    fn sip_server_forms() {
        use Transport::*;
        for (text, expected) in [
            ("", None),
            ("10.0.0.1:5070", spec("10.0.0.1", 5070, Udp)),
            ("pbx.example.com", spec("pbx.example.com", 5060, Udp)),
            ("sip:pbx:5080;transport=tcp", spec("pbx", 5080, Tcp)),
            ("SIP:pbx;Transport=TCP", spec("pbx", 5060, Tcp)),
            ("sip:pbx;transport=tls", spec("pbx", 5061, Tls)),
            ("sips:pbx", spec("pbx", 5061, Tls)),
            ("sips:pbx:6000;transport=tcp", spec("pbx", 6000, Tls)),
            ("sip:10.1.2.3", spec("10.1.2.3", 5060, Udp)),
            ("[::1]:5060", spec("::1", 5060, Udp)),
            ("[2001:db8::1]", spec("2001:db8::1", 5060, Udp)),
            ("::1", spec("::1", 5060, Udp)),
            ("sips:[::1]:5071", spec("::1", 5071, Tls)),
        ] {
            assert_eq!(sip_server(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn sip_server_errors() {
        for (text, needle) in [
            ("pbx:0", "port"),
            ("pbx:70000", "port"),
            ("pbx:x", "port"),
            ("pbx;transport=tcp", "SIP URI form"),
            ("sip:1000@pbx", "user@"),
            ("sip:pbx;lr", "unsupported"),
            ("sip:pbx;transport=sctp", "udp, tcp or tls"),
            ("sips:pbx;transport=udp", "UDP"),
            ("2001:db8::1:5060x", "brackets"),
            ("[::1", "`]`"),
            ("[::1]x", "unexpected"),
            ("pbx_1:5060", "expected host:port"),
            ("http://pbx", "port"),
            ("sip:", "expected host:port"),
        ] {
            let err = sip_server(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("16384-32768"), Ok(16384..=32768));
        assert_eq!(port_range("10000 - 10001"), Ok(10000..=10001));
        for bad in [
            "16385-32768",
            "16384-16384",
            "16384",
            "0-10",
            "a-b",
            "20000-10000",
        ] {
            assert!(port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin("HTTPS://App.Example.com"),
            Ok("https://app.example.com".into())
        );
        assert_eq!(
            origin("http://localhost:8080"),
            Ok("http://localhost:8080".into())
        );
        assert_eq!(origin("http://[::1]:8080"), Ok("http://[::1]:8080".into()));
        for bad in [
            "app.example.com",
            "https://a.com/",
            "https://a.com:0",
            "ftp://a",
            "https://a_b",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_and_levels() {
        assert!(is_sip_user("1001"));
        assert!(is_sip_user("alice.smith+x"));
        assert!(!is_sip_user("a b"));
        assert!(!is_sip_user("a;b"));
        assert!(!is_sip_user(""));
        assert!(is_app_user("user@example.com"));
        assert!(!is_app_user("a/b"));
        assert_eq!(log_level("0"), Ok(LogLevel::Sensitive));
        assert_eq!(log_level("Warning"), Ok(LogLevel::Warning));
        assert!(log_level("6").is_err());
        assert!(log_level("debug").is_err());
        assert_eq!(boolean("On"), Ok(true));
        assert!(boolean("2").is_err());
    }
}
