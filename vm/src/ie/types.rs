//! Abstract data types of RFC 7012 §3.1 and the Field Lengths each permits (RFC 7011 §6.2, §7).
//!
//! This file is also compiled into `build.rs`, which uses [`AbstractDataType::parse`] to turn the
//! registry CSV into code; it therefore depends on nothing else in the crate.

use std::fmt;

/// An abstract data type of RFC 7012 §3.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbstractDataType {
    /// octetArray.
    OctetArray,
    /// unsigned8.
    Unsigned8,
    /// unsigned16.
    Unsigned16,
    /// unsigned32.
    Unsigned32,
    /// unsigned64.
    Unsigned64,
    /// signed8.
    Signed8,
    /// signed16.
    Signed16,
    /// signed32.
    Signed32,
    /// signed64.
    Signed64,
    /// float32.
    Float32,
    /// float64.
    Float64,
    /// boolean: 1 is true, 2 is false (RFC 7011 §6.1.5).
    Boolean,
    /// macAddress.
    MacAddress,
    /// string: UTF-8 (RFC 7011 §6.1.6).
    String,
    /// dateTimeSeconds.
    DateTimeSeconds,
    /// dateTimeMilliseconds.
    DateTimeMilliseconds,
    /// dateTimeMicroseconds, NTP format (RFC 7011 §6.1.9).
    DateTimeMicroseconds,
    /// dateTimeNanoseconds, NTP format (RFC 7011 §6.1.10).
    DateTimeNanoseconds,
    /// ipv4Address.
    Ipv4Address,
    /// ipv6Address.
    Ipv6Address,
    /// basicList (RFC 6313).
    BasicList,
    /// subTemplateList (RFC 6313).
    SubTemplateList,
    /// subTemplateMultiList (RFC 6313).
    SubTemplateMultiList,
}

/// Every type with its name in the IANA registry.
const NAMES: [(AbstractDataType, &str); 23] = [
    (AbstractDataType::OctetArray, "octetArray"),
    (AbstractDataType::Unsigned8, "unsigned8"),
    (AbstractDataType::Unsigned16, "unsigned16"),
    (AbstractDataType::Unsigned32, "unsigned32"),
    (AbstractDataType::Unsigned64, "unsigned64"),
    (AbstractDataType::Signed8, "signed8"),
    (AbstractDataType::Signed16, "signed16"),
    (AbstractDataType::Signed32, "signed32"),
    (AbstractDataType::Signed64, "signed64"),
    (AbstractDataType::Float32, "float32"),
    (AbstractDataType::Float64, "float64"),
    (AbstractDataType::Boolean, "boolean"),
    (AbstractDataType::MacAddress, "macAddress"),
    (AbstractDataType::String, "string"),
    (AbstractDataType::DateTimeSeconds, "dateTimeSeconds"),
    (
        AbstractDataType::DateTimeMilliseconds,
        "dateTimeMilliseconds",
    ),
    (
        AbstractDataType::DateTimeMicroseconds,
        "dateTimeMicroseconds",
    ),
    (AbstractDataType::DateTimeNanoseconds, "dateTimeNanoseconds"),
    (AbstractDataType::Ipv4Address, "ipv4Address"),
    (AbstractDataType::Ipv6Address, "ipv6Address"),
    (AbstractDataType::BasicList, "basicList"),
    (AbstractDataType::SubTemplateList, "subTemplateList"),
    (
        AbstractDataType::SubTemplateMultiList,
        "subTemplateMultiList",
    ),
];

impl AbstractDataType {
    /// Parses a registry name, ignoring ASCII case (the registry itself has `ipv6address` once).
    pub fn parse(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(t, _)| *t)
    }

    /// The registry name.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("octetArray", |(_, n)| n)
    }

    /// The natural encoded length, or `None` for types of any length.
    pub fn natural_len(self) -> Option<u16> {
        Some(match self {
            Self::Unsigned8 | Self::Signed8 | Self::Boolean => 1,
            Self::Unsigned16 | Self::Signed16 => 2,
            Self::Unsigned32 | Self::Signed32 | Self::Float32 => 4,
            Self::DateTimeSeconds | Self::Ipv4Address => 4,
            Self::Unsigned64 | Self::Signed64 | Self::Float64 => 8,
            Self::DateTimeMilliseconds | Self::DateTimeMicroseconds => 8,
            Self::DateTimeNanoseconds => 8,
            Self::MacAddress => 6,
            Self::Ipv6Address => 16,
            Self::OctetArray | Self::String => return None,
            Self::BasicList | Self::SubTemplateList | Self::SubTemplateMultiList => return None,
        })
    }

    /// Whether a Field Length of `len` is permitted: the natural length, a reduced size for the
    /// integral types and float64 (RFC 7011 §6.2), any non-zero length or variable length
    /// (65535, §7) for octetArray, string and the list types.
    pub fn permits(self, len: u16) -> bool {
        if len == 0 {
            return false;
        }
        match (self, self.natural_len()) {
            (_, None) => true,
            //= https://www.rfc-editor.org/rfc/rfc7011#section-6.2
            //# the float64 data type MAY be encoded using four octets
            (Self::Float64, _) => len == 4 || len == 8,
            (
                Self::Unsigned16
                | Self::Unsigned32
                | Self::Unsigned64
                | Self::Signed16
                | Self::Signed32
                | Self::Signed64,
                Some(natural),
            ) => len <= natural,
            //= https://www.rfc-editor.org/rfc/rfc7011#section-6.2
            //# Reduced-size encoding MUST NOT be applied to any other data type
            //# defined in [RFC7012] that implies a fixed length
            (_, Some(natural)) => len == natural,
        }
    }
}

impl fmt::Display for AbstractDataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
