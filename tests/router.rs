//! The router end to end: QEMU guests in two subnets with pmdswitch as their gateway,
//! kernel stacks behind tap ports in network namespaces (ICMP as Linux reads it), the
//! generator through the router with routes changing under traffic.

mod common;

use std::time::Duration;

use common::*;
use pmdswitch::bed::vm::{build_once, tcp_receiver_cmd, tcp_sender_cmd, Guest, GuestOpts, Transfer};

/// Both guests: a's subnet 198.18.1.0/24 on port a, b's 198.18.2.0/24 on port b.
fn router_args<'a>(s: &Scratch, sa: &'a str, sb: &'a str) -> Vec<String> {
    let ctl = s.path("ctl").display().to_string();
    [
        "--ctl",
        &ctl,
        "--port",
        &format!("a=vhost-server:{sa}"),
        "--port",
        &format!("b=vhost-server:{sb}"),
        "--ip",
        "a=198.18.1.254/24",
        "--ip",
        "b=198.18.2.254/24",
        "--cores",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Two QEMU guests (kernel virtio-net) in 198.18.1.0/24 and 198.18.2.0/24 with pmdswitch as
/// their default gateway: pings across and to the router, and an 8 MiB TCP transfer whose
/// every byte is checked.
#[test]
fn guests_in_two_subnets_ping_and_move_tcp_through_the_router() {
    require_bed();
    build_once();
    let s = Scratch::new("rtvm");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let args = router_args(&s, &sa, &sb);
    let pm = Pmds::start(&s, &args.iter().map(String::as_str).collect::<Vec<_>>());
    const MB: u32 = 8;
    let rcmd = tcp_receiver_cmd();
    let o = |cmd, gw| GuestOpts { server: false, cmd: Some(cmd), timeout: 240, no_offloads: false, gw: Some(gw), ..Default::default() };
    let mut b = Guest::boot(&s, "b", &sb, "198.18.2.1/24", &o(&rcmd, "198.18.2.254"));
    let scmd = format!("ping -c 3 -W 3 198.18.2.1 && ping -c 2 198.18.1.254 && {}", tcp_sender_cmd("198.18.2.1", MB));
    let mut a = Guest::boot(&s, "a", &sa, "198.18.1.1/24", &o(&scmd, "198.18.1.254"));
    let rc_a = a.result(Duration::from_secs(240));
    let rc_b = b.result(Duration::from_secs(60));
    let (neigh, _, _) = ctl(&s.path("ctl"), &["neigh", "show", "--json"]);
    let _ = neigh;
    let (st, _, j, text) = pm.stop();
    let console = a.console();
    assert_eq!(rc_a, Some(0), "guest a: ping or send failed:\n{console}\n{text}");
    assert!(console.contains("3 packets received") && console.contains("2 packets received"), "{console}");
    assert_eq!(rc_b, Some(0), "receiver failed:\n{}", b.console());
    let t = Transfer::of(&b).expect("the receiver's report");
    assert!(t.intact(MB), "{t:?}");
    assert!(st.success(), "{text}");
    // Both neighbours were resolved, and the router answered the ping to its address.
    let r = &j["router"];
    assert!(r["resolved"].as_u64().unwrap_or(0) >= 2, "{r}");
    assert!(r["echo_replies"].as_u64().unwrap_or(0) >= 2, "{r}");
    assert_no_leak(&j);
    eprintln!("routed guest TCP: {MB} MiB in {:.2} s, {:.0} Mbit/s", t.secs, t.mbps);
}

/// Two namespaces behind tap ports, in two subnets (and IPv6 ones), pmdswitch between
/// them as the router; `extra` adds arguments. The namespaces go on drop.
struct Routed {
    ns: [String; 2],
}

impl Routed {
    fn setup(t: &[String; 2]) -> Routed {
        let ns = [format!("pmds-{}-0", t[0]), format!("pmds-{}-1", t[1])];
        let (t0, t1, n0, n1) = (&t[0], &t[1], &ns[0], &ns[1]);
        assert!(sh(&format!(
            "ip netns add {n0} && ip netns add {n1} && ip link set {t0} netns {n0} && ip link set {t1} netns {n1} && \
             ip -n {n0} addr add 198.18.1.1/24 dev {t0} && ip -n {n1} addr add 198.18.2.1/24 dev {t1} && \
             ip -n {n0} addr add 2001:db8:1::1/64 dev {t0} nodad && ip -n {n1} addr add 2001:db8:2::1/64 dev {t1} nodad && \
             ip -n {n0} link set {t0} up && ip -n {n1} link set {t1} up && \
             ip -n {n0} route add default via 198.18.1.254 && ip -n {n1} route add default via 198.18.2.254 && \
             ip -n {n0} -6 route add default via 2001:db8:1::fe && ip -n {n1} -6 route add default via 2001:db8:2::fe"
        )));
        Routed { ns }
    }

    /// `ping ARGS` from the first namespace: (success, output).
    fn ping(&self, args: &str) -> (bool, String) {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ip netns exec {} ping {args} 2>&1", self.ns[0]))
            .output()
            .expect("ping");
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        sh(&format!("ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null", self.ns[0], self.ns[1]));
    }
}

/// Network namespaces behind tap ports: IPv4 and IPv6 across; TTL 1 → time exceeded from the
/// router; DF and too big → fragmentation needed with the MTU; DF clear → fragmented and
/// answered; no route → net unreachable; an unreachable route → host unreachable; a gateway
/// that never answers → `neigh_failed`; the counters in Prometheus.
#[test]
fn kernel_hosts_see_forwarding_and_every_icmp_message() {
    require_bed();
    let s = Scratch::new("rticmp");
    let t = TapHosts::names("ri");
    let metrics = free_port().to_string();
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vdev:net_tap0,iface={}", t[0]),
            "--port",
            &format!("b=vdev:net_tap1,iface={}", t[1]),
            "--ip",
            "a=198.18.1.254/24",
            "--ip",
            "b=198.18.2.254/24",
            "--ip",
            "a=2001:db8:1::fe/64",
            "--ip",
            "b=2001:db8:2::fe/64",
            "--mtu",
            "b=1000",
            "--route",
            "198.19.0.0/16=via:198.18.2.77",
            "--route",
            "198.20.0.0/16=unreachable",
            "--cores",
            "1",
            "--ctl",
            &s.path("ctl").display().to_string(),
            "--prometheus",
            &metrics,
        ],
    );
    let h = Routed::setup(&t);
    let (ok, out) = h.ping("-c 3 -i 0.2 -W 2 198.18.2.1");
    assert!(ok, "IPv4 across the router:\n{out}\n{}", pm.out.text());
    let (ok, out) = h.ping("-6 -c 3 -i 0.2 -W 2 2001:db8:2::1");
    assert!(ok, "IPv6 across the router:\n{out}");
    let (ok, out) = h.ping("-c 2 -i 0.2 -W 2 198.18.1.254");
    assert!(ok, "the router's own address:\n{out}");
    // TTL 1: time exceeded from the router's address on that link.
    let (_, out) = h.ping("-c 1 -t 1 -W 2 198.18.2.1");
    assert!(out.contains("From 198.18.1.254") && out.contains("Time to live exceeded"), "{out}");
    // DF clear: fragmented by the router, and the reply comes back (first: after a
    // frag-needed below, the kernel would fragment by itself to the MTU it learnt).
    let (ok, out) = h.ping("-c 1 -M dont -s 1200 -W 2 198.18.2.1");
    assert!(ok, "fragmented ping:\n{out}");
    // DF and larger than b's MTU: fragmentation needed, with the MTU.
    let (_, out) = h.ping("-c 1 -M do -s 1200 -W 2 198.18.2.1");
    assert!(out.contains("Frag needed") && out.contains("mtu = 1000"), "{out}");
    // No route, and an unreachable route.
    let (_, out) = h.ping("-c 1 -W 2 203.0.113.1");
    assert!(out.contains("Destination Net Unreachable"), "{out}");
    let (_, out) = h.ping("-c 1 -W 2 198.20.0.1");
    assert!(out.contains("Destination Host Unreachable"), "{out}");
    // A gateway that never answers: the packets wait, then are dropped and counted.
    let (ok, _) = h.ping("-c 3 -i 0.2 -W 1 198.19.0.1");
    assert!(!ok);
    // The neighbour's resolution gives up after its tries (then the held packets drop).
    let router = wait_until(
        Duration::from_secs(20),
        || "the unanswered neighbour to fail".into(),
        || {
            let (_, router, _) = ctl(&s.path("ctl"), &["show", "router", "--json"]);
            let r: serde_json::Value = serde_json::from_str(&router).ok()?;
            (r["drops"]["neigh_failed"].as_u64().unwrap_or(0) >= 1).then_some(router)
        },
    );
    let prom = http_get(&format!("127.0.0.1:{metrics}"), "/metrics");
    assert!(prom.contains("pmdswitch_router_icmp_errors_total{type=\"time_exceeded\"} 1"), "{prom}");
    assert!(prom.contains("pmdswitch_router_neighbours "), "{prom}");
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    let r: serde_json::Value = serde_json::from_str(&router).expect("show router --json");
    assert!(r["drops"]["neigh_failed"].as_u64().unwrap_or(0) >= 1, "{r}");
    assert!(r["fragments_sent"].as_u64().unwrap_or(0) >= 2, "{r}");
    for e in ["time_exceeded", "too_big", "net_unreachable", "host_unreachable"] {
        assert!(r["icmp_errors"][e].as_u64().unwrap_or(0) >= 1, "{e}: {r}");
    }
    assert!(port(&j, "a", "punted") >= 5, "{j}");
    assert_no_leak(&j);
}

