//! Recovery: what a crashed process left in an archive directory, made into the complete files
//! it stands for, before a collector writes there again (`flowvm collect` at start-up, or
//! `flowvm recover DIR` alone).
//!
//! For every journal `.NAME.journal`: if `NAME` exists, the file was completed and only the
//! journal's removal was lost: the journal goes. Otherwise the journal is replayed, up to its
//! last whole batch, and completes the file
//! ([`complete_from_journal`](crate::sink::parquet::complete_from_journal)): without a
//! checkpoint its batches make `NAME`; with checkpoints, `.NAME.tmp` cut at the last one's
//! length and closed by a footer of all their row groups makes `NAME`, and the batches after it
//! make `NAME-tail.parquet`, written first. Each file is synced and renamed into place (then
//! the directory is synced), and only then the journal goes. The rename of `NAME` is the
//! commit: a crash before it leaves the journal to be replayed again (which writes the same
//! files again), after it leaves a journal that the next recovery removes; so recovering
//! twice, or crashing while recovering, neither loses nor duplicates a row. A `.NAME.tmp`
//! without its journal (a process from before journals, or a crash between a completed rename
//! and the next file) holds no footer and nothing a journal does not: it is removed, unless
//! its journal was set aside as unreadable (it may then hold row groups that journal's
//! checkpoint describes, and stays beside it).
//!
//! A lock file (`.flowvm.lock`, an advisory `flock`) keeps a recovery from touching the
//! journals of a collector that is running on the same directory.

use std::fs::File;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::sink::ArchiveError;
use crate::sink::journal::set_aside;
use crate::sink::parquet::{Codec, complete_from_journal, sync_directory};

/// What one recovery did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Parquet files made from journals.
    pub files: u64,
    /// Rows in them.
    pub rows: u64,
    /// Journals whose last batch was torn by the crash (cut, not read).
    pub torn: u64,
    /// Journals of files already complete, removed.
    pub stale: u64,
    /// Temporary files without a journal, removed.
    pub temporaries: u64,
    /// Journals that did not decode back, set aside (`….journal.unreadable`).
    pub unreadable: u64,
}

/// The archive directory held by one process.
#[derive(Debug)]
pub struct DirectoryLock {
    _file: File,
}

/// Takes the archive directory `out` for this process (creating it).
///
/// # Errors
/// Another process holds it (a collector running there), or the lock file cannot be made.
pub fn lock(out: &Path) -> Result<DirectoryLock, ArchiveError> {
    std::fs::create_dir_all(out)?;
    let path = out.join(".flowvm.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(DirectoryLock { _file: file }),
        Err(_) => Err(ArchiveError::Io(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!(
                "{} is in use by another flowvm process (it holds {})",
                out.display(),
                path.display()
            ),
        ))),
    }
}

/// Recovers every journal under `out` (see the module docs) into files compressed by `codec`.
/// The caller holds the directory.
///
/// # Errors
/// A journal or file that cannot be read or written: recovery stops there, and what it did
/// before stands (running it again carries on).
pub fn recover(out: &Path, _held: &DirectoryLock, codec: Codec) -> Result<Recovered, ArchiveError> {
    let mut done = Recovered::default();
    for dir in partitions(out)? {
        let mut names: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in &names {
            if let Some(target) = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".journal"))
            {
                match recover_journal(&dir, target, codec, &mut done) {
                    // One journal that does not decode back must not stop the start.
                    Err(e @ ArchiveError::Arrow(_)) => {
                        set_aside(&dir.join(name), &e);
                        done.unreadable += 1;
                    }
                    other => other?,
                }
            }
        }
        for name in &names {
            if let Some(target) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
                let journal = dir.join(format!(".{target}.journal"));
                let temporary = dir.join(name);
                // Beside a journal set aside it may hold row groups a checkpoint made
                // durable: kept with it for whoever looks into it.
                let aside = journal.with_extension("journal.unreadable");
                if !journal.exists() && !aside.exists() && temporary.exists() {
                    warn!(path = %temporary.display(), "Removed an unfinished file without a journal (no footer: nothing in it can be read).");
                    std::fs::remove_file(&temporary)?;
                    done.temporaries += 1;
                }
            }
        }
    }
    if done != Recovered::default() {
        info!(
            files = done.files,
            rows = done.rows,
            torn = done.torn,
            stale = done.stale,
            unreadable = done.unreadable,
            "Recovered what a crashed process left."
        );
    }
    Ok(done)
}

fn recover_journal(
    dir: &Path,
    target: &str,
    codec: Codec,
    done: &mut Recovered,
) -> Result<(), ArchiveError> {
    let journal = dir.join(format!(".{target}.journal"));
    let path = dir.join(target);
    if !path.exists() {
        let temporary = dir.join(format!(".{target}.tmp"));
        if let Some(completed) = complete_from_journal(&journal, &temporary, &path, codec)? {
            done.files += completed.files;
            done.rows += completed.rows;
            done.torn += u64::from(completed.replayed.torn);
            info!(path = %path.display(), rows = completed.rows, files = completed.files, torn = completed.replayed.torn, "Recovered a file from its journal.");
        }
    } else {
        done.stale += 1;
    }
    std::fs::remove_file(&journal)?;
    sync_directory(&journal)
}

