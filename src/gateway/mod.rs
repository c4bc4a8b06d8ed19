//! One shard's sans-IO core: [`Gateway`].
//!
//! Every shard thread runs one `Gateway` and nothing else of srgate's logic. It owns the
//! shard's calls ([`Calls`]) and the pool of RTP ports its SIP legs use (`P`, given by the
//! shell); shard 0's also owns the signalling: the SIP [`Endpoint`], the browsers'
//! sessions ([`Hub`]) and the [`Router`] that places each new call on a shard and sends
//! every later request and SIP event of it there. The other shards are *workers*: their
//! calls' SIP verbs, user messages, records and route changes go to shard 0 as
//! [`ToControl`] outputs, and shard 0's requests reach them as [`ToWorker`] inputs.
//!
//! The shell (`src/io/`) drives it like any sans-IO state machine, str0m/quinn-proto
//! style: it feeds what it read (`handle_sip`, `handle_datagram`, `handle_rtp`, the web
//! sessions' frames through [`Sessions`], messages between shards, `handle_timeout` when
//! [`Gateway::poll_timeout`] is due), then drains [`Gateway::poll_output`] (SIP messages,
//! WebSocket frames, messages for other shards, call records) and
//! [`Gateway::poll_transmit`] (media datagrams, written into the shell's send buffer) and
//! carries them out. Each input is settled inside the core before it returns: an
//! endpoint event reaches its call, a call's message reaches its user's session, a
//! route change reaches the router. Nothing here reads a clock, touches a socket or
//! spawns a thread. `tests/gateway.rs` drives shard 0's routing without sockets.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::call::link::{RouteChange, SipCommand, SipOutbox, refusal_of};
use crate::call::router::{Refused, Route, Router};
use crate::call::rtmp_call::RtmpOutput;
use crate::call::{Calls, Cdr, Ctx, DoorOpened, MediaTransmit, RtpPorts};
use crate::signal::hub::{CallRequest, Hub, HubOutput, SessionId};
use crate::signal::protocol::Request;
use crate::signal::sip_ws::SipWs;
use crate::sip::endpoint::{Endpoint, Event, Transmit, Transport};

mod signalling;
use signalling::{Signalling, Touching};

/// How long shard 0 waits at shutdown for the other shards to end their calls before the
/// proxy account un-registers anyway.
pub const WORKERS_STOP_WAIT: Duration = Duration::from_secs(1);
/// A shard whose call timers fire this late is falling behind: it takes no new calls until
/// they fire within [`CAUGHT_UP`] again.
const FALLING_BEHIND: Duration = Duration::from_millis(100);
const CAUGHT_UP: Duration = Duration::from_millis(20);

/// From shard 0 to a worker shard.
#[derive(Debug)]
pub enum ToWorker {
    /// A request of a logged-in user about a call of this shard (or a new one).
    Request(Box<CallRequest>),
    /// A SIP event of one of this shard's calls.
    Sip(Box<Event>),
    /// srgate is stopping: end every call, report [`ToControl::Stopped`].
    Shutdown,
}

/// From a worker shard to shard 0.
#[derive(Debug)]
pub enum ToControl {
    Sip(usize, Box<SipCommand>),
    /// A message for a user's WebSocket: (user, text).
    Message(Box<(String, String)>),
    Cdr(Box<Cdr>),
    /// A door opened from a call on the shard.
    Door(Box<DoorOpened>),
    Route(usize, Box<RouteChange>),
    /// The shard ended its calls and stopped.
    Stopped(usize),
}

/// What a [`Gateway`] asks its shell to carry out.
#[derive(Debug)]
pub enum Output {
    /// A SIP message to send (shard 0).
    Sip(Transmit),
    /// A frame for, or the end of, a browser's WebSocket session (shard 0).
    Web(HubOutput),
    /// A message for worker shard `n` (shard 0). One that cannot be delivered goes back
    /// through [`Gateway::undelivered`].
    ToShard(usize, ToWorker),
    /// A message for shard 0 (worker shards).
    ToControl(ToControl),
    /// A call's record, for the CDR file (shard 0).
    Cdr(Box<Cdr>),
    /// A door opened from a call (`[door]`): for the log and the door hook (shard 0).
    Door(Box<DoorOpened>),
    /// A user's reconnection grace ended and its session state was freed (shard 0: a
    /// reason to give memory back after many of them).
    UserGone,
    /// A connection of the REST calls' RTMP sessions to open or close (shard 0).
    Rtmp(RtmpOutput),
    /// A REST call's state for its hook: (URL, JSON body) to POST (shard 0).
    RestHook(Box<(crate::config::HookUrl, String)>),
}

