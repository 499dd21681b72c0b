//! The L2 bridge with real peers: `pmdswitch gen` stands where three VMs stand (one
//! virtio-user port per vhost-user socket). Unknown unicast floods to every other port,
//! then the learned station gets unicast only; VLAN access/trunk tagging shows in the
//! bytes that arrive; every drop is counted under its cause.

mod common;

use common::*;

/// Source MAC of the generator's port `i` (flow 0): see `gen::cmd::port_spec`.
fn gen_mac(i: u8) -> String {
    format!("02:00:00:{:02x}:00:00", i + 1)
}

/// pmdswitch with ports a, b, c (vhost-user servers) in bridge br0 on one worker, plus
/// `extra` arguments; returns it and the three socket paths.
fn start_three_port_bridge(s: &Scratch, extra: &[&str]) -> (Switch, [String; 3]) {
    let (sa, sb, sc) = (s.sock("a.sock"), s.sock("b.sock"), s.sock("c.sock"));
    let mut args = vec![
        "--port".to_string(),
        format!("a=vhost-server:{sa}"),
        "--port".into(),
        format!("b=vhost-server:{sb}"),
        "--port".into(),
        format!("c=vhost-server:{sc}"),
        "--bridge".into(),
        "br0=a,b,c".into(),
        "--cores".into(),
        "1".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Pmds::start(s, &args), [sa, sb, sc])
}

/// Three ports, the generator as three VMs: unknown unicast reaches both other ports and never
/// the ingress, the sending station shows in `show macs`, then a learned station gets unicast
/// only.
#[test]
fn bridge_floods_unknown_then_unicasts_learned() {
    require_bed();
    let s = Scratch::new("brflood");
    let ctl_sock = s.path("ctl");
    let (d, [sa, sb, sc]) = start_three_port_bridge(&s, &["--ctl", ctl_sock.to_str().unwrap()]);
    let ports = [("a", sa.as_str()), ("b", sb.as_str()), ("c", sc.as_str())];
    // 1. Only b sends, to c's MAC, which nobody has used yet: flooded to a and c.
    let (g, _) = gen_run(&s, &ports, &["--tx", "b", "--rate", "100kpps", "--duration", "1", "--warmup", "0"]);
    let tx = g["streams"]["b"]["tx"].as_u64().unwrap();
    assert!(tx > 50_000, "{g}");
    let rx = |g: &serde_json::Value, p: &str| g["ports"][p]["rx_packets"].as_u64().unwrap();
    assert_eq!(rx(&g, "a"), g["ports"]["b"]["tx_packets"].as_u64().unwrap(), "flood reached a: {g}");
    assert_eq!(rx(&g, "c"), g["ports"]["b"]["tx_packets"].as_u64().unwrap(), "flood reached c: {g}");
    assert_eq!(rx(&g, "b"), 0, "never back out of the ingress port: {g}");
    assert_eq!(g["streams"]["b"]["duplicates"].as_u64(), Some(tx), "each packet arrived twice: {g}");
    // b's station was learned on port b.
    let (code, out, err) = ctl(&ctl_sock, &["show", "macs", "br0", "--json"]);
    assert_eq!(code, 0, "{err}");
    let macs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e = macs["entries"].as_array().unwrap();
    assert!(e.iter().any(|x| x["mac"] == gen_mac(1).as_str() && x["port"] == "b"), "{out}");

    // 2. Only a sends, to b's (learned) MAC: unicast to b, nothing to c.
    let (g, _) = gen_run(&s, &ports, &["--tx", "a", "--rate", "100kpps", "--duration", "1", "--warmup", "0"]);
    let sent = g["ports"]["a"]["tx_packets"].as_u64().unwrap();
    assert_eq!(rx(&g, "b"), sent, "{g}");
    assert_eq!(rx(&g, "c"), 0, "a learned station is not flooded: {g}");
    assert_eq!(g["streams"]["a"]["lost"].as_u64(), Some(0));
    assert_eq!(g["streams"]["a"]["duplicates"].as_u64(), Some(0));

    let (code, out, _) = ctl(&ctl_sock, &["show", "bridges"]);
    assert_eq!(code, 0);
    assert!(out.contains("bridge br0") && out.contains("learned"), "{out}");
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
    for p in ["a", "b", "c"] {
        assert_eq!(drops(&j, p), 0, "{j}");
    }
    assert!(j["bridges"]["br0"]["mac_table"]["learned"].as_u64().unwrap() >= 2, "{j}");
    // Byte counters agree with packet counters (every frame here has one size) on the
    // flooded path (copies to a and c) and on the unicast one (whole bursts to b, sent
    // from the rx batch with its byte count).
    let size = port(&j, "a", "rx_bytes") / port(&j, "a", "rx_packets");
    assert_eq!(port(&j, "a", "rx_bytes"), port(&j, "a", "rx_packets") * size, "{j}");
    for p in ["a", "b", "c"] {
        assert!(port(&j, p, "tx_packets") > 50_000, "{j}");
        assert_eq!(port(&j, p, "tx_bytes"), port(&j, p, "tx_packets") * size, "port {p}: {j}");
    }
}

