//! TLS with mutual authentication (RFC 7011 §11): certificates made here with rcgen, exporters
//! through rustls and through `openssl s_client`, refusals counted by reason.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use flowvm::config::Config;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;

use crate::common::{
    KillOnDrop, Running, column, data_message, interface_packets, read_archive, scratch, template,
    template_message,
};

const INTERFACE_PACKETS: [(u16, u16); 2] = [(10, 4), (2, 8)];

/// A CA that signs certificates, its files written under a directory.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A leaf for `name`, for a server or a client, valid from 2019 until the start of `year`.
    fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose, year: i32) -> (String, String) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![purpose];
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The files of one run: the collector's, an exporter CA, good and bad client certificates.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let dir = scratch(name).join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        let servers = Ca::new("flowvm test server CA");
        let exporters = Ca::new("flowvm test exporter CA");
        let strangers = Ca::new("someone else's CA");
        write("server-ca.pem", &servers.cert.pem());
        write("exporter-ca.pem", &exporters.cert.pem());
        let (cert, key) = servers.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth, 2099);
        write("server.pem", &cert);
        write("server.key", &key);
        for (file, ca, year) in [
            ("router1", &exporters, 2099),
            ("stranger", &strangers, 2099),
            ("expired", &exporters, 2021),
        ] {
            let name = format!("{file}.example.net");
            let (cert, key) = ca.issue(&name, ExtendedKeyUsagePurpose::ClientAuth, year);
            write(&format!("{file}.pem"), &cert);
            write(&format!("{file}.key"), &key);
        }
        Self { dir }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A collector configuration with TLS and mutual authentication.
    pub(crate) fn config(&self) -> Config {
        Config {
            tls_cert: Some(self.path("server.pem")),
            tls_key: Some(self.path("server.key")),
            tls_client_ca: Some(self.path("exporter-ca.pem")),
            ..Config::default()
        }
    }

    /// Replaces the collector's certificate and key with ones from a new CA, whose
    /// certificate goes to `server-ca-2.pem`.
    fn rotate_server(&self) {
        let servers = Ca::new("flowvm test server CA 2");
        std::fs::write(self.path("server-ca-2.pem"), servers.cert.pem()).unwrap();
        let (cert, key) = servers.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth, 2099);
        std::fs::write(self.path("server.key"), key).unwrap();
        std::fs::write(self.path("server.pem"), cert).unwrap();
    }

    /// A rustls client trusting the CA file `ca`, presenting `client` (a file stem) if given.
    fn connector(&self, ca: &str, client: Option<&str>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.path(ca)).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(stem) => {
                let chain = CertificateDer::pem_file_iter(self.path(&format!("{stem}.pem")))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{stem}.key"))).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// A template and ten records for interfaces `first..first + 10`.
fn stream(first: u32, domain: u32) -> Vec<u8> {
    let def = template(256, &INTERFACE_PACKETS);
    let records: Vec<Vec<u8>> = (first..first + 10)
        .map(|i| interface_packets(i, u64::from(i)))
        .collect();
    [
        template_message(std::slice::from_ref(&def), domain),
        data_message(256, &records, 0, domain),
    ]
    .concat()
}

/// Connects over TLS trusting the first server CA and sends `bytes`; the handshake's result.
async fn send_tls(
    pki: &Pki,
    client: Option<&str>,
    addr: std::net::SocketAddr,
    bytes: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    send_tls_trusting(pki, "server-ca.pem", client, addr, bytes).await
}

/// [`send_tls`], trusting the CA file `ca`.
async fn send_tls_trusting(
    pki: &Pki,
    ca: &str,
    client: Option<&str>,
    addr: std::net::SocketAddr,
    bytes: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = pki.connector(ca, client).connect(name, tcp).await?;
    tls.write_all(bytes).await?;
    tls.flush().await?;
    Ok(tls)
}

fn interfaces(out: &Path) -> Vec<u32> {
    let mut got: Vec<u32> = column(&read_archive(out), "ingressInterface")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    got.sort_unstable();
    got
}

#[tokio::test]
async fn a_mutually_authenticated_exporter_is_archived_with_its_identity() {
    let pki = Pki::new("tls-identity");
    let out = pki.dir.with_file_name("flows");
    let c = Running::start(&out, pki.config()).await;
    let tls_addr = c.tls.unwrap();
    let tls = send_tls(&pki, Some("router1"), tls_addr, &stream(0, 1))
        .await
        .unwrap();
    // A plain TCP exporter beside it: archived, without an identity.
    let mut plain = tokio::net::TcpStream::connect(c.tcp).await.unwrap();
    plain.write_all(&stream(100, 2)).await.unwrap();
    c.until("both exporters' records", |k| k.records_decoded.get() == 20)
        .await;
    drop((tls, plain));
    let k = c.stop().await;
    assert_eq!(k.tls_sessions.get(), 1, "{}", k.render());
    let batches = read_archive(&out);
    let authenticated: Vec<_> = batches
        .iter()
        .filter(|b| b.column_by_name("exporter_identity").is_some())
        .cloned()
        .collect();
    assert_eq!(
        column(&authenticated, "exporter_identity"),
        vec!["router1.example.net"; 10]
    );
    let mut from_tls: Vec<u32> = column(&authenticated, "ingressInterface")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    from_tls.sort_unstable();
    assert_eq!(from_tls, (0..10).collect::<Vec<_>>());
    assert_eq!(
        interfaces(&out),
        (0..10).chain(100..110).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn openssl_s_client_as_exporter_is_archived_in_full() {
    let pki = Pki::new("tls-openssl");
    let out = pki.dir.with_file_name("flows");
    let c = Running::start(&out, pki.config()).await;
    let addr = c.tls.unwrap();
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &addr.to_string()])
        .arg("-cert")
        .arg(pki.path("router1.pem"))
        .arg("-key")
        .arg(pki.path("router1.key"))
        .arg("-CAfile")
        .arg(pki.path("server-ca.pem"))
        .args(["-verify_return_error", "-servername", "localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is installed by the test command");
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(&[stream(0, 1), stream(10, 2)].concat())
        .unwrap();
    let child = KillOnDrop(child);
    c.until("openssl's records", |k| k.records_decoded.get() == 20)
        .await;
    drop(child);
    c.stop().await;
    assert_eq!(interfaces(&out), (0..20).collect::<Vec<_>>());
    let identities = column(&read_archive(&out), "exporter_identity");
    assert_eq!(identities, vec!["router1.example.net"; 20]);
}

/// Reason label → count, from the metrics page's text.
fn failures(k: &flowvm::telemetry::Counters, reason: &str) -> u64 {
    let line = format!("flowvm_tls_handshakes_failed_total{{reason=\"{reason}\"}} ");
    k.render()
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason_and_archive_nothing() {
    let pki = Pki::new("tls-refused");
    let out = pki.dir.with_file_name("flows");
    let config = Config {
        tcp_header_timeout: 2,
        ..pki.config()
    };
    let c = Running::start(&out, config).await;
    let addr = c.tls.unwrap();
    // Opens TCP and never starts the handshake: closed at the deadline.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A good exporter keeps sending meanwhile.
    let good = send_tls(&pki, Some("router1"), addr, &stream(0, 1))
        .await
        .unwrap();
    for (client, domain) in [(None, 2), (Some("stranger"), 3), (Some("expired"), 4)] {
        // TLS 1.3: the client learns of the refusal after its first write, if at all.
        if let Ok(mut tls) = send_tls(&pki, client, addr, &stream(100, domain)).await {
            let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut [0_u8; 16]).await;
        }
    }
    // Plain IPFIX sent to the TLS port.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(&stream(200, 5)).await.unwrap();
    // openssl offering TLS 1.1 only (off this thread: the collector runs on it).
    let old = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args(["s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
            .args(["-connect", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    });
    assert!(!old.await.unwrap().success());
    c.until("every refusal", |k| {
        [
            "no_certificate",
            "unknown_ca",
            "expired",
            "not_tls",
            "protocol_version",
            "timeout",
        ]
        .iter()
        .all(|r| failures(k, r) == 1)
    })
    .await;
    let more = send_tls(&pki, Some("router1"), addr, &stream(10, 6))
        .await
        .unwrap();
    c.until("the good exporter's records", |k| {
        k.records_decoded.get() == 20
    })
    .await;
    drop((silent, good, more, plain));
    let k = c.stop().await;
    assert_eq!(k.tls_sessions.get(), 2, "{}", k.render());
    assert_eq!(interfaces(&out), (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn changed_files_are_taken_without_dropping_sessions_and_a_bad_one_is_refused() {
    let pki = Pki::new("tls-reload");
    let out = pki.dir.with_file_name("flows");
    let c = Running::start(&out, pki.config()).await;
    let addr = c.tls.unwrap();
    let mut before = send_tls(&pki, Some("router1"), addr, &stream(0, 1))
        .await
        .unwrap();
    // A file that is no certificate: logged, the configuration in use kept.
    std::fs::write(pki.path("server.pem"), "not a certificate\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let kept = send_tls(&pki, Some("router1"), addr, &stream(10, 2))
        .await
        .unwrap();
    // A certificate from a new CA: taken at the next check (every 5 s).
    pki.rotate_server();
    let mut after = None;
    for _ in 0..150 {
        let sent = send_tls_trusting(
            &pki,
            "server-ca-2.pem",
            Some("router1"),
            addr,
            &stream(30, 3),
        )
        .await;
        if let Ok(tls) = sent {
            after = Some(tls);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = after.expect("the new certificate is served within 15 s");
    // The session opened before both changes still delivers.
    let records: Vec<Vec<u8>> = (20..30).map(|i| interface_packets(i, 1)).collect();
    before
        .write_all(&data_message(256, &records, 10, 1))
        .await
        .unwrap();
    before.flush().await.unwrap();
    c.until("every session's records", |k| k.records_decoded.get() == 40)
        .await;
    drop((before, kept, after));
    c.stop().await;
    assert_eq!(interfaces(&out), (0..40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_the_collector_goes_on() {
    use std::io::BufRead as _;
    let pki = Pki::new("tls-sighup");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args(["collect", "--listen", "127.0.0.1:0", "--metrics", "off"])
        .args(["--tls-listen", "127.0.0.1:0", "--out"])
        .arg(pki.dir.with_file_name("flows"))
        .arg("--tls-cert")
        .arg(pki.path("server.pem"))
        .arg("--tls-key")
        .arg(pki.path("server.key"))
        .arg("--tls-client-ca")
        .arg(pki.path("exporter-ca.pem"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let child = KillOnDrop(child);
    let addr: std::net::SocketAddr = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening tls ")?.parse().ok())
        .expect("the banner names the TLS listener");
    pki.rotate_server();
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Bounded: the log line within 20 s, or the collector's end.
    let reloaded = std::iter::from_fn(|| rx.recv_timeout(std::time::Duration::from_secs(20)).ok())
        .any(|l| l.contains("Reloaded the TLS certificate"));
    assert!(reloaded, "no reload logged after SIGHUP");
    // Alive, and serving the new certificate.
    send_tls_trusting(
        &pki,
        "server-ca-2.pem",
        Some("router1"),
        addr,
        &stream(0, 1),
    )
    .await
    .unwrap();
    drop(child);
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_with_one_line() {
    let pki = Pki::new("tls-files");
    let missing = pki.path("nowhere.pem");
    let text = pki.path("not-pem.txt");
    std::fs::File::create(&text)
        .unwrap()
        .write_all(b"hello\n")
        .unwrap();
    for (cert, key, expect) in [
        (missing.clone(), pki.path("server.key"), "cannot read"),
        (
            text.clone(),
            pki.path("server.key"),
            "holds no PEM certificate",
        ),
        (pki.path("server.pem"), text, "holds no PEM private key"),
        (
            pki.path("server.pem"),
            pki.path("router1.key"),
            "the private key does not match the certificate",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowvm"))
            .args(["collect", "--listen", "127.0.0.1:0", "--metrics", "off"])
            .args(["--tls-listen", "127.0.0.1:0", "--out"])
            .arg(pki.dir.join("flows"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expect), "{expect}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_that_cannot_verify_the_collector_says_so_in_one_line() {
    let pki = Pki::new("tls-export-refused");
    let out = pki.dir.with_file_name("flows");
    let c = Running::start(&out, pki.config()).await;
    let addr = c.tls.unwrap().to_string();
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcap/mixed.pcap");
    // The exporter trusts the wrong CA: the collector's certificate does not verify.
    let wrong_ca = pki.path("exporter-ca.pem");
    let (cert, key) = (pki.path("router1.pem"), pki.path("router1.key"));
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_flowvm"))
            .arg("export")
            .arg("--pcap")
            .arg(&pcap)
            .args(["--collector", &addr, "--transport", "tls"])
            .args(["--tls-server-name", "localhost", "--tls-ca"])
            .arg(&wrong_ca)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot reach the collector"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("certificate"), "{stderr}");
    // Every record counted lost, every failed send counted.
    assert!(stdout.contains("records lost"), "{stdout}");
    assert!(!stdout.contains(" 0 records lost"), "{stdout}");
    assert!(!stdout.contains(", 0 send errors"), "{stdout}");
    let k = c.stop().await;
    assert_eq!(k.records_decoded.get(), 0);
    assert_eq!(k.tls_sessions.get(), 0);
}

#[tokio::test]
async fn the_tls_listener_shares_the_per_address_connection_bound() {
    let pki = Pki::new("tls-bounds");
    let out = pki.dir.with_file_name("flows");
    let config = Config {
        max_connections_per_exporter: 2,
        ..pki.config()
    };
    let c = Running::start(&out, config).await;
    // Two stalled connections from 127.0.0.1, one on each listener, hold the address's slots.
    let _plain = tokio::net::TcpStream::connect(c.tcp).await.unwrap();
    let _stalled = tokio::net::TcpStream::connect(c.tls.unwrap())
        .await
        .unwrap();
    c.until("both connections accepted", |k| {
        k.connections_accepted.get() == 2
    })
    .await;
    // A third, over TLS, is refused before any handshake.
    let refused = send_tls(&pki, Some("router1"), c.tls.unwrap(), &stream(0, 1)).await;
    if let Ok(mut tls) = refused {
        let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut [0_u8; 16]).await;
    }
    c.until("the refusal", |k| {
        k.dropped(flowvm::telemetry::DropReason::ExporterConnectionLimit) == 1
    })
    .await;
    let k = c.stop().await;
    assert_eq!(k.tls_sessions.get(), 0);
    assert_eq!(k.records_decoded.get(), 0);
}