/// The browser sessions' side of the core, as the WebSocket shell feeds it.
pub trait Sessions {
    /// A WebSocket was opened as `session`.
    fn open(&mut self, now: Instant, session: SessionId);
    /// A WebSocket that speaks SIP (subprotocol `sip`, RFC 7118) was opened as `session`
    /// from `peer`. Sessions without a SIP user agent take it as a JSON one.
    fn open_sip(&mut self, now: Instant, session: SessionId, peer: SocketAddr) {
        let _ = peer;
        self.open(now, session)
    }
    /// A text frame of `session` (`unix_now`: seconds since the epoch, for login tokens).
    fn handle_text(&mut self, now: Instant, unix_now: u64, session: SessionId, text: &str);
    /// `session` sent a frame larger than the limit.
    fn frame_too_large(&mut self, session: SessionId);
}

impl Sessions for Hub {
    fn open(&mut self, now: Instant, session: SessionId) {
        Hub::open(self, now, session)
    }
    fn handle_text(&mut self, now: Instant, unix_now: u64, session: SessionId, text: &str) {
        Hub::handle_text(self, now, unix_now, session, text)
    }
    fn frame_too_large(&mut self, session: SessionId) {
        Hub::frame_too_large(self, session)
    }
}

enum Role {
    /// Shard 0: signals for every shard and carries its own share of the calls.
    Control(Box<Signalling>),
    /// Shards 1…N−1: calls only; their SIP verbs are queued for shard 0.
    Worker { index: usize, sip: SipOutbox },
}

/// One shard's core (see the module's documentation).
pub struct Gateway<P> {
    calls: Calls,
    ports: P,
    role: Role,
    out: VecDeque<Output>,
    /// The shard's call timers fire late (see [`FALLING_BEHIND`]), and how often that began.
    lagging: bool,
    lag_episodes: u64,
    /// Shutdown began (shard 0) or was asked for (workers).
    stopping: bool,
    /// The time of the latest input.
    now: Instant,
}

impl<P: RtpPorts> Gateway<P> {
    /// Shard 0's core; `shards` counts every shard, this one included.
    pub fn control(
        calls: Calls,
        ports: P,
        endpoint: Endpoint,
        hub: Hub,
        shards: usize,
        max_calls: u32,
        now: Instant,
    ) -> Self {
        let shards = shards.max(1);
        let sip_ws = SipWs::new(endpoint.domain());
        Gateway::new(
            calls,
            ports,
            Role::Control(Box::new(Signalling {
                endpoint,
                endpoint_deadline: None,
                endpoint_changed: true,
                hub,
                sip_ws,
                router: Router::new(shards, max_calls),
                workers_lagging: vec![false; shards],
                workers_running: shards - 1,
                workers_wait_until: None,
            })),
            now,
        )
    }

    /// Worker shard `index`'s core (1…N−1).
    pub fn worker(index: usize, calls: Calls, ports: P, now: Instant) -> Self {
        let sip = SipOutbox::default();
        Gateway::new(calls, ports, Role::Worker { index, sip }, now)
    }

    fn new(calls: Calls, ports: P, role: Role, now: Instant) -> Self {
        Gateway {
            calls,
            ports,
            role,
            out: VecDeque::new(),
            lagging: false,
            lag_episodes: 0,
            stopping: false,
            now,
        }
    }

    /// The shell's port pool (to read and write the sockets behind the ports).
    pub fn ports(&self) -> &P {
        &self.ports
    }

    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// Whether this shard runs its timers late (it takes no new calls then), and how
    /// often it began to.
    pub fn lagging(&self) -> bool {
        self.lagging
    }

    pub fn lag_episodes(&self) -> u64 {
        self.lag_episodes
    }

    fn signalling(&mut self) -> Option<&mut Signalling> {
        match &mut self.role {
            Role::Control(s) => Some(s),
            Role::Worker { .. } => None,
        }
    }

