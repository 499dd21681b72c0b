//! What `run` prints on the terminal: the live table every `--stats-interval` and the
//! final stats.

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use crate::datapath::stats::{DropCause, PortTotals, WorkerTotals};
use crate::observe::{PortReport, View};

/// Flushes stdout (lines reach a pipe at once: tests and logs read them).
pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// Per port: rates since the last print, totals, drops, guest notifications per second.
pub fn print_live(view: &View, last: &mut HashMap<String, (Instant, PortTotals, Option<u64>)>, start: Instant) {
    let now = Instant::now();
    let mut out = format!(
        "--- {:.1}s\n{:<12} {:>10} {:>10} {:>14} {:>14} {:>10} {:>9}\n",
        (now - start).as_secs_f64(),
        "port",
        "rx Mpps",
        "tx Mpps",
        "rx pkts",
        "tx pkts",
        "drops",
        "notif/s"
    );
    for r in view.ports() {
        let (t0, prev, pn) = last.get(&r.name).cloned().unwrap_or((start, PortTotals::default(), Some(0)));
        let dt = (now - t0).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let notif = match (r.guest_notifications, pn) {
            (Some(a), Some(b)) => format!("{:.0}", rate(a, b)),
            _ => "-".into(),
        };
        let c = &r.totals;
        out.push_str(&format!(
            "{:<12} {:>10.3} {:>10.3} {:>14} {:>14} {:>10} {:>9}\n",
            r.name,
            rate(c.rx_packets, prev.rx_packets) / 1e6,
            rate(c.tx_packets, prev.tx_packets) / 1e6,
            c.rx_packets,
            c.tx_packets,
            c.dropped(),
            notif
        ));
        last.insert(r.name.clone(), (now, *c, r.guest_notifications));
    }
    for w in view.workers() {
        out.push_str(&format!(
            "worker core {:<3} busy {:>5.1}%  {:>7.1} cycles/pkt\n",
            w.core,
            w.busy_fraction() * 100.0,
            w.cycles_per_packet()
        ));
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

pub fn print_final(reports: &[PortReport], workers: &[WorkerTotals], elapsed: f64, tsc_hz: u64, baseline: u32, in_use: u32) {
    let mut out = format!("=== pmdswitch final stats ({elapsed:.1}s)\n");
    out.push_str(&format!(
        "{:<12} {:<13} {:>14} {:>14} {:>16} {:>16}  drops\n",
        "port", "kind", "rx pkts", "tx pkts", "rx bytes", "tx bytes"
    ));
    for r in reports {
        let drops: Vec<String> = DropCause::ALL
            .iter()
            .filter(|c| r.totals.drops[**c as usize] > 0)
            .map(|c| format!("{}={}", c.name(), r.totals.drops[*c as usize]))
            .collect();
        out.push_str(&format!(
            "{:<12} {:<13} {:>14} {:>14} {:>16} {:>16}  {}\n",
            r.name,
            r.kind,
            r.totals.rx_packets,
            r.totals.tx_packets,
            r.totals.rx_bytes,
            r.totals.tx_bytes,
            if drops.is_empty() { "0".into() } else { drops.join(" ") }
        ));
        if r.rxqs.len() > 1 {
            for q in &r.rxqs {
                out.push_str(&format!(
                    "  rxq {:<2} core {:<3} packets {:>14}  {:>7.1} cycles/pkt\n",
                    q.queue,
                    q.core.map_or("-".into(), |c| c.to_string()),
                    q.packets,
                    if q.packets > 0 { q.busy_cycles as f64 / q.packets as f64 } else { 0.0 }
                ));
            }
        }
    }
    for w in workers {
        let secs = (w.busy_cycles + w.idle_cycles) as f64 / tsc_hz.max(1) as f64;
        out.push_str(&format!(
            "worker core {:<3} packets {:>14}  busy {:>5.1}%  {:>7.1} cycles/pkt  ({:.1}s polled)\n",
            w.core,
            w.packets,
            w.busy_fraction() * 100.0,
            w.cycles_per_packet(),
            secs
        ));
    }
    out.push_str(&format!("mempool in use: {in_use} (baseline {baseline})\n"));
    print!("{out}");
    let _ = std::io::stdout().flush();
}
