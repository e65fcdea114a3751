//! `flowvm bench-replay`: a load generator. Sends IPFIX over UDP, TCP or TLS to a collector at
//! a given record rate, then reads the collector's metrics to report records/s received and
//! records lost (sent minus decoded), so throughput claims come from a real socket and a real
//! archive.
//!
//! With a capture (`--pcap`), it sends instead the UDP payloads of the capture's packets,
//! unchanged and in order, a given number of times at a given datagram rate, to any collector
//! (IPFIX, NetFlow v9 or v5; flowvm or another); the collector's metrics, when given, are read
//! as above.

use std::io::{Read, Seek};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use flowvm_exporter::capture::file;
use flowvm_exporter::dissect::udp_datagram;

use flowvm_exporter::export::transport::{
    SocketTransport, TlsClient, Transport, TransportConfig, TransportProtocol,
};

use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::TemplateDef;
use flowvm_vm::wire::writer::MessageWriter;

/// What a replay did and saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayReport {
    /// Data Records sent.
    pub sent: u64,
    /// Seconds spent sending.
    pub send_seconds: f64,
    /// Data Records the collector decoded meanwhile (from its metrics).
    pub received: u64,
    /// Seconds from the first send until the collector's count stopped rising.
    pub receive_seconds: f64,
    /// Rows the collector wrote to Parquet meanwhile.
    pub written: u64,
}

/// The VPP ipfix doc's simple report (seed 003): addresses, ports, protocol, flow start and
/// end in microseconds: 29 octets a record.
pub fn replay_template() -> TemplateDef {
    let fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (154, 8), (155, 8)];
    TemplateDef::of_iana(TemplateId(256), &fields)
}

