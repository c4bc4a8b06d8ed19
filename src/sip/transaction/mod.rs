//! RFC 3261 §17 transactions as sans-IO state machines, with RFC 6026's `Accepted` state
//! for INVITE transactions.
//!
//! - [`client::ClientTransaction`]: non-INVITE client (§17.1.2, Figure 6), timers E, F, K.
//! - [`client_invite::ClientInviteTransaction`]: INVITE client (§17.1.1, Figure 5; RFC 6026
//!   §7.2), timers A, B, D, M.
//! - [`server::ServerTransaction`]: non-INVITE server (§17.2.2, Figure 8), timer J.
//! - [`server_invite::ServerInviteTransaction`]: INVITE server (§17.2.1, Figure 7; RFC 6026
//!   §7.1), timers G, H, I, L.
//! - [`TransactionKey`]: matching of responses to client transactions (§17.1.3) and of
//!   requests to server transactions (§17.2.3).
//!
//! The machines never parse or build SIP: the caller (the endpoint) hands them the bytes to
//! send and the status codes it parsed. They follow the run-loop contract of the crate:
//! feed an input (`handle_response`, `handle_request_retransmission`, `send_response`,
//! `handle_ack`, `handle_timeout`, `handle_transport_error`), then drain
//! `poll_transmit()` (the bytes to send to the transaction's peer), `poll_event()` and ask
//! `poll_timeout()`. Drain after every input: each input makes at most one datagram due,
//! and a newer one replaces an undrained older one. A transaction may still have a datagram
//! to drain after it terminated (a final response over a reliable transport, an ACK);
//! drop it once [`Event::Terminated`] was seen and `poll_transmit` returns `None`.
//!
//! Retransmissions happen only over unreliable transports (`reliable = false`); over
//! TCP/TLS there are no timers A, E, G, and timers D, I, J, K are zero: the transaction
//! terminates at once.

pub mod client;
pub mod client_invite;
pub mod server;
pub mod server_invite;

pub use client::{ClientState, ClientTransaction};
pub use client_invite::{ClientInviteState, ClientInviteTransaction};
pub use server::{ServerState, ServerTransaction};
pub use server_invite::{ServerInviteState, ServerInviteTransaction};

use core::fmt;
use std::time::{Duration, Instant};

/// RTT estimate (§17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// Longest time a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);
/// INVITE transaction timeout (64·T1).
pub const TIMER_B: Duration = Duration::from_millis(64 * 500);
/// Wait for response retransmissions after a non-2xx final (INVITE client); zero over
/// reliable transports.
pub const TIMER_D: Duration = Duration::from_secs(32);
/// Non-INVITE transaction timeout (64·T1).
pub const TIMER_F: Duration = Duration::from_millis(64 * 500);
/// Wait for the ACK (INVITE server), 64·T1.
pub const TIMER_H: Duration = Duration::from_millis(64 * 500);
/// Wait for ACK retransmissions (INVITE server), T4; zero over reliable transports.
pub const TIMER_I: Duration = T4;
/// Wait for request retransmissions (non-INVITE server), 64·T1; zero over reliable.
pub const TIMER_J: Duration = Duration::from_millis(64 * 500);
/// Wait for response retransmissions (non-INVITE client), T4; zero over reliable.
pub const TIMER_K: Duration = T4;
/// RFC 6026: INVITE server stays `Accepted` (absorbing INVITE retransmissions), 64·T1.
pub const TIMER_L: Duration = Duration::from_millis(64 * 500);
/// RFC 6026: INVITE client stays `Accepted` (passing 2xx retransmissions up), 64·T1.
pub const TIMER_M: Duration = Duration::from_millis(64 * 500);

/// What a transaction tells its transaction user (TU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Client transactions: pass this response (status code) up to the TU. In the INVITE
    /// client's `Accepted` state, retransmitted 2xx come up too (the TU ACKs each).
    Response(u16),
    /// INVITE client: a 300–699 final response arrived; build the ACK for it (§17.1.1.3,
    /// from the INVITE and this response's `To`) and hand it to `send_ack`.
    NeedAck,
    /// INVITE server in `Accepted`: an ACK matched the transaction; pass it to the TU.
    Ack,
    /// Client: timer B or F fired, the TU treats it as a 408. INVITE server: timer H
    /// fired, the ACK never came.
    Timeout,
    /// The transport reported a failure (§17.1.4, §17.2.4).
    TransportError,
    /// The transaction reached `Terminated`; it is always the last event.
    Terminated,
}

