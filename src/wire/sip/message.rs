//! A received SIP message as a zero-copy view (RFC 3261 §7): the start line and every
//! header kept as spans of the receive buffer in arrival order, the typed headers parsed
//! lazily on access. [`Message::parse`] checks what RFC 4475 §3.1.2 expects an element to
//! reject and tolerates what §3.1.1 expects it to accept.

use heapless::Vec;

use super::Error;
use super::cseq::CSeq;
use super::header::HeaderName;
use super::lex::{self, ListIter};
use super::method::Method;
use super::name_addr::{Contact, NameAddr};
use super::uri::{Scheme, Uri};
use super::via::Via;

/// The largest message accepted (the largest UDP payload); larger is [`Error::TooLarge`].
pub const MAX_MESSAGE: usize = 65535;

/// The most header lines a message may have; more is [`Error::TooManyHeaders`].
pub const MAX_HEADERS: usize = 64;

/// One header line as spans of the header section: `index` is the known name's
/// [`HeaderName::index`] (the name span is then unused) or `OTHER_INDEX`.
#[derive(Debug, Clone, Copy)]
struct Header {
    index: u8,
    name: (u16, u16),
    value: (u16, u16),
}

#[derive(Debug, Clone, Copy)]
enum StartLine<'a> {
    Request { method: Method<'a>, uri: &'a str },
    Response { code: u16, reason: &'a str },
}

/// A parsed SIP request or response borrowing its receive buffer.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    bytes: &'a [u8],
    start: StartLine<'a>,
    /// The header lines (after the start line), which the spans in `headers` index.
    head: &'a str,
    headers: Vec<Header, MAX_HEADERS>,
    body: &'a [u8],
    /// The headers every message has, parsed once by the validation in [`Message::parse`].
    core: Option<Core<'a>>,
}

#[derive(Debug, Clone, Copy)]
struct Core<'a> {
    top_via: Via<'a>,
    cseq: CSeq<'a>,
    call_id: &'a str,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
}

/// The headers that may occur only once, checked for duplicates by [`Message::parse`].
const SINGLE: [(u8, &str); 8] = [
    (HeaderName::To.index(), "To"),
    (HeaderName::From.index(), "From"),
    (HeaderName::CallId.index(), "Call-ID"),
    (HeaderName::CSeq.index(), "CSeq"),
    (HeaderName::ContentLength.index(), "Content-Length"),
    (HeaderName::MaxForwards.index(), "Max-Forwards"),
    (HeaderName::Expires.index(), "Expires"),
    (HeaderName::ContentType.index(), "Content-Type"),
];

const VIA: u8 = HeaderName::Via.index();

fn span_str(text: &str, (start, end): (u16, u16)) -> &str {
    text.get(usize::from(start)..usize::from(end)).unwrap_or("")
}

/// Where the header section of `buf` ends: `(head_end, body_start)`, where `head_end`
/// excludes the line break before the blank line. Lines may end in CRLF or a bare LF.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    memchr::memchr_iter(b'\n', buf).find_map(|nl| match buf.get(nl + 1) {
        Some(b'\n') => Some((strip_cr(buf, nl), nl + 2)),
        Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => Some((strip_cr(buf, nl), nl + 3)),
        _ => None,
    })
}

fn strip_cr(buf: &[u8], nl: usize) -> usize {
    if nl > 0 && buf.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    }
}

/// Number of CR and LF bytes at the start of `buf` (ignored before a start line, RFC 3261
/// §7.5; keep-alives on streams, RFC 5626 §3.5.1).
pub(crate) fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Parses a non-negative decimal Content-Length.
pub(crate) fn parse_content_length(v: &str) -> Result<usize, Error> {
    let v = lex::trim_lws(v);
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadContentLength);
    }
    v.parse().map_err(|_| Error::BadContentLength)
}

