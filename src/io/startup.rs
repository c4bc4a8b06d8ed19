//! Startup: checks the configuration against what this build can do, binds every socket
//! (so a port in use fails before any thread starts), starts the worker shards and runs
//! the control shard on the calling thread until SIGINT/SIGTERM. Also how the RTP port
//! range is shared between shards and which address srgate advertises.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::Instant;

use mio::net::{TcpListener, UdpSocket};
use mio::{Poll, Waker};

use super::cdr::CdrLog;
use super::control::{self, ControlShard};
use super::media::{MediaPlane, ShardStats};
use super::rtp::RtpSockets;
use super::sys;
use super::web;
use super::worker::{self, Worker, WorkerHandle};
use crate::call::{Calls, CallsConfig, Rtm2SipRule};
use crate::config::Config;
use crate::gateway::{Gateway, ToControl, ToWorker};
use crate::signal::hub::Hub;
use crate::signal::ice::IceServers;
use crate::sip::endpoint::EndpointConfig;

/// Why srgate could not run.
#[derive(Debug)]
pub struct RunError(pub(super) String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

pub(super) fn err(what: impl fmt::Display, e: io::Error) -> RunError {
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
            let tls = super::tls::server_config(cert, key).map_err(RunError)?;
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
    let sip_tls = sip_tls(config)?;
    let media_udp = std::net::UdpSocket::bind(config.webrtc.udp)
        .map_err(|e| err(format_args!("[webrtc] udp {}", config.webrtc.udp), e))?;
    media_udp
        .set_nonblocking(true)
        .map_err(|e| err("socket", e))?;
    media_socket_buffers(&media_udp);
    let media_tcp = ice_tcp_listener(config, &media_udp)?;
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
        let tcp = ice_tcp_listener(config, &socket)?;
        worker_sockets.push((socket, tcp));
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
    let rtp_bind_ip = if config.sip.listen.ip().is_unspecified() {
        config.sip.listen.ip()
    } else {
        advertised.ip()
    };
    let calls_config = |shard: usize, media_addr: SocketAddr| -> Result<CallsConfig, RunError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| RunError(format!("random seed: {e}")))?;
        Ok(CallsConfig {
            media_addr,
            ice_tcp: config.webrtc.ice_tcp,
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
            loop_ip: match rtp_bind_ip {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                ip => ip,
            },
            rtp_timeout: config.media.rtp_timeout,
            sip_srtp: config.media.sip_srtp,
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
            rest_hook: config.rest.hook_url.clone(),
            door: (!config.door.open_dtmf.is_empty()).then(|| crate::call::DoorOpening {
                sequence: config.door.open_dtmf.clone(),
                info: config.door.open_info,
            }),
            seed,
            clock_anchor,
        })
    };
    let calls = Calls::new(calls_config(0, advertise(&media_udp)?)?, dtls.clone());
    let cdr = match &config.calls.cdr_file {
        Some(path) => Some(
            CdrLog::open(
                path,
                config.calls.cdr_max_file_size_mb.saturating_mul(1 << 20),
                Instant::now(),
            )
            .map_err(|e| err(format_args!("[calls] cdr_file {}", path.display()), e))?,
        ),
        None => None,
    };
    let door_hook = match &config.door.open_hook {
        Some(url) => Some(
            super::hook::DoorHook::start(url.clone()).map_err(|e| err("door hook thread", e))?,
        ),
        None => None,
    };

    let poll = Poll::new().map_err(|e| err("poll", e))?;
    let control_waker =
        Arc::new(Waker::new(poll.registry(), control::WORKERS).map_err(|e| err("waker", e))?);
    let (to_control, from_workers) = sync_channel(worker::CHANNEL);
    let mut workers = Vec::new();
    for (i, (socket, tcp)) in worker_sockets.into_iter().enumerate() {
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
                let core = Gateway::worker(index, Calls::new(cfg, dtls), rtp, Instant::now());
                let media = MediaPlane::new(
                    UdpSocket::from_std(socket),
                    worker_poll.registry(),
                    worker::MEDIA_UDP,
                    shard_stats,
                )
                .and_then(|m| with_ice_tcp(m, tcp, worker_poll.registry(), worker::MEDIA_TCP));
                let media = match media {
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
                    core,
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
    // rtmps:// checks RTMP servers against the system's authorities or [tls] ca
    let rtmp_tls = super::tls::client_config(config.tls.ca.as_deref())
        .map_err(|e| log::warn!("RTMPS: no TLS client configuration ({e}): rtmps:// URLs fail"))
        .ok();
    let rtmp = super::rtmp_conns::RtmpConns::new(
        poll.registry().try_clone().map_err(|e| err("poll", e))?,
        control_waker.clone(),
        rtmp_tls,
    );

    let mut control = ControlShard::new(
        poll,
        endpoint_config,
        UdpSocket::from_std(sip_udp),
        TcpListener::from_std(sip_tcp),
        api_listener.map(TcpListener::from_std),
        TcpListener::from_std(web_listener),
        Hub::new(config.auth.secret.expose()).with_ice_servers(IceServers::new(
            &config.webrtc.ice_servers,
            config.webrtc.turn_secret.expose(),
            config.webrtc.turn_ttl,
        )),
        web::WebPolicy {
            allowed_origins: config.webrtc.allowed_origins.clone(),
            // open login accepted because every web listener is on loopback
            loopback_host_only: config.auth.open_login() && !config.auth.open,
        },
        config.webrtc.max_conns_per_ip,
        (UdpSocket::from_std(media_udp), media_tcp, calls),
        web_tls,
        (rtp_bind_ip, rtp_share(&config.media.rtp_ports, shards, 0)),
        (cdr, door_hook, rtmp, config.api.token.clone()),
        (workers, from_workers),
        config.calls.max_calls,
        sip_tls,
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
    let workers = control.into_workers();
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

/// `[webrtc] ice_tcp`'s listener, bound before the shard's loop starts.
pub(super) struct IceTcpListener {
    listener: std::net::TcpListener,
    /// `[webrtc] max_conns_per_ip`.
    max_per_ip: usize,
}

/// `[webrtc] ice_tcp`: a TCP listener on a shard's media address (same IP and port).
fn ice_tcp_listener(
    config: &Config,
    udp: &std::net::UdpSocket,
) -> Result<Option<IceTcpListener>, RunError> {
    if !config.webrtc.ice_tcp {
        return Ok(None);
    }
    let addr = udp.local_addr().map_err(|e| err("socket", e))?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        err(
            format_args!(
                "[webrtc] ice_tcp: TCP on the media address {addr} (ice_tcp = 0 turns it off)"
            ),
            e,
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| err("socket", e))?;
    Ok(Some(IceTcpListener {
        listener,
        max_per_ip: usize::try_from(config.webrtc.max_conns_per_ip).unwrap_or(usize::MAX),
    }))
}

/// The media plane with its ICE-TCP listener, when there is one.
pub(super) fn with_ice_tcp(
    media: MediaPlane,
    tcp: Option<IceTcpListener>,
    registry: &mio::Registry,
    token: mio::Token,
) -> std::io::Result<MediaPlane> {
    let Some(tcp) = tcp else {
        return Ok(media);
    };
    let tcp = super::ice_tcp::IceTcp::new(
        mio::net::TcpListener::from_std(tcp.listener),
        registry.try_clone()?,
        token,
        tcp.max_per_ip,
    )?;
    Ok(media.with_ice_tcp(tcp))
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
/// Milliseconds since the Unix epoch (CDR times, RTCP); 0 if the clock is before 1970.
fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `[sip] tls_listen` bound with its server configuration, and the client side toward
/// `sip_svr` when it is reached over TLS (its certificate checked against `[tls] ca` or
/// the system's bundle, and for the configured host name).
fn sip_tls(config: &Config) -> Result<control::SipTls, RunError> {
    let listener = match (config.sip.tls_listen, &config.tls.cert, &config.tls.key) {
        (Some(addr), Some(cert), Some(key)) => {
            let tls = super::tls::server_config(cert, key).map_err(RunError)?;
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| err(format_args!("[sip] tls_listen {addr}"), e))?;
            l.set_nonblocking(true).map_err(|e| err("socket", e))?;
            Some((TcpListener::from_std(l), tls))
        }
        (Some(_), _, _) => {
            return Err(RunError("[sip] tls_listen needs [tls] cert and key".into()));
        }
        _ => None,
    };
    let server = match &config.global.sip_svr {
        Some(svr) if svr.transport == crate::config::Transport::Tls => {
            let name = rustls::pki_types::ServerName::try_from(svr.host.clone()).map_err(|e| {
                RunError(format!(
                    "[global] sip_svr: {} cannot be checked against a certificate: {e}",
                    svr.host
                ))
            })?;
            let client = super::tls::client_config(config.tls.ca.as_deref()).map_err(RunError)?;
            Some((svr.addr, name, client))
        }
        _ => None,
    };
    Ok(control::SipTls { listener, server })
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
