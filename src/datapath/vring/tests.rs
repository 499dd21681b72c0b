//! The ring code against a simulated driver: well-formed traffic arrives intact in every
//! layout a driver may choose; hostile descriptors are refused with their cause, never a
//! panic, an access outside guest memory or a packet to the wrong place.

use std::sync::Arc;

use proptest::prelude::*;

use super::chain::{self, Chain, ChainError, Rules, F_INDIRECT, F_NEXT, F_WRITE, MAX_SEGS};
use super::net::{self, BytesFrame, EditedFrame, Frame, GuestFrame, NetHdr, RxError, RxFormat};
use super::offload::TxOffers;
use super::queue::{Broken, Vq, AVAIL_F_NO_INTERRUPT};
use super::sim::{Driver, BUFS, MEM};
use super::{rx_reserve, tx_frame};
use crate::guest::{Desc, GuestMemory};

const HDR: u32 = 12;

/// A sender that negotiated every offload.
const ALL: TxOffers = TxOffers { csum: true, tso4: true, tso6: true };

fn frame(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn hdr_bytes(h: NetHdr) -> Vec<u8> {
    h.to_bytes().to_vec()
}

/// One frame sent in each layout a driver may use: all in one buffer, header apart,
/// header split over two buffers, many small buffers, an indirect table.
#[test]
fn tx_reads_the_header_and_frame_in_any_layout() {
    let h = NetHdr { flags: 1, gso_type: 0, hdr_len: 0, gso_size: 0, csum_start: 34, csum_offset: 16, num_buffers: 0 };
    let f = frame(300, 7);
    let whole = [hdr_bytes(h), f.clone()].concat();
    let layouts: Vec<Vec<usize>> = vec![vec![312], vec![12, 300], vec![5, 7, 300], vec![12, 100, 100, 100], (0..39).map(|_| 8).collect()];
    for (li, cuts) in layouts.iter().enumerate() {
        for indirect in [false, true] {
            let mut d = Driver::new(256);
            let mut bufs = Vec::new();
            let mut at = 0;
            for &c in cuts {
                let c = c.min(whole.len() - at);
                let g = d.buffer(c as u32, &whole[at..at + c]);
                bufs.push((g, c as u32));
                at += c;
            }
            let head = if indirect { d.post_indirect(&bufs, false) } else { d.post(&bufs, false) };
            d.publish();
            let mut vq = Vq::new(d.ring(), 0, 0, false);
            assert_eq!(vq.pending(), Ok(1));
            let mut c = Chain::default();
            let got = tx_frame(&mut vq, 0, HDR, true, ALL, &mut c).unwrap_or_else(|e| panic!("layout {li} indirect {indirect}: {e:?}"));
            assert_eq!(got, h);
            assert_eq!(c.head, head);
            let gf = GuestFrame::of(d.mem.as_ref(), &c, HDR);
            let mut back = vec![0u8; gf.len() as usize];
            assert_eq!(gf.read_some(0, &mut back), f.len());
            assert_eq!(back, f, "layout {li}");
            vq.take(1);
            vq.put(c.head, 0);
            assert!(vq.publish(), "interrupts wanted by default");
            assert_eq!(d.take_used(), vec![(u32::from(head), 0)]);
        }
    }
}

/// A frame placed in a guest's receive buffers: one big buffer, or mergeable buffers
/// smaller than the frame (num_buffers counts them); the bytes read back intact.
#[test]
fn rx_fills_one_buffer_or_merges_several() {
    for (mergeable, buf, flen) in [(false, 2048u32, 1514usize), (true, 1536, 1514), (true, 1536, 9000), (true, 4096, 65000)] {
        let mut d = Driver::new(256);
        let mut posted = Vec::new();
        for _ in 0..64 {
            let g = d.buffer(buf, &[]);
            posted.push(g);
            d.post(&[(g, buf)], true);
        }
        d.publish();
        let mut vq = Vq::new(d.ring(), 0, 0, false);
        let avail = vq.pending().unwrap();
        let fmt = RxFormat { hdr_len: HDR, mergeable };
        let mut chains = vec![Chain::default(); 64];
        let f = frame(flen, 3);
        let n = rx_reserve(&mut vq, 0, avail, fmt, false, flen as u32, &mut chains).unwrap();
        let expect = (flen as u32 + HDR).div_ceil(buf);
        assert_eq!(u32::from(n), expect, "buffers for {flen} B in {buf} B buffers");
        let mut written = vec![0u32; n as usize];
        assert!(net::fill(d.mem.as_ref(), fmt, NetHdr::default(), &BytesFrame(&f), &chains[..n as usize], &mut written));
        vq.take(n);
        for (c, w) in chains[..n as usize].iter().zip(&written) {
            vq.put(c.head, *w);
        }
        vq.publish();
        let used = d.take_used();
        assert_eq!(used.len(), n as usize);
        assert_eq!(used.iter().map(|u| u.1).sum::<u32>(), flen as u32 + HDR);
        // Read back what the guest driver would: header in the first buffer, then the frame.
        let mut got = Vec::new();
        for (i, &(id, len)) in used.iter().enumerate() {
            assert_eq!(id as usize, i, "in order");
            got.extend(d.read(posted[i], len as usize));
        }
        let h = NetHdr::from_bytes(got[..12].try_into().unwrap());
        assert_eq!(h.num_buffers as usize, used.len());
        assert_eq!(&got[12..], &f[..]);
    }
}

#[test]
fn rx_without_room_takes_nothing_and_too_small_is_refused() {
    let mut d = Driver::new(16);
    let g = d.buffer(100, &[]);
    d.post(&[(g, 100)], true);
    d.publish();
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    let avail = vq.pending().unwrap();
    let mut chains = vec![Chain::default(); 4];
    let fmt = RxFormat { hdr_len: HDR, mergeable: true };
    assert_eq!(rx_reserve(&mut vq, 0, avail, fmt, false, 500, &mut chains), Err((RxError::NoRoom, 0)));
    let fmt = RxFormat { hdr_len: HDR, mergeable: false };
    assert_eq!(rx_reserve(&mut vq, 0, avail, fmt, false, 500, &mut chains), Err((RxError::TooBig, 1)));
    assert_eq!(rx_reserve(&mut vq, 0, avail, fmt, false, 80, &mut chains), Ok(1));
}

/// Guest to guest in one copy, with each VLAN edit applied on the way: the receiver
/// gets exactly the edited frame.
#[test]
fn guest_to_guest_copies_with_vlan_edits() {
    let mem = Arc::new(GuestMemory::simulated(&[(0, MEM)]));
    let mut tx = Driver::in_mem(mem.clone(), 0, 64);
    let mut rx = Driver::in_mem(mem.clone(), 0x4000, 64);
    let mut untagged = frame(64, 9);
    untagged[12..14].copy_from_slice(&[0x08, 0x00]);
    let tag = [0x81, 0x00, 0x00, 0x0a];
    let tagged = [&untagged[..12], &tag[..], &untagged[12..]].concat();
    for (src, head, cut, want) in [
        (untagged.clone(), [&untagged[..12], &tag[..]].concat(), 12u32, tagged.clone()),
        (tagged.clone(), untagged[..12].to_vec(), 16, untagged.clone()),
        (tagged.clone(), [&tagged[..14], &[0x00, 0x14][..]].concat(), 16, [&tagged[..14], &[0x00, 0x14][..], &tagged[16..]].concat()),
    ] {
        let whole = [hdr_bytes(NetHdr::default()), src].concat();
        let g = tx.buffer(whole.len() as u32, &whole);
        tx.post(&[(g, whole.len() as u32)], false);
        tx.publish();
        let b = rx.buffer(2048, &[]);
        rx.post(&[(b, 2048)], true);
        rx.publish();
        let mut tvq = Vq::new(tx.ring(), tx.avail_idx.wrapping_sub(1), tx.used_seen, false);
        let mut rvq = Vq::new(rx.ring(), rx.avail_idx.wrapping_sub(1), rx.used_seen, false);
        let mut c = Chain::default();
        tx_frame(&mut tvq, 0, HDR, false, ALL, &mut c).unwrap();
        let gf = GuestFrame::of(mem.as_ref(), &c, HDR);
        let ed = EditedFrame { inner: &gf, head: &head, cut };
        let mut chains = vec![Chain::default(); 2];
        let fmt = RxFormat { hdr_len: HDR, mergeable: true };
        let n = rx_reserve(&mut rvq, 0, 1, fmt, false, ed.len(), &mut chains).unwrap();
        let mut w = [0u32; 2];
        assert!(net::fill(mem.as_ref(), fmt, NetHdr::default(), &ed, &chains[..n as usize], &mut w));
        assert_eq!(rx.read(b + 12, want.len()), want);
        assert_eq!(w[0] as usize, want.len() + 12);
        tvq.take(1);
        tvq.put(c.head, 0);
        tvq.publish();
        rvq.take(n);
        rvq.put(chains[0].head, w[0]);
        rvq.publish();
        assert_eq!(tx.take_used().len(), 1);
        assert_eq!(rx.take_used(), vec![(u32::from(chains[0].head), w[0])]);
    }
}

#[test]
fn notifications_follow_flags_or_event_idx() {
    let mut d = Driver::new(16);
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    d.set_avail_flags(AVAIL_F_NO_INTERRUPT);
    vq.put(0, 0);
    assert!(!vq.publish(), "the driver asked for no interrupts");
    assert!(!vq.publish(), "nothing new: no publish");
    d.set_avail_flags(0);
    vq.put(1, 0);
    assert!(vq.publish());
    // EVENT_IDX: notify only when used_event falls in (old, new].
    let mut vq = Vq::new(d.ring(), 0, 0, true);
    d.set_used_event(5);
    for i in 0..3 {
        vq.put(i, 0);
    }
    assert!(!vq.publish(), "0..3 does not pass 5");
    for i in 0..4 {
        vq.put(i, 0);
    }
    assert!(vq.publish(), "3..7 passes 5");
    let _ = d.take_used();
}

#[test]
fn an_avail_index_jump_breaks_the_queue() {
    let d = Driver::new(64);
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    d.set_avail_idx(64);
    assert_eq!(vq.pending(), Ok(64));
    d.set_avail_idx(65);
    assert_eq!(vq.pending(), Err(Broken));
    d.set_avail_idx(1);
    assert_eq!(vq.pending(), Err(Broken), "stays broken");
}

fn walk_one(d: &Driver, head: u16, write: bool, indirect: bool) -> Result<Chain, ChainError> {
    let mut c = Chain::default();
    let mut h = 0;
    chain::walk(&d.ring(), head, Rules { write, indirect, max_len: 1 << 20 }, &mut h, &mut c).map(|_| c)
}

/// Each rule of the module doc, broken once.
#[test]
fn hostile_chains_are_refused_by_cause() {
    let mut d = Driver::new(8);
    let g = d.buffer(64, &[]);
    let desc = |addr, len, flags, next| Desc { addr, len, flags, next };
    // Head out of range.
    assert_eq!(walk_one(&d, 8, false, true).err(), Some(ChainError::Index));
    // next out of range.
    d.write_desc(0, desc(g, 64, F_NEXT, 9));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Index));
    // A self-loop, and a two-descriptor loop.
    d.write_desc(0, desc(g, 64, F_NEXT, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Loop));
    d.write_desc(0, desc(g, 64, F_NEXT, 1));
    d.write_desc(1, desc(g, 64, F_NEXT, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Loop));
    // Direction: a writable buffer in a chain the device reads, and the other way.
    d.write_desc(0, desc(g, 64, F_WRITE, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Direction));
    d.write_desc(0, desc(g, 64, 0, 0));
    assert_eq!(walk_one(&d, 0, true, true).err(), Some(ChainError::Direction));
    // Outside guest memory, and an end that wraps.
    d.write_desc(0, desc(MEM - 10, 64, 0, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Addr));
    d.write_desc(0, desc(u64::MAX - 8, 64, 0, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Addr));
    // Zero-length descriptors are refused (QEMU and libvhost-user do too).
    d.write_desc(0, desc(g, 0, F_NEXT, 1));
    d.write_desc(1, desc(g, 64, 0, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Empty));
    // Indirect: not negotiated, with NEXT, odd length, too long, nested.
    let t = d.buffer(32, &[desc(g, 8, F_NEXT, 1).to_bytes(), desc(g, 8, 0, 0).to_bytes()].concat());
    d.write_desc(0, desc(t, 32, F_INDIRECT, 0));
    assert_eq!(walk_one(&d, 0, false, false).err(), Some(ChainError::Indirect));
    assert_eq!(walk_one(&d, 0, false, true).map(|c| c.total), Ok(16));
    d.write_desc(0, desc(t, 32, F_INDIRECT | F_NEXT, 1));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Indirect));
    d.write_desc(0, desc(t, 30, F_INDIRECT, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Indirect));
    d.write_desc(0, desc(t, 16 * 9, F_INDIRECT, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Indirect), "more entries than the queue size");
    let nested = d.buffer(16, &desc(t, 32, F_INDIRECT, 0).to_bytes());
    d.write_desc(0, desc(nested, 16, F_INDIRECT, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Indirect));
    // An indirect table that loops, and one whose next leaves it.
    let lp = d.buffer(32, &[desc(g, 8, F_NEXT, 1).to_bytes(), desc(g, 8, F_NEXT, 0).to_bytes()].concat());
    d.write_desc(0, desc(lp, 32, F_INDIRECT, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Loop));
    let out = d.buffer(16, &desc(g, 8, F_NEXT, 5).to_bytes());
    d.write_desc(0, desc(out, 16, F_INDIRECT, 0));
    assert_eq!(walk_one(&d, 0, false, true).err(), Some(ChainError::Index));
    // Too long, too many buffers.
    let mut c = Chain::default();
    let mut h = 0;
    d.write_desc(0, desc(g, 64, 0, 0));
    assert_eq!(
        chain::walk(&d.ring(), 0, Rules { write: false, indirect: true, max_len: 63 }, &mut h, &mut c).err(),
        Some(ChainError::TooLong)
    );
    let many: Vec<u8> = (0..MAX_SEGS + 1).flat_map(|k| desc(g, 1, F_NEXT, k as u16 + 1).to_bytes()).collect();
    let big = Driver::new(128);
    let t = big.mem.write(BUFS, &many);
    assert!(t);
    big.write_desc(0, desc(BUFS, many.len() as u32, F_INDIRECT, 0));
    assert_eq!(walk_one(&big, 0, false, true).err(), Some(ChainError::TooManySegs));
    // A header shorter than the virtio-net header.
    let mut d = Driver::new(8);
    let g = d.buffer(8, &[0; 8]);
    d.post(&[(g, 8)], false);
    d.publish();
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    assert!(tx_frame(&mut vq, 0, HDR, true, ALL, &mut Chain::default()).is_err());
}

