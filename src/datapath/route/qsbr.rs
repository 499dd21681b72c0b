//! Quiescent-state based reclamation between the workers (readers of the FIB and the
//! next-hop tables) and the one writer that changes them (the idea of DPDK's
//! `rte_rcu_qsbr`, in a few lines of safe Rust).
//!
//! A writer that unlinks memory readers may still be reading (a FIB group collapsed
//! back into its parent entry) bumps the epoch and keeps the memory until every reader
//! has reported a quiescent state at that epoch or later: a worker reports one at the top
//! of each loop iteration, where it holds no reference into a table, so a grace period is
//! one worker iteration (microseconds). A worker that sleeps (adaptive idle) or has
//! stopped is offline and holds nothing up.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

/// A reader that reads nothing (sleeping, stopped, or never started).
pub const OFFLINE: u64 = u64::MAX;

pub struct Qsbr {
    epoch: CachePadded<AtomicU64>,
    seen: Box<[CachePadded<AtomicU64>]>,
}

impl Qsbr {
    /// `readers` readers (workers), all offline until they go online.
    pub fn new(readers: usize) -> Qsbr {
        Qsbr { epoch: CachePadded::new(AtomicU64::new(1)), seen: (0..readers).map(|_| CachePadded::new(AtomicU64::new(OFFLINE))).collect() }
    }

    /// Reader `r` holds no reference into shared tables: one load of a read-mostly line
    /// and one store to the reader's own line. The release store orders every earlier
    /// table read before it; the acquire load makes later reads see whatever the writer
    /// unlinked before the epoch it read.
    #[inline(always)]
    pub fn quiescent(&self, r: usize) {
        if let Some(s) = self.seen.get(r) {
            s.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// Reader `r` stops reading (before a sleep, or for good).
    pub fn offline(&self, r: usize) {
        if let Some(s) = self.seen.get(r) {
            s.store(OFFLINE, Ordering::SeqCst);
        }
    }

    /// Reader `r` reads again. Sequentially consistent against [`Qsbr::advance`] and
    /// [`Qsbr::passed`]: a writer that still saw this reader offline has its unlink
    /// visible to every read the reader makes after this returns.
    pub fn online(&self, r: usize) {
        if let Some(s) = self.seen.get(r) {
            s.store(self.epoch.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    /// Writer: after unlinking, a new epoch; what was unlinked may be freed once
    /// [`Qsbr::passed`] holds for it.
    pub fn advance(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Writer: every reader has been quiescent at epoch `e` or later (or is offline).
    pub fn passed(&self, e: u64) -> bool {
        self.seen.iter().all(|s| s.load(Ordering::SeqCst) >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn a_grace_period_waits_for_every_online_reader() {
        let q = Qsbr::new(3);
        assert!(q.passed(q.advance()), "all offline: nothing to wait for");
        q.online(0);
        q.online(1);
        let e = q.advance();
        assert!(!q.passed(e));
        q.quiescent(0);
        assert!(!q.passed(e), "reader 1 has not been quiescent since");
        q.quiescent(1);
        assert!(q.passed(e));
        q.offline(0);
        let e = q.advance();
        q.quiescent(1);
        assert!(q.passed(e), "an offline reader holds nothing up");
    }

    /// A reader thread that follows a pointer-like index into a table while a writer
    /// unlinks and "frees" (poisons) slots only after a grace period: the reader never
    /// sees a poisoned slot.
    #[test]
    fn readers_never_see_memory_freed_after_a_grace_period() {
        const POISON: u64 = u64::MAX;
        let q = Arc::new(Qsbr::new(1));
        let current = Arc::new(AtomicU64::new(0));
        let slots: Arc<Vec<AtomicU64>> = Arc::new((0..64).map(AtomicU64::new).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let r = {
            let (q, current, slots, stop) = (q.clone(), current.clone(), slots.clone(), stop.clone());
            std::thread::spawn(move || {
                q.online(0);
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let i = current.load(Ordering::Acquire) as usize;
                    let v = slots[i].load(Ordering::Acquire);
                    assert_ne!(v, POISON, "read a freed slot");
                    reads += 1;
                    q.quiescent(0);
                }
                q.offline(0);
                reads
            })
        };
        let mut limbo: Vec<(u64, usize)> = Vec::new();
        let mut free: Vec<usize> = (1..64).collect();
        for _ in 0..20_000 {
            let Some(next) = free.pop() else {
                std::thread::yield_now();
                limbo.retain(|&(e, i)| {
                    if q.passed(e) {
                        slots[i].store(POISON, Ordering::Release);
                        slots[i].store(i as u64, Ordering::Release);
                        free.push(i);
                        false
                    } else {
                        true
                    }
                });
                continue;
            };
            slots[next].store(next as u64, Ordering::Release);
            let old = current.swap(next as u64, Ordering::AcqRel) as usize;
            limbo.push((q.advance(), old));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(r.join().expect("reader") > 0);
    }
}
