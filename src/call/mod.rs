//! Calls: what the browser protocol's requests and the SIP endpoint's calls turn into,
//! and the media they carry.
//!
//! # The run-loop contract
//!
//! Every state machine of srgate's core, [`Calls`] included, is sans-IO and has the same
//! verbs: `handle_*(now, …)` feeds it input (a request, a datagram, a fired
//! timer, a SIP event); the caller then drains `poll_transmit` (datagrams to send, written
//! into the caller's buffer so the media path allocates nothing), `poll_message` (events
//! for users), `poll_cdr` (call records) and asks `poll_timeout` when to call
//! `handle_timeout` next. Nothing here reads a clock, touches a socket or spawns a
//! thread; the I/O shell (`src/io/`) does that. The call layer drives the SIP
//! [`Endpoint`] (a B2BUA on top of it) and asks the shell for RTP sockets through
//! [`RtpPorts`]; both come in a [`Ctx`] with every call that may need them.
//!
//! # Calls
//!
//! - `echo`: the browser's audio comes back to it through srgate's whole media path
//!   (ICE-lite, DTLS-SRTP, SRTP, jitter buffer, Opus decode and encode). It answers
//!   (`ACCEPTED_BY_REMOTE`) when DTLS has connected.
//! - App → SIP: numbers allowed by `[rtm2sip]` (proxy mode) or registered SIP
//!   users (standalone). srgate answers the browser at once (`SENT_TO_REMOTE` with its SDP
//!   answer), sends the INVITE, and maps 18x → `RECEIVED_BY_REMOTE` (183 early media is
//!   played), 200 → `ACCEPTED_BY_REMOTE`, 486/600/603 → `REFUSED_BY_REMOTE`, 404/480 →
//!   `FAILURE` `PEER_OFFLINE`, 408 → `PEER_NO_RESPONSE`, other codes → `FAILURE` with
//!   `sip`; no final answer within the invitation timeout → CANCEL and `FAILURE`
//!   `INVITATION_EXPIRE`.
//! - SIP → app: an INVITE for an app user who is logged in becomes a `remote_invitation`
//!   and a `180 Ringing`; `accept` → `remote_state ACCEPTED` with srgate's answer, and the
//!   `200 OK` once the browser's DTLS is up (so the caller's first words are heard);
//!   `refuse` → 486 (603 when the response says decline); not logged in → 480; no answer in
//!   time → 480 and `FAILURE` `INVITATION_EXPIRE`; CANCEL → `remote_state CANCELED`.
//! - Every call ends with exactly one end message to its user, frees its ports, sockets,
//!   timers and codec state, and leaves one CDR line.

mod bridge;
mod browser;
mod cdr;
mod echo;
pub mod latch;
pub mod link;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::AccRule;
use crate::sdp::Codec;
use crate::sdp::answer::Direction;
use crate::sdp::sip::parse_rtp_sdp;
use crate::signal::hub::CallRequest;
use crate::signal::protocol::{self, ErrorCode, Refusal, Request, SipStatus};
use crate::sip::endpoint::{CallError, Event as SipEvent, OutgoingCall, SipCallId};
use crate::sip::rng::Rng;
use crate::webrtc::demux;
use crate::webrtc::dtls::DtlsContext;

use bridge::{BridgeCall, StreamIds, media_codec, sip_codecs};
pub use bridge::{Phase, TELEPHONE_EVENT_PT, Way};
use browser::{BrowserSetup, BrowserSide};
pub use cdr::Cdr;
use echo::{EchoCall, EchoSetup};

/// The number app users call to hear themselves.
pub const ECHO: &str = "echo";

/// Settings of the call layer.
pub struct CallsConfig {
    /// The ICE host candidate: the media socket's advertised address.
    pub media_addr: SocketAddr,
    /// The address srgate advertises for RTP toward SIP (`public_ip`, else the SIP
    /// listen address).
    pub rtp_ip: IpAddr,
    /// `[media] codecs`.
    pub codecs: Vec<Codec>,
    /// `[media] opus_complexity`.
    pub opus_complexity: u8,
    /// `[media] rtp_timeout`.
    pub rtp_timeout: Duration,
    /// `[calls] invitation_timeout`.
    pub invitation_timeout: Duration,
    /// Proxy mode: `[rtm2sip]` (None: app users may not call SIP numbers); standalone
    /// mode: `None` here, registered SIP users are callable.
    pub rtm2sip: Option<Rtm2SipRule>,
    pub standalone: bool,
    /// `[proxy] rtm_account`: the caller shown for anonymous SIP callers.
    pub anonymous_caller: String,
    /// `[rtm2sip] app_display_name`: the app's `content.SipData` sets the From display
    /// name; otherwise the display name is the logged-in app user.
    pub app_display_name: bool,
    /// This shard's number: it keeps the ids of the SIP calls it starts apart from other
    /// shards'.
    pub shard: u16,
    /// `[calls] max_calls`: this shard never holds more (shard 0 counts all shards).
    pub max_calls: usize,
    pub seed: [u8; 32],
    /// A wall-clock reading at one instant: CDR times and RTCP NTP timestamps.
    pub clock_anchor: (Instant, u64),
}

/// Which SIP numbers app users may call in proxy mode.
#[derive(Debug, Clone)]
pub struct Rtm2SipRule {
    pub acc_rule: AccRule,
    pub allow_any: bool,
}

/// Which socket a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSocket {
    /// The shard's ICE-lite WebRTC socket.
    WebRtc,
    /// A SIP leg's socket on this port (its RTP port, or RTP port + 1 for RTCP).
    Rtp(u16),
}

/// A datagram written by [`Calls::poll_transmit`] into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTransmit {
    pub socket: MediaSocket,
    pub destination: SocketAddr,
    pub len: usize,
}

/// RTP sockets of SIP legs, provided by the I/O shell.
pub trait RtpPorts {
    /// Binds a new SIP leg's RTP socket on an even port of `[media] rtp_ports` and its
    /// RTCP socket on the next port; returns the RTP port, `None` when none is free.
    fn open(&mut self) -> Option<u16>;
    /// Closes both sockets of `port`.
    fn close(&mut self, port: u16);
}

