//! One UDP port carries STUN, DTLS and SRTP/SRTCP of many browser legs: this module tells
//! them apart and finds the leg a datagram belongs to.
//!
//! - RFC 7983 §7: the first byte decides the protocol: 0–3 STUN, 20–63 DTLS, 128–191
//!   RTP/RTCP (16–19 ZRTP and 64–79 TURN channels are not used by srgate).
//! - RFC 5761 §4: with rtcp-mux, the second byte tells RTCP (packet types 192–223) from RTP.
//! - Routing (RFC 8445 §7.3 with a shared port): a STUN Binding request names the leg by
//!   the first half of its USERNAME (`ourufrag:theirufrag`); every other datagram is routed
//!   by its 5-tuple, which the leg learned from a check that passed.

use crate::wire::stun;

/// A datagram classified by its first byte, borrowing the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// STUN (ICE checks and their responses).
    Stun(&'a [u8]),
    /// A DTLS record (handshake, alerts).
    Dtls(&'a [u8]),
    /// SRTP.
    Rtp(&'a [u8]),
    /// SRTCP (rtcp-mux).
    Rtcp(&'a [u8]),
    /// Anything else: dropped.
    Other(&'a [u8]),
}

/// Classifies a datagram (RFC 7983 §7, RFC 5761 §4). Never panics.
pub fn classify(buf: &[u8]) -> Datagram<'_> {
    match buf {
        [0..=3, ..] => Datagram::Stun(buf),
        [20..=63, ..] => Datagram::Dtls(buf),
        [128..=191, 192..=223, ..] => Datagram::Rtcp(buf),
        [128..=191, _, ..] => Datagram::Rtp(buf),
        _ => Datagram::Other(buf),
    }
}

/// How to find the leg for a datagram on a shared port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A Binding request: the leg whose local ICE ufrag is this.
    LocalUfrag(&'a str),
    /// Anything else: the leg that knows the source address.
    FiveTuple,
}

/// Picks the routing key of a datagram.
pub fn route(buf: &[u8]) -> Route<'_> {
    match classify(buf) {
        Datagram::Stun(b) => local_ufrag(b).map_or(Route::FiveTuple, Route::LocalUfrag),
        _ => Route::FiveTuple,
    }
}

/// The receiver's ufrag of a STUN Binding request: the part of USERNAME before the colon
/// (RFC 8445 §7.2.2). `None` for other STUN messages and for malformed ones.
pub fn local_ufrag(buf: &[u8]) -> Option<&str> {
    let msg = stun::Message::new_checked(buf).ok()?;
    if !msg.is_binding_request() {
        return None;
    }
    let username = msg.into_username()?;
    let (local, _remote) = username.split_once(':')?;
    (!local.is_empty()).then_some(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_ranges() {
        for b in 0u8..=255 {
            let buf = [b, 0x60, 0, 0];
            let got = classify(&buf);
            let want = match b {
                0..=3 => Datagram::Stun(&buf),
                20..=63 => Datagram::Dtls(&buf),
                128..=191 => Datagram::Rtp(&buf),
                _ => Datagram::Other(&buf),
            };
            assert_eq!(got, want, "first byte {b}");
        }
        assert_eq!(classify(&[]), Datagram::Other(&[]));
        assert_eq!(classify(&[0x80]), Datagram::Other(&[0x80]));
        // RTCP packet types 192..=223 in the second byte (SR 200, RR 201, ...).
        for pt in 192u8..=223 {
            assert!(matches!(classify(&[0x80, pt]), Datagram::Rtcp(_)));
        }
        assert!(matches!(classify(&[0x80, 0x6f]), Datagram::Rtp(_)));
        assert!(matches!(classify(&[0x80, 0xe0]), Datagram::Rtp(_)));
    }

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let padded = username.len().div_ceil(4) * 4;
        let len = u16::try_from(4 + padded).unwrap();
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&stun::MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&stun::ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&u16::try_from(username.len()).unwrap().to_be_bytes());
        m.extend_from_slice(username);
        m.resize(20 + 4 + padded, 0);
        m
    }

    #[test]
    fn routing_by_username() {
        let m = binding_request(b"srg1:brws");
        assert_eq!(route(&m), Route::LocalUfrag("srg1"));
        assert_eq!(local_ufrag(&m), Some("srg1"));
        // Not a request (a success response): by address.
        let mut resp = m.clone();
        resp[0] = 0x01;
        assert_eq!(route(&resp), Route::FiveTuple);
        // No colon, empty local part, not UTF-8.
        for u in [&b"srg1"[..], b":brws", b"\xff\xfe:x"] {
            assert_eq!(route(&binding_request(u)), Route::FiveTuple, "{u:?}");
        }
        // DTLS and RTP.
        assert_eq!(route(&[22, 254, 253]), Route::FiveTuple);
        assert_eq!(route(&[0x80, 111, 0, 1]), Route::FiveTuple);
    }

    #[test]
    fn never_panics() {
        // Every first byte, every length up to 64, a fixed pseudo-random filler.
        let mut x: u32 = 0x1234_5678;
        for first in 0u8..=255 {
            for len in 0..64usize {
                let mut buf = vec![first; len];
                for b in buf.iter_mut().skip(1) {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x.to_le_bytes()[0];
                }
                let _ = classify(&buf);
                let _ = route(&buf);
            }
        }
    }
}
