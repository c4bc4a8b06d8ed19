//! The slot table of `Calls`: calls live in slots so that the media path finds one by
//! index without allocating. A new call goes in by `insert` (indexed by its key, its ICE
//! ufrag when known, its SIP call and RTP ports; the browser's address is added when its
//! ICE check arrives, an accepted invitation's ufrag at the accept), and `remove` takes it
//! out of every index (each entry by its key: no index is scanned), frees what it holds
//! and writes its record. Here too are each slot's
//! scheduling state (`SlotMeta`), the slots' reuse, the input marks (`touch`) and the
//! route changes for the shard that routes to this one.

use std::net::SocketAddr;
use std::time::Instant;

use super::bridge::BridgeCall;
use super::{Call, CallKey, Calls, Cdr, Ctx, link};

/// The scheduling state of one slot, and the browser's index entries.
#[derive(Clone, Debug, Default)]
pub(super) struct SlotMeta {
    /// Bumped whenever the slot's timer is asked again (or the call ends): heap entries
    /// with an older generation are stale.
    pub(super) generation: u32,
    /// In `dirty`: its timer must be asked again.
    pub(super) dirty: bool,
    /// In `ready`: it may have datagrams to send.
    pub(super) ready: bool,
    /// The deadline its current heap entry holds.
    pub(super) scheduled: Option<Instant>,
    /// The address the browser's checks passed from, as `by_remote` holds it, so that the
    /// call's end removes exactly that entry; a browser whose checks pass from a second
    /// address (rare) is looked for through all of `by_remote` at its end.
    remote: Option<SocketAddr>,
    more_remotes: bool,
}

impl Calls {
    /// Puts a new call in a free slot and in every index that leads to it (the browser's
    /// ICE `ufrag` when it is known yet; a bridged call's SIP call and RTP ports), and
    /// marks it touched and added.
    pub(super) fn insert(&mut self, key: CallKey, call: Call, ufrag: Option<String>) {
        let slot = self.free_slot();
        if let Some(ufrag) = ufrag {
            self.by_ufrag.insert(ufrag, slot);
        }
        if let Call::Bridge(b) = &call {
            self.by_sip.insert(b.sip, slot);
            self.by_port.insert(b.port, slot);
            self.by_port.insert(b.port.wrapping_add(1), slot);
        }
        if let Call::Pair(p) = &call {
            for leg in [&p.a, &p.b] {
                self.by_sip.insert(leg.sip, slot);
                self.by_port.insert(leg.port, slot);
                self.by_port.insert(leg.port.wrapping_add(1), slot);
            }
        }
        self.index.insert(key.clone(), slot);
        self.slots[slot] = Some((key, call));
        self.touch(slot);
        self.route_added(slot);
    }

    /// Datagrams from `from` belong to the call in `slot` (one of its ICE checks passed
    /// from there).
    pub(super) fn index_remote(&mut self, slot: usize, from: SocketAddr) {
        if let Some(meta) = self.meta.get_mut(slot) {
            match meta.remote {
                None => meta.remote = Some(from),
                Some(known) if known == from => {}
                Some(_) => meta.more_remotes = true,
            }
        }
        self.by_remote.insert(from, slot);
    }

    /// Removes the `by_ufrag` and `by_remote` entries that lead to `slot`, whose browser
    /// had srgate's ICE `ufrag` (`None`: not known, every entry is looked at).
    pub(super) fn unindex_browser(&mut self, slot: usize, ufrag: Option<&str>) {
        match ufrag {
            Some(ufrag) => {
                if self.by_ufrag.get(ufrag) == Some(&slot) {
                    self.by_ufrag.remove(ufrag);
                }
            }
            None => self.by_ufrag.retain(|_, s| *s != slot),
        }
        let Some(meta) = self.meta.get_mut(slot) else {
            return;
        };
        if let Some(from) = meta.remote.take()
            && self.by_remote.get(&from) == Some(&slot)
        {
            self.by_remote.remove(&from);
        }
        if std::mem::take(&mut meta.more_remotes) {
            self.by_remote.retain(|_, s| *s != slot);
        }
    }

    fn free_slot(&mut self) -> usize {
        while let Some(i) = self.free.pop() {
            if self.slots.get(i).is_some_and(Option::is_none) {
                return i;
            }
        }
        self.slots.push(None);
        self.meta.push(SlotMeta::default());
        self.slots.len() - 1
    }

