//! QEMU guests (scripts/vm.sh: Debian kernel + busybox initramfs, TCG) on vhost-user
//! sockets of pmdswitch: real virtio-net drivers, real pings.
//!
//! The first run builds the guest image (cached under /var/cache/pmdswitch-vm).

mod common;

use std::time::Duration;

use common::*;
use pmdswitch::bed::switch::DATAPATH_ENV;
use pmdswitch::bed::vm::{build_once, host_receiver, tcp_receiver_cmd, tcp_sender_cmd, Guest, GuestOpts, Qmp, Transfer};

fn opts(server: bool, cmd: Option<&str>, timeout: u32) -> GuestOpts<'_> {
    GuestOpts { server, cmd, timeout, ..Default::default() }
}

/// Two QEMU guests (TCG) cross-connected by pmdswitch ping each other: 0 % loss.
#[test]
fn two_guests_ping_each_other_through_pmdswitch() {
    require_bed();
    build_once();
    let s = Scratch::new("vmping");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"],
    );
    let _b = Guest::boot(&s, "b", &sb, "198.18.0.2/24", &opts(false, None, 120));
    let mut a = Guest::boot(&s, "a", &sa, "198.18.0.1/24", &opts(false, Some("ping -c 5 -W 3 198.18.0.2"), 120));
    let rc = a.result(Duration::from_secs(120));
    let console = a.console();
    let (st, _, j, text) = pm.stop();
    assert_eq!(rc, Some(0), "guest ping failed:\n{console}\n{text}");
    assert!(console.contains("5 packets received") && console.contains("0% packet loss"), "{console}");
    assert!(st.success(), "{text}");
    assert!(port(&j, "a", "rx_packets") >= 5 && port(&j, "b", "rx_packets") >= 5, "{j}");
    // Kernel virtio-net drivers want interrupts: each delivery was notified.
    assert!(port(&j, "a", "guest_notifications") >= 5 && port(&j, "b", "guest_notifications") >= 5, "{j}");
    assert_no_leak(&j);
}

/// QEMU serves the sockets (`server=on`) and pmdswitch connects as `vhost-client`; pmdswitch is
/// restarted mid-ping, reconnects by itself, and the guest's pings resume.
#[test]
fn guest_pings_resume_after_pmdswitch_restarts() {
    require_bed();
    build_once();
    let s = Scratch::new("vmrestart");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    // QEMU serves the sockets (server=on); pmdswitch connects as client and, after its
    // restart, reconnects by itself.
    let _b = Guest::boot(&s, "b", &sb, "198.18.0.2/24", &opts(true, None, 180));
    // A long ping across the restart, then a short one that must fully succeed.
    let mut a =
        Guest::boot(&s, "a", &sa, "198.18.0.1/24", &opts(true, Some("ping -c 40 -i 0.25 198.18.0.2; ping -c 5 -W 3 198.18.0.2"), 180));
    let args = ["--port", &format!("a=vhost-client:{sa}"), "--port", &format!("b=vhost-client:{sb}"), "--xconnect", "a,b", "--cores", "1"];
    // The guests create the sockets; wait for them before starting pmdswitch.
    let socks = || std::path::Path::new(&sa).exists() && std::path::Path::new(&sb).exists();
    wait_until(Duration::from_secs(30), || "the guests' sockets".into(), || socks().then_some(()));
    let pm = Pmds::start(&s, &args);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(60)), "{}", pm.out.text());
    // Let some replies through, then restart pmdswitch while the guest keeps pinging.
    let replies = |a: &Guest| a.console().matches("bytes from 198.18.0.2").count();
    wait_until(Duration::from_secs(60), || format!("3 replies:\n{}", a.console()), || (replies(&a) >= 3).then_some(()));
    let before = a.console().matches("bytes from 198.18.0.2").count();
    let (st, _, _, text) = pm.stop();
    assert!(st.success(), "{text}");
    let pm = Pmds::start(&s, &args);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(30)), "no reconnect:\n{}", pm.out.text());
    let rc = a.result(Duration::from_secs(120));
    let console = a.console();
    let (st, _, j, text) = pm.stop();
    assert!(before >= 3, "no replies before the restart:\n{console}");
    assert!(console.matches("bytes from 198.18.0.2").count() > before + 5, "pings did not resume:\n{console}");
    assert_eq!(rc, Some(0), "the final ping after the restart failed:\n{console}");
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
}

