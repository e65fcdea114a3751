//! The journal beside each open archive file: every batch the file will hold, appended as it
//! arrives and synced to the disk on an interval, so that a crash (`kill -9`, OOM, power loss)
//! costs at most that interval; the Parquet file itself is only complete, with its footer, at
//! rotation. Recovery turns the journals a crashed process left into the Parquet files they
//! stand for.
//!
//! Why a journal of frames rather than appending to the Parquet file: Parquet's footer, which
//! a reader needs, is written last, and an unfinished file cannot be read at all; Arrow's IPC
//! format can be written and read batch by batch. Each batch is one frame, an IPC stream of its
//! own (schema, batch, end marker; buffers LZ4-compressed) behind its length and a CRC-32 of it:
//!
//! ```text
//! [length: u32 LE][crc32: u32 LE][IPC stream: length octets] ...
//! ```
//!
//! A frame is either whole and checked or it is the torn tail of a crash: cut and counted,
//! never read as data. A failed append (a full disk) truncates the journal back to its last
//! whole frame, so the journal never holds a half frame in the middle.
//!
//! Under load the batches need not be encoded twice: the archive makes the Parquet file's own
//! row groups durable instead (flushed and synced) and appends a *checkpoint* frame, whose
//! body is `FVCK`, the length of the file's durable part, the rows and a Parquet footer of the
//! row groups made durable since the checkpoint before (an IPC stream's body starts with
//! `0xFFFFFFFF`, so the two never mix; each frame holds only its own row groups, so the
//! journal grows with the file, not with its square). A checkpoint supersedes every batch
//! frame before it: the journal then stands for the file cut at the last checkpoint's length
//! and closed by the footer of all its checkpoints' row groups, plus the batches after it.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::CompressionType;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};

use crate::sink::ArchiveError;

/// Octets of a frame's header: its length and its CRC-32.
const FRAME_HEADER: usize = 8;

/// How a checkpoint frame's body begins.
const CHECKPOINT: &[u8; 4] = b"FVCK";

/// A checkpoint of a journal: the Parquet file's first `length` octets are whole row groups,
/// made durable before the checkpoint was written; `footer` (a Parquet footer: file metadata,
/// its length, the closing magic) describes those made durable since the checkpoint before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Octets of the file made durable, this checkpoint's row groups and all before them.
    pub length: u64,
    /// Rows in this checkpoint's row groups.
    pub rows: u64,
    /// A Parquet footer of this checkpoint's row groups.
    pub footer: Vec<u8>,
}

/// The journal of one open archive file.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Octets of whole frames written.
    good: u64,
    /// Frames written since the last sync.
    unsynced: bool,
}

