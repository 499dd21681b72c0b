//! Integration tests: the real binary forwarding between vhost-user sockets, virtio-user
//! peers in other DPDK processes (Debian's dpdk-testpmd), and vdev ports.
//!
//! Needs the machine prepared by scripts/setup.sh (hugepages, dpdk-testpmd, strace).
//! Each test's peers run on CPU 0, pmdswitch's worker on CPU 1.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn vu(path: &str, extra: &str) -> String {
    format!("net_virtio_user0,path={path}{extra}")
}

/// Counters agree across three processes: a txonly testpmd peer on socket a, an rxonly one on
/// socket b. The sender's tx count = pmdswitch's a.rx; a.rx = b.tx + b's counted drops; b.tx =
/// the receiver's rx count.
#[test]
fn vhost_pair_counters_agree_across_processes() {
    require_bed();
    let s = Scratch::new("pair");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"],
    );
    let mut rx = Testpmd::start(&s.prefix("rx"), &[vu(&sb, "")], "rxonly", 0, &[]);
    let mut tx = Testpmd::start(&s.prefix("tx"), &[vu(&sa, "")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(10)), "{}", pm.out.text());
    rx.cmd("start");
    tx.cmd("start");
    let live = dut_ctl(&s);
    wait_more(&live, "a", "rx_packets", 200_000);
    let sent = tx.finish()[&0].tx;
    // The worker drains the vring (a frame counts at a and b in one pass), then the
    // receiver its ring.
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(10), |v| v >= sent);
    wait_peer_rx(&mut rx, 0, live_counter(&live, "b", "tx_packets"));
    let got = rx.finish()[&0].rx;
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert!(sent > 10_000, "generator sent only {sent}");
    assert_eq!(port(&j, "a", "rx_packets"), sent, "every packet the peer sent was received");
    assert_eq!(port(&j, "a", "rx_packets"), port(&j, "b", "tx_packets") + drops(&j, "b"), "a->b: rx = tx + counted drops\n{j}");
    assert_eq!(port(&j, "b", "tx_packets"), got, "what pmdswitch sent on b is what the peer received");
    assert_eq!(port(&j, "a", "rx_bytes"), sent * 64, "64-byte frames");
    // A polling virtio-user PMD asks for no interrupts: no eventfd write towards it.
    assert_eq!(port(&j, "b", "guest_notifications"), 0, "{j}");
    assert_no_leak(&j);
    assert!(!Path::new(&sa).exists() && !Path::new(&sb).exists(), "sockets removed at exit");
    assert_no_leftovers(&s.prefix("dut"));
}

/// vhost → `net_null`: every packet the peer sent arrives out of port b (net_null never
/// refuses, so nothing may be lost).
#[test]
fn every_packet_leaves_the_other_port() {
    require_bed();
    let s = Scratch::new("null");
    let sa = s.sock("a.sock");
    // Ports, rule and options from a config file; the command line adds the group.
    let cfg = s.path("pmds.toml");
    std::fs::write(
        &cfg,
        format!("cores = \"1\"\nxconnect = [\"a,b\"]\n[ports]\na = \"vhost-server:{sa}\"\nb = \"vdev:net_null0,no-rx=1\"\n"),
    )
    .unwrap();
    let pm = Pmds::start(&s, &["--config", cfg.to_str().unwrap(), "--socket-group", "daemon", "--socket-owner", "daemon"]);
    // Sockets: mode 0660 by default, group as asked, never world-writable.
    let md = std::fs::metadata(&sa).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&md), 1, "group daemon (gid 1 on Debian)");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), 1, "owner daemon (uid 1 on Debian)");
    let mut tx = Testpmd::start(&s.prefix("tx"), &[vu(&sa, "")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(10)));
    tx.cmd("start");
    let live = dut_ctl(&s);
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(60), |v| v >= 200_000);
    let sent = tx.finish()[&0].tx;
    // Every frame the peer sent has been through the worker (rx and tx in one pass).
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(10), |v| v >= sent);
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert!(sent > 10_000, "generator sent only {sent}");
    assert_eq!(port(&j, "a", "rx_packets"), sent);
    assert_eq!(port(&j, "b", "tx_packets"), sent, "net_null never refuses: nothing may be lost\n{j}");
    assert_eq!(drops(&j, "b"), 0);
    assert_eq!(j["ports"]["b"]["driver"]["opackets"].as_u64(), Some(sent), "the driver counted the same packets");
    assert_no_leak(&j);
}

