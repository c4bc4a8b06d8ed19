//! rtpengine, the reference media relay, driven over its "ng" control protocol: bencoded
//! dictionaries over UDP, each request prefixed with a cookie the reply repeats. The
//! harness uses `offer` (the browser's SDP → the SDP for the phone), `answer` (the phone's
//! SDP → the SDP for the browser) and `delete`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A bencoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum B {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<B>),
    /// Keys in any order; encoding sorts them, as bencode wants.
    Dict(Vec<(String, B)>),
}

impl B {
    pub fn s(text: &str) -> B {
        B::Str(text.as_bytes().to_vec())
    }

    pub fn list(items: &[&str]) -> B {
        B::List(items.iter().map(|t| B::s(t)).collect())
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            B::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            B::Str(s) => {
                out.extend_from_slice(format!("{}:", s.len()).as_bytes());
                out.extend_from_slice(s);
            }
            B::List(items) => {
                out.push(b'l');
                for i in items {
                    i.encode(out);
                }
                out.push(b'e');
            }
            B::Dict(entries) => {
                let mut sorted: Vec<&(String, B)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push(b'd');
                for (k, v) in sorted {
                    B::s(k).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value from the start of `input`; returns it and the bytes after it.
    pub fn decode(input: &[u8]) -> Option<(B, &[u8])> {
        match *input.first()? {
            b'i' => {
                let end = input.iter().position(|c| *c == b'e')?;
                let n = std::str::from_utf8(&input[1..end]).ok()?.parse().ok()?;
                Some((B::Int(n), &input[end + 1..]))
            }
            b'l' => {
                let mut rest = &input[1..];
                let mut items = Vec::new();
                // bounded by the input's length: every item consumes at least one byte
                while *rest.first()? != b'e' {
                    let (item, r) = B::decode(rest)?;
                    items.push(item);
                    rest = r;
                }
                Some((B::List(items), &rest[1..]))
            }
            b'd' => {
                let mut rest = &input[1..];
                let mut entries = Vec::new();
                // bounded by the input's length, as for lists
                while *rest.first()? != b'e' {
                    let (B::Str(k), r) = B::decode(rest)? else {
                        return None;
                    };
                    let (v, r) = B::decode(r)?;
                    entries.push((String::from_utf8(k).ok()?, v));
                    rest = r;
                }
                Some((B::Dict(entries), &rest[1..]))
            }
            b'0'..=b'9' => {
                let colon = input.iter().position(|c| *c == b':')?;
                let len: usize = std::str::from_utf8(&input[..colon]).ok()?.parse().ok()?;
                let body = input.get(colon + 1..colon + 1 + len)?;
                Some((B::Str(body.to_vec()), &input[colon + 1 + len..]))
            }
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&B> {
        match self {
            B::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<String> {
        match self {
            B::Str(s) => String::from_utf8(s.clone()).ok(),
            _ => None,
        }
    }
}

/// A blocking ng client (requests are answered within milliseconds on loopback).
pub struct Ng {
    socket: UdpSocket,
    to: SocketAddr,
    cookie: u64,
    buf: Vec<u8>,
}

impl Ng {
    pub fn new(to: SocketAddr) -> io::Result<Ng> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Ng {
            socket,
            to,
            cookie: 0,
            buf: vec![0; 65_536],
        })
    }

    /// How long a reply may take (5 s unless set).
    pub fn set_timeout(&self, d: Duration) -> io::Result<()> {
        self.socket.set_read_timeout(Some(d))
    }

    /// Sends `request` and returns the reply, an error when rtpengine says `error`.
    pub fn call(&mut self, request: Vec<(String, B)>) -> Result<B, String> {
        self.cookie += 1;
        let cookie = format!("c{}", self.cookie);
        let mut packet = format!("{cookie} ").into_bytes();
        B::Dict(request).encode(&mut packet);
        self.socket
            .send_to(&packet, self.to)
            .map_err(|e| format!("ng send: {e}"))?;
        // bounded: replies to older cookies (a retransmission's) are skipped, 16 at most
        for _ in 0..16 {
            let n = self
                .socket
                .recv(&mut self.buf)
                .map_err(|e| format!("ng reply: {e}"))?;
            let reply = &self.buf[..n];
            let Some(rest) = reply.strip_prefix(format!("{cookie} ").as_bytes()) else {
                continue;
            };
            let (value, _) = B::decode(rest).ok_or("ng: the reply is not bencode")?;
            return match value.get("result").and_then(B::text).as_deref() {
                Some("ok") | Some("pong") => Ok(value),
                other => Err(format!(
                    "rtpengine: {} {}",
                    other.unwrap_or("?"),
                    value
                        .get("error-reason")
                        .and_then(B::text)
                        .unwrap_or_default()
                )),
            };
        }
        Err("ng: no reply with our cookie".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trips_with_sorted_keys() {
        let v = B::Dict(vec![
            ("sdp".into(), B::s("v=0")),
            ("command".into(), B::s("offer")),
            ("flags".into(), B::list(&["trust-address"])),
            ("n".into(), B::Int(-3)),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(
            out,
            b"d7:command5:offer5:flagsl13:trust-addresse1:ni-3e3:sdp3:v=0e".to_vec()
        );
        let (back, rest) = B::decode(&out).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back.get("sdp").and_then(B::text).as_deref(), Some("v=0"));
        assert_eq!(back.get("n"), Some(&B::Int(-3)));
        assert!(B::decode(b"d3:sdp").is_none());
    }
}
