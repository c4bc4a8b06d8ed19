//! `[rtm2sip] acc_rule` in SRProxy's syntax, read from a configuration file.

use std::path::Path;

use srgate::config::{AccRule, Config};

#[test]
fn srproxy_rule_from_a_file() {
    let (c, _) = Config::from_str(
        "[rtm2sip]\non=1\nacc_rule=1005;10[06-19]           ## comment\n",
        Path::new("t.ini"),
    )
    .unwrap();
    let rule = &c.rtm2sip.acc_rule;
    assert!(rule.matches("1005"));
    assert!(rule.matches("1006"));
    assert!(rule.matches("1019"));
    assert!(!rule.matches("1020"));
    assert!(!rule.matches("10061"));
    assert!(!rule.matches("106"));
    assert!(!rule.matches("1004"));
}

#[test]
fn empty_rule_and_allow_any() {
    let (c, warnings) = Config::from_str("[rtm2sip]\nacc_rule =\n", Path::new("t.ini")).unwrap();
    assert!(!c.rtm2sip.acc_rule.matches("1005"));
    assert!(
        warnings
            .iter()
            .any(|w| w.key.as_deref() == Some("acc_rule")),
        "{warnings:?}"
    );
    let (c, warnings) =
        Config::from_str("[rtm2sip]\nacc_rule =\nallow_any = 1\n", Path::new("t.ini")).unwrap();
    assert!(c.rtm2sip.allow_any);
    assert!(
        !warnings
            .iter()
            .any(|w| w.key.as_deref() == Some("acc_rule")),
        "{warnings:?}"
    );
}

#[test]
fn several_ranges() {
    let rule = AccRule::parse("8[000-199];9[5-7];+4930[00-09]").unwrap();
    for yes in ["8000", "8199", "95", "97", "+493005"] {
        assert!(rule.matches(yes), "{yes}");
    }
    for no in ["8200", "80000", "94", "98", "+49301", "+493010"] {
        assert!(!rule.matches(no), "{no}");
    }
}
