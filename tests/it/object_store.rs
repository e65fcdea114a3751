//! Object storage over the real S3 protocol on loopback: `s3s-fs` (installed by the README's
//! test command) serves a bucket with SigV4 from a directory; `flowvm collect --out s3://…`
//! processes spool and ship into it. Two collectors share one prefix; the store goes away and
//! comes back; a collector is killed with files waiting; wrong credentials stop the start.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;
use crate::export_to_collect::{archived_rows, export_to};

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::flows::{Packet, S, pcap, read_pcap, reference};
use common::process::{Collector, banner, command, metric, send, wait_for};
use common::{KillOnDrop, data_message, read_archive, scratch, template, template_message, uint};

const ACCESS: &str = "flowvm-test";
const SECRET: &str = "flowvm-test-secret";
/// The data set's location, as users give it.
const OUT: &str = "s3://flows/lake";

/// An `s3s-fs` server on a loopback port, its objects plain files under `root/BUCKET/KEY`.
struct S3 {
    root: PathBuf,
    port: u16,
    child: Option<KillOnDrop>,
}

/// `s3s-fs` on the PATH, or where `cargo install` puts it.
fn s3s_fs() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(home.map(|h| h.join("bin")))
        .map(|dir| dir.join("s3s-fs"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("s3s-fs not found: run `sh tests/setup.sh` (the README's test command)")
        })
}

impl S3 {
    /// Starts a server with bucket `flows` under `root`.
    fn start(root: &Path) -> Self {
        std::fs::create_dir_all(root.join("flows")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s3 = Self {
            root: root.to_owned(),
            port,
            child: None,
        };
        s3.up();
        s3
    }

    /// (Re)starts the server on its port; returns once it accepts connections (10 s at most).
    fn up(&mut self) {
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(KillOnDrop(child));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        for _ in 0..200 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("s3s-fs did not start on {addr}");
    }

    /// Stops the server (by its PID).
    fn down(&mut self) {
        self.child = None;
    }

    /// The standard variables every S3 tool reads, pointing at this server.
    fn env<'a>(&self, command: &'a mut Command, secret: &str) -> &'a mut Command {
        command
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
    }

    /// The Parquet objects under `s3://flows/lake`, by key.
    fn objects(&self) -> Vec<(String, PathBuf)> {
        let base = self.root.join("flows").join("lake");
        let mut found = Vec::new();
        let mut dirs = vec![base.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    let key = path.strip_prefix(&base).unwrap().display().to_string();
                    found.push((key, path));
                }
            }
        }
        found.sort();
        found
    }

    /// Every row of every object, read with the parquet crate.
    fn rows(&self) -> Vec<arrow_array::RecordBatch> {
        let copy = self.root.with_extension("read");
        let _ = std::fs::remove_dir_all(&copy);
        for (key, path) in self.objects() {
            let to = copy.join(&key);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(path, to).unwrap();
        }
        read_archive(&copy)
    }
}

/// `flowvm collect --out s3://flows/lake` with its spool in `spool` and id `id`, files rotated
/// every second.
fn collect(s3: &S3, spool: &Path, id: &str, extra: &[&str]) -> Collector {
    let mut args = vec!["--spool", spool.to_str().unwrap(), "--collector-id", id];
    args.extend(extra);
    let mut command = command(Path::new(OUT), "1", &args);
    s3.env(&mut command, SECRET);
    banner(command.spawn().unwrap())
}

fn value(c: &Collector, name: &str) -> u64 {
    metric(c.metrics, name).unwrap_or_else(|| panic!("{name} not on the metrics page"))
}