/// The guest takes its interface down and up, then unbinds the virtio device from virtio_net
/// and binds it again (a full device reset): forwarding keeps working across both.
#[test]
fn guest_driver_reset_and_rebind_keep_forwarding() {
    require_bed();
    build_once();
    let s = Scratch::new("vmreset");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"],
    );
    let _b = Guest::boot(&s, "b", &sb, "198.18.0.2/24", &opts(false, None, 180));
    // Interface down/up, then the virtio device unbound from and rebound to virtio_net
    // (a full device reset: the backend sees the device destroyed and created again).
    // After each, the guest waits for the first reply (up to 10 one-second tries: the
    // link and the neighbour come back in their own time), then pings for real.
    let reach = "for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 1 198.18.0.2 >/dev/null && break; done; ping -c 2 -W 3 198.18.0.2";
    let cmd = format!(
        "ping -c 2 -W 3 198.18.0.2 && ip link set eth0 down && ip link set eth0 up && {reach} && \
         d=$(basename $(readlink /sys/class/net/eth0/device)) && \
         echo $d > /sys/bus/virtio/drivers/virtio_net/unbind && echo $d > /sys/bus/virtio/drivers/virtio_net/bind && \
         ip addr add 198.18.0.1/24 dev eth0 && ip link set eth0 up && {reach} && ping -c 3 -W 3 198.18.0.2"
    );
    let mut a = Guest::boot(&s, "a", &sa, "198.18.0.1/24", &opts(false, Some(&cmd), 180));
    let rc = a.result(Duration::from_secs(150));
    let console = a.console();
    let (st, _, j, text) = pm.stop();
    assert_eq!(rc, Some(0), "guest lost connectivity across reset/rebind:\n{console}\n{text}");
    assert!(st.success(), "{text}");
    assert!(text.matches("port a: vhost device attached").count() >= 2, "the rebind should re-create the device:\n{text}");
    assert_no_leak(&j);
}

/// The own data path (the default) rather than the library's.
fn own_path() -> bool {
    std::env::var(DATAPATH_ENV).map_or(true, |v| v.is_empty() || v == "own")
}

/// Megabytes each transfer test moves (seconds under TCG).
const MB: u32 = 8;

/// A TCP transfer from guest a to guest b through a cross-connect; returns what the
/// receiver reported and the switch's stats JSON.
fn guest_transfer(tag: &str, receiver_offloads: bool) -> (Transfer, serde_json::Value) {
    require_bed();
    build_once();
    let s = Scratch::new(tag);
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"],
    );
    let rcmd = tcp_receiver_cmd();
    let mut b = Guest::boot(&s, "b", &sb, "198.18.0.2/24", &GuestOpts { no_offloads: !receiver_offloads, ..opts(false, Some(&rcmd), 240) });
    let scmd = tcp_sender_cmd("198.18.0.2", MB);
    let mut a = Guest::boot(&s, "a", &sa, "198.18.0.1/24", &opts(false, Some(&scmd), 240));
    let rc = a.result(Duration::from_secs(200));
    let rb = b.result(Duration::from_secs(60));
    let (st, _, j, text) = pm.stop();
    assert_eq!(rc, Some(0), "sender failed:\n{}\n{text}", a.console());
    let t = Transfer::of(&b).unwrap_or_else(|| panic!("no report from the receiver:\n{}\n{text}", b.console()));
    assert!(t.intact(MB), "the data did not arrive intact: {t:?}");
    assert_eq!(rb, Some(0), "receiver failed:\n{}", b.console());
    assert!(st.success(), "{text}");
    let offered = if own_path() { "offloads tx csum,tso4,tso6" } else { "offloads tx none" };
    assert!(text.contains(&format!("port a: vhost device attached on {sa} ({offered}")), "{text}");
    assert_no_leak(&j);
    (t, j)
}

