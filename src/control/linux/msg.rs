//! rtnetlink messages (rtnetlink(7), linux/rtnetlink.h, linux/neighbour.h,
//! linux/nexthop.h) decoded from the bytes a NETLINK_ROUTE socket delivers, and the dump
//! requests the mirror sends. Everything the kernel (or anyone who can write to the
//! socket) controls is bounds-checked here: a malformed message is an `Err` naming why,
//! never a panic; a malformed header ends its datagram (the next message cannot be found).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;
pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;

/// Multicast groups (RTNLGRP_*) the mirror joins.
pub const GROUPS: [u32; 7] = [
    1,  /* LINK */
    3,  /* NEIGH */
    5,  /* IPV4_IFADDR */
    7,  /* IPV4_ROUTE */
    9,  /* IPV6_IFADDR */
    11, /* IPV6_ROUTE */
    32, /* NEXTHOP */
];

pub const RT_TABLE_MAIN: u32 = 254;
pub const RTN_UNICAST: u8 = 1;
pub const RTN_BLACKHOLE: u8 = 6;
pub const RTN_UNREACHABLE: u8 = 7;
pub const RTN_PROHIBIT: u8 = 8;
pub const NUD_PERMANENT: u16 = 0x80;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A route as the kernel states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMsg {
    pub dst: IpAddr,
    pub len: u8,
    pub table: u32,
    pub kind: u8,
    pub protocol: u8,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// RTA_MULTIPATH: (gateway, interface) per path.
    pub multipath: Vec<(Option<IpAddr>, u32)>,
    /// RTA_NH_ID: the route uses a next-hop object.
    pub nh_id: Option<u32>,
    pub metric: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighMsg {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub mac: Option<[u8; 6]>,
    pub state: u16,
}

/// A next-hop object (`ip nexthop`): one gateway, a blackhole, or a group of others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexthopMsg {
    pub id: u32,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub blackhole: bool,
    pub group: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Route(bool, RouteMsg),
    Neigh(bool, NeighMsg),
    Link(bool, u32, String),
    Addr(bool, u32, IpAddr, u8),
    Nexthop(bool, NexthopMsg),
    /// The end of a dump.
    Done,
    /// NLMSG_ERROR: 0 acknowledges, else -errno.
    Error(i32),
    /// A type the mirror does not use.
    Other(u16),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Attributes (struct rtattr: length, type, value) of `b`; the type's nested and
/// byte-order flags are masked off. Err when a length runs past the end.
fn attrs(b: &[u8]) -> Result<Vec<(u16, &[u8])>, &'static str> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 4 <= b.len() {
        let len = usize::from(u16_at(b, at).ok_or("attr_truncated")?);
        let ty = u16_at(b, at + 2).ok_or("attr_truncated")? & 0x3fff;
        if len < 4 || at + len > b.len() {
            return Err("attr_length");
        }
        v.push((ty, &b[at + 4..at + len]));
        at += align4(len);
    }
    Ok(v)
}

fn ip_of(family: u8, v: &[u8]) -> Result<IpAddr, &'static str> {
    match (family, v.len()) {
        (AF_INET, 4) => Ok(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        (AF_INET6, 16) => {
            let a: [u8; 16] = v.try_into().map_err(|_| "address_length")?;
            Ok(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => Err("address_length"),
    }
}

/// RTA_VIA (struct rtvia: family, then the address), which IPv4 routes over IPv6
/// gateways use.
fn via_of(v: &[u8]) -> Result<IpAddr, &'static str> {
    let fam = u16_at(v, 0).ok_or("address_length")?;
    ip_of(fam as u8, &v[2..])
}

fn unspecified(family: u8) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

fn route(add: bool, b: &[u8]) -> Result<Msg, &'static str> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    if b.len() < 12 {
        return Err("route_truncated");
    }
    let family = b[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(Msg::Other(RTM_NEWROUTE));
    }
    let max = if family == AF_INET { 32 } else { 128 };
    if b[1] > max {
        return Err("prefix_length");
    }
    let mut r = RouteMsg {
        dst: unspecified(family),
        len: b[1],
        table: u32::from(b[4]),
        kind: b[7],
        protocol: b[5],
        oif: None,
        gateway: None,
        multipath: Vec::new(),
        nh_id: None,
        metric: 0,
    };
    for (ty, v) in attrs(&b[12..])? {
        match ty {
            1 => r.dst = ip_of(family, v)?,
            4 => r.oif = Some(u32_at(v, 0).ok_or("attr_value")?),
            5 => r.gateway = Some(ip_of(family, v)?),
            6 => r.metric = u32_at(v, 0).ok_or("attr_value")?,
            15 => r.table = u32_at(v, 0).ok_or("attr_value")?,
            18 => r.gateway = Some(via_of(v)?),
            30 => r.nh_id = Some(u32_at(v, 0).ok_or("attr_value")?),
            9 => {
                // struct rtnexthop: len, flags, hops, ifindex; its own attributes follow.
                let mut at = 0;
                while at + 8 <= v.len() {
                    let len = usize::from(u16_at(v, at).ok_or("multipath")?);
                    if len < 8 || at + len > v.len() {
                        return Err("multipath");
                    }
                    let ifindex = u32_at(v, at + 4).ok_or("multipath")?;
                    let mut gw = None;
                    for (t, x) in attrs(&v[at + 8..at + len])? {
                        match t {
                            5 => gw = Some(ip_of(family, x)?),
                            18 => gw = Some(via_of(x)?),
                            _ => {}
                        }
                    }
                    r.multipath.push((gw, ifindex));
                    at += align4(len);
                }
            }
            _ => {}
        }
    }
    Ok(Msg::Route(add, r))
}

