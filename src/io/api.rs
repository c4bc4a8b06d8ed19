//! The HTTP API on `[api] listen`: `GET /health`, `/metrics` counters, and the REST
//! control of "SIP as RTMP" calls (`POST /rest-api/call/…`, see [`crate::rest`]; with
//! `[api] token` each must carry `Authorization: Bearer TOKEN`). Small, bounded requests
//! only: one request per connection, answered and closed.

use crate::call::Histogram;

/// What `/health` and `/metrics` report, read from the shard at answer time.
pub struct Status {
    pub calls: usize,
    /// The proxy account's registration; `None` (`null`) when there is none.
    pub registered: Option<bool>,
    pub metrics: Vec<(&'static str, u64)>,
    /// Per shard (index = shard number): written `srgate_NAME{shard="i"}`.
    pub per_shard: Vec<(&'static str, Vec<u64>)>,
    /// Histograms of all shards together: (name, help, bucket bounds, histogram).
    pub histograms: Vec<(&'static str, &'static str, &'static [f64], Histogram)>,
    /// Counters by SIP status class: written `srgate_NAME{class="1xx"}` … `"6xx"`.
    pub by_class: Vec<(&'static str, [u64; 6])>,
}

/// A histogram in the text format: cumulative `_bucket`s up to `+Inf`, `_sum`, `_count`.
fn histogram(body: &mut String, name: &str, help: &str, bounds: &[f64], h: &Histogram) {
    use std::fmt::Write as _;
    let _ = write!(
        body,
        "# HELP srgate_{name} {help}\n# TYPE srgate_{name} histogram\n"
    );
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(h.buckets) {
        cumulative += count;
        let _ = writeln!(body, "srgate_{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = write!(
        body,
        "srgate_{name}_bucket{{le=\"+Inf\"}} {}\nsrgate_{name}_sum {}\nsrgate_{name}_count {}\n",
        h.count, h.sum, h.count
    );
}

/// Every metric `/metrics` shows: its name (after `srgate_`), whether it is a counter,
/// and its help text. A metric that is not here is shown untyped (the metrics test
/// fails on it).
const METRICS: &[(&str, bool, &str)] = &[
    ("sip_requests_total", true, "SIP requests received"),
    ("sip_responses_total", true, "SIP responses received"),
    (
        "sip_parse_errors_total",
        true,
        "SIP messages that did not parse (answered 400 or dropped)",
    ),
    (
        "sip_dropped_total",
        true,
        "SIP messages dropped without an answer (stray, or for no transaction)",
    ),
    (
        "sip_flood_dropped_total",
        true,
        "SIP datagrams dropped by the per-source and global rate limits",
    ),
    (
        "sip_scanners_dropped_total",
        true,
        "SIP requests of known scanners dropped unanswered",
    ),
    (
        "sip_retransmissions_absorbed_total",
        true,
        "retransmitted SIP requests answered from their transaction",
    ),
    (
        "sip_server_transactions",
        false,
        "SIP server transactions kept",
    ),
    (
        "sip_client_transactions",
        false,
        "SIP client transactions kept",
    ),
    (
        "registrar_bindings",
        false,
        "registrations held by the built-in registrar",
    ),
    (
        "proxy_registered",
        false,
        "1 while the proxy account is registered at sip_svr",
    ),
    (
        "websocket_sessions",
        false,
        "browser WebSocket sessions open",
    ),
    (
        "sip_websocket_sessions",
        false,
        "WebSocket sessions that speak SIP (JsSIP, SIP.js clients)",
    ),
    (
        "sip_websocket_malformed_total",
        true,
        "frames of SIP-over-WebSocket sessions that were not SIP (answered 400 or dropped)",
    ),
    (
        "websocket_login_timeouts_total",
        true,
        "WebSockets closed for not logging in in time",
    ),
    (
        "calls_refused_overload_total",
        true,
        "calls refused because srgate or their shard was at its limit",
    ),
    (
        "udp_send_dropped_total",
        true,
        "SIP UDP datagrams the socket did not take",
    ),
    (
        "udp_truncated_total",
        true,
        "SIP UDP datagrams too large to take",
    ),
    (
        "tcp_send_dropped_total",
        true,
        "SIP messages for TCP or TLS with no connection to carry them",
    ),
    (
        "web_connections",
        false,
        "web connections open (HTTP and WebSocket)",
    ),
    (
        "web_connections_refused_total",
        true,
        "web connections refused by the per-source and global limits",
    ),
    ("calls", false, "calls in progress"),
    ("calls_ended_total", true, "calls ended"),
    (
        "calls_relayed_total",
        true,
        "calls whose media was relayed without transcoding",
    ),
    (
        "calls_transcoded_total",
        true,
        "calls whose media was transcoded",
    ),
    (
        "sip_invites_sent_total",
        true,
        "INVITEs srgate sent for calls toward SIP",
    ),
    (
        "sip_invites_received_total",
        true,
        "INVITEs for app users srgate took",
    ),
    ("rtp_ports_in_use", false, "RTP port pairs held by SIP legs"),
    (
        "rtp_ports_exhausted_total",
        true,
        "calls that found no free RTP port",
    ),
    (
        "calls_panicked_total",
        true,
        "calls ended by a fault in srgate (the others went on)",
    ),
    (
        "media_send_dropped_total",
        true,
        "media datagrams the sockets did not take",
    ),
    (
        "media_relay_arena_full_total",
        true,
        "relayed packets dropped because one wake-up relayed more than the shard's arena holds",
    ),
    (
        "webrtc_ice_failures_total",
        true,
        "calls whose browser leg failed at ICE (no connectivity check in time, or consent expired: the browser vanished mid-call)",
    ),
    (
        "ice_tcp_connections",
        false,
        "ICE-TCP connections of browsers open on the media ports",
    ),
    (
        "ice_tcp_refused_total",
        true,
        "ICE-TCP connections closed at once by the per-address and per-shard limits",
    ),
    (
        "webrtc_dtls_failures_total",
        true,
        "calls whose browser leg failed at DTLS (handshake, fingerprint, certificate, keys)",
    ),
    ("shards", false, "shard threads"),
    (
        "shard_lag_episodes_total",
        true,
        "times a shard began running its timers late (it takes no new calls then)",
    ),
    (
        "cdr_write_errors_total",
        true,
        "call records that could not be written",
    ),
    (
        "cdr_suppressed_total",
        true,
        "records of calls that never connected, left out by the CDR rate limit",
    ),
    (
        "sip_tcp_connections",
        false,
        "SIP TCP and TLS connections open",
    ),
    ("shard_calls", false, "calls in progress, per shard"),
    (
        "shard_packets_received_total",
        true,
        "media datagrams received, per shard",
    ),
    (
        "shard_packets_sent_total",
        true,
        "media datagrams sent, per shard",
    ),
    (
        "sip_responses_received_total",
        true,
        "SIP responses received, by status class",
    ),
    (
        "sip_responses_sent_total",
        true,
        "SIP responses sent (retransmissions included), by status class",
    ),
];

/// The `# HELP` and `# TYPE` lines of metric `name` (Prometheus text format 0.0.4).
fn describe(body: &mut String, name: &str) {
    use std::fmt::Write as _;
    match METRICS.iter().find(|(n, _, _)| *n == name) {
        Some((_, counter, help)) => {
            let kind = if *counter { "counter" } else { "gauge" };
            let _ = write!(
                body,
                "# HELP srgate_{name} {help}\n# TYPE srgate_{name} {kind}\n"
            );
        }
        None => {
            let _ = writeln!(body, "# TYPE srgate_{name} untyped");
        }
    }
}

/// Largest request head accepted; more is answered with 431 and closed.
pub const MAX_REQUEST: usize = 8192;

/// What the bytes of an API connection are, as far as the REST API goes.
pub enum RestRead {
    /// Not a REST request (or not one yet: [`respond`] decides).
    Other,
    /// A REST request whose body has not all come.
    Incomplete,
    /// A REST request refused before the core (bad token, body, field): its answer.
    Refused(Vec<u8>),
    /// A REST request for the core.
    Request(crate::rest::RestRequest),
}

/// Reads a REST request (`/rest-api/…`) in `buf`: head, `Content-Length` body, token.
pub fn rest(buf: &[u8], token: &crate::pii::Secret) -> RestRead {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(buf) else {
        return RestRead::Other;
    };
    let path = req.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    if !path.starts_with("/rest-api/") {
        return RestRead::Other;
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let refused = |e: crate::rest::RestError| RestRead::Refused(json_reply(e.status, &e.json()));
    let length = match content_length(req.headers) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => {
            return refused(crate::rest::RestError {
                status: 400,
                code: "BAD_REQUEST",
                message: "Content-Length: not a number".into(),
            });
        }
    };
    if length > crate::rest::MAX_BODY {
        return refused(crate::rest::RestError {
            status: 413,
            code: "TOO_LARGE",
            message: format!("the body is over {} bytes", crate::rest::MAX_BODY),
        });
    }
    let Some(body) = buf.get(head_len..head_len + length) else {
        return RestRead::Incomplete;
    };
    // Checked once the body is in: a refusal sent before it would be lost to the reset
    // the client's late bytes draw from a closed socket.
    let expected = (!token.is_empty()).then(|| token.expose());
    if !crate::rest::authorized(expected, header("authorization")) {
        return refused(crate::rest::unauthorized());
    }
    match crate::rest::parse(req.method.unwrap_or(""), path, body) {
        Ok(request) => RestRead::Request(request),
        Err(e) => refused(e),
    }
}

/// Whether `buf` holds a whole request: its head and the body its `Content-Length` names.
/// An answer given before that (a refusal on the head) leaves the client sending.
pub fn request_complete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(buf) else {
        return false;
    };
    match content_length(req.headers) {
        None => true,
        Some(Some(n)) => buf.len() >= head_len.saturating_add(n),
        Some(None) => false,
    }
}

/// A request's `Content-Length`: `None` without one, `Some(None)` when it is no number.
fn content_length(headers: &[httparse::Header]) -> Option<Option<usize>> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
}

/// A JSON answer.
pub fn json_reply(code: u16, body: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    reply(code, reason, "application/json", body)
}

/// The answer to the request in `buf`, or `None` while the head is incomplete.
pub fn respond(buf: &[u8], status: &Status) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => None,
        Ok(httparse::Status::Partial) => Some(reply(
            431,
            "Request Header Fields Too Large",
            "text/plain",
            "request too large\n",
        )),
        Err(_) => Some(reply(400, "Bad Request", "text/plain", "bad request\n")),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            Some(match (req.method, path) {
                (Some("GET"), "/health") => {
                    let registered = match status.registered {
                        Some(true) => "true",
                        Some(false) => "false",
                        None => "null",
                    };
                    let body = format!(
                        "{{\"status\":\"ok\",\"calls\":{},\"registered\":{registered}}}\n",
                        status.calls
                    );
                    reply(200, "OK", "application/json", &body)
                }
                (Some("GET"), "/metrics") => {
                    let mut body = String::new();
                    for (name, value) in &status.metrics {
                        describe(&mut body, name);
                        body.push_str(&format!("srgate_{name} {value}\n"));
                    }
                    for (name, values) in &status.per_shard {
                        describe(&mut body, name);
                        for (shard, value) in values.iter().enumerate() {
                            body.push_str(&format!("srgate_{name}{{shard=\"{shard}\"}} {value}\n"));
                        }
                    }
                    for (name, help, bounds, h) in &status.histograms {
                        histogram(&mut body, name, help, bounds, h);
                    }
                    for (name, values) in &status.by_class {
                        describe(&mut body, name);
                        for (class, value) in values.iter().enumerate() {
                            let class = class + 1;
                            body.push_str(&format!(
                                "srgate_{name}{{class=\"{class}xx\"}} {value}\n"
                            ));
                        }
                    }
                    reply(200, "OK", "text/plain; version=0.0.4", &body)
                }
                (Some("GET"), _) => reply(404, "Not Found", "text/plain", "not found\n"),
                _ => reply(
                    405,
                    "Method Not Allowed",
                    "text/plain",
                    "method not allowed\n",
                ),
            })
        }
    }
}

