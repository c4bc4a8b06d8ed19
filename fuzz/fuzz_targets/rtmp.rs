//! Fuzzes srgate's RTMP publisher with whatever a server may send after a valid handshake:
//! the chunk reader, the control messages, the AMF0 replies and the session's state
//! machine, and the AMF0 reader and URL parser on their own. The first input byte cuts the
//! rest into pieces, so chunks are split at every place.
//! Invariants: no panic; an error leaves the session failed with one `Error` event and no
//! later output; the output stays within its capacity; media is accepted only while
//! publishing; every AMF0 value read lies inside the input; a parsed URL's `tcUrl`
//! parses back to the same host, port and application.
//!
//! Run: `cargo +nightly fuzz run rtmp fuzz/corpus/rtmp`
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::rtmp::amf::Reader;
use srgate::rtmp::handshake::PACKET;
use srgate::rtmp::publisher::DEFAULT_OUT_CAPACITY;
use srgate::rtmp::{Event, Publisher, PublisherConfig, RtmpError, RtmpUrl, State};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let url = RtmpUrl::parse("rtmp://127.0.0.1/live/", "fuzz").expect("a valid URL");
    let mut publisher = Publisher::new(PublisherConfig::new(&url, 1));
    let mut handshake = vec![3u8];
    handshake.resize(1 + 2 * PACKET, 0);
    publisher
        .handle_input(&handshake)
        .expect("a valid handshake");
    let mut failed = false;
    for piece in rest.chunks(usize::from(cut) + 1) {
        let result = publisher.handle_input(piece);
        let pending = publisher.poll_transmit().map_or(0, <[u8]>::len);
        assert!(pending <= DEFAULT_OUT_CAPACITY);
        if failed {
            assert!(result.is_ok(), "input after the end is ignored");
            assert_eq!(pending, 0, "nothing is said after the end");
        }
        let error = result.is_err();
        let mut errors = 0;
        while let Some(event) = publisher.poll_event() {
            if matches!(event, Event::Error(_)) {
                errors += 1;
            }
        }
        if error && !failed {
            assert_eq!(errors, 1);
            assert_eq!(publisher.state(), State::Failed);
            failed = true;
        }
        publisher.advance_transmit(pending);
        let sent = publisher.send_audio(0, &[&[0xAF, 1], piece]);
        if publisher.state() != State::Publishing {
            assert_eq!(sent, Err(RtmpError::NotPublishing));
        }
    }

    let mut reader = Reader::new(rest);
    while let Some(value) = reader.next_value() {
        if value.is_err() {
            break;
        }
    }

    if let Ok(text) = std::str::from_utf8(rest)
        && let Ok(parsed) = RtmpUrl::parse(text, "")
    {
        let again = RtmpUrl::parse(&format!("{}/", parsed.tc_url()), "s").expect("tcUrl parses");
        assert_eq!(
            (again.host, again.port, again.app, again.tls),
            (parsed.host, parsed.port, parsed.app, parsed.tls)
        );
    }
});
