//! The sessions of the browser protocol: who is logged in on which WebSocket, logins and
//! kicks, and the 10 s in which a user whose socket closed may log in again and take its
//! calls over. Call requests go up to the call layer as [`CallRequest`]s; the call layer's
//! events come back through [`Hub::send_to_user`]. Sans-IO: sessions are numbers the I/O
//! shell gives its WebSocket connections, time and the wall clock come in as arguments.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::ice::IceServers;
use super::protocol::{self, ErrorCode, Refusal, Request};
use super::token;

/// A WebSocket connection, numbered by the I/O shell.
pub type SessionId = u64;

/// How long a user's calls survive its socket closing (a new login takes them over).
pub const RECONNECT_GRACE: Duration = Duration::from_secs(10);

/// How long a new WebSocket may stay without a login: then it gets `NOT_LOGGEDIN` and is
/// closed, so idle sockets cannot hold connection slots.
pub const LOGIN_DEADLINE: Duration = Duration::from_secs(5);

/// What the I/O shell does for the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubOutput {
    /// Send one text frame.
    Send { session: SessionId, text: String },
    /// Close the connection (after what was queued for it).
    Close { session: SessionId },
}

/// What the call layer is asked to do, on behalf of a logged-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallRequest {
    Call {
        user: String,
        request: Request,
    },
    /// The user's socket closed and no new login came within [`RECONNECT_GRACE`]: end its
    /// calls.
    UserGone {
        user: String,
    },
}

#[derive(Debug)]
struct UserEntry {
    session: Option<SessionId>,
    /// Set while the user has no socket: when its calls end.
    gone_at: Option<Instant>,
}

pub struct Hub {
    secret: Vec<u8>,
    sessions: HashMap<SessionId, Option<String>>,
    users: HashMap<String, UserEntry>,
    outputs: VecDeque<HubOutput>,
    requests: VecDeque<CallRequest>,
    /// Sessions in the order they opened (or were logged out), with their login deadline
    /// (all deadlines are `then + LOGIN_DEADLINE`, so the queue is sorted).
    login_deadlines: VecDeque<(Instant, SessionId)>,
    /// The deadline in force for each session logged in as nobody: an older entry of the
    /// queue for the same session (from before a login and logout) closes nothing.
    login_due: HashMap<SessionId, Instant>,
    /// Users in the order their sockets closed, with the end of their grace (sorted the
    /// same way). An entry whose user came back (or closed again later) is skipped.
    gone_deadlines: VecDeque<(Instant, String)>,
    /// Sessions closed for not logging in in time.
    pub login_timeouts: u64,
    /// STUN/TURN servers for `login_ok`.
    ice: IceServers,
}

impl Hub {
    /// `secret`: `[auth] secret`; empty = open login (demo only).
    pub fn new(secret: &str) -> Self {
        Hub {
            secret: secret.as_bytes().to_vec(),
            sessions: HashMap::new(),
            users: HashMap::new(),
            outputs: VecDeque::new(),
            requests: VecDeque::new(),
            login_deadlines: VecDeque::new(),
            login_due: HashMap::new(),
            gone_deadlines: VecDeque::new(),
            login_timeouts: 0,
            ice: IceServers::default(),
        }
    }

    /// The STUN/TURN servers every `login_ok` names (with fresh TURN credentials).
    pub fn with_ice_servers(mut self, ice: IceServers) -> Self {
        self.ice = ice;
        self
    }

    /// A new WebSocket: it must log in within [`LOGIN_DEADLINE`].
    pub fn open(&mut self, now: Instant, session: SessionId) {
        self.sessions.insert(session, None);
        self.arm_login_deadline(now, session);
    }

    fn arm_login_deadline(&mut self, now: Instant, session: SessionId) {
        let due = now + LOGIN_DEADLINE;
        self.login_deadlines.push_back((due, session));
        self.login_due.insert(session, due);
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The user logged in on `session`.
    pub fn user_of(&self, session: SessionId) -> Option<&str> {
        self.sessions.get(&session).and_then(|u| u.as_deref())
    }

    /// Whether `user` is logged in now (with a socket).
    pub fn is_online(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.session.is_some())
    }

