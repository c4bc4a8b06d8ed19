//! Shard threads and the control shard's event loop.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::api;
use super::media::{MediaPlane, ShardStats};
use super::rtp::{RTP_TOKEN_BASE, RtpSockets};
use super::sys::{self, RecvBatch};
use super::tcp::{Conn, ReadOutcome};
use super::web::{self, WebConn};
use super::worker::{self, ToControl, ToWorker, Worker, WorkerHandle};
use crate::call::link::{RouteChange, refusal_of};
use crate::call::{CallKey, Calls, CallsConfig, Cdr, MAX_CALLS_PER_USER, Rtm2SipRule};
use crate::config::Config;
use crate::signal::hub::{CallRequest, Hub, HubOutput, SessionId};
use crate::signal::protocol::{ErrorCode, Refusal, Request};
use crate::sip::endpoint::{Endpoint, EndpointConfig, Event, SipCallId, Transmit, Transport};

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
const WORKERS: Token = Token(7);
/// How long shard 0 waits for the other shards to end their calls at shutdown before the
/// proxy account un-registers anyway.
const WORKERS_STOP_WAIT: Duration = Duration::from_secs(1);
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
const API_MAX_CONNS: usize = 64;
/// An API client has this long to send its request and read the answer.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// After this many closed web connections (a flood that went away) the tables they grew
/// are shrunk and the freed heap goes back to the kernel, once no connection has closed
/// for [`RECLAIM_QUIET`] (the burst is over).
const RECLAIM_AFTER_CLOSES: u32 = 256;
const RECLAIM_QUIET: Duration = Duration::from_secs(1);

/// Runs `f` on shard 0's calls with their context: the SIP endpoint, the RTP sockets
/// and who is logged in (disjoint borrows of the shard's fields).
macro_rules! with_calls {
    ($s:ident, |$c:ident, $ctx:ident| $body:expr) => {
        $s.media.with_calls(
            &mut $s.endpoint,
            &|user: &str| $s.hub.is_online(user),
            |$c, $ctx| $body,
        )
    };
}

