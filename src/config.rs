//! The configuration file (`conf/srgate.ini`, where every key is documented) read into a typed [`Config`].
//!
//! SRProxy's `rtx.conf` keys keep their meaning (`[global] sip_svr`, `[rtm2sip] on, acc_rule`,
//! `[proxy] on, sip_account, sip_pwd, rtm_account`, `[log] level, file, max_file_size`), and
//! an `rtx.conf` as SRProxy's guide writes it loads unchanged once `sip_svr` holds a real
//! address. anyRTC-only settings (`[global] appid`, the `[rtc]` and `[rtm]` sections) are
//! accepted with a [`Warning`]. Every other unknown section or key, every bad value and every
//! contradiction between keys is a [`ConfigError`] that names the file, the line and the key.
//!
//! File syntax: `;` and `#` start comment lines; an inline comment starts at a `;` or `#`
//! that follows a space or tab (SRProxy's `sip_svr=IP:5060 \t\t ## …`), so a password like
//! `a#b;c` is read whole; a value in double quotes is taken literally (for blanks at its ends
//! or a ` ;` inside); a key set twice in one section is an error, not last-wins; a section
//! may be opened more than once. Section and key names are case-sensitive.
//!
//! Relative paths (`[tls] cert`, `[log] file`) are taken relative to the working directory,
//! as SRProxy did. Loading resolves `sip_svr` host names (blocking DNS) and checks that the
//! TLS files exist; nothing else touches the system.

mod acc_rule;
mod effective;
mod lexer;
mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use acc_rule::AccRule;

use crate::pii::Secret;
use lexer::Document;

/// Everything in the configuration file, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub global: Global,
    pub sip: Sip,
    pub proxy: Proxy,
    pub rtm2sip: Rtm2Sip,
    /// `[users]`: SIP users allowed to REGISTER in standalone mode, name and password, in
    /// file order.
    pub users: Vec<(String, Secret)>,
    pub webrtc: WebRtc,
    pub media: Media,
    pub calls: CallsSection,
    pub auth: Auth,
    pub tls: Tls,
    pub api: Api,
    pub log: Log,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// The PBX / registrar; `None` is standalone mode.
    pub sip_svr: Option<SipServer>,
    /// Address advertised in SDP and Contact.
    pub public_ip: Option<IpAddr>,
    /// Reactor threads; `auto` became the number of cores.
    pub shards: usize,
}

/// `[global] sip_svr`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipServer {
    /// As written, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// `host` resolved when the file was loaded (the first address).
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// 5060, or 5061 for TLS (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 5060,
            Transport::Tls => 5061,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// The host as it goes into a SIP URI: IPv6 literals in brackets.
fn uri_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The canonical `sip_svr` spelling, which reads back to the same server.
impl fmt::Display for SipServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = uri_host(&self.host);
        match self.transport {
            Transport::Udp => write!(f, "{host}:{}", self.port),
            Transport::Tcp => write!(f, "sip:{host}:{};transport=tcp", self.port),
            Transport::Tls => write!(f, "sips:{host}:{}", self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sip {
    /// UDP and TCP.
    pub listen: SocketAddr,
    /// Challenge order as registrar.
    pub digest: Vec<DigestAlgorithm>,
    pub tls_listen: Option<SocketAddr>,
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigestAlgorithm::Md5 => "md5",
            DigestAlgorithm::Sha256 => "sha256",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    pub on: bool,
    pub sip_account: String,
    pub sip_pwd: Secret,
    /// Caller id shown to app users when the SIP caller is anonymous.
    pub rtm_account: String,
    /// Requested registration expiry, seconds.
    pub expires: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rtm2Sip {
    pub on: bool,
    pub acc_rule: AccRule,
    pub allow_any: bool,
    /// The app's `content.SipData` may set the From display name (SRProxy's behaviour);
    /// off: the display name is the logged-in app user.
    pub app_display_name: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebRtc {
    /// HTTP: demo page and WebSocket.
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    /// ICE-lite media port of shard 0; shard i uses port + i.
    pub udp: SocketAddr,
    /// Lower-case `scheme://host[:port]`; empty: only the page's own origin (the Origin
    /// names the Host the request was sent to); `["*"]`: any origin.
    pub allowed_origins: Vec<String>,
    /// Web connections (HTTP and WebSocket) one address (an IPv6 /64) may hold at once.
    pub max_conns_per_ip: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub rtp_ports: RangeInclusive<u16>,
    /// In order of preference.
    pub codecs: Vec<Codec>,
    pub opus_complexity: u8,
    pub rtp_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Pcmu,
    Pcma,
    G722,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::G722 => "g722",
        })
    }
}

/// `[calls]`: how calls are timed and recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CallsSection {
    /// Seconds an invitation rings before it expires (both directions).
    pub invitation_timeout: Duration,
    /// One JSON line per ended call (CDR); `None`: no records.
    pub cdr_file: Option<PathBuf>,
    /// Calls in progress at once on all shards; more are refused (SIP 503, `OVERLOADED`).
    pub max_calls: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// HMAC key for login tokens; empty = open login (allowed only on loopback listeners
    /// unless `open` says otherwise).
    pub secret: Secret,
    /// `[auth] open = 1`: the operator accepts open login on a listener that other hosts
    /// reach.
    pub open: bool,
}

