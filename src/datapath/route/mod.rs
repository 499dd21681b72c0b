//! The router's data plane: IPv4 and IPv6 forwarding between routed interfaces, a stage
//! per file, each deciding on a frame's first bytes so that both vhost data paths (and
//! mbufs) share it:
//!
//! - `input`: the ingress interface, header checks, martians, what the next stages need.
//! - `lookup`: the FIB (`lpm`) and the next hop or ECMP bucket (`nexthop`).
//! - `output`: the egress MTU and the frame's new front (MACs, tag, TTL, checksum).
//! - `punt`: what goes to the slow path (ARP, ND, ICMP, waiting for a neighbour), and
//!   what the slow path sends back down.
//!
//! The tables are shared with the control plane, which writes them while workers read:
//! entries are single atomics, and memory a writer unlinks is reused only after every
//! worker has passed a quiescent point (`qsbr`). Interfaces are a snapshot handed over
//! with the workers' plans ([`RouteIn`]).

pub mod iface;
pub mod input;
pub mod lookup;
pub mod lpm;
pub mod nexthop;
pub mod output;
pub mod punt;
pub mod qsbr;

use std::sync::Arc;

use crate::datapath::bridge::fwd::Heads;
use crate::datapath::stats::DropCause;
use crate::dpdk::mbuf::MAX_BURST;
use iface::Ifaces;
use input::Pkt;
use lpm::Lpm;
use nexthop::NhTable;
use output::Out;
use punt::PuntQueues;
use qsbr::Qsbr;

/// Why a frame goes to the slow path (with what it needs to know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// An ARP packet (request or reply) for this interface.
    Arp,
    /// For us: one of our addresses, multicast (neighbour discovery), link-local.
    Local,
    /// No route: ICMP destination unreachable (net).
    NoRoute,
    /// An `unreachable` route: ICMP destination unreachable (host).
    Unreachable,
    /// TTL or hop limit would reach 0: ICMP time exceeded.
    TtlExceeded,
    /// The next hop's MAC is not known yet: ask, and hold the packet meanwhile.
    Resolve(u32),
    /// A connected subnet's host not known yet (egress interface).
    Glean(u16),
    /// Larger than the egress MTU with DF set (or IPv6): ICMP with the MTU.
    TooBig(u16),
    /// Larger than the egress MTU, DF clear: fragmented by the slow path (next hop).
    Fragment(u32),
}

impl Why {
    /// Name in counters and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Why::Arp => "arp",
            Why::Local => "local",
            Why::NoRoute => "no_route",
            Why::Unreachable => "unreachable",
            Why::TtlExceeded => "ttl_exceeded",
            Why::Resolve(_) | Why::Glean(_) => "resolve",
            Why::TooBig(_) => "too_big",
            Why::Fragment(_) => "fragment",
        }
    }
}

/// A frame the fast path does not forward: to the slow path (with the ingress
/// interface), or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exc {
    Punt(Why, u16),
    Drop(DropCause),
    /// UDP to one of our VTEPs that passed the input checks (outer IPv4 header at this
    /// offset): no FIB lookup, a VTEP's address is always ours.
    Tunnel(u8),
}

/// What becomes of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fwd(Out),
    Punt(Why, u16),
    Drop(DropCause),
    /// A VXLAN frame for one of our VTEPs (its outer IPv4 header at this offset): into
    /// its bridge (`datapath::vxlan`).
    Vxlan(u8),
}

impl From<Exc> for Verdict {
    #[inline(always)]
    fn from(e: Exc) -> Verdict {
        match e {
            Exc::Punt(w, i) => Verdict::Punt(w, i),
            Exc::Drop(c) => Verdict::Drop(c),
            Exc::Tunnel(at) => Verdict::Vxlan(at),
        }
    }
}

/// The tables every worker reads and the control plane writes: one per switch.
pub struct Router {
    pub fib4: Lpm,
    pub fib6: Lpm,
    pub nh: NhTable,
    pub qsbr: Arc<Qsbr>,
    pub punt: PuntQueues,
}

/// Sizes of the router's tables.
#[derive(Debug, Clone, Copy)]
pub struct RouterSize {
    /// Second-level FIB groups per family (1 KiB each, allocated as needed).
    pub fib_groups: u32,
    pub next_hops: usize,
    pub ecmp_groups: usize,
    /// Exception-path buffers (9 KiB each).
    pub punt_buffers: usize,
}