    /// Runs `f` on the calls with their context: the SIP endpoint (shard 0) or the queue
    /// toward it, the port pool, and who is logged in (a worker only gets calls of users
    /// shard 0 found online).
    fn with_calls<R>(&mut self, f: impl FnOnce(&mut Calls, &mut Ctx<'_>) -> R) -> R {
        let Gateway {
            calls, ports, role, ..
        } = self;
        match role {
            Role::Control(s) => {
                let Signalling {
                    endpoint,
                    endpoint_changed,
                    hub,
                    ..
                } = &mut **s;
                let online = |user: &str| hub.is_online(user);
                f(
                    calls,
                    &mut Ctx {
                        sip: &mut Touching {
                            endpoint,
                            changed: endpoint_changed,
                        },
                        ports,
                        online: &online,
                    },
                )
            }
            Role::Worker { sip, .. } => f(
                calls,
                &mut Ctx {
                    sip,
                    ports,
                    online: &|_: &str| true,
                },
            ),
        }
    }

    // ---- inputs ----

    /// A SIP message from `from` (shard 0).
    pub fn handle_sip(&mut self, now: Instant, transport: Transport, from: SocketAddr, msg: &[u8]) {
        self.now = now;
        if let Some(s) = self.signalling() {
            // A keepalive, a datagram over the flood limit or a malformed one (answered
            // statelessly) leaves every timer as it was: no new look at the deadline.
            if s.endpoint.handle_receive(now, transport, from, msg) {
                s.endpoint_changed = true;
            }
            self.settle(now);
        }
    }

    /// What was sent to `peer` over `transport` cannot arrive (its connection closed or
    /// could not be opened): transactions waiting on it fail now (shard 0).
    pub fn handle_transport_error(&mut self, now: Instant, transport: Transport, peer: SocketAddr) {
        self.now = now;
        if let Some(s) = self.signalling() {
            s.endpoint_mut()
                .handle_transport_error(now, transport, peer);
            self.settle(now);
        }
    }

    /// A datagram on the shard's WebRTC socket (STUN, DTLS, SRTP, SRTCP). `packet` is the
    /// receive buffer: the call may rewrite it in place.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, packet: &mut [u8]) {
        self.now = now;
        self.with_calls(|c, ctx| c.handle_datagram(now, from, packet, ctx));
        self.settle(now);
    }

    /// A datagram on a SIP leg's RTP (`port`) or RTCP (`port + 1`) socket.
    pub fn handle_rtp(&mut self, now: Instant, port: u16, from: SocketAddr, packet: &[u8]) {
        self.now = now;
        self.with_calls(|c, ctx| c.handle_rtp(now, port, from, packet, ctx));
        self.settle(now);
    }

    /// A REST request of the control API (shard 0; a worker answers 503): the HTTP
    /// status and JSON body of its answer.
    pub fn handle_rest(
        &mut self,
        now: Instant,
        request: crate::rest::RestRequest,
    ) -> (u16, String) {
        self.now = now;
        let stopping = self.stopping;
        let rest_calls = self.calls.rtmp_calls() as u64;
        let Some(s) = self.signalling().filter(|_| !stopping) else {
            return (503, crate::rest::RestError::unavailable().json());
        };
        // a REST call counts toward `[calls] max_calls` like any other
        s.router.set_outside(rest_calls);
        if matches!(request, crate::rest::RestRequest::Startup(_)) && s.router.full() {
            s.router.refused();
            return (503, crate::rest::RestError::overloaded().json());
        }
        let answer = self.with_calls(|c, ctx| c.handle_rest(now, request, ctx));
        self.settle(now);
        answer
    }

    /// Bytes the REST calls' RTMP connection `conn` should write now.
    pub fn rtmp_transmit(&self, conn: u64) -> Option<&[u8]> {
        self.calls.rtmp_transmit(conn)
    }

    /// `n` bytes of [`Gateway::rtmp_transmit`] were written.
    pub fn rtmp_advance(&mut self, conn: u64, n: usize) {
        self.calls.rtmp_advance(conn, n);
    }

    /// Bytes read on RTMP connection `conn`.
    pub fn rtmp_input(&mut self, now: Instant, conn: u64, bytes: &[u8]) {
        self.now = now;
        self.calls.rtmp_input(now, conn, bytes);
        self.settle(now);
    }

