//! One burst's deliveries into a guest's receive vring ([`Egress`]), the frames it takes
//! from (another guest's buffers, in one buffer or a chain), and the working space for
//! frames rewritten in software on the way (checksums, segmentation pieces).

use crate::datapath::stats::{bump, DropCause, PortCounters};
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;
use crate::dpdk::vhost::own::bits;
use crate::guest::Span;

use super::chain::Chain;
use super::net::{self, BytesFrame, Frame, GuestFrame, NetHdr, RxError, RxFormat, HDR_MAX};
use super::offload::{self, Plan, RxOffloads, TxOffers};
use super::queue::Vq;
use super::{rx_one, rx_reserve, tx_one};
use crate::guest::GuestMemory;

use super::port::*;

/// How many frames ahead a guest-to-guest burst asks for the buffers it will copy
/// (descriptors twice as far).
pub(super) const AHEAD: u16 = 4;

/// At source frame `k` of `n` of a guest-to-guest burst: hints the lines frames
/// [`AHEAD`] (buffers) and 2·AHEAD (descriptors) further on will need.
#[inline(always)]
pub(super) fn ahead(vq: &Vq, mem: &GuestMemory, e: &mut Egress, k: u16, n: u16, hdr: u32, hint: &mut usize) {
    vq.prefetch_descs_at(k + 2 * AHEAD, 1);
    if k + AHEAD < n {
        if let Some((_, _, span, _)) = tx_one(vq, mem, k + AHEAD, hdr, TxOffers::default(), hint) {
            span.prefetch_at(hdr);
        }
    }
    e.ahead();
}

/// Working space for frames rewritten in software (checksums, segmentation): allocated
/// once per handle, grown only by the first large frame.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) frame: Vec<u8>,
    pub(super) seg: Vec<u8>,
    /// A segmented frame's pieces for mbufs, back to back, their lengths, and the next
    /// one to hand out: a 64 KiB frame makes more pieces than one burst of mbufs holds,
    /// so the rest waits here for the next burst.
    pub(super) segs: Vec<u8>,
    pub(super) lens: Vec<usize>,
    pub(super) next: usize,
    pub(super) at: usize,
}

impl Scratch {
    /// Cuts frame `f` (sent with header `h`, which asks for segmentation) into pieces
    /// of at most `room` bytes (an mbuf's data room) waiting for mbufs. The error, with
    /// nothing waiting: the frame cannot be read or cut (`guest_bad_chain`), or a piece
    /// would be longer than an mbuf holds (`guest_oversize`: dropped whole, never sent
    /// cut short).
    pub(super) fn cut(&mut self, f: &impl Frame, h: &NetHdr, room: usize) -> Result<(), DropCause> {
        self.segs.clear();
        self.lens.clear();
        (self.next, self.at) = (0, 0);
        let Scratch { frame, seg, segs, lens, .. } = self;
        let mut long = false;
        let ok = f.gather(frame)
            && offload::finish(frame, h, Plan::Segment, seg, |p| {
                long |= p.len() > room;
                segs.extend_from_slice(p);
                lens.push(p.len());
                !long
            })
            .is_some();
        if !ok || long {
            self.lens.clear();
            return Err(if ok { DropCause::GuestOversize } else { DropCause::GuestBadChain });
        }
        Ok(())
    }

    /// Pieces still waiting for mbufs.
    pub(super) fn waiting(&self) -> usize {
        self.lens.len() - self.next
    }

    /// Copies up to `max` waiting pieces into fresh mbufs in the empty `batch`; false
    /// when the pool is short (they keep waiting).
    pub(super) fn fill(&mut self, batch: &mut Batch, pool: &Mempool, max: usize) -> bool {
        let n = self.waiting().min(max).min(MAX_BURST);
        let (segs, lens, next) = (&self.segs, &self.lens[self.next..self.next + n], self.next);
        let mut at = self.at;
        let ok = batch.alloc_fill(pool, n, |i, room| {
            let len = lens[i];
            let piece = &segs[at..at + len];
            at += len;
            // `cut` kept only pieces that fit the pool's data room.
            match room.get_mut(..len) {
                Some(r) => {
                    r.copy_from_slice(piece);
                    len
                }
                None => 0,
            }
        });
        if ok {
            (self.next, self.at) = (next + n, at);
        }
        ok
    }
}

