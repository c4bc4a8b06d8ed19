//! SIP over WebSocket (RFC 7118) for JsSIP, SIP.js and other SIP stacks in a page: a
//! WebSocket of the web listener that asked for the `sip` subprotocol speaks SIP instead of
//! the JSON protocol, and this module is srgate's user agent toward it. Sans-IO.
//!
//! Such a client is an app user like any other: its REGISTER (digest against `[users]`,
//! through the SIP endpoint's check, failure limits included) logs its socket in as that
//! user ([`WsContext::login`]), and from then on it is called and calls exactly as a
//! logged-in JSON client is and does. Its SIP becomes the JSON protocol's requests
//! ([`CallRequest`]), and the call layer's JSON events for it become SIP:
//!
//! | client → srgate | becomes |
//! |---|---|
//! | INVITE (with its WebRTC offer) | `invite` (callee: the Request-URI's user) |
//! | CANCEL / BYE | `cancel` / `hangup` |
//! | 200 to srgate's INVITE (with its answer to srgate's offer) | `accept` |
//! | 4xx–6xx to srgate's INVITE | `refuse` (603: declined) |
//! | INFO (`application/dtmf-relay`, `application/dtmf`) | `dtmf` |
//! | re-INVITE, UPDATE | answered here from the call's answer (hold: the direction mirrored) |
//!
//! | call layer → client | becomes |
//! |---|---|
//! | `local_state SENT_TO_REMOTE` (srgate's answer) | 183 with the answer (media connects at once); a call to `echo`: 200 |
//! | `RECEIVED_BY_REMOTE`, `ACCEPTED_BY_REMOTE` | 180, 200 with the answer |
//! | `REFUSED_BY_REMOTE`, `FAILURE`, `error` | the SIP code, else 480/408/503/486… |
//! | `remote_invitation` | the internal `offer` request; its answer (srgate's WebRTC offer) goes in an INVITE to the registered Contact |
//! | `remote_state ACCEPTED` | ACK |
//! | `remote_state CANCELED`/`FAILURE` | CANCEL (`Reason` when answered elsewhere), or ACK + BYE |
//! | `hangup` (not asked by the client), `dtmf` | BYE, INFO |
//!
//! WebSocket is a reliable transport: nothing is retransmitted. A session holds at most
//! [`MAX_CALLS`] calls and its registration at most [`MAX_EXPIRES`] seconds; an expired
//! registration logs the socket out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::hub::{CallRequest, HubOutput, SessionId};
use super::protocol::{self, Request};
use crate::wire::sip::{Contact, HeaderName, Message, MessageBuilder, Method, NameAddr};

/// Calls one client may have at once (the call layer's per-user limit is lower).
pub const MAX_CALLS: usize = 16;
/// The longest registration granted; a client asking for more gets this.
pub const MAX_EXPIRES: u32 = 3600;
/// The shortest registration taken (423 below it).
pub const MIN_EXPIRES: u32 = 60;
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE";

/// What the user agent needs of the rest of srgate's signalling.
pub trait WsContext {
    /// The digest check of a request (`proxy`: an INVITE's `Proxy-Authorization`).
    fn authenticate(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        proxy: bool,
        peer: SocketAddr,
    ) -> crate::sip::endpoint::WsAuth;
    /// `session` is `user` from now on.
    fn login(&mut self, now: Instant, session: SessionId, user: &str);
    /// `session` is nobody any more (un-REGISTER, expiry).
    fn logout(&mut self, now: Instant, session: SessionId);
    /// Random lowercase hex (tags, branches, Call-IDs).
    fn token(&mut self, len: usize) -> String;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// The client called (its INVITE).
    FromClient,
    /// srgate called the client (an invitation of the call layer).
    ToClient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the final answer (FromClient: before srgate's; ToClient: before the client's).
    Setup,
    /// ToClient: the client's 200 came, srgate's answer (the ACK) not yet.
    Accepting,
    /// Answered.
    Up,
    /// ToClient: srgate sent CANCEL and waits for the 487.
    Canceling,
}

#[derive(Debug)]
struct WsCall {
    /// The call layer's id.
    id: String,
    call_id: String,
    dir: Dir,
    phase: Phase,
    /// Our side's header (From of our requests) with our tag, and the client's (To) with
    /// its tag once known.
    local: String,
    remote: String,
    /// Where in-dialog requests go: the client's Contact URI.
    target: String,
    local_cseq: u32,
    /// FromClient: the headers every response to the INVITE copies (Vias, From, To
    /// without tag, Call-ID, CSeq), and our To tag.
    invite_head: Vec<(&'static str, String)>,
    local_tag: String,
    /// ToClient: our INVITE's branch and CSeq (CANCEL and a non-2xx ACK reuse them).
    invite_branch: String,
    invite_cseq: u32,
    /// srgate's SDP for the client (its answer), once the call layer gave it.
    answer: Option<String>,
    /// FromClient: the 200 was sent.
    ok_sent: bool,
    /// The client ended the call (its BYE/CANCEL): the call layer's `hangup LOCAL` and
    /// `CANCELED` that follow need no SIP.
    ended_by_client: bool,
    /// A call to `echo`: answered at once (its DTLS must come up before anything else).
    echo: bool,
    /// ToClient: the INVITE (with srgate's offer) went out.
    offered: bool,
}

#[derive(Debug)]
struct WsSession {
    peer: SocketAddr,
    user: Option<String>,
    /// The Contact URI the client registered (srgate's INVITEs go there).
    contact: Option<String>,
    registered_until: Option<Instant>,
    calls: Vec<WsCall>,
}

/// The SIP-over-WebSocket user agent (see the module's documentation).
#[derive(Debug, Default)]
pub struct SipWs {
    domain: String,
    sessions: HashMap<SessionId, WsSession>,
    out: VecDeque<HubOutput>,
    requests: VecDeque<CallRequest>,
    next_call: u64,
    /// Frames that were not SIP (answered 400 where possible, else dropped).
    pub malformed: u64,
}

impl SipWs {
    /// `domain`: `[sip] domain`, the host of srgate's URIs toward the clients.
    pub fn new(domain: &str) -> Self {
        SipWs {
            domain: domain.to_string(),
            ..SipWs::default()
        }
    }

