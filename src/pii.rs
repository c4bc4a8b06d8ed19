//! Keeping personal data and secrets out of logs.
//!
//! - [`Pii`] wraps a phone number, SIP URI, user name or address that goes into a log line.
//!   It prints the value only when `[log] level = 0` (SENSITIVE) is on, otherwise a short
//!   redaction: the first and last character around `***` (`1005` → `1***5`), or just `***`
//!   for values under four characters.
//! - [`sip_dump`] is a SIP message as text for a level-0 dump, digest responses and SDES
//!   keys masked.
//! - [`Secret`] holds a password or key (`[proxy] sip_pwd`, `[users]` passwords,
//!   `[auth] secret`). Its `Debug` and `Display` never print it, at any level; the only way
//!   to the text is [`Secret::expose`], which digest and token code call.

use std::fmt::{self, Write as _};

/// A value that is personal data in a log line; see the module docs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pii<T>(pub T);

/// Records what a redaction needs (first and last character, length) without allocating.
#[derive(Default)]
struct Outline {
    first: Option<char>,
    last: Option<char>,
    chars: usize,
}

impl fmt::Write for Outline {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.first.is_none() {
                self.first = Some(c);
            }
            self.last = Some(c);
            self.chars += 1;
        }
        Ok(())
    }
}

/// Values shorter than this print as `***` alone.
const SHORTEST_OUTLINED: usize = 4;

fn write_redacted(f: &mut fmt::Formatter<'_>, value: fmt::Arguments<'_>) -> fmt::Result {
    let mut outline = Outline::default();
    outline.write_fmt(value)?;
    match (outline.first, outline.last) {
        (Some(first), Some(last)) if outline.chars >= SHORTEST_OUTLINED => {
            write!(f, "{first}***{last}")
        }
        _ => f.write_str("***"),
    }
}

impl<T: fmt::Display> Pii<T> {
    fn write_display(&self, f: &mut fmt::Formatter<'_>, reveal: bool) -> fmt::Result {
        if reveal {
            fmt::Display::fmt(&self.0, f)
        } else {
            write_redacted(f, format_args!("{}", self.0))
        }
    }
}

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_display(f, crate::logging::sensitive_enabled())
    }
}

impl<T: fmt::Debug> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if crate::logging::sensitive_enabled() {
            fmt::Debug::fmt(&self.0, f)
        } else {
            write_redacted(f, format_args!("{:?}", self.0))
        }
    }
}

