//! The publisher against a scripted server made of the same chunk and AMF parts, on no
//! socket: the happy path message by message, the server's refusals as typed errors, and
//! arbitrary bytes at every stage without a panic.

use super::amf::{AmfWriter, Reader, Value};
use super::chunk::{ChunkReader, ChunkWriter, MessageHeader, Read};
use super::handshake::PACKET;
use super::*;

/// The server's side: reads the client's messages, writes replies.
struct Server {
    reader: ChunkReader,
    writer: ChunkWriter,
    handshake_left: usize,
    staged: Vec<u8>,
}

/// A message the server read: type, stream id, timestamp, body.
type Msg = (u8, u32, u32, Vec<u8>);

impl Server {
    fn new() -> Self {
        Server {
            reader: ChunkReader::default(),
            writer: ChunkWriter::default(),
            handshake_left: 1 + 2 * PACKET,
            staged: Vec::new(),
        }
    }

    /// Takes everything the publisher has to send; returns the messages in it.
    fn take(&mut self, publisher: &mut Publisher) -> Vec<Msg> {
        while let Some(bytes) = publisher.poll_transmit() {
            let n = bytes.len();
            self.staged.extend_from_slice(bytes);
            publisher.advance_transmit(n);
        }
        let skip = self.handshake_left.min(self.staged.len());
        self.staged.drain(..skip);
        self.handshake_left -= skip;
        let mut messages = Vec::new();
        while let Read::Chunk { consumed, complete } = self.reader.read(&self.staged).unwrap() {
            self.staged.drain(..consumed);
            if let Some(slot) = complete {
                let (h, body) = self.reader.message(slot).unwrap();
                let body = body.to_vec();
                if h.type_id == 1 {
                    let size = u32::from_be_bytes(body[..4].try_into().unwrap());
                    self.reader.set_chunk_size(size).unwrap();
                }
                messages.push((h.type_id, h.stream_id, h.timestamp, body));
            }
        }
        messages
    }

    fn send(&mut self, p: &mut Publisher, type_id: u8, stream_id: u32, body: &[u8]) {
        let mut out = Vec::new();
        let header = MessageHeader {
            timestamp: 0,
            type_id,
            stream_id,
        };
        let csid = if type_id < 7 { 2 } else { 3 };
        self.writer
            .write(&mut out, 1 << 20, csid, header, &[body])
            .unwrap();
        p.handle_input(&out).unwrap();
    }
}

fn handshake_reply() -> Vec<u8> {
    let mut bytes = vec![3];
    bytes.extend((0..2 * PACKET).map(|i| (i * 7) as u8));
    bytes
}