/// A buffer that straddles two adjacent regions is split at the border (the slow path);
/// the bytes read back whole.
#[test]
fn a_buffer_across_two_regions_is_read_whole() {
    let mem = Arc::new(GuestMemory::simulated(&[(0, 1 << 20), (1 << 20, 1 << 20)]));
    let mut d = Driver::in_mem(mem.clone(), 0, 16);
    let whole = [hdr_bytes(NetHdr::default()), frame(1000, 5)].concat();
    let g = (1 << 20) - 300;
    assert!(mem.write(g, &whole));
    d.post(&[(g, whole.len() as u32)], false);
    d.publish();
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    let mut c = Chain::default();
    tx_frame(&mut vq, 0, HDR, false, ALL, &mut c).unwrap();
    assert_eq!(c.n, 2, "one segment per region");
    let gf = GuestFrame::of(mem.as_ref(), &c, HDR);
    let mut back = vec![0u8; 1000];
    assert_eq!(gf.read_some(0, &mut back), 1000);
    assert_eq!(back, whole[12..]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 8 } else { 512 }, .. ProptestConfig::default() })]

    /// Arbitrary descriptor tables and available entries: walking never panics, a chain
    /// it accepts lies wholly in guest memory with the direction asked for and at most
    /// MAX_SEGS buffers, and a refused one is refused by one of the named causes.
    #[test]
    fn arbitrary_descriptors_never_escape(
        descs in proptest::collection::vec((0u64..(MEM + 4096), 0u32..70000, 0u16..8, 0u16..40), 32),
        heads in proptest::collection::vec(0u16..40, 1..16),
        write in any::<bool>(),
        indirect in any::<bool>(),
    ) {
        let d = Driver::new(32);
        for (i, (addr, len, flags, next)) in descs.iter().enumerate() {
            // Indirect tables point into buffer memory that holds more random descriptors.
            d.write_desc(i as u16, Desc { addr: *addr, len: *len, flags: *flags, next: *next });
        }
        let junk: Vec<u8> = descs.iter().flat_map(|(a, l, f, n)| Desc { addr: *a % MEM, len: *l % 4096, flags: *f, next: *n % 8 }.to_bytes()).collect();
        prop_assert!(d.mem.write(BUFS, &junk));
        let ring = d.ring();
        for &h in &heads {
            let mut c = Chain::default();
            let mut hint = 0;
            match chain::walk(&ring, h, Rules { write, indirect, max_len: 1 << 20 }, &mut hint, &mut c) {
                Ok(()) => {
                    prop_assert!(c.n <= MAX_SEGS);
                    prop_assert_eq!(c.segs().iter().map(|s| s.len).sum::<u32>(), c.total);
                    for s in c.segs() {
                        prop_assert!(s.gpa + u64::from(s.len) <= MEM);
                    }
                }
                Err(e) => prop_assert!(matches!(e, ChainError::Index | ChainError::Loop | ChainError::Indirect | ChainError::Direction | ChainError::Addr | ChainError::TooLong | ChainError::TooManySegs | ChainError::ShortHeader | ChainError::Empty)),
            }
        }
    }

    /// Well-formed chains of random shapes walk to exactly the buffers posted.
    #[test]
    fn posted_chains_walk_to_what_was_posted(
        shapes in proptest::collection::vec(proptest::collection::vec(1u32..3000, 1..6), 1..10),
        indirect in any::<bool>(),
    ) {
        let mut d = Driver::new(64);
        let mut want = Vec::new();
        for s in &shapes {
            let bufs: Vec<(u64, u32)> = s.iter().map(|&l| (d.buffer(l, &[]), l)).collect();
            let head = if indirect { d.post_indirect(&bufs, true) } else { d.post(&bufs, true) };
            want.push((head, bufs));
        }
        d.publish();
        let mut vq = Vq::new(d.ring(), 0, 0, false);
        prop_assert_eq!(vq.pending(), Ok(shapes.len() as u16));
        for (k, (head, bufs)) in want.iter().enumerate() {
            let mut c = Chain::default();
            let mut hint = 0;
            let h = vq.head(k as u16);
            prop_assert_eq!(h, *head);
            let rules = Rules { write: true, indirect: true, max_len: u32::MAX };
            prop_assert!(chain::walk(vq.ring(), h, rules, &mut hint, &mut c).is_ok());
            let got: Vec<(u64, u32)> = c.segs().iter().map(|s| (s.gpa, s.len)).collect();
            prop_assert_eq!(&got, bufs);
        }
    }

    /// Frames of any length through mergeable buffers of any size arrive intact, with
    /// num_buffers and the used lengths adding up.
    #[test]
    fn merged_frames_arrive_intact(flen in 1usize..20000, buf in 64u32..5000, seed in any::<u8>()) {
        let mut d = Driver::new(512);
        let need = (flen as u32 + HDR).div_ceil(buf) as usize;
        prop_assume!(need <= 256);
        let mut posted = Vec::new();
        for _ in 0..need {
            let g = d.buffer(buf, &[]);
            posted.push(g);
            d.post(&[(g, buf)], true);
        }
        d.publish();
        let mut vq = Vq::new(d.ring(), 0, 0, false);
        let avail = vq.pending().unwrap();
        let fmt = RxFormat { hdr_len: HDR, mergeable: true };
        let mut chains = vec![Chain::default(); 256];
        let f = frame(flen, seed);
        let n = rx_reserve(&mut vq, 0, avail, fmt, false, flen as u32, &mut chains).unwrap() as usize;
        prop_assert_eq!(n, need);
        let mut w = vec![0u32; n];
        prop_assert!(net::fill(d.mem.as_ref(), fmt, NetHdr::default(), &BytesFrame(&f), &chains[..n], &mut w));
        let mut got = Vec::new();
        for (g, len) in posted.iter().zip(&w) {
            got.extend(d.read(*g, *len as usize));
        }
        prop_assert_eq!(u16::from_le_bytes([got[10], got[11]]) as usize, n);
        prop_assert_eq!(&got[12..], &f[..]);
    }
}

