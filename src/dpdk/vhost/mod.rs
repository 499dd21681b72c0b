//! vhost-user ports through DPDK's vhost library (`rte_vhost`), used directly as OVS-DPDK
//! does rather than through the `net_vhost` ethdev, which always enables the library's
//! per-queue statistics and frees mbufs one at a time (measured: 4–6 cycles/packet).
//!
//! Devices appear and vanish on DPDK's `vhost-events` thread. The library's callbacks
//! carry only a `vid`, so a process-wide registry maps a vid back to its port by socket
//! path (`rte_vhost_get_ifname`). The application installs one hook that the callbacks
//! call: on removal the hook must not return while any worker may still touch the old vid
//! (DPDK prog guide, Vhost Library: "destroy_device ... the application must not access
//! the device after this callback returns").

use std::ffi::{c_char, c_int, CStr, CString};
use std::mem::MaybeUninit;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::claims::Claims;
pub mod own;

use own::{OwnDevice, MAX_VRINGS};

use super::error::{DpdkError, Result};
use super::ffi;
use super::mbuf::Batch;
use super::mempool::Mempool;
use crate::dpdk::eal::Initialized;

/// No device attached.
pub const NO_VID: i32 = -1;

/// What the control plane shares with workers about one vhost-user socket.
pub struct VhostSlot {
    /// The socket path, as registered (and as `rte_vhost_get_ifname` reports it).
    pub path: String,
    /// Port name, for messages.
    pub name: String,
    /// The running device's vid, or [`NO_VID`]. Workers read it only at their reload point.
    vid: AtomicI32,
    /// Bit i set: vring i is enabled by the frontend (vrings 0..64).
    enabled: AtomicU64,
    /// The vid of the accepted connection (one frontend per socket), or [`NO_VID`].
    conn_vid: AtomicI32,
    /// Guest notifications of devices that have gone (see [`VhostSlot::guest_notifications`]).
    notifications_past: AtomicU64,
    pub devices_added: AtomicU64,
    pub devices_removed: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Which queue pairs have a live rx (dequeue) and tx (enqueue) handle.
    rx: Claims,
    tx: Claims,
    /// Who serves the rings: rte_vhost's enqueue/dequeue, or pmdswitch (`own`).
    pub datapath: Datapath,
    /// Own data path: the running device as mapped (None while none runs, or while a
    /// message that changes it is handled).
    device: Mutex<Option<Arc<OwnDevice>>>,
    /// Own data path: each vring's (next available, next used) position, which the
    /// worker serving it stores when it lets go.
    positions: [AtomicU32; MAX_VRINGS],
    /// Own data path: the pre-message hook withdrew the device.
    paused: AtomicBool,
    /// Own data path: the device mapped after a message, waiting to be published until
    /// it has been quiet a while (see `own::pre_msg`), and when it was mapped.
    pending: Mutex<Option<(Arc<OwnDevice>, std::time::Instant)>>,
    /// Own data path: the device's current quiet time, and when it was last published
    /// after a pause (see `own::QUIET`).
    quiet: Mutex<(std::time::Duration, Option<std::time::Instant>)>,
    /// Own data path: quiescing messages that found the device still withdrawn (cost no
    /// barrier): a frontend's message storm, made visible.
    pub messages_coalesced: AtomicU64,
    /// Own data path: a lock per guest-RX vring, and which handle served it last. Two tx
    /// handles (queue pairs) may land on one vring when the frontend enables fewer pairs
    /// than it has, so whoever shares a vring takes its lock for the burst and, if it was
    /// not the last to serve it, resumes from the positions stored here; a handle that is
    /// the vring's only writer holds the lock from one reload point to the next.
    tx_locks: [AtomicBool; MAX_VRINGS],
    tx_owner: [AtomicU64; MAX_VRINGS],
}

/// Who serves a vhost port's rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    /// rte_vhost_dequeue_burst / rte_vhost_enqueue_burst through mbufs.
    Lib,
    /// pmdswitch's own virtqueue code (`datapath::vring`): guest to guest in one copy.
    Own,
}

