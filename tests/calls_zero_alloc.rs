//! The whole per-packet path of a shard's call layer allocates nothing in steady state:
//! 50 relayed calls (SRTP ⇄ RTP; and 20 with SDES SRTP toward SIP, SRTP ⇄ SRTP; and 20
//! transcoded, Opus ⇄ PCMU) driven
//! through `Calls` for 15 s (and 20 s) of simulated time after a warm-up, RTCP
//! reports and timers included, counted by a counting allocator. The browsers' ICE consent
//! checks (one per call every 2 s) are counted apart: the STUN agent allocates there.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[path = "../benches/support/browser_sim.rs"]
mod browser_sim;
#[path = "../benches/support/calls_sim.rs"]
mod calls_sim;
#[path = "../benches/support/stun.rs"]
mod stun;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator's counters are the process's: under `cargo test` (tests on threads of one
/// process) the tests take turns, so one's setup is not counted in the other's window.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn relayed_packets_through_calls_allocate_nothing() {
    let _turn = one_at_a_time();
    let calls = 50;
    let mut sim = calls_sim::Sim::new(calls);
    sim.packets(calls * 300); // 6 s: buffers, queues and heaps at their steady size
    // 15 s of every call sending every 20 ms (three RTCP intervals, seven consent checks
    // a call). Kept well under a minute of real time even on a loaded CI machine: the
    // test harness prints a notice from another thread once a test passes 60 s, and the
    // counting allocator counts every thread's allocations.
    let pairs = calls * 750;
    let m = sim.measure(pairs);
    assert_eq!(sim.shard.calls.count(), calls, "every call is still up");
    eprintln!(
        "{} media packets: {} allocations ({:.0} ns each, unoptimised); {} consent checks: {} allocations",
        m.packets, m.media_allocations, m.ns_per_packet, sim.checks_sent, sim.check_allocations
    );
    assert_eq!(m.media_allocations, 0, "over {} packets", m.packets);
    assert!(
        sim.checks_sent >= (calls * 7) as u64,
        "consent checks were answered"
    );
}

/// The same with the SIP leg SRTP keyed by SDES (SRTP ⇄ SRTP): protecting and
/// unprotecting toward SIP allocates nothing either.
#[test]
fn sdes_srtp_packets_through_calls_allocate_nothing() {
    let _turn = one_at_a_time();
    let calls = 20;
    let mut sim = calls_sim::Sim::with_sdes(calls);
    sim.packets(calls * 300);
    let m = sim.measure(calls * 1000);
    assert_eq!(sim.shard.calls.count(), calls, "every call is still up");
    assert!(
        sim.sent_to_browsers >= (calls * 1000) as u64,
        "the phones' SRTP reaches the browsers: {}",
        sim.sent_to_browsers
    );
    assert_eq!(m.media_allocations, 0, "over {} packets", m.packets);
}

/// The same for transcoded calls (the browsers send Opus, the phones PCMU: srgate decodes,
/// re-frames and encodes both ways through the jitter buffers): nothing allocated either.
#[test]
fn transcoded_packets_through_calls_allocate_nothing() {
    let _turn = one_at_a_time();
    let calls = 20;
    let mut sim = calls_sim::Sim::transcoded(calls);
    assert_eq!(
        sim.shard.calls.metrics().transcoded,
        calls as u64,
        "every call is transcoded (Opus ⇄ PCMU)"
    );
    sim.packets(calls * 300);
    let m = sim.measure(calls * 750);
    assert_eq!(sim.shard.calls.count(), calls, "every call is still up");
    assert!(
        sim.sent_to_browsers >= (calls * 700) as u64,
        "the phones' audio reaches the browsers, transcoded: {}",
        sim.sent_to_browsers
    );
    assert_eq!(m.media_allocations, 0, "over {} packets", m.packets);
}
