//! `compile_template`: see [`flowvm_fuzz::oracles::compile_template`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::compile_template::check(data));
