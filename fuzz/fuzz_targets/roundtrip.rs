//! `roundtrip`: see [`flowvm_fuzz::oracles::roundtrip`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::roundtrip::check(data));
