//! The RTMP chunk stream (Adobe RTMP specification 1.0, §5.3): messages cut into chunks
//! with a basic header (format and chunk stream id), a message header of 11, 7, 3 or 0
//! bytes and an extended timestamp when a timestamp does not fit in 24 bits.
//!
//! [`ChunkWriter`] writes messages into the caller's output buffer, choosing the shortest
//! header the previous message on the same chunk stream allows. [`ChunkReader`]
//! reassembles the server's messages with bounds: at most [`MAX_IN_STREAMS`] chunk streams
//! at once, messages up to [`MAX_IN_MESSAGE`] bytes, every buffer sized when the reader is
//! created. Nothing is committed until a whole chunk is there, so input may arrive cut
//! anywhere.

use core::fmt;

/// The chunk size both sides start with (§5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Longest message accepted from the server. A publisher only gets replies and control
/// messages, a few hundred bytes each.
pub const MAX_IN_MESSAGE: usize = 16 * 1024;

/// Chunk streams the server may use at the same time.
pub const MAX_IN_STREAMS: usize = 8;

/// Longest chunk header: 3-byte basic header, 11-byte message header, extended timestamp.
pub const MAX_HEADER: usize = 18;

const EXTENDED: u32 = 0xFF_FFFF;

/// Why the chunk stream could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// The output buffer has no room for the message (the caller must drain it first).
    BufferFull,
    /// The server announced a message longer than [`MAX_IN_MESSAGE`].
    MessageTooLarge(u32),
    /// The server used more than [`MAX_IN_STREAMS`] chunk streams.
    TooManyStreams,
    /// A chunk stream started with a header that refers to an earlier one.
    NoPreviousHeader(u32),
    /// A chunk size of 0 or above 2^31 - 1 (§5.4.1).
    BadChunkSize(u32),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::BufferFull => f.write_str("RTMP output buffer full"),
            ChunkError::MessageTooLarge(n) => {
                write!(f, "server message of {n} bytes (limit {MAX_IN_MESSAGE})")
            }
            ChunkError::TooManyStreams => {
                write!(f, "server used more than {MAX_IN_STREAMS} chunk streams")
            }
            ChunkError::NoPreviousHeader(csid) => {
                write!(f, "chunk stream {csid} continued before it started")
            }
            ChunkError::BadChunkSize(n) => write!(f, "invalid chunk size {n}"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// What a message header says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Milliseconds on the message stream's timeline.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
}

/// A chunk size from a Set Chunk Size message: 31 bits, not 0.
pub fn valid_chunk_size(size: u32) -> Result<u32, ChunkError> {
    if size == 0 || size > 0x7FFF_FFFF {
        return Err(ChunkError::BadChunkSize(size));
    }
    Ok(size)
}

#[derive(Debug, Clone, Copy, Default)]
struct OutState {
    used: bool,
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Chunk stream ids the writer may use (2 is protocol control, §5.4).
pub const MAX_OUT_CSID: u8 = 15;

/// Writes messages as chunks.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    chunk_size: usize,
    streams: [OutState; MAX_OUT_CSID as usize + 1],
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
            streams: [OutState::default(); MAX_OUT_CSID as usize + 1],
        }
    }
}

