//! Column buffers the executor appends to, and their hand-over as Arrow arrays.
//!
//! Buffers are plain `Vec`s, moved into Arrow without a copy on `flush` and re-created with the
//! capacity the last batch needed, so a steady stream of Data Sets allocates once per batch,
//! not once per Set; and not even that where the caller gives spent batches back
//! ([`Spares`]): their buffers are written into again.

use std::sync::Arc;

use arrow_array::types::{
    ArrowTimestampType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    ArrayRef, ArrowPrimitiveType, BinaryArray, BooleanArray, FixedSizeBinaryArray, PrimitiveArray,
    StringArray,
};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::ArrowError;

use crate::exec::spares::Spares;
use crate::op::Op;
use crate::program::ColumnKind;

/// One column's buffer.
#[derive(Debug)]
pub(crate) enum Column {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<Option<bool>>),
    /// macAddress (6) and ipv6Address (16), `width` octets a row.
    Fixed(Vec<u8>),
    /// Timestamps in the column's unit since the UNIX epoch.
    Time(Vec<i64>),
    /// string and octetArray: `offsets` starts with 0 and has one more entry than rows.
    Var {
        offsets: Vec<i32>,
        values: Vec<u8>,
    },
}

impl Column {
    /// An empty buffer for `kind` with room for `rows`.
    pub(crate) fn new(kind: ColumnKind, rows: usize) -> Self {
        Self::renewed(kind, rows, &mut Spares::default())
    }

