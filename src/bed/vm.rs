//! QEMU guests of `scripts/vm.sh` (a Debian kernel and a busybox initramfs, under TCG
//! here) on a switch's vhost-user sockets, and the one workload both the tests and the
//! guest benchmark run on them: a TCP bulk transfer whose every byte is checked
//! (tests/tools/tcpblast.c, in the guest image). A small QMP client drives a guest's live
//! migration from one QEMU to another ([`Qmp`]).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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
    /// The guest's MAC (default: vm.sh derives one from the address).
    pub mac: Option<&'a str>,
    /// A QMP server on this unix socket ([`Qmp`]).
    pub qmp: Option<&'a str>,
    /// Boot nothing: wait for a live migration's stream on this URI (`unix:PATH`). Give
    /// the source's options otherwise (same address, MAC, command, offloads).
    pub incoming: Option<&'a str>,
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
        if let Some(mac) = o.mac {
            c.args(["--mac", mac]);
        }
        if let Some(qmp) = o.qmp {
            c.args(["--qmp", qmp]);
        }
        if let Some(uri) = o.incoming {
            c.args(["--incoming", uri]);
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

/// A QMP connection (QEMU Machine Protocol: one JSON object per line on the unix socket
/// of `vm.sh run --qmp`): the greeting, `qmp_capabilities`, then commands, each answered
/// by `return` or `error`, with asynchronous `event`s in between (kept in `events`).
pub struct Qmp {
    stream: UnixStream,
    /// Bytes read past the last complete line.
    pending: Vec<u8>,
    /// Every event QEMU sent so far, in order.
    pub events: Vec<Value>,
}

/// How a migration ended (`query-migrate` once it reached a final status).
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// `completed`, `failed` or `cancelled`.
    pub status: String,
    /// QEMU's reason when it failed.
    pub error: Option<String>,
    /// From `migrate` to completion, ms.
    pub total_ms: Option<u64>,
    /// The guest was stopped this long (the stop-and-copy phase), ms.
    pub downtime_ms: Option<u64>,
    /// RAM bytes sent.
    pub ram_bytes: Option<u64>,
}

impl Qmp {
    /// How long one read waits before the caller looks at its deadline again.
    const POLL: Duration = Duration::from_millis(200);

    /// Connects to the QMP socket at `path` (retrying while QEMU starts and creates it,
    /// up to `limit`), reads the greeting and leaves capability negotiation mode.
    ///
    /// # Errors
    /// No QEMU listening within `limit`, or a greeting that is not QMP's.
    pub fn connect(path: &Path, limit: Duration) -> io::Result<Qmp> {
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() >= limit => return Err(io::Error::new(e.kind(), format!("QMP socket {}: {e}", path.display()))),
                // The socket appears when QEMU has started (vm.sh may still be building).
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(Self::POLL))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut q = Qmp { stream, pending: Vec::new(), events: Vec::new() };
        let deadline = Instant::now() + limit.saturating_sub(t0.elapsed()).max(Duration::from_secs(5));
        let hello = q.read_message(deadline)?.ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no QMP greeting"))?;
        if hello.get("QMP").is_none() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not a QMP greeting: {hello}")));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    /// One message, or None when `deadline` passed first.
    fn read_message(&mut self, deadline: Instant) -> io::Result<Option<Value>> {
        loop {
            if let Some(n) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=n).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("QMP: {e}: {}", String::from_utf8_lossy(&line))));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QEMU closed the QMP connection")),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs command `cmd` with `args`; returns its `return` value (events met on the way
    /// go to `events`).
    ///
    /// # Errors
    /// QEMU's `error` answer (its class and description), a broken connection, or no
    /// answer within 60 s.
    pub fn execute(&mut self, cmd: &str, args: Option<Value>) -> io::Result<Value> {
        let mut msg = json!({ "execute": cmd });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.stream.write_all(line.as_bytes())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let Some(m) = self.read_message(deadline)? else {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("QMP {cmd}: no answer in 60 s")));
            };
            if m.get("event").is_some() {
                self.events.push(m);
            } else if let Some(r) = m.get("return") {
                return Ok(r.clone());
            } else if let Some(e) = m.get("error") {
                let (class, desc) = (e["class"].as_str().unwrap_or("?"), e["desc"].as_str().unwrap_or("?"));
                return Err(io::Error::other(format!("QMP {cmd}: {class}: {desc}")));
            }
        }
    }

    /// Starts migrating this (source) QEMU's guest to the destination listening on `uri`,
    /// with a MIGRATION event at each status change.
    ///
    /// # Errors
    /// QEMU refused to start (e.g. a migration blocker: a vhost-user backend without
    /// dirty-page logging, VHOST_F_LOG_ALL).
    pub fn migrate(&mut self, uri: &str) -> io::Result<()> {
        self.execute("migrate-set-capabilities", Some(json!({ "capabilities": [{ "capability": "events", "state": true }] })))?;
        self.execute("migrate", Some(json!({ "uri": uri })))?;
        Ok(())
    }

    /// Waits until the migration reaches a final status (completed, failed or cancelled):
    /// asks `query-migrate` each time QEMU says something (a MIGRATION event at every
    /// status change) or 200 ms pass without a word.
    ///
    /// # Errors
    /// Still going after `limit` (with the last status), or the connection broke.
    pub fn wait_migration(&mut self, limit: Duration) -> io::Result<Migration> {
        let t0 = Instant::now();
        loop {
            let seen = self.events.len();
            let r = self.execute("query-migrate", None)?;
            let status = r["status"].as_str().unwrap_or("none").to_string();
            // QEMU says `completed` a moment before it has filled in the times: wait for them.
            let times_pending = status == "completed" && r["total-time"].as_u64().unwrap_or(0) == 0 && t0.elapsed() < limit;
            if matches!(status.as_str(), "completed" | "failed" | "cancelled") && !times_pending {
                return Ok(Migration {
                    status,
                    error: r["error-desc"].as_str().map(str::to_string),
                    total_ms: r["total-time"].as_u64(),
                    downtime_ms: r["downtime"].as_u64(),
                    ram_bytes: r["ram"]["transferred"].as_u64(),
                });
            }
            if t0.elapsed() >= limit {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("migration still '{status}' after {limit:?}: {r}")));
            }
            if self.events.len() == seen || times_pending {
                // Block on the socket for the next event (or the poll interval).
                if let Some(m) = self.read_message(Instant::now() + Self::POLL)? {
                    if m.get("event").is_some() {
                        self.events.push(m);
                    }
                }
            }
        }
    }

    /// Ends this QEMU (`quit`); a source stays paused after a completed migration until then.
    ///
    /// # Errors
    /// QEMU refused, or the connection broke before it answered.
    pub fn quit(mut self) -> io::Result<()> {
        match self.execute("quit", None) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
            r => r.map(|_| ()),
        }
    }
}
