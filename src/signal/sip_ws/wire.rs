//! The SIP messages of the SIP-over-WebSocket agent that depend on nothing but their
//! inputs: response heads and tags, CANCEL and a non-2xx ACK of srgate's INVITE, and
//! srgate's answer again for a new offer (hold and resume).

use super::WsCall;
use crate::wire::sip::{HeaderName, Message, MessageBuilder, Method, NameAddr};

/// The headers a response copies: every Via, From, To, Call-ID, CSeq (over a WebSocket
/// the Via needs no `received`: responses go back on the same socket).
pub(super) fn response_head(msg: &Message<'_>) -> Vec<(&'static str, String)> {
    let mut head = Vec::with_capacity(6);
    for v in msg.header_all(HeaderName::new("Via")) {
        head.push(("Via", v.trim().to_string()));
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = msg.header(HeaderName::new(name)) {
            head.push((name, v.trim().to_string()));
        }
    }
    head
}

pub(super) fn to_tag<'a>(msg: &Message<'a>) -> Option<&'a str> {
    msg.to().ok().and_then(|t: NameAddr<'a>| t.tag)
}

/// Adds our tag to the To of a response head that has none.
pub(super) fn add_to_tag(head: &mut [(&'static str, String)], tag: &str) {
    for (name, value) in head.iter_mut() {
        if *name == "To" && !value.contains(";tag=") {
            value.push_str(";tag=");
            value.push_str(tag);
        }
    }
}

/// The head of a request of srgate's to the client in `call`: the top Via (WSS, srgate's
/// `domain`, `branch`), Max-Forwards, the call's From and Call-ID, `to` (the call's To, or
/// a final answer's), CSeq `cseq` of `method`.
pub(super) fn request(
    method: Method<'_>,
    call: &WsCall,
    domain: &str,
    branch: &str,
    to: &str,
    cseq: u32,
) -> MessageBuilder {
    MessageBuilder::request(method, &call.target)
        .header(
            HeaderName::new("Via"),
            format_args!("SIP/2.0/WSS {domain};branch=z9hG4bK{branch}"),
        )
        .header(HeaderName::new("Max-Forwards"), 70)
        .header(HeaderName::new("From"), &call.local)
        .header(HeaderName::new("To"), to)
        .header(HeaderName::new("Call-ID"), &call.call_id)
        .header(HeaderName::new("CSeq"), format_args!("{cseq} {method}"))
}

/// The CANCEL of srgate's INVITE to the client (same branch and CSeq number).
pub(super) fn cancel_request(call: &WsCall, domain: &str, elsewhere: bool) -> Vec<u8> {
    let (branch, cseq) = (&call.invite_branch, call.invite_cseq);
    let mut b = request(Method::Cancel, call, domain, branch, &call.remote, cseq);
    if elsewhere {
        b = b.header(
            HeaderName::new("Reason"),
            "SIP;cause=200;text=\"Call completed elsewhere\"",
        );
    }
    b.build()
}

/// The ACK of a non-2xx answer to srgate's INVITE: the INVITE's branch, the answer's To.
pub(super) fn non_2xx_ack(call: &WsCall, to: &str, domain: &str) -> Vec<u8> {
    let (branch, cseq) = (&call.invite_branch, call.invite_cseq);
    request(Method::Ack, call, domain, branch, to, cseq).build()
}

/// srgate's answer again for a new offer of the same session (hold, resume, a session
/// refresh): every direction attribute mirrors the offer's, and the `o=` version grows
/// when that changed anything.
pub(super) fn reanswer(answer: &str, offer: &str) -> String {
    let offered = offer
        .lines()
        .map(str::trim)
        .find_map(|l| match l {
            "a=sendonly" => Some("a=recvonly"),
            "a=recvonly" => Some("a=sendonly"),
            "a=inactive" => Some("a=inactive"),
            "a=sendrecv" => Some("a=sendrecv"),
            _ => None,
        })
        .unwrap_or("a=sendrecv");
    let is_direction = |l: &str| {
        matches!(
            l.trim(),
            "a=sendonly" | "a=recvonly" | "a=inactive" | "a=sendrecv"
        )
    };
    let current = answer
        .lines()
        .find(|l| is_direction(l))
        .map(str::trim)
        .unwrap_or("a=sendrecv");
    if current == offered {
        return answer.to_string();
    }
    let mut out = String::with_capacity(answer.len() + 16);
    let mut has_direction = false;
    for line in answer.lines() {
        let line = line.trim_end_matches('\r');
        if is_direction(line) {
            has_direction = true;
            out.push_str(offered);
        } else if let Some(rest) = line.strip_prefix("o=") {
            // o=<user> <sess-id> <sess-version> <nettype> <addrtype> <addr>
            let mut f: Vec<String> = rest.split(' ').map(str::to_string).collect();
            if let Some(v) = f.get_mut(2).and_then(|v| v.parse::<u64>().ok()) {
                f[2] = (v + 1).to_string();
            }
            out.push_str("o=");
            out.push_str(&f.join(" "));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    if !has_direction {
        out.push_str(offered);
        out.push_str("\r\n");
    }
    out
}
