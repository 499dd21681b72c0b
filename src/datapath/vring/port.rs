//! A worker's handles on an own-path vhost port: the guest's transmit vring of a queue
//! pair (what we receive) and its receive vring (where we send). Each holds the claim on
//! its vring (one handle per vring, `dpdk::claims`), the device snapshot it serves (whose
//! `Arc` keeps the guest memory mapped) and the ring positions, which go back to the
//! slot when the handle lets go (a reload, a paused device) so that the next holder — or
//! rte_vhost, for a frontend's GET_VRING_BASE — resumes where this one stopped.
//!
//! Two ways through: with mbufs (`rx_burst` copies guest frames into fresh mbufs,
//! `tx_burst` copies mbufs into guest buffers), for ports that are not own-path vhost;
//! and guest to guest ([`OwnRxQueue::forward`]), one copy and no mbuf, when both ends are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::datapath::stats::{DropCause, PortCounters, N_CAUSES};
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;
use crate::dpdk::vhost::own::{bits, OwnDevice};
use crate::dpdk::vhost::PairClaim;

use super::chain::{Chain, ChainError};
use super::net::{self, BytesFrame, EditedFrame, Frame, GuestFrame, NetHdr, RxError, RxFormat};
use super::queue::{Broken, Vq};
use super::{rx_one, rx_reserve, tx_frame, tx_one};
use crate::datapath::bridge::fwd::Heads;
use crate::datapath::bridge::vlan::{edited_head, TagEdit};
use crate::guest::Span;

/// The cause a refused chain is counted under.
pub fn cause(e: ChainError) -> DropCause {
    match e {
        ChainError::Addr => DropCause::GuestBadAddr,
        ChainError::TooLong => DropCause::GuestOversize,
        ChainError::Index | ChainError::Loop | ChainError::Indirect | ChainError::Direction | ChainError::TooManySegs => {
            DropCause::GuestBadChain
        }
    }
}

/// One vring served by a worker: the snapshot it came from and the queue state.
struct Served {
    dev: Arc<OwnDevice>,
    vq: Vq,
    vring: u16,
}

/// The claim, and the vring served while the device runs.
struct Side {
    claim: PairClaim,
    served: Option<Served>,
    /// Hand the positions back when letting go (a guest-TX vring, which only this
    /// handle serves; a guest-RX vring's positions are stored after every burst, under
    /// its lock, because two handles may serve it).
    store_on_release: bool,
}

impl Side {
    fn new(claim: PairClaim, store_on_release: bool) -> Side {
        Side { claim, served: None, store_on_release }
    }

