//! The chain walk and the receive-side reservation over guest memory the fuzzer writes
//! whole: descriptor table, available ring, indirect tables, buffers. Whatever it
//! writes: no panic, no access outside guest memory (every access is checked, and the
//! fuzzer's sanitizer would see one that is not), an accepted chain lies in guest memory
//! and sums to its length, a burst walks at most its budget plus one chain.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use pmdswitch::datapath::vring::chain::{Chain, MAX_SEGS};
use pmdswitch::datapath::vring::net::RxFormat;
use pmdswitch::datapath::vring::offload::TxOffers;
use pmdswitch::datapath::vring::queue::{Vq, WALK_BUDGET};
use pmdswitch::datapath::vring::{rx_reserve, tx_frame};
use pmdswitch::guest::{GuestMemory, SIM_HVA};

/// Guest memory: two regions (a buffer may straddle them), rings at the start.
const MEM: u64 = 0x10000;
const SIZE: u16 = 64;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (ctl, body) = data.split_at(4);
    let mem = Arc::new(GuestMemory::simulated(&[(0, MEM / 2), (MEM / 2, MEM / 2)]));
    // The fuzzer's bytes from gpa 0 on: descriptors (16 × 64), the available ring at
    // 0x400, then whatever the descriptors point at.
    let n = body.len().min(MEM as usize);
    assert!(mem.write(0, &body[..n]));
    let Some(ring) = mem.ring(SIM_HVA, SIM_HVA + 0x400, SIM_HVA + 0x800, SIZE) else { return };
    let mut vq = Vq::new(ring, u16::from_le_bytes([ctl[0], ctl[1]]), 0, ctl[2] & 1 != 0);
    let tx = TxOffers { csum: ctl[3] & 1 != 0, tso4: ctl[3] & 2 != 0, tso6: ctl[3] & 4 != 0 };
    let Ok(avail) = vq.begin() else { return };
    let mut c = Chain::default();
    let mut walked = 0u32;
    for k in 0..avail {
        if let Ok(_h) = tx_frame(&mut vq, k, 12, ctl[2] & 2 != 0, tx, &mut c) {
            assert!(c.n <= MAX_SEGS);
            assert_eq!(c.segs().iter().map(|s| u64::from(s.len)).sum::<u64>(), u64::from(c.total));
            for s in c.segs() {
                assert!(mem.span(s.gpa, s.len, &mut 0).is_some(), "an accepted buffer lies in guest memory");
            }
        }
        walked += c.hops;
        assert!(walked <= WALK_BUDGET + u32::from(SIZE) + 1, "walked {walked}");
    }
    // The same ring as a receiver's: reservations for a frame that needs several buffers.
    let Ok(avail) = vq.begin() else { return };
    let mut chains = vec![Chain::default(); 64];
    let fmt = RxFormat { hdr_len: 12, mergeable: ctl[2] & 4 != 0 };
    let mut k = 0u16;
    let mut tries = 0;
    while k < avail && tries < 256 {
        tries += 1;
        match rx_reserve(&mut vq, k, avail, fmt, ctl[2] & 2 != 0, 1500, &mut chains) {
            Ok(m) => k += m,
            Err((_, 0)) => break,
            Err((_, m)) => k += m,
        }
    }
});
