//! `pmdswitch run`: validate, start the EAL, build ports and workers, forward until told
//! to stop, then tear everything down in reverse and report.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use pmdswitch::cli::RunArgs;
use pmdswitch::control::changes::Control;
use pmdswitch::control::client;
use pmdswitch::control::linux;
use pmdswitch::control::plane::{BridgeEntry, Plane, PortEntry, PortRt, Rule, MAX_PORTS};
use pmdswitch::control::ports::{same_resource, Opener};
use pmdswitch::control::router::neigh::Timing;
use pmdswitch::control::router::{self, slow, Prefix, RouterCtl};
use pmdswitch::control::server;
use pmdswitch::datapath::bridge::fwd::Bridge;
use pmdswitch::datapath::bridge::table::{self, MacTable};
use pmdswitch::datapath::bridge::vlan::VlanMode;
use pmdswitch::datapath::reload::ReloadBarrier;
use pmdswitch::datapath::route::qsbr::Qsbr;
use pmdswitch::datapath::route::{RouteIn, Router, RouterSize};
use pmdswitch::datapath::stats::{DropCause, PortTotals, WorkerStats, WorkerTotals};
use pmdswitch::datapath::vxlan::{self, Path as VxPath, Vtep, VxlanSpec};
use pmdswitch::datapath::wire::vxlan::Outer;
use pmdswitch::datapath::worker::{Idle, IdleMode, MsClock, TxSource, Worker};
use pmdswitch::dpdk::ethdev;
use pmdswitch::dpdk::mbuf::MAX_BURST;
use pmdswitch::dpdk::mempool::Mempool;
use pmdswitch::dpdk::telemetry;
use pmdswitch::dpdk::vhost::{self, Datapath, DeviceEvent};
use pmdswitch::observe::{self, PortReport, View};
use pmdswitch::parse::{self, PortDef, PortSpec};
use pmdswitch::startup::{self, config, preflight, usage, Failure, PoolNeed};

/// Validated `run` configuration: nothing here has touched DPDK yet.
#[derive(Debug)]
struct Plan {
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
}