    /// At a reload point: serve vring `vring` of the slot's current device (or nothing),
    /// handing the old positions back first.
    fn reload(&mut self, vring: u16, poll: bool) {
        let dev = self.claim.slot().own_device();
        let same = match (&self.served, &dev) {
            (Some(s), Some(d)) => Arc::ptr_eq(&s.dev, d) && s.vring == vring,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.release();
        let Some(dev) = dev else { return };
        let Some(ring) = dev.ring(vring) else { return };
        let (avail, used) = self.claim.slot().position(vring);
        let vq = Vq::new(ring, avail, used, dev.has(bits::RING_F_EVENT_IDX));
        // A polling worker wants no kicks (virtio 1.1 §2.6.7.1).
        vq.want_kicks(!poll);
        self.served = Some(Served { dev, vq, vring });
    }

    fn release(&mut self) {
        if let Some(s) = self.served.take() {
            if self.store_on_release {
                self.claim.slot().set_position(s.vring, s.vq.positions());
            }
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.release();
    }
}

/// Receive side of an own-path queue pair: the guest's TX vring (2·pair + 1).
pub struct OwnRxQueue {
    side: Side,
    pool: Arc<Mempool>,
    chains: Box<[Chain]>,
    /// When frames began to be held back for want of receive buffers (0: they are not).
    held_since: u64,
    /// A peeked burst (see [`OwnRxQueue::peek`]): each good frame's first bytes and
    /// length, and the heads of every chain taken (good or refused) to return.
    heads: Box<[([u8; 16], u32)]>,
    taken: Box<[u16]>,
    peeked: (usize, usize),
}

impl OwnRxQueue {
    pub fn new(claim: PairClaim, pool: Arc<Mempool>) -> OwnRxQueue {
        OwnRxQueue {
            side: Side::new(claim, true),
            pool,
            chains: vec![Chain::default(); MAX_BURST].into_boxed_slice(),
            held_since: 0,
            heads: vec![([0u8; 16], 0); MAX_BURST].into_boxed_slice(),
            taken: vec![0u16; MAX_BURST].into_boxed_slice(),
            peeked: (0, 0),
        }
    }

    fn vring(&self) -> u16 {
        2 * self.side.claim.pair() + 1
    }

    /// At the worker's reload point.
    pub fn reload(&mut self) {
        let v = self.vring();
        self.side.reload(v, true);
    }

    /// Adaptive idle: asks the guest to kick (or not) and returns the kick eventfd to
    /// sleep on. Turning kicks on must be followed by one more poll (a buffer made
    /// available just before is not kicked, §2.6.7.1).
    pub fn arm(&mut self, on: bool) -> Option<i32> {
        let s = self.side.served.as_ref()?;
        s.vq.want_kicks(on);
        if on {
            s.dev.kickfd(s.vring)
        } else {
            None
        }
    }

    /// Copies up to `max` frames the guest sent into fresh mbufs, returns the chains to
    /// the guest (one used-index publish), and the count. Refused chains are returned
    /// unused and counted in `rxc`; a broken ring is not served any more.
    pub fn rx_burst(&mut self, batch: &mut Batch, max: usize, rxc: &PortCounters) -> usize {
        let Some(s) = self.side.served.as_mut() else { return 0 };
        let n = match s.vq.pending() {
            Ok(n) => usize::from(n).min(max).min(MAX_BURST),
            Err(Broken) => return 0,
        };
        if n == 0 {
            return 0;
        }
        let hdr = s.dev.hdr_len();
        let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
        let chains = &mut self.chains;
        let mut drops = [0u64; N_CAUSES];
        let Served { vq, dev, vring } = s;
        let ok = batch.alloc_fill(&self.pool, n, |i, room| {
            let c = &mut chains[i];
            match tx_frame(vq, i as u16, hdr, indirect, c) {
                Ok(_) => {
                    let f = GuestFrame::of(&dev.mem, c, hdr);
                    if f.len() as usize > room.len() {
                        drops[DropCause::GuestOversize as usize] += 1;
                        return 0;
                    }
                    f.read(0, &mut room[..f.len() as usize])
                }
                Err(e) => {
                    c.head = vq.head(i as u16);
                    drops[cause(e) as usize] += 1;
                    0
                }
            }
        });
        if !ok {
            return 0;
        }
        vq.take(n as u16);
        for c in &chains[..n] {
            vq.put(c.head, 0);
        }
        if vq.publish() {
            dev.notify(*vring);
        }
        if drops.iter().any(|&d| d > 0) {
            for cause in DropCause::ALL {
                if drops[cause as usize] > 0 {
                    rxc.drop(cause, drops[cause as usize]);
                }
            }
            // The refused frames' mbufs hold nothing: out of the batch, in order.
            batch.drop_empty();
        }
        batch.len()
    }

    /// The device this queue serves (for the guest-to-guest path: the same device and
    /// memory on both ends of a forwarding decision).
    pub fn is_up(&self) -> bool {
        self.side.served.is_some()
    }

    /// Guest to guest: up to `max` frames from this guest's TX vring copied straight into
    /// `out`'s guest's RX vring (one copy, no mbuf), both rings published once.
    ///
    /// A frame the receiver has no room for, after `retries` fresh looks at its ring,
    /// stays in this ring (back-pressure: the sender's ring fills, nothing is lost here)
    /// — for at most `hold` TSC cycles from the first burst held back, after which what
    /// does not fit is dropped (`tx_full`), so that a receiver that never drains cannot
    /// stop the sender for good. `hold` 0 drops at once, as the library path does.
    ///
    /// Per frame the common case is one descriptor each side ([`tx_one`], [`rx_one`]):
    /// read the source descriptor, its header, the destination descriptor, write the
    /// destination header, copy the frame, return both. Anything else (chains, indirect
    /// tables, mergeable buffers for a long frame) takes the general walk.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        out: &mut OwnTxQueue,
        max: usize,
        retries: u32,
        now: u64,
        hold: u64,
        rxc: &PortCounters,
        txc: &PortCounters,
    ) -> Fwd {
        let Some(s) = self.side.served.as_mut() else { return Fwd::default() };
        let n = match s.vq.pending() {
            Ok(n) => usize::from(n).min(max).min(MAX_BURST),
            Err(Broken) => return Fwd::default(),
        };
        if n == 0 {
            return Fwd::default();
        }
        let chains = &mut self.chains;
        let held_since = &mut self.held_since;
        let r = out.locked(|o, ochains, _| {
            let hdr = s.dev.hdr_len();
            let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
            let fmt = RxFormat { hdr_len: o.dev.hdr_len(), mergeable: o.dev.has(bits::NET_F_MRG_RXBUF) };
            let oindirect = o.dev.has(bits::RING_F_INDIRECT_DESC);
            let Ok(mut avail) = o.vq.pending() else { return None };
            let holding = *held_since != 0 && now.wrapping_sub(*held_since) <= hold;
            let may_hold = hold > 0 && (*held_since == 0 || holding);
            let (mut taken, mut sent, mut out_k) = (0usize, 0usize, 0u16);
            let (mut bytes, mut tx_bytes) = (0u64, 0u64);
            let mut tries = 0;
            let mut written = [0u32; 64];
            let mut heads = [0u16; MAX_BURST];
            let (mut ohint, mut shint) = (o.vq.hint, s.vq.hint);
            while taken < n {
                let k = taken as u16;
                // The source frame: one descriptor, or a chain.
                let (head, h, frame) = match tx_one(&s.vq, k, hdr, &mut shint) {
                    Some((head, _, span, h)) => (head, h, Src::One(SpanFrame { span, skip: hdr, len: span.len() - hdr })),
                    None => {
                        let c = &mut chains[taken];
                        match tx_frame(&mut s.vq, k, hdr, indirect, c) {
                            Ok(h) => (c.head, h, Src::Chain(GuestFrame::of(&s.dev.mem, c, hdr))),
                            Err(e) => {
                                heads[taken] = s.vq.head(k);
                                rxc.drop(cause(e), 1);
                                taken += 1;
                                continue;
                            }
                        }
                    }
                };
                let flen = frame.len();
                // The destination: one descriptor big enough, or the general reservation.
                if let Some((dh, dspan)) = rx_one(&o.vq, out_k, avail, fmt.hdr_len + flen, &mut ohint) {
                    if dspan.write_array(0, &plain(h).to_bytes()) && frame.copy_to(0, &dspan, fmt.hdr_len, flen) {
                        o.vq.put(dh, fmt.hdr_len + flen);
                        sent += 1;
                        tx_bytes += u64::from(flen);
                    } else {
                        o.vq.put(dh, 0);
                        txc.drop(DropCause::GuestBadAddr, 1);
                    }
                    out_k += 1;
                    bytes += u64::from(flen);
                    heads[taken] = head;
                    taken += 1;
                    continue;
                }
                match rx_reserve(&mut o.vq, out_k, avail, fmt, oindirect, flen, ochains) {
                    Ok(k) => {
                        let bufs = &ochains[..usize::from(k)];
                        let w = &mut written[..usize::from(k)];
                        if net::fill(&o.dev.mem, fmt, plain(h), &frame, bufs, w) {
                            for (b, &len) in bufs.iter().zip(w.iter()) {
                                o.vq.put(b.head, len);
                            }
                            sent += 1;
                            tx_bytes += u64::from(flen);
                        } else {
                            for b in bufs {
                                o.vq.put(b.head, 0);
                            }
                            txc.drop(DropCause::GuestBadAddr, 1);
                        }
                        out_k += k;
                    }
                    Err((RxError::NoRoom, _)) => {
                        // Look again (the guest may have posted buffers meanwhile), then
                        // hold the rest back in the sender's ring, or drop it.
                        if tries < retries {
                            tries += 1;
                            if let Ok(a) = o.vq.pending() {
                                avail = a;
                            }
                            continue;
                        }
                        if may_hold {
                            break;
                        }
                        txc.drop(DropCause::TxFull, 1);
                    }
                    Err((e, k)) => {
                        for b in &ochains[..usize::from(k)] {
                            o.vq.put(b.head, 0);
                        }
                        out_k += k;
                        txc.drop(if e == RxError::TooBig { DropCause::GuestOversize } else { DropCause::GuestBadChain }, 1);
                    }
                }
                bytes += u64::from(flen);
                heads[taken] = head;
                taken += 1;
            }
            (o.vq.hint, s.vq.hint) = (ohint, shint);
            o.vq.take(out_k);
            if o.vq.publish() {
                o.dev.notify(o.vring);
            }
            s.vq.take(taken as u16);
            for &h in &heads[..taken] {
                s.vq.put(h, 0);
            }
            if s.vq.publish() {
                s.dev.notify(s.vring);
            }
            // Held: counted once, when a hold begins.
            let held = if taken < n && *held_since == 0 {
                *held_since = now.max(1);
                n - taken
            } else {
                0
            };
            if taken == n || !may_hold {
                *held_since = 0;
            }
            Some(Fwd { received: taken, sent, held, rx_bytes: bytes, tx_bytes })
        });
        match r.flatten() {
            Some(f) => f,
            // No device behind the egress (or its ring is broken): the frames are dropped
            // (port_down), not held.
            None => drop_all(s, n, &mut self.chains, rxc, txc),
        }
    }
}

/// A frame in one guest buffer: its bytes from `skip` on.
struct SpanFrame<'m> {
    span: Span<'m>,
    skip: u32,
    len: u32,
}

