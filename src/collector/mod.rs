//! The Collecting Process: `--workers N` pipelines. Each worker receives on its own UDP socket
//! of every listening address (SO_REUSEPORT groups) and takes the Messages of the TCP
//! connections given to it through a bounded queue, decodes them inline with its own decoder,
//! and feeds its own archive thread through another bounded queue. Receiving never waits on
//! disk, and every drop at a full queue is counted.
//!
//! ```text
//! UDP socket i ───────────────────────┐
//! tcp.rs ─► Inbound queue i ─► worker i (Decoder) ─► archive queue i ─► archive thread i
//! ```

pub mod allow;
pub mod batch;
pub mod decode;
pub mod pending;
pub mod plan;
pub mod programs;
pub mod sequence;
pub mod session;
pub mod tcp;
pub mod templates;
pub mod tls;
pub mod udp;
pub mod worker;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use flowvm_vm::Compiler;
use flowvm_vm::wire::packet::SequenceUnit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::{error, info};

use crate::clock;
use crate::collector::allow::AllowList;
use crate::collector::decode::Decoder;
use crate::collector::session::TransportSession;
use crate::config::Config;
use crate::sink::parquet::Archive;
use crate::sink::spool::Spool;
use crate::sink::{self, Sink};
use crate::telemetry::Counters;

/// The maps of the decode path (sessions, templates, sequence streams, held data, batches),
/// keyed by what exporters send: hashed with foldhash (SipHash was a tenth of the decode time),
/// seeded at random for each map, so keys cannot be chosen to collide without seeing the seed.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How often a worker hands its rows to its archive thread: with the default sync interval
/// (0.5 s), a decoded record reaches the disk well within a second.
const TICK: Duration = Duration::from_millis(250);

/// What a TCP connection hands its worker.
#[derive(Debug)]
pub enum Inbound {
    /// One whole IPFIX Message.
    Message {
        /// Where it came from.
        session: TransportSession,
        /// The Message, header included.
        bytes: Vec<u8>,
        /// When it was received.
        at: Instant,
        /// Its octets' share of the queue's byte budget, returned when it is decoded.
        budget: OwnedSemaphorePermit,
    },
    /// A TLS session authenticated its exporter: rows of `session` carry `identity`.
    Authenticated {
        /// The TLS connection.
        session: TransportSession,
        /// The exporter's name from its certificate.
        identity: Arc<str>,
    },
    /// A TCP connection ended.
    Closed(TransportSession),
}

/// What a worker hands its archive thread.
#[derive(Debug)]
pub enum Outbound {
    /// Rows to archive.
    Batch(RecordBatch),
    /// Every [`TICK`]: complete the files whose window has ended.
    Tick,
}

/// A bound collector: sockets open, nothing running yet.
#[derive(Debug)]
pub struct Collector {
    config: Config,
    compiler: Compiler,
    /// The UDP sockets of each worker, one per listening address.
    udp: Vec<Vec<UdpSocket>>,
    tcp: Vec<TcpListener>,
    /// TLS listeners and what their handshakes use.
    tls: Option<(Vec<TcpListener>, Arc<tls::Acceptor>)>,
    metrics: Option<TcpListener>,
    counters: Arc<Counters>,
    /// The spool's bound and bell, when the archive is shipped to an object store.
    spool: Option<Spool>,
}

/// Why the collector could not start or run.
#[derive(Debug)]
pub enum CollectError {
    /// A listener could not be bound.
    Bind {
        /// What the socket was for: `udp`, `tcp`, `tls` or `metrics`.
        purpose: &'static str,
        /// The address it was to be bound to.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS certificate, key or client CA cannot be used.
    Tls(tls::TlsError),
    /// A thread could not be started, or a decode or archive thread panicked.
    Thread(String),
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind {
                purpose,
                addr,
                source,
            } if source.kind() == std::io::ErrorKind::AddrInUse => write!(
                f,
                "cannot listen on {purpose} {addr}: the port is in use by another socket \
                 (another collector?); stop it, choose other addresses with --listen, or share \
                 UDP ports on purpose with --reuse-port"
            ),
            Self::Bind {
                purpose,
                addr,
                source,
            } => write!(f, "cannot listen on {purpose} {addr}: {source}"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Thread(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for CollectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } => Some(source),
            Self::Tls(e) => Some(e),
            Self::Thread(_) => None,
        }
    }
}

