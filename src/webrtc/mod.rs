//! The browser's media transport: ICE-lite (RFC 8445 §2.5 via the `is` crate), DTLS-SRTP
//! (RFC 5763/5764 via `dimpl`), and the first-byte demultiplexing of one UDP port
//! (RFC 7983). [`leg::WebRtcLeg`] puts them together behind the four sans-IO verbs.

pub mod cert;
pub mod demux;
pub mod dtls;
pub mod ice;
pub mod leg;
