//! `dissect_packet`: see [`flowvm_fuzz::oracles::dissect_packet`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::dissect_packet::check(data));
