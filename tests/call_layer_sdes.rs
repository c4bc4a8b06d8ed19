//! SRTP toward SIP keyed by SDES in a shard's call layer (no network, simulated clock):
//! the default `[media] sip_srtp = optional` answers a phone's RTP/SAVP offer with a key of
//! its own and carries media as SRTP both ways (a plain packet is not heard; a re-offer's
//! new key is taken);
//! `mandatory` offers RTP/SAVP with one key a suite and takes the answer's; the policy's
//! refusals are 488s.

#[path = "../benches/support/browser_sim.rs"]
mod browser_sim;
mod sim;
#[path = "../benches/support/stun.rs"]
mod stun;

use std::net::SocketAddr;

use srgate::call::link::SipCommand;
use srgate::config::SipSrtp;
use srgate::sdp::sdes::SdesKey;
use srgate::sdp::sip::parse_rtp_sdp;
use srgate::sip::endpoint::{Event, SipCallId};
use srgate::webrtc::srtp::SrtpProfile;

use browser_sim::{pcmu_packet, phone_sdp};
use sim::{Scene, config, rtp_parts};

fn srtp_sdp(phone: SocketAddr, key: &SdesKey) -> String {
    phone_sdp(phone, true, "sendrecv").replace("RTP/AVP", "RTP/SAVP") + &key.attribute()
}

fn offer_from_phone(scene: &mut Scene, sip: SipCallId, sdp: String) {
    scene.sip = sip;
    scene.shard.sip_event(Event::IncomingCall {
        id: sip,
        app_user: scene.user.clone(),
        caller: "1006".into(),
        caller_name: None,
        cus_data: None,
        sdp,
        group: None,
        sip_member: false,
        internal: false,
    });
}

/// The phone's PCMU packet (payload all `fill`) protected with `key`, to the call's port.
fn phone_says_srtp(scene: &mut Scene, key: &mut srgate::webrtc::srtp::SrtpContext, seq: u16) {
    let mut buf = [0u8; 256];
    let len = pcmu_packet(&mut buf, seq, u32::from(seq) * 160, 0xf0f0, 0x2a);
    let len = key.protect_rtp(&mut buf, len).expect("room for the tag");
    scene.shard.rtp(scene.port, scene.phone, &buf[..len]);
}

#[test]
fn optional_answers_an_sdes_offer_and_media_is_srtp_both_ways() {
    let mut scene = Scene::new(config(|_| {}), "bob");
    let phone_key = SdesKey::generate(3, SrtpProfile::Aes128CmHmacSha1_80).unwrap();
    let sip = SipCallId((1 << 63) | 9);
    let sdp = srtp_sdp(scene.phone, &phone_key);
    offer_from_phone(&mut scene, sip, sdp);
    let invitation = scene.one_message();
    assert_eq!(invitation["type"], "remote_invitation");
    scene.id = invitation["id"].as_str().unwrap().to_owned();
    scene.port = *scene.shard.ports.opened.last().unwrap();
    assert!(matches!(
        scene.shard.commands().as_slice(),
        [SipCommand::Ring(_)]
    ));
    assert_eq!(scene.accept()["state"], "ACCEPTED");
    scene.connect();
    let answer = match scene.shard.commands().as_slice() {
        [SipCommand::Answer(id, sdp)] if *id == sip => sdp.clone(),
        other => panic!("the 200 toward SIP: {other:?}"),
    };
    assert!(answer.contains(" RTP/SAVP 0"), "{answer}");
    assert_eq!(answer.matches("a=crypto:").count(), 1, "{answer}");
    let ours = parse_rtp_sdp(&answer)
        .unwrap()
        .crypto
        .expect("srgate's key");
    assert_eq!((ours.tag, ours.profile), (3, phone_key.profile));
    assert_ne!(ours, phone_key, "srgate's key is its own");
    scene.shard.transmits();

    // phone → browser: SRTP under the phone's key is heard; plain RTP is not
    let mut phone_send = phone_key.context().unwrap();
    phone_says_srtp(&mut scene, &mut phone_send, 1);
    let sent = scene.shard.transmits();
    let heard = scene.browser_gets(&sent);
    assert_eq!(heard.len(), 1, "{sent:?}");
    assert!(heard[0].1.iter().all(|b| *b == 0x2a));
    let sent = scene.phone_says(0x11);
    assert!(scene.browser_gets(&sent).is_empty(), "plain RTP is refused");

    // browser → phone: SRTP under srgate's key
    let sent = scene.browser_says(0x55);
    let mut phone_recv = ours.context().unwrap();
    let to_phone: Vec<Vec<u8>> = sent
        .iter()
        .filter(|(t, _)| sim::is_to(t, srgate::call::MediaSocket::Rtp(scene.port), scene.phone))
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(to_phone.len(), 1, "{sent:?}");
    let mut packet = to_phone[0].clone();
    let n = phone_recv.unprotect_rtp(&mut packet).expect("srgate's key");
    let (pt, payload) = rtp_parts(&packet[..n]);
    assert_eq!(pt, 0);
    assert!(payload.iter().all(|b| *b == 0x55));

    // a re-offer with a new key of the same suite (RFC 4568 §7.1.4): the new key is taken
    let new_key = SdesKey::generate(3, phone_key.profile).unwrap();
    let sdp = srtp_sdp(scene.phone, &new_key);
    scene.shard.sip_event(Event::CallUpdated { id: sip, sdp });
    let mut phone_send = new_key.context().unwrap();
    phone_says_srtp(&mut scene, &mut phone_send, 2);
    let sent = scene.shard.transmits();
    assert_eq!(scene.browser_gets(&sent).len(), 1, "{sent:?}");
}

