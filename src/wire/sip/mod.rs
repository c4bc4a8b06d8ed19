//! srgate's SIP message layer: zero-copy parsing of requests and responses (RFC 3261 §7,
//! §20, §25) that borrows the receive buffer, typed headers parsed lazily, a builder for
//! outgoing messages and stream framing (§18.3). Liberal where RFC 4475 §3.1.1 asks an
//! element to accept, strict where §3.1.2 asks it to reject.
//!
//! Parsing never allocates: headers are spans in a fixed-capacity list
//! ([`MAX_HEADERS`]); building allocates one `Vec<u8>` per message.

mod builder;
mod cseq;
mod error;
mod framing;
mod header;
mod lex;
mod message;
mod method;
mod name_addr;
mod params;
mod uri;
mod via;

pub use builder::{MessageBuilder, reason_phrase};
pub use cseq::CSeq;
pub use error::Error;
pub use framing::{Frame, frame, frame_len};
pub use header::HeaderName;
pub use message::{MAX_HEADERS, MAX_MESSAGE, Message};
pub use method::Method;
pub use name_addr::{Contact, NameAddr};
pub use params::{ParamIter, Params};
pub use uri::{Host, Scheme, Uri};
pub use via::Via;
