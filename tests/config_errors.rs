//! Every kind of configuration mistake is reported with the file, the line and the key.

use std::path::{Path, PathBuf};

use srgate::config::{Config, ConfigError, ErrorKind};

const FILE: &str = "conf/test.ini";

fn error(text: &str) -> ConfigError {
    match Config::from_str(text, Path::new(FILE)) {
        Ok((c, _)) => panic!("accepted:\n{text}\n{c:#?}"),
        Err(e) => e,
    }
}

/// Checks kind, line, section and key, and that Display starts with all of them.
fn expect(
    text: &str,
    kind: ErrorKind,
    line: usize,
    section: &str,
    key: Option<&str>,
) -> ConfigError {
    let err = error(text);
    assert_eq!(err.kind, kind, "{err}");
    assert_eq!(err.file, PathBuf::from(FILE));
    assert_eq!(err.line, Some(line), "{err}");
    assert_eq!(err.section.as_deref(), Some(section), "{err}");
    assert_eq!(err.key.as_deref(), key, "{err}");
    let prefix = match key {
        Some(key) => format!("{FILE}:{line}: [{section}] {key}: "),
        None => format!("{FILE}:{line}: [{section}]: "),
    };
    assert!(
        err.to_string().starts_with(&prefix),
        "`{err}` does not start with `{prefix}`"
    );
    err
}

#[test]
fn unknown_key() {
    let err = expect(
        "[sip]\nlisten = 0.0.0.0:5086\nlisen = 0.0.0.0:5086\n",
        ErrorKind::UnknownKey,
        3,
        "sip",
        Some("lisen"),
    );
    assert!(
        err.message.contains("listen, digest, tls_listen, domain"),
        "{err}"
    );
    let err = expect(
        "[global]\n\nlevel = 2\n",
        ErrorKind::UnknownKey,
        3,
        "global",
        Some("level"),
    );
    assert!(err.message.contains("belongs in [log]"), "{err}");
}

#[test]
fn unknown_section() {
    let err = expect(
        "[global]\n[sipp]\nlisten = x\n",
        ErrorKind::UnknownSection,
        2,
        "sipp",
        None,
    );
    assert!(err.message.contains("[webrtc]"), "{err}");
    let err = expect("[Global]\n", ErrorKind::UnknownSection, 1, "Global", None);
    assert!(err.message.contains("lower-case"), "{err}");
}

#[test]
fn duplicate_key() {
    let err = expect(
        "[proxy]\nsip_pwd = a\n[log]\nlevel = 2\n[proxy]\nsip_pwd = b\n",
        ErrorKind::DuplicateKey,
        6,
        "proxy",
        Some("sip_pwd"),
    );
    assert!(err.message.contains("line 2"), "{err}");
    assert!(
        !err.to_string().contains("= b"),
        "values are not echoed: {err}"
    );
    expect(
        "[users]\n1001 = a\n1001 = b\n",
        ErrorKind::DuplicateKey,
        3,
        "users",
        Some("1001"),
    );
}

#[test]
fn syntax_error() {
    let err = error("[sip]\nlisten 0.0.0.0:5086\n");
    assert_eq!((err.kind, err.line), (ErrorKind::Syntax, Some(2)));
    assert!(
        err.to_string()
            .starts_with("conf/test.ini:2: [sip]: expected `key = value`"),
        "{err}"
    );
    let err = error("sip_svr = 10.0.0.1\n");
    assert_eq!((err.kind, err.line), (ErrorKind::Syntax, Some(1)));
    assert!(err.message.contains("outside any section"), "{err}");
}

#[test]
fn bad_ports() {
    let err = expect(
        "[sip]\nlisten = 0.0.0.0:70000\n",
        ErrorKind::BadValue,
        2,
        "sip",
        Some("listen"),
    );
    assert!(err.message.contains("ADDRESS:PORT"), "{err}");
    let err = expect(
        "[global]\nsip_svr = pbx.example.com:0\n",
        ErrorKind::BadValue,
        2,
        "global",
        Some("sip_svr"),
    );
    assert!(err.message.contains("1-65535"), "{err}");
    expect(
        "[webrtc]\nudp = 20000\n",
        ErrorKind::BadValue,
        2,
        "webrtc",
        Some("udp"),
    );
    expect(
        "[api]\nlisten = localhost:9091\n",
        ErrorKind::BadValue,
        2,
        "api",
        Some("listen"),
    );
    let err = expect(
        "[media]\nrtp_ports = 16385-32768\n",
        ErrorKind::BadValue,
        2,
        "media",
        Some("rtp_ports"),
    );
    assert!(err.message.contains("even"), "{err}");
    expect(
        "[media]\nrtp_ports = 16384-16384\n",
        ErrorKind::BadValue,
        2,
        "media",
        Some("rtp_ports"),
    );
}

