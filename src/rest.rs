//! The REST control API of "SIP as RTMP" calls (docs/rest-api.md), sans-IO: what a
//! request's method, path and JSON body ask for, the bearer token check, and the JSON of a
//! call's state. The paths and field names are those of Flashphoner WCS, so its clients work
//! unchanged; `io::api` reads the HTTP request and the core carries it out.
//!
//! - [`parse`]: `POST /rest-api/call/{startup,terminate,find,find_all,send_dtmf}` into a
//!   [`RestRequest`], every field checked, or a [`RestError`] naming the field.
//! - [`authorized`]: `Authorization: Bearer TOKEN` against `[api] token`.
//! - [`CallInfo`]: a call's state as `find` and `find_all` give it.
//!
//! WCS clients send booleans and numbers as strings (`"true"`, `"5060"`): both are taken.
//! Absent, `null` and `""` are the same for optional fields (WCS's samples send every field,
//! empty when unused). Unknown fields are ignored. Passwords and stream keys are secrets:
//! the `Debug` of a request shows neither.

use core::fmt;

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::pii::{Pii, Secret};
use crate::rtmp::{RtmpUrl, UrlError};

/// The largest request body accepted (bytes).
pub const MAX_BODY: usize = 16 * 1024;
/// `callId`: characters.
pub const MAX_CALL_ID: usize = 128;
/// `callee` and `sipLogin`: characters.
pub const MAX_USER: usize = 64;
/// `dtmf`: digits per request.
pub const MAX_DTMF: usize = 32;
/// `hookUrl`, `sipOutboundProxy`, `sipDomain`, `sipAuthenticationName`, `sipPassword`:
/// characters.
const MAX_TEXT: usize = 1024;

const PREFIX: &str = "/rest-api/call/";
const NAMES: [&str; 5] = ["startup", "terminate", "find", "find_all", "send_dtmf"];

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestRequest {
    /// Call `callee` and publish the call's audio (boxed: it is much larger than the rest).
    Startup(Box<Startup>),
    Terminate {
        call_id: String,
    },
    Find {
        call_id: String,
    },
    FindAll,
    /// `dtmf`: 1 to [`MAX_DTMF`] of `0-9 * # A-D`, upper case.
    SendDtmf {
        call_id: String,
        dtmf: String,
    },
}

/// `POST /rest-api/call/startup`.
#[derive(Clone, PartialEq, Eq)]
pub struct Startup {
    /// The client's name for the call (1 to [`MAX_CALL_ID`] of `A-Z a-z 0-9 . _ : @ -`).
    pub call_id: String,
    /// The SIP user part to call (no `@`, `:`, `<`, `>`, blanks).
    pub callee: String,
    /// Where to publish, the stream name (`rtmpStream`, or WCS's `toStream`) included.
    pub rtmp_url: RtmpUrl,
    /// `hasAudio` (default true).
    pub has_audio: bool,
    /// `hasVideo` (default false): accepted, the call is audio only.
    pub has_video: bool,
    /// The per-call SIP account, when `sipLogin`, `sipDomain` or `sipOutboundProxy` is given.
    pub sip: Option<SipAccount>,
    /// `hookUrl`: `http://IP:PORT/PATH`, POSTed to on each state change of the call.
    pub hook_url: Option<crate::config::HookUrl>,
}

/// The stream name is a key: it is shown as `***`, the callee as personal data ([`Pii`]).
impl fmt::Debug for Startup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Startup")
            .field("call_id", &self.call_id)
            .field("callee", &Pii(&self.callee))
            .field("rtmp_url", &self.rtmp_url.tc_url())
            .field("rtmp_stream", &"***")
            .field("has_audio", &self.has_audio)
            .field("has_video", &self.has_video)
            .field("sip", &self.sip)
            .field("hook_url", &self.hook_url)
            .finish()
    }
}

