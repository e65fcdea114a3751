//! The Parquet archive: one file per output schema per rotation window, under
//! `<out>/date=YYYY-MM-DD/hour=HH/`, written under a hidden temporary name and renamed into
//! place when complete, so a reader never sees half a file. Beside each open file, its
//! [`Journal`](crate::sink::journal::Journal) holds, with the row groups its checkpoints
//! made durable in the file itself, every batch the file will contain, synced on the
//! collector's interval: a crash loses at most that interval, and
//! [`recovery`](crate::sink::recovery) completes the file from the two. At a trickle each
//! batch is journaled as it comes; under load ([`CHECKPOINT_ROWS`] an interval) batches are
//! held back and each interval ends with a checkpoint, so each batch is encoded once. A file
//! is completed in this order: footer, fsync, rename, fsync of the directory, and only then the
//! journal is removed, so at every instant one of the two holds every row, and never both as
//! complete.
//!
//! IPv4 addresses are written as the decoder keeps them, `UInt32` (`flowvm sql` gives DuckDB a
//! view of the archive with their text, README "The archive"); IPv6 and MAC addresses as text
//! (`2001:db8::1`, `00:11:22:33:44:55`) so a user can filter on them as written, converted
//! ([`text`](crate::sink::text)) here, on the archive thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tracing::{error, info};

use crate::sink::encoder::Encoder;
use crate::sink::journal::{Checkpoint, Journal, Replayed, replay, set_aside};
use crate::sink::spool::Spool;
use crate::sink::text::{addresses_as_text, is_address};
use crate::sink::{ArchiveError, Sink};
use crate::telemetry::Counters;

/// Settings of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// The archive's root directory.
    pub out: PathBuf,
    /// Length of a rotation window in seconds (files are completed when it ends).
    pub rotate_seconds: i64,
    /// A file is completed early when it grows past this many octets.
    pub max_file_bytes: u64,
    /// Files open at once: every distinct template shape has its own file, and an exporter
    /// can send thousands of shapes; past this the least recently written file is completed
    /// early, so descriptors and buffered row groups stay bounded.
    pub max_open_files: usize,
    /// This collector's name in file names (`--collector-id`): collectors that share one
    /// bucket prefix never write the same key.
    pub collector: String,
    /// How the files' pages are compressed.
    pub codec: Codec,
}

/// How the archive's Parquet pages are compressed (`--compression`). Both are read by DuckDB,
/// pyarrow, Spark 3.4 and later, and Trino.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd at level 1: the smaller files (0.75 of LZ4's on softflowd's records) and, since
    /// the archive encodes its columns itself, the cheaper codec too.
    #[default]
    Zstd,
    /// LZ4 (Parquet's `LZ4_RAW`): 6 % more CPU a record than zstd in the latest run (2-6 % less
    /// before the archive encoded its columns itself), files 1.33 times as large.
    Lz4,
}

impl Codec {
    fn compression(self) -> Result<Compression, ArchiveError> {
        Ok(match self {
            Self::Zstd => Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?),
            Self::Lz4 => Compression::LZ4_RAW,
        })
    }
}

#[derive(Debug)]
struct OpenFile {
    /// The Parquet encoding in progress; `None` once it failed (a full disk): the file is then
    /// completed from its journal (and the row groups its checkpoints made durable).
    writer: Option<FileEncoder>,
    /// With the row groups its checkpoints made durable, every batch of the file, durable at each
    /// sync: the file's source of truth.
    journal: Journal,
    /// The file metadata every checkpoint's footer starts from (schema, Arrow schema, writer).
    template: FileMetaData,
    /// Batches given to the encoder that are neither in the journal nor in a row group a
    /// checkpoint made durable: held until a sync does one or the other.
    pending: VecDeque<RecordBatch>,
    /// Batches that left `pending` for the journal or a durable row group.
    spent: Vec<RecordBatch>,
    /// Rows in `pending`.
    pending_rows: usize,
    /// Octets of memory `pending` holds.
    pending_bytes: usize,
    /// Row groups of the encoder's that checkpoints made durable: the next checkpoint's are
    /// those after them. Once there are any, the temporary file holds rows the journal does
    /// not, and stays until the file is completed.
    durable_groups: usize,
    /// Whether the last sync could not make `pending` durable: the next write tries first.
    owed: bool,
    /// Rows written since the last sync.
    since_sync: usize,
    /// Whether batches are held back for a checkpoint rather than journaled as they come:
    /// when the interval before the last sync brought [`CHECKPOINT_ROWS`] or more.
    checkpointing: bool,
    temporary: PathBuf,
    path: PathBuf,
    window: i64,
    /// Batches written to any file when this one was last written: the least recent is
    /// completed first at the open-file bound.
    last_write: u64,
    /// Octets of the batches written, for the size bound when the writer is gone.
    written: usize,
}

impl OpenFile {
    /// Whether a checkpoint made row groups of the temporary file durable.
    fn checkpointed(&self) -> bool {
        self.durable_groups > 0
    }
}

/// Writes batches into the archive; owned by the archive thread.
#[derive(Debug)]
pub struct Archive {
    config: ArchiveConfig,
    open: HashMap<u64, OpenFile>,
    /// This start's name part: files of an earlier run in the same window never collide with
    /// this one's (a restart must not overwrite what a crash left, or what recovery made).
    run: u64,
    sequence: u64,
    writes: u64,
    counters: Arc<Counters>,
    /// The spool's bound and bell, when the files are shipped to an object store.
    spool: Option<Spool>,
    /// Batches written and made durable (or journaled), which the archive holds no more:
    /// their buffers may be written into again ([`Archive::take_spent`]).
    spent: Vec<RecordBatch>,
}

impl Archive {
    /// An archive under `config.out` (created when the first file is).
    pub fn new(config: ArchiveConfig, counters: Arc<Counters>) -> Self {
        Self {
            config,
            open: HashMap::new(),
            run: flowvm_exporter::clock::unix_nanos(),
            sequence: 0,
            writes: 0,
            counters,
            spool: None,
            spent: Vec::new(),
        }
    }

    /// The batches written since the last call that the archive no longer holds (journaled,
    /// or in a row group a checkpoint made durable): once the caller has dropped its own
    /// references, their buffers are nobody else's.
    pub fn take_spent(&mut self) -> Vec<RecordBatch> {
        let mut spent = std::mem::take(&mut self.spent);
        for file in self.open.values_mut() {
            spent.append(&mut file.spent);
        }
        spent
    }

    /// An archive that writes into a spool: it refuses rows while the spool is at its bound,
    /// and rings the shipper for every completed file.
    #[must_use]
    pub fn with_spool(mut self, spool: Spool) -> Self {
        self.spool = Some(spool);
        self
    }

    /// The archive of worker `index`: its files' names carry a run id of their own, so the
    /// workers of one start never write the same name.
    #[must_use]
    pub fn for_worker(mut self, index: usize) -> Self {
        self.run = self
            .run
            .wrapping_add(u64::try_from(index).unwrap_or(u64::MAX));
        self
    }

