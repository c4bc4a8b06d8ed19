//! Calls that stay inside srgate (standalone mode): an app user calling another app user
//! who is logged in, or a ring group's number. The call layer places such a call like any
//! call toward SIP ([`Endpoint::start_call`] with [`Reach::App`], or [`Reach::GroupOrPhone`] to a group's number), and the
//! endpoint, instead of sending an INVITE, offers it back to the call layer as incoming
//! calls ([`Event::IncomingCall`] with `internal`): one for the app user called, or one
//! branch per member of the group (app members invited, `sip:` members called by srgate).
//! The call layer's verbs on either side become the other side's events, as a SIP trunk
//! between two B2BUA legs would carry them:
//!
//! - a branch rings → the caller's `CallProgress` 180 (once); a branch answers → the
//!   caller's `CallAnswered` with its SDP, every other branch `CallCanceled` (elsewhere);
//! - a branch refuses (reject, 488, hangup before the answer) → it leaves the others
//!   ringing; the last one gives the caller `CallFailed` with the strongest answer;
//! - a hangup of the caller → `CallCanceled` to each branch before the answer, `CallEnded`
//!   to the answered one after it; a hangup of the answered side → the caller's
//!   `CallEnded`; a digit (SIP INFO) → the other side's `Dtmf`.
//!
//! The media of the two legs meet on srgate's own RTP ports (each a bridged call of its own,
//! relayed end to end when both browsers use Opus).

use std::collections::HashMap;

use super::fork::rank;
use super::{CallError, INCOMING_BIT, OutgoingCall, Reach, SipCallId};
use crate::config::MemberKind;
use crate::sip::endpoint::{Endpoint, Event};

/// An internal call's caller side and its branches.
#[derive(Debug, Default)]
struct Outer {
    /// Branches offered and not refused, while nobody answered.
    branches: Vec<SipCallId>,
    /// The branch that took the call (claimed it; its answer may be on its way).
    answered: Option<SipCallId>,
    /// Whether the caller has that branch's answer.
    connected: bool,
    rang: bool,
    /// The strongest refusal so far.
    refusal: Option<u16>,
}

/// The internal calls in progress.
#[derive(Debug, Default)]
pub(in crate::sip::endpoint) struct Internal {
    /// The caller's call id → its state.
    outers: HashMap<SipCallId, Outer>,
    /// A branch → the caller's call id.
    branches: HashMap<SipCallId, SipCallId>,
}

/// The most calls kept here at once (each one is also a call of the call layer, which has
/// its own limits).
const MAX_INTERNAL: usize = 4096;

impl Endpoint {
    /// Whether `call` is delivered inside srgate: standalone mode, a call of the app layer
    /// to an app user logged in or to a ring group.
    pub(super) fn is_internal(&self, call: &OutgoingCall) -> bool {
        self.cfg.server.is_none()
            && match call.reach {
                Reach::Phone => false,
                Reach::GroupOrPhone => self.cfg.groups.members(&call.callee).is_some(),
                Reach::App => true,
            }
    }

    /// Offers `call` to its callee (or the group's members) as incoming calls.
    pub(super) fn start_internal(&mut self, call: OutgoingCall) -> Result<(), CallError> {
        if self.internal.outers.contains_key(&call.id) {
            return Err(CallError::Duplicate);
        }
        if self.internal.outers.len() >= MAX_INTERNAL {
            return Err(CallError::TooMany);
        }
        let (members, group) = match self.cfg.groups.members(&call.callee) {
            Some(members) => (members, Some(call.callee.clone())),
            None => (vec![(MemberKind::App, call.callee.clone())], None),
        };
        // the app caller is not rung by its own call
        let members: Vec<_> = members
            .into_iter()
            .filter(|(kind, name)| !(*kind == MemberKind::App && *name == call.caller))
            .collect();
        if members.is_empty() {
            return Err(CallError::NoRoute);
        }
        let cus_data = call
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-ArInfo"))
            .map(|(_, v)| v.clone());
        let mut outer = Outer::default();
        for (kind, member) in members {
            self.calls.next_incoming += 1;
            let branch = SipCallId(INCOMING_BIT | self.calls.next_incoming);
            self.internal.branches.insert(branch, call.id);
            outer.branches.push(branch);
            self.events.push_back(Event::IncomingCall {
                id: branch,
                app_user: member,
                caller: call.caller.clone(),
                caller_name: call.display_name.clone(),
                cus_data: cus_data.clone(),
                sdp: call.sdp.clone(),
                group: group.clone(),
                sip_member: kind == MemberKind::Sip,
                internal: true,
            });
        }
        log::info!(
            "call of {} to {}: offered inside srgate ({} branch{})",
            crate::pii::Pii(&call.caller),
            crate::pii::Pii(&call.callee),
            outer.branches.len(),
            if outer.branches.len() == 1 { "" } else { "es" }
        );
        self.internal.outers.insert(call.id, outer);
        Ok(())
    }

