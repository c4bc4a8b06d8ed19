//! Fuzzes the SIP side's SDP (plain RTP): `parse_rtp_sdp` and `reanswer`. Invariants: an
//! accepted description has a known codec and a non-zero port, and what srgate writes for
//! it with `build_rtp_sdp` reads back to the same address, codecs, telephone-event,
//! direction and ptime; a re-answer to it (unless it asks for SRTP) reads back with the
//! direction mirrored, a version one higher and one of the offer's formats.
//!
//! Run: `cargo +nightly fuzz run sdp_sip fuzz/seeds/sdp_sip`
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::sdp::CodecSet;
use srgate::sdp::sip::{RtpDescription, build_rtp_sdp, mirror, parse_rtp_sdp, reanswer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(remote) = parse_rtp_sdp(text) else {
        // a malformed previous description gives no re-answer, and no panic
        if let Ok(other) = parse_rtp_sdp(SEED) {
            let _ = reanswer(text, &other, CodecSet::ALL);
        }
        return;
    };
    assert!(!remote.codecs.is_empty());
    assert_ne!(remote.addr.port(), 0);
    if let Some(te) = remote.telephone_event {
        assert!(remote.codecs.iter().all(|(pt, _)| *pt != te));
    }

    let ours = RtpDescription {
        addr: remote.addr,
        codecs: &remote.codecs,
        telephone_event: remote.telephone_event,
        direction: remote.direction,
        session_id: 7,
        version: 41,
        ptime: remote.ptime.unwrap_or(20),
        // plain RTP/AVP: the SDES lines have their own unit tests
        crypto: &[],
        best_effort: false,
        layout: &[],
    };
    let written = build_rtp_sdp(&ours);
    let again = match parse_rtp_sdp(&written) {
        Ok(again) => again,
        Err(e) => panic!("srgate's description does not read back: {e:?}\n{written}"),
    };
    assert_eq!(again.addr, remote.addr, "{written}");
    assert_eq!(again.codecs, remote.codecs, "{written}");
    assert_eq!(again.telephone_event, remote.telephone_event, "{written}");
    assert_eq!(again.direction, remote.direction, "{written}");
    assert_eq!(again.ptime, Some(ours.ptime), "{written}");

    // the previous answer is ours (plain RTP), the re-offer is the fuzzed one: answered
    // unless it asks for SRTP (a re-offer never adds it; a best-effort key is answered
    // plain)
    let re = reanswer(&written, &remote, CodecSet::ALL);
    assert_eq!(
        remote.best_effort,
        remote.best_effort && remote.crypto.is_some()
    );
    if remote.crypto.is_some() && !remote.best_effort {
        assert_eq!(re, None, "SRTP re-offer of a plain session answered");
    } else {
        let re = re.expect("srgate's own description re-answers");
        let re_read = parse_rtp_sdp(&re).expect("a re-answer reads back");
        assert_eq!(re_read.direction, mirror(remote.direction));
        assert_eq!(re_read.addr, remote.addr);
        assert_eq!(re_read.codecs.len(), 1);
        // RFC 3264 §6.1: the answer's format is one the offer had, with its number
        assert!(remote.codecs.contains(&re_read.codecs[0]), "{re}");
        assert!(re.contains("o=srgate 7 42 "), "{re}");
        assert!(
            re_read.crypto.is_none(),
            "a plain session stays plain: {re}"
        );
    }
    // and the fuzzed one as the previous description
    let _ = reanswer(text, &remote, CodecSet::ALL);
    assert_eq!(mirror(mirror(remote.direction)), remote.direction);
});

const SEED: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
    m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
