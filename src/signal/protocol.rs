//! The browser protocol's messages (docs/protocol.md): JSON text frames, client → gateway parsed
//! and validated here (every limit, every field), gateway → client built here. A request
//! that fails validation gets an `error` and changes nothing.

use serde_json::{Map, Value, json};

/// A whole frame (SDP included) may be at most this long.
pub const MAX_FRAME: usize = 65_536;
/// `content` / `response`: bytes of UTF-8.
pub const MAX_CONTENT: usize = 8_192;
/// `id`, `channelId`, `user`, `callee`: bytes.
pub const MAX_ID: usize = 64;
/// DTMF digits per message.
pub const MAX_DIGITS: usize = 32;

/// The error codes of `error` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadJson,
    BadRequest,
    TooLarge,
    UnknownType,
    NotLoggedIn,
    AuthFailed,
    Kicked,
    NoSuchCall,
    /// srgate is at `[calls] max_calls`, or the shard for the call cannot keep up.
    Overloaded,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "BAD_JSON",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::NotLoggedIn => "NOT_LOGGEDIN",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::Kicked => "KICKED",
            ErrorCode::NoSuchCall => "NO_SUCH_CALL",
            ErrorCode::Overloaded => "OVERLOADED",
        }
    }
}

/// A refused request: the code, a human message, and the request's `id` when it had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub id: Option<String>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>, id: Option<&str>) -> Self {
        Refusal {
            code,
            message: message.into(),
            id: id.map(str::to_string),
        }
    }

    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("type".into(), "error".into());
        m.insert("code".into(), self.code.as_str().into());
        m.insert("message".into(), self.message.clone().into());
        if let Some(id) = &self.id {
            m.insert("id".into(), id.clone().into());
        }
        Value::Object(m).to_string()
    }
}

/// A validated client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Login {
        user: String,
        token: String,
    },
    Invite {
        id: String,
        callee: String,
        sdp: String,
        content: Option<String>,
        channel_id: Option<String>,
    },
    Cancel {
        id: String,
    },
    Accept {
        id: String,
        sdp: String,
        response: Option<String>,
    },
    Refuse {
        id: String,
        response: Option<String>,
    },
    /// See the caller before answering: the browser's offer for an invitation, answered
    /// (`remote_state PREVIEW`) with early media from the caller while the call rings on;
    /// nothing of the browser goes to the caller until `accept`.
    Preview {
        id: String,
        sdp: String,
    },
    Hangup {
        id: String,
    },
    Dtmf {
        id: String,
        digits: String,
    },
    /// Internal (never parsed from a frame): make the browser an offer for an invitation,
    /// answered by an [`offer`] message; its `accept` then carries the browser's answer.
    /// srgate's SIP-over-WebSocket agent asks for it (its INVITEs must carry an offer).
    Offer {
        id: String,
    },
    Ping,
}

impl Request {
    /// The call id the request names, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Request::Invite { id, .. }
            | Request::Cancel { id }
            | Request::Accept { id, .. }
            | Request::Refuse { id, .. }
            | Request::Preview { id, .. }
            | Request::Hangup { id }
            | Request::Dtmf { id, .. }
            | Request::Offer { id } => Some(id),
            Request::Login { .. } | Request::Ping => None,
        }
    }
}

/// Whether `user` is 1–64 of `A-Za-z0-9_.+@-`.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_ID
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+@-".contains(&b))
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    id: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn refuse(&self, message: String) -> Refusal {
        Refusal::new(ErrorCode::BadRequest, message, self.id)
    }

    fn string(&self, name: &str, required: bool, max: usize) -> Result<Option<String>, Refusal> {
        match self.obj.get(name) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(self.refuse(format!("missing field '{name}'"))),
            Some(Value::String(s)) if s.len() > max => {
                Err(self.refuse(format!("'{name}' is longer than {max} bytes")))
            }
            Some(Value::String(s)) if required && s.is_empty() => {
                Err(self.refuse(format!("'{name}' is empty")))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.refuse(format!("'{name}' must be a string"))),
        }
    }

    fn required(&self, name: &str, max: usize) -> Result<String, Refusal> {
        Ok(self.string(name, true, max)?.unwrap_or_default())
    }
}

