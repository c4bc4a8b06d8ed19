//! The control shard's web side: the browsers' WebSocket connections (plain and TLS;
//! per-source caps, deadlines, memory given back after a flood) and the HTTP API's
//! connections (one request, one answer, a deadline against slow clients).

use std::io;
use std::time::Instant;

use mio::{Interest, Token};

use super::{
    API_CONN_BASE, API_LINGER, API_LINGER_BYTES, API_MAX_CONNS, API_TIMEOUT, ApiConn, ControlShard,
    RECLAIM_AFTER_CLOSES, RECLAIM_QUIET, SIP_TCP_FIRST_MESSAGE, SIP_TCP_IDLE, WEB_CONN_BASE,
    unix_time,
};
use crate::io::stream::Stream;
use crate::io::tcp::{Conn, ReadOutcome};
use crate::io::web::{self, WebConn};
use crate::io::{api, sys};

impl ControlShard {
    /// Looks at the connections whose deadline came: slow API clients and idle SIP TCP
    /// connections are closed, WebSockets ping or time out. Only those are visited; one
    /// whose deadline moved later is scheduled again.
    pub(super) fn expire_connections(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        due.extend(std::iter::from_fn(|| self.api_deadlines.pop_due(now)));
        for &i in &due {
            if let Some(c) = self.api_conns.get_mut(i).and_then(Option::as_mut) {
                if let Some(until) = c.linger_until {
                    if now >= until {
                        self.close_api(i);
                    } else {
                        self.api_deadlines.schedule(i, until);
                    }
                } else if now >= c.since + API_TIMEOUT && c.pending.take().is_some() {
                    // its name lookup did not come back in time: answered, then closed
                    let e = crate::rest::RestError::new(
                        504,
                        "LOOKUP_TIMEOUT",
                        "the SIP account's proxy name did not resolve in time",
                    );
                    c.conn.queue(&api::json_reply(e.status, &e.json()));
                    c.answered = true;
                    self.api_conn_ready(now, i);
                    self.close_api(i);
                } else if now >= c.since + API_TIMEOUT {
                    self.close_api(i);
                } else {
                    self.api_deadlines.schedule(i, c.since + API_TIMEOUT);
                }
            }
        }
        due.clear();
        due.extend(std::iter::from_fn(|| self.web_deadlines.pop_due(now)));
        for &i in &due {
            match self.web_conns.get(i).and_then(Option::as_ref) {
                // Serviced once more: it pings, or times out and closes.
                Some(c) if now >= c.deadline() => self.web_conn_ready(now, i),
                Some(c) => self.web_deadlines.schedule(i, c.deadline()),
                None => {}
            }
        }
        due.clear();
        due.extend(std::iter::from_fn(|| self.sip_deadlines.pop_due(now)));
        for &i in &due {
            if let Some(c) = self.sip_conns.get(i).and_then(Option::as_ref) {
                let first_until = c.opened + SIP_TCP_FIRST_MESSAGE;
                let idle_until = c.last_activity + SIP_TCP_IDLE;
                if c.awaiting_first && now >= first_until {
                    log::info!(
                        "SIP connection from {}: no whole message within {SIP_TCP_FIRST_MESSAGE:?}; closed",
                        c.peer
                    );
                    self.close_sip(now, i);
                } else if now >= idle_until {
                    self.close_sip(now, i);
                } else if c.awaiting_first {
                    self.sip_deadlines.schedule(i, first_until);
                } else {
                    self.sip_deadlines.schedule(i, idle_until);
                }
            }
        }
        self.due = due;
    }

