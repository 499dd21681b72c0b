//! A reload as a diff: the running configuration and a newly loaded one are compared by
//! name (ports, cross-connects, bridge members with their VLAN modes, static MACs,
//! addresses, MTUs, routes), and the difference becomes the same [`Change`]s `ctl`
//! sends, removals first, then additions. What is not named in the difference is not
//! touched, so a port whose definition did not change keeps forwarding through a reload.
//!
//! What a reload cannot change (cores, EAL arguments, the data path, tunnels, host
//! interfaces, ...) is refused with the setting named: those need a restart.
//! `ctl` changes are recorded in the running configuration as they succeed, so `ctl show
//! config` prints what runs, and a reload makes the switch what the file says.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::config::{Running, SwitchConfig};
use crate::control::protocol::{Change, RouterCmd};
use crate::datapath::bridge::vlan::VlanMode;
use crate::parse::{mac_str as mac_text, PortDef, PortSpec, RouteTarget};

/// Settings only a restart changes: the first one that differs, named.
fn restart_only(old: &SwitchConfig, new: &SwitchConfig) -> Option<&'static str> {
    let d = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    [
        ("cores", d(&old.cores, &new.cores)),
        ("eal", d(&old.eal, &new.eal)),
        ("burst", old.burst != new.burst),
        ("ring-size", old.ring_size != new.ring_size),
        ("idle", old.idle != new.idle || old.idle_us != new.idle_us),
        ("vhost-datapath", d(&old.datapath, &new.datapath)),
        ("ctl", old.ctl != new.ctl),
        ("socket-mode/owner/group", (old.socket_mode, old.socket_uid, old.socket_gid) != (new.socket_mode, new.socket_uid, new.socket_gid)),
        ("rxq-affinity", old.affinity != new.affinity),
        ("vxlan", d(&old.vxlans, &new.vxlans)),
        ("host-if", d(&old.twins, &new.twins)),
        ("linux-routes", old.linux_table != new.linux_table),
        ("tx-retries", old.tx_retries != new.tx_retries),
        ("backpressure-us", old.backpressure_us != new.backpressure_us),
        ("mbufs", old.mbufs != new.mbufs),
        ("prometheus", old.prometheus != new.prometheus),
        ("mac-aging", old.mac_aging_ms != new.mac_aging_ms),
        ("mac-capacity", old.mac_capacity != new.mac_capacity),
    ]
    .into_iter()
    .find(|(_, changed)| *changed)
    .map(|(n, _)| n)
}

/// The changes that make `running` into `new`, removals first; or why a reload cannot.
///
/// # Errors
/// A setting that only a restart changes.
pub fn diff(old: &SwitchConfig, running: &Running, new: &SwitchConfig) -> Result<Vec<Change>, String> {
    if let Some(what) = restart_only(old, new) {
        return Err(format!("'{what}' changed: a reload cannot change it; restart pmdswitch to apply it"));
    }
    Ok(changes(running, &Running::of(new)))
}