    fn send(&mut self, session: SessionId, text: String) {
        self.outputs.push_back(HubOutput::Send { session, text });
    }

    /// Sends an event of the call layer to `user`'s current socket. Returns false when the
    /// user has none right now (between a close and a new login the event is lost; the new
    /// login sees the call's later events).
    pub fn send_to_user(&mut self, user: &str, text: String) -> bool {
        match self.users.get(user).and_then(|u| u.session) {
            Some(session) => {
                self.send(session, text);
                true
            }
            None => false,
        }
    }

    /// Answers a request of `user` with an error (the call layer's refusals: NO_SUCH_CALL…).
    pub fn refuse(&mut self, user: &str, refusal: Refusal) {
        self.send_to_user(user, refusal.to_json());
    }

    /// The frame was larger than [`protocol::MAX_FRAME`]: the I/O shell did not even keep it.
    pub fn frame_too_large(&mut self, session: SessionId) {
        let r = Refusal::new(
            ErrorCode::TooLarge,
            format!("frame larger than {} bytes", protocol::MAX_FRAME),
            None,
        );
        self.send(session, r.to_json());
    }

    /// One text frame from `session`. `unix_now`: the wall clock, for token expiry.
    pub fn handle_text(&mut self, now: Instant, unix_now: u64, session: SessionId, text: &str) {
        if !self.sessions.contains_key(&session) {
            return;
        }
        let request = match protocol::parse(text) {
            Ok(r) => r,
            Err(refusal) => {
                self.send(session, refusal.to_json());
                return;
            }
        };
        match request {
            Request::Ping => self.send(session, protocol::pong()),
            Request::Login { user, token } => self.login(now, unix_now, session, user, &token),
            other => match self.user_of(session).map(str::to_string) {
                Some(user) => self.requests.push_back(CallRequest::Call {
                    user,
                    request: other,
                }),
                None => {
                    let r = Refusal::new(ErrorCode::NotLoggedIn, "log in first", other.id());
                    self.send(session, r.to_json());
                }
            },
        }
    }

    fn login(
        &mut self,
        now: Instant,
        unix_now: u64,
        session: SessionId,
        user: String,
        token: &str,
    ) {
        if !self.secret.is_empty()
            && let Err(why) = token::verify(&self.secret, &user, token, unix_now)
        {
            log::info!("login of {} refused: token {why:?}", crate::pii::Pii(&user));
            let r = Refusal::new(ErrorCode::AuthFailed, "bad or expired token", None);
            self.send(session, r.to_json());
            return;
        }
        self.bind(now, session, &user);
        let ice = (!self.ice.is_empty()).then(|| self.ice.for_user(&user, unix_now));
        self.send(session, protocol::login_ok(&user, ice));
    }

    /// `session` is `user` from now on (a login that passed, or a SIP-over-WebSocket
    /// client's REGISTER): a session that was another user switches, and another session
    /// of `user` is kicked (told `KICKED`, closed).
    pub fn bind(&mut self, now: Instant, session: SessionId, user: &str) {
        if !self.sessions.contains_key(&session) {
            return;
        }
        let user = user.to_string();
        // A socket that was another user switches: the old user is gone from it.
        if let Some(Some(previous)) = self.sessions.get(&session).cloned()
            && previous != user
        {
            self.detach(now, &previous);
        }
        let entry = self.users.entry(user.clone()).or_insert(UserEntry {
            session: None,
            gone_at: None,
        });
        if let Some(old) = entry.session
            && old != session
        {
            // A second login wins: the older socket is told and closed.
            let r = Refusal::new(ErrorCode::Kicked, "logged in elsewhere", None);
            self.outputs.push_back(HubOutput::Send {
                session: old,
                text: r.to_json(),
            });
            self.outputs.push_back(HubOutput::Close { session: old });
            self.sessions.insert(old, None);
        }
        entry.session = Some(session);
        entry.gone_at = None;
        self.sessions.insert(session, Some(user.clone()));
        self.login_due.remove(&session);
        self.trim_login_deadlines();
        self.trim_gone_deadlines();
        log::info!("{} logged in", crate::pii::Pii(&user));
    }

