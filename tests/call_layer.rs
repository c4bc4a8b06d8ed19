//! The call layer (`Calls`) in scenarios, without sockets: a shard on a simulated clock,
//! a scripted browser (its offer, ICE check, DTLS handshake and SRTP, see
//! `benches/support/browser_sim.rs`), the SIP side played by endpoint events in and
//! `SipCommand`s out, RTP ports that are never bound. Each scenario checks the messages
//! of the browser protocol (docs/protocol.md), the commands toward SIP, the media both
//! ways byte for byte, the call's record and its freed port.
//!
//! Here: calls that are answered (app → SIP and SIP → app) with their media and DTMF, and
//! hold. Calls that end otherwise (cancel, expiry, refusal) are in `call_layer_ends.rs`.

#![deny(unsafe_code)]

#[path = "../benches/support/browser_sim.rs"]
mod browser_sim;
mod sim;
#[path = "../benches/support/stun.rs"]
mod stun;

use std::time::Duration;

use serde_json::{Value, json};

use srgate::call::Cdr;
use srgate::call::link::SipCommand;
use srgate::signal::protocol::Request;
use srgate::sip::endpoint::{Event, SipCallId};

use browser_sim::{PAYLOAD, phone_sdp};
use sim::{PHONE_TE, Scene, config};

/// The payload srgate relays is the one that was sent: PCMU, all `fill`.
fn pcmu(fill: u8) -> (u8, Vec<u8>) {
    (0, vec![fill; PAYLOAD])
}

/// RFC 4733 events in packets srgate sent: (event code, end bit, duration, timestamp).
fn events(packets: &[(u8, Vec<u8>)], pt: u8) -> Vec<(u8, bool, u16)> {
    packets
        .iter()
        .filter(|(t, _)| *t == pt)
        .map(|(_, p)| (p[0], p[1] & 0x80 != 0, u16::from_be_bytes([p[2], p[3]])))
        .collect()
}

/// srgate's SDP toward SIP: `formats` (an offer: PCMU, the browser's codec, then Opus;
/// an answer: PCMU) at its RTP port, telephone-event 101, sendrecv.
fn assert_sip_sdp(sdp: &str, port: u16, formats: &str) {
    if formats.contains("111") {
        assert!(sdp.contains("a=rtpmap:111 opus/48000/2\r\n"), "{sdp}");
    }
    for line in [
        "c=IN IP4 127.0.0.1".to_string(),
        format!("m=audio {port} RTP/AVP {formats} 101"),
        "a=rtpmap:101 telephone-event/8000".to_string(),
        "a=sendrecv".to_string(),
    ] {
        assert!(sdp.contains(&format!("{line}\r\n")), "{line} in {sdp}");
    }
}

/// The record has these fields with these values.
fn assert_fields(cdr: &Cdr, expected: Value) {
    for (key, value) in expected.as_object().expect("an object") {
        assert_eq!(cdr.get(key), Some(value), "{key} in {}", cdr.to_line());
    }
}

/// Media both ways through an answered call: the browser's SRTP reaches the phone as
/// plain RTP with the same payload, the phone's RTP reaches the browser as SRTP that
/// its keys decrypt to the same payload.
fn media_flows(scene: &mut Scene) {
    let sent = scene.browser_says(0x55);
    assert_eq!(scene.phone_gets(&sent), [pcmu(0x55)], "browser → phone");
    let sent = scene.phone_says(0x2a);
    assert_eq!(scene.browser_gets(&sent), [pcmu(0x2a)], "phone → browser");
    assert!(scene.phone_gets(&sent).is_empty());
}