/// What the call layer works with besides itself.
pub struct Ctx<'a> {
    /// The SIP endpoint (on the shard that has it) or the queue toward it.
    pub sip: &'a mut dyn link::SipLink,
    pub ports: &'a mut dyn RtpPorts,
    /// Whether an app user is logged in (or within its reconnection grace).
    pub online: &'a dyn Fn(&str) -> bool,
}

/// What the call layer does next with a call.
pub enum Step {
    Continue,
    /// End it, with this hangup reason.
    Failed(&'static str),
}

/// Runs one call's own work, catching a panic in it (see [`Calls`]' fault isolation).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub type CallKey = (String, String); // (user, call id)

/// Calls one user may have at once: a logged-in client cannot make srgate allocate codec
/// state without end. (All of a user's calls are on one shard, so this holds in all.)
pub const MAX_CALLS_PER_USER: usize = 8;

/// Space a packet needs behind its payload for the SRTP tag (and the SRTCP index).
pub const SRTP_TAIL: usize = 32;

/// How long an accepted SIP call waits for the browser's DTLS before it fails.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(20);

enum Call {
    Echo(Box<EchoCall>),
    Bridge(Box<BridgeCall>),
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CallMetrics {
    pub ended: u64,
    pub relayed: u64,
    pub transcoded: u64,
    pub sip_invites_out: u64,
    pub sip_invites_in: u64,
    pub rtp_ports_exhausted: u64,
    /// Calls ended because their own code panicked.
    pub panicked: u64,
}

/// The scheduling state of one slot.
#[derive(Clone, Copy, Debug, Default)]
struct SlotMeta {
    /// Bumped whenever the slot's timer is asked again (or the call ends): heap entries
    /// with an older generation are stale.
    generation: u32,
    /// In `dirty`: its timer must be asked again.
    dirty: bool,
    /// In `ready`: it may have datagrams to send.
    ready: bool,
    /// The deadline its current heap entry holds.
    scheduled: Option<Instant>,
}

pub struct Calls {
    cfg: CallsConfig,
    rng: Rng,
    dtls: DtlsContext,
    /// Calls in slots, so the media path finds one by index without allocating.
    slots: Vec<Option<(CallKey, Call)>>,
    /// Per slot, next to `slots`.
    meta: Vec<SlotMeta>,
    /// Empty slots below `slots.len()`.
    free: Vec<usize>,
    /// Slots touched by input since they last had nothing to send, in order: the media
    /// path visits only these, never every call.
    ready: VecDeque<usize>,
    /// Slots whose timer must be asked again before the next `poll_timeout`.
    dirty: Vec<usize>,
    /// Every call's next deadline: (when, slot, generation), earliest first.
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    /// Slots due in `handle_timeout` (kept to reuse its memory).
    due: Vec<usize>,
    /// Calls that came and went, for the shard that routes requests and SIP events.
    routes: VecDeque<link::RouteChange>,
    index: HashMap<CallKey, usize>,
    by_ufrag: HashMap<String, usize>,
    by_remote: HashMap<SocketAddr, usize>,
    by_sip: HashMap<SipCallId, usize>,
    by_port: HashMap<u16, usize>,
    messages: VecDeque<(String, String)>,
    cdrs: VecDeque<Cdr>,
    metrics: CallMetrics,
    next_sip: u64,
    /// Calls whose code panicked where no context was at hand, to end at the next tick.
    poison: Vec<(usize, Instant)>,
}

/// Milliseconds since the Unix epoch at `at`, given an anchor `(instant, unix ms)`.
fn unix_ms_at((base, base_ms): (Instant, u64), at: Instant) -> u64 {
    if at >= base {
        base_ms.saturating_add(at.duration_since(base).as_millis() as u64)
    } else {
        base_ms.saturating_sub(base.duration_since(at).as_millis() as u64)
    }
}

/// RFC 3550 §4 NTP timestamp at `at`.
fn ntp_at(anchor: (Instant, u64), at: Instant) -> u64 {
    let ms = unix_ms_at(anchor, at);
    let secs = ms / 1000 + 2_208_988_800;
    let frac = ((ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// The SRProxy-style `content` of a remote invitation (SRProxy's conventions).
fn invitation_content(id: &str, caller: &str, cus_data: Option<&str>) -> String {
    serde_json::json!({
        "Mode": 1,
        "Conference": 0,
        "ChanId": id,
        "DisplayName": caller,
        "SipData": cus_data.unwrap_or(""),
    })
    .to_string()
}

/// `SipData` and `UserData` of an app's SRProxy-style invite content, when it is JSON.
fn content_fields(content: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(value) = content.and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
    else {
        return (None, None);
    };
    let field = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_string)
    };
    (field("SipData"), field("UserData"))
}

fn sip_status(code: u16, reason: &str) -> SipStatus {
    SipStatus {
        code,
        reason: reason.to_string(),
    }
}

impl Calls {
    pub fn new(cfg: CallsConfig, dtls: DtlsContext) -> Self {
        let next_sip = (u64::from(cfg.shard) << 48) | 1;
        Calls {
            rng: Rng::new(cfg.seed),
            cfg,
            dtls,
            slots: Vec::new(),
            meta: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            routes: VecDeque::new(),
            index: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_remote: HashMap::new(),
            by_sip: HashMap::new(),
            by_port: HashMap::new(),
            messages: VecDeque::new(),
            cdrs: VecDeque::new(),
            metrics: CallMetrics::default(),
            next_sip,
            poison: Vec::new(),
        }
    }

    /// Calls in progress (from invite to hangup): `/health` `calls`.
    pub fn count(&self) -> usize {
        self.index.len()
    }

    pub fn ended_total(&self) -> u64 {
        self.metrics.ended
    }

    pub fn metrics(&self) -> CallMetrics {
        self.metrics
    }

    fn say(&mut self, user: &str, text: String) {
        self.messages.push_back((user.to_string(), text));
    }

    fn refuse(&mut self, user: &str, code: ErrorCode, message: &str, id: &str) {
        let text = Refusal::new(code, message, Some(id)).to_json();
        self.say(user, text);
    }

    /// Milliseconds since the Unix epoch at `at`.
    fn unix_ms(&self, at: Instant) -> u64 {
        unix_ms_at(self.cfg.clock_anchor, at)
    }

    fn stream_ids(&mut self) -> StreamIds {
        StreamIds {
            ssrc_webrtc: u32::from_be_bytes(self.rng.bytes::<4>()),
            ssrc_sip: u32::from_be_bytes(self.rng.bytes::<4>()),
            seq_webrtc: u16::from_be_bytes(self.rng.bytes::<2>()),
            seq_sip: u16::from_be_bytes(self.rng.bytes::<2>()),
            ts_webrtc: u32::from_be_bytes(self.rng.bytes::<4>()),
            ts_sip: u32::from_be_bytes(self.rng.bytes::<4>()),
        }
    }

    fn session_id(&mut self) -> u64 {
        u64::from_be_bytes(self.rng.bytes::<8>()) >> 1
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
    fn touch(&mut self, slot: usize) {
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
            None => return,
        };
        self.routes.push_back(change);
    }

    /// Which calls came and went here (for the shard that routes to this one).
    pub fn poll_route(&mut self) -> Option<link::RouteChange> {
        self.routes.pop_front()
    }

    /// The slot's call is gone: its timer entries are stale, the slot can be reused.
    fn vacate(&mut self, slot: usize) {
        if let Some(meta) = self.meta.get_mut(slot) {
            meta.generation = meta.generation.wrapping_add(1);
            meta.scheduled = None;
        }
        // a panic noted for the call that was here is not the next call's
        self.poison.retain(|(s, _)| *s != slot);
        self.free.push(slot);
    }

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

    fn bridge_mut(&mut self, slot: usize) -> Option<&mut BridgeCall> {
        match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Bridge(b))) => Some(b),
            _ => None,
        }
    }

