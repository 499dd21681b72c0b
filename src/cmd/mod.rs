//! The commands: one module each, leaves of the binary. They parse and check their
//! arguments, start what they need from the library, and print; nothing imports them.

pub mod bench;
pub mod check_config;
pub mod ctl;
pub mod gen;
pub mod run;
