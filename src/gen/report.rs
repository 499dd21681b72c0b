//! What `pmdswitch gen --json` writes, as types: the generator builds these and
//! serialises them, and whoever reads its results (`pmdswitch bench`, the test bed)
//! deserialises the same types, so no field is ever read by a string path.
//!
//! Fields are declared in alphabetical order: JSON objects were written with sorted keys
//! before these types existed, and the files stay byte for byte what they were.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::engine::PhaseResult;
use super::packet::L1_OVERHEAD;
use super::search::SearchResult;

/// Quantiles of the CDF points written for pictures: denser towards the tail.
pub const CDF_POINTS: [f64; 22] =
    [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0];

/// Latency percentiles in ns (only `count` when there were no samples).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// (quantile, ns) for CDF pictures.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cdf: Option<Vec<(f64, u64)>>,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p50: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p90: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p99: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p99_9: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub p99_99: Option<u64>,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |x: f64| Some(h.value_at_quantile(x));
        Latency {
            cdf: Some(CDF_POINTS.iter().map(|&x| (x, h.value_at_quantile(x))).collect()),
            count: h.len(),
            max: Some(h.max()),
            mean: Some(h.mean()),
            min: Some(h.min()),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
        }
    }
}

/// One stream: what one port sent while measuring, and what came back of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stream {
    pub duplicates: u64,
    pub latency_ns: Latency,
    pub loss_pct: f64,
    pub lost: u64,
    pub reordered: u64,
    pub rx: u64,
    pub rx_pps: f64,
    pub secs: f64,
    pub tx: u64,
    pub tx_bytes: u64,
    pub tx_pps: f64,
    /// Measured packets that came back on another port than the next one.
    #[serde(default)]
    pub wrong_port: u64,
}

/// One port's totals over the whole phase, warm-up included.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Port {
    pub alloc_fail: u64,
    /// ARP requests for the port's address (--ip) answered.
    #[serde(default)]
    pub arp_replies: u64,
    pub rx_bytes: u64,
    pub rx_foreign: u64,
    pub rx_packets: u64,
    pub rx_warmup: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Total {
    pub lost: u64,
    pub rx: u64,
    pub tx: u64,
}

/// The generator's own core while measuring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Generator {
    pub busy_cycles: u64,
    /// Below ~0.95 the generator had headroom: the device, not the sender, set the rate.
    pub busy_fraction: f64,
    pub core: usize,
    pub idle_cycles: u64,
    pub tsc_hz: u64,
}

/// `gen` without `--search`: one measured phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub bad_latency: u64,
    pub flows: u32,
    /// The frame sizes cycled, with FCS.
    pub frame: Vec<usize>,
    pub generator: Generator,
    pub interrupted: bool,
    pub macs: u32,
    pub ports: BTreeMap<String, Port>,
    /// By stream: the sending port's name for the command line's streams, the profile's
    /// names otherwise.
    pub streams: BTreeMap<String, Stream>,
    pub total: Total,
}

/// Where a run took place: the port names, the traffic shape, the generator's core.
pub struct RunShape<'a> {
    /// Port names, by global port index.
    pub names: &'a [String],
    pub frame: Vec<usize>,
    pub flows: u32,
    pub macs: u32,
    pub core: usize,
    pub tsc_hz: u64,
}

impl RunReport {
    pub fn new(s: &RunShape<'_>, r: &PhaseResult) -> RunReport {
        let per_s = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let results = r.streams();
        let streams = results
            .iter()
            .zip(&r.names)
            .filter_map(|(st, name)| {
                let st = st.as_ref()?;
                Some((
                    name.clone(),
                    Stream {
                        duplicates: st.duplicates,
                        latency_ns: Latency::of(&st.latency),
                        loss_pct: if st.tx > 0 { st.lost as f64 * 100.0 / st.tx as f64 } else { 0.0 },
                        lost: st.lost,
                        reordered: st.reordered,
                        rx: st.rx,
                        rx_pps: per_s(st.rx, st.tx_secs),
                        secs: st.tx_secs,
                        tx: st.tx,
                        tx_bytes: st.tx_bytes,
                        tx_pps: per_s(st.tx, st.tx_secs),
                        wrong_port: st.wrong_port,
                    },
                ))
            })
            .collect();
        let ports = r
            .ports
            .iter()
            .zip(s.names)
            .map(|(t, name)| {
                (
                    name.clone(),
                    Port {
                        alloc_fail: t.alloc_fail,
                        arp_replies: t.arp_replies,
                        rx_bytes: t.rx_bytes,
                        rx_foreign: t.rx_foreign,
                        rx_packets: t.rx_packets,
                        rx_warmup: t.rx_warmup,
                        tx_bytes: t.tx_bytes,
                        tx_packets: t.tx_packets,
                    },
                )
            })
            .collect();
        let all = (r.busy_cycles + r.idle_cycles).max(1) as f64;
        RunReport {
            bad_latency: r.bad_latency,
            flows: s.flows,
            frame: s.frame.clone(),
            generator: Generator {
                busy_cycles: r.busy_cycles,
                busy_fraction: r.busy_cycles as f64 / all,
                core: s.core,
                idle_cycles: r.idle_cycles,
                tsc_hz: s.tsc_hz,
            },
            interrupted: r.interrupted,
            macs: s.macs,
            ports,
            streams,
            total: Total { lost: results.iter().flatten().map(|s| s.lost).sum(), rx: r.total_rx(), tx: r.total_tx() },
        }
    }
}

