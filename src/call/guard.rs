//! Fault isolation: a call's own work runs `guarded`, which catches a panic in it; a call
//! whose code panicked ends with an error (`poisoned`), its resources are freed, and
//! every other call goes on.

use std::time::Instant;

use crate::signal::protocol::HangupReason;

use super::{Call, Calls, Ctx, Phase, failure_message, link};

/// Runs one call's own work, catching a panic in it (see [`Calls`]' fault isolation).
pub(super) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

impl Calls {
    /// A call whose own code panicked (a bug some input reached): it ends with an error,
    /// its resources are freed, and every other call goes on.
    pub(super) fn poisoned(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>) {
        self.poison.retain(|(s, _)| *s != slot);
        let Some(key) = self.key_of(slot) else {
            return;
        };
        self.metrics.panicked += 1;
        log::error!(
            "call {} of {}: internal error (a panic in its media or signalling state); the call ends, others go on",
            key.1,
            crate::pii::Pii(&key.0)
        );
        let answered = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Bridge(b))) => {
                if b.sip_alive {
                    b.sip_alive = false;
                    match b.phase {
                        Phase::Offered | Phase::Accepting => ctx.sip.reject(now, b.sip, 500),
                        _ => ctx.sip.hangup(now, b.sip),
                    }
                }
                b.phase == Phase::Answered
            }
            Some((_, Call::Echo(_))) => true,
            None => false,
        };
        self.say(
            &key.0,
            failure_message(&key.1, answered, HangupReason::Error),
        );
        // Freeing may touch the broken state again: guarded too, and if that fails the
        // slot is simply dropped with its index entries.
        let mut this = std::panic::AssertUnwindSafe(&mut *self);
        let mut ctx = std::panic::AssertUnwindSafe(ctx);
        let ok = std::panic::catch_unwind(move || {
            this.remove(now, slot, &mut ctx, Some(500), "ERROR");
        })
        .is_ok();
        if !ok {
            self.index.remove(&key);
            self.by_ufrag.retain(|_, s| *s != slot);
            self.by_remote.retain(|_, s| *s != slot);
            self.by_sip.retain(|_, s| *s != slot);
            self.by_port.retain(|_, s| *s != slot);
            // remove() may have taken the slot (and reported it) before it panicked
            if let Some((_, call)) = self.slots.get_mut(slot).and_then(Option::take) {
                let sip = match call {
                    Call::Bridge(b) => Some(b.sip),
                    Call::Echo(_) => None,
                };
                self.vacate(slot);
                self.routes.push_back(link::RouteChange::Removed {
                    key: key.clone(),
                    sip,
                });
            }
        }
    }
}
