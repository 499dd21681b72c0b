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

use crate::dpdk::vhost::own::{bits, OwnDevice};

use super::net::{NetHdr, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, HDR_F_DATA_VALID, HDR_F_NEEDS_CSUM};
use crate::datapath::wire::{csum, tso};

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

/// The plan for `h` towards `rx`.
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
    if h.flags & HDR_F_DATA_VALID != 0 && rx.csum {
        return Plan::Pass(*h);
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
        let valid = NetHdr { flags: HDR_F_DATA_VALID, ..plain };
        assert_eq!(plan(&valid, all), Plan::Pass(valid));
        assert_eq!(plan(&valid, RxOffloads::NONE), Plan::Plain);
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
