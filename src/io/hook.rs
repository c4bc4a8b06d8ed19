//! `[door] open_hook`: each door opened from a call is POSTed as JSON to the door
//! controller's relay by a thread of its own (blocking connect, write and read, each with a
//! 2 s limit), so no shard ever waits on it. At most [`QUEUE`] posts wait; more are dropped
//! and logged (the door-open log line is written either way).
//!
//! The body: `{"event":"door_open","door":"1006","user":"anna","call":"s…","digits":"*1",
//! "time":1733380000}` (`time` in Unix seconds). The hook's answer is logged: its status
//! code, or why it could not be reached.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::call::DoorOpened;
use crate::config::HookUrl;

/// Posts waiting at most.
const QUEUE: usize = 64;
/// Each step of a post (connect, write, read) gives up after this.
const STEP_LIMIT: Duration = Duration::from_secs(2);

/// A thread that POSTs JSON bodies to hooks one after the other; dropping it ends the
/// thread once its queue is empty. At most [`QUEUE`] posts wait; more are dropped and
/// logged.
pub struct Poster {
    tx: SyncSender<(HookUrl, String)>,
    /// What the log calls these hooks (`door hook`, `REST hook`).
    what: &'static str,
}

impl Poster {
    pub fn start(what: &'static str) -> std::io::Result<Poster> {
        let (tx, rx) = sync_channel::<(HookUrl, String)>(QUEUE);
        std::thread::Builder::new()
            .name(what.replace(' ', "-"))
            .spawn(move || {
                // ends when the shard drops its sender
                for (target, body) in rx {
                    match post(&target, &body) {
                        Ok(code) if (200..300).contains(&code) => {
                            log::info!("{what} {target}: {code}")
                        }
                        Ok(code) => log::warn!("{what} {target} answered {code}"),
                        Err(why) => log::warn!("{what} {target}: {why}"),
                    }
                }
            })?;
        Ok(Poster { tx, what })
    }

    /// Queues the post of `body` to `url`.
    pub fn send(&self, url: &HookUrl, body: String) {
        match self.tx.try_send((url.clone(), body)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log::warn!(
                    "{} {url}: {QUEUE} posts waiting, this one dropped",
                    self.what
                )
            }
            Err(TrySendError::Disconnected(_)) => {
                log::warn!("{} {url}: its thread is gone", self.what)
            }
        }
    }
}

/// The door hook's queue.
pub struct DoorHook {
    poster: Poster,
    url: HookUrl,
}

impl DoorHook {
    /// Starts the thread that posts to `url`.
    pub fn start(url: HookUrl) -> std::io::Result<DoorHook> {
        Ok(DoorHook {
            poster: Poster::start("door hook")?,
            url,
        })
    }

    /// Queues the post of `door` (`unix_s`: when, in Unix seconds).
    pub fn send(&self, door: &DoorOpened, unix_s: u64) {
        let body = serde_json::json!({
            "event": "door_open",
            "door": door.door,
            "user": door.user,
            "call": door.call,
            "digits": door.digits,
            "time": unix_s,
        })
        .to_string();
        self.poster.send(&self.url, body);
    }
}

/// One POST of `body` to `url`: the status code of the answer.
fn post(url: &HookUrl, body: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&url.addr, STEP_LIMIT)
        .map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_write_timeout(Some(STEP_LIMIT))
        .and_then(|()| stream.set_read_timeout(Some(STEP_LIMIT)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: srgate\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path,
        url.addr,
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send: {e}"))?;
    // the status line is all srgate reads (bounded: 1 KB, STEP_LIMIT per read)
    let mut head = [0u8; 1024];
    let mut got = 0;
    while got < head.len() && !head[..got].contains(&b'\n') {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    line.split_whitespace()
        .nth(1)
        .filter(|_| line.starts_with("HTTP/"))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// The thread posts the door's JSON and reads the relay's status.
    #[test]
    fn a_door_opened_is_posted_as_json() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = HookUrl {
            addr: listener.local_addr().unwrap(),
            path: "/relay/1?on=1".into(),
        };
        let body = r#"{"event":"door_open"}"#;
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            // bounded: the client sends one small request
            for _ in 0..64 {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 || got.ends_with(b"}") {
                    break;
                }
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            String::from_utf8(got).unwrap()
        });
        assert_eq!(post(&url, body), Ok(204));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /relay/1?on=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("Content-Type: application/json\r\n"),
            "{request}"
        );
        assert!(request.ends_with(body), "{request}");
        // nobody listening: an error, not a hang
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = HookUrl {
            addr: closed.local_addr().unwrap(),
            path: "/".into(),
        };
        drop(closed);
        assert!(post(&gone, body).unwrap_err().contains("cannot connect"));
    }
}
