//! A `pmdswitch run` of the test bed's own: started with a stats JSON file in a scratch
//! directory and a unique EAL file prefix, stopped with SIGTERM, its threads' CPU time
//! readable from /proc.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::proc::Proc;
use super::scratch::Scratch;

/// The environment variable that picks the vhost data path of test switches.
pub const DATAPATH_ENV: &str = "PMDSWITCH_TEST_VHOST_DATAPATH";

/// A running `pmdswitch run` (its output is the [`Proc`]'s).
pub struct Switch {
    pub proc: Proc,
    /// Where it writes its final stats (`--stats-json`).
    pub json: PathBuf,
}

impl Deref for Switch {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl DerefMut for Switch {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Switch {
    /// Starts `EXE run ARGS --stats-json DIR/stats.json -- --file-prefix=...` and waits
    /// until it forwards. With `PMDSWITCH_TEST_VHOST_DATAPATH` set (own or lib) and no
    /// `--vhost-datapath` in ARGS, that data path is asked for: the test command runs the
    /// vhost tests once per data path.
    ///
    /// # Panics
    /// When it does not start within 20 s (the test bed's failure, with its output).
    pub fn start(exe: &Path, s: &Scratch, args: &[&str]) -> Switch {
        Switch::start_in(exe, s, None, &[], args)
    }

    /// `start` inside network namespace `netns` (`ip netns exec`, which execs: the
    /// process is still ours to signal), with environment variables `envs` added.
    pub fn start_in(exe: &Path, s: &Scratch, netns: Option<&str>, envs: &[(&str, &str)], args: &[&str]) -> Switch {
        let json = s.path("stats.json");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.envs(envs.iter().copied());
        cmd.arg("run").args(args).arg("--stats-json").arg(&json);
        if let Ok(dp) = std::env::var(DATAPATH_ENV) {
            if !args.contains(&"--vhost-datapath") && !dp.is_empty() {
                cmd.args(["--vhost-datapath", &dp]);
            }
        }
        cmd.arg("--").arg(format!("--file-prefix={}", s.prefix("dut")));
        let p = Proc::spawn("pmdswitch run", &mut cmd, None).expect("spawn pmdswitch");
        assert!(p.out.wait_for("forwarding with", 1, Duration::from_secs(20)), "pmdswitch did not start:\n{}", p.text());
        Switch { proc: p, json }
    }

    /// SIGTERM, wait; returns the exit status, how long the exit took, the stats JSON
    /// (null if none) and everything it printed.
    ///
    /// # Panics
    /// When it does not exit within 20 s, or writes JSON that does not parse.
    pub fn stop(mut self) -> (ExitStatus, Duration, serde_json::Value, String) {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let st = super::proc::wait_timeout(&mut self.proc.child, Duration::from_secs(20))
            .expect("pmdswitch did not exit within 20 s of SIGTERM");
        let took = t.elapsed();
        std::thread::sleep(Duration::from_millis(50));
        let text = self.text();
        let json = std::fs::read_to_string(&self.json)
            .map(|s| serde_json::from_str(&s).expect("stats JSON parses"))
            .unwrap_or(serde_json::Value::Null);
        (st, took, json, text)
    }

    /// Fraction of one core the worker on `core` used over the next `secs` seconds (its
    /// utime + stime in /proc).
    ///
    /// # Panics
    /// When no worker runs on `core`.
    pub fn worker_load(&self, core: usize, secs: u64) -> f64 {
        let tid = self.worker_tid(core).expect("worker thread");
        let a = cpu_ticks(self.pid(), tid);
        std::thread::sleep(Duration::from_secs(secs));
        let b = cpu_ticks(self.pid(), tid);
        (b - a) as f64 / (secs * ticks_per_sec()) as f64
    }

    /// Thread id of the worker pinned to `core` (thread name `pmd-cN`).
    pub fn worker_tid(&self, core: usize) -> Option<i32> {
        let dir = format!("/proc/{}/task", self.pid());
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim() == format!("pmd-c{core}") {
                return e.file_name().to_string_lossy().parse().ok();
            }
        }
        None
    }
}

/// CPU time (clock ticks) a thread has used: utime + stime, fields 14 and 15 of
/// /proc/PID/task/TID/stat (counted after the parenthesised name).
fn cpu_ticks(pid: i32, tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else { return 0 };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn ticks_per_sec() -> u64 {
    Command::new("getconf").arg("CLK_TCK").output().ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100)
}
