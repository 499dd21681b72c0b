//! From what the user asked — a profile, or the command line's flags — to the streams the
//! engines send: one per (stream, sending port), flows numbered across the run, frame
//! sizes, rates in packets per second, replayed captures loaded once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use super::engine::{Plan, StreamDef};
use super::field::{Field, Kind, Mode, Per, Values};
use super::frame::Shape;
use super::packet::{self, MAX_FLOWS};
use super::pcap::{self, Replay};
use super::profile::StreamSpec;
use crate::parse::Rate;

/// The command line's streams: one per sending port, IPv4/UDP, `flows` flows from
/// consecutive source addresses and UDP source ports (1024–65535), `macs` source MACs,
/// to the next port's MACs (or `dst_mac`), the destination address swept over `dsts[i]`
/// when given. Named after their port, as before profiles existed.
#[allow(clippy::too_many_arguments)]
pub fn legacy(
    names: &[String],
    sends: &[bool],
    frames: Vec<usize>,
    rate: Rate,
    flows: u32,
    macs: u32,
    dst_mac: Option<[u8; 6]>,
    dsts: &[Option<Arc<[u32]>>],
) -> Vec<StreamSpec> {
    let n = names.len();
    let mac_of = |i: usize| [0x02, 0x00, 0x00, (i + 1) as u8, 0x00, 0x00];
    let mac_num = |m: [u8; 6]| {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&m);
        u128::from(u64::from_be_bytes(b))
    };
    let per_flow = |kind, start: u128, count: u128| Field {
        kind,
        values: Values::Range { start, end: start + count - 1, step: 1 },
        mode: Mode::Inc,
        per: Per::Flow,
    };
    (0..n)
        .filter(|&i| sends[i])
        .map(|i| {
            let peer = (i + 1) % n;
            let shape = Shape {
                src_mac: mac_of(i),
                dst_mac: dst_mac.unwrap_or(mac_of(peer)),
                src_ip: IpAddr::V4(Ipv4Addr::new(10, i as u8, 0, 1)),
                dst_ip: IpAddr::V4(Ipv4Addr::new(10, peer as u8, 0, 1)),
                ..Shape::default()
            };
            let mut fields = Vec::new();
            if flows > 1 {
                let src = u128::from(u32::from(Ipv4Addr::new(10, i as u8, 0, 1)));
                fields.push(per_flow(Kind::SrcIp, src, u128::from(flows)));
                fields.push(Field {
                    kind: Kind::SrcPort,
                    values: Values::Range { start: 1024, end: 65535, step: 1 },
                    mode: Mode::Inc,
                    per: Per::Flow,
                });
            }
            if macs > 1 {
                fields.push(per_flow(Kind::SrcMac, mac_num(mac_of(i)), u128::from(macs)));
                if dst_mac.is_none() {
                    fields.push(per_flow(Kind::DstMac, mac_num(mac_of(peer)), u128::from(macs)));
                }
            }
            if let Some(d) = &dsts[i] {
                fields.push(Field {
                    kind: Kind::DstIp,
                    values: Values::List(d.iter().map(|&a| u128::from(a)).collect()),
                    mode: Mode::Inc,
                    per: Per::Packet,
                });
            }
            StreamSpec {
                name: names[i].clone(),
                ports: vec![names[i].clone()],
                frames: frames.clone(),
                rate,
                start_s: 0.0,
                duration_s: None,
                flows,
                shape,
                fields,
                measured: true,
                pcap: None,
                cache: 0,
            }
        })
        .collect()
}

/// One stream per (spec, port), in order, with its port index and peer, its rate in
/// packets per second, its capture loaded (once per file); and the plan that numbers
/// their flows.
///
/// # Errors
/// A port no `--port` defines, more flows than the signature numbers, a capture that
/// does not load.
pub fn build(specs: &[StreamSpec], names: &[String]) -> Result<(Vec<StreamDef>, Plan), String> {
    let mut defs = Vec::new();
    let mut replays: HashMap<PathBuf, Arc<Replay>> = HashMap::new();
    for s in specs {
        for p in &s.ports {
            let port = names
                .iter()
                .position(|n| n == p)
                .ok_or_else(|| format!("stream '{}' sends on port '{p}', which no --port defines (ports: {})", s.name, names.join(",")))?;
            let replay = match &s.pcap {
                Some(src) => {
                    let r = match replays.get(&src.path) {
                        Some(r) => r.clone(),
                        None => {
                            let r = Arc::new(pcap::load(&src.path)?);
                            replays.insert(src.path.clone(), r.clone());
                            r
                        }
                    };
                    Some((r, src.timing, src.loops))
                }
                None => None,
            };
            let mean = match &replay {
                Some((r, _, _)) => (0..r.len()).map(|i| r.frame(i).len() + packet::FCS).sum::<usize>() as f64 / r.len() as f64,
                None => s.frames.iter().sum::<usize>() as f64 / s.frames.len() as f64,
            };
            let name = if s.ports.len() > 1 { format!("{}@{p}", s.name) } else { s.name.clone() };
            defs.push(StreamDef {
                name,
                port,
                peer: (port + 1) % names.len(),
                pattern: s.frames.clone(),
                rate_pps: s.rate.pps(mean),
                start_s: s.start_s,
                duration_s: s.duration_s,
                flows: if replay.is_some() { 1 } else { s.flows },
                shape: s.shape.clone(),
                fields: s.fields.clone(),
                measured: s.measured,
                replay,
                cache: s.cache,
            });
        }
    }
    let total: u64 = defs.iter().map(|d| u64::from(d.flows)).sum();
    if total > u64::from(MAX_FLOWS) {
        return Err(format!("the streams have {total} flows together: at most {MAX_FLOWS} (the signature's flow field)"));
    }
    let plan = Plan { all: defs.iter().map(|d| (d.name.clone(), d.flows, d.measured, d.peer)).collect(), total_ports: names.len() };
    Ok((defs, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::frame::{self, Layout};

    /// The command line's streams build the frames `packet::build` built for the same
    /// flags (its bytes are the reference the tests have checked since the start).
    #[test]
    fn legacy_streams_are_the_old_frames() {
        let names = vec!["a".to_string(), "b".to_string()];
        let specs = legacy(&names, &[true, true], vec![64], Rate::Max, 300, 3, None, &[None, None]);
        let (defs, plan) = build(&specs, &names).unwrap();
        assert_eq!(plan.all.iter().map(|s| s.1).sum::<u32>(), 600);
        for (i, d) in defs.iter().enumerate() {
            let lay = Layout::of(&d.shape);
            let mk = |i: usize| packet::FlowSpec {
                src_mac: [2, 0, 0, (i + 1) as u8, 0, 0],
                src_ip: [10, i as u8, 0, 1],
                dst_ip: [10, ((i + 1) % 2) as u8, 0, 1],
                flows: 300,
                macs: 3,
                ..packet::FlowSpec::default()
            };
            let (spec, peer) = (mk(i), mk((i + 1) % 2));
            for f in [0u32, 1, 2, 257, 299] {
                let mut old = packet::build(&spec, f, 64).bytes;
                old[..6].copy_from_slice(&peer.src_mac_of(f));
                let mut new = frame::build(&d.shape, f as u16, 64);
                for fld in &d.fields {
                    fld.write(&mut new, &lay, fld.value(u64::from(f)));
                }
                assert_eq!(old, new, "port {i} flow {f}");
            }
        }
    }
}
