//! Column chunks of integer and time columns, encoded here rather than by arrow-rs's column
//! writer: the archive's counters, ports, flags, times and context columns are most of its
//! columns, and arrow-rs spends 1.6-2 ns a value on each even when every value is the same (the
//! gather through row indices, the widening copy, statistics value by value, the page
//! bookkeeping): a floor of about a sixth of the collector's CPU a record (README, Figures).
//! Here a page's values are copied once into a buffer of 64-bit integers and encoded from
//! there: `PLAIN` (little-endian) or `DELTA_BINARY_PACKED` (the Parquet format's
//! `Encodings.md`: blocks of 128 differences in 4 miniblocks of 32, each bit-packed at the width
//! its largest needs after the block's least is taken off), compressed by the file's codec or
//! not, as [`choose`](crate::sink::parquet) found for the column. Pages are data pages of
//! format version 1 (definition levels first, as the RLE/bit-packed hybrid) with at most
//! [`PAGE_VALUES`] values; the chunk's statistics (minimum, maximum and nulls, in the order of
//! the column's logical type: unsigned types compare unsigned) go in its metadata. The chunk is
//! spliced into its row group whole ([`IntegerChunk::finish`]), beside the chunks arrow-rs
//! writes for the other columns ([`Encoder`](crate::sink::encoder::Encoder)).

use std::io::Write;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Values (rows, nulls included) a data page holds at most: a multiple of the 128 values of a
/// `DELTA_BINARY_PACKED` block.
pub const PAGE_VALUES: usize = 16_384;

/// Values of a `DELTA_BINARY_PACKED` block, and of each of its miniblocks.
const BLOCK: usize = 128;
const MINIBLOCK: usize = 32;

/// Whether [`IntegerChunk`] can write columns of `data_type`.
pub fn supported(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Timestamp(..)
    )
}

/// How a column's pages are compressed.
enum Codec {
    None,
    Zstd(zstd::bulk::Compressor<'static>),
    Lz4,
}

/// The column chunk of one integer or time column in the row group being written.
pub struct IntegerChunk {
    descr: ColumnDescPtr,
    /// 64-bit physical values (`INT64`), else 32-bit (`INT32`).
    wide: bool,
    /// The logical type is unsigned: statistics compare the values unsigned.
    unsigned: bool,
    /// The column has definition levels (it is nullable).
    nullable: bool,
    encoding: Encoding,
    compression: Compression,
    codec: Codec,
    /// The page in progress: its non-null values, as the physical type's bits sign-extended.
    values: Vec<i64>,
    /// Its rows' validity, kept only once one of them is null.
    valid: Option<Vec<bool>>,
    /// The one value of all its rows, while they have one (and `values` is empty): such a page
    /// is written `DELTA_BINARY_PACKED` (differences of zero, in no bits) whatever the
    /// column's encoding, without its values ever being copied.
    run: Option<i64>,
    /// The encodings of the chunk's pages.
    encodings: Vec<Encoding>,
    /// Its rows, nulls included.
    rows: usize,
    /// The chunk's pages so far, serialized.
    pages: TrackedWrite<Vec<u8>>,
    /// Octets of the pages before compression, headers included.
    uncompressed: u64,
    /// Rows of the chunk's pages so far.
    chunk_rows: u64,
    nulls: u64,
    /// Least and greatest value so far, in the logical type's order.
    least: Option<i64>,
    greatest: Option<i64>,
    /// Scratch buffers kept between pages.
    body: Vec<u8>,
    compressed: Vec<u8>,
}

impl std::fmt::Debug for IntegerChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegerChunk")
            .field("column", &self.descr.path())
            .field("encoding", &self.encoding)
            .field("compression", &self.compression)
            .field("rows", &(self.chunk_rows + self.rows as u64))
            .finish_non_exhaustive()
    }
}