impl Datapath {
    pub fn name(self) -> &'static str {
        match self {
            Datapath::Lib => "lib",
            Datapath::Own => "own",
        }
    }
}

impl VhostSlot {
    /// The workers may serve the device now: attached, and on the own path not withdrawn
    /// (while a device-changing message is handled or coalesced, or after its memory
    /// faulted).
    pub fn is_served(&self) -> bool {
        match self.datapath {
            Datapath::Lib => self.vid() != NO_VID,
            Datapath::Own => self.device.lock().unwrap_or_else(|e| e.into_inner()).is_some(),
        }
    }

    /// Own data path: the device as mapped now.
    pub fn own_device(&self) -> Option<Arc<OwnDevice>> {
        self.device.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Own data path: where vring `i` resumes, (next available, next used).
    pub fn position(&self, i: u16) -> (u16, u16) {
        own::unpack(self.positions.get(usize::from(i)).map_or(0, |p| p.load(Ordering::Acquire)))
    }

    /// Own data path: stores where vring `i` stopped (by the one handle serving it).
    /// A release store, not SeqCst (a locked instruction on x86, once per egress burst):
    /// the next handle to serve the vring reads it only after taking the vring's lock
    /// (whose release orders this store before it) or after the reload barrier's SeqCst
    /// acknowledgement that follows a handle letting go.
    #[inline(always)]
    pub fn set_position(&self, i: u16, at: (u16, u16)) {
        if let Some(p) = self.positions.get(usize::from(i)) {
            p.store(own::pack(at.0, at.1), Ordering::Release);
        }
    }

    /// Own data path: takes guest-RX vring `i`'s lock, spinning at most `spins` times
    /// (bounded: a holder that is itself waiting cannot hold this worker forever).
    /// False: not taken (busy, or no such vring).
    #[inline(always)]
    pub fn try_lock_tx_vring(&self, i: u16, spins: u32) -> bool {
        let Some(l) = self.tx_locks.get(usize::from(i)) else { return false };
        let mut left = spins;
        while l.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while l.load(Ordering::Relaxed) {
                if left == 0 {
                    return false;
                }
                left -= 1;
                std::hint::spin_loop();
            }
        }
        true
    }

    /// Own data path: lets go of guest-RX vring `i`'s lock (taken by
    /// [`VhostSlot::try_lock_tx_vring`]).
    #[inline(always)]
    pub fn unlock_tx_vring(&self, i: u16) {
        if let Some(l) = self.tx_locks.get(usize::from(i)) {
            l.store(false, Ordering::Release);
        }
    }

    /// Own data path: bit p set while queue pair p's send handle is alive.
    pub fn tx_claimed(&self) -> u64 {
        self.tx.taken()
    }

    /// Own data path: who served vring `i` last (a handle's token), and a new one.
    #[inline(always)]
    pub fn tx_owner(&self, i: u16) -> u64 {
        self.tx_owner.get(usize::from(i)).map_or(0, |o| o.load(Ordering::Relaxed))
    }

    #[inline(always)]
    pub fn set_tx_owner(&self, i: u16, token: u64) {
        if let Some(o) = self.tx_owner.get(usize::from(i)) {
            o.store(token, Ordering::Relaxed);
        }
    }

