//! IPFIX (RFC 7011) template compiler and record decoder.
//!
//! ```text
//! bytes ─► Message ─► Sets ─┬─► (Options) Template Set ─► Compiler::compile ─► Arc<Program>
//!                           └─► Data Set ─► Columns::run(Program) ─► flush ─► RecordBatch
//! ```
//!
//! A template is compiled once into a [`Program`] of small instructions (`JNMB`, `NR`, `RIP4`,
//! `RUI32`, `ADV`, `JMP`, `END`, ...) that prints as a listing. [`Columns`] runs a program over
//! each Data Set: record at a time by interpreting the instructions, or op at a time across all
//! records of the Set. Both fill the same Arrow columns.
//!
//! Guarantees: no input can make this crate panic, allocate beyond [`Limits`], or loop without
//! consuming bytes. A Data Set is checked whole before anything is appended, so a malformed Set
//! adds no rows. This crate never reads a clock, a file or a socket; callers pass bytes.
#![warn(missing_docs)]

pub mod compile;
pub mod error;
pub mod exec;
pub mod ie;
pub mod op;
pub mod program;
pub mod wire;

pub use compile::{Compiler, Limits};
pub use error::{CompileError, CompileErrorKind, DecodeError, DecodeErrorKind};
pub use exec::{Columns, Mode, RunStats, SetShape, Spares};
pub use ie::registry::Registry;
pub use program::Program;
