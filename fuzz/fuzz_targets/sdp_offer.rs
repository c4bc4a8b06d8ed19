//! Fuzzes the browser side's SDP: `Offer::parse` with every accessor, `negotiate` under
//! several codec policies, and `build_answer` on what was negotiated. Invariants: the
//! parser keeps its limits (media sections, formats, fingerprints, SSRCs), a negotiated
//! result only names what the offer holds (an enabled codec at an offered payload type,
//! ICE credentials of RFC 8839 ice-chars), and the answer srgate writes reads back with
//! the same sections, the chosen payload type, mid, credentials, fingerprint and setup.
//!
//! Run: `cargo +nightly fuzz run sdp_offer fuzz/seeds/sdp_offer`
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use srgate::sdp::offer::{MAX_FINGERPRINTS, MAX_FORMATS, MAX_MEDIA, MAX_SSRCS};
use srgate::sdp::{
    AnswerPolicy, Codec, Fingerprint, HashAlgorithm, IceCredentials, LocalDescription, MAX_SDP,
    Negotiated, Offer, Setup, build_answer, negotiate,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    pieces(text);
    let Ok(offer) = Offer::parse(text) else {
        return;
    };
    check_offer(&offer);
    let policies = [
        AnswerPolicy::default(),
        AnswerPolicy {
            codecs: vec![Codec::Pcma, Codec::G722],
        },
        AnswerPolicy { codecs: Vec::new() },
    ];
    for policy in &policies {
        if let Ok(n) = negotiate(&offer, policy) {
            check_negotiated(&offer, policy, &n);
            check_answer(&offer, &n);
        }
    }
});

fn pieces(text: &str) {
    for alg in [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ] {
        if let Ok(f) = Fingerprint::parse(alg, text) {
            assert_eq!(f.bytes().len(), alg.digest_len());
            assert_eq!(Fingerprint::parse(alg, &f.hex()), Ok(f.clone()));
            assert_eq!(f.to_string(), format!("{} {}", alg.name(), f.hex()));
        }
    }
    if let Some(alg) = HashAlgorithm::from_name(text) {
        assert!(alg.name().eq_ignore_ascii_case(text));
    }
    if let Some(s) = Setup::from_name(text) {
        assert_eq!(Setup::from_name(s.name()), Some(s));
    }
    if let Some(c) = Codec::from_config_name(text) {
        assert!(c.encoding_name().eq_ignore_ascii_case(text.trim()));
    }
}

fn check_offer(offer: &Offer) {
    assert!(offer.media.len() <= MAX_MEDIA);
    assert!(offer.session.fingerprints.len() <= MAX_FINGERPRINTS);
    if let Some(group) = &offer.bundle {
        assert!(group.len() <= MAX_MEDIA);
        assert!(
            group
                .iter()
                .all(|m| !m.is_empty() && !m.contains(char::is_whitespace))
        );
    }
    for m in &offer.media {
        assert_eq!(m.kind, m.kind.to_ascii_lowercase());
        assert!(!m.kind.is_empty() && !m.proto.is_empty());
        assert!(m.formats.len() <= MAX_FORMATS);
        assert!(m.rtpmaps.len() <= MAX_FORMATS);
        assert!(m.fmtps.len() <= MAX_FORMATS);
        assert!(m.ssrcs.len() <= MAX_SSRCS);
        assert!(m.transport.fingerprints.len() <= MAX_FINGERPRINTS);
        for pt in m.payload_types() {
            let _ = m.fmtp(pt);
        }
        for f in m.transport.fingerprints.iter() {
            assert_eq!(f.bytes().len(), f.algorithm().digest_len());
        }
        let mut seen = m.ssrcs.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), m.ssrcs.len(), "a=ssrc ids are kept once");
    }
}

