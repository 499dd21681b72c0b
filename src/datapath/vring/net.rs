//! virtio-net on top of the rings (virtio 1.1 §5.1.6): every buffer a guest sends
//! starts with a `virtio_net_hdr` (10 bytes, or 12 with `num_buffers` when
//! VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF is negotiated) and the frame follows,
//! possibly over several descriptors (§2.6.4: no layout assumed, the header itself may be
//! split); every buffer we fill starts with a header we write whole (never read first:
//! the guest's copy of that line is the one the other core last wrote).
//!
//! A frame is copied from a [`Frame`] — another guest's chain, an mbuf's bytes, or either
//! with a VLAN tag edit applied on the way — straight into the receiving guest's
//! buffers, one copy.

use crate::guest::{GuestMemory, Span};

use super::chain::{Chain, Seg};

/// `virtio_net_hdr.flags`: the checksum from `csum_start` on is still to be computed.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.flags`: the checksum was checked (a receiver may skip it).
pub const HDR_F_DATA_VALID: u8 = 2;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_ECN: u8 = 0x80;

/// The longest header (with `num_buffers`).
pub const HDR_MAX: usize = 12;

/// A `virtio_net_hdr` as read (one copy) or to be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl NetHdr {
    pub fn from_bytes(b: &[u8; HDR_MAX]) -> NetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        NetHdr { flags: b[0], gso_type: b[1], hdr_len: u(2), gso_size: u(4), csum_start: u(6), csum_offset: u(8), num_buffers: u(10) }
    }

    pub fn to_bytes(self) -> [u8; HDR_MAX] {
        let mut b = [0u8; HDR_MAX];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    /// Plain: no checksum left to do, no segmentation.
    pub fn is_plain(&self) -> bool {
        self.flags & HDR_F_NEEDS_CSUM == 0 && self.gso_type & !GSO_ECN == GSO_NONE
    }
}

/// Where a frame's bytes come from when it is copied into a guest.
pub trait Frame {
    /// Its length.
    fn len(&self) -> u32;

    /// Copies its bytes `off..off + n` to `dst` at `dst_off`; false if they are not there.
    fn copy_to(&self, off: u32, dst: &Span<'_>, dst_off: u32, n: u32) -> bool;

    /// Copies its bytes `off..off + dst.len()` into `dst`; false if they are not there.
    fn read(&self, off: u32, dst: &mut [u8]) -> bool;

    /// The whole frame in `buf` (the slow paths that rewrite a frame: checksums, TCP
    /// segmentation). False if its bytes are not all there.
    fn gather(&self, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        buf.resize(self.len() as usize, 0);
        self.read(0, buf)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A frame in a guest's buffers: the bytes of `segs` from `skip` on (past the header).
pub struct GuestFrame<'a> {
    pub mem: &'a GuestMemory,
    pub segs: &'a [Seg],
    pub skip: u32,
    pub len: u32,
}

impl<'a> GuestFrame<'a> {
    /// The frame of a chain a guest sent: everything after its `hdr` bytes of header.
    pub fn of(mem: &'a GuestMemory, chain: &'a Chain, hdr: u32) -> GuestFrame<'a> {
        GuestFrame { mem, segs: chain.segs(), skip: hdr, len: chain.total.saturating_sub(hdr) }
    }

    /// Copies the frame's bytes from `off` into `dst` (as many as there are); returns
    /// how many.
    pub fn read_some(&self, off: u32, dst: &mut [u8]) -> usize {
        self.read_some_hinted(off, dst, &mut 0)
    }

    /// [`Self::read_some`] with the caller's translation hint: a burst's frames mostly
    /// sit in one memory region, found once rather than per frame.
    #[inline]
    pub fn read_some_hinted(&self, mut off: u32, dst: &mut [u8], hint: &mut usize) -> usize {
        let mut done = 0usize;
        let mut pos = 0u32; // offset of the current segment's first byte in the chain
        off += self.skip;
        for s in self.segs {
            if done == dst.len() {
                break;
            }
            let end = pos + s.len;
            if off < end {
                let at = off - pos;
                let n = ((s.len - at) as usize).min(dst.len() - done);
                let Some(span) = self.mem.span(s.gpa, s.len, hint) else { return done };
                if !span.read(at, &mut dst[done..done + n]) {
                    return done;
                }
                done += n;
                off += n as u32;
            }
            pos = end;
        }
        done
    }
}

impl Frame for GuestFrame<'_> {
    fn len(&self) -> u32 {
        self.len
    }

    fn read(&self, off: u32, dst: &mut [u8]) -> bool {
        u64::from(off) + dst.len() as u64 <= u64::from(self.len) && self.read_some(off, dst) == dst.len()
    }

    #[inline]
    fn copy_to(&self, off: u32, dst: &Span<'_>, mut dst_off: u32, mut n: u32) -> bool {
        if u64::from(off) + u64::from(n) > u64::from(self.len) {
            return false;
        }
        let mut at = off + self.skip;
        let mut pos = 0u32;
        let mut hint = 0;
        for s in self.segs {
            if n == 0 {
                break;
            }
            let end = pos + s.len;
            if at < end {
                let k = (end - at).min(n);
                let Some(span) = self.mem.span(s.gpa, s.len, &mut hint) else { return false };
                if !span.copy_to(at - pos, dst, dst_off, k) {
                    return false;
                }
                at += k;
                dst_off += k;
                n -= k;
            }
            pos = end;
        }
        n == 0
    }
}