/// SIGTERM, and the exit status (the collector ships what it can first).
fn terminate(c: Collector) -> std::process::ExitStatus {
    let mut child = c.child;
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..600 {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the collector did not stop within 60 s of SIGTERM");
}

/// The ids of the 8-octet records of every object (the TCP load's), with their counts.
fn ids(s3: &S3) -> HashMap<u64, u32> {
    let mut seen = HashMap::new();
    for batch in s3.rows() {
        let column = batch.column_by_name("octetDeltaCount").unwrap();
        for i in 0..batch.num_rows() {
            *seen.entry(uint(column.as_ref(), i)).or_insert(0) += 1;
        }
    }
    seen
}

/// Checks that every id below `sent` is there exactly once.
fn exactly_once(seen: &HashMap<u64, u32>, sent: u64) {
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "records archived twice: {twice:?}");
    let missing: Vec<u64> = (0..sent)
        .filter(|i| !seen.contains_key(i))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "records lost (of {sent}): {missing:?}");
    assert_eq!(seen.len() as u64, sent);
}

#[test]
fn two_collectors_share_one_bucket_and_every_flow_arrives_exactly_once() {
    let dir = scratch("s3-two-collectors");
    let s3 = S3::start(&dir.join("s3"));
    let a = collect(&s3, &dir.join("spool-a"), "edge-a", &["--no-tcp"]);
    let b = collect(&s3, &dir.join("spool-b"), "edge-b", &["--no-tcp"]);
    let mut expected = Vec::new();
    for (c, name) in [(&a, "mixed.pcap"), (&b, "long.pcap")] {
        let path = pcap(name);
        let flows = reference(&read_pcap(&path), 10 * S, 30 * S, Packet::l3_l4);
        export_to(&path, &c.udp.unwrap().to_string());
        let n = flows.len() as u64;
        wait_for(c.metrics, "flowvm_records_decoded_total ", |d| d == n);
        expected.extend(flows);
    }
    let uploads = shipped(&a) + shipped(&b);
    assert!(terminate(a).success());
    assert!(terminate(b).success());
    // One object per file shipped (a key written twice would leave fewer), named by each
    // collector's id; both spools empty.
    let objects = s3.objects();
    assert_eq!(objects.len() as u64, uploads, "{objects:?}");
    for id in ["edge-a", "edge-b"] {
        assert!(objects.iter().any(|(k, _)| k.contains(&format!("-{id}-"))));
    }
    for spool in ["spool-a", "spool-b"] {
        let left: Vec<_> = walk(&dir.join(spool));
        assert!(left.is_empty(), "{left:?}");
    }
    expected.sort();
    let got = archived_rows(&s3.rows());
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    // DuckDB (httpfs) and pyarrow (its S3 file system) read the bucket as one data set.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/readers/check_bucket.py");
    let endpoint = format!("127.0.0.1:{}", s3.port);
    let view = dir.join("flows.sql");
    common::view_sql("s3://flows/lake", &view);
    let stdout = common::python(
        script,
        &[
            &endpoint,
            "flows/lake",
            ACCESS,
            SECRET,
            view.to_str().unwrap(),
        ],
    );
    let reference: Vec<String> = expected.iter().map(line).collect();
    for reader in ["duckdb", "pyarrow"] {
        let mut rows: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(reader)?.strip_prefix('\t'))
            .collect();
        rows.sort_unstable();
        let mut want: Vec<&str> = reference.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(rows, want, "{reader} disagrees with the reference");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until every file `c` wrote is completed (1 s windows) and shipped while it runs: the
/// spool empties, each file uploaded once, and no more files complete over a window that
/// ends meanwhile. Returns the files.
fn shipped(c: &Collector) -> u64 {
    wait_for(c.metrics, "flowvm_files_written_total ", |n| n > 0);
    let mut written = 0;
    for _ in 0..10 {
        wait_for(c.metrics, "flowvm_spool_bytes ", |n| n == 0);
        wait_for(c.metrics, "flowvm_upload_lag_seconds ", |n| n == 0);
        let now = value(c, "flowvm_files_written_total ");
        wait_for(c.metrics, "flowvm_uploads_total ", |n| n == now);
        if now == written {
            break;
        }
        written = now;
        // A window open at the last record ends within a second and its file completes.
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert_eq!(value(c, "flowvm_uploads_already_present_total "), 0);
    assert_eq!(
        value(c, "flowvm_upload_errors_total{reason=\"conflict\"} "),
        0
    );
    written
}

/// A reference record as check_bucket.py prints a row.
fn line(r: &common::flows::Record<common::flows::Key>) -> String {
    let (src, dst, protocol, sport, dport) = &r.key;
    [
        src.clone(),
        dst.clone(),
        protocol.to_string(),
        sport.to_string(),
        dport.to_string(),
        r.flags.to_string(),
        r.packets.to_string(),
        r.octets.to_string(),
        r.start.to_string(),
        r.end.to_string(),
        r.reason.to_string(),
    ]
    .join("\t")
}

/// Every file under `dir` (the lock file aside).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.ends_with(".flowvm.lock") {
                found.push(path);
            }
        }
    }
    found
}

