//! Text columns written without a dictionary and without statistics (the addresses of many
//! hosts, as the archive writes them): a page's values are gathered into one buffer of octets
//! and one of lengths, each value once, and encoded from there: `DELTA_LENGTH_BYTE_ARRAY` (the
//! lengths, `DELTA_BINARY_PACKED`, then the values back to back) or `DELTA_BYTE_ARRAY` (front
//! coding: the length of the prefix each value shares with the one before it in the page, then
//! the rest as `DELTA_LENGTH_BYTE_ARRAY`), as chosen for the column.

use arrow_array::cast::AsArray;
use arrow_array::{Array, StringArray};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::schema::types::ColumnDescPtr;

use super::{PAGE_VALUES, Pages, Validity, delta_binary_packed};

/// zstd's match-finder table for text chunks: 2^12 entries (16 KiB) instead of level 1's
/// 2^14 for pages this size. Addresses of many hosts repeat little, so the codec's time goes
/// to looking for matches, and a table that stays in the first-level cache finds nearly as
/// many: softflowd's destinations 34 ns a row instead of 43 for 5.62 octets instead of 5.44
/// (2^13: 38 ns and 5.49; 2^11: 32 ns and 5.80; README, Figures). The frames are ordinary zstd:
/// readers see no difference.
const TEXT_HASH_LOG: u32 = 12;

/// The column chunk of one text column in the row group being written.
pub struct TextChunk {
    pages: Pages,
    /// `DELTA_BYTE_ARRAY` (front coding), else `DELTA_LENGTH_BYTE_ARRAY`.
    prefixed: bool,
    validity: Validity,
    /// The page in progress, its non-null values: front-coded, the prefix each shares with the
    /// value before it; the length of each (of what follows its prefix); and their octets (of
    /// what follows the prefixes).
    prefixes: Vec<i64>,
    lengths: Vec<i64>,
    octets: Vec<u8>,
    /// Front-coded, the page's last value before the array being appended (its first value's
    /// prefix is shared with it).
    previous: Vec<u8>,
}

impl std::fmt::Debug for TextChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextChunk")
            .field("column", &self.pages.descr.path())
            .field("prefixed", &self.prefixed)
            .field("compression", &self.pages.compression)
            .finish_non_exhaustive()
    }
}

impl TextChunk {
    /// Whether columns of `data_type` can be written by a text chunk.
    pub fn supports(data_type: &DataType) -> bool {
        data_type == &DataType::Utf8
    }

    /// An empty chunk of the text column `descr`, its values written as `encoding`
    /// (`DELTA_LENGTH_BYTE_ARRAY` or `DELTA_BYTE_ARRAY`) and its pages compressed as
    /// `compression` (none, zstd or LZ4_RAW).
    ///
    /// # Errors
    /// Another encoding or codec, or a zstd level zstd refuses.
    pub fn new(descr: ColumnDescPtr, encoding: Encoding, compression: Compression) -> Result<Self> {
        let prefixed = match encoding {
            Encoding::DELTA_BYTE_ARRAY => true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY => false,
            other => {
                return Err(ParquetError::NYI(format!("text chunks written as {other}")));
            }
        };
        Ok(Self {
            pages: Pages::with_hash_log(descr, compression, Some(TEXT_HASH_LOG))?,
            prefixed,
            validity: Validity::default(),
            prefixes: Vec::new(),
            lengths: Vec::new(),
            octets: Vec::new(),
            previous: Vec::new(),
        })
    }

    /// Appends the values of `array`, pages written as they fill.
    ///
    /// # Errors
    /// `array` is not text, or compressing a page failed.
    pub fn write(&mut self, array: &dyn Array) -> Result<()> {
        let Some(array) = array.as_string_opt::<i32>() else {
            return Err(ParquetError::General(format!(
                "a text chunk cannot hold {}",
                array.data_type()
            )));
        };
        let mut start = 0;
        while start < array.len() {
            let take = (PAGE_VALUES - self.validity.rows).min(array.len() - start);
            self.append(&array.slice(start, take));
            start += take;
            if self.validity.rows == PAGE_VALUES {
                self.write_page()?;
            }
        }
        Ok(())
    }

    /// Appends `array`, which fits in the page in progress.
    fn append(&mut self, array: &StringArray) {
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        if self.prefixed {
            // Each value's prefix is shared with the value before it: the array's, or for its
            // first, the page's last before the array (kept once an array, not once a value).
            let mut before: Option<&[u8]> = None;
            for value in array.iter().flatten().map(str::as_bytes) {
                let shared = shared_prefix(before.unwrap_or(&self.previous), value);
                self.prefixes.push(i64::try_from(shared).unwrap_or(0));
                self.lengths
                    .push(i64::try_from(value.len() - shared).unwrap_or(0));
                self.octets.extend_from_slice(&value[shared..]);
                before = Some(value);
            }
            if let Some(last) = before {
                self.previous.clear();
                self.previous.extend_from_slice(last);
            }
        } else if nulls.is_none() {
            let offsets = array.value_offsets();
            let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
            let values = array.value_data();
            self.octets.extend_from_slice(
                &values[usize::try_from(first).unwrap_or(0)..usize::try_from(last).unwrap_or(0)],
            );
            self.lengths
                .extend(offsets.windows(2).map(|w| i64::from(w[1] - w[0])));
        } else {
            for value in array.iter().flatten() {
                self.lengths.push(i64::try_from(value.len()).unwrap_or(0));
                self.octets.extend_from_slice(value.as_bytes());
            }
        }
        self.validity.extend(array.len(), nulls);
    }