/// Parses and validates one text frame.
pub fn parse(text: &str) -> Result<Request, Refusal> {
    if text.len() > MAX_FRAME {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("frame larger than {MAX_FRAME} bytes"),
            None,
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Refusal::new(ErrorCode::BadJson, format!("not JSON: {e}"), None))?;
    let Value::Object(obj) = &value else {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "a message is a JSON object",
            None,
        ));
    };
    // Echo the id in errors whenever the request carried a usable one.
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID => Some(s.as_str()),
        _ => None,
    };
    let f = Fields { obj, id };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(f.refuse("'type' must be a string".into())),
        None => return Err(f.refuse("missing field 'type'".into())),
    };
    let call_id = |f: &Fields<'_>| f.required("id", MAX_ID);
    Ok(match kind {
        "login" => {
            let user = f.required("user", MAX_ID)?;
            if !valid_user(&user) {
                return Err(f.refuse("'user' must be 1-64 of A-Z a-z 0-9 _ . + @ -".into()));
            }
            Request::Login {
                user,
                token: f.string("token", false, 1024)?.unwrap_or_default(),
            }
        }
        "invite" => {
            let id = call_id(&f)?;
            let callee = f.required("callee", MAX_ID)?;
            if !valid_user(&callee) {
                return Err(f.refuse("'callee' must be 1-64 of A-Z a-z 0-9 _ . + @ -".into()));
            }
            Request::Invite {
                id,
                callee,
                sdp: f.required("sdp", MAX_FRAME)?,
                content: f.string("content", false, MAX_CONTENT)?,
                channel_id: f.string("channelId", false, MAX_ID)?,
            }
        }
        "cancel" => Request::Cancel { id: call_id(&f)? },
        "accept" => Request::Accept {
            id: call_id(&f)?,
            sdp: f.required("sdp", MAX_FRAME)?,
            response: f.string("response", false, MAX_CONTENT)?,
        },
        "preview" => Request::Preview {
            id: call_id(&f)?,
            sdp: f.required("sdp", MAX_FRAME)?,
        },
        "refuse" => Request::Refuse {
            id: call_id(&f)?,
            response: f.string("response", false, MAX_CONTENT)?,
        },
        "hangup" => Request::Hangup { id: call_id(&f)? },
        "dtmf" => {
            let id = call_id(&f)?;
            let digits = f.required("digits", MAX_DIGITS)?;
            if !digits
                .bytes()
                .all(|b| b.is_ascii_digit() || b"*#ABCD".contains(&b))
            {
                return Err(f.refuse("'digits' may hold only 0-9 * # A-D".into()));
            }
            Request::Dtmf { id, digits }
        }
        "ping" => Request::Ping,
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(Refusal::new(
                ErrorCode::UnknownType,
                format!("unknown type '{shown}'"),
                id,
            ));
        }
    })
}

/// The SIP status in events: `{"code":486,"reason":"Busy Here"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipStatus {
    pub code: u16,
    pub reason: String,
}

fn with_sip(mut v: Value, sip: Option<&SipStatus>) -> Value {
    if let (Some(sip), Value::Object(m)) = (sip, &mut v) {
        m.insert(
            "sip".into(),
            json!({"code": sip.code, "reason": sip.reason}),
        );
    }
    v
}

fn put(v: &mut Value, key: &str, value: Option<&str>) {
    if let (Some(value), Value::Object(m)) = (value, v) {
        m.insert(key.into(), value.into());
    }
}

/// `login_ok`, with `iceServers` when there are any (`ice`: a JSON array).
pub fn login_ok(user: &str, ice: Option<serde_json::Value>) -> String {
    match ice {
        Some(servers) => {
            json!({"type": "login_ok", "user": user, "iceServers": servers}).to_string()
        }
        None => json!({"type": "login_ok", "user": user}).to_string(),
    }
}

pub fn pong() -> String {
    json!({"type": "pong"}).to_string()
}

/// A call's `state` in `local_state` (the calling app's view) and `remote_state` (the
/// called app's view); docs/protocol.md says when each is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    SentToRemote,
    ReceivedByRemote,
    AcceptedByRemote,
    RefusedByRemote,
    /// `remote_state`: the called app accepted (srgate's answer follows).
    Accepted,
    /// `remote_state`: the called app previews the caller (srgate's answer follows).
    Preview,
    Canceled,
    /// Ended without an answer; the [`Failure`] says why when it is known.
    Failure,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::SentToRemote => "SENT_TO_REMOTE",
            CallState::ReceivedByRemote => "RECEIVED_BY_REMOTE",
            CallState::AcceptedByRemote => "ACCEPTED_BY_REMOTE",
            CallState::RefusedByRemote => "REFUSED_BY_REMOTE",
            CallState::Accepted => "ACCEPTED",
            CallState::Preview => "PREVIEW",
            CallState::Canceled => "CANCELED",
            CallState::Failure => "FAILURE",
        }
    }
}

