//! The publishing client's session: handshake, `connect`, `releaseStream`, `FCPublish`,
//! `createStream`, `publish` (live), FLV audio and video messages, and `FCUnpublish` plus
//! `deleteStream` at the end — the sequence FMLE, OBS and ffmpeg send, which nginx-rtmp,
//! SRS, YouTube and Facebook expect.
//!
//! Every byte the server sends is untrusted: it is staged in a buffer of fixed size, read
//! chunk by chunk with the limits of [`super::chunk`], and any violation ends the session
//! with a typed [`RtmpError`]. The output buffer is fixed too; media that does not fit is
//! [`RtmpError::Chunk`]`(`[`ChunkError::BufferFull`]`)` and the caller decides (drop the
//! frame, or close). Control answers (acknowledgements, ping replies) keep a reserve of
//! that buffer, so a backlog of media never blocks them.

use std::collections::VecDeque;

use super::amf::{AmfError, AmfWriter, Reader, Value};
use super::chunk::{
    ChunkError, ChunkReader, ChunkWriter, MAX_HEADER, MAX_IN_MESSAGE, MessageHeader, Read,
};
use super::handshake::{Handshake, PACKET};
use super::{Event, RtmpError};

/// Our chunk size, announced right after the handshake.
pub const CHUNK_SIZE: u32 = 4096;

/// Default size of the output buffer: a few seconds of audio, or a keyframe or two.
pub const DEFAULT_OUT_CAPACITY: usize = 256 * 1024;

/// Part of the output buffer only control messages may use.
const CONTROL_RESERVE: usize = 4096;

/// Staged input: one whole chunk (header and the largest payload) or the server's
/// handshake (S0, S1 and S2).
const STAGE_CAPACITY: usize = if MAX_HEADER + MAX_IN_MESSAGE > 1 + 2 * PACKET {
    MAX_HEADER + MAX_IN_MESSAGE
} else {
    1 + 2 * PACKET
};

/// Longest text kept from a server's error description.
const MAX_REASON: usize = 200;

// message types (§5.4, §7.1)
const SET_CHUNK_SIZE: u8 = 1;
const ABORT: u8 = 2;
const ACKNOWLEDGEMENT: u8 = 3;
const USER_CONTROL: u8 = 4;
const WINDOW_ACK_SIZE: u8 = 5;
const SET_PEER_BANDWIDTH: u8 = 6;
const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
const DATA_AMF0: u8 = 18;
const COMMAND_AMF3: u8 = 17;
const COMMAND_AMF0: u8 = 20;

// chunk streams, as ffmpeg and OBS lay them out
const CSID_CONTROL: u8 = 2;
const CSID_COMMAND: u8 = 3;
const CSID_AUDIO: u8 = 4;
const CSID_VIDEO: u8 = 6;
const CSID_STREAM: u8 = 8;

// transaction ids of our commands
const TX_CONNECT: f64 = 1.0;
const TX_RELEASE: f64 = 2.0;
const TX_FCPUBLISH: f64 = 3.0;
const TX_CREATE_STREAM: f64 = 4.0;
const TX_PUBLISH: f64 = 5.0;
const TX_FCUNPUBLISH: f64 = 6.0;
const TX_DELETE_STREAM: f64 = 7.0;

const PING_REQUEST: u16 = 6;
const PING_RESPONSE: u16 = 7;

/// What the publisher needs to know before it starts.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// `connect`'s `app`.
    pub app: String,
    /// `connect`'s `tcUrl` ([`super::RtmpUrl::tc_url`]).
    pub tc_url: String,
    /// The stream name published.
    pub stream: String,
    /// `connect`'s `flashVer`: the encoder's name, as services log it.
    pub flash_ver: String,
    /// Filler for the handshake (any value; the caller's random source).
    pub seed: u64,
    /// Output buffer size in bytes (at least 16 KiB).
    pub out_capacity: usize,
}

