//! Send side of an own-path queue pair: the guest's RX vring, served alone (a lease on
//! its lock from one reload point to the next) or shared under its lock per burst.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::datapath::stats::{bump, PortCounters};
use crate::dpdk::mbuf::Batch;
use crate::dpdk::vhost::PairClaim;

use super::chain::Chain;
use super::net::{BytesFrame, RxError};

use super::egress::*;
use super::port::*;

/// Send side of an own-path queue pair: the guest's RX vring (2·pair), picked among the
/// enabled pairs like the library path's.
///
/// Exclusive egress: when no other live send handle of the port maps to the same vring
/// (a worker per enabled queue pair, the usual case), this handle is the vring's only
/// writer; it takes the vring's lock at its first burst and keeps it (a lease) until its
/// next reload point, so a burst costs no atomic operation and no position store. Where
/// workers outnumber the enabled pairs, the handles that share a vring take its lock per
/// burst and hand the ring positions over through the slot. A handle whose view is stale
/// (a reload is pending) and meets a lease waits a bounded time, then gives the burst up
/// (its frames stay in their source ring, or count as `tx_full`) so it reaches its reload
/// point: no two workers can wait on each other's leases.
pub struct OwnTxQueue {
    pub(super) side: Side,
    pub(super) chains: Box<[Chain]>,
    /// A chained mbuf's bytes gathered (allocated once, grown only by jumbo frames).
    pub(super) gather: Vec<u8>,
    /// Names this handle as the last server of a vring (see `VhostSlot::tx_owner`).
    pub(super) token: u64,
    /// Decided at the reload point: no other live handle maps to this vring.
    pub(super) exclusive: bool,
    /// The vring whose lock this handle holds across bursts.
    pub(super) leased: Option<u16>,
}

/// The guest-RX vring send handle `pair` serves when the frontend enabled the vrings in
/// `enabled` (bit i: vring i) and the handles of `claimed` (bit p: pair p) are alive, and
/// whether it is that vring's only writer: handle p takes the (p mod n)-th enabled pair,
/// so it is alone unless another live handle has the same rest.
pub fn tx_vring(pair: u16, enabled: u64, claimed: u64) -> (u16, bool) {
    let pairs: Vec<u16> = (0..32u16).filter(|p| enabled & (1u64 << (2 * p)) != 0).collect();
    let me = usize::from(pair);
    match pairs.len() {
        0 => (0, false),
        n => {
            let shared = (0..64).any(|q| q != me && claimed & (1u64 << q) != 0 && q % n == me % n);
            (2 * pairs[me % n], !shared)
        }
    }
}

impl Drop for OwnTxQueue {
    fn drop(&mut self) {
        self.release_lease();
    }
}

/// Why a burst could not use the egress vring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gone {
    /// No device, or its ring is broken: the frames are dropped (`port_down`).
    Down,
    /// Another handle holds the vring past the spin bound (a reload is pending).
    Busy,
}

/// How long a burst waits for a shared vring's lock: far longer than any burst holds it
/// (microseconds), far shorter than a reload takes to reach every worker.
pub(super) const LOCK_SPINS: u32 = 1 << 16;

impl OwnTxQueue {
    pub fn new(claim: PairClaim) -> OwnTxQueue {
        static TOKENS: AtomicU64 = AtomicU64::new(1);
        OwnTxQueue {
            side: Side::new(claim, false),
            // A frame may need many mergeable buffers: 64 KiB over 1.5 KiB buffers is 44.
            chains: vec![Chain::default(); 64].into_boxed_slice(),
            gather: Vec::with_capacity(16384),
            token: TOKENS.fetch_add(1, Ordering::Relaxed),
            exclusive: false,
            leased: None,
        }
    }

