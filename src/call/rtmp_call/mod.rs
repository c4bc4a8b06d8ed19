//! "SIP as RTMP" calls: a web back end starts a SIP call with one REST request
//! (`src/rest.rs`), srgate calls the number and publishes the call's audio as AAC-LC to an
//! RTMP or RTMPS server (nginx-rtmp, a CDN, YouTube or Facebook Live) until a second
//! request, or the phone, ends it.
//!
//! - The SIP leg is an outgoing call like an app user's: in proxy mode through `sip_svr`
//!   from the proxy account, in standalone mode to a `[users]` phone's registered contact.
//!   srgate offers the codecs it decodes (`[media] codecs`' G.711 laws and Opus, and
//!   telephone-event) at one port of `[media] rtp_ports`; the phone's RTP is taken from
//!   its SDP's address (the bridged calls' source guard, [`super::latch`]).
//! - The audio: jitter buffer and decoder as for transcoding (a missing packet concealed),
//!   one 20 ms frame every 20 ms from the answer on, silence when the phone gave none in
//!   time (hold, a silent phone, loss), so the stream's timeline is steady by
//!   construction; AAC-LC at 48 kHz mono ([`crate::media::codec::aac`]).
//! - The RTMP session ([`crate::rtmp::Publisher`], sans-IO) starts with the request, so
//!   the stream is up when the phone answers; the shell carries its bytes over TCP or TLS
//!   ([`RtmpOutput`]). The sequence header and metadata go first on each session, media
//!   timestamps of a session start at 0. A session that fails (refused, connection lost,
//!   not publishing within [`PUBLISH_TIMEOUT`]) is started again after a back-off of 1 s
//!   doubling to 30 s while the call lasts; `find` reports it.
//! - The end: a `terminate` request, the phone's BYE, its refusal, no answer within
//!   `invitation_timeout`, no RTP for `rtp_timeout`, or shutdown. The SIP leg gets BYE or
//!   CANCEL, the stream `FCUnpublish` and `deleteStream`, the port is closed, one CDR line
//!   (`direction` `rest_to_sip`, `mode` `rtmp`) is written, and the call's last state stays
//!   for `find` (the last [`FINISHED_KEPT`]).
//!
//! Such calls live on the signalling shard (shard 0), at most [`MAX_RTMP_CALLS`] at once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::HookUrl;
use crate::media::codec::{Codec as MediaCodec, SampleRate};
use crate::media::dtmf::DtmfSender;
use crate::media::transcode::Transcoder;
use crate::rest::{CallInfo, CallState, RestError, RestRequest, RtmpState, Startup};
use crate::rtmp::publisher::{Publisher, PublisherConfig};
use crate::rtmp::{Event as RtmpEvent, RtmpUrl};
use crate::sdp::Codec;
use crate::sdp::answer::Direction;
use crate::sdp::sip::{RemoteRtp, RtpDescription, build_rtp_sdp, parse_rtp_sdp};
use crate::sip::endpoint::{Event as SipEvent, OutgoingCall, Reach, SipCallId};

use super::latch::RtpSource;
use super::{Calls, Cdr, Ctx, earliest};

/// REST calls at once.
pub const MAX_RTMP_CALLS: usize = 32;

/// The payload type srgate gives H.264 in its offers (`hasVideo`).
const VIDEO_PT: u8 = 96;
/// Ended calls whose last state `find` still gives.
pub const FINISHED_KEPT: usize = 64;
/// A session not publishing this long after its connection was asked for is given up
/// (and started again after the back-off).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a closing session may take to write its `deleteStream`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(20);
/// Ticks caught up at most after the loop was late; later, the timeline restarts at now.
#[cfg(feature = "aac")]
const MAX_CATCH_UP: u32 = 10;
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// The caller's name on the SIP leg (the From user in standalone mode).
const CALLER: &str = "rtmp";
/// SIP INFO digits go one every this long: a 160 ms key press and a pause.
const INFO_EVERY: Duration = Duration::from_millis(250);
/// A digit's length as SIP INFO says it.
const INFO_DURATION_MS: u32 = 160;

/// What the shell does for the RTMP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtmpOutput {
    /// Open a connection `conn` to `host:port` (TLS, checking the server's certificate
    /// against `host`, when `tls`); report it with [`Calls::rtmp_input`] and
    /// [`Calls::rtmp_closed`], write what [`Calls::rtmp_transmit`] gives.
    Connect {
        conn: u64,
        host: String,
        port: u16,
        tls: bool,
    },
    /// Close connection `conn` (its session ended, or was given up).
    Close { conn: u64 },
}

