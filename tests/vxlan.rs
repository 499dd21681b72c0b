//! VXLAN between two pmdswitch instances (two "hosts"), joined by a memif underlay:
//! each has a bridge with a VM port (the generator stands there) and a VXLAN segment to
//! the other's VTEP over its routed underlay port. Frames cross intact, counted at every
//! step; MACs are learned behind the remote VTEP; bad input is one line.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use pmdswitch::gen::pcap;

struct Host {
    sw: Switch,
    vm: String,
}

/// Host `n` (1 or 2) of a pair: VM port `g` in bridge br0 with VNI 5001 towards the
/// other host, underlay `u` on memif (host 1 serves the memif socket).
fn host(s: &Scratch, n: u8, memif: &str, extra: &[&str]) -> Host {
    let vm = s.sock("g.sock");
    let role = if n == 1 { "server" } else { "client" };
    let (me, other) = (format!("198.18.0.{n}"), format!("198.18.0.{}", 3 - n));
    let mut args: Vec<String> = vec![
        "--port".into(),
        format!("g=vhost-server:{vm}"),
        "--port".into(),
        // A ring of 16 Ki slots (rsize=14): two switches and the generator share two
        // cores here, and a switch waits its turn for milliseconds.
        format!("u=vdev:net_memif{n},role={role},socket={memif},id=0,rsize=14"),
        "--bridge".into(),
        "br0=g".into(),
        "--ip".into(),
        format!("u={me}/24"),
        // Room for a 1514-byte frame and the 50 bytes around it.
        "--mtu".into(),
        "u=1600".into(),
        "--vxlan".into(),
        format!("5001=br0,local={me},remote={other}"),
        "--cores".into(),
        "1".into(),
        "--ctl".into(),
        s.path("ctl").display().to_string(),
    ];
    args.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Host { sw: Pmds::start(s, &a), vm }
}

fn pair(tag: &str) -> (Scratch, Scratch, Host, Host) {
    let (s1, s2) = (Scratch::new(&format!("{tag}1")), Scratch::new(&format!("{tag}2")));
    let memif = s1.path("memif.sock").display().to_string();
    let h1 = host(&s1, 1, &memif, &[]);
    let h2 = host(&s2, 2, &memif, &[]);
    (s1, s2, h1, h2)
}

fn n(j: &serde_json::Value, p: &str, k: &str) -> u64 {
    port(j, p, k)
}

/// The generator's two ports are the two hosts' VMs (VNI 5001 between them): each stream
/// crosses a bridge, the tunnel, the memif underlay, the other bridge. Nothing is lost once
/// the VTEPs resolved each other (the warm-up), and the counts agree along the way: VM rx =
/// tunnel tx + `vxlan_unresolved` at the start, what one host wrapped the other unwrapped,
/// the underlay carried the wrapped frames and a few ARP messages, no bad or unknown tunnel
/// frames.
#[test]
fn frames_cross_the_tunnel_counted_at_every_step() {
    require_bed();
    let (s1, _s2, h1, h2) = pair("vx");
    let (g, out) = gen_run(
        &s1,
        &[("a", &h1.vm), ("b", &h2.vm)],
        &["--rate", "20kpps", "--duration", "2", "--warmup", "1.5", "--flows", "16", "--frame", "64,1000,1518"],
    );
    for st in ["a", "b"] {
        let x = &g["streams"][st];
        assert!(x["tx"].as_u64().unwrap() > 39_000, "{st}: {out}");
        assert_eq!(x["rx"], x["tx"], "{st}: {out}");
        assert_eq!(x["lost"].as_u64(), Some(0), "{st}: {out}");
    }
    // `ctl show vxlan`: the tunnel, its bridge and the way to the other VTEP.
    let (rc, sv, e) = ctl(&s1.path("ctl"), &["show", "vxlan", "--json"]);
    assert_eq!(rc, 0, "{e}");
    let sv: serde_json::Value = serde_json::from_str(&sv).unwrap();
    let t = &sv["tunnels"][0];
    assert_eq!((t["member"].as_str(), t["vni"].as_u64(), t["bridge"].as_str()), (Some("vx5001-1"), Some(5001), Some("br0")), "{sv}");
    assert_eq!((t["remote"].as_str(), t["path"]["underlay"].as_str()), (Some("198.18.0.2"), Some("u")), "{sv}");
    let (st1, _, j1, t1) = h1.sw.stop();
    let (st2, _, j2, t2) = h2.sw.stop();
    assert!(st1.success() && st2.success(), "{t1}\n{t2}");
    assert_no_leak(&j1);
    assert_no_leak(&j2);
    // Host 1: what its VM sent went into the tunnel (less what waited for the remote
    // VTEP's MAC at the start, counted), and what came out of it reached the VM.
    let (g_tx_a, g_rx_a) = (g["ports"]["a"]["tx_packets"].as_u64().unwrap(), g["ports"]["a"]["rx_packets"].as_u64().unwrap());
    assert_eq!(n(&j1, "g", "rx_packets"), g_tx_a);
    let unresolved = j1["ports"]["vx5001-1"]["drops"]["vxlan_unresolved"].as_u64().unwrap();
    assert_eq!(n(&j1, "vx5001-1", "tx_packets") + unresolved, g_tx_a, "{j1}");
    assert_eq!(n(&j1, "vx5001-1", "rx_packets"), g_rx_a, "{j1}");
    assert_eq!(n(&j1, "g", "tx_packets"), g_rx_a);
    // The underlay carried the wrapped frames (and a few ARP messages).
    let u_tx = n(&j1, "u", "tx_packets");
    assert!(u_tx >= n(&j1, "vx5001-1", "tx_packets") && u_tx <= n(&j1, "vx5001-1", "tx_packets") + 10, "{j1}");
    assert_eq!(n(&j2, "vx5001-1", "rx_packets"), n(&j1, "vx5001-1", "tx_packets"), "host 2 unwrapped all host 1 wrapped");
    for j in [&j1, &j2] {
        for c in ["vxlan_bad", "vxlan_unknown", "vxlan_too_big"] {
            assert_eq!(
                j["ports"]["u"]["drops"][c].as_u64().unwrap_or(0) + j["ports"]["vx5001-1"]["drops"][c].as_u64().unwrap_or(0),
                0,
                "{c}: {j}"
            );
        }
    }
}

