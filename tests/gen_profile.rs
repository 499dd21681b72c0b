//! `pmdswitch gen --profile`: streams of every shape through the switch, each counted on
//! its own; replayed captures that arrive byte for byte; captures of what came back; the
//! field engine's sequences as the far side sees them; several generator cores.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use pmdswitch::datapath::wire::l3;
use pmdswitch::gen::frame::{self, Layout, Shape, L4};
use pmdswitch::gen::pcap;

fn xconnect(s: &Scratch, sa: &str, sb: &str) -> Switch {
    xconnect_ab(s, sa, sb, &[])
}

fn write(s: &Scratch, name: &str, text: &str) -> String {
    let p = s.path(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn stream<'a>(g: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let v = &g["streams"][name];
    assert!(v.is_object(), "no stream {name}: {g}");
    v
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// The frames of a capture (pcapng, as --capture writes it).
fn frames(path: &str) -> Vec<Vec<u8>> {
    pcap::load(Path::new(path)).unwrap_or_else(|e| panic!("{e}")).frames()
}

/// Four streams on two ports: IPv4/UDP with a per-packet field, IPv6/TCP in VLAN 100 with a
/// weighted size mix, QinQ TCP SYNs with four varying fields that start late and stop early,
/// and an unmeasured stream. Each stream's count matches its rate and window within 2 %,
/// nothing is lost, the switch's counters equal the generator's, and the frames captured on
/// the far side parse, carry valid checksums and the field engine's sequence in order.
#[test]
fn profile_streams_keep_their_counts_rates_and_shapes() {
    require_bed();
    let s = Scratch::new("gprof");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = xconnect(&s, &sa, &sb);
    let prof = write(
        &s,
        "p.toml",
        r#"
[[stream]]
name = "v4udp"
ports = ["a"]
frames = [64, 256]
rate = "100kpps"
flows = 8
[[stream.field]]
field = "src_port"
range = [1000, 1999]

[[stream]]
name = "v6tcp"
ports = ["a"]
frames = { 128 = 7, 570 = 4, 1518 = 1 }
rate = "50kpps"
l4 = "tcp-data"
src_ip = "2001:db8:1::1"
dst_ip = "2001:db8:2::1"
vlan = [100]
flows = 4

[[stream]]
name = "qinq"
ports = ["b"]
frames = [128]
rate = "40kpps"
start = 0.5
duration = 1.0
l4 = "tcp-syn"
vlan = [10, 20]
l4_checksum = true
[[stream.field]]
field = "src_ip"
range = ["198.18.0.1", "198.18.0.200"]
mode = "random"
[[stream.field]]
field = "dst_ip"
list = ["198.19.0.1", "198.19.0.2", "198.19.0.3"]
[[stream.field]]
field = "ttl"
range = [10, 20]
[[stream.field]]
field = "dst_port"
range = [80, 90]
mode = "dec"

[[stream]]
name = "noise"
ports = ["b"]
rate = "20kpps"
measured = false
"#,
    );
    let cap = s.path("b.pcapng").display().to_string();
    let (g, out) = gen_run(
        &s,
        &[("a", &sa), ("b", &sb)],
        &["--profile", &prof, "--duration", "2", "--warmup", "0.5", "--capture", &cap, "--capture-port", "b"],
    );
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
    // Rates: 2 s at 100 and 50 kpps, 1 s at 40 kpps (its window), within 2 %.
    for (name, want) in [("v4udp", 200_000.0), ("v6tcp", 100_000.0), ("qinq", 40_000.0)] {
        let st = stream(&g, name);
        let (tx, rx) = (u(st, "tx"), u(st, "rx"));
        assert!((tx as f64 - want).abs() < want * 0.02, "{name}: tx {tx}, want {want}:\n{out}");
        assert_eq!(rx, tx, "{name}: every measured packet came back:\n{out}");
        assert_eq!(u(st, "lost") + u(st, "duplicates") + u(st, "wrong_port"), 0, "{name}: {st}");
        assert_eq!(u(&st["latency_ns"], "count"), rx, "{name}: one latency sample per packet");
    }
    assert!(g["streams"].get("noise").is_none(), "an unmeasured stream has no result: {g}");
    assert!(out.contains("noise") && out.contains("not measured"), "{out}");
    // Port totals (warm-up and the unmeasured stream included) equal the switch's.
    for p in ["a", "b"] {
        assert_eq!(g["ports"][p]["tx_packets"].as_u64(), Some(port(&j, p, "rx_packets")), "{p}");
        assert_eq!(g["ports"][p]["rx_packets"].as_u64(), Some(port(&j, p, "tx_packets")), "{p}");
        assert_eq!(drops(&j, p), 0);
    }
    let b_tx = u(&g["ports"]["b"], "tx_packets");
    assert!(b_tx >= 40_000 + 45_000, "b sent the SYNs and about 2.5 s of noise: {b_tx}");
    // What b received: a's two streams, shapes intact, the field engine's sequence in order.
    let got = frames(&cap);
    assert_eq!(got.len() as u64, u(&g["ports"]["b"], "rx_packets"), "every frame b received was captured");
    let (mut v4, mut v6) = (Vec::new(), 0);
    for f in &got {
        let sig = frame::find_sig(f).expect("our frame");
        let e = l3::parse_eth(f).unwrap();
        if e.vlan == 100 {
            let s6 = Shape {
                vlans: vec![100],
                l4: L4::TcpData,
                src_ip: "2001:db8:1::1".parse().unwrap(),
                dst_ip: "2001:db8:2::1".parse().unwrap(),
                ..Shape::default()
            };
            let lay = Layout::of(&s6);
            assert!(l3::parse_ipv6(&f[lay.l3..]).is_ok());
            assert!(frame::l4_ok(f, &lay), "IPv6/TCP checksum");
            assert!([128, 570, 1518].contains(&(f.len() + 4)), "the weighted sizes: {}", f.len());
            v6 += 1;
        } else {
            assert_eq!(e.vlan, 0);
            let lay = Layout::of(&Shape::default());
            assert!(l3::parse_ipv4(&f[lay.l3..]).is_ok());
            v4.push((sig.flow, u16::from_be_bytes([f[lay.l4], f[lay.l4 + 1]])));
        }
    }
    assert!(v6 > 50_000 && v4.len() > 100_000, "v6 {v6} v4 {}", v4.len());
    // src_port steps by one per packet through 1000..1999, and flows take turns.
    for w in v4.windows(2) {
        assert_eq!(w[1].1, if w[0].1 == 1999 { 1000 } else { w[0].1 + 1 }, "src_port sequence");
        assert_eq!(w[1].0 % 8, (w[0].0 + 1) % 8, "flows in turn");
    }
}

/// A capture replayed at its own timing, three times, arrives on the far side byte for
/// byte (ARP, tagged, IPv6 and odd sizes included); with the field engine rewriting
/// destination addresses, the IPv4 frames carry them with a valid checksum and the rest
/// is untouched; stamped (measured), every frame with room for the signature is accounted
/// and its mended L4 checksum holds.
#[test]
fn replayed_capture_arrives_byte_identical() {
    require_bed();
    let s = Scratch::new("greplay");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = xconnect(&s, &sa, &sb);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles/replay.pcap");
    let want = frames(fixture.to_str().unwrap());
    let prof = write(&s, "r.toml", &format!("[[stream]]\nports = [\"a\"]\npcap = \"{}\"\ntiming = 1.0\nloops = 3\n", fixture.display()));
    let cap = s.path("b.pcapng").display().to_string();
    let (g, out) = gen_run(
        &s,
        &[("a", &sa), ("b", &sb)],
        &["--profile", &prof, "--duration", "5", "--warmup", "0", "--capture", &cap, "--capture-port", "b"],
    );
    let got = frames(&cap);
    assert_eq!(got.len(), want.len() * 3, "{out}");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f, &want[i % want.len()], "frame {i}");
    }
    assert_eq!(u(&g["ports"]["a"], "tx_packets"), 3 * want.len() as u64);
    // Rewritten: dst_ip over two addresses, per packet.
    let prof = write(
        &s,
        "rw.toml",
        &format!(
            "[[stream]]\nports = [\"a\"]\npcap = \"{}\"\nrate = \"10kpps\"\nloops = 2\n[[stream.field]]\nfield = \"dst_ip\"\nlist = [\"198.19.9.1\", \"198.19.9.2\"]\n",
            fixture.display()
        ),
    );
    let cap2 = s.path("b2.pcapng").display().to_string();
    let _ = gen_run(
        &s,
        &[("a", &sa), ("b", &sb)],
        &["--profile", &prof, "--duration", "5", "--warmup", "0", "--capture", &cap2, "--capture-port", "b"],
    );
    let got = frames(&cap2);
    assert_eq!(got.len(), want.len() * 2);
    let mut rewritten = 0;
    for (i, (f, w)) in got.iter().zip(want.iter().cycle()).enumerate() {
        let lay = pcap::layout_of(w);
        match lay.filter(|l| !l.v6) {
            Some(lay) => {
                let h = l3::parse_ipv4(&f[lay.l3..]).expect("IPv4 header checksum valid after the rewrite");
                assert!(h.dst.octets()[..3] == [198, 19, 9], "frame {i}: {:?}", h.dst);
                if lay.l4_checksum {
                    assert!(frame::l4_ok(f, &lay), "frame {i}: L4 checksum mended");
                }
                // Only the address and checksums changed.
                let same = f.iter().zip(w).enumerate().filter(|(k, (a, b))| a != b && !(lay.l3 + 10..lay.l3 + 20).contains(k)).count();
                assert!(same <= 2, "frame {i}: {same} other bytes changed");
                rewritten += 1;
            }
            None => assert_eq!(f, w, "frame {i}: not IPv4, untouched"),
        }
    }
    assert!(rewritten >= 8, "{rewritten}");
    // Stamped (measured = true): every frame with room for the signature is accounted,
    // and its L4 checksum, mended for the stamp, still adds up.
    let prof = write(
        &s,
        "m.toml",
        &format!(
            "[[stream]]\nname = \"m\"\nports = [\"a\"]\npcap = \"{}\"\nrate = \"20kpps\"\nloops = 4\nmeasured = true\n",
            fixture.display()
        ),
    );
    let cap3 = s.path("b3.pcapng").display().to_string();
    let (g, out) = gen_run(
        &s,
        &[("a", &sa), ("b", &sb)],
        &["--profile", &prof, "--duration", "5", "--warmup", "0", "--capture", &cap3, "--capture-port", "b"],
    );
    let st = stream(&g, "m");
    let stampable = want.iter().filter(|w| pcap::layout_of(w).is_some_and(|l| l.sig != usize::MAX)).count() as u64;
    assert_eq!((u(st, "tx"), u(st, "rx"), u(st, "lost")), (4 * stampable, 4 * stampable, 0), "{out}");
    let mut checked = 0;
    for f in frames(&cap3) {
        if let Some(lay) = pcap::layout_of(&f).filter(|l| l.l4_checksum && l.sig != usize::MAX) {
            assert!(frame::find_sig(&f).is_some());
            assert!(frame::l4_ok(&f, &lay), "L4 checksum after the stamp: {f:02x?}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked}");
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
}

/// IPv6/TCP and IPv4/TCP streams with VLAN tags through the bridge's trunks keep their
/// tags, and the VLAN field engine moves a stream between two VLANs packet by packet
/// (the tags alternate 100/200).
#[test]
fn tagged_streams_through_the_bridge_keep_their_tags() {
    require_bed();
    let s = Scratch::new("gbrvlan");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            &format!("b=vhost-server:{sb}"),
            "--bridge",
            "br0=a,b",
            "--vlan",
            "a=trunk:100,200",
            "--vlan",
            "b=trunk:100,200",
            "--cores",
            "1",
        ],
    );
    let prof = write(
        &s,
        "v.toml",
        r#"
[[stream]]
name = "six"
ports = ["a"]
rate = "50kpps"
frames = [200]
l4 = "tcp-data"
src_mac = "02:00:00:00:0a:01"
dst_mac = "02:00:00:00:0b:01"
src_ip = "2001:db8:1::1"
dst_ip = "2001:db8:2::1"
vlan = [100]
[[stream.field]]
field = "vlan"
list = [100, 200]

[[stream]]
name = "four"
ports = ["b"]
rate = "50kpps"
frames = [128]
l4 = "tcp-syn"
src_mac = "02:00:00:00:0b:01"
dst_mac = "02:00:00:00:0a:01"
vlan = [200]
"#,
    );
    let cap = s.path("b.pcapng").display().to_string();
    let (g, out) = gen_run(
        &s,
        &[("a", &sa), ("b", &sb)],
        &["--profile", &prof, "--duration", "1", "--warmup", "0.3", "--capture", &cap, "--capture-port", "b"],
    );
    for n in ["six", "four"] {
        let st = stream(&g, n);
        assert_eq!(u(st, "rx"), u(st, "tx"), "{n}:\n{out}");
        assert!(u(st, "tx") > 40_000);
    }
    let got = frames(&cap);
    let tags: Vec<u16> = got.iter().filter(|f| frame::find_sig(f).is_some()).map(|f| l3::parse_eth(f).unwrap().vlan).collect();
    assert!(tags.len() > 40_000);
    assert!(tags.windows(2).all(|w| w[0] != w[1] && [100, 200].contains(&w[0])), "tags alternate 100, 200");
    let six = got.iter().find(|f| frame::find_sig(f).is_some()).unwrap();
    assert_eq!(u16::from_be_bytes([six[16], six[17]]), 0x86dd, "IPv6 behind the tag");
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_eq!(drops(&j, "a") + drops(&j, "b"), 0, "{j}");
    assert_no_leak(&j);
}

