//! Guest memory: the one place besides `dpdk` and `sys` allowed `unsafe`, and the only
//! code that touches memory a guest can write while we read it.
//!
//! A guest owns its memory and writes it concurrently with us, so nothing here hands out
//! a Rust reference into it: plain values are read by copy (`read_volatile`, once; the
//! caller checks what it got), buffers are copied in and out with bounds checked against
//! the region they lie in, and the ring indices the two sides hand each other are single
//! atomic loads and stores through a transient `&AtomicU16` (the one kind of reference
//! the memory model allows to be written concurrently, and only for the length of one
//! access).
//!
//! The memory is mapped by us, not borrowed from rte_vhost: [`GuestMemory::map`] maps
//! each region of the device's memory table again from its file descriptor, and the
//! mappings live exactly as long as the `GuestMemory` (shared by `Arc` between the
//! control plane's device snapshot and the workers' queue handles). A frontend that
//! replaces its memory table (`SET_MEM_TABLE`) makes rte_vhost unmap its own mappings;
//! ours stay valid until the last handle of the old snapshot is dropped, so a worker can
//! never touch unmapped memory, whatever the order of events. Tests build the same type
//! over heap memory ([`GuestMemory::simulated`]).
//!
//! Addresses: descriptors carry guest-physical addresses (virtio 1.1 §2.6.5); rte_vhost
//! reports the rings by their host address in *its* mapping, which
//! [`GuestMemory::ring`] translates into ours through the region table.
#![allow(unsafe_code)]

pub mod fault;

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// One region of guest memory as the device's memory table describes it.
#[derive(Debug, Clone, Copy)]
pub struct RegionDesc {
    /// Guest-physical address of the region's first byte.
    pub gpa: u64,
    pub size: u64,
    /// Where rte_vhost mapped the region's first byte (to translate its ring addresses).
    pub lib_hva: u64,
    /// The file to map, the mapping's length from offset 0, and where in it the region
    /// starts (vhost-user's `mmap_offset`).
    pub fd: i32,
    pub mmap_size: u64,
    pub mmap_offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct Region {
    gpa: u64,
    size: u64,
    lib_hva: u64,
    /// Our host address of the region's first byte.
    host: usize,
}

enum Backing {
    /// mmap()ed by us: (address, length) pairs, unmapped on drop, each guarded against
    /// its file being truncated under it ([`fault`]).
    Mapped(Vec<(usize, usize)>, Vec<fault::Guard>),
    /// Heap memory for tests: one raw allocation (never a `Box`, whose moves would
    /// assert uniqueness and invalidate the addresses taken from it — undefined
    /// behaviour that Miri reports), freed on drop.
    Heap(*mut u8, std::alloc::Layout),
}

/// A guest's memory: its regions, mapped for as long as this lives.
pub struct GuestMemory {
    regions: Box<[Region]>,
    backing: Backing,
}

// SAFETY: the mappings are process memory that any thread may access; every access goes
// through this module's copies and atomics, which need no exclusion (the guest writes
// the memory concurrently anyway), and the mappings are only unmapped in Drop, when no
// thread can hold the value any more.
unsafe impl Send for GuestMemory {}
// SAFETY: as above: &GuestMemory only permits copies and single atomic accesses.
unsafe impl Sync for GuestMemory {}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        if let Backing::Heap(p, layout) = self.backing {
            // SAFETY: allocated by `simulated` with this layout, freed once, here.
            unsafe { std::alloc::dealloc(p, layout) };
        }
        if let Backing::Mapped(maps, guards) = &mut self.backing {
            // Unguarded first: the handler must never remap a range that is unmapped.
            guards.clear();
            for &(addr, len) in maps.iter() {
                // SAFETY: each pair is a mapping made by `map` and unmapped once, here;
                // no Span or Ring can outlive self (they borrow it or hold its Arc).
                unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            }
        }
    }
}

/// At most this many regions (vhost-user's VHOST_MEMORY_MAX_NREGIONS is 8; DPDK allows
/// more with the CONFIGURE_MEM_SLOTS protocol feature).
pub const MAX_REGIONS: usize = 64;

