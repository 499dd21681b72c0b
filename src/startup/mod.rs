//! Start-up shared by the commands that start a DPDK process (`run`, `gen`): the one
//! error type a user sees, the EAL command line with our defaults, EAL initialisation
//! with its failure reduced to one line, the packet pool's size, the main core, and the
//! checks that run before anything touches DPDK (`preflight`) or reads a file
//! (`config`).

pub mod config;
pub mod preflight;

use crate::dpdk::eal::{Eal, LogCapture, QuietStdio};
use crate::parse::{PortDef, PortSpec};

/// A failure the user sees as one line. `Usage` exits 2, `Runtime` exits 1.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => m,
        }
    }
}

/// `Err(Failure::Usage(m))`.
pub fn usage<T>(m: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Usage(m.into()))
}

/// The CPU the EAL main lcore will run on: what `-l`/`-c`/`--main-lcore` among the
/// user's EAL arguments say, else the first CPU this process may use.
pub fn main_core(user_eal: &[String]) -> usize {
    preflight::main_core_from_eal(user_eal).unwrap_or_else(|| preflight::allowed_cpus().first().copied().unwrap_or(0))
}

/// What a packet pool must hold (see [`pool_size`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolNeed {
    /// Descriptors of every ethdev rx and tx ring (each may hold an mbuf).
    pub descriptors: u32,
    /// Bursts that can be in flight at once (a pending tx batch, an rx batch per poller).
    pub bursts: u32,
    pub burst: u32,
    /// Threads with a mempool cache (workers, the generator's loop).
    pub lcores: u32,
}

/// Per-lcore mempool cache of every pool: 256 mbufs, which the cache may overfill to
/// 1.5× before it flushes (DPDK prog guide, Mempool Library, "Local Cache").
pub const POOL_CACHE: u32 = 256;

/// Mbufs needed, by the usual DPDK formula (examples/l2fwd): ring descriptors, bursts in
/// flight, a full cache per lcore and 1024 of slack; doubled for chained jumbo frames,
/// bridge copies and ports added at run time, at least 16 Ki, rounded to 2^k - 1 (the
/// ring size the pool prefers).
pub fn pool_size(n: PoolNeed) -> u32 {
    let need = n.descriptors + n.bursts * n.burst + n.lcores * (POOL_CACHE * 3 / 2) + 1024;
    (need * 2).max(16384).next_power_of_two() - 1
}

/// The EAL command line: the user's arguments after `--`, plus our defaults for what they
/// did not say. `stem` names the program and the file prefix (`STEM-PID`). Returns the
/// arguments and the prefix we chose (None when the user gave one).
pub fn eal_defaults(stem: &str, user: &[String], ports: &[PortDef], main_core: usize) -> (Vec<String>, Option<String>) {
    let mut eal = vec![stem.to_string()];
    let pci: Vec<&String> = ports.iter().filter_map(|p| if let PortSpec::Pci(a) = &p.spec { Some(a) } else { None }).collect();
    if !preflight::has_flag(user, &["--no-pci", "-a", "--allow", "-b", "--block"]) {
        if pci.is_empty() {
            eal.push("--no-pci".into());
        } else {
            // Only the named NICs are probed, never the machine's own devices.
            for addr in &pci {
                eal.push("-a".into());
                eal.push(addr.to_string());
            }
        }
    }
    let mut own_prefix = None;
    if !preflight::has_flag(user, &["--file-prefix"]) {
        let p = format!("{stem}-{}", std::process::id());
        eal.push(format!("--file-prefix={p}"));
        own_prefix = Some(p);
    }
    let no_huge = preflight::has_flag(user, &["--no-huge"]);
    if !no_huge && !preflight::has_flag(user, &["--in-memory"]) {
        eal.push("--in-memory".into());
    }
    if !preflight::has_flag(user, &["-l", "-c", "--lcores", "--main-lcore"]) {
        eal.push("-l".into());
        eal.push(main_core.to_string());
    }
    if !preflight::has_flag(user, &["--log-level"]) {
        eal.push("--log-level=notice".into());
    }
    // virtio-user shares memory by fd: one file per segment list, else traffic stalls
    // after ~85 packets ("Too many memory regions").
    let virtio_user = ports.iter().any(|p| matches!(&p.spec, PortSpec::Vdev(d) if d.starts_with("net_virtio_user")));
    if virtio_user && !no_huge && !preflight::has_flag(user, &["--single-file-segments"]) {
        eal.push("--single-file-segments".into());
    }
    eal.extend(user.iter().cloned());
    (eal, own_prefix)
}

/// Initialises the EAL pinned to the main core, quietly unless `verbose`. On failure the
/// runtime directory we made is removed and the EAL's own reason is quoted in one line.
/// The returned capture (if any) keeps DPDK's log quiet until the caller finishes it.
pub fn start_eal(eal: &[String], own_prefix: Option<&str>, verbose: bool) -> Result<(Eal, Option<LogCapture>), Failure> {
    let capture = if verbose { None } else { LogCapture::start() };
    // EAL control threads (vhost-events, eal-intr-thread, telemetry) take the CPUs of the
    // process's affinity at init that no lcore uses. Our workers are not EAL lcores, so
    // without this those threads would land on the worker cores: run init pinned to the
    // main core and they stay there with it (workers then pin themselves explicitly).
    if let Some(&main) = preflight::main_core_from_eal(&eal[1..]).as_ref().or(preflight::allowed_cpus().first()) {
        core_affinity::set_for_current(core_affinity::CoreId { id: main });
    }
    let quiet = if verbose { None } else { QuietStdio::start() };
    let init = Eal::init(eal);
    let said = quiet.map(|q| q.finish()).unwrap_or_default();
    match init {
        Ok(e) => Ok((e, capture)),
        Err(e) => {
            let log = capture.map(|c| c.finish()).unwrap_or_default() + &said;
            // A failed init can leave its runtime directory behind: remove it, unless the
            // prefix was refused because a live process holds it (then it is theirs).
            let held = log.contains("Cannot create lock") || log.contains("another primary");
            if let Some(p) = own_prefix.map(str::to_string).or_else(|| eal_prefix(eal)) {
                if !held {
                    let _ = std::fs::remove_dir_all(std::path::Path::new("/var/run/dpdk").join(p));
                }
            }
            let why = eal_reason(&log);
            Err(Failure::Runtime(format!(
                "EAL init failed ({e}){}: check the EAL arguments after --, or run with -v",
                if why.is_empty() { String::new() } else { format!(": {why}") }
            )))
        }
    }
}

pub fn eal_prefix(eal: &[String]) -> Option<String> {
    let i = eal.iter().position(|a| a == "--file-prefix" || a.starts_with("--file-prefix="))?;
    match eal[i].split_once('=') {
        Some((_, v)) => Some(v.to_string()),
        None => eal.get(i + 1).cloned(),
    }
}

/// The line of the EAL's output that says why init failed: getopt's complaint or the
/// first specific EAL message (not the generic "Invalid 'command line' arguments").
fn eal_reason(log: &str) -> String {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let specific = |l: &&&str| {
        l.contains("unrecognized option")
            || l.contains("requires an argument")
            || (l.starts_with("EAL:") && !l.contains("Invalid 'command line'") && !l.contains("FATAL") && !l.contains("Error - exiting"))
    };
    lines
        .iter()
        .find(specific)
        .or(lines.last())
        .map(|l| l.trim_start_matches("pmdswitch: ").trim_start_matches("EAL: ").to_string())
        .unwrap_or_default()
}
