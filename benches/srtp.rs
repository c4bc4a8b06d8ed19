//! SRTP protect and unprotect of one RTP packet with a 160-octet payload (20 ms of G.711,
//! a typical Opus frame is smaller), ours and libsrtp 2.3's (with OpenSSL) in the same run,
//! per profile. Read the ratio, not the absolute figures.
//!
//! Every packet has a new sequence number (unprotect refuses replays), so packets are made
//! in chunks outside the timed loop and then protected or unprotected in place; the sequence
//! numbers wrap now and then, as in a real stream.
//!
//! `cargo bench --bench srtp -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use srgate::webrtc::srtp::{SrtpContext, SrtpProfile};

#[cfg(target_arch = "x86_64")]
#[path = "../tests/srtp_libsrtp/oracle.rs"]
mod oracle;

const PAYLOAD: usize = 160;
const RTP_LEN: usize = 12 + PAYLOAD;
const CHUNK: usize = 1024;
const SLOT: usize = 512;
const SSRC: u32 = 0x0bad_cafe;

/// Either implementation, seen through the same four calls.
trait Srtp {
    fn protect(&mut self, buf: &mut [u8], len: usize) -> usize;
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> usize;
}

impl Srtp for SrtpContext {
    fn protect(&mut self, buf: &mut [u8], len: usize) -> usize {
        self.protect_rtp(buf, len).expect("protects")
    }
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> usize {
        self.unprotect_rtp(&mut buf[..len]).expect("unprotects")
    }
}

#[cfg(target_arch = "x86_64")]
impl Srtp for oracle::LibSrtp {
    fn protect(&mut self, buf: &mut [u8], len: usize) -> usize {
        oracle::LibSrtp::protect(self, buf, len).expect("protects")
    }
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> usize {
        oracle::LibSrtp::unprotect(self, buf, len).expect("unprotects")
    }
}

/// Packet slots big enough for libsrtp's tail-room demand.
struct Chunk {
    slots: Vec<[u8; SLOT]>,
    lens: Vec<usize>,
}

impl Chunk {
    fn new() -> Self {
        Self {
            slots: vec![[0u8; SLOT]; CHUNK],
            lens: vec![0; CHUNK],
        }
    }

    /// Fills the slots with plaintext RTP packets, continuing the sequence at `seq`.
    fn fill_plain(&mut self, seq: &mut u16) {
        for (slot, len) in self.slots.iter_mut().zip(&mut self.lens) {
            slot[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            slot[2..4].copy_from_slice(&seq.to_be_bytes());
            slot[4..8].copy_from_slice(&(u32::from(*seq) * 160).to_be_bytes());
            slot[8..12].copy_from_slice(&SSRC.to_be_bytes());
            slot[12..RTP_LEN].fill(*seq as u8);
            *len = RTP_LEN;
            *seq = seq.wrapping_add(1);
        }
    }
}

fn time_protect<S: Srtp>(tx: &mut S, iters: u64) -> Duration {
    let mut chunk = Chunk::new();
    let mut seq = 0u16;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        chunk.fill_plain(&mut seq);
        let start = Instant::now();
        for slot in &mut chunk.slots[..n] {
            black_box(tx.protect(slot, RTP_LEN));
        }
        total += start.elapsed();
        left -= n as u64;
    }
    total
}

fn time_unprotect<S: Srtp>(tx: &mut S, rx: &mut S, iters: u64) -> Duration {
    let mut chunk = Chunk::new();
    let mut seq = 0u16;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        chunk.fill_plain(&mut seq);
        for (slot, len) in chunk.slots.iter_mut().zip(&mut chunk.lens) {
            *len = tx.protect(slot, *len);
        }
        let start = Instant::now();
        for (slot, &len) in chunk.slots[..n].iter_mut().zip(&chunk.lens) {
            black_box(rx.unprotect(slot, len));
        }
        total += start.elapsed();
        left -= n as u64;
    }
    total
}

fn profile_name(p: SrtpProfile) -> &'static str {
    match p {
        SrtpProfile::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        SrtpProfile::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        SrtpProfile::AeadAes128Gcm => "AEAD_AES_128_GCM",
        SrtpProfile::AeadAes256Gcm => "AEAD_AES_256_GCM",
        _ => "other",
    }
}

fn srtp(c: &mut Criterion) {
    for profile in [
        SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
    ] {
        let key = vec![0x42u8; profile.master_key_len()];
        let salt = vec![0x17u8; profile.master_salt_len()];
        let ours = || SrtpContext::new(profile, &key, &salt).expect("key lengths");
        #[cfg(target_arch = "x86_64")]
        let lib = |outbound| oracle::LibSrtp::new(profile, &key, &salt, outbound);

        let mut g = c.benchmark_group(format!("srtp_protect/{}", profile_name(profile)));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter("srgate"), |b| {
            b.iter_custom(|iters| time_protect(&mut ours(), iters));
        });
        #[cfg(target_arch = "x86_64")]
        g.bench_function(BenchmarkId::from_parameter("libsrtp"), |b| {
            b.iter_custom(|iters| time_protect(&mut lib(true), iters));
        });
        g.finish();

        let mut g = c.benchmark_group(format!("srtp_unprotect/{}", profile_name(profile)));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter("srgate"), |b| {
            b.iter_custom(|iters| time_unprotect(&mut ours(), &mut ours(), iters));
        });
        #[cfg(target_arch = "x86_64")]
        g.bench_function(BenchmarkId::from_parameter("libsrtp"), |b| {
            b.iter_custom(|iters| time_unprotect(&mut lib(true), &mut lib(false), iters));
        });
        g.finish();
    }
}

criterion_group!(benches, srtp);
criterion_main!(benches);
