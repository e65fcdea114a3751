//! The Metering and Exporting Processes of flowvm (RFC 7011 §2): a flow meter in the spirit of
//! VPP's flowprobe plugin and an IPFIX exporter in the spirit of VPP's ipfix-export.
//!
//! ```text
//! capture (pcap file | AF_PACKET) ─► dissect ─► FlowTable::observe(packet, now)
//!                                                   │ active / passive / forced expiry
//!                                                   ▼
//!                        FlowRecord ─► ExportingProcess (templates, MTU packing, sequence
//!                                        numbers, flush) ─► Transport (UDP | TCP)
//! ```
//!
//! Capture time drives metering: flow timestamps and timers use packet timestamps, so replaying
//! a pcap always gives the same flows. Only `clock.rs` reads a clock (live capture, pacing and
//! the Export Time of each Message).
#![warn(missing_docs)]

pub mod capture;
pub mod clock;
pub mod dissect;
pub mod export;
pub mod flow;
pub mod run;
