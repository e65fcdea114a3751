//! `vm_differential`: see [`flowvm_fuzz::oracles::vm_differential`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::vm_differential::check(data));
