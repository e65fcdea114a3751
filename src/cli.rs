//! The command line (`flowvm --help`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// IPFIX collector and exporter: templates compiled to bytecode, flows archived as Parquet.
#[derive(Debug, Parser)]
#[command(name = "flowvm", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the compiled program of every template in IPFIX files (RFC 5655: concatenated
    /// IPFIX Messages).
    Disasm {
        /// IPFIX files to read.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Extra Information Elements (CSV: pen,id,name,data_type,data_semantics,units,status).
        #[arg(long, value_name = "CSV")]
        elements: Option<PathBuf>,
    },
}
