//! The control socket: one request line, one reply, over a Unix socket of mode 0600
//! (root, or whoever owns the socket). Each client is served on a thread of its own,
//! with a bounded request read against a deadline (`observe::endpoint`: a slow or
//! hostile client starves no other and never holds up shutdown). Requests are parsed
//! once (`protocol`); queries are answered here (`clear stats` records a baseline that later
//! `show`s subtract: the live counters, which the workers own, are never written; `set
//! idle` is taken up by the workers at their reload point); changes are handed to the
//! main thread, which owns the port table, and answered when the workers have taken them
//! (`changes`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::control::protocol::{self, Change, Command, Query, Request, Show};
use crate::datapath::reload::ReloadBarrier;
use crate::datapath::stats::{DropCause, PortTotals, WorkerTotals};
use crate::datapath::worker::IdleMode;
use crate::observe::endpoint::{self, Refused};
use crate::observe::{text, View};
use crate::startup::preflight;
use crate::sys::peer;

/// A request is one command line: far below this.
const REQUEST_MAX: usize = 8192;

/// `route load` reads route files up to this size (a million IPv4 routes is ~40 MB).
const ROUTE_FILE_MAX: u64 = 512 << 20;

struct Server {
    view: Arc<View>,
    barrier: Arc<ReloadBarrier>,
    idle: Arc<AtomicU8>,
    base_ports: HashMap<String, PortTotals>,
    base_workers: Vec<WorkerTotals>,
}

/// A change for the main thread, and where its one-line answer goes.
pub struct ChangeRequest {
    pub change: Change,
    /// The request asked for JSON (`--json`): shows answer in it.
    pub json: bool,
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
) -> std::io::Result<(JoinHandle<()>, Receiver<ChangeRequest>)> {
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
    let n_workers = view.stats.len();
    let (tx, rx) = channel();
    let srv = Arc::new(Mutex::new(Server {
        view,
        barrier,
        idle,
        base_ports: HashMap::new(),
        base_workers: vec![WorkerTotals::default(); n_workers],
    }));
    let active = Arc::new(AtomicUsize::new(0));
    let h = std::thread::Builder::new().name("pmds-ctl".into()).spawn(move || {
        // Blocking accept (a route churn sends thousands of requests a second); each
        // client then on its own thread. Stopping sets the flag, then connects once to
        // wake this (`wake`); clients still being served are not waited for.
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) if !stop.load(Ordering::SeqCst) => {
                    let (srv, main) = (srv.clone(), tx.clone());
                    let busy = format!("error: {} control clients are being served: try again\n", endpoint::MAX_CLIENTS);
                    endpoint::spawn(s, &active, "pmds-ctl-client", busy.as_bytes(), move |s| answer(s, &srv, &main));
                }
                Ok(_) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })?;
    Ok((h, rx))
}

/// Wakes the control thread blocked in accept (after its stop flag was set), so that it
/// can be joined.
pub fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

/// Serves one client: its request line, then one reply (written with a timeout).
fn answer(mut s: UnixStream, srv: &Mutex<Server>, main: &Sender<ChangeRequest>) {
    let reply = match endpoint::read_line(&mut s, REQUEST_MAX, endpoint::READ_DEADLINE) {
        Err(Refused::Gone) => return,
        Err(e) => format!("error: {}\n", e.message(REQUEST_MAX)),
        Ok(line) => match Request::parse(&line) {
            Ok(r) => run(r, &s, srv, main),
            Err(e) => format!("error: {e}\n"),
        },
    };
    let _ = s.write_all(reply.as_bytes());
}

/// A query is answered here, under the server's lock (quick); a change goes to the main
/// thread and is waited for without it.
fn run(r: Request, s: &UnixStream, srv: &Mutex<Server>, main: &Sender<ChangeRequest>) -> String {
    let json = r.json;
    let mut change = match r.command {
        Command::Query(q) => return srv.lock().unwrap_or_else(|e| e.into_inner()).query(q, json),
        Command::Change(change) => change,
    };
    // A route file of a million lines takes seconds; anything else is quick.
    let mut wait = 30;
    if let Change::Router(protocol::RouterCmd::RouteLoad { path, text, .. }) = &mut change {
        match read_route_file(path, peer::credentials(s)) {
            Ok(t) => *text = t,
            Err(e) => return format!("error: {e}\n"),
        }
        wait = 600;
    }
    let (tx, rx) = channel();
    if main.send(ChangeRequest { change, json, reply: tx }).is_err() {
        return "error: pmdswitch is shutting down\n".into();
    }
    // The main thread answers once the workers took the change.
    rx.recv_timeout(Duration::from_secs(wait)).unwrap_or_else(|_| format!("error: no answer from the main thread in {wait} s\n"))
}