    fn completed_or_kept(&mut self, key: u64) -> Result<(), ArchiveError> {
        let codec = self.config.codec;
        let Some(file) = self.open.get_mut(&key) else {
            return Ok(());
        };
        let size = match finish(file, codec, &self.counters) {
            // Not a passing failure (the journal does not decode back): trying again would
            // hold every later row of this archive back for ever. The journal is set aside,
            // counted and logged, and the archive goes on.
            Err(e @ ArchiveError::Arrow(_)) => {
                self.counters.record_archive_error(&e);
                if let Some(file) = self.open.remove(&key) {
                    set_aside(file.journal.path(), &e);
                }
                return Ok(());
            }
            size => size?,
        };
        if let Some(file) = self.open.remove(&key) {
            file.journal.remove()?;
            // Nothing to complete: the file's first batch never reached its journal (a full
            // disk) and its encoder went with a failed completion.
            let Some((size, files)) = size else {
                return Ok(());
            };
            self.counters.files_written.add(files);
            info!(path = %file.path.display(), "Completed Parquet file.");
            if let Some(spool) = &self.spool {
                spool.completed(size);
            }
        }
        Ok(())
    }
}

impl Sink for Archive {
    fn write(&mut self, typed: &RecordBatch, now: i64) -> Result<(), ArchiveError> {
        if let Some(spool) = &self.spool {
            spool.admit()?;
        }
        let batch = addresses_as_text(typed)?;
        let key = fingerprint(batch.schema_ref());
        let window = now - now.rem_euclid(self.config.rotate_seconds.max(1));
        if self.open.get(&key).is_some_and(|f| f.window != window) {
            self.completed_or_kept(key)?;
        }
        if !self.open.contains_key(&key) && self.open.len() >= self.config.max_open_files.max(1) {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, f)| f.last_write)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.completed_or_kept(oldest)?;
            }
        }
        self.writes += 1;
        let file = match self.open.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                self.sequence += 1;
                let name = format!(
                    "flows-{window}-{key:016x}-{}-{:x}-{}.parquet",
                    self.config.collector, self.run, self.sequence
                );
                v.insert(create(&self.config, &batch, window, &name)?)
            }
        };
        file.last_write = self.writes;
        if file.owed || file.writer.is_none() {
            // What the last sync could not make durable goes first, or the batch waits.
            persist(file)?;
            file.owed = false;
        }
        // A batch that brings a load's rows by itself (a new file's first under load) is held
        // back as under load: journaled too, it would be written twice.
        let load = file.checkpointing || typed.num_rows() >= CHECKPOINT_ROWS;
        if load && file.writer.is_some() {
            // Held until the next sync makes it durable: in a row group, or in the journal.
            file.pending_rows += typed.num_rows();
            file.pending_bytes += typed.get_array_memory_size();
            file.pending.push_back(typed.clone());
        } else {
            // Journals keep addresses as the decoder gave them (4 octets, not up to 15 of
            // text): a third less to compress; completion writes them as text like the writer.
            file.journal.append(typed)?;
            spend(&mut self.spent, [typed.clone()]);
        }
        file.since_sync += typed.num_rows();
        file.written += batch.get_array_memory_size();
        self.counters
            .rows_written
            .add(u64::try_from(batch.num_rows()).unwrap_or(0));
        if let Some(writer) = file.writer.as_mut()
            && let Err(e) = writer.write(&batch)
        {
            // The encoder's state is unknown after a failed flush: drop it; the batches it
            // held go to the journal, and completion writes from there.
            error!(path = %file.temporary.display(), error = %e, "Parquet encoding failed; the file will be completed from its journal.");
            self.counters
                .record_archive_error(&ArchiveError::Parquet(e));
            drop_encoder(file);
        }
        if file.pending_bytes >= PENDING_MAX_BYTES {
            // A load that holds back more than the bound between two syncs: made durable now.
            // The batch is in either way: a failure is owed, and the next write tries first.
            if let Err(e) = make_durable(file, &self.counters, CHECKPOINT_ROWS) {
                error!(path = %file.temporary.display(), error = %e, "Could not make held-back batches durable; the next write tries again.");
                self.counters.record_archive_error(&e);
                file.owed = true;
            }
        }
        let size = file
            .writer
            .as_ref()
            .map_or(file.written, |w| w.bytes_written() + w.in_progress_size());
        if size >= usize::try_from(self.config.max_file_bytes).unwrap_or(usize::MAX) {
            // The batch is in: a completion that fails now is tried again at rotation.
            if let Err(e) = self.completed_or_kept(key) {
                self.counters.record_archive_error(&e);
            }
        }
        Ok(())
    }

    fn rotate(&mut self, now: i64) -> Result<(), ArchiveError> {
        let window = now - now.rem_euclid(self.config.rotate_seconds.max(1));
        let ended: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, f)| f.window < window)
            .map(|(k, _)| *k)
            .collect();
        let mut first = Ok(());
        for key in ended {
            if let Err(e) = self.completed_or_kept(key) {
                first = first.and(Err(e));
            }
        }
        first
    }

    fn sync(&mut self) -> Result<(), ArchiveError> {
        let mut first = Ok(());
        for file in self.open.values_mut() {
            let made = make_durable(file, &self.counters, CHECKPOINT_ROWS);
            file.owed = made.is_err();
            first = first.and(made);
        }
        first
    }

    fn location(&self) -> String {
        self.config.out.display().to_string()
    }

    fn close(&mut self) -> Result<(), ArchiveError> {
        let keys: Vec<u64> = self.open.keys().copied().collect();
        let mut first = Ok(());
        for key in keys {
            if let Err(e) = self.completed_or_kept(key) {
                first = first.and(Err(e));
            }
        }
        first
    }
}

/// Rows a file must bring between two syncs for its batches to be held back and made durable
/// as row groups of the file itself (checkpoints) rather than journaled as they come: under
/// load every batch is then encoded once, and row groups stay large enough to read well.
/// Below it each batch is journaled as it comes, and a full disk refuses it there and then.
const CHECKPOINT_ROWS: usize = 65_536;

/// Memory a file may hold back between two syncs; past it, the batches are made durable at
/// once (a checkpoint), so what waits for durability stays bounded at any rate.
const PENDING_MAX_BYTES: usize = 32 << 20;

/// Octets an archive file's writes are gathered into: parquet splices each column chunk into
/// the file 8 KiB at a time, and each of those was a system call of its own.
const FILE_BUFFER: usize = 64 * 1024;

/// An archive file's encoder, writing through a [`FILE_BUFFER`].
type FileEncoder = Encoder<BufWriter<File>>;

/// A new file at `path` for batches like `first`, encoded under `properties`.
fn file_encoder(
    path: &Path,
    first: &RecordBatch,
    properties: WriterProperties,
) -> Result<FileEncoder, ArchiveError> {
    let file = BufWriter::with_capacity(FILE_BUFFER, File::create(path)?);
    Ok(Encoder::try_new(file, first.schema(), properties)?)
}

/// The footer written and every octet in the file: the file, to sync and rename.
fn into_file(encoder: FileEncoder) -> Result<File, ArchiveError> {
    Ok(encoder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?)
}

/// Spent batches kept for [`Archive::take_spent`] at most, in each list: a caller that never
/// takes them costs no memory beyond these.
const SPENT_MAX: usize = 64;

/// Adds `batches` to the spent list `spent`, as far as [`SPENT_MAX`] allows; the rest are freed.
fn spend(spent: &mut Vec<RecordBatch>, batches: impl IntoIterator<Item = RecordBatch>) {
    let room = SPENT_MAX.saturating_sub(spent.len());
    spent.extend(batches.into_iter().take(room));
}

