//! The bridge's hot path: one received burst in, one batch per egress port out.
//!
//! Per packet: read the Ethernet header, classify the VLAN on ingress (`vlan::ingress`),
//! hand the source to the MAC table's learner (`MacTable::learn_with`: a read, rarely an
//! enqueue — never a write to the shared table), look the destination up, then either
//! one egress port, or a flood to every other member of the VLAN. Flooding shares the
//! mbuf by reference count (no copy) where the egress ports need the frame as received;
//! an egress that must push, pop or rewrite a tag gets a private copy when the packet is
//! shared (an in-place edit would change what the other ports send).
//!
//! Counters are gathered per burst on the stack and added to the ingress/egress port's
//! single-writer counters once per burst.

use std::sync::Arc;

use crate::datapath::bridge::table::{station_key, LearnCheck, MacTable, PortNo, FLOOD};
use crate::datapath::bridge::vlan::{self, TagEdit, VlanDrop, VlanMode};
use crate::datapath::stats::DropCause;
use crate::dpdk::mbuf::{Batch, Mbuf, MAX_BURST};
use crate::dpdk::mempool::Mempool;

/// One member port of a bridge.
pub struct Member {
    /// Index into the switch's port table.
    pub port: usize,
    pub vlan: VlanMode,
}

/// Largest port index a bridge can map (the switch's port table size).
pub const MAX_PORTS: usize = 64;
const NOT_MEMBER: u8 = u8::MAX;

/// A bridge as the workers see it: immutable; a membership change publishes a new one
/// that shares the same MAC table (which stores switch port indices, not member slots).
pub struct Bridge {
    pub table: Arc<MacTable>,
    pub members: Vec<Member>,
    /// Switch port index → member index (NOT_MEMBER if the port is not in the bridge).
    member_of: [u8; MAX_PORTS],
    /// Unique for the process's life: names this exact configuration in a worker's
    /// decision memo (a new `Bridge` at a freed one's address must not match it).
    id: u64,
}

impl Bridge {
    /// # Panics
    /// More than 254 members or a port index ≥ MAX_PORTS (the caller validates both).
    pub fn new(table: Arc<MacTable>, members: Vec<Member>) -> Bridge {
        let mut member_of = [NOT_MEMBER; MAX_PORTS];
        for (i, m) in members.iter().enumerate() {
            member_of[m.port] = u8::try_from(i).expect("at most 254 members");
        }
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Bridge { table, members, member_of, id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }

    /// The member index of switch port `port`, if it belongs to this bridge.
    #[inline(always)]
    pub fn member(&self, port: usize) -> Option<usize> {
        match self.member_of.get(port) {
            Some(&m) if m != NOT_MEMBER => Some(m as usize),
            _ => None,
        }
    }
}

/// What to do with a packet on one egress member.
#[inline(always)]
pub fn edit_for(m: &Member, tag: Option<u16>, vlan: u16) -> Option<TagEdit> {
    vlan::tag_edit(tag, vlan::egress(&m.vlan, vlan))
}

/// Applies `edit` to a packet this port owns exclusively (copying first if it is
/// shared); None when no mbuf or headroom was left.
#[inline]
pub fn apply_tag(mut m: Mbuf, edit: TagEdit, pool: &Mempool) -> Option<Mbuf> {
    if edit == TagEdit::None {
        return Some(m);
    }
    if m.data_mut().is_none() {
        m = m.deep_copy(pool)?;
    }
    match edit {
        TagEdit::None => {}
        TagEdit::Push(v) => vlan::push_in_place(m.prepend(vlan::TAG_LEN as u16)?, v).ok()?,
        TagEdit::Pop => {
            vlan::pop_in_place(m.data_mut()?).ok()?;
            if !m.adj(vlan::TAG_LEN as u16) {
                return None;
            }
        }
        TagEdit::Rewrite(v) => vlan::rewrite_in_place(m.data_mut()?, v).ok()?,
    }
    Some(m)
}

/// Per-worker scratch space for [`forward`]: what the first pass found about each packet
/// of a burst (allocated once; a burst never grows it), and the last decision made with
/// what it was made for, carried from burst to burst.
pub struct Scratch {
    keys: Box<[RunKey]>,
    memo: Memo,
    /// The second pass's runs: (length, decision).
    runs: Box<[(usize, Decision)]>,
}

/// A decision and what it is a function of: the bridge configuration, the ingress
/// member and the run key.
#[derive(Clone, Copy)]
struct Memo {
    bridge: u64,
    ingress: usize,
    key: RunKey,
    dec: Decision,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            keys: vec![RunKey::NONE; MAX_BURST].into_boxed_slice(),
            // RunKey::NONE is no packet's key.
            memo: Memo { bridge: u64::MAX, ingress: 0, key: RunKey::NONE, dec: Decision::Drop(DropCause::Runt) },
            runs: vec![(0, Decision::Drop(DropCause::Runt)); MAX_BURST].into_boxed_slice(),
        }
    }
}

