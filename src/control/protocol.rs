//! The control protocol: one request line in, one reply out. Every command is one row of
//! [`COMMANDS`] — its words, its arguments, what it does, an example — and
//! [`Command::parse`] is the only parser of a request: the control server matches the
//! [`Command`] it returns, the main thread applies the changes, and the help text (`ctl
//! help`, `pmdswitch ctl --help`, the server's "unknown command" answer) is generated from
//! the same rows, so the list cannot drift from what works.
//!
//! `--json` may appear anywhere in a request; commands that show something answer in
//! JSON then, the others ignore it.

use crate::datapath::bridge::vlan::VlanMode;
use crate::datapath::worker::IdleMode;
use crate::parse::{self, PortDef, RouteTarget};
use std::net::IpAddr;

/// What `show` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Ports,
    Workers,
    Rxqs,
    Bridges,
    /// Ports, workers and rx queues at once.
    Stats,
}

/// A request answered on the control thread: it reads counters or flips a setting the
/// workers pick up at their reload point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Show(Show),
    ShowMacs { bridge: String },
    ClearStats,
    SetIdle(IdleMode),
    Help,
}

/// A change of ports or rules, applied by the main thread (which owns the port table)
/// and answered once the workers have taken it at their reload point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddPort {
        def: PortDef,
        queues: u16,
    },
    DelPort {
        name: String,
    },
    Xconnect {
        a: String,
        b: String,
    },
    DelXconnect {
        port: String,
    },
    /// The VLAN mode is boxed: it is a 512-byte VID set, and requests are moved around.
    BridgeAddPort {
        bridge: String,
        port: String,
        vlan: Box<VlanMode>,
    },
    BridgeDelPort {
        bridge: String,
        port: String,
    },
    BridgeFlush {
        bridge: String,
        port: Option<String>,
    },
    BridgeAddMac {
        bridge: String,
        mac: [u8; 6],
        vlan: u16,
        text: String,
        port: String,
    },
    BridgeDelMac {
        bridge: String,
        mac: [u8; 6],
        vlan: u16,
        text: String,
    },
    BridgeSet {
        bridge: String,
        aging_ms: Option<u64>,
        capacity: Option<usize>,
    },
    Rebalance,
    Router(RouterCmd),
    /// Read the config file again and apply the difference (as SIGHUP does).
    Reload,
    /// The running configuration in the config file's form.
    ShowConfig,
}

/// The router's commands (interfaces, routes, neighbours), applied by the main thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterCmd {
    IpAdd {
        port: String,
        vlan: u16,
        addr: IpAddr,
        len: u8,
    },
    IpDel {
        port: String,
        vlan: u16,
        addr: IpAddr,
        len: u8,
    },
    Mtu {
        port: String,
        vlan: u16,
        mtu: u16,
    },
    IpShow,
    RouteAdd {
        addr: IpAddr,
        len: u8,
        target: RouteTarget,
    },
    RouteDel {
        addr: IpAddr,
        len: u8,
    },
    RouteShow {
        prefix: Option<(IpAddr, u8)>,
    },
    /// A file of `PREFIX TARGET` lines (`#` comments), added (or with `del`, removed) in one
    /// request.
    RouteLoad {
        path: String,
        del: bool,
        /// The file's text, read by the control thread for the client (see
        /// `server::read_route_file`): the main thread does no file I/O.
        text: String,
    },
    NeighAdd {
        port: String,
        vlan: u16,
        addr: IpAddr,
        mac: [u8; 6],
    },
    NeighDel {
        port: String,
        vlan: u16,
        addr: IpAddr,
    },
    NeighShow,
    ShowRouter,
    /// VXLAN segments: each remote VTEP's member port, bridge and way there.
    ShowVxlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Query(Query),
    Change(Change),
}

/// A parsed request: the command and whether the answer should be JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub json: bool,
}

/// One command of the protocol.
pub struct Syntax {
    /// The fixed leading words, e.g. `bridge add-port`.
    pub words: &'static str,
    /// The arguments after them, e.g. `BRIDGE PORT [vlan=MODE]`.
    pub args: &'static str,
    pub help: &'static str,
    /// A request that works: the tests run every example in table order against a live
    /// switch with ports `a` and `b` in bridge `br0` and a port `d` in no rule, so each
    /// may rely on the ones before it.
    pub example: &'static str,
    parse: fn(&[&str]) -> Result<Command, String>,
}

