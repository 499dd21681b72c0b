//! The router's control plane: interfaces and their addresses, routes (connected,
//! local, static, and host routes to resolved neighbours), next-hop objects shared by
//! routes, ECMP groups, and the neighbour table. It writes the tables the workers read
//! (`datapath::route`: FIB, next hops, groups) and builds the interface snapshot handed
//! to them with their plans.
//!
//! One [`RouterCtl`] per switch, behind a mutex shared by the main thread (flags,
//! config, `ctl`) and the slow-path thread (`slow`: ARP, ND, ICMP, packets waiting for a
//! neighbour). Neither ever runs on a worker.
//!
//! Which route wins for a prefix: each prefix has one route. Local (an interface's own
//! address) and connected (its subnet) routes come from addresses and cannot be
//! replaced; a static route (flag, config, `ctl`) for such a prefix is refused. A host
//! route installed for a neighbour found through a connected subnet gives way to a
//! static route for the same /32 (/128).

pub mod load;
pub mod neigh;
pub mod show;
pub mod slow;
pub mod twin;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use crate::datapath::reload::ReloadBarrier;
use crate::datapath::route::iface::{IfWire, Ifaces, MAX_IFACES};
use crate::datapath::route::lpm::{key4, key6};
use crate::datapath::route::nexthop::{Hop, Kind, GROUP_BIT};
use crate::datapath::route::Router;
use crate::parse::RouteTarget;
use neigh::{Neighbours, State, Timing};

/// `add_linux_route`'s refusal when a static route holds the prefix.
pub const SHADOWED: &str = "shadowed by a static route";

/// Next hops every router has.
pub const NH_LOCAL: u32 = 1;
pub const NH_BLACKHOLE: u32 = 2;
pub const NH_UNREACHABLE: u32 = 3;
const NH_FIRST: u32 = 4;

/// A prefix of either family, its key left-aligned as the FIB keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub v6: bool,
    pub key: u128,
    pub len: u8,
}

impl Prefix {
    pub fn of(addr: IpAddr, len: u8) -> Prefix {
        let key = match addr {
            IpAddr::V4(a) => key4(u32::from(a)),
            IpAddr::V6(a) => key6(a.octets()),
        };
        let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
        Prefix { v6: addr.is_ipv6(), key: key & m, len }
    }

    pub fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.key))
        } else {
            IpAddr::V4(Ipv4Addr::from((self.key >> 96) as u32))
        }
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv6() == self.v6 && Prefix::of(a, self.len).key == self.key
    }

    pub fn host(a: IpAddr) -> Prefix {
        Prefix::of(a, if a.is_ipv6() { 128 } else { 32 })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

/// A routed interface.
pub struct Iface {
    pub name: String,
    pub index: u16,
    pub port: usize,
    pub vlan: u16,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub addrs: Vec<(IpAddr, u8)>,
    /// The next hop of its connected subnets (resolve each destination).
    pub glean: u32,
}

impl Iface {
    pub fn wire(&self) -> IfWire {
        IfWire { index: self.index, port: self.port as u16, vlan: self.vlan, mac: self.mac, mtu: self.mtu }
    }

    /// Its first address of a family (the source of ICMP messages it sends).
    pub fn first(&self, v6: bool) -> Option<IpAddr> {
        self.addrs.iter().map(|a| a.0).find(|a| a.is_ipv6() == v6)
    }

    pub fn owns(&self, a: IpAddr) -> bool {
        self.addrs.iter().any(|x| x.0 == a) || (a == IpAddr::V6(crate::datapath::wire::l3::link_local(self.mac)))
    }
}

/// Where a route came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An interface's own address.
    Local(u16),
    /// An interface's subnet.
    Connected(u16),
    /// Flags, config or `ctl`.
    Static(RouteTarget),
    /// A neighbour found through a connected subnet.
    Host(u16),
    /// The Linux table `--linux-routes` mirrors.
    Linux(RouteTarget),
}

impl Origin {
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Local(_) => "local",
            Origin::Connected(_) => "connected",
            Origin::Static(_) => "static",
            Origin::Host(_) => "host",
            Origin::Linux(_) => "linux",
        }
    }
}

