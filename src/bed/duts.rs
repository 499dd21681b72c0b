//! Devices under test for `pmdswitch bench`: pmdswitch itself (cross-connect, bridge,
//! adaptive idle), dpdk-testpmd io forwarding over net_vhost, and a private OVS-DPDK
//! (port-to-port OpenFlow rules, or NORMAL); each serves two vhost-user sockets, on which
//! the generator (`pmdswitch gen`, a process of its own) stands where two VMs would.
//!
//! Every child runs in a scratch directory (sockets, state, logs) with `--in-memory`, so
//! no hugepage file outlives it, and an EAL file prefix that starts with the bed's tag.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::proc::Proc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dut {
    /// `pmdswitch run`, cross-connect, busy polling.
    Pmdswitch,
    /// The same with `--idle adaptive` (what sleeping costs under load, and on wake-up).
    PmdswitchAdaptive,
    /// `pmdswitch run --bridge br0=a,b` (MAC learning and lookups per packet).
    PmdswitchBridge,
    /// The cross-connect and the bridge on the library's vhost data path (rte_vhost
    /// enqueue/dequeue through mbufs), next to the own path's above.
    PmdswitchLib,
    PmdswitchBridgeLib,
    Testpmd,
    /// OVS-DPDK with port-to-port OpenFlow rules.
    Ovs,
    /// OVS-DPDK with the NORMAL action (its learning switch).
    OvsNormal,
    /// `pmdswitch run` routing between two interfaces (198.18.1.254/24 on a,
    /// 198.18.2.254/24 on b) with the bench's route table (`--routes`).
    PmdswitchRouter,
    /// The same on rte_vhost's data path.
    PmdswitchRouterLib,
    /// DPDK's l3fwd example in LPM mode over two net_vhost ports, with its own table
    /// (198.18.0.0/24 to port 0, 198.18.1.0/24 to port 1), built by `setup.sh --extras`.
    L3fwd,
    /// OVS-DPDK with OpenFlow flows that route: match the destination prefix, decrement
    /// the TTL, rewrite both MACs.
    OvsL3,
    /// Two pmdswitch instances ("hosts") joined by a memif underlay, each a bridge of one
    /// vhost-user port (a on the first, b on the second) and VNI 5001 to the other's VTEP:
    /// every frame is encapsulated by one and decapsulated by the other. Cycles per packet
    /// are per instance (both instances' busy cycles over both's packets).
    PmdswitchVxlan,
    /// The same two instances and underlay with plain bridges (the vhost port and the
    /// memif port): the baseline of `pmdswitch-vxlan`, with the same sharing of the DUT
    /// core by two processes.
    PmdswitchPair,
}

const DUTS: [Dut; 14] = [
    Dut::Pmdswitch,
    Dut::PmdswitchAdaptive,
    Dut::PmdswitchBridge,
    Dut::PmdswitchLib,
    Dut::PmdswitchBridgeLib,
    Dut::Testpmd,
    Dut::Ovs,
    Dut::OvsNormal,
    Dut::PmdswitchRouter,
    Dut::PmdswitchRouterLib,
    Dut::L3fwd,
    Dut::OvsL3,
    Dut::PmdswitchVxlan,
    Dut::PmdswitchPair,
];