impl GuestMemory {
    /// Maps every region from its file descriptor (the fds stay the caller's).
    ///
    /// # Errors
    /// A region that overflows, too many regions, a file shorter than the region it
    /// holds (a frontend that lies about its memory, or shrank it), more mappings than
    /// [`fault::MAX_GUARDED`], or mmap(2)'s error.
    pub fn map(descs: &[RegionDesc]) -> io::Result<GuestMemory> {
        if descs.len() > MAX_REGIONS {
            return Err(io::Error::other(format!("{} memory regions, at most {MAX_REGIONS}", descs.len())));
        }
        let mut maps = Vec::new();
        let mut guards = Vec::new();
        let mut regions = Vec::new();
        let fail = |maps: &Vec<(usize, usize)>, guards: &mut Vec<fault::Guard>, e: io::Error| {
            guards.clear();
            for &(a, l) in maps {
                // SAFETY: mappings made just above by this call and never handed out.
                unsafe { libc::munmap(a as *mut libc::c_void, l) };
            }
            Err(e)
        };
        for d in descs {
            let fits = d.gpa.checked_add(d.size).is_some() && d.mmap_offset.checked_add(d.size).is_some_and(|e| e <= d.mmap_size);
            if !fits || d.size == 0 || d.mmap_size > isize::MAX as u64 {
                let e = io::Error::other(format!("memory region at {:#x}+{:#x} does not fit its mapping", d.gpa, d.size));
                return fail(&maps, &mut guards, e);
            }
            // A mapping past the file's end faults (SIGBUS) when touched: the region's
            // bytes must all be in the file now (a later truncation is caught by `fault`).
            // SAFETY: a zeroed stat is valid; fstat fills it for an fd the caller holds open.
            let (st, r) = unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                let r = libc::fstat(d.fd, &mut st);
                (st, r)
            };
            if r != 0 {
                return fail(&maps, &mut guards, io::Error::last_os_error());
            }
            let file = u64::try_from(st.st_size).unwrap_or(0);
            let is_file = st.st_mode & libc::S_IFMT == libc::S_IFREG;
            if is_file && file < d.mmap_offset + d.size {
                let e = io::Error::other(format!(
                    "memory region at {:#x}+{:#x}: its file holds {file} bytes, the region needs {} (a frontend whose memory is smaller than its memory table)",
                    d.gpa,
                    d.size,
                    d.mmap_offset + d.size
                ));
                return fail(&maps, &mut guards, e);
            }
            // SAFETY: a fresh shared mapping of the frontend's file; we own it until Drop.
            let p = unsafe {
                libc::mmap(std::ptr::null_mut(), d.mmap_size as usize, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, d.fd, 0)
            };
            if p == libc::MAP_FAILED {
                return fail(&maps, &mut guards, io::Error::last_os_error());
            }
            maps.push((p as usize, d.mmap_size as usize));
            match fault::Guard::new(p as usize, d.mmap_size as usize) {
                Some(g) => guards.push(g),
                None => {
                    let e = io::Error::other(format!("more than {} guest memory mappings at once", fault::MAX_GUARDED));
                    return fail(&maps, &mut guards, e);
                }
            }
            regions.push(Region { gpa: d.gpa, size: d.size, lib_hva: d.lib_hva, host: p as usize + d.mmap_offset as usize });
        }
        Ok(GuestMemory { regions: regions.into(), backing: Backing::Mapped(maps, guards) })
    }

    /// Heap memory laid out as `(gpa, size)` regions, zeroed, for tests and simulations.
    /// Each region's "library address" is its gpa plus 2^40, so ring addresses can be
    /// given as `gpa + SIM_HVA` the way rte_vhost gives them.
    pub fn simulated(layout: &[(u64, u64)]) -> GuestMemory {
        let total: u64 = layout.iter().map(|&(_, s)| s.div_ceil(8) * 8).sum();
        let lay = std::alloc::Layout::from_size_align(total.max(8) as usize, 64).expect("a simulated memory layout");
        // SAFETY: a non-zero size; the allocation is ours until Drop.
        let heap = unsafe { std::alloc::alloc_zeroed(lay) };
        assert!(!heap.is_null(), "simulated guest memory: allocation failed");
        // Addresses keep the allocation's provenance (exposed here, taken back by the
        // int-to-pointer casts of every access).
        let base = heap.expose_provenance();
        let mut off = 0usize;
        let mut regions = Vec::new();
        for &(gpa, size) in layout {
            regions.push(Region { gpa, size, lib_hva: gpa + SIM_HVA, host: base + off });
            off += size.div_ceil(8) as usize * 8;
        }
        GuestMemory { regions: regions.into(), backing: Backing::Heap(heap, lay) }
    }

    /// The region holding `[gpa, gpa + len)` whole, trying `hint` first (callers keep
    /// the last region they hit).
    #[inline(always)]
    fn region(&self, gpa: u64, len: u64, hint: &mut usize) -> Option<&Region> {
        let inside = |r: &Region| gpa >= r.gpa && gpa - r.gpa < r.size && len <= r.size - (gpa - r.gpa);
        if let Some(r) = self.regions.get(*hint) {
            if inside(r) {
                return Some(r);
            }
        }
        let i = self.regions.iter().position(inside)?;
        *hint = i;
        self.regions.get(i)
    }

    /// A checked view of `[gpa, gpa + len)`, which must lie in one region (buffers that
    /// straddle two regions are rare: a guest's RAM regions are large and contiguous;
    /// [`GuestMemory::read`] and [`GuestMemory::write`] handle them byte-exactly).
    #[inline(always)]
    pub fn span(&self, gpa: u64, len: u32, hint: &mut usize) -> Option<Span<'_>> {
        let r = self.region(gpa, u64::from(len), hint)?;
        Some(Span { ptr: r.host + (gpa - r.gpa) as usize, len, _mem: PhantomData })
    }

    /// Copies `buf.len()` bytes from `gpa` (across regions if need be). False if any
    /// byte lies outside guest memory.
    pub fn read(&self, mut gpa: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        let mut hint = 0;
        while done < buf.len() {
            let Some(r) = self.region(gpa, 1, &mut hint) else { return false };
            let n = ((r.size - (gpa - r.gpa)) as usize).min(buf.len() - done);
            // SAFETY: [gpa, gpa+n) lies in region r (checked above), mapped for self's
            // life; buf has n bytes left at done; the two never overlap (buf is ours).
            unsafe { std::ptr::copy_nonoverlapping((r.host + (gpa - r.gpa) as usize) as *const u8, buf.as_mut_ptr().add(done), n) };
            done += n;
            gpa += n as u64;
        }
        true
    }

    /// Copies `buf` to `gpa` (across regions if need be). False (and nothing or a part
    /// written) if any byte lies outside guest memory.
    pub fn write(&self, mut gpa: u64, buf: &[u8]) -> bool {
        let mut done = 0;
        let mut hint = 0;
        while done < buf.len() {
            let Some(r) = self.region(gpa, 1, &mut hint) else { return false };
            let n = ((r.size - (gpa - r.gpa)) as usize).min(buf.len() - done);
            // SAFETY: as in read, the other way.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr().add(done), (r.host + (gpa - r.gpa) as usize) as *mut u8, n) };
            done += n;
            gpa += n as u64;
        }
        true
    }

    /// A split virtqueue's three areas (virtio 1.1 §2.6), given where rte_vhost mapped
    /// them, checked to lie whole in our mapping with the alignment the ring needs.
    /// `size` must be a power of two from 1 to 32768 (§2.6: Queue Size).
    pub fn ring(self: &Arc<Self>, desc_hva: u64, avail_hva: u64, used_hva: u64, size: u16) -> Option<Ring> {
        if size == 0 || !size.is_power_of_two() || size > 32768 {
            return None;
        }
        let n = u64::from(size);
        let desc = self.host_of_lib(desc_hva, 16 * n, 16)?;
        let avail = self.host_of_lib(avail_hva, 6 + 2 * n, 2)?;
        let used = self.host_of_lib(used_hva, 6 + 8 * n, 4)?;
        Some(Ring { mem: self.clone(), desc, avail, used, mask: size - 1 })
    }

    /// Our address of rte_vhost's `hva`, if `[hva, hva + len)` lies in one region and the
    /// result is `align`-aligned.
    fn host_of_lib(&self, hva: u64, len: u64, align: usize) -> Option<usize> {
        let r = self.regions.iter().find(|r| hva >= r.lib_hva && hva - r.lib_hva < r.size && len <= r.size - (hva - r.lib_hva))?;
        let host = r.host + (hva - r.lib_hva) as usize;
        host.is_multiple_of(align).then_some(host)
    }

    /// The frontend truncated a file under one of these mappings and an access faulted:
    /// the mapping now holds zeros of our own ([`fault`]); the device must not be served.
    pub fn faulted(&self) -> bool {
        match &self.backing {
            Backing::Mapped(_, guards) => guards.iter().any(fault::Guard::faulted),
            Backing::Heap(..) => false,
        }
    }

    /// How many regions the memory has.
    pub fn regions(&self) -> usize {
        self.regions.len()
    }

    /// Cuts `[gpa, gpa + len)` at region borders and hands each piece to `f` (the slow
    /// path for a buffer that straddles two regions). False, with some pieces handed
    /// over, if a byte lies outside guest memory.
    pub fn pieces(&self, mut gpa: u64, len: u32, mut f: impl FnMut(u64, u32)) -> bool {
        let mut left = u64::from(len);
        let mut hint = 0;
        while left > 0 {
            let Some(r) = self.region(gpa, 1, &mut hint) else { return false };
            let n = (r.size - (gpa - r.gpa)).min(left);
            f(gpa, n as u32);
            gpa += n;
            left -= n;
        }
        true
    }
}

