//! What the control socket and the metrics port share: a client is served on a thread
//! of its own (at most [`MAX_CLIENTS`] at once, the rest refused at once), its request is
//! one line of at most a few KiB read against one deadline for the whole request (a
//! client sending a byte a second is cut off, not waited for byte by byte), and the
//! answer is written with a timeout. So one local client, slow or hostile, can neither
//! starve the others, grow the switch's memory, nor hold up its shutdown: the accepting
//! thread never reads, and nothing joins a client's thread.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clients served at once per endpoint; one more is answered "busy" and closed.
pub const MAX_CLIENTS: usize = 16;

/// The whole request must arrive within this (a person typing `nc` is not a client).
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

/// An answer not taken within this is dropped (the client stopped reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A stream an endpoint serves: a Unix or a TCP socket.
pub trait Conn: Read + Write + Send + 'static {
    fn read_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
    fn write_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
    fn blocking(&self) -> std::io::Result<()>;
}

// Unix and TCP streams have the same three calls under the same names.
macro_rules! conn {
    ($t:ty) => {
        impl Conn for $t {
            fn read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
                self.set_read_timeout(t)
            }
            fn write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
                self.set_write_timeout(t)
            }
            fn blocking(&self) -> std::io::Result<()> {
                self.set_nonblocking(false)
            }
        }
    };
}
conn!(std::os::unix::net::UnixStream);
conn!(std::net::TcpStream);

/// Why a request was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// More than `limit` bytes without a newline.
    TooLong,
    /// The deadline passed before the newline.
    TooSlow,
    /// The client went away, or the socket failed.
    Gone,
}

impl Refused {
    pub fn message(&self, limit: usize) -> String {
        match self {
            Refused::TooLong => format!("request longer than {limit} bytes: one command per line"),
            Refused::TooSlow => format!("request not complete within {} s: send the whole line at once", READ_DEADLINE.as_secs()),
            Refused::Gone => "connection closed".into(),
        }
    }
}

/// Reads one line (without its newline) of at most `limit` bytes, all of it within
/// `deadline` from now: each read waits only for the time left.
pub fn read_line(c: &mut impl Conn, limit: usize, deadline: Duration) -> Result<String, Refused> {
    read_until(c, limit, deadline, |b| b.iter().position(|&x| x == b'\n')).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads an HTTP request's head (its request line and headers, up to the blank line) of
/// at most `limit` bytes within `deadline`, so that nothing the client sent is left
/// unread when the answer closes the connection; returns its first line.
pub fn read_http_head(c: &mut impl Conn, limit: usize, deadline: Duration) -> Result<String, Refused> {
    let head =
        read_until(c, limit, deadline, |b| b.windows(2).position(|w| w == b"\n\n").or_else(|| b.windows(3).position(|w| w == b"\n\r\n")))?;
    let first = head.split(|&x| x == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(first).trim_end().to_string())
}

/// Reads until `end` finds where the request ends (its index: the bytes before it are
/// the request), at most `limit` bytes, all within `deadline`. A client that closes
/// early ends the request there.
fn read_until(c: &mut impl Conn, limit: usize, deadline: Duration, end: impl Fn(&[u8]) -> Option<usize>) -> Result<Vec<u8>, Refused> {
    let until = Instant::now() + deadline;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Refused::TooSlow);
        }
        c.read_timeout(Some(left)).map_err(|_| Refused::Gone)?;
        match c.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => {
                // Look again from a little before the new bytes (a terminator may straddle reads).
                let from = buf.len().saturating_sub(2);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = end(&buf[from..]) {
                    buf.truncate(from + i);
                    return if buf.len() > limit { Err(Refused::TooLong) } else { Ok(buf) };
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(Refused::TooSlow),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(Refused::Gone),
        }
        if buf.len() > limit {
            return Err(Refused::TooLong);
        }
    }
}

/// Serves `c` on a thread of its own with `serve`, unless `MAX_CLIENTS` are being
/// served: then `busy` is written (with the write timeout) and the connection closed.
/// The thread is never joined: it ends within the read deadline plus the write timeout
/// plus whatever `serve` waits for.
pub fn spawn<C: Conn>(c: C, active: &Arc<AtomicUsize>, name: &str, busy: &[u8], serve: impl FnOnce(C) + Send + 'static) {
    let _ = c.blocking();
    let _ = c.write_timeout(Some(WRITE_TIMEOUT));
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
        active.fetch_sub(1, Ordering::SeqCst);
        let mut c = c;
        let _ = c.write_all(busy);
        return;
    }
    let a = active.clone();
    let done = move || {
        a.fetch_sub(1, Ordering::SeqCst);
    };
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        serve(c);
        done();
    });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_line_within_its_limit_is_read() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"show ports --json\nrest").unwrap();
        assert_eq!(read_line(&mut b, 64, READ_DEADLINE).unwrap(), "show ports --json");
    }

    #[test]
    fn a_stream_without_newline_stops_at_the_limit() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let junk = [b'x'; 4096];
            // The reader gives up after the limit: the writes then fail, which ends this.
            for _ in 0..1024 {
                if a.write_all(&junk).is_err() {
                    break;
                }
            }
        });
        assert_eq!(read_line(&mut b, 8192, READ_DEADLINE), Err(Refused::TooLong));
        drop(b);
        t.join().unwrap();
    }

    #[test]
    fn an_http_head_is_read_to_its_blank_line() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
        a.write_all(b"Accept: */*\r\n\r\n").unwrap();
        assert_eq!(read_http_head(&mut b, 8192, READ_DEADLINE).unwrap(), "GET /metrics HTTP/1.1");
    }

    #[test]
    fn a_request_that_does_not_end_in_time_is_refused() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"show").unwrap();
        // No newline ever comes: the deadline (short here) ends the read.
        assert_eq!(read_line(&mut b, 64, Duration::from_millis(50)), Err(Refused::TooSlow));
    }

    #[test]
    fn beyond_max_clients_the_next_is_told_busy() {
        let active = Arc::new(AtomicUsize::new(MAX_CLIENTS));
        let (a, mut b) = UnixStream::pair().unwrap();
        spawn(a, &active, "t", b"busy\n", |_| panic!("not served"));
        let mut s = String::new();
        b.read_to_string(&mut s).unwrap();
        assert_eq!(s, "busy\n");
        assert_eq!(active.load(Ordering::SeqCst), MAX_CLIENTS);
    }
}
