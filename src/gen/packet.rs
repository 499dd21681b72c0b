//! Test frames: Ethernet II / IPv4 / UDP with a 16-byte signature at the start of the UDP
//! payload. A frame is built once per (flow, size) and then only stamped per packet.
//!
//! Frame sizes are RFC 2544 §9 sizes: they count the 4-byte FCS, which the NIC appends,
//! so a 64-byte frame is 60 bytes in the buffer.
//!
//! Signature, at byte 42 of an untagged frame (all fields little-endian: it is our own
//! format, not a wire protocol, and little-endian makes stamping plain stores on x86 and
//! arm64):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `0x9D5C` (bytes `5C 9D`) |
//! | 2 | 2 | flow index |
//! | 4 | 4 | sequence number, per flow |
//! | 8 | 8 | sender TSC at transmit |
//!
//! 42 header bytes + 16 fit in the 60 bytes of a minimum frame, with 2 bytes to spare.

pub const MIN_FRAME: usize = 64;
/// A 9000-byte MTU plus Ethernet header and FCS; the usual jumbo size (not in RFC 2544).
pub const MAX_FRAME: usize = 9018;
pub const FCS: usize = 4;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
pub const SIG_OFFSET: usize = ETH_LEN + IPV4_LEN + UDP_LEN;
pub const SIG_LEN: usize = 16;
pub const SIG_MAGIC: u16 = 0x9D5C;
/// The flow index is 16 bits in the signature.
pub const MAX_FLOWS: u32 = 1 << 16;
/// Flows vary the UDP source port over the unprivileged ports 1024..=65535.
const PORTS: u32 = 65536 - 1024;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const VLAN_LEN: usize = 4;
const IPPROTO_UDP: u8 = 17;

const _: () = assert!(SIG_OFFSET + SIG_LEN <= MIN_FRAME - FCS);

pub use crate::parse::L1_OVERHEAD;

/// Bits a frame occupies on the wire, for L1 rates: 10 Gbit/s carries
/// 10e9 / wire_bits(64) = 14 880 952 frames of 64 bytes per second.
#[cfg(test)]
pub fn wire_bits(frame: usize) -> u64 {
    (frame + L1_OVERHEAD) as u64 * 8
}

/// Bits of a frame itself (with FCS), for L2 rates.
#[cfg(test)]
pub fn l2_bits(frame: usize) -> u64 {
    frame as u64 * 8
}

/// What the generator sends: one destination, `flows` flows from consecutive source
/// addresses and ports, spread over `macs` source MACs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub flows: u32,
    pub macs: u32,
}

impl Default for FlowSpec {
    fn default() -> Self {
        FlowSpec {
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            src_ip: [10, 0, 0, 1],
            dst_ip: [10, 1, 0, 1],
            src_port: 1024,
            dst_port: 5000,
            flows: 1,
            macs: 1,
        }
    }
}

impl FlowSpec {
    /// Flow i's source address: `src_ip + i`, wrapping at 255.255.255.255.
    pub fn src_ip_of(&self, i: u32) -> [u8; 4] {
        u32::from_be_bytes(self.src_ip).wrapping_add(i).to_be_bytes()
    }

    /// Flow i's UDP source port: `src_port + i`, wrapping within 1024..=65535 (64512
    /// ports). A `src_port` below 1024 is used as is by every flow: meant for one flow.
    pub fn src_port_of(&self, i: u32) -> u16 {
        let Some(base) = u32::from(self.src_port).checked_sub(1024) else { return self.src_port };
        (1024 + (base + i % PORTS) % PORTS) as u16
    }

    /// Source MAC number i: `src_mac` with `i % macs` added to its last three bytes
    /// (wrapping within them, so the OUI stays). Flow i uses MAC i, so only
    /// min(flows, macs) distinct MACs appear in the flows; a sender that wants more MACs
    /// than flows calls this with indices of its own.
    pub fn src_mac_of(&self, i: u32) -> [u8; 6] {
        let m = self.src_mac;
        let low = u32::from_be_bytes([0, m[3], m[4], m[5]]).wrapping_add(i % self.macs.max(1));
        let [_, a, b, c] = low.to_be_bytes();
        [m[0], m[1], m[2], a, b, c]
    }
}