impl IntegerChunk {
    /// An empty chunk of the column `descr`, of Arrow type `data_type` ([`supported`]), its
    /// values written as `encoding` (`PLAIN` or `DELTA_BINARY_PACKED`) and its pages
    /// compressed as `compression` (none, zstd or LZ4_RAW).
    ///
    /// # Errors
    /// Another encoding or codec, or a zstd level zstd refuses.
    pub fn new(
        descr: ColumnDescPtr,
        data_type: &DataType,
        encoding: Encoding,
        compression: Compression,
    ) -> Result<Self> {
        if !matches!(encoding, Encoding::PLAIN | Encoding::DELTA_BINARY_PACKED) {
            return Err(ParquetError::NYI(format!(
                "integer chunks written as {encoding}"
            )));
        }
        let codec = match compression {
            Compression::UNCOMPRESSED => Codec::None,
            Compression::ZSTD(level) => {
                Codec::Zstd(zstd::bulk::Compressor::new(level.compression_level())?)
            }
            Compression::LZ4_RAW => Codec::Lz4,
            other => {
                return Err(ParquetError::NYI(format!(
                    "integer chunks compressed as {other}"
                )));
            }
        };
        let wide = descr.physical_type() == PhysicalType::INT64;
        Ok(Self {
            nullable: descr.max_def_level() > 0,
            descr,
            wide,
            unsigned: matches!(
                data_type,
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64
            ),
            encoding,
            compression,
            codec,
            values: Vec::with_capacity(PAGE_VALUES),
            valid: None,
            run: None,
            encodings: Vec::new(),
            rows: 0,
            pages: TrackedWrite::new(Vec::new()),
            uncompressed: 0,
            chunk_rows: 0,
            nulls: 0,
            least: None,
            greatest: None,
            body: Vec::new(),
            compressed: Vec::new(),
        })
    }

    /// Appends the values of `array`, pages written as they fill.
    ///
    /// # Errors
    /// `array` is not of the chunk's type, or compressing a page failed.
    pub fn write(&mut self, array: &dyn Array) -> Result<()> {
        let mut start = 0;
        while start < array.len() {
            let take = (PAGE_VALUES - self.rows).min(array.len() - start);
            self.append(&array.slice(start, take))?;
            start += take;
            if self.rows == PAGE_VALUES {
                self.write_page()?;
            }
        }
        Ok(())
    }

    /// Appends `array`, which fits in the page in progress.
    fn append(&mut self, array: &dyn Array) -> Result<()> {
        match array.data_type() {
            DataType::Int8 => self.extend::<Int8Type>(array, i64::from),
            DataType::Int16 => self.extend::<Int16Type>(array, i64::from),
            DataType::Int32 => self.extend::<Int32Type>(array, i64::from),
            DataType::Int64 => self.extend::<Int64Type>(array, |v| v),
            DataType::UInt8 => self.extend::<UInt8Type>(array, i64::from),
            DataType::UInt16 => self.extend::<UInt16Type>(array, i64::from),
            // The physical type's bits: INT32 holds a UInt32 as the i32 of the same bits.
            DataType::UInt32 => self.extend::<UInt32Type>(array, |v| i64::from(v.cast_signed())),
            DataType::UInt64 => self.extend::<UInt64Type>(array, u64::cast_signed),
            DataType::Timestamp(TimeUnit::Second, _) => {
                self.extend::<TimestampSecondType>(array, |v| v);
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                self.extend::<TimestampMillisecondType>(array, |v| v);
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                self.extend::<TimestampMicrosecondType>(array, |v| v);
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                self.extend::<TimestampNanosecondType>(array, |v| v);
            }
            other => {
                return Err(ParquetError::General(format!(
                    "an integer chunk cannot hold {other}"
                )));
            }
        }
        Ok(())
    }

    fn extend<T: ArrowPrimitiveType>(
        &mut self,
        array: &dyn Array,
        bits: impl Fn(T::Native) -> i64,
    ) {
        let array: &PrimitiveArray<T> = array.as_primitive();
        let values = array.values();
        match array.nulls().filter(|n| n.null_count() > 0) {
            None => {
                if let Some(&first) = values.first()
                    && self.values.is_empty()
                    && self.valid.is_none()
                    && self.run.is_none_or(|v| v == bits(first))
                    && all_equal(values, first)
                {
                    // The page's values so far are all this one: counted, not copied.
                    self.run = Some(bits(first));
                } else {
                    self.materialize();
                    self.values.extend(values.iter().map(|&v| bits(v)));
                    if let Some(valid) = self.valid.as_mut() {
                        valid.extend(std::iter::repeat_n(true, array.len()));
                    }
                }
            }
            Some(nulls) => {
                self.materialize();
                let rows = self.rows;
                let valid = self.valid.get_or_insert_with(|| vec![true; rows]);
                for (value, is_valid) in values.iter().zip(nulls.iter()) {
                    valid.push(is_valid);
                    if is_valid {
                        self.values.push(bits(*value));
                    }
                }
                self.nulls += u64::try_from(nulls.null_count()).unwrap_or(0);
            }
        }
        self.rows += array.len();
    }