impl Dut {
    pub fn parse(s: &str) -> Result<Dut, String> {
        DUTS.into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("DUT '{s}' is unknown: use one of {}", DUTS.map(|d| d.name()).join(", ")))
    }
    pub fn name(self) -> &'static str {
        match self {
            Dut::Pmdswitch => "pmdswitch",
            Dut::PmdswitchAdaptive => "pmdswitch-adaptive",
            Dut::PmdswitchBridge => "pmdswitch-bridge",
            Dut::PmdswitchLib => "pmdswitch-lib",
            Dut::PmdswitchBridgeLib => "pmdswitch-bridge-lib",
            Dut::Testpmd => "testpmd",
            Dut::Ovs => "ovs",
            Dut::OvsNormal => "ovs-normal",
            Dut::PmdswitchRouter => "pmdswitch-router",
            Dut::PmdswitchRouterLib => "pmdswitch-router-lib",
            Dut::L3fwd => "l3fwd",
            Dut::OvsL3 => "ovs-l3",
            Dut::PmdswitchVxlan => "pmdswitch-vxlan",
            Dut::PmdswitchPair => "pmdswitch-pair",
        }
    }
    /// What the DUT is, for `bench --help` (generated from this table, so the list
    /// cannot drift from what `--dut` accepts).
    pub fn about(self) -> &'static str {
        match self {
            Dut::Pmdswitch => "pmdswitch cross-connect, own vhost data path (the default)",
            Dut::PmdswitchAdaptive => "the same with adaptive idle (sleeps on guest kicks when idle)",
            Dut::PmdswitchBridge => "pmdswitch learning bridge of the two ports",
            Dut::PmdswitchLib => "cross-connect on rte_vhost's data path",
            Dut::PmdswitchBridgeLib => "bridge on rte_vhost's data path",
            Dut::Testpmd => "dpdk-testpmd io forwarding over net_vhost",
            Dut::Ovs => "OVS-DPDK (openvswitch-switch-dpdk), port-to-port flows",
            Dut::OvsNormal => "OVS-DPDK with the NORMAL action (MAC learning)",
            Dut::PmdswitchRouter => "pmdswitch IPv4/IPv6 router (takes --routes)",
            Dut::PmdswitchRouterLib => "router on rte_vhost's data path",
            Dut::L3fwd => "DPDK's l3fwd example, LPM mode (scripts/setup.sh --extras)",
            Dut::OvsL3 => "OVS-DPDK with L3 flows (TTL, MACs rewritten)",
            Dut::PmdswitchVxlan => "two pmdswitch instances over a memif underlay, bridges joined by VXLAN",
            Dut::PmdswitchPair => "the same two instances with plain bridges (VXLAN's baseline)",
        }
    }

    pub fn is_ovs(self) -> bool {
        matches!(self, Dut::Ovs | Dut::OvsNormal | Dut::OvsL3)
    }
    pub fn is_pmdswitch(self) -> bool {
        matches!(
            self,
            Dut::Pmdswitch
                | Dut::PmdswitchAdaptive
                | Dut::PmdswitchBridge
                | Dut::PmdswitchLib
                | Dut::PmdswitchBridgeLib
                | Dut::PmdswitchRouter
                | Dut::PmdswitchRouterLib
                | Dut::PmdswitchVxlan
                | Dut::PmdswitchPair
        )
    }
    /// Routes IP (the generator addresses it as a router, and it takes `--routes`).
    pub fn routes(self) -> bool {
        matches!(self, Dut::PmdswitchRouter | Dut::PmdswitchRouterLib | Dut::L3fwd | Dut::OvsL3)
    }
}

/// The DUT table as `bench --help` lists it.
pub fn help() -> String {
    DUTS.iter().map(|d| format!("  {:<22} {}\n", d.name(), d.about())).collect()
}

/// The DPDK build of ovs-vswitchd that Debian's openvswitch-switch-dpdk installs (the
/// plain /usr/sbin/ovs-vswitchd has no DPDK unless update-alternatives chose it).
pub fn ovs_vswitchd_dpdk() -> Option<PathBuf> {
    ["/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk", "/usr/sbin/ovs-vswitchd-dpdk"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Whether the DUT's programs are installed; the error names the fix.
pub fn check_dut(d: Dut) -> Result<(), String> {
    if d.is_ovs() && ovs_vswitchd_dpdk().is_none() {
        return Err(
            "--dut ovs: the DPDK build of ovs-vswitchd is not installed: run scripts/setup.sh --extras (openvswitch-switch-dpdk)".into()
        );
    }
    if d == Dut::L3fwd && !Path::new(L3FWD).exists() {
        return Err(format!("--dut l3fwd: {L3FWD} is not built: run scripts/setup.sh --extras (it builds DPDK's example from dpdk-doc)"));
    }
    let need = match d {
        _ if d.is_pmdswitch() => return Ok(()),
        Dut::L3fwd => return Ok(()),
        Dut::Testpmd => "dpdk-testpmd",
        _ => "ovsdb-server",
    };
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join(need).exists()));
    if !found {
        return Err(format!("--dut {}: {need} is not installed: run scripts/setup.sh --extras", d.name()));
    }
    Ok(())
}

