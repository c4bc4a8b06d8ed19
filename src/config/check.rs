//! Checks across keys, once every value is read: contradictions between keys (TLS
//! listeners without a certificate, an empty SIP account, shards past port 65535, two
//! listeners on one port, open login on an exposed listener) are errors; settings that
//! work but deserve a look are warnings.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use super::read::Reader;
use super::{Codec, Config, ConfigError, ErrorKind, MemberKind};

/// Below this an `[auth] secret` is easy to guess.
const SECRET_MIN_LEN: usize = 16;

/// Where a listener binds, for spotting two listeners on one port.
struct Listener {
    udp: bool,
    section: &'static str,
    key: &'static str,
    ip: IpAddr,
    ports: RangeInclusive<u16>,
}

impl Config {
    /// Checks across keys; adds warnings for settings that work but deserve a look.
    pub(super) fn check(&self, r: &mut Reader<'_, '_>) -> Result<(), ConfigError> {
        let conflict = |r: &Reader<'_, '_>, section: &str, key: &str, message: String| {
            r.error(
                section,
                Some(key),
                r.line(section, key),
                ErrorKind::Conflict,
                message,
            )
        };
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return Err(conflict(r, "tls", "cert", "needs [tls] key as well".into()));
            }
            (None, Some(_)) => {
                return Err(conflict(r, "tls", "key", "needs [tls] cert as well".into()));
            }
            _ => {}
        }
        let turn = self
            .webrtc
            .ice_servers
            .iter()
            .any(|u| u.to_ascii_lowercase().starts_with("turn"));
        if turn && self.webrtc.turn_secret.is_empty() {
            return Err(conflict(
                r,
                "webrtc",
                "ice_servers",
                "turn: URLs need [webrtc] turn_secret (coturn's static-auth-secret): srgate hands out only time-limited TURN credentials".into(),
            ));
        }
        let have_tls = self.tls.cert.is_some();
        for (section, listen) in [
            ("sip", self.sip.tls_listen),
            ("webrtc", self.webrtc.tls_listen),
        ] {
            if listen.is_some() && !have_tls {
                return Err(conflict(
                    r,
                    section,
                    "tls_listen",
                    "needs [tls] cert and key".into(),
                ));
            }
        }
        if self
            .global
            .sip_svr
            .as_ref()
            .is_some_and(|s| s.transport == super::Transport::Tls)
            && self.sip.tls_listen.is_none()
            && self.proxy.on
        {
            let line = r.line("global", "sip_svr");
            r.warn(
                "global",
                Some("sip_svr"),
                line,
                "over TLS without [sip] tls_listen: the PBX reaches srgate only over srgate's own connection (the Contact names a port without TLS); set [sip] tls_listen",
            );
        }
        if have_tls && self.sip.tls_listen.is_none() && self.webrtc.tls_listen.is_none() {
            let line = r.line("tls", "cert");
            r.warn(
                "tls",
                Some("cert"),
                line,
                "unused: no [sip] or [webrtc] tls_listen is set",
            );
        }
        if self.proxy.on && !self.standalone() && self.proxy.sip_account.is_empty() {
            return Err(conflict(
                r,
                "proxy",
                "sip_account",
                "empty, but [proxy] on = 1 with a sip_svr needs the account to register".into(),
            ));
        }
        let udp_ports = self.webrtc_udp_ports();
        if self.webrtc.udp.port() != 0
            && u32::from(self.webrtc.udp.port()) + self.global.shards as u32 - 1 > 65535
        {
            return Err(conflict(
                r,
                "webrtc",
                "udp",
                format!(
                    "port {} + {} shards runs past port 65535",
                    self.webrtc.udp.port(),
                    self.global.shards
                ),
            ));
        }
        self.check_listeners(r, udp_ports)?;

        if let Some(listen) = self.api.listen
            && !listen.ip().is_loopback()
            && self.api.token.is_empty()
        {
            return Err(conflict(
                r,
                "api",
                "listen",
                format!(
                    "{listen} is not loopback and [api] token is empty: anyone who reaches it \
                     could start calls through the REST API. Set [api] token to 24 or more \
                     random characters, or listen on 127.0.0.1"
                ),
            ));
        }
        if !self.api.token.is_empty() && self.api.token.expose().len() < SECRET_MIN_LEN {
            let line = r.line("api", "token");
            let message = format!("shorter than {SECRET_MIN_LEN} characters: easy to guess");
            r.warn("api", Some("token"), line, &message);
        }
        if self.auth.secret.is_empty() {
            let exposed: Vec<String> = self
                .exposed_web_listeners()
                .iter()
                .map(|a| a.to_string())
                .collect();
            let line = r.line("auth", "secret");
            if !exposed.is_empty() && !self.auth.open {
                let (section, key) = if line.is_some() {
                    ("auth", "secret")
                } else {
                    ("webrtc", "listen")
                };
                return Err(conflict(
                    r,
                    section,
                    key,
                    format!(
                        "[auth] secret is empty, so anyone who reaches the web listener {} may \
                         log in as any user and place calls. Set [auth] secret to 16 or more \
                         random characters (`srgate token USER` then mints logins), or listen \
                         on 127.0.0.1 only, or accept open login with [auth] open = 1",
                        exposed.join(", ")
                    ),
                ));
            }
            let message = if exposed.is_empty() {
                "empty: anyone on this machine may log in as any user (demo only)"
            } else {
                "empty and [auth] open = 1: anyone who reaches the web listener may log in as \
                 any user"
            };
            r.warn("auth", Some("secret"), line, message);
        } else if self.auth.secret.expose().len() < SECRET_MIN_LEN {
            let line = r.line("auth", "secret");
            let message = format!("shorter than {SECRET_MIN_LEN} characters: easy to guess");
            r.warn("auth", Some("secret"), line, &message);
        }
        if self.auth.open && !self.auth.secret.is_empty() {
            let line = r.line("auth", "open");
            r.warn("auth", Some("open"), line, "ignored: [auth] secret is set");
        }
        let users_line = r.doc.section("users").map(|s| s.line);
        if self.standalone() && self.users.is_empty() {
            r.warn(
                "users",
                None,
                users_line,
                "no users: standalone mode's registrar refuses every REGISTER",
            );
        }
        if !self.standalone() && !self.users.is_empty() {
            r.warn(
                "users",
                None,
                users_line,
                "ignored: with sip_svr set srgate is not a registrar",
            );
        }
        if !self
            .media
            .codecs
            .iter()
            .any(|c| matches!(c, Codec::Pcmu | Codec::Pcma))
        {
            let line = r.line("media", "codecs");
            r.warn(
                "media",
                Some("codecs"),
                line,
                "no G.711 (pcmu, pcma): a PBX or phone that offers only G.711, as most do, \
                 is refused with 488",
            );
        }
        for g in self.groups.iter() {
            let line = r.line("groups", &g.key);
            let sip_members = g.members.iter().filter(|m| m.kind == MemberKind::Sip);
            if !self.standalone() {
                if sip_members.count() > 0 {
                    r.warn(
                        "groups",
                        Some(&g.key),
                        line,
                        "its sip: members are not rung: with sip_svr set srgate is not a \
                         registrar (the PBX calls its phones); only its app: members ring",
                    );
                }
            } else if let Some(m) = sip_members
                .filter(|m| !m.written().contains("{n}"))
                .find(|m| !self.users.iter().any(|(name, _)| name == m.written()))
            {
                r.warn(
                    "groups",
                    Some(&g.key),
                    line,
                    &format!(
                        "sip:{} is not a [users] name: it cannot register, so it never rings",
                        m.written()
                    ),
                );
            }
            if self.users.iter().any(|(name, _)| *name == g.key) {
                r.warn(
                    "groups",
                    Some(&g.key),
                    line,
                    "also a [users] name: a call to it rings the group",
                );
            }
        }
        if self.rtm2sip.on && !self.rtm2sip.allow_any && self.rtm2sip.acc_rule.is_empty() {
            let line = r.line("rtm2sip", "acc_rule");
            r.warn(
                "rtm2sip",
                Some("acc_rule"),
                line,
                "empty: app users may call no SIP number",
            );
        }
        Ok(())
    }

    /// Two listeners of one protocol on one port (and overlapping addresses) is an error.
    fn check_listeners(
        &self,
        r: &Reader<'_, '_>,
        webrtc_udp: RangeInclusive<u16>,
    ) -> Result<(), ConfigError> {
        let single = |addr: SocketAddr| addr.port()..=addr.port();
        let mut listeners = vec![
            Listener {
                udp: true,
                section: "sip",
                key: "listen",
                ip: self.sip.listen.ip(),
                ports: single(self.sip.listen),
            },
            Listener {
                udp: false,
                section: "sip",
                key: "listen",
                ip: self.sip.listen.ip(),
                ports: single(self.sip.listen),
            },
            Listener {
                udp: true,
                section: "webrtc",
                key: "udp",
                ip: self.webrtc.udp.ip(),
                ports: webrtc_udp.clone(),
            },
            Listener {
                udp: false,
                section: "webrtc",
                key: "listen",
                ip: self.webrtc.listen.ip(),
                ports: single(self.webrtc.listen),
            },
        ];
        if self.webrtc.ice_tcp {
            // ICE-TCP listens on TCP on each shard's media address (before the listeners
            // named in the file, so a clash is reported at theirs)
            listeners.insert(
                3,
                Listener {
                    udp: false,
                    section: "webrtc",
                    key: "ice_tcp",
                    ip: self.webrtc.udp.ip(),
                    ports: webrtc_udp,
                },
            );
        }
        for (section, key, addr) in [
            ("sip", "tls_listen", self.sip.tls_listen),
            ("webrtc", "tls_listen", self.webrtc.tls_listen),
            ("api", "listen", self.api.listen),
        ] {
            if let Some(addr) = addr {
                listeners.push(Listener {
                    udp: false,
                    section,
                    key,
                    ip: addr.ip(),
                    ports: single(addr),
                });
            }
        }
        for (i, later) in listeners.iter().enumerate() {
            for earlier in &listeners[..i] {
                let same_ip = earlier.ip == later.ip
                    || earlier.ip.is_unspecified()
                    || later.ip.is_unspecified();
                let overlap = earlier.ports.start() <= later.ports.end()
                    && later.ports.start() <= earlier.ports.end()
                    && *later.ports.start() != 0
                    && *earlier.ports.start() != 0;
                if earlier.udp == later.udp && same_ip && overlap {
                    let proto = if later.udp { "UDP" } else { "TCP" };
                    return Err(r.error(
                        later.section,
                        Some(later.key),
                        r.line(later.section, later.key),
                        ErrorKind::Conflict,
                        format!(
                            "{proto} port {} is also used by [{}] {}",
                            later.ports.start().max(earlier.ports.start()),
                            earlier.section,
                            earlier.key
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
