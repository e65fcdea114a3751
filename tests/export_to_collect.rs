//! The round trip: pcap -> `flowvm export` -> UDP or TCP on loopback -> the collector ->
//! Parquet, compared field by field with the flows an independent reference computes from the
//! same pcap: its own frame parser and a literal simulation of flowprobe's timers.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use common::{Running, read_archive, scratch};
use flowvm::config::Config;

const S: u64 = 1_000_000_000;

/// One record as both sides see it: addresses, protocol, ports, TCP flags, packets, octets,
/// start, end (ns), flowEndReason.
type Row = (String, String, u8, u16, u16, u16, u64, u64, u64, u64, u8);

/// Addresses, protocol and ports: the flow key under `record l3,l4`.
type Key = (String, String, u8, u16, u16);

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/pcap")
        .join(name)
}

// ---- The reference: a frame parser and flowprobe's timers, written plainly. ----

struct Packet {
    ts: u64,
    /// `None` for frames the meter skips (non-IP, cut, invalid).
    flow: Option<Key>,
    octets: u64,
    flags: u16,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn parse_frame(f: &[u8]) -> Option<(Key, u64, u16)> {
    let mut et = be16(f, 12)?;
    let mut at = 14;
    while et == 0x8100 || et == 0x88a8 {
        et = be16(f, at + 2)?;
        at += 4;
    }
    let ip = f.get(at..)?;
    let (src, dst, proto, l4, octets, fragment) = match et {
        0x0800 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(ip[0] & 15) * 4;
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]).to_string();
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]).to_string();
            let fragment = be16(ip, 6)? & 0x3fff != 0;
            (
                src,
                dst,
                ip[9],
                ip.get(ihl..)?,
                u64::from(be16(ip, 2)?),
                fragment,
            )
        }
        0x86dd => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap()).to_string();
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap()).to_string();
            let (mut next, mut off) = (ip[6], 40);
            while matches!(next, 0 | 43 | 60) {
                next = *ip.get(off)?;
                off += (usize::from(*ip.get(off + 1)?) + 1) * 8;
            }
            let octets = u64::from(be16(ip, 4)?) + 40;
            (src, dst, next, ip.get(off..)?, octets, false)
        }
        _ => return None,
    };
    let (mut sport, mut dport, mut flags) = (0, 0, 0);
    if !fragment {
        match proto {
            6 => {
                sport = be16(l4, 0)?;
                dport = be16(l4, 2)?;
                flags = be16(l4, 12)? & 0x0fff;
                l4.get(..20)?;
            }
            17 => {
                sport = be16(l4, 0)?;
                dport = be16(l4, 2)?;
                l4.get(..8)?;
            }
            1 | 58 => dport = be16(l4, 0)?,
            _ => {}
        }
    }
    Some(((src, dst, proto, sport, dport), octets, flags))
}

/// Classic pcap (microseconds, little-endian), as the generator writes it.
fn read_pcap(path: &Path) -> Vec<Packet> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let word = |o: usize| {
            u64::from(u32::from_le_bytes(
                bytes[at + o..at + o + 4].try_into().unwrap(),
            ))
        };
        let ts = word(0) * S + word(4) * 1_000;
        let len = usize::try_from(word(8)).unwrap();
        let frame = &bytes[at + 16..at + 16 + len];
        let parsed = parse_frame(frame);
        out.push(Packet {
            ts,
            octets: parsed.as_ref().map_or(0, |p| p.1),
            flags: parsed.as_ref().map_or(0, |p| p.2),
            flow: parsed.map(|p| p.0),
        });
        at += 16 + len;
    }
    out
}

struct Flow {
    start: u64,
    end: u64,
    packets: u64,
    octets: u64,
    flags: u16,
    last_seen: u64,
    next_active: u64,
}