#[test]
fn app_to_sip_answered_carries_media_and_dtmf_and_hangs_up() {
    let mut scene = Scene::new(config(|_| {}), "alice");
    let (reply, call) = scene.invite("c1", "1006", Some(r#"{"UserData":"door 3"}"#));

    // srgate answers the browser at once and starts the SIP call
    assert_eq!(reply["type"], "local_state");
    assert_eq!(reply["id"], "c1");
    assert_eq!(reply["state"], "SENT_TO_REMOTE");
    let answer = reply["sdp"].as_str().expect("srgate's SDP answer");
    assert!(answer.contains("a=ice-lite\r\n"), "{answer}");
    assert!(
        answer.contains("m=audio 20000 UDP/TLS/RTP/SAVPF 0"),
        "{answer}"
    );
    assert!(answer.contains("a=setup:passive\r\n"), "{answer}");
    assert!(answer.contains("127.0.0.1 20000 typ host"), "{answer}");
    assert_eq!(call.callee, "1006");
    assert_eq!(call.caller, "alice");
    assert_eq!(call.display_name, None);
    assert_eq!(
        call.headers,
        [("X-ArInfo".to_string(), "door 3".to_string())]
    );
    let port = scene.port;
    assert_eq!(scene.shard.ports.opened, [port]);
    // the browser's law (PCMU) first, then telephone-event
    assert_sip_sdp(&call.sdp, port, "0 111");

    scene.shard.sip_event(Event::CallProgress {
        id: scene.sip,
        code: 180,
        sdp: None,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "local_state", "id": "c1", "state": "RECEIVED_BY_REMOTE"})
    );

    // the browser's media connects before the answer; nothing is said meanwhile
    scene.connect();
    assert!(scene.shard.messages().is_empty());
    assert!(scene.shard.commands().is_empty());

    let accepted = scene.answer();
    assert_eq!(accepted["state"], "ACCEPTED_BY_REMOTE");
    assert_eq!(accepted["id"], "c1");
    let response: Value =
        serde_json::from_str(accepted["response"].as_str().expect("response")).unwrap();
    assert_eq!(response["SipNumber"], "1006");
    assert_eq!(response["ChanId"], "c1");
    scene.shard.transmits();

    media_flows(&mut scene);

    // the app's digits go toward SIP as RFC 4733 events in the phone's payload type
    scene.request(Request::Dtmf {
        id: "c1".into(),
        digits: "5#".into(),
    });
    assert!(scene.shard.messages().is_empty(), "no error");
    let sent = scene.advance(Duration::from_millis(600), false);
    let packets = scene.phone_gets(&sent);
    let events = events(&packets, PHONE_TE);
    let digit = |code: u8| {
        let mut e: Vec<(bool, u16)> = events
            .iter()
            .filter(|(c, ..)| *c == code)
            .map(|(_, end, d)| (*end, *d))
            .collect();
        e.dedup();
        e
    };
    // 100 ms of tone in 20 ms packets, then the end sent three times
    let played = [
        (false, 160),
        (false, 320),
        (false, 480),
        (false, 640),
        (true, 800),
    ];
    assert_eq!(digit(5), played, "digit 5: {events:?}");
    assert_eq!(digit(11), played, "#: {events:?}");
    assert_eq!(events.iter().filter(|(_, end, _)| *end).count(), 6);
    assert_eq!(events.first().map(|e| e.0), Some(5), "in order");
    assert_eq!(events.last().map(|e| e.0), Some(11), "in order");

    // digits from SIP reach the browser: SIP INFO, and RFC 4733 (one message per event)
    scene.shard.sip_event(Event::Dtmf {
        id: scene.sip,
        digit: '7',
        duration_ms: 160,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "dtmf", "id": "c1", "digits": "7"})
    );
    scene.phone_event(9, false, 4_000);
    scene.phone_event(9, true, 4_000);
    scene.phone_event(9, true, 4_000);
    assert_eq!(
        scene.one_message(),
        json!({"type": "dtmf", "id": "c1", "digits": "9"})
    );

    // the browser hangs up
    scene.request(Request::Hangup { id: "c1".into() });
    assert_eq!(
        scene.one_message(),
        json!({"type": "hangup", "id": "c1", "reason": "LOCAL"})
    );
    let sip = scene.sip;
    assert!(matches!(scene.shard.commands().as_slice(), [SipCommand::Hangup(id)] if *id == sip));
    // the browser's DTLS gets its close_notify: one alert record (content type 21)
    let browser = scene.browser.addr;
    let farewells: Vec<_> = scene
        .shard
        .transmits()
        .into_iter()
        .filter(|(t, _)| t.destination == browser)
        .collect();
    assert!(
        farewells
            .iter()
            .any(|(_, bytes)| bytes.first() == Some(&21)),
        "a DTLS alert to the browser: {farewells:?}"
    );
    let cdr = scene.one_cdr();
    assert_fields(
        &cdr,
        json!({
            "call": "c1", "user": "alice", "peer": "1006", "direction": "app_to_sip",
            "reason": "LOCAL", "sip_code": 200, "mode": "relay",
            "codec_webrtc": "PCMU", "codec_sip": "PCMU",
        }),
    );
    assert!(cdr.get("answer").is_some_and(Value::is_u64));
    let sip_leg = cdr.get("sip").expect("SIP leg counters");
    assert_eq!(sip_leg["rtp_port"], port);
    assert_eq!(
        sip_leg["rtp_in"], 4,
        "one PCMU packet and three event packets"
    );
    scene.assert_gone();
    // the ended call's address and port are forgotten
    assert!(scene.browser_says(0x55).is_empty());
    assert!(scene.phone_says(0x2a).is_empty());
}

