//! How the call layer reaches the SIP endpoint, and how the shards' call layers stay in
//! touch with the one shard that speaks SIP and WebSocket.
//!
//! On shard 0 the calls drive the [`Endpoint`] directly. A call on another shard queues
//! [`SipCommand`]s in a [`SipOutbox`] that the I/O shell carries to shard 0, which applies
//! them to the endpoint and sends the endpoint's events for that call back (a refused
//! `start_call` comes back as `CallFailed`). [`RouteChange`]s tell shard 0 which shard
//! holds which call, so the requests and SIP events of a call reach the shard that owns
//! it.

use std::collections::VecDeque;
use std::time::Instant;

use super::CallKey;
use crate::sip::endpoint::{CallError, Endpoint, OutgoingCall, SipCallId};

/// The verbs the call layer uses on the SIP side.
pub trait SipLink {
    fn start_call(&mut self, now: Instant, call: OutgoingCall) -> Result<(), CallError>;
    /// Whether a call to `callee` may be started at all (standalone: it has a registered
    /// contact), so that a refusal costs no RTP ports. Only a hint: `start_call` decides.
    fn can_reach(&self, now: Instant, callee: &str) -> bool {
        let _ = (now, callee);
        true
    }
    fn ring(&mut self, now: Instant, id: SipCallId);
    fn answer(&mut self, now: Instant, id: SipCallId, sdp: &str);
    fn reject(&mut self, now: Instant, id: SipCallId, code: u16);
    /// 488 to an offer srgate cannot take, saying why in a `Warning` header.
    fn reject_offer(&mut self, now: Instant, id: SipCallId, why: &str);
    fn hangup(&mut self, now: Instant, id: SipCallId);
    /// Hangs up outgoing call `id` because another ring group member answered: its
    /// CANCEL says "Call completed elsewhere".
    fn cancel_elsewhere(&mut self, now: Instant, id: SipCallId);
    /// The app user accepted incoming call `id`: when it is a ring group's branch, the call
    /// is theirs and the other branches are cancelled.
    fn claim(&mut self, id: SipCallId);
    /// A digit to the other side of answered call `id` as SIP INFO.
    fn info(&mut self, now: Instant, id: SipCallId, digit: char, duration_ms: u32);
    /// A picture request (SIP INFO `picture_fast_update`) to the video sender of call `id`.
    fn picture_update(&mut self, now: Instant, id: SipCallId);
    /// Early media for incoming call `id`: a 183 with srgate's answer.
    fn early_media(&mut self, now: Instant, id: SipCallId, sdp: &str);
}

impl SipLink for Endpoint {
    fn start_call(&mut self, now: Instant, call: OutgoingCall) -> Result<(), CallError> {
        Endpoint::start_call(self, now, call)
    }
    fn can_reach(&self, now: Instant, callee: &str) -> bool {
        Endpoint::can_reach(self, now, callee)
    }
    fn ring(&mut self, now: Instant, id: SipCallId) {
        Endpoint::ring(self, now, id)
    }
    fn answer(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        Endpoint::answer(self, now, id, sdp)
    }
    fn reject(&mut self, now: Instant, id: SipCallId, code: u16) {
        Endpoint::reject(self, now, id, code)
    }
    fn reject_offer(&mut self, now: Instant, id: SipCallId, why: &str) {
        Endpoint::reject_offer(self, now, id, why)
    }
    fn hangup(&mut self, now: Instant, id: SipCallId) {
        Endpoint::hangup(self, now, id)
    }
    fn cancel_elsewhere(&mut self, now: Instant, id: SipCallId) {
        Endpoint::cancel_elsewhere(self, now, id)
    }
    fn claim(&mut self, id: SipCallId) {
        Endpoint::claim(self, id)
    }
    fn info(&mut self, now: Instant, id: SipCallId, digit: char, duration_ms: u32) {
        Endpoint::info(self, now, id, digit, duration_ms)
    }
    fn picture_update(&mut self, now: Instant, id: SipCallId) {
        Endpoint::picture_update(self, now, id)
    }
    fn early_media(&mut self, now: Instant, id: SipCallId, sdp: &str) {
        Endpoint::early_media(self, now, id, sdp)
    }
}

/// A [`SipLink`] verb on its way to the shard with the endpoint.
#[derive(Clone, Debug)]
pub enum SipCommand {
    Start(OutgoingCall),
    Ring(SipCallId),
    Answer(SipCallId, String),
    Reject(SipCallId, u16),
    RejectOffer(SipCallId, String),
    Hangup(SipCallId),
    CancelElsewhere(SipCallId),
    Claim(SipCallId),
    Info(SipCallId, char, u32),
    PictureUpdate(SipCallId),
    EarlyMedia(SipCallId, String),
}

