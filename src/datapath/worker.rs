//! The poll-mode worker: one pinned thread per `--cores` entry, run to completion.
//!
//! The loop reads like DPDK's `examples/skeleton`: rx burst, (no) work, tx burst, and an
//! explicit policy for what did not go out: retry up to `--tx-retries` times (OVS's
//! default of 8), then drop and count by cause. No allocation, lock, syscall or log line
//! per packet; counters are updated per burst and the clock read once per iteration.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam::utils::CachePadded;

use crate::datapath::bridge::fwd::{self, Bridge};
use crate::datapath::reload::{ReloadBarrier, WorkerReload};
use crate::datapath::stats::{bump, DropCause, PortCounters, RxqCounters, WorkerStats};
use crate::dpdk::eal;
use crate::dpdk::ethdev::{EthRxQueue, EthTxQueue};
use crate::dpdk::mbuf::Batch;
use crate::dpdk::mempool::Mempool;
use crate::dpdk::vhost::{VhostRxQueue, VhostTxQueue};
use crate::sys::idle::{self, Wake};
use crate::sys::rdtsc;

/// Where a worker receives from. An enum, not a trait object: dispatch once per burst.
pub enum Rx {
    Eth(EthRxQueue),
    Vhost(VhostRxQueue),
}

/// Where a worker sends to.
pub enum Tx {
    Eth(EthTxQueue),
    Vhost(VhostTxQueue),
}

impl Rx {
    #[inline(always)]
    fn burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        match self {
            Rx::Eth(q) => q.rx_burst(batch, max),
            Rx::Vhost(q) => q.rx_burst(batch, max),
        }
    }

    fn reload(&mut self) {
        if let Rx::Vhost(q) = self {
            q.reload();
        }
    }
}

impl Tx {
    #[inline(always)]
    fn burst(&mut self, batch: &mut Batch) -> usize {
        match self {
            Tx::Eth(q) => q.tx_burst(batch),
            Tx::Vhost(q) => q.tx_burst(batch),
        }
    }

    #[inline(always)]
    fn is_up(&self) -> bool {
        match self {
            Tx::Eth(_) => true,
            Tx::Vhost(q) => q.is_up(),
        }
    }

    fn reload(&mut self) {
        if let Tx::Vhost(q) = self {
            q.reload();
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
}

/// One rx queue polled by a worker, and where its packets go.
pub struct Poll {
    pub rx: Rx,
    /// Index of the ingress port (into the port table and counters).
    pub rx_port: usize,
    pub action: Action,
    pub counters: Arc<CachePadded<RxqCounters>>,
}

/// A lock for a tx queue that more workers send to than the port has queues (the
/// documented fallback): a test-and-test-and-set spinlock held for one burst, with a
/// count of contended takes.
#[derive(Default)]
pub struct TxLock {
    held: CachePadded<AtomicBool>,
    pub contended: AtomicU64,
}

impl TxLock {
    #[inline(always)]
    fn lock(&self) -> TxGuard<'_> {
        while self.held.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.contended.fetch_add(1, Ordering::Relaxed);
            while self.held.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        TxGuard(self)
    }
}

struct TxGuard<'a>(&'a TxLock);

impl Drop for TxGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.held.store(false, Ordering::Release);
    }
}

/// A worker's tx queue on one port; `lock` is set when the queue is shared.
pub struct TxQ {
    pub tx: Tx,
    pub lock: Option<Arc<TxLock>>,
}

/// What a worker polls and where it may send: replaced as a whole at a reload point when
/// the control plane changes ports or rules.
#[derive(Default)]
pub struct WorkerPlan {
    pub polls: Vec<Poll>,
    /// Indexed by port: this worker's tx queue on it (None: the worker never sends there).
    pub txs: Vec<Option<TxQ>>,
}

