//! Per-call SIP accounts (part of the SIP endpoint's calls): a call placed from an account
//! its request names (the REST API's `sipLogin`, `sipAuthenticationName`, `sipPassword`,
//! `sipDomain`, `sipOutboundProxy`, `sipPort`, `sipRegisterRequired`) instead of the
//! `[proxy]` account or srgate's own name.
//!
//! The INVITE goes over UDP to the account's proxy with `From: sip:LOGIN@DOMAIN` and
//! Request-URI `sip:CALLEE@DOMAIN`, and answers 401/407 with the account's credentials.
//! With `register`, the account first registers there (REGISTER `sip:DOMAIN`, digest) and
//! the INVITE follows the 2xx; a registration that is refused or not answered fails the
//! call with the registrar's code (408 for no answer). The binding asks for
//! [`ACCOUNT_EXPIRES`] seconds and is removed (REGISTER with `Expires: 0`) as soon as the
//! call is over, or when the call is given up while it registers. It is not refreshed during
//! a call: the dialog does not depend on it. The password stays in the digest state: it
//! is never logged and never leaves in clear.

use std::net::SocketAddr;
use std::time::Instant;

use super::{SipCallId, Transport};
use crate::pii::{Pii, Secret};
use crate::sip::auth;
use crate::sip::endpoint::{ALLOW, BRANCH_PREFIX, Endpoint};
use crate::wire::sip::{HeaderName, Message, MessageBuilder, Method};

/// The binding a per-call account asks for, in seconds.
pub const ACCOUNT_EXPIRES: u32 = 3600;

/// How many challenges in a row a per-call REGISTER answers before it gives up.
const MAX_CHALLENGES: u8 = 2;

/// The account a call is placed from.
#[derive(Clone, Debug)]
pub struct CallAccount {
    /// The user part of `From` (and of the registered address).
    pub user: String,
    /// The digest user name.
    pub auth_user: String,
    pub password: Secret,
    /// The domain of `From`, of the Request-URI and of the registration.
    pub domain: String,
    /// Where the REGISTER and the INVITE go (UDP).
    pub proxy: SocketAddr,
    /// Register before calling (`sipRegisterRequired`).
    pub register: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegState {
    /// The REGISTER is out; the INVITE waits for its 2xx.
    Registering,
    /// Bound; removed when the call ends.
    Registered,
    /// `Expires: 0` is out.
    Unregistering,
}

/// One per-call account's registration.
#[derive(Debug)]
pub(in crate::sip::endpoint) struct AccountReg {
    request_uri: String,
    aor: String,
    contact: String,
    call_id: String,
    from_tag: String,
    cseq: u32,
    auth: auth::ClientAuth,
    destination: (Transport, SocketAddr),
    state: RegState,
    /// The call is over (or given up) while the REGISTER was out: a 2xx is undone at once.
    call_over: bool,
    challenges: u8,
    /// The branch of the REGISTER in flight.
    branch: String,
}

impl Endpoint {
    /// Starts registering `account` for call `id`; the INVITE follows its 2xx.
    pub(super) fn register_call_account(
        &mut self,
        now: Instant,
        id: SipCallId,
        account: &CallAccount,
        contact: &str,
    ) {
        let aor = format!("<sip:{}@{}>", account.user, account.domain);
        let reg = AccountReg {
            request_uri: format!("sip:{}", account.domain),
            aor,
            contact: contact.to_string(),
            call_id: format!("{}@srgate", self.rng.token(24)),
            from_tag: self.rng.token(16),
            cseq: 0,
            auth: auth::ClientAuth::with_seed(
                &account.auth_user,
                account.password.expose(),
                self.rng.bytes::<16>(),
            ),
            destination: (Transport::Udp, account.proxy),
            state: RegState::Registering,
            call_over: false,
            challenges: 0,
            branch: String::new(),
        };
        log::info!(
            "SIP call {id:?}: registering {} at {} first",
            Pii(&account.user),
            account.proxy
        );
        self.calls.accounts.insert(id, reg);
        self.send_account_register(now, id);
    }

    /// Whether a per-call account's binding is still there or being removed.
    pub(in crate::sip::endpoint) fn call_accounts_pending(&self) -> bool {
        !self.calls.accounts.is_empty()
    }

    /// Whether call `id` still waits for its account's registration (no INVITE yet).
    pub(super) fn account_registering(&self, id: SipCallId) -> bool {
        self.calls
            .accounts
            .get(&id)
            .is_some_and(|r| r.state == RegState::Registering && !r.call_over)
    }

