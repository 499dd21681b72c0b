//! Throughput search: the NDR, which is RFC 2544 §26.1's throughput (the fastest rate at
//! which the DUT forwards every frame it is sent) when `ndr_loss` is 0, and the PDR, the
//! fastest rate at which it loses at most the fraction `pdr_loss`.
//!
//! A binary search over the offered rate, one trial per step; the caller runs the
//! trials. The top rate is tried first, so a device that forwards everything costs one
//! trial, then the floor, so that the search starts from a bracket it has measured. The
//! PDR search reuses every trial of the NDR search, since each also tells something
//! about the PDR, and so starts from bounds tighter than [NDR, top].
//!
//! A search assumes the device's capacity holds still while it runs; on a shared host it
//! may not (this project's development VM switches between two speeds about 2x apart
//! for tens of seconds at a time), and a bisection that straddles such a change reports
//! a rate that belongs to neither speed. So when the top trial overloads the device, a
//! closing trial at the top follows the search, and the rates the device *delivered* in
//! the two overload trials (its forwarding rate at maximum offered load, RFC 2889 §5.1)
//! are compared: if they differ by more than `max_drift`, the search is repeated, up to
//! `retries` times, and the result says whether the last one was stable.

/// A trial whose sender achieved less than this fraction of the offered rate did not
/// test the offered rate.
pub const SENDER_SLACK: f64 = 0.99;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// The floor, tried second (if the top fails); 0 < lo_pps < hi_pps.
    pub lo_pps: f64,
    /// The top, tried first: usually line rate for the frame size.
    pub hi_pps: f64,
    /// Stop when (fail - pass) / fail <= resolution, e.g. 0.01 for 1%.
    pub resolution: f64,
    /// The NDR's loss allowance, a fraction: 0 in RFC 2544.
    pub ndr_loss: f64,
    /// The PDR's loss allowance, a fraction.
    pub pdr_loss: f64,
    /// Trials in all, NDR and PDR together; the top and the floor always run.
    pub max_trials: usize,
    /// Largest relative change of the delivered rate between the opening and the closing
    /// overload trial for which a search counts as stable, e.g. 0.05.
    pub max_drift: f64,
    /// Searches repeated after an unstable one.
    pub retries: usize,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            lo_pps: 1000.0,
            hi_pps: 14_880_952.0, // 10 Gbit/s of 64-byte frames
            resolution: 0.01,
            ndr_loss: 0.0,
            pdr_loss: 0.001,
            max_trials: 30,
            max_drift: 0.05,
            retries: 2,
        }
    }
}

/// One trial: what was offered, what the sender managed, what came back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    /// Offered rate; `search` sets it to the rate it asked for.
    pub rate_pps: f64,
    /// The rate the sender actually reached.
    pub achieved_pps: f64,
    pub tx: u64,
    pub rx: u64,
}

impl Trial {
    /// Fraction of sent packets not received; 0 if nothing was sent. More received than
    /// sent counts as no loss (see `rx_exceeds_tx`).
    pub fn loss(&self) -> f64 {
        if self.tx == 0 {
            return 0.0;
        }
        self.tx.saturating_sub(self.rx) as f64 / self.tx as f64
    }

    /// More packets came back than were sent: duplicates or foreign packets were
    /// counted, and this trial's loss figure should not be trusted.
    pub fn rx_exceeds_tx(&self) -> bool {
        self.rx > self.tx
    }

    /// The rate at which packets came back: the achieved rate less the loss.
    pub fn delivered_pps(&self) -> f64 {
        if self.tx == 0 {
            return 0.0;
        }
        self.achieved_pps * self.rx.min(self.tx) as f64 / self.tx as f64
    }

    /// The sender fell short of the offered rate, so the trial did not test it.
    pub fn sender_limited(&self) -> bool {
        self.achieved_pps < SENDER_SLACK * self.rate_pps
    }

