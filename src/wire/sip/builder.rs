//! Building requests and responses (RFC 3261 §7) on the signalling path: one `Vec<u8>`
//! grown as headers are added. Content-Length is always written. CR and LF in values
//! become spaces, so no value can inject a header.

use std::fmt::{self, Write as _};

use super::header::HeaderName;
use super::method::Method;

/// Builds one SIP message.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    body: Option<(String, Vec<u8>)>,
}

/// `fmt::Write` over the builder's buffer that turns CR and LF into spaces.
struct Sanitized<'b>(&'b mut Vec<u8>);

impl fmt::Write for Sanitized<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend(
            s.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        Ok(())
    }
}

impl MessageBuilder {
    fn with_start_line(args: fmt::Arguments<'_>) -> Self {
        let mut buf = Vec::with_capacity(1024);
        // writing into a Vec cannot fail
        let _ = Sanitized(&mut buf).write_fmt(args);
        buf.extend_from_slice(b"\r\n");
        MessageBuilder { buf, body: None }
    }

    /// Starts a request: `METHOD uri SIP/2.0`.
    pub fn request(method: Method<'_>, uri: &str) -> Self {
        Self::with_start_line(format_args!("{method} {uri} SIP/2.0"))
    }

    /// Starts a response: `SIP/2.0 code reason`.
    pub fn response(code: u16, reason: &str) -> Self {
        Self::with_start_line(format_args!("SIP/2.0 {code} {reason}"))
    }

    /// Adds a header line (in call order).
    pub fn header(mut self, name: HeaderName<'_>, value: impl fmt::Display) -> Self {
        self.push_header(name, value);
        self
    }

    /// Adds a header line through a mutable reference.
    pub fn push_header(&mut self, name: HeaderName<'_>, value: impl fmt::Display) -> &mut Self {
        let mut w = Sanitized(&mut self.buf);
        // writing into a Vec cannot fail
        let _ = write!(w, "{name}: {value}");
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.set_body(content_type, body);
        self
    }

    /// Sets the body through a mutable reference.
    pub fn set_body(&mut self, content_type: &str, body: &[u8]) -> &mut Self {
        self.body = Some((content_type.to_owned(), body.to_vec()));
        self
    }

    /// Finishes the message: Content-Type (with a body), Content-Length, blank line, body.
    pub fn build(mut self) -> Vec<u8> {
        let body = self.body.take();
        if let Some((content_type, _)) = &body {
            self.push_header(HeaderName::ContentType, content_type);
        }
        let len = body.as_ref().map_or(0, |(_, b)| b.len());
        self.push_header(HeaderName::ContentLength, len);
        self.buf.extend_from_slice(b"\r\n");
        if let Some((_, b)) = body {
            self.buf.extend_from_slice(&b);
        }
        self.buf
    }
}

/// The standard reason phrase of a status code (RFC 3261 §21 and extensions); `""` for an
/// unknown code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::Message;

    #[test]
    fn build_and_parse_back() {
        let raw = MessageBuilder::request(Method::Invite, "sip:bob@example.com")
            .header(
                HeaderName::Via,
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport",
            )
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, "<sip:alice@example.com>;tag=a1")
            .header(HeaderName::To, "<sip:bob@example.com>")
            .header(HeaderName::CallId, "c1@192.0.2.1")
            .header(HeaderName::CSeq, format_args!("{} {}", 1, Method::Invite))
            .body("application/sdp", b"v=0\r\n")
            .build();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.body(), b"v=0\r\n");
        assert_eq!(m.content_length(), Some(5));
        assert_eq!(m.header(HeaderName::ContentType), Some("application/sdp"));
        assert_eq!(m.max_forwards(), Ok(Some(70)));
    }

    #[test]
    fn response_without_body_and_injection() {
        let raw = MessageBuilder::response(200, reason_phrase(200))
            .header(HeaderName::Other("X-Evil"), "a\r\nInjected: yes")
            .build();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains("X-Evil: a  Injected: yes\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        assert_eq!(reason_phrase(481), "Call/Transaction Does Not Exist");
        assert_eq!(reason_phrase(299), "");
    }
}