impl Syntax {
    /// `words args`, as the help shows it.
    pub fn usage(&self) -> String {
        if self.args.is_empty() {
            self.words.to_string()
        } else {
            format!("{} {}", self.words, self.args)
        }
    }
}

fn q(c: Query) -> Result<Command, String> {
    Ok(Command::Query(c))
}

fn c(c: Change) -> Result<Command, String> {
    Ok(Command::Change(c))
}

fn r(c: RouterCmd) -> Result<Command, String> {
    Ok(Command::Change(Change::Router(c)))
}

/// Every command, in the order the help lists them.
pub const COMMANDS: &[Syntax] = &[
    Syntax {
        words: "show ports",
        args: "[--json]",
        help: "per port: kind, rule, packets, bytes, drops by cause",
        example: "show ports --json",
        parse: |a| none(a, "show ports").and(q(Query::Show(Show::Ports))),
    },
    Syntax {
        words: "show workers",
        args: "[--json]",
        help: "per worker: busy and idle cycles, packets, cycles per packet, sleeps",
        example: "show workers",
        parse: |a| none(a, "show workers").and(q(Query::Show(Show::Workers))),
    },
    Syntax {
        words: "show rxqs",
        args: "[--json]",
        help: "per rx queue: the core polling it, packets, busy cycles",
        example: "show rxqs",
        parse: |a| none(a, "show rxqs").and(q(Query::Show(Show::Rxqs))),
    },
    Syntax {
        words: "show stats",
        args: "[--json]",
        help: "ports, workers and rx queues together",
        example: "show stats --json",
        parse: |a| none(a, "show stats").and(q(Query::Show(Show::Stats))),
    },
    Syntax {
        words: "show bridges",
        args: "[--json]",
        help: "per bridge: members with their VLAN mode, MAC table counters",
        example: "show bridges",
        parse: |a| none(a, "show bridges").and(q(Query::Show(Show::Bridges))),
    },
    Syntax {
        words: "show macs",
        args: "BRIDGE [--json]",
        help: "a bridge's MAC table: VLAN, MAC, port, age",
        example: "show macs br0",
        parse: |a| match a {
            [br] => q(Query::ShowMacs { bridge: br.to_string() }),
            _ => Err(incomplete("show macs")),
        },
    },
    Syntax {
        words: "show config",
        args: "[--json]",
        help: "the running configuration in the config file's form (ports, bridges, interfaces, routes), ctl changes included",
        example: "show config",
        parse: |a| none(a, "show config").and(c(Change::ShowConfig)),
    },
    Syntax {
        words: "reload",
        args: "",
        help: "read the --config file again and apply what changed (as SIGHUP does); a bad file is refused and the running config kept",
        example: "reload",
        parse: |a| none(a, "reload").and(c(Change::Reload)),
    },
    Syntax {
        words: "clear stats",
        args: "",
        help: "later shows count from now (the live counters are not touched)",
        example: "clear stats",
        parse: |a| none(a, "clear stats").and(q(Query::ClearStats)),
    },
    Syntax {
        words: "set idle",
        args: "poll|adaptive",
        help: "busy-poll always, or sleep on guest kicks when idle",
        example: "set idle poll",
        parse: |a| match a {
            ["poll"] => q(Query::SetIdle(IdleMode::Poll)),
            ["adaptive"] => q(Query::SetIdle(IdleMode::Adaptive)),
            _ => Err(incomplete("set idle")),
        },
    },
    Syntax {
        words: "add-port",
        args: "NAME SPEC [queues=N]",
        help:
            "open a port (vhost-server:PATH, vhost-client:PATH or vdev:DRIVER,ARGS); it forwards nowhere until xconnect or bridge add-port",
        example: "add-port c vdev:net_ring0 queues=1",
        parse: |a| match a {
            [name, spec, opts @ ..] => {
                let def = parse::parse_port(&format!("{name}={spec}"))?;
                let mut queues = 1;
                for o in opts {
                    match o.split_once('=') {
                        Some(("queues", n)) => queues = parse::parse_queues(&format!("{name}={n}"))?.1,
                        _ => return Err(format!("option '{o}' is unknown: use queues=N")),
                    }
                }
                c(Change::AddPort { def, queues })
            }
            _ => Err(incomplete("add-port")),
        },
    },
    Syntax {
        words: "xconnect",
        args: "A,B",
        help: "forward A to B and B to A (both ports in no other rule)",
        example: "xconnect c,d",
        parse: |a| match a {
            [pair] => {
                let (a, b) = parse::parse_xconnect(pair)?;
                c(Change::Xconnect { a, b })
            }
            _ => Err(incomplete("xconnect")),
        },
    },
    Syntax {
        words: "del-xconnect",
        args: "PORT",
        help: "remove the cross-connect PORT is in",
        example: "del-xconnect c",
        parse: |a| match a {
            [p] => c(Change::DelXconnect { port: p.to_string() }),
            _ => Err(incomplete("del-xconnect")),
        },
    },
    Syntax {
        words: "bridge add-port",
        args: "BRIDGE PORT [vlan=MODE]",
        help: "PORT joins BRIDGE (created if new) with VLAN mode access:VID or trunk:VIDS[,native=VID]",
        example: "bridge add-port br1 c vlan=trunk:10,20",
        parse: |a| match a {
            [br, port, opts @ ..] => {
                parse::parse_name(br).map_err(|e| format!("bridge: {e}"))?;
                let mut vlan = VlanMode::default();
                for o in opts {
                    match o.split_once('=') {
                        Some(("vlan", m)) => vlan = VlanMode::parse(m)?,
                        _ => return Err(format!("option '{o}' is unknown: use vlan=access:VID or vlan=trunk:VIDS")),
                    }
                }
                c(Change::BridgeAddPort { bridge: br.to_string(), port: port.to_string(), vlan: Box::new(vlan) })
            }
            _ => Err(incomplete("bridge add-port")),
        },
    },
    Syntax {
        words: "bridge add-mac",
        args: "BRIDGE MAC[@VLAN] PORT",
        help: "a static MAC entry (never aged, never moved by learning)",
        example: "bridge add-mac br1 02:00:00:00:00:0c@10 c",
        parse: |a| match a {
            [br, mac, port] => {
                let (m, vlan) = parse::parse_mac_vlan(mac)?;
                c(Change::BridgeAddMac { bridge: br.to_string(), mac: m, vlan, text: mac.to_string(), port: port.to_string() })
            }
            _ => Err(incomplete("bridge add-mac")),
        },
    },
    Syntax {
        words: "bridge del-mac",
        args: "BRIDGE MAC[@VLAN]",
        help: "remove a MAC entry",
        example: "bridge del-mac br1 02:00:00:00:00:0c@10",
        parse: |a| match a {
            [br, mac] => {
                let (m, vlan) = parse::parse_mac_vlan(mac)?;
                c(Change::BridgeDelMac { bridge: br.to_string(), mac: m, vlan, text: mac.to_string() })
            }
            _ => Err(incomplete("bridge del-mac")),
        },
    },
    Syntax {
        words: "bridge flush",
        args: "BRIDGE [PORT]",
        help: "empty the MAC table, or remove one port's entries",
        example: "bridge flush br1 c",
        parse: |a| match a {
            [br] => c(Change::BridgeFlush { bridge: br.to_string(), port: None }),
            [br, port] => c(Change::BridgeFlush { bridge: br.to_string(), port: Some(port.to_string()) }),
            _ => Err(incomplete("bridge flush")),
        },
    },
    Syntax {
        words: "bridge set",
        args: "BRIDGE [aging=SECS] [capacity=N]",
        help: "MAC aging time (0 = never) and table capacity",
        example: "bridge set br1 aging=60 capacity=1024",
        parse: |a| match a {
            [br, opts @ ..] if !opts.is_empty() => {
                let (mut aging_ms, mut capacity) = (None, None);
                for o in opts {
                    match o.split_once('=') {
                        Some(("aging", v)) => {
                            aging_ms =
                                Some(v.parse::<u64>().map_err(|_| format!("aging '{v}' is not a number of seconds"))?.saturating_mul(1000))
                        }
                        Some(("capacity", v)) => capacity = Some(v.parse().map_err(|_| format!("capacity '{v}' is not a number"))?),
                        _ => return Err(format!("option '{o}' is unknown: use aging=SECS or capacity=N")),
                    }
                }
                c(Change::BridgeSet { bridge: br.to_string(), aging_ms, capacity })
            }
            _ => Err(incomplete("bridge set")),
        },
    },
    Syntax {
        words: "bridge del-port",
        args: "BRIDGE PORT",
        help: "PORT leaves BRIDGE (its MAC entries are flushed)",
        example: "bridge del-port br1 c",
        parse: |a| match a {
            [br, port] => c(Change::BridgeDelPort { bridge: br.to_string(), port: port.to_string() }),
            _ => Err(incomplete("bridge del-port")),
        },
    },
    Syntax {
        words: "ip add",
        args: "IFACE ADDR/LEN",
        help: "an IPv4 or IPv6 address on a port or a VLAN sub-interface (PORT.VLAN) of a port in no other rule: it routes from then on",
        example: "ip add d 198.18.9.1/24",
        parse: |a| match a {
            [i, cidr] => {
                let (port, vlan) = parse::parse_iface(i)?;
                let (addr, len) = parse::parse_cidr(cidr)?;
                r(RouterCmd::IpAdd { port, vlan, addr, len })
            }
            _ => Err(incomplete("ip add")),
        },
    },
    Syntax {
        words: "ip mtu",
        args: "IFACE BYTES",
        help: "the largest IP packet an interface sends (68 to 9000; larger ones are fragmented or refused with ICMP)",
        example: "ip mtu d 1500",
        parse: |a| match a {
            [i, m] => {
                let (port, vlan) = parse::parse_iface(i)?;
                let mtu =
                    m.parse::<u16>().ok().filter(|m| (68..=9000).contains(m)).ok_or_else(|| format!("MTU '{m}' is not 68 to 9000"))?;
                r(RouterCmd::Mtu { port, vlan, mtu })
            }
            _ => Err(incomplete("ip mtu")),
        },
    },
    Syntax {
        words: "ip show",
        args: "[--json]",
        help: "routed interfaces: MAC, MTU, addresses",
        example: "ip show --json",
        parse: |a| none(a, "ip show").and(r(RouterCmd::IpShow)),
    },
    Syntax {
        words: "route add",
        args: "PREFIX TARGET",
        help: "a static route; TARGET is via:ADDR[@IFACE][+ADDR...] (several: ECMP), dev:IFACE, blackhole or unreachable",
        example: "route add 198.19.0.0/16 via:198.18.9.2",
        parse: |a| match a {
            [p, t] => {
                let (addr, len, target) = parse::parse_route_arg(&format!("{p}={t}"))?;
                r(RouterCmd::RouteAdd { addr, len, target })
            }
            _ => Err(incomplete("route add")),
        },
    },
    Syntax {
        words: "route show",
        args: "[PREFIX] [--json]",
        help: "routes with their origin and next hops (the first 1000 as a table; all with --json)",
        example: "route show --json",
        parse: |a| match a {
            [] => r(RouterCmd::RouteShow { prefix: None }),
            [p] => r(RouterCmd::RouteShow { prefix: Some(parse::parse_prefix(p)?) }),
            _ => Err(incomplete("route show")),
        },
    },
    Syntax {
        words: "route load",
        args: "FILE [del]",
        help: "add (or with del remove) the routes of a file, one 'PREFIX TARGET' per line, in one request",
        example: "route load /tmp/routes.txt",
        parse: |a| match a {
            [f] => r(RouterCmd::RouteLoad { path: f.to_string(), del: false, text: String::new() }),
            [f, "del"] => r(RouterCmd::RouteLoad { path: f.to_string(), del: true, text: String::new() }),
            _ => Err(incomplete("route load")),
        },
    },
    Syntax {
        words: "route del",
        args: "PREFIX",
        help: "remove a static route",
        example: "route del 198.19.0.0/16",
        parse: |a| match a {
            [p] => {
                let (addr, len) = parse::parse_prefix(p)?;
                r(RouterCmd::RouteDel { addr, len })
            }
            _ => Err(incomplete("route del")),
        },
    },
    Syntax {
        words: "neigh add",
        args: "IFACE ADDR MAC",
        help: "a static neighbour (never aged)",
        example: "neigh add d 198.18.9.3 02:00:00:00:00:03",
        parse: |a| match a {
            [i, addr, mac] => {
                let (port, vlan) = parse::parse_iface(i)?;
                let addr: IpAddr = addr.parse().map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
                r(RouterCmd::NeighAdd { port, vlan, addr, mac: parse::parse_mac(mac)? })
            }
            _ => Err(incomplete("neigh add")),
        },
    },
    Syntax {
        words: "neigh show",
        args: "[--json]",
        help: "the neighbour table: interface, address, MAC, state, packets waiting",
        example: "neigh show --json",
        parse: |a| none(a, "neigh show").and(r(RouterCmd::NeighShow)),
    },
    Syntax {
        words: "neigh del",
        args: "IFACE ADDR",
        help: "remove a neighbour (not one a static route uses)",
        example: "neigh del d 198.18.9.3",
        parse: |a| match a {
            [i, addr] => {
                let (port, vlan) = parse::parse_iface(i)?;
                let addr: IpAddr = addr.parse().map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
                r(RouterCmd::NeighDel { port, vlan, addr })
            }
            _ => Err(incomplete("neigh del")),
        },
    },
    Syntax {
        words: "show vxlan",
        args: "[--json]",
        help: "VXLAN tunnels: per remote VTEP its member port, bridge, and the underlay port and next hop it goes by (or unresolved)",
        example: "show vxlan",
        parse: |a| none(a, "show vxlan").and(r(RouterCmd::ShowVxlan)),
    },
    Syntax {
        words: "show router",
        args: "[--json]",
        help: "router counters: routes, FIB memory, neighbours, slow path (punts, ARP/ND, ICMP, drops by cause)",
        example: "show router",
        parse: |a| none(a, "show router").and(r(RouterCmd::ShowRouter)),
    },
    Syntax {
        words: "ip del",
        args: "IFACE ADDR/LEN",
        help: "remove an address (the interface goes with its last one)",
        example: "ip del d 198.18.9.1/24",
        parse: |a| match a {
            [i, cidr] => {
                let (port, vlan) = parse::parse_iface(i)?;
                let (addr, len) = parse::parse_cidr(cidr)?;
                r(RouterCmd::IpDel { port, vlan, addr, len })
            }
            _ => Err(incomplete("ip del")),
        },
    },
    Syntax {
        words: "del-port",
        args: "NAME",
        help: "withdraw the rules that send to NAME, then stop and close it",
        example: "del-port d",
        parse: |a| match a {
            [name] => c(Change::DelPort { name: name.to_string() }),
            _ => Err(incomplete("del-port")),
        },
    },
    Syntax {
        words: "rebalance",
        args: "",
        help: "reassign rx queues to workers by the busy cycles each used since the last rebalance",
        example: "rebalance",
        parse: |a| none(a, "rebalance").and(c(Change::Rebalance)),
    },
    Syntax { words: "help", args: "", help: "this list", example: "help", parse: |a| none(a, "help").and(q(Query::Help)) },
];

