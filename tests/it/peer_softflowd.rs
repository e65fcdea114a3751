//! softflowd 1.1.0 reads a capture from `testdata/pcap/` and exports IPFIX, NetFlow v9 or v5 to
//! a collector on loopback; the archive is compared with the flows an independent reference
//! computes from the same capture (`common::flows`), in every timestamp mode softflowd has, as
//! biflows (RFC 5103), with MACs and VLANs, over IPv6 and over TCP, and in both NetFlow
//! versions to either kind of UDP listener.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_array::{Array, RecordBatch};
use common::biflows::{MS, Row, reference};
use common::flows::{Key, S, pcap, read_pcap};
use common::wire_capture::{Received, Recorder, assert_tshark_reads};
use common::{KillOnDrop, Running, address, read_archive, scratch, uint};
use flowvm::config::Config;
use flowvm::telemetry::Counters;

const SOFTFLOWD: &str = "/usr/sbin/softflowd";

/// Runs softflowd over `capture` towards `target` with `extra` options and waits (bounded) for
/// it to exit: with `-r` it reads to the end of the file, expires every flow and stops. Its
/// pid file lives in `dir`, so parallel runs never collide. Returns its output (the summary).
fn softflowd(capture: &str, target: &str, extra: &[&str], dir: &Path) -> String {
    assert!(
        Path::new(SOFTFLOWD).exists(),
        "{SOFTFLOWD} is missing: run sh tests/setup.sh"
    );
    let log = dir.join("softflowd.log");
    let path = pcap(capture);
    let mut child = KillOnDrop(
        Command::new(SOFTFLOWD)
            .args(["-d", "-r", path.to_str().unwrap(), "-n", target])
            // IPFIX unless the test asks for a NetFlow version.
            .args(if extra.contains(&"-v") {
                &[][..]
            } else {
                &["-v", "10"][..]
            })
            .arg("-p")
            .arg(dir.join("softflowd.pid"))
            // No control socket: with `-r`, softflowd would wait in accept() on it before
            // reading the file.
            .args(["-c", "none"])
            .args(extra)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..300 {
        if let Some(status) = child.0.try_wait().unwrap() {
            let out = std::fs::read_to_string(&log).unwrap();
            assert!(status.success(), "softflowd {extra:?} failed:\n{out}");
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("softflowd {extra:?} did not finish reading {capture} within 30 s");
}

// ---- The archive side. ----

/// The options record softflowd sends with its templates: systemInitTimeMilliseconds (ns).
fn system_init_time(batches: &[RecordBatch]) -> Vec<u64> {
    batches
        .iter()
        .filter_map(|b| b.column_by_name("systemInitTimeMilliseconds"))
        .flat_map(|c| {
            (0..c.len())
                .map(|i| uint(c.as_ref(), i))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Flow records in the archive. Times: the absolute columns of `-A`, or for the default
/// sysUpTime columns systemInitTimeMilliseconds (from the options record) + flowStartSysUpTime
/// milliseconds, as RFC 5102 defines them (README "The archive" has the query). Reverse
/// (RFC 5103) counters come back as a second map.
fn archived(batches: &[RecordBatch]) -> (Vec<Row>, BTreeMap<Key, (u64, u64)>) {
    let init = system_init_time(batches);
    let mut rows = Vec::new();
    let mut reverse = BTreeMap::new();
    for b in batches {
        if b.column_by_name("packetDeltaCount").is_none() {
            continue;
        }
        let (src, dst) = if b.column_by_name("sourceIPv4Address").is_some() {
            ("sourceIPv4Address", "destinationIPv4Address")
        } else {
            ("sourceIPv6Address", "destinationIPv6Address")
        };
        let col = |name: &str| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no {name} in {:?}", b.schema()))
        };
        let text = |name: &str, i: usize| address(b, name, i).unwrap_or_default();
        let n = |name: &str, i: usize| uint(col(name).as_ref(), i);
        let maybe = |name: &str, i: usize| b.column_by_name(name).map(|c| uint(c.as_ref(), i));
        let icmp = ["icmpTypeCodeIPv4", "icmpTypeCodeIPv6"]
            .into_iter()
            .find(|c| b.column_by_name(c).is_some());
        for i in 0..b.num_rows() {
            // Absolute times when the archive has them (`-A`, and for NetFlow the ones flowvm
            // computes from the packet header); otherwise IPFIX's uptimes from the options
            // record's systemInitTimeMilliseconds.
            let units = ["Seconds", "Milliseconds", "Microseconds", "Nanoseconds"];
            let absolute = |edge: &str| {
                units
                    .into_iter()
                    .find_map(|u| maybe(&format!("flow{edge}{u}"), i))
            };
            let (start, end) = match (absolute("Start"), absolute("End")) {
                (Some(start), Some(end)) => (start, end),
                _ => {
                    let up = n("flowStartSysUpTime", i);
                    // Sent again with the templates: one value.
                    assert!(init.iter().all(|t| *t == init[0]), "{init:?}");
                    (init[0] + up * MS, init[0] + n("flowEndSysUpTime", i) * MS)
                }
            };
            let (sport, dport, flags) = match icmp {
                Some(c) => (0, n(c, i), 0),
                None => (
                    n("sourceTransportPort", i),
                    n("destinationTransportPort", i),
                    n("tcpControlBits", i),
                ),
            };
            let key = (
                text(src, i),
                text(dst, i),
                u8::try_from(n("protocolIdentifier", i)).unwrap(),
                u16::try_from(sport).unwrap(),
                u16::try_from(dport).unwrap(),
            );
            if let Some(packets) = maybe("reversePacketDeltaCount", i) {
                reverse.insert(key.clone(), (packets, n("reverseOctetDeltaCount", i)));
            }
            rows.push(Row {
                key,
                flags: u8::try_from(flags).unwrap(),
                packets: n("packetDeltaCount", i),
                octets: n("octetDeltaCount", i),
                start,
                end,
                macs: (
                    text("sourceMacAddress", i),
                    text("postDestinationMacAddress", i),
                ),
                vlan: u16::try_from(maybe("vlanId", i).unwrap_or(0)).unwrap(),
            });
        }
    }
    rows.sort();
    (rows, reverse)
}

/// Drop reasons that must not move for a well-formed exporter.
fn assert_nothing_dropped(counters: &Counters) {
    assert_eq!(counters.messages_dropped.get(), 0, "{}", counters.render());
    assert_eq!(
        counters.templates_rejected.get(),
        0,
        "{}",
        counters.render()
    );
    for line in counters.render().lines() {
        if line.starts_with("flowvm_dropped_total{") {
            assert!(line.ends_with(" 0"), "{line}");
        }
    }
}

/// Which of the collector's listeners softflowd sends to.
#[derive(Clone, Copy)]
enum Target {
    /// UDP on the port that takes UDP and TCP (4739's role).
    Udp,
    /// The UDP-only listener (2055's role).
    UdpOnly,
    /// TCP.
    Tcp,
}

/// Runs softflowd over `capture` into a fresh collector and returns the archive and counters.
async fn run(
    name: &str,
    capture: &str,
    extra: &[&str],
    listen: &str,
    target: Target,
) -> (Vec<RecordBatch>, std::sync::Arc<Counters>, String) {
    let (batches, counters, summary, _) = run_recorded(name, capture, extra, listen, target).await;
    (batches, counters, summary)
}

/// [`run`], and over UDP the datagrams softflowd sent, relayed to the collector and kept.
async fn run_recorded(
    name: &str,
    capture: &str,
    extra: &[&str],
    listen: &str,
    target: Target,
) -> (
    Vec<RecordBatch>,
    std::sync::Arc<Counters>,
    String,
    Option<Received>,
) {
    let out = scratch(name);
    let dir = scratch(&format!("{name}-softflowd"));
    let config = Config {
        udp_listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Config::default()
    };
    let collector = Running::start_on(listen.parse().unwrap(), &out, config).await;
    let options_records = if extra.windows(2).any(|w| w == ["-v", "5"]) {
        0
    } else {
        1
    };
    let direct = match target {
        Target::Udp => collector.udp,
        Target::UdpOnly => collector.udp_only.unwrap(),
        Target::Tcp => collector.tcp,
    };
    // UDP to 127.0.0.1 goes through a relay that keeps the datagrams (for tshark).
    let recorder =
        (!matches!(target, Target::Tcp) && direct.is_ipv4()).then(|| Recorder::start(direct));
    let target = recorder.as_ref().map_or(direct, |r| r.addr);
    let target = target.to_string();
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let capture_name = capture.to_owned();
    let summary = tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        softflowd(&capture_name, &target, &extra, &dir)
    })
    .await
    .unwrap();
    let exported: u64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("Flows exported: "))
        .and_then(|l| l.split(['(', ' ']).nth(2))
        .unwrap_or_else(|| panic!("no record count in {summary}"))
        .parse()
        .unwrap();
    // The records softflowd counted, plus its options record (IPFIX, v9).
    collector
        .until("every record decoded", |c| {
            c.records_decoded.get() >= exported + options_records
        })
        .await;
    let counters = collector.stop().await;
    let batches = read_archive(&out);
    let _ = std::fs::remove_dir_all(&out);
    (batches, counters, summary, recorder.map(Recorder::finish))
}

/// The archive's flows against the reference, field by field (MACs and VLANs only with
/// `l2`), times checked by `time_ok(archived, truth)`.
fn assert_flows(got: Vec<Row>, capture: &str, l2: bool, time_ok: impl Fn(u64, u64) -> bool) {
    assert_rows(got, reference(&read_pcap(&pcap(capture)), l2), l2, time_ok);
}

/// The archive's flows against `expected`, as [`assert_flows`].
fn assert_rows(got: Vec<Row>, expected: Vec<Row>, l2: bool, time_ok: impl Fn(u64, u64) -> bool) {
    let comparable = |rows: Vec<Row>| -> Vec<Row> {
        let mut rows: Vec<Row> = rows
            .into_iter()
            .map(|r| {
                if l2 {
                    r
                } else {
                    Row {
                        macs: Default::default(),
                        vlan: 0,
                        ..r
                    }
                }
            })
            .collect();
        rows.sort();
        rows
    };
    let (got, expected) = (comparable(got), comparable(expected));
    assert_eq!(got.len(), expected.len(), "{got:#?}\n{expected:#?}");
    for (g, e) in got.iter().zip(&expected) {
        let untimed = |r: &Row| Row {
            start: 0,
            end: 0,
            ..r.clone()
        };
        assert_eq!(untimed(g), untimed(e));
        assert!(
            time_ok(g.start, e.start) && time_ok(g.end, e.end),
            "times {}..{} for {}..{}: {g:?}",
            g.start,
            g.end,
            e.start,
            e.end
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysuptime_times_with_the_options_record_give_the_capture_times() {
    // `-a` makes softflowd's clock the capture's: systemInitTimeMilliseconds is the first
    // packet's time and flowStartSysUpTime counts from it.
    let (batches, counters, summary) = run(
        "sf-uptime",
        "mixed.pcap",
        &["-a"],
        "127.0.0.1:0",
        Target::Udp,
    )
    .await;
    assert_nothing_dropped(&counters);
    assert_eq!(system_init_time(&batches), [1_700_000_000 * S], "{summary}");
    let (rows, _) = archived(&batches);
    // Milliseconds since the init time: truncated to the millisecond.
    assert_flows(rows, "mixed.pcap", false, |got, truth| {
        got == truth / MS * MS
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_absolute_time_mode_gives_the_capture_times() {
    // sec: dateTimeSeconds, truncated. milli: dateTimeMilliseconds, truncated. micro and nano:
    // NTP timestamps (RFC 7011 §6.1.9, §6.1.10) from softflowd's microseconds, which it
    // converts as (µs + 1) × 2³² / 10⁶: one microsecond late at most.
    for (mode, column) in [
        ("sec", "flowStartSeconds"),
        ("milli", "flowStartMilliseconds"),
        ("micro", "flowStartMicroseconds"),
        ("nano", "flowStartNanoseconds"),
    ] {
        let (batches, counters, _) = run(
            &format!("sf-abs-{mode}"),
            "mixed.pcap",
            &["-A", mode],
            "127.0.0.1:0",
            Target::Udp,
        )
        .await;
        assert_nothing_dropped(&counters);
        assert!(batches.iter().any(|b| b.column_by_name(column).is_some()));
        let (rows, _) = archived(&batches);
        assert_flows(rows, "mixed.pcap", false, |got, truth| match mode {
            "sec" => got == truth / S * S,
            "milli" => got == truth / MS * MS,
            _ => (truth..=truth + 1_000).contains(&got),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn biflows_carry_the_reverse_direction_in_rfc_5103_columns() {
    let (batches, counters, _) = run(
        "sf-biflow",
        "mixed.pcap",
        &["-b", "-a"],
        "127.0.0.1:0",
        Target::Udp,
    )
    .await;
    assert_nothing_dropped(&counters);
    let (rows, reverse) = archived(&batches);
    assert_eq!(
        rows.len(),
        reverse.len(),
        "every biflow has reverse columns"
    );
    // Each biflow record: the forward direction (possibly empty) and the reverse one, which
    // together are the reference's two directions of the connection.
    let expected = reference(&read_pcap(&pcap("mixed.pcap")), false);
    let mut seen = Vec::new();
    let by_key: BTreeMap<Key, &Row> = expected.iter().map(|r| (r.key.clone(), r)).collect();
    for row in &rows {
        let key = &row.key;
        let (rpackets, roctets) = reverse[key];
        let (src, dst, proto, sport, dport) = key.clone();
        // ICMP: the type and code of the forward direction stand for both.
        let back = (dst, src, proto, dport, sport);
        for (k, packets, octets) in [
            (key.clone(), row.packets, row.octets),
            (back, rpackets, roctets),
        ] {
            if packets == 0 {
                assert_eq!(octets, 0);
                continue;
            }
            let e = by_key
                .get(&k)
                .or_else(|| {
                    // ICMP echo request and reply are two flows; softflowd orders the
                    // addresses, so a reply alone travels in the reverse columns.
                    by_key
                        .iter()
                        .find(|(ek, _)| {
                            ek.0 == k.0 && ek.1 == k.1 && ek.2 == k.2 && matches!(k.2, 1 | 58)
                        })
                        .map(|(_, r)| r)
                })
                .unwrap_or_else(|| panic!("{k:?} is not in the reference"));
            assert_eq!((packets, octets), (e.packets, e.octets), "{k:?}");
            assert_eq!((row.start / MS, row.end / MS), (e.start / MS, e.end / MS));
            seen.push(e.key.clone());
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        expected.iter().map(|r| r.key.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ether_tracking_archives_macs_and_vlans() {
    let (batches, counters, _) = run(
        "sf-ether",
        "mixed.pcap",
        &["-T", "ether", "-a"],
        "127.0.0.1:0",
        Target::Udp,
    )
    .await;
    assert_nothing_dropped(&counters);
    let (rows, _) = archived(&batches);
    assert!(rows.iter().any(|r| r.vlan == 100), "{rows:#?}");
    assert_flows(rows, "mixed.pcap", true, |got, truth| {
        got == truth / MS * MS
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_to_an_ipv6_collector() {
    let (batches, counters, _) =
        run("sf-ipv6", "mixed.pcap", &["-a"], "[::1]:0", Target::Udp).await;
    assert_nothing_dropped(&counters);
    let exporters = common::column(&batches, "exporter");
    assert!(
        !exporters.is_empty() && exporters.iter().all(|e| e == "::1"),
        "{exporters:?}"
    );
    let (rows, _) = archived(&batches);
    assert_flows(rows, "mixed.pcap", false, |got, truth| {
        got == truth / MS * MS
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_tcp() {
    let (batches, counters, _) = run(
        "sf-tcp",
        "mixed.pcap",
        &["-P", "tcp", "-a"],
        "127.0.0.1:0",
        Target::Tcp,
    )
    .await;
    assert_nothing_dropped(&counters);
    let (rows, _) = archived(&batches);
    assert_flows(rows, "mixed.pcap", false, |got, truth| {
        got == truth / MS * MS
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_lose_nothing_by_sequence_number() {
    // 77 Messages whose sequence numbers count the records of their own Message, options
    // record left out: read that way, not as losses (README "Interoperability").
    let (batches, counters, summary) =
        run("sf-many", "many.pcap", &["-a"], "127.0.0.1:0", Target::Udp).await;
    assert!(summary.contains("in 77 packets"), "{summary}");
    assert_nothing_dropped(&counters);
    let (rows, _) = archived(&batches);
    assert_flows(rows, "many.pcap", false, |got, truth| {
        got == truth / MS * MS
    });
    assert_eq!(counters.records_lost.get(), 0, "{}", counters.render());
    assert_eq!(
        counters.messages_reordered.get(),
        0,
        "{}",
        counters.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netflow9_to_the_udp_only_port_equals_the_capture() {
    // NetFlow v9 to the listener in 2055's role: the same flows, IPv4 and IPv6, absolute times
    // computed from the header's unix_secs (whole seconds) and sysUpTime; softflowd's options
    // record (sampling per interface) archived with its scope named.
    let (batches, counters, summary, received) = run_recorded(
        "sf-v9",
        "many.pcap",
        &["-a", "-v", "9"],
        "127.0.0.1:0",
        Target::UdpOnly,
    )
    .await;
    assert_nothing_dropped(&counters);
    assert!(
        batches
            .iter()
            .any(|b| b.column_by_name("scopeInterface").is_some())
    );
    // softflowd's Count covers its flow records only, not its templates: counted, not fatal.
    assert!(counters.netflow_count_mismatches.get() > 0);
    let (rows, _) = archived(&batches);
    let flows: Vec<_> = rows
        .iter()
        .map(|r| (r.key.clone(), r.packets, r.octets))
        .collect();
    assert_tshark_reads(&received.unwrap(), &flows, "sf-v9");
    assert_flows(rows, "many.pcap", false, |got, truth| {
        got.abs_diff(truth) < S
    });
    assert_eq!(counters.packets_lost.get(), 0, "{summary}");
    assert_eq!(counters.records_lost.get(), 0, "{}", counters.render());
    assert_eq!(
        counters.messages_reordered.get(),
        0,
        "{}",
        counters.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netflow5_to_the_ipfix_port_equals_the_capture_for_ipv4() {
    // NetFlow v5 to the port that takes IPFIX too: v5 carries IPv4 only, so the IPv4 flows;
    // absolute times from unix_secs, unix_nsecs and sysUpTime, to the millisecond.
    let (batches, counters, _, received) = run_recorded(
        "sf-v5",
        "mixed.pcap",
        &["-a", "-v", "5"],
        "127.0.0.1:0",
        Target::Udp,
    )
    .await;
    assert_nothing_dropped(&counters);
    let (rows, _) = archived(&batches);
    let flows: Vec<_> = rows
        .iter()
        .map(|r| (r.key.clone(), r.packets, r.octets))
        .collect();
    assert_tshark_reads(&received.unwrap(), &flows, "sf-v5");
    let ipv4 = reference(&read_pcap(&pcap("mixed.pcap")), false)
        .into_iter()
        .filter(|r| !r.key.0.contains(':'))
        .collect();
    assert_rows(rows, ipv4, false, |got, truth| got == truth / MS * MS);
    assert_eq!(counters.records_lost.get(), 0, "{}", counters.render());
}
