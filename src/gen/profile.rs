//! `gen --profile FILE.toml`: any number of streams, each with its ports, frame sizes,
//! rate, start and length, header shape and field engine — or a pcap file to replay.
//! The command line's flags make a one-stream profile of the same types, so both run
//! the same engine. Every error names the file, line and column, the stream and the key.
//!
//! ```toml
//! [[stream]]
//! name = "web"
//! ports = ["a"]
//! frames = { 128 = 7, 570 = 4, 1518 = 1 }   # or [128, 512], or "imix"
//! rate = "1Mpps"             # per stream (default: max); streams on a port share it
//! start = 0.5                # seconds into the measurement
//! duration = 4               # seconds (default: to the end)
//! flows = 64
//! l4 = "tcp-data"            # udp, tcp-syn, tcp-data
//! src_ip = "2001:db8:1::1"   # the address family follows the addresses
//! dst_ip = "2001:db8:2::1"
//! vlan = [100, 20]           # outer (802.1ad) then inner (802.1Q); [20]: one tag
//! [[stream.field]]
//! field = "src_ip"           # src_mac dst_mac vlan inner_vlan src_ip dst_ip tos ttl src_port dst_port
//! range = ["2001:db8:1::1", "2001:db8:1::ff"]   # or list = [...]
//! mode = "random"            # inc, dec, random
//! per = "packet"             # or flow
//! # cache = 4096             # build 4096 packets ahead and cycle (random fields repeat)
//!
//! [[stream]]
//! name = "replay"
//! ports = ["b"]
//! pcap = "trace.pcap"        # relative to this file
//! timing = 1.0               # the capture's own timing, scaled (2.0: twice as fast); else rate
//! loops = 3
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::field::{Field, Kind, Mode, Per, Values};
use super::frame::{Layout, Shape, L4};
use super::packet::{MAX_FRAME, MIN_FRAME};
use crate::parse::file_pos as at;
use crate::parse::{self, Rate};

/// One stream of a profile, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    pub ports: Vec<String>,
    /// Frame sizes cycled (FCS included).
    pub frames: Vec<usize>,
    pub rate: Rate,
    pub start_s: f64,
    pub duration_s: Option<f64>,
    pub flows: u32,
    pub shape: Shape,
    pub fields: Vec<Field>,
    /// Frames carry the signature and are accounted (loss, order, latency).
    pub measured: bool,
    pub pcap: Option<PcapSource>,
    /// Headers built ahead for a stream whose fields do not cycle by themselves
    /// (`cache = N`: the sequence repeats every N packets, as with TRex's cache).
    pub cache: u32,
}

