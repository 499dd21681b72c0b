//! VXLAN tunnels as the workers run them (RFC 7348; the formats are `wire::vxlan`'s).
//!
//! A VNI joins a bridge to remote VTEPs over the routed underlay. Each remote VTEP is a
//! member of the bridge, a port of its own in the port table (`vx<VNI>-<k>`): flooding
//! through the bridge is then the VNI's static flood list (head-end replication, §4.2),
//! and learning records which VTEP a MAC lives behind (the member its frames came in
//! by), so unicast goes to that VTEP alone. A member has no receive queue: its frames
//! arrive on the underlay port, addressed to the local VTEP's address and UDP port, and
//! the router hands them here instead of to the slow path.
//!
//! Out: the frame's mbuf gets the outer headers in its headroom (no copy; a frame the
//! bridge shares among several members is copied first) and goes out the underlay port
//! the route to the remote VTEP leads to. The control plane resolves that route and the
//! next hop's MAC and builds the outer headers once ([`Vtep::set_path`]); until then the
//! member drops (`vxlan_unresolved`). Frames longer than the underlay MTU allows once
//! wrapped are dropped (`vxlan_too_big`): the inner MTU is the underlay's minus 50.
//!
//! In: the outer frame's VXLAN header is checked (the I flag, §5), its VNI and outer
//! source must name one of our remote VTEPs (else `vxlan_unknown`), and the inner frame
//! enters the bridge by that VTEP's member (`vxlan_bad` for a short or flagless one).

use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam::atomic::AtomicCell;

use crate::datapath::bridge::fwd::Bridge;
use crate::datapath::stats::{bump, DropCause, PortCounters};
use crate::datapath::wire::vxlan::{self, Outer, OVERHEAD};
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;

/// One remote VTEP of one VNI.
pub struct Vtep {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub udp_port: u16,
    /// Where frames go, once the control plane resolved it.
    path: AtomicCell<Option<Path>>,
    /// For the private copy of a frame the bridge shares among members.
    pub pool: Arc<Mempool>,
}

/// How frames reach a remote VTEP: the outer headers, the underlay port (index into the
/// port table) and its IP MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub outer: Outer,
    pub port: usize,
    pub mtu: u16,
}

impl Path {
    /// Whether an inner frame of `len` bytes fits the underlay once wrapped: its IP
    /// packet (outer IPv4 and UDP and VXLAN headers, the inner frame) within the MTU.
    #[inline(always)]
    pub fn fits(&self, len: usize) -> bool {
        len + crate::datapath::wire::vxlan::OVERHEAD - crate::datapath::wire::l3::ETH_LEN <= usize::from(self.mtu)
    }
}

impl Vtep {
    pub fn new(vni: u32, local: Ipv4Addr, remote: Ipv4Addr, udp_port: u16, pool: Arc<Mempool>) -> Vtep {
        Vtep { vni, local, remote, udp_port, path: AtomicCell::new(None), pool }
    }

    /// The path now (one optimistic read per burst: the control plane rarely writes).
    #[inline(always)]
    pub fn path(&self) -> Option<Path> {
        self.path.load()
    }

    /// The control plane's resolution (None: the route or the neighbour went away).
    pub fn set_path(&self, p: Option<Path>) {
        if self.path.load() != p {
            self.path.store(p);
        }
    }
}

/// What the router needs to hand a received VXLAN frame to its bridge: our VTEP
/// addresses and ports, and for each (VNI, remote VTEP) the bridge, the member it enters
/// by and that member's port index. Rebuilt with the workers' plans.
#[derive(Default)]
pub struct VxlanIn {
    /// (local address, UDP port) pairs that terminate tunnels.
    pub ends: Vec<(Ipv4Addr, u16)>,
    pub remotes: Vec<Remote>,
}

pub struct Remote {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub bridge: Arc<Bridge>,
    pub member: usize,
    pub port: usize,
}

