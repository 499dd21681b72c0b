//! Ethdev ports (vdevs and allow-listed PCI NICs) and their rx/tx queue handles.
//!
//! DPDK programmer's guide, Poll Mode Driver: a queue is never shared between lcores
//! without a lock. The handles encode it: at most one handle of a queue is alive at a
//! time (taking a second fails, see `claims::Claims`), and a handle is `Send` but neither
//! `Clone` nor `Sync`, so it is polled by the one thread that holds it.

use std::ffi::CString;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::Arc;

use super::claims::Claims;
use super::eal::Initialized;
use super::error::{DpdkError, Result};
use super::ffi;
use super::mbuf::Batch;
use super::mempool::Mempool;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortId(pub u16);

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// Hardware/driver counters of an ethdev port (`rte_eth_stats_get`).
#[derive(Debug, Clone, Copy, Default)]
pub struct EthStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Rx packets the NIC dropped because no descriptor was free (rx ring full).
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

struct Dev {
    id: PortId,
    /// Also remove the underlying device (vdevs added at run time), so that the same
    /// name can be probed again later.
    remove: bool,
    /// Which rx and tx queues have a live handle.
    rx: Claims,
    tx: Claims,
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: the last handle to this port is gone, so no worker polls it; stop then
        // close releases the queues and the PMD's resources; the rte_device stays valid
        // until rte_dev_remove, which detaches the driver (DPDK guide, "Hotplug").
        unsafe {
            ffi::rte_eth_dev_stop(self.id.0);
            let mut info = MaybeUninit::<ffi::rte_eth_dev_info>::zeroed();
            let dev = if self.remove && ffi::rte_eth_dev_info_get(self.id.0, info.as_mut_ptr()) == 0 {
                info.assume_init().device
            } else {
                std::ptr::null_mut()
            };
            ffi::rte_eth_dev_close(self.id.0);
            if !dev.is_null() {
                ffi::rte_dev_remove(dev);
            }
        }
    }
}

/// An ethdev port owned by pmdswitch. It is stopped and closed when the port and every
/// queue handle taken from it are dropped.
pub struct EthPort {
    dev: Arc<Dev>,
    pool: Arc<Mempool>,
}

/// Device name part of a devargs string: `net_ring0,nodeaction=...` -> `net_ring0`.
pub fn devargs_name(devargs: &str) -> &str {
    devargs.split(',').next().unwrap_or(devargs)
}

/// Descriptors per queue for a device: `given` (`--ring-size`), else a virtio-user
/// device's own `queue_size=N`, else 1024. DPDK's virtio PMD posts only as many receive
/// buffers as its queue was set up with (it caps the ring's free count at nb_desc), so
/// a `queue_size` above the ring size would sit unused.
pub fn ring_for(devargs: &str, given: Option<u16>) -> u16 {
    let own = || {
        devargs_name(devargs)
            .starts_with("net_virtio_user")
            .then(|| devargs.split(',').find_map(|kv| kv.strip_prefix("queue_size=")).and_then(|v| v.parse().ok()))
            .flatten()
    };
    given.or_else(own).unwrap_or(1024)
}

/// `rte_dev_probe` for a vdev (after EAL init), or finds a PCI device the EAL probed at
/// init because it was allow-listed; returns the ethdev port it created.
///
/// # Errors
/// The probe's errno (ENOENT/EINVAL for an unknown driver), or ENODEV if no ethdev port
/// carries the device's name afterwards.
pub fn probe(_: Initialized, devargs: &str, already_probed: bool) -> Result<PortId> {
    let name = devargs_name(devargs);
    if !already_probed {
        let c = CString::new(devargs).map_err(|_| DpdkError::from_ret("devargs", -libc::EINVAL))?;
        // SAFETY: c is a valid C string; DPDK copies what it keeps.
        let ret = unsafe { ffi::rte_dev_probe(c.as_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_dev_probe({devargs})"), ret));
        }
    }
    port_by_name(name)
}

/// The most rx and tx queues the device's driver offers.
///
/// # Errors
/// rte_eth_dev_info_get's error (ENODEV for a stale id).
pub fn max_queues(id: PortId) -> Result<(u16, u16)> {
    let mut info = MaybeUninit::<ffi::rte_eth_dev_info>::zeroed();
    // SAFETY: info is a valid out-parameter of the right type.
    let ret = unsafe { ffi::rte_eth_dev_info_get(id.0, info.as_mut_ptr()) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_info_get({id:?})"), ret));
    }
    // SAFETY: rte_eth_dev_info_get succeeded, so the struct is initialised.
    let info = unsafe { info.assume_init() };
    Ok((info.max_rx_queues, info.max_tx_queues))
}

pub fn port_by_name(name: &str) -> Result<PortId> {
    let c = CString::new(name).map_err(|_| DpdkError::from_ret("port name", -libc::EINVAL))?;
    let mut id = 0u16;
    // SAFETY: c is valid; id is a valid out-parameter.
    let ret = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_get_port_by_name({name})"), ret));
    }
    Ok(PortId(id))
}

