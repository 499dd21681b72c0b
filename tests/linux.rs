//! Host interfaces and the Linux route mirror, in network namespaces the test creates:
//! pmdswitch runs in namespace P with two af_packet ports on veths; the other ends are a
//! "guest" namespace G (198.18.1.1/24, default via the router) and a "far" namespace F
//! (198.18.2.1/24 with 198.19.77.1 behind it). Routes added with `ip route` in P show in
//! `ctl route show` and carry the guest's traffic; their removal stops it; a TCP
//! connection from the guest to a listener on the twin's address carries data intact.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Bed {
    p: String,
    g: String,
    f: String,
    va: String,
    vb: String,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let id = std::process::id() % 100_000;
        let b = Bed {
            p: format!("pmds-{tag}{id}-p"),
            g: format!("pmds-{tag}{id}-g"),
            f: format!("pmds-{tag}{id}-f"),
            va: format!("{tag}{id}a"),
            vb: format!("{tag}{id}b"),
        };
        let (p, g, f, va, vb) = (&b.p, &b.g, &b.f, &b.va, &b.vb);
        // arp_ignore=1 in P: its kernel must not answer ARP on the veths for the twins'
        // addresses (af_packet ports share the veth with the kernel). Checksum offload off
        // on the far ends: af_packet reads a veth's partial checksums as they are.
        let ok = sh(&format!(
            "set -e; ip netns add {p}; ip netns add {g}; ip netns add {f}
             ip link add {va} netns {p} type veth peer name vg netns {g}
             ip link add {vb} netns {p} type veth peer name vx netns {f}
             ip netns exec {p} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.default.arp_ignore=1
             ip -n {p} link set lo up; ip -n {p} link set {va} up; ip -n {p} link set {vb} up
             ip -n {g} link set lo up; ip -n {g} link set vg up; ip -n {g} addr add 198.18.1.1/24 dev vg
             ip -n {g} route add default via 198.18.1.254
             ip -n {f} link set lo up; ip -n {f} link set vx up; ip -n {f} addr add 198.18.2.1/24 dev vx
             ip -n {f} addr add 198.19.77.1/32 dev lo; ip -n {f} route add default via 198.18.2.254
             ip netns exec {g} ethtool -K vg tx off >/dev/null; ip netns exec {f} ethtool -K vx tx off >/dev/null"
        ));
        assert!(ok, "test bed: namespaces and veths (needs root, iproute2 and ethtool: scripts/setup.sh)");
        b
    }

    fn start(&self, s: &Scratch, extra: &[&str]) -> (Switch, std::path::PathBuf) {
        let ctl = s.path("ctl.sock");
        let (pa, pb) = (format!("a=vdev:net_af_packet0,iface={}", self.va), format!("b=vdev:net_af_packet1,iface={}", self.vb));
        let c = ctl.display().to_string();
        let mut args =
            vec!["--port", &pa, "--port", &pb, "--ip", "a=198.18.1.254/24", "--ip", "b=198.18.2.254/24", "--cores", "1", "--ctl", &c];
        args.extend_from_slice(extra);
        (Switch::start_in(&bin(), s, Some(&self.p), &[], &args), ctl)
    }

    fn ping(&self, dst: &str) -> bool {
        sh(&format!("ip netns exec {} ping -c 1 -W 1 {dst} >/dev/null", self.g))
    }

    fn in_p(&self, cmd: &str) -> bool {
        sh(&format!("ip netns exec {} {cmd}", self.p))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        sh(&format!("ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null", self.p, self.g, self.f));
    }
}

/// A namespace of the test's own (loopback up), deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let ns = format!("pmds-{tag}{}", std::process::id() % 100_000);
        assert!(sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up")), "namespace {ns}");
        Ns(ns)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        sh(&format!("ip netns del {} 2>/dev/null", self.0));
    }
}

/// pmdswitch in `ns` routing between vhost-user ports a (198.18.1.254/24) and b
/// (198.18.2.254/24), control socket `s/ctl`, with `extra` arguments and `envs`:
/// (switch, socket a, socket b).
fn vhost_router(s: &Scratch, ns: &Ns, extra: &[&str], envs: &[(&str, &str)]) -> (Switch, String, String) {
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let c = s.path("ctl").display().to_string();
    let (pa, pb) = (format!("a=vhost-server:{sa}"), format!("b=vhost-server:{sb}"));
    let mut args =
        vec!["--ctl", &c, "--port", &pa, "--port", &pb, "--ip", "a=198.18.1.254/24", "--ip", "b=198.18.2.254/24", "--cores", "1"];
    args.extend_from_slice(extra);
    (Switch::start_in(&bin(), s, Some(&ns.0), envs, &args), sa, sb)
}