/// Everything that can be checked without DPDK: each error names the problem and the fix.
fn plan(a: &RunArgs) -> Result<Plan, Failure> {
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
    let (twins, linux_table) = plan_twins(a, &index, &ips)?;
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
    if a.ctl.is_some() {
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

    let allowed = preflight::allowed_cpus();
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
    if !no_huge && preflight::free_hugepages() == 0 {
        return usage("no free hugepages: reserve some with scripts/setup.sh, or run without them with -- --no-huge -m 512");
    }
    let socket_gid = a.socket_group.as_deref().map(preflight::group_id).transpose().map_err(Failure::Usage)?;
    let socket_uid = a.socket_owner.as_deref().map(preflight::user_id).transpose().map_err(Failure::Usage)?;
    Ok(Plan {
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
    })
}

/// `--host-if` and `--linux-routes`: which routed interfaces get a twin, named how.
#[allow(clippy::type_complexity)]
fn plan_twins(
    a: &RunArgs,
    index: &HashMap<&str, usize>,
    ips: &[(usize, u16, std::net::IpAddr, u8)],
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
        if std::path::Path::new("/sys/class/net").join(name).exists() {
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

/// Each tunnel's way to its remote VTEP as the router sees it now: the outer headers
/// are rebuilt when the route or the next hop's MAC changes (a host of a connected
/// subnet not known yet is asked for by the slow path meanwhile).
fn resolve_vteps(vteps: &[Arc<Vtep>], rctl: &Mutex<RouterCtl>) {
    if vteps.is_empty() {
        return;
    }
    let mut r = rctl.lock().unwrap_or_else(|e| e.into_inner());
    for v in vteps {
        let p = r.path_to(v.remote).map(|(port, src, dst, mtu)| VxPath {
            outer: Outer::new(src, dst, v.local, v.remote, v.udp_port, v.vni),
            port,
            mtu,
        });
        v.set_path(p);
    }
}

fn compress(v: &[usize]) -> String {
    v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// Runs the data plane; returns when stopped (signal or `--duration`).
pub fn main(a: RunArgs, term: Arc<AtomicBool>) -> Result<(), Failure> {
    let a = match &a.config {
        Some(path) => config::load(path).map_err(|mut errs| Failure::Usage(errs.remove(0)))?.merge(a),
        None => a,
    };
    let plan = plan(&a)?;
    let rt = |m: String| Failure::Runtime(m);
    let (eal, capture) = startup::start_eal(&plan.eal, plan.own_prefix.as_deref(), a.verbose)?;
    let main_cpu = eal.main_lcore_cpu() as usize;
    if plan.cores.contains(&main_cpu) && !a.share_main_core {
        return Err(Failure::Usage(format!(
            "core {main_cpu} is the EAL main core: pick other --cores, or move the main core with -- -l N"
        )));
    }
    let tsc_hz = eal.tsc_hz();
    let cycles_per_ms = (tsc_hz / 1000).max(1);

    // One worker per core, but no more workers than rx queues.
    let total_rxqs: usize = plan.queues.iter().map(|&q| q as usize).sum();
    let mut cores = plan.cores.clone();
    for (_, _, c) in &plan.affinity {
        // A pinned core keeps its worker even beyond the rx queue count.
        if let Some(i) = cores.iter().position(|x| x == c) {
            let c = cores.remove(i);
            cores.insert(0, c);
        }
    }
    cores.truncate(total_rxqs.max(1).max(plan.affinity.iter().map(|x| x.2).collect::<std::collections::HashSet<_>>().len()));
    cores.sort_unstable_by_key(|c| plan.cores.iter().position(|x| x == c));
    let n_workers = cores.len();
    let barrier = Arc::new(ReloadBarrier::new(n_workers).map_err(|e| rt(format!("cannot create worker doorbells: {e}")))?);
    {
        let b = barrier.clone();
        vhost::set_device_hook(move |slot, ev| {
            match ev {
                DeviceEvent::Added => {
                    println!("pmdswitch: port {}: vhost device attached on {} ({})", slot.name, slot.path, slot.offloads());
                    b.request();
                }
                DeviceEvent::Removed => {
                    // Do not return until no worker can touch the old vid.
                    b.request_and_wait();
                    println!("pmdswitch: port {}: vhost device detached", slot.name);
                }
                // Called with a vring lock held: only ask, never wait.
                DeviceEvent::VringChanged | DeviceEvent::Resume => {
                    b.request();
                }
                // Own data path, before a message that changes the device: no worker may
                // serve its rings when this returns.
                DeviceEvent::Pause => b.request_and_wait(),
            }
            let _ = std::io::stdout().flush();
        });
    }

    let mbufs = a.mbufs.unwrap_or_else(|| pool_size(&plan, n_workers as u32));
    let pool = Arc::new(
        Mempool::pktmbuf_pool_create("pmds_pool", mbufs, startup::POOL_CACHE, 2048 + 128, -1)
            .map_err(|e| rt(format!("{e}: reserve more hugepages (scripts/setup.sh --hugepages N) or lower --mbufs")))?,
    );
    let opener = Opener {
        ring_size: plan.ring_size,
        rx_intr: plan.idle == IdleMode::Adaptive,
        socket_mode: plan.socket_mode,
        socket_uid: plan.socket_uid,
        socket_gid: plan.socket_gid,
        workers: n_workers,
        pool: pool.clone(),
        datapath: plan.datapath,
    };
    let stats: Vec<Arc<WorkerStats>> = cores.iter().map(|&c| Arc::new(WorkerStats::new(c, MAX_PORTS))).collect();
    let view = Arc::new(View::new(stats.clone(), cycles_per_ms));
    // The router's tables exist from the start (addresses may come later through ctl);
    // untouched, they cost address space, not memory.
    let router = Arc::new(Router::new(RouterSize::default(), Arc::new(Qsbr::new(n_workers)), n_workers));
    let rctl = Arc::new(Mutex::new(RouterCtl::new(router.clone(), Timing::default())));
    rctl.lock().unwrap_or_else(|e| e.into_inner()).barrier = Some(barrier.clone());
    let mut plane = Plane {
        ports: (0..MAX_PORTS).map(|_| None).collect(),
        bridges: Vec::new(),
        cores: cores.clone(),
        affinity: plan.affinity.iter().filter_map(|(p, q, c)| Some(((p.clone(), *q), cores.iter().position(|x| x == c)?))).collect(),
        owner: HashMap::new(),
        cycles_seen: HashMap::new(),
        pool: pool.clone(),
        stats: stats.clone(),
        mailboxes: (0..n_workers).map(|_| Arc::new(Mutex::new(None))).collect(),
        view: view.clone(),
        route_in: Arc::new(RouteIn { router: router.clone(), ifs: Arc::default(), vxlan: None }),
        router: rctl.clone(),
        route_version: 0,
    };
    for (i, def) in plan.ports.iter().enumerate() {
        let e = opener.open(def, plan.queues[i], plan.vlans[i].clone(), PortTotals::default()).map_err(rt)?;
        plane.ports[i] = Some(e);
    }
    for (i, p) in plan.peer.iter().enumerate() {
        if let (Some(p), Some(e)) = (p, plane.ports[i].as_mut()) {
            e.rule = Rule::Xconnect(*p);
        }
    }
    for (b, (name, members)) in plan.bridges.iter().enumerate() {
        let table = Arc::new(MacTable::new(plan.mac_capacity, plan.mac_aging_ms, n_workers));
        for &(p, mac, vlan) in plan.statics.iter().filter(|s| members.contains(&s.0)) {
            table
                .add_static(vlan, mac, p as u16)
                .map_err(|e| Failure::Usage(format!("--static-mac on port '{}': {e}", plan.ports[p].name)))?;
        }
        for &m in members {
            if let Some(e) = plane.ports[m].as_mut() {
                e.rule = Rule::Bridge(b);
            }
        }
        let current = Arc::new(Bridge::new(table.clone(), Vec::new()));
        plane.bridges.push(BridgeEntry { name: name.clone(), table, members: members.clone(), current });
    }
    {
        let mut r = rctl.lock().unwrap_or_else(|e| e.into_inner());
        for &(i, vlan, addr, len) in &plan.ips {
            let mtu = plan.mtus.iter().find(|m| m.0 == i && m.1 == vlan).map(|m| m.2);
            r.add_addr(&plan.ports[i].name, vlan, i, addr, len, mtu)
                .map_err(|e| Failure::Usage(format!("--ip {}: {e}", plan.ports[i].name)))?;
        }
        for (addr, len, t) in &plan.routes {
            r.add_route(Prefix::of(*addr, *len), t).map_err(|e| Failure::Usage(format!("--route {addr}/{len}={t}: {e}")))?;
        }
        r.twin_auto = plan.linux_table.is_some();
        for (i, vlan, name) in &plan.twins {
            let k = r
                .iface_by_name(&plan.ports[*i].name, *vlan)
                .map(|x| x.index)
                .ok_or_else(|| rt(format!("host interface {name}: no interface")))?;
            r.add_twin(k, name).map_err(rt)?;
        }
    }
    // A bridge member per remote VTEP (after the user's ports: their indices stay).
    for (s, b) in &plan.vxlans {
        for (k, remote) in s.remotes.iter().enumerate() {
            let i = plane.free_index().ok_or_else(|| rt("the port table is full".into()))?;
            let vtep = Arc::new(Vtep::new(s.vni, s.local, *remote, s.port, pool.clone()));
            let def = PortDef { name: vxlan::member_name(s.vni, k + 1), spec: PortSpec::Vxlan(format!("{}@{remote}", s.vni)) };
            let base = plane.baseline(i);
            plane.ports[i] = Some(PortEntry {
                def,
                rt: PortRt::Vxlan(vtep.clone()),
                queues: 0,
                tx: vec![TxSource::Vxlan(vtep)],
                rxq: Vec::new(),
                vlan: VlanMode::default(),
                rule: Rule::Bridge(*b),
                base,
            });
            plane.bridges[*b].members.push(i);
        }
    }
    plane.sync_router();
    let vteps = plane.vteps();
    resolve_vteps(&vteps, &rctl);
    // From here DPDK's own messages (device connects, warnings) go to the terminal.
    if let Some(c) = capture {
        c.finish();
    }
    // Mbufs parked in ethdev rx rings are in use for the life of the port: the baseline a
    // clean shutdown returns to.
    let baseline = pool.in_use();
    let plans = plane.initial_plans();

    observe::register_telemetry(&view);
    let metrics_stop = Arc::new(AtomicBool::new(false));
    let metrics = match &a.prometheus {
        Some(p) => {
            let addr = if p.contains(':') { p.clone() } else { format!("127.0.0.1:{p}") };
            Some(
                observe::serve_prometheus(&addr, view.clone(), metrics_stop.clone())
                    .map_err(|e| Failure::Runtime(format!("--prometheus {addr}: cannot listen: {e}: pick a free port"))),
            )
        }
        None => None,
    };
    let metrics = metrics.transpose()?;
    let idle_mode = Arc::new(AtomicU8::new(plan.idle as u8));
    let ctl_path = plan.ctl.clone();
    let (ctl, requests) = server::serve(&ctl_path, plan.socket_gid, view.clone(), barrier.clone(), idle_mode.clone(), metrics_stop.clone())
        .map_err(|e| rt(format!("control socket {}: {e}: remove it or pick another with --ctl", ctl_path.display())))?;
    let slow_stop = Arc::new(AtomicBool::new(false));
    let slow = slow::spawn(rctl.clone(), slow_stop.clone()).map_err(|e| rt(format!("cannot start the router's slow-path thread: {e}")))?;
    let mirror = match plan.linux_table {
        Some(t) => Some(
            linux::spawn(t, rctl.clone(), slow_stop.clone())
                .map_err(|e| rt(format!("--linux-routes: cannot open rtnetlink: {e}: run as root")))?,
        ),
        None => None,
    };
    let mut handles = Vec::new();
    for (w, wplan) in plans.into_iter().enumerate() {
        let worker = Worker {
            index: w,
            core: cores[w],
            plan: wplan,
            mailbox: plane.mailboxes[w].clone(),
            burst: plan.burst,
            tx_retries: a.tx_retries.unwrap_or(8),
            hold_cycles: a.backpressure_us.unwrap_or(200) * tsc_hz / 1_000_000,
            stats: stats[w].clone(),
            barrier: barrier.clone(),
            idle: Idle { mode: plan.idle, after_cycles: plan.idle_us * tsc_hz / 1_000_000, max_sleep_ms: 100 },
            idle_mode: idle_mode.clone(),
            pool: pool.clone(),
            clock: MsClock::new(cycles_per_ms),
            scratch: Default::default(),
            router: router.clone(),
            rscratch: Box::default(),
            staged: Box::default(),
        };
        match std::thread::Builder::new().name(format!("pmd-c{}", cores[w])).spawn(move || worker.run()) {
            Ok(h) => handles.push(h),
            Err(e) => {
                // No half-started set of workers: stop the ones running, then unwind.
                metrics_stop.store(true, Ordering::SeqCst);
                slow_stop.store(true, Ordering::SeqCst);
                let _ = std::fs::remove_file(&ctl_path);
                barrier.stop();
                for h in handles {
                    let _ = h.join();
                }
                return Err(rt(format!("cannot start worker thread: {e}")));
            }
        }
    }
    if plan.cores.len() > n_workers {
        println!("pmdswitch: {} of {} cores have no rx queue and run no worker", plan.cores.len() - n_workers, plan.cores.len());
    }
    println!(
        "pmdswitch: forwarding with {} worker(s) on core(s) {} (main core {}), {} mbufs; Ctrl-C to stop",
        n_workers,
        compress(&cores),
        main_cpu,
        mbufs
    );
    let _ = std::io::stdout().flush();

    // The main thread sleeps: on two cores a spinning main thread halves a worker. It
    // wakes for control requests, the MAC tables' learner (every few ms with bridges),
    // the stats table and the deadline.
    let start = Instant::now();
    let interval = a.stats_interval.filter(|s| *s > 0.0).map(Duration::from_secs_f64);
    let mut next_print = interval.map(|i| start + i);
    let mut last: HashMap<String, (Instant, PortTotals, Option<u64>)> = HashMap::new();
    let deadline = a.duration.map(|d| start + Duration::from_secs_f64(d));
    let tick = if plane.bridges.is_empty() { Duration::from_millis(50) } else { Duration::from_millis(5) };
    let mut control = Control { opener, barrier: barrier.clone(), mac_capacity: plan.mac_capacity, mac_aging_ms: plan.mac_aging_ms };
    // Broken guest vrings, said once each (workers only count them).
    let mut broken: HashMap<String, u64> = HashMap::new();
    let mut next_broken_check = start;
    loop {
        if term.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Some(iv) = interval {
            if next_print.is_some_and(|t| Instant::now() >= t) {
                print_live(&view, &mut last, start);
                next_print = Some(next_print.unwrap_or(start) + iv);
            }
        }
        if Instant::now() >= next_broken_check {
            next_broken_check = Instant::now() + Duration::from_millis(250);
            // The router's counters for Prometheus and telemetry.
            let r = rctl.lock().unwrap_or_else(|e| e.into_inner());
            if !r.ifaces.iter().all(Option::is_none) {
                view.set_router(r.router_json());
            }
            drop(r);
            resolve_vteps(&vteps, &rctl);
            for r in view.ports() {
                let seen = broken.entry(r.name.clone()).or_default();
                // A port removed and added again under the name counts from 0.
                *seen = (*seen).min(r.totals.rings_broken);
                if r.totals.rings_broken > *seen {
                    println!(
                        "pmdswitch: port {}: the guest broke a vring (an index moved by more than the ring size); it is not served until the guest resets the device",
                        r.name
                    );
                    *seen = r.totals.rings_broken;
                }
            }
        }
        let now_ms = pmdswitch::sys::rdtsc() / cycles_per_ms;
        for b in &plane.bridges {
            b.table.maintain(now_ms);
        }
        let now = Instant::now();
        let mut until = now + tick;
        for t in [next_print, deadline].into_iter().flatten() {
            until = until.min(t);
        }
        // Control requests (add-port, ...) wake the loop at once.
        if let Ok(req) = requests.recv_timeout(until.saturating_duration_since(now).max(Duration::from_millis(1))) {
            let reply = control.handle(&mut plane, &req.change, req.json);
            let _ = req.reply.send(reply);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();

    // Shutdown: workers first (they own the queues), then ports, then the pool and EAL.
    telemetry::clear();
    metrics_stop.store(true, Ordering::SeqCst);
    if let Some(h) = metrics {
        let _ = h.join();
    }
    server::wake(&ctl_path);
    let _ = ctl.join();
    let _ = std::fs::remove_file(&ctl_path);
    // The slow path stops before the workers: nothing is handed down after they go.
    slow_stop.store(true, Ordering::SeqCst);
    let _ = slow.join();
    if let Some(m) = mirror {
        let _ = m.join();
    }
    barrier.stop();
    for h in handles {
        let _ = h.join();
    }
    // Frames still waiting to go down hold no mbuf (they are bytes): dropped with the router.
    let router_report = rctl.lock().unwrap_or_else(|e| e.into_inner()).router_json();
    let in_use_end = pool.in_use();
    let reports = view.ports();
    let bridges = view.bridges_json(false);
    for e in plane.ports.iter().flatten() {
        if let PortRt::Eth(port) = &e.rt {
            port.stop();
        }
    }
    drop(control);
    drop(plane); // unregisters vhost sockets (files removed), closes ethdev ports
    let workers = view.workers();
    print_final(&reports, &workers, elapsed, tsc_hz, baseline, in_use_end);
    let mut report = observe::report_json(&reports, &workers, bridges, elapsed, tsc_hz, pool.size(), baseline, in_use_end);
    if router_report["interfaces"].as_u64().unwrap_or(0) > 0 {
        report["router"] = router_report;
    }
    drop(view);
    drop(pool);
    drop(eal);
    if let Some(path) = &a.stats_json {
        write_json(path, &report)?;
    }
    Ok(())
}

/// The packet pool for the plan's ports (startup::pool_size): every ethdev ring (rx
/// queues, and a tx queue per worker), a burst per worker and per vhost queue pair, a
/// cache per worker. Ports added at run time draw on the slack.
fn pool_size(plan: &Plan, workers: u32) -> u32 {
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

fn print_live(view: &View, last: &mut HashMap<String, (Instant, PortTotals, Option<u64>)>, start: Instant) {
    let now = Instant::now();
    let mut out = format!(
        "--- {:.1}s\n{:<12} {:>10} {:>10} {:>14} {:>14} {:>10} {:>9}\n",
        (now - start).as_secs_f64(),
        "port",
        "rx Mpps",
        "tx Mpps",
        "rx pkts",
        "tx pkts",
        "drops",
        "notif/s"
    );
    for r in view.ports() {
        let (t0, prev, pn) = last.get(&r.name).cloned().unwrap_or((start, PortTotals::default(), Some(0)));
        let dt = (now - t0).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let notif = match (r.guest_notifications, pn) {
            (Some(a), Some(b)) => format!("{:.0}", rate(a, b)),
            _ => "-".into(),
        };
        let c = &r.totals;
        out.push_str(&format!(
            "{:<12} {:>10.3} {:>10.3} {:>14} {:>14} {:>10} {:>9}\n",
            r.name,
            rate(c.rx_packets, prev.rx_packets) / 1e6,
            rate(c.tx_packets, prev.tx_packets) / 1e6,
            c.rx_packets,
            c.tx_packets,
            c.dropped(),
            notif
        ));
        last.insert(r.name.clone(), (now, *c, r.guest_notifications));
    }
    for w in view.workers() {
        out.push_str(&format!(
            "worker core {:<3} busy {:>5.1}%  {:>7.1} cycles/pkt\n",
            w.core,
            w.busy_fraction() * 100.0,
            w.cycles_per_packet()
        ));
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

fn print_final(reports: &[PortReport], workers: &[WorkerTotals], elapsed: f64, tsc_hz: u64, baseline: u32, in_use: u32) {
    let mut out = format!("=== pmdswitch final stats ({elapsed:.1}s)\n");
    out.push_str(&format!(
        "{:<12} {:<13} {:>14} {:>14} {:>16} {:>16}  drops\n",
        "port", "kind", "rx pkts", "tx pkts", "rx bytes", "tx bytes"
    ));
    for r in reports {
        let drops: Vec<String> = DropCause::ALL
            .iter()
            .filter(|c| r.totals.drops[**c as usize] > 0)
            .map(|c| format!("{}={}", c.name(), r.totals.drops[*c as usize]))
            .collect();
        out.push_str(&format!(
            "{:<12} {:<13} {:>14} {:>14} {:>16} {:>16}  {}\n",
            r.name,
            r.kind,
            r.totals.rx_packets,
            r.totals.tx_packets,
            r.totals.rx_bytes,
            r.totals.tx_bytes,
            if drops.is_empty() { "0".into() } else { drops.join(" ") }
        ));
        if r.rxqs.len() > 1 {
            for q in &r.rxqs {
                out.push_str(&format!(
                    "  rxq {:<2} core {:<3} packets {:>14}  {:>7.1} cycles/pkt\n",
                    q.queue,
                    q.core.map_or("-".into(), |c| c.to_string()),
                    q.packets,
                    if q.packets > 0 { q.busy_cycles as f64 / q.packets as f64 } else { 0.0 }
                ));
            }
        }
    }
    for w in workers {
        let secs = (w.busy_cycles + w.idle_cycles) as f64 / tsc_hz.max(1) as f64;
        out.push_str(&format!(
            "worker core {:<3} packets {:>14}  busy {:>5.1}%  {:>7.1} cycles/pkt  ({:.1}s polled)\n",
            w.core,
            w.packets,
            w.busy_fraction() * 100.0,
            w.cycles_per_packet(),
            secs
        ));
    }
    out.push_str(&format!("mempool in use: {in_use} (baseline {baseline})\n"));
    print!("{out}");
    let _ = std::io::stdout().flush();
}

fn write_json(path: &PathBuf, v: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|e| Failure::Runtime(format!("cannot write --stats-json {}: {e}", path.display())))
}