    /// Turns the page's run of one value, if it is one, into values.
    fn materialize(&mut self) {
        if let Some(v) = self.run.take() {
            self.values.extend(std::iter::repeat_n(v, self.rows));
        }
    }

    /// Rows in the chunk so far.
    pub fn rows(&self) -> u64 {
        self.chunk_rows + self.rows as u64
    }

    /// Octets the chunk holds so far (its pages, and the page in progress as plain values).
    pub fn size(&self) -> usize {
        self.pages.bytes_written() + self.values.len() * if self.wide { 8 } else { 4 }
    }

    /// Writes the page in progress.
    fn write_page(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let encoding = match self.run {
            Some(v) => {
                (self.least, self.greatest) = self.extremes(&[v]);
                Encoding::DELTA_BINARY_PACKED
            }
            None => {
                (self.least, self.greatest) = self.extremes(&self.values);
                self.encoding
            }
        };
        if !self.encodings.contains(&encoding) {
            self.encodings.push(encoding);
        }
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        if self.nullable {
            body.extend_from_slice(&[0; 4]);
            match &self.valid {
                None => rle_run(&mut body, self.rows, 1),
                Some(valid) => bit_packed_levels(&mut body, valid),
            }
            let levels = u32::try_from(body.len() - 4).unwrap_or(u32::MAX);
            body[..4].copy_from_slice(&levels.to_le_bytes());
        }
        match (self.run, encoding) {
            (Some(v), _) => constant(&mut body, v, self.rows),
            (None, Encoding::DELTA_BINARY_PACKED) => {
                delta_binary_packed(&mut body, &self.values, self.wide);
            }
            _ if self.wide => plain(&mut body, &self.values, |v| v.to_le_bytes()),
            // The low 32 bits: the INT32 value.
            _ => plain(&mut body, &self.values, |v| low32(v).to_le_bytes()),
        }
        let buf = match &mut self.codec {
            Codec::None => Bytes::copy_from_slice(&body),
            Codec::Zstd(compressor) => {
                self.compressed.clear();
                self.compressed
                    .reserve(zstd::zstd_safe::compress_bound(body.len()));
                compressor.compress_to_buffer(&body, &mut self.compressed)?;
                Bytes::copy_from_slice(&self.compressed)
            }
            Codec::Lz4 => {
                self.compressed.clear();
                self.compressed
                    .resize(lz4_flex::block::get_maximum_output_size(body.len()), 0);
                let n = lz4_flex::block::compress_into(&body, &mut self.compressed)
                    .map_err(|e| ParquetError::External(Box::new(e)))?;
                Bytes::copy_from_slice(&self.compressed[..n])
            }
        };
        let page = Page::DataPage {
            buf,
            num_values: u32::try_from(self.rows).unwrap_or(u32::MAX),
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.pages)
            .write_page(CompressedPage::new(page, body.len()))?;
        self.uncompressed += spec.uncompressed_size as u64;
        self.chunk_rows += self.rows as u64;
        self.rows = 0;
        self.values.clear();
        self.valid = None;
        self.run = None;
        self.body = body;
        Ok(())
    }

    /// The chunk's least and greatest values once `values` are in it.
    fn extremes(&self, values: &[i64]) -> (Option<i64>, Option<i64>) {
        let min_max = |values: &[i64]| match (self.unsigned, self.wide) {
            (true, true) => min_max(values, i64::cast_unsigned, u64::cast_signed),
            (true, false) => min_max(
                values,
                |v| low32(v).cast_unsigned(),
                |k| i64::from(k.cast_signed()),
            ),
            (false, _) => min_max(values, |v| v, |k| k),
        };
        let Some((least, greatest)) = min_max(values) else {
            return (self.least, self.greatest);
        };
        let seen: Vec<i64> = [self.least, self.greatest, Some(least), Some(greatest)]
            .into_iter()
            .flatten()
            .collect();
        min_max(&seen).unzip()
    }

