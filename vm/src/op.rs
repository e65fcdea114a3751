//! The instruction set of the decoder VM.
//!
//! Names follow the abstract-machine note flowvm started from: `JNMB` (jump if no more bytes for
//! a record), `NR` (new record), `R*` (read a field into a column), `ADV` (commit the record),
//! `JMP`, `END`. Every read names its column; reads whose Field Length is shorter than the
//! type's (reduced-size encoding, RFC 7011 §6.2) carry that length.

use std::fmt;

/// One instruction. `Copy` and at most 8 bytes (asserted in a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Jump to `target` if fewer bytes remain than the shortest record: the rest is padding
    /// (RFC 7011 §3.3.1).
    Jnmb {
        /// Index of the instruction to jump to.
        target: u16,
    },
    /// Begin a new record.
    Nr,
    /// Commit the record: one row added to every column.
    Adv,
    /// Jump to `target`.
    Jmp {
        /// Index of the instruction to jump to.
        target: u16,
    },
    /// Stop.
    End,
    /// Read an unsigned8 (§6.1.1).
    Rui8 {
        /// Destination column.
        col: u16,
    },
    /// Read an unsigned16 from `len` octets (§6.1.1, §6.2).
    Rui16 {
        /// Destination column.
        col: u16,
        /// Octets on the wire, 1..=2.
        len: u8,
    },
    /// Read an unsigned32 from `len` octets.
    Rui32 {
        /// Destination column.
        col: u16,
        /// Octets on the wire, 1..=4.
        len: u8,
    },
    /// Read an unsigned64 from `len` octets.
    Rui64 {
        /// Destination column.
        col: u16,
        /// Octets on the wire, 1..=8.
        len: u8,
    },
    /// Read a signed8 (§6.1.2).
    Rsi8 {
        /// Destination column.
        col: u16,
    },
    /// Read a signed16 from `len` octets, sign-extended (§6.2).
    Rsi16 {
        /// Destination column.
        col: u16,
        /// Octets on the wire, 1..=2.
        len: u8,
    },
    /// Read a signed32 from `len` octets, sign-extended.
    Rsi32 {
        /// Destination column.
        col: u16,
        /// Octets on the wire, 1..=4.
        len: u8,
    },
    /// Read a signed64 from `len` octets, sign-extended.
    Rsi64 {
        /// Destination column.
        col: u16,
        /// Octets on the wire, 1..=8.
        len: u8,
    },
    /// Read a float32 (§6.1.3).
    Rf32 {
        /// Destination column.
        col: u16,
    },
    /// Read a float64 (§6.1.3), from 8 octets or, reduced, from a float32 in 4 (§6.2).
    Rf64 {
        /// Destination column.
        col: u16,
        /// Octets on the wire, 4 or 8.
        len: u8,
    },
    /// Read a boolean (§6.1.5): 1 true, 2 false, anything else null.
    Rbool {
        /// Destination column.
        col: u16,
    },
    /// Read a macAddress (§6.1.4).
    Rmac {
        /// Destination column.
        col: u16,
    },
    /// Read an ipv4Address (§6.1.7).
    Rip4 {
        /// Destination column.
        col: u16,
    },
    /// Read an ipv6Address (§6.1.8).
    Rip6 {
        /// Destination column.
        col: u16,
    },
    /// Read a dateTimeSeconds (§6.1.7).
    Rdts {
        /// Destination column.
        col: u16,
    },
    /// Read a dateTimeMilliseconds (§6.1.8).
    Rdtms {
        /// Destination column.
        col: u16,
    },
    /// Read a dateTimeMicroseconds in NTP format (§6.1.9).
    Rdtus {
        /// Destination column.
        col: u16,
    },
    /// Read a dateTimeNanoseconds in NTP format (§6.1.10).
    Rdtns {
        /// Destination column.
        col: u16,
    },
    /// Read a fixed-length string (§6.1.6); trailing NUL octets are dropped.
    Rstr {
        /// Destination column.
        col: u16,
        /// Octets on the wire.
        len: u16,
    },
    /// Read a fixed-length octetArray (§6.1.1), or an RFC 6313 list kept raw.
    Roct {
        /// Destination column.
        col: u16,
        /// Octets on the wire.
        len: u16,
    },
    /// Read a variable-length string (§7).
    Rvstr {
        /// Destination column.
        col: u16,
    },
    /// Read a variable-length octetArray (§7), or an RFC 6313 list kept raw.
    Rvoct {
        /// Destination column.
        col: u16,
    },
    /// Skip a fixed-length field that is not kept.
    Skip {
        /// Octets to skip.
        len: u16,
    },
    /// Skip a variable-length field that is not kept.
    Skipv,
}