    /// An empty buffer for `kind` with room for `rows`: for numbers and times, a spare one
    /// where `spares` has one.
    fn renewed(kind: ColumnKind, rows: usize, spares: &mut Spares) -> Self {
        match kind {
            ColumnKind::UInt8 => Self::U8(spares.vec(rows)),
            ColumnKind::UInt16 => Self::U16(spares.vec(rows)),
            ColumnKind::UInt32 | ColumnKind::Ipv4Address => Self::U32(spares.vec(rows)),
            ColumnKind::UInt64 => Self::U64(spares.vec(rows)),
            ColumnKind::Int8 => Self::I8(spares.vec(rows)),
            ColumnKind::Int16 => Self::I16(spares.vec(rows)),
            ColumnKind::Int32 => Self::I32(spares.vec(rows)),
            ColumnKind::Int64 => Self::I64(spares.vec(rows)),
            ColumnKind::Float32 => Self::F32(spares.vec(rows)),
            ColumnKind::Float64 => Self::F64(spares.vec(rows)),
            ColumnKind::Boolean => Self::Bool(Vec::with_capacity(rows)),
            ColumnKind::MacAddress => Self::Fixed(Vec::with_capacity(rows * 6)),
            ColumnKind::Ipv6Address => Self::Fixed(Vec::with_capacity(rows * 16)),
            ColumnKind::TimestampSeconds
            | ColumnKind::TimestampMilliseconds
            | ColumnKind::TimestampMicroseconds
            | ColumnKind::TimestampNanoseconds => Self::Time(spares.vec(rows)),
            ColumnKind::Utf8 | ColumnKind::Binary => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Self::Var {
                    offsets,
                    values: Vec::new(),
                }
            }
        }
    }

    /// Octets of variable-length content buffered.
    pub(crate) fn var_bytes(&self) -> usize {
        match self {
            Self::Var { values, .. } => values.len(),
            _ => 0,
        }
    }

    /// Makes room for `rows` more rows (the record count a check found), so appends in the
    /// decode loop never grow the buffer.
    pub(crate) fn reserve(&mut self, rows: usize, width: usize) {
        match self {
            Self::U8(v) => v.reserve(rows),
            Self::U16(v) => v.reserve(rows),
            Self::U32(v) => v.reserve(rows),
            Self::U64(v) => v.reserve(rows),
            Self::I8(v) => v.reserve(rows),
            Self::I16(v) => v.reserve(rows),
            Self::I32(v) => v.reserve(rows),
            Self::I64(v) | Self::Time(v) => v.reserve(rows),
            Self::F32(v) => v.reserve(rows),
            Self::F64(v) => v.reserve(rows),
            Self::Bool(v) => v.reserve(rows),
            Self::Fixed(v) => v.reserve(rows * width),
            Self::Var { offsets, .. } => offsets.reserve(rows),
        }
    }

    /// Drops rows past `rows` (undoing a run that failed half-way).
    pub(crate) fn truncate(&mut self, rows: usize, width: usize) {
        match self {
            Self::U8(v) => v.truncate(rows),
            Self::U16(v) => v.truncate(rows),
            Self::U32(v) => v.truncate(rows),
            Self::U64(v) => v.truncate(rows),
            Self::I8(v) => v.truncate(rows),
            Self::I16(v) => v.truncate(rows),
            Self::I32(v) => v.truncate(rows),
            Self::I64(v) | Self::Time(v) => v.truncate(rows),
            Self::F32(v) => v.truncate(rows),
            Self::F64(v) => v.truncate(rows),
            Self::Bool(v) => v.truncate(rows),
            Self::Fixed(v) => v.truncate(rows * width),
            Self::Var { offsets, values } => {
                offsets.truncate(rows + 1);
                let end = offsets
                    .last()
                    .map_or(0, |&o| usize::try_from(o).unwrap_or(0));
                values.truncate(end);
            }
        }
    }

    /// Moves the buffer out as an Arrow array of `kind`, leaving an empty one with room for
    /// `rows` (from `spares` where it has one).
    pub(crate) fn take(
        &mut self,
        kind: ColumnKind,
        rows: usize,
        spares: &mut Spares,
    ) -> Result<ArrayRef, ArrowError> {
        let mut old = std::mem::replace(self, Self::renewed(kind, rows, spares));
        // The next batch likely needs as much variable-length room as this one did, plus the
        // surplus `copy_span` writes past the last field before truncating it again; without
        // that, a batch of the same size would grow (and copy) the buffer at its last field.
        if let (Self::Var { values: next, .. }, Self::Var { values, .. }) = (&mut *self, &mut old) {
            next.reserve(values.len() + SHORT_SPAN);
        }
        Ok(match (old, kind) {
            (Self::U8(v), _) => primitive::<UInt8Type>(v),
            (Self::U16(v), _) => primitive::<UInt16Type>(v),
            (Self::U32(v), _) => primitive::<UInt32Type>(v),
            (Self::U64(v), _) => primitive::<UInt64Type>(v),
            (Self::I8(v), _) => primitive::<Int8Type>(v),
            (Self::I16(v), _) => primitive::<Int16Type>(v),
            (Self::I32(v), _) => primitive::<Int32Type>(v),
            (Self::I64(v), _) => primitive::<Int64Type>(v),
            (Self::F32(v), _) => primitive::<Float32Type>(v),
            (Self::F64(v), _) => primitive::<Float64Type>(v),
            (Self::Bool(v), _) => Arc::new(BooleanArray::from(v)),
            (Self::Fixed(v), ColumnKind::MacAddress) => fixed(v, 6)?,
            (Self::Fixed(v), _) => fixed(v, 16)?,
            (Self::Time(v), ColumnKind::TimestampSeconds) => timestamp::<TimestampSecondType>(v),
            (Self::Time(v), ColumnKind::TimestampMilliseconds) => {
                timestamp::<TimestampMillisecondType>(v)
            }
            (Self::Time(v), ColumnKind::TimestampMicroseconds) => {
                timestamp::<TimestampMicrosecondType>(v)
            }
            (Self::Time(v), _) => timestamp::<TimestampNanosecondType>(v),
            (Self::Var { offsets, values }, ColumnKind::Utf8) => Arc::new(StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                Buffer::from_vec(values),
                None,
            )?),
            (Self::Var { offsets, values }, _) => Arc::new(BinaryArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                Buffer::from_vec(values),
                None,
            )?),
        })
    }
}

fn primitive<T: ArrowPrimitiveType>(v: Vec<T::Native>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(v), None))
}

fn timestamp<T: ArrowTimestampType>(v: Vec<i64>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(v), None).with_timezone("UTC"))
}

fn fixed(v: Vec<u8>, width: i32) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(FixedSizeBinaryArray::try_new(
        width,
        Buffer::from_vec(v),
        None,
    )?))
}

