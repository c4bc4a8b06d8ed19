//! The cryptographic transforms, on RustCrypto primitives:
//!
//! - RFC 3711 §4.3.1/§4.3.3: the AES-CM key derivation (PRF with key derivation rate 0, as
//!   DTLS-SRTP uses); RFC 6188 §3 / RFC 7714 §11 run it with AES-256 for 256-bit master keys.
//! - RFC 3711 §4.1.1: AES in counter mode with the SRTP IV layout.
//! - RFC 3711 §4.2.1: HMAC-SHA1 (RFC 2104), with the inner and outer pads hashed once per key.
//! - RFC 7714 §8.1/§9.1: the AES-GCM IVs, and AES-GCM itself.
//!
//! Nothing here allocates: keys live in the session structs, packets are transformed in place.

use aes::{Aes128Enc, Aes256Enc};
use aes_gcm::aead::consts::U12;
use aes_gcm::{AeadInOut, AesGcm, KeyInit};
use ctr::cipher::{BlockCipherEncrypt, InnerIvInit, StreamCipherCore};
use sha1::{Digest, Sha1};

/// AES-128-GCM over an encrypt-only key schedule (GCM never decrypts a block).
type Aes128Gcm = AesGcm<Aes128Enc, U12>;
/// AES-256-GCM over an encrypt-only key schedule.
type Aes256Gcm = AesGcm<Aes256Enc, U12>;

/// Length of an AES-GCM tag in SRTP (RFC 7714 §13.2 allows only the full 16 octets).
pub(super) const GCM_TAG: usize = 16;
/// Length of an HMAC-SHA1 output.
pub(super) const SHA1_LEN: usize = 20;

/// Key derivation labels (RFC 3711 §4.3.1 and §4.3.2).
#[derive(Debug, Clone, Copy)]
pub(super) enum Label {
    RtpEncryption = 0,
    RtpAuthentication = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuthentication = 4,
    RtcpSalt = 5,
}

/// The PRF of RFC 3711 §4.3.3 with key derivation rate 0: AES-CM under the master key,
/// IV = (master salt XOR label << 48) · 2^16. `master_salt` is at most 14 octets; a 12-octet
/// AEAD salt is padded with zeros on the right (RFC 7714 §11), as libsrtp does.
///
/// Fails only if `master_key` is neither 16 nor 32 octets long.
pub(super) fn derive(
    master_key: &[u8],
    master_salt: &[u8],
    label: Label,
    out: &mut [u8],
) -> Result<(), ()> {
    let mut iv = [0u8; 16];
    iv.get_mut(..master_salt.len())
        .filter(|_| master_salt.len() <= 14)
        .ok_or(())?
        .copy_from_slice(master_salt);
    // The 7-octet key id (label || 48-bit index DIV kdr = 0) is aligned with the salt's end.
    iv[7] ^= label as u8;
    out.fill(0);
    match master_key.len() {
        16 => keystream(
            &Aes128Enc::new_from_slice(master_key).map_err(|_| ())?,
            &iv,
            out,
        ),
        32 => keystream(
            &Aes256Enc::new_from_slice(master_key).map_err(|_| ())?,
            &iv,
            out,
        ),
        _ => return Err(()),
    }
    Ok(())
}

/// XORs `data` with the AES counter-mode keystream starting at counter block `iv`.
fn keystream<C: BlockCipherEncrypt<BlockSize = aes::cipher::consts::U16>>(
    cipher: &C,
    iv: &[u8; 16],
    data: &mut [u8],
) {
    ctr::CtrCore::<&C, ctr::flavors::Ctr128BE>::inner_iv_init(cipher, iv.into())
        .try_apply_keystream_partial(data.into())
        .expect("a counter block whose low 16 bits are 0 has 2^16 blocks left, more than a packet");
}

/// HMAC-SHA1 (RFC 2104) with the key's inner and outer pad blocks already absorbed. Used
/// for SRTP's authentication tags and for TURN credentials (`signal::ice`).
#[derive(Clone)]
pub(crate) struct HmacSha1 {
    inner: Sha1,
    outer: Sha1,
}