#[test]
fn sip_to_app_accepted_answers_sip_after_dtls_and_ends_from_sip() {
    let mut scene = Scene::new(config(|_| {}), "bob");
    let sip = SipCallId((1 << 63) | 7);
    let invitation = scene.incoming(sip);
    assert_eq!(invitation["type"], "remote_invitation");
    assert_eq!(invitation["caller"], "1006");
    assert_eq!(invitation["callerName"], "Front door");
    let id = scene.id.clone();
    assert!(id.starts_with('s'), "srgate's id: {id}");
    let content: Value =
        serde_json::from_str(invitation["content"].as_str().expect("content")).unwrap();
    assert_eq!(content["ChanId"], id.as_str());
    assert_eq!(content["DisplayName"], "1006");
    assert_eq!(content["SipData"], "floor 2");
    assert!(matches!(scene.shard.commands().as_slice(), [SipCommand::Ring(r)] if *r == sip));

    let accepted = scene.accept();
    assert_eq!(accepted["type"], "remote_state");
    assert_eq!(accepted["id"], id.as_str());
    assert_eq!(accepted["state"], "ACCEPTED");
    let answer = accepted["sdp"].as_str().expect("srgate's SDP answer");
    assert!(
        answer.contains("m=audio 20000 UDP/TLS/RTP/SAVPF 0 126"),
        "PCMU and the browser's telephone-event: {answer}"
    );
    assert!(
        scene.shard.commands().is_empty(),
        "no 200 toward SIP before the browser's DTLS is up"
    );

    scene.connect();
    let port = scene.port;
    match scene.shard.commands().as_slice() {
        [SipCommand::Answer(id, sdp)] => {
            assert_eq!(*id, sip);
            // the caller offered telephone-event: the answer has it
            assert_sip_sdp(sdp, port, "0");
        }
        other => panic!("the 200 toward SIP: {other:?}"),
    }
    assert!(scene.shard.messages().is_empty());
    scene.shard.transmits();

    media_flows(&mut scene);
    scene.shard.sip_event(Event::Dtmf {
        id: sip,
        digit: '#',
        duration_ms: 100,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "dtmf", "id": id, "digits": "#"})
    );

    // the SIP side hangs up (BYE)
    scene.shard.sip_event(Event::CallEnded {
        id: sip,
        code: None,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "hangup", "id": id, "reason": "REMOTE"})
    );
    assert!(
        scene.shard.commands().is_empty(),
        "the SIP leg is over already"
    );
    let cdr = scene.one_cdr();
    assert_fields(
        &cdr,
        json!({
            "call": id, "user": "bob", "peer": "1006", "direction": "sip_to_app",
            "reason": "REMOTE", "sip_code": 200, "mode": "relay",
        }),
    );
    assert_eq!(cdr.get("webrtc").unwrap()["rtp_in"], 1);
    assert_eq!(cdr.get("sip").unwrap()["rtp_in"], 1);
    scene.assert_gone();
}

