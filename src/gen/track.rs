//! Sequence accounting for one flow at the receiver: in order, reordered, duplicate.
//!
//! Loss is not counted here. A gap in the sequence may be filled by a late packet a
//! moment later, and at the end of a run the packets still in flight look like a gap;
//! so loss is computed once, at the end, from what the sender says it sent (`lost`).

/// Sequence numbers remembered behind the highest seen, for duplicate detection.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// What one received packet was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Above every sequence number seen so far (possibly after a gap).
    InOrder,
    /// Below the highest seen and not seen before (RFC 4737's reordered packet: it
    /// arrived after a packet sent later). Also every packet more than `WINDOW` behind
    /// the highest, which may in truth be a duplicate: we no longer remember.
    Reordered,
    /// Seen before, within the window.
    Duplicate,
}

/// One flow's receive state: the highest sequence number, extended to 64 bits so that
/// the 32-bit wire value can wrap, and a bitmap of the last `WINDOW` numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    highest: Option<u64>,
    /// Bit `s % WINDOW` is set if `s` in `highest - WINDOW + 1 ..= highest` was received.
    seen: [u64; WORDS],
    unique: u64,
    duplicates: u64,
    reordered: u64,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies and counts one packet. No allocation; the loop that clears the window
    /// runs once per sequence number skipped, at most `WINDOW` times, and only on a gap.
    #[inline]
    pub fn record(&mut self, seq: u32) -> Class {
        let Some(high) = self.highest else {
            self.highest = Some(u64::from(seq));
            self.set(u64::from(seq));
            self.unique = 1;
            return Class::InOrder;
        };
        // RFC 1982 serial-number arithmetic: the wire value is taken as the one nearest to
        // the highest, within 2^31 either side, which extends it across the u32 wrap.
        let delta = seq.wrapping_sub(high as u32) as i32;
        if delta > 0 {
            let s = high + delta as u64;
            self.slide(high, s);
            self.highest = Some(s);
            self.unique += 1;
            return Class::InOrder;
        }
        let back = u64::from(delta.unsigned_abs());
        // Out of the window, or before the first number this flow could have had.
        if back >= WINDOW || back > high {
            self.unique += 1;
            self.reordered += 1;
            return Class::Reordered;
        }
        if self.set(high - back) {
            self.duplicates += 1;
            Class::Duplicate
        } else {
            self.unique += 1;
            self.reordered += 1;
            Class::Reordered
        }
    }

    /// Distinct packets received (a packet from outside the window counts as distinct).
    pub fn unique(&self) -> u64 {
        self.unique
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// The highest sequence number seen, extended to 64 bits: the first packet's number,
    /// plus 2^32 for each wrap since.
    #[cfg(test)]
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Moves the window's top from `old` to `new`: the slots of the numbers in between
    /// still hold bits of numbers `WINDOW` older, which have now left the window.
    fn slide(&mut self, old: u64, new: u64) {
        if new - old >= WINDOW {
            self.seen = [0; WORDS];
        } else {
            for s in old + 1..new {
                self.seen[slot(s).0] &= !slot(s).1;
            }
        }
        self.seen[slot(new).0] |= slot(new).1;
    }

    /// Marks `s` received; true if it already was.
    fn set(&mut self, s: u64) -> bool {
        let (word, bit) = slot(s);
        let was = self.seen[word] & bit != 0;
        self.seen[word] |= bit;
        was
    }
}

/// Word index and bit mask of sequence number `s` in the window bitmap.
#[inline]
fn slot(s: u64) -> (usize, u64) {
    let i = s % WINDOW;
    ((i / 64) as usize, 1 << (i % 64))
}

