//! A door's video passed through to the browser (H.264 or VP8, never transcoded): the SIP
//! side's video RTP comes in on a port of its own, is re-labelled (the browser's payload
//! type, srgate's SSRC; sequence numbers and timestamps as they came, shifted to go on
//! without a jump back when the door's SSRC changes, so the browser's SRTP replay check
//! and decoder see one stream) and goes out in the call's SRTP toward the browser. The
//! browser's picture requests (RTCP PLI, FIR: it lost a frame, or just started) go back to
//! the door as a compound RTCP packet (an empty receiver report, then a PLI: RFC 4585
//! §6.3.1, RFC 3550 §6.1) on the video's RTCP port — to where the door's own RTCP comes
//! from (RFC 4961), else its `a=rtcp` — and as SIP INFO `picture_fast_update` (RFC 5168)
//! to a door that named no RTCP feedback in its offer. Requests are sent at most every
//! [`REQUEST_INTERVAL`].
//!
//! Packets wait in a ring of [`QUEUE`] slots between the datagram that brought them and
//! the next `poll_transmit` (a key frame is a burst); a full ring drops the oldest.
//! Nothing is allocated per packet: the ring is allocated once, with the first packet
//! queued (a REST call's leg, which depacketizes from the datagram, never has one).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::latch::RtpSource;
use crate::sdp::sip::{RemoteVideo, VideoDescription, VideoFormat};

/// Video packets held between a datagram and the next transmit.
pub const QUEUE: usize = 32;
/// The largest video packet taken (a jumbo one is refused).
pub const MAX_PACKET: usize = 1500;
/// At most one picture request to the door per this interval.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// The longest wait between requests of a stream that gets no key frame.
const MAX_ASK_EVERY: Duration = Duration::from_secs(8);

