//! The STUN and TURN servers handed to browsers in `login_ok` (`iceServers`, the shape of
//! `RTCConfiguration.iceServers`). TURN credentials are made per login from a secret shared
//! with the TURN server, coturn's `use-auth-secret` scheme: the username is
//! `EXPIRY:USER` (Unix seconds), the password base64(HMAC-SHA1(secret, username)). The
//! TURN server checks them without srgate, and they stop working at the expiry, so no TURN
//! password is ever written into a page.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::webrtc::srtp::HmacSha1;

#[derive(Clone, Debug, Default)]
pub struct IceServers {
    stun: Vec<String>,
    turn: Vec<String>,
    secret: Vec<u8>,
    ttl: u64,
}

impl IceServers {
    /// `urls`: `stun:`/`stuns:`/`turn:`/`turns:` URLs (checked by the config);
    /// `turn_secret`: the TURN server's shared secret; `ttl`: how long credentials last.
    pub fn new(urls: &[String], turn_secret: &str, ttl: u64) -> Self {
        let (turn, stun) = urls
            .iter()
            .cloned()
            .partition(|u| u.to_ascii_lowercase().starts_with("turn"));
        IceServers {
            stun,
            turn,
            secret: turn_secret.as_bytes().to_vec(),
            ttl,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stun.is_empty() && self.turn.is_empty()
    }

    /// `iceServers` for `user` logging in at `unix_now`.
    pub fn for_user(&self, user: &str, unix_now: u64) -> Value {
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(json!({"urls": self.stun}));
        }
        if !self.turn.is_empty() && !self.secret.is_empty() {
            let (username, credential) = self.credential(user, unix_now);
            servers
                .push(json!({"urls": self.turn, "username": username, "credential": credential}));
        }
        Value::Array(servers)
    }

    /// coturn's `use-auth-secret` credential for `user`, valid until `unix_now + ttl`.
    pub fn credential(&self, user: &str, unix_now: u64) -> (String, String) {
        let username = format!("{}:{user}", unix_now.saturating_add(self.ttl));
        let mac = HmacSha1::new(&self.secret).mac(username.as_bytes(), b"");
        let credential = base64::engine::general_purpose::STANDARD.encode(mac);
        (username, credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_alone_has_no_credentials_and_turn_gets_a_time_limited_one() {
        let urls = vec![
            "stun:stun.example.org:3478".to_string(),
            "turn:turn.example.org:3478?transport=udp".to_string(),
            "turns:turn.example.org:5349".to_string(),
        ];
        let ice = IceServers::new(&urls, "north", 3600);
        let v = ice.for_user("alice", 1_700_000_000);
        assert_eq!(v[0], json!({"urls": ["stun:stun.example.org:3478"]}));
        assert_eq!(
            v[1]["urls"],
            json!([
                "turn:turn.example.org:3478?transport=udp",
                "turns:turn.example.org:5349"
            ])
        );
        assert_eq!(v[1]["username"], "1700003600:alice");
        // base64(HMAC-SHA1("north", "1700003600:alice")), computed with openssl:
        // printf 1700003600:alice | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(v[1]["credential"], "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
        let stun_only = IceServers::new(&urls[..1], "", 3600);
        assert_eq!(
            stun_only.for_user("bob", 0).as_array().map(Vec::len),
            Some(1)
        );
        assert!(IceServers::default().is_empty());
    }
}
