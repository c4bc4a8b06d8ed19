//! The few raw syscalls srgate needs that std and mio do not offer: batched UDP receive
//! and send (`recvmmsg`, `sendmmsg`, optionally with each datagram's local address:
//! `IP_PKTINFO`), socket buffer sizes, handing freed heap memory back
//! to the kernel, raising the limit of open files, and the file creation mask.
//! This is the only file allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Fixed receive buffers for one `recvmmsg` call: `count` slots of `slot` bytes each,
/// allocated once when the socket is opened and reused for every batch.
pub struct RecvBatch {
    m: Slots,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    filled: usize,
}

/// What a receive and a send batch share: `count` slots of `slot` bytes, an address per
/// slot, and the message headers that point into them. Headers and iovecs point into
/// `data` and `addrs`, whose heap storage never moves; set up once so a batch costs no
/// allocation. (Raw pointers make this !Send: a batch lives on the shard thread that
/// created it.)
struct Slots {
    slot: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Room for one control message per slot ([`CTRL_WORDS`] each), or empty: batches that
    /// carry each datagram's local address (`IP_PKTINFO`).
    ctrl: Vec<u64>,
}

/// Room for one `IP_PKTINFO` or `IPV6_PKTINFO` control message (CMSG_SPACE of an
/// `in6_pktinfo` is 40 bytes on 64-bit Linux), in u64 words: aligned as a `cmsghdr` must be.
const CTRL_WORDS: usize = 8;

impl Slots {
    /// `iov_len`: what each slot's iovec says at first (the whole slot to receive into,
    /// nothing yet to send). `control`: room for a control message per slot.
    fn new(count: usize, slot: usize, iov_len: usize, control: bool) -> Self {
        assert!(
            count > 0 && slot > 0,
            "a batch needs at least one non-empty slot"
        );
        let mut m = Slots {
            slot,
            data: vec![0; count * slot],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
            addrs: vec![unsafe { mem::zeroed() }; count],
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
            ctrl: if control {
                vec![0; count * CTRL_WORDS]
            } else {
                Vec::new()
            },
        };
        link_headers(
            &mut m.data,
            slot,
            iov_len,
            &mut m.addrs,
            &mut m.iovs,
            &mut m.hdrs,
        );
        // each header points at its slot's control buffer (a send sets its own per datagram)
        for i in 0..count {
            if let Some(ctrl) = m.ctrl(i) {
                m.hdrs[i].msg_hdr.msg_control = ctrl;
            }
        }
        m
    }

    /// Slot `i`'s control buffer (`None` when the batch has none). Every slot's pointer
    /// comes from the one `as_mut_ptr` of the buffer (no reference to it is made between),
    /// so the pointers handed to the kernel earlier stay valid.
    fn ctrl(&mut self, i: usize) -> Option<*mut libc::c_void> {
        if (i + 1) * CTRL_WORDS > self.ctrl.len() {
            return None;
        }
        // SAFETY: i * CTRL_WORDS + CTRL_WORDS <= ctrl.len() (checked above): in bounds.
        Some(unsafe { self.ctrl.as_mut_ptr().add(i * CTRL_WORDS) }.cast())
    }
}

impl RecvBatch {
    pub fn new(count: usize, slot: usize) -> Self {
        RecvBatch::make(count, slot, false)
    }

    /// As [`RecvBatch::new`], and each datagram's local (destination) address is kept:
    /// [`RecvBatch::destination`]. The socket must have [`receive_destinations`] on.
    pub fn with_destinations(count: usize, slot: usize) -> Self {
        RecvBatch::make(count, slot, true)
    }

    fn make(count: usize, slot: usize, control: bool) -> Self {
        RecvBatch {
            m: Slots::new(count, slot, slot, control),
            lens: vec![0; count],
            truncated: vec![false; count],
            filled: 0,
        }
    }

