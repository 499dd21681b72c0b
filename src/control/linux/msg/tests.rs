//! Decoding checked against what the kernel really sent (fixtures recorded by
//! scripts/netlink-fixtures.py in a namespace: t0 and t1 are veths with 198.18.1.254/24
//! and 198.18.2.254/24), and against garbage.

use super::*;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<Msg> {
    let p = format!("{}/tests/fixtures/netlink/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    decode(&b).into_iter().map(|m| m.unwrap_or_else(|e| panic!("{name}: {e}"))).collect()
}

fn routes(name: &str) -> Vec<(bool, RouteMsg)> {
    fixture(name).into_iter().filter_map(|m| if let Msg::Route(a, r) = m { Some((a, r)) } else { None }).collect()
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn route_via_gateway() {
    let r = routes("route-via");
    assert_eq!(r.len(), 1);
    let (add, r) = &r[0];
    assert!(*add);
    assert_eq!((r.dst, r.len, r.table, r.kind), (v4("198.19.77.0"), 24, RT_TABLE_MAIN, RTN_UNICAST));
    assert_eq!(r.gateway, Some(v4("198.18.2.1")));
    assert!(r.oif.is_some_and(|i| i > 0));
    assert!(r.multipath.is_empty() && r.nh_id.is_none());
}

#[test]
fn multipath_route_has_both_paths() {
    let r = routes("route-multipath");
    let (_, r) = &r[0];
    assert_eq!((r.dst, r.len), (v4("198.19.78.0"), 24));
    let gws: Vec<_> = r.multipath.iter().map(|p| p.0).collect();
    assert_eq!(gws, vec![Some(v4("198.18.1.1")), Some(v4("198.18.2.1"))]);
    assert!(r.multipath[0].1 != r.multipath[1].1, "two interfaces");
}

#[test]
fn blackhole_ipv6_and_delete() {
    let b = &routes("route-blackhole")[0].1;
    assert_eq!((b.dst, b.len, b.kind, b.gateway), (v4("198.19.79.0"), 24, RTN_BLACKHOLE, None));
    let six = routes("route-v6");
    let r = six.iter().find(|(_, r)| r.len == 48).expect("the /48 in the v6 fixture");
    assert_eq!(r.1.dst, v4("2001:db8:77::"));
    assert_eq!(r.1.gateway, Some(v4("2001:db8:1::1")));
    let d = routes("route-del");
    assert!(d.iter().any(|(add, r)| !add && r.dst == v4("198.19.77.0") && r.len == 24));
}

#[test]
fn neighbour_and_nexthop_objects() {
    let n = fixture("neigh-permanent");
    let n = n.iter().find_map(|m| if let Msg::Neigh(true, n) = m { Some(n.clone()) } else { None }).expect("a neighbour");
    assert_eq!(n.addr, v4("198.18.2.7"));
    assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 7]));
    assert_eq!(n.state & NUD_PERMANENT, NUD_PERMANENT);
    let h = fixture("nexthop");
    let Some(Msg::Nexthop(true, h)) = h.first() else { panic!("{h:?}") };
    assert_eq!((h.id, h.gateway, h.blackhole), (7, Some(v4("198.18.2.1")), false));
    let r = &routes("route-nhid")[0].1;
    assert_eq!((r.dst, r.nh_id), (v4("198.19.80.0"), Some(7)));
}

#[test]
fn truncated_messages_are_errors_not_panics() {
    // Each of these fixtures holds exactly one message: any shorter prefix is malformed.
    for name in ["route-via", "route-multipath", "route-blackhole", "neigh-permanent", "nexthop", "route-nhid"] {
        let p = format!("{}/tests/fixtures/netlink/{name}.bin", env!("CARGO_MANIFEST_DIR"));
        let b = std::fs::read(&p).unwrap();
        assert_eq!(decode(&b).len(), 1, "{name}");
        for cut in 1..b.len() {
            assert!(decode(&b[..cut]).iter().any(Result::is_err), "{name} cut at {cut}");
        }
        // The first attribute's length run past the message's end.
        let mut bad = b.clone();
        bad[16 + 12] = 0xff;
        bad[16 + 13] = 0x00;
        if name == "nexthop" {
            bad = b.clone();
            bad[16 + 8] = 0xff;
            bad[16 + 9] = 0;
        }
        assert!(decode(&bad).iter().any(Result::is_err), "{name}: an attribute past the end must be an error");
    }
}

#[test]
fn dump_request_is_a_well_formed_header() {
    let m = dump_request(RTM_GETROUTE, 9);
    assert_eq!(m.len(), 28);
    assert_eq!(u32_at(&m, 0), Some(28));
    assert_eq!(u16_at(&m, 4), Some(RTM_GETROUTE));
    assert_eq!(u16_at(&m, 6), Some(0x301));
    assert_eq!(u32_at(&m, 8), Some(9));
}

proptest! {
    /// Anything at all: decoded or refused, never a panic, never more messages than
    /// 16-byte headers fit.
    #[test]
    fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let out = decode(&b);
        prop_assert!(out.len() <= b.len() / 16 + 1);
    }

    /// A route message with random attributes after a valid header.
    #[test]
    fn random_route_attributes(body in proptest::collection::vec(any::<u8>(), 0..200), fam in prop_oneof![Just(2u8), Just(10u8)]) {
        let mut m = vec![0u8; 16];
        let mut rt = vec![fam, 24, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0];
        rt.extend_from_slice(&body);
        m.extend_from_slice(&rt);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        let out = decode(&m);
        prop_assert_eq!(out.len(), 1);
    }
}
