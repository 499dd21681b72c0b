//! Ethernet, ARP, IPv4, IPv6, ICMP and ICMPv6 as the router's slow path (and the
//! generator's ARP/ND responder) reads and writes them: parsers that check every length
//! before they read, and builders of whole frames. Fixed offsets, big-endian fields.
//!
//! RFC 826 (ARP), RFC 791 (IPv4), RFC 792 (ICMP), RFC 8200 (IPv6), RFC 4443 (ICMPv6),
//! RFC 4861 (neighbour discovery), RFC 1812 §4.3.2 (what an ICMP error quotes).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::csum;

pub const ETH_LEN: usize = 14;
pub const TAG_LEN: usize = 4;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame's header as read: addresses, the VLAN id if tagged (0: untagged),
/// the ethertype after any tag, and where the payload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub vlan: u16,
    pub ethertype: u16,
    pub l2_len: usize,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The Ethernet header (one 802.1Q tag at most), None when the frame is too short.
pub fn parse_eth(f: &[u8]) -> Option<Eth> {
    if f.len() < ETH_LEN {
        return None;
    }
    let (dst, src) = (f[0..6].try_into().ok()?, f[6..12].try_into().ok()?);
    let t = be16(f, 12);
    if t == ETHERTYPE_VLAN {
        if f.len() < ETH_LEN + TAG_LEN {
            return None;
        }
        return Some(Eth { dst, src, vlan: be16(f, 14) & 0x0fff, ethertype: be16(f, 16), l2_len: ETH_LEN + TAG_LEN });
    }
    Some(Eth { dst, src, vlan: 0, ethertype: t, l2_len: ETH_LEN })
}

/// Appends an Ethernet header (tagged when `vlan` is not 0).
pub fn put_eth(out: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], vlan: u16, ethertype: u16) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    if vlan != 0 {
        out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// An ARP packet for IPv4 over Ethernet (RFC 826).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: Ipv4Addr,
    pub tha: [u8; 6],
    pub tpa: Ipv4Addr,
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;
const ARP_LEN: usize = 28;

/// An ARP payload (after the Ethernet header); None unless Ethernet/IPv4 and long enough.
pub fn parse_arp(p: &[u8]) -> Option<Arp> {
    if p.len() < ARP_LEN || be16(p, 0) != 1 || be16(p, 2) != ETHERTYPE_IPV4 || p[4] != 6 || p[5] != 4 {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    Some(Arp { op: be16(p, 6), sha: p[8..14].try_into().ok()?, spa: ip(14), tha: p[18..24].try_into().ok()?, tpa: ip(24) })
}

/// A whole ARP frame (padded to the 60-byte Ethernet minimum).
pub fn arp_frame(dst: [u8; 6], vlan: u16, a: &Arp) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    put_eth(&mut f, dst, a.sha, vlan, ETHERTYPE_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&a.op.to_be_bytes());
    f.extend_from_slice(&a.sha);
    f.extend_from_slice(&a.spa.octets());
    f.extend_from_slice(&a.tha);
    f.extend_from_slice(&a.tpa.octets());
    f.resize(f.len().max(60), 0);
    f
}

/// An IPv4 header as read, checked (RFC 1812 §5.2.2: version, header length, total
/// length within the frame, header checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub ihl: usize,
    pub total: usize,
    pub id: u16,
    pub df: bool,
    /// More fragments, or a fragment offset: not the first whole datagram.
    pub fragment: bool,
    pub frag_off: u16,
    pub mf: bool,
    pub tos: u8,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadIp {
    Header,
    Checksum,
}

pub fn parse_ipv4(p: &[u8]) -> Result<Ipv4, BadIp> {
    if p.len() < IPV4_LEN || p[0] >> 4 != 4 {
        return Err(BadIp::Header);
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(be16(p, 2));
    if ihl < IPV4_LEN || total < ihl || total > p.len() || ihl > p.len() {
        return Err(BadIp::Header);
    }
    if csum::checksum(&p[..ihl]) != 0 {
        return Err(BadIp::Checksum);
    }
    let flags = be16(p, 6);
    Ok(Ipv4 {
        src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        proto: p[9],
        ttl: p[8],
        ihl,
        total,
        id: be16(p, 4),
        df: flags & 0x4000 != 0,
        mf: flags & 0x2000 != 0,
        frag_off: flags & 0x1fff,
        fragment: flags & 0x3fff != 0,
        tos: p[1],
    })
}

/// Appends an IPv4 header (no options) with its checksum.
#[allow(clippy::too_many_arguments)]
pub fn put_ipv4(out: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: usize, id: u16, flags_frag: u16) {
    let at = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&((IPV4_LEN + payload) as u16).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags_frag.to_be_bytes());
    out.extend_from_slice(&[ttl, proto, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let c = csum::checksum(&out[at..at + IPV4_LEN]);
    out[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv6 header as read (payload length within the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next: u8,
    pub hops: u8,
    pub payload: usize,
}

pub fn parse_ipv6(p: &[u8]) -> Result<Ipv6, BadIp> {
    if p.len() < IPV6_LEN || p[0] >> 4 != 6 {
        return Err(BadIp::Header);
    }
    let payload = usize::from(be16(p, 4));
    if IPV6_LEN + payload > p.len() {
        return Err(BadIp::Header);
    }
    let a = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&p[at..at + 16]).unwrap_or_default());
    Ok(Ipv6 { src: a(8), dst: a(24), next: p[6], hops: p[7], payload })
}

pub fn put_ipv6(out: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr, next: u8, hops: u8, payload: usize) {
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload as u16).to_be_bytes());
    out.extend_from_slice(&[next, hops]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
}

/// The ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1) and `msg`.
pub fn icmp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut s = csum::sum(&src.octets(), 0);
    s = csum::sum(&dst.octets(), s);
    s += msg.len() as u64 + u64::from(PROTO_ICMPV6);
    !csum::fold(csum::sum(msg, s))
}

/// An ICMPv4 message (type, code, the 4 bytes after the checksum, the body) in an IPv4
/// frame with its checksums.
#[allow(clippy::too_many_arguments)]
pub fn icmp4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + TAG_LEN + IPV4_LEN + 8 + body.len());
    put_eth(&mut f, dst_mac, src_mac, vlan, ETHERTYPE_IPV4);
    put_ipv4(&mut f, src, dst, PROTO_ICMP, 64, 8 + body.len(), 0, 0);
    let at = f.len();
    f.extend_from_slice(&[ty, code, 0, 0]);
    f.extend_from_slice(&rest);
    f.extend_from_slice(body);
    let c = csum::checksum(&f[at..]);
    f[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    f.resize(f.len().max(60), 0);
    f
}

