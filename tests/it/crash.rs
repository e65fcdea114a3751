//! Crashes and full disks, with the real binary and real files: `kill -9` under a steady load,
//! again and again (some during rotation, some during the recovery that follows a restart);
//! every record the collector had decoded at least 1 s before a kill must be in the archive,
//! exactly once, and every file must open in pyarrow and DuckDB. `flowvm recover` on a
//! directory a killed collector left. A full disk (a tmpfs the test mounts) holds records back
//! and loses none that the bounds held when space returns.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::process::{banner, metric, send, start, start_with, wait_for};
use common::{KillOnDrop, data_message, read_archive, scratch, template, template_message, uint};

/// `flowvm_records_decoded_total` from the metrics page, if it answers.
fn decoded(metrics: SocketAddr) -> Option<u64> {
    metric(metrics, "flowvm_records_decoded_total ")
}

#[test]
fn kill_9_loses_nothing_decoded_a_second_before_and_duplicates_nothing() {
    let out = scratch("crash-kill-loop");
    let next = Arc::new(AtomicU64::new(0));
    // Per run: the first id sent on its connection and the decoded count 1 s before its kill.
    let mut must_have: Vec<(u64, u64)> = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    for kill in 0..10 {
        // Every third restart is killed again almost at once: during its recovery.
        if kill % 3 == 2 {
            let mut early = KillOnDrop(start(&out, "1"));
            std::thread::sleep(Duration::from_millis(random(60)));
            let _ = early.0.kill();
            let _ = early.0.wait();
        }
        let c = banner(start(&out, "1"));
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (next, stop, tcp) = (Arc::clone(&next), Arc::clone(&stop), c.tcp.unwrap());
            std::thread::spawn(move || send(tcp, &next, &stop))
        };
        let started = flowvm::clock::now();
        let run_for = Duration::from_millis(1200 + random(1800));
        let mut samples: Vec<(Instant, u64)> = Vec::new();
        while started.elapsed() < run_for {
            if let Some(n) = decoded(c.metrics) {
                samples.push((flowvm::clock::now(), n));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut child = c.child;
        let killed_at = flowvm::clock::now();
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        let first = sender.join().unwrap();
        let safe = samples
            .iter()
            .rev()
            .find(|(at, _)| killed_at.duration_since(*at) >= Duration::from_secs(1))
            .map_or(0, |(_, n)| *n);
        must_have.push((first, safe));
    }
    // A last, clean run: it recovers what the last kill left, then stops on SIGTERM.
    let last = banner(start(&out, "1"));
    let mut child = last.child;
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(child.0.wait().unwrap().success());

    let batches = read_archive(&out);
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for b in &batches {
        let c = b.column_by_name("octetDeltaCount").unwrap();
        for i in 0..c.len() {
            *seen.entry(uint(c.as_ref(), i)).or_insert(0) += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records archived twice: {twice:?}");
    let mut required = 0;
    for (run, (first, safe)) in must_have.iter().enumerate() {
        required += safe;
        let missing: Vec<u64> = (*first..first + safe)
            .filter(|id| !seen.contains_key(id))
            .collect();
        assert!(
            missing.is_empty(),
            "run {run}: {} of the {safe} records decoded 1 s before the kill are missing (first {:?})",
            missing.len(),
            missing.first()
        );
    }
    assert!(
        required > 10_000,
        "the load was too light to mean anything: {required}"
    );
    // Every file opens in DuckDB and pyarrow, with the rows Rust read.
    readers_count(&out, batches.iter().map(|b| b.num_rows()).sum());
    let _ = std::fs::remove_dir_all(&out);
}

/// Asserts that DuckDB and pyarrow open every file under `out` and count `rows` rows.
fn readers_count(out: &Path, rows: usize) {
    let script = "import sys, duckdb, pyarrow.parquet as pq, glob\n\
                  d = sys.argv[1]\n\
                  files = glob.glob(d + '/**/*.parquet', recursive=True)\n\
                  print(sum(pq.read_metadata(f).num_rows for f in files),\n\
                        duckdb.sql(f\"SELECT count(*) FROM read_parquet('{d}/**/*.parquet', union_by_name=true, hive_partitioning=true)\").fetchall()[0][0])";
    let check = Command::new("python3")
        .args(["-c", script])
        .arg(out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(said.trim(), format!("{rows} {rows}"));
}

#[test]
fn kill_9_under_load_loses_nothing_of_the_row_groups_made_durable_in_place() {
    let out = scratch("crash-checkpoint");
    let c = banner(start(&out, "3600"));
    // A load over several sync intervals, 150,000 records each (held back for checkpoints
    // from the second on): Messages of 1,000 records, ids from 0 up.
    let mut s = TcpStream::connect(c.tcp.unwrap()).unwrap();
    s.write_all(&template_message(&[template(256, &[(1, 8)])], 1))
        .unwrap();
    let sent = 750_000_u64;
    for first in (0..sent).step_by(1000) {
        let records: Vec<Vec<u8>> = (first..first + 1000)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        let sequence = u32::try_from(first).unwrap();
        s.write_all(&data_message(256, &records, sequence, 1))
            .unwrap();
        if (first + 1000) % 150_000 == 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    wait_for(c.metrics, "flowvm_rows_written_total ", |n| n == sent);
    // Handed to the archive and made durable (a sync every 500 ms): then killed.
    std::thread::sleep(Duration::from_millis(1200));
    let journal = journals(&out).pop().unwrap();
    let held = std::fs::read(&journal).unwrap();
    assert!(
        held.windows(4).any(|w| w == b"FVCK"),
        "the load ({sent} records) was too light for a checkpoint"
    );
    let mut child = c.child;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let said = recover(&out);
    assert!(said.contains(&format!("{sent} rows")), "{said}");
    let mut ids = archived_ids(&out);
    ids.sort_unstable();
    assert_eq!(ids, (0..sent).collect::<Vec<_>>(), "every record, once");
    readers_count(&out, ids.len());
    let _ = std::fs::remove_dir_all(&out);
}

/// Runs `flowvm recover` on `out`, which must succeed; returns what it said.
fn recover(out: &Path) -> String {
    let recover = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("recover")
        .arg(out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&recover.stdout).into_owned();
    assert!(recover.status.success(), "{said}");
    said
}

/// The ids (`octetDeltaCount`) of every record archived under `out`, in the files' order.
fn archived_ids(out: &Path) -> Vec<u64> {
    read_archive(out)
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("octetDeltaCount").unwrap().clone();
            (0..c.len()).map(move |i| uint(c.as_ref(), i))
        })
        .collect()
}

/// The journals under `out`.
fn journals(out: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "journal") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn flowvm_recover_completes_what_a_killed_collector_left() {
    let out = scratch("crash-recover");
    // No rotation during the test: the file is still open, only its journal on disk.
    let c = banner(start(&out, "3600"));
    let mut s = TcpStream::connect(c.tcp.unwrap()).unwrap();
    s.write_all(&template_message(&[template(256, &[(1, 8)])], 1))
        .unwrap();
    let records: Vec<Vec<u8>> = (0..500_u64).map(|i| i.to_be_bytes().to_vec()).collect();
    s.write_all(&data_message(256, &records, 0, 1)).unwrap();
    // Decoded, handed to the archive (every 250 ms) and synced (every 500 ms): then killed.
    for _ in 0..100 {
        if decoded(c.metrics) == Some(500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let mut child = c.child;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let said = recover(&out);
    assert!(said.contains("500 rows"), "{said}");
    assert!(
        recover(&out).contains("0 files made from journals"),
        "a second recovery has nothing to do"
    );
    let ids = archived_ids(&out);
    assert_eq!(ids, (0..500).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&out);
}

/// A tmpfs of `size` mounted on `dir` for the test's life (the tests run as root, as CI does);
/// `None`, after saying the test is skipped, where mounting is refused.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "skipped: mounting a tmpfs was refused here (the test needs root, as CI has)"
            );
        }
        ok.then(|| Self(dir.to_path_buf()))
    }

    /// Fills it to the last octet with a file, whose path it returns.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.0.join("filler");
        let mut fill = std::fs::File::create(&filler).unwrap();
        while fill.write_all(&[0xa5; 64 << 10]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_holds_records_back_and_loses_nothing_when_space_returns() {
    let dir = scratch("crash-disk-full");
    let Some(tmpfs) = Tmpfs::mount(&dir, "2m") else {
        return;
    };
    let out = dir.join("flows");
    let c = banner(start_with(&out, "1", &[]));
    // Fill the volume: whatever is left goes to one file.
    let filler = tmpfs.fill();
    let mut s = TcpStream::connect(c.tcp.unwrap()).unwrap();
    s.write_all(&template_message(&[template(256, &[(1, 8)])], 1))
        .unwrap();
    let mut id = 0_u64;
    for sequence in 0..50_u32 {
        let records: Vec<Vec<u8>> = (id..id + 40).map(|i| i.to_be_bytes().to_vec()).collect();
        s.write_all(&data_message(256, &records, sequence * 40, 1))
            .unwrap();
        id += 40;
    }
    wait_for(
        c.metrics,
        "flowvm_archive_errors_total{reason=\"no_space\"} ",
        |n| n > 0,
    );
    wait_for(c.metrics, "flowvm_archive_stalled ", |n| n >= 1);
    // UDP meanwhile: held in the bounded queues, or counted as archive_full past them.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let collector_udp = c.udp.unwrap();
    udp.send_to(
        &template_message(&[template(256, &[(1, 8)])], 2),
        collector_udp,
    )
    .unwrap();
    let datagrams = 200_u64;
    for i in 0..datagrams {
        let record = (1_000_000 + i).to_be_bytes().to_vec();
        let sequence = u32::try_from(i).unwrap();
        udp.send_to(&data_message(256, &[record], sequence, 2), collector_udp)
            .unwrap();
    }
    wait_for(c.metrics, "flowvm_messages_received_total ", |n| {
        n >= 51 + 1 + datagrams
    });
    // Space comes back: the collector resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_for(c.metrics, "flowvm_archive_stalled ", |n| n == 0);
    // Counted as archive_full while the archive is stalled, as queue_full in the moments a
    // smaller batch fits and the stall lifts before the next one.
    let full = metric(c.metrics, "flowvm_dropped_total{reason=\"archive_full\"} ").unwrap()
        + metric(c.metrics, "flowvm_dropped_total{reason=\"queue_full\"} ").unwrap();
    wait_for(c.metrics, "flowvm_rows_written_total ", |n| {
        n == id + datagrams - full
    });
    let mut child = c.child;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the collector never exits for a full disk"
    );
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(child.0.wait().unwrap().success());
    let mut ids = archived_ids(&out);
    ids.sort_unstable();
    let udp_ids = ids.split_off(ids.partition_point(|&i| i < 1_000_000));
    assert_eq!(
        ids,
        (0..id).collect::<Vec<_>>(),
        "every TCP record, pushed back meanwhile"
    );
    assert_eq!(
        u64::try_from(udp_ids.len()).unwrap() + full,
        datagrams,
        "every UDP record archived or counted as archive_full or queue_full"
    );
}

/// One `id` column.
fn ids(ids: std::ops::Range<u64>) -> arrow_array::RecordBatch {
    arrow_array::RecordBatch::try_from_iter([(
        "id",
        Arc::new(arrow_array::UInt64Array::from_iter_values(ids)) as _,
    )])
    .unwrap()
}

/// A disk that fills in the middle of a journal frame: the frame is cut, and the next append,
/// once there is room, follows the last whole frame with no hole between.
#[test]
fn a_journal_append_cut_by_a_full_disk_leaves_the_next_frame_right_after_the_last_whole_one() {
    use flowvm::sink::journal::{Journal, replay};
    let dir = scratch("journal-full");
    let Some(tmpfs) = Tmpfs::mount(&dir, "512k") else {
        return;
    };
    let path = dir.join(".j.journal");
    let mut j = Journal::create(path.clone()).unwrap();
    j.append(&ids(0..10)).unwrap();
    // Fill the volume, then free 8 KiB: less than the next frame needs.
    let filler = tmpfs.fill();
    let full = std::fs::metadata(&filler).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(full.saturating_sub(8 << 10))
        .unwrap();
    assert!(j.append(&ids(10..20_010)).is_err());
    std::fs::remove_file(&filler).unwrap();
    j.append(&ids(20_010..20_015)).unwrap();
    j.sync().unwrap();
    let mut got = Vec::new();
    let replayed = replay(&path, |b| {
        got.extend((0..b.num_rows()).map(|i| uint(b.column(0).as_ref(), i)));
        Ok(())
    })
    .unwrap();
    let expected: Vec<u64> = (0..10).chain(20_010..20_015).collect();
    assert_eq!((got, replayed.torn), (expected, false));
}

/// A full disk from an archive file's first batch on: the file is created (a tmpfs needs no
/// room for an empty file), its journal refuses the batch, and the completion at the window's
/// end fails too, taking the encoder with it. When space returns, the next batch is written:
/// the file with nothing in it is dropped, not tried again forever (it held every later row
/// back, and the full-disk test above failed on it when a rotation fell inside the stall).
#[test]
fn an_archive_file_left_with_nothing_by_a_full_disk_does_not_hold_later_rows_back() {
    use flowvm::sink::Sink;
    let dir = scratch("archive-full");
    let Some(tmpfs) = Tmpfs::mount(&dir, "256k") else {
        return;
    };
    let out = dir.join("flows");
    let (mut archive, counters) = archive_in(&out);
    let filler = tmpfs.fill();
    assert!(archive.write(&ids(0..100), 1_000).is_err());
    assert!(archive.rotate(1_001).is_err(), "the completion found room");
    std::fs::remove_file(&filler).unwrap();
    archive.write(&ids(100..105), 1_002).unwrap();
    archive.close().unwrap();
    assert_eq!(archived_column(&out), (100..105).collect::<Vec<_>>());
    assert_eq!(counters.files_written.get(), 1);
}

/// An archive into `out` as the collector's defaults make it, rotating every second, and its
/// counters.
fn archive_in(
    out: &Path,
) -> (
    flowvm::sink::parquet::Archive,
    Arc<flowvm::telemetry::Counters>,
) {
    let counters = Arc::new(flowvm::telemetry::Counters::default());
    let config = flowvm::config::Config {
        out: out.to_path_buf(),
        rotate: 1,
        ..flowvm::config::Config::default()
    };
    (
        flowvm::sink::parquet::Archive::new(config.archive(), Arc::clone(&counters)),
        counters,
    )
}

/// Under load a full disk fails the checkpoint: the encoder goes, what it held back cannot be
/// journaled either and is owed, so the next batch is refused (the archive stalls) until space
/// returns; then the file is completed from its checkpointed row groups and its journal, with
/// every row once.
#[test]
fn a_full_disk_under_load_fails_the_checkpoint_holds_the_next_batch_back_and_loses_nothing() {
    use flowvm::sink::Sink;
    let dir = scratch("checkpoint-full");
    let Some(tmpfs) = Tmpfs::mount(&dir, "8m") else {
        return;
    };
    let out = dir.join("flows");
    let (mut archive, counters) = archive_in(&out);
    let rows = 65_536_u64;
    // A first interval journaled, a second made durable by a checkpoint.
    archive.write(&ids(0..rows), 1_000).unwrap();
    archive.sync().unwrap();
    archive.write(&ids(rows..2 * rows), 1_000).unwrap();
    archive.sync().unwrap();
    let filler = tmpfs.fill();
    // Values that do not compress (splitmix64's finaliser, one to one), half a MiB: more
    // than the slack in the files' last pages.
    let scattered: Vec<u64> = (2 * rows..3 * rows)
        .map(|i| {
            let z = (i ^ (i >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect();
    let third = arrow_array::RecordBatch::try_from_iter([(
        "id",
        Arc::new(arrow_array::UInt64Array::from(scattered.clone())) as _,
    )])
    .unwrap();
    archive.write(&third, 1_000).unwrap();
    assert!(archive.sync().is_err(), "the disk is full");
    assert!(counters.archive_errors.get() > 0);
    // Owed: the next batch waits for what the last sync could not make durable.
    assert!(archive.write(&ids(3 * rows..3 * rows + 10), 1_000).is_err());
    std::fs::remove_file(&filler).unwrap();
    archive.write(&ids(3 * rows..3 * rows + 10), 1_000).unwrap();
    archive.close().unwrap();
    assert_eq!(
        counters.files_written.get(),
        2,
        "the checkpointed file and its tail"
    );
    let mut got = archived_column(&out);
    got.sort_unstable();
    let mut expected: Vec<u64> = (0..2 * rows).chain(3 * rows..3 * rows + 10).collect();
    expected.extend(scattered);
    expected.sort_unstable();
    assert_eq!(got, expected);
}

/// The first column of every row archived under `out`.
fn archived_column(out: &Path) -> Vec<u64> {
    read_archive(out)
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(|i| uint(b.column(0).as_ref(), i)))
        .collect()
}