    pub(super) fn accept_api(&mut self, now: Instant) {
        let Some(listener) = &self.api_listener else {
            return;
        };
        for _ in 0..64 {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let Some(index) = Self::free_slot(&mut self.api_conns, API_MAX_CONNS) else {
                        continue; // dropping the stream closes it
                    };
                    let token = Token(API_CONN_BASE + index);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        self.api_conns[index] = Some(ApiConn {
                            conn: Conn::new(
                                Stream::Plain(stream),
                                peer,
                                now,
                                api::MAX_REQUEST + crate::rest::MAX_BODY + 1,
                                1 << 20,
                            ),
                            answered: false,
                            pending: None,
                            since: now,
                            linger_until: None,
                            lingered: 0,
                        });
                        self.api_deadlines.schedule(index, now + API_TIMEOUT);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    pub(super) fn api_conn_ready(&mut self, now: Instant, index: usize) {
        let status = api::Status {
            calls: self.total_calls(),
            registered: self.core.registration(),
            metrics: self.metrics(),
            per_shard: self.shard_metrics(),
            histograms: self.histograms(),
            by_class: {
                let (received, sent) = self.core.sip_responses_by_class();
                vec![
                    ("sip_responses_received_total", received),
                    ("sip_responses_sent_total", sent),
                ]
            },
        };
        let Some(api_conn) = self.api_conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if api_conn.pending.is_some() {
            return; // answered when its name lookup comes back
        }
        if api_conn.linger_until.is_some() {
            if Self::drain_lingering(now, &mut api_conn.conn, &mut api_conn.lingered) {
                self.close_api(index);
            }
            return;
        }
        let conn = &mut api_conn.conn;
        let mut close = false;
        let mut outcome = ReadOutcome::Open;
        if !api_conn.answered {
            outcome = conn.read_available(now, usize::MAX);
            let rest = match api::rest(&conn.rbuf, &self.api_token) {
                api::RestRead::Other => None,
                api::RestRead::Incomplete if outcome != ReadOutcome::Open => Some(None),
                api::RestRead::Incomplete => return,
                api::RestRead::Refused(answer) => Some(Some(answer)),
                api::RestRead::Request(request) => match lookup_of(&request) {
                    Some((host, port)) => {
                        let key = self.next_lookup;
                        if self.resolver.lookup(key, &host, port) {
                            self.next_lookup += 1;
                            api_conn.pending = Some((key, request));
                            return;
                        }
                        let e = crate::rest::RestError::new(
                            503,
                            "TOO_MANY_LOOKUPS",
                            "too many SIP proxy names being resolved at once",
                        );
                        Some(Some(api::json_reply(e.status, &e.json())))
                    }
                    None => {
                        let (code, body) = self.core.handle_rest(now, request);
                        Some(Some(api::json_reply(code, &body)))
                    }
                },
            };
            let Some(api_conn) = self.api_conns.get_mut(index).and_then(Option::as_mut) else {
                return;
            };
            match rest {
                Some(Some(answer)) => {
                    api_conn.conn.queue(&answer);
                    api_conn.answered = true;
                }
                Some(None) => close = true,
                None => {}
            }
        }
        let Some(api_conn) = self.api_conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let conn = &mut api_conn.conn;
        if !api_conn.answered && !close {
            match api::respond(&conn.rbuf, &status) {
                Some(answer) => {
                    conn.queue(&answer);
                    api_conn.answered = true;
                }
                None => close = outcome != ReadOutcome::Open,
            }
        }
        if api_conn.answered {
            match conn.flush(now) {
                // the client sent all it had to: closed at once
                Ok(())
                    if conn.wbuf.is_empty()
                        && (outcome == ReadOutcome::Closed
                            || (outcome != ReadOutcome::Overflow
                                && api::request_complete(&conn.rbuf))) =>
                {
                    close = true
                }
                Ok(()) if conn.wbuf.is_empty() => {
                    // the client is still sending (a request refused on its head): our
                    // side is shut, and the rest is read and dropped until it closes
                    let _ = conn.stream.tcp().shutdown(std::net::Shutdown::Write);
                    let until = now + API_LINGER;
                    api_conn.linger_until = Some(until);
                    let _ = self.poll.registry().reregister(
                        conn.stream.tcp(),
                        Token(API_CONN_BASE + index),
                        Interest::READABLE,
                    );
                    self.api_deadlines.schedule(index, until);
                    close = Self::drain_lingering(now, conn, &mut api_conn.lingered);
                }
                Ok(()) => {
                    let _ = self.poll.registry().reregister(
                        conn.stream.tcp(),
                        Token(API_CONN_BASE + index),
                        Interest::WRITABLE,
                    );
                }
                Err(_) => close = true,
            }
        }
        if close {
            self.close_api(index);
        }
    }

    /// Answers the REST requests whose name lookups came back.
    pub(super) fn lookups_done(&mut self, now: Instant) {
        for (key, answer) in self.resolver.answers() {
            let index = self.api_conns.iter().position(|c| {
                c.as_ref()
                    .and_then(|c| c.pending.as_ref())
                    .is_some_and(|(k, _)| *k == key)
            });
            // the client is gone (or was answered 504): nothing to do
            let Some(index) = index else { continue };
            let Some(api_conn) = self.api_conns[index].as_mut() else {
                continue;
            };
            let Some((_, mut request)) = api_conn.pending.take() else {
                continue;
            };
            let reply = match (answer, &mut request) {
                (Ok(addr), crate::rest::RestRequest::Startup(startup)) => {
                    if let Some(sip) = startup.sip.as_mut() {
                        sip.resolved = Some(addr);
                    }
                    let (code, body) = self.core.handle_rest(now, request);
                    api::json_reply(code, &body)
                }
                (Err(why), crate::rest::RestRequest::Startup(startup)) => {
                    let (field, host) = match startup.sip.as_ref() {
                        Some(sip) if sip.outbound_proxy.is_some() => {
                            ("sipOutboundProxy", sip.proxy_host_port().0.to_owned())
                        }
                        Some(sip) => ("sipDomain", sip.proxy_host_port().0.to_owned()),
                        None => ("sipDomain", String::new()),
                    };
                    log::info!("REST startup: {field} `{host}` does not resolve: {why}");
                    let e = crate::rest::RestError::new(
                        400,
                        "BAD_FIELD",
                        format!("{field}: `{host}` does not resolve ({why})"),
                    );
                    api::json_reply(e.status, &e.json())
                }
                (_, other) => {
                    let (code, body) = self.core.handle_rest(now, other.clone());
                    api::json_reply(code, &body)
                }
            };
            if let Some(api_conn) = self.api_conns[index].as_mut() {
                api_conn.conn.queue(&reply);
                api_conn.answered = true;
            }
            self.api_conn_ready(now, index);
        }
    }

    /// Reads and drops what an answered API client still sends (`dropped` counts it); true
    /// when it closed, or sent more than [`API_LINGER_BYTES`] in all: then the connection
    /// is closed.
    fn drain_lingering(now: Instant, conn: &mut Conn, dropped: &mut usize) -> bool {
        while *dropped < API_LINGER_BYTES {
            conn.rbuf.clear();
            let outcome = conn.read_available(now, 64 * 1024);
            *dropped += conn.rbuf.len();
            conn.rbuf.clear();
            match outcome {
                ReadOutcome::Open => return false,
                ReadOutcome::More | ReadOutcome::Overflow => {}
                ReadOutcome::Closed => return true,
            }
        }
        true
    }

    fn close_api(&mut self, index: usize) {
        self.api_deadlines.cancel(index);
        if let Some(mut c) = self.api_conns.get_mut(index).and_then(Option::take) {
            let _ = self.poll.registry().deregister(c.conn.stream.tcp());
        }
    }

    pub(super) fn accept_web(&mut self, now: Instant, tls: bool) {
        for _ in 0..256 {
            let accepted = match (&self.web_tls, tls) {
                (Some((listener, _)), true) => listener.accept(),
                (None, true) => return,
                (_, false) => self.web_listener.accept(),
            };
            match accepted {
                Ok((mut stream, peer)) => {
                    let source = web::source_key(peer.ip());
                    let from_source = self.web_per_source.get(&source).copied().unwrap_or(0);
                    if from_source >= self.web_per_source_max {
                        // Closed at once (dropping the stream): one host cannot take the
                        // slots of everybody else.
                        self.web_refused += 1;
                        log::debug!(
                            "web connection from {peer} refused: {from_source} already open from it"
                        );
                        continue;
                    }
                    if !self.web_accepts.admit(now, source) {
                        // Closed at once: a host opening connections in a loop is slowed
                        // to the rate, and all hosts together to the global one.
                        self.web_refused += 1;
                        log::debug!("web connection from {peer} refused: too many new ones");
                        continue;
                    }
                    let Some(index) = Self::free_slot(&mut self.web_conns, web::MAX_WEB_CONNS)
                    else {
                        self.web_refused += 1;
                        log::warn!("web connection from {peer} refused: too many connections");
                        continue;
                    };
                    let token = Token(WEB_CONN_BASE + index);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        let stream = match &self.web_tls {
                            Some((_, config)) if tls => match Stream::tls_server(stream, config) {
                                Some(s) => s,
                                None => continue,
                            },
                            _ => Stream::Plain(stream),
                        };
                        let conn = WebConn::new(stream, peer, now);
                        self.web_deadlines.schedule(index, conn.deadline());
                        self.web_conns[index] = Some(conn);
                        if self.web_sources.len() <= index {
                            self.web_sources.resize(index + 1, None);
                        }
                        self.web_sources[index] = Some(source);
                        *self.web_per_source.entry(source).or_insert(0) += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("web accept: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn web_conn_ready(&mut self, now: Instant, index: usize) {
        let unix_now = unix_time();
        let token = Token(WEB_CONN_BASE + index);
        let Some(conn) = self.web_conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let before = conn.session();
        let next = conn.service(
            now,
            unix_now,
            &mut self.core,
            &mut self.next_session,
            &self.web_policy,
            self.poll.registry(),
            token,
        );
        if let (None, Some(session)) = (before, conn.session()) {
            self.web_by_session.insert(session, index);
        }
        if next == web::Next::Close {
            self.close_web(now, index);
        } else {
            self.web_deadlines.schedule(index, conn.deadline());
        }
    }

    /// After a burst of closed web connections: shrinks the tables they grew and returns
    /// the freed heap to the kernel, so a flood that went away leaves no memory behind.
    pub(super) fn reclaim_memory(&mut self, now: Instant) {
        if self.web_closed_since_reclaim < RECLAIM_AFTER_CLOSES
            || now < self.last_web_close + RECLAIM_QUIET
        {
            return;
        }
        log::debug!(
            "{} web connections or users gone: shrinking tables, returning free memory",
            self.web_closed_since_reclaim
        );
        self.web_closed_since_reclaim = 0;
        // trailing free slots hold no socket (tokens are slot indexes: only the tail goes)
        while self.web_conns.last().is_some_and(Option::is_none) {
            self.web_conns.pop();
        }
        self.web_sources.truncate(self.web_conns.len());
        self.web_deadlines.shrink(self.web_conns.len());
        if self.web_conns.len() * 4 < self.web_conns.capacity() {
            self.web_conns.shrink_to_fit();
            self.web_sources.shrink_to_fit();
        }
        self.web_per_source.shrink_to_fit();
        self.web_by_session.shrink_to_fit();
        self.web_accepts.shrink();
        self.core.shrink_sessions();
        sys::release_free_memory();
    }

    pub(super) fn close_web(&mut self, now: Instant, index: usize) {
        self.web_deadlines.cancel(index);
        self.web_closed_since_reclaim = self.web_closed_since_reclaim.saturating_add(1);
        self.last_web_close = now;
        if let Some(source) = self.web_sources.get_mut(index).and_then(Option::take)
            && let std::collections::hash_map::Entry::Occupied(mut open) =
                self.web_per_source.entry(source)
        {
            *open.get_mut() -= 1;
            if *open.get() == 0 {
                open.remove();
            }
        }
        if let Some(mut conn) = self.web_conns.get_mut(index).and_then(Option::take) {
            if let Some(session) = conn.session() {
                self.web_by_session.remove(&session);
                self.core.session_closed(now, session);
            }
            if !matches!(conn, WebConn::Closed) {
                let _ = self.poll.registry().deregister(conn.stream_mut());
            }
        }
    }
}

/// The name a REST request needs looked up first: a startup whose per-call SIP account's
/// proxy (or domain) is a host name.
fn lookup_of(request: &crate::rest::RestRequest) -> Option<(String, u16)> {
    let crate::rest::RestRequest::Startup(startup) = request else {
        return None;
    };
    let sip = startup.sip.as_ref()?;
    if sip.proxy_addr().is_some() {
        return None;
    }
    let (host, port) = sip.proxy_host_port();
    Some((host.to_owned(), port))
}
