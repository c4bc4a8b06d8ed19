//! The app users' requests (the browser protocol's invite, accept, refuse, hangup,
//! cancel and DTMF) and the news that a user is gone: calls to echo and to SIP begin
//! here, invitations from SIP are accepted or refused here, and app-side hangups end
//! calls here.

use std::time::Instant;

use crate::sdp::Codec;
use crate::sdp::answer::{Direction, IceCredentials, LocalDescription, build_offer};
use crate::sdp::sip::OPUS_PT;
use crate::signal::hub::CallRequest;
use crate::signal::protocol::{self, ErrorCode, Request};
use crate::signal::protocol::{CallState, Failure, HangupReason};
use crate::sip::endpoint::{CallError, OutgoingCall, Reach, SipCallId};

use super::bridge::{BridgeCall, media_codec, sip_codecs};
use super::browser::{BrowserSetup, BrowserSide};
use super::content::content_fields;
use super::echo::{EchoCall, EchoSetup};
use super::video::VideoLeg;
use super::{
    ACCEPT_WAIT, Call, Calls, Ctx, ECHO, MAX_CALLS_PER_USER, Phase, TELEPHONE_EVENT_PT, Way, link,
    sip_status,
};
use crate::sdp::sip::{VideoDescription, VideoFormat};

impl Calls {
    /// The formats of srgate's SIP offer: the configured SIP codecs (G.711 laws, Opus) in
    /// their order with the browser's codec first when it has one (then no transcoding),
    /// PCMU and PCMA when none is configured.
    pub(super) fn sip_offer_formats(&self, browser: Option<Codec>) -> Vec<(u8, Codec)> {
        let mut sip_offer = sip_codecs(&self.cfg.codecs);
        if let Some(i) = sip_offer.iter().position(|c| Some(*c) == browser) {
            sip_offer.swap(0, i);
        }
        if sip_offer.is_empty() {
            sip_offer = vec![Codec::Pcmu, Codec::Pcma];
        }
        sip_offer
            .iter()
            .filter_map(|c| {
                let pt = match c {
                    Codec::Opus => Some(OPUS_PT),
                    _ => c.static_payload_type(),
                };
                pt.map(|pt| (pt, *c))
            })
            .collect()
    }

    /// A request of a logged-in user, or the news that a user is gone for good.
    pub fn handle_request(&mut self, now: Instant, request: CallRequest, ctx: &mut Ctx<'_>) {
        let key = match &request {
            CallRequest::Call { user, request } => {
                request.id().map(|id| (user.clone(), id.to_owned()))
            }
            CallRequest::UserGone { .. } => None,
        };
        let invite = matches!(
            &request,
            CallRequest::Call {
                request: Request::Invite { .. },
                ..
            }
        );
        let existed = key.as_ref().is_some_and(|k| self.index.contains_key(k));
        self.request(now, request, ctx);
        if let Some(key) = key {
            let slot = self.index.get(&key).copied();
            if let Some(slot) = slot {
                self.touch(slot);
            }
            // an invite that did not become a new call
            if invite && (existed || slot.is_none()) {
                self.routes.push_back(link::RouteChange::Dropped {
                    user: key.0.clone(),
                    key: (!existed).then_some(key),
                    sip: None,
                });
            }
        }
    }

