//! Requests within a call's dialog (part of the SIP endpoint's calls): INFO srgate sends
//! (a digit for a door station); the ACK of our 2xx
//! (with the answer when that 2xx offered), BYE → 200 and the call ends, a re-INVITE or
//! UPDATE answered with srgate's previous description (direction mirrored; session
//! refreshes included; an offerless re-INVITE gets it as an offer; a new offer while
//! srgate's awaits its answer → 491), INFO with a DTMF digit, OPTIONS; CSeq out of order
//! → 500.

use std::time::Instant;

use super::{OkRetransmit, OtherKind, Phase, SipCallId, info_digit, session_timer};
use crate::sip::endpoint::{ALLOW, Endpoint, Event, ServerKey, ServerMachine};
use crate::wire::sip::{HeaderName, Message, MessageBuilder, Method};

impl Endpoint {
    /// Sends `digit` to the other side of answered call `id` as SIP INFO
    /// (`application/dtmf-relay`, `duration_ms`): the way many door stations take the
    /// digit that opens the door. A call not answered yet, or gone: nothing.
    pub fn info(&mut self, now: Instant, id: SipCallId, digit: char, duration_ms: u32) {
        if self.is_internal_id(id) {
            return self.internal_info(id, digit, duration_ms);
        }
        let body = format!("Signal={digit}\r\nDuration={duration_ms}\r\n");
        self.send_info(now, id, "application/dtmf-relay", &body);
    }

    /// Asks the video sender of answered call `id` for a full picture (SIP INFO with the
    /// `picture_fast_update` media control of RFC 5168), for doors that take no RTCP
    /// feedback.
    pub fn picture_update(&mut self, now: Instant, id: SipCallId) {
        if self.is_internal_id(id) {
            return;
        }
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control><vc_primitive>\
            <to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n";
        self.send_info(now, id, "application/media_control+xml", body);
    }