/// The partition directories `date=*/hour=*` under `out`.
fn partitions(out: &Path) -> Result<Vec<PathBuf>, ArchiveError> {
    let mut dirs = Vec::new();
    let Ok(dates) = std::fs::read_dir(out) else {
        return Ok(dirs);
    };
    for date in dates
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("date="))
    {
        for hour in std::fs::read_dir(date.path())?.flatten() {
            if hour.file_name().to_string_lossy().starts_with("hour=") && hour.path().is_dir() {
                dirs.push(hour.path());
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{RecordBatch, UInt64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::sink::journal::Journal;

    fn batch(first: u64, rows: u64) -> RecordBatch {
        let ids = UInt64Array::from_iter_values(first..first + rows);
        RecordBatch::try_from_iter([("id", Arc::new(ids) as _)]).unwrap()
    }

    /// The ids in every Parquet file under `out`, and the names of everything else left.
    fn archived(out: &Path) -> (Vec<u64>, Vec<String>) {
        let (mut ids, mut other) = (Vec::new(), Vec::new());
        for dir in partitions(out).unwrap() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let name = entry.file_name().into_string().unwrap();
                if !name.ends_with(".parquet") || name.starts_with('.') {
                    other.push(name);
                    continue;
                }
                let file = File::open(entry.path()).unwrap();
                for b in ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
                {
                    let b = b.unwrap();
                    let c = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
                    ids.extend(c.values().iter().copied());
                }
            }
        }
        ids.sort_unstable();
        (ids, other)
    }

    #[test]
    fn a_journal_torn_anywhere_in_its_last_batch_recovers_the_batches_before_it_once() {
        let root = std::env::temp_dir().join(format!("flowvm-recovery-{}", std::process::id()));
        let partition = Path::new("date=2026-01-01").join("hour=00");
        let source = root.join("source");
        std::fs::create_dir_all(source.join(&partition)).unwrap();
        let journal = source.join(&partition).join(".flows-1.parquet.journal");
        let mut j = Journal::create(journal.clone()).unwrap();
        j.append(&batch(0, 100)).unwrap();
        j.append(&batch(100, 20)).unwrap();
        let before_last = std::fs::metadata(&journal).unwrap().len();
        j.append(&batch(120, 3)).unwrap();
        j.sync().unwrap();
        drop(j);
        let whole = std::fs::read(&journal).unwrap();
        let first = usize::try_from(before_last).unwrap();
        for cut in first..=whole.len() {
            let out = root.join(format!("cut-{cut}"));
            let dir = out.join(&partition);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(".flows-1.parquet.journal"), &whole[..cut]).unwrap();
            // A crash's unfinished file beside it holds nothing a reader can use.
            std::fs::write(dir.join(".flows-1.parquet.tmp"), b"PAR1 and no footer").unwrap();
            let held = lock(&out).unwrap();
            let done = recover(&out, &held, Codec::Zstd).unwrap();
            let expected: Vec<u64> = if cut == whole.len() {
                (0..123).collect()
            } else {
                (0..120).collect()
            };
            assert_eq!(
                done.torn,
                u64::from(cut != whole.len() && cut != first),
                "cut at {cut}"
            );
            let (ids, other) = archived(&out);
            assert_eq!(ids, expected, "cut at {cut}");
            assert!(other.is_empty(), "left behind at cut {cut}: {other:?}");
            // Recovering again neither loses nor duplicates a row.
            assert_eq!(
                recover(&out, &held, Codec::Zstd).unwrap(),
                Recovered::default()
            );
            assert_eq!(archived(&out).0, expected);
            drop(held);
            let _ = std::fs::remove_dir_all(&out);
        }
        // A journal whose checked frame is not IPC is set aside; the one beside it recovers.
        let out = root.join("unreadable");
        let dir = out.join(&partition);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".flows-1.parquet.journal"), &whole).unwrap();
        let body = b"not an IPC stream";
        let mut frame = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        frame.extend_from_slice(body);
        std::fs::write(dir.join(".flows-2.parquet.journal"), &frame).unwrap();
        std::fs::write(dir.join(".flows-2.parquet.tmp"), b"PAR1 and no footer").unwrap();
        let held = lock(&out).unwrap();
        let done = recover(&out, &held, Codec::Zstd).unwrap();
        assert_eq!((done.files, done.unreadable), (1, 1));
        let (ids, other) = archived(&out);
        assert_eq!(ids, (0..123).collect::<Vec<_>>());
        // Its unfinished file stays beside it: it could hold row groups a checkpoint made
        // durable, which the journal set aside describes.
        assert_eq!(
            other,
            [
                ".flows-2.parquet.journal.unreadable",
                ".flows-2.parquet.tmp"
            ]
        );
        drop(held);
        // A second process cannot take a directory that is held.
        let out = root.join("held");
        let held = lock(&out).unwrap();
        assert!(lock(&out).is_err());
        drop(held);
        let _ = std::fs::remove_dir_all(&root);
    }
}
