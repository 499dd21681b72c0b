//! Counters: per worker, single writer, cache-line aligned; summed by the main thread.
//!
//! A worker updates its own counters with a relaxed load and store (no locked
//! instruction); readers may see a value one burst old, never a torn one. Port counters
//! live per (worker, port) so that two workers never write the same line.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crossbeam::utils::CachePadded;

/// Why a packet was dropped inside pmdswitch. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The egress queue stayed full through `--tx-retries` retries.
    TxFull = 0,
    /// The egress port had no device attached (vhost peer not connected).
    PortDown = 1,
    /// The ingress port has no forwarding rule.
    Unrouted = 2,
    /// Bridge, ingress: a frame tagged with another VLAN on an access port.
    TaggedOnAccess = 3,
    /// Bridge, ingress: a tagged frame of a VLAN the trunk does not carry.
    VlanNotAllowed = 4,
    /// Bridge, ingress: an untagged frame on a trunk without a native VLAN.
    UntaggedOnTrunk = 5,
    /// Bridge: the destination is behind the ingress port (802.1D filtering), or a static
    /// entry points at a port outside the frame's VLAN.
    Filtered = 6,
    /// No mbuf or headroom for a copy or a VLAN tag push.
    NoMbuf = 7,
    /// Shorter than an Ethernet header.
    Runt = 8,
    /// Own vhost path: a descriptor chain that breaks a rule (index, loop, indirect,
    /// direction, too many buffers), or a header shorter than virtio-net's.
    GuestBadChain = 9,
    /// Own vhost path: a buffer outside the guest's memory.
    GuestBadAddr = 10,
    /// Own vhost path: a frame longer than handled, or than the receiver's buffers.
    GuestOversize = 11,
    /// Router: a frame for another station (unicast to a MAC not the interface's), or a
    /// VLAN with no sub-interface, or broadcast/multicast the router does not take.
    NotForUs = 12,
    /// Router: an IPv4/IPv6 header that fails RFC 1812 §5.2.2's checks (version, header
    /// length, total length against the frame).
    IpHeader = 13,
    /// Router: an IPv4 header checksum that does not add up.
    IpChecksum = 14,
    /// Router: a source or destination that must not be forwarded (loopback, "this
    /// network", multicast or class E sources; RFC 1812 §5.3.7).
    Martian = 15,
    /// Router: a `blackhole` route.
    Blackhole = 16,
    /// Router: an ethertype it does not route (neither IPv4, IPv6 nor ARP).
    Unsupported = 17,
    /// Router: the slow path's queue or buffers were full (an exception flood).
    PuntFull = 18,
    /// VXLAN: the route or the next hop's MAC towards the remote VTEP is not known yet.
    VxlanUnresolved = 19,
    /// VXLAN: the frame, wrapped, is larger than the underlay's MTU (inner MTU = the
    /// underlay's minus 50).
    VxlanTooBig = 20,
    /// VXLAN: a received tunnel frame that is short or has the I flag clear (RFC 7348 §5).
    VxlanBad = 21,
    /// VXLAN: a received tunnel frame of a VNI or from a VTEP we do not know.
    VxlanUnknown = 22,
    /// Own vhost path: a virtio-net header that asks for what the guest did not
    /// negotiate, or whose offsets, GSO kind or segment size do not fit the frame it
    /// came with (`vring::offload::check`).
    BadVnetHdr = 23,
}

/// Number of drop causes (the length of every drops array).
pub const N_CAUSES: usize = 24;

impl DropCause {
    pub const ALL: [DropCause; N_CAUSES] = [
        DropCause::TxFull,
        DropCause::PortDown,
        DropCause::Unrouted,
        DropCause::TaggedOnAccess,
        DropCause::VlanNotAllowed,
        DropCause::UntaggedOnTrunk,
        DropCause::Filtered,
        DropCause::NoMbuf,
        DropCause::Runt,
        DropCause::GuestBadChain,
        DropCause::GuestBadAddr,
        DropCause::GuestOversize,
        DropCause::NotForUs,
        DropCause::IpHeader,
        DropCause::IpChecksum,
        DropCause::Martian,
        DropCause::Blackhole,
        DropCause::Unsupported,
        DropCause::PuntFull,
        DropCause::VxlanUnresolved,
        DropCause::VxlanTooBig,
        DropCause::VxlanBad,
        DropCause::VxlanUnknown,
        DropCause::BadVnetHdr,
    ];