impl Collector {
    /// Binds every listener of `config`.
    ///
    /// # Errors
    /// [`CollectError::Bind`] for a socket that cannot be bound, with its address: a UDP port
    /// that another socket holds included, unless `reuse_port` shares it on purpose.
    pub async fn bind(config: Config, compiler: Compiler) -> Result<Self, CollectError> {
        let failed = |purpose, addr| {
            move |source| CollectError::Bind {
                purpose,
                addr,
                source,
            }
        };
        let workers = config.worker_count();
        let mut udp: Vec<Vec<UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
        let mut tcp = Vec::new();
        let udp_addrs = config.listen.iter().chain(&config.udp_listen);
        for &addr in udp_addrs.filter(|_| config.udp) {
            let group = udp::bind_group(addr, config.rcvbuf, config.reuse_port, workers)
                .map_err(failed("udp", addr))?;
            for (sockets, socket) in udp.iter_mut().zip(group) {
                sockets.push(socket);
            }
        }
        for &addr in config.listen.iter().filter(|_| config.tcp) {
            tcp.push(tcp::bind(addr).map_err(failed("tcp", addr))?);
        }
        let tls = match config.tls_files() {
            Some(files) => {
                let acceptor = tls::Acceptor::new(files).map_err(CollectError::Tls)?;
                let mut listeners = Vec::new();
                for &addr in &config.tls_listen {
                    listeners.push(tcp::bind(addr).map_err(failed("tls", addr))?);
                }
                Some((listeners, acceptor))
            }
            None => None,
        };
        let metrics = match config.metrics {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(failed("metrics", addr))?,
            ),
            None => None,
        };
        Ok(Self {
            config,
            compiler,
            udp,
            tcp,
            tls,
            metrics,
            counters: Arc::new(Counters::default()),
            spool: None,
        })
    }

    /// Addresses the UDP sockets are bound to (every worker has one socket on each).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .first()
            .into_iter()
            .flatten()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Addresses the TCP listeners are bound to.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Addresses the TLS listeners are bound to.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls
            .iter()
            .flat_map(|(listeners, _)| listeners)
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Address of the metrics endpoint.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Writes the archive into a spool that is shipped to an object store.
    #[must_use]
    pub fn with_spool(mut self, spool: Spool) -> Self {
        self.spool = Some(spool);
        self
    }

    /// The counters every thread shares.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Runs until `shutdown` turns true, then completes every file and returns.
    ///
    /// # Errors
    /// [`CollectError::Thread`]: a thread that could not be started or that panicked.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), CollectError> {
        let udp_ports: Vec<u16> = self.udp_addrs().iter().map(SocketAddr::port).collect();
        let Self {
            config,
            compiler,
            udp,
            tcp,
            tls,
            metrics,
            counters,
            spool,
        } = self;
        for socket in udp.first().into_iter().flatten() {
            info!(addr = %socket.local_addr().map_err(|e| CollectError::Thread(e.to_string()))?, rcvbuf = udp::granted_rcvbuf(socket), workers = udp.len(), "Listening on UDP.");
        }
        // A queue of 64 KiB Messages would hold `queue` × 64 KiB: the octets are bounded too.
        let budget = Arc::new(Semaphore::new(
            config.queue_max_bytes.min(Semaphore::MAX_PERMITS),
        ));
        let archive_depth = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let allow = Arc::new(AllowList::new(config.allow.clone()));
        let decoder_config = config.decoder();
        let mut threads = Vec::new();
        let mut senders = Vec::new();
        let mut losses = Vec::new();
        // One entry per worker, bound in `bind` (empty without UDP).
        for (index, sockets) in udp.into_iter().enumerate() {
            let (outbound_tx, outbound_rx) = std_mpsc::sync_channel::<Outbound>(64);
            // Batches the archive is done with, back to the worker for its next ones' buffers.
            let (spent_tx, spent_rx) = std_mpsc::sync_channel::<RecordBatch>(SPENT_BATCHES);
            let archive = Archive::new(config.archive(), Arc::clone(&counters)).for_worker(index);
            let archive = match &spool {
                Some(spool) => archive.with_spool(spool.clone()),
                None => archive,
            };
            threads.push(spawn_archive(
                index,
                archive,
                (outbound_rx, spent_tx),
                Arc::clone(&counters),
                Arc::clone(&archive_depth),
                Duration::from_millis(config.sync_interval_ms),
                Arc::clone(&stopping),
            )?);
            let (inbound_tx, inbound_rx) = mpsc::channel(config.queue);
            senders.push(inbound_tx);
            let published = Arc::new(Mutex::new(Vec::new()));
            losses.push(Arc::clone(&published));
            let worker = worker::Worker {
                index,
                udp: sockets,
                inbound: inbound_rx,
                decoder: Decoder::new(compiler.clone(), decoder_config, Arc::clone(&counters)),
                outbound: outbound_tx,
                spent: spent_rx,
                depth: Arc::clone(&archive_depth),
                losses: published,
                allow: Arc::clone(&allow),
            };
            threads.push(
                worker.spawn(shutdown.clone()).map_err(|e| {
                    CollectError::Thread(format!("cannot start worker {index}: {e}"))
                })?,
            );
        }

        let mut tasks = tokio::task::JoinSet::new();
        // One set of connection slots for every TCP listener.
        let shared = tcp::Shared {
            workers: Arc::from(senders.clone()),
            budget: Arc::clone(&budget),
            counters: Arc::clone(&counters),
            slots: tcp::Slots::new(config.tcp_limits()),
            allow: Arc::clone(&allow),
        };
        for listener in tcp {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "Listening on TCP.");
            }
            tasks.spawn(tcp::accept(
                listener,
                shared.clone(),
                None,
                shutdown.clone(),
            ));
        }
        if let Some((listeners, acceptor)) = tls {
            for listener in listeners {
                if let Ok(addr) = listener.local_addr() {
                    info!(%addr, "Listening on TLS.");
                }
                let tls = Some(Arc::clone(&acceptor));
                tasks.spawn(tcp::accept(listener, shared.clone(), tls, shutdown.clone()));
            }
            tasks.spawn(acceptor.watch(shutdown.clone()));
        }
        drop(shared);
        tasks.spawn(gauges(
            senders,
            Arc::clone(&counters),
            udp_ports,
            config.queue,
            shutdown.clone(),
        ));
        let metrics_task = metrics.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "Serving Prometheus metrics.");
            }
            tokio::spawn(serve_metrics(listener, Arc::clone(&counters), losses))
        });

        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                error!(error = %e, "A listener task failed.");
            }
        }
        // Shutting down: an archive that still cannot write stops retrying (its journals stay).
        stopping.store(true, Ordering::Relaxed);
        // Every TCP sender is gone: each worker drains its sockets and queue, hands every row
        // to its archive thread and ends; each archive thread completes its files and ends.
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                .await;
        if let Some(task) = metrics_task {
            task.abort();
        }
        match joined {
            Ok(true) => Ok(()),
            _ => Err(CollectError::Thread(
                "a worker or archive thread panicked".to_owned(),
            )),
        }
    }
}

