//! The traffic generator's data path. `packet` builds and stamps the frames and reads them back, `track` accounts for
//! sequence numbers per flow at the receiver, `search` runs the RFC 2544 §26.1 throughput
//! search (NDR) and its partial-drop variant (PDR) over trials someone else runs. `engine` is
//! the DPDK-facing sender and receiver: one pinned poll loop.

pub mod arp;
pub mod packet;
pub mod search;
pub mod track;

pub mod engine;
pub mod report;
