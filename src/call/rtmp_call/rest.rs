//! The REST requests of "SIP as RTMP" calls: startup, terminate, find, send_dtmf, and
//! the end of a call (its SIP leg, stream, port and record).

use crate::sip::endpoint::CallAccount;
use std::time::Instant;

use super::*;
use crate::call::guard::guarded;

impl Calls {
    /// Carries out a REST request: the HTTP status and the JSON body of the answer.
    pub fn handle_rest(
        &mut self,
        now: Instant,
        request: RestRequest,
        ctx: &mut Ctx<'_>,
    ) -> (u16, String) {
        self.rtmp.touched = true;
        let call_id = match &request {
            RestRequest::Startup(startup) => Some(startup.call_id.clone()),
            RestRequest::Terminate { call_id }
            | RestRequest::Find { call_id }
            | RestRequest::SendDtmf { call_id, .. } => Some(call_id.clone()),
            RestRequest::FindAll => None,
        };
        let result = guarded(|| self.rest_request(now, request, ctx));
        match result {
            Some(Ok(body)) => (200, body),
            Some(Err(e)) => (e.status, e.json()),
            None => {
                // a startup's port and SIP leg not yet in a call are freed
                if let Some((port, video_port, sip)) = self.rtmp.starting.take() {
                    ctx.ports.close(port);
                    if let Some(video_port) = video_port {
                        ctx.ports.close(video_port);
                    }
                    if let Some(sip) = sip {
                        ctx.sip.hangup(now, sip);
                    }
                }
                // the call the request named, if it is up, ends
                // (counted when it ends)
                if let Some(i) = call_id.and_then(|id| self.rtmp.by_call_id(&id)) {
                    let sip = self.rtmp.calls[i].sip;
                    self.rtmp.poison(sip);
                } else {
                    self.metrics.panicked += 1;
                }
                log::error!("REST request: internal error (a panic while carrying it out)");
                let e = RestError {
                    status: 500,
                    code: "INTERNAL",
                    message: "an internal error (logged); the call named, if up, ends".into(),
                };
                (e.status, e.json())
            }
        }
    }

