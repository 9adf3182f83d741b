//! The only module with `unsafe`: AF_PACKET sockets (open, bind, receive with the kernel's
//! nanosecond timestamp, send, drop statistics) and the real-time scheduling call. Everything
//! else in the crate uses [`PacketSocket`]'s safe methods.
//!
//! Why not a crate: `afpacket` is unmaintained since 2021, `pnet` gives neither kernel timestamps
//! nor the packet type; `nix` has no AF_PACKET bind/membership/statistics calls. TPACKET_V3 rings
//! hand frames over per block (after up to the block timeout): useless where a shaper reacts, so
//! this is plain `recvmsg` with `SO_TIMESTAMPNS`, one frame per call.
#![allow(unsafe_code)]

use std::{
    ffi::CString,
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

/// `sll_pkttype` of a frame this host sent (linux/if_packet.h).
pub const PACKET_OUTGOING: u8 = 4;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// How to open a [`PacketSocket`].
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// See every frame on the port, not only those addressed to it.
    pub promisc: bool,
    /// Do not see frames this host sends on the port (the shaper's own sends, other sockets').
    pub ignore_outgoing: bool,
    /// Receive buffer in bytes (SO_RCVBUFFORCE, falling back to SO_RCVBUF).
    pub rcvbuf: usize,
    /// `recv` gives up after this long (None: blocks).
    pub timeout: Option<Duration>,
}

/// One received frame: its length on the wire, the kernel's receive time (CLOCK_REALTIME, ns)
/// and its packet type ([`PACKET_HOST`], [`PACKET_OUTGOING`], ...).
#[derive(Debug, Clone, Copy)]
pub struct Rx {
    pub len: usize,
    pub wire_len: usize,
    pub ts_ns: i64,
    pub pkttype: u8,
}

/// A raw AF_PACKET socket bound to one interface (ETH_P_ALL).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    pub name: String,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference to a `T` of `size_of::<T>()` bytes for the call.
    let r = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t) };
    check(r).map(drop)
}

impl PacketSocket {
    pub fn open(ifname: &str, opts: Open) -> io::Result<Self> {
        let cname = CString::new(ifname).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname:?}")));
        }
        // SAFETY: plain socket(2) call; the returned descriptor is owned below.
        let raw = check(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(ETH_P_ALL.to_be()))
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll of the length given.
        check(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let one: libc::c_int = 1;
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &one)?;
        if opts.ignore_outgoing {
            setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &one)?;
        }
        if opts.promisc {
            // SAFETY: packet_mreq is plain data; all-zero is a valid value.
            let mut mreq: libc::packet_mreq = unsafe { zeroed() };
            mreq.mr_ifindex = ifindex;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
        }
        let buf = opts.rcvbuf as libc::c_int;
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buf).is_err() {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &buf)?;
        }
        if let Some(t) = opts.timeout {
            let tv =
                libc::timeval { tv_sec: t.as_secs() as libc::time_t, tv_usec: t.subsec_micros() as libc::suseconds_t };
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        }
        Ok(Self { fd, name: ifname.to_string() })
    }

    /// Receives one frame into `buf` (cut to its length; `Rx::wire_len` is the whole frame's).
    /// `Ok(None)` when the receive timeout passed.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Rx>> {
        // SAFETY: all-zero is valid for these plain-data structs.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        let mut control = [0u64; 16]; // 128 bytes, aligned for cmsghdr
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>();
        // SAFETY: `msg` points at `iov` (into `buf`), `from` and `control`, all alive and of
        // the lengths given, for the whole call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let mut ts_ns = None;
        // SAFETY: the CMSG_* walkers stay inside `msg.msg_control`/`msg_controllen`, which the
        // kernel filled; a SCM_TIMESTAMPNS message carries one `timespec` (read unaligned).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    ts_ns = Some(ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let wire_len = n as usize;
        Ok(Some(Rx {
            len: wire_len.min(buf.len()),
            wire_len,
            ts_ns: ts_ns.unwrap_or_else(now_ns),
            pkttype: from.sll_pkttype,
        }))
    }

    /// Sends one whole frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live slice of the length given.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!("sent {n} of {} bytes", frame.len())));
        }
        Ok(())
    }

    /// PACKET_STATISTICS since the last call: (frames received, frames dropped for want of
    /// buffer). The kernel resets its counters on each read.
    pub fn stats(&self) -> io::Result<(u64, u64)> {
        // SAFETY: tpacket_stats is plain data; the kernel writes at most `len` bytes into it.
        let mut st: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        })?;
        Ok((u64::from(st.tp_packets), u64::from(st.tp_drops)))
    }
}

/// CLOCK_REALTIME in nanoseconds (the clock of the kernel's receive timestamps).
pub fn now_ns() -> i64 {
    // SAFETY: all-zero timespec is valid; clock_gettime writes into it.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64
}

/// Sleeps until CLOCK_REALTIME reaches `deadline_ns` (absolute: no drift across sleeps).
pub fn sleep_until(deadline_ns: i64) {
    let ts = libc::timespec {
        tv_sec: deadline_ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: deadline_ns.rem_euclid(1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: valid clock id, flags and timespec; no remaining-time pointer with ABSTIME.
        let r = unsafe { libc::clock_nanosleep(libc::CLOCK_REALTIME, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
        if r != libc::EINTR {
            return;
        }
    }
}

/// Puts the calling thread under SCHED_FIFO at `priority` (1-99).
pub fn set_fifo(priority: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: pthread_self() is the calling thread; `param` is valid.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if r != 0 { Err(io::Error::from_raw_os_error(r)) } else { Ok(()) }
}