/// Offset of a simulated region's "library address" from its gpa.
pub const SIM_HVA: u64 = 1 << 40;

/// A checked range of guest memory, borrowed from its `GuestMemory` (so it cannot
/// outlive the mapping). Its bytes are only ever copied.
#[derive(Clone, Copy)]
pub struct Span<'m> {
    ptr: usize,
    len: u32,
    _mem: PhantomData<&'m GuestMemory>,
}

impl Span<'_> {
    #[inline(always)]
    pub fn len(&self) -> u32 {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `dst.len()` bytes from offset `off`; false if that leaves the span.
    #[inline(always)]
    pub fn read(&self, off: u32, dst: &mut [u8]) -> bool {
        if (off as usize).checked_add(dst.len()).is_none_or(|e| e > self.len as usize) {
            return false;
        }
        // SAFETY: off..off+dst.len() lies in the span (checked), which lies in a region
        // mapped while the span's GuestMemory is borrowed; dst is ours.
        unsafe { copy_bytes((self.ptr + off as usize) as *const u8, dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Copies `src` to offset `off`; false if that leaves the span.
    #[inline(always)]
    pub fn write(&self, off: u32, src: &[u8]) -> bool {
        if (off as usize).checked_add(src.len()).is_none_or(|e| e > self.len as usize) {
            return false;
        }
        // SAFETY: as in read, the other way.
        unsafe { copy_bytes(src.as_ptr(), (self.ptr + off as usize) as *mut u8, src.len()) };
        true
    }

    /// Copies `n` bytes from offset `off` of this span to offset `dst_off` of `dst` (of
    /// the same or another guest's memory); false if either range leaves its span.
    #[inline(always)]
    pub fn copy_to(&self, off: u32, dst: &Span<'_>, dst_off: u32, n: u32) -> bool {
        let fits = |o: u32, l: u32| u64::from(o) + u64::from(n) <= u64::from(l);
        if !fits(off, self.len) || !fits(dst_off, dst.len) {
            return false;
        }
        // SAFETY: both ranges lie in their spans (checked), each mapped while borrowed.
        unsafe { copy_bytes((self.ptr + off as usize) as *const u8, (dst.ptr + dst_off as usize) as *mut u8, n as usize) };
        true
    }

    /// The `N` bytes at `off` (None if they leave the span), read once: a volatile load,
    /// so the compiler can neither read the guest's bytes twice (a header or descriptor
    /// checked, then used, must be one copy) nor drop the copy. For metadata; frame
    /// bytes go through [`Span::read`].
    #[inline(always)]
    pub fn read_array<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        if u64::from(off) + N as u64 > u64::from(self.len) {
            return None;
        }
        // SAFETY: off..off+N lies in the span (checked); [u8; N] has alignment 1, so any
        // address is aligned for the volatile read; a copy of plain bytes.
        Some(unsafe { std::ptr::read_volatile((self.ptr + off as usize) as *const [u8; N]) })
    }

    /// Writes `N` bytes at `off` (false if they leave the span): one unaligned store.
    #[inline(always)]
    pub fn write_array<const N: usize>(&self, off: u32, b: &[u8; N]) -> bool {
        if u64::from(off) + N as u64 > u64::from(self.len) {
            return false;
        }
        // SAFETY: as in read_array, the other way.
        unsafe { std::ptr::write_unaligned((self.ptr + off as usize) as *mut [u8; N], *b) };
        true
    }

    /// A hint to load the span's first line (before reading its header).
    #[inline(always)]
    pub fn prefetch(&self) {
        prefetch(self.ptr);
    }

    /// A hint to load the line at offset `off` (a frame past its virtio-net header: the
    /// DPDK virtio driver puts the header in the headroom, so it ends the line before the
    /// frame's). Any offset is harmless: a prefetch never faults.
    #[inline(always)]
    pub fn prefetch_at(&self, off: u32) {
        prefetch(self.ptr.wrapping_add(off as usize));
    }

    /// A hint to own the span's first line (before writing it: the other core read it
    /// last, so a plain store would wait for the invalidation).
    #[inline(always)]
    pub fn prefetch_write(&self) {
        prefetch_write(self.ptr);
    }

    /// [`Span::prefetch_write`] for the line at offset `off` (any offset is harmless).
    #[inline(always)]
    pub fn prefetch_write_at(&self, off: u32) {
        prefetch_write(self.ptr.wrapping_add(off as usize));
    }
}

/// Copies `n` bytes, inline for the short frames a switch mostly moves (up to 64 bytes:
/// overlapping 16-byte loads and stores, as rte_memcpy does), memmove beyond. The ranges
/// may overlap (a guest can point two descriptors at the same memory): every chunk is
/// loaded before it is stored, so the guest gets garbage and nothing worse happens.
///
/// # Safety
/// `src..src+n` must be readable and `dst..dst+n` writable for the call.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    type C = [u8; 16];
    // SAFETY: every access below stays within 0..n of src or dst (each branch's
    // offsets are bounded by its n), which the caller guarantees are mapped.
    unsafe {
        let ld = |o: usize| std::ptr::read_unaligned(src.add(o) as *const C);
        let st = |o: usize, v: C| std::ptr::write_unaligned(dst.add(o) as *mut C, v);
        if n > 64 {
            std::ptr::copy(src, dst, n);
        } else if n > 32 {
            let (a, b, c, d) = (ld(0), ld(16), ld(n - 32), ld(n - 16));
            st(0, a);
            st(16, b);
            st(n - 32, c);
            st(n - 16, d);
        } else if n >= 16 {
            let (a, b) = (ld(0), ld(n - 16));
            st(0, a);
            st(n - 16, b);
        } else if n >= 8 {
            let (a, b) = (std::ptr::read_unaligned(src as *const u64), std::ptr::read_unaligned(src.add(n - 8) as *const u64));
            std::ptr::write_unaligned(dst as *mut u64, a);
            std::ptr::write_unaligned(dst.add(n - 8) as *mut u64, b);
        } else {
            for i in 0..n {
                *dst.add(i) = *src.add(i);
            }
        }
    }
}

/// A descriptor as read: one copy of the guest's 16 bytes (virtio 1.1 §2.6.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Desc {
    #[inline(always)]
    fn from_bytes(b: [u8; 16]) -> Desc {
        Desc {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap_or_default()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap_or_default()),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }
}

