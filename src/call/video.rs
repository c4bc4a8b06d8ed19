//! A door's video passed through to the browser (H.264 or VP8, never transcoded): the SIP
//! side's video RTP comes in on a port of its own, is re-labelled (the browser's payload
//! type, srgate's SSRC; sequence numbers and timestamps as they came) and goes out in the
//! call's SRTP toward the browser. The browser's picture requests (RTCP PLI, FIR: it lost
//! a frame, or just started) go back to the door as an RTCP PLI (RFC 4585 §6.3.1) on the
//! video's RTCP port, and as SIP INFO `picture_fast_update` (RFC 5168) to a door that
//! named no RTCP feedback in its offer. Requests are sent at most every
//! [`REQUEST_INTERVAL`].
//!
//! Packets wait in a ring of [`QUEUE`] slots between the datagram that brought them and
//! the next `poll_transmit` (a key frame is a burst); a full ring drops the oldest.
//! Nothing is allocated per packet: the ring is allocated once with the leg.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::latch::RtpSource;
use crate::sdp::sip::{RemoteVideo, VideoDescription};

/// Video packets held between a datagram and the next transmit.
pub const QUEUE: usize = 32;
/// The largest video packet taken (a jumbo one is refused).
pub const MAX_PACKET: usize = 1500;
/// At most one picture request to the door per this interval.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// RTCP payload-specific feedback (RFC 4585 §6.1) and its formats.
const PSFB: u8 = 206;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;

/// Packet counters of the video leg.
#[derive(Debug, Default, Clone, Copy)]
pub struct VideoCounters {
    pub rtp_in: u64,
    pub rtp_out: u64,
    /// Refused: a stranger's, malformed, another payload type, or over-long.
    pub refused: u64,
    /// Dropped because the ring was full.
    pub dropped: u64,
    /// Picture requests from the browser, and those sent to the door.
    pub requests_in: u64,
    pub requests_out: u64,
}

pub struct VideoLeg {
    /// srgate's port for the door's video RTP (RTCP: the next one).
    pub port: u16,
    /// srgate's video section toward SIP (its answer).
    pub answer: VideoDescription,
    remote: RemoteVideo,
    source: RtpSource,
    /// The browser's payload type and srgate's SSRC toward it.
    browser_pt: u8,
    ssrc: u32,
    /// srgate's SSRC toward the door (the sender of its RTCP).
    sip_ssrc: u32,
    /// The door's video SSRC, once a packet came.
    door_ssrc: Option<u32>,
    ring: Box<[[u8; MAX_PACKET]; QUEUE]>,
    lens: [u16; QUEUE],
    head: usize,
    queued: usize,
    /// A picture request waits (RTCP, and SIP INFO for a door without feedback).
    request: bool,
    info_due: bool,
    last_request: Option<Instant>,
    pub counters: VideoCounters,
}

impl VideoLeg {
    /// A leg on `port` for the door's `remote` video, answered with `answer`, sent to the
    /// browser as payload type `browser_pt` from `ssrc`.
    pub fn new(
        port: u16,
        answer: VideoDescription,
        remote: RemoteVideo,
        browser_pt: u8,
        ssrc: u32,
        sip_ssrc: u32,
    ) -> VideoLeg {
        let mut source = RtpSource::default();
        source.set_expected(remote.addr);
        VideoLeg {
            port,
            answer,
            remote,
            source,
            browser_pt,
            ssrc,
            sip_ssrc,
            door_ssrc: None,
            ring: Box::new([[0; MAX_PACKET]; QUEUE]),
            lens: [0; QUEUE],
            head: 0,
            queued: 0,
            request: false,
            info_due: false,
            last_request: None,
            counters: VideoCounters::default(),
        }
    }

    /// A datagram on the video's RTP port (`rtcp == false`) or RTCP port from `from`.
    pub fn handle_sip(&mut self, from: SocketAddr, data: &[u8], rtcp: bool) {
        if rtcp {
            // the door's sender reports: nothing srgate needs
            return;
        }
        let pt = self.answer.format.payload_type;
        let ok = data.len() >= 12
            && data.len() <= MAX_PACKET
            && data[0] >> 6 == 2
            && data[1] & 0x7f == pt
            && self.source.admits(from);
        if !ok {
            self.counters.refused += 1;
            return;
        }
        self.source.latch(from);
        self.counters.rtp_in += 1;
        self.door_ssrc = Some(u32::from_be_bytes([data[8], data[9], data[10], data[11]]));
        if self.queued == QUEUE {
            // the oldest goes: a newer packet is worth more to a decoder catching up
            self.head = (self.head + 1) % QUEUE;
            self.queued -= 1;
            self.counters.dropped += 1;
        }
        let slot = (self.head + self.queued) % QUEUE;
        self.ring[slot][..data.len()].copy_from_slice(data);
        self.lens[slot] = data.len() as u16;
        self.queued += 1;
    }

