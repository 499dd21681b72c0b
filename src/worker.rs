//! The poll-mode worker: one pinned thread per `--cores` entry, run to completion.
//!
//! The loop reads like DPDK's `examples/skeleton`: rx burst, (no) work, tx burst, and an
//! explicit policy for what did not go out: retry up to `--tx-retries` times (OVS's
//! default of 8), then drop and count by cause. No allocation, lock, syscall or log line
//! per packet; counters are updated per burst and the clock read once per iteration.

use std::sync::Arc;

use crate::dpdk::ethdev::{EthRxQueue, EthTxQueue};
use crate::dpdk::mbuf::Batch;
use crate::dpdk::vhost::{VhostRxQueue, VhostTxQueue};
use crate::dpdk::{eal, rdtsc};
use crate::reload::ReloadBarrier;
use crate::stats::{bump, DropCause, PortCounters, WorkerStats};

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

/// One rx queue polled by a worker, and where its packets go.
pub struct Poll {
    pub rx: Rx,
    /// Index of the ingress port (into the port table and counters).
    pub rx_port: usize,
    /// Egress queue and port index; `None` drops as `unrouted`.
    pub out: Option<(Tx, usize)>,
}

/// Everything a worker owns, moved into its thread.
pub struct Worker {
    pub index: usize,
    pub core: usize,
    pub polls: Vec<Poll>,
    pub burst: usize,
    pub tx_retries: u32,
    pub stats: Arc<WorkerStats>,
    pub barrier: Arc<ReloadBarrier>,
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
        let stats = self.stats.clone();
        let mut prev = rdtsc();
        loop {
            // Reload point: one load of a read-mostly line per iteration.
            if reload.pending() {
                if !reload.ack() {
                    break;
                }
                self.reload();
            }
            let mut moved = 0u64;
            for p in self.polls.iter_mut() {
                let n = p.rx.burst(&mut batch, self.burst);
                if n == 0 {
                    continue;
                }
                moved += n as u64;
                let bytes = batch.bytes();
                let rxc = &stats.ports[p.rx_port];
                bump(&rxc.rx_packets, n as u64);
                bump(&rxc.rx_bytes, bytes);
                match &mut p.out {
                    Some((tx, port)) => send(tx, &mut batch, bytes, self.tx_retries, &stats.ports[*port]),
                    None => rxc.drop(DropCause::Unrouted, batch.drop_all() as u64),
                }
            }
            let now = rdtsc();
            if moved > 0 {
                bump(&stats.own.busy_cycles, now - prev);
                bump(&stats.own.packets, moved);
            } else {
                bump(&stats.own.idle_cycles, now - prev);
            }
            prev = now;
        }
        drop(batch);
        drop(reload);
        eal::thread_unregister();
    }

    fn reload(&mut self) {
        for p in self.polls.iter_mut() {
            p.rx.reload();
            if let Some((tx, _)) = &mut p.out {
                tx.reload();
            }
        }
    }
}

/// Sends the whole batch or accounts for what did not go: retries a full queue up to
/// `retries` times, then drops the rest as `tx_full`; a port with no device drops all as
/// `port_down`. Leaves the batch empty.
#[inline(always)]
fn send(tx: &mut Tx, batch: &mut Batch, bytes: u64, retries: u32, c: &PortCounters) {
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