    /// A WebSocket that asked for the `sip` subprotocol opened, from `peer`.
    pub fn open(&mut self, session: SessionId, peer: SocketAddr) {
        self.sessions.insert(
            session,
            WsSession {
                peer,
                user: None,
                contact: None,
                registered_until: None,
                calls: Vec::new(),
            },
        );
    }

    /// Whether `session` speaks SIP.
    pub fn is_sip(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Whether `user` is registered over a SIP-over-WebSocket session (a ring group's
    /// `sip:` member who is rung there, as an app user).
    pub fn is_registered(&self, user: &str) -> bool {
        self.sessions
            .values()
            .any(|s| s.contact.is_some() && s.user.as_deref() == Some(user))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The socket closed: its calls are the hub's to end (after the reconnection grace).
    pub fn close(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }

    pub fn poll_output(&mut self) -> Option<HubOutput> {
        self.out.pop_front()
    }

    pub fn poll_request(&mut self) -> Option<CallRequest> {
        self.requests.pop_front()
    }

    /// The earliest registration expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|s| s.registered_until)
            .min()
    }

    /// Registrations that ran out log their socket out.
    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut dyn WsContext) {
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.registered_until.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for session in expired {
            if let Some(s) = self.sessions.get_mut(&session) {
                log::info!(
                    "SIP-over-WebSocket registration of {} expired",
                    crate::pii::Pii(s.user.as_deref().unwrap_or("-"))
                );
                s.registered_until = None;
                s.contact = None;
                s.user = None;
            }
            ctx.logout(now, session);
        }
    }

    fn send(&mut self, session: SessionId, bytes: Vec<u8>) {
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        log::debug!(
            "SIP-over-WebSocket session {session}: > {}",
            text.lines().next().unwrap_or("")
        );
        self.out.push_back(HubOutput::Send { session, text });
    }

    fn request(&mut self, user: &str, request: Request) {
        self.requests.push_back(CallRequest::Call {
            user: user.to_string(),
            request,
        });
    }

    // ---- from the client ----

    /// One text frame of a SIP session.
    pub fn handle_text(
        &mut self,
        now: Instant,
        session: SessionId,
        text: &str,
        ctx: &mut dyn WsContext,
    ) {
        if !self.sessions.contains_key(&session) || text.trim().is_empty() {
            // an empty frame or CRLF keep-alive
            return;
        }
        let msg = match Message::parse(text.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                self.malformed += 1;
                let (code, reason) = e.status();
                log::debug!("SIP-over-WebSocket session {session}: unparsable frame ({e})");
                if let Some(answer) =
                    crate::sip::endpoint::answer_unparsable(text.as_bytes(), code, reason)
                {
                    self.send(session, answer);
                }
                return;
            }
        };
        log::debug!(
            "SIP-over-WebSocket session {session}: < {}",
            text.lines().next().unwrap_or("")
        );
        match msg.method() {
            Some(method) => self.on_request(now, session, method, &msg, ctx),
            None => self.on_response(session, &msg),
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        session: SessionId,
        method: Method<'_>,
        msg: &Message<'_>,
        ctx: &mut dyn WsContext,
    ) {
        let head = response_head(msg);
        if head.len() < 5 || msg.cseq().is_err() || msg.call_id().is_err() {
            self.malformed += 1;
            return; // nothing to answer with
        }
        match method {
            Method::Register => self.on_register(now, session, msg, &head, ctx),
            Method::Options => self.reply(session, &head, 200, "OK", &[("Allow", ALLOW)], None),
            Method::Invite => {
                if to_tag(msg).is_some() {
                    self.on_reinvite(session, msg, &head)
                } else {
                    self.on_invite(now, session, msg, &head, ctx)
                }
            }
            Method::Update => self.on_reinvite(session, msg, &head),
            Method::Ack => {} // a 2xx or an error's: nothing to do (the 2xx is not resent)
            Method::Bye => self.on_bye(session, msg, &head),
            Method::Cancel => self.on_cancel(session, msg, &head),
            Method::Info => self.on_info(session, msg, &head),
            Method::Subscribe | Method::Message | Method::Publish | Method::Refer => self.reply(
                session,
                &head,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW)],
                None,
            ),
            _ => self.reply(
                session,
                &head,
                501,
                "Not Implemented",
                &[("Allow", ALLOW)],
                None,
            ),
        }
    }

