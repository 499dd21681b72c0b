//! Receive side of an own-path queue pair: the guest's TX vring. Frames forwarded guest
//! to guest in one copy ([`OwnRxQueue::forward`]), peeked for per-frame decisions
//! ([`OwnRxQueue::peek`]) and delivered with their new fronts, or copied into mbufs.

use std::sync::Arc;

use crate::datapath::bridge::fwd::Heads;
use crate::datapath::bridge::vlan::{edited_head, TagEdit};
use crate::datapath::route::output::Front;
use crate::datapath::stats::{bump, DropCause, PortCounters, N_CAUSES};
use crate::datapath::wire::csum;
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;
use crate::dpdk::vhost::own::bits;
use crate::dpdk::vhost::PairClaim;
use crate::guest::Span;

use super::chain::{Chain, ChainError};
use super::net::{Frame, GuestFrame, NetHdr, RxError, HDR_F_NEEDS_CSUM};
use super::offload::{self, Plan, RxOffloads, TxOffers};
use super::queue::Broken;
use super::{tx_frame, tx_one};

use super::egress::*;
use super::port::*;
use super::txq::*;

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

/// How many first bytes of a frame a peek reads: an Ethernet header with a tag and an
/// IPv6 header (58), or IPv4 with options, and the ports behind them.
pub const PEEK: usize = 64;

/// A peeked frame: its first bytes, length and header.
#[derive(Clone, Copy)]
pub(super) struct Peeked {
    pub(super) first: [u8; PEEK],
    pub(super) len: u32,
    pub(super) hdr: NetHdr,
}

impl Default for Peeked {
    fn default() -> Self {
        Peeked { first: [0; PEEK], len: 0, hdr: NetHdr::default() }
    }
}

/// What a frame's front becomes on its way out of a peeked burst: a bridge's VLAN edit,
/// or a router's new front (addresses, tag, TTL and checksum).
#[derive(Clone, Copy)]
pub enum Edit<'a> {
    Tag(TagEdit),
    Front(&'a Front),
}

/// Receive side of an own-path queue pair: the guest's TX vring (2·pair + 1).
pub struct OwnRxQueue {
    pub(super) side: Side,
    pub(super) pool: Arc<Mempool>,
    pub(super) chains: Box<[Chain]>,
    /// When frames began to be held back for want of receive buffers (0: they are not).
    pub(super) held_since: u64,
    /// A peeked burst (see [`OwnRxQueue::peek`]): the good frames, and the heads of every
    /// chain taken (good or refused) to return.
    pub(super) peeked: Box<[Peeked]>,
    pub(super) taken: Box<[u16]>,
    pub(super) counts: (usize, usize),
    pub(super) scratch: Scratch,
}

impl OwnRxQueue {
    pub fn new(claim: PairClaim, pool: Arc<Mempool>) -> OwnRxQueue {
        OwnRxQueue {
            side: Side::new(claim, true),
            pool,
            chains: vec![Chain::default(); MAX_BURST].into_boxed_slice(),
            held_since: 0,
            peeked: vec![Peeked::default(); MAX_BURST].into_boxed_slice(),
            taken: vec![0u16; MAX_BURST].into_boxed_slice(),
            counts: (0, 0),
            scratch: Scratch::default(),
        }
    }

    pub(super) fn vring(&self) -> u16 {
        2 * self.side.claim.pair() + 1
    }

    /// At the worker's reload point.
    pub fn reload(&mut self) {
        let v = self.vring();
        self.side.reload(v, true);
    }

