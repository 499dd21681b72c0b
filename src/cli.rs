//! Every command-line type (clap). It imports nothing of the crate: the commands turn
//! these strings into checked values with `parse`. Errors at this edge are one line: the
//! problem and the fix.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "pmdswitch", version, about = "DPDK poll-mode switch: vhost-user and DPDK ports, pinned workers")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the data plane: `pmdswitch run --port a=... --port b=... --xconnect a,b -- [EAL args]`
    Run(Box<RunArgs>),
    /// Talk to a running pmdswitch: one command, e.g. `show ports --json` (the commands
    /// are listed below and by `pmdswitch ctl help`).
    Ctl {
        /// Control socket [default: the only one in /var/run/pmdswitch].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// The command, e.g. `show ports --json`.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Traffic generator: stamped Ethernet/IPv4/UDP streams with loss, reordering and
    /// latency accounting, or an RFC 2544 throughput search (--search).
    Gen(Box<GenArgs>),
    /// Stand up a device under test and the generator on this machine and run the
    /// benchmark matrix (table, JSON, SVG pictures).
    Bench(Box<BenchArgs>),
    /// Check a config file and report every error with its line and column.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Read ports, rules and options from a TOML file; options given on the command line
    /// win, ports and xconnects from both are combined (see `pmdswitch check-config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A port, NAME=SPEC; SPEC is vhost-server:PATH, vhost-client:PATH, pci:DDDD:BB:DD.F or
    /// vdev:DRIVER[,ARGS]. Repeat for more ports.
    #[arg(long = "port", value_name = "NAME=SPEC")]
    pub ports: Vec<String>,

    /// Forward A->B and B->A. Repeat for more pairs; a port belongs to at most one pair.
    #[arg(long = "xconnect", value_name = "A,B")]
    pub xconnects: Vec<String>,

    /// An L2 learning bridge over ports: NAME=PORT,PORT,... Repeat for more bridges; a
    /// port belongs to one bridge or one xconnect.
    #[arg(long = "bridge", value_name = "NAME=PORTS")]
    pub bridges: Vec<String>,

    /// VLAN mode of a bridge port: PORT=access:VID or PORT=trunk:VIDS[,native=VID]
    /// (e.g. trunk:10,20-30) [default: access:0, the untagged domain].
    #[arg(long = "vlan", value_name = "PORT=MODE")]
    pub vlans: Vec<String>,

    /// Seconds after which an idle station's MAC entry is removed [default: 300; 0 =
    /// never].
    #[arg(long, value_name = "SECS")]
    pub mac_aging: Option<u64>,

    /// MAC table entries per bridge; a full table floods new stations and counts them
    /// [default: 65536].
    #[arg(long, value_name = "N")]
    pub mac_capacity: Option<usize>,

    /// A static MAC entry (never aged or moved): PORT=MAC[@VLAN].
    #[arg(long = "static-mac", value_name = "PORT=MAC[@VLAN]")]
    pub static_macs: Vec<String>,

    /// Rx queues of a port: PORT=N (vhost: queue pairs polled, as negotiated with the
    /// frontend, e.g. virtio-user queues=N; ethdev: rx queues with RSS) [default: 1].
    #[arg(long = "queues", value_name = "PORT=N")]
    pub queues: Vec<String>,

    /// Poll rx queue QUEUE of PORT on the worker of CORE: PORT:QUEUE=CORE [default:
    /// round-robin over workers].
    #[arg(long = "rxq-affinity", value_name = "PORT:QUEUE=CORE")]
    pub rxq_affinity: Vec<String>,

    /// An address on a routed interface: IFACE=ADDR/LEN, IFACE a port or PORT.VLAN (an
    /// 802.1Q sub-interface), IPv4 or IPv6, e.g. a=198.18.1.254/24. A port with an
    /// address routes (it is in no xconnect or bridge). Repeat for more.
    #[arg(long = "ip", value_name = "IFACE=ADDR/LEN")]
    pub ips: Vec<String>,

    /// A static route: PREFIX=via:ADDR[@IFACE][+ADDR...] (several gateways: ECMP),
    /// PREFIX=dev:IFACE, PREFIX=blackhole or PREFIX=unreachable. Repeat for more.
    #[arg(long = "route", value_name = "PREFIX=TARGET")]
    pub routes: Vec<String>,

    /// MTU of a routed interface (the largest IP packet it sends): IFACE=BYTES [default:
    /// 1500].
    #[arg(long = "mtu", value_name = "IFACE=BYTES")]
    pub mtus: Vec<String>,

    /// A VXLAN segment (RFC 7348): VNI=BRIDGE,local=ADDR,remote=ADDR[+ADDR...][,port=N].
    /// The bridge gets a member per remote VTEP (ports vxVNI-1, vxVNI-2, ...), reached
    /// over the routed underlay; local is one of the router's IPv4 addresses.
    #[arg(long = "vxlan", value_name = "VNI=BRIDGE,...")]
    pub vxlans: Vec<String>,

    /// A Linux TAP twin of a routed interface (IFACE[=NAME], NAME defaults to IFACE): same
    /// MAC, MTU and addresses; packets for the router's addresses it does not answer
    /// itself (TCP, UDP, routing protocols) go up to it, and what the kernel sends on it
    /// goes out of the interface. Repeat for more.
    #[arg(long = "host-if", value_name = "IFACE[=NAME]")]
    pub host_ifs: Vec<String>,

    /// Mirror Linux routing table TABLE (main or an id) into the router, through twins
    /// of every routed interface (--host-if names them): ip route, FRR or BIRD then
    /// program the data plane. Static routes win over Linux ones for the same prefix.
    #[arg(long = "linux-routes", value_name = "TABLE")]
    pub linux_routes: Option<String>,

    /// Let a worker run on the EAL main core (machines with fewer CPUs than workers + 1:
    /// the main thread sleeps, waking every few ms for control work, which then takes
    /// that worker's time).
    #[arg(long)]
    pub share_main_core: bool,

    /// Worker cores, e.g. 1 or 1,3 or 2-5 (default: the first CPU that is not the main core).
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,

    /// Packets per rx/tx burst (1-256) [default: 32].
    #[arg(long)]
    pub burst: Option<usize>,

    /// Times a partly refused tx burst is retried before the rest is dropped as tx_full
    /// [default: 8].
    #[arg(long)]
    pub tx_retries: Option<u32>,

    /// Own vhost path: microseconds a frame may wait in its ingress ring while the egress
    /// guest has no receive buffers (back-pressure, counted as held) before it is dropped
    /// as tx_full; 0 drops at once [default: 200].
    #[arg(long, value_name = "US")]
    pub backpressure_us: Option<u64>,

    /// Who serves vhost-user rings: own (pmdswitch's virtqueue code: guest to guest in one
    /// copy, checksum and TSO offloads passed through) or lib (rte_vhost's enqueue and
    /// dequeue through mbufs). Both live-migrate [default: own].
    #[arg(long, value_name = "PATH")]
    pub vhost_datapath: Option<String>,

    /// Idle behaviour of workers: poll (busy-poll always) or adaptive (sleep on guest kicks
    /// after --idle-threshold-us of empty polls) [default: poll].
    #[arg(long, value_name = "MODE")]
    pub idle: Option<String>,

    /// Microseconds of empty polling before an adaptive worker sleeps [default: 200].
    #[arg(long, value_name = "US")]
    pub idle_threshold_us: Option<u64>,

    /// Print a stats table every SECS seconds [default: 0 = only at exit].
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<f64>,

    /// Write the final stats as JSON to FILE on exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,

    /// Run for SECS seconds, then shut down as on SIGTERM.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Mode of vhost-server socket files, octal [default: 660].
    #[arg(long, value_name = "MODE")]
    pub socket_mode: Option<String>,

    /// User owning vhost-server socket files (name or number).
    #[arg(long, value_name = "USER")]
    pub socket_owner: Option<String>,

    /// Group owning vhost-server socket files (name or number), e.g. QEMU's group.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Rx and tx descriptors per ethdev queue [default: a virtio-user port's queue_size,
    /// else 1024].
    #[arg(long, value_name = "N")]
    pub ring_size: Option<u16>,

    /// Mbufs in the packet pool (default: sized from ports, queues and workers).
    #[arg(long, value_name = "N")]
    pub mbufs: Option<u32>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (a bare
    /// port means 127.0.0.1:PORT).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub prometheus: Option<String>,

    /// Control socket for `pmdswitch ctl` (mode 0600) [default:
    /// /var/run/pmdswitch/FILE-PREFIX.ctl].
    #[arg(long, value_name = "PATH")]
    pub ctl: Option<PathBuf>,

    /// Show DPDK's own log lines (start-up is otherwise quiet, errors are one line).
    #[arg(short, long)]
    pub verbose: bool,

    /// EAL arguments after `--`, passed through verbatim. Defaults added unless given:
    /// --no-pci (or -a ADDR per pci port), --file-prefix=pmdswitch-PID, --in-memory,
    /// -l MAIN, --log-level=notice.
    #[arg(last = true, value_name = "EAL ARGS")]
    pub eal: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GenArgs {
    /// A port, NAME=SPEC with SPEC vdev:DRIVER[,ARGS] or pci:ADDR — typically
    /// vdev:net_virtio_user0,path=SOCK to stand where a VM stands. Repeat for more.
    #[arg(long = "port", value_name = "NAME=SPEC")]
    pub ports: Vec<String>,

    /// Ports that transmit, e.g. a or a,b [default: all]; every port receives.
    #[arg(long, value_name = "LIST")]
    pub tx: Option<String>,

    /// The core the generator's poll loop runs on [default: the first CPU that is not
    /// the main core].
    #[arg(long, value_name = "CPU")]
    pub core: Option<usize>,

    /// Several cores for the generator, e.g. 0,2 or 2-5: the ports are dealt to them in
    /// turn, each core sending its ports' streams and receiving on its ports (results
    /// merge per flow). Not with --search.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,

    /// Streams from a TOML profile (see docs/generator.md): ports, frame sizes, rates, start and
    /// length, header shape (VLAN/QinQ, IPv4/IPv6, UDP/TCP) and a field engine, or a pcap
    /// to replay. Replaces --frame, --flows, --macs, --rate, --tx and --dst-ips.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,

    /// Write what the ports receive to a pcapng file (from a thread of its own: the
    /// receive loop hands frames over through a bounded queue; what it cannot take is
    /// counted, never waited for).
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,

    /// Capture at most N frames [default: no limit].
    #[arg(long, value_name = "N")]
    pub capture_count: Option<u64>,

    /// Capture one frame in K [default: 1, every one].
    #[arg(long, value_name = "K")]
    pub capture_every: Option<u64>,

    /// Capture only what this port receives [default: every port].
    #[arg(long, value_name = "PORT")]
    pub capture_port: Option<String>,

    /// Frame size(s) with FCS as in RFC 2544: 64, a list 64,512,1518 (cycled), or imix
    /// (7:4:1 of 64/570/1518) [default: 64]. With --search, each listed size is searched.
    #[arg(long, value_name = "SIZES")]
    pub frame: Option<String>,

    /// Flows per port: source IPv4 address and UDP source port vary [default: 1].
    #[arg(long)]
    pub flows: Option<u32>,

    /// Source MAC addresses per port, cycled over the flows (a learning bridge's table
    /// load) [default: 1].
    #[arg(long)]
    pub macs: Option<u32>,

    /// Destination MAC for every frame [default: the next port's source MACs].
    #[arg(long, value_name = "MAC")]
    pub dst_mac: Option<String>,

    /// A port's own IPv4 address, PORT=ADDR: it answers ARP requests for it (a router
    /// that uses the generator as its next hop resolves it). Repeat per port.
    #[arg(long = "ip", value_name = "PORT=ADDR")]
    pub ips: Vec<String>,

    /// A port's gateway, PORT=ADDR: its MAC is resolved by ARP before sending and is the
    /// destination MAC of the port's frames (a router's interface). Needs --ip PORT=.
    #[arg(long = "gateway", value_name = "PORT=ADDR")]
    pub gateways: Vec<String>,

    /// Destination addresses a port sweeps, one per packet in turn: PORT=PREFIX,PREFIX...
    /// or PORT=@FILE (a prefix per line, e.g. a route file: its first word); each prefix
    /// gives one address inside it (its first host). Default: one fixed address.
    #[arg(long = "dst-ips", value_name = "PORT=PREFIXES")]
    pub dst_ips: Vec<String>,

    /// Rate per transmitting port: max, or e.g. 2Mpps, 500kpps, 800Mbit (L2), 1Gbit@l1
    /// (with preamble and gap) [default: max].
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,

    /// Measured seconds [default: 10 (search: the trial length)].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Stop after this many measured packets per port.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Seconds of traffic before measuring, excluded from results [default: 1].
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,

    /// Record the latency of one packet in N [default: 1 = every packet].
    #[arg(long, value_name = "N")]
    pub latency_every: Option<u32>,

    /// Packets per burst (1-256) [default: 32].
    #[arg(long)]
    pub burst: Option<usize>,

    /// Rx and tx descriptors per queue [default: a virtio-user port's queue_size, else
    /// 1024].
    #[arg(long, value_name = "N")]
    pub ring_size: Option<u16>,

    /// Write results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// RFC 2544 throughput search (binary search for the highest rate with loss within
    /// --ndr-loss, then --pdr-loss), then latency at the rate found.
    #[arg(long)]
    pub search: bool,

    /// Search: stop when the bracket is within this percentage of the rate [default: 1].
    #[arg(long, value_name = "PCT")]
    pub resolution_pct: Option<f64>,

    /// Search: loss allowed for NDR, percent [default: 0].
    #[arg(long, value_name = "PCT")]
    pub ndr_loss_pct: Option<f64>,

    /// Search: loss allowed for PDR, percent [default: 0.1].
    #[arg(long, value_name = "PCT")]
    pub pdr_loss_pct: Option<f64>,

    /// Search: most trials per frame size [default: 16].
    #[arg(long)]
    pub max_trials: Option<usize>,

    /// Search: repeat a search when the device's delivered rate at the top changed by more
    /// than this percentage between its first and a closing overload trial (the host's
    /// speed moved) [default: 5]; 100 never repeats.
    #[arg(long, value_name = "PCT")]
    pub max_drift_pct: Option<f64>,

    /// Search: repetitions allowed after unstable searches [default: 2].
    #[arg(long, value_name = "N")]
    pub search_retries: Option<usize>,

    /// No progress lines (results only).
    #[arg(short, long)]
    pub quiet: bool,

    /// Show DPDK's own log lines.
    #[arg(short, long)]
    pub verbose: bool,

    /// EAL arguments after `--` (defaults as for `run`, file prefix pmdswitch-gen-PID).
    #[arg(last = true, value_name = "EAL ARGS")]
    pub eal: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct BenchArgs {
    /// Device under test, one of the DUTs listed below [default: pmdswitch].
    #[arg(long, value_name = "DUT")]
    pub dut: Option<String>,

    /// Also run these DUTs, interleaved with the first, and print ratios to it, e.g.
    /// testpmd or testpmd,ovs.
    #[arg(long, value_name = "LIST")]
    pub compare: Option<String>,

    /// Frame sizes [default: 64,512,1518].
    #[arg(long, value_name = "LIST")]
    pub frames: Option<String>,

    /// Flow counts [default: 1,1024].
    #[arg(long, value_name = "LIST")]
    pub flows: Option<String>,

    /// What to measure per cell: max (full speed) and/or ndr (RFC 2544 search)
    /// [default: max,ndr].
    #[arg(long, value_name = "LIST")]
    pub modes: Option<String>,

    /// Seconds per max-rate measurement and per search trial [default: 3].
    #[arg(long, value_name = "SECS")]
    pub secs: Option<f64>,

    /// Warm-up seconds before each measurement [default: 1].
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,

    /// NDR search resolution, percent [default: 2].
    #[arg(long, value_name = "PCT")]
    pub resolution_pct: Option<f64>,

    /// Rounds (each DUT once per round) [default: 1, or 3 with --compare].
    #[arg(long)]
    pub rounds: Option<usize>,

    /// Output directory for results.json, throughput.svg, latency.svg and logs
    /// [default: bench-out/bench-UNIXTIME].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// About 30 s: max rate for every cell with 1 s measurements, NDR at 64 bytes only
    /// (0.5 s trials, 5 % resolution).
    #[arg(long)]
    pub quick: bool,

    /// CPU of the DUT's forwarding core [default: 1]; the generator uses the other.
    #[arg(long)]
    pub dut_core: Option<usize>,

    /// CPU of the generator [default: 0].
    #[arg(long)]
    pub gen_core: Option<usize>,

    /// Source MACs per generator port (a learning bridge's table load) [default: 1].
    #[arg(long)]
    pub macs: Option<u32>,

    /// Pace the "max" runs at this rate per port instead (e.g. 10kpps: latency of a
    /// lightly loaded switch, the wake-up cost of adaptive idle).
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,

    /// Route table sizes for router DUTs (pmdswitch-router, ovs-l3; l3fwd keeps its own
    /// table): random /8-/32 prefixes, half towards each generator port, which sweeps
    /// its destinations over all of them, e.g. 1,1000000 [default: 1].
    #[arg(long, value_name = "LIST")]
    pub routes: Option<String>,

    /// Run this `gen` profile (streams on ports a and b) against every DUT instead of
    /// the frames x flows matrix: one cell, the profile's own rates ("max" mode only).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}
