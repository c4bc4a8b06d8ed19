//! The SIP endpoint: everything srgate does on the SIP side, as one sans-IO state machine.
//!
//! It receives whole SIP messages (a UDP datagram, or one framed message from a TCP
//! stream) with their source, and produces [`Transmit`]s, [`Event`]s and a next timeout.
//! Inside: RFC 3261 §17 server and client transactions, the proxy account's registration
//! at `sip_svr` (RFC 3261 §10.2, digest as client), the built-in registrar of standalone
//! mode (§10.3, digest as server), and the answers of a B2BUA that has no call side yet:
//! OPTIONS 200, INVITE for an app user → 480, strangers → 403, CANCEL → 200 + 487, no
//! dialog → 481, Max-Forwards 0 → 483, loops → 482, unknown methods → 501.
//! Whatever is decided before trust (OPTIONS, challenges, 403, early errors) is answered
//! statelessly (RFC 3261 §8.2.7, To tag derived from the request); only sip_svr's and
//! authenticated requests keep a transaction.
//!
//! Responses go where RFC 3261 §18.2.2 and RFC 3581 say: over TCP back on the connection
//! (the I/O shell keys connections by peer address), over UDP to the source address and
//! port when the top Via has `rport`, else to the source address and the Via's port.
//!
//! The code is split by responsibility:
//! - this file: the [`Endpoint`] type, its configuration ([`EndpointConfig`]), the
//!   [`Transport`], [`Transmit`] and [`Event`] types, the tables it keeps, and its face to
//!   the I/O shell: `handle_receive` (dispatch of requests and responses), timers,
//!   transport errors, shutdown and the `poll_*` outputs;
//! - `admission`: what a request goes through before it is trusted (retransmissions,
//!   stateless answers, 400/403/405/415/416/420/481/482/483/501/503, digest challenges,
//!   CANCEL, the INVITE's trust check);
//! - `responses`: how server transactions answer (response heads, destinations, To tags);
//! - `register`: the built-in registrar of standalone mode (REGISTER from phones);
//! - `account`: the proxy account's own REGISTER at `sip_svr` (client side, refresh, backoff);
//! - `calls`: the INVITE dialogs srgate takes part in (outgoing, incoming, in-dialog);
//! - `tests`: the endpoint's tests by topic (the calls' are in `calls`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::auth::{self, Algorithm};
use super::registrar::Registrar;
use super::rng::Rng;
use super::transaction::{ClientTransaction, ServerInviteTransaction, ServerTransaction};
use crate::config::{Config, Groups};
use crate::wire::sip::{HeaderName, Message, Method, Via};

/// How a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }

    /// The transport token of a Via header (RFC 3261 §20.42).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

mod account;
mod admission;
mod calls;
mod register;
mod responses;
#[cfg(test)]
mod tests;

pub use account::refresh_after;
pub use admission::WsAuth;
pub use calls::{CallAccount, CallError, MAX_SIP_CALLS, OutgoingCall, Reach, SipCallId};
use responses::bad_request_response;

/// The answer to a request the parser rejected (`code`, `reason`), built from its raw
/// lines when the headers a response copies are there; `None`: drop it (a response, an
/// ACK, or too broken to answer).
pub fn answer_unparsable(data: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    bad_request_response(data, code, reason)
}

