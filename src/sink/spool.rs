//! Spool and ship: with an object store as the destination, the archive writes and completes
//! its files in a local spool directory exactly as it would in a local archive (journals,
//! rename, recovery), and one shipper thread uploads every completed file under the same
//! relative key, then removes it locally. Uploads run on their own thread, off the receive,
//! decode and archive threads; a failed or slow store is retried with back-off and counted.
//!
//! The spool is bounded (`--spool-max-bytes`, completed files waiting for upload): past the
//! bound the archive refuses new rows ([`ArchiveError::SpoolFull`]), so the collector's usual
//! back-pressure applies (TCP waits, UDP drops are counted as `archive_full`), never a silent
//! loss. A start ships whatever completed files the spool holds (what the last run left, and
//! what recovery made from its journals).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use crate::clock;
use crate::sink::ArchiveError;
use crate::sink::store::{Shipped, Store};
use crate::telemetry::Counters;

/// How often the spool is looked at when nothing wakes the shipper.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Back-off after a failed upload: from 250 ms, doubling, up to 10 s.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// At most one error line per this interval while uploads keep failing.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The archive's side of the spool: the bound, and the bell that tells the shipper a file is
/// complete. Cloned into every archive thread.
#[derive(Clone, Debug)]
pub struct Spool {
    max_bytes: u64,
    counters: Arc<Counters>,
    wake: SyncSender<()>,
}