/// A source frame: in one buffer (the fast path) or over a chain.
enum Src<'m> {
    One(SpanFrame<'m>),
    Chain(GuestFrame<'m>),
}

impl Frame for Src<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        match self {
            Src::One(f) => f.len,
            Src::Chain(f) => f.len(),
        }
    }

    #[inline(always)]
    fn copy_to(&self, off: u32, dst: &Span<'_>, dst_off: u32, n: u32) -> bool {
        match self {
            Src::One(f) => u64::from(off) + u64::from(n) <= u64::from(f.len) && f.span.copy_to(f.skip + off, dst, dst_off, n),
            Src::Chain(f) => f.copy_to(off, dst, dst_off, n),
        }
    }
}

impl OwnRxQueue {
    /// For decisions made per frame (the bridge): takes up to `max` frames the guest sent
    /// and reads each one's first 16 bytes, without copying any frame yet. Refused chains
    /// are counted in `rxc` and only returned. Returns (frames, chains taken, the frames'
    /// bytes); the frames
    /// are then [`OwnRxQueue::frame`]`(0..frames)`, delivered with
    /// [`OwnTxQueue::put_frames`] or [`OwnRxQueue::frame_bytes`], and all returned to the
    /// guest by [`OwnRxQueue::finish`].
    pub fn peek(&mut self, max: usize, rxc: &PortCounters) -> (usize, usize, u64) {
        self.peeked = (0, 0);
        let Some(s) = self.side.served.as_mut() else { return (0, 0, 0) };
        let n = match s.vq.pending() {
            Ok(n) => usize::from(n).min(max).min(MAX_BURST),
            Err(Broken) => return (0, 0, 0),
        };
        let hdr = s.dev.hdr_len();
        let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
        let (mut good, mut bytes) = (0usize, 0u64);
        let mut hint = s.vq.hint;
        for k in 0..n {
            let c = &mut self.chains[good];
            // One descriptor (the common case) as a one-buffer chain, else the walk.
            let mut first = None;
            let ok = match tx_one(&s.vq, k as u16, hdr, &mut hint) {
                Some((head, seg, span, _)) => {
                    c.head = head;
                    c.n = 1;
                    c.total = seg.len;
                    c.segs[0] = seg;
                    first = span.read_array::<16>(hdr);
                    true
                }
                None => match tx_frame(&mut s.vq, k as u16, hdr, indirect, c) {
                    Ok(_) => true,
                    Err(e) => {
                        self.taken[k] = s.vq.head(k as u16);
                        rxc.drop(cause(e), 1);
                        false
                    }
                },
            };
            if ok {
                self.taken[k] = c.head;
                let f = GuestFrame::of(&s.dev.mem, c, hdr);
                let h = &mut self.heads[good];
                h.1 = f.len();
                match first {
                    Some(b) => h.0 = b,
                    None => {
                        f.read(0, &mut h.0);
                    }
                }
                bytes += u64::from(h.1);
                good += 1;
            }
        }
        s.vq.hint = hint;
        self.peeked = (good, n);
        (good, n, bytes)
    }

