//! AMF0 (Adobe's Action Message Format 0, the "AMF0 File Format Specification") as RTMP
//! commands use it: a writer into a caller's buffer for the commands a publisher sends, and
//! a borrowing reader for the server's replies. Reading allocates nothing: strings and
//! objects are views into the message, and nesting is bounded ([`MAX_DEPTH`]) so that no
//! reply can make the reader recurse without end.

use core::fmt;

/// Deepest nesting of objects and arrays a reply may use.
pub const MAX_DEPTH: usize = 8;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;

/// Why AMF0 bytes could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AmfError {
    /// The value runs past the end of the message.
    Truncated,
    /// A type marker this reader does not know (AMF3, references, XML…).
    UnsupportedType(u8),
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The output buffer is full.
    BufferFull,
}

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmfError::Truncated => f.write_str("AMF0 value truncated"),
            AmfError::UnsupportedType(t) => write!(f, "unsupported AMF0 type marker {t:#04x}"),
            AmfError::TooDeep => write!(f, "AMF0 values nested deeper than {MAX_DEPTH}"),
            AmfError::BufferFull => f.write_str("AMF0 output buffer full"),
        }
    }
}

impl std::error::Error for AmfError {}

/// Appends AMF0 values to a byte buffer whose capacity was reserved beforehand; a value
/// that does not fit is [`AmfError::BufferFull`] and the buffer is left as it was.
pub struct AmfWriter<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl<'a> AmfWriter<'a> {
    /// Writes after `out`'s current content, never past `limit` bytes in total.
    pub fn new(out: &'a mut Vec<u8>, limit: usize) -> Self {
        AmfWriter { out, limit }
    }

    fn put(&mut self, parts: &[&[u8]]) -> Result<(), AmfError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.out.len() + len > self.limit {
            return Err(AmfError::BufferFull);
        }
        for part in parts {
            self.out.extend_from_slice(part);
        }
        Ok(())
    }

    pub fn number(&mut self, value: f64) -> Result<(), AmfError> {
        self.put(&[&[NUMBER], &value.to_be_bytes()])
    }

    pub fn boolean(&mut self, value: bool) -> Result<(), AmfError> {
        self.put(&[&[BOOLEAN, u8::from(value)]])
    }

    pub fn null(&mut self) -> Result<(), AmfError> {
        self.put(&[&[NULL]])
    }

    /// A string value (long strings above 65 535 bytes are never needed here: refused).
    pub fn string(&mut self, value: &str) -> Result<(), AmfError> {
        let len = u16::try_from(value.len()).map_err(|_| AmfError::BufferFull)?;
        self.put(&[&[STRING], &len.to_be_bytes(), value.as_bytes()])
    }

    pub fn object_start(&mut self) -> Result<(), AmfError> {
        self.put(&[&[OBJECT]])
    }

    fn key(&mut self, key: &str) -> Result<(), AmfError> {
        let len = u16::try_from(key.len()).map_err(|_| AmfError::BufferFull)?;
        self.put(&[&len.to_be_bytes(), key.as_bytes()])
    }

    pub fn property_string(&mut self, key: &str, value: &str) -> Result<(), AmfError> {
        let mark = self.out.len();
        let result = self.key(key).and_then(|()| self.string(value));
        if result.is_err() {
            self.out.truncate(mark);
        }
        result
    }

    pub fn property_number(&mut self, key: &str, value: f64) -> Result<(), AmfError> {
        let mark = self.out.len();
        let result = self.key(key).and_then(|()| self.number(value));
        if result.is_err() {
            self.out.truncate(mark);
        }
        result
    }

    pub fn object_end(&mut self) -> Result<(), AmfError> {
        self.put(&[&[0, 0, OBJECT_END]])
    }
}

/// One value read from a message; strings and objects borrow the message bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    Boolean(bool),
    /// A string's bytes (AMF0 strings are UTF-8, but a peer may send anything).
    String(&'a [u8]),
    /// An object or ECMA array: its properties, checked to be well formed.
    Object(Object<'a>),
    /// A strict array, a date or other value srgate reads past without using.
    Other,
    Null,
    Undefined,
}

impl<'a> Value<'a> {
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::String(bytes) => core::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// The properties of an object (or ECMA array), already checked to be well formed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object<'a> {
    body: &'a [u8],
    depth: usize,
}

impl<'a> Object<'a> {
    /// The value of the first property named `key`.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        let mut reader = Reader {
            buf: self.body,
            pos: 0,
        };
        loop {
            let name = reader.key().ok()?;
            if name.is_empty() && reader.peek() == Some(OBJECT_END) {
                return None;
            }
            let value = reader.value(self.depth + 1).ok()?;
            if name == key.as_bytes() {
                return Some(value);
            }
        }
    }

    /// A property's string value, if it has one.
    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(|v| v.as_str())
    }
}

