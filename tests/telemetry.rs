//! `/pmdswitch/...` commands read with Debian's dpdk-telemetry.py over the EAL's
//! telemetry socket, while traffic flows.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn telemetry(prefix: &str, cmds: &[&str]) -> Vec<serde_json::Value> {
    let mut c = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-telemetry.py (package dpdk-dev)");
    let mut input = c.stdin.take().unwrap();
    for cmd in cmds {
        writeln!(input, "{cmd}").unwrap();
    }
    drop(input);
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok())).collect()
}

/// `dpdk-telemetry.py` and the Prometheus endpoint against a forwarding pmdswitch: the
/// `/pmdswitch/...` commands answer ports, workers and drops, and /metrics carries the same
/// counters.
#[test]
fn dpdk_telemetry_reads_ports_workers_and_drops() {
    require_bed();
    let s = Scratch::new("tel");
    let sa = s.sock("a.sock");
    let metrics = free_port().to_string();
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            "b=vdev:net_null0,no-rx=1",
            "--xconnect",
            "a,b",
            "--cores",
            "1",
            "--prometheus",
            &metrics,
        ],
    );
    let mut g = Testpmd::start(&s.prefix("g"), &[format!("net_virtio_user0,path={sa}")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(10)));
    g.cmd("start");
    wait_more(&dut_ctl(&s), "a", "rx_packets", 10_000);
    let r = telemetry(
        &s.prefix("dut"),
        &[
            "/pmdswitch/ports",
            "/pmdswitch/port,a",
            "/pmdswitch/workers",
            "/pmdswitch/worker,1",
            "/pmdswitch/drops",
            "/pmdswitch/port,nosuch",
        ],
    );
    let prom = http_get(&format!("127.0.0.1:{metrics}"), "/metrics");
    let _ = g.finish();
    let (st, _, _, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert_eq!(r.len(), 6, "{r:?}");
    assert_eq!(r[0]["/pmdswitch/ports"], serde_json::json!(["a", "b"]));
    let a = &r[1]["/pmdswitch/port"];
    assert_eq!(a["kind"], "vhost-server");
    assert!(a["rx_packets"].as_u64().unwrap() > 1000, "{a}");
    assert_eq!(a["connected"], 1);
    assert_eq!(r[2]["/pmdswitch/workers"], serde_json::json!([1]));
    assert!(r[3]["/pmdswitch/worker"]["packets"].as_u64().unwrap() > 1000);
    assert_eq!(r[4]["/pmdswitch/drops"]["b/tx_full"], 0);
    assert!(r[5]["/pmdswitch/port"].is_null(), "unknown port answers null");

    // Prometheus text exposition on the same counters.
    assert!(prom.starts_with("HTTP/1.1 200 OK"), "{prom}");
    assert!(prom.contains("# TYPE pmdswitch_port_rx_packets_total counter"), "{prom}");
    let rx: u64 = prom
        .lines()
        .find(|l| l.starts_with("pmdswitch_port_rx_packets_total{port=\"a\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("rx counter of port a");
    assert!(rx > 1000, "{prom}");
    assert!(prom.contains("pmdswitch_port_drops_total{port=\"b\",cause=\"tx_full\"} 0"), "{prom}");
    assert!(prom.contains("pmdswitch_worker_packets_total{core=\"1\"}"), "{prom}");
}

/// `ctl` against a forwarding switch: `show` reports the counters, `clear stats` sets a
/// baseline (the live counters are never zeroed), `set idle adaptive` makes the worker sleep,
/// and an unknown command is one line.
#[test]
fn ctl_shows_clears_and_sets_idle_mode() {
    require_bed();
    let s = Scratch::new("ctl");
    let sa = s.sock("a.sock");
    let sock = s.path("pmds.ctl");
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            "b=vdev:net_null0,no-rx=1",
            "--xconnect",
            "a,b",
            "--cores",
            "1",
            "--ctl",
            sock.to_str().unwrap(),
        ],
    );
    let md = std::fs::metadata(&sock).expect("control socket");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777, 0o600);
    let mut g = Testpmd::start(&s.prefix("g"), &[format!("net_virtio_user0,path={sa}")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(10)));
    g.cmd("start");
    wait_counter(&sock, "a", "rx_packets", Duration::from_secs(30), |v| v >= 50_000);
    let sent = g.finish()[&0].tx;
    wait_counter(&sock, "a", "rx_packets", Duration::from_secs(10), |v| v >= sent);

    let (code, out, err) = ctl(&sock, &["show", "ports", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ports"]["a"]["rx_packets"].as_u64(), Some(sent), "{v}");
    let (code, out, _) = ctl(&sock, &["show", "stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("vhost-server") && out.contains("worker core 1"), "{out}");

    // clear stats: a baseline; with no traffic since, everything shows zero.
    let (code, out, _) = ctl(&sock, &["clear", "stats"]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = ctl(&sock, &["show", "ports", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ports"]["a"]["rx_packets"].as_u64(), Some(0), "{v}");

    // set idle adaptive: the worker takes it up at its reload point and starts sleeping.
    let (code, out, _) = ctl(&sock, &["set", "idle", "adaptive"]);
    assert_eq!((code, out.trim()), (0, "ok: idle adaptive"));
    // The worker shows the mode once it took it up at its reload point, and sleeps.
    let t0 = std::time::Instant::now();
    let v = loop {
        let (_, out, _) = ctl(&sock, &["show", "workers", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let slept = v["workers"][0]["sleeps"].as_u64().unwrap_or(0) > 0;
        if (v["workers"][0]["idle_mode"] == "adaptive" && slept) || t0.elapsed() > Duration::from_secs(10) {
            break v;
        }
    };
    assert_eq!(v["workers"][0]["idle_mode"], "adaptive", "{v}");
    assert!(v["workers"][0]["sleeps"].as_u64().unwrap() > 0, "{v}");

    let (code, _, err) = ctl(&sock, &["frobnicate"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown command"), "{err}");

    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    // The live counters were never zeroed.
    assert_eq!(port(&j, "a", "rx_packets"), sent, "{j}");
    assert!(!sock.exists(), "control socket removed at exit");
}
