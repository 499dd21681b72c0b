//! `pmdswitch bench`: the whole measurement loop on one machine, in one command.
//!
//! The device under test (DUT) gets two vhost-user sockets and one forwarding core; the
//! generator (`pmdswitch gen`, a process of its own) stands where two VMs would stand,
//! with two virtio-user ports on the other core. For each DUT the matrix — frame sizes ×
//! flow counts × (max rate, NDR) — runs against a fresh DUT per round; with `--compare`
//! the DUTs alternate within each round (A B, then B A) so a slow phase of a shared host
//! hits all of them, and ratios are medians of per-round ratios.
//!
//! Everything runs as child processes in a scratch directory (sockets, logs, control
//! sockets); every child uses `--in-memory`, so no hugepage file outlives it. On Ctrl-C
//! the children (same process group) stop by themselves; we reap them, kill what is
//! left, and remove the scratch directory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use pmdswitch::cli::BenchArgs;
use pmdswitch::startup::Failure;
mod plot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dut {
    /// `pmdswitch run`, cross-connect, busy polling.
    Pmdswitch,
    /// The same with `--idle adaptive` (what sleeping costs under load, and on wake-up).
    PmdswitchAdaptive,
    /// `pmdswitch run --bridge br0=a,b` (MAC learning and lookups per packet).
    PmdswitchBridge,
    Testpmd,
    /// OVS-DPDK with port-to-port OpenFlow rules.
    Ovs,
    /// OVS-DPDK with the NORMAL action (its learning switch).
    OvsNormal,
}

const DUTS: [Dut; 6] = [Dut::Pmdswitch, Dut::PmdswitchAdaptive, Dut::PmdswitchBridge, Dut::Testpmd, Dut::Ovs, Dut::OvsNormal];

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
            Dut::Testpmd => "testpmd",
            Dut::Ovs => "ovs",
            Dut::OvsNormal => "ovs-normal",
        }
    }
    fn is_ovs(self) -> bool {
        matches!(self, Dut::Ovs | Dut::OvsNormal)
    }
}

fn list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>, Failure> {
    s.split(',')
        .map(|x| x.trim().parse::<T>().map_err(|_| Failure::Usage(format!("{flag} '{s}': '{x}' is not a number: write e.g. 64,512,1518"))))
        .collect()
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    frame: usize,
    flows: u32,
}

struct Plan {
    duts: Vec<Dut>,
    cells: Vec<Cell>,
    max: bool,
    /// Frame sizes and flow counts searched for NDR.
    ndr_frames: Vec<usize>,
    ndr_flows: Vec<u32>,
    secs: f64,
    warmup: f64,
    trial_secs: f64,
    resolution: f64,
    rounds: usize,
    out: PathBuf,
    dut_core: usize,
    gen_core: usize,
    macs: u32,
    rate: Option<String>,
}

fn plan(a: &BenchArgs) -> Result<Plan, Failure> {
    let mut duts = vec![Dut::parse(a.dut.as_deref().unwrap_or("pmdswitch")).map_err(Failure::Usage)?];
    if let Some(c) = &a.compare {
        for n in c.split(',') {
            let d = Dut::parse(n.trim()).map_err(Failure::Usage)?;
            if !duts.contains(&d) {
                duts.push(d);
            }
        }
    }
    let frames: Vec<usize> = list("--frames", a.frames.as_deref().unwrap_or("64,512,1518"))?;
    if let Some(f) = frames.iter().find(|f| !(64..=1518).contains(*f)) {
        return Err(Failure::Usage(format!("--frames: {f} is out of range for a vhost-user loop: use 64 to 1518")));
    }
    let flows: Vec<u32> = list("--flows", a.flows.as_deref().unwrap_or("1,1024"))?;
    if let Some(f) = flows.iter().find(|f| **f == 0 || **f > 32768) {
        return Err(Failure::Usage(format!("--flows: {f} is out of range: use 1 to 32768")));
    }
    let modes = a.modes.clone().unwrap_or_else(|| "max,ndr".into());
    let (mut max, mut ndr) = (false, false);
    for m in modes.split(',') {
        match m.trim() {
            "max" => max = true,
            "ndr" => ndr = true,
            other => return Err(Failure::Usage(format!("--modes: '{other}' is not a mode: use max, ndr or max,ndr"))),
        }
    }
    for (flag, v) in [("--secs", a.secs), ("--warmup", a.warmup)] {
        if v.is_some_and(|v| !(0.0..3600.0).contains(&v)) || (flag == "--secs" && v == Some(0.0)) {
            return Err(Failure::Usage(format!("{flag} takes seconds (0 < SECS < 3600)")));
        }
    }
    if let Some(r) = &a.rate {
        pmdswitch::parse::Rate::parse(r).map_err(|e| Failure::Usage(e.replace("--rate", "bench --rate")))?;
    }
    let q = a.quick;
    let cells = frames.iter().flat_map(|&frame| flows.iter().map(move |&flows| Cell { frame, flows })).collect();
    let ndr_frames = if !ndr {
        vec![]
    } else if q && a.frames.is_none() {
        vec![64]
    } else {
        frames.clone()
    };
    let ndr_flows = if q && a.flows.is_none() { vec![flows[0]] } else { flows.clone() };
    for d in &duts {
        check_dut(*d)?;
    }
    if pmdswitch::startup::preflight::free_hugepages() < 512 {
        return Err(Failure::Usage(
            "fewer than 512 free hugepages: the DUT and the generator need about 1 GiB: run scripts/setup.sh".into(),
        ));
    }
    let cpus = pmdswitch::startup::preflight::allowed_cpus();
    let gen_core = a.gen_core.unwrap_or(0);
    let dut_core = a.dut_core.unwrap_or(1);
    for c in [gen_core, dut_core] {
        if !cpus.contains(&c) {
            return Err(Failure::Usage(format!("CPU {c} is not usable here: pick --dut-core and --gen-core from {:?}", cpus)));
        }
    }
    if gen_core == dut_core {
        return Err(Failure::Usage("--dut-core and --gen-core are the same CPU: the loop needs two".into()));
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        PathBuf::from(format!("bench-out/bench-{t}"))
    });
    Ok(Plan {
        rounds: a.rounds.unwrap_or(if duts.len() > 1 { 3 } else { 1 }).max(1),
        duts,
        cells,
        max: max || !ndr,
        ndr_frames,
        ndr_flows,
        secs: a.secs.unwrap_or(if q { 1.0 } else { 3.0 }),
        warmup: a.warmup.unwrap_or(if q { 0.5 } else { 1.0 }),
        trial_secs: a.secs.unwrap_or(if q { 0.5 } else { 3.0 }),
        resolution: a.resolution_pct.unwrap_or(if q { 5.0 } else { 2.0 }),
        out,
        dut_core,
        gen_core,
        macs: a.macs.unwrap_or(1),
        rate: a.rate.clone(),
    })
}

