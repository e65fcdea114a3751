//! The `flowvm` binary: parses the command line, runs the command, maps errors to an exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use flowvm::cli::{Cli, Command};
use flowvm::disasm;
use flowvm_vm::{Compiler, Limits, Registry};

fn registry(elements: Option<&std::path::Path>) -> Result<Registry, Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    if let Some(path) = elements {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        registry
            .add_csv(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(registry)
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Disasm { files, elements } => {
            let compiler = Compiler::new(registry(elements.as_deref())?, Limits::default());
            let mut out = std::io::stdout().lock();
            for path in files {
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                writeln!(out, "; file {}", path.display())?;
                let s = disasm::disassemble(&bytes, &compiler, &mut out)?;
                writeln!(
                    out,
                    "; {} messages, {} templates, {} rejected, {} malformed",
                    s.messages, s.templates, s.rejected, s.malformed
                )?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowvm: {e}");
            ExitCode::FAILURE
        }
    }
}
