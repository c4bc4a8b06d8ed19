//! Login tokens: `v1.<expiry>.<mac>`, where `expiry` is a Unix time in seconds and `mac`
//! is the lowercase hex HMAC-SHA256, keyed with `[auth] secret`, over the bytes
//! `srgate-login-v1\n<user>\n<expiry>`. An app backend mints them with any HMAC library;
//! `srgate token USER [--ttl SECONDS]` prints one. The wall clock comes from the caller.

use hmac::{Hmac, Mac};
use sha2::Sha256;

const LABEL: &str = "srgate-login-v1";

/// Why a token was refused (all answered `AUTH_FAILED`; the reason is for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    Malformed,
    Expired,
    BadMac,
}

fn mac(secret: &[u8], user: &str, expiry: u64) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(LABEL.as_bytes());
    m.update(b"\n");
    m.update(user.as_bytes());
    m.update(b"\n");
    m.update(expiry.to_string().as_bytes());
    m
}

/// A token for `user` valid until the Unix time `expiry`.
pub fn mint(secret: &[u8], user: &str, expiry: u64) -> String {
    let tag = mac(secret, user, expiry).finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("v1.{expiry}.{hex}")
}

/// Checks `token` for `user` at Unix time `now`.
pub fn verify(secret: &[u8], user: &str, token: &str, now: u64) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some("v1"), Some(expiry), Some(hex), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    let mut tag = [0u8; 32];
    for (i, byte) in tag.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| TokenError::Malformed)?;
    }
    // The MAC first (constant time), so a forged token learns nothing from the expiry check.
    mac(secret, user, expiry)
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadMac)?;
    if now >= expiry {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let t = mint(b"s3cret", "1001", 1_000);
        assert!(t.starts_with("v1.1000."));
        assert_eq!(verify(b"s3cret", "1001", &t, 999), Ok(()));
        assert_eq!(
            verify(b"s3cret", "1001", &t, 1_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn matches_the_documented_recipe() {
        // Computed independently with Python's hmac module, as the README shows it.
        assert_eq!(
            mint(b"abcdefghijklmnopqrstuvwxyz012345", "1001", 1_795_467_410),
            "v1.1795467410.f990d8ce67b4e3191e3be48528c5f91e65db3d136fa897e25ef7244fe4ef5ea1"
        );
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let t = mint(b"s3cret", "1001", 1_000);
        assert_eq!(verify(b"other", "1001", &t, 0), Err(TokenError::BadMac));
        assert_eq!(
            verify(b"s3cret", "1002", &t, 0),
            Err(TokenError::BadMac),
            "bound to the user"
        );
        let longer = t.replacen("v1.1000.", "v1.9999.", 1);
        assert_eq!(
            verify(b"s3cret", "1001", &longer, 0),
            Err(TokenError::BadMac),
            "bound to the expiry"
        );
        for bad in [
            "",
            "v1",
            "v1.x.00",
            "v2.1000.ab",
            "v1.1000.zz",
            "v1.1.2.3",
            "v1.1000.ab",
        ] {
            assert_eq!(
                verify(b"s3cret", "1001", bad, 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }
}