    /// `session` stays open but is nobody any more (a SIP-over-WebSocket client
    /// un-REGISTERed, or let its registration expire): its user's calls get the same
    /// grace as after a close, and the socket must log in again within [`LOGIN_DEADLINE`]
    /// like a new one (no socket stays open logged in as nobody).
    pub fn unbind(&mut self, now: Instant, session: SessionId) {
        if let Some(Some(user)) = self.sessions.get(&session).cloned()
            && self
                .users
                .get(&user)
                .is_some_and(|u| u.session == Some(session))
        {
            self.detach(now, &user);
        }
        if let Some(s) = self.sessions.get_mut(&session)
            && s.take().is_some()
        {
            self.arm_login_deadline(now, session);
        }
    }

    /// Drops the deadlines at the front of the queue no longer in force (their sessions
    /// logged in, closed, or got a later one).
    fn trim_login_deadlines(&mut self) {
        while let Some(&(t, session)) = self.login_deadlines.front() {
            if self.login_due.get(&session) == Some(&t) {
                break;
            }
            self.login_deadlines.pop_front();
        }
    }

    /// Drops the graces at the front of the queue whose users came back.
    fn trim_gone_deadlines(&mut self) {
        while let Some((t, user)) = self.gone_deadlines.front() {
            if self.users.get(user).is_some_and(|u| u.gone_at == Some(*t)) {
                break;
            }
            self.gone_deadlines.pop_front();
        }
    }

    /// The socket `session` closed. Its user's calls live on for [`RECONNECT_GRACE`].
    pub fn close(&mut self, now: Instant, session: SessionId) {
        if let Some(Some(user)) = self.sessions.remove(&session)
            && self
                .users
                .get(&user)
                .is_some_and(|u| u.session == Some(session))
        {
            self.detach(now, &user);
        }
        self.login_due.remove(&session);
        self.trim_login_deadlines();
    }