/// Queue and ring sizes for [`EthPort::configure`].
#[derive(Debug, Clone, Copy)]
pub struct EthConfig {
    pub n_rxq: u16,
    pub n_txq: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Ask for rx queue interrupts (adaptive idle). Drivers that refuse them are
    /// configured without.
    pub rx_intr: bool,
    /// Remove the device when the port is dropped (vdevs), not only close the port.
    pub remove: bool,
}

impl EthPort {
    /// Configures `id` with the queues asked for, sets every rx queue up on `pool` and
    /// enables promiscuous mode (a switch port must see every frame). The port is not
    /// started; its queue handles are taken with [`EthPort::rx_source`] and friends.
    ///
    /// # Errors
    /// The first failing ethdev call, e.g. EINVAL for more queues than the PMD offers.
    pub fn configure(id: PortId, cfg: EthConfig, pool: &Arc<Mempool>) -> Result<EthPort> {
        let dev = Arc::new(Dev { id, remove: cfg.remove, rx: Claims::new(cfg.n_rxq), tx: Claims::new(cfg.n_txq) });
        let mut info = MaybeUninit::<ffi::rte_eth_dev_info>::zeroed();
        // SAFETY: info is a valid out-parameter of the right type.
        let ret = unsafe { ffi::rte_eth_dev_info_get(id.0, info.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_eth_dev_info_get({id:?})"), ret));
        }
        // SAFETY: rte_eth_dev_info_get succeeded, so the struct is initialised.
        let info = unsafe { info.assume_init() };
        if cfg.n_rxq > info.max_rx_queues || cfg.n_txq > info.max_tx_queues {
            return Err(DpdkError {
                op: format!(
                    "{id:?} needs {} rx / {} tx queues but the driver offers {} / {}",
                    cfg.n_rxq, cfg.n_txq, info.max_rx_queues, info.max_tx_queues
                ),
                errno: libc::EINVAL,
            });
        }
        // All-zero rte_eth_conf: no offloads, no RSS, default MTU — what io forwarding needs.
        let mut conf = ffi::rte_eth_conf::default();
        if cfg.rx_intr {
            conf.intr_conf.set_rxq(1);
        }
        // Several rx queues: spread flows with RSS over every hash type the device offers
        // (DPDK guide, Poll Mode Driver, "RSS"); a device without RSS keeps one queue's
        // traffic on queue 0.
        if cfg.n_rxq > 1 && info.flow_type_rss_offloads != 0 {
            conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads;
        }
        // SAFETY: conf is a valid, initialised configuration.
        let mut ret = unsafe { ffi::rte_eth_dev_configure(id.0, cfg.n_rxq, cfg.n_txq, &conf) };
        if ret < 0 && cfg.rx_intr {
            conf.intr_conf.set_rxq(0);
            // SAFETY: as above; configuring again after a failure is allowed.
            ret = unsafe { ffi::rte_eth_dev_configure(id.0, cfg.n_rxq, cfg.n_txq, &conf) };
        }
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_eth_dev_configure({id:?})"), ret));
        }
        let (mut nrx, mut ntx) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid out-parameters.
        let ret = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id.0, &mut nrx, &mut ntx) };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_eth_dev_adjust_nb_rx_tx_desc({id:?})"), ret));
        }
        // SAFETY: plain query on a valid port.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id.0) };
        // SOCKET_ID_ANY (-1) when the device has no NUMA affinity.
        let socket = if socket < 0 { -1 } else { socket };
        for q in 0..cfg.n_rxq {
            // SAFETY: the port is configured with n_rxq queues; a NULL rxconf means the
            // driver's defaults; the pool outlives the port (handles hold an Arc).
            let ret = unsafe { ffi::rte_eth_rx_queue_setup(id.0, q, nrx, socket as u32, std::ptr::null(), pool.as_ptr()) };
            if ret < 0 {
                return Err(DpdkError::from_ret(format!("rte_eth_rx_queue_setup({id:?}, rxq{q})"), ret));
            }
        }
        for q in 0..cfg.n_txq {
            // SAFETY: as above, NULL txconf = driver defaults.
            let ret = unsafe { ffi::rte_eth_tx_queue_setup(id.0, q, ntx, socket as u32, std::ptr::null()) };
            if ret < 0 {
                return Err(DpdkError::from_ret(format!("rte_eth_tx_queue_setup({id:?}, txq{q})"), ret));
            }
        }
        // Not every PMD has promiscuous mode (vhost, ring): failure is harmless there.
        // SAFETY: plain call on a configured port.
        unsafe { ffi::rte_eth_promiscuous_enable(id.0) };
        Ok(EthPort { dev, pool: pool.clone() })
    }

    /// # Errors
    /// The PMD's start failure (e.g. a tap interface that cannot be created).
    pub fn start(&self) -> Result<()> {
        // SAFETY: the port is configured and its queues are set up.
        let ret = unsafe { ffi::rte_eth_dev_start(self.dev.id.0) };
        if ret < 0 {
            return Err(DpdkError::from_ret(format!("rte_eth_dev_start({:?})", self.dev.id), ret));
        }
        Ok(())
    }

    /// Where rx queue `q` can be taken (by the worker that will poll it).
    pub fn rx_source(&self, q: u16) -> EthRxSource {
        EthRxSource { dev: self.dev.clone(), queue: q, pool: self.pool.clone() }
    }

    /// Where tx queue `q` can be taken.
    pub fn tx_source(&self, q: u16) -> EthTxSource {
        EthTxSource { dev: self.dev.clone(), queue: q }
    }

    /// The handle of rx queue `q`, if it exists and no handle of it is alive.
    pub fn rx_queue(&self, q: u16) -> Option<EthRxQueue> {
        self.rx_source(q).take()
    }

    /// The handle of tx queue `q`, if it exists and no handle of it is alive.
    pub fn tx_queue(&self, q: u16) -> Option<EthTxQueue> {
        self.tx_source(q).take()
    }

    /// Stops the port (safe to call twice); queue handles must no longer be polled.
    pub fn stop(&self) {
        // SAFETY: stopping a started or stopped port is allowed.
        unsafe { ffi::rte_eth_dev_stop(self.dev.id.0) };
    }

    pub fn id(&self) -> PortId {
        self.dev.id
    }
}

