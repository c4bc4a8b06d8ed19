//! Shard 0, the control shard: its event loop and its sockets.
//!
//! It owns the SIP transports (UDP, and TCP in `sip`), the web listener with the
//! browsers' WebSockets and the HTTP API (`web_conns`), shard 0's media sockets
//! ([`MediaPlane`]) and the channels to the other shards. Everything they carry goes to
//! shard 0's core, a [`Gateway`] with the signalling role (the SIP endpoint, the
//! sessions, the routing of calls to shards, its own share of the calls). One turn of the
//! loop: wait for readiness or the core's next deadline, feed every input to the core,
//! fire its timers, then [`ControlShard::carry_out`] sends what it produced.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket, UnixStream};
use mio::{Events, Interest, Poll, Token};

use super::cdr::CdrLog;
use super::hook::DoorHook;
use super::ice_tcp::IceTcp;
use super::media::{Core, HistogramCell, MediaPlane, ShardStats};
use super::rtmp_conns::{RtmpConns, RtmpCore};
use super::rtp::{RTP_TOKEN_BASE, RtpSockets};
use super::startup::{RunError, err};
use super::sys::RecvBatch;
use super::tcp::Conn;
use super::web::{self, WebConn};
use super::worker::WorkerHandle;
use crate::call::{
    ANSWER_TIME_BOUNDS, Calls, Cdr, Histogram, JITTER_BOUNDS, LOSS_BOUNDS, RTT_BOUNDS,
};
use crate::gateway::{Gateway, Output, ToControl};
use crate::signal::hub::{Hub, HubOutput, SessionId};
use crate::sip::endpoint::{Endpoint, EndpointConfig};

mod deadlines;
mod sip;
mod web_conns;

use deadlines::Deadlines;
pub(super) use sip::SipTls;

/// How long the proxy account gets to un-register on SIGINT/SIGTERM before srgate exits.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

const UDP: Token = Token(0);
const SIP_TCP_LISTEN: Token = Token(1);
const API_LISTEN: Token = Token(2);
const SIGNALS: Token = Token(3);
const WEB_LISTEN: Token = Token(4);
const MEDIA_UDP: Token = Token(5);
const WEB_TLS_LISTEN: Token = Token(6);
/// The other shards have news (their channel to shard 0).
pub(super) const WORKERS: Token = Token(7);
const SIP_TLS_LISTEN: Token = Token(8);
const MEDIA_TCP: Token = Token(9);
const WEB_CONN_BASE: usize = 3 << 20;
const SIP_CONN_BASE: usize = 1 << 20;
const API_CONN_BASE: usize = 2 << 20;

/// Datagrams per `recvmmsg` and batches per wake-up: a UDP flood cannot starve timers
/// or TCP (a later wake-up continues where this one stopped).
const RECV_BATCH: usize = 16;
const BATCHES_PER_WAKE: usize = 8;
/// A UDP SIP message is at most 65 535 bytes; a slot that size never cuts one.
const UDP_SLOT: usize = 65_536;
/// SIP over TCP: receive buffer cap (a message is ≤ 64 KiB; a few may queue) and send cap.
const SIP_TCP_READ_MAX: usize = 256 * 1024;
const SIP_TCP_WRITE_MAX: usize = 1024 * 1024;
const SIP_TCP_MAX_CONNS: usize = 4096;
/// SIP TCP connections one address may hold (sip_svr's is exempt), and the slots kept for
/// srgate's own connection to sip_svr: one host cannot take them all.
const SIP_TCP_PER_IP: usize = 32;
const SIP_TCP_RESERVED: usize = 16;
/// Bytes read from one SIP TCP connection before its messages are framed and handled,
/// and chunks per wake-up: a peer that keeps sending cannot starve timers and others.
const SIP_TCP_CHUNK: usize = 64 * 1024;
const SIP_TCP_CHUNKS_PER_WAKE: usize = 4;
/// An idle SIP TCP connection is closed after this long (RFC 5626 keepalives keep
/// a phone's connection busy well within it).
const SIP_TCP_IDLE: Duration = Duration::from_secs(900);
/// An accepted SIP TCP or TLS connection must deliver its first whole message within this
/// long (TLS handshake included), or it is closed.
const SIP_TCP_FIRST_MESSAGE: Duration = Duration::from_secs(10);
const API_MAX_CONNS: usize = 64;
/// An API client has this long to send its request and read the answer.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answered API connection waits for its client to close (see
/// `ApiConn::linger_until`).
const API_LINGER: Duration = Duration::from_secs(2);
/// What an answered API client may still send before its connection is closed anyway.
const API_LINGER_BYTES: usize = 1 << 20;
/// After this many closed web connections (a flood that went away) the tables they grew
/// are shrunk and the freed heap goes back to the kernel, once no connection has closed
/// for [`RECLAIM_QUIET`] (the burst is over).
const RECLAIM_AFTER_CLOSES: u32 = 256;
const RECLAIM_QUIET: Duration = Duration::from_secs(1);

