//! The few raw syscalls srgate needs that std and mio do not offer: batched UDP receive
//! (`recvmmsg`), and handing freed heap memory back to the kernel. This is the only file
//! allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Fixed receive buffers for one `recvmmsg` call: `count` slots of `slot` bytes each,
/// allocated once when the socket is opened and reused for every batch.
pub struct RecvBatch {
    slot: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    filled: usize,
    // Headers and iovecs point into `data` and `addrs`, whose heap storage never moves;
    // set up once so a batch costs no allocation. (Raw pointers make this !Send: a batch
    // lives on the shard thread that created it.)
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(count: usize, slot: usize) -> Self {
        assert!(
            count > 0 && slot > 0,
            "a receive batch needs at least one non-empty slot"
        );
        let mut batch = RecvBatch {
            slot,
            data: vec![0; count * slot],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
            addrs: vec![unsafe { mem::zeroed() }; count],
            lens: vec![0; count],
            truncated: vec![false; count],
            filled: 0,
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
        };
        let base = batch.data.as_mut_ptr();
        for i in 0..count {
            batch.iovs.push(libc::iovec {
                // SAFETY: i * slot < data.len() by construction (data holds count * slot bytes).
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            });
        }
        for i in 0..count {
            // SAFETY: msghdr is plain old data; zero is a valid starting value for every field.
            let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            msg.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
            msg.msg_iov = &mut batch.iovs[i];
            msg.msg_iovlen = 1;
            batch.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        batch
    }

    /// The number of datagrams the last `recv` filled.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Datagram `i` of the last batch: its source, its bytes, and whether the kernel cut it
    /// because it was larger than a slot.
    pub fn get(&self, i: usize) -> Option<(Option<SocketAddr>, &[u8], bool)> {
        if i >= self.filled {
            return None;
        }
        let start = i * self.slot;
        let len = self.lens[i].min(self.slot);
        Some((
            sockaddr_to_std(&self.addrs[i]),
            &self.data[start..start + len],
            self.truncated[i],
        ))
    }

    /// As [`RecvBatch::get`], with the bytes writable (SRTP is decrypted in place).
    pub fn get_mut(&mut self, i: usize) -> Option<(Option<SocketAddr>, &mut [u8], bool)> {
        if i >= self.filled {
            return None;
        }
        let start = i * self.slot;
        let len = self.lens[i].min(self.slot);
        let from = sockaddr_to_std(&self.addrs[i]);
        Some((from, &mut self.data[start..start + len], self.truncated[i]))
    }

    /// Receives up to `count` datagrams without blocking. `Ok(0)` never happens: an empty
    /// socket is `Err(WouldBlock)`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let count = self.hdrs.len();
        for hdr in &mut self.hdrs {
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: `hdrs` holds `count` initialised mmsghdr whose name and iov pointers point
        // into the heap storage of `self.addrs`, `self.iovs` and `self.data`, which live as
        // long as `self` and are not otherwise borrowed during this call; the kernel writes
        // at most iov_len bytes per slot and at most msg_namelen bytes per address.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT as _, // c_int on glibc, c_uint on musl
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.filled = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, hdr) in self.hdrs.iter().take(n).enumerate() {
            self.lens[i] = hdr.msg_len as usize;
            self.truncated[i] = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        self.filled = n;
        Ok(n)
    }
}

fn sockaddr_to_std(sa: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match sa.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: ss_family says this storage holds a sockaddr_in, which it is large
            // enough and suitably aligned for.
            let sin: &libc::sockaddr_in = unsafe { &*(sa as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(sa as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Returns the free memory of the C allocator's heaps to the kernel (glibc's
/// `malloc_trim`: it also releases free pages in the middle of a heap, which a burst of
/// closed connections leaves behind). musl's allocator returns memory by itself: nothing to
/// do there.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists under its lock; it
    // takes no pointer from us and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_receives_several_datagrams_with_sources() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two!", to).unwrap();
        tx.send_to(&[7u8; 40], to).unwrap();
        let mut batch = RecvBatch::new(4, 16);
        let mut got = Vec::new();
        for _ in 0..100 {
            match batch.recv(rx.as_raw_fd()) {
                Ok(_) => {
                    for i in 0..batch.len() {
                        let (from, bytes, cut) = batch.get(i).unwrap();
                        got.push((from.unwrap(), bytes.to_vec(), cut));
                    }
                    if got.len() == 3 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        let src = tx.local_addr().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (src, b"one".to_vec(), false));
        assert_eq!(got[1], (src, b"two!".to_vec(), false));
        assert_eq!(
            got[2].1.len(),
            16,
            "a datagram larger than a slot is cut to the slot"
        );
        assert!(got[2].2, "and flagged as truncated");
    }
}
