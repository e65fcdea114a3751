//! `flowvm collect`: the collector, from its configuration to a clean stop.

use std::io::Write;
use std::time::Duration;

use flowvm_vm::{Compiler, Limits};

use crate::cli::CollectArgs;
use crate::collector::Collector;
use crate::command::{Failure, check_store, ready, registry};
use crate::telemetry;

/// How long a stop waits for the spool's last uploads; what is left is shipped at the next
/// start.
const SHIP_AT_STOP: Duration = Duration::from_secs(30);

/// Runs the collector until SIGINT or SIGTERM.
///
/// # Errors
/// A bad configuration, a store that cannot be written, a port that cannot be bound, an
/// archive directory held by another process.
pub(super) fn collect(args: &CollectArgs) -> Result<(), Failure> {
    let config = args.config()?;
    telemetry::init(&config.log_level);
    let compiler = Compiler::new(registry(config.elements.as_deref())?, Limits::default());
    let store = check_store(&config)?;
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
        let counters = collector.counters();
        let mut ready = ready(&config, store, &counters)?;
        let (collector, shipper) = match ready.shipping.take() {
            Some((spool, shipper)) => (collector.with_spool(spool), Some(shipper)),
            None => (collector, None),
        };
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
        if let Some(shipper) = shipper {
            tokio::task::block_in_place(|| shipper.finish(SHIP_AT_STOP));
        }
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