/// The `error` of a `FAILURE` state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// SIP 404/480, or nobody to route to.
    PeerOffline,
    /// SIP 408.
    PeerNoResponse,
    /// No answer within `[calls] invitation_timeout`.
    InvitationExpire,
    /// The browser's ICE/DTLS did not come up.
    MediaFailed,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::PeerOffline => "PEER_OFFLINE",
            Failure::PeerNoResponse => "PEER_NO_RESPONSE",
            Failure::InvitationExpire => "INVITATION_EXPIRE",
            Failure::MediaFailed => "MEDIA_FAILED",
        }
    }
}

/// The `reason` of a `hangup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangupReason {
    /// This client asked for it.
    Local,
    /// The other side hung up.
    Remote,
    /// No media for `[media] rtp_timeout`, ICE consent lost, or SIP gave up (408).
    Timeout,
    /// Something failed on srgate's side or in the call's media.
    Error,
}

impl HangupReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupReason::Local => "LOCAL",
            HangupReason::Remote => "REMOTE",
            HangupReason::Timeout => "TIMEOUT",
            HangupReason::Error => "ERROR",
        }
    }
}

/// `local_state` of an outgoing call; optional keys: `sdp`, `response`, `error`, `sip`.
pub fn local_state(
    id: &str,
    state: CallState,
    sdp: Option<&str>,
    response: Option<&str>,
    error: Option<Failure>,
    sip: Option<&SipStatus>,
) -> String {
    let mut v = json!({"type": "local_state", "id": id, "state": state.as_str()});
    put(&mut v, "sdp", sdp);
    put(&mut v, "response", response);
    put(&mut v, "error", error.map(Failure::as_str));
    with_sip(v, sip).to_string()
}

pub fn remote_invitation(
    id: &str,
    caller: &str,
    caller_name: Option<&str>,
    content: Option<&str>,
    channel_id: Option<&str>,
    group: Option<&str>,
    video: bool,
) -> String {
    let mut v = json!({"type": "remote_invitation", "id": id, "caller": caller});
    put(&mut v, "callerName", caller_name);
    put(&mut v, "content", content);
    put(&mut v, "channelId", channel_id);
    put(&mut v, "group", group);
    // the caller sends video srgate can pass on: an offer with a video section gets it
    if video {
        v["video"] = json!(true);
    }
    v.to_string()
}

/// `remote_state` `CANCELED`: the caller gave up, or (`elsewhere`) another member of the
/// ring group called took the call (`"reason":"ANSWERED_ELSEWHERE"`).
pub fn remote_canceled(id: &str, elsewhere: bool) -> String {
    let mut v = json!({"type": "remote_state", "id": id, "state": CallState::Canceled.as_str()});
    put(&mut v, "reason", elsewhere.then_some("ANSWERED_ELSEWHERE"));
    v.to_string()
}

pub fn remote_state(
    id: &str,
    state: CallState,
    sdp: Option<&str>,
    error: Option<Failure>,
) -> String {
    let mut v = json!({"type": "remote_state", "id": id, "state": state.as_str()});
    put(&mut v, "sdp", sdp);
    put(&mut v, "error", error.map(Failure::as_str));
    v.to_string()
}

pub fn hangup(id: &str, reason: HangupReason, sip: Option<&SipStatus>) -> String {
    let v = json!({"type": "hangup", "id": id, "reason": reason.as_str()});
    with_sip(v, sip).to_string()
}

/// srgate's offer for an invitation (the answer to the internal [`Request::Offer`]).
pub fn offer(id: &str, sdp: &str) -> String {
    json!({"type": "offer", "id": id, "sdp": sdp}).to_string()
}