impl VxlanIn {
    /// Whether UDP to `dst`:`port` ends a tunnel here.
    #[inline(always)]
    pub fn ends_at(&self, dst: Ipv4Addr, port: u16) -> bool {
        self.ends.iter().any(|&(a, p)| a == dst && p == port)
    }
}

/// Wraps every frame of `batch` for `p` in place (outer headers in the headroom; a
/// frame the bridge shares with other members is copied first): what does not fit the
/// underlay or finds no buffer is dropped and counted in `c` (the VTEP member's
/// counters). Returns the frames and inner bytes that remain, to go out the underlay.
#[inline]
pub fn encap(p: &Path, batch: &mut Batch, pool: &Mempool, c: &PortCounters) -> (u64, u64) {
    let (mut n, mut bytes, mut too_big, mut no_mbuf) = (0u64, 0u64, 0u64, 0u64);
    batch.retain_mut(|m| {
        let len = m.len();
        if !p.fits(len) {
            too_big += 1;
            return false;
        }
        if m.is_shared() {
            match m.deep_copy(pool) {
                Some(x) => *m = x,
                None => {
                    no_mbuf += 1;
                    return false;
                }
            }
        }
        let sport = m.data_mut().map_or(0xc000, |d| vxlan::source_port(d));
        let Some(h) = m.prepend(OVERHEAD as u16) else {
            no_mbuf += 1;
            return false;
        };
        p.outer.write(h, len, sport);
        n += 1;
        bytes += len as u64;
        true
    });
    c.drop(DropCause::VxlanTooBig, too_big);
    c.drop(DropCause::NoMbuf, no_mbuf);
    (n, bytes)
}

/// Received tunnel frames on their way into bridges: inner frames (outer headers
/// stripped) and the index in [`VxlanIn::remotes`] of the VTEP each came from.
pub struct Staged {
    pub batch: Batch,
    pub from: [u16; MAX_BURST],
}

impl Default for Staged {
    fn default() -> Self {
        Staged { batch: Batch::new(), from: [0; MAX_BURST] }
    }
}

/// Unwraps the tunnel frame in `m` (outer IPv4 header at `l3`, UDP right after it: the
/// router checked both) and stages its inner frame, counted on the VTEP member's port
/// (`ports[member port]`); or drops and counts it on the underlay port `rxc`.
#[inline]
pub fn decap_into(
    v: &VxlanIn,
    mut m: crate::dpdk::mbuf::Mbuf,
    l3: usize,
    rxc: &PortCounters,
    ports: &[crossbeam::utils::CachePadded<PortCounters>],
    st: &mut Staged,
) {
    let d = match m.data_mut().map(|f| vxlan::decap(f, l3, l3 + crate::datapath::wire::l3::IPV4_LEN)) {
        Some(Ok(d)) => d,
        _ => return rxc.drop(DropCause::VxlanBad, 1),
    };
    let Some(k) = v.remotes.iter().position(|r| r.vni == d.vni && r.remote == d.src && r.local == d.dst) else {
        return rxc.drop(DropCause::VxlanUnknown, 1);
    };
    if !m.adj(d.inner as u16) {
        return rxc.drop(DropCause::VxlanBad, 1);
    }
    let c = &ports[v.remotes[k].port];
    bump(&c.rx_packets, 1);
    bump(&c.rx_bytes, m.len() as u64);
    let at = st.batch.len();
    match st.batch.push(m) {
        Ok(()) => st.from[at] = k as u16,
        Err(_) => rxc.drop(DropCause::NoMbuf, 1),
    }
}

/// `--vxlan VNI=BRIDGE,local=ADDR,remote=ADDR[+ADDR...][,port=N]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub vni: u32,
    pub bridge: String,
    pub local: Ipv4Addr,
    pub remotes: Vec<Ipv4Addr>,
    pub port: u16,
}

