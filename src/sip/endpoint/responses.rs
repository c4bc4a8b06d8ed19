//! How the SIP endpoint's server transactions answer: the response head copied from the
//! request (RFC 3261 §8.2.6.2, `received`/`rport` filled in), where it goes (§18.2.2,
//! RFC 3581), the To tag derived from the request so that a stateless answer sent again is
//! the same (§8.2.7), sending on a transaction and draining what it wants sent, and the 400
//! built from the raw lines of a request the parser rejected.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Endpoint, RequestIds, ServerKey, ServerMachine, ServerTx, Transmit, Transport};
use crate::wire::sip::{HeaderName, Message, MessageBuilder, Via, reason_phrase};

impl Endpoint {
    /// Marks transaction `key` as worth keeping (trusted or authenticated request).
    pub(super) fn keep(&mut self, key: &ServerKey) {
        if let Some(tx) = self.server_txs.get_mut(key) {
            tx.keep = true;
        }
    }

    /// A To tag for the answers to a request: the same for every copy of it.
    pub(super) fn derived_tag(&self, ids: &RequestIds<'_>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.cfg.seed);
        for part in [ids.call_id, ids.from_tag, ids.branch.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(ids.cseq.to_be_bytes());
        let digest = h.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sends a response on server transaction `key` (built from its stored head).
    pub(super) fn respond(
        &mut self,
        now: Instant,
        key: &ServerKey,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        let Some(tx) = self.server_txs.get_mut(key) else {
            return;
        };
        let mut headers: Vec<(&str, String)> = Vec::with_capacity(extra.len() + 1);
        headers.push(("Server", self.cfg.user_agent.clone()));
        headers.extend(extra.iter().map(|(n, v)| (*n, v.clone())));
        let payload = build_response(&tx.head, code, reason, &headers);
        if code >= 200 {
            tx.final_sent = true;
        }
        let sent = match &mut tx.machine {
            ServerMachine::NonInvite(m) => m.send_response(now, code, payload),
            ServerMachine::Invite(m) => m.send_response(now, code, payload),
        };
        if let Err(e) = sent {
            // Only a logic slip of ours gets here (a second final answer): keep the first.
            log::warn!("response {code} not sent: {e:?}");
        }
        Self::drain_server(&mut self.transmits, tx);
        let done = match &tx.machine {
            ServerMachine::NonInvite(m) => m.is_terminated(),
            ServerMachine::Invite(m) => m.is_terminated(),
        };
        if done || (code >= 200 && !tx.keep) {
            self.server_txs.remove(key);
        }
    }

    pub(super) fn drain_server(transmits: &mut VecDeque<Transmit>, tx: &mut ServerTx) {
        let (transport, destination) = tx.destination;
        loop {
            let next = match &mut tx.machine {
                ServerMachine::NonInvite(m) => m.poll_transmit(),
                ServerMachine::Invite(m) => m.poll_transmit(),
            };
            let Some(bytes) = next else { break };
            if log::log_enabled!(log::Level::Trace) {
                log::trace!(
                    "SIP {} to {destination}:\n{}",
                    transport.via_token(),
                    crate::pii::sip_dump(bytes)
                );
            }
            transmits.push_back(Transmit {
                transport,
                destination,
                payload: bytes.to_vec(),
            });
        }
    }
}

/// RFC 3261 §18.2.2 with RFC 3581: where a response to a request from `source` goes.
pub(super) fn response_destination(
    transport: Transport,
    source: SocketAddr,
    via: &Via<'_>,
) -> SocketAddr {
    if transport.reliable() || via.rport.is_some() {
        return source;
    }
    SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
}

/// The headers every response to `msg` copies (RFC 3261 §8.2.6.2): all Vias (the top
/// one with `received` and, when asked, `rport` filled in), From, To (with our tag for
/// answers above 100), Call-ID and CSeq.
pub(super) fn response_head(
    msg: &Message<'_>,
    ids: &RequestIds<'_>,
    source: SocketAddr,
    to_tag: Option<&str>,
) -> Vec<(HeaderName<'static>, String)> {
    let mut head = Vec::with_capacity(8);
    let mut first = true;
    for value in msg.header_all(HeaderName::Via) {
        if first {
            first = false;
            let (top, rest) = split_first_via(value);
            let mut top = top.trim().to_string();
            if ids.via.rport == Some(None) {
                // "rport" without a value: fill in the source port (RFC 3581 §4).
                top = fill_rport(&top, source.port());
            }
            if ids.via.received.is_none() {
                top.push_str(&format!(";received={}", source.ip()));
            }
            match rest {
                Some(rest) => head.push((HeaderName::Via, format!("{top},{rest}"))),
                None => head.push((HeaderName::Via, top)),
            }
        } else {
            head.push((HeaderName::Via, value.trim().to_string()));
        }
    }
    if let Some(v) = msg.header(HeaderName::From) {
        head.push((HeaderName::From, v.trim().to_string()));
    }
    if let Some(v) = msg.header(HeaderName::To) {
        let v = v.trim();
        head.push((
            HeaderName::To,
            match to_tag {
                Some(tag) => format!("{v};tag={tag}"),
                None => v.to_string(),
            },
        ));
    }
    if let Some(v) = msg.header(HeaderName::CallId) {
        head.push((HeaderName::CallId, v.trim().to_string()));
    }
    if let Some(v) = msg.header(HeaderName::CSeq) {
        head.push((HeaderName::CSeq, v.trim().to_string()));
    }
    head
}

/// Splits the first Via of a header value from the rest ("a, b" → "a", " b").
fn split_first_via(value: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    for (i, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => return (&value[..i], Some(&value[i + 1..])),
            _ => {}
        }
    }
    (value, None)
}

/// Replaces a bare `rport` parameter in a Via value with `rport=PORT`.
fn fill_rport(via: &str, port: u16) -> String {
    let mut out = String::with_capacity(via.len() + 8);
    for (i, part) in via.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        if part.trim().eq_ignore_ascii_case("rport") {
            out.push_str(&format!("rport={port}"));
        } else {
            out.push_str(part);
        }
    }
    out
}

pub(super) fn build_response(
    head: &[(HeaderName<'static>, String)],
    code: u16,
    reason: &str,
    extra: &[(&str, String)],
) -> Vec<u8> {
    let reason = if reason.is_empty() {
        reason_phrase(code)
    } else {
        reason
    };
    let mut b = MessageBuilder::response(code, reason);
    for (name, value) in head {
        b = b.header(*name, value);
    }
    for (name, value) in extra {
        b = b.header(HeaderName::new(name), value);
    }
    b.build()
}

/// A response to a request the parser rejected, built from its raw lines when the five
/// headers a response needs can be found; `None` means drop (a response, or too broken).
pub(super) fn bad_request_response(data: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let head_end = find(data, b"\r\n\r\n").unwrap_or(data.len());
    let head = std::str::from_utf8(&data[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    if start.starts_with("SIP/") || !start.contains(" SIP/") {
        return None; // a response, or not SIP at all: never answer those
    }
    if start.starts_with("ACK ") {
        return None; // ACKs are never answered
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    let mut need = [false; 5]; // via, from, to, call-id, cseq
    for line in lines {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let idx = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => 0,
            "from" | "f" => 1,
            "to" | "t" => 2,
            "call-id" | "i" => 3,
            "cseq" => 4,
            _ => continue,
        };
        need[idx] = true;
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !need.iter().all(|x| *x) {
        return None;
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
