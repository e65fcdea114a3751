//! The archive's price: each column as the archive writes it, and the whole file with addresses
//! as text (as archived) against the same rows with addresses typed.
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
//! - `archive/as_archived`: the whole file, addresses as text;
//! - `archive/addresses_typed`: the same rows with IPv4 addresses as `UInt32` and IPv6 and MAC
//!   addresses as their octets (`FixedSizeBinary`), under the properties chosen for that
//!   layout: what typed address columns would cost instead;
//! - `archive_columns/<column>`: each column alone, as archived: where the time goes.
//!
//! Run with `cargo bench --bench archive`; on the load of `benches/vs_nfcapd.py` (which builds
//! it under `target/bench-data/`):
//! `FLOWVM_BENCH_CAPTURE=target/bench-data/softflowd-ipfix-280000.pcap cargo bench --bench archive`.

use std::error::Error;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch, UInt32Array};
use arrow_schema::{Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowvm::sink::encoder::Encoder;
use flowvm::sink::parquet::{Codec, properties};
use flowvm::sink::text::is_address;
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

/// The text addresses of `column`, whose IPFIX type is `kind`, as their values: IPv4 as
/// `UInt32`, IPv6 and MAC addresses as their octets; nulls stay null.
fn typed(kind: &str, column: &ArrayRef) -> Result<ArrayRef> {
    let texts = column
        .as_string_opt::<i32>()
        .ok_or("an address column not of text")?;
    let bad = || format!("a {kind} that does not parse");
    Ok(match kind {
        "ipv4Address" => {
            let values = texts
                .iter()
                .map(|t| t.map(|t| t.parse::<Ipv4Addr>().map(u32::from)).transpose())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad())?;
            Arc::new(UInt32Array::from(values))
        }
        "ipv6Address" => {
            let values = texts
                .iter()
                .map(|t| {
                    t.map(|t| t.parse::<Ipv6Addr>().map(|a| a.octets()))
                        .transpose()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad())?;
            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                values.into_iter(),
                16,
            )?)
        }
        _ => {
            let values = texts
                .iter()
                .map(|t| {
                    t.map(|t| {
                        t.split(':')
                            .map(|part| u8::from_str_radix(part, 16))
                            .collect::<std::result::Result<Vec<u8>, _>>()
                    })
                    .transpose()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad())?;
            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                values.into_iter(),
                6,
            )?)
        }
    })
}

/// `batches` with their address columns typed ([`typed`]), fields without the address
/// metadata (so their encoding is chosen as for any number).
fn addresses_typed(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|batch| {
            let mut fields = Vec::new();
            let mut columns = Vec::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                if let Some(kind) = field.metadata().get("ipfix.data_type")
                    && is_address(field)
                {
                    let column = typed(kind, column)?;
                    fields.push(Field::new(field.name(), column.data_type().clone(), true));
                    columns.push(column);
                } else {
                    fields.push(field.as_ref().clone());
                    columns.push(Arc::clone(column));
                }
            }
            Ok(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns,
            )?)
        })
        .collect()
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
    let text = archived(&capture).expect("the capture decodes into the archive");
    let typed = addresses_typed(&text).expect("the addresses parse");
    let rows: usize = text.iter().map(RecordBatch::num_rows).sum();
    let first = text.first().expect("rows");
    let as_archived = properties(first, Codec::Zstd).expect("properties");
    let for_typed = properties(typed.first().expect("rows"), Codec::Zstd).expect("properties");
    let archived = write(&text, &as_archived).expect("written");
    let written = write(&typed, &for_typed).expect("written");
    let (octets, typed_octets) = (archived.len(), written.len());
    assert_eq!(
        read_back(&archived).expect("read back"),
        text,
        "the rows read back as written"
    );
    assert_eq!(
        read_back(&written).expect("read back"),
        typed,
        "the rows with addresses typed read back as written"
    );
    println!(
        "{}: {rows} rows of {} columns; {octets} octets as archived ({:.2} a row), {typed_octets} with addresses typed ({:.2} a row)",
        capture.display(),
        first.num_columns(),
        octets as f64 / rows as f64,
        typed_octets as f64 / rows as f64,
    );
    let throughput = Throughput::Elements(u64::try_from(rows).unwrap_or(u64::MAX));

    let mut group = c.benchmark_group("archive");
    group.throughput(throughput.clone());
    group.bench_function("as_archived", |b| {
        b.iter(|| black_box(write(&text, &as_archived).is_ok()));
    });
    group.bench_function("addresses_typed", |b| {
        b.iter(|| black_box(write(&typed, &for_typed).is_ok()));
    });
    group.finish();

    let mut group = c.benchmark_group("archive_columns");
    group.throughput(throughput);
    for (index, field) in first.schema().fields().iter().enumerate() {
        let column: Vec<RecordBatch> = text
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