pub struct Route {
    pub origin: Origin,
    /// The FIB value: a next hop, or `GROUP_BIT | group`.
    pub value: u32,
}

/// What the slow path counted (shown by `ctl show router`).
#[derive(Debug, Default, Clone)]
pub struct SlowStats {
    pub punts: HashMap<&'static str, u64>,
    pub arp_in: u64,
    pub arp_requests_sent: u64,
    pub arp_replies_sent: u64,
    pub nd_in: u64,
    pub ns_sent: u64,
    pub na_sent: u64,
    pub echo_replies: u64,
    pub icmp_errors: HashMap<&'static str, u64>,
    pub icmp_rate_limited: u64,
    pub fragments_sent: u64,
    pub resolved: u64,
    pub released: u64,
    /// Dropped in the slow path, by cause.
    pub drops: HashMap<&'static str, u64>,
    pub inject_full: u64,
    /// The Linux mirror's counters.
    pub linux: HashMap<&'static str, u64>,
}

impl SlowStats {
    pub fn drop(&mut self, why: &'static str) {
        *self.drops.entry(why).or_default() += 1;
    }
}

/// A token bucket for what the slow path sends unasked (ICMP errors, echo replies).
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Bucket {
        Bucket { tokens: burst, rate, burst, last: Instant::now() }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct RouterCtl {
    pub rt: Arc<Router>,
    pub ifaces: Vec<Option<Iface>>,
    pub routes: HashMap<Prefix, Route>,
    nh_used: Vec<bool>,
    nh_free: Vec<u32>,
    /// ECMP groups by their sorted members: (group id, routes using it).
    groups: HashMap<Vec<u32>, (u32, u32)>,
    group_free: Vec<u32>,
    pub neigh: Neighbours,
    pub stats: SlowStats,
    pub icmp: Bucket,
    pub echo: Bucket,
    /// The snapshot the workers have (rebuilt on every interface change).
    pub snapshot: Arc<Ifaces>,
    /// Bumped on every interface change: the plane republishes when it moves.
    pub version: u64,
    pub barrier: Option<Arc<ReloadBarrier>>,
    /// A neighbour was created since the last tick (ask for it now).
    fresh: bool,
    /// Host interfaces, by interface index.
    pub twins: Vec<Option<twin::Twin>>,
    pub twin_bucket: Bucket,
    pub twin_stats: twin::TwinStats,
    /// Every interface gets a twin, also those `ctl ip add` makes (`--linux-routes`).
    pub twin_auto: bool,
}

/// A MAC for a routed interface: locally administered, unicast, from its name (stable
/// across restarts, distinct per interface in practice).
pub fn iface_mac(name: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[1], b[2], b[3], b[4], b[5]]
}

impl RouterCtl {
    pub fn new(rt: Arc<Router>, timing: Timing) -> RouterCtl {
        let (hops, groups) = rt.nh.capacity();
        rt.nh.set_hop(NH_LOCAL, Hop { kind: Kind::Local, iface: 0, mac: [0; 6] });
        rt.nh.set_hop(NH_BLACKHOLE, Hop { kind: Kind::Blackhole, iface: 0, mac: [0; 6] });
        rt.nh.set_hop(NH_UNREACHABLE, Hop { kind: Kind::Unreachable, iface: 0, mac: [0; 6] });
        let mut nh_used = vec![false; hops];
        for u in nh_used.iter_mut().take(NH_FIRST as usize) {
            *u = true;
        }
        RouterCtl {
            rt,
            ifaces: Vec::new(),
            routes: HashMap::new(),
            nh_used,
            nh_free: (NH_FIRST..hops as u32).rev().collect(),
            groups: HashMap::new(),
            group_free: (0..groups as u32).rev().collect(),
            neigh: Neighbours::new(timing),
            stats: SlowStats::default(),
            icmp: Bucket::new(1000.0, 100.0),
            echo: Bucket::new(10_000.0, 1000.0),
            snapshot: Arc::new(Ifaces::default()),
            version: 0,
            barrier: None,
            fresh: false,
            twins: Vec::new(),
            twin_bucket: twin::new_bucket(),
            twin_stats: twin::TwinStats::default(),
            twin_auto: false,
        }
    }

