//! The control socket and `pmdswitch ctl`: one request line, one reply, over a Unix
//! socket of mode 0600 (root, or whoever owns the socket).
//!
//! Reading (answered on the control thread): `show ports|workers|rxqs|bridges|stats
//! [--json]`, `show macs BRIDGE`, `clear stats` (records a baseline that later `show`s
//! subtract: the live counters, which the workers own, are never written), `set idle
//! poll|adaptive` (taken up by the workers at their reload point).
//!
//! Changing (handed to the main thread, which owns the port table, and answered when the
//! workers have taken the change at their reload point): `add-port NAME SPEC
//! [queues=N] [vlan=MODE]`, `del-port NAME`, `xconnect A,B`, `del-xconnect A`, `bridge
//! add-port BR PORT`, `bridge del-port BR PORT`, `bridge flush BR [PORT]`, `bridge
//! add-mac BR MAC[@VLAN] PORT`, `bridge del-mac BR MAC[@VLAN]`. See `control.rs`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::datapath::reload::ReloadBarrier;
use crate::datapath::stats::{DropCause, PortTotals, WorkerTotals};
use crate::datapath::worker::IdleMode;
use crate::observe::View;
use crate::startup::preflight;

struct Server {
    view: Arc<View>,
    barrier: Arc<ReloadBarrier>,
    idle: Arc<AtomicU8>,
    base_ports: HashMap<String, PortTotals>,
    base_workers: Vec<WorkerTotals>,
    main: Sender<Request>,
}

/// A change for the main thread, and where its one-line answer goes.
pub struct Request {
    pub words: Vec<String>,
    pub reply: Sender<String>,
}

/// Binds `path` (creating its directory; a stale socket is replaced, a live one refused)
/// and answers requests until `stop` is set.
///
/// # Errors
/// The directory or socket cannot be created, or another pmdswitch serves the path.
/// `group`: when set (`--socket-group`), the socket is also open to that group (mode
/// 0660), so an operator group can drive pmdswitch without root.
pub fn serve(
    path: &Path,
    group: Option<u32>,
    view: Arc<View>,
    barrier: Arc<ReloadBarrier>,
    idle: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(JoinHandle<()>, Receiver<Request>)> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    preflight::check_server_socket("ctl", path).map_err(std::io::Error::other)?;
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(if group.is_some() { 0o660 } else { 0o600 }))?;
    if group.is_some() {
        std::os::unix::fs::chown(path, None, group)?;
    }
    l.set_nonblocking(true)?;
    let n_workers = view.stats.len();
    let (tx, rx) = channel();
    let mut srv =
        Server { view, barrier, idle, base_ports: HashMap::new(), base_workers: vec![WorkerTotals::default(); n_workers], main: tx };
    let h = std::thread::Builder::new().name("pmds-ctl".into()).spawn(move || {
        // Polled every 100 ms for the stop flag; requests are rare.
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => srv.answer(s),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })?;
    Ok((h, rx))
}

impl Server {
    fn answer(&mut self, s: UnixStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        let _ = BufReader::new(&s).read_line(&mut line);
        let reply = self.run(line.split_whitespace().collect());
        let mut s = s;
        let _ = s.write_all(reply.as_bytes());
    }

    fn run(&mut self, words: Vec<&str>) -> String {
        let json = words.contains(&"--json");
        let words: Vec<&str> = words.into_iter().filter(|w| *w != "--json").collect();
        match words.as_slice() {
            ["show", what @ ("ports" | "workers" | "stats" | "rxqs")] => {
                let v = self.snapshot();
                let v = match *what {
                    "ports" => json!({ "ports": v["ports"] }),
                    "workers" => json!({ "workers": v["workers"] }),
                    "rxqs" => json!({ "rxqs": v["rxqs"] }),
                    _ => v,
                };
                if json { format!("{v}\n") } else { text(&v) }
            }
            ["show", "bridges"] => {
                let v = json!({ "bridges": self.view.bridges_json(false) });
                if json { format!("{v}\n") } else { bridges_text(&v["bridges"]) }
            }
            ["show", "macs", br] => {
                let all = self.view.bridges_json(true);
                match all.get(*br) {
                    None => format!("error: no bridge '{br}': see show bridges\n"),
                    Some(b) if json => format!("{}\n", json!({ "entries": b["entries"] })),
                    Some(b) => macs_text(&b["entries"]),
                }
            }
            ["clear", "stats"] => {
                self.base_ports = self.view.ports().into_iter().map(|p| (p.name, p.totals)).collect();
                self.base_workers = self.view.workers();
                "ok: stats shown from now on count from this moment (live counters untouched)\n".into()
            }
            ["set", "idle", mode @ ("poll" | "adaptive")] => {
                let m = if *mode == "adaptive" { IdleMode::Adaptive } else { IdleMode::Poll };
                self.idle.store(m as u8, Ordering::SeqCst);
                self.barrier.request();
                format!("ok: idle {}\n", m.name())
            }
            [first, ..] if crate::control::changes::is_change(first) => {
                let (tx, rx) = channel();
                let req = Request { words: words.iter().map(|w| w.to_string()).collect(), reply: tx };
                if self.main.send(req).is_err() {
                    return "error: pmdswitch is shutting down\n".into();
                }
                // The main thread answers once the workers took the change.
                rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| "error: no answer from the main thread in 30 s\n".into())
            }
            _ => format!(
                "error: unknown command '{}': use show ports|workers|rxqs|bridges|stats [--json], show macs BR, clear stats, set idle poll|adaptive, add-port, del-port, xconnect, del-xconnect, bridge add-port|del-port|flush|add-mac|del-mac|set, rebalance\n",
                words.join(" ")
            ),
        }
    }

    /// Counters since the last `clear stats`.
    fn snapshot(&self) -> Value {
        let mut ports = Map::new();
        let mut rxqs = Vec::new();
        let zero = PortTotals::default();
        for p in self.view.ports().iter() {
            let (t, b) = (&p.totals, self.base_ports.get(&p.name).unwrap_or(&zero));
            for q in &p.rxqs {
                rxqs.push(json!({"port": p.name, "queue": q.queue, "core": q.core, "packets": q.packets, "busy_cycles": q.busy_cycles,
                    "cycles_per_packet": if q.packets > 0 { q.busy_cycles as f64 / q.packets as f64 } else { 0.0 }}));
            }
            let mut drops = Map::new();
            for c in DropCause::ALL {
                drops.insert(c.name().into(), json!(t.drops[c as usize] - b.drops[c as usize]));
            }
            let mut o = json!({
                "kind": p.kind,
                "spec": p.spec,
                "rule": p.rule,
                "tx_lock_contended": p.tx_lock_contended,
                "rx_packets": t.rx_packets - b.rx_packets,
                "tx_packets": t.tx_packets - b.tx_packets,
                "rx_bytes": t.rx_bytes - b.rx_bytes,
                "tx_bytes": t.tx_bytes - b.tx_bytes,
                "drops": drops,
            });
            if let Some(c) = p.connected {
                o["connected"] = json!(c);
            }
            ports.insert(p.name.clone(), o);
        }
        let idle = IdleMode::from_u8(self.idle.load(Ordering::SeqCst)).name();
        let workers: Vec<Value> = self
            .view
            .workers()
            .iter()
            .zip(&self.base_workers)
            .map(|(w, b)| {
                let (busy, packets) = (w.busy_cycles - b.busy_cycles, w.packets - b.packets);
                json!({
                    "core": w.core, "idle_mode": idle,
                    "busy_cycles": busy, "idle_cycles": w.idle_cycles - b.idle_cycles, "packets": packets,
                    "cycles_per_packet": if packets == 0 { 0.0 } else { busy as f64 / packets as f64 },
                    "sleeps": w.sleeps - b.sleeps, "kick_wakeups": w.kick_wakeups - b.kick_wakeups,
                })
            })
            .collect();
        json!({ "ports": ports, "workers": workers, "rxqs": rxqs })
    }
}

