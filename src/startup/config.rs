//! `--config FILE`: a TOML file that says everything the command line can.
//!
//! ```toml
//! cores = "1"
//! burst = 32
//! stats-interval = 1
//! eal = ["--file-prefix=gw"]
//! xconnect = ["vm1,vm2"]
//! mac-aging = 300
//! static-mac = ["vm3=02:00:00:00:00:03@10"]
//! rxq-affinity = ["vm3:1=1"]
//! ip = ["gw=198.18.1.254/24", "gw=2001:db8:1::fe/64", "up.20=198.18.2.254/24"]
//! route = ["198.19.0.0/16=via:198.18.2.1", "0.0.0.0/0=blackhole"]
//! mtu = ["up.20=1500"]
//! vxlan = ["5001=br0,local=198.18.20.1,remote=198.18.20.2"]
//! host-if = ["gw=gw0"]
//! linux-routes = "main"
//!
//! [ports]
//! vm1 = "vhost-server:/run/pmdswitch/vm1.sock"
//! vm2 = "vhost-client:/run/pmdswitch/vm2.sock"
//! vm3 = "vhost-server:/run/pmdswitch/vm3.sock"
//! gw = "vhost-server:/run/pmdswitch/gw.sock"
//! up = "pci:0000:3b:00.0"
//!
//! [bridge]
//! br0 = ["vm3", "up"]
//!
//! [vlan]
//! vm3 = "access:10"
//! up = "trunk:10,20"
//!
//! [queues]
//! vm3 = 2
//! ```
//!
//! The same switch in structured tables (what `pmdswitch ctl show config` prints); both
//! forms load, and may be mixed:
//!
//! ```toml
//! cores = "1"
//! xconnect = ["vm1,vm2"]
//!
//! [ports.vm1]
//! spec = "vhost-server:/run/pmdswitch/vm1.sock"
//! [ports.vm2]
//! spec = "vhost-client:/run/pmdswitch/vm2.sock"
//! [ports.vm3]
//! spec = "vhost-server:/run/pmdswitch/vm3.sock"
//! queues = 2
//! [ports.gw]
//! spec = "vhost-server:/run/pmdswitch/gw.sock"
//! [ports.up]
//! spec = "pci:0000:3b:00.0"
//!
//! [bridges.br0]
//! members = ["vm3", "up"]
//! vlan = { vm3 = "access:10", up = "trunk:10,20" }
//! static-macs = ["vm3=02:00:00:00:00:03@10"]
//!
//! [interfaces.gw]
//! addresses = ["198.18.1.254/24", "2001:db8:1::fe/64"]
//! host-if = "gw0"
//! [interfaces."up.20"]
//! addresses = ["198.18.2.254/24"]
//! mtu = 1500
//!
//! [routes]
//! "198.19.0.0/16" = "via:198.18.2.1"
//! "0.0.0.0/0" = "blackhole"
//!
//! [vxlans.5001]
//! bridge = "br0"
//! local = "198.18.20.1"
//! remote = ["198.18.20.2"]
//! ```
//!
//! Ports keep the file's order (it decides the round-robin of rx queues to workers).
//! Options given on the command line win over the file; ports and xconnects of both are
//! combined. Every error names the file, line and column.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::cli::RunArgs;
use crate::dpdk::mbuf::MAX_BURST;
use crate::parse;
use crate::parse::file_pos as at;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    /// Port → spec, or a table `{ spec, queues, vlan }`.
    #[serde(default)]
    ports: IndexMap<String, Spanned<toml::Value>>,
    /// Structured: bridge → `{ members, vlan, static-macs }`.
    #[serde(default)]
    bridges: IndexMap<String, Spanned<toml::Value>>,
    /// Structured: interface (`PORT` or `PORT.VLAN`) → `{ addresses, mtu, host-if }`.
    #[serde(default)]
    interfaces: IndexMap<String, Spanned<toml::Value>>,
    /// Structured: prefix → target.
    #[serde(default)]
    routes: IndexMap<String, Spanned<String>>,
    /// Structured: VNI → `{ bridge, local, remote, port }`.
    #[serde(default)]
    vxlans: IndexMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    xconnect: Vec<Spanned<String>>,
    /// Bridge name → member ports.
    #[serde(default)]
    bridge: IndexMap<String, Vec<String>>,
    /// Port → VLAN mode.
    #[serde(default)]
    vlan: IndexMap<String, Spanned<String>>,
    mac_aging: Option<u64>,
    mac_capacity: Option<usize>,
    #[serde(default)]
    static_mac: Vec<Spanned<String>>,
    /// Port → rx queues.
    #[serde(default)]
    queues: IndexMap<String, u16>,
    #[serde(default)]
    rxq_affinity: Vec<Spanned<String>>,
    /// Interface addresses, `IFACE=ADDR/LEN`.
    #[serde(default)]
    ip: Vec<Spanned<String>>,
    /// Static routes, `PREFIX=TARGET`.
    #[serde(default)]
    route: Vec<Spanned<String>>,
    /// Interface MTUs, `IFACE=BYTES`.
    #[serde(default)]
    mtu: Vec<Spanned<String>>,
    /// VXLAN segments, `VNI=BRIDGE,local=ADDR,remote=ADDR[+ADDR...]`.
    #[serde(default)]
    vxlan: Vec<Spanned<String>>,
    /// Host interfaces, `IFACE[=NAME]`.
    #[serde(default)]
    host_if: Vec<Spanned<String>>,
    linux_routes: Option<String>,
    cores: Option<Spanned<String>>,
    burst: Option<Spanned<usize>>,
    tx_retries: Option<u32>,
    idle: Option<Spanned<String>>,
    vhost_datapath: Option<Spanned<String>>,
    backpressure_us: Option<u64>,
    idle_threshold_us: Option<u64>,
    stats_interval: Option<f64>,
    stats_json: Option<PathBuf>,
    duration: Option<f64>,
    socket_mode: Option<Spanned<String>>,
    socket_group: Option<String>,
    socket_owner: Option<String>,
    ring_size: Option<u16>,
    mbufs: Option<u32>,
    prometheus: Option<String>,
    #[serde(default)]
    share_main_core: bool,
    #[serde(default)]
    eal: Vec<String>,
    /// `ports` as spec strings, after [`flatten`].
    #[serde(skip)]
    port_specs: IndexMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PortTable {
    spec: String,
    queues: Option<u16>,
    vlan: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BridgeTable {
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    vlan: IndexMap<String, String>,
    #[serde(default)]
    static_macs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct IfaceTable {
    #[serde(default)]
    addresses: Vec<String>,
    mtu: Option<u16>,
    host_if: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct VxlanTable {
    bridge: String,
    local: String,
    remote: Vec<String>,
    port: Option<u16>,
}

/// A structured table's value as `T`, or the error at its place.
fn table<T: serde::de::DeserializeOwned>(v: &Spanned<toml::Value>, what: &str, loc: &str) -> Result<T, String> {
    v.get_ref().clone().try_into::<T>().map_err(|e| format!("{loc}: {what}: {}", e.message().trim().replace('\n', " ")))
}

/// Turns the structured tables into the flag strings the checks below take (each with
/// the place it came from), so both forms meet the same parser and the same errors.
fn flatten(path: &Path, text: &str, f: &mut File, errs: &mut Vec<String>) {
    let mut ports = IndexMap::new();
    for (name, v) in std::mem::take(&mut f.ports) {
        let loc = at(path, text, v.span().start);
        let span = v.span();
        match v.get_ref() {
            toml::Value::String(spec) => {
                ports.insert(name, Spanned::new(span, spec.clone()));
            }
            toml::Value::Table(_) => match table::<PortTable>(&v, &format!("port '{name}'"), &loc) {
                Ok(t) => {
                    if let Some(q) = t.queues {
                        f.queues.insert(name.clone(), q);
                    }
                    if let Some(m) = t.vlan {
                        f.vlan.insert(name.clone(), Spanned::new(span.clone(), m));
                    }
                    ports.insert(name, Spanned::new(span, t.spec));
                }
                Err(e) => errs.push(e),
            },
            _ => errs.push(format!(
                "{loc}: port '{name}' is a spec string or a table: write {name} = \"vdev:net_null0\" or [ports.{name}] spec = \"...\""
            )),
        }
    }
    f.port_specs = ports;
    for (name, v) in std::mem::take(&mut f.bridges) {
        let loc = at(path, text, v.span().start);
        match table::<BridgeTable>(&v, &format!("bridge '{name}'"), &loc) {
            Ok(t) => {
                for (p, m) in t.vlan {
                    f.vlan.insert(p, Spanned::new(v.span(), m));
                }
                for x in t.static_macs {
                    f.static_mac.push(Spanned::new(v.span(), x));
                }
                f.bridge.insert(name, t.members);
            }
            Err(e) => errs.push(e),
        }
    }
    for (name, v) in std::mem::take(&mut f.interfaces) {
        let loc = at(path, text, v.span().start);
        match table::<IfaceTable>(&v, &format!("interface '{name}'"), &loc) {
            Ok(t) => {
                for a in t.addresses {
                    f.ip.push(Spanned::new(v.span(), format!("{name}={a}")));
                }
                if let Some(m) = t.mtu {
                    f.mtu.push(Spanned::new(v.span(), format!("{name}={m}")));
                }
                if let Some(h) = t.host_if {
                    f.host_if.push(Spanned::new(v.span(), format!("{name}={h}")));
                }
            }
            Err(e) => errs.push(e),
        }
    }
    for (prefix, t) in std::mem::take(&mut f.routes) {
        f.route.push(Spanned::new(t.span(), format!("{prefix}={}", t.get_ref())));
    }
    for (vni, v) in std::mem::take(&mut f.vxlans) {
        let loc = at(path, text, v.span().start);
        match table::<VxlanTable>(&v, &format!("vxlan {vni}"), &loc) {
            Ok(t) => {
                let port = t.port.map(|p| format!(",port={p}")).unwrap_or_default();
                f.vxlan.push(Spanned::new(v.span(), format!("{vni}={},local={},remote={}{port}", t.bridge, t.local, t.remote.join("+"))));
            }
            Err(e) => errs.push(e),
        }
    }
}

/// A config file that parsed and passed the checks that need no machine state.
#[derive(Debug)]
pub struct Config {
    file_args: RunArgs,
}

/// Reads and checks `path`; on failure returns every error found, each one line.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read config {}: {e}", path.display())])?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Config, Vec<String>> {
    let mut f: File = toml::from_str(text).map_err(|e| {
        let loc = e.span().map(|s| at(path, text, s.start)).unwrap_or_else(|| path.display().to_string());
        let mut m = e.message().trim().replace('\n', " ");
        if m.contains("expected a sequence") {
            m.push_str(": this key takes a list of strings (e.g. ip = [\"gw=198.18.1.254/24\"]); for a table per object use [interfaces.NAME], [bridges.NAME], [ports.NAME], [routes] or [vxlans.VNI]");
        }
        vec![format!("{loc}: {m}")]
    })?;
    let mut errs = Vec::new();
    flatten(path, text, &mut f, &mut errs);
    let mut ports = Vec::new();
    for (name, spec) in &f.port_specs {
        let arg = format!("{name}={}", spec.get_ref());
        match parse::parse_port(&arg) {
            Ok(_) => ports.push(arg),
            Err(e) => errs.push(format!("{}: {e}", at(path, text, spec.span().start))),
        }
    }
    let mut paired: Vec<&str> = Vec::new();
    for x in &f.xconnect {
        let loc = at(path, text, x.span().start);
        match parse::parse_xconnect(x.get_ref()) {
            Err(e) => errs.push(format!("{loc}: {e}")),
            Ok((a, b)) => {
                for n in [&a, &b] {
                    if !f.port_specs.contains_key(n.as_str()) {
                        errs.push(format!("{loc}: xconnect '{}' names unknown port '{n}': add it under [ports]", x.get_ref()));
                    } else if paired.contains(&n.as_str()) {
                        errs.push(format!("{loc}: port '{n}' is in two xconnects: a port forwards to exactly one peer"));
                    } else {
                        paired.push(f.port_specs.get_key_value(n.as_str()).map(|(k, _)| k.as_str()).unwrap_or(""));
                    }
                }
            }
        }
    }
    for (name, members) in &f.bridge {
        for m in members {
            if !f.port_specs.contains_key(m.as_str()) {
                errs.push(format!("{}: bridge '{name}' names unknown port '{m}': add it under [ports]", path.display()));
            } else if paired.contains(&m.as_str()) {
                errs.push(format!("{}: port '{m}' is in a bridge and in an xconnect (or in two bridges): pick one", path.display()));
            } else {
                paired.push(f.port_specs.get_key_value(m.as_str()).map(|(k, _)| k.as_str()).unwrap_or(""));
            }
        }
    }
    for (port, mode) in &f.vlan {
        if let Err(e) = crate::datapath::bridge::vlan::VlanMode::parse(mode.get_ref()) {
            errs.push(format!("{}: port '{port}': {e}", at(path, text, mode.span().start)));
        }
    }
    for x in &f.static_mac {
        if let Err(e) = parse::parse_static_mac(x.get_ref()) {
            errs.push(format!("{}: {e}", at(path, text, x.span().start)));
        }
    }
    for x in &f.rxq_affinity {
        if let Err(e) = parse::parse_affinity(x.get_ref()) {
            errs.push(format!("{}: {e}", at(path, text, x.span().start)));
        }
    }
    for x in &f.ip {
        if let Err(e) = parse::parse_ip_arg(x.get_ref()) {
            errs.push(format!("{}: {e}", at(path, text, x.span().start)));
        }
    }
    for x in &f.route {
        if let Err(e) = parse::parse_route_arg(x.get_ref()) {
            errs.push(format!("{}: {e}", at(path, text, x.span().start)));
        }
    }
    for x in &f.vxlan {
        if let Err(e) = crate::datapath::vxlan::parse_vxlan(x.get_ref()) {
            errs.push(format!("{}: {e}", at(path, text, x.span().start)));
        }
    }
    for x in &f.mtu {
        if let Err(e) = parse::parse_mtu_arg(x.get_ref()) {
            errs.push(format!("{}: {e}", at(path, text, x.span().start)));
        }
    }
    if let Some(c) = &f.cores {
        if let Err(e) = parse::parse_cores(c.get_ref()) {
            errs.push(format!("{}: {e}", at(path, text, c.span().start)));
        }
    }
    if let Some(b) = &f.burst {
        if *b.get_ref() == 0 || *b.get_ref() > MAX_BURST {
            errs.push(format!("{}: burst {} is out of range: use 1 to {MAX_BURST}", at(path, text, b.span().start), b.get_ref()));
        }
    }
    if let Some(v) = &f.vhost_datapath {
        if !matches!(v.get_ref().as_str(), "lib" | "own") {
            errs.push(format!(
                "{}: vhost-datapath '{}' is not a data path: use \"own\" or \"lib\"",
                at(path, text, v.span().start),
                v.get_ref()
            ));
        }
    }
    if let Some(i) = &f.idle {
        if !matches!(i.get_ref().as_str(), "poll" | "adaptive") {
            errs.push(format!("{}: idle '{}' is not a mode: use \"poll\" or \"adaptive\"", at(path, text, i.span().start), i.get_ref()));
        }
    }
    if let Some(m) = &f.socket_mode {
        match u32::from_str_radix(m.get_ref(), 8) {
            Ok(v) if v <= 0o777 && v & 0o002 == 0 => {}
            Ok(_) => errs.push(format!(
                "{}: socket-mode {} is world-writable or not a mode: use \"660\"",
                at(path, text, m.span().start),
                m.get_ref()
            )),
            Err(_) => errs.push(format!("{}: socket-mode '{}' is not octal: use \"660\"", at(path, text, m.span().start), m.get_ref())),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        file_args: RunArgs {
            config: Some(path.to_path_buf()),
            ports,
            xconnects: f.xconnect.iter().map(|x| x.get_ref().clone()).collect(),
            bridges: f.bridge.iter().map(|(n, m)| format!("{n}={}", m.join(","))).collect(),
            vlans: f.vlan.iter().map(|(p, m)| format!("{p}={}", m.get_ref())).collect(),
            mac_aging: f.mac_aging,
            mac_capacity: f.mac_capacity,
            static_macs: f.static_mac.iter().map(|x| x.get_ref().clone()).collect(),
            queues: f.queues.iter().map(|(p, n)| format!("{p}={n}")).collect(),
            rxq_affinity: f.rxq_affinity.iter().map(|x| x.get_ref().clone()).collect(),
            ips: f.ip.iter().map(|x| x.get_ref().clone()).collect(),
            routes: f.route.iter().map(|x| x.get_ref().clone()).collect(),
            mtus: f.mtu.iter().map(|x| x.get_ref().clone()).collect(),
            vxlans: f.vxlan.iter().map(|x| x.get_ref().clone()).collect(),
            host_ifs: f.host_if.iter().map(|x| x.get_ref().clone()).collect(),
            linux_routes: f.linux_routes,
            cores: f.cores.map(|c| c.into_inner()),
            burst: f.burst.map(|b| b.into_inner()),
            tx_retries: f.tx_retries,
            idle: f.idle.map(|i| i.into_inner()),
            vhost_datapath: f.vhost_datapath.map(|v| v.into_inner()),
            backpressure_us: f.backpressure_us,
            idle_threshold_us: f.idle_threshold_us,
            stats_interval: f.stats_interval,
            stats_json: f.stats_json,
            duration: f.duration,
            socket_mode: f.socket_mode.map(|m| m.into_inner()),
            socket_group: f.socket_group,
            socket_owner: f.socket_owner,
            ring_size: f.ring_size,
            mbufs: f.mbufs,
            prometheus: f.prometheus,
            ctl: None,
            share_main_core: f.share_main_core,
            verbose: false,
            eal: f.eal,
        },
    })
}

impl Config {
    /// The file's settings under the command line's: options from `cli` win; ports and
    /// xconnects are the file's followed by the command line's; EAL arguments from the
    /// command line replace the file's when given.
    pub fn merge(self, cli: RunArgs) -> RunArgs {
        let f = self.file_args;
        RunArgs {
            config: cli.config,
            ports: f.ports.into_iter().chain(cli.ports).collect(),
            xconnects: f.xconnects.into_iter().chain(cli.xconnects).collect(),
            bridges: f.bridges.into_iter().chain(cli.bridges).collect(),
            vlans: f.vlans.into_iter().chain(cli.vlans).collect(),
            mac_aging: cli.mac_aging.or(f.mac_aging),
            mac_capacity: cli.mac_capacity.or(f.mac_capacity),
            static_macs: f.static_macs.into_iter().chain(cli.static_macs).collect(),
            queues: f.queues.into_iter().chain(cli.queues).collect(),
            rxq_affinity: f.rxq_affinity.into_iter().chain(cli.rxq_affinity).collect(),
            ips: f.ips.into_iter().chain(cli.ips).collect(),
            routes: f.routes.into_iter().chain(cli.routes).collect(),
            mtus: f.mtus.into_iter().chain(cli.mtus).collect(),
            vxlans: f.vxlans.into_iter().chain(cli.vxlans).collect(),
            host_ifs: f.host_ifs.into_iter().chain(cli.host_ifs).collect(),
            linux_routes: cli.linux_routes.or(f.linux_routes),
            cores: cli.cores.or(f.cores),
            burst: cli.burst.or(f.burst),
            tx_retries: cli.tx_retries.or(f.tx_retries),
            idle: cli.idle.or(f.idle),
            vhost_datapath: cli.vhost_datapath.or(f.vhost_datapath),
            backpressure_us: cli.backpressure_us.or(f.backpressure_us),
            idle_threshold_us: cli.idle_threshold_us.or(f.idle_threshold_us),
            stats_interval: cli.stats_interval.or(f.stats_interval),
            stats_json: cli.stats_json.or(f.stats_json),
            duration: cli.duration.or(f.duration),
            socket_mode: cli.socket_mode.or(f.socket_mode),
            socket_group: cli.socket_group.or(f.socket_group),
            socket_owner: cli.socket_owner.or(f.socket_owner),
            ring_size: cli.ring_size.or(f.ring_size),
            mbufs: cli.mbufs.or(f.mbufs),
            prometheus: cli.prometheus.or(f.prometheus),
            ctl: cli.ctl,
            share_main_core: cli.share_main_core || f.share_main_core,
            verbose: cli.verbose,
            eal: if cli.eal.is_empty() { f.eal } else { cli.eal },
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} ports, {} xconnects, {} bridges",
            self.file_args.ports.len(),
            self.file_args.xconnects.len(),
            self.file_args.bridges.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        parse(Path::new("t.toml"), text).unwrap_err()
    }

    #[test]
    fn good_file_and_merge() {
        let text = "cores = \"1\"\nburst = 64\neal = [\"--file-prefix=x\"]\nxconnect = [\"b,a\"]\n[ports]\nb = \"vhost-server:/tmp/b.sock\"\na = \"vdev:net_null0\"\n";
        let c = parse(Path::new("t.toml"), text).unwrap();
        assert_eq!(c.summary(), "2 ports, 1 xconnects, 0 bridges");
        let cli = RunArgs { burst: Some(16), ports: vec!["c=vdev:net_ring0".into()], ..Default::default() };
        let m = c.merge(cli);
        // File order kept, CLI ports after; CLI options win; file options fill in.
        assert_eq!(m.ports, ["b=vhost-server:/tmp/b.sock", "a=vdev:net_null0", "c=vdev:net_ring0"]);
        assert_eq!(m.burst, Some(16));
        assert_eq!(m.cores.as_deref(), Some("1"));
        assert_eq!(m.eal, ["--file-prefix=x"]);
    }

    #[test]
    fn module_doc_example_parses_and_plans() {
        // The example at the top of this file, verbatim.
        let text = crate::parse::doc_toml(include_str!("config.rs"));
        let c = parse(Path::new("doc.toml"), &text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(c.summary(), "5 ports, 1 xconnects, 1 bridges");
        let a = c.merge(RunArgs::default());
        assert_eq!(a.bridges, ["br0=vm3,up"]);
        assert_eq!(a.vlans, ["vm3=access:10", "up=trunk:10,20"]);
        assert_eq!(a.queues, ["vm3=2"]);
        assert_eq!(a.static_macs, ["vm3=02:00:00:00:00:03@10"]);
        assert_eq!(a.ips.len(), 3);
        assert_eq!(a.routes, ["198.19.0.0/16=via:198.18.2.1", "0.0.0.0/0=blackhole"]);
    }

    /// The structured example in the module doc loads as the same switch as the flat one.
    #[test]
    fn structured_doc_example_is_the_flat_one() {
        let src = include_str!("config.rs");
        let second = &src[src.find("//! ```toml\n").unwrap() + 10..];
        let text = crate::parse::doc_toml(second);
        let flat = parse(Path::new("doc.toml"), &crate::parse::doc_toml(src)).unwrap().merge(RunArgs::default());
        let s = parse(Path::new("doc2.toml"), &text).unwrap_or_else(|e| panic!("{e:?}\n{text}")).merge(RunArgs::default());
        assert_eq!(s.ports, flat.ports);
        assert_eq!(s.bridges, flat.bridges);
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(sorted(s.vlans), sorted(flat.vlans));
        assert_eq!(s.queues, flat.queues);
        assert_eq!(s.static_macs, flat.static_macs);
        assert_eq!(s.ips, flat.ips);
        assert_eq!(s.mtus, flat.mtus);
        assert_eq!(s.routes, flat.routes);
        assert_eq!(s.vxlans, flat.vxlans);
        assert_eq!(s.host_ifs, flat.host_ifs);
    }

    #[test]
    fn structured_errors_name_their_table() {
        let e = errs("[ports.a]\nspec = \"vdev:net_null0\"\nqueus = 2\n");
        assert!(e[0].starts_with("t.toml:1:") && e[0].contains("port 'a'") && e[0].contains("unknown field `queus`"), "{e:?}");
        let e = errs("[interfaces.a]\naddresses = [\"198.18.0.1/33\"]\n[ports]\na = \"vdev:net_null0\"\n");
        assert!(e[0].starts_with("t.toml:1:") && e[0].contains("198.18.0.1/33"), "{e:?}");
        // The mistake the flat form invites gets the way out in its answer.
        let e = errs("[ip]\na = [\"198.18.0.1/24\"]\n");
        assert!(e[0].contains("[interfaces.NAME]"), "{e:?}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = errs("burst = 32\ncores = \n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.toml:2:"), "{e:?}");
        let e = errs("[ports]\na = \"vdev:net_null0\"\na = \"vdev:net_null1\"\n");
        assert!(e[0].starts_with("t.toml:3:") && e[0].contains("duplicate"), "{e:?}");
        let e = errs("bogus-key = 1\n");
        assert!(e[0].starts_with("t.toml:1:1") && e[0].contains("unknown field"), "{e:?}");
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_place() {
        let text = "xconnect = [\"a,zz\", \"a\"]\ncores = \"x\"\nburst = 0\nsocket-mode = \"666\"\n[ports]\na = \"vhost:/tmp/a\"\nb = \"vdev:net_null0\"\n";
        let e = errs(text);
        assert_eq!(e.len(), 6, "{e:#?}");
        assert!(e.iter().any(|m| m.starts_with("t.toml:6:5") && m.contains("unknown kind 'vhost'")), "{e:#?}");
        assert!(e.iter().any(|m| m.starts_with("t.toml:1:13") && m.contains("unknown port 'zz'")), "{e:#?}");
        assert!(e.iter().any(|m| m.starts_with("t.toml:1:21") && m.contains("malformed")), "{e:#?}");
        assert!(e.iter().any(|m| m.starts_with("t.toml:2:9") && m.contains("core list")), "{e:#?}");
        assert!(e.iter().any(|m| m.starts_with("t.toml:3:9") && m.contains("burst 0")), "{e:#?}");
        assert!(e.iter().any(|m| m.starts_with("t.toml:4:15") && m.contains("world-writable")), "{e:#?}");
    }
}