/// The changes from `a` to `b`.
pub fn changes(a: &Running, b: &Running) -> Vec<Change> {
    let mut out = Vec::new();
    // A port whose definition changed is removed and added again (with its rules).
    let redefined = |p: &String| a.ports.get(p) != b.ports.get(p);
    for (k, t) in &a.routes {
        if b.routes.get(k) != Some(t) {
            out.push(Change::Router(RouterCmd::RouteDel { addr: k.0, len: k.1 }));
        }
    }
    for ((p, vlan), addrs) in &a.ips {
        let keep = b.ips.get(&(p.clone(), *vlan)).filter(|_| !redefined(p));
        for &(addr, len) in addrs {
            if !keep.is_some_and(|k| k.contains(&(addr, len))) {
                out.push(Change::Router(RouterCmd::IpDel { port: p.clone(), vlan: *vlan, addr, len }));
            }
        }
    }
    for ((br, mac, vlan), p) in &a.statics {
        if b.statics.get(&(br.clone(), *mac, *vlan)) != Some(p) || redefined(p) {
            out.push(Change::BridgeDelMac { bridge: br.clone(), mac: *mac, vlan: *vlan, text: mac_vlan(mac, *vlan) });
        }
    }
    for (br, members) in &a.bridges {
        for (p, v) in members {
            if b.bridge_of(p) != Some((br.as_str(), v)) || redefined(p) {
                out.push(Change::BridgeDelPort { bridge: br.clone(), port: p.clone() });
            }
        }
    }
    for (x, y) in &a.xconnects {
        let same = b.peer_of(x).is_some_and(|(m, n)| (m == x && n == y) || (m == y && n == x));
        if !same || redefined(x) || redefined(y) {
            out.push(Change::DelXconnect { port: x.clone() });
        }
    }
    for p in a.ports.keys() {
        if redefined(p) {
            out.push(Change::DelPort { name: p.clone() });
        }
    }
    for (p, (spec, queues)) in &b.ports {
        if redefined(p) {
            out.push(Change::AddPort { def: PortDef { name: p.clone(), spec: spec.clone() }, queues: *queues });
        }
    }
    for (x, y) in &b.xconnects {
        let same = a.peer_of(x).is_some_and(|(m, n)| (m == x && n == y) || (m == y && n == x));
        if !same || redefined(x) || redefined(y) {
            out.push(Change::Xconnect { a: x.clone(), b: y.clone() });
        }
    }
    for (br, members) in &b.bridges {
        for (p, v) in members {
            if a.bridge_of(p) != Some((br.as_str(), v)) || redefined(p) {
                out.push(Change::BridgeAddPort { bridge: br.clone(), port: p.clone(), vlan: Box::new(v.clone()) });
            }
        }
    }
    for ((br, mac, vlan), p) in &b.statics {
        if a.statics.get(&(br.clone(), *mac, *vlan)) != Some(p) || redefined(p) {
            out.push(Change::BridgeAddMac { bridge: br.clone(), mac: *mac, vlan: *vlan, text: mac_vlan(mac, *vlan), port: p.clone() });
        }
    }
    for ((p, vlan), addrs) in &b.ips {
        let had = a.ips.get(&(p.clone(), *vlan)).filter(|_| !redefined(p));
        for &(addr, len) in addrs {
            if !had.is_some_and(|h| h.contains(&(addr, len))) {
                out.push(Change::Router(RouterCmd::IpAdd { port: p.clone(), vlan: *vlan, addr, len }));
            }
        }
    }
    for ((p, vlan), mtu) in &b.mtus {
        if a.mtus.get(&(p.clone(), *vlan)) != Some(mtu) || redefined(p) {
            out.push(Change::Router(RouterCmd::Mtu { port: p.clone(), vlan: *vlan, mtu: *mtu }));
        }
    }
    for (p, vlan) in a.mtus.keys() {
        if !b.mtus.contains_key(&(p.clone(), *vlan)) && b.ips.contains_key(&(p.clone(), *vlan)) && !redefined(p) {
            out.push(Change::Router(RouterCmd::Mtu { port: p.clone(), vlan: *vlan, mtu: DEFAULT_MTU }));
        }
    }
    for (k, t) in &b.routes {
        if a.routes.get(k) != Some(t) {
            out.push(Change::Router(RouterCmd::RouteAdd { addr: k.0, len: k.1, target: t.clone() }));
        }
    }
    out
}

/// An interface's MTU when none is given (the router's default).
const DEFAULT_MTU: u16 = 1500;

fn mac_vlan(mac: &[u8; 6], vlan: u16) -> String {
    if vlan == 0 {
        mac_text(mac)
    } else {
        format!("{}@{vlan}", mac_text(mac))
    }
}

