//! The plain RTMP handshake (Adobe RTMP specification 1.0, §5.2): the client sends C0
//! (version 3) and C1 (time, zero, 1528 random bytes), the server answers S0, S1 and S2,
//! the client echoes S1 as C2. Version 0 in C1's second field asks for this plain form,
//! which nginx-rtmp, SRS and the CDNs accept from publishers.

use core::fmt;

/// RTMP version 3, the only one there is.
pub const VERSION: u8 = 3;

/// Size of C1, C2, S1 and S2.
pub const PACKET: usize = 1536;

/// Why the handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// S0 named another version (an RTMPE or non-RTMP server, or TLS to a plain port).
    Version(u8),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Version(v) => {
                write!(f, "server answered RTMP version {v}, not {VERSION}")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Where the client side of the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// C0 and C1 are sent; waiting for S0 and S1.
    AwaitS0S1,
    /// C2 is sent; waiting for S2.
    AwaitS2,
    /// Done: what follows is the chunk stream.
    Done,
}

impl Handshake {
    /// Writes C0 and C1 into `out`: zero time, zero version, filler from `seed` (the
    /// server does not check it, it only echoes it back).
    pub fn start(out: &mut Vec<u8>, seed: u64) -> Handshake {
        out.push(VERSION);
        out.extend_from_slice(&[0; 8]);
        let mut x = seed | 1;
        while out.len() < 1 + PACKET {
            // xorshift64: cheap filler, no need for cryptographic randomness here
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let room = 1 + PACKET - out.len();
            out.extend_from_slice(&x.to_le_bytes()[..room.min(8)]);
        }
        Handshake::AwaitS0S1
    }

    /// Takes what it needs from the front of `input`: returns the bytes consumed, writing
    /// C2 into `out` when S1 has come.
    pub fn read(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HandshakeError> {
        match self {
            Handshake::AwaitS0S1 => {
                let Some(&version) = input.first() else {
                    return Ok(0);
                };
                if version != VERSION {
                    return Err(HandshakeError::Version(version));
                }
                let Some(s1) = input.get(1..1 + PACKET) else {
                    return Ok(0);
                };
                out.extend_from_slice(s1);
                *self = Handshake::AwaitS2;
                Ok(1 + PACKET)
            }
            Handshake::AwaitS2 => {
                if input.len() < PACKET {
                    return Ok(0);
                }
                // S2 should echo C1; servers differ in how exactly, and nothing depends
                // on it, so it is not checked
                *self = Handshake::Done;
                Ok(PACKET)
            }
            Handshake::Done => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0_c1_then_c2_echoes_s1() {
        let mut out = Vec::new();
        let mut hs = Handshake::start(&mut out, 42);
        assert_eq!(out.len(), 1 + PACKET);
        assert_eq!(&out[..9], &[3, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.clear();

        let mut server = vec![VERSION];
        server.extend((0..PACKET).map(|i| i as u8));
        // S0 and half of S1: nothing consumed, nothing sent
        assert_eq!(hs.read(&server[..700], &mut out), Ok(0));
        assert_eq!(hs, Handshake::AwaitS0S1);
        assert!(out.is_empty());
        assert_eq!(hs.read(&server, &mut out), Ok(1 + PACKET));
        assert_eq!(out, &server[1..]);
        assert_eq!(hs, Handshake::AwaitS2);
        assert_eq!(hs.read(&[0; 100], &mut out), Ok(0));
        assert_eq!(hs.read(&[0; PACKET + 5], &mut out), Ok(PACKET));
        assert_eq!(hs, Handshake::Done);
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut out = Vec::new();
        let mut hs = Handshake::start(&mut out, 1);
        // a TLS alert or an HTTP answer from a server that is not RTMP
        assert_eq!(
            hs.read(b"HTTP/1.1 400", &mut out),
            Err(HandshakeError::Version(b'H'))
        );
        assert_eq!(
            hs.read(&[0x15, 3, 3], &mut out),
            Err(HandshakeError::Version(0x15))
        );
    }
}
