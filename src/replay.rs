//! `flowvm bench-replay`: a load generator. Sends IPFIX over UDP, TCP or TLS to a collector at
//! a given record rate, then reads the collector's metrics to report records/s received and
//! records lost (sent minus decoded), so throughput claims come from a real socket and a real
//! archive.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use flowvm_exporter::export::transport::{
    SocketTransport, TlsClient, Transport, TransportConfig, TransportProtocol,
};

use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
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
    TemplateDef {
        template_id: TemplateId(256),
        scope_field_count: 0,
        fields: fields
            .iter()
            .map(|&(id, len)| FieldSpecifier::iana(id, len))
            .collect(),
    }
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
    let Load { records, rate, mtu } = load;
    let (template, data) = messages(records, mtu);
    let per_message = records.div_ceil(u64::try_from(data.len().max(1)).unwrap_or(1));
    let bind: SocketAddr = if collector.is_ipv6() {
        "[::]:0".parse()
    } else {
        "0.0.0.0:0".parse()
    }
    .map_err(std::io::Error::other)?;
    let socket = UdpSocket::bind(bind)?;
    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(8 << 20);
    let before = scrape(metrics)?;
    let (decoded0, written0) = (
        metric(&before, "flowvm_records_decoded_total"),
        metric(&before, "flowvm_rows_written_total"),
    );
    let mut send = |message: &[u8]| match &mut stream {
        Some(stream) => stream.send(message),
        None => socket.send_to(message, collector).map(|_| ()),
    };
    send(&template)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "a load generator paces itself by the wall clock"
    )]
    let start = Instant::now();
    for (n, message) in data.iter().enumerate() {
        send(message)?;
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
    // Wait until the count stops rising for a second (at most 60 s).
    let mut last = (u64::MAX, start.elapsed());
    for _ in 0..600 {
        let decoded = metric(&scrape(metrics)?, "flowvm_records_decoded_total") - decoded0;
        if decoded != last.0 {
            last = (decoded, start.elapsed());
        } else if start.elapsed() - last.1 > Duration::from_secs(1) || decoded >= records {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = scrape(metrics)?;
    Ok(ReplayReport {
        sent: records,
        send_seconds,
        received: metric(&after, "flowvm_records_decoded_total") - decoded0,
        receive_seconds: last.1.as_secs_f64(),
        written: metric(&after, "flowvm_rows_written_total") - written0,
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

    #[test]
    fn reads_a_metric_by_exact_name() {
        let text = "flowvm_records_decoded_total_x 9\nflowvm_records_decoded_total 42\n";
        assert_eq!(metric(text, "flowvm_records_decoded_total"), 42);
    }
}
