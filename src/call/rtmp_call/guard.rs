//! Fault isolation of REST calls, as for the other calls ([`crate::call::guard`]): the
//! work of one REST call (its SIP events, RTP, timers, RTMP bytes, requests) runs
//! guarded; a call whose code panicked is marked here and ended with an error at the next
//! timer (reason `ERROR`, SIP code 500 when unanswered: BYE or CANCEL, stream closed,
//! port freed, record written), and every other call goes on.

use std::time::Instant;

use super::*;

impl RtmpCalls {
    /// The work of the call on SIP leg `sip` panicked: it is ended at the next timer.
    pub(super) fn poison(&mut self, sip: SipCallId) {
        let Some(index) = self.by_sip(sip) else {
            return; // it ended before it panicked
        };
        if !self.poisoned.iter().any(|(s, _)| *s == sip) {
            // an instant already past: the next timer is due at once
            self.poisoned.push((sip, self.calls[index].started));
        }
    }

    /// The work of connection `conn` panicked: its call is ended (or, for a session
    /// still writing its `deleteStream` after its call ended, the connection closed).
    pub(super) fn connection_poisoned(&mut self, conn: u64) {
        log::error!("RTMP connection {conn}: internal error (a panic in its session)");
        if let Some(index) = self.by_conn(conn) {
            self.poison(self.calls[index].sip);
        } else if let Some(i) = self.closing.iter().position(|(s, _)| s.conn == conn) {
            self.closing.swap_remove(i);
            self.outputs.push_back(RtmpOutput::Close { conn });
        }
    }

    /// When the calls marked by [`RtmpCalls::poison`] are to be ended (at once).
    pub(super) fn poisoned_due(&self) -> Option<Instant> {
        self.poisoned.iter().map(|(_, at)| *at).min()
    }
}

impl Calls {
    /// Ends the REST calls whose own code panicked.
    pub(in crate::call) fn rtmp_poisoned(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        for (sip, _) in std::mem::take(&mut self.rtmp.poisoned) {
            let Some(index) = self.rtmp.by_sip(sip) else {
                continue;
            };
            self.metrics.panicked += 1;
            log::error!(
                "REST call {}: internal error (a panic in its media, signalling or RTMP state); the call ends, others go on",
                self.rtmp.calls[index].call_id
            );
            let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.end_rtmp(now, index, Some(500), "ERROR", ctx);
            }));
            if ended.is_err() {
                self.drop_rtmp(now, sip, ctx);
            }
        }
        self.rtmp.poisoned.shrink_to(4);
    }

    /// Takes the call on SIP leg `sip` out without touching more of its state than its
    /// leg, port and connection (ending it panicked): none of them is left behind.
    pub(super) fn drop_rtmp(&mut self, now: Instant, sip: SipCallId, ctx: &mut Ctx<'_>) {
        // end_rtmp may have taken it out (and freed all three) before it panicked
        let Some(index) = self.rtmp.by_sip(sip) else {
            return;
        };
        let call = self.rtmp.calls.swap_remove(index);
        if call.sip_alive {
            ctx.sip.hangup(now, call.sip);
        }
        ctx.ports.close(call.port);
        if let Some(video_port) = call.video_port {
            ctx.ports.close(video_port);
        }
        if let Some(session) = call.session {
            self.rtmp
                .outputs
                .push_back(RtmpOutput::Close { conn: session.conn });
        }
        self.metrics.ended += 1;
        log::error!(
            "REST call {}: dropped after a second internal error",
            call.call_id
        );
    }
}
