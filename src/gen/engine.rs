//! The generator's poll loop: one pinned thread that transmits its streams on its ports
//! and receives on every port it owns, run to completion like a pmdswitch worker. Several
//! of these (`gen --cores`) each own some ports; their results merge per flow.
//!
//! Streams: each has its port, frame sizes, rate, time window, flows, a header shape and
//! a field engine (`stream.rs` builds them from a profile or the command-line flags). Per
//! stream the frames' headers are built once per (flow, size) with every per-flow field
//! applied; per packet the sender copies the header (64 or 128 bytes, a fixed-size copy),
//! applies the per-packet fields (each mends the IPv4 checksum as it writes), writes the
//! signature's sequence number and TSC, and recomputes the L4 checksum if the stream keeps
//! one. The payload past the header is not written (a switch does not read it, and
//! copying 1.5 kB per packet would make the generator the bottleneck). A replayed
//! capture's frames are copied whole. Streams on one port take turns burst by burst, each
//! held to its own rate. What a port refuses stays in a per-port pending batch and goes
//! first next time, so a sequence number is never skipped by the sender: a gap seen by the
//! receiver is a loss on the way.
//!
//! A phase is warm-up (traffic flows, nothing is accounted), measurement, then drain
//! (tx stops, rx goes on until the loop is empty). Packets carry their tx TSC, and the
//! receiver ignores any stamped before the measurement started, so warm-up packets that
//! arrive late cannot pollute the results.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::datapath::stats::bump;
use crate::datapath::wire::csum;
use crate::dpdk::ethdev::{EthRxQueue, EthTxQueue};
use crate::dpdk::mbuf::{Batch, MAX_BURST};
use crate::dpdk::mempool::Mempool;
use crate::gen::arp;
use crate::gen::field::{self, Cursor, Field, Kind, Mode, Per};
use crate::gen::frame::{self, Layout, Shape};
use crate::gen::packet::{self, FCS, SIG_LEN};
use crate::gen::pcap::{Capture, Replay};
use crate::gen::track::{self, Class, SeqTracker};
use crate::sys::rdtsc;

/// `flow_stream` of an unmeasured stream's flows: received, not accounted.
const UNMEASURED: u16 = u16::MAX;

/// Header bytes a template holds: two tags, IPv6, TCP and the signature fit (98).
const TEMPLATE: usize = 128;

/// One generator port.
pub struct GenPort {
    /// The port's index among all of the generator's ports (for `wrong_port` and
    /// captures: engines on several cores each own some).
    pub index: usize,
    pub rx: EthRxQueue,
    pub tx: EthTxQueue,
    /// The port's own address: ARP requests for it are answered.
    pub ip: Option<Ipv4Addr>,
    /// The port's MAC (ARP answers and requests).
    pub mac: [u8; 6],
}

impl GenPort {
    /// Sends one frame now (ARP); false if the pool or the port refused it.
    fn send_one(&mut self, pool: &Mempool, frame: &[u8]) -> bool {
        let mut b = Batch::new();
        if !b.alloc_fill(pool, 1, |_, room| {
            let n = frame.len().min(room.len());
            room[..n].copy_from_slice(&frame[..n]);
            n
        }) {
            return false;
        }
        self.tx.tx_burst(&mut b) == 1
    }
}

/// A stream as the engine sends it.
pub struct StreamDef {
    pub name: String,
    /// Index into the engine's ports.
    pub port: usize,
    /// The global index of the port its packets should come back on (`wrong_port`).
    pub peer: usize,
    pub pattern: Vec<usize>,
    /// Packets per second; None: as fast as the port takes (its share of it).
    pub rate_pps: Option<f64>,
    /// When it starts, after the measurement begins, and how long it runs (None: to the
    /// end); it sends during warm-up too, from the start.
    pub start_s: f64,
    pub duration_s: Option<f64>,
    pub flows: u32,
    pub shape: Shape,
    pub fields: Vec<Field>,
    pub measured: bool,
    /// A capture to replay, with its timing (Some(scale): its own gaps / scale) and loops
    /// (0: until the stream ends).
    pub replay: Option<(Arc<Replay>, Option<f64>, u32)>,
    /// Build this many packets' headers ahead and cycle through them (0: only when the
    /// fields' own cycle is short enough to be exact).
    pub cache: u32,
}

/// What a phase does.
#[derive(Debug, Clone, Copy)]
pub struct PhaseCfg {
    /// Packets per second for every stream (the RFC 2544 search's trial rate); None:
    /// each stream's own.
    pub rate_pps: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Stop a stream after this many measured packets (0 = no limit).
    pub count: u64,
    /// Drain: after tx stops, receive until this long passes with nothing arriving.
    pub drain_quiet_ms: u64,
    /// Start at this TSC (engines on several cores share one clock for their phases, so
    /// a packet stamped after one's measurement began is measured by the other too).
    pub start_tsc: Option<u64>,
}

/// Counters the main thread reads for the progress line (single writer: the gen thread).
#[derive(Default)]
pub struct Live {
    pub tx: AtomicU64,
    pub rx: AtomicU64,
    /// p99 latency of the last second, ns.
    pub p99_ns: AtomicU64,
    /// The [`Phase`] now.
    phase: AtomicU8,
}

impl Live {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Idle,
        }
    }

    fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Relaxed);
    }
}

/// Where a phase is: warm-up (traffic flows, nothing is accounted), measurement, drain
/// (tx stops, rx goes on until the loop is empty); idle between phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Idle = 0,
    Warmup = 1,
    Measure = 2,
    Drain = 3,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Warmup => "warm-up",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
        }
    }
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
    /// ARP requests for the port's address answered.
    pub arp_replies: u64,
}

/// One flow's numbers: what its sender stamped while measuring, what its receiver saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowNumbers {
    pub tx: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

/// One stream's part of a phase, as one engine saw it (a sender sees tx, receivers rx).
#[derive(Debug, Clone)]
pub struct StreamPart {
    pub tx_bytes: u64,
    /// Measured packets received on another port than the peer.
    pub wrong_port: u64,
    pub latency: Histogram<u64>,
    /// When the stream's first and last measured packet left (TSC), if this engine sent it.
    pub first_tx: Option<u64>,
    pub last_tx: u64,
}

/// One stream = the packets one stream transmitted during measurement.
#[derive(Debug, Clone)]
pub struct StreamResult {
    pub tx: u64,
    pub tx_bytes: u64,
    /// Distinct packets received (any port).
    pub rx: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub wrong_port: u64,
    pub latency: Histogram<u64>,
    /// Measurement time, s (from the first to the last packet sent).
    pub tx_secs: f64,
}

/// What a phase found, per engine; [`PhaseResult::merge`] adds engines together and
/// [`PhaseResult::streams`] gives each stream's result.
#[derive(Debug, Clone, Default)]
pub struct PhaseResult {
    /// Indexed by global port index (ports this engine does not own stay zero).
    pub ports: Vec<PortTotals>,
    /// Indexed by global flow.
    pub flows: Vec<FlowNumbers>,
    /// Indexed by stream.
    pub parts: Vec<StreamPart>,
    /// Flows of each stream: (first global flow, count, measured).
    pub flow_ranges: Vec<(usize, usize, bool)>,
    pub names: Vec<String>,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub interrupted: bool,
    /// Latency samples with a timestamp later than the receive time (never expected: the
    /// TSC is invariant).
    pub bad_latency: u64,
    pub tsc_hz: u64,
}

