//! The Linux mirror (`--linux-routes TABLE`): a thread (never a worker) subscribed to
//! rtnetlink programs the router from one kernel routing table, so that a routing daemon
//! (FRR, BIRD) or `ip route` drives the data plane through the host interfaces (twins).
//!
//! - Routes of the table whose interfaces are twins become routes of origin `linux`:
//!   gateways, multipath (ECMP groups), next-hop objects (`nhid`, which FRR uses),
//!   blackhole, unreachable and prohibit. Routes through other interfaces (the machine's
//!   own), of other tables or kinds (local, broadcast, multicast, throw) are counted and
//!   left out.
//! - Conflicts: a static route (flags, config, `ctl`) holds its prefix; the Linux one is
//!   counted as shadowed and kept in the mirror's copy, installed again at the next
//!   resync once the static one is gone. Interface addresses and subnets always win.
//!   One route per prefix: the last Linux announced (its metric is not compared).
//! - Permanent neighbours on twins become static neighbours; addresses added to a twin
//!   become the interface's (the kernel's own IPv6 link-local ones excepted).
//! - Everything starts from a full dump; an overrun of the socket (ENOBUFS: the kernel
//!   dropped events) triggers another, after which routes Linux no longer has go. The
//!   receive buffer is large (64 MiB) so that a full BGP table arriving at once rarely
//!   needs one.

pub mod msg;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::control::router::{twin, Origin, Prefix, RouterCtl, SHADOWED};

/// The mirror's counters live with the router's (`show router`: "linux").
fn tally(c: &mut RouterCtl, k: &'static str) {
    *c.stats.linux.entry(k).or_default() += 1;
}

fn count(rctl: &Mutex<RouterCtl>, k: &'static str) {
    tally(&mut rctl.lock().unwrap_or_else(|e| e.into_inner()), k);
}
use crate::parse::RouteTarget;
use crate::sys::netlink::Netlink;
use msg::{Msg, NexthopMsg, RouteMsg};

const RCVBUF: usize = 64 << 20;

/// Overrides the receive buffer (bytes): tests make it small to force overruns.
pub const RCVBUF_ENV: &str = "PMDSWITCH_NETLINK_RCVBUF";

pub struct Mirror {
    table: u32,
    /// The table as Linux has it (mapped or not), by prefix.
    routes: HashMap<Prefix, RouteMsg>,
    nexthops: HashMap<u32, NexthopMsg>,
    /// Neighbours this mirror made static: (twin index, address).
    neighs: HashSet<(u32, IpAddr)>,
    /// Seen in the current dump (resync: what is not seen goes).
    seen: Option<HashSet<Prefix>>,
}

/// `--linux-routes TABLE`: a table id (1-4294967295) or main.
pub fn parse_table(s: &str) -> Result<u32, String> {
    match s {
        "main" => Ok(msg::RT_TABLE_MAIN),
        "local" => Err("--linux-routes local: the local table holds the kernel's own addresses; mirror main or a table id".into()),
        _ => s
            .parse::<u32>()
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| format!("--linux-routes {s}: not a table: give main or a number 1-4294967295")),
    }
}

impl Mirror {
    pub fn new(table: u32) -> Mirror {
        Mirror { table, routes: HashMap::new(), nexthops: HashMap::new(), neighs: HashSet::new(), seen: None }
    }

