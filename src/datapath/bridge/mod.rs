//! The L2 learning bridge: what a worker needs to switch a frame between the ports of a
//! bridge, as plain Rust with no DPDK types, so that all of it is testable without a NIC.
//!
//! - [`table`]: the MAC table (802.1Q §8.8, the Filtering Database): (VLAN, MAC) → port,
//!   read lock-free by every worker, written by one learner that drains the workers'
//!   learn queues and ages entries out.
//! - [`vlan`]: per-port VLAN policy (access or trunk), ingress classification, egress
//!   decision and the tag edit a frame needs between the two.
//!
//! - [`fwd`]: the per-burst hot path that ties them to mbufs (one file, two screens).

pub mod fwd;
pub mod table;
pub mod vlan;
