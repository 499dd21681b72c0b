//! Tx queues as a worker sees them: its own ([`TxQueue`], an ethdev queue or a vhost
//! vring) or one several workers share ([`SharedTxQueue`], whose `send` takes its lock:
//! the DPDK prog guide's fallback when a port has fewer tx queues than lcores).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

use super::ethdev::EthTxQueue;
use super::mbuf::Batch;
use super::vhost::VhostTxQueue;

/// A tx queue owned by one worker: an ethdev queue or a vhost device's guest-rx vring.
pub enum TxQueue {
    Eth(EthTxQueue),
    Vhost(VhostTxQueue),
}

impl TxQueue {
    /// Sends the batch, retrying a partly refused burst up to `retries` times; what still
    /// did not go stays in the batch for the caller to drop and count. Returns the packets
    /// sent, or None (nothing sent) when the port has no device attached.
    #[inline(always)]
    pub fn send(&mut self, batch: &mut Batch, retries: u32) -> Option<usize> {
        match self {
            TxQueue::Eth(q) => Some(retry(batch, retries, |b| q.tx_burst(b))),
            TxQueue::Vhost(q) if q.is_up() => Some(retry(batch, retries, |b| q.tx_burst(b))),
            TxQueue::Vhost(_) => None,
        }
    }

    /// At a reload point: a vhost queue picks up its device and vring again.
    pub fn reload(&mut self) {
        if let TxQueue::Vhost(q) = self {
            q.reload();
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

/// A tx queue that more workers send to than the port has queues (the documented
/// fallback): a test-and-test-and-set spinlock held for one `send`, with a count of
/// contended takes.
pub struct SharedTxQueue {
    held: CachePadded<AtomicBool>,
    contended: AtomicU64,
    queue: UnsafeCell<TxQueue>,
}

// SAFETY: the queue inside is reached only through `lock`, which admits one thread at a
// time (the spinlock's Acquire/Release pair orders each holder after the previous one);
// the handle itself is Send (it moves between threads like any queue handle).
unsafe impl Sync for SharedTxQueue {}

impl SharedTxQueue {
    pub fn new(queue: TxQueue) -> SharedTxQueue {
        SharedTxQueue { held: CachePadded::new(AtomicBool::new(false)), contended: AtomicU64::new(0), queue: UnsafeCell::new(queue) }
    }

    /// [`TxQueue::send`] under the lock.
    #[inline(always)]
    pub fn send(&self, batch: &mut Batch, retries: u32) -> Option<usize> {
        self.lock().send(batch, retries)
    }

    /// [`TxQueue::reload`] under the lock.
    pub fn reload(&self) {
        self.lock().reload();
    }

    /// Takes that had to wait for another worker.
    pub fn contended(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn lock(&self) -> Guard<'_> {
        while self.held.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.contended.fetch_add(1, Ordering::Relaxed);
            while self.held.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        Guard(self)
    }
}

/// The lock of a [`SharedTxQueue`], held: the only way to its queue.
struct Guard<'a>(&'a SharedTxQueue);

impl std::ops::Deref for Guard<'_> {
    type Target = TxQueue;
    fn deref(&self) -> &TxQueue {
        // SAFETY: this guard holds the lock, so no other reference to the queue exists
        // until it is dropped.
        unsafe { &*self.0.queue.get() }
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut TxQueue {
        // SAFETY: as in deref; &mut self makes this the only reference through the guard.
        unsafe { &mut *self.0.queue.get() }
    }
}

impl Drop for Guard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.held.store(false, Ordering::Release);
    }
}
