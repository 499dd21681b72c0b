//! Bursts of mbufs: a fixed-capacity batch that owns its packets.
//!
//! Rx fills a [`Batch`]; tx consumes from its front. Whatever was not sent stays in the
//! batch, so the caller visibly chooses to retry or to [`Batch::drop_all`] and count.
//! Dropping a batch frees what it still holds: no path leaks an mbuf.

use std::mem::offset_of;

use super::ffi;
use super::mempool::Mempool;

/// Largest burst a batch holds (`--burst` is capped to it).
pub const MAX_BURST: usize = 256;

// The fields read or written directly from Rust (per packet, so no FFI call): their
// offsets are asserted here against bindgen's layout and in shim.c against the C header.
const _: () = assert!(offset_of!(ffi::rte_mbuf, buf_addr) == ffi::PMDS_MBUF_BUF_ADDR_OFF as usize);
const _: () = assert!(offset_of!(ffi::rte_mbuf, data_off) == ffi::PMDS_MBUF_DATA_OFF_OFF as usize);
const _: () = assert!(offset_of!(ffi::rte_mbuf, pkt_len) == ffi::PMDS_MBUF_PKT_LEN_OFF as usize);
const _: () = assert!(offset_of!(ffi::rte_mbuf, data_len) == ffi::PMDS_MBUF_DATA_LEN_OFF as usize);
const _: () = assert!(offset_of!(ffi::rte_mbuf, buf_len) == ffi::PMDS_MBUF_BUF_LEN_OFF as usize);
const _: () = assert!(offset_of!(ffi::rte_mbuf, next) == ffi::PMDS_MBUF_NEXT_OFF as usize);
const _: () = assert!(std::mem::size_of::<ffi::rte_mbuf>() == ffi::PMDS_MBUF_SIZE as usize);

/// Up to [`MAX_BURST`] owned mbufs; the pending ones are `pkts[head..tail]`.
pub struct Batch {
    pkts: [*mut ffi::rte_mbuf; MAX_BURST],
    head: usize,
    tail: usize,
}

// SAFETY: a batch owns its mbufs as an `Mbuf` does (see there): moving it to another
// thread moves that ownership; a worker's staging batches are created before its thread.
unsafe impl Send for Batch {}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch { pkts: [std::ptr::null_mut(); MAX_BURST], head: 0, tail: 0 }
    }

    /// Packets still pending in the batch.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Sum of `pkt_len` over the pending packets.
    #[inline(always)]
    pub fn bytes(&self) -> u64 {
        let mut sum = 0u64;
        for &m in &self.pkts[self.head..self.tail] {
            // SAFETY: every pointer in head..tail is a live mbuf this batch owns.
            sum += unsafe { (*m).pkt_len } as u64;
        }
        sum
    }

    /// Frees every pending packet (`rte_pktmbuf_free_bulk`) and returns how many.
    #[inline]
    pub fn drop_all(&mut self) -> usize {
        let n = self.len();
        if n > 0 {
            // SAFETY: head..tail are owned, live mbufs; after the call we forget them.
            unsafe { ffi::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(self.head), n as u32) };
        }
        self.head = 0;
        self.tail = 0;
        n
    }

    /// For rx: room for up to `max` new packets. The batch must be empty.
    #[inline(always)]
    pub(crate) fn rx_slots(&mut self, max: usize) -> (*mut *mut ffi::rte_mbuf, u16) {
        debug_assert!(self.is_empty());
        self.head = 0;
        self.tail = 0;
        (self.pkts.as_mut_ptr(), max.min(MAX_BURST) as u16)
    }

    /// For rx: `n` slots were filled by the driver; the batch owns them now.
    #[inline(always)]
    pub(crate) fn rx_filled(&mut self, n: usize) {
        debug_assert!(n <= MAX_BURST);
        self.tail = n;
    }

    /// For tx: the pending packets as the driver wants them.
    #[inline(always)]
    pub(crate) fn tx_slots(&mut self) -> (*mut *mut ffi::rte_mbuf, u16) {
        // SAFETY: head <= tail <= MAX_BURST, so the pointer stays inside the array.
        (unsafe { self.pkts.as_mut_ptr().add(self.head) }, self.len() as u16)
    }

    /// For tx: the first `n` pending packets left the batch (ownership went to the driver,
    /// or the caller freed them).
    #[inline(always)]
    pub(crate) fn tx_consumed(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// For copying transmitters (vhost enqueue): the first `n` pending packets were copied
    /// out, so free them (in bulk) and advance.
    #[inline(always)]
    pub(crate) fn free_front(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        if n > 0 {
            // SAFETY: head..head+n are owned, live mbufs that the device copied; we forget
            // them right after.
            unsafe { ffi::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(self.head), n as u32) };
        }
        self.tx_consumed(n);
    }
}