/// Records a change that succeeded in the running configuration.
pub fn record(r: &mut Running, c: &Change) {
    match c {
        Change::AddPort { def, queues } => {
            r.ports.insert(def.name.clone(), (def.spec.clone(), *queues));
        }
        Change::DelPort { name } => {
            r.ports.shift_remove(name);
            r.xconnects.retain(|(a, b)| a != name && b != name);
            for m in r.bridges.values_mut() {
                m.retain(|(p, _)| p != name);
            }
            r.statics.retain(|_, p| p != name);
            r.ips.retain(|(p, _), _| p != name);
            r.mtus.retain(|(p, _), _| p != name);
        }
        Change::Xconnect { a, b } => r.xconnects.push((a.clone(), b.clone())),
        Change::DelXconnect { port } => r.xconnects.retain(|(a, b)| a != port && b != port),
        Change::BridgeAddPort { bridge, port, vlan } => r.bridges.entry(bridge.clone()).or_default().push((port.clone(), (**vlan).clone())),
        Change::BridgeDelPort { bridge, port } => {
            if let Some(m) = r.bridges.get_mut(bridge) {
                m.retain(|(p, _)| p != port);
            }
            r.statics.retain(|(b, _, _), p| !(b == bridge && p == port));
        }
        Change::BridgeAddMac { bridge, mac, vlan, port, .. } => {
            r.statics.insert((bridge.clone(), *mac, *vlan), port.clone());
        }
        Change::BridgeDelMac { bridge, mac, vlan, .. } => {
            r.statics.remove(&(bridge.clone(), *mac, *vlan));
        }
        Change::Router(RouterCmd::IpAdd { port, vlan, addr, len }) => r.ips.entry((port.clone(), *vlan)).or_default().push((*addr, *len)),
        Change::Router(RouterCmd::IpDel { port, vlan, addr, len }) => {
            let k = (port.clone(), *vlan);
            if let Some(a) = r.ips.get_mut(&k) {
                a.retain(|x| *x != (*addr, *len));
                if a.is_empty() {
                    r.ips.shift_remove(&k);
                    r.mtus.remove(&k);
                }
            }
        }
        Change::Router(RouterCmd::Mtu { port, vlan, mtu }) => {
            r.mtus.insert((port.clone(), *vlan), *mtu);
        }
        Change::Router(RouterCmd::RouteAdd { addr, len, target }) => {
            r.routes.insert((*addr, *len), target.clone());
        }
        Change::Router(RouterCmd::RouteDel { addr, len }) => {
            r.routes.remove(&(*addr, *len));
        }
        // Not part of the configuration: counters, tables learnt, shows, route files
        // (`route load`: the file is the record), neighbours, aging settings.
        _ => {}
    }
}

/// The change that undoes `c`, given the running configuration before it.
pub fn inverse(before: &Running, c: &Change) -> Change {
    match c {
        Change::AddPort { def, .. } => Change::DelPort { name: def.name.clone() },
        Change::DelPort { name } => {
            let (spec, queues) = before.ports.get(name).cloned().unwrap_or((PortSpec::Vdev(String::new()), 1));
            Change::AddPort { def: PortDef { name: name.clone(), spec }, queues }
        }
        Change::Xconnect { a, .. } => Change::DelXconnect { port: a.clone() },
        Change::DelXconnect { port } => {
            let (a, b) = before.peer_of(port).cloned().unwrap_or_default();
            Change::Xconnect { a, b }
        }
        Change::BridgeAddPort { bridge, port, .. } => Change::BridgeDelPort { bridge: bridge.clone(), port: port.clone() },
        Change::BridgeDelPort { bridge, port } => {
            let vlan = before.bridge_of(port).map(|(_, v)| v.clone()).unwrap_or_default();
            Change::BridgeAddPort { bridge: bridge.clone(), port: port.clone(), vlan: Box::new(vlan) }
        }
        Change::BridgeAddMac { bridge, mac, vlan, text, .. } => match before.statics.get(&(bridge.clone(), *mac, *vlan)) {
            Some(p) => Change::BridgeAddMac { bridge: bridge.clone(), mac: *mac, vlan: *vlan, text: text.clone(), port: p.clone() },
            None => Change::BridgeDelMac { bridge: bridge.clone(), mac: *mac, vlan: *vlan, text: text.clone() },
        },
        Change::BridgeDelMac { bridge, mac, vlan, text } => {
            let port = before.statics.get(&(bridge.clone(), *mac, *vlan)).cloned().unwrap_or_default();
            Change::BridgeAddMac { bridge: bridge.clone(), mac: *mac, vlan: *vlan, text: text.clone(), port }
        }
        Change::Router(RouterCmd::IpAdd { port, vlan, addr, len }) => {
            Change::Router(RouterCmd::IpDel { port: port.clone(), vlan: *vlan, addr: *addr, len: *len })
        }
        Change::Router(RouterCmd::IpDel { port, vlan, addr, len }) => {
            Change::Router(RouterCmd::IpAdd { port: port.clone(), vlan: *vlan, addr: *addr, len: *len })
        }
        Change::Router(RouterCmd::Mtu { port, vlan, .. }) => Change::Router(RouterCmd::Mtu {
            port: port.clone(),
            vlan: *vlan,
            mtu: before.mtus.get(&(port.clone(), *vlan)).copied().unwrap_or(DEFAULT_MTU),
        }),
        Change::Router(RouterCmd::RouteAdd { addr, len, .. }) => match before.routes.get(&(*addr, *len)) {
            Some(t) => Change::Router(RouterCmd::RouteAdd { addr: *addr, len: *len, target: t.clone() }),
            None => Change::Router(RouterCmd::RouteDel { addr: *addr, len: *len }),
        },
        Change::Router(RouterCmd::RouteDel { addr, len }) => {
            let target = before.routes.get(&(*addr, *len)).cloned().unwrap_or(RouteTarget::Blackhole);
            Change::Router(RouterCmd::RouteAdd { addr: *addr, len: *len, target })
        }
        other => other.clone(),
    }
}

