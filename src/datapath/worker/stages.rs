//! The stages a burst goes through: each decides the fate of every frame from its first
//! bytes, then hands runs of frames with the same fate to the [`Egress`]. A stage is
//! written once, for mbufs and for frames peeked in a guest's ring alike ([`Frames`]);
//! a new service (conntrack, NAT, a firewall) is another function here, not another
//! path through the worker.

use crate::datapath::bridge::fwd::{self, Bridge, Decision, MAX_PORTS};
use crate::datapath::bridge::vlan::TagEdit;
use crate::datapath::route::{self, RouteIn, Verdict};
use crate::datapath::stats::{DropCause, PortCounters};
use crate::datapath::vring::port::Edit;
use crate::datapath::vxlan::{self, Staged};
use crate::dpdk::mbuf::Batch;

use super::egress::{Egress, Frames};

/// The bridge: frames that entered by member `member` of `br` (received on its port, or
/// unwrapped from its tunnel) are classified (VLAN, learning, lookup: `fwd`), cut into
/// runs of one decision, and each run goes to its member, floods, or is dropped by
/// cause on the ingress port.
///
/// Two passes. The first reads each header (for mbufs the bytes the rx copy just wrote,
/// so in cache; for a guest's frames the copy the peek took) as one 16-byte integer,
/// classifies its VLAN, checks its source with the learner, looks its destination up,
/// and records a run key: what the frame's decision depends on. The second cuts the
/// burst into runs of equal keys and decides once per run (the last decision is also
/// remembered from burst to burst): in a two-port bridge usually one run, the whole
/// burst, whose mbufs move to their port's batch as one pointer copy.
///
/// Measured (`scripts/fwd-cost.sh`, A/B builds): one run key stored as a plain integer
/// taken from the 16-byte load (two store-forwarding stalls gone), the table work in the
/// first pass and the second reduced to comparing keys, and a whole burst sent as
/// received took the bridge's extra cost from 51 to about 22 cycles per packet with 1024
/// flows and from 9 to about 6 with one. Tried and not kept: a prefetch of both table
/// lines a burst ahead (DPDK l3fwd's pattern; no gain, twice: the time goes to the ~100
/// instructions per new header and their dependency chain, not to cache misses), and a
/// per-worker conversation cache.
// Out of line: inside the worker's loop the first pass's per-frame closure was left as
// a call per frame (perf: 12 % of the worker's samples in the closure), here it is
// folded into the loop.
#[inline(never)]
pub fn bridge(br: &Bridge, worker: usize, member: usize, f: &mut Frames, scratch: &mut fwd::Scratch, now_ms: u64, eg: &mut Egress) {
    let k = match f {
        Frames::Mbufs(b, _) => fwd::classify_burst(br, worker, member, &**b, scratch, now_ms),
        Frames::Peeked(rq) => fwd::classify_burst(br, worker, member, &rq.peeked_heads(), scratch, now_ms),
    };
    let stats = eg.stats;
    let rxc = &stats.ports[br.members[member].port];
    let mut at = 0;
    for &(len, dec) in fwd::plan_runs(br, member, scratch, k) {
        match dec {
            Decision::To(m, e) => eg.to(f, at, len, br.members[usize::from(m)].port, |_| Edit::Tag(e)),
            Decision::Flood { tag, vid } => flood(br, member, tag, vid, f, at, len, eg, rxc),
            Decision::Drop(c) => {
                f.drop(len);
                rxc.drop(c, len as u64);
            }
        }
        at += len;
    }
}

/// Unknown unicast, broadcast, multicast: every other member of the VLAN, each with its
/// tag edit, never back out of the ingress member.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn flood(br: &Bridge, member: usize, tag: fwd::RawTag, vid: u16, f: &mut Frames, at: usize, n: usize, eg: &mut Egress, rxc: &PortCounters) {
    let mut dst = [(0usize, TagEdit::None); MAX_PORTS];
    let mut k = 0;
    for (i, m) in br.members.iter().enumerate() {
        if i != member && k < dst.len() {
            if let Some(e) = fwd::edit_for(m, fwd::tag_of(tag), vid) {
                dst[k] = (m.port, e);
                k += 1;
            }
        }
    }
    eg.flood(f, at, n, &dst[..k], rxc);
}