/// Reads values one after another from a message body.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next value, or `None` at the end of the message.
    pub fn next_value(&mut self) -> Option<Result<Value<'a>, AmfError>> {
        if self.is_empty() {
            return None;
        }
        Some(self.value(0))
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        let end = self.pos.checked_add(n).ok_or(AmfError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(AmfError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<usize, AmfError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn key(&mut self) -> Result<&'a [u8], AmfError> {
        let len = self.u16()?;
        self.take(len)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let marker = self.take(1)?[0];
        match marker {
            NUMBER => {
                let b = self.take(8)?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                Ok(Value::Number(f64::from_be_bytes(raw)))
            }
            BOOLEAN => Ok(Value::Boolean(self.take(1)?[0] != 0)),
            STRING => {
                let len = self.u16()?;
                Ok(Value::String(self.take(len)?))
            }
            LONG_STRING => {
                let len = self.u32()?;
                Ok(Value::String(self.take(len)?))
            }
            NULL => Ok(Value::Null),
            UNDEFINED => Ok(Value::Undefined),
            OBJECT => self.object(depth),
            ECMA_ARRAY => {
                // the count is a hint only; the properties end with an object end marker
                self.take(4)?;
                self.object(depth)
            }
            STRICT_ARRAY => {
                let count = self.u32()?;
                for _ in 0..count {
                    // each element takes at least one byte: a huge count ends as Truncated
                    self.value(depth + 1)?;
                }
                Ok(Value::Other)
            }
            DATE => {
                self.take(10)?;
                Ok(Value::Other)
            }
            other => Err(AmfError::UnsupportedType(other)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, AmfError> {
        let start = self.pos;
        loop {
            let key = self.key()?;
            if key.is_empty() && self.peek() == Some(OBJECT_END) {
                self.pos += 1;
                let body = &self.buf[start..self.pos];
                return Ok(Value::Object(Object { body, depth }));
            }
            self.value(depth + 1)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `_result` of a connect shaped like the ones RTMP servers send.
    fn connect_result() -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = AmfWriter::new(&mut out, 4096);
        w.string("_result").unwrap();
        w.number(1.0).unwrap();
        w.object_start().unwrap();
        w.property_string("fmsVer", "FMS/3,0,1,123").unwrap();
        w.property_number("capabilities", 31.0).unwrap();
        w.object_end().unwrap();
        w.object_start().unwrap();
        w.property_string("level", "status").unwrap();
        w.property_string("code", "NetConnection.Connect.Success")
            .unwrap();
        w.property_string("description", "Connection succeeded.")
            .unwrap();
        w.property_number("objectEncoding", 0.0).unwrap();
        w.object_end().unwrap();
        out
    }

    #[test]
    fn emit_exact_bytes() {
        let mut out = Vec::new();
        let mut w = AmfWriter::new(&mut out, 64);
        w.string("connect").unwrap();
        w.number(1.0).unwrap();
        w.null().unwrap();
        w.boolean(true).unwrap();
        w.object_start().unwrap();
        w.property_string("app", "live").unwrap();
        w.object_end().unwrap();
        let want: &[u8] = &[
            0x02, 0, 7, b'c', b'o', b'n', b'n', b'e', b'c', b't', // "connect"
            0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0,    // 1.0
            0x05, // null
            0x01, 1, // true
            0x03, 0, 3, b'a', b'p', b'p', 0x02, 0, 4, b'l', b'i', b'v', b'e', 0, 0, 0x09,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn writer_refuses_past_its_limit_and_keeps_what_it_had() {
        let mut out = Vec::new();
        let mut w = AmfWriter::new(&mut out, 12);
        w.string("abc").unwrap();
        assert_eq!(w.property_string("key", "value"), Err(AmfError::BufferFull));
        assert_eq!(w.number(2.0), Err(AmfError::BufferFull));
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn parse_connect_result() {
        let bytes = connect_result();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.next_value().unwrap().unwrap().as_str(), Some("_result"));
        assert_eq!(r.next_value().unwrap().unwrap().as_number(), Some(1.0));
        let Value::Object(props) = r.next_value().unwrap().unwrap() else {
            panic!("properties object")
        };
        assert_eq!(props.get("capabilities"), Some(Value::Number(31.0)));
        let Value::Object(info) = r.next_value().unwrap().unwrap() else {
            panic!("info object")
        };
        assert_eq!(info.str("code"), Some("NetConnection.Connect.Success"));
        assert_eq!(info.str("level"), Some("status"));
        assert_eq!(info.str("missing"), None);
        assert!(r.next_value().is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = connect_result();
        for len in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..len]);
            while let Some(value) = r.next_value() {
                if value.is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut bytes = Vec::new();
        for _ in 0..100 {
            bytes.extend_from_slice(&[OBJECT, 0, 1, b'k']);
        }
        assert_eq!(
            Reader::new(&bytes).next_value(),
            Some(Err(AmfError::TooDeep))
        );
        let huge_array = [STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, NULL];
        assert_eq!(
            Reader::new(&huge_array).next_value(),
            Some(Err(AmfError::Truncated))
        );
        assert_eq!(
            Reader::new(&[0x11]).next_value(),
            Some(Err(AmfError::UnsupportedType(0x11)))
        );
    }

    #[test]
    fn ecma_array_reads_as_object() {
        let bytes = [
            ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'n', NUMBER, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
        ];
        let Some(Ok(Value::Object(obj))) = Reader::new(&bytes).next_value() else {
            panic!("object")
        };
        assert_eq!(obj.get("n"), Some(Value::Number(2.0)));
    }
}