    fn rest_request(
        &mut self,
        now: Instant,
        request: RestRequest,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, RestError> {
        match request {
            RestRequest::Startup(startup) => self.rest_startup(now, *startup, ctx),
            RestRequest::Terminate { call_id } => self.rest_terminate(now, &call_id, ctx),
            RestRequest::Find { call_id } => self.rest_find(now, &call_id),
            RestRequest::FindAll => {
                let mut all: Vec<CallInfo> = self.rtmp.calls.iter().map(|c| c.info(now)).collect();
                all.extend(self.rtmp.finished.iter().cloned());
                Ok(crate::rest::list_json(&all))
            }
            RestRequest::SendDtmf { call_id, dtmf } => self.rest_dtmf(now, &call_id, &dtmf, ctx),
        }
    }

    fn rest_startup(
        &mut self,
        now: Instant,
        startup: Startup,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, RestError> {
        let error = |status, code, message: &str| RestError {
            status,
            code,
            message: message.to_owned(),
        };
        if !cfg!(feature = "aac") {
            return Err(error(
                501,
                "NOT_SUPPORTED",
                "srgate was built without AAC (feature aac): no RTMP publishing",
            ));
        }
        if !startup.has_audio {
            return Err(error(
                501,
                "NOT_SUPPORTED",
                "hasAudio: srgate publishes the call's audio (and its video next to it): \
                 a stream without audio is not made",
            ));
        }
        let account = match &startup.sip {
            Some(sip) => Some(
                call_account(sip)
                    .map_err(|(field, why)| error(400, "BAD_FIELD", &format!("{field}: {why}")))?,
            ),
            None => None,
        };
        if self.rtmp.by_call_id(&startup.call_id).is_some() {
            return Err(error(409, "DUPLICATE", "callId: a call with this id is up"));
        }
        if self.rtmp.calls.len() >= MAX_RTMP_CALLS {
            return Err(error(503, "TOO_MANY_CALLS", "too many REST calls at once"));
        }
        let call_id = startup.call_id.clone();
        let callee = startup.callee.clone();
        let hook = startup
            .hook_url
            .clone()
            .or_else(|| self.cfg.rest_hook.clone());
        let fail = |this: &mut Calls, code: u16, reason: &str| {
            // a new call under an id that ended before replaces its record
            this.rtmp.finished.retain(|c| c.call_id != call_id);
            this.record_attempt(now, CALLER, &callee, "rest_to_sip", Some(code), reason);
            let info = CallInfo {
                call_id: call_id.clone(),
                callee: callee.clone(),
                state: CallState::Failed,
                sip_code: Some(code),
                reason: Some(reason.to_owned()),
                rtmp_url: startup.rtmp_url.tc_url(),
                rtmp_state: RtmpState::Closed,
                rtmp_error: None,
                rtmp_reconnects: 0,
                packets_in: 0,
                aac_frames: 0,
                duration_ms: 0,
            };
            let body = info.json().to_string();
            // the back end is told of this end as of any other
            if let Some(hook) = hook.clone() {
                this.rtmp.hooks.push_back((hook, super::hook_body(&info)));
            }
            this.keep_finished(info);
            Ok(body)
        };
        if account.is_none() && self.cfg.standalone && !ctx.sip.can_reach(now, &callee) {
            log::info!(
                "REST call {call_id} to {}: not registered → FAILED",
                crate::pii::Pii(&callee)
            );
            return fail(self, 480, "NOT_REGISTERED");
        }
        let Some(port) = ctx.ports.open() else {
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("REST call {call_id}: no free port in [media] rtp_ports");
            return Err(error(503, "OVERLOADED", "no free RTP port"));
        };
        // hasVideo: a second port pair for the phone's H.264 (audio only without a free one)
        let video_port = if startup.has_video {
            let p = ctx.ports.open();
            if p.is_none() {
                log::warn!("REST call {call_id}: no free port for video: audio only");
            }
            p
        } else {
            None
        };
        self.rtmp.starting = Some((port, video_port, None));
        let video_offer = video_port.map(|port| crate::sdp::sip::VideoDescription {
            port,
            proto: "RTP/AVP".into(),
            format: crate::sdp::sip::VideoFormat {
                payload_type: VIDEO_PT,
                codec: crate::sdp::sip::VideoCodec::H264,
                fmtp: "profile-level-id=42e01f;packetization-mode=1".into(),
            },
            direction: Direction::RecvOnly,
            feedback: false,
        });
        let layout: Vec<crate::sdp::sip::Section<'_>> = match &video_offer {
            Some(v) => vec![
                crate::sdp::sip::Section::Audio,
                crate::sdp::sip::Section::Video(v),
            ],
            None => Vec::new(),
        };
        let formats: Vec<(u8, Codec)> = self
            .sip_offer_formats(None)
            .into_iter()
            .filter(|(_, c)| decodable(*c).is_some())
            .collect();
        let sdp = build_rtp_sdp(&RtpDescription {
            addr: SocketAddr::new(self.cfg.rtp_ip, port),
            codecs: &formats,
            telephone_event: Some(crate::call::TELEPHONE_EVENT_PT),
            direction: Direction::SendRecv,
            session_id: self.session_id(),
            version: 1,
            ptime: 20,
            crypto: &[],
            best_effort: false,
            layout: &layout,
        });
        let sip = SipCallId(self.next_sip);
        self.next_sip += 1;
        let ids = self.stream_ids();
        let outgoing = OutgoingCall {
            id: sip,
            callee: callee.clone(),
            caller: CALLER.into(),
            display_name: None,
            sdp,
            headers: Vec::new(),
            reach: if self.cfg.standalone {
                Reach::Phone
            } else {
                Reach::GroupOrPhone
            },
            account: account.map(Box::new),
        };
        if let Err(e) = ctx.sip.start_call(now, outgoing) {
            self.rtmp.starting = None;
            ctx.ports.close(port);
            if let Some(video_port) = video_port {
                ctx.ports.close(video_port);
            }
            let (code, reason) = crate::call::link::refusal_of(&e);
            log::info!("REST call {call_id}: SIP call not started ({e:?})");
            return fail(self, code, reason);
        }
        self.rtmp.starting = Some((port, video_port, Some(sip)));
        #[cfg(test)]
        tests::fault_at(
            (callee == tests::PANIC_AFTER_INVITE).then_some(tests::Fault::Start),
            tests::Fault::Start,
        );
        self.metrics.sip_invites_out += 1;
        self.rtmp.finished.retain(|c| c.call_id != call_id);
        log::info!(
            "REST call {call_id} to {}: calling, RTP port {port}, publishing to {}",
            crate::pii::Pii(&callee),
            startup.rtmp_url.tc_url()
        );
        self.rtmp.calls.push(RtmpCall {
            call_id,
            callee,
            url: startup.rtmp_url,
            sip,
            sip_alive: true,
            port,
            video_port,
            video: None,
            state: CallState::New,
            sip_code: None,
            reason: None,
            started: now,
            answered: None,
            deadline: Some(now + self.cfg.invitation_timeout),
            source: RtpSource::default(),
            remote: None,
            codec: None,
            audio: None,
            session: None,
            rtmp_state: RtmpState::Connecting,
            rtmp_error: None,
            reconnects: 0,
            retry_at: None,
            backoff: RETRY_FIRST,
            next_tick: None,
            packets_in: 0,
            refused: 0,
            aac_frames: 0,
            frames_dropped: 0,
            last_rtp: now,
            rtp_timeout: self.cfg.rtp_timeout,
            dtmf: DtmfSender::new(8000),
            info_digits: heapless::Deque::new(),
            next_info: None,
            te_pt: None,
            ssrc: ids.ssrc_sip,
            seq: ids.seq_sip,
            ts_base: ids.ts_sip,
            event_ts: 0,
            hook,
            notified: None,
            #[cfg(test)]
            fault: None,
        });
        self.rtmp.starting = None; // the call owns them now
        let index = self.rtmp.calls.len() - 1;
        let seed = u64::from_be_bytes(self.rng.bytes::<8>());
        self.rtmp.connect(now, index, seed);
        Ok(self.rtmp.calls[index].info(now).json().to_string())
    }

    fn rest_find(&self, now: Instant, call_id: &str) -> Result<String, RestError> {
        if let Some(i) = self.rtmp.by_call_id(call_id) {
            return Ok(self.rtmp.calls[i].info(now).json().to_string());
        }
        self.rtmp
            .finished
            .iter()
            .rev()
            .find(|c| c.call_id == call_id)
            .map(|c| c.json().to_string())
            .ok_or_else(unknown_call)
    }

    fn rest_terminate(
        &mut self,
        now: Instant,
        call_id: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, RestError> {
        let Some(index) = self.rtmp.by_call_id(call_id) else {
            return Err(unknown_call());
        };
        let code = if self.rtmp.calls[index].answered.is_some() {
            None
        } else {
            Some(487)
        };
        let info = self.end_rtmp(now, index, code, "TERMINATED", ctx);
        Ok(info.json().to_string())
    }

    fn rest_dtmf(
        &mut self,
        now: Instant,
        call_id: &str,
        dtmf: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, RestError> {
        let Some(index) = self.rtmp.by_call_id(call_id) else {
            return Err(unknown_call());
        };
        let call = &self.rtmp.calls[index];
        if call.state != CallState::Established {
            return Err(RestError {
                status: 409,
                code: "NOT_ESTABLISHED",
                message: "callId: the call is not answered yet".into(),
            });
        }
        if call.te_pt.is_some() && call.destination().is_some() {
            // RFC 4733 events on srgate's stream toward the phone
            let call = &mut self.rtmp.calls[index];
            if call.dtmf.queue(now, dtmf).is_err() {
                return Err(dtmf_busy());
            }
        } else {
            // the phone takes no telephone-event: SIP INFO, one request a digit, paced
            let call = &mut self.rtmp.calls[index];
            if call.info_digits.len() + dtmf.chars().count() > call.info_digits.capacity() {
                return Err(dtmf_busy());
            }
            for digit in dtmf.chars() {
                let _ = call.info_digits.push_back(digit);
            }
            call.next_info.get_or_insert(now);
            call.send_info(now, ctx);
        }
        let call = &self.rtmp.calls[index];
        Ok(call.info(now).json().to_string())
    }

    pub(super) fn keep_finished(&mut self, info: CallInfo) {
        if self.rtmp.finished.len() >= FINISHED_KEPT {
            self.rtmp.finished.pop_front();
        }
        self.rtmp.finished.push_back(info);
    }

    /// Ends REST call `index`: BYE or CANCEL (when its SIP leg is still there), the
    /// stream closed, the port freed, its record written; returns its last state.
    pub(super) fn end_rtmp(
        &mut self,
        now: Instant,
        index: usize,
        code: Option<u16>,
        reason: &str,
        ctx: &mut Ctx<'_>,
    ) -> CallInfo {
        #[cfg(test)]
        tests::fault_at(self.rtmp.calls[index].fault, tests::Fault::End);
        self.rtmp.close_session(now, index);
        let mut call = self.rtmp.calls.swap_remove(index);
        if call.sip_alive {
            ctx.sip.hangup(now, call.sip);
            call.sip_alive = false;
        }
        ctx.ports.close(call.port);
        if let Some(video_port) = call.video_port {
            ctx.ports.close(video_port);
        }
        call.state = if call.answered.is_some() {
            CallState::Finished
        } else {
            CallState::Failed
        };
        call.sip_code = call.sip_code.or(code);
        call.reason = Some(reason.to_owned());
        let info = call.info(now);
        self.metrics.ended += 1;
        let end_ms = self.unix_ms(now);
        let answer_ms = call.answered.map(|a| self.unix_ms(a));
        log::info!(
            "REST call {} to {} ended ({reason}): SIP RTP in {}, refused {}, AAC frames {} ({} not sent), RTMP reconnects {}",
            call.call_id,
            crate::pii::Pii(&call.callee),
            call.packets_in,
            call.refused,
            call.aac_frames,
            call.frames_dropped,
            call.reconnects
        );
        self.cdrs.push_back(Cdr::from_value(json!({
            "call": call.call_id,
            "user": CALLER,
            "peer": call.callee,
            "direction": "rest_to_sip",
            "start": self.unix_ms(call.started),
            "answer": answer_ms,
            "end": end_ms,
            "duration_ms": answer_ms.map(|a| end_ms.saturating_sub(a)),
            "sip_code": call.sip_code.or(answer_ms.map(|_| 200)),
            "reason": reason,
            "codec_webrtc": null,
            "codec_sip": call.codec.map(|c| c.encoding_name()),
            "mode": "rtmp",
            "rtmp": {"url": call.url.tc_url(), "aac_frames": call.aac_frames,
                     "frames_not_sent": call.frames_dropped,
                     "reconnects": call.reconnects, "error": call.rtmp_error},
            "sip": {"rtp_in": call.packets_in, "refused": call.refused, "rtp_port": call.port},
        })));
        if let Some(hook) = call.hook.take() {
            self.rtmp.hooks.push_back((hook, hook_body(&info)));
        }
        self.keep_finished(info.clone());
        info
    }
}

/// 409: the digits would not all fit in the call's queue.
fn dtmf_busy() -> RestError {
    RestError::new(
        409,
        "DTMF_BUSY",
        format!(
            "dtmf: more than {} digits would wait",
            crate::media::dtmf::MAX_QUEUED
        ),
    )
}

fn unknown_call() -> RestError {
    RestError {
        status: 404,
        code: "UNKNOWN_CALL",
        message: "callId: no such call".into(),
    }
}

impl Calls {
    /// Ends every REST call (shutdown).
    pub(in crate::call) fn end_rtmp_calls(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        while let Some(call) = self.rtmp.calls.first() {
            let sip = call.sip;
            if guarded(|| self.end_rtmp(now, 0, Some(503), "SHUTDOWN", ctx)).is_none() {
                self.drop_rtmp(now, sip, ctx);
            }
        }
    }
}

/// The per-call account of a startup's `sip…` fields: the INVITE (and the REGISTER) go to
/// `sipOutboundProxy`, else to `sipDomain` (see [`crate::rest::SipAccount::proxy_addr`]),
/// which must be an IP address or a name the I/O layer resolved; else the field at fault
/// and why.
fn call_account(sip: &crate::rest::SipAccount) -> Result<CallAccount, (&'static str, String)> {
    let field = if sip.outbound_proxy.is_some() {
        "sipOutboundProxy"
    } else {
        "sipDomain"
    };
    let proxy = sip.proxy_addr().ok_or_else(|| {
        let (host, _) = sip.proxy_host_port();
        (field, format!("`{host}` could not be resolved"))
    })?;
    Ok(CallAccount {
        user: sip.login.clone(),
        auth_user: sip.auth_name.clone(),
        password: sip.password.clone(),
        domain: sip.domain.clone(),
        proxy,
        register: sip.register_required,
    })
}