    /// The router's form of a Linux route; Err names why it is left out.
    fn target(&self, c: &RouterCtl, r: &RouteMsg) -> Result<RouteTarget, &'static str> {
        match r.kind {
            msg::RTN_BLACKHOLE => return Ok(RouteTarget::Blackhole),
            msg::RTN_UNREACHABLE | msg::RTN_PROHIBIT => return Ok(RouteTarget::Unreachable),
            msg::RTN_UNICAST => {}
            _ => return Err("skipped_kind"),
        }
        let dev = |ifindex: u32| c.twin_iface(ifindex).map(|(p, v, _, _)| (p, v)).ok_or("skipped_foreign_interface");
        let mut paths: Vec<(Option<IpAddr>, u32)> = Vec::new();
        if let Some(id) = r.nh_id {
            let n = self.nexthops.get(&id).ok_or("nexthop_unknown")?;
            if n.blackhole {
                return Ok(RouteTarget::Blackhole);
            }
            if n.group.is_empty() {
                paths.push((n.gateway, n.oif.ok_or("nexthop_unknown")?));
            }
            for m in &n.group {
                let m = self.nexthops.get(m).ok_or("nexthop_unknown")?;
                paths.push((m.gateway, m.oif.ok_or("nexthop_unknown")?));
            }
        } else if !r.multipath.is_empty() {
            paths.clone_from(&r.multipath);
        } else {
            paths.push((r.gateway, r.oif.ok_or("skipped_no_interface")?));
        }
        if paths.len() == 1 && paths[0].0.is_none() {
            let (p, v) = dev(paths[0].1)?;
            return Ok(RouteTarget::Dev(p, v));
        }
        let mut gws = Vec::new();
        for (gw, ifindex) in paths {
            let gw = gw.ok_or("skipped_multipath_without_gateway")?;
            gws.push((gw, Some(dev(ifindex)?)));
        }
        Ok(RouteTarget::Via(gws))
    }

    fn install(&mut self, c: &mut RouterCtl, p: Prefix) {
        let Some(r) = self.routes.get(&p) else { return };
        if matches!(c.routes.get(&p).map(|x| &x.origin), Some(Origin::Local(_) | Origin::Connected(_))) {
            // The kernel's routes for the twins' own subnets: ours already.
            return tally(c, "skipped_connected");
        }
        match self.target(c, r) {
            Ok(t) => match c.add_linux_route(p, &t) {
                Ok(_) => tally(c, "routes_installed"),
                Err(e) if e == SHADOWED => tally(c, "routes_shadowed"),
                Err(_) => tally(c, "routes_refused"),
            },
            Err(why) => {
                // A route that maps no more (its interface or next hop went) leaves.
                if c.del_linux_route(p) {
                    tally(c, "routes_removed");
                }
                tally(c, why);
            }
        }
    }

    /// One decoded message.
    pub fn apply(&mut self, c: &mut RouterCtl, m: Msg) {
        match m {
            Msg::Route(add, r) => {
                if r.table != self.table {
                    return tally(c, "skipped_other_table");
                }
                let p = Prefix::of(r.dst, r.len);
                if twin::kernel_only(r.dst) {
                    // The kernel's link-local routes on every twin: the data plane has its own.
                    return tally(c, "skipped_link_local");
                }
                if add {
                    if let Some(s) = self.seen.as_mut() {
                        s.insert(p);
                    }
                    self.routes.insert(p, r);
                    self.install(c, p);
                } else if self.routes.remove(&p).is_some() && c.del_linux_route(p) {
                    tally(c, "routes_removed");
                }
            }
            Msg::Nexthop(add, n) => {
                let id = n.id;
                if add {
                    self.nexthops.insert(id, n);
                } else {
                    self.nexthops.remove(&id);
                }
                tally(c, "nexthops");
                // Routes through it (directly or in a group) follow.
                let users: Vec<Prefix> = self
                    .routes
                    .iter()
                    .filter(|(_, r)| r.nh_id.is_some_and(|x| x == id || self.nexthops.get(&x).is_some_and(|g| g.group.contains(&id))))
                    .map(|(p, _)| *p)
                    .collect();
                for p in users {
                    self.install(c, p);
                }
            }
            Msg::Neigh(add, n) => {
                let Some((port, vlan, _, _)) = c.twin_iface(n.ifindex) else { return tally(c, "skipped_foreign_neighbour") };
                let key = (n.ifindex, n.addr);
                match (add, n.mac) {
                    (true, Some(mac)) if n.state & msg::NUD_PERMANENT != 0 => {
                        if c.add_static_neigh(&port, vlan, n.addr, mac).is_ok() {
                            self.neighs.insert(key);
                            tally(c, "neighbours_installed");
                        } else {
                            tally(c, "neighbours_refused");
                        }
                    }
                    (false, _) if self.neighs.remove(&key) => {
                        let _ = c.del_neigh(&port, vlan, n.addr);
                        tally(c, "neighbours_removed");
                    }
                    // Dynamic entries: the kernel learned them from what we handed up;
                    // the data plane resolves its own.
                    _ => tally(c, "neighbours_dynamic"),
                }
            }
            Msg::Addr(add, ifindex, a, len) => {
                let Some((port, vlan, port_index, iface)) = c.twin_iface(ifindex) else { return };
                if twin::kernel_only(a) {
                    return;
                }
                let has = c.iface(iface).is_some_and(|i| i.addrs.contains(&(a, len)));
                let r = match (add, has) {
                    (true, false) => c.add_addr(&port, vlan, port_index, a, len, None).map(|_| "addresses_added"),
                    (false, true) => c.del_addr(&port, vlan, a, len).map(|_| "addresses_removed"),
                    _ => return,
                };
                tally(c, r.unwrap_or("addresses_refused"));
            }
            Msg::Link(..) => tally(c, "links"),
            Msg::Done | Msg::Error(_) | Msg::Other(_) => {}
        }
    }

    /// After a full dump: routes Linux no longer has leave, shadowed ones get another try.
    fn end_resync(&mut self, c: &mut RouterCtl) {
        let Some(seen) = self.seen.take() else { return };
        let gone: Vec<Prefix> = self.routes.keys().filter(|p| !seen.contains(p)).copied().collect();
        for p in gone {
            self.routes.remove(&p);
            if c.del_linux_route(p) {
                tally(c, "routes_removed");
            }
        }
    }
}