    /// The address datagram `i` of the last batch was sent to (this host's address it
    /// arrived on), when the batch keeps them and the kernel told it. On an IPv6 socket an
    /// IPv4 datagram's is IPv4-mapped (`::ffff:a.b.c.d`).
    pub fn destination(&self, i: usize) -> Option<IpAddr> {
        if i >= self.filled || self.m.ctrl.is_empty() {
            return None;
        }
        let msg = &self.m.hdrs[i].msg_hdr;
        let start = msg.msg_control as usize;
        let end = start + len_of(msg.msg_controllen).min(CTRL_WORDS * 8);
        // SAFETY: `msg` is the header the kernel filled in the last recvmmsg: msg_control
        // points at this slot's CTRL_WORDS words and msg_controllen (set by the kernel, at
        // most what we offered) says how much of it holds control messages. The CMSG_*
        // macros check that each header lies inside that; a payload is read only when its
        // header's cmsg_len covers it and it ends inside the buffer (a message the kernel
        // cut short, for lack of room, is skipped). Payloads are read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(msg);
            // bounded: a header takes at least 16 bytes of the slot's CTRL_WORDS * 8
            for _ in 0..CTRL_WORDS / 2 {
                if cmsg.is_null() {
                    return None;
                }
                let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
                let data = libc::CMSG_DATA(cmsg);
                let fits = |size: usize| {
                    len_of((*cmsg).cmsg_len) >= libc::CMSG_LEN(size as libc::c_uint) as usize
                        && data as usize + size <= end
                };
                if level == libc::IPPROTO_IP
                    && kind == libc::IP_PKTINFO
                    && fits(mem::size_of::<libc::in_pktinfo>())
                {
                    let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_addr.s_addr,
                    ))));
                }
                if level == libc::IPPROTO_IPV6
                    && kind == libc::IPV6_PKTINFO
                    && fits(mem::size_of::<libc::in6_pktinfo>())
                {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                cmsg = libc::CMSG_NXTHDR(msg, cmsg);
            }
            None
        }
    }

    /// The number of datagrams the last `recv` filled.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether the last `recv` took fewer datagrams than it could: the socket's queue was
    /// empty when the kernel filled the batch, so it need not be read again until the
    /// next readiness event. (A datagram that arrives later raises a new edge-triggered
    /// event: epoll adds the socket to its ready list on every arrival.) Saves the
    /// `recvmmsg` that would only return `WouldBlock`: one syscall per packet on a
    /// socket that gets one packet per wake, as an RTP socket does.
    pub fn drained(&self) -> bool {
        self.filled < self.lens.len()
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
        let start = i * self.m.slot;
        let len = self.lens[i].min(self.m.slot);
        Some((
            sockaddr_to_std(&self.m.addrs[i]),
            &self.m.data[start..start + len],
            self.truncated[i],
        ))
    }

    /// As [`RecvBatch::get`], with the bytes writable (SRTP is decrypted in place).
    pub fn get_mut(&mut self, i: usize) -> Option<(Option<SocketAddr>, &mut [u8], bool)> {
        if i >= self.filled {
            return None;
        }
        let start = i * self.m.slot;
        let len = self.lens[i].min(self.m.slot);
        let from = sockaddr_to_std(&self.m.addrs[i]);
        Some((
            from,
            &mut self.m.data[start..start + len],
            self.truncated[i],
        ))
    }

    /// Receives up to `count` datagrams without blocking. `Ok(0)` never happens: an empty
    /// socket is `Err(WouldBlock)`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let count = self.m.hdrs.len();
        let ctrl_len = if self.m.ctrl.is_empty() {
            0
        } else {
            CTRL_WORDS * 8
        };
        for hdr in &mut self.m.hdrs {
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_controllen = ctrl_len as _; // usize on glibc, socklen_t on musl
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: `hdrs` holds `count` initialised mmsghdr whose name, iov and control
        // pointers point into the heap storage of `self.m.addrs`, `self.m.iovs`,
        // `self.m.data` and `self.m.ctrl`, which live as long as `self` and are not otherwise
        // borrowed during this call; the kernel writes at most iov_len bytes per slot, at
        // most msg_namelen bytes per address and at most msg_controllen bytes of control.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.m.hdrs.as_mut_ptr(),
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
        for (i, hdr) in self.m.hdrs.iter().take(n).enumerate() {
            self.lens[i] = hdr.msg_len as usize;
            self.truncated[i] = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        self.filled = n;
        Ok(n)
    }
}

/// A length field of a message header as usize (its type is usize on glibc and socklen_t
/// on musl).
fn len_of<T: TryInto<usize>>(len: T) -> usize {
    len.try_into().unwrap_or(usize::MAX)
}

