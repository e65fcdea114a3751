//! `flowvm bench-replay`: generated IPFIX at a rate, or a capture's datagrams replayed, into a
//! collector, with what its metrics say it received.

use std::net::SocketAddr;
use std::path::Path;

use crate::cli::TransportArg;
use crate::command::{DEFAULT_METRICS, Failure};

/// `bench-replay` without --pcap: generated records over UDP, TCP or TLS (`tls`: the CA and
/// server name), then the collector's count read from its metrics.
pub(super) fn generated(
    collector: SocketAddr,
    metrics: Option<SocketAddr>,
    transport: TransportArg,
    tls: (Option<&Path>, Option<&str>),
    load: crate::replay::Load,
) -> Result<(), Failure> {
    let metrics = metrics.unwrap_or(DEFAULT_METRICS);
    let stream = match transport {
        TransportArg::Udp => None,
        TransportArg::Tcp => Some(crate::replay::stream(collector, None)?),
        TransportArg::Tls => {
            let client = crate::export::tls_client(&collector.to_string(), tls.0, None, tls.1)?;
            Some(crate::replay::stream(collector, Some(client))?)
        }
    };
    let r = crate::replay::replay(collector, stream, metrics, load)?;
    let lost = r.sent.saturating_sub(r.received);
    println!(
        "sent {} records in {:.2} s ({:.0} records/s); collector decoded {} ({:.0} records/s), wrote {} rows; lost {} ({:.3}%)",
        r.sent,
        r.send_seconds,
        r.sent as f64 / r.send_seconds.max(1e-9),
        r.received,
        r.received as f64 / r.receive_seconds.max(1e-9),
        r.written,
        lost,
        100.0 * lost as f64 / (r.sent.max(1)) as f64
    );
    Ok(())
}

/// `bench-replay --pcap`: every UDP payload of the capture, `loops` times.
pub(super) fn capture(
    pcap: &Path,
    collector: SocketAddr,
    metrics: Option<SocketAddr>,
    loops: u64,
    datagram_rate: u64,
) -> Result<(), Failure> {
    let capture = crate::replay::read_capture(pcap)?;
    println!(
        "capture {}: {} UDP datagrams ({} octets) a pass, {} other packets passed over",
        pcap.display(),
        capture.payloads.len(),
        capture.octets(),
        capture.skipped
    );
    let load = crate::replay::CaptureLoad {
        loops,
        datagram_rate,
    };
    let r = crate::replay::replay_capture(collector, metrics, &capture, load)?;
    println!(
        "sent {} datagrams ({} octets) in {:.2} s ({:.0} datagrams/s), {} passes",
        r.datagrams,
        r.octets,
        r.send_seconds,
        r.datagrams as f64 / r.send_seconds.max(1e-9),
        loops
    );
    if let Some(c) = r.collector {
        println!(
            "collector decoded {} records ({:.0} records/s), wrote {} rows",
            c.decoded,
            c.decoded as f64 / c.receive_seconds.max(1e-9),
            c.written
        );
    }
    Ok(())
}
