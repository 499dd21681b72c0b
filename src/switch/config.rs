//! The switch's configuration: one typed [`SwitchConfig`] that the command line, the
//! TOML file (`startup::config`) and a reload all produce, checked whole before anything
//! touches DPDK. Every error names the problem and the fix.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::cli::RunArgs;
use crate::control::client;
use crate::control::linux;
use crate::control::plane::MAX_PORTS;
use crate::control::ports::same_resource;
use crate::control::router::neigh::Timing;
use crate::control::router::{self, Prefix, RouterCtl};
use crate::datapath::bridge::table;
use crate::datapath::bridge::vlan::VlanMode;
use crate::datapath::route::qsbr::Qsbr;
use crate::datapath::route::{Router, RouterSize};
use crate::datapath::vxlan::{self, VxlanSpec};
use crate::datapath::worker::IdleMode;
use crate::dpdk::ethdev;
use crate::dpdk::mbuf::MAX_BURST;
use crate::dpdk::vhost::Datapath;
use crate::parse::{self, PortDef, PortSpec, RouteTarget};
use crate::startup::{self, preflight, usage, Failure, PoolNeed};

/// A checked switch configuration: nothing here has touched DPDK yet. Ports are named by
/// index into `ports` everywhere else in it.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    pub ports: Vec<PortDef>,
    /// For each port index, the port it forwards to.
    pub peer: Vec<Option<usize>>,
    pub cores: Vec<usize>,
    pub eal: Vec<String>,
    pub socket_mode: u32,
    pub socket_gid: Option<u32>,
    pub socket_uid: Option<u32>,
    pub burst: usize,
    /// `--ring-size` (None: per device, see `ethdev::ring_for`).
    pub ring_size: Option<u16>,
    pub idle: IdleMode,
    pub datapath: Datapath,
    pub idle_us: u64,
    /// Control socket path.
    pub ctl: PathBuf,
    /// The file prefix we chose (none when the user gave one).
    pub own_prefix: Option<String>,
    /// Bridges: name and member port indices.
    pub bridges: Vec<(String, Vec<usize>)>,
    /// Per port: VLAN mode (bridge members only).
    pub vlans: Vec<VlanMode>,
    /// Static MAC entries: port index, MAC, VLAN.
    pub statics: Vec<(usize, [u8; 6], u16)>,
    /// Per port: rx queues.
    pub queues: Vec<u16>,
    /// Rx queue pins: port name, queue, core.
    pub affinity: Vec<(String, u16, usize)>,
    pub mac_aging_ms: u64,
    pub mac_capacity: usize,
    /// Interface addresses: port index, VLAN, address, prefix length.
    pub ips: Vec<(usize, u16, std::net::IpAddr, u8)>,
    /// Interface MTUs: port index, VLAN, MTU.
    pub mtus: Vec<(usize, u16, u16)>,
    pub routes: Vec<(std::net::IpAddr, u8, parse::RouteTarget)>,
    /// VXLAN segments and their bridges' indices.
    pub vxlans: Vec<(VxlanSpec, usize)>,
    /// Host interfaces: port index, VLAN, Linux name.
    pub twins: Vec<(usize, u16, String)>,
    /// `--linux-routes`: the table mirrored.
    pub linux_table: Option<u32>,
    /// Retries of a full egress ring before its frames are dropped (`--tx-retries`).
    pub tx_retries: u32,
    /// How long frames for a full guest ring are held (`--backpressure-us`).
    pub backpressure_us: u64,
    /// `--mbufs` (None: sized from the ports, see `pool_size`).
    pub mbufs: Option<u32>,
    /// `--prometheus`, as ADDR:PORT.
    pub prometheus: Option<String>,
    pub share_main_core: bool,
    pub verbose: bool,
    /// The CPUs this process may use, as seen at start.
    pub allowed: Vec<usize>,
}