    fn detach(&mut self, now: Instant, user: &str) {
        if let Some(entry) = self.users.get_mut(user) {
            let until = now + RECONNECT_GRACE;
            entry.session = None;
            entry.gone_at = Some(until);
            self.gone_deadlines.push_back((until, user.to_owned()));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, session)) = self.login_deadlines.front() {
            if deadline > now {
                break;
            }
            self.login_deadlines.pop_front();
            if self.login_due.get(&session) == Some(&deadline) {
                self.login_due.remove(&session);
                self.login_timeouts += 1;
                let r = Refusal::new(
                    ErrorCode::NotLoggedIn,
                    format!("no login within {} s", LOGIN_DEADLINE.as_secs()),
                    None,
                );
                self.send(session, r.to_json());
                self.outputs.push_back(HubOutput::Close { session });
            }
        }
        // Only the graces that ended are visited, not every user.
        while let Some((t, _)) = self.gone_deadlines.front() {
            if *t > now {
                break;
            }
            let Some((t, user)) = self.gone_deadlines.pop_front() else {
                break;
            };
            if self.users.get(&user).is_some_and(|u| u.gone_at == Some(t)) {
                self.users.remove(&user);
                self.requests.push_back(CallRequest::UserGone { user });
            }
        }
    }

    /// The next login deadline or end of a grace (at worst early, for a user who came
    /// back since: that wake-up finds nothing to do).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let login = self.login_deadlines.front().map(|&(t, _)| t);
        let gone = self.gone_deadlines.front().map(|(t, _)| *t);
        login.into_iter().chain(gone).min()
    }

    /// Gives back the memory of tables a burst of sessions grew.
    pub fn shrink(&mut self) {
        self.sessions.shrink_to_fit();
        self.users.shrink_to_fit();
        self.login_deadlines.shrink_to_fit();
        self.login_due.shrink_to_fit();
        self.gone_deadlines.shrink_to_fit();
        self.outputs.shrink_to_fit();
        self.requests.shrink_to_fit();
    }

    pub fn poll_output(&mut self) -> Option<HubOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_request(&mut self) -> Option<CallRequest> {
        self.requests.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn drain(hub: &mut Hub) -> Vec<(SessionId, Value)> {
        let mut out = Vec::new();
        while let Some(o) = hub.poll_output() {
            match o {
                HubOutput::Send { session, text } => {
                    out.push((session, serde_json::from_str(&text).unwrap()))
                }
                HubOutput::Close { session } => out.push((session, Value::String("CLOSE".into()))),
            }
        }
        out
    }

    #[test]
    fn invite_before_login_is_not_loggedin_and_ping_always_works() {
        let now = t0();
        let mut hub = Hub::new("");
        hub.open(now, 1);
        hub.handle_text(
            now,
            0,
            1,
            r#"{"type":"invite","id":"c1","callee":"echo","sdp":"v=0"}"#,
        );
        hub.handle_text(now, 0, 1, r#"{"type":"ping"}"#);
        let out = drain(&mut hub);
        assert_eq!(out[0].1["code"], "NOT_LOGGEDIN");
        assert_eq!(out[0].1["id"], "c1");
        assert_eq!(out[1].1["type"], "pong");
        assert!(hub.poll_request().is_none(), "an error changes nothing");
    }

    #[test]
    fn tokens_are_checked_when_a_secret_is_set() {
        let now = t0();
        let mut hub = Hub::new("s3cret");
        hub.open(now, 1);
        hub.handle_text(
            now,
            100,
            1,
            r#"{"type":"login","user":"1001","token":"v1.1.00"}"#,
        );
        assert_eq!(drain(&mut hub)[0].1["code"], "AUTH_FAILED");
        let expired = token::mint(b"s3cret", "1001", 100);
        hub.handle_text(
            now,
            100,
            1,
            &format!(r#"{{"type":"login","user":"1001","token":"{expired}"}}"#),
        );
        assert_eq!(drain(&mut hub)[0].1["code"], "AUTH_FAILED");
        assert!(!hub.is_online("1001"));
        let good = token::mint(b"s3cret", "1001", 200);
        hub.handle_text(
            now,
            100,
            1,
            &format!(r#"{{"type":"login","user":"1001","token":"{good}"}}"#),
        );
        assert_eq!(drain(&mut hub)[0].1["type"], "login_ok");
        assert!(hub.is_online("1001"));
    }

    #[test]
    fn second_login_kicks_the_first_socket() {
        let now = t0();
        let mut hub = Hub::new("");
        hub.open(now, 1);
        hub.open(now, 2);
        hub.handle_text(now, 0, 1, r#"{"type":"login","user":"1001"}"#);
        hub.handle_text(now, 0, 2, r#"{"type":"login","user":"1001"}"#);
        let out = drain(&mut hub);
        assert_eq!(out[1].0, 1);
        assert_eq!(out[1].1["code"], "KICKED");
        assert_eq!(out[2], (1, Value::String("CLOSE".into())));
        assert_eq!(out[3].1["type"], "login_ok");
        assert!(hub.send_to_user("1001", "{}".into()));
        assert_eq!(drain(&mut hub)[0].0, 2, "events go to the newer socket");
        // the kicked socket closing later does not take the user offline
        hub.close(now, 1);
        assert!(hub.is_online("1001"));
    }

    #[test]
    fn calls_survive_a_closed_socket_for_the_grace_period() {
        let now = t0();
        let mut hub = Hub::new("");
        hub.open(now, 1);
        hub.handle_text(now, 0, 1, r#"{"type":"login","user":"1001"}"#);
        hub.handle_text(now, 0, 1, r#"{"type":"hangup","id":"c1"}"#);
        assert!(
            matches!(hub.poll_request(), Some(CallRequest::Call { user, request: Request::Hangup { .. } }) if user == "1001")
        );
        hub.close(now, 1);
        assert_eq!(hub.poll_timeout(), Some(now + RECONNECT_GRACE));
        // back within the grace period: nothing ends
        hub.open(now, 2);
        hub.handle_text(
            now + Duration::from_secs(9),
            0,
            2,
            r#"{"type":"login","user":"1001"}"#,
        );
        assert_eq!(
            hub.poll_timeout(),
            None,
            "the grace that ended is forgotten"
        );
        hub.handle_timeout(now + Duration::from_secs(11));
        assert!(hub.poll_request().is_none());
        // gone for good
        hub.close(now + Duration::from_secs(12), 2);
        assert_eq!(
            hub.poll_timeout(),
            Some(now + Duration::from_secs(12) + RECONNECT_GRACE)
        );
        hub.handle_timeout(now + Duration::from_secs(21));
        assert!(hub.poll_request().is_none());
        hub.handle_timeout(now + Duration::from_secs(22));
        assert_eq!(
            hub.poll_request(),
            Some(CallRequest::UserGone {
                user: "1001".into()
            })
        );
    }

    #[test]
    fn a_socket_without_login_is_closed_at_the_deadline() {
        let now = t0();
        let mut hub = Hub::new("");
        hub.open(now, 1);
        hub.open(now + Duration::from_secs(1), 2);
        hub.open(now + Duration::from_secs(2), 3);
        assert_eq!(hub.poll_timeout(), Some(now + LOGIN_DEADLINE));
        hub.handle_text(now, 0, 2, r#"{"type":"login","user":"1001"}"#);
        hub.close(now, 3);
        drain(&mut hub);
        hub.handle_timeout(now + LOGIN_DEADLINE - Duration::from_millis(1));
        assert!(drain(&mut hub).is_empty(), "not before the deadline");
        hub.handle_timeout(now + LOGIN_DEADLINE + Duration::from_secs(3));
        let out = drain(&mut hub);
        assert_eq!(
            out.len(),
            2,
            "only the session that never logged in: {out:?}"
        );
        assert_eq!(out[0].0, 1);
        assert_eq!(out[0].1["code"], "NOT_LOGGEDIN");
        assert_eq!(out[1], (1, Value::String("CLOSE".into())));
        assert_eq!(hub.login_timeouts, 1);
        assert_eq!(hub.poll_timeout(), None, "nothing left to wait for");
        assert!(hub.is_online("1001"));
    }

    /// A socket logged out but left open (a SIP-over-WebSocket client's registration
    /// ended) has a login deadline of its own again, whole: the one from its opening,
    /// still queued behind another socket's, closes nothing.
    #[test]
    fn a_socket_unbound_must_log_in_again_within_the_deadline() {
        let now = t0();
        let mut hub = Hub::new("");
        hub.open(now, 9); // never logs in: its deadline keeps socket 1's queued
        hub.open(now, 1);
        hub.bind(now, 1, "1001");
        let later = now + Duration::from_millis(4900);
        hub.unbind(later, 1);
        hub.unbind(later, 1); // twice: one deadline
        hub.handle_timeout(now + LOGIN_DEADLINE);
        let out = drain(&mut hub);
        assert!(
            !out.is_empty() && out.iter().all(|(s, _)| *s == 9),
            "only socket 9 at the first deadline: {out:?}"
        );
        assert_eq!(hub.poll_timeout(), Some(later + LOGIN_DEADLINE));
        hub.handle_timeout(later + LOGIN_DEADLINE - Duration::from_millis(1));
        assert!(drain(&mut hub).is_empty(), "not before the deadline");
        hub.handle_timeout(later + LOGIN_DEADLINE);
        let out = drain(&mut hub);
        assert_eq!(
            out.last(),
            Some(&(1, Value::String("CLOSE".into()))),
            "{out:?}"
        );
        assert_eq!(hub.login_timeouts, 2);
        // a login in time keeps a new socket open
        hub.open(later, 2);
        hub.bind(later, 2, "1002");
        hub.handle_timeout(later + LOGIN_DEADLINE * 2);
        assert!(drain(&mut hub).is_empty());
    }
}
