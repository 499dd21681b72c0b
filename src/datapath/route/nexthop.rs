//! Next hops and ECMP groups as the workers read them: one `AtomicU64` per next hop
//! (what to do, the egress interface, the neighbour's MAC), and per group a fixed array
//! of buckets naming next hops. The control plane and the slow path (neighbour
//! resolution) write them; a worker reads a next hop in one load, so it never sees a
//! MAC of one neighbour with the interface of another.
//!
//! FIB values name a next hop, or a group when [`GROUP_BIT`] is set. A group's flows are
//! spread by a hash of the 5-tuple over [`BUCKETS`] buckets; changing a group's members
//! rewrites only the buckets that must change (resilient hashing, as in Linux's
//! `nexthop` resilient groups and RFC 2992's analysis): a member that leaves gives its
//! buckets to the others, one that joins takes buckets from those above their share, and
//! every other flow keeps its next hop.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// In a FIB value: the rest is an ECMP group id, not a next-hop id.
pub const GROUP_BIT: u32 = 1 << 21;
/// Buckets per ECMP group (the flows of one bucket move together).
pub const BUCKETS: usize = 64;

/// What a next hop does with a packet (the top 4 bits of its entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Unused id: the packet is dropped (`no_route`).
    Empty = 0,
    /// To the neighbour with this MAC on this interface.
    Forward = 1,
    /// The neighbour's MAC is not known yet: the slow path asks and holds the packet.
    Resolve = 2,
    /// One of our own addresses: the slow path answers (ICMP echo, or the host).
    Local = 3,
    /// Dropped on purpose (`blackhole` routes).
    Blackhole = 4,
    /// Dropped with an ICMP destination unreachable (`unreachable` routes).
    Unreachable = 5,
    /// A connected subnet: the destination itself is the neighbour; the slow path
    /// resolves it and installs a host route to it.
    Glean = 6,
}

impl Kind {
    fn from_bits(b: u64) -> Kind {
        match b {
            1 => Kind::Forward,
            2 => Kind::Resolve,
            3 => Kind::Local,
            4 => Kind::Blackhole,
            5 => Kind::Unreachable,
            6 => Kind::Glean,
            _ => Kind::Empty,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Empty => "empty",
            Kind::Forward => "forward",
            Kind::Resolve => "resolving",
            Kind::Local => "local",
            Kind::Blackhole => "blackhole",
            Kind::Unreachable => "unreachable",
            Kind::Glean => "glean",
        }
    }
}

/// One next hop, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub kind: Kind,
    /// Interface index (12 bits).
    pub iface: u16,
    pub mac: [u8; 6],
}

impl Hop {
    pub const EMPTY: Hop = Hop { kind: Kind::Empty, iface: 0, mac: [0; 6] };

    #[inline(always)]
    pub fn pack(self) -> u64 {
        let mut m = [0u8; 8];
        m[2..].copy_from_slice(&self.mac);
        u64::from_be_bytes(m) | (u64::from(self.iface & 0xfff) << 48) | ((self.kind as u64) << 60)
    }

    #[inline(always)]
    pub fn unpack(v: u64) -> Hop {
        let b = v.to_be_bytes();
        Hop { kind: Kind::from_bits(v >> 60), iface: ((v >> 48) & 0xfff) as u16, mac: [b[2], b[3], b[4], b[5], b[6], b[7]] }
    }
}

/// The workers' view of every next hop and group.
pub struct NhTable {
    hops: Box<[AtomicU64]>,
    groups: Box<[[AtomicU32; BUCKETS]]>,
}

impl NhTable {
    pub fn new(hops: usize, groups: usize) -> NhTable {
        NhTable {
            hops: (0..hops).map(|_| AtomicU64::new(0)).collect(),
            groups: (0..groups).map(|_| std::array::from_fn(|_| AtomicU32::new(0))).collect(),
        }
    }

    pub fn capacity(&self) -> (usize, usize) {
        (self.hops.len(), self.groups.len())
    }

    /// Next hop `id` (an empty one past the table).
    #[inline(always)]
    pub fn hop(&self, id: u32) -> Hop {
        self.hops.get(id as usize).map_or(Hop::EMPTY, |h| Hop::unpack(h.load(Ordering::Acquire)))
    }

    /// The next hop a FIB value names for a packet whose flow hashes to `hash`.
    #[inline(always)]
    pub fn resolve(&self, value: u32, hash: u32) -> u32 {
        if value & GROUP_BIT == 0 {
            return value;
        }
        self.groups.get((value & !GROUP_BIT) as usize).map_or(u32::MAX, |g| g[hash as usize % BUCKETS].load(Ordering::Relaxed))
    }

    pub fn set_hop(&self, id: u32, h: Hop) {
        if let Some(s) = self.hops.get(id as usize) {
            s.store(h.pack(), Ordering::Release);
        }
    }

    /// The buckets of group `g`.
    pub fn buckets(&self, g: u32) -> Vec<u32> {
        self.groups.get(g as usize).map_or_else(Vec::new, |b| b.iter().map(|x| x.load(Ordering::Relaxed)).collect())
    }