/// Every frame at 1 Mpps for 3 s written by the capture thread: none lost (a net_ring port
/// loops what is sent back to its receive side, so no switch is needed).
#[test]
fn capture_keeps_every_frame_at_1mpps() {
    require_bed();
    let s = Scratch::new("gcap");
    let cap = s.path("c.pcapng").display().to_string();
    let json = s.path("g.json");
    let prefix = s.prefix("gcap");
    let o = Command::new(bin())
        .args(["gen", "--port", "a=vdev:net_ring0", "--rate", "1Mpps", "--duration", "3", "--warmup", "0.2", "--core", "0"])
        .args(["--capture", &cap, "--quiet", "--json"])
        .arg(&json)
        .args(["--", "-l", "0", &format!("--file-prefix={prefix}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert_no_leftovers(&prefix);
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rx = u(&g["ports"]["a"], "rx_packets");
    assert!(rx > 3_000_000, "{g}");
    assert!(out.contains(&format!("capture: {rx} frame(s) written")) && out.contains(", 0 not taken"), "{out}");
    assert_eq!(frames(&cap).len() as u64, rx);
}

/// Two generator cores (`--cores 0,1`), one port each: every stream's numbers stay exact
/// though its packets leave from one core and come back to the other: rx + lost = tx, its
/// loss no more than the switch's drops, one latency sample per packet.
#[test]
fn two_generator_cores_merge_exactly() {
    require_bed();
    let s = Scratch::new("gcores");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = xconnect(&s, &sa, &sb);
    let json = s.path("g.json");
    let prefix = s.prefix("gcores");
    let o = Command::new(bin())
        .args(["gen", "--port", &format!("a=vdev:net_virtio_user0,path={sa},queue_size=4096")])
        .args(["--port", &format!("b=vdev:net_virtio_user1,path={sb},queue_size=4096")])
        .args(["--cores", "0,1", "--rate", "100kpps", "--flows", "32", "--duration", "2", "--warmup", "0.3", "--json"])
        .arg(&json)
        .args(["--", "-l", "0,1", &format!("--file-prefix={prefix}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("core(s) 0,1"), "{out}");
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    for (p, q) in [("a", "b"), ("b", "a")] {
        let st = stream(&g, p);
        let tx = u(st, "tx");
        assert!((196_000..=204_000).contains(&tx), "{p}: {tx}");
        // Two busy pollers share CPU 1 here (a generator core and the switch), so the
        // switch may find the generator's ring full and drop (tx_full): whatever the
        // generator calls lost, the switch dropped.
        let (rx, lost) = (u(st, "rx"), u(st, "lost"));
        assert_eq!(rx + lost, tx, "{p}: {out}");
        assert!(lost <= drops(&j, q), "{p}: lost {lost}, switch drops on {q} {}: {out}", drops(&j, q));
        assert_eq!(u(&st["latency_ns"], "count"), rx);
        assert_eq!(g["ports"][p]["tx_packets"].as_u64(), Some(port(&j, p, "rx_packets")));
        assert_eq!(g["ports"][q]["rx_packets"].as_u64(), Some(port(&j, q, "tx_packets")));
    }
    assert_no_leak(&j);
}

/// Every example profile (each file in `examples/profiles/`) runs against a cross-connect:
/// its measured streams lose nothing.
#[test]
fn example_profiles_run() {
    require_bed();
    let s = Scratch::new("gexamples");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = xconnect(&s, &sa, &sb);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        let (g, out) = gen_run(&s, &[("a", &sa), ("b", &sb)], &["--profile", p.to_str().unwrap(), "--duration", "1", "--warmup", "0.3"]);
        for (name, st) in g["streams"].as_object().unwrap() {
            assert!(u(st, "tx") > 0, "{}: {name} sent nothing:\n{out}", p.display());
            assert_eq!(u(st, "lost"), 0, "{}: {name}:\n{out}", p.display());
        }
    }
    assert!(n >= 4, "examples found: {n}");
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
}

/// `pmdswitch bench --profile`: the profile as the one cell against the DUT, each stream
/// reported, counts checked; and what does not go with a profile refused in one line.
#[test]
fn bench_runs_a_profile() {
    require_bed();
    let s = Scratch::new("gbenchprof");
    let out = s.path("out");
    let prof = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles/imix-v4.toml");
    let o = Command::new(bin())
        .args(["bench", "--profile", prof.to_str().unwrap(), "--secs", "0.5", "--warmup", "0.3", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("stream a-to-b: rx") && text.contains("stream b-to-a: rx") && text.contains("agree"), "{text}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let c = &j["cells"][0];
    assert_eq!(c["flows"].as_u64(), Some(128), "{c}");
    let mpps = c["max_mpps"].as_f64().unwrap();
    assert!((0.38..0.42).contains(&mpps), "two 200 kpps streams: {mpps}");
    for (args, want) in [
        (vec!["--frames", "64"], "--frames does not go with --profile"),
        (vec!["--modes", "max,ndr"], "--modes ndr does not go with --profile"),
        (vec!["--dut", "pmdswitch-router"], "a router needs the addresses"),
    ] {
        let mut all = vec!["bench", "--profile", prof.to_str().unwrap()];
        all.extend(args);
        let (rc, _, err) = run_once(&all);
        assert_eq!(rc, 2, "{err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{err}");
    }
}

/// One flow of one size with an L4 checksum (IPv6/UDP, IPv4/TCP: the sender's
/// single-header loop) or with a per-packet field (IPv4/UDP, the header cycle's loop
/// for one flow of one size): every frame, as captured on the far side, arrives whole, at
/// its length, with a valid L4 checksum or the field's next value, and its flow's sequence
/// numbers in order.
#[test]
fn single_header_streams_arrive_with_valid_checksums() {
    require_bed();
    let s = Scratch::new("gensingle");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = xconnect(&s, &sa, &sb);
    let prof = write(
        &s,
        "single.toml",
        r#"
[[stream]]
name = "v6udp"
ports = ["a"]
frames = [82]
rate = "50kpps"
src_ip = "2001:db8:1::1"
dst_ip = "2001:db8:2::1"

[[stream]]
name = "tcp"
ports = ["a"]
frames = [74]
rate = "50kpps"
l4 = "tcp-data"

[[stream]]
name = "v4field"
ports = ["a"]
frames = [64]
rate = "50kpps"
[[stream.field]]
field = "src_port"
range = [1000, 1999]
"#,
    );
    let cap = s.path("b.pcapng").display().to_string();
    let (g, out) = gen_run(
        &s,
        &[("a", &sa), ("b", &sb)],
        &["--profile", &prof, "--duration", "1", "--warmup", "0.2", "--capture", &cap, "--capture-port", "b"],
    );
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_eq!(drops(&j, "b"), 0, "{j}");
    for name in ["v6udp", "tcp", "v4field"] {
        let st = stream(&g, name);
        assert!(u(st, "tx") > 40_000, "{name}: {out}");
        assert_eq!((u(st, "rx"), u(st, "lost")), (u(st, "tx"), 0), "{name}: {out}");
    }
    let v6 = Layout::of(&Shape { src_ip: "2001:db8:1::1".parse().unwrap(), dst_ip: "2001:db8:2::1".parse().unwrap(), ..Shape::default() });
    let tcp = Layout::of(&Shape { l4: L4::TcpData, ..Shape::default() });
    let got = frames(&cap);
    assert_eq!(got.len() as u64, u(&g["ports"]["b"], "rx_packets"), "every frame b received was captured");
    let mut next = std::collections::HashMap::new();
    let mut seen = [0u64; 3];
    let mut port: Option<u16> = None;
    for f in &got {
        let (lay, len, k) = match (&f[12..14], f.get(23)) {
            ([0x86, 0xdd], _) => (&v6, 78, 0),
            (_, Some(6)) => (&tcp, 70, 1),
            _ => (&tcp, 60, 2),
        };
        assert_eq!(f.len(), len, "{f:02x?}");
        if k == 2 {
            // Untouched UDP checksum (0: none over IPv4); the source port steps by one.
            let p = u16::from_be_bytes([f[34], f[35]]);
            if let Some(q) = port {
                assert_eq!(p, if q == 1999 { 1000 } else { q + 1 }, "src_port after {q}");
            }
            port = Some(p);
            l3::parse_ipv4(&f[14..]).expect("IPv4 header checksum valid");
        } else {
            assert!(frame::l4_ok(f, lay), "L4 checksum: {f:02x?}");
        }
        let sig = frame::find_sig(f).expect("our signature");
        // Numbering starts again once, where measuring starts after the warm-up.
        let (want, restarts) = next.entry(sig.flow).or_insert((sig.seq, 0));
        if sig.seq == 0 && *want != 0 {
            *restarts += 1;
        } else {
            assert_eq!(sig.seq, *want, "flow {}: sequence", sig.flow);
        }
        assert!(*restarts <= 1, "flow {}: numbered from 0 more than once", sig.flow);
        *want = sig.seq.wrapping_add(1);
        seen[k] += 1;
    }
    assert!(seen.iter().all(|&n| n > 40_000), "every shape arrived: {seen:?}");
}