/// Driver counters of a port (`rte_eth_stats_get`, safe from any thread; a port that
/// is gone reads as zeros).
pub fn stats_of(id: PortId) -> EthStats {
    let mut s = ffi::rte_eth_stats::default();
    // SAFETY: s is a valid out-parameter; an invalid port id only returns -ENODEV.
    unsafe { ffi::rte_eth_stats_get(id.0, &mut s) };
    EthStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    }
}

/// A place to take one rx queue's handle from: cloneable, itself no handle.
#[derive(Clone)]
pub struct EthRxSource {
    dev: Arc<Dev>,
    queue: u16,
    pool: Arc<Mempool>,
}

impl EthRxSource {
    /// The queue's handle, unless one is alive (or the queue does not exist).
    pub fn take(&self) -> Option<EthRxQueue> {
        self.dev.rx.take(self.queue).then(|| EthRxQueue { dev: self.dev.clone(), queue: self.queue, _pool: self.pool.clone() })
    }
}

/// A place to take one tx queue's handle from.
#[derive(Clone)]
pub struct EthTxSource {
    dev: Arc<Dev>,
    queue: u16,
}

impl EthTxSource {
    /// The queue's handle, unless one is alive (or the queue does not exist).
    pub fn take(&self) -> Option<EthTxQueue> {
        self.dev.tx.take(self.queue).then(|| EthTxQueue { dev: self.dev.clone(), queue: self.queue })
    }
}

