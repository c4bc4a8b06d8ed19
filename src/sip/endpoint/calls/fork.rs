//! Ring groups (part of the SIP endpoint's calls): an INVITE for a `[groups]` number is
//! offered to every member at once (an app member is invited by the call layer, a `sip:`
//! member called by it, standalone mode). The caller's INVITE stays one call here (the
//! *parent*); each member is offered a *branch* of it, an incoming call of its own id
//! ([`Event::IncomingCall`] with `group`), which the call layer rings, claims, answers or
//! rejects like any other.
//!
//! - The first branch claimed (its app user accepted: [`Endpoint::claim`], or answered)
//!   takes the call: the parent becomes that branch (its id, so every later event and
//!   verb of the call uses the branch's), and every other branch gets
//!   [`Event::CallCanceled`] with `elsewhere` set.
//! - A branch refused, expired or gone leaves the others ringing; when the last one goes,
//!   the caller gets the strongest of their answers (603/600, then 486, 488, 503, else
//!   480: nobody there or nobody answered).
//! - The caller's CANCEL cancels every branch.
//! - One 180 goes to the caller, at the first branch that rings.
//! - One member previews at a time ([`Endpoint::early_media`] of a branch): the caller's
//!   early media (a 183 with that branch's SDP) goes to the first; a later one waits and
//!   gets it (a new 183 with its SDP) when the one previewing leaves the call unanswered.
//! - **One SDP per dialog.** The caller keeps the first SDP a dialog brings it and ignores
//!   the later ones (RFC 3261 §13.2.1), and every member has a media address of its own.
//!   So each branch whose SDP goes to the caller (in a 183 or the 200) does so in an early
//!   dialog of its own, a To-tag of its own, as the branches of a forking proxy do (RFC
//!   3261 §16.7, §13.2.2.4): the INVITE's tag (the 180's) for the first, a new one for each
//!   next. A member handing the preview to another, or answering after another previewed,
//!   never changes an SDP the caller holds. (A UAS keeps one To tag for every response
//!   to a request, RFC 3261 §8.2.6.2; srgate departs from it on purpose, answering as the
//!   forking proxy's UASs would. A request of the caller's in a branch's early dialog
//!   other than the INVITE's, before the call is taken, is a 481.)

use std::time::Instant;

use super::{INCOMING_BIT, SipCallId};
use crate::config::MemberKind;
use crate::sip::endpoint::{Endpoint, Event};
use crate::wire::sip::HeaderName;

/// The branches of a parent call not claimed yet.
#[derive(Debug, Default)]
pub(in crate::sip::endpoint) struct Fork {
    /// Branches still offered.
    branches: Vec<SipCallId>,
    /// The strongest refusal so far, with its `Warning` when it was a 488 saying why.
    refusal: Option<(u16, Option<String>)>,
    /// The branch whose SDP the caller's 183 carries (its member previews the caller).
    previewer: Option<SipCallId>,
    /// Branches that asked to preview meanwhile, in order, with their SDP.
    waiting: Vec<(SipCallId, String)>,
    /// The To-tag of each branch whose SDP went to the caller: its early dialog (the
    /// first has the INVITE's own tag).
    dialogs: Vec<(SipCallId, String)>,
}

impl Fork {
    pub(super) fn branches(&self) -> &[SipCallId] {
        &self.branches
    }
}

/// How strongly a refusal speaks for the whole group (RFC 3261 §16.7 picks 6xx first):
/// a decline, then busy, an offer nobody can take, overload, else 480.
pub(super) fn rank(code: u16) -> u8 {
    match code {
        600 | 603 => 5,
        486 => 4,
        488 => 3,
        503 => 2,
        _ => 1,
    }
}