    pub fn is_up(&self) -> bool {
        self.side.served.is_some()
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

    /// Copies up to `max` frames the guest sent into fresh mbufs (checksums the guest
    /// left to us completed; a TCP segmentation request cut into MSS-sized frames, one
    /// request per burst), returns the chains to the guest (one used-index publish), and
    /// the count. Refused chains are returned unused and counted in `rxc`.
    pub fn rx_burst(&mut self, batch: &mut Batch, max: usize, rxc: &PortCounters) -> usize {
        if self.scratch.waiting() > 0 {
            // The rest of a segmented frame before anything new.
            return if self.scratch.fill(batch, &self.pool, max) { batch.len() } else { 0 };
        }
        let Some(s) = self.side.served.as_mut() else { return 0 };
        let n = match s.vq.begin() {
            Ok(n) => usize::from(n).min(max).min(MAX_BURST),
            Err(Broken) => return note_broken(&mut s.vq, rxc, 0),
        };
        if n == 0 {
            return 0;
        }
        s.vq.prefetch_descs(n as u16);
        let hdr = s.dev.hdr_len();
        let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
        let tx = TxOffers::of(&s.dev);
        let mut drops = [0u64; N_CAUSES];
        // First the chains (no copy yet), up to a frame that must be segmented: that one
        // alone, since its pieces take several mbufs.
        let mut hdrs = [NetHdr::default(); MAX_BURST];
        // A one-descriptor frame's buffer as translated here, copied from without a walk.
        let mut ones: [Option<Span>; MAX_BURST] = [None; MAX_BURST];
        let (mut k, mut gso) = (0usize, false);
        let mut hint = s.vq.hint;
        while k < n {
            let c = &mut self.chains[k];
            // One descriptor (the common case) is checked without the general walk.
            let r = match tx_one(&s.vq, &s.dev.mem, k as u16, hdr, tx, &mut hint) {
                Some((head, seg, span, h)) => {
                    // The copy below waits on the frame's first line otherwise (the
                    // guest's core wrote it).
                    span.prefetch_at(hdr);
                    ones[k] = Some(span);
                    c.set_one(head, seg);
                    Ok(h)
                }
                None => tx_frame(&mut s.vq, k as u16, hdr, indirect, tx, c),
            };
            match r {
                Ok(h) => {
                    let segment = offload::plan(&h, RxOffloads::NONE) == Plan::Segment;
                    if segment && k > 0 {
                        break;
                    }
                    hdrs[k] = h;
                    k += 1;
                    if segment {
                        gso = true;
                        break;
                    }
                }
                Err(ChainError::Capped) => {
                    bump(&rxc.ring_capped, 1);
                    break;
                }
                Err(e) => {
                    // Returned with the head that was walked (`c.head`), not read again.
                    c.total = 0;
                    drops[cause(e) as usize] += 1;
                    k += 1;
                }
            }
        }
        let mem = &s.dev.mem;
        let ok = if gso {
            // One frame, segmented here into pieces that wait in the scratch space (the
            // chain goes back to the guest now): as many as one burst holds now, the
            // rest on the next calls.
            let f = GuestFrame::of(mem, &self.chains[0], hdr);
            if let Err(cause) = self.scratch.cut(&f, &hdrs[0], self.pool.frame_room()) {
                drops[cause as usize] += 1;
            }
            // Copied out: the chain goes back whether or not the pool has mbufs now.
            let _ = self.scratch.waiting() == 0 || self.scratch.fill(batch, &self.pool, max);
            true
        } else {
            let chains = &self.chains;
            batch.alloc_fill(&self.pool, k, |i, room| {
                let c = &chains[i];
                if c.total == 0 {
                    return 0;
                }
                let f = GuestFrame::of(mem, c, hdr);
                let len = f.len() as usize;
                let read = match ones[i] {
                    Some(span) => len <= room.len() && span.read(hdr, &mut room[..len]),
                    None => len <= room.len() && f.read_some_hinted(0, &mut room[..len], &mut hint) == len,
                };
                if !read {
                    drops[DropCause::GuestOversize as usize] += 1;
                    return 0;
                }
                // A checksum the guest left to us (the mbuf's next owner cannot know).
                let h = &hdrs[i];
                if h.flags & HDR_F_NEEDS_CSUM != 0
                    && !csum::complete(&mut room[..len], usize::from(h.csum_start), usize::from(h.csum_offset))
                {
                    drops[DropCause::GuestBadChain as usize] += 1;
                    return 0;
                }
                len
            })
        };
        if !ok {
            return 0;
        }
        s.vq.take(k as u16);
        s.vq.put_read(self.chains[..k].iter().map(|c| c.head));
        if s.vq.publish() {
            s.dev.notify(s.vring);
        }
        if drops.iter().any(|&d| d > 0) {
            for cause in DropCause::ALL {
                if drops[cause as usize] > 0 {
                    rxc.drop(cause, drops[cause as usize]);
                }
            }
        }
        // Refused frames' mbufs hold nothing: out of the batch, in order.
        batch.drop_empty();
        batch.len()
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
    /// tables, mergeable buffers for a long frame, offloads) takes the general way.
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
        let mut n = match s.vq.begin() {
            Ok(n) => usize::from(n).min(max).min(MAX_BURST),
            Err(Broken) => return note_broken(&mut s.vq, rxc, Fwd::default()),
        };
        if n == 0 {
            return Fwd::default();
        }
        let (chains, held_since, sc) = (&mut self.chains, &mut self.held_since, &mut self.scratch);
        let r = out.locked(txc, |mut e| {
            let hdr = s.dev.hdr_len();
            let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
            let tx = TxOffers::of(&s.dev);
            let holding = *held_since != 0 && now.wrapping_sub(*held_since) <= hold;
            let may_hold = hold > 0 && (*held_since == 0 || holding);
            let (mut taken, mut sent) = (0usize, 0usize);
            let (mut bytes, mut tx_bytes) = (0u64, 0u64);
            let mut tries = 0;
            let mut heads = [0u16; MAX_BURST];
            let mut shint = s.vq.hint;
            // Every line a frame reads or writes was last touched by a guest's core: the
            // descriptors are asked for 2·AHEAD frames ahead, the buffers (whose addresses
            // they hold) AHEAD frames ahead, so that a few frames' misses overlap without
            // more requests in flight than the core has fill buffers.
            s.vq.prefetch_descs_at(0, (n as u16).min(2 * AHEAD));
            e.prime();
            for d in 0..AHEAD.min(n as u16) {
                if let Some((_, _, span, _)) = tx_one(&s.vq, &s.dev.mem, d, hdr, TxOffers::default(), &mut shint) {
                    span.prefetch_at(hdr);
                }
            }
            while taken < n {
                let k = taken as u16;
                ahead(&s.vq, &s.dev.mem, &mut e, k, n as u16, hdr, &mut shint);
                // The source frame: one descriptor, or a chain.
                let (head, h, frame) = match tx_one(&s.vq, &s.dev.mem, k, hdr, tx, &mut shint) {
                    Some((head, _, span, h)) => (head, h, Src::One(SpanFrame { span, skip: hdr, len: span.len() - hdr })),
                    None => {
                        let c = &mut chains[taken];
                        match tx_frame(&mut s.vq, k, hdr, indirect, tx, c) {
                            Ok(h) => (c.head, h, Src::Chain(GuestFrame::of(&s.dev.mem, c, hdr))),
                            Err(ChainError::Capped) => {
                                // The rest waits for the next burst (not held: the
                                // receiver is not the reason).
                                bump(&rxc.ring_capped, 1);
                                n = taken;
                                break;
                            }
                            Err(err) => {
                                heads[taken] = c.head;
                                rxc.drop(cause(err), 1);
                                taken += 1;
                                continue;
                            }
                        }
                    }
                };
                let flen = frame.len();
                let r = if h.is_plain() {
                    e.put(&frame, ONE_BUFFER, txc).map(|()| (1, u64::from(flen)))
                } else {
                    e.put_sent(&frame, &h, sc, txc)
                };
                match r {
                    Ok((k, b)) => {
                        sent += k;
                        tx_bytes += b;
                    }
                    Err(RxError::NoRoom) => {
                        // Look again (the guest may have posted buffers meanwhile), then
                        // hold the rest back in the sender's ring, or drop it.
                        if tries < retries {
                            tries += 1;
                            e.refresh();
                            continue;
                        }
                        if may_hold {
                            break;
                        }
                        txc.drop(DropCause::TxFull, 1);
                    }
                    Err(_) => {}
                }
                bytes += u64::from(flen);
                heads[taken] = head;
                taken += 1;
            }
            s.vq.hint = shint;
            e.done();
            s.vq.take(taken as u16);
            s.vq.put_read(heads[..taken].iter().copied());
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
            Fwd { received: taken, sent, held, rx_bytes: bytes, tx_bytes }
        });
        match r {
            Ok(f) => f,
            // The egress is leased to a handle whose worker has a reload pending: nothing
            // was taken, the frames wait in their ring for the next pass.
            Err(Gone::Busy) => Fwd::default(),
            // No device behind the egress (or its ring is broken): the frames are dropped
            // (port_down), not held.
            Err(Gone::Down) => drop_all(s, n, &mut self.chains, rxc, txc),
        }
    }

    /// For decisions made per frame (the bridge): takes up to `max` frames the guest sent
    /// and reads each one's first 16 bytes and header, without copying any frame yet.
    /// Refused chains are counted in `rxc` and only returned. Returns (frames, chains
    /// taken, the frames' bytes); the frames are then [`OwnRxQueue::frame`]`(0..frames)`,
    /// delivered with [`OwnTxQueue::put_frames`] or [`OwnRxQueue::frame_bytes`], and all
    /// returned to the guest by [`OwnRxQueue::finish`].
    pub fn peek(&mut self, max: usize, rxc: &PortCounters) -> (usize, usize, u64) {
        self.counts = (0, 0);
        let Some(s) = self.side.served.as_mut() else { return (0, 0, 0) };
        let mut n = match s.vq.begin() {
            Ok(n) => usize::from(n).min(max).min(MAX_BURST),
            Err(Broken) => return note_broken(&mut s.vq, rxc, (0, 0, 0)),
        };
        let hdr = s.dev.hdr_len();
        let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
        let tx = TxOffers::of(&s.dev);
        let (mut good, mut bytes) = (0usize, 0u64);
        let mut hint = s.vq.hint;
        // The first bytes of every frame are read here, each on a line the guest's core
        // wrote: all descriptors asked for at once, then all frames (a pass this short
        // would otherwise wait for each line in turn).
        s.vq.prefetch_descs(n as u16);
        let mut phint = hint;
        for k in 0..n as u16 {
            if let Some((_, _, span, _)) = tx_one(&s.vq, &s.dev.mem, k, hdr, TxOffers::default(), &mut phint) {
                span.prefetch_at(hdr);
            }
        }
        for k in 0..n {
            let c = &mut self.chains[good];
            let p = &mut self.peeked[good];
            // One descriptor (the common case) as a one-buffer chain, else the walk.
            let mut first = false;
            let got = match tx_one(&s.vq, &s.dev.mem, k as u16, hdr, tx, &mut hint) {
                Some((head, seg, span, h)) => {
                    c.head = head;
                    c.n = 1;
                    c.total = seg.len;
                    c.segs[0] = seg;
                    // Up to PEEK bytes (a 64-byte frame is 60 without its FCS).
                    let n = ((seg.len - hdr) as usize).min(PEEK);
                    first = span.read(hdr, &mut p.first[..n]);
                    Some(h)
                }
                None => match tx_frame(&mut s.vq, k as u16, hdr, indirect, tx, c) {
                    Ok(h) => Some(h),
                    Err(ChainError::Capped) => {
                        bump(&rxc.ring_capped, 1);
                        n = k;
                        break;
                    }
                    Err(e) => {
                        self.taken[k] = c.head;
                        rxc.drop(cause(e), 1);
                        None
                    }
                },
            };
            let Some(h) = got else { continue };
            self.taken[k] = c.head;
            let f = GuestFrame::of(&s.dev.mem, c, hdr);
            p.len = f.len();
            p.hdr = h;
            if !first {
                f.read_some(0, &mut p.first);
            }
            bytes += u64::from(p.len);
            good += 1;
        }
        s.vq.hint = hint;
        self.counts = (good, n);
        (good, n, bytes)
    }

    /// The peeked frames' first bytes, for the bridge's first pass.
    pub fn peeked_heads(&self) -> PeekedHeads<'_> {
        PeekedHeads(&self.peeked[..self.counts.0])
    }