/// Right-aligns `b` (at most `N` octets) in `N` octets: reduced-size encoding (RFC 7011 §6.2)
/// drops high-order octets, so they are zero.
#[inline]
fn right_align<const N: usize>(b: &[u8]) -> [u8; N] {
    if let Ok(exact) = <[u8; N]>::try_from(b) {
        return exact;
    }
    let mut out = [0; N];
    if let Some(dst) = N
        .checked_sub(b.len())
        .and_then(|start| out.get_mut(start..))
    {
        dst.copy_from_slice(b);
    }
    out
}

/// Number of significant bits a reduced-size signed value leaves unused at the top.
#[inline]
fn sign_shift(bits: u32, b: &[u8]) -> u32 {
    bits.saturating_sub(u32::try_from(b.len() * 8).unwrap_or(bits))
}

/// Seconds from the NTP epoch (1900) to the UNIX epoch (1970).
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;

/// Splits an NTP timestamp (RFC 7011 §6.1.9) into UNIX seconds and the 32-bit fraction.
#[inline]
fn ntp(b: [u8; 8]) -> (i64, u64) {
    let [s0, s1, s2, s3, f0, f1, f2, f3] = b;
    let seconds = i64::from(u32::from_be_bytes([s0, s1, s2, s3])) - NTP_UNIX_OFFSET;
    (seconds, u64::from(u32::from_be_bytes([f0, f1, f2, f3])))
}

//= https://www.rfc-editor.org/rfc/rfc7011#section-6.1.9
//# The 11 lowest-order bits of the fraction field
//# SHOULD be ignored.
/// A dateTimeMicroseconds (NTP format) as microseconds since the UNIX epoch.
#[inline]
fn ntp_micros(b: [u8; 8]) -> i64 {
    let (seconds, fraction) = ntp(b);
    seconds * 1_000_000 + nearest(fraction & !0x7ff, 1_000_000)
}

/// A dateTimeNanoseconds (NTP format, §6.1.10) as nanoseconds since the UNIX epoch.
#[inline]
fn ntp_nanos(b: [u8; 8]) -> i64 {
    let (seconds, fraction) = ntp(b);
    seconds * 1_000_000_000 + nearest(fraction, 1_000_000_000)
}

/// A binary fraction of a second (of 2³²) in `per_second` units, rounded to the nearest.
/// Exporters convert the other way by truncating (python-ipfix, most C meters), rounding up
/// (flowvm's exporter) or rounding: to the nearest unit reads every one of them back exactly,
/// where rounding down loses a unit from the truncating ones (1 µs sent as `0x1000` would read
/// as 0). A fraction within half a unit of the next second gives `per_second`, which carries.
#[inline]
fn nearest(fraction: u64, per_second: u64) -> i64 {
    // fraction < 2³², per_second ≤ 10⁹ < 2³⁰: no overflow; the result is ≤ per_second.
    i64::try_from((fraction * per_second + (1 << 31)) >> 32).unwrap_or(0)
}

/// Where the octets of natural-length fields come from: every record of a Set at a stride (op
/// at a time), or one field (record at a time).
pub(crate) trait Fields {
    /// Appends `f` of each field's `N` octets to `out`.
    fn extend<const N: usize, T>(self, out: &mut Vec<T>, f: impl FnMut([u8; N]) -> T);
}

/// The field at `offset` of every record of a fixed-length Set. The compiler proved
/// `offset + N <= record_len`, so the fallback value is never used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strided<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) record_len: usize,
    pub(crate) offset: usize,
}

impl Fields for Strided<'_> {
    #[inline]
    fn extend<const N: usize, T>(self, out: &mut Vec<T>, f: impl FnMut([u8; N]) -> T) {
        let offset = self.offset;
        out.extend(
            self.data
                .chunks_exact(self.record_len)
                .map(move |r| {
                    r.get(offset..)
                        .and_then(<[u8]>::first_chunk::<N>)
                        .copied()
                        .unwrap_or([0; N])
                })
                .map(f),
        );
    }
}

/// The field `offset` octets after bound `base` of every record of a variable-length Set,
/// from the bounds the check noted (`stride` per record). The check and the compiler proved
/// every such field lies within `data`, so the fallback value is never used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Based<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) rows: &'a [usize],
    pub(crate) stride: usize,
    pub(crate) base: usize,
    pub(crate) offset: usize,
}