/// The route tables of every bench are drawn from this seed (the same table each run).
pub const ROUTE_SEED: u64 = 0x5eed_2544;

/// The largest route table ovs-l3 is given (as OpenFlow flows).
pub const OVS_MAX_ROUTES: usize = 100_000;

/// Where `scripts/setup.sh --extras` builds DPDK's l3fwd example.
pub const L3FWD: &str = "/var/cache/pmdswitch-peers/l3fwd/build/l3fwd";

/// Virtio ring size of the generator's ports (DPDK's virtio-user default is 256): 4096
/// descriptors ride out ~3 ms of a descheduled core at 1.4 Mpps instead of 0.2 ms, so a
/// zero-loss search measures the switch, not this host's scheduler.
pub const QUEUE: usize = 4096;

/// A running DUT with its two sockets.
pub struct RunningDut {
    pub dut: Dut,
    pub procs: Vec<Proc>,
    stats_json: Option<PathBuf>,
    /// pmdswitch's control socket: its port counters around each generator run.
    pub ctl: Option<PathBuf>,
    /// The second instance's (`pmdswitch-vxlan`, `pmdswitch-pair`).
    pub ctl2: Option<PathBuf>,
    /// OVS state directory (removed at the end).
    pub ovs_dir: Option<PathBuf>,
    /// The route table loaded now (`--routes`), and how long its load took.
    pub routes: Option<usize>,
}

/// Where a bench's DUTs and generators run.
pub struct BedConfig {
    /// The pmdswitch binary (DUT and generator).
    pub exe: PathBuf,
    /// Sockets, state directories, the generator's JSON (removed by the caller).
    pub scratch: PathBuf,
    /// Every child's output, one file each.
    pub logs: PathBuf,
    /// The DUT's forwarding core; the generator's core (also the DUT's main core).
    pub dut_core: usize,
    pub gen_core: usize,
    /// Prefix of every EAL file prefix (so that leftovers can be found and removed).
    pub tag: String,
}

/// The test bed of a bench: it starts DUTs and runs the generator against them.
pub struct Bed {
    pub cfg: BedConfig,
    /// Set on SIGINT/SIGTERM: children are told to stop too (a Ctrl-C at a terminal
    /// reaches them directly; a `kill` of the bench alone does not).
    term: Arc<AtomicBool>,
    serial: usize,
}

impl Bed {
    pub fn new(cfg: BedConfig, term: Arc<AtomicBool>) -> Bed {
        Bed { cfg, term, serial: 0 }
    }

    fn next(&mut self, what: &str) -> String {
        self.serial += 1;
        format!("{}-{what}{}", self.cfg.tag, self.serial)
    }

