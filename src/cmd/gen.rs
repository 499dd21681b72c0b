//! `pmdswitch gen`: a DPDK process of its own that sends stamped Ethernet/IPv4/UDP traffic
//! on its ports and accounts for every packet that comes back (see `engine`), or runs an
//! RFC 2544 throughput search (`--search`, see `search`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmdswitch::cli::GenArgs;
use pmdswitch::dpdk::ethdev::{self, EthConfig, EthPort};
use pmdswitch::dpdk::mempool::Mempool;
use pmdswitch::gen::engine::{Engine, GenPort, Live, PhaseCfg, PhaseResult, Plan, StreamDef};
use pmdswitch::gen::packet::{self, Sizes};
use pmdswitch::gen::pcap::{self, Capture};
use pmdswitch::gen::report::{self, RunReport, RunShape, SearchReport};
use pmdswitch::gen::search::{self, SearchParams, Trial};
use pmdswitch::gen::{profile, stream};
use pmdswitch::parse::{self, PortSpec, Rate};
use pmdswitch::startup::{self, preflight, usage, Failure, PoolNeed};

/// Everything checked before DPDK starts.
struct GenPlan {
    names: Vec<String>,
    devs: Vec<(String, bool)>,
    sizes: Sizes,
    flows: u32,
    macs: u32,
    /// The generator's cores (ports dealt to them in turn).
    cores: Vec<usize>,
    eal: Vec<String>,
    own_prefix: Option<String>,
    /// Per port: own address, gateway.
    ips: Vec<Option<Ipv4Addr>>,
    gateways: Vec<Option<Ipv4Addr>>,
    /// The streams (captures loaded) and how their flows are numbered.
    streams: Vec<StreamDef>,
    flow_plan: Plan,
    /// From a profile (its frame sizes are the streams').
    profiled: bool,
    capture: Option<(std::path::PathBuf, u64, u64, Option<u16>)>,
}

/// `PORT=VALUE` for a known port: its index and the value.
fn per_port<'a>(flag: &str, s: &'a str, names: &[String]) -> Result<(usize, &'a str), Failure> {
    let (p, v) = s.split_once('=').ok_or_else(|| Failure::Usage(format!("{flag} '{s}' has no '=': write PORT=VALUE")))?;
    let i = names
        .iter()
        .position(|n| n == p)
        .ok_or_else(|| Failure::Usage(format!("{flag} names unknown port '{p}': use one of {}", names.join(","))))?;
    Ok((i, v))
}

fn v4(flag: &str, s: &str) -> Result<Ipv4Addr, Failure> {
    s.parse().map_err(|_| Failure::Usage(format!("{flag}: '{s}' is not an IPv4 address")))
}

/// The addresses a port sweeps: one per prefix (its first host; a /32 itself), from a
/// list or `@FILE` (first word of each line, `#` comments).
fn dst_list(s: &str) -> Result<Vec<u32>, String> {
    let text;
    let (items, from): (Vec<&str>, String) = match s.strip_prefix('@') {
        Some(path) => {
            text = std::fs::read_to_string(path).map_err(|e| format!("--dst-ips: cannot read {path}: {e}"))?;
            (text.lines().filter_map(|l| l.split('#').next()?.split_whitespace().next()).collect(), format!("{path}: "))
        }
        None => (s.split(',').collect(), String::new()),
    };
    let mut out = Vec::with_capacity(items.len());
    for (n, it) in items.iter().enumerate() {
        let p = it.split('=').next().unwrap_or(it);
        let (a, l) = parse::parse_prefix(p).map_err(|e| format!("--dst-ips {from}entry {}: {e}", n + 1))?;
        let std::net::IpAddr::V4(a) = a else { return Err(format!("--dst-ips {from}entry {}: {p} is not IPv4", n + 1)) };
        out.push(if l == 32 { u32::from(a) } else { u32::from(a) | 1 });
    }
    if out.is_empty() {
        return Err(format!("--dst-ips {s}: no prefixes"));
    }
    Ok(out)
}