impl Endpoint {
    /// A ring group's INVITE, already made call `parent` (100 sent): one branch per app
    /// member, each offered as an incoming call. No member: 480 at once.
    pub(in crate::sip::endpoint) fn fork(
        &mut self,
        parent: SipCallId,
        offer: Offered,
        members: &[(MemberKind, String)],
    ) {
        let mut fork = Fork::default();
        for (kind, member) in members {
            self.calls.next_incoming += 1;
            let branch = SipCallId(INCOMING_BIT | self.calls.next_incoming);
            self.calls.branches.insert(branch, parent);
            fork.branches.push(branch);
            self.events.push_back(Event::IncomingCall {
                id: branch,
                app_user: member.clone(),
                caller: offer.caller.clone(),
                caller_name: offer.caller_name.clone(),
                cus_data: offer.cus_data.clone(),
                sdp: offer.sdp.clone(),
                group: Some(offer.called.clone()),
                sip_member: *kind == MemberKind::Sip,
                internal: false,
            });
        }
        if let Some(c) = self.calls.calls.get_mut(&parent) {
            c.fork = Some(fork);
        }
    }

    /// The branches of parent call `parent`, while it rings.
    fn fork_of(&mut self, parent: SipCallId) -> Option<&mut Fork> {
        self.calls
            .calls
            .get_mut(&parent)
            .and_then(|c| c.fork.as_mut())
    }

    /// The parent of branch `id` while the fork is undecided.
    pub(super) fn parent_of(&self, id: SipCallId) -> Option<SipCallId> {
        self.calls.branches.get(&id).copied()
    }

    /// The app user of branch `id` accepted: the call is theirs, every other branch is
    /// cancelled; a branch that comes second is cancelled itself. Other calls: nothing.
    pub fn claim(&mut self, id: SipCallId) {
        if self.is_internal_id(id) {
            self.internal_claim(id);
            return;
        }
        let Some(parent) = self.parent_of(id) else {
            return;
        };
        // the call goes on in the branch's own dialog
        let tag = self.branch_dialog(parent, id);
        let Some(mut c) = self.calls.calls.remove(&parent) else {
            self.calls.branches.remove(&id);
            return;
        };
        let fork = c.fork.take().unwrap_or_default();
        for other in fork.branches.iter().filter(|b| **b != id) {
            self.calls.branches.remove(other);
            self.events.push_back(Event::CallCanceled {
                id: *other,
                elsewhere: true,
            });
        }
        self.calls.branches.remove(&id);
        // the parent goes on as the branch: its id and its dialog from now on
        c.id = id;
        if let Some(tag) = tag.filter(|t| *t != c.local_tag) {
            self.calls
                .by_dialog
                .remove(&(c.call_id.clone(), c.local_tag.clone()));
            c.to_header = with_tag(&c.to_header, &tag);
            if let Some(d) = &mut c.dialog {
                d.local_tag = tag.clone();
            }
            c.local_tag = tag;
        }
        self.calls
            .by_dialog
            .insert((c.call_id.clone(), c.local_tag.clone()), id);
        if let Some(key) = &c.server_key {
            self.calls.by_server.insert(key.clone(), id);
        }
        log::info!("ring group call {parent:?}: taken by branch {id:?}");
        self.calls.calls.insert(id, c);
    }

    /// Branch `id` will not take the call (`code`, and why for a 488): the others ring on;
    /// the last one gone answers the caller. True if `id` was a branch.
    pub(super) fn branch_refused(
        &mut self,
        now: Instant,
        id: SipCallId,
        code: u16,
        warning: Option<String>,
    ) -> bool {
        let Some(parent) = self.calls.branches.remove(&id) else {
            return false;
        };
        let Some(fork) = self.fork_of(parent) else {
            return true;
        };
        fork.branches.retain(|b| *b != id);
        fork.waiting.retain(|(b, _)| *b != id);
        // the member previewing left: the next one waiting gets the early media
        let next_preview = if fork.previewer == Some(id) {
            fork.previewer = None;
            (!fork.waiting.is_empty()).then(|| fork.waiting.remove(0))
        } else {
            None
        };
        if let Some((branch, _)) = &next_preview {
            fork.previewer = Some(*branch);
        }
        if fork
            .refusal
            .as_ref()
            .is_none_or(|(best, _)| rank(code) > rank(*best))
        {
            fork.refusal = Some((code, warning));
        }
        if !fork.branches.is_empty() {
            if let Some((branch, sdp)) = next_preview {
                log::info!("ring group call {parent:?}: early media to branch {branch:?} now");
                self.branch_early_media(now, parent, branch, &sdp);
            }
            return true;
        }
        let (code, warning) = fork.refusal.take().unwrap_or((480, None));
        // a single refusal code stands for a group that is simply unreachable
        let code = if rank(code) == 1 { 480 } else { code };
        log::info!("ring group call {parent:?}: no member took it → {code}");
        match warning.filter(|_| code == 488) {
            Some(why) => self.reject_offer(now, parent, &why),
            None => self.reject(now, parent, code),
        }
        true
    }

