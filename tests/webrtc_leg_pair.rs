//! The WebRTC leg against a simulated browser, on a simulated clock: the browser's ICE
//! side is hand-made STUN Binding requests (as a controlling full agent sends them), its
//! DTLS side a `dimpl` endpoint with its own certificate.

#[path = "../benches/support/stun.rs"]
mod stun;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::{Dtls, Output};
use is::Sha1HmacProvider as _;
use is::stun::{StunMessage, TransId};

use srgate::sdp::{self, AnswerPolicy, IceCredentials, Offer, Setup};
use srgate::webrtc::cert::Certificate;
use srgate::webrtc::dtls::{DtlsContext, DtlsRole, SrtpKeys, SrtpProfile, profile_from_dimpl};
use srgate::webrtc::ice::CONSENT_TIMEOUT;
use srgate::webrtc::leg::{FailReason, LegEvent, WebRtcLeg};

const SRGATE: &str = "192.0.2.1:20000";
const BROWSER: &str = "198.51.100.7:53123";
const BROWSER_UFRAG: &str = "brWs";
const BROWSER_PWD: &str = "browserpassword0123456789";
const SRGATE_UFRAG: &str = "srG8";
const SRGATE_PWD: &str = "srgatepassword01234567890";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[allow(clippy::disallowed_methods)] // the simulated clock's origin
fn start() -> Instant {
    Instant::now()
}

fn offer(fingerprint: &sdp::Fingerprint, setup: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:{BROWSER_UFRAG}\r\na=ice-pwd:{BROWSER_PWD}\r\n\
         a=fingerprint:{fingerprint}\r\na=setup:{setup}\r\na=mid:0\r\na=sendrecv\r\n\
         a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n\
         a=ssrc:1111 cname:x\r\n"
    )
}

/// A Binding request as the controlling browser sends it (USERNAME `srgate:browser`,
/// signed with srgate's password).
fn binding_request(use_candidate: bool) -> Vec<u8> {
    stun::binding_request(
        &format!("{SRGATE_UFRAG}:{BROWSER_UFRAG}"),
        SRGATE_PWD,
        use_candidate,
    )
}

struct Pair {
    now: Instant,
    leg: WebRtcLeg,
    browser: Dtls,
    srgate_fingerprint: sdp::Fingerprint,
    browser_keys: Option<(dimpl::SrtpProfile, Vec<u8>)>,
    browser_peer_cert: Option<Vec<u8>>,
    browser_closed: bool,
    leg_events: Vec<LegEvent>,
    /// Every DTLS datagram the browser sent, for the fuzz test.
    browser_sent: Vec<Vec<u8>>,
}

impl Pair {
    /// `setup` is the browser's offer (`actpass`: srgate is the DTLS server).
    /// `lie_about_fingerprint`: the offer names a certificate other than the browser's.
    fn new(setup: &str, lie_about_fingerprint: bool) -> Pair {
        let now = start();
        let srgate_cert = Certificate::generate().expect("certificate");
        let ctx = DtlsContext::new(&srgate_cert).expect("dtls context");
        let browser_cert = Certificate::generate().expect("certificate");
        let offered_fp = if lie_about_fingerprint {
            Certificate::generate()
                .expect("certificate")
                .fingerprint()
                .clone()
        } else {
            browser_cert.fingerprint().clone()
        };
        let offer = Offer::parse(&offer(&offered_fp, setup)).expect("offer parses");
        let negotiated = sdp::negotiate(&offer, &AnswerPolicy::default()).expect("negotiates");
        let local = IceCredentials {
            ufrag: SRGATE_UFRAG.into(),
            pwd: SRGATE_PWD.into(),
        };
        let leg = WebRtcLeg::new(now, &ctx, &local, &[addr(SRGATE)], &negotiated).expect("leg");

        let mut browser = Dtls::new_12(
            Arc::new(dimpl::Config::default()),
            browser_cert.dtls_certificate(),
            now,
        );
        // The browser is the DTLS client when srgate answers passive.
        if negotiated.setup == Setup::Passive {
            browser.set_active(true);
        }
        browser.handle_timeout(now).expect("browser timeout");
        Pair {
            now,
            leg,
            browser,
            srgate_fingerprint: srgate_cert.fingerprint().clone(),
            browser_keys: None,
            browser_peer_cert: None,
            browser_closed: false,
            leg_events: Vec::new(),
            browser_sent: Vec::new(),
        }
    }