/// A frame's 802.1Q tag as received, in one integer: its VID (0-4095; 0 a priority
/// tag) or [`NO_TAG`]. (An `Option<u16>` is a pair the compiler may assemble in memory
/// and copy with one wide load; see [`RunKey`].)
pub type RawTag = u16;
const NO_TAG: RawTag = u16::MAX;

#[inline(always)]
pub fn tag_of(t: RawTag) -> Option<u16> {
    (t != NO_TAG).then_some(t)
}

/// Where a run of packets goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// To one member, with this tag edit.
    To(u8, TagEdit),
    Flood {
        tag: RawTag,
        vid: u16,
    },
    Drop(DropCause),
}

/// Where the first pass reads each frame's first bytes from: a burst of mbufs, or the
/// header copies the own vhost path took from guest memory.
pub trait Heads {
    /// Each frame's first bytes and its length.
    fn for_each_frame(&self, f: impl FnMut(&[u8], u32));

    #[inline(always)]
    fn for_each_head(&self, mut f: impl FnMut(&[u8])) {
        self.for_each_frame(|d, _| f(d));
    }
}

impl Heads for Batch {
    #[inline(always)]
    fn for_each_frame(&self, f: impl FnMut(&[u8], u32)) {
        self.for_each(f);
    }
}

/// The first pass over a burst: for each frame (at most MAX_BURST) its [`RunKey`] in
/// `scratch`, with learning requests on the way (see [`forward`]). Returns the count.
#[inline(always)]
pub fn classify_burst(br: &Bridge, worker: usize, ingress: usize, heads: &impl Heads, scratch: &mut Scratch, now_ms: u64) -> usize {
    let me = &br.members[ingress];
    let table = &*br.table;
    // A fixed array and a local count (not a Vec's length in memory, which each push
    // would store and the next reload).
    let keys = &mut scratch.keys[..];
    let mut n = 0usize;
    let mut prev: Option<u128> = None;
    let mut key = RunKey::NONE;
    let learn = table.learn_check(worker, me.port as u16, now_ms);
    // The last destination's key and the port it was learned on (no frame's destination
    // has key 0).
    let mut dst = (0u64, FLOOD);
    heads.for_each_head(|d| {
        // A burst holds at most MAX_BURST packets, the array's length.
        let Some(slot) = keys.get_mut(n) else { return };
        n += 1;
        match d.get(..HEAD) {
            Some(h) => {
                let h = Head::from_le_bytes(h.try_into().expect("16 bytes"));
                // The same 16 bytes as the packet before (addresses, ethertype, and the
                // tag or the next header's first bytes): the same key.
                if prev != Some(h) {
                    prev = Some(h);
                    key = classify(me, table, &learn, h, true, &mut dst);
                }
            }
            None => {
                prev = None;
                key = classify_short(me, table, &learn, d, &mut dst);
            }
        }
        *slot = key;
    });
    n
}

/// The second pass over the first `n` keys: runs of equal keys, each with its decision
/// (decided once per run, and most often not at all: the last decision is remembered
/// from burst to burst), as (length, decision) in order; neighbouring runs with the same
/// decision are one (many flows to one member: one run, the whole burst at best).
#[inline(always)]
pub fn plan_runs<'s>(br: &Bridge, ingress: usize, scratch: &'s mut Scratch, n: usize) -> &'s [(usize, Decision)] {
    let Scratch { keys, memo, runs } = scratch;
    let n = n.min(keys.len());
    let (mut r, mut start) = (0usize, 0usize);
    let mut run_key = RunKey::NONE;
    // Per packet one compare; a run's length is written when the next one starts.
    for (i, &k) in keys[..n].iter().enumerate() {
        if k != run_key {
            if r > 0 {
                runs[r - 1].0 = i - start;
            }
            if (memo.bridge, memo.ingress, memo.key) != (br.id, ingress, k) {
                *memo = Memo { bridge: br.id, ingress, key: k, dec: decide(br, ingress, k) };
            }
            run_key = k;
            if r > 0 && runs[r - 1].1 == memo.dec {
                continue;
            }
            runs[r] = (0, memo.dec);
            (r, start) = (r + 1, i);
        }
    }
    if r > 0 {
        runs[r - 1].0 = n - start;
    }
    &runs[..r]
}

