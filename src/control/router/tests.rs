//! The router's control plane and slow path without a data plane: addresses and routes
//! into the FIB, and frames handed up (as workers would) answered with frames handed
//! down (read back from the queues a worker would send from).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use super::neigh::Timing;
use super::*;
use crate::datapath::route::nexthop::Kind;
use crate::datapath::route::punt::Punted;
use crate::datapath::route::qsbr::Qsbr;
use crate::datapath::route::{RouterSize, Why};
use crate::datapath::wire::{csum, l3};

const HOST_A: [u8; 6] = [2, 0, 0, 0, 1, 1];
const HOST_B: [u8; 6] = [2, 0, 0, 0, 2, 1];

fn ctl() -> RouterCtl {
    let rt =
        Arc::new(Router::new(RouterSize { fib_groups: 4096, next_hops: 256, ecmp_groups: 8, punt_buffers: 64 }, Arc::new(Qsbr::new(1)), 1));
    let mut c = RouterCtl::new(rt, Timing::default());
    c.add_addr("a", 0, 0, "198.18.1.254".parse().unwrap(), 24, None).unwrap();
    c.add_addr("b", 0, 1, "198.18.2.254".parse().unwrap(), 24, Some(1000)).unwrap();
    c
}

/// Frames handed down to the worker since the last call: (port, frame).
fn sent(c: &RouterCtl) -> Vec<(u16, Vec<u8>)> {
    let mut v = Vec::new();
    while let Some(i) = c.rt.punt.next_down(0) {
        v.push((i.port, i.frame.clone()));
        c.rt.punt.recycle(i.frame);
    }
    v
}

fn punt(c: &mut RouterCtl, why: Why, port: u16, iface: u16, frame: Vec<u8>) {
    c.handle(Punted { why, port, iface, frame });
}

