//! libsrtp 2.3 (bundled by `srtp2-sys`, built with OpenSSL) behind a small safe wrapper: the
//! reference implementation our SRTP is checked and benchmarked against. x86_64 only.
//!
//! Shared by `tests/srtp_libsrtp/main.rs` and `benches/srtp.rs`.
#![allow(unsafe_code, dead_code)]

use std::ffi::c_int;
use std::sync::Once;

use srgate::webrtc::srtp::SrtpProfile;
use srtp2_sys as sys;

/// What libsrtp may write past the end of a packet it protects (tag, MKI and, for SRTCP,
/// the index word): every buffer handed to it must have this much tail room.
pub const TAIL_ROOM: usize = sys::SRTP_MAX_TRAILER_LEN as usize + 4;

/// A libsrtp session with one wildcard stream (any inbound or any outbound SSRC).
pub struct LibSrtp {
    session: sys::srtp_t,
}

/// A libsrtp status code other than `srtp_err_status_ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

fn check(status: sys::srtp_err_status_t) -> Result<(), Status> {
    if status == sys::srtp_err_status_t_srtp_err_status_ok {
        Ok(())
    } else {
        Err(Status(status))
    }
}

impl LibSrtp {
    /// A session for `profile` keyed with a master key and salt; `outbound` sessions protect,
    /// inbound ones unprotect.
    pub fn new(profile: SrtpProfile, key: &[u8], salt: &[u8], outbound: bool) -> Self {
        static INIT: Once = Once::new();
        // SAFETY: srtp_init has no preconditions; Once runs it exactly once per process.
        INIT.call_once(|| check(unsafe { sys::srtp_init() }).expect("srtp_init"));

        // libsrtp reads the master key and the salt as one contiguous buffer.
        let mut key_and_salt = [key, salt].concat();
        // SAFETY: srtp_policy_t is a plain C struct for which all-zero is a valid value
        // (null pointers, zero counts), as libsrtp's own examples start from memset 0.
        let mut policy: sys::srtp_policy_t = unsafe { std::mem::zeroed() };
        // SAFETY: the setters only write into the crypto policy structs they are given.
        unsafe {
            match profile {
                SrtpProfile::Aes128CmHmacSha1_80 => {
                    sys::srtp_crypto_policy_set_rtp_default(&mut policy.rtp);
                    sys::srtp_crypto_policy_set_rtcp_default(&mut policy.rtcp);
                }
                SrtpProfile::Aes128CmHmacSha1_32 => {
                    sys::srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&mut policy.rtp);
                    sys::srtp_crypto_policy_set_rtcp_default(&mut policy.rtcp);
                }
                SrtpProfile::AeadAes128Gcm => {
                    sys::srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut policy.rtp);
                    sys::srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut policy.rtcp);
                }
                SrtpProfile::AeadAes256Gcm => {
                    sys::srtp_crypto_policy_set_aes_gcm_256_16_auth(&mut policy.rtp);
                    sys::srtp_crypto_policy_set_aes_gcm_256_16_auth(&mut policy.rtcp);
                }
                _ => panic!("no libsrtp policy for {profile:?}"),
            }
        }
        policy.ssrc.type_ = if outbound {
            sys::srtp_ssrc_type_t_ssrc_any_outbound
        } else {
            sys::srtp_ssrc_type_t_ssrc_any_inbound
        };
        policy.key = key_and_salt.as_mut_ptr();
        policy.window_size = 128;
        let mut session: sys::srtp_t = std::ptr::null_mut();
        // SAFETY: `policy` is fully initialised and its key buffer outlives the call; libsrtp
        // copies what it needs (derived keys) into the new session.
        check(unsafe { sys::srtp_create(&mut session, &policy) }).expect("srtp_create");
        Self { session }
    }

    fn call(
        &mut self,
        f: unsafe extern "C" fn(
            sys::srtp_t,
            *mut std::ffi::c_void,
            *mut c_int,
        ) -> sys::srtp_err_status_t,
        buf: &mut [u8],
        len: usize,
        room: usize,
    ) -> Result<usize, Status> {
        assert!(
            len + room <= buf.len(),
            "libsrtp needs {room} octets of tail room"
        );
        let mut n = c_int::try_from(len).expect("a packet length fits an int");
        // SAFETY: `buf` holds `len` packet octets plus the tail room libsrtp documents that it
        // may write, and `session` is a live session owned by `self`.
        check(unsafe { f(self.session, buf.as_mut_ptr().cast(), &mut n) })?;
        Ok(usize::try_from(n).expect("libsrtp returns a non-negative length"))
    }

    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Status> {
        self.call(sys::srtp_protect, buf, len, TAIL_ROOM)
    }

    pub fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Status> {
        self.call(sys::srtp_unprotect, buf, len, 0)
    }

    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Status> {
        self.call(sys::srtp_protect_rtcp, buf, len, TAIL_ROOM)
    }

    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Status> {
        self.call(sys::srtp_unprotect_rtcp, buf, len, 0)
    }
}

impl Drop for LibSrtp {
    fn drop(&mut self) {
        // SAFETY: `session` came from srtp_create and is deallocated exactly once, here.
        let _ = unsafe { sys::srtp_dealloc(self.session) };
    }
}
