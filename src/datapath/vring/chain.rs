//! Descriptor chains (virtio 1.1 §2.6.5, §2.6.5.3): walking one from its head into a
//! list of guest buffers, with every field the guest controls read once and checked.
//!
//! What a chain may not do, each a distinct error: a head or `next` index outside the
//! ring; more hops than the queue size (a loop, or a chain longer than the spec
//! allows); an indirect descriptor when the feature was not negotiated, with `NEXT` set,
//! whose length is not a multiple of 16 or names more descriptors than the queue size,
//! or inside an indirect table; a buffer on the wrong side (device-writable in a chain
//! the device reads, or the other way round); a buffer outside guest memory; more bytes
//! than the caller accepts; more buffers than [`MAX_SEGS`]; (transmit) fewer bytes than
//! the virtio-net header; a zero-length buffer (as QEMU's virtqueue code and
//! libvhost-user refuse it: it moves no byte and only costs a walk).

use crate::guest::{Desc, GuestMemory, Ring};

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// The most buffers one chain may have (a 64 KiB TSO frame in 4 KiB pages is 17; Linux
/// sends at most MAX_SKB_FRAGS + 2 = 19).
pub const MAX_SEGS: usize = 64;

/// One guest buffer of a chain, checked to lie in guest memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seg {
    pub gpa: u64,
    pub len: u32,
}

/// Why a chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// A head or `next` index outside the ring or the indirect table.
    Index,
    /// More hops than the queue size (a loop, or too long a chain).
    Loop,
    /// An indirect descriptor that breaks a rule (not negotiated, `NEXT` set, length, nested).
    Indirect,
    /// A buffer the device may not use in that direction.
    Direction,
    /// A buffer outside guest memory.
    Addr,
    /// More bytes than accepted.
    TooLong,
    /// More buffers than [`MAX_SEGS`].
    TooManySegs,
    /// A transmit chain shorter than the virtio-net header.
    ShortHeader,
    /// A zero-length buffer.
    Empty,
    /// A virtio-net header that [`super::offload::check`] refuses.
    BadHdr,
    /// Not a fault of the chain: the burst already walked its share of descriptors
    /// ([`super::queue::Vq::begin`]); the chain stays available for the next burst.
    Capped,
}

/// The buffers of one chain: a fixed array (no allocation per packet). `repr(C)` with
/// the counts first: a one-buffer chain is one cache line.
#[derive(Clone)]
#[repr(C)]
pub struct Chain {
    pub head: u16,
    pub n: usize,
    /// Sum of the buffers' lengths.
    pub total: u32,
    /// Descriptors the walk read (indirect ones included), charged to the burst's budget.
    pub hops: u32,
    pub segs: [Seg; MAX_SEGS],
}

impl Default for Chain {
    fn default() -> Chain {
        Chain { head: 0, n: 0, total: 0, hops: 0, segs: [Seg::default(); MAX_SEGS] }
    }
}

impl Chain {
    pub fn segs(&self) -> &[Seg] {
        &self.segs[..self.n]
    }

    /// Makes this the one-buffer chain `head` → `seg` (a buffer already checked, as
    /// [`super::tx_one`] does), writing one segment rather than resetting the array.
    pub fn set_one(&mut self, head: u16, seg: Seg) {
        self.head = head;
        self.n = 1;
        self.total = seg.len;
        self.hops = 1;
        self.segs[0] = seg;
    }

    fn push(&mut self, mem: &GuestMemory, d: &Desc, max: u32, hint: &mut usize) -> Result<(), ChainError> {
        if d.len == 0 {
            return Err(ChainError::Empty);
        }
        self.total = self.total.checked_add(d.len).filter(|&t| t <= max).ok_or(ChainError::TooLong)?;
        if mem.span(d.addr, d.len, hint).is_some() {
            return self.push_seg(Seg { gpa: d.addr, len: d.len });
        }
        // The slow path: a buffer across two regions becomes one segment per region.
        let mut full = false;
        let inside = mem.pieces(d.addr, d.len, |gpa, len| {
            full |= self.push_seg(Seg { gpa, len }).is_err();
        });
        match (inside, full) {
            (false, _) => Err(ChainError::Addr),
            (true, true) => Err(ChainError::TooManySegs),
            (true, false) => Ok(()),
        }
    }

    #[inline(always)]
    fn push_seg(&mut self, s: Seg) -> Result<(), ChainError> {
        let slot = self.segs.get_mut(self.n).ok_or(ChainError::TooManySegs)?;
        *slot = s;
        self.n += 1;
        Ok(())
    }
}

/// What a walk accepts.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The device writes these buffers (a receive chain) rather than reads them.
    pub write: bool,
    /// VIRTIO_F_INDIRECT_DESC was negotiated.
    pub indirect: bool,
    /// Most bytes in the chain.
    pub max_len: u32,
}

/// Walks the chain that starts at `head` into `out`.
///
/// # Errors
/// The first rule the chain breaks (module doc); `out` then holds no usable chain.
pub fn walk(ring: &Ring, head: u16, rules: Rules, hint: &mut usize, out: &mut Chain) -> Result<(), ChainError> {
    out.head = head;
    out.n = 0;
    out.total = 0;
    out.hops = 0;
    let size = ring.size();
    if head >= size {
        return Err(ChainError::Index);
    }
    let mem = ring.mem();
    let mut i = head;
    // Every descriptor of a chain counts against the queue size, indirect ones too
    // (§2.6.5.3.1: "A driver MUST NOT create a descriptor chain longer than the Queue
    // Size"), so one counter bounds the whole walk.
    loop {
        out.hops += 1;
        if out.hops > u32::from(size) {
            return Err(ChainError::Loop);
        }
        let d = ring.desc(i);
        if d.flags & F_INDIRECT != 0 {
            if !rules.indirect || d.flags & F_NEXT != 0 || !d.len.is_multiple_of(16) || d.len == 0 || d.len / 16 > u32::from(size) {
                return Err(ChainError::Indirect);
            }
            return walk_indirect(mem, &d, rules, hint, out);
        }
        if (d.flags & F_WRITE != 0) != rules.write {
            return Err(ChainError::Direction);
        }
        out.push(mem, &d, rules.max_len, hint)?;
        if d.flags & F_NEXT == 0 {
            return Ok(());
        }
        if d.next >= size {
            return Err(ChainError::Index);
        }
        i = d.next;
    }
}

/// The table an indirect descriptor names (its length checked by the caller): walked
/// from entry 0, at most as many hops as it has entries.
fn walk_indirect(mem: &GuestMemory, ind: &Desc, rules: Rules, hint: &mut usize, out: &mut Chain) -> Result<(), ChainError> {
    let table = mem.span(ind.addr, ind.len, hint).ok_or(ChainError::Addr)?;
    let n = ind.len / 16;
    let mut i = 0u32;
    let mut hops = 0u32;
    loop {
        hops += 1;
        out.hops += 1;
        if hops > n {
            return Err(ChainError::Loop);
        }
        let d = table.desc(i).ok_or(ChainError::Index)?;
        if d.flags & F_INDIRECT != 0 {
            return Err(ChainError::Indirect);
        }
        if (d.flags & F_WRITE != 0) != rules.write {
            return Err(ChainError::Direction);
        }
        out.push(mem, &d, rules.max_len, hint)?;
        if d.flags & F_NEXT == 0 {
            return Ok(());
        }
        if u32::from(d.next) >= n {
            return Err(ChainError::Index);
        }
        i = u32::from(d.next);
    }
}