impl Auth {
    /// Whether anyone may log in as anyone (no secret).
    pub fn open_login(&self) -> bool {
        self.secret.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    /// `None`: no API listener.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub level: LogLevel,
    /// `None`: stderr only.
    pub file: Option<PathBuf>,
    pub max_file_size_mb: u64,
}

/// SRProxy's log levels, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    /// Everything, including SIP message bodies and unredacted personal data.
    Sensitive = 0,
    Verbose = 1,
    Info = 2,
    Warning = 3,
    Error = 4,
    None = 5,
}

impl LogLevel {
    pub fn from_number(n: u8) -> Option<LogLevel> {
        Some(match n {
            0 => LogLevel::Sensitive,
            1 => LogLevel::Verbose,
            2 => LogLevel::Info,
            3 => LogLevel::Warning,
            4 => LogLevel::Error,
            5 => LogLevel::None,
            _ => return None,
        })
    }

    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Sensitive => "SENSITIVE",
            LogLevel::Verbose => "VERBOSE",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::None => "NONE",
        }
    }
}

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file cannot be read or is not UTF-8.
    Io,
    /// A line is neither a comment, a `[section]` nor `key = value`.
    Syntax,
    UnknownSection,
    UnknownKey,
    /// A key set twice in one section.
    DuplicateKey,
    /// A value srgate cannot use; the message says what is expected.
    BadValue,
    /// Keys that contradict each other (e.g. `tls_listen` without `[tls] cert`).
    Conflict,
}

/// A configuration that cannot be used. Displays as `FILE:LINE: [section] key: message`
/// (line, section and key omitted when they do not apply).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
}

/// Something srgate accepted but that the user should know about. Displays like
/// [`ConfigError`].
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

fn write_located(
    f: &mut fmt::Formatter<'_>,
    file: &Path,
    line: Option<usize>,
    section: Option<&str>,
    key: Option<&str>,
    message: &str,
) -> fmt::Result {
    write!(f, "{}", file.display())?;
    if let Some(line) = line {
        write!(f, ":{line}")?;
    }
    f.write_str(":")?;
    if let Some(section) = section {
        write!(f, " [{section}]")?;
    }
    if let Some(key) = key {
        write!(f, " {key}")?;
    }
    if section.is_some() || key.is_some() {
        f.write_str(":")?;
    }
    write!(f, " {message}")
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(
            f,
            &self.file,
            self.line,
            self.section.as_deref(),
            self.key.as_deref(),
            &self.message,
        )
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(
            f,
            &self.file,
            self.line,
            self.section.as_deref(),
            self.key.as_deref(),
            &self.message,
        )
    }
}

