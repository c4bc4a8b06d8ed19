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
//! [`Endpoint`](crate::sip::endpoint::Endpoint) (a B2BUA on top of it) and asks the shell for RTP sockets through
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
//!
//! # Where things are
//!
//! This file holds [`Calls`]' state, its settings and the public types of the call layer.
//! Its `impl Calls` is spread over child modules by responsibility: `slots` (the slot
//! table and the indexes that lead to a call), `requests` (app users' requests),
//! `sip_events` (the SIP endpoint's call events), `media` (datagrams in and out), `timers`
//! (deadlines), `guard` (fault isolation) and `content` (SRProxy's invitation content).
//! `door` opens a door station's door from the call. `bridge`, `browser` and `echo` are
//! the calls themselves, `cdr` their records, `latch`
//! the SIP side's RTP source, `link` the way to the SIP endpoint and the other shards, and
//! `router` which shard holds which call (used by shard 0).

mod bridge;
mod browser;
mod cdr;
mod content;
mod door;
mod echo;
mod guard;
pub mod latch;
pub mod link;
mod media;
mod requests;
pub mod router;
pub mod rtmp_call;
mod sip_events;
mod sip_pair;
mod slots;
mod timers;
mod video;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::AccRule;
use crate::sdp::Codec;
use crate::signal::protocol::{self, ErrorCode, Refusal, SipStatus};
use crate::signal::protocol::{CallState, Failure, HangupReason};
use crate::sip::endpoint::SipCallId;
use crate::sip::rng::Rng;
use crate::webrtc::dtls::DtlsContext;

use bridge::{BridgeCall, StreamIds};
pub use bridge::{Phase, TELEPHONE_EVENT_PT, Way};
pub use cdr::Cdr;
pub use door::{DoorOpened, DoorOpening};
use echo::EchoCall;
use slots::SlotMeta;

/// The number app users call to hear themselves.
pub const ECHO: &str = "echo";

/// Settings of the call layer.
pub struct CallsConfig {
    /// The ICE host candidate: the media socket's advertised address.
    pub media_addr: SocketAddr,
    /// `[webrtc] ice_tcp`: the media address also listens on TCP (RFC 6544).
    pub ice_tcp: bool,
    /// The address srgate advertises for RTP toward SIP (`public_ip`, else the SIP
    /// listen address).
    pub rtp_ip: IpAddr,
    /// The address srgate's RTP sockets are reached at from srgate itself (their bind
    /// address, loopback when they bind to all): the media of calls that stay inside
    /// srgate (app ↔ app) goes there, never through a NAT's public address.
    pub loop_ip: IpAddr,
    /// `[media] codecs`.
    pub codecs: Vec<Codec>,
    /// `[media] opus_complexity`.
    pub opus_complexity: u8,
    /// `[media] rtp_timeout`.
    pub rtp_timeout: Duration,
    /// `[media] sip_srtp`.
    pub sip_srtp: crate::config::SipSrtp,
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
    /// `[door] open_dtmf` (and `open_info`): None when no sequence opens a door.
    pub door: Option<DoorOpening>,
    /// `[rest] hook_url`: where a REST call without its own `hookUrl` reports its states.
    pub rest_hook: Option<crate::config::HookUrl>,
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
    Failed(HangupReason),
}

/// How a call that fails stood: answered or not, and which side the app was on.
#[derive(Clone, Copy)]
struct Standing {
    answered: bool,
    /// The app user was called (SIP → app): its states are `remote_state`.
    incoming: bool,
}

impl Standing {
    /// Ends the SIP side of a failing bridged call (a reject with `code` while the app
    /// has not answered, else BYE or CANCEL) and says how the call stood.
    fn end_sip_leg(b: &mut BridgeCall, now: Instant, code: u16, ctx: &mut Ctx<'_>) -> Standing {
        if b.sip_alive {
            b.sip_alive = false;
            match b.phase {
                Phase::Offered | Phase::Previewing | Phase::Accepting => {
                    ctx.sip.reject(now, b.sip, code)
                }
                _ => ctx.sip.hangup(now, b.sip),
            }
        }
        Standing {
            answered: b.phase == Phase::Answered,
            incoming: b.way == Way::SipToApp,
        }
    }

    /// What the user is told: `hangup` with `reason` once the call was answered, else
    /// `FAILURE` `MEDIA_FAILED` (`remote_state` when the app was called, `local_state`
    /// when it called).
    fn message(self, id: &str, reason: HangupReason) -> String {
        let failure = Some(Failure::MediaFailed);
        match self {
            Standing { answered: true, .. } => protocol::hangup(id, reason, None),
            Standing { incoming: true, .. } => {
                protocol::remote_state(id, CallState::Failure, None, failure)
            }
            _ => protocol::local_state(id, CallState::Failure, None, None, failure, None),
        }
    }
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
    /// SIP ↔ SIP (standalone): no app user in it.
    Pair(Box<sip_pair::SipPairCall>),
}

impl Call {
    /// The call's SIP legs: a bridged call's one, a SIP ↔ SIP call's two.
    fn sip_legs(&self) -> (Option<SipCallId>, Option<SipCallId>) {
        match self {
            Call::Bridge(b) => (Some(b.sip), None),
            Call::Pair(p) => (Some(p.a.sip), Some(p.b.sip)),
            Call::Echo(_) => (None, None),
        }
    }
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
    /// Relayed packets refused because one wake-up relayed more than the shard's arena
    /// holds (`media::relay`).
    pub relay_arena_full: u64,
    /// Calls whose browser leg failed at ICE (no check in time, consent expired).
    pub ice_failures: u64,
    /// Calls whose browser leg failed at DTLS (handshake, fingerprint, keys).
    pub dtls_failures: u64,
    /// Bridged calls that were answered: seconds from the invitation to the answer.
    pub answer_time: Histogram,
    /// Bridged calls whose media flowed: the share of packets lost on the way to srgate,
    /// on the worse of the two legs (RFC 3550 A.3).
    pub loss: Histogram,
    /// Bridged calls whose media flowed: interarrival jitter (RFC 3550 A.8) at the call's
    /// end, in seconds, worse leg.
    pub jitter: Histogram,
    /// Bridged calls whose legs reported on srgate's stream: the round-trip time from
    /// their last report block, in seconds, worse leg.
    pub rtt: Histogram,
}