    /// Starts `dut` serving vhost-user sockets `sa` and `sb`.
    pub fn start_dut(&mut self, dut: Dut, sa: &Path, sb: &Path) -> Result<RunningDut, String> {
        let prefix = self.next(dut.name());
        let log = self.cfg.logs.join(format!("{prefix}.log"));
        match dut {
            Dut::PmdswitchVxlan | Dut::PmdswitchPair => self.start_pair(dut, sa, sb, &prefix),
            _ if dut.is_pmdswitch() => {
                let sj = self.cfg.scratch.join(format!("{prefix}.json"));
                let ctl = self.cfg.scratch.join(format!("{prefix}.ctl"));
                let mut c = Command::new(&self.cfg.exe);
                c.args(["run", "--port"])
                    .arg(format!("a=vhost-server:{}", sa.display()))
                    .arg("--port")
                    .arg(format!("b=vhost-server:{}", sb.display()));
                match dut {
                    Dut::PmdswitchBridge | Dut::PmdswitchBridgeLib => c.args(["--bridge", "br0=a,b"]),
                    Dut::PmdswitchRouter | Dut::PmdswitchRouterLib => c
                        .arg("--ip")
                        .arg(format!("a={}/24", super::routes::RTR_A))
                        .arg("--ip")
                        .arg(format!("b={}/24", super::routes::RTR_B)),
                    Dut::PmdswitchAdaptive => c.args(["--xconnect", "a,b", "--idle", "adaptive"]),
                    _ => c.args(["--xconnect", "a,b"]),
                };
                let lib = matches!(dut, Dut::PmdswitchLib | Dut::PmdswitchBridgeLib | Dut::PmdswitchRouterLib);
                c.args(["--vhost-datapath", if lib { "lib" } else { "own" }]);
                c.args(["--cores", &self.cfg.dut_core.to_string(), "--stats-json"]).arg(&sj);
                c.arg("--ctl").arg(&ctl);
                c.args(["--", "-l", &self.cfg.gen_core.to_string(), &format!("--file-prefix={prefix}")]);
                let mut p = Proc::spawn("pmdswitch run", &mut c, Some(log))?;
                p.wait_for("forwarding with", Duration::from_secs(30))?;
                Ok(RunningDut { dut, procs: vec![p], stats_json: Some(sj), ctl: Some(ctl), ctl2: None, ovs_dir: None, routes: None })
            }
            Dut::Testpmd => {
                // stdbuf: testpmd's stdout is block-buffered on a pipe, and we wait for a line.
                let mut c = Command::new("stdbuf");
                c.args([
                    "-oL",
                    "dpdk-testpmd",
                    "-l",
                    &format!("{},{}", self.cfg.gen_core, self.cfg.dut_core),
                    "--no-pci",
                    "--in-memory",
                    &format!("--file-prefix={prefix}"),
                ]);
                c.arg(format!("--vdev=net_vhost0,iface={}", sa.display())).arg(format!("--vdev=net_vhost1,iface={}", sb.display()));
                // Interactive, so that its own cycles/packet can be read per run
                // (--record-core-cycles; `clear`/`show fwd stats all`).
                c.args(["--", "-i", "--forward-mode=io", "--nb-cores=1", "--record-core-cycles"]);
                let mut p = Proc::spawn("dpdk-testpmd", &mut c, Some(log))?;
                p.wait_for("Checking link statuses", Duration::from_secs(30))?;
                p.say("start");
                Ok(RunningDut { dut, procs: vec![p], stats_json: None, ctl: None, ctl2: None, ovs_dir: None, routes: None })
            }
            Dut::L3fwd => {
                // One lcore, the DUT core (l3fwd makes a tx queue per lcore and a
                // net_vhost port has one); EAL's control threads go to the other CPU. It
                // rewrites the destination MAC to --eth-dest and does not look at the one
                // it gets.
                let mut c = Command::new("stdbuf");
                c.args(["-oL", L3FWD, "-l", &self.cfg.dut_core.to_string(), "--no-pci", "--in-memory"]);
                c.arg(format!("--file-prefix={prefix}"));
                c.arg(format!("--vdev=net_vhost0,iface={}", sa.display())).arg(format!("--vdev=net_vhost1,iface={}", sb.display()));
                let core = self.cfg.dut_core;
                c.args(["--", "-p", "0x3", "-P", "--lookup=lpm", "--parse-ptype"]);
                c.arg(format!("--config=(0,0,{core}),(1,0,{core})"));
                c.args(["--eth-dest=0,02:00:00:01:00:00", "--eth-dest=1,02:00:00:02:00:00"]);
                let mut p = Proc::spawn("l3fwd", &mut c, Some(log))?;
                p.wait_for("l3fwd-cycles", Duration::from_secs(30))?;
                Ok(RunningDut { dut, procs: vec![p], stats_json: None, ctl: None, ctl2: None, ovs_dir: None, routes: None })
            }
            _ => self.start_ovs(dut, sa, sb, &prefix, log),
        }
    }

