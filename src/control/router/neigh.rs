//! The neighbour table (ARP, RFC 826; IPv6 neighbour discovery, RFC 4861 §7.3): one
//! entry per (interface, address) with its next-hop id, the MAC once known, a state and
//! the packets waiting for it. The slow path runs the state machine; the fast path only
//! reads the next hop each entry owns (`Forward` with the MAC, or `Resolve`).
//!
//! ```text
//!   incomplete --reply--> reachable --30 s--> stale (unicast probes) --reply--> reachable
//!       | 3 requests, 1 s apart                   | 3 probes unanswered
//!       v                                         v
//!    failed (pending dropped, 20 s hold-down; then removed unless a route uses it)
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Timers and limits of the table.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub reachable: Duration,
    pub retrans: Duration,
    pub probes: u8,
    pub hold_down: Duration,
    /// Packets held per entry while it resolves.
    pub pending: usize,
    /// Entries in the table.
    pub max: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            reachable: Duration::from_secs(30),
            retrans: Duration::from_secs(1),
            probes: 3,
            hold_down: Duration::from_secs(20),
            pending: 16,
            max: 65536,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Incomplete,
    Reachable,
    Stale,
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Incomplete => "incomplete",
            State::Reachable => "reachable",
            State::Stale => "stale",
            State::Failed => "failed",
        }
    }
}

/// A packet waiting for a neighbour: an IP packet (from its IP header on), and whether
/// it is forwarded (TTL to decrement) or ours (an ICMP message the router made).
pub struct Waiting {
    pub ip: Vec<u8>,
    pub forwarded: bool,
}

pub struct Neigh {
    pub iface: u16,
    pub ip: IpAddr,
    pub nh: u32,
    pub mac: Option<[u8; 6]>,
    pub state: State,
    pub is_static: bool,
    /// Routes and ECMP groups that name this next hop (besides the host route).
    pub refs: u32,
    /// A host route (/32, /128) to this neighbour was installed for it (it was found
    /// through a connected subnet).
    pub host_route: bool,
    pub pending: VecDeque<Waiting>,
    pub tries: u8,
    /// When the state machine looks at the entry next.
    pub due: Instant,
    pub since: Instant,
}

/// What the state machine wants done for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Ask (broadcast ARP request, multicast NS).
    Ask,
    /// Re-validate (unicast to the known MAC).
    Probe([u8; 6]),
    /// Resolution failed: drop what waits, point the next hop back at the slow path.
    Fail,
    /// Remove the entry (unused, failed or aged).
    Remove,
}

#[derive(Default)]
pub struct Neighbours {
    pub map: HashMap<(u16, IpAddr), Neigh>,
    pub by_nh: HashMap<u32, (u16, IpAddr)>,
    pub timing: Timing,
}

impl Neighbours {
    pub fn new(timing: Timing) -> Neighbours {
        Neighbours { map: HashMap::new(), by_nh: HashMap::new(), timing }
    }

    pub fn get(&self, iface: u16, ip: IpAddr) -> Option<&Neigh> {
        self.map.get(&(iface, ip))
    }

    pub fn get_mut(&mut self, iface: u16, ip: IpAddr) -> Option<&mut Neigh> {
        self.map.get_mut(&(iface, ip))
    }

    pub fn by_nh_mut(&mut self, nh: u32) -> Option<&mut Neigh> {
        let k = *self.by_nh.get(&nh)?;
        self.map.get_mut(&k)
    }

    pub fn is_full(&self) -> bool {
        self.map.len() >= self.timing.max
    }

    /// A new incomplete entry with next hop `nh` (the caller checked it is not there
    /// and the table has room), due to ask at once.
    pub fn insert(&mut self, iface: u16, ip: IpAddr, nh: u32, now: Instant) -> &mut Neigh {
        self.by_nh.insert(nh, (iface, ip));
        self.map.entry((iface, ip)).or_insert(Neigh {
            iface,
            ip,
            nh,
            mac: None,
            state: State::Incomplete,
            is_static: false,
            refs: 0,
            host_route: false,
            pending: VecDeque::new(),
            tries: 0,
            due: now,
            since: now,
        })
    }

    pub fn remove(&mut self, iface: u16, ip: IpAddr) -> Option<Neigh> {
        let n = self.map.remove(&(iface, ip))?;
        self.by_nh.remove(&n.nh);
        Some(n)
    }

