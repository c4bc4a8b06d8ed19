//! Reading the lexed document into a typed [`Config`]: [`Reader`] (values as written or
//! their defaults, errors and warnings located by file, line, section and key; unknown
//! sections and keys refused first) and each section's reader with its limits.

use std::net::ToSocketAddrs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pii::Secret;

use super::lexer::Document;
use super::schema::{ANYRTC_KEYS, IGNORED_SECTIONS, SCHEMA, default_of, schema_keys};
use super::{
    AccRule, Api, Auth, CallsSection, Config, ConfigError, Door, ErrorKind, Global, Groups, Log,
    Media, Proxy, RestHooks, Rtm2Sip, Sip, SipServer, Tls, Warning, WebRtc, values,
};

const SHARDS_MAX: usize = 1024;
const EXPIRES: RangeInclusive<u32> = 10..=86_400;
/// `[sip] session_expires`: RFC 4028's smallest interval (Min-SE 90) up to a day.
const SESSION_EXPIRES: RangeInclusive<u32> = 90..=86_400;
const RTP_TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
const INVITATION_TIMEOUT_SECS: RangeInclusive<u64> = 1..=600;
const MAX_FILE_SIZE_MB: RangeInclusive<u64> = 1..=1_048_576;

/// Reads typed values out of a lexed document, with defaults from [`SCHEMA`].
pub(super) struct Reader<'a, 'd> {
    pub(super) file: &'a Path,
    pub(super) doc: &'a Document<'d>,
    pub(super) warnings: Vec<Warning>,
}

impl<'d> Reader<'_, 'd> {
    pub(super) fn error(
        &self,
        section: &str,
        key: Option<&str>,
        line: Option<usize>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line,
            section: Some(section.to_owned()),
            key: key.map(str::to_owned),
            kind,
            message: message.into(),
        }
    }

    pub(super) fn warn(
        &mut self,
        section: &str,
        key: Option<&str>,
        line: Option<usize>,
        message: &str,
    ) {
        self.warnings.push(Warning {
            file: self.file.to_owned(),
            line,
            section: Some(section.to_owned()),
            key: key.map(str::to_owned),
            message: message.to_owned(),
        });
    }

    pub(super) fn line(&self, section: &str, key: &str) -> Option<usize> {
        self.doc.entry(section, key).map(|e| e.line)
    }

    /// The value as written, or the default; with the line it was written on.
    fn raw(&self, section: &str, key: &str) -> (&'d str, Option<usize>) {
        match self.doc.entry(section, key) {
            Some(entry) => (entry.value, Some(entry.line)),
            None => (default_of(section, key), None),
        }
    }

    fn get<T>(
        &self,
        section: &str,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (value, line) = self.raw(section, key);
        parse(value)
            .map_err(|message| self.error(section, Some(key), line, ErrorKind::BadValue, message))
    }

    /// Unknown sections and keys are errors, anyRTC's are warnings. Runs before any value
    /// is read, so the first problem in the file is the one reported.
    pub(super) fn check_names(&mut self) -> Result<(), ConfigError> {
        let doc = self.doc;
        for section in &doc.sections {
            if let Some((_, why)) = IGNORED_SECTIONS.iter().find(|(s, _)| *s == section.name) {
                self.warn(section.name, None, Some(section.line), why);
                continue;
            }
            let Some(keys) = schema_keys(section.name) else {
                let known: Vec<String> = SCHEMA.iter().map(|(s, _)| format!("[{s}]")).collect();
                let hint = if schema_keys(&section.name.to_ascii_lowercase()).is_some() {
                    format!(
                        "section names are lower-case: [{}]",
                        section.name.to_ascii_lowercase()
                    )
                } else {
                    format!("srgate knows {}", known.join(" "))
                };
                return Err(self.error(
                    section.name,
                    None,
                    Some(section.line),
                    ErrorKind::UnknownSection,
                    format!("unknown section; {hint}"),
                ));
            };
            if section.name == "users" || section.name == "groups" {
                continue;
            }
            for entry in &section.entries {
                if ANYRTC_KEYS.contains(&(section.name, entry.key)) {
                    self.warn(
                        section.name,
                        Some(entry.key),
                        Some(entry.line),
                        "anyRTC-only key, ignored by srgate",
                    );
                    continue;
                }
                if keys.iter().any(|(k, _)| *k == entry.key) {
                    continue;
                }
                let elsewhere = SCHEMA
                    .iter()
                    .find(|(_, keys)| keys.iter().any(|(k, _)| *k == entry.key))
                    .map(|(s, _)| *s);
                let hint = match elsewhere {
                    Some(other) => format!("it belongs in [{other}]"),
                    None => {
                        let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                        format!("[{}] has {}", section.name, names.join(", "))
                    }
                };
                return Err(self.error(
                    section.name,
                    Some(entry.key),
                    Some(entry.line),
                    ErrorKind::UnknownKey,
                    format!("unknown key; {hint}"),
                ));
            }
        }
        Ok(())
    }
}

