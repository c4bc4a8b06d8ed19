//! What a request goes through before srgate trusts it (part of the SIP endpoint):
//! retransmissions absorbed by their transaction, stateless answers to what cannot be
//! kept (oversized heads → 400, a full table → 503), loops and merged requests → 482,
//! CANCEL, `Require` → 420, Max-Forwards → 483/400, URI scheme → 416, body type → 415,
//! OPTIONS → 200, unknown methods → 501, known but refused → 405, requests for no
//! dialog → 481; the INVITE's trust check (sip_svr in proxy mode) and the digest
//! challenges of standalone mode (401/407, 403, 400).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::responses::{bad_request_response, build_response, response_destination, response_head};
use super::{
    ALLOW, BRANCH_PREFIX, Endpoint, KNOWN_NOT_ALLOWED, MAX_RESPONSE_HEAD, MAX_SERVER_TRANSACTIONS,
    RequestIds, ServerKey, ServerMachine, ServerTx, Transmit, Transport,
};
use crate::config::MemberKind;
use crate::sip::auth;
use crate::sip::transaction::{ServerInviteTransaction, ServerTransaction};
use crate::wire::sip::{HeaderName, Message, Method};

impl Endpoint {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        msg: &Message<'_>,
    ) {
        if msg
            .header(HeaderName::UserAgent)
            .is_some_and(crate::sip::flood::is_scanner)
        {
            self.flood.scanners += 1;
            log::debug!("request from {source}: a SIP scanner's User-Agent; dropped");
            return;
        }
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
            } else if !self.call_ack(now, msg) {
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
            Method::Invite | Method::Bye | Method::Info | Method::Update => {
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
        let ours = [Some(self.cfg.local), self.cfg.tls_local];
        msg.vias().flatten().any(|v| {
            let port = v.port.unwrap_or(5060);
            let ip = match v.host {
                crate::wire::sip::Host::V4(ip) => std::net::IpAddr::V4(ip),
                crate::wire::sip::Host::V6(ip) => std::net::IpAddr::V6(ip),
                crate::wire::sip::Host::Name(_) => return false,
            };
            ours.iter()
                .flatten()
                .any(|o| o.port() == port && o.ip() == ip)
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
            self.call_cancelled(now, &invite_key);
        }
    }

    fn on_invite(&mut self, now: Instant, key: &ServerKey, source: SocketAddr, msg: &Message<'_>) {
        // Who the caller is, as far as srgate can vouch for it: the user that authenticated
        // (standalone), or what sip_svr asserts (P-Asserted-Identity); else the From.
        let asserted = match &self.cfg.server {
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
                if self.cfg.proxy.is_none() {
                    // [proxy] on = 0: srgate is not the PBX's gateway for app users
                    log::info!(
                        "INVITE from sip_svr refused: the proxy role is off ([proxy] on = 0)"
                    );
                    self.respond(now, key, 403, "Forbidden", &[]);
                    return;
                }
                asserted_identity(msg)
            }
            None => match self.authenticate(now, msg, true, source) {
                AuthOutcome::Ok(user) => Some(user),
                refused => return self.refuse_auth(now, key, refused, true),
            },
        };
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
        // a ring group's number rings its members: app members, and in standalone mode
        // its sip: members too, but not the caller itself (none left: nobody there)
        let standalone = self.cfg.server.is_none();
        let group: Option<Vec<(MemberKind, String)>> =
            self.cfg.groups.members(&callee).map(|members| {
                members
                    .into_iter()
                    .filter(|(kind, name)| match kind {
                        MemberKind::App => true,
                        MemberKind::Sip => standalone && asserted.as_deref() != Some(name),
                    })
                    .collect()
            });
        if group.as_ref().is_some_and(Vec::is_empty) {
            log::info!(
                "INVITE for ring group {}: no member to ring → 480",
                crate::pii::Pii(&callee)
            );
            self.respond(now, key, 480, "Temporarily Unavailable", &[]);
            return;
        }
        self.incoming_call(
            now,
            key,
            msg,
            &callee,
            asserted.as_deref(),
            group.as_deref(),
        );
    }

    /// Digest check of a REGISTER (`Authorization`, 401) or INVITE (`Proxy-Authorization`,
    /// 407) against `[users]`. Failures are limited per source and per user
    /// ([`auth::limit`]): a blocked source's credentials get 403 unchecked, and each
    /// counted failure is one log line naming the source (for fail2ban).
    pub(super) fn authenticate(
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
                self.flood.trust(now, source.ip());
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
}

impl Endpoint {
    /// Answers a request whose authentication did not pass: a challenge (407 for an
    /// INVITE's `Proxy-Authorization`, 401 otherwise), 403 or 400.
    pub(super) fn refuse_auth(
        &mut self,
        now: Instant,
        key: &ServerKey,
        outcome: AuthOutcome,
        proxy: bool,
    ) {
        match outcome {
            AuthOutcome::Challenge(headers) if proxy => {
                self.respond(now, key, 407, "Proxy Authentication Required", &headers)
            }
            AuthOutcome::Challenge(headers) => {
                self.respond(now, key, 401, "Unauthorized", &headers)
            }
            AuthOutcome::Forbidden => self.respond(now, key, 403, "Forbidden", &[]),
            AuthOutcome::BadRequest => self.respond(now, key, 400, "Bad Credentials", &[]),
            AuthOutcome::Ok(_) => {}
        }
    }
}

pub(super) enum AuthOutcome {
    Ok(String),
    Challenge(Vec<(&'static str, String)>),
    Forbidden,
    BadRequest,
}

/// The user part of a `P-Asserted-Identity` (RFC 3325) — only ever read from sip_svr,
/// which srgate trusts to assert it.
fn asserted_identity(msg: &Message<'_>) -> Option<String> {
    let value = msg.header(HeaderName::Other("P-Asserted-Identity"))?.trim();
    // the first identity: `"Name" <sip:…>`, `<sip:…>` or a bare URI
    let uri = match value.find('<') {
        Some(open) => value[open + 1..].split('>').next()?,
        None => value.split(',').next()?.trim(),
    };
    let user = crate::wire::sip::Uri::parse(uri).ok()?.user?;
    (!user.is_empty()).then(|| user.to_string())
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

/// The digest check's outcome for a SIP-over-WebSocket client (see
/// [`Endpoint::authenticate_ws`]).
#[derive(Debug)]
pub enum WsAuth {
    /// The credentials are right: the client is this `[users]` user.
    Ok(String),
    /// Answer with this status, reason and headers (a challenge, 403 or 400).
    Refused {
        code: u16,
        reason: &'static str,
        headers: Vec<(&'static str, String)>,
    },
}

impl Endpoint {
    /// The same digest check as a REGISTER (`proxy` false: 401) or INVITE (`proxy` true:
    /// 407) over UDP/TCP gets, for a client of the web listener's SIP-over-WebSocket
    /// (`peer`: its address, which the nonces are bound to and the failure limits count).
    pub fn authenticate_ws(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        proxy: bool,
        peer: SocketAddr,
    ) -> WsAuth {
        if self.cfg.server.is_some() {
            // proxy mode: `[users]` is the standalone registrar's
            return WsAuth::Refused {
                code: 403,
                reason: "Forbidden (no [users] in proxy mode)",
                headers: Vec::new(),
            };
        }
        match self.authenticate(now, msg, proxy, peer) {
            AuthOutcome::Ok(user) => WsAuth::Ok(user),
            AuthOutcome::Challenge(headers) => WsAuth::Refused {
                code: if proxy { 407 } else { 401 },
                reason: if proxy {
                    "Proxy Authentication Required"
                } else {
                    "Unauthorized"
                },
                headers,
            },
            AuthOutcome::Forbidden => WsAuth::Refused {
                code: 403,
                reason: "Forbidden",
                headers: Vec::new(),
            },
            AuthOutcome::BadRequest => WsAuth::Refused {
                code: 400,
                reason: "Bad Credentials",
                headers: Vec::new(),
            },
        }
    }

    /// The SIP domain (`[sip] domain`): the host of srgate's URIs.
    pub fn domain(&self) -> &str {
        &self.cfg.domain
    }

    /// `len` random lowercase hex characters (tags, branches, Call-IDs).
    pub fn token(&mut self, len: usize) -> String {
        self.rng.token(len)
    }
}
