//! TCP segmentation in software (what a NIC's TSO or Linux's GSO does), for a guest's
//! large TCP frame (virtio-net GSO_TCPV4/6) bound for a receiver that cannot take it
//! whole: the frame's headers repeated in front of each `mss`-sized piece of its payload,
//! IPv4 length/id/checksum, IPv6 payload length, TCP sequence number, flags and checksum
//! rewritten per piece (RFC 9293 §3.1; Linux `tcp_gso_segment` for the flag rules: FIN
//! and PSH on the last piece only, CWR on the first only).

use super::csum;

const ETH_VLAN: [u8; 2] = [0x81, 0x00];
const ETH_QINQ: [u8; 2] = [0x88, 0xa8];
const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];
const PROTO_TCP: u8 = 6;

/// The most pieces one frame is cut into: a 64 KiB frame at the smallest segment size
/// accepted (`vring::offload::GSO_SIZE_MIN`, 88) makes 745; anything asking for more is
/// refused whole rather than cut.
pub const MAX_PIECES: usize = 768;

/// Where a TCP frame's headers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFrame {
    /// Offsets of the IP header, the TCP header and the payload.
    pub l3: usize,
    pub l4: usize,
    pub payload: usize,
    pub v6: bool,
}

/// Finds the headers of an Ethernet (with up to two VLAN tags) / IPv4 or IPv6 (no
/// extension headers) / TCP frame.
pub fn parse_tcp(f: &[u8]) -> Option<TcpFrame> {
    let mut l3 = 12;
    let mut et = [*f.get(12)?, *f.get(13)?];
    while et == ETH_VLAN || et == ETH_QINQ {
        l3 += 4;
        et = [*f.get(l3)?, *f.get(l3 + 1)?];
    }
    l3 += 2;
    let (l4, v6) = match et {
        ETH_IPV4 => {
            let ihl = usize::from(f.get(l3)? & 0x0f) * 4;
            (f.get(l3 + 9) == Some(&PROTO_TCP) && ihl >= 20).then_some((l3 + ihl, false))?
        }
        ETH_IPV6 => (f.get(l3 + 6) == Some(&PROTO_TCP)).then_some((l3 + 40, true))?,
        _ => return None,
    };
    let doff = usize::from(f.get(l4 + 12)? >> 4) * 4;
    let payload = l4 + doff;
    (doff >= 20 && payload <= f.len()).then_some(TcpFrame { l3, l4, payload, v6 })
}

/// The TCP checksum of segment `seg` (TCP header and payload) between the addresses of
/// the IP header at `ip`, with the checksum field taken as 0.
fn tcp_checksum(ip: &[u8], v6: bool, seg: &[u8]) -> u16 {
    let len = seg.len() as u64;
    let pseudo = if v6 { csum::sum(&ip[8..40], len + u64::from(PROTO_TCP)) } else { csum::sum(&ip[12..20], len + u64::from(PROTO_TCP)) };
    // Sum the segment with its checksum field (bytes 16..18) skipped.
    let s = csum::sum(&seg[..16], pseudo);
    let s = csum::sum(&seg[18..], s);
    !csum::fold(s)
}