    fn alloc_nh(&mut self, h: Hop) -> Result<u32, String> {
        let id = self.nh_free.pop().ok_or("the next-hop table is full: remove routes or neighbours first")?;
        self.nh_used[id as usize] = true;
        self.rt.nh.set_hop(id, h);
        Ok(id)
    }

    fn free_nh(&mut self, id: u32) {
        if id >= NH_FIRST && self.nh_used.get(id as usize) == Some(&true) {
            self.rt.nh.set_hop(id, Hop::EMPTY);
            self.nh_used[id as usize] = false;
            self.nh_free.push(id);
        }
    }

    pub fn iface_by_name(&self, port: &str, vlan: u16) -> Option<&Iface> {
        let name = if vlan == 0 { port.to_string() } else { format!("{port}.{vlan}") };
        self.ifaces.iter().flatten().find(|i| i.name == name)
    }

    pub fn iface(&self, i: u16) -> Option<&Iface> {
        self.ifaces.get(usize::from(i))?.as_ref()
    }

    /// Ports that have an interface.
    pub fn routed_ports(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.ifaces.iter().flatten().map(|i| i.port).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn rebuild_snapshot(&mut self) {
        let list: Vec<IfWire> = self.ifaces.iter().flatten().map(Iface::wire).collect();
        self.snapshot = Arc::new(Ifaces::new(&list));
        self.version += 1;
    }

    /// Writes a route's value into the FIB.
    fn fib_set(&self, p: Prefix, value: u32) -> Result<(), String> {
        let t = if p.v6 { &self.rt.fib6 } else { &self.rt.fib4 };
        t.insert(p.key, u32::from(p.len), value).map_err(|e| format!("route {p}: {e}"))
    }

    fn fib_del(&self, p: Prefix) {
        let t = if p.v6 { &self.rt.fib6 } else { &self.rt.fib4 };
        t.remove(p.key, u32::from(p.len), &self.rt.qsbr);
    }

    /// Adds address `addr/len` to interface `port[.vlan]` (switch port index `port_index`),
    /// creating the interface if it is new: a local route for the address and a
    /// connected route for its subnet; announced with a gratuitous ARP (IPv4) or an
    /// unsolicited neighbour advertisement (IPv6).
    pub fn add_addr(
        &mut self,
        port: &str,
        vlan: u16,
        port_index: usize,
        addr: IpAddr,
        len: u8,
        mtu: Option<u16>,
    ) -> Result<String, String> {
        let name = if vlan == 0 { port.to_string() } else { format!("{port}.{vlan}") };
        let host = Prefix::host(addr);
        let net = Prefix::of(addr, len);
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(format!("{addr} cannot be an interface address: use a unicast address"));
        }
        // Overlaps with other interfaces' subnets would make the connected route ambiguous.
        for i in self.ifaces.iter().flatten() {
            for &(a, l) in &i.addrs {
                if a == addr {
                    return Err(format!("{addr} is already an address of interface {}: remove it there first", i.name));
                }
                let other = Prefix::of(a, l);
                if i.name != name && a.is_ipv6() == addr.is_ipv6() && (other.contains(addr) || net.contains(a)) {
                    return Err(format!("{net} overlaps {other} of interface {}: give each interface its own subnet", i.name));
                }
            }
        }
        for p in [host, net] {
            if let Some(r) = self.routes.get(&p) {
                if matches!(r.origin, Origin::Static(_)) {
                    return Err(format!("a static route for {p} exists: ip route del it first"));
                }
            }
        }
        let index = match self.ifaces.iter().flatten().find(|i| i.name == name) {
            Some(i) => {
                if i.port != port_index {
                    return Err(format!("interface {name} belongs to another port"));
                }
                i.index
            }
            None => {
                let index =
                    (0..MAX_IFACES).find(|&k| self.ifaces.get(k).is_none_or(Option::is_none)).ok_or("too many interfaces (4096)")? as u16;
                let glean = self.alloc_nh(Hop { kind: Kind::Glean, iface: index, mac: [0; 6] })?;
                let i = Iface {
                    name: name.clone(),
                    index,
                    port: port_index,
                    vlan,
                    mac: iface_mac(&name),
                    mtu: mtu.unwrap_or(1500),
                    addrs: Vec::new(),
                    glean,
                };
                if self.ifaces.len() <= usize::from(index) {
                    self.ifaces.resize_with(usize::from(index) + 1, || None);
                }
                self.ifaces[usize::from(index)] = Some(i);
                index
            }
        };
        let glean = self.ifaces[usize::from(index)].as_ref().map_or(0, |i| i.glean);
        // A neighbour's host route at the address goes: the address is ours now.
        self.drop_host_route(host);
        self.fib_set(host, NH_LOCAL)?;
        self.routes.insert(host, Route { origin: Origin::Local(index), value: NH_LOCAL });
        if net != host && !self.routes.contains_key(&net) {
            self.fib_set(net, glean)?;
            self.routes.insert(net, Route { origin: Origin::Connected(index), value: glean });
        }
        if let Some(i) = self.ifaces[usize::from(index)].as_mut() {
            i.addrs.push((addr, len));
            if let Some(m) = mtu {
                i.mtu = m;
            }
        }
        self.rebuild_snapshot();
        self.announce(index, addr);
        Ok(format!("{addr}/{len} on {name}"))
    }

