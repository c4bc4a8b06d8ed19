//! Name lookups off the shard's thread, for the REST API's per-call SIP accounts whose
//! `sipOutboundProxy` (or `sipDomain`) is a host name: the system resolver blocks, so each
//! lookup runs on a short-lived thread of its own and its answer comes back over a channel,
//! waking the shard. At most [`MAX_IN_FLIGHT`] lookups run at once (a request beyond gets
//! 503); the API connection waiting for one is answered 504 when its time is up.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use mio::Waker;

/// Lookups running at once.
pub const MAX_IN_FLIGHT: usize = 8;

/// One lookup's answer: its key, the first address (IPv4 first), or why there is none.
pub type Answer = (u64, Result<SocketAddr, String>);

pub struct Resolver {
    waker: Arc<Waker>,
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    in_flight: usize,
}

impl Resolver {
    /// `waker` wakes the shard's loop when an answer is in.
    pub fn new(waker: Arc<Waker>) -> Resolver {
        let (tx, rx) = channel();
        Resolver {
            waker,
            tx,
            rx,
            in_flight: 0,
        }
    }

    /// Starts looking `host` up (answers carry `port`); false when [`MAX_IN_FLIGHT`]
    /// lookups are running or no thread could be started.
    pub fn lookup(&mut self, key: u64, host: &str, port: u16) -> bool {
        if self.in_flight >= MAX_IN_FLIGHT {
            return false;
        }
        let (tx, waker, host) = (self.tx.clone(), Arc::clone(&self.waker), host.to_owned());
        let started = std::thread::Builder::new()
            .name("srgate-dns".into())
            .spawn(move || {
                let answer = (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| e.to_string())
                    .and_then(|addrs| {
                        let addrs: Vec<SocketAddr> = addrs.collect();
                        addrs
                            .iter()
                            .find(|a| a.is_ipv4())
                            .or(addrs.first())
                            .copied()
                            .ok_or_else(|| "no address".to_string())
                    });
                // the shard may be gone (shutting down): nothing to tell then
                if tx.send((key, answer)).is_ok() {
                    let _ = waker.wake();
                }
            });
        if started.is_err() {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// The answers that came in since the last call.
    pub fn answers(&mut self) -> Vec<Answer> {
        let answers: Vec<Answer> = self.rx.try_iter().collect();
        self.in_flight = self.in_flight.saturating_sub(answers.len());
        answers
    }

    /// Whether a lookup is running (the caller then looks at [`Resolver::answers`] on
    /// wake-ups).
    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_resolve_off_the_thread_and_the_count_is_bounded() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(9)).unwrap());
        let mut r = Resolver::new(waker);
        assert!(r.lookup(1, "localhost", 5070));
        assert!(r.lookup(2, "name.invalid", 5070));
        for key in 3..=MAX_IN_FLIGHT as u64 {
            assert!(r.lookup(key, "127.0.0.1", 1));
        }
        assert!(!r.lookup(99, "localhost", 1), "one too many");
        let mut answers = Vec::new();
        // bounded: 200 × 50 ms
        for _ in 0..200 {
            answers.extend(r.answers());
            if answers.len() == MAX_IN_FLIGHT {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(answers.len(), MAX_IN_FLIGHT, "{answers:?}");
        assert!(!r.busy());
        let of = |k: u64| answers.iter().find(|(key, _)| *key == k).unwrap().1.clone();
        let local = of(1).expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 5070, "{local}");
        assert!(of(2).is_err(), ".invalid never resolves (RFC 6761)");
    }
}
