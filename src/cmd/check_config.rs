//! `pmdswitch check-config FILE`: every error with its line and column, or a summary.

use std::path::Path;

use pmdswitch::startup::{config, Failure};

pub fn main(file: &Path) -> Result<(), Failure> {
    match config::load(file) {
        Ok(c) => {
            println!("{}: ok ({})", file.display(), c.summary());
            Ok(())
        }
        Err(errs) => Err(Failure::Usage(errs.join("\n"))),
    }
}