/// Bytes for the I/O shell to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub transport: Transport,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// What happened, for logs and the API.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The proxy account is registered at `sip_svr` for `expires` seconds.
    Registered { expires: u32 },
    /// A registration attempt failed; srgate retries with backoff.
    RegistrationFailed { reason: String },
    /// The un-REGISTER at shutdown finished (or failed: it is over either way).
    Unregistered,
    /// An INVITE for app user `app_user` (X-Number, else the Request-URI user) passed the
    /// checks; 100 was sent. The call layer answers with ring/answer/reject.
    IncomingCall {
        id: SipCallId,
        app_user: String,
        caller: String,
        caller_name: Option<String>,
        cus_data: Option<String>,
        sdp: String,
        /// The ring group (`[groups]`) the caller dialled when this is one of its
        /// branches: the first branch claimed takes the call, the others are cancelled.
        group: Option<String>,
        /// The branch is for the group's `sip:` member `app_user` (a SIP user, called by
        /// srgate), not an app user.
        sip_member: bool,
        /// Offered inside srgate (an app user's call, see `calls::internal`): the offer's
        /// media is on srgate's own RTP ports.
        internal: bool,
    },
    /// An outgoing call got 180 or 183 (with early-media SDP when present).
    CallProgress {
        id: SipCallId,
        code: u16,
        sdp: Option<String>,
    },
    /// An outgoing call got its 2xx (ACKed).
    CallAnswered { id: SipCallId, sdp: String },
    /// An outgoing call ended without an answer (final non-2xx, 408 timeout, 503 transport).
    CallFailed {
        id: SipCallId,
        code: u16,
        reason: String,
    },
    /// An incoming call was cancelled before the answer: by its caller, or (`elsewhere`)
    /// because another branch of its ring group took the call.
    CallCanceled { id: SipCallId, elsewhere: bool },
    /// An answered call ended from the SIP side: BYE (`None`), or no ACK came (408).
    CallEnded { id: SipCallId, code: Option<u16> },
    /// A re-INVITE brought a new SDP (answered by the endpoint with srgate's previous one).
    CallUpdated { id: SipCallId, sdp: String },
    /// A digit from SIP INFO.
    Dtmf {
        id: SipCallId,
        digit: char,
        duration_ms: u32,
    },
}

impl Event {
    /// The call an event is about, if it is about one.
    pub fn call_id(&self) -> Option<SipCallId> {
        match self {
            Event::IncomingCall { id, .. }
            | Event::CallProgress { id, .. }
            | Event::CallAnswered { id, .. }
            | Event::CallFailed { id, .. }
            | Event::CallCanceled { id, .. }
            | Event::CallEnded { id, .. }
            | Event::CallUpdated { id, .. }
            | Event::Dtmf { id, .. } => Some(*id),
            Event::Registered { .. } | Event::RegistrationFailed { .. } | Event::Unregistered => {
                None
            }
        }
    }
}

/// The SIP server srgate registers at and trusts (`[global] sip_svr`).
#[derive(Clone, Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// `host` or `host:port` as written in the config: the Request-URI of REGISTER.
    pub host_port: String,
}

/// The proxy account (`[proxy]`).
#[derive(Clone)]
pub struct ProxyAccount {
    pub user: String,
    pub password: String,
    pub expires: u32,
}

impl fmt::Debug for ProxyAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAccount")
            .field("user", &self.user)
            .field("password", &"***")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Everything the endpoint needs to know, taken from [`Config`] by the I/O shell.
#[derive(Clone)]
pub struct EndpointConfig {
    /// The address in our Via and Contact headers.
    pub local: SocketAddr,
    /// The same over TLS (`[sip] tls_listen`, at the advertised address): what Via and
    /// Contact name on TLS, so a peer's new connections reach the TLS listener. `None`:
    /// `local` (srgate then takes requests over TLS only on connections it opened).
    pub tls_local: Option<SocketAddr>,
    /// The SIP domain: From/To host of our requests, realm of our challenges.
    pub domain: String,
    /// `None`: standalone mode, srgate is the registrar.
    pub server: Option<Server>,
    /// The proxy account; registered only when `server` is set.
    pub proxy: Option<ProxyAccount>,
    /// Standalone registrar users: name, password.
    pub users: Vec<(String, String)>,
    /// Order of the challenges srgate sends as registrar.
    pub digest: Vec<Algorithm>,
    /// Seeds tags, branches, Call-IDs and the nonce key.
    pub seed: [u8; 32],
    pub user_agent: String,
    /// `[groups]`: ring groups, whose numbers ring their app members at once.
    pub groups: Groups,
    /// `[sip] session_expires`: the session interval srgate's INVITEs ask for (RFC
    /// 4028), seconds; 0: none asked.
    pub session_expires: u32,
}