/// The router: a verdict per frame (`route::decide_burst`: checks, lookup, next hop),
/// then each run of equal fate forwarded with its new fronts, punted to the slow path,
/// dropped by cause, or unwrapped (VXLAN to this host) into `staged`, whose frames then
/// go through their bridges ([`tunnels`]).
// Out of line, as `bridge` (its closures fold into its loops).
#[inline(never)]
pub fn route(r: &RouteIn, port: usize, f: &mut Frames, scratch: &mut route::Scratch, staged: &mut Staged, eg: &mut Egress) {
    let k = match f {
        Frames::Mbufs(b, _) => route::decide_burst(r, port, &**b, scratch),
        Frames::Peeked(rq) => route::decide_burst(r, port, &rq.peeked_heads(), scratch),
    };
    let v = &scratch.verdicts[..k];
    let stats = eg.stats;
    let rxc = &stats.ports[port];
    let mut at = 0;
    while at < k {
        // A run of frames with the same fate (forwarded to one port, punted, or
        // dropped for one cause) is handled at once.
        let run = 1 + v[at + 1..].iter().take_while(|x| same_run(x, &v[at])).count();
        match v[at] {
            Verdict::Fwd(o) => {
                let front = |i: usize| match &v[i] {
                    Verdict::Fwd(o) => Edit::Front(&o.front),
                    _ => Edit::Tag(TagEdit::None),
                };
                eg.to(f, at, run, usize::from(o.port), front);
            }
            Verdict::Punt(why0, iface0) => {
                let to = |i: usize| match v[i] {
                    Verdict::Punt(why, iface) => (why, iface),
                    _ => (why0, iface0),
                };
                f.punt(at, run, port as u16, to, &r.router, eg.spare, rxc);
            }
            Verdict::Drop(c) => {
                f.drop(run);
                rxc.drop(c, run as u64);
            }
            Verdict::Vxlan(_) => match r.vxlan.as_deref() {
                Some(t) => {
                    let ports = &stats.ports;
                    f.each_mbuf(at, run, eg.pool, eg.spare, rxc, |m, i| {
                        let l3 = if let Verdict::Vxlan(l3) = v[i] { usize::from(l3) } else { 14 };
                        vxlan::decap_into(t, m, l3, rxc, ports, staged);
                    });
                }
                // Not reached (only a router with tunnels says Vxlan); counted all the same.
                None => {
                    f.drop(run);
                    rxc.drop(DropCause::VxlanUnknown, run as u64);
                }
            },
        }
        at += run;
    }
}

/// Whether verdict `x` continues the run that `first` began: forwarded to the same
/// port, or punted, or dropped for the same cause.
#[inline(always)]
fn same_run(x: &Verdict, first: &Verdict) -> bool {
    match (x, first) {
        (Verdict::Fwd(a), Verdict::Fwd(b)) => a.port == b.port,
        (Verdict::Punt(..), Verdict::Punt(..)) => true,
        (Verdict::Drop(a), Verdict::Drop(b)) => a == b,
        (Verdict::Vxlan(_), Verdict::Vxlan(_)) => true,
        _ => false,
    }
}

/// The frames the router unwrapped into `staged`, into their bridges: a run of frames
/// from one VTEP at a time, through `batch` (free by then), as that tunnel member's
/// ingress.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn tunnels(
    r: &RouteIn,
    staged: &mut Staged,
    batch: &mut Batch,
    worker: usize,
    scratch: &mut fwd::Scratch,
    now_ms: u64,
    eg: &mut Egress,
) {
    let Some(t) = r.vxlan.as_deref() else {
        staged.batch.drop_all();
        return;
    };
    let n = staged.batch.len();
    let mut i = 0;
    while i < n {
        let k = staged.from[i];
        let run = 1 + staged.from[i + 1..n].iter().take_while(|&&x| x == k).count();
        staged.batch.move_front(run, batch);
        let rem = &t.remotes[usize::from(k)];
        let bytes = batch.bytes();
        let mut f = Frames::Mbufs(batch, bytes);
        bridge(&rem.bridge, worker, rem.member, &mut f, scratch, now_ms, eg);
        let stats = eg.stats;
        f.finish(&stats.ports[rem.bridge.members[rem.member].port]);
        i += run;
    }
    staged.batch.drop_all();
}
