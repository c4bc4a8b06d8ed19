//! SIP parsing speed: srgate's zero-copy parser against `rsip` on the same messages in the
//! same run (a typical INVITE with SDP, a 200 OK with SDP, a REGISTER). Both sides parse
//! and read the same fields: top Via branch, CSeq, Call-ID, From and To tags, first
//! Contact URI. Heap allocations per parse are counted once for each side and printed.
//!
//! Run: `cargo bench --bench sip_parse -- --warm-up-time 1 --measurement-time 3`

use std::alloc::System;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rsip::prelude::*;
use srgate::wire::sip::Message;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// Counts allocations for the report below; it adds a few relaxed atomic operations per
// allocation, which only slows the allocating side (rsip).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const MESSAGES: [(&str, &[u8]); 3] = [
    (
        "invite_sdp",
        include_bytes!("../tests/data/rfc4475/typical/invite_sdp.sip"),
    ),
    (
        "ok_sdp",
        include_bytes!("../tests/data/rfc4475/typical/ok_sdp.sip"),
    ),
    (
        "register",
        include_bytes!("../tests/data/rfc4475/typical/register.sip"),
    ),
];

/// srgate: parse and read the fields a transaction and dialog layer needs.
fn srgate_parse(raw: &[u8]) -> usize {
    let m = Message::parse(raw).expect("valid message");
    let via = m.top_via().expect("Via");
    let cseq = m.cseq().expect("CSeq");
    let call_id = m.call_id().expect("Call-ID");
    let from = m.from().expect("From");
    let to = m.to().expect("To");
    let contact = m
        .contacts()
        .next()
        .expect("a Contact")
        .expect("valid Contact");
    via.branch.map_or(0, str::len)
        + cseq.seq as usize
        + cseq.method.as_str().len()
        + call_id.len()
        + from.tag.map_or(0, str::len)
        + to.tag.map_or(0, str::len)
        + contact.addr().map_or(0, |a| a.uri.as_str().len())
}

/// rsip: the same fields.
fn rsip_parse(raw: &[u8]) -> usize {
    let m = rsip::SipMessage::try_from(raw).expect("valid message");
    let via = m.via_header().expect("Via").typed().expect("typed Via");
    let cseq = m.cseq_header().expect("CSeq").typed().expect("typed CSeq");
    let call_id = m.call_id_header().expect("Call-ID").value().len();
    let from = m.from_header().expect("From").typed().expect("typed From");
    let to = m.to_header().expect("To").typed().expect("typed To");
    let contact = m
        .contact_header()
        .expect("Contact")
        .typed()
        .expect("typed Contact");
    via.branch().map_or(0, |b| b.to_string().len())
        + cseq.seq as usize
        + cseq.method.to_string().len()
        + call_id
        + from.tag().map_or(0, |t| t.to_string().len())
        + to.tag().map_or(0, |t| t.to_string().len())
        + contact.uri.to_string().len()
}

fn allocations(f: fn(&[u8]) -> usize, raw: &[u8]) -> usize {
    let region = Region::new(GLOBAL);
    black_box(f(black_box(raw)));
    region.change().allocations
}

fn bench(c: &mut Criterion) {
    for (name, raw) in MESSAGES {
        assert!(srgate_parse(raw) > 0 && rsip_parse(raw) > 0);
        println!(
            "{name}: {} bytes, heap allocations per parse: srgate {}, rsip {}",
            raw.len(),
            allocations(srgate_parse, raw),
            allocations(rsip_parse, raw)
        );
        let mut group = c.benchmark_group(name);
        group.bench_function("srgate", |b| b.iter(|| srgate_parse(black_box(raw))));
        group.bench_function("rsip", |b| b.iter(|| rsip_parse(black_box(raw))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
