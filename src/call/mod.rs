//! Calls: what the browser protocol's requests turn into, and the media they carry.
//!
//! # The run-loop contract
//!
//! Every state machine of srgate's core, [`Calls`] included, is sans-IO and has the same
//! verbs (STYLE.md §1): `handle_*(now, …)` feeds it input (a request, a datagram, a fired
//! timer); the caller then drains `poll_transmit` (datagrams to send, written into the
//! caller's buffer so the media path allocates nothing), `poll_message` (events for
//! users) and asks `poll_timeout` when to call `handle_timeout` next. Nothing here reads a
//! clock, touches a socket or spawns a thread; the I/O shell (`src/io/`) does that.
//!
//! Today a call is an app user calling `echo`: the browser's audio comes back to it
//! through srgate's whole media path (ICE-lite, DTLS-SRTP, SRTP, jitter buffer, Opus decode
//! and encode). The echo answers (`ACCEPTED_BY_REMOTE`) when DTLS has connected, so the
//! answer means the media path is up; if the browser's transport fails before that (a DTLS
//! fingerprint that does not match, no ICE check within the consent timeout) the call ends
//! with `FAILURE` and `error` `MEDIA_FAILED`, and everything it held is freed. Calls to SIP numbers come with the bridge (the SIP leg); until then they
//! end with `FAILURE` `PEER_OFFLINE`.

mod echo;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::sdp::Codec;
use crate::signal::hub::CallRequest;
use crate::signal::protocol::{self, ErrorCode, Refusal, Request};
use crate::sip::rng::Rng;
use crate::webrtc::demux;
use crate::webrtc::dtls::DtlsContext;

use echo::{EchoCall, Step};

/// The number app users call to hear themselves.
pub const ECHO: &str = "echo";

/// Settings of the call layer.
pub struct CallsConfig {
    /// The ICE host candidate: the media socket's advertised address.
    pub media_addr: SocketAddr,
    /// `[media] codecs`.
    pub codecs: Vec<Codec>,
    /// `[media] opus_complexity`.
    pub opus_complexity: u8,
    pub seed: [u8; 32],
}

/// A datagram written by [`Calls::poll_transmit`] into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTransmit {
    pub destination: SocketAddr,
    pub len: usize,
}

type CallKey = (String, String); // (user, call id)

/// Calls one user may have at once, and calls per shard: a logged-in client cannot make
/// srgate allocate codec state without end.
pub const MAX_CALLS_PER_USER: usize = 8;
pub const MAX_CALLS: usize = 4096;

/// Space a packet needs behind its payload for the SRTP tag (and the SRTCP index).
pub const SRTP_TAIL: usize = 32;

pub struct Calls {
    cfg: CallsConfig,
    rng: Rng,
    dtls: DtlsContext,
    /// Calls in slots, so the media path finds one by index without allocating.
    slots: Vec<Option<(CallKey, EchoCall)>>,
    index: HashMap<CallKey, usize>,
    by_ufrag: HashMap<String, usize>,
    by_remote: HashMap<SocketAddr, usize>,
    messages: VecDeque<(String, String)>,
    ended: u64,
}

impl Calls {
    pub fn new(cfg: CallsConfig, dtls: DtlsContext) -> Self {
        Calls {
            rng: Rng::new(cfg.seed),
            cfg,
            dtls,
            slots: Vec::new(),
            index: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_remote: HashMap::new(),
            messages: VecDeque::new(),
            ended: 0,
        }
    }

    /// Calls in progress (from invite to hangup): `/health` `calls`.
    pub fn count(&self) -> usize {
        self.index.len()
    }

    pub fn ended_total(&self) -> u64 {
        self.ended
    }

    fn say(&mut self, user: &str, text: String) {
        self.messages.push_back((user.to_string(), text));
    }

    fn refuse(&mut self, user: &str, code: ErrorCode, message: &str, id: &str) {
        let text = Refusal::new(code, message, Some(id)).to_json();
        self.say(user, text);
    }

    /// A request of a logged-in user, or the news that a user is gone for good.
    pub fn handle_request(&mut self, now: Instant, request: CallRequest) {
        let (user, request) = match request {
            CallRequest::Call { user, request } => (user, request),
            CallRequest::UserGone { user } => {
                let keys: Vec<CallKey> =
                    self.index.keys().filter(|k| k.0 == user).cloned().collect();
                for key in keys {
                    self.end(&key, None);
                }
                return;
            }
        };
        match request {
            Request::Invite {
                id, callee, sdp, ..
            } => self.invite(now, &user, &id, &callee, &sdp),
            Request::Hangup { id } | Request::Cancel { id } => {
                let key = (user.clone(), id.clone());
                if self.index.contains_key(&key) {
                    // Before the answer it ends as CANCELED, after it with a hangup
                    // (DESIGN §5: hangup before the answer acts as cancel).
                    self.end(&key, Some("LOCAL"));
                } else {
                    self.refuse(&user, ErrorCode::NoSuchCall, "no such call", &id);
                }
            }
            Request::Dtmf { id, digits } => {
                let key = (user.clone(), id.clone());
                if self.index.contains_key(&key) {
                    // The echo service echoes DTMF too: one message per digit.
                    for digit in digits.chars() {
                        self.say(&user, protocol::dtmf(&id, digit));
                    }
                } else {
                    self.refuse(&user, ErrorCode::NoSuchCall, "no such call", &id);
                }
            }
            Request::Accept { id, .. } | Request::Refuse { id, .. } => {
                // Invitations to app users come from SIP, with the bridge.
                self.refuse(&user, ErrorCode::NoSuchCall, "no such invitation", &id);
            }
            Request::Login { .. } | Request::Ping => {}
        }
    }

