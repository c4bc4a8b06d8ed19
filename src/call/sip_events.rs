//! The SIP endpoint's call events: progress, answer, failure, cancel, end, re-offer and
//! DTMF of a call's SIP side, and incoming INVITEs, which become remote invitations for
//! app users who are logged in.

use std::time::Instant;

use crate::config::SipSrtp;
use crate::sdp::Codec;
use crate::sdp::Error as SdpError;
use crate::sdp::answer::Direction;
use crate::sdp::sdes::CryptoError;
use crate::sdp::sip::parse_rtp_sdp;
use crate::signal::protocol;
use crate::signal::protocol::{CallState, Failure, HangupReason};
use crate::sip::endpoint::{Event as SipEvent, SipCallId};

use super::bridge::BridgeCall;
use super::content::invitation_content;
use super::{
    Call, Calls, Ctx, MAX_CALLS_PER_USER, Phase, TELEPHONE_EVENT_PT, Way, link, sip_status,
};

impl Calls {
    /// A call event of the SIP endpoint (other events are ignored here).
    pub fn handle_sip_event(&mut self, now: Instant, event: SipEvent, ctx: &mut Ctx<'_>) {
        let id = event.call_id();
        if id.is_some_and(|id| !self.by_sip.contains_key(&id))
            && self.rtmp_sip_event(now, &event, ctx)
        {
            return;
        }
        let incoming_for = match &event {
            SipEvent::IncomingCall { app_user, .. } => Some(app_user.clone()),
            _ => None,
        };
        self.sip_event(now, event, ctx);
        if let Some(id) = id {
            match self.by_sip.get(&id) {
                Some(&slot) => self.touch(slot),
                // an incoming call refused at once: its route goes
                None => {
                    if let Some(user) = incoming_for {
                        self.routes.push_back(link::RouteChange::Dropped {
                            user,
                            key: None,
                            sip: Some(id),
                        });
                    }
                }
            }
        }
    }