/// Exclusive egress: a send handle is its vring's only writer exactly when no other live
/// handle maps to the same enabled pair.
#[test]
fn tx_vring_is_exclusive_unless_another_handle_shares_it() {
    use super::port::tx_vring;
    // Guest-RX vrings are the even ones: pair p's is 2p; bit 2p of `enabled`.
    let en = |pairs: &[u16]| pairs.iter().fold(0u64, |m, p| m | 1 << (2 * p));
    // One worker, one pair: alone.
    assert_eq!(tx_vring(0, en(&[0]), 0b1), (0, true));
    // Two workers on a one-pair guest: both on vring 0, shared.
    assert_eq!(tx_vring(0, en(&[0]), 0b11), (0, false));
    assert_eq!(tx_vring(1, en(&[0]), 0b11), (0, false));
    // Two workers, two pairs: one each.
    assert_eq!(tx_vring(0, en(&[0, 1]), 0b11), (0, true));
    assert_eq!(tx_vring(1, en(&[0, 1]), 0b11), (2, true));
    // Three workers on two pairs: 0 and 2 share pair 0, 1 has pair 1 alone.
    assert_eq!(tx_vring(0, en(&[0, 1]), 0b111), (0, false));
    assert_eq!(tx_vring(1, en(&[0, 1]), 0b111), (2, true));
    assert_eq!(tx_vring(2, en(&[0, 1]), 0b111), (0, false));
    // Only pair 1 enabled: everyone lands there.
    assert_eq!(tx_vring(0, en(&[1]), 0b1), (2, true));
    // Nothing enabled: no vring to own.
    assert_eq!(tx_vring(0, 0, 0b1), (0, false));
}

