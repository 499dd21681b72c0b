//! `pmdswitch ctl`: one request to a running switch's control socket, its reply printed.

use std::path::PathBuf;

use pmdswitch::control::client;
use pmdswitch::startup::Failure;

pub fn main(socket: Option<PathBuf>, command: &[String]) -> Result<(), Failure> {
    let reply = client::request(socket, command).map_err(Failure::Runtime)?;
    print!("{reply}");
    Ok(())
}