#[test]
fn the_policy_refuses_with_488() {
    let phone_key = SdesKey::generate(1, SrtpProfile::AeadAes128Gcm).unwrap();
    // off: an RTP/SAVP offer
    let mut scene = Scene::new(config(|c| c.sip_srtp = SipSrtp::Off), "bob");
    let sip = SipCallId((1 << 63) | 1);
    let sdp = srtp_sdp(scene.phone, &phone_key);
    offer_from_phone(&mut scene, sip, sdp);
    assert!(
        matches!(scene.shard.commands().as_slice(), [SipCommand::RejectOffer(id, why)] if *id == sip && !why.is_empty())
    );
    assert!(scene.shard.messages().is_empty());
    // mandatory: a plain offer
    let mut scene = Scene::new(config(|c| c.sip_srtp = SipSrtp::Mandatory), "bob");
    let sdp = phone_sdp(scene.phone, true, "sendrecv");
    offer_from_phone(&mut scene, sip, sdp);
    assert!(
        matches!(scene.shard.commands().as_slice(), [SipCommand::RejectOffer(id, why)] if *id == sip && !why.is_empty())
    );
    // any policy: an RTP/SAVP offer whose only key is unusable
    let mut scene = Scene::new(config(|_| {}), "bob");
    let bad = phone_sdp(scene.phone, true, "sendrecv").replace("RTP/AVP", "RTP/SAVP")
        + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n";
    offer_from_phone(&mut scene, sip, bad);
    assert!(
        matches!(scene.shard.commands().as_slice(), [SipCommand::RejectOffer(id, why)] if *id == sip && !why.is_empty())
    );
}

#[test]
fn mandatory_offers_every_suite_and_takes_the_answers_one() {
    let mut scene = Scene::new(config(|c| c.sip_srtp = SipSrtp::Mandatory), "alice");
    let (_, call) = scene.invite("c1", "1006", None);
    assert!(call.sdp.contains(" RTP/SAVP "), "{}", call.sdp);
    let offered: Vec<SdesKey> = call
        .sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| SdesKey::parse(v).unwrap())
        .collect();
    assert_eq!(offered.len(), 4, "{}", call.sdp);
    let chosen = offered
        .iter()
        .find(|k| k.profile == SrtpProfile::Aes128CmHmacSha1_32)
        .unwrap()
        .clone();
    scene.connect();
    // a plain answer to an SRTP offer fails the call
    let mut plain = Scene::new(config(|c| c.sip_srtp = SipSrtp::Mandatory), "alice");
    plain.invite("c2", "1006", None);
    plain.connect();
    plain.shard.sip_event(Event::CallAnswered {
        id: plain.sip,
        sdp: phone_sdp(plain.phone, true, "sendrecv"),
    });
    let said = plain.shard.messages();
    assert!(
        said.iter().all(|(_, m)| m["state"] != "ACCEPTED_BY_REMOTE"),
        "{said:?}"
    );

    let phone_key = SdesKey::generate(chosen.tag, chosen.profile).unwrap();
    scene.shard.sip_event(Event::CallAnswered {
        id: scene.sip,
        sdp: srtp_sdp(scene.phone, &phone_key),
    });
    assert_eq!(scene.one_message()["state"], "ACCEPTED_BY_REMOTE");
    scene.shard.transmits();
    let mut phone_send = phone_key.context().unwrap();
    phone_says_srtp(&mut scene, &mut phone_send, 1);
    let sent = scene.shard.transmits();
    assert_eq!(scene.browser_gets(&sent).len(), 1, "{sent:?}");
    let sent = scene.browser_says(0x55);
    let mut phone_recv = chosen.context().unwrap();
    let (_, mut packet) = sent
        .into_iter()
        .find(|(t, _)| sim::is_to(t, srgate::call::MediaSocket::Rtp(scene.port), scene.phone))
        .expect("a packet to the phone");
    let n = phone_recv
        .unprotect_rtp(&mut packet)
        .expect("the key srgate offered");
    assert!(rtp_parts(&packet[..n]).1.iter().all(|b| *b == 0x55));
}
