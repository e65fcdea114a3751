//! python-ipfix (Debian's python3-ipfix, run by `/usr/bin/python3`) as an Exporting Process
//! into `flowvm collect`, over UDP and over TCP: `tests/peers/ipfix_export.py` sends what the
//! other peers never send (two Observation Domains reusing Template 256 with different layouts,
//! variable-length fields in both length forms up to 40000 octets, every timestamp type with
//! chosen NTP fraction bits, three Options Templates with different scopes, a Template refresh
//! and a redefinition) and writes down every Data Record it sent; the archive must hold exactly
//! those records, value by value, with no record lost by sequence number.
//!
//! What python-ipfix cannot express (the 3-octet length form below 255 octets, NTP fractions
//! with chosen bits) the script builds with `struct`; its docstring lists them.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use common::{Running, read_archive, scratch};
use flowvm::config::Config;

/// Debian's Python, the one python3-ipfix is installed for (not pyenv's `python3`).
const PYTHON: &str = "/usr/bin/python3";

/// Fails with the fix when python3-ipfix is missing.
fn require_python_ipfix() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import ipfix.message, ipfix.reader"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3-ipfix is missing for {PYTHON}: run sh tests/setup.sh"
    );
}

fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// One cell as the script writes it: integers in decimal, text as it is, octets in hex,
/// timestamps as nanoseconds since the UNIX epoch.
fn cell(col: &dyn Array, i: usize) -> String {
    let ns = |v: i64, per_ns: i64| (v * per_ns).to_string();
    match col.data_type() {
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(i).to_string(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(i).to_string(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Utf8 => col.as_string::<i32>().value(i).to_owned(),
        DataType::Binary => hex(col.as_binary::<i32>().value(i)),
        DataType::FixedSizeBinary(_) => hex(col.as_fixed_size_binary().value(i)),
        DataType::Timestamp(TimeUnit::Second, _) => ns(
            col.as_primitive::<TimestampSecondType>().value(i),
            1_000_000_000,
        ),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ns(
            col.as_primitive::<TimestampMillisecondType>().value(i),
            1_000_000,
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ns(
            col.as_primitive::<TimestampMicrosecondType>().value(i),
            1_000,
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            ns(col.as_primitive::<TimestampNanosecondType>().value(i), 1)
        }
        other => panic!("no rendering for {other}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|o| format!("{o:02x}")).collect()
}

/// Every archived record as the script's lines: the Observation Domain ID, then `name=value`
/// for each field column in order (the exporter address and export time left out).
fn archived_lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut lines = Vec::new();
    for b in batches {
        let schema = b.schema();
        let domains = b.column_by_name("observation_domain_id").unwrap();
        for i in 0..b.num_rows() {
            let mut line = cell(domains.as_ref(), i);
            for (field, col) in schema.fields().iter().zip(b.columns()) {
                if matches!(
                    field.name().as_str(),
                    "exporter" | "observation_domain_id" | "export_time" | "export_version"
                ) {
                    continue;
                }
                line.push('\t');
                line.push_str(field.name());
                line.push('=');
                if field.metadata().get("ipfix.data_type").map(String::as_str)
                    == Some("ipv4Address")
                {
                    // Archived as UInt32; sent, and noted, as text.
                    line.push_str(&common::address(b, field.name(), i).unwrap_or_default());
                } else {
                    line.push_str(&cell(col.as_ref(), i));
                }
            }
            lines.push(line);
        }
    }
    lines.sort();
    lines
}

/// The first 300 characters of a line (some hold 80000 hex digits).
fn head(line: &str) -> &str {
    line.get(..300).unwrap_or(line)
}

/// Runs the exporter script against the collector over `transport` and compares the archive
/// with what the script says it sent.
async fn python_exporter_into_the_collector(transport: &str) {
    require_python_ipfix();
    let out = scratch(&format!("python-ipfix-{transport}"));
    let notes = scratch(&format!("python-ipfix-{transport}-sent")).join("sent.tsv");
    let collector = Running::start(&out, Config::default()).await;
    let target = if transport == "udp" {
        collector.udp
    } else {
        collector.tcp
    };
    let run = Command::new(PYTHON)
        .arg(peer_script("ipfix_export.py"))
        .args([transport, "127.0.0.1", &target.port().to_string()])
        .arg(&notes)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "ipfix_export.py failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut expected: Vec<String> = std::fs::read_to_string(&notes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    expected.sort();
    let n = expected.len() as u64;
    collector
        .until("every record decoded", |c| c.records_decoded.get() >= n)
        .await;
    let counters = collector.stop().await;
    let render = counters.render();
    assert_eq!(counters.records_decoded.get(), n, "{render}");
    assert_eq!(counters.records_lost.get(), 0, "{render}");
    assert_eq!(counters.messages_reordered.get(), 0, "{render}");
    assert_eq!(counters.messages_dropped.get(), 0, "{render}");
    assert_eq!(counters.templates_rejected.get(), 0, "{render}");
    let got = archived_lines(&read_archive(&out));
    for (g, e) in got.iter().zip(&expected) {
        assert!(g == e, "archived\n  {}\nsent\n  {}", head(g), head(e));
    }
    assert_eq!(got.len(), expected.len());
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(notes.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ipfix_over_udp_is_archived_value_by_value() {
    python_exporter_into_the_collector("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ipfix_over_tcp_is_archived_value_by_value() {
    python_exporter_into_the_collector("tcp").await;
}
