//! Where decoded batches go, behind one seam, [`Sink`]: write, rotate, sync, close. The
//! collector's archive thread and `flowvm decode` speak only to it.
//!
//! The one sink is the Parquet archive ([`parquet::Archive`]), which keeps a [`journal`]
//! beside every open file so that a crash loses at most the sync interval, and [`recovery`]
//! turns what a crashed process left into complete files. Object storage is a layer after it:
//! the archive writes into a local [`spool`], and the spool's shipper uploads each completed
//! file to the [`store`] (an S3 bucket) and removes it. A sink of another format (Kafka, say)
//! is another implementation of the trait.

pub mod chunk;
pub mod encoder;
pub mod journal;
pub mod parquet;
pub mod recovery;
pub mod spool;
pub mod store;
pub mod text;

use ::parquet::errors::ParquetError;
use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use std::time::{Duration, Instant};
use tracing::error;

use crate::clock;
use crate::telemetry::Counters;

/// Where the decoder's batches go.
pub trait Sink {
    /// Writes `batch`, received at `now` (UNIX seconds).
    ///
    /// # Errors
    /// The batch could not be written: it is not in the sink, and may be written again.
    fn write(&mut self, batch: &RecordBatch, now: i64) -> Result<(), ArchiveError>;

    /// Completes what belongs to windows that ended before `now`. Harmless to call early.
    ///
    /// # Errors
    /// A file could not be completed: it stays open, with its journal, and a later call tries
    /// again.
    fn rotate(&mut self, now: i64) -> Result<(), ArchiveError>;

    /// Makes everything written so far survive a crash.
    ///
    /// # Errors
    /// The disk refused; what was written stays, and a later call tries again.
    fn sync(&mut self) -> Result<(), ArchiveError>;

    /// Completes everything (shutdown).
    ///
    /// # Errors
    /// A file could not be completed; its journal stays, for recovery.
    fn close(&mut self) -> Result<(), ArchiveError>;

    /// Where it writes (a directory, a URL), for the operator's log lines.
    fn location(&self) -> String;
}

/// Why a sink could not write.
#[derive(Debug)]
pub enum ArchiveError {
    /// Creating, writing or renaming a file failed.
    Io(std::io::Error),
    /// Encoding Parquet failed.
    Parquet(ParquetError),
    /// Converting a batch failed.
    Arrow(ArrowError),
    /// The spool holds `bytes` octets of completed files waiting for upload, at its bound
    /// `max`: new rows wait until the store takes some.
    SpoolFull {
        /// Octets waiting.
        bytes: u64,
        /// The bound (`--spool-max-bytes`).
        max: u64,
    },
}

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Parquet(e) => write!(f, "{e}"),
            Self::Arrow(e) => write!(f, "{e}"),
            Self::SpoolFull { bytes, max } => write!(
                f,
                "the spool holds {bytes} octets waiting for upload, at its bound of {max} (--spool-max-bytes)"
            ),
        }
    }
}

impl std::error::Error for ArchiveError {}

impl From<std::io::Error> for ArchiveError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ParquetError> for ArchiveError {
    fn from(e: ParquetError) -> Self {
        Self::Parquet(e)
    }
}

impl From<ArrowError> for ArchiveError {
    fn from(e: ArrowError) -> Self {
        Self::Arrow(e)
    }
}

impl ArchiveError {
    /// A short, stable label for `flowvm_archive_errors_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => "no_space",
            Self::Io(e) if e.raw_os_error() == Some(28) => "no_space",
            Self::Io(_) => "io",
            Self::Parquet(ParquetError::External(e)) if e.to_string().contains("No space") => {
                "no_space"
            }
            Self::Parquet(_) => "parquet",
            Self::Arrow(_) => "arrow",
            Self::SpoolFull { .. } => "spool_full",
        }
    }
}

/// Back-off between attempts while a sink cannot write: from 100 ms, doubling, up to 5 s.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// At most one error line per this interval while a write keeps failing.
const RETRY_LOG_EVERY: Duration = Duration::from_secs(10);

/// Syncs `sink` when `every` has passed since `last` (then `last` is now): what it holds back
/// is made durable. A failure is counted and logged, and the next sync tries again.
pub fn sync_when_due(
    sink: &mut dyn Sink,
    last: &mut Instant,
    every: Duration,
    counters: &Counters,
) {
    let now = clock::now();
    if now.saturating_duration_since(*last) < every {
        return;
    }
    if let Err(e) = sink.sync() {
        error!(location = %sink.location(), error = %e, "Failed to sync the archive; what it holds back is tried again at the next sync.");
        counters.record_archive_error(&e);
    }
    *last = now;
}