    /// Bit i set: vring i is enabled by the frontend.
    pub fn enabled(&self) -> u64 {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Host-to-guest notifications (call eventfd writes) so far: the library writes one
    /// per enqueue burst when the guest asks for interrupts (a kernel virtio-net driver
    /// does; a polling virtio-user PMD does not). Counted per device through the
    /// `guest_notified` callback, which costs nothing per packet, rather than with the
    /// library's per-queue stats (`RTE_VHOST_USER_NET_STATS_ENABLE`), which cost 4-6
    /// cycles on every packet.
    pub fn guest_notifications(&self) -> u64 {
        let vid = self.vid();
        let now = usize::try_from(vid).ok().and_then(|v| GUEST_NOTIFICATIONS.get(v)).map(|c| c.load(Ordering::Relaxed)).unwrap_or(0);
        self.notifications_past.load(Ordering::Relaxed) + now
    }

    /// The offloads the running device negotiated, for a log line: what the guest may
    /// send (`tx`) and accept (`rx`), e.g. "offloads tx csum,tso4,tso6 rx none".
    pub fn offloads(&self) -> String {
        let mut f = 0u64;
        // SAFETY: an unknown or stale vid only makes the call fail (it looks the vid up
        // in the library's table under its own lock); `f` is a valid out pointer.
        let ok = unsafe { ffi::rte_vhost_get_negotiated_features(self.vid(), &mut f) } == 0;
        if ok {
            own::describe_offloads(f)
        } else {
            "offloads unknown".into()
        }
    }

    /// The running device's vid ([`NO_VID`] when none). Sequentially consistent: pairs
    /// with the reload protocol (see `crate::reload`).
    pub fn vid(&self) -> i32 {
        self.vid.load(Ordering::SeqCst)
    }
}

/// A device change, delivered on the vhost-events thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// A device became ready; its vid is published in the slot.
    Added,
    /// The slot's vid was withdrawn; return only when no worker can still use the old one.
    Removed,
    /// The frontend enabled or disabled a vring (multiqueue: how many queue pairs are in
    /// use); workers re-pick their tx vring at the next reload. Must not block.
    VringChanged,
    /// Own data path: the device was withdrawn before a message that changes it; return
    /// only when no worker serves its rings.
    Pause,
    /// Own data path: the device was mapped again after such a message; must not block.
    Resume,
}

/// Guest notifications per vid (the library's vids are below RTE_MAX_VHOST_DEVICE).
/// Written by whichever worker enqueues, right after its eventfd write.
pub(crate) static GUEST_NOTIFICATIONS: [AtomicU64; ffi::RTE_MAX_VHOST_DEVICE as usize] =
    [const { AtomicU64::new(0) }; ffi::RTE_MAX_VHOST_DEVICE as usize];

type Hook = Box<dyn Fn(&VhostSlot, DeviceEvent) + Send + Sync>;

struct Registry {
    slots: Vec<Arc<VhostSlot>>,
}

// The vhost library's callbacks take no user pointer, hence process-wide state; it holds
// only what the callbacks must find (registration is control-plane, so a Mutex is fine).
static REGISTRY: Mutex<Registry> = Mutex::new(Registry { slots: Vec::new() });
pub(crate) static HOOK: OnceLock<Hook> = OnceLock::new();

/// Installs the application's device hook (once per process, before any port starts).
pub fn set_device_hook(hook: impl Fn(&VhostSlot, DeviceEvent) + Send + Sync + 'static) {
    let _ = HOOK.set(Box::new(hook));
}

pub(crate) fn slot_for_vid(vid: c_int) -> Option<Arc<VhostSlot>> {
    let mut buf = [0 as c_char; 4096];
    // SAFETY: buf is writable for its whole length, which we pass.
    let ret = unsafe { ffi::rte_vhost_get_ifname(vid, buf.as_mut_ptr(), buf.len()) };
    if ret < 0 {
        return None;
    }
    // SAFETY: rte_vhost_get_ifname NUL-terminates within len.
    let path = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.slots.iter().find(|s| s.path == path).cloned()
}

fn disable_guest_notifications(vid: c_int) {
    // SAFETY: vid is the device the library is calling us about.
    let n = unsafe { ffi::rte_vhost_get_vring_num(vid) };
    for q in 0..n {
        // Guest kicks are for sleeping backends; our workers poll, so every kick would be a
        // wasted guest exit and eventfd write (virtio 1.1 §2.7.10: driver notification
        // suppression is the device's choice). Fails harmlessly for vrings not yet ready.
        // SAFETY: as above.
        unsafe { ffi::rte_vhost_enable_guest_notification(vid, q, 0) };
    }
}

