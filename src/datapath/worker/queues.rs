//! The handles a worker holds: the rx queues it polls (an ethdev queue, a vhost queue
//! pair through rte_vhost or through our own ring code), the tx queues it sends on
//! (its own, shared, or a VXLAN tunnel), and the plan that names them.

use std::sync::Arc;

use crossbeam::utils::CachePadded;

use crate::datapath::bridge::fwd::Bridge;
use crate::datapath::route::RouteIn;
use crate::datapath::stats::{PortCounters, RxqCounters};
use crate::datapath::vring::port::{Edit, Fwd, OwnRxQueue, OwnTxQueue};
use crate::datapath::vxlan::Vtep;
use crate::dpdk::ethdev::EthTxQueue;
use crate::dpdk::ethdev::{EthRxQueue, EthRxSource, EthTxSource};
use crate::dpdk::mbuf::Batch;
use crate::dpdk::mempool::Mempool;
use crate::dpdk::txq::SharedQueue;
use crate::dpdk::vhost::{Datapath, VhostTxQueue};
use crate::dpdk::vhost::{VhostRxQueue, VhostRxSource, VhostTxSource};

/// Where a worker receives from. An enum, not a trait object: dispatch once per burst.
// A worker holds a handful of these in one Vec for its life; boxing the big variant
// would add a pointer chase to every poll for no memory worth saving.
#[allow(clippy::large_enum_variant)]
pub enum Rx {
    Eth(EthRxQueue),
    /// A vhost port served by rte_vhost (mbufs).
    Vhost(VhostRxQueue),
    /// A vhost port served by pmdswitch's own ring code.
    Own(OwnRxQueue),
}

impl Rx {
    #[inline(always)]
    pub(super) fn burst(&mut self, batch: &mut Batch, max: usize, rxc: &PortCounters) -> usize {
        match self {
            Rx::Eth(q) => q.rx_burst(batch, max),
            Rx::Vhost(q) => q.rx_burst(batch, max),
            Rx::Own(q) => q.rx_burst(batch, max, rxc),
        }
    }

    pub(super) fn reload(&mut self) {
        match self {
            Rx::Eth(_) => {}
            Rx::Vhost(q) => q.reload(),
            Rx::Own(q) => q.reload(),
        }
    }
}

/// Where a worker takes an rx queue's handle from, at its reload point.
#[derive(Clone)]
pub enum RxSource {
    Eth(EthRxSource),
    /// A vhost queue pair: served by the library or by us, as its slot says.
    Vhost(VhostRxSource, Arc<Mempool>),
}

impl RxSource {
    pub(super) fn take(&self) -> Option<Rx> {
        match self {
            RxSource::Eth(s) => s.take().map(Rx::Eth),
            RxSource::Vhost(s, _) if s.slot().datapath == Datapath::Lib => s.take().map(Rx::Vhost),
            RxSource::Vhost(s, pool) => s.claim().map(|c| Rx::Own(OwnRxQueue::new(c, pool.clone()))),
        }
    }
}

/// A tx queue owned by one worker: an ethdev queue, or a vhost device's guest-RX vring
/// (through rte_vhost, or ours).
pub enum TxQueue {
    Eth(EthTxQueue),
    Vhost(VhostTxQueue),
    Own(OwnTxQueue),
}

impl TxQueue {
    /// Sends the batch, retrying a partly refused burst up to `retries` times; what still
    /// did not go stays in the batch for the caller to drop and count. Returns the packets
    /// sent, or None (nothing sent) when the port has no device attached. Packets the
    /// egress refused for good (an own-path guest's malformed buffers) are counted in `c`.
    #[inline(always)]
    pub fn send(&mut self, batch: &mut Batch, retries: u32, c: &PortCounters) -> Option<usize> {
        match self {
            TxQueue::Eth(q) => Some(retry(batch, retries, |b| q.tx_burst(b))),
            TxQueue::Vhost(q) if q.is_up() => Some(retry(batch, retries, |b| q.tx_burst(b))),
            TxQueue::Own(q) if q.is_up() => Some(retry(batch, retries, |b| q.tx_burst(b, c))),
            TxQueue::Vhost(_) | TxQueue::Own(_) => None,
        }
    }

