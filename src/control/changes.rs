//! Run-time changes from `pmdswitch ctl`, applied by the main thread (which owns the
//! port table) and handed to the workers with [`Plane::publish`]: each worker takes its
//! new poll list at its reload point, so ports untouched by a change keep forwarding
//! (their rings are not touched; the worker only swaps handles between two bursts).
//!
//! Removing a port goes in this order: rules that send to it are withdrawn, the workers
//! take plans without it (and drop their handles), then the port is stopped and closed.
//! Every answer is one line: `ok: ...` or `error: PROBLEM: FIX`.

use std::sync::Arc;

use crate::control::plane::{BridgeEntry, Plane, PortRt, Rule};
use crate::control::ports::same_resource;
use crate::control::ports::Opener;
use crate::control::protocol::{Change, RouterCmd};
use crate::control::router::Prefix;
use crate::datapath::bridge::fwd::Bridge;
use crate::datapath::bridge::table::MacTable;
use crate::datapath::bridge::vlan::VlanMode;
use crate::datapath::reload::ReloadBarrier;
use crate::parse::{PortDef, PortSpec};
use crate::startup::preflight;

/// A router command's answer: one `ok:` line, or a show's output as it is.
enum Reply {
    Line(String),
    Raw(String),
}

pub struct Control {
    pub opener: Opener,
    pub barrier: Arc<ReloadBarrier>,
    pub mac_capacity: usize,
    pub mac_aging_ms: u64,
}

impl Control {
    /// Applies one change; the answer is one line, `ok: ...` or `error: ...`.
    pub fn handle(&mut self, plane: &mut Plane, change: &Change, json: bool) -> String {
        let r = match change {
            Change::Router(cmd) => match self.router(plane, cmd, json) {
                // A show answers with its table or JSON as it is.
                Ok(Reply::Raw(t)) => return t,
                Ok(Reply::Line(m)) => Ok(m),
                Err(e) => Err(e),
            },
            Change::AddPort { def, queues } => self.add_port(plane, def, *queues),
            Change::DelPort { name } => self.del_port(plane, name),
            Change::Xconnect { a, b } => self.xconnect(plane, a, b),
            Change::DelXconnect { port } => self.del_xconnect(plane, port),
            Change::Rebalance => {
                let n = plane.rebalance(&self.barrier);
                let mut owners: Vec<String> = plane
                    .owner
                    .iter()
                    .filter_map(|(&(p, q), &w)| Some(format!("{}:{q}=core {}", plane.ports[p].as_ref()?.def.name, plane.cores[w])))
                    .collect();
                owners.sort();
                Ok(format!("{n} rx queue(s) moved by measured cycles; {}", owners.join(", ")))
            }
            Change::BridgeAddPort { bridge, port, vlan } => self.bridge_add(plane, bridge, port, vlan),
            Change::BridgeDelPort { bridge, port } => self.bridge_del(plane, bridge, port),
            Change::BridgeFlush { bridge, port } => self.bridge_flush(plane, bridge, port.as_deref()),
            Change::BridgeAddMac { bridge, mac, vlan, text, port } => self.bridge_mac(plane, bridge, (*mac, *vlan, text), Some(port)),
            Change::BridgeDelMac { bridge, mac, vlan, text } => self.bridge_mac(plane, bridge, (*mac, *vlan, text), None),
            Change::BridgeSet { bridge, aging_ms, capacity } => self.bridge_set(plane, bridge, *aging_ms, *capacity),
            // The switch object answers these itself (it holds the configuration).
            Change::Reload | Change::ShowConfig => Err("reload and show config are answered by the switch, not the port table".into()),
        };
        match r {
            Ok(m) => format!("ok: {m}\n"),
            Err(e) => format!("error: {e}\n"),
        }
    }

    fn port(plane: &Plane, name: &str) -> Result<usize, String> {
        plane.index_of(name).ok_or_else(|| format!("no port '{name}': see show ports"))
    }

    fn add_port(&mut self, plane: &mut Plane, def: &PortDef, queues: u16) -> Result<String, String> {
        let name = def.name.as_str();
        if plane.index_of(name).is_some() {
            return Err(format!("port '{name}' exists: pick another name or del-port it first"));
        }
        if let Some(e) = plane.ports.iter().flatten().find(|e| same_resource(&e.def.spec, &def.spec)) {
            return Err(format!("port '{}' already uses {}: each port needs its own socket or device", e.def.name, def.spec));
        }
        match &def.spec {
            PortSpec::VhostServer(p) => preflight::check_server_socket(name, p)?,
            PortSpec::VhostClient(p) => preflight::check_socket_dir(name, p)?,
            PortSpec::Pci(_) => {
                return Err("PCI ports can only be given at start (the EAL probes only allow-listed devices): restart with --port".into())
            }
            PortSpec::Vdev(_) => {}
            PortSpec::Vxlan(_) => return Err("VXLAN members come with --vxlan at start".into()),
        }
        let i = plane.free_index().ok_or("the port table is full (64 ports): del-port one first")?;
        let e = self.opener.open(def, queues, VlanMode::default(), plane.baseline(i))?;
        plane.ports[i] = Some(e);
        plane.publish(&self.barrier);
        let cores: Vec<String> = (0..queues).filter_map(|q| plane.owner.get(&(i, q)).map(|&w| plane.cores[w].to_string())).collect();
        Ok(format!(
            "port {name} added ({queues} rx queue(s) on core {}); it forwards nowhere until xconnect or bridge add-port",
            cores.join(",")
        ))
    }