impl PhaseResult {
    /// Adds another engine's result of the same phase (same streams and flows).
    pub fn merge(&mut self, o: &PhaseResult) {
        for (a, b) in self.ports.iter_mut().zip(&o.ports) {
            a.tx_packets += b.tx_packets;
            a.tx_bytes += b.tx_bytes;
            a.rx_packets += b.rx_packets;
            a.rx_bytes += b.rx_bytes;
            a.rx_foreign += b.rx_foreign;
            a.rx_warmup += b.rx_warmup;
            a.alloc_fail += b.alloc_fail;
            a.arp_replies += b.arp_replies;
        }
        for (a, b) in self.flows.iter_mut().zip(&o.flows) {
            a.tx += b.tx;
            a.unique += b.unique;
            a.duplicates += b.duplicates;
            a.reordered += b.reordered;
        }
        for (a, b) in self.parts.iter_mut().zip(&o.parts) {
            a.tx_bytes += b.tx_bytes;
            a.wrong_port += b.wrong_port;
            let _ = a.latency.add(&b.latency);
            a.first_tx = match (a.first_tx, b.first_tx) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            a.last_tx = a.last_tx.max(b.last_tx);
        }
        self.busy_cycles += o.busy_cycles;
        self.idle_cycles += o.idle_cycles;
        self.interrupted |= o.interrupted;
        self.bad_latency += o.bad_latency;
    }

    /// Each stream's result (None for an unmeasured stream).
    pub fn streams(&self) -> Vec<Option<StreamResult>> {
        self.flow_ranges
            .iter()
            .zip(&self.parts)
            .map(|(&(base, n, measured), p)| {
                if !measured {
                    return None;
                }
                let (mut tx, mut rx, mut dup, mut reo, mut lost) = (0, 0, 0, 0, 0);
                for f in &self.flows[base..base + n] {
                    tx += f.tx;
                    rx += f.unique;
                    dup += f.duplicates;
                    reo += f.reordered;
                    lost += track::lost(f.tx, f.unique);
                }
                let secs = p.first_tx.filter(|&t| p.last_tx > t).map_or(0.0, |t| (p.last_tx - t) as f64 / self.tsc_hz.max(1) as f64);
                Some(StreamResult {
                    tx,
                    tx_bytes: p.tx_bytes,
                    rx,
                    lost,
                    duplicates: dup,
                    reordered: reo,
                    wrong_port: p.wrong_port,
                    latency: p.latency.clone(),
                    tx_secs: secs,
                })
            })
            .collect()
    }

    pub fn total_tx(&self) -> u64 {
        self.streams().iter().flatten().map(|s| s.tx).sum()
    }
    pub fn total_rx(&self) -> u64 {
        self.streams().iter().flatten().map(|s| s.rx).sum()
    }
    /// Achieved tx rate per measured stream, pps (the slowest).
    pub fn achieved_pps(&self) -> f64 {
        self.streams().iter().flatten().map(|s| if s.tx_secs > 0.0 { s.tx as f64 / s.tx_secs } else { 0.0 }).fold(f64::INFINITY, f64::min)
    }
}

/// A stream as the engine holds it: its definition, where its flows are numbered from,
/// its frames' layout and templates.
struct StreamTx {
    /// Its index among all the run's streams.
    id: usize,
    def: StreamDef,
    lay: Layout,
    /// 64 or 128: the fixed size of the header copy (past the frame's end is harmless:
    /// the mbuf holds 2 KiB).
    copy: usize,
    flow_base: usize,
    sizes: Vec<usize>,
    size_idx: Vec<usize>,
    /// templates[flow * sizes + size_idx]
    templates: Vec<[u8; TEMPLATE]>,
    /// The per-packet fields.
    pkt_fields: Vec<Field>,
    /// A per-packet field is in the IPv4 header (its checksum is recomputed per packet).
    v4_fields: bool,
    /// Per template, with an L4 checksum: the sum of the pseudo-header and the L4 bytes
    /// up to the sequence number (what stays the same per packet; see `l4_fix_from`).
    tsums: Vec<u64>,
    /// Packets in the prebuilt cycle (templates[k] is the cycle's k-th packet); 0: the
    /// templates are per (flow, size).
    cycle: usize,
    /// A cycle whose copy is one line: its headers again, a line each (half the cache
    /// footprint of `templates`, which a 4096-header cycle streams through per pass).
    lines: Vec<Line>,
}

/// A header of at most 64 bytes, on its own cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// The generator: ports, streams with their prebuilt headers, the receive-side state.
pub struct Engine {
    pub ports: Vec<GenPort>,
    streams: Vec<StreamTx>,
    pool: Arc<Mempool>,
    burst: usize,
    /// Record every Nth packet's latency (1 = all).
    latency_every: u32,
    tsc_hz: u64,
    /// Every stream's flows together (over every engine of the run).
    nflows: usize,
    /// Global flow → stream; `UNMEASURED` for a stream that is not accounted.
    flow_stream: Vec<u16>,
    /// All the generator's ports (for results indexed by global port).
    total_ports: usize,
    /// Stream names, flow ranges, measured, peer port of every engine's streams (results
    /// merge by them).
    all_streams: Vec<(String, usize, usize, bool, usize)>,
    capture: Option<Arc<Capture>>,
    pub live: Arc<Live>,
}

/// Every stream of a run: its flows get global numbers in this order, across engines.
pub struct Plan {
    /// (name, flows, measured, peer port) of every stream of the run, in order.
    pub all: Vec<(String, u32, bool, usize)>,
    pub total_ports: usize,
}

impl Plan {
    /// The first global flow of stream `i`.
    pub fn flow_base(&self, i: usize) -> usize {
        self.all[..i].iter().map(|s| s.1 as usize).sum()
    }
}

