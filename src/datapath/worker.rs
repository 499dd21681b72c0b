//! The poll-mode worker: one pinned thread per `--cores` entry, run to completion.
//!
//! The loop reads like DPDK's `examples/skeleton`: rx burst, (no) work, tx burst, and an
//! explicit policy for what did not go out: retry up to `--tx-retries` times (OVS's
//! default of 8), then drop and count by cause. No allocation, lock, syscall or log line
//! per packet; counters are updated per burst and the clock read once per iteration.
//!
//! The paths a frame takes through one pass ([`Worker`]'s `poll_once`): the ingress
//! gives a burst, the queue's rule decides each frame's fate, the egress delivers it or
//! counts it by cause.
//!
//! ```text
//!   rx queue ──┬─ own vring ──┬─ xconnect to an own vring ── own_xconnect: one copy guest → guest
//!              │              ├─ bridge ─────────────────── own_bridge: decide on the peeked fronts,
//!              │              │                              copy each run to its member(s)
//!              │              └─ route ──────────────────── own_route: decide, copy with the new front,
//!              │                                             punt, drop, or decap (VXLAN) as mbufs
//!              └─ mbufs (NIC, rte_vhost, own vring to a non-own egress) ── mbuf_path:
//!                   xconnect: tx burst | bridge: bridge_mbufs | route: route_mbufs | drop
//! ```
//!
//! Own-vring egress is exclusive where a worker is a guest-RX vring's only writer (no
//! atomic per burst) and locked per burst where workers share it (`vring::txq`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam::utils::CachePadded;