    /// RTMP connection `conn` closed or could not be opened (`why`).
    pub fn rtmp_closed(&mut self, now: Instant, conn: u64, why: Option<String>) {
        self.now = now;
        self.calls.rtmp_closed(now, conn, why);
        self.settle(now);
    }

    /// The end of a browser's WebSocket `session` (shard 0).
    pub fn session_closed(&mut self, now: Instant, session: SessionId) {
        self.now = now;
        if let Some(s) = self.signalling() {
            s.sip_ws.close(session);
            s.hub.close(now, session);
            self.settle(now);
        }
    }

    /// Whether worker shard `shard` runs its timers late, as it last published (shard 0).
    pub fn set_shard_lagging(&mut self, shard: usize, lagging: bool) {
        if let Some(s) = self.signalling()
            && let Some(l) = s.workers_lagging.get_mut(shard)
        {
            *l = lagging;
        }
    }

    /// A message from worker shard (shard 0).
    pub fn handle_from_worker(&mut self, now: Instant, message: ToControl) {
        self.now = now;
        let Some(s) = self.signalling() else {
            return;
        };
        match message {
            ToControl::Sip(shard, command) => {
                let mut command = *command;
                if let SipCommand::Start(call) = &mut command {
                    s.router.sip_started(shard, call.id);
                    // a worker cannot tell who is logged in: shard 0 knows
                    if call.reach == crate::sip::endpoint::Reach::App
                        && !s.hub.is_online(&call.callee)
                    {
                        call.reach = crate::sip::endpoint::Reach::GroupOrPhone;
                    }
                }
                if let Err((id, e)) = command.apply(now, s.endpoint_mut()) {
                    // the shard learns it as the call's failure
                    let (code, reason) = refusal_of(&e);
                    log::info!("shard {shard}: SIP call not started ({e:?})");
                    let failed = Event::CallFailed {
                        id,
                        code,
                        reason: reason.to_owned(),
                    };
                    self.out
                        .push_back(Output::ToShard(shard, ToWorker::Sip(Box::new(failed))));
                }
            }
            ToControl::Message(message) => {
                let (user, text) = *message;
                s.hub.send_to_user(&user, text);
            }
            ToControl::Cdr(cdr) => self.out.push_back(Output::Cdr(cdr)),
            ToControl::Door(door) => self.out.push_back(Output::Door(door)),
            ToControl::Route(shard, change) => s.router.apply(shard, *change),
            ToControl::Stopped(shard) => {
                log::debug!("shard {shard} stopped");
                s.router.stopped(shard);
                s.workers_running = s.workers_running.saturating_sub(1);
                if s.workers_running == 0 && s.workers_wait_until.take().is_some() {
                    s.endpoint_mut().shutdown(now);
                }
            }
        }
        self.settle(now);
    }

    /// A message from shard 0 (worker shards).
    pub fn handle_from_control(&mut self, now: Instant, message: ToWorker) {
        self.now = now;
        match message {
            // stopping: a new call that was on its way is refused, not started
            ToWorker::Request(r) if self.stopping && Self::is_invite(&r) => self.refuse_new(*r),
            ToWorker::Sip(e) if self.stopping && matches!(*e, Event::IncomingCall { .. }) => {
                self.refuse_incoming(*e)
            }
            ToWorker::Request(r) => self.with_calls(|c, ctx| c.handle_request(now, *r, ctx)),
            ToWorker::Sip(e) => self.with_calls(|c, ctx| c.handle_sip_event(now, *e, ctx)),
            ToWorker::Shutdown => self.shutdown(now),
        }
        self.settle(now);
    }

    fn is_invite(request: &CallRequest) -> bool {
        matches!(
            request,
            CallRequest::Call {
                request: Request::Invite { .. },
                ..
            }
        )
    }

    /// A worker that is stopping refuses an app's new call: `OVERLOADED` to the user, the
    /// placement taken back.
    fn refuse_new(&mut self, request: CallRequest) {
        let Role::Worker { index, .. } = self.role else {
            return;
        };
        if let CallRequest::Call {
            user,
            request: Request::Invite { id, .. },
        } = request
        {
            let text = Refused::Overloaded.refusal(&id).to_json();
            let dropped = RouteChange::Dropped {
                user: user.clone(),
                key: Some((user.clone(), id)),
                sip: None,
            };
            self.out
                .push_back(Output::ToControl(ToControl::Message(Box::new((
                    user, text,
                )))));
            self.out.push_back(Output::ToControl(ToControl::Route(
                index,
                Box::new(dropped),
            )));
        }
    }