fn plan(a: &GenArgs) -> Result<GenPlan, Failure> {
    let mut defs = Vec::new();
    for p in &a.ports {
        let d = parse::parse_port(p).map_err(Failure::Usage)?;
        if defs.iter().any(|q: &parse::PortDef| q.name == d.name) {
            return usage(format!("port '{}' is named twice: give each --port a unique name", d.name));
        }
        match &d.spec {
            PortSpec::Vdev(_) | PortSpec::Pci(_) => {}
            _ => return usage(format!("port '{}': gen ports are DPDK ethdevs: to stand where a VM stands on a vhost-user socket use vdev:net_virtio_userN,path=SOCK", d.name)),
        }
        if let PortSpec::Pci(addr) = &d.spec {
            preflight::check_pci(&d.name, addr).map_err(Failure::Usage)?;
        }
        defs.push(d);
    }
    if defs.is_empty() {
        return usage("no ports: add --port NAME=vdev:net_virtio_user0,path=SOCK (one per vhost-user socket of the switch)");
    }
    let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    let sends = match &a.tx {
        None => vec![true; names.len()],
        Some(list) => {
            let mut s = vec![false; names.len()];
            for n in list.split(',') {
                let i = names
                    .iter()
                    .position(|x| x == n)
                    .ok_or_else(|| Failure::Usage(format!("--tx names unknown port '{n}': use one of {}", names.join(","))))?;
                s[i] = true;
            }
            s
        }
    };
    if a.profile.is_some() {
        for (given, flag) in [
            (a.frame.is_some(), "--frame"),
            (a.flows.is_some(), "--flows"),
            (a.macs.is_some(), "--macs"),
            (a.rate.is_some(), "--rate"),
            (a.tx.is_some(), "--tx"),
            (!a.dst_ips.is_empty(), "--dst-ips"),
            (a.dst_mac.is_some(), "--dst-mac"),
            (a.search, "--search"),
        ] {
            if given {
                return usage(format!("{flag} does not go with --profile: the profile says it per stream (or run without the profile)"));
            }
        }
    }
    let sizes = packet::parse_sizes(a.frame.as_deref().unwrap_or("64")).map_err(Failure::Usage)?;
    let flows = a.flows.unwrap_or(1);
    if flows == 0 || flows as u64 * names.len() as u64 > packet::MAX_FLOWS as u64 {
        return usage(format!(
            "--flows {flows} is out of range: use 1 to {} with {} port(s)",
            packet::MAX_FLOWS as usize / names.len(),
            names.len()
        ));
    }
    let macs = a.macs.unwrap_or(1);
    if macs == 0 || macs > 1 << 20 {
        return usage(format!("--macs {macs} is out of range: use 1 to 1048576"));
    }
    let dst = a.dst_mac.as_deref().map(parse_mac).transpose().map_err(Failure::Usage)?;
    let mut ips = vec![None; names.len()];
    for x in &a.ips {
        let (i, v) = per_port("--ip", x, &names)?;
        ips[i] = Some(v4("--ip", v.split('/').next().unwrap_or(v))?);
    }
    let mut gateways = vec![None; names.len()];
    for x in &a.gateways {
        let (i, v) = per_port("--gateway", x, &names)?;
        if ips[i].is_none() {
            return usage(format!("--gateway {x}: port '{}' has no address to ask from: add --ip {}=ADDR", names[i], names[i]));
        }
        gateways[i] = Some(v4("--gateway", v)?);
    }
    let mut dsts = vec![None; names.len()];
    for x in &a.dst_ips {
        let (i, v) = per_port("--dst-ips", x, &names)?;
        dsts[i] = Some(Arc::from(dst_list(v).map_err(Failure::Usage)?));
    }
    let rate = Rate::parse(a.rate.as_deref().unwrap_or("max")).map_err(Failure::Usage)?;
    let secs_ok = |v: Option<f64>, zero_ok: bool| v.is_none_or(|v| v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0)) && v < 1e6);
    if !secs_ok(a.duration, false) || !secs_ok(a.warmup, true) {
        return usage("--duration and --warmup take a number of seconds (duration > 0, warm-up >= 0)");
    }
    if a.burst.is_some_and(|b| b == 0 || b > 256) {
        return usage("--burst is out of range: use 1 to 256");
    }
    if a.latency_every == Some(0) {
        return usage("--latency-every 0: use 1 (every packet) or more");
    }
    for (flag, v) in [
        ("--resolution-pct", a.resolution_pct),
        ("--ndr-loss-pct", a.ndr_loss_pct),
        ("--pdr-loss-pct", a.pdr_loss_pct),
        ("--max-drift-pct", a.max_drift_pct),
    ] {
        if v.is_some_and(|v| !(v.is_finite() && (0.0..=100.0).contains(&v))) {
            return usage(format!("{flag} takes a percentage from 0 to 100"));
        }
    }
    if a.resolution_pct == Some(0.0) {
        return usage("--resolution-pct 0 would never converge: use e.g. 1 or 0.5");
    }
    let allowed = preflight::allowed_cpus();
    let main_core = preflight::main_core_from_eal(&a.eal).unwrap_or_else(|| allowed.first().copied().unwrap_or(0));
    let cores = match (&a.cores, a.core) {
        (Some(_), Some(_)) => return usage("--core and --cores: give one of them"),
        (Some(list), None) => parse::parse_cores(list).map_err(|e| Failure::Usage(format!("--cores: {e}")))?,
        (None, Some(c)) => vec![c],
        (None, None) => vec![allowed.iter().copied().find(|&c| c != main_core).unwrap_or(main_core)],
    };
    if let Some(&core) = cores.iter().find(|c| !allowed.contains(c)) {
        return usage(format!(
            "--core {core} is not a usable CPU here (usable: {}): pick one of them",
            allowed.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
        ));
    }
    if cores.len() > 1 && a.search {
        return usage("--search runs on one core: drop --cores");
    }
    if cores.len() > names.len() {
        return usage(format!("--cores gives {} cores for {} port(s): each core needs a port of its own", cores.len(), names.len()));
    }
    let specs = match &a.profile {
        Some(f) => profile::load(f).map_err(Failure::Usage)?,
        None => stream::legacy(&names, &sends, sizes.pattern(), rate, flows, macs, dst, &dsts),
    };
    let (streams, flow_plan) = stream::build(&specs, &names).map_err(Failure::Usage)?;
    let capture = match &a.capture {
        Some(path) => {
            let port = a
                .capture_port
                .as_deref()
                .map(|p| {
                    names
                        .iter()
                        .position(|n| n == p)
                        .map(|i| i as u16)
                        .ok_or_else(|| Failure::Usage(format!("--capture-port '{p}' is no port: use one of {}", names.join(","))))
                })
                .transpose()?;
            if a.capture_every == Some(0) {
                return usage("--capture-every 0: use 1 (every frame) or more");
            }
            Some((path.clone(), a.capture_count.unwrap_or(0), a.capture_every.unwrap_or(1), port))
        }
        None => None,
    };
    let (eal, own_prefix) = startup::eal_defaults("pmdswitch-gen", &a.eal, &defs, main_core);
    if !preflight::has_flag(&a.eal, &["--no-huge"]) && preflight::free_hugepages() == 0 {
        return usage("no free hugepages: reserve some with scripts/setup.sh, or run without them with -- --no-huge -m 512");
    }
    let devs = defs
        .iter()
        .map(|d| match &d.spec {
            PortSpec::Vdev(x) => (x.clone(), false),
            PortSpec::Pci(x) => (x.clone(), true),
            _ => unreachable!("checked above"),
        })
        .collect();
    Ok(GenPlan {
        names,
        devs,
        sizes,
        flows,
        macs,
        cores,
        eal,
        own_prefix,
        ips,
        gateways,
        streams,
        flow_plan,
        profiled: a.profile.is_some(),
        capture,
    })
}