impl ChunkWriter {
    /// The size takes effect for the messages written after this call; the Set Chunk Size
    /// message telling the peer must be written before them.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        self.chunk_size = valid_chunk_size(size)? as usize;
        Ok(())
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Appends the message made of `parts` on chunk stream `csid` (2..=[`MAX_OUT_CSID`])
    /// to `out`, which must stay within `limit` bytes; if it would not, nothing is written.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        csid: u8,
        header: MessageHeader,
        parts: &[&[u8]],
    ) -> Result<(), ChunkError> {
        debug_assert!(
            (2..=MAX_OUT_CSID).contains(&csid),
            "writer's chunk stream ids"
        );
        let csid = csid.clamp(2, MAX_OUT_CSID);
        let length: usize = parts.iter().map(|p| p.len()).sum();
        let length32 = u32::try_from(length)
            .ok()
            .filter(|&n| n <= 0xFF_FFFF)
            .ok_or(ChunkError::BufferFull)?;
        let prev = self.streams[usize::from(csid)];
        let (fmt, time_field) = if !prev.used
            || prev.stream_id != header.stream_id
            || header.timestamp < prev.timestamp
        {
            (0u8, header.timestamp)
        } else if prev.length != length32 || prev.type_id != header.type_id {
            (1, header.timestamp - prev.timestamp)
        } else {
            (2, header.timestamp - prev.timestamp)
        };
        let extended = time_field >= EXTENDED;
        let ext_len = if extended { 4 } else { 0 };
        let chunks = length.div_ceil(self.chunk_size).max(1);
        let first = 1 + [11, 7, 3][usize::from(fmt)] + ext_len;
        let total = first + (chunks - 1) * (1 + ext_len) + length;
        if out.len() + total > limit {
            return Err(ChunkError::BufferFull);
        }

        out.push(fmt << 6 | csid);
        let field = time_field.min(EXTENDED).to_be_bytes();
        out.extend_from_slice(&field[1..]);
        if fmt <= 1 {
            out.extend_from_slice(&length32.to_be_bytes()[1..]);
            out.push(header.type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&header.stream_id.to_le_bytes());
        }
        if extended {
            out.extend_from_slice(&time_field.to_be_bytes());
        }
        let mut in_chunk = 0;
        for part in parts {
            let mut part = *part;
            while !part.is_empty() {
                if in_chunk == self.chunk_size {
                    out.push(3 << 6 | csid);
                    if extended {
                        out.extend_from_slice(&time_field.to_be_bytes());
                    }
                    in_chunk = 0;
                }
                let n = part.len().min(self.chunk_size - in_chunk);
                out.extend_from_slice(&part[..n]);
                part = &part[n..];
                in_chunk += n;
            }
        }
        self.streams[usize::from(csid)] = OutState {
            used: true,
            timestamp: header.timestamp,
            length: length32,
            type_id: header.type_id,
            stream_id: header.stream_id,
        };
        Ok(())
    }
}

#[derive(Debug)]
struct InStream {
    csid: u32,
    header: MessageHeader,
    delta: u32,
    length: u32,
    extended: bool,
    /// The message being reassembled (capacity [`MAX_IN_MESSAGE`], reserved at creation).
    payload: Vec<u8>,
    in_progress: bool,
}

/// What one call of [`ChunkReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The input does not hold a whole chunk yet.
    NeedMore,
    /// A chunk of `consumed` bytes was taken; `complete` names the slot of a message it
    /// completed, to be fetched with [`ChunkReader::message`].
    Chunk {
        consumed: usize,
        complete: Option<usize>,
    },
}

/// Reassembles the server's messages from its chunks.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: u32,
    streams: Vec<InStream>,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::with_capacity(MAX_IN_STREAMS),
        }
    }
}

