//! The reference decoder of the differential tests: deliberately naive, one pass per record,
//! one field at a time, Arrow's own builders, no program. Shared by `vm/tests/reference.rs` and,
//! through `#[path]`, by the `vm_differential` fuzz target and `tests/fuzz_regressions.rs`, so
//! there is one reference.
//!
//! It trusts its input: callers run it only over a Data Set the program's check accepted.

#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_lossless,
    clippy::unwrap_used,
    reason = "the reference decoder is deliberately naive: plain casts and unwraps"
)]

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
    TimestampSecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use flowvm_vm::ie::types::AbstractDataType as T;
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::template::TemplateDef;
use flowvm_vm::{Program, Registry};

/// Enterprise 4242 holds one test element per abstract data type, id = index + 1.
pub(crate) const TYPES: [T; 23] = [
    T::OctetArray,
    T::Unsigned8,
    T::Unsigned16,
    T::Unsigned32,
    T::Unsigned64,
    T::Signed8,
    T::Signed16,
    T::Signed32,
    T::Signed64,
    T::Float32,
    T::Float64,
    T::Boolean,
    T::MacAddress,
    T::String,
    T::DateTimeSeconds,
    T::DateTimeMilliseconds,
    T::DateTimeMicroseconds,
    T::DateTimeNanoseconds,
    T::Ipv4Address,
    T::Ipv6Address,
    T::BasicList,
    T::SubTemplateList,
    T::SubTemplateMultiList,
];
pub(crate) const PEN: u32 = 4242;

pub(crate) fn registry() -> Registry {
    let mut r = Registry::new();
    let csv: String = TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{PEN},{},t{},{}\n", i + 1, t.name(), t.name()))
        .collect();
    assert_eq!(r.add_csv(&csv), Ok(TYPES.len()));
    r
}

/// The naive decoder: one pass per record, one field at a time, Arrow builders, no program.
/// Returns the batch and how many values were invalid (strings not UTF-8, booleans other than
/// 1 or 2).
pub(crate) fn reference(
    def: &TemplateDef,
    registry: &Registry,
    program: &Program,
    body: &[u8],
) -> (Option<RecordBatch>, u64) {
    let types: Vec<(T, u16)> = def
        .fields
        .iter()
        .map(|f| {
            let ty = registry.lookup(f.enterprise_number, f.element_id).data_type;
            (reading(ty, f.field_length), f.field_length)
        })
        .collect();
    let min_len: usize = types
        .iter()
        .map(|&(_, l)| {
            if l == VARIABLE_LENGTH {
                1
            } else {
                usize::from(l)
            }
        })
        .sum();
    let mut cols: Vec<Vec<Vec<u8>>> = vec![Vec::new(); types.len()];
    let mut pos = 0;
    while body.len() - pos >= min_len {
        for (i, &(_, len)) in types.iter().enumerate() {
            let len = if len == VARIABLE_LENGTH {
                let first = usize::from(body[pos]);
                pos += 1;
                if first == 255 {
                    let long = usize::from(body[pos]) * 256 + usize::from(body[pos + 1]);
                    pos += 2;
                    long
                } else {
                    first
                }
            } else {
                usize::from(len)
            };
            cols[i].push(body[pos..pos + len].to_vec());
            pos += len;
        }
    }
    if cols.first().is_none_or(Vec::is_empty) {
        return (None, 0);
    }
    let invalid = types
        .iter()
        .zip(&cols)
        .map(|(&(ty, len), values)| {
            values
                .iter()
                .filter(|v| match ty {
                    T::String => std::str::from_utf8(trim_string(len, v)).is_err(),
                    T::Boolean => !matches!(v[0], 1 | 2),
                    _ => false,
                })
                .count() as u64
        })
        .sum();
    let arrays: Vec<ArrayRef> = types
        .iter()
        .zip(cols)
        .map(|(&(ty, len), values)| build(ty, len, &values))
        .collect();
    (
        Some(RecordBatch::try_new(Arc::clone(program.schema()), arrays).unwrap()),
        invalid,
    )
}

/// A string field's octets without the NUL padding of a fixed-length field.
fn trim_string(len: u16, mut v: &[u8]) -> &[u8] {
    if len != VARIABLE_LENGTH {
        while let [rest @ .., 0] = v {
            v = rest;
        }
    }
    v
}

fn unsigned(b: &[u8]) -> u64 {
    let mut v = 0;
    for &x in b {
        v = v * 256 + u64::from(x);
    }
    v
}

fn signed(b: &[u8]) -> i64 {
    let v = unsigned(b);
    let bits = 8 * b.len();
    if bits < 64 && b[0] & 0x80 != 0 {
        (v as i64) - (1_i64 << bits)
    } else {
        v as i64
    }
}

fn ntp(b: &[u8], per_second: i64, mask: u64) -> i64 {
    let seconds = unsigned(&b[..4]) as i64 - 2_208_988_800;
    let fraction = unsigned(&b[4..]) & !mask;
    // To the nearest unit, as the VM reads it (exporters truncate, round or round up).
    seconds * per_second + ((fraction as i128 * per_second as i128 + (1_i128 << 31)) >> 32) as i64
}