impl Span<'_> {
    /// Descriptor `i` of an indirect table held in this span (None past its end).
    #[inline(always)]
    pub fn desc(&self, i: u32) -> Option<Desc> {
        self.read_array::<16>(i.checked_mul(16)?).map(Desc::from_bytes)
    }
}

/// One split virtqueue of a guest (virtio 1.1 §2.6): the descriptor table, the available
/// ring (written by the driver) and the used ring (written by us). It holds its memory,
/// so its addresses stay mapped while it lives. Every index is taken modulo the queue
/// size, so no value a guest writes can move an access out of the ring.
pub struct Ring {
    mem: Arc<GuestMemory>,
    desc: usize,
    avail: usize,
    used: usize,
    mask: u16,
}

// Byte offsets inside the rings (virtio 1.1 §2.6.6, §2.6.8).
const AVAIL_FLAGS: usize = 0;
const AVAIL_IDX: usize = 2;
const AVAIL_RING: usize = 4;
const USED_FLAGS: usize = 0;
const USED_IDX: usize = 2;
const USED_RING: usize = 4;

impl Ring {
    pub fn mem(&self) -> &Arc<GuestMemory> {
        &self.mem
    }

    /// Queue size.
    #[inline(always)]
    pub fn size(&self) -> u16 {
        self.mask.wrapping_add(1)
    }

