//! Byte-stream connections on the reactor: buffered, bounded, non-blocking. Used for SIP
//! over TCP and TLS (RFC 3261 §18.3 framing by Content-Length) and the HTTP API.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use super::stream::Stream;

/// What a read from a connection found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// More bytes may come.
    Open,
    /// The peer closed its side (or the connection broke).
    Closed,
    /// The receive buffer is at its limit: the peer sends more than we accept.
    Overflow,
    /// This call's share is read; more may be waiting.
    More,
}

/// One non-blocking stream with a bounded receive buffer and an unbounded-but-capped
/// send queue.
pub struct Conn {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub rbuf: Vec<u8>,
    pub wbuf: Vec<u8>,
    /// Still connecting (outgoing) or waiting for the first readiness.
    pub connecting: bool,
    pub last_activity: Instant,
    /// When the connection was accepted or opened.
    pub opened: Instant,
    /// An accepted SIP connection that has not delivered a whole message yet (it must
    /// within a deadline: a client may not hold a slot by saying nothing, or only CRLFs).
    pub awaiting_first: bool,
    max_read: usize,
    max_write: usize,
}

impl Conn {
    pub fn new(
        stream: Stream,
        peer: SocketAddr,
        now: Instant,
        max_read: usize,
        max_write: usize,
    ) -> Self {
        Conn {
            stream,
            peer,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            connecting: false,
            last_activity: now,
            opened: now,
            awaiting_first: false,
            max_read,
            max_write,
        }
    }

    /// Reads until the socket would block, the peer closes, the buffer is full, or
    /// `chunk_limit` bytes came in this call ([`ReadOutcome::More`]: frame what is there,
    /// then call again).
    pub fn read_available(&mut self, now: Instant, chunk_limit: usize) -> ReadOutcome {
        let mut chunk = [0u8; 8192];
        let mut got = 0;
        loop {
            if self.rbuf.len() >= self.max_read {
                return ReadOutcome::Overflow;
            }
            if got >= chunk_limit {
                return ReadOutcome::More;
            }
            let room = (self.max_read - self.rbuf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.last_activity = now;
                    got += n;
                    self.rbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Queues bytes; false when the queue would exceed its cap (the peer does not read).
    pub fn queue(&mut self, bytes: &[u8]) -> bool {
        if self.wbuf.len() + bytes.len() > self.max_write {
            return false;
        }
        self.wbuf.extend_from_slice(bytes);
        true
    }

    /// Writes as much of the queue as the socket takes. Err when the connection broke.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.last_activity = now;
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        // TLS records rustls still holds
        self.stream.push_tls()
    }

    /// Whether the connection waits for writability: still connecting, bytes queued, or
    /// TLS records the socket did not take yet.
    pub fn wants_write(&self) -> bool {
        self.connecting || !self.wbuf.is_empty() || self.stream.tls_wants_write()
    }
}