/// Generator support: fresh frames to write, received frames to read.
impl Batch {
    /// Fills the empty batch with `n` fresh mbufs and lets `f` write each one in a single
    /// pass: `f(i, room)` gets the whole buffer past the headroom, writes the frame and
    /// returns its length (clamped to the room). False, with the batch still empty, when
    /// the pool is short.
    #[inline(always)]
    pub fn alloc_fill(&mut self, pool: &Mempool, n: usize, mut f: impl FnMut(usize, &mut [u8]) -> usize) -> bool {
        debug_assert!(self.is_empty());
        let n = n.min(MAX_BURST);
        // SAFETY: pkts has MAX_BURST slots and n <= MAX_BURST; on success every slot is a
        // fresh, reset mbuf that this batch now owns (rte_pktmbuf_alloc_bulk resets them).
        if unsafe { ffi::pmds_pktmbuf_alloc_bulk(pool.as_ptr(), self.pkts.as_mut_ptr(), n as u32) } != 0 {
            return false;
        }
        self.head = 0;
        self.tail = n;
        // The buffers were last read by another core (the peer copied them out): ask for
        // every first data line in exclusive state now (PREFETCHW), so that the header
        // stores below do not each wait for an invalidation round trip.
        #[cfg(target_arch = "x86_64")]
        for &m in &self.pkts[..n] {
            // SAFETY: a prefetch hint never faults and changes no memory; the address is
            // computed from a live mbuf's header.
            unsafe {
                let p = ((*m).buf_addr as *const u8).add((*m).data_off as usize);
                core::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
            }
        }
        for (i, &m) in self.pkts[..n].iter().enumerate() {
            // SAFETY: m is a live, reset, single-segment mbuf we own exclusively; its room
            // is buf_len - data_off bytes at buf_addr + data_off (what rte_pktmbuf_append
            // checks), and we set data_len/pkt_len to at most that, as append does.
            unsafe {
                let room = ((*m).buf_len - (*m).data_off) as usize;
                let data = std::slice::from_raw_parts_mut(((*m).buf_addr as *mut u8).add((*m).data_off as usize), room);
                let len = f(i, data).min(room) as u16;
                (*m).data_len = len;
                (*m).pkt_len = len as u32;
            }
        }
        true
    }

