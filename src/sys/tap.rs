//! Linux TAP devices (the host-interface twins of routed interfaces): a character
//! device per interface, opened non-blocking, read and written one Ethernet frame per
//! system call by the router's slow-path thread (never a worker). The device disappears
//! when the file closes, so a crash leaves no interface behind.
//!
//! Why not DPDK's `net_tap`: a twin's traffic is the exception path (a routing daemon's
//! sessions, ARP replies for the kernel), already in the slow path as copied frames; a
//! second DPDK port per interface would need queues, mbufs and a poller for a few
//! packets per second.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags (linux/if.h).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// An open TAP device.
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates TAP device `name` (no packet-information header: frames as they are).
    ///
    /// # Errors
    /// /dev/net/tun missing (module `tun` not loaded), the name is taken by another kind
    /// of device, or not root.
    pub fn open(name: &str) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a Linux interface name (1-15 characters)")));
        }
        let path = c"/dev/net/tun";
        // SAFETY: a NUL-terminated path; the returned fd is checked and then owned.
        let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is (40 bytes,
        // C layout) and outlives the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap { fd, name: name.to_string() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One frame the kernel sent on the device into `buf`; None when there is none.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: writes at most `buf.len()` bytes into `buf`, which we borrow mutably.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// Hands one frame to the kernel as if it had arrived on the device.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: reads `frame.len()` bytes from `frame`.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tap;

    #[test]
    fn rejects_names_linux_would_refuse() {
        for n in ["", "0123456789abcdef", "a/b", "a b"] {
            assert!(Tap::open(n).is_err(), "{n:?}");
        }
    }
}
