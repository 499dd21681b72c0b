//! Stage 1, input: what a frame is, from its first bytes — the interface it arrived on,
//! and for IPv4/IPv6 the checks a router makes before it forwards (RFC 1812 §5.2.2 for
//! IPv4: version, header length, total length, header checksum; RFC 8200 for IPv6:
//! version and payload length), martian addresses (RFC 1812 §5.3.7, RFC 4291), and
//! what the later stages need (destination, TTL, length, DF, a flow hash).
//!
//! ARP, neighbour discovery, multicast and link-local traffic go to the slow path;
//! everything this stage refuses is a counted drop.

use super::iface::Ifaces;
use super::nexthop::flow_hash;
use super::{Exc, Why};
use crate::datapath::stats::DropCause;
use crate::datapath::wire::csum;

/// A frame to route, as input found it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pkt {
    pub iface: u16,
    /// Ethernet header length (14, or 18 with a tag).
    pub l2: u8,
    pub v6: bool,
    /// IPv4: the address (host order) in the low 32 bits; IPv6: the address.
    pub dst: u128,
    pub ttl: u8,
    /// The IP packet's length (header and payload): what the egress MTU bounds.
    pub l3_len: u16,
    pub df: bool,
    pub hash: u32,
    /// The IP header's first bytes, to rewrite (IPv4: up to the checksum, 12; IPv6: up to
    /// the hop limit, 8).
    pub ip: [u8; 12],
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads frame `d` (its first bytes: at least 64, or the whole frame when shorter) of
/// `len` bytes, received on switch port `port`.
///
/// # Errors
/// The frame goes to the slow path ([`Exc::Punt`]) or is dropped ([`Exc::Drop`]).
#[inline(always)]
pub fn input(ifs: &Ifaces, port: usize, d: &[u8], len: u32) -> Result<Pkt, Exc> {
    if d.len() < 14 {
        return Err(Exc::Drop(DropCause::Runt));
    }
    let mut et = be16(d, 12);
    let (mut l2, mut vlan) = (14usize, 0u16);
    if et == 0x8100 {
        if d.len() < 18 {
            return Err(Exc::Drop(DropCause::Runt));
        }
        vlan = be16(d, 14) & 0x0fff;
        et = be16(d, 16);
        l2 = 18;
    }
    let Some(ifw) = ifs.ingress(port, vlan) else { return Err(Exc::Drop(DropCause::NotForUs)) };
    let iface = ifw.index;
    if d[..6] != ifw.mac {
        // Broadcast and multicast: ARP requests, IPv6 neighbour discovery; the rest of
        // a segment's chatter is not for a router's data plane.
        return Err(match et {
            _ if d[0] & 1 == 0 => Exc::Drop(DropCause::NotForUs),
            0x0806 => Exc::Punt(Why::Arp, iface),
            0x86dd => Exc::Punt(Why::Local, iface),
            _ => Exc::Drop(DropCause::NotForUs),
        });
    }
    let ip = &d[l2..];
    match et {
        0x0800 => {
            if ip.len() < 20 {
                return Err(Exc::Drop(DropCause::IpHeader));
            }
            let ihl = usize::from(ip[0] & 0xf) * 4;
            let total = usize::from(be16(ip, 2));
            // The whole header must be in the bytes read (options of up to 24 bytes
            // behind a tag; longer ones are counted as bad headers).
            if ip[0] >> 4 != 4 || ihl < 20 || ihl > ip.len() || total < ihl || total + l2 > len as usize {
                return Err(Exc::Drop(DropCause::IpHeader));
            }
            if !csum::header_ok(&ip[..ihl]) {
                return Err(Exc::Drop(DropCause::IpChecksum));
            }
            let (src, dst) = (be32(ip, 12), be32(ip, 16));
            let (s8, d8) = (src >> 24, dst >> 24);
            // Loopback, "this network", class D/E or broadcast sources; loopback and
            // "this network" destinations.
            if s8 == 0 || s8 == 127 || s8 >= 224 || d8 == 127 || d8 == 0 {
                return Err(Exc::Drop(DropCause::Martian));
            }
            if d8 >= 224 {
                // Multicast and broadcast are not forwarded: the host may want them.
                return Err(Exc::Punt(Why::Local, iface));
            }
            let proto = ip[9];
            let frag = be16(ip, 6);
            let ports = if (proto == 6 || proto == 17) && frag & 0x3fff == 0 && ip.len() >= ihl + 4 { be32(ip, ihl) } else { 0 };
            Ok(Pkt {
                iface,
                l2: l2 as u8,
                v6: false,
                dst: u128::from(dst),
                ttl: ip[8],
                l3_len: total as u16,
                df: frag & 0x4000 != 0,
                hash: flow_hash(u64::from(src), u64::from(dst), ports, proto),
                ip: ip[..12].try_into().unwrap_or_default(),
            })
        }
        0x86dd => {
            if ip.len() < 40 {
                return Err(Exc::Drop(DropCause::IpHeader));
            }
            let payload = usize::from(be16(ip, 4));
            if ip[0] >> 4 != 6 || 40 + payload + l2 > len as usize {
                return Err(Exc::Drop(DropCause::IpHeader));
            }
            let src = u128::from_be_bytes(ip[8..24].try_into().unwrap_or_default());
            let dst = u128::from_be_bytes(ip[24..40].try_into().unwrap_or_default());
            // Multicast or loopback sources; unspecified or loopback destinations.
            if src >> 120 == 0xff || src == 1 || dst == 1 || dst == 0 {
                return Err(Exc::Drop(DropCause::Martian));
            }
            // Multicast (neighbour discovery) and link-local destinations are for the
            // slow path; never forwarded.
            if dst >> 120 == 0xff || dst >> 118 == 0xfe80 >> 6 {
                return Err(Exc::Punt(Why::Local, iface));
            }
            let next = ip[6];
            let ports = if (next == 6 || next == 17) && ip.len() >= 44 { be32(ip, 40) } else { 0 };
            let fold = |a: u128| (a as u64) ^ ((a >> 64) as u64);
            Ok(Pkt {
                iface,
                l2: l2 as u8,
                v6: true,
                dst,
                ttl: ip[7],
                l3_len: (40 + payload) as u16,
                df: true,
                hash: flow_hash(fold(src), fold(dst), ports, next),
                ip: ip[..12].try_into().unwrap_or_default(),
            })
        }
        0x0806 => Err(Exc::Punt(Why::Arp, iface)),
        _ => Err(Exc::Drop(DropCause::Unsupported)),
    }
}
