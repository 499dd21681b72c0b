//! The router's slow path: a thread (never a worker) that takes the frames workers hand
//! up and answers or forwards them — ARP and neighbour discovery, ICMP echo replies for
//! our addresses, ICMP errors (time exceeded, unreachable, fragmentation needed / packet
//! too big; RFC 1812 §4.3.2 limits), packets held while their neighbour resolves,
//! IPv4 fragmentation — and runs the neighbour timers. What it sends goes down to a
//! worker (`datapath::route::punt`). Everything it does not do is counted by cause.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::neigh::{Action, State, Waiting};
use super::{Prefix, RouterCtl};
use crate::datapath::route::nexthop::{Hop, Kind};
use crate::datapath::route::punt::Punted;
use crate::datapath::route::Why;
use crate::datapath::wire::csum;
use crate::datapath::wire::l3::{self, Arp, ARP_REPLY, ARP_REQUEST, BROADCAST};

/// Runs the slow path until `stop`: frames as they come (polled: a worker never makes
/// a system call to wake it), timers every 100 ms. Polls every 200 µs while frames
/// arrive, every 2 ms when it has been idle for a while.
pub fn spawn(ctl: Arc<Mutex<RouterCtl>>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("pmds-slow".into()).spawn(move || {
        let mut next_tick = Instant::now();
        let mut idle = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let mut did = 0;
            {
                let mut c = ctl.lock().unwrap_or_else(|e| e.into_inner());
                while did < 256 {
                    let Some(p) = c.rt.punt.next_up() else { break };
                    c.handle(p);
                    did += 1;
                }
                let now = Instant::now();
                if c.has_twins() {
                    did += c.poll_twins(256);
                }
                if now >= next_tick {
                    c.tick(now);
                    next_tick = now + Duration::from_millis(100);
                }
            }
            idle = if did > 0 { 0 } else { idle.saturating_add(1) };
            if did < 256 {
                std::thread::sleep(if idle > 50 { Duration::from_millis(2) } else { Duration::from_micros(200) });
            }
        }
    })
}

/// RFC 1812 §4.3.2.7: no ICMP error about an ICMP error, a non-first fragment, or a
/// packet whose source is not a unicast host.
fn may_report(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(h) = l3::parse_ipv4(ip) else { return false };
            let err = h.proto == l3::PROTO_ICMP && ip.get(h.ihl).is_some_and(|t| matches!(t, 3 | 4 | 5 | 11 | 12));
            !err && h.frag_off == 0 && !h.src.is_unspecified() && !h.src.is_multicast() && !h.src.is_broadcast()
        }
        Some(6) => {
            let Ok(h) = l3::parse_ipv6(ip) else { return false };
            let err = h.next == l3::PROTO_ICMPV6 && ip.get(40).is_some_and(|t| *t < 128);
            !err && !h.src.is_unspecified() && !h.src.is_multicast()
        }
        _ => false,
    }
}

impl RouterCtl {
    /// One frame from a worker.
    pub fn handle(&mut self, p: Punted) {
        *self.stats.punts.entry(p.why.name()).or_default() += 1;
        let Punted { why, iface, frame, .. } = p;
        let Some(eth) = l3::parse_eth(&frame) else {
            self.stats.drop("runt");
            self.rt.punt.recycle(frame);
            return;
        };
        let ip = frame[eth.l2_len..].to_vec();
        match why {
            Why::Arp => self.on_arp(iface, &eth, &frame[eth.l2_len..]),
            Why::Local => self.on_local(iface, &eth, &ip),
            Why::NoRoute => self.icmp_error(iface, &ip, Err::NoRoute),
            Why::Unreachable => self.icmp_error(iface, &ip, Err::Unreachable),
            Why::TtlExceeded => self.icmp_error(iface, &ip, Err::Ttl),
            Why::TooBig(mtu) => self.icmp_error(iface, &ip, Err::TooBig(mtu)),
            Why::Resolve(nh) => self.hold(nh, None, ip, true),
            Why::Glean(out) => self.glean(out, ip),
            Why::Fragment(nh) => self.fragment(nh, &ip),
        }
        self.rt.punt.recycle(frame);
    }