    /// Returns every chain [`OwnRxQueue::peek`] took, in one used-index publish.
    pub fn finish(&mut self) {
        let (_, n) = std::mem::take(&mut self.counts);
        let Some(s) = self.side.served.as_mut() else { return };
        s.vq.take(n as u16);
        s.vq.put_read(self.taken[..n].iter().copied());
        if s.vq.publish() {
            s.dev.notify(s.vring);
        }
    }

    /// Peeked frame `k` with `edit` applied on the way, and its header with the offsets
    /// moved by the edit (None if the edit does not apply, or k is past the peeked
    /// frames). Inlined: returned through memory, the frame would be stored field by
    /// field and loaded whole — a store-forwarding stall per frame (measured: most of the
    /// bridge's own-path cycles).
    #[inline(always)]
    pub fn frame<'a>(&'a self, k: usize, edit: Edit<'a>) -> Option<(PeekedFrame<'a>, NetHdr)> {
        let s = self.side.served.as_ref()?;
        let p = self.peeked.get(k).filter(|_| k < self.counts.0)?;
        let (tag, front, n, cut) = match edit {
            Edit::Tag(t) => {
                let first: &[u8; 16] = p.first[..16].try_into().ok()?;
                let (h, n, cut) = edited_head(first, p.len as usize, t)?;
                (h, None, n, cut)
            }
            // Borrowed, not copied: see `route::output::output` on store forwarding.
            Edit::Front(f) if p.len >= u32::from(f.cut) => ([0; 16], Some(&f.head[..usize::from(f.n)]), usize::from(f.n), u32::from(f.cut)),
            Edit::Front(_) => return None,
        };
        let c = &self.chains[k];
        let have = p.len.min(PEEK as u32);
        // Guest memory is read again only past the bytes the peek copied.
        let one = if c.n == 1 && p.len > have {
            let mut hint = 0;
            s.dev.mem.span(c.segs[0].gpa, c.segs[0].len, &mut hint)
        } else {
            None
        };
        let hdr = if p.hdr.is_plain() { p.hdr } else { offload::shifted(p.hdr, n as i32 - cut as i32) };
        Some((PeekedFrame { inner: GuestFrame::of(&s.dev.mem, c, s.dev.hdr_len()), one, tag, front, n, cut, first: &p.first, have }, hdr))
    }

    /// Peeked frame `k` asks to be segmented for a receiver of finished frames (see
    /// [`OwnRxQueue::cut`]).
    #[inline(always)]
    pub fn needs_cut(&self, k: usize) -> bool {
        self.peeked.get(k).is_some_and(|p| !p.hdr.is_plain() && offload::plan(&p.hdr, RxOffloads::NONE) == Plan::Segment)
    }

    /// Segments peeked frame `k` with `edit` for mbufs: its pieces wait for
    /// [`OwnRxQueue::fill_pieces`]. The error is the drop's cause: it cannot be read or
    /// cut, or a piece would not fit an mbuf.
    pub fn cut(&mut self, k: usize, edit: Edit) -> Result<(), DropCause> {
        let mut sc = std::mem::take(&mut self.scratch);
        let room = self.pool.frame_room();
        let r = self.frame(k, edit).ok_or(DropCause::GuestBadChain).and_then(|(f, h)| sc.cut(&f, &h, room));
        self.scratch = sc;
        r
    }

    /// Pieces of a cut frame not yet in mbufs.
    pub fn pieces_waiting(&self) -> usize {
        self.scratch.waiting()
    }

    /// Forgets the pieces still waiting (the caller counts them).
    pub fn drop_pieces(&mut self) {
        self.scratch.next = self.scratch.lens.len();
    }

    /// Up to `max` pieces of the cut frame into fresh mbufs in the empty `batch`; false
    /// when the pool is short.
    pub fn fill_pieces(&mut self, batch: &mut Batch, max: usize) -> bool {
        self.scratch.fill(batch, &self.pool, max)
    }

    /// Copies peeked frame `k` with `edit` into `room` (an mbuf's buffer), with a
    /// checksum the guest left to us completed; returns its length, 0 when it does not
    /// fit or the edit does not apply. Not for a frame that [`OwnRxQueue::needs_cut`]:
    /// that one gives 0 too.
    pub fn frame_bytes(&self, k: usize, edit: Edit, room: &mut [u8]) -> usize {
        let Some((f, h)) = self.frame(k, edit) else { return 0 };
        let len = f.len() as usize;
        if len > room.len() || offload::plan(&h, RxOffloads::NONE) == Plan::Segment || !f.read(0, &mut room[..len]) {
            return 0;
        }
        if h.flags & HDR_F_NEEDS_CSUM != 0 && !csum::complete(&mut room[..len], usize::from(h.csum_start), usize::from(h.csum_offset)) {
            return 0;
        }
        len
    }
}

