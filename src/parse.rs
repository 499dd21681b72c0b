//! The syntax every command, the config file and `ctl` share: ports (`NAME=SPEC`), core
//! lists, forwarding rules, MAC addresses, rates. Pure parsing into plain values: it
//! depends on no other module of the crate and on no DPDK, and all of it is unit-tested.

use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Where a port's packets come from and go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// pmdswitch creates the socket; QEMU or virtio-user connects.
    VhostServer(PathBuf),
    /// pmdswitch connects to a socket the peer serves, and reconnects by itself.
    VhostClient(PathBuf),
    /// A NIC bound to vfio-pci, by address `DDDD:BB:DD.F` (normalised to lower case).
    Pci(String),
    /// Any DPDK virtual device: `DRIVER[,ARGS]`, e.g. `net_ring0`, `net_tap0,iface=t0`.
    Vdev(String),
    /// A VXLAN tunnel to one remote VTEP, `VNI@REMOTE` (made by `--vxlan`, never by
    /// `--port`).
    Vxlan(String),
}

impl PortSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            PortSpec::VhostServer(_) => "vhost-server",
            PortSpec::VhostClient(_) => "vhost-client",
            PortSpec::Pci(_) => "pci",
            PortSpec::Vdev(_) => "vdev",
            PortSpec::Vxlan(_) => "vxlan",
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::VhostServer(p) => write!(f, "vhost-server:{}", p.display()),
            PortSpec::VhostClient(p) => write!(f, "vhost-client:{}", p.display()),
            PortSpec::Pci(a) => write!(f, "pci:{a}"),
            PortSpec::Vdev(d) => write!(f, "vdev:{d}"),
            PortSpec::Vxlan(t) => write!(f, "vxlan:{t}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDef {
    pub name: String,
    pub spec: PortSpec,
}

/// `FILE:LINE:COL` of a byte offset into `text` (config files and generator profiles
/// name where a mistake is this way).
pub fn file_pos(path: &std::path::Path, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    format!("{}:{line}:{col}", path.display())
}

/// The TOML example of a module's documentation (the lines between its "//! ```toml" and
/// "//! ```"), for the test that keeps it true.
#[cfg(test)]
pub fn doc_toml(src: &str) -> String {
    let start = src.find("//! ```toml\n").expect("a toml example") + "//! ```toml\n".len();
    let end = start + src[start..].find("//! ```\n").expect("its end");
    src[start..end].lines().map(|l| l.trim_start_matches("//!").trim_start()).collect::<Vec<_>>().join("\n")
}

/// Parses `NAME=SPEC`. Errors are one line naming the problem and the fix.
pub fn parse_port(arg: &str) -> Result<PortDef, String> {
    let (name, spec) =
        arg.split_once('=').ok_or_else(|| format!("port '{arg}' has no '=': write NAME=SPEC, e.g. a=vhost-server:/tmp/a.sock"))?;
    parse_name(name)?;
    let (kind, rest) = spec.split_once(':').ok_or_else(|| {
        format!("port '{name}': spec '{spec}' has no kind: use vhost-server:PATH, vhost-client:PATH, pci:DDDD:BB:DD.F or vdev:DRIVER,ARGS")
    })?;
    let spec = match kind {
        "vhost-server" | "vhost-client" => {
            if rest.is_empty() {
                return Err(format!("port '{name}': {kind} needs a socket path, e.g. {kind}:/tmp/{name}.sock"));
            }
            if rest.len() >= 108 {
                return Err(format!("port '{name}': socket path is {} bytes, Unix sockets allow 107: use a shorter path", rest.len()));
            }
            let p = PathBuf::from(rest);
            if kind == "vhost-server" {
                PortSpec::VhostServer(p)
            } else {
                PortSpec::VhostClient(p)
            }
        }
        "pci" => PortSpec::Pci(parse_pci(rest).map_err(|e| format!("port '{name}': {e}"))?),
        "vdev" => {
            let drv = rest.split(',').next().unwrap_or("");
            if drv.is_empty() || !drv.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("port '{name}': vdev '{rest}' must start with a device name such as net_ring0 or net_tap0,iface=tap0"));
            }
            if drv.starts_with("net_vhost") {
                return Err(format!(
                    "port '{name}': use vhost-server:PATH or vhost-client:PATH instead of vdev:{drv} (pmdswitch drives rte_vhost directly)"
                ));
            }
            PortSpec::Vdev(rest.to_owned())
        }
        other => {
            return Err(format!(
                "port '{name}': unknown kind '{other}': use vhost-server:PATH, vhost-client:PATH, pci:DDDD:BB:DD.F or vdev:DRIVER,ARGS"
            ))
        }
    };
    Ok(PortDef { name: name.to_owned(), spec })
}

