//! Parsing allocates nothing: every RFC 4475 torture message and three typical messages
//! (INVITE with SDP, 200 OK with SDP, REGISTER) are parsed, and every typed accessor is
//! read, under a counting global allocator. One test only, so that no other test thread
//! allocates while the count runs.

use std::alloc::System;

use srgate::wire::sip::{Frame, Message, Uri, frame};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Reads every typed header and returns a checksum so that nothing is optimised away.
fn touch_all(raw: &[u8]) -> usize {
    let mut sum = 0;
    let _ = frame(raw).map(|f| {
        if let Some(Frame::Message(n)) = f {
            sum += n;
        }
    });
    let Ok(m) = Message::parse(raw) else {
        return sum + 1;
    };
    sum += m.headers().count();
    for via in m.vias().flatten() {
        sum += via.branch.map_or(0, str::len) + usize::from(via.port.unwrap_or(0));
    }
    sum += m.top_via().map_or(0, |v| v.transport.len());
    sum += m.cseq().map_or(0, |c| c.seq as usize);
    sum += m.call_id().map_or(0, str::len);
    for addr in [m.from(), m.to()].into_iter().flatten() {
        sum += addr.tag.map_or(0, str::len) + addr.display.map_or(0, str::len);
        sum += usize::from(addr.uri.user_is("alice"));
        let mut user: heapless::String<256> = heapless::String::new();
        if addr.uri.user_unescaped(&mut user).is_ok() {
            sum += user.len();
        }
    }
    for c in m.contacts().flatten() {
        sum += c.expires().unwrap_or(0) as usize + usize::from(c.q().unwrap_or(0));
        sum += c.addr().map_or(0, |a| {
            a.uri.param("transport").flatten().map_or(0, str::len)
        });
    }
    for r in m.routes().chain(m.record_routes()).flatten() {
        sum += usize::from(r.uri.param("lr").is_some());
    }
    sum += m.max_forwards().ok().flatten().unwrap_or(0) as usize;
    sum += m.expires().ok().flatten().unwrap_or(0) as usize;
    sum += m.content_length().unwrap_or(0) + m.body().len() + m.as_bytes().len();
    if let Some(uri) = m.request_uri().and_then(|u| Uri::parse(u).ok()) {
        sum += usize::from(uri.port.unwrap_or(5060)) + uri.host.eq_host(&uri.host) as usize;
    }
    sum += m
        .sip_request_uri()
        .map_or(0, |r| r.map_or(1, |u| u.as_str().len()));
    sum
}

#[test]
fn parsing_allocates_nothing() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("torture message directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    for typical in ["invite_sdp.sip", "ok_sdp.sip", "register.sip"] {
        files.push(format!("{dir}/typical/{typical}").into());
    }
    let messages: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(p).expect("message file"),
            )
        })
        .collect();
    assert_eq!(messages.len(), 49 + 3);

    let mut checksum = 0;
    for (name, raw) in &messages {
        // the harness's own thread may allocate while a round runs: an allocation by the
        // parser shows in every round, so the quietest of three rounds is the parser's
        let fewest = (0..3)
            .map(|_| {
                let region = Region::new(GLOBAL);
                checksum += touch_all(raw);
                let stats = region.change();
                stats.allocations + stats.reallocations
            })
            .min();
        assert_eq!(fewest, Some(0), "{name}: parsing allocated");
    }
    assert!(checksum > 0);
    // the typical messages are valid
    for (name, raw) in &messages[49..] {
        assert!(Message::parse(raw).is_ok(), "{name}");
    }
}