    /// Sets an interface's MTU.
    pub fn set_mtu(&mut self, port: &str, vlan: u16, mtu: u16) -> Result<String, String> {
        let name = ifname(port, vlan);
        let i = self
            .ifaces
            .iter_mut()
            .flatten()
            .find(|i| i.name == name)
            .ok_or_else(|| format!("no interface {name}: give it an address with ip add first"))?;
        i.mtu = mtu;
        self.rebuild_snapshot();
        Ok(format!("{name} mtu {mtu}"))
    }

    /// Removes an address; the interface goes with its last address (refused while a
    /// static route uses a gateway on it).
    pub fn del_addr(&mut self, port: &str, vlan: u16, addr: IpAddr, len: u8) -> Result<String, String> {
        let name = if vlan == 0 { port.to_string() } else { format!("{port}.{vlan}") };
        let Some(i) = self.ifaces.iter().flatten().find(|i| i.name == name) else {
            return Err(format!("no interface {name}: see ip show"));
        };
        let index = i.index;
        if !i.addrs.contains(&(addr, len)) {
            return Err(format!("{addr}/{len} is not an address of {name}: see ip show"));
        }
        let last = i.addrs.len() == 1;
        let net = Prefix::of(addr, len);
        let others_in_net = i.addrs.iter().any(|&(a, l)| (a, l) != (addr, len) && Prefix::of(a, l) == net);
        // Neighbours on the subnet leaving (or on the interface, with the last address).
        let gone: Vec<(u16, IpAddr)> =
            self.neigh.map.keys().filter(|(f, a)| *f == index && (last || (!others_in_net && net.contains(*a)))).copied().collect();
        for k in &gone {
            if let Some(n) = self.neigh.get(k.0, k.1) {
                if n.refs > 0 {
                    return Err(format!("neighbour {} on {name} is a gateway of a static route: delete that route first", k.1));
                }
            }
        }
        for (f, a) in gone {
            self.remove_neigh(f, a);
        }
        let host = Prefix::host(addr);
        self.fib_del(host);
        self.routes.remove(&host);
        if net != host && !others_in_net {
            self.fib_del(net);
            self.routes.remove(&net);
        }
        if let Some(i) = self.ifaces[usize::from(index)].as_mut() {
            i.addrs.retain(|x| *x != (addr, len));
        }
        if last {
            if let Some(i) = self.ifaces[usize::from(index)].take() {
                self.free_nh(i.glean);
            }
            // Its host interface goes with it (the device closes with its file).
            if let Some(t) = self.twins.get_mut(usize::from(index)) {
                *t = None;
            }
        }
        self.rebuild_snapshot();
        Ok(format!("{addr}/{len} removed from {name}{}", if last { " (interface removed)" } else { "" }))
    }