impl SipCommand {
    /// Applies the command to the endpoint; a call it cannot start is the error.
    pub fn apply(
        self,
        now: Instant,
        endpoint: &mut Endpoint,
    ) -> Result<(), (SipCallId, CallError)> {
        match self {
            SipCommand::Start(call) => {
                let id = call.id;
                return endpoint.start_call(now, call).map_err(|e| (id, e));
            }
            SipCommand::Ring(id) => endpoint.ring(now, id),
            SipCommand::Answer(id, sdp) => endpoint.answer(now, id, &sdp),
            SipCommand::Reject(id, code) => endpoint.reject(now, id, code),
            SipCommand::RejectOffer(id, why) => endpoint.reject_offer(now, id, &why),
            SipCommand::Hangup(id) => endpoint.hangup(now, id),
            SipCommand::CancelElsewhere(id) => endpoint.cancel_elsewhere(now, id),
            SipCommand::Claim(id) => endpoint.claim(id),
            SipCommand::Info(id, digit, ms) => endpoint.info(now, id, digit, ms),
            SipCommand::PictureUpdate(id) => endpoint.picture_update(now, id),
            SipCommand::EarlyMedia(id, sdp) => endpoint.early_media(now, id, &sdp),
        }
        Ok(())
    }
}

/// The commands of a shard without the endpoint, in order.
#[derive(Debug, Default)]
pub struct SipOutbox {
    commands: VecDeque<SipCommand>,
}

impl SipOutbox {
    pub fn pop(&mut self) -> Option<SipCommand> {
        self.commands.pop_front()
    }
}

impl SipLink for SipOutbox {
    fn start_call(&mut self, _now: Instant, call: OutgoingCall) -> Result<(), CallError> {
        // Refusals come back later, as the call's `CallFailed` event.
        self.commands.push_back(SipCommand::Start(call));
        Ok(())
    }
    fn ring(&mut self, _now: Instant, id: SipCallId) {
        self.commands.push_back(SipCommand::Ring(id));
    }
    fn answer(&mut self, _now: Instant, id: SipCallId, sdp: &str) {
        self.commands
            .push_back(SipCommand::Answer(id, sdp.to_owned()));
    }
    fn reject(&mut self, _now: Instant, id: SipCallId, code: u16) {
        self.commands.push_back(SipCommand::Reject(id, code));
    }
    fn reject_offer(&mut self, _now: Instant, id: SipCallId, why: &str) {
        self.commands
            .push_back(SipCommand::RejectOffer(id, why.to_owned()));
    }
    fn hangup(&mut self, _now: Instant, id: SipCallId) {
        self.commands.push_back(SipCommand::Hangup(id));
    }
    fn cancel_elsewhere(&mut self, _now: Instant, id: SipCallId) {
        self.commands.push_back(SipCommand::CancelElsewhere(id));
    }
    fn claim(&mut self, id: SipCallId) {
        self.commands.push_back(SipCommand::Claim(id));
    }
    fn info(&mut self, _now: Instant, id: SipCallId, digit: char, duration_ms: u32) {
        self.commands
            .push_back(SipCommand::Info(id, digit, duration_ms));
    }
    fn picture_update(&mut self, _now: Instant, id: SipCallId) {
        self.commands.push_back(SipCommand::PictureUpdate(id));
    }
    fn early_media(&mut self, _now: Instant, id: SipCallId, sdp: &str) {
        self.commands
            .push_back(SipCommand::EarlyMedia(id, sdp.to_string()));
    }
}

/// What the shard with the signalling needs to know to route a call's requests and SIP
/// events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChange {
    /// A call exists here under `key` (user, call id), with its SIP leg if it has one.
    Added {
        key: CallKey,
        sip: Option<SipCallId>,
    },
    /// A call is gone from here, with its SIP leg and, for a SIP ↔ SIP call, its second.
    Removed {
        key: CallKey,
        sip: Option<SipCallId>,
        other_sip: Option<SipCallId>,
    },
    /// A routed invite or incoming SIP call of `user` did not become a new call here;
    /// `key` and `sip` name the routes to forget (none when the invite named a call that
    /// exists).
    Dropped {
        user: String,
        key: Option<CallKey>,
        sip: Option<SipCallId>,
    },
}

/// The SIP answer that stands for a call the endpoint refused to start.
pub fn refusal_of(error: &CallError) -> (u16, &'static str) {
    match error {
        CallError::NoRoute => (404, "Not Found"),
        _ => (503, "Service Unavailable"),
    }
}
