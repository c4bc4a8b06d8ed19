//! The configuration files users bring: srgate's own `conf/srgate.ini` and SRProxy's
//! `rtx.conf` as its deployment guide writes it (only `sip_svr` made real).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use srgate::config::{AccRule, Codec, Config, DigestAlgorithm, LogLevel, Transport, Warning};
use srgate::pii::Secret;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test addresses are valid")
}

fn load(path: &str) -> (Config, Vec<Warning>) {
    Config::load(&repo(path)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shipped_config_loads_with_design_defaults() {
    let (c, warnings) = load("conf/srgate.ini");
    assert!(c.standalone());
    assert_eq!(c.global.sip_svr, None);
    assert_eq!(c.global.public_ip, None);
    assert!(c.global.shards >= 1);
    assert_eq!(c.sip.listen, addr("0.0.0.0:5086"));
    assert_eq!(
        c.sip.digest,
        [DigestAlgorithm::Md5, DigestAlgorithm::Sha256]
    );
    assert_eq!(c.sip.tls_listen, None);
    assert_eq!(c.sip.domain, None);
    assert!(c.proxy.on);
    assert_eq!(c.proxy.sip_account, "1000");
    assert_eq!(c.proxy.sip_pwd, Secret::from("1234"));
    assert_eq!(c.proxy.rtm_account, "1086");
    assert_eq!(c.proxy.expires, 300);
    assert!(c.rtm2sip.on);
    assert_eq!(
        c.rtm2sip.acc_rule,
        AccRule::parse("1005;10[06-19]").unwrap()
    );
    assert!(!c.rtm2sip.allow_any);
    assert!(c.users.is_empty());
    assert_eq!(c.webrtc.listen, addr("127.0.0.1:8080"));
    assert_eq!(c.webrtc.tls_listen, None);
    assert_eq!(c.webrtc.udp, addr("0.0.0.0:50000"));
    assert!(c.webrtc.allowed_origins.is_empty());
    assert_eq!(c.webrtc.max_conns_per_ip, 64);
    assert!(!c.rtm2sip.app_display_name);
    assert!(!c.auth.open);
    assert!(!c.open_login_exposed());
    assert_eq!(c.media.rtp_ports, 40000..=49999);
    assert_eq!(
        c.media.codecs,
        [Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722]
    );
    assert_eq!(c.media.opus_complexity, 5);
    assert_eq!(c.media.rtp_timeout, Duration::from_secs(30));
    assert_eq!(c.media.sip_srtp, srgate::config::SipSrtp::Optional);
    assert!(c.auth.secret.is_empty());
    assert_eq!((c.tls.cert.as_ref(), c.tls.key.as_ref()), (None, None));
    assert_eq!(c.api.listen, Some(addr("127.0.0.1:9091")));
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.file.as_deref(), Some(Path::new("srgate.log")));
    assert_eq!(c.log.max_file_size_mb, 100);

    // The shipped file says the same as having no file at all.
    let (defaults, _) = Config::from_str("", &c.path).unwrap();
    assert_eq!(defaults, c);

    let messages: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{messages:#?}");
    assert!(
        messages.iter().any(|m| m.contains("[auth] secret: empty")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("[users]: no users")),
        "{messages:#?}"
    );
}

#[test]
fn srproxy_rtx_conf_loads_and_every_honoured_key_counts() {
    let (c, warnings) = load("tests/data/config/rtx.conf");
    let server = c.global.sip_svr.as_ref().expect("sip_svr is set");
    assert_eq!(server.host, "127.0.0.1");
    assert_eq!(server.port, 5060);
    assert_eq!(server.transport, Transport::Udp);
    assert_eq!(server.addr, addr("127.0.0.1:5060"));
    assert!(!c.standalone());
    assert_eq!(c.domain(), "127.0.0.1");

    assert!(c.rtm2sip.on);
    assert_eq!(c.rtm2sip.acc_rule.to_string(), "1005;10[06-19]");
    assert!(c.rtm2sip.acc_rule.matches("1012"));
    assert!(c.proxy.on);
    assert_eq!(c.proxy.sip_account, "1000");
    assert_eq!(c.proxy.sip_pwd.expose(), "1234");
    assert_eq!(c.proxy.rtm_account, "1086");
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.file.as_deref(), Some(Path::new("rtc_sip.log")));
    assert_eq!(c.log.max_file_size_mb, 100);

    let appid = warnings
        .iter()
        .find(|w| w.key.as_deref() == Some("appid"))
        .expect("appid is warned about");
    assert_eq!(appid.line, Some(2));
    assert_eq!(
        appid.to_string(),
        format!(
            "{}:2: [global] appid: anyRTC-only key, ignored by srgate",
            c.path.display()
        )
    );
    // appid and the empty [auth] secret; proxy mode without [users] is normal.
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
}

#[test]
fn srproxy_rtx_conf_with_the_placeholder_says_what_to_do() {
    let original = std::fs::read_to_string(repo("tests/data/config/rtx.conf"))
        .unwrap()
        .replace("sip_svr=127.0.0.1:5060", "sip_svr=IP:5060");
    let err = Config::from_str(&original, Path::new("rtx.conf")).unwrap_err();
    assert_eq!((err.line, err.key.as_deref()), (Some(3), Some("sip_svr")));
    assert!(err.message.contains("placeholder"), "{err}");
}

/// SRProxy's repository `rtx.conf` also has `[pstn]` (a dialling prefix routed to a PSTN
/// gateway): srgate starts with a warning that says what happens instead.
#[test]
fn srproxy_pstn_section_is_warned_about_not_refused() {
    let text = "[global]\nsip_svr = 127.0.0.1\n\n[pstn]\nip=192.168.1.122\nprefix=9\n";
    let (_, warnings) = Config::from_str(text, Path::new("rtx.conf")).unwrap();
    let pstn = warnings
        .iter()
        .find(|w| w.section.as_deref() == Some("pstn"))
        .expect("a warning about [pstn]");
    assert_eq!(pstn.line, Some(4));
    assert!(pstn.to_string().contains("go to sip_svr"), "{pstn}");
}

#[test]
fn anyrtc_sections_are_warned_about() {
    let text = "[global]\nsip_svr = 127.0.0.1\n\n[rtc]\nip=RTC_IP\nport=6080\n[rtm]\nip=RTM_IP\nport=7080\n";
    let (_, warnings) = Config::from_str(text, Path::new("x.conf")).unwrap();
    let rtc = warnings
        .iter()
        .find(|w| w.section.as_deref() == Some("rtc"))
        .unwrap();
    assert_eq!((rtc.line, rtc.key.as_deref()), (Some(4), None));
    assert_eq!(
        rtc.to_string(),
        "x.conf:4: [rtc]: anyRTC-only section, ignored by srgate"
    );
    let rtm = warnings
        .iter()
        .find(|w| w.section.as_deref() == Some("rtm"))
        .unwrap();
    assert_eq!(rtm.line, Some(7));
}

fn masked(mut c: Config) -> Config {
    let mask = |s: &mut Secret| {
        if !s.is_empty() {
            *s = Secret::from("***");
        }
    };
    mask(&mut c.proxy.sip_pwd);
    mask(&mut c.auth.secret);
    c.users.iter_mut().for_each(|(_, password)| mask(password));
    c
}

#[test]
fn effective_masks_secrets_and_reads_back_equal() {
    let text = "[global]\nsip_svr = sip:localhost:5070;transport=tcp\nshards = 2\n\
                [proxy]\nsip_pwd = s3cret-pwd\n\
                [users]\n1001 = user-pass-1\nalice = user-pass-2\n\
                [auth]\nsecret = an-hmac-secret-of-some-length\n\
                [log]\nlevel = 0\n";
    let (c, _) = Config::from_str(text, Path::new("conf/x.ini")).unwrap();
    assert_eq!(c.global.sip_svr.as_ref().unwrap().transport, Transport::Tcp);
    assert!(c.global.sip_svr.as_ref().unwrap().addr.ip().is_loopback());
    let out = c.effective();
    for secret in ["s3cret-pwd", "user-pass-1", "user-pass-2", "an-hmac-secret"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    for line in ["sip_pwd = ***", "1001 = ***", "alice = ***", "secret = ***"] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
    }
    // Every key is written, defaults included.
    for line in [
        "rtp_timeout = 30",
        "opus_complexity = 5",
        "sip_srtp = optional",
        "tls_listen =",
        "cert =",
    ] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
    }
    let (again, _) = Config::from_str(&out, &c.path).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(again, masked(c));

    for path in ["conf/srgate.ini", "tests/data/config/rtx.conf"] {
        let (c, _) = load(path);
        let out = c.effective();
        assert!(!out.contains("sip_pwd = 1234"), "{out}");
        let (again, _) = Config::from_str(&out, &c.path).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(again, masked(c), "{path}");
    }
}