impl Fields for Based<'_> {
    #[inline]
    fn extend<const N: usize, T>(self, out: &mut Vec<T>, f: impl FnMut([u8; N]) -> T) {
        let Self {
            data, base, offset, ..
        } = self;
        out.extend(
            self.rows
                .chunks_exact(self.stride)
                .map(move |row| {
                    row.get(base)
                        .and_then(|&b| data.get(b + offset..))
                        .and_then(<[u8]>::first_chunk::<N>)
                        .copied()
                        .unwrap_or([0; N])
                })
                .map(f),
        );
    }
}

/// One field's octets, already taken from the record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct One<'a>(pub(crate) &'a [u8]);

impl Fields for One<'_> {
    #[inline]
    fn extend<const N: usize, T>(self, out: &mut Vec<T>, mut f: impl FnMut([u8; N]) -> T) {
        out.push(f(right_align(self.0)));
    }
}

/// Appends the reads whose Field Length is the type's natural one, or one of the common reduced
/// sizes, as fixed-width loads. Returns `false` for anything else (other reduced sizes,
/// strings, octets, booleans), which then goes through [`append`].
#[inline]
pub(crate) fn append_natural(op: Op, col: &mut Column, fields: impl Fields) -> bool {
    match (op, col) {
        (Op::Rui8 { .. }, Column::U8(v)) => fields.extend(v, u8::from_be_bytes),
        (Op::Rui16 { len: 2, .. }, Column::U16(v)) => fields.extend(v, u16::from_be_bytes),
        (Op::Rui32 { len: 4, .. } | Op::Rip4 { .. }, Column::U32(v)) => {
            fields.extend(v, u32::from_be_bytes)
        }
        (Op::Rui64 { len: 8, .. }, Column::U64(v)) => fields.extend(v, u64::from_be_bytes),
        // The reduced sizes exporters use (RFC 7011 §6.2: 4-octet counters, 2-octet interfaces
        // and AS numbers in NetFlow v9 and v5, 1-octet TCP flags): a fixed-size read widened,
        // not the general path's copy of a run-time length.
        (Op::Rui16 { len: 1, .. }, Column::U16(v)) => {
            fields.extend(v, |b: [u8; 1]| u16::from(u8::from_be_bytes(b)))
        }
        (Op::Rui32 { len: 1, .. }, Column::U32(v)) => {
            fields.extend(v, |b: [u8; 1]| u32::from(u8::from_be_bytes(b)))
        }
        (Op::Rui32 { len: 2, .. }, Column::U32(v)) => {
            fields.extend(v, |b: [u8; 2]| u32::from(u16::from_be_bytes(b)))
        }
        (Op::Rui64 { len: 1, .. }, Column::U64(v)) => {
            fields.extend(v, |b: [u8; 1]| u64::from(u8::from_be_bytes(b)))
        }
        (Op::Rui64 { len: 2, .. }, Column::U64(v)) => {
            fields.extend(v, |b: [u8; 2]| u64::from(u16::from_be_bytes(b)))
        }
        (Op::Rui64 { len: 4, .. }, Column::U64(v)) => {
            fields.extend(v, |b: [u8; 4]| u64::from(u32::from_be_bytes(b)))
        }
        (Op::Rf32 { .. }, Column::F32(v)) => fields.extend(v, f32::from_be_bytes),
        (Op::Rf64 { len: 8, .. }, Column::F64(v)) => fields.extend(v, f64::from_be_bytes),
        (Op::Rdts { .. }, Column::Time(v)) => {
            fields.extend(v, |b| i64::from(u32::from_be_bytes(b)))
        }
        (Op::Rdtms { .. }, Column::Time(v)) => fields.extend(v, i64::from_be_bytes),
        (Op::Rdtus { .. }, Column::Time(v)) => fields.extend(v, ntp_micros),
        (Op::Rdtns { .. }, Column::Time(v)) => fields.extend(v, ntp_nanos),
        _ => return false,
    }
    true
}