    /// The peeked frames' first bytes, for the bridge's first pass.
    pub fn peeked_heads(&self) -> PeekedHeads<'_> {
        PeekedHeads(&self.heads[..self.peeked.0])
    }

    /// Returns every chain [`OwnRxQueue::peek`] took, in one used-index publish.
    pub fn finish(&mut self) {
        let (_, n) = std::mem::take(&mut self.peeked);
        let Some(s) = self.side.served.as_mut() else { return };
        s.vq.take(n as u16);
        for &h in &self.taken[..n] {
            s.vq.put(h, 0);
        }
        if s.vq.publish() {
            s.dev.notify(s.vring);
        }
    }

    /// Peeked frame `k` with `edit` applied on the way (None if the edit does not apply,
    /// or k is past the peeked frames). Inlined: returned through memory, the frame would
    /// be stored field by field and loaded whole — a store-forwarding stall per frame
    /// (measured: most of the bridge's own-path cycles).
    #[inline(always)]
    pub fn frame(&self, k: usize, edit: TagEdit) -> Option<PeekedFrame<'_>> {
        let s = self.side.served.as_ref()?;
        let (first, len) = self.heads.get(k).filter(|_| k < self.peeked.0)?;
        let (head, n, cut) = edited_head(first, *len as usize, edit)?;
        let c = &self.chains[k];
        let mut hint = 0;
        let one = if c.n == 1 { s.dev.mem.span(c.segs[0].gpa, c.segs[0].len, &mut hint) } else { None };
        Some(PeekedFrame { inner: GuestFrame::of(&s.dev.mem, c, s.dev.hdr_len()), one, head, n, cut })
    }

    /// Copies peeked frame `k` with `edit` into `room` (an mbuf's buffer); returns its
    /// length, 0 when it does not fit or the edit does not apply.
    pub fn frame_bytes(&self, k: usize, edit: TagEdit, room: &mut [u8]) -> usize {
        let Some(f) = self.frame(k, edit) else { return 0 };
        let len = f.len() as usize;
        if len > room.len() {
            return 0;
        }
        let h = f.n.min(len);
        room[..h].copy_from_slice(&f.head[..h]);
        let got = f.inner.read(f.cut, &mut room[h..len]);
        if h + got == len {
            len
        } else {
            0
        }
    }
}

