//! One shard's media sockets: its WebRTC UDP socket and (through the core's port pool,
//! [`RtpSockets`]) the RTP sockets of its SIP legs. Every shard has one; the datagrams
//! read here go to the shard's [`Gateway`], and what it has to send leaves here, in
//! batches. Packets of a call are read, handled and sent by the one thread that owns it.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use super::ice_tcp::IceTcp;
use super::rtp::RtpSockets;
use super::sys::{self, RecvBatch, SendBatch};
use crate::call::{Histogram, MediaSocket};
use crate::gateway::Gateway;

/// A shard's core, with the RTP sockets of its SIP legs as its port pool.
pub type Core = Gateway<RtpSockets>;

/// Media datagrams per recvmmsg: a slot holds any RTP packet (MTU-sized, with room to spare).
const MEDIA_BATCH: usize = 32;
const MEDIA_SLOT: usize = 2048;
/// Batches per wake-up: a flood cannot starve timers (a later wake-up continues).
const BATCHES_PER_WAKE: usize = 8;
/// Datagrams per recvmmsg on an RTP socket, and batches per socket per wake-up.
const RTP_BATCH: usize = 16;
const RTP_BATCHES_PER_WAKE: usize = 4;
/// Datagrams per sendmmsg on the WebRTC socket.
const SEND_BATCH: usize = 32;

/// What a shard publishes for `/health` and `/metrics` (written by its thread, read by
/// shard 0's API).
#[derive(Debug, Default)]
pub struct ShardStats {
    pub calls: AtomicU64,
    pub ended: AtomicU64,
    pub relayed: AtomicU64,
    pub transcoded: AtomicU64,
    pub invites_out: AtomicU64,
    pub invites_in: AtomicU64,
    pub ports_in_use: AtomicU64,
    pub ports_exhausted: AtomicU64,
    pub panicked: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub send_dropped: AtomicU64,
    pub relay_arena_full: AtomicU64,
    pub ice_failures: AtomicU64,
    pub dtls_failures: AtomicU64,
    pub ice_tcp_connections: AtomicU64,
    pub ice_tcp_refused: AtomicU64,
    /// The shard's loop runs its timers late ([`Gateway::lagging`]).
    pub lagging: AtomicBool,
    /// Times the shard started lagging.
    pub lag_episodes: AtomicU64,
    pub answer_time: HistogramCell,
    pub loss: HistogramCell,
    pub jitter: HistogramCell,
    pub rtt: HistogramCell,
}

impl ShardStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A [`Histogram`] a shard publishes for shard 0's API to read, whole (its buckets, count
/// and sum change together: a scrape never sees a bucket above `+Inf`). The lock is taken
/// once per turn of the shard's loop and by a scrape: never contended in practice.
#[derive(Debug, Default)]
pub struct HistogramCell(Mutex<Histogram>);

