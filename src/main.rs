//! The `pmdswitch` binary: parses the command line and hands it to one command. The
//! commands (`cmd/`) are leaves over the library: nothing imports them.

mod cmd;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};

use pmdswitch::bed::duts;
use pmdswitch::cli::{Cli, Cmd};
use pmdswitch::control::protocol;

fn main() -> ExitCode {
    // `ctl --help` lists the control commands from the protocol's own table.
    // `bench --help` lists the DUTs from the bench's own table.
    let command = Cli::command()
        .mut_subcommand("ctl", |c| c.after_help(format!("Commands:\n{}", protocol::help())))
        .mut_subcommand("bench", |c| c.after_help(format!("DUTs (--dut, --compare):\n{}", duts::help())));
    let cli = match command.try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
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
        Cmd::Run(a) => cmd::run::main(*a, term),
        Cmd::Gen(a) => cmd::gen::main(*a, term),
        Cmd::Bench(a) => cmd::bench::main(*a, term),
        Cmd::Ctl { socket, command } => cmd::ctl::main(socket, &command),
        Cmd::CheckConfig { file } => cmd::check_config::main(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            for line in f.message().lines() {
                eprintln!("pmdswitch: {line}");
            }
            ExitCode::from(f.exit_code() as u8)
        }
    }
}
