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
                earliest(publish, earliest(silence, self.dtmf.poll_timeout())),
            ),
        )
    }

    /// Where srgate's packets to the phone go: where its RTP comes from, else its SDP's
    /// address; none while it does not receive.
    fn destination(&self) -> Option<SocketAddr> {
        self.source.send_to(self.remote.as_ref()?)
    }

    /// The RFC 4733 packets due at `now`, into `out` (port, destination, packet).
    fn send_dtmf(&mut self, now: Instant, out: &mut VecDeque<(u16, SocketAddr, [u8; 16])>) {
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
                out.push_back((self.port, to, packet));
            }
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
    /// RFC 4733 packets for the phones: (srgate's port, destination, packet).
    out: VecDeque<(u16, SocketAddr, [u8; 16])>,
    /// Hook posts: (URL, JSON body).
    hooks: VecDeque<(HookUrl, String)>,
    /// A request, SIP event, timer or RTMP input came since the hooks were last looked at.
    touched: bool,
    outputs: VecDeque<RtmpOutput>,
    next_conn: u64,
}

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
        let closing = self.closing.iter().map(|(_, until)| *until).min();
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
            ts_base: None,
        });
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
        call.rtmp_state = RtmpState::Closed;
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

impl Calls {
    /// Carries out a REST request: the HTTP status and the JSON body of the answer.
    pub fn handle_rest(
        &mut self,
        now: Instant,
        request: RestRequest,
        ctx: &mut Ctx<'_>,
    ) -> (u16, String) {
        self.rtmp.touched = true;
        let result = match request {
            RestRequest::Startup(startup) => self.rest_startup(now, *startup, ctx),
            RestRequest::Terminate { call_id } => self.rest_terminate(now, &call_id, ctx),
            RestRequest::Find { call_id } => self.rest_find(now, &call_id),
            RestRequest::FindAll => {
                let mut all: Vec<CallInfo> = self.rtmp.calls.iter().map(|c| c.info(now)).collect();
                all.extend(self.rtmp.finished.iter().cloned());
                Ok(crate::rest::list_json(&all))
            }
            RestRequest::SendDtmf { call_id, dtmf } => self.rest_dtmf(now, &call_id, &dtmf, ctx),
        };
        match result {
            Ok(body) => (200, body),
            Err(e) => (e.status, e.json()),
        }
    }

