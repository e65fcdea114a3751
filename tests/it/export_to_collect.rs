//! The round trip: pcap -> `flowvm export` -> UDP or TCP on loopback -> the collector ->
//! Parquet, compared field by field with the flows an independent reference computes from the
//! same pcap: its own frame parser and a literal simulation of flowprobe's timers
//! (`common::flows`).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use common::flows::{Key, Packet, Record, S, pcap, read_pcap, reference};
use common::{Running, address, read_archive, scratch, uint};
use flowvm::config::Config;

/// One record as both sides see it, under `record l3,l4`.
pub(crate) type Row = Record<Key>;

// ---- The archive side. ----

pub(crate) fn archived_rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let (src, dst) = if b.column_by_name("sourceIPv4Address").is_some() {
            ("sourceIPv4Address", "destinationIPv4Address")
        } else {
            ("sourceIPv6Address", "destinationIPv6Address")
        };
        let col = |name: &str| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let text =
            |name: &str, i: usize| address(b, name, i).unwrap_or_else(|| panic!("no {name}"));
        let n = |name: &str, i: usize| uint(col(name).as_ref(), i);
        for i in 0..b.num_rows() {
            rows.push(Record {
                key: (
                    text(src, i),
                    text(dst, i),
                    u8::try_from(n("protocolIdentifier", i)).unwrap(),
                    u16::try_from(n("sourceTransportPort", i)).unwrap(),
                    u16::try_from(n("destinationTransportPort", i)).unwrap(),
                ),
                flags: u16::try_from(n("tcpControlBits", i)).unwrap(),
                packets: n("packetDeltaCount", i),
                octets: n("octetDeltaCount", i),
                start: n("flowStartNanoseconds", i),
                end: n("flowEndNanoseconds", i),
                reason: u8::try_from(n("flowEndReason", i)).unwrap(),
            });
        }
    }
    rows.sort();
    rows
}

/// Runs the real binary; returns its standard output (the summary).
pub(crate) fn export(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("export")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "flowvm export {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A UDP relay between exporter and collector that notes every datagram's length.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<usize>>,
}

