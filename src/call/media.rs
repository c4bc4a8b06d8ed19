//! The media path: datagrams in (the WebRTC media socket, and the SIP legs' RTP and
//! RTCP ports), what follows a call's input (DTLS connected, DTMF from SIP, failures),
//! and `poll_transmit`, which visits only the calls in the ready queue and writes into
//! the caller's buffer.

use std::net::SocketAddr;
use std::time::Instant;

use crate::signal::protocol;
use crate::signal::protocol::CallState;
use crate::webrtc::demux;

use super::browser::BrowserSide;
use super::guard::guarded;
use super::{Call, Calls, Ctx, MediaSocket, MediaTransmit, Phase, Step, unix_ms_at};

/// RFC 3550 §4 NTP timestamp at `at`.
fn ntp_at(anchor: (Instant, u64), at: Instant) -> u64 {
    let ms = unix_ms_at(anchor, at);
    let secs = ms / 1000 + 2_208_988_800;
    let frac = ((ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

impl Calls {
    /// The relay arena's tail that a burst made resident and no recent wake-up needed,
    /// for the shell to give back (see [`crate::media::relay::RelayArena::unneeded`]).
    pub fn relay_arena_unneeded(&mut self) -> Option<&mut [u8]> {
        self.relay.unneeded()
    }

    /// One datagram that arrived on the WebRTC media socket from `from`. Decrypted in
    /// place: `data` is the receive buffer.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) {
        let (slot, check) = match demux::route(data) {
            demux::Route::LocalUfrag(ufrag) => match self.by_ufrag.get(ufrag) {
                Some(&slot) => (slot, true),
                None => return,
            },
            _ => match self.by_remote.get(&from) {
                Some(&slot) => (slot, false),
                None => return,
            },
        };
        let local = self.cfg.media_addr;
        self.touch(slot);
        let arena = &mut self.relay;
        let (step, accepted) = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(call))) => (
                guarded(|| call.handle_datagram(now, from, local, data)),
                check && call.browser().accepts_from(from),
            ),
            Some((_, Call::Bridge(call))) => (
                guarded(|| call.handle_browser(now, from, local, data, arena)),
                check && call.browser.as_ref().is_some_and(|b| b.accepts_from(from)),
            ),
            Some((_, Call::Pair(_))) | None => return,
        };
        // Later non-STUN datagrams from this address belong to this call once one of its
        // ICE checks from there passed, MESSAGE-INTEGRITY included: a check with a
        // guessed ufrag and no password cannot re-route another browser's packets.
        if accepted && self.by_remote.get(&from) != Some(&slot) {
            self.index_remote(slot, from);
        }
        match step {
            Some(step) => self.after(now, slot, step, ctx),
            None => self.poisoned(now, slot, ctx),
        }
    }

    /// One datagram on a SIP leg's socket `port` (RTP, or RTCP on RTP port + 1).
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddr,
        data: &[u8],
        ctx: &mut Ctx<'_>,
    ) {
        let Some(&slot) = self.by_port.get(&port) else {
            // a REST call's (few, and never a bridged call's port)
            self.rtmp_rtp(now, port, from, data, ctx);
            return;
        };
        self.touch(slot);
        let arena = &mut self.relay;
        let handled = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Bridge(b))) if b.is_video_port(port) => {
                let rtcp = port != b.video.as_ref().map_or(0, |v| v.port);
                guarded(|| b.handle_sip_video(from, data, rtcp))
            }
            Some((_, Call::Bridge(b))) => {
                let rtcp = port != b.port;
                guarded(|| b.handle_sip(now, from, data, rtcp, arena))
            }
            Some((_, Call::Pair(p))) => guarded(|| p.handle_rtp(now, port, from, data, arena)),
            _ => Some(()),
        };
        if handled.is_none() {
            self.poisoned(now, slot, ctx);
            return;
        }
        self.after(now, slot, Step::Continue, ctx);
    }

    /// What follows a call's input: DTLS news, digits from SIP, failures.
    pub(super) fn after(&mut self, now: Instant, slot: usize, step: Step, ctx: &mut Ctx<'_>) {
        let messages = &mut self.messages;
        let mut mode = None;
        // digits the browser keyed in its media: on toward SIP as the app's own
        let mut keyed = heapless::String::<16>::new();
        match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((key, Call::Echo(echo))) => {
                if echo.browser().take_newly_connected() {
                    let text = protocol::local_state(
                        &key.1,
                        CallState::AcceptedByRemote,
                        None,
                        None,
                        None,
                        None,
                    );
                    messages.push_back((key.0.clone(), text));
                }
            }
            Some((key, Call::Bridge(b))) => {
                let connected = b
                    .browser
                    .as_mut()
                    .is_some_and(BrowserSide::take_newly_connected);
                if connected && b.phase == Phase::Previewing {
                    // the caller's early media starts: 183 with the answer the 200 repeats
                    ctx.sip.early_media(now, b.sip, &b.local_sdp);
                }
                if connected && b.phase == Phase::Accepting {
                    // The browser's media path is up: now the SIP caller gets its 200.
                    mode = Some(b.answer_sip(now, ctx.sip));
                }
                while let Some(digit) = b.poll_dtmf() {
                    messages.push_back((key.0.clone(), protocol::dtmf(&key.1, digit)));
                }
                while let Some(digit) = b.poll_browser_dtmf() {
                    // more than a wake-up's worth are lost, as a full queue loses them
                    let _ = keyed.push(digit);
                }
                // the browser asked for a picture: a door without RTCP feedback gets INFO
                if b.video.as_mut().is_some_and(|v| v.take_info_request()) {
                    ctx.sip.picture_update(now, b.sip);
                }
            }
            Some((_, Call::Pair(_))) => {}
            None => return,
        }
        if let Some(mode) = mode {
            self.count_mode(mode);
            self.touch(slot);
        }
        if !keyed.is_empty() {
            self.browser_digits(now, slot, &keyed, ctx);
        }
        if let Step::Failed(reason) = step {
            self.fail(now, slot, reason, ctx);
        }
    }

    /// Writes the next datagram to send into `buf` (at least 1500 bytes). Visits only the
    /// calls that got input since they last had nothing to send. Once it has nothing more
    /// (`None`), the shard's relay arena starts over.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<MediaTransmit> {
        if let Some(t) = self.farewells.pop_front() {
            let len = t.contents.len().min(buf.len());
            buf[..len].copy_from_slice(&t.contents[..len]);
            if self.farewells.is_empty() {
                self.farewells.shrink_to_fit();
            }
            return Some(MediaTransmit {
                socket: MediaSocket::WebRtc,
                destination: t.destination,
                len,
            });
        }
        if let Some(t) = self.rtmp_transmit_rtp(buf) {
            return Some(t);
        }
        while let Some(&slot) = self.ready.front() {
            let t = match self.slots.get_mut(slot).and_then(Option::as_mut) {
                Some((_, Call::Echo(c))) => guarded(|| c.poll_transmit(now, buf)),
                Some((_, Call::Bridge(c))) => {
                    let ntp = ntp_at(self.cfg.clock_anchor, now);
                    let arena = &self.relay;
                    guarded(|| c.poll_transmit(now, ntp, buf, arena))
                }
                Some((_, Call::Pair(c))) => {
                    let arena = &self.relay;
                    guarded(|| c.poll_transmit(buf, arena))
                }
                None => Some(None),
            };
            match t {
                Some(Some(t)) => return Some(t),
                Some(None) => {}
                // Ended at the next handle_timeout (it needs the context), which
                // poll_timeout makes due at once.
                None => self.poison.push((slot, now)),
            }
            self.ready.pop_front();
            if let Some(meta) = self.meta.get_mut(slot) {
                meta.ready = false;
                // sending moves timers (retransmissions, RTCP): ask again
                if !meta.dirty {
                    meta.dirty = true;
                    self.dirty.push(slot);
                }
            }
        }
        self.relay.clear();
        None
    }
}