    fn rest_startup(
        &mut self,
        now: Instant,
        startup: Startup,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, RestError> {
        let error = |status, code, message: &str| RestError {
            status,
            code,
            message: message.to_owned(),
        };
        if !cfg!(feature = "aac") {
            return Err(error(
                501,
                "NOT_SUPPORTED",
                "srgate was built without AAC (feature aac): no RTMP publishing",
            ));
        }
        if startup.sip.is_some() {
            return Err(error(
                501,
                "NOT_SUPPORTED",
                "sipLogin/sipDomain/sipOutboundProxy: per-call SIP accounts are not supported; \
                 leave them out and the call goes out from the [proxy] account (standalone: \
                 to a registered [users] phone)",
            ));
        }
        if self.rtmp.by_call_id(&startup.call_id).is_some() {
            return Err(error(409, "DUPLICATE", "callId: a call with this id is up"));
        }
        if self.rtmp.calls.len() >= MAX_RTMP_CALLS {
            return Err(error(503, "TOO_MANY_CALLS", "too many REST calls at once"));
        }
        let call_id = startup.call_id.clone();
        let callee = startup.callee.clone();
        let fail = |this: &mut Calls, code: u16, reason: &str| {
            // a new call under an id that ended before replaces its record
            this.rtmp.finished.retain(|c| c.call_id != call_id);
            this.record_attempt(now, CALLER, &callee, "rest_to_sip", Some(code), reason);
            let info = CallInfo {
                call_id: call_id.clone(),
                callee: callee.clone(),
                state: CallState::Failed,
                sip_code: Some(code),
                reason: Some(reason.to_owned()),
                rtmp_url: startup.rtmp_url.tc_url(),
                rtmp_state: RtmpState::Closed,
                rtmp_error: None,
                rtmp_reconnects: 0,
                packets_in: 0,
                aac_frames: 0,
                duration_ms: 0,
            };
            let body = info.json().to_string();
            this.keep_finished(info);
            Ok(body)
        };
        if self.cfg.standalone && !ctx.sip.can_reach(now, &callee) {
            log::info!(
                "REST call {call_id} to {}: not registered → FAILED",
                crate::pii::Pii(&callee)
            );
            return fail(self, 480, "NOT_REGISTERED");
        }
        let Some(port) = ctx.ports.open() else {
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("REST call {call_id}: no free port in [media] rtp_ports");
            return Err(error(503, "OVERLOADED", "no free RTP port"));
        };
        let formats: Vec<(u8, Codec)> = self
            .sip_offer_formats(None)
            .into_iter()
            .filter(|(_, c)| decodable(*c).is_some())
            .collect();
        let sdp = build_rtp_sdp(&RtpDescription {
            addr: SocketAddr::new(self.cfg.rtp_ip, port),
            codecs: &formats,
            telephone_event: Some(super::TELEPHONE_EVENT_PT),
            direction: Direction::SendRecv,
            session_id: self.session_id(),
            version: 1,
            ptime: 20,
            crypto: &[],
        });
        let sip = SipCallId(self.next_sip);
        self.next_sip += 1;
        let ids = self.stream_ids();
        let outgoing = OutgoingCall {
            id: sip,
            callee: callee.clone(),
            caller: CALLER.into(),
            display_name: None,
            sdp,
            headers: Vec::new(),
            reach: if self.cfg.standalone {
                Reach::Phone
            } else {
                Reach::GroupOrPhone
            },
        };
        if let Err(e) = ctx.sip.start_call(now, outgoing) {
            ctx.ports.close(port);
            let (code, reason) = super::link::refusal_of(&e);
            log::info!("REST call {call_id}: SIP call not started ({e:?})");
            return fail(self, code, reason);
        }
        self.metrics.sip_invites_out += 1;
        self.rtmp.finished.retain(|c| c.call_id != call_id);
        log::info!(
            "REST call {call_id} to {}: calling, RTP port {port}, publishing to {}",
            crate::pii::Pii(&callee),
            startup.rtmp_url.tc_url()
        );
        self.rtmp.calls.push(RtmpCall {
            call_id,
            callee,
            url: startup.rtmp_url,
            sip,
            sip_alive: true,
            port,
            state: CallState::New,
            sip_code: None,
            reason: None,
            started: now,
            answered: None,
            deadline: Some(now + self.cfg.invitation_timeout),
            source: RtpSource::default(),
            remote: None,
            codec: None,
            audio: None,
            session: None,
            rtmp_state: RtmpState::Connecting,
            rtmp_error: None,
            reconnects: 0,
            retry_at: None,
            backoff: RETRY_FIRST,
            next_tick: None,
            packets_in: 0,
            refused: 0,
            aac_frames: 0,
            frames_dropped: 0,
            last_rtp: now,
            rtp_timeout: self.cfg.rtp_timeout,
            dtmf: DtmfSender::new(8000),
            te_pt: None,
            ssrc: ids.ssrc_sip,
            seq: ids.seq_sip,
            ts_base: ids.ts_sip,
            event_ts: 0,
            hook: startup.hook_url.or_else(|| self.cfg.rest_hook.clone()),
            notified: None,
        });
        let index = self.rtmp.calls.len() - 1;
        let seed = u64::from_be_bytes(self.rng.bytes::<8>());
        self.rtmp.connect(now, index, seed);
        Ok(self.rtmp.calls[index].info(now).json().to_string())
    }

    fn rest_find(&self, now: Instant, call_id: &str) -> Result<String, RestError> {
        if let Some(i) = self.rtmp.by_call_id(call_id) {
            return Ok(self.rtmp.calls[i].info(now).json().to_string());
        }
        self.rtmp
            .finished
            .iter()
            .rev()
            .find(|c| c.call_id == call_id)
            .map(|c| c.json().to_string())
            .ok_or_else(unknown_call)
    }

    fn rest_terminate(
        &mut self,
        now: Instant,
        call_id: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, RestError> {
        let Some(index) = self.rtmp.by_call_id(call_id) else {
            return Err(unknown_call());
        };
        let code = if self.rtmp.calls[index].answered.is_some() {
            None
        } else {
            Some(487)
        };
        let info = self.end_rtmp(now, index, code, "TERMINATED", ctx);
        Ok(info.json().to_string())
    }

    fn rest_dtmf(
        &mut self,
        now: Instant,
        call_id: &str,
        dtmf: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, RestError> {
        let Some(index) = self.rtmp.by_call_id(call_id) else {
            return Err(unknown_call());
        };
        let call = &self.rtmp.calls[index];
        if call.state != CallState::Established {
            return Err(RestError {
                status: 409,
                code: "NOT_ESTABLISHED",
                message: "callId: the call is not answered yet".into(),
            });
        }
        if call.te_pt.is_some() && call.destination().is_some() {
            // RFC 4733 events on srgate's stream toward the phone
            let call = &mut self.rtmp.calls[index];
            if call.dtmf.queue(now, dtmf).is_err() {
                return Err(RestError {
                    status: 409,
                    code: "DTMF_BUSY",
                    message: format!(
                        "dtmf: more than {} digits would wait",
                        crate::media::dtmf::MAX_QUEUED
                    ),
                });
            }
        } else {
            // the phone takes no telephone-event: SIP INFO, one request a digit
            for digit in dtmf.chars() {
                ctx.sip.info(now, call.sip, digit, 160);
            }
        }
        let call = &self.rtmp.calls[index];
        Ok(call.info(now).json().to_string())
    }

    fn keep_finished(&mut self, info: CallInfo) {
        if self.rtmp.finished.len() >= FINISHED_KEPT {
            self.rtmp.finished.pop_front();
        }
        self.rtmp.finished.push_back(info);
    }

    /// Ends REST call `index`: BYE or CANCEL (when its SIP leg is still there), the
    /// stream closed, the port freed, its record written; returns its last state.
    fn end_rtmp(
        &mut self,
        now: Instant,
        index: usize,
        code: Option<u16>,
        reason: &str,
        ctx: &mut Ctx<'_>,
    ) -> CallInfo {
        self.rtmp.close_session(now, index);
        let mut call = self.rtmp.calls.swap_remove(index);
        if call.sip_alive {
            ctx.sip.hangup(now, call.sip);
            call.sip_alive = false;
        }
        ctx.ports.close(call.port);
        call.state = if call.answered.is_some() {
            CallState::Finished
        } else {
            CallState::Failed
        };
        call.sip_code = call.sip_code.or(code);
        call.reason = Some(reason.to_owned());
        let info = call.info(now);
        self.metrics.ended += 1;
        let end_ms = self.unix_ms(now);
        let answer_ms = call.answered.map(|a| self.unix_ms(a));
        log::info!(
            "REST call {} to {} ended ({reason}): SIP RTP in {}, refused {}, AAC frames {} ({} not sent), RTMP reconnects {}",
            call.call_id,
            crate::pii::Pii(&call.callee),
            call.packets_in,
            call.refused,
            call.aac_frames,
            call.frames_dropped,
            call.reconnects
        );
        self.cdrs.push_back(Cdr::from_value(json!({
            "call": call.call_id,
            "user": CALLER,
            "peer": call.callee,
            "direction": "rest_to_sip",
            "start": self.unix_ms(call.started),
            "answer": answer_ms,
            "end": end_ms,
            "duration_ms": answer_ms.map(|a| end_ms.saturating_sub(a)),
            "sip_code": call.sip_code.or(answer_ms.map(|_| 200)),
            "reason": reason,
            "codec_webrtc": null,
            "codec_sip": call.codec.map(|c| c.encoding_name()),
            "mode": "rtmp",
            "rtmp": {"url": call.url.tc_url(), "aac_frames": call.aac_frames,
                     "frames_not_sent": call.frames_dropped,
                     "reconnects": call.reconnects, "error": call.rtmp_error},
            "sip": {"rtp_in": call.packets_in, "refused": call.refused, "rtp_port": call.port},
        })));
        if let Some(hook) = call.hook.take() {
            self.rtmp.hooks.push_back((hook, hook_body(&info)));
        }
        self.keep_finished(info.clone());
        info
    }

    /// A SIP event of a REST call's leg; whether it was one.
    pub(super) fn rtmp_sip_event(
        &mut self,
        now: Instant,
        event: &SipEvent,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(index) = event.call_id().and_then(|id| self.rtmp.by_sip(id)) else {
            return false;
        };
        self.rtmp.touched = true;
        let call = &mut self.rtmp.calls[index];
        match event {
            SipEvent::CallProgress { .. } if call.state == CallState::New => {
                call.state = CallState::Ringing;
            }
            SipEvent::CallAnswered { sdp, .. } => {
                let answered = parse_rtp_sdp(sdp)
                    .map_err(|e| e.to_string())
                    .and_then(|remote| {
                        if remote.crypto.is_some() {
                            return Err("SRTP answer to an RTP offer".to_owned());
                        }
                        let (pt, codec) = remote
                            .codecs
                            .iter()
                            .copied()
                            .find(|(_, c)| decodable(*c).is_some())
                            .ok_or("no codec srgate decodes in the answer")?;
                        let audio = Audio::new(codec, pt, self.cfg.opus_complexity)?;
                        Ok((remote, codec, audio))
                    });
                match answered {
                    Ok((remote, codec, audio)) => {
                        call.te_pt = remote.telephone_event;
                        call.source.set_expected(remote.addr);
                        call.remote = Some(remote);
                        call.codec = Some(codec);
                        call.audio = Some(audio);
                        call.state = CallState::Established;
                        call.sip_code = Some(200);
                        call.answered = Some(now);
                        call.deadline = None;
                        call.last_rtp = now;
                        call.next_tick = Some(now + TICK);
                        self.metrics.transcoded += 1;
                        log::info!(
                            "REST call {}: answered ({})",
                            call.call_id,
                            codec.encoding_name()
                        );
                    }
                    Err(why) => {
                        log::info!("REST call {}: answer unusable: {why}", call.call_id);
                        self.end_rtmp(now, index, Some(488), "ERROR", ctx);
                    }
                }
            }
            SipEvent::CallUpdated { sdp, .. } => match parse_rtp_sdp(sdp) {
                Ok(remote) => {
                    call.source.set_expected(remote.addr);
                    call.remote = Some(remote);
                    call.last_rtp = now;
                }
                Err(e) => log::info!("re-offer of REST call {}: {e}", call.call_id),
            },
            SipEvent::CallFailed { code, reason, .. } => {
                log::info!(
                    "REST call {}: the phone answered {code} {reason}",
                    call.call_id
                );
                call.sip_alive = false;
                call.sip_code = Some(*code);
                self.end_rtmp(now, index, Some(*code), "REMOTE", ctx);
            }
            SipEvent::CallEnded { code, .. } => {
                call.sip_alive = false;
                let reason = if code.is_some() { "TIMEOUT" } else { "REMOTE" };
                self.end_rtmp(now, index, *code, reason, ctx);
            }
            _ => {}
        }
        true
    }

    /// A datagram on a REST call's port (RTP, or RTCP on port + 1); whether it was one.
    pub(super) fn rtmp_rtp(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(call) = self
            .rtmp
            .calls
            .iter_mut()
            .find(|c| c.port == port || c.port.wrapping_add(1) == port)
        else {
            return false;
        };
        if port != call.port {
            if !call.source.admits_rtcp(from) {
                call.refused += 1;
            }
            return true;
        }
        let Some(audio) = call.audio.as_mut() else {
            return true; // before the answer: nowhere to go yet
        };
        if !call.source.admits(from) {
            call.refused += 1;
            return true;
        }
        let Ok(packet) = crate::wire::rtp::Packet::new_checked(data) else {
            call.refused += 1;
            return true;
        };
        if packet.payload_type() != audio.payload_type {
            // telephone-event, comfort noise: not published
            call.source.latch(from);
            call.last_rtp = now;
            return true;
        }
        call.source.latch(from);
        call.last_rtp = now;
        call.packets_in += 1;
        if audio.decode.push_rtp(now, data).is_err() {
            call.refused += 1;
        }
        true
    }

    /// The REST calls' timers: audio ticks, the stream's start and retries, the
    /// invitation and RTP timeouts, closing sessions.
    pub(super) fn rtmp_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let rtmp = &mut self.rtmp;
        rtmp.touched |= !rtmp.calls.is_empty();
        let before = rtmp.closing.len();
        rtmp.closing.retain(|(s, until)| {
            let done = s.publisher.state() == crate::rtmp::State::Closed || *until <= now;
            if done {
                rtmp.outputs.push_back(RtmpOutput::Close { conn: s.conn });
            }
            !done
        });
        if rtmp.closing.len() != before {
            rtmp.closing.shrink_to(MAX_RTMP_CALLS);
        }
        let mut index = 0;
        while index < self.rtmp.calls.len() {
            let call = &self.rtmp.calls[index];
            if call.deadline.is_some_and(|d| d <= now) {
                log::info!("REST call {}: no answer in time", call.call_id);
                self.end_rtmp(now, index, Some(408), "NO_ANSWER", ctx);
                continue;
            }
            if call.answered.is_some()
                && call.sends()
                && now.saturating_duration_since(call.last_rtp) >= call.rtp_timeout
            {
                log::info!(
                    "REST call {}: no RTP for {:?}",
                    call.call_id,
                    call.rtp_timeout
                );
                self.end_rtmp(now, index, None, "RTP_TIMEOUT", ctx);
                continue;
            }
            if call.retry_at.is_some_and(|t| t <= now) {
                let seed = u64::from_be_bytes(self.rng.bytes::<8>());
                self.rtmp.calls[index].reconnects += 1;
                self.rtmp.connect(now, index, seed);
            }
            let call = &self.rtmp.calls[index];
            if let Some(s) = &call.session
                && s.publisher.state() != crate::rtmp::State::Publishing
                && s.opened + PUBLISH_TIMEOUT <= now
            {
                self.rtmp
                    .session_failed(now, index, "not publishing in time".into());
            }
            self.rtmp.tick(now, index);
            let RtmpCalls { calls, out, .. } = &mut self.rtmp;
            calls[index].send_dtmf(now, out);
            index += 1;
        }
    }

    /// The next RFC 4733 packet of a REST call for its phone, written into `buf`.
    pub(super) fn rtmp_transmit_rtp(&mut self, buf: &mut [u8]) -> Option<super::MediaTransmit> {
        let (port, destination, packet) = self.rtmp.out.pop_front()?;
        let len = packet.len().min(buf.len());
        buf[..len].copy_from_slice(&packet[..len]);
        Some(super::MediaTransmit {
            socket: super::MediaSocket::Rtp(port),
            destination,
            len,
        })
    }

    /// The next post to a REST call's hook: (URL, JSON body).
    pub fn poll_rest_hook(&mut self, now: Instant) -> Option<(HookUrl, String)> {
        self.rtmp.notify_changes(now);
        self.rtmp.hooks.pop_front()
    }

    /// The next command of the RTMP sessions for the shell.
    pub fn poll_rtmp_output(&mut self) -> Option<RtmpOutput> {
        self.rtmp.outputs.pop_front()
    }

    /// Bytes connection `conn` should write now.
    pub fn rtmp_transmit(&self, conn: u64) -> Option<&[u8]> {
        self.rtmp
            .calls
            .iter()
            .filter_map(|c| c.session.as_ref())
            .chain(self.rtmp.closing.iter().map(|(s, _)| s))
            .find(|s| s.conn == conn)
            .and_then(|s| s.publisher.poll_transmit())
    }

    /// `n` bytes of [`Calls::rtmp_transmit`] were written.
    pub fn rtmp_advance(&mut self, conn: u64, n: usize) {
        if let Some(s) = self.rtmp.session_mut(conn) {
            s.publisher.advance_transmit(n);
        }
    }

    /// Bytes read on connection `conn`.
    pub fn rtmp_input(&mut self, now: Instant, conn: u64, bytes: &[u8]) {
        self.rtmp.touched = true;
        if let Some(s) = self.rtmp.session_mut(conn) {
            let _ = s.publisher.handle_input(bytes);
        }
        self.rtmp_events(now, conn);
    }

    /// Connection `conn` closed, or could not be opened (`why`).
    pub fn rtmp_closed(&mut self, now: Instant, conn: u64, why: Option<String>) {
        self.rtmp.touched = true;
        if let Some(i) = self.rtmp.closing.iter().position(|(s, _)| s.conn == conn) {
            self.rtmp.closing.swap_remove(i);
            return;
        }
        let Some(index) = self.rtmp.by_conn(conn) else {
            return;
        };
        let why = why.unwrap_or_else(|| "the RTMP server closed the connection".into());
        self.rtmp.session_failed(now, index, why);
    }

    /// What connection `conn`'s session says after its input.
    fn rtmp_events(&mut self, now: Instant, conn: u64) {
        let Some(index) = self.rtmp.by_conn(conn) else {
            return;
        };
        // a session gives a handful of events per input
        for _ in 0..16 {
            let call = &mut self.rtmp.calls[index];
            let Some(session) = call.session.as_mut() else {
                return;
            };
            let Some(event) = session.publisher.poll_event() else {
                return;
            };
            match event {
                RtmpEvent::Connected => {}
                RtmpEvent::Publishing => {
                    log::info!(
                        "REST call {}: publishing to {}",
                        call.call_id,
                        call.url.tc_url()
                    );
                    call.rtmp_state = RtmpState::Publishing;
                    call.backoff = RETRY_FIRST;
                }
                RtmpEvent::Error(e) => {
                    return self.rtmp.session_failed(now, index, e.to_string());
                }
                RtmpEvent::Closed => {
                    return self.rtmp.session_failed(
                        now,
                        index,
                        "the RTMP server ended the session".into(),
                    );
                }
            }
        }
    }
}

#[cfg(feature = "aac")]
impl RtmpCalls {
    /// Call `index`'s audio ticks due at `now`: one 20 ms frame each (the phone's audio,
    /// or silence), encoded, sent while the stream publishes.
    fn tick(&mut self, now: Instant, index: usize) {
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        let Some(mut next) = call.next_tick else {
            return;
        };
        let mut ticks = 0;
        while next <= now {
            if ticks == MAX_CATCH_UP {
                // far behind (the loop stalled): the timeline goes on from now
                next = now + TICK;
                break;
            }
            ticks += 1;
            next += TICK;
            let Some(audio) = call.audio.as_mut() else {
                break;
            };
            let pushed = match audio.decode.poll_pcm(now, &mut audio.pcm) {
                Some(_) => audio.aac.push_pcm(&audio.pcm),
                None => audio.aac.push_silence(),
            };
            if pushed.is_err() {
                call.frames_dropped += 1;
                continue;
            }
            let mut asc = [0u8; 8];
            let config = audio.aac.audio_specific_config();
            let asc_len = config.len().min(asc.len());
            asc[..asc_len].copy_from_slice(&config[..asc_len]);
            while let Some(frame) = audio.aac.poll_frame() {
                let Ok(frame) = frame else {
                    call.frames_dropped += 1;
                    continue;
                };
                call.aac_frames += 1;
                let Some(session) = call.session.as_mut() else {
                    call.frames_dropped += 1;
                    continue;
                };
                if session.publisher.state() != crate::rtmp::State::Publishing {
                    call.frames_dropped += 1;
                    continue;
                }
                if !session.header_sent {
                    let _ = session.publisher.send_metadata(&[
                        ("audiocodecid", crate::rtmp::FLV_AUDIO_AAC),
                        ("audiosamplerate", 48_000.0),
                        ("audiosamplesize", 16.0),
                        ("audiochannels", 1.0),
                        ("stereo", 0.0),
                    ]);
                    let _ = session
                        .publisher
                        .send_audio(0, &[&crate::rtmp::AAC_SEQUENCE_HEADER, &asc[..asc_len]]);
                    session.header_sent = true;
                }
                let ms = frame.timestamp_ms();
                let base = *session.ts_base.get_or_insert(ms);
                let sent = session
                    .publisher
                    .send_audio(ms.wrapping_sub(base), &[&crate::rtmp::AAC_RAW, frame.data]);
                if sent.is_err() {
                    // the server reads too slowly: dropped, as a live stream would
                    call.frames_dropped += 1;
                }
            }
        }
        call.next_tick = Some(next);
    }
}

#[cfg(not(feature = "aac"))]
impl RtmpCalls {
    fn tick(&mut self, _: Instant, _: usize) {}
}

fn unknown_call() -> RestError {
    RestError {
        status: 404,
        code: "UNKNOWN_CALL",
        message: "callId: no such call".into(),
    }
}

impl Calls {
    /// Ends every REST call (shutdown).
    pub(super) fn end_rtmp_calls(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        while !self.rtmp.calls.is_empty() {
            self.end_rtmp(now, 0, Some(503), "SHUTDOWN", ctx);
        }
    }
}