    /// Call `id` is over: its account's binding goes (now, or once the REGISTER in flight
    /// is answered).
    pub(super) fn call_account_over(&mut self, now: Instant, id: SipCallId) {
        let Some(reg) = self.calls.accounts.get_mut(&id) else {
            return;
        };
        reg.call_over = true;
        if reg.state == RegState::Registered {
            reg.state = RegState::Unregistering;
            reg.challenges = 0;
            self.send_account_register(now, id);
        }
    }

    fn send_account_register(&mut self, now: Instant, id: SipCallId) {
        let user_agent = self.cfg.user_agent.clone();
        let local = self.local_for(Transport::Udp);
        let branch = format!("{BRANCH_PREFIX}{}", self.rng.token(20));
        let Some(reg) = self.calls.accounts.get_mut(&id) else {
            return;
        };
        reg.cseq += 1;
        let expires = if reg.state == RegState::Unregistering {
            0
        } else {
            ACCOUNT_EXPIRES
        };
        let mut b = MessageBuilder::request(Method::Register, &reg.request_uri)
            .header(
                HeaderName::Via,
                format_args!("SIP/2.0/UDP {local};branch={branch};rport"),
            )
            .header(HeaderName::MaxForwards, 70)
            .header(
                HeaderName::From,
                format_args!("{};tag={}", reg.aor, reg.from_tag),
            )
            .header(HeaderName::To, &reg.aor)
            .header(HeaderName::CallId, &reg.call_id)
            .header(HeaderName::CSeq, format_args!("{} REGISTER", reg.cseq))
            .header(HeaderName::Contact, &reg.contact)
            .header(HeaderName::Expires, expires)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::UserAgent, &user_agent);
        for h in reg.auth.authorize("REGISTER", &reg.request_uri) {
            b = b.header(HeaderName::new(h.name), h.value);
        }
        let payload = b.build();
        let old = std::mem::replace(&mut reg.branch, branch.clone());
        let destination = reg.destination;
        self.calls.account_branches.remove(&old);
        self.calls.account_branches.insert(branch.clone(), id);
        self.start_client_tx(now, branch, payload, destination);
    }

    /// The outcome of a per-call REGISTER (a final response or a transaction failure);
    /// false when `key` is not one.
    pub(in crate::sip::endpoint) fn account_register_outcome(
        &mut self,
        now: Instant,
        key: &str,
        outcome: Result<u16, String>,
        msg: Option<&Message<'_>>,
    ) -> bool {
        let Some(&id) = self.calls.account_branches.get(key) else {
            return false;
        };
        self.calls.account_branches.remove(key);
        let Some(reg) = self.calls.accounts.get_mut(&id) else {
            return true;
        };
        let state = reg.state;
        let challenge = match (&outcome, msg) {
            (Ok(code @ (401 | 407)), Some(msg)) if reg.challenges < MAX_CHALLENGES => {
                let kind = if *code == 401 {
                    auth::AuthKind::Www
                } else {
                    auth::AuthKind::Proxy
                };
                reg.auth
                    .handle_challenge(
                        kind,
                        msg.header_all(HeaderName::new(kind.challenge_header())),
                    )
                    .is_ok()
            }
            _ => false,
        };
        if challenge {
            reg.challenges += 1;
            self.send_account_register(now, id);
            return true;
        }
        let granted = matches!(outcome, Ok(200..=299));
        match state {
            RegState::Registering if granted => {
                reg.auth.handle_success();
                reg.state = RegState::Registered;
                reg.challenges = 0;
                if reg.call_over {
                    // given up while registering: undo the binding at once
                    self.call_account_over(now, id);
                } else {
                    log::info!("SIP call {id:?}: account registered, calling");
                    self.send_invite(now, id);
                }
            }
            RegState::Registering => {
                let (code, reason) = match (&outcome, msg) {
                    (Ok(code), Some(msg)) => (*code, msg.reason().unwrap_or("").to_string()),
                    (Ok(code), None) => (*code, String::new()),
                    (Err(why), _) => (408, why.clone()),
                };
                log::info!("SIP call {id:?}: account registration refused: {code} {reason}");
                let over = reg.call_over;
                self.calls.accounts.remove(&id);
                if !over {
                    self.end_outgoing(now, id, code, &format!("REGISTER: {code} {reason}"));
                }
            }
            RegState::Unregistering | RegState::Registered => {
                if !granted {
                    log::info!("SIP call {id:?}: the account's un-REGISTER failed ({outcome:?})");
                }
                self.calls.accounts.remove(&id);
            }
        }
        true
    }
}