struct ApiConn {
    conn: Conn,
    answered: bool,
    /// A REST request waiting for a name lookup (its key): answered when it comes.
    pending: Option<(u64, crate::rest::RestRequest)>,
    /// From accept: a client trickling bytes cannot keep its slot (slowloris).
    since: Instant,
    /// Answered and our side shut: until then, what the client still sends is read and
    /// dropped (closing with unread bytes would reset the connection, and the client
    /// could lose the answer), and its close ends the connection.
    linger_until: Option<Instant>,
    /// Bytes read and dropped while lingering.
    lingered: usize,
}

pub(super) struct ControlShard {
    poll: Poll,
    /// Shard 0's core: the signalling and its own share of the calls.
    core: Core,
    udp: UdpSocket,
    sip_listener: TcpListener,
    /// `[sip] tls_listen`, and sip_svr over TLS.
    sip_tls: SipTls,
    api_listener: Option<TcpListener>,
    signals: UnixStream,
    _signal_ids: Vec<signal_hook::SigId>,
    batch: RecvBatch,
    sip_conns: Vec<Option<Conn>>,
    sip_by_peer: HashMap<SocketAddr, usize>,
    /// sip_svr's address: exempt from the per-address connection cap.
    trusted_ip: Option<std::net::IpAddr>,
    api_conns: Vec<Option<ApiConn>>,
    web_listener: TcpListener,
    web_tls: Option<(TcpListener, std::sync::Arc<rustls::ServerConfig>)>,
    web_conns: Vec<Option<WebConn>>,
    /// When each kind of connection next needs a look (a ping, an idle or slow client).
    web_deadlines: Deadlines,
    sip_deadlines: Deadlines,
    api_deadlines: Deadlines,
    /// The slots due in one turn (kept to reuse its memory).
    due: Vec<usize>,
    /// SIP connections whose read budget ran out with bytes left: read again next turn.
    sip_pending: Vec<usize>,
    web_by_session: HashMap<SessionId, usize>,
    next_session: SessionId,
    web_policy: web::WebPolicy,
    /// The source key ([`web::source_key`]) of each web connection slot.
    web_sources: Vec<Option<IpAddr>>,
    /// Open web connections per source key.
    web_per_source: HashMap<IpAddr, u32>,
    /// New web connections per source key and in all, limited in rate.
    web_accepts: web::AcceptRate,
    /// `[webrtc] max_conns_per_ip`.
    web_per_source_max: u32,
    /// Web connections refused at accept (per-source or global cap).
    web_refused: u64,
    /// Web connections closed (and users gone after their grace) since memory was last
    /// reclaimed, and when the last of them went.
    web_closed_since_reclaim: u32,
    last_web_close: Instant,
    /// Shard 0's media sockets.
    media: MediaPlane,
    /// Shards 1…N−1, and what they send back.
    workers: Vec<WorkerHandle>,
    from_workers: Receiver<ToControl>,
    cdr: Option<CdrLog>,
    /// `[door] open_hook`'s thread.
    door_hook: Option<DoorHook>,
    /// The REST calls' RTMP connections.
    rtmp: RtmpConns,
    /// Name lookups of REST calls' per-call SIP accounts, and the next lookup's key.
    resolver: super::resolve::Resolver,
    next_lookup: u64,
    /// `[api] token`.
    api_token: crate::pii::Secret,
    /// The REST calls' hook posts (started with the first REST call that has a hook).
    rest_hooks: Option<super::hook::Poster>,
    udp_pending: bool,
    shutdown_deadline: Option<Instant>,
    udp_send_dropped: u64,
    udp_truncated: u64,
    tcp_dropped: u64,
}

