//! The switch as one library object: [`Switch::start`] builds it from a checked
//! [`SwitchConfig`], [`Switch::serve`] runs the main thread's share (control requests, the
//! MAC tables' upkeep, the watchdog's verdict), [`Switch::apply`] and [`Switch::reload`]
//! change it while it forwards, and [`Switch::shutdown`] tears it down in reverse and
//! returns the [`Report`]. `pmdswitch run` is a thin edge over it; tests start it in
//! their own process.
//!
//! ```text
//!   flags ─┐
//!   TOML ──┼─ SwitchConfig ── start ──> Switch ── serve ⟲ (ctl, SIGHUP: apply / reload as a diff)
//!   ctl ───┘                              │
//!                                      shutdown ──> Report
//! ```

pub mod config;
pub mod diff;
pub mod watchdog;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::RunArgs;
use crate::control::changes::Control;
use crate::control::linux;
use crate::control::plane::{BridgeEntry, Plane, PortEntry, PortRt, Rule, MAX_PORTS};
use crate::control::ports::Opener;
use crate::control::protocol::Change;
use crate::control::router::neigh::Timing;
use crate::control::router::{slow, Prefix, RouterCtl};
use crate::control::server::{self, ChangeRequest};
use crate::datapath::bridge::fwd::Bridge;
use crate::datapath::bridge::table::MacTable;
use crate::datapath::bridge::vlan::VlanMode;
use crate::datapath::reload::ReloadBarrier;
use crate::datapath::route::qsbr::Qsbr;
use crate::datapath::route::{RouteIn, Router, RouterSize};
use crate::datapath::stats::{PortTotals, WorkerStats, WorkerTotals};
use crate::datapath::vxlan::{self, Path as VxPath, Vtep};
use crate::datapath::wire::vxlan::Outer;
use crate::datapath::worker::{Idle, IdleMode, MsClock, TxSource, Worker};
use crate::dpdk::eal::Eal;
use crate::dpdk::mempool::Mempool;
use crate::dpdk::telemetry;
use crate::dpdk::vhost::{self, DeviceEvent};
use crate::observe::{self, PortReport, View};
use crate::parse::{PortDef, PortSpec};
use crate::startup::{self, Failure};

pub use config::SwitchConfig;
use watchdog::Watchdog;

/// What a stopped switch reports: the counters as `--stats-json` writes them.
pub struct Report {
    pub ports: Vec<PortReport>,
    pub workers: Vec<WorkerTotals>,
    pub elapsed: f64,
    pub tsc_hz: u64,
    /// Mbufs in use when forwarding began (parked in ethdev rx rings) and at the end.
    pub baseline: u32,
    pub in_use_end: u32,
    pub json: Value,
    /// False when a worker did not stop: the ports and memory were left as they were
    /// (never unmapped under a thread that may still touch them).
    pub clean: bool,
}

/// A running switch. Dropping it shuts it down as [`Switch::shutdown`] does (the report
/// is lost then): a test that fails half-way leaves no worker polling freed memory.
pub struct Switch(Option<Parts>);

impl Switch {
    /// Starts the EAL, opens the ports, builds the bridges, the router and the tunnels,
    /// and starts the workers, the control socket and the watchdog. `cli` is the command
    /// line `config` came from (what a reload merges the file under).
    ///
    /// # Errors
    /// What failed, with the fix; nothing is left running. `rte_eal_init` works once per
    /// process, so a process starts at most one switch.
    pub fn start(config: SwitchConfig, cli: RunArgs) -> Result<Switch, Failure> {
        Parts::start(config, cli).map(|p| Switch(Some(p)))
    }

    fn p(&self) -> &Parts {
        self.0.as_ref().expect("a switch is running until shutdown")
    }

    fn pm(&mut self) -> &mut Parts {
        self.0.as_mut().expect("a switch is running until shutdown")
    }

    /// The counters, for printing and for tests.
    pub fn view(&self) -> &Arc<View> {
        &self.p().view
    }

    /// The configuration started with or last reloaded.
    pub fn config(&self) -> &SwitchConfig {
        &self.p().config
    }

