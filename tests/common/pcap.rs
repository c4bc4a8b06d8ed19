//! RTP captures written at test time for SIPp's `play_pcap_audio`, which sends each
//! captured packet's UDP payload at its capture time, to the media address the other
//! side's SDP gave.

use std::path::Path;

use srgate::media::codec::{Law, g711};

/// Writes a capture (classic pcap, Ethernet, IPv4, UDP 127.0.0.1:6000 → :6002) of an RTP
/// stream of G.711 (`law`: payload type 0 or 8) carrying a `hz` tone, `ptime_ms` per
/// packet, for `seconds`.
pub fn write_g711_tone(path: &Path, law: Law, hz: f64, ptime_ms: u32, seconds: f64) {
    write_g711_stream(path, law, hz, ptime_ms, seconds, Impairment::default());
}

/// What the network does to a captured stream (deterministic: the same file each run).
#[derive(Clone, Copy, Debug, Default)]
pub struct Impairment {
    /// Every packet is sent up to this much late (uniform); packets overtake each other
    /// when it exceeds the packet time.
    pub jitter_ms: u32,
    /// This percentage of packets never sent.
    pub loss_percent: u32,
}

/// [`write_g711_tone`] through `impair`: the packets keep their RTP numbers and
/// timestamps, their capture times (when SIPp sends them) are delayed and some are left
/// out. Returns (packets written, packets that overtook an earlier one).
pub fn write_g711_stream(
    path: &Path,
    law: Law,
    hz: f64,
    ptime_ms: u32,
    seconds: f64,
    impair: Impairment,
) -> (usize, usize) {
    let payload_type = match law {
        Law::Mu => 0,
        Law::A => 8,
    };
    let samples = 8 * ptime_ms as usize;
    let packets = (seconds * 1000.0 / f64::from(ptime_ms)) as usize;
    let mut file = Vec::with_capacity(24 + packets * (16 + 42 + 12 + samples));
    // Global header: magic, version 2.4, zone 0, accuracy 0, snap length, Ethernet.
    file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65_535, 1] {
        file.extend_from_slice(&word.to_le_bytes());
    }
    let mut pcm = vec![0i16; samples];
    let mut payload = vec![0u8; samples];
    // a small deterministic generator (xorshift) for the delays and the losses
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut timed: Vec<(u64, usize, Vec<u8>)> = Vec::with_capacity(packets);
    for k in 0..packets {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (k * samples + i) as f64 / 8000.0;
            *s = (10_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
        }
        g711::encode(law, &pcm, &mut payload);
        let mut rtp = vec![0x80, payload_type];
        rtp.extend_from_slice(&(k as u16).to_be_bytes());
        rtp.extend_from_slice(&((k * samples) as u32).to_be_bytes());
        rtp.extend_from_slice(&(0x5eed_0000 | u32::from(payload_type)).to_be_bytes());
        rtp.extend_from_slice(&payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&(k as u16).to_be_bytes()); // identification
        ip.extend_from_slice(&[0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let checksum = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut frame = vec![0u8; 12]; // destination and source MAC
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6002u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]); // no UDP checksum
        frame.extend_from_slice(&rtp);
        let delay_us = match impair.jitter_ms {
            0 => 0,
            j => next() % (u64::from(j) * 1000 + 1),
        };
        let lost = impair.loss_percent > 0 && next() % 100 < u64::from(impair.loss_percent);
        if !lost {
            let at_us = k as u64 * u64::from(ptime_ms) * 1000 + delay_us;
            timed.push((at_us, k, frame));
        }
    }
    timed.sort_by_key(|(at, _, _)| *at);
    let overtaking = timed.windows(2).filter(|w| w[1].1 < w[0].1).count();
    for (at_us, _, frame) in &timed {
        file.extend_from_slice(&((at_us / 1_000_000) as u32).to_le_bytes());
        file.extend_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(frame);
    }
    std::fs::write(path, file).expect("the test dir is writable");
    (timed.len(), overtaking)
}

/// The IPv4 header checksum (RFC 791): one's complement of the one's complement sum.
fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
