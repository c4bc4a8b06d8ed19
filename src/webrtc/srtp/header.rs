//! The few RTP and RTCP header fields SRTP needs: where the RTP payload starts (RFC 3550
//! §5.1 fixed header, CSRC list and §5.3.1 header extension), the SSRC and the sequence
//! number. RFC 3711 §3.1 and §3.4 encrypt only what follows the header (RTP) or the first
//! eight octets (RTCP).

use super::Error;

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub(super) const RTP_FIXED_HEADER: usize = 12;
/// Octets of an RTCP packet that stay in the clear: the common header and the sender SSRC.
pub(super) const RTCP_CLEAR_HEADER: usize = 8;

/// What SRTP reads from an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RtpHeader {
    /// Octets before the payload: fixed header, CSRCs and the header extension.
    pub(super) len: usize,
    pub(super) seq: u16,
    pub(super) ssrc: u32,
}

/// Reads the RTP header at the start of `packet`, which must hold all of it.
pub(super) fn rtp_header(packet: &[u8]) -> Result<RtpHeader, Error> {
    let [b0, _, s0, s1, _, _, _, _, i0, i1, i2, i3, ..] = *packet else {
        return Err(Error::TooShort);
    };
    if b0 >> 6 != 2 {
        return Err(Error::BadVersion);
    }
    let csrc_count = usize::from(b0 & 0x0f);
    let mut len = RTP_FIXED_HEADER + 4 * csrc_count;
    if b0 & 0x10 != 0 {
        // Extension: 16-bit profile-defined id, 16-bit length in 32-bit words, then the words.
        let Some(&[_, _, l0, l1]) = packet.get(len..len + 4) else {
            return Err(Error::TooShort);
        };
        len += 4 + 4 * usize::from(u16::from_be_bytes([l0, l1]));
    }
    if len > packet.len() {
        return Err(Error::TooShort);
    }
    Ok(RtpHeader {
        len,
        seq: u16::from_be_bytes([s0, s1]),
        ssrc: u32::from_be_bytes([i0, i1, i2, i3]),
    })
}

/// Reads the sender SSRC of the (first) RTCP packet at the start of `packet`.
pub(super) fn rtcp_ssrc(packet: &[u8]) -> Result<u32, Error> {
    let [b0, _, _, _, i0, i1, i2, i3, ..] = *packet else {
        return Err(Error::TooShort);
    };
    if b0 >> 6 != 2 {
        return Err(Error::BadVersion);
    }
    Ok(u32::from_be_bytes([i0, i1, i2, i3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_header_only() {
        let p = [
            0x80, 0x6f, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0xaa,
        ];
        let h = rtp_header(&p).expect("a valid header");
        assert_eq!(
            h,
            RtpHeader {
                len: 12,
                seq: 0x1234,
                ssrc: 0xdead_beef
            }
        );
    }

    #[test]
    fn csrcs_and_extension_are_part_of_the_header() {
        // CC = 2, X = 1, extension of 1 word.
        let mut p = vec![0x92, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9];
        p.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]); // CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // one-byte extension
        p.extend_from_slice(b"payload");
        let h = rtp_header(&p).expect("a valid header");
        assert_eq!(h.len, 12 + 8 + 8);
        assert_eq!(h.seq, 7);
        assert_eq!(h.ssrc, 9);
        // The header may end exactly at the end of the packet (empty payload).
        assert_eq!(rtp_header(&p[..28]).map(|h| h.len), Ok(28));
    }

    #[test]
    fn truncated_or_foreign_headers_are_errors() {
        assert_eq!(rtp_header(&[0x80; 11]), Err(Error::TooShort));
        assert_eq!(rtp_header(&[0x40; 12]), Err(Error::BadVersion));
        // CC = 15 needs 72 octets.
        assert_eq!(rtp_header(&[0x8f; 40]), Err(Error::TooShort));
        // X set but no room for the extension header.
        assert_eq!(rtp_header(&[0x90; 14]), Err(Error::TooShort));
        // Extension length runs past the end.
        let mut p = [0u8; 20];
        p[0] = 0x90;
        p[14] = 0xff;
        assert_eq!(rtp_header(&p), Err(Error::TooShort));
        assert_eq!(
            rtcp_ssrc(&[0x81, 0xc8, 0, 1, 0, 0, 0]),
            Err(Error::TooShort)
        );
        assert_eq!(rtcp_ssrc(&[0x81, 0xc8, 0, 1, 0, 0, 0, 5]), Ok(5));
        assert_eq!(
            rtcp_ssrc(&[0x01, 0xc8, 0, 1, 0, 0, 0, 5]),
            Err(Error::BadVersion)
        );
    }
}