/// A per-call SIP account (`sipLogin`, `sipAuthenticationName`, `sipPassword`, `sipDomain`,
/// `sipOutboundProxy`, `sipPort`, `sipRegisterRequired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipAccount {
    pub login: String,
    /// The digest user name; the login when not given.
    pub auth_name: String,
    /// Empty when not given.
    pub password: Secret,
    pub domain: String,
    pub outbound_proxy: Option<String>,
    /// Default 5060.
    pub port: u16,
    /// Default false.
    pub register_required: bool,
    /// Where the outbound proxy (or the domain) resolved to, when it is a name: filled in
    /// by the I/O layer before the request reaches the core.
    pub resolved: Option<std::net::SocketAddr>,
}

impl SipAccount {
    /// Where the account's requests go: `sipOutboundProxy` (its own `:PORT`, else
    /// `sipPort`), else `sipDomain:sipPort`. The host without brackets.
    pub fn proxy_host_port(&self) -> (&str, u16) {
        let value = self.outbound_proxy.as_deref().unwrap_or(&self.domain);
        let (host, port) = split_host_port(value).unwrap_or((value, None));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (host, port.unwrap_or(self.port))
    }

    /// The IP address of [`SipAccount::proxy_host_port`], when it is one (else a name to
    /// resolve) or when the I/O layer resolved it.
    pub fn proxy_addr(&self) -> Option<std::net::SocketAddr> {
        let (host, port) = self.proxy_host_port();
        self.resolved.or_else(|| {
            let ip = host.parse::<std::net::IpAddr>().ok()?;
            Some(std::net::SocketAddr::new(ip, port))
        })
    }
}

/// A refused request: its HTTP status, `error` code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl RestError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> RestError {
        let message = message.into();
        RestError {
            status,
            code,
            message,
        }
    }

    /// The answer's body: `{"error":CODE,"message":"…"}`.
    pub fn json(&self) -> String {
        json!({"error": self.code, "message": self.message}).to_string()
    }

    /// 503: srgate carries `[calls] max_calls` calls already.
    pub fn overloaded() -> RestError {
        RestError::new(
            503,
            "OVERLOADED",
            "srgate is at its call limit ([calls] max_calls)",
        )
    }

    /// 503: REST calls are not served here (a worker shard).
    pub fn unavailable() -> RestError {
        RestError::new(503, "UNAVAILABLE", "REST calls are not served here")
    }
}

/// 401: `[api] token` is set and the request does not carry it.
pub fn unauthorized() -> RestError {
    let message = "missing or wrong Authorization: Bearer token";
    RestError::new(401, "UNAUTHORIZED", message)
}

fn bad_field(field: &str, why: impl fmt::Display) -> RestError {
    RestError::new(400, "BAD_FIELD", format!("{field}: {why}"))
}

/// Whether a request may use the API: always when no token is configured (`None`),
/// otherwise only with `Authorization: Bearer TOKEN` (the scheme in any case), the token
/// compared in constant time. An empty configured token matches nothing.
pub fn authorized(expected: Option<&str>, authorization_header: Option<&[u8]>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(header) = authorization_header.map(<[u8]>::trim_ascii) else {
        return false;
    };
    let Some(space) = header.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, token) = header.split_at(space);
    let token = token.trim_ascii_start();
    scheme.eq_ignore_ascii_case(b"bearer")
        && !expected.is_empty()
        && bool::from(token.ct_eq(expected.as_bytes()))
}

/// Reads a request: `method` and `path` (without the query) of the HTTP request, and its
/// body.
pub fn parse(method: &str, path: &str, body: &[u8]) -> Result<RestRequest, RestError> {
    let name = path.strip_prefix(PREFIX).unwrap_or("");
    if !NAMES.contains(&name) {
        let message = format!(
            "unknown path; the requests are {PREFIX}{{{}}}",
            NAMES.join(",")
        );
        return Err(RestError::new(404, "NOT_FOUND", message));
    }
    if method != "POST" {
        let message = "REST requests are POST";
        return Err(RestError::new(405, "METHOD_NOT_ALLOWED", message));
    }
    if body.len() > MAX_BODY {
        let message = format!("the body is over {MAX_BODY} bytes");
        return Err(RestError::new(413, "TOO_LARGE", message));
    }
    if name == "find_all" && body.trim_ascii().is_empty() {
        return Ok(RestRequest::FindAll);
    }
    let bad_json = |message: String| RestError::new(400, "BAD_JSON", message);
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(bad_json("the body is JSON but not an object".into())),
        Err(_) if body.trim_ascii().is_empty() => {
            return Err(bad_json("the body is empty; expected a JSON object".into()));
        }
        Err(e) => return Err(bad_json(format!("the body is not JSON: {e}"))),
    };
    let call_id = || call_id(&fields);
    Ok(match name {
        "startup" => RestRequest::Startup(Box::new(startup(&fields)?)),
        "terminate" => RestRequest::Terminate {
            call_id: call_id()?,
        },
        "find" => RestRequest::Find {
            call_id: call_id()?,
        },
        "send_dtmf" => {
            let call_id = call_id()?;
            let digits = required(&fields, "dtmf")?.to_ascii_uppercase();
            let allowed = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D');
            let what = "DTMF digits are 0-9 * # A-D";
            let dtmf = checked("dtmf", digits, MAX_DTMF, allowed, what)?;
            RestRequest::SendDtmf { call_id, dtmf }
        }
        _ => RestRequest::FindAll,
    })
}