impl Op {
    /// The mnemonic of the listing.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Self::Jnmb { .. } => "JNMB",
            Self::Nr => "NR",
            Self::Adv => "ADV",
            Self::Jmp { .. } => "JMP",
            Self::End => "END",
            Self::Rui8 { .. } => "RUI8",
            Self::Rui16 { .. } => "RUI16",
            Self::Rui32 { .. } => "RUI32",
            Self::Rui64 { .. } => "RUI64",
            Self::Rsi8 { .. } => "RSI8",
            Self::Rsi16 { .. } => "RSI16",
            Self::Rsi32 { .. } => "RSI32",
            Self::Rsi64 { .. } => "RSI64",
            Self::Rf32 { .. } => "RF32",
            Self::Rf64 { .. } => "RF64",
            Self::Rbool { .. } => "RBOOL",
            Self::Rmac { .. } => "RMAC",
            Self::Rip4 { .. } => "RIP4",
            Self::Rip6 { .. } => "RIP6",
            Self::Rdts { .. } => "RDTS",
            Self::Rdtms { .. } => "RDTMS",
            Self::Rdtus { .. } => "RDTUS",
            Self::Rdtns { .. } => "RDTNS",
            Self::Rstr { .. } => "RSTR",
            Self::Roct { .. } => "ROCT",
            Self::Rvstr { .. } => "RVSTR",
            Self::Rvoct { .. } => "RVOCT",
            Self::Skip { .. } => "SKIP",
            Self::Skipv => "SKIPV",
        }
    }

    /// Octets the instruction consumes: `Some(n)` for fixed-length reads and skips, `Some(0)`
    /// for control instructions, `None` for variable-length fields.
    pub fn wire_len(self) -> Option<usize> {
        Some(match self {
            Self::Jnmb { .. } | Self::Nr | Self::Adv | Self::Jmp { .. } | Self::End => 0,
            Self::Rui8 { .. } | Self::Rsi8 { .. } | Self::Rbool { .. } => 1,
            Self::Rui16 { len, .. } | Self::Rui32 { len, .. } | Self::Rui64 { len, .. } => {
                usize::from(len)
            }
            Self::Rsi16 { len, .. } | Self::Rsi32 { len, .. } | Self::Rsi64 { len, .. } => {
                usize::from(len)
            }
            Self::Rf64 { len, .. } => usize::from(len),
            Self::Rf32 { .. } | Self::Rip4 { .. } | Self::Rdts { .. } => 4,
            Self::Rmac { .. } => 6,
            Self::Rdtms { .. } | Self::Rdtus { .. } | Self::Rdtns { .. } => 8,
            Self::Rip6 { .. } => 16,
            Self::Rstr { len, .. } | Self::Roct { len, .. } | Self::Skip { len } => {
                usize::from(len)
            }
            Self::Rvstr { .. } | Self::Rvoct { .. } | Self::Skipv => return None,
        })
    }

    /// The column the instruction writes, if it writes one.
    pub fn column(self) -> Option<u16> {
        match self {
            Self::Rui8 { col }
            | Self::Rui16 { col, .. }
            | Self::Rui32 { col, .. }
            | Self::Rui64 { col, .. }
            | Self::Rsi8 { col }
            | Self::Rsi16 { col, .. }
            | Self::Rsi32 { col, .. }
            | Self::Rsi64 { col, .. }
            | Self::Rf32 { col }
            | Self::Rf64 { col, .. }
            | Self::Rbool { col }
            | Self::Rmac { col }
            | Self::Rip4 { col }
            | Self::Rip6 { col }
            | Self::Rdts { col }
            | Self::Rdtms { col }
            | Self::Rdtus { col }
            | Self::Rdtns { col }
            | Self::Rstr { col, .. }
            | Self::Roct { col, .. }
            | Self::Rvstr { col }
            | Self::Rvoct { col } => Some(col),
            Self::Jnmb { .. } | Self::Nr | Self::Adv | Self::Jmp { .. } | Self::End => None,
            Self::Skip { .. } | Self::Skipv => None,
        }
    }

    /// The natural length of a reduced-size read, when `len` is below it.
    fn reduced_len(self) -> Option<u8> {
        let (len, natural) = match self {
            Self::Rui16 { len, .. } | Self::Rsi16 { len, .. } => (len, 2),
            Self::Rui32 { len, .. } | Self::Rsi32 { len, .. } => (len, 4),
            Self::Rui64 { len, .. } | Self::Rsi64 { len, .. } | Self::Rf64 { len, .. } => (len, 8),
            _ => return None,
        };
        (len < natural).then_some(len)
    }
}

/// Prints the operands: `JNMB 8` (1-based targets, as listed), `RUI64 c3/4` (column 3 from a
/// reduced 4 octets), `RSTR c1/32`, `SKIP 4`.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.mnemonic();
        match *self {
            Self::Jnmb { target } | Self::Jmp { target } => {
                write!(f, "{m} {}", u32::from(target) + 1)
            }
            Self::Skip { len } => write!(f, "{m} {len}"),
            Self::Rstr { col, len } | Self::Roct { col, len } => write!(f, "{m} c{col}/{len}"),
            op => match (op.column(), op.reduced_len()) {
                (Some(col), Some(len)) => write!(f, "{m} c{col}/{len}"),
                (Some(col), None) => write!(f, "{m} c{col}"),
                (None, _) => f.write_str(m),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_is_at_most_eight_bytes() {
        assert!(size_of::<Op>() <= 8, "{}", size_of::<Op>());
    }

    #[test]
    fn prints_operands() {
        assert_eq!(Op::Jnmb { target: 7 }.to_string(), "JNMB 8");
        assert_eq!(Op::Rui64 { col: 3, len: 4 }.to_string(), "RUI64 c3/4");
        assert_eq!(Op::Rui32 { col: 3, len: 4 }.to_string(), "RUI32 c3");
        assert_eq!(Op::Rstr { col: 1, len: 32 }.to_string(), "RSTR c1/32");
        assert_eq!(Op::Skip { len: 4 }.to_string(), "SKIP 4");
        assert_eq!(Op::Adv.to_string(), "ADV");
    }
}
