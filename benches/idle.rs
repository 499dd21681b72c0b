//! Adaptive idle figures, interleaved against pure polling in the same run:
//!
//! 1. CPU time of an idle worker (vhost ports, peers connected but quiet);
//! 2. extra latency of the first packet after a sleep: ping through two net_tap ports in
//!    namespaces, one echo every 10 ms (so the worker is asleep when each arrives), p50
//!    and p99 of the round trip, adaptive minus poll. (The generator, `pmdswitch gen`,
//!    will measure this on vhost ports with TSC timestamps once it exists.)
//!
//! Throughput under load is measured by the xconnect bench:
//! `cargo bench --bench xconnect -- --duts pmdswitch-adaptive,pmdswitch`.
//!
//!   cargo bench --bench idle -- [--rounds N]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Percent of a core an idle worker uses over 5 s, with quiet virtio-user peers attached.
fn idle_cpu(mode: &str, n: usize) -> f64 {
    let s = Scratch::new(&format!("bidle-{mode}-{n}"));
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            &format!("b=vhost-server:{sb}"),
            "--xconnect",
            "a,b",
            "--cores",
            "1",
            "--idle",
            mode,
        ],
    );
    let g = Testpmd::start(&s.prefix("g"), &[format!("net_virtio_user0,path={sa}"), format!("net_virtio_user1,path={sb}")], "io", 0, &[]);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_secs(1));
    let load = pm.worker_load(1, 5);
    g.quit();
    let _ = pm.stop();
    load * 100.0
}

/// Round-trip times (µs) of pings through a sleeping (or polling) worker.
fn ping_rtts(mode: &str, n: usize) -> Vec<f64> {
    let s = Scratch::new(&format!("blat-{mode}-{n}"));
    let t = TapHosts::names(&format!("b{}", &mode[..1]));
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
            "--idle",
            mode,
        ],
    );
    let hosts = TapHosts::setup(&t);
    assert!(hosts.ok, "namespace setup failed");
    let _ = hosts.ping(3, 0.2); // ARP and warm-up
    let o = Command::new("ip").args(["netns", "exec", &hosts.ns[0], "ping", "-c", "300", "-i", "0.01", "198.18.0.2"]).output().unwrap();
    let _ = pm.stop();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    require_bed();
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.iter().position(|a| a == "--rounds").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(2);
    println!("adaptive idle vs poll, {rounds} interleaved rounds");
    println!("{:>5} {:>10} {:>16} {:>16} {:>16} {:>16}", "round", "mode", "idle CPU %", "ping p50 µs", "ping p99 µs", "replies");
    let (mut extra50, mut extra99, mut cpu_a, mut cpu_p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in 0..rounds {
        let order = if n % 2 == 0 { ["adaptive", "poll"] } else { ["poll", "adaptive"] };
        let mut r = std::collections::HashMap::new();
        for mode in order {
            let cpu = idle_cpu(mode, n);
            let mut rtt = ping_rtts(mode, n);
            let (p50, p99) = (pct(&mut rtt, 0.5), pct(&mut rtt, 0.99));
            println!("{:>5} {:>10} {:>16.1} {:>16.0} {:>16.0} {:>16}", n + 1, mode, cpu, p50, p99, rtt.len());
            r.insert(mode, (cpu, p50, p99));
        }
        cpu_a.push(r["adaptive"].0);
        cpu_p.push(r["poll"].0);
        extra50.push(r["adaptive"].1 - r["poll"].1);
        extra99.push(r["adaptive"].2 - r["poll"].2);
    }
    let med = |v: &mut Vec<f64>| pct(v, 0.5);
    println!(
        "median: idle CPU adaptive {:.1} % vs poll {:.1} %; extra ping latency adaptive-poll p50 {:+.0} µs, p99 {:+.0} µs",
        med(&mut cpu_a),
        med(&mut cpu_p),
        med(&mut extra50),
        med(&mut extra99)
    );
}