/// Makes what `file` holds back durable: as a row group of the file and a checkpoint when
/// there are `least_rows` or more (the encoder dropped if that fails), otherwise, or then, in
/// the journal; then syncs the journal. Whether the next interval's batches are held back is
/// decided by this one's rows.
fn make_durable(
    file: &mut OpenFile,
    counters: &Counters,
    least_rows: usize,
) -> Result<(), ArchiveError> {
    file.checkpointing = file.since_sync >= CHECKPOINT_ROWS;
    file.since_sync = 0;
    if file.writer.is_some() && file.pending_rows >= least_rows.max(1) {
        match checkpoint(file) {
            Ok(()) => {
                spend(&mut file.spent, file.pending.drain(..));
                file.pending_rows = 0;
                file.pending_bytes = 0;
            }
            Err(e) => {
                error!(path = %file.temporary.display(), error = %e, "Could not make a row group durable; the file will be completed from its journal.");
                counters.record_archive_error(&e);
                drop_encoder(file);
            }
        }
    }
    persist(file)?;
    Ok(file.journal.sync()?)
}

/// Makes the row groups of `file` durable in place: the rows in progress flushed as a row
/// group, the file synced, then a checkpoint appended to the journal with the footer of the row
/// groups since the last one (completion puts the footers together: [`footer`]).
fn checkpoint(file: &mut OpenFile) -> Result<(), ArchiveError> {
    let Some(writer) = file.writer.as_mut() else {
        return Ok(());
    };
    writer.flush()?;
    writer.sync()?;
    writer.inner().get_ref().sync_data()?;
    let groups = writer.flushed_row_groups();
    let new = groups
        .get(file.durable_groups..)
        .unwrap_or_default()
        .to_vec();
    let rows: i64 = new.iter().map(RowGroupMetaData::num_rows).sum();
    let durable = groups.len();
    file.journal.checkpoint(&Checkpoint {
        length: u64::try_from(writer.bytes_written()).unwrap_or(u64::MAX),
        rows: u64::try_from(rows).unwrap_or(0),
        footer: footer(&file.template, new)?,
    })?;
    file.durable_groups = durable;
    Ok(())
}

/// A Parquet footer (file metadata, its length, the closing magic) for `groups`, whose file
/// metadata is `template`'s with their rows; page indexes are left out (a reader does not
/// need them).
fn footer(template: &FileMetaData, groups: Vec<RowGroupMetaData>) -> Result<Vec<u8>, ArchiveError> {
    let rows = groups.iter().map(RowGroupMetaData::num_rows).sum();
    let metadata = ParquetMetaData::new(
        FileMetaData::new(
            template.version(),
            rows,
            template.created_by().map(str::to_owned),
            template.key_value_metadata().cloned(),
            template.schema_descr_ptr(),
            template.column_orders().cloned(),
        ),
        groups,
    );
    let mut footer = Vec::new();
    ParquetMetaDataWriter::new(&mut footer, &metadata)
        .with_preserve_page_index_locations(false)
        .finish()?;
    Ok(footer)
}

/// The footer that completes a file at its last checkpoint: the row groups of all of
/// `checkpoints`, under the file metadata they carry.
///
/// # Errors
/// A checkpoint's footer does not decode ([`ArchiveError::Arrow`]: not what flowvm writes,
/// the journal is set aside).
fn footer_of(checkpoints: &[Checkpoint]) -> Result<Vec<u8>, ArchiveError> {
    let mut groups = Vec::new();
    let mut template = None;
    for checkpoint in checkpoints {
        // The file metadata, without its length and magic.
        let body = checkpoint
            .footer
            .get(..checkpoint.footer.len().saturating_sub(8))
            .unwrap_or_default();
        let metadata = ParquetMetaDataReader::decode_metadata(body).map_err(|e| {
            ArchiveError::Arrow(arrow_schema::ArrowError::ParseError(format!(
                "a checkpoint's footer does not decode: {e}"
            )))
        })?;
        groups.extend(metadata.row_groups().iter().cloned());
        template = Some(metadata.file_metadata().clone());
    }
    match template {
        Some(template) => footer(&template, groups),
        None => Ok(Vec::new()),
    }
}

/// Appends the batches `file` holds back to its journal, each let go once in.
fn persist(file: &mut OpenFile) -> Result<(), ArchiveError> {
    while let Some(batch) = file.pending.front() {
        file.journal.append(batch)?;
        file.pending_rows -= batch.num_rows();
        file.pending_bytes -= batch.get_array_memory_size();
        spend(&mut file.spent, file.pending.pop_front());
    }
    Ok(())
}

/// Drops the encoder of `file`, whose state is unknown after a failure; its temporary file
/// goes too unless a checkpoint made some of it durable (completion cuts it back to that).
fn drop_encoder(file: &mut OpenFile) {
    file.writer = None;
    if !file.checkpointed() {
        let _ = std::fs::remove_file(&file.temporary);
    }
}

// fsync(2): syncing a file does not sync the directory entry that names it; the directory is
// synced too, after the rename.
/// Completes `file`: its Parquet footer written by the encoder in progress, the file synced,
/// renamed into place, and the directory synced; or, when the encoder failed, from the journal
/// ([`complete_from_journal`]). Only then may its journal go. On error nothing is renamed, the
/// journal stays and holds every row the file has not made durable. Returns the octets and
/// files written, or `None` when there is nothing to complete (no encoder, and a journal with
/// no batch and no checkpoint).
fn finish(
    file: &mut OpenFile,
    codec: Codec,
    counters: &Counters,
) -> Result<Option<(u64, u64)>, ArchiveError> {
    // What is held back is made durable first, as a checkpoint (or, failing that, in the
    // journal): a crash after the footer but before the rename leaves the file to recovery,
    // which cuts it at its last checkpoint. Encoded once, it is not journaled as well.
    make_durable(file, counters, 1)?;
    if let Some(writer) = file.writer.take() {
        let completed = into_file(writer).and_then(|parquet| {
            parquet.sync_all()?;
            let size = parquet.metadata()?.len();
            std::fs::rename(&file.temporary, &file.path)?;
            sync_directory(&file.path)?;
            Ok(size)
        });
        return match completed {
            Ok(size) => Ok(Some((size, 1))),
            Err(e) => {
                drop_encoder(file);
                Err(e)
            }
        };
    }
    Ok(
        complete_from_journal(file.journal.path(), &file.temporary, &file.path, codec)?
            .map(|c| (c.size, c.files)),
    )
}

/// Syncs the directory that holds `path`, so a rename into it survives a crash.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_directory(path: &Path) -> Result<(), ArchiveError> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// zstd's level: 1 costs a third less CPU than 3 on softflowd's records for files 0.6 % larger
/// (README, Figures).
const ZSTD_LEVEL: i32 = 1;

/// A text column's dictionary stops growing at this size and the rest of its column chunk is
/// written plain: parquet's default (1 MiB) keeps interning the addresses of many hosts,
/// where a dictionary does not pay; at 64 KiB such columns fall back within a few thousand
/// rows while those of few values (exporters, the addresses of a small site, application
/// names) keep theirs. Files are smaller for it on both bench loads (README, Figures).
const DICTIONARY_PAGE_LIMIT: usize = 64 * 1024;