    /// The interface whose connected subnet holds `a`.
    fn connected_iface(&self, a: IpAddr) -> Option<u16> {
        self.ifaces.iter().flatten().find(|i| i.addrs.iter().any(|&(x, l)| Prefix::of(x, l).contains(a))).map(|i| i.index)
    }

    /// The next hop of neighbour `a` on `iface`, created (incomplete, asked at the next
    /// tick) if new.
    /// The way to `dst` as a tunnel needs it: (underlay port, the interface's MAC and
    /// IP MTU, the next hop's MAC). None while the route or the neighbour is not known;
    /// a host of a connected subnet then gets its entry (and host route), which the slow
    /// path asks for. Only untagged interfaces carry tunnels.
    pub fn path_to(&mut self, dst: std::net::Ipv4Addr) -> Option<(usize, [u8; 6], [u8; 6], u16)> {
        let v = self.rt.fib4.lookup4(u32::from(dst))?;
        let id = self.rt.nh.resolve(v, 0);
        let hop = self.rt.nh.hop(id);
        let i = self.iface(hop.iface).filter(|i| i.vlan == 0)?;
        let (port, mac, mtu) = (i.port, i.mac, i.mtu);
        match hop.kind {
            Kind::Forward => Some((port, mac, hop.mac, mtu)),
            Kind::Glean => {
                let a = IpAddr::V4(dst);
                if let Ok(nh) = self.neigh_nh(hop.iface, a) {
                    self.install_host_route(hop.iface, a, nh);
                }
                None
            }
            _ => None,
        }
    }

    fn neigh_nh(&mut self, iface: u16, a: IpAddr) -> Result<u32, String> {
        if let Some(n) = self.neigh.get(iface, a) {
            return Ok(n.nh);
        }
        if self.neigh.is_full() {
            return Err(format!("the neighbour table is full ({} entries)", self.neigh.timing.max));
        }
        let nh = self.alloc_nh(Hop { kind: Kind::Resolve, iface, mac: [0; 6] })?;
        self.neigh.insert(iface, a, nh, Instant::now());
        self.fresh = true;
        Ok(nh)
    }

    /// Adds (or replaces) a static route (it replaces one learned from Linux too).
    pub fn add_route(&mut self, p: Prefix, target: &RouteTarget) -> Result<String, String> {
        self.put_route(p, target, false)
    }

    /// Adds (or replaces) a route mirrored from Linux. A static route for the prefix
    /// wins: the Linux one is refused with `Err(SHADOWED)` (flags, config and `ctl` are
    /// the operator's word; the routing daemon's table is the default under it).
    pub fn add_linux_route(&mut self, p: Prefix, target: &RouteTarget) -> Result<String, String> {
        if matches!(self.routes.get(&p).map(|r| &r.origin), Some(Origin::Static(_))) {
            return Err(SHADOWED.into());
        }
        self.put_route(p, target, true)
    }

    /// Removes a route learned from Linux (nothing if the prefix has another origin).
    pub fn del_linux_route(&mut self, p: Prefix) -> bool {
        if !matches!(self.routes.get(&p).map(|r| &r.origin), Some(Origin::Linux(_))) {
            return false;
        }
        self.fib_del(p);
        if let Some(r) = self.routes.remove(&p) {
            self.drop_ref(r.value);
        }
        true
    }

