//! The call layer (`Calls`) in scenarios, without sockets (see `call_layer.rs`): calls
//! that end without being answered or that stop — cancelled by either side, expired,
//! refused by SIP, silent or never connected — each checked for what the browser is told
//! (docs/protocol.md), the command toward SIP, the call's record and its freed port.

#![deny(unsafe_code)]

#[path = "../benches/support/browser_sim.rs"]
mod browser_sim;
mod sim;
#[path = "../benches/support/stun.rs"]
mod stun;

use std::time::Duration;

use serde_json::{Value, json};

use srgate::call::ACCEPT_WAIT;
use srgate::call::link::SipCommand;
use srgate::signal::protocol::Request;
use srgate::sip::endpoint::{Event, SipCallId};

use browser_sim::BrowserIdentity;
use sim::{Scene, config};

const INCOMING: SipCallId = SipCallId((1 << 63) | 9);

/// The record's `sip_code`, `reason` and `answer`.
fn cdr_end(scene: &mut Scene) -> (Value, Value, Value) {
    let cdr = scene.one_cdr();
    assert_eq!(cdr.get("call"), Some(&json!(scene.id)));
    assert_eq!(cdr.get("user"), Some(&json!(scene.user)));
    let field = |k: &str| cdr.get(k).cloned().unwrap_or(Value::Null);
    (field("sip_code"), field("reason"), field("answer"))
}

fn assert_hangup_toward_sip(scene: &mut Scene) {
    let sip = scene.sip;
    let commands = scene.shard.commands();
    assert!(
        matches!(commands.as_slice(), [SipCommand::Hangup(id)] if *id == sip),
        "a hangup (CANCEL or BYE) toward SIP: {commands:?}"
    );
}

fn assert_reject_toward_sip(scene: &mut Scene, code: u16) {
    let sip = scene.sip;
    let commands = scene.shard.commands();
    assert!(
        matches!(commands.as_slice(), [SipCommand::Reject(id, c)] if *id == sip && *c == code),
        "{code} toward SIP: {commands:?}"
    );
}

/// An incoming call ringing at `bob`'s, the invitation and the 180 consumed.
fn ringing_at_app(tune: impl FnOnce(&mut srgate::call::CallsConfig)) -> Scene {
    let mut scene = Scene::new(config(tune), "bob");
    assert_eq!(scene.incoming(INCOMING)["type"], "remote_invitation");
    assert!(matches!(
        scene.shard.commands().as_slice(),
        [SipCommand::Ring(_)]
    ));
    scene
}

#[test]
fn app_cancels_a_ringing_call() {
    let mut scene = Scene::new(config(|_| {}), "alice");
    scene.invite("c1", "1006", None);
    scene.shard.sip_event(Event::CallProgress {
        id: scene.sip,
        code: 180,
        sdp: None,
    });
    assert_eq!(scene.one_message()["state"], "RECEIVED_BY_REMOTE");
    scene.request(Request::Cancel { id: "c1".into() });
    assert_eq!(
        scene.one_message(),
        json!({"type": "local_state", "id": "c1", "state": "CANCELED"})
    );
    assert_hangup_toward_sip(&mut scene);
    assert_eq!(
        cdr_end(&mut scene),
        (json!(487), json!("LOCAL"), Value::Null)
    );
    scene.assert_gone();
    // a second cancel names no call
    scene.request(Request::Cancel { id: "c1".into() });
    let error = scene.one_message();
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "NO_SUCH_CALL");
    assert_eq!(error["id"], "c1");
}

#[test]
fn sip_caller_cancels_a_call_ringing_at_the_app() {
    let mut scene = ringing_at_app(|_| {});
    scene.shard.sip_event(Event::CallCanceled {
        id: INCOMING,
        elsewhere: false,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "remote_state", "id": scene.id, "state": "CANCELED"})
    );
    assert!(scene.shard.commands().is_empty(), "the SIP side is over");
    assert_eq!(
        cdr_end(&mut scene),
        (json!(487), json!("CANCELED"), Value::Null)
    );
    scene.assert_gone();
}