/// A `vhost-client` port: the peer serves the socket, quits and comes back on the same path;
/// pmdswitch reconnects by itself and counts both sessions' packets.
#[test]
fn vhost_client_reconnects_when_the_peer_returns() {
    require_bed();
    let s = Scratch::new("client");
    let sc = s.sock("c.sock");
    // The peer serves the socket (like QEMU server=on); pmdswitch connects to it and
    // keeps retrying until it is there (testpmd's server mode waits for us at start-up).
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-client:{sc}"), "--port", "b=vdev:net_null0,no-rx=1", "--xconnect", "a,b", "--cores", "1"],
    );
    let mut g = Testpmd::start(&s.prefix("g1"), &[vu(&sc, ",server=1")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(15)), "{}", pm.out.text());
    g.cmd("start");
    let live = dut_ctl(&s);
    wait_more(&live, "a", "rx_packets", 100_000);
    let sent1 = g.finish()[&0].tx;
    assert!(pm.out.wait_for("detached", 1, Duration::from_secs(10)), "{}", pm.out.text());
    // The peer comes back on the same path: pmdswitch reconnects by itself.
    let mut g = Testpmd::start(&s.prefix("g2"), &[vu(&sc, ",server=1")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(15)), "no reconnect:\n{}", pm.out.text());
    g.cmd("start");
    wait_more(&live, "a", "rx_packets", 100_000);
    let sent2 = g.finish()[&0].tx;
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(10), |v| v >= sent1 + sent2);
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert!(sent1 > 0 && sent2 > 0, "{sent1} {sent2}");
    assert_eq!(port(&j, "a", "rx_packets"), sent1 + sent2, "{j}");
    assert_eq!(port(&j, "b", "tx_packets"), sent1 + sent2);
    assert_no_leak(&j);
}

/// The DTS loop running: pmdswitch cross-connecting two vhost-server sockets, and one
/// testpmd with two virtio-user ports in io forwarding, seeded with 4 bursts.
fn running_loop(s: &Scratch) -> (Switch, Testpmd, String, String) {
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"],
    );
    let mut g = Testpmd::start(&s.prefix("gen"), &[vu(&sa, ""), format!("net_virtio_user1,path={sb}")], "io", 0, &[]);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(10)), "{}", pm.out.text());
    // Seeded once both devices are up: the 4 bursts then loop for good.
    g.cmd("start tx_first 4");
    (pm, g, sa, sb)
}

/// SIGTERM while traffic flows both ways: exit 0 (how long it took is logged; a bench's
/// business, 10 s means a hang), sockets gone, the stats JSON written, rx = tx + drops in
/// both directions, no mbuf leaked, no EAL leftovers.
#[test]
fn sigterm_under_traffic_exits_clean_and_accounts_every_packet() {
    require_bed();
    let s = Scratch::new("term");
    let (pm, g, sa, sb) = running_loop(&s);
    wait_more(&dut_ctl(&s), "a", "rx_packets", 100_000);
    let (st, took, j, text) = pm.stop();
    g.quit();
    assert_eq!(st.code(), Some(0), "{text}");
    assert!(took < Duration::from_secs(10), "exit hung: {took:?}");
    eprintln!("SIGTERM under traffic: exit took {took:?}");
    assert!(!Path::new(&sa).exists() && !Path::new(&sb).exists(), "sockets removed");
    let moved = port(&j, "a", "rx_packets") + port(&j, "b", "rx_packets");
    assert!(moved > 100_000, "little traffic before SIGTERM: {moved}");
    for (from, to) in [("a", "b"), ("b", "a")] {
        assert_eq!(port(&j, from, "rx_packets"), port(&j, to, "tx_packets") + drops(&j, to), "{from}->{to}: rx = tx + counted drops\n{j}");
    }
    let w = &j["workers"][0];
    assert_eq!(w["core"].as_u64(), Some(1));
    assert!(w["busy_cycles"].as_u64().unwrap() > 0 && w["idle_cycles"].is_u64());
    assert_eq!(w["packets"].as_u64(), Some(moved));
    assert_no_leak(&j);
    assert_no_leftovers(&s.prefix("dut"));
}