impl<'a> Message<'a> {
    /// Parses and checks one message from a datagram or a frame cut by
    /// [`super::frame_len`]. Leading CRLFs are skipped. Octets after the body that
    /// Content-Length announces are ignored (RFC 3261 §18.3); without Content-Length the
    /// body is the rest of the buffer.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, Error> {
        if buf.len() > MAX_MESSAGE {
            return Err(Error::TooLarge);
        }
        let buf = buf.get(leading_crlf(buf)..).unwrap_or_default();
        let (head_end, body_start) = match find_head_end(buf) {
            Some(ends) => ends,
            // a datagram whose last header line lacks only the blank line after it: read
            // as a message without body (liberal, RFC 4475 §3.1.2.15's file ends so)
            None if buf.ends_with(b"\n") => (strip_cr(buf, buf.len() - 1), buf.len()),
            None => return Err(Error::Incomplete),
        };
        let head = core::str::from_utf8(buf.get(..head_end).unwrap_or_default())
            .map_err(|_| Error::NotUtf8)?;
        let (start_line, header_text) = match memchr::memchr(b'\n', head.as_bytes()) {
            Some(nl) => (&head[..nl], &head[nl + 1..]),
            None => (head, ""),
        };
        let start = start_line_parse(start_line.strip_suffix('\r').unwrap_or(start_line))?;
        let headers = split_headers(header_text)?;

        let mut single: [Option<&'a str>; SINGLE.len()] = [None; SINGLE.len()];
        let mut has_via = false;
        for h in headers.iter() {
            if h.index == VIA {
                has_via = true;
                continue;
            }
            if let Some(k) = SINGLE.iter().position(|(i, _)| *i == h.index) {
                let value = span_str(header_text, h.value);
                match single[k] {
                    None => single[k] = Some(value),
                    Some(v) if v == value => {}
                    Some(_) => return Err(Error::DuplicateHeader(SINGLE[k].1)),
                }
            }
        }

        let rest = buf.get(body_start..).unwrap_or_default();
        let body = match single[4] {
            Some(v) => {
                let len = parse_content_length(v)?;
                rest.get(..len).ok_or(Error::Truncated)?
            }
            None => rest,
        };
        let mut msg = Message {
            bytes: buf.get(..body_start + body.len()).unwrap_or_default(),
            start,
            head: header_text,
            headers,
            body,
            core: None,
        };
        msg.core = Some(msg.validate(&single, has_via)?);
        Ok(msg)
    }

    /// The checks of RFC 3261 §8.1.1 / §8.2 and RFC 4475 §3.1.2 that need typed headers.
    fn validate(
        &self,
        single: &[Option<&'a str>; SINGLE.len()],
        has_via: bool,
    ) -> Result<Core<'a>, Error> {
        let [to, from, call_id, cseq, _, max_forwards, expires, _] = *single;
        let to = to.ok_or(Error::MissingHeader("To"))?;
        let from = from.ok_or(Error::MissingHeader("From"))?;
        let call_id = call_id.ok_or(Error::MissingHeader("Call-ID"))?;
        let cseq = cseq.ok_or(Error::MissingHeader("CSeq"))?;
        if !has_via {
            return Err(Error::MissingHeader("Via"));
        }
        if let StartLine::Request { uri, .. } = self.start {
            let uri = Uri::parse(uri)?;
            if uri.is_sip() && !uri.headers.is_empty() {
                // RFC 3261 §19.1.1: headers are not allowed in a Request-URI
                return Err(Error::BadUri);
            }
        }
        let cseq = CSeq::parse(cseq)?;
        if let StartLine::Request { method, .. } = self.start
            && method != cseq.method
        {
            return Err(match method {
                Method::Other(_) => Error::UnknownMethodMismatch,
                _ => Error::MethodMismatch,
            });
        }
        let to = NameAddr::parse(to)?;
        let from = NameAddr::parse(from)?;
        check_call_id(call_id)?;
        let mut vias = self.vias();
        let top_via = vias.next().unwrap_or(Err(Error::MissingHeader("Via")))?;
        for via in vias {
            via?;
        }
        for contact in self.contacts() {
            contact?;
        }
        if let Some(v) = max_forwards {
            parse_max_forwards(v)?;
        }
        if let Some(v) = expires {
            lex::parse_u32(lex::trim_lws(v)).ok_or(Error::BadExpires)?;
        }
        if let Some(date) = self.header(HeaderName::Date) {
            check_date(date)?;
        }
        Ok(Core {
            top_via,
            cseq,
            call_id,
            from,
            to,
        })
    }

