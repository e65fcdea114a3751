//! What each subcommand does, between the parsed command line and the exit code.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use flowvm_vm::{Compiler, Limits, Registry};

use crate::cli::{CollectArgs, Command, TransportArg};
use crate::collector::Collector;
use crate::collector::decode::Decoder;
use crate::config::Config;
use crate::sink::parquet::Archive;
use crate::sink::recovery;
use crate::telemetry::{self, Counters};
use crate::{clock, disasm, offline};

/// A failure to report on standard error before exiting non-zero.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Runs one subcommand.
///
/// # Errors
/// Whatever stopped it, for printing.
pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Collect(args) => collect(&args),
        Command::Decode {
            files,
            out,
            elements,
            log_level,
        } => {
            telemetry::init(&log_level);
            let compiler = Compiler::new(registry(elements.as_deref())?, Limits::default());
            let config = Config {
                out,
                ..Config::default()
            };
            let counters = Arc::new(Counters::default());
            let mut decoder = Decoder::new(compiler, config.decoder(), Arc::clone(&counters));
            let mut archive = Archive::new(config.archive(), Arc::clone(&counters));
            offline::decode_files(&files, &mut decoder, &mut archive, clock::now())?;
            println!(
                "flowvm decode: {} messages, {} records ({} decoded late), {} messages dropped, {} records lost, {} files written to {}",
                counters.messages_received.get(),
                counters.records_decoded.get(),
                counters.records_decoded_late.get(),
                counters.messages_dropped.get(),
                counters.records_lost.get(),
                counters.files_written.get(),
                config.out.display()
            );
            Ok(())
        }
        Command::BenchReplay {
            collector,
            metrics,
            pcap: Some(pcap),
            loops,
            datagram_rate,
            ..
        } => bench_replay_capture(&pcap, collector, metrics, loops, datagram_rate),
        Command::BenchReplay {
            collector,
            metrics,
            records,
            rate,
            mtu,
            exporters,
            transport,
            tls_ca,
            tls_server_name,
            pcap: None,
            ..
        } => {
            let metrics = metrics.unwrap_or(DEFAULT_METRICS);
            let stream = match transport {
                TransportArg::Udp => None,
                TransportArg::Tcp => Some(crate::replay::stream(collector, None)?),
                TransportArg::Tls => {
                    let client = crate::export::tls_client(
                        &collector.to_string(),
                        tls_ca.as_deref(),
                        None,
                        tls_server_name.as_deref(),
                    )?;
                    Some(crate::replay::stream(collector, Some(client))?)
                }
            };
            let load = crate::replay::Load {
                records,
                rate,
                mtu,
                exporters,
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
        Command::Export(args) => {
            telemetry::init(&args.log_level);
            let summary = crate::export::export(&args)?;
            println!("{summary}");
            Ok(())
        }
        Command::Recover { dir, log_level } => {
            telemetry::init(&log_level);
            let held = recovery::lock(&dir)?;
            let r = recovery::recover(&dir, &held)?;
            println!(
                "flowvm recover: {} files made from journals ({} rows, {} torn tails cut), {} stale journals and {} unfinished files without a journal removed in {}",
                r.files,
                r.rows,
                r.torn,
                r.stale,
                r.temporaries,
                dir.display()
            );
            Ok(())
        }
        Command::Disasm { files, elements } => {
            let compiler = Compiler::new(registry(elements.as_deref())?, Limits::default());
            let mut out = std::io::stdout().lock();
            for path in files {
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                writeln!(out, "; file {}", path.display())?;
                let s = disasm::disassemble(&bytes, &compiler, &mut out)?;
                writeln!(
                    out,
                    "; {} messages, {} templates, {} rejected, {} malformed",
                    s.messages, s.templates, s.rejected, s.malformed
                )?;
            }
            Ok(())
        }
    }
}

/// `bench-replay --metrics` without --pcap, when not given: `collect`'s default.
const DEFAULT_METRICS: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9739),
);

/// `bench-replay --pcap`: every UDP payload of the capture, `loops` times.
fn bench_replay_capture(
    pcap: &Path,
    collector: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
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

fn registry(elements: Option<&Path>) -> Result<Registry, Failure> {
    let mut registry = Registry::new();
    if let Some(path) = elements {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        registry
            .add_csv(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(registry)
}

fn collect(args: &CollectArgs) -> Result<(), Failure> {
    let config = args.config()?;
    telemetry::init(&config.log_level);
    let compiler = Compiler::new(registry(config.elements.as_deref())?, Limits::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Handlers first: once the banner says "listening", a signal must find them installed.
        let signals = Signals::install()?;
        let collector = Collector::bind(config.clone(), compiler).await?;
        // The sockets are ours (no other collector on these ports); the directory must be too,
        // before what a crashed process left there is recovered.
        let held = recovery::lock(&config.out)?;
        let recovered = recovery::recover(&config.out, &held)?;
        let counters = collector.counters();
        counters.recovered_files.add(recovered.files);
        counters.recovered_rows.add(recovered.rows);
        counters.journal_torn_tails.add(recovered.torn);
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "# flowvm collect: effective configuration\n{}",
            config.to_toml()
        )?;
        for addr in collector.udp_addrs() {
            writeln!(out, "listening udp {addr}")?;
        }
        for addr in collector.tcp_addrs() {
            writeln!(out, "listening tcp {addr}")?;
        }
        for addr in collector.tls_addrs() {
            writeln!(out, "listening tls {addr}")?;
        }
        let exposed = collector
            .udp_addrs()
            .into_iter()
            .chain(collector.tcp_addrs())
            .any(|a| !a.ip().is_loopback());
        if exposed && config.allow.is_empty() {
            writeln!(
                out,
                "open to every source: any host that reaches these ports may send flows (--allow CIDR limits them)"
            )?;
        }
        if let Some(addr) = collector.metrics_addr() {
            writeln!(out, "metrics http://{addr}/metrics")?;
        }
        out.flush()?;
        drop(out);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signals.wait().await;
            tracing::info!("Shutting down: completing every open file.");
            let _ = stop.send(true);
        });
        collector.run(shutdown).await?;
        Ok::<(), Failure>(())
    })
}

/// SIGINT and SIGTERM, registered with the runtime.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