/// A port or bridge name: 1-32 letters, digits, `_` or `-`.
pub fn parse_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("port name '{name}' is invalid: use 1-32 letters, digits, '_' or '-'"));
    }
    Ok(())
}

/// `DDDD:BB:DD.F` (domain optional, as DPDK accepts), normalised to `dddd:bb:dd.f`.
pub fn parse_pci(s: &str) -> Result<String, String> {
    let bad = || format!("PCI address '{s}' is malformed: write DDDD:BB:DD.F, e.g. 0000:03:00.0");
    let parts: Vec<&str> = s.split(':').collect();
    let (dom, bus, devfn) = match parts.as_slice() {
        [d, b, df] => (*d, *b, *df),
        [b, df] => ("0000", *b, *df),
        _ => return Err(bad()),
    };
    let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
    let hex = |x: &str, max: usize| x.len() <= max && !x.is_empty() && x.chars().all(|c| c.is_ascii_hexdigit());
    if !(hex(dom, 4) && hex(bus, 2) && hex(dev, 2) && hex(func, 1)) {
        return Err(bad());
    }
    let d = u32::from_str_radix(dev, 16).map_err(|_| bad())?;
    let f = u32::from_str_radix(func, 16).map_err(|_| bad())?;
    if d > 0x1f || f > 7 {
        return Err(bad());
    }
    Ok(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        u32::from_str_radix(dom, 16).map_err(|_| bad())?,
        u32::from_str_radix(bus, 16).map_err(|_| bad())?,
        d,
        f
    ))
}

/// The highest CPU number a core list may name: Linux's CPU_SETSIZE is 1024, what
/// sched_setaffinity(2) and DPDK's lcore sets take.
pub const MAX_CORE: usize = 1023;

/// A core list: `1`, `1,3`, `2-5`, `1,4-6`. Sorted, no duplicates, each at most
/// [`MAX_CORE`] (a range is never expanded before it is checked).
pub fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("core list '{s}' is malformed: write e.g. 1 or 1,3 or 2-5");
    let core = |x: &str| -> Result<usize, String> {
        let c: usize = x.trim().parse().map_err(|_| bad())?;
        if c > MAX_CORE {
            return Err(format!("core {c} in '{s}' is beyond {MAX_CORE}: name CPUs this machine has (see lscpu)"));
        }
        Ok(c)
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (core(a)?, core(b)?);
            if a > b {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(core(part)?);
        }
    }
    out.sort_unstable();
    let n = out.len();
    out.dedup();
    if out.len() != n {
        return Err(format!("core list '{s}' names a core twice: name each worker core once"));
    }
    Ok(out)
}

/// `--xconnect A,B`.
pub fn parse_xconnect(s: &str) -> Result<(String, String), String> {
    match s.split(',').collect::<Vec<_>>().as_slice() {
        [a, b] if !a.is_empty() && !b.is_empty() => {
            if a == b {
                Err(format!("xconnect '{s}' names port '{a}' twice: connect two different ports"))
            } else {
                Ok((a.to_string(), b.to_string()))
            }
        }
        _ => Err(format!("xconnect '{s}' is malformed: write --xconnect A,B with two port names")),
    }
}