impl Journal {
    /// Creates (or empties) the journal at `path`.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: PathBuf) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        Ok(Self {
            file,
            path,
            good: 0,
            unsynced: false,
        })
    }

    /// Appends `batch` as one frame.
    ///
    /// # Errors
    /// Encoding or writing failed; the journal is then cut back to its last whole frame, as if
    /// this append had not happened, and may be appended to again.
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), ArchiveError> {
        let frame = frame(batch)?;
        self.write_frame(frame)
    }

    /// Appends `checkpoint`: the file's first octets are durable row groups, its footer
    /// describes the newest of them; every batch frame before it is superseded.
    ///
    /// # Errors
    /// As [`Journal::append`].
    pub fn checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), ArchiveError> {
        let mut frame = vec![0; FRAME_HEADER];
        frame.extend_from_slice(CHECKPOINT);
        frame.extend_from_slice(&checkpoint.length.to_le_bytes());
        frame.extend_from_slice(&checkpoint.rows.to_le_bytes());
        frame.extend_from_slice(&checkpoint.footer);
        seal(&mut frame)?;
        self.write_frame(frame)
    }

    fn write_frame(&mut self, frame: Vec<u8>) -> Result<(), ArchiveError> {
        if let Err(e) = self.file.write_all(&frame) {
            // A partial frame must not stay in front of the next one: cut it, and write the
            // next where it began (a partial write moved the file's offset past it, and the
            // next frame would follow a hole that replay reads as a torn tail).
            let _ = self.file.set_len(self.good);
            let _ = self.file.seek(SeekFrom::Start(self.good));
            return Err(ArchiveError::Io(e));
        }
        self.good += u64::try_from(frame.len()).unwrap_or(u64::MAX);
        self.unsynced = true;
        Ok(())
    }

    /// Forces what was appended to the disk, if anything was since the last time.
    ///
    /// # Errors
    /// The disk refused (`fdatasync`).
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Deletes the journal: its file is complete and durable.
    ///
    /// # Errors
    /// The file could not be removed.
    pub fn remove(self) -> std::io::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Sets aside the journal at `path`, which does not decode back (a checked frame that is not
/// IPC): renamed to `….journal.unreadable`, where neither the archive nor recovery will try it
/// again, kept for whoever looks into it. Returns the new name.
pub fn set_aside(path: &Path, why: &ArchiveError) -> PathBuf {
    let aside = path.with_extension("journal.unreadable");
    tracing::error!(journal = %aside.display(), error = %why, "A journal cannot be read back; it is set aside and its file is not completed.");
    if let Err(e) = std::fs::rename(path, &aside) {
        tracing::error!(journal = %path.display(), error = %e, "Cannot set the journal aside.");
    }
    aside
}

/// One batch as a frame: length, CRC-32, then the batch as an IPC stream of its own.
fn frame(batch: &RecordBatch) -> Result<Vec<u8>, ArchiveError> {
    let options =
        IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
    let mut frame = vec![0; FRAME_HEADER];
    let mut writer = StreamWriter::try_new_with_options(&mut frame, batch.schema_ref(), options)?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    seal(&mut frame)?;
    Ok(frame)
}

/// Writes the length and CRC-32 of the body that follows `frame`'s header into the header.
fn seal(frame: &mut [u8]) -> Result<(), ArchiveError> {
    let body = frame.get(FRAME_HEADER..).unwrap_or_default();
    let length = u32::try_from(body.len()).map_err(|_| {
        ArchiveError::Io(std::io::Error::new(
            ErrorKind::InvalidInput,
            "a frame larger than 4 GiB",
        ))
    })?;
    let crc = crc32fast::hash(body);
    if let Some(header) = frame.get_mut(..FRAME_HEADER) {
        header[..4].copy_from_slice(&length.to_le_bytes());
        header[4..].copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}

/// What replaying a journal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Whole batch frames read after the last checkpoint.
    pub batches: u64,
    /// Rows in them.
    pub rows: u64,
    /// Whether the journal ended in a torn frame, which was cut.
    pub torn: bool,
    /// The journal's checkpoints, in order.
    pub checkpoints: Vec<Checkpoint>,
}

/// Reads the journal at `path`: its checkpoints into the result, and every whole batch frame
/// after the last of them, in order, into `each`; stops at the first frame that is cut short or
/// fails its CRC (the tail a crash tore).
///
/// # Errors
/// The file cannot be read, a checked frame does not decode as IPC or as a checkpoint (not a
/// flowvm journal), or `each` fails.
pub fn replay(
    path: &Path,
    mut each: impl FnMut(RecordBatch) -> Result<(), ArchiveError>,
) -> Result<Replayed, ArchiveError> {
    // First the checkpoints and where the frames after the last begin, passing over the batch
    // frames unread (a checkpoint supersedes those before it, and those after the last are
    // checked as they are read), then those frames.
    let mut replayed = Replayed::default();
    let mut start = 0;
    let mut frames = Frames::open(path, 0)?;
    while let Some(body) = frames.next_body(Some(CHECKPOINT))? {
        if let Some(rest) = body.strip_prefix(CHECKPOINT) {
            let (Some(length), Some(rows), Some(footer)) =
                (rest.get(..8), rest.get(8..16), rest.get(16..))
            else {
                return Err(ArchiveError::Arrow(arrow_schema::ArrowError::ParseError(
                    "a checkpoint frame too short for its length and rows".into(),
                )));
            };
            let number = |octets: &[u8]| {
                let mut le = [0; 8];
                le.copy_from_slice(octets);
                u64::from_le_bytes(le)
            };
            replayed.checkpoints.push(Checkpoint {
                length: number(length),
                rows: number(rows),
                footer: footer.to_vec(),
            });
            start = frames.offset;
        }
    }
    let mut frames = Frames::open(path, start)?;
    while let Some(body) = frames.next_body(None)? {
        for batch in StreamReader::try_new(body.as_slice(), None)? {
            let batch = batch?;
            replayed.batches += 1;
            replayed.rows += u64::try_from(batch.num_rows()).unwrap_or(0);
            each(batch)?;
        }
    }
    replayed.torn = frames.torn;
    Ok(replayed)
}

/// The whole, checked frames of a journal, from an offset.
struct Frames {
    input: BufReader<File>,
    /// Where the next frame begins.
    offset: u64,
    /// Whether reading stopped at a torn frame.
    torn: bool,
}

impl Frames {
    fn open(path: &Path, offset: u64) -> Result<Self, ArchiveError> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            input: BufReader::new(file),
            offset,
            torn: false,
        })
    }

    /// The next frame's body; `None` at the end, or at a torn frame (`torn` then says so).
    /// With `only`, a frame whose body does not begin with it is passed over unread and
    /// unchecked, and given as an empty body.
    fn next_body(&mut self, only: Option<&[u8]>) -> Result<Option<Vec<u8>>, ArchiveError> {
        let mut header = [0; FRAME_HEADER];
        match read_full(&mut self.input, &mut header)? {
            0 => return Ok(None),
            n if n < FRAME_HEADER => {
                self.torn = true;
                return Ok(None);
            }
            _ => {}
        }
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let length = u32::from_le_bytes([l0, l1, l2, l3]);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        // An empty frame is none a journal writes: zeros where a frame should start, as a
        // hole an older build left after a cut append, are a tear.
        if length == 0 {
            self.torn = true;
            return Ok(None);
        }
        let mut body = Vec::new();
        // A torn length can promise anything: read at most what is there.
        let mut input = (&mut self.input).take(u64::from(length));
        if let Some(prefix) = only {
            let mut first = vec![0; prefix.len()];
            let got = read_full(&mut input, &mut first)?;
            if first.get(..got) != Some(prefix) {
                let rest = u64::from(length).saturating_sub(u64::try_from(got).unwrap_or(0));
                self.input
                    .seek_relative(i64::try_from(rest).unwrap_or(i64::MAX))?;
                self.offset += u64::try_from(FRAME_HEADER).unwrap_or(8) + u64::from(length);
                return Ok(Some(Vec::new()));
            }
            body = first;
        }
        let got = body.len() + input.read_to_end(&mut body)?;
        if got < usize::try_from(length).unwrap_or(usize::MAX) || crc32fast::hash(&body) != crc {
            self.torn = true;
            return Ok(None);
        }
        self.offset += u64::try_from(FRAME_HEADER).unwrap_or(8) + u64::from(length);
        Ok(Some(body))
    }
}