impl Engine {
    /// An engine for `ports` sending `streams` (`ids[k]`: stream k's index in `plan`).
    ///
    /// # Panics
    /// When the run has more flows than the signature numbers (checked by the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ports: Vec<GenPort>,
        streams: Vec<(usize, StreamDef)>,
        plan: &Plan,
        pool: Arc<Mempool>,
        burst: usize,
        latency_every: u32,
        tsc_hz: u64,
        capture: Option<Arc<Capture>>,
    ) -> Engine {
        let nflows = plan.all.iter().map(|s| s.1 as usize).sum::<usize>();
        assert!(nflows <= packet::MAX_FLOWS as usize);
        let mut flow_stream = vec![0u16; nflows];
        let mut all_streams = Vec::new();
        for (i, (name, n, measured, peer)) in plan.all.iter().enumerate() {
            let base = plan.flow_base(i);
            flow_stream[base..base + *n as usize].fill(if *measured { i as u16 } else { UNMEASURED });
            all_streams.push((name.clone(), base, *n as usize, *measured, *peer));
        }
        let streams = streams
            .into_iter()
            .map(|(id, def)| {
                let lay = Layout::of(&def.shape);
                let (pkt_fields, _): (Vec<Field>, Vec<Field>) = def.fields.iter().cloned().partition(|f| f.per == Per::Packet);
                let mut s = StreamTx {
                    id,
                    copy: match lay.header_len() {
                        0..=64 => 64,
                        65..=80 => 80,
                        81..=96 => 96,
                        _ => TEMPLATE,
                    },
                    v4_fields: pkt_fields.iter().any(|f: &Field| f.in_ipv4_header(&lay)),
                    tsums: Vec::new(),
                    cycle: 0,
                    lines: Vec::new(),
                    lay,
                    flow_base: plan.flow_base(id),
                    sizes: Vec::new(),
                    size_idx: Vec::new(),
                    templates: Vec::new(),
                    pkt_fields,
                    def,
                };
                s.build();
                s
            })
            .collect();
        Engine {
            ports,
            streams,
            pool,
            burst: burst.clamp(1, MAX_BURST),
            latency_every: latency_every.max(1),
            tsc_hz,
            nflows,
            flow_stream,
            total_ports: plan.total_ports,
            all_streams,
            capture,
            live: Arc::new(Live::default()),
        }
    }

    /// Sets the frame sizes of every built stream (the RFC 2544 search, size by size).
    pub fn set_pattern(&mut self, pattern: Vec<usize>) {
        for s in self.streams.iter_mut().filter(|s| s.def.replay.is_none()) {
            s.def.pattern = pattern.clone();
            s.build();
        }
    }

    /// Runs one phase (warm-up, measurement, drain). `stop` ends it early (Ctrl-C).
    pub fn run(&mut self, cfg: &PhaseCfg, stop: &AtomicBool) -> PhaseResult {
        let t0 = match cfg.start_tsc {
            Some(t) => {
                while rdtsc() < t && !stop.load(Relaxed) {
                    std::hint::spin_loop();
                }
                t
            }
            None => rdtsc(),
        };
        let hz = self.tsc_hz as f64;
        let mut r = Run::new(self, cfg, t0);
        self.live.set_phase(Phase::Warmup);
        let mut prev = t0;
        loop {
            let now = rdtsc();
            r.advance(now, cfg, stop, &self.live, &self.streams);
            let work = self.transmit(&mut r, now) + self.receive(&mut r);
            if work > 0 {
                r.quiet_since = now;
            }
            // Busy/idle while measuring only: warm-up and drain would blur "saturated".
            if r.phase == Phase::Measure {
                if work > 0 {
                    r.busy += now - prev;
                } else {
                    r.idle += now - prev;
                }
            }
            prev = now;
            if now >= r.next_second {
                self.live.p99_ns.store(r.second.value_at_quantile(0.99), Relaxed);
                r.second.reset();
                r.next_second = now + self.tsc_hz;
            }
            if r.phase == Phase::Drain && r.drained(now, stop) {
                break;
            }
        }
        self.live.set_phase(Phase::Idle);
        let _ = hz;
        r.finish(self)
    }

    /// Transmit on every port: its streams take turns (each held to its rate and time
    /// window) while warming up or measuring; in the drain phase only what a port
    /// refused earlier, so every stamped packet goes out. Returns the packets sent.
    #[inline(always)]
    fn transmit(&mut self, r: &mut Run, now: u64) -> usize {
        let mut work = 0;
        let measuring = r.phase == Phase::Measure;
        for (pi, port) in self.ports.iter_mut().enumerate() {
            let p = &mut r.ports[pi];
            if p.pending.is_empty() && r.phase != Phase::Drain {
                // The port's streams in turn, starting one further each time.
                let n = self.streams.len();
                for k in 0..n {
                    let si = (p.turn + k) % n;
                    let st = &self.streams[si];
                    if st.def.port != pi {
                        continue;
                    }
                    let sr = &mut r.streams[si];
                    if !sr.active(now) {
                        continue;
                    }
                    let mut want = self.burst as u64;
                    if let Some(rate) = sr.rate {
                        let due = ((now - sr.epoch) as f64 * rate / self.tsc_hz as f64) as u64;
                        want = want.min(due.saturating_sub(sr.sent_epoch));
                    }
                    if let Some((rp, timing, loops)) = &st.def.replay {
                        if let Some(scale) = timing {
                            want = want.min(sr.replay_due(rp, *scale, now, self.tsc_hz));
                        }
                        if *loops > 0 {
                            want = want.min((rp.len() * *loops as usize).saturating_sub(sr.replay_pos) as u64);
                        }
                    }
                    let timed = st.def.replay.as_ref().and_then(|(rp, sc, _)| Some((rp.clone(), (*sc)?)));
                    if measuring && r.count > 0 && st.def.measured {
                        want = want.min(r.count.saturating_sub(sr.stamped));
                    }
                    if want == 0 {
                        continue;
                    }
                    let (got, bytes) = fill(st, sr, &mut r.flows, &mut p.pending, &self.pool, want as usize, now, measuring);
                    if got == 0 {
                        p.totals.alloc_fail += 1;
                        continue;
                    }
                    p.pend_bytes = bytes;
                    p.pend_stream = st.id;
                    if let Some((rp, scale)) = timed {
                        sr.replay_advance(&rp, scale, got, self.tsc_hz);
                    }
                    sr.sent_epoch += got as u64;
                    if measuring && st.def.measured {
                        sr.stamped += got as u64;
                    }
                    p.turn = si + 1;
                    break;
                }
            }
            if p.pending.is_empty() {
                continue;
            }
            let sent = port.tx.tx_burst(&mut p.pending);
            if sent > 0 {
                work += sent;
                // Bytes of what left: all of it usually; re-counted only on a partial send.
                let sent_bytes = if p.pending.is_empty() { p.pend_bytes } else { p.pend_bytes - p.pending.bytes() };
                p.pend_bytes -= sent_bytes;
                p.totals.tx_packets += sent as u64;
                p.totals.tx_bytes += sent_bytes;
                if r.phase >= Phase::Measure {
                    let part = &mut r.parts[p.pend_stream];
                    part.tx_bytes += sent_bytes;
                    part.last_tx = now;
                    part.first_tx.get_or_insert(now);
                    bump(&self.live.tx, sent as u64);
                }
            }
        }
        work
    }

    /// Receive on every port: count, and account each measured packet to its flow
    /// (sequence, latency); answer ARP for the port's address; offer frames to the
    /// capture. Returns the packets received.
    #[inline(always)]
    fn receive(&mut self, r: &mut Run) -> usize {
        let mut work = 0;
        let (nflows, every) = (self.nflows, self.latency_every);
        for (i, port) in self.ports.iter_mut().enumerate() {
            let got = port.rx.rx_burst(&mut r.rx, self.burst);
            if got == 0 {
                continue;
            }
            // A fresh clock for the latency: the loop's `now` may predate a stamp that
            // another core wrote while this one was transmitting.
            let now = rdtsc();
            work += got;
            let Run { parts, trackers, meas_start, meas_unique, meas_dups, bad_latency, second, ns_per_cycle, replies, peers, .. } = r;
            let (mut meas, mut bytes, mut foreign, mut warmup) = (0u64, 0u64, 0u64, 0u64);
            let (me, mac, gidx) = (port.ip, port.mac, port.index);
            let (fs, cap) = (&self.flow_stream, self.capture.as_deref());
            r.rx.for_each(|data, len| {
                bytes += len as u64;
                if let Some(c) = cap {
                    c.offer(gidx as u16, now, data);
                }
                let Some(sig) = frame::find_sig(data) else {
                    foreign += 1;
                    if let Some(reply) = me.and_then(|me| arp::reply_to(data, me, mac)) {
                        replies.push(reply);
                    }
                    return;
                };
                let flow = sig.flow as usize;
                if sig.tsc < *meas_start || flow >= nflows {
                    warmup += 1;
                    return;
                }
                let si = fs[flow];
                if si == UNMEASURED {
                    return;
                }
                let si = si as usize;
                meas += 1;
                let part = &mut parts[si];
                if peers[si] != gidx {
                    part.wrong_port += 1;
                }
                let class = trackers[flow].record(sig.seq);
                *meas_unique += u64::from(class != Class::Duplicate);
                *meas_dups += u64::from(class == Class::Duplicate);
                if class != Class::Duplicate && sig.seq % every == 0 {
                    if sig.tsc > now {
                        *bad_latency += 1;
                    } else {
                        let ns = ((now - sig.tsc) as f64 * *ns_per_cycle) as u64;
                        let _ = part.latency.record(ns.max(1));
                        // The progress line's p99 needs a sample, not every packet.
                        if sig.seq & 15 == 0 {
                            let _ = second.record(ns.max(1));
                        }
                    }
                }
            });
            let t = &mut r.ports[i].totals;
            t.rx_packets += got as u64;
            t.rx_bytes += bytes;
            t.rx_foreign += foreign;
            t.rx_warmup += warmup;
            bump(&self.live.rx, meas);
            r.rx.drop_all();
            for reply in std::mem::take(&mut r.replies) {
                if port.send_one(&self.pool, &reply) {
                    r.ports[i].totals.arp_replies += 1;
                }
            }
        }
        work
    }

    /// Resolves `gw`'s MAC on port `i` (whose address is `me`) by ARP: a request every
    /// 200 ms until a reply or `timeout`, answering requests for our own addresses
    /// meanwhile (the gateway may ask for us first). The port's streams then go to it.
    pub fn resolve(&mut self, i: usize, gw: Ipv4Addr, timeout: Duration) -> Option<[u8; 6]> {
        let me = self.ports[i].ip?;
        let mac = self.ports[i].mac;
        let t0 = Instant::now();
        let mut next = t0;
        let mut rx = Batch::new();
        while t0.elapsed() < timeout {
            if Instant::now() >= next {
                self.ports[i].send_one(&self.pool, &arp::request(gw, me, mac));
                next = Instant::now() + Duration::from_millis(200);
            }
            let mut found = None;
            for k in 0..self.ports.len() {
                if self.ports[k].rx.rx_burst(&mut rx, self.burst) == 0 {
                    continue;
                }
                let mut replies = Vec::new();
                let (kip, kmac) = (self.ports[k].ip, self.ports[k].mac);
                rx.for_each(|d, _| {
                    if k == i {
                        found = found.or(arp::mac_of(d, gw));
                    }
                    if let Some(r) = kip.and_then(|ip| arp::reply_to(d, ip, kmac)) {
                        replies.push(r);
                    }
                });
                rx.drop_all();
                for r in replies {
                    self.ports[k].send_one(&self.pool, &r);
                }
            }
            if let Some(m) = found {
                for s in self.streams.iter_mut().filter(|s| s.def.port == i) {
                    s.def.shape.dst_mac = m;
                    s.def.fields.retain(|f| f.kind != Kind::DstMac);
                    s.pkt_fields.retain(|f| f.kind != Kind::DstMac);
                    s.build();
                }
                return Some(m);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }
}

impl StreamTx {
    /// Builds every (flow, size) header with the per-flow fields applied.
    fn build(&mut self) {
        let mut sizes = self.def.pattern.clone();
        sizes.sort_unstable();
        sizes.dedup();
        self.size_idx = self.def.pattern.iter().map(|s| sizes.iter().position(|x| x == s).unwrap_or(0)).collect();
        self.templates.clear();
        self.lines.clear();
        self.tsums.clear();
        if self.def.replay.is_some() {
            self.sizes = sizes;
            return;
        }
        let flow_fields: Vec<Field> = self.def.fields.iter().filter(|f| f.per == Per::Flow).cloned().collect();
        self.cycle = self.cycle_len();
        if self.cycle > 0 {
            // One header per packet of the cycle, every field applied (checksums mended as
            // they are written), so the sender only copies, stamps and sums the stamp.
            let (flows, plen) = (self.def.flows as usize, self.def.pattern.len());
            for k in 0..self.cycle {
                let f = k % flows;
                let mut b = frame::build(&self.def.shape, (self.flow_base + f) as u16, self.def.pattern[k % plen]);
                for fld in &flow_fields {
                    fld.write(&mut b, &self.lay, fld.value(f as u64));
                }
                for fld in &self.pkt_fields {
                    fld.write(&mut b, &self.lay, fld.value(k as u64));
                }
                self.push_template(&b);
            }
            if self.copy == 64 {
                self.lines = self.templates.iter().map(|t| Line(*t.first_chunk().expect("templates hold 128 bytes"))).collect();
            }
            self.sizes = sizes;
            return;
        }
        for f in 0..self.def.flows {
            for &sz in &sizes {
                let mut b = frame::build(&self.def.shape, (self.flow_base + f as usize) as u16, sz);
                for fld in &flow_fields {
                    fld.write(&mut b, &self.lay, fld.value(u64::from(f)));
                }
                self.push_template(&b);
            }
        }
        self.sizes = sizes;
    }

    fn push_template(&mut self, b: &[u8]) {
        let mut t = [0u8; TEMPLATE];
        let n = b.len().min(TEMPLATE);
        t[..n].copy_from_slice(&b[..n]);
        self.templates.push(t);
        self.tsums.push(if self.lay.l4_checksum { frame::l4_base_sum(b, &self.lay) } else { 0 });
    }

    /// The length of the stream's packet cycle when its headers can be built ahead, one
    /// per packet: flows and frame sizes cycle, and so does every per-packet field that
    /// steps up or down (its values' count). Exact when that cycle is at most
    /// `MAX_CYCLE` packets; a random field never repeats by itself, so only a profile's
    /// `cache = N` asks for a cycle then (TRex's cache: the sequence repeats every N).
    /// 0: no cycle (the plain sender, or per-packet work).
    fn cycle_len(&self) -> usize {
        let base = lcm(self.def.flows as u128, self.def.pattern.len() as u128);
        let plain = self.pkt_fields.is_empty() && !self.lay.l4_checksum && self.copy == 64;
        if plain {
            return 0;
        }
        let exact = self.pkt_fields.iter().try_fold(base, |l, f| (f.mode != Mode::Random).then(|| lcm(l, f.values.count())));
        match exact {
            Some(l) if l <= MAX_CYCLE as u128 => l as usize,
            _ if self.def.cache > 0 => (self.def.cache as u128).div_ceil(base).saturating_mul(base).min(MAX_CYCLE as u128) as usize,
            _ => 0,
        }
    }
}

/// The most headers a stream builds ahead (128 bytes each: 8 MiB).
pub const MAX_CYCLE: usize = 65536;

fn lcm(a: u128, b: u128) -> u128 {
    fn gcd(a: u128, b: u128) -> u128 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if a == 0 || b == 0 {
        return 0;
    }
    (a / gcd(a, b)).saturating_mul(b)
}

/// Fills `pending` (empty) with up to `want` packets of stream `st`: header copy, per-packet
/// fields, signature, L4 checksum; or a capture's frames. Returns (packets, bytes).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill(
    st: &StreamTx,
    sr: &mut StreamRun,
    fl: &mut [FlowTx],
    pending: &mut Batch,
    pool: &Mempool,
    want: usize,
    now: u64,
    measuring: bool,
) -> (usize, u64) {
    let mut bytes = 0u64;
    let ok = if let Some((rp, _, _)) = &st.def.replay {
        if sr.cursors.is_empty() {
            return fill_replay(rp, st, sr, fl, pending, pool, want, now, measuring);
        }
        let (flow, measured) = (st.flow_base, st.def.measured);
        let StreamRun { replay_pos, replay_i, pkts, cursors, .. } = sr;
        let ok = pending.alloc_fill(pool, want, |_, room| {
            let rec = rp.rec(*replay_i);
            // A large capture streams from memory: ask for the frames some way ahead
            // (the hardware prefetcher stops at every 4 KiB page).
            rp.prefetch_rec(*replay_i);
            rp.prefetch_ahead(rec, 2048);
            rp.prefetch_ahead(rec, 2112);
            let (src, n) = (rp.bytes_at(rec), Replay::rec_len(rec).min(room.len()));
            // Short frames: one fixed 64-byte copy (the buffer has a zero tail past the
            // last frame); longer ones their length.
            if n <= 64 {
                room[..64].copy_from_slice(&src[..64]);
            } else {
                room[..n].copy_from_slice(&src[..n]);
            }
            let lay = rp.layout(rec);
            let mut touched = false;
            for c in cursors.iter_mut() {
                // Every frame moves the fields on (the model's counter is the packet's
                // number); addresses go only into frames of the stream's family.
                let v = c.next_value();
                if let Some(lay) = lay.filter(|l| l.v6 == st.lay.v6 || !matches!(c.kind, Kind::SrcIp | Kind::DstIp)) {
                    field::write(c.kind, &mut room[..n], &lay, v);
                    touched = true;
                }
            }
            if let Some(lay) = lay {
                let stamp = measured && lay.sig != usize::MAX;
                if stamp {
                    let sig = &mut room[lay.sig..lay.sig + SIG_LEN];
                    sig[0..2].copy_from_slice(&packet::SIG_MAGIC.to_le_bytes());
                    sig[2..4].copy_from_slice(&(flow as u16).to_le_bytes());
                    packet::stamp_at(room, lay.sig, fl[flow].seq, now);
                    fl[flow].seq = fl[flow].seq.wrapping_add(1);
                    fl[flow].tx += u64::from(measuring);
                }
                if (stamp || touched) && lay.l4_checksum {
                    frame::l4_fix(&mut room[..n], &lay);
                }
            }
            *replay_i += 1;
            if *replay_i == rp.len() {
                *replay_i = 0;
            }
            *replay_pos += 1;
            *pkts += 1;
            bytes += n as u64;
            n
        });
        ok
    } else if st.cycle == 1 && st.lay.l4_checksum {
        // One header for every packet (one flow, one size): the loop keeps no cursor.
        return match st.copy {
            64 => fill_single::<64>(st, sr, fl, pending, pool, want, now, measuring),
            80 => fill_single::<80>(st, sr, fl, pending, pool, want, now, measuring),
            96 => fill_single::<96>(st, sr, fl, pending, pool, want, now, measuring),
            _ => fill_single::<TEMPLATE>(st, sr, fl, pending, pool, want, now, measuring),
        };
    } else if st.cycle > 0 {
        // Monomorphised per copy size and checksum: the per-packet loop has no branch on
        // either.
        return match (st.copy, st.lay.l4_checksum) {
            (64, false) => fill_cycle_of::<64, false>(st, sr, fl, pending, pool, want, now, measuring),
            (64, true) => fill_cycle_of::<64, true>(st, sr, fl, pending, pool, want, now, measuring),
            (80, _) => fill_cycle_of::<80, true>(st, sr, fl, pending, pool, want, now, measuring),
            (96, _) => fill_cycle_of::<96, true>(st, sr, fl, pending, pool, want, now, measuring),
            _ => fill_cycle_of::<TEMPLATE, true>(st, sr, fl, pending, pool, want, now, measuring),
        };
    } else if st.pkt_fields.is_empty() && !st.lay.l4_checksum && st.copy == 64 {
        if st.def.flows == 1 && st.def.pattern.len() == 1 {
            return fill_plain_single(st, sr, fl, pending, pool, want, now, measuring);
        }
        return fill_plain(st, sr, fl, pending, pool, want, now, measuring);
    } else {
        let (templates, tsums, pattern, size_idx, nsizes, flows) =
            (&st.templates[..], &st.tsums[..], &st.def.pattern[..], &st.size_idx[..], st.sizes.len(), st.def.flows as usize);
        let (lay, copy, base, count, v4_fields) = (&st.lay, st.copy, st.flow_base, measuring && st.def.measured, st.v4_fields);
        let (mut flow, mut pos) = (sr.flow, sr.pos);
        let cursors = &mut sr.cursors;
        let fl = &mut fl[base..base + flows];
        let ok = pending.alloc_fill(pool, want, |_, room| {
            let len = pattern[pos] - FCS;
            let ti = flow * nsizes + size_idx[pos];
            let t = &templates[ti];
            copy_head(room, t, copy);
            // Checksums move by what the fields change (RFC 1624), from the template's.
            let (mut dip, mut dl4) = (0u64, 0u64);
            for c in cursors.iter_mut() {
                let v = c.next_value();
                field::write_raw(c.kind, room, lay, v);
                let (a, b) = field::deltas(c.kind, t, lay, v);
                dip += a;
                dl4 += b;
            }
            if v4_fields {
                let hc = u16::from_be_bytes([t[lay.l3 + 10], t[lay.l3 + 11]]);
                room[lay.l3 + 10..lay.l3 + 12].copy_from_slice(&(!csum::fold(u64::from(!hc) + dip)).to_be_bytes());
            }
            let f = &mut fl[flow];
            let seq = f.seq;
            packet::stamp_at(room, lay.sig, seq, now);
            f.seq = seq.wrapping_add(1);
            f.tx += u64::from(count);
            if lay.l4_checksum {
                // The payload is whatever the mbuf held: zero it past the header copy so
                // the checksum covers only headers and signature.
                if len > copy {
                    room[copy..len].fill(0);
                }
                frame::l4_fix_from(room, lay, tsums[ti] + dl4, seq, now);
            }
            flow += 1;
            if flow == flows {
                flow = 0;
            }
            pos += 1;
            if pos == pattern.len() {
                pos = 0;
            }
            bytes += len as u64;
            len
        });
        if ok {
            (sr.flow, sr.pos) = (flow, pos);
            sr.pkts += pending.len() as u64;
        }
        ok
    };
    if ok {
        (pending.len(), bytes)
    } else {
        (0, 0)
    }
}