    /// Octets the chunk holds so far (its pages, and the page in progress unencoded).
    pub fn size(&self) -> usize {
        self.pages.size() + self.octets.len() + 4 * (self.lengths.len() + self.prefixes.len())
    }

    /// Writes the page in progress.
    fn write_page(&mut self) -> Result<()> {
        if self.validity.rows == 0 {
            return Ok(());
        }
        let mut body = self.pages.begin(&self.validity);
        // Lengths are INT32 values.
        if self.prefixed {
            delta_binary_packed(&mut body, &self.prefixes, false);
        }
        delta_binary_packed(&mut body, &self.lengths, false);
        body.extend_from_slice(&self.octets);
        let encoding = if self.prefixed {
            Encoding::DELTA_BYTE_ARRAY
        } else {
            Encoding::DELTA_LENGTH_BYTE_ARRAY
        };
        self.pages.write(body, &self.validity, encoding)?;
        self.validity.clear();
        self.prefixes.clear();
        self.lengths.clear();
        self.octets.clear();
        self.previous.clear();
        Ok(())
    }

    /// The chunk's octets and what its row group needs to take them in
    /// (`SerializedRowGroupWriter::append_column`), without statistics; the next row group's
    /// chunk begins, with the same codec context and buffers.
    ///
    /// # Errors
    /// Compressing the last page or building the metadata failed.
    pub fn finish(&mut self) -> Result<(Bytes, ColumnCloseResult)> {
        self.write_page()?;
        self.pages.finish(None, None)
    }
}

/// How many octets `a` and `b` begin with in common: compared 8 at a time.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while let (Some(x), Some(y)) = (a.get(i..i + 8), b.get(i..i + 8)) {
        let differ = u64::from_le_bytes(x.try_into().unwrap_or_default())
            ^ u64::from_le_bytes(y.try_into().unwrap_or_default());
        if differ != 0 {
            return i + (differ.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::RecordBatch;
    use arrow_schema::{Field, Schema};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use proptest::prelude::*;

    use super::*;
    use crate::sink::chunk::{codecs, round_trip};

    /// A batch of one nullable text column of `values`.
    fn batch(values: &[Option<String>]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from_iter(values.iter().cloned()))],
        )
        .unwrap()
    }

    /// Text without a dictionary or statistics, written `encoding`.
    fn properties(encoding: Encoding, compression: Compression) -> WriterProperties {
        WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_encoding(encoding)
            .set_compression(compression)
            .set_max_row_group_row_count(Some(30_000))
            .build()
    }

    #[test]
    fn addresses_read_back_as_written_across_pages_and_row_groups() {
        // Sources in order (long shared prefixes, across the page boundary), scattered
        // destinations, nulls, an empty value, and text of more than one octet a character.
        let values: Vec<Option<String>> = (0..40_000_u32)
            .map(|i| match i % 1000 {
                7 => None,
                8 => Some(String::new()),
                9 => Some("ünïcødé ✓".to_owned()),
                _ if i % 2 == 0 => Some(std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()),
                _ => Some(std::net::Ipv4Addr::from(i.wrapping_mul(0x9e37_79b9)).to_string()),
            })
            .collect();
        let whole = batch(&values);
        let batches: Vec<RecordBatch> = (0..whole.num_rows())
            .step_by(7_000)
            .map(|start| whole.slice(start, 7_000.min(whole.num_rows() - start)))
            .collect();
        for encoding in [
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
            Encoding::DELTA_BYTE_ARRAY,
        ] {
            for compression in codecs() {
                let (read, chunks) = round_trip(&batches, properties(encoding, compression));
                assert_eq!(read, whole, "{encoding} {compression}");
                let mut encodings = chunks[0].0.clone();
                encodings.sort_by_key(|e| *e as u8);
                let mut expected = [encoding, Encoding::RLE];
                expected.sort_by_key(|e| *e as u8);
                assert_eq!(encodings, expected);
                assert!(chunks[0].1.is_none());
            }
        }
    }

    #[test]
    fn shared_prefixes_are_counted_eight_octets_at_a_time_and_then_one_by_one() {
        assert_eq!(shared_prefix(b"", b"abc"), 0);
        assert_eq!(shared_prefix(b"10.0.0.1", b"10.0.0.12"), 8);
        assert_eq!(shared_prefix(b"192.168.100.1", b"192.168.100.7"), 12);
        assert_eq!(shared_prefix(b"192.168.1", b"192.169.1"), 6);
        assert_eq!(shared_prefix(b"same", b"same"), 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_text_and_batches_read_back_as_written(
            values in prop::collection::vec(
                prop::option::weighted(0.9, "(10\\.[0-9]{1,3}\\.|ab|é|)[a-z0-9.:é]{0,12}"),
                1..2_500,
            ),
            cuts in prop::collection::vec(1..700_usize, 1..6),
            prefixed in any::<bool>(),
            codec in 0..3_usize,
        ) {
            let whole = batch(&values);
            let mut batches = Vec::new();
            let mut start = 0;
            for size in cuts.iter().cycle() {
                if start >= whole.num_rows() {
                    break;
                }
                let size = (*size).min(whole.num_rows() - start);
                batches.push(whole.slice(start, size));
                start += size;
            }
            let encoding = if prefixed {
                Encoding::DELTA_BYTE_ARRAY
            } else {
                Encoding::DELTA_LENGTH_BYTE_ARRAY
            };
            let (read, _) = round_trip(&batches, properties(encoding, codecs()[codec]));
            prop_assert_eq!(read, whole);
        }
    }
}