fn is_ice_chars(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn check_negotiated(offer: &Offer, policy: &AnswerPolicy, n: &Negotiated) {
    assert!(policy.codecs.contains(&n.codec));
    let media = &offer.media[n.media_index];
    assert_eq!(media.kind, "audio");
    assert_ne!(media.port, 0);
    assert!(media.rtcp_mux);
    assert!(media.payload_types().any(|pt| pt == n.payload_type));
    if let Some(te) = n.telephone_event {
        assert!(media.payload_types().any(|pt| pt == te.payload_type));
    }
    assert!(is_ice_chars(&n.remote_ice.ufrag) && is_ice_chars(&n.remote_ice.pwd));
    assert!(matches!(n.setup, Setup::Active | Setup::Passive));
    assert_eq!(n.offered.len(), offer.media.len());
    assert_eq!(n.mid, media.mid);
    if n.bundle {
        assert!(
            offer
                .bundle
                .as_ref()
                .is_some_and(|g| g.contains(n.mid.as_ref().unwrap()))
        );
    }
    if let Some(ssrc) = n.remote_ssrc {
        assert!(media.ssrcs.contains(&ssrc));
    }
}

fn check_answer(offer: &Offer, n: &Negotiated) {
    let ice = IceCredentials {
        ufrag: "srgT".into(),
        pwd: "0123456789abcdefghijkl".into(),
    };
    let fingerprint =
        Fingerprint::of_certificate(HashAlgorithm::Sha256, b"srgate fuzz certificate");
    let candidates: [SocketAddr; 2] = [
        "192.0.2.1:40000".parse().unwrap(),
        "[2001:db8::1]:40000".parse().unwrap(),
    ];
    let local = LocalDescription {
        ice: &ice,
        fingerprint: &fingerprint,
        candidates: &candidates,
        tcp: true,
        ssrc: 0x1234_5678,
        video_ssrc: 0,
        cname: "srgate",
        session_id: u64::MAX,
    };
    let answer = build_answer(n, &local);
    if answer.len() > MAX_SDP {
        // echoed mids and protos of a huge offer; nothing to read back
        return;
    }
    let read = match Offer::parse(&answer) {
        Ok(read) => read,
        Err(e) => panic!("srgate's answer does not read back: {e:?}\n{answer}"),
    };
    assert!(read.session.ice_lite);
    assert_eq!(read.media.len(), offer.media.len(), "{answer}");
    for (i, (m, o)) in read.media.iter().zip(&offer.media).enumerate() {
        assert_eq!(m.kind, o.kind, "{answer}");
        assert_eq!(m.mid, o.mid, "{answer}");
        if i != n.media_index {
            assert_eq!(m.port, 0, "{answer}");
            assert_eq!(m.proto, o.proto, "{answer}");
            continue;
        }
        assert_eq!(m.port, 40000);
        assert_eq!(m.proto, "UDP/TLS/RTP/SAVPF");
        assert_eq!(m.payload_types().next(), Some(n.payload_type), "{answer}");
        assert!(m.rtcp_mux);
        assert_eq!(m.transport.ice_ufrag.as_deref(), Some("srgT"));
        assert_eq!(m.transport.ice_pwd.as_deref(), Some(ice.pwd.as_str()));
        assert_eq!(m.transport.fingerprints.first(), Some(&fingerprint));
        assert_eq!(m.transport.setup.as_deref(), Some(n.setup.name()));
        assert_eq!(m.direction.as_deref(), Some(n.direction.name()));
        assert_eq!(m.ssrcs, vec![0x1234_5678]);
        let map = m
            .rtpmaps
            .iter()
            .find(|r| r.payload_type == n.payload_type)
            .expect("rtpmap");
        assert!(map.encoding.eq_ignore_ascii_case(n.codec.encoding_name()));
        assert_eq!(map.clock_rate, n.codec.clock_rate());
    }
    let bundled = read
        .bundle
        .as_ref()
        .is_some_and(|g| n.mid.as_ref().is_some_and(|mid| g.contains(mid)));
    assert_eq!(bundled, n.bundle, "{answer}");
}
