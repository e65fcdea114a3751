//! `flowvm export --interface lo`: live AF_PACKET capture on loopback, as root. Without the
//! privilege (CAP_NET_RAW) the tests say so and pass: they cannot run, and CI runs as root.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type, UInt64Type};
use common::{Running, read_archive, scratch};
use flowvm::config::Config;
use flowvm_exporter::capture::live::LiveCapture;
use flowvm_exporter::dissect::{self, protocol};

/// Starts `flowvm export` on `lo`; `None` (after saying why) when capture is not permitted.
fn start_export(args: &[&str]) -> Option<Child> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args(["export", "--interface", "lo", "--src-port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    match lines.next() {
        Some(Ok(banner)) if banner.starts_with("Collector ") => {
            child.stdout = None;
            // Keep the rest of stdout (the summary) flowing into a thread.
            std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
            Some(child)
        }
        _ => {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("CAP_NET_RAW"), "export failed: {stderr}");
            eprintln!("skipped: live capture is not permitted here ({stderr})");
            None
        }
    }
}

fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("flowvm export did not stop on SIGTERM");
}

/// A metered flow's record as archived: source and destination ports, packets, octets and
/// Observation Domain.
struct Row {
    sport: u16,
    dport: u16,
    packets: u64,
    octets: u64,
    domain: u32,
}

/// Every record of the archive in `out`.
fn rows(out: &std::path::Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in read_archive(out) {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let (sp, dp) = (col("sourceTransportPort"), col("destinationTransportPort"));
        let (sp, dp) = (
            sp.as_primitive::<UInt16Type>(),
            dp.as_primitive::<UInt16Type>(),
        );
        let (p, o) = (col("packetDeltaCount"), col("octetDeltaCount"));
        let (p, o) = (
            p.as_primitive::<UInt64Type>(),
            o.as_primitive::<UInt64Type>(),
        );
        let d = col("observation_domain_id");
        let d = d.as_primitive::<UInt32Type>();
        for i in 0..b.num_rows() {
            rows.push(Row {
                sport: sp.value(i),
                dport: dp.value(i),
                packets: p.value(i),
                octets: o.value(i),
                domain: d.value(i),
            });
        }
    }
    rows
}

/// A collector and `flowvm export --interface lo` (active 1 s, passive 2 s, flush 1 s, and
/// `extra`) sending to it; `None` (collector stopped) when capture is not permitted.
async fn collector_and_exporter(out: &std::path::Path, extra: &[&str]) -> Option<(Running, Child)> {
    let collector = Running::start(out, Config::default()).await;
    let target = collector.udp.to_string();
    let mut args = vec![
        "--collector",
        &target,
        "--active",
        "1",
        "--passive",
        "2",
        "--flush-interval",
        "1",
    ];
    args.extend(extra);
    match start_export(&args) {
        Some(exporter) => Some((collector, exporter)),
        None => {
            collector.stop().await;
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_loopback_traffic_is_metered_and_exported_but_not_the_export_itself() {
    let out = scratch("live");
    let Some((collector, exporter)) = collector_and_exporter(&out, &[]).await else {
        return;
    };
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let source = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (sport, dport) = (
        source.local_addr().unwrap().port(),
        sink.local_addr().unwrap().port(),
    );
    for _ in 0..25 {
        source
            .send_to(&[0xab; 100], sink.local_addr().unwrap())
            .unwrap();
    }
    // The active timer (1 s) exports the flow while the exporter runs.
    collector
        .until("the live flow", |c| c.records_decoded.get() >= 1)
        .await;
    tokio::task::spawn_blocking(move || terminate(exporter))
        .await
        .unwrap();
    let collector_port = collector.udp.port();
    collector.stop().await;
    let rows = rows(&out);
    let flow = rows.iter().filter(|r| (r.sport, r.dport) == (sport, dport));
    let (packets, octets) = flow.fold((0, 0), |(p, o), r| (p + r.packets, o + r.octets));
    let to_collector = rows.iter().filter(|r| r.dport == collector_port).count();
    assert_eq!(packets, 25);
    assert_eq!(octets, 25 * (20 + 8 + 100));
    assert_eq!(to_collector, 0, "the exporter metered its own Messages");
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_an_interface_by_flow_each_flow_whole_in_one_domain() {
    let out = scratch("live-workers");
    let Some((collector, exporter)) =
        collector_and_exporter(&out, &["--workers", "2", "--domain-id", "7"]).await
    else {
        return;
    };
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sources: Vec<UdpSocket> = (0..32)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for source in &sources {
        for _ in 0..5 {
            source
                .send_to(&[0xcd; 64], sink.local_addr().unwrap())
                .unwrap();
        }
    }
    collector
        .until("the live flows", |c| c.records_decoded.get() >= 32)
        .await;
    tokio::task::spawn_blocking(move || terminate(exporter))
        .await
        .unwrap();
    let (dport, collector_port) = (sink.local_addr().unwrap().port(), collector.udp.port());
    let counters = collector.stop().await;
    // Each worker's domain is a sequence stream of its own: no loss counted in either.
    assert_eq!(counters.records_lost.get(), 0, "{}", counters.render());
    let rows = rows(&out);
    let mut packets: BTreeMap<u16, u64> = BTreeMap::new();
    let mut domains: BTreeMap<u16, BTreeSet<u32>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.dport == dport) {
        *packets.entry(r.sport).or_default() += r.packets;
        domains.entry(r.sport).or_default().insert(r.domain);
    }
    let to_collector = rows.iter().filter(|r| r.dport == collector_port).count();
    let sports: BTreeSet<u16> = sources
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    assert_eq!(packets.keys().copied().collect::<BTreeSet<_>>(), sports);
    assert!(packets.values().all(|&n| n == 5), "{packets:?}");
    // A flow is metered whole by one worker; the flows are spread over both.
    assert!(domains.values().all(|d| d.len() == 1), "{domains:?}");
    let used: BTreeSet<u32> = domains.values().flatten().copied().collect();
    assert_eq!(used, [7, 8].into(), "{domains:?}");
    assert_eq!(
        to_collector, 0,
        "a worker metered the exporter's own Messages"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// The UDP checksums of the exporter's datagrams as seen on `lo`.
fn export_checksums(extra: &[&str]) -> Option<Vec<u16>> {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let mut capture = match LiveCapture::open("lo", Duration::from_millis(50)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: {e}");
            return None;
        }
    };
    let pcap = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcap/mixed.pcap");
    let status = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args([
            "export",
            "--pcap",
            pcap.to_str().unwrap(),
            "--src-port",
            "0",
        ])
        .args(["--collector", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut sums = Vec::new();
    // Bounded: the capture times out after 50 ms without a frame.
    for _ in 0..10_000 {
        let Some(p) = capture.next_packet().unwrap() else {
            break;
        };
        let Ok(d) = dissect::dissect(p.link, p.data, p.orig_len) else {
            continue;
        };
        if d.protocol == protocol::UDP && d.dst_port == port {
            // Ethernet 14 + IPv4 20 + the checksum's offset 6 in the UDP header.
            sums.push(u16::from_be_bytes([p.data[40], p.data[41]]));
        }
    }
    Some(sums)
}

#[test]
fn udp_checksums_are_on_unless_turned_off() {
    let Some(on) = export_checksums(&[]) else {
        return;
    };
    assert!(!on.is_empty());
    assert!(on.iter().all(|s| *s != 0), "{on:?}");
    let Some(off) = export_checksums(&["--no-udp-checksum"]) else {
        return;
    };
    assert!(!off.is_empty());
    assert!(off.iter().all(|s| *s == 0), "{off:?}");
}
