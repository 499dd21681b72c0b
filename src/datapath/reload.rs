//! The control-to-data handoff: workers leave their loop at a reload point, rebuild what
//! they cached, and acknowledge (the OVS `pmd_thread_main` pattern, as a quiescent-state
//! protocol).
//!
//! The control side changes shared state (e.g. a vhost slot's vid), then calls
//! [`ReloadBarrier::request`], which bumps a sequence number; each worker checks it once
//! per loop iteration (one load of a read-mostly cache line) and, on a change, reads the
//! sequence, reloads, and then stores that sequence as its acknowledgement. [`ReloadBarrier::request_and_wait`]
//! returns once every *running* worker has acknowledged; workers that have not started or
//! have exited are marked offline and never waited for, so unregistering a device at
//! shutdown cannot deadlock.
//!
//! Ordering: the control side writes shared state before it bumps the sequence, and a
//! worker reads the sequence before it re-reads shared state and acknowledges only
//! after, all `SeqCst`; so when `request_and_wait` returns, every running worker has read
//! the new state and dropped what its old state held (the old plan's queue handles).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;

use crate::sys::idle::Doorbell;

const OFFLINE: u64 = u64::MAX;

pub struct ReloadBarrier {
    seq: CachePadded<AtomicU64>,
    stop: AtomicBool,
    /// Set by the watchdog when a worker will never answer: waits return at once.
    abandoned: AtomicBool,
    acks: Vec<CachePadded<AtomicU64>>,
    /// Wakes workers that sleep in adaptive idle mode.
    bells: Vec<Doorbell>,
}

impl ReloadBarrier {
    /// # Errors
    /// A doorbell eventfd could not be created.
    pub fn new(workers: usize) -> std::io::Result<ReloadBarrier> {
        Ok(ReloadBarrier {
            seq: CachePadded::new(AtomicU64::new(1)),
            stop: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            acks: (0..workers).map(|_| CachePadded::new(AtomicU64::new(OFFLINE))).collect(),
            bells: (0..workers).map(|_| Doorbell::new()).collect::<std::io::Result<_>>()?,
        })
    }

    /// Asks every worker to reload; does not wait. Sleeping workers are woken (after the
    /// sequence moved, so a worker that checks and then sleeps still wakes at once).
    pub fn request(&self) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        for b in &self.bells {
            b.ring();
        }
        seq
    }

    /// Asks every worker to reload and waits until each running one has. Sleeps between
    /// checks (never spins: on two cores a spinning control thread halves a worker).
    /// Bounded: after 5 s it names the workers it waits for, and it returns as soon as
    /// the watchdog gives up on a worker ([`ReloadBarrier::abandon`]), which happens when
    /// a worker has not polled for the stall limit: one stuck worker cannot hold every
    /// vhost-user socket's handling for longer than that.
    pub fn request_and_wait(&self) {
        let want = self.request();
        let start = Instant::now();
        let mut warned = false;
        loop {
            let late: Vec<usize> = (0..self.acks.len())
                .filter(|&i| {
                    let v = self.acks[i].load(Ordering::SeqCst);
                    v != OFFLINE && v < want
                })
                .collect();
            if late.is_empty() || self.abandoned.load(Ordering::SeqCst) {
                return;
            }
            if !warned && start.elapsed() > Duration::from_secs(5) {
                eprintln!("pmdswitch: warning: worker(s) {late:?} have not reached their reload point for 5 s");
                warned = true;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// A worker will never answer (the watchdog's verdict): every wait, now and later,
    /// returns at once. The switch is stopping then.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    /// [`ReloadBarrier::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Tells every worker to exit at its next reload point.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.request();
    }

    /// Whether running worker `worker` has yet to take up the last change asked for (an
    /// offline worker has nothing to take up): `show workers` says so, and a client that
    /// must know its change reached the data path (a test bed) waits for it.
    pub fn behind(&self, worker: usize) -> bool {
        let want = self.seq.load(Ordering::SeqCst);
        let v = self.acks.get(worker).map_or(OFFLINE, |a| a.load(Ordering::SeqCst));
        v != OFFLINE && v < want
    }

    pub fn handle(&self, worker: usize) -> WorkerReload<'_> {
        WorkerReload { barrier: self, idx: worker, seen: 0 }
    }

    /// The doorbell of `worker`, for its idle sleep.
    pub fn doorbell(&self, worker: usize) -> &Doorbell {
        &self.bells[worker]
    }
}

/// A worker's side of the barrier.
pub struct WorkerReload<'a> {
    barrier: &'a ReloadBarrier,
    idx: usize,
    seen: u64,
}

impl WorkerReload<'_> {
    /// Goes online; the caller must (re)load shared state after this returns.
    pub fn online(&mut self) {
        self.seen = self.barrier.seq.load(Ordering::SeqCst);
        self.barrier.acks[self.idx].store(self.seen, Ordering::SeqCst);
    }

    /// The per-iteration check: true when the control side asked for a reload.
    #[inline(always)]
    pub fn pending(&self) -> bool {
        self.barrier.seq.load(Ordering::Acquire) != self.seen
    }

    /// Starts serving the pending request: returns the sequence it covers, or None if
    /// the worker must exit instead. The caller then reloads shared state and calls
    /// [`WorkerReload::done`] with that sequence; a request that arrives meanwhile stays
    /// pending for the next iteration.
    pub fn begin(&mut self) -> Option<u64> {
        if self.barrier.stop.load(Ordering::SeqCst) {
            return None;
        }
        Some(self.barrier.seq.load(Ordering::SeqCst))
    }

    /// Acknowledges every request up to `seq` (from [`WorkerReload::begin`]): the caller
    /// has reloaded, so what the old state held (queue handles, vids) is let go.
    pub fn done(&mut self, seq: u64) {
        self.seen = seq;
        self.barrier.acks[self.idx].store(seq, Ordering::SeqCst);
    }
}

impl Drop for WorkerReload<'_> {
    fn drop(&mut self) {
        self.barrier.acks[self.idx].store(OFFLINE, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;
    use std::sync::Arc;

    #[test]
    fn waits_for_running_workers_only() {
        let b = Arc::new(ReloadBarrier::new(2).unwrap());
        // Nobody online: returns at once.
        b.request_and_wait();

        let state = Arc::new(AtomicI64::new(7));
        let used = Arc::new(AtomicI64::new(0));
        let (b2, s2, u2) = (b.clone(), state.clone(), used.clone());
        let t = std::thread::spawn(move || {
            let mut h = b2.handle(0);
            h.online();
            let mut cached = s2.load(Ordering::SeqCst);
            loop {
                if h.pending() {
                    let Some(seen) = h.begin() else { break };
                    cached = s2.load(Ordering::SeqCst);
                    h.done(seen);
                }
                u2.store(cached, Ordering::SeqCst);
                std::thread::yield_now();
            }
        });
        while used.load(Ordering::SeqCst) != 7 {
            std::thread::yield_now();
        }
        state.store(-1, Ordering::SeqCst);
        b.request_and_wait();
        // When the wait returns the worker has reloaded: it holds the new value.
        let _ = used.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(used.load(Ordering::SeqCst), -1);
        b.stop();
        t.join().unwrap();
        // Worker exited (offline): must not block.
        let t0 = Instant::now();
        b.request_and_wait();
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