    /// True for a request, false for a response.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI text of a request (checked by [`Message::parse`]; read it with
    /// [`Uri::parse`]).
    pub fn request_uri(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request, parsed, when its scheme is one srgate serves (`sip`,
    /// `sips`, `tel`); another scheme is [`Error::UnsupportedScheme`] (416, RFC 3261
    /// §8.2.2.1). `None` for a response.
    pub fn sip_request_uri(&self) -> Option<Result<Uri<'a>, Error>> {
        let uri = Uri::parse(self.request_uri()?);
        Some(uri.and_then(|u| match u.scheme {
            Scheme::Other(_) => Err(Error::UnsupportedScheme),
            _ => Ok(u),
        }))
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (may be empty).
    pub fn reason(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// Every header in arrival order: canonical name and raw value (trimmed; folded lines
    /// keep their CRLF and leading white space, which the typed parsers read as LWS).
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName<'a>, &'a str)> + '_ {
        let head = self.head;
        self.headers.iter().map(move |h| {
            let name = HeaderName::from_index(h.index)
                .unwrap_or_else(|| HeaderName::Other(span_str(head, h.name)));
            (name, span_str(head, h.value))
        })
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: HeaderName<'_>) -> Option<&'a str> {
        let head = self.head;
        let index = name.canonical_index();
        let other = name.as_str();
        self.headers
            .iter()
            .find(|h| {
                h.index == index
                    && (index != HeaderName::OTHER_INDEX
                        || span_str(head, h.name).eq_ignore_ascii_case(other))
            })
            .map(|h| span_str(head, h.value))
    }

    /// The values of every header named `name`, in arrival order (one per header line; a
    /// line may hold several comma-separated values).
    pub fn header_all<'s>(&'s self, name: HeaderName<'s>) -> impl Iterator<Item = &'a str> + 's {
        let head = self.head;
        let index = name.canonical_index();
        let other = name.as_str();
        self.headers
            .iter()
            .filter(move |h| {
                h.index == index
                    && (index != HeaderName::OTHER_INDEX
                        || span_str(head, h.name).eq_ignore_ascii_case(other))
            })
            .map(move |h| span_str(head, h.value))
    }

    /// Every Via value, top first, comma-separated values split.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, Error>> + '_ {
        self.header_all(HeaderName::Via)
            .flat_map(ListIter::new)
            .map(Via::parse)
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'a>, Error> {
        match &self.core {
            Some(core) => Ok(core.top_via),
            None => self
                .vias()
                .next()
                .unwrap_or(Err(Error::MissingHeader("Via"))),
        }
    }

    pub fn cseq(&self) -> Result<CSeq<'a>, Error> {
        match &self.core {
            Some(core) => Ok(core.cseq),
            None => CSeq::parse(
                self.header(HeaderName::CSeq)
                    .ok_or(Error::MissingHeader("CSeq"))?,
            ),
        }
    }

    pub fn call_id(&self) -> Result<&'a str, Error> {
        if let Some(core) = &self.core {
            return Ok(core.call_id);
        }
        let v = self
            .header(HeaderName::CallId)
            .ok_or(Error::MissingHeader("Call-ID"))?;
        check_call_id(v)?;
        Ok(v)
    }

    pub fn from(&self) -> Result<NameAddr<'a>, Error> {
        match &self.core {
            Some(core) => Ok(core.from),
            None => NameAddr::parse(
                self.header(HeaderName::From)
                    .ok_or(Error::MissingHeader("From"))?,
            ),
        }
    }

    pub fn to(&self) -> Result<NameAddr<'a>, Error> {
        match &self.core {
            Some(core) => Ok(core.to),
            None => NameAddr::parse(
                self.header(HeaderName::To)
                    .ok_or(Error::MissingHeader("To"))?,
            ),
        }
    }

    /// Every Contact value, comma-separated values split.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, Error>> + '_ {
        self.header_all(HeaderName::Contact)
            .flat_map(ListIter::new)
            .map(Contact::parse)
    }

    /// Every Route value (RFC 3261 §20.34), top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + '_ {
        self.header_all(HeaderName::Route)
            .flat_map(ListIter::new)
            .map(NameAddr::parse)
    }

    /// Every Record-Route value (RFC 3261 §20.30), top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + '_ {
        self.header_all(HeaderName::RecordRoute)
            .flat_map(ListIter::new)
            .map(NameAddr::parse)
    }

    /// Max-Forwards (0 to 255), `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u32>, Error> {
        self.header(HeaderName::MaxForwards)
            .map(parse_max_forwards)
            .transpose()
    }

    /// The Expires header in seconds, `None` when absent.
    pub fn expires(&self) -> Result<Option<u32>, Error> {
        self.header(HeaderName::Expires)
            .map(|v| lex::parse_u32(lex::trim_lws(v)).ok_or(Error::BadExpires))
            .transpose()
    }

    /// Content-Length, `None` when absent (checked by [`Message::parse`]).
    pub fn content_length(&self) -> Option<usize> {
        self.header(HeaderName::ContentLength)
            .and_then(|v| parse_content_length(v).ok())
    }

    /// The Content-Type value, `None` when absent.
    pub fn content_type(&self) -> Option<&'a str> {
        self.header(HeaderName::ContentType)
    }

    /// The body (exactly Content-Length bytes when the header is present).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The whole message, from the start line to the end of the body.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

