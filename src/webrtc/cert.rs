//! srgate's DTLS certificate: a self-signed ECDSA P-256 certificate made at start-up.
//!
//! WebRTC authenticates DTLS by the certificate's fingerprint in the SDP (RFC 8827 §6.5,
//! RFC 8122), not by a CA chain, so a fresh self-signed certificate per process is what
//! browsers themselves use. The key is a P-256 key from the OS random source; `rcgen`
//! writes the X.509 structure and the `p256` key signs it, all pure Rust (no aws-lc/ring).
//! The same certificate serves every call of the process.

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePrivateKey as _;

use crate::sdp::{Fingerprint, HashAlgorithm};

/// Why a certificate could not be made.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// The OS random source failed.
    Random,
    /// No valid P-256 scalar in the bounded number of draws (practically impossible).
    KeyGeneration,
    /// The private key could not be written as PKCS#8.
    KeyEncoding,
    /// The certificate could not be written or signed.
    Certificate,
}

impl core::fmt::Display for CertError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CertError::Random => "OS random source failed",
            CertError::KeyGeneration => "could not draw a P-256 key",
            CertError::KeyEncoding => "could not encode the key as PKCS#8",
            CertError::Certificate => "could not write the certificate",
        })
    }
}

impl std::error::Error for CertError {}

/// A certificate, its private key and its SHA-256 fingerprint.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    key_pkcs8: Vec<u8>,
    fingerprint: Fingerprint,
}

impl core::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key.
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint.to_string())
            .finish_non_exhaustive()
    }
}

/// The P-256 key in the shape `rcgen` signs with.
struct P256Key {
    key: SigningKey,
    /// Uncompressed SEC1 point: the subjectPublicKey bits of the SPKI.
    public: Vec<u8>,
}

impl rcgen::PublicKeyData for P256Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for P256Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: DerSignature = self
            .key
            .try_sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(sig.as_bytes().to_vec())
    }
}

/// Draws of 32 random bytes before giving up; a draw is out of range with probability
/// about 2^-32.
const KEY_DRAWS: usize = 8;

impl Certificate {
    /// Makes a new key pair and a self-signed certificate (CN=srgate).
    pub fn generate() -> Result<Self, CertError> {
        let key = generate_key()?;
        let key_pkcs8 = key
            .to_pkcs8_der()
            .map_err(|_| CertError::KeyEncoding)?
            .as_bytes()
            .to_vec();
        let public = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let signer = P256Key { key, public };

        let mut serial = [0u8; 16];
        getrandom::getrandom(&mut serial).map_err(|_| CertError::Random)?;
        serial[0] &= 0x7f; // a positive INTEGER (RFC 5280 §4.1.2.2)

        let mut params = rcgen::CertificateParams::default();
        params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, "srgate");
        params.distinguished_name = name;
        let cert = params
            .self_signed(&signer)
            .map_err(|_| CertError::Certificate)?;
        let der = cert.der().to_vec();
        let fingerprint = Fingerprint::of_certificate(HashAlgorithm::Sha256, &der);
        Ok(Certificate {
            der,
            key_pkcs8,
            fingerprint,
        })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The private key, PKCS#8 DER.
    pub fn private_key_pkcs8(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// The SHA-256 fingerprint for `a=fingerprint`.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The certificate in the shape `dimpl` takes.
    pub fn dtls_certificate(&self) -> dimpl::DtlsCertificate {
        dimpl::DtlsCertificate {
            certificate: self.der.clone(),
            private_key: self.key_pkcs8.clone(),
        }
    }
}

fn generate_key() -> Result<SigningKey, CertError> {
    for _ in 0..KEY_DRAWS {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|_| CertError::Random)?;
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
    Err(CertError::KeyGeneration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn generates_distinct_certificates_with_matching_fingerprints() {
        let a = Certificate::generate().unwrap();
        let b = Certificate::generate().unwrap();
        assert_ne!(a.der(), b.der());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(a.fingerprint().matches(a.der()));
        assert!(!a.fingerprint().matches(b.der()));
        let text = a.fingerprint().to_string();
        assert!(text.starts_with("sha-256 "));
        assert_eq!(text.len(), "sha-256 ".len() + 32 * 3 - 1);
        assert!(
            text["sha-256 ".len()..]
                .bytes()
                .all(|c| c == b':' || c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        // A SEQUENCE of SEQUENCEs: an X.509 certificate at least in outline.
        assert_eq!(a.der()[0], 0x30);
        assert!(format!("{a:?}").contains("fingerprint"));
    }

    #[test]
    fn key_is_pkcs8_and_signature_verifies_against_the_certificate_key() {
        use p256::pkcs8::DecodePrivateKey as _;
        let c = Certificate::generate().unwrap();
        let key = SigningKey::from_pkcs8_der(c.private_key_pkcs8()).unwrap();
        let public = key.verifying_key().to_sec1_point(false);
        // The certificate carries this public key.
        let der = c.der();
        let pk = public.as_bytes();
        assert!(der.windows(pk.len()).any(|w| w == pk));
        // And the key signs what the public key verifies (sanity of the pair).
        let sig: p256::ecdsa::Signature = key.sign(b"srgate");
        VerifyingKey::from_sec1_bytes(pk)
            .unwrap()
            .verify(b"srgate", &sig)
            .unwrap();
    }
}
