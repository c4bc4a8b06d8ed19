//! srgate: a WebRTC ⇄ SIP voice gateway.
//!
//! # Layers
//!
//! - [`wire`]: stateless, zero-copy views over packet bytes (SIP today; STUN, RTP and RTCP
//!   later). Nothing here allocates while parsing.
//! - [`sip`]: the SIP behaviour of the gateway: RFC 3261 transactions, digest
//!   authentication, the proxy account's registration and the built-in registrar, wrapped
//!   in one sans-IO [`sip::endpoint::Endpoint`].
//! - [`sdp`], [`webrtc`]: the browser's media transport: SDP offer/answer, ICE-lite, DTLS,
//!   SRTP/SRTCP in place.
//! - [`media`]: RTP streams, jitter buffer, codecs (Opus, G.711) and transcoding.
//! - [`rtmp`]: a sans-IO RTMP publisher (handshake, chunk stream, AMF0 commands, FLV media)
//!   for relaying a call to an RTMP server.
//! - [`signal`]: the browser JSON protocol: messages, login tokens, sessions.
//! - [`call`]: what requests become: calls and their media (the run-loop contract is
//!   written down there).
//! - [`gateway`]: one shard's whole core, [`gateway::Gateway`]: its calls and, on shard
//!   0, the SIP endpoint, the browsers' sessions and the routing of calls to shards. The
//!   shard loops of `io` feed it and carry out what it says.
//! - [`config`]: the INI file (`conf/srgate.ini`, SRProxy's `rtx.conf` keys) into a typed
//!   [`config::Config`], with errors that name file, line and key.
//! - [`io`]: the only place with sockets, syscalls, threads and clocks: one mio reactor per
//!   shard.
//!
//! # The run-loop contract
//!
//! Every protocol state machine in the core is sans-IO and has the same four verbs:
//! `handle_input(now, …)` feeds it bytes or a fired timer; then the caller drains
//! `poll_transmit()` (bytes to send), `poll_event()` (what happened) and finally asks
//! `poll_timeout()` for the next instant at which it wants `handle_timeout(now)`.
//! The core never reads a clock (`clippy.toml` forbids `Instant::now` outside `src/io/`),
//! never touches a socket and never spawns a thread, so every behaviour, timers included,
//! is tested with a simulated clock.
#![deny(unsafe_code)]

pub mod call;
pub mod config;
pub mod gateway;
pub mod io;
pub mod logging;
pub mod media;
pub mod pii;
pub mod rate;
pub mod rest;
pub mod rtmp;
pub mod sdp;
pub mod signal;
pub mod sip;
pub mod webrtc;
pub mod wire;
