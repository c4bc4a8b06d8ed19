//! The built-in registrar's side of the SIP endpoint (standalone mode, RFC 3261 §10.3):
//! a REGISTER from a phone is authenticated (digest as server), may bind only its own
//! address-of-record, and its Contacts (or `*`) update the [`Registrar`]; the 200 lists
//! the bindings. In proxy mode sip_svr is the registrar and REGISTER gets 405.
//!
//! [`Registrar`]: crate::sip::registrar::Registrar

use std::net::SocketAddr;
use std::time::Instant;

use super::admission::AuthOutcome;
use super::{ALLOW, Endpoint, RequestIds, ServerKey, Transport};
use crate::sip::registrar::{self, ContactUpdate, RegisterError};
use crate::wire::sip::{Contact, Message};

impl Endpoint {
    pub(super) fn on_register(
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
            refused => return self.refuse_auth(now, key, refused, false),
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
}