/// Why srgate could not run.
#[derive(Debug)]
pub struct RunError(String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

fn err(what: impl fmt::Display, e: io::Error) -> RunError {
    RunError(format!("{what}: {e}"))
}

/// Kernel buffer asked for a shard's WebRTC socket: ~20 000 packets, a 400 ms stall of the
/// shard at 50 000 packets a second.
const MEDIA_SOCKET_BUFFER: usize = 4 << 20;

/// Gives a shard's WebRTC socket (every call of the shard shares it) a large kernel buffer;
/// says when the system caps it far lower (`net.core.rmem_max`).
fn media_socket_buffers(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    match sys::set_socket_buffers(socket.as_raw_fd(), MEDIA_SOCKET_BUFFER) {
        // the kernel reports twice the data it holds
        Ok(granted) if granted < MEDIA_SOCKET_BUFFER / 2 => log::warn!(
            "the WebRTC socket's receive buffer is capped at {} KiB (asked {} KiB): a busy \
             shard may drop packets; raise net.core.rmem_max",
            granted / 2048,
            MEDIA_SOCKET_BUFFER / 1024
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot size the WebRTC socket's buffers: {e}"),
    }
}

/// Binds every socket (so a port in use fails before any thread starts), starts the
/// shards and runs the control shard on the calling thread until SIGINT/SIGTERM.
pub fn run(config: &Config) -> Result<(), RunError> {
    // Refuse what this build cannot do rather than fall back to something weaker: a
    // `sips:` registrar must never get plaintext.
    if config.sip.tls_listen.is_some() {
        return Err(RunError(
            "[sip] tls_listen: SIP over TLS is not available in this build yet; leave it empty"
                .into(),
        ));
    }
    if config
        .global
        .sip_svr
        .as_ref()
        .is_some_and(|s| s.transport == crate::config::Transport::Tls)
    {
        return Err(RunError(
            "[global] sip_svr: sips: (SIP over TLS) is not available in this build yet; use UDP or transport=tcp".into(),
        ));
    }
    if config.open_login_exposed() {
        return Err(RunError(
            "[auth] secret is empty on a web listener other hosts reach: set a secret, listen \
             on 127.0.0.1, or set [auth] open = 1"
                .into(),
        ));
    }
    // A call holds about three descriptors (its WebSocket, its RTP and RTCP sockets).
    let need = u64::from(config.calls.max_calls) * 3 + 64;
    match sys::raise_fd_limit() {
        Ok(limit) if limit < need => log::warn!(
            "open files are limited to {limit}, [calls] max_calls = {} needs about {need}: \
             calls will fail before max_calls; raise the hard limit (ulimit -Hn, systemd \
             LimitNOFILE=)",
            config.calls.max_calls
        ),
        Ok(limit) => log::info!("open files: up to {limit}"),
        Err(e) => log::warn!("cannot read or raise the limit of open files: {e}"),
    }
    let sip_udp = std::net::UdpSocket::bind(config.sip.listen)
        .map_err(|e| err(format_args!("[sip] listen {} (UDP)", config.sip.listen), e))?;
    let sip_tcp = std::net::TcpListener::bind(config.sip.listen)
        .map_err(|e| err(format_args!("[sip] listen {} (TCP)", config.sip.listen), e))?;
    let api_listener = match config.api.listen {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| err(format_args!("[api] listen {addr}"), e))?,
        ),
        None => None,
    };
    let web_tls = match (config.webrtc.tls_listen, &config.tls.cert, &config.tls.key) {
        (Some(addr), Some(cert), Some(key)) => {
            let tls = web::tls_config(cert, key).map_err(RunError)?;
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| err(format_args!("[webrtc] tls_listen {addr}"), e))?;
            l.set_nonblocking(true).map_err(|e| err("socket", e))?;
            Some((TcpListener::from_std(l), tls))
        }
        (Some(_), _, _) => {
            return Err(RunError(
                "[webrtc] tls_listen needs [tls] cert and key".into(),
            ));
        }
        _ => None,
    };
    let media_udp = std::net::UdpSocket::bind(config.webrtc.udp)
        .map_err(|e| err(format_args!("[webrtc] udp {}", config.webrtc.udp), e))?;
    media_udp
        .set_nonblocking(true)
        .map_err(|e| err("socket", e))?;
    media_socket_buffers(&media_udp);
    let web_listener = std::net::TcpListener::bind(config.webrtc.listen)
        .map_err(|e| err(format_args!("[webrtc] listen {}", config.webrtc.listen), e))?;
    web_listener
        .set_nonblocking(true)
        .map_err(|e| err("socket", e))?;
    for s in [sip_udp.set_nonblocking(true), sip_tcp.set_nonblocking(true)] {
        s.map_err(|e| err("socket", e))?;
    }
    if let Some(l) = &api_listener {
        l.set_nonblocking(true).map_err(|e| err("socket", e))?;
    }
    let local = sip_udp.local_addr().map_err(|e| err("socket", e))?;
    let advertised = advertised_addr(config, local);
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| RunError(format!("random seed: {e}")))?;
    let endpoint_config = EndpointConfig::from_config(config, advertised, seed);
    let shards = config.global.shards.max(1);
    // The other shards' WebRTC sockets (port + shard number), bound before any thread starts.
    let mut worker_sockets = Vec::new();
    for index in 1..shards {
        let base = config.webrtc.udp;
        let port = if base.port() == 0 {
            0
        } else {
            base.port().saturating_add(index as u16)
        };
        let addr = SocketAddr::new(base.ip(), port);
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|e| err(format_args!("[webrtc] udp {addr} (shard {index})"), e))?;
        socket.set_nonblocking(true).map_err(|e| err("socket", e))?;
        media_socket_buffers(&socket);
        worker_sockets.push(socket);
    }
    let advertise = |socket: &std::net::UdpSocket| -> Result<SocketAddr, RunError> {
        let local = socket.local_addr().map_err(|e| err("socket", e))?;
        Ok(if local.ip().is_unspecified() {
            SocketAddr::new(advertised.ip(), local.port())
        } else {
            local
        })
    };
    let certificate = crate::webrtc::cert::Certificate::generate()
        .map_err(|e| RunError(format!("DTLS certificate: {e:?}")))?;
    let dtls = crate::webrtc::dtls::DtlsContext::new(&certificate)
        .map_err(|e| RunError(format!("DTLS context: {e:?}")))?;
    let clock_anchor = (Instant::now(), unix_time_ms());
    let calls_config = |shard: usize, media_addr: SocketAddr| -> Result<CallsConfig, RunError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| RunError(format!("random seed: {e}")))?;
        Ok(CallsConfig {
            media_addr,
            codecs: config
                .media
                .codecs
                .iter()
                .filter_map(|c| {
                    crate::sdp::Codec::from_config_name(&format!("{c:?}").to_ascii_lowercase())
                })
                .collect(),
            opus_complexity: config.media.opus_complexity,
            rtp_ip: advertised.ip(),
            rtp_timeout: config.media.rtp_timeout,
            invitation_timeout: config.calls.invitation_timeout,
            rtm2sip: (config.rtm2sip.on && !config.standalone()).then(|| Rtm2SipRule {
                acc_rule: config.rtm2sip.acc_rule.clone(),
                allow_any: config.rtm2sip.allow_any,
            }),
            standalone: config.standalone(),
            anonymous_caller: config.proxy.rtm_account.clone(),
            app_display_name: config.rtm2sip.app_display_name,
            shard: shard as u16,
            max_calls: config.calls.max_calls as usize,
            seed,
            clock_anchor,
        })
    };
    let calls = Calls::new(calls_config(0, advertise(&media_udp)?)?, dtls.clone());
    let cdr = match &config.calls.cdr_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| err(format_args!("[calls] cdr_file {}", path.display()), e))?,
        ),
        None => None,
    };
    let rtp_bind_ip = if config.sip.listen.ip().is_unspecified() {
        config.sip.listen.ip()
    } else {
        advertised.ip()
    };

    let poll = Poll::new().map_err(|e| err("poll", e))?;
    let control_waker =
        Arc::new(Waker::new(poll.registry(), WORKERS).map_err(|e| err("waker", e))?);
    let (to_control, from_workers) = sync_channel(worker::CHANNEL);
    let mut workers = Vec::new();
    for (i, socket) in worker_sockets.into_iter().enumerate() {
        let index = i + 1;
        let cfg = calls_config(index, advertise(&socket)?)?;
        let dtls = dtls.clone();
        let worker_poll = Poll::new().map_err(|e| err("poll", e))?;
        let waker = Arc::new(
            Waker::new(worker_poll.registry(), worker::WAKER).map_err(|e| err("waker", e))?,
        );
        let stats = Arc::new(ShardStats::default());
        let (tx, inbox) = sync_channel(worker::CHANNEL);
        let registry = worker_poll
            .registry()
            .try_clone()
            .map_err(|e| err("poll", e))?;
        let mut port_seed = [0u8; 32];
        getrandom::getrandom(&mut port_seed).map_err(|e| RunError(format!("random seed: {e}")))?;
        let ports = rtp_share(&config.media.rtp_ports, shards, index);
        let outbox = to_control.clone();
        let control = control_waker.clone();
        let shard_stats = stats.clone();
        let thread = thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                let rtp = RtpSockets::new(registry, rtp_bind_ip, ports, port_seed);
                let calls = Calls::new(cfg, dtls);
                let media = match MediaPlane::new(
                    calls,
                    UdpSocket::from_std(socket),
                    rtp,
                    worker_poll.registry(),
                    worker::MEDIA_UDP,
                    shard_stats,
                ) {
                    Ok(m) => m,
                    Err(e) => {
                        log::error!("shard {index}: {e}");
                        let _ = outbox.send(ToControl::Stopped(index));
                        return;
                    }
                };
                Worker {
                    index,
                    poll: worker_poll,
                    media,
                    inbox,
                    outbox,
                    control,
                }
                .run();
            })
            .map_err(|e| err("thread", e))?;
        workers.push(WorkerHandle {
            tx,
            waker,
            stats,
            thread,
        });
    }
    drop(to_control);

    let mut control = ControlShard::new(
        poll,
        endpoint_config,
        UdpSocket::from_std(sip_udp),
        TcpListener::from_std(sip_tcp),
        api_listener.map(TcpListener::from_std),
        TcpListener::from_std(web_listener),
        Hub::new(config.auth.secret.expose()),
        web::WebPolicy {
            allowed_origins: config.webrtc.allowed_origins.clone(),
            // open login accepted because every web listener is on loopback
            loopback_host_only: config.auth.open_login() && !config.auth.open,
        },
        config.webrtc.max_conns_per_ip,
        (UdpSocket::from_std(media_udp), calls),
        web_tls,
        (rtp_bind_ip, rtp_share(&config.media.rtp_ports, shards, 0)),
        cdr,
        (workers, from_workers),
        config.calls.max_calls,
    )?;
    log::info!(
        "srgate {} ready: SIP on {} (UDP+TCP), advertised as {}, {} shard(s){}",
        env!("CARGO_PKG_VERSION"),
        local,
        advertised,
        config.global.shards.max(1),
        config
            .api
            .listen
            .map(|a| format!(", API on http://{a}"))
            .unwrap_or_default()
    );
    log::info!(
        "demo page and WebSocket on http://{}/ (/ws)",
        config.webrtc.listen
    );
    if config.auth.open_login() {
        if config.auth.open {
            log::warn!(
                "[auth] secret is empty and [auth] open = 1: anyone who reaches the web listener may log in as any user"
            );
        } else {
            log::warn!(
                "[auth] secret is empty: anyone on this machine may log in as any user (demo only; the web listener is on loopback)"
            );
        }
    }
    let result = control.run();
    // Shards still running (an error, or a shutdown that ran out of time) stop now: with
    // shard 0's end of their channels gone, a shard blocked on sending or waiting for
    // messages sees the disconnection and ends.
    let workers = std::mem::take(&mut control.workers);
    drop(control);
    for WorkerHandle {
        tx, waker, thread, ..
    } in workers
    {
        let _ = tx.try_send(ToWorker::Shutdown);
        drop(tx);
        let _ = waker.wake();
        let _ = thread.join();
    }
    result
}