/// One trial of a search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrialReport {
    pub achieved_pps: f64,
    pub delivered_pps: f64,
    pub loss: f64,
    pub rate_pps: f64,
    pub rx: u64,
    pub tx: u64,
}

/// One frame size's RFC 2544 search and the latency at the rate found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SizeSearch {
    pub attempts: usize,
    pub closing_delivered_pps: Option<f64>,
    pub converged: bool,
    pub drift: f64,
    /// The size searched ("64") or "imix".
    pub frame: String,
    pub latency_at_ndr_ns: Option<Latency>,
    pub mean_frame: f64,
    pub ndr_mbps_l1: f64,
    pub ndr_pps: f64,
    pub pdr_pps: f64,
    pub sender_limited: bool,
    pub stable: bool,
    pub trials: Vec<TrialReport>,
}

impl SizeSearch {
    /// `latency`: the run at the NDR rate, if there was one.
    pub fn new(frame: String, mean_frame: f64, r: &SearchResult, latency: Option<&PhaseResult>) -> SizeSearch {
        SizeSearch {
            attempts: r.attempts,
            closing_delivered_pps: r.closing.map(|t| t.delivered_pps()),
            converged: r.converged,
            drift: r.drift,
            frame,
            latency_at_ndr_ns: latency.map(|l| Latency::of(&merged_latency(l))),
            mean_frame,
            ndr_mbps_l1: r.ndr_pps * (mean_frame + L1_OVERHEAD as f64) * 8.0 / 1e6,
            ndr_pps: r.ndr_pps,
            pdr_pps: r.pdr_pps,
            sender_limited: r.sender_limited,
            stable: r.stable,
            trials: r
                .trials
                .iter()
                .map(|t| TrialReport {
                    achieved_pps: t.achieved_pps,
                    delivered_pps: t.delivered_pps(),
                    loss: t.loss(),
                    rate_pps: t.rate_pps,
                    rx: t.rx,
                    tx: t.tx,
                })
                .collect(),
        }
    }
}

/// Every stream's latency samples in one histogram.
pub fn merged_latency(l: &PhaseResult) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds");
    for s in l.streams().iter().flatten() {
        let _ = h.add(&s.latency);
    }
    h
}

/// `gen --search`: one search per frame size (or one for IMIX).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchReport {
    pub ports: Vec<String>,
    pub search: Vec<SizeSearch>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed report writes the same JSON as a `json!` object of the same fields
    /// (sorted keys; `count` alone for an empty histogram) and reads back to itself.
    #[test]
    fn latency_round_trips_and_matches_the_untyped_form() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        assert_eq!(serde_json::to_string(&Latency::of(&h)).unwrap(), r#"{"count":0}"#);
        for v in [1000u64, 2000, 3000, 50_000] {
            h.record(v).unwrap();
        }
        let l = Latency::of(&h);
        let text = serde_json::to_string(&l).unwrap();
        let untyped = serde_json::json!({
            "count": h.len(), "min": h.min(), "mean": h.mean(),
            "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
            "p99_9": h.value_at_quantile(0.999), "p99_99": h.value_at_quantile(0.9999), "max": h.max(),
            "cdf": CDF_POINTS.iter().map(|&q| serde_json::json!([q, h.value_at_quantile(q)])).collect::<Vec<_>>(),
        });
        assert_eq!(text, untyped.to_string());
        assert_eq!(serde_json::from_str::<Latency>(&text).unwrap(), l);
        assert_eq!(l.p99, Some(h.value_at_quantile(0.99)));
    }
}
