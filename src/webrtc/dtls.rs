//! DTLS-SRTP for one browser leg, over the `dimpl` crate (DTLS 1.2, RFC 6347).
//!
//! - RFC 5763 §5 / RFC 8842: the role follows `a=setup` (srgate answers `passive`, so it
//!   is normally the DTLS server); the peer's certificate must hash to the offer's
//!   `a=fingerprint` (RFC 8122 §5), otherwise the leg fails before any key is used.
//! - RFC 5764 §4.2: the SRTP keying material is exported once the handshake completes
//!   and split as client key | server key | client salt | server salt.
//!
//! `dimpl` is fed network bytes, so the calling order that avoids its known panics is kept
//! here in one place: `handle_timeout` right after construction and before every packet.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use dimpl::{Dtls, Output};

use super::cert::Certificate;
use crate::sdp::Fingerprint;

/// Size of the buffer `dimpl` writes records into; larger than its MTU (1150).
const POLL_BUFFER: usize = 2048;

/// Outputs drained from `dimpl` per call; it yields a handful per flight.
const MAX_OUTPUTS: usize = 64;

/// Why the DTLS context could not be made.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsSetupError {
    /// `dimpl` rejected the configuration.
    Config(String),
}

/// What every DTLS leg of the process shares: the configuration and the certificate.
#[derive(Clone)]
pub struct DtlsContext {
    config: Arc<dimpl::Config>,
    certificate: dimpl::DtlsCertificate,
    fingerprint: Fingerprint,
}

impl core::fmt::Debug for DtlsContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DtlsContext")
            .field("fingerprint", &self.fingerprint.to_string())
            .finish_non_exhaustive()
    }
}

impl DtlsContext {
    /// DTLS 1.2 with the pure-Rust crypto provider; the server asks for the client's
    /// certificate (needed to check the fingerprint) and uses cookies.
    pub fn new(certificate: &Certificate) -> Result<Self, DtlsSetupError> {
        let config = dimpl::Config::builder()
            .require_client_certificate(true)
            .use_server_cookie(true)
            .build()
            .map_err(|e| DtlsSetupError::Config(e.to_string()))?;
        Ok(DtlsContext {
            config: Arc::new(config),
            certificate: certificate.dtls_certificate(),
            fingerprint: certificate.fingerprint().clone(),
        })
    }

    /// The local certificate's fingerprint (for the answer).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// Which end of the handshake srgate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// Waits for the ClientHello (`a=setup:passive`).
    Server,
    /// Sends the ClientHello (`a=setup:active`).
    Client,
}

/// The SRTP protection profiles (one type for the DTLS side and the protection itself).
pub use super::srtp::SrtpProfile;

/// The profile `dimpl` negotiated, if srgate implements it.
pub fn profile_from_dimpl(p: dimpl::SrtpProfile) -> Option<SrtpProfile> {
    match p {
        dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(SrtpProfile::Aes128CmHmacSha1_80),
        dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(SrtpProfile::AeadAes128Gcm),
        dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(SrtpProfile::AeadAes256Gcm),
        _ => None,
    }
}

/// One direction's SRTP master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: heapless::Vec<u8, 32>,
    salt: heapless::Vec<u8, 14>,
}

impl MasterKey {
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }
}

impl core::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Key bytes never reach a log.
        write!(f, "MasterKey({}+{} bytes)", self.key.len(), self.salt.len())
    }
}

/// The exported SRTP keys, split by direction for srgate's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    /// Protects what srgate sends.
    pub local: MasterKey,
    /// Unprotects what the browser sends.
    pub remote: MasterKey,
}

