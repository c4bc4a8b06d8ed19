//! The configuration file (`conf/srgate.ini`, where every key is documented) read into a typed [`Config`].
//!
//! SRProxy's `rtx.conf` keys keep their meaning (`[global] sip_svr`, `[rtm2sip] on, acc_rule`,
//! `[proxy] on, sip_account, sip_pwd, rtm_account`, `[log] level, file, max_file_size`), and
//! an `rtx.conf` as SRProxy's guide writes it loads unchanged once `sip_svr` holds a real
//! address. anyRTC-only settings (`[global] appid`, the `[rtc]` and `[rtm]` sections) are
//! accepted with a [`Warning`]. Every other unknown section or key, every bad value and every
//! contradiction between keys is a [`ConfigError`] that names the file, the line and the key.
//!
//! File syntax: `;` and `#` start comment lines; an inline comment starts at a `;` or `#`
//! that follows a space or tab (SRProxy's `sip_svr=IP:5060 \t\t ## …`), so a password like
//! `a#b;c` is read whole; a value in double quotes is taken literally (for blanks at its ends
//! or a ` ;` inside); a key set twice in one section is an error, not last-wins; a section
//! may be opened more than once. Section and key names are case-sensitive.
//!
//! Relative paths (`[tls] cert`, `[log] file`) are taken relative to the working directory,
//! as SRProxy did. Loading resolves `sip_svr` host names (blocking DNS) and checks that the
//! TLS files exist; nothing else touches the system.
//!
//! # Where things are
//!
//! This file loads a file or a text ([`Config::load`], [`Config::from_str`]): lex, check
//! the names, read the values, check across keys. `types` holds the typed [`Config`] and
//! its sections, `error` [`ConfigError`] and [`Warning`], `schema` every section and key
//! with its default, `read` the reading of each section's values, `check` the checks
//! across keys (contradictions, listeners on one port, warnings); `lexer` splits the
//! text, `values` parses single values, `acc_rule` is `[rtm2sip] acc_rule` and `effective`
//! writes the effective configuration back as INI text.

mod acc_rule;
mod check;
mod effective;
mod error;
mod groups;
mod lexer;
mod read;
mod schema;
mod types;
mod values;

use std::path::Path;

pub use acc_rule::AccRule;
pub use error::{ConfigError, ErrorKind, Warning};
pub use groups::{Group, Groups, MAX_MEMBERS as MAX_GROUP_MEMBERS, MemberKind};
pub use types::{
    Api, Auth, CallsSection, Codec, Config, DigestAlgorithm, Door, Global, HookUrl, Log, LogLevel,
    Media, Proxy, RestHooks, Rtm2Sip, Sip, SipServer, SipSrtp, Tls, Transport, WebRtc,
};

use read::Reader;

