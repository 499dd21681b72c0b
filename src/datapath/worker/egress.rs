//! The two ends a stage works between: [`Frames`], the burst a pass took in, and
//! [`Egress`], the one interface every decision is delivered through.
//!
//! A stage (bridge, router, tunnel) walks the burst in order and hands each run of
//! frames with the same fate to the egress: to a port with an edit per frame, to several
//! ports (a flood), to the router's slow path, or to a drop counted by cause. Whether
//! the frames are mbufs or still in a guest's TX vring, and whether the port is a guest
//! RX vring (one copy, guest to guest) or takes mbufs (a NIC, rte_vhost, a tunnel), is
//! decided here and nowhere else. Mbufs bound for a port are gathered over the whole
//! burst and sent once ([`Egress::flush`]), the retry-then-drop policy of DPDK's
//! skeleton applied per port.

use crate::datapath::bridge::fwd;
use crate::datapath::bridge::vlan::TagEdit;
use crate::datapath::route::{self, Router};
use crate::datapath::stats::{bump, DropCause, PortCounters, WorkerStats};
use crate::datapath::vring::port::{Edit, OwnRxQueue};
use crate::datapath::vxlan;
use crate::dpdk::mbuf::{Batch, Mbuf, MAX_BURST};
use crate::dpdk::mempool::Mempool;

use super::queues::Tx;

/// The frames of one pass, consumed in order by the runs a stage hands out: a burst of
/// mbufs (received, or unwrapped from a tunnel), or frames peeked in a guest's TX vring
/// (in guest memory until copied to where they go; all returned by [`Frames::finish`]).
pub enum Frames<'a> {
    /// The batch, and its bytes as received (valid while no run has taken any frame:
    /// a whole burst sent as received is not summed twice).
    Mbufs(&'a mut Batch, u64),
    Peeked(&'a mut OwnRxQueue),
}

impl Frames<'_> {
    /// The next `n` frames are dropped (the caller counts them by cause).
    #[inline(always)]
    pub fn drop(&mut self, n: usize) {
        if let Frames::Mbufs(b, _) = self {
            b.drop_front(n);
        }
    }

    /// Frames `at..at + n` as mbufs, one at a time with their index (taken from the
    /// burst, or copied out of the guest's ring); those for which no mbuf was left are
    /// counted `no_mbuf` in `c`.
    #[inline]
    pub fn each_mbuf(&mut self, at: usize, n: usize, pool: &Mempool, spare: &mut Batch, c: &PortCounters, mut f: impl FnMut(Mbuf, usize)) {
        match self {
            Frames::Mbufs(b, _) => {
                for (i, m) in (at..at + n).zip(std::iter::from_fn(|| b.pop_front())) {
                    f(m, i);
                }
            }
            Frames::Peeked(rq) => {
                if !spare.alloc_fill(pool, n, |x, room| rq.frame_bytes(at + x, Edit::Tag(TagEdit::None), room)) {
                    c.drop(DropCause::NoMbuf, n as u64);
                    return;
                }
                for (i, m) in (at..at + n).zip(std::iter::from_fn(|| spare.pop_front())) {
                    f(m, i);
                }
            }
        }
    }

    /// Frames `at..at + n` to the router's slow path, frame `i` as `to(i)` says (why,
    /// and the interface it came in on); a guest's TSO frame goes up as its segments
    /// (the slow path takes finished frames).
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub fn punt(
        &mut self,
        at: usize,
        n: usize,
        port: u16,
        to: impl Fn(usize) -> (route::Why, u16),
        router: &Router,
        spare: &mut Batch,
        c: &PortCounters,
    ) {
        for i in at..at + n {
            let (why, iface) = to(i);
            let ok = match self {
                Frames::Mbufs(b, _) => {
                    let Some(m) = b.pop_front() else { return };
                    router.punt.punt(why, port, iface, |buf| {
                        m.segments(|seg| buf.extend_from_slice(seg));
                        true
                    })
                }
                Frames::Peeked(rq) if rq.needs_cut(i) => {
                    punt_pieces(rq, i, (why, port, iface), spare, router, c);
                    continue;
                }
                Frames::Peeked(rq) => router.punt.punt(why, port, iface, |buf| {
                    buf.resize(route::punt::PUNT_MAX, 0);
                    let len = rq.frame_bytes(i, Edit::Tag(TagEdit::None), buf);
                    buf.truncate(len);
                    len > 0
                }),
            };
            count_punt(c, ok);
        }
    }

    /// The end of the pass: a peeked burst's descriptors go back to the guest; mbufs no
    /// run covered (none: a stage covers every frame) are freed and counted in `c`.
    #[inline(always)]
    pub fn finish(&mut self, c: &PortCounters) {
        match self {
            Frames::Mbufs(b, _) => {
                if !b.is_empty() {
                    c.drop(DropCause::Runt, b.drop_all() as u64);
                }
            }
            Frames::Peeked(rq) => rq.finish(),
        }
    }
}