    fn on_arp(&mut self, iface: u16, eth: &l3::Eth, payload: &[u8]) {
        self.stats.arp_in += 1;
        let Some(a) = l3::parse_arp(payload) else { return self.stats.drop("arp_malformed") };
        let Some(i) = self.iface(iface) else { return self.stats.drop("no_interface") };
        let (mac, vlan) = (i.mac, i.vlan);
        let ours = i.owns(IpAddr::V4(a.tpa));
        let now = Instant::now();
        // RFC 826's merge: an entry we have learns the sender's MAC; a request for one
        // of our addresses makes one (the asker will talk to us next).
        let spa = IpAddr::V4(a.spa);
        if a.spa.is_unspecified() || a.sha[0] & 1 != 0 {
            // Probes (RFC 5227) and multicast senders teach nothing.
        } else if self.neigh.get(iface, spa).is_some() {
            if self.neigh.learned(iface, spa, a.sha, now) {
                self.resolved(iface, spa);
            }
        } else if ours && a.op == ARP_REQUEST && self.connected_iface(spa) == Some(iface) && !self.neigh.is_full() {
            if let Ok(nh) = self.neigh_nh(iface, spa) {
                self.neigh.learned(iface, spa, a.sha, now);
                self.resolved(iface, spa);
                self.install_host_route(iface, spa, nh);
            }
        }
        if a.op == ARP_REPLY {
            // The kernel's own requests (from a twin) are answered to our MAC too.
            self.hand_up(iface, eth.src, eth.dst, l3::ETHERTYPE_ARP, payload);
        }
        if a.op == ARP_REQUEST && ours {
            let r = Arp { op: ARP_REPLY, sha: mac, spa: a.tpa, tha: a.sha, tpa: a.spa };
            self.emit_frame(iface, l3::arp_frame(a.sha, vlan, &r));
            self.stats.arp_replies_sent += 1;
        } else if a.op != ARP_REPLY && !ours {
            self.stats.drop("arp_not_ours");
        }
    }

    fn on_local(&mut self, iface: u16, eth: &l3::Eth, ip: &[u8]) {
        match ip.first().map(|b| b >> 4) {
            Some(4) => self.local4(iface, eth, ip),
            Some(6) => self.local6(iface, eth, ip),
            _ => self.stats.drop("local_malformed"),
        }
    }