    /// At the worker's reload point: the vring of the pair this handle prefers, modulo
    /// the pairs the frontend enabled (virtio 1.1 §5.1.6.5.5), and whether it is that
    /// vring's only writer. A lease is given up first (positions stored), so whoever
    /// serves the vring next resumes where this handle stopped.
    pub fn reload(&mut self) {
        self.release_lease();
        let slot = self.side.claim.slot();
        let (vring, exclusive) = tx_vring(self.side.claim.pair(), slot.enabled(), slot.tx_claimed());
        self.exclusive = exclusive;
        self.side.reload(vring, true);
    }

    /// Whether this handle serves its vring alone (for the tests).
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Gives a held lease up: stores the positions, then unlocks.
    pub(super) fn release_lease(&mut self) {
        if let Some(v) = self.leased.take() {
            let slot = self.side.claim.slot();
            if let Some(s) = self.side.served.as_ref().filter(|s| s.vring == v) {
                slot.set_position(v, s.vq.positions());
            }
            slot.unlock_tx_vring(v);
        }
    }

    pub fn is_up(&self) -> bool {
        self.side.served.is_some()
    }

    /// Runs `f` with one burst's [`Egress`] on the served vring, holding the vring's
    /// lock: kept from burst to burst when this handle is the only writer (a lease),
    /// else taken for this burst, resuming from the positions another handle left if it
    /// served the vring last and storing ours after.
    #[inline(always)]
    pub(super) fn locked<R>(&mut self, c: &PortCounters, f: impl FnOnce(Egress<'_>) -> R) -> Result<R, Gone> {
        let OwnTxQueue { side: Side { claim, served, .. }, chains, token, exclusive, leased, .. } = self;
        let s = served.as_mut().ok_or(Gone::Down)?;
        let slot = claim.slot();
        let vring = s.vring;
        if leased.is_none() {
            if !slot.try_lock_tx_vring(vring, LOCK_SPINS) {
                return Err(Gone::Busy);
            }
            if slot.tx_owner(vring) != *token {
                s.vq.set_positions(slot.position(vring));
                slot.set_tx_owner(vring, *token);
            }
        }
        let r = Egress::new(s, chains, c).map(f);
        if r.is_none() && s.vq.report_broken() {
            bump(&c.rings_broken, 1);
        }
        if *exclusive && r.is_some() {
            // The only writer: the lock stays taken until the next reload point.
            *leased = Some(vring);
        } else {
            *leased = None;
            slot.set_position(vring, s.vq.positions());
            slot.unlock_tx_vring(vring);
        }
        r.ok_or(Gone::Down)
    }

    /// Copies the batch's packets into the guest's receive buffers (and frees them) until
    /// its ring has no room; what did not fit stays in the batch. Packets the guest's
    /// buffers refuse are dropped and counted in `c`. Returns how many were sent.
    pub fn tx_burst(&mut self, batch: &mut Batch, c: &PortCounters) -> usize {
        let mut gather = std::mem::take(&mut self.gather);
        let r = self
            .locked(c, |mut e| {
                let (mut done, mut sent) = (0usize, 0usize);
                e.prime();
                while done < batch.len() {
                    e.ahead();
                    let Some(mut segs) = batch.segs(done) else { break };
                    // A chained mbuf (a jumbo frame from a NIC) is gathered first; one
                    // segment is copied from where it is.
                    let first = segs.next().unwrap_or_default();
                    let bytes: &[u8] = match segs.next() {
                        None => first,
                        Some(second) => {
                            gather.clear();
                            gather.extend_from_slice(first);
                            gather.extend_from_slice(second);
                            segs.for_each(|p| gather.extend_from_slice(p));
                            &gather
                        }
                    };
                    match e.put(&BytesFrame(bytes), ONE_BUFFER, c) {
                        Ok(()) => sent += 1,
                        Err(RxError::NoRoom) => {
                            if e.refresh() {
                                continue;
                            }
                            break;
                        }
                        Err(_) => {}
                    }
                    done += 1;
                }
                e.done();
                batch.consume_front(done);
                sent
            })
            .unwrap_or(0);
        // Busy or down: nothing sent, the batch's retry-then-drop policy decides.
        self.gather = gather;
        r
    }
}
