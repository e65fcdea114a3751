//! What each subcommand does, between the parsed command line and the exit code.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use flowvm_vm::{Compiler, Limits, Registry};

use crate::cli::Command;
use crate::config::Config;
use crate::sink::recovery::{self, DirectoryLock, Recovered};
use crate::sink::spool::{Shipper, Spool};
use crate::sink::store::{Destination, Store};
use crate::telemetry::{self, Counters};

mod bench_replay;
mod collect;
mod decode;
mod sql;
use crate::disasm;

/// A failure to report on standard error before exiting non-zero.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Runs one subcommand.
///
/// # Errors
/// Whatever stopped it, for printing.
pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Collect(args) => collect::collect(&args),
        Command::Decode {
            files,
            out,
            spool,
            collector_id,
            compression,
            elements,
            log_level,
        } => {
            telemetry::init(&log_level);
            let config = Config {
                out,
                spool,
                collector_id,
                compression,
                ..Config::default()
            };
            config.validate()?;
            decode::decode(&config, &files, elements.as_deref())
        }
        Command::BenchReplay {
            collector,
            metrics,
            pcap: Some(pcap),
            loops,
            datagram_rate,
            ..
        } => bench_replay::capture(&pcap, collector, metrics, loops, datagram_rate),
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
            let load = crate::replay::Load {
                records,
                rate,
                mtu,
                exporters,
            };
            let tls = (tls_ca.as_deref(), tls_server_name.as_deref());
            bench_replay::generated(collector, metrics, transport, tls, load)
        }
        Command::Export(args) => {
            telemetry::init(&args.log_level);
            let summary = crate::export::export(&args)?;
            println!("{summary}");
            Ok(())
        }
        Command::Recover {
            dir,
            compression,
            log_level,
        } => {
            telemetry::init(&log_level);
            let held = recovery::lock(&dir)?;
            let r = recovery::recover(&dir, &held, compression)?;
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
        Command::Sql { archive, elements } => {
            print!(
                "{}",
                sql::statements(&archive, &registry(elements.as_deref())?)
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
pub(crate) const DEFAULT_METRICS: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9739),
);

pub(crate) fn registry(elements: Option<&Path>) -> Result<Registry, Failure> {
    let mut registry = Registry::new();
    if let Some(path) = elements {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        registry
            .add_csv(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(registry)
}

/// With an object store as `out`: the store, once a test object was written and removed
/// under its prefix (before listening, so wrong credentials or a missing bucket stop the start).
///
/// # Errors
/// The store cannot be written, or its settings do not make a client.
fn check_store(config: &Config) -> Result<Option<Store>, Failure> {
    let Destination::S3 { bucket, prefix } = config.destination()? else {
        return Ok(None);
    };
    let store =
        Store::s3(&bucket, &prefix).map_err(|e| format!("--out s3://{bucket}/{prefix}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = format!("{}-{}", config.collector_id(), std::process::id());
    runtime
        .block_on(store.probe(&probe))
        .map_err(|e| {
            format!(
                "cannot write to {} ({}): {e}; check the bucket and AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
                store.url(),
                e.label()
            )
        })?;
    Ok(Some(store))
}

/// The archive's local directory made ready: held by this process, what a crash left there
/// recovered, and, with an object store, its shipper started on it.
struct Ready {
    _held: DirectoryLock,
    recovered: Recovered,
    shipping: Option<(Spool, Shipper)>,
}

/// Holds and recovers `config`'s local directory (the archive, or the spool), and starts
/// shipping it to `store` when there is one.
///
/// # Errors
/// Another process holds the directory, or it cannot be read or recovered.
fn ready(
    config: &Config,
    store: Option<Store>,
    counters: &Arc<Counters>,
) -> Result<Ready, Failure> {
    let dir = config.local_dir();
    let held = recovery::lock(&dir)?;
    let recovered = recovery::recover(&dir, &held, config.compression)?;
    counters.recovered_files.add(recovered.files);
    counters.recovered_rows.add(recovered.rows);
    counters.journal_torn_tails.add(recovered.torn);
    let shipping = match store {
        Some(store) => Some(Shipper::start(
            store,
            &dir,
            config.spool_max_bytes,
            Arc::clone(counters),
        )?),
        None => None,
    };
    Ok(Ready {
        _held: held,
        recovered,
        shipping,
    })
}
