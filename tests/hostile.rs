//! A hostile vhost-user frontend (tests/tools/hostile_frontend.py: malformed sizes,
//! unknown requests, missing and bogus fds, memory tables that do not cover the rings,
//! absurd ring sizes, garbage, connection storms) must neither crash pmdswitch nor
//! disturb its other ports.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// tests/tools/hostile_frontend.py speaks vhost-user over socket h with wrong sizes, unknown
/// requests, missing and bogus fds, memory tables that do not cover the rings, absurd ring
/// sizes, garbage and a connection storm, while another port forwards a counted stream that
/// must arrive whole; nothing is forwarded from h.
#[test]
fn hostile_frontend_neither_crashes_nor_disturbs_other_ports() {
    require_bed();
    let s = Scratch::new("hostile");
    let (sh, sa) = (s.sock("h.sock"), s.sock("a.sock"));
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("h=vhost-server:{sh}"),
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            "b=vdev:net_null0,no-rx=1",
            "--xconnect",
            "a,b",
            "--cores",
            "1",
        ],
    );
    let mut g = Testpmd::start(&s.prefix("g"), &[format!("net_virtio_user0,path={sa}")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(10)));
    g.cmd("start");
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/hostile_frontend.py");
    let o = Command::new("python3").arg(tool).arg(&sh).arg("--pid").arg(pm.pid().to_string()).output().expect("python3");
    let report = String::from_utf8_lossy(&o.stdout).into_owned();
    let sent = g.finish()[&0].tx;
    // Every frame the generator sent has been through the worker.
    wait_counter(&dut_ctl(&s), "a", "rx_packets", Duration::from_secs(10), |v| v >= sent);
    let (st, _, j, text) = pm.stop();
    assert!(o.status.success(), "backend died during the hostile session:\n{report}\n{text}");
    assert!(report.matches("backend alive").count() >= 10, "{report}");
    assert!(st.success(), "pmdswitch did not exit cleanly after the hostile session:\n{text}");
    assert!(sent > 10_000);
    assert_eq!(port(&j, "a", "rx_packets"), sent, "the other port lost nothing\n{j}");
    assert_eq!(port(&j, "b", "tx_packets"), sent);
    assert_eq!(port(&j, "h", "rx_packets"), 0, "nothing was forwarded from the hostile socket");
    assert_no_leak(&j);
}

/// Numbers after `key ` in the tool's summary line.
fn summary(report: &str, key: &str) -> u64 {
    let line = report.lines().find(|l| l.starts_with("rings: valid")).unwrap_or_else(|| panic!("no summary:\n{report}"));
    let mut w = line.split_whitespace();
    while let Some(x) = w.next() {
        if x == key {
            return w.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad {key} in {line}"));
        }
    }
    panic!("no {key} in {line}")
}

