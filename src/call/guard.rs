//! Fault isolation: a call's own work runs `guarded`, which catches a panic in it; a call
//! whose code panicked ends with an error (`poisoned`), its resources are freed, and
//! every other call goes on.

use std::time::Instant;

use crate::signal::protocol::HangupReason;

use super::{Call, Calls, Ctx, Standing, link};

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
        let standing = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Bridge(b))) => Some(Standing::end_sip_leg(b, now, 500, ctx)),
            Some((_, Call::Echo(_))) => Some(Standing {
                answered: true,
                incoming: false,
            }),
            // no app user to tell
            Some((_, Call::Pair(_))) => {
                self.end_pair(now, slot, 500, ctx);
                None
            }
            None => Some(Standing {
                answered: false,
                incoming: false,
            }),
        };
        if let Some(standing) = standing {
            self.say(&key.0, standing.message(&key.1, HangupReason::Error));
        }
        // Freeing may touch the broken state again: guarded too, and if that fails the
        // slot is simply dropped with its index entries.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.remove(now, slot, ctx, Some(500), "ERROR");
        }))
        .is_ok();
        if !ok {
            self.drop_slot(now, slot, key, ctx);
        }
    }

    /// Takes the call in `slot` out of every index without touching its state (freeing it
    /// panicked); its SIP legs still indexed are hung up and its RTP ports closed (the
    /// indexes name them), so neither a phone nor a port is left behind.
    fn drop_slot(&mut self, now: Instant, slot: usize, key: super::CallKey, ctx: &mut Ctx<'_>) {
        self.index.remove(&key);
        // the call (and with it its ufrag) may be gone: every entry is looked at
        self.unindex_browser(slot, None);
        let mut legs = Vec::new();
        self.by_sip.retain(|sip, s| {
            if *s == slot {
                legs.push(*sip);
            }
            *s != slot
        });
        for sip in legs {
            ctx.sip.hangup(now, sip);
        }
        let mut ports = Vec::new();
        self.by_port.retain(|port, s| {
            // the RTP port (even) stands for its RTCP port too
            if *s == slot && port % 2 == 0 {
                ports.push(*port);
            }
            *s != slot
        });
        for port in ports {
            ctx.ports.close(port);
        }
        // remove() may have taken the slot (and reported it) before it panicked
        if let Some((_, call)) = self.slots.get_mut(slot).and_then(Option::take) {
            let (sip, other_sip) = call.sip_legs();
            self.vacate(slot);
            self.routes.push_back(link::RouteChange::Removed {
                key,
                sip,
                other_sip,
            });
        }
    }
}
