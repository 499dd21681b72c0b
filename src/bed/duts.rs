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
}

const DUTS: [Dut; 8] = [
    Dut::Pmdswitch,
    Dut::PmdswitchAdaptive,
    Dut::PmdswitchBridge,
    Dut::PmdswitchLib,
    Dut::PmdswitchBridgeLib,
    Dut::Testpmd,
    Dut::Ovs,
    Dut::OvsNormal,
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
        }
    }
    pub fn is_ovs(self) -> bool {
        matches!(self, Dut::Ovs | Dut::OvsNormal)
    }
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
    let need = match d {
        Dut::Pmdswitch | Dut::PmdswitchAdaptive | Dut::PmdswitchBridge | Dut::PmdswitchLib | Dut::PmdswitchBridgeLib => return Ok(()),
        Dut::Testpmd => "dpdk-testpmd",
        Dut::Ovs | Dut::OvsNormal => "ovsdb-server",
    };
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join(need).exists()));
    if !found {
        return Err(format!("--dut {}: {need} is not installed: run scripts/setup.sh --extras", d.name()));
    }
    Ok(())
}

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
    /// OVS state directory (removed at the end).
    pub ovs_dir: Option<PathBuf>,
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
            Dut::Pmdswitch | Dut::PmdswitchAdaptive | Dut::PmdswitchBridge | Dut::PmdswitchLib | Dut::PmdswitchBridgeLib => {
                let sj = self.cfg.scratch.join(format!("{prefix}.json"));
                let ctl = self.cfg.scratch.join(format!("{prefix}.ctl"));
                let mut c = Command::new(&self.cfg.exe);
                c.args(["run", "--port"])
                    .arg(format!("a=vhost-server:{}", sa.display()))
                    .arg("--port")
                    .arg(format!("b=vhost-server:{}", sb.display()));
                match dut {
                    Dut::PmdswitchBridge | Dut::PmdswitchBridgeLib => c.args(["--bridge", "br0=a,b"]),
                    Dut::PmdswitchAdaptive => c.args(["--xconnect", "a,b", "--idle", "adaptive"]),
                    _ => c.args(["--xconnect", "a,b"]),
                };
                let lib = matches!(dut, Dut::PmdswitchLib | Dut::PmdswitchBridgeLib);
                c.args(["--vhost-datapath", if lib { "lib" } else { "own" }]);
                c.args(["--cores", &self.cfg.dut_core.to_string(), "--stats-json"]).arg(&sj);
                c.arg("--ctl").arg(&ctl);
                c.args(["--", "-l", &self.cfg.gen_core.to_string(), &format!("--file-prefix={prefix}")]);
                let mut p = Proc::spawn("pmdswitch run", &mut c, Some(log))?;
                p.wait_for("forwarding with", Duration::from_secs(30))?;
                Ok(RunningDut { dut, procs: vec![p], stats_json: Some(sj), ctl: Some(ctl), ovs_dir: None })
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
                Ok(RunningDut { dut, procs: vec![p], stats_json: None, ctl: None, ovs_dir: None })
            }
            Dut::Ovs | Dut::OvsNormal => self.start_ovs(dut, sa, sb, &prefix, log),
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
        } else {
            ofctl(&["add-flow", &br, "in_port=1,actions=output:2"])?;
            ofctl(&["add-flow", &br, "in_port=2,actions=output:1"])?;
        }
        Ok(RunningDut { dut, procs, stats_json: None, ctl: None, ovs_dir: Some(dir) })
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
