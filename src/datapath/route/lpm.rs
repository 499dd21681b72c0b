//! Longest-prefix match for IPv4 and IPv6: lock-free lookups for the workers, one writer
//! (the control plane) at a time.
//!
//! The layout is DIR-24-8 (Gupta, Lin, McKeown, "Routing lookups in hardware at memory
//! access speeds", 1998; DPDK's `rte_lpm` and `rte_fib`): a first level indexed by the
//! key's top 24 bits, then 256-entry groups for each further byte. An IPv4 lookup is
//! one load, two when the /24 holds a longer prefix; an IPv6 lookup walks one group per
//! byte past the first three, as far as the longest prefix under it reaches (rte_fib6's
//! trie). Each entry is one `AtomicU32`, so a reader sees an entry either before or
//! after a change, never half of one:
//!
//! ```text
//!   31 valid | 30 group | 29..22 depth (prefix length) | 21..0 value (next hop) or group id
//! ```
//!
//! Why not `rte_fib` through FFI (measured and read, DPDK 22.11): its `rte_fib_add`/`del`
//! free second-level groups at once while lookups may run (no RCU hook in 22.11's fib),
//! its AVX-512 bulk lookup is unavailable on this CPU, and its scalar bulk lookup is the
//! same two loads as here behind a function call per burst. Keeping the table in Rust
//! gives deferred frees through [`Qsbr`], an inlined lookup with a prefetch pass, and
//! unit tests against a model.
//!
//! Writes follow `rte_lpm`'s rule: inserting a prefix of length L overwrites the entries
//! it covers whose depth is ≤ L (a shorter or equal prefix's, or empty); deleting one
//! rewrites the entries of depth exactly L with the longest remaining prefix that covers
//! them (found in the per-length route sets kept beside the table). A group is published
//! after its 256 entries are filled (release store of the parent), and is collapsed back
//! into its parent when no prefix longer than the parent's reach remains under it; the
//! collapsed group is reused only after a grace period ([`Qsbr`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use super::qsbr::Qsbr;
use crate::sys::hugemem::HugeSlice;

const VALID: u32 = 1 << 31;
const GROUP: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 22;
const VALUE_MASK: u32 = (1 << DEPTH_SHIFT) - 1;
/// The largest value (next-hop id) an entry holds.
pub const MAX_VALUE: u32 = VALUE_MASK;

const FIRST_BITS: u32 = 24;
const GROUP_LEN: usize = 256;
/// Groups are allocated in chunks of this many (4 MiB), never moved.
const CHUNK: usize = 4096;

#[inline(always)]
fn leaf(value: u32, depth: u32) -> u32 {
    VALID | (depth << DEPTH_SHIFT) | value
}

#[inline(always)]
fn depth_of(e: u32) -> u32 {
    (e >> DEPTH_SHIFT) & 0xff
}

/// Key of `bits` bits, left-aligned in a u128 (IPv4 addresses take the top 32 bits).
#[inline(always)]
fn mask(len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

/// The `width`-bit index that starts at bit `start` (from the top) of `key`.
#[inline(always)]
fn index(key: u128, start: u32, width: u32) -> usize {
    ((key >> (128 - start - width)) as usize) & ((1usize << width) - 1)
}

/// Why a change was refused (nothing of it applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LpmError {
    /// Every group is in use: the table holds as many long prefixes as it can.
    Full,
    /// Length longer than the key, or a value too large for an entry.
    Invalid,
}

impl std::fmt::Display for LpmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LpmError::Full => write!(f, "the FIB has no free second-level groups (raise --fib-groups)"),
            LpmError::Invalid => write!(f, "prefix length or next-hop id out of range"),
        }
    }
}

/// The writer's side: the routes by length, and group bookkeeping.
struct Writer {
    routes: Vec<HashMap<u128, u32>>,
    next_group: u32,
    free: Vec<u32>,
    /// Groups unlinked at an epoch, reusable once it has passed.
    limbo: Vec<(u64, u32)>,
}