/// Stops `c` with SIGTERM, which must succeed and leave its spool empty.
fn stop_shipped(c: Collector, spool: &Path) {
    assert!(terminate(c).success());
    let left = walk(spool);
    assert!(left.is_empty(), "{left:?}");
}

/// Runs the TCP load (ids from `next`) in a thread until `stop`.
fn load(
    c: &Collector,
    next: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let (next, stop, tcp) = (Arc::clone(next), Arc::clone(stop), c.tcp.unwrap());
    std::thread::spawn(move || send(tcp, &next, &stop))
}

#[test]
fn a_store_that_goes_away_loses_nothing_and_the_spool_bound_holds() {
    let dir = scratch("s3-outage");
    let mut s3 = S3::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let bound: u64 = 48 * 1024;
    let c = collect(
        &s3,
        &spool,
        "edge-a",
        &["--no-udp", "--spool-max-bytes", &bound.to_string()],
    );
    let (next, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sender = load(&c, &next, &stop);
    wait_for(c.metrics, "flowvm_uploads_total ", |n| n >= 1);
    s3.down();
    // Uploads fail and are counted; the spool fills to its bound and the archive refuses rows
    // (spool_full): TCP waits meanwhile.
    wait_for(
        c.metrics,
        "flowvm_upload_errors_total{reason=\"store\"} ",
        |n| n >= 1,
    );
    wait_for(
        c.metrics,
        "flowvm_archive_errors_total{reason=\"spool_full\"} ",
        |n| n >= 1,
    );
    let mut largest = 0;
    for _ in 0..20 {
        let completed: u64 = walk(&spool)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .map(|p| {
                let size = std::fs::metadata(p).map_or(0, |m| m.len());
                largest = largest.max(size);
                size
            })
            .sum();
        // Completed files wait within the bound, plus the files open when it was reached
        // (one per schema: here one).
        assert!(
            completed <= bound + largest,
            "{completed} octets waiting, bound {bound}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lag = value(&c, "flowvm_upload_lag_seconds ");
    assert!(lag >= 1, "lag {lag}");
    s3.up();
    // Back: uploads resume, the archive takes rows again, the load goes on.
    let resumed = next.load(Ordering::SeqCst);
    wait_for(c.metrics, "flowvm_spool_bytes ", |n| n < bound);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        next.load(Ordering::SeqCst) > resumed,
        "the load did not resume"
    );
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let sent = next.load(Ordering::SeqCst);
    wait_for(c.metrics, "flowvm_records_decoded_total ", |n| n == sent);
    stop_shipped(c, &spool);
    exactly_once(&ids(&s3), sent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_with_files_waiting_then_a_restart_ships_the_spool_exactly_once() {
    let dir = scratch("s3-kill");
    let mut s3 = S3::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let c = collect(&s3, &spool, "edge-a", &["--no-udp"]);
    let (next, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sender = load(&c, &next, &stop);
    wait_for(c.metrics, "flowvm_uploads_total ", |n| n >= 1);
    // The store goes away: files wait in the spool.
    s3.down();
    wait_for(c.metrics, "flowvm_spool_bytes ", |n| n > 0);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let sent = next.load(Ordering::SeqCst);
    wait_for(c.metrics, "flowvm_records_decoded_total ", |n| n == sent);
    // Decoded is synced within 0.5 s; then kill -9 while files wait; the store comes back.
    std::thread::sleep(Duration::from_secs(1));
    let mut child = c.child;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    s3.up();
    // An upload whose removal from the spool the kill cut short: the object is in the store
    // and the file still in the spool. Made so here, by shipping one file with the same
    // client code the collector uses.
    let waiting: Vec<PathBuf> = walk(&spool)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!waiting.is_empty());
    let one = &waiting[0];
    let relative = one
        .strip_prefix(&spool)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{}", s3.port))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("flows")
        .with_access_key_id(ACCESS)
        .with_secret_access_key(SECRET);
    let store = flowvm::sink::store::Store::s3_from(store, "lake").unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(store.ship(one, &relative))
        .unwrap();
    // The restart recovers the journals, ships the spool, and recognises the object there.
    let c = collect(&s3, &spool, "edge-a", &["--no-udp"]);
    wait_for(c.metrics, "flowvm_uploads_already_present_total ", |n| {
        n == 1
    });
    wait_for(c.metrics, "flowvm_spool_bytes ", |n| n == 0);
    stop_shipped(c, &spool);
    exactly_once(&ids(&s3), sent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_credentials_stop_the_start_with_a_clear_error() {
    let dir = scratch("s3-credentials");
    let s3 = S3::start(&dir.join("s3"));
    let mut command = command(
        Path::new(OUT),
        "1",
        &["--spool", dir.join("spool").to_str().unwrap()],
    );
    s3.env(&mut command, "not-the-secret");
    let output = command.stderr(Stdio::piped()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot write to s3://flows/lake (denied)"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening"), "it listened: {stdout}");
    assert!(s3.objects().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn collectors_sharing_a_udp_port_with_reuse_port_fill_one_bucket_once() {
    let dir = scratch("s3-reuse-port");
    let s3 = S3::start(&dir.join("s3"));
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let listen = port.to_string();
    let shared = ["--no-tcp", "--reuse-port", "--listen", &listen];
    let a = collect(&s3, &dir.join("spool-a"), "host-1", &shared);
    let b = collect(&s3, &dir.join("spool-b"), "host-2", &shared);
    // 16 exporters (a source port each): the kernel's hash gives each to one collector.
    let exporters = 16_u64;
    for e in 0..exporters {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .send_to(&template_message(&[template(256, &[(1, 8)])], 1), port)
            .unwrap();
        let records: Vec<Vec<u8>> = (e * 100..(e + 1) * 100)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        socket
            .send_to(&data_message(256, &records, 0, 1), port)
            .unwrap();
    }
    let decoded = |c: &Collector| metric(c.metrics, "flowvm_records_decoded_total ");
    for _ in 0..300 {
        if decoded(&a).unwrap_or(0) + decoded(&b).unwrap_or(0) == exporters * 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (from_a, from_b) = (decoded(&a).unwrap(), decoded(&b).unwrap());
    assert_eq!(from_a + from_b, exporters * 100);
    assert!(from_a > 0 && from_b > 0, "one collector got every exporter");
    shipped(&a);
    shipped(&b);
    assert!(terminate(a).success());
    assert!(terminate(b).success());
    exactly_once(&ids(&s3), exporters * 100);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decode_writes_into_the_bucket_what_it_writes_into_a_directory() {
    let dir = scratch("s3-decode");
    let s3 = S3::start(&dir.join("s3"));
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/captures");
    let inputs = [
        captures.join("netflow-parser-softflowd-netflow9.pcap"),
        captures.join("ipfixrw-nprobe-ipfix.pcap"),
    ];
    let local = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("decode")
        .arg("--out")
        .arg(dir.join("local"))
        .args(&inputs)
        .output()
        .unwrap();
    assert!(local.status.success(), "{local:?}");
    let mut decode = Command::new(env!("CARGO_BIN_EXE_flowvm"));
    decode
        .args([
            "decode",
            "--out",
            OUT,
            "--collector-id",
            "offline",
            "--spool",
        ])
        .arg(dir.join("spool"))
        .args(&inputs);
    let remote = s3.env(&mut decode, SECRET).output().unwrap();
    let stdout = String::from_utf8_lossy(&remote.stdout);
    assert!(remote.status.success(), "{remote:?}");
    assert!(stdout.contains("uploaded)"), "{stdout}");
    assert!(walk(&dir.join("spool")).is_empty());
    assert!(s3.objects().iter().all(|(k, _)| k.contains("-offline-")));
    assert_eq!(
        rows_text(&s3.rows()),
        rows_text(&read_archive(&dir.join("local")))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every row of `batches` as text (its columns by name), sorted: two archives compare equal
/// when they hold the same rows, however they are split into files.
fn rows_text(batches: &[arrow_array::RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let mut names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        names.sort_unstable();
        let columns: Vec<Vec<String>> = names
            .iter()
            .map(|n| common::column(std::slice::from_ref(batch), n))
            .collect();
        for i in 0..batch.num_rows() {
            let row: Vec<String> = names
                .iter()
                .zip(&columns)
                .map(|(n, c)| format!("{n}={}", c[i]))
                .collect();
            rows.push(row.join(","));
        }
    }
    rows.sort();
    rows
}

/// A TLS front for the S3 server, as a load balancer (or a store serving HTTPS itself) would
/// be: TLS with the test PKI's `localhost` certificate on a loopback port, the plaintext
/// relayed to the server. Stops with its runtime when dropped.
struct TlsFront {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    fn start(pki: &crate::collect_tls::Pki, upstream: u16) -> Self {
        let config = flowvm::collector::tls::load(&flowvm::collector::tls::TlsFiles {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            client_ca: None,
        })
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut plain) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self {
            port,
            _runtime: runtime,
        }
    }
}

#[test]
fn https_to_a_store_with_a_private_ca_named_in_ssl_cert_file() {
    let dir = scratch("s3-https");
    let s3 = S3::start(&dir.join("s3"));
    let pki = crate::collect_tls::Pki::new("s3-https-pki");
    let front = TlsFront::start(&pki, s3.port);
    let capture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/captures/netflow-parser-softflowd-netflow9.pcap");
    let decode = |trust: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowvm"));
        command
            .args(["decode", "--out", OUT, "--collector-id", "tls", "--spool"])
            .arg(dir.join("spool"))
            .arg(&capture);
        s3.env(&mut command, SECRET)
            .env_remove("AWS_ALLOW_HTTP")
            .env(
                "AWS_ENDPOINT_URL",
                format!("https://localhost:{}", front.port),
            );
        if let Some(ca) = trust {
            command.env("SSL_CERT_FILE", ca);
        }
        command.output().unwrap()
    };
    // The store's certificate is not trusted: a clear error before anything is decoded.
    let refused = decode(Some(&pki.path("exporter-ca.pem")));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot write to s3://flows/lake"),
        "{stderr}"
    );
    // Its CA named the standard way (SSL_CERT_FILE): shipped over TLS.
    let shipped = decode(Some(&pki.path("server-ca.pem")));
    assert!(shipped.status.success(), "{shipped:?}");
    let objects = s3.objects();
    assert!(!objects.is_empty());
    assert!(objects.iter().all(|(k, _)| k.contains("-tls-")));
    assert!(walk(&dir.join("spool")).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
