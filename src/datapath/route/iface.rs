//! Routed interfaces as the workers see them: a snapshot rebuilt by the control plane
//! when an interface comes or goes (addresses live in the FIB as local routes, not
//! here), handed to the workers with their plan. Ingress: (port, VLAN) → interface and
//! its MAC; egress: interface → port, VLAN, MAC, MTU.

/// Interfaces an index can name (12 bits in a next hop).
pub const MAX_IFACES: usize = 4096;

/// An interface's wire identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfWire {
    pub index: u16,
    pub port: u16,
    /// 802.1Q VLAN of a sub-interface; 0 for the port itself.
    pub vlan: u16,
    pub mac: [u8; 6],
    /// The largest IP packet it sends (Ethernet payload).
    pub mtu: u16,
}

/// The interfaces of one port: the untagged one and VLAN sub-interfaces.
#[derive(Debug, Clone, Default)]
pub struct PortIfs {
    pub untagged: Option<IfWire>,
    pub tagged: Vec<IfWire>,
}

/// Every interface, by index and by port.
#[derive(Debug, Clone, Default)]
pub struct Ifaces {
    by_index: Vec<Option<IfWire>>,
    by_port: Vec<PortIfs>,
}

impl Ifaces {
    pub fn new(list: &[IfWire]) -> Ifaces {
        let mut by_index = vec![None; list.iter().map(|i| usize::from(i.index) + 1).max().unwrap_or(0)];
        let mut by_port: Vec<PortIfs> = vec![PortIfs::default(); list.iter().map(|i| usize::from(i.port) + 1).max().unwrap_or(0)];
        for &i in list {
            by_index[usize::from(i.index)] = Some(i);
            let p = &mut by_port[usize::from(i.port)];
            if i.vlan == 0 {
                p.untagged = Some(i);
            } else {
                p.tagged.push(i);
            }
        }
        Ifaces { by_index, by_port }
    }

    /// The interface a frame received on `port` with VLAN `vlan` (0: untagged) belongs to.
    #[inline(always)]
    pub fn ingress(&self, port: usize, vlan: u16) -> Option<&IfWire> {
        let p = self.by_port.get(port)?;
        if vlan == 0 {
            p.untagged.as_ref()
        } else {
            p.tagged.iter().find(|i| i.vlan == vlan)
        }
    }

    /// Interface `i` for sending.
    #[inline(always)]
    pub fn egress(&self, i: u16) -> Option<&IfWire> {
        self.by_index.get(usize::from(i))?.as_ref()
    }

    /// Whether `port` has any interface.
    pub fn routes_port(&self, port: usize) -> bool {
        self.by_port.get(port).is_some_and(|p| p.untagged.is_some() || !p.tagged.is_empty())
    }

    pub fn all(&self) -> impl Iterator<Item = &IfWire> {
        self.by_index.iter().flatten()
    }
}