    fn request(&mut self, now: Instant, request: CallRequest, ctx: &mut Ctx<'_>) {
        let (user, request) = match request {
            CallRequest::Call { user, request } => (user, request),
            CallRequest::UserGone { user } => {
                // (a SIP user's calls share the name's key space, and are not the app's)
                let slots: Vec<usize> = self
                    .index
                    .iter()
                    .filter(|(k, s)| k.0 == user && !self.is_pair(**s))
                    .map(|(_, s)| *s)
                    .collect();
                for slot in slots {
                    self.end_silently(now, slot, ctx, "user gone");
                }
                return;
            }
        };
        let slot = request
            .id()
            .and_then(|id| self.index.get(&(user.clone(), id.to_string())).copied())
            .filter(|s| !self.is_pair(*s));
        match request {
            Request::Invite {
                id,
                callee,
                sdp,
                content,
                ..
            } => {
                if slot.is_some() {
                    self.refuse(
                        &user,
                        ErrorCode::BadRequest,
                        "a call with this id is in progress",
                        &id,
                    );
                    return;
                }
                if self.index.len() >= self.cfg.max_calls {
                    self.refuse(
                        &user,
                        ErrorCode::Overloaded,
                        "srgate is at its call limit",
                        &id,
                    );
                    return;
                }
                let of_user = self.index.keys().filter(|k| k.0 == user).count();
                if of_user >= MAX_CALLS_PER_USER {
                    self.refuse(&user, ErrorCode::BadRequest, "too many calls", &id);
                    return;
                }
                if callee == ECHO {
                    self.invite_echo(now, &user, &id, &sdp);
                } else {
                    self.invite_sip(now, &user, &id, &callee, &sdp, content.as_deref(), ctx);
                }
            }
            Request::Hangup { id } | Request::Cancel { id } => match slot {
                Some(slot) => self.hangup_by_app(now, slot, ctx),
                None => self.refuse(&user, ErrorCode::NoSuchCall, "no such call", &id),
            },
            Request::Dtmf { id, digits } => match slot {
                Some(slot) => self.dtmf_from_app(now, slot, &user, &id, &digits, ctx),
                None => self.refuse(&user, ErrorCode::NoSuchCall, "no such call", &id),
            },
            Request::Accept { id, sdp, .. } => match slot {
                Some(slot)
                    if self
                        .bridge_mut(slot)
                        .is_some_and(|b| b.phase == Phase::Offered) =>
                {
                    self.accept(now, slot, &sdp, false, ctx)
                }
                // previewed: the browser's offer is answered already, the 200 goes now
                Some(slot)
                    if self
                        .bridge_mut(slot)
                        .is_some_and(|b| b.phase == Phase::Previewing) =>
                {
                    self.accept_previewed(now, slot, ctx)
                }
                _ => self.refuse(&user, ErrorCode::NoSuchCall, "no such invitation", &id),
            },
            Request::Preview { id, sdp } => match slot {
                Some(slot)
                    if self
                        .bridge_mut(slot)
                        .is_some_and(|b| b.phase == Phase::Offered && b.may_preview()) =>
                {
                    self.accept(now, slot, &sdp, true, ctx)
                }
                Some(slot) if self.bridge_mut(slot).is_some_and(|b| !b.may_preview()) => self
                    .refuse(
                        &user,
                        ErrorCode::BadRequest,
                        "preview: not for this call (an app's, or one without the caller's \
                         offer): accept it",
                        &id,
                    ),
                _ => self.refuse(&user, ErrorCode::NoSuchCall, "no such invitation", &id),
            },
            Request::Refuse { id, response } => match slot {
                Some(slot)
                    if self
                        .bridge_mut(slot)
                        .is_some_and(|b| matches!(b.phase, Phase::Offered | Phase::Previewing)) =>
                {
                    let decline = response
                        .as_deref()
                        .is_some_and(|r| r.to_ascii_lowercase().contains("decline"));
                    let code = if decline { 603 } else { 486 };
                    if let Some(b) = self.bridge_mut(slot) {
                        b.sip_alive = false;
                        ctx.sip.reject(now, b.sip, code);
                    }
                    self.remove(now, slot, ctx, Some(code), "REFUSED");
                }
                _ => self.refuse(&user, ErrorCode::NoSuchCall, "no such invitation", &id),
            },
            Request::Offer { id } => match slot {
                Some(slot)
                    if self.bridge_mut(slot).is_some_and(|b| {
                        b.phase == Phase::Offered && b.browser_offer.is_none()
                    }) =>
                {
                    self.offer(slot)
                }
                _ => self.refuse(&user, ErrorCode::NoSuchCall, "no such invitation", &id),
            },
            Request::Login { .. } | Request::Ping => {}
        }
    }

    /// The SIP side's codec of the bridge in `slot`, once its SDP picked one.
    fn sip_codec_of(&mut self, slot: usize) -> Option<Codec> {
        self.bridge_mut(slot)
            .and_then(|b| b.sip_format())
            .map(|(_, c)| c)
    }

