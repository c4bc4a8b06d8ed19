//! A zero-copy view of a STUN message (RFC 8489 §5 header, §14 attributes): just enough
//! for routing a datagram on a shared port before any ICE agent sees it. Authenticating
//! and answering checks is the ICE agent's job (`webrtc::leg`).

use core::ops::Range;

/// Header length.
pub const HEADER_LEN: usize = 20;
/// The magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// USERNAME attribute type (RFC 8489 §14.3).
pub const ATTR_USERNAME: u16 = 0x0006;
/// Binding request message type (RFC 8489 §18.2).
pub const BINDING_REQUEST: u16 = 0x0001;

const TYPE: Range<usize> = 0..2;
const LENGTH: Range<usize> = 2..4;
const COOKIE: Range<usize> = 4..8;
const TRANSACTION_ID: Range<usize> = 8..20;

/// Why bytes are not a STUN message.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header.
    Truncated,
    /// The two top bits of the type are not zero.
    NotStun,
    /// The magic cookie is wrong (a pre-RFC 5389 message, or not STUN).
    BadCookie,
    /// The length field is not a multiple of 4 or disagrees with the datagram.
    BadLength,
}

/// A checked STUN message over `buffer`.
#[derive(Debug, Clone, Copy)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], r: Range<usize>) -> u16 {
    match b.get(r) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wraps `buffer` after checking the header: the whole datagram must be one message.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] & 0xC0 != 0 {
            return Err(Error::NotStun);
        }
        if b.get(COOKIE) != Some(&MAGIC_COOKIE[..]) {
            return Err(Error::BadCookie);
        }
        let len = usize::from(be16(b, LENGTH));
        if len % 4 != 0 || HEADER_LEN + len != b.len() {
            return Err(Error::BadLength);
        }
        Ok(Message { buffer })
    }

    /// Message type (method and class, RFC 8489 §5).
    pub fn message_type(&self) -> u16 {
        be16(self.buffer.as_ref(), TYPE)
    }

    /// Whether this is a Binding request (an ICE connectivity check).
    pub fn is_binding_request(&self) -> bool {
        self.message_type() == BINDING_REQUEST
    }

    /// The 96-bit transaction id.
    pub fn transaction_id(&self) -> &[u8] {
        self.buffer.as_ref().get(TRANSACTION_ID).unwrap_or_default()
    }

    /// The attributes in order, as `(type, value)`; iteration stops at the first one whose
    /// length runs past the message.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            rest: self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default(),
        }
    }

    /// The USERNAME attribute as text, if present and UTF-8.
    pub fn username(&self) -> Option<&str> {
        self.attributes()
            .find(|(t, _)| *t == ATTR_USERNAME)
            .and_then(|(_, v)| core::str::from_utf8(v).ok())
    }
}

impl<'a> Message<&'a [u8]> {
    /// The USERNAME attribute, borrowing the buffer rather than the view.
    pub fn into_username(self) -> Option<&'a str> {
        Attributes {
            rest: self.buffer.get(HEADER_LEN..).unwrap_or_default(),
        }
        .find(|(t, _)| *t == ATTR_USERNAME)
        .and_then(|(_, v)| core::str::from_utf8(v).ok())
    }
}

/// Iterator over STUN attributes (type-length-value, values padded to 4 bytes).
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let typ = be16(self.rest, 0..2);
        let len = usize::from(be16(self.rest, 2..4));
        let value = self.rest.get(4..4 + len)?;
        let padded = 4 + len.div_ceil(4) * 4;
        self.rest = self.rest.get(padded..).unwrap_or_default();
        Some((typ, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1 sample request (USERNAME "evtj:h6vY", SOFTWARE, PRIORITY,
    /// ICE-CONTROLLED, MESSAGE-INTEGRITY, FINGERPRINT).
    pub(crate) const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    #[test]
    fn rfc5769_request() {
        let m = Message::new_checked(&RFC5769_REQUEST[..]).unwrap();
        assert!(m.is_binding_request());
        assert_eq!(m.username(), Some("evtj:h6vY"));
        assert_eq!(m.transaction_id()[0], 0xb7);
        let types: Vec<u16> = m.attributes().map(|(t, _)| t).collect();
        assert_eq!(types, [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
    }

    #[test]
    fn header_errors() {
        let r = &RFC5769_REQUEST;
        assert_eq!(Message::new_checked(&r[..19]).err(), Some(Error::Truncated));
        assert_eq!(
            Message::new_checked(&r[..104]).err(),
            Some(Error::BadLength)
        );
        let mut bad = *r;
        bad[0] = 0x40;
        assert_eq!(Message::new_checked(&bad[..]).err(), Some(Error::NotStun));
        let mut bad = *r;
        bad[4] = 0;
        assert_eq!(Message::new_checked(&bad[..]).err(), Some(Error::BadCookie));
    }

    #[test]
    fn attribute_running_past_the_end_stops_iteration() {
        let mut m = RFC5769_REQUEST;
        // SOFTWARE claims 0xfff0 bytes.
        m[22] = 0xff;
        m[23] = 0xf0;
        let msg = Message::new_checked(&m[..]).unwrap();
        assert_eq!(msg.attributes().count(), 0);
        assert_eq!(msg.username(), None);
    }
}
