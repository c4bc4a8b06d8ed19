//! A door station's H.264 video reaches the app user, with real peers: standalone srgate,
//! SIPp as the door's signalling (PCMU audio and H.264 video, `sendonly`, RTCP feedback
//! to a port the test listens on), `ffmpeg` as its camera (a lavfi test card, 320×240 at
//! 15 fps, libx264 baseline, RTP from the port the door's SDP names) and headless Chromium
//! as app user 1001 on the demo page, which accepts the call with video. A relay in the
//! test stands for the door's network: it holds back the first second of video, so the
//! browser starts mid-stream and asks for a picture.
//!
//! Checked: the invitation says `video`; srgate's 200 takes the video section; Chromium's
//! `inbound-rtp` video stats show H.264 frames decoded at the card's size and rate; a frame
//! grabbed from the page's video element is a colourful picture (not black, not grey); the
//! browser's picture requests (PLI/FIR) reach the door's RTCP port as RTCP PLI. In a
//! private network namespace.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::json;

use common::TestDir;
use common::calls;

const APP: &str = "1001";
/// The door's video RTP port (its SDP) and the port it takes RTCP on (`a=rtcp`); ffmpeg
/// sends to the test's relay on `CAMERA`, which sends on from `DOOR_VIDEO`.
const DOOR_VIDEO: u16 = 30_000;
const DOOR_RTCP: u16 = 30_010;
const CAMERA: u16 = 30_020;

#[test]
fn a_doors_h264_video_reaches_the_app_and_picture_requests_reach_the_door() {
    door_calls_the_app(
        "a_doors_h264_video_reaches_the_app_and_picture_requests_reach_the_door",
        false,
    );
}

/// The app previews the call (the user's consent: the visitor seen while it rings): the
/// door gets a 183 with srgate's answer and its video is decoded in the browser before
/// the answer; `accept` then sends the 200 and the video goes on.
#[test]
fn the_app_sees_the_door_before_answering() {
    door_calls_the_app("the_app_sees_the_door_before_answering", true);
}

