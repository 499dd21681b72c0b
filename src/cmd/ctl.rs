//! `pmdswitch ctl`: one request to a running switch's control socket, its reply printed.

use std::path::PathBuf;

use pmdswitch::control::client;
use pmdswitch::startup::Failure;

pub fn main(socket: Option<PathBuf>, command: &[String]) -> Result<(), Failure> {
    // `route load FILE`: the switch reads the file, from its own working directory; a
    // relative path means the one the user typed it in.
    let mut command = command.to_vec();
    if let [route, load, file, ..] = command.as_mut_slice() {
        if route == "route" && load == "load" && std::path::Path::new(file.as_str()).is_relative() {
            if let Ok(cwd) = std::env::current_dir() {
                *file = cwd.join(&*file).display().to_string();
            }
        }
    }
    let reply = client::request(socket, &command).map_err(Failure::Runtime)?;
    print!("{reply}");
    Ok(())
}
