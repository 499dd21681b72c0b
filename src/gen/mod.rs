//! The traffic generator, a layer of its own beside the switch's `datapath` (it shares
//! `datapath::wire` and `dpdk`). `frame` builds every shape of frame (tags, IPv4/IPv6,
//! UDP/TCP) and finds the signature `packet` defines; `field` is the field engine;
//! `profile` reads stream profiles and `stream` turns them (or the flags) into what the
//! engine sends; `pcap` replays and captures; `arp` answers and resolves; `track` accounts for
//! sequence numbers per flow at the receiver, `search` runs the RFC 2544 §26.1 throughput
//! search (NDR) and its partial-drop variant (PDR) over trials someone else runs. `engine` is
//! the DPDK-facing sender and receiver: one pinned poll loop.

pub mod arp;
pub mod field;
pub mod frame;
pub mod packet;
pub mod pcap;
pub mod profile;
pub mod search;
pub mod track;

pub mod engine;
pub mod report;
pub mod stream;
