//! Shard 0's core (`Gateway`) without sockets: a browser session logs in, a PBX's
//! INVITE and the browser's own invite are placed on shards, a shard that cannot take a
//! message gets the call refused cleanly (503 / `OVERLOADED`), a user gone reaches every
//! shard, and shutdown waits for the other shards before it completes. Everything is
//! driven through the core's inputs and checked on its outputs, on a simulated clock.

#![deny(unsafe_code)]

#[path = "../benches/support/browser_sim.rs"]
mod browser_sim;
#[path = "../benches/support/stun.rs"]
mod stun;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use srgate::call::Calls;
use srgate::gateway::{Gateway, Output, Sessions, ToControl, ToWorker};
use srgate::signal::hub::{CallRequest, Hub, HubOutput, RECONNECT_GRACE};
use srgate::sip::endpoint::{Endpoint, EndpointConfig, Event, ProxyAccount, Server, Transport};
use srgate::webrtc::cert::Certificate;
use srgate::webrtc::dtls::DtlsContext;

use browser_sim::{BrowserIdentity, Ports, config, phone_sdp};

const SRGATE: &str = "127.0.0.1:5086";
const PBX: &str = "127.0.0.1:5060";
const SESSION: u64 = 7;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Shard 0's core in proxy mode (sip_svr is the PBX; the proxy account, when there is
/// one, is not registered yet) with `shards` shards in all, and the clock's origin.
fn gateway(shards: usize, account: bool) -> (Gateway<Ports>, Instant) {
    #[allow(clippy::disallowed_methods)] // the simulated clock's origin
    let t0 = Instant::now();
    let endpoint = Endpoint::new(
        EndpointConfig {
            server: Some(Server {
                addr: addr(PBX),
                transport: Transport::Udp,
                host_port: PBX.into(),
            }),
            proxy: account.then(|| ProxyAccount {
                user: "1000".into(),
                password: "1234".into(),
                expires: 300,
            }),
            ..EndpointConfig::standalone(addr(SRGATE), "127.0.0.1", &[], [3; 32])
        },
        t0,
    );
    let cert = Certificate::generate().expect("certificate");
    let calls = Calls::new(config(t0), DtlsContext::new(&cert).expect("dtls"));
    let core = Gateway::control(
        calls,
        Ports::default(),
        endpoint,
        Hub::new(""),
        shards,
        100,
        t0,
    );
    (core, t0)
}

/// Everything the core has to carry out now.
fn outputs(core: &mut Gateway<Ports>) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// The JSON frames among `outputs` (all for [`SESSION`]).
fn frames(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Web(HubOutput::Send { session, text }) => {
                assert_eq!(*session, SESSION);
                Some(serde_json::from_str(text).expect("JSON"))
            }
            _ => None,
        })
        .collect()
}

/// The SIP status lines among `outputs`.
fn sip_statuses(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Sip(t) => {
                let text = String::from_utf8_lossy(&t.payload);
                Some(text.lines().next().unwrap_or("").to_owned())
            }
            _ => None,
        })
        .collect()
}