    /// An answer (ARP reply or request from it, NA, NS with its address) told us `mac`:
    /// returns true when the entry's MAC or reachability changed (the next hop must be
    /// rewritten and waiting packets released).
    pub fn learned(&mut self, iface: u16, ip: IpAddr, mac: [u8; 6], now: Instant) -> bool {
        let t = self.timing;
        let Some(n) = self.map.get_mut(&(iface, ip)) else { return false };
        if n.is_static {
            return false;
        }
        let changed = n.mac != Some(mac) || !matches!(n.state, State::Reachable | State::Stale);
        n.mac = Some(mac);
        n.state = State::Reachable;
        n.tries = 0;
        n.due = now + t.reachable;
        n.since = now;
        changed
    }

    /// Entries whose timer expired, with what to do; the caller carries it out (sends,
    /// next-hop writes, route removals) and the states are advanced here.
    pub fn expire(&mut self, now: Instant) -> Vec<((u16, IpAddr), Action)> {
        let t = self.timing;
        let mut out = Vec::new();
        for (k, n) in self.map.iter_mut() {
            if n.is_static || n.due > now {
                continue;
            }
            let a = match n.state {
                State::Incomplete if n.tries < t.probes => {
                    n.tries += 1;
                    n.due = now + t.retrans;
                    Action::Ask
                }
                State::Incomplete | State::Stale if n.tries >= t.probes => {
                    n.state = State::Failed;
                    n.due = now + t.hold_down;
                    n.since = now;
                    Action::Fail
                }
                State::Reachable => {
                    n.state = State::Stale;
                    n.tries = 1;
                    n.due = now + t.retrans;
                    n.since = now;
                    Action::Probe(n.mac.unwrap_or([0xff; 6]))
                }
                State::Stale => {
                    n.tries += 1;
                    n.due = now + t.retrans;
                    Action::Probe(n.mac.unwrap_or([0xff; 6]))
                }
                State::Failed if n.refs == 0 => Action::Remove,
                // Still named by a route: ask again after the hold-down.
                State::Failed | State::Incomplete => {
                    n.state = State::Incomplete;
                    n.tries = 1;
                    n.due = now + t.retrans;
                    Action::Ask
                }
            };
            out.push((*k, a));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_ages_and_fails_as_drawn() {
        let t0 = Instant::now();
        let timing = Timing {
            reachable: Duration::from_secs(30),
            retrans: Duration::from_secs(1),
            probes: 3,
            hold_down: Duration::from_secs(20),
            ..Default::default()
        };
        let mut nb = Neighbours::new(timing);
        let ip: IpAddr = "198.18.1.1".parse().unwrap();
        nb.insert(0, ip, 7, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Three requests a second apart, then failure.
        assert_eq!(nb.expire(at(0)), vec![((0, ip), Action::Ask)]);
        assert!(nb.expire(at(0)).is_empty(), "not due again yet");
        assert_eq!(nb.expire(at(1)), vec![((0, ip), Action::Ask)]);
        assert_eq!(nb.expire(at(2)), vec![((0, ip), Action::Ask)]);
        assert_eq!(nb.expire(at(3)), vec![((0, ip), Action::Fail)]);
        assert_eq!(nb.get(0, ip).unwrap().state, State::Failed);
        // Unused after the hold-down: removed.
        assert!(nb.expire(at(10)).is_empty());
        assert_eq!(nb.expire(at(23)), vec![((0, ip), Action::Remove)]);
        // A used entry that answers: reachable, then stale with unicast probes.
        nb.remove(0, ip);
        nb.insert(0, ip, 7, at(100)).refs = 1;
        assert!(nb.learned(0, ip, [2, 0, 0, 0, 0, 1], at(100)));
        assert!(!nb.learned(0, ip, [2, 0, 0, 0, 0, 1], at(101)), "nothing new");
        assert!(nb.expire(at(120)).is_empty());
        assert_eq!(nb.expire(at(131)), vec![((0, ip), Action::Probe([2, 0, 0, 0, 0, 1]))]);
        assert_eq!(nb.get(0, ip).unwrap().state, State::Stale);
        assert_eq!(nb.expire(at(132)), vec![((0, ip), Action::Probe([2, 0, 0, 0, 0, 1]))]);
        assert_eq!(nb.expire(at(133)), vec![((0, ip), Action::Probe([2, 0, 0, 0, 0, 1]))]);
        assert_eq!(nb.expire(at(134)), vec![((0, ip), Action::Fail)]);
        // Used by a route: after the hold-down it asks again instead of going away.
        assert_eq!(nb.expire(at(154)), vec![((0, ip), Action::Ask)]);
        assert_eq!(nb.get(0, ip).unwrap().state, State::Incomplete);
        assert!(nb.learned(0, ip, [2, 0, 0, 0, 0, 2], at(155)), "a new MAC");
        assert_eq!(nb.by_nh_mut(7).unwrap().mac, Some([2, 0, 0, 0, 0, 2]));
    }
}