    fn reply(
        &mut self,
        session: SessionId,
        head: &[(&'static str, String)],
        code: u16,
        reason: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) {
        let mut b = MessageBuilder::response(code, reason);
        for (name, value) in head {
            b = b.header(HeaderName::new(name), value);
        }
        for (name, value) in extra {
            b = b.header(HeaderName::new(name), value);
        }
        if let Some(sdp) = body {
            b = b.body("application/sdp", sdp.as_bytes());
        }
        self.send(session, b.build());
    }

    /// The digest check of `msg` (`proxy`: an INVITE's): the user, or `None` after the
    /// refusal (a challenge, 403, 400) went out.
    #[allow(clippy::too_many_arguments)]
    fn authenticated(
        &mut self,
        now: Instant,
        session: SessionId,
        msg: &Message<'_>,
        head: &[(&'static str, String)],
        proxy: bool,
        peer: SocketAddr,
        ctx: &mut dyn WsContext,
    ) -> Option<String> {
        match ctx.authenticate(now, msg, proxy, peer) {
            crate::sip::endpoint::WsAuth::Ok(user) => Some(user),
            crate::sip::endpoint::WsAuth::Refused {
                code,
                reason,
                headers,
            } => {
                let extra: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.reply(session, head, code, reason, &extra, None);
                None
            }
        }
    }

    fn on_register(
        &mut self,
        now: Instant,
        session: SessionId,
        msg: &Message<'_>,
        head: &[(&'static str, String)],
        ctx: &mut dyn WsContext,
    ) {
        let Some(peer) = self.sessions.get(&session).map(|s| s.peer) else {
            return;
        };
        let Some(user) = self.authenticated(now, session, msg, head, false, peer, ctx) else {
            return;
        };
        // the authenticated user may only bind its own address-of-record
        if msg.to().ok().and_then(|t| t.uri.user) != Some(user.as_str()) {
            return self.reply(session, head, 403, "Forbidden", &[], None);
        }
        let default_expires = match msg.expires() {
            Ok(e) => e.unwrap_or(600),
            Err(_) => return self.reply(session, head, 400, "Bad Expires", &[], None),
        };
        let mut contact: Option<(String, u32)> = None;
        let mut star = false;
        for c in msg.contacts() {
            match c {
                Ok(Contact::Star) => star = true,
                Ok(c @ Contact::Addr(_)) => {
                    let expires = c.expires().unwrap_or(default_expires);
                    if let (Contact::Addr(na), None) = (&c, &contact) {
                        contact = Some((na.uri.as_str().to_string(), expires));
                    }
                }
                Err(_) => return self.reply(session, head, 400, "Bad Contact", &[], None),
            }
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        match contact {
            // a query: the binding as it stands
            None if !star => {}
            Some((uri, expires)) if expires > 0 => {
                if expires < MIN_EXPIRES {
                    let min = MIN_EXPIRES.to_string();
                    return self.reply(
                        session,
                        head,
                        423,
                        "Interval Too Brief",
                        &[("Min-Expires", &min)],
                        None,
                    );
                }
                let expires = expires.min(MAX_EXPIRES);
                let first = s.user.as_deref() != Some(user.as_str());
                s.user = Some(user.clone());
                s.contact = Some(uri);
                s.registered_until = Some(now + Duration::from_secs(u64::from(expires)));
                if first {
                    log::info!(
                        "REGISTER {} over WebSocket from {peer}",
                        crate::pii::Pii(&user)
                    );
                    ctx.login(now, session, &user);
                }
            }
            _ => {
                // Expires 0 (or `*`): the socket is nobody now
                if s.user.is_some() {
                    log::info!("{} un-registered over WebSocket", crate::pii::Pii(&user));
                    ctx.logout(now, session);
                }
                s.user = None;
                s.contact = None;
                s.registered_until = None;
            }
        }
        let binding = match (&s.contact, s.registered_until) {
            (Some(uri), Some(until)) => {
                let left = until.saturating_duration_since(now).as_secs();
                Some(format!("<{uri}>;expires={left}"))
            }
            _ => None,
        };
        match binding {
            Some(b) => self.reply(session, head, 200, "OK", &[("Contact", &b)], None),
            None => self.reply(session, head, 200, "OK", &[], None),
        }
    }

    fn on_invite(
        &mut self,
        now: Instant,
        session: SessionId,
        msg: &Message<'_>,
        head: &[(&'static str, String)],
        ctx: &mut dyn WsContext,
    ) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        let call_id = msg.call_id().unwrap_or("").to_string();
        if s.calls.iter().any(|c| c.call_id == call_id) {
            return; // a retransmission (the client should not, over a reliable transport)
        }
        let (peer, registered) = (s.peer, s.user.clone());
        let user = match registered {
            Some(u) => u,
            None => {
                let Some(user) = self.authenticated(now, session, msg, head, true, peer, ctx)
                else {
                    return;
                };
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.user = Some(user.clone());
                }
                ctx.login(now, session, &user);
                user
            }
        };
        let sdp = std::str::from_utf8(msg.body()).unwrap_or("");
        if sdp.trim().is_empty() {
            return self.reply(
                session,
                head,
                488,
                "Not Acceptable Here",
                &[(
                    "Warning",
                    "399 srgate \"an INVITE over WebSocket must carry an offer\"",
                )],
                None,
            );
        }
        let callee = msg
            .sip_request_uri()
            .and_then(Result::ok)
            .and_then(|u| u.user)
            .filter(|u| protocol::valid_user(u))
            .map(str::to_string);
        let Some(callee) = callee else {
            return self.reply(session, head, 404, "Not Found", &[], None);
        };
        let target = msg.contacts().find_map(|c| match c {
            Ok(Contact::Addr(na)) => Some(na.uri.as_str().to_string()),
            _ => None,
        });
        // a Contact to send in-dialog requests to, and a From that parses
        let (Some(target), Ok(_)) = (target, msg.from()) else {
            return self.reply(session, head, 400, "Bad Request (Contact)", &[], None);
        };
        if self
            .sessions
            .get(&session)
            .is_some_and(|s| s.calls.len() >= MAX_CALLS)
        {
            return self.reply(session, head, 486, "Busy Here (too many calls)", &[], None);
        }
        self.next_call += 1;
        let id = format!("ws{}", self.next_call);
        let local_tag = ctx.token(16);
        let to = msg.header(HeaderName::To).unwrap_or("").trim();
        let call = WsCall {
            id: id.clone(),
            call_id,
            dir: Dir::FromClient,
            phase: Phase::Setup,
            local: format!("{to};tag={local_tag}"),
            remote: msg
                .header(HeaderName::From)
                .unwrap_or("")
                .trim()
                .to_string(),
            target,
            local_cseq: 0,
            invite_head: head.to_vec(),
            local_tag,
            invite_branch: String::new(),
            invite_cseq: 0,
            answer: None,
            ok_sent: false,
            ended_by_client: false,
            echo: callee == "echo",
            offered: false,
        };
        self.reply(session, head, 100, "Trying", &[], None);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.calls.push(call);
        }
        log::info!(
            "INVITE over WebSocket from {} for {}",
            crate::pii::Pii(&user),
            crate::pii::Pii(&callee)
        );
        self.request(
            &user,
            Request::Invite {
                id,
                callee,
                sdp: sdp.to_string(),
                content: None,
                channel_id: None,
            },
        );
    }

    /// The call of a request inside a dialog (by Call-ID).
    fn call_of(&mut self, session: SessionId, call_id: &str) -> Option<(&mut WsCall, String)> {
        let s = self.sessions.get_mut(&session)?;
        let user = s.user.clone().unwrap_or_default();
        let call = s.calls.iter_mut().find(|c| c.call_id == call_id)?;
        Some((call, user))
    }

    fn on_reinvite(
        &mut self,
        session: SessionId,
        msg: &Message<'_>,
        head: &[(&'static str, String)],
    ) {
        let call_id = msg.call_id().unwrap_or("").to_string();
        let offer = std::str::from_utf8(msg.body()).unwrap_or("").to_string();
        let Some((call, _)) = self.call_of(session, &call_id) else {
            return self.no_call(session, head);
        };
        let Some(answer) = call.answer.clone() else {
            // not answered yet: a second offer in the middle of the first
            return self.reply(session, head, 491, "Request Pending", &[], None);
        };
        let answer = if offer.trim().is_empty() {
            answer
        } else {
            reanswer(&answer, &offer)
        };
        call.answer = Some(answer.clone());
        let local = call.local_tag.clone();
        let contact = self.contact();
        let mut head = head.to_vec();
        add_to_tag(&mut head, &local);
        self.reply(
            session,
            &head,
            200,
            "OK",
            &[("Contact", &contact), ("Allow", ALLOW)],
            Some(&answer),
        );
    }

    /// 481: a request for no call of this session.
    fn no_call(&mut self, session: SessionId, head: &[(&'static str, String)]) {
        self.reply(
            session,
            head,
            481,
            "Call/Transaction Does Not Exist",
            &[],
            None,
        );
    }

    fn on_bye(&mut self, session: SessionId, msg: &Message<'_>, head: &[(&'static str, String)]) {
        let call_id = msg.call_id().unwrap_or("").to_string();
        let Some((call, user)) = self.call_of(session, &call_id) else {
            return self.no_call(session, head);
        };
        call.ended_by_client = true;
        let id = call.id.clone();
        self.reply(session, head, 200, "OK", &[], None);
        self.request(&user, Request::Hangup { id: id.clone() });
        self.forget(session, &id);
    }

    fn on_cancel(
        &mut self,
        session: SessionId,
        msg: &Message<'_>,
        head: &[(&'static str, String)],
    ) {
        let call_id = msg.call_id().unwrap_or("").to_string();
        let found = self.call_of(session, &call_id).and_then(|(call, user)| {
            (call.dir == Dir::FromClient && !call.ok_sent).then(|| {
                call.ended_by_client = true;
                (
                    call.id.clone(),
                    user,
                    call.invite_head.clone(),
                    call.local_tag.clone(),
                )
            })
        });
        let Some((id, user, mut invite_head, tag)) = found else {
            return self.no_call(session, head);
        };
        self.reply(session, head, 200, "OK", &[], None);
        add_to_tag(&mut invite_head, &tag);
        self.reply(session, &invite_head, 487, "Request Terminated", &[], None);
        self.request(&user, Request::Cancel { id: id.clone() });
        self.forget(session, &id);
    }

    fn on_info(&mut self, session: SessionId, msg: &Message<'_>, head: &[(&'static str, String)]) {
        let call_id = msg.call_id().unwrap_or("").to_string();
        let body = std::str::from_utf8(msg.body()).unwrap_or("");
        let kind = msg.content_type().map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let digit = match kind.as_deref() {
            Some("application/dtmf-relay") => body.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("signal")
                    .then(|| v.trim().to_string())
            }),
            Some("application/dtmf") => Some(body.trim().to_string()),
            _ => None,
        };
        let Some((call, user)) = self.call_of(session, &call_id) else {
            return self.no_call(session, head);
        };
        let id = call.id.clone();
        let digits = digit.map(|d| match d.as_str() {
            "10" => "*".to_string(),
            "11" => "#".to_string(),
            _ => d.to_ascii_uppercase(),
        });
        match digits {
            Some(d)
                if d.len() == 1
                    && d.chars()
                        .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c)) =>
            {
                self.reply(session, head, 200, "OK", &[], None);
                self.request(&user, Request::Dtmf { id, digits: d });
            }
            Some(_) => self.reply(session, head, 400, "Bad Request (DTMF signal)", &[], None),
            None => self.reply(
                session,
                head,
                415,
                "Unsupported Media Type",
                &[("Accept", "application/dtmf-relay, application/dtmf")],
                None,
            ),
        }
    }

    fn on_response(&mut self, session: SessionId, msg: &Message<'_>) {
        let (Some(code), Ok(cseq), Ok(call_id)) = (msg.status(), msg.cseq(), msg.call_id()) else {
            self.malformed += 1;
            return;
        };
        if cseq.method != Method::Invite {
            return; // BYE, CANCEL, INFO answers: nothing waits on them
        }
        let call_id = call_id.to_string();
        let domain = self.domain.clone();
        let Some((call, user)) = self.call_of(session, &call_id) else {
            return;
        };
        if call.dir != Dir::ToClient || cseq.seq != call.invite_cseq {
            return;
        }
        let to = msg.header(HeaderName::To).unwrap_or("").trim().to_string();
        let id = call.id.clone();
        match code {
            100..=199 => {}
            200..=299 => {
                if call.phase == Phase::Up {
                    // the 2xx again: ACK it again
                    let ack = self.ack(session, &call_id);
                    if let Some(ack) = ack {
                        self.send(session, ack);
                    }
                    return;
                }
                let target = msg.contacts().find_map(|c| match c {
                    Ok(Contact::Addr(na)) => Some(na.uri.as_str().to_string()),
                    _ => None,
                });
                call.remote = to;
                if let Some(t) = target {
                    call.target = t;
                }
                let answer = std::str::from_utf8(msg.body()).unwrap_or("").to_string();
                let canceled = call.phase == Phase::Canceling;
                if canceled || answer.trim().is_empty() {
                    // too late (srgate gave up), or no answer: ACK and end it
                    call.phase = Phase::Up;
                    let ack = self.ack(session, &call_id);
                    let bye = self.in_dialog(session, &call_id, "BYE", None);
                    for m in [ack, bye].into_iter().flatten() {
                        self.send(session, m);
                    }
                    if !canceled {
                        self.request(
                            &user,
                            Request::Refuse {
                                id: id.clone(),
                                response: None,
                            },
                        );
                    }
                    self.forget(session, &id);
                    return;
                }
                call.phase = Phase::Accepting;
                // the browser's answer to srgate's offer (the call layer knows it is one)
                self.request(
                    &user,
                    Request::Accept {
                        id,
                        sdp: answer,
                        response: None,
                    },
                );
            }
            _ => {
                // a non-2xx: ACK it in its transaction, and the call is refused
                let canceled = call.phase == Phase::Canceling;
                let ack = non_2xx_ack(call, &to, &domain);
                self.send(session, ack);
                if !canceled {
                    let response = matches!(code, 603 | 607).then(|| "decline".to_string());
                    self.request(
                        &user,
                        Request::Refuse {
                            id: id.clone(),
                            response,
                        },
                    );
                }
                self.forget(session, &id);
            }
        }
    }

    fn forget(&mut self, session: SessionId, id: &str) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.calls.retain(|c| c.id != id);
        }
    }

    fn contact(&self) -> String {
        format!("<sip:srgate@{};transport=ws>", self.domain)
    }

    fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/WSS {};branch=z9hG4bK{branch}", self.domain)
    }

    /// A request inside the dialog of `call_id` (BYE, INFO), with the next CSeq.
    fn in_dialog(
        &mut self,
        session: SessionId,
        call_id: &str,
        method: &str,
        body: Option<(&str, &str)>,
    ) -> Option<Vec<u8>> {
        let branch = format!("{:016x}", self.next_branch());
        let via = self.via(&branch);
        let contact = self.contact();
        let (call, _) = self.call_of(session, call_id)?;
        call.local_cseq += 1;
        let method = Method::from_token(method);
        let mut b = MessageBuilder::request(method, &call.target)
            .header(HeaderName::new("Via"), via)
            .header(HeaderName::new("Max-Forwards"), 70)
            .header(HeaderName::new("From"), &call.local)
            .header(HeaderName::new("To"), &call.remote)
            .header(HeaderName::new("Call-ID"), &call.call_id)
            .header(
                HeaderName::new("CSeq"),
                format!("{} {}", call.local_cseq, method.as_str()),
            )
            .header(HeaderName::new("Contact"), contact);
        if let Some((kind, text)) = body {
            b = b.body(kind, text.as_bytes());
        }
        Some(b.build())
    }

    /// The ACK of a 2xx to srgate's INVITE (the INVITE carried the offer: no body).
    fn ack(&mut self, session: SessionId, call_id: &str) -> Option<Vec<u8>> {
        let branch = format!("{:016x}", self.next_branch());
        let via = self.via(&branch);
        let (call, _) = self.call_of(session, call_id)?;
        let b = MessageBuilder::request(Method::Ack, &call.target)
            .header(HeaderName::new("Via"), via)
            .header(HeaderName::new("Max-Forwards"), 70)
            .header(HeaderName::new("From"), &call.local)
            .header(HeaderName::new("To"), &call.remote)
            .header(HeaderName::new("Call-ID"), &call.call_id)
            .header(HeaderName::new("CSeq"), format!("{} ACK", call.invite_cseq));
        Some(b.build())
    }

    fn next_branch(&mut self) -> u64 {
        self.next_call += 1;
        self.next_call
    }

    // ---- from the call layer ----

    /// A JSON event of the call layer for `session` (what the hub would have sent a JSON
    /// client), turned into SIP.
    pub fn handle_event(&mut self, session: SessionId, text: &str, ctx: &mut dyn WsContext) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(kind), id) = (field("type"), field("id")) else {
            return;
        };
        let sip_code = v
            .get("sip")
            .and_then(|s| s.get("code"))
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok());
        match (kind.as_str(), id) {
            ("offer", Some(id)) => {
                let sdp = field("sdp").unwrap_or_default();
                self.send_invite(session, &id, &sdp)
            }
            ("remote_invitation", Some(id)) => {
                let caller = field("caller").unwrap_or_default();
                self.invite_client(session, &id, &caller, field("callerName"), ctx)
            }
            ("local_state", Some(id)) => {
                let state = field("state").unwrap_or_default();
                self.local_state(session, &id, &state, field("sdp"), field("error"), sip_code)
            }
            ("remote_state", Some(id)) => {
                let state = field("state").unwrap_or_default();
                let elsewhere = field("reason").as_deref() == Some("ANSWERED_ELSEWHERE");
                self.remote_state(session, &id, &state, field("sdp"), elsewhere)
            }
            ("hangup", Some(id)) => self.hangup(session, &id),
            ("dtmf", Some(id)) => {
                let digits = field("digits").unwrap_or_default();
                self.dtmf(session, &id, &digits)
            }
            ("error", Some(id)) if self.is_to_client(session, &id) => {
                // srgate could not take the client's answer (or make its offer): the
                // client's side ends, and so does the invitation (it would ring on)
                let user = self.sessions.get(&session).and_then(|s| s.user.clone());
                self.remote_state(session, &id, "FAILURE", None, false);
                if let Some(user) = user {
                    self.request(&user, Request::Refuse { id, response: None });
                }
            }
            ("error", Some(id)) => {
                let code = match field("code").as_deref() {
                    Some("OVERLOADED") => 503,
                    Some("NO_SUCH_CALL") => 481,
                    Some("BAD_REQUEST") => 486,
                    _ => 500,
                };
                self.final_to_client(session, &id, code)
            }
            _ => {} // login_ok, pong, KICKED (the close follows)
        }
    }

    fn is_to_client(&self, session: SessionId, id: &str) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| s.calls.iter().any(|c| c.id == id && c.dir == Dir::ToClient))
    }

    fn session_call(&mut self, session: SessionId, id: &str) -> Option<&mut WsCall> {
        self.sessions
            .get_mut(&session)?
            .calls
            .iter_mut()
            .find(|c| c.id == id)
    }

    fn invite_client(
        &mut self,
        session: SessionId,
        id: &str,
        caller: &str,
        caller_name: Option<String>,
        ctx: &mut dyn WsContext,
    ) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        let Some(user) = s.user.clone() else {
            return;
        };
        // logged in by an INVITE only (no Contact to call) or at its limit: refused at once
        // rather than left ringing
        let target = s.contact.clone().filter(|_| s.calls.len() < MAX_CALLS);
        let Some(target) = target else {
            self.request(
                &user,
                Request::Refuse {
                    id: id.to_string(),
                    response: None,
                },
            );
            return;
        };
        let tag = ctx.token(16);
        let branch = ctx.token(20);
        let call_id = format!("{}@srgate", ctx.token(24));
        let display = caller_name
            .filter(|n| !n.is_empty())
            .map(|n| format!("\"{}\" ", n.replace(['"', '\\'], "")))
            .unwrap_or_default();
        let caller_user: String = caller
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(*c))
            .collect();
        let caller_user = if caller_user.is_empty() {
            "anonymous".to_string()
        } else {
            caller_user
        };
        let local = format!("{display}<sip:{caller_user}@{}>;tag={tag}", self.domain);
        let remote = format!("<sip:{user}@{}>", self.domain);
        let call = WsCall {
            id: id.to_string(),
            call_id,
            dir: Dir::ToClient,
            phase: Phase::Setup,
            local,
            remote,
            target,
            local_cseq: 1,
            invite_head: Vec::new(),
            local_tag: tag,
            invite_branch: branch,
            invite_cseq: 1,
            answer: None,
            ok_sent: false,
            ended_by_client: false,
            echo: false,
            offered: false,
        };
        if let Some(s) = self.sessions.get_mut(&session) {
            s.calls.push(call);
        }
        // the INVITE goes with srgate's offer, once the call layer made it
        self.request(&user, Request::Offer { id: id.to_string() });
    }

    /// srgate's INVITE to the client, with the offer the call layer made.
    fn send_invite(&mut self, session: SessionId, id: &str, offer: &str) {
        let contact = self.contact();
        let domain = self.domain.clone();
        let Some(call) = self.session_call(session, id) else {
            return;
        };
        if call.dir != Dir::ToClient || call.phase != Phase::Setup || call.offered {
            return;
        }
        call.offered = true;
        let invite = MessageBuilder::request(Method::Invite, &call.target)
            .header(
                HeaderName::new("Via"),
                format!("SIP/2.0/WSS {domain};branch=z9hG4bK{}", call.invite_branch),
            )
            .header(HeaderName::new("Max-Forwards"), 70)
            .header(HeaderName::new("From"), &call.local)
            .header(HeaderName::new("To"), &call.remote)
            .header(HeaderName::new("Call-ID"), &call.call_id)
            .header(HeaderName::new("CSeq"), "1 INVITE")
            .header(HeaderName::new("Contact"), contact)
            .header(HeaderName::new("Allow"), ALLOW)
            .body("application/sdp", offer.as_bytes())
            .build();
        self.send(session, invite);
    }

    fn local_state(
        &mut self,
        session: SessionId,
        id: &str,
        state: &str,
        sdp: Option<String>,
        error: Option<String>,
        sip_code: Option<u16>,
    ) {
        let contact = self.contact();
        let Some(call) = self.session_call(session, id) else {
            return;
        };
        if call.dir != Dir::FromClient || call.ended_by_client {
            return;
        }
        let mut head = call.invite_head.clone();
        add_to_tag(&mut head, &call.local_tag);
        match state {
            "SENT_TO_REMOTE" => {
                call.answer = sdp;
                let Some(answer) = call.answer.clone() else {
                    return;
                };
                let (code, reason) = if call.echo {
                    call.ok_sent = true;
                    call.phase = Phase::Up;
                    (200, "OK")
                } else {
                    (183, "Session Progress")
                };
                self.reply(
                    session,
                    &head,
                    code,
                    reason,
                    &[("Contact", &contact), ("Allow", ALLOW)],
                    Some(&answer),
                );
            }
            "RECEIVED_BY_REMOTE" => {
                if !call.ok_sent {
                    self.reply(
                        session,
                        &head,
                        180,
                        "Ringing",
                        &[("Contact", &contact)],
                        None,
                    );
                }
            }
            "ACCEPTED_BY_REMOTE" => {
                if call.ok_sent {
                    return;
                }
                call.ok_sent = true;
                call.phase = Phase::Up;
                let answer = call.answer.clone();
                self.reply(
                    session,
                    &head,
                    200,
                    "OK",
                    &[("Contact", &contact), ("Allow", ALLOW)],
                    answer.as_deref(),
                );
            }
            "CANCELED" => {}
            _ => {
                // REFUSED_BY_REMOTE, FAILURE
                let code =
                    sip_code
                        .filter(|c| (300..700).contains(c))
                        .unwrap_or(match error.as_deref() {
                            Some("PEER_OFFLINE") => 480,
                            Some("PEER_NO_RESPONSE") => 408,
                            Some("INVITATION_EXPIRE") => 480,
                            Some("MEDIA_FAILED") => 488,
                            _ if state == "REFUSED_BY_REMOTE" => 486,
                            _ => 500,
                        });
                self.final_to_client(session, id, code);
            }
        }
    }

    /// A final error answer to the client's INVITE (the call is over).
    fn final_to_client(&mut self, session: SessionId, id: &str, code: u16) {
        let Some(call) = self.session_call(session, id) else {
            return;
        };
        if call.dir != Dir::FromClient || call.ok_sent || call.ended_by_client {
            return;
        }
        let mut head = call.invite_head.clone();
        add_to_tag(&mut head, &call.local_tag);
        let reason = crate::wire::sip::reason_phrase(code);
        self.reply(session, &head, code, reason, &[], None);
        self.forget(session, id);
    }

    fn remote_state(
        &mut self,
        session: SessionId,
        id: &str,
        state: &str,
        sdp: Option<String>,
        elsewhere: bool,
    ) {
        let domain = self.domain.clone();
        let Some(call) = self.session_call(session, id) else {
            return;
        };
        if call.dir != Dir::ToClient {
            return;
        }
        let call_id = call.call_id.clone();
        match (state, call.phase) {
            ("ACCEPTED", Phase::Accepting) => {
                call.answer = sdp;
                call.phase = Phase::Up;
                if let Some(ack) = self.ack(session, &call_id) {
                    self.send(session, ack);
                }
            }
            (_, Phase::Setup) if !call.offered => {
                // over before the INVITE went out
                self.forget(session, id);
            }
            (_, Phase::Setup) => {
                // CANCELED (the caller gave up, or another member answered) or FAILURE
                // (nobody answered in time)
                call.phase = Phase::Canceling;
                let cancel = cancel_request(call, &domain, elsewhere);
                self.send(session, cancel);
            }
            (_, Phase::Accepting) => {
                // the client answered, but the call failed meanwhile
                call.phase = Phase::Up;
                let ack = self.ack(session, &call_id);
                let bye = self.in_dialog(session, &call_id, "BYE", None);
                for m in [ack, bye].into_iter().flatten() {
                    self.send(session, m);
                }
                self.forget(session, id);
            }
            _ => {}
        }
    }

    fn hangup(&mut self, session: SessionId, id: &str) {
        let Some(call) = self.session_call(session, id) else {
            return;
        };
        let call_id = call.call_id.clone();
        if call.ended_by_client {
            return;
        }
        if call.phase == Phase::Up
            && let Some(bye) = self.in_dialog(session, &call_id, "BYE", None)
        {
            self.send(session, bye);
        }
        self.forget(session, id);
    }

    fn dtmf(&mut self, session: SessionId, id: &str, digits: &str) {
        let Some(call) = self.session_call(session, id) else {
            return;
        };
        if call.phase != Phase::Up {
            return;
        }
        let call_id = call.call_id.clone();
        for digit in digits.chars() {
            let body = format!("Signal={digit}\r\nDuration=160\r\n");
            if let Some(info) = self.in_dialog(
                session,
                &call_id,
                "INFO",
                Some(("application/dtmf-relay", &body)),
            ) {
                self.send(session, info);
            }
        }
    }
}

