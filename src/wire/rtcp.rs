//! Zero-copy views over RTCP (RFC 3550 §6): iteration over a compound packet (§6.1),
//! the common header of each packet, and sender / receiver reports (§6.4.1, §6.4.2) with
//! their report blocks, read in place and written by [`Report::emit`]. [`is_rtcp`] tells
//! RTCP from RTP on a multiplexed port (RFC 5761 §4).

use core::fmt;
use core::ops::Range;
use core::time::Duration;

/// Byte ranges of the common header and of SR / RR bodies (RFC 3550 §6.4).
mod field {
    use core::ops::Range;

    /// V(2) P(1) RC(5).
    pub const VPRC: usize = 0;
    pub const PT: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    /// SSRC of the packet sender, in SR, RR and most other packet types.
    pub const SSRC: Range<usize> = 4..8;

    pub const NTP: Range<usize> = 8..16;
    pub const RTP_TS: Range<usize> = 16..20;
    pub const PACKET_COUNT: Range<usize> = 20..24;
    pub const OCTET_COUNT: Range<usize> = 24..28;

    pub const SR_BLOCKS: usize = 28;
    pub const RR_BLOCKS: usize = 8;

    pub const PADDING: u8 = 0x20;
    pub const COUNT: u8 = 0x1f;

    // Inside a 24-byte report block.
    pub const RB_SSRC: Range<usize> = 0..4;
    pub const RB_FRACTION: usize = 4;
    pub const RB_CUMULATIVE: Range<usize> = 5..8;
    pub const RB_HIGHEST_SEQ: Range<usize> = 8..12;
    pub const RB_JITTER: Range<usize> = 12..16;
    pub const RB_LSR: Range<usize> = 16..20;
    pub const RB_DLSR: Range<usize> = 20..24;
}

/// Length of the common header (V, P, count, PT, length).
pub const HEADER_LEN: usize = 4;
/// Length of one report block.
pub const REPORT_BLOCK_LEN: usize = 24;
/// Most report blocks one SR or RR can carry (the 5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;

/// RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1).
pub mod packet_type {
    pub const SR: u8 = 200;
    pub const RR: u8 = 201;
    pub const SDES: u8 = 202;
    pub const BYE: u8 = 203;
    pub const APP: u8 = 204;
    pub const RTPFB: u8 = 205;
    pub const PSFB: u8 = 206;
}

/// Why bytes are not valid RTCP.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than a header, or than the length field says.
    Truncated,
    /// The version field is not 2.
    BadVersion,
    /// The padding count is 0 or longer than the packet.
    BadPadding,
    /// A report packet's length cannot hold its report count, or the packet is not an SR/RR
    /// where one was required.
    BadReport,
    /// A compound packet does not start with an SR or RR, or has padding before its last
    /// packet (RFC 3550 §6.1).
    BadCompound,
    /// An output buffer is too small, or more than 31 report blocks were given.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "RTCP packet truncated",
            Error::BadVersion => "RTCP version is not 2",
            Error::BadPadding => "RTCP padding length invalid",
            Error::BadReport => "RTCP report length does not match its count",
            Error::BadCompound => "RTCP compound packet malformed",
            Error::BufferTooSmall => "buffer too small for the RTCP packet",
        })
    }
}

impl std::error::Error for Error {}

/// True when a packet on an RTP/RTCP-multiplexed port is RTCP: its second byte is in
/// 192..=223 (RFC 5761 §4), which no dynamic or static RTP payload type with the marker
/// bit can be in practice.
pub fn is_rtcp(packet: &[u8]) -> bool {
    matches!(packet.get(1), Some(192..=223))
}