fn neigh(add: bool, b: &[u8]) -> Result<Msg, &'static str> {
    // struct ndmsg: family, pad, pad, ifindex, state, flags, type.
    if b.len() < 12 {
        return Err("neigh_truncated");
    }
    let family = b[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(Msg::Other(RTM_NEWNEIGH));
    }
    let ifindex = u32_at(b, 4).ok_or("neigh_truncated")?;
    let state = u16_at(b, 8).ok_or("neigh_truncated")?;
    let mut addr = None;
    let mut mac = None;
    for (ty, v) in attrs(&b[12..])? {
        match ty {
            1 => addr = Some(ip_of(family, v)?),
            2 if v.len() == 6 => mac = Some([v[0], v[1], v[2], v[3], v[4], v[5]]),
            _ => {}
        }
    }
    Ok(Msg::Neigh(add, NeighMsg { ifindex, addr: addr.ok_or("neigh_no_address")?, mac, state }))
}

fn link(add: bool, b: &[u8]) -> Result<Msg, &'static str> {
    // struct ifinfomsg: family, pad, type, index, flags, change.
    if b.len() < 16 {
        return Err("link_truncated");
    }
    let index = u32_at(b, 4).ok_or("link_truncated")?;
    let mut name = String::new();
    for (ty, v) in attrs(&b[16..])? {
        if ty == 3 {
            let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
            name = String::from_utf8_lossy(&v[..end]).into_owned();
        }
    }
    Ok(Msg::Link(add, index, name))
}

fn addr(add: bool, b: &[u8]) -> Result<Msg, &'static str> {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    if b.len() < 8 {
        return Err("addr_truncated");
    }
    let family = b[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(Msg::Other(RTM_NEWADDR));
    }
    let len = b[1];
    if len > if family == AF_INET { 32 } else { 128 } {
        return Err("prefix_length");
    }
    let index = u32_at(b, 4).ok_or("addr_truncated")?;
    let (mut address, mut local) = (None, None);
    for (ty, v) in attrs(&b[8..])? {
        match ty {
            1 => address = Some(ip_of(family, v)?),
            2 => local = Some(ip_of(family, v)?),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on
    // point-to-point links).
    let a = local.or(address).ok_or("addr_no_address")?;
    Ok(Msg::Addr(add, index, a, len))
}

fn nexthop(add: bool, b: &[u8]) -> Result<Msg, &'static str> {
    // struct nhmsg: family, scope, protocol, resvd, flags.
    if b.len() < 8 {
        return Err("nexthop_truncated");
    }
    let family = b[0];
    let mut n = NexthopMsg { id: 0, oif: None, gateway: None, blackhole: false, group: Vec::new() };
    for (ty, v) in attrs(&b[8..])? {
        match ty {
            1 => n.id = u32_at(v, 0).ok_or("attr_value")?,
            // struct nexthop_grp: id, weight, resvd1, resvd2 (8 bytes each).
            2 => n.group = v.chunks_exact(8).filter_map(|c| u32_at(c, 0)).collect(),
            4 => n.blackhole = true,
            5 => n.oif = Some(u32_at(v, 0).ok_or("attr_value")?),
            6 => n.gateway = Some(ip_of(family, v)?),
            _ => {}
        }
    }
    if n.id == 0 {
        return Err("nexthop_no_id");
    }
    Ok(Msg::Nexthop(add, n))
}

/// The messages of one datagram, each decoded or the reason it could not be.
pub fn decode(buf: &[u8]) -> Vec<Result<Msg, &'static str>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32_at(buf, at).map_or(0, |l| l as usize);
        let ty = u16_at(buf, at + 4).unwrap_or(0);
        if len < 16 || at + len > buf.len() {
            out.push(Err("header_length"));
            return out;
        }
        let body = &buf[at + 16..at + len];
        out.push(match ty {
            NLMSG_NOOP => Ok(Msg::Other(ty)),
            NLMSG_DONE => Ok(Msg::Done),
            NLMSG_OVERRUN => Err("overrun"),
            NLMSG_ERROR => u32_at(body, 0).map(|e| Msg::Error(e as i32)).ok_or("error_truncated"),
            RTM_NEWROUTE | RTM_DELROUTE => route(ty == RTM_NEWROUTE, body),
            RTM_NEWNEIGH | RTM_DELNEIGH => neigh(ty == RTM_NEWNEIGH, body),
            RTM_NEWLINK | RTM_DELLINK => link(ty == RTM_NEWLINK, body),
            RTM_NEWADDR | RTM_DELADDR => addr(ty == RTM_NEWADDR, body),
            RTM_NEWNEXTHOP | RTM_DELNEXTHOP => nexthop(ty == RTM_NEWNEXTHOP, body),
            _ => Ok(Msg::Other(ty)),
        });
        at += align4(len);
    }
    if at < buf.len() {
        out.push(Err("header_length"));
    }
    out
}

/// A dump request of `ty` (RTM_GET*): the family header zeroed (all families, every
/// table; strict checking treats zeros as "no filter").
pub fn dump_request(ty: u16, seq: u32) -> Vec<u8> {
    let hdr = match ty {
        RTM_GETLINK => 16,
        RTM_GETROUTE | RTM_GETNEIGH => 12,
        _ => 8,
    };
    let len = 16 + hdr;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.resize(len, 0);
    m
}

#[cfg(test)]
mod tests;
