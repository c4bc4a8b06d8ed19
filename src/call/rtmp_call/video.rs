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
    /// last picture's time (each picture comes after the one before it).
    first: Option<(u32, u32)>,
    last_ms: Option<u32>,
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
            last_ms: None,
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
                // the configuration goes at the time of the key frame that follows it
                let ms = self.peek_ms(now, answered, s, ts);
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

    /// The stream millisecond of the picture with RTP timestamp `ts`, arrived `now`.
    fn stream_ms(&mut self, now: Instant, answered: Instant, s: &Session, ts: u32) -> u32 {
        let arrival = arrival_ms(now, answered, s.ts_base);
        let (ms, first) = picture_ms(self.first, self.last_ms, ts, arrival);
        self.first = Some(first);
        self.last_ms = Some(ms);
        ms
    }

    /// The time [`Self::stream_ms`] will give the picture, without taking it.
    fn peek_ms(&self, now: Instant, answered: Instant, s: &Session, ts: u32) -> u32 {
        picture_ms(
            self.first,
            self.last_ms,
            ts,
            arrival_ms(now, answered, s.ts_base),
        )
        .0
    }

    /// A new session starts its pictures over (configuration, key frame, timeline).
    pub fn session_started(&mut self) {
        self.first = None;
        self.last_ms = None;
        self.await_key = true;
    }
}

/// The stream millisecond (the audio's timeline) of `now`.
fn arrival_ms(now: Instant, answered: Instant, ts_base: Option<u32>) -> u32 {
    let since =
        u32::try_from(now.saturating_duration_since(answered).as_millis()).unwrap_or(u32::MAX);
    since.saturating_sub(ts_base.unwrap_or(0))
}

/// The stream millisecond of a picture with RTP timestamp `ts` arriving at `arrival`, and
/// the (RTP timestamp, millisecond) later pictures count from: the first picture at its
/// arrival, the next ones by their 90 kHz clock, each at least a millisecond after the
/// last (`last`): two pictures at one time would be shown as one, and a muxer or player
/// refuses a time that does not increase.
fn picture_ms(
    first: Option<(u32, u32)>,
    last: Option<u32>,
    ts: u32,
    arrival: u32,
) -> (u32, (u32, u32)) {
    let (first_ts, first_ms) = first.unwrap_or((ts, arrival));
    let elapsed = ts.wrapping_sub(first_ts);
    let by_clock = first_ms.wrapping_add(elapsed / 90);
    // a clock that went back (an encoder restarted) or drifted a second from the audio's
    // (a pause, a long call): counted from this picture again
    let (ms, first) = if elapsed >= 0x8000_0000 || by_clock.abs_diff(arrival) > 1_000 {
        (arrival, (ts, arrival))
    } else {
        (by_clock, (first_ts, first_ms))
    };
    match last {
        Some(last) => (ms.max(last.saturating_add(1)), first),
        None => (ms, first),
    }
}

#[cfg(test)]
mod tests {
    use super::picture_ms;

    /// Runs pictures (RTP timestamp, arrival ms) through [`picture_ms`]; their times.
    fn times(pictures: &[(u32, u32)]) -> Vec<u32> {
        let (mut first, mut last) = (None, None);
        let mut out = Vec::new();
        for &(ts, arrival) in pictures {
            let (ms, f) = picture_ms(first, last, ts, arrival);
            (first, last) = (Some(f), Some(ms));
            out.push(ms);
        }
        out
    }

    #[test]
    fn pictures_follow_their_clock_from_the_first_arrival() {
        // 15 pictures a second (6 000 ticks), arriving with jitter and in a burst
        let t = times(&[(1_000, 500), (7_000, 590), (13_000, 600), (19_000, 601)]);
        assert_eq!(t, [500, 566, 633, 700]);
    }

    #[test]
    fn every_picture_comes_after_the_last_even_when_the_clock_restarts() {
        // the encoder restarts (its clock goes back), then a burst after a stall of more
        // than a second: the re-anchored times would repeat or go back; they go on instead
        let t = times(&[
            (90_000, 1_000),
            (96_000, 1_066),
            (6_000, 1_070),  // clock went back: re-anchored at its arrival
            (12_000, 1_071), // 1 070 + 66
            (18_000, 3_000), // a stall: re-anchored at 3 000
            (24_000, 3_001), // 3 066 by the clock
            (30_000, 3_002),
        ]);
        assert_eq!(t, [1_000, 1_066, 1_070, 1_136, 3_000, 3_066, 3_133]);
        assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    }

    #[test]
    fn a_clock_running_ahead_by_more_than_a_second_never_repeats_a_time() {
        // pictures whose clock runs more than a second ahead of their arrival: re-anchored at an
        // arrival before the last time given, each still a millisecond after the last
        let t = times(&[
            (0, 100),
            (90_000, 1_099),
            (180_000, 1_050),
            (186_000, 1_051),
        ]);
        // (a clamp to the last time alone gave 1 100 twice)
        assert_eq!(t, [100, 1_100, 1_101, 1_116]);
    }
}
