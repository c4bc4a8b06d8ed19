//! Deadlines: every call's next deadline in one heap (an entry whose generation is old
//! is stale and skipped), `handle_timeout` for the calls that are due (the invitation and
//! accept deadlines, RTP inactivity, the calls' own timers) and `poll_timeout`.

use std::cmp::Reverse;
use std::time::Instant;

use crate::signal::protocol;
use crate::signal::protocol::{CallState, Failure, HangupReason};

use super::guard::guarded;
use super::{Call, Calls, Ctx, Phase, earliest};

impl Calls {
    /// Asks the touched calls for their next deadline and files it in the heap.
    fn refresh_timers(&mut self) {
        while let Some(slot) = self.dirty.pop() {
            let Some(meta) = self.meta.get_mut(slot) else {
                continue;
            };
            meta.dirty = false;
            let t = match self.slots.get_mut(slot).and_then(Option::as_mut) {
                Some((_, Call::Echo(c))) => guarded(|| c.poll_timeout()),
                Some((_, Call::Bridge(c))) => guarded(|| c.poll_timeout()),
                Some((_, Call::Pair(c))) => guarded(|| c.poll_timeout()),
                None => continue,
            };
            let Some(meta) = self.meta.get_mut(slot) else {
                continue;
            };
            if let Some(t) = t
                && t == meta.scheduled
            {
                continue; // the heap already holds this deadline
            }
            // a new deadline: the old entry goes stale
            meta.generation = meta.generation.wrapping_add(1);
            meta.scheduled = t.flatten();
            let generation = meta.generation;
            match t {
                Some(Some(at)) => self.timers.push(Reverse((at, slot, generation))),
                Some(None) => {}
                None => {
                    // No clock here: due at once (any instant already passed will do).
                    let at = self
                        .timers
                        .peek()
                        .map_or(self.cfg.clock_anchor.0, |Reverse((t, _, _))| *t);
                    self.poison.push((slot, at));
                }
            }
        }
    }

    /// The earliest deadline in the heap that is still current (stale entries dropped).
    fn next_timer(&mut self) -> Option<Instant> {
        // Stale entries far in the future wait for their time; when they pile up, the
        // heap is rebuilt from the current ones (amortised: it at least halves).
        if self.timers.len() > 2 * self.slots.len() + 64 {
            let meta = &self.meta;
            self.timers.retain(|Reverse((_, slot, g))| {
                meta.get(*slot).is_some_and(|m| m.generation == *g)
            });
        }
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if self
                .meta
                .get(slot)
                .is_some_and(|m| m.generation == generation)
            {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        for (slot, _) in std::mem::take(&mut self.poison) {
            self.poisoned(now, slot, ctx);
        }
        self.rtmp_timeout(now, ctx);
        // Only the calls whose deadline passed: the heap knows which.
        self.refresh_timers();
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(meta) = self.meta.get_mut(slot)
                && meta.generation == generation
            {
                // consumed: the next poll asks the call again
                meta.generation = meta.generation.wrapping_add(1);
                meta.scheduled = None;
                due.push(slot);
            }
        }
        let timeout = self.cfg.rtp_timeout;
        for &slot in &due {
            if self.slots.get(slot).is_none_or(Option::is_none) {
                continue;
            }
            self.touch(slot);
            // RTP inactivity: the call's deadline includes its silence limit.
            if self
                .bridge_mut(slot)
                .is_some_and(|b| b.rtp_timed_out(now, timeout))
            {
                log::info!("call in slot {slot}: no RTP from the SIP side for {timeout:?}");
                self.fail(now, slot, HangupReason::Timeout, ctx);
                continue;
            }
            self.timeout_of(now, slot, ctx);
        }
        self.due = due;
    }

    fn timeout_of(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>) {
        let step = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Pair(p))) => {
                if p.deadline.is_some_and(|d| d <= now) {
                    // nobody answered in time: CANCEL toward the callee, 480 to the caller
                    log::info!(
                        "SIP call to SIP user {}: not answered in time",
                        crate::pii::Pii(&p.callee)
                    );
                    self.end_pair(now, slot, 480, ctx);
                    return self.remove(now, slot, ctx, Some(480), "INVITATION_EXPIRE");
                }
                if let Some(side) = p.silent_leg(now) {
                    log::info!(
                        "SIP call to SIP user {}: no RTP from the {side:?} leg for {:?}",
                        crate::pii::Pii(&p.callee),
                        p.rtp_timeout
                    );
                    return self.fail(now, slot, HangupReason::Timeout, ctx);
                }
                return;
            }
            Some((_, Call::Echo(c))) => match guarded(|| c.handle_timeout(now)) {
                Some(step) => step,
                None => return self.poisoned(now, slot, ctx),
            },
            Some((key, Call::Bridge(b))) => {
                if b.deadline.is_some_and(|d| d <= now) {
                    let key = key.clone();
                    b.deadline = None;
                    b.sip_alive = false;
                    let (text, code) = match b.phase {
                        Phase::Calling | Phase::Early => {
                            ctx.sip.hangup(now, b.sip);
                            let text = protocol::local_state(
                                &key.1,
                                CallState::Failure,
                                None,
                                None,
                                Some(Failure::InvitationExpire),
                                None,
                            );
                            (text, 487)
                        }
                        Phase::Offered | Phase::Previewing | Phase::Accepting => {
                            ctx.sip.reject(now, b.sip, 480);
                            // not answered in time, or accepted but the browser's ICE/DTLS
                            // never came up
                            let failure = if b.phase != Phase::Accepting {
                                Failure::InvitationExpire
                            } else {
                                Failure::MediaFailed
                            };
                            let text = protocol::remote_state(
                                &key.1,
                                CallState::Failure,
                                None,
                                Some(failure),
                            );
                            (text, 480)
                        }
                        Phase::Answered => {
                            ctx.sip.reject(now, b.sip, 480);
                            let text = protocol::hangup(&key.1, HangupReason::Timeout, None);
                            (text, 480)
                        }
                    };
                    self.say(&key.0, text);
                    self.remove(now, slot, ctx, Some(code), "INVITATION_EXPIRE");
                    return;
                }
                match guarded(|| b.handle_timeout(now)) {
                    Some(step) => step,
                    None => return self.poisoned(now, slot, ctx),
                }
            }
            None => return,
        };
        self.after(now, slot, step, ctx);
    }

    /// The calls' earliest own deadline (not the "at once" of a call that panicked).
    pub fn next_call_timer(&mut self) -> Option<Instant> {
        self.refresh_timers();
        self.next_timer()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.refresh_timers();
        let poison = self.poison.iter().map(|(_, at)| *at).min();
        earliest(
            earliest(poison, self.next_timer()),
            self.rtmp.poll_timeout(),
        )
    }
}