#[test]
fn bad_level() {
    let err = expect(
        "[log]\nlevel = 7   ## too loud\n",
        ErrorKind::BadValue,
        2,
        "log",
        Some("level"),
    );
    assert!(err.message.contains("0 SENSITIVE"), "{err}");
    assert!(err.message.contains("`7`"), "{err}");
    expect(
        "[log]\nmax_file_size = 0\n",
        ErrorKind::BadValue,
        2,
        "log",
        Some("max_file_size"),
    );
}

#[test]
fn bad_acc_rule() {
    let err = expect(
        "[rtm2sip]\non=1\nacc_rule=1005;10[19-06]           ## comment\n",
        ErrorKind::BadValue,
        3,
        "rtm2sip",
        Some("acc_rule"),
    );
    assert!(err.message.contains("entry 2"), "{err}");
    assert!(err.message.contains("above its end"), "{err}");
    let err = expect(
        "[rtm2sip]\nacc_rule=1005;;1006\n",
        ErrorKind::BadValue,
        2,
        "rtm2sip",
        Some("acc_rule"),
    );
    assert!(err.message.contains("empty"), "{err}");
}

/// A bad `[groups]` line names its line and key and says which member is wrong; a good
/// one loads, with a warning for a `sip:` member that is no `[users]` name (it can never
/// register), and the effective configuration (`srgate check`) prints the groups.
#[test]
fn bad_groups_and_the_sip_member_warning() {
    let err = expect(
        "[groups]\n301 = app:anna, app:ben\n302 = app:anna, phone:3021\n",
        ErrorKind::BadValue,
        3,
        "groups",
        Some("302"),
    );
    assert!(err.message.contains("member 2 `phone:3021`"), "{err}");
    let err = expect(
        "[groups]\n3[01-9] = app:flat{n}\n",
        ErrorKind::BadValue,
        2,
        "groups",
        Some("3[01-9]"),
    );
    assert!(err.message.contains("differ in width"), "{err}");
    let (config, warnings) = Config::from_str(
        "[users]\n3011 = pw-3011\n[groups]\n301 = app:anna, sip:3011\n3[02-99] = app:flat{n}\n\
         303 = app:carl, sip:3031\n",
        Path::new(FILE),
    )
    .expect("valid groups");
    let about = |key: &str| {
        warnings
            .iter()
            .map(ToString::to_string)
            .find(|w| w.contains(&format!("[groups] {key}")))
    };
    assert_eq!(about("301"), None, "3011 is a [users] phone: {warnings:?}");
    let warning = about("303").expect("a warning about sip:3031");
    assert!(warning.contains(":6:"), "{warning}");
    assert!(
        warning.contains("sip:3031 is not a [users] name"),
        "{warning}"
    );
    let effective = config.effective();
    assert!(
        effective.contains("301 = app:anna, sip:3011"),
        "{effective}"
    );
    assert!(effective.contains("3[02-99] = app:flat{n}"), "{effective}");
}

/// `[media] codecs` without G.711 loads, with a warning naming the line: most SIP peers
/// offer nothing else.
#[test]
fn codecs_without_g711_are_warned_about() {
    let (_, warnings) = Config::from_str("[media]\n\ncodecs = opus\n", Path::new(FILE)).unwrap();
    let warning = warnings
        .iter()
        .map(ToString::to_string)
        .find(|w| w.contains("[media] codecs"))
        .expect("a warning");
    assert!(
        warning.contains(":3:") && warning.contains("488"),
        "{warning}"
    );
    let (_, warnings) = Config::from_str("[media]\ncodecs = opus,pcma\n", Path::new(FILE)).unwrap();
    assert!(
        warnings
            .iter()
            .all(|w| !w.to_string().contains("[media] codecs")),
        "{warnings:?}"
    );
}

/// `[door]`: a sequence of DTMF digits, a hook at an IP address over plain HTTP.
#[test]
fn bad_door_settings() {
    for (text, line, key, says) in [
        (
            "[door]\nopen_dtmf = *9x\n",
            2,
            "open_dtmf",
            "`x` is not a DTMF digit",
        ),
        (
            "[door]\nopen_dtmf = 123456789\n",
            2,
            "open_dtmf",
            "at most 8",
        ),
        (
            "[door]\n\nopen_hook = http://relay.local/open\n",
            3,
            "open_hook",
            "host names are not looked up",
        ),
        (
            "[door]\nopen_hook = https://10.0.0.5:443/open\n",
            2,
            "open_hook",
            "https is not supported",
        ),
        (
            "[door]\nopen_hook = http://10.0.0.5/open\n",
            2,
            "open_hook",
            "needs a port",
        ),
    ] {
        let err = expect(text, ErrorKind::BadValue, line, "door", Some(key));
        assert!(err.message.contains(says), "{err}");
    }
    let (config, _) = Config::from_str(
        "[door]\nopen_dtmf = *1\nopen_hook = http://[::1]:8080/relay?n=1\n",
        Path::new(FILE),
    )
    .unwrap();
    assert_eq!(config.door.open_dtmf, "*1");
    assert!(config.door.open_info, "INFO by default");
    assert_eq!(
        config.door.open_hook.map(|h| h.to_string()).as_deref(),
        Some("http://[::1]:8080/relay?n=1")
    );
}