type Fields = Map<String, Value>;

/// A text field as given (a number as its digits); `None` when absent or `null`.
fn text(fields: &Fields, name: &str) -> Result<Option<String>, RestError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad_field(name, "not a string")),
    }
}

/// A text field that must be there and not be empty.
fn required(fields: &Fields, name: &str) -> Result<String, RestError> {
    match text(fields, name)? {
        None => Err(bad_field(name, "missing")),
        Some(s) if s.is_empty() => Err(bad_field(name, "empty")),
        Some(s) => Ok(s),
    }
}

/// An optional text field: absent, `null` and `""` are `None`.
fn optional(fields: &Fields, name: &str) -> Result<Option<String>, RestError> {
    Ok(text(fields, name)?.filter(|s| !s.is_empty()))
}

/// An optional field of free text: no control characters, no blanks unless `blanks`, at
/// most [`MAX_TEXT`] characters.
fn plain(fields: &Fields, name: &str, blanks: bool) -> Result<Option<String>, RestError> {
    let allowed = |c: char| !c.is_control() && (blanks || !c.is_whitespace());
    let what = "no control characters or blanks";
    let value = optional(fields, name)?;
    value
        .map(|v| checked(name, v, MAX_TEXT, allowed, what))
        .transpose()
}

/// `value` when it has at most `max` characters, each `allowed`; else an error saying
/// `what` is.
fn checked(
    name: &str,
    value: String,
    max: usize,
    allowed: impl Fn(char) -> bool,
    what: &str,
) -> Result<String, RestError> {
    if value.chars().count() > max {
        return Err(bad_field(name, format_args!("over {max} characters")));
    }
    match value.chars().find(|&c| !allowed(c)) {
        Some(c) => Err(bad_field(
            name,
            format_args!("{c:?} is not allowed ({what})"),
        )),
        None => Ok(value),
    }
}

/// `true`, `false`, `"true"`, `"false"`, `"1"`, `"0"` (any case), 1 or 0; `default` when
/// absent, `null` or `""`.
fn boolean(fields: &Fields, name: &str, default: bool) -> Result<bool, RestError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 1) => Ok(n.as_u64() == Some(1)),
        Some(Value::String(s)) if s.is_empty() => Ok(default),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(false),
        Some(_) => Err(bad_field(name, "not a boolean (true or false)")),
    }
}

/// A port, 1..=65535, as a number or a string of digits; `default` when absent, `null` or
/// `""`.
fn port(fields: &Fields, name: &str, default: u16) -> Result<u16, RestError> {
    let port = match fields.get(name) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::String(s)) if s.is_empty() => return Ok(default),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Some(_) => None,
    };
    port.filter(|&p| p != 0)
        .ok_or_else(|| bad_field(name, "not a port"))
}

fn call_id(fields: &Fields) -> Result<String, RestError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
    let what = "letters, digits and . _ : @ - are";
    let id = required(fields, "callId")?;
    checked("callId", id, MAX_CALL_ID, allowed, what)
}