    /// The slot's call got input (or was created, or answered): it may send, and its
    /// timer may have moved.
    pub(super) fn touch(&mut self, slot: usize) {
        let Some(meta) = self.meta.get_mut(slot) else {
            return;
        };
        if !meta.dirty {
            meta.dirty = true;
            self.dirty.push(slot);
        }
        if !meta.ready {
            meta.ready = true;
            self.ready.push_back(slot);
        }
    }

    fn route_added(&mut self, slot: usize) {
        let change = match self.slots.get(slot).and_then(Option::as_ref) {
            Some((key, Call::Echo(_))) => link::RouteChange::Added {
                key: key.clone(),
                sip: None,
            },
            Some((key, Call::Bridge(b))) => link::RouteChange::Added {
                key: key.clone(),
                sip: Some(b.sip),
            },
            // (the callee's leg is routed by the shard with the endpoint, which started it)
            Some((key, Call::Pair(p))) => link::RouteChange::Added {
                key: key.clone(),
                sip: Some(p.a.sip),
            },
            None => return,
        };
        self.routes.push_back(change);
    }

    /// Which calls came and went here (for the shard that routes to this one).
    pub fn poll_route(&mut self) -> Option<link::RouteChange> {
        self.routes.pop_front()
    }

    /// The slot's call is gone: its timer entries are stale, the slot can be reused.
    /// A bridged call's answer time and loss, for the histograms of `/metrics`.
    fn observe(&mut self, b: &BridgeCall) {
        if let Some(answered) = b.answered {
            let seconds = answered.saturating_duration_since(b.started).as_secs_f64();
            self.metrics
                .answer_time
                .observe(&super::ANSWER_TIME_BOUNDS, seconds);
        }
        if let Some(media) = b.media() {
            let s = media.stats();
            let ratio = |leg: &crate::media::bridge::LegStats| {
                let lost = leg.lost.max(0) as f64;
                let expected = leg.packets_in as f64 + lost;
                (expected > 0.0).then(|| lost / expected)
            };
            let worse = match (ratio(&s.webrtc), ratio(&s.sip)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(loss) = worse {
                self.metrics.loss.observe(&super::LOSS_BOUNDS, loss);
            }
            // the legs that sent srgate media
            let flowing = [&s.webrtc, &s.sip].into_iter().filter(|l| l.packets_in > 1);
            if let Some(jitter) = flowing.map(|l| l.jitter_us).max() {
                let seconds = jitter as f64 / 1e6;
                self.metrics.jitter.observe(&super::JITTER_BOUNDS, seconds);
            }
            if let Some(rtt) = [s.webrtc.rtt_us, s.sip.rtt_us].into_iter().flatten().max() {
                let seconds = rtt as f64 / 1e6;
                self.metrics.rtt.observe(&super::RTT_BOUNDS, seconds);
            }
        }
    }

    pub(super) fn vacate(&mut self, slot: usize) {
        if let Some(meta) = self.meta.get_mut(slot) {
            meta.generation = meta.generation.wrapping_add(1);
            meta.scheduled = None;
        }
        // a panic noted for the call that was here is not the next call's
        self.poison.retain(|(s, _)| *s != slot);
        self.free.push(slot);
    }

    pub(super) fn bridge_mut(&mut self, slot: usize) -> Option<&mut BridgeCall> {
        match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Bridge(b))) => Some(b),
            _ => None,
        }
    }

    /// Whether `slot` holds a SIP ↔ SIP call (no app user in it).
    pub(super) fn is_pair(&self, slot: usize) -> bool {
        matches!(self.slots.get(slot), Some(Some((_, Call::Pair(_)))))
    }

    pub(super) fn key_of(&self, slot: usize) -> Option<CallKey> {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .map(|(k, _)| k.clone())
    }

    /// Shrinks the tables and queues a load grew, once no call is left (their capacity
    /// is all a load leaves behind). Does nothing while calls are up.
    pub fn shrink(&mut self) {
        if self.count() > 0 {
            return;
        }
        self.index.shrink_to_fit();
        self.by_ufrag.shrink_to_fit();
        self.by_remote.shrink_to_fit();
        self.by_sip.shrink_to_fit();
        self.by_port.shrink_to_fit();
        self.ready.shrink_to_fit();
        self.farewells.shrink_to_fit();
        self.dirty.shrink_to_fit();
        self.due.shrink_to_fit();
        self.routes.shrink_to_fit();
        self.messages.shrink_to_fit();
        self.cdrs.shrink_to_fit();
        self.poison.shrink_to_fit();
    }

    /// Frees everything a call holds and writes its record. The user has been told.
    pub(super) fn remove(
        &mut self,
        now: Instant,
        slot: usize,
        ctx: &mut Ctx<'_>,
        code: Option<u16>,
        reason: &str,
    ) {
        let Some((key, call)) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.vacate(slot);
        let (sip, other_sip) = call.sip_legs();
        self.routes.push_back(link::RouteChange::Removed {
            key: key.clone(),
            sip,
            other_sip,
        });
        self.index.remove(&key);
        let ufrag = match &call {
            Call::Echo(echo) => Some(echo.browser_ref().local_ufrag()),
            Call::Bridge(b) => b.browser.as_ref().map(|b| b.local_ufrag()),
            Call::Pair(_) => None,
        };
        if !matches!(call, Call::Pair(_)) {
            self.unindex_browser(slot, ufrag);
        }
        self.metrics.ended += 1;
        let failed = match &call {
            Call::Echo(echo) => Some(echo.browser_ref().counters()),
            Call::Bridge(b) => b.browser.as_ref().map(|b| b.counters()),
            Call::Pair(_) => None,
        };
        if let Some(c) = failed {
            self.metrics.ice_failures += u64::from(c.ice_failed);
            self.metrics.dtls_failures += u64::from(c.dtls_failed);
        }
        match call {
            Call::Echo(mut echo) => {
                echo.browser().close(&mut self.farewells);
                log::info!(
                    "call {} of {} ended ({reason}): {}",
                    key.1,
                    crate::pii::Pii(&key.0),
                    echo.summary()
                );
                let cdr = Cdr::echo(&key.0, &key.1, self.unix_ms(now), reason, &mut echo);
                self.cdrs.push_back(cdr);
            }
            Call::Bridge(mut b) => {
                b.close(&mut self.farewells);
                if b.sip_alive {
                    ctx.sip.hangup(now, b.sip);
                }
                self.by_sip.remove(&b.sip);
                self.by_port.remove(&b.port);
                self.by_port.remove(&b.port.wrapping_add(1));
                ctx.ports.close(b.port);
                if let Some(video) = b.video.as_ref() {
                    self.by_port.remove(&video.port);
                    self.by_port.remove(&video.port.wrapping_add(1));
                    ctx.ports.close(video.port);
                }
                self.observe(&b);
                let cdr = Cdr::bridged(
                    &key.0,
                    &key.1,
                    &b,
                    self.unix_ms(b.started),
                    b.answered.map(|t| self.unix_ms(t)),
                    self.unix_ms(now),
                    code,
                    reason,
                );
                log::info!(
                    "call {} of {} ({}) ended ({reason}): {}",
                    key.1,
                    crate::pii::Pii(&key.0),
                    b.way.name(),
                    cdr.summary()
                );
                self.cdrs.push_back(cdr);
            }
            Call::Pair(mut p) => {
                for (alive, sip) in [(p.a.alive, p.a.sip), (p.b.alive, p.b.sip)] {
                    if alive {
                        ctx.sip.hangup(now, sip);
                    }
                }
                (p.a.alive, p.b.alive) = (false, false);
                for port in [p.a.port, p.b.port] {
                    self.by_port.remove(&port);
                    self.by_port.remove(&port.wrapping_add(1));
                    ctx.ports.close(port);
                }
                self.by_sip.remove(&p.a.sip);
                self.by_sip.remove(&p.b.sip);
                if let Some(answered) = p.answered {
                    let seconds = answered.saturating_duration_since(p.started).as_secs_f64();
                    self.metrics
                        .answer_time
                        .observe(&super::ANSWER_TIME_BOUNDS, seconds);
                }
                let cdr = Cdr::pair(
                    &key.1,
                    &p,
                    self.unix_ms(p.started),
                    p.answered.map(|t| self.unix_ms(t)),
                    self.unix_ms(now),
                    code,
                    reason,
                );
                log::info!(
                    "call {} from {} to SIP user {} ended ({reason}): {}",
                    key.1,
                    crate::pii::Pii(&p.caller),
                    crate::pii::Pii(&p.callee),
                    p.rtp_summary()
                );
                self.cdrs.push_back(cdr);
            }
        }
    }
}
