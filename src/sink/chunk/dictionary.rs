//! Text columns that come as Arrow dictionaries (the exporter, the exporter's identity: a few
//! values over many rows), written `RLE_DICTIONARY`: each distinct value is looked up once an
//! array (not once a row, as arrow-rs's writer does), and a page's rows are kept as runs of one
//! dictionary index, written as the RLE/bit-packed hybrid's RLE runs. The dictionary page
//! (the values `PLAIN`) goes first in the chunk. Past [`WriterProperties`]'s dictionary page
//! size the chunk's dictionary stops growing and its later pages are written `PLAIN`, as
//! arrow-rs's writer does. The chunk's statistics are the least and greatest value written.
//!
//! [`WriterProperties`]: parquet::file::properties::WriterProperties

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, StringArray};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::{PAGE_VALUES, Pages, Validity, index_width, uleb128};

/// The column chunk of one dictionary-encoded text column in the row group being written.
pub struct DictionaryChunk {
    pages: Pages,
    /// The dictionary page's size past which the dictionary stops growing.
    limit: usize,
    /// Whether the chunk's least and greatest are written.
    statistics: bool,
    validity: Validity,
    /// The chunk's dictionary: its values `PLAIN` (each a 4-octet length and the octets), how
    /// many, and where each begins.
    dictionary: Vec<u8>,
    entries: u32,
    offsets: Vec<usize>,
    /// Each value's index in the dictionary (looked up once for each distinct value of an
    /// array, so std's hasher costs nothing that shows).
    index: HashMap<Box<[u8]>, u32>,
    /// Whether the dictionary is full: the pages from the one in progress on are `PLAIN`.
    full: bool,
    /// The page in progress: its non-null rows as runs of one index (index, rows) while the
    /// dictionary grows, or their values `PLAIN` once it is full.
    runs: Vec<(u32, u32)>,
    plain: Vec<u8>,
    /// The least and greatest value of the chunk so far (unsigned octet order, as UTF-8 sorts).
    least: Option<Box<[u8]>>,
    greatest: Option<Box<[u8]>>,
}

impl std::fmt::Debug for DictionaryChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DictionaryChunk")
            .field("column", &self.pages.descr.path())
            .field("entries", &self.entries)
            .field("full", &self.full)
            .finish_non_exhaustive()
    }
}

impl DictionaryChunk {
    /// Whether columns of `data_type` can be written by a dictionary chunk: dictionaries of
    /// text under 32-bit unsigned keys, as the collector makes them.
    pub fn supports(data_type: &DataType) -> bool {
        matches!(data_type, DataType::Dictionary(key, value)
            if **key == DataType::UInt32 && **value == DataType::Utf8)
    }

    /// An empty chunk of the column `descr`, its dictionary page at most `limit` octets, its
    /// pages compressed as `compression` (none, zstd or LZ4_RAW), with the chunk's
    /// `statistics` or none.
    ///
    /// # Errors
    /// Another codec, or a zstd level zstd refuses.
    pub fn new(
        descr: ColumnDescPtr,
        limit: usize,
        compression: Compression,
        statistics: bool,
    ) -> Result<Self> {
        Ok(Self {
            pages: Pages::new(descr, compression)?,
            limit,
            statistics,
            validity: Validity::default(),
            dictionary: Vec::new(),
            entries: 0,
            offsets: Vec::new(),
            index: HashMap::new(),
            full: false,
            runs: Vec::new(),
            plain: Vec::new(),
            least: None,
            greatest: None,
        })
    }