/// Packets of a flow that never arrived, from the sender's count at the end of the run.
pub fn lost(tx: u64, unique_rx: u64) -> u64 {
    tx.saturating_sub(unique_rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Class::*;

    fn run(t: &mut SeqTracker, seqs: impl IntoIterator<Item = u32>) -> Vec<Class> {
        seqs.into_iter().map(|s| t.record(s)).collect()
    }

    #[test]
    fn in_order() {
        let mut t = SeqTracker::new();
        assert_eq!(t.highest(), None);
        assert!(run(&mut t, 0..5000).iter().all(|&c| c == InOrder));
        assert_eq!((t.unique(), t.duplicates(), t.reordered(), t.highest()), (5000, 0, 0, Some(4999)));
        assert_eq!(lost(5000, t.unique()), 0);
    }

    #[test]
    fn gap_then_late_packets() {
        let mut t = SeqTracker::new();
        assert_eq!(run(&mut t, [0, 1, 4, 5, 2, 3, 6]), [InOrder, InOrder, InOrder, InOrder, Reordered, Reordered, InOrder]);
        assert_eq!((t.unique(), t.reordered(), t.duplicates()), (7, 2, 0));
        assert_eq!(lost(7, t.unique()), 0, "late is not lost");
        assert_eq!(lost(9, t.unique()), 2);
        assert_eq!(lost(5, 7), 0);
    }

    #[test]
    fn duplicates_near_and_far() {
        let mut t = SeqTracker::new();
        run(&mut t, 0..1000);
        assert_eq!(t.record(999), Duplicate);
        assert_eq!(t.record(499), Duplicate); // 500 back
        assert_eq!(t.record(0), Duplicate); // 999 back: the window's oldest but one
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (1000, 3, 0));
    }

    #[test]
    fn wraps_around_u32_max() {
        let mut t = SeqTracker::new();
        let seqs = [u32::MAX - 2, u32::MAX - 1, 1, u32::MAX, 0, 2, u32::MAX, 1];
        assert_eq!(run(&mut t, seqs), [InOrder, InOrder, InOrder, Reordered, Reordered, InOrder, Duplicate, Duplicate]);
        assert_eq!(t.highest(), Some((1 << 32) + 2));
        assert_eq!((t.unique(), t.reordered(), t.duplicates()), (6, 2, 2));
    }

    #[test]
    fn far_behind_is_reordered() {
        let mut t = SeqTracker::new();
        run(&mut t, 0..=6000);
        assert_eq!(t.record(1000), Reordered, "5000 behind: outside the window, cannot tell");
        assert_eq!(t.record(6000 - 1024), Reordered, "just outside");
        assert_eq!(t.record(6000 - 1023), Duplicate, "just inside");
        let mut early = SeqTracker::new();
        run(&mut early, [3, 4]);
        assert_eq!(early.record(u32::MAX), Reordered, "before the flow's first number");
        assert_eq!(early.highest(), Some(4));
    }

    #[test]
    fn window_slides_on_jumps() {
        let mut t = SeqTracker::new();
        run(&mut t, 0..=10);
        // A jump of less than the window: slots 11..=1023 and 0..=5 are reused.
        assert_eq!(t.record(1029), InOrder);
        assert_eq!(t.record(1026), Reordered, "slot 2 still held seq 2's bit");
        assert_eq!(t.record(8), Duplicate, "8 is 1021 behind: still remembered");
        assert_eq!(t.record(5), Reordered, "5 is 1024 behind: forgotten");
        assert_eq!(t.record(1029), Duplicate);
        // A jump of more than the window clears it all.
        assert_eq!(t.record(5000), InOrder);
        assert_eq!(t.record(4000), Reordered);
        assert_eq!(t.record(4000), Duplicate);
        assert_eq!(t.record(3977), Reordered, "1023 behind: in the window, not seen");
        assert_eq!(t.record(3000), Reordered, "2000 behind");
        assert_eq!(t.record(5001), InOrder);
        assert_eq!(t.record(4000), Duplicate);
        assert_eq!((t.unique(), t.duplicates(), t.reordered()), (19, 4, 5));
    }
}