/// The encoding a file gets, chosen from its first batch ([`choose`]): pages compressed by
/// `codec` where that pays; dictionaries bounded, none for text columns of many values.
/// Numbers (counters, times, ports, flags) are written plain for the codec to compress, or
/// delta-encoded, or with a dictionary of their own (few values the codec has work on), as the
/// first batch shows pays (README, Figures).
/// Address columns carry no statistics: their minimum and maximum, when IPv4 addresses were
/// text compared value by value, were a twentieth of the instructions a record, and over a
/// network's mixed addresses span nearly every value, so a reader could skip almost no row
/// group or page by them. Past its dictionary, a text address column is written
/// `DELTA_BYTE_ARRAY` (each value as the length of the prefix it shares with the one before,
/// and the rest); a text column without one is
/// written so or `DELTA_LENGTH_BYTE_ARRAY` (the lengths, then the values back to back) as
/// [`choose`] finds. Values are encoded 8,192 at a time (the writer's default of 1,024 spent
/// 5 % of the archive's encoding on the work done per batch: README, Figures).
///
/// # Errors
/// Encoding the first batch's sample failed, or `codec` has no such level.
pub fn properties(first: &RecordBatch, codec: Codec) -> Result<WriterProperties, ArchiveError> {
    let choices = choose(first, codec)?;
    let schema = first.schema_ref();
    let mut builder = WriterProperties::builder()
        .set_compression(codec.compression()?)
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
        .set_write_batch_size(8192);
    for (index, field) in schema.fields().iter().enumerate() {
        let column = || ColumnPath::from(field.name().as_str());
        let address = is_address(field);
        if address {
            builder = builder.set_column_statistics_enabled(column(), EnabledStatistics::None);
        }
        let text = matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Dictionary(..)
        );
        let without_dictionary = choices.without_dictionary.contains(&index);
        if without_dictionary || (!text && !choices.dictionary.contains(&index)) {
            builder = builder.set_column_dictionary_enabled(column(), false);
        }
        // The encoding of the values, or past the dictionary of a text column that has one
        // (an address column still as decoded, not text, is a number like any other).
        let encoding = if choices.delta.contains(&index) {
            Some(Encoding::DELTA_BINARY_PACKED)
        } else if choices.prefixed.contains(&index) || (address && text && !without_dictionary) {
            Some(Encoding::DELTA_BYTE_ARRAY)
        } else if without_dictionary {
            Some(Encoding::DELTA_LENGTH_BYTE_ARRAY)
        } else {
            None
        };
        if let Some(encoding) = encoding {
            builder = builder.set_column_encoding(column(), encoding);
        }
        if choices.uncompressed.contains(&index) {
            builder = builder.set_column_compression(column(), Compression::UNCOMPRESSED);
        }
    }
    Ok(builder.build())
}

/// Rows of a first batch [`choose`] tries, at most.
const SAMPLE_ROWS: usize = 16_384;

/// Below this many rows a first batch says too little to choose by; its file stays plain,
/// compressed, and with a dictionary for every text column.
const SAMPLE_MIN_ROWS: usize = 1024;

/// What [`choose`] found for each column (by index) of a file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Choices {
    /// Integer and time columns delta-encoded.
    delta: Vec<usize>,
    /// Integer and time columns written with a dictionary first.
    dictionary: Vec<usize>,
    /// Integer and time columns whose pages the codec leaves uncompressed.
    uncompressed: Vec<usize>,
    /// Text columns written without a dictionary.
    without_dictionary: Vec<usize>,
    /// Of those, the ones written `DELTA_BYTE_ARRAY`; the others are written
    /// `DELTA_LENGTH_BYTE_ARRAY`.
    prefixed: Vec<usize>,
}

/// How the columns of `first`'s file are best written, from up to [`SAMPLE_ROWS`] of its
/// rows.
///
/// - Each integer and time column is written both plain and `DELTA_BINARY_PACKED`
///   (differences between neighbours, bit-packed) and compressed; delta-encoded when that
///   comes out at least 5 % smaller, unless plain already compresses it to under an eighth of
///   an octet a row (zeros, say: nothing to gain). Values near one another (counters of
///   similar flows, times in order) pack into a few bits a row and leave the codec far fewer
///   octets to work through: softflowd's counters and source ports, Cisco's uptimes, files 6 %
///   smaller and softflowd's replay 9.5 % less CPU a record (README, Figures). Values that
///   vary widely from row to row (Cisco's AVC counters and response times) come out larger
///   delta-encoded and stay plain; delta-encoding every integer column made Cisco's files 24 %
///   larger.
/// - Such a column is left uncompressed when the codec takes less than an eighth off its
///   pages: bit-packed differences of wide counters or random ports are as dense as the codec
///   makes them, and compressing them anyway cost a quarter of their time; zstd took 9 % off
///   softflowd's scattered IPv4 destinations for 2.8 ns a row, and without it the archive is
///   12 % cheaper for files 4 % larger (README, Figures).
/// - One the codec takes 5 % off or more and that still comes to an eighth of an octet a row or
///   more is written again with a dictionary first, and keeps it when that comes out no larger
///   and its dictionary page within a quarter of [`DICTIONARY_PAGE_LIMIT`]: a router's
///   interfaces, VLANs, TTLs, a site's hosts and counts of few values become bit-packed
///   indices the codec has little left to do on (the Cisco AVC capture's archive 13 % cheaper
///   and files 6 % smaller; with its IPv4 addresses as numbers, their dictionaries of up to
///   16 KiB rather than 4 took its files 6 % smaller again and its archive 11 % cheaper).
///   Near-constant columns are not tried: zstd makes short work of them, cheaper than the
///   dictionary's look-ups.
/// - A text column (addresses, names, URLs) whose distinct values in the sample would fill its
///   dictionary ([`DICTIONARY_PAGE_LIMIT`]) has none: it would fall back within the sample's
///   rows at every row group, after hashing every value for nothing. Such a column is written
///   both `DELTA_BYTE_ARRAY` and `DELTA_LENGTH_BYTE_ARRAY`, and compressed; front-coded (the
///   first) when that comes out at least 5 % smaller. Neighbours that share their beginnings
///   (a network's sources in order, a site's URLs) leave the codec far fewer octets to work
///   through; values that share little (scattered destinations) cost the prefix comparisons
///   for nothing, and the codec does better with the lengths apart from the text: softflowd's
///   destinations 9 % smaller and 11 % cheaper to write that way (README, Figures). Left
///   uncompressed, too, when the codec takes less than an eighth off.
///
/// # Errors
/// Encoding the sample failed.
fn choose(first: &RecordBatch, codec: Codec) -> Result<Choices, ArchiveError> {
    let rows = first.num_rows().min(SAMPLE_ROWS);
    let mut choices = Choices::default();
    if rows < SAMPLE_MIN_ROWS {
        return Ok(choices);
    }
    let sample = first.slice(0, rows);
    let fields = sample.schema_ref().fields();
    choices.without_dictionary = fields
        .iter()
        .zip(sample.columns())
        .enumerate()
        .filter(|(_, (_, column))| fills_dictionary(column))
        .map(|(index, _)| index)
        .collect();
    let numbers: Vec<usize> = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.data_type().is_integer() || matches!(f.data_type(), DataType::Timestamp(..))
        })
        .map(|(index, _)| index)
        .collect();
    // (compressed, uncompressed, dictionary page) octets of the chunk of each of `columns`
    // written as `encoding`, with a dictionary first or not.
    let sizes = |columns: &[usize],
                 encoding: Encoding,
                 dictionary: bool|
     -> Result<Vec<(i64, i64, i64)>, ArchiveError> {
        let properties = WriterProperties::builder()
            .set_compression(codec.compression()?)
            .set_dictionary_enabled(dictionary)
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_encoding(encoding)
            .build();
        let projected = sample.project(columns)?;
        let mut writer = Encoder::try_new(Vec::new(), projected.schema(), properties)?;
        writer.write(&projected)?;
        let metadata = writer.finish()?;
        Ok(metadata
            .row_groups()
            .first()
            .map(|group| {
                group
                    .columns()
                    .iter()
                    .map(|c| {
                        let dictionary = c
                            .dictionary_page_offset()
                            .map_or(0, |offset| c.data_page_offset() - offset);
                        (c.compressed_size(), c.uncompressed_size(), dictionary)
                    })
                    .collect()
            })
            .unwrap_or_default())
    };
    // For each of `columns`: whether `other` is chosen over `usual` (it comes out at least 5 %
    // smaller, where `usual` comes to `least` octets or more), and the one chosen's octets
    // compressed and not.
    let compare = |columns: &[usize], usual: Encoding, other: Encoding, least: i64| {
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        let usual = sizes(columns, usual, false)?;
        let other = sizes(columns, other, false)?;
        Ok::<_, ArchiveError>(
            columns
                .iter()
                .zip(usual.into_iter().zip(other))
                .map(|(&index, (usual, other))| {
                    let better = usual.0 >= least && other.0 * 20 <= usual.0 * 19;
                    let chosen = if better { other } else { usual };
                    (index, better, chosen.0, chosen.1)
                })
                .collect(),
        )
    };
    let least_size = i64::try_from(rows / 8).unwrap_or(i64::MAX);
    let numbers = compare(
        &numbers,
        Encoding::PLAIN,
        Encoding::DELTA_BINARY_PACKED,
        least_size,
    )?;
    let texts = compare(
        &choices.without_dictionary,
        Encoding::DELTA_LENGTH_BYTE_ARRAY,
        Encoding::DELTA_BYTE_ARRAY,
        0,
    )?;
    // Numbers the codec works on (takes 5 % off or more, and leaves an eighth of an octet a row
    // or more: below that it makes short work of them, and a dictionary's look-ups cost more
    // than they save), written again with a dictionary first: kept where that comes out no
    // larger than the encoding chosen above, with a dictionary page of at most a quarter of
    // its bound (a site's few thousand hosts, a router's interfaces: a row group's values will
    // mostly still fit, and past the bound the chunk goes on in its own encoding).
    let compressed: Vec<(usize, i64)> = numbers
        .iter()
        .filter(|&&(_, _, size, plain)| size * 20 <= plain * 19 && size >= least_size)
        .map(|&(index, _, size, _)| (index, size))
        .collect();
    let columns: Vec<usize> = compressed.iter().map(|&(index, _)| index).collect();
    let with_dictionary = if columns.is_empty() {
        Vec::new()
    } else {
        sizes(&columns, Encoding::PLAIN, true)?
    };
    let bound = i64::try_from(DICTIONARY_PAGE_LIMIT / 4).unwrap_or(i64::MAX);
    for (&(index, chosen), (size, _, dictionary)) in compressed.iter().zip(with_dictionary) {
        if size <= chosen && dictionary <= bound {
            choices.dictionary.push(index);
        }
    }
    // Left uncompressed where the codec takes less than an eighth off.
    let little_off = |size: i64, plain: i64| size * 8 > plain * 7;
    for (index, delta, size, plain) in numbers {
        let dictionary = choices.dictionary.contains(&index);
        if delta && !dictionary {
            choices.delta.push(index);
        }
        if little_off(size, plain) && !dictionary {
            choices.uncompressed.push(index);
        }
    }
    for (index, prefixed, size, plain) in texts {
        if prefixed {
            choices.prefixed.push(index);
        }
        if little_off(size, plain) {
            choices.uncompressed.push(index);
        }
    }
    choices.uncompressed.sort_unstable();
    Ok(choices)
}