    /// At a reload point: a vhost queue picks up its device and vring again.
    pub fn reload(&mut self) {
        match self {
            TxQueue::Eth(_) => {}
            TxQueue::Vhost(q) => q.reload(),
            TxQueue::Own(q) => q.reload(),
        }
    }
}

#[inline(always)]
fn retry(batch: &mut Batch, retries: u32, mut burst: impl FnMut(&mut Batch) -> usize) -> usize {
    let mut sent = burst(batch);
    let mut tries = 0;
    while !batch.is_empty() && tries < retries {
        sent += burst(batch);
        tries += 1;
    }
    sent
}

/// A tx queue shared by workers (more of them than the port has queues).
pub type SharedTx = SharedQueue<TxQueue>;

/// Where a worker sends to: a queue of its own, or one shared with other workers (the
/// port has fewer tx queues than there are workers).
pub enum Tx {
    Own(TxQueue),
    Shared(Arc<SharedTx>),
    /// A VXLAN tunnel to a remote VTEP (a bridge member): frames are wrapped and go out
    /// the underlay port's queue (see [`send_to`]).
    Vxlan(Arc<Vtep>),
}

impl Tx {
    /// Whether this is an own-path vhost queue (frames can come guest to guest).
    #[inline(always)]
    pub(super) fn is_own(&self) -> bool {
        match self {
            Tx::Own(q) => matches!(q, TxQueue::Own(_)),
            Tx::Shared(q) => q.with(|q| matches!(q, TxQueue::Own(_))),
            Tx::Vxlan(_) => false,
        }
    }

    /// Guest to guest from `rq` (see [`OwnRxQueue::forward`]); only for [`Tx::is_own`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_from(
        &mut self,
        rq: &mut OwnRxQueue,
        max: usize,
        retries: u32,
        now: u64,
        hold: u64,
        rxc: &PortCounters,
        txc: &PortCounters,
    ) -> Fwd {
        let mut go = |q: &mut TxQueue| match q {
            TxQueue::Own(o) => rq.forward(o, max, retries, now, hold, rxc, txc),
            _ => Fwd::default(),
        };
        match self {
            Tx::Own(q) => go(q),
            Tx::Shared(q) => q.with(go),
            Tx::Vxlan(_) => Fwd::default(),
        }
    }

    /// The bridge's frames from `rq` (see [`OwnTxQueue::put_frames`]); only for
    /// [`Tx::is_own`].
    #[inline(always)]
    pub(super) fn put_frames<'e>(
        &mut self,
        rq: &mut OwnRxQueue,
        at: usize,
        n: usize,
        edit: impl Fn(usize) -> Edit<'e>,
        c: &PortCounters,
    ) -> (usize, u64) {
        let go = |q: &mut TxQueue| match q {
            TxQueue::Own(o) => o.put_frames(rq, at, n, edit, c),
            _ => (0, 0),
        };
        match self {
            Tx::Own(q) => go(q),
            Tx::Shared(q) => q.with(go),
            Tx::Vxlan(_) => (0, 0),
        }
    }

    #[inline(always)]
    pub(super) fn send(&mut self, batch: &mut Batch, retries: u32, c: &PortCounters) -> Option<usize> {
        match self {
            Tx::Own(q) => q.send(batch, retries, c),
            Tx::Shared(q) => q.with(|q| q.send(batch, retries, c)),
            // Only through `send_to`, which knows the underlay's queue.
            Tx::Vxlan(_) => None,
        }
    }

    pub(super) fn reload(&mut self) {
        match self {
            Tx::Own(q) => q.reload(),
            Tx::Shared(q) => q.with(TxQueue::reload),
            Tx::Vxlan(_) => {}
        }
    }
}