/// Nothing may follow `words`.
fn none(args: &[&str], words: &str) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("'{words}' takes no arguments, got '{}': see help", args.join(" ")))
    }
}

/// The answer to a command that misses or mistypes its arguments: its own syntax.
fn incomplete(words: &str) -> String {
    let row = COMMANDS.iter().find(|s| s.words == words);
    format!("'{words}' needs its arguments: {}", row.map_or_else(|| words.to_string(), Syntax::usage))
}

/// The command list in one line, for error answers.
pub fn summary() -> String {
    COMMANDS.iter().map(Syntax::usage).collect::<Vec<_>>().join(", ")
}

/// The command list, one per line with what it does (`ctl help`, `ctl --help`).
pub fn help() -> String {
    let width = COMMANDS.iter().map(|s| s.usage().len()).max().unwrap_or(0);
    COMMANDS.iter().map(|s| format!("  {:<width$}  {}\n", s.usage(), s.help)).collect()
}

impl Request {
    /// Parses one request line.
    ///
    /// # Errors
    /// One line: an unknown command (with the list of commands), or a known one with
    /// wrong arguments (with its syntax, or what is wrong with an argument).
    pub fn parse(line: &str) -> Result<Request, String> {
        let all: Vec<&str> = line.split_whitespace().collect();
        let json = all.contains(&"--json");
        let words: Vec<&str> = all.into_iter().filter(|w| *w != "--json").collect();
        // The row whose words open the request (rows never share a prefix).
        let row = COMMANDS.iter().find(|s| {
            let n = s.words.split(' ').count();
            words.len() >= n && s.words.split(' ').eq(words[..n].iter().copied())
        });
        match row {
            Some(s) => Ok(Request { command: (s.parse)(&words[s.words.split(' ').count()..])?, json }),
            None => {
                let head = words.first().copied().unwrap_or("");
                // A known first word: the rows it opens.
                let opened: Vec<String> = COMMANDS.iter().filter(|s| s.words.split(' ').next() == Some(head)).map(Syntax::usage).collect();
                if opened.is_empty() {
                    Err(format!("unknown command '{}': use {}", words.join(" "), summary()))
                } else {
                    Err(format!("'{}' is not a complete command: use {}", words.join(" "), opened.join(", ")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row's example parses to a command of that row (and no other row claims
    /// it), its usage shows in the help, and the rows' leading words are distinct.
    #[test]
    fn the_table_parses_its_own_examples() {
        let help = help();
        for (i, s) in COMMANDS.iter().enumerate() {
            let r = Request::parse(s.example).unwrap_or_else(|e| panic!("{}: {e}", s.example));
            assert_eq!(r.json, s.example.contains("--json"), "{}", s.example);
            let again =
                (s.parse)(&s.example.split_whitespace().filter(|w| *w != "--json").skip(s.words.split(' ').count()).collect::<Vec<_>>());
            assert_eq!(again.as_ref(), Ok(&r.command), "{}", s.example);
            assert!(help.contains(&s.usage()), "{}", s.usage());
            for t in &COMMANDS[..i] {
                assert_ne!(t.words, s.words);
                let (a, b): (Vec<_>, Vec<_>) = (t.words.split(' ').collect(), s.words.split(' ').collect());
                let n = a.len().min(b.len());
                assert_ne!(a[..n], b[..n], "'{}' and '{}' share a prefix", t.words, s.words);
            }
        }
    }

    #[test]
    fn errors_are_one_line_and_name_the_fix() {
        for (req, needle) in [
            ("frobnicate", "unknown command 'frobnicate': use show ports"),
            ("", "unknown command"),
            ("show", "'show' is not a complete command: use show ports [--json], show workers"),
            ("bridge", "use bridge add-port BRIDGE PORT [vlan=MODE]"),
            ("show macs", "'show macs' needs its arguments: show macs BRIDGE [--json]"),
            ("show ports now", "takes no arguments"),
            ("set idle sometimes", "set idle poll|adaptive"),
            ("add-port x", "add-port NAME SPEC [queues=N]"),
            ("add-port x foo:/y", "unknown kind 'foo'"),
            ("add-port x vdev:net_null0 vlan=access:3", "option 'vlan=access:3' is unknown: use queues=N"),
            ("add-port x vdev:net_null0 queues=9", "1 to 8"),
            ("xconnect a,a", "twice"),
            ("bridge add-port br0 a vlan=trunk:9999", "9999"),
            ("bridge add-port b/r a", "invalid"),
            ("bridge add-mac br0 02:00 a", "bad MAC"),
            ("bridge set br0", "bridge set BRIDGE [aging=SECS] [capacity=N]"),
            ("bridge set br0 aging=x", "not a number of seconds"),
            ("bridge set br0 size=3", "unknown: use aging=SECS or capacity=N"),
        ] {
            let e = Request::parse(req).unwrap_err();
            assert!(e.contains(needle), "{req:?}: {e}");
            assert!(!e.contains('\n'), "{req:?}: {e}");
        }
    }

    #[test]
    fn json_anywhere_and_values_parsed_once() {
        let r = Request::parse("--json show macs br0").unwrap();
        assert_eq!(r, Request { command: Command::Query(Query::ShowMacs { bridge: "br0".into() }), json: true });
        let r = Request::parse("bridge set br0 capacity=10 aging=2").unwrap();
        assert_eq!(r.command, Command::Change(Change::BridgeSet { bridge: "br0".into(), aging_ms: Some(2000), capacity: Some(10) }));
        let r = Request::parse("bridge add-mac br0 02:00:00:00:00:01@7 a").unwrap();
        assert!(matches!(r.command, Command::Change(Change::BridgeAddMac { vlan: 7, mac: [2, 0, 0, 0, 0, 1], .. })));
    }
}
