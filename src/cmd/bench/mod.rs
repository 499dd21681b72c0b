//! `pmdswitch bench`: the whole measurement loop on one machine, in one command.
//!
//! The device under test (DUT) gets two vhost-user sockets and one forwarding core; the
//! generator (`pmdswitch gen`, a process of its own) stands where two VMs would stand,
//! with two virtio-user ports on the other core. For each DUT the matrix — frame sizes ×
//! flow counts × (max rate, NDR) — runs against a fresh DUT per round; with `--compare`
//! the DUTs alternate within each round (A B, then B A) so a slow phase of a shared host
//! hits all of them, and ratios are medians of per-round ratios.
//!
//! Everything runs as child processes in a scratch directory (sockets, logs, control
//! sockets; the test bed, `pmdswitch::bed`); every child uses `--in-memory`, so no
//! hugepage file outlives it. On Ctrl-C the children (same process group) stop by
//! themselves; we reap them, kill what is left, and remove the scratch directory.
//!
//! Here: the plan (`mod.rs`), the rounds (`matrix`), the table, JSON and pictures
//! (`report`, `plot`).

mod matrix;
mod plot;
mod report;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pmdswitch::bed::duts::{check_dut, Bed, BedConfig, Dut};
use pmdswitch::cli::BenchArgs;
use pmdswitch::startup::Failure;

fn list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>, Failure> {
    s.split(',')
        .map(|x| x.trim().parse::<T>().map_err(|_| Failure::Usage(format!("{flag} '{s}': '{x}' is not a number: write e.g. 64,512,1518"))))
        .collect()
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub frame: usize,
    pub flows: u32,
    /// Routes in a router DUT's table (0: not a router bench).
    pub routes: usize,
}

pub struct Plan {
    pub duts: Vec<Dut>,
    pub cells: Vec<Cell>,
    pub max: bool,
    /// Frame sizes and flow counts searched for NDR.
    pub ndr_frames: Vec<usize>,
    pub ndr_flows: Vec<u32>,
    pub secs: f64,
    pub warmup: f64,
    pub trial_secs: f64,
    pub resolution: f64,
    pub rounds: usize,
    pub out: PathBuf,
    pub dut_core: usize,
    pub gen_core: usize,
    pub macs: u32,
    pub rate: Option<String>,
    /// A generator profile run as the one cell (`--profile`).
    pub profile: Option<PathBuf>,
}

