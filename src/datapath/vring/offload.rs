//! Checksum and TCP segmentation offloads between guests (virtio 1.1 §5.1.6.2, §5.1.6.4).
//!
//! A guest that negotiated VIRTIO_NET_F_CSUM may send a frame whose L4 checksum is only
//! started (`NEEDS_CSUM`: the pseudo-header sum at `csum_start + csum_offset`), and with
//! HOST_TSO4/6 a TCP frame of up to 64 KiB to be cut at `gso_size`. The frame goes on as
//! it is, header and all, to a guest that negotiated the matching GUEST_CSUM/GUEST_TSO4/6
//! (a 64 KiB segment crosses as one frame); for any other receiver — a guest without
//! them, a NIC, a tap, the library's vhost path — the work is done here, in software:
//! the checksum completed, or the frame segmented into MSS-sized frames with complete
//! checksums (`wire::tso`).
//!
//! A sender's header is never trusted: [`check`] runs where the header is read, before
//! any plan, and what it returns is a header rebuilt from what was verified. That is the
//! only header a receiver ever gets from us, so a receiving guest never sees a flag,
//! offset or GSO request another guest made up.

use crate::dpdk::vhost::own::{bits, OwnDevice};

use super::net::{NetHdr, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, HDR_F_DATA_VALID, HDR_F_NEEDS_CSUM};
use crate::datapath::wire::{csum, tso};

/// The smallest `gso_size` accepted: Linux's TCP_MIN_MSS (88 bytes, include/net/tcp.h),
/// below which no Linux stack segments. With it a 64 KiB frame makes at most
/// [`tso::MAX_PIECES`] pieces (a `gso_size` of 1 would make 65 000, each with two
/// checksums: CPU taken from every other tenant of the worker).
pub const GSO_SIZE_MIN: u16 = 88;

/// The largest: a 9000-byte jumbo MTU's payload. A piece longer than its egress can
/// carry is dropped whole, never cut short.
pub const GSO_SIZE_MAX: u16 = 9000;

/// How many of a frame's first bytes [`check`] needs to see its headers: Ethernet with
/// two tags (22), IPv4 with options (60) or IPv6 (40), TCP with options (60).
pub const CHECK_BYTES: usize = 160;

/// What a sending guest negotiated (its HOST_* features): a header may ask only for
/// these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxOffers {
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
}

impl TxOffers {
    pub fn of(dev: &OwnDevice) -> TxOffers {
        TxOffers { csum: dev.has(bits::NET_F_CSUM), tso4: dev.has(bits::NET_F_HOST_TSO4), tso6: dev.has(bits::NET_F_HOST_TSO6) }
    }

    /// The header can ask for anything at all (else it is not even read).
    #[inline(always)]
    pub fn any(self) -> bool {
        self.csum || self.tso4 || self.tso6
    }
}

/// Checks header `h` of a frame of `len` bytes whose first bytes are `first` (up to
/// [`CHECK_BYTES`]), sent by a guest that negotiated `tx`, and returns the header
/// rebuilt from what was verified; None: drop the frame (`bad_vnet_hdr`).
///
/// virtio 1.1 §5.1.6.2.1 (driver requirements) and what Linux's
/// `virtio_net_hdr_to_skb` enforces: flags only NEEDS_CSUM (DATA_VALID is the device's
/// to set, "the driver MUST NOT set" it: ignored, never passed on; RSC_INFO and unknown
/// bits refused), NEEDS_CSUM only with CSUM negotiated and `csum_start + csum_offset + 2
/// ≤ len`; a GSO kind only TCPV4/TCPV6 with HOST_TSO4/6 (no ECN, no UFO: never offered),
/// always with NEEDS_CSUM, on a frame that is Ethernet/IPv4-or-6/TCP of that version
/// with the checksum at the TCP header's checksum field, `hdr_len ≤ len`, and
/// `gso_size` within [[`GSO_SIZE_MIN`], [`GSO_SIZE_MAX`]]. The frame's bytes may change
/// after the check (the guest owns them): what the check guarantees is bounds, which
/// every later step relies on, never the content.
pub fn check(h: &NetHdr, len: u32, first: &[u8], tx: TxOffers) -> Option<NetHdr> {
    let flags = h.flags & !HDR_F_DATA_VALID;
    if flags & !HDR_F_NEEDS_CSUM != 0 || h.gso_type & GSO_ECN != 0 {
        return None;
    }
    let partial = flags & HDR_F_NEEDS_CSUM != 0;
    let (start, off) = (u32::from(h.csum_start), u32::from(h.csum_offset));
    if partial && (!tx.csum || start + off + 2 > len) {
        return None;
    }
    let mut out = NetHdr::default();
    if partial {
        (out.flags, out.csum_start, out.csum_offset) = (HDR_F_NEEDS_CSUM, h.csum_start, h.csum_offset);
    }
    let v6 = match h.gso_type {
        GSO_NONE => return Some(out),
        GSO_TCPV4 if tx.tso4 => false,
        GSO_TCPV6 if tx.tso6 => true,
        _ => return None,
    };
    let t = tso::parse_tcp(first)?;
    let fits = partial
        && t.v6 == v6
        && start as usize == t.l4
        && off == 16
        && u32::from(h.hdr_len) <= len
        && (GSO_SIZE_MIN..=GSO_SIZE_MAX).contains(&h.gso_size);
    fits.then_some(NetHdr { gso_type: h.gso_type, gso_size: h.gso_size, hdr_len: t.payload as u16, ..out })
}

