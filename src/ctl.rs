//! The control socket and `pmdswitch ctl`: one request line, one reply, over a Unix
//! socket of mode 0600 (root, or whoever owns the socket).
//!
//! Commands: `show ports|workers|stats [--json]`, `clear stats` (records a baseline that
//! later `show`s subtract: the live counters, which the workers own, are never written),
//! `set idle poll|adaptive` (taken up by the workers at their reload point). Adding and
//! removing ports at run time is not implemented yet.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::observe::View;
use crate::preflight;
use crate::reload::ReloadBarrier;
use crate::stats::{DropCause, PortTotals, WorkerTotals};
use crate::worker::IdleMode;

pub const DEFAULT_DIR: &str = "/var/run/pmdswitch";

struct Server {
    view: Arc<View>,
    barrier: Arc<ReloadBarrier>,
    idle: Arc<AtomicU8>,
    base_ports: Vec<PortTotals>,
    base_workers: Vec<WorkerTotals>,
}

/// Binds `path` (creating its directory; a stale socket is replaced, a live one refused)
/// and answers requests until `stop` is set.
///
/// # Errors
/// The directory or socket cannot be created, or another pmdswitch serves the path.
pub fn serve(path: &Path, view: Arc<View>, barrier: Arc<ReloadBarrier>, idle: Arc<AtomicU8>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    preflight::check_server_socket("ctl", path).map_err(std::io::Error::other)?;
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    let n_ports = view.names.len();
    let n_workers = view.stats.len();
    let mut srv = Server {
        view,
        barrier,
        idle,
        base_ports: vec![PortTotals::default(); n_ports],
        base_workers: vec![WorkerTotals::default(); n_workers],
    };
    std::thread::Builder::new().name("pmds-ctl".into()).spawn(move || {
        // Polled every 100 ms for the stop flag; requests are rare.
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => srv.answer(s),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
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
            ["show", what @ ("ports" | "workers" | "stats")] => {
                let v = self.snapshot();
                let v = match *what {
                    "ports" => json!({ "ports": v["ports"] }),
                    "workers" => json!({ "workers": v["workers"] }),
                    _ => v,
                };
                if json { format!("{v}\n") } else { text(&v) }
            }
            ["clear", "stats"] => {
                self.base_ports = self.view.ports().iter().map(|p| p.totals).collect();
                self.base_workers = self.view.workers();
                "ok: stats shown from now on count from this moment (live counters untouched)\n".into()
            }
            ["set", "idle", mode @ ("poll" | "adaptive")] => {
                let m = if *mode == "adaptive" { IdleMode::Adaptive } else { IdleMode::Poll };
                self.idle.store(m as u8, Ordering::SeqCst);
                self.barrier.request();
                format!("ok: idle {}\n", m.name())
            }
            _ => format!(
                "error: unknown command '{}': use show ports|workers|stats [--json], clear stats, set idle poll|adaptive\n",
                words.join(" ")
            ),
        }
    }

    /// Counters since the last `clear stats`.
    fn snapshot(&self) -> Value {
        let mut ports = Map::new();
        for (i, p) in self.view.ports().iter().enumerate() {
            let (t, b) = (&p.totals, &self.base_ports[i]);
            let mut drops = Map::new();
            for c in DropCause::ALL {
                drops.insert(c.name().into(), json!(t.drops[c as usize] - b.drops[c as usize]));
            }
            let mut o = json!({
                "kind": p.kind,
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
        json!({ "ports": ports, "workers": workers })
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

/// `pmdswitch ctl`: sends `command`, prints the reply; Err carries a one-line message.
pub fn client(socket: Option<PathBuf>, command: &[String]) -> Result<String, String> {
    let path = match socket {
        Some(p) => p,
        None => {
            let found: Vec<PathBuf> = std::fs::read_dir(DEFAULT_DIR)
                .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "ctl")).collect())
                .unwrap_or_default();
            match found.as_slice() {
                [one] => one.clone(),
                [] => return Err(format!("no control socket in {DEFAULT_DIR}: is pmdswitch running? (or give --socket PATH)")),
                _ => return Err(format!("{} control sockets in {DEFAULT_DIR}: pick one with --socket PATH", found.len())),
            }
        }
    };
    let mut s = UnixStream::connect(&path).map_err(|e| format!("cannot connect to {}: {e}: is pmdswitch running?", path.display()))?;
    writeln!(s, "{}", command.join(" ")).map_err(|e| format!("send: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| format!("read: {e}"))?;
    match reply.strip_prefix("error: ") {
        Some(e) => Err(e.trim_end().to_string()),
        None => Ok(reply),
    }
}
