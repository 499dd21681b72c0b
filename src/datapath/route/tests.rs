//! The fast path's stages on crafted frames: what each check refuses, and a forwarded
//! frame's new front (addresses, tag, TTL, a checksum that still adds up).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use proptest::prelude::*;

use super::iface::{IfWire, Ifaces};
use super::lpm::{key4, key6};
use super::nexthop::{Hop, Kind, GROUP_BIT};
use super::output::Front;
use super::qsbr::Qsbr;
use super::*;
use crate::datapath::wire::csum;
use crate::datapath::wire::l3;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0xa, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0xb, 1];
const NB: [u8; 6] = [2, 0, 0, 0, 0xb, 2];

/// Frames as the heads of a burst (each whole: its first bytes are all of it).
struct Frames(Vec<Vec<u8>>);

impl Heads for Frames {
    fn for_each_frame(&self, mut f: impl FnMut(&[u8], u32)) {
        for x in &self.0 {
            f(&x[..x.len().min(64)], x.len() as u32);
        }
    }
}

/// Interface 0 on port 0 (untagged), 1 on port 1 (untagged, MTU 1000), 2 on port 1
/// VLAN 7; routes: 198.19.0.0/16 to a resolved neighbour on 1, 198.20.0.0/16 to one on
/// 2, 198.21.0.0/16 unresolved, 198.22.0.0/16 blackhole, 198.18.0.254 ours, ECMP for
/// 198.23.0.0/16, 2001:db8:2::/64 to the neighbour on 1.
fn router() -> RouteIn {
    let rt =
        Arc::new(Router::new(RouterSize { fib_groups: 256, next_hops: 64, ecmp_groups: 4, punt_buffers: 4 }, Arc::new(Qsbr::new(1)), 1));
    let ifs = Ifaces::new(&[
        IfWire { index: 0, port: 0, vlan: 0, mac: MAC_A, mtu: 1500 },
        IfWire { index: 1, port: 1, vlan: 0, mac: MAC_B, mtu: 1000 },
        IfWire { index: 2, port: 1, vlan: 7, mac: MAC_B, mtu: 1500 },
    ]);
    rt.nh.set_hop(4, Hop { kind: Kind::Forward, iface: 1, mac: NB });
    rt.nh.set_hop(5, Hop { kind: Kind::Forward, iface: 2, mac: NB });
    rt.nh.set_hop(6, Hop { kind: Kind::Resolve, iface: 1, mac: [0; 6] });
    rt.nh.set_hop(7, Hop { kind: Kind::Blackhole, iface: 0, mac: [0; 6] });
    rt.nh.set_hop(8, Hop { kind: Kind::Local, iface: 0, mac: [0; 6] });
    let v4 = |a: [u8; 4]| key4(u32::from(Ipv4Addr::from(a)));
    rt.fib4.insert(v4([198, 19, 0, 0]), 16, 4).unwrap();
    rt.fib4.insert(v4([198, 20, 0, 0]), 16, 5).unwrap();
    rt.fib4.insert(v4([198, 21, 0, 0]), 16, 6).unwrap();
    rt.fib4.insert(v4([198, 22, 0, 0]), 16, 7).unwrap();
    rt.fib4.insert(v4([198, 18, 0, 254]), 32, 8).unwrap();
    rt.nh.set_group(0, &[4, 5]);
    rt.fib4.insert(v4([198, 23, 0, 0]), 16, GROUP_BIT).unwrap();
    rt.fib6.insert(key6("2001:db8:2::".parse::<Ipv6Addr>().unwrap().octets()), 64, 4).unwrap();
    RouteIn { router: rt, ifs: Arc::new(ifs), vxlan: None }
}

/// An IPv4/UDP frame to us (MAC A) of `len` IP bytes.
fn v4_frame(dst: [u8; 4], ttl: u8, ip_len: usize, vlan: u16) -> Vec<u8> {
    let mut f = Vec::new();
    l3::put_eth(&mut f, MAC_A, [2, 0, 0, 0, 0, 9], vlan, l3::ETHERTYPE_IPV4);
    l3::put_ipv4(&mut f, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::from(dst), l3::PROTO_UDP, ttl, ip_len - 20, 1, 0);
    f.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    f.resize(f.len() + ip_len - 24, 0xee);
    f
}

