//! The field engine (what TRex calls its field engine and pktgen its range mode): a
//! header field takes values from a range or a list, stepping up, down or at random, per
//! packet or per flow. A value is a pure function of a counter (the packet's number in
//! its stream, or its flow's index), so a run is reproducible and the sequence can be
//! checked against a model. Writing a value also mends the checksums it is part of: the
//! IPv4 header checksum incrementally (RFC 1624), the L4 checksum (addresses and ports
//! are in its pseudo-header) by the sender's per-packet fix.

use super::frame::Layout;
use crate::datapath::wire::csum;

/// A header field the engine varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SrcMac,
    DstMac,
    /// The outer (or only) VLAN id.
    Vlan,
    /// The inner VLAN id of a QinQ frame.
    InnerVlan,
    SrcIp,
    DstIp,
    /// IPv4 TOS / IPv6 traffic class (the whole byte: DSCP is its top six bits).
    Tos,
    /// IPv4 TTL / IPv6 hop limit.
    Ttl,
    SrcPort,
    DstPort,
}

impl Kind {
    pub const ALL: [(Kind, &'static str); 10] = [
        (Kind::SrcMac, "src_mac"),
        (Kind::DstMac, "dst_mac"),
        (Kind::Vlan, "vlan"),
        (Kind::InnerVlan, "inner_vlan"),
        (Kind::SrcIp, "src_ip"),
        (Kind::DstIp, "dst_ip"),
        (Kind::Tos, "tos"),
        (Kind::Ttl, "ttl"),
        (Kind::SrcPort, "src_port"),
        (Kind::DstPort, "dst_port"),
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
    }

    pub fn name(self) -> &'static str {
        Kind::ALL.iter().find(|(k, _)| *k == self).map_or("?", |(_, n)| n)
    }

    /// The largest value the field holds, for a frame of layout `lay`.
    pub fn max(self, lay: &Layout) -> u128 {
        match self {
            Kind::SrcMac | Kind::DstMac => (1 << 48) - 1,
            Kind::Vlan | Kind::InnerVlan => 4095,
            Kind::SrcIp | Kind::DstIp if lay.v6 => u128::MAX,
            Kind::SrcIp | Kind::DstIp => u128::from(u32::MAX),
            Kind::Tos | Kind::Ttl => 255,
            Kind::SrcPort | Kind::DstPort => 65535,
        }
    }
}

/// How the value moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Inc,
    Dec,
    Random,
}

/// Per packet (the counter is the packet's number in its stream) or per flow (its
/// flow's index: every packet of a flow has the same value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Packet,
    Flow,
}

/// The values a field takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values {
    /// start, start + step, ... up to end (inclusive).
    Range {
        start: u128,
        end: u128,
        step: u128,
    },
    List(Vec<u128>),
}

impl Values {
    pub fn count(&self) -> u128 {
        match self {
            Values::Range { start, end, step } => ((end - start) / step.max(&1)).saturating_add(1),
            Values::List(l) => l.len() as u128,
        }
    }

    /// The `i`-th value, `i` < `count()`.
    #[inline(always)]
    fn nth(&self, i: u128) -> u128 {
        match self {
            Values::Range { start, step: 1, .. } => start + i,
            Values::Range { start, step, .. } => start + i * step,
            Values::List(l) => l[i as usize],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub kind: Kind,
    pub values: Values,
    pub mode: Mode,
    pub per: Per,
}

/// SplitMix64: a counter to a well-spread number (random values stay reproducible).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A well-spread index below `count` for counter `n`: the high half of a 64x64-bit
/// product (Lemire's multiply-shift), no division, for any count up to 2^64.
#[inline(always)]
fn random_index(n: u64, count: u128) -> u128 {
    match u64::try_from(count) {
        Ok(c) => (u128::from(mix(n)) * u128::from(c)) >> 64,
        Err(_) => (u128::from(mix(n)) << 64 | u128::from(mix(!n))) % count,
    }
}

impl Field {
    /// The value for counter `n` (a packet's number, or a flow's index).
    #[inline(always)]
    pub fn value(&self, n: u64) -> u128 {
        let count = self.values.count();
        let i = match self.mode {
            Mode::Inc => u128::from(n) % count,
            Mode::Dec => count - 1 - u128::from(n) % count,
            Mode::Random => random_index(n, count),
        };
        self.values.nth(i)
    }

    /// Whether writing this field changes an IPv4 header of layout `lay` (its checksum
    /// then needs mending).
    pub fn in_ipv4_header(&self, lay: &Layout) -> bool {
        !lay.v6 && matches!(self.kind, Kind::SrcIp | Kind::DstIp | Kind::Tos | Kind::Ttl)
    }

    /// Writes value `v` into frame `b` of layout `lay`, mending the IPv4 header checksum
    /// (the L4 checksum, where kept, is recomputed by the caller after all fields).
    #[inline(always)]
    pub fn write(&self, b: &mut [u8], lay: &Layout, v: u128) {
        write(self.kind, b, lay, v);
    }
}

/// A per-packet field as the sender steps through it: the values of [`Field::value`] for
/// n, n + 1, n + 2, ... with a compare instead of a division per packet.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub kind: Kind,
    mode: Mode,
    values: Values,
    count: u128,
    /// The next value's index (inc/dec), or the next counter (random).
    idx: u128,
    n: u64,
}

impl Cursor {
    /// A cursor whose first value is `f.value(n0)`.
    pub fn new(f: &Field, n0: u64) -> Cursor {
        let count = f.values.count();
        let idx = match f.mode {
            Mode::Inc => u128::from(n0) % count,
            Mode::Dec => count - 1 - u128::from(n0) % count,
            Mode::Random => 0,
        };
        Cursor { kind: f.kind, mode: f.mode, values: f.values.clone(), count, idx, n: n0 }
    }

