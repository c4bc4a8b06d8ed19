//! A REST call's video (`hasVideo`): srgate offers the phone H.264 (packetization mode 1)
//! next to the audio; the phone's video RTP ([`VideoLeg`]: its port pair, the source
//! check, picture requests) is depacketized ([`Depacketizer`]) and each whole picture goes
//! on the stream unchanged as an FLV AVC video tag, after the decoder configuration record
//! (from the SDP's `sprop-parameter-sets` or in-band SPS/PPS). A session starts at a key
//! frame: until one comes, and after a lost packet, a picture is asked for (RTCP PLI, SIP
//! INFO for a phone without feedback). Timestamps follow the audio's timeline: the first
//! picture at the time it came, the next ones by their RTP clock.

use std::net::SocketAddr;
use std::time::Instant;

use super::Session;
use crate::call::video::{MAX_PACKET, VideoLeg};
use crate::media::h264::Depacketizer;

/// FLV video tag bytes (FLV 10.1 §E.4.3.1): key or inter frame with codec 7 (AVC), and the
/// AVC packet types.
const AVC_KEY: u8 = 0x17;
const AVC_INTER: u8 = 0x27;
const AVC_SEQUENCE_HEADER: u8 = 0;
const AVC_NALU: u8 = 1;

pub(super) struct RtmpVideo {
    pub leg: VideoLeg,
    depack: Depacketizer,
    /// The decoder configuration record, rebuilt when SPS/PPS change.
    record: Vec<u8>,
    /// (RTP timestamp, stream millisecond) the pictures' times are counted from, and the
    /// last time given (video timestamps never go back).
    first: Option<(u32, u32)>,
    last_ms: u32,
    /// No picture goes out until a key frame: at a session's start and after a loss
    /// (the pictures after a lost one refer to it and would not decode).
    await_key: bool,
    pub frames: u64,
    pub dropped: u64,
}

impl RtmpVideo {
    pub fn new(leg: VideoLeg, sprop: Option<&str>) -> RtmpVideo {
        let mut depack = Depacketizer::new();
        if let Some(sprop) = sprop {
            depack.set_parameter_sets(sprop);
        }
        RtmpVideo {
            leg,
            depack,
            record: Vec::new(),
            first: None,
            last_ms: 0,
            await_key: true,
            frames: 0,
            dropped: 0,
        }
    }

    /// A datagram on the video's RTP or RTCP port; pictures it completes go on `session`
    /// (when it publishes and the audio's header went out). `answered`: when the call
    /// was answered (the audio timeline's origin).
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        rtcp: bool,
        answered: Instant,
        session: Option<&mut Session>,
    ) {
        self.leg.handle_sip(from, data, rtcp);
        let mut packet = [0u8; MAX_PACKET];
        let mut session = session;
        // bounded: the leg holds at most its ring's packets
        while let Some(n) = self.leg.poll_browser(&mut packet) {
            let Some(au) = self.depack.push(&packet[..n]) else {
                continue;
            };
            let (ts, key) = (au.timestamp, au.key);
            if self.depack.take_loss() {
                self.await_key = true;
            }
            let Some(s) = session.as_deref_mut() else {
                self.dropped += 1;
                continue;
            };
            let publishing = s.publisher.state() == crate::rtmp::State::Publishing;
            if !publishing || !s.header_sent {
                // the stream's metadata and audio header go first (the audio clock)
                self.dropped += 1;
                continue;
            }
            if self.depack.take_config_change() {
                s.video_header_sent = false;
            }
            if (self.await_key || !s.video_header_sent) && !key {
                // a decoder starts at a key frame: ask for one
                self.dropped += 1;
                self.leg.ask_picture(now);
                continue;
            }
            if !s.video_header_sent {
                let Some(len) = self.depack.config_record(&mut self.record) else {
                    self.dropped += 1;
                    self.leg.ask_picture(now);
                    continue;
                };
                let header = [AVC_KEY, AVC_SEQUENCE_HEADER, 0, 0, 0];
                let ms = self.stream_ms(now, answered, s, ts);
                if s.publisher
                    .send_video(ms, &[&header, &self.record[..len]])
                    .is_err()
                {
                    self.dropped += 1;
                    continue;
                }
                s.video_header_sent = true;
            }
            let ms = self.stream_ms(now, answered, s, ts);
            let tag = [if key { AVC_KEY } else { AVC_INTER }, AVC_NALU, 0, 0, 0];
            // the picture is the depacketizer's: borrowed again after the header's use
            let Some(au) = self.depack.last_picture() else {
                continue;
            };
            if s.publisher.send_video(ms, &[&tag, au]).is_err() {
                // the server reads too slowly: a live stream drops it (and the next
                // pictures until a key frame would not decode: wait for one)
                self.dropped += 1;
                self.await_key = true;
                continue;
            }
            if key {
                self.await_key = false;
                self.leg.key_frame_seen();
            }
            self.frames += 1;
        }
        if self.depack.take_loss() {
            self.await_key = true;
            self.leg.ask_picture(now);
        }
    }

    /// The stream millisecond of a picture with RTP timestamp `ts`: the first at its
    /// arrival on the audio's timeline, the next ones by their 90 kHz clock.
    fn stream_ms(&mut self, now: Instant, answered: Instant, s: &Session, ts: u32) -> u32 {
        let since =
            u32::try_from(now.saturating_duration_since(answered).as_millis()).unwrap_or(u32::MAX);
        let arrival = since.saturating_sub(s.ts_base.unwrap_or(0));
        let (first_ts, first_ms) = *self.first.get_or_insert((ts, arrival));
        let elapsed = ts.wrapping_sub(first_ts);
        let by_clock = first_ms.wrapping_add(elapsed / 90);
        // a clock that went back (an encoder restarted) or drifted a second from the
        // audio's (a pause, a long call): counted from this picture again
        let ms = if elapsed >= 0x8000_0000 || by_clock.abs_diff(arrival) > 1_000 {
            self.first = Some((ts, arrival));
            arrival
        } else {
            by_clock
        };
        let ms = ms.max(self.last_ms);
        self.last_ms = ms;
        ms
    }

    /// A new session starts its pictures over (configuration, key frame, timeline).
    pub fn session_started(&mut self) {
        self.first = None;
        self.last_ms = 0;
        self.await_key = true;
    }
}