    /// The bytes of the `k`-th pending packet, segment by segment (None past the end).
    #[inline(always)]
    pub fn segs(&self, k: usize) -> Option<Segs<'_>> {
        let m = *self.pkts.get(self.head + k).filter(|_| self.head + k < self.tail)?;
        Some(Segs { m, _batch: std::marker::PhantomData })
    }

    /// Frees the pending packets of length 0 (frames a producer refused after the batch
    /// was allocated), keeping the others in order.
    pub fn drop_empty(&mut self) {
        let mut keep = self.head;
        for i in self.head..self.tail {
            let m = self.pkts[i];
            // SAFETY: every pointer in head..tail is a live mbuf this batch owns.
            if unsafe { (*m).pkt_len } == 0 {
                // SAFETY: owned and removed from the batch right here.
                unsafe { ffi::pmds_pktmbuf_free(m) };
            } else {
                self.pkts[keep] = m;
                keep += 1;
            }
        }
        self.tail = keep;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Frees the first `n` pending packets (their bytes were copied out, as the own
    /// vhost path does) and advances.
    #[inline(always)]
    pub fn consume_front(&mut self, n: usize) {
        self.free_front(n.min(self.len()));
    }

    /// Calls `f(data, pkt_len)` for each pending packet's first segment.
    #[inline(always)]
    pub fn for_each(&self, mut f: impl FnMut(&[u8], u32)) {
        for &m in &self.pkts[self.head..self.tail] {
            // SAFETY: every pointer in head..tail is a live mbuf this batch owns; its first
            // segment's data_len bytes start at buf_addr + data_off (rte_pktmbuf_mtod), and
            // nothing writes them while &self borrows the batch.
            let (data, len) = unsafe {
                (std::slice::from_raw_parts(((*m).buf_addr as *const u8).add((*m).data_off as usize), (*m).data_len as usize), (*m).pkt_len)
            };
            f(data, len);
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.drop_all();
    }
}

/// The segments of one packet of a [`Batch`], first to last.
pub struct Segs<'a> {
    m: *mut ffi::rte_mbuf,
    _batch: std::marker::PhantomData<&'a Batch>,
}

impl<'a> Iterator for Segs<'a> {
    type Item = &'a [u8];

    #[inline(always)]
    fn next(&mut self) -> Option<&'a [u8]> {
        let m = self.m;
        if m.is_null() {
            return None;
        }
        // SAFETY: m is a live segment of a packet the batch owns and lends for 'a; its
        // data_len bytes start at buf_addr + data_off; `next` links the packet's segments
        // and ends with NULL (rte_mbuf.h).
        unsafe {
            self.m = (*m).next;
            Some(std::slice::from_raw_parts(((*m).buf_addr as *const u8).add((*m).data_off as usize), (*m).data_len as usize))
        }
    }
}

/// One owned packet, taken out of a [`Batch`] for per-packet switching (the bridge):
/// read it, share it with another egress port (reference count), edit its head (VLAN
/// tag push/pop), put it into another batch. Dropping it frees it.
pub struct Mbuf(std::ptr::NonNull<ffi::rte_mbuf>);

// SAFETY: an mbuf we own can move between threads (workers hand nothing across today,
// but the type says what is true: DPDK mbufs are not tied to a thread).
unsafe impl Send for Mbuf {}

impl Mbuf {
    #[inline(always)]
    fn ptr(&self) -> *mut ffi::rte_mbuf {
        self.0.as_ptr()
    }

