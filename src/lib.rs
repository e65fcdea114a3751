//! flowvm: an IPFIX (RFC 7011) collector that compiles every template into a small bytecode
//! program and runs it over the Data Sets straight into Arrow columns.
//!
//! This crate is the command line and the edges around the pure `flowvm-vm` core: reading
//! files, printing programs. The binary in `main.rs` only parses arguments and maps errors to
//! an exit code.

pub mod cli;
pub mod disasm;
