//! `flowvm export`: the meter and Exporting Process of the exporter crate, wired to the command
//! line, the signals and the summary.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flowvm_exporter::capture::file::MappedCapture;
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

/// `--workers` at most: each holds a capture socket with an 8 MiB buffer and a flow table.
const MAX_WORKERS: usize = 64;

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
    let workers = args.workers.max(1);
    if workers > MAX_WORKERS {
        return Err(format!("--workers {workers}: at most {MAX_WORKERS}").into());
    }
    if workers > 1 && args.interface.is_none() {
        return Err(
            "--workers meters a live --interface on several threads; a capture file is read by one"
                .into(),
        );
    }
    let configs = (0..workers)
        .map(|worker| transport_config(args, collector, worker))
        .collect::<Result<Vec<_>, _>>()?;
    // The same for every worker: only the source port differs.
    let overhead = configs.first().map_or(0, TransportConfig::header_overhead);
    let transports = configs
        .into_iter()
        .map(|config| transport(args, config))
        .collect::<Result<Vec<_>, _>>()?;
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
    // With workers, one capture each in one fanout group (numbered after this process), so
    // the kernel gives each flow's frames to one worker.
    let mut captures = Vec::new();
    if let Some(name) = &args.interface {
        let group = u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
        for _ in 0..workers {
            let capture = LiveCapture::open(name, Duration::from_millis(100))?;
            if workers > 1 {
                capture
                    .join_fanout(group)
                    .map_err(|e| format!("--workers {workers} on {name}: PACKET_FANOUT: {e}"))?;
            }
            captures.push(capture);
        }
    }
    let unspecified = SocketAddr::new(
        args.src.unwrap_or_else(|| match collector {
            SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        }),
        args.src_port,
    );
    let own = OwnTraffic {
        locals: transports
            .iter()
            .map(|t| t.local_addr().unwrap_or(unspecified))
            .collect(),
        collector,
    };
    println!(
        "Collector {collector}, src address {}, path MTU {path_mtu}, template resend interval \
         {}s, udp checksum {}, transport {}, record {}, active {}s, passive {}s{}",
        own.locals.first().copied().unwrap_or(unspecified),
        args.template_interval,
        if !args.no_udp_checksum || collector.is_ipv6() {
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
        args.passive,
        if workers > 1 {
            format!(
                ", workers {workers} (Observation Domains {} to {})",
                args.domain_id,
                args.domain_id
                    .saturating_add(u32::try_from(workers - 1).unwrap_or(u32::MAX))
            )
        } else {
            String::new()
        }
    );
    let timers = Timers {
        active_ns: args.active.saturating_mul(NANOS),
        passive_ns: args.passive.saturating_mul(NANOS),
        ..Timers::default()
    };
    let mut meters = Vec::with_capacity(workers);
    for (worker, transport) in (0_u32..).zip(transports) {
        let exporter = ExportingProcess::new(
            ExportConfig {
                message_budget: usize::from(path_mtu).saturating_sub(overhead),
                template_interval_ns: args.template_interval.saturating_mul(NANOS),
                flush_interval_ns: args.flush_interval.saturating_mul(NANOS),
                // Each worker its own Observation Domain, so each has a sequence stream of
                // its own, counting the records it exports.
                domain: ObservationDomainId(args.domain_id.saturating_add(worker)),
            },
            templates.clone(),
            transport,
        );
        let table = FlowTable::new(timers, args.max_flows);
        meters.push(Meter::new(args.record, table, exporter, Some(own.clone())));
    }
    let stop = stop_on_signals()?;
    if let Some(path) = &args.pcap
        && let Some(meter) = meters.first_mut()
    {
        let capture = MappedCapture::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // As fast as possible and with a core to spare: read and key on a second thread.
        let spare_core = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let replayed = if args.speed.is_none() && spare_core {
            run::replay_pipelined(&capture, meter, &stop)
        } else {
            run::replay(capture.bytes(), meter, args.speed, &stop)
        };
        if let Err(e) = replayed {
            // What was read before the damage is still exported.
            let summary = meter.finish();
            return Err(format!(
                "{}: {e} (the {} packets before it were metered and their {} records exported)",
                path.display(),
                summary.capture.packets,
                summary.export.records
            )
            .into());
        }
    } else if !captures.is_empty() {
        std::thread::scope(|scope| {
            let running: Vec<_> = captures
                .iter_mut()
                .zip(&mut meters)
                .map(|(capture, meter)| scope.spawn(|| run::live(capture, meter, &stop)))
                .collect();
            let mut first = Ok(());
            for worker in running {
                let done = worker
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a worker panicked")));
                if done.is_err() {
                    // One worker failing stops the others.
                    stop.store(true, Ordering::Relaxed);
                }
                first = first.and(done);
            }
            first
        })?;
    }
    let mut summary = Summary::default();
    for meter in &mut meters {
        summary += meter.finish();
    }
    Ok(summary)
}

/// The settings of worker `worker`'s connection to the collector: its own socket (with
/// `--src-port P`, port P plus the worker's number).
fn transport_config(
    args: &ExportArgs,
    collector: SocketAddr,
    worker: usize,
) -> Result<TransportConfig, Failure> {
    let src_port = match args.src_port {
        0 => 0,
        port => u16::try_from(worker)
            .ok()
            .and_then(|w| port.checked_add(w))
            .ok_or("--src-port plus the number of workers is past 65535")?,
    };
    Ok(TransportConfig {
        collector,
        src: args.src,
        src_port,
        protocol: match args.transport {
            TransportArg::Udp => TransportProtocol::Udp,
            TransportArg::Tcp => TransportProtocol::Tcp,
            TransportArg::Tls => TransportProtocol::Tls,
        },
        udp_checksum: !args.no_udp_checksum,
    })
}

/// A worker's connection to the collector, set up by `config`.
fn transport(args: &ExportArgs, config: TransportConfig) -> Result<SocketTransport, Failure> {
    let mut transport = SocketTransport::new(config)?;
    if args.transport == TransportArg::Tls {
        transport = transport.with_tls(tls_client(
            &args.collector,
            args.tls_ca.as_deref(),
            args.tls_cert.as_deref().zip(args.tls_key.as_deref()),
            args.tls_server_name.as_deref(),
        )?);
    }
    Ok(transport)
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