/// Logs `user` in on [`SESSION`].
fn login(core: &mut Gateway<Ports>, now: Instant, user: &str) {
    core.open(now, SESSION);
    core.handle_text(
        now,
        1_700_000_000,
        SESSION,
        &format!(r#"{{"type":"login","user":"{user}","token":""}}"#),
    );
    let out = outputs(core);
    assert_eq!(frames(&out)[0]["type"], "login_ok", "{out:?}");
}

/// The PBX's INVITE for app user `user`.
fn pbx_invite(user: &str, call: &str) -> String {
    let sdp = phone_sdp(addr("127.0.0.1:40000"), false, "sendrecv");
    format!(
        "INVITE sip:{user}@{SRGATE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PBX};branch=z9hG4bK{call}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1006@127.0.0.1>;tag=pbx{call}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:1006@{PBX}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The PBX's INVITE for a logged-in user goes to the worker shard (the least loaded
/// one, another than shard 0 on a tie); when that shard cannot take it, the caller gets
/// 503 with Retry-After and the placement is taken back.
#[test]
fn incoming_call_is_placed_on_a_worker_and_refused_when_it_cannot_take_it() {
    let (mut core, t0) = gateway(2, true);
    login(&mut core, t0, "alice");
    core.handle_sip(
        t0,
        Transport::Udp,
        addr(PBX),
        pbx_invite("alice", "c1").as_bytes(),
    );
    let out = outputs(&mut core);
    assert_eq!(sip_statuses(&out), ["SIP/2.0 100 Trying"], "{out:?}");
    let placed: Vec<&ToWorker> = out
        .iter()
        .filter_map(|o| match o {
            Output::ToShard(1, m) => Some(m),
            _ => None,
        })
        .collect();
    let [ToWorker::Sip(event)] = placed.as_slice() else {
        panic!("the call goes to shard 1: {out:?}");
    };
    let Event::IncomingCall { id, app_user, .. } = &**event else {
        panic!("an incoming call: {event:?}");
    };
    assert_eq!(app_user, "alice");
    let id = *id;

    // shard 1's inbox was full: the message comes back
    let Some(Output::ToShard(1, message)) =
        out.into_iter().find(|o| matches!(o, Output::ToShard(..)))
    else {
        unreachable!()
    };
    core.undelivered(t0, 1, message);
    let out = outputs(&mut core);
    let refusal = out
        .iter()
        .find_map(|o| match o {
            Output::Sip(t) => Some(String::from_utf8_lossy(&t.payload).into_owned()),
            _ => None,
        })
        .expect("an answer to the PBX");
    assert!(refusal.starts_with("SIP/2.0 503"), "{refusal}");
    assert!(refusal.contains("Retry-After:"), "{refusal}");
    assert!(frames(&out).is_empty(), "alice hears nothing: {out:?}");

    // the next INVITE is placed again (the refused one left no load behind)
    core.handle_sip(
        t0,
        Transport::Udp,
        addr(PBX),
        pbx_invite("alice", "c2").as_bytes(),
    );
    let out = outputs(&mut core);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::ToShard(1, ToWorker::Sip(e))
            if matches!(&**e, Event::IncomingCall { id: other, .. } if *other != id))),
        "{out:?}"
    );
}

