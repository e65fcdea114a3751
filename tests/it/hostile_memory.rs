//! The real `flowvm collect` binary under the worst flood the bounds allow, with its own
//! /proc/<pid>/status: VmHWM must stay under the sum of the bounds README's "Bounds" table
//! states, computed from the same (scaled-down) settings. Also the largest IPv6 datagram.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KillOnDrop, data_message, scratch, template, template_message};

/// A running `flowvm collect`, killed when dropped (even when the test fails).
struct Collector {
    child: KillOnDrop,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    metrics: SocketAddr,
}

impl Collector {
    /// Starts the binary with `settings` (TOML lines) and the listeners of `listen`.
    fn start(name: &str, listen: &str, settings: &str) -> Self {
        let dir = scratch(name);
        let config = dir.join("collect.toml");
        let mut file = std::fs::File::create(&config).unwrap();
        writeln!(
            file,
            "listen = [{listen}]\nudp_listen = []\nmetrics = \"127.0.0.1:0\"\nout = \"{}\"\n{settings}",
            dir.join("flows").display()
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowvm"))
            .args(["collect", "--log-level", "error", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut collector = Self {
            child: KillOnDrop(child),
            udp: Vec::new(),
            tcp: Vec::new(),
            metrics: "127.0.0.1:0".parse().unwrap(),
        };
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("listening udp ") {
                collector.udp.push(addr.parse().unwrap());
            } else if let Some(addr) = line.strip_prefix("listening tcp ") {
                collector.tcp.push(addr.parse().unwrap());
            } else if let Some(url) = line.strip_prefix("metrics http://") {
                collector.metrics = url.trim_end_matches("/metrics").parse().unwrap();
                break;
            }
        }
        assert!(!collector.udp.is_empty(), "the collector did not start");
        collector
    }

    /// A field of /proc/<pid>/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS/VmHWM line")
    }

    /// The value of the metric line starting with `name ` (or `name{...} `).
    fn metric(&self, name: &str) -> u64 {
        let mut s = TcpStream::connect(self.metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{body}"))
    }

    /// Polls (bounded: 30 s) until `metric` reaches `value`.
    fn until(&self, name: &str, value: u64) {
        for _ in 0..1500 {
            if self.metric(name) >= value {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{name} never reached {value}: {}", self.metric(name));
    }
}

/// Scaled-down bounds: the test's flood reaches every one of them.
// The bounds are a worker's (README, Bounds): one worker, so the figures are the collector's.
const SETTINGS: &str = "workers = 1
max_templates = 2048
max_templates_per_session = 1024
max_templates_per_exporter = 1024
max_template_fields = 32768
max_template_fields_per_exporter = 8192
pending_max_bytes = 8388608
pending_max_session_bytes = 2097152
queue = 1024
queue_max_bytes = 8388608
max_connections = 32
max_connections_per_exporter = 32
max_open_files = 16
";

/// The bound README states, in KiB, for the settings above over a start-up RSS of `base`.
fn bound_kib(base: u64) -> u64 {
    let templates = 32_768 * 2 + 2048; // weight × 2 KiB, plus 1 KiB a template
    let pending = 8 << 10;
    let queue = (8 << 10) + 1024 / 8; // octets, plus ~128 B a queued Message
    let connections = 32 * 64;
    let sequences = 2048 / 8; // ~128 B a stream
    let archive = 16 * 1024 * 8; // open files × columns × 8 KiB
    base + templates + pending + queue + connections + sequences + archive
}

/// A 1024-field template `id` whose layout differs from every other `id` (octetDeltaCount
/// in 4 or 8 octets, by the bits of `id`).
fn heavy(id: u16) -> flowvm_vm::wire::template::TemplateDef {
    let fields: Vec<(u16, u16)> = (0..1024)
        .map(|j| (1, if j < 16 && (id >> j) & 1 == 1 { 8 } else { 4 }))
        .collect();
    template(id, &fields)
}

#[test]
fn the_worst_flood_stays_under_the_stated_memory_bound() {
    let c = Collector::start("hostile-memory", "\"127.0.0.1:0\"", SETTINGS);
    let (udp, tcp) = (c.udp[0], c.tcp[0]);
    let base = c.status_kib("VmRSS:");
    // Heavy templates from four addresses, ten each, past the weight bound of an address
    // (8192 instructions), and a record for each: 28 programs of 1024 columns, 28 schemas
    // for 16 open files.
    let mut sent = 0;
    for a in 1..=4_u8 {
        let s = UdpSocket::bind(format!("127.0.0.{a}:0")).unwrap();
        for id in 256..266 {
            let id = id + u16::from(a) * 16;
            s.send_to(&template_message(&[heavy(id)], 1), udp).unwrap();
            let record = vec![0_u8; 4096 + 4 * 16];
            s.send_to(&data_message(id, &[record], 0, 1), udp).unwrap();
            sent += 2;
            c.until("flowvm_messages_received_total", sent);
        }
    }
    // Data for templates that never come, from 8 ports: the pending buffer fills.
    for _ in 0..8 {
        let s = UdpSocket::bind("127.0.0.5:0").unwrap();
        for i in 0..40_u32 {
            let rows = vec![vec![0_u8; 60_000]];
            s.send_to(&data_message(999, &rows, i, 1), udp).unwrap();
            sent += 1;
        }
        c.until("flowvm_messages_received_total", sent);
    }
    // TCP peers that stall mid-message with 60000 octets of a 65535-octet Message read.
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut peer = TcpStream::connect(tcp).unwrap();
        let mut m = vec![0_u8, 10, 255, 255];
        m.resize(60_000, 0);
        peer.write_all(&m).unwrap();
        stalled.push(peer);
    }
    // A domain flood and 64 KiB garbage datagrams as fast as they go (the kernel may drop).
    let s = UdpSocket::bind("127.0.0.6:0").unwrap();
    for domain in 0..5000_u32 {
        let mut m = vec![0, 10, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0];
        m.extend(domain.to_be_bytes());
        s.send_to(&m, udp).unwrap();
    }
    for _ in 0..400 {
        let _ = s.send_to(&[0xab; 65_507], udp);
    }
    c.until("flowvm_connections_open", 32);
    std::thread::sleep(Duration::from_millis(1500));
    let hwm = c.status_kib("VmHWM:");
    let bound = bound_kib(base);
    eprintln!(
        "start-up RSS {base} KiB, VmHWM {hwm} KiB under the flood, bound {bound} KiB; templates live {}, pending octets {}",
        c.metric("flowvm_templates_live"),
        c.metric("flowvm_pending_bytes")
    );
    // 7 templates of 1027 instructions fit in an address's 8192.
    assert_eq!(c.metric("flowvm_templates_live"), 28);
    assert_eq!(
        c.metric("flowvm_dropped_total{reason=\"template_limit\"}"),
        12
    );
    assert!(c.metric("flowvm_dropped_total{reason=\"pending_overflow\"}") > 0);
    assert!(hwm < bound, "VmHWM {hwm} KiB over the bound {bound} KiB");
    drop(stalled);
}

#[test]
fn the_largest_ipv6_datagram_decodes() {
    let c = Collector::start("hostile-ipv6", "\"[::1]:0\"", "");
    let udp = c.udp[0];
    let s = UdpSocket::bind("[::1]:0").unwrap();
    // 65535 less the UDP header (the IPv6 header is not in the Payload Length):
    // 65527 - 20 = 5458 records of 12 octets and 11 of padding.
    let rows: Vec<Vec<u8>> = (0..5458_u32)
        .map(|i| {
            [
                i.to_be_bytes().to_vec(),
                u64::from(i).to_be_bytes().to_vec(),
            ]
            .concat()
        })
        .collect();
    let mut big = data_message(256, &rows, 0, 1);
    big.extend([0; 11]);
    big[2..4].copy_from_slice(&65_527_u16.to_be_bytes());
    big[18..20].copy_from_slice(&65_511_u16.to_be_bytes());
    assert_eq!(big.len(), 65_527);
    assert!(s.send_to(&[0; 65_528], udp).is_err(), "65527 is the most");
    s.send_to(
        &template_message(&[template(256, &[(10, 4), (2, 8)])], 1),
        udp,
    )
    .unwrap();
    s.send_to(&big, udp).unwrap();
    c.until("flowvm_records_decoded_total", 5458);
    assert_eq!(c.metric("flowvm_messages_dropped_total"), 0);
}