/// The DPDK build of ovs-vswitchd that Debian's openvswitch-switch-dpdk installs (the
/// plain /usr/sbin/ovs-vswitchd has no DPDK unless update-alternatives chose it).
fn ovs_vswitchd_dpdk() -> Option<PathBuf> {
    ["/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk", "/usr/sbin/ovs-vswitchd-dpdk"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn check_dut(d: Dut) -> Result<(), Failure> {
    if d.is_ovs() && ovs_vswitchd_dpdk().is_none() {
        return Err(Failure::Usage(
            "--dut ovs: the DPDK build of ovs-vswitchd is not installed: run scripts/setup.sh --extras (openvswitch-switch-dpdk)".into(),
        ));
    }
    let need = match d {
        Dut::Pmdswitch | Dut::PmdswitchAdaptive | Dut::PmdswitchBridge => return Ok(()),
        Dut::Testpmd => "dpdk-testpmd",
        Dut::Ovs | Dut::OvsNormal => "ovsdb-server",
    };
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join(need).exists()));
    if !found {
        return Err(Failure::Usage(format!("--dut {}: {need} is not installed: run scripts/setup.sh --extras", d.name())));
    }
    Ok(())
}

/// Virtio ring size of the generator's ports (DPDK's virtio-user default is 256): 4096
/// descriptors ride out ~3 ms of a descheduled core at 1.4 Mpps instead of 0.2 ms, so a
/// zero-loss search measures the switch, not this host's scheduler.
const QUEUE: usize = 4096;

/// A child process that is stopped (politely, then not) when dropped.
struct Proc {
    name: String,
    child: Child,
    /// Lines of stdout seen so far.
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Result<Proc, Failure> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Runtime(format!("cannot start {name}: {e}")))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        for r in
            [Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().expect("piped"))]
        {
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    l.lock().expect("log lock").push(line);
                }
            });
        }
        Ok(Proc { name: name.into(), child, lines, log })
    }

    fn text(&self) -> String {
        self.lines.lock().expect("log lock").join("\n")
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(), Failure> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.text().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(Failure::Runtime(format!("{} exited ({st}) before it was ready; its log: {}", self.name, self.save())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Failure::Runtime(format!("{} was not ready after {:?}; its log: {}", self.name, timeout, self.save())))
    }

    /// Waits for exit like `finish`, passing SIGINT on as soon as `term` is set.
    fn finish_unless(&mut self, timeout: Duration, term: &AtomicBool) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if term.load(Ordering::SeqCst) {
                self.signal("-INT");
                return self.finish(Duration::from_secs(10));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.finish(Duration::ZERO)
    }

    /// Waits for exit; kills after `timeout`.
    fn finish(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(20)); // let the readers drain
                self.save();
                return Some(st);
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.save();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A line to the child's stdin (testpmd's prompt).
    fn say(&mut self, line: &str) {
        if let Some(i) = self.child.stdin.as_mut() {
            let _ = writeln!(i, "{line}");
            let _ = i.flush();
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([sig, &self.child.id().to_string()]).stderr(Stdio::null()).status();
    }

    fn save(&self) -> String {
        let _ = std::fs::write(&self.log, self.text() + "\n");
        self.log.display().to_string()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("-INT");
            self.finish(Duration::from_secs(5));
        }
    }
}

/// A running DUT with its two sockets.
struct RunningDut {
    dut: Dut,
    procs: Vec<Proc>,
    stats_json: Option<PathBuf>,
    /// pmdswitch's control socket: its port counters around each generator run.
    ctl: Option<PathBuf>,
    /// OVS state directory (removed at the end).
    ovs_dir: Option<PathBuf>,
}

struct Bed {
    /// Set on SIGINT/SIGTERM: children are told to stop too (a Ctrl-C at a terminal
    /// reaches them directly; a `kill` of the bench alone does not).
    term: Arc<AtomicBool>,
    scratch: PathBuf,
    exe: PathBuf,
    plan: Plan,
    tag: String,
    serial: usize,
}