/// A browser's invite is placed where the shards keep up: on the worker while it does,
/// on shard 0 (whose call layer starts the INVITE toward the PBX at once) while the
/// worker runs late. A worker that cannot take the invite makes it `OVERLOADED`.
#[test]
fn app_invites_follow_the_shards_load_and_lag() {
    let (mut core, t0) = gateway(2, true);
    login(&mut core, t0, "alice");
    let identity = BrowserIdentity::generate();
    let browser = browser_sim::Browser::new(addr("10.1.0.1:50000"), "brws");
    let invite = |id: &str| {
        json!({"type": "invite", "id": id, "callee": "1006",
               "sdp": browser.offer(&identity, false)})
        .to_string()
    };

    core.handle_text(t0, 1_700_000_000, SESSION, &invite("a1"));
    let out = outputs(&mut core);
    let message = out
        .into_iter()
        .find_map(|o| match o {
            Output::ToShard(1, m @ ToWorker::Request(_)) => Some(m),
            _ => None,
        })
        .expect("the invite goes to shard 1");
    // shard 1 is gone: the invite is refused, the user told
    core.undelivered(t0, 1, message);
    let out = outputs(&mut core);
    let replies = frames(&out);
    assert_eq!(replies.len(), 1, "{out:?}");
    assert_eq!(replies[0]["type"], "error");
    assert_eq!(replies[0]["code"], "OVERLOADED", "{replies:?}");
    assert_eq!(replies[0]["id"], "a1");

    // shard 1 runs late: the next invite stays on shard 0, whose calls send the INVITE
    core.set_shard_lagging(1, true);
    core.handle_text(t0, 1_700_000_000, SESSION, &invite("a2"));
    let out = outputs(&mut core);
    assert!(
        !out.iter().any(|o| matches!(o, Output::ToShard(..))),
        "{out:?}"
    );
    let invites: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Sip(t) if t.destination == addr(PBX) => {
                Some(String::from_utf8_lossy(&t.payload).into_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(invites.len(), 1, "{out:?}");
    assert!(invites[0].starts_with("INVITE sip:1006@"), "{}", invites[0]);
    assert_eq!(core.calls().count(), 1);
}

/// A user whose WebSocket closed and who did not come back within the grace is gone on
/// every shard: shard 0's own calls end and each worker is told.
#[test]
fn a_user_gone_reaches_every_shard() {
    let (mut core, t0) = gateway(3, false);
    login(&mut core, t0, "alice");
    core.session_closed(t0, SESSION);
    assert!(outputs(&mut core).is_empty());
    let deadline = core.poll_timeout().expect("the grace's end");
    assert_eq!(deadline, t0 + RECONNECT_GRACE);
    core.handle_timeout(deadline - Duration::from_millis(1));
    assert!(outputs(&mut core).is_empty(), "not before the grace ends");
    core.handle_timeout(deadline);
    let out = outputs(&mut core);
    let told: Vec<usize> = out
        .iter()
        .filter_map(|o| match o {
            Output::ToShard(shard, ToWorker::Request(r))
                if matches!(&**r, CallRequest::UserGone { user } if user == "alice") =>
            {
                Some(*shard)
            }
            _ => None,
        })
        .collect();
    assert_eq!(told, [1, 2], "{out:?}");
    assert!(out.iter().any(|o| matches!(o, Output::UserGone)), "{out:?}");
}

/// Shutdown tells every worker and completes once they stopped, or when the wait for
/// them ends.
#[test]
fn shutdown_waits_for_the_other_shards() {
    let (mut core, t0) = gateway(3, false);
    core.shutdown(t0);
    let out = outputs(&mut core);
    let told: Vec<usize> = out
        .iter()
        .filter_map(|o| match o {
            Output::ToShard(shard, ToWorker::Shutdown) => Some(*shard),
            _ => None,
        })
        .collect();
    assert_eq!(told, [1, 2], "{out:?}");
    assert!(!core.is_shutdown_complete());
    core.handle_from_worker(t0, ToControl::Stopped(1));
    assert!(!core.is_shutdown_complete(), "shard 2 still runs");
    core.handle_from_worker(t0, ToControl::Stopped(2));
    assert!(core.is_shutdown_complete());

    // a shard that never answers: the wait ends after a while
    let (mut core, t0) = gateway(2, false);
    core.shutdown(t0);
    let _ = outputs(&mut core);
    let wait = core.poll_timeout().expect("the wait's end");
    assert!(wait > t0 && wait <= t0 + Duration::from_secs(5), "{wait:?}");
    core.handle_timeout(wait - Duration::from_millis(1));
    assert!(!core.is_shutdown_complete());
    core.handle_timeout(wait);
    assert!(core.is_shutdown_complete());
}

/// While srgate stops, no new call starts: shard 0 answers a new INVITE 503 and refuses an
/// app's invite (`OVERLOADED`); a worker told to stop refuses a call that was on its way
/// to it, and says it stopped.
#[test]
fn no_new_call_starts_while_stopping() {
    let (mut core, t0) = gateway(2, true);
    login(&mut core, t0, "alice");
    core.shutdown(t0);
    let _ = outputs(&mut core);
    core.handle_sip(
        t0,
        Transport::Udp,
        addr(PBX),
        pbx_invite("alice", "s1").as_bytes(),
    );
    let out = outputs(&mut core);
    assert!(
        sip_statuses(&out)
            .iter()
            .any(|s| s.starts_with("SIP/2.0 503")),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::ToShard(..))),
        "{out:?}"
    );
    core.handle_text(
        t0,
        1_700_000_000,
        SESSION,
        &json!({"type": "invite", "id": "late", "callee": "1006", "sdp": "v=0"}).to_string(),
    );
    let replies = frames(&outputs(&mut core));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["code"], "OVERLOADED");

    // a worker
    let cert = Certificate::generate().expect("certificate");
    let calls = Calls::new(config(t0), DtlsContext::new(&cert).expect("dtls"));
    let mut worker = Gateway::worker(1, calls, Ports::default(), t0);
    worker.handle_from_control(t0, ToWorker::Shutdown);
    let invite = CallRequest::Call {
        user: "alice".into(),
        request: srgate::signal::protocol::Request::Invite {
            id: "late".into(),
            callee: "1006".into(),
            sdp: "v=0".into(),
            content: None,
            channel_id: None,
        },
    };
    worker.handle_from_control(t0, ToWorker::Request(Box::new(invite)));
    let out = outputs(&mut worker);
    assert!(
        matches!(out.first(), Some(Output::ToControl(ToControl::Stopped(1)))),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::ToControl(ToControl::Message(m))
            if m.0 == "alice" && m.1.contains("OVERLOADED"))),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::ToControl(ToControl::Route(1, _)))),
        "the placement is taken back: {out:?}"
    );
    assert_eq!(worker.calls().count(), 0);
}