extern "C" fn on_new_device(vid: c_int) -> c_int {
    catch_unwind(|| {
        let Some(slot) = slot_for_vid(vid) else { return -1 };
        if slot.datapath == Datapath::Own {
            // Our workers suppress kicks themselves (used->flags, avail_event).
            if let Err(e) = own::start(&slot, vid) {
                eprintln!("pmdswitch: port {}: {e}: the device is not served", slot.name);
                return -1;
            }
        } else {
            disable_guest_notifications(vid);
        }
        if let Some(c) = usize::try_from(vid).ok().and_then(|v| GUEST_NOTIFICATIONS.get(v)) {
            c.store(0, Ordering::Relaxed);
        }
        slot.vid.store(vid, Ordering::SeqCst);
        slot.devices_added.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = HOOK.get() {
            h(&slot, DeviceEvent::Added);
        }
        0
    })
    .unwrap_or(-1)
}

extern "C" fn on_destroy_device(vid: c_int) {
    let _ = catch_unwind(|| {
        let Some(slot) = slot_for_vid(vid) else { return };
        if slot.vid.compare_exchange(vid, NO_VID, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return;
        }
        slot.devices_removed.fetch_add(1, Ordering::Relaxed);
        drop(slot.pending.lock().unwrap_or_else(|e| e.into_inner()).take());
        let dev = slot.device.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = HOOK.get() {
            h(&slot, DeviceEvent::Removed);
        }
        // No worker serves it now: our mappings and fds go with the last reference.
        drop(dev);
        slot.enabled.store(0, Ordering::SeqCst);
        // No worker enqueues to the old vid any more: fold its count into the slot.
        if let Some(c) = usize::try_from(vid).ok().and_then(|v| GUEST_NOTIFICATIONS.get(v)) {
            slot.notifications_past.fetch_add(c.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    });
}

extern "C" fn on_vring_state_changed(vid: c_int, queue: u16, enable: c_int) -> c_int {
    // Record the state and ask workers to re-pick tx vrings; nothing else is allowed:
    // the library calls this with the vring's access_lock held, so e.g.
    // rte_vhost_enable_guest_notification here spins forever on that lock (seen with
    // 22.11). Notifications are disabled in new_device.
    let _ = catch_unwind(|| {
        let Some(slot) = slot_for_vid(vid) else { return };
        if queue < 64 {
            let bit = 1u64 << queue;
            if enable != 0 {
                slot.enabled.fetch_or(bit, Ordering::SeqCst);
            } else {
                slot.enabled.fetch_and(!bit, Ordering::SeqCst);
            }
        }
        // An own-path device withdrawn while messages arrive is re-read whole when it is
        // published again: no reload now (a storm of SET_VRING_ENABLE would otherwise
        // reload every worker per message).
        let withdrawn = slot.datapath == Datapath::Own && slot.device.lock().unwrap_or_else(|e| e.into_inner()).is_none();
        if let Some(h) = HOOK.get().filter(|_| !withdrawn) {
            h(&slot, DeviceEvent::VringChanged);
        }
    });
    0
}

/// Own data path: withdraws every device whose guest memory faulted (its frontend
/// truncated the memory file under a live mapping: `guest::fault`), and returns their
/// ports' names, once each. The device is served again when its frontend sets it up
/// again (a new memory table, or a reconnection).
pub fn withdraw_faulted() -> Vec<String> {
    let slots = REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).slots.clone();
    let mut out = Vec::new();
    for s in slots.iter().filter(|s| s.datapath == Datapath::Own) {
        let mut d = s.device.lock().unwrap_or_else(|e| e.into_inner());
        if d.as_ref().is_some_and(|d| d.mem.faulted()) {
            let dev = d.take();
            drop(d);
            if let Some(h) = HOOK.get() {
                h(s, DeviceEvent::Resume);
            }
            drop(dev);
            out.push(s.name.clone());
        }
    }
    out
}

extern "C" fn on_guest_notified(vid: c_int) {
    if let Some(c) = usize::try_from(vid).ok().and_then(|v| GUEST_NOTIFICATIONS.get(v)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

extern "C" fn on_new_connection(vid: c_int) -> c_int {
    catch_unwind(|| {
        let Some(slot) = slot_for_vid(vid) else { return -1 };
        // One frontend per socket: a second one is refused (the library closes it) and the
        // first keeps forwarding.
        match slot.conn_vid.compare_exchange(NO_VID, vid, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) if slot.datapath == Datapath::Own && !own::hook_connection(vid) => {
                let _ = slot.conn_vid.compare_exchange(vid, NO_VID, Ordering::SeqCst, Ordering::SeqCst);
                eprintln!("pmdswitch: port {}: cannot hook the connection's messages; refused", slot.name);
                -1
            }
            Ok(_) => 0,
            Err(_) => {
                slot.connections_refused.fetch_add(1, Ordering::Relaxed);
                eprintln!("pmdswitch: port {}: refused a second vhost-user frontend on {}", slot.name, slot.path);
                -1
            }
        }
    })
    .unwrap_or(-1)
}

extern "C" fn on_destroy_connection(vid: c_int) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let Some(slot) = slot_for_vid(vid) {
            let _ = slot.conn_vid.compare_exchange(vid, NO_VID, Ordering::SeqCst, Ordering::SeqCst);
        }
    }));
}

