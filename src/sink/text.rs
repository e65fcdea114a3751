//! IPv6 and MAC addresses as text for the archive: `2001:db8::1` (RFC 5952),
//! `00:11:22:33:44:55`, so that a user filters on such an address as written
//! (`WHERE sourceIPv6Address = '2001:db8::1'`). IPv4 addresses are archived as the decoder
//! keeps them, `UInt32` (`10.1.1.3` is 0x0a01_0103; README, "The archive": four octets that
//! every reader compares, sorts and ranges over; `flowvm sql` gives DuckDB their text).
//!
//! The decoder keeps addresses binary; these become text here, on the archive thread, once per
//! batch. Nothing but the rare IPv4-mapped IPv6 address goes through `fmt`: each address is
//! written straight into the column's octets from tables, and kept by moving the column's end,
//! not by copying a slice of run-time length. The outputs are held to std's `Display` by tests
//! (IPv6 addresses of every zero-run shape, mapped ones of every IPv4 octet).

use std::io::Write;
use std::net::Ipv6Addr;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema};

/// Rewrites ipv6Address and macAddress columns as text; columns already text (a journal
/// written before journals kept addresses typed) stay as they are, and so do ipv4Address
/// columns.
///
/// # Errors
/// A column of one of those types that is neither text nor the decoder's binary type.
pub fn addresses_as_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let kinds: Vec<Option<Kind>> = schema
        .fields()
        .iter()
        .map(|field| kind(field).filter(|_| field.data_type() != &DataType::Utf8))
        .collect();
    if kinds.iter().all(Option::is_none) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(kinds.len());
    let mut columns = Vec::with_capacity(kinds.len());
    for ((field, column), kind) in schema.fields().iter().zip(batch.columns()).zip(&kinds) {
        match kind {
            Some(kind) => {
                columns.push(text(column, *kind)?);
                fields.push(
                    Field::new(field.name(), DataType::Utf8, field.is_nullable())
                        .with_metadata(field.metadata().clone()),
                );
            }
            None => {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// The address types written as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ipv6,
    Mac,
}

/// The IPFIX data type the decoder noted for the column `field`.
fn data_type(field: &Field) -> Option<&str> {
    field.metadata().get("ipfix.data_type").map(String::as_str)
}

/// The address type of the column `field` if it is archived as text.
fn kind(field: &Field) -> Option<Kind> {
    match data_type(field) {
        Some("ipv6Address") => Some(Kind::Ipv6),
        Some("macAddress") => Some(Kind::Mac),
        _ => None,
    }
}

/// Whether `field` holds addresses (IPv4, IPv6 or MAC; binary as decoded, or text as
/// archived).
pub fn is_address(field: &Field) -> bool {
    matches!(
        data_type(field),
        Some("ipv4Address" | "ipv6Address" | "macAddress")
    )
}

/// The most octets each writer stores, and so the room each row is given in the column while
/// it is written: for MAC the longest text and the separator after its last part; for IPv6
/// eight four-digit groups and seven colons (an IPv4-mapped address takes at most 22).
const MAC_WIDTH: usize = 18;
const IPV6_WIDTH: usize = 39;

/// `text(column, kind)`: the column's addresses as a text column with its nulls.
fn text(column: &ArrayRef, kind: Kind) -> Result<ArrayRef, ArrowError> {
    let invalid = || {
        ArrowError::InvalidArgumentError(format!("{kind:?} column of type {}", column.data_type()))
    };
    match kind {
        Kind::Ipv6 => octets_text::<16>(column, IPV6_WIDTH, ipv6_text).ok_or_else(invalid)?,
        Kind::Mac => octets_text::<6>(column, MAC_WIDTH, mac_text).ok_or_else(invalid)?,
    }
}

/// The text column of a column of `N`-octet addresses, each written by `write` (at most
/// `width` octets); `None` when `column` holds no such addresses.
fn octets_text<const N: usize>(
    column: &ArrayRef,
    width: usize,
    write: fn([u8; N], &mut [u8]) -> usize,
) -> Option<Result<ArrayRef, ArrowError>> {
    let values = column
        .as_fixed_size_binary_opt()
        .filter(|v| usize::try_from(v.value_length()) == Ok(N))?;
    Some(text_column(column, width, |i, out| {
        write(
            values
                .value(i)
                .first_chunk::<N>()
                .copied()
                .unwrap_or([0; N]),
            out,
        )
    }))
}

/// A text column as long as `column`, with its nulls; `put(row, out)` writes each other row's
/// text (ASCII, storing at most the `width` octets of `out`, the text no longer) at the
/// column's end and returns its length. Offsets and octets are built directly, and the text is
/// checked as UTF-8 once for the whole column.
fn text_column(
    column: &ArrayRef,
    width: usize,
    mut put: impl FnMut(usize, &mut [u8]) -> usize,
) -> Result<ArrayRef, ArrowError> {
    let rows = column.len();
    let too_long = || ArrowError::InvalidArgumentError("text column too long".to_owned());
    // Every row is given `width` octets at the column's end; the end moves only by the text's
    // length, so the octets past it are overwritten by the next row. Room for every row at its
    // widest keeps the last row's inside.
    let mut octets = vec![0_u8; rows * width];
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0_i32);
    let nulls = column.logical_nulls();
    let mut end = 0;
    for i in 0..rows {
        if nulls.as_ref().is_none_or(|n| n.is_valid(i))
            && let Some(out) = octets.get_mut(end..end + width)
        {
            end += put(i, out).min(width);
        }
        offsets.push(i32::try_from(end).map_err(|_| too_long())?);
    }
    octets.truncate(end);
    Ok(Arc::new(StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(octets),
        nulls,
    )?))
}

