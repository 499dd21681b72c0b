//! Packet-buffer pools (`rte_pktmbuf_pool_create`), freed on drop.

use std::ffi::CString;
use std::ptr::NonNull;

use super::eal::Initialized;
use super::error::{DpdkError, Result};
use super::ffi;

/// A pool of packet buffers in hugepage memory.
pub struct Mempool {
    ptr: NonNull<ffi::rte_mempool>,
    size: u32,
    /// Bytes of frame one mbuf holds (its data room past the headroom).
    room: u16,
}

/// `RTE_PKTMBUF_HEADROOM` of DPDK's default configuration (Debian's build): the data room
/// a pool is created with includes it.
const HEADROOM: u16 = 128;

// SAFETY: an rte_mempool is built for concurrent use from many lcores (lock-free ring plus
// per-lcore caches); the pointer stays valid until Drop, which needs exclusive ownership.
unsafe impl Send for Mempool {}
// SAFETY: as above; every method takes &self and calls thread-safe mempool functions.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `rte_pktmbuf_pool_create`: `n` mbufs (2^k - 1 is optimal for the ring), a per-lcore
    /// cache of `cache` mbufs and `data_room` bytes of buffer each (headroom included).
    ///
    /// # Errors
    /// ENOMEM when hugepage memory is short; EEXIST for a duplicate name.
    pub fn pktmbuf_pool_create(_: Initialized, name: &str, n: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name).map_err(|_| DpdkError::from_ret("mempool name", -libc::EINVAL))?;
        // SAFETY: cname is a valid C string for the duration of the call (DPDK copies it).
        let p = unsafe { ffi::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        match NonNull::new(p) {
            Some(ptr) => Ok(Mempool { ptr, size: n, room: data_room.saturating_sub(HEADROOM) }),
            None => Err(DpdkError::from_rte_errno(format!("rte_pktmbuf_pool_create({name}, {n} mbufs)"))),
        }
    }

    /// Mbufs currently allocated (not in the ring nor in any lcore cache).
    pub fn in_use(&self) -> u32 {
        // SAFETY: self.ptr is a live mempool.
        unsafe { ffi::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// The longest frame one mbuf of this pool holds.
    pub fn frame_room(&self) -> usize {
        usize::from(self.room)
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: we own the pool; all users (ports, workers) hold an Arc<Mempool>, so when
        // this runs none of them is left.
        unsafe { ffi::rte_mempool_free(self.ptr.as_ptr()) }
    }
}
