//! What pmdswitch shows while it runs and when it stops: a live view over the workers'
//! counters, the JSON report, `/pmdswitch/` telemetry commands and the Prometheus text
//! exposition. Everything here only reads counters (single-writer atomics), from any
//! thread.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::dpdk::ethdev::{self, EthStats, PortId};
use crate::dpdk::telemetry::{self, Reply, Val};
use crate::dpdk::vhost::{self, VhostSlot};
use crate::stats::{self, DropCause, PortTotals, WorkerStats, WorkerTotals};

/// Read-only handles on everything that counts.
pub struct View {
    /// Port names and kinds, in port order.
    pub names: Vec<(String, &'static str)>,
    pub stats: Vec<Arc<WorkerStats>>,
    pub slots: Vec<Option<Arc<VhostSlot>>>,
    pub eth: Vec<Option<PortId>>,
}

/// One port of the report.
pub struct PortReport {
    pub name: String,
    pub kind: &'static str,
    pub totals: PortTotals,
    pub eth: Option<EthStats>,
    pub connected: Option<bool>,
    pub guest_notifications: Option<u64>,
}

impl View {
    pub fn ports(&self) -> Vec<PortReport> {
        (0..self.names.len())
            .map(|i| PortReport {
                name: self.names[i].0.clone(),
                kind: self.names[i].1,
                totals: stats::port_totals(&self.stats, i),
                eth: self.eth[i].map(ethdev::stats_of),
                connected: self.slots[i].as_ref().map(|s| s.vid() != vhost::NO_VID),
                guest_notifications: self.slots[i].as_ref().map(|s| s.guest_notifications()),
            })
            .collect()
    }