/// `NAME=PORT,PORT,...` (a bridge and its members, at least two).
pub fn parse_bridge(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, list) = s.split_once('=').ok_or_else(|| format!("bridge '{s}' has no '=': write --bridge NAME=PORT,PORT,..."))?;
    parse_name(name).map_err(|e| format!("bridge: {e}"))?;
    let members: Vec<String> = list.split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
    if members.is_empty() {
        return Err(format!("bridge '{name}' has no ports: write --bridge {name}=A,B"));
    }
    if let Some(m) = members.iter().enumerate().find(|(i, m)| members[..*i].contains(m)).map(|(_, m)| m) {
        return Err(format!("bridge '{name}' lists port '{m}' twice: name each port once"));
    }
    Ok((name.to_string(), members))
}

/// `PORT=MAC[@VLAN]`.
pub fn parse_static_mac(s: &str) -> Result<(String, [u8; 6], u16), String> {
    let (port, rest) =
        s.split_once('=').ok_or_else(|| format!("static MAC '{s}' has no '=': write PORT=MAC[@VLAN], e.g. a=02:00:00:00:00:01@10"))?;
    let (mac, vlan) = parse_mac_vlan(rest).map_err(|e| format!("static MAC '{s}': {e}"))?;
    Ok((port.to_string(), mac, vlan))
}

/// `MAC[@VLAN]` (VLAN 0 to 4094, default 0), as `--static-mac` and `ctl bridge add-mac`
/// write a station.
pub fn parse_mac_vlan(s: &str) -> Result<([u8; 6], u16), String> {
    let (mac, vlan) = match s.split_once('@') {
        Some((m, v)) => (m, v.parse::<u16>().ok().filter(|v| *v <= 4094).ok_or_else(|| format!("VLAN '{v}' is not 0 to 4094"))?),
        None => (s, 0),
    };
    Ok((parse_mac(mac)?, vlan))
}

/// `PORT=N` rx queues, 1 to 8.
pub fn parse_queues(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("--queues '{s}' is malformed: write PORT=N with N from 1 to 8");
    let (port, n) = s.split_once('=').ok_or_else(bad)?;
    let n: u16 = n.parse().ok().filter(|n| (1..=8).contains(n)).ok_or_else(bad)?;
    Ok((port.to_string(), n))
}

/// `PORT:QUEUE=CORE`.
pub fn parse_affinity(s: &str) -> Result<(String, u16, usize), String> {
    let bad = || format!("--rxq-affinity '{s}' is malformed: write PORT:QUEUE=CORE, e.g. a:1=2");
    let (pq, core) = s.split_once('=').ok_or_else(bad)?;
    let (port, q) = pq.rsplit_once(':').ok_or_else(bad)?;
    Ok((port.to_string(), q.parse().map_err(|_| bad())?, core.parse().map_err(|_| bad())?))
}

/// `52:54:00:12:34:56`.
pub fn mac_str(mac: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        let sep = if i == 0 { "" } else { ":" };
        let _ = write!(s, "{sep}{b:02x}");
    }
    s
}

/// Parses six two-digit hex groups separated by `:` (or all by `-`).
///
/// # Errors
/// One line naming the input and the expected form.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("bad MAC address '{s}': expected six hex pairs like 52:54:00:12:34:56");
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut parts = s.split(sep);
    for b in mac.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Bytes Ethernet spends around every frame: IEEE 802.3 puts 8 bytes of preamble and SFD
/// before it and at least 12 bytes of inter-frame gap after it.
pub const L1_OVERHEAD: usize = 20;

/// A rate as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Max,
    Pps(f64),
    /// Bits per second; `l1` counts preamble, start delimiter and inter-frame gap.
    Bits {
        bps: f64,
        l1: bool,
    },
}

