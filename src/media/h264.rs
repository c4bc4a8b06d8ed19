//! H.264 from RTP (RFC 6184) into the form FLV carries (AVC, ISO/IEC 14496-15): packets
//! are depacketized — single NAL units (types 1–23), STAP-A aggregates (24) and FU-A
//! fragments (28) — into access units (one picture: every NAL unit with one RTP
//! timestamp, ended by the marker bit or the next timestamp), each NAL unit written with a
//! 4-byte length in front. SPS and PPS (types 7, 8) are kept aside for the decoder
//! configuration record FLV sends first ([`Depacketizer::config_record`]); from the SDP's
//! `sprop-parameter-sets` too. A lost packet (a gap in the sequence numbers, a fragment
//! without its start) spoils the picture it belongs to: it is dropped and
//! [`Depacketizer::take_loss`] says a new key frame is needed.
//!
//! One buffer per stream holds the picture being assembled; it grows to the largest
//! picture seen (at most [`MAX_ACCESS_UNIT`]) and is reused, so steady state allocates
//! nothing.

/// The largest picture taken (a bigger one is dropped as lost): below what an RTMP
/// session takes in one message with room to spare (the publisher's buffer is 256 KiB).
pub const MAX_ACCESS_UNIT: usize = 192 * 1024;

/// NAL unit types (H.264 Table 7-1) and RTP packet types (RFC 6184 §5.2).
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// One whole picture.
#[derive(Debug, PartialEq, Eq)]
pub struct AccessUnit<'a> {
    /// Its RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// It holds an IDR slice: a decoder can start here.
    pub key: bool,
    /// Its NAL units, each after a 4-byte big-endian length (AVCC).
    pub data: &'a [u8],
}

#[derive(Debug, Default)]
pub struct Depacketizer {
    au: Vec<u8>,
    au_ts: Option<u32>,
    key: bool,
    /// The picture lost a packet: it is dropped.
    broken: bool,
    /// Where the length of the FU-A unit being assembled goes, while one is.
    fu_at: Option<usize>,
    last_seq: Option<u16>,
    sps: Vec<u8>,
    pps: Vec<u8>,
    /// The SPS or PPS changed since the last [`Depacketizer::take_config_change`].
    config_changed: bool,
    loss: bool,
    /// A finished picture waits to be taken.
    done: Option<(u32, bool)>,
}

impl Depacketizer {
    pub fn new() -> Depacketizer {
        Depacketizer::default()
    }

    /// SPS and PPS from the SDP's `sprop-parameter-sets` (base64, comma-separated).
    pub fn set_parameter_sets(&mut self, sprop: &str) {
        for set in sprop.split(',') {
            if let Some(nal) = base64(set.trim()) {
                self.keep_parameter_set(&nal);
            }
        }
    }

