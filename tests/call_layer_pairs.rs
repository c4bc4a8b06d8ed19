//! The call layer (`Calls`) in SIP ↔ SIP scenarios of standalone mode, without sockets:
//! a ring group's `sip:` member called through srgate — the INVITE toward it, the 180 and
//! the answer toward the caller, RTP relayed both ways on srgate's two ports, the ends
//! (BYE from either side, the caller's CANCEL, the callee's refusal, no answer in time,
//! silence) each checked for the commands toward SIP, the record and the freed ports.

#![deny(unsafe_code)]

#[path = "../benches/support/browser_sim.rs"]
mod browser_sim;
#[path = "../benches/support/stun.rs"]
mod stun;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use srgate::call::link::SipCommand;
use srgate::call::{Cdr, MediaSocket};
use srgate::sip::endpoint::{Event, OutgoingCall, SipCallId};
use srgate::wire::rtp;

use browser_sim::{Shard, pcmu_packet, phone_sdp};

const DOOR: &str = "10.2.0.1:40000";
const MONITOR: &str = "10.3.0.1:42000";
const A: SipCallId = SipCallId(0x8000_0000_0000_0001);

fn shard(tune: impl FnOnce(&mut srgate::call::CallsConfig)) -> Shard {
    #[allow(clippy::disallowed_methods)] // the simulated clock's origin
    let origin = Instant::now();
    let mut config = browser_sim::config(origin);
    config.standalone = true;
    config.rtm2sip = None;
    config.invitation_timeout = Duration::from_secs(30);
    config.rtp_timeout = Duration::from_secs(10);
    tune(&mut config);
    Shard::new(config)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The door (1006) dials flat 301, whose `sip:` member 1007 srgate calls: returns the
/// call toward the monitor.
fn door_calls_the_monitor(s: &mut Shard) -> OutgoingCall {
    s.sip_event(Event::IncomingCall {
        id: A,
        app_user: "1007".into(),
        caller: "1006".into(),
        caller_name: Some("Door".into()),
        cus_data: None,
        sdp: phone_sdp(addr(DOOR), true, "sendrecv"),
        group: Some("301".into()),
        sip_member: true,
        internal: false,
    });
    match s.commands().as_slice() {
        [SipCommand::Start(call)] => call.clone(),
        other => panic!("one INVITE toward the monitor: {other:?}"),
    }
}

/// The monitor answers: returns srgate's answer to the door.
fn monitor_answers(s: &mut Shard, to_monitor: &OutgoingCall) -> String {
    s.sip_event(Event::CallProgress {
        id: to_monitor.id,
        code: 180,
        sdp: None,
    });
    assert!(matches!(s.commands().as_slice(), [SipCommand::Ring(A)]));
    s.sip_event(Event::CallAnswered {
        id: to_monitor.id,
        sdp: phone_sdp(addr(MONITOR), true, "sendrecv"),
    });
    match s.commands().as_slice() {
        [SipCommand::Claim(A), SipCommand::Answer(A, sdp)] => sdp.clone(),
        other => panic!("the door's branch claimed and answered: {other:?}"),
    }
}

fn records(s: &mut Shard) -> Vec<Cdr> {
    std::iter::from_fn(|| s.calls.poll_cdr()).collect()
}

fn port_of(sdp: &str) -> u16 {
    let m = sdp
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .expect("an audio section");
    m.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_sip_member_is_called_and_media_is_relayed_both_ways_until_a_bye() {
    let mut s = shard(|_| {});
    let to_monitor = door_calls_the_monitor(&mut s);
    assert_eq!(
        (to_monitor.callee.as_str(), to_monitor.caller.as_str()),
        ("1007", "1006")
    );
    assert_eq!(to_monitor.display_name.as_deref(), Some("Door"));
    assert!(
        to_monitor.sdp.contains("RTP/AVP 0 101"),
        "{}",
        to_monitor.sdp
    );
    let answer = monitor_answers(&mut s, &to_monitor);
    let (port_a, port_b) = (port_of(&answer), port_of(&to_monitor.sdp));
    assert_ne!(port_a, port_b);
    assert_eq!(s.ports.opened, [port_a, port_b]);

    // 50 packets each way: each arrives rewritten at the other phone
    let mut buf = [0u8; 200];
    for i in 0..50u16 {
        let n = pcmu_packet(&mut buf, 1000 + i, 160 * u32::from(i), 0xd00, 0x11);
        s.rtp(port_a, addr(DOOR), &buf[..n]);
        let n = pcmu_packet(&mut buf, 7000 + i, 80_000 + 160 * u32::from(i), 0x777, 0x22);
        s.rtp(port_b, addr(MONITOR), &buf[..n]);
        let sent = s.transmits();
        assert_eq!(sent.len(), 2, "packet {i}: {sent:?}");
        for (t, bytes) in sent {
            let p = rtp::Packet::new_checked(&bytes[..]).unwrap();
            let fill = p.payload()[0];
            match (t.socket, t.destination) {
                (MediaSocket::Rtp(port), to) if port == port_b && to == addr(MONITOR) => {
                    assert_eq!(fill, 0x11)
                }
                (MediaSocket::Rtp(port), to) if port == port_a && to == addr(DOOR) => {
                    assert_eq!(fill, 0x22)
                }
                other => panic!("a packet from the wrong port or to the wrong phone: {other:?}"),
            }
            assert_eq!(p.payload_type(), 0);
            assert!(p.ssrc() != 0xd00 && p.ssrc() != 0x777, "srgate's own SSRC");
        }
        s.now += Duration::from_millis(20);
    }
    // a stranger on the monitor's port is not relayed
    let n = pcmu_packet(&mut buf, 1, 1, 0xbad, 0x33);
    s.rtp(port_b, addr("10.9.9.9:42000"), &buf[..n]);
    assert!(s.transmits().is_empty());

    // the monitor hangs up: BYE to the door, one record, both ports freed
    s.sip_event(Event::CallEnded {
        id: to_monitor.id,
        code: None,
    });
    assert!(matches!(s.commands().as_slice(), [SipCommand::Hangup(A)]));
    let [cdr] = records(&mut s).try_into().expect("one record");
    assert_eq!(cdr.get("direction").unwrap(), "sip_to_sip");
    assert_eq!(cdr.get("group").unwrap(), "301");
    assert_eq!(cdr.get("reason").unwrap(), "REMOTE");
    assert_eq!(cdr.get("codec_sip").unwrap(), "PCMU");
    assert_eq!(cdr.get("caller").unwrap()["rtp_in"], 50);
    assert_eq!(cdr.get("callee").unwrap()["refused"], 1);
    let mut closed = s.ports.closed.clone();
    closed.sort();
    let mut both = vec![port_a, port_b];
    both.sort();
    assert_eq!(closed, both);
    assert_eq!(s.calls.count(), 0);
}

#[test]
fn the_callers_cancel_cancels_the_callee_and_a_refusal_reaches_the_caller() {
    // the door gives up while the monitor rings
    let mut s = shard(|_| {});
    let to_monitor = door_calls_the_monitor(&mut s);
    s.sip_event(Event::CallCanceled {
        id: A,
        elsewhere: false,
    });
    match s.commands().as_slice() {
        [SipCommand::Hangup(id)] => assert_eq!(*id, to_monitor.id),
        other => panic!("CANCEL toward the monitor: {other:?}"),
    }
    let [cdr] = records(&mut s).try_into().expect("one record");
    assert_eq!(cdr.get("reason").unwrap(), "CANCELED");
    assert_eq!(s.ports.closed.len(), 2);

    // busy is busy; a challenge srgate does not answer is 480
    for (code, to_door) in [(486, 486), (407, 480), (603, 603)] {
        let mut s = shard(|_| {});
        let to_monitor = door_calls_the_monitor(&mut s);
        s.sip_event(Event::CallFailed {
            id: to_monitor.id,
            code,
            reason: "x".into(),
        });
        assert!(
            matches!(s.commands().as_slice(), [SipCommand::Reject(A, c)] if *c == to_door),
            "{code}"
        );
        assert_eq!(s.calls.count(), 0);
    }
}

#[test]
fn no_answer_in_time_and_a_silent_phone_end_the_call() {
    let mut s = shard(|_| {});
    let to_monitor = door_calls_the_monitor(&mut s);
    s.now += Duration::from_secs(31);
    s.tick();
    let commands = s.commands();
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, SipCommand::Reject(A, 480)))
            && commands
                .iter()
                .any(|c| matches!(c, SipCommand::Hangup(id) if *id == to_monitor.id)),
        "{commands:?}"
    );
    let [cdr] = records(&mut s).try_into().expect("one record");
    assert_eq!(cdr.get("reason").unwrap(), "INVITATION_EXPIRE");

    // answered, then the door goes quiet: after rtp_timeout both legs get a BYE
    let mut s = shard(|_| {});
    let to_monitor = door_calls_the_monitor(&mut s);
    let answer = monitor_answers(&mut s, &to_monitor);
    let port_b = port_of(&to_monitor.sdp);
    let mut buf = [0u8; 200];
    for i in 0..600u16 {
        let n = pcmu_packet(&mut buf, i, 160 * u32::from(i), 9, 0);
        s.rtp(port_b, addr(MONITOR), &buf[..n]);
        s.transmits();
        s.now += Duration::from_millis(20);
        s.tick();
        if s.calls.count() == 0 {
            break;
        }
    }
    assert_eq!(s.calls.count(), 0, "the silent door's call ended");
    let commands = s.commands();
    assert!(
        commands.iter().any(|c| matches!(c, SipCommand::Hangup(A)))
            && commands
                .iter()
                .any(|c| matches!(c, SipCommand::Hangup(id) if *id == to_monitor.id)),
        "{commands:?}"
    );
    let [cdr] = records(&mut s).try_into().expect("one record");
    assert_eq!(cdr.get("reason").unwrap(), "TIMEOUT", "{}", answer.len());
}