    fn local4(&mut self, iface: u16, eth: &l3::Eth, ip: &[u8]) {
        let Ok(h) = l3::parse_ipv4(ip) else { return self.stats.drop("local_malformed") };
        let ours = self.ifaces.iter().flatten().any(|i| i.owns(IpAddr::V4(h.dst)));
        let echo = h.proto == l3::PROTO_ICMP && ip.get(h.ihl) == Some(&l3::ICMP_ECHO) && !h.fragment;
        // With a host interface, everything but echo goes to the kernel (its sockets,
        // a routing daemon's hellos to a multicast group).
        if !(ours && echo) && self.hand_up(iface, eth.src, eth.dst, l3::ETHERTYPE_IPV4, &ip[..h.total.min(ip.len())]) {
            return;
        }
        if !ours {
            // Broadcast and multicast to the router: nothing here listens (yet).
            return self.stats.drop("local_multicast");
        }
        let body = &ip[h.ihl..h.total];
        if h.proto == l3::PROTO_ICMP && body.first() == Some(&l3::ICMP_ECHO) && !h.fragment {
            if !self.echo.take(Instant::now()) {
                self.stats.icmp_rate_limited += 1;
                return;
            }
            let mut r = Vec::with_capacity(h.total);
            l3::put_ipv4(&mut r, h.dst, h.src, l3::PROTO_ICMP, 64, body.len(), h.id, 0);
            let at = r.len();
            r.extend_from_slice(body);
            r[at] = l3::ICMP_ECHO_REPLY;
            r[at + 2..at + 4].copy_from_slice(&[0, 0]);
            let c = csum::checksum(&r[at..]);
            r[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
            self.stats.echo_replies += 1;
            self.send_ip(r);
        } else if h.proto == l3::PROTO_UDP {
            self.icmp_error(iface, ip, Err::PortUnreachable);
        } else {
            // TCP and the rest: no listener in the router (host interfaces come later).
            self.stats.drop("local_unhandled");
        }
    }

    fn local6(&mut self, iface: u16, eth: &l3::Eth, ip: &[u8]) {
        let Ok(h) = l3::parse_ipv6(ip) else { return self.stats.drop("local_malformed") };
        let msg = &ip[40..40 + h.payload];
        let Some(i) = self.iface(iface) else { return self.stats.drop("no_interface") };
        let (mac, vlan) = (i.mac, i.vlan);
        // ND is answered here (the twin learns neighbours from advertisements too) and
        // echo to our addresses; the rest goes to the kernel when there is a twin.
        let nd_or_echo = h.next == l3::PROTO_ICMPV6 && matches!(msg.first(), Some(&l3::ND_NS | &l3::ND_NA | &l3::ICMP6_ECHO));
        if msg.first() == Some(&l3::ND_NA) && h.next == l3::PROTO_ICMPV6 {
            self.hand_up(iface, eth.src, eth.dst, l3::ETHERTYPE_IPV6, &ip[..40 + h.payload]);
        }
        if !nd_or_echo && self.hand_up(iface, eth.src, eth.dst, l3::ETHERTYPE_IPV6, &ip[..40 + h.payload]) {
            return;
        }
        if h.next != l3::PROTO_ICMPV6 || msg.len() < 8 || l3::icmp6_checksum(h.src, h.dst, msg) != 0 {
            if h.dst.is_multicast() {
                return self.stats.drop("local_multicast");
            }
            return self.stats.drop("local_unhandled");
        }
        let now = Instant::now();
        match msg[0] {
            l3::ND_NS | l3::ND_NA => {
                self.stats.nd_in += 1;
                let Some(nd) = l3::parse_nd(msg, h.hops) else { return self.stats.drop("nd_malformed") };
                if nd.ty == l3::ND_NS {
                    let target_ours = self.iface(iface).is_some_and(|i| i.owns(IpAddr::V6(nd.target)));
                    let src = IpAddr::V6(h.src);
                    if let Some(ll) = nd.lladdr.filter(|_| !h.src.is_unspecified()) {
                        if self.neigh.get(iface, src).is_some() {
                            if self.neigh.learned(iface, src, ll, now) {
                                self.resolved(iface, src);
                            }
                        } else if target_ours && self.connected_iface(src) == Some(iface) && !self.neigh.is_full() {
                            if let Ok(nh) = self.neigh_nh(iface, src) {
                                self.neigh.learned(iface, src, ll, now);
                                self.resolved(iface, src);
                                self.install_host_route(iface, src, nh);
                            }
                        }
                    }
                    if target_ours {
                        // To the asker, or to all nodes for a DAD probe from ::.
                        let (dst, dmac) = if h.src.is_unspecified() {
                            let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                            (all, l3::multicast_mac(all))
                        } else {
                            (h.src, nd.lladdr.unwrap_or(eth.src))
                        };
                        self.emit_frame(iface, l3::na_frame(dmac, mac, vlan, nd.target, dst, !h.src.is_unspecified()));
                        self.stats.na_sent += 1;
                    }
                } else {
                    let t = IpAddr::V6(nd.target);
                    if let Some(ll) = nd.lladdr {
                        if self.neigh.learned(iface, t, ll, now) {
                            self.resolved(iface, t);
                        }
                    }
                }
            }
            l3::ICMP6_ECHO if self.iface(iface).is_some_and(|i| i.owns(IpAddr::V6(h.dst))) || self.owned(IpAddr::V6(h.dst)) => {
                if !self.echo.take(now) {
                    self.stats.icmp_rate_limited += 1;
                    return;
                }
                let mut m = msg.to_vec();
                m[0] = l3::ICMP6_ECHO_REPLY;
                m[2..4].copy_from_slice(&[0, 0]);
                let c = l3::icmp6_checksum(h.dst, h.src, &m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                let mut r = Vec::with_capacity(40 + m.len());
                l3::put_ipv6(&mut r, h.dst, h.src, l3::PROTO_ICMPV6, 64, m.len());
                r.extend_from_slice(&m);
                self.stats.echo_replies += 1;
                if h.src.segments()[0] & 0xffc0 == 0xfe80 {
                    // A link-local asker is answered on the link it asked on.
                    self.send_on_link(iface, IpAddr::V6(h.src), r);
                } else {
                    self.send_ip(r);
                }
            }
            _ => self.stats.drop(if h.dst.is_multicast() { "local_multicast" } else { "local_unhandled" }),
        }
    }

    fn owned(&self, a: IpAddr) -> bool {
        self.ifaces.iter().flatten().any(|i| i.owns(a))
    }

    /// An ICMP error about `ip` (received on `iface`) back to its source, rate-limited.
    fn icmp_error(&mut self, iface: u16, ip: &[u8], e: Err) {
        *self.stats.drops.entry(e.drop_name()).or_default() += 1;
        if !may_report(ip) {
            return;
        }
        if !self.icmp.take(Instant::now()) {
            self.stats.icmp_rate_limited += 1;
            return;
        }
        let v6 = ip[0] >> 4 == 6;
        let Some(src) = self.iface(iface).and_then(|i| i.first(v6)).or_else(|| self.ifaces.iter().flatten().find_map(|i| i.first(v6)))
        else {
            return;
        };
        let mut r = Vec::new();
        match (src, v6) {
            (IpAddr::V4(me), false) => {
                let Ok(h) = l3::parse_ipv4(ip) else { return };
                // The header and 8 bytes (RFC 792); more is allowed, up to 576 in all.
                let quote = &ip[..h.total.min(h.ihl + 8).min(ip.len())];
                let (ty, code, rest) = e.v4();
                let mut m = vec![ty, code, 0, 0];
                m.extend_from_slice(&rest);
                m.extend_from_slice(quote);
                let c = csum::checksum(&m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                l3::put_ipv4(&mut r, me, h.src, l3::PROTO_ICMP, 64, m.len(), 0, 0);
                r.extend_from_slice(&m);
            }
            (IpAddr::V6(me), true) => {
                let Ok(h) = l3::parse_ipv6(ip) else { return };
                // As much as fits in the minimum MTU (RFC 4443 §2.4 (c)).
                let quote = &ip[..ip.len().min(1280 - 48)];
                let (ty, code, rest) = e.v6();
                let mut m = vec![ty, code, 0, 0];
                m.extend_from_slice(&rest);
                m.extend_from_slice(quote);
                let c = l3::icmp6_checksum(me, h.src, &m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                l3::put_ipv6(&mut r, me, h.src, l3::PROTO_ICMPV6, 64, m.len());
                r.extend_from_slice(&m);
            }
            _ => return,
        }
        *self.stats.icmp_errors.entry(e.name()).or_default() += 1;
        self.send_ip(r);
    }

    /// Sends an IP packet the router made, by the FIB.
    fn send_ip(&mut self, ip: Vec<u8>) {
        let Some(dst) = ip_dst(&ip) else { return };
        let v = match dst {
            IpAddr::V4(a) => self.rt.fib4.lookup4(u32::from(a)),
            IpAddr::V6(a) => self.rt.fib6.lookup(u128::from(a)),
        };
        let Some(v) = v else { return self.stats.drop("own_no_route") };
        let id = self.rt.nh.resolve(v, 0);
        self.hold_or_send(id, dst, ip, false);
    }

    /// Sends `ip` to a neighbour on `iface` directly (a link-local destination).
    fn send_on_link(&mut self, iface: u16, a: IpAddr, ip: Vec<u8>) {
        match self.neigh.get(iface, a).and_then(|n| n.mac) {
            Some(mac) => self.send_via(iface, mac, ip, false),
            None => match self.neigh_nh(iface, a) {
                Ok(nh) => self.hold(nh, Some(a), ip, false),
                Err(_) => self.stats.drop("neigh_table_full"),
            },
        }
    }

    /// `ip` to next hop `id` (for destination `dst`): out now, or held for its neighbour.
    fn hold_or_send(&mut self, id: u32, dst: IpAddr, ip: Vec<u8>, forwarded: bool) {
        let hop = self.rt.nh.hop(id);
        match hop.kind {
            Kind::Forward => self.send_via(hop.iface, hop.mac, ip, forwarded),
            Kind::Resolve => self.hold(id, Some(dst), ip, forwarded),
            Kind::Glean => match self.neigh_nh(hop.iface, dst) {
                Ok(nh) => {
                    self.install_host_route(hop.iface, dst, nh);
                    self.hold(nh, Some(dst), ip, forwarded)
                }
                Err(_) => self.stats.drop("neigh_table_full"),
            },
            Kind::Local => self.stats.drop("own_to_self"),
            _ => self.stats.drop("own_no_route"),
        }
    }

    /// Holds a packet until neighbour `nh` resolves (bounded per neighbour), asking for it
    /// if it is not being asked already.
    fn hold(&mut self, nh: u32, _dst: Option<IpAddr>, ip: Vec<u8>, forwarded: bool) {
        let max = self.neigh.timing.pending;
        let now = Instant::now();
        let Some(n) = self.neigh.by_nh_mut(nh) else { return self.stats.drop("no_neighbour") };
        if let Some(mac) = n.mac.filter(|_| matches!(n.state, State::Reachable | State::Stale)) {
            // Resolved since the worker looked.
            let iface = n.iface;
            return self.send_via(iface, mac, ip, forwarded);
        }
        if n.pending.len() >= max {
            return self.stats.drop("neigh_queue_full");
        }
        if n.state == State::Failed {
            // Within the hold-down after a failed resolution: refused at once.
            if n.due > now {
                self.stats.drop("neigh_failed");
                let iface = n.iface;
                if forwarded {
                    self.icmp_error(iface, &ip, Err::HostUnreachable);
                }
                return;
            }
            n.state = State::Incomplete;
            n.tries = 0;
            n.due = now;
        }
        n.pending.push_back(Waiting { ip, forwarded });
        let ask_now = n.tries == 0;
        if ask_now {
            self.tick(now);
        }
    }

    /// A packet to a host of a connected subnet not known yet: an entry (and a host
    /// route) for it, and the packet held.
    fn glean(&mut self, out: u16, ip: Vec<u8>) {
        let Some(dst) = ip_dst(&ip) else { return self.stats.drop("local_malformed") };
        if self.neigh.get(out, dst).is_none() && self.neigh.is_full() {
            return self.stats.drop("neigh_table_full");
        }
        match self.neigh_nh(out, dst) {
            Ok(nh) => {
                self.install_host_route(out, dst, nh);
                self.hold(nh, Some(dst), ip, true);
            }
            Err(_) => self.stats.drop("neigh_table_full"),
        }
    }

    /// IPv4 fragmentation (DF clear, larger than the egress MTU).
    fn fragment(&mut self, nh: u32, ip: &[u8]) {
        let hop = self.rt.nh.hop(nh);
        let Some(mtu) = self.iface(hop.iface).map(|i| usize::from(i.mtu)) else { return self.stats.drop("no_interface") };
        let Some(frags) = l3::fragment4(ip, mtu) else { return self.stats.drop("fragment_failed") };
        let Some(dst) = ip_dst(ip) else { return };
        for f in frags {
            self.stats.fragments_sent += 1;
            self.hold_or_send(nh, dst, f, true);
        }
    }

    /// Out through `iface` to `mac`: a forwarded packet's TTL goes down by one first (its
    /// checksum updated), and is refused (ICMP) when it would reach 0.
    pub(super) fn send_via(&mut self, iface: u16, mac: [u8; 6], mut ip: Vec<u8>, forwarded: bool) {
        let Some(i) = self.iface(iface) else { return self.stats.drop("no_interface") };
        let (src, vlan) = (i.mac, i.vlan);
        let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
        if forwarded {
            let at = if v6 { 7 } else { 8 };
            let Some(&ttl) = ip.get(at) else { return };
            if ttl <= 1 {
                return self.icmp_error(iface, &ip, Err::Ttl);
            }
            ip[at] = ttl - 1;
            if !v6 && ip.len() >= 12 {
                let old = u16::from_be_bytes([ttl, ip[9]]);
                let c = csum::update16(u16::from_be_bytes([ip[10], ip[11]]), old, u16::from_be_bytes([ttl - 1, ip[9]]));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
        let Some(mut f) = self.rt.punt.buffer() else { return self.stats.drop("no_buffer") };
        l3::put_eth(&mut f, mac, src, vlan, if v6 { l3::ETHERTYPE_IPV6 } else { l3::ETHERTYPE_IPV4 });
        f.extend_from_slice(&ip);
        f.resize(f.len().max(60), 0);
        self.emit(iface, f);
    }

    fn emit_frame(&mut self, iface: u16, frame: Vec<u8>) {
        let Some(mut f) = self.rt.punt.buffer() else { return self.stats.drop("no_buffer") };
        f.extend_from_slice(&frame);
        self.emit(iface, f);
    }

    /// Hands a whole frame to the worker that sends on the interface's port.
    pub(super) fn emit(&mut self, iface: u16, f: Vec<u8>) {
        let Some(port) = self.iface(iface).map(|i| i.port) else { return self.rt.punt.recycle(f) };
        let w = port % self.rt.punt.workers();
        if self.rt.punt.inject(w, port as u16, f) {
            if let Some(b) = &self.barrier {
                // A napping worker (adaptive idle) wakes for it.
                b.doorbell(w).ring();
            }
        } else {
            self.stats.inject_full += 1;
        }
    }

    /// Asks who has `a` on `iface`: broadcast ARP or multicast NS, or unicast to `known`.
    fn ask(&mut self, iface: u16, a: IpAddr, known: Option<[u8; 6]>) {
        let Some(i) = self.iface(iface) else { return };
        let (mac, vlan) = (i.mac, i.vlan);
        match a {
            IpAddr::V4(t) => {
                // The address on the asked one's subnet, else the first.
                let me = self.iface(iface).and_then(|i| {
                    i.addrs
                        .iter()
                        .find(|&&(x, l)| x.is_ipv4() && Prefix::of(x, l).contains(a))
                        .or_else(|| i.addrs.iter().find(|x| x.0.is_ipv4()))
                        .map(|x| x.0)
                });
                let Some(IpAddr::V4(me)) = me else { return };
                let r = Arp { op: ARP_REQUEST, sha: mac, spa: me, tha: [0; 6], tpa: t };
                self.emit_frame(iface, l3::arp_frame(known.unwrap_or(BROADCAST), vlan, &r));
                self.stats.arp_requests_sent += 1;
            }
            IpAddr::V6(t) => {
                let me = self.iface(iface).and_then(|i| i.first(true)).and_then(|x| if let IpAddr::V6(x) = x { Some(x) } else { None });
                let me = me.unwrap_or_else(|| l3::link_local(mac));
                let uni = known.map(|m| (t, m));
                self.emit_frame(iface, l3::ns_frame(mac, vlan, me, t, uni));
                self.stats.ns_sent += 1;
            }
        }
    }

    /// A new address is announced: gratuitous ARP (RFC 5227 §3) or an unsolicited NA.
    pub(super) fn announce(&mut self, iface: u16, a: IpAddr) {
        let Some(i) = self.iface(iface) else { return };
        let (mac, vlan) = (i.mac, i.vlan);
        match a {
            IpAddr::V4(me) => {
                let r = Arp { op: ARP_REQUEST, sha: mac, spa: me, tha: [0; 6], tpa: me };
                self.emit_frame(iface, l3::arp_frame(BROADCAST, vlan, &r));
                self.stats.arp_requests_sent += 1;
            }
            IpAddr::V6(me) => {
                let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                self.emit_frame(iface, l3::na_frame(l3::multicast_mac(all), mac, vlan, me, all, false));
                self.stats.na_sent += 1;
            }
        }
    }

    /// The neighbour timers (and FIB memory whose grace period passed).
    pub fn tick(&mut self, now: Instant) {
        for ((iface, a), act) in self.neigh.expire(now) {
            match act {
                Action::Ask => self.ask(iface, a, None),
                Action::Probe(mac) => self.ask(iface, a, Some(mac)),
                Action::Fail => {
                    let Some(n) = self.neigh.get_mut(iface, a) else { continue };
                    let nh = n.nh;
                    let waiting: Vec<Waiting> = n.pending.drain(..).collect();
                    n.mac = None;
                    self.rt.nh.set_hop(nh, Hop { kind: Kind::Resolve, iface, mac: [0; 6] });
                    for w in waiting {
                        self.stats.drop("neigh_failed");
                        if w.forwarded {
                            self.icmp_error(iface, &w.ip, Err::HostUnreachable);
                        }
                    }
                }
                Action::Remove => self.remove_neigh(iface, a),
            }
        }
        self.rt.fib4.reclaim(&self.rt.qsbr);
        self.rt.fib6.reclaim(&self.rt.qsbr);
    }
}

fn ip_dst(ip: &[u8]) -> Option<IpAddr> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => Some(IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]))),
        6 if ip.len() >= 40 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?))),
        _ => None,
    }
}