    /// One RTP packet (header included); a picture it completes comes back.
    pub fn push(&mut self, packet: &[u8]) -> Option<AccessUnit<'_>> {
        let Ok(p) = crate::wire::rtp::Packet::new_checked(packet) else {
            return None;
        };
        let (seq, ts, marker) = (p.sequence_number(), p.timestamp(), p.marker());
        let payload = p.payload();
        let mut gap = false;
        if let Some(last) = self.last_seq {
            let ahead = seq.wrapping_sub(last);
            if ahead == 0 || ahead >= 0x8000 {
                return None; // a duplicate or a late packet: its picture is gone
            }
            gap = ahead > 1;
            if gap {
                self.broken = true;
                self.loss = true;
            }
        }
        self.last_seq = Some(seq);
        self.done = None;
        if self.au_ts.is_some_and(|t| t != ts) {
            // the previous picture ended without its marker: lost, unless nothing of it
            // is missing and it held no slice (parameter sets sent on their own)
            if gap || !self.au.is_empty() || self.fu_at.is_some() {
                self.broken = true;
                self.loss = true;
            }
            self.finish();
            // the packets lost may have been this picture's first ones
            self.broken = gap;
        }
        if self.au_ts.is_none() {
            self.au_ts = Some(ts);
            self.au.clear();
            self.key = false;
            self.fu_at = None;
        }
        self.take_payload(payload);
        if marker {
            self.finish();
        }
        let (timestamp, key) = self.done?;
        Some(AccessUnit {
            timestamp,
            key,
            data: &self.au,
        })
    }

    fn take_payload(&mut self, payload: &[u8]) {
        let Some(&first) = payload.first() else {
            return;
        };
        let kind = first & 0x1f;
        if kind != FU_A && self.fu_at.take().is_some() {
            // a fragmented unit left unfinished
            self.broken = true;
        }
        match kind {
            1..=23 => self.add_nal(payload),
            STAP_A => {
                let mut rest = &payload[1..];
                // bounded: each round takes at least two bytes
                while rest.len() >= 2 {
                    let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let Some(nal) = rest.get(2..2 + size) else {
                        self.broken = true;
                        return;
                    };
                    self.add_nal(nal);
                    rest = &rest[2 + size..];
                }
            }
            FU_A => {
                let Some(&header) = payload.get(1) else {
                    self.broken = true;
                    return;
                };
                let (start, end, kind) = (header & 0x80 != 0, header & 0x40 != 0, header & 0x1f);
                let data = &payload[2..];
                if start {
                    if self.fu_at.take().is_some() {
                        // the previous fragmented unit never ended
                        self.broken = true;
                    }
                    if !self.room(5 + data.len()) {
                        return;
                    }
                    self.fu_at = Some(self.au.len());
                    self.au
                        .extend_from_slice(&[0, 0, 0, 0, (first & 0xe0) | kind]);
                    if kind == NAL_IDR {
                        self.key = true;
                    }
                } else if self.fu_at.is_none() {
                    // a fragment without its start: the unit cannot be rebuilt
                    self.broken = true;
                    return;
                }
                if !self.room(data.len()) {
                    self.fu_at = None;
                    return;
                }
                self.au.extend_from_slice(data);
                if end && let Some(at) = self.fu_at.take() {
                    // the unit's type is its start's (a later fragment may say another)
                    let unit = self.au.get(at + 4).map_or(kind, |h| h & 0x1f);
                    if matches!(unit, NAL_SPS | NAL_PPS) {
                        // a fragmented parameter set: to the configuration record too
                        let au = std::mem::take(&mut self.au);
                        if let Some(nal) = au.get(at + 4..) {
                            self.keep_parameter_set(nal);
                        }
                        self.au = au;
                        self.au.truncate(at);
                        return;
                    }
                    let len = self.au.len().saturating_sub(at + 4) as u32;
                    if let Some(slot) = self.au.get_mut(at..at + 4) {
                        slot.copy_from_slice(&len.to_be_bytes());
                    }
                }
            }
            // STAP-B, MTAP, FU-B (interleaved mode) and reserved types: not taken
            _ => self.broken = true,
        }
    }

    fn room(&mut self, more: usize) -> bool {
        if self.au.len() + more > MAX_ACCESS_UNIT {
            self.broken = true;
            self.loss = true;
            return false;
        }
        true
    }

    fn add_nal(&mut self, nal: &[u8]) {
        let Some(&header) = nal.first() else {
            return;
        };
        match header & 0x1f {
            NAL_SPS | NAL_PPS => {
                // to the configuration record, not the picture
                self.keep_parameter_set(nal);
                return;
            }
            NAL_IDR => self.key = true,
            _ => {}
        }
        if !self.room(4 + nal.len()) {
            return;
        }
        self.au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        self.au.extend_from_slice(nal);
    }

    fn keep_parameter_set(&mut self, nal: &[u8]) {
        let slot = match nal.first().map(|h| h & 0x1f) {
            Some(NAL_SPS) if nal.len() >= 4 => &mut self.sps,
            Some(NAL_PPS) => &mut self.pps,
            _ => return,
        };
        if slot.as_slice() != nal {
            slot.clear();
            slot.extend_from_slice(nal);
            self.config_changed = true;
        }
    }

    /// The current picture is over: kept when whole (and not empty), else dropped.
    fn finish(&mut self) {
        let Some(ts) = self.au_ts.take() else {
            return;
        };
        let whole = !self.broken && self.fu_at.is_none() && !self.au.is_empty();
        self.broken = false;
        self.fu_at = None;
        if whole {
            self.done = Some((ts, self.key));
        } else {
            self.au.clear();
        }
    }

    /// The last picture [`Depacketizer::push`] gave (until the next push).
    pub fn last_picture(&self) -> Option<&[u8]> {
        self.done.map(|_| self.au.as_slice())
    }

    /// Whether a picture was lost since the last call (a key frame is then needed).
    pub fn take_loss(&mut self) -> bool {
        std::mem::take(&mut self.loss)
    }

    /// Whether SPS or PPS changed since the last call (the configuration record is to be
    /// sent again).
    pub fn take_config_change(&mut self) -> bool {
        std::mem::take(&mut self.config_changed)
    }

    /// The AVC decoder configuration record (ISO/IEC 14496-15 §5.2.4.1) of the last SPS
    /// and PPS, written into `out`; its length, `None` before both came.
    pub fn config_record(&self, out: &mut Vec<u8>) -> Option<usize> {
        if self.sps.len() < 4 || self.pps.is_empty() {
            return None;
        }
        out.clear();
        out.extend_from_slice(&[1, self.sps[1], self.sps[2], self.sps[3], 0xff, 0xe1]);
        out.extend_from_slice(&(self.sps.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.sps);
        out.push(1);
        out.extend_from_slice(&(self.pps.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.pps);
        Some(out.len())
    }
}

/// Standard base64 (RFC 4648 §4, padding optional); `None` for anything else.
fn base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text).ok().filter(|b| !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn stap(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x78]; // NRI 3, type 24
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    #[test]
    fn single_stap_and_fragmented_units_become_avcc_pictures() {
        let mut d = Depacketizer::new();
        // SPS and PPS in a STAP-A, then an IDR slice in three FU-A fragments
        assert_eq!(d.push(&rtp(10, 900, false, &stap(&[SPS, PPS]))), None);
        assert!(d.take_config_change());
        assert_eq!(d.push(&rtp(11, 900, false, &[0x7c, 0x85, 1, 2, 3])), None);
        assert_eq!(d.push(&rtp(12, 900, false, &[0x7c, 0x05, 4, 5])), None);
        let au = d
            .push(&rtp(13, 900, true, &[0x7c, 0x45, 6]))
            .expect("a picture");
        assert_eq!(au.timestamp, 900);
        assert!(au.key);
        assert_eq!(au.data, &[0, 0, 0, 7, 0x65, 1, 2, 3, 4, 5, 6]);
        // a P slice as one single NAL unit
        let au = d.push(&rtp(14, 3900, true, &[0x41, 9, 9])).unwrap();
        assert_eq!((au.key, au.data), (false, &[0, 0, 0, 3, 0x41, 9, 9][..]));
        assert!(!d.take_loss());
        let mut record = Vec::new();
        let n = d.config_record(&mut record).unwrap();
        assert_eq!(
            &record[..n],
            &[
                1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 6, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 1, 0, 4,
                0x68, 0xce, 0x3c, 0x80
            ]
        );
        assert!(
            !d.take_config_change(),
            "the same sets again change nothing"
        );
    }

    #[test]
    fn a_lost_packet_drops_its_picture_and_asks_for_a_key_frame() {
        let mut d = Depacketizer::new();
        d.push(&rtp(1, 100, false, &[0x7c, 0x85, 1]));
        // packet 2 lost: the end fragment cannot complete the unit
        assert_eq!(d.push(&rtp(3, 100, true, &[0x7c, 0x45, 3])), None);
        assert!(d.take_loss());
        // a fragment without its start, in a new picture: dropped too
        assert_eq!(d.push(&rtp(4, 200, true, &[0x7c, 0x41, 3])), None);
        // the marker lost: the next timestamp ends the previous picture, dropped
        d.push(&rtp(5, 300, false, &[0x41, 1]));
        assert_eq!(
            d.push(&rtp(6, 400, true, &[0x41, 2])).map(|a| a.timestamp),
            Some(400)
        );
        assert!(d.take_loss());
        // duplicates and late packets are ignored
        assert_eq!(d.push(&rtp(6, 400, true, &[0x41, 2])), None);
        assert_eq!(d.push(&rtp(2, 100, true, &[0x41, 2])), None);
        // garbage does not panic
        for bad in [
            &[][..],
            &[0x78, 0, 9, 1][..],
            &[0x7c][..],
            &[0x79, 1, 2][..],
        ] {
            d.push(&rtp(7, 500, true, bad));
        }
    }

    #[test]
    fn parameter_sets_from_the_sdp() {
        let mut d = Depacketizer::new();
        // Z0LAHtoC = 67 42 c0 1e da 02, aM48gA== = 68 ce 3c 80
        d.set_parameter_sets("Z0LAHtoC,aM48gA==");
        let mut record = Vec::new();
        assert!(d.config_record(&mut record).is_some());
        assert_eq!(&record[8..14], SPS);
        assert_eq!(base64("!!"), None);
    }
}
