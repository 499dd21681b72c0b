//! The own data path's control side: rte_vhost still speaks vhost-user, but the rings
//! are served by pmdswitch (`datapath::vring`). For that a device is mapped once more by
//! us — its memory table (`guest::GuestMemory`, our own mmaps of the frontend's fds), its
//! vrings' addresses, its kick and call eventfds (dup()ed, so ours to close) and its
//! negotiated features — into one immutable [`OwnDevice`] that the workers take at their
//! reload point.
//!
//! rte_vhost changes those without a callback, inside its message handler. So every
//! connection gets pre/post message hooks (`rte_vhost_extern_callback_register`): before
//! a message that changes memory, rings, eventfds or features is handled while the device
//! runs, the workers are quiesced (the device is withdrawn from the slot and the reload
//! barrier waited for: no worker holds its rings any more) and the ring positions they
//! left are handed to the library (`rte_vhost_set_vring_base`, so that `GET_VRING_BASE`
//! answers with where we are and a reconnecting frontend resumes there); after the
//! message, the device is mapped afresh and published. Because the snapshot owns its
//! mappings and fds, a worker that still held an old one could only read old memory or
//! kick an old eventfd — never unmapped memory or a reused fd.
//!
//! The library's built-in net back end stays on (no `rte_vhost_driver_set_features`,
//! which turns it off): it gates only the library's own enqueue/dequeue, which the own
//! path does not call, while turning it off would make readiness wait for every vring a
//! frontend allocated (a multiqueue guest using fewer queues than it set up would never
//! become ready, lib/vhost/vhost_user.c `virtio_is_ready`) and keep the extra queue pairs
//! of a frontend that did not negotiate MQ. The feature set is shaped with
//! `rte_vhost_driver_enable/disable_features` instead.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::guest::{GuestMemory, RegionDesc, Ring};

use super::super::ffi;
use super::{slot_for_vid, DeviceEvent, VhostSlot, GUEST_NOTIFICATIONS, HOOK};

/// Vrings a device may have here (8 queue pairs, `--queues` allows 1-8).
pub const MAX_VRINGS: usize = 16;

/// virtio feature bits the own path looks at (virtio 1.1 §5.1.3, §6).
pub mod bits {
    pub const NET_F_CSUM: u64 = 1 << 0;
    pub const NET_F_GUEST_CSUM: u64 = 1 << 1;
    pub const NET_F_GUEST_TSO4: u64 = 1 << 7;
    pub const NET_F_GUEST_TSO6: u64 = 1 << 8;
    pub const NET_F_GUEST_ECN: u64 = 1 << 9;
    pub const NET_F_GUEST_UFO: u64 = 1 << 10;
    pub const NET_F_HOST_TSO4: u64 = 1 << 11;
    pub const NET_F_HOST_TSO6: u64 = 1 << 12;
    pub const NET_F_HOST_ECN: u64 = 1 << 13;
    pub const NET_F_HOST_UFO: u64 = 1 << 14;
    pub const NET_F_MRG_RXBUF: u64 = 1 << 15;
    pub const NET_F_GSO: u64 = 1 << 6;
    pub const NET_F_MTU: u64 = 1 << 3;
    pub const NET_F_GUEST_ANNOUNCE: u64 = 1 << 21;
    pub const RING_F_INDIRECT_DESC: u64 = 1 << 28;
    pub const RING_F_EVENT_IDX: u64 = 1 << 29;
    pub const F_VERSION_1: u64 = 1 << 32;
    pub const F_IOMMU_PLATFORM: u64 = 1 << 33;
    pub const F_RING_PACKED: u64 = 1 << 34;
    pub const F_IN_ORDER: u64 = 1 << 35;
    pub const VHOST_F_LOG_ALL: u64 = 1 << 26;
}

/// The offload features in `f`, both directions, for a log line.
pub fn describe_offloads(f: u64) -> String {
    use bits::*;
    let list = |bits: &[(u64, &str)]| {
        let on: Vec<&str> = bits.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect();
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(",")
        }
    };
    let tx = list(&[(NET_F_CSUM, "csum"), (NET_F_HOST_TSO4, "tso4"), (NET_F_HOST_TSO6, "tso6")]);
    let rx = list(&[(NET_F_GUEST_CSUM, "csum"), (NET_F_GUEST_TSO4, "tso4"), (NET_F_GUEST_TSO6, "tso6")]);
    format!("offloads tx {tx} rx {rx}")
}

