//! A hostile vhost-user frontend (tests/tools/hostile_frontend.py: malformed sizes,
//! unknown requests, missing and bogus fds, memory tables that do not cover the rings,
//! absurd ring sizes, garbage, connection storms) must neither crash pmdswitch nor
//! disturb its other ports.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

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
    std::thread::sleep(Duration::from_millis(300));
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