/// A 64-bit NTP timestamp (RFC 3550 §4) from the wall-clock time since the Unix epoch,
/// given by the caller (the core reads no clock).
pub fn ntp_timestamp(since_unix_epoch: Duration) -> u64 {
    const UNIX_TO_NTP_SECONDS: u64 = 2_208_988_800;
    let secs = since_unix_epoch.as_secs().wrapping_add(UNIX_TO_NTP_SECONDS);
    let frac = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp: the LSR value of a report block and the unit
/// (1/65536 s) of DLSR (RFC 3550 §6.4.1).
pub fn ntp_middle(ntp: u64) -> u32 {
    // Truncation is the definition: bits 16..48.
    (ntp >> 16) as u32
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

/// One RTCP packet of a compound: the common header and a body of `length` words.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer that starts with an RTCP packet; bytes after the packet's length are
    /// allowed (they are the rest of the compound) and ignored by the accessors.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version, that the buffer holds `len()` bytes and the padding.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VPRC] >> 6 != 2 {
            return Err(Error::BadVersion);
        }
        let len = self.len();
        if b.len() < len {
            return Err(Error::Truncated);
        }
        if self.padding() {
            let pad = usize::from(b[len - 1]);
            if pad == 0 || HEADER_LEN + pad > len {
                return Err(Error::BadPadding);
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VPRC] >> 6
    }

    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::VPRC] & field::PADDING != 0
    }

    /// The 5-bit count: report blocks in SR/RR, sources in SDES/BYE, FMT in feedback.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::VPRC] & field::COUNT
    }

    pub fn packet_type(&self) -> u8 {
        self.buffer.as_ref()[field::PT]
    }

    /// The length field: the packet's length in 32-bit words minus one.
    pub fn length_field(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The packet's length in bytes, header and padding included.
    pub fn len(&self) -> usize {
        4 * (usize::from(self.length_field()) + 1)
    }

    /// Never true: every RTCP packet has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn padding_len(&self) -> usize {
        if self.padding() {
            usize::from(self.buffer.as_ref()[self.len() - 1])
        } else {
            0
        }
    }

    /// The sender SSRC field (bytes 4..8), present in SR, RR, SDES (first chunk), BYE,
    /// APP and feedback packets; `None` when the packet is only a header.
    pub fn ssrc(&self) -> Option<u32> {
        if self.len() - self.padding_len() < field::SSRC.end {
            return None;
        }
        Some(be32(self.buffer.as_ref(), field::SSRC))
    }

    /// The bytes of this packet, header included, padding excluded.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.len() - self.padding_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Rewrites the sender SSRC in place (an SSRC-rewriting relay needs it); does nothing
    /// when the packet has no SSRC field.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        if self.ssrc().is_some() {
            self.buffer.as_mut()[field::SSRC].copy_from_slice(&ssrc.to_be_bytes());
        }
    }
}

/// Iterates over the packets of a compound RTCP packet. After an error it yields that error
/// once and stops.
#[derive(Debug, Clone)]
pub struct Compound<'a> {
    rest: &'a [u8],
}

