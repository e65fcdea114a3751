//! The archive's price: the whole file, and each column as the archive writes it.
//!
//! Setup decodes a capture (`FLOWVM_BENCH_CAPTURE`; by default the Cisco AVC capture in
//! `testdata/captures/`) with `flowvm decode` into a scratch archive, reads back the file with
//! the most rows (up to [`ROWS`] of them, in batches of [`BATCH_ROWS`]), and checks that
//! writing them again reads back the same. One iteration writes those rows into memory with the
//! archive's own encoder ([`Encoder`]: its own chunks for integer, time, address and exporter
//! columns, arrow-rs's writers for the rest) under the archive's own properties
//! ([`properties`]: encodings, dictionaries and compression chosen from the first batch, zstd as
//! by default) and closes it:
//!
//! - `archive/as_archived`: the whole file (IPv4 addresses as `UInt32`, IPv6 and MAC addresses
//!   as text);
//! - `archive_columns/<column>`: each column alone, as archived: where the time goes.
//!
//! Run with `cargo bench --bench archive`; on the load of `benches/vs_nfcapd.py` (which builds
//! it under `target/bench-data/`):
//! `FLOWVM_BENCH_CAPTURE=target/bench-data/softflowd-ipfix-280000.pcap cargo bench --bench archive`.

use std::error::Error;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arrow_array::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowvm::sink::encoder::Encoder;
use flowvm::sink::parquet::{Codec, properties};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

/// Rows of the archived file written in each iteration, at most.
const ROWS: usize = 262_144;

/// Rows a batch, about what the collector's batches hold under load.
const BATCH_ROWS: usize = 8192;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// `batches` written into memory under `properties`: a whole Parquet file.
fn write(batches: &[RecordBatch], properties: &WriterProperties) -> Result<Vec<u8>> {
    let schema = batches.first().ok_or("no batch")?.schema();
    let mut writer = Encoder::try_new(Vec::new(), schema, properties.clone())?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

/// The rows of the Parquet file `octets`, in batches of [`BATCH_ROWS`], through a scratch file.
fn read_back(octets: &[u8]) -> Result<Vec<RecordBatch>> {
    let path = std::env::temp_dir().join(format!(
        "flowvm-bench-archive-{}.parquet",
        std::process::id()
    ));
    std::fs::write(&path, octets)?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path)?)?
        .with_batch_size(BATCH_ROWS)
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    std::fs::remove_file(&path)?;
    Ok(batches)
}

/// The Parquet files under `dir`, at any depth.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(parquet_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            files.push(path);
        }
    }
    Ok(files)
}

/// The rows of the archived file with the most rows, from `capture` decoded by `flowvm decode`.
fn archived(capture: &Path) -> Result<Vec<RecordBatch>> {
    let out = std::env::temp_dir().join(format!("flowvm-bench-archive-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("decode")
        .arg("--out")
        .arg(&out)
        .arg(capture)
        .status()?;
    if !status.success() {
        return Err(format!("flowvm decode {} failed: {status}", capture.display()).into());
    }
    let mut largest = None;
    for path in parquet_files(&out)? {
        let rows = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path)?)?
            .metadata()
            .file_metadata()
            .num_rows();
        if largest.as_ref().is_none_or(|(most, _)| rows > *most) {
            largest = Some((rows, path));
        }
    }
    let (_, path) = largest.ok_or("the capture made no file")?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path)?)?
        .with_batch_size(BATCH_ROWS)
        .with_limit(ROWS)
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    std::fs::remove_dir_all(&out)?;
    Ok(batches)
}

/// The groups: setup (and its checks) first, then the timings.
#[expect(
    clippy::expect_used,
    reason = "bench setup: a capture that does not decode must stop the run, not be measured"
)]
fn archive(c: &mut Criterion) {
    let capture = std::env::var_os("FLOWVM_BENCH_CAPTURE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/captures/netflow-parser-cisco-avc-ipfix.pcap")
        },
        PathBuf::from,
    );
    let rows_read = archived(&capture).expect("the capture decodes into the archive");
    let rows: usize = rows_read.iter().map(RecordBatch::num_rows).sum();
    let first = rows_read.first().expect("rows");
    let as_archived = properties(first, Codec::Zstd).expect("properties");
    let archived = write(&rows_read, &as_archived).expect("written");
    let octets = archived.len();
    assert_eq!(
        read_back(&archived).expect("read back"),
        rows_read,
        "the rows read back as written"
    );
    println!(
        "{}: {rows} rows of {} columns; {octets} octets as archived ({:.2} a row)",
        capture.display(),
        first.num_columns(),
        octets as f64 / rows as f64,
    );
    let throughput = Throughput::Elements(u64::try_from(rows).unwrap_or(u64::MAX));

    let mut group = c.benchmark_group("archive");
    group.throughput(throughput.clone());
    group.bench_function("as_archived", |b| {
        b.iter(|| black_box(write(&rows_read, &as_archived).is_ok()));
    });
    group.finish();

    let mut group = c.benchmark_group("archive_columns");
    group.throughput(throughput);
    for (index, field) in first.schema().fields().iter().enumerate() {
        let column: Vec<RecordBatch> = rows_read
            .iter()
            .map(|batch| batch.project(&[index]))
            .collect::<std::result::Result<_, _>>()
            .expect("projected");
        group.bench_function(field.name(), |b| {
            b.iter(|| black_box(write(&column, &as_archived).is_ok()));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = archive
}
criterion_main!(benches);
