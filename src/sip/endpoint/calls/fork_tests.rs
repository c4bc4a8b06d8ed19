//! Tests of ring groups at the SIP endpoint: one INVITE for a `[groups]` number offered to
//! every app member, played against a PBX.

use super::tests::{
    OFFER, PBX, ep_with_groups, events, in_dialog, invite, responses, send, sent, status, t0,
    to_tag, with_body,
};
use super::*;

/// An endpoint (proxy mode) whose group 301 is anna, ben and carl (and a SIP phone, not
/// rung: the PBX, not srgate, calls its phones), and whose group 302 has only a SIP phone.
fn ep(now: Instant) -> Endpoint {
    let mut groups = crate::config::Groups::default();
    groups
        .add("301", "app:anna, app:ben, sip:3011, app:carl")
        .unwrap();
    groups.add("302", "sip:3021").unwrap();
    ep_with_groups(now, groups)
}

/// The PBX's INVITE for `number` (branch `branch`, Call-ID `BRANCH@pbx`).
fn invite_for(number: &str, branch: &str) -> String {
    invite(branch, 1, "", OFFER)
        .replace("sip:1001@", &format!("sip:{number}@"))
        .replace("Call-ID: c1@pbx", &format!("Call-ID: {branch}@pbx"))
}

/// An in-dialog request of the call whose INVITE had branch `call` (its Call-ID).
fn in_call(call: &str, method: &str, branch: &str, cseq: u32, tag: &str) -> String {
    in_dialog(method, branch, cseq, tag, "").replace("c1@pbx", &format!("{call}@pbx"))
}

/// INVITE for 301: the three app members' branches, in order.
fn forked(ep: &mut Endpoint, now: Instant, branch: &str) -> Vec<SipCallId> {
    send(ep, now, &invite_for("301", branch));
    assert_eq!(responses(ep), [100]);
    events(ep)
        .into_iter()
        .map(|e| match e {
            Event::IncomingCall {
                id,
                app_user,
                group,
                sdp,
                ..
            } => {
                assert_eq!(group.as_deref(), Some("301"));
                assert_eq!(sdp, OFFER);
                assert!(["anna", "ben", "carl"].contains(&app_user.as_str()));
                id
            }
            other => panic!("not a branch: {other:?}"),
        })
        .collect()
}

fn canceled(id: SipCallId, elsewhere: bool) -> Event {
    Event::CallCanceled { id, elsewhere }
}

#[test]
fn the_first_member_to_accept_takes_the_call_and_the_others_are_cancelled() {
    let now = t0();
    let mut ep = ep(now);
    let b = forked(&mut ep, now, "g1");
    assert_eq!(b.len(), 3, "the app members, not the SIP phone");
    // one 180 for the caller, however many members ring
    for id in &b {
        ep.ring(now, *id);
    }
    assert_eq!(responses(&mut ep), [180]);
    // ben accepts: anna and carl are told it went elsewhere
    ep.claim(b[1]);
    assert_eq!(
        events(&mut ep),
        [canceled(b[0], true), canceled(b[2], true)]
    );
    // anna accepting a moment later changes nothing
    ep.claim(b[0]);
    ep.answer(now, b[0], OFFER);
    assert!(events(&mut ep).is_empty());
    assert!(sent(&mut ep).is_empty());
    // ben's answer is the 200; the call goes on under ben's id
    ep.answer(now, b[1], OFFER);
    let ok = sent(&mut ep);
    assert_eq!(status(&ok[0]), 200, "{ok:?}");
    let tag = to_tag(&ok[0]);
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_call("g1", "ACK", "a1", 1, &tag)
        ),
    );
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_call("g1", "BYE", "y1", 2, &tag)
        ),
    );
    assert_eq!(responses(&mut ep), [200]);
    assert_eq!(
        events(&mut ep),
        [Event::CallEnded {
            id: b[1],
            code: None
        }]
    );
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn a_member_who_refuses_leaves_the_others_ringing_and_the_last_answer_is_the_strongest() {
    let now = t0();
    let mut ep = ep(now);
    let b = forked(&mut ep, now, "g2");
    ep.reject(now, b[0], 480);
    ep.reject(now, b[1], 486);
    assert!(sent(&mut ep).is_empty(), "carl still rings");
    // carl's invitation expires (the call layer's 480): busy is what the caller hears
    ep.reject(now, b[2], 480);
    assert_eq!(responses(&mut ep), [486]);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.active_calls(), 0);

    // nobody there or nobody answering: 480
    let b = forked(&mut ep, now, "g3");
    ep.reject(now, b[0], 480);
    ep.hangup(now, b[1]);
    ep.reject(now, b[2], 408);
    assert_eq!(responses(&mut ep), [480]);

    // an offer nobody can take: 488 with the why of a member
    let b = forked(&mut ep, now, "g4");
    for id in &b {
        ep.reject_offer(now, *id, "no common codec");
    }
    let out = sent(&mut ep);
    assert_eq!(status(&out[0]), 488);
    assert!(
        out[0].contains("Warning: 305 srgate \"no common codec\""),
        "{}",
        out[0]
    );
}

