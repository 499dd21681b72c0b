//! VXLAN (RFC 7348) over IPv4: the outer headers a VTEP puts in front of a frame, built
//! once per remote VTEP and finished per frame (lengths, the IPv4 checksum, the UDP
//! source port from the inner flow), and the checks a received outer frame passes before
//! its inner frame is handed to the bridge.
//!
//! Outer frame: Ethernet (14) + IPv4 without options (20) + UDP (8) + VXLAN (8) = 50
//! bytes in front of the inner Ethernet frame (§5). The UDP checksum is sent as 0, which
//! RFC 7348 §5 allows over IPv4 ("SHOULD be transmitted as zero"); a received non-zero
//! one is not checked (the inner frame's own checksums protect its payload). DF is set:
//! an underlay that cannot carry the frame must say so, not fragment it (§4.3).

use std::net::Ipv4Addr;

use super::csum;
use super::l3::{ETHERTYPE_IPV4, ETH_LEN, IPV4_LEN, PROTO_UDP};

/// Bytes in front of the inner frame.
pub const OVERHEAD: usize = ETH_LEN + IPV4_LEN + 8 + 8;
/// IANA's port for VXLAN (§5).
pub const PORT: u16 = 4789;
/// The "I" flag: the VNI is valid (§5); every other flag bit is reserved, sent as 0.
pub const FLAG_I: u8 = 0x08;

/// One remote VTEP's outer headers, ready but for the per-frame fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub bytes: [u8; OVERHEAD],
    /// The IPv4 checksum of the template with total length 0 (per frame the length is
    /// added, RFC 1624).
    csum0: u16,
}

impl Outer {
    /// The outer headers from `src_mac` (the underlay interface's) to `dst_mac` (the
    /// next hop towards `remote`), `local` to `remote`, to UDP port `port`, VNI `vni`.
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], local: Ipv4Addr, remote: Ipv4Addr, port: u16, vni: u32) -> Outer {
        let mut b = [0u8; OVERHEAD];
        b[0..6].copy_from_slice(&dst_mac);
        b[6..12].copy_from_slice(&src_mac);
        b[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = &mut b[ETH_LEN..ETH_LEN + IPV4_LEN];
        ip[0] = 0x45;
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = PROTO_UDP;
        ip[12..16].copy_from_slice(&local.octets());
        ip[16..20].copy_from_slice(&remote.octets());
        let csum0 = csum::checksum(ip);
        let udp = &mut b[ETH_LEN + IPV4_LEN..ETH_LEN + IPV4_LEN + 8];
        udp[2..4].copy_from_slice(&port.to_be_bytes());
        let vx = &mut b[ETH_LEN + IPV4_LEN + 8..];
        vx[0] = FLAG_I;
        vx[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
        Outer { bytes: b, csum0 }
    }

    /// Writes the outer headers for an inner frame of `inner_len` bytes into `out` (its
    /// first `OVERHEAD` bytes, in front of the inner frame), the UDP source port `sport`.
    #[inline(always)]
    pub fn write(&self, out: &mut [u8], inner_len: usize, sport: u16) {
        out[..OVERHEAD].copy_from_slice(&self.bytes);
        let ip_len = (IPV4_LEN + 16 + inner_len) as u16;
        let ip = ETH_LEN;
        out[ip + 2..ip + 4].copy_from_slice(&ip_len.to_be_bytes());
        // RFC 1624 eqn. 3: the total length went from 0 to ip_len.
        let c = csum::update16(self.csum0, 0, ip_len);
        out[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        let udp = ETH_LEN + IPV4_LEN;
        out[udp..udp + 2].copy_from_slice(&sport.to_be_bytes());
        out[udp + 4..udp + 6].copy_from_slice(&((16 + inner_len) as u16).to_be_bytes());
    }
}

/// The UDP source port for an inner frame: a hash of its addresses (and ports, when it
/// carries IPv4 or IPv6 with TCP/UDP in the bytes given), in the dynamic range
/// 49152–65535 as §5 recommends, so that the underlay's ECMP spreads flows and keeps each
/// in order.
#[inline(always)]
pub fn source_port(inner: &[u8]) -> u16 {
    let word = |at: usize| -> u64 { inner.get(at..at + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default())) };
    // MACs and, past an untagged IPv4 header, addresses and ports: the first 42 bytes.
    let mut h = word(0) ^ word(8).rotate_left(17) ^ word(26).rotate_left(31) ^ word(34).rotate_left(47);
    h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 32;
    0xc000 | (h as u16 & 0x3fff)
}

/// Why a received outer frame is not a VXLAN frame for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Shorter than the outer headers plus an inner Ethernet header.
    Short,
    /// The I flag clear: no valid VNI (§5; the reserved bits are ignored, as §5 says a
    /// receiver must).
    Flags,
}

