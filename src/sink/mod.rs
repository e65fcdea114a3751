//! Where decoded batches go: the Parquet archive.

pub mod parquet;