    /// This packet's value; moves on.
    #[inline(always)]
    pub fn next_value(&mut self) -> u128 {
        let i = match self.mode {
            Mode::Inc => {
                let i = self.idx;
                self.idx = if i + 1 == self.count { 0 } else { i + 1 };
                i
            }
            Mode::Dec => {
                let i = self.idx;
                self.idx = if i == 0 { self.count - 1 } else { i - 1 };
                i
            }
            Mode::Random => {
                let i = random_index(self.n, self.count);
                self.n = self.n.wrapping_add(1);
                i
            }
        };
        self.values.nth(i)
    }
}

/// Writes `v` as field `k` of frame `b` without touching any checksum: the sender adds
/// up every field's [`deltas`] and mends the checksums once.
#[inline(always)]
pub fn write_raw(k: Kind, b: &mut [u8], lay: &Layout, v: u128) {
    let ip = lay.l3;
    match k {
        Kind::SrcIp | Kind::DstIp if !lay.v6 => {
            let at = ip + if k == Kind::SrcIp { 12 } else { 16 };
            b[at..at + 4].copy_from_slice(&(v as u32).to_be_bytes());
        }
        Kind::Tos if !lay.v6 => b[ip + 1] = v as u8,
        Kind::Ttl if !lay.v6 => b[ip + 8] = v as u8,
        _ => write(k, b, lay, v),
    }
}

/// What writing `v` as field `k` over template `t` adds to the one's complement sums of
/// the IPv4 header and of the L4 checksum (addresses and ports are in its pseudo-header
/// or header): for each 16-bit word that changes, ~old + new (RFC 1624 eqn. 3). The old
/// words come from the template, never from the frame being written, so no load waits
/// for the stores just made.
#[inline(always)]
pub fn deltas(k: Kind, t: &[u8], lay: &Layout, v: u128) -> (u64, u64) {
    let old = |at: usize| u64::from(!u16::from_be_bytes([t[at], t[at + 1]]));
    let (ip, l4) = (lay.l3, lay.l4);
    match k {
        Kind::SrcIp | Kind::DstIp if lay.v6 => {
            let at = ip + if k == Kind::SrcIp { 8 } else { 24 };
            let d = (0..8).map(|i| old(at + 2 * i) + ((v >> (112 - 16 * i)) & 0xffff) as u64).sum();
            (0, d)
        }
        Kind::SrcIp | Kind::DstIp => {
            let at = ip + if k == Kind::SrcIp { 12 } else { 16 };
            let d = old(at) + old(at + 2) + ((v >> 16) & 0xffff) as u64 + (v & 0xffff) as u64;
            (d, d)
        }
        Kind::Tos if !lay.v6 => (old(ip) + (u64::from(t[ip]) << 8 | (v & 0xff) as u64), 0),
        Kind::Ttl if !lay.v6 => (old(ip + 8) + (((v & 0xff) as u64) << 8 | u64::from(t[ip + 9])), 0),
        Kind::SrcPort => (0, old(l4) + (v & 0xffff) as u64),
        Kind::DstPort => (0, old(l4 + 2) + (v & 0xffff) as u64),
        _ => (0, 0),
    }
}

/// Writes `v` as field `k` of frame `b` (see [`Field::write`]).
#[inline(always)]
pub fn write(k: Kind, b: &mut [u8], lay: &Layout, v: u128) {
    let ip = lay.l3;
    match k {
        Kind::DstMac => b[0..6].copy_from_slice(&(v as u64).to_be_bytes()[2..]),
        Kind::SrcMac => b[6..12].copy_from_slice(&(v as u64).to_be_bytes()[2..]),
        Kind::Vlan | Kind::InnerVlan => {
            let at = if k == Kind::Vlan { lay.vlan_outer } else { lay.vlan_inner };
            if at != 0 {
                let tci = u16::from_be_bytes([b[at], b[at + 1]]) & 0xf000 | (v as u16 & 0x0fff);
                b[at..at + 2].copy_from_slice(&tci.to_be_bytes());
            }
        }
        Kind::SrcIp | Kind::DstIp if lay.v6 => {
            let at = ip + if k == Kind::SrcIp { 8 } else { 24 };
            b[at..at + 16].copy_from_slice(&v.to_be_bytes());
        }
        Kind::SrcIp | Kind::DstIp => {
            let at = ip + if k == Kind::SrcIp { 12 } else { 16 };
            let old = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            b[at..at + 4].copy_from_slice(&(v as u32).to_be_bytes());
            v4_mend(b, ip, &[((old >> 16) as u16, (v >> 16) as u16), (old as u16, v as u16)]);
        }
        Kind::Tos if lay.v6 => {
            b[ip] = 0x60 | ((v as u8) >> 4);
            b[ip + 1] = (b[ip + 1] & 0x0f) | ((v as u8) << 4);
        }
        Kind::Tos => {
            let old = u16::from_be_bytes([b[ip], b[ip + 1]]);
            b[ip + 1] = v as u8;
            v4_mend(b, ip, &[(old, u16::from_be_bytes([b[ip], b[ip + 1]]))]);
        }
        Kind::Ttl if lay.v6 => b[ip + 7] = v as u8,
        Kind::Ttl => {
            let old = u16::from_be_bytes([b[ip + 8], b[ip + 9]]);
            b[ip + 8] = v as u8;
            v4_mend(b, ip, &[(old, u16::from_be_bytes([b[ip + 8], b[ip + 9]]))]);
        }
        Kind::SrcPort => b[lay.l4..lay.l4 + 2].copy_from_slice(&(v as u16).to_be_bytes()),
        Kind::DstPort => b[lay.l4 + 2..lay.l4 + 4].copy_from_slice(&(v as u16).to_be_bytes()),
    }
}

/// RFC 1624 eqn. 3 for the IPv4 header at `ip`, words changed from `.0` to `.1`.
#[inline(always)]
fn v4_mend(b: &mut [u8], ip: usize, words: &[(u16, u16)]) {
    let mut c = u16::from_be_bytes([b[ip + 10], b[ip + 11]]);
    for &(m, m2) in words {
        c = csum::update16(c, m, m2);
    }
    b[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::frame::{self, Shape, L4};
    use super::super::packet;
    use super::*;
    use crate::datapath::wire::l3;
    use proptest::prelude::*;

    #[test]
    fn sequences_follow_the_model() {
        let f = |mode, per| Field { kind: Kind::SrcPort, values: Values::Range { start: 10, end: 20, step: 5 }, mode, per };
        let seq = |f: &Field| (0..7).map(|n| f.value(n)).collect::<Vec<_>>();
        assert_eq!(seq(&f(Mode::Inc, Per::Packet)), [10, 15, 20, 10, 15, 20, 10]);
        assert_eq!(seq(&f(Mode::Dec, Per::Flow)), [20, 15, 10, 20, 15, 10, 20]);
        let r = seq(&f(Mode::Random, Per::Packet));
        assert!(r.iter().all(|v| [10, 15, 20].contains(v)));
        assert_eq!(r, seq(&f(Mode::Random, Per::Packet)), "reproducible");
        let l = Field { kind: Kind::Vlan, values: Values::List(vec![7, 3, 9]), mode: Mode::Inc, per: Per::Packet };
        assert_eq!((0..4).map(|n| l.value(n)).collect::<Vec<_>>(), [7, 3, 9, 7]);
    }

    proptest! {
        /// A cursor from any start yields exactly the model's values, in every mode,
        /// over ranges, stepped ranges and lists.
        #[test]
        fn cursors_follow_the_model(n0 in 0u64..1_000_000, start in 0u128..1000, len in 1u128..300, step in 1u128..5, list in proptest::collection::vec(any::<u16>(), 1..20), m in 0usize..3, use_list in any::<bool>()) {
            let values = if use_list { Values::List(list.iter().map(|&x| u128::from(x)).collect()) } else { Values::Range { start, end: start + len, step } };
            let f = Field { kind: Kind::SrcPort, values, mode: [Mode::Inc, Mode::Dec, Mode::Random][m], per: Per::Packet };
            let mut c = Cursor::new(&f, n0);
            for n in n0..n0 + 700 {
                prop_assert_eq!(c.next_value(), f.value(n));
            }
        }

        /// Template checksums plus the fields' deltas equal checksums computed afresh.
        #[test]
        fn deltas_give_the_fresh_checksums(vals in proptest::collection::vec((0usize..6, any::<u128>()), 1..4), six in any::<bool>(), tcp in any::<bool>()) {
            let mut sh = Shape { l4: if tcp { L4::TcpData } else { L4::Udp }, l4_checksum: true, ..Shape::default() };
            if six {
                sh.src_ip = "2001:db8::1".parse().unwrap();
                sh.dst_ip = "2001:db8::2".parse().unwrap();
            }
            let lay = Layout::of(&sh);
            let t = frame::build(&sh, 1, 100);
            let base = frame::l4_base_sum(&t, &lay);
            let mut b = t.clone();
            let (mut dip, mut dl4) = (0u64, 0u64);
            let mut seen = Vec::new();
            for &(k, v) in &vals {
                let kind = [Kind::SrcIp, Kind::DstIp, Kind::Tos, Kind::Ttl, Kind::SrcPort, Kind::DstPort][k];
                if seen.contains(&kind) {
                    continue;
                }
                seen.push(kind);
                let v = v.checked_rem(kind.max(&lay).wrapping_add(1)).unwrap_or(v);
                write_raw(kind, &mut b, &lay, v);
                let (a, c) = deltas(kind, &t, &lay, v);
                dip += a;
                dl4 += c;
            }
            if !six {
                let hc = u16::from_be_bytes([t[lay.l3 + 10], t[lay.l3 + 11]]);
                b[lay.l3 + 10..lay.l3 + 12].copy_from_slice(&(!csum::fold(u64::from(!hc) + dip)).to_be_bytes());
                prop_assert!(l3::parse_ipv4(&b[lay.l3..]).is_ok());
            }
            packet::stamp_at(&mut b, lay.sig, 77, 0x1234_5678_9abc);
            frame::l4_fix_from(&mut b, &lay, base + dl4, 77, 0x1234_5678_9abc);
            prop_assert!(frame::l4_ok(&b, &lay));
        }

        /// Any field of any shape, any value: the frame still parses with valid
        /// checksums (the L4 one after the sender's fix), and reads back the value.
        #[test]
        fn written_fields_keep_the_frame_valid(k in 0usize..10, v in any::<u128>(), six in any::<bool>(), tags in 0usize..3, tcp in any::<bool>()) {
            let mut s = Shape { vlans: vec![100, 200][..tags].to_vec(), l4: if tcp { L4::TcpData } else { L4::Udp }, l4_checksum: true, ..Shape::default() };
            if six {
                s.src_ip = "2001:db8::1".parse().unwrap();
                s.dst_ip = "2001:db8::2".parse().unwrap();
            }
            let lay = Layout::of(&s);
            let mut b = frame::build(&s, 3, 128);
            let kind = Kind::ALL[k].0;
            let v = v.checked_rem(kind.max(&lay).wrapping_add(1)).unwrap_or(v);
            write(kind, &mut b, &lay, v);
            frame::l4_fix(&mut b, &lay);
            if lay.v6 {
                prop_assert!(l3::parse_ipv6(&b[lay.l3..]).is_ok());
            } else {
                prop_assert!(l3::parse_ipv4(&b[lay.l3..]).is_ok(), "IPv4 checksum after writing {kind:?}");
            }
            prop_assert!(frame::l4_ok(&b, &lay));
            let e = l3::parse_eth(&b).unwrap();
            match kind {
                Kind::DstMac => prop_assert_eq!(e.dst.to_vec(), (v as u64).to_be_bytes()[2..].to_vec()),
                Kind::Vlan if tags == 1 => prop_assert_eq!(u128::from(e.vlan), v & 0xfff),
                Kind::Vlan | Kind::InnerVlan if tags == 2 => {
                    let (ids, _, _) = frame::tags(&b).unwrap();
                    prop_assert_eq!(u128::from(ids[usize::from(kind == Kind::InnerVlan)]), v & 0xfff);
                }
                Kind::Ttl if !six => prop_assert_eq!(u128::from(b[lay.l3 + 8]), v),
                Kind::DstPort => prop_assert_eq!(u128::from(u16::from_be_bytes([b[lay.l4 + 2], b[lay.l4 + 3]])), v),
                _ => {}
            }
            prop_assert!(frame::find_sig(&b).is_some());
        }
    }
}
