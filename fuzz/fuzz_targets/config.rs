//! Fuzzes the configuration reader (`Config::from_str`: lexer, reader, checks). An
//! accepted file must give an effective configuration (`Config::effective`, what `srgate
//! check` prints) and, written with its secrets (`Config::effective_unmasked`), read back
//! to an equal configuration.
//!
//! Run: `cargo +nightly fuzz run config fuzz/seeds/config`
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use srgate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.ini");
    let Ok((config, _warnings)) = Config::from_str(text, path) else {
        return;
    };
    let _ = config.effective();
    let _ = (
        config.domain(),
        config.standalone(),
        config.webrtc_udp_ports(),
    );
    let _ = (config.exposed_web_listeners(), config.open_login_exposed());
    let written = config.effective_unmasked();
    let again = match Config::from_str(&written, path) {
        Ok((again, _)) => again,
        Err(e) => panic!(
            "the effective configuration does not read back: {e}\n{written}\n--- from ---\n{text}"
        ),
    };
    assert_eq!(again, config, "{written}");
});