fn decide(r: &RouteIn, frames: Vec<Vec<u8>>) -> Vec<Verdict> {
    let mut s = Box::<Scratch>::default();
    let n = decide_burst(r, 0, &Frames(frames), &mut s);
    s.verdicts[..n].to_vec()
}

/// The frame after its front is applied (as the mbuf path does).
fn applied(frame: &[u8], f: &Front) -> Vec<u8> {
    let mut out = f.head[..usize::from(f.n)].to_vec();
    out.extend_from_slice(&frame[usize::from(f.cut)..]);
    out
}

#[test]
fn a_forwarded_frame_gets_new_addresses_ttl_and_a_valid_checksum() {
    let r = router();
    let f = v4_frame([198, 19, 1, 2], 64, 100, 0);
    let v = decide(&r, vec![f.clone()]);
    let Verdict::Fwd(o) = v[0] else { panic!("{v:?}") };
    assert_eq!(o.port, 1);
    let out = applied(&f, &o.front);
    let e = l3::parse_eth(&out).unwrap();
    assert_eq!((e.dst, e.src, e.vlan), (NB, MAC_B, 0));
    let ip = l3::parse_ipv4(&out[14..]).expect("the header still checks, checksum included");
    assert_eq!(ip.ttl, 63);
    assert_eq!(&out[14 + 12..], &f[14 + 12..], "nothing past the TTL and checksum changes");
    // To the VLAN sub-interface: a tag is pushed.
    let f = v4_frame([198, 20, 1, 2], 9, 100, 0);
    let Verdict::Fwd(o) = decide(&r, vec![f.clone()])[0] else { panic!() };
    let out = applied(&f, &o.front);
    let e = l3::parse_eth(&out).unwrap();
    assert_eq!((e.vlan, e.l2_len, out.len()), (7, 18, f.len() + 4));
    assert_eq!(l3::parse_ipv4(&out[18..]).unwrap().ttl, 8);
}

