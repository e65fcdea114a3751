//! The archive opens as it is in DuckDB and pyarrow (installed by the README's test command),
//! with the README's queries, filters on addresses as written (IPv4 through `flowvm sql`'s view
//! or its `ipv4()`, IPv6 as text), and IPFIX and NetFlow files read together, with either
//! `--compression`.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use crate::common;

use common::{Running, data_message, scratch, template, template_message};
use flowvm::config::Config;
use flowvm::sink::parquet::Codec;
use std::process::Command;
use tokio::net::UdpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_pyarrow_read_the_archive_and_filter_on_an_address_as_written() {
    for (codec, name) in [(Codec::Zstd, "ZSTD"), (Codec::Lz4, "LZ4")] {
        readers_read(codec, name).await;
    }
}

/// The archive written with `codec` (pyarrow's `name` for it: `LZ4` is Parquet's `LZ4_RAW`) read
/// by both readers.
async fn readers_read(codec: Codec, name: &str) {
    let out = scratch(&format!("readers-{name}"));
    let config = Config {
        compression: codec,
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    let exporter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Two templates with different columns: DuckDB's union_by_name merges them.
    exporter
        .send_to(
            &template_message(
                &[
                    template(256, &[(8, 4), (1, 8)]),
                    template(257, &[(27, 16), (1, 4)]),
                ],
                1,
            ),
            c.udp,
        )
        .await
        .unwrap();
    let v4: Vec<Vec<u8>> = (0..50_u8)
        .map(|i| {
            [
                [10, 1, 1, i % 5].to_vec(),
                u64::from(i).to_be_bytes().to_vec(),
            ]
            .concat()
        })
        .collect();
    exporter
        .send_to(&data_message(256, &v4, 0, 1), c.udp)
        .await
        .unwrap();
    let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8];
    v6.extend([0; 11]);
    v6.push(1);
    v6.extend(7_u32.to_be_bytes());
    exporter
        .send_to(&data_message(257, &[v6], 50, 1), c.udp)
        .await
        .unwrap();
    // A NetFlow v5 packet of 29 flows (a real capture's) from another exporter.
    let v5 = common::flows::pcap_frames(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/captures/dpkt-unknown-netflow5.pcap"),
    )
    .remove(0)
    .1
    .split_off(14 + 20 + 8);
    let netflow = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    netflow.send_to(&v5, c.udp).await.unwrap();
    c.until("80 records", |k| k.records_decoded.get() == 80)
        .await;
    c.stop().await;

    let stdout = check_archive(&out, "10.1.1.3", "sourceIPv4Address");
    assert!(stdout.contains("\"duckdb_rows\": 80"), "{stdout}");
    assert!(stdout.contains("\"duckdb_view_rows\": 80"), "{stdout}");
    assert!(stdout.contains("\"disagreements\": []"), "{stdout}");
    assert!(stdout.contains("\"pyarrow_rows\": 80"), "{stdout}");
    // The README's NetFlow query: octets per exporter and version, IPFIX and v5 files together
    // (IPFIX: 0 + 1 + … + 49, and 7; the capture's 29 flows carry 26,460 octets).
    assert!(
        stdout.contains("\"per_exporter\": [[\"127.0.0.1\", 10, 1232], [\"127.0.0.2\", 5, 26460]]"),
        "{stdout}"
    );
    // 10.1.1.3 is i = 3, 8, ..., 48: ten rows whose octets add up to 255.
    assert!(stdout.contains("\"duckdb_matching\": 10"), "{stdout}");
    assert!(stdout.contains("\"duckdb_matching_files\": 10"), "{stdout}");
    assert!(stdout.contains("\"duckdb_octets\": 255"), "{stdout}");
    assert!(stdout.contains("\"pyarrow_matching\": 10"), "{stdout}");
    assert!(stdout.contains("\"sourceIPv6Address\""), "{stdout}");
    assert!(stdout.contains("\"exporter\""), "{stdout}");
    assert!(
        stdout.contains(&format!("\"codecs\": [\"{name}\"]")),
        "{stdout}"
    );
    let stdout = check_archive(&out, "2001:db8::1", "sourceIPv6Address");
    assert!(stdout.contains("\"duckdb_matching\": 1,"), "{stdout}");
    assert!(stdout.contains("\"duckdb_matching_files\": 1,"), "{stdout}");
    assert!(stdout.contains("\"duckdb_octets\": 7"), "{stdout}");
    assert!(stdout.contains("\"pyarrow_matching\": 1,"), "{stdout}");
}