/// Lines strace wrote for `tid` over `secs` (one line per system call).
fn syscalls(tid: i32, secs: u32, out: &Path) -> usize {
    let st = Command::new("timeout")
        .args(["-s", "INT", &secs.to_string(), "strace", "-qq", "-o"])
        .arg(out)
        .args(["-p", &tid.to_string()])
        .status()
        .expect("strace (scripts/setup.sh installs it)");
    assert!(st.code() == Some(124) || st.success(), "strace failed: {st:?}");
    std::fs::read_to_string(out).unwrap_or_default().lines().filter(|l| !l.trim().is_empty()).count()
}

/// strace on the worker thread while it forwards sees no system call; as a control, the same
/// probe on the main thread does see some (else the probe is broken).
#[test]
fn worker_makes_no_system_calls_while_forwarding() {
    require_bed();
    let s = Scratch::new("sys");
    let (pm, g, _, _) = running_loop(&s);
    wait_more(&dut_ctl(&s), "a", "rx_packets", 100_000);
    let tid = pm.worker_tid(1).expect("worker thread pmd-c1");
    let n_worker = syscalls(tid, 2, &s.path("worker.strace"));
    // Control: the same probe on the (sleeping) main thread does see system calls.
    let n_main = syscalls(pm.pid(), 1, &s.path("main.strace"));
    let (st, _, j, text) = pm.stop();
    g.quit();
    assert!(st.success(), "{text}");
    assert!(n_main > 0, "strace saw nothing on the main thread: the probe is broken");
    assert_eq!(n_worker, 0, "worker made system calls:\n{}", std::fs::read_to_string(s.path("worker.strace")).unwrap_or_default());
    assert!(port(&j, "a", "rx_packets") > 100_000, "the worker was forwarding meanwhile");
}

/// Two `net_tap` vdevs moved into network namespaces of the test's own: ping crosses pmdswitch
/// from one to the other.
#[test]
fn tap_ports_carry_ping_between_namespaces() {
    require_bed();
    let s = Scratch::new("tap");
    let t = TapHosts::names("pt");
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vdev:net_tap0,iface={}", t[0]),
            "--port",
            &format!("b=vdev:net_tap1,iface={}", t[1]),
            "--xconnect",
            "a,b",
            "--cores",
            "1",
        ],
    );
    let hosts = TapHosts::setup(&t);
    let ping = hosts.ping(3, 0.2);
    let (st, _, j, text) = pm.stop();
    assert!(hosts.ok, "namespace setup failed");
    assert!(ping, "ping through pmdswitch failed\n{text}");
    assert!(st.success());
    assert!(port(&j, "a", "rx_packets") >= 4, "ARP + 3 echo requests crossed a->b\n{j}");
    assert!(port(&j, "b", "rx_packets") >= 4, "ARP reply + 3 echo replies crossed b->a");
    assert_no_leak(&j);
}

/// A second vhost-user frontend on a socket already in use is refused; the first stays the only
/// device and keeps forwarding: every packet it sent arrives.
#[test]
fn second_frontend_on_a_socket_is_refused_and_the_first_keeps_forwarding() {
    require_bed();
    let s = Scratch::new("second");
    let sa = s.sock("a.sock");
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", "b=vdev:net_null0,no-rx=1", "--xconnect", "a,b", "--cores", "1"],
    );
    let mut first = Testpmd::start(&s.prefix("first"), &[vu(&sa, "")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(10)));
    first.cmd("start");
    // A second frontend on the same socket: pmdswitch refuses the connection.
    let second = Command::new("dpdk-testpmd")
        .args(["--lcores=0@0,1@0", "--no-pci", "--in-memory", "--single-file-segments", "--log-level=notice"])
        .arg(format!("--file-prefix={}", s.prefix("second")))
        .arg(format!("--vdev={}", vu(&sa, "")))
        .args(["--", "--nb-cores=1", "--forward-mode=txonly", "--stats-period=1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut second = KillOnDrop(second, s.prefix("second"));
    assert!(pm.err.wait_for("refused a second vhost-user frontend", 1, Duration::from_secs(15)), "{}", pm.err.text());
    let before = pm.out.count("attached");
    // The first keeps forwarding after the refusal.
    let live = dut_ctl(&s);
    wait_more(&live, "a", "rx_packets", 100_000);
    let _ = second.0.kill();
    let sent = first.finish()[&0].tx;
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(10), |v| v >= sent);
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert_eq!(before, 1, "only the first frontend became a device");
    assert!(sent > 10_000);
    assert_eq!(port(&j, "a", "rx_packets"), sent, "the first frontend's traffic all arrived\n{j}");
    assert_eq!(port(&j, "b", "tx_packets"), sent);
}

