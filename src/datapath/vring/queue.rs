//! The device side of one split virtqueue (virtio 1.1 §2.6): what the driver made
//! available, what we used, one used-index publish per burst, and whether the driver
//! wants to hear about it (§2.6.7.2 notification suppression, `VIRTIO_F_EVENT_IDX`).

use super::chain::MAX_SEGS;
use crate::guest::Ring;

/// `avail->flags`: the driver asks for no interrupts (§2.6.6).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `used->flags`: we ask the driver for no kicks (§2.6.8).
pub const USED_F_NO_NOTIFY: u16 = 1;

/// The driver moved its available index by more than the queue size: no driver does
/// that; the ring's contents can no longer be trusted, and the queue is not served until
/// the device is set up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

/// Descriptors one burst may walk on one queue: 64 chains of `chain::MAX_SEGS` buffers.
/// An honest burst needs far less: Linux sends at most MAX_SKB_FRAGS + 2 = 19 buffers
/// per frame (plus an indirect descriptor), so a default burst of 32 TSO frames walks
/// about 640; receive buffers are one descriptor each. Fixed rather than a multiple of
/// the queue size, which would let a 32 Ki-entry ring cost 64 Ki reads per burst.
pub const WALK_BUDGET: u32 = 64 * MAX_SEGS as u32;

/// Logs that the first `len` bytes of a vring's used ring were written (a migration's
/// dirty log).
pub type Logger = Box<dyn Fn(u64) + Send>;

/// One virtqueue as the device serves it.
pub struct Vq {
    ring: Ring,
    /// The next available-ring position to take.
    last_avail: u16,
    /// The next used-ring position to fill, and the used index last published.
    used: u16,
    published: u16,
    event_idx: bool,
    broken: bool,
    reported: bool,
    /// Descriptors the current burst may still walk (see [`Vq::begin`]).
    budget: u32,
    /// A live migration is under way: the used ring is logged after every write
    /// (`OwnDevice::log_used` of this vring), else None.
    log: Option<Logger>,
    /// The guest-memory region last hit (translation hint).
    pub hint: usize,
}

impl Vq {
    /// `last_avail` and `used` are the positions to resume from (rte_vhost's vring base
    /// when the device starts; ours when a worker takes the queue again).
    pub fn new(ring: Ring, last_avail: u16, used: u16, event_idx: bool) -> Vq {
        Vq { ring, last_avail, used, published: used, event_idx, broken: false, reported: false, budget: WALK_BUDGET, log: None, hint: 0 }
    }

    /// Logs every used-ring write with `log` (a migration: see [`Logger`]).
    pub fn log_with(&mut self, log: Logger) {
        self.log = Some(log);
    }

    fn log_used(&self) {
        if let Some(l) = &self.log {
            // The whole used area (flags, index, elements, avail_event): at most a few
            // pages, logged once per publish, only while a migration runs.
            l(4 + 8 * u64::from(self.ring.size()) + 2);
        }
    }

    #[inline(always)]
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// (next available position, next used position) to resume from later.
    #[inline(always)]
    pub fn positions(&self) -> (u16, u16) {
        (self.last_avail, self.used)
    }