/// One RTMP session (one connection).
#[cfg_attr(not(feature = "aac"), allow(dead_code))]
struct Session {
    conn: u64,
    publisher: Publisher,
    opened: Instant,
    /// The sequence header and metadata went out on it.
    header_sent: bool,
    /// The video's decoder configuration went out on it (pictures follow from a key frame).
    video_header_sent: bool,
    /// The AAC timeline's millisecond at this session's timestamp 0.
    ts_base: Option<u32>,
}

/// The call's audio, from the answer on.
#[cfg_attr(not(feature = "aac"), allow(dead_code))]
struct Audio {
    decode: Transcoder,
    payload_type: u8,
    aac: AacEncoder,
    pcm: Box<[i16]>,
}

#[cfg(feature = "aac")]
use crate::media::codec::aac::AacEncoder;

/// Without the `aac` feature there is no encoder: REST calls are refused at startup.
#[cfg(not(feature = "aac"))]
struct AacEncoder;

struct RtmpCall {
    call_id: String,
    callee: String,
    url: RtmpUrl,
    sip: SipCallId,
    sip_alive: bool,
    port: u16,
    /// The video's port (RTCP: the next one), offered when the request had `hasVideo`;
    /// its leg once the phone answered with video.
    video_port: Option<u16>,
    video: Option<Box<video::RtmpVideo>>,
    state: CallState,
    sip_code: Option<u16>,
    reason: Option<String>,
    started: Instant,
    answered: Option<Instant>,
    /// The invitation timeout, until the answer.
    deadline: Option<Instant>,
    source: RtpSource,
    remote: Option<RemoteRtp>,
    codec: Option<Codec>,
    audio: Option<Audio>,
    session: Option<Session>,
    rtmp_state: RtmpState,
    rtmp_error: Option<String>,
    reconnects: u32,
    retry_at: Option<Instant>,
    backoff: Duration,
    next_tick: Option<Instant>,
    packets_in: u64,
    refused: u64,
    aac_frames: u64,
    frames_dropped: u64,
    last_rtp: Instant,
    /// `[media] rtp_timeout`.
    rtp_timeout: Duration,
    /// `send_dtmf` digits as RFC 4733 events, when the phone takes telephone-event.
    dtmf: DtmfSender,
    /// `send_dtmf` digits as SIP INFO (a phone without telephone-event), sent one every
    /// [`INFO_EVERY`] so a phone sees them as separate key presses; when the next goes.
    info_digits: heapless::Deque<char, { crate::media::dtmf::MAX_QUEUED }>,
    next_info: Option<Instant>,
    /// The phone's telephone-event payload type (its answer's).
    te_pt: Option<u8>,
    /// srgate's RTP stream toward the phone (only event packets go on it).
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    /// The timestamp of the event playing (all its packets carry its start's).
    event_ts: u32,
    /// `hookUrl` (or `[rest] hook_url`): told each change of state.
    hook: Option<HookUrl>,
    /// The states the hook was last told.
    notified: Option<(CallState, RtmpState)>,
    /// Tests: where this call's code is made to panic.
    #[cfg(test)]
    fault: Option<tests::Fault>,
}

