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

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::datapath::gen::arp;
use crate::datapath::gen::packet::{self, FlowSpec, ETH_LEN, SIG_LEN, SIG_OFFSET};
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
    /// The port's own address: ARP requests for it are answered.
    pub ip: Option<Ipv4Addr>,
    /// Destination addresses swept one per packet (a router's routes), else the spec's.
    pub dsts: Option<Arc<[u32]>>,
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
    /// ARP requests for the port's address answered.
    pub arp_replies: u64,
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
    /// Measured packets that arrived on a port other than the stream's peer (the next
    /// port): misrouted by a router, or flooded copies of a bridge.
    pub wrong_port: u64,
    pub latency: Histogram<u64>,
    /// Measurement time, s (from the first to the last packet sent).
    pub tx_secs: f64,
}

#[derive(Debug, Clone, Default)]
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
    ports_n: usize,
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
            ports_n: 0,
            live: Arc::new(Live::default()),
        };
        e.ports_n = e.ports.len();
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
        let t0 = rdtsc();
        let hz = self.tsc_hz as f64;
        let mut r = Run::new(self, cfg, t0);
        self.live.set_phase(Phase::Warmup);
        let mut prev = t0;
        loop {
            let now = rdtsc();
            r.advance(now, cfg, stop, &self.ports, &self.live);
            let work = self.transmit(&mut r, now) + self.receive(&mut r, now);
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
        r.finish(self, hz)
    }

    /// Transmit on every sending port: new packets while warming up or measuring, and
    /// in the drain phase whatever a port refused earlier, so every stamped packet goes
    /// out. Returns the packets sent.
    #[inline(always)]
    fn transmit(&mut self, r: &mut Run, now: u64) -> usize {
        let hz = self.tsc_hz as f64;
        let mut work = 0;
        for (i, port) in self.ports.iter_mut().enumerate() {
            if !port.sends {
                continue;
            }
            let p = &mut r.ports[i];
            if p.pending.is_empty() {
                if r.phase == Phase::Drain {
                    continue;
                }
                let mut want = self.burst as u64;
                if let Some(rate) = r.rate_pps {
                    let due = ((now - r.epoch_start) as f64 * rate / hz) as u64;
                    want = want.min(due.saturating_sub(p.sent_epoch));
                }
                if r.phase == Phase::Measure && r.count > 0 {
                    want = want.min(r.count - p.stamped);
                }
                if want == 0 {
                    continue;
                }
                let want = want as usize;
                let base = i * self.flows as usize;
                let (headers, pattern, size_idx, sizes_n, flows) =
                    (&self.headers, &self.pattern, &r.size_idx, self.sizes.len(), self.flows as usize);
                let measuring = r.phase == Phase::Measure;
                let (mut flow, mut pos) = (p.flow, p.pos);
                let (dsts, mut di) = (port.dsts.as_deref(), p.dst_pos);
                // The template's destination words, replaced per packet (RFC 1624 eqn. 3).
                let old_dst = u32::from_be_bytes(port.spec.dst_ip);
                let mut bytes = 0u64;
                let fl = &mut r.flows;
                // One pass per packet: header copy, two stores, counters; no division.
                let ok = p.pending.alloc_fill(&self.pool, want, |_, room| {
                    let f = base + flow;
                    let len = pattern[pos] - packet::FCS;
                    room[..HDR].copy_from_slice(&headers[f * sizes_n + size_idx[pos]]);
                    if let Some(d) = dsts {
                        let new = d[di];
                        di += 1;
                        if di == d.len() {
                            di = 0;
                        }
                        set_dst(room, old_dst, new);
                    }
                    packet::stamp(room, fl[f].seq, now);
                    fl[f].seq = fl[f].seq.wrapping_add(1);
                    if measuring {
                        fl[f].tx += 1;
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
                if !ok {
                    p.totals.alloc_fail += 1;
                    continue;
                }
                p.pend_bytes = bytes;
                if measuring {
                    p.stamped += want as u64;
                }
                (p.flow, p.pos, p.dst_pos) = (flow, pos, di);
                p.sent_epoch += want as u64;
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
                    p.tx_bytes_meas += sent_bytes;
                    p.last_tx = now;
                    bump(&self.live.tx, sent as u64);
                }
            }
        }
        work
    }

    /// Receive on every port: count, and account each measured packet to its flow
    /// (sequence, latency). Returns the packets received.
    #[inline(always)]
    fn receive(&mut self, r: &mut Run, now: u64) -> usize {
        let mut work = 0;
        let (nflows, flows, every) = (r.trackers.len(), self.flows as usize, self.latency_every);
        for (i, port) in self.ports.iter_mut().enumerate() {
            let got = port.rx.rx_burst(&mut r.rx, self.burst);
            if got == 0 {
                continue;
            }
            work += got;
            let Run { ports, trackers, meas_start, meas_unique, meas_dups, bad_latency, second, ns_per_cycle, wrong, replies, .. } = r;
            let (mut meas, mut bytes, mut foreign, mut warmup) = (0u64, 0u64, 0u64, 0u64);
            let (me, mac, n) = (port.ip, port.spec.src_mac, self.ports_n);
            r.rx.for_each(|data, len| {
                bytes += len as u64;
                let Some(sig) = packet::parse(data) else {
                    foreign += 1;
                    if let Some(reply) = me.and_then(|me| arp::reply_to(data, me, mac)) {
                        replies.push(reply);
                    }
                    return;
                };
                if sig.tsc < *meas_start || sig.flow as usize >= nflows {
                    warmup += 1;
                    return;
                }
                meas += 1;
                // The stream's peer is the next port.
                if (sig.flow as usize / flows + 1) % n != i {
                    wrong[sig.flow as usize / flows] += 1;
                }
                let class = trackers[sig.flow as usize].record(sig.seq);
                *meas_unique += u64::from(class != Class::Duplicate);
                *meas_dups += u64::from(class == Class::Duplicate);
                if class != Class::Duplicate && sig.seq % every == 0 {
                    if sig.tsc > now {
                        *bad_latency += 1;
                    } else {
                        let ns = ((now - sig.tsc) as f64 * *ns_per_cycle) as u64;
                        let _ = ports[sig.flow as usize / flows].hist.record(ns.max(1));
                        // The progress line's p99 needs a sample, not every packet.
                        if sig.seq & 15 == 0 {
                            let _ = second.record(ns.max(1));
                        }
                    }
                }
            });
            let t = &mut ports[i].totals;
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
    /// meanwhile (the gateway may ask for us first). The port's frames then go to it.
    pub fn resolve(&mut self, i: usize, gw: Ipv4Addr, timeout: Duration) -> Option<[u8; 6]> {
        let me = self.ports[i].ip?;
        let mac = self.ports[i].spec.src_mac;
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
                let (kip, kmac) = (self.ports[k].ip, self.ports[k].spec.src_mac);
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
                self.ports[i].spec.dst_mac = m;
                self.ports[i].peer = None;
                let pattern = self.pattern.clone();
                self.set_pattern(pattern);
                return Some(m);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }
}

/// Writes destination `new` over the template's `old` in an untagged frame's IPv4
/// header, and updates its checksum for the two words that changed (RFC 1624 eqn. 3).
#[inline(always)]
fn set_dst(room: &mut [u8], old: u32, new: u32) {
    let at = ETH_LEN + 16;
    room[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let c = u16::from_be_bytes([room[ETH_LEN + 10], room[ETH_LEN + 11]]);
    let mut sum = u32::from(!c) + u32::from(!(old >> 16) as u16) + u32::from(!old as u16) + (new >> 16) + (new & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    room[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// One port's part of a phase.
struct PortRun {
    /// Totals over the whole phase, warm-up included.
    totals: PortTotals,
    /// Stamped packets the port has not taken yet: they go first next time, so the
    /// sender never skips a sequence number.
    pending: Batch,
    pend_bytes: u64,
    /// Packets stamped while measuring (sent or still pending).
    stamped: u64,
    /// Bytes sent while measuring.
    tx_bytes_meas: u64,
    /// Packets made in the current pacing epoch.
    sent_epoch: u64,
    /// Position in the flow cycle, in the frame-size pattern, and in the destinations.
    flow: usize,
    pos: usize,
    dst_pos: usize,
    /// When the port last sent a measured packet.
    last_tx: u64,
    /// Latency of this port's stream.
    hist: Histogram<u64>,
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
    flows: Vec<FlowTx>,
    /// Receive side, per flow.
    trackers: Vec<SeqTracker>,
    rx: Batch,
    rate_pps: Option<f64>,
    count: u64,
    /// Index of each pattern entry's size in the header table.
    size_idx: Vec<usize>,
    warm_end: u64,
    meas_end: u64,
    /// When measurement started (u64::MAX until then).
    meas_start: u64,
    epoch_start: u64,
    next_second: u64,
    quiet_since: u64,
    drain_quiet: u64,
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
    /// Per sending port: measured packets that came back on another port than its peer.
    wrong: Vec<u64>,
    /// ARP replies to send after a receive burst.
    replies: Vec<Vec<u8>>,
}

impl Run {
    fn new(e: &Engine, cfg: &PhaseCfg, t0: u64) -> Run {
        let hz = e.tsc_hz as f64;
        let nflows = e.ports.len() * e.flows as usize;
        let warm_end = t0 + (cfg.warmup_s * hz) as u64;
        Run {
            phase: Phase::Warmup,
            ports: (0..e.ports.len())
                .map(|_| PortRun {
                    totals: PortTotals::default(),
                    pending: Batch::new(),
                    pend_bytes: 0,
                    stamped: 0,
                    tx_bytes_meas: 0,
                    sent_epoch: 0,
                    flow: 0,
                    pos: 0,
                    dst_pos: 0,
                    last_tx: 0,
                    hist: new_hist(),
                })
                .collect(),
            flows: vec![FlowTx::default(); nflows],
            trackers: (0..nflows).map(|_| SeqTracker::new()).collect(),
            rx: Batch::new(),
            rate_pps: cfg.rate_pps,
            count: cfg.count,
            size_idx: e.pattern.iter().map(|s| e.sizes.iter().position(|x| x == s).unwrap_or(0)).collect(),
            warm_end,
            meas_end: warm_end + (cfg.duration_s * hz) as u64,
            meas_start: u64::MAX,
            epoch_start: t0,
            next_second: t0 + e.tsc_hz,
            quiet_since: 0,
            drain_quiet: cfg.drain_quiet_ms * e.tsc_hz / 1000,
            meas_unique: 0,
            meas_dups: 0,
            busy: 0,
            idle: 0,
            bad_latency: 0,
            interrupted: false,
            second: new_hist(),
            ns_per_cycle: 1e9 / hz,
            wrong: vec![0; e.ports.len()],
            replies: Vec::new(),
        }
    }

    /// Phase changes: once per iteration, a couple of compares.
    #[inline(always)]
    fn advance(&mut self, now: u64, cfg: &PhaseCfg, stop: &AtomicBool, gen_ports: &[GenPort], live: &Live) {
        if self.phase == Phase::Warmup && now >= self.warm_end {
            self.phase = Phase::Measure;
            live.set_phase(Phase::Measure);
            self.meas_start = now;
            self.epoch_start = now;
            // Fresh sequence numbers: a late warm-up packet is recognised by its stamp (a
            // pending batch was stamped in warm-up: its packets count as warm-up).
            for p in &mut self.ports {
                p.sent_epoch = 0;
            }
            for f in &mut self.flows {
                f.seq = 0;
            }
        }
        if self.phase == Phase::Measure {
            let done_count = cfg.count > 0 && gen_ports.iter().zip(&self.ports).all(|(g, p)| !g.sends || p.stamped >= cfg.count);
            if now >= self.meas_end || done_count || stop.load(Relaxed) {
                self.interrupted = stop.load(Relaxed) && now < self.meas_end && !done_count;
                self.phase = Phase::Drain;
                live.set_phase(Phase::Drain);
                self.quiet_since = now;
            }
        }
    }

    /// Whether the drain is over: every measured packet is back (counted once) and, if
    /// copies were seen, a quiet spell passed too (the other copies may still be on
    /// their way); or, when some were lost, after the quiet spell (a time-out alone ends
    /// too early when the device under test is descheduled for a moment with packets
    /// still queued); and at the latest after four quiet spells, or a quarter of one
    /// after Ctrl-C.
    fn drained(&self, now: u64, stop: &AtomicBool) -> bool {
        let quiet = now - self.quiet_since;
        if self.ports.iter().all(|p| p.pending.is_empty()) {
            let all_back = self.meas_unique >= self.ports.iter().map(|p| p.stamped).sum::<u64>();
            if (all_back && self.meas_dups == 0) || quiet > self.drain_quiet {
                return true;
            }
        }
        quiet > 4 * self.drain_quiet || (stop.load(Relaxed) && quiet > self.drain_quiet / 4)
    }

    /// The results: packets a port never took (it stayed full through the drain) were
    /// not sent, so they do not count as sent-and-lost.
    fn finish(mut self, e: &Engine, hz: f64) -> PhaseResult {
        let nflows = self.flows.len();
        for p in &mut self.ports {
            let flows = &mut self.flows;
            p.pending.for_each(|data, _| {
                if let Some(sig) = packet::parse(data) {
                    if sig.tsc >= self.meas_start && (sig.flow as usize) < nflows {
                        flows[sig.flow as usize].tx -= 1;
                    }
                }
            });
            p.pending.drop_all();
        }
        let per = e.flows as usize;
        let streams = (0..e.ports.len())
            .map(|i| {
                if !e.ports[i].sends {
                    return None;
                }
                let (mut tx, mut rxu, mut dup, mut reo, mut lost) = (0, 0, 0, 0, 0);
                for f in i * per..(i + 1) * per {
                    let tr = &self.trackers[f];
                    tx += self.flows[f].tx;
                    rxu += tr.unique();
                    dup += tr.duplicates();
                    reo += tr.reordered();
                    lost += track::lost(self.flows[f].tx, tr.unique());
                }
                let p = &self.ports[i];
                let secs = if self.meas_start != u64::MAX && p.last_tx > self.meas_start {
                    (p.last_tx - self.meas_start) as f64 / hz
                } else {
                    0.0
                };
                Some(StreamResult {
                    tx,
                    tx_bytes: p.tx_bytes_meas,
                    rx: rxu,
                    lost,
                    duplicates: dup,
                    reordered: reo,
                    wrong_port: self.wrong[i],
                    latency: p.hist.clone(),
                    tx_secs: secs,
                })
            })
            .collect();
        PhaseResult {
            ports: self.ports.into_iter().map(|p| p.totals).collect(),
            streams,
            busy_cycles: self.busy,
            idle_cycles: self.idle,
            interrupted: self.interrupted,
            bad_latency: self.bad_latency,
        }
    }
}

/// 1 ns to 60 s at 3 significant digits (0.1 % error): ~200 kB, allocated per phase.
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}