/// Passwords and the seed never show (the proxy account masks its own).
impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("EndpointConfig")
            .field("local", &self.local)
            .field("tls_local", &self.tls_local)
            .field("domain", &self.domain)
            .field("server", &self.server)
            .field("proxy", &self.proxy)
            .field("users", &users)
            .field("digest", &self.digest)
            .field("user_agent", &self.user_agent)
            .field("session_expires", &self.session_expires)
            .finish_non_exhaustive()
    }
}

impl EndpointConfig {
    /// Standalone mode on `local`: srgate the registrar of `domain` for `users` (name,
    /// password), MD5 digest, no SIP server, no TLS. The other fields can be set after.
    pub fn standalone(
        local: SocketAddr,
        domain: &str,
        users: &[(&str, &str)],
        seed: [u8; 32],
    ) -> Self {
        EndpointConfig {
            local,
            tls_local: None,
            domain: domain.to_string(),
            server: None,
            proxy: None,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            digest: vec![Algorithm::Md5],
            seed,
            user_agent: "srgate".into(),
            groups: Groups::default(),
            session_expires: 1800,
        }
    }

    pub fn from_config(config: &Config, local: SocketAddr, seed: [u8; 32]) -> Self {
        use crate::config::{DigestAlgorithm, Transport as CfgTransport};
        let server = config.global.sip_svr.as_ref().map(|s| Server {
            addr: s.addr,
            transport: match s.transport {
                CfgTransport::Udp => Transport::Udp,
                CfgTransport::Tcp => Transport::Tcp,
                CfgTransport::Tls => Transport::Tls,
            },
            host_port: if s.host.contains(':') {
                format!("[{}]:{}", s.host, s.port)
            } else {
                format!("{}:{}", s.host, s.port)
            },
        });
        let proxy = (config.proxy.on && server.is_some()).then(|| ProxyAccount {
            user: config.proxy.sip_account.clone(),
            password: config.proxy.sip_pwd.expose().to_string(),
            expires: config.proxy.expires,
        });
        EndpointConfig {
            local,
            tls_local: config
                .sip
                .tls_listen
                .map(|l| SocketAddr::new(local.ip(), l.port())),
            domain: config.domain(),
            server,
            proxy,
            users: config
                .users
                .iter()
                .map(|(u, p)| (u.clone(), p.expose().to_string()))
                .collect(),
            digest: config
                .sip
                .digest
                .iter()
                .map(|d| match d {
                    DigestAlgorithm::Md5 => Algorithm::Md5,
                    DigestAlgorithm::Sha256 => Algorithm::Sha256,
                })
                .collect(),
            seed,
            // the product, not its version: a scanner learns nothing to match exploits with
            user_agent: "srgate".into(),
            groups: config.groups.clone(),
            session_expires: config.sip.session_expires,
        }
    }
}

/// The class of a status code as an index: 0 for 1xx … 5 for 6xx.
fn status_class(code: u16) -> Option<usize> {
    (100..700)
        .contains(&code)
        .then(|| usize::from(code / 100 - 1))
}

/// The class of an outgoing message that is a response (`SIP/2.0 NNN …`).
fn response_class(payload: &[u8]) -> Option<usize> {
    let digit = *payload.strip_prefix(b"SIP/2.0 ")?.first()?;
    (b'1'..=b'6')
        .contains(&digit)
        .then(|| usize::from(digit - b'1'))
}