/// Decodes one field per item of `fields` with `op` and appends the values to its column.
/// Returns how many values were invalid and stored repaired (see [`RunStats`](super::RunStats)).
///
/// This is the one place that turns wire octets into values: the record-at-a-time interpreter
/// calls it with one field, the op-at-a-time loop with one field per record of a Set.
#[inline]
pub(crate) fn append<'a>(op: Op, col: &mut Column, fields: impl Iterator<Item = &'a [u8]>) -> u64 {
    let mut invalid = 0;
    match (op, col) {
        (Op::Rui8 { .. }, Column::U8(v)) => {
            v.extend(fields.map(|b| u8::from_be_bytes(right_align(b))))
        }
        (Op::Rui16 { .. }, Column::U16(v)) => {
            v.extend(fields.map(|b| u16::from_be_bytes(right_align(b))))
        }
        (Op::Rui32 { .. } | Op::Rip4 { .. }, Column::U32(v)) => {
            v.extend(fields.map(|b| u32::from_be_bytes(right_align(b))));
        }
        (Op::Rui64 { .. }, Column::U64(v)) => {
            v.extend(fields.map(|b| u64::from_be_bytes(right_align(b))))
        }
        (Op::Rsi8 { .. }, Column::I8(v)) => {
            v.extend(fields.map(|b| i8::from_be_bytes(right_align(b))))
        }
        (Op::Rsi16 { .. }, Column::I16(v)) => v.extend(fields.map(|b| {
            let s = sign_shift(16, b);
            i16::from_be_bytes(right_align(b))
                .wrapping_shl(s)
                .wrapping_shr(s)
        })),
        (Op::Rsi32 { .. }, Column::I32(v)) => v.extend(fields.map(|b| {
            let s = sign_shift(32, b);
            i32::from_be_bytes(right_align(b))
                .wrapping_shl(s)
                .wrapping_shr(s)
        })),
        (Op::Rsi64 { .. }, Column::I64(v)) => v.extend(fields.map(|b| {
            let s = sign_shift(64, b);
            i64::from_be_bytes(right_align(b))
                .wrapping_shl(s)
                .wrapping_shr(s)
        })),
        (Op::Rf32 { .. }, Column::F32(v)) => {
            v.extend(fields.map(|b| f32::from_be_bytes(right_align(b))))
        }
        (Op::Rf64 { len: 4, .. }, Column::F64(v)) => {
            v.extend(fields.map(|b| f64::from(f32::from_be_bytes(right_align(b)))));
        }
        (Op::Rf64 { .. }, Column::F64(v)) => {
            v.extend(fields.map(|b| f64::from_be_bytes(right_align(b))))
        }
        //= https://www.rfc-editor.org/rfc/rfc7011#section-6.1.5
        //# The boolean data type is specified according to the TruthValue in
        //# [RFC2579].  It is encoded as a single-octet integer per
        //# Section 6.1.1, with the value 1 for true and value 2 for false.
        (Op::Rbool { .. }, Column::Bool(v)) => v.extend(fields.map(|b| match b.first() {
            Some(1) => Some(true),
            Some(2) => Some(false),
            _ => {
                invalid += 1;
                None
            }
        })),
        (Op::Rmac { .. }, Column::Fixed(v)) => {
            fields.for_each(|b| v.extend_from_slice(&right_align::<6>(b)))
        }
        (Op::Rip6 { .. }, Column::Fixed(v)) => {
            fields.for_each(|b| v.extend_from_slice(&right_align::<16>(b)))
        }
        (Op::Rdts { .. }, Column::Time(v)) => {
            v.extend(fields.map(|b| i64::from(u32::from_be_bytes(right_align(b)))));
        }
        // Milliseconds since 1970 in an unsigned64; values past i64::MAX (year 292 million)
        // wrap negative rather than fail.
        (Op::Rdtms { .. }, Column::Time(v)) => {
            v.extend(fields.map(|b| i64::from_be_bytes(right_align(b))))
        }
        (Op::Rdtus { .. }, Column::Time(v)) => v.extend(fields.map(|b| ntp_micros(right_align(b)))),
        (Op::Rdtns { .. }, Column::Time(v)) => v.extend(fields.map(|b| ntp_nanos(right_align(b)))),
        (Op::Rstr { .. } | Op::Rvstr { .. }, Column::Var { offsets, values }) => {
            let trim = matches!(op, Op::Rstr { .. });
            let first = offsets.len().saturating_sub(1);
            let start = values.len();
            for b in fields {
                // Fixed-length strings are commonly NUL-padded to their Field Length.
                let b = if trim {
                    b.iter()
                        .rposition(|&c| c != 0)
                        .map_or(&[][..], |end| b.get(..=end).unwrap_or(b))
                } else {
                    b
                };
                values.extend_from_slice(b);
                offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
            }
            invalid += validate_utf8(offsets, values, first, start);
        }
        (Op::Roct { .. } | Op::Rvoct { .. }, Column::Var { offsets, values }) => {
            for b in fields {
                values.extend_from_slice(b);
                offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
            }
        }
        // The compiler pairs every read with a column of its kind; anything else reads nothing.
        _ => {}
    }
    invalid
}