/// Cuts `frame` into frames of at most `mss` payload bytes each (with complete
/// checksums), handing each to `out` in order (which returns false to stop). `buf` is the
/// working space (grown to one segment once). Returns how many were handed over, or
/// None (nothing handed over) when the frame is not a TCP frame this parser reads, `mss`
/// is 0, it would make more than [`MAX_PIECES`] pieces, or a piece's IP length would not
/// fit its 16-bit field.
pub fn segment(frame: &[u8], mss: usize, buf: &mut Vec<u8>, mut out: impl FnMut(&[u8]) -> bool) -> Option<usize> {
    let t = parse_tcp(frame)?;
    if mss == 0 {
        return None;
    }
    let hdr = &frame[..t.payload];
    let payload = &frame[t.payload..];
    let longest = t.payload + mss.min(payload.len());
    if payload.len().div_ceil(mss) > MAX_PIECES || longest - t.l3 > usize::from(u16::MAX) {
        return None;
    }
    let seq0 = u32::from_be_bytes(frame[t.l4 + 4..t.l4 + 8].try_into().ok()?);
    let flags = frame[t.l4 + 13];
    let id0 = if t.v6 { 0 } else { u16::from_be_bytes([frame[t.l3 + 4], frame[t.l3 + 5]]) };
    let pieces = payload.len().div_ceil(mss).max(1);
    let mut sent = 0;
    for (i, chunk) in payload.chunks(mss).chain(payload.is_empty().then_some(&payload[..0])).enumerate() {
        buf.clear();
        buf.extend_from_slice(hdr);
        buf.extend_from_slice(chunk);
        let last = i + 1 == pieces;
        let l4len = buf.len() - t.l4;
        if t.v6 {
            let plen = (buf.len() - t.l3 - 40) as u16;
            buf[t.l3 + 4..t.l3 + 6].copy_from_slice(&plen.to_be_bytes());
        } else {
            let tot = (buf.len() - t.l3) as u16;
            buf[t.l3 + 2..t.l3 + 4].copy_from_slice(&tot.to_be_bytes());
            buf[t.l3 + 4..t.l3 + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            buf[t.l3 + 10..t.l3 + 12].copy_from_slice(&[0, 0]);
            let c = csum::checksum(&buf[t.l3..t.l4]);
            buf[t.l3 + 10..t.l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        let seq = seq0.wrapping_add((i * mss) as u32);
        buf[t.l4 + 4..t.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        // FIN (0x01) and PSH (0x08) only on the last piece, CWR (0x80) only on the first.
        let mut f = flags;
        if !last {
            f &= !0x09;
        }
        if i > 0 {
            f &= !0x80;
        }
        buf[t.l4 + 13] = f;
        let (ip, seg) = buf.split_at_mut(t.l4);
        let c = tcp_checksum(&ip[t.l3..], t.v6, seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        debug_assert_eq!(l4len, seg.len());
        sent += 1;
        if !out(buf) {
            break;
        }
    }
    Some(sent)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TCP frame over IPv4 or IPv6 (optionally behind a VLAN tag) with `n` payload bytes.
    pub fn tcp_frame(v6: bool, vlan: bool, n: usize, flags: u8) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        let payload: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5001u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xfffff000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        if v6 {
            f.extend_from_slice(&ETH_IPV6);
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((20 + n) as u16).to_be_bytes());
            ip[6] = PROTO_TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            ip[24..40].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f.extend(ip);
        } else {
            f.extend_from_slice(&ETH_IPV4);
            let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0, 198, 18, 0, 1, 198, 18, 1, 1];
            ip[2..4].copy_from_slice(&((40 + n) as u16).to_be_bytes());
            f.extend(ip);
        }
        f.extend(tcp);
        f.extend(payload);
        f
    }

    /// Checks a segment the way a receiver does: IPv4 header checksum, lengths, and the
    /// TCP checksum over the pseudo-header.
    fn valid(f: &[u8]) -> TcpFrame {
        let t = parse_tcp(f).expect("a TCP frame");
        if t.v6 {
            assert_eq!(usize::from(u16::from_be_bytes([f[t.l3 + 4], f[t.l3 + 5]])), f.len() - t.l3 - 40);
        } else {
            assert_eq!(csum::checksum(&f[t.l3..t.l4]), 0, "IPv4 header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([f[t.l3 + 2], f[t.l3 + 3]])), f.len() - t.l3);
        }
        let seg = &f[t.l4..];
        let c = u16::from_be_bytes([seg[16], seg[17]]);
        assert_eq!(tcp_checksum(&f[t.l3..], t.v6, seg), c, "TCP checksum");
        t
    }

    #[test]
    fn segments_carry_the_payload_with_valid_headers() {
        for v6 in [false, true] {
            for vlan in [false, true] {
                let f = tcp_frame(v6, vlan, 3500, 0x18 | 0x01 | 0x80);
                let t = parse_tcp(&f).unwrap();
                let mut buf = Vec::new();
                let mut segs: Vec<Vec<u8>> = Vec::new();
                let n = segment(&f, 1448, &mut buf, |s| {
                    segs.push(s.to_vec());
                    true
                })
                .unwrap();
                assert_eq!(n, 3);
                let mut payload = Vec::new();
                for (i, s) in segs.iter().enumerate() {
                    let st = valid(s);
                    assert_eq!(st, t, "headers in place");
                    let seq = u32::from_be_bytes(s[st.l4 + 4..st.l4 + 8].try_into().unwrap());
                    assert_eq!(seq, 0xfffff000u32.wrapping_add((i * 1448) as u32), "sequence numbers (wrapping)");
                    let fl = s[st.l4 + 13];
                    assert_eq!(fl & 0x09 != 0, i == 2, "FIN/PSH on the last only");
                    assert_eq!(fl & 0x80 != 0, i == 0, "CWR on the first only");
                    if !v6 {
                        assert_eq!(u16::from_be_bytes([s[st.l3 + 4], s[st.l3 + 5]]), 0x1234 + i as u16, "IPv4 id");
                    }
                    payload.extend_from_slice(&s[st.payload..]);
                }
                assert_eq!(payload, f[t.payload..], "the payload, in order, whole");
                assert_eq!(segs.iter().map(|s| s.len() - t.payload).collect::<Vec<_>>(), [1448, 1448, 604]);
            }
        }
    }

    #[test]
    fn what_is_not_tcp_is_refused() {
        let mut f = tcp_frame(false, false, 100, 0);
        f[12 + 2 + 9] = 17;
        assert_eq!(segment(&f, 1000, &mut Vec::new(), |_| true), None);
        assert_eq!(segment(&f[..30], 1000, &mut Vec::new(), |_| true), None);
        let f = tcp_frame(true, false, 100, 0);
        assert_eq!(segment(&f, 0, &mut Vec::new(), |_| true), None);
        let big = tcp_frame(false, false, 60000, 0);
        assert_eq!(segment(&big, 1, &mut Vec::new(), |_| true), None, "60 000 pieces");
        assert_eq!(segment(&big, 78, &mut Vec::new(), |_| true), None, "770 pieces");
        assert_eq!(segment(&big, 79, &mut Vec::new(), |_| true), Some(760));
        // A frame that fits in one piece is one valid segment.
        let n = segment(&f, 1000, &mut Vec::new(), |s| {
            valid(s);
            true
        });
        assert_eq!(n, Some(1));
    }
}