/// Ring-level hostility on the own data path (tests/tools/hostile_frontend.py rings): a
/// frontend whose transmit ring carries broken chains between valid frames, towards a
/// well-behaved frontend whose receive ring is partly hostile too. Every chain comes
/// back, exactly the valid frames arrive intact and in order (with the virtio-net header
/// pmdswitch rebuilt, never the sender's), every refused one is counted by its cause, a ring whose index jumps is no longer served (counted, said),
/// and a third port's traffic is untouched.
///
/// On the library path only the last of these is asked for: rte_vhost 22.11 stops
/// serving a transmit ring at its first head index out of range (the chain is never
/// returned, nothing is counted) and writes into a receive buffer without the WRITE
/// flag — measured with this tool, and why the own path checks every field itself.
#[test]
fn hostile_rings_are_refused_by_cause_and_nothing_else_is_disturbed() {
    require_bed();
    let lib = std::env::var(pmdswitch::bed::switch::DATAPATH_ENV).is_ok_and(|v| v == "lib");
    let s = Scratch::new("hrings");
    let (sh, sr, sa) = (s.sock("h.sock"), s.sock("r.sock"), s.sock("a.sock"));
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("h=vhost-server:{sh}"),
            "--port",
            &format!("r=vhost-server:{sr}"),
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            "b=vdev:net_null0,no-rx=1",
            "--xconnect",
            "h,r",
            "--xconnect",
            "a,b",
            "--cores",
            "1",
        ],
    );
    let mut g = Testpmd::start(&s.prefix("g"), &[format!("net_virtio_user0,path={sa}")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 1, Duration::from_secs(10)));
    g.cmd("start");
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/hostile_frontend.py");
    let live = dut_ctl(&s);
    let o = Command::new("timeout")
        .args(["120", "python3", tool, "rings", &sh, &sr, "--pid", &pm.pid().to_string(), "--ctl", live.to_str().unwrap()])
        .args(lib.then_some("--lib"))
        .output()
        .expect("python3");
    let report = String::from_utf8_lossy(&o.stdout).into_owned();
    let sent = g.finish()[&0].tx;
    // Every frame the generator sent has been through the worker.
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(10), |v| v >= sent);
    let (st, _, j, text) = pm.stop();
    assert!(!report.contains("BACKEND DIED") && report.contains("rings: valid"), "{report}\n{text}");
    assert!(st.success(), "pmdswitch did not exit cleanly:\n{text}");
    assert!(sent > 10_000);
    assert_eq!(port(&j, "a", "rx_packets"), sent, "the other cross-connect lost nothing\n{j}");
    assert_eq!(port(&j, "b", "tx_packets"), sent, "{j}");
    assert_no_leak(&j);
    if lib {
        return;
    }
    assert!(o.status.success(), "ring checks failed:\n{report}\n{}\n{text}", String::from_utf8_lossy(&o.stderr));
    assert!(report.contains("ring case burst-in-order: in order"), "in-order use (negotiated) not kept:\n{report}");
    let (valid, posted) = (summary(&report, "valid"), summary(&report, "posted"));
    assert_eq!(summary(&report, "arrived"), valid, "{report}");
    assert!(valid >= 8 && posted >= 25 && summary(&report, "bad_hdr") >= 12, "{report}");
    // The hostile side: every chain taken is a frame received; the refused ones by cause.
    let d = &j["ports"]["h"]["drops"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    assert_eq!(port(&j, "h", "rx_packets"), posted, "{j}");
    assert_eq!(n(&d["guest_bad_chain"]), summary(&report, "bad_chain"), "{report}\n{j}");
    assert_eq!(n(&d["guest_bad_addr"]), summary(&report, "bad_addr"), "{report}\n{j}");
    assert_eq!(n(&d["guest_oversize"]), summary(&report, "oversize"), "{report}\n{j}");
    assert_eq!(n(&d["bad_vnet_hdr"]), summary(&report, "bad_hdr"), "{report}\n{j}");
    // The receiver's hostile buffers: refused frames counted on its port, by cause.
    let d = &j["ports"]["r"]["drops"];
    assert_eq!(n(&d["guest_bad_chain"]), summary(&report, "rx_bad_chain"), "{report}\n{j}");
    assert_eq!(n(&d["guest_bad_addr"]), summary(&report, "rx_bad_addr"), "{report}\n{j}");
    assert_eq!(n(&d["guest_oversize"]), summary(&report, "rx_oversize"), "{report}\n{j}");
    assert_eq!(port(&j, "r", "tx_packets"), valid, "only the valid frames left towards the receiver\n{j}");
    // Every frame received is forwarded or dropped by a counted cause.
    assert_eq!(port(&j, "h", "rx_packets"), port(&j, "r", "tx_packets") + drops(&j, "h") + drops(&j, "r"), "{j}");
    // The index jump: the ring counted as broken and said so, once.
    assert_eq!(port(&j, "h", "rings_broken"), 1, "{j}");
    assert_eq!(text.matches("port h: the guest broke a vring").count(), 1, "{text}");
}