impl ControlShard {
    #[allow(clippy::too_many_arguments)] // each is one socket or piece the shard owns
    pub(super) fn new(
        poll: Poll,
        config: EndpointConfig,
        mut udp: UdpSocket,
        mut sip_listener: TcpListener,
        mut api_listener: Option<TcpListener>,
        mut web_listener: TcpListener,
        hub: Hub,
        web_policy: web::WebPolicy,
        web_per_source_max: u32,
        (media_udp, media_tcp, calls): (UdpSocket, Option<super::startup::IceTcpListener>, Calls),
        mut web_tls: Option<(TcpListener, std::sync::Arc<rustls::ServerConfig>)>,
        rtp: (IpAddr, std::ops::RangeInclusive<u16>),
        (cdr, door_hook, rtmp, api_token): (
            Option<CdrLog>,
            Option<DoorHook>,
            RtmpConns,
            crate::pii::Secret,
        ),
        (workers, from_workers): (Vec<WorkerHandle>, Receiver<ToControl>),
        max_calls: u32,
        mut sip_tls: SipTls,
    ) -> Result<Self, RunError> {
        let registry = poll.registry();
        if let Some((l, _)) = &mut sip_tls.listener {
            registry
                .register(l, SIP_TLS_LISTEN, Interest::READABLE)
                .map_err(|e| err("register", e))?;
        }
        registry
            .register(&mut udp, UDP, Interest::READABLE)
            .map_err(|e| err("register", e))?;
        registry
            .register(&mut sip_listener, SIP_TCP_LISTEN, Interest::READABLE)
            .map_err(|e| err("register", e))?;
        if let Some(l) = &mut api_listener {
            registry
                .register(l, API_LISTEN, Interest::READABLE)
                .map_err(|e| err("register", e))?;
        }
        registry
            .register(&mut web_listener, WEB_LISTEN, Interest::READABLE)
            .map_err(|e| err("register", e))?;
        if let Some((l, _)) = &mut web_tls {
            registry
                .register(l, WEB_TLS_LISTEN, Interest::READABLE)
                .map_err(|e| err("register", e))?;
        }
        let (mut signals, writer) = UnixStream::pair().map_err(|e| err("signal pipe", e))?;
        let writer = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(writer));
        let mut ids = Vec::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let w = writer.try_clone().map_err(|e| err("signal pipe", e))?;
            ids.push(
                signal_hook::low_level::pipe::register(sig, w)
                    .map_err(|e| err("signal handler", e))?,
            );
        }
        registry
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| err("register", e))?;
        let mut port_seed = [0u8; 32];
        getrandom::getrandom(&mut port_seed).map_err(|e| RunError(format!("random seed: {e}")))?;
        let rtp = RtpSockets::new(
            registry.try_clone().map_err(|e| err("poll", e))?,
            rtp.0,
            rtp.1,
            port_seed,
        );
        let media = MediaPlane::new(
            media_udp,
            registry,
            MEDIA_UDP,
            Arc::new(ShardStats::default()),
        )
        .and_then(|m| super::startup::with_ice_tcp(m, media_tcp, registry, MEDIA_TCP))
        .map_err(|e| err("register", e))?;
        let now = Instant::now();
        let trusted_ip = config.server.as_ref().map(|s| s.addr.ip());
        let mut endpoint = Endpoint::new(config, now);
        endpoint.set_sip_codecs(calls.sip_codecs());
        let core = Gateway::control(calls, rtp, endpoint, hub, workers.len() + 1, max_calls, now);
        Ok(ControlShard {
            trusted_ip,
            core,
            poll,
            udp,
            sip_listener,
            sip_tls,
            api_listener,
            signals,
            _signal_ids: ids,
            batch: RecvBatch::new(RECV_BATCH, UDP_SLOT),
            sip_conns: Vec::new(),
            sip_by_peer: HashMap::new(),
            api_conns: Vec::new(),
            web_listener,
            web_tls,
            web_conns: Vec::new(),
            web_deadlines: Deadlines::default(),
            sip_deadlines: Deadlines::default(),
            api_deadlines: Deadlines::default(),
            due: Vec::new(),
            sip_pending: Vec::new(),
            web_by_session: HashMap::new(),
            next_session: 0,
            web_policy,
            web_sources: Vec::new(),
            web_per_source: HashMap::new(),
            web_accepts: web::AcceptRate::new(now, web_per_source_max),
            web_per_source_max,
            web_refused: 0,
            web_closed_since_reclaim: 0,
            last_web_close: now,
            media,
            workers,
            from_workers,
            cdr,
            door_hook,
            resolver: super::resolve::Resolver::new(rtmp.waker()),
            next_lookup: 0,
            rtmp,
            api_token,
            rest_hooks: None,
            udp_pending: false,
            shutdown_deadline: None,
            udp_send_dropped: 0,
            udp_truncated: 0,
            tcp_dropped: 0,
        })
    }

    pub(super) fn run(&mut self) -> Result<(), RunError> {
        let mut events = Events::with_capacity(256);
        // The endpoint may want to send at once (the proxy account's first REGISTER).
        let now = Instant::now();
        self.core.handle_timeout(now);
        self.carry_out(now);
        let anchor = now;
        loop {
            let now = Instant::now();
            let timeout =
                if self.udp_pending || self.media.has_backlog() || !self.sip_pending.is_empty() {
                    Some(Duration::ZERO)
                } else {
                    self.next_deadline()
                        .map(|d| super::sleep_until_grid(now, d, anchor))
                };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err("poll", e));
            }
            let now = Instant::now();
            for (shard, w) in self.workers.iter().enumerate() {
                let lagging = w.stats.lagging.load(std::sync::atomic::Ordering::Relaxed);
                self.core.set_shard_lagging(shard + 1, lagging);
            }
            if self.udp_pending {
                self.read_udp(now);
            }
            for index in std::mem::take(&mut self.sip_pending) {
                self.sip_conn_ready(now, index, (true, false, false));
            }
            if self.media.has_backlog() {
                self.media.read_backlog(now, &mut self.core);
            }
            for event in events.iter() {
                match event.token() {
                    UDP => self.read_udp(now),
                    MEDIA_UDP => self.media.read_webrtc(now, &mut self.core),
                    MEDIA_TCP => self.media.tcp_accept(now),
                    Token(t) if IceTcp::conn_of(t).is_some() => {
                        if let Some(index) = IceTcp::conn_of(t) {
                            self.media.tcp_ready(now, index, &mut self.core);
                        }
                    }
                    SIP_TCP_LISTEN => self.accept_sip(now, false),
                    SIP_TLS_LISTEN => self.accept_sip(now, true),
                    API_LISTEN => self.accept_api(now),
                    SIGNALS => self.on_signal(now),
                    // (also the RTMP connections' threads)
                    WORKERS => {
                        self.rtmp.connected(now, &mut self.core);
                        if self.resolver.busy() {
                            self.lookups_done(now);
                        }
                    }
                    Token(t) if RtmpConns::slot_of(t).is_some() => {
                        if let Some(slot) = RtmpConns::slot_of(t) {
                            self.rtmp.ready(now, slot, &mut self.core);
                        }
                    }
                    Token(t) if (SIP_CONN_BASE..API_CONN_BASE).contains(&t) => {
                        let ready = (event.is_readable(), event.is_writable(), event.is_error());
                        self.sip_conn_ready(now, t - SIP_CONN_BASE, ready)
                    }
                    Token(t) if (API_CONN_BASE..WEB_CONN_BASE).contains(&t) => {
                        self.api_conn_ready(now, t - API_CONN_BASE)
                    }
                    WEB_LISTEN => self.accept_web(now, false),
                    WEB_TLS_LISTEN => self.accept_web(now, true),
                    Token(t) if t >= RTP_TOKEN_BASE => {
                        if let Ok(port) = u16::try_from(t - RTP_TOKEN_BASE) {
                            self.media.read_rtp(now, port, &mut self.core);
                        }
                    }
                    Token(t) if t >= WEB_CONN_BASE => self.web_conn_ready(now, t - WEB_CONN_BASE),
                    Token(_) => {}
                }
            }
            while let Ok(message) = self.from_workers.try_recv() {
                self.core.handle_from_worker(now, message);
            }
            self.core.handle_timeout(now);
            self.expire_connections(now);
            self.carry_out(now);
            self.reclaim_memory(now);
            self.media.reclaim(now, &mut self.core);
            self.media.publish(&self.core);
            if let Some(deadline) = self.shutdown_deadline {
                if self.core.is_shutdown_complete() {
                    log::info!("shutdown complete");
                    return Ok(());
                }
                if now >= deadline {
                    log::warn!(
                        "shutdown: un-registering did not finish within {SHUTDOWN_GRACE:?}; exiting anyway"
                    );
                    return Ok(());
                }
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let mut next = self.core.poll_timeout();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(t) = self.media.poll_timeout() {
            consider(t);
        }
        if let Some(d) = self.shutdown_deadline {
            consider(d);
        }
        for d in [
            &self.api_deadlines,
            &self.sip_deadlines,
            &self.web_deadlines,
        ] {
            if let Some(t) = d.next() {
                consider(t);
            }
        }
        if self.web_closed_since_reclaim >= RECLAIM_AFTER_CLOSES {
            consider(self.last_web_close + RECLAIM_QUIET);
        }
        next
    }

    fn on_signal(&mut self, now: Instant) {
        let mut buf = [0u8; 64];
        while matches!(self.signals.read(&mut buf), Ok(n) if n > 0) {}
        if self.shutdown_deadline.is_none() {
            log::info!(
                "signal received: shutting down (un-registering, at most {SHUTDOWN_GRACE:?})"
            );
            self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
            // Calls end first: their BYEs and CANCELs leave before the un-REGISTER, and
            // every user is told. The other shards end theirs and say so.
            self.core.shutdown(now);
        }
    }

    fn free_slot<T>(slots: &mut Vec<Option<T>>, max: usize) -> Option<usize> {
        if let Some(i) = slots.iter().position(Option::is_none) {
            return Some(i);
        }
        if slots.len() < max {
            slots.push(None);
            return Some(slots.len() - 1);
        }
        None
    }

    /// Carries out what the core produced, until it has nothing left: shard 0's media
    /// datagrams sent in batches; SIP messages sent; frames delivered to the browsers'
    /// WebSockets; messages handed to the other shards; records written. What carrying
    /// out feeds back (a connection that failed, a shard that did not take a message) is
    /// fed to the core at once, and its consequences are carried out in the same call.
    fn carry_out(&mut self, now: Instant) {
        loop {
            self.media.transmit(now, &mut self.core);
            self.rtmp.flush(now, &mut self.core);
            let Some(output) = self.core.poll_output() else {
                return;
            };
            self.carry_out_one(now, output);
            while let Some(output) = self.core.poll_output() {
                self.carry_out_one(now, output);
            }
        }
    }

    fn carry_out_one(&mut self, now: Instant, output: Output) {
        match output {
            Output::Sip(t) => self.send(now, t),
            Output::Web(HubOutput::Send { session, text }) => self.deliver(now, session, text),
            Output::Web(HubOutput::Close { session }) => {
                if let Some(&index) = self.web_by_session.get(&session) {
                    if let Some(c) = self.web_conns[index].as_mut() {
                        c.close();
                    }
                    self.close_web(now, index);
                }
            }
            Output::ToShard(shard, message) => {
                let sent = match self.workers.get(shard.wrapping_sub(1)) {
                    Some(w) => w.send(message),
                    None => Err(message),
                };
                if let Err(message) = sent {
                    self.core.undelivered(now, shard, message);
                }
            }
            Output::Cdr(cdr) => self.write_cdr(now, &cdr),
            // (the door-open line itself is logged by the call layer)
            Output::Door(door) => {
                if let Some(hook) = &self.door_hook {
                    hook.send(&door, unix_time());
                }
            }
            Output::UserGone => {
                // the end of a user's grace frees its session memory: count it like a close
                self.web_closed_since_reclaim = self.web_closed_since_reclaim.saturating_add(1);
                self.last_web_close = now;
            }
            Output::Rtmp(command) => self.rtmp.command(now, command, &mut self.core),
            Output::RestHook(hook) => {
                let (url, body) = *hook;
                if self.rest_hooks.is_none() {
                    match super::hook::Poster::start("REST hook") {
                        Ok(poster) => self.rest_hooks = Some(poster),
                        Err(e) => log::warn!("REST hook: no thread ({e})"),
                    }
                }
                match &self.rest_hooks {
                    Some(poster) => poster.send(&url, body),
                    None => log::warn!("REST hook {url}: no thread to post it"),
                }
            }
            Output::ToControl(_) => {} // only worker shards' cores say this
        }
    }

    /// Queues a text frame on `session`'s WebSocket.
    fn deliver(&mut self, now: Instant, session: SessionId, text: String) {
        let Some(&index) = self.web_by_session.get(&session) else {
            return;
        };
        let Some(conn) = self.web_conns[index].as_mut() else {
            self.close_web(now, index);
            return;
        };
        let waiting = conn.interest().is_writable();
        if !conn.send_text(text) {
            self.close_web(now, index);
        } else if !waiting && conn.interest().is_writable() {
            // the socket took only part: be woken when it drains (only `service` re-arms
            // readiness otherwise, at the next read)
            let interest = conn.interest();
            let token = Token(WEB_CONN_BASE + index);
            let _ = self
                .poll
                .registry()
                .reregister(conn.stream_mut(), token, interest);
        }
    }

    /// The worker shards, for the caller to stop once this shard's loop has ended.
    pub(super) fn into_workers(mut self) -> Vec<WorkerHandle> {
        std::mem::take(&mut self.workers)
    }

    fn write_cdr(&mut self, now: Instant, cdr: &Cdr) {
        if let Some(file) = self.cdr.as_mut() {
            file.write(now, cdr);
        }
    }

    /// Calls in progress on every shard.
    fn total_calls(&self) -> usize {
        self.core.calls().count()
            + self
                .workers
                .iter()
                .map(|w| ShardStats::get(&w.stats.calls) as usize)
                .sum::<usize>()
    }

    /// The calls' histograms, all shards together.
    fn histograms(&self) -> Vec<(&'static str, &'static str, &'static [f64], Histogram)> {
        let shards =
            || std::iter::once(&*self.media.stats).chain(self.workers.iter().map(|w| &*w.stats));
        let sum = |f: fn(&ShardStats) -> &HistogramCell| {
            let mut total = Histogram::default();
            for s in shards() {
                total.merge(&f(s).load());
            }
            total
        };
        vec![
            (
                "call_answer_seconds",
                "bridged calls that were answered: seconds from the invitation to the answer",
                &ANSWER_TIME_BOUNDS,
                sum(|s| &s.answer_time),
            ),
            (
                "call_loss_ratio",
                "bridged calls whose media flowed: the share of packets lost on the way to srgate, worse leg",
                &LOSS_BOUNDS,
                sum(|s| &s.loss),
            ),
            (
                "call_jitter_seconds",
                "bridged calls whose media flowed: interarrival jitter at the end, worse leg",
                &JITTER_BOUNDS,
                sum(|s| &s.jitter),
            ),
            (
                "call_rtt_seconds",
                "bridged calls whose legs reported on srgate's stream: round-trip time, worse leg",
                &RTT_BOUNDS,
                sum(|s| &s.rtt),
            ),
        ]
    }

    /// Per shard, in shard order: calls, and media packets in and out.
    fn shard_metrics(&self) -> Vec<(&'static str, Vec<u64>)> {
        let shards: Vec<&ShardStats> = std::iter::once(&*self.media.stats)
            .chain(self.workers.iter().map(|w| &*w.stats))
            .collect();
        let column = |f: fn(&ShardStats) -> &std::sync::atomic::AtomicU64| {
            shards
                .iter()
                .map(|s| ShardStats::get(f(s)))
                .collect::<Vec<u64>>()
        };
        vec![
            ("shard_calls", column(|s| &s.calls)),
            ("shard_packets_received_total", column(|s| &s.packets_in)),
            ("shard_packets_sent_total", column(|s| &s.packets_out)),
        ]
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        // the endpoint's, the sessions' and the router's
        let mut m = self.core.metrics();
        m.push(("udp_send_dropped_total", self.udp_send_dropped));
        m.push(("udp_truncated_total", self.udp_truncated));
        m.push(("tcp_send_dropped_total", self.tcp_dropped));
        m.push((
            "web_connections",
            self.web_conns.iter().flatten().count() as u64,
        ));
        m.push(("web_connections_refused_total", self.web_refused));
        self.media.publish(&self.core);
        let shards: Vec<&ShardStats> = std::iter::once(&*self.media.stats)
            .chain(self.workers.iter().map(|w| &*w.stats))
            .collect();
        let sum = |f: fn(&ShardStats) -> &std::sync::atomic::AtomicU64| {
            shards.iter().map(|s| ShardStats::get(f(s))).sum::<u64>()
        };
        m.push(("calls", sum(|s| &s.calls)));
        m.push(("calls_ended_total", sum(|s| &s.ended)));
        m.push(("calls_relayed_total", sum(|s| &s.relayed)));
        m.push(("calls_transcoded_total", sum(|s| &s.transcoded)));
        m.push(("sip_invites_sent_total", sum(|s| &s.invites_out)));
        m.push(("sip_invites_received_total", sum(|s| &s.invites_in)));
        m.push(("rtp_ports_in_use", sum(|s| &s.ports_in_use)));
        m.push(("rtp_ports_exhausted_total", sum(|s| &s.ports_exhausted)));
        m.push(("calls_panicked_total", sum(|s| &s.panicked)));
        m.push(("media_send_dropped_total", sum(|s| &s.send_dropped)));
        m.push(("media_relay_arena_full_total", sum(|s| &s.relay_arena_full)));
        m.push(("webrtc_ice_failures_total", sum(|s| &s.ice_failures)));
        m.push(("webrtc_dtls_failures_total", sum(|s| &s.dtls_failures)));
        m.push(("ice_tcp_connections", sum(|s| &s.ice_tcp_connections)));
        m.push(("ice_tcp_refused_total", sum(|s| &s.ice_tcp_refused)));
        m.push(("shards", shards.len() as u64));
        m.push(("shard_lag_episodes_total", sum(|s| &s.lag_episodes)));
        let cdr = self.cdr.as_ref();
        m.push(("cdr_write_errors_total", cdr.map_or(0, CdrLog::errors)));
        m.push(("cdr_suppressed_total", cdr.map_or(0, CdrLog::suppressed)));
        m.push((
            "sip_tcp_connections",
            self.sip_conns.iter().flatten().count() as u64,
        ));
        m
    }
}

/// Seconds since the Unix epoch (login token expiry); 0 if the clock is before 1970.
fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RtmpCore for Core {
    fn rtmp_transmit(&self, conn: u64) -> Option<&[u8]> {
        Gateway::rtmp_transmit(self, conn)
    }
    fn rtmp_advance(&mut self, conn: u64, n: usize) {
        Gateway::rtmp_advance(self, conn, n)
    }
    fn rtmp_input(&mut self, now: Instant, conn: u64, bytes: &[u8]) {
        Gateway::rtmp_input(self, now, conn, bytes)
    }
    fn rtmp_closed(&mut self, now: Instant, conn: u64, why: Option<String>) {
        Gateway::rtmp_closed(self, now, conn, why)
    }
}