/// A built frame for one flow, FCS excluded: `bytes.len() == frame - FCS`. Only the first
/// `SIG_OFFSET + SIG_LEN` bytes differ between flows; the rest is zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub flow: u32,
    pub bytes: Vec<u8>,
}

/// Builds flow `flow`'s frame of `frame` bytes (FCS included), signature seq and tsc 0.
///
/// # Panics
/// If `frame` is outside `MIN_FRAME..=MAX_FRAME` or `flow >= MAX_FLOWS`: callers
/// check sizes (`parse_sizes` does) and flow counts at start-up.
pub fn build(spec: &FlowSpec, flow: u32, frame: usize) -> Template {
    assert!((MIN_FRAME..=MAX_FRAME).contains(&frame), "frame size {frame} out of range");
    assert!(flow < MAX_FLOWS, "flow {flow} out of range");
    let mut b = vec![0u8; frame - FCS];
    let ip_len = b.len() - ETH_LEN;

    b[0..6].copy_from_slice(&spec.dst_mac);
    b[6..12].copy_from_slice(&spec.src_mac_of(flow));
    b[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

    // RFC 791 §3.1. Identification 0 is fine with DF set: the datagram is never
    // fragmented, which is all the field is for (RFC 6864 §4.1).
    let ip = &mut b[ETH_LEN..ETH_LEN + IPV4_LEN];
    ip[0] = 0x45; // version 4, IHL 5 words
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64; // TTL
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&spec.src_ip_of(flow));
    ip[16..20].copy_from_slice(&spec.dst_ip);
    let sum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    // RFC 768: checksum 0 means "not computed", allowed over IPv4. The payload changes
    // with every packet (seq, tsc); a real checksum would cost a recomputation per
    // packet, and the signature needs none to be trusted: the magic and the Ethernet FCS
    // already guard it.
    let udp = &mut b[ETH_LEN + IPV4_LEN..SIG_OFFSET];
    udp[0..2].copy_from_slice(&spec.src_port_of(flow).to_be_bytes());
    udp[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&((ip_len - IPV4_LEN) as u16).to_be_bytes());

    let sig = &mut b[SIG_OFFSET..SIG_OFFSET + SIG_LEN];
    sig[0..2].copy_from_slice(&SIG_MAGIC.to_le_bytes());
    sig[2..4].copy_from_slice(&(flow as u16).to_le_bytes());
    Template { flow, bytes: b }
}

/// Writes seq and tsc into a frame built by `build` (untagged). The per-packet work:
/// two stores after one bounds check.
#[inline]
pub fn stamp(buf: &mut [u8], seq: u32, tsc: u64) {
    let s = &mut buf[SIG_OFFSET + 4..SIG_OFFSET + SIG_LEN];
    s[..4].copy_from_slice(&seq.to_le_bytes());
    s[4..].copy_from_slice(&tsc.to_le_bytes());
}

/// Writes seq and tsc into the signature at `sig` (a frame of any shape, `frame::Layout::sig`).
#[inline(always)]
pub fn stamp_at(buf: &mut [u8], sig: usize, seq: u32, tsc: u64) {
    let s = &mut buf[sig + 4..sig + SIG_LEN];
    s[..4].copy_from_slice(&seq.to_le_bytes());
    s[4..].copy_from_slice(&tsc.to_le_bytes());
}

/// Rewrites the flow field of a frame built by `build` (untagged), for a sender that
/// numbers flows across ports. Only the signature changes: address and port stay.
pub fn set_flow(buf: &mut [u8], flow: u16) {
    buf[SIG_OFFSET + 2..SIG_OFFSET + 4].copy_from_slice(&flow.to_le_bytes());
}

/// A signature read back from a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig {
    pub flow: u16,
    pub seq: u32,
    pub tsc: u64,
}

