//! The virtio-net header check: any header with any frame. A header it accepts must be
//! one every later step can act on without leaving the frame: the checksum offsets in
//! bounds (completing it succeeds), a GSO request cut into at most MAX_PIECES pieces of
//! at most the headers plus gso_size each, never DATA_VALID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmdswitch::datapath::vring::net::{NetHdr, HDR_F_DATA_VALID, HDR_F_NEEDS_CSUM, HDR_MAX};
use pmdswitch::datapath::vring::offload::{self, check, Plan, TxOffers, CHECK_BYTES};
use pmdswitch::datapath::wire::{csum, tso};

fuzz_target!(|data: &[u8]| {
    if data.len() < HDR_MAX + 1 {
        return;
    }
    let h = NetHdr::from_bytes(data[..HDR_MAX].try_into().unwrap());
    let o = data[HDR_MAX];
    let tx = TxOffers { csum: o & 1 != 0, tso4: o & 2 != 0, tso6: o & 4 != 0 };
    let mut frame = data[HDR_MAX + 1..].to_vec();
    let len = frame.len() as u32;
    let first = &frame[..frame.len().min(CHECK_BYTES)];
    let Some(c) = check(&h, len, first, tx) else { return };
    assert_eq!(c.flags & HDR_F_DATA_VALID, 0, "never DATA_VALID");
    assert_eq!(c.num_buffers, 0);
    if c.flags & HDR_F_NEEDS_CSUM != 0 {
        assert!(u32::from(c.csum_start) + u32::from(c.csum_offset) + 2 <= len);
        assert!(csum::complete(&mut frame.clone(), usize::from(c.csum_start), usize::from(c.csum_offset)));
    }
    if c.gso_type != 0 {
        let mut seg = Vec::new();
        let (mut pieces, mut longest) = (0usize, 0usize);
        let r = offload::finish(&mut frame, &c, Plan::Segment, &mut seg, |p| {
            pieces += 1;
            longest = longest.max(p.len());
            true
        });
        assert!(r.is_some(), "a checked GSO frame can be cut");
        assert!(pieces <= tso::MAX_PIECES);
        assert!(longest <= usize::from(c.hdr_len) + usize::from(c.gso_size));
    }
});