/// Where a pass's decisions go: this worker's tx queues, one gathering batch per switch
/// port for mbufs, and the policy for what does not go out.
pub struct Egress<'a> {
    pub txs: &'a mut [Option<Tx>],
    /// Mbufs bound for each port, sent at [`Egress::flush`] (indexed by port).
    pub outs: &'a mut [Batch],
    /// Ports whose batch in `outs` is not empty (bit p: port p; ports < 64).
    pub dirty: u64,
    /// Room for frames copied out of a guest's ring on their way to a port that takes
    /// mbufs, and for the pieces of a segmented frame.
    pub spare: &'a mut Batch,
    pub pool: &'a Mempool,
    pub retries: u32,
    pub stats: &'a WorkerStats,
}

impl Egress<'_> {
    /// Frames `at..at + n` to switch port `port`, frame `i` edited as `edit(i)` says:
    /// copied guest to guest when both ends are own vrings, else as mbufs gathered for
    /// the port. What cannot be delivered is counted on the egress port.
    #[inline(always)]
    pub fn to<'e>(&mut self, f: &mut Frames, at: usize, n: usize, port: usize, edit: impl Fn(usize) -> Edit<'e> + Copy) {
        let c = &self.stats.ports[port];
        match f {
            Frames::Mbufs(b, bytes) => {
                let unchanged = matches!(edit(at), Edit::Tag(TagEdit::None));
                if unchanged && n == b.len() && self.dirty & (1 << port) == 0 {
                    // The whole burst, unchanged, to one port (a cross-connect, a two-port
                    // bridge): sent from where it was received, nothing gathered.
                    return send_to(self.txs, port, b, *bytes, self.retries, self.stats);
                }
                let out = &mut self.outs[port];
                self.dirty |= 1 << port;
                if unchanged {
                    // A run unchanged (a bridge's usual case): its pointers move at once.
                    // At most one reference per received frame reaches a batch, so it
                    // has room; were it ever short, the rest is counted, not leaked.
                    let moved = b.move_front(n, out);
                    if moved < n {
                        c.drop(DropCause::NoMbuf, b.drop_front(n - moved) as u64);
                    }
                    return;
                }
                for (i, m) in (at..at + n).zip(std::iter::from_fn(|| b.pop_front())) {
                    match edit_mbuf(m, edit(i), self.pool) {
                        Some(m) => put(out, m, c),
                        None => c.drop(DropCause::NoMbuf, 1),
                    }
                }
            }
            Frames::Peeked(rq) => self.guest_to(rq, at, n, port, edit),
        }
    }

    /// Frames `at..at + n` to every port of `dst` (port, tag edit): a bridge's flood.
    /// Mbufs are shared (the last port takes the original reference, and an edit copies
    /// first); peeked frames are copied to each port in turn. No port at all: dropped as
    /// `filtered`, counted in `rxc`.
    #[inline(never)]
    pub fn flood(&mut self, f: &mut Frames, at: usize, n: usize, dst: &[(usize, TagEdit)], rxc: &PortCounters) {
        let Some((&(last, last_edit), rest)) = dst.split_last() else {
            f.drop(n);
            return rxc.drop(DropCause::Filtered, n as u64);
        };
        match f {
            Frames::Mbufs(b, _) => {
                for m in (0..n).map_while(|_| b.pop_front()) {
                    for &(p, e) in rest {
                        let c = &self.stats.ports[p];
                        match fwd::apply_tag(m.share(), e, self.pool) {
                            Some(x) => put(&mut self.outs[p], x, c),
                            None => c.drop(DropCause::NoMbuf, 1),
                        }
                        self.dirty |= 1 << p;
                    }
                    let c = &self.stats.ports[last];
                    match fwd::apply_tag(m, last_edit, self.pool) {
                        Some(x) => put(&mut self.outs[last], x, c),
                        None => c.drop(DropCause::NoMbuf, 1),
                    }
                    self.dirty |= 1 << last;
                }
            }
            Frames::Peeked(rq) => {
                for &(p, e) in dst {
                    self.guest_to(rq, at, n, p, |_| Edit::Tag(e));
                }
            }
        }
    }

    /// Sends every port's gathered mbufs (through its tunnel if it is one).
    #[inline(always)]
    pub fn flush(&mut self) {
        let mut d = std::mem::take(&mut self.dirty);
        while d != 0 {
            let p = d.trailing_zeros() as usize;
            d &= d - 1;
            let out = &mut self.outs[p];
            if !out.is_empty() {
                let b = out.bytes();
                send_to(self.txs, p, out, b, self.retries, self.stats);
            }
        }
    }

    /// Peeked frames `at..at + n` to port `port`: guest to guest when it is an own-path
    /// vhost port, else copied into mbufs and sent with the port's usual retries and
    /// drop accounting (a guest's TSO frame as its segments: a port that takes mbufs
    /// takes finished frames only).
    #[inline]
    fn guest_to<'e>(&mut self, rq: &mut OwnRxQueue, at: usize, n: usize, port: usize, edit: impl Fn(usize) -> Edit<'e> + Copy) {
        let c = &self.stats.ports[port];
        // A tunnel member wraps mbufs (`send_to`); any other non-vhost port sends them.
        let tunnel = matches!(self.txs[port], Some(Tx::Vxlan(_)));
        if !tunnel {
            let Some(t) = self.txs[port].as_mut() else {
                c.drop(DropCause::PortDown, n as u64);
                return;
            };
            if t.is_own() {
                let (sent, bytes) = t.put_frames(rq, at, n, edit, c);
                bump(&c.tx_packets, sent as u64);
                bump(&c.tx_bytes, bytes);
                return;
            }
        }
        let (txs, batch, retries, stats) = (&mut *self.txs, &mut *self.spare, self.retries, self.stats);
        let mut out = |batch: &mut Batch| {
            let bytes = batch.bytes();
            send_to(txs, port, batch, bytes, retries, stats);
        };
        let mut i = at;
        while i < at + n {
            let j = (i..at + n).find(|&k| rq.needs_cut(k)).unwrap_or(at + n);
            if j > i {
                if batch.alloc_fill(self.pool, j - i, |x, room| rq.frame_bytes(i + x, edit(i + x), room)) {
                    let copied = batch.len();
                    batch.drop_empty();
                    if batch.len() < copied {
                        c.drop(DropCause::NoMbuf, (copied - batch.len()) as u64);
                    }
                    out(batch);
                } else {
                    c.drop(DropCause::NoMbuf, (j - i) as u64);
                }
            }
            if j < at + n {
                if let Err(cause) = rq.cut(j, edit(j)) {
                    c.drop(cause, 1);
                }
                while rq.pieces_waiting() > 0 {
                    if !rq.fill_pieces(batch, MAX_BURST) {
                        c.drop(DropCause::NoMbuf, rq.pieces_waiting() as u64);
                        rq.drop_pieces();
                        break;
                    }
                    out(batch);
                }
            }
            i = j + 1;
        }
    }
}

