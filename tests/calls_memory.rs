//! Heap memory per relayed call: live heap bytes (allocated − freed, counted by a
//! counting allocator) that `Calls` keeps for each relayed app → SIP call (PCMU both legs,
//! SRTP ⇄ RTP) once it is answered, DTLS is up and packets have flowed, as the slope
//! between 50 and 150 calls. The simulated browsers' and phones' own memory is left out.
//! Prints the figure and fails when it grows past the bound.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "../benches/support/browser_sim.rs"]
mod browser_sim;
#[path = "../benches/support/calls_sim.rs"]
#[allow(dead_code)] // `measure` is the other tests'
mod calls_sim;
#[path = "../benches/support/stun.rs"]
mod stun;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator's counters are the process's: under `cargo test` (tests on threads of one
/// process) the tests take turns, so one's allocations are not counted in the other's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Live heap bytes a relayed call may keep: the target is 32 KiB of RSS per call; 22 796
/// measured (relayed packets wait in the shard's arena, not in a queue per call; the DTLS
/// state is dropped once the browser's media flows).
const MAX_BYTES_PER_CALL: i64 = 24 * 1024;

#[test]
fn a_relayed_call_keeps_little_heap() {
    let _turn = one_at_a_time();
    let (first, added) = (50, 100);
    let mut sim = calls_sim::Sim::new(first);
    sim.packets(first * 100); // 2 s: buffers and queues at their steady size
    let region = Region::new(GLOBAL);
    let harness = sim.harness_bytes;
    sim.add_calls(added);
    sim.packets((first + added) * 100);
    let srgate = calls_sim::live_bytes(&region.change()) - (sim.harness_bytes - harness);
    assert_eq!(
        sim.shard.calls.count(),
        first + added,
        "every call is still up"
    );
    let per_call = srgate / added as i64;
    eprintln!("heap per relayed call: {per_call} bytes ({srgate} bytes for {added} calls)");
    assert!(
        per_call <= MAX_BYTES_PER_CALL,
        "{per_call} bytes per relayed call (bound {MAX_BYTES_PER_CALL})"
    );
}

/// Live heap bytes a transcoded call may keep through Rust's allocator (Opus ⇄ PCMU: two
/// jitter buffers, the transcoders' queues, the browser leg); 40 950 measured. libopus'
/// encoder and decoder (about 48 KiB together) come from C's `malloc` and are not counted
/// here; the target, 128 KiB of RSS per transcoded call, covers both.
const MAX_BYTES_PER_TRANSCODED_CALL: i64 = 48 * 1024;

#[test]
fn a_transcoded_call_keeps_its_codecs_and_little_more() {
    let _turn = one_at_a_time();
    let (first, added) = (20, 40);
    let mut sim = calls_sim::Sim::transcoded(first);
    sim.packets(first * 100);
    let region = Region::new(GLOBAL);
    let harness = sim.harness_bytes;
    sim.add_calls(added);
    sim.packets((first + added) * 100);
    let srgate = calls_sim::live_bytes(&region.change()) - (sim.harness_bytes - harness);
    assert_eq!(sim.shard.calls.count(), first + added);
    let per_call = srgate / added as i64;
    eprintln!("heap per transcoded call: {per_call} bytes ({srgate} bytes for {added} calls)");
    assert!(
        per_call <= MAX_BYTES_PER_TRANSCODED_CALL,
        "{per_call} bytes per transcoded call (bound {MAX_BYTES_PER_TRANSCODED_CALL})"
    );
}