/// Reads the signature of a received frame: Some only for IPv4 (untagged or behind one
/// 802.1Q tag, which a bridge in the path may add), UDP, first fragment, and our magic.
/// Anything else (ARP, IPv6, the DUT's own traffic, truncated frames) is None.
#[inline]
pub fn parse(buf: &[u8]) -> Option<Sig> {
    let ip = buf.get(l3_offset(buf)?..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.len() < IPV4_LEN || ip[0] >> 4 != 4 || ihl < IPV4_LEN || ip[9] != IPPROTO_UDP {
        return None;
    }
    // Later fragments carry payload bytes where the UDP header would be.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
        return None;
    }
    let sig = ip.get(ihl + UDP_LEN..ihl + UDP_LEN + SIG_LEN)?;
    if u16::from_le_bytes([sig[0], sig[1]]) != SIG_MAGIC {
        return None;
    }
    Some(Sig {
        flow: u16::from_le_bytes([sig[2], sig[3]]),
        seq: u32::from_le_bytes(sig[4..8].try_into().ok()?),
        tsc: u64::from_le_bytes(sig[8..16].try_into().ok()?),
    })
}

/// Where the IPv4 header starts: after the Ethernet header, or after one 802.1Q tag.
fn l3_offset(buf: &[u8]) -> Option<usize> {
    let ethertype = |at: usize| Some(u16::from_be_bytes(buf.get(at..at + 2)?.try_into().ok()?));
    match ethertype(12)? {
        ETHERTYPE_IPV4 => Some(ETH_LEN),
        ETHERTYPE_VLAN if ethertype(12 + VLAN_LEN)? == ETHERTYPE_IPV4 => Some(ETH_LEN + VLAN_LEN),
        _ => None,
    }
}

/// The Internet checksum (RFC 1071 §1): the one's complement of the one's complement sum
/// of the 16-bit big-endian words, an odd last byte padded with zero. Over a header with
/// its checksum field zeroed it gives the value to store (RFC 791 §3.1, big-endian); over
/// a header with a correct checksum it gives 0.
pub fn ipv4_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = hdr.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    // Add the carries back in (the end-around carry of one's complement addition).
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// True if `buf` is an Ethernet frame (untagged or with one 802.1Q tag) holding an IPv4
/// header with a correct checksum and a total length that fits in the frame.
#[cfg(test)]
pub fn verify_ipv4(buf: &[u8]) -> bool {
    let Some(ip) = l3_offset(buf).and_then(|l3| buf.get(l3..)) else { return false };
    let Some(&vihl) = ip.first() else { return false };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_LEN || ip.len() < ihl {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    ipv4_checksum(&ip[..ihl]) == 0 && (ihl..=ip.len()).contains(&total)
}

/// The frame sizes a run sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sizes {
    Fixed(usize),
    List(Vec<usize>),
    /// The common "simple IMIX": 64, 570 and 1518 bytes in the ratio 7:4:1 (RFC 6985
    /// explains how to name such mixes in a report).
    Imix,
}

/// One IMIX cycle, 7×64, 4×570, 1×1518, spread out so that any few consecutive packets
/// already carry about the right mix: a short window (one burst, one stats interval at a
/// low rate) should not see seven small frames in a row.
const IMIX: [usize; 12] = [64, 570, 64, 64, 570, 64, 1518, 570, 64, 64, 570, 64];

/// Parses `64`, `64,512,1518` or `imix`. Errors are one line naming the problem and the fix.
pub fn parse_sizes(s: &str) -> Result<Sizes, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("imix") {
        return Ok(Sizes::Imix);
    }
    if s.is_empty() {
        return Err("frame size list is empty: give sizes like 64 or 64,512,1518, or imix".into());
    }
    let mut list = s.split(',').map(|t| parse_size(t.trim())).collect::<Result<Vec<_>, _>>()?;
    Ok(if list.len() == 1 { Sizes::Fixed(list.remove(0)) } else { Sizes::List(list) })
}

fn parse_size(t: &str) -> Result<usize, String> {
    let n: usize = t.parse().map_err(|_| format!("frame size '{t}' is not a number: give bytes like 64,512,1518, or imix"))?;
    if !(MIN_FRAME..=MAX_FRAME).contains(&n) {
        return Err(format!("frame size {n} is out of range: use {MIN_FRAME} to {MAX_FRAME}"));
    }
    Ok(n)
}