/// An ICMPv6 message in an IPv6 frame with its checksum.
#[allow(clippy::too_many_arguments)]
pub fn icmp6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: u16,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut msg = vec![ty, code, 0, 0];
    msg.extend_from_slice(&rest);
    msg.extend_from_slice(body);
    let c = icmp6_checksum(src, dst, &msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(ETH_LEN + TAG_LEN + IPV6_LEN + msg.len());
    put_eth(&mut f, dst_mac, src_mac, vlan, ETHERTYPE_IPV6);
    put_ipv6(&mut f, src, dst, PROTO_ICMPV6, hops, msg.len());
    f.extend_from_slice(&msg);
    f
}

/// ICMP types used.
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_UNREACH: u8 = 3;
pub const ICMP_ECHO: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// Destination unreachable codes: net, host, fragmentation needed (RFC 1191).
pub const UNREACH_NET: u8 = 0;
pub const UNREACH_HOST: u8 = 1;
pub const UNREACH_FRAG: u8 = 4;
pub const ICMP6_UNREACH: u8 = 1;
pub const ICMP6_TOO_BIG: u8 = 2;
pub const ICMP6_TIME_EXCEEDED: u8 = 3;
pub const ICMP6_ECHO: u8 = 128;
pub const ICMP6_ECHO_REPLY: u8 = 129;
pub const ND_NS: u8 = 135;
pub const ND_NA: u8 = 136;

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1) and its MAC (RFC 2464 §7).
pub fn solicited_node(a: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = a.octets();
    let ip = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]));
    (ip, multicast_mac(ip))
}

