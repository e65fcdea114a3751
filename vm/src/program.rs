//! A compiled template: the instructions, the Arrow schema they fill, and what the compiler
//! proved about both.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, SchemaRef, TimeUnit};

use crate::ie::types::AbstractDataType;
use crate::op::Op;
use crate::wire::ids::TemplateId;

/// How a column stores its values; chosen from the abstract data type, never the wire length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// unsigned8.
    UInt8,
    /// unsigned16.
    UInt16,
    /// unsigned32.
    UInt32,
    /// unsigned64.
    UInt64,
    /// signed8.
    Int8,
    /// signed16.
    Int16,
    /// signed32.
    Int32,
    /// signed64.
    Int64,
    /// float32.
    Float32,
    /// float64.
    Float64,
    /// boolean, null for values other than 1 and 2.
    Boolean,
    /// macAddress, 6 octets.
    MacAddress,
    /// ipv4Address as its 32-bit value in host order.
    Ipv4Address,
    /// ipv6Address, 16 octets.
    Ipv6Address,
    /// dateTimeSeconds.
    TimestampSeconds,
    /// dateTimeMilliseconds.
    TimestampMilliseconds,
    /// dateTimeMicroseconds.
    TimestampMicroseconds,
    /// dateTimeNanoseconds.
    TimestampNanoseconds,
    /// string.
    Utf8,
    /// octetArray and the RFC 6313 list types, kept raw.
    Binary,
}

impl ColumnKind {
    /// The Arrow type of the column. Timestamps are in UTC.
    pub fn data_type(self) -> DataType {
        let utc = || Some(Arc::from("UTC"));
        match self {
            Self::UInt8 => DataType::UInt8,
            Self::UInt16 => DataType::UInt16,
            Self::UInt32 | Self::Ipv4Address => DataType::UInt32,
            Self::UInt64 => DataType::UInt64,
            Self::Int8 => DataType::Int8,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::MacAddress => DataType::FixedSizeBinary(6),
            Self::Ipv6Address => DataType::FixedSizeBinary(16),
            Self::TimestampSeconds => DataType::Timestamp(TimeUnit::Second, utc()),
            Self::TimestampMilliseconds => DataType::Timestamp(TimeUnit::Millisecond, utc()),
            Self::TimestampMicroseconds => DataType::Timestamp(TimeUnit::Microsecond, utc()),
            Self::TimestampNanoseconds => DataType::Timestamp(TimeUnit::Nanosecond, utc()),
            Self::Utf8 => DataType::Utf8,
            Self::Binary => DataType::Binary,
        }
    }
}

/// How a field whose Field Length RFC 7011 §6.2 does not permit for its type is decoded
/// anyway (the template is installed; one odd field never costs a record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nonconformity {
    /// An unsigned or signed integer sent in more octets than its type has (at most 8): read
    /// at the wire width into a column wide enough for every value, under the element's name.
    WideInteger,
    /// No unambiguous reading: the octets are kept as sent, in a Binary column named
    /// `<name>_raw`.
    Raw,
}

impl Nonconformity {
    /// A short, stable label for counters (`fields_nonconforming_total{reason}`).
    pub fn label(self) -> &'static str {
        match self {
            Self::WideInteger => "wide_integer",
            Self::Raw => "raw_octets",
        }
    }
}

/// A field of a template that departs from RFC 7011 §6.2, and how it is decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonconformingField {
    /// The column it fills.
    pub column: String,
    /// The element's abstract data type.
    pub data_type: AbstractDataType,
    /// The Field Length the template gives.
    pub field_length: u16,
    /// How it is decoded.
    pub handling: Nonconformity,
}

/// Where a read of a variable-length template finds its octets in a record, in terms of the
/// record's bounds: the offsets the check pass notes for every record (the record's start, then
/// the start and end of each variable-length field's content), so a read can run across all
/// records of a Set without walking each record again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// `offset` octets after bound `base`: 0 is the record's start, `2k + 2` the end of
    /// variable-length field `k`, the last one before this field.
    Fixed {
        /// Index of the bound the field follows.
        base: usize,
        /// Octets from that bound to the field.
        offset: usize,
    },
    /// The content of variable-length field `k`, from bound `start = 2k + 1` to `start + 1`.
    Var {
        /// Index of the bound where the content starts.
        start: usize,
    },
}