impl SrtpKeys {
    /// Splits RFC 5764 §4.2 keying material: client key | server key | client salt |
    /// server salt. `None` when the length does not fit the profile.
    pub fn split(profile: SrtpProfile, material: &[u8], role: DtlsRole) -> Option<Self> {
        let k = profile.master_key_len();
        let s = profile.master_salt_len();
        if material.len() != 2 * (k + s) {
            return None;
        }
        let part = |r: core::ops::Range<usize>| material.get(r);
        let client = MasterKey {
            key: heapless::Vec::from_slice(part(0..k)?).ok()?,
            salt: heapless::Vec::from_slice(part(2 * k..2 * k + s)?).ok()?,
        };
        let server = MasterKey {
            key: heapless::Vec::from_slice(part(k..2 * k)?).ok()?,
            salt: heapless::Vec::from_slice(part(2 * k + s..2 * k + 2 * s)?).ok()?,
        };
        let (local, remote) = match role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        };
        Some(SrtpKeys {
            profile,
            local,
            remote,
        })
    }
}

/// Why the DTLS side failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsFailure {
    /// The peer's certificate does not hash to the offer's fingerprint.
    FingerprintMismatch,
    /// Keys came out of a handshake without a peer certificate.
    NoPeerCertificate,
    /// `dimpl` returned an error (handshake failed or timed out, fatal alert, ...).
    Handshake,
    /// The keying material did not fit the negotiated profile.
    BadKeyingMaterial,
}

/// What the DTLS side reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// Handshake complete, peer verified, keys exported.
    Connected(SrtpKeys),
    Failed(DtlsFailure),
    /// The peer sent close_notify.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Done,
}

/// One DTLS association.
pub struct DtlsTransport {
    dtls: Dtls,
    role: DtlsRole,
    remote_fingerprint: Fingerprint,
    peer_verified: bool,
    state: State,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
    next_timeout: Option<Instant>,
    buf: Vec<u8>,
}