/// Bursts that mix decisions: a sends four flows in turn, two to stations learned on b
/// (unicast) and two to unknown stations (flooded to b and c), so every burst
/// alternates between the two and the forwarder applies runs of one packet. Every
/// packet must reach exactly the ports its decision names, in order — b every packet,
/// c exactly the flooded half — or be counted as refused by a full ring; none leaked.
#[test]
fn bridge_mixed_decisions_in_one_burst() {
    require_bed();
    let s = Scratch::new("brmix");
    let (d, [sa, sb, sc]) = start_three_port_bridge(&s, &[]);
    let ports = [("a", sa.as_str()), ("b", sb.as_str()), ("c", sc.as_str())];
    // b announces its first two stations (flows 0 and 1 use source MACs 0 and 1).
    let (g0, _) =
        gen_run(&s, &ports, &["--tx", "b", "--flows", "2", "--macs", "2", "--count", "1000", "--rate", "100kpps", "--warmup", "0"]);
    let b_tx = g0["ports"]["b"]["tx_packets"].as_u64().unwrap();
    // a sends to b's stations 0..3: 0 and 1 are known, 2 and 3 are not.
    let n = 40_000u64;
    let (g, _) =
        gen_run(&s, &ports, &["--tx", "a", "--flows", "4", "--macs", "4", "--count", &n.to_string(), "--rate", "200kpps", "--warmup", "0"]);
    let rx = |p: &str| g["ports"][p]["rx_packets"].as_u64().unwrap();
    assert_eq!(g["ports"]["a"]["tx_packets"].as_u64(), Some(n), "{g}");
    let (code, _, j, text) = d.stop();
    assert!(code.success(), "{text}");
    // Every packet reached each port its decision names, or is counted as refused there
    // (`tx_full`: a generator ring full when the host deschedules it, e.g. with other
    // tests running alongside); nothing else is dropped.
    let full = |p: &str| j["ports"][p]["drops"]["tx_full"].as_u64().unwrap();
    assert_eq!(rx("b") + full("b"), n, "b gets every packet, unicast or flooded: {g} {j}");
    assert_eq!(rx("c") + full("c"), n / 2, "c gets exactly the unknown stations' half: {g} {j}");
    assert_eq!(rx("a"), 0, "never back out of the ingress port: {g}");
    assert_eq!(g["streams"]["a"]["reordered"].as_u64(), Some(0), "{g}");
    assert_eq!(port(&j, "a", "rx_packets"), n);
    assert_eq!(port(&j, "b", "tx_packets"), rx("b"));
    assert_eq!(port(&j, "c", "tx_packets"), rx("c") + b_tx);
    for p in ["a", "b", "c"] {
        assert_eq!(drops(&j, p), full(p), "{j}");
    }
    assert_no_leak(&j);
}

