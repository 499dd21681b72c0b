//! What pmdswitch shows while it runs and when it stops: a live view over the workers'
//! counters, the JSON report, `/pmdswitch/` telemetry commands and the Prometheus text
//! exposition. Everything here only reads counters (single-writer atomics), from any
//! thread.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::utils::CachePadded;
use serde_json::{json, Map, Value};

use crate::datapath::bridge::table::MacTable;
use crate::datapath::stats::{self, DropCause, PortTotals, RxqCounters, WorkerStats, WorkerTotals};
use crate::datapath::worker::SharedTx;
use crate::dpdk::ethdev::{self, EthStats, PortId};
use crate::dpdk::telemetry::{self, Reply, Val};
use crate::dpdk::vhost::{self, VhostSlot};
use crate::parse::mac_str;

pub mod endpoint;
pub mod terminal;
pub mod text;

/// One rx queue of a port, for `show rxqs`.
pub struct RxqMeta {
    pub queue: u16,
    /// The core of the worker that polls it.
    pub core: Option<usize>,
    pub counters: Arc<CachePadded<RxqCounters>>,
}

/// A port as the observers see it (rebuilt by the control plane on every change).
pub struct PortMeta {
    pub index: usize,
    pub name: String,
    pub kind: &'static str,
    pub spec: String,
    pub slot: Option<Arc<VhostSlot>>,
    pub eth: Option<PortId>,
    /// Counters of the port index when this port was added (indices are reused).
    pub base: PortTotals,
    pub rxqs: Vec<RxqMeta>,
    /// The port's tx queues shared under a lock (none when every worker has its own).
    pub shared_tx: Vec<Arc<SharedTx>>,
    /// "none", "xconnect B" or "bridge NAME".
    pub rule: String,
}

pub struct BridgeMeta {
    pub name: String,
    pub table: Arc<MacTable>,
    /// (port index, port name, VLAN mode).
    pub members: Vec<(usize, String, String)>,
}

#[derive(Default)]
struct Inner {
    ports: Vec<PortMeta>,
    bridges: Vec<BridgeMeta>,
}

/// Read-only handles on everything that counts.
pub struct View {
    inner: RwLock<Inner>,
    /// The router's counters (`ctl show router --json`), refreshed by the main thread;
    /// Null while no interface routes.
    router: RwLock<Value>,
    pub stats: Vec<Arc<WorkerStats>>,
    /// TSC cycles per millisecond (the MAC tables' clock, for entry ages).
    pub cycles_per_ms: u64,
}

/// Per rx queue numbers.
#[derive(Debug, Clone)]
pub struct RxqReport {
    pub queue: u16,
    pub core: Option<usize>,
    pub packets: u64,
    pub busy_cycles: u64,
}

/// One port of the report.
pub struct PortReport {
    pub name: String,
    pub kind: &'static str,
    pub spec: String,
    pub rule: String,
    pub totals: PortTotals,
    pub eth: Option<EthStats>,
    pub connected: Option<bool>,
    /// vhost: the workers may serve the device (see `VhostSlot::is_served`).
    pub served: Option<bool>,
    pub guest_notifications: Option<u64>,
    /// Own vhost path: device-changing messages that found the device still withdrawn
    /// (a frontend's message storm, coalesced).
    pub messages_coalesced: Option<u64>,
    pub rxqs: Vec<RxqReport>,
    /// Contended takes of this port's shared tx queue locks.
    pub tx_lock_contended: u64,
}

impl View {
    pub fn new(stats: Vec<Arc<WorkerStats>>, cycles_per_ms: u64) -> View {
        View { inner: RwLock::new(Inner::default()), router: RwLock::new(Value::Null), stats, cycles_per_ms }
    }

    pub fn set_router(&self, v: Value) {
        *self.router.write().unwrap_or_else(|e| e.into_inner()) = v;
    }