    /// `pmdswitch-vxlan` and `pmdswitch-pair`: host 1 serves the memif socket and `sa`,
    /// host 2 connects to it and serves `sb`; both on the DUT core.
    fn start_pair(&mut self, dut: Dut, sa: &Path, sb: &Path, prefix: &str) -> Result<RunningDut, String> {
        let memif = self.cfg.scratch.join(format!("{prefix}-memif.sock"));
        let mut procs = Vec::new();
        let mut ctls = Vec::new();
        let mut sj = None;
        for (h, sock, vm) in [(1, sa, "a"), (2, sb, "b")] {
            let ctl = self.cfg.scratch.join(format!("{prefix}-{h}.ctl"));
            let json = self.cfg.scratch.join(format!("{prefix}-{h}.json"));
            let mut c = Command::new(&self.cfg.exe);
            c.args(["run", "--port"]).arg(format!("{vm}=vhost-server:{}", sock.display())).arg("--port");
            // A 16 Ki-slot ring (rsize=14): the two hosts take turns on one core.
            c.arg(format!(
                "u=vdev:net_memif{h},role={},socket={},id=0,rsize=14",
                if h == 1 { "server" } else { "client" },
                memif.display()
            ));
            if dut == Dut::PmdswitchVxlan {
                let (me, other) = (format!("198.18.0.{h}"), format!("198.18.0.{}", 3 - h));
                c.args(["--bridge", &format!("br0={vm}"), "--ip", &format!("u={me}/24"), "--mtu", "u=1600"]);
                c.args(["--vxlan", &format!("5001=br0,local={me},remote={other}")]);
            } else {
                c.args(["--bridge", &format!("br0={vm},u")]);
            }
            c.args(["--cores", &self.cfg.dut_core.to_string(), "--stats-json"]).arg(&json);
            c.arg("--ctl").arg(&ctl);
            c.args(["--", "-l", &self.cfg.gen_core.to_string(), &format!("--file-prefix={prefix}h{h}")]);
            let log = self.cfg.logs.join(format!("{prefix}-{h}.log"));
            let mut p = Proc::spawn("pmdswitch run", &mut c, Some(log))?;
            p.wait_for("forwarding with", Duration::from_secs(30))?;
            procs.push(p);
            ctls.push(ctl);
            sj.get_or_insert(json);
        }
        let ctl2 = ctls.pop();
        Ok(RunningDut { dut, procs, stats_json: sj, ctl: ctls.pop(), ctl2, ovs_dir: None, routes: None })
    }

    /// Whether `dut` can run a cell with an `n`-route table (OVS's flow table takes a
    /// bench's minute per 100 000 flows: larger tables are left out, shown as "-").
    pub fn takes_routes(&self, dut: Dut, n: usize) -> bool {
        dut != Dut::OvsL3 || n <= OVS_MAX_ROUTES
    }