    fn check(&mut self, use_candidate: bool) {
        let req = binding_request(use_candidate);
        self.leg
            .handle_receive(self.now, addr(BROWSER), addr(SRGATE), &req);
        self.drain();
    }

    fn drain_leg_events(&mut self) {
        while let Some(e) = self.leg.poll_event() {
            self.leg_events.push(e);
        }
    }

    /// Moves every pending datagram both ways once; returns how many moved.
    fn drain(&mut self) -> usize {
        let mut moved = 0;
        let mut buf = vec![0u8; 2048];
        // Browser → srgate.
        loop {
            match self.browser.poll_output(&mut buf) {
                Output::Packet(p) => {
                    let p = p.to_vec();
                    self.browser_sent.push(p.clone());
                    self.leg
                        .handle_receive(self.now, addr(BROWSER), addr(SRGATE), &p);
                    moved += 1;
                }
                Output::KeyingMaterial(km, profile) => {
                    self.browser_keys = Some((profile, km.to_vec()));
                }
                Output::PeerCert(der) => self.browser_peer_cert = Some(der.to_vec()),
                Output::CloseNotify => self.browser_closed = true,
                Output::Timeout(_) => break,
                Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                _ => {}
            }
        }
        self.drain_leg_events();
        // srgate → browser.
        while let Some(t) = self.leg.poll_transmit() {
            assert_eq!(t.source, addr(SRGATE));
            assert_eq!(t.destination, addr(BROWSER));
            moved += 1;
            if t.contents.first().is_some_and(|b| *b < 4) {
                // A STUN response: signed with srgate's password.
                let m = StunMessage::parse(&t.contents).expect("STUN response parses");
                assert!(m.is_successful_binding_response());
                assert!(m.verify(SRGATE_PWD.as_bytes(), |k, p| {
                    is::DefaultSha1HmacProvider.sha1_hmac(k, p)
                }));
                assert_eq!(m.mapped_address(), Some(addr(BROWSER)));
            } else {
                self.browser
                    .handle_timeout(self.now)
                    .expect("browser timeout");
                if self.browser.handle_packet(&t.contents).is_err() {
                    self.browser_closed = true;
                }
            }
        }
        moved
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.leg.handle_timeout(self.now);
        let _ = self.browser.handle_timeout(self.now);
        self.drain();
    }

    fn dtls_keys(&self) -> Option<&SrtpKeys> {
        self.leg_events.iter().find_map(|e| match e {
            LegEvent::DtlsConnected(k) => Some(k),
            _ => None,
        })
    }

    fn failure(&self) -> Option<FailReason> {
        self.leg_events.iter().find_map(|e| match e {
            LegEvent::Failed { reason } => Some(*reason),
            _ => None,
        })
    }

    /// Checks, then DTLS until srgate has keys or fails (bounded: 200 × 10 ms).
    fn connect(&mut self) {
        self.check(true);
        for _ in 0..200 {
            if self.dtls_keys().is_some() || self.failure().is_some() {
                // One more round so the browser sees srgate's last flight.
                self.advance(Duration::from_millis(10));
                return;
            }
            self.advance(Duration::from_millis(10));
        }
    }
}

fn assert_same_keys(pair: &Pair, role: DtlsRole) {
    let leg_keys = pair.dtls_keys().expect("srgate exported keys");
    let (profile, material) = pair.browser_keys.clone().expect("browser exported keys");
    let profile = profile_from_dimpl(profile).expect("known profile");
    assert_eq!(profile, leg_keys.profile);
    let browser_role = match role {
        DtlsRole::Server => DtlsRole::Client,
        DtlsRole::Client => DtlsRole::Server,
    };
    let browser = SrtpKeys::split(profile, &material, browser_role).expect("splits");
    // What srgate sends with is what the browser receives with, and back.
    assert_eq!(leg_keys.local, browser.remote);
    assert_eq!(leg_keys.remote, browser.local);
    assert_ne!(leg_keys.local, leg_keys.remote);
    assert_eq!(leg_keys.local.key().len(), profile.master_key_len());
}