#[test]
fn bad_values_of_every_type() {
    for (text, section, key) in [
        ("[proxy]\non = 2\n", "proxy", "on"),
        ("[global]\nshards = 0\n", "global", "shards"),
        ("[global]\npublic_ip = 0.0.0.0\n", "global", "public_ip"),
        ("[global]\npublic_ip = example.com\n", "global", "public_ip"),
        ("[sip]\ndigest = md5,md4\n", "sip", "digest"),
        ("[sip]\ndigest = md5,md5\n", "sip", "digest"),
        ("[sip]\ndomain = a b\n", "sip", "domain"),
        ("[sip]\nsession_expires = 60\n", "sip", "session_expires"),
        ("[sip]\nsession_expires = never\n", "sip", "session_expires"),
        ("[proxy]\nexpires = 5\n", "proxy", "expires"),
        ("[proxy]\nsip_account = 10 00\n", "proxy", "sip_account"),
        ("[proxy]\nrtm_account = \n", "proxy", "rtm_account"),
        (
            "[webrtc]\nallowed_origins = https://a.example/\n",
            "webrtc",
            "allowed_origins",
        ),
        ("[media]\ncodecs = opus,g729\n", "media", "codecs"),
        ("[media]\ncodecs =\n", "media", "codecs"),
        (
            "[media]\nopus_complexity = 11\n",
            "media",
            "opus_complexity",
        ),
        ("[media]\nrtp_timeout = 0\n", "media", "rtp_timeout"),
        ("[media]\nsip_srtp = required\n", "media", "sip_srtp"),
        ("[users]\nbad name = x\n", "users", "bad name"),
    ] {
        let err = error(text);
        // A blank inside a key is a syntax error, every other case names the bad value.
        if key.contains(' ') {
            assert_eq!((err.kind, err.line), (ErrorKind::Syntax, Some(2)), "{err}");
            continue;
        }
        assert_eq!(err.kind, ErrorKind::BadValue, "{text}: {err}");
        assert_eq!(err.line, Some(2), "{text}: {err}");
        assert_eq!(
            (err.section.as_deref(), err.key.as_deref()),
            (Some(section), Some(key)),
            "{err}"
        );
    }
    let err = expect(
        "[users]\n1001 =\n",
        ErrorKind::BadValue,
        2,
        "users",
        Some("1001"),
    );
    assert!(err.message.contains("empty password"), "{err}");
    let err = expect(
        "[users]\nal:ice = x\n",
        ErrorKind::BadValue,
        2,
        "users",
        Some("al:ice"),
    );
    assert!(err.message.contains("SIP user"), "{err}");
}

#[test]
fn unresolvable_sip_svr() {
    let err = expect(
        "[global]\nsip_svr=no-such-host.invalid:5060\n",
        ErrorKind::BadValue,
        2,
        "global",
        Some("sip_svr"),
    );
    assert!(err.message.contains("no-such-host.invalid"), "{err}");
}

#[test]
fn tls_listen_without_cert() {
    let err = expect(
        "[sip]\ntls_listen = 0.0.0.0:5087\n",
        ErrorKind::Conflict,
        2,
        "sip",
        Some("tls_listen"),
    );
    assert!(err.message.contains("[tls] cert and key"), "{err}");
    expect(
        "[webrtc]\n\ntls_listen = 0.0.0.0:8443\n",
        ErrorKind::Conflict,
        3,
        "webrtc",
        Some("tls_listen"),
    );
}

#[test]
fn tls_files() {
    let err = expect(
        "[tls]\ncert = /nonexistent/srgate-cert.pem\n",
        ErrorKind::BadValue,
        2,
        "tls",
        Some("cert"),
    );
    assert!(err.message.contains("cannot read"), "{err}");
    // Cargo.toml stands in for a PEM file: only existence is checked at load.
    let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let text = format!("[sip]\ntls_listen = 0.0.0.0:5087\n[tls]\ncert = {cert}\n");
    let err = expect(&text, ErrorKind::Conflict, 4, "tls", Some("cert"));
    assert!(err.message.contains("key"), "{err}");
    let text = format!("[sip]\ntls_listen = 0.0.0.0:5087\n[tls]\ncert = {cert}\nkey = {cert}\n");
    let (c, _) = Config::from_str(&text, Path::new(FILE)).unwrap();
    assert_eq!(c.sip.tls_listen, Some("0.0.0.0:5087".parse().unwrap()));
    // Files without a listener work, with a warning.
    let (_, warnings) = Config::from_str(
        &format!("[tls]\ncert = {cert}\nkey = {cert}\n"),
        Path::new(FILE),
    )
    .unwrap();
    assert!(
        warnings.iter().any(|w| w.message.contains("unused")),
        "{warnings:?}"
    );
}