impl Rate {
    pub fn parse(s: &str) -> Result<Rate, String> {
        let t = s.trim().to_ascii_lowercase();
        if t == "max" {
            return Ok(Rate::Max);
        }
        let bad = || format!("--rate '{s}' is not a rate: use max, 2Mpps, 500kpps, 800Mbit or 1Gbit@l1");
        let (t, l1) = match t.strip_suffix("@l1") {
            Some(x) => (x.to_string(), true),
            None => (t.trim_end_matches("@l2").to_string(), false),
        };
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let v: f64 = num.parse().map_err(|_| bad())?;
        let (mult, bits) = match unit {
            "" | "pps" => (1.0, false),
            "kpps" => (1e3, false),
            "mpps" => (1e6, false),
            "gpps" => (1e9, false),
            "bit" | "bps" => (1.0, true),
            "kbit" | "kbps" => (1e3, true),
            "mbit" | "mbps" => (1e6, true),
            "gbit" | "gbps" => (1e9, true),
            _ => return Err(bad()),
        };
        if !(v.is_finite() && v > 0.0) || (l1 && !bits) {
            return Err(bad());
        }
        Ok(if bits { Rate::Bits { bps: v * mult, l1 } } else { Rate::Pps(v * mult) })
    }

    /// Packets per second for a mean frame size (bytes with FCS).
    pub fn pps(&self, mean_frame: f64) -> Option<f64> {
        match *self {
            Rate::Max => None,
            Rate::Pps(p) => Some(p),
            Rate::Bits { bps, l1 } => Some(bps / ((mean_frame + if l1 { L1_OVERHEAD as f64 } else { 0.0 }) * 8.0)),
        }
    }
}

/// An interface name: `PORT` (the port itself) or `PORT.VLAN` (an 802.1Q sub-interface,
/// VLAN 1 to 4094). Returns the port and the VLAN (0 for the port itself).
pub fn parse_iface(s: &str) -> Result<(String, u16), String> {
    let (port, vlan) = match s.split_once('.') {
        Some((p, v)) => (
            p,
            v.parse::<u16>()
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| format!("interface '{s}': VLAN '{v}' is not 1 to 4094"))?,
        ),
        None => (s, 0),
    };
    parse_name(port).map_err(|e| format!("interface '{s}': {e}"))?;
    Ok((port.to_string(), vlan))
}

/// `ADDR/LEN`, IPv4 or IPv6; the address keeps its host bits (an interface address).
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (a, l) =
        s.split_once('/').ok_or_else(|| format!("'{s}' has no prefix length: write ADDR/LEN, e.g. 198.18.1.254/24 or 2001:db8:1::1/64"))?;
    let addr: std::net::IpAddr = a.parse().map_err(|_| format!("'{a}' is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("prefix length '{l}' of '{s}' is not 0 to {max}"))?;
    Ok((addr, len))
}

/// A route's prefix: `ADDR/LEN` with no host bits set (a bare address is a host route).
pub fn parse_prefix(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, len) = if s.contains('/') {
        parse_cidr(s)?
    } else {
        let a: std::net::IpAddr = s.parse().map_err(|_| format!("'{s}' is not a prefix: write ADDR/LEN, e.g. 198.19.0.0/16"))?;
        (a, if a.is_ipv4() { 32 } else { 128 })
    };
    if masked(addr, len) != addr {
        return Err(format!("prefix '{s}' has host bits set: write {}/{len}", masked(addr, len)));
    }
    Ok((addr, len))
}