fn resolve(spec: values::SipServerSpec) -> Result<SipServer, String> {
    let placeholder_hint = if spec.host == "IP" {
        " (replace the placeholder `IP` with the PBX's address)"
    } else {
        ""
    };
    let addr = (spec.host.as_str(), spec.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{}`: {e}{placeholder_hint}", spec.host))?
        .next()
        .ok_or_else(|| format!("`{}` resolves to no address{placeholder_hint}", spec.host))?;
    Ok(SipServer {
        host: spec.host,
        port: spec.port,
        transport: spec.transport,
        addr,
    })
}

fn optional_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn readable_file(s: &str) -> Result<Option<PathBuf>, String> {
    let Some(path) = optional_path(s) else {
        return Ok(None);
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(Some(path)),
        Ok(_) => Err(format!("`{s}` is not a file")),
        Err(e) => Err(format!("cannot read `{s}`: {e}")),
    }
}

impl Config {
    pub(super) fn read(r: &Reader<'_, '_>, path: &Path) -> Result<Config, ConfigError> {
        let sip_svr = match r.get("global", "sip_svr", values::sip_server)? {
            None => None,
            Some(spec) => Some(r.get("global", "sip_svr", |_| resolve(spec))?),
        };
        let global = Global {
            sip_svr,
            public_ip: r.get("global", "public_ip", values::public_ip)?,
            shards: r.get("global", "shards", |s| {
                if s.eq_ignore_ascii_case("auto") {
                    Ok(std::thread::available_parallelism().map_or(1, |n| n.get()))
                } else {
                    values::number(s, 1..=SHARDS_MAX).map_err(|e| format!("{e} or `auto`"))
                }
            })?,
        };
        let sip = Sip {
            listen: r.get("sip", "listen", values::socket_addr)?,
            digest: r.get("sip", "digest", |s| {
                values::list(s, "digest algorithms", values::digest)
            })?,
            tls_listen: r.get("sip", "tls_listen", values::optional_socket_addr)?,
            domain: r.get("sip", "domain", values::domain)?,
            session_expires: r.get("sip", "session_expires", |s| match s {
                "0" => Ok(0),
                _ => values::number(s, SESSION_EXPIRES).map_err(|e| format!("{e}, or 0 (off)")),
            })?,
        };
        let proxy = Proxy {
            on: r.get("proxy", "on", values::boolean)?,
            sip_account: r.get("proxy", "sip_account", |s| {
                if s.is_empty() || values::is_sip_user(s) {
                    Ok(s.to_owned())
                } else {
                    Err(format!(
                        "`{s}` is not a SIP user name (1-64 letters, digits, `-_.!~*'()&=+$,?/%`)"
                    ))
                }
            })?,
            sip_pwd: Secret::from(r.raw("proxy", "sip_pwd").0),
            rtm_account: r.get("proxy", "rtm_account", |s| {
                if values::is_app_user(s) {
                    Ok(s.to_owned())
                } else {
                    Err(format!(
                        "expected an app user name (1-64 of `A-Za-z0-9_.+@-`), got `{s}`"
                    ))
                }
            })?,
            expires: r.get("proxy", "expires", |s| values::number(s, EXPIRES))?,
        };
        let rtm2sip = Rtm2Sip {
            on: r.get("rtm2sip", "on", values::boolean)?,
            acc_rule: r.get("rtm2sip", "acc_rule", AccRule::parse)?,
            allow_any: r.get("rtm2sip", "allow_any", values::boolean)?,
            app_display_name: r.get("rtm2sip", "app_display_name", values::boolean)?,
        };
        let mut users = Vec::new();
        for entry in r.doc.section("users").map_or(&[][..], |s| &s.entries[..]) {
            let bad = |message: &str| {
                r.error(
                    "users",
                    Some(entry.key),
                    Some(entry.line),
                    ErrorKind::BadValue,
                    message,
                )
            };
            if !values::is_sip_user(entry.key) {
                return Err(bad(
                    "not a SIP user name (1-64 letters, digits, `-_.!~*'()&=+$,?/%`)",
                ));
            }
            if entry.value.is_empty() {
                return Err(bad("empty password; every user needs one"));
            }
            users.push((entry.key.to_owned(), Secret::from(entry.value)));
        }
        let mut groups = Groups::default();
        for entry in r.doc.section("groups").map_or(&[][..], |s| &s.entries[..]) {
            groups.add(entry.key, entry.value).map_err(|message| {
                r.error(
                    "groups",
                    Some(entry.key),
                    Some(entry.line),
                    ErrorKind::BadValue,
                    message,
                )
            })?;
        }
        let webrtc = WebRtc {
            listen: r.get("webrtc", "listen", values::socket_addr)?,
            tls_listen: r.get("webrtc", "tls_listen", values::optional_socket_addr)?,
            udp: r.get("webrtc", "udp", values::socket_addr)?,
            allowed_origins: r.get("webrtc", "allowed_origins", |s| {
                if s.is_empty() {
                    Ok(Vec::new())
                } else if s.trim() == "*" {
                    Ok(vec!["*".to_owned()])
                } else {
                    values::list(s, "origins", values::origin)
                }
            })?,
            max_conns_per_ip: r.get("webrtc", "max_conns_per_ip", |s| {
                values::number(s, 1..=4096)
            })?,
            ice_servers: r.get("webrtc", "ice_servers", |s| {
                if s.trim().is_empty() {
                    Ok(Vec::new())
                } else {
                    values::list(s, "ICE servers", values::ice_server)
                }
            })?,
            turn_secret: Secret::from(r.raw("webrtc", "turn_secret").0),
            turn_ttl: r.get("webrtc", "turn_ttl", |s| values::number(s, 60..=2_592_000))?,
            ice_tcp: r.get("webrtc", "ice_tcp", values::boolean)?,
        };
        let media = Media {
            rtp_ports: r.get("media", "rtp_ports", values::port_range)?,
            codecs: r.get("media", "codecs", |s| {
                if s.is_empty() {
                    Err("at least one codec is needed (opus, pcmu, pcma, g722)".into())
                } else {
                    values::list(s, "codecs", values::codec)
                }
            })?,
            opus_complexity: r.get("media", "opus_complexity", |s| values::number(s, 0..=10))?,
            rtp_timeout: r.get("media", "rtp_timeout", |s| {
                values::number(s, RTP_TIMEOUT_SECS).map(Duration::from_secs)
            })?,
            sip_srtp: r.get("media", "sip_srtp", values::sip_srtp)?,
        };
        let calls = CallsSection {
            invitation_timeout: r.get("calls", "invitation_timeout", |s| {
                values::number(s, INVITATION_TIMEOUT_SECS).map(Duration::from_secs)
            })?,
            max_calls: r.get("calls", "max_calls", |s| values::number(s, 1..=1_000_000))?,
            cdr_file: r.get("calls", "cdr_file", |s| match optional_path(s) {
                Some(p) if p.is_dir() => Err(format!("`{s}` is a directory; give a file name")),
                other => Ok(other),
            })?,
            cdr_max_file_size_mb: r.get("calls", "cdr_max_file_size", |s| {
                values::number(s, MAX_FILE_SIZE_MB).map_err(|e| format!("{e} (MB)"))
            })?,
        };
        let door = Door {
            open_dtmf: r.get("door", "open_dtmf", values::dtmf_sequence)?,
            open_info: r.get("door", "open_info", values::boolean)?,
            open_hook: r.get("door", "open_hook", values::hook_url)?,
        };
        let rest = RestHooks {
            hook_url: r.get("rest", "hook_url", values::hook_url)?,
        };
        let auth = Auth {
            secret: Secret::from(r.raw("auth", "secret").0),
            open: r.get("auth", "open", values::boolean)?,
        };
        let tls = Tls {
            cert: r.get("tls", "cert", readable_file)?,
            key: r.get("tls", "key", readable_file)?,
            ca: r.get("tls", "ca", readable_file)?,
        };
        let api = Api {
            listen: r.get("api", "listen", values::optional_socket_addr)?,
            token: Secret::from(r.raw("api", "token").0),
        };
        let log = Log {
            level: r.get("log", "level", values::log_level)?,
            file: r.get("log", "file", |s| match optional_path(s) {
                Some(p) if p.is_dir() => Err(format!("`{s}` is a directory; give a file name")),
                other => Ok(other),
            })?,
            max_file_size_mb: r.get("log", "max_file_size", |s| {
                values::number(s, MAX_FILE_SIZE_MB).map_err(|e| format!("{e} (MB)"))
            })?,
        };
        Ok(Config {
            path: path.to_owned(),
            global,
            sip,
            proxy,
            rtm2sip,
            users,
            groups,
            webrtc,
            media,
            calls,
            door,
            rest,
            auth,
            tls,
            api,
            log,
        })
    }
}