    /// What runs now by name: the last config with every `ctl` change since.
    pub fn running(&self) -> &config::Running {
        &self.p().running
    }

    /// Reloads applied and refused so far.
    pub fn reloads(&self) -> (u64, u64) {
        self.p().reloads
    }

    /// The line `run` prints once forwarding: workers, cores, pool.
    pub fn banner(&self) -> String {
        self.p().banner()
    }

    /// The main thread's work until `until` (or one tick, whichever is first): control
    /// requests (answered as they come), the MAC tables' upkeep, the router's counters,
    /// tunnels' ways, broken vrings said once.
    ///
    /// # Errors
    /// A worker panicked or stalled (the watchdog's words): the caller shuts the switch
    /// down and exits non-zero.
    pub fn serve(&mut self, until: Instant) -> Result<(), Failure> {
        self.pm().serve(until)
    }

    /// One control request: a change of ports, rules, addresses or routes, a reload of
    /// the config file, or `show config`. The answer is what `ctl` prints.
    pub fn handle(&mut self, change: &Change, json: bool) -> String {
        self.pm().handle(change, json)
    }

    /// Applies `changes` in order, all or nothing: when one is refused, the ones before it
    /// are undone in reverse and the switch runs as before.
    ///
    /// # Errors
    /// The refused change and why.
    pub fn apply(&mut self, changes: &[Change]) -> Result<Vec<String>, String> {
        self.pm().apply(changes)
    }

    /// Reads the config file again (merged under the command line, as at start), checks
    /// it whole, and applies the difference to what runs: unchanged ports keep
    /// forwarding untouched. A bad file, or a change that needs a restart, is refused
    /// and the switch keeps its running config.
    ///
    /// # Errors
    /// One line: the file's first error (file:line:column) or the change refused.
    pub fn reload(&mut self) -> Result<String, String> {
        self.pm().reload()
    }

    /// Stops the switch: control and metrics endpoints first, then the slow path, the
    /// workers (they own the queues), the ports, the pool and the EAL.
    pub fn shutdown(mut self) -> Report {
        self.0.take().expect("a switch is running until shutdown").shutdown()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.shutdown();
        }
    }
}

/// What a running switch holds.
struct Parts {
    /// The configuration started with, or last reloaded: the settings only a restart
    /// changes are read from it.
    config: SwitchConfig,
    /// What a reload or `ctl` can change, as it runs now.
    running: config::Running,
    /// The command line as given (without its file): a reload merges the file again
    /// under it.
    cli: RunArgs,
    eal: Eal,
    pool: Arc<Mempool>,
    plane: Plane,
    control: Control,
    view: Arc<View>,
    rctl: Arc<Mutex<RouterCtl>>,
    barrier: Arc<ReloadBarrier>,
    vteps: Vec<Arc<Vtep>>,
    workers: Vec<JoinHandle<()>>,
    watchdog: Watchdog,
    metrics: Option<JoinHandle<()>>,
    metrics_stop: Arc<AtomicBool>,
    ctl: JoinHandle<()>,
    ctl_path: PathBuf,
    requests: Receiver<ChangeRequest>,
    slow: JoinHandle<()>,
    slow_stop: Arc<AtomicBool>,
    mirror: Option<JoinHandle<()>>,
    cores: Vec<usize>,
    main_cpu: usize,
    mbufs: u32,
    tsc_hz: u64,
    cycles_per_ms: u64,
    baseline: u32,
    start: Instant,
    tick: Duration,
    /// Broken guest vrings, said once each (workers only count them).
    broken: HashMap<String, u64>,
    next_check: Instant,
    /// Reloads applied and refused.
    reloads: (u64, u64),
}

/// Each tunnel's way to its remote VTEP as the router sees it now: the outer headers
/// are rebuilt when the route or the next hop's MAC changes (a host of a connected
/// subnet not known yet is asked for by the slow path meanwhile).
fn resolve_vteps(vteps: &[Arc<Vtep>], rctl: &Mutex<RouterCtl>) {
    if vteps.is_empty() {
        return;
    }
    let mut r = rctl.lock().unwrap_or_else(|e| e.into_inner());
    for v in vteps {
        let p = r.path_to(v.remote).map(|(port, src, dst, mtu)| VxPath {
            outer: Outer::new(src, dst, v.local, v.remote, v.udp_port, v.vni),
            port,
            mtu,
        });
        v.set_path(p);
    }
}