/// What a receiver accepts from us (its GUEST_* features).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxOffloads {
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
}

impl RxOffloads {
    /// A receiver that takes only finished frames (a NIC, a tap, an mbuf path).
    pub const NONE: RxOffloads = RxOffloads { csum: false, tso4: false, tso6: false };

    /// What a guest negotiated (TSO needs checksum offload too: a segment's checksum is
    /// partial, §5.1.6.4.1).
    pub fn of(dev: &OwnDevice) -> RxOffloads {
        let csum = dev.has(bits::NET_F_GUEST_CSUM);
        RxOffloads { csum, tso4: csum && dev.has(bits::NET_F_GUEST_TSO4), tso6: csum && dev.has(bits::NET_F_GUEST_TSO6) }
    }
}

/// What to do with a frame a guest sent with header `h`, for a receiver accepting `rx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do: a plain header (`num_buffers` set by the copy).
    Plain,
    /// The sender's header goes with the frame: the receiver finishes the work.
    Pass(NetHdr),
    /// Complete the checksum here, then a plain header.
    Checksum,
    /// Cut into `gso_size` segments here, each with complete checksums.
    Segment,
}

/// The plan for `h` (a header [`check`] returned) towards `rx`.
#[inline]
pub fn plan(h: &NetHdr, rx: RxOffloads) -> Plan {
    let gso = h.gso_type & !GSO_ECN;
    if gso != GSO_NONE {
        let takes = match gso {
            GSO_TCPV4 => rx.tso4,
            GSO_TCPV6 => rx.tso6,
            // UFO and friends are never offered.
            _ => false,
        };
        return if takes { Plan::Pass(*h) } else { Plan::Segment };
    }
    if h.flags & HDR_F_NEEDS_CSUM != 0 {
        return if rx.csum { Plan::Pass(*h) } else { Plan::Checksum };
    }
    Plan::Plain
}

/// The sender's header for a frame whose front grew or shrank by `delta` bytes (a VLAN
/// tag pushed or popped on the way): the offsets into the frame move with it.
pub fn shifted(mut h: NetHdr, delta: i32) -> NetHdr {
    let mv = |v: u16| if v == 0 { 0 } else { (i32::from(v) + delta).clamp(0, 0xffff) as u16 };
    h.csum_start = mv(h.csum_start);
    h.hdr_len = mv(h.hdr_len);
    h
}