    fn key_of(&self, slot: usize) -> Option<CallKey> {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .map(|(k, _)| k.clone())
    }

    /// A request of a logged-in user, or the news that a user is gone for good.
    pub fn handle_request(&mut self, now: Instant, request: CallRequest, ctx: &mut Ctx<'_>) {
        let key = match &request {
            CallRequest::Call { user, request } => {
                request.id().map(|id| (user.clone(), id.to_owned()))
            }
            CallRequest::UserGone { .. } => None,
        };
        let invite = matches!(
            &request,
            CallRequest::Call {
                request: Request::Invite { .. },
                ..
            }
        );
        let existed = key.as_ref().is_some_and(|k| self.index.contains_key(k));
        self.request(now, request, ctx);
        if let Some(key) = key {
            let slot = self.index.get(&key).copied();
            if let Some(slot) = slot {
                self.touch(slot);
            }
            // an invite that did not become a new call
            if invite && (existed || slot.is_none()) {
                self.routes.push_back(link::RouteChange::Dropped {
                    user: key.0.clone(),
                    key: (!existed).then_some(key),
                    sip: None,
                });
            }
        }
    }

    fn request(&mut self, now: Instant, request: CallRequest, ctx: &mut Ctx<'_>) {
        let (user, request) = match request {
            CallRequest::Call { user, request } => (user, request),
            CallRequest::UserGone { user } => {
                let slots: Vec<usize> = self
                    .index
                    .iter()
                    .filter(|(k, _)| k.0 == user)
                    .map(|(_, s)| *s)
                    .collect();
                for slot in slots {
                    self.end_silently(now, slot, ctx, "user gone");
                }
                return;
            }
        };
        let slot = request
            .id()
            .and_then(|id| self.index.get(&(user.clone(), id.to_string())).copied());
        match request {
            Request::Invite {
                id,
                callee,
                sdp,
                content,
                ..
            } => {
                if slot.is_some() {
                    self.refuse(
                        &user,
                        ErrorCode::BadRequest,
                        "a call with this id is in progress",
                        &id,
                    );
                    return;
                }
                if self.index.len() >= self.cfg.max_calls {
                    self.refuse(
                        &user,
                        ErrorCode::Overloaded,
                        "srgate is at its call limit",
                        &id,
                    );
                    return;
                }
                let of_user = self.index.keys().filter(|k| k.0 == user).count();
                if of_user >= MAX_CALLS_PER_USER {
                    self.refuse(&user, ErrorCode::BadRequest, "too many calls", &id);
                    return;
                }
                if callee == ECHO {
                    self.invite_echo(now, &user, &id, &sdp);
                } else {
                    self.invite_sip(now, &user, &id, &callee, &sdp, content.as_deref(), ctx);
                }
            }
            Request::Hangup { id } | Request::Cancel { id } => match slot {
                Some(slot) => self.hangup_by_app(now, slot, ctx),
                None => self.refuse(&user, ErrorCode::NoSuchCall, "no such call", &id),
            },
            Request::Dtmf { id, digits } => match slot {
                Some(slot) => self.dtmf_from_app(now, slot, &user, &id, &digits),
                None => self.refuse(&user, ErrorCode::NoSuchCall, "no such call", &id),
            },
            Request::Accept { id, sdp, .. } => match slot {
                Some(slot)
                    if self
                        .bridge_mut(slot)
                        .is_some_and(|b| b.phase == Phase::Offered) =>
                {
                    self.accept(now, slot, &sdp)
                }
                _ => self.refuse(&user, ErrorCode::NoSuchCall, "no such invitation", &id),
            },
            Request::Refuse { id, response } => match slot {
                Some(slot)
                    if self
                        .bridge_mut(slot)
                        .is_some_and(|b| b.phase == Phase::Offered) =>
                {
                    let decline = response
                        .as_deref()
                        .is_some_and(|r| r.to_ascii_lowercase().contains("decline"));
                    let code = if decline { 603 } else { 486 };
                    if let Some(b) = self.bridge_mut(slot) {
                        b.sip_alive = false;
                        ctx.sip.reject(now, b.sip, code);
                    }
                    self.remove(now, slot, ctx, Some(code), "REFUSED");
                }
                _ => self.refuse(&user, ErrorCode::NoSuchCall, "no such invitation", &id),
            },
            Request::Login { .. } | Request::Ping => {}
        }
    }