impl Parts {
    /// [`Switch::start`].
    fn start(config: SwitchConfig, cli: RunArgs) -> Result<Parts, Failure> {
        let plan = config;
        let rt = |m: String| Failure::Runtime(m);
        let (eal, capture) = startup::start_eal(&plan.eal, plan.own_prefix.as_deref(), plan.verbose)?;
        let main_cpu = eal.main_lcore_cpu() as usize;
        if plan.cores.contains(&main_cpu) && !plan.share_main_core {
            return Err(Failure::Usage(format!(
                "core {main_cpu} is the EAL main core: pick other --cores, or move the main core with -- -l N"
            )));
        }
        let tsc_hz = eal.tsc_hz();
        let cycles_per_ms = (tsc_hz / 1000).max(1);

        // One worker per core, but no more workers than rx queues.
        let total_rxqs: usize = plan.queues.iter().map(|&q| q as usize).sum();
        let mut cores = plan.cores.clone();
        for (_, _, c) in &plan.affinity {
            // A pinned core keeps its worker even beyond the rx queue count.
            if let Some(i) = cores.iter().position(|x| x == c) {
                let c = cores.remove(i);
                cores.insert(0, c);
            }
        }
        cores.truncate(total_rxqs.max(1).max(plan.affinity.iter().map(|x| x.2).collect::<std::collections::HashSet<_>>().len()));
        cores.sort_unstable_by_key(|c| plan.cores.iter().position(|x| x == c));
        let n_workers = cores.len();
        let barrier = Arc::new(ReloadBarrier::new(n_workers).map_err(|e| rt(format!("cannot create worker doorbells: {e}")))?);
        {
            let b = barrier.clone();
            vhost::set_device_hook(move |slot, ev| {
                match ev {
                    DeviceEvent::Added => {
                        println!("pmdswitch: port {}: vhost device attached on {} ({})", slot.name, slot.path, slot.offloads());
                        b.request();
                    }
                    DeviceEvent::Removed => {
                        // Do not return until no worker can touch the old vid.
                        b.request_and_wait();
                        println!("pmdswitch: port {}: vhost device detached", slot.name);
                    }
                    // Called with a vring lock held: only ask, never wait.
                    DeviceEvent::VringChanged | DeviceEvent::Resume => {
                        b.request();
                    }
                    // Own data path, before a message that changes the device: no worker may
                    // serve its rings when this returns.
                    DeviceEvent::Pause => b.request_and_wait(),
                }
                let _ = std::io::stdout().flush();
            });
        }

        let mbufs = plan.mbufs.unwrap_or_else(|| config::pool_size(&plan, n_workers as u32));
        let pool = Arc::new(
            Mempool::pktmbuf_pool_create(eal.token(), "pmds_pool", mbufs, startup::POOL_CACHE, 2048 + 128, -1)
                .map_err(|e| rt(format!("{e}: reserve more hugepages (scripts/setup.sh --hugepages N) or lower --mbufs")))?,
        );
        let opener = Opener {
            ring_size: plan.ring_size,
            rx_intr: plan.idle == IdleMode::Adaptive,
            socket_mode: plan.socket_mode,
            socket_uid: plan.socket_uid,
            socket_gid: plan.socket_gid,
            workers: n_workers,
            pool: pool.clone(),
            datapath: plan.datapath,
            eal: eal.token(),
        };
        let stats: Vec<Arc<WorkerStats>> = cores.iter().map(|&c| Arc::new(WorkerStats::new(c, MAX_PORTS))).collect();
        let view = Arc::new(View::new(stats.clone(), cycles_per_ms));
        // The router's tables exist from the start (addresses may come later through ctl);
        // untouched, they cost address space, not memory.
        let router = Arc::new(Router::new(RouterSize::default(), Arc::new(Qsbr::new(n_workers)), n_workers));
        let rctl = Arc::new(Mutex::new(RouterCtl::new(router.clone(), Timing::default())));
        rctl.lock().unwrap_or_else(|e| e.into_inner()).barrier = Some(barrier.clone());
        let mut plane = Plane {
            ports: (0..MAX_PORTS).map(|_| None).collect(),
            bridges: Vec::new(),
            cores: cores.clone(),
            affinity: plan.affinity.iter().filter_map(|(p, q, c)| Some(((p.clone(), *q), cores.iter().position(|x| x == c)?))).collect(),
            owner: HashMap::new(),
            cycles_seen: HashMap::new(),
            pool: pool.clone(),
            stats: stats.clone(),
            mailboxes: (0..n_workers).map(|_| Arc::new(Mutex::new(None))).collect(),
            view: view.clone(),
            route_in: Arc::new(RouteIn { router: router.clone(), ifs: Arc::default(), vxlan: None }),
            router: rctl.clone(),
            route_version: 0,
        };
        for (i, def) in plan.ports.iter().enumerate() {
            let e = opener.open(def, plan.queues[i], plan.vlans[i].clone(), PortTotals::default()).map_err(rt)?;
            plane.ports[i] = Some(e);
        }
        for (i, p) in plan.peer.iter().enumerate() {
            if let (Some(p), Some(e)) = (p, plane.ports[i].as_mut()) {
                e.rule = Rule::Xconnect(*p);
            }
        }
        for (b, (name, members)) in plan.bridges.iter().enumerate() {
            let table = Arc::new(MacTable::new(plan.mac_capacity, plan.mac_aging_ms, n_workers));
            for &(p, mac, vlan) in plan.statics.iter().filter(|s| members.contains(&s.0)) {
                table
                    .add_static(vlan, mac, p as u16)
                    .map_err(|e| Failure::Usage(format!("--static-mac on port '{}': {e}", plan.ports[p].name)))?;
            }
            for &m in members {
                if let Some(e) = plane.ports[m].as_mut() {
                    e.rule = Rule::Bridge(b);
                }
            }
            let current = Arc::new(Bridge::new(table.clone(), Vec::new()));
            plane.bridges.push(BridgeEntry { name: name.clone(), table, members: members.clone(), current });
        }
        {
            let mut r = rctl.lock().unwrap_or_else(|e| e.into_inner());
            for &(i, vlan, addr, len) in &plan.ips {
                let mtu = plan.mtus.iter().find(|m| m.0 == i && m.1 == vlan).map(|m| m.2);
                r.add_addr(&plan.ports[i].name, vlan, i, addr, len, mtu)
                    .map_err(|e| Failure::Usage(format!("--ip {}: {e}", plan.ports[i].name)))?;
            }
            for (addr, len, t) in &plan.routes {
                r.add_route(Prefix::of(*addr, *len), t).map_err(|e| Failure::Usage(format!("--route {addr}/{len}={t}: {e}")))?;
            }
            r.twin_auto = plan.linux_table.is_some();
            for (i, vlan, name) in &plan.twins {
                let k = r
                    .iface_by_name(&plan.ports[*i].name, *vlan)
                    .map(|x| x.index)
                    .ok_or_else(|| rt(format!("host interface {name}: no interface")))?;
                r.add_twin(k, name).map_err(rt)?;
            }
        }
        // A bridge member per remote VTEP (after the user's ports: their indices stay).
        for (s, b) in &plan.vxlans {
            for (k, remote) in s.remotes.iter().enumerate() {
                let i = plane.free_index().ok_or_else(|| rt("the port table is full".into()))?;
                let vtep = Arc::new(Vtep::new(s.vni, s.local, *remote, s.port, pool.clone()));
                let def = PortDef { name: vxlan::member_name(s.vni, k + 1), spec: PortSpec::Vxlan(format!("{}@{remote}", s.vni)) };
                let base = plane.baseline(i);
                plane.ports[i] = Some(PortEntry {
                    def,
                    rt: PortRt::Vxlan(vtep.clone()),
                    queues: 0,
                    tx: vec![TxSource::Vxlan(vtep)],
                    rxq: Vec::new(),
                    vlan: VlanMode::default(),
                    rule: Rule::Bridge(*b),
                    base,
                });
                plane.bridges[*b].members.push(i);
            }
        }
        plane.sync_router();
        let vteps = plane.vteps();
        resolve_vteps(&vteps, &rctl);
        // From here DPDK's own messages (device connects, warnings) go to the terminal.
        if let Some(c) = capture {
            c.finish();
        }
        // Mbufs parked in ethdev rx rings are in use for the life of the port: the baseline a
        // clean shutdown returns to.
        let baseline = pool.in_use();
        let plans = plane.initial_plans();

        observe::register_telemetry(&view);
        let metrics_stop = Arc::new(AtomicBool::new(false));
        let metrics = match &plan.prometheus {
            Some(addr) => Some(
                observe::serve_prometheus(addr, view.clone(), metrics_stop.clone())
                    .map_err(|e| Failure::Runtime(format!("--prometheus {addr}: cannot listen: {e}: pick a free port")))?,
            ),
            None => None,
        };
        let idle_mode = Arc::new(AtomicU8::new(plan.idle as u8));
        let ctl_path = plan.ctl.clone();
        let (ctl, requests) =
            server::serve(&ctl_path, plan.socket_gid, view.clone(), barrier.clone(), idle_mode.clone(), metrics_stop.clone())
                .map_err(|e| rt(format!("control socket {}: {e}: remove it or pick another with --ctl", ctl_path.display())))?;
        let slow_stop = Arc::new(AtomicBool::new(false));
        let slow =
            slow::spawn(rctl.clone(), slow_stop.clone()).map_err(|e| rt(format!("cannot start the router's slow-path thread: {e}")))?;
        let mirror = match plan.linux_table {
            Some(t) => Some(
                linux::spawn(t, rctl.clone(), slow_stop.clone())
                    .map_err(|e| rt(format!("--linux-routes: cannot open rtnetlink: {e}: run as root")))?,
            ),
            None => None,
        };
        let fault = watchdog::test_fault();
        let mut handles = Vec::new();
        let mut exits = Vec::new();
        for (w, wplan) in plans.into_iter().enumerate() {
            let worker = Worker {
                index: w,
                core: cores[w],
                plan: wplan,
                mailbox: plane.mailboxes[w].clone(),
                burst: plan.burst,
                tx_retries: plan.tx_retries,
                hold_cycles: plan.backpressure_us * tsc_hz / 1_000_000,
                stats: stats[w].clone(),
                barrier: barrier.clone(),
                idle: Idle { mode: plan.idle, after_cycles: plan.idle_us * tsc_hz / 1_000_000, max_sleep_ms: 100 },
                idle_mode: idle_mode.clone(),
                pool: pool.clone(),
                clock: MsClock::new(cycles_per_ms),
                scratch: Default::default(),
                router: router.clone(),
                rscratch: Box::default(),
                staged: Box::default(),
                fault: if w == 0 { fault } else { None },
            };
            let exit = Arc::new(watchdog::Exit::default());
            let e = exit.clone();
            match std::thread::Builder::new().name(format!("pmd-c{}", cores[w])).spawn(move || watchdog::run_worker(worker, &e)) {
                Ok(h) => {
                    handles.push(h);
                    exits.push(exit);
                }
                Err(e) => {
                    // No half-started set of workers: stop the ones running, then unwind.
                    metrics_stop.store(true, Ordering::SeqCst);
                    slow_stop.store(true, Ordering::SeqCst);
                    let _ = std::fs::remove_file(&ctl_path);
                    barrier.stop();
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(rt(format!("cannot start worker thread: {e}")));
                }
            }
        }
        let watchdog =
            Watchdog::spawn(stats.clone(), exits, barrier.clone()).map_err(|e| rt(format!("cannot start the workers' watchdog: {e}")))?;
        if plan.cores.len() > n_workers {
            println!("pmdswitch: {} of {} cores have no rx queue and run no worker", plan.cores.len() - n_workers, plan.cores.len());
        }
        let control = Control { opener, barrier: barrier.clone(), mac_capacity: plan.mac_capacity, mac_aging_ms: plan.mac_aging_ms };
        let tick = if plane.bridges.is_empty() { Duration::from_millis(50) } else { Duration::from_millis(5) };
        let now = Instant::now();
        Ok(Parts {
            running: config::Running::of(&plan),
            config: plan,
            cli,
            eal,
            pool,
            plane,
            control,
            view,
            rctl,
            barrier,
            vteps,
            workers: handles,
            watchdog,
            metrics,
            metrics_stop,
            ctl,
            ctl_path,
            requests,
            slow,
            slow_stop,
            mirror,
            cores,
            main_cpu,
            mbufs,
            tsc_hz,
            cycles_per_ms,
            baseline,
            start: now,
            tick,
            broken: HashMap::new(),
            next_check: now,
            reloads: (0, 0),
        })
    }

