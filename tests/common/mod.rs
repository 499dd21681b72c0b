//! Test helpers over the library's test bed (`pmdswitch::bed`: processes, the switch,
//! testpmd as a peer, scratch directories): the real pmdswitch binary, assertions on its
//! stats JSON, network namespaces. Every helper uses a unique directory, socket paths and
//! EAL file prefix, so tests can run in parallel and after a crashed run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pmdswitch"))
}

// Each test crate uses a different part of what follows.
#[allow(unused_imports)]
pub use pmdswitch::bed::proc::{wait_timeout, Lines, Proc};
#[allow(unused_imports)]
pub use pmdswitch::bed::scratch::Scratch;
pub use pmdswitch::bed::switch::Switch;
#[allow(unused_imports)]
pub use pmdswitch::bed::testpmd::{parse_port_stats, NicStats, Testpmd};

/// `pmdswitch run` from this build.
pub struct Pmds;

impl Pmds {
    /// Starts `pmdswitch run ARGS --stats-json DIR/stats.json -- --file-prefix=...`.
    pub fn start(s: &Scratch, args: &[&str]) -> Switch {
        Switch::start(&bin(), s, args)
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

/// Runs pmdswitch to completion (for bad-input tests).
pub fn run_once(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("spawn");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
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

/// A switch cross-connecting vhost-server ports a (socket `sa`) and b (`sb`) on one
/// worker, with `extra` arguments.
pub fn xconnect_ab(s: &Scratch, sa: &str, sb: &str, extra: &[&str]) -> Switch {
    let (pa, pb) = (format!("a=vhost-server:{sa}"), format!("b=vhost-server:{sb}"));
    let mut args = vec!["--port", &pa, "--port", &pb, "--xconnect", "a,b", "--cores", "1"];
    args.extend_from_slice(extra);
    Pmds::start(s, &args)
}

/// Runs `pmdswitch gen` to completion with one virtio-user port per `(name, socket)`
/// (all on CPU 0, as a VM would be); returns its JSON and stdout. Fails the test if gen
/// fails or leaves EAL files behind.
pub fn gen_run(s: &Scratch, ports: &[(&str, &str)], args: &[&str]) -> (serde_json::Value, String) {
    let json = s.path(&format!("gen-{}.json", Scratch::seq()));
    let prefix = s.prefix(&format!("gen{}", Scratch::seq()));
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

/// The generator through a router with interfaces 198.18.1.254/24 (a) and
/// 198.18.2.254/24 (b): a sends into 198.19.0.0/16, b into 198.20.0.0/16, 64 flows at
/// 200 kpps for 4 s into 8192-buffer rings: 40 ms of a generator descheduled by a churn
/// on its core (a router drops what finds no room, as l3fwd does: at 500 kpps into 4096
/// buffers, a 20 ms stall in CI was the test bed's loss, not the router's).
pub fn gen_through_router(s: &Scratch, sa: &str, sb: &str) -> (serde_json::Value, String) {
    let (qa, qb) = (format!("{sa},queue_size=8192"), format!("{sb},queue_size=8192"));
    gen_run(
        s,
        &[("a", &qa), ("b", &qb)],
        &[
            "--ip",
            "a=198.18.1.1",
            "--ip",
            "b=198.18.2.1",
            "--gateway",
            "a=198.18.1.254",
            "--gateway",
            "b=198.18.2.254",
            "--dst-ips",
            "a=198.19.0.0/24,198.19.7.0/24,198.19.200.128/25",
            "--dst-ips",
            "b=198.20.0.0/24,198.20.9.0/24",
            "--flows",
            "64",
            // 200 kpps into 8192-buffer rings: 40 ms of a generator descheduled by the
            // churn that shares its core, which a router (it drops what finds no room,
            // as l3fwd does) would otherwise count as tx_full.
            "--rate",
            "200kpps",
            "--duration",
            "4",
        ],
    )
}

/// Both streams of `gen_through_router` arrived whole and on the right port.
pub fn assert_nothing_lost_or_misrouted(g: &serde_json::Value, out: &str, switch: &serde_json::Value) {
    for p in ["a", "b"] {
        let st = &g["streams"][p];
        assert_eq!(st["lost"].as_u64(), Some(0), "stream {p} lost packets while routes changed:\n{out}\n{}", switch["ports"]);
        assert_eq!(st["wrong_port"].as_u64(), Some(0), "stream {p} misrouted:\n{out}");
        assert!(st["rx"].as_u64().unwrap_or(0) > 500_000, "{out}");
    }
}

/// Runs `round` (which makes some route changes and returns how many) again and again
/// on a thread of its own, paced to `per_sec` changes a second, while `during` runs;
/// returns `during`'s result, the changes made and the rate reached (for the log: how
/// fast a host takes them is a bench's business, not a test's). The pace matters on 2 CPUs: the churn
/// shares the generator's core, and a generator starved for milliseconds overflows its
/// receive rings, which would be the test bed's loss, not the router's.
pub fn churn_while<T>(per_sec: f64, mut round: impl FnMut() -> usize + Send + 'static, during: impl FnOnce() -> T) -> (T, usize, f64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let churner = std::thread::spawn(move || {
        let (mut changes, t0) = (0usize, Instant::now());
        while !stop2.load(Ordering::Relaxed) {
            changes += round();
            let due = Duration::from_secs_f64(changes as f64 / per_sec);
            if let Some(w) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(w);
            }
        }
        (changes, changes as f64 / t0.elapsed().as_secs_f64())
    });
    let out = during();
    stop.store(true, Ordering::Relaxed);
    let (changes, rate) = churner.join().expect("churn thread");
    (out, changes, rate)
}

/// The control socket of the switch `Pmds::start` started in `s` (one per EAL prefix).
pub fn dut_ctl(s: &Scratch) -> PathBuf {
    Path::new(pmdswitch::control::client::DEFAULT_DIR).join(format!("{}.ctl", s.prefix("dut")))
}

/// A port counter of a running switch (`show ports --json` on its control socket, asked
/// directly: no `pmdswitch ctl` process per look): `ports.PORT.KEY`, 0 when unknown.
pub fn live_counter(ctl_sock: &Path, port: &str, key: &str) -> u64 {
    live_ports(ctl_sock)["ports"][port][key].as_u64().unwrap_or(0)
}

/// `show ports --json` of a running switch (Null if it does not answer).
pub fn live_ports(ctl_sock: &Path) -> serde_json::Value {
    let reply = pmdswitch::control::client::request(Some(ctl_sock.to_path_buf()), &["show".into(), "ports".into(), "--json".into()]);
    reply.ok().and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default()
}

/// Waits until every rx queue of `ports` has received more than `n` frames.
pub fn wait_every_rxq(ctl_sock: &Path, ports: &[&str], n: u64) {
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    wait_until(
        std::time::Duration::from_secs(60),
        || format!("every rx queue of {ports:?} to pass {n} frames: {}", last.borrow()),
        || {
            let reply = pmdswitch::control::client::request(Some(ctl_sock.to_path_buf()), &["show".into(), "rxqs".into(), "--json".into()]);
            let v: serde_json::Value = reply.ok().and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default();
            let qs = v["rxqs"].as_array().cloned().unwrap_or_default();
            let ok = ports.iter().all(|p| {
                let mine: Vec<_> = qs.iter().filter(|x| x["port"] == *p).collect();
                !mine.is_empty() && mine.iter().all(|x| x["packets"].as_u64().unwrap_or(0) > n)
            });
            *last.borrow_mut() = v;
            ok.then_some(())
        },
    )
}

/// Looks every 10 ms until `look` gives an answer: the one way a test waits for an event
/// it cannot block on (a counter, a route, a peer's count). The look is the wait's only
/// cost; a tighter loop would take CPU 0 from the generator a test waits for. Fails the
/// test after `limit`, saying what it waited for (`what`: the last state seen).
pub fn wait_until<T>(limit: std::time::Duration, what: impl Fn() -> String, mut look: impl FnMut() -> Option<T>) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = look() {
            return v;
        }
        assert!(t0.elapsed() < limit, "waited {limit:?} for {}", what());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until `ports.PORT.KEY` of a running switch satisfies `ok`: the event most tests
/// synchronise on; fails the test after `limit` with the last value.
pub fn wait_counter(ctl_sock: &Path, port: &str, key: &str, limit: std::time::Duration, ok: impl Fn(u64) -> bool) -> u64 {
    let last = std::cell::Cell::new(0);
    wait_until(
        limit,
        || format!("ports.{port}.{key} (stayed at {})", last.get()),
        || {
            last.set(live_counter(ctl_sock, port, key));
            ok(last.get()).then(|| last.get())
        },
    )
}

/// Waits until `ports.PORT.KEY` has grown by `by` from what it is now (traffic flowing);
/// returns the value reached.
pub fn wait_more(ctl_sock: &Path, port: &str, key: &str, by: u64) -> u64 {
    let base = live_counter(ctl_sock, port, key);
    wait_counter(ctl_sock, port, key, std::time::Duration::from_secs(60), |v| v >= base + by)
}

/// Waits until testpmd port `port` has received `want` frames by its own count.
pub fn wait_peer_rx(peer: &mut Testpmd, port: u16, want: u64) -> u64 {
    let last = std::cell::Cell::new(0);
    wait_until(
        std::time::Duration::from_secs(20),
        || format!("testpmd port {port} to receive {want} frames (has {})", last.get()),
        || {
            last.set(peer.port_stats_now(usize::from(port) + 1).get(&port).map_or(0, |s| s.rx));
            (last.get() >= want).then(|| last.get())
        },
    )
}

/// `pmdswitch gen` a<->b at 200 kpps for `secs` seconds in the background (CPU 0), its
/// JSON to `json`. 4096-descriptor rings: the ctl processes a test starts share the two
/// CPUs with the generator, and a generator descheduled for a few ms must not overflow
/// its rx rings (that would be a loss the switch did not cause).
pub fn gen_paced(s: &Scratch, sa: &str, sb: &str, secs: &str, json: &Path) -> std::process::Child {
    Command::new(bin())
        .args([
            "gen",
            "--port",
            &format!("a=vdev:net_virtio_user0,path={sa},queue_size=4096"),
            "--port",
            &format!("b=vdev:net_virtio_user1,path={sb},queue_size=4096"),
        ])
        .args(["--core", "0", "--rate", "200kpps", "--duration", secs, "--warmup", "0.5", "--quiet", "--json"])
        .arg(json)
        .args(["--", "-l", "0", &format!("--file-prefix={}", s.prefix(&format!("gen{}", Scratch::seq())))])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pmdswitch gen")
}

/// `GET PATH` over HTTP/1.0 from `addr` (the metrics port): the whole response.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("metrics listener");
    write!(c, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// A TCP port on 127.0.0.1 free a moment ago (the kernel's pick), for a metrics listener.
pub fn free_port() -> u16 {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    free.local_addr().unwrap().port()
}

/// The resident memory of process `pid`, KiB (`VmRSS` in /proc).
pub fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}
