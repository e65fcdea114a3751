//! `capture_file`: see [`flowvm_fuzz::oracles::capture_file`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::capture_file::check(data));
