//! What a SIP-over-WebSocket client sends: its requests (REGISTER, INVITE, re-INVITE,
//! UPDATE, BYE, CANCEL, INFO, OPTIONS) and its answers to srgate's INVITEs, turned into the
//! call layer's requests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::wire::{add_to_tag, cancel_request, non_2xx_ack, reanswer, response_head, to_tag};
use super::{ALLOW, Dir, MAX_CALLS, MAX_EXPIRES, MIN_EXPIRES, Phase, SipWs, WsCall, WsContext};
use crate::signal::hub::SessionId;
use crate::signal::protocol::{self, Request};
use crate::wire::sip::{Contact, HeaderName, Message, Method};

impl SipWs {
    pub(super) fn on_request(
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

    /// The digest check of `msg` (`proxy`: an INVITE's): the user, or `None` after the
    /// refusal (a challenge, 403, 400) went out.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn authenticated(
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

    pub(super) fn on_register(
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
                    match (target_uri(&c), &contact) {
                        (Some(uri), None) => contact = Some((uri, expires)),
                        (None, _) => {
                            return self.reply(session, head, 400, "Bad Contact", &[], None);
                        }
                        _ => {}
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
                s.log_in(&user);
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

    pub(super) fn on_invite(
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
                    s.log_in(&user);
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
        let target = msg
            .contacts()
            .find_map(|c| c.ok().and_then(|c| target_uri(&c)));
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
            provisional: false,
            cancel_waits: None,
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

    pub(super) fn on_reinvite(
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
        let mut head = head.to_vec();
        add_to_tag(&mut head, &local);
        self.reply_session(session, &head, 200, "OK", Some(&answer));
    }

    /// 481: a request for no call of this session.
    pub(super) fn no_call(&mut self, session: SessionId, head: &[(&'static str, String)]) {
        self.reply(
            session,
            head,
            481,
            "Call/Transaction Does Not Exist",
            &[],
            None,
        );
    }

    pub(super) fn on_bye(
        &mut self,
        session: SessionId,
        msg: &Message<'_>,
        head: &[(&'static str, String)],
    ) {
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

    pub(super) fn on_cancel(
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

    pub(super) fn on_info(
        &mut self,
        session: SessionId,
        msg: &Message<'_>,
        head: &[(&'static str, String)],
    ) {
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
        // only an answered call's digits go on (before, nothing of the client reaches the
        // other side, and a refusal of the digit would read as one of the call)
        let up = call.phase == Phase::Up;
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
                if up {
                    self.request(&user, Request::Dtmf { id, digits: d });
                }
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

    pub(super) fn on_response(&mut self, session: SessionId, msg: &Message<'_>) {
        let (Some(code), Ok(cseq), Ok(call_id)) = (msg.status(), msg.cseq(), msg.call_id()) else {
            self.malformed += 1;
            return;
        };
        if cseq.method != Method::Invite {
            return; // BYE, CANCEL, INFO answers: nothing waits on them
        }
        let call_id = call_id.to_string();
        let domain = std::sync::Arc::clone(&self.domain);
        let Some((call, user)) = self.call_of(session, &call_id) else {
            return;
        };
        if call.dir != Dir::ToClient || cseq.seq != call.invite_cseq {
            return;
        }
        let to = msg.header(HeaderName::To).unwrap_or("").trim().to_string();
        let id = call.id.clone();
        match code {
            100..=199 => {
                call.provisional = true;
                if let Some(elsewhere) = call.cancel_waits.take() {
                    let cancel = cancel_request(call, &domain, elsewhere);
                    self.send(session, cancel);
                }
            }
            200..=299 => {
                if call.phase == Phase::Accepting {
                    // the 2xx again (resent until the ACK) while srgate takes the answer:
                    // the ACK goes once it has
                    return;
                }
                if call.phase == Phase::Up {
                    // the 2xx again: ACK it again
                    let ack = self.ack(session, &call_id);
                    if let Some(ack) = ack {
                        self.send(session, ack);
                    }
                    return;
                }
                let target = msg
                    .contacts()
                    .find_map(|c| c.ok().and_then(|c| target_uri(&c)));
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
}

/// Where requests to the client go, from a Contact of its: a SIP URI, without the
/// `?headers` part (RFC 3261 §8.1.1.1: they are no part of a Request-URI). `None` for any
/// other URI.
fn target_uri(contact: &Contact<'_>) -> Option<String> {
    let Contact::Addr(na) = contact else {
        return None;
    };
    if !na.uri.is_sip() {
        return None;
    }
    let uri = na.uri.as_str();
    // the headers start at the first `?` after the host: a user part may hold one too,
    // and no `@` but the user part's end is unescaped (RFC 3261 §25.1 `hvalue`)
    let host = uri.find('@').map_or(0, |at| at + 1);
    let end = uri[host..].find('?').map_or(uri.len(), |q| host + q);
    Some(uri[..end].to_string())
}

#[cfg(test)]
mod tests {
    use crate::wire::sip::Contact;

    fn target(value: &str) -> Option<String> {
        let c = Contact::parse(value).ok()?;
        super::target_uri(&c)
    }

    #[test]
    fn a_contacts_uri_loses_its_headers_but_not_a_question_mark_of_its_user() {
        assert_eq!(
            target("<sip:ann@host:5060;transport=ws?X-A=1>").as_deref(),
            Some("sip:ann@host:5060;transport=ws")
        );
        assert_eq!(
            target("<sip:a?b@host;transport=ws>").as_deref(),
            Some("sip:a?b@host;transport=ws")
        );
        assert_eq!(
            target("<sip:host;transport=ws?X-A=1>").as_deref(),
            Some("sip:host;transport=ws")
        );
        assert_eq!(target("<tel:+123>"), None);
    }
}
