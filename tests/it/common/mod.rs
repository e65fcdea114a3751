//! Helpers for the end-to-end tests: messages built with the vm writer, a collector on
//! 127.0.0.1 port 0, and the archive read back with the parquet crate.

#![allow(
    dead_code,
    clippy::allow_attributes,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: each test binary uses a different subset, and failing loudly is the point"
)]

pub(crate) mod biflows;
pub(crate) mod flows;
pub(crate) mod netns;
pub(crate) mod process;
pub(crate) mod wire_capture;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use flowvm::collector::Collector;
use flowvm::config::Config;
use flowvm::telemetry::Counters;
use flowvm_vm::Compiler;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A UDP socket on 127.0.0.1 port 0 with a deep (8 MiB) receive buffer, so an exporter that
/// replays as fast as it can loses nothing, and a 50 ms read timeout for bounded loops.
pub(crate) fn loopback_udp_receiver() -> std::net::UdpSocket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_recv_buffer_size(8 << 20).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let socket = std::net::UdpSocket::from(socket);
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    socket
}

/// A fresh directory under the system temp dir, unique to this process and `name`.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowvm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Template `id` of IANA (element, length) pairs.
pub(crate) fn template(id: u16, fields: &[(u16, u16)]) -> TemplateDef {
    let fields = fields
        .iter()
        .map(|&(e, len)| FieldSpecifier::iana(e, len))
        .collect();
    TemplateDef {
        template_id: TemplateId(id),
        scope_field_count: 0,
        fields,
    }
}

/// A Message holding the given templates.
pub(crate) fn template_message(defs: &[TemplateDef], domain: u32) -> Vec<u8> {
    let mut w = MessageWriter::new(65_535);
    w.begin_set(SetId::TEMPLATE);
    for def in defs {
        w.put_template(def);
        assert!(w.commit());
    }
    w.finish(1_700_000_000, 0, ObservationDomainId(domain))
        .to_vec()
}

/// A Message with one Data Set of template `id` holding `records` (raw octets each).
pub(crate) fn data_message(id: u16, records: &[Vec<u8>], sequence: u32, domain: u32) -> Vec<u8> {
    let mut w = MessageWriter::new(65_535);
    w.begin_set(SetId(id));
    for r in records {
        w.put_bytes(r);
        assert!(w.commit());
    }
    w.finish(1_700_000_100, sequence, ObservationDomainId(domain))
        .to_vec()
}

/// A collector on 127.0.0.1:0 (UDP and TCP, metrics on port 0) archiving into `out`.
pub(crate) struct Running {
    pub(crate) udp: std::net::SocketAddr,
    pub(crate) tcp: std::net::SocketAddr,
    /// A UDP-only listener (the role of 2055), when the config asked for one (any
    /// `udp_listen` but the default becomes one on 127.0.0.1:0).
    pub(crate) udp_only: Option<std::net::SocketAddr>,
    pub(crate) metrics: std::net::SocketAddr,
    /// The TLS listener, when the config has a certificate.
    pub(crate) tls: Option<std::net::SocketAddr>,
    pub(crate) counters: Arc<Counters>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), flowvm::collector::CollectError>>,
}

