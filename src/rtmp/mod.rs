//! RTMP publishing (Adobe's "Real-Time Messaging Protocol" specification 1.0 and the
//! command sequence of Flash Media Live Encoder that every live service expects): the
//! client half that sends a call's audio (and later video) to nginx-rtmp, SRS, a CDN,
//! YouTube or Facebook Live.
//!
//! Sans-IO like the rest of the core: a [`Publisher`] never touches a socket, a clock or a
//! thread. The shell opens the TCP (or, for `rtmps://`, TLS) connection, feeds what it
//! reads to [`Publisher::handle_input`], writes what [`Publisher::poll_transmit`] gives and
//! confirms it with [`Publisher::advance_transmit`], and reads [`Publisher::poll_event`]:
//! [`Event::Connected`], [`Event::Publishing`] (media may flow), [`Event::Error`],
//! [`Event::Closed`]. Media goes in as FLV tag bodies with millisecond timestamps
//! ([`Publisher::send_audio`]; [`AAC_SEQUENCE_HEADER`] and [`AAC_RAW`] are the FLV
//! headers of AAC).
//!
//! - [`url`]: `rtmp://host[:port]/app[/instance]` and `rtmps://` addresses.
//! - [`handshake`]: C0/C1/C2 against S0/S1/S2.
//! - [`chunk`]: the chunk stream, both directions, with bounds on what the server sends.
//! - [`amf`]: AMF0 values for commands and replies.
//! - [`publisher`]: the session.
//!
//! The framing is our own: `rml_rtmp` (MIT) was considered, but its session allocates a
//! `Vec` per outgoing packet, sends no `releaseStream`/`FCPublish`, and pulls in `rand`
//! 0.8 and a second `hmac`; see the README's RTMP section.

pub mod amf;
pub mod chunk;
pub mod handshake;
pub mod publisher;
pub mod url;

#[cfg(test)]
mod tests;

use core::fmt;

pub use publisher::{Publisher, PublisherConfig, State};
pub use url::{RtmpUrl, UrlError};

/// FLV audio tag header of an AAC sequence header (AudioSpecificConfig follows): sound
/// format 10 (AAC), and the rate, size and channel bits FLV fixes for AAC (44 kHz, 16 bit,
/// stereo; the real values are in the AudioSpecificConfig).
pub const AAC_SEQUENCE_HEADER: [u8; 2] = [0xAF, 0x00];

/// FLV audio tag header of one raw AAC frame.
pub const AAC_RAW: [u8; 2] = [0xAF, 0x01];

/// FLV's audio codec id of AAC, for `onMetaData`'s `audiocodecid`.
pub const FLV_AUDIO_AAC: f64 = 10.0;

/// What happened to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server accepted `connect`.
    Connected,
    /// The server said `NetStream.Publish.Start`: media may be sent.
    Publishing,
    /// The session ended with this error.
    Error(RtmpError),
    /// The session ended cleanly (after [`Publisher::close`], or the server closed it then).
    Closed,
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtmpError {
    Handshake(handshake::HandshakeError),
    Chunk(chunk::ChunkError),
    Amf(amf::AmfError),
    /// A control message or reply without the fields it must have (the text names it).
    Malformed(&'static str),
    /// `connect` was refused (`_error`): the server's code and description.
    ConnectRejected {
        code: String,
        description: String,
    },
    /// `createStream` was refused.
    CreateStreamFailed {
        code: String,
        description: String,
    },
    /// `publish` was refused (e.g. `NetStream.Publish.BadName`: the name is in use).
    PublishRejected {
        code: String,
        description: String,
    },
    /// Media was sent before `NetStream.Publish.Start` or after the end.
    NotPublishing,
    /// The server closed the connection before the session ended.
    ConnectionClosed,
}

impl fmt::Display for RtmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtmpError::Handshake(e) => write!(f, "RTMP handshake: {e}"),
            RtmpError::Chunk(e) => write!(f, "RTMP chunk stream: {e}"),
            RtmpError::Amf(e) => write!(f, "RTMP command: {e}"),
            RtmpError::Malformed(what) => write!(f, "malformed RTMP {what} from the server"),
            RtmpError::ConnectRejected { code, description } => {
                write!(f, "RTMP connect refused: {code} {description}")
            }
            RtmpError::CreateStreamFailed { code, description } => {
                write!(f, "RTMP createStream refused: {code} {description}")
            }
            RtmpError::PublishRejected { code, description } => {
                write!(f, "RTMP publish refused: {code} {description}")
            }
            RtmpError::NotPublishing => f.write_str("the RTMP stream is not publishing"),
            RtmpError::ConnectionClosed => f.write_str("the RTMP server closed the connection"),
        }
    }
}

impl std::error::Error for RtmpError {}