/// The text of route file `path`, read for a client with credentials `client` (uid,
/// gid): a regular file (opened without blocking, so a FIFO or a device is refused, not
/// waited on), at most [`ROUTE_FILE_MAX`] bytes, and, for a client other than root (one
/// let in by `--socket-group`), only a file that client could read itself — its
/// directories searchable and the file readable by its uid or gid — so the socket never
/// reads, or quotes in an error, what its client may not see.
pub fn read_route_file(path: &str, client: Option<(u32, u32)>) -> Result<String, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open route file {path}: {e}"))?;
    let m = f.metadata().map_err(|e| format!("route file {path}: {e}"))?;
    if !m.is_file() {
        return Err(format!("{path} is not a regular file: route load reads route files only"));
    }
    if m.len() > ROUTE_FILE_MAX {
        return Err(format!("route file {path} is {} MiB: at most {} MiB (split it)", m.len() >> 20, ROUTE_FILE_MAX >> 20));
    }
    match client {
        Some((uid, gid)) if uid != 0 => may_read(path, &m, uid, gid)?,
        // Root (the socket's default mode lets in no one else), or no credentials: a
        // socket without them is refused.
        Some(_) => {}
        None => return Err("the control socket could not tell who is asking: route load refused".into()),
    }
    let mut text = String::new();
    f.take(ROUTE_FILE_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("route file {path}: {e} (a route file is text: one 'PREFIX TARGET' per line)"))?;
    Ok(text)
}

/// Whether uid/gid may read the file `m` at `path` (mode bits, owner, group; every
/// directory on the way searchable). Supplementary groups are not considered: refusing
/// is the safe side.
fn may_read(path: &str, m: &std::fs::Metadata, uid: u32, gid: u32) -> Result<(), String> {
    let allows = |m: &std::fs::Metadata, bit: u32| {
        let mode = m.mode();
        if m.uid() == uid {
            mode & (bit << 6) != 0
        } else if m.gid() == gid {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    };
    let refuse =
        || format!("route file {path}: not readable by the requesting user (uid {uid}): pmdswitch reads it only for users who could");
    let full = std::fs::canonicalize(path).map_err(|_| refuse())?;
    for dir in full.ancestors().skip(1) {
        let d = std::fs::metadata(dir).map_err(|_| refuse())?;
        if !allows(&d, 0o1) {
            return Err(refuse());
        }
    }
    if allows(m, 0o4) {
        Ok(())
    } else {
        Err(refuse())
    }
}

impl Server {
    fn query(&mut self, q: Query, json: bool) -> String {
        match q {
            Query::Show(what @ (Show::Ports | Show::Workers | Show::Rxqs | Show::Stats)) => {
                let v = self.snapshot();
                let v = match what {
                    Show::Ports => json!({ "ports": v["ports"] }),
                    Show::Workers => json!({ "workers": v["workers"] }),
                    Show::Rxqs => json!({ "rxqs": v["rxqs"] }),
                    Show::Stats | Show::Bridges => v,
                };
                if json {
                    format!("{v}\n")
                } else {
                    text::counters(&v)
                }
            }
            Query::Show(Show::Bridges) => {
                let v = json!({ "bridges": self.view.bridges_json(false) });
                if json {
                    format!("{v}\n")
                } else {
                    text::bridges(&v["bridges"])
                }
            }
            Query::ShowMacs { bridge } => {
                let all = self.view.bridges_json(true);
                match all.get(&bridge) {
                    None => format!("error: no bridge '{bridge}': see show bridges\n"),
                    Some(b) if json => format!("{}\n", json!({ "entries": b["entries"] })),
                    Some(b) => text::macs(&b["entries"]),
                }
            }
            Query::ClearStats => {
                self.base_ports = self.view.ports().into_iter().map(|p| (p.name, p.totals)).collect();
                self.base_workers = self.view.workers();
                "ok: stats shown from now on count from this moment (live counters untouched)\n".into()
            }
            Query::SetIdle(m) => {
                self.idle.store(m as u8, Ordering::SeqCst);
                self.barrier.request();
                format!("ok: idle {}\n", m.name())
            }
            Query::Help => format!("ok: commands:\n{}", protocol::help()),
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
                "held": t.held - b.held,
                "rings_broken": t.rings_broken - b.rings_broken,
                "ring_capped": t.ring_capped - b.ring_capped,
                "punted": t.punted - b.punted,
                "drops": drops,
            });
            if let Some(c) = p.connected {
                o["connected"] = json!(c);
            }
            if let Some(v) = p.served {
                o["served"] = json!(v);
            }
            if let Some(n) = p.messages_coalesced {
                o["messages_coalesced"] = json!(n);
            }
            ports.insert(p.name.clone(), o);
        }
        let idle = IdleMode::from_u8(self.idle.load(Ordering::SeqCst)).name();
        let workers: Vec<Value> = self
            .view
            .workers()
            .iter()
            .zip(&self.base_workers)
            .enumerate()
            .map(|(i, (w, b))| {
                let (busy, packets) = (w.busy_cycles - b.busy_cycles, w.packets - b.packets);
                json!({
                    "core": w.core, "idle_mode": idle,
                    "busy_cycles": busy, "idle_cycles": w.idle_cycles - b.idle_cycles, "packets": packets,
                    "cycles_per_packet": if packets == 0 { 0.0 } else { busy as f64 / packets as f64 },
                    "busy_polls": w.busy_polls - b.busy_polls,
                    "sleeps": w.sleeps - b.sleeps, "kick_wakeups": w.kick_wakeups - b.kick_wakeups,
                    "reloads": w.reloads - b.reloads,
                    "reload_pending": self.barrier.behind(i),
                })
            })
            .collect();
        json!({ "ports": ports, "workers": workers, "rxqs": rxqs })
    }
}
