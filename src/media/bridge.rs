//! The media between the two legs of a bridged call, sans-IO: decrypted RTP from the
//! browser in, plain RTP toward SIP out, and back.
//!
//! - **Relay** when both legs use the same codec: the payload is copied as is and only the
//!   header is rewritten: the other leg's payload type, srgate's SSRC, and a sequence
//!   number and timestamp that stay continuous when the incoming SSRC changes (a phone's
//!   re-INVITE, a browser's renegotiation): the outgoing stream is one stream (RFC 3550
//!   §5.1). No jitter buffer: a relayed packet leaves in the same wake-up it came in.
//! - **Transcode** otherwise: one [`Transcoder`] per direction (jitter buffer, Opus PLC
//!   and FEC, G.711 at 8 kHz PCM).
//!
//! DTMF: digits from the app go out toward SIP as RFC 4733 events ([`DtmfSender`]) in
//! the SIP stream's own SSRC and sequence space; audio toward SIP is held back while an
//! event plays. Events from SIP, and those a browser sends itself (telephone-event in its
//! media: a SIP-over-WebSocket client's in-band DTMF), are reported once each
//! ([`DtmfReceiver`]; the call layer sends the browser's on toward SIP like the app's own
//! digits) and never reach a decoder. Every packet toward
//! SIP passes one final stage that owns the sequence numbers, so audio and events never
//! collide.
//!
//! RTCP: a sender report with one report block and an SDES CNAME on each leg about every
//! 5 s (RFC 3550 §6.2; a fixed interval is fine for one stream per leg); reports received
//! give the loss the other side sees.
//!
//! Everything is allocated in [`Bridge::new`]; the packet path allocates nothing.

use std::time::{Duration, Instant};

use super::codec::{Codec, CodecError};
use super::dtmf::{DtmfError, DtmfReceiver, DtmfSender};
use super::jitter::JitterConfig;
use super::relay::{RELAY_MAX, Relay, RelayArena, RelayError};
use super::stats::ReceiveStats;
use super::transcode::{
    MAX_RTP_OUT, PushError as TranscodePushError, Transcoder, TranscoderConfig,
};
use crate::wire::rtcp::{self, ReportBlock, SenderInfo};
use crate::wire::rtp;

/// How often each leg gets a sender report.
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// The largest relayed G.711 or G.722 packet: 8 000 bytes a second, so a 60 ms frame is
/// 480 bytes; 640 leaves room for CSRCs and header extensions.
const RELAY_MAX_NARROW: usize = 640;

/// How large a relayed packet of `codec` may be.
fn relay_max(codec: Codec) -> usize {
    match codec {
        Codec::Opus => RELAY_MAX,
        Codec::G711(_) | Codec::G722 => RELAY_MAX_NARROW,
    }
}

/// One leg's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegFormat {
    pub codec: Codec,
    pub payload_type: u8,
    /// telephone-event's payload type on this leg, if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// telephone-event's clock (8000, or 48000 for browsers that offer that).
    pub dtmf_clock: u32,
    /// The audio srgate puts in each packet toward this leg when it transcodes: 20 ms
    /// toward browsers, the SIP side's `ptime` for G.711 (10 to 60 ms). Relayed packets
    /// keep the sender's.
    pub packet_time: Duration,
    /// srgate's SSRC, first sequence number and timestamp toward this leg.
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeConfig {
    pub webrtc: LegFormat,
    pub sip: LegFormat,
    pub opus_complexity: u8,
    pub jitter: JitterConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeMode {
    Relay,
    Transcode,
}

/// Why an incoming packet was not taken (each reason is counted too).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    Malformed(rtp::Error),
    /// Neither the leg's codec nor its telephone-event.
    PayloadType(u8),
    /// Refused by the transcoder (jitter buffer: late, duplicate, too large).
    Transcoder(TranscodePushError),
    /// Larger than a relayed packet may be.
    TooLarge,
    /// No room left in the shard's relay arena in this wake-up.
    Full,
}

/// Counters of one leg (what srgate received from it and sent to it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    pub packets_in: u64,
    pub octets_in: u64,
    pub packets_out: u64,
    pub octets_out: u64,
    /// Packets lost on the way to srgate (RFC 3550 A.3, cumulative).
    pub lost: i64,
    /// Loss the other side reported in its last RTCP receiver block about our stream.
    pub remote_lost: i64,
    pub refused: u64,
    pub dtmf_in: u64,
    pub dtmf_out: u64,
    /// Interarrival jitter of what the leg sends srgate (RFC 3550 A.8), in microseconds.
    pub jitter_us: u64,
    /// Round-trip time to the leg from its last report block about srgate's stream
    /// (RFC 3550 §6.4.1: arrival − LSR − DLSR), once one came.
    pub rtt_us: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    pub webrtc: LegStats,
    pub sip: LegStats,
    /// Frames concealed (PLC) and rebuilt from FEC, both directions.
    pub plc_frames: u64,
    pub fec_frames: u64,
}

enum Direction {
    Relay(Box<Relay>),
    Transcode(Box<Transcoder>),
}

impl Direction {
    fn poll(&mut self, now: Instant, out: &mut [u8], arena: &RelayArena) -> Option<usize> {
        match self {
            Direction::Relay(r) => r.pop(out, arena),
            Direction::Transcode(t) => t.poll_rtp(now, out),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Direction::Relay(_) => None,
            Direction::Transcode(t) => t.poll_timeout(),
        }
    }
}

