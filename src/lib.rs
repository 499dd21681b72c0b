//! pmdswitch: a DPDK poll-mode data plane in Rust — the library; `src/main.rs` is a
//! thin binary over it, and the commands (`src/cmd/`) are its leaves.
//!
//! The modules are layers; each uses only those below it:
//!
//! ```text
//!   switch                              the switch as one object: config, start, apply/reload, watchdog, shutdown
//!      │
//!   startup  control  observe  bed      start-up, the switch's control plane, what it shows, the test bed
//!      │        │        │      │
//!   datapath        gen                 workers, bridge, router, reload barrier, counters; the traffic
//!                                       generator (its loops, profiles, reports, RFC 2544 search)
//!      │
//!   dpdk  guest  sys                    the only unsafe code: DPDK (FFI), guest memory, the OS (huge pages, eventfd, TSC, TAP, netlink)
//!
//!   cli  parse                          command-line types and the shared syntax: depend on nothing
//! ```
//!
//! `unsafe` is denied everywhere but in `dpdk`, `guest` and `sys` (Cargo.toml `[lints]`), and
//! every unsafe block there states its invariant in a `// SAFETY:` line (clippy's
//! `undocumented_unsafe_blocks` is an error).

pub mod cli;
pub mod parse;

pub mod dpdk;
pub mod guest;
pub mod sys;

pub mod datapath;
pub mod gen;

pub mod bed;
pub mod control;
pub mod observe;
pub mod startup;

pub mod switch;
