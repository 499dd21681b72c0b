//! The operating system and the CPU, the other place besides `dpdk` allowed `unsafe`:
//! tables in transparent huge pages (`hugemem`), the workers' eventfd doorbell and
//! poll(2) sleep (`idle`), TAP devices and the rtnetlink socket of the Linux mirror
//! (`tap`, `netlink`), a Unix socket's peer credentials (`peer`), and the time-stamp
//! counter.
#![allow(unsafe_code)]

pub mod hugemem;
pub mod idle;
pub mod netlink;
pub mod peer;
pub mod tap;

/// Reads the time-stamp counter (what `rte_rdtsc()` does), inlined into the worker loop.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects and exists on every x86_64 CPU DPDK supports.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A hint to load the line holding `p` (a table entry a burst will read soon).
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory; the address is a reference's.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const T as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