/// The final stage toward one leg: its sequence numbers, packet counts, timestamps seen.
#[derive(Debug)]
struct Outgoing {
    ssrc: u32,
    seq: u16,
    last_ts: u32,
    last_sent: Option<Instant>,
    clock_rate: u32,
    packets: u32,
    octets: u32,
    next_report: Option<Instant>,
    /// Received-side stats used for report blocks in relay mode.
    received: ReceiveStats,
    /// Middle bits of the last SR received and when.
    last_sr: Option<(u32, Instant)>,
    /// Middle bits of the last SR srgate sent on this leg and when: a report block that
    /// names it gives the round-trip time.
    sr_sent: Option<(u32, Instant)>,
}

impl Outgoing {
    fn new(format: &LegFormat) -> Outgoing {
        Outgoing {
            ssrc: format.ssrc,
            seq: format.initial_sequence,
            last_ts: format.initial_timestamp,
            last_sent: None,
            clock_rate: format.codec.clock_rate(),
            packets: 0,
            octets: 0,
            next_report: None,
            received: ReceiveStats::default(),
            last_sr: None,
            sr_sent: None,
        }
    }

    /// Stamps `out[..len]` with the next sequence number and counts it.
    fn stamp(&mut self, now: Instant, out: &mut [u8], len: usize) {
        let Some(packet) = out.get_mut(..len) else {
            return;
        };
        let mut p = rtp::Packet::new_unchecked(packet);
        p.set_sequence_number(self.seq);
        self.seq = self.seq.wrapping_add(1);
        self.last_ts = p.timestamp();
        self.last_sent = Some(now);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self
            .octets
            .wrapping_add(len.saturating_sub(rtp::HEADER_LEN) as u32);
        if self.next_report.is_none() {
            self.next_report = Some(now + RTCP_INTERVAL);
        }
    }

    /// A timestamp for a stream that takes over at `now`: past the last one sent by the
    /// time since, and a 20 ms frame more.
    fn timestamp_after(&self, now: Instant) -> u32 {
        let frame = self.clock_rate / 50;
        match self.last_sent {
            Some(_) => self.sender_info(now, 0).rtp_timestamp.wrapping_add(frame),
            None => self.last_ts,
        }
    }

    fn sender_info(&self, now: Instant, ntp: u64) -> SenderInfo {
        let since = self
            .last_sent
            .map_or(0, |t| now.saturating_duration_since(t).as_micros());
        let extra = (since * u128::from(self.clock_rate) / 1_000_000) as u32;
        SenderInfo {
            ntp_timestamp: ntp,
            rtp_timestamp: self.last_ts.wrapping_add(extra),
            packet_count: self.packets,
            octet_count: self.octets,
        }
    }
}

pub struct Bridge {
    config: BridgeConfig,
    mode: BridgeMode,
    /// Browser → SIP and SIP → browser.
    to_sip: Direction,
    to_webrtc: Direction,
    out_sip: Outgoing,
    out_webrtc: Outgoing,
    dtmf_out: Option<DtmfSender>,
    /// Timestamp of the event being sent toward SIP.
    dtmf_ts: u32,
    dtmf_in: DtmfReceiver,
    /// Events the browser sent in its media.
    dtmf_browser: DtmfReceiver,
    stats: BridgeStats,
}

impl Bridge {
    /// Sets up both directions (the only allocations of the call's media).
    pub fn new(config: BridgeConfig) -> Result<Bridge, CodecError> {
        let (to_sip, to_webrtc, mode) = Self::directions(&config)?;
        Ok(Bridge {
            out_sip: Outgoing::new(&config.sip),
            out_webrtc: Outgoing::new(&config.webrtc),
            dtmf_out: config.sip.dtmf_payload_type.map(|_| DtmfSender::new(8000)),
            dtmf_ts: 0,
            dtmf_in: DtmfReceiver::default(),
            dtmf_browser: DtmfReceiver::default(),
            config,
            mode,
            to_sip,
            to_webrtc,
            stats: BridgeStats::default(),
        })
    }

    /// The two directions between the legs' formats: relayed when both use the same
    /// codec, else a transcoder each way.
    fn directions(config: &BridgeConfig) -> Result<(Direction, Direction, BridgeMode), CodecError> {
        let relay = config.webrtc.codec == config.sip.codec;
        Ok(if relay {
            (
                Direction::Relay(Box::new(Relay::new(
                    config.sip.payload_type,
                    config.sip.ssrc,
                    config.sip.initial_sequence,
                    config.sip.initial_timestamp,
                    relay_max(config.sip.codec),
                ))),
                Direction::Relay(Box::new(Relay::new(
                    config.webrtc.payload_type,
                    config.webrtc.ssrc,
                    config.webrtc.initial_sequence,
                    config.webrtc.initial_timestamp,
                    relay_max(config.webrtc.codec),
                ))),
                BridgeMode::Relay,
            )
        } else {
            let transcoder = |from: &LegFormat, to: &LegFormat| {
                Transcoder::new(TranscoderConfig {
                    input: from.codec,
                    input_payload_type: from.payload_type,
                    output: to.codec,
                    output_payload_type: to.payload_type,
                    output_frame: to.packet_time,
                    pcm_rate: from.codec.pcm_rate_with(to.codec),
                    opus_complexity: config.opus_complexity,
                    ssrc: to.ssrc,
                    initial_sequence: to.initial_sequence,
                    initial_timestamp: to.initial_timestamp,
                    jitter: config.jitter,
                })
                .map(Box::new)
            };
            (
                Direction::Transcode(transcoder(&config.webrtc, &config.sip)?),
                Direction::Transcode(transcoder(&config.sip, &config.webrtc)?),
                BridgeMode::Transcode,
            )
        })
    }

