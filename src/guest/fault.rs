//! Guest memory a frontend pulls away: a mapping of a file that the frontend truncates
//! afterwards faults with SIGBUS on the next access past the new end (mmap(2): "Attempted
//! access to a portion of the buffer that does not correspond to the file"), which would
//! kill the whole switch for one tenant's doing. rte_vhost has the same weakness.
//!
//! Two answers were possible: require the frontend's memfd to be sealed against shrinking
//! (F_SEAL_SHRINK), or survive the fault. Sealing would refuse every DPDK virtio-user
//! frontend (its memory is hugepage files or unsealed memfds; QEMU seals its memfd
//! backend by default, but not file backends), so pmdswitch survives the fault instead:
//! every mapping `GuestMemory::map` makes is registered here, and a SIGBUS handler that
//! finds the faulting address inside one replaces that whole mapping, in place, with
//! private anonymous zero pages (mmap MAP_FIXED, one system call, async-signal-safe on
//! Linux) and marks it faulted. The access that faulted is restarted and reads zeros (or
//! writes into the private copy): garbage for that guest's rings, which the ring code
//! refuses like any other. The control plane sees the mark and withdraws the device
//! (`GuestMemory::faulted`). A SIGBUS anywhere else keeps its default action: the
//! process dies as it would have.
//!
//! The registry is a fixed table of atomics (a signal handler may not take locks or
//! allocate); a mapping is registered before it is handed out and unregistered before it
//! is unmapped, and the table is read by the handler only.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Guest mappings guarded at once (regions of every guest together: 64 guests of 8
/// regions each, twice over for snapshots being replaced).
pub const MAX_GUARDED: usize = 1024;

struct Guarded {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Guarded = Guarded { start: AtomicUsize::new(0), len: AtomicUsize::new(0), faulted: AtomicBool::new(false) };
static TABLE: [Guarded; MAX_GUARDED] = [FREE; MAX_GUARDED];
static INSTALL: Once = Once::new();
/// Faults survived since start (for the log and the tests).
pub static SURVIVED: AtomicUsize = AtomicUsize::new(0);

/// A registered mapping; unregistered on drop.
pub struct Guard(usize);

impl Guard {
    /// Registers `[start, start + len)`; None when the table is full.
    pub fn new(start: usize, len: usize) -> Option<Guard> {
        INSTALL.call_once(install);
        for (i, g) in TABLE.iter().enumerate() {
            if g.start.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                g.faulted.store(false, Ordering::Release);
                g.len.store(len, Ordering::Release);
                return Some(Guard(i));
            }
        }
        None
    }

    /// The handler replaced this mapping after a fault.
    pub fn faulted(&self) -> bool {
        TABLE[self.0].faulted.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let g = &TABLE[self.0];
        g.len.store(0, Ordering::Release);
        g.start.store(0, Ordering::Release);
    }
}

fn install() {
    // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn of the
    // SA_SIGINFO signature; sigaction only reads `sa` for the call.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for g in &TABLE {
        let (start, len) = (g.start.load(Ordering::Acquire), g.len.load(Ordering::Acquire));
        if start != 0 && addr >= start && addr - start < len {
            // SAFETY: [start, start + len) is a live guest mapping of ours (registered
            // until just before munmap, and a thread touching it holds the GuestMemory);
            // replacing it in place keeps every pointer into it valid. Only an mmap
            // system call: async-signal-safe in practice on Linux.
            let p = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                g.faulted.store(true, Ordering::Release);
                SURVIVED.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    // Not guest memory: the default action, on the access that faults again.
    // SAFETY: resetting a signal's disposition is async-signal-safe.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
}
