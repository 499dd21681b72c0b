//! The switch as it runs: the port table, the forwarding rules, the bridges, and which
//! worker polls which rx queue. Owned by the main thread; every change ends in
//! [`Plane::publish`], which builds each worker's [`WorkerPlan`] afresh and hands it over
//! at the workers' reload point.
//!
//! Rx queue assignment is stable: a queue keeps its worker until `ctl rebalance`, so an
//! ordinary change never has two workers polling one queue, and ports untouched by a
//! change are polled without a gap (their handles are rebuilt, the rings are not). New
//! queues go to `--rxq-affinity`'s worker, else to the worker with the fewest queues
//! (round-robin at start: OVS's `pmd-rxq-assign=roundrobin`). `ctl rebalance` then
//! reassigns by the busy cycles each queue used since the last rebalance (OVS's
//! `pmd-rxq-assign=cycles`: heaviest queue first, to the least loaded worker; pinned
//! queues stay), in two steps so a moved queue is never polled twice: first every worker
//! drops the queues it loses, then the new owners take them.
//!
//! Tx queues: each worker sends on its own tx queue of every egress port, `w % n`; a port
//! with fewer tx queues (or vhost queue pairs) than workers shares them, each a
//! `SharedTxQueue` whose lock counts its contended takes.
//!
//! Plans name queues (`RxSource`, `TxSource`); a worker takes the handles itself at its
//! reload point, after dropping its old plan's, and acknowledges only then. A queue's
//! handle can be taken once (`dpdk::claims`), so a queue that changes worker must be let
//! go by its old one before the new one takes it: hence the two steps of a rebalance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crossbeam::utils::CachePadded;

use crate::control::router::RouterCtl;
use crate::datapath::bridge::fwd::{Bridge, Member};
use crate::datapath::bridge::table::MacTable;
use crate::datapath::bridge::vlan::VlanMode;
use crate::datapath::reload::ReloadBarrier;
use crate::datapath::route::RouteIn;
use crate::datapath::stats::{self, PortTotals, RxqCounters, WorkerStats};
use crate::datapath::vxlan::{Remote, Vtep, VxlanIn};
use crate::datapath::worker::{Action, PollPlan, RxSource, TxSource, WorkerPlan};
use crate::dpdk::ethdev::{EthPort, PortId};
use crate::dpdk::mempool::Mempool;
use crate::dpdk::vhost::{VhostPort, VhostSlot};
use crate::observe::{BridgeMeta, PortMeta, RxqMeta, View};
use crate::parse::PortDef;

pub use crate::datapath::bridge::fwd::MAX_PORTS;

/// A port as it runs.
pub enum PortRt {
    Eth(EthPort),
    Vhost(VhostPort),
    /// A VXLAN tunnel to one remote VTEP: a bridge member with no rx queue of its own.
    Vxlan(Arc<Vtep>),
}

/// Where a port's received packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    None,
    Xconnect(usize),
    /// Member of bridge (index into `Plane::bridges`).
    Bridge(usize),
    /// Routed: the port or a VLAN of it has an address.
    Route,
}

pub struct PortEntry {
    pub def: PortDef,
    pub rt: PortRt,
    /// Rx queues polled (vhost: queue pairs).
    pub queues: u16,
    /// Where workers take their tx queue on this port: worker w takes `tx[w % len]`,
    /// each one a queue of its own, or, when the port has fewer tx queues (ethdev) or
    /// queue pairs (vhost) than there are workers, queues shared under a lock.
    pub tx: Vec<TxSource>,
    pub rxq: Vec<Arc<CachePadded<RxqCounters>>>,
    pub vlan: VlanMode,
    pub rule: Rule,
    /// Counters of this index at the time the port was added (indices are reused).
    pub base: PortTotals,
}

impl PortEntry {
    pub fn slot(&self) -> Option<Arc<VhostSlot>> {
        match &self.rt {
            PortRt::Vhost(v) => Some(v.slot().clone()),
            PortRt::Eth(_) | PortRt::Vxlan(_) => None,
        }
    }

