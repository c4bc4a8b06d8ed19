//! A zero-copy view over an RTP packet (RFC 3550 §5.1, header extension §5.3.1, padding).
//!
//! [`Packet`] wraps any byte buffer; reading needs `T: AsRef<[u8]>`, the setters need
//! `T: AsMut<[u8]>` so that sequence numbers, timestamps and SSRCs are rewritten in place.
//! [`Packet::new_checked`] validates the version and every length once, after which no
//! accessor can fail or panic. [`Header`] writes the fixed 12-byte header of outgoing
//! packets.

use core::fmt;
use core::ops::Range;

/// Byte ranges and bit masks of the fixed RTP header (RFC 3550 §5.1).
mod field {
    use core::ops::Range;

    /// V(2) P(1) X(1) CC(4).
    pub const VPXCC: usize = 0;
    /// M(1) PT(7).
    pub const MPT: usize = 1;
    pub const SEQ: Range<usize> = 2..4;
    pub const TIMESTAMP: Range<usize> = 4..8;
    pub const SSRC: Range<usize> = 8..12;
    pub const CSRC_START: usize = 12;

    pub const VERSION_SHIFT: u8 = 6;
    pub const PADDING: u8 = 0x20;
    pub const EXTENSION: u8 = 0x10;
    pub const CSRC_COUNT: u8 = 0x0f;
    pub const MARKER: u8 = 0x80;
    pub const PAYLOAD_TYPE: u8 = 0x7f;
}

/// Length of the fixed header, without CSRCs or extension.
pub const HEADER_LEN: usize = field::CSRC_START;

/// The only RTP version there is (RFC 3550 §5.1).
pub const VERSION: u8 = 2;

/// Why bytes are not a valid RTP packet.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header, its CSRC list or its extension says.
    Truncated,
    /// The version field is not 2.
    BadVersion,
    /// The padding bit is set but the padding count is 0 or longer than the payload.
    BadPadding,
    /// An output buffer is too small for the packet being written.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "RTP packet truncated",
            Error::BadVersion => "RTP version is not 2",
            Error::BadPadding => "RTP padding length invalid",
            Error::BufferTooSmall => "buffer too small for the RTP packet",
        })
    }
}

impl std::error::Error for Error {}

/// An RTP header extension (RFC 3550 §5.3.1): the profile-defined 16 bits and the data
/// (for RFC 8285 one-byte headers the profile is `0xBEDE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A read/write view of an RTP packet held in `T`.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], r: Range<usize>) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[r]);
    u16::from_be_bytes(a)
}

fn be32(b: &[u8], r: Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_be_bytes(a)
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic until [`Packet::check_len`]
    /// has succeeded. Use for buffers this process wrote itself.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer received from the network: version, CSRC list, extension and padding
    /// are checked so that no accessor can fail afterwards.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds a whole RTP packet of version 2.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VPXCC] >> field::VERSION_SHIFT != VERSION {
            return Err(Error::BadVersion);
        }
        let mut end = HEADER_LEN + 4 * usize::from(b[field::VPXCC] & field::CSRC_COUNT);
        if b.len() < end {
            return Err(Error::Truncated);
        }
        if b[field::VPXCC] & field::EXTENSION != 0 {
            if b.len() < end + 4 {
                return Err(Error::Truncated);
            }
            end += 4 + 4 * usize::from(be16(b, end + 2..end + 4));
            if b.len() < end {
                return Err(Error::Truncated);
            }
        }
        if b[field::VPXCC] & field::PADDING != 0 {
            let pad = usize::from(*b.last().ok_or(Error::Truncated)?);
            if pad == 0 || end + pad > b.len() {
                return Err(Error::BadPadding);
            }
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] >> field::VERSION_SHIFT
    }

    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & field::PADDING != 0
    }

    pub fn extension_bit(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & field::EXTENSION != 0
    }

    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] & field::CSRC_COUNT
    }

    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[field::MPT] & field::MARKER != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref()[field::MPT] & field::PAYLOAD_TYPE
    }

    pub fn sequence_number(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQ)
    }

    pub fn timestamp(&self) -> u32 {
        be32(self.buffer.as_ref(), field::TIMESTAMP)
    }

    pub fn ssrc(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SSRC)
    }

    /// The `index`-th contributing source, if the CSRC list is that long.
    pub fn csrc(&self, index: usize) -> Option<u32> {
        if index >= usize::from(self.csrc_count()) {
            return None;
        }
        let at = field::CSRC_START + 4 * index;
        Some(be32(self.buffer.as_ref(), at..at + 4))
    }

    /// The contributing sources in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        (0..usize::from(self.csrc_count())).filter_map(|i| self.csrc(i))
    }

    fn extension_start(&self) -> usize {
        field::CSRC_START + 4 * usize::from(self.csrc_count())
    }

    /// The header extension, when the X bit is set.
    pub fn extension(&self) -> Option<Extension<'_>> {
        if !self.extension_bit() {
            return None;
        }
        let b = self.buffer.as_ref();
        let at = self.extension_start();
        let words = usize::from(be16(b, at + 2..at + 4));
        Some(Extension {
            profile: be16(b, at..at + 2),
            data: &b[at + 4..at + 4 + 4 * words],
        })
    }

    /// Length of the header: fixed part, CSRC list and extension.
    pub fn header_len(&self) -> usize {
        let at = self.extension_start();
        if self.extension_bit() {
            at + 4 + 4 * usize::from(be16(self.buffer.as_ref(), at + 2..at + 4))
        } else {
            at
        }
    }

    /// Number of padding bytes at the end (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        if self.padding() {
            self.buffer.as_ref().last().map_or(0, |&p| usize::from(p))
        } else {
            0
        }
    }

    /// Where the payload lies in the buffer: after the header, before any padding.
    pub fn payload_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        self.header_len()..len - self.padding_len()
    }

    /// The payload, without padding.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_marker(&mut self, marker: bool) {
        let b = &mut self.buffer.as_mut()[field::MPT];
        *b = if marker {
            *b | field::MARKER
        } else {
            *b & !field::MARKER
        };
    }

    pub fn set_payload_type(&mut self, pt: u8) {
        let b = &mut self.buffer.as_mut()[field::MPT];
        *b = (*b & field::MARKER) | (pt & field::PAYLOAD_TYPE);
    }

    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_timestamp(&mut self, ts: u32) {
        self.buffer.as_mut()[field::TIMESTAMP].copy_from_slice(&ts.to_be_bytes());
    }

    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buffer.as_mut()[field::SSRC].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// The payload, writable in place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

