//! The proxy account's own registration at `sip_svr` (RFC 3261 §10.2, digest as client),
//! the client side of the SIP endpoint: the REGISTER and its client transaction, the
//! answers (granted expiry, 401/407 with credentials, 423), refreshes before the binding
//! runs out, backoff after failures, and the un-REGISTER at shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{
    ALLOW, BRANCH_PREFIX, ClientTx, Endpoint, Event, REGISTER_BACKOFF_FIRST, REGISTER_BACKOFF_MAX,
    RegState, Transmit, Transport,
};
use crate::sip::auth;
use crate::sip::transaction::{ClientTransaction, Event as TxEvent, TIMER_F};
use crate::wire::sip::{Contact, HeaderName, Message, MessageBuilder, Method};

impl Endpoint {
    pub(super) fn send_register(&mut self, now: Instant, expires: u32) {
        let local = match &self.registration {
            Some(reg) => self.local_for(reg.server.transport),
            None => return,
        };
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
        self.start_client_tx(now, branch, payload, destination);
    }

    /// Starts the non-INVITE client transaction `branch` sending `payload` to
    /// `destination` (its first transmission goes out now).
    pub(super) fn start_client_tx(
        &mut self,
        now: Instant,
        branch: String,
        payload: Vec<u8>,
        destination: (Transport, SocketAddr),
    ) {
        let machine = ClientTransaction::new(now, payload, destination.0.reliable());
        self.client_txs.insert(
            branch.clone(),
            ClientTx {
                machine,
                destination,
            },
        );
        self.after_client_input(now, &branch, None);
    }

    /// Sends what a client transaction wants sent and acts on what it passes up.
    pub(super) fn after_client_input(
        &mut self,
        now: Instant,
        key: &str,
        msg: Option<&Message<'_>>,
    ) {
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
        if let Some(result) = &outcome
            && self.account_register_outcome(now, key, result.clone(), msg)
        {
            return;
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
        let local = match &self.registration {
            Some(reg) => self.local_for(reg.server.transport),
            None => return,
        };
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

    pub(super) fn on_register_failure(&mut self, now: Instant, key: &str, reason: String) {
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

/// When to refresh a registration granted for `granted` seconds: early enough that a
/// retransmitted REGISTER (up to Timer F) still lands before the binding expires.
pub fn refresh_after(granted: u32) -> Duration {
    let granted = Duration::from_secs(u64::from(granted));
    let margin = (granted / 2).min(TIMER_F + Duration::from_secs(8));
    granted - margin
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
