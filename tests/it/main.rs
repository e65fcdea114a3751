//! flowvm's end-to-end tests, over loopback and real peers, in one binary (each test binary
//! links parquet and tokio again: one is much faster to build on two cores).
//!
//! Each module is one family; `common` holds the helpers they share.

mod archive_readers;
mod captures;
mod collect_more;
mod collect_signal;
mod collect_tcp;
mod collect_tls;
mod collect_udp;
mod collect_workers;
mod common;
mod crash;
mod decode_files;
mod disasm_cli;
mod export_live;
mod export_to_collect;
mod first_run;
mod fuzz_regressions;
mod hostile_memory;
mod hostile_tcp;
mod hostile_udp;
mod object_store;
mod peer_pmacct;
mod peer_python_ipfix;
mod peer_softflowd;
mod peer_tshark;
