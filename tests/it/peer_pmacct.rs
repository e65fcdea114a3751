//! pmacct's pmacctd with the nfprobe plugin reads a capture from `testdata/pcap/` and exports
//! IPFIX to a collector on loopback; the archive is compared with the flows an independent
//! reference computes from the same capture (`common::biflows`).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMillisecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use common::biflows::{MS, Row, reference};
use common::flows::{Key, S, pcap, read_pcap};
use common::wire_capture::{Received, Recorder, assert_tshark_reads};
use common::{KillOnDrop, Running, address, column, read_archive, scratch, uint};
use flowvm::config::Config;
use flowvm::telemetry::Counters;

const PMACCTD: &str = "/usr/sbin/pmacctd";
/// The Observation Domain the probe is given (`nfprobe_engine`).
const DOMAIN: u32 = 4242;

/// Runs pmacctd over `capture` towards `target` with a configuration written in `dir` plus
/// `extra` lines, and waits (bounded) for it to exit: it sleeps 2 s, reads the savefile,
/// expires every flow at its end and stops (`pcap_savefile_wait` is off).
fn pmacctd(capture: &str, target: &str, extra: &str, dir: &Path) -> String {
    assert!(
        Path::new(PMACCTD).exists(),
        "{PMACCTD} is missing: run sh tests/setup.sh"
    );
    let log = dir.join("pmacctd.log");
    let map = dir.join("pretag.map");
    std::fs::write(
        &map,
        "set_label=udp-flow filter='udp'\nset_label=other-flow filter='not udp'\n",
    )
    .unwrap();
    let config = dir.join("pmacctd.conf");
    std::fs::write(
        &config,
        format!(
            "daemonize: false\n\
             pcap_savefile: {}\n\
             plugins: nfprobe\n\
             nfprobe_receiver: {target}\n\
             {version}\
             {engine}\
             nfprobe_source_ip: 127.0.0.1\n\
             sampling_rate: 1\n\
             pre_tag_map: {}\n\
             post_tag: 77\n\
             post_tag2: 88\n\
             aggregate: src_mac, dst_mac, vlan, src_host, dst_host, src_port, dst_port, proto, \
             tos, tcpflags, tag, tag2, label\n\
             pidfile: {}\n\
             logfile: {}\n\
             {extra}\n",
            pcap(capture).display(),
            map.display(),
            dir.join("pmacctd.pid").display(),
            log.display(),
            // IPFIX unless `extra` names a version, and its engine.
            version = if extra.contains("nfprobe_version") {
                ""
            } else {
                "nfprobe_version: 10\n"
            },
            engine = if extra.contains("nfprobe_engine") {
                String::new()
            } else {
                format!("nfprobe_engine: {DOMAIN}\n")
            },
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(
        Command::new(PMACCTD)
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..300 {
        if let Some(status) = child.0.try_wait().unwrap() {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            // At the end of the savefile the plugin may stop before the core process, which
            // then exits non-zero ("connection lost to 'default_nfprobe-nfprobe'"): the
            // plugin's own shutdown line says the flows were flushed.
            assert!(
                status.success() || out.contains("nfprobe ): Shutting down"),
                "pmacctd failed:\n{out}"
            );
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pmacctd did not finish reading {capture} within 30 s");
}

/// Runs pmacctd into a fresh collector until `done` holds for its counters.
/// Returns the archive, the counters and the datagrams pmacctd sent (relayed and kept).
async fn run(
    name: &str,
    extra: &str,
    done: impl Fn(&Counters) -> bool,
) -> (Vec<RecordBatch>, Arc<Counters>, Received) {
    let out = scratch(name);
    let dir = scratch(&format!("{name}-pmacctd"));
    let collector = Running::start(&out, Config::default()).await;
    let recorder = Recorder::start(collector.udp);
    let target = recorder.addr.to_string();
    let extra = extra.to_owned();
    tokio::task::spawn_blocking(move || pmacctd("mixed.pcap", &target, &extra, &dir))
        .await
        .unwrap();
    collector.until(name, done).await;
    let counters = collector.stop().await;
    let batches = read_archive(&out);
    let _ = std::fs::remove_dir_all(&out);
    (batches, counters, recorder.finish())
}

/// A flow as pmacct exports it: key, packets, octets, start and end (nanoseconds).
type Flow = (Key, u64, u64, u64, u64);

/// The flow records of the archive, sorted; times from flowStart/EndMilliseconds (sent by
/// pmacct over IPFIX, computed by flowvm from the header for NetFlow).
fn flow_rows(batches: &[RecordBatch]) -> Vec<Flow> {
    let mut got = Vec::new();
    for b in batches {
        let Some(packets) = b.column_by_name("packetDeltaCount") else {
            continue;
        };
        // 8-octet counters and millisecond times.
        let packets = packets.as_primitive::<UInt64Type>();
        let octets = b.column_by_name("octetDeltaCount").unwrap();
        let octets = octets.as_primitive::<UInt64Type>();
        let ms = |name: &str, i: usize| {
            let c = b.column_by_name(name).unwrap();
            u64::try_from(c.as_primitive::<TimestampMillisecondType>().value(i)).unwrap() * MS
        };
        let v4 = b.column_by_name("sourceIPv4Address").is_some();
        let text = |name: &str, i: usize| address(b, name, i).unwrap();
        let num = |name: &str, i: usize| {
            let c = b.column_by_name(name).unwrap();
            uint(c.as_ref(), i)
        };
        for i in 0..b.num_rows() {
            let (src, dst) = if v4 {
                ("sourceIPv4Address", "destinationIPv4Address")
            } else {
                ("sourceIPv6Address", "destinationIPv6Address")
            };
            got.push((
                (
                    text(src, i),
                    text(dst, i),
                    u8::try_from(num("protocolIdentifier", i)).unwrap(),
                    u16::try_from(num("sourceTransportPort", i)).unwrap(),
                    u16::try_from(num("destinationTransportPort", i)).unwrap(),
                ),
                packets.value(i),
                octets.value(i),
                ms("flowStartMilliseconds", i),
                ms("flowEndMilliseconds", i),
            ));
        }
    }
    got.sort();
    got
}

/// The flows pmacct meters from the capture, given the softflowd-family `reference`, with
/// pmacct's own metering choices applied; times truncated to the millisecond.
fn pmacct_flows(reference: &[Row]) -> Vec<Flow> {
    let mut expected: Vec<_> = reference
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                r.packets,
                r.octets,
                r.start / MS * MS,
                r.end / MS * MS,
            )
        })
        .collect();
    // Where pmacct meters differently from softflowd (exporter choices, not wire matters):
    // it gives a datagram's later fragments the ports of its first (one flow of 2 packets,
    // 120 octets), and it meters the frame whose IP version field is 7 as IPv4 (it goes by
    // the EtherType alone).
    let t0 = 1_700_000_000 * 1_000 * MS;
    let later = expected
        .iter()
        .position(|e| e.0.2 == 17 && e.0.3 == 0 && e.0.0 == "10.0.0.1")
        .unwrap();
    let later = expected.remove(later);
    let first = expected.iter_mut().find(|e| e.0.3 == 7000).unwrap();
    (first.1, first.2, first.4) = (first.1 + later.1, first.2 + later.2, later.4);
    let (a, b) = ("10.0.0.1".to_owned(), "10.0.0.2".to_owned());
    expected.push(((a, b, 17, 9, 9), 1, 38, t0 + 900 * MS, t0 + 900 * MS));
    expected.sort();
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmacct_flows_equal_the_capture() {
    let expected = reference(&read_pcap(&pcap("mixed.pcap")), false);
    // The flow records and two options records (sampling, exporter address).
    let n = expected.len() as u64 + 2;
    let (batches, counters, _) = run("pm-flows", "", |c| c.records_decoded.get() >= n).await;
    assert_eq!(counters.records_decoded.get(), n, "{}", counters.render());
    assert_eq!(counters.messages_dropped.get(), 0, "{}", counters.render());
    assert_eq!(
        counters.templates_rejected.get(),
        0,
        "{}",
        counters.render()
    );
    assert_eq!(counters.records_lost.get(), 0, "{}", counters.render());
    for line in counters.render().lines() {
        if line.starts_with("flowvm_dropped_total{") {
            assert!(line.ends_with(" 0"), "{line}");
        }
    }
    let domains = column(&batches, "observation_domain_id");
    assert!(
        domains.iter().all(|d| *d == DOMAIN.to_string()),
        "{domains:?}"
    );
    // Options records: the sampler and the exporter address.
    assert_eq!(column(&batches, "samplerRandomInterval"), ["1"]);
    assert_eq!(column(&batches, "exporterIPv4Address"), ["127.0.0.1"]);
    assert_eq!(flow_rows(&batches), pmacct_flows(&expected));
    // pmacct's enterprise elements (PEN 43874), not in the registry, so octets as sent: tag
    // and tag2 (8 octets), label (variable length, NUL-terminated by pmacct) as the
    // pre_tag_map set it.
    let octets = |name: &str| -> Vec<Vec<u8>> {
        batches
            .iter()
            .filter_map(|b| b.column_by_name(name))
            .flat_map(|c| {
                let c = c.as_binary::<i32>();
                (0..c.len())
                    .map(|i| c.value(i).to_vec())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let flows = expected.len();
    assert_eq!(
        octets("e43874_1"),
        vec![77_u64.to_be_bytes().to_vec(); flows]
    );
    assert_eq!(
        octets("e43874_2"),
        vec![88_u64.to_be_bytes().to_vec(); flows]
    );
    let labels = octets("e43874_3");
    assert_eq!(labels.len(), flows);
    assert!(
        labels
            .iter()
            .all(|l| l == b"udp-flow\0" || l == b"other-flow\0"),
        "{labels:?}"
    );
    let vlans = column(&batches, "vlanId");
    assert!(vlans.iter().any(|v| v == "100"), "{vlans:?}");
    let macs = column(&batches, "sourceMacAddress");
    assert!(macs.iter().any(|m| m == "02:00:00:00:00:0a"), "{macs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsecond_times_in_16_octets_keep_their_octets_and_cost_no_record() {
    // nfprobe_tstamp_usec sends flowStart/EndMicroseconds (dateTimeMicroseconds, 8 octets
    // by RFC 7011 §6.1.9) in 16 octets: a struct timeval. The four flow templates are
    // installed all the same: the two odd fields keep their octets in `…_raw` columns (counted
    // once per template), and every flow record decodes with its other fields.
    let expected = reference(&read_pcap(&pcap("mixed.pcap")), false);
    let n = expected.len() as u64 + 2;
    let (batches, counters, _) = run("pm-usec", "nfprobe_tstamp_usec: true", |c| {
        c.records_decoded.get() >= n
    })
    .await;
    let text = counters.render();
    assert_eq!(counters.records_decoded.get(), n, "{text}");
    assert_eq!(counters.templates_rejected.get(), 0, "{text}");
    assert!(
        text.contains("flowvm_fields_nonconforming_total{reason=\"raw_octets\"} 8"),
        "{text}"
    );
    assert_eq!(column(&batches, "packetDeltaCount").len(), expected.len());
    for name in ["flowStartMicroseconds_raw", "flowEndMicroseconds_raw"] {
        let lengths: Vec<usize> = batches
            .iter()
            .filter_map(|b| b.column_by_name(name))
            .flat_map(|c| {
                c.as_binary::<i32>()
                    .iter()
                    .map(|v| v.map_or(0, <[u8]>::len))
            })
            .collect();
        assert_eq!(lengths.len(), expected.len(), "{name}");
        assert!(lengths.iter().all(|&l| l == 16), "{name}: {lengths:?}");
    }
    assert_eq!(column(&batches, "exporterIPv4Address"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmacct_netflow9_and_netflow5_flows_equal_the_capture() {
    // The same probe in NetFlow v9 (its templates carry no enterprise element) and v5: the same
    // flows (v5 carries IPv4 only). Times computed from the header: within v9's whole second
    // (unix_secs). pmacct's v5 header, reading a savefile, is not on the flows' clock
    // (COMPLIANCE.md, "Peers"): every v5 time is off by one constant, so what is checked there
    // is that constant and each flow's duration, to the millisecond.
    let reference = reference(&read_pcap(&pcap("mixed.pcap")), false);
    // v5 has no Source ID: an engine type and ID, archived as type × 256 + ID.
    for (version, engine, domain, ipv4_only) in
        [(9, "4242", 4242, false), (5, "2:9", 2 * 256 + 9, true)]
    {
        let expected: Vec<Flow> = pmacct_flows(&reference)
            .into_iter()
            .filter(|f| !ipv4_only || !f.0.0.contains(':'))
            .collect();
        let n = expected.len() as u64;
        let name = format!("pm-v{version}");
        let extra = format!("nfprobe_version: {version}\nnfprobe_engine: {engine}");
        let (batches, counters, received) =
            run(&name, &extra, |c| c.records_decoded.get() >= n).await;
        let text = counters.render();
        assert_eq!(counters.messages_dropped.get(), 0, "{text}");
        assert_eq!(counters.templates_rejected.get(), 0, "{text}");
        assert_eq!(counters.records_lost.get(), 0, "{text}");
        assert_eq!(counters.packets_lost.get(), 0, "{text}");
        let versions = column(&batches, "export_version");
        assert!(
            versions.iter().all(|v| *v == version.to_string()),
            "{versions:?}"
        );
        let domains = column(&batches, "observation_domain_id");
        assert!(
            domains.iter().all(|d| *d == domain.to_string()),
            "{domains:?}"
        );
        let got = flow_rows(&batches);
        assert_eq!(got.len(), expected.len(), "v{version}: {got:#?}");
        let flows: Vec<_> = got.iter().map(|f| (f.0.clone(), f.1, f.2)).collect();
        assert_tshark_reads(&received, &flows, &name);
        let offset = |g: &Flow, e: &Flow| i128::from(g.3) - i128::from(e.3);
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!((&g.0, g.1, g.2), (&e.0, e.1, e.2), "v{version}");
            let times_ok = if version == 9 {
                g.3.abs_diff(e.3) < S && g.4.abs_diff(e.4) < S
            } else {
                offset(g, e).abs_diff(offset(&got[0], &expected[0])) <= u128::from(MS)
                    && (g.4 - g.3).abs_diff(e.4 - e.3) <= MS
            };
            assert!(times_ok, "v{version} times {g:?} for {e:?}");
        }
    }
}
