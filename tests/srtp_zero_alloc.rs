//! SRTP allocates nothing per packet: in steady state, protect and unprotect of RTP and
//! RTCP, for every profile, run under a counting global allocator and the count stays 0.
//! One test only, so that no other test thread allocates while the count runs.

use std::alloc::System;

use srgate::webrtc::srtp::{SrtpContext, SrtpProfile};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ROUNDS: u16 = 200;

/// Protects and unprotects `ROUNDS` RTP packets (crossing the sequence wrap) and as many
/// RTCP packets; returns a checksum so that nothing is optimised away.
fn run(tx: &mut SrtpContext, rx: &mut SrtpContext, first_seq: u16, buf: &mut [u8; 1500]) -> usize {
    let mut sum = 0;
    for i in 0..ROUNDS {
        let seq = first_seq.wrapping_add(i);
        buf[..12].copy_from_slice(&[0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[12..172].fill(seq as u8);
        let n = tx.protect_rtp(buf, 172).expect("protects");
        let n = rx.unprotect_rtp(&mut buf[..n]).expect("unprotects");
        sum += n + usize::from(buf[12]);

        buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 7]);
        buf[8..40].fill(3);
        let n = tx.protect_rtcp(buf, 40).expect("protects");
        let n = rx.unprotect_rtcp(&mut buf[..n]).expect("unprotects");
        sum += n;
    }
    sum
}

#[test]
fn protect_and_unprotect_allocate_nothing() {
    let mut buf = [0u8; 1500];
    for profile in [
        SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfile::Aes128CmHmacSha1_32,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
    ] {
        let key = vec![7u8; profile.master_key_len()];
        let salt = vec![9u8; profile.master_salt_len()];
        let mut tx = SrtpContext::new(profile, &key, &salt).expect("key lengths");
        let mut rx = SrtpContext::new(profile, &key, &salt).expect("key lengths");
        // Warm up: the SSRC is learnt, CPU features are detected.
        let mut seq = 65_400u16;
        let mut checksum = run(&mut tx, &mut rx, seq, &mut buf);
        // The harness's own thread may allocate while a round runs: an allocation by SRTP
        // shows in every round, so the quietest of three rounds is ours.
        let fewest = (0..3)
            .map(|_| {
                seq = seq.wrapping_add(ROUNDS);
                let region = Region::new(GLOBAL);
                checksum += run(&mut tx, &mut rx, seq, &mut buf);
                let stats = region.change();
                stats.allocations + stats.reallocations
            })
            .min();
        assert_eq!(fewest, Some(0), "{profile:?}: protect/unprotect allocated");
        assert!(checksum > 0);
    }
}