/// A password or key. Never printed: `Debug` shows `Secret(***)`, `Display` shows `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for digest and HMAC computations. Never format it into a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret(secret.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A SIP message as text for a level-0 dump, with the digest `response` of its
/// `Authorization` and `Proxy-Authorization` headers masked: a captured response can be
/// attacked offline for the password (and, within its nonce, replayed), so it never
/// reaches a log, at any level. The SRTP keys of SDP `a=crypto` lines (`inline:<key>`,
/// RFC 4568) are masked too: with them a recording of the call's media is plain audio.
/// Everything else is kept for debugging.
pub fn sip_dump(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let name = line.split(':').next().unwrap_or("").trim();
        let credentials = name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization");
        if credentials {
            mask_response(line, &mut out);
        } else if line.trim_start().starts_with("a=crypto:") {
            mask_inline_keys(line, &mut out);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Copies an `a=crypto` line into `out` with every `inline:` key (up to its `|` lifetime,
/// `;` next key or blank) replaced.
fn mask_inline_keys(line: &str, out: &mut String) {
    let lower = line.to_ascii_lowercase();
    let mut copied = 0;
    while let Some(at) = lower[copied..].find("inline:") {
        let key_start = copied + at + "inline:".len();
        let key_end = line[key_start..]
            .find(['|', ';', ' ', '\t', '\r', '\n'])
            .map_or(line.len(), |e| key_start + e);
        out.push_str(&line[copied..key_start]);
        out.push_str("***");
        copied = key_end;
    }
    out.push_str(&line[copied..]);
}

/// Copies `line` into `out` with the value of every `response=` parameter replaced.
fn mask_response(line: &str, out: &mut String) {
    let lower = line.to_ascii_lowercase();
    let mut copied = 0;
    let mut from = 0;
    while let Some(at) = lower[from..].find("response") {
        let start = from + at;
        from = start + "response".len();
        // a parameter name: preceded by a separator, followed by `=` (spaces allowed)
        let before = line[..start].chars().next_back();
        if !matches!(before, Some(' ' | '\t' | ',')) {
            continue;
        }
        let rest = &line[from..];
        let Some(eq) = rest.find(|c: char| c != ' ' && c != '\t') else {
            break;
        };
        if !rest[eq..].starts_with('=') {
            continue;
        }
        let value_start = from + eq + 1;
        let value_end = line[value_start..]
            .find([',', '\r', '\n'])
            .map_or(line.len(), |e| value_start + e);
        out.push_str(&line[copied..value_start]);
        out.push_str("\"***\"");
        copied = value_end;
        from = value_end;
    }
    out.push_str(&line[copied..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_dumps_mask_the_digest_response_only() {
        let msg = "REGISTER sip:example.com SIP/2.0\r\n\
                   Authorization: Digest username=\"1001\", realm=\"example.com\", \
                   nonce=\"abc\", uri=\"sip:example.com\", response=\"0123456789abcdef\", \
                   algorithm=MD5, cnonce=\"c\", qop=auth, nc=00000001\r\n\
                   proxy-authorization: Digest username=\"1001\",response = 77aa,nonce=\"n\"\r\n\
                   Subject: the response=\"kept\" elsewhere\r\n\r\n";
        let dump = sip_dump(msg.as_bytes());
        assert!(!dump.contains("0123456789abcdef"), "{dump}");
        assert!(!dump.contains("77aa"), "{dump}");
        assert!(dump.contains("response=\"***\", algorithm=MD5"), "{dump}");
        assert!(dump.contains("response =\"***\",nonce=\"n\""), "{dump}");
        assert!(dump.contains("username=\"1001\""), "{dump}");
        assert!(
            dump.contains("Subject: the response=\"kept\" elsewhere"),
            "{dump}"
        );
        assert_eq!(dump.lines().count(), msg.lines().count());
    }

    #[test]
    fn sip_dumps_mask_sdes_keys() {
        let msg = "INVITE sip:1001@example.com SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n\
                   v=0\r\nm=audio 4000 RTP/SAVP 0\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20\r\n\
                   a=crypto:2 AEAD_AES_128_GCM INLINE:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n\
                   a=sendrecv\r\n";
        let dump = sip_dump(msg.as_bytes());
        assert!(!dump.contains("WVNfX19zZW1jdGwg"), "{dump}");
        assert!(!dump.contains("c2VjcmV0"), "{dump}");
        assert!(
            dump.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:***|2^20\r\n"),
            "{dump}"
        );
        assert!(
            dump.contains("a=crypto:2 AEAD_AES_128_GCM INLINE:***\n"),
            "{dump}"
        );
        assert_eq!(dump.lines().count(), msg.lines().count());
    }

    struct Shown<'a, T>(&'a Pii<T>, bool);
    impl<T: fmt::Display> fmt::Display for Shown<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.write_display(f, self.1)
        }
    }

    #[test]
    fn pii_is_outlined_unless_revealed() {
        let number = Pii("1005");
        assert_eq!(Shown(&number, false).to_string(), "1***5");
        assert_eq!(Shown(&number, true).to_string(), "1005");
        let uri = Pii("sip:1006@10.0.0.1");
        assert_eq!(Shown(&uri, false).to_string(), "s***1");
        assert_eq!(Shown(&Pii(123), false).to_string(), "***");
        assert_eq!(Shown(&Pii(""), false).to_string(), "***");
        assert_eq!(Shown(&Pii("天津市区"), false).to_string(), "天***区");
    }

    #[test]
    fn pii_defaults_to_redacted() {
        // No logger is started in unit tests, so level 0 is off.
        assert!(!crate::logging::sensitive_enabled());
        assert_eq!(format!("{}", Pii("1234567")), "1***7");
        assert_eq!(format!("{:?}", Pii("1234567")), "\"***\"");
    }

    #[test]
    fn secret_never_prints() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(***))");
        assert_eq!(secret.expose(), "hunter2");
        assert!(!secret.is_empty());
        assert!(Secret::default().is_empty());
    }
}