/// The generator through two routed vhost ports while 12 000 route changes a second (more
/// specifics made and removed inside both streams' prefixes) land: no packet lost, none on the
/// wrong port.
#[test]
fn generator_through_the_router_with_routes_changing_loses_nothing() {
    require_bed();
    let s = Scratch::new("rtgen");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let mut args = router_args(&s, &sa, &sb);
    args.extend(["--route", "198.19.0.0/16=via:198.18.2.1", "--route", "198.20.0.0/16=via:198.18.1.1"].map(String::from));
    let pm = Pmds::start(&s, &args.iter().map(String::as_str).collect::<Vec<_>>());
    // Churn: more specific routes inside both streams' destinations, to the same
    // gateways, added and removed in turn (each load a FIB group made or folded back
    // under live lookups).
    // 512 distinct prefixes, /25 to /28, inside both streams' /16s (small loads: each
    // holds the main thread, which shares the generator's core, for a millisecond).
    let mut cleaned = String::new();
    for i in 0..256u32 {
        let (third, len) = (i / 4, 25 + i % 4);
        let fourth = (i % 4) * 16;
        let m = |x: u32| x & !(u32::MAX >> len) & 0xff;
        cleaned.push_str(&format!("198.19.{third}.{}/{len} via:198.18.2.1\n", m(fourth)));
        cleaned.push_str(&format!("198.20.{third}.{}/{len} via:198.18.1.1\n", m(fourth)));
    }
    let churn = s.path("churn.txt");
    std::fs::write(&churn, cleaned).unwrap();
    let (ctl_path, churn_path) = (s.path("ctl"), churn.clone());
    let lines = std::fs::read_to_string(&churn_path).unwrap().lines().count();
    let round = move || {
        let (_, a, _) = ctl(&ctl_path, &["route", "load", churn_path.to_str().unwrap()]);
        let (_, d, _) = ctl(&ctl_path, &["route", "load", churn_path.to_str().unwrap(), "del"]);
        assert!(a.starts_with("ok") && d.starts_with("ok"), "{a}{d}");
        2 * lines
    };
    let ((g, out), changes, rate) = churn_while(12_000.0, round, || gen_through_router(&s, &sa, &sb));
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert!(changes >= 4 * lines, "the churn made only {changes} route changes while the generator ran");
    assert_nothing_lost_or_misrouted(&g, &out, &j);
    // The generator's counts are the switch's, give or take its ARP exchanges.
    for (p, q) in [("a", "b"), ("b", "a")] {
        let sent = g["ports"][p]["tx_packets"].as_u64().unwrap();
        assert!(port(&j, p, "rx_packets") >= sent && port(&j, p, "rx_packets") - sent < 10, "{j}");
        let got = g["ports"][q]["rx_packets"].as_u64().unwrap();
        assert!(port(&j, q, "tx_packets") >= got, "{j}");
    }
    eprintln!("route churn under traffic: {rate:.0} changes/s, nothing lost or misrouted");
    assert_no_leak(&j);
}