    /// The chunk's octets and what its row group needs to take them in
    /// (`SerializedRowGroupWriter::append_column`); the next row group's chunk begins, with
    /// the same codec context and buffers.
    ///
    /// # Errors
    /// Compressing the last page or building the metadata failed.
    pub fn finish(&mut self) -> Result<(Bytes, ColumnCloseResult)> {
        self.write_page()?;
        // As arrow-rs's writer: the deprecated `min` and `max` fields too where the column
        // sorts signed, for readers older than `min_value` and `max_value`.
        let signed = self.descr.sort_order().is_signed();
        let statistics = if self.wide {
            Statistics::Int64(
                ValueStatistics::new(self.least, self.greatest, None, Some(self.nulls), false)
                    .with_backwards_compatible_min_max(signed),
            )
        } else {
            let narrow = |v: Option<i64>| v.map(low32);
            Statistics::Int32(
                ValueStatistics::new(
                    narrow(self.least),
                    narrow(self.greatest),
                    None,
                    Some(self.nulls),
                    false,
                )
                .with_backwards_compatible_min_max(signed),
            )
        };
        let mut encodings = std::mem::take(&mut self.encodings);
        if self.nullable {
            encodings.push(Encoding::RLE);
        }
        let rows = std::mem::take(&mut self.chunk_rows);
        let uncompressed = std::mem::take(&mut self.uncompressed);
        self.nulls = 0;
        (self.least, self.greatest) = (None, None);
        let mut pages = std::mem::replace(&mut self.pages, TrackedWrite::new(Vec::new()));
        pages.flush()?;
        let pages = pages.into_inner()?;
        let written = pages.len() as u64;
        let metadata = ColumnChunkMetaData::builder(Arc::clone(&self.descr))
            .set_compression(self.compression)
            .set_encodings(encodings)
            .set_num_values(i64::try_from(rows).unwrap_or(i64::MAX))
            .set_total_compressed_size(i64::try_from(written).unwrap_or(i64::MAX))
            .set_total_uncompressed_size(i64::try_from(uncompressed).unwrap_or(i64::MAX))
            .set_data_page_offset(0)
            .set_statistics(statistics)
            .build()?;
        Ok((
            Bytes::from(pages),
            ColumnCloseResult {
                bytes_written: written,
                rows_written: rows,
                metadata,
                bloom_filter: None,
                column_index: None,
                offset_index: None,
            },
        ))
    }
}

/// Whether every one of `values` is `first`: compared a block at a time without stopping
/// early inside a block, which the compiler turns into vector compares.
fn all_equal<T: PartialEq + Copy>(values: &[T], first: T) -> bool {
    values
        .chunks(64)
        .all(|block| block.iter().fold(true, |same, &v| same & (v == first)))
}

/// The least and greatest of `values` in the order of their keys (`key`: the logical type's
/// order), as values (`value` undoes `key`); `None` when there are none.
fn min_max<K: Ord + Copy>(
    values: &[i64],
    key: impl Fn(i64) -> K,
    value: impl Fn(K) -> i64,
) -> Option<(i64, i64)> {
    let first = key(*values.first()?);
    let (least, greatest) = values.iter().fold((first, first), |(l, g), &v| {
        let k = key(v);
        (l.min(k), g.max(k))
    });
    Some((value(least), value(greatest)))
}

/// Appends `values` as `PLAIN`: each as `bytes` gives it.
fn plain<const N: usize>(out: &mut Vec<u8>, values: &[i64], bytes: impl Fn(i64) -> [u8; N]) {
    let start = out.len();
    out.resize(start + values.len() * N, 0);
    for (slot, &v) in out[start..].chunks_exact_mut(N).zip(values) {
        slot.copy_from_slice(&bytes(v));
    }
}

/// The low 32 bits of `v`: the `INT32` value it holds.
fn low32(v: i64) -> i32 {
    let [a, b, c, d, ..] = v.to_le_bytes();
    i32::from_le_bytes([a, b, c, d])
}

/// Appends `v` as ULEB128.
fn uleb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

/// Appends `v` zigzag-encoded as ULEB128.
fn zigzag(out: &mut Vec<u8>, v: i64) {
    uleb128(out, ((v << 1) ^ (v >> 63)).cast_unsigned());
}

/// An RLE run of `count` levels of `level` (bit width 1: one octet).
fn rle_run(out: &mut Vec<u8>, count: usize, level: u8) {
    uleb128(out, (count as u64) << 1);
    out.push(level);
}