/// The header bytes the first pass reads: the MAC addresses, the ethertype and the
/// tag's TCI if there is one.
const HEAD: usize = 16;

/// A frame's first [`HEAD`] bytes as one little-endian integer: byte i is bits 8i..8i+8.
type Head = u128;

/// The first pass for one frame whose first 16 bytes are `h`: classifies its VLAN,
/// hands its source to the learner, looks its destination up (unless its key is
/// `dst.0`, the last one's) and returns its [`RunKey`] — or why the frame is dropped.
/// `tag_complete`: the frame is long enough to hold a whole tag after the addresses.
/// Integer shifts and masks on one 16-byte load: the keys take the addresses in wire
/// order (see `table::station_key`).
#[inline(always)]
fn classify(me: &Member, table: &MacTable, learn: &LearnCheck, h: Head, tag_complete: bool, dst: &mut (u64, PortNo)) -> RunKey {
    // Bytes 12..14, the ethertype, read little-endian: 0x8100 on the wire is 0x0081.
    let tagged = tag_complete && (h >> 96) as u16 == vlan::TPID.swap_bytes();
    // Bytes 14..16, the TCI, big-endian on the wire.
    let tag = tagged.then(|| ((h >> 112) as u16).swap_bytes() & 0x0fff);
    let vid = match vlan::ingress(&me.vlan, tag) {
        Ok(vid) => vid,
        Err(e) => return RunKey::drop(cause_of(e)),
    };
    table.learn_with(&table.station_of(station_key(vid, (h >> 48) as u64)), learn);
    let to = station_key(vid, h as u64);
    if to != dst.0 {
        *dst = (to, table.lookup_at(&table.station_of(to)).unwrap_or(FLOOD));
    }
    RunKey::to(dst.1, tag.unwrap_or(NO_TAG))
}

/// The counter an ingress VLAN drop is charged to.
fn cause_of(e: VlanDrop) -> DropCause {
    match e {
        VlanDrop::TaggedOnAccess => DropCause::TaggedOnAccess,
        VlanDrop::NotAllowed => DropCause::VlanNotAllowed,
        VlanDrop::UntaggedOnTrunk => DropCause::UntaggedOnTrunk,
    }
}

/// [`classify`] for a frame shorter than [`HEAD`]: a runt below the addresses and
/// ethertype, else an untagged frame (its tag could not be whole).
#[cold]
fn classify_short(me: &Member, table: &MacTable, learn: &LearnCheck, d: &[u8], dst: &mut (u64, PortNo)) -> RunKey {
    if d.len() < 14 {
        return RunKey::drop(DropCause::Runt);
    }
    let mut h = [0u8; HEAD];
    h[..d.len()].copy_from_slice(d);
    classify(me, table, learn, Head::from_le_bytes(h), false, dst)
}

/// All the first pass records about a packet, and all its decision depends on besides
/// the ingress member, in one integer: for a classified packet the port its destination
/// was learned on (or [`FLOOD`]) and its tag as received (the VLAN follows from the tag
/// and the ingress port's mode); for a packet the first pass dropped, the cause.
///
/// One 8-byte store per packet. (The first pass's record was a struct of four plain
/// fields — the same speed, measured, and three more stores — and before that an enum
/// built whole, which the compiler assembled on the stack with narrow stores and copied
/// with one 16-byte load that the CPU cannot forward from several stores: a stall of
/// ~15 cycles per packet, 70 % of the bridge's samples with one flow. Measured here with
/// perf; AMD and Intel optimization guides, "store-to-load forwarding".)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunKey(u64);

impl RunKey {
    /// Matches no packet.
    const NONE: RunKey = RunKey(u64::MAX);

    #[inline(always)]
    fn to(port: PortNo, tag: RawTag) -> RunKey {
        RunKey(u64::from(port) << 16 | u64::from(tag))
    }

    #[inline(always)]
    fn drop(c: DropCause) -> RunKey {
        RunKey(DROPPED | c as u64)
    }

    /// The port and tag of a classified packet's key; the cause of a dropped one's.
    #[inline(always)]
    fn parts(self) -> Result<(PortNo, RawTag), DropCause> {
        if self.0 & DROPPED != 0 {
            Err(DropCause::ALL.get(self.0 as u16 as usize).copied().unwrap_or(DropCause::NoMbuf))
        } else {
            Ok(((self.0 >> 16) as PortNo, self.0 as RawTag))
        }
    }
}

/// The bit that marks a [`RunKey`] as a drop (above a port and a tag's 32 bits).
const DROPPED: u64 = 1 << 32;