/// The walking budget: a receiver whose 63 chains of 64 one-byte buffers cannot hold a
/// frame is walked again and again only until the burst's budget is spent, then not at
/// all until the next burst; a fresh burst walks again. Without it every retry re-walked
/// them all.
#[test]
fn a_burst_walks_at_most_its_budget() {
    let budget = super::queue::WALK_BUDGET;
    let mut d = Driver::new(1024);
    let g = d.buffer(64, &[]);
    let chain: Vec<(u64, u32)> = (0..64).map(|k| (g + k, 1)).collect();
    for _ in 0..63 {
        d.post(&chain, true);
    }
    d.publish();
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    let avail = vq.begin().unwrap();
    let fmt = RxFormat { hdr_len: HDR, mergeable: true };
    let mut chains = vec![Chain::default(); 64];
    // 63 × 64 bytes < 9000: no room, each try after walking up to 63 chains.
    let (mut tries, mut walked) = (0u32, 0u32);
    while vq.may_walk() {
        chains.iter_mut().for_each(|c| c.hops = 0);
        assert_eq!(rx_reserve(&mut vq, 0, avail, fmt, false, 9000, &mut chains), Err((RxError::NoRoom, 0)));
        walked += chains.iter().map(|c| c.hops).sum::<u32>();
        tries += 1;
        assert!(tries < 100);
    }
    assert_eq!(tries, budget.div_ceil(63 * 64), "whole tries, then a cut one");
    assert!(walked >= budget && walked < budget + 64, "walked {walked}, budget {budget}");
    chains.iter_mut().for_each(|c| c.hops = 0);
    assert_eq!(rx_reserve(&mut vq, 0, avail, fmt, false, 100, &mut chains), Err((RxError::NoRoom, 0)), "even a frame that fits waits");
    assert!(chains.iter().all(|c| c.hops == 0), "not one descriptor read");
    // A new burst: the budget is back; a frame that fits is placed.
    vq.begin().unwrap();
    assert_eq!(rx_reserve(&mut vq, 0, avail, fmt, false, 100, &mut chains), Ok(2));
}

