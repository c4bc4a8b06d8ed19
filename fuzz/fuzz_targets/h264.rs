//! Fuzzes srgate's H.264 depacketizer (`media::h264::Depacketizer`), which takes a phone's
//! video RTP: the input is a series of RTP packets, each after a 2-byte big-endian length.
//! Invariants: every picture it gives is AVCC whose length-prefixed NAL units tile it
//! exactly, none of them an SPS or PPS (those go to the configuration record), and the
//! record, when there is one, starts with version 1 and holds the SPS and PPS lengths it
//! says; a picture never exceeds `MAX_ACCESS_UNIT`.
//!
//! Run: `cargo +nightly fuzz run h264 fuzz/seeds/h264`
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::media::h264::{Depacketizer, MAX_ACCESS_UNIT};

fuzz_target!(|data: &[u8]| {
    let mut d = Depacketizer::new();
    let mut rest = data;
    // bounded: each round consumes at least two bytes
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let packet = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let given = d.push(packet).map(|au| {
            assert!(au.data.len() <= MAX_ACCESS_UNIT);
            let mut nal = au.data;
            assert!(!nal.is_empty());
            while !nal.is_empty() {
                assert!(nal.len() >= 4, "a length prefix");
                let n = u32::from_be_bytes([nal[0], nal[1], nal[2], nal[3]]) as usize;
                assert!(n >= 1 && 4 + n <= nal.len(), "the unit fits");
                assert!(!matches!(nal[4] & 0x1f, 7 | 8), "no SPS/PPS in a picture");
                nal = &nal[4 + n..];
            }
            au.data.len()
        });
        if let Some(len) = given {
            assert_eq!(d.last_picture().map(<[u8]>::len), Some(len));
        }
        let _ = d.take_loss();
    }
    let mut record = Vec::new();
    if let Some(n) = d.config_record(&mut record) {
        assert_eq!(record[0], 1);
        let sps = usize::from(u16::from_be_bytes([record[6], record[7]]));
        let pps = usize::from(u16::from_be_bytes([record[9 + sps], record[10 + sps]]));
        assert_eq!(n, 11 + sps + pps);
    }
});