    pub fn router(&self) -> Value {
        self.router.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The router's numeric counters flattened to (path, value), e.g. `drops/no_route`.
    pub fn router_counters(&self) -> Vec<(String, u64)> {
        fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, u64)>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") }, x, out);
                    }
                }
                Value::Number(n) => out.push((prefix.to_string(), n.as_u64().unwrap_or(0))),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk("", &self.router(), &mut out);
        out
    }

    pub fn set(&self, ports: Vec<PortMeta>, bridges: Vec<BridgeMeta>) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Inner { ports, bridges };
    }

    pub fn ports(&self) -> Vec<PortReport> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .ports
            .iter()
            .map(|m| PortReport {
                name: m.name.clone(),
                kind: m.kind,
                spec: m.spec.clone(),
                rule: m.rule.clone(),
                totals: stats::port_totals(&self.stats, m.index).since(&m.base),
                eth: m.eth.map(ethdev::stats_of),
                connected: m.slot.as_ref().map(|s| s.vid() != vhost::NO_VID),
                served: m.slot.as_ref().map(|s| s.is_served()),
                guest_notifications: m.slot.as_ref().map(|s| s.guest_notifications()),
                messages_coalesced: m.slot.as_ref().map(|s| s.messages_coalesced.load(Relaxed)),
                rxqs: m
                    .rxqs
                    .iter()
                    .map(|r| RxqReport {
                        queue: r.queue,
                        core: r.core,
                        packets: r.counters.packets.load(Relaxed),
                        busy_cycles: r.counters.busy_cycles.load(Relaxed),
                    })
                    .collect(),
                tx_lock_contended: m.shared_tx.iter().map(|q| q.contended()).sum(),
            })
            .collect()
    }

    pub fn port_names(&self) -> Vec<String> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).ports.iter().map(|p| p.name.clone()).collect()
    }

    /// Bridges with their table counters and (if `entries`) the MAC table itself.
    pub fn bridges_json(&self, entries: bool) -> Value {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let now_ms = crate::sys::rdtsc() / self.cycles_per_ms.max(1);
        let name_of = |p: u16| inner.ports.iter().find(|m| m.index == p as usize).map_or_else(|| format!("#{p}"), |m| m.name.clone());
        let mut out = Map::new();
        for b in &inner.bridges {
            let c = b.table.counters();
            let mut o = json!({
                "ports": b.members.iter().map(|(_, n, v)| json!({"port": n, "vlan": v})).collect::<Vec<_>>(),
                "mac_table": {
                    "entries": c.entries, "statics": c.statics, "capacity": c.capacity, "aging_ms": b.table.aging_ms(),
                    "learned": c.learned, "moves": c.moves, "aged": c.aged, "flushed": c.flushed, "full": c.full,
                    "learn_dropped": c.learn_dropped, "bad_src": c.bad_src, "static_conflicts": c.static_conflicts,
                    // Requests waiting for the learner now, and the table's fixed memory.
                    "learn_queued": (0..b.table.workers()).map(|w| b.table.queued(w)).sum::<usize>(),
                    "buckets": b.table.buckets(), "memory_bytes": b.table.buckets() * 32,
                },
            });
            if entries {
                o["entries"] = b
                    .table
                    .entries(now_ms)
                    .iter()
                    .map(|e| json!({"vlan": e.vlan, "mac": mac_str(&e.mac), "port": name_of(e.port), "static": e.is_static, "age_ms": e.age_ms}))
                    .collect();
            }
            out.insert(b.name.clone(), o);
        }
        Value::Object(out)
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
        let fields: [(&str, &str, Field); 10] = [
            ("port_rx_packets_total", "Packets received on the port.", |r| Some(r.totals.rx_packets)),
            ("port_tx_packets_total", "Packets sent on the port.", |r| Some(r.totals.tx_packets)),
            ("port_rx_bytes_total", "Bytes received on the port.", |r| Some(r.totals.rx_bytes)),
            ("port_tx_bytes_total", "Bytes sent on the port.", |r| Some(r.totals.tx_bytes)),
            ("port_held_total", "Own vhost path: frames held back in the ingress ring while the egress guest had no buffers.", |r| {
                Some(r.totals.held)
            }),
            ("port_rings_broken_total", "Own vhost path: guest vrings found broken (an index moved by more than the ring size).", |r| {
                Some(r.totals.rings_broken)
            }),
            (
                "port_ring_capped_total",
                "Own vhost path: bursts cut short by the per-burst descriptor cap or the bound on fresh looks at a moving ring.",
                |r| Some(r.totals.ring_capped),
            ),
            ("port_guest_notifications_total", "Call eventfd writes towards the guest (vhost ports).", |r| r.guest_notifications),
            (
                "port_messages_coalesced_total",
                "Own vhost path: device-changing vhost-user messages that found the device still withdrawn.",
                |r| r.messages_coalesced,
            ),
            ("port_punted_total", "Router: frames handed to the slow path.", |r| Some(r.totals.punted)),
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
                o.push_str(&format!(
                    "pmdswitch_port_drops_total{{port=\"{}\",cause=\"{}\"}} {}\n",
                    esc(&r.name),
                    c.name(),
                    r.totals.drops[c as usize]
                ));
            }
        }
        type WField = fn(&WorkerTotals) -> u64;
        let wfields: [(&str, &str, WField); 7] = [
            ("worker_busy_cycles_total", "TSC cycles of iterations that moved packets.", |w| w.busy_cycles),
            ("worker_idle_cycles_total", "TSC cycles of empty iterations and sleeps.", |w| w.idle_cycles),
            ("worker_packets_total", "Packets received by the worker.", |w| w.packets),
            ("worker_busy_polls_total", "Iterations that moved packets (packets / this = mean burst).", |w| w.busy_polls),
            ("worker_sleeps_total", "Adaptive-idle sleeps.", |w| w.sleeps),
            ("worker_kick_wakeups_total", "Sleeps ended by a guest kick.", |w| w.kick_wakeups),
            ("worker_reloads_total", "Reload points passed (plans, device changes).", |w| w.reloads),
        ];
        let workers = self.workers();
        for (name, help, f) in wfields {
            counter(&mut o, name, help);
            for w in &workers {
                o.push_str(&format!("pmdswitch_{name}{{core=\"{}\"}} {}\n", w.core, f(w)));
            }
        }
        // The router's slow path and tables: one metric per family, the kind in a label.
        let r = self.router();
        if !r.is_null() {
            let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
                o.push_str(&format!("# HELP pmdswitch_{name} {help}\n# TYPE pmdswitch_{name} gauge\npmdswitch_{name} {v}\n"));
            };
            gauge(&mut o, "router_routes_v4", "IPv4 routes in the FIB.", r["routes"]["v4"].as_u64().unwrap_or(0));
            gauge(&mut o, "router_routes_v6", "IPv6 routes in the FIB.", r["routes"]["v6"].as_u64().unwrap_or(0));
            gauge(&mut o, "router_neighbours", "Neighbour table entries.", r["neighbours"].as_u64().unwrap_or(0));
            gauge(&mut o, "router_fib_bytes", "Memory of the FIB tables.", r["fib_bytes"].as_u64().unwrap_or(0));
            for (name, key, label, help) in [
                ("router_punted_total", "punted", "why", "Frames the slow path took, by reason."),
                ("router_icmp_errors_total", "icmp_errors", "type", "ICMP errors sent, by type."),
                ("router_slow_drops_total", "drops", "cause", "Frames the slow path dropped, by cause."),
            ] {
                counter(&mut o, name, help);
                if let Some(m) = r[key].as_object() {
                    for (k, v) in m {
                        o.push_str(&format!("pmdswitch_{name}{{{label}=\"{}\"}} {}\n", esc(k), v.as_u64().unwrap_or(0)));
                    }
                }
            }
            for k in
                ["arp_requests_sent", "arp_replies_sent", "ns_sent", "na_sent", "echo_replies", "resolved", "released", "fragments_sent"]
            {
                counter(&mut o, &format!("router_{k}_total"), &format!("Slow path: {}.", k.replace('_', " ")));
                o.push_str(&format!("pmdswitch_router_{k}_total {}\n", r[k].as_u64().unwrap_or(0)));
            }
        }
        o
    }
}