struct KillOnDrop(std::process::Child, String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.1));
    }
}

/// The peer is SIGKILLed under traffic and restarted, 8 cycles in CI (`PMDS_KILL_CYCLES=50` for
/// the long form: passed, 47 s); afterwards a well-behaved peer still gets every packet
/// through, and rx = tx + counted drops.
#[test]
fn peer_killed_and_restarted_repeatedly_loses_nothing_but_counted_packets() {
    require_bed();
    // Short form for CI; scripts can ask for the long one (PMDS_KILL_CYCLES=50).
    let cycles: usize = std::env::var("PMDS_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let s = Scratch::new("kill");
    let sa = s.sock("a.sock");
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", "b=vdev:net_null0,no-rx=1", "--xconnect", "a,b", "--cores", "1"],
    );
    let live = dut_ctl(&s);
    for i in 0..cycles {
        let mut g = Testpmd::start(&s.prefix(&format!("k{i}")), &[vu(&sa, "")], "txonly", 0, &[]);
        assert!(pm.out.wait_for("attached", i + 1, Duration::from_secs(10)), "cycle {i}: no device\n{}", pm.out.text());
        g.cmd("start");
        // Killed mid-stream: while frames flow.
        wait_more(&live, "a", "rx_packets", 10_000);
        drop(g); // SIGKILL: no goodbye on the socket
        assert!(pm.out.wait_for("detached", i + 1, Duration::from_secs(10)), "cycle {i}: device not removed\n{}", pm.out.text());
    }
    // After all that, a well-behaved peer still gets every packet through.
    let mut g = Testpmd::start(&s.prefix("last"), &[vu(&sa, "")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", cycles + 1, Duration::from_secs(10)));
    let base = live_counter(&live, "a", "rx_packets");
    g.cmd("start");
    wait_more(&live, "a", "rx_packets", 100_000);
    let sent = g.finish()[&0].tx;
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(10), |v| v >= base + sent);
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    let rx = port(&j, "a", "rx_packets");
    assert!(rx >= sent && sent > 10_000, "rx {rx}, last peer sent {sent}");
    assert_eq!(rx, port(&j, "b", "tx_packets") + drops(&j, "b"), "rx = tx + counted drops\n{j}");
    assert_no_leak(&j);
}

/// `vhost-client` against a peer in server mode (as QEMU with server=on) that keeps sending:
/// pmdswitch is stopped, a new pmdswitch finds the peer by itself (rte_vhost retries the
/// connection every second; the time taken is logged) and traffic resumes.
#[test]
fn restarted_pmdswitch_reconnects_to_a_serving_peer() {
    require_bed();
    let s = Scratch::new("restart");
    let sc = s.sock("c.sock");
    let args = ["--port", &format!("a=vhost-client:{sc}"), "--port", "b=vdev:net_null0,no-rx=1", "--xconnect", "a,b", "--cores", "1"];
    let pm = Pmds::start(&s, &args);
    // The peer serves the socket (as QEMU with server=on) and keeps sending throughout.
    let mut g = Testpmd::start(&s.prefix("g"), &[vu(&sc, ",server=1")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(15)));
    g.cmd("start");
    wait_more(&dut_ctl(&s), "a", "rx_packets", 10_000);
    let (st, _, j1, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert!(port(&j1, "a", "rx_packets") > 0, "first instance forwarded nothing");
    // A new pmdswitch on the same socket: it must find the peer by itself.
    let t = std::time::Instant::now();
    let pm = Pmds::start(&s, &args);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(10)), "no reconnect:\n{}", pm.out.text());
    let took = t.elapsed();
    wait_more(&dut_ctl(&s), "a", "rx_packets", 10_000);
    let (st, _, j2, text) = pm.stop();
    let _ = g.finish();
    assert!(st.success(), "{text}");
    eprintln!("pmdswitch restarted: the serving peer found again after {took:?}");
    let rx = port(&j2, "a", "rx_packets");
    assert!(rx > 1000, "traffic did not resume after the restart: {rx} packets\n{j2}");
    assert_eq!(rx, port(&j2, "b", "tx_packets") + drops(&j2, "b"));
    assert_no_leak(&j2);
}