/// A ring group's branch: another member took the call. Still ringing: `CANCELED` with
/// the reason; already accepted (claimed second): a `hangup` saying SIP's "completed
/// elsewhere". Either way the SIP side is not touched (the endpoint ended the branch).
#[test]
fn a_ring_group_branch_taken_elsewhere_ends_saying_so() {
    let mut scene = ringing_at_app(|_| {});
    scene.shard.sip_event(Event::CallCanceled {
        id: INCOMING,
        elsewhere: true,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "remote_state", "id": scene.id, "state": "CANCELED", "reason": "ANSWERED_ELSEWHERE"})
    );
    assert!(scene.shard.commands().is_empty(), "the SIP side is over");
    assert_eq!(
        cdr_end(&mut scene),
        (json!(487), json!("ANSWERED_ELSEWHERE"), Value::Null)
    );
    scene.assert_gone();

    // accepted (the accept claimed the call: `Scene::accept` checks it)
    let mut scene = ringing_at_app(|_| {});
    assert_eq!(scene.accept()["state"], "ACCEPTED");
    scene.shard.sip_event(Event::CallCanceled {
        id: INCOMING,
        elsewhere: true,
    });
    assert_eq!(
        scene.one_message(),
        json!({"type": "hangup", "id": scene.id, "reason": "REMOTE",
               "sip": {"code": 200, "reason": "Call completed elsewhere"}})
    );
    assert!(scene.shard.commands().is_empty(), "the SIP side is over");
    scene.assert_gone();
}

#[test]
fn app_refuses_an_invitation_busy_or_declined() {
    for (response, code) in [(None, 486), (Some("decline"), 603)] {
        let mut scene = ringing_at_app(|_| {});
        scene.request(Request::Refuse {
            id: scene.id.clone(),
            response: response.map(str::to_owned),
        });
        assert_reject_toward_sip(&mut scene, code);
        assert!(scene.shard.messages().is_empty());
        assert_eq!(
            cdr_end(&mut scene),
            (json!(code), json!("REFUSED"), Value::Null)
        );
        scene.assert_gone();
    }
}

#[test]
fn unanswered_app_call_expires() {
    let timeout = Duration::from_secs(10);
    let mut scene = Scene::new(config(|c| c.invitation_timeout = timeout), "alice");
    scene.invite("c1", "1006", None);
    scene.connect();
    scene.advance(timeout - Duration::from_millis(100), false);
    assert!(scene.shard.messages().is_empty(), "not yet");
    assert_eq!(scene.shard.calls.count(), 1);
    scene.advance(Duration::from_millis(200), false);
    assert_eq!(
        scene.one_message(),
        json!({"type": "local_state", "id": "c1", "state": "FAILURE", "error": "INVITATION_EXPIRE"})
    );
    assert_hangup_toward_sip(&mut scene);
    assert_eq!(
        cdr_end(&mut scene),
        (json!(487), json!("INVITATION_EXPIRE"), Value::Null)
    );
    scene.assert_gone();
}

#[test]
fn unanswered_invitation_at_the_app_expires() {
    let timeout = Duration::from_secs(10);
    let mut scene = ringing_at_app(|c| c.invitation_timeout = timeout);
    scene.advance(timeout - Duration::from_millis(100), false);
    assert!(scene.shard.messages().is_empty(), "not yet");
    scene.advance(Duration::from_millis(200), false);
    assert_eq!(
        scene.one_message(),
        json!({"type": "remote_state", "id": scene.id, "state": "FAILURE", "error": "INVITATION_EXPIRE"})
    );
    assert_reject_toward_sip(&mut scene, 480);
    assert_eq!(
        cdr_end(&mut scene),
        (json!(480), json!("INVITATION_EXPIRE"), Value::Null)
    );
    scene.assert_gone();
}

#[test]
fn answered_call_ends_when_sip_rtp_stops() {
    let rtp_timeout = Duration::from_secs(5);
    let mut scene = Scene::established(config(|c| c.rtp_timeout = rtp_timeout));
    // the phone talks for a second, then falls silent
    scene.advance(Duration::from_secs(1), true);
    scene.advance(rtp_timeout - Duration::from_millis(100), false);
    assert!(scene.shard.messages().is_empty(), "not yet");
    assert_eq!(scene.shard.calls.count(), 1);
    scene.advance(Duration::from_millis(200), false);
    assert_eq!(
        scene.one_message(),
        json!({"type": "hangup", "id": "c1", "reason": "TIMEOUT"})
    );
    assert_hangup_toward_sip(&mut scene);
    let cdr = scene.one_cdr();
    assert_eq!(cdr.get("reason"), Some(&json!("TIMEOUT")));
    assert_eq!(cdr.get("sip_code"), Some(&json!(200)), "it was answered");
    assert_eq!(
        cdr.get("sip").unwrap()["rtp_in"],
        50,
        "1 s of 20 ms packets"
    );
    scene.assert_gone();
}