#[test]
fn sip_side_hold_stops_media_toward_it_and_unhold_resumes() {
    let rtp_timeout = Duration::from_secs(5);
    let mut scene = Scene::established(config(|c| c.rtp_timeout = rtp_timeout));
    let phone = scene.phone;

    // hold with sendonly: the phone may still send (music on hold), srgate must not
    scene.shard.sip_event(Event::CallUpdated {
        id: scene.sip,
        sdp: phone_sdp(phone, true, "sendonly"),
    });
    let sent = scene.browser_says(0x55);
    assert!(
        scene.phone_gets(&sent).is_empty(),
        "nothing toward a holding phone"
    );
    let sent = scene.phone_says(0x2a);
    assert_eq!(
        scene.browser_gets(&sent),
        [pcmu(0x2a)],
        "music on hold is heard"
    );

    // hold with inactive: silence for longer than rtp_timeout is no reason to end
    scene.shard.sip_event(Event::CallUpdated {
        id: scene.sip,
        sdp: phone_sdp(phone, true, "inactive"),
    });
    scene.browser_says(0x55);
    let sent = scene.advance(rtp_timeout * 2, false);
    assert!(
        scene.phone_gets(&sent).is_empty(),
        "nothing toward a holding phone"
    );
    assert_eq!(scene.shard.calls.count(), 1, "the held call goes on");
    assert!(
        scene.shard.messages().is_empty(),
        "hold is not told to the browser"
    );
    assert!(scene.shard.commands().is_empty());

    // unhold
    scene.shard.sip_event(Event::CallUpdated {
        id: scene.sip,
        sdp: phone_sdp(phone, true, "sendrecv"),
    });
    media_flows(&mut scene);
    assert!(scene.shard.messages().is_empty());
    assert!(scene.shard.calls.poll_cdr().is_none(), "the call is up");
}

/// bridge.rs's module doc: "A call whose SIP side sends nothing for `[media] rtp_timeout`
/// ends, except while the SIP side holds it (its SDP says sendonly or inactive)." The
/// code (`BridgeCall::remote_sends`) counts a sendonly SIP side as one that should send, so
/// a phone that holds with sendonly and sends no music on hold is hung up after
/// `rtp_timeout`.
#[test]
fn sendonly_hold_without_music_outlives_rtp_timeout() {
    let rtp_timeout = Duration::from_secs(5);
    let mut scene = Scene::established(config(|c| c.rtp_timeout = rtp_timeout));
    scene.shard.sip_event(Event::CallUpdated {
        id: scene.sip,
        sdp: phone_sdp(scene.phone, true, "sendonly"),
    });
    scene.advance(rtp_timeout * 2, false);
    assert!(scene.shard.messages().is_empty(), "the held call goes on");
    assert_eq!(scene.shard.calls.count(), 1);
}