impl HistogramCell {
    fn store(&self, h: &Histogram) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = *h;
    }

    pub fn load(&self) -> Histogram {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct MediaPlane {
    udp: UdpSocket,
    batch: RecvBatch,
    /// The WebRTC socket's read budget ran out with datagrams left.
    pub pending: bool,
    /// What leaves by the WebRTC socket, sent in batches; datagrams for RTP sockets are
    /// written into its free slot and sent from there one by one.
    out: SendBatch,
    /// One receive batch for whichever RTP socket is being read.
    rtp_in: RecvBatch,
    /// RTP sockets with datagrams left after their read budget: read again at once.
    rtp_pending: Vec<u16>,
    packets_in: u64,
    packets_out: u64,
    send_dropped: u64,
    /// The most calls this shard held since its memory was last given back.
    peak_calls: usize,
    /// When the relay arena is next asked for memory a burst left resident.
    next_arena_check: Option<Instant>,
    /// ICE-TCP on the media port (`[webrtc] ice_tcp`).
    tcp: Option<IceTcp>,
    pub stats: Arc<ShardStats>,
}

/// When a shard that held at least this many calls has none left, its tables shrink and
/// the freed heap goes back to the kernel: memory returns to idle after a load.
const RECLAIM_AFTER_CALLS: usize = 16;

/// How often the relay arena is asked for memory a burst left resident (a burst's pages go
/// back between one and two of these after it).
const ARENA_CHECK: Duration = Duration::from_secs(5);

impl MediaPlane {
    /// `token`: the WebRTC socket's token in `registry`.
    pub fn new(
        mut udp: UdpSocket,
        registry: &Registry,
        token: Token,
        stats: Arc<ShardStats>,
    ) -> io::Result<Self> {
        registry.register(&mut udp, token, Interest::READABLE)?;
        Ok(MediaPlane {
            udp,
            batch: RecvBatch::new(MEDIA_BATCH, MEDIA_SLOT),
            pending: false,
            out: SendBatch::new(SEND_BATCH, MEDIA_SLOT),
            rtp_in: RecvBatch::new(RTP_BATCH, MEDIA_SLOT),
            rtp_pending: Vec::new(),
            packets_in: 0,
            packets_out: 0,
            send_dropped: 0,
            peak_calls: 0,
            next_arena_check: None,
            tcp: None,
            stats,
        })
    }

    /// Adds ICE-TCP: `tcp` listens on the media address.
    pub fn with_ice_tcp(mut self, tcp: IceTcp) -> Self {
        self.tcp = Some(tcp);
        self
    }

    /// Whether datagrams wait that the last wake-up left (the loop must not sleep).
    pub fn has_backlog(&self) -> bool {
        self.pending
            || !self.rtp_pending.is_empty()
            || self.tcp.as_ref().is_some_and(IceTcp::has_backlog)
    }

    /// When the media plane wants a turn of the loop without any readiness: ICE-TCP's
    /// sweep of connections nobody answered or that went idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tcp.as_ref().and_then(IceTcp::next_sweep)
    }

    /// The ICE-TCP listener is ready: connections come in.
    pub fn tcp_accept(&mut self, now: Instant) {
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.accept(now);
        }
    }

    /// ICE-TCP connection `index` is ready: its frames go to the core as datagrams.
    pub fn tcp_ready(&mut self, now: Instant, index: usize, core: &mut Core) {
        let Some(tcp) = self.tcp.as_mut() else {
            return;
        };
        let packets_in = &mut self.packets_in;
        tcp.ready(index, &mut |from, bytes| {
            *packets_in += 1;
            core.handle_datagram(now, from, bytes);
        });
    }

    /// Reads the WebRTC socket (up to its budget) and hands each datagram to the core.
    pub fn read_webrtc(&mut self, now: Instant, core: &mut Core) {
        self.pending = false;
        for _ in 0..BATCHES_PER_WAKE {
            match self.batch.recv(self.udp.as_raw_fd()) {
                Ok(_) => {
                    for i in 0..self.batch.len() {
                        let Some((Some(from), bytes, false)) = self.batch.get_mut(i) else {
                            continue;
                        };
                        self.packets_in += 1;
                        core.handle_datagram(now, from, bytes);
                    }
                    if self.batch.drained() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("media receive: {e}");
                    return;
                }
            }
        }
        self.pending = true;
    }

    /// Datagrams on a SIP leg's RTP or RTCP socket `port`.
    pub fn read_rtp(&mut self, now: Instant, port: u16, core: &mut Core) {
        // Bounded per wake so one socket cannot starve the others; edge-triggered, so a
        // socket with datagrams left is noted and read again on the next turn of the loop
        // (which then does not sleep).
        let mut drained = false;
        for _ in 0..RTP_BATCHES_PER_WAKE {
            let Some(fd) = core.ports().socket(port).map(|s| s.as_raw_fd()) else {
                return;
            };
            match self.rtp_in.recv(fd) {
                Ok(_) => {
                    for i in 0..self.rtp_in.len() {
                        let Some((Some(from), data, false)) = self.rtp_in.get(i) else {
                            continue;
                        };
                        self.packets_in += 1;
                        core.handle_rtp(now, port, from, data);
                    }
                    if self.rtp_in.drained() {
                        drained = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("RTP receive on {port}: {e}");
                    drained = true;
                    break;
                }
            }
        }
        if !drained && !self.rtp_pending.contains(&port) {
            self.rtp_pending.push(port);
        }
    }

    /// What the last wake-up left unread.
    pub fn read_backlog(&mut self, now: Instant, core: &mut Core) {
        if self.pending {
            self.read_webrtc(now, core);
        }
        if let Some(tcp) = self.tcp.as_mut() {
            let packets_in = &mut self.packets_in;
            tcp.read_backlog(now, &mut |from, bytes| {
                *packets_in += 1;
                core.handle_datagram(now, from, bytes);
            });
        }
        for port in std::mem::take(&mut self.rtp_pending) {
            self.read_rtp(now, port, core);
        }
    }

    /// Sends the core's media datagrams: toward browsers in `sendmmsg` batches.
    pub fn transmit(&mut self, now: Instant, core: &mut Core) {
        loop {
            if self.out.is_full() {
                self.flush_batch();
            }
            let Some(t) = core.poll_transmit(now, self.out.slot()) else {
                break;
            };
            match t.socket {
                // a browser connected over ICE-TCP: framed on its connection
                MediaSocket::WebRtc
                    if self.tcp.as_mut().is_some_and(|tcp| {
                        tcp.send(now, t.destination, &self.out.slot()[..t.len])
                    }) =>
                {
                    self.packets_out += 1;
                }
                MediaSocket::WebRtc => self.out.commit(t.destination, t.len),
                MediaSocket::Rtp(port) => {
                    let Some(socket) = core.ports().socket(port) else {
                        continue;
                    };
                    match socket.send_to(&self.out.slot()[..t.len], t.destination) {
                        Ok(_) => self.packets_out += 1,
                        Err(e) => {
                            self.send_dropped += 1;
                            log::debug!("RTP send to {}: {e}", t.destination);
                        }
                    }
                }
            }
        }
        self.flush_batch();
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.sweep(now);
        }
    }

    fn flush_batch(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let (sent, dropped) = self.out.flush(self.udp.as_raw_fd());
        self.packets_out += sent as u64;
        self.send_dropped += dropped as u64;
    }

    /// Gives memory back once the calls of a load are all gone (see
    /// [`RECLAIM_AFTER_CALLS`]), and every [`ARENA_CHECK`] the relay arena's pages a burst
    /// made resident and no wake-up since needed; called after every turn of the loop.
    pub fn reclaim(&mut self, now: Instant, core: &mut Core) {
        if self.next_arena_check.is_none_or(|t| now >= t) {
            self.next_arena_check = Some(now + ARENA_CHECK);
            if let Some(tail) = core.relay_arena_unneeded() {
                let bytes = sys::discard(tail);
                log::debug!("relay arena: {bytes} bytes a burst left resident given back");
            }
        }
        let calls = core.calls().count();
        self.peak_calls = self.peak_calls.max(calls);
        if calls == 0 && self.peak_calls >= RECLAIM_AFTER_CALLS {
            log::debug!(
                "the shard's {} calls are gone: shrinking its tables, returning free memory",
                self.peak_calls
            );
            self.peak_calls = 0;
            core.shrink_calls();
            self.rtp_pending.shrink_to_fit();
            sys::release_free_memory();
        }
    }

    /// Copies the counters into [`ShardStats`].
    pub fn publish(&self, core: &Core) {
        let s = &self.stats;
        let calls = core.calls();
        let m = calls.metrics();
        let set = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        set(&s.calls, calls.count() as u64);
        set(&s.ended, m.ended);
        set(&s.relayed, m.relayed);
        set(&s.transcoded, m.transcoded);
        set(&s.invites_out, m.sip_invites_out);
        set(&s.invites_in, m.sip_invites_in);
        set(&s.ports_in_use, core.ports().in_use() as u64);
        set(&s.ports_exhausted, m.rtp_ports_exhausted);
        set(&s.panicked, m.panicked);
        set(&s.packets_in, self.packets_in);
        set(&s.packets_out, self.packets_out);
        let tcp_dropped = self.tcp.as_ref().map_or(0, |t| t.dropped);
        set(&s.send_dropped, self.send_dropped + tcp_dropped);
        set(&s.relay_arena_full, m.relay_arena_full);
        set(&s.ice_failures, m.ice_failures);
        set(&s.dtls_failures, m.dtls_failures);
        if let Some(tcp) = self.tcp.as_ref() {
            set(&s.ice_tcp_connections, tcp.open() as u64);
            set(&s.ice_tcp_refused, tcp.refused);
        }
        set(&s.lag_episodes, core.lag_episodes());
        s.answer_time.store(&m.answer_time);
        s.loss.store(&m.loss);
        s.jitter.store(&m.jitter);
        s.rtt.store(&m.rtt);
        s.lagging.store(core.lagging(), Ordering::Relaxed);
    }
}