    /// The next packet for the browser, re-labelled, written into `buf`; its length.
    pub fn poll_browser(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.queued == 0 {
            return None;
        }
        let slot = self.head;
        self.head = (self.head + 1) % QUEUE;
        self.queued -= 1;
        let len = usize::from(self.lens[slot]);
        let out = buf.get_mut(..len)?;
        out.copy_from_slice(&self.ring[slot][..len]);
        out[1] = (out[1] & 0x80) | (self.browser_pt & 0x7f);
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.counters.rtp_out += 1;
        Some(len)
    }

    /// An RTCP compound packet from the browser (decrypted): a PLI or FIR for srgate's
    /// video asks the door for a new picture.
    pub fn handle_browser_rtcp(&mut self, now: Instant, packet: &[u8]) {
        let mut rest = packet;
        // bounded: each round consumes one RTCP packet of at least 4 bytes
        while rest.len() >= 4 {
            let fmt = rest[0] & 0x1f;
            let pt = rest[1];
            let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
            let Some(this) = rest.get(..len) else {
                return;
            };
            rest = &rest[len..];
            if pt != PSFB || this.len() < 12 {
                continue;
            }
            let media = u32::from_be_bytes([this[8], this[9], this[10], this[11]]);
            let asks = match fmt {
                FMT_PLI => media == self.ssrc,
                // FIR: the media SSRC field is unused; the FCI entries name the streams
                FMT_FIR => this[12..]
                    .chunks_exact(8)
                    .any(|fci| u32::from_be_bytes([fci[0], fci[1], fci[2], fci[3]]) == self.ssrc),
                _ => false,
            };
            if asks {
                self.counters.requests_in += 1;
                let due = self
                    .last_request
                    .is_none_or(|t| now >= t + REQUEST_INTERVAL);
                if due {
                    self.last_request = Some(now);
                    self.request = true;
                    self.info_due = !self.remote.feedback;
                }
            }
        }
    }

    /// The PLI for the door, when a request waits and the door's SSRC is known: written
    /// into `buf`; (length, where to send it).
    pub fn poll_request(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        if !self.request {
            return None;
        }
        let door = self.door_ssrc?;
        let out = buf.get_mut(..12)?;
        self.request = false;
        out[0] = 0x80 | FMT_PLI;
        out[1] = PSFB;
        out[2..4].copy_from_slice(&2u16.to_be_bytes());
        out[4..8].copy_from_slice(&self.sip_ssrc.to_be_bytes());
        out[8..12].copy_from_slice(&door.to_be_bytes());
        self.counters.requests_out += 1;
        // to the address the video comes from, its RTCP port (symmetric), else the SDP's
        let to = match self.source.latched() {
            Some(rtp) if rtp != self.remote.addr => {
                SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
            }
            _ => self.remote.rtcp,
        };
        Some((12, to))
    }

    /// Whether a SIP INFO picture request is due (a door without RTCP feedback); taken.
    pub fn take_info_request(&mut self) -> bool {
        std::mem::take(&mut self.info_due)
    }

    /// Packets waiting for the browser.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::answer::Direction;
    use crate::sdp::sip::{VideoCodec, VideoFormat};

    const DOOR: &str = "10.0.0.9:4002";

    fn leg(feedback: bool) -> VideoLeg {
        let format = VideoFormat {
            payload_type: 96,
            codec: VideoCodec::H264,
            fmtp: "packetization-mode=1".into(),
        };
        let remote = RemoteVideo {
            index: 1,
            addr: DOOR.parse().unwrap(),
            rtcp: "10.0.0.9:4003".parse().unwrap(),
            formats: vec![format.clone()],
            direction: Direction::SendOnly,
            feedback,
        };
        let answer = VideoDescription {
            port: 40_010,
            format,
            direction: Direction::RecvOnly,
        };
        VideoLeg::new(40_010, answer, remote, 102, 0xdead_beef, 0x5151_5151)
    }