/// Access 10 / access 20 / trunk 10,20: VLAN 20 sees nothing of VLAN 10's flood, the trunk
/// receives every frame 4 bytes longer (tagged), and untagged frames on the trunk are dropped,
/// counted as `untagged_on_trunk`.
#[test]
fn bridge_vlans_tag_untag_and_filter() {
    require_bed();
    let s = Scratch::new("brvlan");
    let (d, [sa, sb, sc]) = start_three_port_bridge(&s, &["--vlan", "a=access:10", "--vlan", "b=access:20", "--vlan", "c=trunk:10,20"]);
    let ports = [("a", sa.as_str()), ("b", sb.as_str()), ("c", sc.as_str())];
    // a (VLAN 10) sends to an unknown MAC: b is in VLAN 20 (filtered), c carries 10 tagged.
    let (g, _) = gen_run(&s, &ports, &["--tx", "a", "--rate", "100kpps", "--duration", "1", "--warmup", "0", "--frame", "128"]);
    let (tx, tx_bytes) = (g["ports"]["a"]["tx_packets"].as_u64().unwrap(), g["ports"]["a"]["tx_bytes"].as_u64().unwrap());
    assert_eq!(g["ports"]["b"]["rx_packets"].as_u64(), Some(0), "VLAN 20 port saw VLAN 10: {g}");
    assert_eq!(g["ports"]["c"]["rx_packets"].as_u64(), Some(tx), "{g}");
    // Each frame gained an 802.1Q tag on the trunk.
    assert_eq!(g["ports"]["c"]["rx_bytes"].as_u64(), Some(tx_bytes + 4 * tx), "{g}");
    assert_eq!(g["streams"]["a"]["lost"].as_u64(), Some(0), "tagged frames are still ours: {g}");
    // c sends untagged frames on a trunk without a native VLAN: dropped, counted.
    let (g2, _) = gen_run(&s, &ports, &["--tx", "c", "--rate", "100kpps", "--duration", "0.5", "--warmup", "0"]);
    let c_tx = g2["ports"]["c"]["tx_packets"].as_u64().unwrap();
    assert_eq!(g2["ports"]["a"]["rx_packets"].as_u64(), Some(0));
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_eq!(j["ports"]["c"]["drops"]["untagged_on_trunk"].as_u64(), Some(c_tx), "{j}");
    assert_eq!(port(&j, "c", "rx_packets"), tx_packets_sum(&[&g, &g2], "c"));
    assert_eq!(port(&j, "a", "rx_packets"), tx);
    // The flood to b was filtered by VLAN, not sent and not counted as a drop on b.
    assert_eq!(port(&j, "b", "tx_packets"), 0);
    assert_no_leak(&j);
}

fn tx_packets_sum(gs: &[&serde_json::Value], p: &str) -> u64 {
    gs.iter().map(|g| g["ports"][p]["tx_packets"].as_u64().unwrap()).sum()
}

/// virtio-user `queues=2` (testpmd as a two-queue guest): both rx queues carry traffic and sum
/// to the port's count.
#[test]
fn multiqueue_vhost_uses_both_queues_and_counts_add_up() {
    require_bed();
    let s = Scratch::new("mq");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            &format!("b=vhost-server:{sb}"),
            "--xconnect",
            "a,b",
            "--queues",
            "a=2",
            "--queues",
            "b=2",
            "--cores",
            "1",
        ],
    );
    // testpmd as a two-queue guest: virtio-user queues=2, two rx/tx queues per port, txonly
    // on every queue.
    let mut t = Testpmd::start(
        &s.prefix("mqpeer"),
        &[format!("net_virtio_user0,path={sa},queues=2"), format!("net_virtio_user1,path={sb},queues=2")],
        "txonly",
        0,
        &["--rxq=2", "--txq=2", "--txpkts=64"],
    );
    t.cmd("start");
    wait_every_rxq(&dut_ctl(&s), &["a", "b"], 1000);
    let peer = t.finish();
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
    for p in ["a", "b"] {
        let q = j["ports"][p]["rxqs"].as_array().unwrap();
        assert_eq!(q.len(), 2, "{j}");
        let per: Vec<u64> = q.iter().map(|x| x["packets"].as_u64().unwrap()).collect();
        assert!(per.iter().all(|&n| n > 1000), "port {p}: both queues carry traffic: {per:?}");
        assert_eq!(per.iter().sum::<u64>(), port(&j, p, "rx_packets"), "rx queues add up to the port: {j}");
    }
    // Conservation: what a received went out of b or is counted as dropped on b, and the
    // peer saw what b sent (and vice versa).
    assert_eq!(port(&j, "a", "rx_packets"), port(&j, "b", "tx_packets") + drops(&j, "b"));
    assert_eq!(port(&j, "b", "rx_packets"), port(&j, "a", "tx_packets") + drops(&j, "a"));
    // txonly never polls its rx rings: once they are full the switch counts tx_full.
    assert_eq!(peer[&0].tx, port(&j, "a", "rx_packets"), "{peer:?}");
    assert_eq!(peer[&1].tx, port(&j, "b", "rx_packets"), "{peer:?}");
}