/// Whether the distinct values of the text `column` would fill a dictionary page
/// ([`DICTIONARY_PAGE_LIMIT`]: each value and its 4-octet length).
fn fills_dictionary(column: &ArrayRef) -> bool {
    let Some(texts) = column.as_string_opt::<i32>() else {
        return false;
    };
    let mut distinct = HashSet::new();
    let mut size = 0;
    for text in texts.iter().flatten() {
        if distinct.insert(text) {
            size += text.len() + 4;
            if size > DICTIONARY_PAGE_LIMIT {
                return true;
            }
        }
    }
    false
}

/// What [`complete_from_journal`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    /// Octets written in all.
    pub size: u64,
    /// Files made: one, or two when the journal had a checkpoint and batches after it.
    pub files: u64,
    /// Rows in them.
    pub rows: u64,
    /// What the replay found.
    pub replayed: Replayed,
}

/// Completes the file at `path` from its journal at `journal` and its temporary file at
/// `temporary`, each file synced, renamed into place and its directory synced. Without a
/// checkpoint the journal's batches make the file. With checkpoints, the temporary file cut at
/// the last one's length and closed by a footer of all their row groups makes the file, and
/// the batches after the last make a second, `…-tail.parquet` beside it, written first. Either step done
/// again gives the same file, so a completion cut short by a crash is simply done again.
/// `None` when there is nothing to complete.
///
/// # Errors
/// The journal or a file cannot be read or written.
pub fn complete_from_journal(
    journal: &Path,
    temporary: &Path,
    path: &Path,
    codec: Codec,
) -> Result<Option<Completed>, ArchiveError> {
    let replaying = temporary.with_extension("replay.tmp");
    let mut writer: Option<FileEncoder> = None;
    let replayed = replay(journal, |batch| {
        let batch = addresses_as_text(&batch)?;
        let w = match writer.as_mut() {
            Some(w) => w,
            None => writer.insert(file_encoder(
                &replaying,
                &batch,
                properties(&batch, codec)?,
            )?),
        };
        w.write(&batch)?;
        Ok(())
    })?;
    let batches = writer.map(into_file).transpose()?;
    let mut completed = Completed {
        size: 0,
        files: 0,
        rows: replayed.rows,
        replayed,
    };
    let Some(last) = completed.replayed.checkpoints.last() else {
        // Nothing of the temporary file was made durable: the journal holds every row.
        let _ = std::fs::remove_file(temporary);
        let Some(batches) = batches else {
            return Ok(None);
        };
        completed.size = commit(&batches, &replaying, path)?;
        completed.files = 1;
        return Ok(Some(completed));
    };
    // The durable row groups first: a file shorter than its checkpoint says (or gone) is not
    // what a checkpoint leaves, which syncs the file before it is written; the journal is then
    // set aside, with the file beside it.
    let (length, rows) = (
        last.length,
        completed
            .replayed
            .checkpoints
            .iter()
            .map(|c| c.rows)
            .sum::<u64>(),
    );
    let held = std::fs::metadata(temporary).map_or(0, |m| m.len());
    if held < length {
        let _ = std::fs::remove_file(&replaying);
        return Err(ArchiveError::Arrow(arrow_schema::ArrowError::ParseError(
            format!(
                "{} holds {held} octets, fewer than the {length} its journal's checkpoint describes",
                temporary.display()
            ),
        )));
    }
    let footer = footer_of(&completed.replayed.checkpoints).inspect_err(|_| {
        let _ = std::fs::remove_file(&replaying);
    })?;
    if let Some(batches) = batches {
        completed.size += commit(&batches, &replaying, &tail_of(path))?;
        completed.files += 1;
    }
    let mut prefix = OpenOptions::new().write(true).open(temporary)?;
    prefix.set_len(length)?;
    prefix.seek(SeekFrom::Start(length))?;
    prefix.write_all(&footer)?;
    completed.size += commit(&prefix, temporary, path)?;
    completed.files += 1;
    completed.rows += rows;
    Ok(Some(completed))
}

/// Syncs `file`, written at `temporary`, renames it to `path` and syncs the directory; returns
/// its size.
fn commit(file: &File, temporary: &Path, path: &Path) -> Result<u64, ArchiveError> {
    file.sync_all()?;
    let size = file.metadata()?.len();
    std::fs::rename(temporary, path)?;
    sync_directory(path)?;
    Ok(size)
}

/// Where the batches after a checkpoint go when a file is completed from its journal:
/// `NAME.parquet` → `NAME-tail.parquet`.
fn tail_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".parquet").unwrap_or(&name);
    path.with_file_name(format!("{stem}-tail.parquet"))
}