/// An ICMP error the slow path sends.
#[derive(Debug, Clone, Copy)]
enum Err {
    NoRoute,
    Unreachable,
    HostUnreachable,
    PortUnreachable,
    Ttl,
    TooBig(u16),
}

impl Err {
    fn name(self) -> &'static str {
        match self {
            Err::NoRoute => "net_unreachable",
            Err::Unreachable | Err::HostUnreachable => "host_unreachable",
            Err::PortUnreachable => "port_unreachable",
            Err::Ttl => "time_exceeded",
            Err::TooBig(_) => "too_big",
        }
    }

    /// The cause the packet itself is dropped under.
    fn drop_name(self) -> &'static str {
        match self {
            Err::NoRoute => "no_route",
            Err::Unreachable => "unreachable_route",
            Err::HostUnreachable => "host_unreachable",
            Err::PortUnreachable => "local_port_closed",
            Err::Ttl => "ttl_exceeded",
            Err::TooBig(_) => "mtu_exceeded",
        }
    }

    fn v4(self) -> (u8, u8, [u8; 4]) {
        match self {
            Err::NoRoute => (l3::ICMP_UNREACH, l3::UNREACH_NET, [0; 4]),
            Err::Unreachable | Err::HostUnreachable => (l3::ICMP_UNREACH, l3::UNREACH_HOST, [0; 4]),
            Err::PortUnreachable => (l3::ICMP_UNREACH, 3, [0; 4]),
            Err::Ttl => (l3::ICMP_TIME_EXCEEDED, 0, [0; 4]),
            // RFC 1191: the next-hop MTU in the low 16 bits.
            Err::TooBig(mtu) => (l3::ICMP_UNREACH, l3::UNREACH_FRAG, [0, 0, (mtu >> 8) as u8, mtu as u8]),
        }
    }

    fn v6(self) -> (u8, u8, [u8; 4]) {
        match self {
            Err::NoRoute => (l3::ICMP6_UNREACH, 0, [0; 4]),
            Err::Unreachable | Err::HostUnreachable => (l3::ICMP6_UNREACH, 3, [0; 4]),
            Err::PortUnreachable => (l3::ICMP6_UNREACH, 4, [0; 4]),
            Err::Ttl => (l3::ICMP6_TIME_EXCEEDED, 0, [0; 4]),
            Err::TooBig(mtu) => (l3::ICMP6_TOO_BIG, 0, u32::from(mtu).to_be_bytes()),
        }
    }
}
