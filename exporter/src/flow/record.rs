//! What the flow table hands to export: one Flow Record.

use crate::flow::{FlowEndReason, FlowKey};

/// One Flow Record: the key, and the packets counted since the flow's previous record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// The flow.
    pub key: FlowKey,
    /// Capture time of the first packet this record counts, ns since the UNIX epoch.
    pub start_ns: u64,
    /// Capture time of the last packet this record counts.
    pub end_ns: u64,
    /// Packets counted (packetDeltaCount).
    pub packets: u64,
    /// Octets counted (octetDeltaCount).
    pub octets: u64,
    /// OR of the TCP flags of the packets counted.
    pub tcp_flags: u16,
    /// Why it was exported.
    pub end_reason: FlowEndReason,
}
