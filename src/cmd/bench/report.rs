//! The bench's results: a table of medians and ratios, `results.json`, and two
//! pictures (throughput by frame size, latency CDF).

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use pmdswitch::bed::duts::Dut;
use pmdswitch::bed::median;
use pmdswitch::bed::probe::{same_host, HOST_TOLERANCE};
use pmdswitch::startup::Failure;

use super::matrix::{Meas, Results};
use super::{plot, Plan};

/// Prints the table, writes results.json, throughput.svg and latency.svg.
pub fn write(p: &Plan, results: &Results, term: &AtomicBool) -> Result<(), Failure> {
    let cell_of = |dut: Dut, ci: usize, f: &dyn Fn(&Meas) -> Option<f64>| -> Option<f64> {
        median(results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).filter_map(|x| f(&x.1[ci]))).collect())
    };
    // Ratio per round, then the median: a slow phase of the host that lasts a round hits
    // both numbers of a ratio. `steady`: only the rounds where both DUT runs saw the same
    // host speed (see `host_probe`); also returns how many rounds that is.
    let ratios = |dut: Dut, ci: usize, f: &dyn Fn(&Meas) -> Option<f64>, steady: bool| -> (Option<f64>, usize) {
        let v: Vec<f64> = results
            .iter()
            .filter_map(|r| {
                let a = &r.iter().find(|x| x.0 == p.duts[0])?.1[ci];
                let b = &r.iter().find(|x| x.0 == dut)?.1[ci];
                let (fa, fb) = (f(a)?, f(b)?);
                ((!steady || same_host(a.host, b.host)) && fb > 0.0).then_some(fa / fb)
            })
            .collect();
        let n = v.len();
        (median(v), n)
    };
    let ratio_of = |dut: Dut, ci: usize, f: &dyn Fn(&Meas) -> Option<f64>| ratios(dut, ci, f, false).0;
    let max_f = |m: &Meas| m.max_mpps;
    let ndr_f = |m: &Meas| m.ndr_mpps;
    let mut steady_lines = String::new();
    let routed = p.cells.iter().any(|c| c.routes > 0);
    let mut out = format!(
        "=== pmdswitch bench: {} round(s), {}; Mpps both directions, medians\n{:<20} {:>6} {:>6}{} {:>10} {:>10} {:>10} {:>9} {:>11}",
        results.len(),
        p.duts.iter().map(|d| d.name()).collect::<Vec<_>>().join(" vs "),
        "dut",
        "frame",
        "flows",
        if routed { format!(" {:>8}", "routes") } else { String::new() },
        "max Mpps",
        "NDR Mpps",
        "p99 us",
        "gen busy%",
        "DUT cyc/pkt"
    );
    if p.duts.len() > 1 {
        out.push_str(&format!(" {:>10} {:>10} {:>10}", "max ratio", "ndr ratio", "cost ratio"));
    }
    out.push('\n');
    let f = |v: Option<f64>, w: usize, prec: usize| v.map_or(format!("{:>w$}", "-"), |x| format!("{x:>w$.prec$}"));
    let mut cells_json = Vec::new();
    for &dut in &p.duts {
        for (ci, c) in p.cells.iter().enumerate() {
            let (mx, nd, p99) = (cell_of(dut, ci, &max_f), cell_of(dut, ci, &ndr_f), cell_of(dut, ci, &|m: &Meas| m.p99_us));
            let busy = cell_of(dut, ci, &|m: &Meas| m.gen_busy);
            let cpp_f = |m: &Meas| m.dut_cpp;
            let cpp = cell_of(dut, ci, &cpp_f);
            let mut line = format!(
                "{:<20} {:>6} {:>6}{} {} {} {} {} {}",
                dut.name(),
                c.frame,
                c.flows,
                if routed {
                    format!(" {:>8}", if dut.routes() && dut != Dut::L3fwd { c.routes.to_string() } else { "-".into() })
                } else {
                    String::new()
                },
                f(mx, 10, 3),
                f(nd, 10, 3),
                f(p99, 10, 1),
                f(busy, 9, 1),
                f(cpp, 11, 1)
            );
            // Cost ratio: the other DUT's cycles per packet over the first's (> 1: the
            // first needs fewer cycles per packet, i.e. has more capacity per core).
            let (rm, rn, rc) = if dut != p.duts[0] {
                (ratio_of(dut, ci, &max_f), ratio_of(dut, ci, &ndr_f), ratio_of(dut, ci, &|m: &Meas| m.dut_cpp.map(|x| 1.0 / x)))
            } else {
                (None, None, None)
            };
            if p.duts.len() > 1 {
                line.push_str(&format!(" {} {} {}", f(rm, 10, 3), f(rn, 10, 3), f(rc, 10, 3)));
            }
            out.push_str(&line);
            out.push('\n');
            let (srm, src, steady) = if dut != p.duts[0] {
                let (srm, n) = ratios(dut, ci, &max_f, true);
                let (src, _) = ratios(dut, ci, &|m: &Meas| m.dut_cpp.map(|x| 1.0 / x), true);
                steady_lines.push_str(&format!(
                    "  vs {} {}B {} flow(s){}: {n} of {} rounds at one host speed; over those, max ratio {}, cost ratio {}\n",
                    dut.name(),
                    c.frame,
                    c.flows,
                    if c.routes > 0 { format!(" {} route(s)", c.routes) } else { String::new() },
                    results.len(),
                    f(srm, 0, 3),
                    f(src, 0, 3)
                ));
                (srm, src, Some(n))
            } else {
                (None, None, None)
            };
            cells_json.push(json!({
                "ratio_max_steady": srm, "ratio_cost_steady": src, "steady_rounds": steady,
                "rounds_host_probe": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].host.map(|(a, b)| [a, b]))).collect::<Vec<_>>(),
                "dut": dut.name(), "frame": c.frame, "flows": c.flows, "routes": (c.routes > 0).then_some(c.routes),
                "fib_load_s": cell_of(dut, ci, &|m: &Meas| m.fib_load_s),
                "wrong_port": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].wrong_port)).sum::<u64>(),
                "max_mpps": mx, "ndr_mpps": nd, "p99_us_at_max": p99, "gen_busy_pct_at_max": busy, "dut_cycles_per_packet": cpp,
                "ratio_max": rm, "ratio_ndr": rn, "ratio_cost": rc,
                "rounds_max_mpps": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].max_mpps)).collect::<Vec<_>>(),
                "rounds_ndr_mpps": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].ndr_mpps)).collect::<Vec<_>>(),
                "rounds_cycles_per_packet": results.iter().flat_map(|r| r.iter().filter(|x| x.0 == dut).map(|x| x.1[ci].dut_cpp)).collect::<Vec<_>>(),
            }));
        }
    }
    if p.duts.len() > 1 {
        out.push_str(&format!(
            "ratios are {first}/DUT per round, then the median; cost ratio = the DUT's own busy cycles per packet / {first}'s (above 1: {first} needs fewer cycles per packet)\n",
            first = p.duts[0].name()
        ));
        out.push_str(&format!(
            "host-speed check (a cache line's round trip between the two cores, timed before each DUT starts and after it stops; \
             a round counts when all four readings agree within {:.0} %):\n{steady_lines}",
            HOST_TOLERANCE * 100.0
        ));
    }
    // Do the generator's counts add up with the DUT's own (pmdswitch reports them)?
    let mut checks = Vec::new();
    for r in results {
        for (dut, _, c) in r {
            if let Some([rx_a, tx_a, rx_b, tx_b, drops]) = c.dut {
                let [g_tx_a, g_rx_a, g_tx_b, g_rx_b] = c.gen;
                let agree = rx_a == g_tx_a && tx_b == g_rx_b && rx_b == g_tx_b && tx_a == g_rx_a;
                checks.push(json!({"dut": dut.name(), "gen_tx_a": g_tx_a, "dut_rx_a": rx_a, "gen_rx_b": g_rx_b, "dut_tx_b": tx_b,
                    "gen_tx_b": g_tx_b, "dut_rx_b": rx_b, "gen_rx_a": g_rx_a, "dut_tx_a": tx_a, "dut_drops": drops, "agree": agree}));
                out.push_str(&format!(
                    "counts ({}, max-rate runs): generator tx a {g_tx_a} / DUT rx a {rx_a}; DUT tx b {tx_b} / generator rx b {g_rx_b}; DUT drops {drops}: {}\n",
                    dut.name(),
                    if agree { "agree" } else if drops > 0 { "differ by the DUT's counted drops" } else { "DIFFER" }
                ));
            }
        }
    }
    print!("{out}");
    let j = json!({
        "bench": "pmdswitch bench", "duts": p.duts.iter().map(|d| d.name()).collect::<Vec<_>>(), "rounds": results.len(),
        "secs": p.secs, "warmup": p.warmup, "ndr_resolution_pct": p.resolution, "cells": cells_json, "count_checks": checks,
        "interrupted": term.load(Ordering::SeqCst),
    });
    let rj = p.out.join("results.json");
    std::fs::write(&rj, serde_json::to_string_pretty(&j).unwrap_or_default() + "\n")
        .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", rj.display())))?;
    // Pictures: throughput by frame size per DUT (first flow count), latency CDF at the
    // first frame size.
    let flows0 = p.cells.first().map(|c| c.flows).unwrap_or(1);
    let cells0: Vec<(usize, usize)> = p.cells.iter().enumerate().filter(|(_, c)| c.flows == flows0).map(|(ci, c)| (ci, c.frame)).collect();
    let frames: Vec<usize> = cells0.iter().map(|&(_, frame)| frame).collect();
    let series: Vec<(String, Vec<Option<f64>>)> = p
        .duts
        .iter()
        .flat_map(|&d| {
            let per_frame = |f: &dyn Fn(&Meas) -> Option<f64>| cells0.iter().map(|&(ci, _)| cell_of(d, ci, f)).collect::<Vec<_>>();
            [(format!("{} max", d.name()), per_frame(&max_f)), (format!("{} NDR", d.name()), per_frame(&ndr_f))]
        })
        .filter(|(_, v)| v.iter().any(Option::is_some))
        .collect();
    let tp = p.out.join("throughput.svg");
    plot::throughput_bars(&tp, &format!("Throughput by frame size ({flows0} flow(s))"), &frames, &series)
        .map_err(|e| Failure::Runtime(format!("cannot draw {}: {e}", tp.display())))?;
    let cdfs: Vec<(String, Vec<(f64, f64)>)> = p
        .duts
        .iter()
        .filter_map(|&d| {
            let ci = p.cells.iter().position(|c| c.frame == p.cells[0].frame && c.flows == flows0)?;
            let m = results.iter().rev().flat_map(|r| r.iter().filter(|x| x.0 == d)).next()?;
            let pts: Vec<(f64, f64)> = m.1[ci].cdf.iter().map(|&(q, ns)| (ns / 1e3, q)).collect();
            (!pts.is_empty()).then(|| (d.name().to_string(), pts))
        })
        .collect();
    let lp = p.out.join("latency.svg");
    plot::latency_cdf(&lp, &format!("Latency CDF at max rate, {} B, {flows0} flow(s)", p.cells.first().map_or(64, |c| c.frame)), &cdfs)
        .map_err(|e| Failure::Runtime(format!("cannot draw {}: {e}", lp.display())))?;
    println!("bench: wrote {}, {}, {}", rj.display(), tp.display(), lp.display());
    Ok(())
}
