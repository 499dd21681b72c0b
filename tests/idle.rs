//! Adaptive idle: a worker with nothing to do sleeps on the guests' kick eventfds (≤ 2 %
//! of a core), wakes when traffic returns, and loses nothing doing so.

mod common;

use std::time::Duration;

use common::*;

/// `--idle adaptive` on vhost ports: ≤ 2 % of a core with no peer, with an idle peer and after
/// traffic (a polling worker, the control, uses its whole core); a guest kick wakes the worker
/// and every packet sent after the wake-up arrives.
#[test]
fn adaptive_worker_sleeps_when_idle_and_wakes_for_traffic() {
    require_bed();
    let s = Scratch::new("idle");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    // vhost ports only: an ethdev queue without rx interrupts would keep the worker
    // waking every millisecond (see docs/operations.md, Adaptive idle).
    let ports = ["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"];

    // Control: the same probe sees a polling worker burn its core.
    let pm = Pmds::start(&s, &ports);
    let busy = pm.worker_load(1, 2);
    let (st, _, _, _) = pm.stop();
    assert!(st.success());
    assert!(busy > 0.8, "a polling worker should use its whole core, measured {busy:.2}");

    let mut args = ports.to_vec();
    args.extend(["--idle", "adaptive"]);
    let pm = Pmds::start(&s, &args);
    let idle_empty = pm.worker_load(1, 3);
    // Peers connect (their rings now exist) but send nothing yet.
    let mut rx = Testpmd::start(&s.prefix("r"), &[format!("net_virtio_user0,path={sb}")], "rxonly", 0, &[]);
    let mut g = Testpmd::start(&s.prefix("g"), &[format!("net_virtio_user0,path={sa}")], "txonly", 0, &[]);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(10)));
    rx.cmd("start");
    let idle_peer = pm.worker_load(1, 3);
    // Traffic returns: the guest's kick wakes the worker; nothing may be lost.
    g.cmd("start");
    let live = dut_ctl(&s);
    wait_more(&live, "a", "rx_packets", 100_000);
    let sent = g.finish()[&0].tx;
    wait_counter(&live, "a", "rx_packets", Duration::from_secs(10), |v| v >= sent);
    wait_peer_rx(&mut rx, 0, live_counter(&live, "b", "tx_packets"));
    let idle_after = pm.worker_load(1, 3);
    let got = rx.finish()[&0].rx;
    let (st, _, j, text) = pm.stop();
    assert!(st.success(), "{text}");
    for (what, load) in [("no peer", idle_empty), ("idle peer", idle_peer), ("after traffic", idle_after)] {
        assert!(load <= 0.02, "adaptive worker used {:.1} % of a core ({what})", load * 100.0);
    }
    assert!(sent > 10_000, "{sent}");
    assert_eq!(port(&j, "a", "rx_packets"), sent, "every packet after the wake-up arrived\n{j}");
    assert_eq!(port(&j, "a", "rx_packets"), port(&j, "b", "tx_packets") + drops(&j, "b"), "{j}");
    assert_eq!(port(&j, "b", "tx_packets"), got, "what left b reached the receiver");
    let w = &j["workers"][0];
    assert!(w["sleeps"].as_u64().unwrap() > 10, "{w}");
    assert!(w["kick_wakeups"].as_u64().unwrap() >= 1, "a guest kick ended a sleep: {w}");
    assert_no_leak(&j);
}

/// The same with net_tap ports (rx interrupt fds wake the worker): ≤ 2 % of a core, and pings
/// cross a sleeping worker.
#[test]
fn adaptive_worker_sleeps_on_tap_rx_interrupts() {
    require_bed();
    let s = Scratch::new("idletap");
    let t = TapHosts::names("pi");
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vdev:net_tap0,iface={}", t[0]),
            "--port",
            &format!("b=vdev:net_tap1,iface={}", t[1]),
            "--xconnect",
            "a,b",
            "--cores",
            "1",
            "--idle",
            "adaptive",
        ],
    );
    let hosts = TapHosts::setup(&t);
    let idle = pm.worker_load(1, 3);
    let ping = hosts.ping(5, 0.3);
    let after = pm.worker_load(1, 2);
    let (st, _, j, text) = pm.stop();
    assert!(hosts.ok, "namespace setup failed");
    assert!(ping, "ping through a sleeping worker failed\n{text}");
    assert!(st.success());
    assert!(idle <= 0.02 && after <= 0.02, "idle {:.1} % / after {:.1} % of a core", idle * 100.0, after * 100.0);
    let w = &j["workers"][0];
    assert!(w["kick_wakeups"].as_u64().unwrap() >= 5, "rx interrupts woke the worker: {w}");
    assert_no_leak(&j);
}
