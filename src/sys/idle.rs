//! The idle path of adaptive workers: an eventfd doorbell the control plane rings, and a
//! bounded wait on it plus the guests' kick eventfds. Only reached after a worker's rx
//! queues have all been empty for the idle threshold; the busy path never gets here.
//!
//! poll(2) over a set rebuilt at each sleep rather than a long-lived epoll set: kick fds
//! change whenever a guest re-sends SET_VRING_KICK (reset, reconnect), and a fresh set of
//! a handful of fds costs one system call, so nothing can go stale.

use std::io;

/// An eventfd the control plane writes to wake a sleeping worker.
pub struct Doorbell {
    fd: i32,
}

impl Doorbell {
    /// # Errors
    /// eventfd(2) failed (fd limit).
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: plain syscall; we own the returned fd.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Doorbell { fd })
    }

    /// Wakes the worker if it sleeps (and makes its next sleep return at once).
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd; EAGAIN (counter full)
        // means it is rung already.
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        drain_fd(self.fd);
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        // SAFETY: we own the fd and close it once.
        unsafe { libc::close(self.fd) };
    }
}

fn drain_fd(fd: i32) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a valid u64; the fd is an eventfd the poll
    // reported readable, so the read does not block.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// Why a sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Kick,
    Doorbell,
    Timeout,
}

/// Sleeps until a kick fd, an rx interrupt fd or the doorbell fires, or `timeout_ms`
/// passes. Kick eventfds and the doorbell are cleared when they fire (so the next sleep
/// does not return at once); rx interrupt fds are left to their driver (a tap fd, for
/// one, holds packets, and the next rx burst empties it).
pub fn sleep(kicks: &[i32], rx_intr: &[i32], bell: &Doorbell, timeout_ms: i32) -> Wake {
    let mut fds: [libc::pollfd; 65] = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 65];
    fds[0] = libc::pollfd { fd: bell.fd, events: libc::POLLIN, revents: 0 };
    let n = kicks.len().min(32);
    for (i, &k) in kicks[..n].iter().enumerate() {
        fds[i + 1] = libc::pollfd { fd: k, events: libc::POLLIN, revents: 0 };
    }
    let m = rx_intr.len().min(32);
    for (i, &k) in rx_intr[..m].iter().enumerate() {
        fds[n + 1 + i] = libc::pollfd { fd: k, events: libc::POLLIN, revents: 0 };
    }
    // SAFETY: fds[..n+m+1] are initialised pollfds; poll writes only their revents.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), (n + m + 1) as libc::nfds_t, timeout_ms) };
    if ret <= 0 {
        return Wake::Timeout;
    }
    let mut why = Wake::Timeout;
    if fds[0].revents & libc::POLLIN != 0 {
        bell.drain();
        why = Wake::Doorbell;
    }
    for f in &fds[1..=n] {
        if f.revents & libc::POLLIN != 0 {
            drain_fd(f.fd);
            why = Wake::Kick;
        }
    }
    if fds[n + 1..n + 1 + m].iter().any(|f| f.revents & libc::POLLIN != 0) {
        why = Wake::Kick;
    }
    // An fd that reports only an error or hang-up (a tap interface deleted under us)
    // would make every later poll return at once: nap 1 ms instead of spinning.
    let broken = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
    if why == Wake::Timeout && fds[..=n + m].iter().any(|f| f.revents & broken != 0) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    why
}