    /// [`Switch::banner`].
    fn banner(&self) -> String {
        format!(
            "pmdswitch: forwarding with {} worker(s) on core(s) {} (main core {}), {} mbufs; Ctrl-C to stop",
            self.cores.len(),
            config::compress(&self.cores),
            self.main_cpu,
            self.mbufs
        )
    }

    /// [`Switch::serve`].
    fn serve(&mut self, until: Instant) -> Result<(), Failure> {
        if let Some(f) = self.watchdog.fault() {
            return Err(Failure::Runtime(f));
        }
        if Instant::now() >= self.next_check {
            self.next_check = Instant::now() + Duration::from_millis(250);
            self.upkeep();
        }
        let now_ms = crate::sys::rdtsc() / self.cycles_per_ms;
        for b in &self.plane.bridges {
            b.table.maintain(now_ms);
        }
        let now = Instant::now();
        let until = until.min(now + self.tick);
        // Control requests (add-port, ...) wake the loop at once.
        if let Ok(req) = self.requests.recv_timeout(until.saturating_duration_since(now).max(Duration::from_millis(1))) {
            let reply = self.handle(&req.change, req.json);
            let _ = req.reply.send(reply);
        }
        Ok(())
    }

    fn upkeep(&mut self) {
        // The router's counters for Prometheus and telemetry.
        let r = self.rctl.lock().unwrap_or_else(|e| e.into_inner());
        if !r.ifaces.iter().all(Option::is_none) {
            self.view.set_router(r.router_json());
        }
        drop(r);
        resolve_vteps(&self.vteps, &self.rctl);
        for name in vhost::withdraw_faulted() {
            println!(
                "pmdswitch: port {name}: the frontend truncated its guest memory under a live mapping (SIGBUS caught, the mapping replaced); the device is not served until the frontend reconnects"
            );
        }
        for r in self.view.ports() {
            let seen = self.broken.entry(r.name.clone()).or_default();
            // A port removed and added again under the name counts from 0.
            *seen = (*seen).min(r.totals.rings_broken);
            if r.totals.rings_broken > *seen {
                println!(
                    "pmdswitch: port {}: the guest broke a vring (an index moved by more than the ring size); it is not served until the guest resets the device",
                    r.name
                );
                *seen = r.totals.rings_broken;
            }
        }
    }