/// The first bytes of a peeked burst's frames (see `bridge::fwd::Heads`).
pub struct PeekedHeads<'a>(&'a [Peeked]);

impl Heads for PeekedHeads<'_> {
    #[inline(always)]
    fn for_each_frame(&self, mut f: impl FnMut(&[u8], u32)) {
        for p in self.0 {
            f(&p.first[..(p.len as usize).min(PEEK)], p.len);
        }
    }
}

/// A peeked frame as a copy source, its front rewritten by an [`Edit`]: the new front,
/// then the frame past the bytes it replaces — from the peek's copy as far as that
/// reaches (a 64-byte frame whole: the guest's memory is not read twice, and the bytes
/// that go out are the bytes the decision was made on, whatever the guest writes
/// meanwhile), then from guest memory.
pub struct PeekedFrame<'a> {
    pub(super) inner: GuestFrame<'a>,
    /// The frame's buffer when it is one descriptor and longer than the peek (copied
    /// from the span directly, without walking segments).
    pub(super) one: Option<Span<'a>>,
    /// The new front: a VLAN edit's (`tag[..n]`), or a router's, borrowed.
    pub(super) tag: [u8; 16],
    pub(super) front: Option<&'a [u8]>,
    pub(super) n: usize,
    pub(super) cut: u32,
    pub(super) first: &'a [u8; PEEK],
    /// Valid bytes in `first`.
    pub(super) have: u32,
}

