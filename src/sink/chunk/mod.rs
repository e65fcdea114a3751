//! Column chunks the archive encodes itself rather than through arrow-rs's column writers:
//! integer and time columns ([`IntegerChunk`]), text columns written without a dictionary or
//! statistics, such as addresses of many hosts ([`TextChunk`]), and Arrow dictionaries of text,
//! the exporter ([`DictionaryChunk`]). They are nearly all of the archive's columns and most of
//! its rows' cost: arrow-rs spends 1.6-2 ns a value on an integer column even when every value
//! is the same (the gather through row indices, the widening copy, statistics value by value,
//! the page bookkeeping), interns a dictionary array's text again row by row, and feeds its
//! text encoders one value a call (README, Figures). Here each chunk keeps its page in progress
//! in plain buffers and encodes it whole when it fills ([`PAGE_VALUES`] rows) or the row group
//! ends, in the Parquet format's encodings (`Encodings.md`): `PLAIN`, `DELTA_BINARY_PACKED`
//! (blocks of 128 differences in 4 miniblocks of 32, each bit-packed at the width its largest
//! needs after the block's least is taken off), `DELTA_LENGTH_BYTE_ARRAY`, `DELTA_BYTE_ARRAY`
//! and `RLE_DICTIONARY`. Pages are data pages of format version 1 (definition levels first, as
//! the RLE/bit-packed hybrid), compressed by the column's codec as
//! [`choose`](crate::sink::parquet) found; `Pages` writes them, a dictionary page before
//! them, and the chunk's metadata, and the chunk is spliced into its row group whole, beside
//! the chunks arrow-rs writes for the other columns
//! ([`Encoder`](crate::sink::encoder::Encoder)). Each is kept from one row group to the next,
//! with its codec's context. [`Chunk::for_column`] decides which chunk writes a column.

mod dictionary;
mod integer;
mod text;

pub use dictionary::DictionaryChunk;
pub use integer::IntegerChunk;
pub use text::TextChunk;

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;

use arrow_array::Array;
use arrow_schema::Field;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use zstd::zstd_safe::CParameter;

/// Rows (nulls included) a data page holds at most: a multiple of the 128 values of a
/// `DELTA_BINARY_PACKED` block.
pub const PAGE_VALUES: usize = 32_768;

/// Values of a `DELTA_BINARY_PACKED` block, and of each of its miniblocks.
const BLOCK: usize = 128;
const MINIBLOCK: usize = 32;

/// A column chunk encoded here.
#[derive(Debug)]
pub enum Chunk {
    /// An integer or time column.
    Integers(IntegerChunk),
    /// Text without a dictionary or statistics.
    Text(TextChunk),
    /// An Arrow dictionary of text.
    Dictionary(DictionaryChunk),
}

