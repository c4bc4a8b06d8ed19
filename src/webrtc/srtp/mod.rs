//! SRTP and SRTCP protection in place, for the keys a DTLS-SRTP handshake exports.
//!
//! Implements:
//! - RFC 3711 (SRTP): §3.1/§3.4 packet formats (only the RTP payload, and everything after
//!   the first eight RTCP octets, is encrypted), §3.3.1 and Appendix A (rollover counter and
//!   packet index), §3.3.2 (replay window, here 128 packets, for SRTP and SRTCP alike),
//!   §4.1.1 (AES-CM), §4.2.1 (HMAC-SHA1), §4.3 (key derivation, rate 0);
//! - RFC 7714 (AEAD_AES_128_GCM and AEAD_AES_256_GCM): §8 and §9 (IVs, associated data,
//!   the ESRTCP word after the tag), §11 (key derivation for 12-octet salts);
//! - RFC 5764 §4.1.2 and RFC 7714 §14.2: the DTLS-SRTP protection profiles, and the layout
//!   of the exported keying material (client key | server key | client salt | server salt).
//!
//! No MKI, no key derivation rate, no encrypted header extensions: WebRTC uses none of them.
//!
//! # Use
//!
//! One [`SrtpContext`] per direction: the local one protects what we send, the remote one
//! unprotects what we receive ([`SrtpContext::from_dtls`] builds both). Each keeps, per SSRC
//! (at most [`MAX_SSRCS`]), the rollover counter, a replay window and the SRTCP index.
//! Packets are transformed in the caller's buffer: `protect_*` take the plaintext length and
//! append the tag (and the SRTCP index) in the buffer's tail room, `unprotect_*` return the
//! plaintext length. Nothing allocates; the per-SSRC state changes only when a packet is
//! accepted, so forged packets change nothing.

mod crypto;
pub(crate) use crypto::HmacSha1;
mod header;
mod replay;

use core::fmt;

use heapless::LinearMap;
use subtle::ConstantTimeEq;

use crypto::{CmKeys, GCM_TAG, GcmKeys, Label};
use header::RTCP_CLEAR_HEADER;
use replay::{Refusal, ReplayWindow};

/// How many SSRCs one context keeps state for (an audio call needs one or two per direction).
pub const MAX_SSRCS: usize = 8;

/// Highest SRTCP index (31 bits, RFC 3711 §3.4): after it the keys must be renewed.
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;
/// Length of the E flag + SRTCP index word.
const SRTCP_INDEX_LEN: usize = 4;
/// The SRTCP authentication tag of the AES-CM profiles (80 bits for both, RFC 5764 §4.1.2).
const CM_RTCP_TAG: usize = 10;

