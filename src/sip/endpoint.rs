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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::auth::{self, Algorithm};
use super::registrar::{self, ContactUpdate, RegisterError, Registrar};
use super::rng::Rng;
use super::transaction::{
    ClientTransaction, Event as TxEvent, ServerInviteTransaction, ServerTransaction, TIMER_F,
};
use crate::config::Config;
use crate::wire::sip::{Contact, HeaderName, Message, MessageBuilder, Method, Via, reason_phrase};

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

#[path = "endpoint_calls.rs"]
mod calls;
pub use calls::{CallError, MAX_SIP_CALLS, OutgoingCall, SipCallId};

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
    /// An incoming call was cancelled by its caller before the answer.
    CallCanceled { id: SipCallId },
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
            | Event::CallCanceled { id }
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
}

/// Passwords and the seed never show (the proxy account masks its own).
impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("EndpointConfig")
            .field("local", &self.local)
            .field("domain", &self.domain)
            .field("server", &self.server)
            .field("proxy", &self.proxy)
            .field("users", &users)
            .field("digest", &self.digest)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

impl EndpointConfig {
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
            user_agent: format!("srgate/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Methods srgate implements (the `Allow` header).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO";
/// Methods srgate knows but does not accept (405 with `Allow`, not 501).
const KNOWN_NOT_ALLOWED: &[&str] = &[
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "UPDATE",
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
    rng: Rng,
    nonces: auth::NonceSecret,
    /// Failed authentications per source and user, with their back-off.
    auth_limits: auth::limit::AuthLimiter,
    server_txs: HashMap<ServerKey, ServerTx>,
    client_txs: HashMap<ClientKey, ClientTx>,
    registrar: Registrar,
    registration: Option<Registration>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    calls: calls::CallTable,
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

impl Endpoint {
    pub fn new(cfg: EndpointConfig, now: Instant) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let nonces = auth::NonceSecret::from_key(rng.bytes::<32>(), now);
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
            rng,
            nonces,
            auth_limits: auth::limit::AuthLimiter::default(),
            server_txs: HashMap::new(),
            client_txs: HashMap::new(),
            registrar: Registrar::new(),
            registration,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            calls: calls::CallTable::default(),
            shutting_down: false,
            metrics: Metrics::default(),
        }
    }

    /// Whether the proxy account is registered at `sip_svr` (always true standalone).
    pub fn is_registered(&self) -> bool {
        self.registration.as_ref().is_none_or(|r| r.registered)
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
            (
                "sip_retransmissions_absorbed_total",
                self.metrics.retransmissions_absorbed,
            ),
            ("sip_server_transactions", self.server_txs.len() as u64),
            ("sip_client_transactions", self.client_txs.len() as u64),
            ("registrar_bindings", self.registrar.binding_count() as u64),
            ("proxy_registered", u64::from(self.is_registered())),
        ]
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
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

    pub fn is_shutdown_complete(&self) -> bool {
        self.shutting_down
            && self
                .registration
                .as_ref()
                .is_none_or(|r| r.state == RegState::Done)
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

    /// One whole SIP message from `source`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        data: &[u8],
    ) {
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            return; // keepalive (RFC 5626 §3.5.1 CRLF) or padding
        }
        if log::log_enabled!(log::Level::Trace) {
            log::trace!(
                "SIP {} from {source}:\n{}",
                transport.via_token(),
                String::from_utf8_lossy(data)
            );
        }
        match Message::parse(data) {
            Ok(msg) if msg.is_request() => {
                self.metrics.requests += 1;
                self.on_request(now, transport, source, &msg);
            }
            Ok(msg) => {
                self.metrics.responses += 1;
                self.on_response(now, &msg);
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

    fn on_request(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        msg: &Message<'_>,
    ) {
        let ids = match Self::request_ids(msg) {
            Ok(ids) => ids,
            Err(e) => {
                self.metrics.parse_errors += 1;
                let (code, reason) = e.status();
                match bad_request_response(msg.as_bytes(), code, reason) {
                    Some(payload) => self.transmits.push_back(Transmit {
                        transport,
                        destination: source,
                        payload,
                    }),
                    None => self.metrics.dropped += 1,
                }
                return;
            }
        };
        let destination = (transport, response_destination(transport, source, &ids.via));
        let method_key = method_key(&ids.method);

        if ids.method == Method::Ack {
            let key = (ids.branch.clone(), ids.sent_by.clone(), "INVITE");
            if let Some(tx) = self.server_txs.get_mut(&key) {
                if let ServerMachine::Invite(m) = &mut tx.machine {
                    m.handle_ack(now);
                }
                Self::drain_server(&mut self.transmits, tx);
            } else if !self.call_ack(msg) {
                log::debug!("stray ACK from {source} dropped");
            }
            return;
        }

        let key: ServerKey = (ids.branch.clone(), ids.sent_by.clone(), method_key);
        if let Some(tx) = self.server_txs.get_mut(&key) {
            self.metrics.retransmissions_absorbed += 1;
            match &mut tx.machine {
                ServerMachine::NonInvite(m) => m.handle_request_retransmission(now),
                ServerMachine::Invite(m) => m.handle_request_retransmission(now),
            }
            Self::drain_server(&mut self.transmits, tx);
            return;
        }
        // The To tag is derived from the request, so a request answered statelessly and
        // sent again gets the very same answer (RFC 3261 §8.2.7).
        let to_tag = ids.to_tag.is_none().then(|| self.derived_tag(&ids));
        let head = response_head(msg, &ids, source, to_tag.as_deref());
        let head_len: usize = head.iter().map(|(_, v)| v.len()).sum();
        let refusal = if head_len > MAX_RESPONSE_HEAD {
            // A transaction keeps this copy for 32 s: its size is bounded.
            Some((400, "Header Fields Too Large", None))
        } else if self.server_txs.len() >= MAX_SERVER_TRANSACTIONS {
            Some((
                503,
                "Service Unavailable",
                Some(("Retry-After", "5".into())),
            ))
        } else {
            None
        };
        if let Some((code, reason, extra)) = refusal {
            // Answered statelessly: nothing is kept.
            self.transmits.push_back(Transmit {
                transport: destination.0,
                destination: destination.1,
                payload: build_response(&head, code, reason, extra.as_slice()),
            });
            return;
        }

        let machine = if ids.method == Method::Invite {
            ServerMachine::Invite(ServerInviteTransaction::new(now, transport.reliable()))
        } else {
            ServerMachine::NonInvite(ServerTransaction::new(now, transport.reliable()))
        };
        // A merged request (§8.2.2.2): same Call-ID, From tag and CSeq as a transaction
        // in progress but another branch — it forked and came back by another path.
        let merged = ids.to_tag.is_none()
            && self.server_txs.values().any(|tx| {
                tx.origin.0 == ids.call_id
                    && tx.origin.1 == ids.from_tag
                    && tx.origin.2 == ids.cseq
                    && tx.origin.3 == method_key
            });
        self.server_txs.insert(
            key.clone(),
            ServerTx {
                machine,
                destination,
                head,
                origin: (
                    ids.call_id.to_string(),
                    ids.from_tag.to_string(),
                    ids.cseq,
                    method_key,
                ),
                final_sent: false,
                keep: false,
            },
        );

        if merged || self.via_loops(msg) {
            self.respond(now, &key, 482, "Loop Detected", &[]);
            return;
        }
        if ids.method == Method::Cancel {
            self.on_cancel(now, &key, &ids);
            return;
        }
        if let Some(bad) = unsupported_require(msg) {
            self.respond(now, &key, 420, "Bad Extension", &[("Unsupported", bad)]);
            return;
        }
        // 483 for what srgate would pass on (a call); a request that ends here (OPTIONS,
        // REGISTER) is processed as usual, as RFC 4475 (its zeromf message) asks of an endpoint.
        match msg.max_forwards() {
            Ok(Some(0)) if !matches!(ids.method, Method::Options | Method::Register) => {
                self.respond(now, &key, 483, "Too Many Hops", &[]);
                return;
            }
            Err(_) => {
                self.respond(now, &key, 400, "Bad Max-Forwards", &[]);
                return;
            }
            _ => {}
        }
        let scheme_ok = msg
            .request_uri()
            .map(|u| {
                let l = u.len().min(4);
                u[..l].eq_ignore_ascii_case("sip:")
                    || u.len() >= 5 && u[..5].eq_ignore_ascii_case("sips:")
            })
            .unwrap_or(false);
        if !scheme_ok {
            self.respond(now, &key, 416, "Unsupported URI Scheme", &[]);
            return;
        }

        // Content processing (RFC 3261 §8.2.3): the only body srgate reads is SDP.
        if !msg.body().is_empty()
            && matches!(ids.method, Method::Invite | Method::Options)
            && !msg
                .header(HeaderName::ContentType)
                .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"))
        {
            self.respond(
                now,
                &key,
                415,
                "Unsupported Media Type",
                &[("Accept", "application/sdp".to_string())],
            );
            return;
        }
        match ids.method {
            Method::Options => {
                let extra = [
                    ("Allow", ALLOW.to_string()),
                    ("Accept", "application/sdp".to_string()),
                    ("Accept-Encoding", "identity".to_string()),
                    ("Supported", "".to_string()),
                ];
                self.respond(now, &key, 200, "OK", &extra);
            }
            Method::Register => self.on_register(now, &key, transport, source, msg, &ids),
            Method::Invite if ids.to_tag.is_none() => self.on_invite(now, &key, source, msg),
            Method::Invite | Method::Bye | Method::Info => {
                if !self.call_in_dialog(now, &key, msg, &ids.method) {
                    self.respond(now, &key, 481, "Call/Transaction Does Not Exist", &[]);
                }
            }
            Method::Other(name)
                if !KNOWN_NOT_ALLOWED.contains(&name.to_ascii_uppercase().as_str()) =>
            {
                self.respond(
                    now,
                    &key,
                    501,
                    "Not Implemented",
                    &[("Allow", ALLOW.to_string())],
                );
            }
            _ => {
                self.respond(
                    now,
                    &key,
                    405,
                    "Method Not Allowed",
                    &[("Allow", ALLOW.to_string())],
                );
            }
        }
    }

    /// A Via that names srgate itself: the request went round and came back (§16.3's check,
    /// for an element that never forwards a request unchanged).
    fn via_loops(&self, msg: &Message<'_>) -> bool {
        let ours = self.cfg.local;
        msg.vias().flatten().any(|v| {
            let port = v.port.unwrap_or(5060);
            port == ours.port()
                && match v.host {
                    crate::wire::sip::Host::V4(ip) => std::net::IpAddr::V4(ip) == ours.ip(),
                    crate::wire::sip::Host::V6(ip) => std::net::IpAddr::V6(ip) == ours.ip(),
                    crate::wire::sip::Host::Name(_) => false,
                }
                && v.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX))
        })
    }

    fn on_cancel(&mut self, now: Instant, key: &ServerKey, ids: &RequestIds<'_>) {
        let invite_key = (ids.branch.clone(), ids.sent_by.clone(), "INVITE");
        let Some(invite) = self.server_txs.get(&invite_key) else {
            self.respond(now, key, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        let pending = !invite.final_sent;
        // The 200 carries the To tag of the INVITE's answers (§9.2).
        let invite_to = invite
            .head
            .iter()
            .find(|(name, _)| *name == HeaderName::To)
            .map(|(_, v)| v.clone());
        if let Some(tx) = self.server_txs.get_mut(key) {
            if let (Some(to), Some(slot)) = (
                invite_to,
                tx.head.iter_mut().find(|(name, _)| *name == HeaderName::To),
            ) {
                slot.1 = to;
            }
            // It cancels a transaction we keep: this one is kept too.
            tx.keep = true;
        }
        self.respond(now, key, 200, "OK", &[]);
        if pending {
            // The INVITE had no final answer yet: it ends with 487 (§9.2).
            self.respond(now, &invite_key, 487, "Request Terminated", &[]);
            self.call_cancelled(&invite_key);
        }
    }

    fn on_invite(&mut self, now: Instant, key: &ServerKey, source: SocketAddr, msg: &Message<'_>) {
        match &self.cfg.server {
            Some(server) => {
                // Proxy mode: calls come from sip_svr only. Over UDP the whole address must
                // match; over TCP the PBX opens connections from any port, so its IP does.
                let trusted = source == server.addr
                    || (key_transport_reliable(&self.server_txs, key)
                        && source.ip() == server.addr.ip());
                if !trusted {
                    log::info!("INVITE from {source} refused: not sip_svr");
                    self.respond(now, key, 403, "Forbidden", &[]);
                    return;
                }
            }
            None => match self.authenticate(now, msg, true, source) {
                AuthOutcome::Ok(_) => {}
                AuthOutcome::Challenge(headers) => {
                    self.respond(now, key, 407, "Proxy Authentication Required", &headers);
                    return;
                }
                AuthOutcome::Forbidden => {
                    self.respond(now, key, 403, "Forbidden", &[]);
                    return;
                }
                AuthOutcome::BadRequest => {
                    self.respond(now, key, 400, "Bad Credentials", &[]);
                    return;
                }
            },
        }
        self.keep(key);
        // The callee: X-Number (SRProxy's FreeSWITCH dialplan) or the Request-URI user.
        let callee = msg
            .header(HeaderName::Other("X-Number"))
            .and_then(|v| {
                let v = v.trim();
                let inner = v
                    .strip_prefix('<')
                    .and_then(|s| s.split('>').next())
                    .unwrap_or(v);
                crate::wire::sip::Uri::parse(inner)
                    .ok()
                    .and_then(|u| u.user)
            })
            .or_else(|| {
                msg.request_uri()
                    .and_then(|u| crate::wire::sip::Uri::parse(u).ok())
                    .and_then(|u| u.user)
            });
        let Some(callee) = callee else {
            self.respond(now, key, 404, "Not Found", &[]);
            return;
        };
        let callee = callee.to_string();
        self.incoming_call(now, key, msg, &callee);
    }

    fn on_register(
        &mut self,
        now: Instant,
        key: &ServerKey,
        transport: Transport,
        source: SocketAddr,
        msg: &Message<'_>,
        ids: &RequestIds<'_>,
    ) {
        if self.cfg.server.is_some() {
            // Proxy mode: sip_svr is the registrar, srgate is not.
            self.respond(
                now,
                key,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW.to_string())],
            );
            return;
        }
        let user = match self.authenticate(now, msg, false, source) {
            AuthOutcome::Ok(user) => {
                self.keep(key);
                user
            }
            AuthOutcome::Challenge(headers) => {
                self.respond(now, key, 401, "Unauthorized", &headers);
                return;
            }
            AuthOutcome::Forbidden => {
                self.respond(now, key, 403, "Forbidden", &[]);
                return;
            }
            AuthOutcome::BadRequest => {
                self.respond(now, key, 400, "Bad Credentials", &[]);
                return;
            }
        };
        // The authenticated user may only bind its own address-of-record.
        let aor_user = msg.to().ok().and_then(|t| t.uri.user).unwrap_or("");
        if aor_user != user {
            self.respond(now, key, 403, "Forbidden", &[]);
            return;
        }
        let default_expires = match msg.expires() {
            Ok(e) => e.unwrap_or(registrar::DEFAULT_EXPIRES),
            Err(_) => {
                self.respond(now, key, 400, "Bad Expires", &[]);
                return;
            }
        };
        let mut star = false;
        let mut updates: Vec<(String, u32)> = Vec::new();
        for c in msg.contacts() {
            match c {
                Ok(Contact::Star) => star = true,
                Ok(c @ Contact::Addr(_)) => {
                    let expires = c.expires().unwrap_or(default_expires);
                    if let Contact::Addr(na) = &c {
                        updates.push((na.uri.as_str().to_string(), expires));
                    }
                }
                Err(_) => {
                    self.respond(now, key, 400, "Bad Contact", &[]);
                    return;
                }
            }
        }
        let result = if star {
            // RFC 3261 §10.3 step 6: "*" only alone and with Expires: 0.
            if !updates.is_empty() || default_expires != 0 {
                self.respond(now, key, 400, "Invalid Wildcard Contact", &[]);
                return;
            }
            self.registrar.remove_all(now, &user, ids.call_id, ids.cseq)
        } else {
            let list: Vec<ContactUpdate<'_>> = updates
                .iter()
                .map(|(c, e)| ContactUpdate {
                    contact: c,
                    expires: *e,
                })
                .collect();
            self.registrar
                .update(now, &user, ids.call_id, ids.cseq, source, transport, &list)
        };
        match result {
            Ok(()) => {
                let contacts: Vec<(&str, String)> = self
                    .registrar
                    .bindings(now, &user)
                    .map(|b| {
                        (
                            "Contact",
                            format!("<{}>;expires={}", b.contact, b.remaining(now)),
                        )
                    })
                    .collect();
                log::info!(
                    "REGISTER {} from {source}: {} binding(s)",
                    crate::pii::Pii(&user),
                    contacts.len()
                );
                self.respond(now, key, 200, "OK", &contacts);
            }
            Err(RegisterError::IntervalTooBrief) => self.respond(
                now,
                key,
                423,
                "Interval Too Brief",
                &[("Min-Expires", registrar::MIN_EXPIRES.to_string())],
            ),
            Err(RegisterError::OutOfOrder) => self.respond(
                now,
                key,
                500,
                "Server Internal Error (CSeq out of order)",
                &[],
            ),
            Err(_) => self.respond(now, key, 403, "Forbidden (too many bindings)", &[]),
        }
    }

    /// Digest check of a REGISTER (`Authorization`, 401) or INVITE (`Proxy-Authorization`,
    /// 407) against `[users]`. Failures are limited per source and per user
    /// ([`auth::limit`]): a blocked source's credentials get 403 unchecked, and each
    /// counted failure is one log line naming the source (for fail2ban).
    fn authenticate(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        proxy: bool,
        source: SocketAddr,
    ) -> AuthOutcome {
        let (header, challenge_name) = if proxy {
            (HeaderName::ProxyAuthorization, "Proxy-Authenticate")
        } else {
            (HeaderName::Authorization, "WWW-Authenticate")
        };
        let method = msg.method().map(|m| m.as_str()).unwrap_or("");
        let realm = self.cfg.domain.clone();
        let challenge = |ep: &mut Endpoint, stale: bool| {
            let mut headers = Vec::with_capacity(ep.cfg.digest.len());
            for alg in &ep.cfg.digest {
                let value = ep.nonces.challenge(now, &realm, *alg, stale, source.ip());
                headers.push((challenge_name, value));
            }
            AuthOutcome::Challenge(headers)
        };
        // The user the credentials name, when it is one of ours (guessing names costs the
        // source only).
        let users = &self.cfg.users;
        let claimed = msg
            .header_all(header)
            .filter_map(|v| auth::Credentials::parse(v).ok())
            .find(|c| c.realm.eq_str(&realm))
            .and_then(|c| {
                users
                    .iter()
                    .find(|(n, _)| c.username.eq_str(n))
                    .map(|(n, _)| n.clone())
            });
        let has_credentials = msg.header_all(header).next().is_some();
        if has_credentials
            && let Some(left) = self
                .auth_limits
                .blocked(now, source.ip(), claimed.as_deref())
        {
            log::debug!(
                "{method} from {source}: authentication blocked for {} s more",
                left.as_secs() + 1
            );
            return AuthOutcome::Forbidden;
        }
        let request_uri = msg.request_uri().unwrap_or("");
        let verdict = self.nonces.verify(
            now,
            source.ip(),
            method,
            request_uri,
            &realm,
            msg.header_all(header),
            |u| users.iter().find(|(n, _)| n == u).map(|(_, p)| p.clone()),
        );
        match verdict {
            auth::Verdict::Ok { user, .. } => {
                self.auth_limits.succeeded(source.ip(), user.as_str());
                AuthOutcome::Ok(user.as_str().to_string())
            }
            auth::Verdict::Stale => challenge(self, true),
            auth::Verdict::Replayed => {
                log::info!(
                    "{method} from {source}: digest nonce used again (replay?): re-challenged"
                );
                challenge(self, true)
            }
            auth::Verdict::Challenge(_) => challenge(self, false),
            auth::Verdict::BadRequest(why) => {
                log::debug!("digest credentials malformed: {why:?}");
                AuthOutcome::BadRequest
            }
            other => {
                let failure = self
                    .auth_limits
                    .failed(now, source.ip(), claimed.as_deref());
                let why = match other {
                    auth::Verdict::Forbidden(auth::Rejection::UnknownUser) => "unknown user",
                    auth::Verdict::Forbidden(auth::Rejection::WrongPassword) => "wrong password",
                    _ => "refused",
                };
                let backoff = failure
                    .backoff
                    .map(|b| format!("; blocked for {} s", b.as_secs()))
                    .unwrap_or_default();
                log::warn!(
                    "SIP authentication failed: source {} user {} method {method}: {why} \
                     (failure {} from this address{backoff})",
                    source.ip(),
                    crate::pii::Pii(claimed.as_deref().unwrap_or("-")),
                    failure.failures
                );
                AuthOutcome::Forbidden
            }
        }
    }

    /// Marks transaction `key` as worth keeping (trusted or authenticated request).
    fn keep(&mut self, key: &ServerKey) {
        if let Some(tx) = self.server_txs.get_mut(key) {
            tx.keep = true;
        }
    }

    /// A To tag for the answers to a request: the same for every copy of it.
    fn derived_tag(&self, ids: &RequestIds<'_>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.cfg.seed);
        for part in [ids.call_id, ids.from_tag, ids.branch.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(ids.cseq.to_be_bytes());
        let digest = h.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sends a response on server transaction `key` (built from its stored head).
    fn respond(
        &mut self,
        now: Instant,
        key: &ServerKey,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        let Some(tx) = self.server_txs.get_mut(key) else {
            return;
        };
        let mut headers: Vec<(&str, String)> = Vec::with_capacity(extra.len() + 1);
        headers.push(("Server", self.cfg.user_agent.clone()));
        headers.extend(extra.iter().map(|(n, v)| (*n, v.clone())));
        let payload = build_response(&tx.head, code, reason, &headers);
        if code >= 200 {
            tx.final_sent = true;
        }
        let sent = match &mut tx.machine {
            ServerMachine::NonInvite(m) => m.send_response(now, code, payload),
            ServerMachine::Invite(m) => m.send_response(now, code, payload),
        };
        if let Err(e) = sent {
            // Only a logic slip of ours gets here (a second final answer): keep the first.
            log::warn!("response {code} not sent: {e:?}");
        }
        Self::drain_server(&mut self.transmits, tx);
        let done = match &tx.machine {
            ServerMachine::NonInvite(m) => m.is_terminated(),
            ServerMachine::Invite(m) => m.is_terminated(),
        };
        if done || (code >= 200 && !tx.keep) {
            self.server_txs.remove(key);
        }
    }

    fn drain_server(transmits: &mut VecDeque<Transmit>, tx: &mut ServerTx) {
        let (transport, destination) = tx.destination;
        loop {
            let next = match &mut tx.machine {
                ServerMachine::NonInvite(m) => m.poll_transmit(),
                ServerMachine::Invite(m) => m.poll_transmit(),
            };
            let Some(bytes) = next else { break };
            if log::log_enabled!(log::Level::Trace) {
                log::trace!(
                    "SIP {} to {destination}:\n{}",
                    transport.via_token(),
                    String::from_utf8_lossy(bytes)
                );
            }
            transmits.push_back(Transmit {
                transport,
                destination,
                payload: bytes.to_vec(),
            });
        }
    }

    // ---- client side: the proxy account's REGISTER ----

    fn send_register(&mut self, now: Instant, expires: u32) {
        let local = self.cfg.local;
        let domain = self.cfg.domain.clone();
        let user_agent = self.cfg.user_agent.clone();
        let branch = format!("{BRANCH_PREFIX}{}", self.rng.token(20));
        let Some(reg) = &mut self.registration else {
            return;
        };
        reg.cseq += 1;
        let transport = reg.server.transport;
        let request_uri = format!("sip:{}", reg.server.host_port);
        let aor = format!("<sip:{}@{}>", reg.account.user, domain);
        let contact = format!(
            "<sip:{}@{}{}>",
            reg.account.user,
            local,
            match transport {
                Transport::Udp => "",
                Transport::Tcp => ";transport=tcp",
                Transport::Tls => ";transport=tls",
            }
        );
        let mut b = MessageBuilder::request(Method::Register, &request_uri)
            .header(
                HeaderName::Via,
                format_args!(
                    "SIP/2.0/{} {local};branch={branch};rport",
                    transport.via_token()
                ),
            )
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, format_args!("{aor};tag={}", reg.from_tag))
            .header(HeaderName::To, &aor)
            .header(HeaderName::CallId, &reg.call_id)
            .header(HeaderName::CSeq, format_args!("{} REGISTER", reg.cseq))
            .header(HeaderName::Contact, &contact)
            .header(HeaderName::Expires, expires)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::UserAgent, &user_agent);
        for h in reg.auth.authorize("REGISTER", &request_uri) {
            b = b.header(HeaderName::new(h.name), h.value);
        }
        let payload = b.build();
        reg.state = if self.shutting_down {
            RegState::Unregistering(branch.clone())
        } else {
            RegState::InFlight(branch.clone())
        };
        let destination = (transport, reg.server.addr);
        log::debug!(
            "REGISTER {} at {} (expires {expires}, CSeq {})",
            crate::pii::Pii(&reg.account.user),
            reg.server.addr,
            reg.cseq
        );
        let machine = ClientTransaction::new(now, payload, transport.reliable());
        self.client_txs.insert(
            branch.clone(),
            ClientTx {
                machine,
                destination,
            },
        );
        self.after_client_input(now, &branch, None);
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

    /// Sends what a client transaction wants sent and acts on what it passes up.
    fn after_client_input(&mut self, now: Instant, key: &str, msg: Option<&Message<'_>>) {
        let Some(tx) = self.client_txs.get_mut(key) else {
            return;
        };
        let (transport, destination) = tx.destination;
        while let Some(bytes) = tx.machine.poll_transmit() {
            self.transmits.push_back(Transmit {
                transport,
                destination,
                payload: bytes.to_vec(),
            });
        }
        let mut outcome = None;
        while let Some(ev) = tx.machine.poll_event() {
            match ev {
                TxEvent::Response(code) if code >= 200 => outcome = Some(Ok(code)),
                TxEvent::Response(_) => {}
                TxEvent::Timeout => outcome = Some(Err("no answer (timer F)".to_string())),
                _ => {}
            }
        }
        if tx.machine.is_terminated() {
            self.client_txs.remove(key);
        }
        match outcome {
            Some(Ok(code)) => match msg {
                Some(msg) => self.on_register_response(now, key, code, msg),
                None => self.on_register_failure(now, key, format!("{code}")),
            },
            Some(Err(reason)) => self.on_register_failure(now, key, reason),
            None => {}
        }
    }

    fn on_register_response(&mut self, now: Instant, key: &str, code: u16, msg: &Message<'_>) {
        let local = self.cfg.local;
        let Some(reg) = &mut self.registration else {
            return;
        };
        let unregistering = match &reg.state {
            RegState::InFlight(k) if k == key => false,
            RegState::Unregistering(k) if k == key => true,
            _ => return, // an answer to an attempt we gave up on
        };
        match code {
            200..=299 if unregistering => {
                reg.state = RegState::Done;
                self.events.push_back(Event::Unregistered);
            }
            200..=299 => {
                // Granted expiry: our Contact's expires parameter, else Expires, else ours.
                let user = reg.account.user.as_str();
                let granted = msg
                    .contacts()
                    .flatten()
                    .find_map(|c| match &c {
                        Contact::Addr(na) if is_our_contact(&na.uri, user, local) => c.expires(),
                        _ => None,
                    })
                    .or_else(|| msg.expires().ok().flatten())
                    .unwrap_or(reg.requested)
                    .max(1);
                reg.registered = true;
                reg.binding_expires = Some(now + Duration::from_secs(u64::from(granted)));
                reg.backoff = REGISTER_BACKOFF_FIRST;
                reg.auth.handle_success();
                reg.state = RegState::Due(now + refresh_after(granted));
                self.events
                    .push_back(Event::Registered { expires: granted });
            }
            401 | 407 => {
                let kind = if code == 401 {
                    auth::AuthKind::Www
                } else {
                    auth::AuthKind::Proxy
                };
                let header = HeaderName::new(kind.challenge_header());
                if let Err(give_up) = reg.auth.handle_challenge(kind, msg.header_all(header)) {
                    let why = format!("{code} {}: {give_up}", msg.reason().unwrap_or(""));
                    self.on_register_failure(now, key, why);
                    return;
                }
                let expires = if unregistering { 0 } else { reg.requested };
                self.send_register(now, expires);
            }
            423 => {
                let min = msg
                    .header(HeaderName::Other("Min-Expires"))
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > reg.requested && !unregistering => {
                        reg.requested = min;
                        self.send_register(now, min);
                    }
                    _ => self.on_register_failure(
                        now,
                        key,
                        "423 without a usable Min-Expires".into(),
                    ),
                }
            }
            _ => {
                let why = format!("{code} {}", msg.reason().unwrap_or(""));
                self.on_register_failure(now, key, why);
            }
        }
    }

    fn on_register_failure(&mut self, now: Instant, key: &str, reason: String) {
        let Some(reg) = &mut self.registration else {
            return;
        };
        match &reg.state {
            RegState::Unregistering(k) if k == key => {
                reg.state = RegState::Done;
                self.events.push_back(Event::Unregistered);
            }
            RegState::InFlight(k) if k == key => {
                // Each retry starts its digest exchange afresh: the client's count of
                // challenges in a row must not carry over and make it give up for good.
                reg.auth.clear();
                // Still registered while the last granted binding lasts.
                reg.registered = reg.binding_expires.is_some_and(|t| now < t);
                let wait = reg.backoff;
                reg.backoff = (reg.backoff * 2).min(REGISTER_BACKOFF_MAX);
                reg.state = RegState::Due(now + wait);
                log::warn!("proxy account registration failed ({reason}); retry in {wait:?}");
                self.events.push_back(Event::RegistrationFailed { reason });
            }
            _ => {}
        }
    }
}

/// Our branch parameters start with the RFC 3261 magic cookie and a mark of our own,
/// so a Via of ours is recognised when a request loops back.
const BRANCH_PREFIX: &str = "z9hG4bK-sg-";

/// When to refresh a registration granted for `granted` seconds: early enough that a
/// retransmitted REGISTER (up to Timer F) still lands before the binding expires.
pub fn refresh_after(granted: u32) -> Duration {
    let granted = Duration::from_secs(u64::from(granted));
    let margin = (granted / 2).min(TIMER_F + Duration::from_secs(8));
    granted - margin
}

enum AuthOutcome {
    Ok(String),
    Challenge(Vec<(&'static str, String)>),
    Forbidden,
    BadRequest,
}

/// Whether a Contact URI in a registrar's 2xx is the one srgate registered: same user,
/// same address, same port (compared as values, not as text: `21000@…` or port 50860 is
/// someone else's binding).
fn is_our_contact(uri: &crate::wire::sip::Uri<'_>, user: &str, local: SocketAddr) -> bool {
    use crate::wire::sip::Host;
    let host_ok = match uri.host {
        Host::V4(ip) => std::net::IpAddr::V4(ip) == local.ip(),
        Host::V6(ip) => std::net::IpAddr::V6(ip) == local.ip(),
        Host::Name(_) => false,
    };
    uri.user == Some(user) && host_ok && uri.port.unwrap_or(5060) == local.port()
}

fn key_transport_reliable(txs: &HashMap<ServerKey, ServerTx>, key: &ServerKey) -> bool {
    txs.get(key).is_some_and(|tx| tx.destination.0.reliable())
}

fn method_key(m: &Method<'_>) -> &'static str {
    match m {
        Method::Invite | Method::Ack => "INVITE",
        Method::Cancel => "CANCEL",
        Method::Register => "REGISTER",
        Method::Options => "OPTIONS",
        Method::Bye => "BYE",
        Method::Info => "INFO",
        _ => "OTHER",
    }
}

/// RFC 3261 §18.2.2 with RFC 3581: where a response to a request from `source` goes.
fn response_destination(transport: Transport, source: SocketAddr, via: &Via<'_>) -> SocketAddr {
    if transport.reliable() || via.rport.is_some() {
        return source;
    }
    SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
}

/// The headers every response to `msg` copies (RFC 3261 §8.2.6.2): all Vias (the top
/// one with `received` and, when asked, `rport` filled in), From, To (with our tag for
/// answers above 100), Call-ID and CSeq.
fn response_head(
    msg: &Message<'_>,
    ids: &RequestIds<'_>,
    source: SocketAddr,
    to_tag: Option<&str>,
) -> Vec<(HeaderName<'static>, String)> {
    let mut head = Vec::with_capacity(8);
    let mut first = true;
    for value in msg.header_all(HeaderName::Via) {
        if first {
            first = false;
            let (top, rest) = split_first_via(value);
            let mut top = top.trim().to_string();
            if ids.via.rport == Some(None) {
                // "rport" without a value: fill in the source port (RFC 3581 §4).
                top = fill_rport(&top, source.port());
            }
            if ids.via.received.is_none() {
                top.push_str(&format!(";received={}", source.ip()));
            }
            match rest {
                Some(rest) => head.push((HeaderName::Via, format!("{top},{rest}"))),
                None => head.push((HeaderName::Via, top)),
            }
        } else {
            head.push((HeaderName::Via, value.trim().to_string()));
        }
    }
    if let Some(v) = msg.header(HeaderName::From) {
        head.push((HeaderName::From, v.trim().to_string()));
    }
    if let Some(v) = msg.header(HeaderName::To) {
        let v = v.trim();
        head.push((
            HeaderName::To,
            match to_tag {
                Some(tag) => format!("{v};tag={tag}"),
                None => v.to_string(),
            },
        ));
    }
    if let Some(v) = msg.header(HeaderName::CallId) {
        head.push((HeaderName::CallId, v.trim().to_string()));
    }
    if let Some(v) = msg.header(HeaderName::CSeq) {
        head.push((HeaderName::CSeq, v.trim().to_string()));
    }
    head
}

/// Splits the first Via of a header value from the rest ("a, b" → "a", " b").
fn split_first_via(value: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    for (i, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => return (&value[..i], Some(&value[i + 1..])),
            _ => {}
        }
    }
    (value, None)
}

/// Replaces a bare `rport` parameter in a Via value with `rport=PORT`.
fn fill_rport(via: &str, port: u16) -> String {
    let mut out = String::with_capacity(via.len() + 8);
    for (i, part) in via.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        if part.trim().eq_ignore_ascii_case("rport") {
            out.push_str(&format!("rport={port}"));
        } else {
            out.push_str(part);
        }
    }
    out
}

fn build_response(
    head: &[(HeaderName<'static>, String)],
    code: u16,
    reason: &str,
    extra: &[(&str, String)],
) -> Vec<u8> {
    let reason = if reason.is_empty() {
        reason_phrase(code)
    } else {
        reason
    };
    let mut b = MessageBuilder::response(code, reason);
    for (name, value) in head {
        b = b.header(*name, value);
    }
    for (name, value) in extra {
        b = b.header(HeaderName::new(name), value);
    }
    b.build()
}

/// Option tags srgate supports in `Require` (none yet).
const SUPPORTED_OPTIONS: &[&str] = &[];

/// RFC 3261 §8.2.2.3: a `Require` naming an extension we do not support → 420 listing it.
fn unsupported_require(msg: &Message<'_>) -> Option<String> {
    let bad: Vec<&str> = msg
        .header_all(HeaderName::Require)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !SUPPORTED_OPTIONS.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

/// A response to a request the parser rejected, built from its raw lines when the five
/// headers a response needs can be found; `None` means drop (a response, or too broken).
fn bad_request_response(data: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let head_end = find(data, b"\r\n\r\n").unwrap_or(data.len());
    let head = std::str::from_utf8(&data[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    if start.starts_with("SIP/") || !start.contains(" SIP/") {
        return None; // a response, or not SIP at all: never answer those
    }
    if start.starts_with("ACK ") {
        return None; // ACKs are never answered
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    let mut need = [false; 5]; // via, from, to, call-id, cseq
    for line in lines {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let idx = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => 0,
            "from" | "f" => 1,
            "to" | "t" => 2,
            "call-id" | "i" => 3,
            "cseq" => 4,
            _ => continue,
        };
        need[idx] = true;
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !need.iter().all(|x| *x) {
        return None;
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRGATE: &str = "127.0.0.1:5086";
    const PHONE: &str = "127.0.0.1:5062";
    const PBX: &str = "127.0.0.1:5060";

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn standalone() -> EndpointConfig {
        EndpointConfig {
            local: addr(SRGATE),
            domain: "127.0.0.1".into(),
            server: None,
            proxy: None,
            users: vec![("1001".into(), "pw1001".into())],
            digest: vec![Algorithm::Md5, Algorithm::Sha256],
            seed: [7; 32],
            user_agent: "srgate/test".into(),
        }
    }

    fn proxy_mode() -> EndpointConfig {
        EndpointConfig {
            server: Some(Server {
                addr: addr(PBX),
                transport: Transport::Udp,
                host_port: PBX.into(),
            }),
            proxy: Some(ProxyAccount {
                user: "1000".into(),
                password: "1234".into(),
                expires: 300,
            }),
            users: vec![],
            ..standalone()
        }
    }

    #[test]
    fn debug_output_shows_no_password() {
        let text = format!("{:?} {:?}", standalone(), proxy_mode());
        assert!(text.contains("1001") && text.contains("1000"), "{text}");
        assert!(!text.contains("pw1001") && !text.contains("1234"), "{text}");
    }

    /// A request from the phone; `extra` goes before Content-Length.
    fn request(method: &str, uri: &str, branch: &str, cseq: u32, extra: &str) -> String {
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@127.0.0.1>;tag=ft1\r\n\
             To: <sip:1001@127.0.0.1>\r\n\
             Call-ID: call-{branch}\r\n\
             CSeq: {cseq} {method}\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    }

    fn send(ep: &mut Endpoint, now: Instant, from: &str, text: &str) {
        ep.handle_receive(now, Transport::Udp, addr(from), text.as_bytes());
    }

    fn sent(ep: &mut Endpoint) -> Vec<Transmit> {
        std::iter::from_fn(|| ep.poll_transmit()).collect()
    }

    /// The status code of a response, read from its status line (a 400 may carry the very
    /// header that made the request unparseable).
    fn status_of(t: &Transmit) -> u16 {
        let text = std::str::from_utf8(&t.payload).unwrap();
        assert!(text.starts_with("SIP/2.0 "), "{text}");
        text[8..11].parse().unwrap()
    }

    fn only_status(ep: &mut Endpoint) -> (u16, String) {
        let out = sent(ep);
        assert_eq!(out.len(), 1, "exactly one message expected, got {out:?}");
        (
            status_of(&out[0]),
            String::from_utf8(out[0].payload.clone()).unwrap(),
        )
    }

    #[test]
    fn options_gets_200_with_allow_accept_rport_and_to_tag() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        // the phone's Via says 5062 but the datagram comes from 40000 (NAT): rport wins
        ep.handle_receive(
            now,
            Transport::Udp,
            addr("127.0.0.1:40000"),
            request("OPTIONS", "sip:127.0.0.1:5086", "o1", 1, "").as_bytes(),
        );
        let out = sent(&mut ep);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].destination, addr("127.0.0.1:40000"));
        let msg = Message::parse(&out[0].payload).unwrap();
        assert_eq!(msg.status(), Some(200));
        assert!(msg.header(HeaderName::Allow).unwrap().contains("INVITE"));
        assert_eq!(msg.header(HeaderName::Accept), Some("application/sdp"));
        let via = msg.top_via().unwrap();
        assert_eq!(via.rport, Some(Some(40000)));
        assert_eq!(via.received, Some("127.0.0.1"));
        assert!(msg.to().unwrap().tag.is_some());
        assert_eq!(msg.cseq().unwrap().seq, 1);
    }

    #[test]
    fn without_rport_the_response_goes_to_the_via_port() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let text = request("OPTIONS", "sip:127.0.0.1:5086", "o2", 1, "").replace(";rport", "");
        ep.handle_receive(
            now,
            Transport::Udp,
            addr("127.0.0.1:40000"),
            text.as_bytes(),
        );
        assert_eq!(sent(&mut ep)[0].destination, addr(PHONE));
    }

    /// Answers the first challenge in `response` as a phone would.
    fn credentials(
        response: &str,
        method: &str,
        uri: &str,
        user: &str,
        password: &str,
        proxy: bool,
    ) -> String {
        let msg = Message::parse(response.as_bytes()).unwrap();
        let name = if proxy {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        let challenge = auth::Challenge::parse(msg.header(name).unwrap()).unwrap();
        let value = auth::credentials(&challenge, method, uri, user, password, "0a4f113b", 1);
        let header = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        format!("{header}: {value}\r\n")
    }

    #[test]
    fn register_digest_challenge_order_success_wrong_password_and_unregister() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let contact = "Contact: <sip:1001@127.0.0.1:5062>\r\nExpires: 600\r\n";
        send(
            &mut ep,
            now,
            PHONE,
            &request("REGISTER", "sip:127.0.0.1", "r1", 1, contact),
        );
        let (code, text) = only_status(&mut ep);
        assert_eq!(code, 401);
        let md5 = text.find("algorithm=MD5").expect("MD5 challenge");
        let sha = text.find("algorithm=SHA-256").expect("SHA-256 challenge");
        assert!(md5 < sha, "MD5 first, as [sip] digest says");

        let auth = credentials(&text, "REGISTER", "sip:127.0.0.1", "1001", "pw1001", false);
        send(
            &mut ep,
            now,
            PHONE,
            &request(
                "REGISTER",
                "sip:127.0.0.1",
                "r2",
                2,
                &format!("{contact}{auth}"),
            ),
        );
        let (code, text) = only_status(&mut ep);
        assert_eq!(code, 200, "{text}");
        assert!(
            text.contains("<sip:1001@127.0.0.1:5062>;expires=600"),
            "{text}"
        );
        assert!(ep.registrar().is_registered(now, "1001"));

        let wrong = credentials(
            &text_401(&mut ep, now),
            "REGISTER",
            "sip:127.0.0.1",
            "1001",
            "nope",
            false,
        );
        send(
            &mut ep,
            now,
            PHONE,
            &request(
                "REGISTER",
                "sip:127.0.0.1",
                "r3",
                3,
                &format!("{contact}{wrong}"),
            ),
        );
        assert_eq!(only_status(&mut ep).0, 403);

        let auth = credentials(
            &text_401(&mut ep, now),
            "REGISTER",
            "sip:127.0.0.1",
            "1001",
            "pw1001",
            false,
        );
        send(
            &mut ep,
            now,
            PHONE,
            &request(
                "REGISTER",
                "sip:127.0.0.1",
                "r4",
                4,
                &format!("Contact: *\r\nExpires: 0\r\n{auth}"),
            ),
        );
        assert_eq!(only_status(&mut ep).0, 200);
        assert!(
            !ep.registrar().is_registered(now, "1001"),
            "wildcard un-REGISTER removed it"
        );
    }

    fn text_401(ep: &mut Endpoint, now: Instant) -> String {
        send(
            ep,
            now,
            PHONE,
            &request("REGISTER", "sip:127.0.0.1", "rx", 1, ""),
        );
        let (code, text) = only_status(ep);
        assert_eq!(code, 401);
        text
    }

    #[test]
    fn unknown_user_and_someone_elses_aor_are_forbidden() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let challenge = text_401(&mut ep, now);
        let auth = credentials(&challenge, "REGISTER", "sip:127.0.0.1", "9999", "x", false);
        send(
            &mut ep,
            now,
            PHONE,
            &request(
                "REGISTER",
                "sip:127.0.0.1",
                "u1",
                2,
                &format!("Contact: <sip:9999@h>\r\n{auth}"),
            ),
        );
        assert_eq!(only_status(&mut ep).0, 403);
        // right credentials of 1001 but binding 1002's address-of-record
        let auth = credentials(
            &challenge,
            "REGISTER",
            "sip:127.0.0.1",
            "1001",
            "pw1001",
            false,
        );
        let text = request(
            "REGISTER",
            "sip:127.0.0.1",
            "u2",
            3,
            &format!("Contact: <sip:1002@h>\r\n{auth}"),
        )
        .replace("To: <sip:1001@", "To: <sip:1002@");
        send(&mut ep, now, PHONE, &text);
        assert_eq!(only_status(&mut ep).0, 403);
    }

    #[test]
    fn stale_nonce_is_rechallenged_with_stale_true() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let auth = credentials(
            &text_401(&mut ep, now),
            "REGISTER",
            "sip:127.0.0.1",
            "1001",
            "pw1001",
            false,
        );
        let later = now + Duration::from_secs(3600);
        send(
            &mut ep,
            later,
            PHONE,
            &request(
                "REGISTER",
                "sip:127.0.0.1",
                "s1",
                2,
                &format!("Contact: <sip:1001@h>\r\n{auth}"),
            ),
        );
        let (code, text) = only_status(&mut ep);
        assert_eq!(code, 401);
        assert!(text.to_ascii_lowercase().contains("stale=true"), "{text}");
    }

    #[test]
    fn standalone_invite_needs_proxy_auth_then_an_offerless_one_gets_488_retransmitted_until_ack() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let uri = "sip:2000@127.0.0.1:5086";
        send(&mut ep, now, PHONE, &request("INVITE", uri, "i1", 1, ""));
        let (code, text) = only_status(&mut ep);
        assert_eq!(code, 407);
        send(&mut ep, now, PHONE, &request("ACK", uri, "i1", 1, ""));
        let auth = credentials(&text, "INVITE", uri, "1001", "pw1001", true);
        let invite = request("INVITE", uri, "i2", 2, &auth);
        send(&mut ep, now, PHONE, &invite);
        assert_eq!(only_status(&mut ep).0, 488);
        // Timer G: the 488 is sent again after T1, then 2*T1, until the ACK
        ep.handle_timeout(now + Duration::from_millis(499));
        assert!(sent(&mut ep).is_empty());
        ep.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(only_status(&mut ep).0, 488);
        // a retransmitted INVITE is absorbed: the 488 again, nothing new
        send(&mut ep, now + Duration::from_millis(600), PHONE, &invite);
        assert_eq!(only_status(&mut ep).0, 488);
        let ack = request("ACK", uri, "i2", 2, "");
        send(&mut ep, now + Duration::from_millis(700), PHONE, &ack);
        assert!(sent(&mut ep).is_empty(), "ACK is never answered");
        ep.handle_timeout(now + Duration::from_secs(2));
        assert!(sent(&mut ep).is_empty(), "no retransmission after the ACK");
        // Timer I ends the transaction
        ep.handle_timeout(now + Duration::from_secs(10));
        assert_eq!(ep.server_txs.len(), 0);
    }

    #[test]
    fn standalone_invite_with_wrong_password_is_forbidden() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let uri = "sip:2000@127.0.0.1:5086";
        send(&mut ep, now, PHONE, &request("INVITE", uri, "w1", 1, ""));
        let (_, text) = only_status(&mut ep);
        let auth = credentials(&text, "INVITE", uri, "1001", "bad", true);
        send(&mut ep, now, PHONE, &request("INVITE", uri, "w2", 2, &auth));
        assert_eq!(only_status(&mut ep).0, 403);
    }

