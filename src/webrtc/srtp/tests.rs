use super::crypto::tests::hex;
use super::*;

const ALL: [SrtpProfile; 4] = [
    SrtpProfile::Aes128CmHmacSha1_80,
    SrtpProfile::Aes128CmHmacSha1_32,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
];

/// RFC 7714 §16/§17 give session keys, not master keys: build a context around them.
fn gcm_with_session_keys(profile: SrtpProfile) -> SrtpContext {
    let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
    let salt: [u8; 12] = *b"Quid pro quo";
    let keys = GcmKeys::new(&key, &salt).expect("16 or 32 octets");
    SrtpContext {
        profile,
        session: Session::Gcm {
            rtp: keys.clone(),
            rtcp: keys,
        },
        streams: LinearMap::new(),
    }
}

const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
    20646976 69736120 696e2070 61727465 73207472 6573";
const RFC7714_SRTP_128: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
    be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce";
const RFC7714_SRTP_256: &str = "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa
    b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13";
const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
    4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
const RFC7714_SRTCP_128: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99
    7ff5c0f7 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
    45d9eade 800005d4";
const RFC7714_SRTCP_256: &str = "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28
    2c3ece5d bffe0a50 a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
    b26ac3be 800005d4";
/// §17.3 (128-bit key) and §17.4 (256-bit key): tagged, not encrypted (E flag 0).
const RFC7714_SRTCP_TAG_ONLY_128: &str = "81c8000d 4d617273 4e545031 4e545032 52545020
    0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9
    2ae58790 125f62b3 000005d4";
const RFC7714_SRTCP_TAG_ONLY_256: &str = "81c8000d 4d617273 4e545031 4e545032 52545020
    0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef 91db4afb feee5a97
    8fab4393 ed2615fe 000005d4";

#[test]
fn rfc7714_16_srtp_vectors() {
    for (profile, expected) in [
        (SrtpProfile::AeadAes128Gcm, RFC7714_SRTP_128),
        (SrtpProfile::AeadAes256Gcm, RFC7714_SRTP_256),
    ] {
        let plain = hex(RFC7714_RTP);
        let expected = hex(expected);
        let mut buf = [0u8; 128];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = gcm_with_session_keys(profile)
            .protect_rtp(&mut buf, plain.len())
            .expect("protects");
        assert_eq!(buf[..n], expected[..], "{profile:?} encryption");

        let mut packet = expected.clone();
        let n = gcm_with_session_keys(profile)
            .unprotect_rtp(&mut packet)
            .expect("unprotects");
        assert_eq!(packet[..n], plain[..], "{profile:?} decryption");
    }
}

#[test]
fn rfc7714_17_srtcp_vectors() {
    const SSRC: u32 = 0x4d61_7273;
    let plain = hex(RFC7714_RTCP);
    // §17.1: encryption with SRTCP index 0x5d4.
    let mut ctx = gcm_with_session_keys(SrtpProfile::AeadAes128Gcm);
    let state = SsrcState {
        rtcp_next: 0x5d4,
        ..SsrcState::default()
    };
    ctx.store(SSRC, state).expect("room");
    let mut buf = [0u8; 128];
    buf[..plain.len()].copy_from_slice(&plain);
    let n = ctx.protect_rtcp(&mut buf, plain.len()).expect("protects");
    assert_eq!(buf[..n], hex(RFC7714_SRTCP_128)[..]);
    assert_eq!(ctx.streams.get(&SSRC).map(|s| s.rtcp_next), Some(0x5d5));

    // §17.2: decryption with the 256-bit key; and our 128-bit output decrypts too.
    for (profile, srtcp) in [
        (SrtpProfile::AeadAes256Gcm, RFC7714_SRTCP_256),
        (SrtpProfile::AeadAes128Gcm, RFC7714_SRTCP_128),
        // §17.3/§17.4: E flag clear, the whole packet is associated data.
        (SrtpProfile::AeadAes128Gcm, RFC7714_SRTCP_TAG_ONLY_128),
        (SrtpProfile::AeadAes256Gcm, RFC7714_SRTCP_TAG_ONLY_256),
    ] {
        let mut packet = hex(srtcp);
        let n = gcm_with_session_keys(profile)
            .unprotect_rtcp(&mut packet)
            .expect("unprotects");
        assert_eq!(packet[..n], plain[..], "{profile:?} {srtcp}");
    }
}

