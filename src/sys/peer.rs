//! Who is at the other end of a Unix socket (`SO_PEERCRED`, unix(7)): the control socket
//! acts for a client only as far as that client may act itself.

use std::os::fd::AsRawFd;

/// The uid and gid of the process that connected `s`, as the kernel recorded them at
/// connect time; None if the kernel does not say.
pub fn credentials(s: &impl AsRawFd) -> Option<(u32, u32)> {
    let mut c = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `c` is a live, writable ucred and `len` its exact size, as SO_PEERCRED
    // requires; the kernel writes at most `len` bytes into it and nothing else.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut c as *mut libc::ucred).cast(), &mut len) };
    (r == 0 && len as usize == std::mem::size_of::<libc::ucred>()).then_some((c.uid, c.gid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_socket_pair_is_its_own_peer() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let me = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!(super::credentials(&a), Some(me));
    }
}
