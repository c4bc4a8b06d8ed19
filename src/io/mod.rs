//! The I/O shell: the only part of srgate with sockets, syscalls, threads and clocks.
//!
//! One mio reactor per shard, each on its own thread, each owning its calls with their
//! WebRTC and RTP sockets (`media`, `worker`). Shard 0 also runs the control plane: SIP
//! over UDP and TCP (the sans-IO [`crate::sip::endpoint::Endpoint`]), the browsers'
//! WebSockets and the HTTP API; it hands each new call to the shard with the fewest calls
//! and routes the call's requests and SIP events there over a bounded channel (`control`, `startup`).
//! SIGINT/SIGTERM arrive through a self-pipe registered with mio; shard 0 then has every
//! shard end its calls, lets the endpoint un-register (bounded to [`SHUTDOWN_GRACE`]) and
//! exits.
#![allow(clippy::disallowed_methods)] // the clock is read here, and only here

mod api;
mod cdr;
mod control;
mod hook;
mod ice_tcp;
mod media;
mod resolve;
mod rtmp_conns;
mod rtp;
mod startup;
mod stream;
pub mod sys;
mod tcp;
mod tls;
mod web;
mod worker;

pub use control::SHUTDOWN_GRACE;
pub use startup::{RunError, run};
/// The TLS client configuration (`[tls] ca` or the system's bundle), for RTMPS too.
pub use tls::client_config as tls_client_config;
/// The web listener's HTTP side without sockets (the fuzzer drives it).
pub use web::{Head, WebPolicy, read_head};

/// Timers are fired on a shared grid of this step: a loop woken only by its clock sleeps
/// until the first grid point at or after its next deadline, so the 20 ms output clocks
/// of many transcoded calls are served by one wake-up (and one `sendmmsg`) instead of one
/// each. A deadline is late by less than one step; a packet still wakes the loop at once.
pub const TIMER_GRID: std::time::Duration = std::time::Duration::from_millis(4);

/// How long a loop sleeps at `now` for its next `deadline`: up to the first point of
/// [`TIMER_GRID`] (counted from `anchor`, the loop's start) at or after the deadline.
pub(crate) fn sleep_until_grid(
    now: std::time::Instant,
    deadline: std::time::Instant,
    anchor: std::time::Instant,
) -> std::time::Duration {
    let since = deadline.saturating_duration_since(anchor).as_nanos();
    let step = TIMER_GRID.as_nanos();
    let rounded = since.div_ceil(step).saturating_mul(step);
    let at = anchor + std::time::Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX));
    at.saturating_duration_since(now)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{TIMER_GRID, sleep_until_grid};

    #[test]
    fn a_deadline_is_served_at_the_next_grid_point() {
        let anchor = Instant::now();
        let ms = Duration::from_millis;
        // on the grid: exactly then
        assert_eq!(
            sleep_until_grid(anchor, anchor + TIMER_GRID, anchor),
            TIMER_GRID
        );
        // between two points: the later one, never earlier than the deadline
        assert_eq!(
            sleep_until_grid(anchor + ms(1), anchor + ms(5), anchor),
            ms(7)
        );
        // already past: at once
        assert_eq!(
            sleep_until_grid(anchor + ms(10), anchor + ms(3), anchor),
            Duration::ZERO
        );
        // before the anchor: no sleep
        assert_eq!(sleep_until_grid(anchor, anchor, anchor), Duration::ZERO);
    }
}
