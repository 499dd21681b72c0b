//! The bridge's hot path: one received burst in, one batch per egress port out.
//!
//! Per packet: read the Ethernet header, classify the VLAN on ingress (`vlan::ingress`),
//! hand the source to the MAC table's learner (`MacTable::learn`: a read, rarely an
//! enqueue — never a write to the shared table), look the destination up, then either
//! one egress port, or a flood to every other member of the VLAN. Flooding shares the
//! mbuf by reference count (no copy) where the egress ports need the frame as received;
//! an egress that must push, pop or rewrite a tag gets a private copy when the packet is
//! shared (an in-place edit would change what the other ports send).
//!
//! Counters are gathered per burst on the stack and added to the ingress/egress port's
//! single-writer counters once per burst.

use std::sync::Arc;

use crate::bridge::table::MacTable;
use crate::bridge::vlan::{self, TagEdit, VlanDrop, VlanMode};
use crate::dpdk::mbuf::{Batch, Mbuf};
use crate::dpdk::mempool::Mempool;
use crate::stats::{DropCause, PortCounters, N_CAUSES};

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
}

impl Bridge {
    /// # Panics
    /// More than 254 members or a port index ≥ MAX_PORTS (the caller validates both).
    pub fn new(table: Arc<MacTable>, members: Vec<Member>) -> Bridge {
        let mut member_of = [NOT_MEMBER; MAX_PORTS];
        for (i, m) in members.iter().enumerate() {
            member_of[m.port] = u8::try_from(i).expect("at most 254 members");
        }
        Bridge { table, members, member_of }
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
fn edit_for(m: &Member, tag: Option<u16>, vlan: u16) -> Option<TagEdit> {
    vlan::tag_edit(tag, vlan::egress(&m.vlan, vlan))
}

/// Applies `edit` to a packet this port owns exclusively (copying first if it is
/// shared); None when no mbuf or headroom was left.
#[inline]
fn apply(mut m: Mbuf, edit: TagEdit, pool: &Mempool) -> Option<Mbuf> {
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

/// Switches one burst received on member `ingress` of `br` into `outs` (one batch per
/// member, indexed like `br.members`; all empty on entry). Drops are charged to the
/// ingress port's counters `rxc` by cause; the caller sends each non-empty `outs[i]` to
/// `br.members[i].port`. `now_ms` is read once per burst by the caller.
// Eight plain arguments rather than a context struct built per burst: everything here is
// what the worker already holds.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn forward(br: &Bridge, worker: usize, ingress: usize, batch: &mut Batch, outs: &mut [Batch], pool: &Mempool, rxc: &PortCounters, now_ms: u64) {
    let me = &br.members[ingress];
    let mut drops = [0u64; N_CAUSES];
    // Within a burst, packets of one flow repeat (source, destination): remember the
    // last source handed to the learner and the last destination's lookup, and skip the
    // table for repeats (the table cannot usefully change within one burst: the learner
    // is another thread). Keys are (VLAN, MAC) packed like the table's; 0 = none.
    // The destination's whole decision (egress member and tag edit) is remembered with
    // the ingress tag it was made for.
    let (mut last_src, mut last_dst, mut last_tag, mut last_dec) = (0u64, 0u64, None, Decision::Flood);
    for m in batch.drain() {
        let d = m.data();
        if d.len() < 14 {
            drops[DropCause::Runt as usize] += 1;
            continue;
        }
        let dst: [u8; 6] = d[0..6].try_into().expect("6 bytes");
        let src: [u8; 6] = d[6..12].try_into().expect("6 bytes");
        let tag = vlan::vlan_tag(d);
        let vid = match vlan::ingress(&me.vlan, tag) {
            Ok(v) => v,
            Err(e) => {
                drops[match e {
                    VlanDrop::TaggedOnAccess => DropCause::TaggedOnAccess,
                    VlanDrop::NotAllowed => DropCause::VlanNotAllowed,
                    VlanDrop::UntaggedOnTrunk => DropCause::UntaggedOnTrunk,
                } as usize] += 1;
                continue;
            }
        };
        let (ks, kd) = (memo_key(vid, &src), memo_key(vid, &dst));
        if ks != last_src {
            br.table.learn(worker, vid, src, me.port as u16, now_ms);
            last_src = ks;
        }
        if kd != last_dst || tag != last_tag {
            last_dec = match br.table.lookup(vid, dst).map(|p| br.member(p as usize)) {
                Some(Some(p)) if p != ingress => match edit_for(&br.members[p], tag, vid) {
                    Some(e) => Decision::To(p, e),
                    // A static entry on a port outside the frame's VLAN.
                    None => Decision::Filter,
                },
                // Behind the ingress port (802.1D: the stations talk on their own
                // segment), or a stale entry for a port that left the bridge.
                Some(_) => Decision::Filter,
                None => Decision::Flood,
            };
            (last_dst, last_tag) = (kd, tag);
        }
        match last_dec {
            Decision::To(p, e) => match apply(m, e, pool) {
                Some(m) => put(&mut outs[p], m, &mut drops),
                None => drops[DropCause::NoMbuf as usize] += 1,
            },
            Decision::Filter => drops[DropCause::Filtered as usize] += 1,
            Decision::Flood => flood(br, ingress, m, tag, vid, outs, pool, &mut drops),
        }
    }
    for c in DropCause::ALL {
        if drops[c as usize] > 0 {
            rxc.drop(c, drops[c as usize]);
        }
    }
}

/// Where a destination's frames go (per burst memo).
#[derive(Clone, Copy)]
enum Decision {
    To(usize, TagEdit),
    Filter,
    Flood,
}

#[inline(always)]
fn memo_key(vid: u16, mac: &[u8; 6]) -> u64 {
    (1 << 63) | (u64::from(vid) << 48) | u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// Unknown unicast, broadcast, multicast: every other member of the VLAN, never back out
/// of the ingress port. The last member takes the original reference.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn flood(br: &Bridge, ingress: usize, m: Mbuf, tag: Option<u16>, vid: u16, outs: &mut [Batch], pool: &Mempool, drops: &mut [u64; N_CAUSES]) {
    let last = (0..br.members.len()).rev().find(|&p| p != ingress && edit_for(&br.members[p], tag, vid).is_some());
    let Some(last) = last else {
        drops[DropCause::Filtered as usize] += 1;
        return;
    };
    for (p, member) in br.members.iter().enumerate().take(last) {
        if p == ingress {
            continue;
        }
        if let Some(e) = edit_for(member, tag, vid) {
            match apply(m.share(), e, pool) {
                Some(c) => put(&mut outs[p], c, drops),
                None => drops[DropCause::NoMbuf as usize] += 1,
            }
        }
    }
    let e = edit_for(&br.members[last], tag, vid).expect("checked above");
    match apply(m, e, pool) {
        Some(c) => put(&mut outs[last], c, drops),
        None => drops[DropCause::NoMbuf as usize] += 1,
    }
}

#[inline(always)]
fn put(out: &mut Batch, m: Mbuf, drops: &mut [u64; N_CAUSES]) {
    // An egress batch gets at most one reference per received packet, and a burst is at
    // most MAX_BURST packets, so this cannot fail; if it ever did, the packet is counted.
    if out.push(m).is_err() {
        drops[DropCause::NoMbuf as usize] += 1;
    }
}
