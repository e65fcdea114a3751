//! The collector's clock: the exporter crate's `clock.rs` is the one place the workspace reads
//! it; everything else takes `now` as an argument.

pub use flowvm_exporter::clock::now;

/// Seconds since the UNIX epoch, for file names and partitions.
pub fn unix_seconds() -> i64 {
    i64::try_from(flowvm_exporter::clock::unix_nanos() / 1_000_000_000).unwrap_or(i64::MAX)
}
