//! Fuzzes srgate's RTCP reader: `Compound::check` and iteration, `Packet` accessors, SR/RR
//! views (`ReportPacket`) with their sender info and report blocks, and `is_rtcp`.
//! Invariants: a valid compound's packets tile the datagram; every packet yielded is
//! version 2 and in bounds; iteration yields at most one error, last; report blocks and
//! sender info read back equal after `Report::emit`; `set_ssrc` changes only the SSRC.
//!
//! Run: `cargo +nightly fuzz run rtcp fuzz/seeds/rtcp`
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::wire::rtcp::{
    Compound, HEADER_LEN, MAX_REPORT_BLOCKS, Packet, REPORT_BLOCK_LEN, Report, ReportBlock,
    ReportPacket, is_rtcp, packet_type,
};

fuzz_target!(|data: &[u8]| {
    let _ = is_rtcp(data);
    let valid = Compound::check(data).is_ok();
    let mut total = 0;
    let mut errors = 0;
    let mut count = 0;
    for item in Compound::new(data) {
        assert_eq!(errors, 0, "nothing after an error");
        let p = match item {
            Ok(p) => p,
            Err(_) => {
                assert!(!valid);
                errors += 1;
                continue;
            }
        };
        count += 1;
        if count == 1 && valid {
            assert!(matches!(p.packet_type(), packet_type::SR | packet_type::RR));
        }
        one(p, &data[total..]);
        total += Packet::new_checked(&data[total..]).unwrap().len();
        assert!(total <= data.len());
    }
    if valid {
        assert_eq!(total, data.len());
        assert!(count > 0);
    }
});

fn one(p: Packet<&[u8]>, at: &[u8]) {
    assert_eq!(p.version(), 2);
    assert!(!p.is_empty());
    let len = p.len();
    assert_eq!(len % 4, 0);
    assert!(len >= HEADER_LEN && len <= at.len());
    assert!(p.as_bytes().len() <= len);
    assert_eq!(p.as_bytes(), &at[..p.as_bytes().len()]);
    assert!(usize::from(p.count()) < 32);
    let ssrc = p.ssrc();

    let mut copy = at[..len].to_vec();
    let mut w = Packet::new_checked(&mut copy[..]).expect("same bytes");
    w.set_ssrc(0xdead_beef);
    match ssrc {
        Some(_) => {
            assert_eq!(w.ssrc(), Some(0xdead_beef));
            assert_eq!(copy[..4], at[..4]);
            assert_eq!(copy[8..], at[8..len]);
        }
        None => assert_eq!(&copy[..], &at[..len]),
    }

    let Ok(r) = ReportPacket::new_checked(p) else {
        return;
    };
    assert_eq!(r.sender_info().is_some(), r.is_sender_report());
    let blocks: Vec<ReportBlock> = r.report_blocks().collect();
    assert_eq!(blocks.len(), r.report_count());
    assert!(blocks.len() <= MAX_REPORT_BLOCKS);
    for b in &blocks {
        assert!((-0x80_0000..=0x7f_ffff).contains(&b.cumulative_lost));
        let mut raw = [0u8; REPORT_BLOCK_LEN];
        b.emit(&mut raw);
        assert_eq!(ReportBlock::parse(&raw), *b);
    }
    let report = Report {
        ssrc: r.ssrc(),
        sender_info: r.sender_info(),
        blocks: &blocks,
    };
    let mut buf = vec![0u8; report.buffer_len()];
    let n = report.emit(&mut buf).expect("fits");
    assert_eq!(n, buf.len());
    assert!(Compound::check(&buf).is_ok());
    let again = ReportPacket::new_checked(Packet::new_checked(&buf[..]).unwrap()).unwrap();
    assert_eq!(again.ssrc(), r.ssrc());
    assert_eq!(again.sender_info(), r.sender_info());
    assert!(again.report_blocks().eq(blocks.iter().copied()));
}
