//! Test bed helpers: run the real pmdswitch binary and Debian's dpdk-testpmd as peers.
//! Every helper uses a unique directory, socket paths and EAL file prefix, so tests can
//! run in parallel and after a crashed run.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pmdswitch"))
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test's sockets and outputs, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
    pub tag: String,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let tag = format!("{name}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let dir = PathBuf::from("/tmp").join(format!("pmds-t-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, tag }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    pub fn sock(&self, f: &str) -> String {
        self.path(f).to_string_lossy().into_owned()
    }

    /// A unique EAL file prefix.
    pub fn prefix(&self, who: &str) -> String {
        format!("pmdst-{who}-{}", self.tag)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails with the fix when the machine was not set up.
pub fn require_bed() {
    let free: u64 = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(free > 0, "no free hugepages: run scripts/setup.sh before the tests");
    assert!(Path::new("/usr/bin/dpdk-testpmd").exists(), "dpdk-testpmd missing: run scripts/setup.sh (package dpdk-dev)");
}

/// Output of a child collected by a background thread, so waits never block on pipes.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(r: impl std::io::Read + Send + 'static) -> Lines {
        let l = Lines::default();
        let c = l.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                c.0.lock().unwrap().push(line);
            }
        });
        l
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn wait_for(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.count(needle) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A running `pmdswitch run`.
pub struct Pmds {
    pub child: Child,
    pub out: Lines,
    pub err: Lines,
    pub json: PathBuf,
}

impl Pmds {
    /// Starts `pmdswitch run ARGS --stats-json DIR/stats.json -- --file-prefix=...`.
    pub fn start(s: &Scratch, args: &[&str]) -> Pmds {
        let json = s.path("stats.json");
        let mut cmd = Command::new(bin());
        cmd.arg("run").args(args).arg("--stats-json").arg(&json);
        cmd.arg("--").arg(format!("--file-prefix={}", s.prefix("dut")));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn pmdswitch");
        let out = Lines::collect(child.stdout.take().unwrap());
        let err = Lines::collect(child.stderr.take().unwrap());
        let p = Pmds { child, out, err, json };
        assert!(
            p.out.wait_for("forwarding with", 1, Duration::from_secs(20)),
            "pmdswitch did not start:\n{}\n{}",
            p.out.text(),
            p.err.text()
        );
        p
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // kill(1) keeps the test crate free of unsafe.
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
    }

    /// SIGTERM, wait; returns the exit status and how long the exit took.
    pub fn stop(mut self) -> (ExitStatus, Duration, serde_json::Value, String) {
        let t = Instant::now();
        self.signal(15);
        let st = wait_timeout(&mut self.child, Duration::from_secs(20)).expect("pmdswitch did not exit within 20 s of SIGTERM");
        let took = t.elapsed();
        std::thread::sleep(Duration::from_millis(50));
        let text = format!("{}\n{}", self.out.text(), self.err.text());
        let json = std::fs::read_to_string(&self.json)
            .map(|s| serde_json::from_str(&s).expect("stats JSON parses"))
            .unwrap_or(serde_json::Value::Null);
        (st, took, json, text)
    }

    /// Fraction of one core the worker on `core` used over the next `secs` seconds
    /// (its utime + stime in /proc).
    pub fn worker_load(&self, core: usize, secs: u64) -> f64 {
        let tid = self.worker_tid(core).expect("worker thread");
        let a = cpu_ticks(self.pid(), tid);
        std::thread::sleep(Duration::from_secs(secs));
        let b = cpu_ticks(self.pid(), tid);
        (b - a) as f64 / (secs * ticks_per_sec()) as f64
    }

    /// Thread id of the worker pinned to `core` (thread name `pmd-cN`).
    pub fn worker_tid(&self, core: usize) -> Option<i32> {
        let dir = format!("/proc/{}/task", self.pid());
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim() == format!("pmd-c{core}") {
                return e.file_name().to_string_lossy().parse().ok();
            }
        }
        None
    }
}