    /// Passes a loss allowance. A sender-limited trial never passes: a rate the
    /// generator cannot offer has not been shown to be forwarded by the DUT, so it may
    /// not raise the lower bound.
    pub fn passes(&self, max_loss: f64) -> bool {
        !self.sender_limited() && self.loss() <= max_loss
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    /// Highest rate that passed `ndr_loss`; 0 if even the floor failed.
    pub ndr_pps: f64,
    /// Highest rate that passed `pdr_loss`; never below `ndr_pps`.
    pub pdr_pps: f64,
    /// Every trial in the order run.
    pub trials: Vec<Trial>,
    /// How many of `trials` the NDR search ran (the first ones).
    pub ndr_trials: usize,
    /// The rate just above the NDR or PDR failed because the sender fell short, not the
    /// DUT: the result is what the generator can offer, a lower bound for the DUT.
    pub sender_limited: bool,
    /// Some trial received more than it sent (see `Trial::rx_exceeds_tx`): its loss was
    /// taken as 0, so the rates may be too high. Check what else reaches the receiver.
    pub rx_exceeds_tx: bool,
    /// Both searches reached `resolution` (or passed at the top). False if `max_trials`
    /// ran out, or the floor failed: then the rate is below `lo_pps` and reported as 0.
    pub converged: bool,
    /// The closing overload trial (not in `trials`); None when the top passed.
    pub closing: Option<Trial>,
    /// Relative change of the delivered rate from the first trial to `closing`; 0 when
    /// the top passed.
    pub drift: f64,
    /// `drift <= max_drift`: the device held its capacity during the search.
    pub stable: bool,
    /// Searches run, the reported one last (1 + repetitions after unstable ones).
    pub attempts: usize,
}

/// Runs the search; `trial(rate)` sends at `rate` pps for the trial duration and reports.
/// Repeats it while the device's capacity moved during it (module doc).
pub fn search(p: &SearchParams, mut trial: impl FnMut(f64) -> Trial) -> SearchResult {
    let mut run = |rate: f64| Trial { rate_pps: rate, ..trial(rate) };
    let mut attempts = 0;
    loop {
        let mut r = search_once(p, &mut run);
        attempts += 1;
        r.attempts = attempts;
        if r.stable || attempts > p.retries {
            return r;
        }
    }
}

fn search_once(p: &SearchParams, run: &mut impl FnMut(f64) -> Trial) -> SearchResult {
    let mut trials = vec![run(p.hi_pps)];
    if !trials[0].passes(p.ndr_loss) && p.lo_pps < p.hi_pps {
        trials.push(run(p.lo_pps));
    }
    let (ndr_pps, ndr_done) = bisect(p, p.ndr_loss, &mut trials, run);
    let ndr_trials = trials.len();
    // Every trial that passed the NDR passes the PDR, so the PDR starts at or above it.
    let (pdr_pps, pdr_done) = bisect(p, p.pdr_loss, &mut trials, run);
    let sender_limited = [p.ndr_loss, p.pdr_loss].into_iter().any(|l| bounds(&trials, l).1.is_some_and(|t| t.sender_limited()));
    let rx_exceeds_tx = trials.iter().any(Trial::rx_exceeds_tx);
    let closing = (!trials[0].passes(p.ndr_loss)).then(|| run(p.hi_pps));
    let drift = closing.map_or(0.0, |c| {
        let (a, b) = (trials[0].delivered_pps(), c.delivered_pps());
        if a.max(b) > 0.0 {
            (a - b).abs() / a.max(b)
        } else {
            0.0
        }
    });
    SearchResult {
        ndr_pps,
        pdr_pps,
        trials,
        ndr_trials,
        sender_limited,
        rx_exceeds_tx,
        converged: ndr_done && pdr_done,
        closing,
        drift,
        stable: drift <= p.max_drift,
        attempts: 1,
    }
}

/// Halves the interval between the highest passing and the lowest failing rate until it
/// is within the resolution. Returns the highest passing rate (0 if none) and whether it
/// converged.
fn bisect(p: &SearchParams, max_loss: f64, trials: &mut Vec<Trial>, run: &mut impl FnMut(f64) -> Trial) -> (f64, bool) {
    loop {
        let (pass, fail) = bounds(trials, max_loss);
        let (Some(pass), Some(fail)) = (pass, fail) else {
            // Nothing failed above the best pass (the top passed), or nothing passed.
            return pass.map_or((0.0, false), |t| (t.rate_pps, true));
        };
        let (pass, fail) = (pass.rate_pps, fail.rate_pps);
        if (fail - pass) / fail <= p.resolution {
            return (pass, true);
        }
        if trials.len() >= p.max_trials {
            return (pass, false);
        }
        trials.push(run((pass + fail) / 2.0));
    }
}

/// The highest passing trial, and the lowest failing one above it. A failure below a
/// pass (a noisy device) is ignored: the search only narrows the bracket above the best
/// pass, as a plain binary search does.
fn bounds(trials: &[Trial], max_loss: f64) -> (Option<&Trial>, Option<&Trial>) {
    let pass = trials.iter().filter(|t| t.passes(max_loss)).max_by(|a, b| a.rate_pps.total_cmp(&b.rate_pps));
    let floor = pass.map_or(f64::NEG_INFINITY, |t| t.rate_pps);
    let fail = trials.iter().filter(|t| !t.passes(max_loss) && t.rate_pps > floor).min_by(|a, b| a.rate_pps.total_cmp(&b.rate_pps));
    (pass, fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: f64 = 3.7e6;
    const SECS: f64 = 10.0;

    /// A simulated DUT and sender: the sender reaches at most `sender_max`; the DUT loses
    /// `loss(achieved)` of what it gets, at least one packet if the loss is above 0.
    fn device(sender_max: f64, mut loss: impl FnMut(f64) -> f64) -> impl FnMut(f64) -> Trial {
        move |rate| {
            let achieved = rate.min(sender_max);
            let tx = (achieved * SECS) as u64;
            let lost = (tx as f64 * loss(achieved)).ceil() as u64;
            Trial { rate_pps: rate, achieved_pps: achieved, tx, rx: tx - lost.min(tx) }
        }
    }

    fn overload(cap: f64) -> impl Fn(f64) -> f64 {
        move |r| ((r - cap) / r).max(0.0)
    }

    fn params() -> SearchParams {
        SearchParams { lo_pps: 1e5, hi_pps: 14.88e6, ..SearchParams::default() }
    }

    /// Bisection steps to bring hi - lo within resolution of `rate`.
    fn steps(p: &SearchParams, rate: f64) -> usize {
        ((p.hi_pps - p.lo_pps) / (p.resolution * rate)).log2().ceil() as usize
    }

    #[test]
    fn finds_capacity() {
        let p = params();
        let r = search(&p, device(f64::INFINITY, overload(C)));
        assert!(r.converged && !r.sender_limited);
        assert!(C * (1.0 - p.resolution) <= r.ndr_pps && r.ndr_pps <= C, "{}", r.ndr_pps);
        // Loss (r - C) / r <= 0.001 up to C / 0.999.
        let pdr = C / (1.0 - p.pdr_loss);
        assert!(pdr * (1.0 - p.resolution) <= r.pdr_pps && r.pdr_pps <= pdr, "{}", r.pdr_pps);
        assert!(r.pdr_pps >= r.ndr_pps);
        assert!(r.ndr_trials <= steps(&p, C) + 2, "{} trials", r.ndr_trials);
        assert!(r.trials.len() <= steps(&p, C) + steps(&p, pdr) + 2, "{} trials", r.trials.len());
        assert_eq!((r.trials[0].rate_pps, r.trials[1].rate_pps), (p.hi_pps, p.lo_pps));
    }

    #[test]
    fn noisy_capacity() {
        // Capacity varies by up to ±1% from trial to trial (a 64-bit LCG, Knuth's MMIX
        // constants), so the result can only be trusted to the noise plus resolution.
        for seed in 1..=20u64 {
            let mut state = seed;
            let mut dut = device(f64::INFINITY, move |r| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                overload(C * (1.0 + 0.02 * (u - 0.5)))(r)
            });
            let p = params();
            let r = search(&p, &mut dut);
            assert!(r.converged);
            assert!(0.99 * C * (1.0 - p.resolution) <= r.ndr_pps && r.ndr_pps <= 1.01 * C, "seed {seed}: {}", r.ndr_pps);
            assert!(r.pdr_pps >= r.ndr_pps);
            assert!(r.trials.len() <= p.max_trials);
        }
    }

    #[test]
    fn forwards_everything() {
        let p = params();
        let r = search(&p, device(f64::INFINITY, |_| 0.0));
        assert_eq!((r.ndr_pps, r.pdr_pps, r.trials.len(), r.converged), (p.hi_pps, p.hi_pps, 1, true));
    }

    #[test]
    fn sender_limited() {
        let p = params();
        let r = search(&p, device(2e6, overload(C)));
        assert!(r.sender_limited && r.converged);
        // Up to 2e6 / 0.99 the sender is within its slack, and the DUT loses nothing.
        assert!(2e6 * (1.0 - p.resolution) <= r.ndr_pps && r.ndr_pps <= 2e6 / SENDER_SLACK, "{}", r.ndr_pps);
        assert!(r.trials.iter().any(Trial::sender_limited));
        // A sender faster than the DUT: some trials fall short, the result does not.
        let r = search(&p, device(5e6, overload(C)));
        assert!(!r.sender_limited && r.trials[0].sender_limited());
        assert!(C * (1.0 - p.resolution) <= r.ndr_pps && r.ndr_pps <= C);
    }

    #[test]
    fn loss_plateau_separates_pdr() {
        // 0.05% loss between C and 1.2 C (a buffer overflowing now and then), then overload.
        let plateau = |r| match r {
            r if r <= C => 0.0,
            r if r <= 1.2 * C => 0.0005,
            r => overload(C)(r),
        };
        let p = params();
        let r = search(&p, device(f64::INFINITY, plateau));
        assert!(r.converged);
        assert!(C * (1.0 - p.resolution) <= r.ndr_pps && r.ndr_pps <= C, "{}", r.ndr_pps);
        assert!(1.2 * C * (1.0 - p.resolution) <= r.pdr_pps && r.pdr_pps <= 1.2 * C, "{}", r.pdr_pps);
    }

    #[test]
    fn floor_fails_or_trials_run_out() {
        let p = params();
        let r = search(&p, device(f64::INFINITY, |_| 0.01));
        assert_eq!((r.ndr_pps, r.pdr_pps, r.converged, r.trials.len()), (0.0, 0.0, false, 2));
        // 1% loss everywhere: no NDR, but a PDR at 2%.
        let r = search(&SearchParams { pdr_loss: 0.02, ..p }, device(f64::INFINITY, |_| 0.01));
        assert_eq!((r.ndr_pps, r.pdr_pps, r.converged), (0.0, p.hi_pps, false));
        let r = search(&SearchParams { max_trials: 4, ..p }, device(f64::INFINITY, overload(C)));
        assert!(!r.converged && r.trials.len() == 4 && r.ndr_pps < C);
    }

    #[test]
    fn capacity_change_repeats_the_search() {
        // The device forwards C for its first 5 trials, then 2 C (the host sped up); the
        // first search straddles the change, the repetition does not.
        let mut n = 0;
        let mut dut = device(f64::INFINITY, move |r| {
            n += 1;
            overload(if n <= 5 { C } else { 2.0 * C })(r)
        });
        let p = params();
        let r = search(&p, &mut dut);
        assert_eq!(r.attempts, 2);
        assert!(r.stable && r.drift < 0.001, "drift {}", r.drift);
        assert!(2.0 * C * (1.0 - p.resolution) <= r.ndr_pps && r.ndr_pps <= 2.0 * C, "{}", r.ndr_pps);
        let closing = r.closing.expect("the top overloaded");
        assert!((closing.delivered_pps() - 2.0 * C).abs() < 1.0);
        // A device that keeps speeding up: the retries run out and the result says so.
        let mut n = 0.0;
        let mut dut = device(f64::INFINITY, move |r| {
            n += 1.0;
            overload(C * (1.0 + 0.1 * n))(r)
        });
        let r = search(&SearchParams { retries: 1, ..p }, &mut dut);
        assert!(!r.stable && r.attempts == 2 && r.drift > p.max_drift, "{r:?}");
        // A steady device: one search, its closing trial delivering what the first did.
        let r = search(&p, device(f64::INFINITY, overload(C)));
        assert!(r.stable && r.attempts == 1 && r.drift < 1e-9);
        let r = search(&p, device(f64::INFINITY, |_| 0.0));
        assert!(r.stable && r.closing.is_none());
    }

    #[test]
    fn trial_loss() {
        let t = |tx, rx| Trial { rate_pps: 1.0, achieved_pps: 1.0, tx, rx };
        assert_eq!(t(1000, 999).loss(), 0.001);
        assert_eq!(t(0, 0).loss(), 0.0);
        assert_eq!(t(10, 12).loss(), 0.0);
        assert!(t(10, 12).rx_exceeds_tx() && !t(10, 10).rx_exceeds_tx());
        assert!(Trial { achieved_pps: 0.98, ..t(1, 1) }.sender_limited());
        assert_eq!(Trial { achieved_pps: 2000.0, ..t(1000, 750) }.delivered_pps(), 1500.0);
        assert_eq!(t(0, 0).delivered_pps(), 0.0);
        let r = search(&params(), |rate| Trial { rate_pps: rate, achieved_pps: rate, tx: 100, rx: 101 });
        assert!(r.rx_exceeds_tx && r.ndr_pps == params().hi_pps);
        assert!(!search(&params(), device(f64::INFINITY, |_| 0.0)).rx_exceeds_tx);
    }
}