#[test]
fn handshake_as_dtls_server_exports_equal_keys() {
    let mut p = Pair::new("actpass", false);
    p.connect();
    assert_eq!(
        p.leg_events.first(),
        Some(&LegEvent::IceConnected {
            remote: addr(BROWSER)
        })
    );
    assert_same_keys(&p, DtlsRole::Server);
    // The browser saw srgate's certificate, which the answer's fingerprint names.
    let cert = p
        .browser_peer_cert
        .clone()
        .expect("browser got srgate's certificate");
    assert!(p.srgate_fingerprint.matches(&cert));
    // dimpl as DTLS 1.2 server prefers AES-256-GCM when the client offers it.
    assert_eq!(
        p.dtls_keys().map(|k| k.profile),
        Some(SrtpProfile::AeadAes256Gcm)
    );
    assert_eq!(p.failure(), None);
    assert!(p.leg.accepts_from(addr(BROWSER)));
    assert!(!p.leg.accepts_from(addr("203.0.113.9:1")));
}

#[test]
fn handshake_as_dtls_client_when_browser_is_passive() {
    let mut p = Pair::new("passive", false);
    p.connect();
    assert_same_keys(&p, DtlsRole::Client);
}

#[test]
fn wrong_fingerprint_fails_the_leg_and_exports_nothing() {
    let mut p = Pair::new("actpass", true);
    p.connect();
    assert_eq!(p.failure(), Some(FailReason::FingerprintMismatch));
    assert!(p.dtls_keys().is_none());
    assert!(p.leg.is_ended());
    assert_eq!(p.leg.poll_timeout(), None);
    // Exactly one terminal event, and silence afterwards.
    let terminal = p
        .leg_events
        .iter()
        .filter(|e| matches!(e, LegEvent::Failed { .. } | LegEvent::Closed))
        .count();
    assert_eq!(terminal, 1);
    p.check(true);
    assert!(p.leg.poll_transmit().is_none());
    assert!(p.leg.poll_event().is_none());
}

#[test]
fn media_is_reported_only_from_the_checked_address_after_keys() {
    let mut p = Pair::new("actpass", false);
    let rtp = [0x80u8, 111, 0, 1, 0, 0, 0, 160, 0, 0, 4, 87, 1, 2, 3, 4];
    let rtcp = [0x80u8, 200, 0, 6, 0, 0, 4, 87];
    // Before any check or keys: dropped.
    p.leg
        .handle_receive(p.now, addr(BROWSER), addr(SRGATE), &rtp);
    assert!(p.leg.poll_event().is_none());
    p.connect();
    p.leg_events.clear();
    let dropped = p.leg.dropped();
    p.leg
        .handle_receive(p.now, addr(BROWSER), addr(SRGATE), &rtp);
    p.leg
        .handle_receive(p.now, addr(BROWSER), addr(SRGATE), &rtcp);
    p.leg
        .handle_receive(p.now, addr("203.0.113.9:5000"), addr(SRGATE), &rtp);
    p.drain_leg_events();
    assert_eq!(
        p.leg_events,
        [
            LegEvent::RtpReceived {
                range: 0..rtp.len(),
                rtcp: false
            },
            LegEvent::RtpReceived {
                range: 0..rtcp.len(),
                rtcp: true
            },
        ]
    );
    assert_eq!(p.leg.dropped(), dropped + 1);
}