#[test]
fn rfc7714_vectors_with_a_flipped_bit_are_refused() {
    for (profile, srtp, srtcp) in [
        (
            SrtpProfile::AeadAes128Gcm,
            RFC7714_SRTP_128,
            RFC7714_SRTCP_TAG_ONLY_128,
        ),
        (
            SrtpProfile::AeadAes256Gcm,
            RFC7714_SRTP_256,
            RFC7714_SRTCP_256,
        ),
    ] {
        let srtp = hex(srtp);
        for i in 0..srtp.len() {
            let mut p = srtp.clone();
            p[i] ^= 0x20;
            let r = gcm_with_session_keys(profile).unprotect_rtp(&mut p);
            assert!(
                matches!(r, Err(Error::AuthFailed | Error::BadVersion)),
                "octet {i}: {r:?}"
            );
        }
        let srtcp = hex(srtcp);
        for i in 0..srtcp.len() {
            let mut p = srtcp.clone();
            p[i] ^= 0x01;
            let tampered = p.clone();
            let r = gcm_with_session_keys(profile).unprotect_rtcp(&mut p);
            assert_eq!(r, Err(Error::AuthFailed), "octet {i}");
            assert_eq!(p, tampered, "a refused packet is left as it was");
        }
    }
}

/// A deterministic RTP packet: `cc` CSRCs, an optional one-word extension, `payload` octets.
fn rtp(seq: u16, ssrc: u32, cc: u8, ext: bool, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80 | cc | if ext { 0x10 } else { 0 }, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for c in 0..cc {
        p.extend_from_slice(&[c; 4]);
    }
    if ext {
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x7f, 0, 0]);
    }
    p.extend((0..payload).map(|i| (i as u8).wrapping_mul(7) ^ seq as u8));
    p
}

fn rtcp(ssrc: u32, body: usize) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..body).map(|i| i as u8));
    p
}

/// A sender and a receiver keyed from the same master key.
fn pair(profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
    let key: Vec<u8> = (0..profile.master_key_len() as u8)
        .map(|b| b ^ 0x5a)
        .collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8).collect();
    let tx = SrtpContext::new(profile, &key, &salt).expect("right lengths");
    let rx = SrtpContext::new(profile, &key, &salt).expect("right lengths");
    (tx, rx)
}

fn protect(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    buf[..plain.len()].copy_from_slice(plain);
    let n = ctx.protect_rtp(&mut buf, plain.len()).expect("protects");
    assert_eq!(n, plain.len() + ctx.profile().rtp_overhead());
    buf[..n].to_vec()
}

fn unprotect(ctx: &mut SrtpContext, srtp: &[u8]) -> Result<Vec<u8>, Error> {
    let mut p = srtp.to_vec();
    let n = ctx.unprotect_rtp(&mut p)?;
    Ok(p[..n].to_vec())
}

#[test]
fn round_trip_every_profile_with_csrcs_and_extensions() {
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        for (seq, cc, ext, len) in [(1, 0, false, 160), (2, 2, true, 33), (3, 15, true, 0)] {
            let plain = rtp(seq, 42, cc, ext, len);
            let srtp = protect(&mut tx, &plain);
            let header_len = plain.len() - len;
            assert_eq!(
                srtp[..header_len],
                plain[..header_len],
                "header stays clear"
            );
            if len > 0 {
                assert_ne!(srtp[header_len..plain.len()], plain[header_len..]);
            }
            assert_eq!(
                unprotect(&mut rx, &srtp),
                Ok(plain),
                "{profile:?} seq {seq}"
            );
        }
    }
}

#[test]
fn srtcp_round_trip_and_index() {
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        for i in 0..3u32 {
            let plain = rtcp(7, 20 + i as usize);
            let mut buf = [0u8; 200];
            buf[..plain.len()].copy_from_slice(&plain);
            let n = tx.protect_rtcp(&mut buf, plain.len()).expect("protects");
            assert_eq!(n, plain.len() + profile.rtcp_overhead());
            assert_eq!(buf[..8], plain[..8], "first 8 octets stay clear");
            assert_ne!(buf[8..plain.len()], plain[8..]);
            let word_at = if profile.is_aead() {
                n - 4
            } else {
                plain.len()
            };
            assert_eq!(buf[word_at..word_at + 4], (0x8000_0000 | i).to_be_bytes());
            let n = rx.unprotect_rtcp(&mut buf[..n]).expect("unprotects");
            assert_eq!(buf[..n], plain[..], "{profile:?}");
        }
    }
}