impl Running {
    /// Starts a collector with `config` adjusted to loopback port 0 and `out`.
    pub(crate) async fn start(out: &Path, config: Config) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), out, config).await
    }

    /// Starts a collector listening on `listen` (e.g. `[::1]:0`), otherwise as [`Self::start`].
    pub(crate) async fn start_on(listen: std::net::SocketAddr, out: &Path, config: Config) -> Self {
        let udp_listen = if config.udp_listen == Config::default().udp_listen {
            Vec::new()
        } else {
            vec!["127.0.0.1:0".parse().unwrap()]
        };
        let config = Config {
            listen: vec![listen],
            udp_listen,
            tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
            out: out.to_path_buf(),
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..config
        };
        let collector = Collector::bind(config, Compiler::default()).await.unwrap();
        let (udp, tcp) = (collector.udp_addrs()[0], collector.tcp_addrs()[0]);
        let udp_only = collector.udp_addrs().get(1).copied();
        let metrics = collector.metrics_addr().unwrap();
        let tls = collector.tls_addrs().first().copied();
        let counters = collector.counters();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(collector.run(shutdown));
        Self {
            udp,
            tcp,
            udp_only,
            metrics,
            tls,
            counters,
            stop,
            task,
        }
    }

    /// Waits (bounded) until `done` holds for the counters.
    pub(crate) async fn until(&self, what: &str, done: impl Fn(&Counters) -> bool) {
        for _ in 0..500 {
            if done(&self.counters) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}:\n{}", self.counters.render());
    }

    /// Signals shutdown and waits for every file to be completed.
    pub(crate) async fn stop(self) -> Arc<Counters> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.counters
    }
}

