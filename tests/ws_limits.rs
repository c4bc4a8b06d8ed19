//! One host cannot take every web slot: a per-address cap on web connections, a login
//! deadline that closes idle WebSockets, and small buffers, so a flood of sockets neither
//! locks out other users nor holds on to memory. On loopback, with attackers at other
//! 127.0.0.0/8 source addresses.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{GatewayConfig, Srgate, TestDir, wait_for};
use serde_json::{Value, json};
use socket2::{Domain, Socket, Type};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// The default `[webrtc] max_conns_per_ip`.
const PER_ADDRESS: usize = 64;

fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A WebSocket to srgate from `from` (no Origin, like a native client).
fn ws_from(from: IpAddr, to: SocketAddr) -> Result<Ws, String> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .map_err(|e| e.to_string())?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let request = format!("ws://{to}/ws").into_client_request().unwrap();
    tungstenite::client(request, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// The next text message as JSON, or `{"closed": true}` when the socket closes.
fn recv(ws: &mut Ws) -> Value {
    for _ in 0..16 {
        match ws.read() {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
            Ok(Message::Close(_)) | Err(_) => return json!({"closed": true}),
            Ok(_) => continue,
        }
    }
    panic!("no text message");
}

fn ask(ws: &mut Ws, text: &str) -> Value {
    ws.send(Message::Text(text.into())).unwrap();
    recv(ws)
}

/// Resident anonymous memory (the heap; not the pages of the binary, which the first use
/// of a code path maps in) of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status")
}

/// The soft limit on open files of this process.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

