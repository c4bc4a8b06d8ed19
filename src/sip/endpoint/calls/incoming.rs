//! Calls from SIP (part of the SIP endpoint's calls): an INVITE that passed the checks
//! becomes a call offered to the app (`100 Trying`, then [`Event::IncomingCall`]), which
//! rings, answers (a 2xx retransmitted until the ACK) or rejects it; a CANCEL ends it.

use std::time::Instant;

use super::{
    INCOMING_BIT, MAX_SIP_CALLS, OkRetransmit, Phase, SipCall, SipCallId, session_timer, tag_of,
};
use crate::sip::dialog::Dialog;
use crate::sip::endpoint::{ALLOW, Endpoint, Event, ServerKey, ServerMachine};
use crate::wire::sip::{HeaderName, Message, MessageBuilder, reason_phrase};

impl Endpoint {
    /// Rings an incoming call: 180.
    pub fn ring(&mut self, now: Instant, id: SipCallId) {
        if self.is_internal_id(id) {
            return self.internal_ring(id);
        }
        // a ring group's caller hears one 180, at its first branch that rings
        let (id, first_only) = match self.parent_of(id) {
            Some(parent) => (parent, true),
            None => (id, false),
        };
        let Some(c) = self.calls.calls.get(&id) else {
            return;
        };
        if first_only && c.phase == Phase::Early {
            return;
        }
        let (Some(key), Phase::Trying | Phase::Early) = (c.server_key.clone(), c.phase) else {
            return;
        };
        let contact = c.contact.clone();
        if let Some(c) = self.calls.calls.get_mut(&id) {
            c.phase = Phase::Early;
        }
        self.respond(now, &key, 180, "Ringing", &[("Contact", contact)]);
    }

    /// Early media for an incoming call that is not answered: `183 Session Progress` with
    /// srgate's SDP (the answer the 200 will repeat, RFC 3261 §13.2.1), sent once (a 183
    /// is not retransmitted without PRACK; the caller's retransmitted INVITE gets the last
    /// provisional again from the transaction). A ring group's branch previews through its
    /// parent, one member at a time, each in an early dialog of its own (see `fork`).
    pub fn early_media(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        if self.is_internal_id(id) || self.branch_preview(now, id, sdp) {
            return;
        }
        self.send_early_media(now, id, sdp);
    }