/// Where a worker takes its tx queue on a port from.
#[derive(Clone)]
pub enum TxSource {
    Eth(EthTxSource),
    Vhost(VhostTxSource),
    Shared(Arc<SharedTx>),
    Vxlan(Arc<Vtep>),
}

impl TxSource {
    pub(super) fn take(&self) -> Option<Tx> {
        match self {
            TxSource::Eth(s) => s.take().map(|q| Tx::Own(TxQueue::Eth(q))),
            TxSource::Vhost(s) if s.slot().datapath == Datapath::Lib => s.take().map(|q| Tx::Own(TxQueue::Vhost(q))),
            TxSource::Vhost(s) => s.claim().map(|c| Tx::Own(TxQueue::Own(OwnTxQueue::new(c)))),
            TxSource::Shared(q) => Some(Tx::Shared(q.clone())),
            TxSource::Vxlan(v) => Some(Tx::Vxlan(v.clone())),
        }
    }
}

/// Where the packets of one rx queue go.
pub enum Action {
    /// No rule: drop as `unrouted`.
    Drop,
    /// Cross-connect: everything to this port index.
    Xconnect(usize),
    /// L2 bridge: the bridge and this port's member index in it.
    Bridge(Arc<Bridge>, usize),
    /// Routed port: the router's tables and the interfaces.
    Route(Arc<RouteIn>),
}

/// One rx queue a plan gives a worker, and where its packets go.
pub struct PollPlan {
    pub rx: RxSource,
    /// Index of the ingress port (into the port table and counters).
    pub rx_port: usize,
    pub action: Action,
    pub counters: Arc<CachePadded<RxqCounters>>,
}

/// What a worker polls and where it may send, as the control plane hands it over: a
/// new plan replaces the old one as a whole at a reload point. It names queues; the
/// worker takes their handles itself, after it dropped the old plan's.
#[derive(Default)]
pub struct WorkerPlan {
    pub polls: Vec<PollPlan>,
    /// Indexed by port: where this worker's tx queue on it is (None: it never sends there).
    pub txs: Vec<Option<TxSource>>,
}

/// One rx queue a worker polls: its handle, and where its packets go.
pub(super) struct Poll {
    pub(super) rx: Rx,
    pub(super) rx_port: usize,
    pub(super) action: Action,
    pub(super) counters: Arc<CachePadded<RxqCounters>>,
}

/// A plan with the handles taken.
#[derive(Default)]
pub(super) struct Held {
    pub(super) polls: Vec<Poll>,
    pub(super) txs: Vec<Option<Tx>>,
}

impl Held {
    /// Takes every handle `plan` names. A queue whose handle is still alive elsewhere is
    /// left out, loudly: the control plane never assigns a queue before its previous
    /// holder has passed a reload point (`Plane::rebalance` moves queues in two steps), so
    /// this is a bug, and polling such a queue twice would be worse.
    pub(super) fn take(plan: WorkerPlan, core: usize) -> Held {
        let mut polls = Vec::with_capacity(plan.polls.len());
        for p in plan.polls {
            match p.rx.take() {
                Some(rx) => polls.push(Poll { rx, rx_port: p.rx_port, action: p.action, counters: p.counters }),
                None => {
                    eprintln!("pmdswitch: worker on core {core}: an rx queue of port #{} is still held elsewhere; not polled", p.rx_port)
                }
            }
        }
        let txs = plan
            .txs
            .into_iter()
            .enumerate()
            .map(|(port, s)| {
                let t = s.as_ref()?.take();
                if t.is_none() {
                    eprintln!("pmdswitch: worker on core {core}: the tx queue of port #{port} is still held elsewhere; sends there drop as port_down");
                }
                t
            })
            .collect();
        Held { polls, txs }
    }
}
