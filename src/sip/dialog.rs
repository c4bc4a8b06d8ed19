//! SIP dialogs (RFC 3261 §12): the peer-to-peer relationship an INVITE creates, its
//! identity (Call-ID and both tags), the sequence numbers of both sides, the remote target
//! and the route set, and how in-dialog requests are built and checked. Owned strings: a
//! dialog lives for a call, not a packet.

use crate::wire::sip::{HeaderName, Message, MessageBuilder, Method, NameAddr, Uri};

/// What went wrong creating or using a dialog; each maps to a response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogError {
    /// A header needed to set the dialog up is missing or malformed (400).
    BadMessage(&'static str),
    /// An in-dialog request's CSeq is lower than the last one seen (500, §12.2.2).
    CSeqOutOfOrder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our CSeq: the next request we send uses `local_seq + 1`.
    pub local_seq: u32,
    /// The last CSeq the peer used, `None` until it sends a request (§12.1.2).
    pub remote_seq: Option<u32>,
    /// Our URI (From of our requests) and the peer's (To), without tags.
    pub local_uri: String,
    pub remote_uri: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: String,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<String>,
    /// Created over `sips`/TLS.
    pub secure: bool,
    pub state: DialogState,
}

fn name_addr_uri<'a>(na: &NameAddr<'a>) -> &'a str {
    na.uri.as_str()
}

/// The Record-Route entries of a message, each header's comma-separated values split.
fn record_routes(msg: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for value in msg.header_all(HeaderName::RecordRoute) {
        for part in split_commas(value) {
            let part = part.trim();
            if !part.is_empty() {
                out.push(part.to_string());
            }
        }
    }
    out
}

/// Splits a header value at commas outside `<>` and quotes.
fn split_commas(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter()
}

fn contact_uri(msg: &Message<'_>) -> Result<String, DialogError> {
    msg.contacts()
        .flatten()
        .find_map(|c| c.addr().map(|na| na.uri.as_str().to_string()))
        .ok_or(DialogError::BadMessage("Contact"))
}

impl Dialog {
    /// The UAS side (§12.1.1): from a dialog-creating request we answer with a 2xx (or a
    /// provisional with To tag `local_tag`).
    pub fn new_uas(
        request: &Message<'_>,
        local_tag: &str,
        local_seq: u32,
    ) -> Result<Dialog, DialogError> {
        let from = request
            .from()
            .map_err(|_| DialogError::BadMessage("From"))?;
        let to = request.to().map_err(|_| DialogError::BadMessage("To"))?;
        let cseq = request
            .cseq()
            .map_err(|_| DialogError::BadMessage("CSeq"))?;
        let call_id = request
            .call_id()
            .map_err(|_| DialogError::BadMessage("Call-ID"))?;
        let remote_tag = from.tag.ok_or(DialogError::BadMessage("From tag"))?;
        let secure = request
            .request_uri()
            .and_then(|u| Uri::parse(u).ok())
            .is_some_and(|u| u.scheme.as_str().eq_ignore_ascii_case("sips"));
        Ok(Dialog {
            call_id: call_id.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: remote_tag.to_string(),
            local_seq,
            remote_seq: Some(cseq.seq),
            local_uri: name_addr_uri(&to).to_string(),
            remote_uri: name_addr_uri(&from).to_string(),
            remote_target: contact_uri(request)?,
            route_set: record_routes(request),
            secure,
            state: DialogState::Confirmed,
        })
    }

