//! Opening ports: a vhost-user socket registered with rte_vhost, or an ethdev probed,
//! configured and started; the same for ports given at start and ports added by `ctl`.

use std::sync::Arc;

use crossbeam::utils::CachePadded;

use crate::control::plane::{PortEntry, PortRt, Rule};
use crate::datapath::bridge::vlan::VlanMode;
use crate::datapath::stats::{PortTotals, RxqCounters};
use crate::datapath::vring::port::OwnTxQueue;
use crate::datapath::worker::{TxQueue, TxSource};
use crate::dpdk::eal::Initialized;
use crate::dpdk::ethdev::{self, EthConfig, EthPort};
use crate::dpdk::mempool::Mempool;
use crate::dpdk::txq::SharedQueue;
use crate::dpdk::vhost::{Datapath, Role, VhostPort};
use crate::parse::{PortDef, PortSpec};

/// Whether two ports would use the same socket or device.
pub fn same_resource(a: &PortSpec, b: &PortSpec) -> bool {
    match (a, b) {
        (PortSpec::VhostServer(x) | PortSpec::VhostClient(x), PortSpec::VhostServer(y) | PortSpec::VhostClient(y)) => x == y,
        (PortSpec::Pci(x), PortSpec::Pci(y)) => x == y,
        (PortSpec::Vdev(x), PortSpec::Vdev(y)) => ethdev::devargs_name(x) == ethdev::devargs_name(y),
        _ => false,
    }
}

/// What every port is opened with (also for ports added at run time).
pub struct Opener {
    /// `--ring-size`; None: each device's default ([`ethdev::ring_for`]).
    pub ring_size: Option<u16>,
    pub rx_intr: bool,
    pub socket_mode: u32,
    pub socket_uid: Option<u32>,
    pub socket_gid: Option<u32>,
    pub workers: usize,
    pub pool: Arc<Mempool>,
    /// Who serves vhost ports' rings.
    pub datapath: Datapath,
    /// Ports are opened on an initialised EAL.
    pub eal: Initialized,
}

impl Opener {
    /// Creates and starts a port: registers a vhost socket, or probes, configures and
    /// starts an ethdev with `queues` rx queues and a tx queue per worker (as many as the
    /// driver offers). Errors are one line that names the port.
    pub fn open(&self, def: &PortDef, queues: u16, vlan: VlanMode, base: PortTotals) -> Result<PortEntry, String> {
        let name = &def.name;
        let (rt, tx) = match &def.spec {
            PortSpec::Vxlan(_) => return Err(format!("port '{name}': VXLAN members are made by --vxlan, not opened")),
            PortSpec::VhostServer(path) | PortSpec::VhostClient(path) => {
                let role = if matches!(def.spec, PortSpec::VhostServer(_)) { Role::Server } else { Role::Client };
                let mut v = VhostPort::register(self.eal, name, &path.to_string_lossy(), role, queues, self.datapath)
                    .map_err(|e| format!("port '{name}': {e}"))?;
                v.start(self.socket_mode).map_err(|e| format!("port '{name}': {e}"))?;
                if role == Role::Server && (self.socket_uid.is_some() || self.socket_gid.is_some()) {
                    std::os::unix::fs::chown(path, self.socket_uid, self.socket_gid)
                        .map_err(|e| format!("port '{name}': cannot chown {}: {e}", path.display()))?;
                }
                let tx = self.tx_sources(
                    queues,
                    |q| match v.slot().datapath {
                        Datapath::Lib => v.tx_source(q).take().map(TxQueue::Vhost),
                        Datapath::Own => v.tx_source(q).claim().map(|c| TxQueue::Own(OwnTxQueue::new(c))),
                    },
                    |q| TxSource::Vhost(v.tx_source(q)),
                );
                (PortRt::Vhost(v), tx)
            }
            PortSpec::Vdev(devargs) | PortSpec::Pci(devargs) => {
                let id = ethdev::probe(self.eal, devargs, matches!(def.spec, PortSpec::Pci(_))).map_err(|e| match &def.spec {
                    PortSpec::Vdev(d) => format!(
                        "port '{name}': DPDK could not create vdev '{d}' ({e}): check the driver name (net_ring, net_null, net_tap, net_af_packet, net_pcap, net_virtio_user) and its arguments"
                    ),
                    _ => format!("port '{name}': {e}: is the NIC bound to vfio-pci?"),
                })?;
                let (max_rx, max_tx) = ethdev::max_queues(id).map_err(|e| format!("port '{name}': {e}"))?;
                if queues > max_rx {
                    return Err(format!("port '{name}': {queues} rx queues asked, the driver offers {max_rx}: lower --queues {name}=N"));
                }
                let n_txq = (self.workers as u16).clamp(1, max_tx.max(1));
                let cfg = EthConfig {
                    n_rxq: queues,
                    n_txq,
                    rx_desc: ethdev::ring_for(devargs, self.ring_size),
                    tx_desc: ethdev::ring_for(devargs, self.ring_size),
                    rx_intr: self.rx_intr,
                    remove: matches!(def.spec, PortSpec::Vdev(_)),
                };
                let port = EthPort::configure(id, cfg, &self.pool).map_err(|e| format!("port '{name}': {e}"))?;
                port.start().map_err(|e| format!("port '{name}': {e}"))?;
                let tx = self.tx_sources(n_txq, |q| port.tx_queue(q).map(TxQueue::Eth), |q| TxSource::Eth(port.tx_source(q)));
                (PortRt::Eth(port), tx)
            }
        };
        Ok(PortEntry {
            def: def.clone(),
            rt,
            queues,
            tx,
            rxq: (0..queues).map(|_| Arc::new(CachePadded::new(RxqCounters::default()))).collect(),
            vlan,
            rule: Rule::None,
            base,
        })
    }

    /// Where the workers take their tx queues on a port with `n` of them: each its own,
    /// or, with more workers than queues, queues shared under a lock (taken once, here).
    fn tx_sources(&self, n: u16, take: impl Fn(u16) -> Option<TxQueue>, own: impl Fn(u16) -> TxSource) -> Vec<TxSource> {
        if self.workers <= n as usize {
            return (0..n).map(own).collect();
        }
        // A fresh port: every queue is free.
        (0..n).filter_map(|q| Some(TxSource::Shared(Arc::new(SharedQueue::new(take(q)?))))).collect()
    }
}