/// Every section and key with its default, as `conf/srgate.ini` documents them. `[users]` takes any key
/// (user names); `[rtc]`, `[rtm]` and `[global] appid` are anyRTC's and only warned about.
const SCHEMA: &[(&str, &[(&str, &str)])] = &[
    (
        "global",
        &[("sip_svr", ""), ("public_ip", ""), ("shards", "auto")],
    ),
    (
        "sip",
        &[
            ("listen", "0.0.0.0:5086"),
            ("digest", "md5,sha256"),
            ("tls_listen", ""),
            ("domain", ""),
        ],
    ),
    (
        "proxy",
        &[
            ("on", "1"),
            ("sip_account", "1000"),
            ("sip_pwd", "1234"),
            ("rtm_account", "1086"),
            ("expires", "300"),
        ],
    ),
    (
        "rtm2sip",
        &[
            ("on", "1"),
            ("acc_rule", "1005;10[06-19]"),
            ("allow_any", "0"),
            ("app_display_name", "0"),
        ],
    ),
    ("users", &[]),
    (
        "webrtc",
        &[
            ("listen", "127.0.0.1:8080"),
            ("tls_listen", ""),
            ("udp", "0.0.0.0:20000"),
            ("allowed_origins", ""),
            ("max_conns_per_ip", "64"),
        ],
    ),
    (
        "media",
        &[
            ("rtp_ports", "16384-32768"),
            ("codecs", "opus,pcmu,pcma,g722"),
            ("opus_complexity", "5"),
            ("rtp_timeout", "30"),
        ],
    ),
    (
        "calls",
        &[
            ("invitation_timeout", "60"),
            ("cdr_file", "srgate-cdr.jsonl"),
            ("max_calls", "4096"),
        ],
    ),
    ("auth", &[("secret", ""), ("open", "0")]),
    ("tls", &[("cert", ""), ("key", "")]),
    ("api", &[("listen", "127.0.0.1:9091")]),
    (
        "log",
        &[
            ("level", "2"),
            ("file", "srgate.log"),
            ("max_file_size", "100"),
        ],
    ),
];

const ANYRTC_SECTIONS: &[&str] = &["rtc", "rtm"];
const ANYRTC_KEYS: &[(&str, &str)] = &[("global", "appid")];

const SHARDS_MAX: usize = 1024;
const EXPIRES: RangeInclusive<u32> = 10..=86_400;
const RTP_TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
const INVITATION_TIMEOUT_SECS: RangeInclusive<u64> = 1..=600;
const MAX_FILE_SIZE_MB: RangeInclusive<u64> = 1..=1_048_576;
/// Below this an `[auth] secret` is easy to guess.
const SECRET_MIN_LEN: usize = 16;

fn schema_keys(section: &str) -> Option<&'static [(&'static str, &'static str)]> {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == section)
        .map(|(_, keys)| *keys)
}

fn default_of(section: &str, key: &str) -> &'static str {
    schema_keys(section)
        .and_then(|keys| keys.iter().find(|(k, _)| *k == key))
        .map(|(_, default)| *default)
        .expect("the loader asks only for keys listed in SCHEMA")
}

/// Reads typed values out of a lexed document, with defaults from [`SCHEMA`].
struct Reader<'a, 'd> {
    file: &'a Path,
    doc: &'a Document<'d>,
    warnings: Vec<Warning>,
}