    /// Appends the values of `array`, pages written as they fill.
    ///
    /// # Errors
    /// `array` is not such a dictionary, or compressing a page failed.
    pub fn write(&mut self, array: &dyn Array) -> Result<()> {
        let Some(array) = array.as_dictionary_opt::<UInt32Type>() else {
            return Err(ParquetError::General(format!(
                "a dictionary chunk cannot hold {}",
                array.data_type()
            )));
        };
        let Some(values) = array.values().as_string_opt::<i32>() else {
            return Err(ParquetError::General(
                "a dictionary chunk holds text only".to_owned(),
            ));
        };
        // Each of the array's values' index in the chunk's dictionary, once it is used.
        let mut remap: Vec<Option<u32>> = vec![None; values.len()];
        let keys = array.keys().values();
        // A row is null when its key is, or the value its key names.
        let nulls = array.logical_nulls();
        let mut start = 0;
        while start < keys.len() {
            let take = (PAGE_VALUES - self.validity.rows).min(keys.len() - start);
            let page_nulls = nulls.as_ref().map(|n| n.slice(start, take));
            for (i, &key) in keys[start..start + take].iter().enumerate() {
                if page_nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                    self.append(values, key, &mut remap)?;
                }
            }
            self.validity.extend(take, page_nulls.as_ref());
            start += take;
            if self.validity.rows == PAGE_VALUES {
                self.write_page()?;
            }
        }
        Ok(())
    }

    /// Appends the row of the array's value `key`.
    fn append(&mut self, values: &StringArray, key: u32, remap: &mut [Option<u32>]) -> Result<()> {
        let slot = usize::try_from(key).unwrap_or(usize::MAX);
        if !self.full {
            if let Some(Some(index)) = remap.get(slot) {
                match self.runs.last_mut() {
                    Some((last, rows)) if last == index => *rows += 1,
                    _ => self.runs.push((*index, 1)),
                }
                return Ok(());
            }
            let value = value_at(values, slot)?;
            if let Some(index) = self.intern(value) {
                if let Some(entry) = remap.get_mut(slot) {
                    *entry = Some(index);
                }
                self.runs.push((index, 1));
                return Ok(());
            }
            // The dictionary is full: the page in progress and the rest are plain.
            self.full = true;
            self.plain_runs();
        }
        let value = value_at(values, slot)?;
        self.extremes(value);
        self.plain.extend_from_slice(&length(value).to_le_bytes());
        self.plain.extend_from_slice(value);
        Ok(())
    }

    /// `value`'s index in the dictionary, added if new; `None` when adding it would take the
    /// dictionary past its size (the first entry is always taken).
    fn intern(&mut self, value: &[u8]) -> Option<u32> {
        if let Some(&index) = self.index.get(value) {
            return Some(index);
        }
        if self.dictionary.len() + 4 + value.len() > self.limit && self.entries > 0 {
            return None;
        }
        let index = self.entries;
        self.entries += 1;
        self.offsets.push(self.dictionary.len());
        self.dictionary
            .extend_from_slice(&length(value).to_le_bytes());
        self.dictionary.extend_from_slice(value);
        self.index.insert(value.into(), index);
        self.extremes(value);
        Some(index)
    }

    /// The page's runs so far as plain values: each entry as the dictionary holds it.
    fn plain_runs(&mut self) {
        for (index, rows) in self.runs.drain(..) {
            let start = self.offsets.get(index as usize).copied().unwrap_or(0);
            let end = self
                .offsets
                .get(index as usize + 1)
                .copied()
                .unwrap_or(self.dictionary.len());
            if let Some(entry) = self.dictionary.get(start..end) {
                for _ in 0..rows {
                    self.plain.extend_from_slice(entry);
                }
            }
        }
    }

    /// Folds `value` into the chunk's least and greatest.
    fn extremes(&mut self, value: &[u8]) {
        if self.least.as_deref().is_none_or(|least| value < least) {
            self.least = Some(value.into());
        }
        if self
            .greatest
            .as_deref()
            .is_none_or(|greatest| value > greatest)
        {
            self.greatest = Some(value.into());
        }
    }

    /// Octets the chunk holds so far, about.
    pub fn size(&self) -> usize {
        self.pages.size() + self.dictionary.len() + self.plain.len() + 8 * self.runs.len()
    }

    /// Writes the page in progress.
    fn write_page(&mut self) -> Result<()> {
        if self.validity.rows == 0 {
            return Ok(());
        }
        let mut body = self.pages.begin(&self.validity);
        let encoding = if self.full || self.runs.is_empty() {
            body.extend_from_slice(&self.plain);
            Encoding::PLAIN
        } else {
            // The indices' width (at least one bit), then each run: its length and its index
            // in as many octets as the width takes.
            let width = index_width(self.entries);
            let octets = usize::try_from(width.div_ceil(8)).unwrap_or(4);
            body.push(width.to_le_bytes()[0]);
            for &(index, rows) in &self.runs {
                uleb128(&mut body, u64::from(rows) << 1);
                body.extend_from_slice(&index.to_le_bytes()[..octets]);
            }
            Encoding::RLE_DICTIONARY
        };
        self.pages.write(body, &self.validity, encoding)?;
        self.validity.clear();
        self.runs.clear();
        self.plain.clear();
        Ok(())
    }

    /// The chunk's octets and what its row group needs to take them in
    /// (`SerializedRowGroupWriter::append_column`), its dictionary page first; the next row
    /// group's chunk begins with an empty dictionary, and the same codec context.
    ///
    /// # Errors
    /// Compressing the last page or building the metadata failed.
    pub fn finish(&mut self) -> Result<(Bytes, ColumnCloseResult)> {
        self.write_page()?;
        let nulls = self.pages.nulls;
        let (least, greatest) = (self.least.take(), self.greatest.take());
        let statistics = self.statistics.then(|| {
            Statistics::ByteArray(ValueStatistics::new(
                least.map(|v| ByteArray::from(v.into_vec())),
                greatest.map(|v| ByteArray::from(v.into_vec())),
                None,
                Some(nulls),
                false,
            ))
        });
        let entries = usize::try_from(self.entries).unwrap_or(usize::MAX);
        let dictionary = std::mem::take(&mut self.dictionary);
        let finished = self.pages.finish(
            (entries > 0).then_some((dictionary.as_slice(), entries)),
            statistics,
        );
        self.dictionary = dictionary;
        self.dictionary.clear();
        self.entries = 0;
        self.offsets.clear();
        self.index.clear();
        self.full = false;
        finished
    }
}

