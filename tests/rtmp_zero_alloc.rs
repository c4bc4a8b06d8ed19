//! Heap allocations per frame in steady state while publishing to RTMP: 0.
//!
//! A counting global allocator watches 8 kHz PCM (a G.711 call's) become AAC frames and
//! RTMP audio messages written out, with pushed silence in between and the server's
//! acknowledgement window and pings answered, after the session was set up against
//! scripted server bytes (no socket). Setup may allocate; the frame path may not.
//! (libfdk-aac allocates its state when the encoder opens and not while encoding; a Rust
//! allocator cannot see C's malloc, which is why that is stated here and not measured.)
//!
//! One test function only: the counter is process-wide.
#![cfg(feature = "aac")]

use std::alloc::System;

use srgate::media::codec::SampleRate;
use srgate::media::codec::aac::{AacEncoder, DEFAULT_BITRATE};
use srgate::rtmp::amf::AmfWriter;
use srgate::rtmp::chunk::{ChunkWriter, MessageHeader};
use srgate::rtmp::handshake::PACKET;
use srgate::rtmp::{self, Event, Publisher, PublisherConfig, RtmpUrl};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const FRAMES: usize = 1500;
const WARM_UP: usize = 100;

/// One server message as chunks.
fn server_message(writer: &mut ChunkWriter, type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let header = MessageHeader {
        timestamp: 0,
        type_id,
        stream_id,
    };
    let csid = if type_id < 7 { 2 } else { 3 };
    writer
        .write(&mut out, 1 << 16, csid, header, &[body])
        .unwrap();
    out
}

fn reply(name: &str, tx: f64, last: impl FnOnce(&mut AmfWriter<'_>)) -> Vec<u8> {
    let mut body = Vec::new();
    let mut w = AmfWriter::new(&mut body, 4096);
    w.string(name).unwrap();
    w.number(tx).unwrap();
    w.null().unwrap();
    last(&mut w);
    body
}

fn drain(publisher: &mut Publisher) {
    while let Some(bytes) = publisher.poll_transmit() {
        let n = bytes.len();
        publisher.advance_transmit(n);
    }
}

#[test]
fn rtmp_publishing_allocates_nothing_per_frame() {
    let url = RtmpUrl::parse("rtmp://127.0.0.1/live/", "alloc").unwrap();
    let mut publisher = Publisher::new(PublisherConfig::new(&url, 3));
    let mut server = ChunkWriter::default();
    let mut handshake = vec![3u8];
    handshake.resize(1 + 2 * PACKET, 0x42);
    publisher.handle_input(&handshake).unwrap();
    let status = |w: &mut AmfWriter<'_>| {
        w.object_start().unwrap();
        w.property_string("code", "NetConnection.Connect.Success")
            .unwrap();
        w.object_end().unwrap();
    };
    let mut setup = server_message(&mut server, 5, 0, &2_500_000u32.to_be_bytes());
    setup.extend(server_message(
        &mut server,
        20,
        0,
        &reply("_result", 1.0, status),
    ));
    setup.extend(server_message(
        &mut server,
        20,
        0,
        &reply("_result", 4.0, |w| w.number(1.0).unwrap()),
    ));
    let start = |w: &mut AmfWriter<'_>| {
        w.object_start().unwrap();
        w.property_string("level", "status").unwrap();
        w.property_string("code", "NetStream.Publish.Start")
            .unwrap();
        w.object_end().unwrap();
    };
    setup.extend(server_message(
        &mut server,
        20,
        1,
        &reply("onStatus", 0.0, start),
    ));
    publisher.handle_input(&setup).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| publisher.poll_event()).collect();
    assert_eq!(events, [Event::Connected, Event::Publishing]);
    drain(&mut publisher);

    let mut encoder = AacEncoder::new(SampleRate::Hz8000, DEFAULT_BITRATE).unwrap();
    publisher
        .send_audio(
            0,
            &[&rtmp::AAC_SEQUENCE_HEADER, encoder.audio_specific_config()],
        )
        .unwrap();
    // a ping and enough server bytes to need an acknowledgement, prepared beforehand
    let mut window = server_message(&mut server, 5, 0, &200u32.to_be_bytes());
    window.extend(server_message(&mut server, 4, 0, &[0, 6, 0, 0, 0, 9]));
    publisher.handle_input(&window).unwrap();
    let ping = server_message(&mut server, 4, 0, &[0, 6, 0, 0, 0, 9]);

    let mut pcm = [0i16; 160];
    let mut sent = 0usize;
    let mut region = None;
    for frame in 0..FRAMES {
        if frame == WARM_UP {
            region = Some(Region::new(GLOBAL));
        }
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (frame * 160 + i) as f64 / 8000.0;
            *s = (9000.0 * (std::f64::consts::TAU * 1000.0 * t).sin()) as i16;
        }
        if frame % 50 < 5 {
            encoder.push_silence().unwrap();
        } else {
            encoder.push_pcm(&pcm).unwrap();
        }
        while let Some(aac) = encoder.poll_frame() {
            let aac = aac.unwrap();
            publisher
                .send_audio(aac.timestamp_ms(), &[&rtmp::AAC_RAW, aac.data])
                .unwrap();
            sent += 1;
        }
        if frame % 20 == 0 {
            publisher.handle_input(&ping).unwrap();
        }
        drain(&mut publisher);
        assert!(publisher.poll_event().is_none());
    }
    let stats = region.expect("measured").change();
    assert!(sent > 1300, "{sent} frames");
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "allocations while publishing {} frames: {stats:?}",
        FRAMES - WARM_UP
    );
}
