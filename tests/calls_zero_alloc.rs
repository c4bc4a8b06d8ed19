//! The whole per-packet path of a shard's call layer allocates nothing in steady state:
//! 50 relayed calls (SRTP ⇄ RTP) driven through `Calls` for 30 s of simulated time, RTCP
//! reports and timers included, counted by a counting allocator. The browsers' ICE consent
//! checks (one per call every 2 s) are counted apart: the STUN agent allocates there.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "../benches/support/calls_sim.rs"]
mod calls_sim;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn relayed_packets_through_calls_allocate_nothing() {
    let calls = 50;
    let mut sim = calls_sim::Sim::new(calls);
    sim.packets(calls * 300); // 6 s: buffers, queues and heaps at their steady size
    sim.sent = 0;
    sim.sent_to_browsers = 0;
    sim.checks_sent = 0;
    sim.check_allocations = 0;
    let pairs = calls * 1500; // 30 s of every call sending every 20 ms
    let region = Region::new(GLOBAL);
    sim.packets(pairs);
    let stats = region.change();
    assert!(
        sim.sent >= 2 * pairs as u64,
        "srgate relays both ways: {} datagrams ({} to browsers) for {} packets",
        sim.sent,
        sim.sent_to_browsers,
        2 * pairs
    );
    assert_eq!(sim.calls.count(), calls, "every call is still up");
    let media = (stats.allocations + stats.reallocations) as u64 - sim.check_allocations;
    eprintln!(
        "{} media packets: {media} allocations; {} consent checks: {} allocations",
        2 * pairs,
        sim.checks_sent,
        sim.check_allocations
    );
    assert_eq!(media, 0, "{stats:?} over {} packets", 2 * pairs);
    assert!(
        sim.checks_sent >= (calls * 14) as u64,
        "consent checks were answered"
    );
}
