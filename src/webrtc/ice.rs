//! srgate's ICE-lite agent for one browser leg, over the `is` crate.
//!
//! - RFC 8445 §2.5 / RFC 8839 §5.3: srgate is ICE-lite and controlled. It sends no checks;
//!   it answers the browser's Binding requests on its host candidates and learns the
//!   browser's address from them (peer-reflexive candidates), so the offer needs no
//!   candidates.
//! - RFC 7675: the browser keeps sending checks as consent refreshes; when no check that
//!   passes MESSAGE-INTEGRITY arrives for [`CONSENT_TIMEOUT`], the leg has lost consent.
//! - Only addresses that sent a check that passed are valid sources of DTLS and media
//!   (RFC 8445 §7.3.1.5 with a shared port: a datagram from anywhere else is dropped).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use is::stun::{StunMessage, StunPacket};
use is::{Candidate, IceAgent, IceAgentEvent, IceCreds, Protocol};

use crate::sdp::IceCredentials;

/// RFC 7675 §5.1: consent expires 30 s after the last successful check.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Remote addresses remembered per leg (peer-reflexive candidates that passed a check).
/// More than this many means someone is playing games; the oldest is forgotten.
pub const MAX_REMOTES: usize = 8;

/// Why the agent could not be set up.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceSetupError {
    /// No local candidate was given.
    NoCandidates,
    /// A local candidate address cannot be a host candidate (unspecified, multicast, ...).
    BadCandidate(SocketAddr),
}

/// What the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// The browser nominated a pair (or the first check passed): media can flow.
    Connected { remote: SocketAddr },
}

/// One datagram for the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from (one of the host candidates).
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// The ICE-lite side of a leg.
pub struct IceLite {
    agent: IceAgent,
    /// Addresses that sent a check that passed, oldest first.
    remotes: heapless::Deque<SocketAddr, MAX_REMOTES>,
    nominated: Option<SocketAddr>,
    last_consent: Option<Instant>,
    created: Instant,
    connected_reported: bool,
    pending_event: Option<IceEvent>,
    /// The agent's local candidates' addresses (the agent hands them out only through an
    /// allocating iterator; the media path asks on every packet).
    locals: heapless::Vec<SocketAddr, MAX_LOCALS>,
}

/// Host candidates of one agent: one per address family is what srgate offers.
const MAX_LOCALS: usize = 4;

impl core::fmt::Debug for IceLite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IceLite")
            .field("state", &self.agent.state())
            .field("remotes", &self.remotes.len())
            .finish_non_exhaustive()
    }
}

impl IceLite {
    /// An agent answering checks for `local` on `candidates`, expecting `remote`'s
    /// credentials (from the offer).
    pub fn new(
        now: Instant,
        local: &IceCredentials,
        remote: &IceCredentials,
        candidates: &[SocketAddr],
    ) -> Result<Self, IceSetupError> {
        if candidates.is_empty() {
            return Err(IceSetupError::NoCandidates);
        }
        let mut locals = heapless::Vec::new();
        let mut agent = IceAgent::new(IceCreds {
            ufrag: local.ufrag.clone(),
            pass: local.pwd.clone(),
        });
        agent.set_ice_lite(true);
        agent.set_controlling(false);
        agent.set_remote_credentials(IceCreds {
            ufrag: remote.ufrag.clone(),
            pass: remote.pwd.clone(),
        });
        for &addr in candidates {
            let c = Candidate::host(addr, "udp").map_err(|_| IceSetupError::BadCandidate(addr))?;
            if agent.add_local_candidate(c).is_none() || locals.push(addr).is_err() {
                return Err(IceSetupError::BadCandidate(addr));
            }
        }
        // The agent has no clock until its first handle_timeout (poll_timeout is None).
        agent.handle_timeout(now);
        Ok(IceLite {
            agent,
            remotes: heapless::Deque::new(),
            nominated: None,
            last_consent: None,
            created: now,
            connected_reported: false,
            pending_event: None,
            locals,
        })
    }

    /// Feeds a STUN datagram received on `local` from `from`. Returns whether it was a
    /// message for this agent that passed MESSAGE-INTEGRITY.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        buf: &[u8],
    ) -> bool {
        let Ok(message) = StunMessage::parse(buf) else {
            return false;
        };
        let is_request = message.is_binding_request();
        let packet = StunPacket {
            proto: Protocol::Udp,
            source: from,
            destination: local,
            message,
        };
        if !self.agent.handle_packet(now, packet) {
            return false;
        }
        if is_request {
            self.last_consent = Some(now);
        }
        self.drain_agent_events();
        true
    }

    /// Advances the agent's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
        self.drain_agent_events();
    }

    fn drain_agent_events(&mut self) {
        // The agent queues a handful of events per check; the bound only guards a bug.
        for _ in 0..64 {
            let Some(event) = self.agent.poll_event() else {
                break;
            };
            match event {
                IceAgentEvent::DiscoveredRecv { source, .. } => self.remember(source),
                IceAgentEvent::NominatedSend { destination, .. } => {
                    self.remember(destination);
                    self.nominated = Some(destination);
                }
                IceAgentEvent::IceConnectionStateChange(s) => {
                    log::debug!("ice: state {s:?}");
                }
                IceAgentEvent::IceRestart(_) => {}
            }
        }
        if !self.connected_reported
            && self.agent.state().is_connected()
            && let Some(remote) = self.send_address()
        {
            self.connected_reported = true;
            self.pending_event = Some(IceEvent::Connected { remote });
        }
    }

    fn remember(&mut self, addr: SocketAddr) {
        if self.remotes.iter().any(|a| *a == addr) {
            return;
        }
        if self.remotes.is_full() {
            self.remotes.pop_front();
        }
        // Cannot fail: a slot was freed above when full.
        let _ = self.remotes.push_back(addr);
    }

    /// Whether `addr` sent a check that passed (a valid source of DTLS and media).
    pub fn is_valid_remote(&self, addr: SocketAddr) -> bool {
        self.remotes.iter().any(|a| *a == addr)
    }

    /// Where to send DTLS and media: the nominated address, else the latest validated one.
    pub fn send_address(&self) -> Option<SocketAddr> {
        self.nominated.or_else(|| self.remotes.back().copied())
    }

    /// The local candidate that pairs with `remote` (same address family).
    pub fn local_for(&self, remote: SocketAddr) -> Option<SocketAddr> {
        self.locals
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
    }

    /// The next STUN datagram to send (responses to checks).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.agent.poll_transmit()?;
        Some(Transmit {
            source: t.source,
            destination: t.destination,
            contents: t.contents.into(),
        })
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.pending_event.take()
    }

    /// When the agent wants `handle_timeout`.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.agent.poll_timeout()
    }

    /// When consent runs out: [`CONSENT_TIMEOUT`] after the last check that passed, or
    /// after creation if none has.
    pub fn consent_deadline(&self) -> Instant {
        self.last_consent.unwrap_or(self.created) + CONSENT_TIMEOUT
    }

    /// Whether any check has passed yet.
    /// When the last connectivity check that passed came (the browser's consent).
    pub fn last_consent(&self) -> Option<Instant> {
        self.last_consent
    }

    pub fn had_consent(&self) -> bool {
        self.last_consent.is_some()
    }
}
