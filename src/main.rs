//! The `flowvm` binary: parses the command line, runs the command, maps errors to an exit code.

use std::process::ExitCode;

use clap::Parser;
use flowvm::cli::Cli;
use flowvm::command;

fn main() -> ExitCode {
    match command::run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowvm: {e}");
            ExitCode::FAILURE
        }
    }
}
