//! The mirror against a router without a data plane: kernel messages (recorded
//! fixtures and built ones) in, routes of origin `linux` out, conflicts resolved as the
//! module says.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::msg::{self, Msg, NexthopMsg, RouteMsg};
use super::*;
use crate::control::router::neigh::Timing;
use crate::datapath::route::qsbr::Qsbr;
use crate::datapath::route::{Router, RouterSize};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Interfaces a (198.18.1.254/24) and b (198.18.2.254/24) with twins of Linux index 11
/// and 12.
fn ctl() -> RouterCtl {
    let rt =
        Arc::new(Router::new(RouterSize { fib_groups: 4096, next_hops: 256, ecmp_groups: 8, punt_buffers: 64 }, Arc::new(Qsbr::new(1)), 1));
    let mut c = RouterCtl::new(rt, Timing::default());
    c.add_addr("a", 0, 0, ip("198.18.1.254"), 24, None).unwrap();
    c.add_addr("b", 0, 1, ip("198.18.2.254"), 24, None).unwrap();
    c.map_twin(0, 11);
    c.map_twin(1, 12);
    c
}

fn route(dst: &str, len: u8, gw: Option<&str>, oif: u32) -> RouteMsg {
    RouteMsg {
        dst: ip(dst),
        len,
        table: msg::RT_TABLE_MAIN,
        kind: msg::RTN_UNICAST,
        protocol: 4,
        oif: Some(oif),
        gateway: gw.map(ip),
        multipath: Vec::new(),
        nh_id: None,
        metric: 0,
    }
}

fn origin(c: &RouterCtl, p: &str, len: u8) -> Option<&'static str> {
    c.routes.get(&Prefix::of(ip(p), len)).map(|r| r.origin.name())
}

fn lookup(c: &RouterCtl, a: &str) -> Option<u32> {
    let IpAddr::V4(a) = ip(a) else { return None };
    c.rt.fib4.lookup4(u32::from(a))
}

#[test]
fn add_and_delete_follow_linux() {
    let mut c = ctl();
    let mut m = Mirror::new(msg::RT_TABLE_MAIN);
    m.apply(&mut c, Msg::Route(true, route("198.19.77.0", 24, Some("198.18.2.1"), 12)));
    assert_eq!(origin(&c, "198.19.77.0", 24), Some("linux"));
    assert!(lookup(&c, "198.19.77.9").is_some());
    m.apply(&mut c, Msg::Route(false, route("198.19.77.0", 24, Some("198.18.2.1"), 12)));
    assert_eq!(origin(&c, "198.19.77.0", 24), None);
    assert_eq!(lookup(&c, "198.19.77.9"), None);
    assert_eq!(c.stats.linux.get("routes_installed"), Some(&1));
    assert_eq!(c.stats.linux.get("routes_removed"), Some(&1));
}

#[test]
fn recorded_kernel_messages_program_the_router() {
    // The fixtures' interfaces: t0 and t1 are the twins of a and b (their indices read
    // from the messages themselves).
    let rd = |n: &str| std::fs::read(format!("{}/tests/fixtures/netlink/{n}.bin", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let via = msg::decode(&rd("route-via"));
    let Some(Ok(Msg::Route(_, r))) = via.first() else { panic!() };
    let t1 = r.oif.unwrap();
    let mp = msg::decode(&rd("route-multipath"));
    let Some(Ok(Msg::Route(_, r))) = mp.first() else { panic!() };
    let t0 = r.multipath[0].1;
    let rt =
        Arc::new(Router::new(RouterSize { fib_groups: 4096, next_hops: 256, ecmp_groups: 8, punt_buffers: 64 }, Arc::new(Qsbr::new(1)), 1));
    let c = Arc::new(Mutex::new(RouterCtl::new(rt, Timing::default())));
    {
        let mut g = c.lock().unwrap();
        g.add_addr("a", 0, 0, ip("198.18.1.254"), 24, None).unwrap();
        g.add_addr("b", 0, 1, ip("198.18.2.254"), 24, None).unwrap();
        g.map_twin(0, t0);
        g.map_twin(1, t1);
    }
    let mut m = Mirror::new(msg::RT_TABLE_MAIN);
    for f in ["route-via", "route-multipath", "route-blackhole", "neigh-permanent", "nexthop", "route-nhid"] {
        apply_datagram(&mut m, &c, &rd(f));
    }
    let g = c.lock().unwrap();
    assert_eq!(origin(&g, "198.19.77.0", 24), Some("linux"));
    assert_eq!(origin(&g, "198.19.79.0", 24), Some("linux"));
    assert_eq!(origin(&g, "198.19.80.0", 24), Some("linux"), "through next-hop object 7");
    match &g.routes[&Prefix::of(ip("198.19.78.0"), 24)].origin {
        Origin::Linux(RouteTarget::Via(gws)) => assert_eq!(gws.len(), 2, "ECMP over a and b"),
        o => panic!("{o:?}"),
    }
    let n = g.neigh.get(1, ip("198.18.2.7")).expect("the permanent neighbour");
    assert!(n.is_static);
    assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 7]));
    assert_eq!(g.stats.linux.get("malformed"), None);
}

