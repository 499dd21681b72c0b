//! A NETLINK_ROUTE socket (rtnetlink(7)): the one system-call surface of the Linux route
//! mirror. Messages are decoded elsewhere (`control::linux::msg`), from byte slices, so
//! that code stays safe and property-tested.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    /// Opens a route socket joined to multicast `groups` (RTNLGRP_* numbers, not masks),
    /// with a receive buffer of `rcvbuf` bytes (forced past rmem_max: root).
    ///
    /// # Errors
    /// socket(2), setsockopt(2) or bind(2) failed.
    pub fn open(groups: &[u32], rcvbuf: usize) -> io::Result<Netlink> {
        // SAFETY: plain syscall; the fd is checked and then owned.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = Netlink { fd };
        let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
        if s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
        // Strict checking lets the kernel filter dumps (a table, a family) for us.
        let _ = s.setsockopt(libc::SOL_NETLINK, libc::NETLINK_GET_STRICT_CHK, 1);
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: binds our fd to a sockaddr_nl of the size we pass.
        let r = unsafe {
            libc::bind(s.fd.as_raw_fd(), (&sa as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32)
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for &g in groups {
            s.setsockopt(libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, g as libc::c_int)?;
        }
        Ok(s)
    }

    fn setsockopt(&self, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
        // SAFETY: passes a pointer to an int and its size, as these options expect.
        let r = unsafe {
            libc::setsockopt(self.fd.as_raw_fd(), level, name, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32)
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sends one request (a whole netlink message) to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero (pid 0) addresses the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: reads `msg.len()` bytes of `msg` and a sockaddr_nl of the size given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// One datagram (one or more messages) into `buf`, waiting at most `timeout_ms`;
    /// None on timeout. ENOBUFS (the kernel dropped messages: resync) is an error of
    /// that kind the caller checks with `raw_os_error()`.
    pub fn recv(&self, buf: &mut [u8], timeout_ms: i32) -> io::Result<Option<usize>> {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd we own, count 1.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(None) } else { Err(e) };
        }
        if r == 0 {
            return Ok(None);
        }
        // SAFETY: writes at most `buf.len()` bytes into `buf`, which we borrow mutably.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
        }
        Ok(Some(n as usize))
    }
}

/// The index of Linux interface `name` (0 when there is none), from sysfs.
pub fn ifindex(name: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}
