//! The generator's poll loop: one pinned thread that transmits on every tx port and
//! receives on every port, run to completion like a pmdswitch worker.
//!
//! Per burst the sender allocates mbufs in bulk, copies a prebuilt header (Ethernet, IPv4,
//! UDP and the signature: 58 bytes) and writes a sequence number and a TSC timestamp; the
//! payload past the signature is not written (its content does not matter to a switch,
//! and copying 1.5 kB per packet would make the generator the bottleneck). What a port
//! refuses stays in a per-port pending batch and goes first next time, so a sequence
//! number is never skipped by the sender: a gap seen by the receiver is a loss on the way.
//!
//! A phase is warm-up (traffic flows, nothing is accounted), measurement, then drain
//! (tx stops, rx goes on until the loop is empty). Packets carry their tx TSC, and the
//! receiver ignores any stamped before the measurement started, so warm-up packets that
//! arrive late cannot pollute the results.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::datapath::gen::packet::{self, FlowSpec, SIG_LEN, SIG_OFFSET};
use crate::datapath::gen::track::{self, Class, SeqTracker};
use crate::datapath::stats::bump;
use crate::dpdk::ethdev::{EthRxQueue, EthTxQueue};
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;
use crate::sys::rdtsc;

/// Header bytes copied per packet: everything up to the end of the signature.
const HDR: usize = SIG_OFFSET + SIG_LEN;

/// One generator port.
pub struct GenPort {
    pub rx: EthRxQueue,
    pub tx: EthTxQueue,
    /// Transmits in this run (`--tx`); every port receives.
    pub sends: bool,
    /// Flow spec of this port's stream (source/destination MACs differ per port).
    pub spec: FlowSpec,
    /// When set, flow f's destination MAC is this spec's source MAC of flow f (the port
    /// that receives the stream), so a learning bridge sees every station both ways.
    pub peer: Option<FlowSpec>,
}

/// What a phase does.
#[derive(Debug, Clone, Copy)]
pub struct PhaseCfg {
    /// Packets per second per sending port; None = as fast as the port takes them.
    pub rate_pps: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Stop a port after this many measured packets (0 = no limit).
    pub count: u64,
    /// Drain: after tx stops, receive until this long passes with nothing arriving.
    pub drain_quiet_ms: u64,
}

/// Counters the main thread reads for the progress line (single writer: the gen thread).
#[derive(Default)]
pub struct Live {
    pub tx: AtomicU64,
    pub rx: AtomicU64,
    /// p99 latency of the last second, ns.
    pub p99_ns: AtomicU64,
    /// 0 = idle, 1 = warm-up, 2 = measuring, 3 = draining.
    pub phase: AtomicU64,
}

/// Port totals over the whole phase, warm-up included: what the device under test
/// counted too, so the two can be compared exactly.
#[derive(Debug, Clone, Default)]
pub struct PortTotals {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Received frames without our signature (e.g. a guest's ARP or IPv6 noise).
    pub rx_foreign: u64,
    /// Our frames stamped during warm-up (received, not accounted in streams).
    pub rx_warmup: u64,
    /// Mbuf allocation failures (the pool was empty): the sender waited.
    pub alloc_fail: u64,
}

/// One stream = the packets one port transmitted during measurement.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// Packets stamped while measuring and sent (a warm-up packet that left late is not
    /// one of them).
    pub tx: u64,
    /// Bytes sent while measuring (for the achieved bit rate).
    pub tx_bytes: u64,
    /// Distinct packets received (any port).
    pub rx: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency: Histogram<u64>,
    /// Measurement time, s (from the first to the last packet sent).
    pub tx_secs: f64,
}

#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub ports: Vec<PortTotals>,
    /// Indexed like ports; None for ports that do not send.
    pub streams: Vec<Option<StreamResult>>,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub interrupted: bool,
    /// Latency samples with a timestamp later than the receive time (never expected: the
    /// TSC is invariant and shared by the one thread that stamps and reads).
    pub bad_latency: u64,
}

impl PhaseResult {
    pub fn total_tx(&self) -> u64 {
        self.streams.iter().flatten().map(|s| s.tx).sum()
    }
    pub fn total_rx(&self) -> u64 {
        self.streams.iter().flatten().map(|s| s.rx).sum()
    }
    /// Achieved tx rate per sending port, pps (the slowest port).
    pub fn achieved_pps(&self) -> f64 {
        self.streams.iter().flatten().map(|s| if s.tx_secs > 0.0 { s.tx as f64 / s.tx_secs } else { 0.0 }).fold(f64::INFINITY, f64::min)
    }
}