#[test]
fn static_routes_win_and_foreign_interfaces_are_skipped() {
    let mut c = ctl();
    let mut m = Mirror::new(msg::RT_TABLE_MAIN);
    c.add_route(Prefix::of(ip("198.19.1.0"), 24), &RouteTarget::Blackhole).unwrap();
    m.apply(&mut c, Msg::Route(true, route("198.19.1.0", 24, Some("198.18.2.1"), 12)));
    assert_eq!(origin(&c, "198.19.1.0", 24), Some("static"));
    assert_eq!(c.stats.linux.get("routes_shadowed"), Some(&1));
    // Linux deleting its copy leaves the static route alone.
    m.apply(&mut c, Msg::Route(false, route("198.19.1.0", 24, Some("198.18.2.1"), 12)));
    assert_eq!(origin(&c, "198.19.1.0", 24), Some("static"));
    // ctl cannot delete a Linux route; a static one replaces it.
    m.apply(&mut c, Msg::Route(true, route("198.19.2.0", 24, Some("198.18.2.1"), 12)));
    assert!(c.del_route(Prefix::of(ip("198.19.2.0"), 24)).unwrap_err().contains("ip route del"));
    c.add_route(Prefix::of(ip("198.19.2.0"), 24), &RouteTarget::Unreachable).unwrap();
    assert_eq!(origin(&c, "198.19.2.0", 24), Some("static"));
    // Through the machine's own interface (index 2), another table, a connected route.
    m.apply(&mut c, Msg::Route(true, route("198.19.3.0", 24, Some("10.0.0.1"), 2)));
    let mut other = route("198.19.4.0", 24, Some("198.18.2.1"), 12);
    other.table = 100;
    m.apply(&mut c, Msg::Route(true, other));
    m.apply(&mut c, Msg::Route(true, route("198.18.1.0", 24, None, 11)));
    assert_eq!(origin(&c, "198.19.3.0", 24), None);
    assert_eq!(origin(&c, "198.19.4.0", 24), None);
    assert_eq!(origin(&c, "198.18.1.0", 24), Some("connected"));
    assert_eq!(c.stats.linux.get("skipped_foreign_interface"), Some(&1));
    assert_eq!(c.stats.linux.get("skipped_other_table"), Some(&1));
    assert_eq!(c.stats.linux.get("skipped_connected"), Some(&1));
}

#[test]
fn nexthop_object_changes_move_their_routes() {
    let mut c = ctl();
    let mut m = Mirror::new(msg::RT_TABLE_MAIN);
    let nh = |id, gw: &str, oif| NexthopMsg { id, oif: Some(oif), gateway: Some(ip(gw)), blackhole: false, group: Vec::new() };
    m.apply(&mut c, Msg::Nexthop(true, nh(5, "198.18.2.1", 12)));
    let mut r = route("198.19.9.0", 24, None, 0);
    r.oif = None;
    r.nh_id = Some(5);
    m.apply(&mut c, Msg::Route(true, r));
    let gw = |c: &RouterCtl| match &c.routes[&Prefix::of(ip("198.19.9.0"), 24)].origin {
        Origin::Linux(RouteTarget::Via(g)) => g[0].0,
        o => panic!("{o:?}"),
    };
    assert_eq!(gw(&c), ip("198.18.2.1"));
    m.apply(&mut c, Msg::Nexthop(true, nh(5, "198.18.1.1", 11)));
    assert_eq!(gw(&c), ip("198.18.1.1"), "the route follows its next-hop object");
    m.apply(&mut c, Msg::Nexthop(false, nh(5, "198.18.1.1", 11)));
    assert_eq!(origin(&c, "198.19.9.0", 24), None, "gone with its next hop");
}

#[test]
fn a_resync_removes_what_linux_no_longer_has() {
    let mut c = ctl();
    let mut m = Mirror::new(msg::RT_TABLE_MAIN);
    m.apply(&mut c, Msg::Route(true, route("198.19.10.0", 24, Some("198.18.2.1"), 12)));
    m.apply(&mut c, Msg::Route(true, route("198.19.11.0", 24, Some("198.18.2.1"), 12)));
    // The dump after an overrun holds only .11.
    m.seen = Some(Default::default());
    m.apply(&mut c, Msg::Route(true, route("198.19.11.0", 24, Some("198.18.2.1"), 12)));
    m.end_resync(&mut c);
    assert_eq!(origin(&c, "198.19.10.0", 24), None);
    assert_eq!(origin(&c, "198.19.11.0", 24), Some("linux"));
}

#[test]
fn table_argument() {
    assert_eq!(parse_table("main"), Ok(254));
    assert_eq!(parse_table("100"), Ok(100));
    for bad in ["0", "x", "local", "-1"] {
        assert!(parse_table(bad).is_err(), "{bad}");
    }
}