impl Config {
    /// Reads and checks the file. The warnings are for the log (or `srgate check`).
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let io_error = |line, message: String| ConfigError {
            file: path.to_owned(),
            line,
            section: None,
            key: None,
            kind: ErrorKind::Io,
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| io_error(None, format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            io_error(Some(line), "not UTF-8 text".into())
        })?;
        Config::from_str(&text, path)
    }

    /// Reads and checks configuration text; `path` is used in messages and kept in
    /// [`Config::path`].
    pub fn from_str(text: &str, path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let doc = lexer::lex(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: Some(e.line),
            section: e.section,
            key: e.key,
            kind: e.kind,
            message: e.message,
        })?;
        let mut r = Reader {
            file: path,
            doc: &doc,
            warnings: Vec::new(),
        };
        r.check_names()?;
        let config = Config::read(&r, path)?;
        config.check(&mut r)?;
        Ok((config, r.warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        Config::from_str(text, Path::new("t.ini"))
    }

    #[test]
    fn every_schema_default_parses() {
        let (config, warnings) = load("").unwrap();
        assert!(config.standalone());
        assert_eq!(config.sip.listen, "0.0.0.0:5086".parse().unwrap());
        assert_eq!(config.proxy.sip_pwd.expose(), "1234");
        assert_eq!(config.log.file.as_deref(), Some(Path::new("srgate.log")));
        // Empty secret and no users are worth a warning; defaults raise nothing else.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn effective_reads_back_equal_when_unmasked() {
        let text = "[global]\nsip_svr = sips:[::1]:5071\npublic_ip = 2001:db8::5\nshards = 3\n\
                    [sip]\ndigest = sha256\ndomain = example.org\n\
                    [proxy]\nsip_pwd = \" p ;w#d \"\n\
                    [rtm2sip]\nacc_rule = 1;2[00-50]\nallow_any = yes\n\
                    [users]\nalice = a#b\nbob = \"x ;y\"\n\
                    [webrtc]\nallowed_origins = https://A.example, http://b:8080\n\
                    [media]\ncodecs = pcma, opus\nrtp_timeout = 7\n\
                    [auth]\nsecret = 0123456789abcdef0\n\
                    [api]\nlisten =\n\
                    [log]\nlevel = verbose\nfile =\nmax_file_size = 5\n";
        let (config, _) = load(text).unwrap();
        let written = effective::write(&config, false);
        let (again, _) = load(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(again, config, "{written}");
        assert_eq!(config.proxy.sip_pwd.expose(), " p ;w#d ");
        assert_eq!(config.users[1].1.expose(), "x ;y");
        assert_eq!(config.domain(), "example.org");
    }

    #[test]
    fn domain_falls_back_in_order() {
        let (c, _) = load("[global]\nsip_svr = [::1]:5060\n").unwrap();
        assert_eq!(c.domain(), "[::1]");
        let (c, _) = load("[global]\npublic_ip = 192.0.2.7\n").unwrap();
        assert_eq!(c.domain(), "192.0.2.7");
        let (c, _) = load("[sip]\nlisten = 127.0.0.1:5086\n").unwrap();
        assert_eq!(c.domain(), "127.0.0.1");
    }

    #[test]
    fn listeners_on_one_port_conflict() {
        let err = load("[api]\nlisten = 127.0.0.1:8080\n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(err.key.as_deref(), Some("listen"));
        assert_eq!(err.section.as_deref(), Some("api"));
        assert!(err.message.contains("[webrtc] listen"), "{err}");
        // The same port on UDP and TCP is fine, and so are different addresses.
        load("[webrtc]\nice_tcp = 0\nlisten = 127.0.0.1:50000\n").unwrap();
        // ICE-TCP listens on TCP on the media ports
        let err = load("[webrtc]\nlisten = 127.0.0.1:50000\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("listen"));
        assert!(err.message.contains("[webrtc] ice_tcp"), "{err}");
        let err = load("[global]\nshards = 2\n[api]\nlisten = 127.0.0.1:50001\n");
        assert!(
            err.as_ref()
                .is_err_and(|e| e.message.contains("TCP port 50001")),
            "{err:?}"
        );
        load("[sip]\nlisten = 127.0.0.1:9091\n[api]\nlisten = 127.0.0.2:9091\n").unwrap();
        // The shards' UDP ports count as a range.
        let err = load("[global]\nshards = 4\n[sip]\nlisten = 0.0.0.0:50003\n").unwrap_err();
        assert_eq!(err.section.as_deref(), Some("webrtc"));
        assert_eq!(err.key.as_deref(), Some("udp"));
    }

    #[test]
    fn webrtc_udp_ports_follow_shards() {
        let (c, _) = load("[global]\nshards = 3\n").unwrap();
        assert_eq!(c.webrtc_udp_ports(), 50000..=50002);
        let err = load("[global]\nshards = 4\n[webrtc]\nudp = 0.0.0.0:65534\n").unwrap_err();
        assert_eq!((err.kind, err.line), (ErrorKind::Conflict, Some(4)));
        let (c, _) = load("[global]\nshards = 4\n[webrtc]\nudp = 127.0.0.1:0\n").unwrap();
        assert_eq!(c.webrtc_udp_ports(), 0..=0);
    }

    #[test]
    fn errors_display_with_location() {
        let err = load("[sip]\n\nlisten = nowhere\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ini:3: [sip] listen: expected ADDRESS:PORT such as 0.0.0.0:5086 or [::]:5086, got `nowhere`"
        );
        let err = load("junk\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.ini:1: expected `key = value`"),
            "{err}"
        );
    }
}