/// The generator: ports, prebuilt headers and the receive-side state.
pub struct Engine {
    pub ports: Vec<GenPort>,
    pool: Arc<Mempool>,
    burst: usize,
    /// Frame sizes cycled by the sender (with FCS, as on the wire).
    pattern: Vec<usize>,
    flows: u32,
    /// Record every Nth packet's latency (1 = all).
    latency_every: u32,
    tsc_hz: u64,
    /// headers[(port * flows + flow) * sizes + size_idx]
    headers: Vec<[u8; HDR]>,
    sizes: Vec<usize>,
    pub live: Arc<Live>,
}

impl Engine {
    /// # Panics
    /// When ports × flows exceeds the signature's flow field (checked by the caller).
    pub fn new(
        ports: Vec<GenPort>,
        pool: Arc<Mempool>,
        burst: usize,
        pattern: Vec<usize>,
        flows: u32,
        latency_every: u32,
        tsc_hz: u64,
    ) -> Engine {
        assert!(ports.len() as u64 * flows as u64 <= packet::MAX_FLOWS as u64);
        let mut e = Engine {
            ports,
            pool,
            burst: burst.clamp(1, MAX_BURST),
            pattern: Vec::new(),
            flows,
            latency_every: latency_every.max(1),
            tsc_hz,
            headers: Vec::new(),
            sizes: Vec::new(),
            live: Arc::new(Live::default()),
        };
        e.set_pattern(pattern);
        e
    }

    /// Sets the frame sizes cycled by the sender and builds every (port, flow, size)
    /// header once: the only per-packet work left is a copy and two stores.
    pub fn set_pattern(&mut self, pattern: Vec<usize>) {
        let mut sizes = pattern.clone();
        sizes.sort_unstable();
        sizes.dedup();
        let mut headers = Vec::with_capacity(self.ports.len() * self.flows as usize * sizes.len());
        for (p, port) in self.ports.iter().enumerate() {
            for f in 0..self.flows {
                for &sz in &sizes {
                    let t = packet::build(&port.spec, f, sz);
                    let mut h = [0u8; HDR];
                    h.copy_from_slice(&t.bytes[..HDR]);
                    if let Some(peer) = &port.peer {
                        h[..6].copy_from_slice(&peer.src_mac_of(f));
                    }
                    // The signature's flow field names the stream globally: port * flows + f.
                    packet::set_flow(&mut h, (p as u32 * self.flows + f) as u16);
                    headers.push(h);
                }
            }
        }
        self.pattern = pattern;
        self.sizes = sizes;
        self.headers = headers;
    }

