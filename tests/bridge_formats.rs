//! G.711 at packet times other than 20 ms, end to end, with standalone srgate and headless
//! Chromium as app user 1001 (440 Hz; it negotiates Opus, so srgate transcodes and
//! re-frames):
//! - SIPp as user 1006 offers PCMA at `a=ptime:30` only and plays a 1000 Hz tone in 30 ms
//!   packets (a capture the test writes): srgate's answer repeats `a=ptime:30`, the
//!   browser hears the tone (30 ms packets were silence before);
//! - baresip registered with `ptime=30` (as 1006) and `ptime=60` (as 1007) calls the app:
//!   each side hears the other's tone.
//!
//! The call's CDR line shows both sides sent packets of that packet time. Also: a re-offer
//! that changes the codec, offerless INVITEs, an Opus phone (relayed) and a G.722 phone
//! (wideband tones both ways through Opus ⇄ G.722 at 16 kHz). In a private network
//! namespace.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use srgate::media::codec::Law;

use common::TestDir;
use common::calls::{self, PHONE_HZ};
use common::sip_phone::SipPhone;

const APP: &str = "1001";

/// Packets per second srgate sent the SIP leg and got from it over the answered call.
fn sip_packet_rates(cdr: &Value) -> (f64, f64) {
    let seconds = cdr["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    assert!(seconds >= 1.5, "the call lasted {seconds} s: {cdr}");
    let out = cdr["sip"]["rtp_out"].as_f64().unwrap_or(0.0) / seconds;
    let inn = cdr["sip"]["rtp_in"].as_f64().unwrap_or(0.0) / seconds;
    (out, inn)
}

#[test]
fn g711_at_30_and_60_ms_is_heard_both_ways() {
    if !calls::browser_and_baresip_ready()
        || !common::peers_available(&[common::SIPP])
        || !common::netns::enter(
            "g711_at_30_and_60_ms_is_heard_both_ways",
            Duration::from_secs(300),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-ptime");
    let tones = calls::tones(&dir, 60.0, 120.0);
    let srgate = calls::standalone_gateway(&dir, &["1006", "1007"], "");
    let gw = srgate.sip_addr();
    let mut app = calls::logged_in(&srgate, &tones, APP);

    // SIPp offers PCMA at 30 ms only and plays a tone in 30 ms packets; the 200 must say
    // a=ptime:30 (the scenario checks) and the browser hears the tone.
    common::pcap::write_g711_tone(&dir.join("pcma_30ms.pcap"), Law::A, PHONE_HZ, 30, 6.0);
    let before = calls::cdr_count(&dir);
    let sipp = calls::sipp_1006_calls_the_app("uac_pcma_30ms.xml", gw, &dir, &mut app, APP);
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, PHONE_HZ, "PCMA in 30 ms packets from SIPp");
    let end = app.must(json!({"cmd": "wait_end", "timeout": 15}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    sipp.wait(Duration::from_secs(20))
        .assert_success("200 with a=ptime:30, the capture played, BYE");
    let cdr = calls::last_cdr(&dir, before);
    assert_eq!(cdr["codec_sip"], "PCMA", "{cdr}");
    assert_eq!(cdr["mode"], "transcode", "{cdr}");
    let (out, inn) = sip_packet_rates(&cdr);
    assert!(
        (30.0..=37.0).contains(&inn),
        "SIPp sent {inn:.1} packets/s: {cdr}"
    );
    assert!(
        (30.0..=37.0).contains(&out),
        "srgate sent {out:.1} packets/s: {cdr}"
    );

    // baresip with ptime=30 (then 60) in its account offers that packet time and sends at
    // it; srgate's answer repeats it, and both directions are heard.
    for (user, ptime) in [("1006", 30u32), ("1007", 60)] {
        let mut phone = SipPhone::registered(
            dir.path(),
            gw,
            user,
            &format!("{user}pw"),
            &tones.phone,
            Duration::from_secs(10),
            &format!(";ptime={ptime}"),
        );
        let what = format!("phone → app at {ptime} ms");
        let before = calls::cdr_count(&dir);
        calls::phone_calls_app(&mut app, &phone, &format!("sip:{APP}@{gw}"));
        calls::assert_phone_heard_browser(&phone, &what);
        let cdr = calls::last_cdr(&dir, before);
        assert_eq!(cdr["mode"], "transcode", "{what}: {cdr}");
        let (out, inn) = sip_packet_rates(&cdr);
        let expected = 1000.0 / f64::from(ptime);
        // At 20 ms it would be 50 a second either way. The rate is over the whole call,
        // answer to end, and srgate sends only once the browser's media is up (DTLS): on
        // a loaded machine that takes a few hundred ms of the 2 s, so only the upper
        // bound is tight (a shorter ptime would exceed it).
        for (rate, who) in [(out, "srgate"), (inn, "the phone")] {
            assert!(
                rate <= expected * 1.15 && rate >= expected * 0.6,
                "{what}: {who} sent {rate:.1} packets/s, expected {expected:.1}: {cdr}"
            );
        }
        let lost = cdr["sip"]["lost"].as_i64().unwrap_or(-1);
        assert_eq!(lost, 0, "{what}: lost on loopback: {cdr}");
        phone.stop();
    }
}

/// A re-INVITE that drops the codec in use (PCMU → PCMA only) is answered with PCMA (a
/// format it offered; srgate answered PCMU before, which RFC 3264 forbids) and the media
/// path follows: relayed PCMU ⇄ PCMU until then, transcoded PCMU ⇄ PCMA after, and the
/// browser hears each tone in turn.
#[test]
fn a_reoffer_without_the_codec_in_use_switches_the_call_to_the_new_one() {
    if !common::netns::available()
        || !common::phone::available()
        || !common::peers_available(&[common::SIPP])
        || !common::netns::enter(
            "a_reoffer_without_the_codec_in_use_switches_the_call_to_the_new_one",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-reoffer");
    let tones = calls::tones(&dir, 60.0, 10.0);
    // PCMU first: the browser's leg is PCMU too, so the call starts relayed
    let srgate = calls::standalone_gateway(&dir, &["1006"], "[media]\ncodecs = pcmu,opus,pcma\n");
    let gw = srgate.sip_addr();
    let mut app = calls::logged_in(&srgate, &tones, APP);
    common::pcap::write_g711_tone(&dir.join("pcmu_tone.pcap"), Law::Mu, 600.0, 20, 3.0);
    common::pcap::write_g711_tone(&dir.join("pcma_tone.pcap"), Law::A, PHONE_HZ, 20, 5.0);

    let before = calls::cdr_count(&dir);
    let sipp = calls::sipp_1006_calls_the_app("uac_reoffer_pcma.xml", gw, &dir, &mut app, APP);
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, 600.0, "PCMU relayed before the re-offer");
    // the re-offer comes 3 s after the answer; the PCMA tone plays for 5 s after it
    std::thread::sleep(Duration::from_millis(2000));
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, PHONE_HZ, "PCMA transcoded after the re-offer");
    let end = app.must(json!({"cmd": "wait_end", "timeout": 15}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    sipp.wait(Duration::from_secs(20))
        .assert_success("200 PCMU, re-offer answered PCMA, BYE");
    let cdr = calls::last_cdr(&dir, before);
    assert_eq!(cdr["codec_webrtc"], "PCMU", "{cdr}");
    assert_eq!(cdr["codec_sip"], "PCMA", "{cdr}");
    assert_eq!(cdr["mode"], "transcode", "{cdr}");
}

/// An INVITE without SDP (a PBX that lets srgate offer) is answered with srgate's offer in
/// the 200 and the answer taken from the ACK (it was refused with 488); an offerless
/// re-INVITE mid-call gets the codec in use offered again. The browser hears the caller's
/// tone before and after.
#[test]
fn an_offerless_invite_gets_srgates_offer_and_the_ack_answers_it() {
    if !common::netns::available()
        || !common::phone::available()
        || !common::peers_available(&[common::SIPP])
        || !common::netns::enter(
            "an_offerless_invite_gets_srgates_offer_and_the_ack_answers_it",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-offerless");
    let tones = calls::tones(&dir, 60.0, 10.0);
    let srgate = calls::standalone_gateway(&dir, &["1006"], "");
    let gw = srgate.sip_addr();
    let mut app = calls::logged_in(&srgate, &tones, APP);
    common::pcap::write_g711_tone(&dir.join("pcmu_tone.pcap"), Law::Mu, PHONE_HZ, 20, 6.0);

    let before = calls::cdr_count(&dir);
    let sipp = calls::sipp_1006_calls_the_app("uac_offerless.xml", gw, &dir, &mut app, APP);
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, PHONE_HZ, "the answer in the ACK");
    // the offerless re-INVITE comes 2 s after the ACK
    std::thread::sleep(Duration::from_millis(500));
    let heard = app.must(json!({"cmd": "measure", "seconds": 2}));
    calls::assert_heard(&heard, PHONE_HZ, "after the offerless re-INVITE");
    let end = app.must(json!({"cmd": "wait_end", "timeout": 15}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    sipp.wait(Duration::from_secs(20))
        .assert_success("srgate offered in both 200s, the ACKs answered, BYE");
    let cdr = calls::last_cdr(&dir, before);
    assert_eq!(cdr["codec_sip"], "PCMU", "{cdr}");
    assert_eq!(cdr["sip_code"], 200, "{cdr}");
}

/// A phone that speaks Opus (baresip with only its opus module's codec) gets Opus end to
/// end: srgate answers its Opus offer with Opus and offers Opus first when the app calls,
/// and the browser's Opus is relayed to it untouched, no transcoding; tones both ways.
#[test]
fn an_opus_phone_gets_opus_relayed_both_ways() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "an_opus_phone_gets_opus_relayed_both_ways",
            Duration::from_secs(240),
        )
    {
        return;
    }
    let dir = TestDir::new("bridge-opus");
    let tones = calls::tones(&dir, 60.0, 120.0);
    let srgate = calls::standalone_gateway(&dir, &["1006"], "");
    let gw = srgate.sip_addr();
    let mut app = calls::logged_in(&srgate, &tones, APP);
    // baresip's aufile plays only a file of the codec's rate and channels
    let phone_tone = dir.join("tone1000-48k.wav");
    common::audio::write_tone_channels(&phone_tone, PHONE_HZ, 120.0, 48_000, 2);
    let phone = SipPhone::start_with(
        dir.path(),
        "baresip-1006",
        &format!(
            "<sip:1006@{gw};transport=udp>;auth_pass=1006pw;regint=60;answermode=auto;\
             audio_codecs=opus/48000/2"
        ),
        &phone_tone,
        "module\t\t\topus.so\n",
    );
    phone.must_register("1006", Duration::from_secs(10));

    for way in ["phone → app", "app → phone"] {
        let before = calls::cdr_count(&dir);
        if way == "phone → app" {
            calls::phone_calls_app(&mut app, &phone, &format!("sip:{APP}@{gw}"));
        } else {
            calls::app_calls_phone(&mut app, &phone, "1006", 3);
        }
        calls::assert_phone_heard_browser(&phone, way);
        let cdr = calls::last_cdr(&dir, before);
        assert_eq!(cdr["codec_sip"], "opus", "{way}: {cdr}");
        assert_eq!(cdr["codec_webrtc"], "opus", "{way}: {cdr}");
        assert_eq!(cdr["mode"], "relay", "{way}: {cdr}");
    }
}

/// A G.722 phone (baresip with only its g722 codec) and the browser hear each other in
/// wideband: srgate answers and offers G.722 and transcodes it to and from the browser's
/// Opus at 16 kHz. The tones are above 4 kHz (the phone's 6 kHz, the browser's 5.5 kHz),
/// where G.711 carries nothing, so hearing them shows the whole path is wideband.
#[test]
fn a_g722_phone_and_the_browser_hear_each_other_in_wideband() {
    if !calls::browser_and_baresip_ready()
        || !common::netns::enter(
            "a_g722_phone_and_the_browser_hear_each_other_in_wideband",
            Duration::from_secs(240),
        )
    {
        return;
    }
    const PHONE_WIDE_HZ: f64 = 6_000.0;
    const BROWSER_WIDE_HZ: f64 = 5_500.0;
    let dir = TestDir::new("bridge-g722");
    let tones = calls::Tones {
        browser: dir.join("tone5500-48k.wav"),
        // baresip's aufile plays only a file of the codec's rate: 16 kHz for G.722
        phone: dir.join("tone6000-16k.wav"),
    };
    common::audio::write_tone(&tones.browser, BROWSER_WIDE_HZ, 60.0, 48_000);
    common::audio::write_tone(&tones.phone, PHONE_WIDE_HZ, 120.0, 16_000);
    let srgate = calls::standalone_gateway(&dir, &["1006"], "");
    let gw = srgate.sip_addr();
    let mut app = calls::logged_in(&srgate, &tones, APP);
    let phone = SipPhone::start_with(
        dir.path(),
        "baresip-1006",
        &format!(
            "<sip:1006@{gw};transport=udp>;auth_pass=1006pw;regint=60;answermode=auto;\
             audio_codecs=G722/16000/1"
        ),
        &tones.phone,
        "module\t\t\tg722.so\n",
    );
    phone.must_register("1006", Duration::from_secs(10));

    for way in ["phone → app", "app → phone"] {
        let before = calls::cdr_count(&dir);
        if way == "phone → app" {
            phone.dial(&format!("sip:{APP}@{gw}"));
            app.must(json!({"cmd": "wait_invite", "timeout": 15}));
            app.must(json!({"cmd": "accept"}));
            app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
        } else {
            app.must(json!({"cmd": "call", "callee": "1006"}));
            app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED_BY_REMOTE"], "timeout": 20}));
        }
        let heard = app.must(json!({"cmd": "measure", "seconds": 3}));
        calls::assert_heard(&heard, PHONE_WIDE_HZ, &format!("{way}: G.722's 6 kHz"));
        if way == "phone → app" {
            phone.hangup();
        } else {
            app.must(json!({"cmd": "hangup"}));
        }
        app.must(json!({"cmd": "wait_end", "timeout": 10}));
        let recording = phone.last_recording().expect("baresip recorded");
        let (pcm, rate) = common::audio::read_wav(&recording).expect("a WAV");
        assert_eq!(rate, 16_000, "{way}: baresip decodes G.722 at 16 kHz");
        let hz = common::audio::dominant_frequency_between(
            pcm.get(rate as usize..).unwrap_or(&[]),
            rate,
            200.0,
            7_500.0,
        );
        assert!(
            common::audio::close_to(hz, BROWSER_WIDE_HZ),
            "{way}: baresip hears the browser's {BROWSER_WIDE_HZ} Hz, got {hz}"
        );
        let cdr = calls::last_cdr(&dir, before);
        assert_eq!(cdr["codec_sip"], "G722", "{way}: {cdr}");
        assert_eq!(cdr["codec_webrtc"], "opus", "{way}: {cdr}");
        assert_eq!(cdr["mode"], "transcode", "{way}: {cdr}");
    }
}