    /// Gets a router DUT's route table to `n` routes (the files from `routes::write` in
    /// the scratch directory) before a cell that needs it; returns the seconds a table
    /// load took (pmdswitch's `ctl route load`), None when nothing was loaded.
    ///
    /// # Errors
    /// The DUT refused the table.
    pub fn prepare_routes(&mut self, d: &mut RunningDut, n: usize) -> Result<Option<f64>, String> {
        if !d.dut.routes() || d.routes == Some(n) || d.dut == Dut::L3fwd {
            return Ok(None);
        }
        let (rf, _, _) =
            super::routes::write(&self.cfg.scratch, n, ROUTE_SEED).map_err(|e| format!("cannot write the route table: {e}"))?;
        let t0 = Instant::now();
        match d.dut {
            Dut::OvsL3 => {
                let dir = d.ovs_dir.clone().ok_or("no OVS directory")?;
                let flows = dir.join("flows.txt");
                let (a, b) = super::routes::generate(n, ROUTE_SEED);
                if a.len() + b.len() > OVS_MAX_ROUTES {
                    return Err(format!("--dut ovs-l3 takes at most {OVS_MAX_ROUTES} routes (OpenFlow flows): {n} asked"));
                }
                let mut text = String::new();
                // Port a's prefixes are routed out of a (ofport 1), b's out of b.
                for (set, out, mac) in [(&a, 1, "02:00:00:01:00:00"), (&b, 2, "02:00:00:02:00:00")] {
                    for &(p, l) in set.iter() {
                        text.push_str(&format!(
                            "priority={},ip,nw_dst={}/{l},actions=dec_ttl,mod_dl_src:02:00:00:00:fe:{out:02x},mod_dl_dst:{mac},output:{out}\n",
                            100 + u32::from(l),
                            std::net::Ipv4Addr::from(p)
                        ));
                    }
                }
                std::fs::write(&flows, text).map_err(|e| format!("{}: {e}", flows.display()))?;
                let br = format!("unix:{}", dir.join("br0.mgmt").display());
                let o = Command::new("ovs-ofctl").args(["del-flows", &br]).output().map_err(|e| format!("ovs-ofctl: {e}"))?;
                if !o.status.success() {
                    return Err(format!("ovs-ofctl del-flows: {}", String::from_utf8_lossy(&o.stderr).trim()));
                }
                let o = Command::new("ovs-ofctl").args(["add-flows", &br]).arg(&flows).output().map_err(|e| format!("ovs-ofctl: {e}"))?;
                if !o.status.success() {
                    return Err(format!("ovs-ofctl add-flows: {}", String::from_utf8_lossy(&o.stderr).trim()));
                }
            }
            _ => {
                if let Some(old) = d.routes {
                    let (of, _, _) = super::routes::write(&self.cfg.scratch, old, ROUTE_SEED).map_err(|e| e.to_string())?;
                    let r = crate::control::client::request(
                        d.ctl.clone(),
                        &["route".into(), "load".into(), of.display().to_string(), "del".into()],
                    )?;
                    if !r.starts_with("ok") {
                        return Err(format!("removing the previous table: {}", r.trim()));
                    }
                }
                let t0 = Instant::now();
                let r = crate::control::client::request(d.ctl.clone(), &["route".into(), "load".into(), rf.display().to_string()])?;
                if !r.starts_with("ok") {
                    return Err(format!("the router refused the table: {}", r.trim()));
                }
                println!("bench:   {} loaded {n} routes: {}", d.dut.name(), r.trim_start_matches("ok: ").trim());
                d.routes = Some(n);
                return Ok(Some(t0.elapsed().as_secs_f64()));
            }
        }
        d.routes = Some(n);
        Ok(Some(t0.elapsed().as_secs_f64()))
    }

    /// The generator's arguments for `dut` beyond the cell's (addresses, gateways and
    /// destinations for routers: `n` routes).
    pub fn gen_args(&self, dut: Dut, n: usize) -> Vec<String> {
        use super::routes::{GEN_A, GEN_B, RTR_A, RTR_B};
        match dut {
            Dut::PmdswitchRouter | Dut::PmdswitchRouterLib => {
                let (_, da, db) = match super::routes::write(&self.cfg.scratch, n.max(1), ROUTE_SEED) {
                    Ok(x) => x,
                    Err(_) => return vec![],
                };
                vec![
                    "--ip".into(),
                    format!("a={GEN_A}"),
                    "--ip".into(),
                    format!("b={GEN_B}"),
                    "--gateway".into(),
                    format!("a={RTR_A}"),
                    "--gateway".into(),
                    format!("b={RTR_B}"),
                    "--dst-ips".into(),
                    format!("a=@{}", da.display()),
                    "--dst-ips".into(),
                    format!("b=@{}", db.display()),
                ]
            }
            Dut::OvsL3 => {
                let (_, da, db) = match super::routes::write(&self.cfg.scratch, n.max(1), ROUTE_SEED) {
                    Ok(x) => x,
                    Err(_) => return vec![],
                };
                vec!["--dst-ips".into(), format!("a=@{}", da.display()), "--dst-ips".into(), format!("b=@{}", db.display())]
            }
            // l3fwd's own table: a's stream to its port 1, b's to port 0.
            Dut::L3fwd => vec!["--dst-ips".into(), "a=198.18.1.0/24".into(), "--dst-ips".into(), "b=198.18.0.0/24".into()],
            _ => vec![],
        }
    }