/// Parses a `--vxlan` argument.
///
/// # Errors
/// One line naming the part that is wrong and what to write.
pub fn parse_vxlan(s: &str) -> Result<VxlanSpec, String> {
    let usage = "write VNI=BRIDGE,local=ADDR,remote=ADDR[+ADDR...][,port=N], e.g. 5001=br0,local=198.18.0.1,remote=198.18.0.2";
    let (vni, rest) = s.split_once('=').ok_or_else(|| format!("--vxlan '{s}': {usage}"))?;
    let vni: u32 = vni
        .trim()
        .parse()
        .ok()
        .filter(|v| *v < 1 << 24)
        .ok_or_else(|| format!("--vxlan '{s}': VNI '{vni}' is not a number below 16777216"))?;
    let mut parts = rest.split(',');
    let bridge = parts.next().unwrap_or("").trim().to_string();
    crate::parse::parse_name(&bridge).map_err(|e| format!("--vxlan '{s}': bridge: {e}"))?;
    let (mut local, mut remotes, mut port) = (None, Vec::new(), crate::datapath::wire::vxlan::PORT);
    let v4 = |k: &str, v: &str| -> Result<Ipv4Addr, String> {
        v.parse().map_err(|_| format!("--vxlan '{s}': {k} '{v}' is not an IPv4 address (the underlay is IPv4)"))
    };
    for p in parts {
        match p.split_once('=') {
            Some(("local", v)) => local = Some(v4("local", v)?),
            Some(("remote", v)) => {
                for r in v.split('+') {
                    let a = v4("remote", r)?;
                    if remotes.contains(&a) {
                        return Err(format!("--vxlan '{s}': remote {a} is listed twice"));
                    }
                    remotes.push(a);
                }
            }
            Some(("port", v)) => {
                port = v.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("--vxlan '{s}': port '{v}' is not a UDP port"))?
            }
            _ => return Err(format!("--vxlan '{s}': '{p}' is not local=, remote= or port=: {usage}")),
        }
    }
    let local = local.ok_or_else(|| format!("--vxlan '{s}': no local=ADDR (one of the router's addresses on the underlay)"))?;
    if remotes.is_empty() {
        return Err(format!("--vxlan '{s}': no remote=ADDR: name the other VTEPs of VNI {vni}"));
    }
    if remotes.contains(&local) {
        return Err(format!("--vxlan '{s}': {local} is both local and remote"));
    }
    Ok(VxlanSpec { vni, bridge, local, remotes, port })
}

/// The port name of remote VTEP `k` (from 1) of VNI `vni`.
pub fn member_name(vni: u32, k: usize) -> String {
    format!("vx{vni}-{k}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_mistakes_say_what_to_write() {
        let s = parse_vxlan("5001=br0,local=198.18.0.1,remote=198.18.0.2+198.18.0.3,port=8472").unwrap();
        assert_eq!(
            s,
            VxlanSpec {
                vni: 5001,
                bridge: "br0".into(),
                local: Ipv4Addr::new(198, 18, 0, 1),
                remotes: vec![Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)],
                port: 8472
            }
        );
        assert_eq!(parse_vxlan("7=b,local=1.1.1.1,remote=2.2.2.2").unwrap().port, 4789);
        for (bad, why) in [
            ("5001", "write VNI=BRIDGE"),
            ("99999999=br0,local=1.1.1.1,remote=2.2.2.2", "not a number below 16777216"),
            ("1=br 0,local=1.1.1.1,remote=2.2.2.2", "bridge:"),
            ("1=br0,remote=2.2.2.2", "no local=ADDR"),
            ("1=br0,local=1.1.1.1", "no remote=ADDR"),
            ("1=br0,local=1.1.1.1,remote=2001:db8::1", "not an IPv4 address"),
            ("1=br0,local=1.1.1.1,remote=2.2.2.2+2.2.2.2", "listed twice"),
            ("1=br0,local=1.1.1.1,remote=1.1.1.1", "both local and remote"),
            ("1=br0,local=1.1.1.1,remote=2.2.2.2,ttl=3", "'ttl=3' is not"),
            ("1=br0,local=1.1.1.1,remote=2.2.2.2,port=0", "not a UDP port"),
        ] {
            let e = parse_vxlan(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
