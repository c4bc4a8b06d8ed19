//! [`Config`] back to INI text, for `srgate check`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use super::Config;
use crate::pii::Secret;

/// What `***` stands for in the output.
const MASK: &str = "***";

/// Writes `value` so that the lexer reads it back unchanged: quoted when it has blanks at
/// either end, starts with `"`, `;` or `#`, or has a blank followed by `;` or `#`. (A value
/// that needs quotes and holds a `"` cannot be written; no validated value is like that.)
fn quoted(value: &str) -> String {
    let blank = |c: char| c == ' ' || c == '\t';
    let needs_quotes = value.starts_with(blank)
        || value.ends_with(blank)
        || value.starts_with(['"', ';', '#'])
        || value.contains(" ;")
        || value.contains(" #")
        || value.contains("\t;")
        || value.contains("\t#");
    if needs_quotes && !value.contains('"') {
        format!("\"{value}\"")
    } else {
        value.to_owned()
    }
}

fn secret(value: &Secret, mask: bool) -> String {
    if mask && !value.is_empty() {
        MASK.to_owned()
    } else {
        quoted(value.expose())
    }
}

fn addr(value: Option<SocketAddr>) -> String {
    value.map(|a| a.to_string()).unwrap_or_default()
}

fn path(value: Option<&Path>) -> String {
    value
        .map(|p| quoted(&p.to_string_lossy()))
        .unwrap_or_default()
}

