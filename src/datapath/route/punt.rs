//! The exception path between the workers and the router's slow path: frames a worker
//! does not forward itself (ARP, neighbour discovery, ICMP to generate, packets waiting
//! for a neighbour, fragmentation, our own addresses) go up as copies in recycled
//! buffers, and frames the slow path makes (replies, ICMP errors, released packets) come
//! down to a worker that sends them with its own tx queues.
//!
//! Both directions are bounded lock-free queues (crossbeam's `ArrayQueue`) and buffers
//! come from a fixed pool, so a flood of exceptions costs counted drops (`punt_full`),
//! never memory, a lock or a system call on a worker.

use crossbeam::queue::ArrayQueue;

use super::Why;

/// Largest frame the exception path carries (a jumbo frame; a guest's 64 KiB TSO frame
/// is dropped as `punt_full` and resent by TCP after the neighbour resolves).
pub const PUNT_MAX: usize = 9216;

/// A frame for the slow path.
pub struct Punted {
    pub why: Why,
    pub port: u16,
    pub iface: u16,
    pub frame: Vec<u8>,
}

/// A frame for a worker to send on `port`.
pub struct Injected {
    pub port: u16,
    pub frame: Vec<u8>,
}

pub struct PuntQueues {
    up: ArrayQueue<Punted>,
    free: ArrayQueue<Vec<u8>>,
    down: Box<[ArrayQueue<Injected>]>,
}

impl PuntQueues {
    /// `bufs` buffers shared by both directions; one down queue per worker.
    pub fn new(bufs: usize, workers: usize) -> PuntQueues {
        let free = ArrayQueue::new(bufs.max(1));
        for _ in 0..bufs {
            let _ = free.push(Vec::with_capacity(PUNT_MAX));
        }
        PuntQueues { up: ArrayQueue::new(bufs.max(1)), free, down: (0..workers.max(1)).map(|_| ArrayQueue::new(bufs.max(1))).collect() }
    }

    /// Worker: hands a copy of a frame up; `fill` writes it into the buffer. False (the
    /// caller counts `punt_full`) when no buffer is free or the queue is full.
    #[inline]
    pub fn punt(&self, why: Why, port: u16, iface: u16, fill: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let Some(mut frame) = self.free.pop() else { return false };
        frame.clear();
        if !fill(&mut frame) || frame.len() > PUNT_MAX {
            self.recycle(frame);
            return false;
        }
        match self.up.push(Punted { why, port, iface, frame }) {
            Ok(()) => true,
            Err(p) => {
                self.recycle(p.frame);
                false
            }
        }
    }

    /// Slow path: the next frame handed up.
    pub fn next_up(&self) -> Option<Punted> {
        self.up.pop()
    }

    /// A buffer for a frame the slow path makes (None: all in use).
    pub fn buffer(&self) -> Option<Vec<u8>> {
        let mut b = self.free.pop()?;
        b.clear();
        Some(b)
    }

    /// A buffer goes back to the pool (oversized ones are replaced, so the pool's
    /// buffers stay PUNT_MAX).
    pub fn recycle(&self, mut b: Vec<u8>) {
        if b.capacity() > 2 * PUNT_MAX {
            b = Vec::with_capacity(PUNT_MAX);
        }
        let _ = self.free.push(b);
    }

    /// Slow path: a frame for worker `w` to send on `port`; false (buffer recycled) when
    /// its queue is full.
    pub fn inject(&self, w: usize, port: u16, frame: Vec<u8>) -> bool {
        let q = &self.down[w % self.down.len()];
        match q.push(Injected { port, frame }) {
            Ok(()) => true,
            Err(i) => {
                self.recycle(i.frame);
                false
            }
        }
    }

    /// Worker `w`: whether frames wait to be sent (one load when there are none).
    #[inline(always)]
    pub fn has_down(&self, w: usize) -> bool {
        self.down.get(w).is_some_and(|q| !q.is_empty())
    }

    /// Worker `w`: the next frame to send.
    pub fn next_down(&self, w: usize) -> Option<Injected> {
        self.down.get(w)?.pop()
    }

    pub fn workers(&self) -> usize {
        self.down.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_bounded_and_come_back() {
        let q = PuntQueues::new(2, 1);
        assert!(q.punt(Why::Arp, 0, 0, |b| {
            b.extend_from_slice(&[1, 2, 3]);
            true
        }));
        assert!(q.punt(Why::Local, 1, 0, |_| true));
        assert!(!q.punt(Why::Local, 1, 0, |_| true), "no buffer left");
        let p = q.next_up().unwrap();
        assert_eq!((p.why, p.port, &p.frame[..]), (Why::Arp, 0, &[1u8, 2, 3][..]));
        assert!(q.inject(0, 5, p.frame));
        assert!(q.has_down(0));
        let d = q.next_down(0).unwrap();
        assert_eq!(d.port, 5);
        q.recycle(d.frame);
        assert!(!q.punt(Why::Arp, 0, 0, |b| {
            b.resize(PUNT_MAX + 1, 0);
            true
        }));
        assert!(q.buffer().is_some(), "a refused punt gives its buffer back");
    }
}
