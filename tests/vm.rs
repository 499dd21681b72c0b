//! QEMU guests (scripts/vm.sh: Debian kernel + busybox initramfs, TCG) on vhost-user
//! sockets of pmdswitch: real virtio-net drivers, real pings.
//!
//! The first run builds the guest image (cached under /var/cache/pmdswitch-vm).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn vm_sh() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/vm.sh"))
}

/// A guest booting in the background; its console goes to `log`.
struct Guest {
    child: Child,
    log: PathBuf,
}

impl Guest {
    fn boot(s: &Scratch, name: &str, sock: &str, server: bool, ip: &str, cmd: Option<&str>, timeout: u32) -> Guest {
        let log = s.path(&format!("{name}.console"));
        let mut c = Command::new(vm_sh());
        c.args(["run", "--sock", sock, "--ip", ip, "--timeout", &timeout.to_string(), "--log"]).arg(&log);
        if server {
            c.arg("--server");
        }
        if let Some(cmd) = cmd {
            c.args(["--cmd", cmd]);
        }
        let child = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("scripts/vm.sh");
        Guest { child, log }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the guest's result marker; returns the guest command's exit code.
    fn result(&mut self, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            let text = self.console();
            if let Some(i) = text.find("PMDS-GUEST-RESULT rc=") {
                return text[i + 21..].split_whitespace().next().and_then(|v| v.parse().ok());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_once() {
    let st = Command::new(vm_sh()).arg("build").status().expect("scripts/vm.sh build");
    assert!(st.success(), "scripts/vm.sh build failed");
}

#[test]
fn two_guests_ping_each_other_through_pmdswitch() {
    require_bed();
    build_once();
    let s = Scratch::new("vmping");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"],
    );
    let _b = Guest::boot(&s, "b", &sb, false, "198.18.0.2/24", None, 120);
    let mut a = Guest::boot(&s, "a", &sa, false, "198.18.0.1/24", Some("ping -c 5 -W 3 198.18.0.2"), 120);
    let rc = a.result(Duration::from_secs(120));
    let console = a.console();
    let (st, _, j, text) = pm.stop();
    assert_eq!(rc, Some(0), "guest ping failed:\n{console}\n{text}");
    assert!(console.contains("5 packets received") && console.contains("0% packet loss"), "{console}");
    assert!(st.success(), "{text}");
    assert!(port(&j, "a", "rx_packets") >= 5 && port(&j, "b", "rx_packets") >= 5, "{j}");
    // Kernel virtio-net drivers want interrupts: each delivery was notified.
    assert!(port(&j, "a", "guest_notifications") >= 5 && port(&j, "b", "guest_notifications") >= 5, "{j}");
    assert_no_leak(&j);
}

#[test]
fn guest_pings_resume_after_pmdswitch_restarts() {
    require_bed();
    build_once();
    let s = Scratch::new("vmrestart");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    // QEMU serves the sockets (server=on); pmdswitch connects as client and, after its
    // restart, reconnects by itself.
    let _b = Guest::boot(&s, "b", &sb, true, "198.18.0.2/24", None, 180);
    // A long ping across the restart, then a short one that must fully succeed.
    let mut a = Guest::boot(&s, "a", &sa, true, "198.18.0.1/24", Some("ping -c 40 -i 0.25 198.18.0.2; ping -c 5 -W 3 198.18.0.2"), 180);
    let args = ["--port", &format!("a=vhost-client:{sa}"), "--port", &format!("b=vhost-client:{sb}"), "--xconnect", "a,b", "--cores", "1"];
    // The guests create the sockets; wait for them before starting pmdswitch.
    let t = Instant::now();
    while !(std::path::Path::new(&sa).exists() && std::path::Path::new(&sb).exists()) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let pm = Pmds::start(&s, &args);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(60)), "{}", pm.out.text());
    // Let some replies through, then restart pmdswitch while the guest keeps pinging.
    let t = Instant::now();
    while a.console().matches("bytes from 198.18.0.2").count() < 3 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = a.console().matches("bytes from 198.18.0.2").count();
    let (st, _, _, text) = pm.stop();
    assert!(st.success(), "{text}");
    let pm = Pmds::start(&s, &args);
    assert!(pm.out.wait_for("attached", 2, Duration::from_secs(30)), "no reconnect:\n{}", pm.out.text());
    let rc = a.result(Duration::from_secs(120));
    let console = a.console();
    let (st, _, j, text) = pm.stop();
    assert!(before >= 3, "no replies before the restart:\n{console}");
    assert!(console.matches("bytes from 198.18.0.2").count() > before + 5, "pings did not resume:\n{console}");
    assert_eq!(rc, Some(0), "the final ping after the restart failed:\n{console}");
    assert!(st.success(), "{text}");
    assert_no_leak(&j);
}

#[test]
fn guest_driver_reset_and_rebind_keep_forwarding() {
    require_bed();
    build_once();
    let s = Scratch::new("vmreset");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &["--port", &format!("a=vhost-server:{sa}"), "--port", &format!("b=vhost-server:{sb}"), "--xconnect", "a,b", "--cores", "1"],
    );
    let _b = Guest::boot(&s, "b", &sb, false, "198.18.0.2/24", None, 180);
    // Interface down/up, then the virtio device unbound from and rebound to virtio_net
    // (a full device reset: the backend sees the device destroyed and created again).
    let cmd = "ping -c 2 -W 3 198.18.0.2 && ip link set eth0 down && sleep 1 && ip link set eth0 up && sleep 1 && \
               ping -c 2 -W 3 198.18.0.2 && d=$(basename $(readlink /sys/class/net/eth0/device)) && \
               echo $d > /sys/bus/virtio/drivers/virtio_net/unbind && sleep 1 && echo $d > /sys/bus/virtio/drivers/virtio_net/bind && \
               sleep 1 && ip addr add 198.18.0.1/24 dev eth0 && ip link set eth0 up && sleep 1 && ping -c 3 -W 3 198.18.0.2";
    let mut a = Guest::boot(&s, "a", &sa, false, "198.18.0.1/24", Some(cmd), 180);
    let rc = a.result(Duration::from_secs(150));
    let console = a.console();
    let (st, _, j, text) = pm.stop();
    assert_eq!(rc, Some(0), "guest lost connectivity across reset/rebind:\n{console}\n{text}");
    assert!(st.success(), "{text}");
    assert!(text.matches("port a: vhost device attached").count() >= 2, "the rebind should re-create the device:\n{text}");
    assert_no_leak(&j);
}