/// `addr` with the bits past `len` cleared.
pub fn masked(addr: std::net::IpAddr, len: u8) -> std::net::IpAddr {
    use std::net::IpAddr;
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// `IFACE=ADDR/LEN` (`--ip`).
pub fn parse_ip_arg(s: &str) -> Result<(String, u16, std::net::IpAddr, u8), String> {
    let (i, a) = s.split_once('=').ok_or_else(|| format!("--ip '{s}' has no '=': write IFACE=ADDR/LEN, e.g. a=198.18.1.254/24"))?;
    let (port, vlan) = parse_iface(i)?;
    let (addr, len) = parse_cidr(a)?;
    Ok((port, vlan, addr, len))
}

/// `IFACE=BYTES` (`--mtu`): 68 (RFC 791's minimum) to 9000.
pub fn parse_mtu_arg(s: &str) -> Result<(String, u16, u16), String> {
    let (i, m) = s.split_once('=').ok_or_else(|| format!("--mtu '{s}' has no '=': write IFACE=BYTES, e.g. a=1500"))?;
    let (port, vlan) = parse_iface(i)?;
    let mtu = m.parse::<u16>().ok().filter(|m| (68..=9000).contains(m)).ok_or_else(|| format!("--mtu '{s}': '{m}' is not 68 to 9000"))?;
    Ok((port, vlan, mtu))
}

/// Where a route sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Through gateways (several: ECMP), each on the interface whose connected subnet
    /// holds it, or on the one named after `@`.
    Via(Vec<(std::net::IpAddr, Option<(String, u16)>)>),
    /// Directly connected on an interface (its hosts are resolved one by one).
    Dev(String, u16),
    /// Dropped, counted.
    Blackhole,
    /// Dropped with an ICMP destination unreachable.
    Unreachable,
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ifn = |p: &str, v: u16| if v == 0 { p.to_string() } else { format!("{p}.{v}") };
        match self {
            RouteTarget::Via(gws) => {
                let g: Vec<String> = gws
                    .iter()
                    .map(|(a, i)| match i {
                        Some((p, v)) => format!("{a}@{}", ifn(p, *v)),
                        None => a.to_string(),
                    })
                    .collect();
                write!(f, "via:{}", g.join("+"))
            }
            RouteTarget::Dev(p, v) => write!(f, "dev:{}", ifn(p, *v)),
            RouteTarget::Blackhole => write!(f, "blackhole"),
            RouteTarget::Unreachable => write!(f, "unreachable"),
        }
    }
}

/// `via:ADDR[@IFACE][+ADDR[@IFACE]...]`, `dev:IFACE`, `blackhole` or `unreachable`.
pub fn parse_target(s: &str) -> Result<RouteTarget, String> {
    let bad = || format!("route target '{s}' is unknown: use via:ADDR[@IFACE][+ADDR...], dev:IFACE, blackhole or unreachable");
    match s {
        "blackhole" => return Ok(RouteTarget::Blackhole),
        "unreachable" => return Ok(RouteTarget::Unreachable),
        _ => {}
    }
    let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
    match kind {
        "dev" => {
            let (p, v) = parse_iface(rest)?;
            Ok(RouteTarget::Dev(p, v))
        }
        "via" => {
            let mut gws = Vec::new();
            for g in rest.split('+') {
                let (a, i) = match g.split_once('@') {
                    Some((a, i)) => (a, Some(parse_iface(i)?)),
                    None => (g, None),
                };
                let a: std::net::IpAddr = a.parse().map_err(|_| format!("gateway '{a}' is not an IPv4 or IPv6 address"))?;
                if gws.iter().any(|(x, _)| *x == a) {
                    return Err(format!("gateway {a} is listed twice in '{s}'"));
                }
                gws.push((a, i));
            }
            if gws.len() > 16 {
                return Err(format!("'{s}' lists {} gateways: at most 16", gws.len()));
            }
            Ok(RouteTarget::Via(gws))
        }
        _ => Err(bad()),
    }
}