/// Fills `iovs` and `hdrs` (empty, with capacity for one entry per address) with one
/// message header per slot of `data`: slot `i` is `data[i * slot..]` (`iov_len` bytes) and
/// its address `addrs[i]`. The headers point into the three buffers, whose heap storage
/// must then neither move nor grow while the headers are used.
fn link_headers(
    data: &mut [u8],
    slot: usize,
    iov_len: usize,
    addrs: &mut [libc::sockaddr_storage],
    iovs: &mut Vec<libc::iovec>,
    hdrs: &mut Vec<libc::mmsghdr>,
) {
    let count = addrs.len();
    assert!(
        data.len() >= count * slot && iovs.capacity() >= count && hdrs.capacity() >= count,
        "room for every slot's header"
    );
    let base = data.as_mut_ptr();
    for i in 0..count {
        iovs.push(libc::iovec {
            // SAFETY: i * slot < data.len() (asserted above: data holds count * slot bytes).
            iov_base: unsafe { base.add(i * slot) }.cast(),
            iov_len,
        });
    }
    for (i, addr) in addrs.iter_mut().enumerate() {
        // SAFETY: msghdr is plain old data; zero is a valid starting value for every field.
        let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        msg.msg_name = (addr as *mut libc::sockaddr_storage).cast();
        msg.msg_iov = &mut iovs[i];
        msg.msg_iovlen = 1;
        hdrs.push(libc::mmsghdr {
            msg_hdr: msg,
            msg_len: 0,
        });
    }
}

/// Fixed send buffers for one `sendmmsg` call: datagrams are written straight into the
/// next free slot ([`SendBatch::slot`]), committed with their destination, and sent
/// together by [`SendBatch::flush`]. Allocated once; a batch costs no allocation.
pub struct SendBatch {
    m: Slots,
    filled: usize,
}

impl SendBatch {
    pub fn new(count: usize, slot: usize) -> Self {
        SendBatch {
            m: Slots::new(count, slot, 0, false),
            filled: 0,
        }
    }

    /// As [`SendBatch::new`], and each datagram may name the local address it leaves
    /// from: [`SendBatch::commit_from`] (for a socket bound to a wildcard address).
    pub fn with_sources(count: usize, slot: usize) -> Self {
        SendBatch {
            m: Slots::new(count, slot, 0, true),
            filled: 0,
        }
    }

    /// Datagrams waiting for [`SendBatch::flush`].
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    pub fn is_full(&self) -> bool {
        self.filled == self.m.hdrs.len()
    }

    /// The next free slot, to write a datagram into (check [`SendBatch::is_full`] first:
    /// a full batch hands out its last slot again).
    pub fn slot(&mut self) -> &mut [u8] {
        let i = self.filled.min(self.m.hdrs.len() - 1);
        &mut self.m.data[i * self.m.slot..(i + 1) * self.m.slot]
    }

    /// Keeps the first `len` bytes written into [`SendBatch::slot`], for `to`.
    pub fn commit(&mut self, to: SocketAddr, len: usize) {
        self.commit_from(to, None, len);
    }

