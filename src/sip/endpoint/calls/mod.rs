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
//!   the dialog ends with a BYE. An INVITE without an SDP offer gets srgate's offer in the
//!   2xx and the answer comes in the ACK.
//! - In a dialog: BYE → 200 and the call ends; a re-INVITE (hold, new address) is
//!   answered with srgate's previous description, direction mirrored
//!   ([`crate::sdp::sip::reanswer`]); INFO with `application/dtmf-relay` or
//!   `application/dtmf` → 200 and a digit; OPTIONS → 200; anything else for a dialog we do
//!   not know → 481.
//!
//! - Ring groups (`[groups]`): the INVITE is offered to every app member at once as
//!   branches of one call; the first claimed takes it (see `fork`).
//! - Internal calls (standalone): an app user's call to an app user or a ring group is
//!   offered back to the call layer without a message on the wire (see `internal`).
//!
//! This file holds the call table and what both directions share (hangup, BYE and CANCEL
//! transactions, the calls' timers); `outgoing` has calls toward SIP, `incoming` calls
//! from SIP, `in_dialog` the requests within a dialog (ACK, BYE, re-INVITE, INFO).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{BRANCH_PREFIX, ClientTx, Endpoint, Event, ServerKey, Transmit, Transport};
use crate::sip::auth;
use crate::sip::dialog::Dialog;
use crate::sip::transaction::Event as TxEvent;
use crate::sip::transaction::client::ClientTransaction;
use crate::sip::transaction::client_invite::ClientInviteTransaction;
use crate::sip::transaction::{T1, T2};
use crate::wire::sip::{HeaderName, Message, MessageBuilder, Method};

mod call_account;
#[cfg(test)]
mod call_account_tests;
pub use call_account::CallAccount;
mod fork;
#[cfg(test)]
mod fork_tests;
mod in_dialog;
mod incoming;
pub(super) mod internal;
mod outgoing;
mod session_timer;
#[cfg(test)]
mod session_timer_tests;
#[cfg(test)]
mod tests;

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
    /// Where the callee may be (standalone; proxy mode sends every call to the PBX).
    pub reach: Reach,
    /// The account to call from, instead of the `[proxy]` account or srgate's own name
    /// (a REST call's `sipLogin`…); the call then goes to its proxy whatever the mode.
    pub account: Option<Box<CallAccount>>,
}

/// Where a standalone call's callee may be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A `[users]` phone's registered contacts only: a SIP ↔ SIP call's callee leg (a
    /// ring group's `sip:` member that names a group is not rung through it, so groups
    /// cannot ring each other in a loop).
    Phone,
    /// A ring group's number inside srgate (its members offered back as incoming calls,
    /// see `internal`), else a phone.
    GroupOrPhone,
    /// An app user logged in (offered back inside srgate), a group, else a phone.
    App,
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