/// Does the software part of `plan` on the gathered frame `f` and hands every finished
/// frame to `out` (which returns false to stop). Returns how many, None if the frame
/// cannot be finished (offsets outside it, not TCP for segmentation).
pub fn finish(f: &mut [u8], h: &NetHdr, plan: Plan, seg: &mut Vec<u8>, mut out: impl FnMut(&[u8]) -> bool) -> Option<usize> {
    match plan {
        Plan::Plain | Plan::Pass(_) => {
            out(f);
            Some(1)
        }
        Plan::Checksum => csum::complete(f, usize::from(h.csum_start), usize::from(h.csum_offset)).then(|| {
            out(f);
            1
        }),
        Plan::Segment => tso::segment(f, usize::from(h.gso_size), seg, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_what_the_receiver_accepts() {
        let all = RxOffloads { csum: true, tso4: true, tso6: true };
        let csum_only = RxOffloads { csum: true, tso4: false, tso6: false };
        let plain = NetHdr::default();
        let partial = NetHdr { flags: HDR_F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..NetHdr::default() };
        let tso4 = NetHdr { gso_type: GSO_TCPV4, gso_size: 1448, hdr_len: 54, ..partial };
        let tso6 = NetHdr { gso_type: GSO_TCPV6 | GSO_ECN, ..tso4 };
        assert_eq!(plan(&plain, all), Plan::Plain);
        assert_eq!(plan(&partial, all), Plan::Pass(partial));
        assert_eq!(plan(&partial, RxOffloads::NONE), Plan::Checksum);
        assert_eq!(plan(&tso4, all), Plan::Pass(tso4));
        assert_eq!(plan(&tso4, csum_only), Plan::Segment);
        assert_eq!(plan(&tso6, all), Plan::Pass(tso6));
        assert_eq!(plan(&tso6, RxOffloads::NONE), Plan::Segment);
        let udp = NetHdr { gso_type: 3, ..partial };
        assert_eq!(plan(&udp, all), Plan::Segment, "UFO is never passed");
    }

    fn offers() -> TxOffers {
        TxOffers { csum: true, tso4: true, tso6: true }
    }

    /// A GSO_TCPV4/6 header for `tso::tests`' frame (no tag: TCP at 34, or 54 for v6).
    fn gso(v6: bool) -> NetHdr {
        let l4 = if v6 { 54 } else { 34 };
        let gso_type = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        NetHdr { flags: HDR_F_NEEDS_CSUM, gso_type, gso_size: 1448, csum_start: l4, csum_offset: 16, hdr_len: l4 + 20, num_buffers: 0 }
    }

    #[test]
    fn good_headers_come_back_rebuilt() {
        for v6 in [false, true] {
            let f = tso::tests::tcp_frame(v6, false, 3000, 0x18);
            let h = gso(v6);
            let sent = NetHdr { flags: h.flags | HDR_F_DATA_VALID, hdr_len: 7, num_buffers: 9, ..h };
            let got = check(&sent, f.len() as u32, &f[..CHECK_BYTES], offers()).expect("a good TSO header");
            assert_eq!(got, NetHdr { hdr_len: h.csum_start + 20, num_buffers: 0, ..h }, "DATA_VALID dropped, hdr_len ours");
        }
        let partial = NetHdr { flags: HDR_F_NEEDS_CSUM, csum_start: 34, csum_offset: 6, gso_size: 3, hdr_len: 9999, ..NetHdr::default() };
        let got = check(&partial, 100, &[], offers()).unwrap();
        assert_eq!(got, NetHdr { flags: HDR_F_NEEDS_CSUM, csum_start: 34, csum_offset: 6, ..NetHdr::default() }, "unused fields zeroed");
        let valid = NetHdr { flags: HDR_F_DATA_VALID, ..NetHdr::default() };
        assert_eq!(check(&valid, 60, &[], offers()), Some(NetHdr::default()), "a sender's DATA_VALID never reaches a receiver");
    }

    #[test]
    fn bad_headers_are_refused() {
        let f = tso::tests::tcp_frame(false, false, 3000, 0x18);
        let len = f.len() as u32;
        let h = gso(false);
        let bad = |h: NetHdr, tx: TxOffers| check(&h, len, &f[..CHECK_BYTES], tx).is_none();
        assert!(!bad(h, offers()));
        assert!(bad(NetHdr { gso_size: 1, ..h }, offers()), "gso_size 1: 65 000 pieces");
        assert!(bad(NetHdr { gso_size: GSO_SIZE_MIN - 1, ..h }, offers()));
        assert!(!bad(NetHdr { gso_size: GSO_SIZE_MIN, ..h }, offers()));
        assert!(bad(NetHdr { gso_size: GSO_SIZE_MAX + 1, ..h }, offers()));
        assert!(bad(NetHdr { gso_type: GSO_TCPV4 | GSO_ECN, ..h }, offers()), "ECN is never negotiated");
        assert!(bad(NetHdr { gso_type: GSO_TCPV6, ..h }, offers()), "a v6 request on a v4 frame");
        assert!(bad(NetHdr { gso_type: 3, ..h }, offers()), "UFO");
        assert!(bad(NetHdr { flags: 0, ..h }, offers()), "GSO without NEEDS_CSUM");
        assert!(bad(NetHdr { flags: HDR_F_NEEDS_CSUM | 4, ..h }, offers()), "RSC_INFO");
        assert!(bad(NetHdr { flags: 0x80, ..NetHdr::default() }, offers()), "unknown flag");
        assert!(bad(NetHdr { csum_start: 30, ..h }, offers()), "checksum not at the TCP header");
        assert!(bad(NetHdr { csum_offset: 6, ..h }, offers()), "checksum not the TCP one");
        assert!(bad(NetHdr { hdr_len: len as u16 + 1, ..h }, offers()));
        assert!(bad(h, TxOffers { tso4: false, ..offers() }), "TSO4 not negotiated");
        let partial = NetHdr { flags: HDR_F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..NetHdr::default() };
        assert!(bad(partial, TxOffers { csum: false, ..offers() }), "CSUM not negotiated");
        assert!(bad(NetHdr { csum_start: len as u16 - 17, ..partial }, offers()), "the checksum field past the end");
        assert!(!bad(NetHdr { csum_start: len as u16 - 18, ..partial }, offers()));
        assert!(bad(NetHdr { csum_start: 0xffff, csum_offset: 0xffff, ..partial }, offers()), "no u16 overflow");
        let mut udp = f.clone();
        udp[23] = 17;
        assert!(check(&h, len, &udp[..CHECK_BYTES], offers()).is_none(), "GSO_TCPV4 on a UDP frame");
        assert!(check(&h, len, &f[..40], offers()).is_none(), "headers not all seen");
    }

    #[test]
    fn a_pushed_tag_moves_the_offsets() {
        let h = NetHdr { flags: HDR_F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, hdr_len: 54, ..NetHdr::default() };
        let p = shifted(h, 4);
        assert_eq!((p.csum_start, p.hdr_len, p.csum_offset), (38, 58, 16));
        assert_eq!(shifted(p, -4), h);
        assert_eq!(shifted(NetHdr::default(), 4), NetHdr::default(), "absent offsets stay absent");
    }
}