#[test]
fn app_call_whose_browser_never_connects_fails_with_media_failed() {
    // no ICE check ever comes: the leg gives up at the ICE consent timeout (30 s)
    let mut scene = Scene::new(config(|_| {}), "alice");
    scene.invite("c1", "1006", None);
    scene.advance(Duration::from_secs(29), false);
    assert!(scene.shard.messages().is_empty(), "not yet");
    scene.advance(Duration::from_secs(2), false);
    assert_eq!(
        scene.one_message(),
        json!({"type": "local_state", "id": "c1", "state": "FAILURE", "error": "MEDIA_FAILED"})
    );
    assert_hangup_toward_sip(&mut scene);
    let (_, reason, answer) = cdr_end(&mut scene);
    assert_eq!((reason, answer), (json!("TIMEOUT"), Value::Null));
    scene.assert_gone();
    // counted for /metrics as an ICE failure
    let m = scene.shard.calls.metrics();
    assert_eq!((m.ice_failures, m.dtls_failures), (1, 0));
}

#[test]
fn sip_refusals_map_to_protocol_states() {
    let cases = [
        (486, "Busy Here", "REFUSED_BY_REMOTE", None),
        (603, "Decline", "REFUSED_BY_REMOTE", None),
        (404, "Not Found", "FAILURE", Some("PEER_OFFLINE")),
        (
            480,
            "Temporarily Unavailable",
            "FAILURE",
            Some("PEER_OFFLINE"),
        ),
        (408, "Request Timeout", "FAILURE", Some("PEER_NO_RESPONSE")),
        (503, "Service Unavailable", "FAILURE", None),
    ];
    for (code, reason, state, error) in cases {
        let mut scene = Scene::new(config(|_| {}), "alice");
        scene.invite("c1", "1006", None);
        scene.shard.sip_event(Event::CallFailed {
            id: scene.sip,
            code,
            reason: reason.into(),
        });
        let mut expected = json!({
            "type": "local_state", "id": "c1", "state": state,
            "sip": {"code": code, "reason": reason},
        });
        if let Some(error) = error {
            expected["error"] = json!(error);
        }
        assert_eq!(scene.one_message(), expected, "SIP {code}");
        assert!(
            scene.shard.commands().is_empty(),
            "SIP {code}: the call is over there"
        );
        assert_eq!(
            cdr_end(&mut scene),
            (json!(code), json!("REMOTE"), Value::Null),
            "SIP {code}"
        );
        scene.assert_gone();
    }
}

/// docs/protocol.md: after `remote_state ACCEPTED` an incoming call ends with
/// `remote_state FAILURE MEDIA_FAILED` when the browser's ICE/DTLS does not come up.
/// When the browser's certificate does not match its offer's fingerprint, src/call/mod.rs
/// `Calls::fail` sends `local_state` (a message about the app's own outgoing calls)
/// for this incoming call: `protocol::local_state(&key.1, "FAILURE", .., Some("MEDIA_FAILED"), ..)`.
#[test]
fn accepted_call_whose_dtls_fails_is_told_remote_state_media_failed() {
    let mut scene = ringing_at_app(|_| {});
    scene.accept();
    // the browser does DTLS with another certificate than its offer names
    let impostor = BrowserIdentity::generate();
    assert!(!scene.browser.try_connect(&mut scene.shard, &impostor));
    scene.advance(Duration::from_secs(1), false);
    assert_eq!(
        scene.one_message(),
        json!({"type": "remote_state", "id": scene.id, "state": "FAILURE", "error": "MEDIA_FAILED"})
    );
    assert_reject_toward_sip(&mut scene, 480);
    scene.assert_gone();
    let m = scene.shard.calls.metrics();
    assert_eq!((m.ice_failures, m.dtls_failures), (0, 1));
}

/// docs/protocol.md, as above, when no ICE check comes at all: src/call/mod.rs
/// `Calls::timeout_of` ends a call still `Accepting` at `ACCEPT_WAIT` (20 s) with
/// `protocol::hangup(&key.1, "TIMEOUT", None)`, a `hangup` for a call that was never
/// answered.
#[test]
fn accepted_call_whose_browser_never_connects_is_told_remote_state_media_failed() {
    let mut scene = ringing_at_app(|_| {});
    scene.accept();
    scene.advance(ACCEPT_WAIT + Duration::from_secs(1), false);
    assert_eq!(
        scene.one_message(),
        json!({"type": "remote_state", "id": scene.id, "state": "FAILURE", "error": "MEDIA_FAILED"})
    );
    assert_reject_toward_sip(&mut scene, 480);
    scene.assert_gone();
}