impl SwitchConfig {
    /// The command line merged over its `--config` file (the command line wins), then
    /// checked whole. Returns the merged arguments too: the edge reads its own options
    /// (`--stats-interval`, `--duration`, `--stats-json`) from them.
    ///
    /// # Errors
    /// The first problem found, as one line naming the fix (a file's errors with
    /// file:line:column).
    pub fn load(cli: &RunArgs) -> Result<(RunArgs, SwitchConfig), Failure> {
        Self::load_with(cli, None)
    }

    /// [`SwitchConfig::load`] for a reload: the sockets, hugepages and host interfaces
    /// that `held` (the running switch) already owns are not checked as if they were
    /// someone else's.
    ///
    /// # Errors
    /// As [`SwitchConfig::load`].
    pub fn load_with(cli: &RunArgs, held: Option<(&Running, &[usize])>) -> Result<(RunArgs, SwitchConfig), Failure> {
        let merged = match &cli.config {
            Some(path) => crate::startup::config::load(path).map_err(|mut errs| Failure::Usage(errs.remove(0)))?.merge(cli.clone()),
            None => cli.clone(),
        };
        let c = from_args(&merged, held)?;
        Ok((merged, c))
    }

    /// Index of the port named `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}

/// Everything that can be checked without DPDK: each error names the problem and the fix.
///
/// `held`: on a reload, what the running switch owns (its ports' sockets, its control
/// socket, its hugepages and host interfaces), which must not be refused as taken.
pub fn from_args(a: &RunArgs, held: Option<(&Running, &[usize])>) -> Result<SwitchConfig, Failure> {
    let mut ports: Vec<PortDef> = Vec::new();
    for p in &a.ports {
        let d = parse::parse_port(p).map_err(Failure::Usage)?;
        if ports.iter().any(|q| q.name == d.name) {
            return usage(format!("port '{}' is named twice: give each --port a unique name", d.name));
        }
        if let Some(q) = ports.iter().find(|q| same_resource(&q.spec, &d.spec)) {
            return usage(format!("ports '{}' and '{}' both use {}: each port needs its own socket or device", q.name, d.name, d.spec));
        }
        ports.push(d);
    }
    if ports.is_empty() {
        return usage("no ports: add at least one --port NAME=SPEC, e.g. --port a=vhost-server:/tmp/a.sock");
    }
    let index: HashMap<&str, usize> = ports.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
    let mut peer = vec![None; ports.len()];
    for x in &a.xconnects {
        let (l, r) = parse::parse_xconnect(x).map_err(Failure::Usage)?;
        let mut ids = [0; 2];
        for (k, n) in [&l, &r].into_iter().enumerate() {
            ids[k] = *index
                .get(n.as_str())
                .ok_or_else(|| Failure::Usage(format!("xconnect '{x}' names unknown port '{n}': define it with --port {n}=SPEC")))?;
            if peer[ids[k]].is_some() {
                return usage(format!("port '{n}' is in two xconnects: a port forwards to exactly one peer"));
            }
        }
        peer[ids[0]] = Some(ids[1]);
        peer[ids[1]] = Some(ids[0]);
    }
    if ports.len() > MAX_PORTS {
        return usage(format!("{} ports: pmdswitch handles at most {MAX_PORTS}", ports.len()));
    }
    let mut bridges: Vec<(String, Vec<usize>)> = Vec::new();
    let mut in_bridge: Vec<Option<usize>> = vec![None; ports.len()];
    for b in &a.bridges {
        let (name, members) = parse::parse_bridge(b).map_err(Failure::Usage)?;
        if bridges.iter().any(|(n, _)| *n == name) {
            return usage(format!("bridge '{name}' is defined twice: give each --bridge a unique name"));
        }
        let mut ids = Vec::new();
        for m in &members {
            let i = *index
                .get(m.as_str())
                .ok_or_else(|| Failure::Usage(format!("bridge '{name}' names unknown port '{m}': define it with --port {m}=SPEC")))?;
            if peer[i].is_some() || in_bridge[i].is_some() {
                return usage(format!("port '{m}' is in bridge '{name}' and in another bridge or xconnect: a port has one rule"));
            }
            in_bridge[i] = Some(bridges.len());
            ids.push(i);
        }
        bridges.push((name, ids));
    }
    // VXLAN segments: a bridge member per remote VTEP, named vxVNI-K.
    let mut vxlans: Vec<(VxlanSpec, usize)> = Vec::new();
    for x in &a.vxlans {
        let s = vxlan::parse_vxlan(x).map_err(Failure::Usage)?;
        let b = bridges
            .iter()
            .position(|(n, _)| *n == s.bridge)
            .ok_or_else(|| Failure::Usage(format!("--vxlan {x}: no bridge '{}': define it with --bridge {}=PORTS", s.bridge, s.bridge)))?;
        if vxlans.iter().any(|(o, _)| o.vni == s.vni) {
            return usage(format!("--vxlan {x}: VNI {} is given twice: one --vxlan per VNI, its remotes joined by '+'", s.vni));
        }
        for k in 1..=s.remotes.len() {
            let n = vxlan::member_name(s.vni, k);
            if index.contains_key(n.as_str()) {
                return usage(format!("--vxlan {x}: port name '{n}' is taken: rename that port (vxVNI-K names the tunnel's members)"));
            }
        }
        vxlans.push((s, b));
    }
    for (b, (name, members)) in bridges.iter().enumerate() {
        if members.len() < 2 && !vxlans.iter().any(|(_, x)| *x == b) {
            return usage(format!("bridge '{name}' needs at least two ports: write --bridge {name}=A,B (or join it to other hosts with --vxlan VNI={name},...)"));
        }
    }
    let tunnels: usize = vxlans.iter().map(|(s, _)| s.remotes.len()).sum();
    if ports.len() + tunnels > MAX_PORTS {
        return usage(format!("{} ports and {tunnels} VXLAN remotes: pmdswitch handles at most {MAX_PORTS} ports", ports.len()));
    }
    let mut vlans = vec![VlanMode::default(); ports.len()];
    for v in &a.vlans {
        let (p, mode) = v
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--vlan '{v}' has no '=': write PORT=access:VID or PORT=trunk:VIDS")))?;
        let i = *index.get(p).ok_or_else(|| Failure::Usage(format!("--vlan names unknown port '{p}': define it with --port {p}=SPEC")))?;
        if in_bridge[i].is_none() {
            return usage(format!("--vlan {v}: port '{p}' is in no bridge: VLANs apply to bridge ports (add it to a --bridge)"));
        }
        vlans[i] = VlanMode::parse(mode).map_err(|e| Failure::Usage(format!("--vlan {v}: {e}")))?;
    }
    let mut statics = Vec::new();
    for x in &a.static_macs {
        let (p, mac, vlan) = parse::parse_static_mac(x).map_err(Failure::Usage)?;
        let i = *index
            .get(p.as_str())
            .ok_or_else(|| Failure::Usage(format!("--static-mac names unknown port '{p}': define it with --port {p}=SPEC")))?;
        if in_bridge[i].is_none() {
            return usage(format!("--static-mac {x}: port '{p}' is in no bridge: add it to a --bridge"));
        }
        if mac[0] & 1 == 1 {
            return usage(format!("--static-mac {x}: a group (multicast) address cannot be a station: use a unicast MAC"));
        }
        statics.push((i, mac, vlan));
    }
    let mut queues = vec![1u16; ports.len()];
    for q in &a.queues {
        let (p, n) = parse::parse_queues(q).map_err(Failure::Usage)?;
        let i = *index
            .get(p.as_str())
            .ok_or_else(|| Failure::Usage(format!("--queues names unknown port '{p}': define it with --port {p}=SPEC")))?;
        queues[i] = n;
    }
    let mut ips = Vec::new();
    for x in &a.ips {
        let (p, vlan, addr, len) = parse::parse_ip_arg(x).map_err(Failure::Usage)?;
        let i = *index
            .get(p.as_str())
            .ok_or_else(|| Failure::Usage(format!("--ip {x} names unknown port '{p}': define it with --port {p}=SPEC")))?;
        if peer[i].is_some() || in_bridge[i].is_some() {
            return usage(format!("--ip {x}: port '{p}' is in an xconnect or bridge: a port has one rule (routed ports have addresses)"));
        }
        ips.push((i, vlan, addr, len));
    }
    let mut mtus = Vec::new();
    for x in &a.mtus {
        let (p, vlan, mtu) = parse::parse_mtu_arg(x).map_err(Failure::Usage)?;
        let i = *index
            .get(p.as_str())
            .ok_or_else(|| Failure::Usage(format!("--mtu {x} names unknown port '{p}': define it with --port {p}=SPEC")))?;
        if !ips.iter().any(|(j, v, _, _)| *j == i && *v == vlan) {
            return usage(format!("--mtu {x}: interface has no address: give it one with --ip"));
        }
        mtus.push((i, vlan, mtu));
    }
    let (twins, linux_table) = plan_twins(a, &index, &ips, held.is_some())?;
    let mut routes = Vec::new();
    for x in &a.routes {
        routes.push(parse::parse_route_arg(x).map_err(|e| Failure::Usage(format!("--route {x}: {e}")))?);
    }
    // Addresses and routes checked now, by the router's own code on a throw-away table,
    // so that a mistake is one line before anything starts.
    if !ips.is_empty() || !routes.is_empty() {
        let size = RouterSize { fib_groups: 1 << 16, next_hops: 1 << 12, ecmp_groups: 64, punt_buffers: 1 };
        let mut dry = RouterCtl::new(Arc::new(Router::new(size, Arc::new(Qsbr::new(0)), 1)), Timing::default());
        for &(i, vlan, addr, len) in &ips {
            dry.add_addr(&ports[i].name, vlan, i, addr, len, None).map_err(|e| Failure::Usage(format!("--ip {}: {e}", ports[i].name)))?;
        }
        for (addr, len, t) in &routes {
            dry.add_route(Prefix::of(*addr, *len), t).map_err(|e| Failure::Usage(format!("--route {addr}/{len}={t}: {e}")))?;
        }
    }
    let mac_aging_ms = a.mac_aging.map_or(table::DEFAULT_AGING_MS, |s| s.saturating_mul(1000));
    let mac_capacity = a.mac_capacity.unwrap_or(table::DEFAULT_CAPACITY);
    if mac_capacity == 0 || mac_capacity > table::MAX_CAPACITY {
        return usage(format!("--mac-capacity {mac_capacity} is out of range: use 1 to {}", table::MAX_CAPACITY));
    }
    let datapath = match a.vhost_datapath.as_deref().unwrap_or("own") {
        "lib" => Datapath::Lib,
        "own" => Datapath::Own,
        other => return usage(format!("--vhost-datapath '{other}' is not a data path: use own or lib")),
    };
    let idle = match a.idle.as_deref().unwrap_or("poll") {
        "poll" => IdleMode::Poll,
        "adaptive" => IdleMode::Adaptive,
        other => return usage(format!("--idle '{other}' is not a mode: use poll or adaptive")),
    };
    if a.backpressure_us.is_some_and(|us| us > 1_000_000) {
        return usage("--backpressure-us is out of range: use 0 to 1000000 (one second)");
    }
    let idle_us = a.idle_threshold_us.unwrap_or(200);
    if idle_us == 0 || idle_us > 10_000_000 {
        return usage(format!("--idle-threshold-us {idle_us} is out of range: use 1 to 10000000"));
    }
    if let Some(p) = &a.prometheus {
        let addr = if p.contains(':') { p.clone() } else { format!("127.0.0.1:{p}") };
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return usage(format!("--prometheus '{p}' is not [ADDR:]PORT: use e.g. 9464 or 127.0.0.1:9464"));
        }
    }
    // Default control socket: one per EAL file prefix, so `pmdswitch ctl` finds a lone
    // instance by itself and parallel instances never collide.
    let ctl = match &a.ctl {
        Some(p) => p.clone(),
        None => {
            let prefix = startup::eal_prefix(&a.eal).unwrap_or_else(|| format!("pmdswitch-{}", std::process::id()));
            PathBuf::from(client::DEFAULT_DIR).join(format!("{prefix}.ctl"))
        }
    };
    if a.ctl.is_some() && held.is_none() {
        preflight::check_server_socket("ctl", &ctl).map_err(Failure::Usage)?;
    }
    let burst = a.burst.unwrap_or(32);
    if burst == 0 || burst > MAX_BURST {
        return usage(format!("--burst {burst} is out of range: use 1 to {MAX_BURST}"));
    }
    let mode_text = a.socket_mode.as_deref().unwrap_or("660");
    let socket_mode = u32::from_str_radix(mode_text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| Failure::Usage(format!("--socket-mode '{mode_text}' is not an octal mode: use e.g. 660")))?;
    if socket_mode & 0o002 != 0 {
        return usage(format!("--socket-mode {:o} makes sockets world-writable: anyone could attach a VM; use 660 or 600", socket_mode));
    }
    let ring_size = a.ring_size;
    if let Some(r) = ring_size.filter(|&r| r < 64) {
        return usage(format!("--ring-size {r} is too small: use 64 or more (default 1024, or a virtio-user port's queue_size)"));
    }
    // Written so that NaN fails too.
    let secs_ok = |v: f64, zero_ok: bool| v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0));
    if !secs_ok(a.stats_interval.unwrap_or(0.0), true) || a.duration.is_some_and(|d| !secs_ok(d, false)) {
        return usage("--stats-interval and --duration take a positive number of seconds");
    }

    // On a reload this thread runs pinned to the main core (EAL init): the CPUs the
    // process was allowed at start count.
    let allowed = held.map_or_else(preflight::allowed_cpus, |h| h.1.to_vec());
    let main_core = preflight::main_core_from_eal(&a.eal).unwrap_or_else(|| allowed.first().copied().unwrap_or(0));
    let cores = match &a.cores {
        Some(s) => parse::parse_cores(s).map_err(Failure::Usage)?,
        None => match allowed.iter().find(|&&c| c != main_core) {
            Some(&c) => vec![c],
            None => {
                return usage(format!(
                    "no CPU left for a worker besides the main core {main_core}: give --cores and move the main core with -- -l N"
                ))
            }
        },
    };
    let mut affinity = Vec::new();
    for x in &a.rxq_affinity {
        let (p, q, core) = parse::parse_affinity(x).map_err(Failure::Usage)?;
        let i = *index
            .get(p.as_str())
            .ok_or_else(|| Failure::Usage(format!("--rxq-affinity names unknown port '{p}': define it with --port {p}=SPEC")))?;
        if q >= queues[i] {
            return usage(format!(
                "--rxq-affinity {x}: port '{p}' has {} rx queue(s): use a queue below that or raise --queues {p}=N",
                queues[i]
            ));
        }
        if !cores.contains(&core) {
            return usage(format!("--rxq-affinity {x}: core {core} runs no worker: pick one of --cores {}", compress(&cores)));
        }
        affinity.push((p, q, core));
    }
    for &c in &cores {
        if !allowed.contains(&c) {
            return usage(format!(
                "core {c} does not exist or is not allowed here (usable: {}): pick --cores from that list",
                compress(&allowed)
            ));
        }
        if c == main_core && !a.share_main_core {
            return usage(format!(
                "core {c} is the EAL main core: pick other --cores, move the main core with -- -l N, or allow it with --share-main-core"
            ));
        }
    }

    for p in &ports {
        if held.is_some_and(|(r, _)| r.ports.get(&p.name).is_some_and(|(s, _)| *s == p.spec)) {
            continue;
        }
        match &p.spec {
            PortSpec::VhostServer(path) => preflight::check_server_socket(&p.name, path).map_err(Failure::Usage)?,
            PortSpec::VhostClient(path) => preflight::check_socket_dir(&p.name, path).map_err(Failure::Usage)?,
            PortSpec::Pci(addr) => preflight::check_pci(&p.name, addr).map_err(Failure::Usage)?,
            PortSpec::Vdev(_) | PortSpec::Vxlan(_) => {}
        }
    }

    for (s, _) in &vxlans {
        if !ips.iter().any(|&(_, vlan, addr, _)| vlan == 0 && addr == std::net::IpAddr::V4(s.local)) {
            return usage(format!(
                "--vxlan {}=...: local {} is none of the router's addresses on an untagged interface: give the underlay port that address (--ip PORT={}/LEN)",
                s.vni, s.local, s.local
            ));
        }
    }
    let user = &a.eal;
    let no_huge = preflight::has_flag(user, &["--no-huge"]);
    let (eal, own_prefix) = startup::eal_defaults("pmdswitch", user, &ports, main_core);
    if !no_huge && held.is_none() && preflight::free_hugepages() == 0 {
        return usage("no free hugepages: reserve some with scripts/setup.sh, or run without them with -- --no-huge -m 512");
    }
    let socket_gid = a.socket_group.as_deref().map(preflight::group_id).transpose().map_err(Failure::Usage)?;
    let socket_uid = a.socket_owner.as_deref().map(preflight::user_id).transpose().map_err(Failure::Usage)?;
    Ok(SwitchConfig {
        ports,
        peer,
        cores,
        eal,
        socket_mode,
        socket_gid,
        socket_uid,
        own_prefix,
        burst,
        ring_size,
        idle,
        idle_us,
        ctl,
        bridges,
        vlans,
        statics,
        queues,
        affinity,
        mac_aging_ms,
        mac_capacity,
        datapath,
        ips,
        mtus,
        routes,
        vxlans,
        twins,
        linux_table,
        tx_retries: a.tx_retries.unwrap_or(8),
        backpressure_us: a.backpressure_us.unwrap_or(200),
        mbufs: a.mbufs,
        prometheus: a.prometheus.as_ref().map(|p| if p.contains(':') { p.clone() } else { format!("127.0.0.1:{p}") }),
        share_main_core: a.share_main_core,
        verbose: a.verbose,
        allowed,
    })
}