#[test]
fn unencrypted_srtcp_from_a_peer_is_accepted_for_the_cm_profile() {
    // Build an E=0 packet by hand: RTCP || index || HMAC(RTCP || index).
    let (tx, mut rx) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let Session::Cm { rtcp: keys, .. } = &tx.session else {
        panic!("CM profile")
    };
    let mut p = rtcp(9, 12);
    let plain = p.clone();
    p.extend_from_slice(&5u32.to_be_bytes());
    let mac = keys.mac(&p, &[]);
    p.extend_from_slice(&mac[..10]);
    assert_eq!(rx.unprotect_rtcp(&mut p), Ok(plain.len()));
    assert_eq!(p[..plain.len()], plain[..]);
}

#[test]
fn rollover_counter_across_the_sequence_wrap() {
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        let seqs = [65_533u16, 65_534, 65_535, 0, 1, 2];
        let srtp: Vec<_> = seqs
            .iter()
            .map(|&s| protect(&mut tx, &rtp(s, 1, 0, false, 20)))
            .collect();
        // Deliver all but 65535, which arrives late, after the wrap.
        for i in [0, 1, 3, 4, 5, 2] {
            assert_eq!(
                unprotect(&mut rx, &srtp[i]),
                Ok(rtp(seqs[i], 1, 0, false, 20)),
                "{profile:?} seq {}",
                seqs[i]
            );
        }
        let top = rx.streams.get(&1).and_then(|s| s.rtp.top());
        assert_eq!(top, Some(1 << 16 | 2), "ROC 1 after the wrap");
        // Every one of them is now a replay.
        for p in &srtp {
            assert_eq!(unprotect(&mut rx, p), Err(Error::Replay));
        }
        // The sender's ROC went to 1 as well: the next packet has index 2^16 + 3.
        let next = protect(&mut tx, &rtp(3, 1, 0, false, 20));
        assert_eq!(unprotect(&mut rx, &next), Ok(rtp(3, 1, 0, false, 20)));
    }
}

#[test]
fn an_index_is_never_protected_twice() {
    for profile in ALL {
        let (mut tx, _) = pair(profile);
        protect(&mut tx, &rtp(1000, 3, 0, false, 10));
        protect(&mut tx, &rtp(1002, 3, 0, false, 10));
        let mut buf = [0u8; 100];
        for seq in [1000, 1002, 1002 - 128] {
            let plain = rtp(seq, 3, 0, false, 10);
            buf[..plain.len()].copy_from_slice(&plain);
            assert_eq!(
                tx.protect_rtp(&mut buf, plain.len()),
                Err(Error::Replay),
                "{seq}"
            );
            assert_eq!(buf[..plain.len()], plain[..], "left as it was");
        }
        // A sequence number skipped earlier may still be sent.
        protect(&mut tx, &rtp(1001, 3, 0, false, 10));
    }
}

#[test]
fn the_rollover_counter_is_authenticated() {
    // A packet protected with ROC 1 does not verify if the receiver thinks ROC is 0.
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        protect(&mut tx, &rtp(65_535, 3, 0, false, 10));
        let wrapped = protect(&mut tx, &rtp(10, 3, 0, false, 10));
        assert_eq!(unprotect(&mut rx, &wrapped), Err(Error::AuthFailed));
    }
}

#[test]
fn replays_are_refused_and_reordering_within_the_window_is_not() {
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        let srtp: Vec<_> = (100..300u16)
            .map(|s| protect(&mut tx, &rtp(s, 5, 0, false, 8)))
            .collect();
        assert!(unprotect(&mut rx, &srtp[199]).is_ok());
        assert_eq!(unprotect(&mut rx, &srtp[199]), Err(Error::Replay));
        // 128 packets back is out of the window, 127 is not.
        assert_eq!(unprotect(&mut rx, &srtp[199 - 128]), Err(Error::Replay));
        assert!(unprotect(&mut rx, &srtp[199 - 127]).is_ok());
        assert_eq!(unprotect(&mut rx, &srtp[199 - 127]), Err(Error::Replay));
        assert!(unprotect(&mut rx, &srtp[150]).is_ok());

        // SRTCP.
        let mut buf = [0u8; 100];
        let plain = rtcp(5, 4);
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtcp(&mut buf, plain.len()).expect("protects");
        let srtcp = buf[..n].to_vec();
        let mut p = srtcp.clone();
        assert_eq!(rx.unprotect_rtcp(&mut p), Ok(plain.len()));
        let mut p = srtcp.clone();
        assert_eq!(rx.unprotect_rtcp(&mut p), Err(Error::Replay), "{profile:?}");
    }
}