#[test]
fn an_offer_without_a_codec_srgate_relays_is_refused_with_488() {
    let mut s = shard(|_| {});
    let offer = phone_sdp(addr(DOOR), false, "sendrecv")
        .replace("RTP/AVP 0", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    s.sip_event(Event::IncomingCall {
        id: A,
        app_user: "1007".into(),
        caller: "1006".into(),
        caller_name: None,
        cus_data: None,
        sdp: offer,
        group: None,
        sip_member: true,
        internal: false,
    });
    assert!(
        matches!(s.commands().as_slice(), [SipCommand::RejectOffer(A, _)]),
        "488 with a reason"
    );
    assert_eq!(s.ports.opened.len(), s.ports.closed.len());
    let [cdr] = records(&mut s).try_into().expect("one record");
    assert_eq!(cdr.get("sip_code").unwrap(), 488);
}

#[test]
fn a_member_answered_elsewhere_gets_a_cancel_saying_so() {
    let mut s = shard(|_| {});
    let to_monitor = door_calls_the_monitor(&mut s);
    s.sip_event(Event::CallCanceled {
        id: A,
        elsewhere: true,
    });
    match s.commands().as_slice() {
        [SipCommand::CancelElsewhere(id)] => assert_eq!(*id, to_monitor.id),
        other => panic!("a CANCEL with the reason toward the monitor: {other:?}"),
    }
    let [cdr] = records(&mut s).try_into().expect("one record");
    assert_eq!(cdr.get("reason").unwrap(), "ANSWERED_ELSEWHERE");
}