/// Once the browser's media flowed, srgate keeps no DTLS state (most of a call's memory):
/// a DTLS alert from the browser's address then cannot be authenticated. While the
/// browser is there — its media, or on hold only its ICE consent checks — a forged alert
/// changes nothing; when both stop after the alert (a real close_notify: the peer
/// connection closed) the call ends within 15 s as the browser's hang-up, and the phone
/// gets its BYE.
#[test]
fn an_alert_after_the_handshake_ends_the_call_only_when_the_browser_is_gone() {
    let mut scene = Scene::established(config(|c| c.rtp_timeout = Duration::from_secs(120)));
    media_flows(&mut scene);
    // an alert record (content type 21, epoch 1) from the browser's address
    let alert = vec![21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 2, 1, 0];
    let browser = scene.browser.addr;
    scene.shard.datagram(browser, &mut alert.clone());
    for i in 0..1000u16 {
        // 20 s of the browser's media: it is still there
        scene.browser_says((i % 200) as u8);
        scene.advance(Duration::from_millis(20), false);
    }
    // then a hold: no media from it, only its consent checks
    scene.shard.datagram(browser, &mut alert.clone());
    scene.advance(Duration::from_secs(20), false);
    assert!(scene.shard.messages().is_empty(), "the call goes on");
    assert_eq!(scene.shard.calls.count(), 1);

    // the browser closes: an alert, then nothing at all
    scene.shard.datagram(browser, &mut alert.clone());
    scene.next_check = None;
    scene.advance(Duration::from_secs(14), false);
    assert_eq!(scene.shard.calls.count(), 1, "not before the grace");
    scene.advance(Duration::from_millis(1500), false);
    assert_eq!(
        scene.one_message(),
        json!({"type": "hangup", "id": "c1", "reason": "REMOTE"}),
    );
    let sip = scene.sip;
    assert!(matches!(scene.shard.commands().as_slice(), [SipCommand::Hangup(id)] if *id == sip));
}

/// A STUN check with another call's ufrag and a wrong password, sent from a browser's
/// address (spoofed), does not take that address's media to the other call.
#[test]
fn a_forged_ice_check_cannot_reroute_a_browsers_media() {
    let mut scene = Scene::established(config(|_| {}));
    let mut bob = browser_sim::Browser::new("10.1.0.2:50000".parse().unwrap(), "brwb");
    let offer = bob.offer(&scene.identity, false);
    scene.shard.request(
        "bob",
        Request::Invite {
            id: "b1".into(),
            callee: "1007".into(),
            sdp: offer,
            content: None,
            channel_id: None,
        },
    );
    let messages = scene.shard.messages();
    let answer = messages
        .iter()
        .find_map(|(user, v)| (user == "bob").then(|| v["sdp"].as_str()).flatten())
        .expect("srgate answers bob");
    bob.answered(answer);
    let bob_ufrag = browser_sim::attribute(answer, "ice-ufrag");
    scene.shard.commands();
    let mut forged = stun::binding_request(&format!("{bob_ufrag}:brwb"), "not-the-password", true);
    let alice = scene.browser.addr;
    scene.shard.datagram(alice, &mut forged);
    scene.shard.transmits();
    let sent = scene.browser_says(0x33);
    assert_eq!(
        scene.phone_gets(&sent),
        vec![(0, vec![0x33; PAYLOAD])],
        "alice's audio still reaches her phone"
    );
}

