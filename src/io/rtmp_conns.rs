//! The REST calls' RTMP connections on shard 0: the core's RTMP sessions
//! ([`crate::call::rtmp_call`]) ask for a connection to `host:port` (TLS for `rtmps://`);
//! this opens it and carries its bytes both ways.
//!
//! The name is resolved and the TCP connection opened by a short thread of its own
//! (blocking `getaddrinfo` and connect, at most [`CONNECT_LIMIT`]), so the shard never
//! waits on a slow DNS server or an unreachable host; the connected socket comes back
//! through a channel and the shard's waker. From then on the socket is non-blocking in
//! the shard's reactor: what the server sends goes to the core as it comes, what the core
//! queues is written as far as the socket takes it. TLS (`rtmps://`) checks the server's
//! certificate against the URL's host with the system's authorities or `[tls] ca`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream as StdTcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token, Waker};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::stream::Stream;
use crate::call::rtmp_call::RtmpOutput;

/// A connection attempt (resolving and connecting) gives up after this.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// The first connection's token.
pub const CONN_BASE: usize = 6 << 20;
/// Connections at once (one per REST call, and a closing one each).
const MAX_CONNS: usize = 2 * crate::call::rtmp_call::MAX_RTMP_CALLS;
/// Bytes read per readiness event of one connection (the rest on the next turn).
const READ_BUDGET: usize = 64 * 1024;

/// The core of shard 0, as these connections see it.
pub trait RtmpCore {
    fn rtmp_transmit(&self, conn: u64) -> Option<&[u8]>;
    fn rtmp_advance(&mut self, conn: u64, n: usize);
    fn rtmp_input(&mut self, now: Instant, conn: u64, bytes: &[u8]);
    fn rtmp_closed(&mut self, now: Instant, conn: u64, why: Option<String>);
}

struct Conn {
    id: u64,
    stream: Stream,
}

type Connected = (u64, Result<StdTcpStream, String>);

/// Shard 0's RTMP connections.
pub struct RtmpConns {
    registry: Registry,
    waker: Arc<Waker>,
    tls: Option<Arc<ClientConfig>>,
    /// Slot `i` is token `CONN_BASE + i`.
    slots: Vec<Option<Conn>>,
    /// Connections being opened by their thread: id → (host, TLS).
    opening: HashMap<u64, (String, bool)>,
    tx: Sender<Connected>,
    rx: Receiver<Connected>,
    buf: Box<[u8]>,
}