impl Sizes {
    /// The sequence of frame sizes the sender cycles through.
    pub fn pattern(&self) -> Vec<usize> {
        match self {
            Sizes::Fixed(n) => vec![*n],
            Sizes::List(l) => l.clone(),
            Sizes::Imix => IMIX.to_vec(),
        }
    }

    /// Mean frame size over one cycle, FCS included: divides an L1 or L2 rate into pps.
    pub fn mean_frame(&self) -> f64 {
        let p = self.pattern();
        p.iter().sum::<usize>() as f64 / p.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.1 -> 10.1.0.1, id 0, DF, TTL 64, UDP. Checksums summed by hand:
    // 4500+002e+4000+4011+0a00+0001+0a01+0001 = d942, !d942 = 26bd (64-byte frame);
    // with total length 05dc the sum is def0, !def0 = 210f (1518-byte frame).
    const IP_64: [u8; 20] = [0x45, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xbd, 10, 0, 0, 1, 10, 1, 0, 1];
    const IP_1518: [u8; 20] = [0x45, 0x00, 0x05, 0xdc, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x21, 0x0f, 10, 0, 0, 1, 10, 1, 0, 1];
    const ETH: [u8; 14] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];

    #[test]
    fn builds_known_headers() {
        let spec = FlowSpec::default();
        for (frame, ip, udp) in
            [(64, IP_64, [0x04, 0x00, 0x13, 0x88, 0x00, 0x1a, 0, 0]), (1518, IP_1518, [0x04, 0x00, 0x13, 0x88, 0x05, 0xc8, 0, 0])]
        {
            let t = build(&spec, 0, frame);
            assert_eq!(t.bytes.len(), frame - FCS);
            assert_eq!(t.bytes[..14], ETH);
            assert_eq!(t.bytes[14..34], ip);
            assert_eq!(t.bytes[34..42], udp);
            assert_eq!(t.bytes[42..46], [0x5c, 0x9d, 0, 0]);
            assert!(t.bytes[46..].iter().all(|&b| b == 0));
            assert!(verify_ipv4(&t.bytes));
            assert_eq!(parse(&t.bytes), Some(Sig { flow: 0, seq: 0, tsc: 0 }));
        }
    }

    #[test]
    fn flows_vary_address_port_mac() {
        let spec = FlowSpec { flows: 70000, macs: 3, src_port: 65535, ..FlowSpec::default() };
        let t = build(&spec, 258, 64);
        assert_eq!(t.bytes[26..30], [10, 0, 1, 3]);
        assert_eq!(t.bytes[34..36], 1281u16.to_be_bytes()); // 65535 + 258 wraps to 1024 + 257
        assert_eq!(t.bytes[6..12], [2, 0, 0, 0, 0, 1]); // 258 % 3 == 0
        assert_eq!(parse(&t.bytes).unwrap().flow, 258);
        assert!(verify_ipv4(&t.bytes));
        assert_eq!(spec.src_mac_of(2), [2, 0, 0, 0, 0, 3]);
        let wrap = FlowSpec { src_mac: [2, 0, 0, 0xff, 0xff, 0xff], macs: 4, ..FlowSpec::default() };
        assert_eq!(wrap.src_mac_of(1), [2, 0, 0, 0, 0, 0]);
        let top = FlowSpec { src_ip: [255, 255, 255, 255], ..FlowSpec::default() };
        assert_eq!(top.src_ip_of(2), [0, 0, 0, 1]);
        assert_eq!(spec.src_port_of(64512), 65535);
        let low = FlowSpec { src_port: 80, ..FlowSpec::default() };
        assert_eq!((low.src_port_of(0), low.src_port_of(5)), (80, 80));
    }