use crate::datapath::bridge::fwd::{self, Bridge, Decision};
use crate::datapath::bridge::vlan::TagEdit;
use crate::datapath::reload::{ReloadBarrier, WorkerReload};
use crate::datapath::route::{self, RouteIn, Router, Verdict};
use crate::datapath::stats::{bump, DropCause, Phase, PortCounters, RxqCounters, WorkerStats};
use crate::datapath::vring::port::{Edit, Fwd, OwnRxQueue, OwnTxQueue};
use crate::datapath::vxlan::{self, Staged, Vtep};
use crate::dpdk::eal;
use crate::dpdk::ethdev::EthTxQueue;
use crate::dpdk::ethdev::{EthRxQueue, EthRxSource, EthTxSource};
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;
use crate::dpdk::txq::SharedQueue;
use crate::dpdk::vhost::{Datapath, VhostTxQueue};
use crate::dpdk::vhost::{VhostRxQueue, VhostRxSource, VhostTxSource};
use crate::sys::idle::{self, Wake};
use crate::sys::rdtsc;

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
    fn burst(&mut self, batch: &mut Batch, max: usize, rxc: &PortCounters) -> usize {
        match self {
            Rx::Eth(q) => q.rx_burst(batch, max),
            Rx::Vhost(q) => q.rx_burst(batch, max),
            Rx::Own(q) => q.rx_burst(batch, max, rxc),
        }
    }

    fn reload(&mut self) {
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
    fn take(&self) -> Option<Rx> {
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
    fn is_own(&self) -> bool {
        match self {
            Tx::Own(q) => matches!(q, TxQueue::Own(_)),
            Tx::Shared(q) => q.with(|q| matches!(q, TxQueue::Own(_))),
            Tx::Vxlan(_) => false,
        }
    }

    /// Guest to guest from `rq` (see [`OwnRxQueue::forward`]); only for [`Tx::is_own`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn forward_from(
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
    fn put_frames<'e>(
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
    fn send(&mut self, batch: &mut Batch, retries: u32, c: &PortCounters) -> Option<usize> {
        match self {
            Tx::Own(q) => q.send(batch, retries, c),
            Tx::Shared(q) => q.with(|q| q.send(batch, retries, c)),
            // Only through `send_to`, which knows the underlay's queue.
            Tx::Vxlan(_) => None,
        }
    }

    fn reload(&mut self) {
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
    fn take(&self) -> Option<Tx> {
        match self {
            TxSource::Eth(s) => s.take().map(|q| Tx::Own(TxQueue::Eth(q))),
            TxSource::Vhost(s) if s.slot().datapath == Datapath::Lib => s.take().map(|q| Tx::Own(TxQueue::Vhost(q))),
            TxSource::Vhost(s) => s.claim().map(|c| Tx::Own(TxQueue::Own(OwnTxQueue::new(c)))),
            TxSource::Shared(q) => Some(Tx::Shared(q.clone())),
            TxSource::Vxlan(v) => Some(Tx::Vxlan(v.clone())),
        }
    }
}

/// What a worker does when all its rx queues stay empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleMode {
    /// Busy-poll forever: lowest latency, a whole core.
    Poll,
    /// After `Idle::after_cycles` of empty polls, ask guests to kick and sleep on the kick
    /// eventfds until traffic returns (or the control plane rings).
    Adaptive,
}

impl IdleMode {
    pub fn from_u8(v: u8) -> IdleMode {
        if v == 1 {
            IdleMode::Adaptive
        } else {
            IdleMode::Poll
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IdleMode::Poll => "poll",
            IdleMode::Adaptive => "adaptive",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Idle {
    pub mode: IdleMode,
    /// TSC cycles of empty polling before a sleep.
    pub after_cycles: u64,
    /// Longest sleep, ms: bounds the cost of a missed kick. Queues that cannot notify
    /// (ethdev ports whose driver has no rx interrupts) are re-polled every millisecond.
    pub max_sleep_ms: i32,
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
struct Poll {
    rx: Rx,
    rx_port: usize,
    action: Action,
    counters: Arc<CachePadded<RxqCounters>>,
}

/// A plan with the handles taken.
#[derive(Default)]
struct Held {
    polls: Vec<Poll>,
    txs: Vec<Option<Tx>>,
}

impl Held {
    /// Takes every handle `plan` names. A queue whose handle is still alive elsewhere is
    /// left out, loudly: the control plane never assigns a queue before its previous
    /// holder has passed a reload point (`Plane::rebalance` moves queues in two steps), so
    /// this is a bug, and polling such a queue twice would be worse.
    fn take(plan: WorkerPlan, core: usize) -> Held {
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

/// Everything a worker owns, moved into its thread.
pub struct Worker {
    pub index: usize,
    pub core: usize,
    /// The plan the worker starts with.
    pub plan: WorkerPlan,
    /// A new plan from the control plane, taken at the next reload point.
    pub mailbox: Arc<Mutex<Option<WorkerPlan>>>,
    pub burst: usize,
    pub tx_retries: u32,
    /// Own vhost path: TSC cycles a frame may be held back in its ingress ring for want
    /// of receive buffers before it is dropped as tx_full (`--backpressure-us`).
    pub hold_cycles: u64,
    pub stats: Arc<WorkerStats>,
    pub barrier: Arc<ReloadBarrier>,
    pub idle: Idle,
    /// The idle mode the control plane wants (`ctl set idle`), read at the reload point.
    pub idle_mode: Arc<AtomicU8>,
    /// For bridge copies (VLAN edits of flooded packets).
    pub pool: Arc<Mempool>,
    /// TSC cycles → milliseconds (the MAC table's clock).
    pub clock: MsClock,
    /// The bridge's per-burst working space.
    pub scratch: fwd::Scratch,
    /// The router's tables (for the frames its slow path hands down, and quiescent
    /// points), and its per-burst working space.
    pub router: Arc<Router>,
    pub rscratch: Box<route::Scratch>,
    /// Received tunnel frames on their way into bridges.
    pub staged: Box<Staged>,
    /// A fault to inject at the first reload point after start (tests of the watchdog).
    pub fault: Option<Fault>,
}

/// A fault a test asks a worker to have (`PMDSWITCH_TEST_WORKER_FAULT`), at a reload
/// point so the fast path carries no check for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Panic,
    /// Stop polling for good (a worker stuck in a loop).
    Stall,
}

/// What a test fault does, at a reload point.
#[cold]
fn inject(f: Fault) {
    match f {
        Fault::Panic => panic!("test fault injected at a reload point (PMDSWITCH_TEST_WORKER_FAULT=panic)"),
        Fault::Stall => loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        },
    }
}

impl Worker {
    /// Pins the calling thread, registers it with the EAL (for a mempool cache) and
    /// polls until the barrier says stop.
    pub fn run(mut self) {
        // Threads created after EAL init inherit the main lcore's one-CPU affinity: set
        // ours explicitly.
        if !core_affinity::set_for_current(core_affinity::CoreId { id: self.core }) {
            eprintln!("pmdswitch: worker on core {}: could not pin the thread; running unpinned", self.core);
        }
        if let Err(e) = eal::thread_register() {
            eprintln!("pmdswitch: worker on core {}: {e}; running without a mempool cache", self.core);
        }
        let barrier = self.barrier.clone();
        let mut reload = barrier.handle(self.index);
        reload.online();
        self.router.qsbr.online(self.index);
        let mut held = Held::default();
        let first = std::mem::take(&mut self.plan);
        self.install(&mut held, first);
        self.reload(&mut held);
        let mut batch = Batch::new();
        // One egress batch per bridge member (sized at each reload).
        let mut outs: Vec<Batch> = Vec::new();
        size_outs(&held, &mut outs);
        let stats = self.stats.clone();
        stats.set_phase(Phase::Polling);
        let mut prev = rdtsc();
        let mut empty_since = prev;
        loop {
            // Reload point: one load of a read-mostly line per iteration.
            if reload.pending() {
                // The request is acknowledged after the reload, so a control thread that
                // waits for it knows the old plan's handles are gone.
                let Some(seen) = reload.begin() else { break };
                stats.set_phase(Phase::Reloading);
                if let Some(f) = self.fault {
                    inject(f);
                }
                self.reload(&mut held);
                size_outs(&held, &mut outs);
                reload.done(seen);
                stats.set_phase(Phase::Polling);
            }
            // No reference into the router's tables is held here (frees wait for this).
            self.router.qsbr.quiescent(self.index);
            if self.router.punt.has_down(self.index) {
                self.send_injected(&mut held, &mut batch, &stats);
            }
            // The pass's clock: each queue that moved packets reads the TSC once after its
            // work and charges the cycles since the previous reading (one read per busy
            // queue plus one per empty pass; about 25 cycles each here).
            let mut t = prev;
            let moved = self.poll_once(&mut held, &mut batch, &mut outs, &stats, &mut t);
            let now = if moved > 0 { t } else { rdtsc() };
            if moved > 0 {
                bump(&stats.own.busy_cycles, now - prev);
                bump(&stats.own.packets, moved);
                bump(&stats.own.busy_polls, 1);
                empty_since = now;
            } else {
                bump(&stats.own.idle_cycles, now - prev);
                if self.idle.mode == IdleMode::Adaptive && now - empty_since > self.idle.after_cycles {
                    stats.set_phase(Phase::Napping);
                    let woke = self.nap(&mut held, &reload, &mut batch, &mut outs, &stats);
                    stats.set_phase(Phase::Polling);
                    let t = rdtsc();
                    bump(&stats.own.idle_cycles, t - now);
                    prev = t;
                    // Traffic (or a kick) restarts the threshold; a quiet wake-up (timeout,
                    // reload) goes straight back to sleep at the next empty poll.
                    empty_since = if woke == Some(Wake::Kick) || woke.is_none() { t } else { t.saturating_sub(self.idle.after_cycles + 1) };
                    continue;
                }
            }
            prev = now;
        }
        stats.set_phase(Phase::Stopped);
        drop(batch);
        drop(held);
        self.router.qsbr.offline(self.index);
        drop(reload);
        eal::thread_unregister();
    }

    /// One pass over every polled rx queue (the paths a frame takes: the module doc).
    /// Returns the packets received.
    ///
    /// `t`: the TSC when the pass began, moved on by every queue that had work (whose
    /// cycles, with those of empty polls before it, are charged to it): a queue's work
    /// reads the clock once, after it.
    #[inline(always)]
    fn poll_once(&mut self, held: &mut Held, batch: &mut Batch, outs: &mut [Batch], stats: &WorkerStats, t: &mut u64) -> u64 {
        let mut moved = 0u64;
        let Held { polls, txs } = held;
        for p in polls.iter_mut() {
            let at = p.rx_port;
            let got = match (&mut p.rx, &p.action) {
                (Rx::Own(rq), Action::Xconnect(to)) if txs[*to].as_ref().is_some_and(Tx::is_own) => {
                    self.own_xconnect(rq, at, *to, txs, stats, *t)
                }
                (Rx::Own(rq), Action::Bridge(br, member)) => self.own_bridge(rq, br, *member, at, txs, batch, stats, *t),
                (Rx::Own(rq), Action::Route(r)) => self.own_route(rq, r, at, txs, batch, outs, stats, *t),
                (rx, action) => self.mbuf_path(rx, action, at, txs, batch, outs, stats, *t),
            };
            // A queue that had work is charged the cycles since the last reading.
            if let Some(n) = got {
                moved += n as u64;
                bump(&p.counters.packets, n as u64);
                charge(&p.counters, t);
            }
        }
        moved
    }

    /// Guest to guest on the own vhost path: one copy, no mbuf. None: no work.
    #[inline(always)]
    fn own_xconnect(
        &mut self,
        rq: &mut OwnRxQueue,
        at: usize,
        to: usize,
        txs: &mut [Option<Tx>],
        stats: &WorkerStats,
        t: u64,
    ) -> Option<usize> {
        let tq = txs[to].as_mut()?;
        let (rxc, txc) = (&stats.ports[at], &stats.ports[to]);
        let f = tq.forward_from(rq, self.burst, self.tx_retries, t, self.hold_cycles, rxc, txc);
        if f.received + f.held == 0 {
            return None;
        }
        account(&f, rxc, txc);
        Some(f.received)
    }

    /// A bridge on the own vhost path: decisions on the frames' first bytes, each frame
    /// copied from the guest straight to where it goes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn own_bridge(
        &mut self,
        rq: &mut OwnRxQueue,
        br: &Bridge,
        member: usize,
        at_port: usize,
        txs: &mut [Option<Tx>],
        batch: &mut Batch,
        stats: &WorkerStats,
        t0: u64,
    ) -> Option<usize> {
        let rxc = &stats.ports[at_port];
        let good = peek_counted(rq, self.burst, rxc)?;
        let k = fwd::classify_burst(br, self.index, member, &rq.peeked_heads(), &mut self.scratch, self.clock.ms(t0));
        let runs = fwd::plan_runs(br, member, &mut self.scratch, k);
        let mut at = 0;
        for &(len, dec) in runs {
            match dec {
                Decision::To(m, edit) => own_deliver(
                    rq,
                    at,
                    len,
                    |_| Edit::Tag(edit),
                    br.members[usize::from(m)].port,
                    txs,
                    batch,
                    &self.pool,
                    self.tx_retries,
                    stats,
                ),
                Decision::Flood { tag, vid } => {
                    let mut any = false;
                    for (i, m) in br.members.iter().enumerate() {
                        if i != member {
                            if let Some(e) = fwd::edit_for(m, fwd::tag_of(tag), vid) {
                                own_deliver(rq, at, len, |_| Edit::Tag(e), m.port, txs, batch, &self.pool, self.tx_retries, stats);
                                any = true;
                            }
                        }
                    }
                    if !any {
                        rxc.drop(DropCause::Filtered, len as u64);
                    }
                }
                Decision::Drop(c) => rxc.drop(c, len as u64),
            }
            at += len;
        }
        rq.finish();
        Some(good)
    }

    /// A routed port on the own vhost path: decisions on the frames' first bytes, each
    /// frame copied with its new front to where it goes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn own_route(
        &mut self,
        rq: &mut OwnRxQueue,
        r: &RouteIn,
        at_port: usize,
        txs: &mut [Option<Tx>],
        batch: &mut Batch,
        outs: &mut [Batch],
        stats: &WorkerStats,
        t0: u64,
    ) -> Option<usize> {
        let rxc = &stats.ports[at_port];
        let good = peek_counted(rq, self.burst, rxc)?;
        let k = route::decide_burst(r, at_port, &rq.peeked_heads(), &mut self.rscratch);
        let v = &self.rscratch.verdicts[..k];
        let mut at = 0;
        while at < k {
            // A run of frames with the same fate (forwarded to one port, punted, or
            // dropped for one cause) is handled at once.
            let run = 1 + v[at + 1..].iter().take_while(|x| same_run(x, &v[at])).count();
            match v[at] {
                Verdict::Fwd(o) => {
                    let fronts = |i: usize| match &v[i] {
                        Verdict::Fwd(o) => Edit::Front(&o.front),
                        _ => Edit::Tag(TagEdit::None),
                    };
                    own_deliver(rq, at, run, fronts, usize::from(o.port), txs, batch, &self.pool, self.tx_retries, stats)
                }
                Verdict::Punt(..) => {
                    for (i, x) in v.iter().enumerate().skip(at).take(run) {
                        if let Verdict::Punt(why, iface) = *x {
                            if rq.needs_cut(i) {
                                // A guest's TSO frame for a host interface: up as its
                                // segments (the slow path takes finished frames).
                                punt_pieces(rq, i, (why, at_port as u16, iface), batch, &self.router, rxc);
                                continue;
                            }
                            let ok = self.router.punt.punt(why, at_port as u16, iface, |b| {
                                b.resize(route::punt::PUNT_MAX, 0);
                                let len = rq.frame_bytes(i, Edit::Tag(TagEdit::None), b);
                                b.truncate(len);
                                len > 0
                            });
                            count_punt(rxc, ok);
                        }
                    }
                }
                Verdict::Drop(c) => rxc.drop(c, run as u64),
                Verdict::Vxlan(_) => {
                    // Tunnel frames leave the guest's ring as mbufs (copied whole), then
                    // go the mbuf path's way into their bridges.
                    if let Some(tun) = r.vxlan.as_deref() {
                        if batch.alloc_fill(&self.pool, run, |x, room| rq.frame_bytes(at + x, Edit::Tag(TagEdit::None), room)) {
                            let mut x = at;
                            while let Some(m) = batch.pop_front() {
                                let l3 = if let Verdict::Vxlan(l3) = v[x] { usize::from(l3) } else { 14 };
                                vxlan::decap_into(tun, m, l3, rxc, &stats.ports, &mut self.staged);
                                x += 1;
                            }
                        } else {
                            rxc.drop(DropCause::NoMbuf, run as u64);
                        }
                    } else {
                        // Not reached (only a router with tunnels says Vxlan); counted as
                        // the mbuf path counts it.
                        rxc.drop(DropCause::VxlanUnknown, run as u64);
                    }
                }
            }
            at += run;
        }
        if !self.staged.batch.is_empty() {
            let now = self.clock.ms(t0);
            self.tunnels_in(r, batch, outs, txs, stats, now);
        }
        rq.finish();
        Some(good)
    }

    /// Everything in mbufs: an rx burst (a NIC, rte_vhost, or an own vring whose egress
    /// is not one), the rule's decision, tx bursts with the retry-then-drop policy.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn mbuf_path(
        &mut self,
        rx: &mut Rx,
        action: &Action,
        at_port: usize,
        txs: &mut [Option<Tx>],
        batch: &mut Batch,
        outs: &mut [Batch],
        stats: &WorkerStats,
        t0: u64,
    ) -> Option<usize> {
        let rxc = &stats.ports[at_port];
        let n = rx.burst(batch, self.burst, rxc);
        if n == 0 {
            return None;
        }
        let bytes = batch.bytes();
        bump(&rxc.rx_packets, n as u64);
        bump(&rxc.rx_bytes, bytes);
        match action {
            Action::Xconnect(port) => match &mut txs[*port] {
                Some(t) => send(t, batch, bytes, self.tx_retries, &stats.ports[*port]),
                None => rxc.drop(DropCause::Unrouted, batch.drop_all() as u64),
            },
            Action::Drop => rxc.drop(DropCause::Unrouted, batch.drop_all() as u64),
            Action::Route(r) => {
                let k = route::decide_burst(r, at_port, batch, &mut self.rscratch);
                route_mbufs(&self.rscratch.verdicts[..k], r, at_port, batch, outs, txs, self.tx_retries, stats, &mut self.staged);
                if !self.staged.batch.is_empty() {
                    let now = self.clock.ms(t0);
                    self.tunnels_in(r, batch, outs, txs, stats, now);
                }
            }
            Action::Bridge(br, member) => {
                let now = self.clock.ms(t0);
                bridge_mbufs(br, self.index, *member, batch, bytes, outs, &mut self.scratch, &self.pool, txs, self.tx_retries, stats, now);
            }
        }
        Some(n)
    }

    /// Puts the staged tunnel frames into their bridges, a run of frames from one VTEP
    /// at a time (`batch` is free here).
    #[inline(never)]
    fn tunnels_in(&mut self, r: &RouteIn, batch: &mut Batch, outs: &mut [Batch], txs: &mut [Option<Tx>], stats: &WorkerStats, now_ms: u64) {
        let Some(t) = r.vxlan.as_deref() else {
            self.staged.batch.drop_all();
            return;
        };
        let st = &mut *self.staged;
        let mut i = 0;
        let n = st.batch.len();
        while i < n {
            let k = st.from[i];
            let run = 1 + st.from[i + 1..n].iter().take_while(|&&x| x == k).count();
            st.batch.move_front(run, batch);
            let rem = &t.remotes[usize::from(k)];
            let bytes = batch.bytes();
            bridge_mbufs(
                &rem.bridge,
                self.index,
                rem.member,
                batch,
                bytes,
                outs,
                &mut self.scratch,
                &self.pool,
                txs,
                self.tx_retries,
                stats,
                now_ms,
            );
            i += run;
        }
        st.batch.drop_all();
    }

    /// Sends what the router's slow path handed down to this worker (replies, ICMP,
    /// packets released by a resolved neighbour), a frame at a time: rare, not the fast
    /// path.
    #[cold]
    fn send_injected(&mut self, held: &mut Held, batch: &mut Batch, stats: &WorkerStats) {
        for _ in 0..MAX_BURST {
            let Some(i) = self.router.punt.next_down(self.index) else { break };
            let port = usize::from(i.port);
            let c = &stats.ports[port.min(stats.ports.len() - 1)];
            if held.txs.get(port).is_some_and(Option::is_some)
                && batch.alloc_fill(&self.pool, 1, |_, room| {
                    let n = i.frame.len().min(room.len());
                    room[..n].copy_from_slice(&i.frame[..n]);
                    n
                })
            {
                let b = batch.bytes();
                send_to(&mut held.txs, port, batch, b, self.tx_retries, stats);
            } else {
                c.drop(DropCause::PortDown, 1);
            }
            self.router.punt.recycle(i.frame);
        }
    }

    /// The idle path (adaptive mode only): turn guest kicks on, poll once more to close
    /// the lost-wake-up window, sleep on the kick eventfds and the doorbell, then turn
    /// kicks off again. System calls happen only here, never while traffic flows.
    /// Returns why the sleep ended, or None when the extra poll found traffic.
    #[cold]
    fn nap(
        &mut self,
        held: &mut Held,
        reload: &WorkerReload<'_>,
        batch: &mut Batch,
        outs: &mut [Batch],
        stats: &WorkerStats,
    ) -> Option<Wake> {
        let (mut kicks, mut intrs) = ([0i32; 32], [0i32; 32]);
        let (mut n, mut m) = (0, 0);
        let mut deaf = false;
        for p in held.polls.iter_mut() {
            let kick = match &mut p.rx {
                Rx::Vhost(q) => q.arm(true),
                Rx::Own(q) => q.arm(true),
                Rx::Eth(_) => None,
            };
            if let Some(fd) = kick {
                if n < kicks.len() {
                    kicks[n] = fd;
                    n += 1;
                }
            }
            match &mut p.rx {
                Rx::Vhost(_) | Rx::Own(_) => {}
                Rx::Eth(q) => match q.arm(true) {
                    Some(fd) if m < intrs.len() => {
                        intrs[m] = fd;
                        m += 1;
                    }
                    _ => deaf = true,
                },
            }
        }
        let moved = self.poll_once(held, batch, outs, stats, &mut rdtsc());
        let woke = if moved > 0 {
            bump(&stats.own.packets, moved);
            None
        } else if reload.pending() {
            Some(Wake::Doorbell)
        } else {
            let timeout = if deaf { 1 } else { self.idle.max_sleep_ms };
            // Asleep, the worker reads no table: frees need not wait for it.
            self.router.qsbr.offline(self.index);
            let why = idle::sleep(&kicks[..n], &intrs[..m], self.barrier.doorbell(self.index), timeout);
            self.router.qsbr.online(self.index);
            bump(&stats.own.sleeps, 1);
            if why == Wake::Kick {
                bump(&stats.own.kick_wakeups, 1);
            }
            Some(why)
        };
        for p in held.polls.iter_mut() {
            match &mut p.rx {
                Rx::Vhost(q) => {
                    q.arm(false);
                }
                Rx::Own(q) => {
                    q.arm(false);
                }
                Rx::Eth(q) => {
                    q.arm(false);
                }
            }
        }
        woke
    }

    /// At a reload point: take a new plan if the control plane left one, then re-read
    /// shared state (vids, enabled vrings, the idle mode).
    fn reload(&mut self, held: &mut Held) {
        let plan = self.mailbox.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(plan) = plan {
            self.install(held, plan);
        }
        self.idle.mode = IdleMode::from_u8(self.idle_mode.load(Ordering::SeqCst));
        for p in held.polls.iter_mut() {
            p.rx.reload();
        }
        for t in held.txs.iter_mut().flatten() {
            t.reload();
        }
    }

    /// Replaces the held plan: the old handles are dropped first (so a queue this worker
    /// keeps is taken again at once), then the new plan's are taken.
    fn install(&self, held: &mut Held, plan: WorkerPlan) {
        *held = Held::default();
        *held = Held::take(plan, self.core);
    }
}

/// One egress batch per member of the largest bridge polled, or per port with a routed
/// port.
fn size_outs(held: &Held, outs: &mut Vec<Batch>) {
    let need = held
        .polls
        .iter()
        .map(|p| match &p.action {
            Action::Bridge(b, _) => b.members.len(),
            Action::Route(_) => fwd::MAX_PORTS,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    while outs.len() < need {
        outs.push(Batch::new());
    }
}

/// TSC cycles to milliseconds by a multiplication with a 64-bit fixed-point reciprocal:
/// once per burst, where a 64-bit division costs tens of cycles. The result is the
/// exact quotient or one less (the reciprocal is rounded down), well within the MAC
/// table's millisecond clock.
#[derive(Clone, Copy)]
pub struct MsClock {
    recip: u64,
}

impl MsClock {
    pub fn new(cycles_per_ms: u64) -> MsClock {
        MsClock { recip: (u128::from(u64::MAX) / u128::from(cycles_per_ms.max(2))) as u64 }
    }

    #[inline(always)]
    pub fn ms(&self, tsc: u64) -> u64 {
        ((u128::from(tsc) * u128::from(self.recip)) >> 64) as u64
    }
}

/// Delivers peeked frames `at..at + n` of `rq`, edited, to switch port `port`: guest to
/// guest when that is an own-path vhost port, else through mbufs (allocated in `batch`,
/// which is empty here) and the port's usual send with its retries and drop accounting.
#[allow(clippy::too_many_arguments)]
#[inline]
fn own_deliver<'e>(
    rq: &mut OwnRxQueue,
    at: usize,
    n: usize,
    edit: impl Fn(usize) -> Edit<'e> + Copy,
    port: usize,
    txs: &mut [Option<Tx>],
    batch: &mut Batch,
    pool: &Mempool,
    retries: u32,
    stats: &WorkerStats,
) {
    let c = &stats.ports[port];
    // A tunnel member wraps mbufs (`send_to`); any other non-vhost port sends them.
    let tunnel = matches!(txs[port], Some(Tx::Vxlan(_)));
    if !tunnel {
        let Some(t) = txs[port].as_mut() else {
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
    let out = |txs: &mut [Option<Tx>], batch: &mut Batch| {
        let bytes = batch.bytes();
        if tunnel {
            send_to(txs, port, batch, bytes, retries, stats);
        } else if let Some(t) = txs[port].as_mut() {
            send(t, batch, bytes, retries, c);
        }
    };
    // Runs of frames copied into mbufs as they are; a frame to be segmented (a guest's
    // TSO frame: an mbuf path takes finished frames only) between them goes as its
    // pieces, a burst of mbufs at a time.
    let mut i = at;
    while i < at + n {
        let j = (i..at + n).find(|&k| rq.needs_cut(k)).unwrap_or(at + n);
        if j > i {
            if batch.alloc_fill(pool, j - i, |x, room| rq.frame_bytes(i + x, edit(i + x), room)) {
                let copied = batch.len();
                batch.drop_empty();
                c.drop(DropCause::NoMbuf, (copied - batch.len()) as u64);
                out(txs, batch);
            } else {
                c.drop(DropCause::NoMbuf, (j - i) as u64);
            }
        }
        if j < at + n {
            if !rq.cut(j, edit(j)) {
                c.drop(DropCause::GuestBadChain, 1);
            }
            while rq.pieces_waiting() > 0 {
                if !rq.fill_pieces(batch, MAX_BURST) {
                    c.drop(DropCause::NoMbuf, rq.pieces_waiting() as u64);
                    rq.drop_pieces();
                    break;
                }
                out(txs, batch);
            }
        }
        i = j + 1;
    }
}

/// Punts peeked frame `k`, a TSO frame, as the segments it is cut into (each a copy of
/// an mbuf the cut filled, freed right after).
#[inline(never)]
fn punt_pieces(rq: &mut OwnRxQueue, k: usize, to: (route::Why, u16, u16), batch: &mut Batch, router: &Router, c: &PortCounters) {
    let (why, port, iface) = to;
    if !rq.cut(k, Edit::Tag(TagEdit::None)) {
        c.drop(DropCause::GuestBadChain, 1);
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

/// The own path's ingress for per-frame decisions: peeks up to `max` frames and counts
/// what arrived. None: nothing was taken.
#[inline(always)]
fn peek_counted(rq: &mut OwnRxQueue, max: usize, rxc: &PortCounters) -> Option<usize> {
    let (good, taken, bytes) = rq.peek(max, rxc);
    if taken == 0 {
        return None;
    }
    bump(&rxc.rx_packets, good as u64);
    bump(&rxc.rx_bytes, bytes);
    Some(good)
}

/// Whether verdict `x` continues the run that `first` began: forwarded to the same
/// port, or punted, or dropped for the same cause.
#[inline(always)]
fn same_run(x: &Verdict, first: &Verdict) -> bool {
    match (x, first) {
        (Verdict::Fwd(a), Verdict::Fwd(b)) => a.port == b.port,
        (Verdict::Punt(..), Verdict::Punt(..)) => true,
        (Verdict::Drop(a), Verdict::Drop(b)) => a == b,
        (Verdict::Vxlan(_), Verdict::Vxlan(_)) => true,
        _ => false,
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

/// The mbuf path of a routed port: each packet of `batch` (with its verdict) gets its new
/// front and joins its egress port's batch in `outs`, or goes to the slow path as a
/// copy, or is dropped and counted; then every egress batch is sent.
#[allow(clippy::too_many_arguments)]
#[inline]
fn route_mbufs(
    v: &[Verdict],
    r: &RouteIn,
    port: usize,
    batch: &mut Batch,
    outs: &mut [Batch],
    txs: &mut [Option<Tx>],
    retries: u32,
    stats: &WorkerStats,
    staged: &mut Staged,
) {
    let router = &*r.router;
    let rxc = &stats.ports[port];
    for x in v {
        let Some(mut m) = batch.pop_front() else { break };
        match x {
            Verdict::Fwd(o) => {
                let Some(out) = outs.get_mut(usize::from(o.port)) else {
                    rxc.drop(DropCause::PortDown, 1);
                    continue;
                };
                if !route::output::apply(&mut m, &o.front) {
                    stats.ports[usize::from(o.port)].drop(DropCause::NoMbuf, 1);
                    continue;
                }
                // Full only if more than a burst goes one way: cannot happen, counted anyway.
                if out.push(m).is_err() {
                    stats.ports[usize::from(o.port)].drop(DropCause::TxFull, 1);
                }
            }
            Verdict::Punt(why, iface) => {
                let ok = router.punt.punt(*why, port as u16, *iface, |b| {
                    m.segments(|seg| b.extend_from_slice(seg));
                    true
                });
                count_punt(rxc, ok);
            }
            Verdict::Drop(c) => rxc.drop(*c, 1),
            Verdict::Vxlan(l3) => match r.vxlan.as_deref() {
                Some(t) => vxlan::decap_into(t, m, usize::from(*l3), rxc, &stats.ports, staged),
                None => rxc.drop(DropCause::VxlanUnknown, 1),
            },
        }
    }
    // Whatever the verdicts did not cover (none: one verdict per packet).
    rxc.drop(DropCause::Runt, batch.drop_all() as u64);
    for (i, out) in outs.iter_mut().enumerate() {
        if !out.is_empty() {
            let b = out.bytes();
            send_to(txs, i, out, b, retries, stats);
        }
    }
}

/// Charges a queue's work (the cycles since `t`) to it, and moves the pass's clock on.
#[inline(always)]
fn charge(c: &RxqCounters, t: &mut u64) {
    let now = rdtsc();
    bump(&c.busy_cycles, now - *t);
    *t = now;
}

/// Counts a guest-to-guest burst: what arrived on the ingress, what left on the egress,
/// what was held back in the ingress ring.
#[inline(always)]
fn account(f: &Fwd, rxc: &PortCounters, txc: &PortCounters) {
    bump(&rxc.rx_packets, f.received as u64);
    bump(&rxc.rx_bytes, f.rx_bytes);
    bump(&txc.tx_packets, f.sent as u64);
    bump(&txc.tx_bytes, f.tx_bytes);
    if f.held > 0 {
        bump(&rxc.held, f.held as u64);
    }
}

/// [`send`] to switch port `port`, or a drop counted as `port_down` when it has no tx
/// queue on this worker.
#[inline(always)]
fn send_to(txs: &mut [Option<Tx>], port: usize, batch: &mut Batch, bytes: u64, retries: u32, stats: &WorkerStats) {
    match &mut txs[port] {
        Some(Tx::Vxlan(v)) => {
            // A tunnel: the frames, wrapped, go out the underlay port (never a tunnel
            // itself: the control plane resolves paths through routed ports only).
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

/// The bridge's switching of a burst of mbufs that entered by `member` (received on its
/// port, or unwrapped from its tunnel), and the sends to the members it chose.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bridge_mbufs(
    br: &Bridge,
    worker: usize,
    member: usize,
    batch: &mut Batch,
    bytes: u64,
    outs: &mut [Batch],
    scratch: &mut fwd::Scratch,
    pool: &Mempool,
    txs: &mut [Option<Tx>],
    retries: u32,
    stats: &WorkerStats,
    now_ms: u64,
) {
    let rxc = &stats.ports[br.members[member].port];
    let outs = &mut outs[..br.members.len()];
    // The whole burst unchanged to one member (the usual case of a two-port bridge)
    // stays in `batch` and goes out like a cross-connect's.
    let whole = fwd::forward(br, worker, member, batch, outs, scratch, pool, rxc, now_ms);
    if let Some(i) = whole {
        send_to(txs, br.members[i].port, batch, bytes, retries, stats);
    }
    for (out, m) in outs.iter_mut().zip(&br.members) {
        if !out.is_empty() {
            let b = out.bytes();
            send_to(txs, m.port, out, b, retries, stats);
        }
    }
}

/// Sends the whole batch or accounts for what did not go: a full queue is retried up to
/// `retries` times, then the rest is dropped as `tx_full`; a port with no device drops
/// all as `port_down`. Leaves the batch empty.
#[inline(always)]
fn send(t: &mut Tx, batch: &mut Batch, bytes: u64, retries: u32, c: &PortCounters) {
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

#[cfg(test)]
mod tests {
    use super::MsClock;

    /// The reciprocal clock gives the exact quotient or one less, across TSC rates and
    /// up to centuries of uptime.
    #[test]
    fn ms_clock_matches_division() {
        for hz in [1_000_000u64, 2_596_132_000, 3_000_000_000, 5_000_000_000] {
            let c = MsClock::new(hz / 1000);
            let mut x = 1u64;
            while x < u64::MAX / 3 {
                for t in [x - 1, x, x + 12_345] {
                    let exact = t / (hz / 1000);
                    let got = c.ms(t);
                    assert!(got == exact || got + 1 == exact, "hz {hz} tsc {t}: {got} vs {exact}");
                }
                x = x * 3 + 7;
            }
        }
    }
}
