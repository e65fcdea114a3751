//! `collect_packet`: see [`flowvm_fuzz::oracles::collect_packet`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::collect_packet::check(data));
