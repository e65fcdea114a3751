//! The oracles of the fuzz targets, one module per target, each with `check(data)`: it reads its
//! input from the fuzzer's octets and panics (an assertion) when flowvm breaks the oracle.
//!
//! This file is compiled twice: into the fuzz crate (`fuzz/src/lib.rs`), which the cargo-fuzz
//! targets call, and, through `#[path]`, into the workspace test `tests/it/fuzz_regressions.rs`,
//! which replays every input kept in `testdata/regressions/<target>/`. One oracle, two callers,
//! so a crash found by the fuzzer is replayed by `cargo test` exactly as the fuzzer ran it.
//!
//! Structured inputs are read with `arbitrary` as `libfuzzer-sys` reads a typed
//! `fuzz_target!`: `Arbitrary::arbitrary_take_rest` over the whole input.

pub mod capture_file;
pub mod collect_message;
pub mod collect_packet;
pub mod compile_template;
pub mod dissect_packet;
pub mod flow_table_model;
pub mod roundtrip;
pub mod vm_differential;

/// The reference decoder of `vm/tests/reference.rs`, shared rather than copied.
#[path = "../../../vm/tests/reference/decoder.rs"]
mod reference;

/// An oracle: panics when flowvm breaks it on this input.
pub type Oracle = fn(&[u8]);

/// Every target, by the name of its fuzz target and of its `testdata/regressions/` directory.
pub const TARGETS: [(&str, Oracle); 8] = [
    ("collect_message", collect_message::check),
    ("collect_packet", collect_packet::check),
    ("compile_template", compile_template::check),
    ("vm_differential", vm_differential::check),
    ("roundtrip", roundtrip::check),
    ("dissect_packet", dissect_packet::check),
    ("flow_table_model", flow_table_model::check),
    ("capture_file", capture_file::check),
];

/// Reads a structured input the way `libfuzzer-sys` does for a typed target; `None` when the
/// octets do not make one (the fuzzer then has nothing to run).
fn structured<'a, T: arbitrary::Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(arbitrary::Unstructured::new(data)).ok()
}