impl HmacSha1 {
    /// `key`: an SRTP session authentication key (20 octets), or any other; one longer
    /// than a SHA-1 block is hashed first (RFC 2104 §2).
    pub(crate) fn new(key: &[u8]) -> Self {
        let hashed: [u8; SHA1_LEN];
        let key = if key.len() > 64 {
            hashed = Sha1::digest(key).into();
            &hashed[..]
        } else {
            key
        };
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = Sha1::new();
        inner.update(ipad);
        let mut outer = Sha1::new();
        outer.update(opad);
        Self { inner, outer }
    }

    /// The MAC of `data || trailer`.
    pub(crate) fn mac(&self, data: &[u8], trailer: &[u8]) -> [u8; SHA1_LEN] {
        let mut inner = self.inner.clone();
        inner.update(data);
        inner.update(trailer);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// AES-CM + HMAC-SHA1 session keys for one of SRTP or SRTCP (RFC 3711 §4.1.1, §4.2.1).
#[derive(Clone)]
pub(super) struct CmKeys {
    aes: Aes128Enc,
    salt: [u8; 14],
    auth: HmacSha1,
}

impl CmKeys {
    pub(super) fn new(key: &[u8; 16], salt: &[u8; 14], auth_key: &[u8; 20]) -> Self {
        Self {
            aes: Aes128Enc::new(key.into()),
            salt: *salt,
            auth: HmacSha1::new(auth_key),
        }
    }

    /// Encrypts or decrypts `data` for `ssrc` at the 48-bit `index` (SRTP index or SRTCP index).
    pub(super) fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= s;
        }
        keystream(&self.aes, &iv, data);
    }

    /// The full HMAC-SHA1 over `data || trailer`; callers truncate it.
    pub(super) fn mac(&self, data: &[u8], trailer: &[u8]) -> [u8; SHA1_LEN] {
        self.auth.mac(data, trailer)
    }
}

/// An AES-GCM instance of either key size.
#[derive(Clone)]
enum Gcm {
    Aes128(Aes128Gcm),
    Aes256(Aes256Gcm),
}

/// AEAD session keys for one of SRTP or SRTCP (RFC 7714).
#[derive(Clone)]
pub(super) struct GcmKeys {
    gcm: Gcm,
    salt: [u8; 12],
}

/// The AEAD refused the packet: a wrong tag (or, on sealing, an absurd length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unauthentic;

impl GcmKeys {
    /// `key` is 16 or 32 octets; anything else is refused.
    pub(super) fn new(key: &[u8], salt: &[u8; 12]) -> Option<Self> {
        let gcm = match key.len() {
            16 => Gcm::Aes128(Aes128Gcm::new_from_slice(key).ok()?),
            32 => Gcm::Aes256(Aes256Gcm::new_from_slice(key).ok()?),
            _ => return None,
        };
        Some(Self { gcm, salt: *salt })
    }

    /// RFC 7714 §8.1: `(00 00 || SSRC || ROC || SEQ) XOR salt`.
    pub(super) fn rtp_iv(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
        let mut iv = self.salt;
        xor_into(&mut iv[2..6], &ssrc.to_be_bytes());
        xor_into(&mut iv[6..10], &roc.to_be_bytes());
        xor_into(&mut iv[10..12], &seq.to_be_bytes());
        iv
    }

    /// RFC 7714 §9.1: `(00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt`.
    pub(super) fn rtcp_iv(&self, ssrc: u32, index: u32) -> [u8; 12] {
        let mut iv = self.salt;
        xor_into(&mut iv[2..6], &ssrc.to_be_bytes());
        xor_into(&mut iv[8..12], &(index & 0x7fff_ffff).to_be_bytes());
        iv
    }