/// What the own path does not implement, so never offers: an IOMMU, packed rings, UFO
/// and ECN, GSO of unknown kind, the MTU feature. (It offers VHOST_F_LOG_ALL — live
/// migration, see [`OwnDevice::log_write`] — and GUEST_ANNOUNCE: with it the migrated
/// guest announces itself, and QEMU does not ask the backend for a RARP, which only
/// rte_vhost's own dequeue could inject.)
pub const OWN_DISABLED: u64 = bits::F_IOMMU_PLATFORM
    | bits::F_RING_PACKED
    | bits::NET_F_HOST_UFO
    | bits::NET_F_GUEST_UFO
    | bits::NET_F_HOST_ECN
    | bits::NET_F_GUEST_ECN
    | bits::NET_F_GSO
    | bits::NET_F_MTU;

/// What the own path offers on top of the library's defaults: checksum and TSO both ways,
/// mergeable buffers, indirect descriptors, EVENT_IDX, dirty-page logging and guest
/// announce (all in the library's default set; enabled explicitly in case a build trimmed
/// them), and in-order use (virtio 1.1
/// §2.6.9): every chain is returned at the position it was taken from, refused ones
/// included, and a frame held back keeps its successors back too, so the promise holds
/// by construction. A driver that negotiates it (DPDK's virtio PMD does) then frees its
/// descriptors without walking a free list on lines we read.
pub const OWN_ENABLED: u64 = bits::NET_F_CSUM
    | bits::NET_F_GUEST_CSUM
    | bits::NET_F_HOST_TSO4
    | bits::NET_F_HOST_TSO6
    | bits::NET_F_GUEST_TSO4
    | bits::NET_F_GUEST_TSO6
    | bits::NET_F_MRG_RXBUF
    | bits::RING_F_INDIRECT_DESC
    | bits::RING_F_EVENT_IDX
    | bits::VHOST_F_LOG_ALL
    | bits::NET_F_GUEST_ANNOUNCE
    | bits::F_IN_ORDER;

/// One vring of a mapped device.
pub struct OwnVring {
    /// Where rte_vhost mapped the three areas (translated into our mapping by
    /// `GuestMemory::ring`).
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    kick: Option<OwnedFd>,
    call: Option<OwnedFd>,
}

/// A running device as the own data path serves it: immutable; replaced whole.
pub struct OwnDevice {
    pub vid: i32,
    pub mem: Arc<GuestMemory>,
    vrings: Vec<Option<OwnVring>>,
    pub features: u64,
}

impl OwnDevice {
    pub fn has(&self, bit: u64) -> bool {
        self.features & bit != 0
    }

    /// The driver may ask for offloads in the headers it sends (CSUM, HOST_TSO4/6).
    pub fn tx_offloads(&self) -> bool {
        self.has(bits::NET_F_CSUM) || self.has(bits::NET_F_HOST_TSO4) || self.has(bits::NET_F_HOST_TSO6)
    }

    /// The virtio-net header length (§5.1.6: 12 bytes with VERSION_1 or MRG_RXBUF).
    pub fn hdr_len(&self) -> u32 {
        if self.has(bits::F_VERSION_1) || self.has(bits::NET_F_MRG_RXBUF) {
            12
        } else {
            10
        }
    }

    /// Vring `i`'s areas, checked into our mapping (None when the frontend has not set
    /// it up, or its addresses do not lie in guest memory).
    pub fn ring(&self, i: u16) -> Option<Ring> {
        let v = self.vrings.get(usize::from(i))?.as_ref()?;
        self.mem.ring(v.desc, v.avail, v.used, v.size)
    }

    /// Vring `i`'s kick eventfd (the guest writes it), for a sleeping worker.
    pub fn kickfd(&self, i: u16) -> Option<i32> {
        Some(self.vrings.get(usize::from(i))?.as_ref()?.kick.as_ref()?.as_raw_fd())
    }

    /// The frontend asked for dirty-page logging (VHOST_F_LOG_ALL: a live migration is
    /// under way): every guest page the workers write must be logged.
    #[inline(always)]
    pub fn logging(&self) -> bool {
        self.has(bits::VHOST_F_LOG_ALL)
    }

    /// Logs `[gpa, gpa + len)` as written (a receive buffer filled), in the log the
    /// frontend shared with SET_LOG_BASE (vhost-user "Migration": one bit per 4 KiB page,
    /// set with an atomic OR after a release fence, the log's size checked — rte_vhost's
    /// own `rte_vhost_log_write` does exactly that, so it is called rather than copied).
    /// Safe from a worker: SET_LOG_BASE and SET_FEATURES quiesce the device, so the log
    /// cannot change under a worker that holds this snapshot.
    pub fn log_write(&self, gpa: u64, len: u64) {
        // SAFETY: vid is this snapshot's device, alive while a worker holds it (a device
        // is destroyed only after the workers let go); the call only reads the library's
        // device state and ORs bits into the shared log.
        unsafe { ffi::rte_vhost_log_write(self.vid, gpa, len) };
    }

