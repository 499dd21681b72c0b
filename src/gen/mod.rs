//! Traffic generator: the pure-Rust parts, unit-tested without DPDK.
//!
//! `packet` builds and stamps the frames and reads them back, `track` accounts for
//! sequence numbers per flow at the receiver, `search` runs the RFC 2544 §26.1 throughput
//! search (NDR) and its partial-drop variant (PDR) over trials someone else runs. The
//! DPDK-facing sender and receiver live in further files of this directory.

pub mod packet;
pub mod search;
pub mod track;

pub mod cmd;
pub mod engine;