/// Every completed Parquet file under `out`, and no temporary one left.
pub(crate) fn archive_files(out: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name == ".flowvm.lock" {
                    continue;
                }
                assert!(
                    !name.ends_with(".tmp") && !name.ends_with(".journal"),
                    "temporary file or journal left: {}",
                    path.display()
                );
                assert!(
                    name.ends_with(".parquet"),
                    "unexpected file {}",
                    path.display()
                );
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every batch of every file under `out`.
pub(crate) fn read_archive(out: &Path) -> Vec<RecordBatch> {
    archive_files(out)
        .iter()
        .flat_map(|path| {
            let file = std::fs::File::open(path).unwrap();
            ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The values of column `name` over all `batches` that have it, as strings (Arrow's display;
/// IPv4 addresses, archived as `UInt32`, in dotted decimal; nulls as `∅`).
pub(crate) fn column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    use arrow_array::cast::AsArray;
    let mut out = Vec::new();
    for b in batches {
        let Ok(field) = b.schema().field_with_name(name).cloned() else {
            continue;
        };
        let Some(col) = b.column_by_name(name) else {
            continue;
        };
        if field.metadata().get("ipfix.data_type").map(String::as_str) == Some("ipv4Address") {
            out.extend(
                col.as_primitive::<arrow_array::types::UInt32Type>()
                    .iter()
                    .map(|v| {
                        v.map_or_else(
                            || "∅".to_owned(),
                            |v| std::net::Ipv4Addr::from(v).to_string(),
                        )
                    }),
            );
        } else {
            out.extend(arrow_cast_display(col));
        }
    }
    out
}

/// Row `i` of the address column `name` of `batch` as text: an IPv4 address (archived as
/// `UInt32`) in dotted decimal, an IPv6 or MAC address as archived; `None` without the column.
pub(crate) fn address(batch: &RecordBatch, name: &str, i: usize) -> Option<String> {
    use arrow_array::cast::AsArray;
    let col = batch.column_by_name(name)?;
    Some(
        match col.as_primitive_opt::<arrow_array::types::UInt32Type>() {
            Some(v4) => std::net::Ipv4Addr::from(v4.value(i)).to_string(),
            None => col.as_string::<i32>().value(i).to_owned(),
        },
    )
}

/// Value `i` of an unsigned or timestamp column as a number; timestamps in nanoseconds.
pub(crate) fn uint(col: &dyn arrow_array::Array, i: usize) -> u64 {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
    };
    use arrow_schema::{DataType, TimeUnit};
    match col.data_type() {
        DataType::UInt8 => u64::from(col.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => u64::from(col.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => u64::from(col.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i),
        DataType::Timestamp(unit, _) => {
            let (v, scale) = match unit {
                TimeUnit::Second => (
                    col.as_primitive::<TimestampSecondType>().value(i),
                    1_000_000_000,
                ),
                TimeUnit::Millisecond => (
                    col.as_primitive::<TimestampMillisecondType>().value(i),
                    1_000_000,
                ),
                TimeUnit::Microsecond => (
                    col.as_primitive::<TimestampMicrosecondType>().value(i),
                    1_000,
                ),
                TimeUnit::Nanosecond => (col.as_primitive::<TimestampNanosecondType>().value(i), 1),
            };
            u64::try_from(v).unwrap() * scale
        }
        other => panic!("unexpected column type {other}"),
    }
}

/// A MAC address as the archive writes it: `00:11:22:33:44:55`.
pub(crate) fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|o| format!("{o:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs the Python script `script` with `args`; it must succeed. Its standard output.
pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Writes to `file` the DuckDB statements `flowvm sql ARCHIVE` prints for `archive`.
pub(crate) fn view_sql(archive: &str, file: &Path) {
    let sql = std::process::Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args(["sql", archive])
        .output()
        .unwrap();
    assert!(sql.status.success(), "{sql:?}");
    std::fs::write(file, &sql.stdout).unwrap();
}

/// A child process (a peer, or the collector binary) killed when dropped, so a failing test
/// never leaves it running.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ingressInterface (4 octets) and packetDeltaCount (8): a 12-octet record.
pub(crate) const INTERFACE_PACKETS: [(u16, u16); 2] = [(10, 4), (2, 8)];

/// A record of [`INTERFACE_PACKETS`].
pub(crate) fn interface_packets(interface: u32, packets: u64) -> Vec<u8> {
    let mut r = interface.to_be_bytes().to_vec();
    r.extend(packets.to_be_bytes());
    r
}

fn arrow_cast_display(col: &arrow_array::ArrayRef) -> Vec<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::{DataType, TimeUnit};
    let n = col.len();
    match col.data_type() {
        DataType::Utf8 => col
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap_or("∅").to_owned())
            .collect(),
        DataType::Dictionary(_, _) => {
            let d = col.as_dictionary::<UInt32Type>();
            let values = d.values().as_string::<i32>();
            d.keys()
                .iter()
                .map(|k| {
                    values
                        .value(usize::try_from(k.unwrap()).unwrap())
                        .to_owned()
                })
                .collect()
        }
        DataType::UInt8 => col
            .as_primitive::<UInt8Type>()
            .values()
            .iter()
            .map(ToString::to_string)
            .collect(),
        DataType::UInt16 => col
            .as_primitive::<UInt16Type>()
            .values()
            .iter()
            .map(ToString::to_string)
            .collect(),
        DataType::UInt32 => col
            .as_primitive::<UInt32Type>()
            .values()
            .iter()
            .map(ToString::to_string)
            .collect(),
        DataType::UInt64 => col
            .as_primitive::<UInt64Type>()
            .values()
            .iter()
            .map(ToString::to_string)
            .collect(),
        DataType::Timestamp(TimeUnit::Second, _) => col
            .as_primitive::<TimestampSecondType>()
            .values()
            .iter()
            .map(ToString::to_string)
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => col
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .iter()
            .map(ToString::to_string)
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => col
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .iter()
            .map(ToString::to_string)
            .collect(),
        other => vec![format!("<{other}>"); n],
    }
}

/// The body of an HTTP GET of `/metrics` at `addr` (headers included).
pub(crate) async fn http_get(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

/// A NetFlow v9 export packet: the header (`count`, sysUpTime 1000 ms, UNIX secs 1.7e9,
/// `sequence`, Source ID `source_id`), then the FlowSets (ID, content) as given, unpadded.
pub(crate) fn netflow9_packet(
    count: u16,
    sequence: u32,
    source_id: u32,
    flowsets: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut p = vec![0, 9];
    p.extend(count.to_be_bytes());
    p.extend(1_000_u32.to_be_bytes());
    p.extend(1_700_000_000_u32.to_be_bytes());
    p.extend(sequence.to_be_bytes());
    p.extend(source_id.to_be_bytes());
    for (id, content) in flowsets {
        p.extend(id.to_be_bytes());
        p.extend(u16::try_from(content.len() + 4).unwrap().to_be_bytes());
        p.extend_from_slice(content);
    }
    p
}
