//! Stage 2, lookup: the longest matching route of each packet's destination and the
//! next hop it names (an ECMP group's bucket chosen by the flow hash). A burst's IPv4
//! first-level entries are prefetched before any is read: with a million routes they
//! are spread over 64 MiB and each one is a cache miss of its own.

use super::input::Pkt;
use super::nexthop::{Hop, Kind};
use super::{Exc, Router, Why};
use crate::datapath::stats::DropCause;
use crate::dpdk::mbuf::MAX_BURST;

/// The FIB values of a burst: IPv4 in three passes (first-level entries hinted, then
/// read and their groups hinted, then the values), so that a burst's cache misses
/// overlap; IPv6 walks its levels per packet. `vals[k]` is meaningful where `pkts[k]`
/// is Ok.
#[inline(always)]
pub fn fib_burst(r: &Router, pkts: &[Result<Pkt, Exc>], vals: &mut [Option<u32>]) {
    let mut e = [0u32; MAX_BURST];
    for p in pkts.iter().flatten() {
        if !p.v6 {
            r.fib4.prefetch4(p.dst as u32);
        }
    }
    for (p, e) in pkts.iter().zip(e.iter_mut()) {
        if let Ok(p) = p {
            if !p.v6 {
                *e = r.fib4.step4(p.dst as u32);
            }
        }
    }
    for ((p, e), v) in pkts.iter().zip(e.iter()).zip(vals.iter_mut()) {
        if let Ok(p) = p {
            *v = if p.v6 { r.fib6.lookup(p.dst) } else { r.fib4.finish4(p.dst as u32, *e) };
        }
    }
}

/// The next hop of `p` whose FIB value is `v` (its id and what it says), or why there is
/// none to forward to.
/// A TTL that would reach 0 is caught here, after the lookup, so that a packet for one
/// of our own addresses is still delivered with TTL 1.
///
/// # Errors
/// Punted (no route, our address, unresolved neighbour, TTL) or dropped (blackhole).
#[inline(always)]
pub fn lookup(r: &Router, p: &Pkt, v: Option<u32>) -> Result<(u32, Hop), Exc> {
    let Some(v) = v else { return Err(Exc::Punt(Why::NoRoute, p.iface)) };
    let id = r.nh.resolve(v, p.hash);
    let hop = r.nh.hop(id);
    let ttl_out = p.ttl <= 1;
    match hop.kind {
        Kind::Forward if ttl_out => Err(Exc::Punt(Why::TtlExceeded, p.iface)),
        Kind::Forward => Ok((id, hop)),
        Kind::Local => Err(Exc::Punt(Why::Local, p.iface)),
        Kind::Resolve | Kind::Glean if ttl_out => Err(Exc::Punt(Why::TtlExceeded, p.iface)),
        Kind::Resolve => Err(Exc::Punt(Why::Resolve(id), p.iface)),
        Kind::Glean => Err(Exc::Punt(Why::Glean(hop.iface), p.iface)),
        Kind::Blackhole => Err(Exc::Drop(DropCause::Blackhole)),
        Kind::Unreachable => Err(Exc::Punt(Why::Unreachable, p.iface)),
        Kind::Empty => Err(Exc::Punt(Why::NoRoute, p.iface)),
    }
}
