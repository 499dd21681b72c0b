//! A DUT's own counters around a generator run: pmdswitch's through its control socket,
//! testpmd's from its prompt (`--record-core-cycles`), OVS's with `ovs-appctl`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::duts::{Dut, RunningDut};

/// pmdswitch's port counters now: [rx a, tx a, rx b, tx b, drops].
pub fn dut_counters(d: &RunningDut) -> Option<[u64; 5]> {
    let reply = crate::control::client::request(d.ctl.clone(), &["show".into(), "ports".into(), "--json".into()]).ok()?;
    let mut v: Value = serde_json::from_str(&reply).ok()?;
    if d.ctl2.is_some() {
        // Two instances: port a is the first's, b the second's.
        let reply = crate::control::client::request(d.ctl2.clone(), &["show".into(), "ports".into(), "--json".into()]).ok()?;
        let w: Value = serde_json::from_str(&reply).ok()?;
        v["ports"]["b"] = w["ports"]["b"].clone();
    }
    let g = |p: &str, k: &str| v["ports"][p][k].as_u64();
    let drops: u64 =
        ["a", "b"].iter().filter_map(|p| v["ports"][p]["drops"].as_object()).flat_map(|o| o.values().filter_map(Value::as_u64)).sum();
    Some([g("a", "rx_packets")?, g("a", "tx_packets")?, g("b", "rx_packets")?, g("b", "tx_packets")?, drops])
}

/// Starts a DUT-side cycle count (testpmd and OVS; pmdswitch is read through `ctl`).
pub fn dut_cycles_start(d: &mut RunningDut) -> Option<[u64; 2]> {
    match d.dut {
        Dut::Testpmd => {
            d.procs[0].say("clear fwd stats all");
            None
        }
        Dut::Ovs | Dut::OvsNormal | Dut::OvsL3 => {
            ovs_appctl(d, &["dpif-netdev/pmd-stats-clear"]);
            None
        }
        Dut::L3fwd => l3fwd_cycles(d),
        _ => pmds_worker_cycles(d),
    }
}

/// l3fwd's counters (our build prints them every 100 ms, see scripts/peers.sh): the
/// latest [busy cycles, packets] line of its output.
fn l3fwd_cycles(d: &RunningDut) -> Option<[u64; 2]> {
    let text = d.procs.first()?.text();
    let line = text.rsplit("l3fwd-cycles ").next()?;
    let num = |k: &str| line.split(k).nth(1)?.split_whitespace().next()?.parse::<u64>().ok();
    Some([num("busy=")?, num("packets=")?])
}

/// The DUT's own busy cycles per packet since `dut_cycles_start`: what forwarding costs
/// it, independent of whether the loop was limited by the generator.
pub fn dut_cycles_per_packet(d: &mut RunningDut, start: Option<[u64; 2]>) -> Option<f64> {
    match d.dut {
        Dut::Testpmd => {
            let p = &mut d.procs[0];
            let seen = p.text().matches("CPU cycles/packet=").count();
            p.say("show fwd stats all");
            let t0 = Instant::now();
            while p.text().matches("CPU cycles/packet=").count() == seen && t0.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let text = p.text();
            let line = text.rsplit("CPU cycles/packet=").next()?;
            line.split_whitespace().next()?.parse().ok()
        }
        Dut::L3fwd => {
            // A line printed after the run ended (the next one within 100 ms).
            let before = d.procs.first()?.text().matches("l3fwd-cycles ").count();
            let t0 = Instant::now();
            while d.procs.first()?.text().matches("l3fwd-cycles ").count() < before + 2 && t0.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let [b0, p0] = start?;
            let [b1, p1] = l3fwd_cycles(d)?;
            (p1 > p0).then(|| (b1 - b0) as f64 / (p1 - p0) as f64)
        }
        Dut::Ovs | Dut::OvsNormal | Dut::OvsL3 => {
            let out = ovs_appctl(d, &["dpif-netdev/pmd-stats-show"])?;
            let l = out.lines().find(|l| l.contains("avg processing cycles per packet"))?;
            l.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
        }
        _ => {
            let [b0, p0] = start?;
            let [b1, p1] = pmds_worker_cycles(d)?;
            (p1 > p0).then(|| (b1 - b0) as f64 / (p1 - p0) as f64)
        }
    }
}

/// pmdswitch's worker totals now: [busy cycles, packets].
/// With two instances, both's sums: cycles per packet per instance.
fn pmds_worker_cycles(d: &RunningDut) -> Option<[u64; 2]> {
    let mut t = [0, 0];
    for ctl in [&d.ctl, &d.ctl2].into_iter().flatten() {
        let reply = crate::control::client::request(Some(ctl.clone()), &["show".into(), "workers".into(), "--json".into()]).ok()?;
        let v: Value = serde_json::from_str(&reply).ok()?;
        let ws = v["workers"].as_array()?;
        t[0] += ws.iter().filter_map(|w| w["busy_cycles"].as_u64()).sum::<u64>();
        t[1] += ws.iter().filter_map(|w| w["packets"].as_u64()).sum::<u64>();
    }
    Some(t)
}

fn ovs_appctl(d: &RunningDut, args: &[&str]) -> Option<String> {
    let dir = d.ovs_dir.as_ref()?;
    let o = Command::new("ovs-appctl").arg("-t").arg(dir.join("vswitchd.ctl")).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}