    /// The SIP side moved to another codec (a re-offer without the one in use): both
    /// directions are set up again for it (relay ⇄ transcode as the codecs now match or
    /// not). Each leg's stream goes on: same SSRC, sequence numbers without a gap, and a
    /// timestamp past everything sent, by the time since (a new talkspurt).
    pub fn switch_sip_format(
        &mut self,
        now: Instant,
        codec: Codec,
        payload_type: u8,
        dtmf_payload_type: Option<u8>,
        packet_time: Duration,
    ) -> Result<(), CodecError> {
        let mut config = self.config;
        config.sip.codec = codec;
        config.sip.payload_type = payload_type;
        config.sip.dtmf_payload_type = dtmf_payload_type;
        config.sip.packet_time = packet_time;
        config.sip.initial_timestamp = self.out_sip.timestamp_after(now);
        config.webrtc.initial_timestamp = self.out_webrtc.timestamp_after(now);
        let (to_sip, to_webrtc, mode) = Self::directions(&config)?;
        // the concealment counts of the transcoders that go
        let before = self.stats();
        (self.stats.plc_frames, self.stats.fec_frames) = (before.plc_frames, before.fec_frames);
        self.to_sip = to_sip;
        self.to_webrtc = to_webrtc;
        self.mode = mode;
        self.out_sip.clock_rate = codec.clock_rate();
        if dtmf_payload_type.is_some() && self.dtmf_out.is_none() {
            self.dtmf_out = Some(DtmfSender::new(8000));
        }
        self.config = config;
        Ok(())
    }

    pub fn mode(&self) -> BridgeMode {
        self.mode
    }

    fn push(
        &mut self,
        now: Instant,
        data: &[u8],
        from_webrtc: bool,
        arena: &mut RelayArena,
    ) -> Result<(), PushError> {
        let (from, stats) = if from_webrtc {
            (self.config.webrtc, &mut self.stats.webrtc)
        } else {
            (self.config.sip, &mut self.stats.sip)
        };
        let packet = match rtp::Packet::new_checked(data) {
            Ok(p) => p,
            Err(e) => {
                stats.refused += 1;
                return Err(PushError::Malformed(e));
            }
        };
        stats.packets_in += 1;
        stats.octets_in += packet.payload().len() as u64;
        let pt = packet.payload_type();
        if Some(pt) == from.dtmf_payload_type {
            stats.dtmf_in += 1;
            let receiver = if from_webrtc {
                &mut self.dtmf_browser
            } else {
                &mut self.dtmf_in
            };
            receiver.push(packet.ssrc(), packet.timestamp(), packet.payload());
            return Ok(());
        }
        if pt != from.payload_type {
            stats.refused += 1;
            return Err(PushError::PayloadType(pt));
        }
        let (direction, outgoing) = if from_webrtc {
            (&mut self.to_sip, &mut self.out_webrtc)
        } else {
            (&mut self.to_webrtc, &mut self.out_sip)
        };
        // Receive statistics live with the leg they came from (its report blocks).
        outgoing
            .received
            .update(packet.ssrc(), packet.sequence_number());
        outgoing
            .received
            .arrived(packet.timestamp(), now, from.codec.clock_rate());
        let result = match direction {
            Direction::Relay(r) => r
                .push(&packet, from.codec.frame_ticks(), arena)
                .map_err(|e| match e {
                    RelayError::TooLarge => PushError::TooLarge,
                    RelayError::Full => PushError::Full,
                }),
            Direction::Transcode(t) => t.push_rtp(now, data).map_err(PushError::Transcoder),
        };
        // a packet the shard's arena had no room for is counted there, not as refused
        if result.is_err() && result != Err(PushError::Full) {
            stats.refused += 1;
        }
        result
    }

    /// A decrypted RTP packet from the browser; a relayed one waits in `arena` (the
    /// shard's, see [`RelayArena`]) until [`Bridge::poll_sip`].
    pub fn push_webrtc(
        &mut self,
        now: Instant,
        rtp: &[u8],
        arena: &mut RelayArena,
    ) -> Result<(), PushError> {
        self.push(now, rtp, true, arena)
    }

    /// An RTP packet from the SIP side; a relayed one waits in `arena`.
    pub fn push_sip(
        &mut self,
        now: Instant,
        rtp: &[u8],
        arena: &mut RelayArena,
    ) -> Result<(), PushError> {
        self.push(now, rtp, false, arena)
    }