fn create(
    config: &ArchiveConfig,
    first: &RecordBatch,
    window: i64,
    name: &str,
) -> Result<OpenFile, ArchiveError> {
    let (date, hour) = civil(window);
    let dir = config
        .out
        .join(format!("date={date}"))
        .join(format!("hour={hour:02}"));
    std::fs::create_dir_all(&dir)?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let journal = Journal::create(dir.join(format!(".{name}.journal")))?;
    let path = dir.join(name);
    let made = properties(first, config.codec).and_then(|properties| {
        let mut empty = Encoder::try_new(Vec::new(), first.schema(), properties.clone())?;
        let template = empty.finish()?.file_metadata().clone();
        let writer = file_encoder(&temporary, first, properties)?;
        Ok((writer, template))
    });
    let (writer, template) = match made {
        Ok(made) => made,
        Err(e) => {
            // A full disk: leave nothing behind for the attempt that failed.
            let _ = std::fs::remove_file(&temporary);
            let _ = journal.remove();
            return Err(e);
        }
    };
    Ok(OpenFile {
        writer: Some(writer),
        journal,
        template,
        pending: VecDeque::new(),
        spent: Vec::new(),
        pending_rows: 0,
        pending_bytes: 0,
        durable_groups: 0,
        owed: false,
        since_sync: 0,
        checkpointing: false,
        temporary,
        path,
        window,
        last_write: 0,
        written: 0,
    })
}

/// `YYYY-MM-DD` and the hour of a UNIX time, in UTC (days-from-civil inverted, after
/// Howard Hinnant's `civil_from_days`).
fn civil(unix: i64) -> (String, i64) {
    let days = unix.div_euclid(86_400);
    let hour = unix.rem_euclid(86_400) / 3600;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), hour)
}