    pub fn workers(&self) -> Vec<WorkerTotals> {
        self.stats.iter().map(|w| stats::worker_totals(w)).collect()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self) -> String {
        let mut o = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let ports = self.ports();
        let counter = |o: &mut String, name: &str, help: &str| {
            o.push_str(&format!("# HELP pmdswitch_{name} {help}\n# TYPE pmdswitch_{name} counter\n"));
        };
        type Field = fn(&PortReport) -> Option<u64>;
        let fields: [(&str, &str, Field); 5] = [
            ("port_rx_packets_total", "Packets received on the port.", |r| Some(r.totals.rx_packets)),
            ("port_tx_packets_total", "Packets sent on the port.", |r| Some(r.totals.tx_packets)),
            ("port_rx_bytes_total", "Bytes received on the port.", |r| Some(r.totals.rx_bytes)),
            ("port_tx_bytes_total", "Bytes sent on the port.", |r| Some(r.totals.tx_bytes)),
            ("port_guest_notifications_total", "Call eventfd writes towards the guest (vhost ports).", |r| r.guest_notifications),
        ];
        for (name, help, f) in fields {
            counter(&mut o, name, help);
            for r in &ports {
                if let Some(v) = f(r) {
                    o.push_str(&format!("pmdswitch_{name}{{port=\"{}\",kind=\"{}\"}} {v}\n", esc(&r.name), r.kind));
                }
            }
        }
        counter(&mut o, "port_drops_total", "Packets dropped inside pmdswitch, by cause.");
        for r in &ports {
            for c in DropCause::ALL {
                o.push_str(&format!("pmdswitch_port_drops_total{{port=\"{}\",cause=\"{}\"}} {}\n", esc(&r.name), c.name(), r.totals.drops[c as usize]));
            }
        }
        type WField = fn(&WorkerTotals) -> u64;
        let wfields: [(&str, &str, WField); 5] = [
            ("worker_busy_cycles_total", "TSC cycles of iterations that moved packets.", |w| w.busy_cycles),
            ("worker_idle_cycles_total", "TSC cycles of empty iterations and sleeps.", |w| w.idle_cycles),
            ("worker_packets_total", "Packets received by the worker.", |w| w.packets),
            ("worker_sleeps_total", "Adaptive-idle sleeps.", |w| w.sleeps),
            ("worker_kick_wakeups_total", "Sleeps ended by a guest kick.", |w| w.kick_wakeups),
        ];
        let workers = self.workers();
        for (name, help, f) in wfields {
            counter(&mut o, name, help);
            for w in &workers {
                o.push_str(&format!("pmdswitch_{name}{{core=\"{}\"}} {}\n", w.core, f(w)));
            }
        }
        o
    }
}

/// Serves `GET /metrics` on `addr` (e.g. `127.0.0.1:9464`) until `stop` is set. The
/// listener is polled every 100 ms for the stop flag (no busy wait).
///
/// # Errors
/// The address cannot be bound.
pub fn serve_prometheus(addr: &str, view: Arc<View>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    std::thread::Builder::new().name("pmds-metrics".into()).spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut line = String::new();
                    let _ = BufReader::new(&s).read_line(&mut line);
                    let (status, body) = if line.starts_with("GET /metrics") || line.starts_with("GET / ") {
                        ("200 OK", view.prometheus())
                    } else {
                        ("404 Not Found", "try /metrics\n".to_string())
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}

pub fn report_json(reports: &[PortReport], workers: &[WorkerTotals], elapsed: f64, tsc_hz: u64, size: u32, baseline: u32, in_use: u32) -> Value {
    let mut ports = Map::new();
    for r in reports {
        let mut drops = Map::new();
        for c in DropCause::ALL {
            drops.insert(c.name().into(), json!(r.totals.drops[c as usize]));
        }
        let mut o = json!({
            "kind": r.kind,
            "rx_packets": r.totals.rx_packets,
            "tx_packets": r.totals.tx_packets,
            "rx_bytes": r.totals.rx_bytes,
            "tx_bytes": r.totals.tx_bytes,
            "drops": drops,
        });
        if let Some(e) = r.eth {
            // Counted by the driver before pmdswitch sees a packet: not part of rx_packets.
            o["driver"] = json!({
                "rx_missed": e.imissed, "rx_nombuf": e.rx_nombuf, "rx_errors": e.ierrors,
                "tx_errors": e.oerrors, "ipackets": e.ipackets, "opackets": e.opackets,
                "ibytes": e.ibytes, "obytes": e.obytes,
            });
        }
        if let Some(c) = r.connected {
            o["connected_at_exit"] = json!(c);
        }
        if let Some(n) = r.guest_notifications {
            o["guest_notifications"] = json!(n);
        }
        ports.insert(r.name.clone(), o);
    }
    let workers: Vec<Value> = workers
        .iter()
        .map(|w| {
            json!({
                "core": w.core, "busy_cycles": w.busy_cycles, "idle_cycles": w.idle_cycles,
                "packets": w.packets, "cycles_per_packet": w.cycles_per_packet(),
                "sleeps": w.sleeps, "kick_wakeups": w.kick_wakeups,
            })
        })
        .collect();
    json!({
        "ports": ports,
        "workers": workers,
        "mempool": {"size": size, "in_use_baseline": baseline, "in_use_end": in_use},
        "duration_s": elapsed,
        "tsc_hz": tsc_hz,
    })
}

/// `/pmdswitch/...` telemetry commands (see README, Telemetry). Failing to register is
/// not fatal: forwarding matters more than its observability.
pub fn register_telemetry(view: &View) {
    let (names, stats, slots) = (view.names.clone(), view.stats.as_slice(), view.slots.as_slice());
    let mut res = Vec::new();
    let n = names.clone();
    res.push(telemetry::register("/pmdswitch/ports", "Port names. Takes no parameters", move |_| {
        Reply::Strings(n.iter().map(|(name, _)| name.clone()).collect())
    }));
    let (n, st, sl) = (names.clone(), stats.to_vec(), slots.to_vec());
    res.push(telemetry::register("/pmdswitch/port", "Counters of one port. Parameter: port name", move |arg| {
        let Some(i) = n.iter().position(|(name, _)| name == arg) else { return Reply::Invalid };
        let t = stats::port_totals(&st, i);
        let mut kv = vec![
            ("name".to_string(), Val::Str(n[i].0.clone())),
            ("kind".to_string(), Val::Str(n[i].1.to_string())),
            ("rx_packets".to_string(), Val::U64(t.rx_packets)),
            ("tx_packets".to_string(), Val::U64(t.tx_packets)),
            ("rx_bytes".to_string(), Val::U64(t.rx_bytes)),
            ("tx_bytes".to_string(), Val::U64(t.tx_bytes)),
        ];
        for c in DropCause::ALL {
            kv.push((format!("drops/{}", c.name()), Val::U64(t.drops[c as usize])));
        }
        if let Some(s) = &sl[i] {
            kv.push(("connected".to_string(), Val::U64((s.vid() != vhost::NO_VID) as u64)));
            kv.push(("guest_notifications".to_string(), Val::U64(s.guest_notifications())));
        }
        Reply::Dict(kv)
    }));
    let st = stats.to_vec();
    res.push(telemetry::register("/pmdswitch/workers", "Worker cores. Takes no parameters", move |_| {
        Reply::U64s(st.iter().map(|w| w.core as u64).collect())
    }));
    let st = stats.to_vec();
    res.push(telemetry::register("/pmdswitch/worker", "Cycles and packets of one worker. Parameter: core", move |arg| {
        let Some(w) = arg.parse::<usize>().ok().and_then(|c| st.iter().find(|w| w.core == c)) else { return Reply::Invalid };
        let t = stats::worker_totals(w);
        Reply::Dict(vec![
            ("core".into(), Val::U64(t.core as u64)),
            ("busy_cycles".into(), Val::U64(t.busy_cycles)),
            ("idle_cycles".into(), Val::U64(t.idle_cycles)),
            ("packets".into(), Val::U64(t.packets)),
            ("cycles_per_packet".into(), Val::U64(t.cycles_per_packet().round() as u64)),
        ])
    }));
    let (n, st) = (names, stats.to_vec());
    res.push(telemetry::register("/pmdswitch/drops", "Drops by port and cause (PORT/CAUSE). Takes no parameters", move |_| {
        let mut kv = Vec::new();
        for (i, (name, _)) in n.iter().enumerate() {
            let t = stats::port_totals(&st, i);
            for c in DropCause::ALL {
                kv.push((format!("{name}/{}", c.name()), Val::U64(t.drops[c as usize])));
            }
        }
        Reply::Dict(kv)
    }));
    if let Some(Err(e)) = res.into_iter().find(|r| r.is_err()) {
        eprintln!("pmdswitch: warning: telemetry commands unavailable: {e}");
    }
}

