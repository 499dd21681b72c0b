//! pmdswitch: a DPDK poll-mode data plane in Rust.
//!
//! Unsafe code lives only in `dpdk/` (the DPDK layer); everything else is safe Rust.
#![deny(unsafe_code)]

mod app;
mod bench;
mod bridge;
mod cli;
mod config;
mod control;
mod ctl;
mod dpdk;
mod gen;
mod observe;
mod plane;
mod plot;
mod preflight;
mod reload;
mod spec;
mod stats;
mod worker;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(e.kind(), DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = e.print();
                return ExitCode::from(if e.kind() == DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 });
            }
            // One line: clap's first line, then where to look.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("pmdswitch: {first} (see pmdswitch --help)");
            return ExitCode::from(2);
        }
    };

    // SIGINT/SIGTERM: graceful stop; a second one exits at once (status 130).
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, term.clone());
        let _ = signal_hook::flag::register(sig, term.clone());
    }

    let result = match cli.cmd {
        cli::Cmd::Run(a) => app::run(*a, term),
        cli::Cmd::Gen(a) => gen::cmd::run(*a, term),
        cli::Cmd::Bench(a) => bench::run(*a, term),
        cli::Cmd::Ctl { socket, command } => match ctl::client(socket, &command) {
            Ok(reply) => {
                print!("{reply}");
                Ok(())
            }
            Err(e) => Err(app::Failure::Runtime(e)),
        },
        cli::Cmd::CheckConfig { file } => match config::load(&file) {
            Ok(c) => {
                println!("{}: ok ({})", file.display(), c.summary());
                Ok(())
            }
            Err(errs) => {
                for e in &errs {
                    eprintln!("pmdswitch: {e}");
                }
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("pmdswitch: {}", f.message());
            ExitCode::from(f.exit_code() as u8)
        }
    }
}