impl Chunk {
    /// The chunk that writes `field`, whose leaf column is `descr`, as `properties` say, when
    /// one of ours does: an integer or time column written `PLAIN` or `DELTA_BINARY_PACKED`,
    /// with a dictionary first if it has one; a text column without a dictionary or statistics, written
    /// `DELTA_LENGTH_BYTE_ARRAY` or `DELTA_BYTE_ARRAY`; an Arrow dictionary of text with a
    /// dictionary. Statistics are the chunk's (no page index). `None` leaves the column to
    /// arrow-rs.
    ///
    /// # Errors
    /// The column's codec is one of ours but its level is refused.
    pub fn for_column(
        field: &Field,
        descr: &ColumnDescPtr,
        properties: &WriterProperties,
    ) -> Result<Option<Self>> {
        let path = descr.path();
        let encoding = properties.encoding(path);
        let compression = properties.compression(path);
        let codec = matches!(
            compression,
            Compression::UNCOMPRESSED | Compression::ZSTD(_) | Compression::LZ4_RAW
        );
        if !codec || descr.path().parts().len() != 1 {
            return Ok(None);
        }
        let data_type = field.data_type();
        let dictionary = properties.dictionary_enabled(path);
        let statistics = properties.statistics_enabled(path) != EnabledStatistics::None;
        if IntegerChunk::supports(data_type)
            && matches!(
                encoding,
                None | Some(Encoding::PLAIN | Encoding::DELTA_BINARY_PACKED)
            )
        {
            return Ok(Some(Self::Integers(IntegerChunk::new(
                Arc::clone(descr),
                data_type,
                encoding.unwrap_or(Encoding::PLAIN),
                dictionary.then(|| properties.dictionary_page_size_limit()),
                compression,
                statistics,
            )?)));
        }
        if TextChunk::supports(data_type)
            && !dictionary
            && !statistics
            && let Some(encoding @ (Encoding::DELTA_LENGTH_BYTE_ARRAY | Encoding::DELTA_BYTE_ARRAY)) =
                encoding
        {
            return Ok(Some(Self::Text(TextChunk::new(
                Arc::clone(descr),
                encoding,
                compression,
            )?)));
        }
        if DictionaryChunk::supports(data_type) && dictionary {
            return Ok(Some(Self::Dictionary(DictionaryChunk::new(
                Arc::clone(descr),
                properties.dictionary_page_size_limit(),
                compression,
                statistics,
            )?)));
        }
        Ok(None)
    }

    /// Appends the values of `array` (of the column's type), pages written as they fill.
    ///
    /// # Errors
    /// `array` is not of the column's type, or compressing a page failed.
    pub fn write(&mut self, array: &dyn Array) -> Result<()> {
        match self {
            Self::Integers(chunk) => chunk.write(array),
            Self::Text(chunk) => chunk.write(array),
            Self::Dictionary(chunk) => chunk.write(array),
        }
    }

    /// Octets the chunk holds so far, about.
    pub fn size(&self) -> usize {
        match self {
            Self::Integers(chunk) => chunk.size(),
            Self::Text(chunk) => chunk.size(),
            Self::Dictionary(chunk) => chunk.size(),
        }
    }

    /// The chunk's octets and what its row group needs to take them in
    /// (`SerializedRowGroupWriter::append_column`); the next row group's chunk begins.
    ///
    /// # Errors
    /// Compressing the last page or building the metadata failed.
    pub fn finish(&mut self) -> Result<(Bytes, ColumnCloseResult)> {
        match self {
            Self::Integers(chunk) => chunk.finish(),
            Self::Text(chunk) => chunk.finish(),
            Self::Dictionary(chunk) => chunk.finish(),
        }
    }
}

/// How a column's pages are compressed.
enum PageCodec {
    None,
    /// zstd at this level, its match finder's table of `2^hash_log` entries if set.
    Zstd {
        level: i32,
        hash_log: Option<u32>,
    },
    Lz4,
}

