//! A browser's ICE connectivity check (a STUN Binding request with MESSAGE-INTEGRITY and
//! FINGERPRINT, the way Chrome sends them), for the tests and benchmarks that play the
//! browser without one. Included with `#[path]` at the root of each user.

use is::Sha1HmacProvider as _;
use is::stun::{StunMessage, TransId};

/// A Binding request for `username` (`theirufrag:ourufrag` as srgate reads it), signed with
/// `password` (srgate's ice-pwd), nominating the pair when `use_candidate`.
pub fn binding_request(username: &str, password: &str, use_candidate: bool) -> Vec<u8> {
    let msg = StunMessage::binding_request(
        username,
        TransId::new(),
        true,
        0x0123_4567_89ab_cdef,
        1_845_501_695,
        use_candidate,
    );
    let mut buf = vec![0u8; 512];
    let n = msg
        .to_bytes(Some(password.as_bytes()), &mut buf, |k, p| {
            is::DefaultSha1HmacProvider.sha1_hmac(k, p)
        })
        .expect("STUN request fits");
    buf.truncate(n);
    buf
}
