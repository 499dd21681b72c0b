//! A worker's handles on an own-path vhost port: the guest's transmit vring of a queue
//! pair (what we receive) and its receive vring (where we send). Each holds the claim on
//! its vring (one handle per vring, `dpdk::claims`), the device snapshot it serves (whose
//! `Arc` keeps the guest memory mapped) and the ring positions, which go back to the
//! slot when the handle lets go (a reload, a paused device) so that the next holder — or
//! rte_vhost, for a frontend's GET_VRING_BASE — resumes where this one stopped.
//!
//! Ways through: guest to guest, one copy and no mbuf ([`OwnRxQueue::forward`] for a
//! cross-connect; [`OwnRxQueue::peek`] then [`OwnTxQueue::put_frames`] for the bridge,
//! which decides on each frame's first bytes); and with mbufs for ports that are not
//! own-path vhost (`rx_burst` copies guest frames into fresh mbufs, `tx_burst` copies
//! mbufs into guest buffers). Every delivery into a guest goes through one `Egress`
//! cursor per burst, and every frame whose virtio-net header asks for checksum or
//! segmentation work through `offload`.
//!
//! Split by concern: this file holds what both handles share (the claim, the served
//! vring and its positions); `rxq` the receive handle (forward, peek, mbufs out);
//! `txq` the send handle (exclusive or shared egress); `egress` one burst's deliveries
//! into a receive vring, the frames it copies from, and the segmentation scratch.

use std::sync::Arc;

use crate::datapath::stats::DropCause;
use crate::dpdk::vhost::own::{bits, OwnDevice};
use crate::dpdk::vhost::PairClaim;

use super::chain::ChainError;
use super::queue::Vq;

/// The cause a refused chain is counted under.
pub fn cause(e: ChainError) -> DropCause {
    match e {
        ChainError::Addr => DropCause::GuestBadAddr,
        ChainError::TooLong => DropCause::GuestOversize,
        ChainError::BadHdr => DropCause::BadVnetHdr,
        // Never a drop (the chain stays available); listed for completeness.
        ChainError::Capped
        | ChainError::Empty
        | ChainError::Index
        | ChainError::Loop
        | ChainError::Indirect
        | ChainError::Direction
        | ChainError::TooManySegs
        | ChainError::ShortHeader => DropCause::GuestBadChain,
    }
}

/// One vring served by a worker: the snapshot it came from and the queue state.
pub(super) struct Served {
    pub(super) dev: Arc<OwnDevice>,
    pub(super) vq: Vq,
    pub(super) vring: u16,
}

/// The claim, and the vring served while the device runs.
pub(super) struct Side {
    pub(super) claim: PairClaim,
    pub(super) served: Option<Served>,
    /// Hand the positions back when letting go (a guest-TX vring, which only this
    /// handle serves; a guest-RX vring's positions are stored after every burst, under
    /// its lock, because two handles may serve it).
    pub(super) store_on_release: bool,
}

impl Side {
    pub(super) fn new(claim: PairClaim, store_on_release: bool) -> Side {
        Side { claim, served: None, store_on_release }
    }

    /// At a reload point: serve vring `vring` of the slot's current device (or nothing),
    /// handing the old positions back first.
    pub(super) fn reload(&mut self, vring: u16, poll: bool) {
        let dev = self.claim.slot().own_device();
        let same = match (&self.served, &dev) {
            (Some(s), Some(d)) => Arc::ptr_eq(&s.dev, d) && s.vring == vring,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.release();
        let Some(dev) = dev else { return };
        let Some(ring) = dev.ring(vring) else { return };
        let (avail, used) = self.claim.slot().position(vring);
        let mut vq = Vq::new(ring, avail, used, dev.has(bits::RING_F_EVENT_IDX));
        if dev.logging() {
            let d = dev.clone();
            vq.log_with(Box::new(move |len| d.log_used(vring, 0, len)));
        }
        // A polling worker wants no kicks (virtio 1.1 §2.6.7.1).
        vq.want_kicks(!poll);
        self.served = Some(Served { dev, vq, vring });
    }

    pub(super) fn release(&mut self) {
        if let Some(s) = self.served.take() {
            if self.store_on_release {
                self.claim.slot().set_position(s.vring, s.vq.positions());
            }
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.release();
    }
}

pub use super::rxq::{Edit, Fwd, OwnRxQueue, PeekedFrame, PeekedHeads, PEEK};
pub use super::txq::{tx_vring, OwnTxQueue};