/// Lower-case hexadecimal digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `octets` as six pairs of lower-case hex digits joined by colons at the start of
/// `out`; returns 17.
fn mac_text(octets: [u8; 6], out: &mut [u8]) -> usize {
    for (i, octet) in octets.into_iter().enumerate() {
        if let Some(out) = out.get_mut(i * 3..i * 3 + 3) {
            out.copy_from_slice(&[
                HEX[usize::from(octet >> 4)],
                HEX[usize::from(octet & 0x0f)],
                b':',
            ]);
        }
    }
    17
}

/// Writes `octets` as `Ipv6Addr`'s `Display` does (RFC 5952: lower case, no leading zeros,
/// the longest run of two or more zero groups, the first of equals, as `::`; an IPv4-mapped
/// address as `::ffff:a.b.c.d`) at the start of `out`; returns the text's length.
fn ipv6_text(octets: [u8; 16], out: &mut [u8]) -> usize {
    let groups: [u16; 8] = std::array::from_fn(|i| {
        u16::from_be_bytes([
            octets.get(2 * i).copied().unwrap_or(0),
            octets.get(2 * i + 1).copied().unwrap_or(0),
        ])
    });
    let address = Ipv6Addr::from(octets);
    if address.to_ipv4_mapped().is_some() {
        // Rare: written by `Display` itself (at most 22 octets, inside the room).
        let room = out.len();
        let mut rest = &mut *out;
        return match write!(rest, "{address}") {
            Ok(()) => room - rest.len(),
            Err(_) => 0,
        };
    }
    // The longest run of zero groups (the first of equals), if at least two long.
    let (mut best_at, mut best_len, mut run_at, mut run_len) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run_len == 0 {
                run_at = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best_at, best_len) = (run_at, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    let elided = if best_len >= 2 {
        best_at..best_at + best_len
    } else {
        0..0
    };
    let mut at = 0;
    let mut put = |b: u8, at: &mut usize| {
        if let Some(out) = out.get_mut(*at) {
            *out = b;
        }
        *at += 1;
    };
    let mut i = 0;
    while i < 8 {
        if i == elided.start && !elided.is_empty() {
            put(b':', &mut at);
            put(b':', &mut at);
            i = elided.end;
            continue;
        }
        if i > 0 && i != elided.end {
            put(b':', &mut at);
        }
        let g = groups.get(i).copied().unwrap_or(0);
        let digits = (16 - g.leading_zeros()).div_ceil(4).max(1);
        for d in (0..digits).rev() {
            put(HEX[usize::from((g >> (4 * d)) & 0xf)], &mut at);
        }
        i += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::FixedSizeBinaryArray;
    use proptest::prelude::*;

    use super::*;

    fn ipv6(octets: [u8; 16]) -> String {
        let mut out = [0; IPV6_WIDTH];
        let len = ipv6_text(octets, &mut out);
        String::from_utf8(out[..len].to_vec()).unwrap()
    }

    #[test]
    fn ipv4_mapped_text_is_std_dotted_decimal_for_every_octet_and_width() {
        for address in [0, u32::MAX, 0x0a01_0103, 0x6400_09ff, 0xc0a8_0001]
            .into_iter()
            .chain((0..=255).map(|o| o * 0x0101_0101))
            .chain((0..=255).map(|o| o << 24 | 0x0001_0a64))
        {
            let mapped = std::net::Ipv4Addr::from(address).to_ipv6_mapped();
            assert_eq!(ipv6(mapped.octets()), mapped.to_string());
        }
    }

    #[test]
    fn ipv6_text_is_rfc_5952_as_std_writes_it() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:1:1:1:1:1",
            "2001:0:0:1::1",
            "2001:db8::1:0:0:1",
            "fe80::1:2:3:4",
            "1:2:3:4:5:6:7:8",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.1",
            "::ffff:0.0.0.0",
            "::192.0.2.1",
            "64:ff9b::c000:201",
            "0:1:0:1:0:1:0:1",
            "1:0:0:2:0:0:0:3",
        ] {
            let address: Ipv6Addr = text.parse().unwrap();
            assert_eq!(ipv6(address.octets()), address.to_string(), "{text}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, failure_persistence: None, ..ProptestConfig::default() })]

        /// Every shape of zero groups, written as std writes it.
        #[test]
        fn ipv6_text_agrees_with_std_display(
            groups in proptest::array::uniform8(prop_oneof![Just(0_u16), Just(1), Just(0xffff), any::<u16>()]),
        ) {
            let address = Ipv6Addr::from(groups);
            prop_assert_eq!(ipv6(address.octets()), address.to_string());
        }

        #[test]
        fn ipv4_mapped_text_agrees_with_std_display(address in any::<u32>()) {
            let mapped = std::net::Ipv4Addr::from(address).to_ipv6_mapped();
            prop_assert_eq!(ipv6(mapped.octets()), mapped.to_string());
        }
    }

    #[test]
    fn null_addresses_stay_null_as_text() {
        let mac: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                [Some([0_u8, 0x1b, 0x2c, 0x3d, 0x4e, 0xff]), None].into_iter(),
                6,
            )
            .unwrap(),
        );
        let mac = text(&mac, Kind::Mac).unwrap();
        assert_eq!(mac.as_string::<i32>().value(0), "00:1b:2c:3d:4e:ff");
        assert!(mac.is_null(1));
        let v6: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                [None, Some(Ipv6Addr::LOCALHOST.octets())].into_iter(),
                16,
            )
            .unwrap(),
        );
        let v6 = text(&v6, Kind::Ipv6).unwrap();
        assert!(v6.is_null(0));
        assert_eq!(v6.as_string::<i32>().value(1), "::1");
    }

    #[test]
    fn a_column_of_the_wrong_width_is_an_error_not_a_panic() {
        let column: ArrayRef =
            Arc::new(FixedSizeBinaryArray::try_from_iter([[1_u8, 2, 3, 4]].into_iter()).unwrap());
        assert!(text(&column, Kind::Ipv6).is_err());
        assert!(text(&column, Kind::Mac).is_err());
    }

    #[test]
    fn addresses_become_text_once_so_journals_of_either_kind_complete() {
        let field = |name, data_type, ipfix: &str| {
            Field::new(name, data_type, true).with_metadata(HashMap::from([(
                "ipfix.data_type".to_owned(),
                ipfix.to_owned(),
            )]))
        };
        let typed = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                field("sourceIPv4Address", DataType::UInt32, "ipv4Address"),
                field(
                    "sourceIPv6Address",
                    DataType::FixedSizeBinary(16),
                    "ipv6Address",
                ),
            ])),
            vec![
                Arc::new(arrow_array::UInt32Array::from(vec![0xc000_0201])),
                Arc::new(
                    FixedSizeBinaryArray::try_from_iter([Ipv6Addr::LOCALHOST.octets()].into_iter())
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let once = addresses_as_text(&typed).unwrap();
        // IPv4 stays the decoder's UInt32, with its field as it was.
        assert_eq!(once.schema().field(0), typed.schema().field(0));
        assert_eq!(once.column(0), typed.column(0));
        assert_eq!(once.column(1).as_string::<i32>().value(0), "::1");
        assert_eq!(once.schema().field(1).data_type(), &DataType::Utf8);
        // A journal written when journals held text: left as it is.
        assert_eq!(addresses_as_text(&once).unwrap(), once);
    }
}
