//! Calls at the SIP endpoint: the INVITE dialogs srgate takes part in as a B2BUA leg
//! (RFC 3261 §13–15), driven by the call layer through [`Endpoint::start_call`],
//! [`Endpoint::ring`], [`Endpoint::answer`], [`Endpoint::reject`] and
//! [`Endpoint::hangup`], reported through the call events of [`Event`].
//!
//! - Outgoing: INVITE with srgate's offer through a client INVITE transaction; 401/407
//!   answered with the proxy account's credentials (the non-2xx is ACKed by the
//!   transaction, §17.1.1.3); 18x with a To tag makes an early dialog; a 2xx confirms it
//!   and is ACKed in a new transaction (§13.2.2.4), every retransmission of it too. A
//!   hangup before the answer is a CANCEL (§9.1: only after a provisional response; until
//!   one comes it waits), a 2xx that crosses it gets ACK and BYE.
//! - Incoming: `100 Trying` at once, then `Event::IncomingCall`; the 2xx is retransmitted
//!   by srgate (T1 doubling up to T2, §13.3.1.4) until the ACK, and without an ACK in 64·T1
//!   the dialog ends with a BYE. INVITEs without an SDP offer get 488: srgate never makes
//!   the offer toward SIP for an incoming call.
//! - In a dialog: BYE → 200 and the call ends; a re-INVITE (hold, new address) is
//!   answered with srgate's previous description, direction mirrored
//!   ([`crate::sdp::sip::reanswer`]); INFO with `application/dtmf-relay` or
//!   `application/dtmf` → 200 and a digit; OPTIONS → 200; anything else for a dialog we do
//!   not know → 481.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{
    ALLOW, BRANCH_PREFIX, ClientTx, Endpoint, Event, ServerKey, ServerMachine, Transmit, Transport,
};
use crate::sip::auth;
use crate::sip::dialog::Dialog;
use crate::sip::transaction::client::ClientTransaction;
use crate::sip::transaction::client_invite::ClientInviteTransaction;
use crate::sip::transaction::{Event as TxEvent, T1, T2};
use crate::wire::sip::{HeaderName, Message, MessageBuilder, Method, reason_phrase};

/// A call's handle: chosen by the call layer for outgoing calls, by the endpoint (bit 63
/// set) for incoming ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SipCallId(pub u64);

const INCOMING_BIT: u64 = 1 << 63;

/// What the call layer asks for when it starts a call toward SIP.
#[derive(Clone, Debug)]
pub struct OutgoingCall {
    pub id: SipCallId,
    /// The number or user called.
    pub callee: String,
    /// The app user calling.
    pub caller: String,
    /// From display name; default: the caller.
    pub display_name: Option<String>,
    /// srgate's SDP offer.
    pub sdp: String,
    /// Extra headers (e.g. `X-ArInfo`).
    pub headers: Vec<(String, String)>,
}

/// Why a call could not be started.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Standalone: the callee has no binding; proxy mode without a proxy account.
    NoRoute,
    /// The id is in use.
    Duplicate,
    /// [`MAX_SIP_CALLS`] calls exist.
    TooMany,
    /// A header name or value that cannot be sent (CR, LF, empty name).
    BadHeader,
}

/// Calls the endpoint keeps at once.
pub const MAX_SIP_CALLS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Outgoing: INVITE sent, no provisional with a tag yet / incoming: not answered.
    Trying,
    Early,
    /// 2xx sent or received.
    Confirmed,
}

/// Retransmission of our 2xx until the ACK (§13.3.1.4).
#[derive(Debug)]
struct OkRetransmit {
    payload: Vec<u8>,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
pub(super) struct SipCall {
    id: SipCallId,
    outgoing: bool,
    phase: Phase,
    /// The call layer hung up: no more events, the call goes once its transactions end.
    silent: bool,
    call_id: String,
    local_tag: String,
    /// From/To URIs of the INVITE (outgoing: ours is From).
    local_uri: String,
    remote_uri: String,
    from_header: String,
    to_header: String,
    request_uri: String,
    invite_cseq: u32,
    invite_branch: String,
    /// Where requests and retransmissions go (sip_svr, or the phone's address).
    destination: (Transport, SocketAddr),
    contact: String,
    sdp: String,
    headers: Vec<(String, String)>,
    auth: Option<auth::ClientAuth>,
    dialog: Option<Dialog>,
    /// Outgoing: a CANCEL is owed as soon as a provisional response comes.
    cancel_owed: bool,
    cancel_sent: bool,
    /// Outgoing: the ACK for the 2xx, resent for each retransmission of it.
    ack: Option<Vec<u8>>,
    /// Incoming: the INVITE's server transaction.
    server_key: Option<ServerKey>,
    ok: Option<OkRetransmit>,
    progress_seen: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtherKind {
    Bye,
    Cancel,
}

#[derive(Debug)]
pub(super) struct InviteTx {
    call: SipCallId,
    machine: ClientInviteTransaction,
    destination: (Transport, SocketAddr),
}

#[derive(Debug)]
pub(super) struct OtherTx {
    kind: OtherKind,
    tx: ClientTx,
}

/// Every call and the client transactions that belong to calls.
#[derive(Debug, Default)]
pub(super) struct CallTable {
    calls: HashMap<SipCallId, SipCall>,
    /// (Call-ID, our tag) → call.
    by_dialog: HashMap<(String, String), SipCallId>,
    by_server: HashMap<ServerKey, SipCallId>,
    invites: HashMap<String, InviteTx>,
    others: HashMap<String, OtherTx>,
    next_incoming: u64,
}

impl std::fmt::Debug for ClientTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTx")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

fn quote(display: &str) -> String {
    let clean: String = display
        .chars()
        .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
        .take(64)
        .collect();
    format!("\"{clean}\"")
}

/// The tag parameter of a From/To header value.
fn tag_of(value: &str) -> Option<&str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// The digit of an INFO body (`application/dtmf-relay`: `Signal=5`; `application/dtmf`:
/// `5`) and its duration in ms.
fn info_digit(content_type: &str, body: &str) -> Option<(char, u32)> {
    let ct = content_type.trim().to_ascii_lowercase();
    let valid = |c: char| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d');
    if ct.starts_with("application/dtmf-relay") {
        let mut digit = None;
        let mut duration = 160;
        for line in body.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "signal" => digit = v.trim().chars().next().filter(|c| valid(*c)),
                "duration" => duration = v.trim().parse().unwrap_or(160),
                _ => {}
            }
        }
        return digit.map(|d| (d.to_ascii_uppercase(), duration));
    }
    if ct.starts_with("application/dtmf") {
        let d = body.trim().chars().next().filter(|c| valid(*c))?;
        return Some((d.to_ascii_uppercase(), 250));
    }
    None
}