/// A change as `ctl` would spell it.
pub fn describe(c: &Change) -> String {
    let iface = |p: &str, v: u16| if v == 0 { p.to_string() } else { format!("{p}.{v}") };
    match c {
        Change::AddPort { def, queues } => format!("add-port {} {} queues={queues}", def.name, def.spec),
        Change::DelPort { name } => format!("del-port {name}"),
        Change::Xconnect { a, b } => format!("xconnect {a},{b}"),
        Change::DelXconnect { port } => format!("del-xconnect {port}"),
        Change::BridgeAddPort { bridge, port, vlan } => format!("bridge add-port {bridge} {port} vlan={vlan}"),
        Change::BridgeDelPort { bridge, port } => format!("bridge del-port {bridge} {port}"),
        Change::BridgeAddMac { bridge, text, port, .. } => format!("bridge add-mac {bridge} {text} {port}"),
        Change::BridgeDelMac { bridge, text, .. } => format!("bridge del-mac {bridge} {text}"),
        Change::Router(RouterCmd::IpAdd { port, vlan, addr, len }) => format!("ip add {} {addr}/{len}", iface(port, *vlan)),
        Change::Router(RouterCmd::IpDel { port, vlan, addr, len }) => format!("ip del {} {addr}/{len}", iface(port, *vlan)),
        Change::Router(RouterCmd::Mtu { port, vlan, mtu }) => format!("ip mtu {} {mtu}", iface(port, *vlan)),
        Change::Router(RouterCmd::RouteAdd { addr, len, target }) => format!("route add {addr}/{len} {target}"),
        Change::Router(RouterCmd::RouteDel { addr, len }) => format!("route del {addr}/{len}"),
        other => format!("{other:?}"),
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The running configuration in the config file's structured form (`ctl show config`):
/// loading the output gives the same switch.
pub fn to_toml(c: &SwitchConfig, r: &Running) -> String {
    let mut o = String::from("# the running configuration (pmdswitch ctl show config)\n");
    let _ = writeln!(o, "cores = {}", q(&super::config::compress(&c.cores)));
    let _ = writeln!(o, "burst = {}", c.burst);
    if !c.eal.is_empty() {
        let user: Vec<String> = c.eal.iter().skip(1).map(|e| q(e)).collect();
        let _ = writeln!(o, "# EAL arguments as run (defaults included)\n# eal = [{}]", user.join(", "));
    }
    let _ = writeln!(o, "mac-aging = {}", c.mac_aging_ms / 1000);
    let _ = writeln!(o, "mac-capacity = {}", c.mac_capacity);
    if !r.xconnects.is_empty() {
        let x: Vec<String> = r.xconnects.iter().map(|(a, b)| q(&format!("{a},{b}"))).collect();
        let _ = writeln!(o, "xconnect = [{}]", x.join(", "));
    }
    for (name, (spec, queues)) in &r.ports {
        let _ = writeln!(o, "\n[ports.{}]\nspec = {}", q(name), q(&spec.to_string()));
        if *queues != 1 {
            let _ = writeln!(o, "queues = {queues}");
        }
    }
    for (b, members) in &r.bridges {
        let _ = writeln!(o, "\n[bridges.{}]", q(b));
        let m: Vec<String> = members.iter().map(|(p, _)| q(p)).collect();
        let _ = writeln!(o, "members = [{}]", m.join(", "));
        let tagged: Vec<String> =
            members.iter().filter(|(_, v)| *v != VlanMode::default()).map(|(p, v)| format!("{} = {}", q(p), q(&v.to_string()))).collect();
        if !tagged.is_empty() {
            let _ = writeln!(o, "vlan = {{ {} }}", tagged.join(", "));
        }
        let s: Vec<String> = r
            .statics
            .iter()
            .filter(|((br, _, _), _)| br == b)
            .map(|((_, mac, vlan), p)| q(&format!("{p}={}", mac_vlan(mac, *vlan))))
            .collect();
        if !s.is_empty() {
            let _ = writeln!(o, "static-macs = [{}]", s.join(", "));
        }
    }
    for ((p, vlan), addrs) in &r.ips {
        let name = if *vlan == 0 { p.clone() } else { format!("{p}.{vlan}") };
        let _ = writeln!(o, "\n[interfaces.{}]", q(&name));
        let a: Vec<String> = addrs.iter().map(|(a, l)| q(&format!("{a}/{l}"))).collect();
        let _ = writeln!(o, "addresses = [{}]", a.join(", "));
        if let Some(m) = r.mtus.get(&(p.clone(), *vlan)) {
            let _ = writeln!(o, "mtu = {m}");
        }
    }
    if !r.routes.is_empty() {
        let _ = writeln!(o, "\n[routes]");
        for ((a, l), t) in &r.routes {
            let _ = writeln!(o, "{} = {}", q(&format!("{a}/{l}")), q(&t.to_string()));
        }
    }
    o
}

/// The same as JSON (`ctl show config --json`).
pub fn to_json(c: &SwitchConfig, r: &Running) -> Value {
    json!({
        "cores": c.cores,
        "burst": c.burst,
        "mac_aging_s": c.mac_aging_ms / 1000,
        "mac_capacity": c.mac_capacity,
        "ports": r.ports.iter().map(|(n, (s, q))| (n.clone(), json!({ "spec": s.to_string(), "queues": q }))).collect::<serde_json::Map<_, _>>(),
        "xconnects": r.xconnects.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "bridges": r.bridges.iter().map(|(b, m)| (b.clone(), json!({
            "members": m.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            "vlan": m.iter().map(|(p, v)| (p.clone(), json!(v.to_string()))).collect::<serde_json::Map<_, _>>(),
        }))).collect::<serde_json::Map<_, _>>(),
        "static_macs": r.statics.iter().map(|((b, mac, vlan), p)| json!({ "bridge": b, "mac": mac_vlan(mac, *vlan), "port": p })).collect::<Vec<_>>(),
        "interfaces": r.ips.iter().map(|((p, v), a)| json!({
            "port": p, "vlan": v,
            "addresses": a.iter().map(|(x, l)| format!("{x}/{l}")).collect::<Vec<_>>(),
            "mtu": r.mtus.get(&(p.clone(), *v)),
        })).collect::<Vec<_>>(),
        "routes": r.routes.iter().map(|((a, l), t)| (format!("{a}/{l}"), json!(t.to_string()))).collect::<serde_json::Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunArgs;
    use crate::startup::config;
    use std::path::Path;

    fn running(text: &str) -> Running {
        let a = config::parse(Path::new("t.toml"), text).unwrap().merge(RunArgs::default());
        let mut r = Running::default();
        // By hand what `Running::of` reads from a checked config (no machine checks here).
        for p in &a.ports {
            let d = crate::parse::parse_port(p).unwrap();
            r.ports.insert(d.name, (d.spec, 1));
        }
        for x in &a.xconnects {
            r.xconnects.push(crate::parse::parse_xconnect(x).unwrap());
        }
        for x in &a.routes {
            let (addr, len, t) = crate::parse::parse_route_arg(x).unwrap();
            r.routes.insert((addr, len), t);
        }
        for x in &a.ips {
            let (p, vlan, addr, len) = crate::parse::parse_ip_arg(x).unwrap();
            r.ips.entry((p, vlan)).or_default().push((addr, len));
        }
        for b in &a.bridges {
            let (name, members) = crate::parse::parse_bridge(b).unwrap();
            r.bridges.insert(name, members.into_iter().map(|m| (m, VlanMode::default())).collect());
        }
        r
    }

    const BASE: &str = "xconnect = [\"a,b\"]\nroute = [\"198.19.0.0/16=via:198.18.0.2\"]\nip = [\"g=198.18.0.1/24\"]\n[ports]\na = \"vdev:net_null0\"\nb = \"vdev:net_null1\"\ng = \"vdev:net_null2\"\n";

    #[test]
    fn same_config_no_change_and_untouched_ports_stay() {
        let a = running(BASE);
        assert!(changes(&a, &a).is_empty());
        // A new port and a changed route: nothing about a or b moves.
        let b = running(&BASE.replace("198.18.0.2", "198.18.0.3").replace("[ports]\n", "[ports]\nc = \"vdev:net_null3\"\n"));
        let d: Vec<String> = changes(&a, &b).iter().map(describe).collect();
        assert_eq!(d, ["route del 198.19.0.0/16", "add-port c vdev:net_null3 queues=1", "route add 198.19.0.0/16 via:198.18.0.3"]);
    }

    #[test]
    fn a_redefined_port_leaves_and_returns_with_its_rules() {
        let a = running(BASE);
        let b = running(&BASE.replace("net_null1", "net_null9"));
        let d: Vec<String> = changes(&a, &b).iter().map(describe).collect();
        assert_eq!(d, ["del-xconnect a", "del-port b", "add-port b vdev:net_null9 queues=1", "xconnect a,b"]);
    }

    /// Applying a diff's changes to the running record gives the new config, and their
    /// inverses, applied in reverse, give the old one back: what a refused reload relies on.
    #[test]
    fn record_follows_changes_and_inverses_undo_them() {
        let a = running(BASE);
        let b = running(
            "xconnect = [\"a,c\"]\nip = [\"g=198.18.0.1/24\", \"g=2001:db8::1/64\"]\n[bridge]\nbr = [\"b\", \"d\"]\n[ports]\na = \"vdev:net_null0\"\nb = \"vdev:net_null1\"\nc = \"vdev:net_null5\"\nd = \"vdev:net_null6\"\ng = \"vdev:net_null2\"\n",
        );
        let cs = changes(&a, &b);
        let mut r = a.clone();
        let mut undo = Vec::new();
        for c in &cs {
            undo.push(inverse(&r, c));
            record(&mut r, c);
        }
        assert_eq!(r.ports.keys().collect::<Vec<_>>().len(), b.ports.len());
        assert_eq!(r.xconnects, b.xconnects);
        assert_eq!(r.routes, b.routes);
        assert_eq!(r.ips, b.ips);
        assert_eq!(r.bridges, b.bridges);
        for u in undo.iter().rev() {
            record(&mut r, u);
        }
        assert_eq!(r.xconnects, a.xconnects);
        assert_eq!(r.routes, a.routes);
        assert_eq!(r.ips, a.ips);
        assert!(r.bridges.values().all(Vec::is_empty));
        let mut ports: Vec<_> = r.ports.keys().cloned().collect();
        ports.sort();
        assert_eq!(ports, ["a", "b", "g"]);
    }
}