/// A compiled (Options) Template: immutable, `Send + Sync`, shared as `Arc<Program>`.
///
/// Invariants established by the compiler and relied on by the executor: every read's column
/// is in range and of the kind the read expects; `min_record_len >= 1`; the instructions are
/// `JNMB`, `NR`, reads and skips, `ADV`, `JMP` back to the `JNMB`, `END`; `record_len` is the
/// sum of the read lengths when no field is variable-length, and then `fixed` lists every
/// read with its offset in the record; otherwise `gaps` has one entry per variable-length field
/// plus one (so at least two), their sum plus one octet per variable-length field is
/// `min_record_len`, and `placed` lists every read with its [`Place`].
#[derive(Clone, PartialEq)]
pub struct Program {
    pub(crate) template_id: TemplateId,
    pub(crate) scope_field_count: u16,
    pub(crate) ops: Vec<Op>,
    /// One comment per instruction for the listing (the element a read or skip is for).
    pub(crate) comments: Vec<String>,
    pub(crate) kinds: Vec<ColumnKind>,
    pub(crate) schema: SchemaRef,
    pub(crate) min_record_len: usize,
    pub(crate) record_len: Option<usize>,
    pub(crate) fixed: Vec<(Op, usize)>,
    /// Per instruction: its column and its wire length (`None`: variable), so the interpreter
    /// looks both up once instead of matching the op again for each.
    pub(crate) operands: Vec<(Option<u16>, Option<usize>)>,
    /// Variable-length templates: the fixed octets before each variable-length field, then
    /// those after the last one. Empty for fixed-length templates.
    pub(crate) gaps: Vec<usize>,
    /// Variable-length templates: every read with where it lies relative to the record's
    /// bounds. Empty for fixed-length templates.
    pub(crate) placed: Vec<(Op, Place)>,
    /// The fields whose Field Length the type does not permit, in template order.
    pub(crate) nonconforming: Vec<NonconformingField>,
}

impl Program {
    /// The Template ID this program decodes.
    pub fn template_id(&self) -> TemplateId {
        self.template_id
    }

    /// The Scope Field Count: non-zero for an Options Template.
    pub fn scope_field_count(&self) -> u16 {
        self.scope_field_count
    }

    /// The instructions.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The Arrow schema of the batches this program fills.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// How each column stores its values, in schema order.
    pub fn column_kinds(&self) -> &[ColumnKind] {
        &self.kinds
    }

    /// The fields whose Field Length their type does not permit, and how each is decoded.
    pub fn nonconforming(&self) -> &[NonconformingField] {
        &self.nonconforming
    }

    /// Octets of the shortest possible record (variable-length fields empty); at least 1.
    pub fn min_record_len(&self) -> usize {
        self.min_record_len
    }

    /// Octets of every record, when no field is variable-length.
    pub fn record_len(&self) -> Option<usize> {
        self.record_len
    }

    /// Bounds the check pass notes per record of a variable-length template: the record's
    /// start, then the start and end of each variable-length field's content. At least 1, so
    /// it can be a `chunks_exact` size.
    pub(crate) fn bounds_per_record(&self) -> usize {
        (2 * self.gaps.len()).saturating_sub(1).max(1)
    }
}

/// The disassembly: a header line, then one numbered instruction per line with the element it
/// reads.
impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.scope_field_count > 0 {
            "options template"
        } else {
            "template"
        };
        write!(
            f,
            "; {kind} {}: {} columns, ",
            self.template_id.0,
            self.kinds.len()
        )?;
        match self.record_len {
            Some(len) => writeln!(f, "record {len} octets")?,
            None => writeln!(
                f,
                "record {}+ octets (variable length)",
                self.min_record_len
            )?,
        }
        for (n, (op, comment)) in self.ops.iter().zip(&self.comments).enumerate() {
            let text = op.to_string();
            if comment.is_empty() {
                writeln!(f, "{:>3}: {text}", n + 1)?;
            } else {
                writeln!(f, "{:>3}: {text:<14} ; {comment}", n + 1)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