/// Runs tests/tools/hostile_frontend.py with `args`; its exit status and stdout.
fn tool(args: &[&str]) -> (bool, String) {
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/hostile_frontend.py");
    let o = Command::new("timeout").args(["120", "python3", tool]).args(args).output().expect("python3");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

fn worker_reloads(live: &std::path::Path) -> u64 {
    let (_, out, _) = ctl(live, &["show", "workers", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["workers"].as_array().unwrap().iter().map(|w| w["reloads"].as_u64().unwrap()).sum()
}

/// The library path: the attacks below are on the own path's defences only.
fn lib_path() -> bool {
    std::env::var(pmdswitch::bed::switch::DATAPATH_ENV).is_ok_and(|v| v == "lib")
}

/// A switch cross-connecting a and b with `extra` arguments, a paced a<->b stream for
/// `secs` seconds, and `attack` run once the stream flows (given the scratch dir, the
/// control socket and the switch's pid). Returns the attack's result, the generator's
/// JSON, the switch's stats JSON and its output; both processes must have exited well.
fn beside_a_paced_stream<T>(
    tag: &str,
    extra: impl Fn(&Scratch) -> Vec<String>,
    secs: &str,
    attack: impl FnOnce(&Scratch, &std::path::Path, i32) -> T,
) -> (T, serde_json::Value, serde_json::Value, String) {
    let s = Scratch::new(tag);
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let live = dut_ctl(&s);
    let extra = extra(&s);
    let pm = xconnect_ab(&s, &sa, &sb, &extra.iter().map(String::as_str).collect::<Vec<_>>());
    let json = s.path("gen.json");
    let mut g = gen_paced(&s, &sa, &sb, secs, &json);
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(30), |v| v >= 20_000);
    let r = attack(&s, &live, pm.pid());
    let st = wait_timeout(&mut g, Duration::from_secs(60)).expect("gen finished");
    let (pst, _, j, text) = pm.stop();
    assert!(st.success() && pst.success(), "{text}");
    let gj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (r, gj, j, text)
}

/// Each stream of the generator's JSON sent more than `min_tx` and got ≥ 90 % through.
fn assert_rate_kept(gj: &serde_json::Value, min_tx: u64, beside: &str) {
    for p in ["a", "b"] {
        let st = &gj["streams"][p];
        let (tx, rx) = (st["tx"].as_u64().unwrap(), st["rx"].as_u64().unwrap());
        assert!(tx > min_tx, "{gj}");
        assert!(rx * 10 >= tx * 9, "stream {p}: {rx} of {tx} arrived {beside} (under 90 %): {gj}");
    }
}

/// A frontend that loops a device-changing message (SET_VRING_CALL, 20 000 times, as
/// fast as the socket takes them) while a paced a<->b stream crosses the same worker:
/// the messages coalesce — the storming device stays withdrawn while they last, the
/// worker reloads a handful of times rather than twice per message — the stream keeps
/// ≥ 90 % of its rate (in practice all of it), and the device is served again after.
/// Own path only: the library path has no pre/post hooks to coalesce with.
#[test]
fn a_message_storm_costs_only_its_own_device() {
    require_bed();
    if lib_path() {
        return;
    }
    let count = 20_000;
    let ((ok, report, reloads, coalesced), gj, j, text) = beside_a_paced_stream(
        "storm",
        |s| vec!["--port".into(), format!("h=vhost-server:{}", s.sock("h.sock"))],
        "6",
        |s, live, pid| {
            let before = worker_reloads(live);
            let (ok, report) = tool(&[
                "storm",
                &s.sock("h.sock"),
                "h",
                "--ctl",
                live.to_str().unwrap(),
                "--count",
                &count.to_string(),
                "--pid",
                &pid.to_string(),
            ]);
            let reloads = worker_reloads(live) - before;
            let hp = live_ports(live)["ports"]["h"].clone();
            let coalesced = hp["messages_coalesced"].as_u64().unwrap_or_else(|| panic!("{hp}\n{report}"));
            (ok, report, reloads, coalesced)
        },
    );
    assert!(ok, "{report}\n{text}");
    eprintln!("storm: {count} messages, {coalesced} coalesced, {reloads} worker reloads");
    // Without coalescing every message cost two reloads of every worker (40 000 here).
    assert!(coalesced >= count / 2, "{coalesced} of {count} coalesced\n{j}");
    assert!(reloads <= 20, "the worker reloaded {reloads} times for {count} messages");
    assert_rate_kept(&gj, 800_000, "during the storm");
    assert_no_leak(&j);
}

/// A frontend truncates its guest memory (the memfd it handed over) while pmdswitch
/// serves it: the fault is survived, the device withdrawn and said so once, a paced
/// a<->b stream on the same worker loses nothing, and the frontend is served again
/// when it comes back with a fresh session. Own path only: rte_vhost's mappings are not
/// guarded (a truncation kills a library-path switch, as it does any rte_vhost backend).
#[test]
fn a_frontend_that_truncates_its_memory_hurts_only_itself() {
    require_bed();
    if lib_path() {
        return;
    }
    let ((ok, report), gj, j, text) = beside_a_paced_stream(
        "trunc",
        |s| vec!["--port".into(), format!("h=vhost-server:{}", s.sock("h.sock"))],
        "4",
        |s, live, pid| tool(&["truncate", &s.sock("h.sock"), "h", "--ctl", live.to_str().unwrap(), "--pid", &pid.to_string()]),
    );
    assert!(ok, "{report}\n{text}");
    assert_eq!(text.matches("port h: the frontend truncated its guest memory").count(), 1, "{text}");
    for p in ["a", "b"] {
        let st = &gj["streams"][p];
        assert!(st["tx"].as_u64().unwrap() > 500_000, "{gj}");
        assert_eq!(st["lost"].as_u64(), Some(0), "stream {p} lost packets: {gj}");
    }
    assert_no_leak(&j);
}

/// A receiver that is expensive to serve: 63 chains of 64 one-byte buffers (indirect
/// tables, mergeable) that can never hold the 9000-byte frames its sender keeps coming
/// for 3 s — without bounds every burst re-walked its 4 095 descriptors. A paced a<->b
/// stream on the same worker keeps ≥ 90 % of its rate (in practice all of it), the
/// switch stays up, and the cost shows on the noisy ports (frames held back, then
/// dropped as `tx_full`). Own path only (the library path has its own walk).
#[test]
fn an_expensive_receiver_costs_its_own_traffic_only() {
    require_bed();
    if lib_path() {
        return;
    }
    let ((ok, report), gj, j, text) = beside_a_paced_stream(
        "rxwalk",
        |s| {
            let (h, r) = (format!("h=vhost-server:{}", s.sock("h.sock")), format!("r=vhost-server:{}", s.sock("r.sock")));
            vec!["--port".into(), h, "--port".into(), r, "--xconnect".into(), "h,r".into()]
        },
        "5",
        |s, live, pid| {
            let (sh, sr) = (s.sock("h.sock"), s.sock("r.sock"));
            tool(&["rxwalk", &sh, &sr, "--ctl", live.to_str().unwrap(), "--secs", "3", "--pid", &pid.to_string()])
        },
    );
    assert!(ok, "{report}\n{text}");
    assert_rate_kept(&gj, 500_000, "beside the expensive receiver");
    let h = port(&j, "h", "rx_packets");
    assert!(h > 0 && port(&j, "r", "tx_packets") == 0, "nothing fits the receiver: {j}");
    assert_eq!(h, drops(&j, "h") + drops(&j, "r"), "every frame from h dropped by a counted cause: {j}");
    assert!(j["ports"]["r"]["drops"]["tx_full"].as_u64().unwrap() > 0, "{j}");
    assert_no_leak(&j);
}