/// Copies a template's first `copy` bytes (64, 80, 96 or 128: fixed-size copies, no call).
#[inline(always)]
fn copy_head(room: &mut [u8], t: &[u8; TEMPLATE], copy: usize) {
    match copy {
        64 => room[..64].copy_from_slice(&t[..64]),
        80 => room[..80].copy_from_slice(&t[..80]),
        96 => room[..96].copy_from_slice(&t[..96]),
        _ => room[..TEMPLATE].copy_from_slice(t),
    }
}

/// [`fill`] for the common stream: headers within 64 bytes, nothing varying per packet
/// but the signature, no L4 checksum. A loop of its own, with as little state as the
/// classic sender had, so the compiler keeps it in registers (the general loop spilled
/// enough to cost 13 % of the tx-only rate).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_plain(
    st: &StreamTx,
    sr: &mut StreamRun,
    fl: &mut [FlowTx],
    pending: &mut Batch,
    pool: &Mempool,
    want: usize,
    now: u64,
    measuring: bool,
) -> (usize, u64) {
    let (templates, pattern, size_idx, nsizes, flows) =
        (&st.templates[..], &st.def.pattern[..], &st.size_idx[..], st.sizes.len(), st.def.flows as usize);
    let (sig, base, count) = (st.lay.sig, st.flow_base, measuring && st.def.measured);
    let (mut flow, mut pos, mut bytes) = (sr.flow, sr.pos, 0u64);
    let fl = &mut fl[base..base + flows];
    let ok = pending.alloc_fill(pool, want, |_, room| {
        let len = pattern[pos] - FCS;
        let t: &[u8; 64] = templates[flow * nsizes + size_idx[pos]].first_chunk().expect("templates hold 128 bytes");
        room[..64].copy_from_slice(t);
        let f = &mut fl[flow];
        packet::stamp_at(room, sig, f.seq, now);
        f.seq = f.seq.wrapping_add(1);
        f.tx += u64::from(count);
        flow += 1;
        if flow == flows {
            flow = 0;
        }
        pos += 1;
        if pos == pattern.len() {
            pos = 0;
        }
        bytes += len as u64;
        len
    });
    // A failed allocation ran no packet: the cursors are as they were.
    (sr.flow, sr.pos) = (flow, pos);
    filled(ok, pending, sr, |_| bytes)
}

