//! Which shard holds which call: the placement of new calls and the routing of every later
//! request and SIP event, kept by the shard that signals (shard 0). Sans-IO: the shell
//! asks where a request or an event goes, carries it there, and reports back what the
//! shards say about their calls ([`RouteChange`]).
//!
//! A new call goes where its user's other calls are (so the per-user limit
//! [`MAX_CALLS_PER_USER`] holds across shards), else to the shard with the fewest calls,
//! another than shard 0 on a tie (shard 0 also signals). A call is refused when srgate
//! is at `[calls] max_calls`, when its shard runs its timers late, or when that shard
//! stopped: the calls already up keep their media.

use std::collections::HashMap;

use super::link::RouteChange;
use super::{CallKey, MAX_CALLS_PER_USER};
use crate::signal::hub::CallRequest;
use crate::signal::protocol::{ErrorCode, Refusal, Request};
use crate::sip::endpoint::{Event, SipCallId};

/// Why a new call is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `[calls] max_calls`, or the shard for the call cannot take it.
    Overloaded,
    /// The user has `MAX_CALLS_PER_USER` calls (some perhaps still being set up).
    UserLimit,
}

impl Refused {
    /// The browser protocol's error for an app invite.
    pub fn refusal(self, id: &str) -> Refusal {
        match self {
            Refused::Overloaded => Refusal::new(
                ErrorCode::Overloaded,
                "srgate cannot take more calls now; try again later",
                Some(id),
            ),
            Refused::UserLimit => Refusal::new(ErrorCode::BadRequest, "too many calls", Some(id)),
        }
    }

    /// The SIP answer for an incoming INVITE (503 goes out with `Retry-After`).
    pub fn sip_code(self) -> u16 {
        match self {
            Refused::Overloaded => 503,
            Refused::UserLimit => 486,
        }
    }
}

/// Where a request or event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To one shard (0: shard 0's own call layer).
    Shard(usize),
    /// To every shard (a user gone: each ends the user's calls it holds).
    All,
}

/// Where a user's calls are, and how many: routed and not yet set up (`pending`), and up
/// (`live`).
#[derive(Debug)]
struct UserCalls {
    shard: usize,
    live: u32,
    pending: u32,
}

/// The routing tables of shard 0.
#[derive(Debug)]
pub struct Router {
    /// Which shard holds a call, by (user, call id) and by SIP call (absent: shard 0).
    app_routes: HashMap<CallKey, usize>,
    sip_routes: HashMap<SipCallId, usize>,
    users_on: HashMap<String, UserCalls>,
    /// Calls on each shard, counting those on their way there (index: shard).
    load: Vec<u64>,
    /// Per shard: still running (shard 0 always is; a worker that stopped takes no calls).
    up: Vec<bool>,
    max_calls: u64,
    /// Calls no shard route holds that count toward `max_calls` too (REST calls, on
    /// shard 0), as last told ([`Router::set_outside`]).
    outside: u64,
    refused_overload: u64,
}

impl Router {
    /// Tables for `shards` shards (at least 1) and at most `max_calls` calls in all.
    pub fn new(shards: usize, max_calls: u32) -> Self {
        let shards = shards.max(1);
        Router {
            app_routes: HashMap::new(),
            sip_routes: HashMap::new(),
            users_on: HashMap::new(),
            load: vec![0; shards],
            up: vec![true; shards],
            max_calls: u64::from(max_calls),
            outside: 0,
            refused_overload: 0,
        }
    }

    /// New calls refused for `max_calls`, a lagging shard or a stopped one.
    pub fn refused_overload(&self) -> u64 {
        self.refused_overload
    }

    /// `n` calls outside the shards' routes (REST calls) are up.
    pub fn set_outside(&mut self, n: u64) {
        self.outside = n;
    }

    /// Whether the calls up (the shards' and those outside) reach `max_calls`.
    pub fn full(&self) -> bool {
        self.load.iter().sum::<u64>() + self.outside >= self.max_calls
    }

