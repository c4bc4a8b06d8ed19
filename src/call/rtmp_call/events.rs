//! What reaches a REST call: its SIP leg's events, its phone's RTP, its timers, and its
//! RTMP connection's bytes.

use std::time::Instant;

use super::*;
use crate::call::guard::guarded;

impl Calls {
    /// A SIP event of a REST call's leg; whether it was one.
    pub(in crate::call) fn rtmp_sip_event(
        &mut self,
        now: Instant,
        event: &SipEvent,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some((index, sip)) = event
            .call_id()
            .and_then(|id| Some((self.rtmp.by_sip(id)?, id)))
        else {
            return false;
        };
        self.rtmp.touched = true;
        if guarded(|| self.rtmp_sip_event_of(now, index, event, ctx)).is_none() {
            self.rtmp.poison(sip);
        }
        true
    }

    fn rtmp_sip_event_of(
        &mut self,
        now: Instant,
        index: usize,
        event: &SipEvent,
        ctx: &mut Ctx<'_>,
    ) {
        let call = &mut self.rtmp.calls[index];
        match event {
            SipEvent::CallProgress { .. } if call.state == CallState::New => {
                call.state = CallState::Ringing;
            }
            SipEvent::CallAnswered { sdp, .. } => {
                let answered = parse_rtp_sdp(sdp)
                    .map(RemoteRtp::plain)
                    .map_err(|e| e.to_string())
                    .and_then(|remote| {
                        if remote.crypto.is_some() {
                            return Err("SRTP answer to an RTP offer".to_owned());
                        }
                        let (pt, codec) = remote
                            .codecs
                            .iter()
                            .copied()
                            .find(|(_, c)| decodable(*c).is_some())
                            .ok_or("no codec srgate decodes in the answer")?;
                        let audio = Audio::new(codec, pt, self.cfg.opus_complexity)?;
                        Ok((remote, codec, audio))
                    });
                match answered {
                    Ok((remote, codec, audio)) => {
                        // the picture requests' sender: srgate's stream toward the phone
                        let ssrc = call.ssrc;
                        call.attach_video(&remote, (ssrc, ssrc));
                        if let (Some(port), None) = (call.video_port, call.video.as_ref()) {
                            // the phone answered without video: its port goes
                            ctx.ports.close(port);
                            call.video_port = None;
                        }
                        call.te_pt = remote.telephone_event;
                        call.source.set_expected(remote.addr);
                        call.remote = Some(remote);
                        call.codec = Some(codec);
                        call.audio = Some(audio);
                        call.state = CallState::Established;
                        call.sip_code = Some(200);
                        call.answered = Some(now);
                        call.deadline = None;
                        call.last_rtp = now;
                        call.next_tick = Some(now + TICK);
                        self.metrics.transcoded += 1;
                        log::info!(
                            "REST call {}: answered ({})",
                            call.call_id,
                            codec.encoding_name()
                        );
                    }
                    Err(why) => {
                        log::info!("REST call {}: answer unusable: {why}", call.call_id);
                        self.end_rtmp(now, index, Some(488), "ERROR", ctx);
                    }
                }
            }
            SipEvent::CallUpdated { sdp, .. } => match parse_rtp_sdp(sdp) {
                Ok(remote) => {
                    call.source.set_expected(remote.addr);
                    call.remote = Some(remote);
                    call.last_rtp = now;
                }
                Err(e) => log::info!("re-offer of REST call {}: {e}", call.call_id),
            },
            SipEvent::CallFailed { code, reason, .. } => {
                log::info!(
                    "REST call {}: the phone answered {code} {reason}",
                    call.call_id
                );
                call.sip_alive = false;
                call.sip_code = Some(*code);
                self.end_rtmp(now, index, Some(*code), "REMOTE", ctx);
            }
            SipEvent::CallEnded { code, .. } => {
                call.sip_alive = false;
                let reason = if code.is_some() { "TIMEOUT" } else { "REMOTE" };
                self.end_rtmp(now, index, *code, reason, ctx);
            }
            _ => {}
        }
    }

