//! Chooses the instruction and column kind for one field from its abstract data type and
//! Field Length, including the lengths RFC 7011 §6.2 does not permit (a real exporter sends
//! them: Cisco's samplerId in 4 octets, pmacct's 16-octet flowStartMicroseconds).

use crate::ie::types::AbstractDataType;
use crate::op::Op;
use crate::program::{ColumnKind, Nonconformity};
use crate::wire::VARIABLE_LENGTH;

// A Field Length the type does not permit makes one field odd, not the Template or the
// Message malformed; and one odd field must not cost the rest of the record. So a template
// always compiles: a field with one unambiguous reading gets it, every other keeps its octets
// (COMPLIANCE.md, §6.2).
/// The read for a field of type `ty` and length `len` into column `col`, with how the field
/// departs from RFC 7011 §6.2 and §7 when it does:
///
/// - an integer sent in more octets than its type, up to 8, is read at the wire width into a
///   column wide enough for it ([`Nonconformity::WideInteger`]): no value is ever truncated;
/// - any other length the type does not permit keeps its raw octets
///   ([`Nonconformity::Raw`]), fixed or variable-length as sent.
pub(crate) fn read_op(
    ty: AbstractDataType,
    len: u16,
    col: u16,
) -> (Op, ColumnKind, Option<Nonconformity>) {
    if let Some((op, kind)) = permitted_read(ty, len, col) {
        return (op, kind, None);
    }
    if let Some((op, kind)) = wide_integer(ty, len, col) {
        return (op, kind, Some(Nonconformity::WideInteger));
    }
    let (op, kind) = octets(len, col);
    (op, kind, Some(Nonconformity::Raw))
}

/// An unsigned or signed integer in `len` octets, more than its type has and at most 8, read
/// at that width into the narrowest column that holds every value of it.
fn wide_integer(ty: AbstractDataType, len: u16, col: u16) -> Option<(Op, ColumnKind)> {
    use AbstractDataType as T;
    let short = u8::try_from(len).ok().filter(|l| (1..=8).contains(l))?;
    let natural = ty.natural_len()?;
    if len <= natural {
        return None;
    }
    Some(match (ty, short) {
        (T::Unsigned8, 2) => (Op::Rui16 { col, len: short }, ColumnKind::UInt16),
        (T::Unsigned8 | T::Unsigned16, 3 | 4) => {
            (Op::Rui32 { col, len: short }, ColumnKind::UInt32)
        }
        (T::Unsigned8 | T::Unsigned16 | T::Unsigned32, _) => {
            (Op::Rui64 { col, len: short }, ColumnKind::UInt64)
        }
        (T::Signed8, 2) => (Op::Rsi16 { col, len: short }, ColumnKind::Int16),
        (T::Signed8 | T::Signed16, 3 | 4) => (Op::Rsi32 { col, len: short }, ColumnKind::Int32),
        (T::Signed8 | T::Signed16 | T::Signed32, _) => {
            (Op::Rsi64 { col, len: short }, ColumnKind::Int64)
        }
        _ => return None,
    })
}

/// The field's octets as they are: fixed or variable-length.
fn octets(len: u16, col: u16) -> (Op, ColumnKind) {
    if len == VARIABLE_LENGTH {
        (Op::Rvoct { col }, ColumnKind::Binary)
    } else {
        (Op::Roct { col, len }, ColumnKind::Binary)
    }
}

