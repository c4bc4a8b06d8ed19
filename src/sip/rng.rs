//! A deterministic random stream for tags, branches, Call-IDs and nonce keys. The core
//! has no access to the OS: the I/O shell seeds it from `getrandom` at start, tests seed it
//! with a constant, so every run of a test sees the same tags.

use sha2::{Digest, Sha256};

/// SHA-256 in counter mode over a 32-byte seed.
pub struct Rng {
    seed: [u8; 32],
    counter: u64,
    pool: [u8; 32],
    used: usize,
}

impl Rng {
    pub fn new(seed: [u8; 32]) -> Self {
        Rng {
            seed,
            counter: 0,
            pool: [0; 32],
            used: 32,
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == self.pool.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.counter += 1;
                self.pool = h.finalize().into();
                self.used = 0;
            }
            *b = self.pool[self.used];
            self.used += 1;
        }
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        self.fill(&mut out);
        out
    }

    /// `len` characters of lowercase hex: safe in every SIP token position.
    pub fn token(&mut self, len: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(len);
        let mut buf = [0u8; 1];
        for _ in 0..len {
            self.fill(&mut buf);
            out.push(HEX[(buf[0] & 15) as usize] as char);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let mut a = Rng::new([1; 32]);
        let mut b = Rng::new([1; 32]);
        let mut c = Rng::new([2; 32]);
        let (ta, tb, tc) = (a.token(40), b.token(40), c.token(40));
        assert_eq!(ta, tb);
        assert_ne!(ta, tc);
        assert!(ta.bytes().all(|ch| ch.is_ascii_hexdigit()));
        assert_ne!(a.token(16), ta[..16], "the stream moves on");
    }
}