impl RtmpCall {
    fn info(&self, now: Instant) -> CallInfo {
        CallInfo {
            call_id: self.call_id.clone(),
            callee: self.callee.clone(),
            state: self.state,
            sip_code: self.sip_code,
            reason: self.reason.clone(),
            rtmp_url: self.url.tc_url(),
            rtmp_state: self.rtmp_state,
            rtmp_error: self.rtmp_error.clone(),
            rtmp_reconnects: self.reconnects,
            packets_in: self.packets_in,
            aac_frames: self.aac_frames,
            duration_ms: self
                .answered
                .map_or(0, |a| now.saturating_duration_since(a).as_millis() as u64),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let publish = self.session.as_ref().and_then(|s| {
            (s.publisher.state() != crate::rtmp::State::Publishing)
                .then_some(s.opened + PUBLISH_TIMEOUT)
        });
        let silence = self
            .answered
            .filter(|_| self.sends())
            .map(|_| self.last_rtp + self.rtp_timeout);
        earliest(
            earliest(self.deadline, self.next_tick),
            earliest(
                self.retry_at,
                earliest(
                    publish,
                    earliest(silence, earliest(self.dtmf.poll_timeout(), self.next_info)),
                ),
            ),
        )
    }

    /// Where srgate's packets to the phone go: where its RTP comes from, else its SDP's
    /// address; none while it does not receive.
    fn destination(&self) -> Option<SocketAddr> {
        self.source.send_to(self.remote.as_ref()?)
    }

    /// The RFC 4733 packets due at `now`, into `out` (port, destination, packet).
    fn send_dtmf(&mut self, now: Instant, out: &mut VecDeque<OutPacket>) {
        let (Some(pt), Some(answered)) = (self.te_pt, self.answered) else {
            return;
        };
        // a digit is a handful of packets
        for _ in 0..8 {
            let Some(event) = self.dtmf.poll(now) else {
                return;
            };
            let ticks = now.saturating_duration_since(answered).as_micros() * 8 / 1000;
            if event.marker {
                self.event_ts = self.ts_base.wrapping_add(ticks as u32);
            }
            let mut packet = [0u8; 16];
            let header = crate::wire::rtp::Header {
                marker: event.marker,
                payload_type: pt,
                sequence_number: self.seq,
                timestamp: self.event_ts,
                ssrc: self.ssrc,
            };
            if header.emit(&mut packet).is_err() {
                return;
            }
            packet[12..].copy_from_slice(&event.payload);
            self.seq = self.seq.wrapping_add(1);
            if let Some(to) = self.destination() {
                let mut bytes = [0u8; OUT_MAX];
                bytes[..16].copy_from_slice(&packet);
                out.push_back((self.port, to, bytes, 16));
            }
        }
    }

    /// The SIP INFO digit due at `now`, if any (the next one [`INFO_EVERY`] later).
    fn send_info(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.next_info.is_some_and(|t| t <= now)
            && let Some(digit) = self.info_digits.pop_front()
        {
            ctx.sip.info(now, self.sip, digit, INFO_DURATION_MS);
            self.next_info = (!self.info_digits.is_empty()).then_some(now + INFO_EVERY);
        } else if self.info_digits.is_empty() {
            self.next_info = None;
        }
    }

    /// The phone sends (its SDP says so, at a real address).
    fn sends(&self) -> bool {
        // a phone that holds (sendonly, inactive) may send nothing: not timed out
        self.remote
            .as_ref()
            .is_some_and(|r| r.direction == Direction::SendRecv && !r.addr.ip().is_unspecified())
    }
}

/// The REST calls of a shard (shard 0) and their RTMP sessions.
#[derive(Default)]
pub struct RtmpCalls {
    calls: Vec<RtmpCall>,
    finished: VecDeque<CallInfo>,
    /// Sessions of ended calls writing their `deleteStream`, until when.
    closing: Vec<(Session, Instant)>,
    /// RFC 4733 packets and picture requests for the phones.
    out: VecDeque<OutPacket>,
    /// Hook posts: (URL, JSON body).
    hooks: VecDeque<(HookUrl, String)>,
    /// A request, SIP event, timer or RTMP input came since the hooks were last looked at.
    touched: bool,
    outputs: VecDeque<RtmpOutput>,
    next_conn: u64,
    /// Calls whose own code panicked, to be ended at the next timer: (SIP leg, due).
    poisoned: Vec<(SipCallId, Instant)>,
    /// A startup under way: its port and, once the INVITE is out, its SIP leg, freed if
    /// the startup panics before the call is in `calls`.
    starting: Option<(u16, Option<u16>, Option<SipCallId>)>,
}

/// The largest packet a REST call sends its phone itself (an RFC 4733 event: 16 bytes;
/// a compound RTCP picture request: 20).
const OUT_MAX: usize = 24;

/// A packet for a phone: (srgate's port, destination, bytes, length).
type OutPacket = (u16, SocketAddr, [u8; OUT_MAX], usize);

/// The body of a hook post: the call's state as `find` gives it, and the event.
fn hook_body(info: &CallInfo) -> String {
    let mut json = info.json();
    if let Some(object) = json.as_object_mut() {
        object.insert("event".into(), "call_state".into());
    }
    json.to_string()
}

impl RtmpCalls {
    /// Queues a hook post for every call whose state changed since its last one.
    fn notify_changes(&mut self, now: Instant) {
        // only after what can change a state (not after every media packet)
        if !std::mem::take(&mut self.touched) {
            return;
        }
        for call in &mut self.calls {
            let Some(hook) = &call.hook else {
                continue;
            };
            let states = (call.state, call.rtmp_state);
            if call.notified != Some(states) {
                call.notified = Some(states);
                self.hooks
                    .push_back((hook.clone(), hook_body(&call.info(now))));
            }
        }
    }

    /// Calls up (from startup to their end).
    pub fn count(&self) -> usize {
        self.calls.len()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let closing = earliest(
            self.closing.iter().map(|(_, until)| *until).min(),
            self.poisoned_due(),
        );
        self.calls
            .iter()
            .fold(closing, |t, c| earliest(t, c.poll_timeout()))
    }

    fn by_sip(&self, id: SipCallId) -> Option<usize> {
        self.calls.iter().position(|c| c.sip == id)
    }

    /// The call whose current session is on connection `conn`.
    fn by_conn(&self, conn: u64) -> Option<usize> {
        self.calls
            .iter()
            .position(|c| c.session.as_ref().is_some_and(|s| s.conn == conn))
    }

    fn by_call_id(&self, call_id: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.call_id == call_id)
    }