    /// The first segment's bytes, writable — only when no other reference shares them.
    #[inline(always)]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        if self.refcnt() != 1 {
            return None;
        }
        let m = self.ptr();
        // SAFETY: refcount 1: nobody else reads this buffer, and &mut self keeps it so while
        // the slice lives; the first segment's data_len bytes start at buf_addr + data_off.
        Some(unsafe { std::slice::from_raw_parts_mut(((*m).buf_addr as *mut u8).add((*m).data_off as usize), (*m).data_len as usize) })
    }

    /// The packet's length, all segments.
    #[inline(always)]
    pub fn len(&self) -> usize {
        // SAFETY: live mbuf.
        unsafe { (*self.ptr()).pkt_len as usize }
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether other references share the packet (its head must not be edited).
    #[inline(always)]
    pub fn is_shared(&self) -> bool {
        self.refcnt() != 1
    }

    /// Calls `f` with each segment's bytes, first to last.
    pub fn segments(&self, mut f: impl FnMut(&[u8])) {
        let mut m = self.ptr();
        while !m.is_null() {
            // SAFETY: m is a live segment of a packet we hold a reference to; its data_len
            // bytes start at buf_addr + data_off, and `next` ends the chain with NULL.
            unsafe {
                f(std::slice::from_raw_parts(((*m).buf_addr as *const u8).add((*m).data_off as usize), (*m).data_len as usize));
                m = (*m).next;
            }
        }
    }

    #[inline(always)]
    fn refcnt(&self) -> u16 {
        // SAFETY: live mbuf.
        unsafe { ffi::pmds_mbuf_refcnt_read(self.ptr()) }
    }

    /// Another reference to the same packet (flooding without copying, as DPDK's
    /// multicast example does): the buffer is freed when the last reference goes.
    #[inline(always)]
    pub fn share(&self) -> Mbuf {
        // SAFETY: live mbuf; the new handle owns the reference we add.
        unsafe { ffi::pmds_mbuf_refcnt_update(self.ptr(), 1) };
        Mbuf(self.0)
    }

    /// A private copy (all segments) from `pool`, for an egress that must edit the head
    /// of a shared packet. None when the pool is empty.
    pub fn deep_copy(&self, pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: live mbuf and pool; rte_pktmbuf_copy returns a new mbuf we own or NULL.
        let c = unsafe { ffi::rte_pktmbuf_copy(self.ptr(), pool.as_ptr(), 0, u32::MAX) };
        std::ptr::NonNull::new(c).map(Mbuf)
    }

    /// Grows the head by `n` bytes (rte_pktmbuf_prepend) and returns the new first
    /// segment; None when the headroom is short or the packet is shared.
    #[inline]
    pub fn prepend(&mut self, n: u16) -> Option<&mut [u8]> {
        if self.refcnt() != 1 {
            return None;
        }
        // SAFETY: exclusive live mbuf; prepend checks the headroom and returns NULL if short.
        if unsafe { ffi::pmds_pktmbuf_prepend(self.ptr(), n) }.is_null() {
            return None;
        }
        self.data_mut()
    }

    /// Drops `n` bytes from the head (rte_pktmbuf_adj); false if the first segment is
    /// shorter or the packet is shared.
    #[inline]
    pub fn adj(&mut self, n: u16) -> bool {
        // SAFETY: exclusive live mbuf; adj checks the length and returns NULL if short.
        self.refcnt() == 1 && !unsafe { ffi::pmds_pktmbuf_adj(self.ptr(), n) }.is_null()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own this reference; rte_pktmbuf_free drops one reference (and the
        // buffer with the last one).
        unsafe { ffi::pmds_pktmbuf_free(self.ptr()) }
    }
}

impl Batch {
    /// Moves the first `n` pending packets (fewer if this batch has fewer or `to` fills
    /// up) to the end of `to`, keeping their order; returns how many moved. Ownership
    /// moves with the pointers: a run of packets bound for one port costs one copy of
    /// their pointers, not a step per packet.
    #[inline(always)]
    pub fn move_front(&mut self, n: usize, to: &mut Batch) -> usize {
        let n = n.min(self.len()).min(MAX_BURST - to.tail);
        to.pkts[to.tail..to.tail + n].copy_from_slice(&self.pkts[self.head..self.head + n]);
        to.tail += n;
        self.tx_consumed(n);
        n
    }

    /// Frees the first `n` pending packets (fewer if there are fewer); returns how many.
    #[inline(always)]
    pub fn drop_front(&mut self, n: usize) -> usize {
        let n = n.min(self.len());
        self.free_front(n);
        n
    }

    /// Calls `f` on every pending packet in order, which may edit or replace it; keeps
    /// those for which it returns true (in order) and frees the others.
    #[inline(always)]
    pub fn retain_mut(&mut self, mut f: impl FnMut(&mut Mbuf) -> bool) {
        let mut w = self.head;
        for r in self.head..self.tail {
            // The slot's reference moves into `m` (the slot is emptied: a NULL is skipped
            // by rte_pktmbuf_free_bulk, so nothing is freed twice if `f` unwinds); it
            // comes back below if kept, and is freed with `m` otherwise.
            let Some(p) = std::ptr::NonNull::new(std::mem::replace(&mut self.pkts[r], std::ptr::null_mut())) else { continue };
            let mut m = Mbuf(p);
            if f(&mut m) {
                self.pkts[w] = m.0.as_ptr();
                std::mem::forget(m);
                w += 1;
            }
        }
        self.tail = w;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Takes the first pending packet out of the batch.
    #[inline(always)]
    pub fn pop_front(&mut self) -> Option<Mbuf> {
        if self.is_empty() {
            return None;
        }
        let m = self.pkts[self.head];
        self.tx_consumed(1);
        std::ptr::NonNull::new(m).map(Mbuf)
    }

    /// Appends a packet; hands it back when the batch is full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.tail == MAX_BURST {
            return Err(m);
        }
        self.pkts[self.tail] = m.0.as_ptr();
        self.tail += 1;
        std::mem::forget(m);
        Ok(())
    }
}