    /// [`Switch::handle`].
    fn handle(&mut self, change: &Change, json: bool) -> String {
        match change {
            Change::Reload => match self.reload() {
                Ok(m) => format!("ok: {m}\n"),
                Err(e) => format!("error: {e}\n"),
            },
            Change::ShowConfig => {
                if json {
                    format!("{}\n", diff::to_json(&self.config, &self.running))
                } else {
                    diff::to_toml(&self.config, &self.running)
                }
            }
            c => {
                let reply = self.control.handle(&mut self.plane, c, json);
                if reply.starts_with("ok:") {
                    diff::record(&mut self.running, c);
                }
                reply
            }
        }
    }

    /// [`Switch::apply`].
    fn apply(&mut self, changes: &[Change]) -> Result<Vec<String>, String> {
        let mut done: Vec<Change> = Vec::new();
        let mut said = Vec::new();
        for c in changes {
            let reply = self.control.handle(&mut self.plane, c, false);
            if let Some(m) = reply.strip_prefix("ok: ") {
                said.push(m.trim_end().to_string());
                done.push(diff::inverse(&self.running, c));
                diff::record(&mut self.running, c);
            } else {
                for u in done.iter().rev() {
                    let back = self.control.handle(&mut self.plane, u, false);
                    if back.starts_with("ok:") {
                        diff::record(&mut self.running, u);
                    } else {
                        eprintln!("pmdswitch: warning: undoing '{}' failed: {}", diff::describe(u), back.trim_end());
                    }
                }
                return Err(format!("{}: {}", diff::describe(c), reply.trim_end().trim_start_matches("error: ")));
            }
        }
        Ok(said)
    }