    /// Runs one phase (warm-up, measurement, drain). `stop` ends it early (Ctrl-C).
    pub fn run(&mut self, cfg: &PhaseCfg, stop: &AtomicBool) -> PhaseResult {
        let n = self.ports.len();
        let hz = self.tsc_hz as f64;
        let nflows = n * self.flows as usize;
        let mut trackers: Vec<SeqTracker> = (0..nflows).map(|_| SeqTracker::new()).collect();
        let mut seqs = vec![0u32; nflows];
        let mut flow_tx = vec![0u64; nflows];
        let mut hists: Vec<Histogram<u64>> = (0..n).map(|_| new_hist()).collect();
        let mut second = new_hist();
        let mut totals = vec![PortTotals::default(); n];
        let mut tx_meas = vec![0u64; n];
        // Packets stamped while measuring, per port (sent or still pending).
        let mut stamped = vec![0u64; n];
        // Measured packets received at least once (a flooded packet arrives on several
        // ports: counting receptions would end the drain while copies are in flight).
        let (mut meas_unique, mut meas_dups) = (0u64, 0u64);
        let mut tx_meas_bytes = vec![0u64; n];
        let mut pending: Vec<Batch> = (0..n).map(|_| Batch::new()).collect();
        // Per port: packets sent in the current pacing epoch, position in flow/size cycle.
        let mut sent_epoch = vec![0u64; n];
        // Per port: position in the flow cycle and in the frame-size pattern.
        let mut cursor = vec![(0usize, 0usize); n];
        let mut pend_bytes = vec![0u64; n];
        let pattern_len = self.pattern.len();
        let mut last_tx_tsc = vec![0u64; n];
        let mut rx = Batch::new();
        let (mut busy, mut idle, mut bad_latency) = (0u64, 0u64, 0u64);
        let ns_per_cycle = 1e9 / hz;
        let every = self.latency_every;
        let sizes_n = self.sizes.len();
        let size_idx: Vec<usize> = self.pattern.iter().map(|s| self.sizes.iter().position(|x| x == s).unwrap_or(0)).collect();
        let flows = self.flows as usize;
        let live = self.live.clone();

        let t0 = rdtsc();
        let warm_end = t0 + (cfg.warmup_s * hz) as u64;
        let meas_end = warm_end + (cfg.duration_s * hz) as u64;
        let mut meas_start = u64::MAX; // set when measurement starts
        let mut epoch_start = t0;
        let mut phase = 1u8;
        live.phase.store(1, Relaxed);
        let mut next_second = t0 + self.tsc_hz;
        let mut quiet_since = 0u64;
        let drain_quiet = cfg.drain_quiet_ms * self.tsc_hz / 1000;
        let mut interrupted = false;
        let mut prev = t0;

        loop {
            let now = rdtsc();
            // Phase changes: once per iteration, a couple of compares.
            if phase == 1 && now >= warm_end {
                phase = 2;
                live.phase.store(2, Relaxed);
                meas_start = now;
                epoch_start = now;
                sent_epoch.iter_mut().for_each(|s| *s = 0);
                // Fresh sequence numbers: a late warm-up packet is recognised by its stamp.
                seqs.iter_mut().for_each(|s| *s = 0);
                // A pending batch was stamped in warm-up: its packets count as warm-up.
            }
            if phase == 2 {
                let done_count = cfg.count > 0 && self.ports.iter().enumerate().all(|(i, p)| !p.sends || stamped[i] >= cfg.count);
                if now >= meas_end || done_count || stop.load(Relaxed) {
                    interrupted = stop.load(Relaxed) && now < meas_end && !done_count;
                    phase = 3;
                    live.phase.store(3, Relaxed);
                    quiet_since = now;
                }
            }
            let mut work = 0usize;

            // Transmit: new packets while measuring (or warming up), and in the drain
            // phase whatever a port refused earlier, so every stamped packet goes out.
            for (i, port) in self.ports.iter_mut().enumerate() {
                if !port.sends {
                    continue;
                }
                let b = &mut pending[i];
                if b.is_empty() {
                    if phase == 3 {
                        continue;
                    }
                    let mut want = self.burst as u64;
                    if let Some(r) = cfg.rate_pps {
                        let due = ((now - epoch_start) as f64 * r / hz) as u64;
                        want = want.min(due.saturating_sub(sent_epoch[i]));
                    }
                    if phase == 2 && cfg.count > 0 {
                        want = want.min(cfg.count - stamped[i]);
                    }
                    if want == 0 {
                        continue;
                    }
                    let want = want as usize;
                    let base = i * self.flows as usize;
                    let headers = &self.headers;
                    let measuring = phase == 2;
                    let (mut flow, mut pos) = cursor[i];
                    let mut bytes = 0u64;
                    // One pass per packet: header copy, two stores, counters; no division.
                    let ok = b.alloc_fill(&self.pool, want, |_, room| {
                        let f = base + flow;
                        let len = self.pattern[pos] - packet::FCS;
                        room[..HDR].copy_from_slice(&headers[f * sizes_n + size_idx[pos]]);
                        packet::stamp(room, seqs[f], now);
                        seqs[f] = seqs[f].wrapping_add(1);
                        if measuring {
                            flow_tx[f] += 1;
                        }
                        flow += 1;
                        if flow == flows {
                            flow = 0;
                        }
                        pos += 1;
                        if pos == pattern_len {
                            pos = 0;
                        }
                        bytes += len as u64;
                        len
                    });
                    if !ok {
                        totals[i].alloc_fail += 1;
                        continue;
                    }
                    pend_bytes[i] = bytes;
                    if measuring {
                        stamped[i] += want as u64;
                    }
                    cursor[i] = (flow, pos);
                    sent_epoch[i] += want as u64;
                }
                let sent = port.tx.tx_burst(b);
                if sent > 0 {
                    work += sent;
                    // Bytes of what left: all of it usually; re-counted only on a partial send.
                    let sent_bytes = if b.is_empty() { pend_bytes[i] } else { pend_bytes[i] - b.bytes() };
                    pend_bytes[i] -= sent_bytes;
                    totals[i].tx_packets += sent as u64;
                    totals[i].tx_bytes += sent_bytes;
                    if phase >= 2 {
                        tx_meas[i] += sent as u64;
                        tx_meas_bytes[i] += sent_bytes;
                        last_tx_tsc[i] = now;
                        bump(&live.tx, sent as u64);
                    }
                }
            }

            // Receive on every port.
            for (i, port) in self.ports.iter_mut().enumerate() {
                let got = port.rx.rx_burst(&mut rx, self.burst);
                if got == 0 {
                    continue;
                }
                work += got;
                let t = &mut totals[i];
                t.rx_packets += got as u64;
                let mut meas = 0u64;
                let mut bytes = 0u64;
                rx.for_each(|data, len| {
                    bytes += len as u64;
                    let Some(sig) = packet::parse(data) else {
                        t.rx_foreign += 1;
                        return;
                    };
                    if sig.tsc < meas_start || sig.flow as usize >= nflows {
                        t.rx_warmup += 1;
                        return;
                    }
                    meas += 1;
                    let class = trackers[sig.flow as usize].record(sig.seq);
                    meas_unique += u64::from(class != Class::Duplicate);
                    meas_dups += u64::from(class == Class::Duplicate);
                    if class != Class::Duplicate && sig.seq % every == 0 {
                        if sig.tsc > now {
                            bad_latency += 1;
                        } else {
                            let ns = ((now - sig.tsc) as f64 * ns_per_cycle) as u64;
                            let stream = sig.flow as usize / flows;
                            let _ = hists[stream].record(ns.max(1));
                            // The progress line's p99 needs a sample, not every packet.
                            if sig.seq & 15 == 0 {
                                let _ = second.record(ns.max(1));
                            }
                        }
                    }
                });
                t.rx_bytes += bytes;
                bump(&live.rx, meas);
                rx.drop_all();
            }

            // Busy/idle while measuring only: warm-up and drain would blur "saturated".
            if work > 0 {
                quiet_since = now;
            }
            if phase == 2 {
                if work > 0 {
                    busy += now - prev;
                } else {
                    idle += now - prev;
                }
            }
            prev = now;
            if now >= next_second {
                live.p99_ns.store(second.value_at_quantile(0.99), Relaxed);
                second.reset();
                next_second = now + self.tsc_hz;
            }
            // Drain ends when every measured packet is back (counted once: a flooding DUT
            // delivers copies on several ports, so receptions could reach the count with
            // copies still in flight) — and, if copies were seen, the other copies may
            // still be on their way, so only after a quiet spell; or, when some were lost,
            // after the quiet spell: a time-out alone ends too early when the device under
            // test is descheduled for a moment with packets still queued.
            if phase == 3 && pending.iter().all(Batch::is_empty) {
                let all_back = meas_unique >= stamped.iter().sum::<u64>();
                if (all_back && meas_dups == 0) || now - quiet_since > drain_quiet {
                    break;
                }
            }
            if phase == 3 && now - quiet_since > 4 * drain_quiet {
                break;
            }
            if phase == 3 && stop.load(Relaxed) && now - quiet_since > drain_quiet / 4 {
                break;
            }
        }
        // Packets a port never took (it stayed full through the drain): they were not
        // sent, so they must not count as sent-and-lost.
        for b in pending.iter_mut() {
            b.for_each(|data, _| {
                if let Some(sig) = packet::parse(data) {
                    if sig.tsc >= meas_start && (sig.flow as usize) < nflows {
                        flow_tx[sig.flow as usize] -= 1;
                    }
                }
            });
            b.drop_all();
        }
        live.phase.store(0, Relaxed);

        let streams = (0..n)
            .map(|i| {
                if !self.ports[i].sends {
                    return None;
                }
                let range = i * self.flows as usize..(i + 1) * self.flows as usize;
                let (mut tx, mut rxu, mut dup, mut reo, mut lost) = (0, 0, 0, 0, 0);
                for f in range {
                    tx += flow_tx[f];
                    let tr = &trackers[f];
                    rxu += tr.unique();
                    dup += tr.duplicates();
                    reo += tr.reordered();
                    lost += track::lost(flow_tx[f], tr.unique());
                }
                let secs =
                    if meas_start != u64::MAX && last_tx_tsc[i] > meas_start { (last_tx_tsc[i] - meas_start) as f64 / hz } else { 0.0 };
                Some(StreamResult {
                    tx,
                    tx_bytes: tx_meas_bytes[i],
                    rx: rxu,
                    lost,
                    duplicates: dup,
                    reordered: reo,
                    latency: hists[i].clone(),
                    tx_secs: secs,
                })
            })
            .collect();
        PhaseResult { ports: totals, streams, busy_cycles: busy, idle_cycles: idle, interrupted, bad_latency }
    }
}

/// 1 ns to 60 s at 3 significant digits (0.1 % error): ~200 kB, allocated per phase.
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}