impl Default for RouterSize {
    fn default() -> Self {
        RouterSize { fib_groups: 1 << 20, next_hops: 1 << 16, ecmp_groups: 1024, punt_buffers: 1024 }
    }
}

impl Router {
    pub fn new(size: RouterSize, qsbr: Arc<Qsbr>, workers: usize) -> Router {
        Router {
            fib4: Lpm::new(32, size.fib_groups),
            fib6: Lpm::new(128, size.fib_groups),
            nh: NhTable::new(size.next_hops, size.ecmp_groups),
            qsbr,
            punt: PuntQueues::new(size.punt_buffers, workers),
        }
    }
}

/// A routed port's action in a worker's plan: the shared tables and the interface
/// snapshot of that plan.
pub struct RouteIn {
    pub router: Arc<Router>,
    pub ifs: Arc<Ifaces>,
    /// The VXLAN tunnels that end here (None: no `--vxlan`).
    pub vxlan: Option<Arc<crate::datapath::vxlan::VxlanIn>>,
}

/// A burst's working space.
pub struct Scratch {
    pkts: [Result<Pkt, Exc>; MAX_BURST],
    pub verdicts: [Verdict; MAX_BURST],
}

impl Default for Scratch {
    fn default() -> Self {
        let e = Exc::Drop(DropCause::Runt);
        Scratch { pkts: [Err(e); MAX_BURST], verdicts: [Verdict::Drop(DropCause::Runt); MAX_BURST] }
    }
}

/// Decides a burst received on `port`: input for every frame, the burst's FIB lookups
/// (misses overlapped), then next hop and output. Leaves one verdict per frame in
/// `s.verdicts[..n]` and returns n.
#[inline(always)]
pub fn decide_burst(r: &RouteIn, port: usize, heads: &impl Heads, s: &mut Scratch) -> usize {
    let mut n = 0;
    let ifs = &*r.ifs;
    // With tunnels configured, a frame that passed the input checks and is UDP to a VTEP
    // of ours (checked on the same first bytes) is a tunnel frame: it skips the FIB.
    let tunnels = r.vxlan.as_deref();
    heads.for_each_frame(|d, len| {
        if let Some(slot) = s.pkts.get_mut(n) {
            *slot = input::input(ifs, port, d, len);
            if let (Some(t), Ok(_)) = (tunnels, &*slot) {
                let at = vxlan_end(t, d);
                if at != 0 {
                    *slot = Err(Exc::Tunnel(at));
                }
            }
            n += 1;
        }
    });
    let rt = &*r.router;
    let mut vals = [None; MAX_BURST];
    lookup::fib_burst(rt, &s.pkts[..n], &mut vals);
    for ((p, v), val) in s.pkts[..n].iter().zip(s.verdicts.iter_mut()).zip(vals) {
        let r = match p {
            Err(e) => Err(*e),
            Ok(p) => lookup::lookup(rt, p, val).and_then(|(id, hop)| output::output(ifs, p, id, &hop, v)),
        };
        if let Err(e) = r {
            *v = e.into();
        }
    }
    n
}

/// The offset of the outer IPv4 header when `d` (a frame's first bytes) is UDP to one of
/// our VTEPs' address and port (untagged or one tag; IPv4 without options, not a
/// fragment), else 0. Asked only of frames the router's input checks passed (our MAC, a
/// routed interface, a sound IPv4 header); a VTEP's address is one of the router's own
/// (checked at start), so no lookup is needed to know the frame is for us.
#[inline(always)]
fn vxlan_end(t: &crate::datapath::vxlan::VxlanIn, d: &[u8]) -> u8 {
    let be16 = |at: usize| d.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let l3 = if be16(12) == 0x8100 { 18 } else { 14 };
    if be16(l3 - 2) != 0x0800 || d.len() < l3 + 24 || d[l3] != 0x45 || d[l3 + 9] != 17 || be16(l3 + 6) & 0x3fff != 0 {
        return 0;
    }
    let dst = std::net::Ipv4Addr::new(d[l3 + 16], d[l3 + 17], d[l3 + 18], d[l3 + 19]);
    if t.ends_at(dst, be16(l3 + 22)) {
        l3 as u8
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
