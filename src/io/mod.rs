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
mod media;
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