    fn put_route(&mut self, p: Prefix, target: &RouteTarget, linux: bool) -> Result<String, String> {
        match self.routes.get(&p).map(|r| &r.origin) {
            Some(Origin::Local(i)) | Some(Origin::Connected(i)) => {
                let n = self.iface(*i).map_or("?", |x| x.name.as_str());
                return Err(format!("{p} is an address or subnet of interface {n}: it is routed there already"));
            }
            _ => {}
        }
        let value = match target {
            RouteTarget::Blackhole => NH_BLACKHOLE,
            RouteTarget::Unreachable => NH_UNREACHABLE,
            RouteTarget::Dev(port, vlan) => self
                .iface_by_name(port, *vlan)
                .map(|i| i.glean)
                .ok_or_else(|| format!("no interface {}: give it an address with ip add", ifname(port, *vlan)))?,
            RouteTarget::Via(gws) => {
                let mut nhs = Vec::new();
                for (a, dev) in gws {
                    if a.is_ipv6() != p.v6 {
                        return Err(format!("gateway {a} is not of {p}'s address family"));
                    }
                    let iface = match dev {
                        Some((port, vlan)) => {
                            self.iface_by_name(port, *vlan).map(|i| i.index).ok_or_else(|| format!("no interface {}: give it an address with ip add", ifname(port, *vlan)))?
                        }
                        None => self.connected_iface(*a).ok_or_else(|| {
                            format!("gateway {a} is on no interface's subnet: add an address there first, or name the interface (via:{a}@IFACE)")
                        })?,
                    };
                    if self.iface(iface).is_some_and(|i| i.owns(*a)) {
                        return Err(format!("gateway {a} is one of our own addresses"));
                    }
                    nhs.push(self.neigh_nh(iface, *a)?);
                }
                if nhs.len() == 1 {
                    nhs[0]
                } else {
                    nhs.sort_unstable();
                    self.group_for(nhs)?
                }
            }
        };
        // Take the new references before releasing the old route's.
        self.take_ref(value);
        if let Err(e) = self.fib_set(p, value) {
            self.drop_ref(value);
            return Err(e);
        }
        let origin = if linux { Origin::Linux(target.clone()) } else { Origin::Static(target.clone()) };
        let old = self.routes.insert(p, Route { origin, value });
        match old {
            Some(Route { origin: Origin::Host(i), .. }) => {
                if let Some(n) = self.neigh.get_mut(i, p.addr()) {
                    n.host_route = false;
                }
            }
            Some(r) => self.drop_ref(r.value),
            None => {}
        }
        // Resolve new gateways now, not at the first packet.
        if std::mem::take(&mut self.fresh) {
            self.tick(Instant::now());
        }
        Ok(format!("{p} {target}"))
    }

    /// Removes a static route.
    pub fn del_route(&mut self, p: Prefix) -> Result<String, String> {
        match self.routes.get(&p).map(|r| &r.origin) {
            Some(Origin::Static(_)) => {}
            Some(Origin::Linux(_)) => return Err(format!("{p} was learned from Linux: delete it there (ip route del {p})")),
            Some(o) => return Err(format!("{p} is a {} route: it goes with its address or neighbour", o.name())),
            None => return Err(format!("no route {p}: see route show")),
        }
        self.fib_del(p);
        if let Some(r) = self.routes.remove(&p) {
            self.drop_ref(r.value);
        }
        Ok(format!("{p} removed"))
    }

    fn group_for(&mut self, members: Vec<u32>) -> Result<u32, String> {
        if let Some((g, _)) = self.groups.get(&members) {
            return Ok(GROUP_BIT | *g);
        }
        let g = self.group_free.pop().ok_or("the ECMP group table is full")?;
        self.rt.nh.set_group(g, &members);
        self.groups.insert(members, (g, 0));
        Ok(GROUP_BIT | g)
    }

    /// A route takes a reference on its next hop (or on its group and the members).
    fn take_ref(&mut self, value: u32) {
        if value & GROUP_BIT != 0 {
            let g = value & !GROUP_BIT;
            let members = self.groups.iter_mut().find(|(_, (id, _))| *id == g).map(|(m, (_, refs))| {
                *refs += 1;
                m.clone()
            });
            for m in members.unwrap_or_default() {
                self.take_ref(m);
            }
        } else if let Some(n) = self.neigh.by_nh_mut(value) {
            n.refs += 1;
        }
    }

    fn drop_ref(&mut self, value: u32) {
        if value & GROUP_BIT != 0 {
            let g = value & !GROUP_BIT;
            let Some(members) = self.groups.iter().find(|(_, (id, _))| *id == g).map(|(m, _)| m.clone()) else { return };
            if let Some(e) = self.groups.get_mut(&members) {
                e.1 -= 1;
                if e.1 == 0 {
                    self.groups.remove(&members);
                    self.rt.nh.set_group(g, &[]);
                    self.group_free.push(g);
                }
            }
            for m in members {
                self.drop_ref(m);
            }
        } else if let Some(n) = self.neigh.by_nh_mut(value) {
            n.refs = n.refs.saturating_sub(1);
        }
    }