/// Decodes one datagram and applies it under one lock; counts malformed messages.
pub fn apply_datagram(m: &mut Mirror, rctl: &Mutex<RouterCtl>, buf: &[u8]) -> bool {
    let mut done = false;
    let mut c = rctl.lock().unwrap_or_else(|e| e.into_inner());
    for x in msg::decode(buf) {
        tally(&mut c, "messages");
        match x {
            Ok(Msg::Done) => done = true,
            Ok(Msg::Error(e)) if e != 0 => {
                // A dump the kernel refuses (no next-hop objects on old kernels) ends it.
                tally(&mut c, "dump_errors");
                done = true;
            }
            Ok(x) => m.apply(&mut c, x),
            Err(_) => tally(&mut c, "malformed"),
        }
    }
    done
}

/// A full dump of next hops, addresses, routes and neighbours on `sock`, applied as it
/// arrives.
fn dump(m: &mut Mirror, sock: &Netlink, rctl: &Mutex<RouterCtl>, seq: &mut u32, buf: &mut [u8]) {
    m.seen = Some(HashSet::new());
    for ty in [msg::RTM_GETNEXTHOP, msg::RTM_GETADDR, msg::RTM_GETROUTE, msg::RTM_GETNEIGH] {
        *seq += 1;
        if sock.send(&msg::dump_request(ty, *seq)).is_err() {
            count(rctl, "dump_errors");
            continue;
        }
        loop {
            match sock.recv(buf, 5000) {
                Ok(Some(n)) => {
                    if apply_datagram(m, rctl, &buf[..n]) {
                        break;
                    }
                }
                // Interrupted dumps (EINTR from the kernel: the table changed meanwhile)
                // and timeouts: the events socket carries what changed.
                Ok(None) | Err(_) => {
                    count(rctl, "dump_errors");
                    break;
                }
            }
        }
    }
    m.end_resync(&mut rctl.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Starts the mirror of `table`: subscribes, dumps, then follows events until `stop`.
///
/// # Errors
/// The netlink sockets cannot be opened (not root, no NETLINK_ROUTE).
pub fn spawn(table: u32, rctl: Arc<Mutex<RouterCtl>>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    // Subscribe before dumping: a change during the dump is then seen after it.
    let rcvbuf = std::env::var(RCVBUF_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(RCVBUF);
    let events = Netlink::open(&msg::GROUPS, rcvbuf)?;
    let dumps = Netlink::open(&[], RCVBUF)?;
    std::thread::Builder::new().name("pmds-netlink".into()).spawn(move || {
        let mut m = Mirror::new(table);
        let mut buf = vec![0u8; 1 << 20];
        let mut seq = 0;
        dump(&mut m, &dumps, &rctl, &mut seq, &mut buf);
        while !stop.load(Ordering::Relaxed) {
            match events.recv(&mut buf, 100) {
                Ok(Some(n)) => {
                    apply_datagram(&mut m, &rctl, &buf[..n]);
                }
                Ok(None) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    count(&rctl, "overruns");
                    dump(&mut m, &dumps, &rctl, &mut seq, &mut buf);
                    count(&rctl, "resyncs");
                }
                Err(_) => {
                    count(&rctl, "socket_errors");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;