/// `--dst-mac`: the bridge's MAC parser, with the generator's own message.
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    parse::parse_mac(s).map_err(|_| format!("MAC '{s}' is not six hex bytes: write e.g. 02:00:00:00:00:02"))
}

pub fn main(a: GenArgs, term: Arc<AtomicBool>) -> Result<(), Failure> {
    let mut p = plan(&a)?;
    let (eal, capture) = startup::start_eal(&p.eal, p.own_prefix.as_deref(), a.verbose)?;
    let rt = Failure::Runtime;
    let tsc_hz = eal.tsc_hz();
    let rings: Vec<u16> = p.devs.iter().map(|(dev, _)| ethdev::ring_for(dev, a.ring_size).max(64)).collect();
    let burst = a.burst.unwrap_or(32);
    let pattern = p.sizes.pattern();
    let max_frame = p.streams.iter().flat_map(|s| s.pattern.iter().copied()).chain(pattern.iter().copied()).max().unwrap_or(64);
    // Both rings of every port, a pending tx batch and an rx batch per port, caches of
    // the generator's loops and the main thread.
    let nports = p.names.len() as u32;
    let n_mbufs = startup::pool_size(PoolNeed {
        descriptors: rings.iter().map(|&r| 2 * u32::from(r)).sum(),
        bursts: 2 * nports,
        burst: burst as u32,
        lcores: 1 + p.cores.len() as u32,
    });
    let room = (max_frame.max(2048) + 128) as u16;
    let pool = Arc::new(
        Mempool::pktmbuf_pool_create(eal.token(), "gen_pool", n_mbufs, startup::POOL_CACHE, room, -1)
            .map_err(|e| rt(format!("{e}: reserve more hugepages (scripts/setup.sh)")))?,
    );

    // Ports, dealt to the cores in turn.
    let ncores = p.cores.len();
    let mut by_core: Vec<Vec<GenPort>> = (0..ncores).map(|_| Vec::new()).collect();
    let mut eth = Vec::new();
    for (i, (name, (dev, pci))) in p.names.iter().zip(&p.devs).enumerate() {
        let id = ethdev::probe(eal.token(), dev, *pci).map_err(|e| {
            rt(if dev.starts_with("net_virtio_user") {
                format!("port '{name}': cannot attach {dev} ({e}): is a switch serving that vhost-user socket (pmdswitch run --port X=vhost-server:PATH)?")
            } else {
                format!("port '{name}': DPDK could not create '{dev}' ({e}): check the driver name and its arguments")
            })
        })?;
        let cfg = EthConfig { n_rxq: 1, n_txq: 1, rx_desc: rings[i], tx_desc: rings[i], rx_intr: false, remove: false };
        let port = EthPort::configure(id, cfg, &pool).map_err(|e| rt(format!("port '{name}': {e}")))?;
        port.start().map_err(|e| rt(format!("port '{name}': {e}")))?;
        // A fresh port's only queues: both free.
        let (Some(rx), Some(tx)) = (port.rx_queue(0), port.tx_queue(0)) else {
            return Err(rt(format!("port '{name}': its queues are taken")));
        };
        // Its MAC: that of its first stream's frames (what a router resolves it to).
        let mac = p.streams.iter().find(|s| s.port == i).map_or([0x02, 0, 0, (i + 1) as u8, 0, 0], |s| s.shape.src_mac);
        by_core[i % ncores].push(GenPort { index: i, rx, tx, ip: p.ips[i], mac });
        eth.push(port);
    }
    if let Some(c) = capture {
        c.finish();
    }
    // The switch sees each virtio-user device become ready (vhost new_device) a moment
    // after our start and hands it to its workers at their next reload point; traffic
    // sent before that would be dropped there as port_down. Let the ports settle.
    std::thread::sleep(Duration::from_millis(200));
    let cap = p.capture.as_ref().map(|(_, count, every, port)| Arc::new(Capture::new(65536, *every, *count, *port)));
    let mut engines = Vec::new();
    let mut defs: Vec<Option<StreamDef>> = std::mem::take(&mut p.streams).into_iter().map(Some).collect();
    for ports in by_core {
        let owned: Vec<usize> = ports.iter().map(|g| g.index).collect();
        let mut mine = Vec::new();
        for (id, d) in defs.iter_mut().enumerate() {
            if d.as_ref().is_some_and(|d| owned.contains(&d.port)) {
                let mut d = d.take().expect("checked");
                // The engine's own port numbering.
                d.port = owned.iter().position(|&g| g == d.port).unwrap_or(0);
                mine.push((id, d));
            }
        }
        engines.push(Engine::new(ports, mine, &p.flow_plan, pool.clone(), burst, a.latency_every.unwrap_or(1), tsc_hz, cap.clone()));
    }
    for (i, gw) in p.gateways.iter().enumerate() {
        let Some(gw) = gw else { continue };
        let e = &mut engines[i % ncores];
        let local = e.ports.iter().position(|g| g.index == i).unwrap_or(0);
        match e.resolve(local, *gw, Duration::from_secs(5)) {
            Some(m) => {
                if !a.quiet {
                    println!("gen: port {}: gateway {gw} is {}", p.names[i], parse::mac_str(&m));
                }
            }
            None => {
                return Err(rt(format!(
                    "port '{}': gateway {gw} did not answer ARP within 5 s: is it an address of the switch's interface?",
                    p.names[i]
                )))
            }
        }
    }
    let lives: Vec<Arc<Live>> = engines.iter().map(|e| e.live.clone()).collect();
    let warmup = a.warmup.unwrap_or(1.0);
    let duration = a.duration.unwrap_or(10.0);
    let quiet = a.quiet;
    let names = p.names.clone();
    let writer = match (&p.capture, &cap) {
        (Some((path, ..)), Some(c)) => {
            let (path, c, names, stop) = (path.clone(), c.clone(), names.clone(), Arc::new(AtomicBool::new(false)));
            let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let clock = (wall, pmdswitch::sys::rdtsc(), tsc_hz);
            let s2 = stop.clone();
            // On a CPU the poll loops do not use, when there is one: a writer that shares
            // a busy core gets a time slice now and then, and its queue overflows between.
            let spare = preflight::allowed_cpus().into_iter().find(|c| !p.cores.contains(c));
            let h = std::thread::Builder::new()
                .name("gen-capture".into())
                .spawn(move || {
                    if let Some(cpu) = spare {
                        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    }
                    pcap::write(&path, c, &names, clock, s2)
                })
                .map_err(|e| rt(format!("cannot start the capture writer: {e}")))?;
            Some((h, stop))
        }
        _ => None,
    };

    // The poll loops run on their own pinned threads; this one prints progress.
    let sizes = p.sizes.clone();
    // Every core's phases on one clock, from a moment all threads will have reached.
    let start_tsc = pmdswitch::sys::rdtsc() + tsc_hz / 20;
    let mut workers = Vec::new();
    for (e, &core) in engines.into_iter().zip(&p.cores) {
        let stop = term.clone();
        let (sizes, args) = (sizes.clone(), a.clone());
        let w = std::thread::Builder::new()
            .name(format!("gen-c{core}"))
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    eprintln!("pmdswitch gen: could not pin to core {core}; running unpinned");
                }
                let _ = pmdswitch::dpdk::eal::thread_register();
                let mut engine = e;
                let out = if args.search {
                    Outcome::Search(search_all(&mut engine, &args, &sizes, &stop))
                } else {
                    let cfg = PhaseCfg {
                        // The command line's --rate is each stream's own (a profile's too).
                        rate_pps: None,
                        warmup_s: warmup,
                        duration_s: duration,
                        count: args.count.unwrap_or(0),
                        drain_quiet_ms: 250,
                        start_tsc: Some(start_tsc),
                    };
                    Outcome::Run(Box::new(engine.run(&cfg, &stop)))
                };
                pmdswitch::dpdk::eal::thread_unregister();
                out
            })
            .map_err(|e| rt(format!("cannot start the generator thread: {e}")))?;
        workers.push(w);
    }

    let start = Instant::now();
    let (mut last_tx, mut last_rx, mut last_t) = (0u64, 0u64, Instant::now());
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if quiet || last_t.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let tx: u64 = lives.iter().map(|l| l.tx.load(Ordering::Relaxed)).sum();
        let rx: u64 = lives.iter().map(|l| l.rx.load(Ordering::Relaxed)).sum();
        let dt = last_t.elapsed().as_secs_f64();
        let phase = lives[0].phase().name();
        let (dtx, drx) = (tx.wrapping_sub(last_tx), rx.wrapping_sub(last_rx));
        let loss = if tx > 0 { tx.saturating_sub(rx) as f64 / tx as f64 * 100.0 } else { 0.0 };
        println!(
            "gen {:>6.1}s {:<8} tx {:>8.3} Mpps  rx {:>8.3} Mpps  in flight/lost {:>7.3}%  p99 {:>9.1} us",
            start.elapsed().as_secs_f64(),
            phase,
            dtx as f64 / dt / 1e6,
            drx as f64 / dt / 1e6,
            loss,
            lives.iter().map(|l| l.p99_ns.load(Ordering::Relaxed)).max().unwrap_or(0) as f64 / 1e3
        );
        let _ = std::io::stdout().flush();
        (last_tx, last_rx, last_t) = (tx, rx, Instant::now());
    }
    let mut outs = Vec::new();
    for w in workers {
        outs.push(w.join().map_err(|_| rt("a generator thread panicked".into()))?);
    }
    let out = match outs.len() {
        1 => outs.remove(0),
        _ => {
            let mut merged: Option<PhaseResult> = None;
            for o in outs {
                if let Outcome::Run(r) = o {
                    match &mut merged {
                        None => merged = Some(*r),
                        Some(m) => m.merge(&r),
                    }
                }
            }
            Outcome::Run(Box::new(merged.unwrap_or_default()))
        }
    };
    let captured = match writer {
        Some((h, stop)) => {
            stop.store(true, Ordering::SeqCst);
            let n = h.join().map_err(|_| rt("the capture writer panicked".into()))?.map_err(rt)?;
            let c = cap.as_ref().expect("a writer has its capture");
            Some((n, c.dropped.load(Ordering::Relaxed)))
        }
        None => None,
    };
    let frames = if p.profiled { Vec::new() } else { p.sizes.pattern() };
    let report = match &out {
        Outcome::Run(r) => {
            print_run(r, &p, a.rate.as_deref().unwrap_or("max"));
            if let Some((n, dropped)) = captured {
                println!(
                    "capture: {n} frame(s) written to {}, {dropped} not taken (the writer's queue was full)",
                    a.capture.as_ref().map_or(String::new(), |p| p.display().to_string())
                );
            }
            let shape = RunShape { names: &names, frame: frames, flows: p.flows, macs: p.macs, core: p.cores[0], tsc_hz };
            serde_json::to_string_pretty(&RunReport::new(&shape, r))
        }
        Outcome::Search(s) => {
            print_search(s);
            let search = s.iter().map(|x| report::SizeSearch::new(x.frame.clone(), x.mean_frame, &x.result, x.latency.as_ref())).collect();
            serde_json::to_string_pretty(&SearchReport { ports: names.clone(), search })
        }
    };
    for port in &eth {
        port.stop();
    }
    drop(eth);
    drop(pool);
    drop(eal);
    if let Some(path) = &a.json {
        std::fs::write(path, report.unwrap_or_default() + "\n").map_err(|e| rt(format!("cannot write --json {}: {e}", path.display())))?;
    }
    if term.load(Ordering::SeqCst) {
        println!("gen: interrupted: results cover the time until Ctrl-C");
    }
    Ok(())
}

