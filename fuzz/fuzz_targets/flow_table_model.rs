//! `flow_table_model`: see [`flowvm_fuzz::oracles::flow_table_model`] for the input and the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowvm_fuzz::oracles::flow_table_model::check(data));
