//! The rounds of a bench: each DUT started fresh per round (A B, then B A), the
//! generator run for every cell against it, its own counters read around each run, the
//! host's speed probed before it starts and after it stops.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use pmdswitch::bed::counters::{dut_counters, dut_cycles_per_packet, dut_cycles_start};
use pmdswitch::bed::duts::{Bed, Dut};
use pmdswitch::bed::probe::host_probe;
use pmdswitch::gen::report::{RunReport, SearchReport};
use pmdswitch::startup::Failure;

use super::Plan;

/// One DUT's numbers for one cell in one round.
#[derive(Debug, Clone, Default)]
pub struct Meas {
    pub max_mpps: Option<f64>,
    pub ndr_mpps: Option<f64>,
    /// Latency quantiles at max rate: (quantile, ns) points.
    pub cdf: Vec<(f64, f64)>,
    pub p99_us: Option<f64>,
    pub lost: u64,
    /// The generator's busy share during the max-rate run: below ~95 % it had headroom.
    pub gen_busy: Option<f64>,
    /// The DUT's own busy cycles per packet in the max-rate run.
    pub dut_cpp: Option<f64>,
    /// The host-speed probe (see `host_probe`) just before the DUT started and just
    /// after it stopped.
    pub host: Option<(f64, f64)>,
    /// Seconds the route table of this cell took to load (router DUTs, when loaded).
    pub fib_load_s: Option<f64>,
    /// Generator packets that came back on the wrong port (a router's misroutes).
    pub wrong_port: u64,
}

/// results[round][dut][cell]
pub type Results = Vec<Vec<(Dut, Vec<Meas>, CountCheck)>>;

/// Generator port totals against the DUT's own port counters over the same runs (the
/// max-rate runs; pmdswitch only, read through its control socket before and after).
#[derive(Debug, Clone, Default)]
pub struct CountCheck {
    /// Sums over runs: [tx a, rx a, tx b, rx b] as the generator counted them.
    pub gen: [u64; 4],
    /// Sums of the DUT's deltas: [rx a, tx a, rx b, tx b, drops].
    pub dut: Option<[u64; 5]>,
}