/// The callback table. The library keeps a pointer to it for the life of the
/// registration, so it is a `static`.
struct Ops(ffi::rte_vhost_device_ops);
// SAFETY: the table is immutable; its only raw pointer is the reserved field, always NULL.
unsafe impl Sync for Ops {}

static OPS: Ops = Ops(ffi::rte_vhost_device_ops {
    new_device: Some(on_new_device),
    destroy_device: Some(on_destroy_device),
    vring_state_changed: Some(on_vring_state_changed),
    features_changed: None,
    new_connection: Some(on_new_connection),
    destroy_connection: Some(on_destroy_connection),
    guest_notified: Some(on_guest_notified),
    reserved: [std::ptr::null_mut(); 1],
});

/// Whether pmdswitch listens on the socket or connects to one (QEMU `server=on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    /// Reconnects by itself whenever the peer goes away and comes back (the library's
    /// default for clients without `RTE_VHOST_USER_NO_RECONNECT`).
    Client,
}

/// A registered vhost-user socket. Dropping it unregisters the socket (which destroys a
/// connected device through the callback, and removes a server's socket file).
pub struct VhostPort {
    slot: Arc<VhostSlot>,
    cpath: CString,
    role: Role,
    started: bool,
}

impl VhostPort {
    /// `rte_vhost_driver_register` + feature policy + callbacks. Not yet listening or
    /// connecting: see [`VhostPort::start`].
    ///
    /// Offloads: we forward to arbitrary ports (NICs, rings) that cannot finish a
    /// partially checksummed or segmented packet, so the guest must not hand us such
    /// packets: HOST_TSO4/6, HOST_ECN, HOST_UFO and CSUM are disabled (as OVS-DPDK does
    /// without userspace TSO), and ol_flags follow the ethdev convention
    /// (`RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS`).
    ///
    /// # Errors
    /// The failing `rte_vhost_driver_*` call.
    pub fn register(_: Initialized, name: &str, path: &str, role: Role, pairs: u16, datapath: Datapath) -> Result<VhostPort> {
        let cpath = CString::new(path).map_err(|_| DpdkError::from_ret("socket path", -libc::EINVAL))?;
        let mut flags = ffi::RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS as u64;
        if role == Role::Client {
            flags |= ffi::RTE_VHOST_USER_CLIENT as u64;
        }
        // SAFETY: cpath is a valid C string (the library copies it).
        let ret = unsafe { ffi::rte_vhost_driver_register(cpath.as_ptr(), flags) };
        if ret < 0 {
            return Err(DpdkError::from_rte_errno(format!("rte_vhost_driver_register({path})")));
        }
        let slot = Arc::new(VhostSlot {
            path: path.to_owned(),
            name: name.to_owned(),
            vid: AtomicI32::new(NO_VID),
            conn_vid: AtomicI32::new(NO_VID),
            enabled: AtomicU64::new(0),
            notifications_past: AtomicU64::new(0),
            devices_added: AtomicU64::new(0),
            devices_removed: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            rx: Claims::new(pairs),
            tx: Claims::new(pairs),
            datapath,
            device: Mutex::new(None),
            positions: [const { AtomicU32::new(0) }; MAX_VRINGS],
            paused: AtomicBool::new(false),
            pending: Mutex::new(None),
            quiet: Mutex::new((own::QUIET, None)),
            messages_coalesced: AtomicU64::new(0),
            tx_locks: [const { AtomicBool::new(false) }; MAX_VRINGS],
            tx_owner: [const { AtomicU64::new(0) }; MAX_VRINGS],
        });
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).slots.push(slot.clone());
        let port = VhostPort { slot, cpath, role, started: false };
        use own::bits::*;
        let (off, on) = match datapath {
            Datapath::Lib => (NET_F_HOST_TSO4 | NET_F_HOST_TSO6 | NET_F_HOST_ECN | NET_F_HOST_UFO | NET_F_CSUM, 0),
            Datapath::Own => (own::OWN_DISABLED, own::OWN_ENABLED),
        };
        // SAFETY: the path is registered.
        let ret = unsafe { ffi::rte_vhost_driver_disable_features(port.cpath.as_ptr(), off) };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_vhost_driver_disable_features({path})"), ret));
        }
        // SAFETY: as above.
        let ret = if on != 0 { unsafe { ffi::rte_vhost_driver_enable_features(port.cpath.as_ptr(), on) } } else { 0 };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_vhost_driver_enable_features({path})"), ret));
        }
        // SAFETY: OPS is a static, so it outlives the registration as the library requires.
        let ret = unsafe { ffi::rte_vhost_driver_callback_register(port.cpath.as_ptr(), &OPS.0) };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_vhost_driver_callback_register({path})"), ret));
        }
        Ok(port)
    }

    /// Starts listening (server, then sets the socket's mode to `mode`) or connecting
    /// (client; retried in the background until the peer appears).
    ///
    /// # Errors
    /// `rte_vhost_driver_start` failed (bind or listen on the path), or chmod failed.
    pub fn start(&mut self, mode: u32) -> Result<()> {
        // SAFETY: the path is registered with callbacks.
        let ret = unsafe { ffi::rte_vhost_driver_start(self.cpath.as_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_vhost_driver_start({})", self.slot.path), ret));
        }
        self.started = true;
        if self.role == Role::Server {
            std::fs::set_permissions(&self.slot.path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| DpdkError { op: format!("chmod {:o} {}", mode, self.slot.path), errno: e.raw_os_error().unwrap_or(0) })?;
        }
        Ok(())
    }

    pub fn slot(&self) -> &Arc<VhostSlot> {
        &self.slot
    }

    /// Where the rx handle of queue pair `qp` can be taken: it dequeues from the guest's
    /// TX vring (2·qp+1).
    pub fn rx_source(&self, qp: u16, pool: &Arc<Mempool>) -> VhostRxSource {
        VhostRxSource { slot: self.slot.clone(), pair: qp, pool: pool.clone() }
    }

    /// Where the tx handle of queue pair `qp` can be taken: it enqueues into the guest's
    /// RX vring (2·qp).
    pub fn tx_source(&self, qp: u16) -> VhostTxSource {
        VhostTxSource { slot: self.slot.clone(), pair: qp }
    }

    /// The tx handle of queue pair `qp`, if it exists and no handle of it is alive.
    pub fn tx_queue(&self, qp: u16) -> Option<VhostTxQueue> {
        self.tx_source(qp).take()
    }
}

