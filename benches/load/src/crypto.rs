//! The DTLS crypto floor: what one handshake costs the gateway in public-key operations
//! alone, with the P-256 crates srgate's DTLS stack uses — an ECDSA signature (its
//! ServerKeyExchange), a verification (the peer's CertificateVerify) and an ECDH exchange
//! (a key pair and the shared secret). Handshakes a second on one core that nothing can
//! beat: srgate's setups per CPU-second are compared with it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use p256::PublicKey;
use p256::ecdh::EphemeralSecret;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use sha2::{Digest, Sha256};

/// Handshakes' worth of crypto a second on this thread, measured for `time`.
pub fn handshakes_per_s(time: Duration) -> Result<f64, String> {
    let key = SigningKey::generate();
    let verifying = VerifyingKey::from(&key);
    let peer = PublicKey::from(&EphemeralSecret::generate());
    let start = Instant::now();
    let mut n = 0u64;
    // bounded by `time`
    while start.elapsed() < time {
        let hash = Sha256::digest(n.to_be_bytes());
        let sig: Signature = key.sign_prehash(&hash).map_err(|e| format!("sign: {e}"))?;
        verifying
            .verify_prehash(&hash, &sig)
            .map_err(|e| format!("verify: {e}"))?;
        let mine = EphemeralSecret::generate();
        black_box(PublicKey::from(&mine).to_sec1_bytes());
        black_box(mine.diffie_hellman(&peer));
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_floor_is_measured() {
        let per_s = super::handshakes_per_s(std::time::Duration::from_millis(50)).unwrap();
        assert!(per_s > 0.0);
    }
}