/// Messages of up to `mtu` octets: one template Message, then data Messages whose records
/// vary addresses and ports; `records` in all. Sequence numbers count records (§3.1).
pub fn messages(records: u64, mtu: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let def = replay_template();
    let mut w = MessageWriter::new(mtu);
    w.begin_set(SetId::TEMPLATE);
    w.put_template(&def);
    w.commit();
    let template = w.finish(0, 0, ObservationDomainId(1)).to_vec();
    let mut out = Vec::new();
    let mut sent = 0_u64;
    let mut sequence = 0_u32;
    while sent < records {
        w.clear();
        w.begin_set(SetId(256));
        let mut in_message = 0_u32;
        while sent < records {
            let i = u32::try_from(sent % u64::from(u32::MAX)).unwrap_or(0);
            w.put_u32(0x0a00_0000 | (i & 0xffff));
            w.put_u32(0xc000_0200 | (i % 251));
            w.put_u16(u16::try_from(i % 65_536).unwrap_or(0));
            w.put_u16(443);
            w.put_u8(6);
            w.put_u64(0xe7a1_0000_0000_0000 + u64::from(i));
            w.put_u64(0xe7a1_0000_0001_0000 + u64::from(i));
            if !w.commit() {
                break;
            }
            sent += 1;
            in_message += 1;
        }
        out.push(
            w.finish(1_700_000_000, sequence, ObservationDomainId(1))
                .to_vec(),
        );
        sequence = sequence.wrapping_add(in_message);
    }
    (template, out)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The collector's Prometheus text.
///
/// # Errors
/// The metrics endpoint cannot be reached.
pub fn scrape(metrics: SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&metrics, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: flowvm\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Data Records in all.
    pub records: u64,
    /// Records per second; 0 as fast as the socket takes them.
    pub rate: u64,
    /// Largest Message, in octets.
    pub mtu: usize,
    /// UDP exporters (sockets, so source ports) the Messages are dealt over in turn, each a
    /// stream of its own (template first, sequence numbers of its own records); the kernel
    /// spreads them over a collector's workers.
    pub exporters: usize,
}

/// A TCP connection to `collector`, through TLS with `tls`, open.
///
/// # Errors
/// The connection or the handshake failed.
pub fn stream(collector: SocketAddr, tls: Option<TlsClient>) -> std::io::Result<SocketTransport> {
    let protocol = if tls.is_some() {
        TransportProtocol::Tls
    } else {
        TransportProtocol::Tcp
    };
    let mut transport = SocketTransport::new(TransportConfig {
        collector,
        src: None,
        src_port: 0,
        protocol,
        udp_checksum: false,
    })?;
    if let Some(client) = tls {
        transport = transport.with_tls(client);
    }
    transport.open()?;
    Ok(transport)
}

/// Sends `load` to `collector` over UDP, or over `stream` (TCP or TLS) when given, waits
/// (bounded) for the collector to finish, and reports.
///
/// # Errors
/// A socket or metrics failure.
pub fn replay(
    collector: SocketAddr,
    mut stream: Option<SocketTransport>,
    metrics: SocketAddr,
    load: Load,
) -> std::io::Result<ReplayReport> {
    let Load {
        records,
        rate,
        mtu,
        exporters,
    } = load;
    let (template, mut data) = messages(records, mtu);
    let exporters = if stream.is_some() {
        1
    } else {
        exporters.max(1)
    };
    // Each exporter's sequence numbers count the records it sent itself.
    let record_len = replay_template()
        .fields
        .iter()
        .map(|f| usize::from(f.field_length))
        .sum::<usize>();
    let mut sequences = vec![0_u32; exporters];
    for (n, message) in data.iter_mut().enumerate() {
        let sequence = &mut sequences[n % exporters];
        if let Some(field) = message.get_mut(8..12) {
            field.copy_from_slice(&sequence.to_be_bytes());
        }
        let in_message = message.len().saturating_sub(20) / record_len.max(1);
        *sequence = sequence.wrapping_add(u32::try_from(in_message).unwrap_or(0));
    }
    let per_message = records.div_ceil(u64::try_from(data.len().max(1)).unwrap_or(1));
    let bind: SocketAddr = if collector.is_ipv6() {
        "[::]:0".parse()
    } else {
        "0.0.0.0:0".parse()
    }
    .map_err(std::io::Error::other)?;
    let mut sockets = Vec::with_capacity(exporters);
    for _ in 0..exporters {
        let socket = UdpSocket::bind(bind)?;
        let _ = socket2::SockRef::from(&socket).set_send_buffer_size(8 << 20);
        sockets.push(socket);
    }
    let (decoded0, written0) = counts(metrics)?;
    let mut send = |exporter: usize, message: &[u8]| match &mut stream {
        Some(stream) => stream.send(message),
        None => sockets
            .get(exporter % exporters)
            .map_or(Ok(()), |s| s.send_to(message, collector).map(|_| ())),
    };
    for exporter in 0..exporters {
        send(exporter, &template)?;
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "a load generator paces itself by the wall clock"
    )]
    let start = Instant::now();
    for (n, message) in data.iter().enumerate() {
        send(n, message)?;
        if rate > 0 {
            let due = Duration::from_secs_f64(
                u64::try_from(n + 1).unwrap_or(0) as f64 * per_message as f64 / rate as f64,
            );
            let elapsed = start.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    let (received, receive_seconds, written) =
        settle(metrics, start, (decoded0, written0), records)?;
    Ok(ReplayReport {
        sent: records,
        send_seconds,
        received,
        receive_seconds,
        written,
    })
}

/// The collector's decoded records and written rows.
fn counts(metrics: SocketAddr) -> std::io::Result<(u64, u64)> {
    let page = scrape(metrics)?;
    Ok((
        metric(&page, "flowvm_records_decoded_total"),
        metric(&page, "flowvm_rows_written_total"),
    ))
}

/// Waits until the collector's decoded count stops rising for a second, or has reached
/// `expected` (at most 60 s); returns the records decoded and rows written since `before`,
/// and the seconds from `start` to the last rise.
fn settle(
    metrics: SocketAddr,
    start: Instant,
    before: (u64, u64),
    expected: u64,
) -> std::io::Result<(u64, f64, u64)> {
    let (decoded0, written0) = before;
    let mut last = (u64::MAX, start.elapsed());
    for _ in 0..600 {
        let decoded = metric(&scrape(metrics)?, "flowvm_records_decoded_total") - decoded0;
        if decoded != last.0 {
            last = (decoded, start.elapsed());
        } else if start.elapsed() - last.1 > Duration::from_secs(1) || decoded >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (decoded, written) = counts(metrics)?;
    Ok((
        decoded.saturating_sub(decoded0),
        last.1.as_secs_f64(),
        written.saturating_sub(written0),
    ))
}

/// The UDP payloads of a capture, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturePayloads {
    /// Every whole UDP datagram's payload, unchanged.
    pub payloads: Vec<Vec<u8>>,
    /// Packets passed over: not UDP over IPv4 or IPv6, fragments, or cut short by the snap
    /// length.
    pub skipped: u64,
}

impl CapturePayloads {
    /// Octets of all payloads.
    pub fn octets(&self) -> u64 {
        self.payloads
            .iter()
            .map(|p| u64::try_from(p.len()).unwrap_or(u64::MAX))
            .sum()
    }
}

/// The UDP payloads of every UDP packet in a pcap or pcapng capture, read with the reader
/// `flowvm decode` and `flowvm export` use.
///
/// # Errors
/// The input is not a capture, is damaged part-way, or holds no UDP datagram.
pub fn capture_payloads(input: impl Read + Send) -> Result<CapturePayloads, String> {
    let mut out = CapturePayloads::default();
    file::for_each_packet(input, |p| {
        match udp_datagram(p.link, p.data) {
            Some(d) => out.payloads.push(d.payload.to_vec()),
            None => out.skipped += 1,
        }
        true
    })
    .map_err(|e| e.to_string())?;
    if out.payloads.is_empty() {
        return Err(format!(
            "no UDP datagram in the capture ({} packets passed over)",
            out.skipped
        ));
    }
    Ok(out)
}

/// [`capture_payloads`] of the file at `path`.
///
/// # Errors
/// The file cannot be read, is not a pcap or pcapng capture, is damaged, or holds no UDP
/// datagram; the message names the file.
pub fn read_capture(path: &Path) -> Result<CapturePayloads, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut input = std::fs::File::open(path).map_err(|e| fail(&e))?;
    let mut head = Vec::with_capacity(4);
    (&mut input)
        .take(4)
        .read_to_end(&mut head)
        .and_then(|_| input.seek(std::io::SeekFrom::Start(0)))
        .map_err(|e| fail(&e))?;
    if !file::is_capture(&head) {
        return Err(fail(&"not a pcap or pcapng capture"));
    }
    capture_payloads(input).map_err(|e| fail(&e))
}

/// What a capture replay sent, and what the collector saw when its metrics were given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaptureReport {
    /// Datagrams sent.
    pub datagrams: u64,
    /// UDP payload octets sent.
    pub octets: u64,
    /// Seconds spent sending.
    pub send_seconds: f64,
    /// What the collector's metrics said, when they were given.
    pub collector: Option<CollectorCounts>,
}