    /// The next plain RTP packet toward SIP, written into `out`.
    pub fn poll_sip(&mut self, now: Instant, out: &mut [u8], arena: &RelayArena) -> Option<usize> {
        // DTMF first: while an event plays, the audio due meanwhile is dropped.
        if let (Some(dtmf), Some(pt)) = (self.dtmf_out.as_mut(), self.config.sip.dtmf_payload_type)
        {
            let starting = !dtmf.is_active();
            if let Some(event) = dtmf.poll(now) {
                if starting {
                    // The event starts one frame after the last audio packet.
                    self.dtmf_ts = self
                        .out_sip
                        .last_ts
                        .wrapping_add(self.config.sip.codec.frame_ticks());
                }
                let header = rtp::Header {
                    marker: event.marker,
                    payload_type: pt,
                    sequence_number: 0,
                    timestamp: self.dtmf_ts,
                    ssrc: self.config.sip.ssrc,
                };
                let len = rtp::HEADER_LEN + event.payload.len();
                let dst = out.get_mut(..len)?;
                header.emit(dst).ok()?;
                dst[rtp::HEADER_LEN..].copy_from_slice(&event.payload);
                self.out_sip.stamp(now, out, len);
                // The audio clock continues past the event.
                self.out_sip.last_ts = self.dtmf_ts;
                self.stats.sip.dtmf_out += 1;
                self.stats.sip.packets_out += 1;
                return Some(len);
            }
            if dtmf.is_active() {
                // Hold the audio back (bounded: what is due now).
                let mut scratch = [0u8; MAX_RTP_OUT];
                for _ in 0..8 {
                    if self.to_sip.poll(now, &mut scratch, arena).is_none() {
                        break;
                    }
                }
                return None;
            }
        }
        let len = self.to_sip.poll(now, out, arena)?;
        self.out_sip.stamp(now, out, len);
        self.stats.sip.packets_out += 1;
        self.stats.sip.octets_out += len.saturating_sub(rtp::HEADER_LEN) as u64;
        Some(len)
    }

    /// The next RTP packet toward the browser (the caller protects it).
    pub fn poll_webrtc(
        &mut self,
        now: Instant,
        out: &mut [u8],
        arena: &RelayArena,
    ) -> Option<usize> {
        let len = self.to_webrtc.poll(now, out, arena)?;
        self.out_webrtc.stamp(now, out, len);
        self.stats.webrtc.packets_out += 1;
        self.stats.webrtc.octets_out += len.saturating_sub(rtp::HEADER_LEN) as u64;
        Some(len)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        consider(self.to_sip.poll_timeout());
        consider(self.to_webrtc.poll_timeout());
        consider(self.dtmf_out.as_ref().and_then(DtmfSender::poll_timeout));
        consider(self.out_sip.next_report);
        consider(self.out_webrtc.next_report);
        next
    }

    /// Queues digits for the SIP side as RFC 4733 events.
    pub fn send_dtmf(&mut self, now: Instant, digits: &str) -> Result<(), DtmfError> {
        match self.dtmf_out.as_mut() {
            Some(d) => d.queue(now, digits),
            None => Err(DtmfError::NotNegotiated),
        }
    }

    /// A digit received from SIP as RFC 4733.
    pub fn poll_dtmf(&mut self) -> Option<char> {
        self.dtmf_in.poll()
    }

    /// A digit the browser sent as telephone-event in its media.
    pub fn poll_browser_dtmf(&mut self) -> Option<char> {
        self.dtmf_browser.poll()
    }

    pub fn stats(&self) -> BridgeStats {
        let mut s = self.stats;
        for d in [&self.to_sip, &self.to_webrtc] {
            if let Direction::Transcode(t) = d {
                s.plc_frames += t.stats().plc_frames;
                s.fec_frames += t.stats().fec_frames;
            }
        }
        s.webrtc.lost = self.out_webrtc.received.lost();
        s.sip.lost = self.out_sip.received.lost();
        let micros = |o: &Outgoing| {
            u64::from(o.received.jitter()) * 1_000_000 / u64::from(o.clock_rate.max(1))
        };
        s.webrtc.jitter_us = micros(&self.out_webrtc);
        s.sip.jitter_us = micros(&self.out_sip);
        s
    }

    fn report(out_leg: &mut Outgoing, now: Instant, ntp: u64, out: &mut [u8]) -> Option<usize> {
        let due = out_leg.next_report?;
        if due > now {
            return None;
        }
        out_leg.next_report = Some(now + RTCP_INTERVAL);
        let jitter = out_leg.received.jitter();
        let mut block = out_leg.received.report_block(jitter);
        if let (Some(b), Some((lsr, at))) = (block.as_mut(), out_leg.last_sr) {
            b.last_sr = lsr;
            let delay = now.saturating_duration_since(at);
            b.delay_since_last_sr =
                (delay.as_micros() * 65_536 / 1_000_000).min(u128::from(u32::MAX)) as u32;
        }
        let blocks: &[ReportBlock] = match &block {
            Some(b) => core::slice::from_ref(b),
            None => &[],
        };
        let report = rtcp::Report {
            ssrc: out_leg.ssrc,
            sender_info: Some(out_leg.sender_info(now, ntp)),
            blocks,
        };
        let n = report.emit(out).ok()?;
        out_leg.sr_sent = Some((rtcp::ntp_middle(ntp), now));
        // SDES with CNAME "srgate" (RFC 3550 §6.5): 4 header + 4 SSRC + 2 + 6 + 1 end,
        // padded to 20 bytes.
        let sdes = out.get_mut(n..n + 20)?;
        sdes.fill(0);
        sdes[0] = 0x81;
        sdes[1] = 202;
        sdes[2..4].copy_from_slice(&4u16.to_be_bytes());
        sdes[4..8].copy_from_slice(&out_leg.ssrc.to_be_bytes());
        sdes[8] = 1;
        sdes[9] = 6;
        sdes[10..16].copy_from_slice(b"srgate");
        Some(n + 20)
    }