    fn session_mut(&mut self, conn: u64) -> Option<&mut Session> {
        self.calls
            .iter_mut()
            .filter_map(|c| c.session.as_mut())
            .chain(self.closing.iter_mut().map(|(s, _)| s))
            .find(|s| s.conn == conn)
    }

    /// Starts a session for call `index` (a connection asked of the shell).
    fn connect(&mut self, now: Instant, index: usize, seed: u64) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        call.session = Some(Session {
            conn,
            publisher: Publisher::new(PublisherConfig::new(&call.url, seed)),
            opened: now,
            header_sent: false,
            video_header_sent: false,
            ts_base: None,
        });
        if let Some(video) = call.video.as_mut() {
            video.session_started();
        }
        call.rtmp_state = if call.reconnects == 0 && call.rtmp_error.is_none() {
            RtmpState::Connecting
        } else {
            RtmpState::Retrying
        };
        call.retry_at = None;
        self.outputs.push_back(RtmpOutput::Connect {
            conn,
            host: call.url.host.clone(),
            port: call.url.port,
            tls: call.url.tls,
        });
    }

    /// Call `index`'s session failed with `why`: given up now, started again after the
    /// back-off.
    fn session_failed(&mut self, now: Instant, index: usize, why: String) {
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        let Some(session) = call.session.take() else {
            return;
        };
        // a server's text may repeat the stream name (a key): never kept or logged
        let mut why = why.replace(call.url.stream.as_str(), "***");
        why.truncate(why.floor_char_boundary(200));
        log::warn!(
            "REST call {}: RTMP session to {} failed: {why}; trying again in {} s",
            call.call_id,
            call.url.tc_url(),
            call.backoff.as_secs()
        );
        self.outputs
            .push_back(RtmpOutput::Close { conn: session.conn });
        call.rtmp_state = RtmpState::Retrying;
        call.rtmp_error = Some(why);
        call.retry_at = Some(now + call.backoff);
        call.backoff = (call.backoff * 2).min(RETRY_MAX);
    }

    /// Ends call `index`'s session cleanly (its `deleteStream` written first).
    fn close_session(&mut self, now: Instant, index: usize) {
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        // a call that ends while its stream is down (the last attempt failed, the next one
        // waits or runs) ends the stream FAILED, `rtmpError` saying why; else CLOSED
        call.rtmp_state = match call.rtmp_state {
            RtmpState::Retrying => RtmpState::Failed,
            RtmpState::Connecting if call.rtmp_error.is_some() => RtmpState::Failed,
            _ => RtmpState::Closed,
        };
        if let Some(mut session) = call.session.take() {
            if session.publisher.close().is_ok()
                && session.publisher.state() != crate::rtmp::State::Closed
            {
                self.closing.push((session, now + CLOSE_GRACE));
            } else {
                self.outputs
                    .push_back(RtmpOutput::Close { conn: session.conn });
            }
        }
    }
}

/// The format srgate decodes for codec `c` of the SIP side: (codec, PCM rate).
fn decodable(c: Codec) -> Option<(MediaCodec, SampleRate)> {
    let media = super::bridge::media_codec(c)?;
    let rate = match media {
        MediaCodec::Opus => SampleRate::Hz48000,
        MediaCodec::G711(_) => SampleRate::Hz8000,
        MediaCodec::G722 => SampleRate::Hz16000,
    };
    Some((media, rate))
}

impl Audio {
    #[cfg(feature = "aac")]
    fn new(codec: Codec, payload_type: u8, opus_complexity: u8) -> Result<Audio, String> {
        let (media, rate) = decodable(codec).ok_or("a codec srgate does not decode")?;
        let decode = Transcoder::new(crate::media::transcode::TranscoderConfig {
            input: media,
            input_payload_type: payload_type,
            // the encoder is not used: poll_pcm takes the decoded audio
            output: media,
            output_payload_type: payload_type,
            output_frame: TICK,
            pcm_rate: rate,
            opus_complexity,
            ssrc: 0,
            initial_sequence: 0,
            initial_timestamp: 0,
            jitter: crate::media::jitter::JitterConfig::new(media.clock_rate()),
        })
        .map_err(|e| e.to_string())?;
        let aac = AacEncoder::new(rate, crate::media::codec::aac::DEFAULT_BITRATE)
            .map_err(|e| e.to_string())?;
        Ok(Audio {
            decode,
            payload_type,
            aac,
            pcm: vec![0; rate.frame_samples()].into_boxed_slice(),
        })
    }

    #[cfg(not(feature = "aac"))]
    fn new(_: Codec, _: u8, _: u8) -> Result<Audio, String> {
        Err("srgate was built without AAC (feature aac)".into())
    }
}

mod audio;
mod events;
mod guard;
mod rest;
#[cfg(test)]
mod tests;
mod video;