#[test]
fn consent_refreshed_by_checks_then_expires_when_they_stop() {
    let mut p = Pair::new("actpass", false);
    p.connect();
    // A minute of checks every 5 s (as browsers send consent checks): still up.
    for _ in 0..12 {
        p.advance(Duration::from_secs(5));
        p.check(false);
    }
    assert_eq!(p.failure(), None);
    // The browser vanishes: failed within 30 s, not before.
    let gone = p.now;
    let mut failed_at = None;
    for _ in 0..40 {
        let next = p.leg.poll_timeout().expect("a timer while running");
        assert!(next >= p.now, "timer in the past");
        p.advance(Duration::from_secs(1));
        if p.failure().is_some() {
            failed_at = Some(p.now);
            break;
        }
    }
    assert_eq!(p.failure(), Some(FailReason::ConsentExpired));
    let after = failed_at.expect("failed") - gone;
    assert!(after >= CONSENT_TIMEOUT && after <= CONSENT_TIMEOUT + Duration::from_secs(1));
}

#[test]
fn no_check_at_all_fails_with_no_connectivity() {
    let mut p = Pair::new("actpass", false);
    // Follow the leg's own timers only (bounded).
    for _ in 0..100 {
        let Some(t) = p.leg.poll_timeout() else { break };
        p.now = t.max(p.now);
        p.leg.handle_timeout(p.now);
        p.drain_leg_events();
    }
    assert_eq!(p.failure(), Some(FailReason::NoConnectivity));
}

#[test]
fn close_sends_close_notify() {
    let mut p = Pair::new("actpass", false);
    p.connect();
    p.leg.close();
    let moved = p.drain();
    assert_eq!(moved, 1, "one close_notify datagram");
    // The browser reports the alert on its next poll.
    p.drain();
    assert!(p.leg_events.contains(&LegEvent::Closed));
    assert!(p.browser_closed, "the browser saw close_notify");
}

#[test]
fn browser_close_notify_closes_the_leg() {
    let mut p = Pair::new("actpass", false);
    p.connect();
    p.browser.close().expect("browser close");
    p.drain();
    assert!(p.leg_events.contains(&LegEvent::Closed));
    assert!(p.leg.is_ended());
}

/// Retired DTLS (its state dropped once the browser's media proved the handshake over)
/// still says goodbye: the close_notify made at retirement reaches the browser, which
/// reads it as one. An alert from the browser afterwards is reported as `PeerAlert` (it
/// cannot be authenticated any more), not as the end of the leg.
#[test]
fn retired_dtls_still_says_goodbye_and_reports_the_browsers_alert() {
    let mut p = Pair::new("actpass", false);
    p.connect();
    assert!(!p.leg.dtls_retired());
    p.leg.retire_dtls();
    assert!(p.leg.dtls_retired());
    assert_eq!(p.drain(), 0, "nothing is sent at retirement");
    p.leg.close();
    assert_eq!(p.drain(), 1, "one close_notify datagram");
    p.drain();
    assert!(p.browser_closed, "the browser read srgate's close_notify");
    assert!(p.leg_events.contains(&LegEvent::Closed));

    let mut p = Pair::new("actpass", false);
    p.connect();
    p.leg.retire_dtls();
    p.browser.close().expect("browser close");
    p.drain();
    assert!(
        p.leg_events.contains(&LegEvent::PeerAlert),
        "{:?}",
        p.leg_events
    );
    assert!(!p.leg_events.contains(&LegEvent::Closed));
    assert!(
        !p.leg.is_ended(),
        "the caller decides (media stops after a real close)"
    );
}

/// Before the handshake is over there is nothing to retire.
#[test]
fn dtls_is_not_retired_before_it_connects() {
    let mut p = Pair::new("actpass", false);
    p.leg.retire_dtls();
    assert!(!p.leg.dtls_retired());
}