    /// As [`SendBatch::commit`], leaving from local address `from` (`IP_PKTINFO`'s
    /// `ipi_spec_dst`, `IPV6_PKTINFO`'s address) when the batch was made
    /// [`SendBatch::with_sources`]; otherwise, or with `None`, the kernel picks it.
    pub fn commit_from(&mut self, to: SocketAddr, from: Option<IpAddr>, len: usize) {
        if self.is_full() {
            return;
        }
        let i = self.filled;
        let namelen = std_to_sockaddr(to, &mut self.m.addrs[i]);
        self.m.iovs[i].iov_len = len.min(self.m.slot);
        let ctrl = self.m.ctrl(i);
        let hdr = &mut self.m.hdrs[i].msg_hdr;
        hdr.msg_namelen = namelen;
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
        if let (Some(ctrl), Some(from)) = (ctrl, from) {
            hdr.msg_control = ctrl;
            hdr.msg_controllen = (CTRL_WORDS * 8) as _; // usize on glibc, socklen_t on musl
            // SAFETY: msg_control points at this slot's CTRL_WORDS words (64 bytes, aligned
            // for cmsghdr), which CMSG_FIRSTHDR then finds non-null; CMSG_SPACE of either
            // pktinfo (at most 40 bytes) fits in it, so the header and its payload written
            // below stay inside the slot's buffer. The payload is written unaligned.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(hdr);
                let (level, kind, len, space) = match from {
                    IpAddr::V4(_) => {
                        let n = mem::size_of::<libc::in_pktinfo>() as libc::c_uint;
                        (libc::IPPROTO_IP, libc::IP_PKTINFO, n, libc::CMSG_SPACE(n))
                    }
                    IpAddr::V6(_) => {
                        let n = mem::size_of::<libc::in6_pktinfo>() as libc::c_uint;
                        (
                            libc::IPPROTO_IPV6,
                            libc::IPV6_PKTINFO,
                            n,
                            libc::CMSG_SPACE(n),
                        )
                    }
                };
                (*cmsg).cmsg_level = level;
                (*cmsg).cmsg_type = kind;
                (*cmsg).cmsg_len = libc::CMSG_LEN(len) as _;
                let data = libc::CMSG_DATA(cmsg);
                match from {
                    IpAddr::V4(ip) => std::ptr::write_unaligned(
                        data.cast(),
                        libc::in_pktinfo {
                            ipi_ifindex: 0,
                            ipi_spec_dst: libc::in_addr {
                                s_addr: u32::from(ip).to_be(),
                            },
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        },
                    ),
                    IpAddr::V6(ip) => std::ptr::write_unaligned(
                        data.cast(),
                        libc::in6_pktinfo {
                            ipi6_addr: libc::in6_addr {
                                s6_addr: ip.octets(),
                            },
                            ipi6_ifindex: 0,
                        },
                    ),
                }
                hdr.msg_controllen = space as _;
            }
        }
        self.filled += 1;
    }

    /// Sends what was committed, on `fd`, and empties the batch. Returns how many
    /// datagrams left and how many were dropped (a full socket buffer, an unreachable
    /// destination): UDP media is not retransmitted.
    pub fn flush(&mut self, fd: RawFd) -> (usize, usize) {
        let (mut sent, mut dropped, mut at) = (0, 0, 0);
        // bounded: every turn sends at least one datagram or drops one
        while at < self.filled {
            let count = self.filled - at;
            // SAFETY: hdrs[at..filled] are initialised mmsghdr whose name, iov and control
            // pointers point into the heap storage of `self.m.addrs`, `self.m.iovs`,
            // `self.m.data` and `self.m.ctrl` (or are null with length 0), which live as
            // long as `self` and are not otherwise borrowed during this call; the kernel
            // only reads msg_namelen bytes of each address, iov_len bytes of each slot and
            // msg_controllen bytes of control.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.m.hdrs[at..].as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT as _, // c_int on glibc, c_uint on musl
                )
            };
            if n > 0 {
                sent += n as usize;
                at += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if n == 0 || e.kind() == io::ErrorKind::WouldBlock {
                dropped += count;
                break;
            }
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // this datagram cannot go (its destination): skip it, send the rest
            dropped += 1;
            at += 1;
        }
        self.filled = 0;
        (sent, dropped)
    }
}