/// One table (IPv4 or IPv6). Readers: [`Lpm::lookup`] (and the `u32` and burst forms);
/// the writer: [`Lpm::insert`], [`Lpm::remove`], [`Lpm::reclaim`], serialised by a lock
/// readers never take.
pub struct Lpm {
    bits: u32,
    l1: HugeSlice<AtomicU32>,
    chunks: Box<[OnceLock<HugeSlice<AtomicU32>>]>,
    max_groups: u32,
    writer: Mutex<Writer>,
}

/// Where an entry lives.
#[derive(Clone, Copy)]
enum Table {
    L1,
    Group(u32),
}

/// A change applied to the entries a prefix covers.
#[derive(Clone, Copy)]
enum Op {
    /// Entries of depth ≤ `len` (or empty) become `leaf(value, len)`.
    Insert { len: u32, value: u32 },
    /// Entries of depth `len` become `repl` (the covering route's leaf, or empty).
    Remove { len: u32, repl: u32 },
}

impl Lpm {
    /// A table for `bits`-bit keys (32 or 128) with room for `max_groups` groups of 256
    /// entries (1 KiB each, allocated 4 MiB at a time as needed). The first level (64
    /// MiB) is only backed where written.
    pub fn new(bits: u32, max_groups: u32) -> Lpm {
        assert!(bits == 32 || bits == 128);
        let max_groups = max_groups.clamp(1, VALUE_MASK + 1);
        let chunks = (max_groups as usize).div_ceil(CHUNK);
        Lpm {
            bits,
            l1: HugeSlice::zeroed(1 << FIRST_BITS),
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            max_groups,
            writer: Mutex::new(Writer {
                routes: (0..=bits).map(|_| HashMap::new()).collect(),
                next_group: 0,
                free: Vec::new(),
                limbo: Vec::new(),
            }),
        }
    }

    #[inline(always)]
    fn group(&self, g: u32) -> &[AtomicU32] {
        let g = g as usize;
        match self.chunks.get(g / CHUNK).and_then(|c| c.get()) {
            Some(c) => &c[(g % CHUNK) * GROUP_LEN..(g % CHUNK + 1) * GROUP_LEN],
            // A group id in an entry was allocated (and its chunk set) before the entry
            // was published, so this is unreachable; an empty slice makes it a miss.
            None => &[],
        }
    }

    #[inline(always)]
    fn slot(&self, t: Table, i: usize) -> &AtomicU32 {
        match t {
            Table::L1 => &self.l1[i],
            Table::Group(g) => &self.group(g)[i],
        }
    }

    /// The value of the longest prefix matching `key` (left-aligned), if any.
    #[inline(always)]
    pub fn lookup(&self, key: u128) -> Option<u32> {
        let mut e = self.l1[index(key, 0, FIRST_BITS)].load(Ordering::Acquire);
        let mut start = FIRST_BITS;
        while e & GROUP != 0 {
            e = self.group(e & VALUE_MASK).get(index(key, start, 8)).map_or(0, |s| s.load(Ordering::Acquire));
            start += 8;
        }
        (e & VALID != 0).then_some(e & VALUE_MASK)
    }

    /// [`Lpm::lookup`] of an IPv4 address (host order), for an IPv4 table.
    #[inline(always)]
    pub fn lookup4(&self, a: u32) -> Option<u32> {
        let e = self.l1[(a >> 8) as usize].load(Ordering::Acquire);
        let e =
            if e & GROUP != 0 { self.group(e & VALUE_MASK).get((a & 0xff) as usize).map_or(0, |s| s.load(Ordering::Acquire)) } else { e };
        (e & VALID != 0).then_some(e & VALUE_MASK)
    }

    /// Hints the first-level entry of `a` (a burst's lookups prefetch them all first: with
    /// many routes they are spread over 64 MiB).
    #[inline(always)]
    pub fn prefetch4(&self, a: u32) {
        crate::sys::prefetch(&self.l1[(a >> 8) as usize]);
    }