fn parse_max_forwards(v: &str) -> Result<u32, Error> {
    match lex::parse_u32(lex::trim_lws(v)) {
        Some(n) if n <= 255 => Ok(n),
        _ => Err(Error::BadMaxForwards),
    }
}

fn check_call_id(v: &str) -> Result<(), Error> {
    if v.is_empty() || v.contains(lex::is_lws) {
        return Err(Error::BadCallId);
    }
    Ok(())
}

/// `rfc1123-date` (RFC 3261 §20.17): `Sat, 13 Nov 2010 23:29:00 GMT`.
fn check_date(v: &str) -> Result<(), Error> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = lex::trim_lws(v).as_bytes();
    let digits =
        |r: core::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let text = |r: core::ops::Range<usize>| b.get(r).and_then(|s| core::str::from_utf8(s).ok());
    let ok = b.len() == 29
        && text(0..3).is_some_and(|d| DAYS.contains(&d))
        && text(3..5) == Some(", ")
        && digits(5..7)
        && b.get(7) == Some(&b' ')
        && text(8..11).is_some_and(|m| MONTHS.contains(&m))
        && b.get(11) == Some(&b' ')
        && digits(12..16)
        && b.get(16) == Some(&b' ')
        && digits(17..19)
        && b.get(19) == Some(&b':')
        && digits(20..22)
        && b.get(22) == Some(&b':')
        && digits(23..25)
        && text(25..29) == Some(" GMT");
    if ok { Ok(()) } else { Err(Error::BadDate) }
}

/// Request-Line (`Method SP Request-URI SP SIP-Version`) or Status-Line
/// (`SIP-Version SP Status-Code SP Reason-Phrase`), single spaces only (RFC 3261 §7.1,
/// §7.2; RFC 4475 §3.1.2.9, §3.1.2.10).
fn start_line_parse(line: &str) -> Result<StartLine<'_>, Error> {
    if is_version_prefix(line) {
        let (version, rest) = line.split_once(' ').ok_or(Error::BadStartLine)?;
        check_version(version)?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::BadStartLine);
        }
        let code = lex::parse_u16(code).ok_or(Error::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(Error::BadStartLine);
        }
        if reason.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(Error::BadStartLine);
        }
        return Ok(StartLine::Response { code, reason });
    }
    let (rest, method) = lex::token(line).map_err(|_| Error::BadStartLine)?;
    let rest = rest.strip_prefix(' ').ok_or(Error::BadStartLine)?;
    let (uri, version) = rest.split_once(' ').ok_or(Error::BadStartLine)?;
    if uri.is_empty() || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadStartLine);
    }
    check_version(version)?;
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri,
    })
}

fn is_version_prefix(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
}

/// `SIP/2.0` (literal text is case-insensitive in the ABNF); any other well-formed
/// version is [`Error::UnsupportedVersion`].
fn check_version(v: &str) -> Result<(), Error> {
    if !is_version_prefix(v) {
        return Err(Error::BadStartLine);
    }
    let (major, minor) = v[4..].split_once('.').ok_or(Error::BadStartLine)?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !numeric(major) || !numeric(minor) {
        return Err(Error::BadStartLine);
    }
    if major.trim_start_matches('0') == "2" && minor.trim_start_matches('0').is_empty() {
        Ok(())
    } else {
        Err(Error::UnsupportedVersion)
    }
}