/// The first bytes of a peeked burst's frames (see `bridge::fwd::Heads`).
pub struct PeekedHeads<'a>(&'a [([u8; 16], u32)]);

impl Heads for PeekedHeads<'_> {
    #[inline(always)]
    fn for_each_head(&self, mut f: impl FnMut(&[u8])) {
        for (h, len) in self.0 {
            f(&h[..(*len as usize).min(16)]);
        }
    }
}

/// A peeked frame as a copy source, its front rewritten by a VLAN edit.
pub struct PeekedFrame<'a> {
    inner: GuestFrame<'a>,
    /// The frame's buffer when it is one descriptor (the common case: copied from the
    /// span directly, without walking segments).
    one: Option<Span<'a>>,
    head: [u8; 16],
    n: usize,
    cut: u32,
}

impl Frame for PeekedFrame<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.inner.len() - self.cut + self.n as u32
    }

    #[inline(always)]
    fn copy_to(&self, off: u32, dst: &Span<'_>, dst_off: u32, n: u32) -> bool {
        let Some(one) = &self.one else {
            return EditedFrame { inner: &self.inner, head: &self.head[..self.n], cut: self.cut }.copy_to(off, dst, dst_off, n);
        };
        // The new front, then the rest of the frame from its one buffer.
        let h = self.n as u32;
        let (mut off, mut dst_off, mut n) = (off, dst_off, n);
        if off < h {
            let k = (h - off).min(n);
            if !dst.write(dst_off, &self.head[off as usize..(off + k) as usize]) {
                return false;
            }
            (off, dst_off, n) = (off + k, dst_off + k, n - k);
        }
        n == 0
            || (u64::from(off) + u64::from(n) <= u64::from(self.len())
                && one.copy_to(self.inner.skip + self.cut + off - h, dst, dst_off, n))
    }
}