    /// A new call was refused for `max_calls` outside [`Router::place`].
    pub fn refused(&mut self) {
        self.refused_overload += 1;
    }

    /// Calls counted on each shard, those being placed included.
    pub fn load(&self) -> &[u64] {
        &self.load
    }

    /// Whether shard `shard` runs.
    pub fn shard_up(&self, shard: usize) -> bool {
        self.up.get(shard).copied().unwrap_or(false)
    }

    /// Shard `shard` ended its calls and stopped: it takes no new calls.
    pub fn stopped(&mut self, shard: usize) {
        if shard != 0
            && let Some(up) = self.up.get_mut(shard)
        {
            *up = false;
        }
    }

    /// The shard for a new call of `user`; the call counts there from now on, until the
    /// shard reports it `Added` then `Removed`, or `Dropped`. `lagging(shard)`: whether
    /// that shard runs its timers late.
    pub fn place(&mut self, user: &str, lagging: impl Fn(usize) -> bool) -> Result<usize, Refused> {
        let shard = match self.users_on.get(user) {
            Some(u) if u.live + u.pending >= MAX_CALLS_PER_USER as u32 => {
                return Err(Refused::UserLimit);
            }
            Some(u) => u.shard,
            None => {
                // the least loaded shard that runs and keeps up (a later one on a tie:
                // shard 0 also signals); when none does, the call is refused below
                let mut best: Option<usize> = None;
                for (i, &load) in self.load.iter().enumerate() {
                    if !self.shard_up(i) || lagging(i) {
                        continue;
                    }
                    if best.is_none_or(|b| load <= self.load[b]) {
                        best = Some(i);
                    }
                }
                best.unwrap_or(0)
            }
        };
        if !self.shard_up(shard) {
            self.refused_overload += 1;
            return Err(Refused::Overloaded);
        }
        let full = self.full();
        if full || lagging(shard) {
            self.refused_overload += 1;
            log::warn!(
                "new call of {} refused: {}",
                crate::pii::Pii(user),
                if full {
                    "[calls] max_calls reached"
                } else {
                    "its shard is falling behind"
                }
            );
            return Err(Refused::Overloaded);
        }
        self.count_pending(user, shard);
        Ok(shard)
    }

    fn count_pending(&mut self, user: &str, shard: usize) {
        let entry = self.users_on.entry(user.to_owned()).or_insert(UserCalls {
            shard,
            live: 0,
            pending: 0,
        });
        entry.pending += 1;
        if let Some(load) = self.load.get_mut(shard) {
            *load += 1;
        }
    }

    /// Where a user's request goes. An invite is placed (and may be refused: the user
    /// gets the refusal); every other request of a call goes where the call is.
    pub fn route_request(
        &mut self,
        request: &CallRequest,
        lagging: impl Fn(usize) -> bool,
    ) -> Result<Route, Refused> {
        let (user, request) = match request {
            CallRequest::UserGone { .. } => return Ok(Route::All),
            CallRequest::Call { user, request } => (user, request),
        };
        let Some(id) = request.id() else {
            return Ok(Route::Shard(0));
        };
        let key = (user.clone(), id.to_owned());
        if matches!(request, Request::Invite { .. }) {
            let shard = self.place(user, lagging)?;
            if shard != 0 {
                self.app_routes.insert(key, shard);
            }
            return Ok(Route::Shard(shard));
        }
        // All of a user's calls are on one shard: while a route is being replaced (a
        // call id used again), the user's shard is the answer.
        let shard = self
            .app_routes
            .get(&key)
            .or_else(|| self.users_on.get(user).map(|u| &u.shard))
            .copied()
            .unwrap_or(0);
        Ok(Route::Shard(shard))
    }