/// `[door] open_dtmf = *1`: the app user who answered a door station's call keys `*`
/// then `1` (each goes to SIP as RFC 4733); the sequence also goes as SIP INFO and the
/// door opens once. Keyed on an app's own outgoing call, it opens nothing.
#[test]
fn the_door_sequence_keyed_by_the_answering_app_opens_the_door() {
    let door = srgate::call::DoorOpening {
        sequence: "*1".into(),
        info: true,
    };
    let mut scene = Scene::new(config(|c| c.door = Some(door.clone())), "bob");
    let sip = SipCallId((1 << 63) | 9);
    scene.incoming(sip);
    scene.shard.commands();
    scene.accept();
    scene.connect();
    assert!(matches!(
        scene.shard.commands().as_slice(),
        [SipCommand::Answer(..)]
    ));
    scene.shard.transmits();
    media_flows(&mut scene);
    let id = scene.id.clone();
    let dtmf = |scene: &mut Scene, digits: &str| {
        scene.request(Request::Dtmf {
            id: id.clone(),
            digits: digits.into(),
        });
        scene.shard.commands()
    };
    assert!(dtmf(&mut scene, "5*").is_empty());
    assert!(scene.shard.calls.poll_door().is_none());
    let commands = dtmf(&mut scene, "1");
    assert!(
        matches!(
            commands.as_slice(),
            [SipCommand::Info(a, '*', _), SipCommand::Info(b, '1', _)] if *a == sip && *b == sip
        ),
        "{commands:?}"
    );
    let opened = scene.shard.calls.poll_door().expect("the door opened");
    assert_eq!(
        (
            opened.user.as_str(),
            opened.door.as_str(),
            opened.digits.as_str()
        ),
        ("bob", "1006", "*1")
    );
    assert_eq!(opened.call, id);
    assert!(scene.shard.calls.poll_door().is_none(), "once");
    assert!(scene.shard.messages().is_empty(), "no error to the app");

    // the app's own call to a phone: its digits open nothing
    let mut scene = Scene::new(config(|c| c.door = Some(door)), "alice");
    scene.invite("c1", "1006", None);
    scene.answer();
    scene.connect();
    scene.shard.commands();
    scene.shard.transmits();
    media_flows(&mut scene);
    scene.request(Request::Dtmf {
        id: "c1".into(),
        digits: "*1".into(),
    });
    assert!(scene.shard.commands().is_empty());
    assert!(scene.shard.calls.poll_door().is_none());
}

/// `preview`: srgate answers the browser at once, sends the caller a 183 with its answer
/// once the browser's DTLS is up, and passes the caller's media on while nothing of the
/// browser reaches the caller; `accept` then sends the 200 (the same answer) at once.
#[test]
fn a_previewed_call_gets_early_media_and_sends_nothing_until_accepted() {
    let mut scene = Scene::new(config(|_| {}), "bob");
    let sip = SipCallId((1 << 63) | 9);
    scene.incoming(sip);
    scene.shard.commands();
    let id = scene.id.clone();
    let preview = Request::Preview {
        id: id.clone(),
        sdp: scene.browser.offer(&scene.identity, true),
    };
    scene.request(preview);
    let reply = scene.one_message();
    assert_eq!(reply["state"], "PREVIEW", "{reply}");
    scene
        .browser
        .answered(reply["sdp"].as_str().expect("srgate's answer"));
    assert!(
        scene.shard.commands().is_empty(),
        "nothing toward SIP before DTLS; the call is not claimed"
    );
    scene.connect();
    let early = match scene.shard.commands().as_slice() {
        [SipCommand::EarlyMedia(i, sdp)] if *i == sip => sdp.clone(),
        other => panic!("a 183 with srgate's answer: {other:?}"),
    };
    assert_sip_sdp(&early, scene.port, "0");
    scene.shard.transmits();
    // the caller is heard; the browser's microphone does not reach the caller
    let sent = scene.phone_says(0x2a);
    assert_eq!(scene.browser_gets(&sent), [pcmu(0x2a)], "phone → browser");
    let sent = scene.browser_says(0x55);
    assert!(
        scene.phone_gets(&sent).is_empty(),
        "nothing toward SIP: {sent:?}"
    );

    // accept: the 200 with the same answer, at once; media both ways from then on
    scene.request(Request::Accept {
        id: id.clone(),
        sdp: String::new(),
        response: None,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "remote_state", "id": id, "state": "ACCEPTED"})
    );
    match scene.shard.commands().as_slice() {
        [SipCommand::Claim(c), SipCommand::Answer(a, sdp)] if *c == sip && *a == sip => {
            assert_eq!(*sdp, early, "the 200 repeats the 183's answer");
        }
        other => panic!("claim and 200: {other:?}"),
    }
    media_flows(&mut scene);
}