    /// Resumes from positions another server of this queue left (nothing unpublished).
    #[inline(always)]
    pub fn set_positions(&mut self, (avail, used): (u16, u16)) {
        self.last_avail = avail;
        self.used = used;
        self.published = used;
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// True once, the first time it is asked after the queue broke (to count and report
    /// the event, not every poll of a dead ring).
    #[inline]
    pub fn report_broken(&mut self) -> bool {
        let first = self.broken && !self.reported;
        self.reported |= first;
        first
    }

    /// Starts a burst: [`Vq::pending`], and a fresh walking budget of [`WALK_BUDGET`]
    /// descriptors. A guest decides how long its chains are and how many it offers, and
    /// a receiver that keeps failing a reservation makes the same chains be walked again;
    /// without a cap that is a worker's time taken from every other tenant on it. A walk
    /// is begun only while budget is left, so a burst reads at most the budget plus one
    /// chain (at most the queue size, §2.6.5.3.1); what is left waits for the next burst,
    /// and the cut is counted (`ring_capped`).
    ///
    /// # Errors
    /// As [`Vq::pending`].
    #[inline(always)]
    pub fn begin(&mut self) -> Result<u16, Broken> {
        self.budget = WALK_BUDGET;
        self.pending()
    }

    /// Charges `hops` walked descriptors to the burst; false when none are left for
    /// another walk.
    #[inline(always)]
    pub fn charge(&mut self, hops: u32) -> bool {
        self.budget = self.budget.saturating_sub(hops);
        self.budget > 0
    }

    /// Budget left for a walk.
    #[inline(always)]
    pub fn may_walk(&self) -> bool {
        self.budget > 0
    }

    /// How many chains the driver has made available and we have not taken.
    ///
    /// # Errors
    /// [`Broken`] when the index moved by more than the queue size (then and from then on).
    #[inline(always)]
    pub fn pending(&mut self) -> Result<u16, Broken> {
        if self.broken {
            return Err(Broken);
        }
        let n = self.ring.avail_idx().wrapping_sub(self.last_avail);
        if n > self.ring.size() {
            self.broken = true;
            return Err(Broken);
        }
        Ok(n)
    }

    /// The head of the `k`-th chain not yet taken (k < pending).
    #[inline(always)]
    pub fn head(&self, k: u16) -> u16 {
        self.ring.avail_entry(self.last_avail.wrapping_add(k))
    }

    /// Hints the available entries and their first descriptors a burst will read.
    #[inline(always)]
    pub fn prefetch_avail(&self, k: u16) {
        self.ring.prefetch_avail(self.last_avail.wrapping_add(k));
    }

    /// Hints the first descriptors of the next `n` chains not yet taken, so that a burst's
    /// descriptor reads overlap instead of each waiting for a line the driver's core wrote.
    /// The heads are read without being checked: a prefetch of any address is harmless
    /// (the ring masks the index), and each head is read again, and checked, when used.
    #[inline(always)]
    pub fn prefetch_descs(&self, n: u16) {
        self.prefetch_descs_at(0, n);
    }

    /// [`Vq::prefetch_descs`] of the `n` chains from the `k`-th not yet taken on (past
    /// what the driver made available: harmless, any line may be hinted).
    #[inline(always)]
    pub fn prefetch_descs_at(&self, k: u16, n: u16) {
        for i in k..k + n {
            self.ring.prefetch_desc(self.head(i));
        }
    }

    /// Takes `k` chains (they must all be returned with [`Vq::put`]).
    #[inline(always)]
    pub fn take(&mut self, k: u16) {
        self.last_avail = self.last_avail.wrapping_add(k);
    }

    /// Returns a chain: its head and the bytes we wrote into it (0 for a chain we read).
    #[inline(always)]
    pub fn put(&mut self, head: u16, len: u32) {
        self.ring.set_used(self.used, head, len);
        self.used = self.used.wrapping_add(1);
    }

    /// Returns chains we only read (used length 0), in the order they were taken: one
    /// used entry each. (With IN_ORDER the spec lets a device write one entry per batch,
    /// §2.6.9, but DPDK 22.11's in-order virtio driver reads every entry and frees the
    /// mbuf its id names: a skipped entry would hand it a stale id.)
    #[inline(always)]
    pub fn put_read(&mut self, heads: impl Iterator<Item = u16>) {
        for h in heads {
            self.put(h, 0);
        }
    }

    /// Publishes what [`Vq::put`] returned since the last publish; true when the driver
    /// asked to be told (an interrupt: write the call eventfd).
    #[inline(always)]
    pub fn publish(&mut self) -> bool {
        if self.used == self.published {
            return false;
        }
        let old = self.published;
        self.ring.publish_used(self.used);
        self.published = self.used;
        self.log_used();
        if self.event_idx {
            // §2.6.7.2: notify if used_event lies in (old, new].
            let event = self.ring.used_event();
            self.used.wrapping_sub(event).wrapping_sub(1) < self.used.wrapping_sub(old)
        } else {
            self.ring.avail_flags() & AVAIL_F_NO_INTERRUPT == 0
        }
    }

    /// Asks the driver to kick (or not) when it makes buffers available. Without
    /// EVENT_IDX that is the used ring's NO_NOTIFY flag; with it, `avail_event` at the
    /// next position (and, to stop, nothing: a stale `avail_event` costs at most one kick
    /// per 64 Ki buffers).
    pub fn want_kicks(&self, on: bool) {
        if self.event_idx {
            if on {
                self.ring.set_avail_event(self.last_avail);
            }
        } else {
            self.ring.set_used_flags(if on { 0 } else { USED_F_NO_NOTIFY });
        }
        self.log_used();
    }
}