/// A SIP user part: letters, digits and `- _ . ! ~ * ' ( ) & = + $ , ; ? /`.
fn sip_user(name: &str, user: String) -> Result<String, RestError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c);
    let what = "a SIP user part has letters, digits and -_.!~*'()&=+$,;?/";
    checked(name, user, MAX_USER, allowed, what)
}

/// A host name or address for a SIP URI: letters, digits, `-` and `.`, or an IPv6
/// address in brackets; with `port`, `HOST:PORT` too.
fn sip_host(name: &str, value: String, port: bool) -> Result<String, RestError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-.[]:".contains(c);
    let what = if port {
        "a host name or IP address (IPv6 in brackets), with :PORT or not"
    } else {
        "a host name or IP address (IPv6 in brackets)"
    };
    let value = checked(name, value, MAX_TEXT, allowed, what)?;
    match split_host_port(&value) {
        Some((host, p)) if (p.is_none() || port) && !host.is_empty() => Ok(value),
        _ => Err(bad_field(name, what)),
    }
}

/// `HOST` or `HOST:PORT` (`[V6]` or `[V6]:PORT`): the host and the port; `None` when the
/// brackets or the port do not fit.
fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if v6.contains(['[', ']']) {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&value[..v6.len() + 2], port)
    } else {
        if value.contains(['[', ']']) {
            return None;
        }
        match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0)?),
        None => None,
    };
    Some((host, port))
}

fn startup(fields: &Fields) -> Result<Startup, RestError> {
    let call_id = call_id(fields)?;
    let callee = sip_user("callee", required(fields, "callee")?)?;
    let url = required(fields, "rtmpUrl")?;
    let stream = match optional(fields, "rtmpStream")? {
        Some(stream) => stream,
        None => optional(fields, "toStream")?.ok_or_else(|| bad_field("rtmpStream", "missing"))?,
    };
    let rtmp_url = RtmpUrl::parse(&url, &stream).map_err(|e| {
        // a character found in the stream name alone is the stream's fault
        let field = match e {
            UrlError::EmptyStream => "rtmpStream",
            UrlError::BadCharacter(c) if stream.contains(c) && !url.contains(c) => "rtmpStream",
            _ => "rtmpUrl",
        };
        bad_field(field, e)
    })?;
    let hook_url = match plain(fields, "hookUrl", false)? {
        Some(url) => crate::config::HookUrl::parse(&url).map_err(|e| bad_field("hookUrl", e))?,
        None => None,
    };

    let login = optional(fields, "sipLogin")?;
    let domain = plain(fields, "sipDomain", false)?
        .map(|d| sip_host("sipDomain", d, false))
        .transpose()?;
    let outbound_proxy = plain(fields, "sipOutboundProxy", false)?
        .map(|p| sip_host("sipOutboundProxy", p, true))
        .transpose()?;
    let auth_name = plain(fields, "sipAuthenticationName", false)?;
    let password = plain(fields, "sipPassword", true)?;
    let sip_port = port(fields, "sipPort", 5060)?;
    let register_required = boolean(fields, "sipRegisterRequired", false)?;
    let sip = if login.is_some() || domain.is_some() || outbound_proxy.is_some() {
        let login = login.ok_or_else(|| bad_field("sipLogin", "missing"))?;
        let login = sip_user("sipLogin", login)?;
        Some(SipAccount {
            auth_name: auth_name.unwrap_or_else(|| login.clone()),
            login,
            password: Secret::from(password.unwrap_or_default()),
            domain: domain.ok_or_else(|| bad_field("sipDomain", "missing"))?,
            outbound_proxy,
            port: sip_port,
            register_required,
            resolved: None,
        })
    } else {
        None
    };
    Ok(Startup {
        call_id,
        callee,
        rtmp_url,
        has_audio: boolean(fields, "hasAudio", true)?,
        has_video: boolean(fields, "hasVideo", false)?,
        sip,
        hook_url,
    })
}

/// A call's SIP state, as WCS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// The INVITE is out.
    New,
    Ringing,
    Established,
    /// Ended after the answer.
    Finished,
    /// Never answered.
    Failed,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::New => "NEW",
            CallState::Ringing => "RINGING",
            CallState::Established => "ESTABLISHED",
            CallState::Finished => "FINISHED",
            CallState::Failed => "FAILED",
        }
    }
}