    #[inline(always)]
    fn load16(&self, addr: usize) -> u16 {
        // SAFETY: addr is a 2-aligned u16 inside a ring area (Ring::new checked the areas
        // and their alignment; offsets below stay inside); the atomic reference lives for
        // this one load.
        unsafe { AtomicU16::from_ptr(addr as *mut u16) }.load(Ordering::Acquire)
    }

    #[inline(always)]
    fn store16(&self, addr: usize, v: u16) {
        // SAFETY: as in load16.
        unsafe { AtomicU16::from_ptr(addr as *mut u16) }.store(v, Ordering::Release)
    }

    /// Descriptor `i` (mod size), read once.
    #[inline(always)]
    pub fn desc(&self, i: u16) -> Desc {
        let p = self.desc + 16 * usize::from(i & self.mask);
        // SAFETY: p..p+16 lies in the descriptor table (16 × size bytes, checked); the
        // read is a copy (the guest may be writing: we get some 16 bytes, which the
        // caller validates as it would any).
        Desc::from_bytes(unsafe { std::ptr::read_volatile(p as *const [u8; 16]) })
    }

    /// The driver's available index (Acquire: the entries and descriptors it published
    /// before it are visible after this load, §2.6.13.3).
    #[inline(always)]
    pub fn avail_idx(&self) -> u16 {
        self.load16(self.avail + AVAIL_IDX)
    }