    /// A worker that is stopping refuses an incoming SIP call (503), the placement taken
    /// back.
    fn refuse_incoming(&mut self, event: Event) {
        let Role::Worker { index, .. } = self.role else {
            return;
        };
        if let Event::IncomingCall { id, app_user, .. } = event {
            self.out.push_back(Output::ToControl(ToControl::Sip(
                index,
                Box::new(SipCommand::Reject(id, 503)),
            )));
            let dropped = RouteChange::Dropped {
                user: app_user,
                key: None,
                sip: Some(id),
            };
            self.out.push_back(Output::ToControl(ToControl::Route(
                index,
                Box::new(dropped),
            )));
        }
    }

    /// A message for worker `shard` that the shell could not deliver (its inbox is full
    /// or it stopped): the call it would have placed there is taken back and refused —
    /// the user gets `OVERLOADED`, an incoming SIP call 503 (shard 0).
    pub fn undelivered(&mut self, now: Instant, shard: usize, message: ToWorker) {
        self.now = now;
        let Some(s) = self.signalling() else {
            return;
        };
        log::warn!("shard {shard} did not take a message");
        match message {
            ToWorker::Request(request) => {
                if let CallRequest::Call {
                    user,
                    request: Request::Invite { id, .. },
                } = *request
                {
                    s.router.apply(
                        shard,
                        RouteChange::Dropped {
                            user: user.clone(),
                            key: Some((user.clone(), id.clone())),
                            sip: None,
                        },
                    );
                    s.hub.refuse(&user, Refused::Overloaded.refusal(&id));
                }
            }
            ToWorker::Sip(event) => {
                if let Event::IncomingCall { id, app_user, .. } = *event {
                    s.router.apply(
                        shard,
                        RouteChange::Dropped {
                            user: app_user,
                            key: None,
                            sip: Some(id),
                        },
                    );
                    s.endpoint_mut().reject(now, id, 503);
                }
            }
            ToWorker::Shutdown => {}
        }
        self.settle(now);
    }