/// A place to take one queue pair's rx handle from: cloneable, itself no handle.
#[derive(Clone)]
pub struct VhostRxSource {
    slot: Arc<VhostSlot>,
    pair: u16,
    pool: Arc<Mempool>,
}

/// The claim on one direction of a queue pair for the own data path: while it lives,
/// nobody else serves that vring (the same `Claims` as the library path's handles).
pub struct PairClaim {
    slot: Arc<VhostSlot>,
    pair: u16,
    tx: bool,
}

impl PairClaim {
    pub fn slot(&self) -> &Arc<VhostSlot> {
        &self.slot
    }

    pub fn pair(&self) -> u16 {
        self.pair
    }
}

impl Drop for PairClaim {
    fn drop(&mut self) {
        if self.tx {
            self.slot.tx.release(self.pair);
        } else {
            self.slot.rx.release(self.pair);
        }
    }
}

impl VhostRxSource {
    /// The slot behind this source (whose `datapath` says which handle to take).
    pub fn slot(&self) -> &Arc<VhostSlot> {
        &self.slot
    }

    /// Own data path: the claim on this pair's guest-TX vring, unless someone holds it.
    pub fn claim(&self) -> Option<PairClaim> {
        self.slot.rx.take(self.pair).then(|| PairClaim { slot: self.slot.clone(), pair: self.pair, tx: false })
    }

