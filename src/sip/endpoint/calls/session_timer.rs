//! Session timers (RFC 4028) of srgate's calls: a session interval agreed in the INVITE
//! and its 2xx, kept alive by a refresh (re-INVITE or UPDATE) every half interval from the
//! side chosen as refresher, so that a call whose other end vanished ends even without
//! media, and so that a PBX with session timers on (FreeSWITCH, Asterisk, Kamailio's sst)
//! does not end srgate's calls after 15 or 30 minutes.
//!
//! - **Calls srgate places** ask for `[sip] session_expires` (`Supported: timer`,
//!   `Session-Expires`, `Min-SE: 90`); a 422 raises it to the peer's `Min-SE`. The 2xx
//!   names the interval and the refresher: `refresher=uac` → srgate refreshes, `uas` → the
//!   peer does; no `Session-Expires` in the 2xx → no timer.
//! - **Calls srgate answers** get the interval their caller asks for (90 s at least, else
//!   422 with `Min-SE: 90`), the caller refreshing (`refresher=uac`) unless it asks srgate
//!   to (`refresher=uas`) or does not support the extension (an interval a proxy put in:
//!   srgate refreshes, no `Require: timer`).
//! - **srgate refreshes** by UPDATE without a body (RFC 3311; the SDP stays as it is) every
//!   half interval; a 2xx renews the interval (as it names it), a 422 retries with the
//!   peer's `Min-SE`, a 408, a 481 or no answer ends the call (BYE, as §10 says), a peer
//!   that does not take UPDATE (405, 501) stops srgate's refreshes (logged), any other
//!   refusal is retried 10 s later, until the session lapses (a third of the interval, at
//!   most 32 s, before its end): then the call ends with a BYE.
//! - **The peer refreshes**: each re-INVITE or UPDATE it sends renews the interval; when
//!   none came by `interval − min(32 s, interval / 3)` srgate ends the call with a BYE
//!   (§10), the call layer seeing it end as a timeout (408).

use std::time::{Duration, Instant};

use super::{OtherKind, Phase, SipCallId};
use crate::sip::endpoint::Endpoint;
use crate::wire::sip::{HeaderName, Message, Method};

/// The smallest session interval srgate grants or asks for (RFC 4028 §4: 90 s at least;
/// a shorter one would have the caller refresh more often than a PBX's timers expect).
pub(super) const MIN_SE: u32 = 90;
/// The longest interval srgate takes from a peer's `Min-SE` (a day).
const MAX_SE: u32 = 86_400;
/// A refresh refused for another reason than those above is tried again after this.
const RETRY: Duration = Duration::from_secs(10);

/// Which side refreshes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refresher {
    Srgate,
    Peer,
}

/// A session interval agreed for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Grant {
    pub seconds: u32,
    pub refresher: Refresher,
    /// srgate's 2xx carries `Require: timer` (the peer supports the extension).
    pub require: bool,
}

/// A request's `Session-Expires`: the interval, its `refresher` parameter (`uac`/`uas`),
/// and whether the sender supports the extension (`Supported: timer`).
fn requested(msg: &Message<'_>) -> Option<(u32, Option<&'static str>, bool)> {
    let value = msg.header(HeaderName::SessionExpires)?;
    let mut parts = value.split(';');
    let seconds: u32 = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        let v = v.trim();
        if v.eq_ignore_ascii_case("uac") {
            Some("uac")
        } else if v.eq_ignore_ascii_case("uas") {
            Some("uas")
        } else {
            None
        }
    });
    let supports = msg
        .header_all(HeaderName::Supported)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("timer"));
    Some((seconds, refresher, supports))
}

/// Whether a request's `Allow` (if it has one) leaves UPDATE out: srgate then cannot
/// refresh toward its sender.
fn refuses_update(msg: &Message<'_>) -> bool {
    let mut allow = msg
        .header_all(HeaderName::Allow)
        .flat_map(|v| v.split(','))
        .peekable();
    allow.peek().is_some() && !allow.any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
}

