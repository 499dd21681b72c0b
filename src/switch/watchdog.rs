//! Workers are supervised: a worker that panics, or that has not finished a poll pass
//! for [`stall_limit`], is noticed within a tenth of a second. The watchdog says which
//! worker, which core and what it was doing, releases every wait on the reload barrier
//! (so one stuck worker cannot freeze vhost-user handling for every socket), and the
//! switch's [`super::Switch::serve`] returns the fault: `run` shuts down and exits
//! non-zero. A worker is not restarted: the queues it held may be mid-burst, and a switch
//! that silently serves fewer queues is worse than one that stops and says why.
//!
//! The heartbeat costs the fast path nothing: a worker already adds its busy or idle
//! cycles after every pass; the watchdog reads those counters.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::datapath::reload::ReloadBarrier;
use crate::datapath::stats::{Phase, WorkerStats};
use crate::datapath::worker::{Fault, Worker};

/// How a worker thread ended: set by [`run_worker`] on the way out.
#[derive(Default)]
pub struct Exit {
    pub done: AtomicBool,
    pub panic: Mutex<Option<String>>,
}

/// The worker thread's body: the worker's loop, with a panic caught and recorded (the
/// default hook has printed it to stderr already).
pub fn run_worker(worker: Worker, exit: &Exit) {
    let (router, index) = (worker.router.clone(), worker.index);
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| worker.run())) {
        // It reads no table any more: the router's frees need not wait for it.
        router.qsbr.offline(index);
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        *exit.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }
    exit.done.store(true, Ordering::SeqCst);
}

/// A worker that has not finished a poll pass for this long is stalled: 10 s by default
/// (far beyond any pass, any adaptive-idle sleep of at most 100 ms, and any descheduling
/// seen on a busy 2-core host), `PMDSWITCH_WORKER_STALL_MS` to change it.
pub fn stall_limit() -> Duration {
    let ms = std::env::var("PMDSWITCH_WORKER_STALL_MS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|&v| v > 0);
    Duration::from_millis(ms.unwrap_or(10_000))
}

/// The test hook: `PMDSWITCH_TEST_WORKER_FAULT=panic|stall` makes worker 0 panic, or
/// stop polling, at its next reload point after start (e.g. after `ctl add-port`).
pub fn test_fault() -> Option<Fault> {
    match std::env::var("PMDSWITCH_TEST_WORKER_FAULT").ok()?.as_str() {
        "panic" => Some(Fault::Panic),
        "stall" => Some(Fault::Stall),
        _ => None,
    }
}

pub struct Watchdog {
    stop: Arc<AtomicBool>,
    fault: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
    exits: Vec<Arc<Exit>>,
}

impl Watchdog {
    /// Watches the workers whose counters and exits are given, every 100 ms.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn(stats: Vec<Arc<WorkerStats>>, exits: Vec<Arc<Exit>>, barrier: Arc<ReloadBarrier>) -> std::io::Result<Watchdog> {
        let stop = Arc::new(AtomicBool::new(false));
        let fault = Arc::new(Mutex::new(None));
        let (s, f, x) = (stop.clone(), fault.clone(), exits.clone());
        let limit = stall_limit();
        let thread = std::thread::Builder::new().name("pmds-watchdog".into()).spawn(move || {
            let mut last: Vec<(u64, u32)> = stats.iter().map(|w| (w.heartbeat(), 0)).collect();
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(LOOK);
                if let Some(m) = check(&stats, &x, &mut last, limit, &barrier) {
                    eprintln!("pmdswitch: {m}");
                    *f.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
                    // Nobody may wait for a worker that will not answer.
                    barrier.abandon();
                    return;
                }
            }
        })?;
        Ok(Watchdog { stop, fault, thread: Some(thread), exits })
    }

    /// The fault seen, if any: one line naming the worker, its core and what it was doing.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops watching and joins the workers (the barrier has told them to stop). A worker
    /// that has not ended within 2 s is left running: returns false then.
    pub fn join_workers(mut self, workers: Vec<JoinHandle<()>>) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut clean = true;
        for (h, x) in workers.into_iter().zip(&self.exits) {
            while !x.done.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if x.done.load(Ordering::SeqCst) {
                let _ = h.join();
            } else {
                eprintln!(
                    "pmdswitch: worker thread {} did not stop: its ports and memory are left to the process's exit",
                    h.thread().name().unwrap_or("?")
                );
                clean = false;
            }
        }
        clean
    }
}

/// How often the watchdog looks.
const LOOK: Duration = Duration::from_millis(100);

/// One look at every worker: the first fault found, as one line. A stall is counted in
/// looks that saw no pass, not in wall time: a process stopped as a whole (SIGSTOP, a
/// debugger) stops the watchdog too, and is not called stuck when it resumes.
fn check(
    stats: &[Arc<WorkerStats>],
    exits: &[Arc<Exit>],
    last: &mut [(u64, u32)],
    limit: Duration,
    barrier: &ReloadBarrier,
) -> Option<String> {
    let misses = (limit.as_millis() / LOOK.as_millis()).max(1) as u32;
    for (w, ((s, x), seen)) in stats.iter().zip(exits).zip(last.iter_mut()).enumerate() {
        let phase = s.phase();
        if x.done.load(Ordering::SeqCst) {
            // Told to stop (shutdown): the barrier's flag was set before the worker left.
            if barrier.stopping() {
                continue;
            }
            let why = match x.panic.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                Some(m) => format!("panicked: {m}"),
                None => "ended".into(),
            };
            return Some(format!(
                "worker {w} on core {} stopped while {}: {why}; its rx queues are no longer served, so pmdswitch stops",
                s.core,
                phase.name()
            ));
        }
        let beat = s.heartbeat();
        if beat != seen.0 {
            *seen = (beat, 0);
        } else {
            seen.1 += 1;
            if seen.1 >= misses && phase != Phase::Stopped {
                return Some(format!(
                    "worker {w} on core {} has not finished a poll pass for {:.1} s (while {}): it is stuck, so pmdswitch stops",
                    s.core,
                    (LOOK * seen.1).as_secs_f64(),
                    phase.name()
                ));
            }
        }
    }
    None
}