    /// The second step of a burst's IPv4 lookups, after [`Lpm::prefetch4`]: reads `a`'s
    /// first-level entry and, when it leads to a group, hints the group's entry; returns
    /// the entry for [`Lpm::finish4`]. With a million routes both levels are cache misses
    /// (64 MiB of first level, hundreds of MiB of groups): three passes over a burst keep
    /// a burst's misses in flight together instead of one after the other.
    #[inline(always)]
    pub fn step4(&self, a: u32) -> u32 {
        let e = self.l1[(a >> 8) as usize].load(Ordering::Acquire);
        if e & GROUP != 0 {
            if let Some(s) = self.group(e & VALUE_MASK).get((a & 0xff) as usize) {
                crate::sys::prefetch(s);
            }
        }
        e
    }

    /// The value for `a` from the entry [`Lpm::step4`] returned.
    #[inline(always)]
    pub fn finish4(&self, a: u32, e: u32) -> Option<u32> {
        let e =
            if e & GROUP != 0 { self.group(e & VALUE_MASK).get((a & 0xff) as usize).map_or(0, |s| s.load(Ordering::Acquire)) } else { e };
        (e & VALID != 0).then_some(e & VALUE_MASK)
    }

    /// Inserts (or replaces) `prefix/len` with `value`. The key's bits past `len` are
    /// ignored.
    ///
    /// # Errors
    /// [`LpmError::Full`] when a group is needed and none is free (the table is
    /// unchanged for lookups: groups made on the way are filled with what their parent
    /// held); [`LpmError::Invalid`] for a length past the key or a value past
    /// [`MAX_VALUE`].
    pub fn insert(&self, prefix: u128, len: u32, value: u32) -> Result<(), LpmError> {
        if len > self.bits || value > MAX_VALUE {
            return Err(LpmError::Invalid);
        }
        let key = prefix & mask(len);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.routes[len as usize].get(&key) == Some(&value) {
            return Ok(());
        }
        self.apply(&mut w, Table::L1, 0, FIRST_BITS, key, len, Op::Insert { len, value })?;
        w.routes[len as usize].insert(key, value);
        Ok(())
    }

    /// Removes `prefix/len`; false if it was not there.
    pub fn remove(&self, prefix: u128, len: u32, qsbr: &Qsbr) -> bool {
        if len > self.bits {
            return false;
        }
        let key = prefix & mask(len);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.routes[len as usize].remove(&key).is_none() {
            return false;
        }
        // What covers these addresses now: the longest shorter route.
        let repl = (0..len).rev().find_map(|l| w.routes[l as usize].get(&(key & mask(l))).map(|&v| leaf(v, l))).unwrap_or(0);
        let before = w.limbo.len();
        // Removal never allocates.
        let _ = self.apply(&mut w, Table::L1, 0, FIRST_BITS, key, len, Op::Remove { len, repl });
        if w.limbo.len() > before {
            let e = qsbr.advance();
            for x in &mut w.limbo[before..] {
                x.0 = e;
            }
        }
        true
    }

    /// The value stored for exactly `prefix/len`.
    pub fn get(&self, prefix: u128, len: u32) -> Option<u32> {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.routes.get(len as usize)?.get(&(prefix & mask(len))).copied()
    }

    /// Every route, as (prefix, length, value), shortest first.
    pub fn routes(&self) -> Vec<(u128, u32, u32)> {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = Vec::new();
        for (len, m) in w.routes.iter().enumerate() {
            v.extend(m.iter().map(|(&k, &val)| (k, len as u32, val)));
        }
        v
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).routes.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Groups in use or awaiting reuse, and the most there may be.
    pub fn groups(&self) -> (u32, u32) {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        (w.next_group - w.free.len() as u32, self.max_groups)
    }

    /// Bytes of table memory touched so far (the first level's written pages are not
    /// counted separately: it is counted whole, 64 MiB), plus the route sets' entries.
    pub fn memory_bytes(&self) -> usize {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let chunks = self.chunks.iter().filter(|c| c.get().is_some()).count();
        (4 << FIRST_BITS) + chunks * CHUNK * GROUP_LEN * 4 + w.routes.iter().map(|m| m.capacity() * 24).sum::<usize>()
    }