/// Rx queue `queue` of a port: the one handle of it (see `claims::Claims`), so only its
/// holder polls it.
pub struct EthRxQueue {
    dev: Arc<Dev>,
    queue: u16,
    _pool: Arc<Mempool>,
}

/// Tx queue `queue` of a port: the one handle of it, so only its holder sends on it.
pub struct EthTxQueue {
    dev: Arc<Dev>,
    queue: u16,
}

impl Drop for EthRxQueue {
    fn drop(&mut self) {
        self.dev.rx.release(self.queue);
    }
}

impl Drop for EthTxQueue {
    fn drop(&mut self) {
        self.dev.tx.release(self.queue);
    }
}

impl EthRxQueue {
    /// `rte_eth_rx_burst` into an empty batch; returns how many packets arrived.
    #[inline(always)]
    pub fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        let (p, n) = batch.rx_slots(max);
        // SAFETY: p has room for n mbuf pointers; the port is started (rx handles are
        // taken after start and the port stops only when every handle is gone); this is
        // the queue's only handle (Claims) and &mut self excludes concurrent use of it, so
        // no other thread polls the queue; the driver hands over ownership of what it
        // returns.
        let got = unsafe { ffi::pmds_eth_rx_burst(self.dev.id.0, self.queue, p, n) } as usize;
        batch.rx_filled(got);
        got
    }
}

impl EthRxQueue {
    /// Adaptive idle: turns this queue's rx interrupt on (returning the fd to sleep on)
    /// or off. None when the driver has no rx interrupts (or the port was configured
    /// without them): the worker then re-polls instead of sleeping long.
    pub fn arm(&mut self, on: bool) -> Option<i32> {
        let (port, q) = (self.dev.id.0, self.queue);
        // SAFETY: plain calls on a started port and a queue this handle owns.
        unsafe {
            if !on {
                ffi::rte_eth_dev_rx_intr_disable(port, q);
                return None;
            }
            // ENOTSUP: the driver has no switch, its queue fd is always armed (net_tap:
            // the tap fd itself, readable while packets wait), as DPDK's l3fwd-power
            // example assumes.
            let ret = ffi::rte_eth_dev_rx_intr_enable(port, q);
            if ret < 0 && ret != -libc::ENOTSUP {
                return None;
            }
            let fd = ffi::rte_eth_dev_rx_intr_ctl_q_get_fd(port, q);
            if fd < 0 {
                ffi::rte_eth_dev_rx_intr_disable(port, q);
                return None;
            }
            Some(fd)
        }
    }
}

impl EthTxQueue {
    /// `rte_eth_tx_burst` of the batch's pending packets. The driver takes ownership of
    /// the ones it accepts; the rest stay in the batch. Returns how many were accepted.
    #[inline(always)]
    pub fn tx_burst(&mut self, batch: &mut Batch) -> usize {
        let (p, n) = batch.tx_slots();
        // SAFETY: p points at n owned mbufs; this is the queue's only handle (Claims) and
        // &mut self excludes concurrent use of it, so no other thread sends on the queue.
        let sent = unsafe { ffi::pmds_eth_tx_burst(self.dev.id.0, self.queue, p, n) } as usize;
        batch.tx_consumed(sent);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::ring_for;

    #[test]
    fn ring_follows_a_virtio_user_queue_size_unless_given() {
        assert_eq!(ring_for("net_virtio_user0,path=/s,queue_size=4096", None), 4096);
        assert_eq!(ring_for("net_virtio_user0,queue_size=4096,path=/s", Some(512)), 512);
        assert_eq!(ring_for("net_virtio_user0,path=/s", None), 1024);
        // Only virtio-user's argument of that name counts; a bad number is DPDK's to refuse.
        assert_eq!(ring_for("net_null0,queue_size=4096", None), 1024);
        assert_eq!(ring_for("net_virtio_user0,queue_size=big", None), 1024);
    }
}