    /// The handle, unless one is alive (or the pair was not configured).
    pub fn take(&self) -> Option<VhostRxQueue> {
        let q = self.pair;
        self.slot.rx.take(q).then(|| VhostRxQueue {
            slot: self.slot.clone(),
            vid: NO_VID,
            vring: 2 * q + 1,
            pair: q,
            pool: self.pool.clone(),
        })
    }
}

/// A place to take one queue pair's tx handle from.
#[derive(Clone)]
pub struct VhostTxSource {
    slot: Arc<VhostSlot>,
    pair: u16,
}

impl VhostTxSource {
    pub fn slot(&self) -> &Arc<VhostSlot> {
        &self.slot
    }

    /// Own data path: the claim on this pair's guest-RX vring, unless someone holds it.
    pub fn claim(&self) -> Option<PairClaim> {
        self.slot.tx.take(self.pair).then(|| PairClaim { slot: self.slot.clone(), pair: self.pair, tx: true })
    }

    /// The handle, unless one is alive (or the pair was not configured).
    pub fn take(&self) -> Option<VhostTxQueue> {
        let q = self.pair;
        self.slot.tx.take(q).then(|| VhostTxQueue { slot: self.slot.clone(), vid: NO_VID, vring: 2 * q, pair: q })
    }
}

impl Drop for VhostPort {
    fn drop(&mut self) {
        // SAFETY: the path is registered. Unregistering a connected socket calls
        // destroy_device synchronously on this thread; the hook then waits only for
        // workers still running (none, at shutdown).
        unsafe { ffi::rte_vhost_driver_unregister(self.cpath.as_ptr()) };
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
        drop(reg);
        if self.role == Role::Server && self.started {
            // The library unlinks its socket; make sure nothing is left if it did not.
            let _ = std::fs::remove_file(&self.slot.path);
        }
    }
}

/// Dequeue side of one queue pair: its one handle (see `claims::Claims`), held by one
/// worker. Its vid is a copy taken at the worker's reload point
/// ([`VhostRxQueue::reload`]).
pub struct VhostRxQueue {
    slot: Arc<VhostSlot>,
    vid: i32,
    vring: u16,
    pair: u16,
    pool: Arc<Mempool>,
}

/// Enqueue side of one queue pair: its one handle, held by one worker.
pub struct VhostTxQueue {
    slot: Arc<VhostSlot>,
    vid: i32,
    vring: u16,
    /// The queue pair this handle prefers; the vring used is picked among the enabled
    /// ones at each reload (a frontend may use fewer pairs than offered).
    pair: u16,
}

impl Drop for VhostRxQueue {
    fn drop(&mut self) {
        self.slot.rx.release(self.pair);
    }
}