    fn del_port(&mut self, plane: &mut Plane, name: &str) -> Result<String, String> {
        let i = Self::port(plane, name)?;
        for e in plane.ports.iter_mut().flatten() {
            if e.rule == Rule::Xconnect(i) {
                e.rule = Rule::None;
            }
        }
        for b in &mut plane.bridges {
            if b.members.contains(&i) {
                b.members.retain(|&m| m != i);
                b.table.flush(Some(i as u16));
            }
        }
        let e = plane.ports[i].take();
        plane.publish(&self.barrier);
        // No worker holds a handle of it now: stop, close, unregister.
        if let Some(e) = e {
            if let PortRt::Eth(p) = &e.rt {
                p.stop();
            }
            drop(e);
        }
        Ok(format!("port {name} removed"))
    }

    fn free(plane: &Plane, i: usize, name: &str) -> Result<(), String> {
        match plane.ports[i].as_ref().map(|e| e.rule) {
            Some(Rule::None) | None => Ok(()),
            Some(Rule::Xconnect(_)) => Err(format!("port '{name}' is in an xconnect: del-xconnect {name} first")),
            Some(Rule::Bridge(b)) => Err(format!("port '{name}' is in bridge '{}': bridge del-port first", plane.bridges[b].name)),
            Some(Rule::Route) => Err(format!("port '{name}' routes (it has addresses): ip del them first")),
        }
    }

    /// The router's commands; interface changes republish the workers' plans.
    fn router(&mut self, plane: &mut Plane, cmd: &RouterCmd, json: bool) -> Result<Reply, String> {
        let rc = plane.router.clone();
        let line = |r: Result<String, String>| r.map(Reply::Line);
        let r = match cmd {
            RouterCmd::IpAdd { port, vlan, addr, len } => {
                let i = Self::port(plane, port)?;
                if !matches!(plane.ports[i].as_ref().map(|e| e.rule), Some(Rule::None | Rule::Route)) {
                    Self::free(plane, i, port)?;
                }
                let mut g = rc.lock().unwrap_or_else(|e| e.into_inner());
                let r = g.add_addr(port, *vlan, i, *addr, *len, None);
                line(r.and_then(|m| g.twin_follow(port, *vlan, *addr, *len, true).map(|()| m)))
            }
            RouterCmd::IpDel { port, vlan, addr, len } => {
                let mut g = rc.lock().unwrap_or_else(|e| e.into_inner());
                let r = g.del_addr(port, *vlan, *addr, *len);
                line(r.and_then(|m| g.twin_follow(port, *vlan, *addr, *len, false).map(|()| m)))
            }
            RouterCmd::Mtu { port, vlan, mtu } => line(rc.lock().unwrap_or_else(|e| e.into_inner()).set_mtu(port, *vlan, *mtu)),
            RouterCmd::IpShow => Ok(Reply::Raw(rc.lock().unwrap_or_else(|e| e.into_inner()).show_ip(json))),
            RouterCmd::RouteAdd { addr, len, target } => {
                line(rc.lock().unwrap_or_else(|e| e.into_inner()).add_route(Prefix::of(*addr, *len), target))
            }
            RouterCmd::RouteDel { addr, len } => line(rc.lock().unwrap_or_else(|e| e.into_inner()).del_route(Prefix::of(*addr, *len))),
            RouterCmd::RouteShow { prefix } => {
                let p = prefix.map(|(a, l)| Prefix::of(a, l));
                Ok(Reply::Raw(rc.lock().unwrap_or_else(|e| e.into_inner()).show_routes(json, p, if json { usize::MAX } else { 1000 })))
            }
            RouterCmd::RouteLoad { path, del, text } => line(crate::control::router::load::load(&rc, path, text, *del)),
            RouterCmd::NeighAdd { port, vlan, addr, mac } => {
                line(rc.lock().unwrap_or_else(|e| e.into_inner()).add_static_neigh(port, *vlan, *addr, *mac))
            }
            RouterCmd::NeighDel { port, vlan, addr } => line(rc.lock().unwrap_or_else(|e| e.into_inner()).del_neigh(port, *vlan, *addr)),
            RouterCmd::NeighShow => Ok(Reply::Raw(rc.lock().unwrap_or_else(|e| e.into_inner()).show_neigh(json))),
            RouterCmd::ShowRouter => Ok(Reply::Raw(rc.lock().unwrap_or_else(|e| e.into_inner()).show_router(json))),
            RouterCmd::ShowVxlan => Ok(Reply::Raw(plane.show_vxlan(json))),
        };
        if plane.sync_router() {
            plane.publish(&self.barrier);
        }
        r
    }

