//! What runs per packet, and the little it shares with the control plane: the
//! poll-mode worker (`worker`), the L2 bridge (`bridge`), the reload barrier between
//! control and workers (`reload`), the single-writer counters (`stats`), VXLAN tunnels
//! between bridges (`vxlan`). The traffic generator is a layer of its own (`crate::gen`).

pub mod bridge;
pub mod reload;
pub mod route;
pub mod stats;
pub mod vring;
pub mod vxlan;
pub mod wire;
pub mod worker;