fn udp(src: [u8; 4], dst: [u8; 4], ttl: u8, dst_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    l3::put_eth(&mut f, dst_mac, HOST_A, 0, l3::ETHERTYPE_IPV4);
    l3::put_ipv4(&mut f, Ipv4Addr::from(src), Ipv4Addr::from(dst), l3::PROTO_UDP, ttl, 16, 9, 0);
    f.extend_from_slice(&[0x10, 0x00, 0x20, 0x00, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    f
}

/// Answers a pending ARP request for `who` on interface `iface` with `mac`.
fn answer(c: &mut RouterCtl, iface: u16, who: [u8; 4], mac: [u8; 6]) {
    let me = c.iface(iface).unwrap().mac;
    let r = l3::Arp { op: l3::ARP_REPLY, sha: mac, spa: Ipv4Addr::from(who), tha: me, tpa: Ipv4Addr::new(198, 18, 2, 254) };
    punt(c, Why::Arp, iface, iface, l3::arp_frame(me, 0, &r));
}

#[test]
fn addresses_install_local_and_connected_routes_and_refuse_overlaps() {
    let mut c = ctl();
    assert_eq!(c.rt.fib4.lookup4(u32::from(Ipv4Addr::new(198, 18, 1, 254))), Some(NH_LOCAL));
    let glean = c.rt.fib4.lookup4(u32::from(Ipv4Addr::new(198, 18, 1, 7))).unwrap();
    assert_eq!(c.rt.nh.hop(glean).kind, Kind::Glean);
    assert!(c.add_addr("c", 0, 2, "198.18.1.1".parse().unwrap(), 24, None).unwrap_err().contains("overlaps"));
    assert!(c.add_route(Prefix::of("198.18.1.0".parse().unwrap(), 24), &RouteTarget::Blackhole).unwrap_err().contains("subnet"));
    assert!(c
        .add_route(Prefix::of("198.19.0.0".parse().unwrap(), 16), &RouteTarget::Via(vec![("203.0.113.1".parse().unwrap(), None)]))
        .unwrap_err()
        .contains("no interface's subnet"));
    // The gratuitous ARPs of the two addresses went out.
    let s = sent(&c);
    assert_eq!(s.len(), 2);
    let a = l3::parse_arp(&s[0].1[14..]).unwrap();
    assert_eq!((a.spa, a.tpa, s[0].0), (Ipv4Addr::new(198, 18, 1, 254), Ipv4Addr::new(198, 18, 1, 254), 0));
    c.del_addr("b", 0, "198.18.2.254".parse().unwrap(), 24).unwrap();
    assert_eq!(c.rt.fib4.lookup4(u32::from(Ipv4Addr::new(198, 18, 2, 7))), None);
    assert!(c.iface_by_name("b", 0).is_none(), "the interface went with its last address");
}

#[test]
fn a_gateway_is_resolved_and_held_packets_go_out_with_ttl_down() {
    let mut c = ctl();
    sent(&c);
    c.add_route(Prefix::of("198.19.0.0".parse().unwrap(), 16), &RouteTarget::Via(vec![("198.18.2.1".parse().unwrap(), None)])).unwrap();
    // Adding the route asks for the gateway at once.
    let s = sent(&c);
    assert_eq!(s.len(), 1);
    let q = l3::parse_arp(&s[0].1[14..]).unwrap();
    assert_eq!((q.op, q.tpa, s[0].0), (l3::ARP_REQUEST, Ipv4Addr::new(198, 18, 2, 1), 1));
    let nh = c.rt.fib4.lookup4(u32::from(Ipv4Addr::new(198, 19, 5, 5))).unwrap();
    assert_eq!(c.rt.nh.hop(nh).kind, Kind::Resolve);
    // A packet arrives meanwhile: held.
    let a_mac = c.iface(0).unwrap().mac;
    punt(&mut c, Why::Resolve(nh), 0, 0, udp([10, 0, 0, 1], [198, 19, 5, 5], 64, a_mac));
    assert!(sent(&c).is_empty());
    assert_eq!(c.neigh.get(1, "198.18.2.1".parse().unwrap()).unwrap().pending.len(), 1);
    answer(&mut c, 1, [198, 18, 2, 1], HOST_B);
    let hop = c.rt.nh.hop(nh);
    assert_eq!((hop.kind, hop.mac, hop.iface), (Kind::Forward, HOST_B, 1));
    let s = sent(&c);
    assert_eq!(s.len(), 1, "the held packet");
    let e = l3::parse_eth(&s[0].1).unwrap();
    assert_eq!((e.dst, e.src), (HOST_B, c.iface(1).unwrap().mac));
    let ip = l3::parse_ipv4(&s[0].1[14..]).expect("checksum updated");
    assert_eq!((ip.ttl, ip.dst), (63, Ipv4Addr::new(198, 19, 5, 5)));
    // The route cannot outlive its use of the neighbour.
    assert!(c.del_neigh("b", 0, "198.18.2.1".parse().unwrap()).unwrap_err().contains("gateway"));
}

#[test]
fn a_neighbour_that_never_answers_drops_what_waits_and_counts_it() {
    let mut c = ctl();
    // The sender is known, so the ICMP errors about its packets go out at once.
    c.add_static_neigh("a", 0, "198.18.1.1".parse().unwrap(), HOST_A).unwrap();
    sent(&c);
    let out = c.iface(0).unwrap().mac;
    // A host of a connected subnet (glean): entry, host route, held packets.
    let glean = c.iface(1).unwrap().glean;
    for i in 0..20 {
        punt(&mut c, Why::Glean(1), 0, 0, udp([198, 18, 1, 1], [198, 18, 2, 9], 64, out));
        let _ = i;
    }
    let n = c.neigh.get(1, "198.18.2.9".parse().unwrap()).unwrap();
    assert_eq!(n.pending.len(), c.neigh.timing.pending, "bounded");
    assert_eq!(c.stats.drops.get("neigh_queue_full"), Some(&(20 - c.neigh.timing.pending as u64)));
    assert_ne!(c.rt.fib4.lookup4(u32::from(Ipv4Addr::new(198, 18, 2, 9))), Some(glean), "a host route now");
    // Three requests, then failure: what waited is dropped, ICMP host unreachable sent.
    let t0 = Instant::now();
    for s in 0..5u64 {
        c.tick(t0 + std::time::Duration::from_millis(1100 * s));
    }
    let st = c.neigh.get(1, "198.18.2.9".parse().unwrap()).unwrap().state;
    assert_eq!(st, neigh::State::Failed);
    assert_eq!(c.stats.drops.get("neigh_failed"), Some(&(c.neigh.timing.pending as u64)));
    let s = sent(&c);
    let asks = s
        .iter()
        .filter(|(_, f)| l3::parse_arp(&f[14..]).is_some_and(|a| a.op == l3::ARP_REQUEST && a.tpa == Ipv4Addr::new(198, 18, 2, 9)))
        .count();
    assert_eq!(asks, 3);
    assert!(s
        .iter()
        .any(|(_, f)| l3::parse_ipv4(&f[14..]).is_ok_and(|h| h.proto == l3::PROTO_ICMP) && f[34] == l3::ICMP_UNREACH && f[35] == 1));
}

#[test]
fn icmp_errors_echo_and_arp_replies() {
    let mut c = ctl();
    sent(&c);
    let me = c.iface(0).unwrap().mac;
    // The sender is a resolved neighbour, so the answers go out at once.
    c.add_static_neigh("a", 0, "198.18.1.1".parse().unwrap(), HOST_A).unwrap();
    // TTL exceeded: ICMP 11 from our address, quoting the header and 8 bytes.
    let f = udp([198, 18, 1, 1], [198, 19, 1, 1], 1, me);
    punt(&mut c, Why::TtlExceeded, 0, 0, f.clone());
    let s = sent(&c);
    assert_eq!(s.len(), 1);
    let ip = l3::parse_ipv4(&s[0].1[14..]).unwrap();
    assert_eq!((ip.src, ip.dst, ip.proto), (Ipv4Addr::new(198, 18, 1, 254), Ipv4Addr::new(198, 18, 1, 1), l3::PROTO_ICMP));
    let icmp = &s[0].1[34..14 + ip.total];
    assert_eq!((icmp[0], icmp[1]), (l3::ICMP_TIME_EXCEEDED, 0));
    assert_eq!(csum::checksum(icmp), 0);
    assert_eq!(&icmp[8..8 + 28], &f[14..14 + 28], "the original header and 8 bytes");
    // Too big with DF: fragmentation needed with the MTU.
    punt(&mut c, Why::TooBig(1000), 0, 0, udp([198, 18, 1, 1], [198, 19, 1, 1], 64, me));
    let s = sent(&c);
    assert_eq!((s[0].1[34], s[0].1[35], u16::from_be_bytes([s[0].1[40], s[0].1[41]])), (l3::ICMP_UNREACH, l3::UNREACH_FRAG, 1000));
    // No ICMP error about an ICMP error.
    let mut e = s[0].1.clone();
    e[0..6].copy_from_slice(&me);
    punt(&mut c, Why::NoRoute, 0, 0, e);
    assert!(sent(&c).is_empty());
    // Echo request to our address: reply.
    let mut ping = Vec::new();
    l3::put_eth(&mut ping, me, HOST_A, 0, l3::ETHERTYPE_IPV4);
    l3::put_ipv4(&mut ping, Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 1, 254), l3::PROTO_ICMP, 64, 12, 5, 0);
    let mut m = vec![l3::ICMP_ECHO, 0, 0, 0, 0, 1, 0, 2, b'p', b'i', b'n', b'g'];
    let ck = csum::checksum(&m);
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    ping.extend_from_slice(&m);
    punt(&mut c, Why::Local, 0, 0, ping);
    let s = sent(&c);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1[34], l3::ICMP_ECHO_REPLY);
    assert_eq!(&s[0].1[38..46], &[0, 1, 0, 2, b'p', b'i', b'n', b'g']);
    assert_eq!(csum::checksum(&s[0].1[34..46]), 0);
    // ARP request for our address: reply from our MAC.
    let q =
        l3::Arp { op: l3::ARP_REQUEST, sha: HOST_A, spa: Ipv4Addr::new(198, 18, 1, 1), tha: [0; 6], tpa: Ipv4Addr::new(198, 18, 1, 254) };
    punt(&mut c, Why::Arp, 0, 0, l3::arp_frame(l3::BROADCAST, 0, &q));
    let s = sent(&c);
    let a = l3::parse_arp(&s[0].1[14..]).unwrap();
    assert_eq!((a.op, a.sha, a.spa, &s[0].1[..6]), (l3::ARP_REPLY, me, Ipv4Addr::new(198, 18, 1, 254), &HOST_A[..]));
    // Not ours: no reply.
    let q = l3::Arp { tpa: Ipv4Addr::new(198, 18, 1, 99), ..q };
    punt(&mut c, Why::Arp, 0, 0, l3::arp_frame(l3::BROADCAST, 0, &q));
    assert!(sent(&c).is_empty());
}