#[test]
fn tampered_packets_are_refused_and_change_nothing() {
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        let plain = rtp(9, 77, 1, true, 40);
        let srtp = protect(&mut tx, &plain);
        for i in 0..srtp.len() {
            for bit in [0x01, 0x80] {
                let mut p = srtp.clone();
                p[i] ^= bit;
                let tampered = p.clone();
                let r = rx.unprotect_rtp(&mut p);
                assert_eq!(p, tampered, "a refused packet is left as it was");
                assert!(
                    matches!(
                        r,
                        Err(Error::AuthFailed | Error::BadVersion | Error::TooShort)
                    ),
                    "{profile:?} octet {i} bit {bit:#x}: {r:?}"
                );
            }
        }
        assert!(rx.streams.is_empty(), "forgeries created no state");
        assert_eq!(unprotect(&mut rx, &srtp), Ok(plain));

        let plain = rtcp(77, 30);
        let mut buf = [0u8; 100];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtcp(&mut buf, plain.len()).expect("protects");
        for i in 0..n {
            let mut p = buf[..n].to_vec();
            p[i] ^= 0x04;
            let r = rx.unprotect_rtcp(&mut p);
            assert!(
                matches!(r, Err(Error::AuthFailed | Error::Replay)),
                "{profile:?} SRTCP octet {i}: {r:?}"
            );
        }
        assert_eq!(rx.unprotect_rtcp(&mut buf[..n]), Ok(plain.len()));
    }
}

#[test]
fn wrong_keys_do_not_verify() {
    let (mut tx, _) = pair(SrtpProfile::AeadAes256Gcm);
    let mut rx = SrtpContext::new(SrtpProfile::AeadAes256Gcm, &[1; 32], &[2; 12]).expect("lengths");
    let srtp = protect(&mut tx, &rtp(1, 1, 0, false, 16));
    assert_eq!(unprotect(&mut rx, &srtp), Err(Error::AuthFailed));
}