    fn sip_event(&mut self, now: Instant, event: SipEvent, ctx: &mut Ctx<'_>) {
        if let Some(id) = event.call_id()
            && let Some(&slot) = self.by_sip.get(&id)
            && self.is_pair(slot)
        {
            return self.pair_event(now, slot, event, ctx);
        }
        match event {
            SipEvent::IncomingCall {
                id,
                app_user,
                caller,
                caller_name,
                cus_data,
                sdp,
                group,
                sip_member,
                internal,
            } => self.incoming(
                now,
                id,
                &app_user,
                Invitation {
                    caller,
                    caller_name,
                    cus_data,
                    group,
                    sdp,
                    sip_member,
                    internal,
                },
                ctx,
            ),
            SipEvent::CallProgress { id, code, sdp } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                let mut tell = false;
                let mut failed = None;
                if let Some(b) = self.bridge_mut(slot) {
                    if b.phase == Phase::Calling {
                        b.phase = Phase::Early;
                        tell = true;
                    }
                    if let Some(sdp) = sdp
                        && let Ok(remote) = parse_rtp_sdp(&sdp)
                    {
                        // 183 early media: played to the app.
                        if let Err(why) = b.apply_remote(now, remote) {
                            failed = Some(why);
                        }
                    }
                }
                if let Some(why) = failed {
                    log::info!("call {}: early media unusable: {why}", key.1);
                }
                if tell {
                    log::info!("call {}: SIP {code}: ringing", key.1);
                    let text = protocol::local_state(
                        &key.1,
                        CallState::ReceivedByRemote,
                        None,
                        None,
                        None,
                        None,
                    );
                    self.say(&key.0, text);
                }
            }
            SipEvent::CallAnswered { id, sdp } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                let cdr_peer;
                let outcome = match self.bridge_mut(slot) {
                    Some(b) => {
                        cdr_peer = b.peer.clone();
                        match parse_rtp_sdp(&sdp) {
                            Ok(remote) => b.apply_remote(now, remote),
                            Err(_) => Err("unreadable SDP answer"),
                        }
                        .map(|()| {
                            b.phase = Phase::Answered;
                            b.answered = Some(now);
                            b.deadline = None;
                            b.touch_rtp(now);
                            b.mode()
                        })
                    }
                    None => return,
                };
                match outcome {
                    Ok(mode) => {
                        self.count_mode(mode);
                        let response = serde_json::json!({
                            "Mode": 1, "Conference": false, "ChanId": key.1,
                            "SipNumber": cdr_peer, "SipData": "",
                        })
                        .to_string();
                        let text = protocol::local_state(
                            &key.1,
                            CallState::AcceptedByRemote,
                            None,
                            Some(&response),
                            None,
                            None,
                        );
                        self.say(&key.0, text);
                    }
                    Err(why) => {
                        log::info!("call {}: SIP answer unusable: {why}", key.1);
                        let sip = sip_status(488, "Not Acceptable Here");
                        let text = protocol::local_state(
                            &key.1,
                            CallState::Failure,
                            None,
                            None,
                            None,
                            Some(&sip),
                        );
                        self.say(&key.0, text);
                        self.remove(now, slot, ctx, Some(488), "ERROR");
                    }
                }
            }
            SipEvent::CallFailed { id, code, reason } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                if let Some(b) = self.bridge_mut(slot) {
                    b.sip_alive = false;
                }
                let sip = sip_status(code, &reason);
                let text = match code {
                    486 | 600 | 603 => protocol::local_state(
                        &key.1,
                        CallState::RefusedByRemote,
                        None,
                        None,
                        None,
                        Some(&sip),
                    ),
                    404 | 480 => protocol::local_state(
                        &key.1,
                        CallState::Failure,
                        None,
                        None,
                        Some(Failure::PeerOffline),
                        Some(&sip),
                    ),
                    408 => protocol::local_state(
                        &key.1,
                        CallState::Failure,
                        None,
                        None,
                        Some(Failure::PeerNoResponse),
                        Some(&sip),
                    ),
                    _ => protocol::local_state(
                        &key.1,
                        CallState::Failure,
                        None,
                        None,
                        None,
                        Some(&sip),
                    ),
                };
                self.say(&key.0, text);
                self.remove(now, slot, ctx, Some(code), "REMOTE");
            }
            SipEvent::CallCanceled { id, elsewhere } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                let phase = match self.bridge_mut(slot) {
                    Some(b) => {
                        b.sip_alive = false;
                        b.phase
                    }
                    None => return,
                };
                // another member of the ring group took the call: said as SIP says it
                // (RFC 3326 Reason cause 200)
                let elsewhere_sip = sip_status(200, "Call completed elsewhere");
                let text = match (phase, elsewhere) {
                    (Phase::Accepting, false) => {
                        protocol::hangup(&key.1, HangupReason::Remote, None)
                    }
                    (Phase::Accepting, true) => {
                        protocol::hangup(&key.1, HangupReason::Remote, Some(&elsewhere_sip))
                    }
                    _ => protocol::remote_canceled(&key.1, elsewhere),
                };
                self.say(&key.0, text);
                let reason = if elsewhere {
                    "ANSWERED_ELSEWHERE"
                } else {
                    "CANCELED"
                };
                self.remove(now, slot, ctx, Some(487), reason);
            }
            SipEvent::CallEnded { id, code } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                if let Some(b) = self.bridge_mut(slot) {
                    b.sip_alive = false;
                }
                let sip = code.map(|c| sip_status(c, "Request Timeout"));
                let reason = if code.is_some() {
                    HangupReason::Timeout
                } else {
                    HangupReason::Remote
                };
                self.say(&key.0, protocol::hangup(&key.1, reason, sip.as_ref()));
                self.remove(now, slot, ctx, code, reason.as_str());
            }
            SipEvent::CallUpdated { id, sdp } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(b) = self.bridge_mut(slot) else {
                    return;
                };
                // the first description of an offerless call (its answer in the ACK) is
                // what media needs; a later one only updates it
                let first = b.sip_format().is_none();
                let applied = parse_rtp_sdp(&sdp)
                    .map_err(|_| "unreadable SDP")
                    .and_then(|remote| b.apply_remote(now, remote));
                b.touch_rtp(now);
                match applied {
                    Ok(()) => {}
                    Err(why) if first => {
                        log::info!(
                            "SIP call {id:?}: the answer in the ACK is unusable ({why}): BYE"
                        );
                        ctx.sip.hangup(now, id);
                        let Some(key) = self.key_of(slot) else { return };
                        let sip = sip_status(488, "Not Acceptable Here");
                        let reason = HangupReason::Error;
                        self.say(&key.0, protocol::hangup(&key.1, reason, Some(&sip)));
                        self.remove(now, slot, ctx, Some(488), reason.as_str());
                    }
                    Err(why) => log::info!("re-offer of SIP call {id:?}: {why}"),
                }
            }
            SipEvent::Dtmf { id, digit, .. } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                if let Some(key) = self.key_of(slot) {
                    self.say(&key.0, protocol::dtmf(&key.1, digit));
                }
            }
            _ => {}
        }
    }

    fn incoming(
        &mut self,
        now: Instant,
        sip: SipCallId,
        app_user: &str,
        invitation: Invitation,
        ctx: &mut Ctx<'_>,
    ) {
        let Invitation {
            caller,
            caller_name,
            cus_data,
            group,
            sdp,
            sip_member,
            internal,
        } = invitation;
        self.metrics.sip_invites_in += 1;
        // Standalone: a SIP user (a ring group's sip: member, or a callee who is not an
        // app user logged in) is called through srgate as a SIP ↔ SIP call.
        let online = protocol::valid_user(app_user) && (ctx.online)(app_user);
        let to_sip = self.cfg.standalone && (sip_member || !online);
        if to_sip {
            let refused = if self.index.len() >= self.cfg.max_calls {
                Some((503, "OVERLOADED"))
            } else if self.index.keys().filter(|k| k.0 == app_user).count() >= MAX_CALLS_PER_USER {
                Some((486, "TOO_MANY_CALLS"))
            } else {
                None
            };
            if let Some((code, reason)) = refused {
                ctx.sip.reject(now, sip, code);
                self.record_attempt(now, app_user, &caller, "sip_to_sip", Some(code), reason);
                return;
            }
            let req = super::sip_pair::PairRequest {
                sip,
                callee: app_user.to_string(),
                caller,
                caller_name,
                group,
                sdp,
                internal,
            };
            return self.incoming_pair(now, req, ctx);
        }
        let (caller, sdp) = (caller.as_str(), sdp.as_str());
        if !online {
            log::info!(
                "SIP call for {}: not logged in → 480",
                crate::pii::Pii(app_user)
            );
            ctx.sip.reject(now, sip, 480);
            self.record_attempt(
                now,
                app_user,
                caller,
                "sip_to_app",
                Some(480),
                "NOT_LOGGEDIN",
            );
            return;
        }
        if self.index.len() >= self.cfg.max_calls {
            ctx.sip.reject(now, sip, 503);
            self.record_attempt(now, app_user, caller, "sip_to_app", Some(503), "OVERLOADED");
            return;
        }
        let of_user = self.index.keys().filter(|k| k.0 == app_user).count();
        if of_user >= MAX_CALLS_PER_USER {
            ctx.sip.reject(now, sip, 486);
            self.record_attempt(
                now,
                app_user,
                caller,
                "sip_to_app",
                Some(486),
                "TOO_MANY_CALLS",
            );
            return;
        }
        // `[media] sip_srtp`: off refuses SRTP (never answered in the clear), mandatory
        // refuses plain RTP. An INVITE without an offer lets srgate offer (in its 200).
        let offered = (!sdp.is_empty()).then(|| {
            parse_rtp_sdp(sdp).and_then(|r| match (self.cfg.sip_srtp, &r.crypto) {
                // a best-effort SRTP offer takes plain RTP too
                (SipSrtp::Off, Some(_)) if r.best_effort => Ok(r.plain()),
                (SipSrtp::Off, Some(_)) => Err(SdpError::NotPlainRtp),
                (SipSrtp::Mandatory, None) => Err(SdpError::Crypto(CryptoError::Missing)),
                _ => Ok(r),
            })
        });
        let remote = match offered.transpose() {
            // an internal call's offer is srgate's own: its media is reached at loop_ip
            Ok(r) if internal => r.map(|mut r| {
                r.addr = std::net::SocketAddr::new(self.cfg.loop_ip, r.addr.port());
                r
            }),
            Ok(r) => r,
            Err(e) => {
                log::info!(
                    "SIP call for {}: SDP offer unusable ({e}) → 488",
                    crate::pii::Pii(app_user)
                );
                ctx.sip.reject_offer(now, sip, &e.to_string());
                self.record_attempt(now, app_user, caller, "sip_to_app", Some(488), "BAD_SDP");
                return;
            }
        };
        let Some(port) = ctx.ports.open() else {
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("SIP call: no free port in [media] rtp_ports → 503");
            ctx.sip.reject(now, sip, 503);
            self.record_attempt(now, app_user, caller, "sip_to_app", Some(503), "OVERLOADED");
            return;
        };
        let ids = self.stream_ids();
        let session_id = self.session_id();
        let caller_shown = if caller.is_empty() || caller.eq_ignore_ascii_case("anonymous") {
            self.cfg.anonymous_caller.clone()
        } else {
            caller.to_string()
        };
        let mut call = BridgeCall::new(
            now,
            Way::SipToApp,
            sip,
            caller_shown.clone(),
            Phase::Offered,
            ids,
            port,
            if internal {
                self.cfg.loop_ip
            } else {
                self.cfg.rtp_ip
            },
            self.cfg.opus_complexity,
        );
        call.rtp_timeout = self.cfg.rtp_timeout;
        call.sip_allowed = self.sip_codecs();
        call.internal = internal;
        match remote {
            Some(remote) => {
                if let Err(why) = call.apply_remote(now, remote) {
                    log::info!("SIP call: offer unusable ({why}) → 488");
                    ctx.ports.close(port);
                    ctx.sip.reject_offer(now, sip, why);
                    self.record_attempt(now, app_user, caller, "sip_to_app", Some(488), "BAD_SDP");
                    return;
                }
                let (pt, codec) = call.sip_format().unwrap_or((0, Codec::Pcmu));
                // telephone-event in the answer only when the caller offered it.
                let te = call.remote_telephone_event();
                call.local_sdp =
                    call.build_sip_sdp(&[(pt, codec)], te, Direction::SendRecv, session_id);
            }
            None => {
                // srgate's offer goes in the 200 and the ACK brings the answer
                // (`SipEvent::CallUpdated`); SRTP offered only when it is mandatory.
                call.srgate_offers = true;
                if self.cfg.sip_srtp == SipSrtp::Mandatory
                    && let Err(e) = call.offer_srtp()
                {
                    log::error!("no random numbers for SRTP keys ({e}): call refused");
                    ctx.ports.close(port);
                    ctx.sip.reject(now, sip, 503);
                    self.record_attempt(now, app_user, caller, "sip_to_app", Some(503), "ERROR");
                    return;
                }
                let formats = self.sip_offer_formats(None);
                call.local_sdp = call.build_sip_sdp(
                    &formats,
                    Some(TELEPHONE_EVENT_PT),
                    Direction::SendRecv,
                    session_id,
                );
            }
        }
        call.deadline = Some(now + self.cfg.invitation_timeout);
        let id = format!("s{}", self.rng.token(12));
        let content = invitation_content(&id, &caller_shown, cus_data.as_deref());
        let key = (app_user.to_string(), id.clone());
        let media = if call.is_srtp() { "SRTP" } else { "RTP" };
        let video = call.sip_video_offer().is_some();
        self.insert(key, Call::Bridge(Box::new(call)), None);
        log::info!(
            "SIP call from {} for {}: invitation {id}, {media} port {port}",
            crate::pii::Pii(&caller_shown),
            crate::pii::Pii(app_user)
        );
        ctx.sip.ring(now, sip);
        self.say(
            app_user,
            protocol::remote_invitation(
                &id,
                &caller_shown,
                caller_name.as_deref(),
                Some(&content),
                None,
                group.as_deref(),
                video,
            ),
        );
    }
}

/// An incoming SIP call as the app user is invited to it, with the caller's offer.
struct Invitation {
    caller: String,
    caller_name: Option<String>,
    cus_data: Option<String>,
    /// The ring group dialled, when the invitation is one of its branches.
    group: Option<String>,
    /// The caller's SDP offer (empty: none, srgate offers).
    sdp: String,
    /// The callee is a ring group's `sip:` member.
    sip_member: bool,
    /// An app user's call offered inside srgate: the offer's media is on srgate's own
    /// ports, reached at `loop_ip`.
    internal: bool,
}