pub fn dtmf(id: &str, digit: char) -> String {
    json!({"type": "dtmf", "id": id, "digits": digit.to_string()}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (ErrorCode, Option<String>) {
        let r = parse(text).unwrap_err();
        (r.code, r.id)
    }

    #[test]
    fn every_request_type_parses() {
        assert_eq!(
            parse(r#"{"type":"login","user":"1001","token":"t"}"#),
            Ok(Request::Login {
                user: "1001".into(),
                token: "t".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"type":"invite","id":"c1","callee":"echo","sdp":"v=0","content":"x","channelId":"ch"}"#
            ),
            Ok(Request::Invite {
                id: "c1".into(),
                callee: "echo".into(),
                sdp: "v=0".into(),
                content: Some("x".into()),
                channel_id: Some("ch".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":"cancel","id":"c1"}"#),
            Ok(Request::Cancel { id: "c1".into() })
        );
        assert!(matches!(
            parse(r#"{"type":"accept","id":"g7","sdp":"v=0"}"#),
            Ok(Request::Accept { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"refuse","id":"g7","response":"no"}"#),
            Ok(Request::Refuse { .. })
        ));
        assert_eq!(
            parse(r#"{"type":"hangup","id":"c1"}"#),
            Ok(Request::Hangup { id: "c1".into() })
        );
        assert_eq!(
            parse(r##"{"type":"dtmf","id":"c1","digits":"12#A"}"##),
            Ok(Request::Dtmf {
                id: "c1".into(),
                digits: "12#A".into()
            })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(Request::Ping));
    }

    #[test]
    fn every_error_class() {
        assert_eq!(code("{nope").0, ErrorCode::BadJson);
        assert_eq!(code("[1,2]").0, ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"id":"x"}"#),
            (ErrorCode::BadRequest, Some("x".into()))
        );
        assert_eq!(
            code(r#"{"type":"fly","id":"c9"}"#),
            (ErrorCode::UnknownType, Some("c9".into()))
        );
        assert_eq!(
            code(r#"{"type":"invite","id":"c1","callee":"1006"}"#),
            (ErrorCode::BadRequest, Some("c1".into()))
        );
        assert_eq!(code(r#"{"type":"hangup","id":5}"#).0, ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"login","user":"a b"}"#).0,
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"dtmf","id":"c","digits":"12x"}"#).0,
            ErrorCode::BadRequest
        );
        let long_id = "i".repeat(65);
        assert_eq!(
            code(&format!(r#"{{"type":"hangup","id":"{long_id}"}}"#)).0,
            ErrorCode::BadRequest
        );
        let content = "é".repeat(4097); // 8194 bytes of UTF-8
        let (c, id) = code(&format!(
            r#"{{"type":"invite","id":"c1","callee":"1006","sdp":"v=0","content":"{content}"}}"#
        ));
        assert_eq!((c, id.as_deref()), (ErrorCode::BadRequest, Some("c1")));
        let ok_content = "é".repeat(4096); // exactly 8192 bytes
        assert!(parse(&format!(r#"{{"type":"invite","id":"c1","callee":"1006","sdp":"v=0","content":"{ok_content}"}}"#)).is_ok());
        let huge = format!(
            r#"{{"type":"invite","id":"c1","callee":"1006","sdp":"{}"}}"#,
            "a".repeat(MAX_FRAME)
        );
        assert_eq!(code(&huge).0, ErrorCode::TooLarge);
    }

    #[test]
    fn events_are_built_as_documented() {
        let e: Value = serde_json::from_str(
            &Refusal::new(ErrorCode::NotLoggedIn, "log in first", Some("c1")).to_json(),
        )
        .unwrap();
        assert_eq!(
            e,
            json!({"type":"error","code":"NOT_LOGGEDIN","message":"log in first","id":"c1"})
        );
        let sip = SipStatus {
            code: 486,
            reason: "Busy Here".into(),
        };
        let s: Value = serde_json::from_str(&local_state(
            "c1",
            CallState::RefusedByRemote,
            None,
            Some("r"),
            None,
            Some(&sip),
        ))
        .unwrap();
        assert_eq!(
            s,
            json!({"type":"local_state","id":"c1","state":"REFUSED_BY_REMOTE","response":"r","sip":{"code":486,"reason":"Busy Here"}})
        );
        let h: Value = serde_json::from_str(&hangup("c1", HangupReason::Local, None)).unwrap();
        assert_eq!(h, json!({"type":"hangup","id":"c1","reason":"LOCAL"}));
    }
}