/// Counts a vring that broke (once), and gives `r` back.
#[cold]
pub(super) fn note_broken<R>(vq: &mut Vq, c: &PortCounters, r: R) -> R {
    if vq.report_broken() {
        bump(&c.rings_broken, 1);
    }
    r
}

/// One burst's deliveries into a guest's receive vring: the next available position to
/// use, how many there are, and the receiver's format and offloads. [`Egress::done`]
/// takes what was used and publishes once.
///
/// The work a receiving guest can make a burst do is bounded: a reservation that fails
/// for want of buffers is not tried again (`full`) until a fresh look at the available
/// index shows more; fresh looks are at most [`LOOKS`] per burst (a guest moving its
/// index one buffer at a time cannot keep a worker looking); chain walks draw on the
/// ring's per-burst budget (`Vq::begin`). A burst cut short by either is counted once
/// (`ring_capped`).
pub(super) struct Egress<'a> {
    pub(super) o: &'a mut Served,
    pub(super) chains: &'a mut [Chain],
    pub(super) fmt: RxFormat,
    pub(super) indirect: bool,
    pub(super) rx: RxOffloads,
    pub(super) avail: u16,
    pub(super) k: u16,
    pub(super) hint: usize,
    c: &'a PortCounters,
    full: bool,
    looks: u8,
    capped: bool,
    /// A live migration is under way: every receive buffer written is logged.
    log: bool,
}

/// Fresh looks at a receiver's available index per burst.
pub(super) const LOOKS: u8 = 4;