    pub fn eth_id(&self) -> Option<PortId> {
        match &self.rt {
            PortRt::Eth(p) => Some(p.id()),
            PortRt::Vhost(_) | PortRt::Vxlan(_) => None,
        }
    }
}

pub struct BridgeEntry {
    pub name: String,
    pub table: Arc<MacTable>,
    /// Member ports in order.
    pub members: Vec<usize>,
    /// What the workers use, rebuilt when members change.
    pub current: Arc<Bridge>,
}

pub struct Plane {
    pub ports: Vec<Option<PortEntry>>,
    pub bridges: Vec<BridgeEntry>,
    pub cores: Vec<usize>,
    /// (port name, queue) → worker index, from `--rxq-affinity`.
    pub affinity: HashMap<(String, u16), usize>,
    /// (port index, queue) → worker index.
    pub owner: HashMap<(usize, u16), usize>,
    /// Busy cycles of each rx queue at the last rebalance.
    pub cycles_seen: HashMap<(usize, u16), u64>,
    pub pool: Arc<Mempool>,
    pub stats: Vec<Arc<WorkerStats>>,
    pub mailboxes: Vec<Arc<Mutex<Option<WorkerPlan>>>>,
    pub view: Arc<View>,
    /// The router's control plane (shared with its slow-path thread), and what the
    /// workers of routed ports get: the tables and the interface snapshot.
    pub router: Arc<Mutex<RouterCtl>>,
    pub route_in: Arc<RouteIn>,
    pub route_version: u64,
}