/// Writes `batch` into `sink`, trying again with back-off while it fails (a full disk, an I/O
/// error), until it is written or `give_up()` says to stop (shutdown). Every failure is
/// counted by reason; one error line per 10 s is logged; meanwhile this archive thread counts
/// in `archive_stalled` (the archive threads that cannot write) and its batch's rows in
/// `archive_rows_waiting`. Returns whether the batch was written.
pub fn write_with_retry(
    sink: &mut dyn Sink,
    batch: &RecordBatch,
    now: impl Fn() -> i64,
    counters: &Counters,
    give_up: impl Fn() -> bool,
) -> bool {
    let mut wait = RETRY_FIRST;
    let mut logged: Option<Instant> = None;
    let rows = u64::try_from(batch.num_rows()).unwrap_or(0);
    let mut stalled = false;
    let stall_ends = |stalled: bool| {
        if stalled {
            counters.archive_stalled.sub(1);
            counters.archive_rows_waiting.sub(rows);
        }
    };
    loop {
        match sink.write(batch, now()) {
            Ok(()) => {
                stall_ends(stalled);
                return true;
            }
            Err(e) => {
                counters.record_archive_error(&e);
                if !stalled {
                    stalled = true;
                    counters.archive_stalled.add(1);
                    counters.archive_rows_waiting.add(rows);
                }
                let at = clock::now();
                if logged.is_none_or(|l| at.saturating_duration_since(l) >= RETRY_LOG_EVERY) {
                    logged = Some(at);
                    error!(location = %sink.location(), error = %e, reason = e.label(), rows = batch.num_rows(), "The archive cannot write; holding the batch and trying again (receiving pushes back on TCP, counts UDP drops as archive_full).");
                }
                if give_up() {
                    error!(
                        rows = batch.num_rows(),
                        "Shutting down while the archive cannot write: a batch is lost."
                    );
                    stall_ends(stalled);
                    return false;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use arrow_array::UInt64Array;

    use super::*;

    /// Refuses every write (no space) until `until` is set; notes the stall gauge it sees.
    struct Full<'a> {
        until: &'a AtomicBool,
        counters: &'a Counters,
        seen: Vec<u64>,
    }

    impl Sink for Full<'_> {
        fn write(&mut self, _: &RecordBatch, _: i64) -> Result<(), ArchiveError> {
            self.seen.push(self.counters.archive_stalled.get());
            if self.until.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(ArchiveError::Io(std::io::Error::from(
                    std::io::ErrorKind::StorageFull,
                )))
            }
        }
        fn rotate(&mut self, _: i64) -> Result<(), ArchiveError> {
            Ok(())
        }
        fn sync(&mut self) -> Result<(), ArchiveError> {
            Ok(())
        }
        fn close(&mut self) -> Result<(), ArchiveError> {
            Ok(())
        }
        fn location(&self) -> String {
            "full".to_owned()
        }
    }

    #[test]
    fn each_stalled_archive_thread_counts_until_it_writes_and_one_recovery_clears_only_its_own() {
        let counters = Arc::new(Counters::default());
        let batch =
            RecordBatch::try_from_iter([("id", Arc::new(UInt64Array::from(vec![1, 2, 3])) as _)])
                .unwrap();
        let (a_free, b_free) = (AtomicBool::new(false), AtomicBool::new(false));
        let write = |free: &AtomicBool| {
            let mut sink = Full {
                until: free,
                counters: &counters,
                seen: Vec::new(),
            };
            assert!(write_with_retry(
                &mut sink,
                &batch,
                || 0,
                &counters,
                || false
            ));
            sink.seen
        };
        std::thread::scope(|s| {
            let a = s.spawn(|| write(&a_free));
            let b = s.spawn(|| write(&b_free));
            // Both stall, then B writes: A's stall still shows.
            while counters.archive_stalled.get() < 2 {
                std::thread::yield_now();
            }
            assert_eq!(counters.archive_rows_waiting.get(), 6);
            b_free.store(true, Ordering::Relaxed);
            b.join().unwrap();
            assert_eq!(counters.archive_stalled.get(), 1);
            assert_eq!(counters.archive_rows_waiting.get(), 3);
            a_free.store(true, Ordering::Relaxed);
            let seen = a.join().unwrap();
            assert_eq!(seen.last(), Some(&1), "A's last try saw its own stall");
        });
        assert_eq!(counters.archive_stalled.get(), 0);
        assert_eq!(counters.archive_rows_waiting.get(), 0);
    }
}