impl Endpoint {
    fn via(&mut self, transport: Transport) -> (String, String) {
        let branch = format!("{BRANCH_PREFIX}{}", self.rng.token(20));
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.via_token(),
            self.cfg.local
        );
        (via, branch)
    }

    fn contact_for(&self, user: &str, transport: Transport) -> String {
        format!(
            "<sip:{user}@{}{}>",
            self.cfg.local,
            match transport {
                Transport::Udp => "",
                Transport::Tcp => ";transport=tcp",
                Transport::Tls => ";transport=tls",
            }
        )
    }

    /// Calls the endpoint holds (answered or not).
    pub fn active_calls(&self) -> usize {
        self.calls.calls.len()
    }

    /// Starts a call toward SIP (see the module doc).
    pub fn start_call(&mut self, now: Instant, call: OutgoingCall) -> Result<(), CallError> {
        if self.calls.calls.contains_key(&call.id) || call.id.0 & INCOMING_BIT != 0 {
            return Err(CallError::Duplicate);
        }
        if self.calls.calls.len() >= MAX_SIP_CALLS {
            return Err(CallError::TooMany);
        }
        if !call.headers.iter().all(|(n, v)| header_ok(n, v))
            || !header_ok("x", &call.callee)
            || call.callee.is_empty()
        {
            return Err(CallError::BadHeader);
        }
        let domain = self.cfg.domain.clone();
        let (request_uri, destination, from_user, auth) = match (&self.cfg.server, &self.cfg.proxy)
        {
            (Some(server), Some(account)) => (
                format!("sip:{}@{}", call.callee, server.host_port),
                (server.transport, server.addr),
                account.user.clone(),
                Some(auth::ClientAuth::with_seed(
                    &account.user,
                    &account.password,
                    self.rng.bytes::<16>(),
                )),
            ),
            (Some(_), None) => return Err(CallError::NoRoute),
            (None, _) => {
                let binding = self
                    .registrar
                    .bindings(now, &call.callee)
                    .next()
                    .ok_or(CallError::NoRoute)?;
                let uri = binding
                    .contact
                    .trim()
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .to_string();
                // Like a registrar-proxy: to the address the REGISTER came from (NAT).
                (
                    uri,
                    (binding.transport, binding.source),
                    call.caller.clone(),
                    None,
                )
            }
        };
        let display = call.display_name.as_deref().unwrap_or(&call.caller);
        let local_uri = format!("sip:{from_user}@{domain}");
        let remote_uri = format!("sip:{}@{domain}", call.callee);
        let local_tag = self.rng.token(16);
        let from_header = format!("{} <{local_uri}>;tag={local_tag}", quote(display));
        let to_header = format!("<{remote_uri}>");
        let call_id = format!("{}@srgate", self.rng.token(24));
        let contact = self.contact_for(&from_user, destination.0);
        let id = call.id;
        let mut c = SipCall {
            id,
            outgoing: true,
            phase: Phase::Trying,
            silent: false,
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            local_uri,
            remote_uri,
            from_header,
            to_header,
            request_uri,
            invite_cseq: 0,
            invite_branch: String::new(),
            destination,
            contact,
            sdp: call.sdp,
            headers: call.headers,
            auth,
            dialog: None,
            cancel_owed: false,
            cancel_sent: false,
            ack: None,
            server_key: None,
            ok: None,
            progress_seen: Vec::new(),
        };
        c.invite_cseq = 1;
        self.calls.by_dialog.insert((call_id, local_tag), id);
        self.calls.calls.insert(id, c);
        self.send_invite(now, id);
        Ok(())
    }

    fn send_invite(&mut self, now: Instant, id: SipCallId) {
        let user_agent = self.cfg.user_agent.clone();
        let Some(transport) = self.calls.calls.get(&id).map(|c| c.destination.0) else {
            return;
        };
        let (via, branch) = self.via(transport);
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        c.invite_branch = branch.clone();
        let mut b = MessageBuilder::request(Method::Invite, &c.request_uri)
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, &c.from_header)
            .header(HeaderName::To, &c.to_header)
            .header(HeaderName::CallId, &c.call_id)
            .header(HeaderName::CSeq, format_args!("{} INVITE", c.invite_cseq))
            .header(HeaderName::Contact, &c.contact)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::UserAgent, &user_agent);
        for (name, value) in &c.headers {
            b = b.header(HeaderName::new(name), value);
        }
        if let Some(auth) = c.auth.as_mut() {
            for h in auth.authorize("INVITE", &c.request_uri) {
                b = b.header(HeaderName::new(h.name), h.value);
            }
        }
        let payload = b.body("application/sdp", c.sdp.as_bytes()).build();
        let destination = c.destination;
        log::debug!(
            "INVITE {} (CSeq {}) to {}",
            crate::pii::Pii(&c.request_uri),
            c.invite_cseq,
            destination.1
        );
        let machine = ClientInviteTransaction::new(now, payload, destination.0.reliable());
        self.calls.invites.insert(
            branch.clone(),
            InviteTx {
                call: id,
                machine,
                destination,
            },
        );
        self.after_invite_input(now, &branch, None);
    }

    /// The ACK for a non-2xx final (§17.1.1.3): the INVITE's Request-URI, top Via, From,
    /// Call-ID and CSeq number, the response's To.
    fn non_2xx_ack(c: &SipCall, via: &str, to: &str, cseq: u32) -> Vec<u8> {
        MessageBuilder::request(Method::Ack, &c.request_uri)
            .header(HeaderName::Via, via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, &c.from_header)
            .header(HeaderName::To, to)
            .header(HeaderName::CallId, &c.call_id)
            .header(HeaderName::CSeq, format_args!("{cseq} ACK"))
            .build()
    }

    /// A response whose top Via branch is a call's client transaction; false if none is.
    pub(super) fn call_response(&mut self, now: Instant, branch: &str, msg: &Message<'_>) -> bool {
        let Some(status) = msg.status() else {
            return false;
        };
        if let Some(tx) = self.calls.invites.get_mut(branch) {
            if tx.machine.handle_response(now, status).is_err() {
                self.metrics.dropped += 1;
                return true;
            }
            let key = branch.to_string();
            self.after_invite_input(now, &key, Some(msg));
            return true;
        }
        if let Some(other) = self.calls.others.get_mut(branch) {
            let _ = other.tx.machine.handle_response(now, status);
            let key = branch.to_string();
            self.after_other_input(&key);
            return true;
        }
        // A 2xx retransmitted after the INVITE transaction ended: ACK it again.
        if (200..300).contains(&status)
            && let (Ok(call_id), Ok(from)) = (msg.call_id(), msg.from())
            && let Some(id) = self
                .calls
                .by_dialog
                .get(&(call_id.to_string(), from.tag.unwrap_or("").to_string()))
            && let Some(c) = self.calls.calls.get(id)
            && let Some(ack) = c.ack.clone()
        {
            let (transport, destination) = c.destination;
            self.transmits.push_back(Transmit {
                transport,
                destination,
                payload: ack,
            });
            return true;
        }
        false
    }

    fn after_invite_input(&mut self, now: Instant, branch: &str, msg: Option<&Message<'_>>) {
        let Some(tx) = self.calls.invites.get_mut(branch) else {
            return;
        };
        let (transport, destination) = tx.destination;
        let id = tx.call;
        let mut events = Vec::new();
        while let Some(ev) = tx.machine.poll_event() {
            events.push(ev);
        }
        // The ACK of a non-2xx first: a retry the response causes (digest) comes after it.
        events.sort_by_key(|ev| *ev != TxEvent::NeedAck);
        for ev in events {
            match ev {
                TxEvent::Response(code) => {
                    if let Some(msg) = msg {
                        self.on_invite_response(now, id, code, msg);
                    }
                }
                TxEvent::NeedAck => {
                    let ack = match (self.calls.calls.get(&id), msg) {
                        (Some(c), Some(msg)) => {
                            let via = msg.header(HeaderName::Via).unwrap_or("").trim().to_string();
                            let to = msg.header(HeaderName::To).unwrap_or("").trim().to_string();
                            let cseq = msg.cseq().map(|c| c.seq).unwrap_or(c.invite_cseq);
                            Some(Self::non_2xx_ack(c, &via, &to, cseq))
                        }
                        _ => None,
                    };
                    if let (Some(ack), Some(tx)) = (ack, self.calls.invites.get_mut(branch)) {
                        let _ = tx.machine.send_ack(now, ack);
                        // Out before anything the response leads to (a digest retry).
                        while let Some(bytes) = tx.machine.poll_transmit() {
                            self.transmits.push_back(Transmit {
                                transport,
                                destination,
                                payload: bytes.to_vec(),
                            });
                        }
                    }
                }
                TxEvent::Timeout | TxEvent::TransportError => {
                    let code = if ev == TxEvent::Timeout { 408 } else { 503 };
                    self.end_outgoing(id, code, reason_phrase(code));
                }
                _ => {}
            }
        }
        if let Some(tx) = self.calls.invites.get_mut(branch) {
            while let Some(bytes) = tx.machine.poll_transmit() {
                self.transmits.push_back(Transmit {
                    transport,
                    destination,
                    payload: bytes.to_vec(),
                });
            }
            if tx.machine.is_terminated() {
                self.calls.invites.remove(branch);
                // A silent call whose INVITE is over has nothing left.
                if self
                    .calls
                    .calls
                    .get(&id)
                    .is_some_and(|c| c.silent && c.phase != Phase::Confirmed)
                {
                    self.forget(id);
                }
            }
        }
    }

    /// An outgoing call ended before it was answered.
    fn end_outgoing(&mut self, id: SipCallId, code: u16, reason: &str) {
        let Some(c) = self.calls.calls.get(&id) else {
            return;
        };
        if !c.silent {
            self.events.push_back(Event::CallFailed {
                id,
                code,
                reason: reason.to_string(),
            });
        }
        self.forget(id);
    }

    fn forget(&mut self, id: SipCallId) {
        if let Some(c) = self.calls.calls.remove(&id) {
            self.calls.by_dialog.remove(&(c.call_id, c.local_tag));
            if let Some(key) = c.server_key {
                self.calls.by_server.remove(&key);
            }
        }
    }

    fn body_sdp(msg: &Message<'_>) -> Option<String> {
        let sdp = msg
            .header(HeaderName::ContentType)
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"));
        (sdp && !msg.body().is_empty()).then(|| String::from_utf8_lossy(msg.body()).into_owned())
    }

    fn on_invite_response(&mut self, now: Instant, id: SipCallId, code: u16, msg: &Message<'_>) {
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        match code {
            100 => {}
            101..=199 => {
                let has_tag = msg.to().ok().and_then(|t| t.tag).is_some();
                if has_tag && c.dialog.is_none() {
                    c.dialog = Dialog::new_uac(
                        msg,
                        &c.local_tag,
                        c.invite_cseq,
                        &c.local_uri,
                        &c.remote_uri,
                        false,
                    )
                    .ok();
                }
                if c.phase == Phase::Trying {
                    c.phase = Phase::Early;
                }
                if c.cancel_owed && !c.cancel_sent {
                    self.send_cancel(now, id);
                    return;
                }
                if !c.silent && !c.progress_seen.contains(&code) && (code == 180 || code == 183) {
                    c.progress_seen.push(code);
                    let sdp = Self::body_sdp(msg);
                    self.events.push_back(Event::CallProgress { id, code, sdp });
                }
            }
            200..=299 => self.on_invite_2xx(now, id, msg),
            401 | 407 if !c.silent => {
                let kind = if code == 401 {
                    auth::AuthKind::Www
                } else {
                    auth::AuthKind::Proxy
                };
                let retry = match c.auth.as_mut() {
                    Some(a) => a
                        .handle_challenge(
                            kind,
                            msg.header_all(HeaderName::new(kind.challenge_header())),
                        )
                        .is_ok(),
                    None => false,
                };
                if retry {
                    c.invite_cseq += 1;
                    c.phase = Phase::Trying;
                    self.send_invite(now, id);
                } else {
                    let reason = msg.reason().unwrap_or("").to_string();
                    self.end_outgoing(id, code, &reason);
                }
            }
            _ => {
                let reason = msg.reason().unwrap_or("").to_string();
                self.end_outgoing(id, code, &reason);
            }
        }
    }

    fn on_invite_2xx(&mut self, now: Instant, id: SipCallId, msg: &Message<'_>) {
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        if let Some(ack) = c.ack.clone() {
            // A retransmitted 2xx: the same ACK again.
            let (transport, destination) = c.destination;
            self.transmits.push_back(Transmit {
                transport,
                destination,
                payload: ack,
            });
            return;
        }
        let dialog = Dialog::new_uac(
            msg,
            &c.local_tag,
            c.invite_cseq,
            &c.local_uri,
            &c.remote_uri,
            false,
        );
        let mut dialog = match dialog {
            Ok(d) => d,
            Err(e) => {
                log::info!("2xx without what a dialog needs ({e:?}): call ended");
                self.end_outgoing(id, 502, "Bad Gateway");
                return;
            }
        };
        c.phase = Phase::Confirmed;
        let transport = c.destination.0;
        let (via, _) = {
            let branch = format!("{BRANCH_PREFIX}{}", self.rng.token(20));
            (
                format!(
                    "SIP/2.0/{} {};branch={branch};rport",
                    transport.via_token(),
                    self.cfg.local
                ),
                branch,
            )
        };
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let ack = dialog
            .request(Method::Ack, Some(c.invite_cseq))
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::Contact, &c.contact)
            .build();
        c.ack = Some(ack.clone());
        c.dialog = Some(dialog);
        let (transport, destination) = c.destination;
        self.transmits.push_back(Transmit {
            transport,
            destination,
            payload: ack,
        });
        if c.silent {
            // Hung up while the 2xx was on its way: end the dialog at once.
            self.send_bye(now, id);
            self.forget(id);
            return;
        }
        if let Some(a) = c.auth.as_mut() {
            a.handle_success();
        }
        let sdp = Self::body_sdp(msg).unwrap_or_default();
        self.events.push_back(Event::CallAnswered { id, sdp });
    }

    fn send_cancel(&mut self, now: Instant, id: SipCallId) {
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        c.cancel_sent = true;
        let transport = c.destination.0;
        // Same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE.
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            transport.via_token(),
            self.cfg.local,
            c.invite_branch
        );
        let payload = MessageBuilder::request(Method::Cancel, &c.request_uri)
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, &c.from_header)
            .header(HeaderName::To, &c.to_header)
            .header(HeaderName::CallId, &c.call_id)
            .header(HeaderName::CSeq, format_args!("{} CANCEL", c.invite_cseq))
            .build();
        let branch = format!("cancel:{}", c.invite_branch);
        let destination = c.destination;
        self.start_other(now, branch, OtherKind::Cancel, payload, destination);
    }

    fn send_bye(&mut self, now: Instant, id: SipCallId) {
        let transport = match self.calls.calls.get(&id) {
            Some(c) => c.destination.0,
            None => return,
        };
        let (via, branch) = self.via(transport);
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        let payload = dialog
            .request(Method::Bye, None)
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, 70)
            .build();
        let destination = c.destination;
        self.start_other(now, branch, OtherKind::Bye, payload, destination);
    }

    fn start_other(
        &mut self,
        now: Instant,
        key: String,
        kind: OtherKind,
        payload: Vec<u8>,
        destination: (Transport, SocketAddr),
    ) {
        let machine = ClientTransaction::new(now, payload, destination.0.reliable());
        self.calls.others.insert(
            key.clone(),
            OtherTx {
                kind,
                tx: ClientTx {
                    machine,
                    destination,
                },
            },
        );
        self.after_other_input(&key);
    }

    fn after_other_input(&mut self, key: &str) {
        let Some(other) = self.calls.others.get_mut(key) else {
            return;
        };
        let (transport, destination) = other.tx.destination;
        while let Some(bytes) = other.tx.machine.poll_transmit() {
            self.transmits.push_back(Transmit {
                transport,
                destination,
                payload: bytes.to_vec(),
            });
        }
        while other.tx.machine.poll_event().is_some() {}
        if other.tx.machine.is_terminated() {
            log::debug!("{:?} transaction done", other.kind);
            self.calls.others.remove(key);
        }
    }

    /// Rings an incoming call: 180.
    pub fn ring(&mut self, now: Instant, id: SipCallId) {
        let Some(c) = self.calls.calls.get(&id) else {
            return;
        };
        let (Some(key), Phase::Trying | Phase::Early) = (c.server_key.clone(), c.phase) else {
            return;
        };
        let contact = c.contact.clone();
        if let Some(c) = self.calls.calls.get_mut(&id) {
            c.phase = Phase::Early;
        }
        self.respond(now, &key, 180, "Ringing", &[("Contact", contact)]);
    }

    /// Answers an incoming call with srgate's SDP: 200, retransmitted until the ACK.
    pub fn answer(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        let user_agent = self.cfg.user_agent.clone();
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let Some(key) = c.server_key.clone() else {
            return;
        };
        if c.outgoing || c.phase == Phase::Confirmed {
            return;
        }
        let Some(tx) = self.server_txs.get_mut(&key) else {
            return;
        };
        let mut b = MessageBuilder::response(200, "OK");
        for (name, value) in &tx.head {
            b = b.header(*name, value);
        }
        let payload = b
            .header(HeaderName::Contact, &c.contact)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::new("Server"), &user_agent)
            .body("application/sdp", sdp.as_bytes())
            .build();
        c.sdp = sdp.to_string();
        c.phase = Phase::Confirmed;
        c.ok = Some(OkRetransmit {
            payload: payload.clone(),
            next: now + T1,
            interval: T1,
            give_up: now + 64 * T1,
        });
        if c.destination.0.reliable()
            && let Some(ok) = c.ok.as_mut()
        {
            // No retransmission over TCP, only the wait for the ACK.
            ok.next = ok.give_up;
        }
        tx.final_sent = true;
        if let ServerMachine::Invite(m) = &mut tx.machine {
            let _ = m.send_response(now, 200, payload);
        }
        Self::drain_server(&mut self.transmits, tx);
    }

    /// Refuses an incoming call that is not answered yet.
    pub fn reject(&mut self, now: Instant, id: SipCallId, code: u16) {
        let Some(c) = self.calls.calls.get(&id) else {
            return;
        };
        if c.outgoing || c.phase == Phase::Confirmed {
            return;
        }
        if let Some(key) = c.server_key.clone() {
            let code = if (300..700).contains(&code) {
                code
            } else {
                480
            };
            // an overloaded gateway says when to come back (RFC 3261 §21.5.4)
            let retry: &[(&str, String)] = if code == 503 {
                &[("Retry-After", "5".into())]
            } else {
                &[]
            };
            self.respond(now, &key, code, reason_phrase(code), retry);
        }
        self.forget(id);
    }

    /// Ends a call in whatever state it is (see the module doc); no event follows.
    pub fn hangup(&mut self, now: Instant, id: SipCallId) {
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        c.silent = true;
        match (c.outgoing, c.phase) {
            (_, Phase::Confirmed) => {
                c.ok = None;
                self.send_bye(now, id);
                self.forget(id);
            }
            (true, Phase::Early) if !c.cancel_sent => self.send_cancel(now, id),
            (true, _) => c.cancel_owed = true,
            (false, _) => self.reject(now, id, 487),
        }
    }

    /// An INVITE that passed the checks (proxy: from sip_svr; standalone: authenticated),
    /// for `app_user`.
    pub(super) fn incoming_call(
        &mut self,
        now: Instant,
        key: &ServerKey,
        msg: &Message<'_>,
        app_user: &str,
    ) {
        let Some(sdp) = Self::body_sdp(msg) else {
            self.respond(now, key, 488, "Not Acceptable Here", &[]);
            return;
        };
        if self.calls.calls.len() >= MAX_SIP_CALLS {
            self.respond(
                now,
                key,
                503,
                "Service Unavailable",
                &[("Retry-After", "5".into())],
            );
            return;
        }
        let Some(tx) = self.server_txs.get(key) else {
            return;
        };
        let to_value = tx
            .head
            .iter()
            .find(|(n, _)| *n == HeaderName::To)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let destination = tx.destination;
        let Some(local_tag) = tag_of(&to_value).map(str::to_string) else {
            return;
        };
        let dialog = match Dialog::new_uas(msg, &local_tag, 0) {
            Ok(d) => d,
            Err(e) => {
                log::info!("INVITE refused: {e:?}");
                self.respond(now, key, 400, "Missing Contact", &[]);
                return;
            }
        };
        let from = msg.from().ok();
        let caller = from
            .as_ref()
            .and_then(|f| f.uri.user)
            .unwrap_or("anonymous")
            .to_string();
        let caller_name = from
            .as_ref()
            .and_then(|f| f.display)
            .map(|d| d.trim().trim_matches('"').to_string())
            .filter(|d| !d.is_empty());
        let cus_data = msg
            .header(HeaderName::Other("X-CusData"))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        self.calls.next_incoming += 1;
        let id = SipCallId(INCOMING_BIT | self.calls.next_incoming);
        let user = self
            .cfg
            .proxy
            .as_ref()
            .map(|p| p.user.clone())
            .unwrap_or_else(|| app_user.to_string());
        let contact = self.contact_for(&user, destination.0);
        let c = SipCall {
            id,
            outgoing: false,
            phase: Phase::Trying,
            silent: false,
            call_id: dialog.call_id.clone(),
            local_tag: local_tag.clone(),
            local_uri: dialog.local_uri.clone(),
            remote_uri: dialog.remote_uri.clone(),
            from_header: String::new(),
            to_header: to_value,
            request_uri: String::new(),
            invite_cseq: dialog.remote_seq.unwrap_or(0),
            invite_branch: key.0.clone(),
            destination,
            contact,
            sdp: String::new(),
            headers: Vec::new(),
            auth: None,
            dialog: Some(dialog),
            cancel_owed: false,
            cancel_sent: false,
            ack: None,
            server_key: Some(key.clone()),
            ok: None,
            progress_seen: Vec::new(),
        };
        self.calls
            .by_dialog
            .insert((c.call_id.clone(), local_tag), id);
        self.calls.by_server.insert(key.clone(), id);
        self.calls.calls.insert(id, c);
        self.respond(now, key, 100, "Trying", &[]);
        log::info!(
            "INVITE for {} from {}: offered to the app",
            crate::pii::Pii(app_user),
            crate::pii::Pii(&caller)
        );
        self.events.push_back(Event::IncomingCall {
            id,
            app_user: app_user.to_string(),
            caller,
            caller_name,
            cus_data,
            sdp,
        });
    }

    /// The caller cancelled the INVITE of server transaction `invite_key` (the 487 is sent).
    pub(super) fn call_cancelled(&mut self, invite_key: &ServerKey) {
        if let Some(id) = self.calls.by_server.get(invite_key).copied() {
            let silent = self.calls.calls.get(&id).is_none_or(|c| c.silent);
            if !silent {
                self.events.push_back(Event::CallCanceled { id });
            }
            self.forget(id);
        }
    }

    /// An ACK for a 2xx of ours (not matched by a transaction). True if it was one.
    pub(super) fn call_ack(&mut self, msg: &Message<'_>) -> bool {
        let Some(id) = self.dialog_of(msg) else {
            return false;
        };
        if let Some(c) = self.calls.calls.get_mut(&id) {
            c.ok = None;
        }
        true
    }

    fn dialog_of(&self, msg: &Message<'_>) -> Option<SipCallId> {
        let call_id = msg.call_id().ok()?;
        let to_tag = msg.to().ok()?.tag?;
        self.calls
            .by_dialog
            .get(&(call_id.to_string(), to_tag.to_string()))
            .copied()
    }

    /// An in-dialog request (To tag present). False when no call matches (the caller
    /// answers 481).
    pub(super) fn call_in_dialog(
        &mut self,
        now: Instant,
        key: &ServerKey,
        msg: &Message<'_>,
        method: &Method<'_>,
    ) -> bool {
        let Some(id) = self.dialog_of(msg) else {
            return false;
        };
        self.keep(key);
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return false;
        };
        if let Some(dialog) = c.dialog.as_mut()
            && !matches!(method, Method::Ack)
            && dialog.on_request(msg).is_err()
        {
            self.respond(now, key, 500, "CSeq Out of Order", &[]);
            return true;
        }
        match method {
            Method::Bye => {
                let silent = c.silent;
                self.respond(now, key, 200, "OK", &[]);
                if !silent {
                    self.events.push_back(Event::CallEnded { id, code: None });
                }
                self.forget(id);
            }
            Method::Invite => {
                let Some(offer) = Self::body_sdp(msg) else {
                    // An offerless re-INVITE would need srgate's offer: not supported.
                    self.respond(now, key, 488, "Not Acceptable Here", &[]);
                    return true;
                };
                let answer = crate::sdp::sip::parse_rtp_sdp(&offer)
                    .ok()
                    .and_then(|r| crate::sdp::sip::reanswer(&c.sdp, &r));
                let Some(answer) = answer else {
                    self.respond(now, key, 488, "Not Acceptable Here", &[]);
                    return true;
                };
                c.sdp = answer.clone();
                let contact = c.contact.clone();
                let silent = c.silent;
                let user_agent = self.cfg.user_agent.clone();
                if let Some(tx) = self.server_txs.get_mut(key) {
                    let mut b = MessageBuilder::response(200, "OK");
                    for (name, value) in &tx.head {
                        b = b.header(*name, value);
                    }
                    let payload = b
                        .header(HeaderName::Contact, &contact)
                        .header(HeaderName::new("Server"), &user_agent)
                        .body("application/sdp", answer.as_bytes())
                        .build();
                    tx.final_sent = true;
                    if let ServerMachine::Invite(m) = &mut tx.machine {
                        let _ = m.send_response(now, 200, payload);
                    }
                    Self::drain_server(&mut self.transmits, tx);
                }
                if !silent {
                    self.events.push_back(Event::CallUpdated { id, sdp: offer });
                }
            }
            Method::Info => {
                let ct = msg.header(HeaderName::ContentType).unwrap_or("");
                let body = String::from_utf8_lossy(msg.body());
                match info_digit(ct, &body) {
                    Some((digit, duration_ms)) => {
                        let silent = c.silent;
                        self.respond(now, key, 200, "OK", &[]);
                        if !silent {
                            self.events.push_back(Event::Dtmf {
                                id,
                                digit,
                                duration_ms,
                            });
                        }
                    }
                    None if msg.body().is_empty() => self.respond(now, key, 200, "OK", &[]),
                    None => self.respond(
                        now,
                        key,
                        415,
                        "Unsupported Media Type",
                        &[(
                            "Accept",
                            "application/dtmf-relay, application/dtmf".to_string(),
                        )],
                    ),
                }
            }
            Method::Options => {
                self.respond(now, key, 200, "OK", &[("Allow", ALLOW.to_string())]);
            }
            _ => self.respond(
                now,
                key,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW.to_string())],
            ),
        }
        true
    }

    /// The calls' own timers: 2xx retransmission, client transactions.
    pub(super) fn calls_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for c in self.calls.calls.values() {
            consider(c.ok.as_ref().map(|o| o.next.min(o.give_up)));
        }
        for tx in self.calls.invites.values() {
            consider(tx.machine.poll_timeout());
        }
        for o in self.calls.others.values() {
            consider(o.tx.machine.poll_timeout());
        }
        next
    }

    pub(super) fn calls_handle_timeout(&mut self, now: Instant) {
        let branches: Vec<String> = self
            .calls
            .invites
            .iter()
            .filter(|(_, t)| t.machine.poll_timeout().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for b in branches {
            if let Some(tx) = self.calls.invites.get_mut(&b) {
                tx.machine.handle_timeout(now);
            }
            self.after_invite_input(now, &b, None);
        }
        let others: Vec<String> = self
            .calls
            .others
            .iter()
            .filter(|(_, t)| t.tx.machine.poll_timeout().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in others {
            if let Some(o) = self.calls.others.get_mut(&k) {
                o.tx.machine.handle_timeout(now);
            }
            self.after_other_input(&k);
        }
        let mut dead = Vec::new();
        for c in self.calls.calls.values_mut() {
            let Some(ok) = c.ok.as_mut() else { continue };
            if now >= ok.give_up {
                dead.push(c.id);
                continue;
            }
            if now >= ok.next {
                self.transmits.push_back(Transmit {
                    transport: c.destination.0,
                    destination: c.destination.1,
                    payload: ok.payload.clone(),
                });
                ok.interval = (ok.interval * 2).min(T2);
                ok.next = now + ok.interval;
            }
        }
        for id in dead {
            // No ACK for our 2xx: the dialog is ended with a BYE (§13.3.1.4).
            log::info!("no ACK for the 2xx of SIP call {id:?}: BYE");
            if let Some(c) = self.calls.calls.get_mut(&id) {
                c.ok = None;
                let silent = c.silent;
                self.send_bye(now, id);
                if !silent {
                    self.events.push_back(Event::CallEnded {
                        id,
                        code: Some(408),
                    });
                }
            }
            self.forget(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies() {
        assert_eq!(
            info_digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some(('5', 160))
        );
        assert_eq!(
            info_digit("application/dtmf-relay", "Signal=#\n"),
            Some(('#', 160))
        );
        assert_eq!(info_digit("application/dtmf", "9"), Some(('9', 250)));
        assert_eq!(info_digit("text/plain", "Signal=5"), None);
        assert_eq!(info_digit("application/dtmf-relay", "Signal=x"), None);
    }

    #[test]
    fn tags_and_headers() {
        assert_eq!(tag_of("<sip:a@b>;tag=abc;x=1"), Some("abc"));
        assert_eq!(tag_of("<sip:a@b>"), None);
        assert!(header_ok("X-ArInfo", "hello"));
        assert!(!header_ok("X-ArInfo", "a\r\nVia: x"));
        assert!(!header_ok("Bad Name", "x"));
        assert_eq!(quote("A \"B\""), "\"A B\"");
    }

    use super::super::{EndpointConfig, ProxyAccount, Server};
    use crate::sip::auth::Algorithm;

    const PBX: &str = "127.0.0.1:5060";
    const OURS: &str = "127.0.0.1:5086";
    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn ep(now: Instant) -> Endpoint {
        let mut ep = Endpoint::new(
            EndpointConfig {
                local: OURS.parse().unwrap(),
                domain: "127.0.0.1".into(),
                server: Some(Server {
                    addr: PBX.parse().unwrap(),
                    transport: Transport::Udp,
                    host_port: PBX.into(),
                }),
                proxy: Some(ProxyAccount {
                    user: "1000".into(),
                    password: "1234".into(),
                    expires: 300,
                }),
                users: vec![],
                digest: vec![Algorithm::Md5],
                seed: [3; 32],
                user_agent: "srgate-test".into(),
            },
            now,
        );
        while ep.poll_transmit().is_some() {}
        ep
    }

    fn send(ep: &mut Endpoint, now: Instant, text: &str) {
        ep.handle_receive(now, Transport::Udp, PBX.parse().unwrap(), text.as_bytes());
    }

    fn sent(ep: &mut Endpoint) -> Vec<String> {
        std::iter::from_fn(|| ep.poll_transmit())
            .map(|t| String::from_utf8(t.payload).unwrap())
            .collect()
    }

    /// The responses sent (the proxy account's REGISTERs left out).
    fn responses(ep: &mut Endpoint) -> Vec<u16> {
        sent(ep)
            .iter()
            .filter(|t| t.starts_with("SIP/2.0 "))
            .map(|t| status(t))
            .collect()
    }

    fn events(ep: &mut Endpoint) -> Vec<Event> {
        std::iter::from_fn(|| ep.poll_event()).collect()
    }

    fn with_body(head: &str, ct: &str, body: &str) -> String {
        format!(
            "{head}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn invite(branch: &str, cseq: u32, to_tag: &str, body: &str) -> String {
        with_body(
            &format!(
                "INVITE sip:1000@{OURS} SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK{branch}\r\n\
                 Max-Forwards: 70\r\nFrom: \"Door\" <sip:1006@127.0.0.1>;tag=pbx1\r\n\
                 To: <sip:1000@127.0.0.1>{to_tag}\r\nCall-ID: c1@pbx\r\nCSeq: {cseq} INVITE\r\n\
                 Contact: <sip:1006@{PBX}>\r\nX-Number: <sip:1001@127.0.0.1>\r\nX-CusData: hello\r\n"
            ),
            "application/sdp",
            body,
        )
    }

    fn in_dialog(method: &str, branch: &str, cseq: u32, tag: &str, extra: &str) -> String {
        format!(
            "{method} sip:1000@{OURS} SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1006@127.0.0.1>;tag=pbx1\r\n\
             To: <sip:1000@127.0.0.1>;tag={tag}\r\nCall-ID: c1@pbx\r\nCSeq: {cseq} {method}\r\n{extra}"
        )
    }

    fn status(text: &str) -> u16 {
        text.get(8..11)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a response: {text}"))
    }

    /// An answered incoming call: (endpoint, id, our tag).
    fn answered(now: Instant) -> (Endpoint, SipCallId, String) {
        let mut ep = ep(now);
        send(&mut ep, now, &invite("i1", 1, "", OFFER));
        assert_eq!(responses(&mut ep), [100]);
        let ev = events(&mut ep);
        let Some(Event::IncomingCall {
            id,
            app_user,
            caller,
            caller_name,
            cus_data,
            sdp,
        }) = ev.first().cloned()
        else {
            panic!("{ev:?}");
        };
        assert_eq!((app_user.as_str(), caller.as_str()), ("1001", "1006"));
        assert_eq!(
            (caller_name.as_deref(), cus_data.as_deref()),
            (Some("Door"), Some("hello"))
        );
        assert_eq!(sdp, OFFER);
        ep.ring(now, id);
        let ringing = sent(&mut ep);
        assert_eq!(status(&ringing[0]), 180);
        ep.answer(now, id, OFFER);
        let ok = sent(&mut ep);
        assert_eq!(status(&ok[0]), 200);
        assert!(ok[0].contains("Content-Type: application/sdp"), "{}", ok[0]);
        let tag = ok[0]
            .lines()
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split("tag=").nth(1))
            .unwrap()
            .trim()
            .to_string();
        (ep, id, tag)
    }

    #[test]
    fn an_incoming_call_refused_for_overload_gets_503_with_retry_after() {
        let now = t0();
        let mut ep = ep(now);
        send(&mut ep, now, &invite("o1", 1, "", OFFER));
        assert_eq!(responses(&mut ep), [100]);
        let Some(Event::IncomingCall { id, .. }) = events(&mut ep).first().cloned() else {
            panic!("an incoming call");
        };
        ep.reject(now, id, 503);
        let out = sent(&mut ep);
        assert_eq!(status(&out[0]), 503, "{out:?}");
        assert!(out[0].contains("\r\nRetry-After: 5\r\n"), "{}", out[0]);
        // other refusals say nothing of coming back
        let mut ep2 = super::tests::ep(now);
        send(&mut ep2, now, &invite("o2", 1, "", OFFER));
        let _ = responses(&mut ep2);
        let Some(Event::IncomingCall { id, .. }) = events(&mut ep2).first().cloned() else {
            panic!("an incoming call");
        };
        ep2.reject(now, id, 486);
        let out = sent(&mut ep2);
        assert_eq!(status(&out[0]), 486);
        assert!(!out[0].contains("Retry-After"), "{}", out[0]);
    }

    #[test]
    fn an_incoming_200_is_retransmitted_until_the_ack_and_bye_ends_the_call() {
        let now = t0();
        let (mut ep, id, tag) = answered(now);
        ep.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(responses(&mut ep), [200]);
        send(
            &mut ep,
            now,
            &format!(
                "{}Content-Length: 0\r\n\r\n",
                in_dialog("ACK", "a1", 1, &tag, "")
            ),
        );
        ep.handle_timeout(now + Duration::from_millis(1500));
        assert!(responses(&mut ep).is_empty(), "no 200 after the ACK");
        send(
            &mut ep,
            now,
            &format!(
                "{}Content-Length: 0\r\n\r\n",
                in_dialog("BYE", "b1", 2, &tag, "")
            ),
        );
        assert_eq!(responses(&mut ep), [200]);
        assert_eq!(events(&mut ep), vec![Event::CallEnded { id, code: None }]);
        assert_eq!(ep.active_calls(), 0);
    }

    #[test]
    fn without_an_ack_the_call_ends_with_a_bye() {
        let now = t0();
        let (mut ep, id, _) = answered(now);
        ep.handle_timeout(now + Duration::from_secs(33));
        let out = sent(&mut ep);
        assert!(
            out.iter().any(|t| t.starts_with("BYE sip:1006@")),
            "{out:?}"
        );
        assert_eq!(
            events(&mut ep),
            vec![Event::CallEnded {
                id,
                code: Some(408)
            }]
        );
    }

    #[test]
    fn a_hold_reinvite_is_answered_recvonly_and_info_brings_digits() {
        let now = t0();
        let (mut ep, id, tag) = answered(now);
        send(
            &mut ep,
            now,
            &format!(
                "{}Content-Length: 0\r\n\r\n",
                in_dialog("ACK", "a1", 1, &tag, "")
            ),
        );
        let hold = OFFER.replace("sendrecv", "sendonly");
        send(
            &mut ep,
            now,
            &invite("r1", 2, &format!(";tag={tag}"), &hold),
        );
        let out = sent(&mut ep);
        let ok = out
            .iter()
            .find(|t| status(t) == 200)
            .expect("200 to the re-INVITE");
        assert!(ok.contains("a=recvonly"), "{ok}");
        assert_eq!(events(&mut ep), vec![Event::CallUpdated { id, sdp: hold }]);
        let info = with_body(
            &in_dialog("INFO", "n1", 3, &tag, ""),
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n",
        );
        send(&mut ep, now, &info);
        assert_eq!(status(&sent(&mut ep)[0]), 200);
        assert_eq!(
            events(&mut ep),
            vec![Event::Dtmf {
                id,
                digit: '5',
                duration_ms: 160
            }]
        );
        let odd = with_body(&in_dialog("INFO", "n2", 4, &tag, ""), "text/plain", "hi");
        send(&mut ep, now, &odd);
        assert_eq!(status(&sent(&mut ep)[0]), 415);
        assert_eq!(ep.active_calls(), 1, "the call lives on");
    }

    #[test]
    fn an_outgoing_call_authenticates_rings_is_answered_and_hangs_up_with_bye() {
        let now = t0();
        let mut ep = ep(now);
        let id = SipCallId(7);
        ep.start_call(
            now,
            OutgoingCall {
                id,
                callee: "1006".into(),
                caller: "1001".into(),
                display_name: None,
                sdp: OFFER.into(),
                headers: vec![("X-ArInfo".into(), "data".into())],
            },
        )
        .unwrap();
        assert_eq!(
            ep.start_call(
                now,
                OutgoingCall {
                    id,
                    callee: "1".into(),
                    caller: "1".into(),
                    display_name: None,
                    sdp: String::new(),
                    headers: vec![]
                }
            ),
            Err(CallError::Duplicate)
        );
        let first = sent(&mut ep).remove(0);
        assert!(
            first.starts_with(&format!("INVITE sip:1006@{PBX} SIP/2.0")),
            "{first}"
        );
        assert!(
            first.contains("From: \"1001\" <sip:1000@127.0.0.1>;tag="),
            "{first}"
        );
        assert!(first.contains("X-ArInfo: data"), "{first}");
        let copy = |name: &str, text: &str| -> String {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        let response = |code: &str, text: &str, extra: &str, body: &str| -> String {
            let head = format!(
                "SIP/2.0 {code}\r\n{}\r\n{}\r\n{}\r\n{}\r\n{}\r\n{extra}",
                copy("Via:", text),
                copy("From:", text),
                copy("To:", text),
                copy("Call-ID:", text),
                copy("CSeq:", text)
            );
            if body.is_empty() {
                format!("{head}Content-Length: 0\r\n\r\n")
            } else {
                with_body(&head, "application/sdp", body)
            }
        };
        send(
            &mut ep,
            now,
            &response(
                "407 Proxy Authentication Required",
                &first,
                "Proxy-Authenticate: Digest realm=\"127.0.0.1\", nonce=\"abc\", algorithm=MD5\r\n",
                "",
            ),
        );
        let out = sent(&mut ep);
        assert!(out[0].starts_with("ACK "), "the 407 is ACKed: {out:?}");
        let second = &out[1];
        assert!(
            second.starts_with("INVITE ") && second.contains("Proxy-Authorization: Digest"),
            "{second}"
        );
        assert!(second.contains("CSeq: 2 INVITE"), "{second}");
        let with_tag = second.replace(
            &copy("To:", second),
            &format!("{};tag=far", copy("To:", second)),
        );
        send(
            &mut ep,
            now,
            &response(
                "180 Ringing",
                &with_tag,
                &format!("Contact: <sip:1006@{PBX}>\r\n"),
                "",
            ),
        );
        assert_eq!(
            events(&mut ep),
            vec![Event::CallProgress {
                id,
                code: 180,
                sdp: None
            }]
        );
        send(
            &mut ep,
            now,
            &response(
                "200 OK",
                &with_tag,
                &format!("Contact: <sip:1006@{PBX}>\r\n"),
                OFFER,
            ),
        );
        let out = sent(&mut ep);
        assert!(
            out.iter()
                .any(|t| t.starts_with(&format!("ACK sip:1006@{PBX}"))),
            "{out:?}"
        );
        assert_eq!(
            events(&mut ep),
            vec![Event::CallAnswered {
                id,
                sdp: OFFER.into()
            }]
        );
        ep.hangup(now, id);
        let out = sent(&mut ep);
        assert!(
            out.iter()
                .any(|t| t.starts_with("BYE ") && t.contains("tag=far")),
            "{out:?}"
        );
        assert!(
            events(&mut ep).is_empty(),
            "no event after the call layer's own hangup"
        );
        assert_eq!(ep.active_calls(), 0);
    }
}