/// A capture replayed into host 1's VM port arrives at host 2's byte for byte (ARP,
/// QinQ, IPv6, odd sizes up to 1514 bytes): the tunnel changes nothing inside. (Its
/// 802.1Q-tagged frames stop at host 1's bridge: the VM port is an access port of the
/// untagged segment, counted `tagged_on_access`.)
#[test]
fn replayed_frames_arrive_byte_identical() {
    require_bed();
    let (s1, _s2, h1, h2) = pair("vxr");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles/replay.pcap");
    let all = pcap::load(&fixture).unwrap().frames();
    let tagged = |f: &Vec<u8>| f[12..14] == [0x81, 0x00];
    let want: Vec<Vec<u8>> = all.iter().filter(|f| !tagged(f)).cloned().collect();
    // A warm-up stream lets the VTEPs resolve each other first.
    let prof = s1.path("r.toml");
    std::fs::write(
        &prof,
        format!("[[stream]]\nname = \"r\"\nports = [\"a\"]\npcap = \"{}\"\nrate = \"2kpps\"\nstart = 1.0\nloops = 2\n", fixture.display()),
    )
    .unwrap();
    let cap = s1.path("b.pcapng").display().to_string();
    let (_, out) = gen_run(
        &s1,
        &[("a", &h1.vm), ("b", &h2.vm)],
        &["--profile", prof.to_str().unwrap(), "--warmup", "1", "--duration", "3", "--capture", &cap, "--capture-port", "b"],
    );
    let got = pcap::load(Path::new(&cap)).unwrap().frames();
    assert_eq!(got.len(), 2 * want.len(), "{out}");
    for (i, (a, b)) in got.iter().zip(want.iter().cycle()).enumerate() {
        assert_eq!(a, b, "frame {i}");
    }
    let (st1, _, j1, _) = h1.sw.stop();
    let (st2, _, _, _) = h2.sw.stop();
    assert!(st1.success() && st2.success());
    // Host 1 learned nothing behind the tunnel (host 2's VM sent nothing), and counted
    // every frame it wrapped.
    assert_eq!(n(&j1, "vx5001-1", "tx_packets"), 2 * want.len() as u64, "{j1}");
    assert_eq!(j1["ports"]["g"]["drops"]["tagged_on_access"].as_u64(), Some(2 * all.iter().filter(|f| tagged(f)).count() as u64), "{j1}");
}