    fn rtp(pt: u8, seq: u16, marker: bool, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len.max(13)];
        p[0] = 0x80;
        p[1] = pt | if marker { 0x80 } else { 0 };
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&0x0d00_0001u32.to_be_bytes());
        p[12] = 0x65; // an IDR slice's NAL header
        p.truncate(len);
        p
    }

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn door_video_is_relabelled_for_the_browser_in_order() {
        let mut v = leg(true);
        let door = DOOR.parse().unwrap();
        v.handle_sip(door, &rtp(96, 7, false, 1_200), false);
        v.handle_sip(door, &rtp(96, 8, true, 300), false);
        let mut buf = [0u8; 1500];
        let n = v.poll_browser(&mut buf).unwrap();
        assert_eq!(n, 1_200);
        assert_eq!(buf[1], 102, "the browser's payload type, no marker");
        assert_eq!(&buf[2..4], &7u16.to_be_bytes(), "sequence kept");
        assert_eq!(&buf[8..12], &0xdead_beefu32.to_be_bytes());
        assert_eq!(buf[12], 0x65, "payload untouched");
        let n = v.poll_browser(&mut buf).unwrap();
        assert_eq!((n, buf[1]), (300, 0x80 | 102), "the marker kept");
        assert_eq!(v.poll_browser(&mut buf), None);
        // a stranger, another payload type, a short or jumbo packet: refused
        v.handle_sip(
            "10.9.9.9:4002".parse().unwrap(),
            &rtp(96, 9, false, 100),
            false,
        );
        v.handle_sip(door, &rtp(97, 9, false, 100), false);
        v.handle_sip(door, &rtp(96, 9, false, 11), false);
        v.handle_sip(door, &rtp(96, 9, false, 1_501), false);
        assert_eq!(v.counters.refused, 4);
        assert_eq!(v.queued(), 0);
    }

    #[test]
    fn a_full_ring_drops_the_oldest() {
        let mut v = leg(true);
        let door = DOOR.parse().unwrap();
        for seq in 0..(QUEUE as u16 + 5) {
            v.handle_sip(door, &rtp(96, seq, false, 100), false);
        }
        assert_eq!(v.counters.dropped, 5);
        let mut buf = [0u8; 1500];
        v.poll_browser(&mut buf).unwrap();
        assert_eq!(&buf[2..4], &5u16.to_be_bytes());
    }

    fn pli(media: u32) -> Vec<u8> {
        let mut p = vec![0x81, PSFB, 0, 2];
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&media.to_be_bytes());
        p
    }

    #[test]
    fn a_browser_pli_or_fir_becomes_a_pli_to_the_door_at_most_twice_a_second() {
        let now = t0();
        let mut v = leg(true);
        let mut buf = [0u8; 64];
        // a receiver report, then a PLI for another stream: no request
        let mut rr = vec![0x80, 201, 0, 1];
        rr.extend_from_slice(&1u32.to_be_bytes());
        rr.extend_from_slice(&pli(0x1234));
        v.handle_browser_rtcp(now, &rr);
        assert_eq!(v.poll_request(&mut buf), None);
        // a PLI for srgate's video before the door's SSRC is known: waits for it
        v.handle_browser_rtcp(now, &pli(0xdead_beef));
        assert_eq!(v.poll_request(&mut buf), None);
        v.handle_sip(DOOR.parse().unwrap(), &rtp(96, 1, true, 100), false);
        let (n, to) = v.poll_request(&mut buf).unwrap();
        assert_eq!(to, "10.0.0.9:4003".parse().unwrap(), "the SDP's a=rtcp");
        assert_eq!(
            &buf[..n],
            &[0x81, 206, 0, 2, 0x51, 0x51, 0x51, 0x51, 0x0d, 0, 0, 1]
        );
        assert!(!v.take_info_request(), "the door named RTCP feedback");
        // another within 500 ms: counted, not sent
        v.handle_browser_rtcp(now + Duration::from_millis(100), &pli(0xdead_beef));
        assert_eq!(v.poll_request(&mut buf), None);
        // a FIR naming srgate's video later: sent
        let mut fir = vec![0x84, PSFB, 0, 4];
        fir.extend_from_slice(&1u32.to_be_bytes());
        fir.extend_from_slice(&0u32.to_be_bytes());
        fir.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        fir.extend_from_slice(&[3, 0, 0, 0]);
        v.handle_browser_rtcp(now + Duration::from_millis(600), &fir);
        assert!(v.poll_request(&mut buf).is_some());
        assert_eq!((v.counters.requests_in, v.counters.requests_out), (3, 2));
        // truncated or garbage RTCP: nothing, no panic
        v.handle_browser_rtcp(now, &[0x81, PSFB, 0, 9, 1, 2]);
        v.handle_browser_rtcp(now, &[0xff; 3]);
    }

    #[test]
    fn a_door_without_feedback_gets_sip_info_too() {
        let mut v = leg(false);
        v.handle_browser_rtcp(t0(), &pli(0xdead_beef));
        assert!(v.take_info_request());
        assert!(!v.take_info_request(), "taken once");
    }
}