    /// Where an endpoint event about a call goes. An incoming call for a logged-in user
    /// (`online`) is placed and may be refused (answer with [`Refused::sip_code`]); one
    /// for a user who is not logged in goes to shard 0, which answers 480.
    pub fn route_sip_event(
        &mut self,
        event: &Event,
        online: bool,
        lagging: impl Fn(usize) -> bool,
    ) -> Result<usize, Refused> {
        let Some(id) = event.call_id() else {
            return Ok(0);
        };
        let Event::IncomingCall { app_user, .. } = event else {
            return Ok(self.sip_routes.get(&id).copied().unwrap_or(0));
        };
        if !online {
            // Refused on shard 0, and counted there unless the user's calls are elsewhere
            // (the call layer reports it Dropped like any other).
            if self.users_on.get(app_user).is_none_or(|u| u.shard == 0) {
                self.count_pending(app_user, 0);
            }
            return Ok(0);
        }
        let shard = self.place(app_user, lagging)?;
        if shard != 0 {
            self.sip_routes.insert(id, shard);
        }
        Ok(shard)
    }

    /// A shard started the SIP leg `id` of one of its calls.
    pub fn sip_started(&mut self, shard: usize, id: SipCallId) {
        if shard != 0 {
            self.sip_routes.insert(id, shard);
        }
    }

    /// What shard `shard` says about its calls: the routes and counts follow.
    pub fn apply(&mut self, shard: usize, change: RouteChange) {
        let (user, pending, live, gone) = match change {
            RouteChange::Added { key, sip } => {
                if shard != 0 {
                    if let Some(sip) = sip {
                        self.sip_routes.insert(sip, shard);
                    }
                    self.app_routes.insert(key.clone(), shard);
                }
                (key.0, -1, 1, false)
            }
            RouteChange::Removed {
                key,
                sip,
                other_sip,
            } => {
                self.forget(shard, Some(&key), sip);
                self.forget(shard, None, other_sip);
                (key.0, 0, -1, true)
            }
            RouteChange::Dropped { user, key, sip } => {
                self.forget(shard, key.as_ref(), sip);
                (user, -1, 0, true)
            }
        };
        // counted where the user's calls are (an offline user's refused call is not)
        let Some(u) = self.users_on.get_mut(&user).filter(|u| u.shard == shard) else {
            return;
        };
        u.pending = u.pending.saturating_add_signed(pending);
        u.live = u.live.saturating_add_signed(live);
        if u.pending == 0 && u.live == 0 {
            self.users_on.remove(&user);
        }
        if gone && let Some(load) = self.load.get_mut(shard) {
            *load = load.saturating_sub(1);
        }
    }

    fn forget(&mut self, shard: usize, key: Option<&CallKey>, sip: Option<SipCallId>) {
        if let Some(key) = key
            && self.app_routes.get(key) == Some(&shard)
        {
            self.app_routes.remove(key);
        }
        if let Some(sip) = sip
            && self.sip_routes.get(&sip) == Some(&shard)
        {
            self.sip_routes.remove(&sip);
        }
    }

    /// Routes and users known: each entry is a call in progress or being placed.
    pub fn entries(&self) -> usize {
        self.app_routes.len() + self.sip_routes.len() + self.users_on.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(user: &str, id: &str) -> CallRequest {
        CallRequest::Call {
            user: user.into(),
            request: Request::Invite {
                id: id.into(),
                callee: "1000".into(),
                sdp: String::new(),
                content: None,
                channel_id: None,
            },
        }
    }

    fn hangup(user: &str, id: &str) -> CallRequest {
        CallRequest::Call {
            user: user.into(),
            request: Request::Hangup { id: id.into() },
        }
    }

    fn incoming(id: u64, user: &str) -> Event {
        Event::IncomingCall {
            id: SipCallId(id),
            app_user: user.into(),
            caller: "2000".into(),
            caller_name: None,
            cus_data: None,
            sdp: String::new(),
            group: None,
            sip_member: false,
            internal: false,
        }
    }

    fn key(user: &str, id: &str) -> CallKey {
        (user.into(), id.into())
    }

    const CALM: fn(usize) -> bool = |_| false;

    #[test]
    fn new_calls_spread_over_the_shards_and_a_tie_spares_shard_0() {
        let mut r = Router::new(3, 100);
        let mut placed = Vec::new();
        for (i, user) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            let Ok(Route::Shard(s)) = r.route_request(&invite(user, &i.to_string()), CALM) else {
                panic!("not placed");
            };
            placed.push(s);
        }
        assert_eq!(placed, [2, 1, 0, 2, 1, 0]);
        assert_eq!(r.load(), [2, 2, 2]);
    }