/// The decision for the packets of key `key` received on member `ingress`: one member
/// (with its tag edit), a flood, or a drop.
#[inline(never)]
fn decide(br: &Bridge, ingress: usize, key: RunKey) -> Decision {
    let (port, tag) = match key.parts() {
        Ok(p) => p,
        Err(c) => return Decision::Drop(c),
    };
    // The first pass classified this tag on this port already; the same call again gives
    // the same VLAN (an error cannot happen: such a packet's key is a drop).
    let Ok(vid) = vlan::ingress(&br.members[ingress].vlan, tag_of(tag)) else {
        return Decision::Drop(DropCause::Filtered);
    };
    if port == FLOOD {
        return Decision::Flood { tag, vid };
    }
    match br.member(port as usize) {
        Some(m) if m != ingress => match edit_for(&br.members[m], tag_of(tag), vid) {
            Some(e) => Decision::To(m as u8, e),
            // A static entry on a port outside the frame's VLAN.
            None => Decision::Drop(DropCause::Filtered),
        },
        // Behind the ingress port (802.1D: the stations talk on their own segment), or a
        // stale entry for a port that left the bridge.
        _ => Decision::Drop(DropCause::Filtered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::bridge::table::DEFAULT_AGING_MS;

    const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0d];
    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];
    const GROUP: [u8; 6] = [0x01, 0, 0x5e, 0, 0, 0x01];

    /// The first pass as `forward` runs it on one frame.
    fn first_pass(me: &Member, table: &MacTable, d: &[u8]) -> RunKey {
        let mut dst = (0, FLOOD);
        let learn = table.learn_check(0, me.port as u16, 1);
        match d.get(..HEAD) {
            Some(h) => classify(me, table, &learn, Head::from_le_bytes(h.try_into().unwrap()), true, &mut dst),
            None => classify_short(me, table, &learn, d, &mut dst),
        }
    }

    /// The first pass's integer parsing of the header agrees with the byte-wise
    /// reference (`vlan::vlan_tag`, `vlan::ingress`, keys from the MAC octets) for every
    /// port mode, ethertype, TCI and frame length around the tag's end, and the key
    /// carries the port the destination was learned on.
    #[test]
    fn classify_agrees_with_the_bytewise_reference() {
        let table = MacTable::new(1024, DEFAULT_AGING_MS, 1);
        // The destination sits behind port 7 in VLANs 0, 10 and 30; not in VLAN 20.
        for v in [0, 10, 30] {
            table.add_static(v, DST, 7).unwrap();
        }
        let mut checked = 0;
        for mode in ["access:0", "access:10", "trunk:10,20", "trunk:10,20,native=30", "trunk:all"] {
            let me = Member { port: 3, vlan: mode.parse().unwrap() };
            for ethertype in [0x0800u16, 0x8100, 0x88a8, 0x0081] {
                for tci in [0x0000u16, 0x000a, 0x0014, 0xe00a, 0x101e, 0x0fff] {
                    for dst_mac in [DST, GROUP] {
                        let mut f = [dst_mac, SRC].concat();
                        f.extend_from_slice(&ethertype.to_be_bytes());
                        f.extend_from_slice(&tci.to_be_bytes());
                        f.resize(60, 0);
                        for len in [60, 17, 16, 15, 14, 13, 0] {
                            let d = &f[..len];
                            let p = first_pass(&me, &table, d);
                            let why = format!("{mode} ethertype {ethertype:#06x} tci {tci:#06x} len {len} dst {dst_mac:02x?}");
                            if len < 14 {
                                assert_eq!(p.parts(), Err(DropCause::Runt), "{why}");
                                continue;
                            }
                            let tag = vlan::vlan_tag(d);
                            match vlan::ingress(&me.vlan, tag) {
                                Ok(vid) => {
                                    let port = if dst_mac == DST && [0, 10, 30].contains(&vid) { 7 } else { FLOOD };
                                    assert_eq!(p.parts(), Ok((port, tag.unwrap_or(NO_TAG))), "{why}");
                                }
                                Err(e) => assert_eq!(p.parts(), Err(cause_of(e)), "{why}"),
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 4 * 6 * 2 * 5);
        // Every classified frame asked for its source to be learned (one request per
        // VLAN it was classified into; repeats within a drain are deduplicated).
        assert!(table.queued(0) > 0);
        let r = table.maintain(2);
        assert_eq!(r.learned as usize, table.counters().entries as usize - 3, "{r:?}");
        for v in [0, 10, 20, 30] {
            assert_eq!(table.lookup(v, SRC), Some(3), "source learned in VLAN {v}");
        }
    }
}