/// The session interval srgate grants for an INVITE, re-INVITE or UPDATE it answers
/// (see the module doc); `None`: its 2xx names none, and the session does not expire.
/// An interval below [`MIN_SE`] from a sender that supports the extension is refused with
/// 422 first (see [`interval_too_small`]).
pub(super) fn grant(msg: &Message<'_>) -> Option<Grant> {
    let (seconds, refresher, supports) = requested(msg)?;
    if seconds < MIN_SE {
        return None;
    }
    // §9: a caller that does not support the extension cannot refresh (whatever a proxy
    // wrote in `refresher`)
    let refresher = match (refresher, supports) {
        (Some("uas"), _) | (_, false) => Refresher::Srgate,
        _ => Refresher::Peer,
    };
    if refresher == Refresher::Srgate && refuses_update(msg) {
        // srgate refreshes by UPDATE only: no timer rather than one it cannot keep
        return None;
    }
    Some(Grant {
        seconds,
        refresher,
        require: supports,
    })
}

/// Whether a request must be refused with 422 Session Interval Too Small and `Min-SE:
/// 90` (RFC 4028 §9): it asks for an interval below [`MIN_SE`] and its sender supports
/// the extension, so it can retry with a longer one. (A sender that does not support it
/// gets no session interval at all: nothing to refuse.)
pub(super) fn interval_too_small(msg: &Message<'_>) -> bool {
    requested(msg).is_some_and(|(seconds, _, supports)| supports && seconds < MIN_SE)
}

/// The headers of srgate's 2xx for `grant`.
pub(super) fn grant_headers(grant: Grant) -> Vec<(HeaderName<'static>, String)> {
    let refresher = match grant.refresher {
        Refresher::Srgate => "uas",
        Refresher::Peer => "uac",
    };
    let mut headers = vec![(
        HeaderName::SessionExpires,
        format!("{};refresher={refresher}", grant.seconds),
    )];
    if grant.require {
        headers.push((HeaderName::Require, "timer".to_string()));
    }
    headers
}

/// The headers of a request of srgate's asking for `seconds`, at least `min_se` (an
/// INVITE, or a refresh UPDATE with `refresh`: srgate, its sender, goes on refreshing).
pub(super) fn request_headers(
    seconds: u32,
    min_se: u32,
    refresh: bool,
) -> [(HeaderName<'static>, String); 3] {
    let value = if refresh {
        format!("{seconds};refresher=uac")
    } else {
        seconds.to_string()
    };
    [
        (HeaderName::Supported, "timer".to_string()),
        (HeaderName::SessionExpires, value),
        (HeaderName::MinSe, min_se.min(seconds).to_string()),
    ]
}

/// The session interval a 2xx to srgate's INVITE or UPDATE names (srgate sent the
/// request: `refresher=uac` is srgate). A 2xx without `Session-Expires`: none.
pub(super) fn answered(msg: &Message<'_>) -> Option<Grant> {
    let (seconds, refresher, _) = requested(msg)?;
    Some(Grant {
        // below srgate's Min-SE the peer broke the rules: taken as the minimum
        seconds: seconds.max(MIN_SE),
        // the refresher parameter is required in a 2xx; without it srgate refreshes
        // rather than let the session lapse
        refresher: if refresher == Some("uas") {
            Refresher::Peer
        } else {
            Refresher::Srgate
        },
        require: true,
    })
}

/// A 422's `Min-SE`, when it is above `asked` and at most a day: the interval to retry
/// with.
pub(super) fn raised(msg: &Message<'_>, asked: u32) -> Option<u32> {
    let min_se: u32 = msg
        .header(HeaderName::MinSe)?
        .split(';')
        .next()?
        .trim()
        .parse()
        .ok()?;
    (min_se > asked && min_se <= MAX_SE).then_some(min_se)
}

/// A confirmed call's session timer.
#[derive(Debug)]
pub(super) struct SessionTimer {
    pub seconds: u32,
    pub refresher: Refresher,
    /// srgate refreshes: when its next UPDATE goes; the peer does: when the session
    /// expires.
    pub due: Instant,
    /// srgate's refresh is on its way (its answer sets the next `due`).
    pub pending: bool,
    /// srgate refreshes: past this the session has expired for the peer too (§10: the
    /// refresher's last chance is a third of the interval, at most 32 s, before its end),
    /// so refreshes refused until then end the call.
    pub lapses: Instant,
}

impl SessionTimer {
    pub fn new(now: Instant, grant: Grant) -> Self {
        let seconds = u64::from(grant.seconds);
        // §10: the refresher's last chance is a third (at most 32 s) before the end
        let lapses = now + Duration::from_secs(seconds - (seconds / 3).min(32));
        let due = match grant.refresher {
            Refresher::Srgate => now + Duration::from_secs(seconds / 2),
            Refresher::Peer => lapses,
        };
        SessionTimer {
            seconds: grant.seconds,
            refresher: grant.refresher,
            due,
            pending: false,
            lapses,
        }
    }

    /// When the timer needs the endpoint next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.pending).then_some(self.due)
    }

    /// A refresh of srgate's was refused for no reason of RFC 4028's: tried again later,
    /// at the latest when the session lapses (then the call ends).
    pub fn retry(&mut self, now: Instant) {
        self.pending = false;
        self.due = (now + RETRY).min(self.lapses);
    }
}

