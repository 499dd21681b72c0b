//! The generator's own figures, against testpmd in the same run.
//!
//! 1. Tx-only: `pmdswitch gen --tx a` into `net_null` against `dpdk-testpmd
//!    --forward-mode=txonly` into `net_null`, both on CPU 1 with 64-byte frames,
//!    interleaved A B / B A, medians of per-round ratios. net_null frees what it is given,
//!    so the sender's own cost per packet is what is measured.
//! 2. NDR repeatability: `pmdswitch run` (xconnect) as the device, two `gen --search`
//!    runs back to back per round; the spread |a-b|/max(a,b) of each pair.
//!
//!   cargo bench --bench gen -- [--rounds N] [--secs S] [--trial-secs S] [--skip-ndr] [--json FILE]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

struct Opts {
    rounds: usize,
    secs: f64,
    trial_secs: f64,
    ndr: bool,
    json: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts { rounds: 5, secs: 4.0, trial_secs: 2.0, ndr: true, json: None };
    let a: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < a.len() {
        let v = a.get(i + 1).cloned().unwrap_or_default();
        match a[i].as_str() {
            "--rounds" => {
                o.rounds = v.parse().expect("--rounds N");
                i += 1
            }
            "--secs" => {
                o.secs = v.parse().expect("--secs S");
                i += 1
            }
            "--trial-secs" => {
                o.trial_secs = v.parse().expect("--trial-secs S");
                i += 1
            }
            "--json" => {
                o.json = Some(v);
                i += 1
            }
            "--skip-ndr" => o.ndr = false,
            _ => {}
        }
        i += 1;
    }
    o
}

/// The median (0 when there are no values).
fn median(v: Vec<f64>) -> f64 {
    pmdswitch::bed::median(v).unwrap_or(0.0)
}

/// Mpps of `pmdswitch gen` sending 64-byte frames into net_null on CPU 1.
fn gen_txonly(s: &Scratch, secs: f64) -> f64 {
    let json = s.path("txonly.json");
    let o = Command::new(bin())
        .args([
            "gen",
            "--port",
            "a=vdev:net_null0,no-rx=1",
            "--core",
            "1",
            "--quiet",
            "--warmup",
            "1",
            "--duration",
            &secs.to_string(),
            "--json",
        ])
        .arg(&json)
        .args(["--", "-l", "0", &format!("--file-prefix={}", s.prefix("gtx"))])
        .stdin(Stdio::null())
        .output()
        .expect("gen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    v["streams"]["a"]["tx_pps"].as_f64().unwrap() / 1e6
}

/// Mpps of testpmd txonly into net_null, forwarding lcore on CPU 1 (its own Tx-pps over
/// the last stats period).
fn testpmd_txonly(s: &Scratch, secs: f64) -> f64 {
    let eal = vec!["-l".into(), "0,1".into(), "--vdev=net_null0,no-rx=1".into()];
    let mut t = Testpmd::spawn_on(&s.prefix("ttx"), None, &eal, &["--forward-mode=txonly".into(), "--txpkts=64".into()]);
    t.cmd("start");
    std::thread::sleep(Duration::from_secs(1));
    let a = t.port_stats_now(1);
    let t0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let b = t.port_stats_now(1);
    let dt = t0.elapsed().as_secs_f64();
    t.quit();
    (b[&0].tx - a[&0].tx) as f64 / dt / 1e6
}

/// One search: NDR (both directions, Mpps), whether the loop's capacity held during it,
/// and how many searches that took (`gen --search` repeats unstable ones).
fn ndr(s: &Scratch, sa: &str, sb: &str, trial: f64) -> (f64, bool, u64) {
    // Rings of 4096 descriptors, as `pmdswitch bench` uses: virtio-user's default 256
    // overflow whenever this shared host deschedules a core for a fraction of a ms, and
    // a zero-loss search then measures the scheduler.
    let (qa, qb) = (format!("{sa},queue_size=4096"), format!("{sb},queue_size=4096"));
    let (g, _) = gen_run(
        s,
        &[("a", &qa), ("b", &qb)],
        &["--search", "--duration", &trial.to_string(), "--warmup", "0.5", "--resolution-pct", "1", "--quiet"],
    );
    let x = &g["search"][0];
    (x["ndr_pps"].as_f64().unwrap() * 2.0 / 1e6, x["stable"].as_bool().unwrap(), x["attempts"].as_u64().unwrap())
}

fn main() {
    require_bed();
    let o = opts();
    let (mut gs, mut ts, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    println!("tx-only, 64 B into net_null on CPU 1: {} rounds x {} s", o.rounds, o.secs);
    println!("{:>6} {:>12} {:>12} {:>8}", "round", "gen Mpps", "testpmd", "ratio");
    for r in 0..o.rounds {
        let s = Scratch::new(&format!("btx{r}"));
        let (g, t) = if r % 2 == 0 {
            let g = gen_txonly(&s, o.secs);
            (g, testpmd_txonly(&s, o.secs))
        } else {
            let t = testpmd_txonly(&s, o.secs);
            (gen_txonly(&s, o.secs), t)
        };
        println!("{:>6} {:>12.3} {:>12.3} {:>8.3}", r + 1, g, t, g / t);
        gs.push(g);
        ts.push(t);
        rs.push(g / t);
    }
    let mr = median(rs.clone());
    println!("{:>6} {:>12.3} {:>12.3} {:>8.3}", "median", median(gs.clone()), median(ts.clone()), mr);
    println!("verdict: gen tx-only / testpmd txonly = {mr:.3} (median of per-round ratios)");

    let mut spreads = Vec::new();
    let mut pairs = Vec::new();
    let mut stability = Vec::new();
    if o.ndr {
        println!("NDR repeatability: pmdswitch xconnect, two searches back to back, {} s trials, 1 % resolution", o.trial_secs);
        for r in 0..o.rounds {
            let s = Scratch::new(&format!("bndr{r}"));
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
                    "--cores",
                    "1",
                ],
            );
            let ((a, sta, ata), (b, stb, atb)) = (ndr(&s, &sa, &sb, o.trial_secs), ndr(&s, &sa, &sb, o.trial_secs));
            let _ = d.stop();
            let spread = (a - b).abs() / a.max(b);
            let how = |st: bool, at: u64| format!("{at} search(es), {}", if st { "stable" } else { "UNSTABLE" });
            println!(
                "round {}: NDR {a:.3} ({}) then {b:.3} Mpps ({}): spread {:.1} %",
                r + 1,
                how(sta, ata),
                how(stb, atb),
                spread * 100.0
            );
            stability.push(((sta, ata), (stb, atb)));
            spreads.push(spread);
            pairs.push((a, b));
        }
        println!(
            "verdict: median NDR spread {:.1} % (max {:.1} %)",
            median(spreads.clone()) * 100.0,
            spreads.iter().cloned().fold(0.0, f64::max) * 100.0
        );
    }
    if let Some(path) = o.json {
        let j = serde_json::json!({
            "bench": "gen", "rounds": o.rounds, "secs": o.secs,
            "gen_mpps": gs, "testpmd_mpps": ts, "ratios": rs, "median_ratio": mr,
            "ndr_pairs_mpps": pairs, "ndr_spreads": spreads, "ndr_stable_attempts": stability,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&j).unwrap() + "\n").expect("write --json");
    }
}