    /// An INFO with `body` in the dialog of answered call `id`.
    fn send_info(&mut self, now: Instant, id: SipCallId, content_type: &str, body: &str) {
        let transport = match self.calls.calls.get(&id) {
            Some(c) if c.phase == Phase::Confirmed && !c.silent => c.destination.0,
            _ => return,
        };
        let (via, branch) = self.via(transport);
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        let payload = dialog
            .request(Method::Info, None)
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, 70)
            .body(content_type, body.as_bytes())
            .build();
        let destination = c.destination;
        self.start_other(now, branch, (id, OtherKind::Info), payload, destination);
    }

    /// An ACK for a 2xx of ours (not matched by a transaction). True if it was one. When
    /// that 2xx carried srgate's offer, the ACK carries the answer: it goes to the call
    /// layer as [`Event::CallUpdated`]; an ACK without one ends the call with a BYE (RFC
    /// 3264 §5: the offer was not answered).
    pub(in crate::sip::endpoint) fn call_ack(&mut self, now: Instant, msg: &Message<'_>) -> bool {
        let Some(id) = self.dialog_of(msg) else {
            return false;
        };
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return true;
        };
        let Some(cseq) = msg.cseq().ok().map(|c| c.seq) else {
            return true;
        };
        if cseq != c.ok_cseq {
            // a late ACK of an earlier INVITE's 2xx
            return true;
        }
        c.ok = None;
        if c.awaiting_answer.take() != Some(cseq) || c.silent {
            return true;
        }
        match Self::body_sdp(msg) {
            Some(sdp) => {
                // srgate's offer narrows to the answered codec (see `settle`)
                if let Ok(answer) = crate::sdp::sip::parse_rtp_sdp(&sdp)
                    && let Some(settled) = crate::sdp::sip::settle(&c.sdp, &answer)
                {
                    c.sdp = settled;
                }
                self.events.push_back(Event::CallUpdated { id, sdp });
            }
            None => {
                log::info!("SIP call {id:?}: the ACK did not answer srgate's offer: BYE");
                self.send_bye(now, id);
                self.events.push_back(Event::CallEnded { id, code: None });
                self.forget(now, id);
            }
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
    pub(in crate::sip::endpoint) fn call_in_dialog(
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
                self.forget(now, id);
            }
            // A re-INVITE or an UPDATE (RFC 3311): hold, a new address, or a session
            // refresh (RFC 4028: the interval granted again, see `session_timer`). With an offer: srgate's previous
            // description, direction mirrored (see `reanswer`). An offerless UPDATE is a
            // refresh: 200. An offerless re-INVITE gets srgate's description as a fresh
            // offer (the codec in use, sendrecv, a new version) and the ACK answers it.
            Method::Invite | Method::Update => {
                // a refresh asking too short an interval is refused; the session goes
                // on as negotiated
                if self.refused_short_interval(now, key, msg) {
                    return true;
                }
                let allowed = self.sip_codecs;
                let Some(c) = self.calls.calls.get_mut(&id) else {
                    return true;
                };
                let request_cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
                let invite = matches!(method, Method::Invite);
                let offer = Self::body_sdp(msg);
                // srgate's own offer (in a 200) awaits its answer in the ACK: a new offer,
                // or a re-INVITE asking srgate for one, crosses it (RFC 3311 §5.2, RFC
                // 6337 §3.3); the peer retries after the ACK
                if c.awaiting_answer.is_some() && (offer.is_some() || invite) {
                    self.respond(now, key, 491, "Request Pending", &[]);
                    return true;
                }
                let answer = match &offer {
                    Some(offer) => {
                        let answer = crate::sdp::sip::parse_rtp_sdp(offer)
                            .ok()
                            .and_then(|r| crate::sdp::sip::reanswer(&c.sdp, &r, allowed));
                        let Some(answer) = answer else {
                            self.respond(now, key, 488, "Not Acceptable Here", &[]);
                            return true;
                        };
                        c.sdp = answer.clone();
                        Some(answer)
                    }
                    None if invite => {
                        // srgate offers what it has (RFC 3261 §14.2); the ACK answers
                        let Some(offer) = crate::sdp::sip::reoffer(&c.sdp) else {
                            self.respond(now, key, 488, "Not Acceptable Here", &[]);
                            return true;
                        };
                        c.sdp = offer.clone();
                        c.awaiting_answer = msg.cseq().ok().map(|c| c.seq);
                        Some(offer)
                    }
                    None => None,
                };
                let contact = c.contact.clone();
                let silent = c.silent;
                // the refresh renews the interval (or, naming none, ends the timer)
                let grant = session_timer::grant(msg);
                c.timer = grant.map(|g| session_timer::SessionTimer::new(now, g));
                let user_agent = self.cfg.user_agent.clone();
                let Some(tx) = self.server_txs.get_mut(key) else {
                    return true;
                };
                let mut b = MessageBuilder::response(200, "OK");
                for (name, value) in &tx.head {
                    b = b.header(*name, value);
                }
                b = b
                    .header(HeaderName::Contact, &contact)
                    .header(HeaderName::new("Server"), &user_agent);
                if let Some(grant) = grant {
                    for (name, value) in session_timer::grant_headers(grant) {
                        b = b.header(name, value);
                    }
                }
                if let Some(answer) = &answer {
                    b = b.body("application/sdp", answer.as_bytes());
                }
                let payload = b.build();
                tx.final_sent = true;
                match &mut tx.machine {
                    ServerMachine::Invite(m) => {
                        // the 2xx of a re-INVITE is srgate's to repeat until the ACK
                        // (RFC 3261 §13.3.1.4), as for the first INVITE
                        let _ = m.send_response(now, 200, payload.clone());
                        let reliable = tx.destination.0.reliable();
                        if let Some(c) = self.calls.calls.get_mut(&id) {
                            c.ok = Some(OkRetransmit::new(now, payload, reliable));
                            c.ok_cseq = request_cseq;
                        }
                    }
                    ServerMachine::NonInvite(m) => {
                        let _ = m.send_response(now, 200, payload);
                    }
                }
                Self::drain_server(&mut self.transmits, tx);
                if let Some(offer) = offer
                    && !silent
                {
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
}
