//! The host's speed as a packet loop between two cores feels it (see [`host_probe`]),
//! so that a benchmark can tell rounds run at one host speed from the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::median;

/// How far apart two host-speed probes may be and still count as the same speed: the
/// probe's own spread is about ±20 %; the host's slow phase reads about 5x.
pub const HOST_TOLERANCE: f64 = 0.5;

/// The host's speed now, as the loop feels it: TSC cycles for one round trip of a cache
/// line between the generator's core and the DUT's (one thread on each bounces a
/// counter; median of 9 samples of 2 000 trips, a few milliseconds). Run while neither
/// core is busy (before a DUT starts, after it stops). Measured on this machine: 130-190
/// cycles most of the time, 850-900 for spells of about a second to tens of seconds
/// (as when the two virtual CPUs sit on different core complexes); in those spells the
/// packet loop, which moves every descriptor and buffer between the two cores, runs at
/// half speed, and a fixed single-core workload does not slow at all. Two runs with
/// readings far apart did not run at the same host speed.
pub fn host_probe(a: usize, b: usize) -> Option<f64> {
    use std::sync::atomic::AtomicU64;
    let line = Arc::new(crossbeam::utils::CachePadded::new(AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let (l2, d2) = (line.clone(), done.clone());
    // Both sides on threads of their own: the caller's CPU affinity stays as it was.
    let echo = std::thread::spawn(move || {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: b }) {
            return false;
        }
        while !d2.load(Ordering::Relaxed) {
            let v = l2.load(Ordering::Acquire);
            if v & 1 == 1 {
                l2.store(v + 1, Ordering::Release);
            }
        }
        true
    });
    let ping = std::thread::spawn(move || {
        let mut samples = Vec::new();
        if core_affinity::set_for_current(core_affinity::CoreId { id: a }) {
            // A bound in spins, not time, so the inner loop reads no clock: a sample
            // whose echo never comes (the other side not scheduled) ends the probe.
            'probe: while samples.len() < 9 {
                let t0 = crate::sys::rdtsc();
                for _ in 0..2000 {
                    let v = line.load(Ordering::Acquire) + 1;
                    line.store(v, Ordering::Release);
                    let mut spins = 0u64;
                    while line.load(Ordering::Acquire) == v {
                        spins += 1;
                        if spins > 50_000_000 {
                            break 'probe;
                        }
                        std::hint::spin_loop();
                    }
                }
                samples.push((crate::sys::rdtsc() - t0) as f64 / 2000.0);
            }
        }
        done.store(true, Ordering::Relaxed);
        samples
    });
    let samples = ping.join().unwrap_or_default();
    let echoed = echo.join().unwrap_or(false);
    (echoed && samples.len() == 9).then(|| median(samples)).flatten()
}

/// Whether two DUT runs ran at the same host speed: each run's two probes (before and
/// after) agree, and the two runs' agree, within [`HOST_TOLERANCE`]. (A spell shorter
/// than a run can still fall between two probes unseen.)
pub fn same_host(a: Option<(f64, f64)>, b: Option<(f64, f64)>) -> bool {
    let close = |x: f64, y: f64| (x / y - 1.0).abs() <= HOST_TOLERANCE;
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => close(a0, a1) && close(b0, b1) && close((a0 + a1) / 2.0, (b0 + b1) / 2.0),
        _ => false,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_needs_four_agreeing_probes() {
        let fast = Some((150.0, 170.0));
        assert!(same_host(fast, Some((140.0, 190.0))));
        // Both runs in the slow spell: the same (slow) machine.
        assert!(same_host(Some((860.0, 880.0)), Some((850.0, 900.0))));
        // One run fast, one slow; a run that changed speed; a missing probe.
        assert!(!same_host(fast, Some((860.0, 880.0))));
        assert!(!same_host(fast, Some((150.0, 870.0))));
        assert!(!same_host(fast, None));
    }

    /// The probe reads the two cores' round trip where two usable cores exist; on this
    /// machine that is a few hundred cycles, never 0.
    #[test]
    fn host_probe_reads_a_round_trip() {
        let cpus: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        if cpus.len() < 2 {
            return;
        }
        let v = host_probe(cpus[0], cpus[1]).expect("both sides ran");
        assert!(v > 20.0 && v < 100_000.0, "{v} cycles per round trip");
    }
}