#[test]
fn ecmp_routes_share_groups_and_loads_are_all_or_nothing() {
    let mut c = ctl();
    let two = RouteTarget::Via(vec![("198.18.1.1".parse().unwrap(), None), ("198.18.2.1".parse().unwrap(), None)]);
    c.add_route(Prefix::of("10.0.0.0".parse().unwrap(), 8), &two).unwrap();
    c.add_route(Prefix::of("11.0.0.0".parse().unwrap(), 8), &two).unwrap();
    let v = c.routes[&Prefix::of("10.0.0.0".parse().unwrap(), 8)].value;
    assert_eq!(v, c.routes[&Prefix::of("11.0.0.0".parse().unwrap(), 8)].value, "one group for one member set");
    assert!(v & GROUP_BIT != 0);
    let members: std::collections::BTreeSet<u32> = c.rt.nh.buckets(v & !GROUP_BIT).into_iter().collect();
    assert_eq!(members.len(), 2);
    // A route file with a bad gateway midway: nothing of it stays.
    let rc = Arc::new(std::sync::Mutex::new(c));
    let e = load::load(&rc, "r.txt", "12.0.0.0/8 via:198.18.1.1\n13.0.0.0/8 via:203.0.113.9\n", false).unwrap_err();
    assert!(e.contains("route 2 of 2") && e.contains("undone"), "{e}");
    let c = rc.lock().unwrap();
    assert!(!c.routes.contains_key(&Prefix::of("12.0.0.0".parse().unwrap(), 8)));
    assert_eq!(c.rt.fib4.lookup4(u32::from(Ipv4Addr::new(12, 1, 1, 1))), None);
    let _ = IpAddr::V4(Ipv4Addr::LOCALHOST);
}
