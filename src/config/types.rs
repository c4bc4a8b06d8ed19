//! The typed configuration: [`Config`] and its sections, each key a typed field with its
//! default filled in, and what the rest of srgate asks of it (the SIP domain, standalone
//! mode, the shards' UDP ports, the exposed web listeners, the effective configuration).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::pii::Secret;

use super::{AccRule, Groups, effective};

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
    /// `[groups]`: ring groups, a number that rings several app users at once.
    pub groups: Groups,
    pub webrtc: WebRtc,
    pub media: Media,
    pub calls: CallsSection,
    pub door: Door,
    pub rest: RestHooks,
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
    /// RFC 4028: the session interval srgate asks for on its INVITEs (seconds); 0 = off.
    pub session_expires: u32,
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
    /// STUN and TURN servers for browsers (`stun:`, `stuns:`, `turn:`, `turns:` URLs),
    /// handed out in `login_ok`.
    pub ice_servers: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`): TURN credentials are made from
    /// it per login, valid `turn_ttl` seconds. Needed when a `turn:` URL is given.
    pub turn_secret: Secret,
    pub turn_ttl: u64,
    /// ICE-TCP (RFC 6544): each shard's media port also listens on TCP, offered to
    /// browsers as a passive candidate (for networks that drop UDP).
    pub ice_tcp: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub rtp_ports: RangeInclusive<u16>,
    /// In order of preference.
    pub codecs: Vec<Codec>,
    pub opus_complexity: u8,
    pub rtp_timeout: Duration,
    pub sip_srtp: SipSrtp,
}

/// `[media] sip_srtp`: SRTP keyed by SDES (RFC 4568) toward SIP phones and PBXs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SipSrtp {
    /// Plain RTP only: an `RTP/SAVP` offer is refused (488), never answered in the clear.
    Off,
    /// An `RTP/SAVP` offer is answered with SRTP, a plain one with RTP; srgate offers
    /// plain RTP.
    #[default]
    Optional,
    /// SRTP only: srgate offers `RTP/SAVP`, a plain offer is refused (488).
    Mandatory,
}

impl fmt::Display for SipSrtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SipSrtp::Off => "off",
            SipSrtp::Optional => "optional",
            SipSrtp::Mandatory => "mandatory",
        })
    }
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
    /// The CDR file is rotated when it reaches this many MB.
    pub cdr_max_file_size_mb: u64,
    /// Calls in progress at once on all shards; more are refused (SIP 503, `OVERLOADED`).
    pub max_calls: u32,
}

/// `[door]`: opening the door from a call the app answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Door {
    /// The DTMF sequence the answering app user keys to open the door (`#`, `*1`); empty:
    /// off.
    pub open_dtmf: String,
    /// Also send the sequence's digits to the caller (the door station) as SIP INFO.
    pub open_info: bool,
    /// POSTed to when the sequence is keyed (the relay of a door controller).
    pub open_hook: Option<HookUrl>,
}

/// An `http://IP:PORT/PATH` URL: no host names (no DNS lookups on the call path), no
/// TLS: the door controller's relay sits on the local network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl {
    pub addr: SocketAddr,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HookUrl {
    /// `http://IP:PORT/PATH`; empty: none. Host names are refused (nothing is looked up
    /// while calls run).
    pub fn parse(s: &str) -> Result<Option<HookUrl>, String> {
        super::values::hook_url(s)
    }
}

/// `[rest]`: the REST calls' defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestHooks {
    /// POSTed to on each state change of a REST call without its own `hookUrl`.
    pub hook_url: Option<HookUrl>,
}

impl fmt::Display for HookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.addr, self.path)
    }
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
    /// The certificate authorities trusted for `sip_svr` over TLS (PEM); `None`: the
    /// system's bundle.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    /// `None`: no API listener.
    pub listen: Option<SocketAddr>,
    /// The bearer token the REST calls' requests must carry (`Authorization: Bearer …`);
    /// empty: none (then the API must listen on loopback).
    pub token: Secret,
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

impl Config {
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

    /// [`Config::effective`] with the secrets in clear: reads back to an equal
    /// configuration. For tests and the fuzzer; never log it.
    pub fn effective_unmasked(&self) -> String {
        effective::write(self, false)
    }
}
