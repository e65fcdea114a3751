//! flowvm: an IPFIX (RFC 7011) collector that compiles every template into a small bytecode
//! program and runs it over the Data Sets straight into Arrow columns, archived as Parquet.
//!
//! ```text
//! UDP/TCP ─► TransportSession ─► Decoder (templates, pending, sequence) ─► batches ─► archive
//! ```
//!
//! This crate holds the collector and the command line around the pure `flowvm-vm` core. The
//! decoder core (`collector::decode`) is synchronous and takes `now` as an argument; sockets,
//! threads and the clock live at the edges (`clock.rs`, the listeners, the archive thread).

pub mod cli;
pub mod clock;
pub mod collector;
pub mod command;
pub mod config;
pub mod disasm;
pub mod export;
pub mod offline;
pub mod replay;
pub mod sink;
pub mod telemetry;
pub mod tls;
