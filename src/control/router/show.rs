//! What `ctl ip show`, `route show`, `neigh show` and `show router` print: a table, or
//! JSON with `--json` (the field names are an interface scripts rely on).

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::{json, Value};

use super::{Origin, Prefix, RouterCtl};
use crate::datapath::route::nexthop::{Kind, GROUP_BIT};
use crate::parse::mac_str;

impl RouterCtl {
    fn iface_name(&self, i: u16) -> String {
        self.iface(i).map_or_else(|| format!("#{i}"), |x| x.name.clone())
    }

    /// A FIB value as the hops it reaches: (kind, interface, gateway, MAC) each.
    fn hops_of(&self, value: u32) -> Vec<Value> {
        let ids: Vec<u32> = if value & GROUP_BIT != 0 {
            let mut b = self.rt.nh.buckets(value & !GROUP_BIT);
            b.sort_unstable();
            b.dedup();
            b
        } else {
            vec![value]
        };
        ids.iter()
            .map(|&id| {
                let h = self.rt.nh.hop(id);
                let gw = self.neigh.by_nh.get(&id).map(|(_, a)| a.to_string());
                let iface = match h.kind {
                    Kind::Forward | Kind::Resolve | Kind::Glean => Some(self.iface_name(h.iface)),
                    _ => None,
                };
                let mac = (h.kind == Kind::Forward).then(|| mac_str(&h.mac));
                json!({"next_hop": id, "kind": h.kind.name(), "interface": iface, "gateway": gw, "mac": mac})
            })
            .collect()
    }

    pub fn show_ip(&self, as_json: bool) -> String {
        let v: Vec<Value> = self
            .ifaces
            .iter()
            .flatten()
            .map(|i| {
                json!({"interface": i.name, "index": i.index, "port": i.port, "vlan": i.vlan, "mac": mac_str(&i.mac), "mtu": i.mtu,
                       "addresses": i.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>()})
            })
            .collect();
        if as_json {
            return format!("{}\n", Value::Array(v));
        }
        let mut o = format!("{:<16} {:<18} {:>5}  addresses\n", "interface", "mac", "mtu");
        for i in self.ifaces.iter().flatten() {
            let a: Vec<String> = i.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect();
            let _ = writeln!(o, "{:<16} {:<18} {:>5}  {}", i.name, mac_str(&i.mac), i.mtu, a.join(" "));
        }
        o
    }

    /// Routes, sorted by family, prefix and length; `only` limits to one prefix.
    pub fn show_routes(&self, as_json: bool, only: Option<Prefix>, limit: usize) -> String {
        let mut keys: Vec<&Prefix> = self.routes.keys().filter(|p| only.is_none_or(|o| o == **p)).collect();
        keys.sort();
        let total = keys.len();
        keys.truncate(limit);
        let origin = |o: &Origin| match o {
            Origin::Static(t) | Origin::Linux(t) => t.to_string(),
            Origin::Local(i) | Origin::Connected(i) | Origin::Host(i) => format!("dev:{}", self.iface_name(*i)),
        };
        if as_json {
            let v: Vec<Value> = keys
                .iter()
                .map(|p| {
                    let r = &self.routes[p];
                    json!({"prefix": p.to_string(), "origin": r.origin.name(), "target": origin(&r.origin), "next_hops": self.hops_of(r.value)})
                })
                .collect();
            return format!("{}\n", json!({"routes": v, "total": total, "fib_v4": self.rt.fib4.len(), "fib_v6": self.rt.fib6.len()}));
        }
        let mut o = format!("{:<44} {:<10} target\n", "prefix", "origin");
        for p in &keys {
            let r = &self.routes[*p];
            let _ = writeln!(o, "{:<44} {:<10} {}", p.to_string(), r.origin.name(), origin(&r.origin));
        }
        if total > keys.len() {
            let _ = writeln!(o, "... {} more (route show --json, or route show PREFIX)", total - keys.len());
        }
        o
    }

    pub fn show_neigh(&self, as_json: bool) -> String {
        let mut v: Vec<_> = self.neigh.map.values().collect();
        v.sort_by_key(|n| (n.iface, n.ip));
        let row = |n: &&super::neigh::Neigh| {
            json!({"interface": self.iface_name(n.iface), "address": n.ip.to_string(), "mac": n.mac.map(|m| mac_str(&m)),
                   "state": if n.is_static { "static" } else { n.state.name() }, "waiting": n.pending.len(), "routes": n.refs,
                   "host_route": n.host_route, "next_hop": n.nh, "age_s": n.since.elapsed().as_secs()})
        };
        if as_json {
            return format!("{}\n", Value::Array(v.iter().map(row).collect()));
        }
        let mut o = format!("{:<12} {:<40} {:<18} {:<11} {:>7}\n", "interface", "address", "mac", "state", "waiting");
        for n in v {
            let _ = writeln!(
                o,
                "{:<12} {:<40} {:<18} {:<11} {:>7}",
                self.iface_name(n.iface),
                n.ip.to_string(),
                n.mac.map_or("-".into(), |m| mac_str(&m)),
                if n.is_static { "static" } else { n.state.name() },
                n.pending.len()
            );
        }
        o
    }

    pub fn router_json(&self) -> Value {
        let s = &self.stats;
        let (g4, max) = self.rt.fib4.groups();
        let (g6, _) = self.rt.fib6.groups();
        json!({
            "interfaces": self.ifaces.iter().flatten().count(),
            "routes": {"v4": self.rt.fib4.len(), "v6": self.rt.fib6.len()},
            "fib_groups": {"v4": g4, "v6": g6, "max": max},
            "fib_bytes": self.rt.fib4.memory_bytes() + self.rt.fib6.memory_bytes(),
            "neighbours": self.neigh.map.len(),
            "punted": s.punts, "arp_in": s.arp_in, "arp_requests_sent": s.arp_requests_sent, "arp_replies_sent": s.arp_replies_sent,
            "nd_in": s.nd_in, "ns_sent": s.ns_sent, "na_sent": s.na_sent, "echo_replies": s.echo_replies,
            "icmp_errors": s.icmp_errors, "icmp_rate_limited": s.icmp_rate_limited, "fragments_sent": s.fragments_sent,
            "resolved": s.resolved, "released": s.released, "drops": s.drops, "inject_full": s.inject_full,
            "host_if": {"up": self.twin_stats.up, "down": self.twin_stats.down, "rate_limited": self.twin_stats.rate_limited,
                        "errors": self.twin_stats.errors, "too_big": self.twin_stats.too_big,
                        "interfaces": self.twins.iter().flatten().filter_map(|t| t.tap.as_ref().map(|t| t.name().to_string())).collect::<Vec<_>>()},
            "linux": s.linux,
        })
    }

    pub fn show_router(&self, as_json: bool) -> String {
        let j = self.router_json();
        if as_json {
            return format!("{j}\n");
        }
        let mut o = String::new();
        if let Some(m) = j.as_object() {
            for (k, v) in m {
                let _ = writeln!(o, "{k:<20} {v}");
            }
        }
        o
    }

    /// The address `a` belongs to one of our interfaces.
    pub fn is_ours(&self, a: IpAddr) -> bool {
        self.ifaces.iter().flatten().any(|i| i.owns(a))
    }
}