    /// The name used in tables and JSON (`drops.CAUSE`).
    pub fn name(self) -> &'static str {
        match self {
            DropCause::TxFull => "tx_full",
            DropCause::PortDown => "port_down",
            DropCause::Unrouted => "unrouted",
            DropCause::TaggedOnAccess => "tagged_on_access",
            DropCause::VlanNotAllowed => "vlan_not_allowed",
            DropCause::UntaggedOnTrunk => "untagged_on_trunk",
            DropCause::Filtered => "filtered",
            DropCause::NoMbuf => "no_mbuf",
            DropCause::Runt => "runt",
            DropCause::GuestBadChain => "guest_bad_chain",
            DropCause::GuestBadAddr => "guest_bad_addr",
            DropCause::GuestOversize => "guest_oversize",
            DropCause::NotForUs => "not_for_us",
            DropCause::IpHeader => "ip_header",
            DropCause::IpChecksum => "ip_checksum",
            DropCause::Martian => "martian",
            DropCause::Blackhole => "blackhole",
            DropCause::Unsupported => "unsupported",
            DropCause::PuntFull => "punt_full",
            DropCause::VxlanUnresolved => "vxlan_unresolved",
            DropCause::VxlanTooBig => "vxlan_too_big",
            DropCause::VxlanBad => "vxlan_bad",
            DropCause::VxlanUnknown => "vxlan_unknown",
            DropCause::BadVnetHdr => "bad_vnet_hdr",
        }
    }
}

/// Single-writer add: the owning worker is the only writer, so load+store is exact.
#[inline(always)]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One worker's view of one port. rx/unrouted are charged to the ingress port; tx and
/// tx-side drops (tx_full, port_down) to the egress port.
#[derive(Default)]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub drops: [AtomicU64; N_CAUSES],
    /// Own vhost path: frames left in the ingress ring because the egress guest had no
    /// buffers (back-pressure: they are received later, not dropped).
    pub held: AtomicU64,
    /// Own vhost path: vrings found broken (the guest moved an index by more than the
    /// ring's size): not served again until the guest resets the device.
    pub rings_broken: AtomicU64,
    /// Own vhost path: bursts cut short because the guest made them cost too much — more
    /// descriptors walked than twice the ring's size, or its available index moved under
    /// every fresh look: the rest waits for the next burst (a noisy guest, made visible).
    pub ring_capped: AtomicU64,
    /// Router: frames handed to the slow path (ARP, ND, ICMP to answer or generate,
    /// packets waiting for a neighbour); what became of them is in the router's counters.
    pub punted: AtomicU64,
}

impl PortCounters {
    #[inline(always)]
    pub fn drop(&self, cause: DropCause, n: u64) {
        bump(&self.drops[cause as usize], n);
    }
}

#[derive(Default)]
pub struct WorkerCounters {
    /// TSC cycles of loop iterations that moved at least one packet.
    pub busy_cycles: AtomicU64,
    /// TSC cycles of iterations that found every rx queue empty.
    pub idle_cycles: AtomicU64,
    /// Packets received (and so processed) by this worker.
    pub packets: AtomicU64,
    /// Iterations that moved at least one packet: packets / busy_polls is the mean burst,
    /// which sets how far per-burst costs (ring indexes, publishes) are shared.
    pub busy_polls: AtomicU64,
    /// Adaptive idle: sleeps taken, and how many a guest kick ended.
    pub sleeps: AtomicU64,
    pub kick_wakeups: AtomicU64,
    /// Reload points passed (a new plan, a device attached, changed or gone): what
    /// device changes cost this worker.
    pub reloads: AtomicU64,
    /// What the worker is doing ([`Phase`]), for the watchdog's report: stored only
    /// when it changes on a rare path (reload, nap, exit), never per pass.
    pub phase: AtomicU8,
}

/// What a worker is doing, as the watchdog reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Polling = 1,
    Reloading = 2,
    Napping = 3,
    Stopped = 4,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Polling => "polling its rx queues",
            Phase::Reloading => "taking a new poll list at its reload point",
            Phase::Napping => "sleeping in adaptive idle",
            Phase::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Polling,
            2 => Phase::Reloading,
            3 => Phase::Napping,
            4 => Phase::Stopped,
            _ => Phase::Starting,
        }
    }
}

/// Per rx queue counters (single writer: the worker that polls it), like OVS's
/// `pmd-rxq-show`: what the queue brought in and the cycles spent on it.
#[derive(Default)]
pub struct RxqCounters {
    pub packets: AtomicU64,
    pub busy_cycles: AtomicU64,
}

pub struct WorkerStats {
    pub core: usize,
    pub own: CachePadded<WorkerCounters>,
    pub ports: Vec<CachePadded<PortCounters>>,
}