/// Methods srgate implements (the `Allow` header).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE";
/// Methods srgate knows but does not accept (405 with `Allow`, not 501).
const KNOWN_NOT_ALLOWED: &[&str] = &[
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "PRACK",
];
/// First proxy-account retry after a failure; doubles up to `REGISTER_BACKOFF_MAX`.
pub const REGISTER_BACKOFF_FIRST: Duration = Duration::from_secs(2);
pub const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Server transactions kept at once; more requests get a stateless 503.
const MAX_SERVER_TRANSACTIONS: usize = 16_384;
/// Bytes of Via, From, To, Call-ID and CSeq a request may bring: a server transaction
/// stores them (and its answer repeats them), so this bounds its memory. RFC 4475's
/// long-but-valid request (`longreq`) has 2.6 KB.
const MAX_RESPONSE_HEAD: usize = 4096;

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub requests: u64,
    pub responses: u64,
    /// Responses received and sent (retransmissions included), by class: index 0 is
    /// 1xx, 5 is 6xx.
    pub responses_received: [u64; 6],
    pub responses_sent: [u64; 6],
    pub parse_errors: u64,
    pub dropped: u64,
    pub retransmissions_absorbed: u64,
}

struct ServerTx {
    machine: ServerMachine,
    destination: (Transport, SocketAddr),
    /// Via … CSeq of the request, with our To tag, ready for any response.
    head: Vec<(HeaderName<'static>, String)>,
    /// For merged-request detection (RFC 3261 §8.2.2.2): Call-ID, From tag, CSeq
    /// (number and method).
    origin: (String, String, u32, &'static str),
    final_sent: bool,
    /// Kept after its final answer (retransmissions absorbed, Timer G/J…) only when the
    /// request came from sip_svr or authenticated: what strangers send creates no state
    /// (RFC 3261 §8.2.7 stateless answers), so they can neither fill the table nor make
    /// srgate retransmit at a forged address.
    keep: bool,
}

enum ServerMachine {
    NonInvite(ServerTransaction),
    Invite(ServerInviteTransaction),
}

/// The server transaction key, RFC 3261 §17.2.3: branch, sent-by and method (ACK maps
/// to INVITE; CANCEL keeps its own).
type ServerKey = (String, String, &'static str);
/// The client transaction key, RFC 3261 §17.1.3: branch and CSeq method.
type ClientKey = String;

struct ClientTx {
    machine: ClientTransaction,
    destination: (Transport, SocketAddr),
}

impl std::fmt::Debug for ClientTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTx")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

/// The proxy account's registration at `sip_svr`.
struct Registration {
    account: ProxyAccount,
    server: Server,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// Remembers the last challenge, so refreshes carry credentials without a round
    /// trip, and decides when repeated challenges mean wrong credentials.
    auth: auth::ClientAuth,
    requested: u32,
    state: RegState,
    backoff: Duration,
    registered: bool,
    /// When the binding granted by the last 2xx runs out: past it srgate is no longer
    /// registered, even while a refresh is still being retransmitted.
    binding_expires: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
enum RegState {
    /// Send a REGISTER at this instant.
    Due(Instant),
    /// A REGISTER is in flight with this client transaction branch.
    InFlight(ClientKey),
    /// Un-REGISTER in flight.
    Unregistering(ClientKey),
    /// Un-registered (or given up) at shutdown.
    Done,
}

pub struct Endpoint {
    cfg: EndpointConfig,
    /// The codecs a re-offer may move a call to (`[media] codecs`; all bridged ones
    /// until told, see [`Endpoint::set_sip_codecs`]).
    sip_codecs: crate::sdp::CodecSet,
    rng: Rng,
    nonces: auth::NonceSecret,
    /// Failed authentications per source and user, with their back-off.
    auth_limits: auth::limit::AuthLimiter,
    /// UDP datagrams from untrusted sources, limited per source and in all.
    flood: crate::sip::flood::FloodGuard,
    server_txs: HashMap<ServerKey, ServerTx>,
    client_txs: HashMap<ClientKey, ClientTx>,
    registrar: Registrar,
    registration: Option<Registration>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    calls: calls::CallTable,
    internal: calls::internal::Internal,
    shutting_down: bool,
    metrics: Metrics,
}

/// A parsed request's identity, extracted once.
struct RequestIds<'a> {
    method: Method<'a>,
    via: Via<'a>,
    sent_by: String,
    branch: String,
    call_id: &'a str,
    cseq: u32,
    from_tag: &'a str,
    to_tag: Option<&'a str>,
}

/// Our branch parameters start with the RFC 3261 magic cookie and a mark of our own,
/// so a Via of ours is recognised when a request loops back.
const BRANCH_PREFIX: &str = "z9hG4bK-sg-";

impl Endpoint {
    /// The codecs srgate takes on the SIP side (`[media] codecs`): a re-offer is answered
    /// with one of them only.
    pub fn set_sip_codecs(&mut self, codecs: crate::sdp::CodecSet) {
        self.sip_codecs = codecs;
    }

    pub fn new(cfg: EndpointConfig, now: Instant) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let nonces = auth::NonceSecret::from_key(rng.bytes::<32>(), now);
        let server_ip = cfg.server.as_ref().map(|s| s.addr.ip());
        let registration = match (&cfg.server, &cfg.proxy) {
            (Some(server), Some(account)) => Some(Registration {
                auth: auth::ClientAuth::with_seed(
                    &account.user,
                    &account.password,
                    rng.bytes::<16>(),
                ),
                call_id: format!("{}@srgate", rng.token(24)),
                from_tag: rng.token(16),
                cseq: 0,
                requested: account.expires,
                state: RegState::Due(now),
                backoff: REGISTER_BACKOFF_FIRST,
                registered: false,
                binding_expires: None,
                account: account.clone(),
                server: server.clone(),
            }),
            _ => None,
        };
        Endpoint {
            cfg,
            sip_codecs: crate::sdp::CodecSet::ALL,
            rng,
            nonces,
            auth_limits: auth::limit::AuthLimiter::default(),
            flood: crate::sip::flood::FloodGuard::new(now, server_ip),
            server_txs: HashMap::new(),
            client_txs: HashMap::new(),
            registrar: Registrar::new(),
            registration,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            calls: calls::CallTable::default(),
            internal: Default::default(),
            shutting_down: false,
            metrics: Metrics::default(),
        }
    }

    /// Whether the proxy account is registered at `sip_svr` (always true standalone).
    /// The address srgate names in Via and Contact on `transport`.
    fn local_for(&self, transport: Transport) -> SocketAddr {
        match (transport, self.cfg.tls_local) {
            (Transport::Tls, Some(tls)) => tls,
            _ => self.cfg.local,
        }
    }

    pub fn is_registered(&self) -> bool {
        self.registration.as_ref().is_none_or(|r| r.registered)
    }

    /// Whether the proxy account is registered; `None` when there is none (standalone
    /// mode, or `[proxy] on = 0`).
    pub fn registration(&self) -> Option<bool> {
        self.registration.as_ref().map(|r| r.registered)
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("sip_requests_total", self.metrics.requests),
            ("sip_responses_total", self.metrics.responses),
            ("sip_parse_errors_total", self.metrics.parse_errors),
            ("sip_dropped_total", self.metrics.dropped),
            ("sip_flood_dropped_total", self.flood.dropped),
            ("sip_scanners_dropped_total", self.flood.scanners),
            (
                "sip_retransmissions_absorbed_total",
                self.metrics.retransmissions_absorbed,
            ),
            ("sip_server_transactions", self.server_txs.len() as u64),
            ("sip_client_transactions", self.client_txs.len() as u64),
            ("registrar_bindings", self.registrar.binding_count() as u64),
            (
                "proxy_registered",
                u64::from(self.registration() == Some(true)),
            ),
        ]
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        if let Some(class) = response_class(&t.payload) {
            self.metrics.responses_sent[class] += 1;
        }
        Some(t)
    }

    /// SIP responses (received, sent) by class, 1xx to 6xx.
    pub fn responses_by_class(&self) -> ([u64; 6], [u64; 6]) {
        (self.metrics.responses_received, self.metrics.responses_sent)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for tx in self.server_txs.values() {
            consider(match &tx.machine {
                ServerMachine::NonInvite(m) => m.poll_timeout(),
                ServerMachine::Invite(m) => m.poll_timeout(),
            });
        }
        for tx in self.client_txs.values() {
            consider(tx.machine.poll_timeout());
        }
        if let Some(reg) = &self.registration {
            if let RegState::Due(t) = reg.state {
                consider(Some(t));
            }
            if reg.registered {
                consider(reg.binding_expires);
            }
        }
        consider(self.registrar.next_expiry());
        consider(self.calls_timeout());
        next
    }

    /// Begins shutdown: the proxy account un-registers (Expires: 0). Done when
    /// [`Endpoint::is_shutdown_complete`] says so.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let Some(reg) = &mut self.registration else {
            return;
        };
        if let RegState::InFlight(key) = &reg.state {
            self.client_txs.remove(key);
        }
        let was_registered = reg.registered || matches!(reg.state, RegState::InFlight(_));
        reg.registered = false;
        if was_registered {
            self.send_register(now, 0);
        } else {
            reg.state = RegState::Done;
        }
    }

    /// Shut down: srgate's own un-REGISTER answered, and every per-call account's binding
    /// removed (the caller's own time limit bounds the wait).
    pub fn is_shutdown_complete(&self) -> bool {
        self.shutting_down
            && self
                .registration
                .as_ref()
                .is_none_or(|r| r.state == RegState::Done)
            && !self.call_accounts_pending()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // Only the terminated keys are collected (no clone of the whole table per tick).
        let mut done: Vec<ServerKey> = Vec::new();
        for (key, tx) in self.server_txs.iter_mut() {
            let due = match &tx.machine {
                ServerMachine::NonInvite(m) => m.poll_timeout(),
                ServerMachine::Invite(m) => m.poll_timeout(),
            };
            if due.is_none_or(|t| t > now) {
                continue;
            }
            let terminated = match &mut tx.machine {
                ServerMachine::NonInvite(m) => {
                    m.handle_timeout(now);
                    m.is_terminated()
                }
                ServerMachine::Invite(m) => {
                    m.handle_timeout(now);
                    m.is_terminated()
                }
            };
            Self::drain_server(&mut self.transmits, tx);
            if terminated {
                done.push(key.clone());
            }
        }
        for key in done {
            self.server_txs.remove(&key);
        }
        let keys: Vec<ClientKey> = self.client_txs.keys().cloned().collect();
        for key in keys {
            if let Some(tx) = self.client_txs.get_mut(&key) {
                tx.machine.handle_timeout(now);
                self.after_client_input(now, &key, None);
            }
        }
        if let Some(reg) = &mut self.registration
            && reg.registered
            && reg.binding_expires.is_some_and(|t| now >= t)
        {
            reg.registered = false;
            let reason = "the binding expired before a refresh succeeded".to_string();
            log::warn!("proxy account: {reason}");
            self.events.push_back(Event::RegistrationFailed { reason });
        }
        if let Some(reg) = &self.registration
            && let RegState::Due(t) = reg.state
            && now >= t
            && !self.shutting_down
        {
            let expires = reg.requested;
            self.send_register(now, expires);
        }
        self.registrar.purge(now);
        self.calls_handle_timeout(now);
    }

    /// A transport could not reach `destination` (TCP connect refused, …): client
    /// transactions towards it fail now instead of at Timer F.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        transport: Transport,
        destination: SocketAddr,
    ) {
        let keys: Vec<ClientKey> = self
            .client_txs
            .iter()
            .filter(|(_, tx)| tx.destination == (transport, destination))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.client_txs.remove(&key);
            self.on_register_failure(now, &key, "transport error".to_string());
        }
    }

    /// One whole SIP message from `source`. Returns whether it reached a transaction or a
    /// call, i.e. whether [`Endpoint::poll_timeout`] may have moved (a keepalive, a
    /// datagram over the flood limit or a malformed one answered statelessly cannot).
    pub fn handle_receive(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        data: &[u8],
    ) -> bool {
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            return false; // keepalive (RFC 5626 §3.5.1 CRLF) or padding
        }
        // UDP: the source may be spoofed and every answer would be sent to it, so what an
        // untrusted source sends is limited (crate::sip::flood). TCP is bounded by its
        // per-address connection cap and the shell's read budget per wake.
        if transport == Transport::Udp && !self.flood.admit(now, source.ip()) {
            return false;
        }
        if log::log_enabled!(log::Level::Trace) {
            log::trace!(
                "SIP {} from {source}:\n{}",
                transport.via_token(),
                crate::pii::sip_dump(data)
            );
        }
        match Message::parse(data) {
            Ok(msg) if msg.is_request() => {
                self.metrics.requests += 1;
                self.on_request(now, transport, source, &msg);
                true
            }
            Ok(msg) => {
                self.metrics.responses += 1;
                if let Some(class) = msg.status().and_then(status_class) {
                    self.metrics.responses_received[class] += 1;
                }
                self.on_response(now, &msg);
                true
            }
            Err(e) => {
                self.metrics.parse_errors += 1;
                let (code, reason) = e.status();
                match bad_request_response(data, code, reason) {
                    Some(payload) => {
                        log::debug!("malformed SIP from {source} ({e:?}): answered {code}");
                        self.transmits.push_back(Transmit {
                            transport,
                            destination: source,
                            payload,
                        });
                    }
                    None => {
                        self.metrics.dropped += 1;
                        log::debug!("malformed SIP from {source} ({e:?}): dropped");
                    }
                }
                // answered statelessly: no transaction, no timer
                false
            }
        }
    }

    fn request_ids<'a>(msg: &Message<'a>) -> Result<RequestIds<'a>, crate::wire::sip::Error> {
        let method = msg
            .method()
            .ok_or(crate::wire::sip::Error::MissingHeader("request line"))?;
        let via = msg.top_via()?;
        let cseq = msg.cseq()?;
        let from = msg.from()?;
        let to = msg.to()?;
        let call_id = msg.call_id()?;
        let sent_by = match via.port {
            Some(p) => format!("{}:{p}", via.host),
            None => via.host.to_string(),
        }
        .to_ascii_lowercase();
        // RFC 2543 peers have no magic cookie: their transactions are keyed by what
        // identifies the request instead (§17.2.3's fallback, simplified).
        let branch = match via.branch {
            Some(b) if b.starts_with("z9hG4bK") => b.to_string(),
            _ => format!(
                "rfc2543:{}:{}:{}",
                call_id,
                from.tag.unwrap_or(""),
                cseq.seq
            ),
        };
        Ok(RequestIds {
            method,
            via,
            sent_by,
            branch,
            call_id,
            cseq: cseq.seq,
            from_tag: from.tag.unwrap_or(""),
            to_tag: to.tag,
        })
    }

    fn on_response(&mut self, now: Instant, msg: &Message<'_>) {
        let (Ok(via), Ok(cseq), Some(status)) = (msg.top_via(), msg.cseq(), msg.status()) else {
            self.metrics.dropped += 1;
            return;
        };
        let Some(branch) = via.branch else {
            self.metrics.dropped += 1;
            return;
        };
        if self.call_response(now, branch, msg) {
            return;
        }
        let Some(tx) = self.client_txs.get_mut(branch) else {
            log::debug!("response {status} for no transaction of ours: dropped");
            self.metrics.dropped += 1;
            return;
        };
        if cseq.method != Method::Register {
            self.metrics.dropped += 1;
            return;
        }
        if let Err(e) = tx.machine.handle_response(now, status) {
            log::debug!("response {status} does not fit its transaction: {e:?}");
            self.metrics.dropped += 1;
            return;
        }
        let key = branch.to_string();
        self.after_client_input(now, &key, Some(msg));
    }
}