/// `--host-if` and `--linux-routes`: which routed interfaces get a twin, named how.
#[allow(clippy::type_complexity)]
fn plan_twins(
    a: &RunArgs,
    index: &HashMap<&str, usize>,
    ips: &[(usize, u16, std::net::IpAddr, u8)],
    reloading: bool,
) -> Result<(Vec<(usize, u16, String)>, Option<u32>), Failure> {
    let table = a.linux_routes.as_deref().map(linux::parse_table).transpose().map_err(Failure::Usage)?;
    let mut twins: Vec<(usize, u16, String)> = Vec::new();
    for x in &a.host_ifs {
        let (iface, name) = x.split_once('=').unwrap_or((x, x));
        let (p, vlan) = match iface.split_once('.') {
            Some((p, v)) => (
                p,
                v.parse::<u16>()
                    .map_err(|_| Failure::Usage(format!("--host-if {x}: '{v}' is not a VLAN id (IFACE is PORT or PORT.VLAN)")))?,
            ),
            None => (iface, 0),
        };
        let i = *index
            .get(p)
            .ok_or_else(|| Failure::Usage(format!("--host-if {x} names unknown port '{p}': define it with --port {p}=SPEC")))?;
        if !ips.iter().any(|&(j, v, _, _)| j == i && v == vlan) {
            return usage(format!("--host-if {x}: interface {iface} has no address: give it one with --ip {iface}=ADDR/LEN"));
        }
        if twins.iter().any(|t| t.0 == i && t.1 == vlan) {
            return usage(format!("--host-if {x}: interface {iface} has a host interface already: one per interface"));
        }
        twins.push((i, vlan, name.to_string()));
    }
    if table.is_some() {
        if ips.is_empty() {
            return usage("--linux-routes: no routed interface to mirror routes through: give ports addresses with --ip PORT=ADDR/LEN");
        }
        // Every routed interface gets its twin: Linux routes name them.
        for &(i, vlan, _, _) in ips {
            if !twins.iter().any(|t| t.0 == i && t.1 == vlan) {
                let name = a.ports.get(i).and_then(|p| p.split_once('=')).map_or(String::new(), |(n, _)| n.to_string());
                twins.push((i, vlan, router::ifname(&name, vlan)));
            }
        }
    }
    for (_, _, name) in &twins {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
            return usage(format!("host interface name '{name}' is not a Linux interface name (1-15 characters, no '/', ' ' or ':'): choose one with --host-if IFACE=NAME"));
        }
        if !reloading && std::path::Path::new("/sys/class/net").join(name).exists() {
            return usage(format!(
                "host interface {name} exists already in this network namespace: remove it (ip link del {name}) or choose another name with --host-if IFACE=NAME"
            ));
        }
    }
    if !twins.is_empty() && !std::path::Path::new("/dev/net/tun").exists() {
        return usage("host interfaces need /dev/net/tun: load the tun module (modprobe tun)");
    }
    Ok((twins, table))
}