    /// srgate's offer to the browser for an invitation (see [`Request::Offer`]): one codec,
    /// the one an `accept` would pick first, so the browser's answer cannot choose another.
    fn offer(&mut self, slot: usize) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let sip_codec = self.sip_codec_of(slot);
        let Some(&codec) = self.browser_codecs(sip_codec).first() else {
            self.refuse(&key.0, ErrorCode::BadRequest, "no codec to offer", &key.1);
            return;
        };
        let ice = IceCredentials {
            ufrag: self.rng.token(8),
            pwd: self.rng.token(24),
        };
        let session_id = self.session_id();
        let (media_addr, ice_tcp) = (self.cfg.media_addr, self.cfg.ice_tcp);
        let Some(b) = self.bridge_mut(slot) else {
            return;
        };
        let ssrc = b.ids_ssrc_webrtc();
        b.browser_offer = Some((ice.ufrag.clone(), ice.pwd.clone()));
        let sdp = build_offer(
            codec,
            &LocalDescription {
                ice: &ice,
                fingerprint: self.dtls.fingerprint(),
                candidates: &[media_addr],
                tcp: ice_tcp,
                ssrc,
                video_ssrc: 0,
                cname: "srgate",
                session_id,
            },
        );
        self.say(&key.0, protocol::offer(&key.1, &sdp));
    }

    fn dtmf_from_app(
        &mut self,
        now: Instant,
        slot: usize,
        user: &str,
        id: &str,
        digits: &str,
        ctx: &mut Ctx<'_>,
    ) {
        let sent = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(_))) => {
                // The echo service echoes DTMF too: one message per digit.
                for digit in digits.chars() {
                    self.say(user, protocol::dtmf(id, digit));
                }
                return;
            }
            // nothing of the app reaches the caller before it accepts
            Some((_, Call::Bridge(b))) => b.phase != Phase::Previewing && b.send_dtmf(now, digits),
            Some((_, Call::Pair(_))) | None => return,
        };
        if !sent {
            self.refuse(
                user,
                ErrorCode::BadRequest,
                "DTMF needs the media path: the call is not connected yet, or too many digits are queued",
                id,
            );
            return;
        }
        self.door_digits(now, slot, digits, ctx);
    }

    /// Digits the browser keyed in its media (RFC 4733): toward SIP like the app's `dtmf`
    /// (not while previewing), and to the door opener.
    pub(super) fn browser_digits(
        &mut self,
        now: Instant,
        slot: usize,
        digits: &str,
        ctx: &mut Ctx<'_>,
    ) {
        let sent = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Bridge(b))) => b.phase != Phase::Previewing && b.send_dtmf(now, digits),
            _ => false,
        };
        if sent {
            self.door_digits(now, slot, digits, ctx);
        }
    }

    fn invite_echo(&mut self, now: Instant, user: &str, id: &str, offer: &str) {
        let key = (user.to_string(), id.to_string());
        let ufrag = self.rng.token(8);
        let pwd = self.rng.token(24);
        let ids = self.stream_ids();
        let session_id = self.session_id();
        let setup = EchoSetup {
            browser: BrowserSetup {
                now,
                offer,
                codecs: &self.cfg.codecs,
                dtls: &self.dtls,
                media_addr: self.cfg.media_addr,
                ice_tcp: self.cfg.ice_tcp,
                ufrag: &ufrag,
                pwd: &pwd,
                ssrc: ids.ssrc_webrtc,
                session_id,
                video: &[],
                video_ssrc: 0,
            },
            sequence: ids.seq_webrtc,
            timestamp: ids.ts_webrtc,
            opus_complexity: self.cfg.opus_complexity,
        };
        match EchoCall::new(setup) {
            Ok((call, answer)) => {
                log::info!("call {id} of {} to echo: answered", crate::pii::Pii(user));
                self.insert(key, Call::Echo(Box::new(call)), Some(ufrag));
                self.say(
                    user,
                    protocol::local_state(
                        id,
                        CallState::SentToRemote,
                        Some(&answer),
                        None,
                        None,
                        None,
                    ),
                );
            }
            Err(why) => {
                log::info!(
                    "call {id} of {} to echo refused: {why}",
                    crate::pii::Pii(user)
                );
                self.refuse(
                    user,
                    ErrorCode::BadRequest,
                    &format!("unusable SDP offer: {why}"),
                    id,
                );
            }
        }
    }

    /// Codecs for a browser in a bridged call: the configured ones the bridge can code;
    /// among G.711 laws, `sip` (the SIP side's) first, so they can be relayed.
    fn browser_codecs(&self, sip: Option<Codec>) -> Vec<Codec> {
        let mut codecs: Vec<Codec> = self
            .cfg
            .codecs
            .iter()
            .copied()
            .filter(|c| media_codec(*c).is_some())
            .collect();
        if let Some(sip) = sip
            && let (Some(a), Some(b)) = (
                codecs.iter().position(|c| *c == sip),
                codecs
                    .iter()
                    .position(|c| matches!(c, Codec::Pcmu | Codec::Pcma)),
            )
            && a > b
        {
            codecs.swap(a, b);
        }
        codecs
    }

    fn may_call(&self, callee: &str) -> bool {
        if self.cfg.standalone {
            // Registered SIP users only: the endpoint knows (NoRoute otherwise).
            return true;
        }
        match &self.cfg.rtm2sip {
            Some(rule) => rule.allow_any || rule.acc_rule.matches(callee),
            None => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invite_sip(
        &mut self,
        now: Instant,
        user: &str,
        id: &str,
        callee: &str,
        offer: &str,
        content: Option<&str>,
        ctx: &mut Ctx<'_>,
    ) {
        if !self.may_call(callee) {
            log::info!(
                "call {id} of {} to {}: number not allowed by [rtm2sip]",
                crate::pii::Pii(user),
                crate::pii::Pii(callee)
            );
            let sip = sip_status(403, "Forbidden");
            let text = protocol::local_state(id, CallState::Failure, None, None, None, Some(&sip));
            self.say(user, text);
            self.record_attempt(now, user, callee, "app_to_sip", Some(403), "NOT_ALLOWED");
            return;
        }
        let Some(port) = ctx.ports.open() else {
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("call {id}: no free port in [media] rtp_ports");
            let sip = sip_status(503, "Service Unavailable");
            let text = protocol::local_state(id, CallState::Failure, None, None, None, Some(&sip));
            self.say(user, text);
            return;
        };
        let ufrag = self.rng.token(8);
        let pwd = self.rng.token(24);
        let ids = self.stream_ids();
        let session_id = self.session_id();
        let codecs = self.browser_codecs(None);
        let browser = BrowserSide::new(BrowserSetup {
            now,
            offer,
            codecs: &codecs,
            dtls: &self.dtls,
            media_addr: self.cfg.media_addr,
            ice_tcp: self.cfg.ice_tcp,
            ufrag: &ufrag,
            pwd: &pwd,
            ssrc: ids.ssrc_webrtc,
            session_id,
            video: &[],
            video_ssrc: 0,
        });
        let (browser, answer) = match browser {
            Ok(b) => b,
            Err(why) => {
                ctx.ports.close(port);
                self.refuse(
                    user,
                    ErrorCode::BadRequest,
                    &format!("unusable SDP offer: {why}"),
                    id,
                );
                return;
            }
        };
        let formats = self.sip_offer_formats(Some(browser.negotiated().codec));
        let sip_id = SipCallId(self.next_sip);
        self.next_sip += 1;
        let mut call = BridgeCall::new(
            now,
            Way::AppToSip,
            sip_id,
            callee.to_string(),
            Phase::Calling,
            ids,
            port,
            self.cfg.rtp_ip,
            self.cfg.opus_complexity,
        );
        call.rtp_timeout = self.cfg.rtp_timeout;
        call.sip_allowed = self.sip_codecs();
        if self.cfg.sip_srtp == crate::config::SipSrtp::Mandatory
            && let Err(e) = call.offer_srtp()
        {
            log::error!("no random numbers for SRTP keys ({e}): call refused");
            ctx.ports.close(port);
            self.refuse(user, ErrorCode::Overloaded, "no SRTP keys", id);
            return;
        }
        call.local_sdp = call.build_sip_sdp(
            &formats,
            Some(TELEPHONE_EVENT_PT),
            Direction::SendRecv,
            session_id,
        );
        let (display, user_data) = content_fields(content);
        // The app chooses what the callee sees only when the operator allows it: by default
        // the From display name is the authenticated app user.
        let display = display.filter(|_| self.cfg.app_display_name);
        let mut headers = Vec::new();
        if let Some(data) = user_data {
            headers.push(("X-ArInfo".to_string(), data));
        }
        let outgoing = OutgoingCall {
            id: sip_id,
            callee: callee.to_string(),
            caller: user.to_string(),
            display_name: display,
            // the offer is needed no more once sent
            sdp: std::mem::take(&mut call.local_sdp),
            headers,
            // standalone: an app user calling another who is logged in stays inside srgate
            reach: if self.cfg.standalone && callee != user && (ctx.online)(callee) {
                Reach::App
            } else {
                Reach::GroupOrPhone
            },
            account: None,
        };
        if let Err(e) = ctx.sip.start_call(now, outgoing) {
            ctx.ports.close(port);
            log::info!(
                "call {id} of {} to {}: not sent ({e:?})",
                crate::pii::Pii(user),
                crate::pii::Pii(callee)
            );
            let text = match e {
                CallError::NoRoute => protocol::local_state(
                    id,
                    CallState::Failure,
                    None,
                    None,
                    Some(Failure::PeerOffline),
                    None,
                ),
                _ => {
                    let sip = sip_status(503, "Service Unavailable");
                    protocol::local_state(id, CallState::Failure, None, None, None, Some(&sip))
                }
            };
            self.say(user, text);
            self.record_attempt(now, user, callee, "app_to_sip", None, "PEER_OFFLINE");
            return;
        }
        self.metrics.sip_invites_out += 1;
        log::info!(
            "call {id} of {} to {}: INVITE sent, RTP port {port}",
            crate::pii::Pii(user),
            crate::pii::Pii(callee)
        );
        call.deadline = Some(now + self.cfg.invitation_timeout);
        if let Err(why) = call.set_browser(browser) {
            log::warn!("call {id}: {why}");
        }
        let key = (user.to_string(), id.to_string());
        self.insert(key, Call::Bridge(Box::new(call)), Some(ufrag));
        self.say(
            user,
            protocol::local_state(id, CallState::SentToRemote, Some(&answer), None, None, None),
        );
    }

    /// The app user accepts an invitation with its browser's `offer` (or, `preview`, takes
    /// the caller's early media with it while the call rings on).
    fn accept(&mut self, now: Instant, slot: usize, offer: &str, preview: bool, ctx: &mut Ctx<'_>) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let sip_codec = self.sip_codec_of(slot);
        let codecs = self.browser_codecs(sip_codec);
        // after srgate's offer (`Request::Offer`) the credentials are those it announced
        let (ufrag, pwd) = match self.bridge_mut(slot).and_then(|b| b.browser_offer.clone()) {
            Some(offered) => offered,
            None => (self.rng.token(8), self.rng.token(24)),
        };
        let session_id = self.session_id();
        let ssrc = match self.bridge_mut(slot) {
            Some(b) => b.ids_ssrc_webrtc(),
            None => return,
        };
        // the SIP side's video, when srgate can pass it on and a port is free for it
        let video_formats: Vec<VideoFormat> = self
            .bridge_mut(slot)
            .and_then(|b| b.sip_video_offer())
            .map(|v| v.formats.clone())
            .unwrap_or_default();
        let video_port = if video_formats.is_empty() {
            None
        } else {
            ctx.ports.open()
        };
        let video_formats = if video_port.is_some() {
            video_formats
        } else {
            Vec::new()
        };
        let video_ssrc = u32::from_be_bytes(self.rng.bytes::<4>());
        let result = BrowserSide::new(BrowserSetup {
            now,
            offer,
            codecs: &codecs,
            dtls: &self.dtls,
            media_addr: self.cfg.media_addr,
            ice_tcp: self.cfg.ice_tcp,
            ufrag: &ufrag,
            pwd: &pwd,
            ssrc,
            session_id,
            video: &video_formats,
            video_ssrc,
        });
        let (browser, answer) = match result {
            Ok(b) => b,
            Err(why) => {
                if let Some(port) = video_port {
                    ctx.ports.close(port);
                }
                // The invitation stays: the app may accept again with a usable offer.
                self.refuse(
                    &key.0,
                    ErrorCode::BadRequest,
                    &format!("unusable SDP offer: {why}"),
                    &key.1,
                );
                return;
            }
        };
        let browser_video = browser.video().cloned();
        let Some(b) = self.bridge_mut(slot) else {
            if let Some(port) = video_port {
                ctx.ports.close(port);
            }
            return;
        };
        match (video_port, browser_video, b.sip_video_offer().cloned()) {
            // a browser that will not receive it (inactive) gets none: the door's video
            // section is then refused
            (Some(port), Some((theirs, ours)), Some(remote))
                if theirs.direction != Direction::Inactive =>
            {
                let answer = VideoDescription::answering(&remote, ours, port);
                let sip_ssrc = b.ids_ssrc_sip();
                b.video = Some(Box::new(VideoLeg::new(
                    port,
                    answer,
                    remote,
                    theirs.payload_type,
                    video_ssrc,
                    sip_ssrc,
                )));
                b.rewrite_answer();
                self.by_port.insert(port, slot);
                self.by_port.insert(port.wrapping_add(1), slot);
                log::info!("call {}: the door's video goes to the browser", key.1);
            }
            (Some(port), ..) => ctx.ports.close(port),
            _ => {}
        }
        let Some(b) = self.bridge_mut(slot) else {
            return;
        };
        if let Err(why) = b.set_browser(browser) {
            log::warn!("call {}: {why}", key.1);
        }
        self.by_ufrag.insert(ufrag, slot);
        let Some(b) = self.bridge_mut(slot) else {
            return;
        };
        let state = if preview {
            // rings on (the invitation's deadline stays); early media once DTLS is up
            b.phase = Phase::Previewing;
            CallState::Preview
        } else {
            b.phase = Phase::Accepting;
            b.deadline = Some(now + ACCEPT_WAIT);
            // a ring group's call is this user's from now on (the other members' are
            // cancelled)
            ctx.sip.claim(b.sip);
            CallState::Accepted
        };
        self.say(
            &key.0,
            protocol::remote_state(&key.1, state, Some(&answer), None),
        );
    }

    /// `accept` after `preview`: the 200 (with the answer the 183 carried) once the
    /// browser's media is up — now, when it is.
    fn accept_previewed(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let Some(b) = self.bridge_mut(slot) else {
            return;
        };
        ctx.sip.claim(b.sip);
        let connected = b.browser.as_ref().is_some_and(|br| br.is_connected());
        let mut mode = None;
        if connected {
            mode = Some(b.answer_sip(now, ctx.sip));
        } else {
            b.phase = Phase::Accepting;
            b.deadline = Some(now + ACCEPT_WAIT);
        }
        if let Some(mode) = mode {
            self.count_mode(mode);
        }
        self.say(
            &key.0,
            protocol::remote_state(&key.1, CallState::Accepted, None, None),
        );
        self.touch(slot);
    }

    /// The app user hangs up (or cancels, or refuses by hanging up).
    fn hangup_by_app(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let (text, code) = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(echo))) => {
                let text = if echo.browser().is_connected() {
                    protocol::hangup(&key.1, HangupReason::Local, None)
                } else {
                    protocol::local_state(&key.1, CallState::Canceled, None, None, None, None)
                };
                (Some(text), None)
            }
            Some((_, Call::Bridge(b))) => {
                let sip = b.sip;
                b.sip_alive = false;
                match b.phase {
                    Phase::Calling | Phase::Early => {
                        ctx.sip.hangup(now, sip);
                        let text = protocol::local_state(
                            &key.1,
                            CallState::Canceled,
                            None,
                            None,
                            None,
                            None,
                        );
                        (Some(text), Some(487))
                    }
                    Phase::Offered | Phase::Previewing => {
                        // Before the answer a hangup acts as refuse.
                        ctx.sip.reject(now, sip, 486);
                        (None, Some(486))
                    }
                    Phase::Accepting => {
                        ctx.sip.hangup(now, sip);
                        (
                            Some(protocol::hangup(&key.1, HangupReason::Local, None)),
                            Some(487),
                        )
                    }
                    Phase::Answered => {
                        ctx.sip.hangup(now, sip);
                        (
                            Some(protocol::hangup(&key.1, HangupReason::Local, None)),
                            None,
                        )
                    }
                }
            }
            Some((_, Call::Pair(_))) | None => return,
        };
        if let Some(text) = text {
            self.say(&key.0, text);
        }
        self.remove(now, slot, ctx, code, "LOCAL");
    }

    /// Ends a call without telling its user (gone for good), ending the SIP side.
    fn end_silently(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>, reason: &str) {
        let mut code = None;
        if let Some(b) = self.bridge_mut(slot)
            && b.sip_alive
        {
            b.sip_alive = false;
            match b.phase {
                Phase::Offered | Phase::Previewing => {
                    ctx.sip.reject(now, b.sip, 480);
                    code = Some(480);
                }
                _ => ctx.sip.hangup(now, b.sip),
            }
        }
        self.remove(now, slot, ctx, code, reason);
    }
}