/// Definition levels of `valid` (1 present, 0 null) as one bit-packed run of width 1.
fn bit_packed_levels(out: &mut Vec<u8>, valid: &[bool]) {
    let groups = valid.len().div_ceil(8);
    uleb128(out, ((groups as u64) << 1) | 1);
    for group in valid.chunks(8) {
        out.push(
            group
                .iter()
                .enumerate()
                .fold(0, |byte, (i, &v)| byte | (u8::from(v) << i)),
        );
    }
}

/// `values` as `DELTA_BINARY_PACKED`: a header (block size, miniblocks a block, values, the
/// first value), then a block for each 128 differences between neighbours, computed in the
/// physical type (64 bits if `wide`, else 32) with wrapping, as readers undo them.
fn delta_binary_packed(out: &mut Vec<u8>, values: &[i64], wide: bool) {
    uleb128(out, BLOCK as u64);
    uleb128(out, (BLOCK / MINIBLOCK) as u64);
    uleb128(out, values.len() as u64);
    let Some(&first) = values.first() else {
        zigzag(out, 0);
        return;
    };
    zigzag(out, first);
    let mut deltas = [0i64; BLOCK];
    let mut packed = [0u64; BLOCK];
    for start in (1..values.len()).step_by(BLOCK) {
        let block = &values[start - 1..values.len().min(start + BLOCK)];
        let n = block.len() - 1;
        for (d, pair) in deltas.iter_mut().zip(block.windows(2)) {
            *d = if wide {
                pair[1].wrapping_sub(pair[0])
            } else {
                i64::from(low32(pair[1]).wrapping_sub(low32(pair[0])))
            };
        }
        let least = deltas[..n].iter().copied().min().unwrap_or(0);
        zigzag(out, least);
        for (p, &d) in packed.iter_mut().zip(&deltas[..n]) {
            *p = if wide {
                d.wrapping_sub(least).cast_unsigned()
            } else {
                u64::from(low32(d).wrapping_sub(low32(least)).cast_unsigned())
            };
        }
        packed[n..].fill(0);
        let used = n.div_ceil(MINIBLOCK);
        let mut widths = [0u32; BLOCK / MINIBLOCK];
        for (width, miniblock) in widths.iter_mut().zip(packed.chunks(MINIBLOCK)).take(used) {
            *width = 64 - miniblock.iter().fold(0, |a, &v| a | v).leading_zeros();
        }
        out.extend(widths.iter().map(|&w| w.to_le_bytes()[0]));
        for (miniblock, &width) in packed.chunks(MINIBLOCK).zip(&widths).take(used) {
            bit_pack(out, miniblock, width);
        }
    }
}

/// `count` values of `value` as `DELTA_BINARY_PACKED`: the header, then each block's least
/// difference (0) and its miniblocks' widths (0), and no bits.
fn constant(out: &mut Vec<u8>, value: i64, count: usize) {
    uleb128(out, BLOCK as u64);
    uleb128(out, (BLOCK / MINIBLOCK) as u64);
    uleb128(out, count as u64);
    zigzag(out, value);
    let blocks = count.saturating_sub(1).div_ceil(BLOCK);
    out.resize(out.len() + blocks * (1 + BLOCK / MINIBLOCK), 0);
}

