//! The client side of the control socket: one request line, one reply (what `pmdswitch
//! ctl` and the test bed's counter readers send).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Where control sockets live by default (one per EAL file prefix, `PREFIX.ctl`).
pub const DEFAULT_DIR: &str = "/var/run/pmdswitch";

/// `pmdswitch ctl`: sends `command`, prints the reply; Err carries a one-line message.
pub fn request(socket: Option<PathBuf>, command: &[String]) -> Result<String, String> {
    let path = match socket {
        Some(p) => p,
        None => {
            let found: Vec<PathBuf> = std::fs::read_dir(DEFAULT_DIR)
                .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "ctl")).collect())
                .unwrap_or_default();
            match found.as_slice() {
                [one] => one.clone(),
                [] => return Err(format!("no control socket in {DEFAULT_DIR}: is pmdswitch running? (or give --socket PATH)")),
                _ => return Err(format!("{} control sockets in {DEFAULT_DIR}: pick one with --socket PATH", found.len())),
            }
        }
    };
    let mut s = UnixStream::connect(&path).map_err(|e| format!("cannot connect to {}: {e}: is pmdswitch running?", path.display()))?;
    writeln!(s, "{}", command.join(" ")).map_err(|e| format!("send: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| format!("read: {e}"))?;
    match reply.strip_prefix("error: ") {
        Some(e) => Err(e.trim_end().to_string()),
        None => Ok(reply),
    }
}
