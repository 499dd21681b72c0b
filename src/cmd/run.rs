//! `pmdswitch run`: the edge over [`Switch`]: load and check the configuration, start,
//! serve until a signal or `--duration`, reload on SIGHUP, print, shut down.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmdswitch::cli::RunArgs;
use pmdswitch::observe::terminal as text;
use pmdswitch::startup::Failure;
use pmdswitch::switch::{Switch, SwitchConfig};

/// Runs the data plane; returns when stopped (signal or `--duration`), or with the
/// watchdog's fault when a worker panicked or stalled.
pub fn main(cli: RunArgs, term: Arc<AtomicBool>) -> Result<(), Failure> {
    let (a, config) = SwitchConfig::load(&cli)?;
    let hup = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone());
    let mut sw = Switch::start(config, cli)?;
    println!("{}", sw.banner());
    text::flush();

    // The main thread sleeps in `serve`: on two cores a spinning main thread halves a
    // worker. It wakes for control requests, the MAC tables' upkeep, the stats table and
    // the deadline.
    let start = Instant::now();
    let interval = a.stats_interval.filter(|s| *s > 0.0).map(Duration::from_secs_f64);
    let mut next_print = interval.map(|i| start + i);
    let mut last = HashMap::new();
    let deadline = a.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut fault = None;
    while !term.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        if hup.swap(false, Ordering::SeqCst) {
            match sw.reload() {
                Ok(m) => println!("pmdswitch: SIGHUP: {m}"),
                Err(e) => eprintln!("pmdswitch: SIGHUP: reload refused: {e}"),
            }
            text::flush();
        }
        if let (Some(iv), Some(t)) = (interval, next_print) {
            if Instant::now() >= t {
                text::print_live(sw.view(), &mut last, start);
                next_print = Some(t + iv);
            }
        }
        let until = [next_print, deadline].into_iter().flatten().min().unwrap_or(Instant::now() + Duration::from_secs(1));
        if let Err(f) = sw.serve(until) {
            fault = Some(f);
            break;
        }
    }
    let r = sw.shutdown();
    text::print_final(&r.ports, &r.workers, r.elapsed, r.tsc_hz, r.baseline, r.in_use_end);
    if let Some(path) = &a.stats_json {
        write_json(path, &r.json)?;
    }
    match fault {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|e| Failure::Runtime(format!("cannot write --stats-json {}: {e}", path.display())))
}