/// Two workers, two queues per port, one queue pinned by `--rxq-affinity`: the affinity is
/// honoured, `ctl rebalance` under traffic keeps the pinned queue, both workers forward, and
/// the counts add up.
#[test]
fn two_workers_two_queues_each() {
    require_bed();
    let s = Scratch::new("mq2w");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let ctl_sock = s.path("ctl");
    // Two CPUs: one worker shares the main core (functional, not a speed test).
    let d = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            &format!("b=vhost-server:{sb}"),
            "--xconnect",
            "a,b",
            "--queues",
            "a=2",
            "--queues",
            "b=2",
            "--cores",
            "0,1",
            "--share-main-core",
            "--rxq-affinity",
            "a:1=0",
            "--ctl",
            ctl_sock.to_str().unwrap(),
        ],
    );
    let mut t = Testpmd::start(
        &s.prefix("mq2peer"),
        &[format!("net_virtio_user0,path={sa},queues=2"), format!("net_virtio_user1,path={sb},queues=2")],
        "txonly",
        0,
        &["--rxq=2", "--txq=2", "--txpkts=64"],
    );
    t.cmd("start");
    wait_every_rxq(&ctl_sock, &["a", "b"], 1000);
    let (_, before, _) = ctl(&ctl_sock, &["show", "rxqs", "--json"]);
    // At start: the pinned queue on core 0, its sibling on the other worker.
    let b: serde_json::Value = serde_json::from_str(&before).unwrap();
    let core_of = |v: &serde_json::Value, p: &str, q: u64| {
        v["rxqs"].as_array().unwrap().iter().find(|x| x["port"] == p && x["queue"] == q).map(|x| x["core"].as_u64())
    };
    assert_eq!(core_of(&b, "a", 1), Some(Some(0)), "{before}");
    assert_eq!(core_of(&b, "a", 0), Some(Some(1)), "{before}");
    // Reassign by measured cycles under traffic (the pinned queue stays where it is).
    let (code, out, err) = ctl(&ctl_sock, &["rebalance"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok:") && out.contains("a:1=core 0"), "{out}");
    // Traffic goes on after the moves.
    wait_more(&ctl_sock, "a", "rx_packets", 100_000);
    let (_, after, _) = ctl(&ctl_sock, &["show", "rxqs", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(v["rxqs"].as_array().unwrap().len(), 4, "{before}\n{after}");
    let peer = t.finish();
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
    let ws = j["workers"].as_array().unwrap();
    assert_eq!(ws.len(), 2, "{j}");
    assert!(ws.iter().all(|w| w["packets"].as_u64().unwrap() > 1000), "both workers forward: {j}");
    let qa = j["ports"]["a"]["rxqs"].as_array().unwrap();
    // The pinned queue stayed on core 0 through the rebalance.
    assert_eq!(qa[1]["core"].as_u64(), Some(0), "{j}");
    for p in ["a", "b"] {
        let sum: u64 = j["ports"][p]["rxqs"].as_array().unwrap().iter().map(|q| q["packets"].as_u64().unwrap()).sum();
        assert_eq!(sum, port(&j, p, "rx_packets"));
    }
    assert_eq!(port(&j, "a", "rx_packets"), port(&j, "b", "tx_packets") + drops(&j, "b"));
    assert_eq!(peer[&1].tx, port(&j, "b", "rx_packets"), "{peer:?}");
}