#[test]
fn the_callers_cancel_reaches_every_member() {
    let now = t0();
    let mut ep = ep(now);
    let b = forked(&mut ep, now, "g5");
    ep.ring(now, b[2]);
    assert_eq!(responses(&mut ep), [180]);
    let cancel = invite_for("301", "g5")
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let head = cancel.split("\r\n\r\n").next().unwrap();
    let head = head
        .lines()
        .filter(|l| !l.starts_with("Content-"))
        .collect::<Vec<_>>()
        .join("\r\n");
    send(
        &mut ep,
        now,
        &format!("{head}\r\nContent-Length: 0\r\n\r\n"),
    );
    let mut codes = responses(&mut ep);
    codes.sort_unstable();
    assert_eq!(codes, [200, 487]);
    assert_eq!(
        events(&mut ep),
        [
            canceled(b[0], false),
            canceled(b[1], false),
            canceled(b[2], false)
        ]
    );
    // the branches are gone: a late verb on one does nothing
    ep.answer(now, b[0], OFFER);
    assert!(sent(&mut ep).is_empty());
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn a_group_without_app_members_is_480_and_an_answer_alone_claims() {
    let now = t0();
    let mut ep = ep(now);
    send(&mut ep, now, &invite_for("302", "g6"));
    assert_eq!(responses(&mut ep), [480]);
    assert!(events(&mut ep).is_empty());

    // a member answering without a claim first (the call layer always claims on accept,
    // this is the endpoint holding on its own): the call is theirs
    let b = forked(&mut ep, now, "g7");
    ep.answer(now, b[2], OFFER);
    assert_eq!(
        events(&mut ep),
        [canceled(b[0], true), canceled(b[1], true)]
    );
    assert_eq!(responses(&mut ep), [200]);
    assert_eq!(ep.active_calls(), 1);
    // the 200 repeats until the ACK; then the PBX re-INVITEs: answered on carl's call
    let tag = {
        ep.handle_timeout(now + Duration::from_millis(600));
        let again = sent(&mut ep);
        let ok = again.iter().find(|t| t.starts_with("SIP/2.0 200"));
        to_tag(ok.expect("the 200 repeated"))
    };
    let reinvite = with_body(
        &format!(
            "{}Contact: <sip:1006@{PBX}>\r\n",
            in_call("g7", "INVITE", "r1", 2, &tag)
        ),
        "application/sdp",
        OFFER,
    );
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_call("g7", "ACK", "a7", 1, &tag)
        ),
    );
    send(&mut ep, now, &reinvite);
    let codes = responses(&mut ep);
    assert!(codes.contains(&200), "{codes:?}");
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::CallUpdated { id, .. }] if *id == b[2]
    ));
}