    /// Makes groups whose grace period has passed reusable; returns how many.
    pub fn reclaim(&self, qsbr: &Qsbr) -> usize {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        let mut i = 0;
        while i < w.limbo.len() {
            let (e, g) = w.limbo[i];
            if qsbr.passed(e) {
                w.limbo.swap_remove(i);
                w.free.push(g);
                n += 1;
            } else {
                i += 1;
            }
        }
        n
    }

    fn alloc(&self, w: &mut Writer) -> Result<u32, LpmError> {
        if let Some(g) = w.free.pop() {
            return Ok(g);
        }
        if w.next_group >= self.max_groups {
            return Err(LpmError::Full);
        }
        let g = w.next_group;
        let c = g as usize / CHUNK;
        self.chunks[c].get_or_init(|| HugeSlice::zeroed(CHUNK * GROUP_LEN));
        w.next_group += 1;
        Ok(g)
    }

    /// Applies `op` for `key/len` in table `t`, whose entries are indexed by `width`
    /// bits of the key from bit `start`.
    #[allow(clippy::too_many_arguments)]
    fn apply(&self, w: &mut Writer, t: Table, start: u32, width: u32, key: u128, len: u32, op: Op) -> Result<(), LpmError> {
        let end = start + width;
        let i = index(key, start, width);
        if len <= end {
            let span = 1usize << (end - len);
            let base = i & !(span - 1);
            for j in base..base + span {
                self.cover(self.slot(t, j), op);
            }
            return Ok(());
        }
        // Longer than this level reaches: go down one group.
        let s = self.slot(t, i);
        let e = s.load(Ordering::Relaxed);
        let g = if e & GROUP != 0 {
            e & VALUE_MASK
        } else {
            if matches!(op, Op::Remove { .. }) {
                // Nothing longer lives under a leaf.
                return Ok(());
            }
            let g = self.alloc(w)?;
            for x in self.group(g) {
                x.store(e, Ordering::Relaxed);
            }
            // Published after its entries: a reader that sees the group sees them.
            s.store(GROUP | g, Ordering::Release);
            g
        };
        let r = self.apply(w, Table::Group(g), end, 8, key, len, op);
        if matches!(op, Op::Remove { .. }) {
            self.collapse(w, s, g, end);
        }
        r
    }

    /// Applies `op` to one entry covered whole by the prefix (and to everything under it).
    fn cover(&self, s: &AtomicU32, op: Op) {
        let e = s.load(Ordering::Relaxed);
        if e & GROUP != 0 {
            for x in self.group(e & VALUE_MASK) {
                self.cover(x, op);
            }
            return;
        }
        match op {
            Op::Insert { len, value } if e & VALID == 0 || depth_of(e) <= len => s.store(leaf(value, len), Ordering::Release),
            Op::Remove { len, repl } if e & VALID != 0 && depth_of(e) == len => s.store(repl, Ordering::Release),
            _ => {}
        }
    }

    /// Folds group `g` (under entry `s`, covering key bits from `start`) back into `s`
    /// when no prefix longer than `start` remains in it: then all its entries are the
    /// same covering route's. The group is reused after a grace period.
    fn collapse(&self, w: &mut Writer, s: &AtomicU32, g: u32, start: u32) {
        let grp = self.group(g);
        let first = grp[0].load(Ordering::Relaxed);
        let uniform = grp.iter().all(|x| {
            let e = x.load(Ordering::Relaxed);
            e & GROUP == 0 && (e & VALID == 0 || depth_of(e) <= start)
        });
        if uniform {
            s.store(first, Ordering::Release);
            w.limbo.push((0, g));
        }
    }
}

/// An IPv4 address (host order) as a key.
#[inline(always)]
pub fn key4(a: u32) -> u128 {
    u128::from(a) << 96
}