/// Mean frame length a port received or sent.
fn mean(j: &serde_json::Value, p: &str, dir: &str) -> u64 {
    port(j, p, &format!("{dir}_bytes")) / port(j, p, &format!("{dir}_packets")).max(1)
}

/// Guest TCP between two guests with offloads on, every byte checked; on the own data path the
/// offloads are passed through (the sender's TSO frames cross whole).
#[test]
fn guest_tcp_transfer_with_offloads_arrives_intact() {
    let (t, j) = guest_transfer("vmtcp", true);
    // On the own path the guests' TSO frames cross whole, header and all: frames far
    // longer than the 1514-byte MTU went through, and as many left as came in.
    if own_path() {
        assert!(mean(&j, "a", "rx") > 4000, "no large TSO frames crossed: {j}");
        assert_eq!(port(&j, "b", "tx_packets") + drops(&j, "b"), port(&j, "a", "rx_packets"), "{j}");
    } else {
        assert!(mean(&j, "a", "rx") <= 1514, "the library path offers no TSO: {j}");
    }
    eprintln!("guest TCP: {MB} MiB in {:.2} s, {:.0} Mbit/s", t.secs, t.mbps);
}

/// Guest TCP to a guest without offloads, every byte checked: the sender's TSO frames are
/// segmented in software, so the receiver gets no frame longer than the MTU.
#[test]
fn guest_tcp_to_a_guest_without_offloads_is_segmented_in_software() {
    let (_, j) = guest_transfer("vmtcpseg", false);
    // What a receiver without GUEST_TSO/CSUM got is finished frames only.
    assert!(mean(&j, "b", "tx") <= 1514, "a frame longer than the MTU reached a guest without TSO: {j}");
    if own_path() {
        assert!(mean(&j, "a", "rx") > 4000, "the sender's TSO frames: {j}");
        assert!(port(&j, "b", "tx_packets") > 2 * port(&j, "a", "rx_packets"), "segmented: more frames out than in: {j}");
    }
}

/// Guest TCP to a tap port in a namespace, every byte checked: the guest's TSO frames are
/// segmented in software, so the tap gets no frame longer than the MTU.
#[test]
fn guest_tcp_to_a_tap_is_segmented_in_software() {
    require_bed();
    build_once();
    let s = Scratch::new("vmtcptap");
    let sa = s.sock("a.sock");
    let tap = TapHosts::names("tt")[1].clone();
    let ns = format!("pmds-{tap}");
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            &format!("b=vdev:net_tap0,iface={tap}"),
            "--xconnect",
            "a,b",
            "--cores",
            "1",
        ],
    );
    let _ns = NsGuard(ns.clone());
    assert!(
        sh(&format!(
            "ip netns add {ns} && ip link set {tap} netns {ns} && ip -n {ns} addr add 198.18.0.2/24 dev {tap} && ip -n {ns} link set {tap} up && ip -n {ns} link set lo up"
        )),
        "namespace setup failed"
    );
    // The receiver: tcpblast in the namespace, checking every byte.
    let out = s.path("received");
    let rx = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(host_receiver())
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .expect("tcpblast receiver");
    let mut rx = ChildGuard(rx);
    let scmd = tcp_sender_cmd("198.18.0.2", MB);
    let mut a = Guest::boot(&s, "a", &sa, "198.18.0.1/24", &opts(false, Some(&scmd), 240));
    let rc = a.result(Duration::from_secs(200));
    let got = wait_timeout(&mut rx.0, Duration::from_secs(30)).is_some_and(|st| st.success());
    let (st, _, j, text) = pm.stop();
    let received = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(rc, Some(0), "sender failed:\n{}\n{text}", a.console());
    assert!(got, "the receiver did not get every byte intact: {received}");
    assert!(received.contains(&format!("bytes={} ", u64::from(MB) << 20)) && received.contains("bad=0 "), "{received}");
    assert!(st.success(), "{text}");
    if own_path() {
        assert!(text.contains("port a: vhost device attached") && text.contains("(offloads tx csum,tso4,tso6"), "{text}");
    }
    assert!(mean(&j, "b", "tx") <= 1514, "the tap got finished frames only: {j}");
    assert_no_leak(&j);
}