impl<'a> Egress<'a> {
    /// None when the ring is broken.
    pub(super) fn new(o: &'a mut Served, chains: &'a mut [Chain], c: &'a PortCounters) -> Option<Egress<'a>> {
        let avail = o.vq.begin().ok()?;
        let fmt = RxFormat { hdr_len: o.dev.hdr_len(), mergeable: o.dev.has(bits::NET_F_MRG_RXBUF) };
        let (indirect, rx, hint) = (o.dev.has(bits::RING_F_INDIRECT_DESC), RxOffloads::of(&o.dev), o.vq.hint);
        let log = o.dev.logging();
        Some(Egress { o, chains, fmt, indirect, rx, avail, k: 0, hint, c, full: false, looks: LOOKS, capped: false, log })
    }

    /// Hints the receive buffers of the burst's first frames (see [`ahead`]).
    #[inline(always)]
    pub(super) fn prime(&mut self) {
        for d in 0..2 * AHEAD {
            self.prefetch_desc(d);
        }
        for d in 0..AHEAD {
            self.prefetch_buf(d);
        }
    }

    /// Hints the receive buffers of the frames [`AHEAD`] and 2·AHEAD places on.
    #[inline(always)]
    pub(super) fn ahead(&mut self) {
        self.prefetch_desc(2 * AHEAD);
        self.prefetch_buf(AHEAD);
    }

    /// Hints the descriptor of the receive buffer `d` places ahead (the guest's core
    /// wrote it last).
    #[inline(always)]
    pub(super) fn prefetch_desc(&self, d: u16) {
        if self.k + d < self.avail {
            self.o.vq.ring().prefetch_desc(self.o.vq.head(self.k + d));
        }
    }

    /// Hints the receive buffer `d` places ahead for writing (its descriptor read, so
    /// hinted earlier): a one-descriptor buffer's header line and the frame's first line,
    /// which the DPDK virtio driver puts on the next line.
    #[inline(always)]
    pub(super) fn prefetch_buf(&mut self, d: u16) {
        if let Some((_, _, span)) = rx_one(&self.o.vq, self.k + d, self.avail, 0, &mut self.hint) {
            span.prefetch_write();
            span.prefetch_write_at(self.fmt.hdr_len);
        }
    }

    /// Looks at the available index again (the guest may have posted buffers); true if
    /// there are more. At most [`LOOKS`] times per burst, and not once the walking budget
    /// is spent.
    pub(super) fn refresh(&mut self) -> bool {
        if self.looks == 0 || !self.o.vq.may_walk() {
            self.capped = true;
            return false;
        }
        self.looks -= 1;
        match self.o.vq.pending() {
            Ok(a) if a != self.avail => {
                self.avail = a;
                self.full = false;
                true
            }
            _ => false,
        }
    }

    /// Places one frame with header `hdr` (`num_buffers` set here): one big enough
    /// buffer (the common case), or the general reservation (chains, mergeable buffers).
    /// [`RxError::NoRoom`]: nothing taken; other errors are counted in `c` and the
    /// buffers returned unused.
    #[inline(always)]
    pub(super) fn put(&mut self, frame: &impl Frame, mut hdr: NetHdr, c: &PortCounters) -> Result<(), RxError> {
        if self.full {
            return Err(RxError::NoRoom);
        }
        let (flen, hl) = (frame.len(), self.fmt.hdr_len);
        if let Some((dh, gpa, dspan)) = rx_one(&self.o.vq, self.k, self.avail, hl + flen, &mut self.hint) {
            hdr.num_buffers = 1;
            self.k += 1;
            // A 10-byte header's two bytes past it are written, then the frame over them.
            if dspan.write_array(0, &hdr.to_bytes()) && frame.copy_to(0, &dspan, hl, flen) {
                if self.log {
                    self.o.dev.log_write(gpa, u64::from(hl + flen).max(HDR_MAX as u64));
                }
                self.o.vq.put(dh, hl + flen);
                return Ok(());
            }
            self.o.vq.put(dh, 0);
            c.drop(DropCause::GuestBadAddr, 1);
            return Err(RxError::BadBuffers);
        }
        match rx_reserve(&mut self.o.vq, self.k, self.avail, self.fmt, self.indirect, flen, self.chains) {
            Ok(m) => {
                self.k += m;
                let bufs = &self.chains[..usize::from(m)];
                let mut written = [0u32; 64];
                let w = &mut written[..usize::from(m)];
                if net::fill(&self.o.dev.mem, self.fmt, hdr, frame, bufs, w) {
                    for (b, &len) in bufs.iter().zip(w.iter()) {
                        if self.log {
                            // Every buffer of the chain up to what was written in it.
                            let mut left = u64::from(len).max(HDR_MAX as u64);
                            for s in b.segs() {
                                let n = u64::from(s.len).min(left);
                                self.o.dev.log_write(s.gpa, n);
                                left -= n;
                            }
                        }
                        self.o.vq.put(b.head, len);
                    }
                    return Ok(());
                }
                for b in bufs {
                    self.o.vq.put(b.head, 0);
                }
                c.drop(DropCause::GuestBadAddr, 1);
                Err(RxError::BadBuffers)
            }
            Err((RxError::NoRoom, _)) => {
                // As DPDK's enqueue: the first reservation that fails ends the burst's
                // walks (a smaller frame behind it waits too: order is kept anyway).
                self.full = true;
                self.capped |= !self.o.vq.may_walk();
                Err(RxError::NoRoom)
            }
            Err((e, m)) => {
                for b in &self.chains[..usize::from(m)] {
                    self.o.vq.put(b.head, 0);
                }
                self.k += m;
                let cause = match e {
                    RxError::TooBig => DropCause::GuestOversize,
                    RxError::BadAddr => DropCause::GuestBadAddr,
                    _ => DropCause::GuestBadChain,
                };
                c.drop(cause, 1);
                Err(e)
            }
        }
    }

    /// A frame a guest sent with header `h`: passed with its header, plain, or finished
    /// in software first (its pieces each placed; those without room dropped as tx_full,
    /// never held back). Returns the frames placed and their bytes (the pieces, when
    /// segmented: what the receiver gets). [`RxError::NoRoom`] only for a frame that
    /// goes whole.
    #[inline]
    pub(super) fn put_sent(&mut self, frame: &impl Frame, h: &NetHdr, sc: &mut Scratch, c: &PortCounters) -> Result<(usize, u64), RxError> {
        let whole = |r: Result<(), RxError>| r.map(|()| (1, u64::from(frame.len())));
        match offload::plan(h, self.rx) {
            Plan::Plain => whole(self.put(frame, ONE_BUFFER, c)),
            Plan::Pass(h) => whole(self.put(frame, h, c)),
            plan => {
                // A frame to be cut goes only when the receiver has a buffer for every
                // piece (one each at most, a piece being at most an MTU): else it waits
                // like a whole frame, rather than losing pieces TCP would resend.
                if plan == Plan::Segment {
                    // In u32: a tiny gso_size makes more pieces than a u16 holds, which
                    // truncated would pass this check.
                    let pieces = frame.len().div_ceil(u32::from(h.gso_size).max(1));
                    let room = |e: &Self| u32::from(e.avail.saturating_sub(e.k));
                    if room(self) < pieces && !(self.refresh() && room(self) >= pieces) {
                        return Err(RxError::NoRoom);
                    }
                }
                if !frame.gather(&mut sc.frame) {
                    c.drop(DropCause::GuestBadAddr, 1);
                    return Err(RxError::BadBuffers);
                }
                let Scratch { frame: f, seg, .. } = sc;
                let (mut placed, mut bytes) = (0usize, 0u64);
                let done = offload::finish(f, h, plan, seg, |piece| match self.put(&BytesFrame(piece), ONE_BUFFER, c) {
                    Ok(()) => {
                        placed += 1;
                        bytes += piece.len() as u64;
                        true
                    }
                    // The receiver filled up after all: the rest of the frame is one
                    // drop, and no more pieces are made for nobody.
                    Err(RxError::NoRoom) => {
                        c.drop(DropCause::TxFull, 1);
                        false
                    }
                    Err(_) => true,
                });
                if done.is_none() {
                    c.drop(DropCause::GuestBadChain, 1);
                    return Err(RxError::BadBuffers);
                }
                Ok((placed, bytes))
            }
        }
    }

    /// Takes the positions used and publishes them; interrupts the guest if it asked.
    pub(super) fn done(self) {
        if self.capped {
            bump(&self.c.ring_capped, 1);
        }
        self.o.vq.hint = self.hint;
        self.o.vq.take(self.k);
        if self.o.vq.publish() {
            self.o.dev.notify(self.o.vring);
        }
    }
}

/// A frame in one guest buffer: its bytes from `skip` on.
pub(super) struct SpanFrame<'m> {
    pub(super) span: Span<'m>,
    pub(super) skip: u32,
    pub(super) len: u32,
}

/// A source frame: in one buffer (the fast path) or over a chain.
pub(super) enum Src<'m> {
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

    fn read(&self, off: u32, dst: &mut [u8]) -> bool {
        match self {
            Src::One(f) => u64::from(off) + dst.len() as u64 <= u64::from(f.len) && f.span.read(f.skip + off, dst),
            Src::Chain(f) => f.read(off, dst),
        }
    }
}

/// A plain header for a frame in one receive buffer (`num_buffers` 1: virtio 1.1
/// §5.1.6.3.1, also without mergeable buffers; Linux drops a frame that says 0).
pub(super) const ONE_BUFFER: NetHdr =
    NetHdr { flags: 0, gso_type: 0, hdr_len: 0, gso_size: 0, csum_start: 0, csum_offset: 0, num_buffers: 1 };