fn routes(ctl: &std::path::Path) -> serde_json::Value {
    let (rc, out, err) = common::ctl(ctl, &["route", "show", "--json"]);
    assert_eq!(rc, 0, "{err}");
    serde_json::from_str(&out).expect("route show JSON")
}

fn origin_of(ctl: &std::path::Path, prefix: &str) -> Option<String> {
    routes(ctl)["routes"].as_array()?.iter().find(|r| r["prefix"] == prefix).map(|r| r["origin"].as_str().unwrap_or("").to_string())
}

/// Waits until `prefix` has origin `want` (None: absent); returns how long it took.
fn wait_route(ctl: &std::path::Path, prefix: &str, want: Option<&str>) -> Duration {
    let t = Instant::now();
    wait_until(
        Duration::from_secs(10),
        || format!("{prefix} to have origin {want:?}: {}", routes(ctl)),
        || (origin_of(ctl, prefix).as_deref() == want).then_some(()),
    );
    t.elapsed()
}

fn router(ctl: &std::path::Path) -> serde_json::Value {
    let (_, out, _) = common::ctl(ctl, &["show", "router", "--json"]);
    serde_json::from_str(&out).expect("router JSON")
}

/// The twins have the interfaces' MACs and addresses; `ip route add` shows in `ctl route show`
/// (how soon is logged) and the guest namespace pings through it; a next-hop object route and a
/// multipath route (two next hops); a static route holds its prefix against Linux; a 300 kB TCP
/// transfer from the guest to a listener on the twin's address, SHA-256 checked; `ip route del`
/// removes it and pings stop; the twins go with the process.
#[test]
fn ip_route_programs_the_data_plane_and_twins_carry_tcp() {
    require_bed();
    let b = Bed::new("lx");
    let s = Scratch::new("linux");
    let (sw, ctl) = b.start(&s, &["--linux-routes", "main"]);
    // The twins: the interfaces' MACs and addresses in P.
    let (_, ipj, _) = common::ctl(&ctl, &["ip", "show", "--json"]);
    let ifs: serde_json::Value = serde_json::from_str(&ipj).unwrap();
    let mac_a = ifs.as_array().unwrap().iter().find(|i| i["interface"] == "a").unwrap()["mac"].as_str().unwrap().to_string();
    let link = Command::new("ip").args(["netns", "exec", &b.p, "ip", "-br", "addr", "show", "dev", "a"]).output().unwrap();
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(link.contains("198.18.1.254/24"), "twin a: {link}");
    let mac = Command::new("ip").args(["netns", "exec", &b.p, "cat", "/sys/class/net/a/address"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&mac.stdout).trim(), mac_a);

    // Echo is the data plane's; 198.19.77.1 has no route yet.
    assert!(b.ping("198.18.1.254"), "echo to the router");
    assert!(!b.ping("198.19.77.1"), "no route yet");

    assert!(b.in_p("ip route add 198.19.77.0/24 via 198.18.2.1 dev b"));
    let took = wait_route(&ctl, "198.19.77.0/24", Some("linux"));
    eprintln!("ip route add: in the router's FIB after {took:?}");
    assert!(b.ping("198.19.77.1"), "through the route Linux gave");

    // A next-hop object (what FRR's zebra uses) and a multipath route.
    assert!(b.in_p("ip nexthop add id 7 via 198.18.2.1 dev b"));
    assert!(b.in_p("ip route add 198.19.80.0/24 nhid 7"));
    assert!(b.in_p("ip route add 198.19.78.0/24 nexthop via 198.18.2.1 dev b nexthop via 198.18.1.1 dev a"));
    wait_route(&ctl, "198.19.80.0/24", Some("linux"));
    wait_route(&ctl, "198.19.78.0/24", Some("linux"));
    let r = routes(&ctl);
    let mp = r["routes"].as_array().unwrap().iter().find(|x| x["prefix"] == "198.19.78.0/24").unwrap();
    assert_eq!(mp["next_hops"].as_array().unwrap().len(), 2, "ECMP: {mp}");

    // `ctl ip add/del` on an interface: its twin follows.
    let (rc, _, e) = common::ctl(&ctl, &["ip", "add", "a", "198.18.3.254/24"]);
    assert_eq!(rc, 0, "{e}");
    assert!(b.in_p("ip -br addr show dev a | grep -q 198.18.3.254/24"), "the twin got the address");
    let (rc, _, e) = common::ctl(&ctl, &["ip", "del", "a", "198.18.3.254/24"]);
    assert_eq!(rc, 0, "{e}");
    assert!(!b.in_p("ip -br addr show dev a | grep -q 198.18.3.254/24"), "the twin lost the address");

    // A static route holds its prefix against Linux.
    let (rc, _, e) = common::ctl(&ctl, &["route", "add", "198.19.81.0/24", "blackhole"]);
    assert_eq!(rc, 0, "{e}");
    assert!(b.in_p("ip route add 198.19.81.0/24 via 198.18.2.1 dev b"));
    // The mirror saw Linux's route (and counted it shadowed).
    wait_until(
        Duration::from_secs(10),
        || format!("a shadowed route: {}", router(&ctl)["linux"]),
        || (router(&ctl)["linux"]["routes_shadowed"].as_u64() >= Some(1)).then_some(()),
    );
    assert_eq!(origin_of(&ctl, "198.19.81.0/24").as_deref(), Some("static"));

    // TCP from the guest to a listener on the twin's address: 300 kB, hashed both ends.
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &b.p, "timeout", "20", "python3", "-c"])
        .arg(
            "import socket,hashlib\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('198.18.1.254',5000)); s.listen(1)\n\
             print('listening',flush=True)\n\
             c,_=s.accept(); h=hashlib.sha256()\n\
             while True:\n  x=c.recv(65536)\n  if not x: break\n  h.update(x)\n\
             c.sendall(h.hexdigest().encode()); c.close()",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut listener_out = std::io::BufReader::new(listener.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut listener_out, &mut line).unwrap();
    assert_eq!(line.trim(), "listening", "the listener did not start");
    let client = Command::new("ip")
        .args(["netns", "exec", &b.g, "timeout", "20", "python3", "-c"])
        .arg(
            "import socket,os,hashlib\n\
             d=os.urandom(300000); s=socket.create_connection(('198.18.1.254',5000),timeout=10); s.sendall(d); s.shutdown(socket.SHUT_WR)\n\
             r=s.recv(100).decode(); print('match' if r==hashlib.sha256(d).hexdigest() else 'differ '+r)",
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&client.stdout);
    let _ = listener.wait();
    assert_eq!(out.trim(), "match", "TCP to the twin: {}", String::from_utf8_lossy(&client.stderr));

    // ip route del: gone from the router, traffic stops (an ICMP unreachable answers).
    assert!(b.in_p("ip route del 198.19.77.0/24"));
    let took = wait_route(&ctl, "198.19.77.0/24", None);
    eprintln!("ip route del: out of the router's FIB after {took:?}");
    assert!(!b.ping("198.19.77.1"), "the route is gone");

    let j = router(&ctl);
    let up = j["host_if"]["up"].as_u64().unwrap();
    let down = j["host_if"]["down"].as_u64().unwrap();
    // 300 kB up is at least 300000/1448 segments; the kernel's ACKs (delayed,
    // coalesced) come down fewer.
    assert!(up >= 300_000 / 1448 && down >= 20, "the TCP session went through the twin both ways: {j}");
    assert_eq!(j["linux"]["malformed"], serde_json::Value::Null, "{j}");
    assert!(j["linux"]["routes_shadowed"].as_u64() >= Some(1), "{j}");
    let (st, _, stats, text) = sw.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&stats);
    // The twins went with the process.
    assert!(!b.in_p("ip link show a >/dev/null 2>&1"), "twin a left behind");
}

