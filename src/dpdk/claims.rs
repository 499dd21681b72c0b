//! Queue handles as types: each rx or tx queue of a port has at most one handle alive,
//! because taking one is checked here.
//!
//! DPDK programmer's guide, Poll Mode Driver, "Logical Cores, Memory and NIC Queues
//! Relationships": the burst functions are not thread-safe on one queue; lcores never
//! share a queue without a lock. The handles encode it: they are `Send` but neither
//! `Clone` nor `Sync`, bursts take `&mut self`, and a second handle of a live one cannot
//! be taken, so two threads cannot hold the same queue.

use std::sync::atomic::{AtomicBool, Ordering};

/// One flag per queue of a port: set while that queue's handle is alive.
pub(crate) struct Claims(Box<[AtomicBool]>);

impl Claims {
    pub(crate) fn new(queues: u16) -> Claims {
        Claims((0..queues).map(|_| AtomicBool::new(false)).collect())
    }

    /// Takes queue `q` if no handle of it is alive (and `q` exists).
    pub(crate) fn take(&self, q: u16) -> bool {
        // AcqRel: the new owner sees everything the last owner did before releasing.
        self.0.get(q as usize).is_some_and(|f| !f.swap(true, Ordering::AcqRel))
    }

    /// Bit q set: queue q's handle is alive (the first 64 queues).
    pub(crate) fn taken(&self) -> u64 {
        self.0.iter().take(64).enumerate().filter(|(_, f)| f.load(Ordering::Acquire)).fold(0, |m, (q, _)| m | 1 << q)
    }

    pub(crate) fn release(&self, q: u16) {
        if let Some(f) = self.0.get(q as usize) {
            f.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Claims;

    #[test]
    fn a_queue_is_taken_once_until_released() {
        let c = Claims::new(2);
        assert!(c.take(0));
        assert!(!c.take(0), "second handle of queue 0");
        assert!(c.take(1));
        assert!(!c.take(2), "no queue 2");
        c.release(0);
        assert!(c.take(0));
    }
}