    /// The SIP leg's next RTCP compound (SR + SDES), when due.
    pub fn poll_rtcp_sip(&mut self, now: Instant, ntp: u64, out: &mut [u8]) -> Option<usize> {
        Self::report(&mut self.out_sip, now, ntp, out)
    }

    /// The browser leg's next RTCP compound, when due (the caller protects it).
    pub fn poll_rtcp_webrtc(&mut self, now: Instant, ntp: u64, out: &mut [u8]) -> Option<usize> {
        Self::report(&mut self.out_webrtc, now, ntp, out)
    }

    fn handle_rtcp(out_leg: &mut Outgoing, stats: &mut LegStats, now: Instant, data: &[u8]) {
        if rtcp::Compound::check(data).is_err() {
            return;
        }
        for packet in rtcp::Compound::new(data).flatten() {
            let Ok(report) = rtcp::ReportPacket::new_checked(packet) else {
                continue;
            };
            if let Some(info) = report.sender_info() {
                out_leg.last_sr = Some((rtcp::ntp_middle(info.ntp_timestamp), now));
            }
            for block in report.report_blocks() {
                if block.ssrc == out_leg.ssrc {
                    stats.remote_lost = i64::from(block.cumulative_lost);
                    if let Some((lsr, at)) = out_leg.sr_sent
                        && block.last_sr == lsr
                        && lsr != 0
                    {
                        let held = u128::from(block.delay_since_last_sr) * 1_000_000 / 65_536;
                        let since = now.saturating_duration_since(at).as_micros();
                        // a peer that says it held the report longer than the round
                        // took is wrong: no figure rather than 0
                        if held <= since {
                            stats.rtt_us = Some((since - held) as u64);
                        }
                    }
                }
            }
        }
    }

    /// RTCP from the SIP side.
    pub fn handle_rtcp_sip(&mut self, now: Instant, data: &[u8]) {
        Self::handle_rtcp(&mut self.out_sip, &mut self.stats.sip, now, data);
    }

    /// Decrypted RTCP from the browser.
    pub fn handle_rtcp_webrtc(&mut self, now: Instant, data: &[u8]) {
        Self::handle_rtcp(&mut self.out_webrtc, &mut self.stats.webrtc, now, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Law;
    use crate::media::codec::g711;

    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn leg(codec: Codec, pt: u8, dtmf: Option<u8>, ssrc: u32) -> LegFormat {
        LegFormat {
            codec,
            payload_type: pt,
            dtmf_payload_type: dtmf,
            dtmf_clock: 8000,
            packet_time: crate::media::codec::FRAME,
            ssrc,
            initial_sequence: 1000,
            initial_timestamp: 50_000,
        }
    }

    fn config(webrtc: Codec, webrtc_pt: u8) -> BridgeConfig {
        BridgeConfig {
            webrtc: leg(webrtc, webrtc_pt, Some(126), 0xaaaa),
            sip: leg(Codec::G711(Law::Mu), 0, Some(101), 0xbbbb),
            opus_complexity: 5,
            jitter: JitterConfig::new(webrtc.clock_rate()),
        }
    }

    use crate::wire::rtp::test_packet as packet;

    #[test]
    fn events_are_told_apart_by_the_leg_they_came_from() {
        let now = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::G711(Law::Mu), 0)).unwrap();
        // '5' (event 5, end bit, volume 10, duration 800) from the browser, '9' from SIP
        let event = |code: u8| [code, 0x80 | 10, 0x03, 0x20];
        b.push_webrtc(now, &packet(126, 1, 100, 1, &event(5)), &mut arena)
            .unwrap();
        b.push_sip(now, &packet(101, 1, 100, 2, &event(9)), &mut arena)
            .unwrap();
        // the end packet again (RFC 4733 sends it three times): one digit each
        b.push_webrtc(now, &packet(126, 2, 100, 1, &event(5)), &mut arena)
            .unwrap();
        assert_eq!(b.poll_browser_dtmf(), Some('5'));
        assert_eq!(b.poll_browser_dtmf(), None);
        assert_eq!(b.poll_dtmf(), Some('9'));
        assert_eq!(b.poll_dtmf(), None);
    }