thread_local! {
    /// The zstd context every chunk this thread writes compresses its pages with: one grows to
    /// about 0.6 MiB at full pages, so one a column of every open file would make the
    /// archive's memory grow with files times columns; this way it is one an archive thread.
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// A page's body and its compressed form while it is written, shared the same way.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The pages of one column chunk: written as each is complete, compressed by the column's
/// codec, and handed over with the chunk's metadata at [`Pages::finish`].
struct Pages {
    descr: ColumnDescPtr,
    compression: Compression,
    codec: PageCodec,
    /// The chunk's pages so far, serialized.
    written: TrackedWrite<Vec<u8>>,
    /// Octets of the pages before compression, headers included.
    uncompressed: u64,
    /// Rows of the chunk's pages so far, and nulls among them.
    rows: u64,
    nulls: u64,
    /// The encodings of the chunk's pages.
    encodings: Vec<Encoding>,
}

impl Pages {
    /// The pages of the column `descr`, compressed as `compression` (none, zstd or
    /// LZ4_RAW).
    fn new(descr: ColumnDescPtr, compression: Compression) -> Result<Self> {
        Self::with_hash_log(descr, compression, None)
    }

    /// [`Pages::new`], zstd's match finder given a table of `2^hash_log` entries if set.
    fn with_hash_log(
        descr: ColumnDescPtr,
        compression: Compression,
        hash_log: Option<u32>,
    ) -> Result<Self> {
        let codec = match compression {
            Compression::UNCOMPRESSED => PageCodec::None,
            Compression::ZSTD(level) => PageCodec::Zstd {
                level: level.compression_level(),
                hash_log,
            },
            Compression::LZ4_RAW => PageCodec::Lz4,
            other => {
                return Err(ParquetError::NYI(format!(
                    "column chunks compressed as {other}"
                )));
            }
        };
        Ok(Self {
            descr,
            compression,
            codec,
            written: TrackedWrite::new(Vec::new()),
            uncompressed: 0,
            rows: 0,
            nulls: 0,
            encodings: Vec::new(),
        })
    }

    /// Whether the column has definition levels (it is nullable).
    fn nullable(&self) -> bool {
        self.descr.max_def_level() > 0
    }

    /// Octets of the pages written so far.
    fn size(&self) -> usize {
        self.written.bytes_written()
    }

    /// A page's body begun: the definition levels of its `validity`, when the column has
    /// them. The values follow; [`Pages::write`] takes the body back.
    fn begin(&self, validity: &Validity) -> Vec<u8> {
        let mut body = SCRATCH.with(|scratch| std::mem::take(&mut scratch.borrow_mut().0));
        body.clear();
        if self.nullable() {
            body.extend_from_slice(&[0; 4]);
            match &validity.valid {
                None => rle_run(&mut body, validity.rows, 1),
                Some(valid) => bit_packed_levels(&mut body, valid),
            }
            let levels = u32::try_from(body.len() - 4).unwrap_or(u32::MAX);
            body[..4].copy_from_slice(&levels.to_le_bytes());
        }
        body
    }

    /// Writes the page whose `body` [`Pages::begin`] began, of `validity`'s rows, its values
    /// `encoding`.
    fn write(&mut self, body: Vec<u8>, validity: &Validity, encoding: Encoding) -> Result<()> {
        if !self.encodings.contains(&encoding) {
            self.encodings.push(encoding);
        }
        let buf = self.compress(&body)?;
        let page = Page::DataPage {
            buf,
            num_values: u32::try_from(validity.rows).unwrap_or(u32::MAX),
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.written)
            .write_page(CompressedPage::new(page, body.len()))?;
        self.uncompressed += spec.uncompressed_size as u64;
        self.rows += validity.rows as u64;
        self.nulls += validity.nulls as u64;
        SCRATCH.with(|scratch| scratch.borrow_mut().0 = body);
        Ok(())
    }

    /// `body` compressed by the column's codec.
    fn compress(&self, body: &[u8]) -> Result<Bytes> {
        match self.codec {
            PageCodec::None => Ok(Bytes::copy_from_slice(body)),
            PageCodec::Zstd { level, hash_log } => ZSTD.with(|zstd| {
                let mut zstd = zstd.borrow_mut();
                let compressor = match zstd.as_mut() {
                    Some(compressor) => compressor,
                    None => zstd.insert(zstd::bulk::Compressor::new(level)?),
                };
                // 0: the level's own table.
                compressor.set_parameter(CParameter::CompressionLevel(level))?;
                compressor.set_parameter(CParameter::HashLog(hash_log.unwrap_or(0)))?;
                SCRATCH.with(|scratch| {
                    let compressed = &mut scratch.borrow_mut().1;
                    compressed.clear();
                    compressed.reserve(zstd::zstd_safe::compress_bound(body.len()));
                    compressor.compress_to_buffer(body, compressed)?;
                    Ok(Bytes::copy_from_slice(compressed))
                })
            }),
            PageCodec::Lz4 => SCRATCH.with(|scratch| {
                let compressed = &mut scratch.borrow_mut().1;
                compressed.clear();
                compressed.resize(lz4_flex::block::get_maximum_output_size(body.len()), 0);
                let n = lz4_flex::block::compress_into(body, compressed)
                    .map_err(|e| ParquetError::External(Box::new(e)))?;
                Ok(Bytes::copy_from_slice(&compressed[..n]))
            }),
        }
    }

    /// The chunk's octets and what its row group needs to take them in
    /// (`SerializedRowGroupWriter::append_column`), with `statistics` and, first, the
    /// dictionary page of `dictionary` (its values `PLAIN`, and how many) if there is one; the
    /// next row group's chunk begins, with the same codec context and buffers.
    fn finish(
        &mut self,
        dictionary: Option<(&[u8], usize)>,
        statistics: Option<Statistics>,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let mut encodings = std::mem::take(&mut self.encodings);
        if self.nullable() {
            encodings.push(Encoding::RLE);
        }
        let rows = std::mem::take(&mut self.rows);
        let mut uncompressed = std::mem::take(&mut self.uncompressed);
        self.nulls = 0;
        let mut written = std::mem::replace(&mut self.written, TrackedWrite::new(Vec::new()));
        written.flush()?;
        let pages = written.into_inner()?;
        // The next row group's pages likely come to as many octets: room for them now, so the
        // buffer is not grown (copied) page by page again.
        self.written = TrackedWrite::new(Vec::with_capacity(pages.len() + pages.len() / 8));
        // The dictionary page goes before the data pages that refer to it.
        let (written, dictionary_size) = match dictionary {
            None => (pages, 0),
            Some((values, count)) => {
                let page = Page::DictionaryPage {
                    buf: self.compress(values)?,
                    num_values: u32::try_from(count).unwrap_or(u32::MAX),
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                };
                let mut chunk = TrackedWrite::new(Vec::new());
                let spec = SerializedPageWriter::new(&mut chunk)
                    .write_page(CompressedPage::new(page, values.len()))?;
                uncompressed += spec.uncompressed_size as u64;
                if !encodings.contains(&Encoding::PLAIN) {
                    encodings.push(Encoding::PLAIN);
                }
                let dictionary_size = chunk.bytes_written();
                chunk.write_all(&pages)?;
                chunk.flush()?;
                (chunk.into_inner()?, dictionary_size)
            }
        };
        let size = written.len() as u64;
        let mut metadata = ColumnChunkMetaData::builder(Arc::clone(&self.descr))
            .set_compression(self.compression)
            .set_encodings(encodings)
            .set_num_values(i64::try_from(rows).unwrap_or(i64::MAX))
            .set_total_compressed_size(i64::try_from(size).unwrap_or(i64::MAX))
            .set_total_uncompressed_size(i64::try_from(uncompressed).unwrap_or(i64::MAX))
            .set_dictionary_page_offset(dictionary.map(|_| 0))
            .set_data_page_offset(i64::try_from(dictionary_size).unwrap_or(i64::MAX));
        if let Some(statistics) = statistics {
            metadata = metadata.set_statistics(statistics);
        }
        Ok((
            Bytes::from(written),
            ColumnCloseResult {
                bytes_written: size,
                rows_written: rows,
                metadata: metadata.build()?,
                bloom_filter: None,
                column_index: None,
                offset_index: None,
            },
        ))
    }
}

/// Which rows of the page in progress are null.
#[derive(Debug, Default)]
struct Validity {
    /// Rows, nulls included.
    rows: usize,
    nulls: usize,
    /// Each row's validity, kept only once one of them is null.
    valid: Option<Vec<bool>>,
}

impl Validity {
    /// Adds `rows` rows, each valid or not as `nulls` says (`None`: all valid).
    fn extend(&mut self, rows: usize, nulls: Option<&arrow_buffer::NullBuffer>) {
        match nulls.filter(|n| n.null_count() > 0) {
            None => {
                if let Some(valid) = self.valid.as_mut() {
                    valid.extend(std::iter::repeat_n(true, rows));
                }
            }
            Some(nulls) => {
                let before = self.rows;
                self.valid
                    .get_or_insert_with(|| vec![true; before])
                    .extend(nulls.iter());
                self.nulls += nulls.null_count();
            }
        }
        self.rows += rows;
    }

    /// Whether every row so far is valid.
    fn all_valid(&self) -> bool {
        self.valid.is_none()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Whether every one of `values` is `first`: compared a block at a time without stopping
/// early inside a block, which the compiler turns into vector compares.
fn all_equal<T: PartialEq + Copy>(values: &[T], first: T) -> bool {
    values
        .chunks(64)
        .all(|block| block.iter().fold(true, |same, &v| same & (v == first)))
}

/// The low 32 bits of `v`: the `INT32` value it holds.
fn low32(v: i64) -> i32 {
    let [a, b, c, d, ..] = v.to_le_bytes();
    i32::from_le_bytes([a, b, c, d])
}

/// The bit width of the indices into a dictionary of `entries` values, as an
/// `RLE_DICTIONARY` data page states it in its first octet: at least one bit.
fn index_width(entries: u32) -> u32 {
    (u32::BITS - entries.saturating_sub(1).leading_zeros()).max(1)
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
    if wide {
        delta_blocks::<true>(out, values);
    } else {
        delta_blocks::<false>(out, values);
    }
}

/// [`delta_binary_packed`] for values of 64 bits (`WIDE`) or 32.
fn delta_blocks<const WIDE: bool>(out: &mut Vec<u8>, values: &[i64]) {
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
            *d = if WIDE {
                pair[1].wrapping_sub(pair[0])
            } else {
                i64::from(low32(pair[1]).wrapping_sub(low32(pair[0])))
            };
        }
        let least = deltas[..n].iter().copied().min().unwrap_or(0);
        zigzag(out, least);
        for (p, &d) in packed.iter_mut().zip(&deltas[..n]) {
            *p = if WIDE {
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

/// Appends the 32 `values` packed `width` bits each, least significant bit first: through a
/// 64-bit accumulator 32 bits at a time up to 32 bits a value (ports, lengths, most
/// differences), a 128-bit one past that.
fn bit_pack(out: &mut Vec<u8>, values: &[u64], width: u32) {
    if width == 0 {
        return;
    }
    if width <= 32 {
        let mut acc = 0u64;
        let mut bits = 0u32;
        for &v in values {
            acc |= v << bits;
            bits += width;
            if bits >= 32 {
                out.extend_from_slice(&acc.to_le_bytes()[..4]);
                acc >>= 32;
                bits -= 32;
            }
        }
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

/// A column chunk's encodings and statistics.
#[cfg(test)]
type ChunkFacts = (Vec<Encoding>, Option<Statistics>);

/// No codec, zstd at level 1 (the archive's), LZ4_RAW.
#[cfg(test)]
fn codecs() -> [Compression; 3] {
    [
        Compression::UNCOMPRESSED,
        Compression::ZSTD(parquet::basic::ZstdLevel::default()),
        Compression::LZ4_RAW,
    ]
}

/// `batches` written through the archive's encoder with `properties`, and read back by
/// arrow-rs's reader as one batch, with the encodings and statistics of each column of the
/// first row group.
#[cfg(test)]
fn round_trip(
    batches: &[arrow_array::RecordBatch],
    properties: WriterProperties,
) -> (arrow_array::RecordBatch, Vec<ChunkFacts>) {
    let schema = batches[0].schema();
    let mut encoder =
        crate::sink::encoder::Encoder::try_new(Vec::new(), schema, properties).unwrap();
    for batch in batches {
        encoder.write(batch).unwrap();
    }
    let file = Bytes::from(encoder.into_inner().unwrap());
    let rows: usize = batches.iter().map(arrow_array::RecordBatch::num_rows).sum();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(rows.max(1));
    let chunks = reader
        .metadata()
        .row_group(0)
        .columns()
        .iter()
        .map(|c| (c.encodings().collect(), c.statistics().cloned()))
        .collect();
    let mut read: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
    assert_eq!(read.len(), 1);
    (read.remove(0), chunks)
}