/// The read RFC 7011 §6.2 and §7 define for `ty` in `len` octets, or `None` when the length
/// is not permitted for the type.
fn permitted_read(ty: AbstractDataType, len: u16, col: u16) -> Option<(Op, ColumnKind)> {
    use AbstractDataType as T;
    if !ty.permits(len) {
        return None;
    }
    let var = len == VARIABLE_LENGTH;
    // Every type with a natural length permits only lengths up to it (at most 16), so `short`
    // is exact wherever it is used below.
    let short = u8::try_from(len).unwrap_or(u8::MAX);
    Some(match ty {
        T::Unsigned8 => (Op::Rui8 { col }, ColumnKind::UInt8),
        T::Unsigned16 => (Op::Rui16 { col, len: short }, ColumnKind::UInt16),
        T::Unsigned32 => (Op::Rui32 { col, len: short }, ColumnKind::UInt32),
        T::Unsigned64 => (Op::Rui64 { col, len: short }, ColumnKind::UInt64),
        T::Signed8 => (Op::Rsi8 { col }, ColumnKind::Int8),
        T::Signed16 => (Op::Rsi16 { col, len: short }, ColumnKind::Int16),
        T::Signed32 => (Op::Rsi32 { col, len: short }, ColumnKind::Int32),
        T::Signed64 => (Op::Rsi64 { col, len: short }, ColumnKind::Int64),
        T::Float32 => (Op::Rf32 { col }, ColumnKind::Float32),
        T::Float64 => (Op::Rf64 { col, len: short }, ColumnKind::Float64),
        T::Boolean => (Op::Rbool { col }, ColumnKind::Boolean),
        T::MacAddress => (Op::Rmac { col }, ColumnKind::MacAddress),
        T::Ipv4Address => (Op::Rip4 { col }, ColumnKind::Ipv4Address),
        T::Ipv6Address => (Op::Rip6 { col }, ColumnKind::Ipv6Address),
        T::DateTimeSeconds => (Op::Rdts { col }, ColumnKind::TimestampSeconds),
        T::DateTimeMilliseconds => (Op::Rdtms { col }, ColumnKind::TimestampMilliseconds),
        T::DateTimeMicroseconds => (Op::Rdtus { col }, ColumnKind::TimestampMicroseconds),
        T::DateTimeNanoseconds => (Op::Rdtns { col }, ColumnKind::TimestampNanoseconds),
        T::String if var => (Op::Rvstr { col }, ColumnKind::Utf8),
        T::String => (Op::Rstr { col, len }, ColumnKind::Utf8),
        T::OctetArray | T::BasicList | T::SubTemplateList | T::SubTemplateMultiList => {
            octets(len, col)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_size_keeps_the_type_of_the_element() {
        assert_eq!(
            read_op(AbstractDataType::Unsigned64, 4, 2),
            (Op::Rui64 { col: 2, len: 4 }, ColumnKind::UInt64, None)
        );
        assert_eq!(
            read_op(AbstractDataType::Float64, 4, 0),
            (Op::Rf64 { col: 0, len: 4 }, ColumnKind::Float64, None)
        );
    }

    #[test]
    fn integers_wider_than_their_type_are_read_at_the_wire_width() {
        let wide = Some(Nonconformity::WideInteger);
        for (ty, len, op, kind) in [
            (
                AbstractDataType::Unsigned8,
                4,
                Op::Rui32 { col: 0, len: 4 },
                ColumnKind::UInt32,
            ),
            (
                AbstractDataType::Unsigned8,
                2,
                Op::Rui16 { col: 0, len: 2 },
                ColumnKind::UInt16,
            ),
            (
                AbstractDataType::Unsigned16,
                3,
                Op::Rui32 { col: 0, len: 3 },
                ColumnKind::UInt32,
            ),
            (
                AbstractDataType::Unsigned32,
                8,
                Op::Rui64 { col: 0, len: 8 },
                ColumnKind::UInt64,
            ),
            (
                AbstractDataType::Unsigned32,
                5,
                Op::Rui64 { col: 0, len: 5 },
                ColumnKind::UInt64,
            ),
            (
                AbstractDataType::Signed8,
                4,
                Op::Rsi32 { col: 0, len: 4 },
                ColumnKind::Int32,
            ),
            (
                AbstractDataType::Signed32,
                6,
                Op::Rsi64 { col: 0, len: 6 },
                ColumnKind::Int64,
            ),
        ] {
            assert_eq!(read_op(ty, len, 0), (op, kind, wide), "{ty} in {len}");
        }
    }

    #[test]
    fn lengths_without_one_reading_keep_their_octets() {
        let raw = Some(Nonconformity::Raw);
        for (ty, len) in [
            (AbstractDataType::Ipv4Address, 5),
            (AbstractDataType::Float64, 3),
            (AbstractDataType::Unsigned32, 0),
            (AbstractDataType::Unsigned64, 9),
            (AbstractDataType::DateTimeMicroseconds, 16),
            (AbstractDataType::MacAddress, 8),
            (AbstractDataType::Boolean, 2),
        ] {
            assert_eq!(
                read_op(ty, len, 0),
                (Op::Roct { col: 0, len }, ColumnKind::Binary, raw),
                "{ty} in {len}"
            );
        }
        assert_eq!(
            read_op(AbstractDataType::Unsigned8, VARIABLE_LENGTH, 3),
            (Op::Rvoct { col: 3 }, ColumnKind::Binary, raw)
        );
    }

    #[test]
    fn variable_length_strings_and_lists() {
        assert_eq!(
            read_op(AbstractDataType::String, VARIABLE_LENGTH, 1),
            (Op::Rvstr { col: 1 }, ColumnKind::Utf8, None)
        );
        assert_eq!(
            read_op(AbstractDataType::BasicList, VARIABLE_LENGTH, 1),
            (Op::Rvoct { col: 1 }, ColumnKind::Binary, None)
        );
        assert_eq!(
            read_op(AbstractDataType::String, 32, 1),
            (Op::Rstr { col: 1, len: 32 }, ColumnKind::Utf8, None)
        );
    }
}