impl Drop for Pmds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (clock ticks) a thread has used: utime + stime, fields 14 and 15 of
/// /proc/PID/task/TID/stat (counted after the parenthesised name).
fn cpu_ticks(pid: i32, tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_sec() -> u64 {
    let o = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(100)
}

pub fn wait_timeout(c: &mut Child, t: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < t {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Runs pmdswitch to completion (for bad-input tests).
pub fn run_once(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("spawn");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// Port counters as the NIC (virtio-user) side of testpmd reports them.
#[derive(Debug, Default, Clone, Copy)]
pub struct NicStats {
    pub rx: u64,
    pub tx: u64,
}

/// Interactive dpdk-testpmd with virtio-user ports: the peer a VM would be.
pub struct Testpmd {
    prefix: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
}

impl Testpmd {
    /// `vdevs` are full `--vdev` values; `fwd` a forward mode (io, txonly, rxonly).
    /// Both testpmd lcores run on `cpu`, leaving the other core to the device under test.
    pub fn start(prefix: &str, vdevs: &[String], fwd: &str, cpu: usize, extra: &[&str]) -> Testpmd {
        let mut eal = vec![
            format!("--lcores=0@{cpu},1@{cpu}"),
            // virtio-user shares memory by fd: one file per segment list, or traffic
            // stalls after ~85 packets ("Too many memory regions").
            "--single-file-segments".into(),
        ];
        eal.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
        let mut app = vec![format!("--forward-mode={fwd}")];
        app.extend(extra.iter().map(|x| x.to_string()));
        // Pinned: EAL control threads take the CPUs of the initial affinity that no lcore
        // uses; unpinned they would sit on the device under test's core.
        Testpmd::spawn_on(prefix, Some(cpu), &eal, &app)
    }

    /// dpdk-testpmd in interactive mode with `eal` args (plus --no-pci, the prefix,
    /// --in-memory) and `app` args (plus -i --nb-cores=1), started under `taskset -c
    /// CPU` when `pin` says so.
    pub fn spawn_on(prefix: &str, pin: Option<usize>, eal: &[String], app: &[String]) -> Testpmd {
        // stdbuf: testpmd's printf output is block-buffered on a pipe; line-buffer it so
        // `show port stats` answers arrive while it runs.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL");
        if let Some(cpu) = pin {
            cmd.args(["taskset", "-c", &cpu.to_string()]);
        }
        cmd.arg("dpdk-testpmd")
            .args(eal)
            .arg("--no-pci")
            .arg(format!("--file-prefix={prefix}"))
            .arg("--in-memory")
            .arg("--log-level=notice");
        cmd.args(["--", "-i", "--nb-cores=1"]).args(app);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn dpdk-testpmd (run scripts/setup.sh)");
        let stdin = child.stdin.take();
        let out = Lines::collect(child.stdout.take().unwrap());
        let err = Lines::collect(child.stderr.take().unwrap());
        let t = Testpmd { prefix: prefix.to_string(), child, stdin, out, err };
        // The prompt has no newline; the link check is the last line before it.
        let up = t.out.wait_for("Checking link statuses", 1, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300));
        assert!(up, "testpmd did not start:\n{}\n{}", t.out.text(), t.err.text());
        t
    }

    /// The NIC counters of every port now (`show port stats all`).
    pub fn port_stats_now(&mut self, ports: usize) -> HashMap<u16, NicStats> {
        let before = self.out.count("NIC statistics for port");
        let skip = self.out.0.lock().unwrap().len();
        self.cmd("show port stats all");
        // Each block ends with the Tx-pps line; wait for all of them.
        self.out.wait_for("NIC statistics for port", before + ports, Duration::from_secs(5));
        let t = std::time::Instant::now();
        loop {
            let text = self.out.0.lock().unwrap()[skip..].join("\n");
            if text.matches("Tx-pps").count() >= ports || t.elapsed() > Duration::from_secs(5) {
                return parse_port_stats(&text);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn cmd(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// Stops forwarding, reads the NIC counters of every port, and quits.
    pub fn finish(mut self) -> HashMap<u16, NicStats> {
        self.cmd("stop");
        std::thread::sleep(Duration::from_millis(300));
        self.cmd("show port stats all");
        std::thread::sleep(Duration::from_millis(300));
        self.cmd("quit");
        self.stdin = None;
        let _ = wait_timeout(&mut self.child, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
        parse_port_stats(&self.out.text())
    }

    /// Quits without reading counters (the peer going away).
    pub fn quit(mut self) {
        self.cmd("quit");
        self.stdin = None;
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // testpmd leaves its EAL runtime directory behind even with --in-memory.
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// Parses the last "NIC statistics for port N" blocks of testpmd's output.
pub fn parse_port_stats(text: &str) -> HashMap<u16, NicStats> {
    let mut out = HashMap::new();
    let mut cur: Option<u16> = None;
    for line in text.lines() {
        if let Some(i) = line.find("NIC statistics for port") {
            cur = line[i + 23..].split_whitespace().next().and_then(|n| n.parse().ok());
            continue;
        }
        let Some(p) = cur else { continue };
        let num = |key: &str| -> Option<u64> {
            let i = line.find(key)?;
            line[i + key.len()..].split_whitespace().next()?.parse().ok()
        };
        if let Some(v) = num("RX-packets:") {
            out.entry(p).or_insert_with(NicStats::default).rx = v;
        }
        if let Some(v) = num("TX-packets:") {
            out.entry(p).or_insert_with(NicStats::default).tx = v;
        }
    }
    out
}

/// Numbers out of the stats JSON.
pub fn port(j: &serde_json::Value, name: &str, key: &str) -> u64 {
    j["ports"][name][key].as_u64().unwrap_or_else(|| panic!("stats JSON lacks ports.{name}.{key}: {j}"))
}

pub fn drops(j: &serde_json::Value, name: &str) -> u64 {
    j["ports"][name]["drops"].as_object().expect("drops").values().map(|v| v.as_u64().unwrap()).sum()
}

/// The pool is back at its baseline: no mbuf leaked.
pub fn assert_no_leak(j: &serde_json::Value) {
    let base = j["mempool"]["in_use_baseline"].as_u64().expect("baseline");
    let end = j["mempool"]["in_use_end"].as_u64().expect("end");
    assert_eq!(end, base, "mbufs leaked: {} in use at exit, {} at start", end, base);
}

/// Neither hugepage files nor an EAL runtime directory left for `prefix`.
pub fn assert_no_leftovers(prefix: &str) {
    let huge: Vec<_> = std::fs::read_dir("/dev/hugepages")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect())
        .unwrap_or_default();
    assert!(huge.is_empty(), "hugepage files left: {huge:?}");
    assert!(!Path::new("/var/run/dpdk").join(prefix).exists(), "EAL runtime dir left for {prefix}");
}

pub fn sh(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(cmd).status().map(|s| s.success()).unwrap_or(false)
}

/// Two net_tap interfaces of a pmdswitch moved into network namespaces of the test's
/// own, addressed on the RFC 2544 benchmark range (198.18.0.1 and .2); the namespaces
/// are deleted on drop.
pub struct TapHosts {
    pub ns: [String; 2],
    pub ok: bool,
}

impl TapHosts {
    /// Interface names for a pmdswitch's `--port X=vdev:net_tapN,iface=NAME`.
    pub fn names(tag: &str) -> [String; 2] {
        let id = std::process::id() % 100_000;
        [format!("{tag}{id}a"), format!("{tag}{id}b")]
    }

    pub fn setup(ifaces: &[String; 2]) -> TapHosts {
        let ns = [format!("pmds-{}-0", ifaces[0]), format!("pmds-{}-1", ifaces[1])];
        let (t0, t1, n0, n1) = (&ifaces[0], &ifaces[1], &ns[0], &ns[1]);
        let ok = sh(&format!(
            "ip netns add {n0} && ip netns add {n1} && ip link set {t0} netns {n0} && ip link set {t1} netns {n1} && \
             ip -n {n0} addr add 198.18.0.1/24 dev {t0} && ip -n {n1} addr add 198.18.0.2/24 dev {t1} && \
             ip -n {n0} link set {t0} up && ip -n {n1} link set {t1} up"
        ));
        TapHosts { ns, ok }
    }

    /// Pings 198.18.0.2 from the first namespace.
    pub fn ping(&self, count: u32, interval: f64) -> bool {
        self.ok && sh(&format!("ip netns exec {} ping -c {count} -i {interval} -W 2 198.18.0.2 >/dev/null", self.ns[0]))
    }
}

impl Drop for TapHosts {
    fn drop(&mut self) {
        sh(&format!("ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null", self.ns[0], self.ns[1]));
    }
}

/// Runs `pmdswitch gen` to completion with one virtio-user port per `(name, socket)`
/// (all on CPU 0, as a VM would be); returns its JSON and stdout. Fails the test if gen
/// fails or leaves EAL files behind.
pub fn gen_run(s: &Scratch, ports: &[(&str, &str)], args: &[&str]) -> (serde_json::Value, String) {
    let json = s.path(&format!("gen-{}.json", SEQ.fetch_add(1, Ordering::SeqCst)));
    let prefix = s.prefix(&format!("gen{}", SEQ.fetch_add(1, Ordering::SeqCst)));
    let mut c = Command::new(bin());
    c.arg("gen");
    for (i, (name, sock)) in ports.iter().enumerate() {
        // Rings of 4096 (virtio-user's default is 256): a generator descheduled for a
        // millisecond by this shared host must not overflow its rx rings, or an exact
        // count comparison would charge the switch with the host's hiccup.
        let q = if sock.contains("queue_size=") { "" } else { ",queue_size=4096" };
        c.arg("--port").arg(format!("{name}=vdev:net_virtio_user{i},path={sock}{q}"));
    }
    let o = c
        .args(["--core", "0", "--json"])
        .arg(&json)
        .args(args)
        .args(["--", "-l", "0", &format!("--file-prefix={prefix}")])
        .stdin(Stdio::null())
        .output()
        .expect("spawn gen");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "gen failed: {}\n{out}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    assert_no_leftovers(&prefix);
    let v = serde_json::from_str(&std::fs::read_to_string(&json).expect("gen JSON")).expect("valid JSON");
    (v, out)
}

/// `pmdswitch ctl --socket PATH WORDS...`: (exit code, stdout, stderr).
pub fn ctl(sock: &Path, words: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).arg("ctl").arg("--socket").arg(sock).args(words).stdin(Stdio::null()).output().expect("spawn ctl");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}