impl PublisherConfig {
    pub fn new(url: &super::RtmpUrl, seed: u64) -> Self {
        PublisherConfig {
            app: url.app.clone(),
            tc_url: url.tc_url(),
            stream: url.stream.clone(),
            flash_ver: format!(
                "FMLE/3.0 (compatible; srgate/{})",
                env!("CARGO_PKG_VERSION")
            ),
            seed,
            out_capacity: DEFAULT_OUT_CAPACITY,
        }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Handshaking,
    /// `connect` sent.
    Connecting,
    /// `releaseStream`, `FCPublish` and `createStream` sent.
    CreatingStream,
    /// `publish` sent on the message stream.
    Starting,
    /// The server said `NetStream.Publish.Start`: media may be sent.
    Publishing,
    /// `FCUnpublish` and `deleteStream` queued; waiting for them to be written.
    Closing,
    Closed,
    Failed,
}

/// An RTMP publisher without I/O: feed it the server's bytes with
/// [`handle_input`](Self::handle_input), write what [`poll_transmit`](Self::poll_transmit)
/// gives and confirm it with [`advance_transmit`](Self::advance_transmit), and read
/// [`poll_event`](Self::poll_event). It keeps no timers: connect and idle timeouts are the
/// shell's.
pub struct Publisher {
    config: PublisherConfig,
    state: State,
    handshake: Handshake,
    writer: ChunkWriter,
    reader: ChunkReader,
    out: Vec<u8>,
    out_start: usize,
    staged: Vec<u8>,
    scratch: Vec<u8>,
    events: VecDeque<Event>,
    stream_id: u32,
    bytes_in: u64,
    acked: u64,
    ack_window: u32,
    our_window: u32,
}

impl Publisher {
    /// A session whose C0 and C1 are ready to be written.
    pub fn new(config: PublisherConfig) -> Publisher {
        let capacity = config.out_capacity.max(16 * 1024);
        let mut out = Vec::with_capacity(capacity);
        let handshake = Handshake::start(&mut out, config.seed);
        Publisher {
            config: PublisherConfig {
                out_capacity: capacity,
                ..config
            },
            state: State::Handshaking,
            handshake,
            writer: ChunkWriter::default(),
            reader: ChunkReader::default(),
            out,
            out_start: 0,
            staged: Vec::with_capacity(STAGE_CAPACITY),
            scratch: Vec::with_capacity(MAX_IN_MESSAGE),
            events: VecDeque::with_capacity(8),
            stream_id: 0,
            bytes_in: 0,
            acked: 0,
            ack_window: 0,
            our_window: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The message stream id the server gave (0 until `createStream` was answered).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Bytes waiting to be written to the server, if any.
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        let pending = &self.out[self.out_start..];
        (!pending.is_empty()).then_some(pending)
    }

    /// `n` bytes of [`poll_transmit`](Self::poll_transmit) were written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
            if self.state == State::Closing {
                self.state = State::Closed;
                self.events.push_back(Event::Closed);
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds bytes read from the server. An error ends the session (it is also reported
    /// as [`Event::Error`]); input after the end is ignored.
    pub fn handle_input(&mut self, mut input: &[u8]) -> Result<(), RtmpError> {
        if matches!(self.state, State::Closed | State::Failed) {
            return Ok(());
        }
        self.bytes_in += input.len() as u64;
        while !input.is_empty() {
            let room = STAGE_CAPACITY - self.staged.len();
            let take = room.min(input.len());
            self.staged.extend_from_slice(&input[..take]);
            input = &input[take..];
            let result = self.process_staged();
            self.fail_on(result)?;
            if self.staged.len() == STAGE_CAPACITY {
                // cannot happen with the chunk limits; kept so no input can wedge it
                return self.fail_on(Err(RtmpError::Chunk(ChunkError::MessageTooLarge(
                    STAGE_CAPACITY as u32,
                ))));
            }
        }
        let result = self.acknowledge();
        self.fail_on(result)
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self) {
        match self.state {
            State::Closing | State::Closed | State::Failed => {
                if self.state != State::Closed {
                    self.state = State::Closed;
                    self.events.push_back(Event::Closed);
                }
            }
            _ => {
                let _ = self.fail_on(Err(RtmpError::ConnectionClosed));
            }
        }
    }

    /// Sends one FLV audio tag body (e.g. `[0xAF, 1]` and a raw AAC frame) as an audio
    /// message at `timestamp` milliseconds.
    pub fn send_audio(&mut self, timestamp: u32, parts: &[&[u8]]) -> Result<(), RtmpError> {
        self.send_media(CSID_AUDIO, AUDIO, timestamp, parts)
    }

    /// Sends one FLV video tag body as a video message at `timestamp` milliseconds.
    pub fn send_video(&mut self, timestamp: u32, parts: &[&[u8]]) -> Result<(), RtmpError> {
        self.send_media(CSID_VIDEO, VIDEO, timestamp, parts)
    }

    /// Sends `@setDataFrame onMetaData` with numeric properties (`audiocodecid` and so on).
    pub fn send_metadata(&mut self, properties: &[(&str, f64)]) -> Result<(), RtmpError> {
        if self.state != State::Publishing {
            return Err(RtmpError::NotPublishing);
        }
        let stream_id = self.stream_id;
        let limit = self.media_limit();
        self.command(CSID_STREAM, stream_id, DATA_AMF0, limit, |w| {
            w.string("@setDataFrame")?;
            w.string("onMetaData")?;
            w.object_start()?;
            for (key, value) in properties {
                w.property_number(key, *value)?;
            }
            w.object_end()
        })
    }

    /// Ends the publication: `FCUnpublish` and `deleteStream`, then [`Event::Closed`] once
    /// they are written. Before publishing started, the session just closes.
    pub fn close(&mut self) -> Result<(), RtmpError> {
        match self.state {
            State::Starting | State::Publishing => {
                let stream = self.config.stream.clone();
                let stream_id = self.stream_id;
                let limit = self.config.out_capacity;
                self.command(CSID_COMMAND, 0, COMMAND_AMF0, limit, |w| {
                    w.string("FCUnpublish")?;
                    w.number(TX_FCUNPUBLISH)?;
                    w.null()?;
                    w.string(&stream)
                })?;
                self.command(CSID_COMMAND, 0, COMMAND_AMF0, limit, |w| {
                    w.string("deleteStream")?;
                    w.number(TX_DELETE_STREAM)?;
                    w.null()?;
                    w.number(f64::from(stream_id))
                })?;
                self.state = State::Closing;
                if self.poll_transmit().is_none() {
                    self.advance_transmit(0);
                }
            }
            State::Closing | State::Closed | State::Failed => {}
            _ => {
                self.state = State::Closed;
                self.events.push_back(Event::Closed);
            }
        }
        Ok(())
    }

    fn fail_on(&mut self, result: Result<(), RtmpError>) -> Result<(), RtmpError> {
        if let Err(e) = &result
            && !matches!(self.state, State::Closed | State::Failed)
        {
            self.state = State::Failed;
            self.events.push_back(Event::Error(e.clone()));
        }
        result
    }

    fn media_limit(&self) -> usize {
        self.config.out_capacity - CONTROL_RESERVE
    }

    fn send_media(
        &mut self,
        csid: u8,
        type_id: u8,
        timestamp: u32,
        parts: &[&[u8]],
    ) -> Result<(), RtmpError> {
        if self.state != State::Publishing {
            return Err(RtmpError::NotPublishing);
        }
        self.compact();
        let header = MessageHeader {
            timestamp,
            type_id,
            stream_id: self.stream_id,
        };
        let limit = self.media_limit();
        self.writer
            .write(&mut self.out, limit, csid, header, parts)
            .map_err(RtmpError::Chunk)
    }

    fn compact(&mut self) {
        if self.out_start > 0 {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// Writes one control message (chunk stream 2, message stream 0).
    fn control(&mut self, type_id: u8, body: &[u8]) -> Result<(), RtmpError> {
        self.compact();
        let header = MessageHeader {
            timestamp: 0,
            type_id,
            stream_id: 0,
        };
        let limit = self.config.out_capacity;
        self.writer
            .write(&mut self.out, limit, CSID_CONTROL, header, &[body])
            .map_err(RtmpError::Chunk)
    }

    /// Writes one AMF0 command (or data message) built by `build`.
    fn command(
        &mut self,
        csid: u8,
        stream_id: u32,
        type_id: u8,
        limit: usize,
        build: impl FnOnce(&mut AmfWriter<'_>) -> Result<(), AmfError>,
    ) -> Result<(), RtmpError> {
        self.compact();
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        let built = build(&mut AmfWriter::new(&mut body, MAX_IN_MESSAGE));
        let header = MessageHeader {
            timestamp: 0,
            type_id,
            stream_id,
        };
        let written = built.map_err(RtmpError::Amf).and_then(|()| {
            self.writer
                .write(&mut self.out, limit, csid, header, &[&body])
                .map_err(RtmpError::Chunk)
        });
        self.scratch = body;
        written
    }

    fn process_staged(&mut self) -> Result<(), RtmpError> {
        let mut pos = 0;
        let result = loop {
            if self.handshake != Handshake::Done {
                self.compact();
                if self.out.len() + PACKET > self.config.out_capacity {
                    break Err(RtmpError::Chunk(ChunkError::BufferFull));
                }
                match self.handshake.read(&self.staged[pos..], &mut self.out) {
                    Ok(0) => break Ok(()),
                    Ok(n) => pos += n,
                    Err(e) => break Err(RtmpError::Handshake(e)),
                }
                if self.handshake == Handshake::Done
                    && let Err(e) = self.start_connect()
                {
                    break Err(e);
                }
                continue;
            }
            match self.reader.read(&self.staged[pos..]) {
                Ok(Read::NeedMore) => break Ok(()),
                Ok(Read::Chunk { consumed, complete }) => {
                    pos += consumed;
                    if let Some(slot) = complete {
                        if let Err(e) = self.on_message(slot) {
                            break Err(e);
                        }
                        if matches!(self.state, State::Failed | State::Closed) {
                            break Ok(());
                        }
                    }
                }
                Err(e) => break Err(RtmpError::Chunk(e)),
            }
        };
        self.staged.drain(..pos);
        result
    }

    fn start_connect(&mut self) -> Result<(), RtmpError> {
        self.control(SET_CHUNK_SIZE, &CHUNK_SIZE.to_be_bytes())?;
        self.writer
            .set_chunk_size(CHUNK_SIZE)
            .map_err(RtmpError::Chunk)?;
        let config = self.config.clone();
        let limit = self.config.out_capacity;
        self.command(CSID_COMMAND, 0, COMMAND_AMF0, limit, |w| {
            w.string("connect")?;
            w.number(TX_CONNECT)?;
            w.object_start()?;
            w.property_string("app", &config.app)?;
            w.property_string("type", "nonprivate")?;
            w.property_string("flashVer", &config.flash_ver)?;
            w.property_string("tcUrl", &config.tc_url)?;
            w.object_end()
        })?;
        self.state = State::Connecting;
        Ok(())
    }

    fn acknowledge(&mut self) -> Result<(), RtmpError> {
        if self.ack_window > 0
            && self.handshake == Handshake::Done
            && self.bytes_in - self.acked >= u64::from(self.ack_window)
        {
            self.acked = self.bytes_in;
            // the sequence number wraps at 32 bits like every RTMP byte count
            let count = self.bytes_in as u32;
            self.control(ACKNOWLEDGEMENT, &count.to_be_bytes())?;
        }
        Ok(())
    }

    fn on_message(&mut self, slot: usize) -> Result<(), RtmpError> {
        let Some((header, body)) = self.reader.message(slot) else {
            return Ok(());
        };
        let mut msg = std::mem::take(&mut self.scratch);
        msg.clear();
        msg.extend_from_slice(body);
        let result = self.dispatch(header.type_id, &msg);
        self.scratch = msg;
        result
    }

    fn dispatch(&mut self, type_id: u8, body: &[u8]) -> Result<(), RtmpError> {
        let be32 = |b: &[u8]| {
            b.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match type_id {
            SET_CHUNK_SIZE => {
                let size = be32(body).ok_or(RtmpError::Malformed("Set Chunk Size"))?;
                self.reader
                    .set_chunk_size(size & 0x7FFF_FFFF)
                    .map_err(RtmpError::Chunk)
            }
            ABORT => {
                let csid = be32(body).ok_or(RtmpError::Malformed("Abort"))?;
                self.reader.abort(csid);
                Ok(())
            }
            WINDOW_ACK_SIZE => {
                self.ack_window = be32(body).ok_or(RtmpError::Malformed("Window Ack Size"))?;
                Ok(())
            }
            SET_PEER_BANDWIDTH => {
                let window = be32(body).ok_or(RtmpError::Malformed("Set Peer Bandwidth"))?;
                if window != self.our_window && window > 0 {
                    self.our_window = window;
                    self.control(WINDOW_ACK_SIZE, &window.to_be_bytes())?;
                }
                Ok(())
            }
            USER_CONTROL => {
                if body.len() >= 6 && u16::from_be_bytes([body[0], body[1]]) == PING_REQUEST {
                    let mut reply = [0u8; 6];
                    reply[..2].copy_from_slice(&PING_RESPONSE.to_be_bytes());
                    reply[2..].copy_from_slice(&body[2..6]);
                    self.control(USER_CONTROL, &reply)?;
                }
                Ok(())
            }
            COMMAND_AMF0 => self.on_command(body),
            // an AMF3 command is an AMF0 one after a format byte (§7.1.1)
            COMMAND_AMF3 => self.on_command(body.get(1..).unwrap_or_default()),
            _ => Ok(()),
        }
    }

    fn on_command(&mut self, body: &[u8]) -> Result<(), RtmpError> {
        let mut reader = Reader::new(body);
        let mut next = || reader.next_value().transpose().map_err(RtmpError::Amf);
        let name = next()?.and_then(|v| v.as_str()).unwrap_or_default();
        let tx = next()?.and_then(|v| v.as_number()).unwrap_or(0.0);
        let first = next()?;
        let second = next()?;
        let info = [first, second].into_iter().flatten().find_map(|v| match v {
            Value::Object(o) if o.get("code").is_some() => Some(o),
            _ => None,
        });
        let code = info.and_then(|o| o.str("code")).unwrap_or_default();
        let level = info.and_then(|o| o.str("level")).unwrap_or_default();
        let description = info.and_then(|o| o.str("description")).unwrap_or_default();
        let reason = || (bounded(code), bounded(description));
        match (name, self.state) {
            ("_result", State::Connecting) if tx == TX_CONNECT => {
                self.events.push_back(Event::Connected);
                self.start_stream()
            }
            ("_error", State::Connecting) if tx == TX_CONNECT => {
                let (code, description) = reason();
                Err(RtmpError::ConnectRejected { code, description })
            }
            ("_result", State::CreatingStream) if tx == TX_CREATE_STREAM => {
                let id = second.and_then(|v| v.as_number()).unwrap_or(-1.0);
                if !(1.0..=f64::from(u32::MAX)).contains(&id) || id.fract() != 0.0 {
                    return Err(RtmpError::Malformed("createStream result"));
                }
                self.stream_id = id as u32;
                self.publish()
            }
            ("_error", State::CreatingStream) if tx == TX_CREATE_STREAM => {
                let (code, description) = reason();
                Err(RtmpError::CreateStreamFailed { code, description })
            }
            ("onStatus", State::Starting) if code == "NetStream.Publish.Start" => {
                self.state = State::Publishing;
                self.events.push_back(Event::Publishing);
                Ok(())
            }
            ("onStatus", State::Starting | State::Publishing)
                if level == "error" || code.contains("Failed") || code.contains("BadName") =>
            {
                let (code, description) = reason();
                Err(RtmpError::PublishRejected { code, description })
            }
            ("close", _) => Err(RtmpError::ConnectionClosed),
            _ => Ok(()),
        }
    }

    fn start_stream(&mut self) -> Result<(), RtmpError> {
        let stream = self.config.stream.clone();
        let limit = self.config.out_capacity;
        for (name, tx) in [("releaseStream", TX_RELEASE), ("FCPublish", TX_FCPUBLISH)] {
            self.command(CSID_COMMAND, 0, COMMAND_AMF0, limit, |w| {
                w.string(name)?;
                w.number(tx)?;
                w.null()?;
                w.string(&stream)
            })?;
        }
        self.command(CSID_COMMAND, 0, COMMAND_AMF0, limit, |w| {
            w.string("createStream")?;
            w.number(TX_CREATE_STREAM)?;
            w.null()
        })?;
        self.state = State::CreatingStream;
        Ok(())
    }

    fn publish(&mut self) -> Result<(), RtmpError> {
        let stream = self.config.stream.clone();
        let stream_id = self.stream_id;
        let limit = self.config.out_capacity;
        self.command(CSID_STREAM, stream_id, COMMAND_AMF0, limit, |w| {
            w.string("publish")?;
            w.number(TX_PUBLISH)?;
            w.null()?;
            w.string(&stream)?;
            w.string("live")
        })?;
        self.state = State::Starting;
        Ok(())
    }
}

/// A server's status code or description, bounded in length.
fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