enum Outcome {
    Run(Box<PhaseResult>),
    Search(Vec<SizeSearch>),
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

fn print_run(r: &PhaseResult, p: &GenPlan, rate: &str) {
    let names = &p.names;
    let mut out = if p.profiled {
        format!("=== pmdswitch gen: {} stream(s) from the profile\n", r.names.len())
    } else {
        format!("=== pmdswitch gen: frames {:?}, {} flow(s)/port, rate {rate}\n", p.sizes.pattern(), p.flows)
    };
    let w = r.names.iter().map(|n| n.len()).max().unwrap_or(6).max(8);
    out.push_str(&format!(
        "{:<w$} {:>12} {:>12} {:>10} {:>8} {:>6} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "stream", "tx", "rx", "lost", "loss%", "dup", "reord", "tx Mpps", "rx Mpps", "p50 us", "p90", "p99", "p99.9", "p99.99", "max"
    ));
    let streams = r.streams();
    for (name, s) in r.names.iter().zip(&streams) {
        let Some(s) = s else {
            out.push_str(&format!("{name:<w$} (not measured: counted in the port totals)\n"));
            continue;
        };
        let h = &s.latency;
        let q = |x: f64| if h.is_empty() { "-".to_string() } else { us(h.value_at_quantile(x)) };
        let secs = s.tx_secs.max(1e-9);
        out.push_str(&format!(
            "{:<w$} {:>12} {:>12} {:>10} {:>8.4} {:>6} {:>6} {:>9.3} {:>9.3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            name,
            s.tx,
            s.rx,
            s.lost,
            if s.tx > 0 { s.lost as f64 * 100.0 / s.tx as f64 } else { 0.0 },
            s.duplicates,
            s.reordered,
            s.tx as f64 / secs / 1e6,
            s.rx as f64 / secs / 1e6,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(0.9999),
            if h.is_empty() { "-".into() } else { us(h.max()) }
        ));
    }
    for (i, t) in r.ports.iter().enumerate() {
        out.push_str(&format!(
            "port {:<8} tx {:>12} rx {:>12} (with warm-up; foreign {}, warm-up rx {}, alloc waits {})\n",
            names[i], t.tx_packets, t.rx_packets, t.rx_foreign, t.rx_warmup, t.alloc_fail
        ));
    }
    for ((name, s), peer) in r.names.iter().zip(&streams).zip(&p.flow_plan.all) {
        if let Some(s) = s.as_ref().filter(|s| s.wrong_port > 0) {
            out.push_str(&format!("stream {name}: {} measured packets came back on another port than {}\n", s.wrong_port, names[peer.3]));
        }
    }
    for (i, t) in r.ports.iter().enumerate().filter(|(_, t)| t.arp_replies > 0) {
        out.push_str(&format!("port {}: answered {} ARP request(s) for its address\n", names[i], t.arp_replies));
    }
    let total = (r.busy_cycles + r.idle_cycles).max(1) as f64;
    let cores = p.cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    out.push_str(&format!(
        "generator core(s) {cores}: busy {:.1}%, idle {:.1}%\n",
        r.busy_cycles as f64 * 100.0 / total,
        r.idle_cycles as f64 * 100.0 / total
    ));
    if r.bad_latency > 0 {
        out.push_str(&format!("warning: {} latency samples were negative and left out\n", r.bad_latency));
    }
    print!("{out}");
}

/// One frame size's search and the latency at the rate found.
pub struct SizeSearch {
    pub frame: String,
    pub result: search::SearchResult,
    pub latency: Option<PhaseResult>,
    pub mean_frame: f64,
}

fn search_all(engine: &mut Engine, a: &GenArgs, sizes: &Sizes, stop: &AtomicBool) -> Vec<SizeSearch> {
    let groups: Vec<(String, Vec<usize>)> = match sizes {
        Sizes::Imix => vec![("imix".into(), sizes.pattern())],
        _ => sizes.pattern().into_iter().map(|s| (s.to_string(), vec![s])).collect(),
    };
    let trial_secs = a.duration.unwrap_or(10.0);
    let warmup = a.warmup.unwrap_or(1.0);
    let mut out = Vec::new();
    for (label, pat) in groups {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        engine.set_pattern(pat.clone());
        let mean = pat.iter().sum::<usize>() as f64 / pat.len() as f64;
        // The upper bound: what the generator achieves at full speed in this loop.
        let cfg = |rate: Option<f64>| PhaseCfg {
            rate_pps: rate,
            warmup_s: warmup,
            duration_s: trial_secs,
            count: 0,
            drain_quiet_ms: 250,
            start_tsc: None,
        };
        let full = engine.run(&cfg(None), stop);
        let hi = full.achieved_pps();
        let hi = if hi.is_finite() && hi > 0.0 { hi } else { 1e6 };
        println!("gen search {label} B: full speed offers {:.3} Mpps per port; searching", hi / 1e6);
        let params = SearchParams {
            lo_pps: hi * 0.01,
            hi_pps: hi,
            resolution: a.resolution_pct.unwrap_or(1.0) / 100.0,
            ndr_loss: a.ndr_loss_pct.unwrap_or(0.0) / 100.0,
            pdr_loss: a.pdr_loss_pct.unwrap_or(0.1) / 100.0,
            max_trials: a.max_trials.unwrap_or(16),
            max_drift: a.max_drift_pct.unwrap_or(5.0) / 100.0,
            retries: a.search_retries.unwrap_or(2),
        };
        let result = search::search(&params, |rate| {
            if stop.load(Ordering::Relaxed) {
                return Trial { rate_pps: rate, tx: 0, rx: 0, achieved_pps: 0.0 };
            }
            let r = engine.run(&cfg(Some(rate)), stop);
            let t = Trial { rate_pps: rate, tx: r.total_tx(), rx: r.total_rx(), achieved_pps: r.achieved_pps() };
            println!(
                "gen search {label} B: trial {:.3} Mpps/port -> loss {:.4}% (achieved {:.3})",
                rate / 1e6,
                t.loss() * 100.0,
                t.achieved_pps / 1e6
            );
            let _ = std::io::stdout().flush();
            t
        });
        let latency =
            if result.ndr_pps > 0.0 && !stop.load(Ordering::Relaxed) { Some(engine.run(&cfg(Some(result.ndr_pps)), stop)) } else { None };
        out.push(SizeSearch { frame: label, result, latency, mean_frame: mean });
    }
    out
}

fn print_search(s: &[SizeSearch]) {
    let mut out = format!(
        "=== RFC 2544 throughput (per port)\n{:<8} {:>10} {:>10} {:>12} {:>7} {:>10} {:>10} {:>10}\n",
        "frame", "NDR Mpps", "PDR Mpps", "NDR Mbit L1", "trials", "p50 us", "p99 us", "max us"
    );
    for x in s {
        let h = x.latency.as_ref().map(report::merged_latency).unwrap_or_else(|| report::merged_latency(&PhaseResult::default()));
        let q = |v: f64| if h.is_empty() { "-".to_string() } else { us(h.value_at_quantile(v)) };
        out.push_str(&format!(
            "{:<8} {:>10.3} {:>10.3} {:>12.1} {:>7} {:>10} {:>10} {:>10}{}\n",
            x.frame,
            x.result.ndr_pps / 1e6,
            x.result.pdr_pps / 1e6,
            x.result.ndr_pps * (x.mean_frame + packet::L1_OVERHEAD as f64) * 8.0 / 1e6,
            x.result.trials.len(),
            q(0.5),
            q(0.99),
            if h.is_empty() { "-".into() } else { us(h.max()) },
            if x.result.sender_limited {
                "  (generator-limited)"
            } else if !x.result.converged {
                "  (not converged)"
            } else {
                ""
            }
        ));
        if x.result.attempts > 1 || !x.result.stable {
            out.push_str(&format!(
                "         {} search(es): the delivered rate at the top moved {:.1}% during the {}; {}\n",
                x.result.attempts,
                x.result.drift * 100.0,
                if x.result.attempts > 1 { "last" } else { "search" },
                if x.result.stable { "stable in the last one, which is reported" } else { "NOT stable: the device's capacity changed while searching, so this rate belongs to no one speed (--max-drift-pct, --search-retries)" }
            ));
        }
    }
    print!("{out}");
}