impl Spool {
    /// Refuses new rows while the completed files waiting for upload reach the bound.
    ///
    /// # Errors
    /// [`ArchiveError::SpoolFull`].
    pub fn admit(&self) -> Result<(), ArchiveError> {
        let bytes = self.counters.spool_bytes.get();
        if bytes >= self.max_bytes {
            return Err(ArchiveError::SpoolFull {
                bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    /// A file of `size` octets was completed in the spool: counted, and the shipper woken.
    pub fn completed(&self, size: u64) {
        self.counters.spool_bytes.add(size);
        let _ = self.wake.try_send(());
    }
}

/// What the shipper left when it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// Completed files still in the spool.
    pub files: u64,
    /// Their octets.
    pub bytes: u64,
}

/// The running shipper thread.
#[derive(Debug)]
pub struct Shipper {
    stop: Arc<AtomicBool>,
    wake: SyncSender<()>,
    thread: JoinHandle<Left>,
}

impl Shipper {
    /// Starts shipping the completed files of `dir` to `store`, those already there first;
    /// returns the archive's handle and the shipper. `dir` must be recovered and held (locked)
    /// by the caller.
    ///
    /// # Errors
    /// The spool cannot be read, or the thread cannot start.
    pub fn start(
        store: Store,
        dir: &Path,
        max_bytes: u64,
        counters: Arc<Counters>,
    ) -> std::io::Result<(Spool, Self)> {
        let waiting = scan(dir)?;
        counters
            .spool_bytes
            .set(waiting.iter().map(|f| f.size).sum());
        if !waiting.is_empty() {
            info!(files = waiting.len(), spool = %dir.display(), store = store.url(), "Shipping the files a previous run left in the spool.");
        }
        let (wake, bell) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let shipping = Shipping {
            store,
            dir: dir.to_owned(),
            counters: Arc::clone(&counters),
            bell,
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("flowvm-ship".into())
            .spawn(move || shipping.run())?;
        let spool = Spool {
            max_bytes,
            counters,
            wake: wake.clone(),
        };
        Ok((spool, Self { stop, wake, thread }))
    }

    /// Stops: ships what it can within `grace` (stopping at the first failure), and says what
    /// stays in the spool for the next start; `None` when an upload outlived `grace` (its file
    /// stays too, and a later start finds it in the store or ships it).
    pub fn finish(self, grace: Duration) -> Option<Left> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
        let deadline = clock::now() + grace;
        while !self.thread.is_finished() && clock::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.thread.is_finished() {
            // An upload outlived the grace: the thread is left to the process's exit, and
            // the file stays in the spool (a later start finds it, or finds it shipped).
            warn!("An upload is still running at shutdown; its file stays in the spool.");
            return None;
        }
        self.thread.join().ok()
    }
}

/// The shipper thread's state.
struct Shipping {
    store: Store,
    dir: PathBuf,
    counters: Arc<Counters>,
    bell: Receiver<()>,
    stop: Arc<AtomicBool>,
}

impl Shipping {
    fn run(self) -> Left {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                error!(error = %e, "Cannot start the shipper's runtime: nothing is uploaded.");
                return Left::default();
            }
        };
        let mut wait = RETRY_FIRST;
        let mut logged: Option<Instant> = None;
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            let waiting = match scan(&self.dir) {
                Ok(waiting) => waiting,
                Err(e) => {
                    error!(spool = %self.dir.display(), error = %e, "Cannot read the spool.");
                    Vec::new()
                }
            };
            self.counters
                .upload_lag_seconds
                .set(waiting.first().map_or(0, |f| age_seconds(f.modified)));
            let mut left = Left::default();
            for (at, file) in waiting.iter().enumerate() {
                match runtime.block_on(self.store.ship(&file.path, &file.relative)) {
                    Ok(how) => self.shipped(file, how),
                    Err(e) => {
                        self.counters.record_upload_error(&e);
                        if logged
                            .is_none_or(|l| clock::now().saturating_duration_since(l) >= LOG_EVERY)
                        {
                            logged = Some(clock::now());
                            error!(store = self.store.url(), file = %file.relative, error = %e, reason = e.label(), "Upload failed; the file stays in the spool and is tried again.");
                        }
                        // The rest waits for the next pass, after the back-off.
                        let rest = waiting.get(at..).unwrap_or_default();
                        left = Left {
                            files: u64::try_from(rest.len()).unwrap_or(u64::MAX),
                            bytes: rest.iter().map(|f| f.size).sum(),
                        };
                        break;
                    }
                }
            }
            // Stopping: the archives have closed, so this pass saw every file; one pass, and
            // what failed stays for the next start.
            if stopping {
                if left.files > 0 {
                    warn!(files = left.files, bytes = left.bytes, spool = %self.dir.display(), "Stopping with files not yet uploaded; the next start ships them.");
                }
                return left;
            }
            if left.files > 0 {
                self.sleep(wait);
                wait = (wait * 2).min(RETRY_MAX);
            } else {
                wait = RETRY_FIRST;
                match self.bell.recv_timeout(SCAN_EVERY) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(SCAN_EVERY),
                }
            }
        }
    }

    /// Sleeps `wait`, or less if stopping.
    fn sleep(&self, wait: Duration) {
        let until = clock::now() + wait;
        while clock::now() < until && !self.stop.load(Ordering::Relaxed) {
            let _ = self.bell.recv_timeout(Duration::from_millis(100));
        }
    }

    fn shipped(&self, file: &Spooled, how: Shipped) {
        match std::fs::remove_file(&file.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                // Shipped but not removed: the next pass finds it present and tries again.
                error!(file = %file.path.display(), error = %e, "Cannot remove a shipped file from the spool.");
                return;
            }
        }
        self.counters.uploads.add(1);
        if how == Shipped::AlreadyPresent {
            self.counters.uploads_already_present.add(1);
        }
        self.counters.spool_bytes.sub(file.size);
        info!(key = %file.relative, bytes = file.size, store = self.store.url(), ?how, "Shipped a file.");
    }
}

/// A completed file waiting in the spool.
#[derive(Debug)]
struct Spooled {
    path: PathBuf,
    /// Its key below the prefix: the path under the spool, `/`-separated.
    relative: String,
    size: u64,
    modified: SystemTime,
}

/// An empty partition directory of the spool untouched this long is removed (shipping empties
/// them; months of hourly partitions would otherwise be walked at every scan).
const PRUNE_AFTER: Duration = Duration::from_secs(3600);

