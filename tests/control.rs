//! Run-time changes through the control socket: ports added and removed under traffic on
//! another pair lose none of that pair's packets; errors are one line.

mod common;

use std::time::Duration;

use common::*;

/// Ports added, cross-connected and removed through the control socket while paced traffic
/// runs on a,b: that pair loses nothing; refusals are one line and change nothing.
#[test]
fn add_and_remove_ports_under_traffic_lose_nothing_elsewhere() {
    require_bed();
    let s = Scratch::new("ctladd");
    let (sa, sb, sc) = (s.sock("a.sock"), s.sock("b.sock"), s.sock("c.sock"));
    let ctl_sock = s.path("ctl");
    let d = xconnect_ab(&s, &sa, &sb, &["--ctl", ctl_sock.to_str().unwrap()]);
    // Paced traffic a<->b for 5 s, in the background.
    let json = s.path("gen.json");
    let mut g = gen_paced(&s, &sa, &sb, "5", &json);
    // The changes begin once traffic flows.
    wait_counter(&ctl_sock, "a", "rx_packets", Duration::from_secs(30), |v| v >= 20_000);
    let ok = |words: &[&str]| {
        let (code, out, err) = ctl(&ctl_sock, words);
        assert_eq!(code, 0, "{words:?}: {err}");
        assert!(out.starts_with("ok:"), "{words:?}: {out}");
        out
    };
    // A vhost port and a ring port appear, get cross-connected, then go away again.
    let out = ok(&["add-port", "c", &format!("vhost-server:{sc}")]);
    assert!(out.contains("port c added"), "{out}");
    assert!(std::path::Path::new(&sc).exists(), "socket of the new port");
    ok(&["add-port", "d", "vdev:net_ring0", "queues=1"]);
    ok(&["xconnect", "c,d"]);
    let (_, ports, _) = ctl(&ctl_sock, &["show", "ports", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ports).unwrap();
    assert_eq!(v["ports"]["c"]["rule"], "xconnect d", "{v}");
    // Refusals are one line with the fix, and change nothing.
    let (code, _, err) = ctl(&ctl_sock, &["add-port", "c", "vdev:net_null0"]);
    assert_eq!(code, 1);
    assert!(err.contains("port 'c' exists") && err.lines().count() == 1, "{err}");
    let (code, _, err) = ctl(&ctl_sock, &["xconnect", "a,c"]);
    assert!(code == 1 && err.contains("del-xconnect"), "{err}");
    // Traffic goes on through the new ports' presence for a while (100 000 frames more).
    let now = live_counter(&ctl_sock, "a", "rx_packets");
    wait_counter(&ctl_sock, "a", "rx_packets", Duration::from_secs(30), |v| v >= now + 100_000);
    ok(&["del-xconnect", "c"]);
    ok(&["del-port", "c"]);
    ok(&["del-port", "d"]);
    assert!(!std::path::Path::new(&sc).exists(), "socket removed with the port");
    // The same name and device can come back.
    ok(&["add-port", "d", "vdev:net_ring0"]);
    ok(&["del-port", "d"]);
    let st = wait_timeout(&mut g, Duration::from_secs(30)).expect("gen finished");
    assert!(st.success());
    let gj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for p in ["a", "b"] {
        let st = &gj["streams"][p];
        assert!(st["tx"].as_u64().unwrap() > 800_000, "{gj}");
        assert_eq!(st["lost"].as_u64(), Some(0), "stream {p} lost packets during the changes: {gj}");
        assert_eq!(st["rx"], st["tx"]);
    }
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
    for p in ["a", "b"] {
        assert_eq!(drops(&j, p), 0, "{j}");
    }
    assert!(j["ports"].get("c").is_none(), "removed ports leave the report: {j}");
}

/// Every command the help lists works on a live switch: the protocol table's examples,
/// run in order (ports a and b in bridge br0, port d in no rule), each answered without
/// an error; `ctl help` lists every one.
#[test]
fn every_command_in_the_help_works() {
    use pmdswitch::control::protocol::COMMANDS;
    require_bed();
    let s = Scratch::new("ctltable");
    let ctl_sock = s.path("ctl");
    // A config file for `reload` to read (the ports come from the command line).
    let file = s.path("switch.toml");
    std::fs::write(&file, "burst = 32\n").unwrap();
    let d = Pmds::start(
        &s,
        &[
            "--config",
            file.to_str().unwrap(),
            "--port",
            &format!("a=vhost-server:{}", s.sock("a.sock")),
            "--port",
            &format!("b=vhost-server:{}", s.sock("b.sock")),
            "--port",
            "d=vdev:net_null0",
            "--bridge",
            "br0=a,b",
            "--cores",
            "1",
            "--ctl",
            ctl_sock.to_str().unwrap(),
        ],
    );
    let (code, help, err) = ctl(&ctl_sock, &["help"]);
    assert_eq!(code, 0, "{err}");
    for c in COMMANDS {
        assert!(help.contains(&c.usage()), "help lacks {}: {help}", c.usage());
        let words: Vec<&str> = c.example.split_whitespace().collect();
        let (code, out, err) = ctl(&ctl_sock, &words);
        assert_eq!(code, 0, "{}: {err}", c.example);
        assert!(!out.is_empty(), "{}: empty answer", c.example);
        if c.example.contains("--json") {
            serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{}: {e}: {out}", c.example));
        }
    }
    // The examples left the switch as they found it, less port d.
    let (_, ports, _) = ctl(&ctl_sock, &["show", "ports", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ports).unwrap();
    assert!(v["ports"].get("d").is_none() && v["ports"]["c"]["rule"] == "none", "{v}");
    let (st, _, j, text) = d.stop();
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
}

/// Starts a cross-connect of two null ports with a worker fault armed, asks for a
/// reload point (`ctl add-port`: the workers take a new poll list), and returns the switch's exit code and output.
fn run_with_fault(tag: &str, fault: &str) -> (Option<i32>, String) {
    require_bed();
    let s = Scratch::new(tag);
    let ctl_sock = s.path("ctl");
    let mut d = pmdswitch::bed::switch::Switch::start_in(
        &bin(),
        &s,
        None,
        &[("PMDSWITCH_TEST_WORKER_FAULT", fault), ("PMDSWITCH_WORKER_STALL_MS", "500")],
        &[
            "--port",
            "a=vdev:net_null0",
            "--port",
            "b=vdev:net_null1",
            "--xconnect",
            "a,b",
            "--cores",
            "1",
            "--ctl",
            ctl_sock.to_str().unwrap(),
        ],
    );
    let _ = ctl(&ctl_sock, &["add-port", "c", "vdev:net_null2"]);
    let st = d.finish(Duration::from_secs(30)).expect("pmdswitch did not exit after its worker's fault");
    let text = format!("{}{}", d.out.text(), d.err.text());
    assert!(!ctl_sock.exists(), "control socket left behind:\n{text}");
    (st.code(), text)
}

/// A worker that panics is noticed: the switch names the worker, its core and what it
/// was doing, shuts down and exits non-zero (it does not go on with queues unserved).
#[test]
fn a_worker_panic_is_named_and_the_switch_exits_non_zero() {
    let (code, text) = run_with_fault("wdpanic", "panic");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("worker 0 on core 1 stopped while taking a new poll list") && text.contains("panicked: test fault injected"),
        "{text}"
    );
    assert!(text.contains("=== pmdswitch final stats"), "no final report:\n{text}");
}

/// A worker stuck past the stall limit is noticed the same way, and the reload that
/// waited for it is released (the ctl request is answered, the switch exits).
#[test]
fn a_stalled_worker_is_named_and_the_switch_exits_non_zero() {
    let (code, text) = run_with_fault("wdstall", "stall");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("worker 0 on core 1 has not finished a poll pass") && text.contains("taking a new poll list"), "{text}");
}