    /// The UAC side (§12.1.2): from the response (1xx with To tag, or 2xx) to a request we
    /// sent with `call_id`, our From tag, CSeq `local_seq`, From URI `local_uri` and To
    /// URI `remote_uri`.
    pub fn new_uac(
        response: &Message<'_>,
        local_tag: &str,
        local_seq: u32,
        local_uri: &str,
        remote_uri: &str,
        secure: bool,
    ) -> Result<Dialog, DialogError> {
        let to = response.to().map_err(|_| DialogError::BadMessage("To"))?;
        let call_id = response
            .call_id()
            .map_err(|_| DialogError::BadMessage("Call-ID"))?;
        let remote_tag = to.tag.ok_or(DialogError::BadMessage("To tag"))?;
        let mut route_set = record_routes(response);
        route_set.reverse();
        let status = response.status().unwrap_or(0);
        Ok(Dialog {
            call_id: call_id.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: remote_tag.to_string(),
            local_seq,
            remote_seq: None,
            local_uri: local_uri.to_string(),
            remote_uri: remote_uri.to_string(),
            remote_target: contact_uri(response)?,
            route_set,
            secure,
            state: if (200..300).contains(&status) {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
        })
    }

    /// Whether an incoming request belongs to this dialog (§12.2.2: Call-ID, To tag =
    /// ours, From tag = theirs).
    pub fn matches_request(&self, request: &Message<'_>) -> bool {
        let (Ok(call_id), Ok(from), Ok(to)) = (request.call_id(), request.from(), request.to())
        else {
            return false;
        };
        call_id == self.call_id
            && to.tag == Some(self.local_tag.as_str())
            && from.tag == Some(self.remote_tag.as_str())
    }

    /// Checks and records an in-dialog request's CSeq (§12.2.2); a target refresh
    /// (re-INVITE, UPDATE) with a Contact updates the remote target.
    pub fn on_request(&mut self, request: &Message<'_>) -> Result<(), DialogError> {
        let cseq = request
            .cseq()
            .map_err(|_| DialogError::BadMessage("CSeq"))?;
        let method = request
            .method()
            .ok_or(DialogError::BadMessage("request line"))?;
        if matches!(method, Method::Ack | Method::Cancel) {
            return Ok(()); // they reuse the CSeq of the request they belong to
        }
        if let Some(last) = self.remote_seq
            && cseq.seq <= last
        {
            return Err(DialogError::CSeqOutOfOrder);
        }
        self.remote_seq = Some(cseq.seq);
        if matches!(method, Method::Invite | Method::Update)
            && let Ok(target) = contact_uri(request)
        {
            self.remote_target = target;
        }
        Ok(())
    }

    /// Starts an in-dialog request (§12.2.1.1): Request-URI and Route from the remote target
    /// and route set (loose routing when the first route has `lr`, else strict routing),
    /// From/To with tags, Call-ID and CSeq (a new number, except for ACK which reuses
    /// `ack_of`'s). The caller adds Via, Max-Forwards, Contact and the body.
    pub fn request(&mut self, method: Method<'_>, ack_of: Option<u32>) -> MessageBuilder {
        let seq = match (method, ack_of) {
            (Method::Ack, Some(seq)) | (Method::Cancel, Some(seq)) => seq,
            _ => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        let strict = self.route_set.first().is_some_and(|r| {
            let inner = r.trim().trim_start_matches('<');
            let inner = inner.split('>').next().unwrap_or(inner);
            Uri::parse(inner)
                .map(|u| u.param("lr").is_none())
                .unwrap_or(false)
        });
        let (request_uri, routes): (String, Vec<String>) = if strict {
            let first = self.route_set[0].trim();
            let first = first
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or(first)
                .to_string();
            let mut rest: Vec<String> = self.route_set[1..].to_vec();
            rest.push(format!("<{}>", self.remote_target));
            (first, rest)
        } else {
            (self.remote_target.clone(), self.route_set.clone())
        };
        let mut b = MessageBuilder::request(method, &request_uri);
        for r in &routes {
            b = b.header(HeaderName::Route, r);
        }
        b.header(
            HeaderName::From,
            format_args!("<{}>;tag={}", self.local_uri, self.local_tag),
        )
        .header(
            HeaderName::To,
            format_args!("<{}>;tag={}", self.remote_uri, self.remote_tag),
        )
        .header(HeaderName::CallId, &self.call_id)
        .header(HeaderName::CSeq, format_args!("{seq} {}", method.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:1000@127.0.0.1:5086 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKpbx1\r\n\
        Record-Route: <sip:127.0.0.1:5060;lr>, <sip:10.0.0.9;lr>\r\n\
        From: \"Desk\" <sip:1006@127.0.0.1>;tag=caller1\r\n\
        To: <sip:1000@127.0.0.1>\r\n\
        Call-ID: d1@pbx\r\n\
        CSeq: 10 INVITE\r\n\
        Contact: <sip:1006@127.0.0.1:5062>\r\n\
        Max-Forwards: 69\r\n\
        Content-Length: 0\r\n\r\n";

    fn parse(s: &str) -> Message<'_> {
        Message::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn uas_dialog_from_invite_builds_bye_along_the_route_set() {
        let invite = parse(INVITE);
        let mut d = Dialog::new_uas(&invite, "ours1", 100).unwrap();
        assert_eq!(d.remote_tag, "caller1");
        assert_eq!(d.remote_target, "sip:1006@127.0.0.1:5062");
        assert_eq!(
            d.route_set,
            vec!["<sip:127.0.0.1:5060;lr>", "<sip:10.0.0.9;lr>"]
        );
        let bye = d
            .request(Method::Bye, None)
            .header(HeaderName::Via, "SIP/2.0/UDP x;branch=z9hG4bKb")
            .build();
        let bye_text = String::from_utf8(bye.clone()).unwrap();
        let bye = Message::parse(&bye).unwrap();
        assert_eq!(
            bye.request_uri(),
            Some("sip:1006@127.0.0.1:5062"),
            "loose routing: R-URI = target"
        );
        assert_eq!(bye.cseq().unwrap().seq, 101);
        assert_eq!(bye.from().unwrap().tag, Some("ours1"));
        assert_eq!(bye.to().unwrap().tag, Some("caller1"));
        let routes: Vec<&str> = bye.header_all(HeaderName::Route).collect();
        assert_eq!(
            routes,
            vec!["<sip:127.0.0.1:5060;lr>", "<sip:10.0.0.9;lr>"],
            "{bye_text}"
        );
    }

    #[test]
    fn in_dialog_requests_are_matched_and_cseq_checked() {
        let invite = parse(INVITE);
        let mut d = Dialog::new_uas(&invite, "ours1", 1).unwrap();
        let reinvite_text = INVITE
            .replace(
                "To: <sip:1000@127.0.0.1>",
                "To: <sip:1000@127.0.0.1>;tag=ours1",
            )
            .replace("CSeq: 10 INVITE", "CSeq: 11 INVITE")
            .replace(
                "Contact: <sip:1006@127.0.0.1:5062>",
                "Contact: <sip:1006@127.0.0.1:7000>",
            );
        let reinvite = parse(&reinvite_text);
        assert!(d.matches_request(&reinvite));
        assert!(!d.matches_request(&invite), "no To tag: not in this dialog");
        d.on_request(&reinvite).unwrap();
        assert_eq!(d.remote_target, "sip:1006@127.0.0.1:7000", "target refresh");
        assert_eq!(d.on_request(&reinvite), Err(DialogError::CSeqOutOfOrder));
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_strict_routes() {
        let ok = "SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5086;branch=z9hG4bK-sg-1\r\n\
            Record-Route: <sip:a.example>\r\n\
            Record-Route: <sip:b.example;lr>\r\n\
            From: <sip:1000@127.0.0.1>;tag=me\r\n\
            To: <sip:1006@127.0.0.1>;tag=them\r\n\
            Call-ID: out1\r\n\
            CSeq: 1 INVITE\r\n\
            Contact: <sip:1006@127.0.0.1:5062>\r\n\
            Content-Length: 0\r\n\r\n";
        let mut d = Dialog::new_uac(
            &parse(ok),
            "me",
            1,
            "sip:1000@127.0.0.1",
            "sip:1006@127.0.0.1",
            false,
        )
        .unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.route_set, vec!["<sip:b.example;lr>", "<sip:a.example>"]);
        // first route is loose: normal
        let ack = d
            .request(Method::Ack, Some(1))
            .header(HeaderName::Via, "SIP/2.0/UDP x;branch=z9hG4bKa")
            .build();
        let ack = Message::parse(&ack).unwrap();
        assert_eq!(ack.cseq().unwrap().seq, 1, "ACK reuses the INVITE's CSeq");
        assert_eq!(ack.request_uri(), Some("sip:1006@127.0.0.1:5062"));
        // make the first route strict: the R-URI becomes that route, the target goes last
        d.route_set = vec!["<sip:a.example>".into(), "<sip:b.example;lr>".into()];
        let bye = d
            .request(Method::Bye, None)
            .header(HeaderName::Via, "SIP/2.0/UDP x;branch=z9hG4bKc")
            .build();
        let bye = Message::parse(&bye).unwrap();
        assert_eq!(bye.request_uri(), Some("sip:a.example"));
        let routes: Vec<&str> = bye.header_all(HeaderName::Route).collect();
        assert_eq!(
            routes,
            vec!["<sip:b.example;lr>", "<sip:1006@127.0.0.1:5062>"]
        );
        assert_eq!(bye.cseq().unwrap().seq, 2);
    }
}