/// Shard `index`'s slice of the RTP port range: contiguous even-aligned pairs, the slices
/// of all shards disjoint and covering the range.
fn rtp_share(
    range: &std::ops::RangeInclusive<u16>,
    shards: usize,
    index: usize,
) -> std::ops::RangeInclusive<u16> {
    let first = u32::from(*range.start()) + u32::from(*range.start()) % 2;
    let end = u32::from(*range.end());
    let pairs = if end > first {
        (end - first).div_ceil(2)
    } else {
        0
    };
    let shards = shards.max(1) as u32;
    let index = index as u32;
    let (per, extra) = (pairs / shards, pairs % shards);
    let begin = index * per + index.min(extra);
    let count = per + u32::from(index < extra);
    if count == 0 {
        return 0..=0; // no pair at all
    }
    let lo = first + 2 * begin;
    let hi = (lo + 2 * count - 1).min(65_535);
    (lo as u16)..=(hi as u16)
}

/// The address srgate puts in Via and Contact: `public_ip`, else the listen address,
/// else (listening on any address) the local address the kernel would use to reach
/// `sip_svr` (a UDP connect sends nothing), else loopback.
fn advertised_addr(config: &Config, local: SocketAddr) -> SocketAddr {
    if let Some(ip) = config.global.public_ip {
        return SocketAddr::new(ip, local.port());
    }
    if !local.ip().is_unspecified() {
        return local;
    }
    let probe = config
        .global
        .sip_svr
        .as_ref()
        .map(|s| s.addr)
        .and_then(|to| {
            let s = std::net::UdpSocket::bind((local.ip(), 0)).ok()?;
            s.connect(to).ok()?;
            s.local_addr().ok().map(|a| a.ip())
        });
    SocketAddr::new(
        probe.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        local.port(),
    )
}

/// Why a new call is not placed.
#[derive(Clone, Copy, Debug)]
enum Refused {
    /// `[calls] max_calls`, or the shard for the call cannot take it.
    Overloaded,
    /// The user has `MAX_CALLS_PER_USER` calls (some perhaps still being set up).
    UserLimit,
}

impl Refused {
    fn refusal(self, id: &str) -> Refusal {
        match self {
            Refused::Overloaded => Refusal::new(
                ErrorCode::Overloaded,
                "srgate cannot take more calls now; try again later",
                Some(id),
            ),
            Refused::UserLimit => Refusal::new(ErrorCode::BadRequest, "too many calls", Some(id)),
        }
    }

    fn sip_code(self) -> u16 {
        match self {
            Refused::Overloaded => 503,
            Refused::UserLimit => 486,
        }
    }
}

/// Where a user's calls are, and how many: routed and not yet set up (`pending`), and up
/// (`live`).
struct UserCalls {
    shard: usize,
    live: u32,
    pending: u32,
}

struct ApiConn {
    conn: Conn,
    answered: bool,
    /// From accept: a client trickling bytes cannot keep its slot (slowloris).
    since: Instant,
}

struct ControlShard {
    poll: Poll,
    endpoint: Endpoint,
    udp: UdpSocket,
    sip_listener: TcpListener,
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
    web_by_session: HashMap<SessionId, usize>,
    next_session: SessionId,
    web_policy: web::WebPolicy,
    /// The source key ([`web::source_key`]) of each web connection slot.
    web_sources: Vec<Option<IpAddr>>,
    /// Open web connections per source key.
    web_per_source: HashMap<IpAddr, u32>,
    /// `[webrtc] max_conns_per_ip`.
    web_per_source_max: u32,
    /// Web connections refused at accept (per-source or global cap).
    web_refused: u64,
    /// Web connections closed (and users gone after their grace) since memory was last
    /// reclaimed, and when the last of them went.
    web_closed_since_reclaim: u32,
    last_web_close: Instant,
    hub: Hub,
    /// Shard 0's own calls and media.
    media: MediaPlane,
    /// Shards 1…N−1, and what they send back.
    workers: Vec<WorkerHandle>,
    from_workers: Receiver<ToControl>,
    /// Which shard holds a call, by (user, call id) and by SIP call (absent: shard 0).
    app_routes: HashMap<CallKey, usize>,
    sip_routes: HashMap<SipCallId, usize>,
    /// Each user's calls live on one shard, so that per-user limits hold across shards.
    users_on: HashMap<String, UserCalls>,
    /// Calls on each shard, counting those on their way there (index: shard).
    shard_load: Vec<u64>,
    /// `[calls] max_calls`, and the calls refused for it or for a shard falling behind.
    max_calls: u64,
    refused_overload: u64,
    /// Worker shards that have not yet stopped, at shutdown; when the wait for them ends.
    workers_running: usize,
    /// Per worker shard: still running (one that stopped takes no calls).
    workers_up: Vec<bool>,
    workers_wait_until: Option<Instant>,
    cdr: Option<std::fs::File>,
    cdr_errors: u64,
    udp_pending: bool,
    shutdown_deadline: Option<Instant>,
    udp_send_dropped: u64,
    udp_truncated: u64,
    tcp_dropped: u64,
}