/// Flowprobe's rules, checked against every flow at every frame: a deadline `d` takes effect at
/// the first frame whose second reaches `ceil(d / 1 s)`; idle beats active.
fn reference(packets: &[Packet], active: u64, passive: u64) -> Vec<Row> {
    let tick = |t: u64| t.div_ceil(S);
    let mut flows: BTreeMap<Key, Flow> = BTreeMap::new();
    let mut rows = Vec::new();
    let emit = |rows: &mut Vec<Row>, k: &Key, f: &mut Flow, reason| {
        if f.packets > 0 {
            rows.push((
                k.0.clone(),
                k.1.clone(),
                k.2,
                k.3,
                k.4,
                f.flags,
                f.packets,
                f.octets,
                f.start,
                f.end,
                reason,
            ));
        }
        f.packets = 0;
        f.octets = 0;
        f.flags = 0;
    };
    let mut now = 0;
    for p in packets {
        now = now.max(p.ts);
        let now_tick = now / S;
        let mut idle = Vec::new();
        for (k, f) in &mut flows {
            if tick(f.last_seen + passive) <= now_tick {
                emit(&mut rows, k, f, 1);
                idle.push(k.clone());
            } else if tick(f.next_active) <= now_tick {
                emit(&mut rows, k, f, 2);
                while tick(f.next_active) <= now_tick {
                    f.next_active += active;
                }
            }
        }
        for k in idle {
            flows.remove(&k);
        }
        let Some(key) = &p.flow else { continue };
        let f = flows.entry(key.clone()).or_insert(Flow {
            start: p.ts,
            end: p.ts,
            packets: 0,
            octets: 0,
            flags: 0,
            last_seen: now,
            next_active: now + active,
        });
        if f.packets == 0 {
            f.start = p.ts;
        }
        f.end = p.ts;
        f.packets += 1;
        f.octets += p.octets;
        f.flags |= p.flags;
        f.last_seen = now;
    }
    for (k, f) in &mut flows {
        emit(&mut rows, k, f, 4);
    }
    rows.sort();
    rows
}

// ---- The archive side. ----

fn uint(col: &dyn Array, i: usize) -> u64 {
    match col.data_type() {
        DataType::UInt8 => u64::from(col.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => u64::from(col.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => u64::from(col.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i),
        DataType::Timestamp(..) => {
            u64::try_from(col.as_primitive::<TimestampNanosecondType>().value(i)).unwrap()
        }
        other => panic!("unexpected column type {other}"),
    }
}

fn archived_rows(batches: &[RecordBatch]) -> Vec<Row> {
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
        let text = |name: &str, i: usize| col(name).as_string::<i32>().value(i).to_owned();
        let n = |name: &str, i: usize| uint(col(name).as_ref(), i);
        for i in 0..b.num_rows() {
            rows.push((
                text(src, i),
                text(dst, i),
                u8::try_from(n("protocolIdentifier", i)).unwrap(),
                u16::try_from(n("sourceTransportPort", i)).unwrap(),
                u16::try_from(n("destinationTransportPort", i)).unwrap(),
                u16::try_from(n("tcpControlBits", i)).unwrap(),
                n("packetDeltaCount", i),
                n("octetDeltaCount", i),
                n("flowStartNanoseconds", i),
                n("flowEndNanoseconds", i),
                u8::try_from(n("flowEndReason", i)).unwrap(),
            ));
        }
    }
    rows.sort();
    rows
}

/// Runs the real binary; returns its standard output (the summary).
fn export(args: &[&str]) -> String {
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
        // A deep buffer: the exporter replays as fast as it can, as a real one would.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket.set_recv_buffer_size(8 << 20).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let socket = UdpSocket::from(socket);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
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
    let out = scratch(name);
    let collector = Running::start(&out, Config::default()).await;
    let tcp = extra.contains(&"tcp");
    let mut expected = Vec::new();
    let mut summaries = Vec::new();
    let mut sizes = Vec::new();
    for p in pcaps {
        // One relay per run, so each run is its own exporter (address and port) to the
        // collector, as separate processes are.
        let relay = (!tcp).then(|| Relay::start(collector.udp));
        let target = relay.as_ref().map_or(collector.tcp, |r| r.addr).to_string();
        let path = pcap(p);
        expected.extend(reference(&read_pcap(&path), 10 * S, 30 * S));
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
async fn pcapng_gives_the_same_flows_as_pcap() {
    // The reference reads the pcap; the exporter reads the pcapng of the same frames.
    let out = scratch("rt-pcapng");
    let collector = Running::start(&out, Config::default()).await;
    let target = collector.udp.to_string();
    let path = pcap("mixed.pcapng");
    let summary = tokio::task::spawn_blocking(move || {
        export(&[
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
        ])
    })
    .await
    .unwrap();
    let expected = reference(&read_pcap(&pcap("mixed.pcap")), 10 * S, 30 * S);
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
    assert_eq!(packets.iter().filter(|p| p.flow.is_none()).count(), 3);
    let flows: HashMap<_, _> = packets
        .iter()
        .filter_map(|p| p.flow.clone().map(|f| (f, ())))
        .collect();
    assert_eq!(flows.len(), 11);
    assert!(
        flows
            .keys()
            .any(|k| k.0.parse::<IpAddr>().unwrap().is_ipv6())
    );
}