    #[inline(always)]
    pub fn avail_flags(&self) -> u16 {
        self.load16(self.avail + AVAIL_FLAGS)
    }

    /// The head at available-ring position `pos` (mod size).
    #[inline(always)]
    pub fn avail_entry(&self, pos: u16) -> u16 {
        self.load16(self.avail + AVAIL_RING + 2 * usize::from(pos & self.mask))
    }

    /// `used_event` (after the available ring, VIRTIO_F_EVENT_IDX).
    #[inline(always)]
    pub fn used_event(&self) -> u16 {
        self.load16(self.avail + AVAIL_RING + 2 * usize::from(self.size()))
    }

    /// Writes used element `pos` (mod size): the chain's head and the bytes written.
    #[inline(always)]
    pub fn set_used(&self, pos: u16, id: u16, len: u32) {
        let p = self.used + USED_RING + 8 * usize::from(pos & self.mask);
        let v = u64::from(id) | u64::from(len) << 32;
        // SAFETY: p..p+8 lies in the used ring (checked), 4-aligned (the area is); a
        // plain store of bytes the driver reads only after the index that publishes them.
        unsafe { std::ptr::write_unaligned(p as *mut [u8; 8], v.to_le_bytes()) };
    }

    /// Publishes the used index (Release: the elements and buffer contents written
    /// before it are visible to the driver first, §2.6.8.2), then a full barrier, so
    /// that the driver's flags or `used_event` read afterwards are not stale (the driver
    /// enables interrupts and re-checks used->idx in the other order: without the
    /// barrier a store-load reordering loses a wake-up, §2.6.7.2). One locked exchange
    /// does both.
    #[inline(always)]
    pub fn publish_used(&self, idx: u16) {
        // SAFETY: as in load16.
        unsafe { AtomicU16::from_ptr((self.used + USED_IDX) as *mut u16) }.swap(idx, Ordering::SeqCst);
    }

    /// The used index as published (ours to write; read back for tests and resyncs).
    #[inline(always)]
    pub fn used_idx(&self) -> u16 {
        self.load16(self.used + USED_IDX)
    }

    /// `used->flags` (VRING_USED_F_NO_NOTIFY).
    pub fn set_used_flags(&self, flags: u16) {
        self.store16(self.used + USED_FLAGS, flags)
    }

    pub fn used_flags(&self) -> u16 {
        self.load16(self.used + USED_FLAGS)
    }

    /// `avail_event` (after the used ring, VIRTIO_F_EVENT_IDX).
    pub fn set_avail_event(&self, v: u16) {
        self.store16(self.used + USED_RING + 8 * usize::from(self.size()), v)
    }

