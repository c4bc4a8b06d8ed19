//! The shard core's packet path at scale: relayed calls (PCMU both legs, SRTP ⇄ RTP)
//! driven through `Calls` — the whole per-packet path of a shard without its sockets —
//! at 10, 100 and 1 000 concurrent calls, one RTP packet each way per step, every call
//! sending every 20 ms of simulated time, timers fired as the shard fires them.
//!
//! Printed, measured side by side in one run: CPU per relayed packet at each call count,
//! and the ratio to the 10-call figure (target: flat, ≤ 1.25 at 1 000 calls); heap
//! allocations per media packet in steady state (asserted 0; the browsers' ICE consent
//! checks, every 2 s per call, are answered inside too and their allocations are left
//! out).
//!
//! Run: `cargo bench --bench calls` (under `cargo test --benches` it runs a small, quick
//! version that checks the allocations only).

use std::alloc::System;
use std::time::Instant;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "support/calls_sim.rs"]
mod calls_sim;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Nanoseconds per relayed packet (both directions counted) with `calls` calls.
fn per_packet(calls: usize, pairs: usize) -> (f64, u64) {
    let mut sim = calls_sim::Sim::new(calls);
    // warm up: every call's buffers, queues and timers reach their steady size
    // (6 s of simulated time: the first RTCP reports and consent checks are behind us)
    sim.packets(calls * 300);
    sim.sent = 0;
    sim.check_allocations = 0;
    #[allow(clippy::disallowed_methods)] // a benchmark reads the real clock
    let start = Instant::now();
    let region = Region::new(GLOBAL);
    sim.packets(pairs);
    let stats = region.change();
    let elapsed = start.elapsed();
    assert!(
        sim.sent >= 2 * pairs as u64,
        "srgate relays: {} of {}",
        sim.sent,
        2 * pairs
    );
    // the STUN agent's allocations for consent checks are not the media path's
    let media = (stats.allocations + stats.reallocations) as u64 - sim.check_allocations;
    (elapsed.as_nanos() as f64 / (2 * pairs) as f64, media)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (counts, pairs): (&[usize], usize) = if full {
        (&[10, 100, 1000], 400_000)
    } else {
        (&[10, 50], 2_000)
    };
    let mut rows = Vec::new();
    for &calls in counts {
        rows.push((calls, per_packet(calls, pairs)));
    }
    let base = rows[0].1.0;
    println!("relayed calls through the shard core (Calls), {pairs} packet pairs each:");
    println!(
        "{:>7} {:>12} {:>9} {:>14}",
        "calls", "ns/packet", "vs 10", "allocations"
    );
    for (calls, (ns, allocs)) in &rows {
        println!("{calls:>7} {ns:>12.0} {:>9.2} {allocs:>14}", ns / base);
    }
    for (calls, (_, allocs)) in &rows {
        assert_eq!(
            *allocs, 0,
            "heap allocations in steady state with {calls} calls"
        );
    }
}