fn door_calls_the_app(test: &str, preview: bool) {
    if !calls::browser_and_baresip_ready()
        || !common::peers_available(&[common::SIPP, common::FFMPEG])
        || !common::netns::enter(test, Duration::from_secs(180))
    {
        return;
    }
    // one folder name a test: the tests run side by side in namespaces of their own
    let dir = TestDir::new(if preview {
        "door-preview"
    } else {
        "door-video"
    });
    let tones = calls::tones(&dir, 60.0, 60.0);
    let srgate = calls::standalone_gateway(&dir, &["1006"], "");
    let gw = srgate.sip_addr();
    let mut app = calls::logged_in(&srgate, &tones, APP);
    let rtcp = UdpSocket::bind(("127.0.0.1", DOOR_RTCP)).expect("the door's RTCP port");
    rtcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("socket");

    let port_file = dir.join("srgate_video_port");
    let gw_text = gw.to_string();
    let (vport, rtcp_port) = (DOOR_VIDEO.to_string(), DOOR_RTCP.to_string());
    let args = [
        "-s",
        APP,
        "-key",
        "caller",
        "1006",
        "-au",
        "1006",
        "-ap",
        "1006pw",
        "-key",
        "vport",
        &vport,
        "-key",
        "rtcpport",
        &rtcp_port,
        "-key",
        "portfile",
        port_file.to_str().unwrap(),
        &gw_text,
    ];
    let sipp = common::Sipp::spawn("uac_door_video.xml", &args, dir.path());
    let invite = app.must(json!({"cmd": "wait_invite", "timeout": 15}));
    assert_eq!(invite["video"], true, "the invitation says video: {invite}");
    if preview {
        app.must(json!({"cmd": "preview"}));
        app.must(json!({"cmd": "wait_state", "states": ["PREVIEW"], "timeout": 15}));
    } else {
        app.must(json!({"cmd": "accept"}));
        app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 15}));
    }

    // srgate's video port, from its 183 or 200 (SIPp writes it down)
    let srgate_port = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    });
    let srgate_port = srgate_port.unwrap_or_else(|| panic!("srgate took the video section"));
    // the door's camera, its first second held back: the browser starts mid-stream and
    // asks for a picture (PLI), the request this test wants to see come back
    let relay = common::camera::relay(CAMERA, DOOR_VIDEO, srgate_port);
    let mut camera = common::camera::start(dir.path(), CAMERA, 14);

    let seen = app.must(json!({"cmd": "video", "seconds": 6}));
    assert_video(&seen);
    let decoded = seen["stats"]["framesDecoded"].as_u64().unwrap_or(0);
    if preview {
        // still ringing: the door has no answer yet, the app sees it
        let state = app.must(json!({"cmd": "wait_state", "states": ["PREVIEW"], "timeout": 1}));
        assert_eq!(state["state"], "PREVIEW", "{state}");
        app.must(json!({"cmd": "accept"}));
        app.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 10}));
        let later = app.must(json!({"cmd": "video", "seconds": 2}));
        assert_video(&later);
        let more = later["stats"]["framesDecoded"].as_u64().unwrap_or(0);
        assert!(
            more >= decoded + 15,
            "the video goes on after the answer: {later}"
        );
    }

    // the browser's picture requests came back to the door as RTCP PLI
    let stats = &seen["stats"];
    let requests =
        stats["pliCount"].as_u64().unwrap_or(0) + stats["firCount"].as_u64().unwrap_or(0);
    let mut plis = 0;
    let mut buf = [0u8; 1500];
    // bounded: 25 reads of at most 200 ms
    for _ in 0..25 {
        // compound RTCP: a receiver report first, then the PLI (RFC 4585 §3.1)
        if let Ok((n, _)) = rtcp.recv_from(&mut buf)
            && n >= 20
            && buf[1] == 201
            && buf[9] == 206
            && buf[8] & 0x1f == 1
        {
            plis += 1;
        }
        if plis > 0 {
            break;
        }
    }
    assert!(
        requests > 0 && plis > 0,
        "the browser asked {requests} times, the door got {plis} PLI\n{}",
        srgate.log()
    );

    // the door hangs up (SIPp's BYE after its pause)
    let end = app.must(json!({"cmd": "wait_end", "timeout": 25}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    camera.terminate(Duration::from_secs(2));
    let relayed = relay.join().expect("the relay thread");
    assert!(relayed > 100, "{relayed} video packets relayed");
    let run = sipp.wait(Duration::from_secs(30));
    assert!(run.succeeded(), "SIPp: {}", run.report);
}

/// What the browser shows is the door's camera: H.264 decoded at the test card's size and
/// rate, and a grabbed frame that is a colourful picture on the demo page.
fn assert_video(seen: &serde_json::Value) {
    let stats = &seen["stats"];
    assert_eq!(stats["mimeType"], "video/H264", "{seen}");
    assert_eq!(
        (stats["frameWidth"].as_u64(), stats["frameHeight"].as_u64()),
        (Some(320), Some(240)),
        "{seen}"
    );
    assert!(stats["framesDecoded"].as_u64().unwrap_or(0) >= 30, "{seen}");
    let fps = stats["framesPerSecond"].as_f64().unwrap_or(0.0);
    assert!((10.0..=17.0).contains(&fps), "15 fps: {seen}");
    let frame = &seen["frame"];
    assert_eq!(frame["width"], 320, "{seen}");
    assert!(
        frame["luma"].as_f64().unwrap_or(0.0) > 40.0,
        "not black: {seen}"
    );
    assert!(
        frame["saturation"].as_f64().unwrap_or(0.0) > 20.0,
        "colour: {seen}"
    );
    assert!(
        frame["colours"].as_u64().unwrap_or(0) >= 8,
        "a test card: {seen}"
    );
    assert_eq!(seen["hidden"], false, "the demo page shows it: {seen}");
}

/// The door calls ring group 301 (app users anna and ben, each in a Chromium of its own):
/// both preview; anna, first, sees the door while ben waits (nothing decoded); anna
/// declines, and the door's early media moves to ben (a 183 with his answer), who sees it,
/// then answers: the 200 goes out and the video goes on until the door hangs up.
#[test]
fn a_ring_groups_members_preview_the_door_one_at_a_time() {
    let test = "a_ring_groups_members_preview_the_door_one_at_a_time";
    if !calls::browser_and_baresip_ready()
        || !common::peers_available(&[common::SIPP, common::FFMPEG])
        || !common::netns::enter(test, Duration::from_secs(240))
    {
        return;
    }
    let dir = TestDir::new("door-group-preview");
    let tones = calls::tones(&dir, 60.0, 60.0);
    let srgate = calls::standalone_gateway(&dir, &["1006"], "[groups]\n301 = app:anna, app:ben\n");
    let gw = srgate.sip_addr();
    let mut anna = calls::logged_in(&srgate, &tones, "anna");
    let mut ben = calls::logged_in(&srgate, &tones, "ben");

    let port_file = dir.join("srgate_video_port");
    let gw_text = gw.to_string();
    let (vport, rtcp_port) = (DOOR_VIDEO.to_string(), DOOR_RTCP.to_string());
    let args = [
        "-s",
        "301",
        "-key",
        "caller",
        "1006",
        "-au",
        "1006",
        "-ap",
        "1006pw",
        "-key",
        "vport",
        &vport,
        "-key",
        "rtcpport",
        &rtcp_port,
        "-key",
        "portfile",
        port_file.to_str().unwrap(),
        &gw_text,
    ];
    let sipp = common::Sipp::spawn("uac_door_video.xml", &args, dir.path());
    for app in [&mut anna, &mut ben] {
        let invite = app.must(json!({"cmd": "wait_invite", "timeout": 15}));
        assert_eq!(
            (&invite["group"], &invite["video"]),
            (&json!("301"), &json!(true)),
            "{invite}"
        );
    }
    let port_of = |what: &str| {
        common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
        })
        .unwrap_or_else(|| panic!("{what}: a 183 with srgate's video port"))
    };
    anna.must(json!({"cmd": "preview"}));
    anna.must(json!({"cmd": "wait_state", "states": ["PREVIEW"], "timeout": 15}));
    let annas = port_of("anna previews");
    ben.must(json!({"cmd": "preview"}));
    ben.must(json!({"cmd": "wait_state", "states": ["PREVIEW"], "timeout": 15}));
    // the camera, sent wherever the door's latest 183 says
    let relay = common::camera::relay_following(CAMERA, DOOR_VIDEO, port_file.clone());
    let mut camera = common::camera::start(dir.path(), CAMERA, 24);

    assert_video(&anna.must(json!({"cmd": "video", "seconds": 5})));
    let waiting = ben.cmd(json!({"cmd": "video", "seconds": 1}));
    let decoded = waiting["stats"]["framesDecoded"].as_u64().unwrap_or(0);
    assert_eq!(decoded, 0, "ben waits while anna previews: {waiting}");
    assert_eq!(
        std::fs::read_to_string(&port_file).unwrap().trim(),
        annas.to_string(),
        "no 183 for ben yet"
    );

    // anna declines: ben's 183 goes out, the door's video follows it
    anna.must(json!({"cmd": "refuse"}));
    anna.must(json!({"cmd": "wait_end", "timeout": 10}));
    let bens = common::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let p = port_of("ben previews");
        (p != annas).then_some(p)
    });
    assert!(bens.is_some(), "a 183 with ben's port after anna left");
    assert_video(&ben.must(json!({"cmd": "video", "seconds": 5})));
    let state = ben.must(json!({"cmd": "wait_state", "states": ["PREVIEW"], "timeout": 1}));
    assert_eq!(state["state"], "PREVIEW", "still ringing: {state}");
    ben.must(json!({"cmd": "accept"}));
    ben.must(json!({"cmd": "wait_state", "states": ["ACCEPTED"], "timeout": 10}));

    let end = ben.must(json!({"cmd": "wait_end", "timeout": 25}));
    assert_eq!(end["reason"], "REMOTE", "{end}");
    camera.terminate(Duration::from_secs(2));
    let relayed = relay.join().expect("the relay thread");
    assert!(relayed > 100, "{relayed} video packets relayed");
    let run = sipp.wait(Duration::from_secs(30));
    assert!(run.succeeded(), "SIPp: {}", run.report);

    // Every SDP the door got, by dialog (To tag): anna's 183, ben's 183, ben's 200. A door
    // keeps a dialog's first SDP (RFC 3261 §13.2.1), so none may change its port; ben's
    // preview came in a dialog of its own and his 200 in that one.
    let log = std::fs::read_to_string(dir.join("srgate_video_port.dialogs")).unwrap();
    let sdps: Vec<(&str, u16)> = log
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(tag, port)| (tag, port.trim().parse().unwrap()))
        .collect();
    assert_eq!(sdps.len(), 3, "anna's 183, ben's 183, the 200: {log}");
    for (tag, port) in &sdps {
        assert!(
            sdps.iter().all(|(t, p)| t != tag || p == port),
            "dialog {tag} changed its SDP: {log}"
        );
    }
    assert_eq!(sdps[0].1, annas, "{log}");
    let ringing = std::fs::read_to_string(dir.join("srgate_video_port.ringing")).unwrap();
    assert_eq!(
        ringing.lines().collect::<Vec<_>>(),
        [sdps[0].0],
        "one 180, in the dialog anna's preview then took: {log}"
    );
    assert_ne!(
        sdps[0].0, sdps[1].0,
        "ben's preview, a dialog of its own: {log}"
    );
    assert_eq!(sdps[2], sdps[1], "ben's 200 in his preview's dialog: {log}");
}