/// What a fill loop hands back: the packets it placed and their bytes (`bytes` of their
/// count), counted on the stream; nothing when the pool had no mbufs for the burst.
#[inline(always)]
fn filled(ok: bool, pending: &Batch, sr: &mut StreamRun, bytes: impl FnOnce(usize) -> u64) -> (usize, u64) {
    if !ok {
        return (0, 0);
    }
    let n = pending.len();
    sr.pkts += n as u64;
    (n, bytes(n))
}

/// [`fill_plain`] for one flow of one size: copy and stamp, no cursor.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_plain_single(
    st: &StreamTx,
    sr: &mut StreamRun,
    fl: &mut [FlowTx],
    pending: &mut Batch,
    pool: &Mempool,
    want: usize,
    now: u64,
    measuring: bool,
) -> (usize, u64) {
    let t: &[u8; 64] = st.templates[0].first_chunk().expect("templates hold 128 bytes");
    let (sig, len, count) = (st.lay.sig, st.def.pattern[0] - FCS, u64::from(measuring && st.def.measured));
    let f = &mut fl[st.flow_base];
    let ok = pending.alloc_fill(pool, want, |_, room| {
        room[..64].copy_from_slice(t);
        packet::stamp_at(room, sig, f.seq, now);
        f.seq = f.seq.wrapping_add(1);
        f.tx += count;
        len
    });
    filled(ok, pending, sr, |n| (n * len) as u64)
}