    #[test]
    fn proxy_mode_trusts_only_sip_svr() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        sent(&mut ep); // the first REGISTER
        let invite = request(
            "INVITE",
            "sip:1000@127.0.0.1:5086",
            "p1",
            1,
            "X-Number: <sip:1234@127.0.0.1>\r\n",
        );
        send(
            &mut ep,
            now,
            "127.0.0.1:6666",
            &invite.replace(PHONE, "127.0.0.1:6666"),
        );
        assert_eq!(only_status(&mut ep).0, 403, "a stranger may not call");
        let from_pbx = invite
            .replace(PHONE, PBX)
            .replace("z9hG4bKp1", "z9hG4bKp2")
            .replace("call-p1", "call-p2");
        send(&mut ep, now, PBX, &from_pbx);
        assert_eq!(
            only_status(&mut ep).0,
            488,
            "the PBX may; an INVITE without an SDP offer gets 488"
        );
    }

    #[test]
    fn error_answers() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let uri = "sip:127.0.0.1:5086";
        send(&mut ep, now, PHONE, &request("CANCEL", uri, "c1", 1, ""));
        assert_eq!(only_status(&mut ep).0, 481, "CANCEL of nothing");
        send(
            &mut ep,
            now,
            PHONE,
            &request("BYE", uri, "b1", 1, "")
                .replace("To: <sip:1001@127.0.0.1>", "To: <sip:1001@127.0.0.1>;tag=x"),
        );
        assert_eq!(only_status(&mut ep).0, 481, "BYE outside any dialog");
        send(
            &mut ep,
            now,
            PHONE,
            &request("INVITE", uri, "m1", 1, "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
        );
        assert_eq!(only_status(&mut ep).0, 483);
        send(&mut ep, now, PHONE, &request("FOO", uri, "f1", 1, ""));
        let (code, text) = only_status(&mut ep);
        assert_eq!(code, 501);
        assert!(text.contains("Allow:"));
        send(&mut ep, now, PHONE, &request("SUBSCRIBE", uri, "s1", 1, ""));
        assert_eq!(only_status(&mut ep).0, 405);
        send(
            &mut ep,
            now,
            PHONE,
            &request("OPTIONS", uri, "q1", 1, "Require: 100rel, foo\r\n"),
        );
        let (code, text) = only_status(&mut ep);
        assert_eq!(code, 420);
        assert!(text.contains("Unsupported: 100rel, foo"), "{text}");
        send(
            &mut ep,
            now,
            PHONE,
            &request("OPTIONS", "tel:+123", "t1", 1, ""),
        );
        assert_eq!(only_status(&mut ep).0, 416);
        // a request that went through srgate before (its own Via) → loop
        let looped = request(
            "OPTIONS",
            uri,
            "l1",
            1,
            "Via: SIP/2.0/UDP 127.0.0.1:5086;branch=z9hG4bK-sg-abc\r\n",
        );
        send(&mut ep, now, PHONE, &looped);
        assert_eq!(only_status(&mut ep).0, 482);
    }