pub(crate) fn compress(v: &[usize]) -> String {
    v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// The packet pool for the plan's ports (startup::pool_size): every ethdev ring (rx
/// queues, and a tx queue per worker), a burst per worker and per vhost queue pair, a
/// cache per worker. Ports added at run time draw on the slack.
pub(crate) fn pool_size(plan: &SwitchConfig, workers: u32) -> u32 {
    let mut n = PoolNeed { burst: plan.burst as u32, lcores: workers, bursts: workers, descriptors: 0 };
    for (p, q) in plan.ports.iter().zip(&plan.queues) {
        match p.spec {
            PortSpec::Pci(ref d) | PortSpec::Vdev(ref d) => {
                n.descriptors += (*q as u32 + workers) * u32::from(ethdev::ring_for(d, plan.ring_size))
            }
            _ => n.bursts += *q as u32,
        }
    }
    startup::pool_size(n)
}

/// The parts of a configuration a reload (or `ctl`) can change, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// Port name → definition and rx queues, in the file's order.
    pub ports: IndexMap<String, (PortSpec, u16)>,
    /// Cross-connected pairs, each once (first name as the file gives it).
    pub xconnects: Vec<(String, String)>,
    /// Bridge → members with their VLAN modes, in order.
    pub bridges: IndexMap<String, Vec<(String, VlanMode)>>,
    /// (bridge, MAC, VLAN) → port.
    pub statics: BTreeMap<(String, [u8; 6], u16), String>,
    /// (port, VLAN) → addresses, in order.
    pub ips: IndexMap<(String, u16), Vec<(IpAddr, u8)>>,
    pub mtus: BTreeMap<(String, u16), u16>,
    pub routes: BTreeMap<(IpAddr, u8), RouteTarget>,
}

