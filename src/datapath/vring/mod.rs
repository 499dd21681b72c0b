//! pmdswitch's own virtqueue processing: the device side of split virtqueues (virtio
//! 1.1 §2.6) for virtio-net (§5.1), in safe Rust over the guest-memory module
//! (`crate::guest`, the only unsafe it relies on). rte_vhost still speaks the
//! vhost-user protocol; these files move the packets.
//!
//! - `chain`: one descriptor chain into a list of checked guest buffers.
//! - `queue`: one virtqueue: available chains, used returns, one publish per burst,
//!   notification suppression both ways.
//! - `net`: the virtio-net header, frames as sources (another guest's buffers, an
//!   mbuf's bytes, with a VLAN edit on the way), filling a guest's receive buffers
//!   (mergeable or not).
//! - this file: taking one frame a guest sent ([`tx_frame`]) and finding the receive
//!   buffers for one frame ([`rx_reserve`]), the two steps every path is made of.

pub mod chain;
mod egress;
pub mod net;
pub mod offload;
pub mod port;
pub mod queue;
mod rxq;
mod txq;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use crate::guest::{GuestMemory, Span};
use chain::{Chain, ChainError, Rules, F_WRITE};
use net::{NetHdr, RxError, RxFormat, HDR_MAX};
use offload::{TxOffers, CHECK_BYTES};
use queue::Vq;

/// The most bytes a guest's frame may have here: a 64 KiB TSO frame and its header.
pub const MAX_FRAME: u32 = 65536 + 256;

/// Reads the chain at the `k`-th not yet taken position of a guest's transmit queue, and
/// its header (`hdr_len` bytes, possibly over several buffers), checked against what the
/// guest negotiated (`tx`; with nothing negotiated the header can ask for nothing and is
/// taken as plain) and rebuilt ([`offload::check`]).
///
/// # Errors
/// The chain breaks a rule, is shorter than a header, or its header is refused;
/// [`ChainError::Capped`] when the burst has walked its share (the chain stays
/// available). `out.head` is the head that was walked, to return a refused chain with.
pub fn tx_frame(vq: &mut Vq, k: u16, hdr_len: u32, indirect: bool, tx: TxOffers, out: &mut Chain) -> Result<NetHdr, ChainError> {
    if !vq.may_walk() {
        return Err(ChainError::Capped);
    }
    let head = vq.head(k);
    let rules = Rules { write: false, indirect, max_len: MAX_FRAME };
    let mut hint = vq.hint;
    let r = chain::walk(vq.ring(), head, rules, &mut hint, out);
    vq.hint = hint;
    vq.charge(out.hops);
    r?;
    let mut b = [0u8; HDR_MAX];
    let f = net::GuestFrame { mem: vq.ring().mem(), segs: out.segs(), skip: 0, len: out.total };
    if out.total < hdr_len || f.read_some(0, &mut b[..hdr_len as usize]) < hdr_len as usize {
        return Err(ChainError::ShortHeader);
    }
    let h = NetHdr::from_bytes(&b);
    if !tx.any() || h.flags | h.gso_type == 0 {
        return Ok(NetHdr::default());
    }
    let mut first = [0u8; CHECK_BYTES];
    let len = out.total - hdr_len;
    let n = f.read_some(hdr_len, &mut first[..(len as usize).min(CHECK_BYTES)]);
    offload::check(&h, len, &first[..n], tx).ok_or(ChainError::BadHdr)
}

