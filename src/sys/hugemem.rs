//! Big read-mostly tables (the bridge's MAC table) in 2 MiB pages of ordinary memory.
//!
//! Why: a worker probes the MAC table at a random slot for every packet of a new flow.
//! With 4 KiB pages the default 4 MiB table spans 1024 pages, more than the first-level
//! data TLB holds, so probes also walk the page tables (under a hypervisor, a
//! two-dimensional walk); in 2 MiB pages the bridge needed 199 instead of 210 cycles per
//! packet with 8192 stations (6-round A/B in the vhost loop). Transparent huge pages are
//! `madvise` mode on Debian 12 (`/sys/kernel/mm/transparent_hugepage/enabled`), so the
//! region is mapped 2 MiB-aligned and advised with `MADV_HUGEPAGE` before it is first
//! touched. Not hugetlbfs: the table must also exist in unit tests and before/without the
//! EAL, and its size is known only at run time; if the kernel has no huge page to give,
//! the advice is silently 4 KiB pages.

use std::ops::Deref;

const HUGE: usize = 2 << 20;

/// A fixed-length slice of `T`, each element built with `T::default()`, in an anonymous
/// mapping advised for transparent huge pages. Freed (elements dropped, then unmapped)
/// on drop.
pub struct HugeSlice<T> {
    map: *mut libc::c_void,
    map_len: usize,
    elems: *mut T,
    len: usize,
}

// SAFETY: HugeSlice owns its elements like a Box<[T]> does; sharing or sending it is
// sharing or sending the Ts.
unsafe impl<T: Send> Send for HugeSlice<T> {}
// SAFETY: as above: &HugeSlice only hands out &T.
unsafe impl<T: Sync> Sync for HugeSlice<T> {}

/// Types whose all-zero bytes are a valid value equal to their default (atomics and
/// plain integers): a [`HugeSlice`] of them needs no initialising writes, so pages the
/// program never writes are never backed (a sparse table: an IPv6 FIB's first level).
///
/// # Safety
/// All-zero bytes must be a valid `T` equal to `T::default()`.
pub unsafe trait ZeroDefault: Default {}
// SAFETY: integers and their atomics are valid for every bit pattern, and 0 is their default.
unsafe impl ZeroDefault for std::sync::atomic::AtomicU32 {}
// SAFETY: as above.
unsafe impl ZeroDefault for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl ZeroDefault for u32 {}
// SAFETY: as above.
unsafe impl ZeroDefault for u64 {}

impl<T: ZeroDefault> HugeSlice<T> {
    /// `len` default elements without touching them: an anonymous mapping reads as zero
    /// until written, and zero is `T`'s default (see [`ZeroDefault`]).
    pub fn zeroed(len: usize) -> HugeSlice<T> {
        Self::map(len)
    }
}

impl<T: Default> HugeSlice<T> {
    /// `len` default elements. Falls back to 4 KiB pages when huge pages are refused;
    /// panics only when the address space itself is exhausted (as `Vec` would abort).
    pub fn new(len: usize) -> HugeSlice<T> {
        let s = Self::map(len);
        for i in 0..len {
            // SAFETY: in bounds (map's mapping holds len elements), aligned (the start is
            // 2 MiB-aligned and i·size_of::<T> keeps T's alignment), written once before
            // any read.
            unsafe { s.elems.add(i).write(T::default()) };
        }
        s
    }
}

impl<T> HugeSlice<T> {
    /// Maps room for `len` elements, 2 MiB-aligned and advised for huge pages; the
    /// elements are zero bytes (valid only for a [`ZeroDefault`] T until written).
    fn map(len: usize) -> HugeSlice<T> {
        assert!(std::mem::align_of::<T>() <= HUGE);
        let bytes = std::mem::size_of::<T>().checked_mul(len).expect("table size overflows");
        // Over-allocate by one huge page so that a 2 MiB-aligned start exists inside.
        let map_len = bytes.max(1).div_ceil(HUGE) * HUGE + HUGE;
        // SAFETY: an anonymous private mapping: no file, no aliasing; checked below.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), map_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        assert!(map != libc::MAP_FAILED, "mmap of {map_len} bytes for a table failed: {}", std::io::Error::last_os_error());
        let offset = (HUGE - (map as usize % HUGE)) % HUGE;
        // SAFETY: offset < HUGE and map_len ≥ bytes + HUGE, so start..start+bytes is inside
        // the mapping.
        let start = unsafe { (map as *mut u8).add(offset) };
        // SAFETY: advice on our own fresh mapping; its failure (THP off) only means 4 KiB
        // pages, so the result is ignored on purpose.
        unsafe { libc::madvise(start as *mut libc::c_void, map_len - offset, libc::MADV_HUGEPAGE) };
        let elems = start as *mut T;
        HugeSlice { map, map_len, elems, len }
    }
}

impl<T> Deref for HugeSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: elems..elems+len were all initialised in new and live until drop.
        unsafe { std::slice::from_raw_parts(self.elems, self.len) }
    }
}

impl<T> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: each element is dropped once, then the mapping we made is unmapped; no
        // reference outlives &mut self.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.elems, self.len));
            libc::munmap(self.map, self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[test]
    fn elements_start_default_are_aligned_and_writable() {
        let s: HugeSlice<AtomicU64> = HugeSlice::new(300_000);
        assert_eq!(s.len(), 300_000);
        assert_eq!(s.as_ptr() as usize % HUGE, 0);
        assert!(s.iter().all(|a| a.load(Relaxed) == 0));
        s[299_999].store(7, Relaxed);
        assert_eq!(s[299_999].load(Relaxed), 7);
    }

    #[test]
    fn drops_every_element() {
        use std::sync::Arc;
        let probe = Arc::new(());
        #[derive(Default)]
        struct Holder(Option<Arc<()>>);
        let s: HugeSlice<std::sync::Mutex<Holder>> = HugeSlice::new(2);
        s[1].lock().unwrap().0 = Some(probe.clone());
        assert_eq!(Arc::strong_count(&probe), 2);
        drop(s);
        assert_eq!(Arc::strong_count(&probe), 1);
    }

    #[test]
    fn zeroed_reads_default_and_is_writable() {
        let s: HugeSlice<AtomicU64> = HugeSlice::zeroed(1 << 20);
        assert!(s.iter().step_by(4096).all(|a| a.load(Relaxed) == 0));
        s[(1 << 20) - 1].store(9, Relaxed);
        assert_eq!(s[(1 << 20) - 1].load(Relaxed), 9);
    }

    #[test]
    fn empty_is_fine() {
        let s: HugeSlice<u64> = HugeSlice::new(0);
        assert!(s.is_empty());
    }
}
