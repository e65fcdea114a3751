//! The Metering Process: flow keys by record flags and variant as flowprobe builds them, the
//! flow table with its active and passive timers, and the records it hands to export.

pub mod end_reason;
pub mod expiry;
pub mod key;
pub mod map;
pub mod record;
pub mod table;

pub use end_reason::FlowEndReason;
pub use key::{FlowKey, RecordFlags, Variant};
pub use record::FlowRecord;
pub use table::{FlowTable, TableStats, Timers};