/// Starts worker `index`'s archive thread.
fn spawn_archive(
    index: usize,
    mut archive: Archive,
    (outbound, spent): (
        std_mpsc::Receiver<Outbound>,
        std_mpsc::SyncSender<RecordBatch>,
    ),
    counters: Arc<Counters>,
    depth: Arc<AtomicU64>,
    sync_every: Duration,
    stopping: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, CollectError> {
    std::thread::Builder::new()
        .name(format!("flowvm-sink-{index}"))
        .spawn(move || {
            archive_loop(
                &mut archive,
                (&outbound, &spent),
                &counters,
                &depth,
                sync_every,
                &stopping,
            );
        })
        .map_err(|e| CollectError::Thread(format!("cannot start an archive thread: {e}")))
}

/// Every [`TICK`]: the gauges only the receive side sees.
async fn gauges(
    workers: Vec<mpsc::Sender<Inbound>>,
    counters: Arc<Counters>,
    udp_ports: Vec<u16>,
    queue: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let depth: usize = workers.iter().map(|w| queue - w.capacity()).sum();
                counters.decode_queue_depth.set(u64::try_from(depth).unwrap_or(0));
                counters.udp_kernel_drops.set(udp::kernel_drops(&udp_ports));
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Spent batches on their way back to a worker, at most; past it they are freed here.
const SPENT_BATCHES: usize = 16;

/// The archive thread: writes batches (retrying while the archive cannot write), completes
/// files at rotation, and syncs the journals every `sync_every` (after every batch when 0), so
/// what reached the archive survives a crash within that interval. The batches it is done
/// with go back to the worker (`spent`), whose next batches are written into their buffers.
fn archive_loop(
    archive: &mut Archive,
    (outbound, spent): (
        &std_mpsc::Receiver<Outbound>,
        &std_mpsc::SyncSender<RecordBatch>,
    ),
    counters: &Counters,
    depth: &AtomicU64,
    sync_every: Duration,
    stopping: &AtomicBool,
) {
    let mut last_sync = clock::now();
    loop {
        let wait = sync_every
            .saturating_sub(clock::now().saturating_duration_since(last_sync))
            .max(Duration::from_millis(1));
        match outbound.recv_timeout(wait) {
            Ok(Outbound::Batch(batch)) => {
                depth.fetch_sub(1, Ordering::Relaxed);
                counters
                    .archive_queue_depth
                    .set(depth.load(Ordering::Relaxed));
                sink::write_with_retry(archive, &batch, clock::unix_seconds, counters, || {
                    stopping.load(Ordering::Relaxed)
                });
            }
            Ok(Outbound::Tick) => {
                if let Err(e) = archive.rotate(clock::unix_seconds()) {
                    error!(error = %e, "Failed to complete a Parquet file; its journal stays, and the next rotation tries again.");
                    counters.record_archive_error(&e);
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
        sink::sync_when_due(archive, &mut last_sync, sync_every, counters);
        for batch in archive.take_spent() {
            // A full queue or a worker gone: freed here, as before.
            let _ = spent.try_send(batch);
        }
    }
    if let Err(e) = archive.close() {
        error!(error = %e, "Failed to complete a Parquet file at shutdown; its journal stays for recovery.");
        counters.record_archive_error(&e);
    }
}

/// Label sets of each per-exporter loss metric published at most: an exporter can invent
/// Observation Domains, and the metrics page must not grow with them.
const MAX_LOSS_SERIES: usize = 1024;

/// The per-exporter loss metrics, `{exporter, observation_domain_id}`:
/// `flowvm_exporter_records_lost_total` (IPFIX Data Records, NetFlow v5 flows) and
/// `flowvm_exporter_packets_lost_total` (NetFlow v9 export packets, which its sequence numbers
/// count). Each lists the streams that lost most first, at most [`MAX_LOSS_SERIES`], the rest
/// summed under `other`.
fn render_losses(workers: &[Arc<Mutex<Vec<worker::Loss>>>]) -> String {
    let mut out = String::new();
    for (unit, name) in [
        (SequenceUnit::Records, "flowvm_exporter_records_lost_total"),
        (SequenceUnit::Packets, "flowvm_exporter_packets_lost_total"),
    ] {
        // A TCP exporter's connections may be on several workers: their losses add up.
        let mut by_exporter: BTreeMap<(String, u32), u64> = BTreeMap::new();
        for published in workers {
            let Ok(losses) = published.lock() else {
                continue;
            };
            for (exporter, domain, _, lost) in losses.iter().filter(|l| l.2 == unit) {
                *by_exporter.entry((exporter.clone(), *domain)).or_insert(0) += lost;
            }
        }
        let mut series: Vec<((String, u32), u64)> = by_exporter.into_iter().collect();
        // Stable: equal losses keep the address order.
        series.sort_by_key(|s| std::cmp::Reverse(s.1));
        let other: Option<u64> = series
            .get(MAX_LOSS_SERIES..)
            .filter(|rest| !rest.is_empty())
            .map(|rest| rest.iter().map(|(_, lost)| lost).sum());
        series.truncate(MAX_LOSS_SERIES);
        let _ = writeln!(out, "# TYPE {name} counter");
        for ((exporter, domain), lost) in series {
            let _ = writeln!(
                out,
                "{name}{{exporter=\"{exporter}\",observation_domain_id=\"{domain}\"}} {lost}"
            );
        }
        if let Some(lost) = other {
            let _ = writeln!(
                out,
                "{name}{{exporter=\"other\",observation_domain_id=\"other\"}} {lost}"
            );
        }
    }
    out
}

/// A minimal HTTP endpoint: any request gets the Prometheus text of every counter.
async fn serve_metrics(
    listener: TcpListener,
    counters: Arc<Counters>,
    losses: Vec<Arc<Mutex<Vec<worker::Loss>>>>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let mut body = counters.render();
        body.push_str(&render_losses(&losses));
        crate::telemetry::process::render(&mut body);
        tokio::spawn(async move {
            let mut request = [0_u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