#[test]
fn one_member_previews_at_a_time_and_the_next_one_waiting_gets_the_early_media() {
    let now = t0();
    let mut ep = ep(now);
    let b = forked(&mut ep, now, "g9");
    let sdp = |who: &str| OFFER.replace("o=- ", &format!("o={who} "));
    let early = |ep: &mut Endpoint| -> Vec<String> {
        sent(ep)
            .into_iter()
            .filter(|t| t.starts_with("SIP/2.0 183 "))
            .collect()
    };
    // anna previews: the caller's 183 carries her SDP
    ep.early_media(now, b[0], &sdp("anna"));
    let first = early(&mut ep);
    assert_eq!(first.len(), 1);
    assert!(first[0].contains("o=anna "), "{}", first[0]);
    // ben previews too: he waits (no 183), and so does carl
    ep.early_media(now, b[1], &sdp("ben"));
    ep.early_media(now, b[2], &sdp("carl"));
    assert!(early(&mut ep).is_empty());
    // carl gives up while waiting; anna refuses: ben, next in line, gets it
    ep.reject(now, b[2], 486);
    ep.reject(now, b[0], 486);
    let next = early(&mut ep);
    assert_eq!(next.len(), 1, "one 183, ben's");
    assert!(next[0].contains("o=ben "), "{}", next[0]);
    assert!(events(&mut ep).is_empty(), "nobody else is told anything");
    // each SDP in a dialog of its own (the caller keeps a dialog's first SDP): anna's 183
    // under the INVITE's tag (the 180's), ben's under a new one
    assert_ne!(to_tag(&first[0]), to_tag(&next[0]));
    // ben answers: the 200 carries his SDP, in his dialog
    ep.answer(now, b[1], &sdp("ben"));
    let ok: Vec<String> = sent(&mut ep)
        .into_iter()
        .filter(|t| t.starts_with("SIP/2.0 200 "))
        .collect();
    assert!(ok.len() == 1 && ok[0].contains("o=ben "), "{ok:?}");
    assert_eq!(to_tag(&ok[0]), to_tag(&next[0]));
}

/// A member who never previewed answers after another did: the 200 opens a dialog of its
/// own (a new To tag), never the one whose SDP the caller holds; the call lives in it.
#[test]
fn an_answer_after_another_members_preview_comes_in_a_dialog_of_its_own() {
    let now = t0();
    let mut ep = ep(now);
    let b = forked(&mut ep, now, "g8");
    let sdp = |who: &str| OFFER.replace("o=- ", &format!("o={who} "));
    for id in &b {
        ep.ring(now, *id);
    }
    let ringing = sent(&mut ep);
    assert_eq!(ringing.iter().map(|t| status(t)).collect::<Vec<_>>(), [180]);
    let invite_tag = to_tag(&ringing[0]);
    // anna previews under the INVITE's tag
    ep.early_media(now, b[0], &sdp("anna"));
    let early = sent(&mut ep);
    assert_eq!(status(&early[0]), 183);
    assert_eq!(to_tag(&early[0]), invite_tag);
    // carl answers without previewing: a new dialog, carl's SDP
    ep.claim(b[2]);
    assert_eq!(
        events(&mut ep),
        [canceled(b[0], true), canceled(b[1], true)]
    );
    ep.answer(now, b[2], &sdp("carl"));
    let ok = sent(&mut ep);
    assert_eq!(status(&ok[0]), 200, "{ok:?}");
    assert!(ok[0].contains("o=carl "), "{}", ok[0]);
    let tag = to_tag(&ok[0]);
    assert_ne!(tag, invite_tag, "not the dialog holding anna's SDP");
    // anna's dialog is no call: a BYE in it is a 481
    let bye = |branch: &str, cseq: u32, tag: &str| {
        format!(
            "{}Content-Length: 0\r\n\r\n",
            in_call("g8", "BYE", branch, cseq, tag)
        )
    };
    send(&mut ep, now, &bye("y0", 2, &invite_tag));
    assert_eq!(responses(&mut ep), [481]);
    // carl's is: ACK, then BYE end it
    send(
        &mut ep,
        now,
        &format!(
            "{}Content-Length: 0\r\n\r\n",
            in_call("g8", "ACK", "a8", 1, &tag)
        ),
    );
    send(&mut ep, now, &bye("y1", 3, &tag));
    assert_eq!(responses(&mut ep), [200]);
    assert_eq!(
        events(&mut ep),
        [Event::CallEnded {
            id: b[2],
            code: None
        }]
    );
    assert_eq!(ep.active_calls(), 0);
}