/// A copy split by where its bytes are: the front's part, the peeked part, and the rest
/// (its offset in the original frame and length) still in guest memory.
type Split<'a> = (&'a [u8], &'a [u8], (u32, u32));

impl PeekedFrame<'_> {
    /// Output bytes `off..off + n` split into what is in our memory — the front, then the
    /// peeked bytes — and where the rest starts in the original frame: (front part, peeked
    /// part, (original offset, length) still in guest memory). None past the frame's end.
    #[inline(always)]
    pub(super) fn split(&self, off: u32, n: u32) -> Option<Split<'_>> {
        if u64::from(off) + u64::from(n) > u64::from(self.len()) {
            return None;
        }
        let h = self.n as u32;
        let head = self.front.unwrap_or(&self.tag[..]);
        let a = if off < h { &head[off as usize..(off + (h - off).min(n)) as usize] } else { &[][..] };
        let (off, n) = (off + a.len() as u32, n - a.len() as u32);
        // Offset in the original frame.
        let o = off - h + self.cut;
        let b = if n > 0 && o < self.have { &self.first[o as usize..(o + (self.have - o).min(n)) as usize] } else { &[][..] };
        Some((a, b, (o + b.len() as u32, n - b.len() as u32)))
    }
}

impl Frame for PeekedFrame<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.inner.len() - self.cut + self.n as u32
    }

    #[inline(always)]
    fn copy_to(&self, off: u32, dst: &Span<'_>, dst_off: u32, n: u32) -> bool {
        let Some((a, b, (o, k))) = self.split(off, n) else { return false };
        let (la, lb) = (a.len() as u32, b.len() as u32);
        (a.is_empty() || dst.write(dst_off, a))
            && (b.is_empty() || dst.write(dst_off + la, b))
            && (k == 0
                || match &self.one {
                    Some(one) => one.copy_to(self.inner.skip + o, dst, dst_off + la + lb, k),
                    None => self.inner.copy_to(o, dst, dst_off + la + lb, k),
                })
    }

    fn read(&self, off: u32, dst: &mut [u8]) -> bool {
        let Some((a, b, (o, k))) = self.split(off, dst.len() as u32) else { return false };
        let (la, lb) = (a.len(), b.len());
        dst[..la].copy_from_slice(a);
        dst[la..la + lb].copy_from_slice(b);
        k == 0 || self.inner.read(o, &mut dst[la + lb..])
    }
}