impl<'d> Reader<'_, 'd> {
    fn error(
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

    fn warn(&mut self, section: &str, key: Option<&str>, line: Option<usize>, message: &str) {
        self.warnings.push(Warning {
            file: self.file.to_owned(),
            line,
            section: Some(section.to_owned()),
            key: key.map(str::to_owned),
            message: message.to_owned(),
        });
    }

    fn line(&self, section: &str, key: &str) -> Option<usize> {
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
    fn check_names(&mut self) -> Result<(), ConfigError> {
        let doc = self.doc;
        for section in &doc.sections {
            if ANYRTC_SECTIONS.contains(&section.name) {
                self.warn(
                    section.name,
                    None,
                    Some(section.line),
                    "anyRTC-only section, ignored by srgate",
                );
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
            if section.name == "users" {
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

/// Where a listener binds, for spotting two listeners on one port.
struct Listener {
    udp: bool,
    section: &'static str,
    key: &'static str,
    ip: IpAddr,
    ports: RangeInclusive<u16>,
}

impl Config {
    /// Reads and checks the file. The warnings are for the log (or `srgate check`).
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let io_error = |line, message: String| ConfigError {
            file: path.to_owned(),
            line,
            section: None,
            key: None,
            kind: ErrorKind::Io,
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| io_error(None, format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            io_error(Some(line), "not UTF-8 text".into())
        })?;
        Config::from_str(&text, path)
    }

    /// Reads and checks configuration text; `path` is used in messages and kept in
    /// [`Config::path`].
    pub fn from_str(text: &str, path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let doc = lexer::lex(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: Some(e.line),
            section: e.section,
            key: e.key,
            kind: e.kind,
            message: e.message,
        })?;
        let mut r = Reader {
            file: path,
            doc: &doc,
            warnings: Vec::new(),
        };
        r.check_names()?;
        let config = Config::read(&r, path)?;
        config.check(&mut r)?;
        Ok((config, r.warnings))
    }

    fn read(r: &Reader<'_, '_>, path: &Path) -> Result<Config, ConfigError> {
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
        };
        let auth = Auth {
            secret: Secret::from(r.raw("auth", "secret").0),
            open: r.get("auth", "open", values::boolean)?,
        };
        let tls = Tls {
            cert: r.get("tls", "cert", readable_file)?,
            key: r.get("tls", "key", readable_file)?,
        };
        let api = Api {
            listen: r.get("api", "listen", values::optional_socket_addr)?,
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
            webrtc,
            media,
            calls,
            auth,
            tls,
            api,
            log,
        })
    }

    /// The web listeners (`[webrtc] listen`, `tls_listen`) that other hosts may reach.
    pub fn exposed_web_listeners(&self) -> Vec<SocketAddr> {
        [Some(self.webrtc.listen), self.webrtc.tls_listen]
            .into_iter()
            .flatten()
            .filter(|a| !a.ip().is_loopback())
            .collect()
    }

    /// Whether logins are open (no secret) on a listener other hosts reach, without the
    /// operator's `[auth] open = 1`: srgate refuses to run so.
    pub fn open_login_exposed(&self) -> bool {
        self.auth.open_login() && !self.auth.open && !self.exposed_web_listeners().is_empty()
    }

    /// Checks across keys; adds warnings for settings that work but deserve a look.
    fn check(&self, r: &mut Reader<'_, '_>) -> Result<(), ConfigError> {
        let conflict = |r: &Reader<'_, '_>, section: &str, key: &str, message: String| {
            r.error(
                section,
                Some(key),
                r.line(section, key),
                ErrorKind::Conflict,
                message,
            )
        };
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return Err(conflict(r, "tls", "cert", "needs [tls] key as well".into()));
            }
            (None, Some(_)) => {
                return Err(conflict(r, "tls", "key", "needs [tls] cert as well".into()));
            }
            _ => {}
        }
        let have_tls = self.tls.cert.is_some();
        for (section, listen) in [
            ("sip", self.sip.tls_listen),
            ("webrtc", self.webrtc.tls_listen),
        ] {
            if listen.is_some() && !have_tls {
                return Err(conflict(
                    r,
                    section,
                    "tls_listen",
                    "needs [tls] cert and key".into(),
                ));
            }
        }
        if have_tls && self.sip.tls_listen.is_none() && self.webrtc.tls_listen.is_none() {
            let line = r.line("tls", "cert");
            r.warn(
                "tls",
                Some("cert"),
                line,
                "unused: no [sip] or [webrtc] tls_listen is set",
            );
        }
        if self.proxy.on && !self.standalone() && self.proxy.sip_account.is_empty() {
            return Err(conflict(
                r,
                "proxy",
                "sip_account",
                "empty, but [proxy] on = 1 with a sip_svr needs the account to register".into(),
            ));
        }
        let udp_ports = self.webrtc_udp_ports();
        if self.webrtc.udp.port() != 0
            && u32::from(self.webrtc.udp.port()) + self.global.shards as u32 - 1 > 65535
        {
            return Err(conflict(
                r,
                "webrtc",
                "udp",
                format!(
                    "port {} + {} shards runs past port 65535",
                    self.webrtc.udp.port(),
                    self.global.shards
                ),
            ));
        }
        self.check_listeners(r, udp_ports)?;

        if self.auth.secret.is_empty() {
            let exposed: Vec<String> = self
                .exposed_web_listeners()
                .iter()
                .map(|a| a.to_string())
                .collect();
            let line = r.line("auth", "secret");
            if !exposed.is_empty() && !self.auth.open {
                let (section, key) = if line.is_some() {
                    ("auth", "secret")
                } else {
                    ("webrtc", "listen")
                };
                return Err(conflict(
                    r,
                    section,
                    key,
                    format!(
                        "[auth] secret is empty, so anyone who reaches the web listener {} may \
                         log in as any user and place calls. Set [auth] secret to 16 or more \
                         random characters (`srgate token USER` then mints logins), or listen \
                         on 127.0.0.1 only, or accept open login with [auth] open = 1",
                        exposed.join(", ")
                    ),
                ));
            }
            let message = if exposed.is_empty() {
                "empty: anyone on this machine may log in as any user (demo only)"
            } else {
                "empty and [auth] open = 1: anyone who reaches the web listener may log in as \
                 any user"
            };
            r.warn("auth", Some("secret"), line, message);
        } else if self.auth.secret.expose().len() < SECRET_MIN_LEN {
            let line = r.line("auth", "secret");
            let message = format!("shorter than {SECRET_MIN_LEN} characters: easy to guess");
            r.warn("auth", Some("secret"), line, &message);
        }
        if self.auth.open && !self.auth.secret.is_empty() {
            let line = r.line("auth", "open");
            r.warn("auth", Some("open"), line, "ignored: [auth] secret is set");
        }
        let users_line = r.doc.section("users").map(|s| s.line);
        if self.standalone() && self.users.is_empty() {
            r.warn(
                "users",
                None,
                users_line,
                "no users: standalone mode's registrar refuses every REGISTER",
            );
        }
        if !self.standalone() && !self.users.is_empty() {
            r.warn(
                "users",
                None,
                users_line,
                "ignored: with sip_svr set srgate is not a registrar",
            );
        }
        if self.rtm2sip.on && !self.rtm2sip.allow_any && self.rtm2sip.acc_rule.is_empty() {
            let line = r.line("rtm2sip", "acc_rule");
            r.warn(
                "rtm2sip",
                Some("acc_rule"),
                line,
                "empty: app users may call no SIP number",
            );
        }
        Ok(())
    }

    /// Two listeners of one protocol on one port (and overlapping addresses) is an error.
    fn check_listeners(
        &self,
        r: &Reader<'_, '_>,
        webrtc_udp: RangeInclusive<u16>,
    ) -> Result<(), ConfigError> {
        let single = |addr: SocketAddr| addr.port()..=addr.port();
        let mut listeners = vec![
            Listener {
                udp: true,
                section: "sip",
                key: "listen",
                ip: self.sip.listen.ip(),
                ports: single(self.sip.listen),
            },
            Listener {
                udp: false,
                section: "sip",
                key: "listen",
                ip: self.sip.listen.ip(),
                ports: single(self.sip.listen),
            },
            Listener {
                udp: true,
                section: "webrtc",
                key: "udp",
                ip: self.webrtc.udp.ip(),
                ports: webrtc_udp,
            },
            Listener {
                udp: false,
                section: "webrtc",
                key: "listen",
                ip: self.webrtc.listen.ip(),
                ports: single(self.webrtc.listen),
            },
        ];
        for (section, key, addr) in [
            ("sip", "tls_listen", self.sip.tls_listen),
            ("webrtc", "tls_listen", self.webrtc.tls_listen),
            ("api", "listen", self.api.listen),
        ] {
            if let Some(addr) = addr {
                listeners.push(Listener {
                    udp: false,
                    section,
                    key,
                    ip: addr.ip(),
                    ports: single(addr),
                });
            }
        }
        for (i, later) in listeners.iter().enumerate() {
            for earlier in &listeners[..i] {
                let same_ip = earlier.ip == later.ip
                    || earlier.ip.is_unspecified()
                    || later.ip.is_unspecified();
                let overlap = earlier.ports.start() <= later.ports.end()
                    && later.ports.start() <= earlier.ports.end()
                    && *later.ports.start() != 0
                    && *earlier.ports.start() != 0;
                if earlier.udp == later.udp && same_ip && overlap {
                    let proto = if later.udp { "UDP" } else { "TCP" };
                    return Err(r.error(
                        later.section,
                        Some(later.key),
                        r.line(later.section, later.key),
                        ErrorKind::Conflict,
                        format!(
                            "{proto} port {} is also used by [{}] {}",
                            later.ports.start().max(earlier.ports.start()),
                            earlier.section,
                            earlier.key
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The SIP domain: `[sip] domain`, else the `sip_svr` host, else `public_ip`, else the
    /// `[sip] listen` address (which may be 0.0.0.0: set `public_ip` or `domain` in that
    /// case). IPv6 literals come in brackets, ready for a SIP URI.
    pub fn domain(&self) -> String {
        if let Some(domain) = &self.sip.domain {
            return domain.clone();
        }
        if let Some(server) = &self.global.sip_svr {
            return uri_host(&server.host);
        }
        let ip = self.global.public_ip.unwrap_or(self.sip.listen.ip());
        uri_host(&ip.to_string())
    }

    /// Standalone mode: no `sip_svr`, srgate is the registrar.
    pub fn standalone(&self) -> bool {
        self.global.sip_svr.is_none()
    }

    /// The ICE-lite UDP ports, one per shard: `[webrtc] udp` port + shard index. Port 0
    /// (every shard lets the system choose) gives `0..=0`.
    pub fn webrtc_udp_ports(&self) -> RangeInclusive<u16> {
        let first = self.webrtc.udp.port();
        if first == 0 {
            return 0..=0;
        }
        let count = u16::try_from(self.global.shards).unwrap_or(u16::MAX);
        first..=first.saturating_add(count.saturating_sub(1))
    }

    /// The effective configuration as INI text: every key, defaults included, passwords and
    /// the auth secret shown as `***`. Reads back to this configuration (secrets aside).
    pub fn effective(&self) -> String {
        effective::write(self, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        Config::from_str(text, Path::new("t.ini"))
    }

    #[test]
    fn every_schema_default_parses() {
        let (config, warnings) = load("").unwrap();
        assert!(config.standalone());
        assert_eq!(config.sip.listen, "0.0.0.0:5086".parse().unwrap());
        assert_eq!(config.proxy.sip_pwd.expose(), "1234");
        assert_eq!(config.log.file.as_deref(), Some(Path::new("srgate.log")));
        // Empty secret and no users are worth a warning; defaults raise nothing else.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn effective_reads_back_equal_when_unmasked() {
        let text = "[global]\nsip_svr = sips:[::1]:5071\npublic_ip = 2001:db8::5\nshards = 3\n\
                    [sip]\ndigest = sha256\ndomain = example.org\n\
                    [proxy]\nsip_pwd = \" p ;w#d \"\n\
                    [rtm2sip]\nacc_rule = 1;2[00-50]\nallow_any = yes\n\
                    [users]\nalice = a#b\nbob = \"x ;y\"\n\
                    [webrtc]\nallowed_origins = https://A.example, http://b:8080\n\
                    [media]\ncodecs = pcma, opus\nrtp_timeout = 7\n\
                    [auth]\nsecret = 0123456789abcdef0\n\
                    [api]\nlisten =\n\
                    [log]\nlevel = verbose\nfile =\nmax_file_size = 5\n";
        let (config, _) = load(text).unwrap();
        let written = effective::write(&config, false);
        let (again, _) = load(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(again, config, "{written}");
        assert_eq!(config.proxy.sip_pwd.expose(), " p ;w#d ");
        assert_eq!(config.users[1].1.expose(), "x ;y");
        assert_eq!(config.domain(), "example.org");
    }

    #[test]
    fn domain_falls_back_in_order() {
        let (c, _) = load("[global]\nsip_svr = [::1]:5060\n").unwrap();
        assert_eq!(c.domain(), "[::1]");
        let (c, _) = load("[global]\npublic_ip = 192.0.2.7\n").unwrap();
        assert_eq!(c.domain(), "192.0.2.7");
        let (c, _) = load("[sip]\nlisten = 127.0.0.1:5086\n").unwrap();
        assert_eq!(c.domain(), "127.0.0.1");
    }

    #[test]
    fn listeners_on_one_port_conflict() {
        let err = load("[api]\nlisten = 127.0.0.1:8080\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(err.key.as_deref(), Some("listen"));
        assert_eq!(err.section.as_deref(), Some("api"));
        assert!(err.message.contains("[webrtc] listen"), "{err}");
        // The same port on UDP and TCP is fine, and so are different addresses.
        load("[webrtc]\nlisten = 127.0.0.1:20000\n").unwrap();
        load("[sip]\nlisten = 127.0.0.1:9091\n[api]\nlisten = 127.0.0.2:9091\n").unwrap();
        // The shards' UDP ports count as a range.
        let err = load("[global]\nshards = 4\n[sip]\nlisten = 0.0.0.0:20003\n").unwrap_err();
        assert_eq!(err.section.as_deref(), Some("webrtc"));
        assert_eq!(err.key.as_deref(), Some("udp"));
    }

    #[test]
    fn webrtc_udp_ports_follow_shards() {
        let (c, _) = load("[global]\nshards = 3\n").unwrap();
        assert_eq!(c.webrtc_udp_ports(), 20000..=20002);
        let err = load("[global]\nshards = 4\n[webrtc]\nudp = 0.0.0.0:65534\n").unwrap_err();
        assert_eq!((err.kind, err.line), (ErrorKind::Conflict, Some(4)));
        let (c, _) = load("[global]\nshards = 4\n[webrtc]\nudp = 127.0.0.1:0\n").unwrap();
        assert_eq!(c.webrtc_udp_ports(), 0..=0);
    }

    #[test]
    fn errors_display_with_location() {
        let err = load("[sip]\n\nlisten = nowhere\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ini:3: [sip] listen: expected ADDRESS:PORT such as 0.0.0.0:5086 or [::]:5086, got `nowhere`"
        );
        let err = load("junk\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.ini:1: expected `key = value`"),
            "{err}"
        );
    }
}