/// Everything a worker owns, moved into its thread.
pub struct Worker {
    pub index: usize,
    pub core: usize,
    pub plan: WorkerPlan,
    /// A new plan from the control plane, taken at the next reload point.
    pub mailbox: Arc<Mutex<Option<WorkerPlan>>>,
    pub burst: usize,
    pub tx_retries: u32,
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
        self.reload();
        let mut batch = Batch::new();
        // One egress batch per bridge member (sized at each reload).
        let mut outs: Vec<Batch> = Vec::new();
        self.size_outs(&mut outs);
        let stats = self.stats.clone();
        let mut prev = rdtsc();
        let mut empty_since = prev;
        loop {
            // Reload point: one load of a read-mostly line per iteration.
            if reload.pending() {
                if !reload.ack() {
                    break;
                }
                self.reload();
                self.size_outs(&mut outs);
            }
            let moved = self.poll_once(&mut batch, &mut outs, &stats);
            let now = rdtsc();
            if moved > 0 {
                bump(&stats.own.busy_cycles, now - prev);
                bump(&stats.own.packets, moved);
                empty_since = now;
            } else {
                bump(&stats.own.idle_cycles, now - prev);
                if self.idle.mode == IdleMode::Adaptive && now - empty_since > self.idle.after_cycles {
                    let woke = self.nap(&reload, &mut batch, &mut outs, &stats);
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
        drop(batch);
        drop(reload);
        eal::thread_unregister();
    }

    /// One pass over every polled rx queue: rx burst, count, switch, send or drop.
    /// Returns the packets received.
    #[inline(always)]
    fn poll_once(&mut self, batch: &mut Batch, outs: &mut [Batch], stats: &WorkerStats) -> u64 {
        let mut moved = 0u64;
        let WorkerPlan { polls, txs } = &mut self.plan;
        for p in polls.iter_mut() {
            let n = p.rx.burst(batch, self.burst);
            if n == 0 {
                continue;
            }
            let t0 = rdtsc();
            moved += n as u64;
            let bytes = batch.bytes();
            let rxc = &stats.ports[p.rx_port];
            bump(&rxc.rx_packets, n as u64);
            bump(&rxc.rx_bytes, bytes);
            match &p.action {
                Action::Xconnect(port) => match &mut txs[*port] {
                    Some(t) => send(t, batch, bytes, self.tx_retries, &stats.ports[*port]),
                    None => rxc.drop(DropCause::Unrouted, batch.drop_all() as u64),
                },
                Action::Drop => rxc.drop(DropCause::Unrouted, batch.drop_all() as u64),
                Action::Bridge(br, member) => {
                    let outs = &mut outs[..br.members.len()];
                    // The whole burst unchanged to one member (the usual case of a two-port
                    // bridge) stays in `batch` and goes out like a cross-connect's.
                    let whole = fwd::forward(br, self.index, *member, batch, outs, &mut self.scratch, &self.pool, rxc, self.clock.ms(t0));
                    if let Some(i) = whole {
                        send_to(txs, br.members[i].port, batch, bytes, self.tx_retries, stats);
                    }
                    for (out, m) in outs.iter_mut().zip(&br.members) {
                        if !out.is_empty() {
                            let b = out.bytes();
                            send_to(txs, m.port, out, b, self.tx_retries, stats);
                        }
                    }
                }
            }
            bump(&p.counters.packets, n as u64);
            bump(&p.counters.busy_cycles, rdtsc() - t0);
        }
        moved
    }

    /// The idle path (adaptive mode only): turn guest kicks on, poll once more to close
    /// the lost-wake-up window, sleep on the kick eventfds and the doorbell, then turn
    /// kicks off again. System calls happen only here, never while traffic flows.
    /// Returns why the sleep ended, or None when the extra poll found traffic.
    #[cold]
    fn nap(&mut self, reload: &WorkerReload<'_>, batch: &mut Batch, outs: &mut [Batch], stats: &WorkerStats) -> Option<Wake> {
        let (mut kicks, mut intrs) = ([0i32; 32], [0i32; 32]);
        let (mut n, mut m) = (0, 0);
        let mut deaf = false;
        for p in self.plan.polls.iter_mut() {
            match &mut p.rx {
                Rx::Vhost(q) => {
                    if let Some(fd) = q.arm(true) {
                        if n < kicks.len() {
                            kicks[n] = fd;
                            n += 1;
                        }
                    }
                }
                Rx::Eth(q) => match q.arm(true) {
                    Some(fd) if m < intrs.len() => {
                        intrs[m] = fd;
                        m += 1;
                    }
                    _ => deaf = true,
                },
            }
        }
        let moved = self.poll_once(batch, outs, stats);
        let woke = if moved > 0 {
            bump(&stats.own.packets, moved);
            None
        } else if reload.pending() {
            Some(Wake::Doorbell)
        } else {
            let timeout = if deaf { 1 } else { self.idle.max_sleep_ms };
            let why = idle::sleep(&kicks[..n], &intrs[..m], self.barrier.doorbell(self.index), timeout);
            bump(&stats.own.sleeps, 1);
            if why == Wake::Kick {
                bump(&stats.own.kick_wakeups, 1);
            }
            Some(why)
        };
        for p in self.plan.polls.iter_mut() {
            match &mut p.rx {
                Rx::Vhost(q) => {
                    q.arm(false);
                }
                Rx::Eth(q) => {
                    q.arm(false);
                }
            }
        }
        woke
    }

    /// At a reload point: take a new plan if the control plane left one (the old one,
    /// and any queue handle it alone held, is dropped here), then re-read shared state.
    fn reload(&mut self) {
        if let Some(plan) = self.mailbox.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.plan = plan;
        }
        self.idle.mode = IdleMode::from_u8(self.idle_mode.load(Ordering::SeqCst));
        for p in self.plan.polls.iter_mut() {
            p.rx.reload();
        }
        for t in self.plan.txs.iter_mut().flatten() {
            t.tx.reload();
        }
    }

    fn size_outs(&self, outs: &mut Vec<Batch>) {
        let need =
            self.plan.polls.iter().map(|p| if let Action::Bridge(b, _) = &p.action { b.members.len() } else { 0 }).max().unwrap_or(0);
        while outs.len() < need {
            outs.push(Batch::new());
        }
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

/// [`send`] to switch port `port`, or a drop counted as `port_down` when it has no tx
/// queue on this worker.
#[inline(always)]
fn send_to(txs: &mut [Option<TxQ>], port: usize, batch: &mut Batch, bytes: u64, retries: u32, stats: &WorkerStats) {
    match &mut txs[port] {
        Some(t) => send(t, batch, bytes, retries, &stats.ports[port]),
        None => stats.ports[port].drop(DropCause::PortDown, batch.drop_all() as u64),
    }
}

/// Sends the whole batch or accounts for what did not go: retries a full queue up to
/// `retries` times, then drops the rest as `tx_full`; a port with no device drops all as
/// `port_down`. Leaves the batch empty.
#[inline(always)]
fn send(t: &mut TxQ, batch: &mut Batch, bytes: u64, retries: u32, c: &PortCounters) {
    let _held = t.lock.as_deref().map(TxLock::lock);
    let tx = &mut t.tx;
    if !tx.is_up() {
        c.drop(DropCause::PortDown, batch.drop_all() as u64);
        return;
    }
    let mut sent = tx.burst(batch);
    let mut tries = 0;
    while !batch.is_empty() && tries < retries {
        sent += tx.burst(batch);
        tries += 1;
    }
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
