//! The fuzz targets' oracles, for `cargo fuzz` (see `fuzz/run-all` and the README's "Fuzzing").
//! The same oracles replay kept inputs in the workspace test `tests/it/fuzz_regressions.rs`.

pub mod oracles;