    /// Fires what is due at `now`: the calls' timers (noting how late they fire, which
    /// tells whether this shard keeps up), and on shard 0 the endpoint's and the
    /// sessions' timers and the end of the wait for the other shards at shutdown.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        // how late the calls' own timers fire (a panicked call's "at once" is not late)
        let late = match self.calls.next_call_timer() {
            Some(t) if t <= now => now.duration_since(t),
            _ => Duration::ZERO,
        };
        if !self.lagging && late >= FALLING_BEHIND {
            self.lagging = true;
            self.lag_episodes += 1;
            log::warn!("a shard runs its timers {late:?} late: it takes no new calls for now");
        } else if self.lagging && late <= CAUGHT_UP {
            self.lagging = false;
            log::info!("the shard caught up: it takes new calls again");
        }
        if self.calls.poll_timeout().is_some_and(|t| t <= now) {
            self.with_calls(|c, ctx| c.handle_timeout(now, ctx));
        }
        if let Some(s) = self.signalling() {
            if s.sip_deadline().is_some_and(|t| t <= now) {
                s.endpoint_mut().handle_timeout(now);
            }
            s.hub.handle_timeout(now);
            if s.sip_ws.poll_timeout().is_some_and(|t| t <= now) {
                let (ws, mut ctx) = s.sip_ws();
                ws.handle_timeout(now, &mut ctx);
            }
            if s.workers_wait_until.is_some_and(|t| now >= t) {
                s.workers_wait_until = None;
                s.endpoint_mut().shutdown(now);
            }
        }
        self.settle(now);
    }

    /// When [`Gateway::handle_timeout`] is next due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let calls = self.calls.poll_timeout();
        let Some(s) = self.signalling() else {
            return calls;
        };
        [
            calls,
            s.sip_deadline(),
            s.hub.poll_timeout(),
            s.sip_ws.poll_timeout(),
            s.workers_wait_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// srgate is stopping: every call of this shard ends (BYEs and CANCELs go out, every
    /// user is told). Shard 0 tells the other shards to do the same and un-registers the
    /// proxy account once they did (or after [`WORKERS_STOP_WAIT`]); a worker reports
    /// [`ToControl::Stopped`] after its calls' last messages.
    pub fn shutdown(&mut self, now: Instant) {
        self.now = now;
        if self.stopping {
            return;
        }
        self.stopping = true;
        let ended = self.calls.count();
        self.with_calls(|c, ctx| c.end_all(now, ctx));
        // the BYEs and CANCELs first
        self.settle(now);
        match &mut self.role {
            Role::Control(s) => {
                if ended > 0 {
                    log::info!("shutdown: {ended} call(s) ended");
                }
                let shards = s.workers_lagging.len();
                for shard in 1..shards {
                    self.out
                        .push_back(Output::ToShard(shard, ToWorker::Shutdown));
                }
                if s.workers_running == 0 {
                    s.endpoint_mut().shutdown(now);
                } else {
                    s.workers_wait_until = Some(now + WORKERS_STOP_WAIT);
                }
            }
            Role::Worker { index, .. } => {
                let index = *index;
                self.out
                    .push_back(Output::ToControl(ToControl::Stopped(index)));
            }
        }
        self.settle(now);
    }

    /// Whether shutdown began (shard 0) or was asked for (workers: stop once the outputs
    /// are carried out).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Shard 0: the other shards stopped (or the wait for them ended) and the proxy
    /// account is un-registered (or never was).
    pub fn is_shutdown_complete(&self) -> bool {
        match &self.role {
            Role::Control(s) => {
                self.stopping && s.workers_wait_until.is_none() && s.endpoint.is_shutdown_complete()
            }
            Role::Worker { .. } => self.stopping,
        }
    }

    // ---- outputs ----

    /// The next thing for the shell to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next media datagram, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<MediaTransmit> {
        self.now = now;
        let t = self.calls.poll_transmit(now, buf);
        if t.is_none() {
            // what sending ended (a call whose socket failed) is settled too
            self.settle(now);
        }
        t
    }

    // ---- shard 0's routing ----

    /// Moves what the inputs produced to where it goes, until nothing is left: the
    /// endpoint's messages and the sessions' frames become outputs; endpoint events and
    /// user requests reach the shard of their call; the calls' records, route changes and
    /// messages reach the CDR, the router and the users. Each pass only empties queues,
    /// and what a pass queues anew (a call's BYE, a user's message) is the finite
    /// consequence of what it took, so the passes end.
    fn settle(&mut self, now: Instant) {
        loop {
            let moved = match self.role {
                Role::Control(_) => self.settle_control(now),
                Role::Worker { .. } => self.settle_worker(),
            };
            if !moved {
                return;
            }
        }
    }

    /// A worker's calls' SIP verbs, route changes, messages and records go to shard 0;
    /// nothing of them feeds back into this shard, so one pass settles it.
    fn settle_worker(&mut self) -> bool {
        let Role::Worker { index, sip } = &mut self.role else {
            return false;
        };
        let index = *index;
        let out = &mut self.out;
        let mut send = |m: ToControl| out.push_back(Output::ToControl(m));
        while let Some(command) = sip.pop() {
            send(ToControl::Sip(index, Box::new(command)));
        }
        while let Some(change) = self.calls.poll_route() {
            send(ToControl::Route(index, Box::new(change)));
        }
        while let Some(message) = self.calls.poll_message() {
            send(ToControl::Message(Box::new(message)));
        }
        while let Some(cdr) = self.calls.poll_cdr() {
            send(ToControl::Cdr(Box::new(cdr)));
        }
        while let Some(door) = self.calls.poll_door() {
            send(ToControl::Door(Box::new(door)));
        }
        false
    }

    fn settle_control(&mut self, now: Instant) -> bool {
        let mut moved = false;
        let mut events = Vec::new();
        let mut requests = Vec::new();
        let rest_calls = self.calls.rtmp_calls() as u64;
        {
            let Role::Control(s) = &mut self.role else {
                return false;
            };
            // REST calls count toward `[calls] max_calls` for the calls placed next too
            s.router.set_outside(rest_calls);
            while let Some(t) = s.endpoint.poll_transmit() {
                self.out.push_back(Output::Sip(t));
            }
            while let Some(event) = s.endpoint.poll_event() {
                match event {
                    Event::Registered { expires } => {
                        log::info!("proxy account registered (expires {expires} s)")
                    }
                    Event::RegistrationFailed { reason } => {
                        log::warn!("proxy account registration failed: {reason}")
                    }
                    Event::Unregistered => log::info!("proxy account un-registered"),
                    event => events.push(event),
                }
            }
            while let Some(o) = s.hub.poll_output() {
                match o {
                    // a SIP session's events become SIP
                    HubOutput::Send { session, text } if s.sip_ws.is_sip(session) => {
                        let (ws, mut ctx) = s.sip_ws();
                        ws.handle_event(session, &text, &mut ctx);
                    }
                    o => self.out.push_back(Output::Web(o)),
                }
            }
            while let Some(o) = s.sip_ws.poll_output() {
                self.out.push_back(Output::Web(o));
            }
            while let Some(request) = s.sip_ws.poll_request() {
                requests.push(request);
            }
            while let Some(request) = s.hub.poll_request() {
                if matches!(request, CallRequest::UserGone { .. }) {
                    self.out.push_back(Output::UserGone);
                }
                requests.push(request);
            }
            while let Some(cdr) = self.calls.poll_cdr() {
                self.out.push_back(Output::Cdr(Box::new(cdr)));
            }
            while let Some(door) = self.calls.poll_door() {
                self.out.push_back(Output::Door(Box::new(door)));
            }
            while let Some(rtmp) = self.calls.poll_rtmp_output() {
                self.out.push_back(Output::Rtmp(rtmp));
            }
            while let Some(hook) = self.calls.poll_rest_hook(now) {
                self.out.push_back(Output::RestHook(Box::new(hook)));
            }
            while let Some(change) = self.calls.poll_route() {
                s.router.apply(0, change);
            }
            while let Some((user, text)) = self.calls.poll_message() {
                s.hub.send_to_user(&user, text);
                moved = true;
            }
        }
        moved |= !events.is_empty() || !requests.is_empty();
        for event in events {
            self.route_sip_event(now, event);
        }
        for request in requests {
            self.route_request(now, request);
        }
        moved
    }

    /// Whether `shard` runs its timers late (it takes no new calls then).
    fn shard_lagging(own: bool, workers: &[bool]) -> impl Fn(usize) -> bool + '_ {
        move |shard| {
            if shard == 0 {
                own
            } else {
                workers.get(shard).copied().unwrap_or(false)
            }
        }
    }

    /// Hands a user's request to the shard that holds (or gets) the call.
    fn route_request(&mut self, now: Instant, request: CallRequest) {
        let own = self.lagging;
        let stopping = self.stopping;
        let Role::Control(s) = &mut self.role else {
            return;
        };
        if stopping
            && let CallRequest::Call {
                user,
                request: Request::Invite { id, .. },
            } = &request
        {
            // srgate is stopping: no new calls
            s.hub.refuse(user, Refused::Overloaded.refusal(id));
            return;
        }
        let route = s
            .router
            .route_request(&request, Self::shard_lagging(own, &s.workers_lagging));
        match route {
            Err(why) => {
                if let CallRequest::Call { user, request } = &request
                    && let Some(id) = request.id()
                {
                    s.hub.refuse(user, why.refusal(id));
                }
            }
            Ok(Route::All) => {
                if let CallRequest::UserGone { user } = &request {
                    for shard in 1..s.workers_lagging.len() {
                        let gone = CallRequest::UserGone { user: user.clone() };
                        self.out
                            .push_back(Output::ToShard(shard, ToWorker::Request(Box::new(gone))));
                    }
                }
                self.with_calls(|c, ctx| c.handle_request(now, request, ctx));
            }
            Ok(Route::Shard(0)) => self.with_calls(|c, ctx| c.handle_request(now, request, ctx)),
            Ok(Route::Shard(shard)) => self
                .out
                .push_back(Output::ToShard(shard, ToWorker::Request(Box::new(request)))),
        }
    }

    /// Hands an endpoint event about a call to the shard that holds (or gets) the call.
    fn route_sip_event(&mut self, now: Instant, event: Event) {
        let own = self.lagging;
        let stopping = self.stopping;
        let Role::Control(s) = &mut self.role else {
            return;
        };
        if stopping && let Event::IncomingCall { id, .. } = &event {
            // srgate is stopping: no new calls (503 with Retry-After)
            s.endpoint_mut().reject(now, *id, 503);
            return;
        }
        let mut event = event;
        if let Event::IncomingCall {
            app_user,
            sip_member,
            ..
        } = &mut event
            && *sip_member
            && s.sip_ws.is_registered(app_user)
        {
            // a ring group's `sip:` member registered over WebSocket is a browser: rung
            // as an app user
            *sip_member = false;
        }
        let online = matches!(&event, Event::IncomingCall { app_user, .. }
            if s.hub.is_online(app_user));
        let lagging = Self::shard_lagging(own, &s.workers_lagging);
        match s.router.route_sip_event(&event, online, lagging) {
            Err(why) => {
                if let Some(id) = event.call_id() {
                    // 503 goes out with Retry-After: the caller may try again soon
                    s.endpoint_mut().reject(now, id, why.sip_code());
                }
            }
            Ok(0) => self.with_calls(|c, ctx| c.handle_sip_event(now, event, ctx)),
            Ok(shard) => self
                .out
                .push_back(Output::ToShard(shard, ToWorker::Sip(Box::new(event)))),
        }
    }

    // ---- what the shell reports ----

    /// Whether the proxy account is registered (shard 0); `None` without one.
    pub fn registration(&self) -> Option<bool> {
        match &self.role {
            Role::Control(s) => s.endpoint.registration(),
            Role::Worker { .. } => None,
        }
    }

    /// SIP responses (received, sent) by class, 1xx to 6xx (shard 0).
    pub fn sip_responses_by_class(&self) -> ([u64; 6], [u64; 6]) {
        match &self.role {
            Role::Control(s) => s.endpoint.responses_by_class(),
            Role::Worker { .. } => ([0; 6], [0; 6]),
        }
    }

    /// Shard 0's signalling counters, named as `/metrics` shows them.
    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        let Role::Control(s) = &self.role else {
            return Vec::new();
        };
        let mut m = s.endpoint.metrics();
        m.push(("websocket_sessions", s.hub.session_count() as u64));
        m.push(("sip_websocket_sessions", s.sip_ws.session_count() as u64));
        m.push(("sip_websocket_malformed_total", s.sip_ws.malformed));
        m.push(("websocket_login_timeouts_total", s.hub.login_timeouts));
        m.push(("calls_refused_overload_total", s.router.refused_overload()));
        m
    }

    /// After a load went away: the tables of the calls, and on shard 0 the sessions',
    /// shrink to what is in use.
    pub fn shrink_calls(&mut self) {
        self.calls.shrink();
    }

    /// Relay arena memory a burst made resident and no longer needed (the shell gives
    /// its pages back).
    pub fn relay_arena_unneeded(&mut self) -> Option<&mut [u8]> {
        self.calls.relay_arena_unneeded()
    }

    pub fn shrink_sessions(&mut self) {
        if let Some(s) = self.signalling() {
            s.hub.shrink();
        }
    }
}