    /// Logs bytes `offset..offset + len` of vring `i`'s used ring as written (by the
    /// ring's log address the frontend gave in SET_VRING_ADDR).
    pub fn log_used(&self, i: u16, offset: u64, len: u64) {
        // SAFETY: as in log_write.
        unsafe { ffi::rte_vhost_log_used_vring(self.vid, i, offset, len) };
    }

    /// Interrupts the guest for vring `i` (writes its call eventfd) and counts it.
    pub fn notify(&self, i: u16) {
        let Some(fd) = self.vrings.get(usize::from(i)).and_then(|v| v.as_ref()?.call.as_ref()) else { return };
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own (dup()ed); EAGAIN
        // (counter full) means the guest has a wake-up pending already.
        unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(c) = usize::try_from(self.vid).ok().and_then(|v| GUEST_NOTIFICATIONS.get(v)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn dup(fd: i32) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: dup of an fd the library holds open for this call; the copy is ours.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: d is a fresh fd nobody else owns.
    (d >= 0).then(|| unsafe { OwnedFd::from_raw_fd(d) })
}

/// Maps `vid` as it is now.
///
/// # Errors
/// The library has no memory table for it, or mapping failed.
pub fn map_device(vid: i32) -> Result<OwnDevice, String> {
    let mut mem: *mut ffi::rte_vhost_memory = std::ptr::null_mut();
    // SAFETY: vid is the device the library called us about; mem is an out-parameter the
    // library fills with a malloc()ed copy (freed below).
    if unsafe { ffi::rte_vhost_get_mem_table(vid, &mut mem) } < 0 || mem.is_null() {
        return Err("no memory table".into());
    }
    // SAFETY: mem points at nregions regions, as the library allocated it.
    let regions = unsafe {
        let n = (*mem).nregions as usize;
        std::slice::from_raw_parts((*mem).regions.as_ptr(), n)
            .iter()
            .map(|r| RegionDesc {
                gpa: r.guest_phys_addr,
                size: r.size,
                lib_hva: r.host_user_addr,
                fd: r.fd,
                mmap_size: r.mmap_size,
                mmap_offset: r.host_user_addr.wrapping_sub(r.mmap_addr as u64),
            })
            .collect::<Vec<_>>()
    };
    // SAFETY: the copy rte_vhost_get_mem_table malloc()ed for us, freed once.
    unsafe { libc::free(mem as *mut c_void) };
    let guest = Arc::new(GuestMemory::map(&regions).map_err(|e| format!("cannot map guest memory: {e}"))?);
    let mut features = 0u64;
    // SAFETY: valid out-parameter for a live vid.
    unsafe { ffi::rte_vhost_get_negotiated_features(vid, &mut features) };
    // SAFETY: plain query on a live vid.
    let n = unsafe { ffi::rte_vhost_get_vring_num(vid) }.min(MAX_VRINGS as u16);
    let mut vrings = Vec::new();
    for i in 0..n {
        let mut vr = std::mem::MaybeUninit::<ffi::rte_vhost_vring>::zeroed();
        // SAFETY: valid out-parameter of the right type for a live vid.
        let ok = unsafe { ffi::rte_vhost_get_vhost_vring(vid, i, vr.as_mut_ptr()) } == 0;
        // SAFETY: zero-initialised, then filled by a successful call (or left zero).
        let vr = unsafe { vr.assume_init() };
        // SAFETY: reading the pointer members of the unions rte_vhost filled for a split
        // ring (the own path never offers packed rings); only their values are used.
        let (d, a, u) = unsafe { (vr.__bindgen_anon_1.desc as u64, vr.__bindgen_anon_2.avail as u64, vr.__bindgen_anon_3.used as u64) };
        vrings.push((ok && d != 0 && a != 0 && u != 0).then(|| OwnVring {
            desc: d,
            avail: a,
            used: u,
            size: vr.size,
            kick: dup(vr.kickfd),
            call: dup(vr.callfd),
        }));
    }
    Ok(OwnDevice { vid, mem: guest, vrings, features })
}

/// Starts the own path on a device that became ready: ring positions from the library,
/// the device mapped and published.
pub(super) fn start(slot: &VhostSlot, vid: i32) -> Result<(), String> {
    for (i, p) in slot.positions.iter().enumerate() {
        let (mut a, mut u) = (0u16, 0u16);
        // SAFETY: valid out-parameters for a live vid; a vring that does not exist fails
        // and leaves them 0.
        unsafe { ffi::rte_vhost_get_vring_base(vid, i as u16, &mut a, &mut u) };
        p.store(pack(a, u), Ordering::SeqCst);
    }
    let dev = map_device(vid)?;
    *slot.device.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(dev));
    Ok(())
}

/// (next available, next used) in one word.
pub(super) fn pack(avail: u16, used: u16) -> u32 {
    u32::from(avail) | u32::from(used) << 16
}

pub(super) fn unpack(v: u32) -> (u16, u16) {
    (v as u16, (v >> 16) as u16)
}

// vhost-user requests (QEMU docs/interop/vhost-user.rst) that change what a worker
// serving the device uses: features, memory, ring addresses and positions, eventfds,
// enabled rings, the owner.
const SET_FEATURES: u32 = 2;
const RESET_OWNER: u32 = 4;
const SET_MEM_TABLE: u32 = 5;
const SET_LOG_BASE: u32 = 6;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const SET_VRING_BASE: u32 = 10;
const GET_VRING_BASE: u32 = 11;
const SET_VRING_KICK: u32 = 12;
const SET_VRING_CALL: u32 = 13;
const SET_VRING_ENABLE: u32 = 18;

fn quiesces(request: u32) -> bool {
    matches!(
        request,
        SET_FEATURES
            | RESET_OWNER
            | SET_MEM_TABLE
            | SET_LOG_BASE
            | SET_VRING_NUM
            | SET_VRING_ADDR
            | SET_VRING_BASE
            | GET_VRING_BASE
            | SET_VRING_KICK
            | SET_VRING_CALL
            | SET_VRING_ENABLE
    )
}

/// How long a device must have had no quiescing message before its new snapshot is
/// published (see [`pre_msg`]); doubled each time the device is paused again within
/// [`CALM`] of coming back, up to [`QUIET_MAX`], so that a frontend spacing its messages
/// just past the quiet time still costs the workers a few reloads, not two per message.
pub const QUIET: Duration = Duration::from_millis(2);
pub const QUIET_MAX: Duration = Duration::from_secs(1);
pub const CALM: Duration = Duration::from_millis(500);

/// Runs before rte_vhost handles a message of an own-path device.
///
/// Messages that change what a worker uses quiesce the device: it is withdrawn from the
/// slot and the reload barrier waited for (no worker serves its rings when this
/// returns), and the ring positions the workers left are handed to the library. They
/// coalesce: after the message ([`post_msg`]) the device is mapped afresh but published
/// only once it has been quiet for [`QUIET`] (by [`resumer`]); a message that arrives
/// before finds it withdrawn still, and costs no barrier. So a frontend looping such
/// messages (SET_VRING_CALL, say) keeps only its own device stopped, and the workers —
/// every other tenant's — see one withdrawal and one return, not two reloads per
/// message.
extern "C" fn pre_msg(vid: i32, msg: *mut c_void) -> ffi::rte_vhost_msg_result {
    let _ = std::panic::catch_unwind(|| {
        if msg.is_null() {
            return;
        }
        // SAFETY: msg is the library's VhostUserMsg for this call; its first field is
        // the u32 request (lib/vhost: RTE_BUILD_BUG_ON(offsetof(.., msg) != 0)).
        let request = unsafe { std::ptr::read_unaligned(msg as *const u32) };
        let Some(slot) = slot_for_vid(vid) else { return };
        if !quiesces(request) || slot.vid() != vid {
            return;
        }
        // A snapshot still waiting to be published was never served: dropped, rebuilt
        // after this message.
        let mut pending = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = pending.take().is_some();
        slot.messages_coalesced.fetch_add(u64::from(waiting), Ordering::Relaxed);
        // Withdraw the device, wait until no worker serves it (each drops its rings and
        // stores its positions), then hand the positions to the library.
        let old = slot.device.lock().unwrap_or_else(|e| e.into_inner()).take();
        if old.is_some() {
            let mut q = slot.quiet.lock().unwrap_or_else(|e| e.into_inner());
            q.0 = match q.1 {
                Some(back) if back.elapsed() < CALM => (q.0 * 2).min(QUIET_MAX),
                _ => QUIET,
            };
            drop(q);
            if let Some(h) = HOOK.get() {
                h(&slot, DeviceEvent::Pause);
            }
            for (i, p) in slot.positions.iter().enumerate() {
                let (a, u) = unpack(p.load(Ordering::SeqCst));
                // SAFETY: plain setter on a live vid; a vring that does not exist fails.
                unsafe { ffi::rte_vhost_set_vring_base(vid, i as u16, a, u) };
            }
        }
        slot.paused.store(old.is_some() || waiting, Ordering::SeqCst);
    });
    ffi::rte_vhost_msg_result_RTE_VHOST_MSG_RESULT_NOT_HANDLED
}

/// Runs after rte_vhost handled a message of an own-path device: maps it afresh (here,
/// on the library's message thread: its getters are not safe against a message being
/// handled) for [`resumer`] to publish once the device is quiet.
extern "C" fn post_msg(vid: i32, _msg: *mut c_void) -> ffi::rte_vhost_msg_result {
    let _ = std::panic::catch_unwind(|| {
        let Some(slot) = slot_for_vid(vid) else { return };
        if !slot.paused.swap(false, Ordering::SeqCst) {
            return;
        }
        // Still running (GET_VRING_BASE and RESET_OWNER stop the device; then new_device
        // maps it again when it is ready).
        if slot.vid() != vid {
            return;
        }
        match map_device(vid) {
            Ok(d) => {
                *slot.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((Arc::new(d), Instant::now()));
                resumer().wake(slot);
            }
            Err(e) => eprintln!("pmdswitch: port {}: {e}; the device is not served until it is set up again", slot.name),
        }
    });
    ffi::rte_vhost_msg_result_RTE_VHOST_MSG_RESULT_NOT_HANDLED
}

/// Publishes `slot`'s waiting snapshot if the device has been quiet long enough; else
/// how long to wait still (None: nothing waits).
fn publish_if_quiet(slot: &VhostSlot) -> Option<Duration> {
    let mut pending = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
    let since = pending.as_ref()?.1.elapsed();
    let mut q = slot.quiet.lock().unwrap_or_else(|e| e.into_inner());
    let quiet = q.0.max(QUIET);
    if since < quiet {
        return Some(quiet - since);
    }
    q.1 = Some(Instant::now());
    drop(q);
    let (dev, _) = pending.take()?;
    *slot.device.lock().unwrap_or_else(|e| e.into_inner()) = Some(dev);
    drop(pending);
    if let Some(h) = HOOK.get() {
        h(slot, DeviceEvent::Resume);
    }
    None
}

/// The thread that publishes coalesced snapshots (one per process, started with the
/// first; it sleeps on a condition variable when nothing waits).
pub(super) struct Resumer {
    waiting: Mutex<Vec<Arc<VhostSlot>>>,
    bell: Condvar,
}

impl Resumer {
    fn wake(&self, slot: Arc<VhostSlot>) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if !w.iter().any(|s| Arc::ptr_eq(s, &slot)) {
            w.push(slot);
        }
        self.bell.notify_one();
    }