fn build(ty: T, len: u16, values: &[Vec<u8>]) -> ArrayRef {
    macro_rules! col {
        ($builder:expr, $f:expr) => {{
            let mut b = $builder;
            for v in values {
                b.append_value($f(v.as_slice()));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match ty {
        T::Unsigned8 => col!(UInt8Builder::new(), |b| unsigned(b) as u8),
        T::Unsigned16 => col!(UInt16Builder::new(), |b| unsigned(b) as u16),
        T::Unsigned32 => col!(UInt32Builder::new(), |b| unsigned(b) as u32),
        T::Ipv4Address => col!(UInt32Builder::new(), |b| unsigned(b) as u32),
        T::Unsigned64 => col!(UInt64Builder::new(), unsigned),
        T::Signed8 => col!(Int8Builder::new(), |b| signed(b) as i8),
        T::Signed16 => col!(Int16Builder::new(), |b| signed(b) as i16),
        T::Signed32 => col!(Int32Builder::new(), |b| signed(b) as i32),
        T::Signed64 => col!(Int64Builder::new(), signed),
        T::Float32 => col!(
            Float32Builder::new(),
            |b| f32::from_bits(unsigned(b) as u32)
        ),
        T::Float64 if len == 4 => col!(Float64Builder::new(), |b| f64::from(f32::from_bits(
            unsigned(b) as u32
        ))),
        T::Float64 => col!(Float64Builder::new(), |b| f64::from_bits(unsigned(b))),
        T::Boolean => {
            let mut b = BooleanBuilder::new();
            for v in values {
                b.append_option(match v[0] {
                    1 => Some(true),
                    2 => Some(false),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        T::MacAddress | T::Ipv6Address => {
            let mut b = FixedSizeBinaryBuilder::new(if ty == T::MacAddress { 6 } else { 16 });
            for v in values {
                b.append_value(v).unwrap();
            }
            Arc::new(b.finish())
        }
        T::DateTimeSeconds => col!(
            TimestampSecondBuilder::new().with_timezone("UTC"),
            |b| unsigned(b) as i64
        ),
        T::DateTimeMilliseconds => col!(
            TimestampMillisecondBuilder::new().with_timezone("UTC"),
            |b| unsigned(b) as i64
        ),
        T::DateTimeMicroseconds => col!(
            TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            |b| ntp(b, 1_000_000, 0x7ff)
        ),
        T::DateTimeNanoseconds => col!(
            TimestampNanosecondBuilder::new().with_timezone("UTC"),
            |b| ntp(b, 1_000_000_000, 0)
        ),
        T::String => {
            let mut b = StringBuilder::new();
            for v in values {
                b.append_value(String::from_utf8_lossy(trim_string(len, v)));
            }
            Arc::new(b.finish())
        }
        T::OctetArray | T::BasicList | T::SubTemplateList | T::SubTemplateMultiList => {
            let mut b = BinaryBuilder::new();
            for v in values {
                b.append_value(v);
            }
            Arc::new(b.finish())
        }
    }
}

/// The type a field of `ty` in `len` octets is decoded as: its own for the lengths RFC 7011
/// §6.2 and §7 permit, a wider integer for an integer in more octets than its type (up to 8),
/// octets for every other length.
fn reading(ty: T, len: u16) -> T {
    let unsigned = [T::Unsigned8, T::Unsigned16, T::Unsigned32, T::Unsigned64];
    let signed = [T::Signed8, T::Signed16, T::Signed32, T::Signed64];
    let width = |types: [T; 4]| match len {
        1 => types[0],
        2 => types[1],
        3 | 4 => types[2],
        _ => types[3],
    };
    match ty.natural_len() {
        _ if len == 0 => T::OctetArray,
        None => ty,
        Some(_) if len == VARIABLE_LENGTH => T::OctetArray,
        Some(n) if len > 8 && len != n => T::OctetArray,
        Some(n) if unsigned.contains(&ty) && len > n => width(unsigned),
        Some(n) if signed.contains(&ty) && len > n => width(signed),
        Some(_) if unsigned.contains(&ty) || signed.contains(&ty) => ty,
        Some(_) if ty == T::Float64 && len == 4 => ty,
        Some(n) if len == n => ty,
        Some(_) => T::OctetArray,
    }
}

/// Field lengths an element of `ty` may be sent in: reduced sizes, fixed and variable lengths,
/// and lengths its type does not permit (integers up to 9 octets, one octet past a fixed type's
/// length, variable length for a fixed type), which the VM decodes all the same.
pub(crate) fn lengths(ty: T) -> Vec<u16> {
    match (ty, ty.natural_len()) {
        (T::Float64, _) => vec![4, 8, 3, VARIABLE_LENGTH],
        (
            T::Unsigned8
            | T::Unsigned16
            | T::Unsigned32
            | T::Unsigned64
            | T::Signed8
            | T::Signed16
            | T::Signed32
            | T::Signed64,
            Some(_),
        ) => (1..=9).chain([VARIABLE_LENGTH]).collect(),
        (_, Some(n)) => vec![n, n + 1, VARIABLE_LENGTH],
        (_, None) => vec![1, 3, 16, VARIABLE_LENGTH],
    }
}