    /// The 183 with `sdp` on incoming call `id`, while it is not answered.
    pub(super) fn send_early_media(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        let user_agent = self.cfg.user_agent.clone();
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let (Some(key), Phase::Trying | Phase::Early, false) =
            (c.server_key.clone(), c.phase, c.outgoing)
        else {
            return;
        };
        let Some(tx) = self.server_txs.get_mut(&key) else {
            return;
        };
        let mut b = MessageBuilder::response(183, "Session Progress");
        for (name, value) in &tx.head {
            b = b.header(*name, value);
        }
        let payload = b
            .header(HeaderName::Contact, &c.contact)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::new("Server"), &user_agent)
            .body("application/sdp", sdp.as_bytes())
            .build();
        c.phase = Phase::Early;
        if let ServerMachine::Invite(m) = &mut tx.machine {
            let _ = m.send_response(now, 183, payload);
        }
        Self::drain_server(&mut self.transmits, tx);
    }

    /// Answers an incoming call with srgate's SDP: 200, retransmitted until the ACK.
    pub fn answer(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        if self.is_internal_id(id) {
            return self.internal_answer(id, sdp);
        }
        // a ring group's branch answering unclaimed claims the call first
        self.claim(id);
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
        b = b
            .header(HeaderName::Contact, &c.contact)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::new("Server"), &user_agent);
        if let Some(grant) = c.session {
            for (name, value) in session_timer::grant_headers(grant) {
                b = b.header(name, value);
            }
            c.timer = Some(session_timer::SessionTimer::new(now, grant));
        }
        let payload = b.body("application/sdp", sdp.as_bytes()).build();
        c.sdp = sdp.to_string();
        c.phase = Phase::Confirmed;
        c.ok = Some(OkRetransmit::new(
            now,
            payload.clone(),
            c.destination.0.reliable(),
        ));
        tx.final_sent = true;
        if let ServerMachine::Invite(m) = &mut tx.machine {
            let _ = m.send_response(now, 200, payload);
        }
        Self::drain_server(&mut self.transmits, tx);
    }

    /// Refuses an incoming call that is not answered yet.
    pub fn reject(&mut self, now: Instant, id: SipCallId, code: u16) {
        if self.is_internal_id(id) {
            return self.internal_refuse(id, code);
        }
        self.reject_with(now, id, code, &[]);
    }

    /// 488 Not Acceptable Here to an INVITE whose offer srgate cannot take, with why in a
    /// `Warning: 305 srgate "..."` header (RFC 3261 §20.43: incompatible media format;
    /// quotes and control characters in `why` are left out).
    pub fn reject_offer(&mut self, now: Instant, id: SipCallId, why: &str) {
        if self.is_internal_id(id) {
            return self.internal_refuse(id, 488);
        }
        let text: String = why
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .take(120)
            .collect();
        if self.branch_refused(now, id, 488, Some(text.clone())) {
            return;
        }
        self.reject_with(
            now,
            id,
            488,
            &[("Warning", format!("305 srgate \"{text}\""))],
        );
    }

    fn reject_with(&mut self, now: Instant, id: SipCallId, code: u16, extra: &[(&str, String)]) {
        if self.branch_refused(now, id, code, None) {
            return;
        }
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
                extra
            };
            self.respond(now, &key, code, reason_phrase(code), retry);
        }
        self.forget(now, id);
    }

    /// Answers 422 with `Min-SE` to a request whose session interval is too short
    /// ([`super::interval_too_small`]); whether it did.
    pub(super) fn refused_short_interval(
        &mut self,
        now: Instant,
        key: &ServerKey,
        msg: &Message<'_>,
    ) -> bool {
        if !session_timer::interval_too_small(msg) {
            return false;
        }
        self.respond(
            now,
            key,
            422,
            "Session Interval Too Small",
            &[("Min-SE", session_timer::MIN_SE.to_string())],
        );
        true
    }

    /// An INVITE that passed the checks (proxy: from sip_svr; standalone: authenticated),
    /// for `app_user`, or for the app users `group` rings when `app_user` is a ring
    /// group's number.
    pub(in crate::sip::endpoint) fn incoming_call(
        &mut self,
        now: Instant,
        key: &ServerKey,
        msg: &Message<'_>,
        app_user: &str,
        asserted: Option<&str>,
        group: Option<&[(crate::config::MemberKind, String)]>,
    ) {
        // Without an offer (RFC 3261 §13.2.1: the PBX lets srgate offer) the call goes
        // on with an empty `sdp`: srgate's offer goes in the 200, the answer in the ACK.
        let sdp = Self::body_sdp(msg).unwrap_or_default();
        if self.refused_short_interval(now, key, msg) {
            return;
        }
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
        let from_user = from.as_ref().and_then(|f| f.uri.user);
        // The caller shown to the app is the identity srgate can vouch for (the user that
        // authenticated, or sip_svr's assertion); the From only when there is none.
        let caller = match asserted {
            Some(user) => {
                if from_user.is_some_and(|f| f != user) {
                    log::info!(
                        "INVITE from {} names {} in its From: shown as {}",
                        crate::pii::Pii(user),
                        crate::pii::Pii(from_user.unwrap_or("")),
                        crate::pii::Pii(user)
                    );
                }
                user.to_string()
            }
            None => from_user.unwrap_or("anonymous").to_string(),
        };
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
        let invite_cseq = dialog.remote_seq.unwrap_or(0);
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
            invite_cseq,
            invite_branch: key.0.clone(),
            destination,
            contact,
            sdp: String::new(),
            headers: Vec::new(),
            auth: None,
            dialog: Some(dialog),
            cancel_owed: false,
            cancel_elsewhere: false,
            cancel_sent: false,
            ack: None,
            server_key: Some(key.clone()),
            ok: None,
            progress_seen: Vec::new(),
            session: session_timer::grant(msg),
            timer: None,
            se_asked: 0,
            se_min: session_timer::MIN_SE,
            awaiting_answer: sdp.is_empty().then_some(invite_cseq),
            ok_cseq: invite_cseq,
            fork: None,
        };
        self.calls
            .by_dialog
            .insert((c.call_id.clone(), local_tag), id);
        self.calls.by_server.insert(key.clone(), id);
        self.calls.calls.insert(id, c);
        self.respond(now, key, 100, "Trying", &[]);
        if let Some(members) = group {
            log::info!(
                "INVITE for ring group {} from {}: offered to {} members",
                crate::pii::Pii(app_user),
                crate::pii::Pii(&caller),
                members.len()
            );
            let offer = super::fork::Offered {
                called: app_user.to_string(),
                caller,
                caller_name,
                cus_data,
                sdp,
            };
            self.fork(id, offer, members);
            return;
        }
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
            group: None,
            sip_member: false,
            internal: false,
        });
    }

    /// The caller cancelled the INVITE of server transaction `invite_key` (the 487 is sent).
    pub(in crate::sip::endpoint) fn call_cancelled(
        &mut self,
        now: Instant,
        invite_key: &ServerKey,
    ) {
        if let Some(id) = self.calls.by_server.get(invite_key).copied() {
            let c = self.calls.calls.get(&id);
            let (silent, forked) = (
                c.is_none_or(|c| c.silent),
                c.is_some_and(|c| c.fork.is_some()),
            );
            if forked {
                self.cancel_branches(id);
            } else if !silent {
                self.events.push_back(Event::CallCanceled {
                    id,
                    elsewhere: false,
                });
            }
            self.forget(now, id);
        }
    }
}