impl Plane {
    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.as_ref().is_some_and(|p| p.def.name == name))
    }

    /// A free port index, or None when the table is full.
    pub fn free_index(&self) -> Option<usize> {
        self.ports.iter().position(Option::is_none)
    }

    /// Counters of index `i` now, to start a new port's count from.
    pub fn baseline(&self, i: usize) -> PortTotals {
        stats::port_totals(&self.stats, i)
    }

    /// Gives every rx queue without a worker one: its affinity, else the least loaded.
    pub fn assign(&mut self) {
        let mut load = vec![0usize; self.workers()];
        self.owner.retain(|(p, q), _| self.ports.get(*p).and_then(Option::as_ref).is_some_and(|e| *q < e.queues));
        for w in self.owner.values() {
            load[*w] += 1;
        }
        // Pinned queues first, so that the others balance around them.
        for pinned in [true, false] {
            for (i, e) in self.ports.iter().enumerate() {
                let Some(e) = e else { continue };
                for q in 0..e.queues {
                    if self.owner.contains_key(&(i, q)) {
                        continue;
                    }
                    let w = match (self.affinity.get(&(e.def.name.clone(), q)), pinned) {
                        (Some(&w), true) => w,
                        (None, false) => (0..load.len()).min_by_key(|&w| (load[w], w)).unwrap_or(0),
                        _ => continue,
                    };
                    load[w] += 1;
                    self.owner.insert((i, q), w);
                }
            }
        }
    }

    /// Reassigns unpinned rx queues by the busy cycles they used since the last call (see
    /// the module doc); returns how many queues changed worker.
    pub fn rebalance(&mut self, barrier: &ReloadBarrier) -> usize {
        let mut queues = Vec::new();
        for (i, e) in self.ports.iter().enumerate() {
            let Some(e) = e else { continue };
            for q in 0..e.queues {
                let c = &e.rxq[q as usize];
                let used = c.busy_cycles.load(std::sync::atomic::Ordering::Relaxed);
                let since = used - self.cycles_seen.get(&(i, q)).copied().unwrap_or(0);
                self.cycles_seen.insert((i, q), used);
                queues.push(((i, q), since, self.affinity.get(&(e.def.name.clone(), q)).copied()));
            }
        }
        let new = assign_by_cycles(&queues, self.workers());
        let moved: Vec<(usize, u16)> = new.iter().filter(|(k, w)| self.owner.get(k) != Some(w)).map(|(k, _)| *k).collect();
        if moved.is_empty() {
            return 0;
        }
        // Step 1: nobody polls a queue that moves.
        for k in &moved {
            self.owner.remove(k);
        }
        self.publish_assigned(barrier);
        // Step 2: the new owners take them.
        self.owner = new;
        self.publish_assigned(barrier);
        moved.len()
    }

    /// Takes the router's interface changes: ports with an interface route, those whose
    /// last one went route nothing; the workers' snapshot is rebuilt. True when anything
    /// changed (the caller publishes).
    pub fn sync_router(&mut self) -> bool {
        let r = self.router.lock().unwrap_or_else(|e| e.into_inner());
        if r.version == self.route_version {
            return false;
        }
        self.route_version = r.version;
        self.route_in = Arc::new(RouteIn { router: r.rt.clone(), ifs: r.snapshot.clone(), vxlan: self.route_in.vxlan.clone() });
        let routed = r.routed_ports();
        drop(r);
        for (i, e) in self.ports.iter_mut().enumerate() {
            let Some(e) = e else { continue };
            if routed.contains(&i) {
                e.rule = Rule::Route;
            } else if e.rule == Rule::Route {
                e.rule = Rule::None;
            }
        }
        true
    }

    /// The tunnels that end here, for the router's fast path (None without `--vxlan`):
    /// built from the bridges as the workers will see them.
    fn vxlan_in(&self) -> Option<Arc<VxlanIn>> {
        let mut v = VxlanIn::default();
        for (p, e) in self.ports.iter().enumerate() {
            let Some(e) = e else { continue };
            let (PortRt::Vxlan(t), Rule::Bridge(b)) = (&e.rt, e.rule) else { continue };
            let br = &self.bridges[b].current;
            let Some(member) = br.member(p) else { continue };
            if !v.ends.contains(&(t.local, t.udp_port)) {
                v.ends.push((t.local, t.udp_port));
            }
            v.remotes.push(Remote { vni: t.vni, local: t.local, remote: t.remote, bridge: br.clone(), member, port: p });
        }
        (!v.remotes.is_empty()).then(|| Arc::new(v))
    }

    /// `ctl show vxlan`.
    pub fn show_vxlan(&self, as_json: bool) -> String {
        let name = |i: usize| self.ports.get(i).and_then(Option::as_ref).map_or_else(|| format!("#{i}"), |e| e.def.name.clone());
        let rows: Vec<serde_json::Value> = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let e = e.as_ref()?;
                let PortRt::Vxlan(v) = &e.rt else { return None };
                let bridge = self.bridges.iter().find(|b| b.members.contains(&i)).map(|b| b.name.clone());
                let path = v.path().map(|p| {
                    let mac = crate::parse::mac_str(&p.outer.bytes[0..6].try_into().unwrap_or([0; 6]));
                    serde_json::json!({"underlay": name(p.port), "next_hop_mac": mac, "mtu": p.mtu})
                });
                Some(serde_json::json!({"member": e.def.name, "vni": v.vni, "bridge": bridge, "local": v.local.to_string(),
                    "remote": v.remote.to_string(), "udp_port": v.udp_port, "path": path}))
            })
            .collect();
        if as_json {
            return format!("{}\n", serde_json::json!({ "tunnels": rows }));
        }
        let mut o = format!("{:<12} {:>8} {:<10} {:<16} {:<16} {:>5}  path\n", "member", "vni", "bridge", "local", "remote", "port");
        for r in &rows {
            let path = match &r["path"] {
                serde_json::Value::Null => "unresolved (route or neighbour to the remote not known yet)".to_string(),
                p => format!(
                    "via {} to {} (mtu {})",
                    p["underlay"].as_str().unwrap_or("?"),
                    p["next_hop_mac"].as_str().unwrap_or("?"),
                    p["mtu"]
                ),
            };
            o.push_str(&format!(
                "{:<12} {:>8} {:<10} {:<16} {:<16} {:>5}  {path}\n",
                r["member"].as_str().unwrap_or(""),
                r["vni"],
                r["bridge"].as_str().unwrap_or("-"),
                r["local"].as_str().unwrap_or(""),
                r["remote"].as_str().unwrap_or(""),
                r["udp_port"]
            ));
        }
        if rows.is_empty() {
            o.push_str("(no VXLAN segments: --vxlan VNI=BRIDGE,local=ADDR,remote=ADDR at start)\n");
        }
        o
    }

    /// The tunnels' VTEPs (the main loop resolves their paths).
    pub fn vteps(&self) -> Vec<Arc<Vtep>> {
        self.ports.iter().flatten().filter_map(|e| if let PortRt::Vxlan(v) = &e.rt { Some(v.clone()) } else { None }).collect()
    }

    /// Rebuilds the workers' view of every bridge (after a membership or VLAN change),
    /// and the tunnels' way into them.
    pub fn rebuild_bridges(&mut self) {
        for b in &mut self.bridges {
            let members =
                b.members.iter().filter_map(|&p| self.ports[p].as_ref().map(|e| Member { port: p, vlan: e.vlan.clone() })).collect();
            b.current = Arc::new(Bridge::new(b.table.clone(), members));
        }
        let vxlan = self.vxlan_in();
        if vxlan.is_some() || self.route_in.vxlan.is_some() {
            self.route_in = Arc::new(RouteIn { router: self.route_in.router.clone(), ifs: self.route_in.ifs.clone(), vxlan });
        }
    }

    /// One worker's plan from the current state: the rx queues it polls, and a tx queue
    /// on every port some rule sends to.
    fn plan_for(&self, w: usize) -> WorkerPlan {
        let mut polls = Vec::new();
        let mut keys: Vec<(usize, u16)> = self.owner.iter().filter(|(_, &o)| o == w).map(|(k, _)| *k).collect();
        keys.sort_unstable();
        for (p, q) in keys {
            let Some(e) = &self.ports[p] else { continue };
            let rx = match &e.rt {
                PortRt::Eth(port) => RxSource::Eth(port.rx_source(q)),
                PortRt::Vhost(v) => RxSource::Vhost(v.rx_source(q, &self.pool), self.pool.clone()),
                // Received on the underlay (see `vxlan_in`).
                PortRt::Vxlan(_) => continue,
            };
            let action = match e.rule {
                Rule::None => Action::Drop,
                Rule::Xconnect(peer) => Action::Xconnect(peer),
                Rule::Bridge(b) => {
                    let br = &self.bridges[b].current;
                    match br.member(p) {
                        Some(m) => Action::Bridge(br.clone(), m),
                        None => Action::Drop,
                    }
                }
                Rule::Route => Action::Route(self.route_in.clone()),
            };
            polls.push(PollPlan { rx, rx_port: p, action, counters: e.rxq[q as usize].clone() });
        }
        let egress: Vec<bool> = (0..self.ports.len())
            .map(|i| {
                self.ports.iter().flatten().any(|e| e.rule == Rule::Xconnect(i))
                    || self.ports[i].as_ref().is_some_and(|e| matches!(e.rule, Rule::Bridge(_) | Rule::Route))
            })
            .collect();
        let txs = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let e = e.as_ref().filter(|_| egress[i])?;
                e.tx.get(w % e.tx.len().max(1)).cloned()
            })
            .collect();
        WorkerPlan { polls, txs }
    }

    /// Hands every worker its new plan and returns once all running workers took it (the
    /// old plans, and their queue handles, are dropped by then). Also refreshes the view.
    pub fn publish(&mut self, barrier: &ReloadBarrier) {
        self.assign();
        self.publish_assigned(barrier);
    }

    /// `publish` without assigning: queues without an owner are not polled.
    fn publish_assigned(&mut self, barrier: &ReloadBarrier) {
        self.rebuild_bridges();
        for w in 0..self.workers() {
            let plan = self.plan_for(w);
            *self.mailboxes[w].lock().unwrap_or_else(|e| e.into_inner()) = Some(plan);
        }
        self.refresh_view();
        barrier.request_and_wait();
    }

    /// The plan each worker starts with (before its thread runs).
    pub fn initial_plans(&mut self) -> Vec<WorkerPlan> {
        self.assign();
        self.rebuild_bridges();
        self.refresh_view();
        (0..self.workers()).map(|w| self.plan_for(w)).collect()
    }

    pub fn refresh_view(&self) {
        let ports = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let e = e.as_ref()?;
                let mut rxqs: Vec<RxqMeta> = (0..e.queues)
                    .map(|q| RxqMeta {
                        queue: q,
                        core: self.owner.get(&(i, q)).map(|&w| self.cores[w]),
                        counters: e.rxq[q as usize].clone(),
                    })
                    .collect();
                rxqs.sort_by_key(|r| r.queue);
                Some(PortMeta {
                    index: i,
                    name: e.def.name.clone(),
                    kind: e.def.spec.kind(),
                    spec: e.def.spec.to_string(),
                    slot: e.slot(),
                    eth: e.eth_id(),
                    base: e.base,
                    rxqs,
                    shared_tx: e.tx.iter().filter_map(|s| if let TxSource::Shared(q) = s { Some(q.clone()) } else { None }).collect(),
                    rule: match e.rule {
                        Rule::None => "none".into(),
                        Rule::Xconnect(p) => format!("xconnect {}", self.ports[p].as_ref().map_or("?", |x| x.def.name.as_str())),
                        Rule::Bridge(b) => format!("bridge {}", self.bridges[b].name),
                        Rule::Route => "route".into(),
                    },
                })
            })
            .collect();
        let bridges = self
            .bridges
            .iter()
            .map(|b| BridgeMeta {
                name: b.name.clone(),
                table: b.table.clone(),
                members: b
                    .members
                    .iter()
                    .filter_map(|&p| self.ports[p].as_ref().map(|e| (p, e.def.name.clone(), e.vlan.to_string())))
                    .collect(),
            })
            .collect();
        self.view.set(ports, bridges);
    }
}

