//! The generator's own figures, against testpmd in the same run.
//!
//! 1. Tx-only: `pmdswitch gen --tx a` into `net_null` against `dpdk-testpmd
//!    --forward-mode=txonly` into `net_null`, both on CPU 1 with 64-byte frames,
//!    interleaved A B / B A, medians of per-round ratios. net_null frees what it is given,
//!    so the sender's own cost per packet is what is measured.
//!    Beside it, in the same rounds: profiles with four fields varying per packet, IPv6/UDP,
//!    IPv4/TCP, and a 1 M-frame capture replayed at full speed (ratios to the one stream);
//!    then the capture thread at 1 Mpps on a net_ring loopback (frames it could not take).
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

/// Mpps of `pmdswitch gen` sending into net_null on CPU 1: 64-byte IPv4/UDP frames from
/// the command line, or the streams of a profile (`extra`); the sum of its streams' rates.
fn gen_txonly(s: &Scratch, secs: f64, extra: &[&str]) -> f64 {
    let json = s.path(&format!("txonly-{}.json", Scratch::seq()));
    let o = Command::new(bin())
        .args(["gen", "--port", "a=vdev:net_null0,no-rx=1", "--core", "1", "--quiet", "--warmup", "1", "--duration", &secs.to_string()])
        .args(extra)
        .arg("--json")
        .arg(&json)
        .args(["--", "-l", "0", &format!("--file-prefix={}", s.prefix("gtx"))])
        .stdin(Stdio::null())
        .output()
        .expect("gen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    v["streams"].as_object().unwrap().values().map(|s| s["tx_pps"].as_f64().unwrap()).sum::<f64>() / 1e6
}

/// The profiles measured beside the command line's one stream: four fields varying per
/// packet (computed per packet, and built ahead with `cache = 4096`); IPv6/UDP and IPv4/TCP at their smallest frames; a 1 M-frame capture replayed
/// as fast as the port takes (stamped, so its rate is measured like the others').
fn profiles(s: &Scratch) -> Vec<(&'static str, String)> {
    let w = |name: &str, text: &str| {
        let p = s.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let pcap = s.path("1m.pcap");
    write_capture(&pcap, 1_000_000);
    vec![
        (
            "fields4",
            w(
                "f4.toml",
                "[[stream]]\nname=\"a\"\nports=[\"a\"]\n\
                 [[stream.field]]\nfield=\"src_ip\"\nrange=[\"198.18.0.1\",\"198.18.255.254\"]\n\
                 [[stream.field]]\nfield=\"dst_ip\"\nrange=[\"198.19.0.1\",\"198.19.255.254\"]\nmode=\"random\"\n\
                 [[stream.field]]\nfield=\"src_port\"\nrange=[1024,65535]\n\
                 [[stream.field]]\nfield=\"dst_port\"\nrange=[1,1000]\nmode=\"dec\"\n",
            ),
        ),
        (
            "fields4c",
            w(
                "f4c.toml",
                "[[stream]]\nname=\"a\"\nports=[\"a\"]\ncache=4096\n\
                 [[stream.field]]\nfield=\"src_ip\"\nrange=[\"198.18.0.1\",\"198.18.255.254\"]\n\
                 [[stream.field]]\nfield=\"dst_ip\"\nrange=[\"198.19.0.1\",\"198.19.255.254\"]\nmode=\"random\"\n\
                 [[stream.field]]\nfield=\"src_port\"\nrange=[1024,65535]\n\
                 [[stream.field]]\nfield=\"dst_port\"\nrange=[1,1000]\nmode=\"dec\"\n",
            ),
        ),
        (
            "ipv6-udp",
            w("v6.toml", "[[stream]]\nname=\"a\"\nports=[\"a\"]\nframes=[82]\nsrc_ip=\"2001:db8:1::1\"\ndst_ip=\"2001:db8:2::1\"\n"),
        ),
        ("tcp", w("tcp.toml", "[[stream]]\nname=\"a\"\nports=[\"a\"]\nframes=[74]\nl4=\"tcp-data\"\n")),
        (
            "replay1M",
            w("replay.toml", &format!("[[stream]]\nname=\"a\"\nports=[\"a\"]\npcap=\"{}\"\nloops=0\nmeasured=true\n", pcap.display())),
        ),
    ]
}

/// A capture of `n` 60-byte IPv4/UDP frames (64 with FCS), each to another address.
fn write_capture(path: &std::path::Path, n: u32) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    use pmdswitch::gen::frame::{self, Shape};
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = PcapWriter::new(f).unwrap();
    let base = frame::build(&Shape::default(), 0, 64);
    for i in 0..n {
        let mut b = base.clone();
        b[30..34].copy_from_slice(&(0xc612_0000u32 + i).to_be_bytes());
        let c = pmdswitch::datapath::wire::csum::checksum(&{
            let mut h = b[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        b[24..26].copy_from_slice(&c.to_be_bytes());
        w.write_packet(&PcapPacket::new(Duration::from_nanos(u64::from(i) * 100), b.len() as u32, &b)).unwrap();
    }
}

/// The capture thread at 1 Mpps: a net_ring port loops what it sends back to itself;
/// returns (frames received, frames the writer could not take).
fn capture_1mpps(s: &Scratch, secs: f64) -> (u64, u64) {
    let cap = s.path("cap.pcapng");
    let o = Command::new(bin())
        .args(["gen", "--port", "a=vdev:net_ring0", "--core", "1", "--rate", "1Mpps", "--warmup", "0.5", "--duration", &secs.to_string()])
        .args(["--capture"])
        .arg(&cap)
        .args(["--", "-l", "0", &format!("--file-prefix={}", s.prefix("gcap"))])
        .stdin(Stdio::null())
        .output()
        .expect("gen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("capture:")).expect("capture line");
    let num = |after: &str| line.split(after).next().unwrap().split_whitespace().last().unwrap().parse::<u64>().unwrap();
    let _ = std::fs::remove_file(&cap);
    (num(" frame(s) written"), num(" not taken"))
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
    let ps = Scratch::new("bprof");
    let profs = profiles(&ps);
    // Per profile: its Mpps and its ratio to the one stream of the same round.
    let mut pv: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new(), Vec::new()); profs.len()];
    println!("tx-only into net_null on CPU 1: {} rounds x {} s; testpmd txonly 64 B as the peer", o.rounds, o.secs);
    print!("{:>6} {:>10} {:>10} {:>7}", "round", "gen 64B", "testpmd", "ratio");
    for (n, _) in &profs {
        print!(" {:>10} {:>6}", n, "/1str");
    }
    println!();
    for r in 0..o.rounds {
        let s = Scratch::new(&format!("btx{r}"));
        let (g, t) = if r % 2 == 0 {
            let g = gen_txonly(&s, o.secs, &[]);
            (g, testpmd_txonly(&s, o.secs))
        } else {
            let t = testpmd_txonly(&s, o.secs);
            (gen_txonly(&s, o.secs, &[]), t)
        };
        print!("{:>6} {:>10.3} {:>10.3} {:>7.3}", r + 1, g, t, g / t);
        for (k, (_, path)) in profs.iter().enumerate() {
            let m = gen_txonly(&s, o.secs, &["--profile", path]);
            print!(" {:>10.3} {:>6.3}", m, m / g);
            pv[k].0.push(m);
            pv[k].1.push(m / g);
            pv[k].2.push(m / t);
        }
        println!();
        gs.push(g);
        ts.push(t);
        rs.push(g / t);
    }
    let mr = median(rs.clone());
    print!("{:>6} {:>10.3} {:>10.3} {:>7.3}", "median", median(gs.clone()), median(ts.clone()), mr);
    for v in &pv {
        print!(" {:>10.3} {:>6.3}", median(v.0.clone()), median(v.1.clone()));
    }
    println!();
    println!("verdict: gen tx-only / testpmd txonly = {mr:.3} (median of per-round ratios)");
    for ((n, _), v) in profs.iter().zip(&pv) {
        println!("verdict: {n} / one stream = {:.3}, / testpmd = {:.3}", median(v.1.clone()), median(v.2.clone()));
    }
    let mut caps = Vec::new();
    for r in 0..o.rounds.min(3) {
        let s = Scratch::new(&format!("bcap{r}"));
        let (n, lost) = capture_1mpps(&s, o.secs);
        println!("capture at 1 Mpps, round {}: {n} frames written, {lost} not taken", r + 1);
        caps.push((n, lost));
    }
    println!("verdict: capture at 1 Mpps lost {} frame(s) in {} round(s)", caps.iter().map(|c| c.1).sum::<u64>(), caps.len());

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
            "profiles": profs.iter().zip(&pv).map(|((n, _), v)| serde_json::json!({"name": n, "mpps": v.0, "vs_one_stream": v.1, "vs_testpmd": v.2})).collect::<Vec<_>>(),
            "capture_1mpps": caps,
            "ndr_pairs_mpps": pairs, "ndr_spreads": spreads, "ndr_stable_attempts": stability,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&j).unwrap() + "\n").expect("write --json");
    }
}
