//! Shards 1…N−1: each owns a share of the calls outright, with their WebRTC socket
//! (`[webrtc] udp` port + shard number) and their RTP sockets (a slice of `[media]
//! rtp_ports`), and runs their media on its own thread. Signalling stays on shard 0:
//! requests and SIP events of a call come in over a bounded channel (with a mio `Waker`),
//! and the call's SIP verbs, user messages, CDRs and route changes go back the same way.
//! Nothing on the packet path is shared between threads.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use super::ice_tcp::IceTcp;
use super::media::{Core, MediaPlane};
use super::rtp::RTP_TOKEN_BASE;
use crate::gateway::{Output, ToControl, ToWorker};

pub const WAKER: Token = Token(0);
pub const MEDIA_UDP: Token = Token(1);
pub const MEDIA_TCP: Token = Token(2);

/// Messages a channel holds; a full channel is a shard that cannot keep up (logged). The
/// channel's slots are allocated and touched up front, so messages are small (payloads
/// boxed): 4 096 slots cost ~100 KB per channel.
pub const CHANNEL: usize = 4096;

/// A worker shard as shard 0 sees it.
pub struct WorkerHandle {
    pub tx: SyncSender<ToWorker>,
    pub waker: Arc<Waker>,
    pub stats: Arc<super::media::ShardStats>,
    pub thread: std::thread::JoinHandle<()>,
}

impl WorkerHandle {
    /// Sends and wakes the shard. The message comes back when its channel is full or it is
    /// gone.
    pub fn send(&self, message: ToWorker) -> Result<(), ToWorker> {
        let result = match self.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(m)) => {
                log::error!("a shard's inbox is full: {m:?} not taken");
                Err(m)
            }
            Err(TrySendError::Disconnected(m)) => Err(m),
        };
        let _ = self.waker.wake();
        result
    }
}

pub struct Worker {
    pub index: usize,
    pub poll: Poll,
    pub core: Core,
    pub media: MediaPlane,
    pub inbox: Receiver<ToWorker>,
    pub outbox: SyncSender<ToControl>,
    pub control: Arc<Waker>,
}

impl Worker {
    /// The shard's loop: wait for readiness, a message or the next deadline; feed the
    /// datagrams and messages to the core and fire its timers; send what it produced.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let anchor = Instant::now();
        loop {
            let now = Instant::now();
            let timeout = if self.media.has_backlog() {
                Some(Duration::ZERO)
            } else {
                let core = self.core.poll_timeout();
                let media = self.media.poll_timeout();
                core.into_iter()
                    .chain(media)
                    .min()
                    .map(|t| super::sleep_until_grid(now, t, anchor))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                log::error!("shard {} poll failed: {e}; its calls end", self.index);
                self.core.shutdown(Instant::now());
                self.flush();
                return;
            }
            let now = Instant::now();
            self.media.read_backlog(now, &mut self.core);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    MEDIA_UDP => self.media.read_webrtc(now, &mut self.core),
                    MEDIA_TCP => self.media.tcp_accept(now),
                    Token(t) if IceTcp::conn_of(t).is_some() => {
                        if let Some(index) = IceTcp::conn_of(t) {
                            self.media.tcp_ready(now, index, &mut self.core);
                        }
                    }
                    Token(t) if t >= RTP_TOKEN_BASE => {
                        if let Ok(port) = u16::try_from(t - RTP_TOKEN_BASE) {
                            self.media.read_rtp(now, port, &mut self.core);
                        }
                    }
                    Token(_) => {}
                }
            }
            loop {
                match self.inbox.try_recv() {
                    Ok(message) => self.core.handle_from_control(now, message),
                    Err(TryRecvError::Empty) => break,
                    // shard 0 is gone: end the calls and stop
                    Err(TryRecvError::Disconnected) => {
                        self.core.shutdown(now);
                        break;
                    }
                }
            }
            self.core.handle_timeout(now);
            self.media.transmit(now, &mut self.core);
            self.flush();
            self.media.reclaim(now, &mut self.core);
            self.media.publish(&self.core);
            if self.core.is_stopping() {
                return;
            }
        }
    }

    /// Carries the core's messages (its calls' SIP verbs, user messages, records and
    /// route changes, its `Stopped`) to shard 0.
    fn flush(&mut self) {
        let mut any = false;
        while let Some(output) = self.core.poll_output() {
            let Output::ToControl(message) = output else {
                continue; // a worker's core only talks to shard 0
            };
            // Blocking sends: these must not be lost (a lost BYE leaves a call up), and
            // shard 0 drains its inbox on every turn of its loop.
            any |= self.outbox.send(message).is_ok();
        }
        if any {
            let _ = self.control.wake();
        }
    }
}