fn reply(code: u16, reason: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            calls: 0,
            registered: Some(true),
            metrics: vec![("sip_received", 3)],
            per_shard: vec![("shard_calls", vec![2, 5])],
            histograms: Vec::new(),
            by_class: vec![("sip_responses_sent_total", [1, 7, 0, 2, 0, 0])],
        }
    }

    #[test]
    fn health_reports_calls_and_registration() {
        let out = respond(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &status()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.ends_with("{\"status\":\"ok\",\"calls\":0,\"registered\":true}\n"));
        // no proxy account (standalone, or [proxy] on = 0): nothing to be registered
        let standalone = Status {
            registered: None,
            ..status()
        };
        let out = respond(b"GET /health HTTP/1.1\r\n\r\n", &standalone).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\"registered\":null}\n"), "{text}");
    }

    #[test]
    fn sip_responses_are_counted_by_class() {
        let out = respond(b"GET /metrics HTTP/1.1\r\n\r\n", &status()).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "# TYPE srgate_sip_responses_sent_total counter",
            "srgate_sip_responses_sent_total{class=\"1xx\"} 1",
            "srgate_sip_responses_sent_total{class=\"2xx\"} 7",
            "srgate_sip_responses_sent_total{class=\"4xx\"} 2",
            "srgate_sip_responses_sent_total{class=\"6xx\"} 0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}:\n{text}");
        }
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = Histogram::default();
        let bounds = &crate::call::ANSWER_TIME_BOUNDS;
        for seconds in [0.05, 0.3, 0.3, 7.0, 120.0] {
            h.observe(bounds, seconds);
        }
        let mut other = Histogram::default();
        other.observe(bounds, 0.2);
        h.merge(&other);
        let status = Status {
            histograms: vec![("call_answer_seconds", "answer time", bounds, h)],
            ..status()
        };
        let out = respond(b"GET /metrics HTTP/1.1\r\n\r\n", &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "# TYPE srgate_call_answer_seconds histogram",
            "srgate_call_answer_seconds_bucket{le=\"0.1\"} 1",
            "srgate_call_answer_seconds_bucket{le=\"0.25\"} 2",
            "srgate_call_answer_seconds_bucket{le=\"0.5\"} 4",
            "srgate_call_answer_seconds_bucket{le=\"10\"} 5",
            "srgate_call_answer_seconds_bucket{le=\"30\"} 5",
            "srgate_call_answer_seconds_bucket{le=\"+Inf\"} 6",
            "srgate_call_answer_seconds_count 6",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("srgate_call_answer_seconds_sum "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((sum - 127.85).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn a_rest_request_is_judged_once_its_body_is_in() {
        let token = crate::pii::Secret::new("t0ken-t0ken-t0ken");
        let head = "POST /rest-api/call/find_all HTTP/1.1\r\nContent-Length: 2\r\n";
        // no token: refused, but only once the body came (the client is still sending)
        let bare = format!("{head}\r\n");
        assert!(matches!(
            rest(bare.as_bytes(), &token),
            RestRead::Incomplete
        ));
        let RestRead::Refused(answer) = rest(format!("{bare}{{}}").as_bytes(), &token) else {
            panic!("refused");
        };
        assert!(answer.starts_with(b"HTTP/1.1 401"));
        let good = format!("{head}Authorization: Bearer t0ken-t0ken-t0ken\r\n\r\n{{}}");
        assert!(matches!(
            rest(good.as_bytes(), &token),
            RestRead::Request(_)
        ));
        // a body over the limit is refused on its head
        let big = format!(
            "POST /rest-api/call/find_all HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            crate::rest::MAX_BODY + 1
        );
        let RestRead::Refused(answer) = rest(big.as_bytes(), &token) else {
            panic!("refused");
        };
        assert!(answer.starts_with(b"HTTP/1.1 413"));
        assert!(matches!(
            rest(b"GET /health HTTP/1.1\r\n\r\n", &token),
            RestRead::Other
        ));
        // whole requests, and ones a client is still sending
        assert!(request_complete(b"GET /health HTTP/1.1\r\n\r\n"));
        assert!(request_complete(format!("{bare}{{}}").as_bytes()));
        assert!(!request_complete(bare.as_bytes()));
        assert!(!request_complete(big.as_bytes()));
        assert!(!request_complete(b"GET /health HTTP/1.1\r\nHo"));
        assert!(!request_complete(
            b"POST /x HTTP/1.1\r\nContent-Length: many\r\n\r\n"
        ));
    }

    #[test]
    fn partial_bad_and_unknown_requests() {
        assert!(respond(b"GET /health HTTP/1.1\r\nHo", &status()).is_none());
        let bad = respond(b"\x00\x01garbage\r\n\r\n", &status()).unwrap();
        assert!(bad.starts_with(b"HTTP/1.1 400"));
        let nf = respond(b"GET /nope HTTP/1.1\r\n\r\n", &status()).unwrap();
        assert!(nf.starts_with(b"HTTP/1.1 404"));
        let post = respond(b"POST /health HTTP/1.1\r\n\r\n", &status()).unwrap();
        assert!(post.starts_with(b"HTTP/1.1 405"));
        let metrics = respond(b"GET /metrics HTTP/1.1\r\n\r\n", &status()).unwrap();
        assert!(
            String::from_utf8(metrics)
                .unwrap()
                .contains("srgate_sip_received 3\n")
        );
    }
}