/// The fixed header of a packet srgate sends: version 2, no padding, no extension,
/// no CSRCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl Header {
    /// Reads the fixed header fields of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Header {
        Header {
            marker: packet.marker(),
            payload_type: packet.payload_type(),
            sequence_number: packet.sequence_number(),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
        }
    }

    /// Writes the 12-byte header at the start of `buf` and returns [`HEADER_LEN`]; the
    /// payload goes at `buf[HEADER_LEN..]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let b = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        b[field::VPXCC] = VERSION << field::VERSION_SHIFT;
        b[field::MPT] = 0;
        let mut p = Packet::new_unchecked(b);
        p.set_marker(self.marker);
        p.set_payload_type(self.payload_type);
        p.set_sequence_number(self.sequence_number);
        p.set_timestamp(self.timestamp);
        p.set_ssrc(self.ssrc);
        Ok(HEADER_LEN)
    }
}

/// A packet of `payload` with this header (no marker), for tests.
#[cfg(test)]
pub(crate) fn test_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; HEADER_LEN + payload.len()];
    Header {
        marker: false,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
    }
    .emit(&mut p)
    .unwrap();
    p[HEADER_LEN..].copy_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    // V=2, M=1, PT=111, seq 0x1234, ts 0xdeadbeef, ssrc 0x01020304, payload "opus".
    static PACKET_BYTES: [u8; 16] = [
        0x80, 0xef, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, b'o', b'p', b'u',
        b's',
    ];

    // V=2, P=1, X=1, CC=2, PT=0, seq 1, ts 160, ssrc 0xaabbccdd, CSRCs 1 and 2,
    // one-byte-header extension (0xBEDE, one word), payload 3 bytes, 2 bytes of padding.
    static FULL_BYTES: [u8; 37] = [
        0xb2, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0xaa, 0xbb, 0xcc, 0xdd, // fixed
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // CSRCs
        0xbe, 0xde, 0x00, 0x01, 0x10, 0xff, 0x00, 0x00, // extension
        0x11, 0x22, 0x33, // payload
        0x00, 0x00, 0x00, 0x00, 0x00, 0x06, // padding, count last
    ];

    #[test]
    fn test_parse() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).expect("valid packet");
        assert_eq!(p.version(), 2);
        assert!(!p.padding());
        assert!(!p.extension_bit());
        assert_eq!(p.csrc_count(), 0);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 111);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.payload_range(), 12..16);
        assert_eq!(p.payload(), b"opus");
    }

    #[test]
    fn test_emit() {
        let mut buf = [0u8; 16];
        let header = Header {
            marker: true,
            payload_type: 111,
            sequence_number: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        let n = header.emit(&mut buf).expect("room for the header");
        buf[n..].copy_from_slice(b"opus");
        assert_eq!(buf, PACKET_BYTES);
        let p = Packet::new_checked(&buf[..]).expect("valid packet");
        assert_eq!(Header::parse(&p), header);
    }

    #[test]
    fn test_parse_csrc_extension_padding() {
        let p = Packet::new_checked(&FULL_BYTES[..]).expect("valid packet");
        assert!(p.padding());
        assert!(p.extension_bit());
        assert_eq!(p.csrc_count(), 2);
        assert!(!p.marker());
        assert_eq!(p.payload_type(), 0);
        assert_eq!(p.sequence_number(), 1);
        assert_eq!(p.timestamp(), 160);
        assert_eq!(p.ssrc(), 0xaabb_ccdd);
        let csrcs: Vec<u32> = p.csrcs().collect();
        assert_eq!(csrcs, [1, 2]);
        assert_eq!(p.csrc(2), None);
        assert_eq!(
            p.extension(),
            Some(Extension {
                profile: 0xbede,
                data: &[0x10, 0xff, 0x00, 0x00]
            })
        );
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.padding_len(), 6);
        assert_eq!(p.payload(), &[0x11, 0x22, 0x33]);
    }

    #[test]
    fn test_set_in_place() {
        let mut buf = FULL_BYTES;
        let mut p = Packet::new_checked(&mut buf[..]).expect("valid packet");
        p.set_sequence_number(0xfffe);
        p.set_timestamp(0x8000_0001);
        p.set_ssrc(7);
        p.set_payload_type(8);
        p.set_marker(true);
        p.payload_mut()[0] = 0x99;
        assert_eq!(p.sequence_number(), 0xfffe);
        assert_eq!(p.timestamp(), 0x8000_0001);
        assert_eq!(p.ssrc(), 7);
        assert_eq!(p.payload_type(), 8);
        assert!(p.marker());
        p.set_payload_type(0xff);
        assert_eq!(p.payload_type(), 0x7f);
        assert!(p.marker(), "PT setter keeps the marker");
        p.set_marker(false);
        assert_eq!(p.payload_type(), 0x7f, "marker setter keeps the PT");
        // Nothing but the fields written changed.
        assert_eq!(&buf[12..28], &FULL_BYTES[12..28]);
        assert_eq!(buf[28], 0x99);
        assert_eq!(&buf[29..], &FULL_BYTES[29..]);
    }

    #[test]
    fn test_reject_malformed() {
        let short = &PACKET_BYTES[..11];
        assert_eq!(Packet::new_checked(short).err(), Some(Error::Truncated));

        let mut v1 = PACKET_BYTES;
        v1[0] = 0x40;
        assert_eq!(Packet::new_checked(&v1[..]).err(), Some(Error::BadVersion));

        // CC = 15 but no CSRCs follow.
        let mut cc = PACKET_BYTES;
        cc[0] = 0x8f;
        assert_eq!(Packet::new_checked(&cc[..]).err(), Some(Error::Truncated));

        // Extension bit with a length running past the end.
        let mut ext = [0u8; 20];
        ext[..12].copy_from_slice(&PACKET_BYTES[..12]);
        ext[0] = 0x90;
        ext[12..16].copy_from_slice(&[0xbe, 0xde, 0x00, 0x02]);
        assert_eq!(Packet::new_checked(&ext[..]).err(), Some(Error::Truncated));

        // Padding count 0, and padding longer than the payload.
        let mut pad = PACKET_BYTES;
        pad[0] = 0xa0;
        pad[15] = 0;
        assert_eq!(Packet::new_checked(&pad[..]).err(), Some(Error::BadPadding));
        pad[15] = 5;
        assert_eq!(Packet::new_checked(&pad[..]).err(), Some(Error::BadPadding));
        pad[15] = 4;
        let p = Packet::new_checked(&pad[..]).expect("padding = whole payload is valid");
        assert!(p.payload().is_empty());

        let mut tiny = [0u8; 4];
        assert_eq!(
            Header {
                marker: false,
                payload_type: 0,
                sequence_number: 0,
                timestamp: 0,
                ssrc: 0
            }
            .emit(&mut tiny),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn no_panic_on_any_short_prefix() {
        for len in 0..FULL_BYTES.len() {
            if let Ok(p) = Packet::new_checked(&FULL_BYTES[..len]) {
                let _ = (p.payload(), p.extension(), p.csrcs().count());
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 65) as usize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (x >> ((i % 8) * 8)) as u8 ^ i as u8;
            }
            // Version 2 half of the time so the deeper checks run.
            if x & 1 == 0 {
                buf[0] = (buf[0] & 0x3f) | 0x80;
            }
            if let Ok(p) = Packet::new_checked(&buf[..len]) {
                assert!(p.payload_range().end <= len);
                assert!(p.header_len() <= p.payload_range().start);
                let _ = (p.extension(), p.csrcs().count(), Header::parse(&p));
            }
        }
    }
}
