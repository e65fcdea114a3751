//! The IPFIX wire format (RFC 7011 §3, §7, §8): Message Headers, Sets, (Options) Template
//! Records, withdrawals, and a writer for the same structures; NetFlow v9 (RFC 3954) and v5
//! packets; and the front end that tells them apart and yields the same items for each
//! ([`packet::ExportPacket`]).
//!
//! Everything here reads through [`reader::Reader`] or nom's `complete` parsers; no wire value
//! indexes a slice.
#![deny(clippy::indexing_slicing)]

pub mod header;
pub mod ids;
pub mod netflow5;
pub mod netflow9;
pub mod packet;
pub mod reader;
pub mod set;
pub mod template;
pub mod writer;

/// Version Number of IPFIX (RFC 7011 §3.1).
pub const VERSION: u16 = 0x000a;
/// Length of the Message Header.
pub const HEADER_LEN: usize = 16;
/// Length of a Set Header.
pub const SET_HEADER_LEN: usize = 4;
/// The largest Message the 16-bit Message Length can describe.
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// The Field Length that marks a variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 0xffff;
/// The Enterprise bit of an Information Element identifier (RFC 7011 §3.2).
pub const ENTERPRISE_BIT: u16 = 0x8000;
