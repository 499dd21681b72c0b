//! A simulated guest driver over simulated guest memory, for tests: it lays a split
//! virtqueue out in memory, posts buffers as a virtio-net driver does, and reads what the
//! device returned — and it can write anything a hostile guest might.

use std::sync::Arc;

use crate::guest::{Desc, GuestMemory, Ring, SIM_HVA};

use super::chain::{F_INDIRECT, F_NEXT, F_WRITE};

/// Memory layout: rings at 0..64 KiB, buffers from 1 MiB on, 4 MiB in all.
pub const MEM: u64 = 4 << 20;
pub const BUFS: u64 = 1 << 20;

pub struct Driver {
    pub mem: Arc<GuestMemory>,
    pub size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    /// The driver's available index, and the used index it read up to.
    pub avail_idx: u16,
    pub used_seen: u16,
    next_desc: u16,
    /// Next free buffer address (bump allocator; tests are short).
    next_buf: u64,
}

impl Driver {
    /// A queue of `size` at `base` in a fresh memory, or in `mem` if given.
    pub fn new(size: u16) -> Driver {
        Driver::in_mem(Arc::new(GuestMemory::simulated(&[(0, MEM)])), 0, size)
    }

    pub fn in_mem(mem: Arc<GuestMemory>, base: u64, size: u16) -> Driver {
        let n = u64::from(size);
        let desc = base;
        let avail = desc + 16 * n;
        let used = (avail + 6 + 2 * n + 3) & !3;
        Driver { mem, size, desc, avail, used, avail_idx: 0, used_seen: 0, next_desc: 0, next_buf: BUFS + base * 16 }
    }

    /// The device's view of the queue.
    pub fn ring(&self) -> Ring {
        self.mem.ring(self.desc + SIM_HVA, self.avail + SIM_HVA, self.used + SIM_HVA, self.size).expect("a well-formed ring")
    }

    /// A fresh buffer of `len` bytes holding `data` (zero-padded).
    pub fn buffer(&mut self, len: u32, data: &[u8]) -> u64 {
        let gpa = self.next_buf;
        self.next_buf += u64::from(len).max(1).div_ceil(64) * 64;
        assert!(self.next_buf <= MEM, "simulated memory exhausted");
        assert!(self.mem.write(gpa, data));
        gpa
    }

    pub fn write_desc(&self, i: u16, d: Desc) {
        assert!(self.mem.write(self.desc + 16 * u64::from(i % self.size), &d.to_bytes()));
    }

    /// Posts a chain of (gpa, len) buffers, device-writable if `write`; returns its head.
    pub fn post(&mut self, bufs: &[(u64, u32)], write: bool) -> u16 {
        let head = self.next_desc;
        for (k, &(gpa, len)) in bufs.iter().enumerate() {
            let i = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let last = k + 1 == bufs.len();
            let flags = if write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.write_desc(i, Desc { addr: gpa, len, flags, next: self.next_desc });
        }
        self.make_available(head);
        head
    }

    /// Posts one indirect descriptor whose table holds `bufs`.
    pub fn post_indirect(&mut self, bufs: &[(u64, u32)], write: bool) -> u16 {
        let mut table = Vec::new();
        for (k, &(gpa, len)) in bufs.iter().enumerate() {
            let last = k + 1 == bufs.len();
            let flags = if write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            table.extend_from_slice(&Desc { addr: gpa, len, flags, next: k as u16 + 1 }.to_bytes());
        }
        let t = self.buffer(table.len() as u32, &table);
        let head = self.next_desc;
        self.next_desc = (self.next_desc + 1) % self.size;
        self.write_desc(head, Desc { addr: t, len: table.len() as u32, flags: F_INDIRECT, next: 0 });
        self.make_available(head);
        head
    }

    /// Puts `head` at the next available position (not yet published).
    pub fn make_available(&mut self, head: u16) {
        let pos = u64::from(self.avail_idx % self.size);
        assert!(self.mem.write(self.avail + 4 + 2 * pos, &head.to_le_bytes()));
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Publishes the available index (what a driver does after its entries).
    pub fn publish(&self) {
        self.set_avail_idx(self.avail_idx);
    }

    pub fn set_avail_idx(&self, v: u16) {
        assert!(self.mem.write(self.avail + 2, &v.to_le_bytes()));
    }

    pub fn set_avail_flags(&self, v: u16) {
        assert!(self.mem.write(self.avail, &v.to_le_bytes()));
    }

    pub fn set_used_event(&self, v: u16) {
        assert!(self.mem.write(self.avail + 4 + 2 * u64::from(self.size), &v.to_le_bytes()));
    }

    /// The used elements (id, len) published since the last call.
    pub fn take_used(&mut self) -> Vec<(u32, u32)> {
        let mut b = [0u8; 2];
        assert!(self.mem.read(self.used + 2, &mut b));
        let idx = u16::from_le_bytes(b);
        let mut out = Vec::new();
        while self.used_seen != idx {
            let mut e = [0u8; 8];
            assert!(self.mem.read(self.used + 4 + 8 * u64::from(self.used_seen % self.size), &mut e));
            out.push((u32::from_le_bytes(e[..4].try_into().unwrap()), u32::from_le_bytes(e[4..].try_into().unwrap())));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        assert!(self.mem.read(gpa, &mut v));
        v
    }
}