fn amf(build: impl FnOnce(&mut AmfWriter<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    build(&mut AmfWriter::new(&mut out, 4096));
    out
}

fn status(name: &str, tx: f64, level: &str, code: &str) -> Vec<u8> {
    amf(|w| {
        w.string(name).unwrap();
        w.number(tx).unwrap();
        w.null().unwrap();
        w.object_start().unwrap();
        w.property_string("level", level).unwrap();
        w.property_string("code", code).unwrap();
        w.property_string("description", "test").unwrap();
        w.object_end().unwrap();
    })
}

/// `createStream`'s `_result`: message stream 1.
fn stream_created() -> Vec<u8> {
    amf(|w| {
        w.string("_result").unwrap();
        w.number(4.0).unwrap();
        w.null().unwrap();
        w.number(1.0).unwrap();
    })
}

fn command_name(body: &[u8]) -> String {
    let value = Reader::new(body).next_value().unwrap().unwrap();
    value.as_str().unwrap().to_owned()
}

fn publisher() -> Publisher {
    let url = RtmpUrl::parse("rtmp://127.0.0.1/live/", "door").unwrap();
    Publisher::new(PublisherConfig::new(&url, 7))
}

/// Drives a publisher up to `NetStream.Publish.Start`.
fn publishing() -> (Publisher, Server) {
    let mut p = publisher();
    let mut s = Server::new();
    assert!(s.take(&mut p).is_empty(), "C0 and C1 only");
    p.handle_input(&handshake_reply()).unwrap();
    let msgs = s.take(&mut p);
    assert_eq!(msgs[0].0, 1, "Set Chunk Size first");
    assert_eq!(msgs[0].3, 4096u32.to_be_bytes());
    assert_eq!(
        (msgs[1].0, command_name(&msgs[1].3)),
        (20, "connect".into())
    );
    let mut r = Reader::new(&msgs[1].3);
    r.next_value();
    assert_eq!(r.next_value().unwrap().unwrap(), Value::Number(1.0));
    let Some(Ok(Value::Object(o))) = r.next_value() else {
        panic!("command object")
    };
    assert_eq!(o.str("app"), Some("live"));
    assert_eq!(o.str("tcUrl"), Some("rtmp://127.0.0.1:1935/live"));
    assert_eq!(o.str("type"), Some("nonprivate"));
    assert!(o.str("flashVer").unwrap().starts_with("FMLE/3.0"));
    assert_eq!(p.state(), State::Connecting);

    s.send(&mut p, 5, 0, &2_500_000u32.to_be_bytes());
    s.send(&mut p, 6, 0, &[0, 0x26, 0x25, 0xA0, 2]);
    s.send(&mut p, 1, 0, &4096u32.to_be_bytes());
    let result = amf(|w| {
        w.string("_result").unwrap();
        w.number(1.0).unwrap();
        w.object_start().unwrap();
        w.property_string("fmsVer", "FMS/3,0,1,123").unwrap();
        w.object_end().unwrap();
        w.object_start().unwrap();
        w.property_string("code", "NetConnection.Connect.Success")
            .unwrap();
        w.object_end().unwrap();
    });
    s.send(&mut p, 20, 0, &result);
    s.writer.set_chunk_size(4096).unwrap();
    assert_eq!(p.poll_event(), Some(Event::Connected));
    let msgs = s.take(&mut p);
    let names: Vec<_> = msgs.iter().skip(1).map(|m| command_name(&m.3)).collect();
    assert_eq!(msgs[0].0, 5, "our window answers the peer bandwidth");
    assert_eq!(names, ["releaseStream", "FCPublish", "createStream"]);

    let created = stream_created();
    s.send(&mut p, 20, 0, &created);
    let msgs = s.take(&mut p);
    assert_eq!(msgs.len(), 1);
    assert_eq!((msgs[0].1, command_name(&msgs[0].3)), (1, "publish".into()));
    let values: Vec<_> = {
        let mut r = Reader::new(&msgs[0].3);
        std::iter::from_fn(|| {
            r.next_value()
                .map(|v| v.unwrap().as_str().map(String::from))
        })
        .collect()
    };
    assert_eq!(values[3..], [Some("door".into()), Some("live".into())]);
    assert_eq!(p.state(), State::Starting);

    s.send(
        &mut p,
        20,
        1,
        &status("onStatus", 0.0, "status", "NetStream.Publish.Start"),
    );
    assert_eq!(p.poll_event(), Some(Event::Publishing));
    assert_eq!(p.state(), State::Publishing);
    (p, s)
}

#[test]
fn publishes_media_and_closes_cleanly() {
    let (mut p, mut s) = publishing();
    p.send_audio(0, &[&AAC_SEQUENCE_HEADER, &[0x11, 0x88]])
        .unwrap();
    let frame = [0x5Au8; 5000];
    p.send_audio(21, &[&AAC_RAW, &frame]).unwrap();
    p.send_video(40, &[&[0x17, 0], &[1, 2, 3]]).unwrap();
    let msgs = s.take(&mut p);
    assert_eq!(msgs[0], (8, 1, 0, vec![0xAF, 0, 0x11, 0x88]));
    assert_eq!((msgs[1].0, msgs[1].2, msgs[1].3.len()), (8, 21, 5002));
    assert_eq!(msgs[2], (9, 1, 40, vec![0x17, 0, 1, 2, 3]));

    p.close().unwrap();
    assert_eq!(p.state(), State::Closing);
    let msgs = s.take(&mut p);
    let names: Vec<_> = msgs.iter().map(|m| command_name(&m.3)).collect();
    assert_eq!(names, ["FCUnpublish", "deleteStream"]);
    assert_eq!(p.poll_event(), Some(Event::Closed));
    assert_eq!(p.state(), State::Closed);
    assert_eq!(p.send_audio(50, &[&AAC_RAW]), Err(RtmpError::NotPublishing));
}

#[test]
fn acknowledges_the_window_and_answers_pings() {
    let (mut p, mut s) = publishing();
    s.send(&mut p, 5, 0, &100u32.to_be_bytes());
    let msgs = s.take(&mut p);
    assert!(
        msgs.iter().any(|m| m.0 == 3),
        "an acknowledgement after 100 bytes"
    );
    s.send(&mut p, 4, 0, &[0, 6, 0, 0, 0x12, 0x34]);
    let msgs = s.take(&mut p);
    assert!(msgs.contains(&(4, 0, 0, vec![0, 7, 0, 0, 0x12, 0x34])));
}

#[test]
fn media_before_publish_start_is_refused() {
    let mut p = publisher();
    assert_eq!(p.send_audio(0, &[&AAC_RAW]), Err(RtmpError::NotPublishing));
    p.close().unwrap();
    assert_eq!(p.poll_event(), Some(Event::Closed));
}

#[test]
fn refusals_are_typed_errors() {
    // connect refused
    let mut p = publisher();
    let mut s = Server::new();
    s.take(&mut p);
    p.handle_input(&handshake_reply()).unwrap();
    s.take(&mut p);
    let refused = status("_error", 1.0, "error", "NetConnection.Connect.Rejected");
    let mut out = Vec::new();
    let h = MessageHeader {
        timestamp: 0,
        type_id: 20,
        stream_id: 0,
    };
    s.writer
        .write(&mut out, 1 << 20, 3, h, &[&refused])
        .unwrap();
    let want = RtmpError::ConnectRejected {
        code: "NetConnection.Connect.Rejected".into(),
        description: "test".into(),
    };
    assert_eq!(p.handle_input(&out), Err(want.clone()));
    assert_eq!(p.poll_event(), Some(Event::Error(want)));
    assert_eq!(p.state(), State::Failed);

    // publish refused: the name is taken
    let mut p = publisher();
    let mut s = Server::new();
    s.take(&mut p);
    p.handle_input(&handshake_reply()).unwrap();
    s.take(&mut p);
    let ok = status("_result", 1.0, "status", "NetConnection.Connect.Success");
    s.send(&mut p, 20, 0, &ok);
    let created = stream_created();
    s.send(&mut p, 20, 0, &created);
    let bad = status("onStatus", 0.0, "error", "NetStream.Publish.BadName");
    let mut out = Vec::new();
    s.writer.write(&mut out, 1 << 20, 5, h, &[&bad]).unwrap();
    assert!(matches!(
        p.handle_input(&out),
        Err(RtmpError::PublishRejected { code, .. }) if code == "NetStream.Publish.BadName"
    ));

    // a server that is not RTMP
    let mut p = publisher();
    let err = p.handle_input(b"HTTP/1.1 400 Bad Request\r\n").unwrap_err();
    assert!(matches!(err, RtmpError::Handshake(_)));

    // the server hangs up while publishing
    let (mut p, _) = publishing();
    p.handle_eof();
    assert_eq!(
        p.poll_event(),
        Some(Event::Error(RtmpError::ConnectionClosed))
    );
}

#[test]
fn arbitrary_server_bytes_never_panic() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut p = if round % 2 == 0 {
            publishing().0
        } else {
            let mut p = publisher();
            p.handle_input(&handshake_reply()).unwrap();
            p
        };
        let len = (next() % 3000) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // often a plausible chunk header first, so the deeper paths are reached
        if round % 3 == 0 && bytes.len() > 12 {
            bytes[..8].copy_from_slice(&[0x03, 0, 0, 0, 0, 0, (len / 4) as u8, 20]);
        }
        for piece in bytes.chunks(1 + (next() % 700) as usize) {
            if p.handle_input(piece).is_err() {
                break;
            }
        }
        while let Some(b) = p.poll_transmit() {
            let n = b.len();
            p.advance_transmit(n);
        }
    }
}

#[test]
fn the_output_buffer_is_bounded() {
    let (mut p, _s) = publishing();
    let frame = [0u8; 1000];
    let mut sent = 0;
    let err = loop {
        match p.send_audio(sent * 21, &[&AAC_RAW, &frame]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10_000, "the buffer never filled");
    };
    assert_eq!(err, RtmpError::Chunk(chunk::ChunkError::BufferFull));
    assert!(sent > 200);
    // control answers still fit
    let mut s = Server::new();
    s.handshake_left = 0;
    s.send(&mut p, 4, 0, &[0, 6, 0, 0, 0, 1]);
}