/// Reads until `buf` is full or the input ends; returns how many octets were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{StringArray, UInt64Array};

    use super::*;

    fn batch(first: u64, rows: u64) -> RecordBatch {
        let ids = UInt64Array::from_iter_values(first..first + rows);
        let names = StringArray::from_iter_values((first..first + rows).map(|i| format!("r{i}")));
        RecordBatch::try_from_iter([("id", Arc::new(ids) as _), ("name", Arc::new(names) as _)])
            .unwrap()
    }

    fn ids(path: &Path) -> (Vec<u64>, Replayed) {
        let mut ids = Vec::new();
        let replayed = replay(path, |b| {
            let c = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
            ids.extend(c.values().iter().copied());
            Ok(())
        })
        .unwrap();
        (ids, replayed)
    }

    #[test]
    fn a_journal_cut_at_every_offset_of_its_last_frame_gives_the_frames_before_it() {
        let dir = std::env::temp_dir().join(format!("flowvm-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".j.journal");
        let mut j = Journal::create(path.clone()).unwrap();
        j.append(&batch(0, 100)).unwrap();
        j.append(&batch(100, 50)).unwrap();
        let two = j.good;
        j.append(&batch(150, 7)).unwrap();
        j.sync().unwrap();
        let whole = std::fs::read(&path).unwrap();
        let (all, replayed) = ids(&path);
        assert_eq!(all, (0..157).collect::<Vec<_>>());
        assert_eq!((replayed.batches, replayed.torn), (3, false));
        let cut = dir.join(".cut.journal");
        for len in usize::try_from(two).unwrap()..whole.len() {
            std::fs::write(&cut, &whole[..len]).unwrap();
            let (got, replayed) = ids(&cut);
            assert_eq!(got, (0..150).collect::<Vec<_>>(), "cut at {len}");
            assert_eq!(
                replayed.torn,
                len > usize::try_from(two).unwrap(),
                "cut at {len}"
            );
        }
        // Zeros where a frame should start (a hole) end the journal there.
        let mut holed = whole[..usize::try_from(two).unwrap()].to_vec();
        holed.extend_from_slice(&[0; 64]);
        holed.extend_from_slice(&whole[usize::try_from(two).unwrap()..]);
        std::fs::write(&cut, &holed).unwrap();
        let (got, replayed) = ids(&cut);
        assert_eq!((got.len(), replayed.torn), (150, true));
        // A flipped bit in the last frame fails its CRC: cut, not read.
        let mut flipped = whole.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x10;
        std::fs::write(&cut, &flipped).unwrap();
        let (got, replayed) = ids(&cut);
        assert_eq!((got.len(), replayed.torn), (150, true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_supersedes_the_frames_before_it_unless_it_is_torn() {
        let dir = std::env::temp_dir().join(format!("flowvm-journal-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".j.journal");
        let mut j = Journal::create(path.clone()).unwrap();
        j.append(&batch(0, 100)).unwrap();
        let before = usize::try_from(j.good).unwrap();
        let checkpoint = Checkpoint {
            length: 4096,
            rows: 100,
            footer: b"footer".to_vec(),
        };
        j.checkpoint(&checkpoint).unwrap();
        let after = usize::try_from(j.good).unwrap();
        j.append(&batch(100, 50)).unwrap();
        j.sync().unwrap();
        let (ids_after, replayed) = ids(&path);
        assert_eq!(ids_after, (100..150).collect::<Vec<_>>());
        assert_eq!(replayed.checkpoints, std::slice::from_ref(&checkpoint));
        assert_eq!(
            (replayed.batches, replayed.rows, replayed.torn),
            (1, 50, false)
        );
        // Torn anywhere in the checkpoint: the journal stands as it was before it.
        let whole = std::fs::read(&path).unwrap();
        let cut = dir.join(".cut.journal");
        for len in before + 1..after {
            std::fs::write(&cut, &whole[..len]).unwrap();
            let (got, replayed) = ids(&cut);
            assert_eq!(got, (0..100).collect::<Vec<_>>(), "cut at {len}");
            assert_eq!(
                (replayed.checkpoints.len(), replayed.torn),
                (0, true),
                "cut at {len}"
            );
        }
        // Torn after it: the checkpoint and nothing of the torn frame.
        std::fs::write(&cut, &whole[..whole.len() - 1]).unwrap();
        let (got, replayed) = ids(&cut);
        assert!(got.is_empty());
        assert_eq!(
            (replayed.checkpoints, replayed.torn),
            (vec![checkpoint], true)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