/// Identifies an output schema: column names and types.
fn fingerprint(schema: &SchemaRef) -> u64 {
    let mut h = DefaultHasher::new();
    for f in schema.fields() {
        f.name().hash(&mut h);
        f.data_type().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use arrow_array::{FixedSizeBinaryArray, StringArray, UInt32Array, UInt64Array};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn a_journal_that_does_not_decode_back_is_set_aside_and_the_archive_goes_on() {
        let (dir, out) = scratch("unreadable");
        let (mut archive, counters) = archive_in(&out);
        archive.write(&batch(0..10), 1_000).unwrap();
        archive.sync().unwrap();
        // The encoder is gone and the journal holds a checked frame that is not IPC.
        let file = archive.open.values_mut().next().unwrap();
        file.writer = None;
        let body = b"not an IPC stream";
        let mut frame = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        frame.extend_from_slice(body);
        std::fs::write(file.journal.path(), &frame).unwrap();
        let journal = file.journal.path().to_path_buf();
        archive.rotate(1_001).unwrap();
        assert!(!journal.exists());
        assert!(journal.with_extension("journal.unreadable").exists());
        assert_eq!(counters.archive_errors.get(), 1);
        archive.write(&batch(10..15), 1_002).unwrap();
        archive.close().unwrap();
        assert_eq!(counters.files_written.get(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_column_is_written_as_its_first_batch_shows_pays() {
        let (dir, out) = scratch("choices");
        let (mut archive, _) = archive_in(&out);
        let rows = 20_000_u64;
        // Octets near one another (a hash's low bits), as of similar flows; times that grow
        // by uniform random steps, whose bit-packed differences the codec cannot shrink; the
        // full hash (splitmix64's finaliser) scatters the third column over all of u64, where
        // differences are as wide as the values; the fourth is all zeros, which the codec
        // makes nothing of either way. Addresses of many hosts, and of four; names of many
        // pages.
        let hash = |i: u64| {
            let z = (i ^ (i >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let near = UInt64Array::from_iter_values((0..rows).map(|i| 1500 + hash(i) % 97));
        let walk = UInt64Array::from_iter_values((0..rows).scan(0, |t, i| {
            *t += hash(i) % 128;
            Some(*t)
        }));
        let scattered = UInt64Array::from_iter_values((0..rows).map(hash));
        let constant = UInt64Array::from_iter_values((0..rows).map(|_| 0));
        let address = |name: &str, data_type, ipfix: &str| {
            Field::new(name, data_type, false).with_metadata(HashMap::from([(
                "ipfix.data_type".to_owned(),
                ipfix.to_owned(),
            )]))
        };
        let first = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("octetDeltaCount", DataType::UInt64, false),
                Field::new("flowEndMilliseconds", DataType::UInt64, false),
                Field::new("scattered", DataType::UInt64, false),
                Field::new("constant", DataType::UInt64, false),
                address(
                    "destinationIPv6Address",
                    DataType::FixedSizeBinary(16),
                    "ipv6Address",
                ),
                address("sourceIPv4Address", DataType::UInt32, "ipv4Address"),
                Field::new("httpUrl", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(near),
                Arc::new(walk),
                Arc::new(scattered),
                Arc::new(constant),
                Arc::new(
                    FixedSizeBinaryArray::try_from_iter((0..rows).map(|i| {
                        (u128::from(hash(i)) << 64 | u128::from(hash(i + rows))).to_be_bytes()
                    }))
                    .unwrap(),
                ),
                Arc::new(UInt32Array::from_iter_values((0..rows).map(|i| {
                    0x0a00_0000 | u32::try_from(hash(i) % 4).unwrap_or_default()
                }))),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("/page/{}", hash(i) % 100_000)),
                )),
            ],
        )
        .unwrap();
        let text = addresses_as_text(&first).unwrap();
        // Bit-packed differences of the walk, and the scattered counters, are as dense as the
        // codec makes them; those of the near counters zstd's entropy coding shrinks, LZ4's
        // matches do not. Under zstd the near counters' 97 values are smaller still as
        // indices into a dictionary; the zeros (which the codec makes nothing of) and what
        // the codec leaves alone are not tried with one. The four hosts' IPv4 addresses
        // (integers, as archived) are indices too under zstd, and under LZ4 differences of
        // three bits that it leaves as they are, as it does the random IPv6 addresses' text.
        // The pages' names all begin "/page/": front coding leaves it out of all but the
        // first value, where zstd still spends bits on each repeat; LZ4's matches take it
        // as cheaply either way.
        for (codec, delta, dictionary, uncompressed, prefixed) in [
            (Codec::Zstd, vec![1], vec![0, 5], vec![1, 2], vec![6]),
            (
                Codec::Lz4,
                vec![0, 1, 5],
                vec![],
                vec![0, 1, 2, 4, 5],
                vec![],
            ),
        ] {
            assert_eq!(
                choose(&text, codec).unwrap(),
                Choices {
                    delta,
                    dictionary,
                    uncompressed,
                    without_dictionary: vec![4, 6],
                    prefixed,
                }
            );
        }
        // Too few rows to choose by.
        assert_eq!(
            choose(&text.slice(0, SAMPLE_MIN_ROWS - 1), Codec::Zstd).unwrap(),
            Choices::default()
        );

        archive.write(&first, 1_000).unwrap();
        archive.close().unwrap();
        let path = parquet_files(&out).pop().unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).unwrap(),
        )
        .unwrap();
        let chunk = reader.metadata().row_group(0).columns().to_vec();
        let delta = |i: usize| {
            chunk[i]
                .encodings()
                .any(|e| e == Encoding::DELTA_BINARY_PACKED)
        };
        assert!(!delta(0) && delta(1) && !delta(2));
        assert!(chunk[0].encodings().any(|e| e == Encoding::RLE_DICTIONARY));
        // A page of one value is written as differences of zero in no bits, whatever the
        // column's encoding (sink/chunk/integer.rs): the constant column has no plain page.
        assert!(delta(3) && !chunk[3].encodings().any(|e| e == Encoding::PLAIN));
        // Written under zstd: scattered hosts share too little of their text for front coding
        // to pay.
        let text_encoding = |i: usize| {
            chunk[i]
                .encodings()
                .find(|e| {
                    matches!(
                        e,
                        Encoding::DELTA_BYTE_ARRAY | Encoding::DELTA_LENGTH_BYTE_ARRAY
                    )
                })
                .unwrap()
        };
        assert_eq!(text_encoding(4), Encoding::DELTA_LENGTH_BYTE_ARRAY);
        assert_eq!(text_encoding(6), Encoding::DELTA_BYTE_ARRAY);
        let compressed: Vec<bool> = chunk
            .iter()
            .map(|c| c.compression() != Compression::UNCOMPRESSED)
            .collect();
        assert_eq!(compressed, [true, false, false, true, true, true, true]);
        let dictionary: Vec<bool> = chunk
            .iter()
            .map(|c| c.dictionary_page_offset().is_some())
            .collect();
        // The near counters' and the four hosts'.
        assert_eq!(dictionary, [true, false, false, false, false, true, false]);
        let read: Vec<RecordBatch> = reader
            .with_batch_size(first.num_rows())
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read, [text]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn text_without_a_dictionary_keeps_nulls_empty_and_long_values_under_either_encoding() {
        // Two nullable text columns of many distinct values (past the dictionary), with nulls,
        // empty strings and values of up to 3,000 octets: one whose neighbours share their
        // beginnings, one whose neighbours share nothing.
        let rows = 12_000_u64;
        let hash = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7;
        let value = |i: u64, shared: bool| match i % 10 {
            0..=2 => None,
            3 => Some(String::new()),
            4 if i % 100 == 4 => Some(format!("{:x}", hash(i)).repeat(200)),
            _ if shared => Some(format!("/a/common/beginning/{i:08}")),
            _ => Some(format!("{:x}/{i}", hash(i))),
        };
        let first = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("shared", DataType::Utf8, true),
                Field::new("scattered", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from_iter((0..rows).map(|i| value(i, true)))),
                Arc::new(StringArray::from_iter((0..rows).map(|i| value(i, false)))),
            ],
        )
        .unwrap();
        let choices = choose(&first, Codec::Zstd).unwrap();
        assert_eq!(choices.without_dictionary, [0, 1]);
        assert_eq!(choices.prefixed, [0]);
        let (dir, _) = scratch("text-encodings");
        for codec in [Codec::Zstd, Codec::Lz4] {
            let path = dir.join(format!("{codec:?}.parquet"));
            let properties = properties(&first, codec).unwrap();
            let mut writer =
                Encoder::try_new(File::create(&path).unwrap(), first.schema(), properties).unwrap();
            writer.write(&first).unwrap();
            writer.finish().unwrap();
            let read: Vec<RecordBatch> =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    File::open(&path).unwrap(),
                )
                .unwrap()
                .with_batch_size(first.num_rows())
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(read, std::slice::from_ref(&first), "{codec:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The Parquet files under `out`.
    fn parquet_files(out: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let days = std::fs::read_dir(out).unwrap().map(|d| d.unwrap().path());
        for day in days.filter(|d| d.is_dir()) {
            for hour in std::fs::read_dir(day).unwrap() {
                for file in std::fs::read_dir(hour.unwrap().path()).unwrap() {
                    let path = file.unwrap().path();
                    if path.extension().is_some_and(|e| e == "parquet") {
                        files.push(path);
                    }
                }
            }
        }
        files
    }

    #[test]
    fn under_load_row_groups_are_made_durable_in_place_and_a_crash_loses_none_of_them() {
        let (dir, out) = scratch("checkpoint");
        let (mut archive, _) = archive_in(&out);
        let rows = u64::try_from(CHECKPOINT_ROWS).unwrap();
        // A first interval of load in smaller batches, journaled as they come; the next
        // intervals are held back.
        archive.write(&batch(0..rows / 2), 1_000).unwrap();
        archive.write(&batch(rows / 2..rows), 1_000).unwrap();
        assert!(archive.open.values().next().unwrap().pending.is_empty());
        archive.sync().unwrap();
        let file = archive.open.values().next().unwrap();
        assert!(file.checkpointing && file.pending.is_empty());
        let journaled = std::fs::metadata(file.journal.path()).unwrap().len();
        archive.write(&batch(rows..2 * rows), 1_000).unwrap();
        let file = archive.open.values().next().unwrap();
        assert_eq!(file.pending_rows, CHECKPOINT_ROWS);
        // Nothing of the second batch went to the journal: it is encoded once.
        assert_eq!(
            std::fs::metadata(file.journal.path()).unwrap().len(),
            journaled
        );
        archive.sync().unwrap();
        let file = archive.open.values().next().unwrap();
        assert!(file.checkpointed() && file.pending.is_empty());
        // Two more intervals of load: a checkpoint each, holding its own row group only (the
        // journal grows with the file, not with its square).
        for interval in 2..4 {
            archive
                .write(&batch(interval * rows..(interval + 1) * rows), 1_000)
                .unwrap();
            archive.sync().unwrap();
        }
        let file = archive.open.values().next().unwrap();
        let replayed = replay(file.journal.path(), |_| Ok(())).unwrap();
        // The first row group holds the journaled interval too.
        let held: Vec<(usize, u64)> = replayed
            .checkpoints
            .iter()
            .map(|c| {
                let body = &c.footer[..c.footer.len() - 8];
                let metadata = ParquetMetaDataReader::decode_metadata(body).unwrap();
                (metadata.num_row_groups(), c.rows)
            })
            .collect();
        assert_eq!(held, [(1, 2 * rows), (1, rows), (1, rows)]);
        // The load stops: a trickle is journaled again.
        let last = 4 * rows;
        archive.write(&batch(last..last + 10), 1_000).unwrap();
        archive.sync().unwrap();
        archive.write(&batch(last + 10..last + 15), 1_000).unwrap();
        let file = archive.open.values().next().unwrap();
        assert!(!file.checkpointing && file.pending.is_empty());
        // A crash: the encoder's buffers are lost, nothing is completed.
        std::mem::forget(archive);

        let recovered = recover(&out);
        assert_eq!((recovered.files, recovered.rows), (2, 4 * rows + 15));
        let files = parquet_files(&out);
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().ends_with("-tail.parquet"))
        );
        assert_eq!(sorted_ids(&out), (0..4 * rows + 15).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn batches_the_archive_is_done_with_are_handed_back() {
        let (dir, out) = scratch("spent");
        let (mut archive, _) = archive_in(&out);
        // A trickle: journaled as it comes, and done with at once.
        archive.write(&batch(0..10), 1_000).unwrap();
        assert_eq!(archive.take_spent().len(), 1);
        assert!(archive.take_spent().is_empty());
        // A load: held back until the sync makes it durable in a row group.
        let rows = u64::try_from(CHECKPOINT_ROWS).unwrap();
        archive.write(&batch(10..10 + rows), 1_000).unwrap();
        assert!(archive.take_spent().is_empty());
        archive.sync().unwrap();
        let spent = archive.take_spent();
        assert_eq!(
            spent.iter().map(RecordBatch::num_rows).sum::<usize>(),
            CHECKPOINT_ROWS
        );
        // The archive holds them no more: once the caller's go, their buffers are free to be
        // written into again.
        assert!(
            spent
                .into_iter()
                .all(|b| Arc::strong_count(b.column(0)) == 1)
        );
        archive.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_files_first_batch_under_load_is_held_back_and_its_sync_makes_it_durable() {
        let (dir, out) = scratch("checkpoint-first");
        let (mut archive, _) = archive_in(&out);
        let rows = u64::try_from(CHECKPOINT_ROWS).unwrap();
        archive.write(&batch(0..rows), 1_000).unwrap();
        let file = archive.open.values().next().unwrap();
        // Not journaled (the journal holds its header only): encoded once.
        assert_eq!(file.pending_rows, CHECKPOINT_ROWS);
        assert!(replay(file.journal.path(), |_| panic!("a frame")).is_ok());
        archive.sync().unwrap();
        archive.write(&batch(rows..rows + 10), 1_000).unwrap();
        let file = archive.open.values().next().unwrap();
        assert!(file.checkpointed() && file.checkpointing);
        // A crash after the sync: the checkpoint holds the first batch; the rows held back
        // since (less than an interval's, as promised) are lost.
        std::mem::forget(archive);
        let recovered = recover(&out);
        assert_eq!(recovered.rows, rows);
        assert_eq!(sorted_ids(&out), (0..rows).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_crash_between_the_footer_and_the_rename_loses_nothing_held_back() {
        let (dir, out) = scratch("checkpoint-footer");
        let (mut archive, counters) = checkpointed(&out);
        let rows = u64::try_from(CHECKPOINT_ROWS).unwrap();
        archive.write(&batch(2 * rows..3 * rows), 1_000).unwrap();
        // Completion as `finish` does it, up to the footer synced; then a crash.
        let file = archive.open.values_mut().next().unwrap();
        assert_eq!(file.pending_rows, CHECKPOINT_ROWS);
        make_durable(file, &counters, 1).unwrap();
        assert!(
            file.pending.is_empty(),
            "held back rows checkpointed, not journaled"
        );
        let written = into_file(file.writer.take().unwrap()).unwrap();
        written.sync_all().unwrap();
        std::mem::forget(archive);
        // Recovery cuts the file at its last checkpoint, which holds every row.
        let recovered = recover(&out);
        assert_eq!((recovered.rows, recovered.files), (3 * rows, 1));
        assert_eq!(sorted_ids(&out), (0..3 * rows).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_whose_file_is_gone_sets_its_journal_aside_and_recovery_goes_on() {
        let (dir, out) = scratch("checkpoint-gone");
        let (archive, _) = checkpointed(&out);
        let file = archive.open.values().next().unwrap();
        // Cut short behind the collector's back, then a crash.
        let temporary = file.temporary.clone();
        let journal = file.journal.path().to_path_buf();
        std::mem::forget(archive);
        File::options()
            .write(true)
            .open(&temporary)
            .unwrap()
            .set_len(100)
            .unwrap();
        let recovered = recover(&out);
        assert_eq!((recovered.files, recovered.unreadable), (0, 1));
        assert!(journal.with_extension("journal.unreadable").exists() && temporary.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_encoder_that_fails_after_a_checkpoint_leaves_a_file_completed_from_both() {
        let (dir, out) = scratch("checkpoint-fail");
        let (mut archive, counters) = checkpointed(&out);
        let rows = u64::try_from(CHECKPOINT_ROWS).unwrap();
        archive.write(&batch(2 * rows..3 * rows), 1_000).unwrap();
        // The encoder dies with a batch held back and part of a row group written after the
        // checkpoint: completion cuts the file back to the checkpoint, and the journal gets
        // what was held back.
        let file = archive.open.values_mut().next().unwrap();
        assert_eq!(file.pending_rows, CHECKPOINT_ROWS);
        file.writer.as_mut().unwrap().flush().unwrap();
        file.writer.as_mut().unwrap().sync().unwrap();
        drop_encoder(file);
        assert!(file.temporary.exists(), "the checkpointed row groups stay");
        archive.close().unwrap();
        assert_eq!(counters.files_written.get(), 2);
        assert_eq!(sorted_ids(&out), (0..3 * rows).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_a_file_holds_back_between_syncs_is_bounded() {
        let (dir, out) = scratch("held");
        let (mut archive, _) = archive_in(&out);
        let with_text = |ids: std::ops::Range<u64>, width: usize| {
            let text = StringArray::from_iter_values(ids.clone().map(|i| format!("{i:0width$}")));
            let ids = UInt64Array::from_iter_values(ids);
            RecordBatch::try_from_iter([("id", Arc::new(ids) as _), ("text", Arc::new(text) as _)])
                .unwrap()
        };
        let rows = u64::try_from(CHECKPOINT_ROWS).unwrap();
        archive.write(&with_text(0..rows, 8), 1_000).unwrap();
        archive.sync().unwrap();
        // One batch past the bound (64 Ki rows of 512 octets of text): made durable at once.
        let wide = with_text(rows..2 * rows, 512);
        assert!(wide.get_array_memory_size() >= PENDING_MAX_BYTES);
        archive.write(&wide, 1_000).unwrap();
        let file = archive.open.values().next().unwrap();
        assert!(file.pending.is_empty() && file.checkpointed());
        archive.close().unwrap();
        assert_eq!(sorted_ids(&out), (0..2 * rows).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The `id` column of every file under `out`, read with parquet's own reader, sorted.
    fn sorted_ids(out: &Path) -> Vec<u64> {
        let mut ids = Vec::new();
        for path in parquet_files(out) {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                File::open(path).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .unwrap();
                ids.extend(column.values().iter().copied());
            }
        }
        ids.sort_unstable();
        ids
    }

    /// A fresh directory for a test, and the archive's root in it.
    fn scratch(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("flowvm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.join("flows");
        std::fs::create_dir_all(&out).unwrap();
        (dir, out)
    }

    /// An archive into `out` with one file under load: a first interval journaled, a second
    /// made durable by a checkpoint.
    fn checkpointed(out: &Path) -> (Archive, Arc<Counters>) {
        let (mut archive, counters) = archive_in(out);
        let rows = u64::try_from(CHECKPOINT_ROWS).unwrap();
        archive.write(&batch(0..rows), 1_000).unwrap();
        archive.sync().unwrap();
        archive.write(&batch(rows..2 * rows), 1_000).unwrap();
        archive.sync().unwrap();
        assert!(archive.open.values().next().unwrap().checkpointed());
        (archive, counters)
    }

    /// Recovers what a crash left under `out`.
    fn recover(out: &Path) -> crate::sink::recovery::Recovered {
        let lock = crate::sink::recovery::lock(out).unwrap();
        crate::sink::recovery::recover(out, &lock, Codec::Zstd).unwrap()
    }

    /// An archive into `out` rotating every second, and its counters.
    fn archive_in(out: &Path) -> (Archive, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let config = crate::config::Config {
            out: out.to_path_buf(),
            rotate: 1,
            ..crate::config::Config::default()
        };
        (
            Archive::new(config.archive(), Arc::clone(&counters)),
            counters,
        )
    }

    /// A batch of one `id` column.
    fn batch(ids: std::ops::Range<u64>) -> RecordBatch {
        RecordBatch::try_from_iter([("id", Arc::new(UInt64Array::from_iter_values(ids)) as _)])
            .unwrap()
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil(0), ("1970-01-01".to_owned(), 0));
        assert_eq!(
            civil(951_782_400 + 3600 * 13),
            ("2000-02-29".to_owned(), 13)
        );
        assert_eq!(civil(1_795_305_600), ("2026-11-22".to_owned(), 0));
    }
}