/// Writes `addr` into `storage`; returns the length the kernel is to read.
fn std_to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for a
            // sockaddr_in; every field is written below.
            let sin: &mut libc::sockaddr_in =
                unsafe { &mut *(storage as *mut libc::sockaddr_storage).cast() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: &mut libc::sockaddr_in6 =
                unsafe { &mut *(storage as *mut libc::sockaddr_storage).cast() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
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

/// Asks the kernel to tell the local address each datagram of UDP socket `fd` arrived on
/// (`IP_PKTINFO` for an IPv4 socket, `IPV6_RECVPKTINFO` for an IPv6 one, which covers its
/// IPv4 datagrams too: one control message per datagram, as a slot has room for), for
/// [`RecvBatch::with_destinations`].
pub fn receive_destinations(fd: RawFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// `setsockopt` of an option whose value is one `int`.
fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads size_of::<c_int>() bytes from `value`, which lives across
    // the call; a bad fd or option is reported as an error.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks for `bytes` of kernel receive and send buffer on a UDP socket and returns the
/// receive buffer the kernel granted (it caps the request at `net.core.rmem_max` and
/// reports twice what it uses for data). A shard's WebRTC socket carries every call of the
/// shard: at 50 000 packets a second the default 208 KiB holds a few milliseconds, and a
/// shard that is off the CPU for longer would lose packets.
pub fn set_socket_buffers(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        set_int_option(fd, libc::SOL_SOCKET, option, value)?;
    }
    let mut granted: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (one c_int) into `granted` and the
    // actual length into `len`; both live across the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut granted as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(granted.max(0) as usize)
}

/// Raises this process's soft limit of open files (`RLIMIT_NOFILE`) to its hard limit
/// (at most 1 048 576, the kernel's usual `nr_open`) and returns the limit now in force.
/// Each call holds a few descriptors; a soft limit of 1 024, the default of many
/// distributions, would stop a gateway at a few hundred calls.
// rlim_t is u64 here but 32 bits on 32-bit glibc targets: the casts are not redundant there.
#[allow(clippy::unnecessary_cast)]
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, which we own and which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let want = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur as u64);
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit from `raised`, which we own and which outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(want as u64)
}

/// Makes the files srgate creates from now on (log, rotated logs, CDR files) unreadable
/// by other users: adds group-write and all of "other" to the process's file mode
/// creation mask (a umask of 022 becomes 027: new files 0640). Call it before any thread
/// starts.
pub fn restrict_new_files() {
    // SAFETY: umask only swaps the process's creation mask and cannot fail; the second
    // call puts back the old mask with the bits added.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old | 0o027);
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

/// The system's memory page size (0 if it cannot be read).
fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(0)
}