impl WorkerStats {
    /// Moves on after every poll pass (busy or idle cycles are added then).
    pub fn heartbeat(&self) -> u64 {
        self.own.busy_cycles.load(Relaxed).wrapping_add(self.own.idle_cycles.load(Relaxed))
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.own.phase.load(Relaxed))
    }

    /// The worker's own thread only (single writer).
    pub fn set_phase(&self, p: Phase) {
        self.own.phase.store(p as u8, Relaxed);
    }

    pub fn new(core: usize, n_ports: usize) -> WorkerStats {
        WorkerStats {
            core,
            own: CachePadded::new(WorkerCounters::default()),
            ports: (0..n_ports).map(|_| CachePadded::new(PortCounters::default())).collect(),
        }
    }
}

/// Plain totals of one port, summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; N_CAUSES],
    pub held: u64,
    pub rings_broken: u64,
    pub ring_capped: u64,
    pub punted: u64,
}

impl PortTotals {
    /// Counts since `base` (a port index reused by a later port starts from its base).
    pub fn since(&self, base: &PortTotals) -> PortTotals {
        let mut t = *self;
        t.rx_packets -= base.rx_packets;
        t.rx_bytes -= base.rx_bytes;
        t.tx_packets -= base.tx_packets;
        t.tx_bytes -= base.tx_bytes;
        for (d, b) in t.drops.iter_mut().zip(base.drops) {
            *d -= b;
        }
        t.held -= base.held;
        t.rings_broken -= base.rings_broken;
        t.ring_capped -= base.ring_capped;
        t.punted -= base.punted;
        t
    }

    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerTotals {
    pub core: usize,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub packets: u64,
    pub busy_polls: u64,
    pub sleeps: u64,
    pub kick_wakeups: u64,
    pub reloads: u64,
}

impl WorkerTotals {
    pub fn cycles_per_packet(&self) -> f64 {
        if self.packets == 0 {
            0.0
        } else {
            self.busy_cycles as f64 / self.packets as f64
        }
    }

    pub fn busy_fraction(&self) -> f64 {
        let all = self.busy_cycles + self.idle_cycles;
        if all == 0 {
            0.0
        } else {
            self.busy_cycles as f64 / all as f64
        }
    }
}

pub fn port_totals(workers: &[std::sync::Arc<WorkerStats>], port: usize) -> PortTotals {
    let mut t = PortTotals::default();
    for w in workers {
        let c = &w.ports[port];
        t.rx_packets += c.rx_packets.load(Relaxed);
        t.rx_bytes += c.rx_bytes.load(Relaxed);
        t.tx_packets += c.tx_packets.load(Relaxed);
        t.tx_bytes += c.tx_bytes.load(Relaxed);
        for (i, d) in c.drops.iter().enumerate() {
            t.drops[i] += d.load(Relaxed);
        }
        t.held += c.held.load(Relaxed);
        t.rings_broken += c.rings_broken.load(Relaxed);
        t.ring_capped += c.ring_capped.load(Relaxed);
        t.punted += c.punted.load(Relaxed);
    }
    t
}

pub fn worker_totals(w: &WorkerStats) -> WorkerTotals {
    WorkerTotals {
        core: w.core,
        busy_cycles: w.own.busy_cycles.load(Relaxed),
        idle_cycles: w.own.idle_cycles.load(Relaxed),
        packets: w.own.packets.load(Relaxed),
        sleeps: w.own.sleeps.load(Relaxed),
        kick_wakeups: w.own.kick_wakeups.load(Relaxed),
        reloads: w.own.reloads.load(Relaxed),
        busy_polls: w.own.busy_polls.load(Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn totals_sum_over_workers() {
        let a = Arc::new(WorkerStats::new(1, 2));
        let b = Arc::new(WorkerStats::new(2, 2));
        bump(&a.ports[0].rx_packets, 5);
        bump(&b.ports[0].rx_packets, 7);
        a.ports[1].drop(DropCause::TxFull, 3);
        b.ports[1].drop(DropCause::PortDown, 2);
        b.ports[1].drop(DropCause::TxFull, 1);
        let ws = [a, b];
        assert_eq!(port_totals(&ws, 0).rx_packets, 12);
        let t1 = port_totals(&ws, 1);
        assert_eq!(t1.drops[..3], [4, 2, 0]);
        assert_eq!(t1.dropped(), 6);
        assert_eq!(DropCause::ALL[..3].iter().map(|c| c.name()).collect::<Vec<_>>(), ["tx_full", "port_down", "unrouted"]);
        for (i, c) in DropCause::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "ALL is in index order");
        }
    }
}