impl Drop for VhostTxQueue {
    fn drop(&mut self) {
        self.slot.tx.release(self.pair);
    }
}

impl VhostRxQueue {
    /// Picks up the slot's current vid (call only at the reload point).
    pub fn reload(&mut self) {
        self.vid = self.slot.vid();
    }

    /// Adaptive idle: asks the guest to kick (`on`) or not to, and returns the vring's kick
    /// eventfd to sleep on (None without a device). Called by the owning worker only.
    /// virtio 1.1 §2.7.10: the device may suppress driver notifications; while we sleep
    /// we need them, and turning them back on must be followed by one more poll, since a
    /// buffer added just before is not kicked.
    pub fn arm(&mut self, on: bool) -> Option<i32> {
        if self.vid == NO_VID {
            return None;
        }
        // SAFETY: self.vid was read at this worker's last reload point, and a device's
        // destroy_device does not return before every running worker has passed a reload
        // point after its vid was withdrawn (ReloadBarrier::request_and_wait in the
        // device hook), so the vid names a live device.
        unsafe { ffi::rte_vhost_enable_guest_notification(self.vid, self.vring, on as i32) };
        if !on {
            return None;
        }
        let mut vr = MaybeUninit::<ffi::rte_vhost_vring>::zeroed();
        // SAFETY: valid out-parameter of the right type for a live vid.
        let ret = unsafe { ffi::rte_vhost_get_vhost_vring(self.vid, self.vring, vr.as_mut_ptr()) };
        if ret < 0 {
            return None;
        }
        // SAFETY: initialised by the successful call above.
        let fd = unsafe { vr.assume_init() }.kickfd;
        (fd >= 0).then_some(fd)
    }

    /// `rte_vhost_dequeue_burst` into an empty batch: copies packets out of guest memory
    /// into new mbufs from the pool. Returns 0 when no device is attached.
    #[inline(always)]
    pub fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        if self.vid == NO_VID {
            return 0;
        }
        let (p, n) = batch.rx_slots(max);
        // SAFETY: the vid names a live device (as in arm); p has room for n pointers; the
        // library serialises users of one vring with its access_lock; the mbufs it
        // returns are ours.
        let got = unsafe { ffi::rte_vhost_dequeue_burst(self.vid, self.vring, self.pool.as_ptr(), p, n) } as usize;
        batch.rx_filled(got);
        got
    }
}

impl VhostTxQueue {
    /// Picks up the slot's vid and the guest-rx vring to use: pair `self.pair` modulo the
    /// number of enabled pairs (virtio 1.1 §5.1.6.5.5: the driver says how many pairs it
    /// uses; sending to a disabled vring would drop everything).
    pub fn reload(&mut self) {
        self.vid = self.slot.vid();
        let en = self.slot.enabled.load(Ordering::SeqCst);
        let pairs: Vec<u16> = (0..32u16).filter(|p| en & (1u64 << (2 * p)) != 0).collect();
        self.vring = match pairs.len() {
            0 => 0,
            n => 2 * pairs[self.pair as usize % n],
        };
    }

    #[inline(always)]
    pub fn is_up(&self) -> bool {
        self.vid != NO_VID
    }

    /// `rte_vhost_enqueue_burst` of the batch's pending packets. The library *copies*, so
    /// the accepted packets are freed here in bulk; the rest stay in the batch (freeing
    /// only the unsent ones, as after `rte_eth_tx_burst`, leaks the whole pool).
    #[inline(always)]
    pub fn tx_burst(&mut self, batch: &mut Batch) -> usize {
        if self.vid == NO_VID {
            return 0;
        }
        let (p, n) = batch.tx_slots();
        // SAFETY: the vid names a live device (as in VhostRxQueue::arm); p points at n
        // owned mbufs, which the library only reads; it takes the vring's access_lock, so
        // two tx handles that picked the same enabled vring do not race.
        let sent = unsafe { ffi::rte_vhost_enqueue_burst(self.vid, self.vring, p, n) } as usize;
        batch.free_front(sent);
        sent
    }
}
