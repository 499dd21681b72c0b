//! The poll-mode worker: one pinned thread per `--cores` entry, run to completion.
//!
//! The loop reads like DPDK's `examples/skeleton`: rx burst, (no) work, tx burst, and an
//! explicit policy for what did not go out: retry up to `--tx-retries` times (OVS's
//! default of 8), then drop and count by cause. No allocation, lock, syscall or log line
//! per packet; counters are updated per burst and the clock read once per iteration.
//!
//! One pass ([`Worker`]'s `poll_once`) is one burst pipeline per polled queue:
//!
//! ```text
//!   ingress ──────────────────────── stage(s) ─────────────────── egress (one interface)
//!   own vring: peek the fronts  ──┐  bridge: classify, plan runs   to(port, run, edits):
//!   NIC, rte_vhost, own vring   ──┼─ router: verdicts, runs        own vring: copy guest → guest
//!     with mbuf egress: rx burst  │    └ VXLAN: unwrap → bridge    mbufs: gather per port,
//!                                 │  xconnect: one run             flush = tx burst, retries,
//!                                 │  drop: counted `unrouted`      the rest counted by cause
//!   own vring → own vring xconnect: one copy, frames may wait in their ring (back-pressure)
//! ```
//!
//! A stage ([`stages`]) is written once for mbufs and peeked frames ([`egress::Frames`])
//! and hands runs of frames to [`egress::Egress`]; whether a frame is copied from guest
//! to guest or travels in an mbuf is the egress's business. Own-vring egress is
//! exclusive where a worker is a guest-RX vring's only writer (no atomic per burst) and
//! locked per burst where workers share it (`vring::txq`).

mod egress;
mod queues;
mod stages;

pub use queues::{Action, PollPlan, Rx, RxSource, SharedTx, Tx, TxQueue, TxSource, WorkerPlan};

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::datapath::bridge::fwd::{self, MAX_PORTS};
use crate::datapath::bridge::vlan::TagEdit;
use crate::datapath::reload::{ReloadBarrier, WorkerReload};
use crate::datapath::route::{self, Router};
use crate::datapath::stats::{bump, DropCause, Phase, PortCounters, RxqCounters, WorkerStats};
use crate::datapath::vring::port::{Edit, Fwd, OwnRxQueue};
use crate::datapath::vxlan::Staged;
use crate::dpdk::eal;
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;
use crate::sys::idle::{self, Wake};
use crate::sys::rdtsc;

use egress::{send_to, Egress, Frames};
use queues::Held;

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
        let mut room = Room::new();
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
                reload.done(seen);
                bump(&stats.own.reloads, 1);
                stats.set_phase(Phase::Polling);
            }
            // No reference into the router's tables is held here (frees wait for this).
            self.router.qsbr.quiescent(self.index);
            if self.router.punt.has_down(self.index) {
                self.send_injected(&mut held, &mut room.batch, &stats);
            }
            // The pass's clock: each queue that moved packets reads the TSC once after its
            // work and charges the cycles since the previous reading (one read per busy
            // queue plus one per empty pass; about 25 cycles each here).
            let mut t = prev;
            let moved = self.poll_once(&mut held, &mut room, &stats, &mut t);
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
                    let woke = self.nap(&mut held, &reload, &mut room, &stats);
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
        drop(room);
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
    fn poll_once(&mut self, held: &mut Held, room: &mut Room, stats: &WorkerStats, t: &mut u64) -> u64 {
        let mut moved = 0u64;
        let Held { polls, txs } = held;
        for p in polls.iter_mut() {
            let at = p.rx_port;
            let got = match (&mut p.rx, &p.action) {
                // The one path where frames may wait in their ring (back-pressure).
                (Rx::Own(rq), Action::Xconnect(to)) if txs[*to].as_ref().is_some_and(Tx::is_own) => {
                    self.own_xconnect(rq, at, *to, txs, stats, *t)
                }
                (rx, action) => self.pass(rx, action, at, txs, room, stats, *t),
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

    /// One burst through the pipeline: the ingress takes frames in (peeked in a guest's
    /// ring where a stage decides per frame, else an rx burst of mbufs), the queue's
    /// stage decides, the egress delivers and counts; tunnel frames the router unwrapped
    /// then go through their bridges. None: no work.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &mut self,
        rx: &mut Rx,
        action: &Action,
        at: usize,
        txs: &mut [Option<Tx>],
        room: &mut Room,
        stats: &WorkerStats,
        t0: u64,
    ) -> Option<usize> {
        let rxc = &stats.ports[at];
        let Room { batch, spare, outs } = room;
        let (mut f, n) = match (rx, action) {
            (Rx::Own(rq), Action::Bridge(..) | Action::Route(_)) => {
                let n = peek_counted(rq, self.burst, rxc)?;
                (Frames::Peeked(rq), n)
            }
            (rx, _) => {
                let n = rx.burst(batch, self.burst, rxc);
                if n == 0 {
                    return None;
                }
                let bytes = batch.bytes();
                bump(&rxc.rx_packets, n as u64);
                bump(&rxc.rx_bytes, bytes);
                (Frames::Mbufs(batch, bytes), n)
            }
        };
        let mut eg = Egress { txs, outs: &mut outs[..], dirty: 0, spare, pool: &self.pool, retries: self.tx_retries, stats };
        match action {
            Action::Xconnect(to) if eg.txs[*to].is_some() => eg.to(&mut f, 0, n, *to, |_| Edit::Tag(TagEdit::None)),
            Action::Xconnect(_) | Action::Drop => {
                f.drop(n);
                rxc.drop(DropCause::Unrouted, n as u64);
            }
            Action::Bridge(br, member) => stages::bridge(br, self.index, *member, &mut f, &mut self.scratch, self.clock.ms(t0), &mut eg),
            Action::Route(r) => stages::route(r, at, &mut f, &mut self.rscratch, &mut self.staged, &mut eg),
        }
        f.finish(rxc);
        if let (Action::Route(r), false) = (action, self.staged.batch.is_empty()) {
            stages::tunnels(r, &mut self.staged, batch, self.index, &mut self.scratch, self.clock.ms(t0), &mut eg);
        }
        eg.flush();
        Some(n)
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
    fn nap(&mut self, held: &mut Held, reload: &WorkerReload<'_>, room: &mut Room, stats: &WorkerStats) -> Option<Wake> {
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
        let moved = self.poll_once(held, room, stats, &mut rdtsc());
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

/// A worker's burst buffers, allocated once: the ingress burst, a spare for frames
/// copied out of a guest's ring, and one gathering batch per switch port.
struct Room {
    batch: Batch,
    spare: Batch,
    outs: Box<[Batch]>,
}

impl Room {
    fn new() -> Room {
        Room { batch: Batch::new(), spare: Batch::new(), outs: (0..MAX_PORTS).map(|_| Batch::new()).collect() }
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