    /// The caller's call id of internal branch `id`.
    fn outer_of(&self, id: SipCallId) -> Option<SipCallId> {
        self.internal.branches.get(&id).copied()
    }

    /// Whether `id` is either side of an internal call.
    pub(super) fn is_internal_id(&self, id: SipCallId) -> bool {
        self.internal.outers.contains_key(&id) || self.internal.branches.contains_key(&id)
    }

    /// Forgets internal call `outer` and its branches.
    fn end_internal(&mut self, outer: SipCallId) {
        if let Some(o) = self.internal.outers.remove(&outer) {
            for b in o.branches.iter().chain(o.answered.iter()) {
                self.internal.branches.remove(b);
            }
        }
    }

    /// Branch `id` rings: the caller hears it once.
    pub(super) fn internal_ring(&mut self, id: SipCallId) {
        let Some(outer) = self.outer_of(id) else {
            return;
        };
        if let Some(o) = self.internal.outers.get_mut(&outer)
            && o.answered.is_none()
            && !o.rang
        {
            o.rang = true;
            self.events.push_back(Event::CallProgress {
                id: outer,
                code: 180,
                sdp: None,
            });
        }
    }

    /// Branch `id` takes the call: the others are cancelled. Whether it is the one that
    /// has it (a branch that comes second gets nothing).
    pub(super) fn internal_claim(&mut self, id: SipCallId) -> bool {
        let Some(outer) = self.outer_of(id) else {
            return false;
        };
        let Some(o) = self.internal.outers.get_mut(&outer) else {
            return false;
        };
        if let Some(answered) = o.answered {
            return answered == id;
        }
        if !o.branches.contains(&id) {
            return false;
        }
        o.answered = Some(id);
        let others: Vec<SipCallId> = o.branches.drain(..).filter(|b| *b != id).collect();
        for other in others {
            self.internal.branches.remove(&other);
            self.events.push_back(Event::CallCanceled {
                id: other,
                elsewhere: true,
            });
        }
        true
    }

    /// Branch `id` answers with `sdp`: the caller's answer.
    pub(super) fn internal_answer(&mut self, id: SipCallId, sdp: &str) {
        let Some(outer) = self.outer_of(id) else {
            return;
        };
        if self.internal_claim(id) {
            if let Some(o) = self.internal.outers.get_mut(&outer) {
                o.connected = true;
            }
            self.events.push_back(Event::CallAnswered {
                id: outer,
                sdp: sdp.to_owned(),
            });
        }
    }

    /// Branch `id` refuses with `code` (or hangs up before the answer, as 480): the others
    /// ring on; the last one's refusal (the strongest of all) reaches the caller.
    pub(super) fn internal_refuse(&mut self, id: SipCallId, code: u16) {
        let Some(outer) = self.outer_of(id) else {
            return;
        };
        let Some(o) = self.internal.outers.get_mut(&outer) else {
            return;
        };
        match o.answered {
            // the branch that took the call failed before its answer (its browser could
            // not set up): the caller hears that refusal, nobody else rings any more
            Some(answered) if answered == id => {
                self.end_internal(outer);
                self.events.push_back(Event::CallFailed {
                    id: outer,
                    code,
                    reason: crate::wire::sip::reason_phrase(code).to_owned(),
                });
                return;
            }
            Some(_) => return,
            None => {}
        }
        self.internal.branches.remove(&id);
        o.branches.retain(|b| *b != id);
        if o.refusal.is_none_or(|r| rank(code) > rank(r)) {
            o.refusal = Some(code);
        }
        if o.branches.is_empty() {
            let code = o.refusal.filter(|c| rank(*c) > 1).unwrap_or(480);
            self.end_internal(outer);
            self.events.push_back(Event::CallFailed {
                id: outer,
                code,
                reason: crate::wire::sip::reason_phrase(code).to_owned(),
            });
        }
    }