impl Bed {
    fn next(&mut self, what: &str) -> String {
        self.serial += 1;
        format!("{}-{what}{}", self.tag, self.serial)
    }

    fn start_dut(&mut self, dut: Dut, sa: &Path, sb: &Path) -> Result<RunningDut, Failure> {
        let prefix = self.next(dut.name());
        let log = self.plan.out.join("logs").join(format!("{prefix}.log"));
        match dut {
            Dut::Pmdswitch | Dut::PmdswitchAdaptive | Dut::PmdswitchBridge => {
                let sj = self.scratch.join(format!("{prefix}.json"));
                let ctl = self.scratch.join(format!("{prefix}.ctl"));
                let mut c = Command::new(&self.exe);
                c.args(["run", "--port"])
                    .arg(format!("a=vhost-server:{}", sa.display()))
                    .arg("--port")
                    .arg(format!("b=vhost-server:{}", sb.display()));
                match dut {
                    Dut::PmdswitchBridge => c.args(["--bridge", "br0=a,b"]),
                    Dut::PmdswitchAdaptive => c.args(["--xconnect", "a,b", "--idle", "adaptive"]),
                    _ => c.args(["--xconnect", "a,b"]),
                };
                c.args(["--cores", &self.plan.dut_core.to_string(), "--stats-json"]).arg(&sj);
                c.arg("--ctl").arg(&ctl);
                c.args(["--", "-l", &self.plan.gen_core.to_string(), &format!("--file-prefix={prefix}")]);
                let mut p = Proc::spawn("pmdswitch run", &mut c, log)?;
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
                    &format!("{},{}", self.plan.gen_core, self.plan.dut_core),
                    "--no-pci",
                    "--in-memory",
                    &format!("--file-prefix={prefix}"),
                ]);
                c.arg(format!("--vdev=net_vhost0,iface={}", sa.display())).arg(format!("--vdev=net_vhost1,iface={}", sb.display()));
                // Interactive, so that its own cycles/packet can be read per run
                // (--record-core-cycles; `clear`/`show fwd stats all`).
                c.args(["--", "-i", "--forward-mode=io", "--nb-cores=1", "--record-core-cycles"]);
                let mut p = Proc::spawn("dpdk-testpmd", &mut c, log)?;
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
    fn start_ovs(&mut self, dut: Dut, sa: &Path, sb: &Path, prefix: &str, log: PathBuf) -> Result<RunningDut, Failure> {
        let dir = self.scratch.join(prefix);
        std::fs::create_dir_all(&dir).map_err(|e| Failure::Runtime(format!("{}: {e}", dir.display())))?;
        let db = dir.join("conf.db");
        let env = |c: &mut Command| {
            c.env("OVS_RUNDIR", &dir).env("OVS_LOGDIR", &dir).env("OVS_DBDIR", &dir).env("OVS_SYSCONFDIR", &dir);
        };
        let run = |args: &[&str]| -> Result<String, Failure> {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            env(&mut c);
            let o = c.output().map_err(|e| Failure::Runtime(format!("{}: {e}", args[0])))?;
            if !o.status.success() {
                return Err(Failure::Runtime(format!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())));
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
        let mut procs = vec![Proc::spawn("ovsdb-server", &mut c, log.with_extension("ovsdb.log"))?];
        let t0 = Instant::now();
        while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let db_arg = format!("--db=unix:{}", sock.display());
        let vsctl = |args: &[&str]| -> Result<String, Failure> {
            let mut v = vec!["ovs-vsctl", "--no-wait", db_arg.as_str()];
            v.extend_from_slice(args);
            run(&v)
        };
        vsctl(&["init"])?;
        let mask = format!("0x{:x}", 1u64 << self.plan.dut_core);
        let extra = format!("--in-memory --file-prefix={prefix} --no-pci");
        vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "other_config:dpdk-init=true",
            &format!("other_config:pmd-cpu-mask={mask}"),
            &format!("other_config:dpdk-lcore-mask=0x{:x}", 1u64 << self.plan.gen_core),
            "other_config:dpdk-socket-mem=512",
            &format!("other_config:dpdk-extra={extra}"),
        ])?;
        let mut c = Command::new(ovs_vswitchd_dpdk().ok_or_else(|| {
            Failure::Runtime("--dut ovs: no DPDK build of ovs-vswitchd: run scripts/setup.sh --extras (openvswitch-switch-dpdk)".into())
        })?);
        c.arg(format!("unix:{}", sock.display())).arg(format!("--pidfile={}", dir.join("vswitchd.pid").display()));
        c.arg("--unixctl").arg(dir.join("vswitchd.ctl")).arg(format!("--log-file={}", dir.join("vswitchd.log").display()));
        env(&mut c);
        let mut v = Proc::spawn("ovs-vswitchd", &mut c, log.clone())?;
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
                return Err(Failure::Runtime(format!("ovs-vswitchd did not bring DPDK up; its log: {}", log.display())));
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
                    return Err(Failure::Runtime(format!(
                        "OVS did not create vhost-user socket {}; its log: {}",
                        made.display(),
                        log.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::os::unix::fs::symlink(&made, p).map_err(|e| Failure::Runtime(format!("link {}: {e}", p.display())))?;
        }
        let ofctl = |args: &[&str]| -> Result<String, Failure> {
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

    /// Runs the generator once; returns its JSON.
    fn gen(&mut self, sa: &Path, sb: &Path, extra: &[String]) -> Result<Value, Failure> {
        let prefix = self.next("gen");
        let json_path = self.scratch.join(format!("{prefix}.json"));
        let mut c = Command::new(&self.exe);
        c.args(["gen", "--port"]).arg(format!("a=vdev:net_virtio_user0,path={},queue_size={QUEUE}", sa.display()));
        c.arg("--port").arg(format!("b=vdev:net_virtio_user1,path={},queue_size={QUEUE}", sb.display()));
        c.args(["--core", &self.plan.gen_core.to_string(), "--json"]).arg(&json_path).arg("--quiet");
        c.args(extra);
        c.args(["--", "-l", &self.plan.gen_core.to_string(), &format!("--file-prefix={prefix}")]);
        let log = self.plan.out.join("logs").join(format!("{prefix}.log"));
        let mut p = Proc::spawn("pmdswitch gen", &mut c, log)?;
        let st = p.finish_unless(Duration::from_secs(3600), &self.term);
        let text = p.text();
        match st {
            Some(s) if s.success() => {}
            _ => return Err(Failure::Runtime(format!("the generator failed: {}", text.lines().last().unwrap_or("no output")))),
        }
        let v: Value = std::fs::read_to_string(&json_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| Failure::Runtime("the generator wrote no JSON".into()))?;
        let _ = std::fs::remove_file(&json_path);
        Ok(v)
    }

    fn stop_dut(&mut self, mut d: RunningDut) -> Option<Value> {
        for p in d.procs.iter_mut().rev() {
            if d.dut == Dut::Testpmd {
                p.say("quit");
            } else {
                p.signal("-INT");
            }
            p.finish(Duration::from_secs(10));
        }
        if let Some(dir) = &d.ovs_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        d.stats_json.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| serde_json::from_str(&t).ok())
    }
}

/// pmdswitch's port counters now: [rx a, tx a, rx b, tx b, drops].
fn dut_counters(d: &RunningDut) -> Option<[u64; 5]> {
    let reply = pmdswitch::control::client::request(d.ctl.clone(), &["show".into(), "ports".into(), "--json".into()]).ok()?;
    let v: Value = serde_json::from_str(&reply).ok()?;
    let g = |p: &str, k: &str| v["ports"][p][k].as_u64();
    let drops: u64 =
        ["a", "b"].iter().filter_map(|p| v["ports"][p]["drops"].as_object()).flat_map(|o| o.values().filter_map(Value::as_u64)).sum();
    Some([g("a", "rx_packets")?, g("a", "tx_packets")?, g("b", "rx_packets")?, g("b", "tx_packets")?, drops])
}

/// Starts a DUT-side cycle count (testpmd and OVS; pmdswitch is read through `ctl`).
fn dut_cycles_start(d: &mut RunningDut) -> Option<[u64; 2]> {
    match d.dut {
        Dut::Testpmd => {
            d.procs[0].say("clear fwd stats all");
            None
        }
        Dut::Ovs | Dut::OvsNormal => {
            ovs_appctl(d, &["dpif-netdev/pmd-stats-clear"]);
            None
        }
        _ => pmds_worker_cycles(d),
    }
}

/// The DUT's own busy cycles per packet since `dut_cycles_start`: what forwarding costs
/// it, independent of whether the loop was limited by the generator.
fn dut_cycles_per_packet(d: &mut RunningDut, start: Option<[u64; 2]>) -> Option<f64> {
    match d.dut {
        Dut::Testpmd => {
            let p = &mut d.procs[0];
            let seen = p.text().matches("CPU cycles/packet=").count();
            p.say("show fwd stats all");
            let t0 = Instant::now();
            while p.text().matches("CPU cycles/packet=").count() == seen && t0.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let text = p.text();
            let line = text.rsplit("CPU cycles/packet=").next()?;
            line.split_whitespace().next()?.parse().ok()
        }
        Dut::Ovs | Dut::OvsNormal => {
            let out = ovs_appctl(d, &["dpif-netdev/pmd-stats-show"])?;
            let l = out.lines().find(|l| l.contains("avg processing cycles per packet"))?;
            l.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
        }
        _ => {
            let [b0, p0] = start?;
            let [b1, p1] = pmds_worker_cycles(d)?;
            (p1 > p0).then(|| (b1 - b0) as f64 / (p1 - p0) as f64)
        }
    }
}

/// pmdswitch's worker totals now: [busy cycles, packets].
fn pmds_worker_cycles(d: &RunningDut) -> Option<[u64; 2]> {
    let reply = pmdswitch::control::client::request(d.ctl.clone(), &["show".into(), "workers".into(), "--json".into()]).ok()?;
    let v: Value = serde_json::from_str(&reply).ok()?;
    let ws = v["workers"].as_array()?;
    Some([ws.iter().filter_map(|w| w["busy_cycles"].as_u64()).sum(), ws.iter().filter_map(|w| w["packets"].as_u64()).sum()])
}

fn ovs_appctl(d: &RunningDut, args: &[&str]) -> Option<String> {
    let dir = d.ovs_dir.as_ref()?;
    let o = Command::new("ovs-appctl").arg("-t").arg(dir.join("vswitchd.ctl")).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// One DUT's numbers for one cell in one round.
#[derive(Debug, Clone, Default)]
struct Meas {
    max_mpps: Option<f64>,
    ndr_mpps: Option<f64>,
    /// Latency quantiles at max rate: (quantile, ns) points.
    cdf: Vec<(f64, f64)>,
    p99_us: Option<f64>,
    lost: u64,
    /// The generator's busy share during the max-rate run: below ~95 % it had headroom.
    gen_busy: Option<f64>,
    /// The DUT's own busy cycles per packet in the max-rate run.
    dut_cpp: Option<f64>,
    /// The host-speed probe (see `host_probe`) just before the DUT started and just
    /// after it stopped.
    host: Option<(f64, f64)>,
}

/// How far apart two host-speed probes may be and still count as the same speed: the
/// probe's own spread is about ±20 %; the host's slow phase reads about 5x.
const HOST_TOLERANCE: f64 = 0.5;

/// The host's speed now, as the loop feels it: TSC cycles for one round trip of a cache
/// line between the generator's core and the DUT's (one thread on each bounces a
/// counter; median of 9 samples of 2 000 trips, a few milliseconds). Run while neither
/// core is busy (before a DUT starts, after it stops). Measured on this machine: 130-190
/// cycles most of the time, 850-900 for spells of about a second to tens of seconds
/// (as when the two virtual CPUs sit on different core complexes); in those spells the
/// packet loop, which moves every descriptor and buffer between the two cores, runs at
/// half speed, and a fixed single-core workload does not slow at all. Two runs with
/// readings far apart did not run at the same host speed.
fn host_probe(a: usize, b: usize) -> Option<f64> {
    use std::sync::atomic::AtomicU64;
    let line = Arc::new(crossbeam::utils::CachePadded::new(AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let (l2, d2) = (line.clone(), done.clone());
    // Both sides on threads of their own: the caller's CPU affinity stays as it was.
    let echo = std::thread::spawn(move || {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: b }) {
            return false;
        }
        while !d2.load(Ordering::Relaxed) {
            let v = l2.load(Ordering::Acquire);
            if v & 1 == 1 {
                l2.store(v + 1, Ordering::Release);
            }
        }
        true
    });
    let ping = std::thread::spawn(move || {
        let mut samples = Vec::new();
        if core_affinity::set_for_current(core_affinity::CoreId { id: a }) {
            // A bound in spins, not time, so the inner loop reads no clock: a sample
            // whose echo never comes (the other side not scheduled) ends the probe.
            'probe: while samples.len() < 9 {
                let t0 = pmdswitch::sys::rdtsc();
                for _ in 0..2000 {
                    let v = line.load(Ordering::Acquire) + 1;
                    line.store(v, Ordering::Release);
                    let mut spins = 0u64;
                    while line.load(Ordering::Acquire) == v {
                        spins += 1;
                        if spins > 50_000_000 {
                            break 'probe;
                        }
                        std::hint::spin_loop();
                    }
                }
                samples.push((pmdswitch::sys::rdtsc() - t0) as f64 / 2000.0);
            }
        }
        done.store(true, Ordering::Relaxed);
        samples
    });
    let samples = ping.join().unwrap_or_default();
    let echoed = echo.join().unwrap_or(false);
    (echoed && samples.len() == 9).then(|| median(samples)).flatten()
}

/// Whether two DUT runs ran at the same host speed: each run's two probes (before and
/// after) agree, and the two runs' agree, within [`HOST_TOLERANCE`]. (A spell shorter
/// than a run can still fall between two probes unseen.)
fn same_host(a: Option<(f64, f64)>, b: Option<(f64, f64)>) -> bool {
    let close = |x: f64, y: f64| (x / y - 1.0).abs() <= HOST_TOLERANCE;
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => close(a0, a1) && close(b0, b1) && close((a0 + a1) / 2.0, (b0 + b1) / 2.0),
        _ => false,
    }
}

pub fn main(a: BenchArgs, term: Arc<AtomicBool>) -> Result<(), Failure> {
    let plan = plan(&a)?;
    let out = plan.out.clone();
    std::fs::create_dir_all(out.join("logs")).map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", out.display())))?;
    let scratch = std::env::temp_dir().join(format!("pmdswitch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", scratch.display())))?;
    let exe = std::env::current_exe().map_err(|e| Failure::Runtime(format!("cannot find my own executable: {e}")))?;
    let mut bed = Bed { term: term.clone(), scratch: scratch.clone(), exe, tag: format!("pmdsb{}", std::process::id()), serial: 0, plan };
    let r = matrix(&mut bed, &term);
    let _ = std::fs::remove_dir_all(&scratch);
    // A child killed after a time-out cannot clean its EAL runtime directory: ours all
    // start with the tag.
    if let Ok(d) = std::fs::read_dir("/var/run/dpdk") {
        for e in d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{}-", bed.tag))) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let results = r?;
    report(&bed.plan, &results, &term)
}

/// results[round][dut][cell]
type Results = Vec<Vec<(Dut, Vec<Meas>, CountCheck)>>;

/// Generator port totals against the DUT's own port counters over the same runs (the
/// max-rate runs; pmdswitch only, read through its control socket before and after).
#[derive(Debug, Clone, Default)]
struct CountCheck {
    /// Sums over runs: [tx a, rx a, tx b, rx b] as the generator counted them.
    gen: [u64; 4],
    /// Sums of the DUT's deltas: [rx a, tx a, rx b, tx b, drops].
    dut: Option<[u64; 5]>,
}

fn matrix(bed: &mut Bed, term: &AtomicBool) -> Result<Results, Failure> {
    let p = &bed.plan;
    let (rounds, duts, cells) = (p.rounds, p.duts.clone(), p.cells.clone());
    let total = rounds * duts.len();
    let mut results: Results = Vec::new();
    let mut step = 0;
    for r in 0..rounds {
        let mut order = duts.clone();
        order.rotate_left(r % duts.len());
        let mut round = Vec::new();
        for dut in order {
            if term.load(Ordering::SeqCst) {
                return Ok(results);
            }
            step += 1;
            println!("bench: round {}/{rounds}: {} ({step}/{total})", r + 1, dut.name());
            let _ = std::io::stdout().flush();
            let sa = bed.scratch.join(format!("{}-a.sock", bed.tag));
            let sb = bed.scratch.join(format!("{}-b.sock", bed.tag));
            // What a previous DUT left at these paths (OVS's are our symlinks to its own
            // sockets; a killed DUT leaves its socket file) would make the next bind fail.
            for p in [&sa, &sb] {
                let _ = std::fs::remove_file(p);
            }
            let probe0 = host_probe(bed.plan.gen_core, bed.plan.dut_core);
            let mut running = bed.start_dut(dut, &sa, &sb)?;
            let mut meas = vec![Meas::default(); cells.len()];
            let mut check = CountCheck::default();
            let res = (|| -> Result<(), Failure> {
                for (ci, c) in cells.iter().enumerate() {
                    if term.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    let base = vec![
                        "--frame".to_string(),
                        c.frame.to_string(),
                        "--flows".into(),
                        c.flows.to_string(),
                        "--macs".into(),
                        bed.plan.macs.to_string(),
                    ];
                    if bed.plan.max {
                        let mut x = base.clone();
                        x.extend(["--duration".into(), bed.plan.secs.to_string(), "--warmup".into(), bed.plan.warmup.to_string()]);
                        if let Some(r) = &bed.plan.rate {
                            x.extend(["--rate".into(), r.clone()]);
                        }
                        let before = dut_counters(&running);
                        let cyc = dut_cycles_start(&mut running);
                        let v = bed.gen(&sa, &sb, &x)?;
                        meas[ci].dut_cpp = dut_cycles_per_packet(&mut running, cyc);
                        if let (Some(b), Some(a)) = (before, dut_counters(&running)) {
                            let d = check.dut.get_or_insert([0; 5]);
                            for k in 0..5 {
                                d[k] += a[k] - b[k];
                            }
                        }
                        let rx: f64 = ["a", "b"].iter().map(|s| v["streams"][s]["rx_pps"].as_f64().unwrap_or(0.0)).sum();
                        let m = &mut meas[ci];
                        m.max_mpps = Some(rx / 1e6);
                        m.lost = v["total"]["lost"].as_u64().unwrap_or(0);
                        m.gen_busy = v["generator"]["busy_fraction"].as_f64().map(|x| x * 100.0);
                        let lat = &v["streams"]["a"]["latency_ns"];
                        m.p99_us = lat["p99"].as_f64().map(|x| x / 1e3);
                        m.cdf = lat["cdf"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect())
                            .unwrap_or_default();
                        for (k, (p, f)) in
                            [("a", "tx_packets"), ("a", "rx_packets"), ("b", "tx_packets"), ("b", "rx_packets")].iter().enumerate()
                        {
                            check.gen[k] += v["ports"][p][f].as_u64().unwrap_or(0);
                        }
                        println!(
                            "bench:   {} {}B {} flow(s): max {:.3} Mpps (both directions), lost {}",
                            dut.name(),
                            c.frame,
                            c.flows,
                            rx / 1e6,
                            m.lost
                        );
                    }
                    if bed.plan.ndr_frames.contains(&c.frame) && bed.plan.ndr_flows.contains(&c.flows) {
                        let mut x = base.clone();
                        x.extend([
                            "--search".into(),
                            "--duration".into(),
                            bed.plan.trial_secs.to_string(),
                            "--warmup".into(),
                            (bed.plan.warmup.min(0.5)).to_string(),
                        ]);
                        x.extend(["--resolution-pct".into(), bed.plan.resolution.to_string()]);
                        let v = bed.gen(&sa, &sb, &x)?;
                        let s = &v["search"][0];
                        // Per-port NDR, two ports sending: the loop carries twice that.
                        let ndr = s["ndr_pps"].as_f64().unwrap_or(0.0) * 2.0 / 1e6;
                        meas[ci].ndr_mpps = Some(ndr);
                        let stable = if s["stable"].as_bool().unwrap_or(true) {
                            ""
                        } else {
                            ", UNSTABLE: the loop's capacity moved during every search"
                        };
                        println!(
                            "bench:   {} {}B {} flow(s): NDR {:.3} Mpps (both directions, {} trials, {} search(es){stable})",
                            dut.name(),
                            c.frame,
                            c.flows,
                            ndr,
                            s["trials"].as_array().map_or(0, |t| t.len()),
                            s["attempts"].as_u64().unwrap_or(1)
                        );
                    }
                    let _ = std::io::stdout().flush();
                }
                Ok(())
            })();
            bed.stop_dut(running);
            res?;
            // Every cell of this DUT's run shares the probes around it.
            let host = probe0.zip(host_probe(bed.plan.gen_core, bed.plan.dut_core));
            for m in meas.iter_mut() {
                m.host = host;
            }
            round.push((dut, meas, check));
        }
        results.push(round);
    }
    Ok(results)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn report(p: &Plan, results: &Results, term: &AtomicBool) -> Result<(), Failure> {
    let cell_of = |dut: Dut, ci: usize, f: &dyn Fn(&Meas) -> Option<f64>| -> Option<f64> {
        median(results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).filter_map(|x| f(&x.1[ci]))).collect())
    };
    // Ratio per round, then the median: a slow phase of the host that lasts a round hits
    // both numbers of a ratio. `steady`: only the rounds where both DUT runs saw the same
    // host speed (see `host_probe`); also returns how many rounds that is.
    let ratios = |dut: Dut, ci: usize, f: &dyn Fn(&Meas) -> Option<f64>, steady: bool| -> (Option<f64>, usize) {
        let v: Vec<f64> = results
            .iter()
            .filter_map(|r| {
                let a = &r.iter().find(|x| x.0 == p.duts[0])?.1[ci];
                let b = &r.iter().find(|x| x.0 == dut)?.1[ci];
                let (fa, fb) = (f(a)?, f(b)?);
                ((!steady || same_host(a.host, b.host)) && fb > 0.0).then_some(fa / fb)
            })
            .collect();
        let n = v.len();
        (median(v), n)
    };
    let ratio_of = |dut: Dut, ci: usize, f: &dyn Fn(&Meas) -> Option<f64>| ratios(dut, ci, f, false).0;
    let max_f = |m: &Meas| m.max_mpps;
    let ndr_f = |m: &Meas| m.ndr_mpps;
    let mut steady_lines = String::new();
    let mut out = format!(
        "=== pmdswitch bench: {} round(s), {}; Mpps both directions, medians\n{:<18} {:>6} {:>6} {:>10} {:>10} {:>10} {:>9} {:>11}",
        results.len(),
        p.duts.iter().map(|d| d.name()).collect::<Vec<_>>().join(" vs "),
        "dut",
        "frame",
        "flows",
        "max Mpps",
        "NDR Mpps",
        "p99 us",
        "gen busy%",
        "DUT cyc/pkt"
    );
    if p.duts.len() > 1 {
        out.push_str(&format!(" {:>10} {:>10} {:>10}", "max ratio", "ndr ratio", "cost ratio"));
    }
    out.push('\n');
    let f = |v: Option<f64>, w: usize, prec: usize| v.map_or(format!("{:>w$}", "-"), |x| format!("{x:>w$.prec$}"));
    let mut cells_json = Vec::new();
    for &dut in &p.duts {
        for (ci, c) in p.cells.iter().enumerate() {
            let (mx, nd, p99) = (cell_of(dut, ci, &max_f), cell_of(dut, ci, &ndr_f), cell_of(dut, ci, &|m: &Meas| m.p99_us));
            let busy = cell_of(dut, ci, &|m: &Meas| m.gen_busy);
            let cpp_f = |m: &Meas| m.dut_cpp;
            let cpp = cell_of(dut, ci, &cpp_f);
            let mut line = format!(
                "{:<18} {:>6} {:>6} {} {} {} {} {}",
                dut.name(),
                c.frame,
                c.flows,
                f(mx, 10, 3),
                f(nd, 10, 3),
                f(p99, 10, 1),
                f(busy, 9, 1),
                f(cpp, 11, 1)
            );
            // Cost ratio: the other DUT's cycles per packet over the first's (> 1: the
            // first needs fewer cycles per packet, i.e. has more capacity per core).
            let (rm, rn, rc) = if dut != p.duts[0] {
                (ratio_of(dut, ci, &max_f), ratio_of(dut, ci, &ndr_f), ratio_of(dut, ci, &|m: &Meas| m.dut_cpp.map(|x| 1.0 / x)))
            } else {
                (None, None, None)
            };
            if p.duts.len() > 1 {
                line.push_str(&format!(" {} {} {}", f(rm, 10, 3), f(rn, 10, 3), f(rc, 10, 3)));
            }
            out.push_str(&line);
            out.push('\n');
            let (srm, src, steady) = if dut != p.duts[0] {
                let (srm, n) = ratios(dut, ci, &max_f, true);
                let (src, _) = ratios(dut, ci, &|m: &Meas| m.dut_cpp.map(|x| 1.0 / x), true);
                steady_lines.push_str(&format!(
                    "  vs {} {}B {} flow(s): {n} of {} rounds at one host speed; over those, max ratio {}, cost ratio {}\n",
                    dut.name(),
                    c.frame,
                    c.flows,
                    results.len(),
                    f(srm, 0, 3),
                    f(src, 0, 3)
                ));
                (srm, src, Some(n))
            } else {
                (None, None, None)
            };
            cells_json.push(json!({
                "ratio_max_steady": srm, "ratio_cost_steady": src, "steady_rounds": steady,
                "rounds_host_probe": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].host.map(|(a, b)| [a, b]))).collect::<Vec<_>>(),
                "dut": dut.name(), "frame": c.frame, "flows": c.flows,
                "max_mpps": mx, "ndr_mpps": nd, "p99_us_at_max": p99, "gen_busy_pct_at_max": busy, "dut_cycles_per_packet": cpp,
                "ratio_max": rm, "ratio_ndr": rn, "ratio_cost": rc,
                "rounds_max_mpps": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].max_mpps)).collect::<Vec<_>>(),
                "rounds_ndr_mpps": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].ndr_mpps)).collect::<Vec<_>>(),
                "rounds_cycles_per_packet": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].dut_cpp)).collect::<Vec<_>>(),
            }));
        }
    }
    if p.duts.len() > 1 {
        out.push_str(&format!(
            "ratios are {first}/DUT per round, then the median; cost ratio = the DUT's own busy cycles per packet / {first}'s (above 1: {first} needs fewer cycles per packet)\n",
            first = p.duts[0].name()
        ));
        out.push_str(&format!(
            "host-speed check (a cache line's round trip between the two cores, timed before each DUT starts and after it stops; \
             a round counts when all four readings agree within {:.0} %):\n{steady_lines}",
            HOST_TOLERANCE * 100.0
        ));
    }
    // Do the generator's counts add up with the DUT's own (pmdswitch reports them)?
    let mut checks = Vec::new();
    for r in results {
        for (dut, _, c) in r {
            if let Some([rx_a, tx_a, rx_b, tx_b, drops]) = c.dut {
                let [g_tx_a, g_rx_a, g_tx_b, g_rx_b] = c.gen;
                let agree = rx_a == g_tx_a && tx_b == g_rx_b && rx_b == g_tx_b && tx_a == g_rx_a;
                checks.push(json!({"dut": dut.name(), "gen_tx_a": g_tx_a, "dut_rx_a": rx_a, "gen_rx_b": g_rx_b, "dut_tx_b": tx_b,
                    "gen_tx_b": g_tx_b, "dut_rx_b": rx_b, "gen_rx_a": g_rx_a, "dut_tx_a": tx_a, "dut_drops": drops, "agree": agree}));
                out.push_str(&format!(
                    "counts ({}, max-rate runs): generator tx a {g_tx_a} / DUT rx a {rx_a}; DUT tx b {tx_b} / generator rx b {g_rx_b}; DUT drops {drops}: {}\n",
                    dut.name(),
                    if agree { "agree" } else if drops > 0 { "differ by the DUT's counted drops" } else { "DIFFER" }
                ));
            }
        }
    }
    print!("{out}");
    let j = json!({
        "bench": "pmdswitch bench", "duts": p.duts.iter().map(|d| d.name()).collect::<Vec<_>>(), "rounds": results.len(),
        "secs": p.secs, "warmup": p.warmup, "ndr_resolution_pct": p.resolution, "cells": cells_json, "count_checks": checks,
        "interrupted": term.load(Ordering::SeqCst),
    });
    let rj = p.out.join("results.json");
    std::fs::write(&rj, serde_json::to_string_pretty(&j).unwrap_or_default() + "\n")
        .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", rj.display())))?;
    // Pictures: throughput by frame size per DUT (first flow count), latency CDF at 64 B.
    let flows0 = p.cells.first().map(|c| c.flows).unwrap_or(1);
    let series: Vec<(String, Vec<(f64, f64)>)> = p
        .duts
        .iter()
        .flat_map(|&d| {
            let max: Vec<(f64, f64)> = p
                .cells
                .iter()
                .enumerate()
                .filter(|(_, c)| c.flows == flows0)
                .filter_map(|(ci, c)| Some((c.frame as f64, cell_of(d, ci, &max_f)?)))
                .collect();
            let ndr: Vec<(f64, f64)> = p
                .cells
                .iter()
                .enumerate()
                .filter(|(_, c)| c.flows == flows0)
                .filter_map(|(ci, c)| Some((c.frame as f64, cell_of(d, ci, &ndr_f)?)))
                .collect();
            [(format!("{} max", d.name()), max), (format!("{} NDR", d.name()), ndr)]
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let tp = p.out.join("throughput.svg");
    plot::lines(
        &tp,
        &format!("Throughput by frame size ({flows0} flow(s)), Mpps",),
        "frame size, bytes",
        "Mpps (both directions)",
        &series,
        false,
    )
    .map_err(|e| Failure::Runtime(format!("cannot draw {}: {e}", tp.display())))?;
    let cdfs: Vec<(String, Vec<(f64, f64)>)> = p
        .duts
        .iter()
        .filter_map(|&d| {
            let ci = p.cells.iter().position(|c| c.frame == p.cells[0].frame && c.flows == flows0)?;
            let m = results.iter().rev().flat_map(|r| r.iter().filter(|x| x.0 == d)).next()?;
            let pts: Vec<(f64, f64)> = m.1[ci].cdf.iter().map(|&(q, ns)| (ns / 1e3, q)).collect();
            (!pts.is_empty()).then(|| (d.name().to_string(), pts))
        })
        .collect();
    let lp = p.out.join("latency.svg");
    plot::lines(
        &lp,
        &format!("Latency CDF at max rate, {} B, {flows0} flow(s)", p.cells.first().map_or(64, |c| c.frame)),
        "latency, us (log)",
        "fraction of packets",
        &cdfs,
        true,
    )
    .map_err(|e| Failure::Runtime(format!("cannot draw {}: {e}", lp.display())))?;
    println!("bench: wrote {}, {}, {}", rj.display(), tp.display(), lp.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_needs_four_agreeing_probes() {
        let fast = Some((150.0, 170.0));
        assert!(same_host(fast, Some((140.0, 190.0))));
        // Both runs in the slow spell: the same (slow) machine.
        assert!(same_host(Some((860.0, 880.0)), Some((850.0, 900.0))));
        // One run fast, one slow; a run that changed speed; a missing probe.
        assert!(!same_host(fast, Some((860.0, 880.0))));
        assert!(!same_host(fast, Some((150.0, 870.0))));
        assert!(!same_host(fast, None));
    }

    /// The probe reads the two cores' round trip where two usable cores exist; on this
    /// machine that is a few hundred cycles, never 0.
    #[test]
    fn host_probe_reads_a_round_trip() {
        let cpus: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        if cpus.len() < 2 {
            return;
        }
        let v = host_probe(cpus[0], cpus[1]).expect("both sides ran");
        assert!(v > 20.0 && v < 100_000.0, "{v} cycles per round trip");
    }
}
