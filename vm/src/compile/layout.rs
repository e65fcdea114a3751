//! Chooses the instruction and column kind for one field from its abstract data type and
//! Field Length.

use crate::ie::types::AbstractDataType;
use crate::op::Op;
use crate::program::ColumnKind;
use crate::wire::VARIABLE_LENGTH;

/// The read for a field of type `ty` and length `len` into column `col`, or `None` when the
/// length is not permitted for the type (RFC 7011 §6.2, §7).
pub(crate) fn read_op(ty: AbstractDataType, len: u16, col: u16) -> Option<(Op, ColumnKind)> {
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
        T::OctetArray | T::BasicList | T::SubTemplateList | T::SubTemplateMultiList if var => {
            (Op::Rvoct { col }, ColumnKind::Binary)
        }
        T::OctetArray | T::BasicList | T::SubTemplateList | T::SubTemplateMultiList => {
            (Op::Roct { col, len }, ColumnKind::Binary)
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
            Some((Op::Rui64 { col: 2, len: 4 }, ColumnKind::UInt64))
        );
        assert_eq!(
            read_op(AbstractDataType::Float64, 4, 0),
            Some((Op::Rf64 { col: 0, len: 4 }, ColumnKind::Float64))
        );
    }

    #[test]
    fn refuses_lengths_the_type_does_not_permit() {
        for (ty, len) in [
            (AbstractDataType::Ipv4Address, 5),
            (AbstractDataType::Float64, 3),
            (AbstractDataType::Unsigned32, 0),
            (AbstractDataType::Unsigned32, 5),
            (AbstractDataType::Unsigned8, VARIABLE_LENGTH),
            (AbstractDataType::DateTimeMicroseconds, 16),
            (AbstractDataType::MacAddress, 8),
            (AbstractDataType::Boolean, 2),
        ] {
            assert_eq!(read_op(ty, len, 0), None, "{ty} in {len}");
        }
    }

    #[test]
    fn variable_length_strings_and_lists() {
        assert_eq!(
            read_op(AbstractDataType::String, VARIABLE_LENGTH, 1),
            Some((Op::Rvstr { col: 1 }, ColumnKind::Utf8))
        );
        assert_eq!(
            read_op(AbstractDataType::BasicList, VARIABLE_LENGTH, 1),
            Some((Op::Rvoct { col: 1 }, ColumnKind::Binary))
        );
        assert_eq!(
            read_op(AbstractDataType::String, 32, 1),
            Some((Op::Rstr { col: 1, len: 32 }, ColumnKind::Utf8))
        );
    }
}