/// [`fill_cycle`], monomorphised also for a stream of one flow and one size (then only
/// the cycle's cursor moves: the others cost ~15 % of the rate in their loop).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_cycle_of<const COPY: usize, const CSUM: bool>(
    st: &StreamTx,
    sr: &mut StreamRun,
    fl: &mut [FlowTx],
    pending: &mut Batch,
    pool: &Mempool,
    want: usize,
    now: u64,
    measuring: bool,
) -> (usize, u64) {
    if st.def.flows == 1 && st.def.pattern.len() == 1 {
        fill_cycle::<COPY, CSUM, true>(st, sr, fl, pending, pool, want, now, measuring)
    } else {
        fill_cycle::<COPY, CSUM, false>(st, sr, fl, pending, pool, want, now, measuring)
    }
}

/// [`fill`] from a prebuilt cycle of headers (see `cycle_len`): copy, stamp, and the L4
/// checksum from the header's own sum plus the stamp.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_cycle<const COPY: usize, const CSUM: bool, const ONE: bool>(
    st: &StreamTx,
    sr: &mut StreamRun,
    fl: &mut [FlowTx],
    pending: &mut Batch,
    pool: &Mempool,
    want: usize,
    now: u64,
    measuring: bool,
) -> (usize, u64) {
    let (templates, lines, tsums, pattern, flows, cycle) =
        (&st.templates[..], &st.lines[..], &st.tsums[..], &st.def.pattern[..], st.def.flows as usize, st.cycle);
    let (sig, l4, csum_on, copy, base, count) =
        (st.lay.sig, frame::StampCsum::of(&st.lay), st.lay.l4_checksum, COPY, st.flow_base, measuring && st.def.measured);
    let (mut k, mut flow, mut pos, mut bytes) = (sr.cyc, sr.flow, sr.pos, 0u64);
    let tsc_words = frame::StampCsum::tsc_words(now);
    let fl = &mut fl[base..base + flows];
    let len1 = pattern[0] - FCS;
    let ok = pending.alloc_fill(pool, want, |_, room| {
        let len = if ONE { len1 } else { pattern[pos] - FCS };
        let t: &[u8; COPY] = if COPY == 64 { lines[k].0.first_chunk() } else { templates[k].first_chunk() }.expect("COPY <= TEMPLATE");
        room[..COPY].copy_from_slice(t);
        let f = &mut fl[if ONE { 0 } else { flow }];
        let seq = f.seq;
        packet::stamp_at(room, sig, seq, now);
        f.seq = seq.wrapping_add(1);
        f.tx += u64::from(count);
        if CSUM && csum_on {
            if len > copy {
                room[copy..len].fill(0);
            }
            l4.fix_words(room, tsums[k], seq, tsc_words);
        }
        k += 1;
        if k == cycle {
            k = 0;
        }
        if !ONE {
            flow += 1;
            if flow == flows {
                flow = 0;
            }
            pos += 1;
            if pos == pattern.len() {
                pos = 0;
            }
        }
        bytes += len as u64;
        len
    });
    (sr.cyc, sr.flow, sr.pos) = (k, flow, pos);
    filled(ok, pending, sr, |_| bytes)
}

/// [`fill_cycle`] for a cycle of one header with an L4 checksum (an IPv6 or TCP stream
/// of one flow and one size): copy, stamp, sum; nothing else moves per packet. Kept
/// beside `fill_cycle::<_, true, true>`, which does the same with a cycle cursor: that
/// one measured ~9 % slower on these streams.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_single<const COPY: usize>(
    st: &StreamTx,
    sr: &mut StreamRun,
    fl: &mut [FlowTx],
    pending: &mut Batch,
    pool: &Mempool,
    want: usize,
    now: u64,
    measuring: bool,
) -> (usize, u64) {
    let t: &[u8; COPY] = st.templates[0].first_chunk().expect("COPY <= TEMPLATE");
    let (sig, l4, tsum, len) = (st.lay.sig, frame::StampCsum::of(&st.lay), st.tsums[0], st.def.pattern[0] - FCS);
    let tsc_words = frame::StampCsum::tsc_words(now);
    let f = &mut fl[st.flow_base];
    let (count, zero) = (u64::from(measuring && st.def.measured), len > COPY);
    let ok = pending.alloc_fill(pool, want, |_, room| {
        room[..COPY].copy_from_slice(t);
        if zero {
            // The checksum covers only headers and signature: no stale payload.
            room[COPY..len].fill(0);
        }
        let seq = f.seq;
        packet::stamp_at(room, sig, seq, now);
        f.seq = seq.wrapping_add(1);
        f.tx += count;
        l4.fix_words(room, tsum, seq, tsc_words);
        len
    });
    filled(ok, pending, sr, |n| (n * len) as u64)
}