/// Appends the variable-length fields `spans` (content from, to) of `data` with `op` (`RVSTR`
/// or `RVOCT`): the op-at-a-time loop over a Set's records. Returns how many values were
/// invalid and stored repaired.
#[inline]
pub(crate) fn append_var(
    op: Op,
    col: &mut Column,
    data: &[u8],
    spans: impl Iterator<Item = (usize, usize)>,
) -> u64 {
    let Column::Var { offsets, values } = col else {
        return 0; // the compiler pairs RVSTR and RVOCT with variable-width columns
    };
    let first = offsets.len().saturating_sub(1);
    let start = values.len();
    for (from, to) in spans {
        copy_span(values, data, from, to);
        offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
    }
    match op {
        Op::Rvstr { .. } => validate_utf8(offsets, values, first, start),
        _ => 0,
    }
}

/// Octets [`copy_span`] copies at once for a short field.
const SHORT_SPAN: usize = 32;

/// Appends `data[from..to]` to `values`.
///
/// Names and other short fields are a few dozen octets, where a `memcpy` call of the exact
/// length costs more than the copy. When the 32 octets from `from` are all within `data` (the
/// rest of the Set usually follows), this copies all 32 with one fixed-size move and drops
/// the surplus again.
#[inline]
fn copy_span(values: &mut Vec<u8>, data: &[u8], from: usize, to: usize) {
    let len = to.saturating_sub(from);
    if len <= SHORT_SPAN
        && let Some(chunk) = data.get(from..).and_then(<[u8]>::first_chunk::<SHORT_SPAN>)
    {
        let end = values.len() + len;
        values.extend_from_slice(chunk);
        values.truncate(end);
    } else {
        values.extend_from_slice(data.get(from..to).unwrap_or_default());
    }
}