impl ControlShard {
    #[allow(clippy::too_many_arguments)] // each is one socket or piece the shard owns
    fn new(
        poll: Poll,
        config: EndpointConfig,
        mut udp: UdpSocket,
        mut sip_listener: TcpListener,
        mut api_listener: Option<TcpListener>,
        mut web_listener: TcpListener,
        hub: Hub,
        web_policy: web::WebPolicy,
        web_per_source_max: u32,
        (media_udp, calls): (UdpSocket, Calls),
        mut web_tls: Option<(TcpListener, std::sync::Arc<rustls::ServerConfig>)>,
        rtp: (IpAddr, std::ops::RangeInclusive<u16>),
        cdr: Option<std::fs::File>,
        (workers, from_workers): (Vec<WorkerHandle>, Receiver<ToControl>),
        max_calls: u32,
    ) -> Result<Self, RunError> {
        let registry = poll.registry();
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
            calls,
            media_udp,
            rtp,
            registry,
            MEDIA_UDP,
            Arc::new(ShardStats::default()),
        )
        .map_err(|e| err("register", e))?;
        let worker_count = workers.len();
        Ok(ControlShard {
            trusted_ip: config.server.as_ref().map(|s| s.addr.ip()),
            endpoint: Endpoint::new(config, Instant::now()),
            poll,
            udp,
            sip_listener,
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
            web_by_session: HashMap::new(),
            next_session: 0,
            web_policy,
            web_sources: Vec::new(),
            web_per_source: HashMap::new(),
            web_per_source_max,
            web_refused: 0,
            web_closed_since_reclaim: 0,
            last_web_close: Instant::now(),
            hub,
            media,
            workers,
            from_workers,
            app_routes: HashMap::new(),
            sip_routes: HashMap::new(),
            users_on: HashMap::new(),
            shard_load: vec![0; worker_count + 1],
            max_calls: u64::from(max_calls),
            refused_overload: 0,
            workers_running: worker_count,
            workers_up: vec![true; worker_count],
            workers_wait_until: None,
            cdr,
            cdr_errors: 0,
            udp_pending: false,
            shutdown_deadline: None,
            udp_send_dropped: 0,
            udp_truncated: 0,
            tcp_dropped: 0,
        })
    }

    fn run(&mut self) -> Result<(), RunError> {
        let mut events = Events::with_capacity(256);
        // The endpoint may want to send at once (the proxy account's first REGISTER).
        self.endpoint.handle_timeout(Instant::now());
        self.drain_endpoint(Instant::now());
        loop {
            let now = Instant::now();
            let timeout = if self.udp_pending || self.media.has_backlog() {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err("poll", e));
            }
            let now = Instant::now();
            if self.udp_pending {
                self.read_udp(now);
            }
            if self.media.has_backlog() {
                self.media
                    .read_backlog(now, &mut self.endpoint, &|u: &str| self.hub.is_online(u));
                self.after_media(now);
            }
            for event in events.iter() {
                match event.token() {
                    UDP => self.read_udp(now),
                    MEDIA_UDP => self.read_media(now),
                    SIP_TCP_LISTEN => self.accept_sip(now),
                    API_LISTEN => self.accept_api(now),
                    SIGNALS => self.on_signal(now),
                    WORKERS => {}
                    Token(t) if (SIP_CONN_BASE..API_CONN_BASE).contains(&t) => {
                        self.sip_conn_ready(now, t - SIP_CONN_BASE, event)
                    }
                    Token(t) if (API_CONN_BASE..WEB_CONN_BASE).contains(&t) => {
                        self.api_conn_ready(now, t - API_CONN_BASE)
                    }
                    WEB_LISTEN => self.accept_web(now, false),
                    WEB_TLS_LISTEN => self.accept_web(now, true),
                    Token(t) if t >= RTP_TOKEN_BASE => self.read_rtp(now, t - RTP_TOKEN_BASE),
                    Token(t) if t >= WEB_CONN_BASE => self.web_conn_ready(now, t - WEB_CONN_BASE),
                    Token(_) => {}
                }
            }
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            self.drain_endpoint(now);
            self.drain_workers(now);
            self.hub.handle_timeout(now);
            if self.media.timers_due(now) {
                with_calls!(self, |c, ctx| c.handle_timeout(now, ctx));
                self.drain_endpoint(now);
            }
            self.drain_hub(now);
            self.drain_calls(now);
            self.expire_connections(now);
            self.reclaim_memory(now);
            self.media.publish();
            if let Some(deadline) = self.shutdown_deadline {
                // The other shards' BYEs and CANCELs leave before the un-REGISTER.
                if let Some(until) = self.workers_wait_until
                    && (self.workers_running == 0 || now >= until)
                {
                    self.workers_wait_until = None;
                    self.endpoint.shutdown(now);
                    self.drain_endpoint(now);
                }
                if self.workers_wait_until.is_none() && self.endpoint.is_shutdown_complete() {
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
        let calls = self.media.calls.poll_timeout();
        let mut next = self.endpoint.poll_timeout();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(d) = self.shutdown_deadline {
            consider(d);
        }
        if let Some(d) = self.workers_wait_until {
            consider(d);
        }
        for c in self.api_conns.iter().flatten() {
            consider(c.since + API_TIMEOUT);
        }
        for c in self.sip_conns.iter().flatten() {
            consider(c.last_activity + SIP_TCP_IDLE);
        }
        for c in self.web_conns.iter().flatten() {
            consider(c.deadline());
        }
        if let Some(t) = self.hub.poll_timeout() {
            consider(t);
        }
        if self.web_closed_since_reclaim >= RECLAIM_AFTER_CLOSES {
            consider(self.last_web_close + RECLAIM_QUIET);
        }
        if let Some(t) = calls {
            consider(t);
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
            let ended = self.media.calls.count();
            with_calls!(self, |c, ctx| c.end_all(now, ctx));
            if ended > 0 {
                log::info!("shutdown: {ended} call(s) ended");
            }
            for w in &self.workers {
                w.send(ToWorker::Shutdown);
            }
            self.drain_endpoint(now);
            self.drain_calls(now);
            if self.workers.is_empty() {
                self.endpoint.shutdown(now);
            } else {
                self.workers_wait_until = Some(now + WORKERS_STOP_WAIT);
            }
        }
    }

    fn read_udp(&mut self, now: Instant) {
        self.udp_pending = false;
        for _ in 0..BATCHES_PER_WAKE {
            match self.batch.recv(self.udp.as_raw_fd()) {
                Ok(_) => {
                    for i in 0..self.batch.len() {
                        let Some((from, bytes, truncated)) = self.batch.get(i) else {
                            break;
                        };
                        let Some(from) = from else { continue };
                        if truncated {
                            self.udp_truncated += 1;
                            log::debug!(
                                "dropped a datagram from {from} larger than {UDP_SLOT} bytes"
                            );
                            continue;
                        }
                        self.endpoint
                            .handle_receive(now, Transport::Udp, from, bytes);
                    }
                    self.drain_endpoint(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP errors surface here on some kernels; they do not stop the socket.
                    log::debug!("UDP receive: {e}");
                    return;
                }
            }
        }
        // Budget used up: come back after the other sources had their turn.
        self.udp_pending = true;
    }

    fn drain_endpoint(&mut self, now: Instant) {
        // Bounded: the endpoint's queues are finite, but guard against a logic loop anyway.
        for _ in 0..100_000 {
            let Some(t) = self.endpoint.poll_transmit() else {
                break;
            };
            self.send(now, t);
        }
        let mut any_call_event = false;
        // Bounded like the transmits above.
        for _ in 0..100_000 {
            let Some(event) = self.endpoint.poll_event() else {
                break;
            };
            match event {
                Event::Registered { expires } => {
                    log::info!("proxy account registered (expires {expires} s)")
                }
                Event::RegistrationFailed { reason } => {
                    log::warn!("proxy account registration failed: {reason}")
                }
                Event::Unregistered => log::info!("proxy account un-registered"),
                event => {
                    self.route_sip_event(now, event);
                    // What the call layer asked of the endpoint goes out at once.
                    for _ in 0..10_000 {
                        let Some(t) = self.endpoint.poll_transmit() else {
                            break;
                        };
                        self.send(now, t);
                    }
                    any_call_event = true;
                }
            }
        }
        if any_call_event {
            self.drain_calls(now);
        }
    }

    fn send(&mut self, now: Instant, t: Transmit) {
        match t.transport {
            Transport::Udp => match self.udp.send_to(&t.payload, t.destination) {
                Ok(_) => {}
                Err(e) => {
                    // A full socket buffer drops the message; SIP retransmits over UDP.
                    self.udp_send_dropped += 1;
                    log::debug!("UDP send to {} failed: {e}", t.destination);
                }
            },
            Transport::Tcp | Transport::Tls => {
                let index = match self.sip_by_peer.get(&t.destination) {
                    Some(&i) => i,
                    None => match self.connect_sip(now, t.destination) {
                        Some(i) => i,
                        None => {
                            self.tcp_dropped += 1;
                            self.endpoint.handle_transport_error(
                                now,
                                Transport::Tcp,
                                t.destination,
                            );
                            return;
                        }
                    },
                };
                let Some(conn) = self.sip_conns.get_mut(index).and_then(Option::as_mut) else {
                    return;
                };
                if !conn.queue(&t.payload) {
                    log::warn!("SIP TCP peer {} does not read; closing", conn.peer);
                    self.close_sip(now, index);
                    return;
                }
                if !conn.connecting && conn.flush(now).is_err() {
                    self.close_sip(now, index);
                    return;
                }
                self.reregister_sip(index);
            }
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

    fn connect_sip(&mut self, now: Instant, to: SocketAddr) -> Option<usize> {
        let index = Self::free_slot(&mut self.sip_conns, SIP_TCP_MAX_CONNS)?;
        let mut stream = match TcpStream::connect(to) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("SIP TCP connect to {to}: {e}");
                return None;
            }
        };
        let token = Token(SIP_CONN_BASE + index);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("register: {e}");
            return None;
        }
        let mut conn = Conn::new(stream, to, now, SIP_TCP_READ_MAX, SIP_TCP_WRITE_MAX);
        conn.connecting = true;
        self.sip_conns[index] = Some(conn);
        self.sip_by_peer.insert(to, index);
        Some(index)
    }

    fn accept_sip(&mut self, now: Instant) {
        for _ in 0..256 {
            match self.sip_listener.accept() {
                Ok((mut stream, peer)) => {
                    let (open, from_same) = self
                        .sip_conns
                        .iter()
                        .flatten()
                        .fold((0, 0), |(open, same), c| {
                            (open + 1, same + usize::from(c.peer.ip() == peer.ip()))
                        });
                    if Some(peer.ip()) != self.trusted_ip && from_same >= SIP_TCP_PER_IP {
                        log::info!(
                            "SIP TCP connection from {peer} refused: {from_same} already open from it"
                        );
                        continue;
                    }
                    // Counted, not sized by the vector: a slot freed by srgate's own
                    // connection must not let accepted ones eat the reserve.
                    let index = if open < SIP_TCP_MAX_CONNS - SIP_TCP_RESERVED {
                        Self::free_slot(&mut self.sip_conns, SIP_TCP_MAX_CONNS)
                    } else {
                        None
                    };
                    let Some(index) = index else {
                        log::warn!("SIP TCP connection from {peer} refused: too many connections");
                        continue;
                    };
                    let token = Token(SIP_CONN_BASE + index);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.sip_conns[index] = Some(Conn::new(
                        stream,
                        peer,
                        now,
                        SIP_TCP_READ_MAX,
                        SIP_TCP_WRITE_MAX,
                    ));
                    self.sip_by_peer.insert(peer, index);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("SIP TCP accept: {e}");
                    return;
                }
            }
        }
    }

    fn sip_conn_ready(&mut self, now: Instant, index: usize, event: &mio::event::Event) {
        let Some(conn) = self.sip_conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if conn.connecting && (event.is_writable() || event.is_error()) {
            match conn.stream.take_error() {
                Ok(None) if conn.stream.peer_addr().is_ok() => conn.connecting = false,
                _ => {
                    log::warn!("SIP TCP connect to {} failed", conn.peer);
                    self.close_sip(now, index);
                    return;
                }
            }
        }
        if !conn.connecting && conn.flush(now).is_err() {
            self.close_sip(now, index);
            return;
        }
        // Read a share, hand every complete message to the endpoint (RFC 3261 §18.3
        // framing), and again, until the socket is empty: a burst larger than the buffer
        // is taken message by message instead of overflowing it. When this wake-up's
        // budget is spent, re-registering below re-arms the edge-triggered readiness, so
        // the rest comes with the next poll.
        let peer = conn.peer;
        let mut outcome = ReadOutcome::Open;
        let mut broken = false;
        for _ in 0..SIP_TCP_CHUNKS_PER_WAKE {
            outcome = if event.is_readable() {
                conn.read_available(now, SIP_TCP_CHUNK)
            } else {
                ReadOutcome::Open
            };
            let mut consumed = 0;
            loop {
                match crate::wire::sip::frame(&conn.rbuf[consumed..]) {
                    Ok(Some(crate::wire::sip::Frame::Keepalive(n))) => {
                        // RFC 5626 §4.4.1: a CRLFCRLF ping gets a CRLF pong.
                        if n >= 4 && !conn.queue(b"\r\n") {
                            broken = true;
                        }
                        consumed += n;
                    }
                    Ok(Some(crate::wire::sip::Frame::Message(n))) => {
                        self.endpoint.handle_receive(
                            now,
                            Transport::Tcp,
                            peer,
                            &conn.rbuf[consumed..consumed + n],
                        );
                        consumed += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        log::debug!("SIP TCP from {peer}: unframeable stream ({e:?}); closing");
                        broken = true;
                        break;
                    }
                }
            }
            conn.rbuf.drain(..consumed);
            if broken || outcome != ReadOutcome::More {
                break;
            }
        }
        if !broken && !conn.connecting && conn.flush(now).is_err() {
            broken = true;
        }
        if broken || !matches!(outcome, ReadOutcome::Open | ReadOutcome::More) {
            self.close_sip(now, index);
        } else {
            self.reregister_sip(index);
        }
        self.drain_endpoint(now);
    }

    fn reregister_sip(&mut self, index: usize) {
        if let Some(conn) = self.sip_conns.get_mut(index).and_then(Option::as_mut) {
            let interest = if conn.wants_write() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self.poll.registry().reregister(
                &mut conn.stream,
                Token(SIP_CONN_BASE + index),
                interest,
            );
        }
    }

    /// Closes SIP TCP connection `index`; what srgate sent on it and still waits an answer
    /// for (a REGISTER to sip_svr) fails now instead of at Timer F.
    fn close_sip(&mut self, now: Instant, index: usize) {
        if let Some(mut conn) = self.sip_conns.get_mut(index).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if self.sip_by_peer.get(&conn.peer) == Some(&index) {
                self.sip_by_peer.remove(&conn.peer);
            }
            self.endpoint
                .handle_transport_error(now, Transport::Tcp, conn.peer);
        }
    }

    fn accept_api(&mut self, now: Instant) {
        let Some(listener) = &self.api_listener else {
            return;
        };
        for _ in 0..64 {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let Some(index) = Self::free_slot(&mut self.api_conns, API_MAX_CONNS) else {
                        continue; // dropping the stream closes it
                    };
                    let token = Token(API_CONN_BASE + index);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        self.api_conns[index] = Some(ApiConn {
                            conn: Conn::new(stream, peer, now, api::MAX_REQUEST + 1, 1 << 20),
                            answered: false,
                            since: now,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn api_conn_ready(&mut self, now: Instant, index: usize) {
        let status = api::Status {
            calls: self.total_calls(),
            registered: self.endpoint.is_registered(),
            metrics: self.metrics(),
            per_shard: self.shard_metrics(),
        };
        let Some(api_conn) = self.api_conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let conn = &mut api_conn.conn;
        let mut close = false;
        if !api_conn.answered {
            let outcome = conn.read_available(now, usize::MAX);
            match api::respond(&conn.rbuf, &status) {
                Some(answer) => {
                    conn.queue(&answer);
                    api_conn.answered = true;
                }
                None => close = outcome != ReadOutcome::Open,
            }
        }
        if api_conn.answered {
            match conn.flush(now) {
                Ok(()) if conn.wbuf.is_empty() => close = true,
                Ok(()) => {
                    let _ = self.poll.registry().reregister(
                        &mut conn.stream,
                        Token(API_CONN_BASE + index),
                        Interest::WRITABLE,
                    );
                }
                Err(_) => close = true,
            }
        }
        if close {
            self.close_api(index);
        }
    }

    fn close_api(&mut self, index: usize) {
        if let Some(mut c) = self.api_conns.get_mut(index).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.conn.stream);
        }
    }

    fn expire_connections(&mut self, now: Instant) {
        for i in 0..self.api_conns.len() {
            if self.api_conns[i]
                .as_ref()
                .is_some_and(|c| now >= c.since + API_TIMEOUT)
            {
                self.close_api(i);
            }
        }
        for i in 0..self.web_conns.len() {
            if self.web_conns[i]
                .as_ref()
                .is_some_and(|c| now >= c.deadline())
            {
                // Service it once more: it pings, or times out and closes.
                self.web_conn_ready(now, i);
            }
        }
        for i in 0..self.sip_conns.len() {
            if self.sip_conns[i]
                .as_ref()
                .is_some_and(|c| now >= c.last_activity + SIP_TCP_IDLE)
            {
                self.close_sip(now, i);
            }
        }
    }

    fn accept_web(&mut self, now: Instant, tls: bool) {
        for _ in 0..256 {
            let accepted = match (&self.web_tls, tls) {
                (Some((listener, _)), true) => listener.accept(),
                (None, true) => return,
                (_, false) => self.web_listener.accept(),
            };
            match accepted {
                Ok((mut stream, peer)) => {
                    let source = web::source_key(peer.ip());
                    let from_source = self.web_per_source.get(&source).copied().unwrap_or(0);
                    if from_source >= self.web_per_source_max {
                        // Closed at once (dropping the stream): one host cannot take the
                        // slots of everybody else.
                        self.web_refused += 1;
                        log::debug!(
                            "web connection from {peer} refused: {from_source} already open from it"
                        );
                        continue;
                    }
                    let Some(index) = Self::free_slot(&mut self.web_conns, web::MAX_WEB_CONNS)
                    else {
                        self.web_refused += 1;
                        log::warn!("web connection from {peer} refused: too many connections");
                        continue;
                    };
                    let token = Token(WEB_CONN_BASE + index);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        let stream = match &self.web_tls {
                            Some((_, config)) if tls => match web::Stream::tls(stream, config) {
                                Some(s) => s,
                                None => continue,
                            },
                            _ => web::Stream::Plain(stream),
                        };
                        self.web_conns[index] = Some(WebConn::new(stream, peer, now));
                        if self.web_sources.len() <= index {
                            self.web_sources.resize(index + 1, None);
                        }
                        self.web_sources[index] = Some(source);
                        *self.web_per_source.entry(source).or_insert(0) += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("web accept: {e}");
                    return;
                }
            }
        }
    }

    fn web_conn_ready(&mut self, now: Instant, index: usize) {
        let unix_now = unix_time();
        let token = Token(WEB_CONN_BASE + index);
        let Some(conn) = self.web_conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let before = conn.session();
        let next = conn.service(
            now,
            unix_now,
            &mut self.hub,
            &mut self.next_session,
            &self.web_policy,
            self.poll.registry(),
            token,
        );
        if let (None, Some(session)) = (before, conn.session()) {
            self.web_by_session.insert(session, index);
        }
        if next == web::Next::Close {
            self.close_web(now, index);
        }
        self.drain_hub(now);
    }

    /// After a burst of closed web connections: shrinks the tables they grew and returns
    /// the freed heap to the kernel, so a flood that went away leaves no memory behind.
    fn reclaim_memory(&mut self, now: Instant) {
        if self.web_closed_since_reclaim < RECLAIM_AFTER_CLOSES
            || now < self.last_web_close + RECLAIM_QUIET
        {
            return;
        }
        log::debug!(
            "{} web connections or users gone: shrinking tables, returning free memory",
            self.web_closed_since_reclaim
        );
        self.web_closed_since_reclaim = 0;
        // trailing free slots hold no socket (tokens are slot indexes: only the tail goes)
        while self.web_conns.last().is_some_and(Option::is_none) {
            self.web_conns.pop();
        }
        self.web_sources.truncate(self.web_conns.len());
        if self.web_conns.len() * 4 < self.web_conns.capacity() {
            self.web_conns.shrink_to_fit();
            self.web_sources.shrink_to_fit();
        }
        self.web_per_source.shrink_to_fit();
        self.web_by_session.shrink_to_fit();
        self.hub.shrink();
        sys::release_free_memory();
    }

    fn close_web(&mut self, now: Instant, index: usize) {
        self.web_closed_since_reclaim = self.web_closed_since_reclaim.saturating_add(1);
        self.last_web_close = now;
        if let Some(source) = self.web_sources.get_mut(index).and_then(Option::take)
            && let std::collections::hash_map::Entry::Occupied(mut open) =
                self.web_per_source.entry(source)
        {
            *open.get_mut() -= 1;
            if *open.get() == 0 {
                open.remove();
            }
        }
        if let Some(mut conn) = self.web_conns.get_mut(index).and_then(Option::take) {
            if let Some(session) = conn.session() {
                self.web_by_session.remove(&session);
                self.hub.close(now, session);
            }
            if !matches!(conn, WebConn::Closed) {
                let _ = self.poll.registry().deregister(conn.stream_mut());
            }
        }
    }

    /// Delivers the hub's frames and closes, and hands its call requests to the call layer.
    fn drain_hub(&mut self, now: Instant) {
        for _ in 0..100_000 {
            let Some(out) = self.hub.poll_output() else {
                break;
            };
            match out {
                HubOutput::Send { session, text } => {
                    let Some(&index) = self.web_by_session.get(&session) else {
                        continue;
                    };
                    let ok = self.web_conns[index]
                        .as_mut()
                        .is_some_and(|c| c.send_text(text));
                    if !ok {
                        self.close_web(now, index);
                    }
                }
                HubOutput::Close { session } => {
                    if let Some(&index) = self.web_by_session.get(&session) {
                        if let Some(c) = self.web_conns[index].as_mut() {
                            c.close();
                        }
                        self.close_web(now, index);
                    }
                }
            }
        }
        let mut any = false;
        while let Some(request) = self.hub.poll_request() {
            if matches!(request, CallRequest::UserGone { .. }) {
                // the end of a user's grace frees its session memory: count it like a close
                self.web_closed_since_reclaim = self.web_closed_since_reclaim.saturating_add(1);
                self.last_web_close = now;
            }
            self.route_request(now, request);
            any = true;
        }
        if any {
            self.drain_endpoint(now);
            self.drain_calls(now);
        }
    }

    /// Datagrams on one of shard 0's RTP or RTCP sockets.
    fn read_rtp(&mut self, now: Instant, port: usize) {
        let Ok(port) = u16::try_from(port) else {
            return;
        };
        self.media
            .read_rtp(now, port, &mut self.endpoint, &|u: &str| {
                self.hub.is_online(u)
            });
        self.after_media(now);
    }

    /// Datagrams on shard 0's WebRTC socket.
    fn read_media(&mut self, now: Instant) {
        self.media
            .read_webrtc(now, &mut self.endpoint, &|u: &str| self.hub.is_online(u));
        self.after_media(now);
    }

    /// What media input made the endpoint and the calls want to send.
    fn after_media(&mut self, now: Instant) {
        self.drain_endpoint(now);
        self.drain_calls(now);
    }

    /// Sends shard 0's calls' datagrams and delivers their records and events.
    fn drain_calls(&mut self, now: Instant) {
        self.media.transmit(now);
        while let Some(cdr) = self.media.calls.poll_cdr() {
            self.write_cdr(&cdr);
        }
        while let Some(change) = self.media.calls.poll_route() {
            self.apply_route(0, change);
        }
        let mut sent = false;
        while let Some((user, text)) = self.media.calls.poll_message() {
            self.hub.send_to_user(&user, text);
            sent = true;
        }
        if sent {
            self.drain_hub(now);
        }
    }

    fn write_cdr(&mut self, cdr: &Cdr) {
        if let Some(file) = self.cdr.as_mut() {
            use std::io::Write;
            let mut line = cdr.to_line();
            line.push('\n');
            if let Err(e) = file.write_all(line.as_bytes()) {
                self.cdr_errors += 1;
                log::warn!("[calls] cdr_file: {e}");
            }
        }
    }

    /// Whether shard `shard` runs its timers late (it takes no new calls then).
    fn lagging(&self, shard: usize) -> bool {
        let stats = if shard == 0 {
            Some(&self.media.stats)
        } else {
            self.workers.get(shard - 1).map(|w| &w.stats)
        };
        stats.is_some_and(|s| s.lagging.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The shard for a new call of `user`: where the user's other calls are, else the one
    /// with the fewest calls (another than shard 0 on a tie: shard 0 also signals). The
    /// call counts there from now on. `None`: srgate is at `[calls] max_calls`, or that
    /// shard is falling behind; the call is refused and the calls up keep their media.
    fn place_call(&mut self, user: &str) -> Result<usize, Refused> {
        let shard = match self.users_on.get(user) {
            Some(u) if u.live + u.pending >= MAX_CALLS_PER_USER as u32 => {
                return Err(Refused::UserLimit);
            }
            Some(u) => u.shard,
            None => {
                let mut best = 0;
                for (i, &load) in self.shard_load.iter().enumerate().skip(1) {
                    if load <= self.shard_load[best] && self.shard_up(i) {
                        best = i;
                    }
                }
                best
            }
        };
        if !self.shard_up(shard) {
            self.refused_overload += 1;
            return Err(Refused::Overloaded);
        }
        if self.shard_load.iter().sum::<u64>() >= self.max_calls || self.lagging(shard) {
            self.refused_overload += 1;
            log::warn!(
                "new call of {} refused: {}",
                crate::pii::Pii(user),
                if self.lagging(shard) {
                    "its shard is falling behind"
                } else {
                    "[calls] max_calls reached"
                }
            );
            return Err(Refused::Overloaded);
        }
        let entry = self.users_on.entry(user.to_owned()).or_insert(UserCalls {
            shard,
            live: 0,
            pending: 0,
        });
        entry.pending += 1;
        if let Some(load) = self.shard_load.get_mut(shard) {
            *load += 1;
        }
        Ok(shard)
    }

    /// Whether shard `shard` runs (a worker that stopped takes no calls).
    fn shard_up(&self, shard: usize) -> bool {
        shard == 0 || self.workers_up.get(shard - 1).copied().unwrap_or(false)
    }

    /// Hands a message to worker `shard`; when it cannot take it (its inbox is full, or it
    /// stopped), the call placed there is taken back as if the shard had dropped it, and
    /// false is returned so the caller refuses it.
    fn send_to_worker(
        &mut self,
        shard: usize,
        message: ToWorker,
        placed: Option<RouteChange>,
    ) -> bool {
        let ok = self.workers.get(shard - 1).is_some_and(|w| w.send(message));
        if !ok {
            log::warn!("shard {shard} did not take a message");
            if let Some(change) = placed {
                self.apply_route(shard, change);
            }
        }
        ok
    }

    /// What a shard says about its calls: the routes and counts follow.
    fn apply_route(&mut self, shard: usize, change: RouteChange) {
        let (user, pending, live, gone) = match change {
            RouteChange::Added { key, sip } => {
                if shard != 0 {
                    if let Some(sip) = sip {
                        self.sip_routes.insert(sip, shard);
                    }
                    self.app_routes.insert(key.clone(), shard);
                }
                (key.0, -1, 1, false)
            }
            RouteChange::Removed { key, sip } => {
                self.forget_routes(shard, Some(&key), sip);
                (key.0, 0, -1, true)
            }
            RouteChange::Dropped { user, key, sip } => {
                self.forget_routes(shard, key.as_ref(), sip);
                (user, -1, 0, true)
            }
        };
        // counted where the user's calls are (an offline user's refused call is not)
        let Some(u) = self.users_on.get_mut(&user).filter(|u| u.shard == shard) else {
            return;
        };
        u.pending = u.pending.saturating_add_signed(pending);
        u.live = u.live.saturating_add_signed(live);
        if u.pending == 0 && u.live == 0 {
            self.users_on.remove(&user);
        }
        if gone && let Some(load) = self.shard_load.get_mut(shard) {
            *load = load.saturating_sub(1);
        }
    }

    fn forget_routes(&mut self, shard: usize, key: Option<&CallKey>, sip: Option<SipCallId>) {
        if let Some(key) = key
            && self.app_routes.get(key) == Some(&shard)
        {
            self.app_routes.remove(key);
        }
        if let Some(sip) = sip
            && self.sip_routes.get(&sip) == Some(&shard)
        {
            self.sip_routes.remove(&sip);
        }
    }

    /// Hands a user's request to the shard that holds (or gets) the call.
    fn route_request(&mut self, now: Instant, request: CallRequest) {
        let shard = match &request {
            CallRequest::UserGone { user } => {
                for w in &self.workers {
                    w.send(ToWorker::Request(Box::new(CallRequest::UserGone {
                        user: user.clone(),
                    })));
                }
                0
            }
            CallRequest::Call { user, request } => match request.id() {
                Some(id) => {
                    let key = (user.clone(), id.to_owned());
                    if matches!(request, Request::Invite { .. }) {
                        // every routed invite comes back as Added or Dropped
                        let shard = match self.place_call(user) {
                            Ok(shard) => shard,
                            Err(why) => {
                                let refusal = why.refusal(id);
                                let user = user.clone();
                                self.hub.refuse(&user, refusal);
                                self.drain_hub(now);
                                return;
                            }
                        };
                        if shard != 0 {
                            self.app_routes.insert(key, shard);
                        }
                        shard
                    } else {
                        // all of a user's calls are on one shard: while a route is being
                        // replaced (a call id used again), the user's shard is the answer
                        self.app_routes
                            .get(&key)
                            .or_else(|| self.users_on.get(user).map(|u| &u.shard))
                            .copied()
                            .unwrap_or(0)
                    }
                }
                None => 0,
            },
        };
        if shard != 0 {
            let placed = match &request {
                CallRequest::Call {
                    user,
                    request: Request::Invite { id, .. },
                } => Some((user.clone(), id.clone())),
                _ => None,
            };
            let dropped = placed.clone().map(|key| RouteChange::Dropped {
                user: key.0.clone(),
                key: Some(key),
                sip: None,
            });
            if !self.send_to_worker(shard, ToWorker::Request(Box::new(request)), dropped)
                && let Some((user, id)) = placed
            {
                self.hub.refuse(&user, Refused::Overloaded.refusal(&id));
                self.drain_hub(now);
            }
            return;
        }
        with_calls!(self, |c, ctx| c.handle_request(now, request, ctx));
        self.drain_endpoint(now);
    }

    /// Hands an endpoint event about a call to the shard that holds (or gets) the call.
    fn route_sip_event(&mut self, now: Instant, event: Event) {
        let shard = match (&event, event.call_id()) {
            // every routed incoming call comes back as Added or Dropped; one for a user
            // who is not logged in is refused on shard 0
            (Event::IncomingCall { app_user, .. }, Some(id)) => {
                let app_user = app_user.clone();
                let shard = if self.hub.is_online(&app_user) {
                    match self.place_call(&app_user) {
                        Ok(shard) => shard,
                        Err(why) => {
                            // 503 with Retry-After: the caller may try again soon
                            self.endpoint.reject(now, id, why.sip_code());
                            return;
                        }
                    }
                } else {
                    // refused on shard 0 (480); counted there unless the user's calls
                    // are elsewhere
                    if self.users_on.get(&app_user).is_none_or(|u| u.shard == 0) {
                        let u = self.users_on.entry(app_user).or_insert(UserCalls {
                            shard: 0,
                            live: 0,
                            pending: 0,
                        });
                        u.pending += 1;
                        self.shard_load[0] += 1;
                    }
                    0
                };
                if shard != 0 {
                    self.sip_routes.insert(id, shard);
                }
                shard
            }
            (_, Some(id)) => self.sip_routes.get(&id).copied().unwrap_or(0),
            (_, None) => 0,
        };
        if shard != 0 {
            let incoming = match &event {
                Event::IncomingCall { id, app_user, .. } => Some((*id, app_user.clone())),
                _ => None,
            };
            let dropped = incoming.clone().map(|(id, user)| RouteChange::Dropped {
                user,
                key: None,
                sip: Some(id),
            });
            if !self.send_to_worker(shard, ToWorker::Sip(Box::new(event)), dropped)
                && let Some((id, _)) = incoming
            {
                self.endpoint.reject(now, id, 503);
            }
            return;
        }
        with_calls!(self, |c, ctx| c.handle_sip_event(now, event, ctx));
    }

    /// What the worker shards sent: their calls' SIP verbs, messages, records and routes.
    fn drain_workers(&mut self, now: Instant) {
        let mut any_sip = false;
        let mut any_message = false;
        while let Ok(message) = self.from_workers.try_recv() {
            match message {
                ToControl::Sip(shard, command) => {
                    let command = *command;
                    if let crate::call::link::SipCommand::Start(call) = &command {
                        self.sip_routes.insert(call.id, shard);
                    }
                    if let Err((id, e)) = command.apply(now, &mut self.endpoint) {
                        // the shard learns it as the call's failure
                        let (code, reason) = refusal_of(&e);
                        log::info!("shard {shard}: SIP call not started ({e:?})");
                        if let Some(w) = self.workers.get(shard.wrapping_sub(1)) {
                            w.send(ToWorker::Sip(Box::new(Event::CallFailed {
                                id,
                                code,
                                reason: reason.to_owned(),
                            })));
                        }
                    }
                    any_sip = true;
                }
                ToControl::Message(message) => {
                    let (user, text) = *message;
                    self.hub.send_to_user(&user, text);
                    any_message = true;
                }
                ToControl::Cdr(cdr) => self.write_cdr(&cdr),
                ToControl::Route(shard, change) => self.apply_route(shard, *change),
                ToControl::Stopped(shard) => {
                    log::debug!("shard {shard} stopped");
                    if let Some(up) = self.workers_up.get_mut(shard.wrapping_sub(1)) {
                        *up = false;
                    }
                    self.workers_running = self.workers_running.saturating_sub(1);
                }
            }
        }
        if any_sip {
            self.drain_endpoint(now);
        }
        if any_message {
            self.drain_hub(now);
        }
    }

    /// Calls in progress on every shard.
    fn total_calls(&self) -> usize {
        self.media.calls.count()
            + self
                .workers
                .iter()
                .map(|w| ShardStats::get(&w.stats.calls) as usize)
                .sum::<usize>()
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
        let mut m = self.endpoint.metrics();
        m.push(("udp_send_dropped_total", self.udp_send_dropped));
        m.push(("udp_truncated_total", self.udp_truncated));
        m.push(("tcp_send_dropped_total", self.tcp_dropped));
        m.push(("websocket_sessions", self.hub.session_count() as u64));
        m.push((
            "web_connections",
            self.web_conns.iter().flatten().count() as u64,
        ));
        m.push(("web_connections_refused_total", self.web_refused));
        m.push(("websocket_login_timeouts_total", self.hub.login_timeouts));
        self.media.publish();
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
        m.push(("shards", shards.len() as u64));
        m.push(("calls_refused_overload_total", self.refused_overload));
        m.push(("shard_lag_episodes_total", sum(|s| &s.lag_episodes)));
        m.push(("cdr_write_errors_total", self.cdr_errors));
        m.push((
            "sip_tcp_connections",
            self.sip_conns.iter().flatten().count() as u64,
        ));
        m
    }
}

/// Milliseconds since the Unix epoch (CDR times, RTCP); 0 if the clock is before 1970.
fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (login token expiry); 0 if the clock is before 1970.
fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::rtp_share;

    #[test]
    fn rtp_shares_are_disjoint_even_pairs_covering_the_range() {
        for (range, shards) in [
            (16384..=32768u16, 2usize),
            (16385..=16400, 3),
            (30000..=30003, 4),
        ] {
            let mut ports = Vec::new();
            for i in 0..shards {
                let share = rtp_share(&range, shards, i);
                if share.end() <= share.start() {
                    continue; // no pair for this shard
                }
                assert!(share.start().is_multiple_of(2), "{share:?}");
                assert!(
                    range.contains(share.start()) && range.contains(share.end()),
                    "{share:?}"
                );
                ports.extend(share);
            }
            let mut sorted = ports.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                ports.len(),
                "shares overlap: {range:?} / {shards}"
            );
            let first = range.start() + range.start() % 2;
            let pairs = (range.end() - first).div_ceil(2) as usize;
            assert_eq!(ports.len(), 2 * pairs, "{range:?} / {shards}");
        }
    }
}