    #[test]
    fn relay_keeps_one_continuous_stream_over_an_ssrc_change() {
        let now = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::G711(Law::Mu), 0)).unwrap();
        assert_eq!(b.mode(), BridgeMode::Relay);
        let payload = [0x55u8; 160];
        let mut out = [0u8; 1500];
        let mut seen = Vec::new();
        for i in 0..3u16 {
            b.push_webrtc(
                now,
                &packet(0, 7000 + i, 90_000 + 160 * u32::from(i), 1, &payload),
                &mut arena,
            )
            .unwrap();
            let n = b.poll_sip(now, &mut out, &arena).unwrap();
            seen.push(rtp::Header::parse(
                &rtp::Packet::new_checked(&out[..n]).unwrap(),
            ));
            assert_eq!(&out[rtp::HEADER_LEN..n], &payload);
        }
        // the browser restarts its stream: new SSRC, numbers anywhere
        for i in 0..2u16 {
            b.push_webrtc(
                now,
                &packet(0, 100 + i, 5 + 160 * u32::from(i), 2, &payload),
                &mut arena,
            )
            .unwrap();
            let n = b.poll_sip(now, &mut out, &arena).unwrap();
            seen.push(rtp::Header::parse(
                &rtp::Packet::new_checked(&out[..n]).unwrap(),
            ));
        }
        let seqs: Vec<u16> = seen.iter().map(|h| h.sequence_number).collect();
        let tss: Vec<u32> = seen.iter().map(|h| h.timestamp).collect();
        assert_eq!(seqs, vec![1000, 1001, 1002, 1003, 1004]);
        for w in tss.windows(2) {
            assert_eq!(w[1].wrapping_sub(w[0]), 160, "{tss:?}");
        }
        assert!(seen.iter().all(|h| h.ssrc == 0xbbbb && h.payload_type == 0));
        assert!(seen[0].marker && seen[3].marker && !seen[4].marker);
    }

    #[test]
    fn a_sip_codec_switch_moves_relay_to_transcode_and_both_streams_go_on() {
        let t0 = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::G711(Law::Mu), 0)).unwrap();
        assert_eq!(b.mode(), BridgeMode::Relay);
        let mut out = [0u8; 1500];
        let payload = [0x55u8; 160];
        let mut to_browser = Vec::new();
        for i in 0..3u16 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            b.push_sip(
                now,
                &packet(0, 40 + i, 160 * u32::from(i), 9, &payload),
                &mut arena,
            )
            .unwrap();
            let n = b.poll_webrtc(now, &mut out, &arena).unwrap();
            to_browser.push(rtp::Header::parse(
                &rtp::Packet::new_checked(&out[..n]).unwrap(),
            ));
            arena.clear();
        }
        // the SIP side re-offers PCMA only: PCMA toward SIP, PCMU toward the browser
        let switched = t0 + Duration::from_millis(60);
        b.switch_sip_format(
            switched,
            Codec::G711(Law::A),
            8,
            Some(101),
            crate::media::codec::FRAME,
        )
        .unwrap();
        assert_eq!(b.mode(), BridgeMode::Transcode);
        // PCMU now refused from SIP, PCMA taken and transcoded to the browser
        assert!(
            b.push_sip(switched, &packet(0, 43, 480, 9, &payload), &mut arena)
                .is_err()
        );
        let mut pcma = [0u8; 160];
        g711::encode(Law::A, &[4000i16; 160], &mut pcma);
        for i in 0..10u16 {
            let now = switched + Duration::from_millis(20 * u64::from(i));
            b.push_sip(
                now,
                &packet(8, 44 + i, 640 + 160 * u32::from(i), 9, &pcma),
                &mut arena,
            )
            .unwrap();
            while let Some(n) = b.poll_webrtc(now, &mut out, &arena) {
                let p = rtp::Packet::new_checked(&out[..n]).unwrap();
                assert_eq!(p.payload_type(), 0);
                let mut pcm = [0i16; 160];
                g711::decode(Law::Mu, p.payload(), &mut pcm);
                if to_browser.len() > 3 {
                    // past the jitter buffer's start: the PCMA level comes through as PCMU
                    assert!(
                        pcm.iter().all(|&s| (s - 4000).abs() < 200),
                        "{:?}",
                        &pcm[..4]
                    );
                }
                to_browser.push(rtp::Header::parse(&p));
            }
        }
        assert!(to_browser.len() >= 6, "{to_browser:?}");
        // one stream toward the browser: same SSRC, no gap in the sequence, the
        // timestamp moved on past the relayed part and the new part starts a talkspurt
        assert!(to_browser.iter().all(|h| h.ssrc == 0xaaaa));
        for w in to_browser.windows(2) {
            assert_eq!(w[1].sequence_number, w[0].sequence_number.wrapping_add(1));
            assert!(w[1].timestamp.wrapping_sub(w[0].timestamp) < 0x8000_0000);
        }
        assert!(to_browser[3].marker);
        assert!(
            to_browser[3]
                .timestamp
                .wrapping_sub(to_browser[2].timestamp)
                >= 160
        );
    }

    #[test]
    fn a_relayed_g711_packet_may_carry_60_ms_and_no_more_than_its_queue_holds() {
        let now = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::G711(Law::Mu), 0)).unwrap();
        let mut out = [0u8; 1500];
        // 60 ms of G.711 (480 bytes) is relayed whole
        let big = [0x55u8; 480];
        b.push_webrtc(now, &packet(0, 1, 0, 1, &big), &mut arena)
            .unwrap();
        let n = b.poll_sip(now, &mut out, &arena).unwrap();
        assert_eq!(&out[rtp::HEADER_LEN..n], &big[..]);
        // a packet larger than any G.711 frame is refused, not cut
        assert_eq!(
            b.push_webrtc(now, &packet(0, 2, 480, 1, &[0x55u8; 700]), &mut arena),
            Err(PushError::TooLarge)
        );
        assert!(b.poll_sip(now, &mut out, &arena).is_none());
    }

    #[test]
    fn a_relayed_g711_queue_holds_four_packets_whole_and_drops_the_oldest() {
        let now = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::G711(Law::Mu), 0)).unwrap();
        let mut out = [0u8; 1500];
        // five 20 ms packets in one wake-up: the first is dropped, four leave in order
        for round in 0..3u16 {
            for k in 1..=5u16 {
                let seq = round * 5 + k;
                let p = packet(0, seq, u32::from(seq) * 160, 1, &[seq as u8; 160]);
                b.push_webrtc(now, &p, &mut arena).unwrap();
            }
            for k in 2..=5u16 {
                let n = b.poll_sip(now, &mut out, &arena).unwrap();
                assert_eq!(n, rtp::HEADER_LEN + 160);
                assert!(
                    out[rtp::HEADER_LEN..n]
                        .iter()
                        .all(|&x| x == (round * 5 + k) as u8)
                );
            }
            assert!(b.poll_sip(now, &mut out, &arena).is_none());
            arena.clear();
        }
        // 20 and 60 ms packets mixed, two waiting in each wake-up, the arena starting over
        // after each: every packet leaves whole and in order
        arena.clear();
        let (mut last, mut relayed) = (0u8, 0);
        for seq in 20..120u16 {
            let size = if seq % 3 == 0 { 480 } else { 160 };
            let p = packet(0, seq, u32::from(seq) * 160, 1, &[seq as u8; 480][..size]);
            b.push_webrtc(now, &p, &mut arena).unwrap();
            if seq % 2 == 0 {
                continue;
            }
            while let Some(n) = b.poll_sip(now, &mut out, &arena) {
                let v = out[rtp::HEADER_LEN];
                let size = if v % 3 == 0 { 480 } else { 160 };
                assert_eq!(n, rtp::HEADER_LEN + size);
                assert!(out[rtp::HEADER_LEN..n].iter().all(|&x| x == v));
                assert!(v > last, "in order");
                (last, relayed) = (v, relayed + 1);
            }
            arena.clear();
        }
        assert_eq!(last, 119);
        assert_eq!(relayed, 100);
    }

    #[test]
    fn dtmf_toward_sip_shares_the_sequence_space_and_holds_audio_back() {
        let t0 = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::G711(Law::Mu), 0)).unwrap();
        let payload = [0x55u8; 160];
        let mut out = [0u8; 1500];
        let mut sent: Vec<(u8, u16, u32)> = Vec::new();
        b.send_dtmf(t0, "1#").unwrap();
        assert_eq!(b.send_dtmf(t0, "x"), Err(DtmfError::BadDigit('x')));
        let mut now = t0;
        for i in 0..40u16 {
            b.push_webrtc(
                now,
                &packet(0, i, 160 * u32::from(i), 9, &payload),
                &mut arena,
            )
            .unwrap();
            while let Some(n) = b.poll_sip(now, &mut out, &arena) {
                let p = rtp::Packet::new_checked(&out[..n]).unwrap();
                sent.push((p.payload_type(), p.sequence_number(), p.timestamp()));
            }
            now += Duration::from_millis(20);
        }
        let seqs: Vec<u16> = sent.iter().map(|s| s.1).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "{sent:?}");
        }
        let events: Vec<&(u8, u16, u32)> = sent.iter().filter(|s| s.0 == 101).collect();
        assert_eq!(events.len(), 14, "two digits of 7 packets: {sent:?}");
        let starts: std::collections::BTreeSet<u32> = events.iter().map(|e| e.2).collect();
        assert_eq!(starts.len(), 2);
        // audio after the events carries later timestamps than the events
        let last_event = events.last().unwrap();
        let after = sent
            .iter()
            .skip_while(|s| s.1 != last_event.1)
            .nth(1)
            .unwrap();
        assert_eq!(after.0, 0);
        assert!(after.2.wrapping_sub(last_event.2) < 0x8000_0000);
        assert_eq!(b.stats().sip.dtmf_out, 14);
    }

    #[test]
    fn events_from_sip_become_digits_and_never_reach_the_decoder() {
        let now = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::Opus, 111)).unwrap();
        assert_eq!(b.mode(), BridgeMode::Transcode);
        for _ in 0..3 {
            b.push_sip(now, &packet(101, 1, 800, 5, &[5, 0x8a, 3, 32]), &mut arena)
                .unwrap();
        }
        b.push_sip(
            now,
            &packet(101, 2, 1600, 5, &[11, 0x0a, 0, 160]),
            &mut arena,
        )
        .unwrap();
        assert_eq!(b.poll_dtmf(), Some('5'));
        assert_eq!(b.poll_dtmf(), Some('#'));
        assert_eq!(b.poll_dtmf(), None);
        assert_eq!(
            b.push_sip(now, &packet(96, 3, 2400, 5, &[0; 20]), &mut arena),
            Err(PushError::PayloadType(96))
        );
    }

    /// The SIP leg's jitter (RFC 3550 A.8) goes into srgate's report block and the stats;
    /// a report block from the phone naming srgate's last SR gives the round-trip time.
    #[test]
    fn sip_leg_jitter_and_round_trip_time() {
        use std::time::Duration;
        let t0 = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::G711(Law::Mu), 0)).unwrap();
        let mut out = [0u8; 1500];
        // srgate sends toward SIP too (its reports on that leg start then)
        b.push_webrtc(t0, &packet(0, 1, 0, 9, &[0x55; 160]), &mut arena)
            .unwrap();
        assert!(b.poll_sip(t0, &mut out, &arena).is_some());
        arena.clear();
        // every other packet 10 ms late: about 80 ticks (10 ms) of jitter
        for i in 0..300u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            let now = t0 + Duration::from_millis(u64::from(i) * 20 + late);
            b.push_sip(
                now,
                &packet(0, i as u16, i * 160, 7, &[0x55; 160]),
                &mut arena,
            )
            .unwrap();
            while b.poll_webrtc(now, &mut out, &arena).is_some() {}
            arena.clear();
        }
        let jitter = b.stats().sip.jitter_us;
        assert!((9_000..=10_000).contains(&jitter), "{jitter} µs");
        // srgate's SR toward SIP carries the jitter in its report block
        let sent_at = t0 + Duration::from_secs(7);
        let ntp = 0x0000_1234_5678_0000u64;
        let n = b
            .poll_rtcp_sip(sent_at, ntp, &mut out)
            .expect("an SR is due");
        let first = rtcp::Compound::new(&out[..n]).flatten().next().unwrap();
        let report = rtcp::ReportPacket::new_checked(first).unwrap();
        let block = report
            .report_blocks()
            .next()
            .expect("a block about the phone");
        assert!((75..=80).contains(&block.jitter), "{}", block.jitter);
        assert_eq!(b.stats().sip.rtt_us, None);
        // the phone's RR 1.05 s later, having held srgate's SR for 1 s: 50 ms round trip
        let rr = [ReportBlock {
            ssrc: 0xbbbb,
            fraction_lost: 0,
            cumulative_lost: 0,
            highest_sequence: 300,
            jitter: 0,
            last_sr: rtcp::ntp_middle(ntp),
            delay_since_last_sr: 65_536,
        }];
        let mut buf = [0u8; 64];
        let len = rtcp::Report {
            ssrc: 7,
            sender_info: None,
            blocks: &rr,
        }
        .emit(&mut buf)
        .unwrap();
        b.handle_rtcp_sip(sent_at + Duration::from_millis(1050), &buf[..len]);
        let rtt = b.stats().sip.rtt_us.expect("a round-trip time");
        assert!((49_000..=51_000).contains(&rtt), "{rtt} µs");
    }

    #[test]
    fn transcodes_a_tone_from_sip_to_opus_and_reports_rtcp() {
        let t0 = base();
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(config(Codec::Opus, 111)).unwrap();
        let mut out = [0u8; 1500];
        let mut now = t0;
        let mut to_browser = 0;
        let mut rtcp_sent = 0;
        for i in 0..400u32 {
            let frame: Vec<u8> = (0..160)
                .map(|n| {
                    let t = f64::from(i * 160 + n) / 8000.0;
                    let s = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
                    g711::ulaw_encode(s as i16)
                })
                .collect();
            b.push_sip(now, &packet(0, i as u16, i * 160, 77, &frame), &mut arena)
                .unwrap();
            while let Some(n) = b.poll_webrtc(now, &mut out, &arena) {
                let p = rtp::Packet::new_checked(&out[..n]).unwrap();
                assert_eq!((p.payload_type(), p.ssrc()), (111, 0xaaaa));
                to_browser += 1;
            }
            if let Some(n) = b.poll_rtcp_webrtc(now, 1 << 40, &mut out) {
                assert!(rtcp::Compound::check(&out[..n]).is_ok());
                rtcp_sent += 1;
            }
            now += Duration::from_millis(20);
        }
        assert!(to_browser > 380, "{to_browser}");
        assert!(rtcp_sent >= 1, "an SR every 5 s");
        assert_eq!(b.stats().sip.lost, 0);
    }
}