    /// A private OVS: its own ovsdb and ovs-vswitchd in a state directory of ours (the
    /// machine's own OVS, if any, is not touched), DPDK with one PMD on the DUT core, a
    /// netdev bridge with two dpdkvhostuser ports (OVS serves the sockets) and
    /// port-to-port OpenFlow rules.
    fn start_ovs(&mut self, dut: Dut, sa: &Path, sb: &Path, prefix: &str, log: PathBuf) -> Result<RunningDut, String> {
        let dir = self.cfg.scratch.join(prefix);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let db = dir.join("conf.db");
        let env = |c: &mut Command| {
            c.env("OVS_RUNDIR", &dir).env("OVS_LOGDIR", &dir).env("OVS_DBDIR", &dir).env("OVS_SYSCONFDIR", &dir);
        };
        let run = |args: &[&str]| -> Result<String, String> {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            env(&mut c);
            let o = c.output().map_err(|e| format!("{}: {e}", args[0]))?;
            if !o.status.success() {
                return Err(format!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()));
            }
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        };
        run(&["ovsdb-tool", "create", &db.to_string_lossy(), "/usr/share/openvswitch/vswitch.ovsschema"])?;
        let sock = dir.join("db.sock");
        let mut c = Command::new("ovsdb-server");
        c.arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--pidfile={}", dir.join("ovsdb.pid").display()))
            .arg("--unixctl")
            .arg(dir.join("ovsdb.ctl"));
        env(&mut c);
        let mut procs = vec![Proc::spawn("ovsdb-server", &mut c, Some(log.with_extension("ovsdb.log")))?];
        let t0 = Instant::now();
        while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let db_arg = format!("--db=unix:{}", sock.display());
        let vsctl = |args: &[&str]| -> Result<String, String> {
            let mut v = vec!["ovs-vsctl", "--no-wait", db_arg.as_str()];
            v.extend_from_slice(args);
            run(&v)
        };
        vsctl(&["init"])?;
        let mask = format!("0x{:x}", 1u64 << self.cfg.dut_core);
        let extra = format!("--in-memory --file-prefix={prefix} --no-pci");
        vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "other_config:dpdk-init=true",
            &format!("other_config:pmd-cpu-mask={mask}"),
            &format!("other_config:dpdk-lcore-mask=0x{:x}", 1u64 << self.cfg.gen_core),
            "other_config:dpdk-socket-mem=512",
            &format!("other_config:dpdk-extra={extra}"),
        ])?;
        let mut c = Command::new(ovs_vswitchd_dpdk().ok_or_else(|| {
            "--dut ovs: no DPDK build of ovs-vswitchd: run scripts/setup.sh --extras (openvswitch-switch-dpdk)".to_string()
        })?);
        c.arg(format!("unix:{}", sock.display())).arg(format!("--pidfile={}", dir.join("vswitchd.pid").display()));
        c.arg("--unixctl").arg(dir.join("vswitchd.ctl")).arg(format!("--log-file={}", dir.join("vswitchd.log").display()));
        env(&mut c);
        let mut v = Proc::spawn("ovs-vswitchd", &mut c, Some(log.clone()))?;
        let t0 = Instant::now();
        loop {
            let vlog = std::fs::read_to_string(dir.join("vswitchd.log")).unwrap_or_default();
            if vlog.contains("DPDK Enabled") {
                break;
            }
            if vlog.contains("DPDK not supported")
                || vlog.contains("EAL: FATAL")
                || t0.elapsed() > Duration::from_secs(60)
                || matches!(v.child.try_wait(), Ok(Some(_)))
            {
                let _ = std::fs::copy(dir.join("vswitchd.log"), &log);
                return Err(format!("ovs-vswitchd did not bring DPDK up; its log: {}", log.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        procs.push(v);
        // OVS serves dpdkvhostuser sockets in its run directory (OVS_RUNDIR, ours), named
        // after the port: create the ports as a and b, then link them to the paths the
        // generator was given.
        vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"])?;
        for (n, p) in [("a", sa), ("b", sb)] {
            vsctl(&[
                "add-port",
                "br0",
                n,
                "--",
                "set",
                "Interface",
                n,
                "type=dpdkvhostuser",
                &format!("ofport_request={}", if n == "a" { 1 } else { 2 }),
            ])?;
            let made = dir.join(n);
            let t0 = Instant::now();
            while !made.exists() {
                if t0.elapsed() > Duration::from_secs(20) {
                    let _ = std::fs::copy(dir.join("vswitchd.log"), &log);
                    return Err(format!("OVS did not create vhost-user socket {}; its log: {}", made.display(), log.display()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::os::unix::fs::symlink(&made, p).map_err(|e| format!("link {}: {e}", p.display()))?;
        }
        let ofctl = |args: &[&str]| -> Result<String, String> {
            let mut v = vec!["ovs-ofctl"];
            v.extend_from_slice(args);
            run(&v)
        };
        let br = format!("unix:{}", dir.join("br0.mgmt").display());
        ofctl(&["del-flows", &br])?;
        if dut == Dut::OvsNormal {
            ofctl(&["add-flow", &br, "actions=NORMAL"])?;
        } else if dut == Dut::OvsL3 {
            // Routes come with the cell (prepare_routes); until then nothing forwards.
        } else {
            ofctl(&["add-flow", &br, "in_port=1,actions=output:2"])?;
            ofctl(&["add-flow", &br, "in_port=2,actions=output:1"])?;
        }
        Ok(RunningDut { dut, procs, stats_json: None, ctl: None, ctl2: None, ovs_dir: Some(dir), routes: None })
    }

    /// Runs the generator once against sockets `sa` and `sb` with `extra` arguments;
    /// returns its report (a [`RunReport`], or with `--search` a `SearchReport`).
    ///
    /// # Errors
    /// The generator failed (its last line), or wrote no report of that type.
    pub fn gen<T: DeserializeOwned>(&mut self, sa: &Path, sb: &Path, extra: &[String]) -> Result<T, String> {
        let prefix = self.next("gen");
        let json_path = self.cfg.scratch.join(format!("{prefix}.json"));
        let mut c = Command::new(&self.cfg.exe);
        c.args(["gen", "--port"]).arg(format!("a=vdev:net_virtio_user0,path={},queue_size={QUEUE}", sa.display()));
        c.arg("--port").arg(format!("b=vdev:net_virtio_user1,path={},queue_size={QUEUE}", sb.display()));
        c.args(["--core", &self.cfg.gen_core.to_string(), "--json"]).arg(&json_path).arg("--quiet");
        c.args(extra);
        c.args(["--", "-l", &self.cfg.gen_core.to_string(), &format!("--file-prefix={prefix}")]);
        let log = self.cfg.logs.join(format!("{prefix}.log"));
        let mut p = Proc::spawn("pmdswitch gen", &mut c, Some(log))?;
        let st = p.finish_unless(Duration::from_secs(3600), &self.term);
        let text = p.text();
        match st {
            Some(s) if s.success() => {}
            _ => return Err(format!("the generator failed: {}", text.lines().last().unwrap_or("no output"))),
        }
        let text = std::fs::read_to_string(&json_path).map_err(|e| format!("the generator wrote no JSON: {e}"))?;
        let _ = std::fs::remove_file(&json_path);
        serde_json::from_str(&text).map_err(|e| format!("the generator's JSON does not read as its report: {e}"))
    }

    /// Stops a DUT; returns pmdswitch's final stats JSON.
    pub fn stop_dut(&mut self, mut d: RunningDut) -> Option<Value> {
        for p in d.procs.iter_mut().rev() {
            if d.dut == Dut::Testpmd {
                p.say("quit");
            } else {
                p.signal(libc::SIGINT);
            }
            p.finish(Duration::from_secs(10));
        }
        if let Some(dir) = &d.ovs_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        d.stats_json.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| serde_json::from_str(&t).ok())
    }
}
