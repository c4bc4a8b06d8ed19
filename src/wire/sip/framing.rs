//! Message framing on stream transports (RFC 3261 §18.3): where the first message in a
//! TCP/TLS receive buffer ends, using Content-Length; CRLF keep-alives (RFC 5626 §3.5.1)
//! between messages are reported separately.

use super::Error;
use super::header::HeaderName;
use super::lex;
use super::message::{MAX_MESSAGE, find_head_end, leading_crlf, parse_content_length};

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `n` CR/LF bytes before any message: a keep-alive. Four or more (`CRLFCRLF`) is a
    /// ping the server answers with one CRLF; two is a pong. Consume `n` bytes.
    Keepalive(usize),
    /// A complete message of `n` bytes starts at the beginning of the buffer.
    Message(usize),
}

/// Looks at the start of a stream buffer: `Ok(None)` when more bytes are needed.
///
/// A message without Content-Length is taken to have no body (RFC 3261 §18.3 requires the
/// header on streams; treating it as 0 keeps a sloppy peer's connection usable).
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, Error> {
    let crlf = leading_crlf(buf);
    if crlf > 0 {
        return Ok(Some(Frame::Keepalive(crlf)));
    }
    let Some((head_end, body_start)) = find_head_end(buf) else {
        return if buf.len() > MAX_MESSAGE {
            Err(Error::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = buf.get(..head_end).unwrap_or_default();
    let body_len = content_length(head)?.unwrap_or(0);
    let total = body_start.checked_add(body_len).ok_or(Error::TooLarge)?;
    if total > MAX_MESSAGE {
        return Err(Error::TooLarge);
    }
    if buf.len() < total {
        Ok(None)
    } else {
        Ok(Some(Frame::Message(total)))
    }
}

/// How many bytes from the start of `buf` up to the end of the first complete message,
/// leading keep-alive CRLFs included (which [`super::Message::parse`] skips).
/// `Ok(None)` when more bytes are needed (also when `buf` holds only CRLFs).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    let skip = leading_crlf(buf);
    match frame(buf.get(skip..).unwrap_or_default())? {
        Some(Frame::Message(n)) => Ok(Some(skip + n)),
        Some(Frame::Keepalive(_)) | None => Ok(None),
    }
}

/// The Content-Length of a header section (raw bytes, not yet checked as UTF-8). Folded
/// values are followed; several differing values are an error.
fn content_length(head: &[u8]) -> Result<Option<usize>, Error> {
    let mut found: Option<usize> = None;
    let mut lines = head.split(|&b| b == b'\n').skip(1).peekable();
    // bounded by the number of lines
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = core::str::from_utf8(&line[..colon]).map_err(|_| Error::NotUtf8)?;
        let name = name.trim_end_matches([' ', '\t']);
        if HeaderName::new(name) != HeaderName::ContentLength {
            continue;
        }
        // the value may continue on folded lines
        let mut value: heapless::String<64> = heapless::String::new();
        let first = core::str::from_utf8(&line[colon + 1..]).map_err(|_| Error::NotUtf8)?;
        value
            .push_str(lex::trim_lws(first))
            .map_err(|_| Error::BadContentLength)?;
        while let Some(next) = lines.peek() {
            if !next.starts_with(b" ") && !next.starts_with(b"\t") {
                break;
            }
            let more = core::str::from_utf8(next).map_err(|_| Error::NotUtf8)?;
            value
                .push_str(lex::trim_lws(more))
                .map_err(|_| Error::BadContentLength)?;
            lines.next();
        }
        let n = parse_content_length(&value)?;
        match found {
            Some(m) if m != n => return Err(Error::DuplicateHeader("Content-Length")),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"BYE sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc";

    #[test]
    fn frames() {
        assert_eq!(frame(MSG), Ok(Some(Frame::Message(MSG.len()))));
        assert_eq!(frame(&MSG[..MSG.len() - 1]), Ok(None));
        assert_eq!(frame(&MSG[..10]), Ok(None));
        assert_eq!(frame(b"\r\n\r\nBYE"), Ok(Some(Frame::Keepalive(4))));
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame(&two), Ok(Some(Frame::Message(MSG.len()))));
        assert_eq!(frame_len(b"\r\n\r\n"), Ok(None));
        let mut ka = b"\r\n\r\n".to_vec();
        ka.extend_from_slice(MSG);
        assert_eq!(frame_len(&ka), Ok(Some(4 + MSG.len())));
    }

    #[test]
    fn lengths() {
        assert_eq!(
            frame(b"OPTIONS sip:a SIP/2.0\r\nTo: x\r\n\r\n"),
            Ok(Some(Frame::Message(32)))
        );
        assert_eq!(
            frame(b"A sip:a SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nxy"),
            Ok(Some(Frame::Message(42)))
        );
        assert_eq!(
            frame(b"A sip:a SIP/2.0\r\nl: -1\r\n\r\n"),
            Err(Error::BadContentLength)
        );
        assert_eq!(
            frame(b"A sip:a SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\n"),
            Err(Error::DuplicateHeader("Content-Length"))
        );
        assert_eq!(
            frame(b"A sip:a SIP/2.0\r\nl: 70000\r\n\r\n"),
            Err(Error::TooLarge)
        );
        assert_eq!(frame(&vec![b'a'; MAX_MESSAGE + 1]), Err(Error::TooLarge));
    }
}