/// What [`OwnRxQueue::forward`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fwd {
    pub received: usize,
    pub sent: usize,
    /// Frames left in the sender's ring because the receiver had no buffers.
    pub held: usize,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Takes and returns `n` frames that cannot go anywhere (the egress has no device).
fn drop_all(s: &mut Served, n: usize, chains: &mut [Chain], rxc: &PortCounters, txc: &PortCounters) -> Fwd {
    let hdr = s.dev.hdr_len();
    let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
    let mut bytes = 0u64;
    let mut down = 0u64;
    for (k, c) in chains[..n].iter_mut().enumerate() {
        match tx_frame(&mut s.vq, k as u16, hdr, indirect, c) {
            Ok(_) => {
                bytes += u64::from(c.total.saturating_sub(hdr));
                down += 1;
            }
            Err(e) => {
                c.head = s.vq.head(k as u16);
                rxc.drop(cause(e), 1);
            }
        }
    }
    s.vq.take(n as u16);
    for c in &chains[..n] {
        s.vq.put(c.head, 0);
    }
    if s.vq.publish() {
        s.dev.notify(s.vring);
    }
    txc.drop(DropCause::PortDown, down);
    Fwd { received: n, sent: 0, held: 0, rx_bytes: bytes, tx_bytes: 0 }
}

/// The header a receiver gets for a frame sent with `h`: offloads are not negotiated on
/// this path (yet), so a plain header, in one buffer (`num_buffers` 1: §5.1.6.3.1, also
/// without mergeable buffers; `fill` sets it for several).
fn plain(_h: NetHdr) -> NetHdr {
    ONE_BUFFER
}

/// A plain header for a frame in one receive buffer.
const ONE_BUFFER: NetHdr = NetHdr { flags: 0, gso_type: 0, hdr_len: 0, gso_size: 0, csum_start: 0, csum_offset: 0, num_buffers: 1 };

/// Send side of an own-path queue pair: the guest's RX vring (2·pair), picked among the
/// enabled pairs like the library path's.
pub struct OwnTxQueue {
    side: Side,
    chains: Box<[Chain]>,
    /// A chained mbuf's bytes gathered (allocated once, grown only by jumbo frames).
    gather: Vec<u8>,
    /// Names this handle as the last server of a vring (see `VhostSlot::tx_owner`).
    token: u64,
}