fn joined<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// The whole configuration; `mask` replaces non-empty secrets with `***`.
pub(super) fn write(c: &Config, mask: bool) -> String {
    let mut out = String::new();
    let mut section = |name: &str, entries: &[(&str, String, Option<String>)]| {
        let _ = writeln!(out, "[{name}]");
        for (key, value, comment) in entries {
            // A value that starts with `;` or `#` and holds a `"` cannot be quoted: it is
            // written right after the `=`, where `;` and `#` start no comment.
            let eq = if value.starts_with([';', '#']) {
                "="
            } else {
                "= "
            };
            let _ = match (value.is_empty(), comment) {
                (true, Some(comment)) => writeln!(out, "{key} =    ; {comment}"),
                (true, None) => writeln!(out, "{key} ="),
                (false, Some(comment)) => writeln!(out, "{key} {eq}{value}    ; {comment}"),
                (false, None) => writeln!(out, "{key} {eq}{value}"),
            };
        }
        if entries.is_empty() {
            let _ = writeln!(out, "; (none)");
        }
        let _ = writeln!(out);
    };
    let none = || None::<String>;

    section(
        "global",
        &[
            (
                "sip_svr",
                c.global
                    .sip_svr
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                Some(match &c.global.sip_svr {
                    Some(s) => format!("{} at {}", s.transport, s.addr),
                    None => "standalone mode".to_owned(),
                }),
            ),
            (
                "public_ip",
                c.global
                    .public_ip
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                none(),
            ),
            ("shards", c.global.shards.to_string(), none()),
        ],
    );
    section(
        "sip",
        &[
            ("listen", c.sip.listen.to_string(), none()),
            ("digest", joined(&c.sip.digest), none()),
            ("tls_listen", addr(c.sip.tls_listen), none()),
            (
                "domain",
                c.sip.domain.clone().unwrap_or_default(),
                Some(format!("in use: {}", c.domain())),
            ),
            ("session_expires", c.sip.session_expires.to_string(), none()),
        ],
    );
    section(
        "proxy",
        &[
            ("on", flag(c.proxy.on).to_owned(), none()),
            ("sip_account", c.proxy.sip_account.clone(), none()),
            ("sip_pwd", secret(&c.proxy.sip_pwd, mask), none()),
            ("rtm_account", c.proxy.rtm_account.clone(), none()),
            ("expires", c.proxy.expires.to_string(), none()),
        ],
    );
    section(
        "rtm2sip",
        &[
            ("on", flag(c.rtm2sip.on).to_owned(), none()),
            ("acc_rule", c.rtm2sip.acc_rule.to_string(), none()),
            ("allow_any", flag(c.rtm2sip.allow_any).to_owned(), none()),
            (
                "app_display_name",
                flag(c.rtm2sip.app_display_name).to_owned(),
                none(),
            ),
        ],
    );
    let users: Vec<(&str, String, Option<String>)> = c
        .users
        .iter()
        .map(|(name, password)| (name.as_str(), secret(password, mask), none()))
        .collect();
    section("users", &users);
    let groups: Vec<(&str, String, Option<String>)> = c
        .groups
        .iter()
        .map(|g| {
            let note = g
                .key
                .contains('[')
                .then(|| "each number of the range; {n}: the number called".to_owned());
            (g.key.as_str(), g.to_string(), note)
        })
        .collect();
    section("groups", &groups);
    section(
        "webrtc",
        &[
            ("listen", c.webrtc.listen.to_string(), none()),
            ("tls_listen", addr(c.webrtc.tls_listen), none()),
            (
                "udp",
                c.webrtc.udp.to_string(),
                Some({
                    let ports = c.webrtc_udp_ports();
                    format!("shard ports {}-{}", ports.start(), ports.end())
                }),
            ),
            (
                "allowed_origins",
                c.webrtc.allowed_origins.join(","),
                c.webrtc
                    .allowed_origins
                    .is_empty()
                    .then(|| "only the page's own origin".to_owned()),
            ),
            (
                "max_conns_per_ip",
                c.webrtc.max_conns_per_ip.to_string(),
                none(),
            ),
            ("ice_servers", c.webrtc.ice_servers.join(","), none()),
            ("turn_secret", secret(&c.webrtc.turn_secret, mask), none()),
            ("turn_ttl", c.webrtc.turn_ttl.to_string(), none()),
            ("ice_tcp", flag(c.webrtc.ice_tcp).to_owned(), none()),
        ],
    );
    section(
        "media",
        &[
            (
                "rtp_ports",
                format!("{}-{}", c.media.rtp_ports.start(), c.media.rtp_ports.end()),
                none(),
            ),
            ("codecs", joined(&c.media.codecs), none()),
            (
                "opus_complexity",
                c.media.opus_complexity.to_string(),
                none(),
            ),
            (
                "rtp_timeout",
                c.media.rtp_timeout.as_secs().to_string(),
                none(),
            ),
            ("sip_srtp", c.media.sip_srtp.to_string(), none()),
        ],
    );
    section(
        "calls",
        &[
            (
                "invitation_timeout",
                c.calls.invitation_timeout.as_secs().to_string(),
                none(),
            ),
            ("cdr_file", path(c.calls.cdr_file.as_deref()), none()),
            (
                "cdr_max_file_size",
                c.calls.cdr_max_file_size_mb.to_string(),
                none(),
            ),
            ("max_calls", c.calls.max_calls.to_string(), none()),
        ],
    );
    section(
        "door",
        &[
            ("open_dtmf", c.door.open_dtmf.clone(), none()),
            ("open_info", flag(c.door.open_info).to_owned(), none()),
            (
                "open_hook",
                c.door
                    .open_hook
                    .as_ref()
                    .map_or(String::new(), |h| h.to_string()),
                none(),
            ),
        ],
    );
    section(
        "rest",
        &[(
            "hook_url",
            c.rest
                .hook_url
                .as_ref()
                .map_or(String::new(), |h| h.to_string()),
            none(),
        )],
    );
    section(
        "auth",
        &[
            ("secret", secret(&c.auth.secret, mask), none()),
            ("open", flag(c.auth.open).to_owned(), none()),
        ],
    );
    section(
        "tls",
        &[
            ("cert", path(c.tls.cert.as_deref()), none()),
            ("key", path(c.tls.key.as_deref()), none()),
            ("ca", path(c.tls.ca.as_deref()), none()),
        ],
    );
    section(
        "api",
        &[
            ("listen", addr(c.api.listen), none()),
            ("token", secret(&c.api.token, mask), none()),
        ],
    );
    section(
        "log",
        &[
            (
                "level",
                c.log.level.number().to_string(),
                Some(c.log.level.name().to_owned()),
            ),
            ("file", path(c.log.file.as_deref()), none()),
            ("max_file_size", c.log.max_file_size_mb.to_string(), none()),
        ],
    );
    format!(
        "; effective configuration of {}\n\n{}",
        c.path.display(),
        out.trim_end()
    ) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_only_where_needed() {
        assert_eq!(quoted("a#b;c"), "a#b;c");
        assert_eq!(quoted(" a"), "\" a\"");
        assert_eq!(quoted("a ;b"), "\"a ;b\"");
        assert_eq!(quoted("#a"), "\"#a\"");
        assert_eq!(quoted(""), "");
    }

    /// A password that starts with `;` and holds a `"` cannot be quoted: it is written
    /// right after the `=` and reads back the same (found by the config fuzz target).
    #[test]
    fn a_value_that_cannot_be_quoted_still_reads_back() {
        let path = std::path::Path::new("x.ini");
        let (c, _) = Config::from_str("[users]\nbob =; \"x ;y\"\n", path).unwrap();
        assert_eq!(c.users[0].1.expose(), "; \"x");
        let written = c.effective_unmasked();
        assert!(written.contains("bob =; \"x\n"), "{written}");
        let (again, _) = Config::from_str(&written, path).unwrap();
        assert_eq!(again, c);
    }
}