/// The migrated guest's address and MAC (the same on both QEMUs).
const V_IP: &str = "198.18.0.1";
const V_MAC: &str = "52:54:00:12:00:01";

/// Megabytes the migration test streams: enough to outlast the migration (about 1 s of
/// pre-copy and up to 1 s stopped) by several seconds under TCG (~100 Mbit/s here).
const MIG_MB: u32 = 128;

/// (transmitted, received) from busybox ping's summary line on a console.
fn ping_summary(console: &str) -> Option<(u64, u64)> {
    let line = console.lines().find(|l| l.contains("packets transmitted"))?;
    let n: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    Some((*n.first()?, *n.get(1)?))
}

/// The longest run of consecutive pings that got no reply, out of `sent` (busybox prints
/// `seq=N` for each reply): the migration's outage, apart from scattered losses.
fn longest_gap(console: &str, sent: u64) -> u64 {
    let mut seen = vec![false; sent as usize];
    for l in console.lines().filter(|l| l.contains("bytes from")) {
        if let Some(n) = l.split_whitespace().find_map(|w| w.strip_prefix("seq=")).and_then(|v| v.parse::<usize>().ok()) {
            if n < seen.len() {
                seen[n] = true;
            }
        }
    }
    let (mut run, mut max) = (0u64, 0u64);
    for s in seen {
        run = if s { 0 } else { run + 1 };
        max = max.max(run);
    }
    max
}

/// The port bridge `br` has learned `mac` on (None when not in its table).
fn mac_port(ctl_sock: &std::path::Path, br: &str, mac: &str) -> Option<String> {
    let words = ["show", "macs", br, "--json"].map(String::from);
    let reply = pmdswitch::control::client::request(Some(ctl_sock.to_path_buf()), &words).ok()?;
    let v: serde_json::Value = serde_json::from_str(&reply).ok()?;
    let e = v["entries"].as_array()?.iter().find(|e| e["mac"] == mac)?;
    e["port"].as_str().map(str::to_string)
}