/// An mbuf with its edit applied (a bridge's tag edit, copying first if it is shared;
/// a router's new front); None when no mbuf or headroom was left.
#[inline(always)]
fn edit_mbuf(mut m: Mbuf, e: Edit, pool: &Mempool) -> Option<Mbuf> {
    match e {
        Edit::Tag(t) => fwd::apply_tag(m, t, pool),
        Edit::Front(front) => route::output::apply(&mut m, front).then_some(m),
    }
}

/// Appends to a port's gathering batch. At most one reference per received frame
/// reaches it and a burst is at most MAX_BURST frames, so it has room; were it ever
/// short, the frame is counted, not leaked.
#[inline(always)]
fn put(out: &mut Batch, m: Mbuf, c: &PortCounters) {
    if out.push(m).is_err() {
        c.drop(DropCause::NoMbuf, 1);
    }
}

/// Punts peeked frame `k`, a TSO frame, as the segments it is cut into (each a copy of
/// an mbuf the cut filled, freed right after).
#[inline(never)]
fn punt_pieces(rq: &mut OwnRxQueue, k: usize, to: (route::Why, u16, u16), batch: &mut Batch, router: &Router, c: &PortCounters) {
    let (why, port, iface) = to;
    if let Err(cause) = rq.cut(k, Edit::Tag(TagEdit::None)) {
        c.drop(cause, 1);
        return;
    }
    while rq.pieces_waiting() > 0 {
        if !rq.fill_pieces(batch, MAX_BURST) {
            c.drop(DropCause::NoMbuf, rq.pieces_waiting() as u64);
            rq.drop_pieces();
            return;
        }
        while let Some(m) = batch.pop_front() {
            let ok = router.punt.punt(why, port, iface, |b| {
                m.segments(|seg| b.extend_from_slice(seg));
                true
            });
            count_punt(c, ok);
        }
    }
}