/// What flowvm's metrics counted during a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CollectorCounts {
    /// Records the collector decoded.
    pub decoded: u64,
    /// Seconds from the first send until the collector's count stopped rising.
    pub receive_seconds: f64,
    /// Rows the collector wrote to Parquet.
    pub written: u64,
}

/// How to replay a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureLoad {
    /// Passes over the capture.
    pub loops: u64,
    /// Datagrams per second; 0 as fast as the socket takes them.
    pub datagram_rate: u64,
}

/// Sends every payload of `capture` to `collector` over UDP, unchanged and in order,
/// `load.loops` times at `load.datagram_rate`; with `metrics` (a flowvm collector's), waits
/// (bounded) for the collector to finish and reports what it decoded.
///
/// # Errors
/// A socket or metrics failure.
pub fn replay_capture(
    collector: SocketAddr,
    metrics: Option<SocketAddr>,
    capture: &CapturePayloads,
    load: CaptureLoad,
) -> std::io::Result<CaptureReport> {
    let bind: SocketAddr = if collector.is_ipv6() {
        "[::]:0".parse()
    } else {
        "0.0.0.0:0".parse()
    }
    .map_err(std::io::Error::other)?;
    let socket = UdpSocket::bind(bind)?;
    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(8 << 20);
    let before = metrics.map(counts).transpose()?;
    #[expect(
        clippy::disallowed_methods,
        reason = "a load generator paces itself by the wall clock"
    )]
    let start = Instant::now();
    let mut sent = 0_u64;
    for _ in 0..load.loops {
        for payload in &capture.payloads {
            socket.send_to(payload, collector)?;
            sent += 1;
            if load.datagram_rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / load.datagram_rate as f64);
                let elapsed = start.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    let collector = match (metrics, before) {
        (Some(metrics), Some(before)) => {
            let (decoded, receive_seconds, written) = settle(metrics, start, before, u64::MAX)?;
            Some(CollectorCounts {
                decoded,
                receive_seconds,
                written,
            })
        }
        _ => None,
    };
    Ok(CaptureReport {
        datagrams: sent,
        octets: capture.octets().saturating_mul(load.loops),
        send_seconds,
        collector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_messages_hold_every_record_within_the_mtu() {
        let (template, data) = messages(1000, 1400);
        assert!(template.len() < 100);
        assert!(data.iter().all(|m| m.len() <= 1400));
        // 47 records of 29 octets fit a 1400-octet message: 21 full messages and one of 13.
        assert_eq!(data.len(), 22);
        let seq: Vec<u32> = data
            .iter()
            .map(|m| u32::from_be_bytes(m[8..12].try_into().unwrap()))
            .take(3)
            .collect();
        assert_eq!(seq, [0, 47, 94]);
    }

    fn capture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/captures")
            .join(name)
    }

    #[test]
    fn capture_payloads_are_the_udp_payloads_unchanged_in_order() {
        // Three IPFIX Messages, one a frame (testdata/captures/PROVENANCE.md): template 307 and
        // options template 308 at sequence 3791, then data at 3812.
        let c = read_capture(&capture("netflow-parser-scapy-example-ipfix.pcap")).unwrap();
        assert_eq!((c.payloads.len(), c.skipped), (3, 0));
        for p in &c.payloads {
            assert_eq!(u16::from_be_bytes([p[0], p[1]]), 10);
            assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        }
        let seq: Vec<u32> = c
            .payloads
            .iter()
            .map(|m| u32::from_be_bytes(m[8..12].try_into().unwrap()))
            .collect();
        assert_eq!(seq, [3791, 3791, 3812]);
        assert_eq!(
            c.octets(),
            c.payloads.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        // The frames are Ethernet + IPv4 (20 octets) + UDP: each payload is its frame's tail.
        let raw = std::fs::read(capture("netflow-parser-scapy-example-ipfix.pcap")).unwrap();
        for p in &c.payloads {
            assert!(raw.windows(p.len()).any(|w| w == p.as_slice()));
        }
    }

    #[test]
    fn a_capture_of_the_real_link_keeps_every_datagram() {
        // The Cisco capture keeps its original headers: 6666 frames, all UDP to port 2055.
        let c = read_capture(&capture("netflow-parser-cisco-avc-ipfix.pcap")).unwrap();
        assert_eq!((c.payloads.len(), c.skipped), (6666, 0));
        assert!(
            c.payloads
                .iter()
                .all(|p| usize::from(u16::from_be_bytes([p[2], p[3]])) == p.len())
        );
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file() {
        let not = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let e = read_capture(&not).unwrap_err();
        assert!(e.contains("Cargo.toml") && e.contains("not a pcap"), "{e}");
        let e = read_capture(&capture("missing.pcap")).unwrap_err();
        assert!(e.contains("missing.pcap"), "{e}");
        let bytes = std::io::Cursor::new;
        assert!(capture_payloads(bytes(b"no capture at all".to_vec())).is_err());
        let raw = std::fs::read(capture("netflow-parser-scapy-example-ipfix.pcap")).unwrap();
        // Cut inside a packet: an error, or the whole packets before the cut.
        for cut in [30, raw.len() / 2, raw.len() - 1] {
            if let Ok(c) = capture_payloads(bytes(raw[..cut].to_vec())) {
                assert!(c.payloads.len() < 3);
            }
        }
        // A capture header and no packets.
        let e = capture_payloads(bytes(raw[..24].to_vec())).unwrap_err();
        assert!(e.contains("no UDP datagram"), "{e}");
    }

    #[test]
    fn reads_a_metric_by_exact_name() {
        let text = "flowvm_records_decoded_total_x 9\nflowvm_records_decoded_total 42\n";
        assert_eq!(metric(text, "flowvm_records_decoded_total"), 42);
    }
}
