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
//! | `remote_state CANCELED`/`FAILURE` | CANCEL (`Reason` when answered elsewhere; after the client's first provisional answer, RFC 3261 §9.1), or ACK + BYE |
//! | `hangup` (not asked by the client), `dtmf` | BYE, INFO |
//!
//! WebSocket is a reliable transport: nothing is retransmitted. A session holds at most
//! [`MAX_CALLS`] calls and its registration at most [`MAX_EXPIRES`] seconds; an expired
//! registration logs the socket out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::hub::{CallRequest, HubOutput, SessionId};
use super::protocol::Request;
use crate::wire::sip::{HeaderName, Message, MessageBuilder};

mod client;
mod events;
mod wire;

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
    /// ToClient: srgate gave the call up: its CANCEL went (or waits for the client's first
    /// provisional answer), the 487 is awaited.
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
    /// ToClient: a provisional answer to it came (a CANCEL may go only after one: RFC 3261
    /// §9.1), and the CANCEL that waits for it (`Some(answered elsewhere)`).
    provisional: bool,
    cancel_waits: Option<bool>,
}

#[derive(Debug)]
struct WsSession {
    peer: SocketAddr,
    user: Option<String>,
    /// The Contact URI the client registered (srgate's INVITEs go there).
    contact: Option<String>,
    registered_until: Option<Instant>,
    /// The user `calls` belong to: the last one logged in here (kept after a logout, whose
    /// calls live on through the hub's grace should the same user register again).
    owner: Option<String>,
    calls: Vec<WsCall>,
}

impl WsSession {
    /// The socket is `user` now: calls of another user who was here before are not this
    /// client's any more (the call layer ends them after the hub's grace).
    fn log_in(&mut self, user: &str) {
        if self.owner.as_deref() != Some(user) {
            self.calls.clear();
            self.owner = Some(user.to_string());
        }
        self.user = Some(user.to_string());
    }
}

/// The SIP-over-WebSocket user agent (see the module's documentation).
#[derive(Debug, Default)]
pub struct SipWs {
    /// Shared by the requests being built (a clone per request costs no allocation).
    domain: Arc<str>,
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
            domain: Arc::from(domain),
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
                owner: None,
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

    /// A response that establishes or carries srgate's side of a call (18x, 2xx): with
    /// srgate's Contact and Allow, and srgate's `sdp` when given.
    fn reply_session(
        &mut self,
        session: SessionId,
        head: &[(&'static str, String)],
        code: u16,
        reason: &str,
        sdp: Option<&str>,
    ) {
        let contact = self.contact();
        let extra = [("Contact", contact.as_str()), ("Allow", ALLOW)];
        self.reply(session, head, code, reason, &extra, sdp);
    }

    /// The call of a request inside a dialog (by Call-ID).
    fn call_of(&mut self, session: SessionId, call_id: &str) -> Option<(&mut WsCall, String)> {
        let s = self.sessions.get_mut(&session)?;
        let user = s.user.clone().unwrap_or_default();
        let call = s.calls.iter_mut().find(|c| c.call_id == call_id)?;
        Some((call, user))
    }

    fn forget(&mut self, session: SessionId, id: &str) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.calls.retain(|c| c.id != id);
        }
    }

    fn contact(&self) -> String {
        format!("<sip:srgate@{};transport=ws>", self.domain)
    }

    fn next_branch(&mut self) -> u64 {
        self.next_call += 1;
        self.next_call
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
}

#[cfg(test)]
mod tests;