/// Serves `GET /metrics` on `addr` (e.g. `127.0.0.1:9464`) until `stop` is set. The
/// listener is polled every 100 ms for the stop flag (no busy wait); each client is
/// served on a thread of its own with a bounded request line read against a deadline
/// ([`endpoint`]), so a slow client neither starves others nor holds up shutdown.
///
/// # Errors
/// The address cannot be bound.
pub fn serve_prometheus(addr: &str, view: Arc<View>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new().name("pmds-metrics".into()).spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => {
                    let view = view.clone();
                    let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    endpoint::spawn(s, &active, "pmds-metrics-client", busy, move |mut s| {
                        let (status, body) = match endpoint::read_http_head(&mut s, 8192, endpoint::READ_DEADLINE) {
                            Err(endpoint::Refused::Gone) => return,
                            Ok(line) if line.starts_with("GET /metrics") || line.starts_with("GET / ") => ("200 OK", view.prometheus()),
                            Ok(_) => ("404 Not Found", "try /metrics\n".to_string()),
                            Err(e) => ("400 Bad Request", format!("{}\n", e.message(8192))),
                        };
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
pub fn report_json(
    reports: &[PortReport],
    workers: &[WorkerTotals],
    bridges: Value,
    elapsed: f64,
    tsc_hz: u64,
    size: u32,
    baseline: u32,
    in_use: u32,
) -> Value {
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
            "held": r.totals.held,
            "rings_broken": r.totals.rings_broken,
            "ring_capped": r.totals.ring_capped,
            "punted": r.totals.punted,
            "drops": drops,
            "spec": r.spec,
            "rule": r.rule,
            "rxqs": rxqs_json(&r.rxqs),
            "tx_lock_contended": r.tx_lock_contended,
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
        if let Some(n) = r.messages_coalesced {
            o["messages_coalesced"] = json!(n);
        }
        ports.insert(r.name.clone(), o);
    }
    let workers: Vec<Value> = workers
        .iter()
        .map(|w| {
            json!({
                "core": w.core, "busy_cycles": w.busy_cycles, "idle_cycles": w.idle_cycles,
                "packets": w.packets, "cycles_per_packet": w.cycles_per_packet(),
                "busy_polls": w.busy_polls, "sleeps": w.sleeps, "kick_wakeups": w.kick_wakeups, "reloads": w.reloads,
            })
        })
        .collect();
    json!({
        "ports": ports,
        "bridges": bridges,
        "workers": workers,
        "mempool": {"size": size, "in_use_baseline": baseline, "in_use_end": in_use},
        "duration_s": elapsed,
        "tsc_hz": tsc_hz,
    })
}

pub fn rxqs_json(r: &[RxqReport]) -> Value {
    r.iter().map(|q| json!({"queue": q.queue, "core": q.core, "packets": q.packets, "busy_cycles": q.busy_cycles})).collect()
}

/// `/pmdswitch/...` telemetry commands (see docs/operations.md, Telemetry). They read the live view,
/// so ports added or removed at run time show up. Failing to register is not fatal:
/// forwarding matters more than its observability.
pub fn register_telemetry(view: &Arc<View>) {
    let mut res = Vec::new();
    let v = view.clone();
    res.push(telemetry::register("/pmdswitch/ports", "Port names. Takes no parameters", move |_| Reply::Strings(v.port_names())));
    let v = view.clone();
    res.push(telemetry::register("/pmdswitch/port", "Counters of one port. Parameter: port name", move |arg| {
        let Some(r) = v.ports().into_iter().find(|r| r.name == arg) else { return Reply::Invalid };
        let t = r.totals;
        let mut kv = vec![
            ("name".to_string(), Val::Str(r.name.clone())),
            ("kind".to_string(), Val::Str(r.kind.to_string())),
            ("rx_packets".to_string(), Val::U64(t.rx_packets)),
            ("tx_packets".to_string(), Val::U64(t.tx_packets)),
            ("rx_bytes".to_string(), Val::U64(t.rx_bytes)),
            ("tx_bytes".to_string(), Val::U64(t.tx_bytes)),
        ];
        for c in DropCause::ALL {
            kv.push((format!("drops/{}", c.name()), Val::U64(t.drops[c as usize])));
        }
        if let Some(c) = r.connected {
            kv.push(("connected".to_string(), Val::U64(c as u64)));
        }
        if let Some(n) = r.guest_notifications {
            kv.push(("guest_notifications".to_string(), Val::U64(n)));
        }
        if let Some(n) = r.messages_coalesced {
            kv.push(("messages_coalesced".to_string(), Val::U64(n)));
        }
        Reply::Dict(kv)
    }));
    let v = view.clone();
    res.push(telemetry::register(
        "/pmdswitch/rxqs",
        "Packets and busy cycles per rx queue (PORT/QUEUE/...). Takes no parameters",
        move |_| {
            let mut kv = Vec::new();
            for r in v.ports() {
                for q in &r.rxqs {
                    kv.push((format!("{}/{}/core", r.name, q.queue), Val::U64(q.core.map_or(u64::MAX, |c| c as u64))));
                    kv.push((format!("{}/{}/packets", r.name, q.queue), Val::U64(q.packets)));
                    kv.push((format!("{}/{}/busy_cycles", r.name, q.queue), Val::U64(q.busy_cycles)));
                }
            }
            Reply::Dict(kv)
        },
    ));
    let st = view.stats.clone();
    res.push(telemetry::register("/pmdswitch/workers", "Worker cores. Takes no parameters", move |_| {
        Reply::U64s(st.iter().map(|w| w.core as u64).collect())
    }));
    let st = view.stats.clone();
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
    let v = view.clone();
    res.push(telemetry::register("/pmdswitch/drops", "Drops by port and cause (PORT/CAUSE). Takes no parameters", move |_| {
        let mut kv = Vec::new();
        for r in v.ports() {
            for c in DropCause::ALL {
                kv.push((format!("{}/{}", r.name, c.name()), Val::U64(r.totals.drops[c as usize])));
            }
        }
        Reply::Dict(kv)
    }));
    let v = view.clone();
    res.push(telemetry::register("/pmdswitch/bridges", "MAC table counters per bridge (BRIDGE/COUNTER). Takes no parameters", move |_| {
        let mut kv = Vec::new();
        if let Value::Object(bs) = v.bridges_json(false) {
            for (name, b) in bs {
                if let Some(t) = b["mac_table"].as_object() {
                    for (k, x) in t {
                        kv.push((format!("{name}/{k}"), Val::U64(x.as_u64().unwrap_or(0))));
                    }
                }
            }
        }
        Reply::Dict(kv)
    }));
    let v = view.clone();
    res.push(telemetry::register(
        "/pmdswitch/router",
        "Router counters (routes, neighbours, slow path by cause). Takes no parameters",
        move |_| Reply::Dict(v.router_counters().into_iter().map(|(k, x)| (k, Val::U64(x))).collect()),
    ));
    if let Some(Err(e)) = res.into_iter().find(|r| r.is_err()) {
        eprintln!("pmdswitch: warning: telemetry commands unavailable: {e}");
    }
}