/// The browser sessions' frames go to the hub (shard 0; a worker has no sessions), and
/// what they cause is settled at once.
impl<P: RtpPorts> Sessions for Gateway<P> {
    fn open(&mut self, now: Instant, session: SessionId) {
        self.now = now;
        if let Some(s) = self.signalling() {
            s.hub.open(now, session);
            self.settle(now);
        }
    }

    fn open_sip(&mut self, now: Instant, session: SessionId, peer: SocketAddr) {
        self.now = now;
        if let Some(s) = self.signalling() {
            s.hub.open(now, session);
            s.sip_ws.open(session, peer);
            self.settle(now);
        }
    }

    fn handle_text(&mut self, now: Instant, unix_now: u64, session: SessionId, text: &str) {
        self.now = now;
        if let Some(s) = self.signalling() {
            if s.sip_ws.is_sip(session) {
                let (ws, mut ctx) = s.sip_ws();
                ws.handle_text(now, session, text, &mut ctx);
            } else {
                s.hub.handle_text(now, unix_now, session, text);
            }
            self.settle(now);
        }
    }

    fn frame_too_large(&mut self, session: SessionId) {
        let now = self.now;
        if let Some(s) = self.signalling() {
            if s.sip_ws.is_sip(session) {
                // a SIP message that large is not one srgate takes: dropped, counted
                s.sip_ws.malformed += 1;
                return;
            }
            s.hub.frame_too_large(session);
            self.settle(now);
        }
    }
}
