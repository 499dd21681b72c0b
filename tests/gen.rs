//! `pmdswitch gen` against `pmdswitch run`: the generator's counts must equal the
//! switch's own, its latency histogram must hold exactly the packets it timestamped, and
//! `pmdswitch bench` must produce its table, JSON and pictures and leave nothing behind.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn gen(s: &Scratch, sa: &str, sb: &str, args: &[&str]) -> (serde_json::Value, String) {
    gen_run(s, &[("a", sa), ("b", sb)], args)
}

fn dut(s: &Scratch, sa: &str, sb: &str) -> Switch {
    xconnect_ab(s, sa, sb, &[])
}

/// A paced 2 s run, 16 flows, three frame sizes: the generator's per-port tx/rx/bytes equal
/// pmdswitch's counters exactly, no loss, histogram count = timestamped packets received,
/// latencies positive and < 1 s, warm-up packets received but kept out of the streams.
#[test]
fn gen_counts_equal_switch_counts() {
    require_bed();
    let s = Scratch::new("gencount");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = dut(&s, &sa, &sb);
    // A paced rate the shared host always sustains, so the run has no drops: then every
    // count must agree exactly.
    let (g, out) =
        gen(&s, &sa, &sb, &["--rate", "200kpps", "--duration", "2", "--warmup", "0.5", "--flows", "16", "--frame", "64,512,1518"]);
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
    assert!(out.contains("=== pmdswitch gen"), "no final table:\n{out}");
    for p in ["a", "b"] {
        assert_eq!(drops(&j, p), 0, "the switch dropped: {j}");
    }
    // Port totals (warm-up included) against the switch's own counters.
    let gp = |p: &str, k: &str| g["ports"][p][k].as_u64().unwrap();
    assert_eq!(gp("a", "tx_packets"), port(&j, "a", "rx_packets"));
    assert_eq!(gp("b", "tx_packets"), port(&j, "b", "rx_packets"));
    assert_eq!(port(&j, "b", "tx_packets"), gp("b", "rx_packets"));
    assert_eq!(port(&j, "a", "tx_packets"), gp("a", "rx_packets"));
    assert_eq!(gp("a", "tx_bytes"), port(&j, "a", "rx_bytes"));
    assert_eq!(gp("a", "rx_foreign") + gp("b", "rx_foreign"), 0);
    for p in ["a", "b"] {
        let st = &g["streams"][p];
        let (tx, rx) = (st["tx"].as_u64().unwrap(), st["rx"].as_u64().unwrap());
        // 2 s at 200 kpps; the pacing may end a burst early or late.
        assert!((390_000..=410_000).contains(&tx), "stream {p}: tx {tx}");
        assert_eq!(rx, tx, "stream {p}: every measured packet came back");
        assert_eq!(st["lost"].as_u64(), Some(0));
        assert_eq!(st["duplicates"].as_u64(), Some(0));
        let lat = &st["latency_ns"];
        // One timestamped packet, one histogram entry.
        assert_eq!(lat["count"].as_u64(), Some(rx), "histogram count != timestamped rx: {lat}");
        let (min, max) = (lat["min"].as_u64().unwrap(), lat["max"].as_u64().unwrap());
        assert!(min > 0 && min <= lat["p50"].as_u64().unwrap() && max < 1_000_000_000, "absurd latency: {lat}");
    }
    assert_eq!(g["bad_latency"].as_u64(), Some(0));
    // Warm-up packets were received but kept out of the streams.
    assert!(gp("a", "rx_warmup") > 0);
    assert_eq!(gp("b", "rx_packets"), gp("b", "rx_warmup") + g["streams"]["a"]["rx"].as_u64().unwrap());
}

/// `--count` and `--tx`: exactly the packets asked for, from a only; then a short NDR search
/// whose NDR trial lost nothing.
#[test]
fn gen_count_and_search() {
    require_bed();
    let s = Scratch::new("gensearch");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let d = dut(&s, &sa, &sb);
    let (g, _) = gen(&s, &sa, &sb, &["--count", "50000", "--tx", "a", "--warmup", "0", "--duration", "30", "--rate", "1Mpps"]);
    assert_eq!(g["streams"]["a"]["tx"].as_u64(), Some(50_000), "{g}");
    assert!(g["streams"].get("b").is_none(), "b does not send: {g}");
    assert_eq!(g["ports"]["b"]["tx_packets"].as_u64(), Some(0));
    // A short search: a converged NDR, never above what the sender offered at full speed.
    let (g, out) = gen(&s, &sa, &sb, &["--search", "--duration", "0.3", "--warmup", "0.2", "--resolution-pct", "10", "--frame", "64"]);
    let r = &g["search"][0];
    let ndr = r["ndr_pps"].as_f64().unwrap();
    assert!(ndr > 10_000.0, "NDR {ndr}:\n{out}");
    assert!(r["pdr_pps"].as_f64().unwrap() >= ndr);
    let trials = r["trials"].as_array().unwrap();
    assert!(!trials.is_empty() && trials.len() <= 16);
    // Each trial's tx/rx are real counts and the NDR trial lost nothing.
    assert!(trials.iter().any(|t| (t["rate_pps"].as_f64().unwrap() - ndr).abs() < 1.0 && t["rx"] == t["tx"]), "{r}");
    assert!(r["latency_at_ndr_ns"]["count"].as_u64().unwrap() > 0);
    assert!(out.contains("RFC 2544"), "{out}");
    let (st, _, j, _) = d.stop();
    assert!(st.success());
    assert_no_leak(&j);
}