impl Endpoint {
    /// The session timers due at `now`: srgate's refreshes sent, sessions whose peer
    /// stopped refreshing ended.
    pub(super) fn session_timers_due(&mut self, now: Instant) {
        let due: Vec<(SipCallId, Refresher)> = self
            .calls
            .calls
            .values()
            .filter_map(|c| {
                let t = c.timer.as_ref()?;
                t.poll_timeout()
                    .is_some_and(|d| d <= now)
                    .then_some((c.id, t.refresher))
            })
            .collect();
        for (id, refresher) in due {
            let lapsed = self
                .calls
                .calls
                .get(&id)
                .and_then(|c| c.timer.as_ref())
                .is_some_and(|t| now >= t.lapses);
            match refresher {
                Refresher::Srgate if lapsed => {
                    log::info!("SIP call {id:?}: the session lapsed unrefreshed (refused): BYE");
                    self.end_timed_out(now, id);
                }
                Refresher::Srgate => self.send_refresh(now, id),
                Refresher::Peer => {
                    log::info!("SIP call {id:?}: the session was not refreshed in time: BYE");
                    self.end_timed_out(now, id);
                }
            }
        }
    }

    /// srgate's refresh of call `id`'s session: UPDATE without a body.
    fn send_refresh(&mut self, now: Instant, id: SipCallId) {
        let transport = match self.calls.calls.get(&id) {
            Some(c) if c.phase == Phase::Confirmed => c.destination.0,
            _ => return,
        };
        let (via, branch) = self.via(transport);
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let (Some(dialog), Some(timer)) = (c.dialog.as_mut(), c.timer.as_mut()) else {
            return;
        };
        timer.pending = true;
        let mut b = dialog
            .request(Method::Update, None)
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::Contact, &c.contact);
        for (name, value) in request_headers(timer.seconds, c.se_min, true) {
            b = b.header(name, value);
        }
        let payload = b.build();
        let destination = c.destination;
        log::debug!("SIP call {id:?}: session refresh ({} s)", timer.seconds);
        self.start_other(now, branch, (id, OtherKind::Refresh), payload, destination);
    }

    /// The final answer to srgate's refresh of call `id` (`code`; 408 for none), with the
    /// response when one came.
    pub(super) fn refresh_answered(
        &mut self,
        now: Instant,
        id: SipCallId,
        code: u16,
        msg: Option<&Message<'_>>,
    ) {
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return; // ended meanwhile
        };
        let Some(timer) = c.timer.as_mut() else {
            return;
        };
        match code {
            200..=299 => {
                c.timer = msg
                    .and_then(answered)
                    .map(|grant| SessionTimer::new(now, grant));
            }
            422 => match msg.and_then(|m| raised(m, timer.seconds)) {
                Some(seconds) => {
                    timer.seconds = seconds;
                    c.se_min = seconds;
                    self.send_refresh(now, id);
                }
                None => timer.retry(now),
            },
            408 | 481 => {
                log::info!("SIP call {id:?}: session refresh answered {code}: BYE");
                self.end_timed_out(now, id);
            }
            405 | 501 => {
                log::warn!(
                    "SIP call {id:?}: the peer does not take UPDATE ({code}): srgate stops \
                     refreshing the session (the peer may end the call when it expires)"
                );
                c.timer = None;
            }
            _ => {
                log::info!("SIP call {id:?}: session refresh answered {code}: again in 10 s");
                timer.retry(now);
            }
        }
    }
}