    /// Gives group `g` the members `members` (next-hop ids), moving as few buckets as
    /// possible (see the module doc); returns how many buckets changed.
    pub fn set_group(&self, g: u32, members: &[u32]) -> usize {
        let Some(b) = self.groups.get(g as usize) else { return 0 };
        let old: Vec<u32> = b.iter().map(|x| x.load(Ordering::Relaxed)).collect();
        let new = rebalance(&old, members);
        let mut moved = 0;
        for (slot, (&o, &n)) in b.iter().zip(old.iter().zip(new.iter())) {
            if o != n {
                slot.store(n, Ordering::Relaxed);
                moved += 1;
            }
        }
        moved
    }
}

/// New bucket owners for `members` from `old`: buckets of members that stay are kept up
/// to each member's fair share (⌊B/n⌋, the first B mod n members one more); the rest go
/// to members below their share, in bucket order.
pub fn rebalance(old: &[u32], members: &[u32]) -> Vec<u32> {
    if members.is_empty() {
        return vec![u32::MAX; old.len()];
    }
    let n = members.len();
    let share = |i: usize| old.len() / n + usize::from(i < old.len() % n);
    let mut have = vec![0usize; n];
    let mut out = vec![u32::MAX; old.len()];
    for (k, &o) in old.iter().enumerate() {
        if let Some(i) = members.iter().position(|&m| m == o) {
            if have[i] < share(i) {
                have[i] += 1;
                out[k] = o;
            }
        }
    }
    let mut i = 0;
    for slot in out.iter_mut().filter(|s| **s == u32::MAX) {
        while have[i] >= share(i) {
            i += 1;
        }
        have[i] += 1;
        *slot = members[i];
    }
    out
}

/// A flow hash over the addresses and ports (the same for every packet of a flow; the
/// multiplier spreads nearby addresses over the buckets).
#[inline(always)]
pub fn flow_hash(src: u64, dst: u64, ports: u32, proto: u8) -> u32 {
    let x = (src ^ dst.rotate_left(17) ^ (u64::from(ports) << 8) ^ u64::from(proto)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hops_pack_and_unpack() {
        let h = Hop { kind: Kind::Forward, iface: 4095, mac: [2, 0, 0xde, 0xad, 0xbe, 0xef] };
        assert_eq!(Hop::unpack(h.pack()), h);
        assert_eq!(Hop::unpack(0), Hop::EMPTY);
        let t = NhTable::new(4, 2);
        t.set_hop(3, h);
        assert_eq!(t.hop(3), h);
        assert_eq!(t.hop(99), Hop::EMPTY);
    }

    #[test]
    fn groups_spread_evenly_and_move_only_what_must() {
        let t = NhTable::new(8, 1);
        let g = GROUP_BIT;
        assert_eq!(t.set_group(0, &[1, 2, 3, 4]), BUCKETS);
        let count = |m: u32| t.buckets(0).iter().filter(|&&x| x == m).count();
        assert_eq!((count(1), count(2), count(3), count(4)), (16, 16, 16, 16));
        let before = t.buckets(0);
        // Member 3 leaves: only its 16 buckets move.
        assert_eq!(t.set_group(0, &[1, 2, 4]), 16);
        let after = t.buckets(0);
        for (b, a) in before.iter().zip(&after) {
            assert!(b == a || *b == 3, "a bucket of a member that stayed moved");
        }
        assert!(!after.contains(&3));
        // It comes back: it takes 16 buckets, nobody else changes owner among themselves.
        assert_eq!(t.set_group(0, &[1, 2, 4, 3]), 16);
        assert_eq!(count(3), 16);
        assert_eq!(t.resolve(7, 12345), 7, "a plain next hop");
        assert!([1, 2, 3, 4].contains(&t.resolve(g, 99)));
    }

    proptest! {
        /// Any change of members moves at most the buckets that had to move: those of
        /// members that left, plus those needed to give newcomers (and the new fair
        /// shares) their due.
        #[test]
        fn rebalance_is_fair_and_minimal(a in prop::collection::btree_set(1u32..12, 1..8), b in prop::collection::btree_set(1u32..12, 1..8)) {
            let a: Vec<u32> = a.into_iter().collect();
            let b: Vec<u32> = b.into_iter().collect();
            let start = rebalance(&vec![u32::MAX; BUCKETS], &a);
            let next = rebalance(&start, &b);
            for (i, m) in b.iter().enumerate() {
                let share = BUCKETS / b.len() + usize::from(i < BUCKETS % b.len());
                prop_assert_eq!(next.iter().filter(|&&x| x == *m).count(), share);
            }
            let moved = start.iter().zip(&next).filter(|(x, y)| x != y).count();
            // Buckets that must move: those whose owner left, or whose owner is above its new share.
            let mut must = 0;
            for m in a.iter() {
                let held = start.iter().filter(|&&x| x == *m).count();
                match b.iter().position(|x| x == m) {
                    None => must += held,
                    Some(i) => must += held.saturating_sub(BUCKETS / b.len() + usize::from(i < BUCKETS % b.len())),
                }
            }
            prop_assert_eq!(moved, must);
        }
    }
}