/// Counts a frame handed to the router's slow path, or refused by a full one.
#[inline(always)]
fn count_punt(c: &PortCounters, ok: bool) {
    if ok {
        bump(&c.punted, 1);
    } else {
        c.drop(DropCause::PuntFull, 1);
    }
}

/// [`send`] to switch port `port`, or a drop counted as `port_down` when it has no tx
/// queue on this worker; a tunnel's frames are wrapped and go out its underlay port.
#[inline(always)]
pub fn send_to(txs: &mut [Option<Tx>], port: usize, batch: &mut Batch, bytes: u64, retries: u32, stats: &WorkerStats) {
    match &mut txs[port] {
        Some(Tx::Vxlan(v)) => {
            // Never a tunnel itself: the control plane resolves paths through routed
            // ports only.
            let c = &stats.ports[port];
            let Some(path) = v.path() else {
                return c.drop(DropCause::VxlanUnresolved, batch.drop_all() as u64);
            };
            let (n, inner) = vxlan::encap(&path, batch, &v.pool, c);
            bump(&c.tx_packets, n);
            bump(&c.tx_bytes, inner);
            let b = batch.bytes();
            send_port(txs, path.port, batch, b, retries, stats);
        }
        _ => send_port(txs, port, batch, bytes, retries, stats),
    }
}

/// [`send`] to a port's own queue, or `port_down`.
#[inline(always)]
fn send_port(txs: &mut [Option<Tx>], port: usize, batch: &mut Batch, bytes: u64, retries: u32, stats: &WorkerStats) {
    match &mut txs[port] {
        Some(t) => send(t, batch, bytes, retries, &stats.ports[port]),
        None => stats.ports[port].drop(DropCause::PortDown, batch.drop_all() as u64),
    }
}

/// Sends the whole batch or accounts for what did not go: a full queue is retried up to
/// `retries` times, then the rest is dropped as `tx_full`; a port with no device drops
/// all as `port_down`. Leaves the batch empty.
#[inline(always)]
pub fn send(t: &mut Tx, batch: &mut Batch, bytes: u64, retries: u32, c: &PortCounters) {
    let Some(sent) = t.send(batch, retries, c) else {
        c.drop(DropCause::PortDown, batch.drop_all() as u64);
        return;
    };
    let mut tx_bytes = bytes;
    if !batch.is_empty() {
        tx_bytes -= batch.bytes();
        c.drop(DropCause::TxFull, batch.drop_all() as u64);
    }
    bump(&c.tx_packets, sent as u64);
    bump(&c.tx_bytes, tx_bytes);
}