/// A named twin (`--host-if a=gw0`) and no mirror: routes added in Linux stay out. Bad input (a
/// bad table, an unknown port, an existing or overlong name) is one line each, nothing left.
#[test]
fn host_if_without_linux_routes_and_bad_input() {
    require_bed();
    let b = Bed::new("hi");
    let s = Scratch::new("hostif");
    // A twin named by the user; no mirror: routes added in Linux stay out.
    let (sw, ctl) = b.start(&s, &["--host-if", "a=gw0"]);
    assert!(b.in_p("ip link show gw0 >/dev/null"), "twin gw0");
    assert!(!b.in_p("ip link show b >/dev/null 2>&1"), "b has no twin");
    assert!(b.in_p("ip route add 198.19.77.0/24 via 198.18.1.1 dev gw0"));
    // Nothing listens to Linux's routes (no mirror runs: a mirror counts at least the
    // dump it starts with), so none can arrive.
    assert_eq!(router(&ctl)["linux"], serde_json::json!({}), "no mirror without --linux-routes");
    assert_eq!(origin_of(&ctl, "198.19.77.0/24"), None);
    let (st, _, _, text) = sw.stop();
    assert!(st.success(), "{text}");

    // Bad input: one line naming the problem and the fix, non-zero, nothing left.
    for (args, want) in [
        (vec!["--linux-routes", "mains"], "not a table"),
        (vec!["--host-if", "zz"], "unknown port 'zz'"),
        (vec!["--host-if", "a=lo"], "exists already"),
        (vec!["--host-if", "a=averyveryverylongname"], "not a Linux interface name"),
    ] {
        let prefix = s.prefix(&format!("bad{}", Scratch::seq()));
        let (pa, pb) = (format!("a=vdev:net_af_packet0,iface={}", b.va), format!("b=vdev:net_af_packet1,iface={}", b.vb));
        let o = Command::new("ip")
            .args(["netns", "exec", &b.p])
            .arg(bin())
            .args(["run", "--port", &pa, "--port", &pb, "--ip", "a=198.18.1.254/24", "--cores", "1"])
            .args(&args)
            .args(["--", "-l", "0", &format!("--file-prefix={prefix}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert_no_leftovers(&prefix);
    }
}

/// The router's routes come from Linux only (`ip route` in P), and 12 000 Linux route
/// changes a second — more specifics inside both streams' prefixes, added and removed
/// in turn with `ip -batch` — reach the FIB while the generator runs 500 kpps through
/// vhost ports: nothing lost, nothing on the wrong port.
#[test]
fn linux_route_churn_under_traffic_loses_nothing() {
    require_bed();
    let nsg = Ns::new("lc");
    let ns = nsg.0.clone();
    let s = Scratch::new("linuxchurn");
    let ctl_path = s.path("ctl");
    let (sw, sa, sb) = vhost_router(&s, &nsg, &["--linux-routes", "main"], &[]);
    assert!(sh(&format!(
        "ip -n {ns} route add 198.19.0.0/16 via 198.18.2.1 dev b && ip -n {ns} route add 198.20.0.0/16 via 198.18.1.1 dev a"
    )));
    wait_route(&ctl_path, "198.19.0.0/16", Some("linux"));
    wait_route(&ctl_path, "198.20.0.0/16", Some("linux"));
    let (mut add, mut del) = (String::new(), String::new());
    for i in 0..256u32 {
        let (third, len) = (i / 4, 25 + i % 4);
        let m = |x: u32| x & !(u32::MAX >> len) & 0xff;
        let fourth = m((i % 4) * 16);
        for (net, gw, dev) in [("198.19", "198.18.2.1", "b"), ("198.20", "198.18.1.1", "a")] {
            add.push_str(&format!("route add {net}.{third}.{fourth}/{len} via {gw} dev {dev}\n"));
            del.push_str(&format!("route del {net}.{third}.{fourth}/{len}\n"));
        }
    }
    let (fa, fd) = (s.path("add.batch"), s.path("del.batch"));
    std::fs::write(&fa, add).unwrap();
    std::fs::write(&fd, del).unwrap();
    let ns2 = ns.clone();
    let round = move || {
        for f in [&fa, &fd] {
            assert!(sh(&format!("ip -n {ns2} -batch {}", f.display())), "ip -batch");
        }
        1024
    };
    let ((g, out), changes, rate) = churn_while(12_000.0, round, || gen_through_router(&s, &sa, &sb));
    let r = router(&ctl_path);
    let (st, _, j, text) = sw.stop();
    assert!(st.success(), "{text}");
    assert!(changes >= 4 * 1024, "the churn made only {changes} route changes while the generator ran");
    assert_nothing_lost_or_misrouted(&g, &out, &j);
    // The changes reached the router (half of them adds, each an install; a resync
    // after a netlink overrun installs what it finds at once, hence not all of them),
    // none was malformed.
    let l = &r["linux"];
    assert!(l["routes_installed"].as_u64().unwrap_or(0) as usize >= changes * 2 / 5, "{changes} changes: {l}");
    assert_eq!(l["malformed"], serde_json::Value::Null, "{l}");
    eprintln!("Linux route churn under traffic: {rate:.0} changes/s, nothing lost or misrouted; mirror: {l}");
    assert_no_leak(&j);
}

/// FRR's zebra and staticd in the router's namespace: the static routes staticd gives
/// zebra (which installs them as next-hop objects, an ECMP one as a group) reach the FIB
/// and carry the guest's pings; when staticd stops, zebra withdraws them and so does
/// the router.
#[test]
fn frr_staticd_routes_reach_the_fib() {
    require_bed();
    assert!(std::path::Path::new("/usr/lib/frr/zebra").exists(), "FRR is not installed: run scripts/setup.sh (package frr)");
    let b = Bed::new("fr");
    let s = Scratch::new("frr");
    let (sw, ctl) = b.start(&s, &["--linux-routes", "main"]);
    // FRR drops to its own user: a directory it can write in.
    let dir = s.path("frr");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(sh(&format!("chmod 777 {}", dir.display())));
    std::fs::write(dir.join("zebra.conf"), "hostname z\n").unwrap();
    std::fs::write(
        dir.join("staticd.conf"),
        "hostname s\nip route 198.19.77.0/24 198.18.2.1\nip route 198.19.78.0/24 198.18.2.1\nip route 198.19.78.0/24 198.18.1.1\n",
    )
    .unwrap();
    struct Daemons(Vec<std::path::PathBuf>);
    impl Drop for Daemons {
        fn drop(&mut self) {
            for p in &self.0 {
                if let Ok(pid) = std::fs::read_to_string(p) {
                    sh(&format!("kill {} 2>/dev/null", pid.trim()));
                }
            }
        }
    }
    let mut d = Daemons(Vec::new());
    for name in ["zebra", "staticd"] {
        let d0 = dir.display();
        // -P 0: no vty TCP port; the vty socket and the zebra API socket in our directory.
        let ok = sh(&format!(
            "chmod 666 {d0}/{name}.conf; ip netns exec {} /usr/lib/frr/{name} -d -P 0 -f {d0}/{name}.conf -i {d0}/{name}.pid -z {d0}/zserv.api \
             --vty_socket {d0} -u frr -g frr --log file:{d0}/{name}.log",
            b.p
        ));
        assert!(ok, "{name} did not start: {}", std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default());
        d.0.push(dir.join(format!("{name}.pid")));
        // staticd talks to zebra through its API socket: there before staticd starts.
        let api = dir.join("zserv.api");
        wait_until(Duration::from_secs(10), || format!("zebra's API socket {}", api.display()), || api.exists().then_some(()));
    }
    let took = wait_route(&ctl, "198.19.77.0/24", Some("linux"));
    wait_route(&ctl, "198.19.78.0/24", Some("linux"));
    eprintln!("staticd's route in the FIB {took:?} after staticd started");
    let r = routes(&ctl);
    let ecmp = r["routes"].as_array().unwrap().iter().find(|x| x["prefix"] == "198.19.78.0/24").unwrap();
    assert_eq!(ecmp["next_hops"].as_array().unwrap().len(), 2, "the ECMP route from a next-hop group: {ecmp}");
    assert!(b.ping("198.19.77.1"), "through FRR's route");
    // staticd gone: zebra withdraws its routes, the mirror follows.
    let pid = std::fs::read_to_string(&d.0[1]).unwrap();
    assert!(sh(&format!("kill {}", pid.trim())));
    wait_route(&ctl, "198.19.77.0/24", None);
    wait_route(&ctl, "198.19.78.0/24", None);
    assert!(!b.ping("198.19.77.1"));
    let j = router(&ctl);
    assert_eq!(j["linux"]["malformed"], serde_json::Value::Null, "{j}");
    assert!(j["linux"]["nexthops"].as_u64() > Some(0), "zebra used next-hop objects: {j}");
    let (st, _, _, text) = sw.stop();
    assert!(st.success(), "{text}");
}

/// A QEMU guest (kernel virtio-net, checksum and TSO offloads on) sends 8 MiB over TCP
/// to a listener on its gateway's address, which lives on the twin: its TSO frames go
/// up cut into segments with complete checksums; every byte is checked.
#[test]
fn guest_tcp_to_a_listener_on_the_twin() {
    require_bed();
    use pmdswitch::bed::vm::{build_once, host_receiver, tcp_sender_cmd, Guest, GuestOpts};
    build_once();
    let nsg = Ns::new("lg");
    let ns = nsg.0.clone();
    let s = Scratch::new("linuxvm");
    let (sw, sa, _) = vhost_router(&s, &nsg, &["--host-if", "a"], &[]);
    let out = s.path("received");
    let rx =
        Command::new("ip").args(["netns", "exec", &ns]).args(host_receiver()).stdout(std::fs::File::create(&out).unwrap()).spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut rx = Kill(rx);
    const MB: u32 = 8;
    let scmd = format!("ping -c 2 -W 3 198.18.1.254 && {}", tcp_sender_cmd("198.18.1.254", MB));
    let o = GuestOpts { server: false, cmd: Some(&scmd), timeout: 240, no_offloads: false, gw: Some("198.18.1.254"), ..Default::default() };
    let mut a = Guest::boot(&s, "a", &sa, "198.18.1.1/24", &o);
    let rc = a.result(Duration::from_secs(200));
    let got = wait_timeout(&mut rx.0, Duration::from_secs(30)).is_some_and(|st| st.success());
    let r = router(&s.path("ctl"));
    let (st, _, j, text) = sw.stop();
    let received = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(rc, Some(0), "sender failed:\n{}\n{text}", a.console());
    assert!(got, "the receiver on the twin did not get every byte intact: {received}\n{r}");
    assert!(received.contains(&format!("bytes={} ", u64::from(MB) << 20)) && received.contains("bad=0 "), "{received}");
    assert!(st.success(), "{text}");
    assert_eq!(r["host_if"]["errors"].as_u64(), Some(0), "{r}");
    assert!(r["host_if"]["up"].as_u64().unwrap_or(0) >= u64::from(MB) << 20 >> 16, "segments went up: {r}");
    assert_no_leak(&j);
    eprintln!("guest TCP to the twin: {received}");
}

/// A receive buffer made tiny (4 KiB, PMDSWITCH_NETLINK_RCVBUF) overflows when 20 000
/// routes arrive while pmdswitch is stopped (SIGSTOP): the overrun is counted, a full dump
/// resyncs, and the router ends up with exactly Linux's routes; then removing them all
/// arrives the same way.
#[test]
fn an_overrun_resyncs_to_exactly_linux_routes() {
    require_bed();
    let nsg = Ns::new("lo");
    let ns = nsg.0.clone();
    let s = Scratch::new("linuxoverrun");
    let ctl_path = s.path("ctl");
    let c = ctl_path.display().to_string();
    let (sw, _, _) = vhost_router(&s, &nsg, &["--linux-routes", "main"], &[("PMDSWITCH_NETLINK_RCVBUF", "4096")]);
    let v4 = || router(&ctl_path)["routes"]["v4"].as_u64().unwrap();
    let base = v4();
    const N: u64 = 20_000;
    let mut batch = String::new();
    for i in 0..N {
        batch.push_str(&format!("route add 10.{}.{}.0/24 via 198.18.2.1 dev b\n", i / 256, i % 256));
    }
    let f = s.path("routes.batch");
    std::fs::write(&f, batch).unwrap();
    // The mirror stalled (the process stopped) while the routes arrive: the kernel
    // drops what does not fit the buffer and tells the socket.
    assert!(sh(&format!("pkill -STOP -f '[-]-ctl {c}'")));
    let added = sh(&format!("ip -n {ns} -batch {}", f.display()));
    assert!(sh(&format!("pkill -CONT -f '[-]-ctl {c}'")));
    assert!(added);
    wait_until(Duration::from_secs(30), || format!("{} v4 routes (have {})", base + N, v4()), || (v4() == base + N).then_some(()));
    let j = router(&ctl_path);
    assert_eq!(v4(), base + N, "{}", j["linux"]);
    assert!(j["linux"]["overruns"].as_u64() >= Some(1), "a 4 KiB buffer must overflow: {}", j["linux"]);
    assert!(j["linux"]["resyncs"].as_u64() >= Some(1), "{}", j["linux"]);
    assert!(sh(&format!("ip -n {ns} route flush proto boot")));
    wait_until(Duration::from_secs(30), || format!("{base} v4 routes (have {})", v4()), || (v4() == base).then_some(()));
    let (st, _, _, text) = sw.stop();
    assert!(st.success(), "{text}");
}