/// A frame in our own memory (an mbuf's data).
pub struct BytesFrame<'a>(pub &'a [u8]);

impl Frame for BytesFrame<'_> {
    fn len(&self) -> u32 {
        self.0.len() as u32
    }

    fn read(&self, off: u32, dst: &mut [u8]) -> bool {
        let o = off as usize;
        self.0.get(o..o + dst.len()).is_some_and(|b| {
            dst.copy_from_slice(b);
            true
        })
    }

    #[inline]
    fn copy_to(&self, off: u32, dst: &Span<'_>, dst_off: u32, n: u32) -> bool {
        let (o, e) = (off as usize, off as usize + n as usize);
        self.0.get(o..e).is_some_and(|b| dst.write(dst_off, b))
    }
}

/// The bytes of a frame rewritten at the front: the first `cut` bytes of `inner` are
/// replaced by `head` (a VLAN tag pushed: 12 bytes of addresses, then the new tag; popped:
/// the 16 bytes of addresses and tag become the 12 of addresses; rewritten: the same
/// length with another TCI). The rest is `inner`'s, unmoved.
pub struct EditedFrame<'a, F: Frame> {
    pub inner: &'a F,
    pub head: &'a [u8],
    pub cut: u32,
}

impl<F: Frame> Frame for EditedFrame<'_, F> {
    fn len(&self) -> u32 {
        self.inner.len() - self.cut + self.head.len() as u32
    }

    fn read(&self, off: u32, dst: &mut [u8]) -> bool {
        let h = self.head.len();
        let o = off as usize;
        let k = h.saturating_sub(o).min(dst.len());
        if k > 0 {
            dst[..k].copy_from_slice(&self.head[o..o + k]);
        }
        k == dst.len() || self.inner.read((o + k - h) as u32 + self.cut, &mut dst[k..])
    }

    fn copy_to(&self, off: u32, dst: &Span<'_>, mut dst_off: u32, mut n: u32) -> bool {
        let h = self.head.len() as u32;
        let mut off = off;
        if off < h {
            let k = (h - off).min(n);
            if !dst.write(dst_off, &self.head[off as usize..(off + k) as usize]) {
                return false;
            }
            off += k;
            dst_off += k;
            n -= k;
        }
        n == 0 || self.inner.copy_to(off - h + self.cut, dst, dst_off, n)
    }
}

/// Why a frame was not placed in a guest's receive buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// Not enough buffers available: nothing was taken (try again later, or drop).
    NoRoom,
    /// The buffers the guest offered are malformed (counted by the caller; they were
    /// taken and returned unused).
    BadBuffers,
    /// A buffer the guest offered lies outside its memory (as BadBuffers otherwise).
    BadAddr,
    /// The frame does not fit the buffers even when they are all used (a guest without
    /// mergeable buffers that posted too small ones).
    TooBig,
}

/// A guest's receive side: its header length and whether one frame may spread over
/// several buffers (VIRTIO_NET_F_MRG_RXBUF).
#[derive(Debug, Clone, Copy)]
pub struct RxFormat {
    pub hdr_len: u32,
    pub mergeable: bool,
}

/// Writes the header and copies `frame` into `chains` (buffers already taken from the
/// ring: with mergeable buffers as many as needed, else one), returning the bytes
/// written into each (for the used ring). `hdr.num_buffers` is set here.
pub fn fill(mem: &GuestMemory, fmt: RxFormat, mut hdr: NetHdr, frame: &impl Frame, chains: &[Chain], written: &mut [u32]) -> bool {
    let hdr_len = fmt.hdr_len;
    hdr.num_buffers = chains.len() as u16;
    let hb = hdr.to_bytes();
    let mut hint = 0;
    // The header first (it may span buffers of the first chain, §2.6.4).
    let mut left_hdr = &hb[..hdr_len as usize];
    let mut fpos = 0u32; // frame bytes copied
    let flen = frame.len();
    for (ci, c) in chains.iter().enumerate() {
        let mut w = 0u32;
        for s in c.segs() {
            let Some(span) = mem.span(s.gpa, s.len, &mut hint) else { return false };
            let mut at = 0u32;
            if !left_hdr.is_empty() {
                let k = (left_hdr.len() as u32).min(s.len);
                if !span.write(0, &left_hdr[..k as usize]) {
                    return false;
                }
                left_hdr = &left_hdr[k as usize..];
                at = k;
            }
            let k = (s.len - at).min(flen - fpos);
            if k > 0 && !frame.copy_to(fpos, &span, at, k) {
                return false;
            }
            fpos += k;
            w += at + k;
            if fpos == flen && left_hdr.is_empty() {
                break;
            }
        }
        written[ci] = w;
    }
    fpos == flen && left_hdr.is_empty()
}
