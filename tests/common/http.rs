//! A minimal HTTP/1.1 GET over `std::net::TcpStream`, enough to read srgate's `/health`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status code and body (headers dropped; chunked bodies are de-chunked).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `addr`; every socket operation is bounded by `timeout`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    )?;
    // Connection: close, so the body ends when the server closes; cap what we read
    let mut raw = Vec::new();
    stream.take(1 << 20).read_to_end(&mut raw)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    // bounded by the body's length: each round consumes at least the size line
    while !body.is_empty() {
        let (size_line, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            break;
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
    Some(out)
}

/// The raw JSON text of `"key": value` in a flat JSON object (a string's value without its
/// quotes). Enough for `/health`; not a JSON parser.
pub fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\"");
    let after_key = &json[json.find(&quoted)? + quoted.len()..];
    let value = after_key.trim_start().strip_prefix(':')?.trim_start();
    if let Some(string) = value.strip_prefix('"') {
        return string.split('"').next();
    }
    let end = value
        .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .unwrap_or(value.len());
    Some(&value[..end])
}
