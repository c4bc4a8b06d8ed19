//! srgate's media path: codecs, the jitter buffer and the transcoding pipeline.
//!
//! Everything here is sans-IO and allocates at stream setup only: packets go in as byte
//! slices with the time they arrived, packets come out into caller-owned buffers, and
//! `poll_timeout` says when to come back. [`echo`] is the echo service; the same
//! [`transcode::Transcoder`] carries one direction of a bridged call.

pub mod bridge;
pub mod codec;
pub mod dtmf;
pub mod echo;
pub mod h264;
pub mod jitter;
pub mod relay;
pub mod stats;
pub mod transcode;