/// The completed files under `dir` (`*.parquet` not hidden: a file being written or a journal
/// is hidden), oldest first. Empty partition directories untouched for [`PRUNE_AFTER`] are
/// removed on the way.
fn scan(dir: &Path) -> std::io::Result<Vec<Spooled>> {
    let mut found = Vec::new();
    let mut dirs = vec![(dir.to_owned(), String::new())];
    while let Some((at, relative)) = dirs.pop() {
        let entries = match std::fs::read_dir(&at) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut entries = entries.peekable();
        if entries.peek().is_none() && !relative.is_empty() {
            let idle = std::fs::metadata(&at)
                .and_then(|m| m.modified())
                .is_ok_and(|m| age_seconds(m) >= PRUNE_AFTER.as_secs());
            if idle {
                // Fails harmlessly if the archive has just created a file in it.
                let _ = std::fs::remove_dir(&at);
            }
            continue;
        }
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let relative = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed meanwhile (shipped by this thread, or a partition emptied).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                dirs.push((entry.path(), relative));
            } else if name.ends_with(".parquet") {
                found.push(Spooled {
                    path: entry.path(),
                    relative,
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    found.sort_by(|a, b| (a.modified, &a.relative).cmp(&(b.modified, &b.relative)));
    Ok(found)
}

/// Whole seconds from `modified` to now; 0 for a time in the future.
fn age_seconds(modified: SystemTime) -> u64 {
    let modified = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u64::try_from(clock::unix_seconds())
        .unwrap_or(0)
        .saturating_sub(modified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path as Key;
    use object_store::{ObjectStore, ObjectStoreExt};

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{what} never happened");
    }

    #[test]
    fn completed_files_are_shipped_under_their_key_and_leave_the_spool() {
        let dir = std::env::temp_dir().join(format!("flowvm-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let partition = dir.join("date=2026-12-02").join("hour=19");
        std::fs::create_dir_all(&partition).unwrap();
        // Left by an earlier run: shipped at start. Open files (hidden) are not.
        std::fs::write(partition.join("flows-1-a.parquet"), b"one").unwrap();
        std::fs::write(partition.join(".flows-2-b.parquet.tmp"), b"open").unwrap();
        std::fs::write(partition.join(".flows-2-b.parquet.journal"), b"open").unwrap();
        // An empty partition idle for over an hour goes; a recent one stays.
        let idle = dir.join("date=2026-12-01").join("hour=03");
        std::fs::create_dir_all(&idle).unwrap();
        std::fs::File::open(&idle)
            .unwrap()
            .set_modified(
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(clock::unix_seconds()).unwrap() - 7200),
            )
            .unwrap();
        let recent = dir.join("date=2026-12-02").join("hour=20");
        std::fs::create_dir_all(&recent).unwrap();

        let memory = Arc::new(InMemory::new());
        let store = Store::new(
            Arc::clone(&memory) as Arc<dyn ObjectStore>,
            "lake",
            "memory:///lake".to_owned(),
        );
        let counters = Arc::new(Counters::default());
        let (spool, shipper) = Shipper::start(store, &dir, 10, Arc::clone(&counters)).unwrap();
        wait_until("the first upload", || counters.uploads.get() == 1);
        // The archive completes a second file and rings.
        std::fs::write(partition.join("flows-3-c.parquet"), b"three").unwrap();
        spool.completed(5);
        wait_until("the second upload", || counters.uploads.get() == 2);
        assert_eq!(
            shipper.finish(Duration::from_secs(5)),
            Some(Left::default())
        );
        assert_eq!(counters.spool_bytes.get(), 0);
        assert_eq!(counters.upload_lag_seconds.get(), 0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (key, content) in [
            (
                "lake/date=2026-12-02/hour=19/flows-1-a.parquet",
                &b"one"[..],
            ),
            ("lake/date=2026-12-02/hour=19/flows-3-c.parquet", b"three"),
        ] {
            let got = runtime
                .block_on(async { memory.get(&Key::from(key)).await?.bytes().await })
                .unwrap();
            assert_eq!(&got[..], content);
        }
        assert!(!partition.join("flows-1-a.parquet").exists());
        assert!(partition.join(".flows-2-b.parquet.journal").exists());
        assert!(!idle.exists() && recent.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_archive_is_refused_rows_while_the_spool_is_at_its_bound() {
        let counters = Arc::new(Counters::default());
        let (wake, _bell) = sync_channel(1);
        let spool = Spool {
            max_bytes: 100,
            counters: Arc::clone(&counters),
            wake,
        };
        assert!(spool.admit().is_ok());
        spool.completed(60);
        assert!(spool.admit().is_ok());
        spool.completed(60);
        let e = spool.admit().unwrap_err();
        assert_eq!(e.label(), "spool_full");
        assert!(e.to_string().contains("120 octets"), "{e}");
        counters.spool_bytes.sub(60);
        assert!(spool.admit().is_ok());
    }
}