impl Running {
    pub fn of(c: &SwitchConfig) -> Running {
        let name = |i: usize| c.ports[i].name.clone();
        let mut r = Running::default();
        for (i, p) in c.ports.iter().enumerate() {
            r.ports.insert(p.name.clone(), (p.spec.clone(), c.queues[i]));
        }
        for (i, p) in c.peer.iter().enumerate() {
            if let Some(p) = *p {
                if i < p {
                    r.xconnects.push((name(i), name(p)));
                }
            }
        }
        for (b, members) in &c.bridges {
            r.bridges.insert(b.clone(), members.iter().map(|&m| (name(m), c.vlans[m].clone())).collect());
        }
        for &(p, mac, vlan) in &c.statics {
            if let Some((b, _)) = c.bridges.iter().find(|(_, m)| m.contains(&p)) {
                r.statics.insert((b.clone(), mac, vlan), name(p));
            }
        }
        for &(p, vlan, addr, len) in &c.ips {
            r.ips.entry((name(p), vlan)).or_default().push((addr, len));
        }
        for &(p, vlan, mtu) in &c.mtus {
            r.mtus.insert((name(p), vlan), mtu);
        }
        for (addr, len, t) in &c.routes {
            r.routes.insert((*addr, *len), t.clone());
        }
        r
    }

    pub(super) fn bridge_of(&self, port: &str) -> Option<(&str, &VlanMode)> {
        self.bridges.iter().find_map(|(b, m)| m.iter().find(|(p, _)| p == port).map(|(_, v)| (b.as_str(), v)))
    }

    pub(super) fn peer_of(&self, port: &str) -> Option<&(String, String)> {
        self.xconnects.iter().find(|(a, b)| a == port || b == port)
    }
}