/// An SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SrtpProfile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80`: AES-128 counter mode, 80-bit HMAC-SHA1 tags.
    Aes128CmHmacSha1_80,
    /// `SRTP_AES128_CM_HMAC_SHA1_32`: as above with 32-bit SRTP tags (SRTCP keeps 80 bits).
    Aes128CmHmacSha1_32,
    /// `SRTP_AEAD_AES_128_GCM`: AES-128-GCM with 16-octet tags.
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM`: AES-256-GCM with 16-octet tags.
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// The profile of a DTLS `use_srtp` protection profile id, if we implement it.
    pub const fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Self::Aes128CmHmacSha1_80),
            0x0002 => Some(Self::Aes128CmHmacSha1_32),
            0x0007 => Some(Self::AeadAes128Gcm),
            0x0008 => Some(Self::AeadAes256Gcm),
            _ => None,
        }
    }

    /// The DTLS `use_srtp` protection profile id.
    pub const fn dtls_id(self) -> u16 {
        match self {
            Self::Aes128CmHmacSha1_80 => 0x0001,
            Self::Aes128CmHmacSha1_32 => 0x0002,
            Self::AeadAes128Gcm => 0x0007,
            Self::AeadAes256Gcm => 0x0008,
        }
    }

    /// Length of the master key in octets.
    pub const fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Length of the master salt in octets.
    pub const fn master_salt_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 | Self::Aes128CmHmacSha1_32 => 14,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 12,
        }
    }

    /// Octets of keying material to export from DTLS: two keys and two salts.
    pub const fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    /// Octets [`SrtpContext::protect_rtp`] appends: the authentication tag.
    pub const fn rtp_overhead(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => 10,
            Self::Aes128CmHmacSha1_32 => 4,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => GCM_TAG,
        }
    }

    /// Octets [`SrtpContext::protect_rtcp`] appends: the tag and the E flag + SRTCP index.
    pub const fn rtcp_overhead(self) -> usize {
        SRTCP_INDEX_LEN
            + match self {
                Self::Aes128CmHmacSha1_80 | Self::Aes128CmHmacSha1_32 => CM_RTCP_TAG,
                Self::AeadAes128Gcm | Self::AeadAes256Gcm => GCM_TAG,
            }
    }

    const fn is_aead(self) -> bool {
        matches!(self, Self::AeadAes128Gcm | Self::AeadAes256Gcm)
    }
}

/// Why a packet was not protected or unprotected, or a context not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than its header plus the SRTP/SRTCP trailer, or a header running past the end.
    TooShort,
    /// Not RTP/RTCP version 2.
    BadVersion,
    /// The buffer has no room for the tag (protect), or `len` exceeds the buffer.
    BufferTooSmall,
    /// The authentication tag does not match: forged, corrupted or under another key.
    AuthFailed,
    /// Already received, or older than the replay window.
    Replay,
    /// A new SSRC while [`MAX_SSRCS`] are already tracked.
    TooManySsrcs,
    /// The SRTP rollover counter or the SRTCP index is used up: the keys must be renewed.
    IndexExhausted,
    /// A master key, master salt or keying material of the wrong length for the profile.
    KeyLength,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooShort => "packet too short",
            Self::BadVersion => "not RTP version 2",
            Self::BufferTooSmall => "no room for the SRTP trailer",
            Self::AuthFailed => "authentication failed",
            Self::Replay => "replayed or too old",
            Self::TooManySsrcs => "too many SSRCs",
            Self::IndexExhausted => "packet index exhausted, keys must be renewed",
            Self::KeyLength => "wrong key or salt length for the SRTP profile",
        })
    }
}

impl std::error::Error for Error {}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Replay => Self::Replay,
            Refusal::Exhausted => Self::IndexExhausted,
        }
    }
}

/// Our role in the DTLS handshake that exported the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We sent the ClientHello.
    Client,
    /// We answered it.
    Server,
}

/// The derived session keys.
#[derive(Clone)]
enum Session {
    Cm {
        rtp: CmKeys,
        rtcp: CmKeys,
        rtp_tag: usize,
    },
    Gcm {
        rtp: GcmKeys,
        rtcp: GcmKeys,
    },
}

/// What a context remembers about one SSRC.
#[derive(Debug, Clone, Copy, Default)]
struct SsrcState {
    /// Highest SRTP index (ROC and sequence number) and, when receiving, the replay window.
    rtp: ReplayWindow,
    /// Received SRTCP indices.
    rtcp: ReplayWindow,
    /// The next SRTCP index to send.
    rtcp_next: u32,
}

/// SRTP/SRTCP state for one direction of one DTLS-SRTP association.
#[derive(Clone)]
pub struct SrtpContext {
    profile: SrtpProfile,
    session: Session,
    streams: LinearMap<u32, SsrcState, MAX_SSRCS>,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("ssrcs", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives the session keys (RFC 3711 §4.3) from a master key and salt.
    pub fn new(profile: SrtpProfile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, Error> {
        if master_key.len() != profile.master_key_len()
            || master_salt.len() != profile.master_salt_len()
        {
            return Err(Error::KeyLength);
        }
        let derive = |label, out: &mut [u8]| {
            crypto::derive(master_key, master_salt, label, out).map_err(|()| Error::KeyLength)
        };
        let session = if profile.is_aead() {
            let key_len = profile.master_key_len();
            let mut keys = [[0u8; 32]; 2];
            let mut salts = [[0u8; 12]; 2];
            derive(Label::RtpEncryption, &mut keys[0][..key_len])?;
            derive(Label::RtpSalt, &mut salts[0])?;
            derive(Label::RtcpEncryption, &mut keys[1][..key_len])?;
            derive(Label::RtcpSalt, &mut salts[1])?;
            let gcm = |k: &[u8; 32], s| GcmKeys::new(&k[..key_len], s).ok_or(Error::KeyLength);
            Session::Gcm {
                rtp: gcm(&keys[0], &salts[0])?,
                rtcp: gcm(&keys[1], &salts[1])?,
            }
        } else {
            let cm = |labels: [Label; 3]| {
                let (mut key, mut salt, mut auth) = ([0u8; 16], [0u8; 14], [0u8; 20]);
                derive(labels[0], &mut key)?;
                derive(labels[1], &mut salt)?;
                derive(labels[2], &mut auth)?;
                Ok::<_, Error>(CmKeys::new(&key, &salt, &auth))
            };
            Session::Cm {
                rtp: cm([
                    Label::RtpEncryption,
                    Label::RtpSalt,
                    Label::RtpAuthentication,
                ])?,
                rtcp: cm([
                    Label::RtcpEncryption,
                    Label::RtcpSalt,
                    Label::RtcpAuthentication,
                ])?,
                rtp_tag: profile.rtp_overhead(),
            }
        };
        Ok(Self {
            profile,
            session,
            streams: LinearMap::new(),
        })
    }

    /// Splits keying material exported from DTLS (RFC 5764 §4.2: "EXTRACTOR-dtls_srtp",
    /// [`SrtpProfile::keying_material_len`] octets) into `(local, remote)` contexts: the
    /// local one protects what we send, the remote one unprotects what the peer sends.
    pub fn from_dtls(
        profile: SrtpProfile,
        keying_material: &[u8],
        role: DtlsRole,
    ) -> Result<(Self, Self), Error> {
        if keying_material.len() != profile.keying_material_len() {
            return Err(Error::KeyLength);
        }
        let (keys, salts) = keying_material.split_at(2 * profile.master_key_len());
        let (client_key, server_key) = keys.split_at(profile.master_key_len());
        let (client_salt, server_salt) = salts.split_at(profile.master_salt_len());
        let client = Self::new(profile, client_key, client_salt)?;
        let server = Self::new(profile, server_key, server_salt)?;
        Ok(match role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        })
    }

    /// The profile this context was built for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Forgets an SSRC's state (a stream that ended), freeing its slot.
    pub fn forget_ssrc(&mut self, ssrc: u32) -> bool {
        self.streams.remove(&ssrc).is_some()
    }

    /// Encrypts and authenticates the RTP packet in `buf[..len]` in place and appends the
    /// tag; returns the SRTP packet's length, `len + profile.rtp_overhead()`.
    ///
    /// An SSRC's packet index must not be protected twice (that would reuse a keystream):
    /// a sequence number already sent (within the replay window, or older) is refused with
    /// [`Error::Replay`], as libsrtp does unless told to allow retransmissions.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let packet = buf.get(..len).ok_or(Error::BufferTooSmall)?;
        let h = header::rtp_header(packet)?;
        let out_len = len + self.profile.rtp_overhead();
        let (body, tail) = buf.split_at_mut_checked(len).ok_or(Error::BufferTooSmall)?;
        let tail = tail.get_mut(..out_len - len).ok_or(Error::BufferTooSmall)?;
        let mut state = self.stream(h.ssrc)?;
        let index = state.rtp.estimate_srtp_index(h.seq)?;
        // Protecting an index twice would reuse a keystream (and, for GCM, a nonce).
        state.rtp.check(index)?;
        let roc = ReplayWindow::roc_of(index);
        let (head, payload) = body.split_at_mut(h.len);
        match &self.session {
            Session::Cm { rtp, rtp_tag, .. } => {
                rtp.apply_keystream(h.ssrc, index, payload);
                let mac = rtp.mac(body, &roc.to_be_bytes());
                tail.copy_from_slice(mac.get(..*rtp_tag).ok_or(Error::BufferTooSmall)?);
            }
            Session::Gcm { rtp, .. } => {
                let iv = rtp.rtp_iv(h.ssrc, roc, h.seq);
                tail.copy_from_slice(&rtp.seal(&iv, head, payload));
            }
        }
        state.rtp.accept(index);
        self.store(h.ssrc, state)?;
        Ok(out_len)
    }

    /// Authenticates and decrypts the SRTP packet in `packet` in place; returns the length
    /// of the RTP packet now at its start.
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, Error> {
        let auth_len = packet
            .len()
            .checked_sub(self.profile.rtp_overhead())
            .ok_or(Error::TooShort)?;
        let (body, tag) = packet.split_at_mut(auth_len);
        let h = header::rtp_header(body)?;
        let mut state = self.stream(h.ssrc)?;
        let index = state.rtp.estimate_srtp_index(h.seq)?;
        state.rtp.check(index)?;
        let roc = ReplayWindow::roc_of(index);
        match &self.session {
            Session::Cm { rtp, rtp_tag, .. } => {
                let mac = rtp.mac(body, &roc.to_be_bytes());
                let expected = mac.get(..*rtp_tag).ok_or(Error::TooShort)?;
                if !bool::from(expected.ct_eq(tag)) {
                    return Err(Error::AuthFailed);
                }
                let payload = body.get_mut(h.len..).ok_or(Error::TooShort)?;
                rtp.apply_keystream(h.ssrc, index, payload);
            }
            Session::Gcm { rtp, .. } => {
                let tag: &[u8; GCM_TAG] = (&*tag).try_into().map_err(|_| Error::TooShort)?;
                let iv = rtp.rtp_iv(h.ssrc, roc, h.seq);
                let (head, payload) = body.split_at_mut(h.len);
                rtp.open(&iv, head, payload, tag)
                    .map_err(|_| Error::AuthFailed)?;
            }
        }
        state.rtp.accept(index);
        self.store(h.ssrc, state)?;
        Ok(auth_len)
    }

    /// Encrypts and authenticates the (compound) RTCP packet in `buf[..len]` in place and
    /// appends the SRTCP trailer; returns the SRTCP packet's length,
    /// `len + profile.rtcp_overhead()`. Every packet is encrypted (E flag set).
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let packet = buf.get(..len).ok_or(Error::BufferTooSmall)?;
        let ssrc = header::rtcp_ssrc(packet)?;
        let out_len = len + self.profile.rtcp_overhead();
        let (body, tail) = buf.split_at_mut_checked(len).ok_or(Error::BufferTooSmall)?;
        let tail = tail.get_mut(..out_len - len).ok_or(Error::BufferTooSmall)?;
        let mut state = self.stream(ssrc)?;
        let index = state.rtcp_next;
        if index > MAX_SRTCP_INDEX {
            return Err(Error::IndexExhausted);
        }
        let word = (0x8000_0000 | index).to_be_bytes();
        let (head, payload) = body.split_at_mut(RTCP_CLEAR_HEADER);
        match &self.session {
            Session::Cm { rtcp, .. } => {
                // RFC 3711 §3.4: ... || E || SRTCP index || authentication tag.
                rtcp.apply_keystream(ssrc, u64::from(index), payload);
                let mac = rtcp.mac(body, &word);
                let (w, t) = tail.split_at_mut(SRTCP_INDEX_LEN);
                w.copy_from_slice(&word);
                t.copy_from_slice(mac.get(..CM_RTCP_TAG).ok_or(Error::BufferTooSmall)?);
            }
            Session::Gcm { rtcp, .. } => {
                // RFC 7714 §9.2: header || ciphertext || tag || E || SRTCP index; the AAD is
                // the header and the ESRTCP word.
                let mut aad = [0u8; RTCP_CLEAR_HEADER + SRTCP_INDEX_LEN];
                aad[..RTCP_CLEAR_HEADER].copy_from_slice(head);
                aad[RTCP_CLEAR_HEADER..].copy_from_slice(&word);
                let iv = rtcp.rtcp_iv(ssrc, index);
                let (t, w) = tail.split_at_mut(GCM_TAG);
                t.copy_from_slice(&rtcp.seal(&iv, &aad, payload));
                w.copy_from_slice(&word);
            }
        }
        state.rtcp_next = index + 1;
        self.store(ssrc, state)?;
        Ok(out_len)
    }

    /// Authenticates and (if its E flag is set) decrypts the SRTCP packet in `packet` in
    /// place; returns the length of the RTCP packet now at its start.
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, Error> {
        let plain_len = packet
            .len()
            .checked_sub(self.profile.rtcp_overhead())
            .filter(|&l| l >= RTCP_CLEAR_HEADER)
            .ok_or(Error::TooShort)?;
        let ssrc = header::rtcp_ssrc(packet)?;
        let (body, trailer) = packet.split_at_mut(plain_len);
        let word_at = if self.profile.is_aead() { GCM_TAG } else { 0 };
        let word: [u8; 4] = trailer
            .get(word_at..word_at + SRTCP_INDEX_LEN)
            .and_then(|w| w.try_into().ok())
            .ok_or(Error::TooShort)?;
        let word_value = u32::from_be_bytes(word);
        let encrypted = word_value & 0x8000_0000 != 0;
        let index = word_value & MAX_SRTCP_INDEX;
        let mut state = self.stream(ssrc)?;
        state.rtcp.check(u64::from(index))?;
        match &self.session {
            Session::Cm { rtcp, .. } => {
                let (w, tag) = trailer.split_at(SRTCP_INDEX_LEN);
                let mac = rtcp.mac(body, w);
                let expected = mac.get(..CM_RTCP_TAG).ok_or(Error::TooShort)?;
                if !bool::from(expected.ct_eq(tag)) {
                    return Err(Error::AuthFailed);
                }
                if encrypted {
                    let payload = body.get_mut(RTCP_CLEAR_HEADER..).ok_or(Error::TooShort)?;
                    rtcp.apply_keystream(ssrc, u64::from(index), payload);
                }
            }
            Session::Gcm { rtcp, .. } => {
                let iv = rtcp.rtcp_iv(ssrc, index);
                let tag: [u8; GCM_TAG] = trailer
                    .get(..GCM_TAG)
                    .and_then(|t| t.try_into().ok())
                    .ok_or(Error::TooShort)?;
                if encrypted {
                    let mut aad = [0u8; RTCP_CLEAR_HEADER + SRTCP_INDEX_LEN];
                    let (head, payload) = body.split_at_mut(RTCP_CLEAR_HEADER);
                    aad[..RTCP_CLEAR_HEADER].copy_from_slice(head);
                    aad[RTCP_CLEAR_HEADER..].copy_from_slice(&word);
                    rtcp.open(&iv, &aad, payload, &tag)
                        .map_err(|_| Error::AuthFailed)?;
                } else {
                    // RFC 7714 §9.3: the whole packet and the ESRTCP word are the AAD. Lay
                    // them out contiguously where the tag was (it is saved in `tag`).
                    trailer[..SRTCP_INDEX_LEN].copy_from_slice(&word);
                    let aad = &packet[..plain_len + SRTCP_INDEX_LEN];
                    let verdict = rtcp.open(&iv, aad, &mut [], &tag);
                    packet[plain_len..plain_len + GCM_TAG].copy_from_slice(&tag);
                    verdict.map_err(|_| Error::AuthFailed)?;
                }
            }
        }
        state.rtcp.accept(u64::from(index));
        self.store(ssrc, state)?;
        Ok(plain_len)
    }

    /// A copy of the state of `ssrc`: fresh if unknown, refused if there is no room for it.
    fn stream(&self, ssrc: u32) -> Result<SsrcState, Error> {
        match self.streams.get(&ssrc) {
            Some(state) => Ok(*state),
            None if self.streams.len() == MAX_SSRCS => Err(Error::TooManySsrcs),
            None => Ok(SsrcState::default()),
        }
    }

    /// Writes back the state of an accepted packet.
    fn store(&mut self, ssrc: u32, state: SsrcState) -> Result<(), Error> {
        self.streams
            .insert(ssrc, state)
            .map(drop)
            .map_err(|_| Error::TooManySsrcs)
    }
}

#[cfg(test)]
mod tests;