/// [`fill`] for a replay that rewrites nothing: the frame copied, at most a stamp with
/// its L4 checksum mended from the captured frame's (the signature's old words read from
/// the capture, the new ones from their values: no load of what was just stored).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_replay(
    rp: &Replay,
    st: &StreamTx,
    sr: &mut StreamRun,
    fl: &mut [FlowTx],
    pending: &mut Batch,
    pool: &Mempool,
    want: usize,
    now: u64,
    measuring: bool,
) -> (usize, u64) {
    let (flow, measured, len) = (st.flow_base, st.def.measured, rp.len());
    let (mut i, mut bytes) = (sr.replay_i, 0u64);
    let f = &mut fl[flow];
    let head = u32::from(packet::SIG_MAGIC) | (flow as u32) << 16;
    // The words every stamp of this burst shares: the signature's head and the TSC.
    let shared = u64::from(head & 0xffff) + u64::from(head >> 16) + frame::StampCsum::tsc_words(now);
    let ok = pending.alloc_fill(pool, want, |_, room| {
        let rec = rp.rec(i);
        // A large capture streams from memory: ask for the record table and the frames
        // some way ahead (the hardware prefetcher stops at every 4 KiB page).
        rp.prefetch_rec(i);
        rp.prefetch_ahead(rec, 2048);
        rp.prefetch_ahead(rec, 2112);
        let (src, n) = (rp.bytes_at(rec), Replay::rec_len(rec).min(room.len()));
        // Short frames: one fixed 64-byte copy (the buffer has a zero tail past the last
        // frame); longer ones their length.
        if n <= 64 {
            room[..64].copy_from_slice(&src[..64]);
        } else {
            room[..n].copy_from_slice(&src[..n]);
        }
        let sig = usize::from(rec.sig);
        if measured && sig != 0 {
            let seq = f.seq;
            room[sig..sig + 4].copy_from_slice(&head.to_le_bytes());
            packet::stamp_at(room, sig, seq, now);
            f.seq = seq.wrapping_add(1);
            f.tx += u64::from(measuring);
            let at = rec.l4_at();
            if at != 0 {
                // RFC 1624 eqn. 3 over the eight words: the captured checksum and words
                // were taken out when the capture was loaded (`rest`), the new words go in
                // (little-endian in the frame: their byte-swapped sum, RFC 1071 §2(B)).
                let new = u64::from(csum::fold(shared + u64::from(seq & 0xffff) + u64::from(seq >> 16)).swap_bytes());
                let mut c2 = !csum::fold(u64::from(rec.rest) + new);
                if c2 == 0 && rec.l4_udp() {
                    c2 = 0xffff;
                }
                room[at..at + 2].copy_from_slice(&c2.to_be_bytes());
            }
        }
        i += 1;
        if i == len {
            i = 0;
        }
        bytes += n as u64;
        n
    });
    sr.replay_i = i;
    if ok {
        sr.replay_pos += pending.len();
    }
    filled(ok, pending, sr, |_| bytes)
}

/// One port's part of a phase.
struct PortRun {
    /// Totals over the whole phase, warm-up included.
    totals: PortTotals,
    /// Stamped packets the port has not taken yet: they go first next time, so the
    /// sender never skips a sequence number.
    pending: Batch,
    pend_bytes: u64,
    /// The stream the pending packets are of, and the next stream's turn.
    pend_stream: usize,
    turn: usize,
}

/// One stream's sender state in a phase.
struct StreamRun {
    rate: Option<f64>,
    /// Pacing epoch and packets made in it.
    epoch: u64,
    sent_epoch: u64,
    /// Measured packets stamped (sent or still pending).
    stamped: u64,
    /// Position in the flow cycle and in the frame-size pattern; packets made (the
    /// per-packet fields' counter).
    flow: usize,
    pos: usize,
    pkts: u64,
    /// The stream's window (TSC): from the phase's start (warm-up included) or its
    /// start delay into the measurement, to its end.
    from: u64,
    until: u64,
    /// The per-packet fields' cursors.
    cursors: Vec<Cursor>,
    /// Position in a prebuilt cycle.
    cyc: usize,
    /// Replay: frames sent, the next frame's index, when it is due.
    replay_pos: usize,
    replay_i: usize,
    replay_next: u64,
    replay_loops: u32,
}

impl StreamRun {
    #[inline(always)]
    fn active(&self, now: u64) -> bool {
        now >= self.from && now < self.until
    }

    /// Replayed at the capture's timing: how many frames are due at `now` (the next is
    /// due at `replay_next`, each later one its gap in the capture, divided by `scale`,
    /// after the one before).
    fn replay_due(&self, rp: &Replay, scale: f64, now: u64, hz: u64) -> u64 {
        let (mut n, mut t) = (0u64, self.replay_next.max(self.from));
        while n < MAX_BURST as u64 && t <= now {
            n += 1;
            t += gap(rp, self.replay_pos + n as usize, scale, hz);
        }
        n
    }

    /// `got` frames of a timed replay went: the next one's due time.
    fn replay_advance(&mut self, rp: &Replay, scale: f64, got: usize, hz: u64) {
        let mut t = self.replay_next.max(self.from);
        // fill() moved replay_pos on by `got` already: the frames were replay_pos - got ..
        for k in 0..got {
            t += gap(rp, self.replay_pos - got + k + 1, scale, hz);
        }
        self.replay_next = t;
    }
}

/// The TSC gap before frame `i` (wrapping) of a capture replayed `scale` times as fast.
fn gap(rp: &Replay, i: usize, scale: f64, hz: u64) -> u64 {
    (rp.gaps_ns[i % rp.len()] as f64 / scale * hz as f64 / 1e9) as u64
}

/// One flow's sender state.
#[derive(Clone, Copy, Default)]
struct FlowTx {
    seq: u32,
    /// Packets stamped while measuring.
    tx: u64,
}

/// The state of one phase.
struct Run {
    phase: Phase,
    ports: Vec<PortRun>,
    streams: Vec<StreamRun>,
    parts: Vec<StreamPart>,
    peers: Vec<usize>,
    flows: Vec<FlowTx>,
    /// Receive side, per flow.
    trackers: Vec<SeqTracker>,
    rx: Batch,
    count: u64,
    warm_end: u64,
    meas_end: u64,
    /// When measurement started (u64::MAX until then).
    meas_start: u64,
    next_second: u64,
    quiet_since: u64,
    drain_quiet: u64,
    /// This engine owns every port of the run (it receives what it sent).
    alone: bool,
    /// Measured packets received at least once, and copies beyond the first (a flooded
    /// packet arrives on several ports: counting receptions would end the drain while
    /// copies are in flight).
    meas_unique: u64,
    meas_dups: u64,
    busy: u64,
    idle: u64,
    bad_latency: u64,
    interrupted: bool,
    second: Histogram<u64>,
    ns_per_cycle: f64,
    /// ARP replies to send after a receive burst.
    replies: Vec<Vec<u8>>,
}