fn text(v: &Value) -> String {
    let mut o = String::new();
    if let Some(ports) = v["ports"].as_object() {
        o.push_str(&format!("{:<12} {:<13} {:>14} {:>14} {:>10}\n", "port", "kind", "rx pkts", "tx pkts", "drops"));
        for (name, p) in ports {
            let drops: u64 = p["drops"].as_object().map(|d| d.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
            o.push_str(&format!(
                "{:<12} {:<13} {:>14} {:>14} {:>10}\n",
                name,
                p["kind"].as_str().unwrap_or(""),
                p["rx_packets"].as_u64().unwrap_or(0),
                p["tx_packets"].as_u64().unwrap_or(0),
                drops
            ));
        }
    }
    if let Some(qs) = v["rxqs"].as_array() {
        o.push_str(&format!("{:<12} {:>5} {:>5} {:>14} {:>12}\n", "rxq port", "queue", "core", "packets", "cycles/pkt"));
        for q in qs {
            o.push_str(&format!(
                "{:<12} {:>5} {:>5} {:>14} {:>12.1}\n",
                q["port"].as_str().unwrap_or(""),
                q["queue"].as_u64().unwrap_or(0),
                q["core"].as_u64().map_or("-".to_string(), |c| c.to_string()),
                q["packets"].as_u64().unwrap_or(0),
                q["cycles_per_packet"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    if let Some(ws) = v["workers"].as_array() {
        for w in ws {
            o.push_str(&format!(
                "worker core {:<3} idle {:<8} packets {:>14} {:>7.1} cycles/pkt  sleeps {}\n",
                w["core"],
                w["idle_mode"].as_str().unwrap_or(""),
                w["packets"].as_u64().unwrap_or(0),
                w["cycles_per_packet"].as_f64().unwrap_or(0.0),
                w["sleeps"].as_u64().unwrap_or(0)
            ));
        }
    }
    o
}

fn bridges_text(v: &Value) -> String {
    let mut o = String::new();
    for (name, b) in v.as_object().into_iter().flatten() {
        let ports: Vec<String> = b["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}({})", p["port"].as_str().unwrap_or(""), p["vlan"].as_str().unwrap_or("")))
            .collect();
        let t = &b["mac_table"];
        o.push_str(&format!(
            "bridge {name}: ports {}\n  macs {} (static {}) of {}, aging {} s; learned {} moves {} aged {} full {} learn_dropped {}\n",
            ports.join(" "),
            t["entries"],
            t["statics"],
            t["capacity"],
            t["aging_ms"].as_u64().unwrap_or(0) / 1000,
            t["learned"],
            t["moves"],
            t["aged"],
            t["full"],
            t["learn_dropped"]
        ));
    }
    if o.is_empty() {
        o.push_str("no bridges\n");
    }
    o
}

fn macs_text(v: &Value) -> String {
    let mut o = format!("{:<5} {:<18} {:<12} {:>8}\n", "vlan", "mac", "port", "age s");
    for e in v.as_array().into_iter().flatten() {
        let age =
            if e["static"] == true { "static".to_string() } else { format!("{:.1}", e["age_ms"].as_u64().unwrap_or(0) as f64 / 1000.0) };
        o.push_str(&format!(
            "{:<5} {:<18} {:<12} {:>8}\n",
            e["vlan"].as_u64().unwrap_or(0),
            e["mac"].as_str().unwrap_or(""),
            e["port"].as_str().unwrap_or(""),
            age
        ));
    }
    o
}