#[test]
fn proxy_account_needed_with_a_sip_server() {
    expect(
        "[global]\nsip_svr = 127.0.0.1\n[proxy]\non = 1\nsip_account =\n",
        ErrorKind::Conflict,
        5,
        "proxy",
        Some("sip_account"),
    );
    // Without proxy registration, or in standalone mode, no account is fine.
    Config::from_str(
        "[global]\nsip_svr = 127.0.0.1\n[proxy]\non = 0\nsip_account =\n",
        Path::new(FILE),
    )
    .unwrap();
    Config::from_str("[proxy]\nsip_account =\n", Path::new(FILE)).unwrap();
}

#[test]
fn errors_in_the_shipped_file_name_its_lines() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/srgate.ini");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .position(|l| l == "level = 2")
        .expect("shipped file sets level")
        + 1;
    let err = Config::from_str(&text.replace("level = 2", "level = 9"), &path).unwrap_err();
    assert_eq!(err.line, Some(line));
    assert!(
        err.to_string()
            .starts_with(&format!("{}:{line}: [log] level: ", path.display())),
        "{err}"
    );
}

#[test]
fn unreadable_files() {
    let err = Config::load(Path::new("/nonexistent/srgate.ini")).unwrap_err();
    assert_eq!((err.kind, err.line), (ErrorKind::Io, None));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/srgate.ini: cannot read"),
        "{err}"
    );

    let path =
        std::env::temp_dir().join(format!("srgate-config-latin1-{}.ini", std::process::id()));
    std::fs::write(&path, b"[global]\n\n; caf\xe9\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!((err.kind, err.line), (ErrorKind::Io, Some(3)), "{err}");
}

#[test]
fn open_login_on_a_listener_other_hosts_reach() {
    // the secret is not written: the listener's line is named
    let err = expect(
        "[webrtc]\nlisten = 0.0.0.0:8080\n",
        ErrorKind::Conflict,
        2,
        "webrtc",
        Some("listen"),
    );
    assert!(err.message.contains("0.0.0.0:8080"), "{err}");
    assert!(err.message.contains("[auth] open = 1"), "{err}");
    // written empty: its line is named; TLS listeners count too
    let text = "[webrtc]\nlisten = 127.0.0.1:8080\ntls_listen = 192.0.2.1:8443\n\
                [tls]\ncert = Cargo.toml\nkey = Cargo.toml\n[auth]\nsecret =\n";
    let err = expect(text, ErrorKind::Conflict, 8, "auth", Some("secret"));
    assert!(err.message.contains("192.0.2.1:8443"), "{err}");

    // what makes it acceptable: a secret, loopback only, or the operator's explicit choice
    let ok = |text: &str| {
        Config::from_str(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let (c, _) = ok("[webrtc]\nlisten = 0.0.0.0:8080\n[auth]\nsecret = 0123456789abcdef0123\n");
    assert!(!c.open_login_exposed());
    let (c, warnings) = ok("[webrtc]\nlisten = [::1]:8080\n");
    assert!(c.auth.open_login() && !c.open_login_exposed());
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string().contains("anyone on this machine"))
    );
    let (c, warnings) = ok("[webrtc]\nlisten = 0.0.0.0:8080\n[auth]\nopen = 1\n");
    assert!(c.auth.open && !c.open_login_exposed());
    assert!(
        warnings.iter().any(|w| w
            .to_string()
            .contains("anyone who reaches the web listener")),
        "{warnings:#?}"
    );
}

#[test]
fn ice_servers_must_be_stun_or_turn_urls_and_turn_needs_a_secret() {
    let err = expect(
        "[webrtc]\nice_servers = stun:stun.example.org, http://turn.example.org\n",
        ErrorKind::BadValue,
        2,
        "webrtc",
        Some("ice_servers"),
    );
    assert!(err.message.contains("http://turn.example.org"), "{err}");
    let err = expect(
        "[webrtc]\nice_servers = turn:turn.example.org:3478\n",
        ErrorKind::Conflict,
        2,
        "webrtc",
        Some("ice_servers"),
    );
    assert!(err.message.contains("turn_secret"), "{err}");
}
