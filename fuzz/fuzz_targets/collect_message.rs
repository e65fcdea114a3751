//! `collect_message`: see [`flowvm_fuzz::oracles::collect_message`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::collect_message::check(data));