#[test]
fn short_packets_and_small_buffers() {
    for profile in ALL {
        let (mut tx, mut rx) = pair(profile);
        let plain = rtp(1, 1, 0, false, 10);
        let mut buf = [0u8; 64];
        buf[..plain.len()].copy_from_slice(&plain);
        let tight = plain.len() + profile.rtp_overhead();
        assert_eq!(
            tx.protect_rtp(&mut buf[..tight - 1], plain.len()),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(tx.protect_rtp(&mut buf, 65), Err(Error::BufferTooSmall));
        assert_eq!(tx.protect_rtp(&mut buf, 11), Err(Error::TooShort));
        assert_eq!(tx.protect_rtcp(&mut buf, 7), Err(Error::TooShort));
        let rtcp_plain = rtcp(1, 0);
        buf[..8].copy_from_slice(&rtcp_plain);
        assert_eq!(
            tx.protect_rtcp(&mut buf[..8 + profile.rtcp_overhead() - 1], 8),
            Err(Error::BufferTooSmall)
        );
        for n in 0..12 + profile.rtp_overhead() {
            let mut p = vec![0x80; n];
            assert_eq!(rx.unprotect_rtp(&mut p), Err(Error::TooShort), "{n}");
        }
        for n in 0..8 + profile.rtcp_overhead() {
            let mut p = vec![0x80; n];
            assert_eq!(rx.unprotect_rtcp(&mut p), Err(Error::TooShort), "{n}");
        }
        let mut p = vec![0x00; 12 + profile.rtp_overhead()];
        assert_eq!(rx.unprotect_rtp(&mut p), Err(Error::BadVersion));
        // An empty payload is fine.
        buf[..8].copy_from_slice(&rtcp_plain);
        let n = tx.protect_rtcp(&mut buf, 8).expect("protects");
        assert_eq!(rx.unprotect_rtcp(&mut buf[..n]), Ok(8));
    }
}

#[test]
fn a_full_ssrc_table_is_a_typed_error() {
    let (_, mut rx) = pair(SrtpProfile::AeadAes128Gcm);
    let srtp: Vec<_> = (0..=MAX_SSRCS as u32)
        .map(|ssrc| {
            protect(
                &mut pair(SrtpProfile::AeadAes128Gcm).0,
                &rtp(1, ssrc, 0, false, 4),
            )
        })
        .collect();
    for p in &srtp[..MAX_SSRCS] {
        assert!(unprotect(&mut rx, p).is_ok());
    }
    assert_eq!(
        unprotect(&mut rx, &srtp[MAX_SSRCS]),
        Err(Error::TooManySsrcs)
    );
    let mut tx = pair(SrtpProfile::AeadAes128Gcm).0;
    for p in &srtp[..MAX_SSRCS] {
        let mut buf = p.clone();
        buf.resize(200, 0);
        let n = p.len() - 16;
        assert!(tx.protect_rtp(&mut buf, n).is_ok());
    }
    let mut buf = [0u8; 64];
    let plain = rtp(1, 99, 0, false, 4);
    buf[..plain.len()].copy_from_slice(&plain);
    assert_eq!(
        tx.protect_rtp(&mut buf, plain.len()),
        Err(Error::TooManySsrcs)
    );
    assert!(rx.forget_ssrc(0));
    assert!(!rx.forget_ssrc(0));
    assert!(unprotect(&mut rx, &srtp[MAX_SSRCS]).is_ok());
}

#[test]
fn dtls_keying_material_is_split_by_role() {
    for profile in ALL {
        let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        let (mut client_tx, mut client_rx) =
            SrtpContext::from_dtls(profile, &material, DtlsRole::Client).expect("length");
        let (mut server_tx, mut server_rx) =
            SrtpContext::from_dtls(profile, &material, DtlsRole::Server).expect("length");
        let plain = rtp(1, 1, 0, false, 20);
        let from_client = protect(&mut client_tx, &plain);
        let from_server = protect(&mut server_tx, &plain);
        assert_ne!(from_client, from_server, "two keys");
        assert_eq!(unprotect(&mut server_rx, &from_client), Ok(plain.clone()));
        assert_eq!(unprotect(&mut client_rx, &from_server), Ok(plain));

        // The client context is keyed with the first key and the first salt.
        let (k, s) = (profile.master_key_len(), profile.master_salt_len());
        let mut direct = SrtpContext::new(profile, &material[..k], &material[2 * k..2 * k + s])
            .expect("lengths");
        let plain = rtp(2, 1, 0, false, 20);
        assert_eq!(
            protect(&mut direct, &plain),
            protect(&mut client_tx, &plain)
        );

        assert_eq!(
            SrtpContext::from_dtls(profile, &material[1..], DtlsRole::Client).map(|_| ()),
            Err(Error::KeyLength)
        );
        assert_eq!(SrtpProfile::from_dtls_id(profile.dtls_id()), Some(profile));
    }
    assert_eq!(SrtpProfile::from_dtls_id(0x0003), None);
    assert_eq!(
        SrtpContext::new(SrtpProfile::AeadAes256Gcm, &[0; 16], &[0; 12]).map(|_| ()),
        Err(Error::KeyLength)
    );
    assert_eq!(
        SrtpContext::new(SrtpProfile::Aes128CmHmacSha1_80, &[0; 16], &[0; 12]).map(|_| ()),
        Err(Error::KeyLength)
    );
}

#[test]
fn srtcp_index_runs_out() {
    let (mut tx, _) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let state = SsrcState {
        rtcp_next: MAX_SRTCP_INDEX,
        ..SsrcState::default()
    };
    tx.store(4, state).expect("room");
    let plain = rtcp(4, 8);
    let mut buf = [0u8; 64];
    buf[..plain.len()].copy_from_slice(&plain);
    assert!(tx.protect_rtcp(&mut buf, plain.len()).is_ok());
    buf[..plain.len()].copy_from_slice(&plain);
    assert_eq!(
        tx.protect_rtcp(&mut buf, plain.len()),
        Err(Error::IndexExhausted)
    );
}

#[test]
fn debug_output_shows_no_keys() {
    let (tx, _) = pair(SrtpProfile::Aes128CmHmacSha1_80);
    let shown = format!("{tx:?}");
    assert_eq!(
        shown,
        "SrtpContext { profile: Aes128CmHmacSha1_80, ssrcs: 0, .. }"
    );
    assert_eq!(Error::Replay.to_string(), "replayed or too old");
}