    /// [`Switch::reload`].
    fn reload(&mut self) -> Result<String, String> {
        let r = self.reload_inner();
        match &r {
            Ok(_) => self.reloads.0 += 1,
            Err(_) => self.reloads.1 += 1,
        }
        r
    }

    fn reload_inner(&mut self) -> Result<String, String> {
        if self.cli.config.is_none() {
            return Err("no config file to reload: start pmdswitch with --config FILE".into());
        }
        let (_, new) = SwitchConfig::load_with(&self.cli, Some((&self.running, &self.config.allowed)))
            .map_err(|f| format!("{} (the running config is kept)", f.message()))?;
        let changes = diff::diff(&self.config, &self.running, &new).map_err(|e| format!("{e} (the running config is kept)"))?;
        if changes.is_empty() {
            self.config = new;
            return Ok("reload: nothing changed".into());
        }
        self.apply(&changes).map_err(|e| format!("reload refused at '{e}'; the running config is kept"))?;
        self.config = new;
        let what: Vec<String> = changes.iter().map(diff::describe).collect();
        Ok(format!("reload: {} change(s) applied: {}", changes.len(), what.join("; ")))
    }

    /// [`Switch::shutdown`].
    fn shutdown(self) -> Report {
        let elapsed = self.start.elapsed().as_secs_f64();
        telemetry::clear();
        self.metrics_stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.metrics {
            let _ = h.join();
        }
        server::wake(&self.ctl_path);
        let _ = self.ctl.join();
        let _ = std::fs::remove_file(&self.ctl_path);
        // The slow path stops before the workers: nothing is handed down after they go.
        self.slow_stop.store(true, Ordering::SeqCst);
        let _ = self.slow.join();
        if let Some(m) = self.mirror {
            let _ = m.join();
        }
        self.barrier.stop();
        let clean = self.watchdog.join_workers(self.workers);
        // Frames still waiting to go down hold no mbuf (they are bytes): dropped with the router.
        let router_report = self.rctl.lock().unwrap_or_else(|e| e.into_inner()).router_json();
        let in_use_end = self.pool.in_use();
        let reports = self.view.ports();
        let bridges = self.view.bridges_json(false);
        let workers = self.view.workers();
        let mut json = observe::report_json(&reports, &workers, bridges, elapsed, self.tsc_hz, self.pool.size(), self.baseline, in_use_end);
        if router_report["interfaces"].as_u64().unwrap_or(0) > 0 {
            json["router"] = router_report;
        }
        if clean {
            for e in self.plane.ports.iter().flatten() {
                if let PortRt::Eth(port) = &e.rt {
                    port.stop();
                }
            }
            drop(self.control);
            drop(self.plane); // unregisters vhost sockets (files removed), closes ethdev ports
            drop(self.view);
            drop(self.pool);
            drop(self.eal);
        } else {
            // A worker still runs: unmapping guest memory or freeing the pool under it
            // would turn a stuck worker into a crash. The process exits soon after.
            std::mem::forget(self.control);
            std::mem::forget(self.plane);
            std::mem::forget(self.pool);
            std::mem::forget(self.eal);
        }
        Report { ports: reports, workers, elapsed, tsc_hz: self.tsc_hz, baseline: self.baseline, in_use_end, json, clean }
    }
}