/// A received outer frame's VNI, source and destination addresses, where its inner
/// frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap {
    pub vni: u32,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub inner: usize,
}

/// Reads a received VXLAN frame whose outer IPv4 header starts at `l3` and whose UDP
/// header is at `l4` (the router checked both and the destination port): its VNI, outer
/// source and the inner frame's offset.
pub fn decap(f: &[u8], l3: usize, l4: usize) -> Result<Decap, Bad> {
    let vx = l4 + 8;
    if f.len() < vx + 8 + ETH_LEN {
        return Err(Bad::Short);
    }
    if f[vx] & FLAG_I == 0 {
        return Err(Bad::Flags);
    }
    let vni = u32::from_be_bytes([0, f[vx + 4], f[vx + 5], f[vx + 6]]);
    let src = Ipv4Addr::new(f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15]);
    let dst = Ipv4Addr::new(f[l3 + 16], f[l3 + 17], f[l3 + 18], f[l3 + 19]);
    Ok(Decap { vni, src, dst, inner: vx + 8 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::wire::l3;
    use proptest::prelude::*;

    fn inner() -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    /// Against a frame scapy built (`Ether()/IP(flags=DF, ttl=64, id=0)/UDP(sport,
    /// dport=4789, chksum=0)/VXLAN(vni=5001, flags=0x08)/inner`, scripts/fixtures.py).
    #[test]
    fn encap_matches_the_fixture() {
        let want: &[u8] = include_bytes!("../../../tests/fixtures/vxlan.bin");
        let o = Outer::new([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 2], Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 2, 2), PORT, 5001);
        let inner = inner();
        let mut out = vec![0u8; OVERHEAD + inner.len()];
        out[OVERHEAD..].copy_from_slice(&inner);
        o.write(&mut out, inner.len(), 0xc123);
        assert_eq!(out, want);
    }

    proptest! {
        /// Encapsulate anything, read it back: the router's IPv4 parser accepts the outer
        /// header (checksum, lengths), decap finds the VNI, source and the inner frame.
        #[test]
        fn round_trip(vni in 0u32..1 << 24, len in 14usize..9000, a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), sport in any::<u16>()) {
            let (local, remote) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let o = Outer::new([2; 6], [4; 6], local, remote, PORT, vni);
            let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut f = vec![0u8; OVERHEAD + len];
            f[OVERHEAD..].copy_from_slice(&inner);
            o.write(&mut f, len, sport);
            let h = l3::parse_ipv4(&f[ETH_LEN..]).expect("outer IPv4 valid");
            prop_assert_eq!((h.src, h.dst, h.proto, h.total, h.df), (local, remote, PROTO_UDP, f.len() - ETH_LEN, true));
            let d = decap(&f, ETH_LEN, ETH_LEN + IPV4_LEN).unwrap();
            prop_assert_eq!(d, Decap { vni, src: local, dst: remote, inner: OVERHEAD });
            prop_assert_eq!(&f[d.inner..], &inner[..]);
            prop_assert_eq!(u16::from_be_bytes([f[36], f[37]]), PORT);
        }
    }

    #[test]
    fn bad_frames_say_why() {
        let o = Outer::new([2; 6], [4; 6], Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2), PORT, 7);
        let mut f = vec![0u8; OVERHEAD + 14];
        o.write(&mut f, 14, 1);
        assert!(decap(&f, 14, 34).is_ok());
        assert_eq!(decap(&f[..OVERHEAD + 13], 14, 34), Err(Bad::Short));
        f[42] = 0;
        assert_eq!(decap(&f, 14, 34), Err(Bad::Flags));
    }

    #[test]
    fn source_ports_spread_and_stay_in_range() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            let mut f = inner();
            f[26..30].copy_from_slice(&i.to_be_bytes());
            let p = source_port(&f);
            assert!(p >= 0xc000);
            seen.insert(p);
            assert_eq!(p, source_port(&f), "one flow, one port");
        }
        assert!(seen.len() > 900, "{}", seen.len());
    }
}