pub fn run(bed: &mut Bed, p: &Plan, term: &AtomicBool) -> Result<Results, Failure> {
    let (rounds, duts, cells) = (p.rounds, p.duts.clone(), p.cells.clone());
    let total = rounds * duts.len();
    let mut results: Results = Vec::new();
    let mut step = 0;
    for r in 0..rounds {
        let mut order = duts.clone();
        order.rotate_left(r % duts.len());
        let mut round = Vec::new();
        for dut in order {
            if term.load(Ordering::SeqCst) {
                return Ok(results);
            }
            step += 1;
            println!("bench: round {}/{rounds}: {} ({step}/{total})", r + 1, dut.name());
            let _ = std::io::stdout().flush();
            let sa = bed.cfg.scratch.join(format!("{}-a.sock", bed.cfg.tag));
            let sb = bed.cfg.scratch.join(format!("{}-b.sock", bed.cfg.tag));
            // What a previous DUT left at these paths (OVS's are our symlinks to its own
            // sockets; a killed DUT leaves its socket file) would make the next bind fail.
            for p in [&sa, &sb] {
                let _ = std::fs::remove_file(p);
            }
            let probe0 = host_probe(p.gen_core, p.dut_core);
            let mut running = bed.start_dut(dut, &sa, &sb).map_err(Failure::Runtime)?;
            let mut meas = vec![Meas::default(); cells.len()];
            let mut check = CountCheck::default();
            let res = (|| -> Result<(), Failure> {
                for (ci, c) in cells.iter().enumerate() {
                    if term.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    if !bed.takes_routes(dut, c.routes) {
                        println!(
                            "bench:   {} {}B {} flow(s) {} route(s): skipped (too many routes for it)",
                            dut.name(),
                            c.frame,
                            c.flows,
                            c.routes
                        );
                        continue;
                    }
                    meas[ci].fib_load_s = bed.prepare_routes(&mut running, c.routes).map_err(Failure::Runtime)?;
                    let base = match &p.profile {
                        Some(f) => vec!["--profile".to_string(), f.display().to_string()],
                        None => {
                            let mut b = vec![
                                "--frame".to_string(),
                                c.frame.to_string(),
                                "--flows".into(),
                                c.flows.to_string(),
                                "--macs".into(),
                                p.macs.to_string(),
                            ];
                            b.extend(bed.gen_args(dut, c.routes));
                            b
                        }
                    };
                    if p.max {
                        let mut x = base.clone();
                        x.extend(["--duration".into(), p.secs.to_string(), "--warmup".into(), p.warmup.to_string()]);
                        if let Some(r) = &p.rate {
                            x.extend(["--rate".into(), r.clone()]);
                        }
                        let before = dut_counters(&running);
                        let cyc = dut_cycles_start(&mut running);
                        let v: RunReport = bed.gen(&sa, &sb, &x).map_err(Failure::Runtime)?;
                        meas[ci].dut_cpp = dut_cycles_per_packet(&mut running, cyc);
                        if let (Some(b), Some(a)) = (before, dut_counters(&running)) {
                            let d = check.dut.get_or_insert([0; 5]);
                            for k in 0..5 {
                                d[k] += a[k] - b[k];
                            }
                        }
                        // Every measured stream (the command line's are named a and b).
                        let rx: f64 = v.streams.values().map(|s| s.rx_pps).sum();
                        let m = &mut meas[ci];
                        m.max_mpps = Some(rx / 1e6);
                        m.lost = v.total.lost;
                        m.wrong_port = v.streams.values().map(|s| s.wrong_port).sum();
                        m.gen_busy = Some(v.generator.busy_fraction * 100.0);
                        let lat = v.streams.get("a").or_else(|| v.streams.values().next()).map(|s| &s.latency_ns);
                        for (name, s) in v.streams.iter().filter(|_| p.profile.is_some()) {
                            println!(
                                "bench:     stream {name}: rx {:.3} Mpps, lost {}, p99 {}",
                                s.rx_pps / 1e6,
                                s.lost,
                                s.latency_ns.p99.map_or("-".into(), |x| format!("{:.1} us", x as f64 / 1e3))
                            );
                        }
                        m.p99_us = lat.and_then(|l| l.p99).map(|x| x as f64 / 1e3);
                        m.cdf =
                            lat.and_then(|l| l.cdf.as_ref()).map(|c| c.iter().map(|&(q, ns)| (q, ns as f64)).collect()).unwrap_or_default();
                        let (a, b) = (v.ports.get("a"), v.ports.get("b"));
                        for (k, n) in [a.map(|x| x.tx_packets), a.map(|x| x.rx_packets), b.map(|x| x.tx_packets), b.map(|x| x.rx_packets)]
                            .into_iter()
                            .enumerate()
                        {
                            check.gen[k] += n.unwrap_or(0);
                        }
                        let routes = if c.routes > 0 { format!(" {} route(s)", c.routes) } else { String::new() };
                        let wrong = if m.wrong_port > 0 { format!(", {} on the wrong port", m.wrong_port) } else { String::new() };
                        println!(
                            "bench:   {} {}B {} flow(s){routes}: max {:.3} Mpps (both directions), lost {}{wrong}",
                            dut.name(),
                            c.frame,
                            c.flows,
                            rx / 1e6,
                            m.lost
                        );
                    }
                    if p.ndr_frames.contains(&c.frame) && p.ndr_flows.contains(&c.flows) {
                        let mut x = base.clone();
                        x.extend([
                            "--search".into(),
                            "--duration".into(),
                            p.trial_secs.to_string(),
                            "--warmup".into(),
                            (p.warmup.min(0.5)).to_string(),
                        ]);
                        x.extend(["--resolution-pct".into(), p.resolution.to_string()]);
                        let v: SearchReport = bed.gen(&sa, &sb, &x).map_err(Failure::Runtime)?;
                        let s = v.search.first().ok_or_else(|| Failure::Runtime("the generator's search report is empty".into()))?;
                        // Per-port NDR, two ports sending: the loop carries twice that.
                        let ndr = s.ndr_pps * 2.0 / 1e6;
                        meas[ci].ndr_mpps = Some(ndr);
                        let stable = if s.stable { "" } else { ", UNSTABLE: the loop's capacity moved during every search" };
                        println!(
                            "bench:   {} {}B {} flow(s): NDR {:.3} Mpps (both directions, {} trials, {} search(es){stable})",
                            dut.name(),
                            c.frame,
                            c.flows,
                            ndr,
                            s.trials.len(),
                            s.attempts
                        );
                    }
                    let _ = std::io::stdout().flush();
                }
                Ok(())
            })();
            bed.stop_dut(running);
            res?;
            // Every cell of this DUT's run shares the probes around it.
            let host = probe0.zip(host_probe(p.gen_core, p.dut_core));
            for m in meas.iter_mut() {
                m.host = host;
            }
            round.push((dut, meas, check));
        }
        results.push(round);
    }
    Ok(results)
}
