//! Debian's `dpdk-testpmd` as a peer: with virtio-user ports it stands where a VM stands
//! (the test bed's generator and sink), interactive on stdin so that it can be started,
//! stopped and read while it runs.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::proc::Proc;

/// Port counters as testpmd's (virtio-user, the "NIC") side reports them.
#[derive(Debug, Default, Clone, Copy)]
pub struct NicStats {
    pub rx: u64,
    pub tx: u64,
}

/// An interactive dpdk-testpmd.
pub struct Testpmd {
    prefix: String,
    pub proc: Proc,
}

impl std::ops::Deref for Testpmd {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl Testpmd {
    /// `vdevs` are full `--vdev` values; `fwd` a forward mode (io, txonly, rxonly). Both
    /// testpmd lcores run on `cpu`, leaving the other core to the device under test.
    pub fn start(prefix: &str, vdevs: &[String], fwd: &str, cpu: usize, extra: &[&str]) -> Testpmd {
        let mut eal = vec![
            format!("--lcores=0@{cpu},1@{cpu}"),
            // virtio-user shares memory by fd: one file per segment list, or traffic
            // stalls after ~85 packets ("Too many memory regions").
            "--single-file-segments".into(),
        ];
        eal.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
        let mut app = vec![format!("--forward-mode={fwd}")];
        app.extend(extra.iter().map(|x| x.to_string()));
        // Pinned: EAL control threads take the CPUs of the initial affinity that no lcore
        // uses; unpinned they would sit on the device under test's core.
        Testpmd::spawn_on(prefix, Some(cpu), &eal, &app)
    }

    /// dpdk-testpmd in interactive mode with `eal` args (plus --no-pci, the prefix,
    /// --in-memory) and `app` args (plus -i --nb-cores=1), started under `taskset -c
    /// CPU` when `pin` says so.
    ///
    /// # Panics
    /// When it does not come up within 30 s (with its output).
    pub fn spawn_on(prefix: &str, pin: Option<usize>, eal: &[String], app: &[String]) -> Testpmd {
        // stdbuf: testpmd's printf output is block-buffered on a pipe; line-buffer it so
        // `show port stats` answers arrive while it runs.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL");
        if let Some(cpu) = pin {
            cmd.args(["taskset", "-c", &cpu.to_string()]);
        }
        cmd.arg("dpdk-testpmd")
            .args(eal)
            .arg("--no-pci")
            .arg(format!("--file-prefix={prefix}"))
            .arg("--in-memory")
            .arg("--log-level=notice");
        cmd.args(["--", "-i", "--nb-cores=1"]).args(app);
        let proc = Proc::spawn("dpdk-testpmd", &mut cmd, None).expect("spawn dpdk-testpmd (run scripts/setup.sh)");
        let t = Testpmd { prefix: prefix.to_string(), proc };
        // The prompt has no newline; the link check is the last line before it.
        let up = t.out.wait_for("Checking link statuses", 1, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300));
        assert!(up, "testpmd did not start:\n{}", t.text());
        t
    }

    /// The NIC counters of every port now (`show port stats all`).
    pub fn port_stats_now(&mut self, ports: usize) -> HashMap<u16, NicStats> {
        let before = self.out.count("NIC statistics for port");
        let skip = self.out.len();
        self.cmd("show port stats all");
        // Each block ends with the Tx-pps line; wait for all of them.
        self.out.wait_for("NIC statistics for port", before + ports, Duration::from_secs(5));
        let t = std::time::Instant::now();
        loop {
            let text = self.out.since(skip);
            if text.matches("Tx-pps").count() >= ports || t.elapsed() > Duration::from_secs(5) {
                return parse_port_stats(&text);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A command line at its prompt.
    pub fn cmd(&mut self, line: &str) {
        self.proc.say(line);
    }

    /// Stops forwarding, reads the NIC counters of every port, and quits.
    pub fn finish(mut self) -> HashMap<u16, NicStats> {
        self.cmd("stop");
        std::thread::sleep(Duration::from_millis(300));
        self.cmd("show port stats all");
        std::thread::sleep(Duration::from_millis(300));
        self.cmd("quit");
        self.proc.close_stdin();
        let _ = super::proc::wait_timeout(&mut self.proc.child, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
        parse_port_stats(&self.out.text())
    }

    /// Quits without reading counters (the peer going away).
    pub fn quit(mut self) {
        self.cmd("quit");
        self.proc.close_stdin();
        if super::proc::wait_timeout(&mut self.proc.child, Duration::from_secs(10)).is_none() {
            let _ = self.proc.child.kill();
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        // testpmd leaves its EAL runtime directory behind even with --in-memory.
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// Parses the last "NIC statistics for port N" blocks of testpmd's output.
pub fn parse_port_stats(text: &str) -> HashMap<u16, NicStats> {
    let mut out = HashMap::new();
    let mut cur: Option<u16> = None;
    for line in text.lines() {
        if let Some(i) = line.find("NIC statistics for port") {
            cur = line[i + 23..].split_whitespace().next().and_then(|n| n.parse().ok());
            continue;
        }
        let Some(p) = cur else { continue };
        let num = |key: &str| -> Option<u64> {
            let i = line.find(key)?;
            line[i + key.len()..].split_whitespace().next()?.parse().ok()
        };
        if let Some(v) = num("RX-packets:") {
            out.entry(p).or_insert_with(NicStats::default).rx = v;
        }
        if let Some(v) = num("TX-packets:") {
            out.entry(p).or_insert_with(NicStats::default).tx = v;
        }
    }
    out
}
