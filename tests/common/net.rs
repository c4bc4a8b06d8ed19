//! Loopback ports: picking free ones, and seeing when a peer has bound one.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use super::wait_for;

pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((LOCALHOST, port))
}

/// `N` distinct ports that are free on 127.0.0.1 for both UDP and TCP right now.
///
/// Each is found by binding port 0 (the kernel picks), checked by binding TCP on the same
/// number, and held until all `N` are found, so they differ; then released for the peers.
/// Ports handed out earlier in this test binary are never handed out again, so tests that
/// run in parallel threads do not collide with each other.
pub fn free_ports<const N: usize>() -> [u16; N] {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);

    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    let mut found = 0;
    // bounded: the kernel has ~28 000 ephemeral ports; 64 tries per port is plenty
    for _ in 0..N * 64 {
        if found == N {
            break;
        }
        let Ok(udp) = UdpSocket::bind(local(0)) else {
            continue;
        };
        let Ok(port) = udp.local_addr().map(|addr| addr.port()) else {
            continue;
        };
        if handed_out.contains(&port) {
            continue;
        }
        let Ok(tcp) = TcpListener::bind(local(port)) else {
            continue;
        };
        held.push((udp, tcp));
        handed_out.insert(port);
        ports[found] = port;
        found += 1;
    }
    assert_eq!(found, N, "could not find {N} free loopback ports");
    ports
}

/// Whether something has bound `port` on UDP (`udp = true`) or listens on it on TCP, read
/// from /proc/net/{udp,tcp} so that checking never takes the port away from the peer.
pub fn port_bound(port: u16, udp: bool) -> bool {
    bound_ports(udp).contains(&port)
}

/// The ports bound (UDP) or listening (TCP) in this network namespace, from
/// /proc/net/{udp,tcp}{,6}, sorted, each once.
pub fn bound_ports(udp: bool) -> Vec<u16> {
    let tables: &[&str] = if udp {
        &["/proc/net/udp", "/proc/net/udp6"]
    } else {
        &["/proc/net/tcp", "/proc/net/tcp6"]
    };
    let mut ports = Vec::new();
    for table in tables {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or_default();
            let state = fields.nth(1).unwrap_or_default();
            let port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            // TCP: 0A = LISTEN; UDP sockets show 07 (unconnected)
            if let Some(port) = port
                && (udp || state == "0A")
            {
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Waits until `port` is bound (UDP) or listening (TCP), up to `within`.
pub fn wait_port_bound(port: u16, udp: bool, within: Duration) -> bool {
    wait_for(within, Duration::from_millis(20), || {
        port_bound(port, udp).then_some(())
    })
    .is_some()
}

/// Waits until nothing has `port` bound any more (UDP or TCP), up to `within`.
pub fn wait_port_free(port: u16, within: Duration) -> bool {
    wait_for(within, Duration::from_millis(20), || {
        (!port_bound(port, true) && !port_bound(port, false)).then_some(())
    })
    .is_some()
}