/// Bad input to `pmdswitch gen` is one line each, with its exit code and nothing left: bad
/// profiles and captures (a value of the wrong type, a missing file, an unknown port, a
/// truncated record, a flag that a profile replaces) and bad flags.
#[test]
fn gen_bad_input_is_one_line() {
    let s = Scratch::new("genbad");
    let sock = s.sock("none.sock");
    let file = |name: &str, text: &[u8]| {
        let p = s.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let bad_toml = file("bad.toml", b"[[stream]]\nports = [\"a\"]\nrate = 5\n");
    let other_port = file("other.toml", b"[[stream]]\nports = [\"z\"]\n");
    let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/profiles/replay.pcap")).unwrap();
    let cut = file("cut.pcap", &fixture[..fixture.len() - 100]);
    let cut_prof = file("cut.toml", format!("[[stream]]\nports = [\"a\"]\npcap = \"{cut}\"\n").as_bytes());
    let null = || vec!["--port".to_string(), "a=vdev:net_null0".into()];
    let with = |more: &[&str]| null().into_iter().chain(more.iter().map(|x| x.to_string())).collect::<Vec<String>>();
    let cases: Vec<(Vec<String>, &str, i32)> = vec![
        (with(&["--profile", &bad_toml]), "bad.toml:3:8: rate: invalid type", 2),
        (with(&["--profile", "/nonexistent/p.toml"]), "cannot read profile /nonexistent/p.toml", 2),
        (with(&["--profile", &other_port]), "sends on port 'z', which no --port defines", 2),
        (with(&["--profile", &cut_prof]), "cut.pcap: record 21", 2),
        (with(&["--profile", &bad_toml, "--frame", "64"]), "--frame does not go with --profile", 2),
        (with(&["--cores", "0,1"]), "each core needs a port of its own", 2),
        (with(&["--capture", "/tmp/x.pcapng", "--capture-every", "0"]), "--capture-every 0", 2),
        (vec!["--port".into(), "a=vdev:net_null0".into(), "--rate".into(), "fast".into()], "--rate 'fast' is not a rate", 2),
        (vec!["--port".into(), format!("a=vhost-server:{sock}")], "gen ports are DPDK ethdevs", 2),
        (vec!["--port".into(), "a=vdev:net_null0".into(), "--frame".into(), "40".into()], "out of range", 2),
        (vec!["--port".into(), "a=vdev:net_null0".into(), "--flows".into(), "0".into()], "--flows 0 is out of range", 2),
        (vec!["--port".into(), "a=vdev:net_null0".into(), "--dst-mac".into(), "01:02".into()], "not six hex bytes", 2),
        (vec![], "no ports", 2),
        (vec!["--port".into(), format!("a=vdev:net_virtio_user0,path={sock}")], "is a switch serving that vhost-user socket", 1),
    ];
    for (args, want, code) in cases {
        let prefix = s.prefix(&format!("g{code}"));
        let mut all: Vec<String> = vec!["gen".into(), "--duration".into(), "0.2".into()];
        all.extend(args.iter().cloned());
        all.extend(["--".into(), format!("--file-prefix={prefix}")]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let (rc, _, err) = run_once(&refs);
        assert_eq!(rc, code, "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line:\n{err}");
        assert!(lines[0].contains(want), "{args:?}: {err}");
        assert_no_leftovers(&prefix);
    }
}

/// A quick `pmdswitch bench`: the table, results.json, both SVGs, counts that agree, and no
/// scratch or EAL directory left.
#[test]
fn bench_quick_writes_results_and_cleans_up() {
    require_bed();
    let s = Scratch::new("bench");
    let out = s.path("out");
    let o = Command::new(bin())
        .args(["bench", "--frames", "64,1518", "--flows", "1", "--secs", "0.5", "--warmup", "0.3", "--resolution-pct", "10", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("spawn bench");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "bench failed:\n{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("=== pmdswitch bench") && text.contains("agree"), "{text}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let cells = j["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        assert!(c["max_mpps"].as_f64().unwrap() > 0.0 && c["ndr_mpps"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(j["count_checks"].as_array().unwrap().iter().all(|c| c["agree"] == true || c["dut_drops"].as_u64() > Some(0)), "{j}");
    for f in ["throughput.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("pmdswitch"), "{f}");
    }
    // Nothing left: no scratch directory, no EAL runtime directory, no process.
    let left: Vec<String> = std::fs::read_dir("/var/run/dpdk")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("pmdsb")).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "EAL runtime dirs left: {left:?}");
    let tmp: Vec<String> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pmdswitch-bench-"))
        .collect();
    assert!(tmp.is_empty(), "scratch left: {tmp:?}");
}

#[test]
fn bench_interrupted_stops_its_children_and_cleans_up() {
    require_bed();
    let s = Scratch::new("benchint");
    let mut child = Command::new(bin())
        .args(["bench", "--frames", "64", "--flows", "1", "--modes", "max", "--secs", "30", "--out"])
        .arg(s.path("out"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bench");
    let pid = child.id();
    // Once the DUT and the generator run (the generator's EAL prefix carries the
    // bench's tag), interrupt the bench alone (not its process group, as a terminal's
    // Ctrl-C would): it must pass the stop on. ("[p]" keeps pgrep from matching the
    // shell that runs it.)
    let tag = format!("pmdsb{pid}");
    let children = format!("pgrep -f '[p]mdswitch gen .*{tag}' >/dev/null");
    wait_until(std::time::Duration::from_secs(60), || "the bench's generator to start".into(), || sh(&children).then_some(()));
    assert!(sh(&format!("kill -INT {pid}")));
    let st = wait_timeout(&mut child, std::time::Duration::from_secs(30)).expect("bench stopped after SIGINT");
    assert!(st.success(), "{st}");
    let any_child = format!("pgrep -f '[p]{}' >/dev/null", &tag[1..]);
    wait_until(std::time::Duration::from_secs(10), || "the bench's children to exit".into(), || (!sh(&any_child)).then_some(()));
    let left: Vec<String> = std::fs::read_dir("/var/run/dpdk")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&tag)).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "EAL runtime dirs left: {left:?}");
    assert!(!std::path::Path::new(&format!("/tmp/pmdswitch-bench-{pid}")).exists(), "scratch left");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(s.path("out/results.json")).unwrap()).unwrap();
    assert_eq!(j["interrupted"], true);
}

/// A virtio-user port's `queue_size` is the generator's ring size: a receiving generator
/// that is stopped (SIGSTOP, as a descheduled core would be) still has 4096 receive
/// buffers posted, so 3 000 frames sent to it all land in its ring and the switch drops
/// none (with the old default of 1 024 descriptors, 1 976 were dropped as tx_full).
#[test]
fn gen_rings_follow_queue_size() {
    require_bed();
    let s = Scratch::new("genring");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let ctl_sock = s.path("ctl");
    let d = xconnect_ab(&s, &sa, &sb, &["--ctl", ctl_sock.to_str().unwrap()]);
    let gen_one = |name: &str, sock: &str, i: u32, args: &[&str]| {
        Command::new(bin())
            .args(["gen", "--port", &format!("{name}=vdev:net_virtio_user{i},path={sock},queue_size=4096")])
            .args(["--core", "0", "--warmup", "0", "--quiet"])
            .args(args)
            .args(["--", "-l", "0", &format!("--file-prefix={}", s.prefix(&format!("gen{name}")))])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let show = || -> serde_json::Value {
        let (_, out, _) = ctl(&ctl_sock, &["show", "ports", "--json"]);
        serde_json::from_str(&out).unwrap()
    };
    // The receiver: its own trickle shows when its queues are up (buffers posted).
    let mut rcv = gen_one("b", &sb, 1, &["--rate", "10pps", "--duration", "60"]);
    wait_counter(&ctl_sock, "b", "rx_packets", std::time::Duration::from_secs(20), |v| v > 0);
    assert!(sh(&format!("kill -STOP {}", rcv.id())));
    let mut snd = gen_one("a", &sa, 0, &["--rate", "100kpps", "--count", "3000", "--duration", "10"]);
    let st = wait_timeout(&mut snd, std::time::Duration::from_secs(60)).expect("sender finished");
    let v = show();
    let (sent, full) = (port(&v, "b", "tx_packets"), v["ports"]["b"]["drops"]["tx_full"].as_u64().unwrap());
    assert!(sh(&format!("kill -CONT {} && kill -INT {}", rcv.id(), rcv.id())));
    wait_timeout(&mut rcv, std::time::Duration::from_secs(30)).expect("receiver finished");
    assert!(st.success());
    assert_eq!((sent, full), (3000, 0), "frames into the stopped receiver's ring, and drops for want of room");
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_eq!(port(&j, "a", "rx_packets"), 3000, "{j}");
}
