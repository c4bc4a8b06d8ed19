//! Fuzzes srgate's RTP reader (`wire::rtp::Packet::new_checked` and every accessor) and
//! what reads payloads straight off it (the RFC 4733 telephone-event receiver).
//! Invariants: a checked packet is version 2; header, payload and padding are in bounds
//! and add up to the packet; the CSRC list and extension agree with the header bits; the
//! setters write what the getters read; a fixed header emitted by `Header::emit` reads
//! back equal.
//!
//! Run: `cargo +nightly fuzz run rtp fuzz/seeds/rtp`
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::media::dtmf::DtmfReceiver;
use srgate::wire::rtp::{HEADER_LEN, Header, Packet, VERSION};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    assert_eq!(p.version(), VERSION);
    let len = data.len();
    let header_len = p.header_len();
    assert!(header_len >= HEADER_LEN + 4 * usize::from(p.csrc_count()));
    let range = p.payload_range();
    assert_eq!(range.start, header_len);
    assert!(range.start <= range.end && range.end <= len);
    assert_eq!(range.end + p.padding_len(), len);
    assert_eq!(p.payload(), &data[range.clone()]);
    if p.padding() {
        assert!(p.padding_len() > 0);
    } else {
        assert_eq!(p.padding_len(), 0);
    }
    assert_eq!(p.csrcs().count(), usize::from(p.csrc_count()));
    assert_eq!(p.csrc(usize::from(p.csrc_count())), None);
    match p.extension() {
        Some(ext) => {
            assert!(p.extension_bit());
            assert_eq!(ext.data.len() % 4, 0);
            assert_eq!(
                HEADER_LEN + 4 * usize::from(p.csrc_count()) + 4 + ext.data.len(),
                header_len
            );
        }
        None => assert!(!p.extension_bit()),
    }
    assert!(p.payload_type() < 128);
    let header = Header::parse(&p);

    // setters on a copy
    let mut copy = Packet::new_checked(data.to_vec()).expect("same bytes");
    copy.set_marker(!header.marker);
    copy.set_payload_type(header.payload_type ^ 0x55);
    copy.set_sequence_number(header.sequence_number.wrapping_add(1));
    copy.set_timestamp(header.timestamp.wrapping_add(160));
    copy.set_ssrc(!header.ssrc);
    assert_eq!(copy.marker(), !header.marker);
    assert_eq!(copy.payload_type(), (header.payload_type ^ 0x55) & 0x7f);
    assert_eq!(
        copy.sequence_number(),
        header.sequence_number.wrapping_add(1)
    );
    assert_eq!(copy.timestamp(), header.timestamp.wrapping_add(160));
    assert_eq!(copy.ssrc(), !header.ssrc);
    assert_eq!(copy.payload_range(), range);
    let payload_len = copy.payload_mut().len();
    assert_eq!(payload_len, range.len());
    assert!(
        Packet::new_checked(copy.into_inner()).is_ok(),
        "setters keep a packet valid"
    );

    // a fixed header srgate writes reads back equal
    let mut out = vec![0u8; HEADER_LEN + p.payload().len()];
    assert_eq!(header.emit(&mut out), Ok(HEADER_LEN));
    out[HEADER_LEN..].copy_from_slice(p.payload());
    let again = Packet::new_checked(&out[..]).expect("emitted header is valid");
    assert_eq!(Header::parse(&again), header);
    assert_eq!(again.payload(), p.payload());
    assert!(header.emit(&mut [0u8; HEADER_LEN - 1]).is_err());

    let mut dtmf = DtmfReceiver::default();
    dtmf.push(header.ssrc, header.timestamp, p.payload());
    dtmf.push(header.ssrc, header.timestamp, p.payload());
    assert!(dtmf.received_digits <= 1);
    while dtmf.poll().is_some() {}
});
