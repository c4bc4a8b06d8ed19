//! The call layer's events for a SIP-over-WebSocket client (what a JSON client would be
//! sent), turned into SIP: answers to its INVITEs, srgate's INVITEs with an offer, CANCEL,
//! BYE, INFO.

use serde_json::Value;

use super::wire::{add_to_tag, cancel_request, request};
use super::{ALLOW, Dir, MAX_CALLS, Phase, SipWs, WsCall, WsContext};
use crate::signal::hub::SessionId;
use crate::signal::protocol::Request;
use crate::wire::sip::{HeaderName, Method};

impl SipWs {
    /// A request inside the dialog of `call_id` (BYE, INFO), with the next CSeq.
    pub(super) fn in_dialog(
        &mut self,
        session: SessionId,
        call_id: &str,
        method: &str,
        body: Option<(&str, &str)>,
    ) -> Option<Vec<u8>> {
        let branch = format!("{:016x}", self.next_branch());
        let contact = self.contact();
        let domain = std::sync::Arc::clone(&self.domain);
        let (call, _) = self.call_of(session, call_id)?;
        call.local_cseq += 1;
        let method = Method::from_token(method);
        let mut b = request(
            method,
            call,
            &domain,
            &branch,
            &call.remote,
            call.local_cseq,
        )
        .header(HeaderName::new("Contact"), contact);
        if let Some((kind, text)) = body {
            b = b.body(kind, text.as_bytes());
        }
        Some(b.build())
    }

    /// The ACK of a 2xx to srgate's INVITE (the INVITE carried the offer: no body).
    pub(super) fn ack(&mut self, session: SessionId, call_id: &str) -> Option<Vec<u8>> {
        let branch = format!("{:016x}", self.next_branch());
        let domain = std::sync::Arc::clone(&self.domain);
        let (call, _) = self.call_of(session, call_id)?;
        let cseq = call.invite_cseq;
        Some(request(Method::Ack, call, &domain, &branch, &call.remote, cseq).build())
    }

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
                // only the offer (Setup) and the accept (Accepting) can be refused here
                // (a call that is up forwards nothing else that could be); the client's
                // side ends, and so does the invitation (it would ring on), once
                let pending = self
                    .session_call(session, &id)
                    .is_some_and(|c| matches!(c.phase, Phase::Setup | Phase::Accepting));
                if !pending {
                    return;
                }
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

    pub(super) fn invite_client(
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
            .map(|n| {
                // a quoted-string: no quote, backslash or control character inside
                let n: String = n
                    .chars()
                    .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
                    .collect();
                format!("\"{n}\" ")
            })
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
            provisional: false,
            cancel_waits: None,
        };
        if let Some(s) = self.sessions.get_mut(&session) {
            s.calls.push(call);
        }
        // the INVITE goes with srgate's offer, once the call layer made it
        self.request(&user, Request::Offer { id: id.to_string() });
    }

    /// srgate's INVITE to the client, with the offer the call layer made.
    pub(super) fn send_invite(&mut self, session: SessionId, id: &str, offer: &str) {
        let contact = self.contact();
        let domain = std::sync::Arc::clone(&self.domain);
        let Some(call) = self.session_call(session, id) else {
            return;
        };
        if call.dir != Dir::ToClient || call.phase != Phase::Setup || call.offered {
            return;
        }
        call.offered = true;
        let (branch, cseq) = (&call.invite_branch, call.invite_cseq);
        let invite = request(Method::Invite, call, &domain, branch, &call.remote, cseq)
            .header(HeaderName::new("Contact"), contact)
            .header(HeaderName::new("Allow"), ALLOW)
            .body("application/sdp", offer.as_bytes())
            .build();
        self.send(session, invite);
    }

    pub(super) fn local_state(
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
                self.reply_session(session, &head, code, reason, Some(&answer));
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
                self.reply_session(session, &head, 200, "OK", answer.as_deref());
            }
            "CANCELED" => {}
            // answered already (echo's early 200), and now over: BYE
            _ if call.ok_sent => {
                let call_id = call.call_id.clone();
                if let Some(bye) = self.in_dialog(session, &call_id, "BYE", None) {
                    self.send(session, bye);
                }
                self.forget(session, id);
            }
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
    pub(super) fn final_to_client(&mut self, session: SessionId, id: &str, code: u16) {
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

    pub(super) fn remote_state(
        &mut self,
        session: SessionId,
        id: &str,
        state: &str,
        sdp: Option<String>,
        elsewhere: bool,
    ) {
        let domain = std::sync::Arc::clone(&self.domain);
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
                // (nobody answered in time): CANCEL, once the client answered provisionally
                call.phase = Phase::Canceling;
                if call.provisional {
                    let cancel = cancel_request(call, &domain, elsewhere);
                    self.send(session, cancel);
                } else {
                    call.cancel_waits = Some(elsewhere);
                }
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
            ("FAILURE" | "CANCELED", Phase::Up) => {
                // up, and the call layer gave it up (the browser's media never came)
                if let Some(bye) = self.in_dialog(session, &call_id, "BYE", None) {
                    self.send(session, bye);
                }
                self.forget(session, id);
            }
            _ => {}
        }
    }

    pub(super) fn hangup(&mut self, session: SessionId, id: &str) {
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

    pub(super) fn dtmf(&mut self, session: SessionId, id: &str, digits: &str) {
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