/// The sender's side: a burst of chains that cost more than the budget stops at the
/// budget (the rest stays available, nothing is refused), and the next burst goes on.
#[test]
fn a_sender_burst_stops_at_its_budget() {
    let mut d = Driver::new(1024);
    let whole = [hdr_bytes(NetHdr::default()), frame(100, 1)].concat();
    let g = d.buffer(whole.len() as u32, &whole);
    // 64 buffers per chain: the header, then the frame a byte at a time (and the rest).
    let mut bufs: Vec<(u64, u32)> = vec![(g, HDR)];
    bufs.extend((0..62).map(|k| (g + u64::from(HDR) + k, 1)));
    bufs.push((g + u64::from(HDR) + 62, whole.len() as u32 - HDR - 62));
    for _ in 0..200 {
        d.post(&bufs, false);
    }
    d.publish();
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    let n = vq.begin().unwrap();
    assert_eq!(n, 200);
    let mut c = Chain::default();
    let mut taken = 0u16;
    let r = loop {
        match tx_frame(&mut vq, taken, HDR, false, ALL, &mut c) {
            Ok(_) if taken + 1 < n => taken += 1,
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(r, Err(ChainError::Capped));
    assert_eq!(u32::from(taken), super::queue::WALK_BUDGET.div_ceil(64), "chains of 64 descriptors within the budget");
    vq.take(taken);
    vq.begin().unwrap();
    assert!(tx_frame(&mut vq, 0, HDR, false, ALL, &mut c).is_ok(), "the next burst goes on");
}

/// The header is read and checked where the chain is: a bad one is refused with its
/// own cause (the chain returned with the head that was walked); without offloads
/// negotiated the header is not even looked at; a good one comes back rebuilt.
#[test]
fn tx_frame_checks_the_header() {
    let tcp = crate::datapath::wire::tso::tests::tcp_frame(false, false, 1000, 0x18);
    let good = NetHdr { flags: 1, gso_type: net::GSO_TCPV4, hdr_len: 3, gso_size: 536, csum_start: 34, csum_offset: 16, num_buffers: 5 };
    for (h, tx, want) in [
        (good, ALL, Ok(NetHdr { hdr_len: 54, num_buffers: 0, ..good })),
        (NetHdr { gso_size: 1, ..good }, ALL, Err(ChainError::BadHdr)),
        (NetHdr { gso_size: 1, ..good }, TxOffers::default(), Ok(NetHdr::default())),
        (NetHdr { flags: 0x40, ..NetHdr::default() }, ALL, Err(ChainError::BadHdr)),
    ] {
        for split in [false, true] {
            let mut d = Driver::new(16);
            let whole = [hdr_bytes(h), tcp.clone()].concat();
            let g = d.buffer(whole.len() as u32, &whole);
            // One descriptor, or the header and the frame apart (the walk's path).
            let head =
                if split { d.post(&[(g, 5), (g + 5, whole.len() as u32 - 5)], false) } else { d.post(&[(g, whole.len() as u32)], false) };
            d.publish();
            let mut vq = Vq::new(d.ring(), 0, 0, false);
            let mut c = Chain::default();
            let got = tx_frame(&mut vq, 0, HDR, false, tx, &mut c);
            assert_eq!(got, want, "{h:?} split {split}");
            assert_eq!(c.head, head);
            let mut hint = 0;
            let one = super::tx_one(&vq, d.mem.as_ref(), 0, HDR, tx, &mut hint).map(|o| o.3);
            assert_eq!(one, if split { None } else { want.ok() }, "the fast path agrees");
        }
    }
}

/// During a migration every publish (and every change of the kick flags) logs the used
/// ring; without a logger nothing is logged.
#[test]
fn a_logging_queue_logs_its_used_ring_on_every_write() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let d = Driver::new(256);
    let logged = Arc::new(AtomicU64::new(0));
    let mut vq = Vq::new(d.ring(), 0, 0, false);
    vq.put(0, 0);
    vq.publish();
    let l = logged.clone();
    vq.log_with(Box::new(move |len| {
        assert_eq!(len, 4 + 8 * 256 + 2, "the whole used area");
        l.fetch_add(1, Ordering::Relaxed);
    }));
    assert!(!vq.publish(), "nothing new");
    assert_eq!(logged.load(Ordering::Relaxed), 0, "no write, no log");
    vq.put(1, 0);
    vq.publish();
    assert_eq!(logged.load(Ordering::Relaxed), 1);
    vq.want_kicks(true);
    assert_eq!(logged.load(Ordering::Relaxed), 2);
}

/// One device pass over a sender's and a receiver's queues, as the own path's guest to
/// guest forwarding does it (walk, header check, reserve, copy, return both sides):
/// (frames taken, delivered, refused by the sender's chain or header, refused by the
/// receiver's buffers, left for lack of room). Stops at a broken ring.
fn device_pass(tvq: &mut Vq, rvq: &mut Vq, mem: &GuestMemory) -> Option<[u64; 5]> {
    let mut out = [0u64; 5];
    let n = tvq.begin().ok()?;
    let mut avail = rvq.begin().ok()?;
    let fmt = RxFormat { hdr_len: HDR, mergeable: true };
    let mut chains = vec![Chain::default(); 64];
    let (mut k, mut rk) = (0u16, 0u16);
    let mut c = Chain::default();
    let mut heads = Vec::new();
    while k < n {
        match tx_frame(tvq, k, HDR, true, ALL, &mut c) {
            Err(ChainError::Capped) => break,
            Err(_) => out[2] += 1,
            Ok(_) => {
                let f = GuestFrame::of(mem, &c, HDR);
                match rx_reserve(rvq, rk, avail, fmt, true, f.len(), &mut chains) {
                    Ok(m) => {
                        let mut w = vec![0u32; usize::from(m)];
                        let ok = net::fill(mem, fmt, NetHdr::default(), &f, &chains[..usize::from(m)], &mut w);
                        for (b, len) in chains[..usize::from(m)].iter().zip(&w) {
                            rvq.put(b.head, if ok { *len } else { 0 });
                        }
                        rk += m;
                        out[if ok { 1 } else { 3 }] += 1;
                    }
                    Err((RxError::NoRoom, _)) => {
                        match rvq.pending() {
                            Ok(a) if a != avail => avail = a,
                            _ => out[4] += 1,
                        }
                        if out[4] > 0 {
                            break;
                        }
                        continue;
                    }
                    Err((_, m)) => {
                        for b in &chains[..usize::from(m)] {
                            rvq.put(b.head, 0);
                        }
                        rk += m;
                        out[3] += 1;
                    }
                }
            }
        }
        heads.push(c.head);
        k += 1;
    }
    out[0] = u64::from(k);
    tvq.take(k);
    tvq.put_read(heads.into_iter());
    tvq.publish();
    rvq.take(rk);
    rvq.publish();
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// A guest rewriting its descriptors, available entries, buffers and headers while
    /// the device walks them (a second thread, writing without pause): no panic, no
    /// access outside guest memory (every access is checked; under Miri the sequential
    /// tests prove the checks themselves), and exact accounting: every chain taken from
    /// the sender is returned once, and is either delivered or refused by one cause.
    /// Not under Miri: the guest's writes race the device's reads by design, which
    /// Miri rightly reports as a data race in Rust's model.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_guest_rewriting_its_rings_mid_walk_breaks_nothing(seed in any::<u64>(), frames in 1usize..48, bufs in 1usize..64) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mem = Arc::new(GuestMemory::simulated(&[(0, MEM)]));
        let mut tx = Driver::in_mem(mem.clone(), 0, 64);
        let mut rx = Driver::in_mem(mem.clone(), 0x8000, 64);
        for i in 0..frames {
            let f = [hdr_bytes(NetHdr::default()), frame(60 + i * 37, i as u8)].concat();
            let g = tx.buffer(f.len() as u32, &f);
            tx.post(&[(g, f.len() as u32)], false);
        }
        for _ in 0..bufs {
            let g = rx.buffer(1536, &[]);
            rx.post(&[(g, 1536)], true);
        }
        let mut tvq = Vq::new(tx.ring(), 0, 0, false);
        let mut rvq = Vq::new(rx.ring(), 0, 0, false);
        let stop = AtomicBool::new(false);
        let writes = std::sync::atomic::AtomicU64::new(0);
        let total = std::thread::scope(|sc| {
            let m = mem.clone();
            sc.spawn(|| {
                let m = m;
                let mut x = seed | 1;
                let mut rnd = || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                while !stop.load(Ordering::Relaxed) {
                    let r = rnd();
                    // Descriptor tables, available rings (entries and, rarely, the
                    // index), and the first bytes of buffers (headers): both queues.
                    let at = match r % 4 {
                        0 => rnd() % (16 * 64),
                        1 => 0x8000 + rnd() % (16 * 64),
                        // The available ring: its entries, and now and then its index.
                        2 => 16 * 64 + rnd() % 132,
                        _ => BUFS + rnd() % 0x10000,
                    };
                    let v = rnd().to_le_bytes();
                    m.write(at, &v[..(1 + r as usize % 8)]);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
            // The guest is busy rewriting before it makes anything available, and goes
            // on while the device works.
            while writes.load(Ordering::Relaxed) < 100 {
                std::hint::spin_loop();
            }
            tx.publish();
            rx.publish();
            let mut total = [0u64; 5];
            for _ in 0..64 {
                match device_pass(&mut tvq, &mut rvq, &mem) {
                    Some(o) => total.iter_mut().zip(o).for_each(|(t, v)| *t += v),
                    None => break,
                }
                if tvq.pending() == Ok(0) {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            total
        });
        let [taken, delivered, bad_tx, bad_rx, _] = total;
        prop_assert_eq!(taken, delivered + bad_tx + bad_rx, "every chain taken is delivered or refused once: {:?}", total);
        // Every chain taken came back: the used index moved by exactly that much.
        prop_assert_eq!(u64::from(tvq.ring().used_idx()), taken);
        prop_assert_eq!(tvq.positions(), (taken as u16, taken as u16));
    }
}
