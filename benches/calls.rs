//! The shard core's packet path at scale: relayed calls (PCMU both legs, SRTP ⇄ RTP)
//! driven through `Calls` — the whole per-packet path of a shard without its sockets —
//! at 10, 100 and 1 000 concurrent calls, one RTP packet each way per step, every call
//! sending every 20 ms of simulated time, timers fired as the shard fires them.
//!
//! Printed, measured side by side in one run: CPU per relayed packet at each call count
//! (the time spent in srgate's code, not in the simulated browsers and phones),
//! and the ratio to the 10-call figure (target: flat, ≤ 1.25 at 1 000 calls); heap
//! allocations per media packet in steady state (asserted 0; the browsers' ICE consent
//! checks, every 2 s per call, are answered inside too and their allocations are left
//! out).
//!
//! Run: `cargo bench --bench calls` (under `cargo test --benches` it runs a small, quick
//! version that checks the allocations only).

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[path = "support/browser_sim.rs"]
mod browser_sim;
#[path = "support/calls_sim.rs"]
mod calls_sim;
#[path = "support/stun.rs"]
mod stun;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One call count's simulation, warmed up.
fn warmed(calls: usize) -> calls_sim::Sim {
    let mut sim = calls_sim::Sim::new(calls);
    // warm up: every call's buffers, queues and timers reach their steady size
    // (6 s of simulated time: the first RTCP reports and consent checks are behind us)
    sim.packets(calls * 300);
    sim
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // The call counts are measured in turns, several rounds, and each figure is the
    // median of its rounds: a shared, noisy machine affects them all alike.
    let (counts, pairs, rounds): (&[usize], usize, usize) = if full {
        (&[10, 100, 1000], 100_000, 7)
    } else {
        (&[10, 50], 1_000, 1)
    };
    let mut sims: Vec<calls_sim::Sim> = counts.iter().map(|&n| warmed(n)).collect();
    let mut times = vec![Vec::new(); counts.len()];
    let mut allocations = vec![0u64; counts.len()];
    let mut measured = vec![0u64; counts.len()];
    for _ in 0..rounds {
        for (i, sim) in sims.iter_mut().enumerate() {
            let m = sim.measure(pairs);
            times[i].push(m.ns_per_packet);
            allocations[i] += m.media_allocations;
            measured[i] += m.packets;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    println!(
        "relayed calls through the shard core (Calls): median of {rounds} rounds of {pairs} packet pairs"
    );
    println!(
        "{:>7} {:>12} {:>9} {:>14} {:>12}",
        "calls", "ns/packet", "vs 10", "allocations", "packets"
    );
    for (i, calls) in counts.iter().enumerate() {
        println!(
            "{calls:>7} {:>12.0} {:>9.2} {:>14} {:>12}",
            medians[i],
            medians[i] / medians[0],
            allocations[i],
            measured[i]
        );
    }
    for (calls, allocs) in counts.iter().zip(&allocations) {
        assert_eq!(
            *allocs, 0,
            "heap allocations in steady state with {calls} calls"
        );
    }
}