    /// Branch `id` previews the caller with `sdp`: the 183 goes to the caller unless another
    /// member previews already (then `id` waits its turn). False if `id` is no branch.
    pub(super) fn branch_preview(&mut self, now: Instant, id: SipCallId, sdp: &str) -> bool {
        let Some(parent) = self.parent_of(id) else {
            return false;
        };
        let Some(fork) = self.fork_of(parent) else {
            return true;
        };
        match fork.previewer {
            Some(other) if other != id => {
                fork.waiting.retain(|(b, _)| *b != id);
                fork.waiting.push((id, sdp.to_string()));
                log::info!(
                    "ring group call {parent:?}: branch {id:?} waits to preview ({other:?} does)"
                );
            }
            _ => {
                fork.previewer = Some(id);
                self.branch_early_media(now, parent, id, sdp);
            }
        }
        true
    }

    /// The caller's 183 with branch `id`'s `sdp`, in that branch's early dialog.
    fn branch_early_media(&mut self, now: Instant, parent: SipCallId, id: SipCallId, sdp: &str) {
        if let Some(tag) = self.branch_dialog(parent, id) {
            log::debug!("ring group call {parent:?}: branch {id:?} previews in dialog {tag}");
            self.send_early_media(now, parent, sdp);
        }
    }

    /// The To-tag of branch `id`'s dialog with the caller of `parent` (see the module
    /// doc): the one it has, else the INVITE's while no SDP went under it, else a new one.
    /// The responses to the caller's INVITE carry it from now on. `None`: no such fork.
    fn branch_dialog(&mut self, parent: SipCallId, id: SipCallId) -> Option<String> {
        let c = self.calls.calls.get_mut(&parent)?;
        let fork = c.fork.as_mut()?;
        let tag = match fork.dialogs.iter().find(|(b, _)| *b == id) {
            Some((_, tag)) => tag.clone(),
            None => {
                let tag = if fork.dialogs.is_empty() {
                    c.local_tag.clone()
                } else {
                    self.rng.token(16)
                };
                fork.dialogs.push((id, tag.clone()));
                tag
            }
        };
        let key = c.server_key.clone()?;
        if let Some(tx) = self.server_txs.get_mut(&key) {
            for (name, value) in &mut tx.head {
                if *name == HeaderName::To {
                    *value = with_tag(value, &tag);
                }
            }
        }
        Some(tag)
    }

    /// The caller cancelled parent `id`: every branch still offered is cancelled.
    pub(super) fn cancel_branches(&mut self, id: SipCallId) {
        let Some(fork) = self.calls.calls.get_mut(&id).and_then(|c| c.fork.take()) else {
            return;
        };
        for branch in fork.branches {
            self.calls.branches.remove(&branch);
            self.events.push_back(Event::CallCanceled {
                id: branch,
                elsewhere: false,
            });
        }
    }
}

/// A To header value (srgate's tag last, as the responses' head has it) with `tag`.
fn with_tag(value: &str, tag: &str) -> String {
    let base = value.rsplit_once(";tag=").map_or(value, |(base, _)| base);
    format!("{base};tag={tag}")
}

/// What every branch of a group call is offered.
pub(in crate::sip::endpoint) struct Offered {
    /// The group's number.
    pub called: String,
    pub caller: String,
    pub caller_name: Option<String>,
    pub cus_data: Option<String>,
    pub sdp: String,
}
