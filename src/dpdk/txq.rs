//! A tx queue several workers share: the DPDK prog guide's fallback when a port has
//! fewer tx queues than lcores ("Poll Mode Driver": a queue is never used by two lcores
//! without a lock). [`SharedQueue`] is that lock around any queue handle: a
//! test-and-test-and-set spinlock held for one `with` call (one send with its retries),
//! with a count of contended takes.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

/// A queue handle behind a spinlock.
pub struct SharedQueue<T> {
    held: CachePadded<AtomicBool>,
    contended: AtomicU64,
    queue: UnsafeCell<T>,
}

// SAFETY: the queue inside is reached only through `with`, which admits one thread at a
// time (the spinlock's Acquire/Release pair orders each holder after the previous one),
// so sharing the wrapper shares no unsynchronised access; T must be Send because each
// holder uses it on its own thread.
unsafe impl<T: Send> Sync for SharedQueue<T> {}

impl<T> SharedQueue<T> {
    pub fn new(queue: T) -> SharedQueue<T> {
        SharedQueue { held: CachePadded::new(AtomicBool::new(false)), contended: AtomicU64::new(0), queue: UnsafeCell::new(queue) }
    }

    /// Runs `f` on the queue under the lock.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self.held.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.contended.fetch_add(1, Ordering::Relaxed);
            while self.held.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        let _unlock = Unlock(&self.held);
        // SAFETY: the lock is held (above) until `_unlock` drops after f returns, so this
        // is the only reference to the queue for that time.
        f(unsafe { &mut *self.queue.get() })
    }

    /// Takes that had to wait for another worker.
    pub fn contended(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }
}

/// Releases the lock when dropped (also if `f` unwinds).
struct Unlock<'a>(&'a AtomicBool);

impl Drop for Unlock<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SharedQueue;
    use std::sync::Arc;

    #[test]
    fn one_holder_at_a_time() {
        let q = Arc::new(SharedQueue::new(0u64));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        // A non-atomic read-modify-write: lost updates if two held it.
                        q.with(|v| *v += 1);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(q.with(|v| *v), 400_000);
    }
}