/// The Ethernet address of an IPv6 multicast group (33:33 and its last four bytes).
pub fn multicast_mac(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// A neighbour solicitation or advertisement as read (RFC 4861 §4.3, §4.4): the target
/// and the link-layer address option, if present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nd {
    pub ty: u8,
    pub target: Ipv6Addr,
    pub lladdr: Option<[u8; 6]>,
    /// NA: solicited flag.
    pub solicited: bool,
}

/// An NS or NA from an ICMPv6 message (`msg`: type onwards) with hop limit 255 (RFC 4861
/// §7.1.1: anything else may come from off-link and is ignored).
pub fn parse_nd(msg: &[u8], hops: u8) -> Option<Nd> {
    if msg.len() < 24 || hops != 255 || msg[1] != 0 || !(msg[0] == ND_NS || msg[0] == ND_NA) {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&msg[8..24]).ok()?);
    let mut lladdr = None;
    let mut at = 24;
    while at + 2 <= msg.len() {
        let (ty, len) = (msg[at], usize::from(msg[at + 1]) * 8);
        if len == 0 || at + len > msg.len() {
            return None;
        }
        // Source (NS) or target (NA) link-layer address, Ethernet.
        if (ty == 1 || ty == 2) && len >= 8 {
            lladdr = Some(msg[at + 2..at + 8].try_into().ok()?);
        }
        at += len;
    }
    Some(Nd { ty: msg[0], target, lladdr, solicited: msg[4] & 0x40 != 0 })
}

/// A neighbour solicitation for `target` from `src` (multicast to its solicited-node
/// group, or unicast to `dst` when re-validating).
pub fn ns_frame(src_mac: [u8; 6], vlan: u16, src: Ipv6Addr, target: Ipv6Addr, unicast: Option<(Ipv6Addr, [u8; 6])>) -> Vec<u8> {
    let (dst, dst_mac) = unicast.unwrap_or_else(|| solicited_node(target));
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src_mac);
    icmp6_frame(dst_mac, src_mac, vlan, src, dst, 255, ND_NS, 0, [0; 4], &body)
}

/// A solicited neighbour advertisement of `target` (ours) with our MAC, router flag set.
pub fn na_frame(dst_mac: [u8; 6], src_mac: [u8; 6], vlan: u16, target: Ipv6Addr, dst: Ipv6Addr, solicited: bool) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&src_mac);
    // Router, solicited, override.
    let flags = 0x80 | if solicited { 0x40 } else { 0 } | 0x20;
    icmp6_frame(dst_mac, src_mac, vlan, target, dst, 255, ND_NA, 0, [flags, 0, 0, 0], &body)
}

/// An IPv6 link-local address from a MAC (modified EUI-64, RFC 4291 §2.5.1).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