/// Gives the pages that lie wholly inside `buf` back to the kernel (`madvise`
/// `MADV_DONTNEED`): they stop counting in the resident set and read as zeros when next
/// touched. For memory of the process's own allocations (private anonymous pages), whose
/// contents the caller no longer needs. Returns the bytes given back.
pub fn discard(buf: &mut [u8]) -> usize {
    let page = page_size();
    if page == 0 {
        return 0;
    }
    let addr = buf.as_mut_ptr() as usize;
    let start = addr.div_ceil(page) * page;
    let end = (addr + buf.len()) / page * page;
    if end <= start {
        return 0;
    }
    // SAFETY: start - addr < buf.len() (end > start), so `first` points into `buf`;
    // [start, end) is page-aligned and lies inside `buf`, which we borrow
    // mutably, so no other reference sees these bytes change; the pages are the process's
    // own private anonymous memory (a heap or mmap allocation of the C allocator), which
    // MADV_DONTNEED leaves mapped and zero-filled on the next touch, and zero is a valid
    // value of every byte. The allocator's own bookkeeping lies outside `buf`.
    let r = unsafe {
        let first = buf.as_mut_ptr().add(start - addr);
        libc::madvise(first.cast(), end - start, libc::MADV_DONTNEED)
    };
    if r == 0 { end - start } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Receives on `rx` into `batch` until `want` datagrams came (bounded: 100 tries, 5 ms
    /// apart): each one's source, bytes, truncation flag and destination.
    type Got = (SocketAddr, Vec<u8>, bool, Option<IpAddr>);
    fn receive(rx: &std::net::UdpSocket, batch: &mut RecvBatch, want: usize) -> Vec<Got> {
        let mut got = Vec::new();
        for _ in 0..100 {
            match batch.recv(rx.as_raw_fd()) {
                Ok(_) => {
                    for i in 0..batch.len() {
                        let (from, bytes, cut) = batch.get(i).unwrap();
                        got.push((from.unwrap(), bytes.to_vec(), cut, batch.destination(i)));
                    }
                    if got.len() >= want {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        got
    }

    #[test]
    fn discarded_pages_read_as_zeros_and_the_rest_is_kept() {
        let page = page_size();
        let mut buf = vec![0xabu8; 16 * page];
        let (from, to) = (1000, 12 * page + 1000);
        let given = discard(&mut buf[from..to]);
        assert!(
            given >= to - from - 2 * page && given.is_multiple_of(page),
            "{given}"
        );
        // what was given back reads as zeros; bytes outside the range, and in its partial
        // pages, keep their value
        assert!(buf[..from].iter().all(|&b| b == 0xab));
        assert!(buf[to..].iter().all(|&b| b == 0xab));
        let base = buf.as_ptr() as usize;
        if !(base + from).is_multiple_of(page) {
            assert_eq!(buf[from], 0xab, "a partial page is kept");
        }
        if !(base + to).is_multiple_of(page) {
            assert_eq!(buf[to - 1], 0xab, "a partial page is kept");
        }
        let zeros = buf[from..to].iter().filter(|&&b| b == 0).count();
        assert_eq!(zeros, given);
        assert_eq!(discard(&mut buf[10..20]), 0, "no whole page inside");
    }

    #[test]
    fn a_send_batch_reaches_several_destinations_v4_and_v6() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = std::net::UdpSocket::bind("[::1]:0").ok();
        let tx = std::net::UdpSocket::bind("[::]:0")
            .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))
            .unwrap();
        let mut batch = SendBatch::new(4, 64);
        let mut put = |to: SocketAddr, bytes: &[u8]| {
            assert!(!batch.is_full());
            batch.slot()[..bytes.len()].copy_from_slice(bytes);
            batch.commit(to, bytes.len());
        };
        let v4 = |s: &std::net::UdpSocket| {
            let p = s.local_addr().unwrap().port();
            // through a dual-stack socket when there is one
            if tx.local_addr().unwrap().is_ipv6() {
                format!("[::ffff:127.0.0.1]:{p}").parse().unwrap()
            } else {
                s.local_addr().unwrap()
            }
        };
        put(v4(&a), b"to a");
        put(v4(&b), b"to b, longer");
        put(v4(&a), b"again a");
        if let (Some(c), true) = (&c, tx.local_addr().unwrap().is_ipv6()) {
            put(c.local_addr().unwrap(), b"six");
        }
        let queued = batch.len();
        let (sent, dropped) = batch.flush(tx.as_raw_fd());
        assert_eq!((sent, dropped), (queued, 0));
        assert!(batch.is_empty());
        let mut buf = [0u8; 64];
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to a");
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"again a");
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to b, longer");
        if let (Some(c), 4) = (&c, queued) {
            c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let n = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"six");
        }
    }

    #[test]
    fn batch_receives_several_datagrams_with_sources() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two!", to).unwrap();
        tx.send_to(&[7u8; 40], to).unwrap();
        let got = receive(&rx, &mut RecvBatch::new(4, 16), 3);
        let src = tx.local_addr().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (src, b"one".to_vec(), false, None));
        assert_eq!(got[1], (src, b"two!".to_vec(), false, None));
        assert_eq!(
            got[2].1.len(),
            16,
            "a datagram larger than a slot is cut to the slot"
        );
        assert!(got[2].2, "and flagged as truncated");
    }

    #[test]
    fn a_batch_tells_each_datagrams_destination_and_sends_from_a_chosen_address() {
        let pairs = [("127.0.0.1:0", false), ("[::1]:0", true)];
        for (bind, v6) in pairs {
            let Ok(rx) = std::net::UdpSocket::bind(bind) else {
                continue; // no IPv6 loopback here
            };
            let tx = std::net::UdpSocket::bind(bind).unwrap();
            receive_destinations(rx.as_raw_fd(), v6).unwrap();
            let (to, local) = (rx.local_addr().unwrap(), tx.local_addr().unwrap());
            let mut out = SendBatch::with_sources(4, 64);
            out.slot()[..5].copy_from_slice(b"first");
            out.commit_from(to, Some(local.ip()), 5);
            out.slot()[..6].copy_from_slice(b"second");
            out.commit(to, 6);
            assert_eq!(out.flush(tx.as_raw_fd()), (2, 0), "{bind}");
            let got = receive(&rx, &mut RecvBatch::with_destinations(4, 64), 2);
            assert_eq!(
                got,
                [
                    (local, b"first".to_vec(), false, Some(to.ip())),
                    (local, b"second".to_vec(), false, Some(to.ip())),
                ],
                "{bind}"
            );
            // a batch without the option tells nothing
            tx.send_to(b"x", to).unwrap();
            let got = receive(&rx, &mut RecvBatch::new(2, 64), 1);
            assert_eq!(got, [(local, b"x".to_vec(), false, None)], "{bind}");
        }
    }
}