impl Relay {
    fn start(collector: SocketAddr) -> Self {
        let socket = common::loopback_udp_receiver();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut sizes = Vec::new();
            let mut buf = vec![0; 65_535];
            // Until told to stop and then quiet for one timeout: bounded by the exporter's run.
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        sizes.push(n);
                        socket.send_to(&buf[..n], collector).unwrap();
                    }
                    Err(_) if flag.load(Ordering::Relaxed) => return sizes,
                    Err(_) => {}
                }
            }
        });
        Self { addr, stop, thread }
    }

    fn finish(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// `flowvm export` of the pcap at `path` to `collector` over UDP from a port the kernel picks,
/// with the timers the reference uses (active 10 s, passive 30 s); its summary.
pub(crate) fn export_to(path: &std::path::Path, collector: &str) -> String {
    export(&[
        "--pcap",
        path.to_str().unwrap(),
        "--collector",
        collector,
        "--src-port",
        "0",
        "--active",
        "10",
        "--passive",
        "30",
    ])
}

fn summary_number(summary: &str, after: &str) -> u64 {
    let at = summary
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} not in {summary}"))
        + after.len();
    summary[at..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .unwrap()
        .parse()
        .unwrap()
}

/// Exports `pcaps` with `extra` options to a fresh collector and checks the archive against
/// the reference, field by field, and that the collector saw no loss. Returns the summaries
/// and the UDP datagram sizes.
async fn round_trip(
    name: &str,
    pcaps: &[&str],
    extra: &[&str],
) -> (Vec<String>, Vec<usize>, Vec<u32>) {
    round_trip_to(&scratch(name), Config::default(), pcaps, extra).await
}

/// [`round_trip`] into a collector with `config`, archiving into `out`; with
/// `--transport=tls` in `extra`, to its TLS listener.
async fn round_trip_to(
    out: &std::path::Path,
    config: Config,
    pcaps: &[&str],
    extra: &[&str],
) -> (Vec<String>, Vec<usize>, Vec<u32>) {
    let out = out.to_path_buf();
    let collector = Running::start(&out, config).await;
    let tls = extra.contains(&"--transport=tls");
    let tcp = tls || extra.contains(&"tcp");
    let mut expected = Vec::new();
    let mut summaries = Vec::new();
    let mut sizes = Vec::new();
    for p in pcaps {
        // One relay per run, so each run is its own exporter (address and port) to the
        // collector, as separate processes are.
        let relay = (!tcp).then(|| Relay::start(collector.udp));
        let stream = if tls {
            collector.tls.unwrap()
        } else {
            collector.tcp
        };
        let target = relay.as_ref().map_or(stream, |r| r.addr).to_string();
        let path = pcap(p);
        expected.extend(reference(&read_pcap(&path), 10 * S, 30 * S, Packet::l3_l4));
        let mut args = vec![
            "--pcap",
            path.to_str().unwrap(),
            "--collector",
            &target,
            "--src-port",
            "0",
            "--active",
            "10",
            "--passive",
            "30",
        ];
        args.extend(
            extra
                .iter()
                .map(|a| if *a == "tcp" { "--transport=tcp" } else { a }),
        );
        let args: Vec<&str> = args.iter().map(|s| &**s).collect();
        summaries.push(
            tokio::task::spawn_blocking({
                let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
                move || export(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap(),
        );
        sizes.extend(relay.map(Relay::finish).unwrap_or_default());
    }
    expected.sort();
    let n = expected.len() as u64;
    collector
        .until("every record decoded", |c| c.records_decoded.get() >= n)
        .await;
    let counters = collector.stop().await;
    assert_eq!(counters.records_lost.get(), 0, "{}", counters.render());
    assert_eq!(counters.messages_reordered.get(), 0);
    assert_eq!(counters.messages_dropped.get(), 0);
    let batches = read_archive(&out);
    let domains = batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name("observation_domain_id").unwrap();
            let col = col.as_primitive::<UInt32Type>();
            (0..col.len()).map(|i| col.value(i)).collect::<Vec<_>>()
        })
        .collect();
    let got = archived_rows(&batches);
    assert_eq!(got.len(), expected.len());
    if tls {
        let identities = common::column(&batches, "exporter_identity");
        assert_eq!(identities, vec!["router1.example.net"; got.len()]);
    }
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    let _ = std::fs::remove_dir_all(&out);
    (summaries, sizes, domains)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_round_trip_equals_the_reference() {
    let (summaries, _, domains) =
        round_trip("rt-udp", &["mixed.pcap", "long.pcap", "many.pcap"], &[]).await;
    // mixed.pcap: 28 frames, one ARP frame (non-IP), one cut and one invalid.
    assert_eq!(summary_number(&summaries[0], "packets read "), 28);
    assert_eq!(summary_number(&summaries[0], "truncated "), 1);
    assert_eq!(summary_number(&summaries[0], "malformed "), 1);
    assert_eq!(summary_number(&summaries[0], "non-IP "), 1);
    // long.pcap spans several active intervals and an idle gap: more records than flows.
    assert!(summary_number(&summaries[1], "records ") > summary_number(&summaries[1], "flows "));
    assert_eq!(summary_number(&summaries[2], "flows "), 2_000);
    assert!(
        domains.iter().all(|d| *d == 1),
        "the default Observation Domain is 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_round_trip_equals_the_reference() {
    let (summaries, _, domains) = round_trip(
        "rt-tcp",
        &["mixed.pcap", "long.pcap"],
        &["tcp", "--src", "127.0.0.1", "--domain-id", "9"],
    )
    .await;
    assert!(!domains.is_empty() && domains.iter().all(|d| *d == 9));
    // Over TCP the templates go once, at the start of the connection.
    for s in &summaries {
        assert_eq!(summary_number(s, "with templates"), 0, "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_with_a_client_certificate_equals_the_reference() {
    let pki = crate::collect_tls::Pki::new("rt-tls");
    let out = pki.dir.with_file_name("flows");
    let (ca, cert, key) = (
        pki.path("server-ca.pem"),
        pki.path("router1.pem"),
        pki.path("router1.key"),
    );
    let (summaries, _, _) = round_trip_to(
        &out,
        pki.config(),
        &["mixed.pcap", "long.pcap"],
        &[
            "--transport=tls",
            "--tls-server-name",
            "localhost",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    // Over TLS, as over TCP, the templates go once, at the start of the session.
    for s in &summaries {
        assert_eq!(summary_number(s, "with templates"), 0, "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcapng_gives_the_same_flows_as_pcap() {
    // The reference reads the pcap; the exporter reads the pcapng of the same frames.
    let out = scratch("rt-pcapng");
    let collector = Running::start(&out, Config::default()).await;
    let target = collector.udp.to_string();
    let path = pcap("mixed.pcapng");
    let summary = tokio::task::spawn_blocking(move || export_to(&path, &target))
        .await
        .unwrap();
    let expected = reference(
        &read_pcap(&pcap("mixed.pcap")),
        10 * S,
        30 * S,
        Packet::l3_l4,
    );
    let n = expected.len() as u64;
    collector
        .until("records", |c| c.records_decoded.get() >= n)
        .await;
    collector.stop().await;
    assert_eq!(archived_rows(&read_archive(&out)), expected, "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mtu_keeps_messages_within_it_and_loses_nothing() {
    for mtu in [68_usize, 512, 1450] {
        let mtu_arg = mtu.to_string();
        let (summaries, sizes, _) = round_trip(
            &format!("rt-mtu-{mtu}"),
            &["many.pcap"],
            &["--path-mtu", &mtu_arg],
        )
        .await;
        let oversize = summary_number(&summaries[0], "templates, ");
        let over: Vec<_> = sizes.iter().filter(|s| **s + 28 > mtu).collect();
        assert_eq!(over.len() as u64, oversize, "MTU {mtu}: {summaries:?}");
        if mtu >= 128 {
            // Every template and record fits: nothing may exceed the path MTU.
            assert!(over.is_empty(), "MTU {mtu}: {over:?}");
        } else {
            // 68 leaves 40 octets for IPFIX, less than one template (60) or record (60 or 84,
            // with headers): each goes alone, larger, and is counted as such.
            let largest = 16 + 4 + 80;
            assert!(over.iter().all(|s| **s <= largest), "{over:?}");
        }
    }
}

#[test]
fn path_mtu_out_of_range_is_refused_with_vpps_messages() {
    for (mtu, message) in [
        ("1451", "too big path-mtu value, maximum is 1450"),
        ("67", "too small path-mtu value, minimum is 68"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowvm"))
            .args(["export", "--pcap", pcap("mixed.pcap").to_str().unwrap()])
            .args([
                "--collector",
                "127.0.0.1:9",
                "--src-port",
                "0",
                "--path-mtu",
                mtu,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

#[test]
fn the_reference_parser_sees_what_the_generator_wrote() {
    let packets = read_pcap(&pcap("mixed.pcap"));
    assert_eq!(packets.len(), 28);
    let flow = |p: &Packet| p.frame.as_ref().and_then(Packet::l3_l4);
    assert_eq!(packets.iter().filter(|p| flow(p).is_none()).count(), 3);
    let flows: HashMap<_, _> = packets
        .iter()
        .filter_map(|p| flow(p).map(|f| (f, ())))
        .collect();
    // The two fragments of one UDP datagram are two flows: the first keyed by the ports of the
    // transport header it carries, the second, which has none, by ports 0.
    assert_eq!(flows.len(), 12);
    let fragments: Vec<_> = flows
        .keys()
        .filter(|k| k.2 == 17 && matches!((k.3, k.4), (7_000, 7_001) | (0, 0)))
        .collect();
    assert_eq!(fragments.len(), 2, "{fragments:?}");
    assert!(
        flows
            .keys()
            .any(|k| k.0.parse::<IpAddr>().unwrap().is_ipv6())
    );
}

#[test]
fn a_cut_capture_exports_what_came_before_the_cut_then_fails_saying_where() {
    let whole = std::fs::read(pcap("many.pcap")).unwrap();
    let dir = scratch("export-cut-capture");
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 5]).unwrap();
    let sink = common::loopback_udp_receiver();
    let out = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args(["export", "--pcap", cut.to_str().unwrap(), "--src-port", "0"])
        .args(["--collector", &sink.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("capture cut short at octet "), "{stderr}");
    let exported = stderr
        .split("records exported")
        .next()
        .and_then(|s| s.rsplit(' ').nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no record count in {stderr}"));
    assert!(exported > 0, "{stderr}");
    // The records reached the wire: at least one data Message came.
    let mut buf = vec![0; 65_535];
    let mut data_sets = 0;
    while let Ok(n) = sink.recv(&mut buf) {
        data_sets += buf[16..n]
            .chunks(4)
            .next()
            .filter(|set| u16::from_be_bytes([set[0], set[1]]) >= 256)
            .map_or(0, |_| 1);
    }
    assert!(data_sets > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A route whose MTU (576, a veth into a namespace of its own) is below the path MTU (1450):
/// the kernel refuses the segmented send of a run (EMSGSIZE), the exporter sends each Message
/// alone from then on, and the kernel fragments them: every Message arrives whole, none lost.
#[test]
fn a_route_narrower_than_the_path_mtu_gets_every_message_whole() {
    let ns = common::netns::NetNs::new("narrow");
    let (host, _) = ns.veth(576);
    let sink = std::net::UdpSocket::bind((host, 0)).unwrap();
    sink.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    // Room for every Message, whole or in fragments, should this thread be slow to read.
    socket2::SockRef::from(&sink)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    let collector = sink.local_addr().unwrap().to_string();
    // Taken as they come (the socket's buffer would not hold them all), until the exporter has
    // exited and nothing more comes: Messages and octets.
    let exited = Arc::new(AtomicBool::new(false));
    let received = std::thread::spawn({
        let exited = Arc::clone(&exited);
        move || {
            let mut buf = [0; 65_536];
            let (mut messages, mut octets) = (0, 0);
            loop {
                match sink.recv(&mut buf) {
                    Ok(len) => {
                        flowvm_vm::wire::header::Message::decode(&buf[..len]).unwrap();
                        messages += 1;
                        octets += len as u64;
                    }
                    Err(_) if exited.load(Ordering::Relaxed) => return (messages, octets),
                    Err(_) => {}
                }
            }
        }
    });
    let many = pcap("many.pcap");
    let out = ns
        .flowvm(
            &scratch("narrow-route"),
            &[
                "export",
                "--pcap",
                many.to_str().unwrap(),
                "--collector",
                &collector,
                "--path-mtu",
                "1450",
            ],
        )
        .output()
        .unwrap();
    exited.store(true, Ordering::Relaxed);
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary_number(&summary, "flows "), 2000, "{summary}");
    assert_eq!(summary_number(&summary, "exported "), 2000, "{summary}");
    assert!(
        summary.contains("0 send errors, 0 records lost"),
        "{summary}"
    );
    let (messages, octets) = (
        summary_number(&summary, " records in "),
        summary_number(&summary, "over the path MTU), "),
    );
    let (got, got_octets) = received.join().unwrap();
    assert_eq!((got, got_octets), (messages, octets), "{summary}");
    // Each full Message went as IP fragments of at most 576 octets, reassembled.
    assert!(got_octets / got > 576, "{summary}");
}