    fn invite(&mut self, now: Instant, user: &str, id: &str, callee: &str, offer: &str) {
        let key = (user.to_string(), id.to_string());
        if self.index.contains_key(&key) {
            self.refuse(
                user,
                ErrorCode::BadRequest,
                "a call with this id is in progress",
                id,
            );
            return;
        }
        let of_user = self.index.keys().filter(|k| k.0 == user).count();
        if of_user >= MAX_CALLS_PER_USER || self.index.len() >= MAX_CALLS {
            self.refuse(user, ErrorCode::BadRequest, "too many calls", id);
            return;
        }
        if callee != ECHO {
            let text = protocol::local_state(id, "FAILURE", None, None, Some("PEER_OFFLINE"), None);
            self.say(user, text);
            return;
        }
        let ufrag = self.rng.token(8);
        let pwd = self.rng.token(24);
        let ssrc = u32::from_be_bytes(self.rng.bytes::<4>());
        let setup = echo::Setup {
            now,
            offer,
            codecs: &self.cfg.codecs,
            dtls: &self.dtls,
            media_addr: self.cfg.media_addr,
            ufrag: &ufrag,
            pwd: &pwd,
            ssrc,
            sequence: u16::from_be_bytes(self.rng.bytes::<2>()),
            timestamp: u32::from_be_bytes(self.rng.bytes::<4>()),
            session_id: u64::from_be_bytes(self.rng.bytes::<8>()) >> 1,
            opus_complexity: self.cfg.opus_complexity,
        };
        match EchoCall::new(setup) {
            Ok((call, answer)) => {
                log::info!("call {id} of {} to echo: answered", crate::pii::Pii(user));
                let slot = match self.slots.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                };
                self.by_ufrag.insert(ufrag, slot);
                self.index.insert(key.clone(), slot);
                self.slots[slot] = Some((key, call));
                self.say(
                    user,
                    protocol::local_state(id, "SENT_TO_REMOTE", Some(&answer), None, None, None),
                );
            }
            Err(why) => {
                log::info!(
                    "call {id} of {} to echo refused: {why}",
                    crate::pii::Pii(user)
                );
                self.refuse(
                    user,
                    ErrorCode::BadRequest,
                    &format!("unusable SDP offer: {why}"),
                    id,
                );
            }
        }
    }

    /// Ends a call; `reason`: the hangup message's reason (None: the user has no socket).
    fn end(&mut self, key: &CallKey, reason: Option<&str>) {
        let Some(slot) = self.index.remove(key) else {
            return;
        };
        let Some((_, mut call)) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let answered = call.is_connected();
        call.close();
        self.by_ufrag.retain(|_, s| *s != slot);
        self.by_remote.retain(|_, s| *s != slot);
        self.ended += 1;
        log::info!(
            "call {} of {} ended ({}): {}",
            key.1,
            crate::pii::Pii(&key.0),
            reason.unwrap_or("user gone"),
            call.summary()
        );
        match reason {
            // Every answered call ends with exactly one hangup message.
            Some(reason) if answered => {
                let text = protocol::hangup(&key.1, reason, None);
                self.say(&key.0, text);
            }
            Some("LOCAL") => {
                let text = protocol::local_state(&key.1, "CANCELED", None, None, None, None);
                self.say(&key.0, text);
            }
            Some(_) => {
                let text = protocol::local_state(
                    &key.1,
                    "FAILURE",
                    None,
                    None,
                    Some("MEDIA_FAILED"),
                    None,
                );
                self.say(&key.0, text);
            }
            None => {}
        }
    }

    /// One datagram that arrived on the media socket `local` from `from`. Decrypted in
    /// place: `data` is the receive buffer.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &mut [u8]) {
        let slot = match demux::route(data) {
            demux::Route::LocalUfrag(ufrag) => {
                let Some(&slot) = self.by_ufrag.get(ufrag) else {
                    return;
                };
                // Later non-STUN datagrams from this address belong to the same call
                // (the leg itself accepts them only once an ICE check from it succeeded).
                if self.by_remote.get(&from) != Some(&slot) {
                    self.by_remote.insert(from, slot);
                }
                slot
            }
            _ => match self.by_remote.get(&from) {
                Some(&slot) => slot,
                None => return,
            },
        };
        let local = self.cfg.media_addr;
        let step = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, call)) => call.handle_datagram(now, from, local, data),
            None => return,
        };
        self.after(slot, step);
    }

    fn after(&mut self, slot: usize, step: Step) {
        if let Some((key, call)) = self.slots.get_mut(slot).and_then(Option::as_mut)
            && call.take_newly_connected()
        {
            let text = protocol::local_state(&key.1, "ACCEPTED_BY_REMOTE", None, None, None, None);
            let user = key.0.clone();
            self.say(&user, text);
        }
        if let Step::Failed(reason) = step
            && let Some((key, _)) = self.slots.get(slot).and_then(Option::as_ref)
        {
            let key = key.clone();
            self.end(&key, Some(reason));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            let Some((_, call)) = self.slots[slot].as_mut() else {
                continue;
            };
            if call.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            let step = call.handle_timeout(now);
            self.after(slot, step);
        }
    }

    /// Writes the next datagram to send into `buf` (at least 1500 bytes).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<MediaTransmit> {
        for (_, call) in self.slots.iter_mut().flatten() {
            if let Some(t) = call.poll_transmit(now, buf) {
                return Some(t);
            }
        }
        None
    }

    /// An event for a user: `(user, JSON text)`.
    pub fn poll_message(&mut self) -> Option<(String, String)> {
        self.messages.pop_front()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.slots
            .iter_mut()
            .flatten()
            .filter_map(|(_, c)| c.poll_timeout())
            .min()
    }
}
