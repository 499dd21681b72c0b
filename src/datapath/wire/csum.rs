//! The Internet checksum (RFC 1071): a one's-complement sum of 16-bit words, and its
//! incremental update (RFC 1624) for a field that changes (a TTL, an address).

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd last byte is
/// the high half of a word), added to `acc`, not yet folded.
#[inline]
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut s = acc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Four words at once: their sum fits in 64 bits for any frame a switch sees.
        let v = u64::from_be_bytes(c.try_into().unwrap_or_default());
        s += (v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff);
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}

/// Folds a sum to 16 bits (end-around carry), in four fixed steps rather than a loop
/// until no carry is left: such a loop runs a data-dependent number of times, and on a
/// sum that changes every packet (a generator's timestamp) its exit branch mispredicts.
#[inline(always)]
pub fn fold(s: u64) -> u16 {
    // Below 2^33, then below 3·2^16, then at most 0x10001, then at most 0xffff; a step
    // on a value already below 2^16 leaves it as it is.
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Whether an IPv4 header (`hdr`, its whole length) sums to all ones, i.e. its checksum
/// is right. Native-order 32-bit words: the one's-complement sum does not depend on byte
/// order (RFC 1071 §2(B)), and a 20-byte header is five loads, not a loop.
#[inline(always)]
pub fn header_ok(hdr: &[u8]) -> bool {
    let mut s = 0u64;
    let mut w = hdr.chunks_exact(4);
    for c in &mut w {
        s += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    if !w.remainder().is_empty() {
        return fold(sum(hdr, 0)) == 0xffff;
    }
    fold(s) == 0xffff
}

/// The checksum of `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// RFC 1624 eqn. 3: the checksum `hc` of a header after one 16-bit word changed from `m`
/// to `m2`: HC' = ~(~HC + ~m + m').
#[inline]
pub fn update16(hc: u16, m: u16, m2: u16) -> u16 {
    !fold(u64::from(!hc) + u64::from(!m) + u64::from(m2))
}

/// Completes a partial checksum (virtio-net's NEEDS_CSUM, a Linux CHECKSUM_PARTIAL):
/// the 16 bits at `start + offset` hold the pseudo-header's sum, and the checksum over
/// `frame[start..]` (that field included) goes there. False if the offsets do not lie
/// in the frame.
pub fn complete(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start.saturating_add(offset);
    if start >= frame.len() || at.saturating_add(2) > frame.len() {
        return false;
    }
    let c = checksum(&frame[start..]);
    // A UDP checksum of 0 means "none"; RFC 768 sends all ones instead (harmless for TCP,
    // whose computed checksum is never 0 here but may legally be 0xffff).
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fold by the book: add the carries back in until there are none.
    fn fold_loop(mut s: u64) -> u16 {
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn fixed_fold_matches_the_loop_at_the_corners() {
        for s in
            [0, 1, 0xffff, 0x1_0000, 0x1_0001, 0x1_fffe, 0x1_ffff, 0xffff_ffff, 0x1_0000_0000, 0xffff_0000_ffff, u64::MAX, u64::MAX - 1]
        {
            assert_eq!(fold(s), fold_loop(s), "{s:#x}");
        }
    }

    proptest! {
        #[test]
        fn fixed_fold_matches_the_loop(s in any::<u64>(), small in 0u64..0x40_0000) {
            prop_assert_eq!(fold(s), fold_loop(s));
            prop_assert_eq!(fold(small), fold_loop(small));
        }
    }

    /// RFC 1071 §3's example: words 0001 f203 f4f5 f6f7 sum to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        // Odd length: the last byte is a word's high half.
        assert_eq!(fold(sum(&[0x01, 0x02, 0x03], 0)), 0x0102 + 0x0300);
    }

    /// The 8-byte fast loop agrees with a word-by-word sum for every length and
    /// alignment of the tail.
    #[test]
    fn wide_sum_matches_word_sum() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            let d = &data[..n];
            let mut s = 0u64;
            for w in d.chunks(2) {
                s += (u64::from(w[0]) << 8) | w.get(1).map_or(0, |&b| u64::from(b));
            }
            assert_eq!(fold(sum(d, 0)), fold(s), "n = {n}");
        }
    }

    /// The incremental update gives what a full recomputation gives (RFC 1624), for
    /// random headers and changes of one word, including the 0x0000/0xffff corner.
    #[test]
    fn incremental_update_matches_recomputation() {
        let mut x = 0x1234_5678u32;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..20_000 {
            let mut h: Vec<u8> = (0..20).map(|_| rnd() as u8).collect();
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            // Any word but the checksum's own (bytes 10..12).
            let k = (rnd() % 9) as usize;
            let w = if k >= 5 { 2 * k + 2 } else { 2 * k };
            let old = u16::from_be_bytes([h[w], h[w + 1]]);
            let new = if rnd() % 7 == 0 { 0xffff } else { rnd() as u16 };
            h[w..w + 2].copy_from_slice(&new.to_be_bytes());
            let inc = update16(c, old, new);
            h[10] = 0;
            h[11] = 0;
            let full = checksum(&h);
            // One's complement has two zeros; both are valid checksums of the same sum.
            assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff), "{inc:#x} vs {full:#x}");
        }
    }

    #[test]
    fn completing_a_partial_checksum() {
        // A UDP/IPv4 frame whose checksum field holds the pseudo-header sum.
        let mut f = vec![0u8; 14 + 20 + 8 + 10];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        let udp = 34;
        f[udp + 4..udp + 6].copy_from_slice(&18u16.to_be_bytes());
        for (i, b) in f[udp + 8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let pseudo = fold(sum(&f[26..34], 17 + 18));
        f[udp + 6..udp + 8].copy_from_slice(&pseudo.to_be_bytes());
        assert!(complete(&mut f, udp, 6));
        // Verifying: the sum over pseudo-header and segment folds to all ones.
        assert_eq!(fold(sum(&f[udp..], sum(&f[26..34], 17 + 18))), 0xffff);
        assert!(!complete(&mut f, udp, 100));
        assert!(!complete(&mut f, 1000, 0));
    }

    #[test]
    fn header_ok_agrees_with_the_checksum() {
        let mut h = [0x45u8, 0, 0, 28, 0, 7, 0x40, 0, 64, 17, 0, 0, 198, 18, 1, 1, 198, 19, 2, 1];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(header_ok(&h));
        for i in 0..h.len() {
            let mut b = h;
            b[i] ^= 0x10;
            assert!(!header_ok(&b), "byte {i} flipped");
        }
    }
}
