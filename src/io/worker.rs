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

use super::media::MediaPlane;
use super::rtp::RTP_TOKEN_BASE;
use crate::call::Cdr;
use crate::call::link::{RouteChange, SipCommand, SipOutbox};
use crate::signal::hub::CallRequest;
use crate::sip::endpoint::Event;

pub const WAKER: Token = Token(0);
pub const MEDIA_UDP: Token = Token(1);

/// Messages a channel holds; a full channel is a shard that cannot keep up (logged). The
/// channel's slots are allocated and touched up front, so messages are small (payloads
/// boxed): 4 096 slots cost ~100 KB per channel.
pub const CHANNEL: usize = 4096;

/// From shard 0 to a worker shard.
#[derive(Debug)]
pub enum ToWorker {
    /// A request of a logged-in user about a call of this shard (or a new one).
    Request(Box<CallRequest>),
    /// A SIP event of one of this shard's calls.
    Sip(Box<Event>),
    /// srgate is stopping: end every call, report [`ToControl::Stopped`], exit.
    Shutdown,
}

/// From a worker shard to shard 0.
#[derive(Debug)]
pub enum ToControl {
    Sip(usize, Box<SipCommand>),
    /// A message for a user's WebSocket: (user, text).
    Message(Box<(String, String)>),
    Cdr(Box<Cdr>),
    Route(usize, Box<RouteChange>),
    /// The shard ended its calls and stopped.
    Stopped(usize),
}

/// A worker shard as shard 0 sees it.
pub struct WorkerHandle {
    pub tx: SyncSender<ToWorker>,
    pub waker: Arc<Waker>,
    pub stats: Arc<super::media::ShardStats>,
    pub thread: std::thread::JoinHandle<()>,
}

impl WorkerHandle {
    /// Sends and wakes the shard. False when its channel is full or it is gone.
    pub fn send(&self, message: ToWorker) -> bool {
        let ok = match self.tx.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(m)) => {
                log::error!("a shard's inbox is full: {m:?} dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        let _ = self.waker.wake();
        ok
    }
}

pub struct Worker {
    pub index: usize,
    pub poll: Poll,
    pub media: MediaPlane,
    pub inbox: Receiver<ToWorker>,
    pub outbox: SyncSender<ToControl>,
    pub control: Arc<Waker>,
}

impl Worker {
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut sip = SipOutbox::default();
        let always = |_: &str| true;
        let mut stopping = false;
        loop {
            let now = Instant::now();
            let timeout = if self.media.has_backlog() {
                Some(Duration::ZERO)
            } else {
                self.media
                    .calls
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                log::error!("shard {} poll failed: {e}; its calls end", self.index);
                let now = Instant::now();
                self.media
                    .with_calls(&mut sip, &always, |c, ctx| c.end_all(now, ctx));
                self.flush(&mut sip);
                let _ = self.outbox.send(ToControl::Stopped(self.index));
                let _ = self.control.wake();
                return;
            }
            let now = Instant::now();
            // Shard 0 decided the user may be called; it is online as far as we know.
            self.media.read_backlog(now, &mut sip, &always);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    MEDIA_UDP => self.media.read_webrtc(now, &mut sip, &always),
                    Token(t) if t >= RTP_TOKEN_BASE => {
                        if let Ok(port) = u16::try_from(t - RTP_TOKEN_BASE) {
                            self.media.read_rtp(now, port, &mut sip, &always);
                        }
                    }
                    Token(_) => {}
                }
            }
            loop {
                match self.inbox.try_recv() {
                    Ok(ToWorker::Request(r)) => {
                        self.media
                            .with_calls(&mut sip, &always, |c, ctx| c.handle_request(now, *r, ctx))
                    }
                    Ok(ToWorker::Sip(e)) => self
                        .media
                        .with_calls(&mut sip, &always, |c, ctx| c.handle_sip_event(now, *e, ctx)),
                    Ok(ToWorker::Shutdown) => {
                        self.media
                            .with_calls(&mut sip, &always, |c, ctx| c.end_all(now, ctx));
                        stopping = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.media
                            .with_calls(&mut sip, &always, |c, ctx| c.end_all(now, ctx));
                        stopping = true;
                        break;
                    }
                }
            }
            if self.media.timers_due(now) {
                self.media
                    .with_calls(&mut sip, &always, |c, ctx| c.handle_timeout(now, ctx));
            }
            self.media.transmit(now);
            self.flush(&mut sip);
            self.media.reclaim();
            self.media.publish();
            if stopping {
                let _ = self.outbox.send(ToControl::Stopped(self.index));
                let _ = self.control.wake();
                return;
            }
        }
    }

    /// Carries the calls' SIP verbs, messages, records and route changes to shard 0.
    fn flush(&mut self, sip: &mut SipOutbox) {
        let mut any = false;
        let index = self.index;
        // Blocking sends: these must not be lost (a lost BYE leaves a call up), and shard
        // 0 drains its inbox on every turn of its loop.
        while let Some(command) = sip.pop() {
            any |= self
                .outbox
                .send(ToControl::Sip(index, Box::new(command)))
                .is_ok();
        }
        while let Some(change) = self.media.calls.poll_route() {
            any |= self
                .outbox
                .send(ToControl::Route(index, Box::new(change)))
                .is_ok();
        }
        while let Some((user, text)) = self.media.calls.poll_message() {
            any |= self
                .outbox
                .send(ToControl::Message(Box::new((user, text))))
                .is_ok();
        }
        while let Some(cdr) = self.media.calls.poll_cdr() {
            any |= self.outbox.send(ToControl::Cdr(Box::new(cdr))).is_ok();
        }
        if any {
            let _ = self.control.wake();
        }
    }
}