#[test]
fn every_check_refuses_by_its_cause() {
    let r = router();
    let good = v4_frame([198, 19, 1, 2], 64, 100, 0);
    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 1;
    let mut bad_ver = good.clone();
    bad_ver[14] = 0x55;
    let mut short_len = good.clone();
    short_len[14 + 2..14 + 4].copy_from_slice(&200u16.to_be_bytes());
    let martian = v4_frame([127, 0, 0, 1], 64, 100, 0);
    let mut other_mac = good.clone();
    other_mac[..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    let arp = l3::arp_frame(
        l3::BROADCAST,
        0,
        &l3::Arp { op: 1, sha: [2, 0, 0, 0, 0, 9], spa: Ipv4Addr::new(198, 18, 0, 1), tha: [0; 6], tpa: Ipv4Addr::new(198, 18, 0, 254) },
    );
    let mut ipx = good.clone();
    ipx[12..14].copy_from_slice(&0x8137u16.to_be_bytes());
    let frames = vec![
        bad_sum,
        bad_ver,
        short_len,
        martian,
        other_mac,
        arp,
        ipx,
        v4_frame([198, 19, 1, 2], 1, 100, 0),
        v4_frame([203, 0, 113, 1], 64, 100, 0),
        v4_frame([198, 21, 1, 1], 64, 100, 0),
        v4_frame([198, 22, 1, 1], 64, 100, 0),
        v4_frame([198, 18, 0, 254], 1, 100, 0),
        v4_frame([198, 19, 1, 2], 64, 1200, 0),
        vec![0u8; 10],
        v4_frame([198, 19, 1, 2], 64, 100, 5),
    ];
    let v = decide(&r, frames);
    use crate::datapath::stats::DropCause as D;
    assert_eq!(
        v,
        vec![
            Verdict::Drop(D::IpChecksum),
            Verdict::Drop(D::IpHeader),
            Verdict::Drop(D::IpHeader),
            Verdict::Drop(D::Martian),
            Verdict::Drop(D::NotForUs),
            Verdict::Punt(Why::Arp, 0),
            Verdict::Drop(D::Unsupported),
            Verdict::Punt(Why::TtlExceeded, 0),
            Verdict::Punt(Why::NoRoute, 0),
            Verdict::Punt(Why::Resolve(6), 0),
            Verdict::Drop(D::Blackhole),
            // Ours: delivered even with TTL 1.
            Verdict::Punt(Why::Local, 0),
            // DF clear in these frames: fragmented by the slow path.
            Verdict::Punt(Why::Fragment(4), 0),
            Verdict::Drop(D::Runt),
            // VLAN 5 has no sub-interface on port 0.
            Verdict::Drop(D::NotForUs),
        ]
    );
    let mut df = v4_frame([198, 19, 1, 2], 64, 1200, 0);
    df[14 + 6] = 0x40;
    df[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = csum::checksum(&df[14..34]);
    df[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(decide(&r, vec![df]), vec![Verdict::Punt(Why::TooBig(1000), 0)]);
}

#[test]
fn ipv6_forwards_with_the_hop_limit_down_and_ecmp_spreads_flows() {
    let r = router();
    let mut f = Vec::new();
    l3::put_eth(&mut f, MAC_A, [2, 0, 0, 0, 0, 9], 0, l3::ETHERTYPE_IPV6);
    l3::put_ipv6(&mut f, "2001:db8:1::1".parse().unwrap(), "2001:db8:2::7".parse().unwrap(), l3::PROTO_UDP, 5, 16);
    f.extend_from_slice(&[0u8; 16]);
    let Verdict::Fwd(o) = decide(&r, vec![f.clone()])[0] else { panic!() };
    let out = applied(&f, &o.front);
    assert_eq!(l3::parse_ipv6(&out[14..]).unwrap().hops, 4);
    assert_eq!(&out[..6], &NB);
    // ECMP: flows (source ports) land on both members, each flow always on one.
    let mut seen = std::collections::HashSet::new();
    for sport in 0..64u16 {
        let mut f = v4_frame([198, 23, 0, 1], 64, 100, 0);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        let a = decide(&r, vec![f.clone()]);
        assert_eq!(a, decide(&r, vec![f]), "one flow, one next hop");
        if let Verdict::Fwd(o) = a[0] {
            seen.insert(o.front.head[..6].iter().copied().chain([o.port as u8, o.front.n]).collect::<Vec<_>>());
        }
    }
    assert_eq!(seen.len(), 2, "both members carry flows: {seen:?}");
}

proptest! {
    /// Arbitrary bytes never panic the stages, and anything forwarded is a frame whose
    /// IPv4 header still checks after its front is applied.
    #[test]
    fn arbitrary_frames_are_refused_or_forwarded_well(mut b in prop::collection::vec(any::<u8>(), 0..120), dst in any::<u32>(), mac_ok in any::<bool>()) {
        let r = router();
        if mac_ok && b.len() >= 14 {
            b[..6].copy_from_slice(&MAC_A);
        }
        let _ = decide(&r, vec![b.clone()]);
        // And a well-formed header with arbitrary destination, TTL and tail.
        let mut f = v4_frame(dst.to_be_bytes(), (dst >> 24) as u8, 60, 0);
        f.extend_from_slice(&b);
        for v in decide(&r, vec![f.clone()]) {
            if let Verdict::Fwd(o) = v {
                let out = applied(&f, &o.front);
                let l2 = l3::parse_eth(&out).unwrap().l2_len;
                prop_assert!(l3::parse_ipv4(&out[l2..]).is_ok());
            }
        }
    }

    /// RFC 1624's incremental update equals a full recomputation for any header and TTL.
    #[test]
    fn ttl_update_matches_recomputation(hdr in prop::collection::vec(any::<u8>(), 20), ttl in 2u8..=255) {
        let mut h = hdr.clone();
        h[0] = 0x45;
        h[8] = ttl;
        h[10..12].copy_from_slice(&[0, 0]);
        let c = csum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let upd = csum::update16(c, u16::from_be_bytes([ttl, h[9]]), u16::from_be_bytes([ttl - 1, h[9]]));
        let mut full = h.clone();
        full[8] = ttl - 1;
        full[10..12].copy_from_slice(&[0, 0]);
        let c2 = csum::checksum(&full);
        // One's complement has two zeros: compare by validity of the result.
        full[10..12].copy_from_slice(&upd.to_be_bytes());
        prop_assert!(csum::header_ok(&full), "update {upd:04x} vs recomputed {c2:04x}");
    }
}