/// Takes and returns `n` frames that cannot go anywhere (the egress has no device).
pub(super) fn drop_all(s: &mut Served, n: usize, chains: &mut [Chain], rxc: &PortCounters, txc: &PortCounters) -> Fwd {
    let hdr = s.dev.hdr_len();
    let indirect = s.dev.has(bits::RING_F_INDIRECT_DESC);
    let tx = TxOffers::of(&s.dev);
    let mut bytes = 0u64;
    let mut down = 0u64;
    let mut n = n;
    for (k, c) in chains[..n].iter_mut().enumerate() {
        match tx_frame(&mut s.vq, k as u16, hdr, indirect, tx, c) {
            Ok(_) => {
                bytes += u64::from(c.total.saturating_sub(hdr));
                down += 1;
            }
            Err(ChainError::Capped) => {
                bump(&rxc.ring_capped, 1);
                n = k;
                break;
            }
            Err(e) => rxc.drop(cause(e), 1),
        }
    }
    s.vq.take(n as u16);
    s.vq.put_read(chains[..n].iter().map(|c| c.head));
    if s.vq.publish() {
        s.dev.notify(s.vring);
    }
    txc.drop(DropCause::PortDown, down);
    Fwd { received: n, sent: 0, held: 0, rx_bytes: bytes, tx_bytes: 0 }
}

