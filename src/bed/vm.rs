//! QEMU guests of `scripts/vm.sh` (a Debian kernel and a busybox initramfs, under TCG
//! here) on a switch's vhost-user sockets, and the one workload both the tests and the
//! guest benchmark run on them: a TCP bulk transfer whose every byte is checked
//! (tests/tools/tcpblast.c, in the guest image).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::scratch::Scratch;

fn vm_sh() -> PathBuf {
    super::share_dir().join("scripts/vm.sh")
}

/// Builds the guest image once (cached; a second call does nothing).
///
/// # Panics
/// When the build fails (the test bed cannot run guests).
pub fn build_once() {
    let st = Command::new(vm_sh()).arg("build").status().expect("scripts/vm.sh build");
    assert!(st.success(), "scripts/vm.sh build failed");
}

/// How a guest is booted.
#[derive(Debug, Clone, Default)]
pub struct GuestOpts<'a> {
    /// QEMU serves the socket (the switch connects as vhost-client).
    pub server: bool,
    /// The guest command (default: idle until killed).
    pub cmd: Option<&'a str>,
    /// Seconds before vm.sh kills the guest.
    pub timeout: u32,
    /// The guest's virtio-net refuses checksum-offloaded and TSO frames.
    pub no_offloads: bool,
    /// A default route via this address (a router).
    pub gw: Option<&'a str>,
}

/// A guest booting in the background; its console goes to a file in the scratch dir.
pub struct Guest {
    child: Child,
    log: PathBuf,
}

impl Guest {
    /// Boots guest `name` on socket `sock` with address `ip` (inside 198.18.0.0/15).
    ///
    /// # Panics
    /// When vm.sh cannot be started.
    pub fn boot(s: &Scratch, name: &str, sock: &str, ip: &str, o: &GuestOpts<'_>) -> Guest {
        let log = s.path(&format!("{name}.console"));
        let mut c = Command::new(vm_sh());
        c.args(["run", "--sock", sock, "--ip", ip, "--timeout", &o.timeout.to_string(), "--log"]).arg(&log);
        if o.server {
            c.arg("--server");
        }
        if o.no_offloads {
            c.arg("--no-guest-offloads");
        }
        if let Some(cmd) = o.cmd {
            c.args(["--cmd", cmd]);
        }
        if let Some(gw) = o.gw {
            c.args(["--gw", gw]);
        }
        let child = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("scripts/vm.sh");
        Guest { child, log }
    }

    /// Everything on its console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the guest's result marker; returns the guest command's exit code.
    pub fn result(&mut self, timeout: Duration) -> Option<i32> {
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

    /// The words after the last console line starting with `marker`.
    pub fn marked(&self, marker: &str) -> Option<Vec<String>> {
        let text = self.console();
        let line = text.lines().rev().find_map(|l| l.trim_end_matches('\r').strip_prefix(marker).map(str::to_string))?;
        Some(line.split_whitespace().map(str::to_string).collect())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TCP port of the transfer.
pub const TCP_PORT: u16 = 5001;

/// The seed of the transfer's byte stream (both ends make the same one).
const SEED: u32 = 2544;

/// The receiving guest's command: tcpblast (tests/tools/tcpblast.c) accepts one
/// connection and checks every byte; its `PMDS-BLAST` line says how many came, how fast
/// (first byte to EOF) and how many were wrong; it fails unless all were right.
pub fn tcp_receiver_cmd() -> String {
    format!("tcpblast recv {TCP_PORT} {SEED}")
}

/// The receiver's command line for a host-side end (e.g. in a network namespace behind
/// a tap): the tcpblast that `scripts/vm.sh build` left in its cache.
pub fn host_receiver() -> Vec<String> {
    let cache = std::env::var("PMDSWITCH_VM_CACHE").unwrap_or_else(|_| "/var/cache/pmdswitch-vm".into());
    vec![format!("{cache}/tcpblast"), "recv".into(), TCP_PORT.to_string(), SEED.to_string()]
}

/// The sending guest's command: `mb` MiB of tcpblast's stream to `to` (it retries while
/// the receiver is not listening yet).
pub fn tcp_sender_cmd(to: &str, mb: u32) -> String {
    format!("tcpblast send {to} {TCP_PORT} {mb} {SEED}")
}

/// The receiver's report of one transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub bytes: u64,
    pub secs: f64,
    pub mbps: f64,
    /// Bytes that differed from what was sent.
    pub bad: u64,
}

impl Transfer {
    /// From the receiving guest's `PMDS-BLAST` line (None when it has none).
    pub fn of(receiver: &Guest) -> Option<Transfer> {
        let w = receiver.marked("PMDS-BLAST ")?;
        let get = |k: &str| w.iter().find_map(|x| x.strip_prefix(k)).and_then(|v| v.parse::<f64>().ok());
        Some(Transfer { bytes: get("bytes=")? as u64, secs: get("secs=")?, mbps: get("mbps=")?, bad: get("bad=")? as u64 })
    }

    /// Every byte of `mb` MiB arrived, none wrong.
    pub fn intact(&self, mb: u32) -> bool {
        self.bad == 0 && self.bytes == u64::from(mb) << 20
    }
}