/// Mistakes in --vxlan are one line each, before anything starts.
#[test]
fn vxlan_bad_input_is_one_line() {
    let s = Scratch::new("vxbad");
    let vm = s.sock("g.sock");
    let g = format!("g=vhost-server:{vm}");
    let base = ["run", "--port", &g, "--port", "u=vdev:net_null0", "--bridge", "br0=g", "--ip", "u=198.18.0.1/24"];
    for (more, want) in [
        (vec!["--vxlan", "5001=br1,local=198.18.0.1,remote=198.18.0.2"], "no bridge 'br1'"),
        (vec!["--vxlan", "5001=br0,local=198.18.0.9,remote=198.18.0.2"], "local 198.18.0.9 is none of the router's addresses"),
        (vec!["--vxlan", "5001=br0,remote=198.18.0.2"], "no local=ADDR"),
        (
            vec!["--vxlan", "5001=br0,local=198.18.0.1,remote=198.18.0.2", "--vxlan", "5001=br0,local=198.18.0.1,remote=198.18.0.3"],
            "VNI 5001 is given twice",
        ),
        (vec![], "bridge 'br0' needs at least two ports"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(more);
        let prefix = s.prefix("vxbad");
        let pf = format!("--file-prefix={prefix}");
        args.extend(["--", &pf]);
        let (rc, _, err) = run_once(&args);
        assert_eq!(rc, 2, "{args:?}: {err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{args:?}: {err}");
        assert_no_leftovers(&prefix);
    }
}

/// Two QEMU guests (kernel virtio-net, offloads on) in one subnet, each behind its own
/// host's bridge: ping and an 8 MiB TCP transfer across the tunnel, every byte checked.
/// The guests' TSO frames are cut and checksummed before they are wrapped (the tunnel
/// is an mbuf path), so none is too big for the underlay; every byte the VM port received
/// went into the tunnel, TSO frames as their segments.
#[test]
fn guests_on_two_hosts_ping_and_move_tcp_over_the_tunnel() {
    require_bed();
    pmdswitch::bed::vm::build_once();
    use pmdswitch::bed::vm::{tcp_receiver_cmd, tcp_sender_cmd, Guest, GuestOpts, Transfer};
    let (s1, _s2, h1, h2) = pair("vxvm");
    const MB: u32 = 8;
    let rcmd = tcp_receiver_cmd();
    let o = |cmd| GuestOpts { server: false, cmd: Some(cmd), timeout: 240, no_offloads: false, gw: None, ..Default::default() };
    let mut b = Guest::boot(&s1, "b", &h2.vm, "198.18.5.2/24", &o(&rcmd));
    let scmd = format!("ping -c 3 -W 3 198.18.5.2 && {}", tcp_sender_cmd("198.18.5.2", MB));
    let mut a = Guest::boot(&s1, "a", &h1.vm, "198.18.5.1/24", &o(&scmd));
    let rc_a = a.result(Duration::from_secs(240));
    let rc_b = b.result(Duration::from_secs(60));
    let (st1, _, j1, t1) = h1.sw.stop();
    let (st2, _, j2, t2) = h2.sw.stop();
    let console = a.console();
    assert_eq!(rc_a, Some(0), "guest a: ping or send failed:\n{console}\n{t1}\n{t2}");
    assert!(console.contains("3 packets received"), "{console}");
    assert_eq!(rc_b, Some(0), "receiver failed:\n{}", b.console());
    let t = Transfer::of(&b).expect("the receiver's report");
    assert!(t.intact(MB), "{t:?}");
    assert!(st1.success() && st2.success(), "{t1}\n{t2}");
    for j in [&j1, &j2] {
        let d = &j["ports"]["vx5001-1"]["drops"];
        assert_eq!(d["vxlan_too_big"].as_u64().unwrap_or(0), 0, "{d}");
        assert_no_leak(j);
        // Every byte a guest sent went into the tunnel (its TSO frames as segments,
        // each with its own headers, so at least as many bytes): nothing vanished
        // between the VM port and the tunnel member without a counter.
        let (rx, tx) = (port(j, "g", "rx_bytes"), port(j, "vx5001-1", "tx_bytes"));
        let dropped = drops(j, "g") + drops(j, "vx5001-1");
        assert!(tx >= rx || dropped > 0, "VM port rx {rx} bytes, tunnel tx {tx} bytes, no drop counted: {}", j["ports"]);
    }
    eprintln!("guest TCP over VXLAN: {MB} MiB in {:.2} s, {:.0} Mbit/s", t.secs, t.mbps);
}