/// A misuse of a transaction by its TU (never caused by network input alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionError {
    /// A status code outside 100–699.
    InvalidStatus(u16),
    /// Not allowed in the current state (e.g. a second final response, or a non-2xx
    /// after a 2xx).
    InvalidState,
    /// `send_ack` without a pending [`Event::NeedAck`].
    NoAckNeeded,
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::InvalidStatus(s) => write!(f, "status code {s} outside 100-699"),
            TransactionError::InvalidState => f.write_str("not allowed in the transaction state"),
            TransactionError::NoAckNeeded => f.write_str("no ACK is needed"),
        }
    }
}

impl std::error::Error for TransactionError {}

fn check_status(status: u16) -> Result<u16, TransactionError> {
    if (100..=699).contains(&status) {
        Ok(status)
    } else {
        Err(TransactionError::InvalidStatus(status))
    }
}

/// A timer that is zero over reliable transports.
fn unreliable_only(reliable: bool, d: Duration) -> Duration {
    if reliable { Duration::ZERO } else { d }
}

/// Whether an optional deadline is due at `now`.
fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

/// The earliest of several optional deadlines.
fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

const EVENTS: usize = 8;
/// Room kept for the events that must not be lost (a final response, NeedAck, Timeout,
/// TransportError, Terminated: at most four per transaction).
const RESERVED: usize = 4;

/// The events of one transaction; repeatable ones (provisional responses, 2xx
/// retransmissions, ACKs) are dropped when the TU does not drain, the others never are.
#[derive(Debug, Default)]
struct Events {
    queue: heapless::Deque<Event, EVENTS>,
}

impl Events {
    fn push(&mut self, event: Event) {
        // At most RESERVED of these per transaction, and repeatable ones leave them room.
        let _ = self.queue.push_back(event);
    }

    fn push_repeatable(&mut self, event: Event) {
        if self.queue.len() < EVENTS - RESERVED {
            let _ = self.queue.push_back(event);
        }
    }

    fn pop(&mut self) -> Option<Event> {
        self.queue.pop_front()
    }
}

/// RFC 3261 branch magic cookie (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";
/// Longest `branch` a [`TransactionKey`] holds.
pub const BRANCH_MAX: usize = 128;
/// Longest Via `sent-by` (host:port) a server [`TransactionKey`] holds: a 253-byte host
/// name, a colon and a port, or a bracketed IPv6 reference.
pub const SENT_BY_MAX: usize = 262;
/// Longest method a [`TransactionKey`] holds.
pub const METHOD_MAX: usize = 32;

/// Which side of a transaction a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Client transaction (§17.1.3).
    Client,
    /// Server transaction (§17.2.3).
    Server,
}

/// Why a [`TransactionKey`] could not be built; the endpoint drops such a message (or
/// answers 400 to a request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The top Via has no (or an empty) `branch`.
    EmptyBranch,
    /// The method is empty.
    EmptyMethod,
    /// `branch` longer than [`BRANCH_MAX`].
    BranchTooLong,
    /// `sent-by` longer than [`SENT_BY_MAX`].
    SentByTooLong,
    /// Method longer than [`METHOD_MAX`].
    MethodTooLong,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::EmptyBranch => "Via branch missing",
            KeyError::EmptyMethod => "method missing",
            KeyError::BranchTooLong => "Via branch too long",
            KeyError::SentByTooLong => "Via sent-by too long",
            KeyError::MethodTooLong => "method too long",
        })
    }
}

impl std::error::Error for KeyError {}

/// Identifies a transaction, owned and fixed-size (no allocation), usable as a map key.
///
/// - Client (§17.1.3): the `branch` of the top Via of the request and the CSeq method. A
///   response matches when its top Via `branch` and CSeq method build the same key.
/// - Server (§17.2.3): the `branch` and `sent-by` of the request's top Via and the method,
///   with `ACK` keyed as `INVITE` (it belongs to the INVITE transaction). `CANCEL` has its
///   own transaction; [`TransactionKey::cancelled_invite`] gives the INVITE it targets (§9.2).
///
/// Branches and methods compare exactly (retransmissions repeat them byte for byte);
/// `sent-by` ignores ASCII case (host names). A branch without [`MAGIC_COOKIE`] (an RFC 2543
/// peer) is keyed the same way, which matches its retransmissions but not the full §17.2.3
/// fallback rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    role: Role,
    branch: heapless::String<BRANCH_MAX>,
    sent_by: heapless::String<SENT_BY_MAX>,
    method: heapless::String<METHOD_MAX>,
}

impl TransactionKey {
    /// A client transaction key: top Via `branch` and CSeq `method`.
    pub fn client(branch: &str, method: &str) -> Result<Self, KeyError> {
        Self::build(Role::Client, branch, "", method)
    }