/// An archive of an older flowvm (IPv4 addresses as text) and of this one (numbers) read
/// together through the view: every address as text, each filterable as written.
#[test]
fn the_view_reads_ipv4_addresses_written_as_text_beside_those_written_as_numbers() {
    let out = scratch("readers-old-and-new");
    let records: Vec<Vec<u8>> = (1..=3_u8)
        .map(|i| [[10, 1, 1, i].to_vec(), u64::from(i).to_be_bytes().to_vec()].concat())
        .collect();
    let mut file = template_message(&[template(256, &[(8, 4), (1, 8)])], 1);
    file.extend(data_message(256, &records, 0, 1));
    let input = out.join("in.ipfix");
    std::fs::write(&input, &file).unwrap();
    let archive = out.join("flows");
    let status = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args(["decode", "--out", archive.to_str().unwrap()])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let view = out.join("flows.sql");
    common::view_sql(archive.to_str().unwrap(), &view);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/readers/old_and_new.py");
    let stdout = common::python(script, &[archive.to_str().unwrap(), view.to_str().unwrap()]);
    assert!(
        stdout.contains(
            r#""rows": [["10.1.1.1", 1], ["10.1.1.2", 2], ["10.1.1.3", 3], ["10.9.9.9", 5]]"#
        ),
        "{stdout}"
    );
    assert!(stdout.contains(r#""older": 1"#), "{stdout}");
}

/// What `tests/readers/check_archive.py` finds in the archive at `out` for rows whose `column`
/// holds `address`, with the statements `flowvm sql` prints for it.
fn check_archive(out: &std::path::Path, address: &str, column: &str) -> String {
    let view = out.with_extension("sql");
    common::view_sql(out.to_str().unwrap(), &view);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/readers/check_archive.py"
    );
    common::python(
        script,
        &[
            out.to_str().unwrap(),
            view.to_str().unwrap(),
            address,
            column,
        ],
    )
}

/// A file whose counters are delta-encoded, whose IPv4 addresses (numbers) are all distinct,
/// and whose IPv6 addresses outgrow their dictionary (so its pages go on front-coded,
/// `DELTA_BYTE_ARRAY`, where neighbours share their beginnings, and `DELTA_LENGTH_BYTE_ARRAY`
/// where they do not): both readers read every value, and find an address of each kind by
/// its text.
#[test]
fn readers_read_delta_encoded_counters_and_addresses_past_their_dictionary() {
    let out = scratch("readers-delta");
    // 8,000 distinct sources, 10.0.0.0 to 10.0.31.63 and 2001:db8:: to 2001:db8::1f3f, and as
    // many IPv6 destinations scattered over all of IPv6 (a multiplicative hash, one to one, in
    // the first group): each about 100-300 KiB of text, past the dictionary's 64 KiB; octets
    // near one another (a hash's remainder), as of similar flows.
    let scattered = |i: u32| i.wrapping_mul(2_654_435_761);
    let scattered6 = |i: u32| {
        std::net::Ipv6Addr::from(
            (0..4).fold(0_u128, |a, k| a << 32 | u128::from(scattered(i + k * 8000))),
        )
    };
    let octets = |i: u32| 1000 + u64::from(scattered(i) >> 24);
    let records: Vec<Vec<u8>> = (0..8000_u32)
        .map(|i| {
            [
                (0x0a00_0000 | i).to_be_bytes().to_vec(),
                (0x2001_0db8_u128 << 96 | u128::from(i))
                    .to_be_bytes()
                    .to_vec(),
                scattered6(i).octets().to_vec(),
                octets(i).to_be_bytes().to_vec(),
            ]
            .concat()
        })
        .collect();
    let mut file = template_message(&[template(256, &[(8, 4), (27, 16), (28, 16), (1, 8)])], 1);
    for (n, chunk) in records.chunks(1000).enumerate() {
        file.extend(data_message(
            256,
            chunk,
            u32::try_from(n * 1000).unwrap(),
            1,
        ));
    }
    let input = out.join("in.ipfix");
    std::fs::write(&input, &file).unwrap();
    let archive = out.join("flows");
    let status = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args([
            "decode",
            "--out",
            archive.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let stdout = check_archive(&archive, "10.0.31.63", "sourceIPv4Address");
    assert!(stdout.contains("\"duckdb_rows\": 8000"), "{stdout}");
    assert!(stdout.contains("\"duckdb_view_rows\": 8000"), "{stdout}");
    assert!(stdout.contains("\"disagreements\": []"), "{stdout}");
    assert!(stdout.contains("\"pyarrow_rows\": 8000"), "{stdout}");
    assert!(stdout.contains("\"duckdb_matching\": 1,"), "{stdout}");
    assert!(stdout.contains("\"duckdb_matching_files\": 1,"), "{stdout}");
    assert!(stdout.contains("\"pyarrow_matching\": 1,"), "{stdout}");
    assert!(
        stdout.contains(&format!("\"duckdb_octets\": {}", octets(7999))),
        "{stdout}"
    );
    let total: u64 = (0..8000).map(octets).sum();
    assert!(
        stdout.contains(&format!("\"per_exporter\": [[\"file:0\", 10, {total}]]")),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"octetDeltaCount\": [\"DELTA_BINARY_PACKED\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"sourceIPv6Address\": [\"DELTA_BYTE_ARRAY\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"destinationIPv6Address\": [\"DELTA_LENGTH_BYTE_ARRAY\""),
        "{stdout}"
    );
    for (address, column, i) in [
        ("2001:db8::1f3f".to_owned(), "sourceIPv6Address", 7999),
        (scattered6(4321).to_string(), "destinationIPv6Address", 4321),
    ] {
        let stdout = check_archive(&archive, &address, column);
        assert!(stdout.contains("\"duckdb_matching\": 1,"), "{stdout}");
        assert!(stdout.contains("\"duckdb_matching_files\": 1,"), "{stdout}");
        assert!(stdout.contains("\"pyarrow_matching\": 1,"), "{stdout}");
        assert!(
            stdout.contains(&format!("\"duckdb_octets\": {}", octets(i))),
            "{stdout}"
        );
    }
}