/// Splits an IPv4 datagram (`ip`: header without options and payload) into fragments
/// whose IP length is at most `mtu` (RFC 791: offsets in 8-byte units; every fragment
/// but the last carries MF; the first keeps the original's MF if it was itself a
/// fragment). Returns the fragments as IP packets.
pub fn fragment4(ip: &[u8], mtu: usize) -> Option<Vec<Vec<u8>>> {
    let h = parse_ipv4(ip).ok()?;
    let room = (mtu.checked_sub(h.ihl)? / 8) * 8;
    if room == 0 {
        return None;
    }
    let data = &ip[h.ihl..h.total];
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = room.min(data.len() - at);
        let last = at + n == data.len();
        let off = h.frag_off as usize + at / 8;
        let mut p = ip[..h.ihl].to_vec();
        p[2..4].copy_from_slice(&((h.ihl + n) as u16).to_be_bytes());
        let flags = if !last || h.mf { 0x2000 } else { 0 };
        p[6..8].copy_from_slice(&((flags | off as u16) & 0x3fff).to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = csum::checksum(&p[..h.ihl]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&data[at..at + n]);
        out.push(p);
        at += n;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_round_trip() {
        let a = Arp {
            op: ARP_REQUEST,
            sha: [2, 0, 0, 0, 0, 1],
            spa: Ipv4Addr::new(198, 18, 1, 1),
            tha: [0; 6],
            tpa: Ipv4Addr::new(198, 18, 1, 254),
        };
        let f = arp_frame(BROADCAST, 0, &a);
        assert_eq!(f.len(), 60);
        let e = parse_eth(&f).unwrap();
        assert_eq!((e.ethertype, e.vlan, e.l2_len), (ETHERTYPE_ARP, 0, 14));
        assert_eq!(parse_arp(&f[14..]), Some(a));
        // The bytes RFC 826 puts where: hardware type 1, protocol 0x0800, lengths 6/4, op.
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        let t = arp_frame(BROADCAST, 100, &a);
        let e = parse_eth(&t).unwrap();
        assert_eq!((e.vlan, e.l2_len), (100, 18));
        assert_eq!(parse_arp(&t[18..]), Some(a));
        assert!(parse_arp(&f[14..30]).is_none(), "short");
    }

    #[test]
    fn ipv4_checks_every_field_rfc1812_names() {
        let mut p = Vec::new();
        put_ipv4(&mut p, Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 1), PROTO_UDP, 64, 8, 7, 0x4000);
        p.extend_from_slice(&[0; 8]);
        let h = parse_ipv4(&p).unwrap();
        assert!(h.df && !h.fragment && h.ttl == 64 && h.total == 28 && h.ihl == 20);
        let mut bad = p.clone();
        bad[0] = 0x65;
        assert_eq!(parse_ipv4(&bad), Err(BadIp::Header), "version");
        let mut bad = p.clone();
        bad[0] = 0x44;
        assert_eq!(parse_ipv4(&bad), Err(BadIp::Header), "IHL below 5");
        let mut bad = p.clone();
        bad[3] = 200;
        assert_eq!(parse_ipv4(&bad), Err(BadIp::Header), "total length past the frame");
        let mut bad = p.clone();
        bad[8] = 63;
        assert_eq!(parse_ipv4(&bad), Err(BadIp::Checksum));
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let mut p = Vec::new();
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        put_ipv4(&mut p, Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8), PROTO_UDP, 9, payload.len(), 42, 0);
        p.extend_from_slice(&payload);
        let frags = fragment4(&p, 300).unwrap();
        assert_eq!(frags.len(), 4);
        let mut got = vec![0u8; payload.len()];
        for (i, f) in frags.iter().enumerate() {
            let h = parse_ipv4(f).unwrap();
            assert!(f.len() <= 300 && h.id == 42);
            assert_eq!(h.mf, i + 1 < frags.len());
            let off = usize::from(h.frag_off) * 8;
            got[off..off + f.len() - 20].copy_from_slice(&f[20..]);
        }
        assert_eq!(got, payload);
        assert!(fragment4(&p, 20).is_none());
    }

    #[test]
    fn nd_round_trip_and_checksum() {
        let mac = [2, 0, 0, 0, 0, 9];
        let me: Ipv6Addr = "2001:db8:1::fe".parse().unwrap();
        let target: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let f = ns_frame(mac, 0, me, target, None);
        let e = parse_eth(&f).unwrap();
        assert_eq!(e.dst, [0x33, 0x33, 0xff, 0, 0, 1]);
        let ip = parse_ipv6(&f[14..]).unwrap();
        assert_eq!(ip.dst, "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap());
        let msg = &f[54..54 + ip.payload];
        assert_eq!(icmp6_checksum(ip.src, ip.dst, msg), 0, "a message with its checksum sums to zero");
        assert_eq!(parse_nd(msg, ip.hops), Some(Nd { ty: ND_NS, target, lladdr: Some(mac), solicited: false }));
        assert_eq!(parse_nd(msg, 64), None, "hop limit must be 255");
        let na = na_frame([2, 0, 0, 0, 0, 1], mac, 0, me, target, true);
        let ip = parse_ipv6(&na[14..]).unwrap();
        let nd = parse_nd(&na[54..54 + ip.payload], ip.hops).unwrap();
        assert!(nd.solicited && nd.target == me && nd.lladdr == Some(mac));
        assert_eq!(link_local([0x52, 0x54, 0, 0x12, 0x34, 0x56]), "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn icmp4_frames_carry_valid_checksums() {
        let f = icmp4_frame(
            [1; 6],
            [2; 6],
            0,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            ICMP_TIME_EXCEEDED,
            0,
            [0; 4],
            &[0xab; 28],
        );
        let h = parse_ipv4(&f[14..]).unwrap();
        assert_eq!(h.proto, PROTO_ICMP);
        assert_eq!(csum::checksum(&f[34..34 + h.total - 20]), 0);
    }
}