/// The fast path of [`tx_frame`]: the `k`-th chain is one descriptor that holds the
/// header and the frame (what virtio-user and Linux send for short frames). Returns its
/// head, the buffer (as checked, and as a span of `mem`, the memory the ring's driver
/// owns: borrowed apart from the queue so that the span may outlive the next `&mut vq`)
/// and the header, checked and rebuilt as [`tx_frame`] does; None sends the caller to
/// `tx_frame` (which also says why, when the chain or its header is refused).
/// The descriptor is read once and meets every rule of the chain walk (one readable
/// buffer inside guest memory, no NEXT, no INDIRECT, no longer than [`MAX_FRAME`]).
///
/// `tx`: what the driver negotiated (CSUM, HOST_TSO4/6). Without any its header can ask
/// for nothing (§5.1.6.2: no NEEDS_CSUM, gso_type NONE), so it is not read: with
/// virtio-user's layout the header ends the cache line before the frame's, and reading
/// it costs a line the other core last wrote.
#[inline(always)]
pub fn tx_one<'m>(
    vq: &Vq,
    mem: &'m GuestMemory,
    k: u16,
    hdr_len: u32,
    tx: TxOffers,
    hint: &mut usize,
) -> Option<(u16, chain::Seg, Span<'m>, NetHdr)> {
    let head = vq.head(k);
    let ring = vq.ring();
    if head >= ring.size() {
        return None;
    }
    let d = ring.desc(head);
    if d.flags != 0 || d.len < hdr_len || d.len > MAX_FRAME {
        return None;
    }
    let span = mem.span(d.addr, d.len, hint)?;
    let seg = chain::Seg { gpa: d.addr, len: d.len };
    if !tx.any() {
        return Some((head, seg, span, NetHdr::default()));
    }
    let h = NetHdr::from_bytes(&span.read_array::<HDR_MAX>(0)?);
    if h.flags | h.gso_type == 0 {
        return Some((head, seg, span, NetHdr::default()));
    }
    let mut first = [0u8; CHECK_BYTES];
    let len = d.len - hdr_len;
    let n = (len as usize).min(CHECK_BYTES);
    if !span.read(hdr_len, &mut first[..n]) {
        return None;
    }
    Some((head, seg, span, offload::check(&h, len, &first[..n], tx)?))
}

/// The fast path of [`rx_reserve`]: the `k`-th chain (of `avail`) is one writable
/// descriptor of at least `need` bytes. Returns its head, guest address and buffer;
/// None sends the caller to `rx_reserve` (which also says why not, e.g. no room).
#[inline(always)]
pub fn rx_one<'v>(vq: &'v Vq, k: u16, avail: u16, need: u32, hint: &mut usize) -> Option<(u16, u64, Span<'v>)> {
    if k >= avail {
        return None;
    }
    let head = vq.head(k);
    let ring = vq.ring();
    if head >= ring.size() {
        return None;
    }
    let d = ring.desc(head);
    if d.flags != F_WRITE || d.len < need {
        return None;
    }
    Some((head, d.addr, ring.mem().span(d.addr, d.len, hint)?))
}

/// Finds the receive buffers for a frame of `len` bytes among the chains from the
/// `k`-th not yet taken position on (`avail` positions are available): one chain, or
/// with mergeable buffers as many as the header and the frame need. Returns how many
/// chains (= positions) hold the buffers, in `chains[..n]`.
///
/// # Errors
/// The error and how many positions it consumed, to be taken and returned unused:
/// [`RxError::NoRoom`] (fewer buffers than needed, or the burst's walking budget spent:
/// none; try later), [`RxError::BadBuffers`]
/// or [`RxError::BadAddr`] (a malformed chain, or one outside guest memory: it and those
/// before it), [`RxError::TooBig`] (without mergeable
/// buffers a chain too small, or more buffers needed than `chains` holds).
pub fn rx_reserve(
    vq: &mut Vq,
    k: u16,
    avail: u16,
    fmt: RxFormat,
    indirect: bool,
    len: u32,
    chains: &mut [Chain],
) -> Result<u16, (RxError, u16)> {
    let need = fmt.hdr_len + len;
    let rules = Rules { write: true, indirect, max_len: u32::MAX };
    let mut have = 0u32;
    let mut n = 0u16;
    let mut hint = vq.hint;
    let r = loop {
        if have >= need {
            break Ok(n);
        }
        if k + n >= avail {
            break Err((RxError::NoRoom, 0));
        }
        let Some(c) = chains.get_mut(usize::from(n)) else { break Err((RxError::TooBig, n)) };
        if !vq.may_walk() {
            break Err((RxError::NoRoom, 0));
        }
        let head = vq.head(k + n);
        n += 1;
        let r = chain::walk(vq.ring(), head, rules, &mut hint, c);
        vq.charge(c.hops);
        match r {
            Ok(()) => {}
            Err(ChainError::Addr) => break Err((RxError::BadAddr, n)),
            Err(_) => break Err((RxError::BadBuffers, n)),
        }
        have = have.saturating_add(c.total);
        if !fmt.mergeable && have < need {
            break Err((RxError::TooBig, n));
        }
    };
    vq.hint = hint;
    r
}
