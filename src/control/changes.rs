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
use crate::control::ports::Opener;
use crate::datapath::bridge::fwd::Bridge;
use crate::datapath::bridge::table::MacTable;
use crate::datapath::bridge::vlan::VlanMode;
use crate::datapath::reload::ReloadBarrier;
use crate::parse::{self, PortSpec};
use crate::startup::preflight;

/// First words of the commands handled here (the rest are read-only, on the ctl thread).
pub fn is_change(word: &str) -> bool {
    matches!(word, "add-port" | "del-port" | "xconnect" | "del-xconnect" | "bridge" | "rebalance")
}

pub struct Control {
    pub opener: Opener,
    pub barrier: Arc<ReloadBarrier>,
    pub mac_capacity: usize,
    pub mac_aging_ms: u64,
}

impl Control {
    pub fn handle(&mut self, plane: &mut Plane, words: &[String]) -> String {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let r = match w.as_slice() {
            ["add-port", name, spec, opts @ ..] => self.add_port(plane, name, spec, opts),
            ["del-port", name] => self.del_port(plane, name),
            ["xconnect", pair] => self.xconnect(plane, pair),
            ["del-xconnect", name] => self.del_xconnect(plane, name),
            ["rebalance"] => {
                let n = plane.rebalance(&self.barrier);
                let mut owners: Vec<String> = plane
                    .owner
                    .iter()
                    .filter_map(|(&(p, q), &w)| Some(format!("{}:{q}=core {}", plane.ports[p].as_ref()?.def.name, plane.cores[w])))
                    .collect();
                owners.sort();
                Ok(format!("{n} rx queue(s) moved by measured cycles; {}", owners.join(", ")))
            }
            ["bridge", "add-port", br, port, opts @ ..] => self.bridge_add(plane, br, port, opts),
            ["bridge", "del-port", br, port] => self.bridge_del(plane, br, port),
            ["bridge", "flush", br, rest @ ..] => self.bridge_flush(plane, br, rest.first().copied()),
            ["bridge", "add-mac", br, mac, port] => self.bridge_mac(plane, br, mac, Some(port)),
            ["bridge", "del-mac", br, mac] => self.bridge_mac(plane, br, mac, None),
            ["bridge", "set", br, opts @ ..] if !opts.is_empty() => self.bridge_set(plane, br, opts),
            _ => Err(format!(
                "'{}' is not a complete command: add-port NAME SPEC [queues=N], del-port NAME, xconnect A,B, del-xconnect A, bridge add-port|del-port BR PORT [vlan=MODE], bridge flush BR [PORT], bridge add-mac BR MAC[@VLAN] PORT, bridge del-mac BR MAC[@VLAN], bridge set BR aging=SECS capacity=N, rebalance",
                w.join(" ")
            )),
        };
        match r {
            Ok(m) => format!("ok: {m}\n"),
            Err(e) => format!("error: {e}\n"),
        }
    }

    fn port(plane: &Plane, name: &str) -> Result<usize, String> {
        plane.index_of(name).ok_or_else(|| format!("no port '{name}': see show ports"))
    }

    fn add_port(&mut self, plane: &mut Plane, name: &str, spec: &str, opts: &[&str]) -> Result<String, String> {
        let def = parse::parse_port(&format!("{name}={spec}"))?;
        if plane.index_of(name).is_some() {
            return Err(format!("port '{name}' exists: pick another name or del-port it first"));
        }
        if let Some(e) = plane.ports.iter().flatten().find(|e| crate::control::ports::same_resource(&e.def.spec, &def.spec)) {
            return Err(format!("port '{}' already uses {}: each port needs its own socket or device", e.def.name, def.spec));
        }
        let mut queues = 1;
        for o in opts {
            match o.split_once('=') {
                Some(("queues", n)) => queues = parse::parse_queues(&format!("{name}={n}"))?.1,
                _ => return Err(format!("option '{o}' is unknown: use queues=N")),
            }
        }
        match &def.spec {
            PortSpec::VhostServer(p) => preflight::check_server_socket(name, p)?,
            PortSpec::VhostClient(p) => preflight::check_socket_dir(name, p)?,
            PortSpec::Pci(_) => {
                return Err("PCI ports can only be given at start (the EAL probes only allow-listed devices): restart with --port".into())
            }
            PortSpec::Vdev(_) => {}
        }
        let i = plane.free_index().ok_or("the port table is full (64 ports): del-port one first")?;
        let e = self.opener.open(&def, queues, VlanMode::default(), plane.baseline(i))?;
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
        }
    }

    fn xconnect(&mut self, plane: &mut Plane, pair: &str) -> Result<String, String> {
        let (a, b) = parse::parse_xconnect(pair)?;
        let (ia, ib) = (Self::port(plane, &a)?, Self::port(plane, &b)?);
        Self::free(plane, ia, &a)?;
        Self::free(plane, ib, &b)?;
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

    fn bridge_add(&mut self, plane: &mut Plane, br: &str, port: &str, opts: &[&str]) -> Result<String, String> {
        let i = Self::port(plane, port)?;
        Self::free(plane, i, port)?;
        let mut vlan = VlanMode::default();
        for o in opts {
            match o.split_once('=') {
                Some(("vlan", m)) => vlan = VlanMode::parse(m)?,
                _ => return Err(format!("option '{o}' is unknown: use vlan=access:VID or vlan=trunk:VIDS")),
            }
        }
        let b = match plane.bridges.iter().position(|b| b.name == br) {
            Some(b) => b,
            None => {
                parse::parse_bridge(&format!("{br}=x,y"))?;
                let table = Arc::new(MacTable::new(self.mac_capacity, self.mac_aging_ms, plane.workers()));
                let current = Arc::new(Bridge::new(table.clone(), Vec::new()));
                plane.bridges.push(BridgeEntry { name: br.to_string(), table, members: Vec::new(), current });
                plane.bridges.len() - 1
            }
        };
        if let Some(e) = plane.ports[i].as_mut() {
            e.rule = Rule::Bridge(b);
            e.vlan = vlan;
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

    fn bridge_set(&mut self, plane: &mut Plane, br: &str, opts: &[&str]) -> Result<String, String> {
        let b = Self::bridge(plane, br)?;
        let t = &plane.bridges[b].table;
        for o in opts {
            match o.split_once('=') {
                Some(("aging", v)) => {
                    t.set_aging(v.parse::<u64>().map_err(|_| format!("aging '{v}' is not a number of seconds"))?.saturating_mul(1000))
                }
                Some(("capacity", v)) => t.set_capacity(v.parse().map_err(|_| format!("capacity '{v}' is not a number"))?)?,
                _ => return Err(format!("option '{o}' is unknown: use aging=SECS or capacity=N")),
            }
        }
        Ok(format!("bridge {br}: aging {} s, capacity {}", t.aging_ms() / 1000, t.capacity()))
    }

    fn bridge_mac(&mut self, plane: &mut Plane, br: &str, mac: &str, port: Option<&str>) -> Result<String, String> {
        let b = Self::bridge(plane, br)?;
        let (m, vlan) = parse::parse_mac_vlan(mac)?;
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