/// Splits the header lines, joining folded continuation lines into one value span.
fn split_headers(text: &str) -> Result<Vec<Header, MAX_HEADERS>, Error> {
    let mut headers: Vec<Header, MAX_HEADERS> = Vec::new();
    if text.is_empty() {
        return Ok(headers);
    }
    let b = text.as_bytes();
    let at = |i: usize| u16::try_from(i).map_err(|_| Error::TooLarge);
    let is_wsp = |c: u8| c == b' ' || c == b'\t';
    let mut current: Option<Header> = None;
    let mut pos = 0;
    // each round consumes one line
    while pos <= b.len() {
        let rest = b.get(pos..).unwrap_or_default();
        let line_end = memchr::memchr(b'\n', rest).map_or(b.len(), |o| pos + o);
        let mut end = line_end;
        if end > pos && b.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        // the content ends before trailing white space
        while end > pos && b.get(end - 1).is_some_and(|&c| is_wsp(c)) {
            end -= 1;
        }
        if rest.first().is_some_and(|&c| is_wsp(c)) {
            // a continuation line extends the current value
            let h = current.as_mut().ok_or(Error::BadHeader)?;
            let mut first = pos;
            while first < end && b.get(first).is_some_and(|&c| is_wsp(c)) {
                first += 1;
            }
            if first < end {
                if h.value.0 == h.value.1 {
                    h.value.0 = at(first)?;
                }
                h.value.1 = at(end)?;
            }
        } else {
            if let Some(h) = current.take() {
                headers.push(h).map_err(|_| Error::TooManyHeaders)?;
            }
            let line = text.get(pos..end).ok_or(Error::BadHeader)?;
            let (_, name) = lex::token(line).map_err(|_| Error::BadHeader)?;
            let mut colon = pos + name.len();
            while b.get(colon).is_some_and(|&c| is_wsp(c)) {
                colon += 1;
            }
            if colon >= end || b.get(colon) != Some(&b':') {
                return Err(Error::BadHeader);
            }
            let mut value_start = colon + 1;
            while value_start < end && b.get(value_start).is_some_and(|&c| is_wsp(c)) {
                value_start += 1;
            }
            current = Some(Header {
                index: HeaderName::new(name).index(),
                name: (at(pos)?, at(pos + name.len())?),
                value: (at(value_start)?, at(end)?),
            });
        }
        pos = line_end + 1;
    }
    if let Some(h) = current {
        headers.push(h).map_err(|_| Error::TooManyHeaders)?;
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::uri::Host;

    pub(crate) const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn parse_invite() {
        let m = Message::parse(INVITE).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:bob@biloxi.example.com"));
        assert_eq!(m.status(), None);
        let via = m.top_via().unwrap();
        assert_eq!(via.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(via.host, Host::Name("pc33.atlanta.example.com"));
        assert_eq!(
            m.cseq().unwrap(),
            CSeq {
                seq: 314159,
                method: Method::Invite
            }
        );
        assert_eq!(
            m.call_id().unwrap(),
            "a84b4c76e66710@pc33.atlanta.example.com"
        );
        assert_eq!(m.from().unwrap().tag, Some("1928301774"));
        assert_eq!(m.to().unwrap().display, Some("Bob"));
        assert_eq!(m.to().unwrap().tag, None);
        let c: std::vec::Vec<_> = m.contacts().collect();
        assert_eq!(c.len(), 1);
        assert_eq!(m.max_forwards(), Ok(Some(70)));
        assert_eq!(m.expires(), Ok(None));
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(m.as_bytes(), INVITE);
        assert_eq!(m.headers().count(), 9);
        assert_eq!(
            m.header(HeaderName::Other("content-type")),
            Some("application/sdp")
        );
    }

    #[test]
    fn parse_response_and_compact() {
        let raw = b"\r\nSIP/2.0 180 Ringing\r\n\
v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com:5061;branch=z9hG4bK2\r\n\
v: SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n\
t: <sip:bob@example.com>;tag=x\r\n\
f: <sip:alice@example.com>;tag=y\r\n\
i: cid\r\n\
CSeq: 1 INVITE\r\n\
l: 0\r\n\r\n";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some("Ringing"));
        let branches: std::vec::Vec<_> = m.vias().map(|v| v.unwrap().branch.unwrap()).collect();
        assert_eq!(branches, ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]);
        assert_eq!(m.header_all(HeaderName::Via).count(), 2);
        assert_eq!(m.body(), b"");
        assert_eq!(m.as_bytes(), &raw[2..]);
    }

    #[test]
    fn folding() {
        let raw = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
To :\r\n sip:a@example.com\r\nFrom: <sip:b@example.com>\r\n ;tag=1\r\nCall-ID: c\r\n\
CSeq: 2\r\n OPTIONS\r\nSubject:\r\nX-Long: one\r\n\ttwo  \r\n\r\n";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.header(HeaderName::To), Some("sip:a@example.com"));
        assert_eq!(m.header(HeaderName::Subject), Some(""));
        assert_eq!(m.header(HeaderName::Other("x-long")), Some("one\r\n\ttwo"));
        assert_eq!(m.from().unwrap().tag, Some("1"));
        assert_eq!(m.cseq().unwrap().seq, 2);
        assert_eq!(m.max_forwards(), Ok(None));
    }

    fn with_header(extra: &str) -> std::vec::Vec<u8> {
        let text = core::str::from_utf8(INVITE).unwrap();
        text.replacen("Max-Forwards: 70\r\n", extra, 1).into_bytes()
    }

    #[test]
    fn rejects() {
        let e = |b: &[u8]| Message::parse(b).unwrap_err();
        assert_eq!(e(b"INVITE sip:a@b SIP/2.0\r\nVia: x"), Error::Incomplete);
        assert_eq!(e(b"INVITE sip:a@b SIP/2.0\r\n"), Error::MissingHeader("To"));
        assert_eq!(
            e(&with_header("Max-Forwards: 256\r\n")),
            Error::BadMaxForwards
        );
        assert_eq!(
            e(&with_header("Expires: 10000000000000\r\n")),
            Error::BadExpires
        );
        assert_eq!(
            e(&with_header("To: <sip:x@y>\r\n")),
            Error::DuplicateHeader("To")
        );
        assert_eq!(
            e(&with_header("Date: Fri, 01 Jan 2010 16:00:00 EST\r\n")),
            Error::BadDate
        );
        assert!(Message::parse(&with_header("Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n")).is_ok());
        assert_eq!(e(&with_header("NoColon\r\n")), Error::BadHeader);
        let text = core::str::from_utf8(INVITE).unwrap();
        let swap = |a: &str, b: &str| text.replacen(a, b, 1).into_bytes();
        assert_eq!(
            e(&swap("SIP/2.0\r\n", "SIP/7.0\r\n")),
            Error::UnsupportedVersion
        );
        assert_eq!(
            e(&swap("SIP/2.0\r\nVia", "SIP/2.0\r\n Via")),
            Error::BadHeader
        );
        assert_eq!(
            e(&swap("Max-Forwards: 70", "Max-Forwards: 70\r\n folded")),
            Error::BadMaxForwards
        );
        assert_eq!(e(&swap("SIP/2.0\r\n", "SIP/2.0 \r\n")), Error::BadStartLine);
        assert_eq!(e(&swap("INVITE sip", "INVITE  sip")), Error::BadStartLine);
        assert_eq!(
            e(&swap("CSeq: 314159 INVITE", "CSeq: 314159 BYE")),
            Error::MethodMismatch
        );
        assert_eq!(
            e(&swap(
                "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n",
                ""
            )),
            Error::MissingHeader("Call-ID")
        );
        assert_eq!(
            e(&swap("Content-Length: 4", "Content-Length: 5")),
            Error::Truncated
        );
        assert_eq!(
            e(&swap("Content-Length: 4", "Content-Length: -4")),
            Error::BadContentLength
        );
        assert_eq!(e(&swap("Alice <sip:", "\"Alice <sip:")), Error::BadNameAddr);
        assert_eq!(e(&vec![b'a'; MAX_MESSAGE + 1]), Error::TooLarge);
        let mut many = text.replacen("\r\n\r\n", "\r\n", 1);
        many.truncate(many.find("Content-Length").unwrap());
        for _ in 0..MAX_HEADERS {
            many.push_str("X: y\r\n");
        }
        many.push_str("\r\n");
        assert_eq!(e(many.as_bytes()), Error::TooManyHeaders);
    }

    #[test]
    fn extra_octets_ignored() {
        let mut raw = INVITE.to_vec();
        raw.extend_from_slice(b"garbage");
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(m.as_bytes(), INVITE);
    }
}