    fn xconnect(&mut self, plane: &mut Plane, a: &str, b: &str) -> Result<String, String> {
        let (ia, ib) = (Self::port(plane, a)?, Self::port(plane, b)?);
        Self::free(plane, ia, a)?;
        Self::free(plane, ib, b)?;
        for (x, y) in [(ia, ib), (ib, ia)] {
            if let Some(e) = plane.ports[x].as_mut() {
                e.rule = Rule::Xconnect(y);
            }
        }
        plane.publish(&self.barrier);
        Ok(format!("{a} <-> {b}"))
    }

    fn del_xconnect(&mut self, plane: &mut Plane, name: &str) -> Result<String, String> {
        let i = Self::port(plane, name)?;
        let Some(Rule::Xconnect(p)) = plane.ports[i].as_ref().map(|e| e.rule) else {
            return Err(format!("port '{name}' is in no xconnect"));
        };
        for x in [i, p] {
            if let Some(e) = plane.ports[x].as_mut() {
                e.rule = Rule::None;
            }
        }
        plane.publish(&self.barrier);
        Ok(format!("xconnect of {name} removed"))
    }

    fn bridge(plane: &Plane, br: &str) -> Result<usize, String> {
        plane
            .bridges
            .iter()
            .position(|b| b.name == br)
            .ok_or_else(|| format!("no bridge '{br}': see show bridges (bridge add-port creates one)"))
    }

    fn bridge_add(&mut self, plane: &mut Plane, br: &str, port: &str, vlan: &VlanMode) -> Result<String, String> {
        let i = Self::port(plane, port)?;
        Self::free(plane, i, port)?;
        let b = match plane.bridges.iter().position(|b| b.name == br) {
            Some(b) => b,
            None => {
                let table = Arc::new(MacTable::new(self.mac_capacity, self.mac_aging_ms, plane.workers()));
                let current = Arc::new(Bridge::new(table.clone(), Vec::new()));
                plane.bridges.push(BridgeEntry { name: br.to_string(), table, members: Vec::new(), current });
                plane.bridges.len() - 1
            }
        };
        if let Some(e) = plane.ports[i].as_mut() {
            e.rule = Rule::Bridge(b);
            e.vlan = vlan.clone();
        }
        plane.bridges[b].members.push(i);
        plane.publish(&self.barrier);
        Ok(format!("port {port} joined bridge {br}"))
    }

    fn bridge_del(&mut self, plane: &mut Plane, br: &str, port: &str) -> Result<String, String> {
        let b = Self::bridge(plane, br)?;
        let i = Self::port(plane, port)?;
        if !plane.bridges[b].members.contains(&i) {
            return Err(format!("port '{port}' is not in bridge '{br}'"));
        }
        plane.bridges[b].members.retain(|&m| m != i);
        if let Some(e) = plane.ports[i].as_mut() {
            e.rule = Rule::None;
            e.vlan = VlanMode::default();
        }
        plane.publish(&self.barrier);
        let n = plane.bridges[b].table.flush(Some(i as u16));
        Ok(format!("port {port} left bridge {br} ({n} MAC entries flushed)"))
    }

    fn bridge_flush(&mut self, plane: &mut Plane, br: &str, port: Option<&str>) -> Result<String, String> {
        let b = Self::bridge(plane, br)?;
        let p = port.map(|p| Self::port(plane, p)).transpose()?;
        let n = plane.bridges[b].table.flush(p.map(|p| p as u16));
        Ok(format!("{n} MAC entries flushed from {br}"))
    }

    fn bridge_set(&mut self, plane: &mut Plane, br: &str, aging_ms: Option<u64>, capacity: Option<usize>) -> Result<String, String> {
        let b = Self::bridge(plane, br)?;
        let t = &plane.bridges[b].table;
        // The change that can fail first: nothing is half-applied.
        if let Some(c) = capacity {
            t.set_capacity(c)?;
        }
        if let Some(a) = aging_ms {
            t.set_aging(a);
        }
        Ok(format!("bridge {br}: aging {} s, capacity {}", t.aging_ms() / 1000, t.capacity()))
    }

    fn bridge_mac(
        &mut self,
        plane: &mut Plane,
        br: &str,
        (m, vlan, mac): ([u8; 6], u16, &str),
        port: Option<&str>,
    ) -> Result<String, String> {
        let b = Self::bridge(plane, br)?;
        let table = &plane.bridges[b].table;
        match port {
            Some(p) => {
                let i = Self::port(plane, p)?;
                if !plane.bridges[b].members.contains(&i) {
                    return Err(format!("port '{p}' is not in bridge '{br}'"));
                }
                table.add_static(vlan, m, i as u16)?;
                Ok(format!("static {mac} -> {p} in {br}"))
            }
            None if table.remove(vlan, m) => Ok(format!("{mac} removed from {br}")),
            None => Err(format!("{mac} is not in bridge '{br}'")),
        }
    }
}