impl Run {
    fn new(e: &Engine, cfg: &PhaseCfg, t0: u64) -> Run {
        let hz = e.tsc_hz as f64;
        let warm_end = t0 + (cfg.warmup_s * hz) as u64;
        let meas_end = warm_end + (cfg.duration_s * hz) as u64;
        let nstreams = e.all_streams.len();
        let mut streams = Vec::new();
        let peers = e.all_streams.iter().map(|s| s.4).collect();
        // Run state per local stream, in the engine's order.
        for s in &e.streams {
            let from = if s.def.start_s > 0.0 { warm_end + (s.def.start_s * hz) as u64 } else { t0 };
            let until = match s.def.duration_s {
                Some(d) => from.max(warm_end) + (d * hz) as u64,
                None => u64::MAX,
            };
            streams.push(StreamRun {
                rate: cfg.rate_pps.or(s.def.rate_pps),
                // Pacing counts from the stream's own start (a late starter must not
                // catch up on the time before it).
                epoch: from,
                sent_epoch: 0,
                stamped: 0,
                flow: 0,
                pos: 0,
                pkts: 0,
                from,
                until,
                cursors: s.pkt_fields.iter().map(|f| Cursor::new(f, 0)).collect(),
                cyc: 0,
                replay_pos: 0,
                replay_i: 0,
                replay_next: 0,
                replay_loops: s.def.replay.as_ref().map_or(0, |r| r.2),
            });
        }
        Run {
            phase: Phase::Warmup,
            ports: (0..e.ports.len())
                .map(|_| PortRun { totals: PortTotals::default(), pending: Batch::new(), pend_bytes: 0, pend_stream: 0, turn: 0 })
                .collect(),
            streams,
            parts: (0..nstreams)
                .map(|_| StreamPart { tx_bytes: 0, wrong_port: 0, latency: new_hist(), first_tx: None, last_tx: 0 })
                .collect(),
            peers,
            flows: vec![FlowTx::default(); e.nflows],
            trackers: (0..e.nflows).map(|_| SeqTracker::new()).collect(),
            rx: Batch::new(),
            count: cfg.count,
            warm_end,
            meas_end,
            meas_start: u64::MAX,
            next_second: t0 + e.tsc_hz,
            quiet_since: 0,
            drain_quiet: cfg.drain_quiet_ms * e.tsc_hz / 1000,
            alone: e.ports.len() == e.total_ports,
            meas_unique: 0,
            meas_dups: 0,
            busy: 0,
            idle: 0,
            bad_latency: 0,
            interrupted: false,
            second: new_hist(),
            ns_per_cycle: 1e9 / hz,
            replies: Vec::new(),
        }
    }

    /// Phase changes: once per iteration, a couple of compares.
    #[inline(always)]
    fn advance(&mut self, now: u64, cfg: &PhaseCfg, stop: &AtomicBool, live: &Live, streams: &[StreamTx]) {
        if self.phase == Phase::Warmup && now >= self.warm_end {
            self.phase = Phase::Measure;
            live.set_phase(Phase::Measure);
            // The scheduled moment, not this loop's observation of it: engines on other
            // cores (which may be descheduled a while) judge packets by the same line.
            self.meas_start = self.warm_end;
            // Fresh pacing and sequence numbers: a late warm-up packet is recognised by
            // its stamp (a pending batch was stamped in warm-up: its packets count as
            // warm-up).
            for s in &mut self.streams {
                s.epoch = now.max(s.from);
                s.sent_epoch = 0;
            }
            for f in &mut self.flows {
                f.seq = 0;
            }
        }
        if self.phase == Phase::Measure {
            let done_count = cfg.count > 0 && streams.iter().zip(&self.streams).all(|(d, s)| !d.def.measured || s.stamped >= cfg.count);
            // A replay that has looped its times is done too.
            let replays_done = !streams.is_empty()
                && streams.iter().zip(&self.streams).all(|(d, s)| match &d.def.replay {
                    Some((rp, _, loops)) if *loops > 0 => s.replay_pos >= rp.len() * *loops as usize,
                    _ => false,
                });
            if now >= self.meas_end || done_count || replays_done || stop.load(Relaxed) {
                self.interrupted = stop.load(Relaxed) && now < self.meas_end && !done_count && !replays_done;
                self.phase = Phase::Drain;
                live.set_phase(Phase::Drain);
                self.quiet_since = now;
            }
        }
        // A replay stops after its loops (its window closes).
        for (d, s) in streams.iter().zip(self.streams.iter_mut()) {
            if let Some((rp, _, loops)) = &d.def.replay {
                if *loops > 0 && s.replay_pos >= rp.len() * *loops as usize {
                    s.until = s.until.min(now);
                }
            }
            let _ = s.replay_loops;
        }
    }

    /// Whether the drain is over: every measured packet is back (counted once) and, if
    /// copies were seen, a quiet spell passed too; or, when some were lost, after the
    /// quiet spell; and at the latest after four quiet spells, or a quarter of one after
    /// Ctrl-C.
    fn drained(&self, now: u64, stop: &AtomicBool) -> bool {
        let quiet = now - self.quiet_since;
        if self.ports.iter().all(|p| p.pending.is_empty()) {
            // With nothing measured (a replay), only the quiet spell says the loop is empty.
            let stamped = self.streams.iter().map(|s| s.stamped).sum::<u64>();
            // With several engines, one receives what another stamped: only the quiet
            // spell says the loop is empty.
            let all_back = self.alone && stamped > 0 && self.meas_unique >= stamped;
            if (all_back && self.meas_dups == 0) || quiet > self.drain_quiet {
                return true;
            }
        }
        quiet > 4 * self.drain_quiet || (stop.load(Relaxed) && quiet > self.drain_quiet / 4)
    }

    /// The results: packets a port never took (it stayed full through the drain) were
    /// not sent, so they do not count as sent-and-lost.
    fn finish(mut self, e: &Engine) -> PhaseResult {
        let nflows = self.flows.len();
        for p in &mut self.ports {
            let flows = &mut self.flows;
            p.pending.for_each(|data, _| {
                if let Some(sig) = frame::find_sig(data) {
                    let f = sig.flow as usize;
                    // Only measured flows counted it (and a replayed frame may carry a
                    // signature of its own that this run never stamped).
                    if sig.tsc >= self.meas_start && f < nflows && e.flow_stream[f] != UNMEASURED && flows[f].tx > 0 {
                        flows[f].tx -= 1;
                    }
                }
            });
            p.pending.drop_all();
        }
        let mut ports = vec![PortTotals::default(); e.total_ports];
        for (gp, p) in e.ports.iter().zip(self.ports) {
            ports[gp.index] = p.totals;
        }
        PhaseResult {
            ports,
            flows: self
                .flows
                .iter()
                .zip(&self.trackers)
                .map(|(f, t)| FlowNumbers { tx: f.tx, unique: t.unique(), duplicates: t.duplicates(), reordered: t.reordered() })
                .collect(),
            parts: self.parts,
            flow_ranges: e.all_streams.iter().map(|s| (s.1, s.2, s.3)).collect(),
            names: e.all_streams.iter().map(|s| s.0.clone()).collect(),
            busy_cycles: self.busy,
            idle_cycles: self.idle,
            interrupted: self.interrupted,
            bad_latency: self.bad_latency,
            tsc_hz: e.tsc_hz,
        }
    }
}

/// 1 ns to 60 s at 3 significant digits (0.1 % error): ~200 kB, allocated per phase.
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}
