//! Child processes of a test bed: their output collected line by line on threads of
//! their own (so a wait never blocks on a full pipe), a line to their stdin, signals,
//! and a stop that is polite first and final after a time-out.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lines a child wrote on one stream so far.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Collects `r` on a thread until it closes.
    pub fn collect(r: impl std::io::Read + Send + 'static) -> Lines {
        let l = Lines::default();
        let c = l.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                c.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        l
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Lines seen so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text of the lines from index `from` on.
    pub fn since(&self, from: usize) -> String {
        let l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.get(from..).map(|s| s.join("\n")).unwrap_or_default()
    }

    /// Lines that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `n` lines contain `needle`; false after `timeout`.
    pub fn wait_for(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.count(needle) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A child process, stopped (SIGINT, then SIGKILL after 5 s) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub out: Lines,
    pub err: Lines,
    /// Where [`Proc::save`] writes the output (none: kept in memory only).
    log: Option<PathBuf>,
}

impl Proc {
    /// Starts `cmd` with stdin piped and stdout/stderr collected.
    ///
    /// # Errors
    /// One line naming the program when it cannot be started.
    pub fn spawn(name: &str, cmd: &mut Command, log: Option<PathBuf>) -> Result<Proc, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let out = child.stdout.take().map(Lines::collect).unwrap_or_default();
        let err = child.stderr.take().map(Lines::collect).unwrap_or_default();
        Ok(Proc { name: name.into(), child, out, err, log })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything it wrote: stdout, then stderr.
    pub fn text(&self) -> String {
        let (o, e) = (self.out.text(), self.err.text());
        if e.is_empty() {
            o
        } else {
            format!("{o}\n{e}")
        }
    }

    /// Waits until a line of its stdout contains `needle`.
    ///
    /// # Errors
    /// It exited first, or `timeout` passed; the message names where its log is.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.out.count(needle) > 0 {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(20)); // let the readers drain
                return Err(format!("{} exited ({st}) before it was ready; its log: {}", self.name, self.save()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{} was not ready after {:?}; its log: {}", self.name, timeout, self.save()))
    }

    /// A line to its stdin (an interactive program's prompt).
    pub fn say(&mut self, line: &str) {
        if let Some(i) = self.child.stdin.as_mut() {
            let _ = writeln!(i, "{line}");
            let _ = i.flush();
        }
    }

    /// Closes its stdin.
    pub fn close_stdin(&mut self) {
        self.child.stdin = None;
    }

    /// Sends signal `sig` (a number; kill(1), so that no unsafe is needed here).
    pub fn signal(&self, sig: i32) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).stderr(Stdio::null()).status();
    }

    /// Waits for it to exit; kills it after `timeout`. Returns how it exited (None:
    /// killed), and saves its output.
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = wait_timeout(&mut self.child, timeout);
        if st.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        std::thread::sleep(Duration::from_millis(20)); // let the readers drain
        self.save();
        st
    }

    /// Waits for exit like [`Proc::finish`], passing SIGINT on as soon as `term` is set.
    pub fn finish_unless(&mut self, timeout: Duration, term: &AtomicBool) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if term.load(Ordering::SeqCst) {
                self.signal(libc::SIGINT);
                return self.finish(Duration::from_secs(10));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.finish(Duration::ZERO)
    }

    /// Writes its output to its log file (if it has one); returns where.
    pub fn save(&self) -> String {
        match &self.log {
            Some(p) => {
                let _ = std::fs::write(p, self.text() + "\n");
                p.display().to_string()
            }
            None => "(in memory)".into(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGINT);
            self.finish(Duration::from_secs(5));
        }
    }
}

/// Waits up to `t` for `c` to exit.
pub fn wait_timeout(c: &mut Child, t: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if start.elapsed() >= t {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