#[cfg(test)]
mod g711_tests {
    use super::*;
    use crate::media::codec::{Law, g711};

    #[test]
    fn pcma_from_sip_reaches_a_pcmu_browser_with_its_energy() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let leg = |codec, payload_type, ssrc| LegFormat {
            codec,
            payload_type,
            dtmf_payload_type: None,
            dtmf_clock: 8000,
            packet_time: crate::media::codec::FRAME,
            ssrc,
            initial_sequence: 1,
            initial_timestamp: 1,
        };
        let mut arena = RelayArena::default();
        let mut b = Bridge::new(BridgeConfig {
            webrtc: leg(Codec::G711(Law::Mu), 0, 1),
            sip: leg(Codec::G711(Law::A), 8, 2),
            opus_complexity: 5,
            jitter: JitterConfig::new(8000),
        })
        .unwrap();
        assert_eq!(b.mode(), BridgeMode::Transcode);
        let mut out = [0u8; 1500];
        let mut energy = 0f64;
        let mut packets = 0;
        let mut now = t0;
        for i in 0..100u32 {
            let mut p = vec![0u8; rtp::HEADER_LEN + 160];
            rtp::Header {
                marker: i == 0,
                payload_type: 8,
                sequence_number: i as u16,
                timestamp: 1000 + i * 160,
                ssrc: 99,
            }
            .emit(&mut p)
            .unwrap();
            for n in 0..160 {
                let t = f64::from(i * 160 + n) / 8000.0;
                p[rtp::HEADER_LEN + n as usize] =
                    g711::alaw_encode(((t * 700.0 * std::f64::consts::TAU).sin() * 6000.0) as i16);
            }
            b.push_sip(now, &p, &mut arena).unwrap();
            while let Some(n) = b.poll_webrtc(now, &mut out, &arena) {
                packets += 1;
                for &c in &out[rtp::HEADER_LEN..n] {
                    energy += f64::from(g711::ulaw_decode(c)).abs();
                }
            }
            now += Duration::from_millis(20);
        }
        assert!(packets > 80, "{packets}");
        assert!(energy / f64::from(packets * 160) > 1000.0, "{energy}");
    }
}