/// A call's RTMP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtmpState {
    Connecting,
    Publishing,
    /// Failed; started again after the back-off.
    Retrying,
    /// Ended with the call, the stream published to the end (or never begun).
    Closed,
    /// Ended with the call while the stream was down (`rtmpError` says why).
    Failed,
}

impl RtmpState {
    pub fn as_str(self) -> &'static str {
        match self {
            RtmpState::Connecting => "CONNECTING",
            RtmpState::Publishing => "PUBLISHING",
            RtmpState::Retrying => "RETRYING",
            RtmpState::Closed => "CLOSED",
            RtmpState::Failed => "FAILED",
        }
    }
}

/// A call's state, as `find` and `find_all` answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub call_id: String,
    pub callee: String,
    pub state: CallState,
    /// The SIP status that decided the state (`sipStatus`).
    pub sip_code: Option<u16>,
    /// Why it ended or failed (`sipReason`).
    pub reason: Option<String>,
    /// The URL WITHOUT the stream name ([`RtmpUrl::tc_url`]): stream keys are secrets.
    pub rtmp_url: String,
    pub rtmp_state: RtmpState,
    /// The last session's failure.
    pub rtmp_error: Option<String>,
    pub rtmp_reconnects: u32,
    /// RTP packets from the phone.
    pub packets_in: u64,
    /// AAC frames published.
    pub aac_frames: u64,
    /// Since the answer.
    pub duration_ms: u64,
}

impl CallInfo {
    pub fn json(&self) -> Value {
        json!({
            "callId": self.call_id,
            "callee": self.callee,
            "state": self.state.as_str(),
            "sipStatus": self.sip_code,
            "sipReason": self.reason,
            "rtmpUrl": self.rtmp_url,
            "rtmpState": self.rtmp_state.as_str(),
            "rtmpError": self.rtmp_error,
            "rtmpReconnects": self.rtmp_reconnects,
            "packetsIn": self.packets_in,
            "aacFrames": self.aac_frames,
            "durationMs": self.duration_ms,
        })
    }
}

