//! What runs per packet, and the little it shares with the control plane: the
//! poll-mode worker (`worker`), the L2 bridge (`bridge`), the reload barrier between
//! control and workers (`reload`), the single-writer counters (`stats`), and the traffic
//! generator's loop and wire format (`gen`), VXLAN tunnels between bridges (`vxlan`).

pub mod bridge;
pub mod gen;
pub mod reload;
pub mod route;
pub mod stats;
pub mod vring;
pub mod vxlan;
pub mod wire;
pub mod worker;