    /// A hangup of either side of an internal call.
    pub(super) fn internal_hangup(&mut self, id: SipCallId) {
        if let Some(o) = self.internal.outers.get(&id) {
            // the caller hangs up: the answered side's call ends, ringing ones are cancelled
            match o.answered {
                Some(answered) => self.events.push_back(Event::CallEnded {
                    id: answered,
                    code: None,
                }),
                None => {
                    for b in o.branches.clone() {
                        self.events.push_back(Event::CallCanceled {
                            id: b,
                            elsewhere: false,
                        });
                    }
                }
            }
            self.end_internal(id);
            return;
        }
        let Some(outer) = self.outer_of(id) else {
            return;
        };
        let connected = self
            .internal
            .outers
            .get(&outer)
            .is_some_and(|o| o.connected && o.answered == Some(id));
        if connected {
            self.end_internal(outer);
            self.events.push_back(Event::CallEnded {
                id: outer,
                code: None,
            });
        } else {
            self.internal_refuse(id, 480);
        }
    }

    /// A digit keyed on one side, for the other (as SIP INFO would carry it).
    pub(super) fn internal_info(&mut self, id: SipCallId, digit: char, duration_ms: u32) {
        let other = match self.internal.outers.get(&id) {
            Some(o) => o.answered,
            None => self.outer_of(id).filter(|outer| {
                self.internal.outers.get(outer).and_then(|o| o.answered) == Some(id)
            }),
        };
        if let Some(other) = other {
            self.events.push_back(Event::Dtmf {
                id: other,
                digit,
                duration_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{OFFER, OURS, events, sent, t0};
    use super::*;
    use crate::sip::endpoint::EndpointConfig;

    /// A standalone endpoint whose group 301 is anna, ben and the monitor 3011.
    fn ep() -> Endpoint {
        let mut config =
            EndpointConfig::standalone(OURS.parse().unwrap(), "127.0.0.1", &[], [4; 32]);
        config
            .groups
            .add("301", "app:anna, app:ben, sip:3011")
            .unwrap();
        Endpoint::new(config, t0())
    }

    fn call(id: u64, callee: &str, local: bool) -> OutgoingCall {
        OutgoingCall {
            id: SipCallId(id),
            callee: callee.into(),
            caller: "carl".into(),
            display_name: None,
            sdp: OFFER.into(),
            headers: vec![("X-ArInfo".into(), "door 2".into())],
            reach: if local {
                Reach::App
            } else {
                Reach::GroupOrPhone
            },
            account: None,
        }
    }

    /// The branches offered: (id, member, sip member).
    fn offered(ep: &mut Endpoint) -> Vec<(SipCallId, String, bool)> {
        events(ep)
            .into_iter()
            .map(|e| match e {
                Event::IncomingCall {
                    id,
                    app_user,
                    sip_member,
                    internal: true,
                    caller,
                    cus_data,
                    sdp,
                    ..
                } => {
                    assert!(caller == "carl" || caller == "anna", "{caller}");
                    assert_eq!(sdp, OFFER);
                    assert_eq!(cus_data.as_deref(), Some("door 2"));
                    (id, app_user, sip_member)
                }
                other => panic!("an internal incoming call: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn an_app_user_calling_another_gets_its_ring_answer_digits_and_bye_with_nothing_sent() {
        let now = t0();
        let mut ep = ep();
        ep.start_call(now, call(7, "dora", true)).unwrap();
        let branches = offered(&mut ep);
        let [(b, member, false)] = branches.as_slice() else {
            panic!("one app branch: {branches:?}");
        };
        let (b, member) = (*b, member.clone());
        assert_eq!(member, "dora");
        ep.ring(now, b);
        ep.ring(now, b);
        ep.answer(now, b, "v=0 answer");
        ep.info(now, b, '5', 160);
        ep.info(now, SipCallId(7), '#', 160);
        ep.hangup(now, b);
        let got = events(&mut ep);
        assert!(
            matches!(
                got.as_slice(),
                [
                    Event::CallProgress { id: SipCallId(7), code: 180, .. },
                    Event::CallAnswered { id: SipCallId(7), sdp },
                    Event::Dtmf { id: SipCallId(7), digit: '5', .. },
                    Event::Dtmf { id: d, digit: '#', .. },
                    Event::CallEnded { id: SipCallId(7), code: None },
                ] if sdp == "v=0 answer" && *d == b
            ),
            "{got:?}"
        );
        assert!(sent(&mut ep).is_empty(), "nothing goes on the wire");
        assert!(!ep.is_internal_id(b) && !ep.is_internal_id(SipCallId(7)));
        // not local and no group: a SIP user's binding is looked for (none here)
        assert_eq!(
            ep.start_call(now, call(8, "dora", false)),
            Err(CallError::NoRoute)
        );
    }

    #[test]
    fn a_group_rings_every_member_but_the_caller_and_the_first_answer_takes_it() {
        let now = t0();
        let mut ep = ep();
        let mut anna_calls = call(9, "301", false);
        anna_calls.caller = "anna".into();
        ep.start_call(now, anna_calls).unwrap();
        let branches = offered(&mut ep);
        let members: Vec<(&str, bool)> =
            branches.iter().map(|(_, m, s)| (m.as_str(), *s)).collect();
        assert_eq!(members, [("ben", false), ("3011", true)]);
        let (ben, monitor) = (branches[0].0, branches[1].0);
        ep.answer(now, monitor, "v=0 monitor");
        let got = events(&mut ep);
        assert!(
            matches!(
                got.as_slice(),
                [
                    Event::CallCanceled { id, elsewhere: true },
                    Event::CallAnswered { id: SipCallId(9), .. },
                ] if *id == ben
            ),
            "{got:?}"
        );
        // the caller hangs up: the monitor's call ends
        ep.hangup(now, SipCallId(9));
        assert!(matches!(
            events(&mut ep).as_slice(),
            [Event::CallEnded { id, code: None }] if *id == monitor
        ));
    }

    #[test]
    fn refusals_leave_the_others_ringing_and_the_last_gives_the_strongest() {
        let now = t0();
        let mut ep = ep();
        ep.start_call(now, call(11, "301", false)).unwrap();
        let b: Vec<SipCallId> = offered(&mut ep).into_iter().map(|(id, ..)| id).collect();
        ep.reject(now, b[0], 486);
        ep.hangup(now, b[1]); // before the answer: as 480
        assert!(events(&mut ep).is_empty(), "one member still rings");
        ep.reject_offer(now, b[2], "no codec");
        assert!(matches!(
            events(&mut ep).as_slice(),
            [Event::CallFailed {
                id: SipCallId(11),
                code: 486,
                ..
            }]
        ));
        // the caller cancels a call that still rings: every branch is cancelled
        ep.start_call(now, call(12, "301", false)).unwrap();
        let b: Vec<SipCallId> = offered(&mut ep).into_iter().map(|(id, ..)| id).collect();
        ep.hangup(now, SipCallId(12));
        let got = events(&mut ep);
        assert_eq!(got.len(), 3);
        assert!(got.iter().zip(&b).all(|(e, id)| matches!(
            e,
            Event::CallCanceled { id: c, elsewhere: false } if c == id
        )));
    }

    #[test]
    fn a_member_that_took_the_call_and_failed_before_its_answer_fails_the_caller() {
        let now = t0();
        let mut ep = ep();
        ep.start_call(now, call(13, "301", false)).unwrap();
        let b: Vec<SipCallId> = offered(&mut ep).into_iter().map(|(id, ..)| id).collect();
        // anna accepts: the others are cancelled; her browser then fails to set up
        ep.claim(b[0]);
        let got = events(&mut ep);
        assert_eq!(got.len(), 2, "{got:?}");
        ep.reject(now, b[0], 500);
        assert!(
            matches!(
                events(&mut ep).as_slice(),
                [Event::CallFailed {
                    id: SipCallId(13),
                    code: 500,
                    ..
                }]
            ),
            "the caller does not ring on until its timeout"
        );
        assert!(!ep.is_internal_id(b[0]) && !ep.is_internal_id(SipCallId(13)));
        // the same with a hangup of the claimed branch before its answer: a failure too
        ep.start_call(now, call(14, "dora", true)).unwrap();
        let [(d, ..)] = offered(&mut ep)[..] else {
            panic!("one branch")
        };
        ep.claim(d);
        ep.hangup(now, d);
        assert!(matches!(
            events(&mut ep).as_slice(),
            [Event::CallFailed {
                id: SipCallId(14),
                code: 480,
                ..
            }]
        ));
    }

    #[test]
    fn a_phone_leg_never_rings_a_group_so_groups_naming_each_other_do_not_loop() {
        let now = t0();
        let mut config =
            EndpointConfig::standalone(OURS.parse().unwrap(), "127.0.0.1", &[], [4; 32]);
        config.groups.add("401", "sip:402").unwrap();
        config.groups.add("402", "sip:401").unwrap();
        let mut ep = Endpoint::new(config, t0());
        ep.start_call(now, call(15, "401", false)).unwrap();
        let branches = offered(&mut ep);
        assert!(matches!(branches.as_slice(), [(_, m, true)] if m == "402"));
        // the call layer calls the sip: member as a phone: 402 has no binding, it is no
        // second ring of group 402
        let mut leg = call(16, "402", false);
        leg.reach = Reach::Phone;
        assert_eq!(ep.start_call(now, leg), Err(CallError::NoRoute));
        assert!(events(&mut ep).is_empty());
    }
}