/// The octets of `values`' value at `slot`.
fn value_at(values: &StringArray, slot: usize) -> Result<&[u8]> {
    if slot >= values.len() {
        return Err(ParquetError::General(format!(
            "a dictionary key {slot} past its {} values",
            values.len()
        )));
    }
    Ok(values.value(slot).as_bytes())
}

/// The 4-octet length `PLAIN` puts before a value.
fn length(value: &[u8]) -> u32 {
    u32::try_from(value.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{DictionaryArray, RecordBatch, UInt32Array};
    use arrow_schema::{Field, Schema};
    use parquet::file::properties::WriterProperties;
    use proptest::prelude::*;

    use super::*;
    use crate::sink::chunk::{codecs, round_trip};

    /// A batch of one dictionary column: rows `keys` (`None` a null) into `values`.
    fn batch(values: &[&str], keys: &[Option<u32>]) -> RecordBatch {
        let array = DictionaryArray::<UInt32Type>::try_new(
            UInt32Array::from(keys.to_vec()),
            Arc::new(StringArray::from(values.to_vec())),
        )
        .unwrap();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "exporter",
                array.data_type().clone(),
                true,
            )])),
            vec![Arc::new(array)],
        )
        .unwrap()
    }

    fn properties(compression: Compression, limit: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_page_size_limit(limit)
            .set_max_row_group_row_count(Some(50_000))
            .build()
    }

    /// The text of each row of `batch`'s column.
    fn texts(batch: &RecordBatch) -> Vec<Option<String>> {
        let array = batch.column(0).as_dictionary::<UInt32Type>();
        let values = array.values().as_string::<i32>();
        array
            .keys()
            .iter()
            .map(|k| k.map(|k| values.value(k as usize).to_owned()))
            .collect()
    }

    #[test]
    fn exporters_read_back_as_written_with_their_least_and_greatest() {
        // Three batches, each with its own dictionary (the same exporters in another order,
        // one unused), runs long and short, nulls; 120,000 rows: pages and row groups end
        // mid-batch.
        let exporters = [
            "192.0.2.7:4739",
            "198.51.100.1:2055",
            "unused",
            "[2001:db8::1]:4739",
        ];
        let mut batches = Vec::new();
        for b in 0..3_u32 {
            let keys: Vec<Option<u32>> = (0..40_000_u32)
                .map(|i| match (i / (1 + b * 7)) % 9 {
                    0 => None,
                    1..=5 => Some(0),
                    6 => Some(1),
                    _ => Some(3),
                })
                .collect();
            let mut order: Vec<&str> = exporters.to_vec();
            order.rotate_left(b as usize);
            let keys: Vec<Option<u32>> = keys
                .into_iter()
                .map(|k| {
                    k.map(|k| {
                        let text = exporters[k as usize];
                        u32::try_from(order.iter().position(|&o| o == text).unwrap()).unwrap()
                    })
                })
                .collect();
            batches.push(batch(&order, &keys));
        }
        let expected: Vec<Option<String>> = batches.iter().flat_map(texts).collect();
        for compression in codecs() {
            let (read, chunks) = round_trip(&batches, properties(compression, 1 << 20));
            assert_eq!(texts(&read), expected, "{compression}");
            let (encodings, statistics) = &chunks[0];
            assert!(encodings.contains(&Encoding::RLE_DICTIONARY));
            let statistics = statistics.as_ref().unwrap();
            assert_eq!(
                statistics.min_bytes_opt(),
                Some("192.0.2.7:4739".as_bytes())
            );
            assert_eq!(
                statistics.max_bytes_opt(),
                Some("[2001:db8::1]:4739".as_bytes())
            );
            assert!(statistics.null_count_opt().unwrap() > 0);
        }
    }

    #[test]
    fn past_its_size_the_dictionary_stops_growing_and_the_rest_is_plain() {
        // 3,000 distinct names, a dictionary page of at most 1 KiB: full within the first
        // page, whose runs so far become plain with it.
        let names: Vec<String> = (0..3_000).map(|i| format!("exporter-{i}")).collect();
        let values: Vec<&str> = names.iter().map(String::as_str).collect();
        let keys: Vec<Option<u32>> = (0..70_000_u32)
            .map(|i| (i % 11 != 0).then_some((i / 3) % 3_000))
            .collect();
        let whole = batch(&values, &keys);
        for compression in codecs() {
            let (read, chunks) =
                round_trip(std::slice::from_ref(&whole), properties(compression, 1024));
            assert_eq!(texts(&read), texts(&whole), "{compression}");
            assert!(chunks[0].0.contains(&Encoding::PLAIN));
        }
    }

    #[test]
    fn a_row_whose_value_is_null_is_null() {
        let array = DictionaryArray::<UInt32Type>::try_new(
            UInt32Array::from(vec![Some(0), Some(1), None, Some(0)]),
            Arc::new(StringArray::from(vec![Some("192.0.2.7:4739"), None])),
        )
        .unwrap();
        let whole = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "exporter",
                array.data_type().clone(),
                true,
            )])),
            vec![Arc::new(array)],
        )
        .unwrap();
        let (read, chunks) =
            round_trip(std::slice::from_ref(&whole), properties(codecs()[0], 1024));
        let column = read.column(0);
        let valid: Vec<bool> = (0..4)
            .map(|i| column.logical_nulls().is_none_or(|n| n.is_valid(i)))
            .collect();
        assert_eq!(valid, [true, false, false, true]);
        assert_eq!(chunks[0].1.as_ref().unwrap().null_count_opt(), Some(2));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_keys_and_dictionaries_read_back_as_written(
            values in prop::collection::vec("[a-z0-9.:]{0,10}", 1..40),
            rows in prop::collection::vec(prop::option::weighted(0.9, any::<u32>()), 1..3_000),
            limit in prop_oneof![Just(64_usize), Just(1 << 20)],
            codec in 0..3_usize,
        ) {
            let keys: Vec<Option<u32>> = rows
                .iter()
                .map(|k| k.map(|k| k % u32::try_from(values.len()).unwrap()))
                .collect();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let whole = batch(&values, &keys);
            let halves = [whole.slice(0, whole.num_rows() / 2), whole.slice(whole.num_rows() / 2, whole.num_rows() - whole.num_rows() / 2)];
            let (read, _) = round_trip(&halves, properties(codecs()[codec], limit));
            prop_assert_eq!(texts(&read), texts(&whole));
        }
    }
}