    /// A datagram on a REST call's port (RTP, or RTCP on port + 1); whether it was one.
    pub(in crate::call) fn rtmp_rtp(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddr,
        data: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let RtmpCalls {
            calls,
            poisoned,
            out,
            ..
        } = &mut self.rtmp;
        let Some(call) = calls.iter_mut().find(|c| {
            c.port == port
                || c.port.wrapping_add(1) == port
                || c.video_port
                    .is_some_and(|v| v == port || v.wrapping_add(1) == port)
        }) else {
            return false;
        };
        let sip = call.sip;
        // a call whose code panicked takes nothing more until its end (next timer)
        if poisoned.iter().any(|(s, _)| *s == sip) {
            return true;
        }
        let handled = guarded(|| {
            call.handle_rtp(now, port, from, data);
            call.video_requests(out)
        });
        match handled {
            Some(true) => ctx.sip.picture_update(now, sip),
            Some(false) => {}
            None => self.rtmp.poison(sip),
        }
        true
    }
}

impl RtmpCall {
    /// The phone's answer had video srgate offered (H.264 at [`VIDEO_PT`]): its leg.
    fn attach_video(&mut self, remote: &RemoteRtp, (ssrc, sip_ssrc): (u32, u32)) {
        let (Some(port), Some(rv)) = (self.video_port, remote.video.as_ref()) else {
            return;
        };
        let sends = matches!(rv.direction, Direction::SendOnly | Direction::SendRecv);
        let Some(format) = rv
            .formats
            .iter()
            .find(|f| f.codec == crate::sdp::sip::VideoCodec::H264 && f.h264_mode() <= 1)
        else {
            return;
        };
        if !sends || rv.addr.ip().is_unspecified() {
            return;
        }
        let sprop = crate::sdp::sip::fmtp_value(&format.fmtp, "sprop-parameter-sets");
        // the phone sends with the payload type of srgate's offer (RFC 3264 §5.1), whatever
        // number its answer gave H.264
        let ours = crate::sdp::sip::VideoFormat {
            payload_type: super::VIDEO_PT,
            ..format.clone()
        };
        let answer = crate::sdp::sip::VideoDescription::answering(rv, ours, port);
        let leg = crate::call::video::VideoLeg::new(
            port,
            answer,
            rv.clone(),
            super::VIDEO_PT,
            ssrc,
            sip_ssrc,
        );
        self.video = Some(Box::new(super::video::RtmpVideo::new(leg, sprop)));
        log::info!(
            "REST call {}: the phone's H.264 goes on the stream",
            self.call_id
        );
    }

    /// The video's picture requests for the phone, into `out`; whether one goes as SIP
    /// INFO too (a phone without RTCP feedback).
    fn video_requests(&mut self, out: &mut VecDeque<OutPacket>) -> bool {
        let Some(video) = self.video.as_mut() else {
            return false;
        };
        let mut bytes = [0u8; OUT_MAX];
        if let Some((n, to)) = video.leg.poll_request(&mut bytes) {
            out.push_back((video.leg.port.wrapping_add(1), to, bytes, n));
        }
        video.leg.take_info_request()
    }

    /// A datagram on the call's port (RTP) or the one above it (RTCP), or its video's.
    fn handle_rtp(&mut self, now: Instant, port: u16, from: SocketAddr, data: &[u8]) {
        if let (Some(video_port), Some(answered)) = (self.video_port, self.answered)
            && (port == video_port || port == video_port.wrapping_add(1))
        {
            if let Some(video) = self.video.as_mut() {
                let rtcp = port != video_port;
                video.handle(now, from, data, rtcp, answered, self.session.as_mut());
            }
            return;
        }
        let call = self;
        if port != call.port {
            if !call.source.admits_rtcp(from) {
                call.refused += 1;
            }
            return;
        }
        let Some(audio) = call.audio.as_mut() else {
            return; // before the answer: nowhere to go yet
        };
        if !call.source.admits(from) {
            call.refused += 1;
            return;
        }
        let Ok(packet) = crate::wire::rtp::Packet::new_checked(data) else {
            call.refused += 1;
            return;
        };
        if packet.payload_type() != audio.payload_type {
            // telephone-event, comfort noise: not published
            call.source.latch(from);
            call.last_rtp = now;
            return;
        }
        call.source.latch(from);
        call.last_rtp = now;
        call.packets_in += 1;
        if audio.decode.push_rtp(now, data).is_err() {
            call.refused += 1;
        }
    }
}