impl OkRetransmit {
    /// A 2xx to repeat from T1, doubling, until the ACK or 64·T1; over a reliable
    /// transport only the wait for the ACK (no retransmission).
    fn new(now: Instant, payload: Vec<u8>, reliable: bool) -> Self {
        let give_up = now + 64 * T1;
        OkRetransmit {
            payload,
            next: if reliable { give_up } else { now + T1 },
            interval: T1,
            give_up,
        }
    }
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
    /// The CANCEL says the call was answered elsewhere (RFC 3326 `Reason`, cause 200): a
    /// ring group's other member took it.
    cancel_elsewhere: bool,
    cancel_sent: bool,
    /// Outgoing: the ACK for the 2xx, resent for each retransmission of it.
    ack: Option<Vec<u8>>,
    /// Incoming: the INVITE's server transaction.
    server_key: Option<ServerKey>,
    ok: Option<OkRetransmit>,
    progress_seen: Vec<u16>,
    /// Incoming: the session interval granted to the caller's INVITE (RFC 4028, see
    /// `session_timer`), named in srgate's 2xx.
    session: Option<session_timer::Grant>,
    /// Confirmed: the session timer running.
    timer: Option<session_timer::SessionTimer>,
    /// Outgoing: the interval srgate's INVITE and refreshes ask for (0: none) and the
    /// smallest it takes (a 422's `Min-SE` raises both).
    se_asked: u32,
    se_min: u32,
    /// srgate's last 2xx carried an offer (an offerless INVITE or re-INVITE): the answer
    /// comes in the ACK (RFC 3264 §5, RFC 3261 §13.2.1). The CSeq of that INVITE: an ACK
    /// of another (a late one of an earlier INVITE) is not the answer.
    awaiting_answer: Option<u32>,
    /// The CSeq of the INVITE whose 2xx `ok` repeats: only its ACK stops it.
    ok_cseq: u32,
    /// Incoming for a ring group: the branches offered to its members, until one is
    /// claimed (see `fork`).
    fork: Option<fork::Fork>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtherKind {
    Bye,
    Cancel,
    Info,
    /// srgate's session refresh (UPDATE, see `session_timer`).
    Refresh,
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
    /// The call it belongs to.
    call: SipCallId,
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
    /// A ring group's branches not claimed yet → their parent call.
    branches: HashMap<SipCallId, SipCallId>,
    next_incoming: u64,
    /// Per-call accounts' registrations, and their REGISTERs in flight.
    accounts: HashMap<SipCallId, call_account::AccountReg>,
    account_branches: HashMap<String, SipCallId>,
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
            self.local_for(transport)
        );
        (via, branch)
    }

    fn contact_for(&self, user: &str, transport: Transport) -> String {
        format!(
            "<sip:{user}@{}{}>",
            self.local_for(transport),
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

    fn forget(&mut self, now: Instant, id: SipCallId) {
        self.call_account_over(now, id);
        if let Some(c) = self.calls.calls.remove(&id) {
            for branch in c.fork.iter().flat_map(|f| f.branches()) {
                self.calls.branches.remove(branch);
            }
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

    fn send_cancel(&mut self, now: Instant, id: SipCallId) {
        let Some(transport) = self.calls.calls.get(&id).map(|c| c.destination.0) else {
            return;
        };
        let local = self.local_for(transport);
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        c.cancel_sent = true;
        // Same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE.
        let via = format!(
            "SIP/2.0/{} {local};branch={};rport",
            transport.via_token(),
            c.invite_branch
        );
        let payload = MessageBuilder::request(Method::Cancel, &c.request_uri)
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, &c.from_header)
            .header(HeaderName::To, &c.to_header)
            .header(HeaderName::CallId, &c.call_id)
            .header(HeaderName::CSeq, format_args!("{} CANCEL", c.invite_cseq));
        let payload = if c.cancel_elsewhere {
            payload.header(
                HeaderName::new("Reason"),
                "SIP;cause=200;text=\"Call completed elsewhere\"",
            )
        } else {
            payload
        }
        .build();
        let branch = format!("cancel:{}", c.invite_branch);
        let destination = c.destination;
        self.start_other(now, branch, (id, OtherKind::Cancel), payload, destination);
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
        self.start_other(now, branch, (id, OtherKind::Bye), payload, destination);
    }

    fn start_other(
        &mut self,
        now: Instant,
        key: String,
        (call, kind): (SipCallId, OtherKind),
        payload: Vec<u8>,
        destination: (Transport, SocketAddr),
    ) {
        let machine = ClientTransaction::new(now, payload, destination.0.reliable());
        self.calls.others.insert(
            key.clone(),
            OtherTx {
                kind,
                call,
                tx: ClientTx {
                    machine,
                    destination,
                },
            },
        );
        self.after_other_input(now, &key, None);
    }

    /// After a response (`msg`) or a timer of a BYE, CANCEL, INFO or refresh transaction.
    fn after_other_input(&mut self, now: Instant, key: &str, msg: Option<&Message<'_>>) {
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
        let (kind, call) = (other.kind, other.call);
        let mut outcome = None;
        while let Some(event) = other.tx.machine.poll_event() {
            match event {
                TxEvent::Response(code) if code >= 200 => outcome = Some(code),
                TxEvent::Timeout | TxEvent::TransportError => outcome = Some(408),
                _ => {}
            }
        }
        if other.tx.machine.is_terminated() {
            log::debug!("{kind:?} transaction done");
            self.calls.others.remove(key);
        }
        if kind == OtherKind::Refresh
            && let Some(code) = outcome
        {
            self.refresh_answered(now, call, code, msg);
        }
    }

    /// [`Endpoint::hangup`] of an outgoing call that another member of a ring group
    /// answered: its CANCEL says so (`Reason: SIP;cause=200;text="Call completed
    /// elsewhere"`, RFC 3326), so the phone does not show a missed call.
    pub fn cancel_elsewhere(&mut self, now: Instant, id: SipCallId) {
        if let Some(c) = self.calls.calls.get_mut(&id)
            && c.outgoing
        {
            c.cancel_elsewhere = true;
        }
        self.hangup(now, id);
    }

    /// Ends a call in whatever state it is (see the module doc); no event follows.
    pub fn hangup(&mut self, now: Instant, id: SipCallId) {
        if self.is_internal_id(id) {
            return self.internal_hangup(id);
        }
        // a ring group's branch before the call is taken: it leaves the group ringing
        if self.branch_refused(now, id, 480, None) {
            return;
        }
        // still registering its account: no INVITE is out, nothing to cancel
        if self.account_registering(id) {
            self.forget(now, id);
            return;
        }
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        c.silent = true;
        match (c.outgoing, c.phase) {
            (_, Phase::Confirmed) => {
                c.ok = None;
                self.send_bye(now, id);
                self.forget(now, id);
            }
            (true, Phase::Early) if !c.cancel_sent => self.send_cancel(now, id),
            (true, _) => c.cancel_owed = true,
            (false, _) => self.reject(now, id, 487),
        }
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
            consider(c.timer.as_ref().and_then(|t| t.poll_timeout()));
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
            self.after_other_input(now, &k, None);
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
        self.session_timers_due(now);
        for id in dead {
            // No ACK for our 2xx: the dialog is ended with a BYE (§13.3.1.4).
            log::info!("no ACK for the 2xx of SIP call {id:?}: BYE");
            self.end_timed_out(now, id);
        }
    }

    /// Ends confirmed call `id` from srgate's side for a timeout (no ACK, a session not
    /// refreshed): BYE, and the call layer sees it end with 408.
    fn end_timed_out(&mut self, now: Instant, id: SipCallId) {
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        c.ok = None;
        c.timer = None;
        let silent = c.silent;
        self.send_bye(now, id);
        if !silent {
            self.events.push_back(Event::CallEnded {
                id,
                code: Some(408),
            });
        }
        self.forget(now, id);
    }
}