    #[test]
    fn stamp_then_parse() {
        let mut t = build(&FlowSpec { flows: 65536, ..FlowSpec::default() }, 65535, 64);
        stamp(&mut t.bytes, 0xdead_beef, 0x0123_4567_89ab_cdef);
        assert_eq!(t.bytes[46..50], [0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(parse(&t.bytes), Some(Sig { flow: 65535, seq: 0xdead_beef, tsc: 0x0123_4567_89ab_cdef }));
        assert!(verify_ipv4(&t.bytes), "stamping must not touch the IPv4 header");
        set_flow(&mut t.bytes[..SIG_OFFSET + SIG_LEN], 7);
        assert_eq!(parse(&t.bytes), Some(Sig { flow: 7, seq: 0xdead_beef, tsc: 0x0123_4567_89ab_cdef }));
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: these bytes sum to ddf2; the checksum is its complement.
        assert_eq!(ipv4_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        assert_eq!(ipv4_checksum(&IP_64), 0);
        assert_eq!(ipv4_checksum(&[0xff]), 0x00ff); // odd length: padded with a zero byte
    }

    #[test]
    fn parse_rejects_foreign_frames() {
        let t = build(&FlowSpec::default(), 0, 64);
        let mut magic = t.bytes.clone();
        magic[42] ^= 1;
        assert_eq!(parse(&magic), None);
        let mut arp = t.bytes.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp), None);
        assert!(!verify_ipv4(&arp));
        let mut tcp = t.bytes.clone();
        tcp[23] = 6;
        assert_eq!(parse(&tcp), None);
        let mut frag = t.bytes.clone();
        frag[21] = 1; // fragment offset 8 bytes
        assert_eq!(parse(&frag), None);
        assert_eq!(parse(&t.bytes[..SIG_OFFSET + SIG_LEN - 1]), None);
        assert_eq!(parse(&t.bytes[..13]), None);
        assert_eq!(parse(&[]), None);
        let mut bad_sum = t.bytes.clone();
        bad_sum[24] ^= 1;
        assert!(!verify_ipv4(&bad_sum));
        assert!(!verify_ipv4(&t.bytes[..40]), "total length beyond the buffer");
    }

    #[test]
    fn parse_behind_vlan_tag() {
        let mut t = build(&FlowSpec { flows: 8, ..FlowSpec::default() }, 7, 128);
        stamp(&mut t.bytes, 42, 99);
        let mut tagged = t.bytes[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]); // VLAN 5
        tagged.extend_from_slice(&t.bytes[12..]);
        assert_eq!(parse(&tagged), Some(Sig { flow: 7, seq: 42, tsc: 99 }));
        assert!(verify_ipv4(&tagged));
        tagged[16] = 0x86; // 0x86dd inside the tag: IPv6
        tagged[17] = 0xdd;
        assert_eq!(parse(&tagged), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_sizes("64"), Ok(Sizes::Fixed(64)));
        assert_eq!(parse_sizes(" 64, 512,1518 "), Ok(Sizes::List(vec![64, 512, 1518])));
        assert_eq!(parse_sizes("IMIX"), Ok(Sizes::Imix));
        assert_eq!(parse_sizes("9018"), Ok(Sizes::Fixed(9018)));
        for (s, needle) in [
            ("50", "frame size 50 is out of range: use 64 to 9018"),
            ("9019", "out of range"),
            ("64,,128", "'' is not a number"),
            ("64b", "'64b' is not a number"),
            ("", "empty"),
        ] {
            let e = parse_sizes(s).unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
        assert_eq!(Sizes::Fixed(64).pattern(), [64]);
        assert_eq!(Sizes::List(vec![64, 128]).mean_frame(), 96.0);
    }

    #[test]
    fn imix_mix_and_mean() {
        let p = Sizes::Imix.pattern();
        let count = |n| p.iter().filter(|&&s| s == n).count();
        assert_eq!((p.len(), count(64), count(570), count(1518)), (12, 7, 4, 1));
        // Spread out: never more than two 64-byte frames in a row, even across the wrap.
        let twice: Vec<_> = p.iter().chain(&p).collect();
        assert!(twice.windows(3).all(|w| w.iter().any(|&&s| s != 64)));
        // (7*64 + 4*570 + 1518) / 12 = 4246 / 12 = 353.83...
        assert_eq!(Sizes::Imix.mean_frame(), 4246.0 / 12.0);
        assert!((Sizes::Imix.mean_frame() - 353.833).abs() < 0.001);
    }

    #[test]
    fn wire_rates() {
        assert_eq!(wire_bits(64), 672);
        assert_eq!((10e9 / wire_bits(64) as f64) as u64, 14_880_952);
        assert_eq!(l2_bits(1518), 12144);
    }
}