    #[test]
    fn a_users_calls_stay_on_one_shard_and_its_requests_follow_them() {
        let mut r = Router::new(2, 100);
        assert_eq!(
            r.route_request(&invite("a", "1"), CALM),
            Ok(Route::Shard(1))
        );
        r.apply(
            1,
            RouteChange::Added {
                key: key("a", "1"),
                sip: Some(SipCallId(9)),
            },
        );
        // the next call of the same user goes there too, although shard 0 is emptier
        assert_eq!(
            r.route_request(&invite("a", "2"), CALM),
            Ok(Route::Shard(1))
        );
        assert_eq!(
            r.route_request(&hangup("a", "1"), CALM),
            Ok(Route::Shard(1))
        );
        let progress = Event::CallProgress {
            id: SipCallId(9),
            code: 180,
            sdp: None,
        };
        assert_eq!(r.route_sip_event(&progress, true, CALM), Ok(1));
        // a request for a call nobody placed goes to shard 0, which answers it
        assert_eq!(
            r.route_request(&hangup("z", "1"), CALM),
            Ok(Route::Shard(0))
        );
        assert_eq!(
            r.route_request(&CallRequest::UserGone { user: "a".into() }, CALM),
            Ok(Route::All)
        );
    }

    #[test]
    fn a_user_at_the_per_user_limit_is_refused_without_counting_as_overload() {
        let mut r = Router::new(2, 100);
        for i in 0..MAX_CALLS_PER_USER {
            assert!(r.route_request(&invite("a", &i.to_string()), CALM).is_ok());
        }
        assert_eq!(
            r.route_request(&invite("a", "x"), CALM),
            Err(Refused::UserLimit)
        );
        assert_eq!(r.refused_overload(), 0);
        // another user is not affected
        assert!(r.route_request(&invite("b", "1"), CALM).is_ok());
    }

    /// REST calls (outside the routes) take their share of `max_calls` too.
    #[test]
    fn calls_outside_the_routes_count_toward_max_calls() {
        let mut r = Router::new(2, 2);
        r.set_outside(1);
        assert!(!r.full());
        assert!(r.route_request(&invite("a", "1"), CALM).is_ok());
        assert!(r.full());
        assert_eq!(
            r.route_request(&invite("b", "1"), CALM),
            Err(Refused::Overloaded)
        );
        r.set_outside(0);
        assert!(r.route_request(&invite("b", "1"), CALM).is_ok());
    }

    #[test]
    fn max_calls_and_a_lagging_shard_refuse_new_calls_until_calls_end() {
        let mut r = Router::new(2, 2);
        assert_eq!(
            r.route_request(&invite("a", "1"), CALM),
            Ok(Route::Shard(1))
        );
        assert_eq!(
            r.route_request(&invite("b", "1"), CALM),
            Ok(Route::Shard(0))
        );
        assert_eq!(
            r.route_request(&invite("c", "1"), CALM),
            Err(Refused::Overloaded)
        );
        assert_eq!(
            r.route_sip_event(&incoming(1, "c"), true, CALM),
            Err(Refused::Overloaded)
        );
        assert_eq!(r.refused_overload(), 2);
        assert_eq!(Refused::Overloaded.sip_code(), 503);
        // a's call never came up: the shard drops it, and its place is free again
        r.apply(
            1,
            RouteChange::Dropped {
                user: "a".into(),
                key: Some(key("a", "1")),
                sip: None,
            },
        );
        assert_eq!(r.load(), [1, 0]);
        // every shard lagging: refused; one lagging: another takes the call
        assert_eq!(
            r.route_request(&invite("c", "1"), |_| true),
            Err(Refused::Overloaded)
        );
        assert_eq!(r.refused_overload(), 3);
        assert_eq!(
            r.route_request(&invite("c", "1"), |s| s == 1),
            Ok(Route::Shard(0))
        );
    }