//= https://www.rfc-editor.org/rfc/rfc7011#section-6.1.6
//# Collecting Processes SHOULD detect and ignore such values.
/// Checks the strings appended from row `first` on (their octets from `start` on) as UTF-8 all
/// at once, and replaces each one that is not, lossily (U+FFFD), as the reference decoder
/// does. Returns how many were replaced.
///
/// One check over a Set's strings costs far less than one per short string. The common case,
/// all ASCII, is a few word compares per 8 octets; then the octets as a whole being UTF-8 with
/// every row starting on a character boundary means every row is UTF-8 on its own. Only when
/// that fails are rows checked one by one.
fn validate_utf8(offsets: &mut [i32], values: &mut Vec<u8>, first: usize, start: usize) -> u64 {
    let added = values.get(start..).unwrap_or_default();
    if added.is_ascii() {
        return 0;
    }
    let row_starts = || {
        offsets
            .get(first..)
            .unwrap_or_default()
            .iter()
            .map(|&o| usize::try_from(o).unwrap_or(0).saturating_sub(start))
    };
    if let Ok(text) = std::str::from_utf8(added)
        && row_starts().all(|at| text.is_char_boundary(at))
    {
        return 0;
    }
    // Cold: rebuild the rows one by one. `offsets[first]` is `start`; every later entry is
    // rewritten to the row's new end.
    let raw = values.split_off(start);
    let mut invalid = 0;
    let mut from = 0;
    for end in offsets.iter_mut().skip(first + 1) {
        let to = usize::try_from(*end).unwrap_or(0).saturating_sub(start);
        let row = raw.get(from..to).unwrap_or_default();
        match std::str::from_utf8(row) {
            Ok(_) => values.extend_from_slice(row),
            Err(_) => {
                invalid += 1;
                values.extend_from_slice(String::from_utf8_lossy(row).as_bytes());
            }
        }
        *end = i32::try_from(values.len()).unwrap_or(i32::MAX);
        from = to;
    }
    invalid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_size_signed_values_are_sign_extended() {
        let mut col = Column::new(ColumnKind::Int64, 0);
        append(
            Op::Rsi64 { col: 0, len: 2 },
            &mut col,
            [&[0xff, 0xfe][..], &[0x00, 0x02], &[0x80, 0x00]].into_iter(),
        );
        assert!(matches!(col, Column::I64(ref v) if v == &[-2, 2, -32_768]));
    }

    #[test]
    fn ntp_fractions_read_back_to_the_nearest_unit_whoever_rounded_them() {
        // 2030-01-02 03:04:05 UTC, then fractions for 1 µs, 654321 µs and 999999999 ns as a
        // truncating exporter (python-ipfix: 1 µs is 0x1000), a rounding-up one and one that
        // sets the 11 low bits a microsecond time ignores (RFC 7011 §6.1.9).
        let seconds: u32 = 4_102_455_845;
        let unix = i64::from(seconds) - NTP_UNIX_OFFSET;
        let at = |fraction: u32| {
            let mut b = [0; 8];
            b[..4].copy_from_slice(&seconds.to_be_bytes());
            b[4..].copy_from_slice(&fraction.to_be_bytes());
            b
        };
        for (fraction, micros) in [
            (0x1000, 1),
            (0x10c7, 1),
            (0x10c6 | 0x7ff, 1),
            (0xa781_9400, 654_321),
            (0xffff_ffff, 1_000_000),
        ] {
            assert_eq!(
                ntp_micros(at(fraction)),
                unix * 1_000_000 + micros,
                "{fraction:#x}"
            );
        }
        for (fraction, nanos) in [
            (4, 1),
            (5, 1),
            (4_294_967_291, 999_999_999),
            (4_294_967_292, 999_999_999),
            (0xffff_ffff, 1_000_000_000),
        ] {
            assert_eq!(
                ntp_nanos(at(fraction)),
                unix * 1_000_000_000 + nanos,
                "{fraction:#x}"
            );
        }
    }

    #[test]
    fn ntp_timestamps_convert_to_the_unix_epoch() {
        // 2005-12-31 23:59:59.5 UTC = 3345062399 s NTP + 0x8000_0000 fraction.
        let ntp_bytes = [0xc7, 0x61, 0x99, 0xff, 0x80, 0, 0, 0];
        let mut col = Column::new(ColumnKind::TimestampMicroseconds, 0);
        append(
            Op::Rdtus { col: 0 },
            &mut col,
            std::iter::once(&ntp_bytes[..]),
        );
        assert!(matches!(col, Column::Time(ref v) if v == &[1_136_073_599_500_000]));
    }

    #[test]
    fn strings_utf8_together_are_still_checked_one_by_one() {
        // "é" is C3 A9: cut in two, the halves are UTF-8 together but neither is on its own.
        let data = b"\xc3\xa9ok\xc3\xa9";
        let mut s = Column::new(ColumnKind::Utf8, 0);
        let spans = [(0, 1), (1, 2), (2, 4), (4, 6)];
        assert_eq!(
            append_var(Op::Rvstr { col: 0 }, &mut s, data, spans.into_iter()),
            2
        );
        let Column::Var { offsets, values } = &s else {
            panic!("a string column is variable-width");
        };
        assert_eq!(values.as_slice(), "\u{fffd}\u{fffd}oké".as_bytes());
        assert_eq!(offsets, &[0, 3, 6, 8, 10]);
        // The same octets as octetArray are kept as they are.
        let mut b = Column::new(ColumnKind::Binary, 0);
        assert_eq!(
            append_var(Op::Rvoct { col: 0 }, &mut b, data, spans.into_iter()),
            0
        );
        assert_eq!(b.var_bytes(), data.len());
    }

    #[test]
    fn invalid_utf8_and_booleans_are_counted() {
        let mut s = Column::new(ColumnKind::Utf8, 0);
        assert_eq!(
            append(
                Op::Rvstr { col: 0 },
                &mut s,
                [&b"ok"[..], &[0xff, b'a']].into_iter()
            ),
            1
        );
        let mut b = Column::new(ColumnKind::Boolean, 0);
        assert_eq!(
            append(
                Op::Rbool { col: 0 },
                &mut b,
                [&[1][..], &[2], &[0]].into_iter()
            ),
            1
        );
        assert!(matches!(b, Column::Bool(ref v) if v == &[Some(true), Some(false), None]));
    }
}