    #[test]
    fn a_merged_request_is_a_loop() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        sent(&mut ep);
        // a call from the PBX (trusted: its transaction is kept)
        let first = request("INVITE", "sip:1000@127.0.0.1:5086", "g1", 1, "").replace(PHONE, PBX);
        send(&mut ep, now, PBX, &first);
        assert_eq!(only_status(&mut ep).0, 488);
        // the same request (Call-ID, From tag, CSeq) by another path: another branch
        send(&mut ep, now, PBX, &first.replace("z9hG4bKg1", "z9hG4bKg2"));
        assert_eq!(only_status(&mut ep).0, 482);
    }

    #[test]
    fn strangers_and_challenges_leave_no_state_and_get_the_same_answer_again() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let uri = "sip:2000@127.0.0.1:5086";
        let invite = request("INVITE", uri, "st1", 1, "");
        send(&mut ep, now, PHONE, &invite);
        let (code, first) = only_status(&mut ep);
        assert_eq!(code, 407);
        assert!(ep.server_txs.is_empty(), "a challenge keeps nothing");
        ep.handle_timeout(now + Duration::from_millis(500));
        assert!(
            sent(&mut ep).is_empty(),
            "and is never retransmitted (no reflection)"
        );
        send(&mut ep, now, PHONE, &invite);
        let (_, again) = only_status(&mut ep);
        let tag = |t: &str| {
            Message::parse(t.as_bytes())
                .unwrap()
                .to()
                .unwrap()
                .tag
                .map(str::to_string)
        };
        assert_eq!(
            tag(&first),
            tag(&again),
            "the retransmitted request gets the same To tag"
        );
        send(&mut ep, now, PHONE, &request("OPTIONS", uri, "st2", 1, ""));
        assert_eq!(only_status(&mut ep).0, 200);
        assert!(ep.server_txs.is_empty(), "OPTIONS keeps nothing");
    }

    #[test]
    fn cancel_of_a_pending_invite_gets_200_and_the_invite_487() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let uri = "sip:2000@127.0.0.1:5086";
        // An INVITE still waiting for its callee (the call side answers later): its server
        // transaction exists and has no final answer yet.
        let invite = request("INVITE", uri, "pend1", 1, "");
        let msg = Message::parse(invite.as_bytes()).unwrap();
        let ids = Endpoint::request_ids(&msg).unwrap();
        let head = response_head(&msg, &ids, addr(PHONE), Some("tt1"));
        let key: ServerKey = (ids.branch.clone(), ids.sent_by.clone(), "INVITE");
        ep.server_txs.insert(
            key.clone(),
            ServerTx {
                machine: ServerMachine::Invite(ServerInviteTransaction::new(now, false)),
                destination: (Transport::Udp, addr(PHONE)),
                head,
                origin: (
                    ids.call_id.to_string(),
                    ids.from_tag.to_string(),
                    ids.cseq,
                    "INVITE",
                ),
                final_sent: false,
                keep: true,
            },
        );
        ep.respond(now, &key, 180, "Ringing", &[]);
        assert_eq!(only_status(&mut ep).0, 180);
        send(&mut ep, now, PHONE, &request("CANCEL", uri, "pend1", 1, ""));
        let out = sent(&mut ep);
        let codes: Vec<u16> = out.iter().map(status_of).collect();
        assert_eq!(
            codes,
            vec![200, 487],
            "200 for the CANCEL, 487 ends the INVITE"
        );
        let cseq_of = |t: &Transmit| Message::parse(&t.payload).unwrap().cseq().unwrap().seq;
        assert!(String::from_utf8_lossy(&out[0].payload).contains("CSeq: 1 CANCEL"));
        assert!(String::from_utf8_lossy(&out[1].payload).contains("CSeq: 1 INVITE"));
        assert_eq!(cseq_of(&out[1]), 1);
        let to_tag = |t: &Transmit| {
            Message::parse(&t.payload)
                .unwrap()
                .to()
                .unwrap()
                .tag
                .map(str::to_string)
        };
        assert_eq!(
            to_tag(&out[0]).as_deref(),
            Some("tt1"),
            "the CANCEL's 200 has the INVITE's To tag (RFC 3261 §9.2)"
        );
        assert_eq!(to_tag(&out[1]).as_deref(), Some("tt1"));
        // the CANCEL of a kept INVITE is a real transaction: a copy of it is absorbed
        let absorbed = ep.metrics.retransmissions_absorbed;
        send(&mut ep, now, PHONE, &request("CANCEL", uri, "pend1", 1, ""));
        let (code, again) = only_status(&mut ep);
        assert_eq!(code, 200);
        assert!(again.contains("CSeq: 1 CANCEL") && again.contains("tag=tt1"));
        assert_eq!(ep.metrics.retransmissions_absorbed, absorbed + 1);
        // the 487 waits for its ACK (Timer G) like any non-2xx final answer
        ep.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(only_status(&mut ep).0, 487);
    }

    #[test]
    fn cancel_after_the_final_answer_gets_200_only() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        sent(&mut ep);
        let uri = "sip:1000@127.0.0.1:5086";
        send(
            &mut ep,
            now,
            PBX,
            &request("INVITE", uri, "k1", 1, "").replace(PHONE, PBX),
        );
        assert_eq!(only_status(&mut ep).0, 488);
        send(
            &mut ep,
            now,
            PBX,
            &request("CANCEL", uri, "k1", 1, "").replace(PHONE, PBX),
        );
        assert_eq!(
            only_status(&mut ep).0,
            200,
            "the INVITE is known but already answered"
        );
    }

    #[test]
    fn oversized_via_from_to_are_refused_statelessly_even_from_sip_svr() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        sent(&mut ep);
        let uri = "sip:1000@127.0.0.1:5086";
        // 20 proxies on the way, each with a 200-character branch: 5 KB to copy
        let pad = "x".repeat(200);
        let vias: String = (0..20)
            .map(|i| format!("Via: SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bK{i}{pad}\r\n"))
            .collect();
        let big = request("INVITE", uri, "big1", 1, "")
            .replace(PHONE, PBX)
            .replacen("Max-Forwards", &format!("{vias}Max-Forwards"), 1);
        assert!(big.len() > MAX_RESPONSE_HEAD + 100);
        send(&mut ep, now, PBX, &big);
        let (code, text) = only_status(&mut ep);
        assert_eq!(code, 400, "{text}");
        assert!(ep.server_txs.is_empty(), "nothing of it is kept");
        // below the bound the same call is served (and kept, as it comes from sip_svr)
        let small = request("INVITE", uri, "big2", 1, "").replace(PHONE, PBX);
        send(&mut ep, now, PBX, &small);
        assert_eq!(only_status(&mut ep).0, 488);
        assert_eq!(ep.server_txs.len(), 1);
    }

    #[test]
    fn overload_503_is_stateless_and_has_a_to_tag() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let filler = request("INVITE", "sip:2000@127.0.0.1", "fill", 1, "");
        let msg = Message::parse(filler.as_bytes()).unwrap();
        let ids = Endpoint::request_ids(&msg).unwrap();
        for i in 0..MAX_SERVER_TRANSACTIONS {
            ep.server_txs.insert(
                (format!("z9hG4bKfill{i}"), "127.0.0.1:5062".into(), "INVITE"),
                ServerTx {
                    machine: ServerMachine::Invite(ServerInviteTransaction::new(now, false)),
                    destination: (Transport::Udp, addr(PHONE)),
                    head: Vec::new(),
                    origin: (ids.call_id.to_string(), format!("f{i}"), 1, "INVITE"),
                    final_sent: false,
                    keep: true,
                },
            );
        }
        let options = request("OPTIONS", "sip:127.0.0.1:5086", "ov1", 1, "");
        send(&mut ep, now, PHONE, &options);
        let (code, first) = only_status(&mut ep);
        assert_eq!(code, 503);
        assert_eq!(ep.server_txs.len(), MAX_SERVER_TRANSACTIONS);
        let tag = |t: &str| {
            Message::parse(t.as_bytes())
                .unwrap()
                .to()
                .unwrap()
                .tag
                .map(str::to_string)
        };
        assert!(tag(&first).is_some(), "{first}");
        send(&mut ep, now, PHONE, &options);
        let (_, again) = only_status(&mut ep);
        assert_eq!(
            tag(&first),
            tag(&again),
            "the same answer to the same request"
        );
    }

    #[test]
    fn malformed_requests_get_400_or_are_dropped_and_counted() {
        let now = t0();
        let mut ep = Endpoint::new(standalone(), now);
        let no_cseq = request("OPTIONS", "sip:127.0.0.1", "x1", 1, "")
            .replace("CSeq: 1 OPTIONS\r\n", "CSeq: one OPTIONS\r\n");
        send(&mut ep, now, PHONE, &no_cseq);
        let (code, _) = only_status(&mut ep);
        assert_eq!(code, 400);
        send(
            &mut ep,
            now,
            PHONE,
            "\x16\x03\x01garbage that is not SIP\r\n\r\n",
        );
        assert!(sent(&mut ep).is_empty());
        send(&mut ep, now, PHONE, "SIP/2.0 200 OK\r\nVia: x\r\n\r\n");
        assert!(
            sent(&mut ep).is_empty(),
            "broken responses are never answered"
        );
        let m: HashMap<_, _> = ep.metrics().into_iter().collect();
        assert!(m["sip_parse_errors_total"] >= 2);
        assert!(m["sip_dropped_total"] >= 1);
        // and keepalives are ignored silently
        send(&mut ep, now, PHONE, "\r\n\r\n");
        assert!(sent(&mut ep).is_empty());
    }

    /// Plays the registrar for the proxy account's REGISTER in `t`.
    fn registrar_answer(t: &Transmit, code: u16, extra: &str) -> String {
        let msg = Message::parse(&t.payload).unwrap();
        let mut out = format!("SIP/2.0 {code} {}\r\n", reason_phrase(code));
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            out.push_str(&format!(
                "{}: {}\r\n",
                name.as_str(),
                msg.header(name).unwrap()
            ));
        }
        out.push_str(extra);
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }

    #[test]
    fn proxy_account_registers_with_digest_refreshes_backs_off_and_unregisters() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        ep.handle_timeout(now);
        let first = sent(&mut ep);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].destination, addr(PBX));
        assert!(!ep.is_registered());
        let reg = Message::parse(&first[0].payload).unwrap();
        assert_eq!(reg.method(), Some(Method::Register));
        assert_eq!(reg.expires().unwrap(), Some(300));
        assert!(reg.header(HeaderName::Authorization).is_none());

        send(
            &mut ep,
            now,
            PBX,
            &registrar_answer(
                &first[0],
                401,
                "WWW-Authenticate: Digest realm=\"127.0.0.1\", nonce=\"n1\", qop=\"auth\", algorithm=MD5\r\n",
            ),
        );
        let second = sent(&mut ep);
        assert_eq!(second.len(), 1);
        let reg2 = Message::parse(&second[0].payload).unwrap();
        let creds = reg2
            .header(HeaderName::Authorization)
            .expect("answers the challenge");
        assert!(creds.contains("username=\"1000\"") && creds.contains("nonce=\"n1\""));
        assert_eq!(
            reg2.call_id().unwrap(),
            reg.call_id().unwrap(),
            "same Call-ID"
        );
        assert_eq!(reg2.cseq().unwrap().seq, reg.cseq().unwrap().seq + 1);

        send(
            &mut ep,
            now,
            PBX,
            &registrar_answer(
                &second[0],
                200,
                "Contact: <sip:1000@127.0.0.1:5086>;expires=120\r\n",
            ),
        );
        assert!(ep.is_registered());
        assert_eq!(ep.poll_event(), Some(Event::Registered { expires: 120 }));
        assert_eq!(refresh_after(120), Duration::from_secs(80));
        ep.handle_timeout(now + Duration::from_secs(79));
        assert!(sent(&mut ep).is_empty(), "no refresh before 80 s");

        // refresh: sent with credentials already (no round trip); the registrar is gone
        let t1 = now + Duration::from_secs(80);
        ep.handle_timeout(t1);
        let refresh = sent(&mut ep);
        assert_eq!(refresh.len(), 1);

        assert!(
            Message::parse(&refresh[0].payload)
                .unwrap()
                .header(HeaderName::Authorization)
                .is_some()
        );
        // retransmissions (Timer E) then Timer F
        let mut retransmits = 0;
        for ms in (500..=32_000).step_by(250) {
            ep.handle_timeout(t1 + Duration::from_millis(ms));
            retransmits += sent(&mut ep).len();
        }
        assert!(retransmits >= 6, "timer E retransmitted ({retransmits})");
        // the refresh failed at 112 s, but the binding granted at 0 lasts until 120 s
        assert!(
            ep.is_registered(),
            "still registered while the binding lasts"
        );
        assert!(matches!(
            ep.poll_event(),
            Some(Event::RegistrationFailed { .. })
        ));
        // backoff 2 s, then 4 s
        let t2 = t1 + TIMER_F;
        assert_eq!(
            ep.poll_timeout()
                .map(|t| t > t2 && t <= t2 + REGISTER_BACKOFF_FIRST),
            Some(true)
        );

        // shutdown while not registered: nothing to un-register
        let mut ep2 = Endpoint::new(proxy_mode(), now);
        ep2.shutdown(now);
        assert!(ep2.is_shutdown_complete());
    }

    #[test]
    fn registration_ends_when_the_binding_expires_unrefreshed() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        ep.handle_timeout(now);
        let first = sent(&mut ep);
        send(
            &mut ep,
            now,
            PBX,
            &registrar_answer(&first[0], 200, "Expires: 10\r\n"),
        );
        assert!(ep.is_registered());
        assert_eq!(ep.poll_event(), Some(Event::Registered { expires: 10 }));
        ep.handle_timeout(now + refresh_after(10));
        assert_eq!(
            sent(&mut ep).len(),
            1,
            "refresh sent at 5 s; the registrar is gone"
        );
        ep.handle_timeout(now + Duration::from_millis(9_999));
        sent(&mut ep);
        assert!(ep.is_registered());
        assert_eq!(
            ep.poll_timeout()
                .map(|t| t <= now + Duration::from_secs(10)),
            Some(true)
        );
        ep.handle_timeout(now + Duration::from_secs(10));
        assert!(!ep.is_registered(), "the binding ran out at 10 s");
        assert!(matches!(
            ep.poll_event(),
            Some(Event::RegistrationFailed { .. })
        ));
        // the refresh is still being retransmitted: a registrar back in time answers it
        ep.handle_timeout(now + Duration::from_secs(12));
        let again = sent(&mut ep);
        assert_eq!(again.len(), 1, "timer E retransmission");
        send(
            &mut ep,
            now + Duration::from_secs(12),
            PBX,
            &registrar_answer(&again[0], 200, "Expires: 10\r\n"),
        );
        assert!(ep.is_registered());
    }

    #[test]
    fn granted_expiry_is_read_from_our_own_contact_only() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        ep.handle_timeout(now);
        let first = sent(&mut ep);
        // other bindings whose text contains "1000@127.0.0.1:5086" come first
        let contacts = "Contact: <sip:21000@127.0.0.1:5086>;expires=30\r\n\
                        Contact: <sip:1000@127.0.0.1:50860>;expires=40\r\n\
                        Contact: <sip:1000@127.0.0.1:5086;transport=udp>;expires=90\r\n\
                        Expires: 300\r\n";
        send(
            &mut ep,
            now,
            PBX,
            &registrar_answer(&first[0], 200, contacts),
        );
        assert_eq!(ep.poll_event(), Some(Event::Registered { expires: 90 }));
    }

    #[test]
    fn proxy_registration_recovers_after_repeated_auth_failures() {
        let mut now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        let mut n = 0;
        let mut challenge = || {
            n += 1;
            format!("WWW-Authenticate: Digest realm=\"r\", nonce=\"n{n}\", qop=\"auth\"\r\n")
        };
        for _ in 0..6 {
            ep.handle_timeout(now);
            let t = sent(&mut ep);
            assert_eq!(t.len(), 1, "a retry is sent");
            send(
                &mut ep,
                now,
                PBX,
                &registrar_answer(&t[0], 401, &challenge()),
            );
            let answered = sent(&mut ep);
            assert_eq!(answered.len(), 1, "every attempt answers its first 401");
            send(
                &mut ep,
                now,
                PBX,
                &registrar_answer(&answered[0], 401, &challenge()),
            );
            assert!(
                sent(&mut ep).is_empty(),
                "a second 401 means wrong credentials"
            );
            now = ep.poll_timeout().unwrap().max(now) + Duration::from_secs(61);
        }
    }

    #[test]
    fn shutdown_unregisters_with_expires_zero() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        ep.handle_timeout(now);
        let first = sent(&mut ep);
        send(
            &mut ep,
            now,
            PBX,
            &registrar_answer(&first[0], 200, "Expires: 300\r\n"),
        );
        assert!(ep.is_registered());
        ep.shutdown(now);
        assert!(!ep.is_shutdown_complete());
        let unreg = sent(&mut ep);
        assert_eq!(unreg.len(), 1);
        let m = Message::parse(&unreg[0].payload).unwrap();
        assert_eq!(m.expires().unwrap(), Some(0));
        send(&mut ep, now, PBX, &registrar_answer(&unreg[0], 200, ""));
        assert!(ep.is_shutdown_complete());
    }

    #[test]
    fn wrong_proxy_password_gives_up_instead_of_looping() {
        let now = t0();
        let mut ep = Endpoint::new(proxy_mode(), now);
        ep.handle_timeout(now);
        let challenge = "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"\r\n";
        let mut t = sent(&mut ep);
        send(&mut ep, now, PBX, &registrar_answer(&t[0], 401, challenge));
        t = sent(&mut ep);
        assert_eq!(t.len(), 1, "answered once");
        send(&mut ep, now, PBX, &registrar_answer(&t[0], 401, challenge));
        assert!(
            sent(&mut ep).is_empty(),
            "the same challenge again: credentials are wrong, stop"
        );
        assert!(matches!(
            ep.poll_event(),
            Some(Event::RegistrationFailed { .. })
        ));
    }
}