#[test]
fn one_address_cannot_take_every_web_slot_and_idle_sockets_must_log_in() {
    let dir = TestDir::new("ws-per-address");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let web = srgate.web_addr();

    // An attacker at 127.0.0.2 opens far more WebSockets than its share.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..(3 * PER_ADDRESS) {
        match ws_from(source(2), web) {
            Ok(ws) => held.push(ws),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(held.len(), PER_ADDRESS, "{refused} refused");
    assert!(srgate.metric("web_connections_refused_total") >= 2 * PER_ADDRESS as u64);

    // Somebody else still gets in, and logs in.
    let mut user = ws_from(source(1), web).expect("another address connects");
    assert_eq!(
        ask(&mut user, r#"{"type":"login","user":"1001"}"#)["type"],
        "login_ok"
    );
    let mut other = ws_from(source(3), web).expect("a third address connects");

    // The attacker's sockets never log in: at the deadline (5 s) each is told and closed.
    for ws in held.iter_mut().chain([&mut other]) {
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    let first = recv(&mut held[0]);
    assert_eq!(first["code"], "NOT_LOGGEDIN", "{first}");
    assert_eq!(recv(&mut held[0])["closed"], true);
    let closed = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        (srgate.metric("websocket_login_timeouts_total") >= PER_ADDRESS as u64).then_some(())
    });
    assert!(closed.is_some(), "every idle socket is closed");
    assert_eq!(recv(&mut other)["code"], "NOT_LOGGEDIN");
    // the logged-in user is not touched by the deadline
    assert_eq!(ask(&mut user, r#"{"type":"ping"}"#)["type"], "pong");
    drop(held);
    // and the attacker's address has its slots back
    let freed = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        ws_from(source(2), web).ok()
    });
    assert!(
        freed.is_some(),
        "the address connects again once its sockets are gone"
    );
}

#[test]
fn a_flood_of_websockets_costs_little_memory_and_gives_it_back() {
    let dir = TestDir::new("ws-memory");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let web = srgate.web_addr();
    let pid = srgate.pid().expect("srgate runs");
    // warm up: one connection and login, so the baseline has the steady-state structures
    let mut warm = ws_from(source(1), web).unwrap();
    assert_eq!(
        ask(&mut warm, r#"{"type":"login","user":"1001"}"#)["type"],
        "login_ok"
    );
    let before = rss_kib(pid);

    // As many logged-in sockets as this process may open (up to 3 072), from 48 addresses.
    let wanted = (open_files_limit().saturating_sub(256) / 2).min(48 * PER_ADDRESS);
    let mut held = Vec::with_capacity(wanted);
    'open: for n in 0..48u8 {
        for _ in 0..PER_ADDRESS {
            if held.len() >= wanted {
                break 'open;
            }
            match ws_from(source(10 + n), web) {
                Ok(mut ws) => {
                    // logged in, so the login deadline does not thin the crowd mid-count
                    let login = format!(r#"{{"type":"login","user":"u{}"}}"#, held.len());
                    assert_eq!(ask(&mut ws, &login)["type"], "login_ok");
                    held.push(ws);
                }
                Err(e) if e.contains("Too many open files") => break 'open,
                Err(e) => panic!("connection {} from 127.0.0.{}: {e}", held.len(), 10 + n),
            }
        }
    }
    assert!(held.len() >= 512, "only {} sockets opened", held.len());
    let peak = rss_kib(pid);
    let per_socket = (peak.saturating_sub(before) * 1024) / held.len() as u64;
    eprintln!(
        "{} WebSockets: RSS {before} KiB → {peak} KiB ({per_socket} bytes each)",
        held.len()
    );
    // tungstenite's defaults cost 128 KiB of read buffer per socket; srgate's starts at 4 KiB.
    assert!(
        per_socket < 24 * 1024,
        "{per_socket} bytes per idle WebSocket"
    );

    drop(held);
    let gone = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        (srgate.metric("web_connections") <= 1).then_some(())
    });
    assert!(gone.is_some(), "the closed sockets are gone from srgate");
    // srgate gives memory back once the burst is over (a second without closes), and again
    // when the users' 10 s reconnection grace has run out
    let held_at_peak = peak.saturating_sub(before).max(1);
    let returned = |after: u64| {
        let grown = after.saturating_sub(before);
        grown * 8 <= held_at_peak || grown < 1024
    };
    let after = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        Some(rss_kib(pid)).filter(|&a| returned(a))
    });
    let now = rss_kib(pid);
    eprintln!("after closing: RSS {now} KiB");
    assert!(
        after.is_some(),
        "memory stays after the sockets closed: {before} → {peak} → {now} KiB"
    );
    // still serving
    assert_eq!(ask(&mut warm, r#"{"type":"ping"}"#)["type"], "pong");
}

/// The soft and hard limits on open files of `pid`.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files in /proc/PID/limits");
    let mut words = line.split_whitespace().skip(3);
    (
        words.next().unwrap_or("").to_string(),
        words.next().unwrap_or("").to_string(),
    )
}

/// Started under a soft limit of 256 open files (as from a shell with a low `ulimit -n`;
/// 1 024, the default of many distributions, would stop srgate at a few hundred calls),
/// srgate raises its own soft limit to the hard one at startup.
#[test]
fn srgate_raises_its_soft_limit_of_open_files() {
    let dir = TestDir::new("fd-limit");
    let wrapper = dir.path().join("low-ulimit.sh");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nulimit -S -n 256 || exit 97\nexec \"$@\"\n",
    )
    .unwrap();
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .unwrap();
    assert!(status.success());
    let mut config = GatewayConfig::standalone();
    config.emulated = Some((wrapper, Srgate::binary()));
    let srgate = Srgate::start(config, dir.path());
    let pid = srgate.pid().expect("srgate runs");
    let (soft, hard) = open_files_limits(pid);
    // srgate raises to the hard limit, at most 1 048 576 (the kernel's usual nr_open)
    let want = hard.parse::<u64>().map_or(1 << 20, |h| h.min(1 << 20));
    assert_eq!(
        soft.parse::<u64>().ok(),
        Some(want),
        "soft limit {soft}, hard {hard}"
    );
}