/// An IPv6 address as a key.
#[inline(always)]
pub fn key6(a: [u8; 16]) -> u128 {
    u128::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: a linear scan for the longest matching prefix.
    fn model(routes: &HashMap<(u128, u32), u32>, key: u128) -> Option<u32> {
        routes.iter().filter(|((p, l), _)| key & mask(*l) == *p).max_by_key(|((_, l), _)| *l).map(|(_, &v)| v)
    }

    #[test]
    fn ipv4_longest_prefix_wins_and_removal_restores_the_cover() {
        let q = Qsbr::new(0);
        let t = Lpm::new(32, 64);
        let a = |s: &str| key4(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()));
        t.insert(a("198.18.0.0"), 15, 1).unwrap();
        t.insert(a("198.18.1.0"), 24, 2).unwrap();
        t.insert(a("198.18.1.128"), 25, 3).unwrap();
        t.insert(a("198.18.1.7"), 32, 4).unwrap();
        assert_eq!(t.lookup(a("198.19.3.3")), Some(1));
        assert_eq!(t.lookup(a("198.18.1.3")), Some(2));
        assert_eq!(t.lookup(a("198.18.1.200")), Some(3));
        assert_eq!(t.lookup(a("198.18.1.7")), Some(4));
        assert_eq!(t.lookup4(u32::from(std::net::Ipv4Addr::new(198, 18, 1, 7))), Some(4));
        assert_eq!(t.lookup(a("10.0.0.1")), None);
        assert_eq!(t.groups().0, 1);
        assert!(t.remove(a("198.18.1.7"), 32, &q));
        assert_eq!(t.lookup(a("198.18.1.7")), Some(2));
        assert!(t.remove(a("198.18.1.128"), 25, &q));
        // The /24's group holds nothing longer now: folded back, reusable after a grace.
        assert_eq!(t.reclaim(&q), 1);
        assert_eq!(t.lookup(a("198.18.1.200")), Some(2));
        assert!(t.remove(a("198.18.1.0"), 24, &q));
        assert_eq!(t.lookup(a("198.18.1.200")), Some(1));
        assert!(!t.remove(a("198.18.1.0"), 24, &q), "removed twice");
        t.insert(0, 0, 9).unwrap();
        assert_eq!(t.lookup(a("10.0.0.1")), Some(9));
        assert_eq!(t.lookup(a("198.18.200.1")), Some(1));
    }

    #[test]
    fn a_full_table_refuses_and_stays_consistent() {
        let t = Lpm::new(32, 2);
        t.insert(key4(0x0a00_0000), 8, 1).unwrap();
        t.insert(key4(0x0a00_0100), 32, 2).unwrap();
        t.insert(key4(0x0a00_0200), 32, 3).unwrap();
        assert_eq!(t.insert(key4(0x0a00_0300), 32, 4), Err(LpmError::Full));
        assert_eq!(t.lookup4(0x0a00_0300), Some(1));
        assert_eq!(t.lookup4(0x0a00_0200), Some(3));
        assert_eq!(t.insert(0, 33, 1), Err(LpmError::Invalid));
        assert_eq!(t.insert(0, 8, MAX_VALUE + 1), Err(LpmError::Invalid));
    }

    fn check(t: &Lpm, routes: &HashMap<(u128, u32), u32>, probes: &[u128]) -> Result<(), TestCaseError> {
        for &k in probes {
            prop_assert_eq!(t.lookup(k), model(routes, k), "key {:032x}", k);
        }
        for (&(p, _), _) in routes.iter() {
            prop_assert_eq!(t.lookup(p), model(routes, p));
            prop_assert_eq!(t.lookup(p | !mask(127)), model(routes, p | !mask(127)));
        }
        Ok(())
    }

    /// Prefixes clustered in a few /16s so that they nest and share groups.
    fn v4_prefix() -> impl Strategy<Value = (u128, u32)> {
        (0u32..4, any::<u16>(), 8u32..=32).prop_map(|(hi, lo, len)| (key4(0x0a00_0000 | (hi << 16) | u32::from(lo)) & mask(len), len))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Inserts and removals interleaved against the model, for IPv4.
        #[test]
        fn ipv4_matches_the_model(ops in prop::collection::vec((any::<bool>(), v4_prefix(), 1u32..100), 1..120),
                                  probes in prop::collection::vec(any::<u16>(), 50)) {
            let q = Qsbr::new(0);
            let t = Lpm::new(32, 4096);
            let mut routes = HashMap::new();
            for (add, (p, l), v) in ops {
                if add || !routes.contains_key(&(p, l)) {
                    t.insert(p, l, v).unwrap();
                    routes.insert((p, l), v);
                } else {
                    prop_assert!(t.remove(p, l, &q));
                    routes.remove(&(p, l));
                }
                t.reclaim(&q);
            }
            let probes: Vec<u128> = probes.iter().enumerate().map(|(i, &x)| key4(0x0a00_0000 | ((i as u32 % 4) << 16) | u32::from(x))).collect();
            check(&t, &routes, &probes)?;
            prop_assert_eq!(t.len(), routes.len());
            // Everything removed: no groups left in use.
            for (&(p, l), _) in routes.clone().iter() {
                prop_assert!(t.remove(p, l, &q));
            }
            t.reclaim(&q);
            prop_assert_eq!(t.groups().0, 0);
        }

        /// The same for IPv6, with prefixes nested under a few /32s.
        #[test]
        fn ipv6_matches_the_model(ops in prop::collection::vec((any::<bool>(), 0u32..3, any::<u64>(), 16u32..=128, 1u32..100), 1..80),
                                  probes in prop::collection::vec((0u32..3, any::<u64>()), 40)) {
            let q = Qsbr::new(0);
            let t = Lpm::new(128, 8192);
            let mut routes = HashMap::new();
            let base = |hi: u32, lo: u64| (0x2001_0db8u128 << 96) | (u128::from(hi) << 80) | (u128::from(lo) << 16);
            for (add, hi, lo, l, v) in ops {
                let p = base(hi, lo) & mask(l);
                if add || !routes.contains_key(&(p, l)) {
                    t.insert(p, l, v).unwrap();
                    routes.insert((p, l), v);
                } else {
                    prop_assert!(t.remove(p, l, &q));
                    routes.remove(&(p, l));
                }
            }
            let probes: Vec<u128> = probes.iter().map(|&(hi, lo)| base(hi, lo) | 0x1234).collect();
            check(&t, &routes, &probes)?;
            for (&(p, l), _) in routes.clone().iter() {
                prop_assert!(t.remove(p, l, &q));
            }
            t.reclaim(&q);
            prop_assert_eq!(t.groups().0, 0);
        }
    }

    /// Lookups from another thread while prefixes under one /24 come and go: every answer
    /// is one of the values a route covering the address ever had, never a miss or junk,
    /// and groups are reused only after the reader's grace period.
    #[test]
    fn concurrent_lookups_see_whole_entries_only() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let q = Arc::new(Qsbr::new(1));
        let t = Arc::new(Lpm::new(32, 8));
        t.insert(key4(0xc612_0100), 24, 1).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let r = {
            let (q, t, stop) = (q.clone(), t.clone(), stop.clone());
            std::thread::spawn(move || {
                q.online(0);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for host in [1u32, 77, 130, 255] {
                        let v = t.lookup4(0xc612_0100 | host);
                        assert!(matches!(v, Some(1) | Some(2) | Some(3)), "host {host}: {v:?}");
                        n += 1;
                    }
                    q.quiescent(0);
                }
                q.offline(0);
                n
            })
        };
        let put = |p: u32, l: u32, v: u32| {
            // Groups come back only after the reader's grace period: wait for one.
            while t.insert(key4(p), l, v) == Err(LpmError::Full) {
                t.reclaim(&q);
                std::thread::yield_now();
            }
        };
        for i in 0..20_000u32 {
            put(0xc612_0180, 25, 2);
            put(0xc612_0100 | (i % 256), 32, 3);
            t.remove(key4(0xc612_0100 | (i % 256)), 32, &q);
            t.remove(key4(0xc612_0180), 25, &q);
            t.reclaim(&q);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(r.join().expect("reader") > 0);
    }
}