/// Upper bounds of [`CallMetrics::answer_time`]'s buckets, in seconds.
pub const ANSWER_TIME_BOUNDS: [f64; HISTOGRAM_BUCKETS] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds of [`CallMetrics::loss`]'s buckets, as ratios.
pub const LOSS_BOUNDS: [f64; HISTOGRAM_BUCKETS] = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2];
/// Upper bounds of [`CallMetrics::jitter`]'s buckets, in seconds.
pub const JITTER_BOUNDS: [f64; HISTOGRAM_BUCKETS] =
    [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2];
/// Upper bounds of [`CallMetrics::rtt`]'s buckets, in seconds.
pub const RTT_BOUNDS: [f64; HISTOGRAM_BUCKETS] = [0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0];
pub const HISTOGRAM_BUCKETS: usize = 8;

/// A fixed-bucket histogram (Prometheus style: each bucket counts the observations at or
/// below its bound; `count` and `sum` are of all of them).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Histogram {
    /// Per bucket, observations at or below its bound and above the previous one.
    pub buckets: [u64; HISTOGRAM_BUCKETS],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, bounds: &[f64; HISTOGRAM_BUCKETS], value: f64) {
        if let Some(i) = bounds.iter().position(|b| value <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }

    /// Adds another shard's.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
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
    /// What ended calls still send their browsers (the DTLS close_notify).
    farewells: VecDeque<crate::webrtc::ice::Transmit>,
    /// The bytes of relayed packets waiting to leave in this wake-up, for every call.
    relay: crate::media::relay::RelayArena,
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
    /// Doors opened from calls (`[door]`), for the shell.
    doors: VecDeque<door::DoorOpened>,
    metrics: CallMetrics,
    next_sip: u64,
    /// Calls whose code panicked where no context was at hand, to end at the next tick.
    poison: Vec<(usize, Instant)>,
    /// REST calls published to RTMP (shard 0).
    rtmp: rtmp_call::RtmpCalls,
}

/// Milliseconds since the Unix epoch at `at`, given an anchor `(instant, unix ms)`.
fn unix_ms_at((base, base_ms): (Instant, u64), at: Instant) -> u64 {
    if at >= base {
        base_ms.saturating_add(at.duration_since(base).as_millis() as u64)
    } else {
        base_ms.saturating_sub(base.duration_since(at).as_millis() as u64)
    }
}

fn sip_status(code: u16, reason: &str) -> SipStatus {
    SipStatus {
        code,
        reason: reason.to_string(),
    }
}

impl Calls {
    /// The codecs srgate takes on the SIP side: the bridged ones `[media] codecs` names.
    /// (None configured: PCMU and PCMA, as srgate then offers.)
    pub fn sip_codecs(&self) -> crate::sdp::CodecSet {
        let configured = bridge::sip_codecs(&self.cfg.codecs);
        if configured.is_empty() {
            return crate::sdp::CodecSet::of(&[Codec::Pcmu, Codec::Pcma]);
        }
        crate::sdp::CodecSet::of(&configured)
    }

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
            farewells: VecDeque::new(),
            relay: crate::media::relay::RelayArena::default(),
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
            doors: VecDeque::new(),
            metrics: CallMetrics::default(),
            next_sip,
            poison: Vec::new(),
            rtmp: rtmp_call::RtmpCalls::default(),
        }
    }

    /// Calls in progress (from invite to hangup): `/health` `calls`.
    pub fn count(&self) -> usize {
        self.index.len() + self.rtmp.count()
    }

    pub fn ended_total(&self) -> u64 {
        self.metrics.ended
    }

    pub fn metrics(&self) -> CallMetrics {
        CallMetrics {
            relay_arena_full: self.relay.full(),
            ..self.metrics
        }
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

    /// Ends every call (srgate is shutting down): BYE or CANCEL toward SIP, `hangup`
    /// `ERROR` (or `FAILURE`) to each user, and every resource freed.
    pub fn end_all(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.fail(now, slot, HangupReason::Error, ctx);
            }
        }
        self.end_rtmp_calls(now, ctx);
    }

    /// The browser's transport failed, or media stopped: end the call, telling both.
    fn fail(&mut self, now: Instant, slot: usize, reason: HangupReason, ctx: &mut Ctx<'_>) {
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let standing = match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Echo(echo))) => Standing {
                answered: echo.browser().is_connected(),
                incoming: false,
            },
            Some((_, Call::Bridge(b))) => Standing::end_sip_leg(b, now, 480, ctx),
            Some((_, Call::Pair(_))) => {
                self.end_pair(now, slot, 480, ctx);
                let code = (reason == HangupReason::Timeout).then_some(408);
                self.remove(now, slot, ctx, code, reason.as_str());
                return;
            }
            None => return,
        };
        self.say(&key.0, standing.message(&key.1, reason));
        self.remove(now, slot, ctx, None, reason.as_str());
    }

    /// An event for a user: `(user, JSON text)`.
    pub fn poll_message(&mut self) -> Option<(String, String)> {
        self.messages.pop_front()
    }

    /// The record of a call that ended, for the CDR file.
    pub fn poll_cdr(&mut self) -> Option<Cdr> {
        self.cdrs.pop_front()
    }
}
