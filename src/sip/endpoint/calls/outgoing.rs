//! Calls toward SIP (part of the SIP endpoint's calls): the INVITE with srgate's offer and
//! its client transaction, digest retries, provisional answers and early dialogs, the 2xx
//! and its ACK (sent again for each retransmission), the ACK of a non-2xx, and the end of a
//! call that was not answered.

use std::time::Instant;

use super::{
    CallError, INCOMING_BIT, InviteTx, MAX_SIP_CALLS, OutgoingCall, Phase, SipCall, SipCallId,
};
use super::{header_ok, quote, session_timer};
use crate::sip::auth;
use crate::sip::dialog::Dialog;
use crate::sip::endpoint::{ALLOW, Endpoint, Event, Transmit};
use crate::sip::transaction::Event as TxEvent;
use crate::sip::transaction::client_invite::ClientInviteTransaction;
use crate::wire::sip::{HeaderName, Message, MessageBuilder, Method, reason_phrase};

impl Endpoint {
    /// Whether a call to `callee` can be routed: in proxy mode through the PBX, in
    /// standalone mode to a registered contact (or inside srgate, to a ring group).
    pub fn can_reach(&self, now: Instant, callee: &str) -> bool {
        match &self.cfg.server {
            Some(_) => self.cfg.proxy.is_some(),
            None => {
                self.cfg.groups.members(callee).is_some()
                    || self.registrar.bindings(now, callee).next().is_some()
            }
        }
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
        let mut call = call;
        let account = call.account.take();
        if account.is_none() && self.is_internal(&call) {
            return self.start_internal(call);
        }
        let mut domain = self.cfg.domain.clone();
        let (request_uri, destination, from_user, auth) =
            match (&account, &self.cfg.server, &self.cfg.proxy) {
                (Some(account), _, _) => {
                    domain = account.domain.clone();
                    (
                        format!("sip:{}@{}", call.callee, account.domain),
                        (super::Transport::Udp, account.proxy),
                        account.user.clone(),
                        Some(auth::ClientAuth::with_seed(
                            &account.auth_user,
                            account.password.expose(),
                            self.rng.bytes::<16>(),
                        )),
                    )
                }
                (None, Some(server), Some(proxy)) => (
                    format!("sip:{}@{}", call.callee, server.host_port),
                    (server.transport, server.addr),
                    proxy.user.clone(),
                    Some(auth::ClientAuth::with_seed(
                        &proxy.user,
                        &proxy.password,
                        self.rng.bytes::<16>(),
                    )),
                ),
                (None, Some(_), None) => return Err(CallError::NoRoute),
                (None, None, _) => {
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
        let mut contact = self.contact_for(&from_user, destination.0);
        if account.is_some() {
            // a binding of its own at the account's registrar (two calls from one
            // account, or an account that is also srgate's own, never undo each other's)
            let token = self.rng.token(10);
            if let Some(at) = contact.rfind('>') {
                contact.insert_str(at, &format!(";srgate-call={token}"));
            }
        }
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
            cancel_elsewhere: false,
            cancel_sent: false,
            ack: None,
            server_key: None,
            ok: None,
            progress_seen: Vec::new(),
            session: None,
            timer: None,
            se_asked: self.cfg.session_expires,
            se_min: session_timer::MIN_SE,
            awaiting_answer: None,
            fork: None,
            ok_cseq: 0,
        };
        c.invite_cseq = 1;
        let contact = c.contact.clone();
        self.calls.by_dialog.insert((call_id, local_tag), id);
        self.calls.calls.insert(id, c);
        match account {
            Some(account) if account.register => {
                self.register_call_account(now, id, &account, &contact);
            }
            _ => self.send_invite(now, id),
        }
        Ok(())
    }

    pub(super) fn send_invite(&mut self, now: Instant, id: SipCallId) {
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
        if c.se_asked > 0 {
            for (name, value) in session_timer::request_headers(c.se_asked, c.se_min, false) {
                b = b.header(name, value);
            }
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
    pub(in crate::sip::endpoint) fn call_response(
        &mut self,
        now: Instant,
        branch: &str,
        msg: &Message<'_>,
    ) -> bool {
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
            self.after_other_input(now, &key, Some(msg));
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

    pub(super) fn after_invite_input(
        &mut self,
        now: Instant,
        branch: &str,
        msg: Option<&Message<'_>>,
    ) {
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
                    self.end_outgoing(now, id, code, reason_phrase(code));
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
                    self.forget(now, id);
                }
            }
        }
    }

    /// An outgoing call ended before it was answered.
    pub(super) fn end_outgoing(&mut self, now: Instant, id: SipCallId, code: u16, reason: &str) {
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
        self.forget(now, id);
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
                    self.end_outgoing(now, id, code, &reason);
                }
            }
            // Session Interval Too Small: once more with the peer's Min-SE
            422 if !c.silent
                && c.se_asked > 0
                && let Some(raised) = session_timer::raised(msg, c.se_asked) =>
            {
                log::debug!("SIP call {id:?}: 422, session interval raised to {raised} s");
                c.se_asked = raised;
                c.se_min = raised;
                c.invite_cseq += 1;
                c.phase = Phase::Trying;
                self.send_invite(now, id);
            }
            _ => {
                let reason = msg.reason().unwrap_or("").to_string();
                self.end_outgoing(now, id, code, &reason);
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
                self.end_outgoing(now, id, 502, "Bad Gateway");
                return;
            }
        };
        c.phase = Phase::Confirmed;
        let transport = c.destination.0;
        let (via, _) = self.via(transport);
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
            self.forget(now, id);
            return;
        }
        if let Some(a) = c.auth.as_mut() {
            a.handle_success();
        }
        c.timer = session_timer::answered(msg).map(|g| session_timer::SessionTimer::new(now, g));
        let sdp = Self::body_sdp(msg).unwrap_or_default();
        // srgate's offer narrows to the codec the answer chose: a re-offer is answered
        // with it
        if let Ok(answer) = crate::sdp::sip::parse_rtp_sdp(&sdp)
            && let Some(settled) = crate::sdp::sip::settle(&c.sdp, &answer)
        {
            c.sdp = settled;
        }
        self.events.push_back(Event::CallAnswered { id, sdp });
    }
}