/// Appends the 32 `values` packed `width` bits each, least significant bit first.
fn bit_pack(out: &mut Vec<u8>, values: &[u64], width: u32) {
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for &v in values {
        acc |= u128::from(v) << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&acc.to_le_bytes()[..8]);
            acc >>= 64;
            bits -= 64;
        }
    }
    // 32 values of `width` bits end on a 32-bit boundary.
    out.extend_from_slice(&acc.to_le_bytes()[..(bits / 8) as usize]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch,
        TimestampMillisecondArray, TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array,
        UInt64Array,
    };
    use arrow_schema::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::ZstdLevel;
    use parquet::file::properties::WriterProperties;
    use proptest::prelude::*;

    use super::*;
    use crate::sink::encoder::Encoder;

    /// No codec, zstd at level 1 (the archive's), LZ4_RAW.
    fn codecs() -> [Compression; 3] {
        [
            Compression::UNCOMPRESSED,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::LZ4_RAW,
        ]
    }

    /// A column chunk's encodings and statistics.
    type ChunkFacts = (Vec<Encoding>, Option<Statistics>);

    /// `batches` written through the encoder, every integer column `encoding` and
    /// `compression`, at most `group_rows` rows a row group; read back as one batch, with the
    /// encodings and statistics of each column of the first row group.
    fn round_trip(
        batches: &[RecordBatch],
        encoding: Encoding,
        compression: Compression,
        group_rows: usize,
    ) -> (RecordBatch, Vec<ChunkFacts>) {
        let properties = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_encoding(encoding)
            .set_compression(compression)
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let schema = batches[0].schema();
        let mut encoder = Encoder::try_new(Vec::new(), schema.clone(), properties).unwrap();
        for batch in batches {
            encoder.write(batch).unwrap();
        }
        let file = Bytes::from(encoder.into_inner().unwrap());
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_batch_size(rows.max(1));
        let chunks = reader
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .map(|c| (c.encodings().collect(), c.statistics().cloned()))
            .collect();
        let mut read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(read.len(), 1);
        (read.remove(0), chunks)
    }

    /// The low `N` octets of `v`, little-endian.
    fn low<const N: usize>(v: i64) -> [u8; N] {
        let mut octets = [0; N];
        octets.copy_from_slice(&v.to_le_bytes()[..N]);
        octets
    }

    /// One batch of a column of each supported type, from `values` (`None` a null).
    fn batch(values: &[Option<i64>]) -> RecordBatch {
        // Each type takes the value's low bits, so extremes of every width occur.
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "i8",
                Arc::new(Int8Array::from_iter(
                    values.iter().map(|v| v.map(|v| i8::from_le_bytes(low(v)))),
                )),
            ),
            (
                "i16",
                Arc::new(Int16Array::from_iter(
                    values.iter().map(|v| v.map(|v| i16::from_le_bytes(low(v)))),
                )),
            ),
            (
                "i32",
                Arc::new(Int32Array::from_iter(
                    values.iter().map(|v| v.map(|v| i32::from_le_bytes(low(v)))),
                )),
            ),
            (
                "i64",
                Arc::new(Int64Array::from_iter(values.iter().copied())),
            ),
            (
                "u8",
                Arc::new(UInt8Array::from_iter(
                    values.iter().map(|v| v.map(|v| u8::from_le_bytes(low(v)))),
                )),
            ),
            (
                "u16",
                Arc::new(UInt16Array::from_iter(
                    values.iter().map(|v| v.map(|v| u16::from_le_bytes(low(v)))),
                )),
            ),
            (
                "u32",
                Arc::new(UInt32Array::from_iter(
                    values.iter().map(|v| v.map(|v| u32::from_le_bytes(low(v)))),
                )),
            ),
            (
                "u64",
                Arc::new(UInt64Array::from_iter(
                    values.iter().map(|v| v.map(|v| u64::from_le_bytes(low(v)))),
                )),
            ),
            (
                "seconds",
                Arc::new(
                    TimestampSecondArray::from_iter(values.iter().copied()).with_timezone("UTC"),
                ),
            ),
            (
                "milliseconds",
                Arc::new(TimestampMillisecondArray::from_iter(values.iter().copied())),
            ),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, c)| c).collect(),
        )
        .unwrap()
    }

    #[test]
    fn every_type_reads_back_as_written_across_pages_runs_and_row_groups() {
        // A run of one value across a page boundary; values varying from a page's middle; the
        // extremes of every width (differences that wrap); nulls, alone and in runs; a second
        // run of another value; a run broken by a null.
        let mut values: Vec<Option<i64>> = vec![Some(7); PAGE_VALUES + 300];
        values.extend((0..5_000).map(|i: i64| Some(i.wrapping_mul(0x1e37_79b9_7f4a_7c15))));
        values.extend([i64::MIN, i64::MAX, 0, -1, 1, i64::MIN, i64::MAX].map(Some));
        values.extend((0..2_000).map(|i: i64| (i % 3 != 0).then_some(i << 20)));
        values.extend(std::iter::repeat_n(None, 700));
        values.extend(std::iter::repeat_n(Some(-3), 3_000));
        values.push(None);
        values.extend(std::iter::repeat_n(Some(-3), 100));
        let whole = batch(&values);
        // Batches of odd sizes, so runs, pages and row groups begin mid-batch.
        let mut batches = Vec::new();
        let mut start = 0;
        for size in [1, 1000, 16_000, 3, 5_000, 7_777].into_iter().cycle() {
            if start >= whole.num_rows() {
                break;
            }
            let size = size.min(whole.num_rows() - start);
            batches.push(whole.slice(start, size));
            start += size;
        }
        for encoding in [Encoding::PLAIN, Encoding::DELTA_BINARY_PACKED] {
            for compression in codecs() {
                for group_rows in [usize::MAX, 10_000] {
                    let (read, chunks) = round_trip(&batches, encoding, compression, group_rows);
                    assert_eq!(read, whole, "{encoding} {compression} {group_rows}");
                    // The first page is a run whatever the encoding; in one row group, the
                    // others are written as chosen. (The first of 10,000 rows is all run.)
                    for (encodings, _) in &chunks {
                        assert!(encodings.contains(&Encoding::DELTA_BINARY_PACKED));
                        assert_eq!(
                            encodings.contains(&Encoding::PLAIN),
                            encoding == Encoding::PLAIN && group_rows == usize::MAX
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn statistics_order_values_as_their_logical_type_does() {
        // 0x8000_0000 and above are negative as the INT32 bits that hold a UInt32, and
        // greatest as unsigned.
        let values = [
            Some(5),
            None,
            Some(0x8000_0001),
            Some(2),
            Some(0xffff_fff0),
            None,
        ];
        let (_, chunks) = round_trip(&[batch(&values)], Encoding::PLAIN, codecs()[0], usize::MAX);
        let statistics: Vec<String> = chunks
            .iter()
            .map(|(_, s)| {
                let s = s.as_ref().unwrap();
                format!(
                    "{:?}",
                    (s.min_bytes_opt(), s.max_bytes_opt(), s.null_count_opt())
                )
            })
            .collect();
        let expect = |least: &[u8], greatest: &[u8]| {
            format!("{:?}", (Some(least), Some(greatest), Some(2_u64)))
        };
        // i32: 0x8000_0001 is the least (negative), 5 the greatest; u32: 2 and 0xffff_fff0.
        assert_eq!(
            statistics[2],
            expect(
                &0x8000_0001_u32.cast_signed().to_le_bytes(),
                &5_i32.to_le_bytes()
            )
        );
        assert_eq!(
            statistics[6],
            expect(
                &2_i32.to_le_bytes(),
                &0xffff_fff0_u32.cast_signed().to_le_bytes()
            )
        );
        assert_eq!(
            statistics[3],
            expect(&2_i64.to_le_bytes(), &0xffff_fff0_i64.to_le_bytes())
        );
        assert_eq!(
            statistics[7],
            expect(&2_i64.to_le_bytes(), &0xffff_fff0_i64.to_le_bytes())
        );
        // u8: 0x01, 0x02, 0x05, 0xf0 → 1 and 240.
        assert_eq!(
            statistics[4],
            expect(&1_i32.to_le_bytes(), &240_i32.to_le_bytes())
        );
        // i8: 0x01 = 1, 0xf0 = -16 → -16 and 5.
        assert_eq!(
            statistics[0],
            expect(&(-16_i32).to_le_bytes(), &5_i32.to_le_bytes())
        );
    }

    #[test]
    fn a_column_of_nulls_has_no_least_or_greatest() {
        let (read, chunks) = round_trip(
            &[batch(&[None; 300])],
            Encoding::DELTA_BINARY_PACKED,
            codecs()[1],
            usize::MAX,
        );
        assert_eq!(read.column(0).null_count(), 300);
        let statistics = chunks[0].1.as_ref().unwrap();
        assert_eq!(statistics.min_bytes_opt(), None);
        assert_eq!(statistics.null_count_opt(), Some(300));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_values_and_batches_read_back_as_written(
            values in prop::collection::vec(
                prop_oneof![
                    3 => (0..4_i64).prop_map(Some),
                    3 => any::<i64>().prop_map(Some),
                    1 => Just(None),
                ],
                0..3_000,
            ),
            cuts in prop::collection::vec(1..800_usize, 1..8),
            delta in any::<bool>(),
            codec in 0..3_usize,
        ) {
            prop_assume!(!values.is_empty());
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
            let encoding = if delta { Encoding::DELTA_BINARY_PACKED } else { Encoding::PLAIN };
            let (read, _) = round_trip(&batches, encoding, codecs()[codec], 1_000);
            prop_assert_eq!(read, whole);
        }
    }
}
