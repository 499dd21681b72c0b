//! Cross-connect benchmark: DPDK DTS's virtio-user loopback plan, pmdswitch against
//! testpmd as the device under test (DUT), in interleaved rounds.
//!
//! The loop: one dpdk-testpmd with two virtio-user ports in io forwarding, seeded with
//! `start tx_first 4` (four bursts in flight, so the DUT rather than the loop's latency
//! is the limit), drives the DUT's two vhost-user sockets; the DUT forwards a<->b on
//! CPU 1; the generator runs on CPU 0. The loop rate is the generator's received packets
//! per second, the same meter for both DUTs.
//!
//! DUTs: `pmdswitch run` (rte_vhost used directly) and `dpdk-testpmd` io forwarding over
//! two `net_vhost` ports. This machine's speed jumps about 2x between runs, so the DUTs
//! alternate A B A B and the verdict is the median of per-round ratios.
//!
//! `--duts A,B` picks the devices compared (first is the reference of the ratio):
//! `pmdswitch` (default first), `testpmd` (default second), `pmdswitch-adaptive`
//! (`--idle adaptive`, to show what adaptive idle costs under load).
//!
//!   cargo bench --bench xconnect -- [--duts A,B] [--rounds N] [--secs S] [--warmup S] [--json FILE]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

struct Opts {
    duts: [Dut; 2],
    rounds: usize,
    secs: f64,
    warmup: f64,
    json: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts { duts: [Dut::Pmdswitch, Dut::Testpmd], rounds: 10, secs: 5.0, warmup: 2.0, json: None };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--rounds" => {
                o.rounds = v.parse().expect("--rounds N");
                i += 1
            }
            "--secs" => {
                o.secs = v.parse().expect("--secs S");
                i += 1
            }
            "--warmup" => {
                o.warmup = v.parse().expect("--warmup S");
                i += 1
            }
            "--json" => {
                o.json = Some(v);
                i += 1
            }
            "--duts" => {
                let d: Vec<Dut> = v
                    .split(',')
                    .map(|n| Dut::parse(n).unwrap_or_else(|| panic!("--duts: unknown '{n}' (pmdswitch, testpmd, pmdswitch-adaptive)")))
                    .collect();
                assert!(d.len() == 2, "--duts takes two names");
                o.duts = [d[0], d[1]];
                i += 1
            }
            _ => {} // cargo bench adds --bench
        }
        i += 1;
    }
    o
}

#[derive(Clone, Copy, PartialEq)]
enum Dut {
    Pmdswitch,
    PmdswitchAdaptive,
    Testpmd,
}

impl Dut {
    fn name(self) -> &'static str {
        match self {
            Dut::Pmdswitch => "pmdswitch",
            Dut::PmdswitchAdaptive => "pmdswitch-adaptive",
            Dut::Testpmd => "testpmd",
        }
    }

    fn parse(s: &str) -> Option<Dut> {
        [Dut::Pmdswitch, Dut::PmdswitchAdaptive, Dut::Testpmd].into_iter().find(|d| d.name() == s)
    }
}

enum Running {
    Pmds(Switch),
    Testpmd(Testpmd),
}

fn start_dut(dut: Dut, s: &Scratch, sa: &str, sb: &str) -> Running {
    match dut {
        Dut::Pmdswitch | Dut::PmdswitchAdaptive => {
            let idle = if dut == Dut::Pmdswitch { "poll" } else { "adaptive" };
            Running::Pmds(Pmds::start(
                s,
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
                    idle,
                ],
            ))
        }
        Dut::Testpmd => {
            // Main lcore on CPU 0 (blocked on its prompt), the forwarding lcore on CPU 1.
            let eal = vec!["-l".into(), "0,1".into(), format!("--vdev=net_vhost0,iface={sa}"), format!("--vdev=net_vhost1,iface={sb}")];
            let mut t = Testpmd::spawn_on(&s.prefix("duttp"), None, &eal, &["--forward-mode=io".into()]);
            t.cmd("start");
            Running::Testpmd(t)
        }
    }
}

/// One measurement: loop Mpps as seen by the generator.
fn round(dut: Dut, o: &Opts, n: usize) -> f64 {
    let s = Scratch::new(&format!("bench-{}-{n}", dut.name()));
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = start_dut(dut, &s, &sa, &sb);
    let mut g =
        Testpmd::start(&s.prefix("gen"), &[format!("net_virtio_user0,path={sa}"), format!("net_virtio_user1,path={sb}")], "io", 0, &[]);
    g.cmd("start tx_first 4");
    std::thread::sleep(Duration::from_secs_f64(o.warmup));
    let t0 = Instant::now();
    let a = g.port_stats_now(2);
    std::thread::sleep(Duration::from_secs_f64(o.secs));
    let b = g.port_stats_now(2);
    let dt = t0.elapsed().as_secs_f64();
    let rx = |m: &std::collections::HashMap<u16, NicStats>| m.values().map(|v| v.rx).sum::<u64>();
    let mpps = (rx(&b) - rx(&a)) as f64 / dt / 1e6;
    g.quit();
    match d {
        Running::Pmds(p) => {
            let (st, _, j, text) = p.stop();
            assert!(st.success(), "pmdswitch failed:\n{text}");
            assert_no_leak(&j);
        }
        Running::Testpmd(t) => t.quit(),
    }
    mpps
}

/// The median (0 when there are no values).
fn median(v: Vec<f64>) -> f64 {
    pmdswitch::bed::median(v).unwrap_or(0.0)
}

fn main() {
    require_bed();
    let o = opts();
    println!(
        "xconnect loop (DTS virtio-user loopback), 64-byte frames, tx_first 4; {} rounds x {} s, warm-up {} s",
        o.rounds, o.secs, o.warmup
    );
    let [da, db] = o.duts;
    let (na, nb) = (format!("{} Mpps", da.name()), format!("{} Mpps", db.name()));
    println!("{:>6} {:>24} {:>24} {:>8}", "round", na, nb, "ratio");
    let (mut ps, mut ts, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..o.rounds {
        // Alternate which DUT goes first, so a slow phase of the host hits both.
        let order = if n % 2 == 0 { [da, db] } else { [db, da] };
        let mut p = 0.0;
        let mut t = 0.0;
        for dut in order {
            let r = round(dut, &o, n);
            if dut == da {
                p = r
            } else {
                t = r
            }
        }
        let ratio = if t > 0.0 { p / t } else { 0.0 };
        println!("{:>6} {:>24.3} {:>24.3} {:>8.3}", n + 1, p, t, ratio);
        ps.push(p);
        ts.push(t);
        rs.push(ratio);
    }
    let (mp, mt, mr) = (median(ps.clone()), median(ts.clone()), median(rs.clone()));
    println!("{:>6} {:>24.3} {:>24.3} {:>8.3}", "median", mp, mt, mr);
    println!("verdict: {}/{} = {mr:.3} (median of per-round ratios)", da.name(), db.name());
    if let Some(path) = o.json {
        let j = serde_json::json!({
            "bench": "xconnect", "frame": 64, "rounds": o.rounds, "secs": o.secs,
            "duts": [da.name(), db.name()],
            "a_mpps": ps, "b_mpps": ts, "ratios": rs,
            "median_a_mpps": mp, "median_b_mpps": mt, "median_ratio": mr,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&j).unwrap() + "\n").expect("write --json");
    }
}