/// A replayed capture.
#[derive(Debug, Clone, PartialEq)]
pub struct PcapSource {
    pub path: PathBuf,
    /// Some(scale): the capture's own gaps divided by scale; None: at the stream's rate.
    pub timing: Option<f64>,
    /// Times through the file; 0 = until the stream ends.
    pub loops: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    stream: Vec<Spanned<RawStream>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Frames {
    Named(String),
    List(Vec<usize>),
    Weighted(std::collections::BTreeMap<String, u32>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: Option<String>,
    ports: Vec<String>,
    frames: Option<Spanned<Frames>>,
    rate: Option<Spanned<String>>,
    start: Option<f64>,
    duration: Option<f64>,
    flows: Option<u32>,
    l4: Option<Spanned<String>>,
    l4_checksum: Option<bool>,
    vlan: Option<Spanned<Vec<u16>>>,
    src_mac: Option<Spanned<String>>,
    dst_mac: Option<Spanned<String>>,
    src_ip: Option<Spanned<String>>,
    dst_ip: Option<Spanned<String>>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    tos: Option<u8>,
    ttl: Option<u8>,
    measured: Option<bool>,
    pcap: Option<Spanned<String>>,
    timing: Option<f64>,
    loops: Option<u32>,
    cache: Option<u32>,
    #[serde(default)]
    field: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    field: String,
    range: Option<Vec<toml::Value>>,
    list: Option<Vec<toml::Value>>,
    step: Option<u64>,
    mode: Option<String>,
    per: Option<String>,
}

/// Reads and checks a profile; the error is one line naming file, line, stream and key.
pub fn load(path: &Path) -> Result<Vec<StreamSpec>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read profile {}: {e}", path.display()))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Vec<StreamSpec>, String> {
    let f: File = toml::from_str(text).map_err(|e| {
        let loc = e.span().map(|s| at(path, text, s.start)).unwrap_or_else(|| path.display().to_string());
        // Name the key when the error points at a value (`key = value` on that line).
        let key = e
            .span()
            .and_then(|s| {
                let line_start = text[..s.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
                let (k, _) = text[line_start..s.start.min(text.len())].split_once('=')?;
                Some(format!("{}: ", k.trim()))
            })
            .unwrap_or_default();
        format!("{loc}: {key}{}", e.message().trim().replace('\n', " "))
    })?;
    if f.stream.is_empty() {
        return Err(format!("{}: no [[stream]]: a profile needs at least one", path.display()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, s) in f.stream.iter().enumerate() {
        let loc = at(path, text, s.span().start);
        let name = s.get_ref().name.clone().unwrap_or_else(|| format!("stream{}", i + 1));
        let spec = stream(s.get_ref(), &name, dir, |off| at(path, text, off)).map_err(|e| format!("{e} (stream '{name}' at {loc})"))?;
        if out.iter().any(|x: &StreamSpec| x.name == spec.name) {
            return Err(format!("{loc}: stream name '{name}' is used twice: give each stream its own"));
        }
        out.push(spec);
    }
    Ok(out)
}

fn mac(s: &Spanned<String>, key: &str, loc: &impl Fn(usize) -> String) -> Result<[u8; 6], String> {
    parse::parse_mac(s.get_ref()).map_err(|e| format!("{}: {key}: {e}", loc(s.span().start)))
}

fn ip(s: &Spanned<String>, key: &str, loc: &impl Fn(usize) -> String) -> Result<IpAddr, String> {
    s.get_ref().parse().map_err(|_| format!("{}: {key}: '{}' is not an IPv4 or IPv6 address", loc(s.span().start), s.get_ref()))
}

/// A weighted mix spread out like IMIX: each size at the positions that keep its share
/// in any short window.
fn spread(weights: &[(usize, u32)]) -> Vec<usize> {
    let total: u32 = weights.iter().map(|w| w.1).sum();
    let mut credit: Vec<i64> = vec![0; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in credit.iter_mut().zip(weights) {
            *c += i64::from(w.1);
        }
        let (k, _) = credit.iter().enumerate().max_by_key(|(k, c)| (**c, std::cmp::Reverse(*k))).unwrap_or((0, &0));
        credit[k] -= i64::from(total);
        out.push(weights[k].0);
    }
    out
}

fn stream(s: &RawStream, name: &str, dir: &Path, loc: impl Fn(usize) -> String) -> Result<StreamSpec, String> {
    if s.ports.is_empty() {
        return Err("ports = [] names no port: give the ports that send it, e.g. ports = [\"a\"]".into());
    }
    let size = |n: usize| -> Result<usize, String> {
        if (MIN_FRAME..=MAX_FRAME).contains(&n) {
            Ok(n)
        } else {
            Err(format!("frame size {n} is out of range: use {MIN_FRAME} to {MAX_FRAME}"))
        }
    };
    let frames = match &s.frames {
        None => vec![64],
        Some(f) => {
            let l = loc(f.span().start);
            match f.get_ref() {
                Frames::Named(n) if n.eq_ignore_ascii_case("imix") => super::packet::Sizes::Imix.pattern(),
                Frames::Named(n) => {
                    return Err(format!("{l}: frames = \"{n}\": use \"imix\", a list [64, 512] or weights {{ 64 = 7, 1518 = 1 }}"))
                }
                Frames::List(v) if v.is_empty() => return Err(format!("{l}: frames = []: give at least one size")),
                Frames::List(v) => v.iter().map(|&n| size(n).map_err(|e| format!("{l}: frames: {e}"))).collect::<Result<_, _>>()?,
                Frames::Weighted(m) => {
                    let mut w = Vec::new();
                    for (k, &n) in m {
                        let sz = k.parse::<usize>().map_err(|_| format!("{l}: frames: '{k}' is not a frame size"))?;
                        w.push((size(sz).map_err(|e| format!("{l}: frames: {e}"))?, n));
                    }
                    if w.iter().all(|x| x.1 == 0) || w.iter().map(|x| u64::from(x.1)).sum::<u64>() > 10_000 {
                        return Err(format!("{l}: frames: weights must add up to 1 to 10000"));
                    }
                    spread(&w)
                }
            }
        }
    };
    let rate = match &s.rate {
        None => Rate::Max,
        Some(r) => Rate::parse(r.get_ref()).map_err(|e| format!("{}: rate: {}", loc(r.span().start), e.replace("--rate ", "")))?,
    };
    for (k, v) in [("start", s.start), ("duration", s.duration), ("timing", s.timing)] {
        if v.is_some_and(|v| !(v.is_finite() && (0.0..1e6).contains(&v)) || (k != "start" && v == 0.0)) {
            return Err(format!("{k} = {}: give seconds (timing: a scale) above 0", v.unwrap_or(0.0)));
        }
    }
    let flows = s.flows.unwrap_or(1);
    if flows == 0 || flows > 65536 {
        return Err(format!("flows = {flows}: use 1 to 65536"));
    }
    let mut shape = Shape::default();
    if let Some(m) = &s.src_mac {
        shape.src_mac = mac(m, "src_mac", &loc)?;
    }
    if let Some(m) = &s.dst_mac {
        shape.dst_mac = mac(m, "dst_mac", &loc)?;
    }
    let default_dst6: IpAddr = "2001:db8:2::1".parse().unwrap_or(shape.dst_ip);
    let default_src6: IpAddr = "2001:db8:1::1".parse().unwrap_or(shape.src_ip);
    match (&s.src_ip, &s.dst_ip) {
        (Some(a), Some(b)) => {
            shape.src_ip = ip(a, "src_ip", &loc)?;
            shape.dst_ip = ip(b, "dst_ip", &loc)?;
            if shape.src_ip.is_ipv6() != shape.dst_ip.is_ipv6() {
                return Err(format!("{}: dst_ip is of another address family than src_ip", loc(b.span().start)));
            }
        }
        (Some(a), None) => {
            shape.src_ip = ip(a, "src_ip", &loc)?;
            if shape.src_ip.is_ipv6() {
                shape.dst_ip = default_dst6;
            }
        }
        (None, Some(b)) => {
            shape.dst_ip = ip(b, "dst_ip", &loc)?;
            if shape.dst_ip.is_ipv6() {
                shape.src_ip = default_src6;
            }
        }
        (None, None) => {}
    }
    if let Some(v) = &s.vlan {
        if v.get_ref().len() > 2 || v.get_ref().iter().any(|&x| x == 0 || x > 4094) {
            return Err(format!("{}: vlan = {:?}: one or two VLAN ids of 1 to 4094 (outer first)", loc(v.span().start), v.get_ref()));
        }
        shape.vlans = v.get_ref().clone();
    }
    if let Some(l) = &s.l4 {
        shape.l4 = match l.get_ref().as_str() {
            "udp" => L4::Udp,
            "tcp-syn" => L4::TcpSyn,
            "tcp-data" => L4::TcpData,
            o => return Err(format!("{}: l4 = \"{o}\": use \"udp\", \"tcp-syn\" or \"tcp-data\"", loc(l.span().start))),
        };
    }
    shape.l4_checksum = s.l4_checksum.unwrap_or(false);
    shape.src_port = s.src_port.unwrap_or(shape.src_port);
    shape.dst_port = s.dst_port.unwrap_or(shape.dst_port);
    shape.tos = s.tos.unwrap_or(0);
    shape.ttl = s.ttl.unwrap_or(64);
    let lay = Layout::of(&shape);
    let measured = s.measured.unwrap_or(true);
    let pcap = match &s.pcap {
        Some(p) => {
            if s.frames.is_some() || s.l4.is_some() || s.vlan.is_some() || s.src_ip.is_some() || s.dst_ip.is_some() {
                return Err(format!(
                    "{}: pcap = ...: a replayed stream takes its frames from the file; drop frames, l4, vlan and the addresses",
                    loc(p.span().start)
                ));
            }
            let path = dir.join(p.get_ref());
            Some(PcapSource { path, timing: s.timing, loops: s.loops.unwrap_or(1) })
        }
        None => {
            if s.timing.is_some() || s.loops.is_some() {
                return Err("timing and loops are for pcap streams: add pcap = \"FILE\" or drop them".into());
            }
            if measured {
                if let Some(&f) = frames.iter().find(|&&f| f < lay.min_frame()) {
                    return Err(format!(
                        "frame size {f} cannot hold this stream's headers and its 16-byte signature: use {} or more, or measured = false",
                        lay.min_frame()
                    ));
                }
            }
            None
        }
    };
    let pcap_measured = pcap.is_some() && s.measured == Some(true);
    let mut fields = Vec::new();
    for (i, f) in s.field.iter().enumerate() {
        let l = loc(f.span().start);
        let r = f.get_ref();
        let kind = Kind::parse(&r.field).ok_or_else(|| {
            format!("{l}: field {}: '{}' is not a field: use one of {}", i + 1, r.field, Kind::ALL.map(|k| k.1).join(", "))
        })?;
        let what = format!("{l}: field {} ({})", i + 1, kind.name());
        if (kind == Kind::Vlan && shape.vlans.is_empty() && pcap.is_none()) || (kind == Kind::InnerVlan && shape.vlans.len() < 2) {
            return Err(format!("{what}: the stream's frames have no such tag: add vlan = [...]"));
        }
        let val = |v: &toml::Value| value(kind, v, &lay).map_err(|e| format!("{what}: {e}"));
        let values = match (&r.range, &r.list) {
            (Some(rg), None) => {
                let [a, b] = rg.as_slice() else { return Err(format!("{what}: range = [START, END]")) };
                let (start, end) = (val(a)?, val(b)?);
                if end < start {
                    return Err(format!("{what}: range end is below its start"));
                }
                Values::Range { start, end, step: u128::from(r.step.unwrap_or(1).max(1)) }
            }
            (None, Some(l)) if !l.is_empty() => Values::List(l.iter().map(val).collect::<Result<_, _>>()?),
            _ => return Err(format!("{what}: give range = [START, END] or list = [V, ...], one of them")),
        };
        let mode = match r.mode.as_deref().unwrap_or("inc") {
            "inc" => Mode::Inc,
            "dec" => Mode::Dec,
            "random" => Mode::Random,
            o => return Err(format!("{what}: mode = \"{o}\": use inc, dec or random")),
        };
        let per = match r.per.as_deref().unwrap_or("packet") {
            "packet" => Per::Packet,
            "flow" => Per::Flow,
            o => return Err(format!("{what}: per = \"{o}\": use packet or flow")),
        };
        if fields.iter().any(|f: &Field| f.kind == kind) {
            return Err(format!("{what}: the stream varies {} twice: give each field one [[stream.field]]", kind.name()));
        }
        fields.push(Field { kind, values, mode, per });
    }
    let cache = s.cache.unwrap_or(0);
    if cache as usize > super::engine::MAX_CYCLE || (cache > 0 && pcap.is_some()) {
        return Err(format!("cache = {cache}: give 1 to {} packets, for a stream that is not replayed", super::engine::MAX_CYCLE));
    }
    Ok(StreamSpec {
        name: name.to_string(),
        ports: s.ports.clone(),
        frames,
        rate,
        start_s: s.start.unwrap_or(0.0),
        duration_s: s.duration,
        flows,
        shape,
        fields,
        measured: if pcap.is_some() { pcap_measured } else { measured },
        pcap,
        cache,
    })
}

/// A field value from TOML: an integer, a MAC, an address of the stream's family.
fn value(k: Kind, v: &toml::Value, lay: &Layout) -> Result<u128, String> {
    let max = k.max(lay);
    let n = match (k, v) {
        (Kind::SrcMac | Kind::DstMac, toml::Value::String(s)) => {
            let m = parse::parse_mac(s)?;
            let mut b = [0u8; 8];
            b[2..].copy_from_slice(&m);
            u128::from(u64::from_be_bytes(b))
        }
        (Kind::SrcIp | Kind::DstIp, toml::Value::String(s)) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !lay.v6 => u128::from(u32::from(a)),
            Ok(IpAddr::V6(a)) if lay.v6 => u128::from(a),
            Ok(_) => return Err(format!("'{s}' is not of the stream's address family")),
            Err(_) => return Err(format!("'{s}' is not an address")),
        },
        (_, toml::Value::Integer(i)) if *i >= 0 => *i as u128,
        (_, other) => return Err(format!("{other} is not a value of this field")),
    };
    if n > max {
        return Err(format!("{n} is beyond the field's largest value {max}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> String {
        parse(Path::new("p.toml"), text).unwrap_err()
    }

    #[test]
    fn the_module_example_parses() {
        let text = crate::parse::doc_toml(include_str!("profile.rs"));
        let s = parse(Path::new("/x/doc.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].frames.len(), 12);
        assert_eq!(s[0].shape.vlans, [100, 20]);
        assert!(s[0].shape.dst_ip.is_ipv6());
        assert_eq!(s[0].fields[0].mode, Mode::Random);
        assert_eq!(s[1].pcap.as_ref().unwrap().path, Path::new("/x/trace.pcap"));
        assert!(!s[1].measured, "a replay is not measured unless asked");
    }

    /// Every example profile docs/generator.md points to parses.
    #[test]
    fn the_example_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let s = load(&p).unwrap_or_else(|e| panic!("{e}"));
                assert!(!s.is_empty());
                for st in s.iter().filter_map(|st| st.pcap.as_ref()) {
                    assert!(st.path.exists(), "{}", st.path.display());
                }
                n += 1;
            }
        }
        assert!(n >= 4);
    }

    #[test]
    fn weights_spread_and_sizes_are_checked() {
        let s = parse(Path::new("p.toml"), "[[stream]]\nports=[\"a\"]\nframes={ 64 = 7, 570 = 4, 1518 = 1 }\n").unwrap();
        let f = &s[0].frames;
        assert_eq!(f.len(), 12);
        assert_eq!(f.iter().filter(|&&x| x == 64).count(), 7);
        let twice: Vec<_> = f.iter().chain(f).collect();
        assert!(twice.windows(3).all(|w| w.iter().any(|&&x| x != 64)), "{f:?}");
    }

    #[test]
    fn every_mistake_names_its_place_and_key() {
        for (text, needle) in [
            ("", "no [[stream]]"),
            ("[[stream]]\nports=[]\n", "names no port"),
            ("[[stream]]\nports=[\"a\"]\nframes=[60]\n", "p.toml:3:8: frames: frame size 60 is out of range"),
            ("[[stream]]\nports=[\"a\"]\nframes=\"big\"\n", "use \"imix\""),
            ("[[stream]]\nports=[\"a\"]\nrate=\"fast\"\n", "p.toml:3:6: rate:"),
            ("[[stream]]\nports=[\"a\"]\nl4=\"sctp\"\n", "l4 = \"sctp\""),
            ("[[stream]]\nports=[\"a\"]\nsrc_ip=\"10.0.0.1\"\ndst_ip=\"2001:db8::1\"\n", "another address family"),
            ("[[stream]]\nports=[\"a\"]\nvlan=[1,2,3]\n", "one or two VLAN ids"),
            ("[[stream]]\nports=[\"a\"]\nsrc_ip=\"2001:db8::1\"\nl4=\"tcp-data\"\n", "use 94 or more"),
            ("[[stream]]\nports=[\"a\"]\n[[stream.field]]\nfield=\"colour\"\nlist=[1]\n", "p.toml:3:1: field 1: 'colour' is not a field"),
            ("[[stream]]\nports=[\"a\"]\n[[stream.field]]\nfield=\"ttl\"\nrange=[9,3]\n", "end is below its start"),
            ("[[stream]]\nports=[\"a\"]\n[[stream.field]]\nfield=\"ttl\"\nlist=[300]\n", "beyond the field's largest value 255"),
            (
                "[[stream]]\nports=[\"a\"]\n[[stream.field]]\nfield=\"src_ip\"\nlist=[\"2001:db8::1\"]\n",
                "not of the stream's address family",
            ),
            ("[[stream]]\nports=[\"a\"]\n[[stream.field]]\nfield=\"vlan\"\nlist=[3]\n", "no such tag"),
            ("[[stream]]\nports=[\"a\"]\n[[stream.field]]\nfield=\"ttl\"\n", "give range"),
            ("[[stream]]\nports=[\"a\"]\ntiming=2.0\n", "for pcap streams"),
            ("[[stream]]\nports=[\"a\"]\npcap=\"x.pcap\"\nframes=[64]\n", "takes its frames from the file"),
            ("[[stream]]\nname=\"x\"\nports=[\"a\"]\n[[stream]]\nname=\"x\"\nports=[\"b\"]\n", "used twice"),
            ("[[stream]]\nports=[\"a\"]\ncolour=1\n", "unknown field"),
        ] {
            let e = errs(text);
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