/// `find_all`'s answer: a JSON array of the calls.
pub fn list_json(calls: &[CallInfo]) -> String {
    Value::Array(calls.iter().map(CallInfo::json).collect()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str, body: &str) -> Result<RestRequest, RestError> {
        parse("POST", &format!("/rest-api/call/{path}"), body.as_bytes())
    }

    /// The minimal startup with `extra` fields set (`null` removes one).
    fn startup_with(extra: Value) -> Result<Startup, RestError> {
        let mut body = json!({"callId": "door-1", "callee": "1007",
                              "rtmpUrl": "rtmp://127.0.0.1/live/", "rtmpStream": "door1"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        match post("startup", &body.to_string())? {
            RestRequest::Startup(s) => Ok(*s),
            other => panic!("not a startup: {other:?}"),
        }
    }

    fn field_error(extra: Value) -> String {
        let e = startup_with(extra).unwrap_err();
        assert_eq!((e.status, e.code), (400, "BAD_FIELD"), "{e:?}");
        e.message
    }

    #[test]
    fn wcs_style_startup() {
        let s = startup_with(json!({
            "callId": "c1:x@y", "rtmpUrl": "rtmp://10.0.0.5:1936/live/", "rtmpStream": null,
            "toStream": "rtmp_1007", "hasAudio": "TRUE", "hasVideo": "false",
            "sipLogin": "10001", "sipPassword": "hunter2 secret", "sipDomain": "pbx.local",
            "sipOutboundProxy": "", "sipPort": "5070", "sipRegisterRequired": "1",
            "appKey": "callApp", "somethingNew": [1, 2]
        }))
        .unwrap();
        assert_eq!((s.call_id.as_str(), s.callee.as_str()), ("c1:x@y", "1007"));
        let url = &s.rtmp_url;
        assert_eq!(
            (url.port, url.app.as_str(), url.stream.as_str()),
            (1936, "live", "rtmp_1007")
        );
        assert!(s.has_audio && !s.has_video);
        let sip = s.sip.unwrap();
        assert_eq!((sip.login, sip.auth_name), ("10001".into(), "10001".into()));
        assert_eq!(sip.password.expose(), "hunter2 secret");
        assert_eq!(
            (sip.domain.as_str(), sip.outbound_proxy),
            ("pbx.local", None)
        );
        assert_eq!((sip.port, sip.register_required), (5070, true));

        // JSON values; rtmpStream wins over toStream
        let s = startup_with(json!({"toStream": "other", "hasVideo": true, "hasAudio": 0,
                                    "sipPort": 5080, "hookUrl": "http://10.0.0.2:8000/h"}))
        .unwrap();
        assert_eq!(s.rtmp_url.stream, "door1");
        assert!(!s.has_audio && s.has_video && s.sip.is_none());
        assert_eq!(
            s.hook_url.map(|h| h.to_string()).as_deref(),
            Some("http://10.0.0.2:8000/h")
        );
        assert!(startup_with(json!({"callee": "*97;phone-context=x/(1)"})).is_ok());
    }

    #[test]
    fn every_required_field_missing_is_named() {
        for field in ["callId", "callee", "rtmpUrl", "rtmpStream"] {
            let message = field_error(json!({ field: null }));
            assert_eq!(message, format!("{field}: missing"));
        }
        for (path, body) in [("terminate", "{}"), ("find", r#"{"callId":null}"#)] {
            assert_eq!(post(path, body).unwrap_err().message, "callId: missing");
        }
        let e = post("send_dtmf", r#"{"dtmf":"1"}"#).unwrap_err();
        assert_eq!((e.code, e.message), ("BAD_FIELD", "callId: missing".into()));
        let e = post("send_dtmf", r#"{"callId":"a"}"#).unwrap_err();
        assert_eq!(e.message, "dtmf: missing");
    }

    #[test]
    fn bad_values_name_their_field() {
        let scheme = format!("rtmpUrl: {}", UrlError::Scheme);
        assert_eq!(field_error(json!({"rtmpUrl": "http://h/live/"})), scheme);
        let callee = json!([
            "1007@evil",
            "a b",
            "",
            "<1>",
            "sip:1",
            "1\u{7}",
            "9".repeat(65)
        ]);
        let cases = [
            ("callee", callee),
            ("callId", json!(["a b", "x".repeat(129), {"a": 1}])),
            ("sipPort", json!(["0", 70000, "50x", -1, true])),
            ("hookUrl", json!(["https://h/x", "http:///x", "http://"])),
            ("rtmpUrl", json!(["rtmp://h/", "rtmp://h:0/live/"])),
            ("rtmpStream", json!(["a b"])),
            ("hasAudio", json!(["yes", 2])),
        ];
        for (field, values) in cases {
            for value in values.as_array().unwrap() {
                let message = field_error(json!({ field: value }));
                assert!(message.starts_with(field), "{value}: {message}");
            }
        }
        assert_eq!(field_error(json!({"sipPort": "0"})), "sipPort: not a port");
        assert_eq!(field_error(json!({"callee": ""})), "callee: empty");
    }

    #[test]
    fn a_per_call_account_needs_login_and_domain() {
        let cases = [
            (json!({"sipLogin": "100"}), "sipDomain: missing"),
            (json!({"sipDomain": "pbx"}), "sipLogin: missing"),
            (
                json!({"sipOutboundProxy": "10.0.0.1", "sipDomain": "pbx"}),
                "sipLogin: missing",
            ),
        ];
        for (extra, message) in cases {
            assert_eq!(field_error(extra), message);
        }
        let message = field_error(json!({"sipLogin": "a@b", "sipDomain": "pbx"}));
        assert!(message.starts_with("sipLogin: "), "{message}");
        let s = startup_with(json!({"sipLogin": "", "sipDomain": "", "sipPassword": "x"}));
        assert_eq!(s.unwrap().sip, None);
        let s = startup_with(json!({"sipLogin": "100", "sipDomain": "pbx",
            "sipAuthenticationName": "auth100", "sipOutboundProxy": "10.0.0.1:5060"}));
        let sip = s.unwrap().sip.unwrap();
        assert_eq!(sip.auth_name, "auth100");
        assert_eq!(sip.outbound_proxy.as_deref(), Some("10.0.0.1:5060"));
        assert_eq!((sip.port, sip.register_required), (5060, false));
        assert!(sip.password.is_empty());
        assert_eq!(sip.proxy_addr(), Some("10.0.0.1:5060".parse().unwrap()));
        // where the requests go: the proxy's own port, else sipPort; the domain without a
        // proxy; a name is left to resolve
        for (proxy, domain, port, want) in [
            (Some("[::1]:5070"), "pbx", "5060", Some("[::1]:5070")),
            (Some("[::1]"), "pbx", "5080", Some("[::1]:5080")),
            (None, "10.1.1.1", "5090", Some("10.1.1.1:5090")),
            (Some("sip.example.com"), "pbx", "5060", None),
        ] {
            let mut fields = json!({"sipLogin": "100", "sipDomain": domain, "sipPort": port});
            if let Some(proxy) = proxy {
                fields["sipOutboundProxy"] = json!(proxy);
            }
            let sip = startup_with(fields).unwrap().sip.unwrap();
            let want = want.map(|w| w.parse().unwrap());
            assert_eq!(sip.proxy_addr(), want, "{proxy:?} {domain}");
        }
        let sip = startup_with(json!({"sipLogin": "1", "sipDomain": "pbx",
            "sipOutboundProxy": "sip.example.com:5071"}))
        .unwrap()
        .sip
        .unwrap();
        assert_eq!(sip.proxy_host_port(), ("sip.example.com", 5071));
        // hosts that would not fit a SIP URI (or a header) are refused, naming the field
        for (field, value) in [
            ("sipDomain", "pbx>;x"),
            ("sipDomain", "pbx:5060"),
            ("sipDomain", "a b"),
            ("sipOutboundProxy", "::1"),
            ("sipOutboundProxy", "[::1"),
            ("sipOutboundProxy", "h:0"),
            ("sipOutboundProxy", "h:x"),
            ("sipOutboundProxy", ":5060"),
        ] {
            let mut fields = json!({"sipLogin": "100", "sipDomain": "pbx"});
            fields[field] = json!(value);
            let message = field_error(fields);
            assert!(message.starts_with(field), "{value}: {message}");
        }
    }

    #[test]
    fn debug_shows_no_password_or_stream_key() {
        let s = startup_with(json!({"rtmpStream": "live_SECRETKEY42", "sipLogin": "100",
                                    "sipDomain": "pbx", "sipPassword": "hunter2"}));
        let request = RestRequest::Startup(Box::new(s.unwrap()));
        let debug = format!("{request:?} {request:#?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("SECRETKEY"),
            "{debug}"
        );
        assert!(debug.contains("rtmp://127.0.0.1:1935/live"), "{debug}");
    }

    #[test]
    fn dtmf_digits() {
        let request = post("send_dtmf", r#"{"callId":"a","dtmf":"12*#abcD"}"#).unwrap();
        let (call_id, dtmf) = ("a".to_string(), "12*#ABCD".to_string());
        assert_eq!(request, RestRequest::SendDtmf { call_id, dtmf });
        let request = post("send_dtmf", r#"{"callId":"a","dtmf":123}"#).unwrap();
        assert!(matches!(request, RestRequest::SendDtmf { dtmf, .. } if dtmf == "123"));
        for dtmf in ["", "12E", "1 2", &"1".repeat(33)] {
            let body = json!({"callId": "a", "dtmf": dtmf}).to_string();
            let e = post("send_dtmf", &body).unwrap_err();
            assert!(e.message.starts_with("dtmf: "), "{body}: {e:?}");
        }
    }

    #[test]
    fn requests_paths_methods_bodies() {
        let id = || "door-1".to_string();
        let call = r#"{"callId":"door-1"}"#;
        let terminate = RestRequest::Terminate { call_id: id() };
        assert_eq!(post("terminate", call), Ok(terminate));
        assert_eq!(post("find", call), Ok(RestRequest::Find { call_id: id() }));
        for body in ["", " \r\n", "{}", call] {
            assert_eq!(post("find_all", body), Ok(RestRequest::FindAll), "{body:?}");
        }
        for path in ["dial", "", "find/", "../health"] {
            let e = post(path, "{}").unwrap_err();
            assert_eq!((e.status, e.code), (404, "NOT_FOUND"), "{path}");
        }
        let e = parse("GET", "/rest-api/call/find_all", b"").unwrap_err();
        assert_eq!((e.status, e.code), (405, "METHOD_NOT_ALLOWED"));
        for body in ["", "[1]", "\"x\"", "null", "{", "{\"callId\":\"a\"} x"] {
            let e = post("find", body).unwrap_err();
            assert_eq!((e.status, e.code), (400, "BAD_JSON"), "{body:?}");
        }
        let big = format!(r#"{{"callId":"a","pad":"{}"}}"#, "x".repeat(MAX_BODY));
        let e = post("find", &big).unwrap_err();
        assert_eq!((e.status, e.code), (413, "TOO_LARGE"));
    }

    #[test]
    fn errors_and_tokens() {
        let v: Value = serde_json::from_str(&bad_field("callee", "\"q\"\n").json()).unwrap();
        assert_eq!(
            v,
            json!({"error": "BAD_FIELD", "message": "callee: \"q\"\n"})
        );
        assert_eq!(
            (unauthorized().status, unauthorized().code),
            (401, "UNAUTHORIZED")
        );
        assert_eq!(RestError::unavailable().status, 503);

        assert!(authorized(None, None));
        assert!(authorized(None, Some(b"Bearer whatever")));
        let ok: [&[u8]; 3] = [b"Bearer s3cret", b"bearer s3cret", b"BEARER  s3cret "];
        for header in ok {
            assert!(authorized(Some("s3cret"), Some(header)), "{header:?}");
        }
        let refused: [&[u8]; 5] = [
            b"Bearer s3cre",
            b"Bearer s3cret2",
            b"Basic s3cret",
            b"s3cret",
            b"Bearer",
        ];
        for header in refused {
            assert!(!authorized(Some("s3cret"), Some(header)), "{header:?}");
        }
        assert!(!authorized(Some("s3cret"), None));
        assert!(!authorized(Some(""), Some(b"Bearer ")));
    }

    #[test]
    fn call_info_json() {
        let url = RtmpUrl::parse("rtmp://127.0.0.1/live/", "door1_KEY").unwrap();
        let info = CallInfo {
            call_id: "door-1".into(),
            callee: "1007".into(),
            state: CallState::Established,
            sip_code: Some(200),
            reason: None,
            rtmp_url: url.tc_url(),
            rtmp_state: RtmpState::Publishing,
            rtmp_error: None,
            rtmp_reconnects: 1,
            packets_in: 1520,
            aac_frames: 1423,
            duration_ms: 30412,
        };
        let expected = json!({
            "callId": "door-1", "callee": "1007", "state": "ESTABLISHED", "sipStatus": 200,
            "sipReason": null, "rtmpUrl": "rtmp://127.0.0.1:1935/live",
            "rtmpState": "PUBLISHING", "rtmpError": null, "rtmpReconnects": 1,
            "packetsIn": 1520, "aacFrames": 1423, "durationMs": 30412
        });
        assert_eq!(info.json(), expected);
        let failed = CallInfo {
            state: CallState::Failed,
            sip_code: None,
            rtmp_state: RtmpState::Retrying,
            ..info.clone()
        };
        let list = list_json(&[info, failed]);
        assert!(!list.contains("door1_KEY"), "{list}");
        let v: Value = serde_json::from_str(&list).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(2));
        assert_eq!(
            (&v[1]["state"], &v[1]["sipStatus"]),
            (&json!("FAILED"), &Value::Null)
        );
        assert_eq!(v[1]["rtmpState"], "RETRYING");
        assert_eq!(list_json(&[]), "[]");
        let names =
            [CallState::New, CallState::Ringing, CallState::Finished].map(CallState::as_str);
        assert_eq!(names, ["NEW", "RINGING", "FINISHED"]);
        let names =
            [RtmpState::Connecting, RtmpState::Closed, RtmpState::Failed].map(RtmpState::as_str);
        assert_eq!(names, ["CONNECTING", "CLOSED", "FAILED"]);
    }
}