    /// A server transaction key: top Via `branch` and `sent_by` (`host[:port]` as written),
    /// and the request method (`ACK` becomes `INVITE`).
    pub fn server(branch: &str, sent_by: &str, method: &str) -> Result<Self, KeyError> {
        let method = if method == "ACK" { "INVITE" } else { method };
        Self::build(Role::Server, branch, sent_by, method)
    }

    fn build(role: Role, branch: &str, sent_by: &str, method: &str) -> Result<Self, KeyError> {
        if branch.is_empty() {
            return Err(KeyError::EmptyBranch);
        }
        if method.is_empty() {
            return Err(KeyError::EmptyMethod);
        }
        let mut key = TransactionKey {
            role,
            branch: heapless::String::new(),
            sent_by: heapless::String::new(),
            method: heapless::String::new(),
        };
        key.branch
            .push_str(branch)
            .map_err(|()| KeyError::BranchTooLong)?;
        key.method
            .push_str(method)
            .map_err(|()| KeyError::MethodTooLong)?;
        if sent_by.len() > SENT_BY_MAX {
            return Err(KeyError::SentByTooLong);
        }
        for c in sent_by.chars() {
            key.sent_by
                .push(c.to_ascii_lowercase())
                .map_err(|()| KeyError::SentByTooLong)?;
        }
        Ok(key)
    }

