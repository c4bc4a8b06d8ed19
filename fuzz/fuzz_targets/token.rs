//! Fuzzes login token checking (`signal::token::verify`). The input is a user name and a
//! token (split at the first newline); a few bytes also pick an expiry and an edit.
//! Invariants: no input is accepted that srgate did not mint (the fuzzer cannot forge an
//! HMAC, so an accepted fuzzed token is a bypass); a minted token verifies for its user
//! until its expiry and not at it; a minted token changed in one place is refused unless
//! the change is only the case of a hex digit; another user's token is refused.
//!
//! Run: `cargo +nightly fuzz run token fuzz/seeds/token`
#![no_main]

use libfuzzer_sys::fuzz_target;
use srgate::signal::token::{TokenError, mint, verify};

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (user, token) = text.split_once('\n').unwrap_or((text, ""));
    for now in [0, 1_800_000_000, u64::MAX] {
        assert!(
            verify(SECRET, user, token, now).is_err(),
            "a token srgate did not mint was accepted: {token:?}"
        );
    }

    let mut expiry_bytes = [0u8; 8];
    for (e, b) in expiry_bytes.iter_mut().zip(data) {
        *e = *b;
    }
    let expiry = u64::from_le_bytes(expiry_bytes).max(1);
    let minted = mint(SECRET, user, expiry);
    assert_eq!(verify(SECRET, user, &minted, expiry - 1), Ok(()));
    assert_eq!(
        verify(SECRET, user, &minted, expiry),
        Err(TokenError::Expired)
    );
    assert!(verify(b"other-secret", user, &minted, 0).is_err());
    let other = format!("{user}x");
    assert!(verify(SECRET, &other, &minted, 0).is_err());

    // one edit: the byte at a position picked by the input replaced by another input byte
    if let (Some(&at), Some(&with)) = (data.get(8), data.get(9)) {
        let mut edited = minted.clone().into_bytes();
        let at = usize::from(at) % edited.len();
        edited[at] = with;
        if let Ok(edited) = String::from_utf8(edited)
            && edited != minted
            && verify(SECRET, user, &edited, 0).is_ok()
        {
            assert!(
                edited.eq_ignore_ascii_case(&minted) && at > minted.rfind('.').unwrap(),
                "an edited token was accepted: {edited:?} (minted {minted:?})"
            );
        }
    }
});
