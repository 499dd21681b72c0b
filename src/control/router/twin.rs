//! Host interfaces: a Linux TAP twin per routed interface (`--host-if`, `--linux-routes`),
//! with the interface's MAC, MTU and addresses. What the data plane does not answer for
//! the router's own addresses (TCP and UDP to them, routing protocols, multicast) goes up
//! to the twin; what the kernel sends on a twin goes out of its interface. Both ways run
//! on the slow-path thread, copied frames, rate-limited and counted: the workers only punt.

use std::net::IpAddr;
use std::process::Command;
use std::time::Instant;

use super::{Bucket, RouterCtl};
use crate::datapath::wire::l3;
use crate::sys::netlink::ifindex;
use crate::sys::tap::Tap;

/// Frames up to the kernel per second (and burst) over all twins: a routing daemon's
/// sessions need far less; a flood of TCP to our address must not take the slow path.
const UP_RATE: f64 = 50_000.0;
const UP_BURST: f64 = 5_000.0;

pub struct Twin {
    /// None for a twin created by someone else and only mapped (`map_twin`).
    pub tap: Option<Tap>,
    pub ifindex: u32,
}

/// Twin counters (`show router`: "host_if").
#[derive(Debug, Default, Clone)]
pub struct TwinStats {
    pub up: u64,
    pub down: u64,
    pub rate_limited: u64,
    pub errors: u64,
    pub too_big: u64,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip(8): {e}: install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl RouterCtl {
    /// Creates the twin of interface `iface` named `name`: the TAP device, its MAC, MTU
    /// and addresses, up. IPv6 addresses skip duplicate detection (the data plane owns
    /// them already).
    pub fn add_twin(&mut self, iface: u16, name: &str) -> Result<(), String> {
        let Some(i) = self.iface(iface) else { return Err(format!("no interface #{iface}")) };
        let (mac, mtu, addrs) = (crate::parse::mac_str(&i.mac), i.mtu.to_string(), i.addrs.clone());
        let tap = Tap::open(name).map_err(|e| format!("host interface {name}: {e}: run as root with the tun module (modprobe tun)"))?;
        ip(&["link", "set", "dev", name, "address", &mac, "mtu", &mtu])?;
        for (a, l) in addrs {
            let al = format!("{a}/{l}");
            let mut args = vec!["addr", "add", al.as_str(), "dev", name];
            if a.is_ipv6() {
                args.push("nodad");
            }
            ip(&args)?;
        }
        ip(&["link", "set", "dev", name, "up"])?;
        let idx = ifindex(name);
        if self.twins.len() <= usize::from(iface) {
            self.twins.resize_with(usize::from(iface) + 1, || None);
        }
        self.twins[usize::from(iface)] = Some(Twin { tap: Some(tap), ifindex: idx });
        Ok(())
    }

    /// Maps Linux interface `ifindex` to interface `iface` without a device of ours (the
    /// mirror then follows routes through it; nothing is handed up or down).
    pub fn map_twin(&mut self, iface: u16, ifindex: u32) {
        if self.twins.len() <= usize::from(iface) {
            self.twins.resize_with(usize::from(iface) + 1, || None);
        }
        self.twins[usize::from(iface)] = Some(Twin { tap: None, ifindex });
    }

    /// After `ctl ip add/del` of `addr/len` on `port[.vlan]`: the twin follows (a new
    /// interface gets one when every interface has one: `--linux-routes`); an interface
    /// that went with its last address took its twin along (`del_addr`).
    pub fn twin_follow(&mut self, port: &str, vlan: u16, addr: IpAddr, len: u8, added: bool) -> Result<(), String> {
        let Some(i) = self.iface_by_name(port, vlan).map(|i| i.index) else { return Ok(()) };
        match self.twins.get(usize::from(i)).and_then(Option::as_ref) {
            Some(Twin { tap: Some(t), .. }) => {
                let (name, al) = (t.name().to_string(), format!("{addr}/{len}"));
                ip(&["addr", if added { "add" } else { "del" }, &al, "dev", &name]).map_err(|e| format!("host interface {name}: {e}"))
            }
            Some(_) => Ok(()),
            None if self.twin_auto && added => self.add_twin(i, &super::ifname(port, vlan)),
            None => Ok(()),
        }
    }

    pub fn has_twins(&self) -> bool {
        self.twins.iter().any(Option::is_some)
    }

    /// The interface (port name, VLAN) whose twin has Linux index `ifindex`.
    pub fn twin_iface(&self, ifindex: u32) -> Option<(String, u16, usize, u16)> {
        let k = self.twins.iter().position(|t| t.as_ref().is_some_and(|t| t.ifindex == ifindex))?;
        let i = self.iface(k as u16)?;
        let port = i.name.split('.').next().unwrap_or(&i.name).to_string();
        Some((port, i.vlan, i.port, i.index))
    }

    /// Hands a packet for us up to interface `iface`'s twin; false when it has none.
    pub(super) fn hand_up(&mut self, iface: u16, src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]) -> bool {
        let Some(Some(Twin { tap: Some(tap), .. })) = self.twins.get(usize::from(iface)) else { return false };
        if !self.twin_bucket.take(Instant::now()) {
            self.twin_stats.rate_limited += 1;
            return true;
        }
        let mut f = Vec::with_capacity(14 + payload.len());
        l3::put_eth(&mut f, dst, src, 0, ethertype);
        f.extend_from_slice(payload);
        match tap.send(&f) {
            Ok(()) => self.twin_stats.up += 1,
            Err(_) => self.twin_stats.errors += 1,
        }
        true
    }

    /// What the kernel sent on the twins, out of their interfaces (tagged for a VLAN
    /// interface); at most `budget` frames. Returns how many.
    pub fn poll_twins(&mut self, budget: usize) -> usize {
        let mut n = 0;
        let mut buf = vec![0u8; 9232];
        for k in 0..self.twins.len() {
            while n < budget {
                let Some(Some(Twin { tap: Some(tap), .. })) = self.twins.get(k) else { break };
                let len = match tap.recv(&mut buf) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(_) => {
                        self.twin_stats.errors += 1;
                        break;
                    }
                };
                n += 1;
                let Some(i) = self.iface(k as u16) else { break };
                let (vlan, mtu) = (i.vlan, usize::from(i.mtu));
                if len < 14 || len - 14 > mtu {
                    self.twin_stats.too_big += 1;
                    continue;
                }
                let Some(mut f) = self.rt.punt.buffer() else {
                    self.stats.drop("no_buffer");
                    continue;
                };
                let dst: [u8; 6] = buf[0..6].try_into().unwrap_or([0; 6]);
                let src: [u8; 6] = buf[6..12].try_into().unwrap_or([0; 6]);
                l3::put_eth(&mut f, dst, src, vlan, u16::from_be_bytes([buf[12], buf[13]]));
                f.extend_from_slice(&buf[14..len]);
                f.resize(f.len().max(60), 0);
                self.twin_stats.down += 1;
                self.emit(k as u16, f);
            }
        }
        n
    }
}

/// Whether `a` is an address the mirror leaves alone on a twin (the kernel's own
/// link-local IPv6 address: the data plane has its own, from the MAC).
pub fn kernel_only(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
}

pub fn new_bucket() -> Bucket {
    Bucket::new(UP_RATE, UP_BURST)
}