fn plan(a: &BenchArgs) -> Result<Plan, Failure> {
    let mut duts = vec![Dut::parse(a.dut.as_deref().unwrap_or("pmdswitch")).map_err(Failure::Usage)?];
    if let Some(c) = &a.compare {
        for n in c.split(',') {
            let d = Dut::parse(n.trim()).map_err(Failure::Usage)?;
            if !duts.contains(&d) {
                duts.push(d);
            }
        }
    }
    let frames: Vec<usize> = list("--frames", a.frames.as_deref().unwrap_or("64,512,1518"))?;
    if let Some(f) = frames.iter().find(|f| !(64..=1518).contains(*f)) {
        return Err(Failure::Usage(format!("--frames: {f} is out of range for a vhost-user loop: use 64 to 1518")));
    }
    let flows: Vec<u32> = list("--flows", a.flows.as_deref().unwrap_or("1,1024"))?;
    if let Some(f) = flows.iter().find(|f| **f == 0 || **f > 32768) {
        return Err(Failure::Usage(format!("--flows: {f} is out of range: use 1 to 32768")));
    }
    // A profile brings its own rates: max only, unless asked (and then refused below).
    let modes = a.modes.clone().unwrap_or_else(|| if a.profile.is_some() { "max".into() } else { "max,ndr".into() });
    let (mut max, mut ndr) = (false, false);
    for m in modes.split(',') {
        match m.trim() {
            "max" => max = true,
            "ndr" => ndr = true,
            other => return Err(Failure::Usage(format!("--modes: '{other}' is not a mode: use max, ndr or max,ndr"))),
        }
    }
    for (flag, v) in [("--secs", a.secs), ("--warmup", a.warmup)] {
        if v.is_some_and(|v| !(0.0..3600.0).contains(&v)) || (flag == "--secs" && v == Some(0.0)) {
            return Err(Failure::Usage(format!("{flag} takes seconds (0 < SECS < 3600)")));
        }
    }
    if let Some(r) = &a.rate {
        pmdswitch::parse::Rate::parse(r).map_err(|e| Failure::Usage(e.replace("--rate", "bench --rate")))?;
    }
    let q = a.quick;
    let any_router = duts.iter().any(|d| d.routes());
    let routes: Vec<usize> = match &a.routes {
        Some(r) => {
            let v: Vec<usize> = list("--routes", r)?;
            if let Some(n) = v.iter().find(|n| **n == 0 || **n > 4_000_000) {
                return Err(Failure::Usage(format!("--routes: {n} is out of range: use 1 to 4000000")));
            }
            if !any_router {
                return Err(Failure::Usage("--routes needs a router DUT: --dut pmdswitch-router (or compare with one)".into()));
            }
            v
        }
        None => vec![if any_router { 1 } else { 0 }],
    };
    let mut cells = Vec::new();
    if let Some(path) = &a.profile {
        for (given, flag) in [
            (a.frames.is_some(), "--frames"),
            (a.flows.is_some(), "--flows"),
            (a.macs.is_some(), "--macs"),
            (a.rate.is_some(), "--rate"),
            (a.routes.is_some(), "--routes"),
            (ndr, "--modes ndr"),
        ] {
            if given {
                return Err(Failure::Usage(format!("{flag} does not go with --profile: the profile says what is sent (drop {flag})")));
            }
        }
        if let Some(d) = duts.iter().find(|d| d.routes()) {
            return Err(Failure::Usage(format!(
                "--profile with {}: a router needs the addresses bench sets up for it: bench it without --profile",
                d.name()
            )));
        }
        let specs = pmdswitch::gen::profile::load(path).map_err(Failure::Usage)?;
        if let Some((s, p)) = specs.iter().flat_map(|s| s.ports.iter().map(move |p| (s, p))).find(|(_, p)| *p != "a" && *p != "b") {
            return Err(Failure::Usage(format!(
                "{}: stream '{}' sends on port '{p}': bench's generator ports are a and b",
                path.display(),
                s.name
            )));
        }
        // The table's frame column: the profile's mean frame; flows: all its flows.
        let sizes: Vec<usize> = specs.iter().flat_map(|s| s.frames.iter().copied()).collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len().max(1);
        cells.push(Cell { frame: mean, flows: specs.iter().map(|s| s.flows * s.ports.len() as u32).sum(), routes: 0 });
    }
    for &frame in frames.iter().filter(|_| a.profile.is_none()) {
        for &fl in &flows {
            for &routes in &routes {
                cells.push(Cell { frame, flows: fl, routes });
            }
        }
    }
    let ndr_frames = if !ndr || a.profile.is_some() {
        vec![]
    } else if q && a.frames.is_none() {
        vec![64]
    } else {
        frames.clone()
    };
    let ndr_flows = if q && a.flows.is_none() { vec![flows[0]] } else { flows.clone() };
    for d in &duts {
        check_dut(*d).map_err(Failure::Usage)?;
    }
    if pmdswitch::startup::preflight::free_hugepages() < 512 {
        return Err(Failure::Usage(
            "fewer than 512 free hugepages: the DUT and the generator need about 1 GiB: run scripts/setup.sh".into(),
        ));
    }
    let cpus = pmdswitch::startup::preflight::allowed_cpus();
    let gen_core = a.gen_core.unwrap_or(0);
    let dut_core = a.dut_core.unwrap_or(1);
    for c in [gen_core, dut_core] {
        if !cpus.contains(&c) {
            return Err(Failure::Usage(format!("CPU {c} is not usable here: pick --dut-core and --gen-core from {:?}", cpus)));
        }
    }
    if gen_core == dut_core {
        return Err(Failure::Usage("--dut-core and --gen-core are the same CPU: the loop needs two".into()));
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        PathBuf::from(format!("bench-out/bench-{t}"))
    });
    Ok(Plan {
        rounds: a.rounds.unwrap_or(if duts.len() > 1 { 3 } else { 1 }).max(1),
        duts,
        cells,
        max: max || !ndr,
        ndr_frames,
        ndr_flows,
        secs: a.secs.unwrap_or(if q { 1.0 } else { 3.0 }),
        warmup: a.warmup.unwrap_or(if q { 0.5 } else { 1.0 }),
        trial_secs: a.secs.unwrap_or(if q { 0.5 } else { 3.0 }),
        resolution: a.resolution_pct.unwrap_or(if q { 5.0 } else { 2.0 }),
        out,
        dut_core,
        gen_core,
        macs: a.macs.unwrap_or(1),
        rate: a.rate.clone(),
        profile: a.profile.clone(),
    })
}

pub fn main(a: BenchArgs, term: Arc<AtomicBool>) -> Result<(), Failure> {
    let plan = plan(&a)?;
    let out = plan.out.clone();
    std::fs::create_dir_all(out.join("logs")).map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", out.display())))?;
    let scratch = std::env::temp_dir().join(format!("pmdswitch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", scratch.display())))?;
    let exe = std::env::current_exe().map_err(|e| Failure::Runtime(format!("cannot find my own executable: {e}")))?;
    let cfg = BedConfig {
        exe,
        scratch: scratch.clone(),
        logs: out.join("logs"),
        dut_core: plan.dut_core,
        gen_core: plan.gen_core,
        tag: format!("pmdsb{}", std::process::id()),
    };
    let mut bed = Bed::new(cfg, term.clone());
    let r = matrix::run(&mut bed, &plan, &term);
    let _ = std::fs::remove_dir_all(&scratch);
    // A child killed after a time-out cannot clean its EAL runtime directory: ours all
    // start with the tag.
    if let Ok(d) = std::fs::read_dir("/var/run/dpdk") {
        for e in d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{}-", bed.cfg.tag))) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let results = r?;
    report::write(&plan, &results, &term)
}