/// Live migration of a guest between two ports of one bridge, under load. Guest V (the TCP
/// receiver) boots on port a; a second QEMU for V waits on port b (`-incoming`); guest P on
/// port c pings V every 50 ms and streams MIG_MB MiB to it. Once the stream runs, V migrates
/// (QMP `migrate`) from the first QEMU to the second. Then: every byte of the stream arrived
/// intact (it crossed the migration: the receiver's report comes from the destination's
/// console), ping loss stayed within the bound below, the bridge moved V's MAC from a to b,
/// pmdswitch survived and no mbuf leaked.
///
/// Both data paths: QEMU migrates only when the backend offers dirty-page logging
/// (VHOST_F_LOG_ALL), and the pages the switch writes during the first pass must reach
/// the destination through that log (the receiver's buffers, the used rings).
#[test]
fn guest_migrates_between_bridge_ports_with_tcp_and_ping_intact() {
    require_bed();
    build_once();
    let s = Scratch::new("vmmig");
    let (sa, sb, sc) = (s.sock("a.sock"), s.sock("b.sock"), s.sock("c.sock"));
    let ctl_sock = s.path("ctl");
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            &format!("b=vhost-server:{sb}"),
            "--port",
            &format!("c=vhost-server:{sc}"),
            "--bridge",
            "br0=a,b,c",
            "--cores",
            "1",
            "--ctl",
            ctl_sock.to_str().unwrap(),
        ],
    );
    // V: its virtio features (bit 21: GUEST_ANNOUNCE, who announces V after the move),
    // then the receiver. The destination gets the same options plus --incoming.
    let (qsrc, qdst, uri) = (s.sock("v-src.qmp"), s.sock("v-dst.qmp"), format!("unix:{}", s.sock("v.migration")));
    let vcmd = format!("echo PMDS-FEATURES $(cat /sys/class/net/eth0/device/features); {}", tcp_receiver_cmd());
    let vip = format!("{V_IP}/24");
    let vo = GuestOpts { cmd: Some(&vcmd), timeout: 300, mac: Some(V_MAC), qmp: Some(&qsrc), ..Default::default() };
    let v = Guest::boot(&s, "v-src", &sa, &vip, &vo);
    let mut vd = Guest::boot(&s, "v-dst", &sb, &vip, &GuestOpts { qmp: Some(&qdst), incoming: Some(&uri), ..vo.clone() });
    // QMP answers once QEMU's main loop runs, i.e. after it listens for the stream.
    let mut dst = Qmp::connect(std::path::Path::new(&qdst), Duration::from_secs(60)).expect("destination QMP");
    let st = dst.execute("query-status", None).expect("query-status");
    assert_eq!(st["status"], "inmigrate", "the destination QEMU is not waiting for a migration: {st}");
    wait_until(Duration::from_secs(90), || format!("V up:\n{}", v.console()), || v.console().contains("PMDS-GUEST-READY").then_some(()));
    // P: waits until V answers, then pings it every 50 ms for as long as the stream runs
    // (and 1 s more), the ping's summary last.
    let pcmd = format!(
        "for i in $(seq 1 30); do ping -c 1 -W 1 {V_IP} >/dev/null && break; done; ping -i 0.05 {V_IP} & p=$!; {}; r=$?; \
         sleep 1; kill -INT $p; wait $p; exit $r",
        tcp_sender_cmd(V_IP, MIG_MB)
    );
    let mut p = Guest::boot(&s, "p", &sc, "198.18.0.3/24", &GuestOpts { cmd: Some(&pcmd), timeout: 300, ..Default::default() });
    // Migrate once both flows run: 20 replies seen, 16 MiB delivered to V.
    let replies = |g: &Guest| g.console().matches(&format!("bytes from {V_IP}")).count();
    wait_until(
        Duration::from_secs(120),
        || format!("ping and stream running (a.tx_bytes {}):\n{}", live_counter(&ctl_sock, "a", "tx_bytes"), p.console()),
        || (replies(&p) >= 20 && live_counter(&ctl_sock, "a", "tx_bytes") >= 16 << 20).then_some(()),
    );
    let mut src = Qmp::connect(std::path::Path::new(&qsrc), Duration::from_secs(10)).expect("source QMP");
    // QEMU 7.2 under TCG loses guest-CPU writes across iterative pre-copy passes when guest
    // RAM is a memory backend (as vhost-user needs): measured, pages differed between the
    // paused source and destination in most runs, even without vhost-user, and the migrated
    // guest crashed. A downtime limit this large makes QEMU stop the guest after the first
    // pass (~0.5 s stopped); backend writes still rely on the vhost dirty log.
    src.execute("migrate-set-parameters", Some(serde_json::json!({ "downtime-limit": 10_000 }))).expect("migrate-set-parameters");
    if let Err(e) = src.migrate(&uri) {
        let (_, _, _, text) = pm.stop();
        panic!("QEMU refused to migrate V (data path {}): {e}\n{text}", if own_path() { "own" } else { "lib" });
    }
    let m = src.wait_migration(Duration::from_secs(120)).expect("migration status");
    assert_eq!(m.status, "completed", "{m:?}\nsource console:\n{}", v.console());
    // The migration happened inside both flows, so their results speak for it.
    assert!(
        !v.console().contains("PMDS-BLAST") && !vd.console().contains("PMDS-BLAST"),
        "the stream ended before the migration did: raise MIG_MB"
    );
    assert!(!p.console().contains("packets transmitted"), "the ping ended before the migration did:\n{}", p.console());
    src.quit().expect("quit the source QEMU");
    // V's frames now enter port b: the bridge moves its MAC there.
    let last = std::cell::RefCell::new(None);
    wait_until(
        Duration::from_secs(30),
        || format!("{V_MAC} learned on port b (last: {:?})", last.borrow()),
        || {
            *last.borrow_mut() = mac_port(&ctl_sock, "br0", V_MAC);
            (last.borrow().as_deref() == Some("b")).then_some(())
        },
    );
    let rp = p.result(Duration::from_secs(240));
    let rv = vd.result(Duration::from_secs(60));
    let (pc, vc) = (p.console(), vd.console());
    let (st, _, j, text) = pm.stop();
    assert!(!vc.contains("BUG:") && !vc.contains("Kernel panic"), "the migrated guest crashed (its memory arrived corrupt?):\n{vc}");
    assert_eq!(rp, Some(0), "the sender failed:\n{pc}\n{text}");
    let t = Transfer::of(&vd).unwrap_or_else(|| panic!("no report from the receiver:\n{vc}\n{text}"));
    assert!(t.intact(MIG_MB), "the stream did not arrive intact across the migration: {t:?}");
    assert_eq!(rv, Some(0), "receiver failed:\n{vc}");
    let (sent, got) = ping_summary(&pc).unwrap_or_else(|| panic!("no ping summary:\n{pc}"));
    let lost = sent - got.min(sent);
    let gap = longest_gap(&pc, sent);
    let announce = v.marked("PMDS-FEATURES ").and_then(|w| w.first().map(|f| f.as_bytes().get(21) == Some(&b'1')));
    eprintln!(
        "migration: {} ms in all, {} ms stopped, {} MiB sent; ping {lost} lost of {sent}, at most {gap} in a row; stream {:.0} Mbit/s; guest announce: {announce:?}",
        m.total_ms.unwrap_or(0),
        m.downtime_ms.unwrap_or(0),
        m.ram_bytes.unwrap_or(0) >> 20,
        t.mbps
    );
    // The bounds. In a row: the outage, from the guest's stop until the bridge has relearned
    // V on port b (from V's gratuitous ARP): the stop plus about as long again to restart and
    // announce. Apart from it: pings dropped when V's receive ring is full of the stream (the
    // bridge drops what finds no room; ~6 % with no migration at all). Measured on the lib
    // path, 10 runs (~60 ms between pings under TCG, 466-1159 ms stopped): 12-24 in a row,
    // 23-40 lost of 177-309 in all, 10-16 of them apart from the outage (4-8 %). Bounds
    // with a margin for a busier host: 50 in a row, an eighth of all apart from that run.
    assert!(gap <= 50, "{gap} pings in a row lost across the migration:\n{pc}");
    assert!((lost - gap.min(lost)) * 8 <= sent, "ping lost {lost} of {sent} ({gap} in a row):\n{pc}");
    assert!(st.success(), "{text}");
    assert!(text.contains("port a: vhost device detached") && text.contains("port b: vhost device attached"), "{text}");
    assert!(j["bridges"]["br0"]["mac_table"]["moves"].as_u64().unwrap_or(0) >= 1, "no MAC move counted: {}", j["bridges"]);
    assert!(port(&j, "b", "rx_packets") > 0 && port(&j, "b", "tx_packets") > 0, "no traffic on the new port: {j}");
    assert_no_leak(&j);
}

struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        sh(&format!("ip netns del {} 2>/dev/null", self.0));
    }
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
