//! Every section and key srgate knows, with its default as `conf/srgate.ini` documents
//! it, and the anyRTC-only sections and keys that are only warned about.

/// Every section and key with its default, as `conf/srgate.ini` documents them. `[users]` takes any key
/// (user names), `[groups]` any number or range; `[rtc]`, `[rtm]` and `[global] appid` are anyRTC's and only warned about.
pub(super) const SCHEMA: &[(&str, &[(&str, &str)])] = &[
    (
        "global",
        &[("sip_svr", ""), ("public_ip", ""), ("shards", "auto")],
    ),
    (
        "sip",
        &[
            ("listen", "0.0.0.0:5086"),
            ("digest", "md5,sha256"),
            ("tls_listen", ""),
            ("domain", ""),
            ("session_expires", "1800"),
        ],
    ),
    (
        "proxy",
        &[
            ("on", "1"),
            ("sip_account", "1000"),
            ("sip_pwd", "1234"),
            ("rtm_account", "1086"),
            ("expires", "300"),
        ],
    ),
    (
        "rtm2sip",
        &[
            ("on", "1"),
            ("acc_rule", "1005;10[06-19]"),
            ("allow_any", "0"),
            ("app_display_name", "0"),
        ],
    ),
    ("users", &[]),
    ("groups", &[]),
    (
        "webrtc",
        &[
            ("listen", "127.0.0.1:8080"),
            ("tls_listen", ""),
            ("udp", "0.0.0.0:50000"),
            ("allowed_origins", ""),
            ("max_conns_per_ip", "64"),
            ("ice_servers", ""),
            ("turn_secret", ""),
            ("turn_ttl", "86400"),
            ("ice_tcp", "1"),
        ],
    ),
    (
        "media",
        &[
            ("rtp_ports", "40000-49999"),
            ("codecs", "opus,pcmu,pcma,g722"),
            ("opus_complexity", "5"),
            ("rtp_timeout", "30"),
            ("sip_srtp", "optional"),
        ],
    ),
    (
        "calls",
        &[
            ("invitation_timeout", "60"),
            ("cdr_file", "srgate-cdr.jsonl"),
            ("cdr_max_file_size", "100"),
            ("max_calls", "4096"),
        ],
    ),
    (
        "door",
        &[("open_dtmf", ""), ("open_info", "1"), ("open_hook", "")],
    ),
    ("rest", &[("hook_url", "")]),
    ("auth", &[("secret", ""), ("open", "0")]),
    ("tls", &[("cert", ""), ("key", ""), ("ca", "")]),
    ("api", &[("listen", "127.0.0.1:9091"), ("token", "")]),
    (
        "log",
        &[
            ("level", "2"),
            ("file", "srgate.log"),
            ("max_file_size", "100"),
        ],
    ),
];

/// Sections of SRProxy's `rtx.conf` srgate ignores, each with the warning it gets.
pub(super) const IGNORED_SECTIONS: &[(&str, &str)] = &[
    ("rtc", "anyRTC-only section, ignored by srgate"),
    ("rtm", "anyRTC-only section, ignored by srgate"),
    // `ip`, `prefix`: numbers with the prefix to a PSTN gateway
    (
        "pstn",
        "SRProxy's PSTN gateway route is not supported and is ignored: calls to those \
         numbers go to sip_svr like any other (route the prefix to the gateway in the PBX)",
    ),
];
pub(super) const ANYRTC_KEYS: &[(&str, &str)] = &[("global", "appid")];

pub(super) fn schema_keys(section: &str) -> Option<&'static [(&'static str, &'static str)]> {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == section)
        .map(|(_, keys)| *keys)
}

pub(super) fn default_of(section: &str, key: &str) -> &'static str {
    schema_keys(section)
        .and_then(|keys| keys.iter().find(|(k, _)| *k == key))
        .map(|(_, default)| *default)
        .expect("the loader asks only for keys listed in SCHEMA")
}
