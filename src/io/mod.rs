//! The I/O shell: the only part of srgate with sockets, syscalls, threads and clocks.
//!
//! One mio reactor per shard, each on its own thread. Shard 0 also runs the control
//! plane: SIP over UDP and TCP (the sans-IO [`crate::sip::endpoint::Endpoint`]) and the
//! HTTP API (`/health`). The other shards carry media in later work; today they only wait
//! for shutdown. SIGINT/SIGTERM arrive through a self-pipe registered with mio; shard 0
//! then lets the endpoint un-register (bounded to [`SHUTDOWN_GRACE`]) and wakes the other
//! shards to exit.
#![allow(clippy::disallowed_methods)] // the clock is read here, and only here

mod api;
mod rtp;
mod shard;
pub mod sys;
mod tcp;
mod web;

pub use shard::{RunError, SHUTDOWN_GRACE, run};
