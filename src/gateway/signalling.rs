//! Shard 0's signalling as the [`Gateway`](super::Gateway) holds it: the SIP endpoint
//! (with a note of when its deadline must be looked up again), the browsers' sessions, the
//! SIP-over-WebSocket user agent and the call router, and the two views of the endpoint
//! that others get: [`WsCtx`] for the SIP-over-WebSocket user agent, [`Touching`] for the
//! calls (every verb marks the endpoint's deadline as moved).

use std::net::SocketAddr;
use std::time::Instant;

use crate::call::link::SipLink;
use crate::call::router::Router;
use crate::signal::hub::{Hub, SessionId};
use crate::signal::sip_ws::{SipWs, WsContext};
use crate::sip::endpoint::{CallError, Endpoint, OutgoingCall, SipCallId};

/// Shard 0's signalling.
pub(super) struct Signalling {
    /// Changed only through [`Signalling::endpoint_mut`] (or, by the calls, through
    /// [`Touching`]), which marks its next deadline for a new look: finding it visits
    /// every transaction and SIP call, too much for every turn of a busy loop.
    pub(super) endpoint: Endpoint,
    pub(super) endpoint_deadline: Option<Instant>,
    pub(super) endpoint_changed: bool,
    pub(super) hub: Hub,
    /// The user agent of the SIP-over-WebSocket sessions (app users that speak SIP).
    pub(super) sip_ws: SipWs,
    pub(super) router: Router,
    /// Whether each worker shard runs its timers late, as the shell last saw it (index:
    /// shard; shard 0's own is [`Gateway::lagging`](super::Gateway::lagging)).
    pub(super) workers_lagging: Vec<bool>,
    /// At shutdown: worker shards that have not stopped yet, and until when shard 0 waits
    /// for them before the un-REGISTER.
    pub(super) workers_running: usize,
    pub(super) workers_wait_until: Option<Instant>,
}

/// What the SIP-over-WebSocket user agent uses of shard 0's signalling: the endpoint's
/// digest check and random tokens, the hub's logins.
pub(super) struct WsCtx<'a> {
    endpoint: &'a mut Endpoint,
    changed: &'a mut bool,
    hub: &'a mut Hub,
}

impl WsContext for WsCtx<'_> {
    fn authenticate(
        &mut self,
        now: Instant,
        msg: &crate::wire::sip::Message<'_>,
        proxy: bool,
        peer: SocketAddr,
    ) -> crate::sip::endpoint::WsAuth {
        *self.changed = true;
        self.endpoint.authenticate_ws(now, msg, proxy, peer)
    }
    fn login(&mut self, now: Instant, session: SessionId, user: &str) {
        self.hub.bind(now, session, user)
    }
    fn logout(&mut self, now: Instant, session: SessionId) {
        self.hub.unbind(now, session)
    }
    fn token(&mut self, len: usize) -> String {
        self.endpoint.token(len)
    }
}

impl Signalling {
    /// The SIP-over-WebSocket user agent with its context.
    pub(super) fn sip_ws(&mut self) -> (&mut SipWs, WsCtx<'_>) {
        (
            &mut self.sip_ws,
            WsCtx {
                endpoint: &mut self.endpoint,
                changed: &mut self.endpoint_changed,
                hub: &mut self.hub,
            },
        )
    }

    pub(super) fn endpoint_mut(&mut self) -> &mut Endpoint {
        self.endpoint_changed = true;
        &mut self.endpoint
    }

    /// When the endpoint's timers are next due (looked up again only after a change).
    pub(super) fn sip_deadline(&mut self) -> Option<Instant> {
        if self.endpoint_changed {
            self.endpoint_changed = false;
            self.endpoint_deadline = self.endpoint.poll_timeout();
        }
        self.endpoint_deadline
    }
}

/// The SIP endpoint as shard 0's calls use it: every verb marks that its deadline may
/// have moved.
pub(super) struct Touching<'a> {
    pub(super) endpoint: &'a mut Endpoint,
    pub(super) changed: &'a mut bool,
}

impl SipLink for Touching<'_> {
    fn start_call(&mut self, now: Instant, call: OutgoingCall) -> Result<(), CallError> {
        *self.changed = true;
        self.endpoint.start_call(now, call)
    }
    fn can_reach(&self, now: Instant, callee: &str) -> bool {
        self.endpoint.can_reach(now, callee)
    }
    fn ring(&mut self, now: Instant, id: SipCallId) {
        *self.changed = true;
        self.endpoint.ring(now, id)
    }
    fn answer(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        *self.changed = true;
        self.endpoint.answer(now, id, sdp)
    }
    fn reject(&mut self, now: Instant, id: SipCallId, code: u16) {
        *self.changed = true;
        self.endpoint.reject(now, id, code)
    }
    fn reject_offer(&mut self, now: Instant, id: SipCallId, why: &str) {
        *self.changed = true;
        self.endpoint.reject_offer(now, id, why)
    }
    fn hangup(&mut self, now: Instant, id: SipCallId) {
        *self.changed = true;
        self.endpoint.hangup(now, id)
    }
    fn cancel_elsewhere(&mut self, now: Instant, id: SipCallId) {
        *self.changed = true;
        self.endpoint.cancel_elsewhere(now, id)
    }
    fn claim(&mut self, id: SipCallId) {
        *self.changed = true;
        self.endpoint.claim(id)
    }
    fn info(&mut self, now: Instant, id: SipCallId, digit: char, duration_ms: u32) {
        *self.changed = true;
        self.endpoint.info(now, id, digit, duration_ms)
    }
    fn picture_update(&mut self, now: Instant, id: SipCallId) {
        *self.changed = true;
        self.endpoint.picture_update(now, id)
    }
    fn early_media(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        *self.changed = true;
        self.endpoint.early_media(now, id, sdp)
    }
}