impl RtmpConns {
    /// `waker` wakes the shard's loop when a connection is open (or failed); `tls`: the
    /// client configuration for `rtmps://` (none: such URLs fail to connect).
    pub fn new(registry: Registry, waker: Arc<Waker>, tls: Option<Arc<ClientConfig>>) -> Self {
        let (tx, rx) = channel();
        RtmpConns {
            registry,
            waker,
            tls,
            slots: Vec::new(),
            opening: HashMap::new(),
            tx,
            rx,
            buf: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// The connection slot of token `t`, if it is one of these.
    pub fn slot_of(t: usize) -> Option<usize> {
        t.checked_sub(CONN_BASE).filter(|i| *i < MAX_CONNS)
    }

    /// Carries out one of the core's commands.
    pub fn command(&mut self, now: Instant, output: RtmpOutput, core: &mut dyn RtmpCore) {
        match output {
            RtmpOutput::Connect {
                conn,
                host,
                port,
                tls,
            } => {
                if self.opening.len() + self.open() >= MAX_CONNS {
                    core.rtmp_closed(now, conn, Some("too many RTMP connections".into()));
                    return;
                }
                self.opening.insert(conn, (host.clone(), tls));
                let tx = self.tx.clone();
                let waker = self.waker.clone();
                let spawned = std::thread::Builder::new()
                    .name("rtmp-connect".into())
                    .spawn(move || {
                        let result = connect(&host, port);
                        let _ = tx.send((conn, result));
                        let _ = waker.wake();
                    });
                if let Err(e) = spawned {
                    self.opening.remove(&conn);
                    core.rtmp_closed(now, conn, Some(format!("no thread to connect: {e}")));
                }
            }
            RtmpOutput::Close { conn } => {
                // one still being opened is dropped when its thread reports
                self.opening.remove(&conn);
                if let Some(slot) = self.slot_by_id(conn) {
                    self.drop_slot(slot);
                }
            }
        }
    }

    fn open(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn slot_by_id(&self, id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.id == id))
    }

    fn drop_slot(&mut self, slot: usize) {
        if let Some(mut c) = self.slots.get_mut(slot).and_then(Option::take) {
            let _ = self.registry.deregister(c.stream.tcp());
        }
    }

    /// Takes the connections their threads opened (the shard's waker fired).
    /// The waker of the shard's loop (shared with other helper threads).
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    pub fn connected(&mut self, now: Instant, core: &mut dyn RtmpCore) {
        while let Ok((id, result)) = self.rx.try_recv() {
            let Some((host, tls)) = self.opening.remove(&id) else {
                continue; // closed meanwhile: dropping the socket closes it
            };
            let stream = result.and_then(|tcp| self.stream(tcp, &host, tls));
            let mut stream = match stream {
                Ok(s) => s,
                Err(why) => {
                    core.rtmp_closed(now, id, Some(why));
                    continue;
                }
            };
            let slot = match self.slots.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.slots.push(None);
                    self.slots.len() - 1
                }
            };
            if let Err(e) = self.registry.register(
                stream.tcp(),
                Token(CONN_BASE + slot),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                core.rtmp_closed(now, id, Some(format!("register: {e}")));
                continue;
            }
            self.slots[slot] = Some(Conn { id, stream });
            self.flush_slot(now, slot, core);
        }
    }

    fn stream(&self, tcp: StdTcpStream, host: &str, tls: bool) -> Result<Stream, String> {
        tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let tcp = TcpStream::from_std(tcp);
        if !tls {
            return Ok(Stream::Plain(tcp));
        }
        let config = self
            .tls
            .as_ref()
            .ok_or("rtmps:// but no TLS client configuration")?;
        let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
        Stream::tls_client(tcp, config, name).map_err(|e| format!("TLS: {e}"))
    }

    /// Connection slot `slot` is ready: reads what came (to the core) and writes what waits.
    pub fn ready(&mut self, now: Instant, slot: usize, core: &mut dyn RtmpCore) {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let id = conn.id;
        let mut read = 0;
        let mut closed = None;
        while read < READ_BUDGET {
            match conn.stream.read(&mut self.buf) {
                Ok(0) => {
                    closed = Some(None);
                    break;
                }
                Ok(n) => {
                    read += n;
                    core.rtmp_input(now, id, &self.buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    closed = Some(Some(e.to_string()));
                    break;
                }
            }
        }
        if let Some(why) = closed {
            self.drop_slot(slot);
            core.rtmp_closed(now, id, why);
            return;
        }
        self.flush_slot(now, slot, core);
    }

    /// Writes what every connection has waiting (after each turn of the loop).
    pub fn flush(&mut self, now: Instant, core: &mut dyn RtmpCore) {
        for slot in 0..self.slots.len() {
            self.flush_slot(now, slot, core);
        }
    }

    fn flush_slot(&mut self, now: Instant, slot: usize, core: &mut dyn RtmpCore) {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let id = conn.id;
        let mut failed = None;
        // bounded: each pass writes some bytes or stops
        for _ in 0..64 {
            let Some(bytes) = core.rtmp_transmit(id) else {
                break;
            };
            match conn.stream.write(bytes) {
                Ok(0) => {
                    failed = Some("the connection took no bytes".to_owned());
                    break;
                }
                Ok(n) => core.rtmp_advance(id, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if failed.is_none()
            && conn.stream.tls_wants_write()
            && let Err(e) = conn.stream.push_tls()
            && e.kind() != io::ErrorKind::WouldBlock
        {
            failed = Some(e.to_string());
        }
        if let Some(why) = failed {
            self.drop_slot(slot);
            core.rtmp_closed(now, id, Some(why));
        }
    }
}

/// Resolves `host` and connects to the first address that answers (blocking: its own
/// thread), within [`CONNECT_LIMIT`] in all.
fn connect(host: &str, port: u16) -> Result<StdTcpStream, String> {
    let started = Instant::now();
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?;
    let mut last = format!("{host}: no address");
    for addr in addrs {
        let left = CONNECT_LIMIT.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        match StdTcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}