    /// Hints to load the descriptor and available entry at these positions.
    #[inline(always)]
    pub fn prefetch_desc(&self, i: u16) {
        prefetch(self.desc + 16 * usize::from(i & self.mask));
    }

    #[inline(always)]
    pub fn prefetch_avail(&self, pos: u16) {
        prefetch(self.avail + AVAIL_RING + 2 * usize::from(pos & self.mask));
    }

    #[inline(always)]
    pub fn prefetch_used(&self, pos: u16) {
        prefetch(self.used + USED_RING + 8 * usize::from(pos & self.mask));
    }
}

// Prefetches are hints with no effect on what a program computes; Miri cannot run
// inline assembly or the intrinsic, so under Miri they are left out.
#[inline(always)]
fn prefetch_write(addr: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch never faults and changes no memory.
    unsafe {
        core::arch::asm!("prefetchw [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags))
    };
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    let _ = addr;
}

#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch never faults and changes no memory.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_checked_against_regions() {
        let m = GuestMemory::simulated(&[(0x1000, 0x1000), (0x10_0000, 0x2000)]);
        let mut h = 0;
        assert!(m.span(0x1000, 0x1000, &mut h).is_some());
        assert!(m.span(0x1800, 0x801, &mut h).is_none(), "runs past the region");
        assert!(m.span(0x1fff, 1, &mut h).is_some());
        assert!(m.span(0x2000, 1, &mut h).is_none(), "between regions");
        assert!(m.span(0x10_1000, 0x1000, &mut h).is_some());
        assert_eq!(h, 1, "the hint follows the last hit");
        assert!(m.span(u64::MAX - 2, 8, &mut h).is_none(), "overflowing end");
        let s = m.span(0x1000, 16, &mut h).unwrap();
        assert!(s.write(0, b"0123456789abcdef"));
        assert!(!s.write(10, b"0123456789"), "write past the span");
        let mut b = [0u8; 4];
        assert!(s.read(12, &mut b) && &b == b"cdef");
        assert!(!s.read(13, &mut b));
        let d = m.span(0x10_0000, 16, &mut h).unwrap();
        assert!(s.copy_to(4, &d, 8, 8) && !s.copy_to(9, &d, 0, 8) && !s.copy_to(0, &d, 9, 8));
        assert_eq!(s.read_array::<4>(12), Some(*b"cdef"));
        assert_eq!(s.read_array::<4>(13), None);
        let mut out = [0u8; 8];
        assert!(m.read(0x10_0008, &mut out) && &out == b"456789ab");
    }

    /// The inline copy against a plain one for every length up to 200 and overlapping
    /// ranges (a guest aliasing two buffers): the same bytes, or for overlaps no crash.
    #[test]
    fn small_copies_match_memmove() {
        let m = GuestMemory::simulated(&[(0, 0x1000)]);
        let src: Vec<u8> = (0..200).map(|i| i as u8 ^ 0x5a).collect();
        assert!(m.write(0, &src));
        let mut h = 0;
        let (a, b) = (m.span(0, 200, &mut h).unwrap(), m.span(0x400, 200, &mut h).unwrap());
        for n in 0..=200u32 {
            assert!(b.write(0, &[0u8; 200]));
            assert!(a.copy_to(0, &b, 0, n));
            let mut got = vec![0u8; 200];
            assert!(b.read(0, &mut got));
            assert_eq!(&got[..n as usize], &src[..n as usize], "n = {n}");
            assert!(got[n as usize..].iter().all(|&x| x == 0), "n = {n}: wrote past the end");
        }
        let c = m.span(0, 300, &mut h).unwrap();
        for n in [5u32, 20, 40, 64, 100] {
            assert!(c.copy_to(0, &c, 7, n));
        }
    }

    #[test]
    fn reads_and_writes_may_straddle_regions_but_not_holes() {
        // Two adjacent regions: a copy across their border works byte-exactly.
        let m = GuestMemory::simulated(&[(0, 0x100), (0x100, 0x100), (0x300, 0x100)]);
        let data: Vec<u8> = (0..64).collect();
        assert!(m.write(0xe0, &data));
        let mut back = vec![0u8; 64];
        assert!(m.read(0xe0, &mut back) && back == data);
        assert!(!m.read(0x1f0, &mut back), "runs into the hole at 0x200");
    }

    #[test]
    fn rings_need_room_alignment_and_a_power_of_two() {
        let m = Arc::new(GuestMemory::simulated(&[(0, 0x10000)]));
        let r = m.ring(SIM_HVA, SIM_HVA + 0x1000, SIM_HVA + 0x2000, 256).unwrap();
        assert_eq!(r.size(), 256);
        assert!(m.ring(SIM_HVA, SIM_HVA + 0x1000, SIM_HVA + 0x2000, 100).is_none());
        assert!(m.ring(SIM_HVA, SIM_HVA + 0x1001, SIM_HVA + 0x2000, 256).is_none(), "odd avail");
        assert!(m.ring(SIM_HVA, SIM_HVA + 0x1000, SIM_HVA + 0x2002, 256).is_none(), "used not 4-aligned");
        assert!(m.ring(SIM_HVA, SIM_HVA + 0x1000, SIM_HVA + 0xf000, 1024).is_none(), "used ring runs out");
        // Indices are taken mod size: position 256 is position 0.
        r.set_used(256, 7, 99);
        let mut b = [0u8; 8];
        assert!(m.read(0x2004, &mut b));
        assert_eq!(u64::from_le_bytes(b), 7 | 99 << 32);
        r.publish_used(5);
        assert_eq!(r.used_idx(), 5);
        assert!(m.write(0x1002, &9u16.to_le_bytes()));
        assert_eq!(r.avail_idx(), 9);
        let d = Desc { addr: 0x4000, len: 60, flags: 1, next: 3 };
        assert!(m.write(16 * 5, &d.to_bytes()));
        assert_eq!(r.desc(256 + 5), d);
    }

    fn memfd(len: i64) -> i32 {
        // SAFETY: plain syscalls on a fresh fd of ours.
        unsafe {
            let fd = libc::memfd_create(c"guest-test".as_ptr(), 0);
            assert!(fd >= 0 && libc::ftruncate(fd, len) == 0);
            fd
        }
    }

    fn desc(fd: i32, size: u64) -> RegionDesc {
        RegionDesc { gpa: 0x10000, size, lib_hva: 0, fd, mmap_size: size, mmap_offset: 0 }
    }

    /// A memory table that names more bytes than its file holds is refused at once.
    #[test]
    #[cfg_attr(miri, ignore = "memfd and mmap: system calls Miri does not run")]
    fn a_region_longer_than_its_file_is_refused() {
        let fd = memfd(4096);
        let e = GuestMemory::map(&[desc(fd, 8192)]).err().expect("refused");
        assert!(e.to_string().contains("its file holds 4096 bytes, the region needs 8192"), "{e}");
        assert!(GuestMemory::map(&[desc(fd, 4096)]).is_ok());
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }

    /// A frontend that truncates its memory under a live mapping: the access that
    /// faults (SIGBUS) is survived, reads zeros from then on, and the memory says so.
    #[test]
    #[cfg_attr(miri, ignore = "memfd, mmap and signals: Miri runs none of them")]
    fn memory_truncated_under_us_faults_into_zeros_not_death() {
        let fd = memfd(1 << 16);
        let m = GuestMemory::map(&[desc(fd, 1 << 16)]).unwrap();
        assert!(m.write(0x10000 + 100, b"guest bytes"));
        let mut b = [0u8; 11];
        assert!(m.read(0x10000 + 100, &mut b) && &b == b"guest bytes");
        assert!(!m.faulted());
        // SAFETY: our fd; the mapping stays ours (the point of the test).
        assert_eq!(unsafe { libc::ftruncate(fd, 0) }, 0);
        let before = fault::SURVIVED.load(Ordering::Relaxed);
        assert!(m.read(0x10000 + 100, &mut b), "the read that faulted completes");
        assert_eq!(b, [0u8; 11], "zeros of our own");
        assert!(m.faulted());
        assert!(fault::SURVIVED.load(Ordering::Relaxed) > before);
        assert!(m.write(0x10000 + 200, b"after"), "writes land in the private copy");
        let other = GuestMemory::map(&[desc(memfd(4096), 4096)]).unwrap();
        assert!(!other.faulted(), "another guest's memory is untouched");
        drop(m);
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }
}