/// The headers a response copies: every Via, From, To, Call-ID, CSeq (over a WebSocket
/// the Via needs no `received`: responses go back on the same socket).
fn response_head(msg: &Message<'_>) -> Vec<(&'static str, String)> {
    let mut head = Vec::with_capacity(6);
    for v in msg.header_all(HeaderName::new("Via")) {
        head.push(("Via", v.trim().to_string()));
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = msg.header(HeaderName::new(name)) {
            head.push((name, v.trim().to_string()));
        }
    }
    head
}

fn to_tag<'a>(msg: &Message<'a>) -> Option<&'a str> {
    msg.to().ok().and_then(|t: NameAddr<'a>| t.tag)
}

/// Adds our tag to the To of a response head that has none.
fn add_to_tag(head: &mut [(&'static str, String)], tag: &str) {
    for (name, value) in head.iter_mut() {
        if *name == "To" && !value.contains(";tag=") {
            value.push_str(";tag=");
            value.push_str(tag);
        }
    }
}

/// The CANCEL of srgate's INVITE to the client (same branch and CSeq number).
fn cancel_request(call: &WsCall, domain: &str, elsewhere: bool) -> Vec<u8> {
    let mut b = MessageBuilder::request(Method::Cancel, &call.target)
        .header(
            HeaderName::new("Via"),
            format!("SIP/2.0/WSS {domain};branch=z9hG4bK{}", call.invite_branch),
        )
        .header(HeaderName::new("Max-Forwards"), 70)
        .header(HeaderName::new("From"), &call.local)
        .header(HeaderName::new("To"), &call.remote)
        .header(HeaderName::new("Call-ID"), &call.call_id)
        .header(
            HeaderName::new("CSeq"),
            format!("{} CANCEL", call.invite_cseq),
        );
    if elsewhere {
        b = b.header(
            HeaderName::new("Reason"),
            "SIP;cause=200;text=\"Call completed elsewhere\"",
        );
    }
    b.build()
}

/// The ACK of a non-2xx answer to srgate's INVITE: the INVITE's branch, the answer's To.
fn non_2xx_ack(call: &WsCall, to: &str, domain: &str) -> Vec<u8> {
    MessageBuilder::request(Method::Ack, &call.target)
        .header(
            HeaderName::new("Via"),
            format!("SIP/2.0/WSS {domain};branch=z9hG4bK{}", call.invite_branch),
        )
        .header(HeaderName::new("Max-Forwards"), 70)
        .header(HeaderName::new("From"), &call.local)
        .header(HeaderName::new("To"), to)
        .header(HeaderName::new("Call-ID"), &call.call_id)
        .header(HeaderName::new("CSeq"), format!("{} ACK", call.invite_cseq))
        .build()
}

/// srgate's answer again for a new offer of the same session (hold, resume, a session
/// refresh): every direction attribute mirrors the offer's, and the `o=` version grows
/// when that changed anything.
fn reanswer(answer: &str, offer: &str) -> String {
    let offered = offer
        .lines()
        .map(str::trim)
        .find_map(|l| match l {
            "a=sendonly" => Some("a=recvonly"),
            "a=recvonly" => Some("a=sendonly"),
            "a=inactive" => Some("a=inactive"),
            "a=sendrecv" => Some("a=sendrecv"),
            _ => None,
        })
        .unwrap_or("a=sendrecv");
    let is_direction = |l: &str| {
        matches!(
            l.trim(),
            "a=sendonly" | "a=recvonly" | "a=inactive" | "a=sendrecv"
        )
    };
    let current = answer
        .lines()
        .find(|l| is_direction(l))
        .map(str::trim)
        .unwrap_or("a=sendrecv");
    if current == offered {
        return answer.to_string();
    }
    let mut out = String::with_capacity(answer.len() + 16);
    let mut has_direction = false;
    for line in answer.lines() {
        let line = line.trim_end_matches('\r');
        if is_direction(line) {
            has_direction = true;
            out.push_str(offered);
        } else if let Some(rest) = line.strip_prefix("o=") {
            // o=<user> <sess-id> <sess-version> <nettype> <addrtype> <addr>
            let mut f: Vec<String> = rest.split(' ').map(str::to_string).collect();
            if let Some(v) = f.get_mut(2).and_then(|v| v.parse::<u64>().ok()) {
                f[2] = (v + 1).to_string();
            }
            out.push_str("o=");
            out.push_str(&f.join(" "));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    if !has_direction {
        out.push_str(offered);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
#[path = "sip_ws_tests.rs"]
mod tests;