/// `PREFIX=TARGET` (`--route`).
pub fn parse_route_arg(s: &str) -> Result<(std::net::IpAddr, u8, RouteTarget), String> {
    let (p, t) = s
        .split_once('=')
        .ok_or_else(|| format!("--route '{s}' has no '=': write PREFIX=via:ADDR or PREFIX=dev:IFACE, e.g. 198.19.0.0/16=via:198.18.1.1"))?;
    let (addr, len) = parse_prefix(p)?;
    let t = parse_target(t)?;
    if let RouteTarget::Via(g) = &t {
        if let Some((a, _)) = g.iter().find(|(a, _)| a.is_ipv4() != addr.is_ipv4()) {
            return Err(format!("route {p}: gateway {a} is not of the prefix's address family"));
        }
    }
    Ok((addr, len, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_rules_parse() {
        assert_eq!(parse_bridge("br0=a,b,c").unwrap(), ("br0".into(), vec!["a".into(), "b".into(), "c".into()]));
        // One port is a bridge a VXLAN segment may join (`run` checks that one does).
        assert_eq!(parse_bridge("br0=a").unwrap().1, ["a"]);
        assert!(parse_bridge("br0=").unwrap_err().contains("no ports"));
        assert!(parse_bridge("br0=a,b,a").unwrap_err().contains("twice"));
        assert!(parse_bridge("br0").unwrap_err().contains("no '='"));
        assert_eq!(parse_static_mac("a=02:00:00:00:00:01@10").unwrap(), ("a".into(), [2, 0, 0, 0, 0, 1], 10));
        assert_eq!(parse_static_mac("a=02:00:00:00:00:01").unwrap().2, 0);
        assert!(parse_static_mac("a=02:00@1").is_err());
        assert!(parse_static_mac("a=02:00:00:00:00:01@5000").unwrap_err().contains("VLAN"));
        assert_eq!(parse_queues("a=2").unwrap(), ("a".into(), 2));
        assert!(parse_queues("a=0").is_err() && parse_queues("a=9").is_err() && parse_queues("a").is_err());
        assert_eq!(parse_affinity("a:1=3").unwrap(), ("a".into(), 1, 3));
        assert!(parse_affinity("a=3").is_err());
    }

    #[test]
    fn ports_parse() {
        assert_eq!(
            parse_port("a=vhost-server:/tmp/a.sock").unwrap(),
            PortDef { name: "a".into(), spec: PortSpec::VhostServer("/tmp/a.sock".into()) }
        );
        assert_eq!(parse_port("up-1=vhost-client:/x").unwrap().spec, PortSpec::VhostClient("/x".into()));
        assert_eq!(parse_port("n=pci:0000:03:00.0").unwrap().spec, PortSpec::Pci("0000:03:00.0".into()));
        assert_eq!(parse_port("n=pci:3:0.1").unwrap().spec, PortSpec::Pci("0000:03:00.1".into()));
        assert_eq!(parse_port("r=vdev:net_ring0").unwrap().spec, PortSpec::Vdev("net_ring0".into()));
        assert_eq!(parse_port("t=vdev:net_tap0,iface=t0").unwrap().spec, PortSpec::Vdev("net_tap0,iface=t0".into()));
        // Display round-trips.
        for s in ["a=vhost-server:/tmp/a.sock", "b=pci:0000:03:00.0", "c=vdev:net_null0,size=64"] {
            let d = parse_port(s).unwrap();
            assert_eq!(format!("{}={}", d.name, d.spec), s);
        }
    }

    #[test]
    fn port_errors_name_the_fix() {
        for (arg, needle) in [
            ("a", "has no '='"),
            ("=vdev:net_ring0", "port name '' is invalid"),
            ("a b=vdev:net_ring0", "invalid"),
            ("a=foo:/x", "unknown kind 'foo'"),
            ("a=/tmp/x", "has no kind"),
            ("a=vhost-server:", "needs a socket path"),
            ("a=pci:zz:00.0", "malformed"),
            ("a=pci:0000:00:20.0", "malformed"),
            ("a=vdev:", "must start with a device name"),
            ("a=vdev:net_vhost0,iface=/x", "use vhost-server"),
        ] {
            let e = parse_port(arg).unwrap_err();
            assert!(e.contains(needle), "{arg}: {e}");
            assert!(!e.contains('\n'));
        }
        let long = format!("a=vhost-server:/{}", "x".repeat(120));
        assert!(parse_port(&long).unwrap_err().contains("107"));
    }

    #[test]
    fn cores_and_xconnect() {
        assert_eq!(parse_cores("1").unwrap(), vec![1]);
        assert_eq!(parse_cores("3,1-2").unwrap(), vec![1, 2, 3]);
        assert!(parse_cores("1,1").unwrap_err().contains("twice"));
        assert!(parse_cores("2-1").is_err());
        assert!(parse_cores("x").is_err());
        let e = parse_cores("0-18446744073709551615").unwrap_err();
        assert!(e.contains("beyond 1023"), "{e}");
        assert!(parse_cores("1024").is_err());
        assert_eq!(parse_cores("1023").unwrap(), vec![1023]);
        assert_eq!(parse_xconnect("a,b").unwrap(), ("a".into(), "b".into()));
        assert!(parse_xconnect("a,a").unwrap_err().contains("twice"));
        assert!(parse_xconnect("a").is_err());
        assert!(parse_xconnect("a,b,c").is_err());
    }

    #[test]
    fn mac_text_round_trip_and_errors() {
        let m = [0x52, 0x54, 0x00, 0xab, 0xCD, 0x0f];
        assert_eq!(mac_str(&m), "52:54:00:ab:cd:0f");
        assert_eq!(parse_mac("52:54:00:AB:cd:0f"), Ok(m));
        assert_eq!(parse_mac("52-54-00-ab-cd-0f"), Ok(m));
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "52:54:00:ab:cd:g0",
            "2:54:00:ab:cd:0f",
            "52:54-00:ab:cd:0f",
            "+2:54:00:ab:cd:0f",
        ] {
            let e = parse_mac(bad).unwrap_err();
            assert!(e.starts_with("bad MAC address") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn router_syntax_parses_and_refuses_with_the_fix() {
        use std::net::IpAddr;
        assert_eq!(parse_iface("a"), Ok(("a".into(), 0)));
        assert_eq!(parse_iface("a.100"), Ok(("a".into(), 100)));
        assert!(parse_iface("a.5000").unwrap_err().contains("1 to 4094"));
        let (p, v, a, l) = parse_ip_arg("a.10=198.18.1.254/24").unwrap();
        assert_eq!((p.as_str(), v, a, l), ("a", 10, "198.18.1.254".parse::<IpAddr>().unwrap(), 24));
        assert!(parse_ip_arg("a=198.18.1.254").unwrap_err().contains("no prefix length"));
        assert!(parse_ip_arg("a=2001:db8::1/129").unwrap_err().contains("0 to 128"));
        assert_eq!(parse_prefix("10.0.0.0/8"), Ok(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(parse_prefix("10.0.0.1"), Ok(("10.0.0.1".parse().unwrap(), 32)));
        assert!(parse_prefix("10.0.0.1/8").unwrap_err().contains("write 10.0.0.0/8"));
        let (_, _, t) = parse_route_arg("198.19.0.0/16=via:198.18.1.1+198.18.2.1@b.7").unwrap();
        assert_eq!(
            t,
            RouteTarget::Via(vec![("198.18.1.1".parse().unwrap(), None), ("198.18.2.1".parse().unwrap(), Some(("b".into(), 7)))])
        );
        assert_eq!(t.to_string(), "via:198.18.1.1+198.18.2.1@b.7");
        assert_eq!(parse_target("dev:a"), Ok(RouteTarget::Dev("a".into(), 0)));
        assert_eq!(parse_target("blackhole"), Ok(RouteTarget::Blackhole));
        assert!(parse_target("drop").unwrap_err().contains("use via:"));
        assert!(parse_route_arg("2001:db8::/32=via:198.18.1.1").unwrap_err().contains("address family"));
        assert!(parse_route_arg("10.0.0.0/8=via:1.1.1.1+1.1.1.1").unwrap_err().contains("twice"));
        assert!(parse_route_arg("10.0.0.0/8").unwrap_err().contains("no '='"));
    }
}