    fn run(&self) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let mut next: Option<Duration> = None;
            w.retain(|s| match publish_if_quiet(s) {
                Some(d) => {
                    next = Some(next.map_or(d, |n| n.min(d)));
                    true
                }
                None => false,
            });
            w = match next {
                Some(d) => self.bell.wait_timeout(w, d).unwrap_or_else(|e| e.into_inner()).0,
                None => self.bell.wait(w).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

pub(super) fn resumer() -> &'static Resumer {
    static R: OnceLock<Resumer> = OnceLock::new();
    let mut first = false;
    let r = R.get_or_init(|| {
        first = true;
        Resumer { waiting: Mutex::new(Vec::new()), bell: Condvar::new() }
    });
    if first {
        let _ = std::thread::Builder::new().name("vhost-resume".into()).spawn(|| resumer().run());
    }
    r
}

/// The hooks, for every connection of an own-path socket (a `static`: the library keeps
/// a copy of the table, but the functions must live for the program anyway).
static EXTERN_OPS: ffi::rte_vhost_user_extern_ops =
    ffi::rte_vhost_user_extern_ops { pre_msg_handle: Some(pre_msg), post_msg_handle: Some(post_msg) };

/// Registers the hooks for connection `vid` (from `new_connection`).
pub(super) fn hook_connection(vid: i32) -> bool {
    // SAFETY: vid is the connection the library is calling us about; the table is a
    // static; a NULL context is allowed.
    unsafe { ffi::rte_vhost_extern_callback_register(vid, &EXTERN_OPS, std::ptr::null_mut()) == 0 }
}