impl core::fmt::Debug for DtlsTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DtlsTransport")
            .field("role", &self.role)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl DtlsTransport {
    /// A DTLS 1.2 endpoint in `role` that accepts only a peer certificate matching
    /// `remote_fingerprint`. A client sends its ClientHello on the first
    /// [`DtlsTransport::poll_output`].
    pub fn new(
        now: Instant,
        ctx: &DtlsContext,
        role: DtlsRole,
        remote_fingerprint: Fingerprint,
    ) -> Self {
        let mut dtls = Dtls::new_12(Arc::clone(&ctx.config), ctx.certificate.clone(), now);
        if role == DtlsRole::Client {
            dtls.set_active(true);
        }
        let mut t = DtlsTransport {
            dtls,
            role,
            remote_fingerprint,
            peer_verified: false,
            state: State::Handshaking,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_timeout: None,
            buf: vec![0; POLL_BUFFER],
        };
        // dimpl's server unwraps state that only handle_timeout initialises: a packet
        // before the first handle_timeout panics.
        t.handle_timeout(now);
        t
    }

    /// The role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Whether keys have been exported.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Feeds one DTLS datagram.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        if self.state == State::Done {
            return;
        }
        // Refresh dimpl's clock first (its documented contract, and the panic above).
        if self.dtls.handle_timeout(now).is_err() {
            return self.fail(DtlsFailure::Handshake);
        }
        if let Err(e) = self.dtls.handle_packet(packet) {
            log::debug!("dtls: {e}");
            self.fail(DtlsFailure::Handshake);
        }
    }

    /// Advances retransmission and handshake timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Done {
            return;
        }
        if let Err(e) = self.dtls.handle_timeout(now) {
            log::debug!("dtls: {e}");
            self.fail(DtlsFailure::Handshake);
        }
    }

    /// Drains `dimpl`'s outputs into transmits and events. Call after every
    /// `handle_packet`/`handle_timeout`; a client only when it has somewhere to send.
    pub fn poll_output(&mut self) {
        for _ in 0..MAX_OUTPUTS {
            if self.state == State::Done {
                return;
            }
            match self.dtls.poll_output(&mut self.buf) {
                Output::Packet(p) => self.transmits.push_back(p.to_vec()),
                Output::BufferTooSmall { needed } => {
                    // dimpl keeps the output; retry once with room for it.
                    if needed > self.buf.len() && needed <= 65536 {
                        self.buf.resize(needed, 0);
                    } else {
                        return self.fail(DtlsFailure::Handshake);
                    }
                }
                Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    return;
                }
                Output::PeerCert(der) => {
                    if self.remote_fingerprint.matches(der) {
                        self.peer_verified = true;
                    } else {
                        return self.fail(DtlsFailure::FingerprintMismatch);
                    }
                }
                Output::KeyingMaterial(material, profile) => {
                    if !self.peer_verified {
                        return self.fail(DtlsFailure::NoPeerCertificate);
                    }
                    let keys = profile_from_dimpl(profile)
                        .and_then(|p| SrtpKeys::split(p, &material, self.role));
                    match keys {
                        Some(keys) => {
                            self.state = State::Connected;
                            self.events.push_back(DtlsEvent::Connected(keys));
                        }
                        None => return self.fail(DtlsFailure::BadKeyingMaterial),
                    }
                }
                Output::Connected => {}
                Output::ApplicationData(_) => {} // WebRTC audio has no DTLS data channel.
                Output::CloseNotify => {
                    self.state = State::Done;
                    self.events.push_back(DtlsEvent::Closed);
                    return;
                }
                _ => {}
            }
        }
    }

    fn fail(&mut self, why: DtlsFailure) {
        if self.state != State::Done {
            self.state = State::Done;
            self.transmits.clear();
            self.events.push_back(DtlsEvent::Failed(why));
        }
    }

    /// Sends close_notify if connected; the transport is done afterwards.
    pub fn close(&mut self) {
        if self.state == State::Done {
            return;
        }
        if self.dtls.close().is_ok() {
            // Bounded drain of the alert.
            for _ in 0..MAX_OUTPUTS {
                match self.dtls.poll_output(&mut self.buf) {
                    Output::Packet(p) => self.transmits.push_back(p.to_vec()),
                    Output::Timeout(_) => break,
                    // After `release_handshake_room` the buffer is empty: room for the
                    // alert, then again.
                    Output::BufferTooSmall { needed } => {
                        if needed > self.buf.len() && needed <= 65536 {
                            self.buf.resize(needed, 0);
                        } else {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        self.state = State::Done;
    }

    /// Frees the room only the handshake needed, once it is over and its output drained:
    /// the output buffer (a retransmitted flight or a close_notify later gets one of its own
    /// size, see `BufferTooSmall` in [`DtlsTransport::poll_output`]) and the queues'.
    pub fn release_handshake_room(&mut self) {
        self.buf = Vec::new();
        self.transmits.shrink_to_fit();
        self.events.shrink_to_fit();
    }

    /// The next DTLS datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When `dimpl` wants `handle_timeout`; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Done {
            None
        } else {
            self.next_timeout
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_per_role() {
        // 16+16+14+14 for AES-CM: client key 0x01.., server key 0x02.., salts 0x03/0x04.
        let mut m = vec![1u8; 16];
        m.extend([2u8; 16]);
        m.extend([3u8; 14]);
        m.extend([4u8; 14]);
        let p = SrtpProfile::Aes128CmHmacSha1_80;
        let server = SrtpKeys::split(p, &m, DtlsRole::Server).unwrap();
        assert_eq!(server.local.key(), [2u8; 16]);
        assert_eq!(server.local.salt(), [4u8; 14]);
        assert_eq!(server.remote.key(), [1u8; 16]);
        assert_eq!(server.remote.salt(), [3u8; 14]);
        let client = SrtpKeys::split(p, &m, DtlsRole::Client).unwrap();
        assert_eq!(client.local, server.remote);
        assert_eq!(client.remote, server.local);
        assert!(SrtpKeys::split(p, &m[1..], DtlsRole::Server).is_none());
        // AES-256-GCM: 32+32+12+12.
        let g = vec![9u8; 88];
        let k = SrtpKeys::split(SrtpProfile::AeadAes256Gcm, &g, DtlsRole::Server).unwrap();
        assert_eq!((k.local.key().len(), k.local.salt().len()), (32, 12));
        assert!(!format!("{k:?}").contains('9'));
    }
}