    #[test]
    fn counts_and_routes_go_when_calls_end() {
        let mut r = Router::new(2, 100);
        assert_eq!(
            r.route_request(&invite("a", "1"), CALM),
            Ok(Route::Shard(1))
        );
        assert_eq!(r.route_sip_event(&incoming(7, "b"), true, CALM), Ok(0));
        assert_eq!(r.route_sip_event(&incoming(8, "c"), true, CALM), Ok(1));
        r.sip_started(1, SipCallId(3));
        r.apply(
            1,
            RouteChange::Added {
                key: key("a", "1"),
                sip: Some(SipCallId(3)),
            },
        );
        r.apply(
            0,
            RouteChange::Added {
                key: key("b", "s7"),
                sip: Some(SipCallId(7)),
            },
        );
        r.apply(
            1,
            RouteChange::Added {
                key: key("c", "s8"),
                sip: Some(SipCallId(8)),
            },
        );
        assert_eq!(r.load(), [1, 2]);
        r.apply(
            1,
            RouteChange::Removed {
                key: key("a", "1"),
                sip: Some(SipCallId(3)),
                other_sip: None,
            },
        );
        r.apply(
            0,
            RouteChange::Removed {
                key: key("b", "s7"),
                sip: Some(SipCallId(7)),
                other_sip: None,
            },
        );
        r.apply(
            1,
            RouteChange::Removed {
                key: key("c", "s8"),
                sip: Some(SipCallId(8)),
                other_sip: None,
            },
        );
        assert_eq!(r.load(), [0, 0]);
        assert_eq!(r.entries(), 0, "{r:?}");
    }

    #[test]
    fn an_incoming_call_for_a_user_not_logged_in_is_counted_on_shard_0_until_dropped() {
        let mut r = Router::new(2, 1);
        assert_eq!(r.route_sip_event(&incoming(5, "x"), false, CALM), Ok(0));
        assert_eq!(r.load(), [1, 0]);
        r.apply(
            0,
            RouteChange::Dropped {
                user: "x".into(),
                key: None,
                sip: Some(SipCallId(5)),
            },
        );
        assert_eq!(r.load(), [0, 0]);
        assert_eq!(r.entries(), 0);
    }

    #[test]
    fn a_stopped_shard_takes_no_new_calls() {
        let mut r = Router::new(2, 100);
        r.stopped(1);
        r.stopped(0); // shard 0 is the caller: it never stops under itself
        assert!(r.shard_up(0) && !r.shard_up(1));
        assert_eq!(
            r.route_request(&invite("a", "1"), CALM),
            Ok(Route::Shard(0))
        );
        // a user whose calls were on the stopped shard is refused
        let mut r = Router::new(2, 100);
        assert_eq!(
            r.route_request(&invite("a", "1"), CALM),
            Ok(Route::Shard(1))
        );
        r.stopped(1);
        assert_eq!(
            r.route_request(&invite("a", "2"), CALM),
            Err(Refused::Overloaded)
        );
    }

    #[test]
    fn a_sip_to_sip_call_on_a_worker_forgets_both_legs() {
        let mut r = Router::new(2, 100);
        // the door's INVITE to the monitor is placed on shard 1
        assert_eq!(r.route_sip_event(&incoming(20, "3011"), true, CALM), Ok(1));
        r.apply(
            1,
            RouteChange::Added {
                key: key("3011", "p20"),
                sip: Some(SipCallId(20)),
            },
        );
        // its second leg, toward the monitor, is started from there
        r.sip_started(1, SipCallId(21));
        let ringing = Event::CallProgress {
            id: SipCallId(21),
            code: 180,
            sdp: None,
        };
        assert_eq!(r.route_sip_event(&ringing, true, CALM), Ok(1));
        r.apply(
            1,
            RouteChange::Removed {
                key: key("3011", "p20"),
                sip: Some(SipCallId(20)),
                other_sip: Some(SipCallId(21)),
            },
        );
        assert_eq!(r.entries(), 0, "{r:?}");
    }
}