    /// For the key of a server `CANCEL` transaction: the key of the INVITE transaction it
    /// cancels (same branch and sent-by). `None` for any other key.
    pub fn cancelled_invite(&self) -> Option<Self> {
        if self.role != Role::Server || self.method != "CANCEL" {
            return None;
        }
        let mut key = self.clone();
        key.method.clear();
        // "INVITE" fits in METHOD_MAX.
        let _ = key.method.push_str("INVITE");
        Some(key)
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The Via `branch`.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The Via `sent-by`, lowercased (empty for client keys).
    pub fn sent_by(&self) -> &str {
        &self.sent_by
    }

    /// The method (`INVITE` for an ACK's server key).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether the branch carries the RFC 3261 magic cookie.
    pub fn is_rfc3261(&self) -> bool {
        self.branch.starts_with(MAGIC_COOKIE)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A simulated-clock driver shared by the machines' tests.
    use super::Event;
    use std::time::{Duration, Instant};

    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Instant {
        Instant::now()
    }

    /// The four verbs every machine has.
    pub trait Machine {
        fn poll_transmit(&mut self) -> Option<&[u8]>;
        fn poll_event(&mut self) -> Option<Event>;
        fn poll_timeout(&self) -> Option<Instant>;
        fn handle_timeout(&mut self, now: Instant);
    }

    /// What a machine did, with instants relative to `t0`.
    #[derive(Debug, Default)]
    pub struct Log {
        pub sends: Vec<(Duration, Vec<u8>)>,
        pub events: Vec<(Duration, Event)>,
        /// The instant of the last drain.
        pub now: Duration,
    }

    impl Log {
        pub fn send_times(&self) -> Vec<Duration> {
            self.sends.iter().map(|(t, _)| *t).collect()
        }
    }

    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drains transmits and events at `now`.
    pub fn drain(m: &mut impl Machine, t0: Instant, now: Instant, log: &mut Log) {
        log.now = now - t0;
        for _ in 0..16 {
            let Some(bytes) = m.poll_transmit() else {
                break;
            };
            log.sends.push((now - t0, bytes.to_vec()));
        }
        for _ in 0..16 {
            let Some(e) = m.poll_event() else {
                break;
            };
            log.events.push((now - t0, e));
        }
    }

    /// Drains at the last drain's instant, then fires every timer due up to `until`
    /// (inclusive), draining after each.
    pub fn run_until(m: &mut impl Machine, t0: Instant, until: Instant, log: &mut Log) {
        let now = t0 + log.now;
        drain(m, t0, now, log);
        for _ in 0..10_000 {
            match m.poll_timeout() {
                Some(t) if t <= until => {
                    m.handle_timeout(t);
                    drain(m, t0, t, log);
                }
                _ => return,
            }
        }
        panic!("timers never settled");
    }

    macro_rules! impl_machine {
        ($t:ty) => {
            impl $crate::sip::transaction::testing::Machine for $t {
                fn poll_transmit(&mut self) -> Option<&[u8]> {
                    <$t>::poll_transmit(self)
                }
                fn poll_event(&mut self) -> Option<$crate::sip::transaction::Event> {
                    <$t>::poll_event(self)
                }
                fn poll_timeout(&self) -> Option<std::time::Instant> {
                    <$t>::poll_timeout(self)
                }
                fn handle_timeout(&mut self, now: std::time::Instant) {
                    <$t>::handle_timeout(self, now)
                }
            }
        };
    }
    pub(crate) use impl_machine;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_values() {
        assert_eq!(TIMER_B, T1 * 64);
        assert_eq!(TIMER_B, Duration::from_secs(32));
        assert_eq!(TIMER_F, T1 * 64);
        assert_eq!(TIMER_H, T1 * 64);
        assert_eq!(TIMER_J, T1 * 64);
        assert_eq!(TIMER_L, T1 * 64);
        assert_eq!(TIMER_M, T1 * 64);
        assert_eq!(TIMER_D, Duration::from_secs(32));
        assert_eq!(TIMER_I, T4);
        assert_eq!(TIMER_K, T4);
        assert_eq!(unreliable_only(true, TIMER_D), Duration::ZERO);
        assert_eq!(unreliable_only(false, TIMER_D), TIMER_D);
    }

    #[test]
    fn client_keys_match_responses_by_branch_and_cseq_method() {
        let req = TransactionKey::client("z9hG4bK776asdhds", "INVITE").unwrap();
        let resp = TransactionKey::client("z9hG4bK776asdhds", "INVITE").unwrap();
        assert_eq!(req, resp);
        assert!(req.is_rfc3261());
        assert_eq!(req.role(), Role::Client);
        // A CANCEL with the same branch is another transaction.
        assert_ne!(
            req,
            TransactionKey::client("z9hG4bK776asdhds", "CANCEL").unwrap()
        );
        assert_ne!(
            req,
            TransactionKey::client("z9hG4bK776asdhdS", "INVITE").unwrap()
        );
        assert_eq!(req.sent_by(), "");
    }

    #[test]
    fn server_keys_put_ack_with_invite_and_cancel_apart() {
        let invite = TransactionKey::server("z9hG4bKx", "Host.Example:5060", "INVITE").unwrap();
        let ack = TransactionKey::server("z9hG4bKx", "host.example:5060", "ACK").unwrap();
        assert_eq!(invite, ack);
        assert_eq!(ack.method(), "INVITE");
        assert_eq!(invite.sent_by(), "host.example:5060");
        let cancel = TransactionKey::server("z9hG4bKx", "host.example:5060", "CANCEL").unwrap();
        assert_ne!(cancel, invite);
        assert_eq!(cancel.cancelled_invite(), Some(invite.clone()));
        assert_eq!(invite.cancelled_invite(), None);
        // Same branch from another sent-by is another transaction.
        assert_ne!(
            invite,
            TransactionKey::server("z9hG4bKx", "10.0.0.1:5060", "INVITE").unwrap()
        );
        // Client and server keys never collide.
        let client = TransactionKey::client("z9hG4bKx", "INVITE").unwrap();
        assert_ne!(
            client,
            TransactionKey::server("z9hG4bKx", "", "INVITE").unwrap()
        );
        assert_eq!(
            TransactionKey::client("z9hG4bKx", "CANCEL")
                .unwrap()
                .cancelled_invite(),
            None
        );
    }

    #[test]
    fn key_capacity_errors() {
        let long = "z".repeat(BRANCH_MAX + 1);
        assert_eq!(
            TransactionKey::client(&long, "INVITE"),
            Err(KeyError::BranchTooLong)
        );
        assert!(TransactionKey::client(&long[..BRANCH_MAX], "INVITE").is_ok());
        assert_eq!(
            TransactionKey::server("b", &"h".repeat(SENT_BY_MAX + 1), "INVITE"),
            Err(KeyError::SentByTooLong)
        );
        assert!(TransactionKey::server("b", &"h".repeat(SENT_BY_MAX), "INVITE").is_ok());
        assert_eq!(
            TransactionKey::client("b", &"M".repeat(METHOD_MAX + 1)),
            Err(KeyError::MethodTooLong)
        );
        assert_eq!(
            TransactionKey::client("", "INVITE"),
            Err(KeyError::EmptyBranch)
        );
        assert_eq!(TransactionKey::client("b", ""), Err(KeyError::EmptyMethod));
        // Non-ASCII sent-by (never valid, but must not panic) that overflows.
        assert_eq!(
            TransactionKey::server("b", &"é".repeat(SENT_BY_MAX / 2 + 1), "INVITE"),
            Err(KeyError::SentByTooLong)
        );
    }

    #[test]
    fn events_keep_room_for_the_ones_that_matter() {
        let mut e = Events::default();
        for _ in 0..20 {
            e.push_repeatable(Event::Response(180));
        }
        e.push(Event::Response(200));
        e.push(Event::Terminated);
        let all: Vec<_> = core::iter::from_fn(|| e.pop()).collect();
        assert_eq!(all.len(), EVENTS - RESERVED + 2);
        assert_eq!(
            all[all.len() - 2..],
            [Event::Response(200), Event::Terminated]
        );
    }
}
