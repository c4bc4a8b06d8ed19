//! Parse errors of the SIP wire layer and the one place where they map to wire answers.

use core::fmt;

/// Why a SIP message, header or URI could not be read.
///
/// [`Error::status`] maps every variant to the response a server sends for a request that
/// fails this way (RFC 3261 §8.2, §21; RFC 4475 §3.1.2). A response that fails to parse is
/// dropped, never answered.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The blank line that closes the header section was not found: the datagram is cut
    /// short, or a stream needs more bytes.
    Incomplete,
    /// The body is shorter than Content-Length says (RFC 3261 §18.3).
    Truncated,
    /// The message is larger than [`super::MAX_MESSAGE`].
    TooLarge,
    /// The request line or status line does not follow RFC 3261 §7.1 / §7.2 (extra or
    /// missing spaces, a status code that is not three digits, ...).
    BadStartLine,
    /// The SIP version is well formed but not `SIP/2.0`.
    UnsupportedVersion,
    /// The header section is not UTF-8 text (RFC 3261 §7.3.1, TEXT-UTF8).
    NotUtf8,
    /// A header line has no name or no colon, or the first header line is a continuation.
    BadHeader,
    /// More header lines than [`super::MAX_HEADERS`].
    TooManyHeaders,
    /// A header required by RFC 3261 §8.1.1 is absent (the name is the canonical header name).
    MissingHeader(&'static str),
    /// A header that may occur once occurs several times with different values.
    DuplicateHeader(&'static str),
    /// Content-Length is not a non-negative decimal number.
    BadContentLength,
    /// A URI does not follow RFC 3261 §19.1 / §25.1 (or a Request-URI carries headers).
    BadUri,
    /// The Request-URI uses a scheme this element does not serve (RFC 3261 §8.2.2.1).
    UnsupportedScheme,
    /// A Via value does not follow RFC 3261 §20.42.
    BadVia,
    /// CSeq is malformed or its number is out of range (RFC 3261 §20.16).
    BadCSeq,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    MethodMismatch,
    /// The request method is not one srgate knows and the CSeq method differs from it:
    /// answered 501 rather than 400 (RFC 4475 §3.1.2.18).
    UnknownMethodMismatch,
    /// A From, To, Route or Contact value is not a valid name-addr / addr-spec
    /// (unterminated quotes, unquoted separators in a display name, LWS inside the URI, ...).
    BadNameAddr,
    /// A Contact value is malformed (a bad `expires` or `q` parameter, `*` mixed with others).
    BadContact,
    /// Max-Forwards is not a number from 0 to 255.
    BadMaxForwards,
    /// Expires is not a number from 0 to 2^32-1.
    BadExpires,
    /// Call-ID is empty or contains whitespace.
    BadCallId,
    /// A Date header is not an RFC 1123 date in GMT (RFC 3261 §20.17).
    BadDate,
    /// A parameter list (`;name=value`) is malformed: an empty parameter, a bad name or value.
    BadParams,
}

impl Error {
    /// The response a server sends for a request that fails to parse this way: status code
    /// and reason phrase. The caller decides whether an answer can be formed at all (it
    /// needs Via, From, To, Call-ID and CSeq) and otherwise drops the message.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Error::TooLarge => (413, "Request Entity Too Large"),
            Error::UnsupportedVersion => (505, "Version Not Supported"),
            Error::UnsupportedScheme => (416, "Unsupported URI Scheme"),
            Error::UnknownMethodMismatch => (501, "Not Implemented"),
            _ => (400, "Bad Request"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Incomplete => f.write_str("incomplete SIP message"),
            Error::Truncated => f.write_str("body shorter than Content-Length"),
            Error::TooLarge => f.write_str("SIP message too large"),
            Error::BadStartLine => f.write_str("malformed start line"),
            Error::UnsupportedVersion => f.write_str("unsupported SIP version"),
            Error::NotUtf8 => f.write_str("header section is not UTF-8"),
            Error::BadHeader => f.write_str("malformed header line"),
            Error::TooManyHeaders => f.write_str("too many header lines"),
            Error::MissingHeader(h) => write!(f, "missing {h} header"),
            Error::DuplicateHeader(h) => write!(f, "duplicate {h} header"),
            Error::BadContentLength => f.write_str("malformed Content-Length"),
            Error::BadUri => f.write_str("malformed URI"),
            Error::UnsupportedScheme => f.write_str("unsupported URI scheme"),
            Error::BadVia => f.write_str("malformed Via"),
            Error::BadCSeq => f.write_str("malformed CSeq"),
            Error::MethodMismatch => f.write_str("CSeq method differs from the request method"),
            Error::UnknownMethodMismatch => {
                f.write_str("unknown request method and a different CSeq method")
            }
            Error::BadNameAddr => f.write_str("malformed name-addr"),
            Error::BadContact => f.write_str("malformed Contact"),
            Error::BadMaxForwards => f.write_str("malformed Max-Forwards"),
            Error::BadExpires => f.write_str("malformed Expires"),
            Error::BadCallId => f.write_str("malformed Call-ID"),
            Error::BadDate => f.write_str("malformed Date"),
            Error::BadParams => f.write_str("malformed parameters"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Error::BadVia.status(), (400, "Bad Request"));
        assert_eq!(Error::TooLarge.status().0, 413);
        assert_eq!(Error::UnsupportedVersion.status().0, 505);
        assert_eq!(Error::UnsupportedScheme.status().0, 416);
        assert_eq!(Error::UnknownMethodMismatch.status().0, 501);
        assert_eq!(Error::MissingHeader("To").to_string(), "missing To header");
    }
}