/// `pmd-rxq-assign=cycles`: pinned queues go to their worker; the others, heaviest first
/// (ties by key, so the result is deterministic), each to the worker with the fewest
/// cycles so far (ties to the fewest queues, then the lowest index). `queues` is
/// ((port, queue), busy cycles, pinned worker).
pub fn assign_by_cycles(queues: &[((usize, u16), u64, Option<usize>)], workers: usize) -> HashMap<(usize, u16), usize> {
    let mut load = vec![(0u64, 0usize); workers.max(1)];
    let mut out = HashMap::new();
    for &(k, c, pin) in queues {
        if let Some(w) = pin.filter(|&w| w < load.len()) {
            load[w].0 += c;
            load[w].1 += 1;
            out.insert(k, w);
        }
    }
    let mut free: Vec<_> = queues.iter().filter(|q| !out.contains_key(&q.0)).collect();
    free.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for &&(k, c, _) in &free {
        let w = (0..load.len()).min_by_key(|&w| (load[w].0, load[w].1, w)).unwrap_or(0);
        load[w].0 += c;
        load[w].1 += 1;
        out.insert(k, w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_assignment_spreads_heavy_queues_and_keeps_pins() {
        // Two heavy queues that round-robin had put on one worker get split.
        let q = [((0, 0), 900, None), ((0, 1), 10, None), ((1, 0), 800, None), ((1, 1), 20, None)];
        let a = assign_by_cycles(&q, 2);
        assert_ne!(a[&(0, 0)], a[&(1, 0)], "{a:?}");
        // Each light queue lands on the lighter worker of the moment.
        assert_eq!(a[&(1, 1)], a[&(1, 0)]);
        assert_eq!(a[&(0, 1)], a[&(1, 0)]);
        // A pinned queue stays, and the rest balance around it.
        let q = [((0, 0), 900, Some(1)), ((0, 1), 800, None), ((1, 0), 100, None)];
        let a = assign_by_cycles(&q, 2);
        assert_eq!(a[&(0, 0)], 1);
        assert_eq!(a[&(0, 1)], 0);
        assert_eq!(a[&(1, 0)], 0);
        // Idle queues are still spread by count.
        let q = [((0, 0), 0, None), ((0, 1), 0, None), ((1, 0), 0, None), ((1, 1), 0, None)];
        let a = assign_by_cycles(&q, 2);
        assert_eq!(a.values().filter(|&&w| w == 0).count(), 2);
        // One worker: everything there.
        assert!(assign_by_cycles(&q, 1).values().all(|&w| w == 0));
    }
}