    /// A static neighbour entry (never aged, answers or not).
    pub fn add_static_neigh(&mut self, port: &str, vlan: u16, a: IpAddr, mac: [u8; 6]) -> Result<String, String> {
        let iface = self
            .iface_by_name(port, vlan)
            .map(|i| i.index)
            .ok_or_else(|| format!("no interface {}: give it an address with ip add", ifname(port, vlan)))?;
        let nh = self.neigh_nh(iface, a)?;
        if let Some(n) = self.neigh.get_mut(iface, a) {
            n.is_static = true;
            n.mac = Some(mac);
            n.state = State::Reachable;
        }
        self.resolved(iface, a);
        if self.connected_iface(a) == Some(iface) {
            self.install_host_route(iface, a, nh);
        }
        Ok(format!("{a} is {} on {}", crate::parse::mac_str(&mac), ifname(port, vlan)))
    }

    pub fn del_neigh(&mut self, port: &str, vlan: u16, a: IpAddr) -> Result<String, String> {
        let iface = self.iface_by_name(port, vlan).map(|i| i.index).ok_or_else(|| format!("no interface {}", ifname(port, vlan)))?;
        match self.neigh.get(iface, a) {
            None => Err(format!("no neighbour {a} on {}: see neigh show", ifname(port, vlan))),
            Some(n) if n.refs > 0 => Err(format!("{a} is a gateway of a static route: delete the route first")),
            Some(_) => {
                self.remove_neigh(iface, a);
                Ok(format!("{a} removed"))
            }
        }
    }

    fn install_host_route(&mut self, iface: u16, a: IpAddr, nh: u32) {
        let p = Prefix::host(a);
        if self.routes.contains_key(&p) {
            return;
        }
        if self.fib_set(p, nh).is_ok() {
            self.routes.insert(p, Route { origin: Origin::Host(iface), value: nh });
            if let Some(n) = self.neigh.get_mut(iface, a) {
                n.host_route = true;
            }
        }
    }

    fn drop_host_route(&mut self, p: Prefix) {
        if let Some(Route { origin: Origin::Host(i), .. }) = self.routes.get(&p) {
            let i = *i;
            self.fib_del(p);
            self.routes.remove(&p);
            if let Some(n) = self.neigh.get_mut(i, p.addr()) {
                n.host_route = false;
            }
        }
    }

    fn remove_neigh(&mut self, iface: u16, a: IpAddr) {
        let Some(n) = self.neigh.get(iface, a) else { return };
        if n.host_route {
            self.drop_host_route(Prefix::host(a));
        }
        if let Some(n) = self.neigh.remove(iface, a) {
            let dropped = n.pending.len() as u64;
            *self.stats.drops.entry("neigh_removed").or_default() += dropped;
            for w in n.pending {
                self.rt.punt.recycle(w.ip);
            }
            self.free_nh(n.nh);
        }
    }

    /// A neighbour's MAC became known (or changed): its next hop forwards, and what
    /// waited for it goes out.
    fn resolved(&mut self, iface: u16, a: IpAddr) {
        let Some(n) = self.neigh.get_mut(iface, a) else { return };
        let Some(mac) = n.mac else { return };
        let nh = n.nh;
        let waiting: Vec<_> = n.pending.drain(..).collect();
        self.rt.nh.set_hop(nh, Hop { kind: Kind::Forward, iface, mac });
        self.stats.resolved += 1;
        for w in waiting {
            self.stats.released += 1;
            self.send_via(iface, mac, w.ip, w.forwarded);
        }
    }
}

pub fn ifname(port: &str, vlan: u16) -> String {
    if vlan == 0 {
        port.to_string()
    } else {
        format!("{port}.{vlan}")
    }
}

#[cfg(test)]
mod tests;