/// xorshift32: a fixed pseudo-random stream (no dependency, reproducible).
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next()).expect("u32 fits usize") % n.max(1)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// Garbage of every class from the checked address (so DTLS garbage reaches `dimpl`),
/// before, during and after the handshake, in both DTLS roles, plus mangled and replayed
/// copies of the browser's real DTLS flights and STUN requests. Nothing may panic.
#[test]
fn garbage_never_panics() {
    // More on demand: SRGATE_FUZZ_ROUNDS=150 SRGATE_FUZZ_SEED=7 cargo test --test webrtc_leg_pair garbage
    let env = |name: &str, default: u32| -> u32 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("SRGATE_FUZZ_ROUNDS", 6);
    let mut rng = Rng(env("SRGATE_FUZZ_SEED", 0x5eed_1234).max(1));
    let stun = binding_request(true);
    // srgate as DTLS server (browser actpass) and as client (browser passive).
    for setup in ["actpass", "passive"] {
        // A real run first, to learn what the browser's DTLS datagrams look like.
        let mut reference = Pair::new(setup, false);
        reference.connect();
        let flights = reference.browser_sent.clone();
        assert!(!flights.is_empty());

        for round in 0..rounds {
            let mut p = Pair::new(setup, false);
            match round % 3 {
                0 => {}             // fresh: no check yet (DTLS and media dropped early)
                1 => p.check(true), // checked, first flights exchanged
                _ => p.connect(),   // connected
            }
            for i in 0..2500 {
                let datagram = garbage(&mut rng, i, &flights, &stun);
                p.leg
                    .handle_receive(p.now, addr(BROWSER), addr(SRGATE), &datagram);
                if i % 50 == 0 {
                    p.now += Duration::from_millis(7);
                    p.leg.handle_timeout(p.now);
                }
                while p.leg.poll_transmit().is_some() {}
                while p.leg.poll_event().is_some() {}
            }
        }
    }
}

fn garbage(rng: &mut Rng, i: usize, flights: &[Vec<u8>], stun: &[u8]) -> Vec<u8> {
    match i % 4 {
        // Random bytes with a first byte from every class.
        0 => {
            let len = rng.below(300);
            let first = [0u8, 1, 2, 3, 20, 22, 23, 63, 128, 129, 191, 255][rng.below(12)];
            let mut v: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if let Some(b) = v.first_mut() {
                *b = first;
            }
            v
        }
        // A real DTLS flight, mangled and cut.
        1 => {
            let mut v = flights[rng.below(flights.len())].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(v.len());
                v[at] = rng.byte();
            }
            v.truncate(rng.below(v.len() + 1).max(1));
            v
        }
        // A real STUN request with one byte changed after the header.
        2 => {
            let mut v = stun.to_vec();
            let at = 20 + rng.below(v.len() - 20);
            v[at] = rng.byte();
            v
        }
        // A real DTLS flight, intact (replays).
        _ => flights[rng.below(flights.len())].clone(),
    }
}

#[test]
fn wrong_credentials_and_foreign_interfaces_are_ignored() {
    let mut p = Pair::new("actpass", false);
    // Signed with the wrong password.
    let username = format!("{SRGATE_UFRAG}:{BROWSER_UFRAG}");
    let msg = StunMessage::binding_request(&username, TransId::new(), true, 1, 1, true);
    let mut buf = vec![0u8; 512];
    let n = msg
        .to_bytes(Some(b"not-the-password-at-all"), &mut buf, |k, d| {
            is::DefaultSha1HmacProvider.sha1_hmac(k, d)
        })
        .expect("fits");
    p.leg
        .handle_receive(p.now, addr(BROWSER), addr(SRGATE), &buf[..n]);
    assert!(p.leg.poll_transmit().is_none());
    // Right credentials, but arriving on an address that is not a candidate.
    let req = binding_request(true);
    p.leg
        .handle_receive(p.now, addr(BROWSER), addr("192.0.2.1:20001"), &req);
    assert!(p.leg.poll_transmit().is_none());
    assert!(p.leg.poll_event().is_none());
    // And then the real thing works.
    p.connect();
    assert!(p.dtls_keys().is_some());
}

#[test]
fn shared_port_routing_finds_the_leg() {
    use srgate::webrtc::demux::{Route, route};
    let mut p = Pair::new("actpass", false);
    let req = binding_request(true);
    // A check names the leg by its ufrag, before the leg knows the browser's address.
    assert_eq!(route(&req), Route::LocalUfrag(p.leg.local_ufrag()));
    assert!(!p.leg.accepts_from(addr(BROWSER)));
    p.connect();
    // DTLS and media then go by address.
    assert_eq!(route(&p.browser_sent[0]), Route::FiveTuple);
    assert!(p.leg.accepts_from(addr(BROWSER)));
    assert_eq!(p.leg.remote(), Some(addr(BROWSER)));
}
