//! The browser's media transport: ICE-lite (RFC 8445 §2.5 via the `is` crate), DTLS-SRTP
//! (RFC 5763/5764 via `dimpl`), SRTP/SRTCP protection in place (RFC 3711, RFC 7714), and
//! the first-byte demultiplexing of one UDP port (RFC 7983). [`leg::WebRtcLeg`] puts ICE
//! and DTLS together behind the four sans-IO verbs; [`srtp`] protects the media.

pub mod cert;
pub mod demux;
pub mod dtls;
pub mod ice;
pub mod leg;
pub mod srtp;
