//! Errors of the two tiers that live in this crate: wire decoding (hot, `Copy`, 8 bytes) and
//! template compilation (cold, descriptive).

use std::fmt;

use crate::wire::ids::TemplateId;

/// Why a piece of IPFIX input was rejected.
///
/// `Copy` and 8 bytes, so the hot path returns it by value without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// Offset of the offending byte from the start of the IPFIX Message (saturating).
    pub offset: u16,
}

impl DecodeError {
    /// Builds an error at `offset`, saturating offsets past `u16::MAX`.
    pub fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        Self {
            kind,
            offset: u16::try_from(offset).unwrap_or(u16::MAX),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.kind, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// The reason half of a [`DecodeError`]; also the `reason` label on drop counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// A Template Record's Field Count and Scope Field Count disagree (RFC 7011 §3.4.2.2).
    BadScopeFieldCount(u16),
    /// A Set Length was below 4 or ran past the end of the Message (RFC 7011 §3.3.2).
    BadSetLength(u16),
    /// A Template ID below 256 in a Template Record (RFC 7011 §3.4.1).
    BadTemplateId(u16),
    /// The Message Length field disagrees with the datagram or frame size (RFC 7011 §3.1).
    LengthMismatch {
        /// Message Length from the header.
        header: u16,
        /// Bytes actually present (saturating).
        actual: u16,
    },
    /// Set ID 0, 1 or 4..=255 (RFC 7011 §3.3.2).
    ReservedSetId(u16),
    /// A length field promised more bytes than were present (RFC 7011 §11.7).
    Truncated,
    /// The Version Number was not 0x000a (RFC 7011 §3.1).
    UnsupportedVersion(u16),
}

impl DecodeErrorKind {
    /// A short, stable, low-cardinality label for counters and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadScopeFieldCount(_) => "bad_scope_field_count",
            Self::BadSetLength(_) => "bad_set_length",
            Self::BadTemplateId(_) => "bad_template_id",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::ReservedSetId(_) => "reserved_set_id",
            Self::Truncated => "truncated",
            Self::UnsupportedVersion(_) => "unsupported_version",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadScopeFieldCount(n) => write!(f, "bad scope field count {n}"),
            Self::BadSetLength(n) => write!(f, "bad set length {n}"),
            Self::BadTemplateId(n) => write!(f, "template id {n} below 256"),
            Self::LengthMismatch { header, actual } => {
                write!(f, "message length {header} but {actual} bytes present")
            }
            Self::ReservedSetId(n) => write!(f, "reserved set id {n}"),
            Self::Truncated => f.write_str("truncated"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
        }
    }
}

/// Why a template could not be compiled into a [`Program`](crate::Program).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    template_id: TemplateId,
    kind: CompileErrorKind,
}

/// The defect a [`CompileError`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompileErrorKind {
    /// More columns than `Limits::max_columns`.
    TooManyColumns {
        /// Columns the template needs.
        given: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More fields than `Limits::max_fields`.
    TooManyFields {
        /// Field Count of the template.
        given: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A template with no field that occupies bytes: no record could ever be read.
    EmptyRecord,
}

impl CompileError {
    pub(crate) fn new(template_id: TemplateId, kind: CompileErrorKind) -> Self {
        Self { template_id, kind }
    }

    /// The template that failed to compile.
    pub fn template_id(&self) -> TemplateId {
        self.template_id
    }

    /// What was wrong with it.
    pub fn kind(&self) -> &CompileErrorKind {
        &self.kind
    }

    /// A short, stable label for counters (`templates_rejected_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self.kind {
            CompileErrorKind::TooManyColumns { .. } => "too_many_columns",
            CompileErrorKind::TooManyFields { .. } => "too_many_fields",
            CompileErrorKind::EmptyRecord => "empty_record",
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template {}: ", self.template_id.0)?;
        match &self.kind {
            CompileErrorKind::TooManyColumns { given, limit } => {
                write!(f, "{given} columns exceed the limit of {limit}")
            }
            CompileErrorKind::TooManyFields { given, limit } => {
                write!(f, "{given} fields exceed the limit of {limit}")
            }
            CompileErrorKind::EmptyRecord => f.write_str("no field occupies any bytes"),
        }
    }
}

impl std::error::Error for CompileError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_is_eight_bytes_at_most() {
        assert!(size_of::<DecodeError>() <= 8);
    }

    #[test]
    fn offsets_past_u16_saturate() {
        assert_eq!(
            DecodeError::new(DecodeErrorKind::Truncated, 70_000).offset,
            u16::MAX
        );
    }

    #[test]
    fn compile_error_names_the_template_and_the_reason() {
        let e = CompileError::new(TemplateId(300), CompileErrorKind::EmptyRecord);
        assert_eq!(e.label(), "empty_record");
        assert!(e.to_string().contains("template 300"));
    }
}