impl Calls {
    /// The REST calls' timers: audio ticks, the stream's start and retries, the
    /// invitation and RTP timeouts, closing sessions.
    pub(in crate::call) fn rtmp_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let rtmp = &mut self.rtmp;
        rtmp.touched |= !rtmp.calls.is_empty();
        let before = rtmp.closing.len();
        rtmp.closing.retain(|(s, until)| {
            let done = s.publisher.state() == crate::rtmp::State::Closed || *until <= now;
            if done {
                rtmp.outputs.push_back(RtmpOutput::Close { conn: s.conn });
            }
            !done
        });
        if rtmp.closing.len() != before {
            rtmp.closing.shrink_to(MAX_RTMP_CALLS);
        }
        self.rtmp_poisoned(now, ctx);
        let mut index = 0;
        while index < self.rtmp.calls.len() {
            let sip = self.rtmp.calls[index].sip;
            match guarded(|| self.rtmp_call_timeout(now, index, ctx)) {
                Some(true) => index += 1,
                Some(false) => {} // ended: another call is at `index` now
                None => {
                    self.rtmp.poison(sip);
                    index += 1;
                }
            }
        }
        self.rtmp_poisoned(now, ctx);
    }

    /// Call `index`'s timers due at `now`; whether it goes on (else it ended and was
    /// taken out).
    fn rtmp_call_timeout(&mut self, now: Instant, index: usize, ctx: &mut Ctx<'_>) -> bool {
        let call = &self.rtmp.calls[index];
        if call.deadline.is_some_and(|d| d <= now) {
            log::info!("REST call {}: no answer in time", call.call_id);
            self.end_rtmp(now, index, Some(408), "NO_ANSWER", ctx);
            return false;
        }
        if call.answered.is_some()
            && call.sends()
            && now.saturating_duration_since(call.last_rtp) >= call.rtp_timeout
        {
            log::info!(
                "REST call {}: no RTP for {:?}",
                call.call_id,
                call.rtp_timeout
            );
            self.end_rtmp(now, index, None, "RTP_TIMEOUT", ctx);
            return false;
        }
        if call.retry_at.is_some_and(|t| t <= now) {
            let seed = u64::from_be_bytes(self.rng.bytes::<8>());
            self.rtmp.calls[index].reconnects += 1;
            self.rtmp.connect(now, index, seed);
        }
        let call = &self.rtmp.calls[index];
        if let Some(s) = &call.session
            && s.publisher.state() != crate::rtmp::State::Publishing
            && s.opened + PUBLISH_TIMEOUT <= now
        {
            self.rtmp
                .session_failed(now, index, "not publishing in time".into());
        }
        self.rtmp.tick(now, index);
        let RtmpCalls { calls, out, .. } = &mut self.rtmp;
        calls[index].send_dtmf(now, out);
        calls[index].send_info(now, ctx);
        true
    }

    /// The next RFC 4733 packet of a REST call for its phone, written into `buf`.
    pub(in crate::call) fn rtmp_transmit_rtp(
        &mut self,
        buf: &mut [u8],
    ) -> Option<crate::call::MediaTransmit> {
        let (port, destination, packet, len) = self.rtmp.out.pop_front()?;
        let len = len.min(buf.len());
        buf[..len].copy_from_slice(&packet[..len]);
        Some(crate::call::MediaTransmit {
            socket: crate::call::MediaSocket::Rtp(port),
            destination,
            len,
        })
    }

    /// REST calls up.
    pub fn rtmp_calls(&self) -> usize {
        self.rtmp.count()
    }

    /// The next post to a REST call's hook: (URL, JSON body).
    pub fn poll_rest_hook(&mut self, now: Instant) -> Option<(HookUrl, String)> {
        self.rtmp.notify_changes(now);
        self.rtmp.hooks.pop_front()
    }

    /// The next command of the RTMP sessions for the shell.
    pub fn poll_rtmp_output(&mut self) -> Option<RtmpOutput> {
        self.rtmp.outputs.pop_front()
    }

    /// Bytes connection `conn` should write now.
    pub fn rtmp_transmit(&self, conn: u64) -> Option<&[u8]> {
        guarded(|| {
            self.rtmp
                .calls
                .iter()
                .filter_map(|c| c.session.as_ref())
                .chain(self.rtmp.closing.iter().map(|(s, _)| s))
                .find(|s| s.conn == conn)
                .and_then(|s| s.publisher.poll_transmit())
        })
        .flatten()
    }

    /// `n` bytes of [`Calls::rtmp_transmit`] were written.
    pub fn rtmp_advance(&mut self, conn: u64, n: usize) {
        let rtmp = &mut self.rtmp;
        if guarded(|| {
            if let Some(s) = rtmp.session_mut(conn) {
                s.publisher.advance_transmit(n);
            }
        })
        .is_none()
        {
            rtmp.connection_poisoned(conn);
        }
    }

    /// Bytes read on connection `conn`.
    pub fn rtmp_input(&mut self, now: Instant, conn: u64, bytes: &[u8]) {
        self.rtmp.touched = true;
        let done = guarded(|| {
            if let Some(s) = self.rtmp.session_mut(conn) {
                let _ = s.publisher.handle_input(bytes);
            }
            self.rtmp_events(now, conn);
        });
        if done.is_none() {
            self.rtmp.connection_poisoned(conn);
        }
    }

    /// Connection `conn` closed, or could not be opened (`why`).
    pub fn rtmp_closed(&mut self, now: Instant, conn: u64, why: Option<String>) {
        self.rtmp.touched = true;
        if let Some(i) = self.rtmp.closing.iter().position(|(s, _)| s.conn == conn) {
            self.rtmp.closing.swap_remove(i);
            return;
        }
        let Some(index) = self.rtmp.by_conn(conn) else {
            return;
        };
        let why = why.unwrap_or_else(|| "the RTMP server closed the connection".into());
        let sip = self.rtmp.calls[index].sip;
        if guarded(|| self.rtmp.session_failed(now, index, why)).is_none() {
            self.rtmp.poison(sip);
        }
    }

    /// What connection `conn`'s session says after its input.
    fn rtmp_events(&mut self, now: Instant, conn: u64) {
        let Some(index) = self.rtmp.by_conn(conn) else {
            return;
        };
        // a session gives a handful of events per input
        for _ in 0..16 {
            let call = &mut self.rtmp.calls[index];
            let Some(session) = call.session.as_mut() else {
                return;
            };
            let Some(event) = session.publisher.poll_event() else {
                return;
            };
            match event {
                RtmpEvent::Connected => {}
                RtmpEvent::Publishing => {
                    log::info!(
                        "REST call {}: publishing to {}",
                        call.call_id,
                        call.url.tc_url()
                    );
                    call.rtmp_state = RtmpState::Publishing;
                    call.backoff = RETRY_FIRST;
                }
                RtmpEvent::Error(e) => {
                    return self.rtmp.session_failed(now, index, e.to_string());
                }
                RtmpEvent::Closed => {
                    return self.rtmp.session_failed(
                        now,
                        index,
                        "the RTMP server ended the session".into(),
                    );
                }
            }
        }
    }
}
