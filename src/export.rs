//! `flowvm export`: the meter and Exporting Process of the exporter crate, wired to the command
//! line, the signals and the summary.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flowvm_exporter::capture::live::LiveCapture;
use flowvm_exporter::export::templates::Templates;
use flowvm_exporter::export::transport::{
    SocketTransport, TlsClient, TransportConfig, TransportProtocol,
};
use flowvm_exporter::export::{self, ExportConfig, ExportingProcess};
use flowvm_exporter::flow::{FlowTable, Timers};
use flowvm_exporter::run::{self, Meter, OwnTraffic, Summary};
use flowvm_vm::Registry;
use flowvm_vm::wire::ids::ObservationDomainId;

use crate::cli::{ExportArgs, TransportArg};
use crate::command::Failure;

const NANOS: u64 = 1_000_000_000;

/// A TLS session's configuration: trust `ca` (required), present `identity` (certificate and
/// key files) if given, and expect `server_name`, else the host of `collector` (`HOST:PORT`).
///
/// # Errors
/// No CA, a file that cannot be used, or a name that is no DNS name or address.
pub fn tls_client(
    collector: &str,
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    server_name: Option<&str>,
) -> Result<TlsClient, Failure> {
    let ca = ca.ok_or("--transport tls needs --tls-ca, the CA of the collector's certificate")?;
    let config = crate::tls::client_config(ca, identity)?;
    let host = server_name.unwrap_or_else(|| {
        collector
            .rsplit_once(':')
            .map_or(collector, |(host, _)| host)
            .trim_matches(['[', ']'])
    });
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("--tls-server-name {host}: {e}"))?;
    Ok(TlsClient {
        config,
        server_name,
    })
}

/// Runs `flowvm export` to the end of the capture or to SIGINT/SIGTERM; returns the summary.
///
/// # Errors
/// Bad options (VPP's messages for the path MTU), an unresolvable collector, a source address
/// that cannot be bound, an unreadable capture.
pub fn export(args: &ExportArgs) -> Result<Summary, Failure> {
    let path_mtu = export::check_path_mtu(args.path_mtu)?;
    let collector = resolve(&args.collector)?;
    let transport_config = TransportConfig {
        collector,
        src: args.src,
        src_port: args.src_port,
        protocol: match args.transport {
            TransportArg::Udp => TransportProtocol::Udp,
            TransportArg::Tcp => TransportProtocol::Tcp,
            TransportArg::Tls => TransportProtocol::Tls,
        },
        udp_checksum: args.udp_checksum,
    };
    let overhead = transport_config.header_overhead();
    let mut transport = SocketTransport::new(transport_config)?;
    if args.transport == TransportArg::Tls {
        transport = transport.with_tls(tls_client(
            &args.collector,
            args.tls_ca.as_deref(),
            args.tls_cert.as_deref().zip(args.tls_key.as_deref()),
            args.tls_server_name.as_deref(),
        )?);
    }
    let templates = Templates::new(args.record, &Registry::new())?;
    let fitting = export::smallest_fitting_mtu(&templates, overhead);
    if usize::from(path_mtu) < fitting {
        tracing::warn!(
            "path MTU {path_mtu} cannot hold one template or record of `record {}` ({fitting} \
             octets with headers): each goes alone in a larger Message, counted as over the \
             path MTU",
            args.record
        );
    }
    // Opened before the banner: once it is printed, every packet on the interface is seen.
    let mut capture = match &args.interface {
        Some(name) => Some(LiveCapture::open(name, Duration::from_millis(100))?),
        None => None,
    };
    let own = OwnTraffic {
        local: transport.local_addr().unwrap_or_else(|| {
            let ip = args.src.unwrap_or_else(|| match collector {
                SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            });
            SocketAddr::new(ip, args.src_port)
        }),
        collector,
    };
    println!(
        "Collector {collector}, src address {}, path MTU {path_mtu}, template resend interval \
         {}s, udp checksum {}, transport {}, record {}, active {}s, passive {}s",
        own.local,
        args.template_interval,
        if args.udp_checksum || collector.is_ipv6() {
            "enabled"
        } else {
            "disabled"
        },
        match args.transport {
            TransportArg::Udp => "udp",
            TransportArg::Tcp => "tcp",
            TransportArg::Tls => "tls",
        },
        args.record,
        args.active,
        args.passive
    );
    let exporter = ExportingProcess::new(
        ExportConfig {
            message_budget: usize::from(path_mtu).saturating_sub(overhead),
            template_interval_ns: args.template_interval.saturating_mul(NANOS),
            flush_interval_ns: args.flush_interval.saturating_mul(NANOS),
            domain: ObservationDomainId(args.domain_id),
        },
        templates,
        transport,
    );
    let timers = Timers {
        active_ns: args.active.saturating_mul(NANOS),
        passive_ns: args.passive.saturating_mul(NANOS),
        ..Timers::default()
    };
    let table = FlowTable::new(timers, args.max_flows);
    let mut meter = Meter::new(args.record, table, exporter, Some(own));
    let stop = stop_on_signals()?;
    if let Some(path) = &args.pcap {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        run::replay(std::io::BufReader::new(file), &mut meter, args.speed, &stop)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    } else if let Some(capture) = &mut capture {
        run::live(capture, &mut meter, &stop)?;
    }
    Ok(meter.finish())
}

fn resolve(collector: &str) -> Result<SocketAddr, Failure> {
    collector
        .to_socket_addrs()
        .map_err(|e| format!("--collector {collector}: {e}"))?
        .next()
        .ok_or_else(|| format!("--collector {collector}: no address").into())
}

/// A flag set by SIGINT or SIGTERM, watched by a small thread of its own.
fn stop_on_signals() -> Result<Arc<AtomicBool>, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Installed here, before the first packet, so a signal is never missed.
    let (mut interrupt, mut terminate) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            });
            flag.store(true, Ordering::Relaxed);
        })?;
    Ok(stop)
}