    /// Encrypts `data` in place and returns the tag over `aad || ciphertext`.
    pub(super) fn seal(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; GCM_TAG] {
        let tag = match &self.gcm {
            Gcm::Aes128(g) => g.encrypt_inout_detached(iv.into(), aad, data.into()),
            Gcm::Aes256(g) => g.encrypt_inout_detached(iv.into(), aad, data.into()),
        };
        tag.expect("AES-GCM refuses only inputs over 2^36 octets, and packets are far shorter")
            .into()
    }

    /// Checks `tag` over `aad || data` and, if it holds, decrypts `data` in place.
    pub(super) fn open(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; GCM_TAG],
    ) -> Result<(), Unauthentic> {
        let r = match &self.gcm {
            Gcm::Aes128(g) => g.decrypt_inout_detached(iv.into(), aad, data.into(), tag.into()),
            Gcm::Aes256(g) => g.decrypt_inout_detached(iv.into(), aad, data.into(), tag.into()),
        };
        r.map_err(|_| Unauthentic)
    }
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in super::super) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
        digits
            .chunks(2)
            .map(|p| {
                u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex digit")
            })
            .collect()
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream for session key 2B7E…, salt F0F1…FD,
    /// SSRC 0 and index 0, blocks 0-2 and 0xFEFF-0xFF01.
    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C")
            .try_into()
            .expect("16");
        let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().expect("14");
        let keys = CmKeys::new(&key, &salt, &[0; 20]);
        let mut stream = vec![0u8; 0xff02 * 16];
        keys.apply_keystream(0, 0, &mut stream);
        let block = |n: usize| stream[n * 16..n * 16 + 16].to_vec();
        assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// RFC 3711 Appendix B.3: session keys from master key E1F9…, master salt 0EC6….
    #[test]
    fn rfc3711_b3_key_derivation() {
        let mk = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let ms = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&mk, &ms, Label::RtpEncryption, &mut enc).expect("16-octet key");
        assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive(&mk, &ms, Label::RtpSalt, &mut salt).expect("16-octet key");
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        // The appendix lists 94 octets of the authentication keystream; SRTP uses 20.
        let mut auth = [0u8; 94];
        derive(&mk, &ms, Label::RtpAuthentication, &mut auth).expect("16-octet key");
        assert_eq!(
            auth.to_vec(),
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE\
                 E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25\
                 6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )
        );
        assert_eq!(derive(&mk[..15], &ms, Label::RtpSalt, &mut salt), Err(()));
        assert_eq!(derive(&mk, &[0; 15], Label::RtpSalt, &mut salt), Err(()));
    }

    /// RFC 2202 §3 test cases 1, 2, 3 and 6 (a key longer than a block: TURN secrets
    /// may be).
    #[test]
    fn rfc2202_hmac_sha1() {
        let mac = HmacSha1::new(&[0x0b; 20]).mac(b"Hi ", b"There");
        assert_eq!(
            mac.to_vec(),
            hex("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        let mac = HmacSha1::new(b"Jefe").mac(b"what do ya want for nothing?", b"");
        assert_eq!(
            mac.to_vec(),
            hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
        let mac = HmacSha1::new(&[0xaa; 20]).mac(&[0xdd; 50], b"");
        assert_eq!(
            mac.to_vec(),
            hex("125d7342b9ac11cd91a39af48aa17b4f63f175d3")
        );
        let mac = HmacSha1::new(&[0xaa; 80]).mac(
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            b"",
        );
        assert_eq!(
            mac.to_vec(),
            hex("aa4ae5e15272d00e95705637ce8a3b55ed402112")
        );
    }

    #[test]
    fn gcm_ivs_follow_rfc7714_sections_16_and_17() {
        let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().expect("12");
        let keys = GcmKeys::new(&[0; 16], &salt).expect("16-octet key");
        assert_eq!(
            keys.rtp_iv(0x5501_a0b2, 0, 0xf17b).to_vec(),
            hex("51753c6580c2726f20718414")
        );
        assert_eq!(
            keys.rtcp_iv(0x4d61_7273, 0x8000_05d4).to_vec(),
            hex("517524055203726f207170bb")
        );
        assert!(GcmKeys::new(&[0; 24], &salt).is_none());
    }
}