    fn dtmf_from_app(&mut self, now: Instant, slot: usize, user: &str, id: &str, digits: &str) {
        let sent = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(_))) => {
                // The echo service echoes DTMF too: one message per digit.
                for digit in digits.chars() {
                    self.say(user, protocol::dtmf(id, digit));
                }
                return;
            }
            Some((_, Call::Bridge(b))) => b.send_dtmf(now, digits),
            None => return,
        };
        if !sent {
            self.refuse(
                user,
                ErrorCode::BadRequest,
                "DTMF needs the media path: the call is not connected yet, or too many digits are queued",
                id,
            );
        }
    }

    fn invite_echo(&mut self, now: Instant, user: &str, id: &str, offer: &str) {
        let key = (user.to_string(), id.to_string());
        let ufrag = self.rng.token(8);
        let pwd = self.rng.token(24);
        let ids = self.stream_ids();
        let session_id = self.session_id();
        let setup = EchoSetup {
            browser: BrowserSetup {
                now,
                offer,
                codecs: &self.cfg.codecs,
                dtls: &self.dtls,
                media_addr: self.cfg.media_addr,
                ufrag: &ufrag,
                pwd: &pwd,
                ssrc: ids.ssrc_webrtc,
                session_id,
            },
            sequence: ids.seq_webrtc,
            timestamp: ids.ts_webrtc,
            opus_complexity: self.cfg.opus_complexity,
        };
        match EchoCall::new(setup) {
            Ok((call, answer)) => {
                log::info!("call {id} of {} to echo: answered", crate::pii::Pii(user));
                let slot = self.free_slot();
                self.by_ufrag.insert(ufrag, slot);
                self.index.insert(key.clone(), slot);
                self.slots[slot] = Some((key, Call::Echo(Box::new(call))));
                self.touch(slot);
                self.route_added(slot);
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

    /// Codecs for a browser in a bridged call: the configured ones the bridge can code;
    /// among G.711 laws, `sip` (the SIP side's) first, so they can be relayed.
    fn browser_codecs(&self, sip: Option<Codec>) -> Vec<Codec> {
        let mut codecs: Vec<Codec> = self
            .cfg
            .codecs
            .iter()
            .copied()
            .filter(|c| media_codec(*c).is_some())
            .collect();
        if let Some(sip) = sip
            && let (Some(a), Some(b)) = (
                codecs.iter().position(|c| *c == sip),
                codecs
                    .iter()
                    .position(|c| matches!(c, Codec::Pcmu | Codec::Pcma)),
            )
            && a > b
        {
            codecs.swap(a, b);
        }
        codecs
    }

    fn may_call(&self, callee: &str) -> bool {
        if self.cfg.standalone {
            // Registered SIP users only: the endpoint knows (NoRoute otherwise).
            return true;
        }
        match &self.cfg.rtm2sip {
            Some(rule) => rule.allow_any || rule.acc_rule.matches(callee),
            None => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invite_sip(
        &mut self,
        now: Instant,
        user: &str,
        id: &str,
        callee: &str,
        offer: &str,
        content: Option<&str>,
        ctx: &mut Ctx<'_>,
    ) {
        if !self.may_call(callee) {
            log::info!(
                "call {id} of {} to {}: number not allowed by [rtm2sip]",
                crate::pii::Pii(user),
                crate::pii::Pii(callee)
            );
            let sip = sip_status(403, "Forbidden");
            let text = protocol::local_state(id, "FAILURE", None, None, None, Some(&sip));
            self.say(user, text);
            self.record_attempt(now, user, callee, "app_to_sip", Some(403), "NOT_ALLOWED");
            return;
        }
        let Some(port) = ctx.ports.open() else {
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("call {id}: no free port in [media] rtp_ports");
            let sip = sip_status(503, "Service Unavailable");
            let text = protocol::local_state(id, "FAILURE", None, None, None, Some(&sip));
            self.say(user, text);
            return;
        };
        let ufrag = self.rng.token(8);
        let pwd = self.rng.token(24);
        let ids = self.stream_ids();
        let session_id = self.session_id();
        let codecs = self.browser_codecs(None);
        let browser = BrowserSide::new(BrowserSetup {
            now,
            offer,
            codecs: &codecs,
            dtls: &self.dtls,
            media_addr: self.cfg.media_addr,
            ufrag: &ufrag,
            pwd: &pwd,
            ssrc: ids.ssrc_webrtc,
            session_id,
        });
        let (browser, answer) = match browser {
            Ok(b) => b,
            Err(why) => {
                ctx.ports.close(port);
                self.refuse(
                    user,
                    ErrorCode::BadRequest,
                    &format!("unusable SDP offer: {why}"),
                    id,
                );
                return;
            }
        };
        // srgate's SIP offer: the browser's G.711 law first (then no transcoding), or the
        // configured G.711 laws for an Opus browser.
        let chosen = browser.negotiated().codec;
        let mut sip_offer = sip_codecs(&self.cfg.codecs);
        if let Some(i) = sip_offer.iter().position(|c| *c == chosen) {
            sip_offer.swap(0, i);
        }
        if sip_offer.is_empty() {
            sip_offer = vec![Codec::Pcmu, Codec::Pcma];
        }
        let formats: Vec<(u8, Codec)> = sip_offer
            .iter()
            .filter_map(|c| c.static_payload_type().map(|pt| (pt, *c)))
            .collect();
        let sip_id = SipCallId(self.next_sip);
        self.next_sip += 1;
        let mut call = BridgeCall::new(
            now,
            Way::AppToSip,
            sip_id,
            callee.to_string(),
            Phase::Calling,
            ids,
            port,
            self.cfg.rtp_ip,
            self.cfg.opus_complexity,
        );
        call.rtp_timeout = self.cfg.rtp_timeout;
        call.local_sdp = call.build_sip_sdp(
            &formats,
            Some(TELEPHONE_EVENT_PT),
            Direction::SendRecv,
            session_id,
        );
        let (display, user_data) = content_fields(content);
        // The app chooses what the callee sees only when the operator allows it: by default
        // the From display name is the authenticated app user.
        let display = display.filter(|_| self.cfg.app_display_name);
        let mut headers = Vec::new();
        if let Some(data) = user_data {
            headers.push(("X-ArInfo".to_string(), data));
        }
        let outgoing = OutgoingCall {
            id: sip_id,
            callee: callee.to_string(),
            caller: user.to_string(),
            display_name: display,
            sdp: call.local_sdp.clone(),
            headers,
        };
        if let Err(e) = ctx.sip.start_call(now, outgoing) {
            ctx.ports.close(port);
            log::info!(
                "call {id} of {} to {}: not sent ({e:?})",
                crate::pii::Pii(user),
                crate::pii::Pii(callee)
            );
            let text = match e {
                CallError::NoRoute => {
                    protocol::local_state(id, "FAILURE", None, None, Some("PEER_OFFLINE"), None)
                }
                _ => {
                    let sip = sip_status(503, "Service Unavailable");
                    protocol::local_state(id, "FAILURE", None, None, None, Some(&sip))
                }
            };
            self.say(user, text);
            self.record_attempt(now, user, callee, "app_to_sip", None, "PEER_OFFLINE");
            return;
        }
        self.metrics.sip_invites_out += 1;
        log::info!(
            "call {id} of {} to {}: INVITE sent, RTP port {port}",
            crate::pii::Pii(user),
            crate::pii::Pii(callee)
        );
        call.deadline = Some(now + self.cfg.invitation_timeout);
        if let Err(why) = call.set_browser(browser) {
            log::warn!("call {id}: {why}");
        }
        let key = (user.to_string(), id.to_string());
        let slot = self.free_slot();
        self.by_ufrag.insert(ufrag, slot);
        self.by_sip.insert(sip_id, slot);
        self.by_port.insert(port, slot);
        self.by_port.insert(port.wrapping_add(1), slot);
        self.index.insert(key.clone(), slot);
        self.slots[slot] = Some((key, Call::Bridge(Box::new(call))));
        self.touch(slot);
        self.route_added(slot);
        self.say(
            user,
            protocol::local_state(id, "SENT_TO_REMOTE", Some(&answer), None, None, None),
        );
    }

    fn accept(&mut self, now: Instant, slot: usize, offer: &str) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let sip_codec = self
            .bridge_mut(slot)
            .and_then(|b| b.sip_format())
            .map(|(_, c)| c);
        let codecs = self.browser_codecs(sip_codec);
        let ufrag = self.rng.token(8);
        let pwd = self.rng.token(24);
        let session_id = self.session_id();
        let ssrc = match self.bridge_mut(slot) {
            Some(b) => b.ids_ssrc_webrtc(),
            None => return,
        };
        let result = BrowserSide::new(BrowserSetup {
            now,
            offer,
            codecs: &codecs,
            dtls: &self.dtls,
            media_addr: self.cfg.media_addr,
            ufrag: &ufrag,
            pwd: &pwd,
            ssrc,
            session_id,
        });
        let (browser, answer) = match result {
            Ok(b) => b,
            Err(why) => {
                // The invitation stays: the app may accept again with a usable offer.
                self.refuse(
                    &key.0,
                    ErrorCode::BadRequest,
                    &format!("unusable SDP offer: {why}"),
                    &key.1,
                );
                return;
            }
        };
        let Some(b) = self.bridge_mut(slot) else {
            return;
        };
        if let Err(why) = b.set_browser(browser) {
            log::warn!("call {}: {why}", key.1);
        }
        b.phase = Phase::Accepting;
        b.deadline = Some(now + ACCEPT_WAIT);
        self.by_ufrag.insert(ufrag, slot);
        self.say(
            &key.0,
            protocol::remote_state(&key.1, "ACCEPTED", Some(&answer), None),
        );
    }

    /// The app user hangs up (or cancels, or refuses by hanging up).
    fn hangup_by_app(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let (text, code) = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(echo))) => {
                let text = if echo.browser().is_connected() {
                    protocol::hangup(&key.1, "LOCAL", None)
                } else {
                    protocol::local_state(&key.1, "CANCELED", None, None, None, None)
                };
                (Some(text), None)
            }
            Some((_, Call::Bridge(b))) => {
                let sip = b.sip;
                b.sip_alive = false;
                match b.phase {
                    Phase::Calling | Phase::Early => {
                        ctx.sip.hangup(now, sip);
                        let text =
                            protocol::local_state(&key.1, "CANCELED", None, None, None, None);
                        (Some(text), Some(487))
                    }
                    Phase::Offered => {
                        // Before the answer a hangup acts as refuse.
                        ctx.sip.reject(now, sip, 486);
                        (None, Some(486))
                    }
                    Phase::Accepting => {
                        ctx.sip.hangup(now, sip);
                        (Some(protocol::hangup(&key.1, "LOCAL", None)), Some(487))
                    }
                    Phase::Answered => {
                        ctx.sip.hangup(now, sip);
                        (Some(protocol::hangup(&key.1, "LOCAL", None)), None)
                    }
                }
            }
            None => return,
        };
        if let Some(text) = text {
            self.say(&key.0, text);
        }
        self.remove(now, slot, ctx, code, "LOCAL");
    }

    /// Ends a call without telling its user (gone for good), ending the SIP side.
    fn end_silently(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>, reason: &str) {
        let mut code = None;
        if let Some(b) = self.bridge_mut(slot)
            && b.sip_alive
        {
            b.sip_alive = false;
            match b.phase {
                Phase::Offered => {
                    ctx.sip.reject(now, b.sip, 480);
                    code = Some(480);
                }
                _ => ctx.sip.hangup(now, b.sip),
            }
        }
        self.remove(now, slot, ctx, code, reason);
    }

    /// Frees everything a call holds and writes its record. The user has been told.
    fn remove(
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
        self.routes.push_back(link::RouteChange::Removed {
            key: key.clone(),
            sip: match &call {
                Call::Bridge(b) => Some(b.sip),
                Call::Echo(_) => None,
            },
        });
        self.index.remove(&key);
        self.by_ufrag.retain(|_, s| *s != slot);
        self.by_remote.retain(|_, s| *s != slot);
        self.metrics.ended += 1;
        match call {
            Call::Echo(mut echo) => {
                echo.browser().close();
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
                b.close();
                if b.sip_alive {
                    ctx.sip.hangup(now, b.sip);
                }
                self.by_sip.remove(&b.sip);
                self.by_port.remove(&b.port);
                self.by_port.remove(&b.port.wrapping_add(1));
                ctx.ports.close(b.port);
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
        }
    }

    /// A call event of the SIP endpoint (other events are ignored here).
    pub fn handle_sip_event(&mut self, now: Instant, event: SipEvent, ctx: &mut Ctx<'_>) {
        let id = event.call_id();
        let incoming_for = match &event {
            SipEvent::IncomingCall { app_user, .. } => Some(app_user.clone()),
            _ => None,
        };
        self.sip_event(now, event, ctx);
        if let Some(id) = id {
            match self.by_sip.get(&id) {
                Some(&slot) => self.touch(slot),
                // an incoming call refused at once: its route goes
                None => {
                    if let Some(user) = incoming_for {
                        self.routes.push_back(link::RouteChange::Dropped {
                            user,
                            key: None,
                            sip: Some(id),
                        });
                    }
                }
            }
        }
    }

    fn sip_event(&mut self, now: Instant, event: SipEvent, ctx: &mut Ctx<'_>) {
        match event {
            SipEvent::IncomingCall {
                id,
                app_user,
                caller,
                caller_name,
                cus_data,
                sdp,
            } => self.incoming(
                now,
                id,
                &app_user,
                &caller,
                caller_name,
                cus_data,
                &sdp,
                ctx,
            ),
            SipEvent::CallProgress { id, code, sdp } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                let mut tell = false;
                let mut failed = None;
                if let Some(b) = self.bridge_mut(slot) {
                    if b.phase == Phase::Calling {
                        b.phase = Phase::Early;
                        tell = true;
                    }
                    if let Some(sdp) = sdp
                        && let Ok(remote) = parse_rtp_sdp(&sdp)
                    {
                        // 183 early media: played to the app.
                        if let Err(why) = b.apply_remote(remote) {
                            failed = Some(why);
                        }
                    }
                }
                if let Some(why) = failed {
                    log::info!("call {}: early media unusable: {why}", key.1);
                }
                if tell {
                    log::info!("call {}: SIP {code}: ringing", key.1);
                    let text =
                        protocol::local_state(&key.1, "RECEIVED_BY_REMOTE", None, None, None, None);
                    self.say(&key.0, text);
                }
            }
            SipEvent::CallAnswered { id, sdp } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                let cdr_peer;
                let outcome = match self.bridge_mut(slot) {
                    Some(b) => {
                        cdr_peer = b.peer.clone();
                        match parse_rtp_sdp(&sdp) {
                            Ok(remote) => b.apply_remote(remote),
                            Err(_) => Err("unreadable SDP answer"),
                        }
                        .map(|()| {
                            b.phase = Phase::Answered;
                            b.answered = Some(now);
                            b.deadline = None;
                            b.touch_rtp(now);
                            b.mode()
                        })
                    }
                    None => return,
                };
                match outcome {
                    Ok(mode) => {
                        self.count_mode(mode);
                        let response = serde_json::json!({
                            "Mode": 1, "Conference": false, "ChanId": key.1,
                            "SipNumber": cdr_peer, "SipData": "",
                        })
                        .to_string();
                        let text = protocol::local_state(
                            &key.1,
                            "ACCEPTED_BY_REMOTE",
                            None,
                            Some(&response),
                            None,
                            None,
                        );
                        self.say(&key.0, text);
                    }
                    Err(why) => {
                        log::info!("call {}: SIP answer unusable: {why}", key.1);
                        let sip = sip_status(488, "Not Acceptable Here");
                        let text =
                            protocol::local_state(&key.1, "FAILURE", None, None, None, Some(&sip));
                        self.say(&key.0, text);
                        self.remove(now, slot, ctx, Some(488), "ERROR");
                    }
                }
            }
            SipEvent::CallFailed { id, code, reason } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                if let Some(b) = self.bridge_mut(slot) {
                    b.sip_alive = false;
                }
                let sip = sip_status(code, &reason);
                let text = match code {
                    486 | 600 | 603 => protocol::local_state(
                        &key.1,
                        "REFUSED_BY_REMOTE",
                        None,
                        None,
                        None,
                        Some(&sip),
                    ),
                    404 | 480 => protocol::local_state(
                        &key.1,
                        "FAILURE",
                        None,
                        None,
                        Some("PEER_OFFLINE"),
                        Some(&sip),
                    ),
                    408 => protocol::local_state(
                        &key.1,
                        "FAILURE",
                        None,
                        None,
                        Some("PEER_NO_RESPONSE"),
                        Some(&sip),
                    ),
                    _ => protocol::local_state(&key.1, "FAILURE", None, None, None, Some(&sip)),
                };
                self.say(&key.0, text);
                self.remove(now, slot, ctx, Some(code), "REMOTE");
            }
            SipEvent::CallCanceled { id } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                let phase = match self.bridge_mut(slot) {
                    Some(b) => {
                        b.sip_alive = false;
                        b.phase
                    }
                    None => return,
                };
                let text = if phase == Phase::Accepting {
                    protocol::hangup(&key.1, "REMOTE", None)
                } else {
                    protocol::remote_state(&key.1, "CANCELED", None, None)
                };
                self.say(&key.0, text);
                self.remove(now, slot, ctx, Some(487), "CANCELED");
            }
            SipEvent::CallEnded { id, code } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                let Some(key) = self.key_of(slot) else { return };
                if let Some(b) = self.bridge_mut(slot) {
                    b.sip_alive = false;
                }
                let sip = code.map(|c| sip_status(c, "Request Timeout"));
                let reason = if code.is_some() { "TIMEOUT" } else { "REMOTE" };
                self.say(&key.0, protocol::hangup(&key.1, reason, sip.as_ref()));
                self.remove(now, slot, ctx, code, reason);
            }
            SipEvent::CallUpdated { id, sdp } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                if let Some(b) = self.bridge_mut(slot)
                    && let Ok(remote) = parse_rtp_sdp(&sdp)
                {
                    if let Err(why) = b.apply_remote(remote) {
                        log::info!("re-offer of SIP call {id:?}: {why}");
                    }
                    b.touch_rtp(now);
                }
            }
            SipEvent::Dtmf { id, digit, .. } => {
                let Some(&slot) = self.by_sip.get(&id) else {
                    return;
                };
                if let Some(key) = self.key_of(slot) {
                    self.say(&key.0, protocol::dtmf(&key.1, digit));
                }
            }
            _ => {}
        }
    }

    /// The record of a call refused before it had any media (one CDR line per call).
    fn record_attempt(
        &mut self,
        now: Instant,
        user: &str,
        peer: &str,
        direction: &str,
        code: Option<u16>,
        reason: &str,
    ) {
        let id = format!("x{}", self.rng.token(12));
        let cdr = Cdr::attempt(user, &id, peer, direction, self.unix_ms(now), code, reason);
        self.cdrs.push_back(cdr);
    }

    fn count_mode(&mut self, mode: Option<crate::media::bridge::BridgeMode>) {
        match mode {
            Some(crate::media::bridge::BridgeMode::Relay) => self.metrics.relayed += 1,
            Some(_) => self.metrics.transcoded += 1,
            None => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn incoming(
        &mut self,
        now: Instant,
        sip: SipCallId,
        app_user: &str,
        caller: &str,
        caller_name: Option<String>,
        cus_data: Option<String>,
        sdp: &str,
        ctx: &mut Ctx<'_>,
    ) {
        self.metrics.sip_invites_in += 1;
        if !protocol::valid_user(app_user) || !(ctx.online)(app_user) {
            log::info!(
                "SIP call for {}: not logged in → 480",
                crate::pii::Pii(app_user)
            );
            ctx.sip.reject(now, sip, 480);
            self.record_attempt(
                now,
                app_user,
                caller,
                "sip_to_app",
                Some(480),
                "NOT_LOGGEDIN",
            );
            return;
        }
        if self.index.len() >= self.cfg.max_calls {
            ctx.sip.reject(now, sip, 503);
            self.record_attempt(now, app_user, caller, "sip_to_app", Some(503), "OVERLOADED");
            return;
        }
        let of_user = self.index.keys().filter(|k| k.0 == app_user).count();
        if of_user >= MAX_CALLS_PER_USER {
            ctx.sip.reject(now, sip, 486);
            self.record_attempt(
                now,
                app_user,
                caller,
                "sip_to_app",
                Some(486),
                "TOO_MANY_CALLS",
            );
            return;
        }
        let remote = match parse_rtp_sdp(sdp) {
            Ok(r) => r,
            Err(e) => {
                log::info!(
                    "SIP call for {}: SDP offer unusable ({e}) → 488",
                    crate::pii::Pii(app_user)
                );
                ctx.sip.reject(now, sip, 488);
                self.record_attempt(now, app_user, caller, "sip_to_app", Some(488), "BAD_SDP");
                return;
            }
        };
        let Some(port) = ctx.ports.open() else {
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("SIP call: no free port in [media] rtp_ports → 503");
            ctx.sip.reject(now, sip, 503);
            return;
        };
        let ids = self.stream_ids();
        let session_id = self.session_id();
        let caller_shown = if caller.is_empty() || caller.eq_ignore_ascii_case("anonymous") {
            self.cfg.anonymous_caller.clone()
        } else {
            caller.to_string()
        };
        let mut call = BridgeCall::new(
            now,
            Way::SipToApp,
            sip,
            caller_shown.clone(),
            Phase::Offered,
            ids,
            port,
            self.cfg.rtp_ip,
            self.cfg.opus_complexity,
        );
        call.rtp_timeout = self.cfg.rtp_timeout;
        if call.apply_remote(remote).is_err() {
            ctx.ports.close(port);
            ctx.sip.reject(now, sip, 488);
            return;
        }
        let (pt, codec) = call.sip_format().unwrap_or((0, Codec::Pcmu));
        // telephone-event in the answer only when the caller offered it.
        let te = call.remote_telephone_event();
        call.local_sdp = call.build_sip_sdp(&[(pt, codec)], te, Direction::SendRecv, session_id);
        call.deadline = Some(now + self.cfg.invitation_timeout);
        let id = format!("s{}", self.rng.token(12));
        let content = invitation_content(&id, &caller_shown, cus_data.as_deref());
        let key = (app_user.to_string(), id.clone());
        let slot = self.free_slot();
        self.by_sip.insert(sip, slot);
        self.by_port.insert(port, slot);
        self.by_port.insert(port.wrapping_add(1), slot);
        self.index.insert(key.clone(), slot);
        self.slots[slot] = Some((key, Call::Bridge(Box::new(call))));
        self.touch(slot);
        self.route_added(slot);
        log::info!(
            "SIP call from {} for {}: invitation {id}, RTP port {port}",
            crate::pii::Pii(&caller_shown),
            crate::pii::Pii(app_user)
        );
        ctx.sip.ring(now, sip);
        self.say(
            app_user,
            protocol::remote_invitation(
                &id,
                &caller_shown,
                caller_name.as_deref(),
                Some(&content),
                None,
            ),
        );
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
        self.touch(slot);
        let step = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(call))) => guarded(|| call.handle_datagram(now, from, local, data)),
            Some((_, Call::Bridge(call))) => {
                guarded(|| call.handle_browser(now, from, local, data))
            }
            None => return,
        };
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
            return;
        };
        self.touch(slot);
        if let Some(b) = self.bridge_mut(slot) {
            let rtcp = port != b.port;
            if guarded(|| b.handle_sip(now, from, data, rtcp)).is_none() {
                self.poisoned(now, slot, ctx);
                return;
            }
        }
        self.after(now, slot, Step::Continue, ctx);
    }

    /// What follows a call's input: DTLS news, digits from SIP, failures.
    fn after(&mut self, now: Instant, slot: usize, step: Step, ctx: &mut Ctx<'_>) {
        let messages = &mut self.messages;
        let mut mode = None;
        match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((key, Call::Echo(echo))) => {
                if echo.browser().take_newly_connected() {
                    let text =
                        protocol::local_state(&key.1, "ACCEPTED_BY_REMOTE", None, None, None, None);
                    messages.push_back((key.0.clone(), text));
                }
            }
            Some((key, Call::Bridge(b))) => {
                let connected = b
                    .browser
                    .as_mut()
                    .is_some_and(BrowserSide::take_newly_connected);
                if connected && b.phase == Phase::Accepting {
                    // The browser's media path is up: now the SIP caller gets its 200.
                    ctx.sip.answer(now, b.sip, &b.local_sdp);
                    b.phase = Phase::Answered;
                    b.answered = Some(now);
                    b.deadline = None;
                    b.touch_rtp(now);
                    mode = Some(b.mode());
                }
                while let Some(digit) = b.poll_dtmf() {
                    messages.push_back((key.0.clone(), protocol::dtmf(&key.1, digit)));
                }
            }
            None => return,
        }
        if let Some(mode) = mode {
            self.count_mode(mode);
            self.touch(slot);
        }
        if let Step::Failed(reason) = step {
            self.fail(now, slot, reason, ctx);
        }
    }

    /// Ends every call (srgate is shutting down): BYE or CANCEL toward SIP, `hangup`
    /// `ERROR` (or `FAILURE`) to each user, and every resource freed.
    pub fn end_all(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.fail(now, slot, "ERROR", ctx);
            }
        }
    }

    /// The browser's transport failed, or media stopped: end the call, telling both.
    fn fail(&mut self, now: Instant, slot: usize, reason: &'static str, ctx: &mut Ctx<'_>) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let answered = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(echo))) => echo.browser().is_connected(),
            Some((_, Call::Bridge(b))) => {
                if b.sip_alive {
                    b.sip_alive = false;
                    match b.phase {
                        Phase::Offered | Phase::Accepting => ctx.sip.reject(now, b.sip, 480),
                        _ => ctx.sip.hangup(now, b.sip),
                    }
                }
                b.phase == Phase::Answered
            }
            None => return,
        };
        let text = if answered {
            protocol::hangup(&key.1, reason, None)
        } else {
            protocol::local_state(&key.1, "FAILURE", None, None, Some("MEDIA_FAILED"), None)
        };
        self.say(&key.0, text);
        self.remove(now, slot, ctx, None, reason);
    }

    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        for (slot, _) in std::mem::take(&mut self.poison) {
            self.poisoned(now, slot, ctx);
        }
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
                self.fail(now, slot, "TIMEOUT", ctx);
                continue;
            }
            self.timeout_of(now, slot, ctx);
        }
        self.due = due;
    }

    fn timeout_of(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>) {
        let step = match self.slots.get_mut(slot).and_then(Option::as_mut) {
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
                                "FAILURE",
                                None,
                                None,
                                Some("INVITATION_EXPIRE"),
                                None,
                            );
                            (text, 487)
                        }
                        Phase::Offered => {
                            ctx.sip.reject(now, b.sip, 480);
                            let text = protocol::remote_state(
                                &key.1,
                                "FAILURE",
                                None,
                                Some("INVITATION_EXPIRE"),
                            );
                            (text, 480)
                        }
                        Phase::Accepting | Phase::Answered => {
                            ctx.sip.reject(now, b.sip, 480);
                            let text = protocol::hangup(&key.1, "TIMEOUT", None);
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

    /// Writes the next datagram to send into `buf` (at least 1500 bytes). Visits only the
    /// calls that got input since they last had nothing to send.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<MediaTransmit> {
        while let Some(&slot) = self.ready.front() {
            let t = match self.slots.get_mut(slot).and_then(Option::as_mut) {
                Some((_, Call::Echo(c))) => guarded(|| c.poll_transmit(now, buf)),
                Some((_, Call::Bridge(c))) => {
                    let ntp = ntp_at(self.cfg.clock_anchor, now);
                    guarded(|| c.poll_transmit(now, ntp, buf))
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
        None
    }

    /// An event for a user: `(user, JSON text)`.
    pub fn poll_message(&mut self) -> Option<(String, String)> {
        self.messages.pop_front()
    }

    /// The record of a call that ended, for the CDR file.
    pub fn poll_cdr(&mut self) -> Option<Cdr> {
        self.cdrs.pop_front()
    }

    /// The calls' earliest own deadline (not the "at once" of a call that panicked).
    pub fn next_call_timer(&mut self) -> Option<Instant> {
        self.refresh_timers();
        self.next_timer()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.refresh_timers();
        let poison = self.poison.iter().map(|(_, at)| *at).min();
        earliest(poison, self.next_timer())
    }

    /// A call whose own code panicked (a bug some input reached): it ends with an error,
    /// its resources are freed, and every other call goes on.
    fn poisoned(&mut self, now: Instant, slot: usize, ctx: &mut Ctx<'_>) {
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
        let text = if answered {
            protocol::hangup(&key.1, "ERROR", None)
        } else {
            protocol::local_state(&key.1, "FAILURE", None, None, Some("MEDIA_FAILED"), None)
        };
        self.say(&key.0, text);
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
