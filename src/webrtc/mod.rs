//! The WebRTC leg: ICE-lite, DTLS-SRTP and SRTP/SRTCP protection.

pub mod srtp;