impl OwnTxQueue {
    pub fn new(claim: PairClaim) -> OwnTxQueue {
        // A frame may need as many mergeable buffers as a burst has packets and more:
        // 64 KiB over 1.5 KiB buffers is 44.
        static TOKENS: AtomicU64 = AtomicU64::new(1);
        OwnTxQueue {
            side: Side::new(claim, false),
            chains: vec![Chain::default(); 64].into_boxed_slice(),
            gather: Vec::with_capacity(16384),
            token: TOKENS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// At the worker's reload point: the vring of the pair this handle prefers, modulo
    /// the pairs the frontend enabled (virtio 1.1 §5.1.6.5.5).
    pub fn reload(&mut self) {
        let en = self.side.claim.slot().enabled();
        let pairs: Vec<u16> = (0..32u16).filter(|p| en & (1u64 << (2 * p)) != 0).collect();
        let vring = match pairs.len() {
            0 => 0,
            n => 2 * pairs[usize::from(self.side.claim.pair()) % n],
        };
        self.side.reload(vring, true);
    }

    pub fn is_up(&self) -> bool {
        self.side.served.is_some()
    }

    /// Runs `f` on the served vring under its lock, resuming from the positions another
    /// handle left if it served the vring last, and storing ours after. None without a
    /// device.
    #[inline(always)]
    fn locked<R>(&mut self, f: impl FnOnce(&mut Served, &mut [Chain], &mut Vec<u8>) -> R) -> Option<R> {
        let token = self.token;
        let Side { claim, served, .. } = &mut self.side;
        let s = served.as_mut()?;
        let slot = claim.slot();
        let _g = slot.lock_tx_vring(s.vring)?;
        if slot.tx_owner(s.vring) != token {
            s.vq.set_positions(slot.position(s.vring));
            slot.set_tx_owner(s.vring, token);
        }
        let r = f(s, &mut self.chains, &mut self.gather);
        slot.set_position(s.vring, s.vq.positions());
        Some(r)
    }

    /// Copies peeked frames `at..at + n` of `rq` with `edit` applied into the guest's
    /// receive buffers; what does not fit is dropped (tx_full: a bridge does not hold a
    /// burst back for one slow member) and counted in `c` with the frames its buffers
    /// refuse. Returns (frames sent, their bytes).
    pub fn put_frames(&mut self, rq: &OwnRxQueue, at: usize, n: usize, edit: TagEdit, c: &PortCounters) -> (usize, u64) {
        self.locked(|o, chains, _| {
            let Ok(avail) = o.vq.pending() else { return (0, 0) };
            let fmt = RxFormat { hdr_len: o.dev.hdr_len(), mergeable: o.dev.has(bits::NET_F_MRG_RXBUF) };
            let indirect = o.dev.has(bits::RING_F_INDIRECT_DESC);
            let (mut sent, mut bytes, mut out_k) = (0usize, 0u64, 0u16);
            let mut written = [0u32; 64];
            let mut hint = o.vq.hint;
            for k in at..at + n {
                let Some(f) = rq.frame(k, edit) else {
                    c.drop(DropCause::NoMbuf, 1);
                    continue;
                };
                let flen = f.len();
                if let Some((dh, dspan)) = rx_one(&o.vq, out_k, avail, fmt.hdr_len + flen, &mut hint) {
                    if dspan.write_array(0, &ONE_BUFFER.to_bytes()) && f.copy_to(0, &dspan, fmt.hdr_len, flen) {
                        o.vq.put(dh, fmt.hdr_len + flen);
                        sent += 1;
                        bytes += u64::from(flen);
                    } else {
                        o.vq.put(dh, 0);
                        c.drop(DropCause::GuestBadAddr, 1);
                    }
                    out_k += 1;
                    continue;
                }
                match rx_reserve(&mut o.vq, out_k, avail, fmt, indirect, flen, chains) {
                    Ok(m) => {
                        let bufs = &chains[..usize::from(m)];
                        let w = &mut written[..usize::from(m)];
                        if net::fill(&o.dev.mem, fmt, NetHdr::default(), &f, bufs, w) {
                            for (b, &len) in bufs.iter().zip(w.iter()) {
                                o.vq.put(b.head, len);
                            }
                            sent += 1;
                            bytes += u64::from(flen);
                        } else {
                            for b in bufs {
                                o.vq.put(b.head, 0);
                            }
                            c.drop(DropCause::GuestBadAddr, 1);
                        }
                        out_k += m;
                    }
                    Err((RxError::NoRoom, _)) => c.drop(DropCause::TxFull, 1),
                    Err((e, m)) => {
                        for b in &chains[..usize::from(m)] {
                            o.vq.put(b.head, 0);
                        }
                        out_k += m;
                        c.drop(if e == RxError::TooBig { DropCause::GuestOversize } else { DropCause::GuestBadChain }, 1);
                    }
                }
            }
            o.vq.hint = hint;
            o.vq.take(out_k);
            if o.vq.publish() {
                o.dev.notify(o.vring);
            }
            (sent, bytes)
        })
        .unwrap_or_else(|| {
            c.drop(DropCause::PortDown, n as u64);
            (0, 0)
        })
    }

    /// Copies the batch's packets into the guest's receive buffers (and frees them) until
    /// its ring has no room; what did not fit stays in the batch. Packets the guest's
    /// buffers refuse are dropped and counted in `c`. Returns how many were sent.
    pub fn tx_burst(&mut self, batch: &mut Batch, c: &PortCounters) -> usize {
        self.locked(|o, chains, gather| {
            let Ok(mut avail) = o.vq.pending() else { return 0 };
            let fmt = RxFormat { hdr_len: o.dev.hdr_len(), mergeable: o.dev.has(bits::NET_F_MRG_RXBUF) };
            let indirect = o.dev.has(bits::RING_F_INDIRECT_DESC);
            let (mut done, mut sent, mut out_k) = (0usize, 0usize, 0u16);
            let mut written = [0u32; 64];
            let mut hint = o.vq.hint;
            while done < batch.len() {
                let Some(mut segs) = batch.segs(done) else { break };
                // A chained mbuf (a jumbo frame from a NIC) is gathered first; one segment
                // is copied from where it is.
                let first = segs.next().unwrap_or_default();
                let bytes: &[u8] = match segs.next() {
                    None => first,
                    Some(second) => {
                        gather.clear();
                        gather.extend_from_slice(first);
                        gather.extend_from_slice(second);
                        segs.for_each(|p| gather.extend_from_slice(p));
                        gather
                    }
                };
                let f = BytesFrame(bytes);
                let flen = f.len();
                if let Some((dh, dspan)) = rx_one(&o.vq, out_k, avail, fmt.hdr_len + flen, &mut hint) {
                    if dspan.write_array(0, &ONE_BUFFER.to_bytes()) && f.copy_to(0, &dspan, fmt.hdr_len, flen) {
                        o.vq.put(dh, fmt.hdr_len + flen);
                        sent += 1;
                    } else {
                        o.vq.put(dh, 0);
                        c.drop(DropCause::GuestBadAddr, 1);
                    }
                    out_k += 1;
                    done += 1;
                    continue;
                }
                match rx_reserve(&mut o.vq, out_k, avail, fmt, indirect, flen, chains) {
                    Ok(k) => {
                        let bufs = &chains[..usize::from(k)];
                        let w = &mut written[..usize::from(k)];
                        if net::fill(&o.dev.mem, fmt, NetHdr::default(), &f, bufs, w) {
                            for (b, &len) in bufs.iter().zip(w.iter()) {
                                o.vq.put(b.head, len);
                            }
                            sent += 1;
                        } else {
                            for b in bufs {
                                o.vq.put(b.head, 0);
                            }
                            c.drop(DropCause::GuestBadAddr, 1);
                        }
                        out_k += k;
                        done += 1;
                    }
                    Err((RxError::NoRoom, _)) => {
                        if let Ok(a) = o.vq.pending() {
                            if a != avail {
                                avail = a;
                                continue;
                            }
                        }
                        break;
                    }
                    Err((e, k)) => {
                        for b in &chains[..usize::from(k)] {
                            o.vq.put(b.head, 0);
                        }
                        out_k += k;
                        c.drop(if e == RxError::TooBig { DropCause::GuestOversize } else { DropCause::GuestBadChain }, 1);
                        done += 1;
                    }
                }
            }
            o.vq.hint = hint;
            o.vq.take(out_k);
            if o.vq.publish() {
                o.dev.notify(o.vring);
            }
            batch.consume_front(done);
            sent
        })
        .unwrap_or(0)
    }
}