impl<'a> Compound<'a> {
    pub fn new(buffer: &'a [u8]) -> Compound<'a> {
        Compound { rest: buffer }
    }

    /// Validates a whole compound as RFC 3550 §6.1 and Appendix A.2 ask: every packet
    /// well formed, the lengths adding up to the datagram, the first packet an SR or RR,
    /// padding only on the last packet.
    pub fn check(buffer: &'a [u8]) -> Result<(), Error> {
        let mut first = true;
        let mut padded = false;
        let mut seen = 0usize;
        for packet in Compound::new(buffer) {
            let packet = packet?;
            if first && !matches!(packet.packet_type(), packet_type::SR | packet_type::RR) {
                return Err(Error::BadCompound);
            }
            if padded {
                return Err(Error::BadCompound);
            }
            padded = packet.padding();
            first = false;
            seen += 1;
        }
        if seen == 0 {
            return Err(Error::Truncated);
        }
        Ok(())
    }
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<Packet<&'a [u8]>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match Packet::new_checked(self.rest) {
            Ok(p) => {
                let (this, rest) = self.rest.split_at(p.len());
                self.rest = rest;
                Some(Ok(Packet::new_unchecked(this)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One report block of an SR or RR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the start: a signed 24-bit value (duplicates can make it
    /// negative); clamped to -0x80_0000..=0x7f_ffff when written.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | seq).
    pub highest_sequence: u32,
    /// Interarrival jitter in timestamp units (§6.4.1, A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from that source.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Reads a block from exactly [`REPORT_BLOCK_LEN`] bytes.
    pub fn parse(b: &[u8; REPORT_BLOCK_LEN]) -> ReportBlock {
        let raw = be32(b, 4..8) & 0x00ff_ffff;
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = ((raw << 8) as i32) >> 8;
        ReportBlock {
            ssrc: be32(b, field::RB_SSRC),
            fraction_lost: b[field::RB_FRACTION],
            cumulative_lost,
            highest_sequence: be32(b, field::RB_HIGHEST_SEQ),
            jitter: be32(b, field::RB_JITTER),
            last_sr: be32(b, field::RB_LSR),
            delay_since_last_sr: be32(b, field::RB_DLSR),
        }
    }

    /// Writes the block into exactly [`REPORT_BLOCK_LEN`] bytes.
    pub fn emit(&self, b: &mut [u8; REPORT_BLOCK_LEN]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff);
        b[field::RB_SSRC].copy_from_slice(&self.ssrc.to_be_bytes());
        b[field::RB_FRACTION] = self.fraction_lost;
        b[field::RB_CUMULATIVE].copy_from_slice(&lost.to_be_bytes()[1..]);
        b[field::RB_HIGHEST_SEQ].copy_from_slice(&self.highest_sequence.to_be_bytes());
        b[field::RB_JITTER].copy_from_slice(&self.jitter.to_be_bytes());
        b[field::RB_LSR].copy_from_slice(&self.last_sr.to_be_bytes());
        b[field::RB_DLSR].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// A view of a sender report (PT 200) or receiver report (PT 201).
#[derive(Debug, Clone)]
pub struct ReportPacket<T: AsRef<[u8]>> {
    packet: Packet<T>,
}

impl<T: AsRef<[u8]>> ReportPacket<T> {
    /// Checks that `packet` is an SR or RR whose length holds its sender info and its
    /// report blocks (blocks past the count, profile extensions, are allowed and ignored).
    pub fn new_checked(packet: Packet<T>) -> Result<ReportPacket<T>, Error> {
        let blocks_at = match packet.packet_type() {
            packet_type::SR => field::SR_BLOCKS,
            packet_type::RR => field::RR_BLOCKS,
            _ => return Err(Error::BadReport),
        };
        let need = blocks_at + REPORT_BLOCK_LEN * usize::from(packet.count());
        if packet.len() - packet.padding_len() < need {
            return Err(Error::BadReport);
        }
        Ok(ReportPacket { packet })
    }

    pub fn is_sender_report(&self) -> bool {
        self.packet.packet_type() == packet_type::SR
    }

    /// The SSRC of the reporting source.
    pub fn ssrc(&self) -> u32 {
        be32(self.packet.buffer.as_ref(), field::SSRC)
    }

    /// The sender information, for an SR.
    pub fn sender_info(&self) -> Option<SenderInfo> {
        if !self.is_sender_report() {
            return None;
        }
        let b = self.packet.buffer.as_ref();
        let mut ntp = [0u8; 8];
        ntp.copy_from_slice(&b[field::NTP]);
        Some(SenderInfo {
            ntp_timestamp: u64::from_be_bytes(ntp),
            rtp_timestamp: be32(b, field::RTP_TS),
            packet_count: be32(b, field::PACKET_COUNT),
            octet_count: be32(b, field::OCTET_COUNT),
        })
    }

    /// Number of report blocks.
    pub fn report_count(&self) -> usize {
        usize::from(self.packet.count())
    }

    /// The `index`-th report block.
    pub fn report_block(&self, index: usize) -> Option<ReportBlock> {
        if index >= self.report_count() {
            return None;
        }
        let base = if self.is_sender_report() {
            field::SR_BLOCKS
        } else {
            field::RR_BLOCKS
        };
        let at = base + index * REPORT_BLOCK_LEN;
        let bytes: &[u8; REPORT_BLOCK_LEN] = self
            .packet
            .buffer
            .as_ref()
            .get(at..at + REPORT_BLOCK_LEN)?
            .try_into()
            .ok()?;
        Some(ReportBlock::parse(bytes))
    }

    /// The report blocks in order.
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + '_ {
        (0..self.report_count()).filter_map(|i| self.report_block(i))
    }

    pub fn into_packet(self) -> Packet<T> {
        self.packet
    }
}

/// An SR (with sender information) or RR (without) to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    pub ssrc: u32,
    pub sender_info: Option<SenderInfo>,
    pub blocks: &'a [ReportBlock],
}

impl Report<'_> {
    /// Bytes [`Report::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let base = if self.sender_info.is_some() {
            field::SR_BLOCKS
        } else {
            field::RR_BLOCKS
        };
        base + REPORT_BLOCK_LEN * self.blocks.len()
    }

    /// Writes the SR or RR at the start of `buf` (further packets of a compound, such as
    /// SDES, go after it) and returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.blocks.len() > MAX_REPORT_BLOCKS {
            return Err(Error::BufferTooSmall);
        }
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        // Both conversions are bounded: at most 31 blocks, so len <= 28 + 31 * 24.
        let count = self.blocks.len() as u8;
        let words = (len / 4 - 1) as u16;
        b[field::VPRC] = 0x80 | count;
        b[field::PT] = if self.sender_info.is_some() {
            packet_type::SR
        } else {
            packet_type::RR
        };
        b[field::LENGTH].copy_from_slice(&words.to_be_bytes());
        b[field::SSRC].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = field::RR_BLOCKS;
        if let Some(si) = self.sender_info {
            b[field::NTP].copy_from_slice(&si.ntp_timestamp.to_be_bytes());
            b[field::RTP_TS].copy_from_slice(&si.rtp_timestamp.to_be_bytes());
            b[field::PACKET_COUNT].copy_from_slice(&si.packet_count.to_be_bytes());
            b[field::OCTET_COUNT].copy_from_slice(&si.octet_count.to_be_bytes());
            at = field::SR_BLOCKS;
        }
        for block in self.blocks {
            let dst: &mut [u8; REPORT_BLOCK_LEN] = (&mut b[at..at + REPORT_BLOCK_LEN])
                .try_into()
                .expect("buffer_len reserved REPORT_BLOCK_LEN bytes per block");
            block.emit(dst);
            at += REPORT_BLOCK_LEN;
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SR from SSRC 0x11223344 with one report block on 0xaabbccdd, followed by an RR
    // with no blocks from the same SSRC (a compound of two).
    static COMPOUND_BYTES: [u8; 60] = [
        // SR: V=2 RC=1 PT=200 length=12 words
        0x81, 0xc8, 0x00, 0x0c, 0x11, 0x22, 0x33, 0x44, //
        0xe9, 0x4a, 0x5b, 0x6c, 0x80, 0x00, 0x00, 0x00, // NTP
        0x00, 0x00, 0x03, 0xc0, // RTP ts 960
        0x00, 0x00, 0x00, 0x32, // 50 packets
        0x00, 0x00, 0x1f, 0x40, // 8000 octets
        // report block
        0xaa, 0xbb, 0xcc, 0xdd, 0x19, 0xff, 0xff, 0xfe, // fraction 25, cumulative -2
        0x00, 0x01, 0x00, 0x05, // highest seq: cycle 1, seq 5
        0x00, 0x00, 0x00, 0x78, // jitter 120
        0x4a, 0x5b, 0x6c, 0x80, // LSR
        0x00, 0x01, 0x00, 0x00, // DLSR 1 s
        // RR: V=2 RC=0 PT=201 length=1
        0x80, 0xc9, 0x00, 0x01, 0x11, 0x22, 0x33, 0x44,
    ];

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xaabb_ccdd,
            fraction_lost: 25,
            cumulative_lost: -2,
            highest_sequence: 0x0001_0005,
            jitter: 120,
            last_sr: 0x4a5b_6c80,
            delay_since_last_sr: 0x0001_0000,
        }
    }

    fn sender_info() -> SenderInfo {
        SenderInfo {
            ntp_timestamp: 0xe94a_5b6c_8000_0000,
            rtp_timestamp: 960,
            packet_count: 50,
            octet_count: 8000,
        }
    }

    #[test]
    fn test_parse() {
        Compound::check(&COMPOUND_BYTES).expect("valid compound");
        let packets: Vec<_> = Compound::new(&COMPOUND_BYTES)
            .map(|p| p.expect("valid packet"))
            .collect();
        assert_eq!(packets.len(), 2);

        let sr = ReportPacket::new_checked(packets[0].clone()).expect("an SR");
        assert!(sr.is_sender_report());
        assert_eq!(sr.ssrc(), 0x1122_3344);
        assert_eq!(sr.sender_info(), Some(sender_info()));
        assert_eq!(sr.report_count(), 1);
        assert_eq!(sr.report_block(0), Some(block()));
        assert_eq!(sr.report_block(1), None);
        assert_eq!(packets[0].len(), 52);
        assert_eq!(packets[0].ssrc(), Some(0x1122_3344));

        let rr = ReportPacket::new_checked(packets[1].clone()).expect("an RR");
        assert!(!rr.is_sender_report());
        assert_eq!(rr.sender_info(), None);
        assert_eq!(rr.report_blocks().count(), 0);
        assert_eq!(rr.ssrc(), 0x1122_3344);
    }

    #[test]
    fn test_emit() {
        let mut buf = [0u8; 60];
        let blocks = [block()];
        let sr = Report {
            ssrc: 0x1122_3344,
            sender_info: Some(sender_info()),
            blocks: &blocks,
        };
        let n = sr.emit(&mut buf).expect("room");
        assert_eq!(n, sr.buffer_len());
        let rr = Report {
            ssrc: 0x1122_3344,
            sender_info: None,
            blocks: &[],
        };
        let m = rr.emit(&mut buf[n..]).expect("room");
        assert_eq!(n + m, 60);
        assert_eq!(buf, COMPOUND_BYTES);
        assert_eq!(rr.emit(&mut [0u8; 7]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn cumulative_loss_is_24_bit_signed() {
        let mut raw = [0u8; REPORT_BLOCK_LEN];
        for lost in [0, 1, -1, 0x7f_ffff, -0x80_0000] {
            let b = ReportBlock {
                cumulative_lost: lost,
                ..block()
            };
            b.emit(&mut raw);
            assert_eq!(ReportBlock::parse(&raw).cumulative_lost, lost);
        }
        let b = ReportBlock {
            cumulative_lost: 0x100_0000,
            ..block()
        };
        b.emit(&mut raw);
        assert_eq!(
            ReportBlock::parse(&raw).cumulative_lost,
            0x7f_ffff,
            "clamped"
        );
    }

    #[test]
    fn set_ssrc_in_place() {
        let mut buf = COMPOUND_BYTES;
        let mut p = Packet::new_checked(&mut buf[..]).expect("valid");
        p.set_ssrc(0x0506_0708);
        assert_eq!(p.ssrc(), Some(0x0506_0708));
        assert_eq!(&buf[8..], &COMPOUND_BYTES[8..]);
    }

    #[test]
    fn reject_malformed() {
        // Length runs past the datagram.
        assert_eq!(
            Compound::check(&COMPOUND_BYTES[..56]),
            Err(Error::Truncated)
        );
        // Version 1.
        let mut v = COMPOUND_BYTES;
        v[0] = 0x41;
        assert_eq!(Compound::check(&v), Err(Error::BadVersion));
        // First packet not SR/RR.
        let mut first = COMPOUND_BYTES;
        first[1] = packet_type::SDES;
        assert_eq!(Compound::check(&first), Err(Error::BadCompound));
        // Padding on the first of two packets.
        let mut pad = COMPOUND_BYTES;
        pad[0] |= 0x20;
        pad[51] = 4;
        assert_eq!(Compound::check(&pad), Err(Error::BadCompound));
        // Padding count zero on the last packet.
        let mut pad0 = COMPOUND_BYTES;
        pad0[52] |= 0x20;
        pad0[59] = 0;
        assert_eq!(Compound::check(&pad0), Err(Error::BadPadding));
        // Count says two blocks, length holds one.
        let mut rc = COMPOUND_BYTES;
        rc[0] = 0x82;
        let p = Packet::new_checked(&rc[..]).expect("header fine");
        assert_eq!(ReportPacket::new_checked(p).err(), Some(Error::BadReport));
        // Empty datagram.
        assert_eq!(Compound::check(&[]), Err(Error::Truncated));
        // An error ends the iteration.
        let mut it = Compound::new(&COMPOUND_BYTES[..3]);
        assert_eq!(it.next().map(|r| r.err()), Some(Some(Error::Truncated)));
        assert!(it.next().is_none());
    }

    #[test]
    fn no_panic_on_any_prefix() {
        for len in 0..=COMPOUND_BYTES.len() {
            for p in Compound::new(&COMPOUND_BYTES[..len]).flatten() {
                let _ = p.ssrc();
                if let Ok(r) = ReportPacket::new_checked(p) {
                    let _ = (r.sender_info(), r.report_blocks().count());
                }
            }
        }
    }

    #[test]
    fn rtcp_mux_demux() {
        assert!(is_rtcp(&COMPOUND_BYTES));
        assert!(is_rtcp(&[0x80, 0xcf]));
        assert!(!is_rtcp(&[0x80, 0x6f])); // RTP PT 111
        assert!(!is_rtcp(&[0x80, 0xef])); // RTP PT 111 with marker
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn ntp_conversion() {
        // 1 January 1970 is NTP second 2208988800; half a second is 0x8000_0000.
        let ntp = ntp_timestamp(Duration::from_millis(1500));
        assert_eq!(ntp >> 32, 2_208_988_801);
        assert_eq!(ntp & 0xffff_ffff, 0x8000_0000);
        assert_eq!(ntp_middle(0x1122_3344_5566_7788), 0x3344_5566);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 96];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 97) as usize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (x >> ((i % 8) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
            }
            if x & 1 == 0 {
                buf[0] = (buf[0] & 0x3f) | 0x80;
                buf[1] = 200 + (buf[1] % 2);
                buf[2] = 0;
                buf[3] %= 24;
            }
            let _ = Compound::check(&buf[..len]);
            for p in Compound::new(&buf[..len]).flatten() {
                assert!(p.as_bytes().len() <= len);
                if let Ok(r) = ReportPacket::new_checked(p) {
                    let _ = (r.ssrc(), r.sender_info(), r.report_blocks().count());
                }
            }
        }
    }
}