impl ChunkReader {
    /// The peer's chunk size, from its Set Chunk Size message.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        self.chunk_size = valid_chunk_size(size)?;
        Ok(())
    }

    /// Drops a partly received message (the peer's Abort message, §5.4.2).
    pub fn abort(&mut self, csid: u32) {
        if let Some(stream) = self.streams.iter_mut().find(|s| s.csid == csid) {
            stream.payload.clear();
            stream.in_progress = false;
        }
    }

    /// The complete message in `slot` (from [`Read::Chunk`]).
    pub fn message(&self, slot: usize) -> Option<(MessageHeader, &[u8])> {
        let stream = self.streams.get(slot)?;
        Some((stream.header, &stream.payload))
    }

    /// Reads at most one chunk from the front of `input`.
    pub fn read(&mut self, input: &[u8]) -> Result<Read, ChunkError> {
        let Some(&b0) = input.first() else {
            return Ok(Read::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match input.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Read::NeedMore),
            },
            1 => match input.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(Read::NeedMore),
            },
            id => (u32::from(id), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(fields) = input.get(pos..pos + header_len) else {
            return Ok(Read::NeedMore);
        };
        pos += header_len;
        let slot = self.streams.iter().position(|s| s.csid == csid);
        let previous = slot.map(|i| &self.streams[i]);
        if fmt != 0 && previous.is_none() {
            return Err(ChunkError::NoPreviousHeader(csid));
        }
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let time_field = if fmt < 3 { u24(&fields[0..3]) } else { 0 };
        let extended = match (fmt, previous) {
            (3, Some(prev)) => prev.extended,
            _ => time_field == EXTENDED,
        };
        let mut ext_value = 0;
        if extended {
            let Some(b) = input.get(pos..pos + 4) else {
                return Ok(Read::NeedMore);
            };
            ext_value = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            pos += 4;
        }
        let time_value = if extended { ext_value } else { time_field };

        // the header as it stands once this chunk is taken
        let continuing = previous.is_some_and(|p| p.in_progress && fmt == 3);
        let (mut header, mut delta, mut length) = match previous {
            Some(p) => (p.header, p.delta, p.length),
            None => (
                MessageHeader {
                    timestamp: 0,
                    type_id: 0,
                    stream_id: 0,
                },
                0,
                0,
            ),
        };
        match fmt {
            0 => {
                length = u24(&fields[3..6]);
                header.type_id = fields[6];
                header.stream_id =
                    u32::from_le_bytes([fields[7], fields[8], fields[9], fields[10]]);
                header.timestamp = time_value;
                delta = 0;
            }
            1 | 2 => {
                if fmt == 1 {
                    length = u24(&fields[3..6]);
                    header.type_id = fields[6];
                }
                delta = time_value;
                header.timestamp = header.timestamp.wrapping_add(delta);
            }
            _ if !continuing => header.timestamp = header.timestamp.wrapping_add(delta),
            _ => {}
        }
        if length as usize > MAX_IN_MESSAGE {
            return Err(ChunkError::MessageTooLarge(length));
        }
        let received = if continuing {
            previous.map_or(0, |p| p.payload.len())
        } else {
            0
        };
        let piece = (length as usize - received).min(self.chunk_size as usize);
        let Some(data) = input.get(pos..pos + piece) else {
            return Ok(Read::NeedMore);
        };

        let slot = match slot {
            Some(i) => i,
            None => {
                if self.streams.len() == MAX_IN_STREAMS {
                    return Err(ChunkError::TooManyStreams);
                }
                self.streams.push(InStream {
                    csid,
                    header,
                    delta,
                    length,
                    extended,
                    payload: Vec::with_capacity(MAX_IN_MESSAGE),
                    in_progress: false,
                });
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[slot];
        if !continuing {
            stream.payload.clear();
        }
        stream.header = header;
        stream.delta = delta;
        stream.length = length;
        stream.extended = extended;
        stream.payload.extend_from_slice(data);
        let complete = stream.payload.len() == length as usize;
        stream.in_progress = !complete;
        Ok(Read::Chunk {
            consumed: pos + piece,
            complete: complete.then_some(slot),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(timestamp: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            timestamp,
            type_id,
            stream_id,
        }
    }

    #[test]
    fn emit_set_chunk_size_exactly() {
        let mut w = ChunkWriter::default();
        let mut out = Vec::new();
        w.write(&mut out, 64, 2, header(0, 1, 0), &[&4096u32.to_be_bytes()])
            .unwrap();
        assert_eq!(out, [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]);
    }

    #[test]
    fn headers_shrink_and_long_messages_split() {
        let mut w = ChunkWriter::default();
        let mut out = Vec::new();
        let payload = [7u8; 300];
        w.write(
            &mut out,
            4096,
            4,
            header(1000, 8, 1),
            &[&payload[..100], &payload[100..]],
        )
        .unwrap();
        // fmt 0 (12) + 128 + fmt 3 (1) + 128 + fmt 3 (1) + 44
        assert_eq!(out.len(), 12 + 300 + 2);
        assert_eq!(out[0], 0x04);
        assert_eq!(out[12 + 128], 0xC4);
        out.clear();
        w.write(&mut out, 4096, 4, header(1021, 8, 1), &[&payload])
            .unwrap();
        assert_eq!(out[0], 0x84, "same length and type: fmt 2");
        assert_eq!(&out[1..4], &[0, 0, 21]);
        out.clear();
        w.write(&mut out, 4096, 4, header(1042, 8, 1), &[&payload[..5]])
            .unwrap();
        assert_eq!(out[0], 0x44, "new length: fmt 1");
        out.clear();
        w.write(&mut out, 4096, 4, header(5, 8, 1), &[&payload[..5]])
            .unwrap();
        assert_eq!(out[0], 0x04, "time went back: fmt 0");
        let limit = out.len() + 10;
        assert_eq!(
            w.write(&mut out, limit, 4, header(6, 8, 1), &[&payload]),
            Err(ChunkError::BufferFull)
        );
        assert_eq!(out.len(), 12 + 5, "nothing written when it does not fit");
    }

    /// Everything the writer produces, the reader reads back, fed in every cut.
    #[test]
    fn round_trip_with_extended_timestamps_and_cuts() {
        let mut w = ChunkWriter::default();
        w.set_chunk_size(50).unwrap();
        let mut out = Vec::new();
        let payloads: [&[u8]; 3] = [&[1; 120], &[2; 120], &[3; 10]];
        let times = [0x0100_0000, 0x0100_0014, 0x0200_0000];
        for (p, t) in payloads.iter().zip(times) {
            w.write(&mut out, 8192, 6, header(t, 9, 1), &[p]).unwrap();
        }
        for cut in [1, 2, 3, 7, 13, 50, out.len()] {
            let mut r = ChunkReader::default();
            r.set_chunk_size(50).unwrap();
            let mut staged = Vec::new();
            let mut got = Vec::new();
            for piece in out.chunks(cut) {
                staged.extend_from_slice(piece);
                loop {
                    match r.read(&staged).unwrap() {
                        Read::NeedMore => break,
                        Read::Chunk { consumed, complete } => {
                            staged.drain(..consumed);
                            if let Some(slot) = complete {
                                let (h, body) = r.message(slot).unwrap();
                                got.push((h.timestamp, body.to_vec()));
                            }
                        }
                    }
                }
            }
            assert!(staged.is_empty());
            let want: Vec<_> = times
                .iter()
                .zip(payloads)
                .map(|(t, p)| (*t, p.to_vec()))
                .collect();
            assert_eq!(got, want, "cut {cut}");
        }
    }

    #[test]
    fn reader_limits() {
        let mut r = ChunkReader::default();
        // fmt 1 on a chunk stream never seen
        assert_eq!(
            r.read(&[0x43, 0, 0, 0, 0, 0, 1, 20]),
            Err(ChunkError::NoPreviousHeader(3))
        );
        // a message longer than the limit
        assert_eq!(
            r.read(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0]),
            Err(ChunkError::MessageTooLarge(0xFF_FFFF))
        );
        // too many chunk streams: each opens with an empty message
        for csid in 3..3 + MAX_IN_STREAMS as u8 {
            let chunk = [csid, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0];
            assert!(matches!(
                r.read(&chunk),
                Ok(Read::Chunk { consumed: 12, .. })
            ));
        }
        assert_eq!(
            r.read(&[40, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0]),
            Err(ChunkError::TooManyStreams)
        );
        assert_eq!(r.set_chunk_size(0), Err(ChunkError::BadChunkSize(0)));
        assert_eq!(
            r.set_chunk_size(0x8000_0000),
            Err(ChunkError::BadChunkSize(0x8000_0000))
        );
    }

    #[test]
    fn two_and_three_byte_chunk_stream_ids() {
        let mut r = ChunkReader::default();
        let chunk = [0x00, 10, 0, 0, 0, 0, 0, 1, 20, 0, 0, 0, 0, 0xAA];
        let Ok(Read::Chunk { consumed, complete }) = r.read(&chunk) else {
            panic!("chunk")
        };
        assert_eq!(consumed, chunk.len());
        assert_eq!(r.message(complete.unwrap()).unwrap().1, &[0xAA]);
        let chunk = [0x01, 0, 1, 0, 0, 0, 0, 0, 1, 20, 0, 0, 0, 0, 0xBB];
        assert!(matches!(
            r.read(&chunk),
            Ok(Read::Chunk { consumed: 15, .. })
        ));
        assert_eq!(r.read(&[0x01, 0]), Ok(Read::NeedMore));
    }
}