/// RTCP receiver report (RFC 3550 §6.4.2) and payload-specific feedback (RFC 4585 §6.1)
/// with its formats.
const RR: u8 = 201;
const PSFB: u8 = 206;
/// A frame's time at the 90 kHz video clock (30 fps): the gap put between two streams.
const FRAME_TICKS: u32 = 3_000;
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
    /// What is added to the door's sequence numbers and timestamps (a new door SSRC moves
    /// them on from the last sent), and the last ones sent.
    seq_shift: u16,
    ts_shift: u32,
    last: Option<(u16, u32)>,
    /// Where the door's own RTCP comes from (symmetric RTCP).
    rtcp_from: Option<SocketAddr>,
    /// False once a re-offer dropped the video: nothing is taken any more.
    active: bool,
    ring: Option<Box<[[u8; MAX_PACKET]; QUEUE]>>,
    lens: [u16; QUEUE],
    head: usize,
    queued: usize,
    /// A picture request waits (RTCP, and SIP INFO for a door without feedback).
    request: bool,
    info_due: bool,
    last_request: Option<Instant>,
    /// How long [`VideoLeg::ask_picture`] waits before asking again: doubled while no
    /// key frame comes (a phone that ignores requests is not flooded), reset by one.
    ask_every: Duration,
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
            seq_shift: 0,
            ts_shift: 0,
            last: None,
            rtcp_from: None,
            active: true,
            ring: None,
            lens: [0; QUEUE],
            head: 0,
            queued: 0,
            request: false,
            info_due: false,
            last_request: None,
            ask_every: REQUEST_INTERVAL,
            counters: VideoCounters::default(),
        }
    }

    /// A datagram on the video's RTP port (`rtcp == false`) or RTCP port from `from`.
    pub fn handle_sip(&mut self, from: SocketAddr, data: &[u8], rtcp: bool) {
        let Some(new_stream) = self.admit(from, data, rtcp) else {
            return;
        };
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        if new_stream && let Some((last_seq, last_ts)) = self.last {
            // a new stream from the door: it goes on from the last packet sent (a frame's
            // time later) under srgate's one SSRC
            self.seq_shift = last_seq.wrapping_add(1).wrapping_sub(seq);
            self.ts_shift = last_ts.wrapping_add(FRAME_TICKS).wrapping_sub(ts);
        }
        if self.queued == QUEUE {
            // the oldest goes: a newer packet is worth more to a decoder catching up
            self.head = (self.head + 1) % QUEUE;
            self.queued -= 1;
            self.counters.dropped += 1;
        }
        let out_seq = seq.wrapping_add(self.seq_shift);
        let out_ts = ts.wrapping_add(self.ts_shift);
        self.last = Some(match self.last {
            // the newest, in sequence order (a late packet does not move it back)
            Some((s, t)) if out_seq.wrapping_sub(s) >= 0x8000 => (s, t),
            _ => (out_seq, out_ts),
        });
        let slot = (self.head + self.queued) % QUEUE;
        let ring = self
            .ring
            .get_or_insert_with(|| Box::new([[0; MAX_PACKET]; QUEUE]));
        let out = &mut ring[slot][..data.len()];
        out.copy_from_slice(data);
        out[1] = (out[1] & 0x80) | (self.browser_pt & 0x7f);
        out[2..4].copy_from_slice(&out_seq.to_be_bytes());
        out[4..8].copy_from_slice(&out_ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.lens[slot] = data.len() as u16;
        self.queued += 1;
    }

    /// Whether a datagram on the video's RTP port is the door's video, taken: its source,
    /// version, payload type and size checked, the source latched, its SSRC kept for
    /// picture requests; `Some(true)` when that SSRC is a new one. RTCP (`rtcp`) is never
    /// taken: its source is where picture requests go. A REST call depacketizes what this
    /// takes straight from the datagram; the browser's path queues it ([`Self::handle_sip`]).
    pub fn admit(&mut self, from: SocketAddr, data: &[u8], rtcp: bool) -> Option<bool> {
        if rtcp {
            // the door's sender reports tell where its RTCP comes from
            if self.active && data.len() >= 8 && data[0] >> 6 == 2 && self.source.admits_rtcp(from)
            {
                self.rtcp_from = Some(from);
            }
            return None;
        }
        let pt = self.answer.format.payload_type;
        let ok = self.active
            && data.len() >= 12
            && data.len() <= MAX_PACKET
            && data[0] >> 6 == 2
            && data[1] & 0x7f == pt
            && self.source.admits(from);
        if !ok {
            self.counters.refused += 1;
            return None;
        }
        self.source.latch(from);
        self.counters.rtp_in += 1;
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let new_stream = self.door_ssrc.replace(ssrc) != Some(ssrc);
        Some(new_stream)
    }

    /// A re-offer: its video and the format srgate's re-answer keeps
    /// ([`crate::sdp::sip::keep_video_format`]), or `None` when the video was dropped.
    pub fn update(&mut self, remote: Option<(RemoteVideo, VideoFormat)>) {
        match remote {
            Some((remote, format)) => {
                self.source.set_expected(remote.addr);
                if remote.addr != self.remote.addr {
                    self.rtcp_from = None;
                }
                self.answer.format = format;
                self.remote = remote;
                self.active = true;
            }
            None => {
                self.active = false;
                self.request = false;
                self.info_due = false;
            }
        }
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
        let ring = self.ring.as_ref()?;
        buf.get_mut(..len)?.copy_from_slice(&ring[slot][..len]);
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
            if asks && self.active {
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

    /// Asks the door for a key frame (a REST call's stream starting, or after a loss), at
    /// most every [`REQUEST_INTERVAL`].
    pub fn ask_picture(&mut self, now: Instant) {
        if !self.active || self.last_request.is_some_and(|t| now < t + self.ask_every) {
            return;
        }
        self.last_request = Some(now);
        self.ask_every = (self.ask_every * 2).min(MAX_ASK_EVERY);
        self.request = true;
        self.info_due = !self.remote.feedback;
    }

    /// A key frame came: the next request may go soon again.
    pub fn key_frame_seen(&mut self) {
        self.ask_every = REQUEST_INTERVAL;
    }

    /// The picture request for the door, when one waits and the door's SSRC is known: a
    /// compound RTCP packet (an empty receiver report, then the PLI) written into `buf`;
    /// (length, where to send it).
    pub fn poll_request(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        if !self.request {
            return None;
        }
        let door = self.door_ssrc?;
        let out = buf.get_mut(..20)?;
        self.request = false;
        // RR without report blocks (RFC 3550 §6.4.2): the compound packet's first
        out[0] = 0x80;
        out[1] = RR;
        out[2..4].copy_from_slice(&1u16.to_be_bytes());
        out[4..8].copy_from_slice(&self.sip_ssrc.to_be_bytes());
        out[8] = 0x80 | FMT_PLI;
        out[9] = PSFB;
        out[10..12].copy_from_slice(&2u16.to_be_bytes());
        out[12..16].copy_from_slice(&self.sip_ssrc.to_be_bytes());
        out[16..20].copy_from_slice(&door.to_be_bytes());
        self.counters.requests_out += 1;
        // where the door's RTCP comes from; else, behind a NAT (RTP from another address
        // than its SDP's), the port after its RTP; else its a=rtcp (or RTP port + 1)
        let to = match (self.rtcp_from, self.source.latched()) {
            (Some(from), _) => from,
            (None, Some(rtp)) if rtp.ip() != self.remote.addr.ip() => {
                SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
            }
            _ => self.remote.rtcp,
        };
        Some((20, to))
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
            proto: "RTP/AVP".into(),
            addr: DOOR.parse().unwrap(),
            rtcp: "10.0.0.9:4003".parse().unwrap(),
            formats: vec![format.clone()],
            direction: Direction::SendOnly,
            feedback,
        };
        let answer = VideoDescription::answering(&remote, format, 40_010);
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
        // compound: an empty RR, then the PLI naming the door's stream
        assert_eq!(
            &buf[..n],
            &[
                0x80, 201, 0, 1, 0x51, 0x51, 0x51, 0x51, 0x81, 206, 0, 2, 0x51, 0x51, 0x51, 0x51,
                0x0d, 0, 0, 1
            ]
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
        // the door's own RTCP comes from elsewhere on its host: requests go there
        let sr = [0x80, 200, 0, 6, 0x0d, 0, 0, 1, 0, 0, 0, 0];
        v.handle_sip("10.0.0.9:5555".parse().unwrap(), &sr, true);
        v.handle_browser_rtcp(now + Duration::from_millis(600), &fir);
        let (_, to) = v.poll_request(&mut buf).unwrap();
        assert_eq!(to, "10.0.0.9:5555".parse().unwrap());
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

    #[test]
    fn a_new_door_stream_goes_on_from_the_last_packet_sent() {
        let mut v = leg(true);
        let door = DOOR.parse().unwrap();
        let mut buf = [0u8; 1500];
        let mut sent = |v: &mut VideoLeg, p: &[u8]| {
            v.handle_sip(door, p, false);
            v.poll_browser(&mut buf).unwrap();
            (
                u16::from_be_bytes([buf[2], buf[3]]),
                u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            )
        };
        let mut p = rtp(96, 40_000, true, 100);
        p[4..8].copy_from_slice(&900_000u32.to_be_bytes());
        assert_eq!(
            sent(&mut v, &p),
            (40_000, 900_000),
            "the first stream as it came"
        );
        // the door restarts its encoder: another SSRC, sequence and clock far behind
        let mut q = rtp(96, 7, false, 100);
        q[4..8].copy_from_slice(&1_000u32.to_be_bytes());
        q[8..12].copy_from_slice(&0x0d00_0002u32.to_be_bytes());
        assert_eq!(
            sent(&mut v, &q),
            (40_001, 903_000),
            "on from the last, a frame later"
        );
        q[2..4].copy_from_slice(&8u16.to_be_bytes());
        q[4..8].copy_from_slice(&4_000u32.to_be_bytes());
        assert_eq!(sent(&mut v, &q), (40_002, 906_000));
        // a re-offer without video: nothing is taken any more, nothing asked for
        v.update(None);
        v.handle_sip(door, &q, false);
        assert_eq!(v.poll_browser(&mut buf), None);
        v.handle_browser_rtcp(t0(), &pli(0xdead_beef));
        assert_eq!(v.poll_request(&mut buf), None);
    }
}