/// Delivery of peeked frames, beside the receive handle they come from (the send handle
/// knows nothing of peeks).
impl OwnTxQueue {
    /// Copies peeked frames `at..at + n` of `rq` with `edit` applied into the guest's
    /// receive buffers; what does not fit is dropped (tx_full: a bridge does not hold a
    /// burst back for one slow member) and counted in `c` with the frames its buffers
    /// refuse. Returns (frames sent, their bytes).
    pub fn put_frames<'e>(
        &mut self,
        rq: &mut OwnRxQueue,
        at: usize,
        n: usize,
        edit: impl Fn(usize) -> Edit<'e>,
        c: &PortCounters,
    ) -> (usize, u64) {
        let mut sc = std::mem::take(&mut rq.scratch);
        let q = &*rq;
        let r = self
            .locked(c, |mut e| {
                let (mut sent, mut bytes) = (0usize, 0u64);
                e.prime();
                for k in at..at + n {
                    e.ahead();
                    // Only a runt has no edited form, and the bridge's first pass drops
                    // those: counted here all the same.
                    let Some((f, h)) = q.frame(k, edit(k)) else {
                        c.drop(DropCause::Runt, 1);
                        continue;
                    };
                    let mut put = |e: &mut Egress| {
                        if h.is_plain() {
                            e.put(&f, ONE_BUFFER, c).map(|()| (1, u64::from(f.len())))
                        } else {
                            e.put_sent(&f, &h, &mut sc, c)
                        }
                    };
                    let mut r = put(&mut e);
                    // The guest may have posted buffers since the burst looked: once more.
                    if r == Err(RxError::NoRoom) && e.refresh() {
                        r = put(&mut e);
                    }
                    match r {
                        Ok((k, b)) => {
                            sent += k;
                            bytes += b;
                        }
                        Err(RxError::NoRoom) => c.drop(DropCause::TxFull, 1),
                        Err(_) => {}
                    }
                }
                e.done();
                (sent, bytes)
            })
            .unwrap_or_else(|g| {
                // Peeked frames cannot wait: a vring held by another worker is full to us.
                c.drop(if g == Gone::Busy { DropCause::TxFull } else { DropCause::PortDown }, n as u64);
                (0, 0)
            });
        rq.scratch = sc;
        r
    }
}
