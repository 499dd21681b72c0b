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
    // The file `route load`'s example names (a route file with no routes).
    let routes = std::path::Path::new("/tmp/routes.txt");
    let made = !routes.exists();
    if made {
        std::fs::write(routes, "# no routes\n").unwrap();
    }
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
    if made {
        let _ = std::fs::remove_file(routes);
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

/// Writes up to 1 GiB without a newline into `w` (a client that never ends its request);
/// returns how much went before the switch closed the connection.
fn flood(mut w: impl std::io::Write) -> u64 {
    let junk = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    while sent < 1 << 30 {
        match w.write(&junk) {
            Ok(n) => sent += n as u64,
            Err(_) => break,
        }
    }
    sent
}

/// A client that sends a byte every 100 ms and never a newline (each byte within any
/// per-read timeout); returns whether the switch cut it off (a write failed) within 10 s.
fn trickle(mut w: impl std::io::Write) -> bool {
    for _ in 0..100 {
        if w.write_all(b"x").and_then(|()| w.flush()).is_err() {
            return true;
        }
        // Pacing, not synchronisation: the point is a slow sender.
        std::thread::park_timeout(Duration::from_millis(100));
    }
    false
}

/// The control socket and the metrics port under hostile local clients: a 1 GiB
/// newline-free stream into each is cut off at the request limit (the switch's resident
/// memory grows by less than 64 MiB), a client sending a byte every 100 ms is cut off at
/// the request deadline, other clients are answered meanwhile, and SIGTERM with slow
/// clients still connected to both ends cleanly (how long it took is logged).
#[test]
fn endpoints_cannot_be_flooded_starved_or_hold_up_shutdown() {
    require_bed();
    let s = Scratch::new("endp");
    let sa = s.sock("a.sock");
    let metrics = format!("127.0.0.1:{}", free_port());
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            "b=vdev:net_null0,no-rx=1",
            "--xconnect",
            "a,b",
            "--cores",
            "1",
            "--prometheus",
            &metrics,
        ],
    );
    let live = dut_ctl(&s);
    let before = rss_kib(pm.pid());
    let unix = || std::os::unix::net::UnixStream::connect(&live).unwrap();
    let tcp = || std::net::TcpStream::connect(&metrics).unwrap();
    let (f1, f2) = (unix(), tcp());
    let floods = [std::thread::spawn(move || flood(f1)), std::thread::spawn(move || flood(f2))];
    let (t1, t2) = (unix(), tcp());
    let tricklers = [std::thread::spawn(move || trickle(t1)), std::thread::spawn(move || trickle(t2))];
    // Meanwhile, other clients are served.
    let (code, out, err) = ctl(&live, &["show", "ports", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"a\""), "{out}");
    assert!(http_get(&metrics, "/metrics").contains("pmdswitch_port_rx_packets_total"), "metrics answered");
    for f in floods {
        let sent = f.join().unwrap();
        assert!(sent < 1 << 30, "a newline-free stream was read to its end ({sent} bytes)");
    }
    for t in tricklers {
        assert!(t.join().unwrap(), "a client sending a byte every 100 ms was not cut off");
    }
    let grew = rss_kib(pm.pid()).saturating_sub(before);
    assert!(grew < 64 << 10, "resident memory grew by {grew} KiB under the floods");
    // Requests that are too long or end too late get one line saying so.
    let mut c = unix();
    std::io::Write::write_all(&mut c, &[b'x'; 9000]).unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut c, &mut reply).unwrap();
    assert!(reply.starts_with("error: request longer than 8192 bytes"), "{reply}");
    // SIGTERM while slow clients hold both endpoints open.
    let (mut h1, mut h2) = (unix(), tcp());
    std::io::Write::write_all(&mut h1, b"sh").unwrap();
    std::io::Write::write_all(&mut h2, b"GE").unwrap();
    let (st, took, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    assert!(j["ports"]["a"].is_object(), "the stats JSON was written");
    eprintln!("SIGTERM with slow clients on both endpoints: exit took {took:?}");
    drop((h1, h2));
}

/// `route load` reads route files only: a FIFO and a device are refused at once (no
/// wait, no read), and a client let in by `--socket-group` cannot make the switch read a
/// file it could not read itself; the refusals name the file, never its content.
#[test]
fn route_load_reads_only_regular_files_the_client_may_read() {
    require_bed();
    let s = Scratch::new("rload");
    let sa = s.sock("a.sock");
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--ip", "a=198.18.1.254/24", "--cores", "1", "--socket-group", "daemon"],
    );
    let live = dut_ctl(&s);
    let fifo = s.path("routes.fifo");
    assert!(sh(&format!("mkfifo {}", fifo.display())));
    let (code, _, err) = ctl(&live, &["route", "load", fifo.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("is not a regular file"), "{err}");
    let (code, _, err) = ctl(&live, &["route", "load", "/dev/zero"]);
    assert!(code != 0 && err.contains("is not a regular file"), "{err}");
    // A secret only root may read, asked for by a member of the socket's group (uid 1).
    let secret = s.path("secret.routes");
    std::fs::write(&secret, "198.19.0.0/16 via:198.18.1.1 # TOPSECRET\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=1", "--regid=1", "--clear-groups"])
        .arg(bin())
        .args(["ctl", "--socket", live.to_str().unwrap(), "route", "load", secret.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not readable by the requesting user (uid 1)"), "{err}");
    assert!(!err.contains("TOPSECRET"));
    // Root reads it (the socket's owner may read anything anyway).
    let (code, out, err) = ctl(&live, &["route", "load", secret.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 routes added"), "{out}");
    let (st, _, _, text) = pm.stop();
    assert!(st.success(), "{text}");
}
