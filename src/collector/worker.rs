//! One pipeline of the collector (`--workers N` of them): a thread that receives on its own UDP
//! sockets (one of each SO_REUSEPORT group, so the kernel keeps every exporter address and port
//! on one worker), takes the Messages of the TCP connections given to it, and decodes both
//! inline with its own [`Decoder`]: templates, held data and sequence state are the worker's
//! alone, with no lock on the hot path. A datagram costs one wake-up at most (under a steady
//! stream far fewer: `Moderation`) and no copy or hand-over before it is decoded; the
//! datagrams waiting at a wake-up are taken up to [`BATCH`] to a system call (`recvmmsg`). Decoded batches go to the worker's archive thread.
//!
//! When the archive's queue is full, decoded rows wait in the worker and nothing more is
//! decoded until they are handed over: datagrams received meanwhile are dropped and counted
//! (`queue_full`, or `archive_full` while the archive cannot write), TCP Messages wait in
//! their queue, pushing back on their exporters.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use flowvm_vm::wire::packet::SequenceUnit;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::LocalSet;
use tracing::{debug, error};

use crate::clock;
use crate::collector::allow::{AllowList, Refusals};
use crate::collector::decode::Decoder;
use crate::collector::session::TransportSession;
use crate::collector::udp::{self, BATCH, Batch};
use crate::collector::{Inbound, Outbound, TICK};
use crate::telemetry::{Counters, DropReason};

/// Datagrams taken from one socket per wake-up before the worker's other tasks get a turn.
const DRAIN_MAX: usize = 256;

/// The longest a worker under a steady stream of datagrams pauses (see [`Moderation`]): at
/// 40,000 datagrams a second, 4 ms rather than 1 took the worker's CPU a record down a tenth
/// (README, Figures); a flow record waits that much longer, after the minutes its flow was
/// metered.
const PAUSE_MAX: Duration = Duration::from_millis(4);

/// Datagrams a pause of [`PAUSE_MAX`] must be expected to gather to be worth the wake-up that
/// ends it.
const PAUSE_MIN_DATAGRAMS: u128 = 4;

/// Octets of receive buffer the kernel charges a datagram beyond its payload, at most (the
/// buffer's own overhead; a payload is counted twice besides).
const DATAGRAM_OVERHEAD: u128 = 1024;

/// Interrupt moderation, as a NIC does it, for a worker's UDP socket: under a steady stream the
/// worker would wake for nearly every datagram (a wake-up costs about as much as decoding a
/// datagram of 30 records), so after a wake-up that emptied the socket it sleeps, when the
/// datagrams it took since the wake-up before say the stream brings at least
/// [`PAUSE_MIN_DATAGRAMS`] in [`PAUSE_MAX`], and then takes what came meanwhile in one go. The
/// pause is [`PAUSE_MAX`], or shorter if at that rate a quarter of the socket's receive buffer
/// would fill first; a sparser stream gets a wake-up per datagram, as before. A datagram waits
/// at most [`PAUSE_MAX`] longer.
#[derive(Debug)]
struct Moderation {
    previous: Option<Instant>,
    /// Octets the socket may take in during a pause: a quarter of its receive buffer.
    budget: u128,
}

impl Moderation {
    fn new(rcvbuf: usize) -> Self {
        Self {
            previous: None,
            budget: u128::try_from(rcvbuf / 4).unwrap_or(0),
        }
    }

    /// A wake-up at `now` took `datagrams` datagrams of `octets` octets in all and emptied the
    /// socket: how long to sleep before the next look.
    fn pause(&mut self, now: Instant, datagrams: usize, octets: usize) -> Option<Duration> {
        let since = now.saturating_duration_since(self.previous.replace(now)?);
        let (since, datagrams) = (since.as_nanos(), datagrams as u128);
        if since == 0 || datagrams * PAUSE_MAX.as_nanos() < PAUSE_MIN_DATAGRAMS * since {
            return None;
        }
        // The buffer fills at charged / since octets a nanosecond.
        let charged = 2 * octets as u128 + DATAGRAM_OVERHEAD * datagrams;
        let fills_in = self.budget * since / charged.max(1);
        let pause = fills_in.min(PAUSE_MAX.as_nanos());
        Some(Duration::from_nanos(u64::try_from(pause).unwrap_or(0)))
    }
}

/// How often a worker whose rows wait for the archive's queue tries again.
const RETRY: Duration = Duration::from_millis(5);

/// One loss figure of a worker's sequence tracker: exporter, Observation Domain, unit, lost.
pub type Loss = (String, u32, SequenceUnit, u64);

/// A worker ready to run.
#[derive(Debug)]
pub struct Worker {
    /// Its number, from 0.
    pub index: usize,
    /// Its UDP sockets, one per listening address.
    pub udp: Vec<std::net::UdpSocket>,
    /// Messages of its TCP connections, and their openings and closings.
    pub inbound: mpsc::Receiver<Inbound>,
    /// Its decoder.
    pub decoder: Decoder,
    /// Its archive thread's queue.
    pub outbound: std_mpsc::SyncSender<Outbound>,
    /// Batches its archive thread is done with, for their buffers.
    pub spent: std_mpsc::Receiver<RecordBatch>,
    /// Batches queued for every archive thread.
    pub depth: Arc<AtomicU64>,
    /// Where it publishes its per-exporter losses for the metrics page.
    pub losses: Arc<Mutex<Vec<Loss>>>,
    /// The sources allowed to send.
    pub allow: Arc<AllowList>,
}

impl Worker {
    /// Starts the worker's thread; it ends after `shutdown` once its sockets are drained and
    /// its TCP connections closed, having handed every row to the archive.
    ///
    /// # Errors
    /// The thread or its runtime could not be created.
    pub fn spawn(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        std::thread::Builder::new()
            .name(format!("flowvm-worker-{}", self.index))
            .spawn(move || runtime.block_on(self.run(shutdown)))
    }

    async fn run(self, shutdown: watch::Receiver<bool>) {
        let Self {
            index,
            udp,
            inbound,
            decoder,
            outbound,
            spent,
            depth,
            losses,
            allow,
        } = self;
        let counters = Arc::clone(decoder.counters());
        let pipeline = Rc::new(RefCell::new(Pipeline {
            decoder,
            fresh: Vec::new(),
            waiting: VecDeque::new(),
            outbound,
            spent,
            depth,
        }));
        let tasks = LocalSet::new();
        for socket in udp {
            match UdpSocket::from_std(socket) {
                Ok(socket) => {
                    tasks.spawn_local(receive(
                        socket,
                        Rc::clone(&pipeline),
                        Arc::clone(&allow),
                        Arc::clone(&counters),
                        shutdown.clone(),
                    ));
                }
                Err(e) => error!(worker = index, error = %e, "Cannot receive on a UDP socket."),
            }
        }
        tasks.spawn_local(messages(inbound, Rc::clone(&pipeline)));
        tasks.spawn_local(ticks(Rc::clone(&pipeline), losses, shutdown));
        tasks.await;
        pipeline.borrow_mut().finish();
    }
}

/// A worker's decoder and the rows it has not handed over yet.
struct Pipeline {
    decoder: Decoder,
    /// Where the decoder puts full batches.
    fresh: Vec<RecordBatch>,
    /// Batches the archive's queue had no room for yet, oldest first.
    waiting: VecDeque<RecordBatch>,
    outbound: std_mpsc::SyncSender<Outbound>,
    /// Batches the archive is done with, whose buffers the decoder's next batches reuse.
    spent: std_mpsc::Receiver<RecordBatch>,
    depth: Arc<AtomicU64>,
}

impl Pipeline {
    /// Decodes one datagram, unless rows still wait for the archive.
    fn datagram(&mut self, session: TransportSession, bytes: &[u8], now: Instant) {
        if !self.hand_over() {
            let counters = self.decoder.counters();
            let reason = if counters.archive_stalled.get() == 0 {
                DropReason::QueueFull
            } else {
                DropReason::ArchiveFull
            };
            counters.record_drop(reason, 1);
            return;
        }
        self.decoder.handle(session, bytes, now, &mut self.fresh);
        self.hand_over();
    }

    fn inbound(&mut self, item: Inbound) {
        match item {
            Inbound::Message {
                session,
                bytes,
                at,
                budget,
            } => {
                self.decoder.handle(session, &bytes, at, &mut self.fresh);
                drop(budget);
            }
            Inbound::Authenticated { session, identity } => {
                self.decoder.authenticate(session, identity);
            }
            Inbound::Closed(session) => self.decoder.close_session(session),
        }
        self.hand_over();
    }

    /// Hands decoded batches to the archive's queue as far as it has room; whether none is
    /// left waiting.
    fn hand_over(&mut self) -> bool {
        while let Ok(batch) = self.spent.try_recv() {
            self.decoder.keep_spent(batch);
        }
        self.waiting.extend(self.fresh.drain(..));
        while let Some(batch) = self.waiting.pop_front() {
            self.depth.fetch_add(1, Ordering::Relaxed);
            match self.outbound.try_send(Outbound::Batch(batch)) {
                Ok(()) => {}
                Err(std_mpsc::TrySendError::Full(Outbound::Batch(batch))) => {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                    self.waiting.push_front(batch);
                    return false;
                }
                // The archive thread is gone (it panicked): nothing can take the rows.
                Err(_) => {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        true
    }

    /// Timers, and every row held handed over, so a decoded record reaches the archive within
    /// a tick.
    fn tick(&mut self, losses: &Mutex<Vec<Loss>>) {
        self.decoder.expire(clock::now());
        self.decoder.flush(&mut self.fresh);
        if let Ok(mut published) = losses.lock() {
            published.clear();
            published.extend(self.decoder.sequences().lost().map(
                |(session, domain, unit, lost)| (session.exporter_text(), domain.0, unit, lost),
            ));
        }
        self.hand_over();
        let _ = self.outbound.try_send(Outbound::Tick);
    }

    /// At shutdown: every row to the archive, waiting for room as long as it takes.
    fn finish(&mut self) {
        self.decoder.finish(&mut self.fresh);
        self.waiting.extend(self.fresh.drain(..));
        for batch in self.waiting.drain(..) {
            self.depth.fetch_add(1, Ordering::Relaxed);
            if self.outbound.send(Outbound::Batch(batch)).is_err() {
                self.depth.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Receives and decodes datagrams until shutdown, then what the kernel still holds, so
/// nothing received before the signal is lost.
async fn receive(
    socket: UdpSocket,
    pipeline: Rc<RefCell<Pipeline>>,
    allow: Arc<AllowList>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut receiver = Receiver {
        collector: socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        batch: Batch::default(),
        refusals: Refusals::default(),
        allow,
        counters,
    };
    let mut moderation = Moderation::new(udp::granted_rcvbuf(&socket));
    loop {
        tokio::select! {
            ready = socket.readable() => match ready {
                Ok(()) => {
                    let woke = clock::now();
                    let recv = |batch: &mut Batch| {
                        socket.try_io(Interest::READABLE, || batch.receive(&socket))
                    };
                    let taken = receiver.drain(recv, &mut pipeline.borrow_mut(), woke);
                    if !taken.empty {
                        tokio::task::yield_now().await;
                    } else if let Some(pause) =
                        moderation.pause(woke, taken.datagrams, taken.octets)
                    {
                        // The thread itself sleeps: parked in the runtime's epoll instead,
                        // it would be woken by the very datagrams it waits for. Then the
                        // worker's other tasks (TCP, ticks) get their turn before the socket,
                        // ready again at once, is read.
                        std::thread::sleep(pause);
                        tokio::task::yield_now().await;
                    }
                }
                Err(e) => debug!(error = %e, "UDP receive error."),
            },
            _ = shutdown.changed() => break,
        }
    }
    // Past the runtime's view of readiness (which may not have seen the last datagrams yet):
    // ask the kernel itself until it has none.
    match socket.into_std() {
        Ok(socket) => {
            let recv = |batch: &mut Batch| batch.receive(&socket);
            while !receiver
                .drain(recv, &mut pipeline.borrow_mut(), clock::now())
                .empty
            {}
        }
        Err(e) => error!(error = %e, "Cannot drain a UDP socket at shutdown."),
    }
}

/// One socket's receive state.
struct Receiver {
    collector: SocketAddr,
    batch: Batch,
    refusals: Refusals,
    allow: Arc<AllowList>,
    counters: Arc<Counters>,
}

impl Receiver {
    /// Decodes the datagrams waiting at `now`, at most [`DRAIN_MAX`], taken [`BATCH`] to a
    /// receive call.
    fn drain(
        &mut self,
        mut recv: impl FnMut(&mut Batch) -> std::io::Result<usize>,
        pipeline: &mut Pipeline,
        now: Instant,
    ) -> Drained {
        let mut taken = Drained::default();
        for _ in 0..DRAIN_MAX / BATCH {
            match recv(&mut self.batch) {
                Ok(_) => {
                    for (datagram, exporter) in self.batch.datagrams() {
                        taken.datagrams += 1;
                        taken.octets += datagram.len();
                        let Some(exporter) = exporter else {
                            debug!("A datagram without a sender address (not UDP over IP).");
                            continue;
                        };
                        if !self.allow.permits(exporter.ip()) {
                            self.refusals
                                .refuse(exporter.ip(), "datagram", &self.counters);
                            continue;
                        }
                        let session = TransportSession::Udp {
                            exporter,
                            collector: self.collector,
                        };
                        pipeline.datagram(session, datagram, now);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    taken.empty = true;
                    return taken;
                }
                Err(e) => {
                    debug!(error = %e, "UDP receive error.");
                    taken.empty = true;
                    return taken;
                }
            }
        }
        taken
    }
}

/// What one drain of a socket took.
#[derive(Debug, Default)]
struct Drained {
    /// The socket had no more.
    empty: bool,
    datagrams: usize,
    /// Octets of those datagrams.
    octets: usize,
}

/// Decodes the Messages of the worker's TCP connections until every connection has closed,
/// taking the next only once the rows before it have been handed over (back-pressure).
async fn messages(mut inbound: mpsc::Receiver<Inbound>, pipeline: Rc<RefCell<Pipeline>>) {
    while let Some(item) = inbound.recv().await {
        while !pipeline.borrow_mut().hand_over() {
            tokio::time::sleep(RETRY).await;
        }
        pipeline.borrow_mut().inbound(item);
    }
}

/// Every [`TICK`] until shutdown: timers, flushes and loss figures.
async fn ticks(
    pipeline: Rc<RefCell<Pipeline>>,
    losses: Arc<Mutex<Vec<Loss>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = every.tick() => pipeline.borrow_mut().tick(&losses),
            _ = shutdown.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_is_taken_a_pause_at_a_time_and_a_sparse_one_a_datagram_at_a_time() {
        let start = clock::now();
        let at = |us: u64| start + Duration::from_micros(us);
        let mut m = Moderation::new(32 << 20);
        // The first wake-up has nothing to go by.
        assert_eq!(m.pause(at(0), 1, 1400), None);
        // Datagrams 25 us apart (40,000 a second): every wake-up pauses the longest, including
        // the one that ends a pause.
        assert_eq!(m.pause(at(25), 1, 1400), Some(PAUSE_MAX));
        assert_eq!(m.pause(at(1_035), 40, 40 * 1400), Some(PAUSE_MAX));
        // The stream thins to one datagram every 2 ms: not worth a pause.
        assert_eq!(m.pause(at(3_035), 1, 1400), None);
        assert_eq!(m.pause(at(5_035), 1, 1400), None);
    }

    #[test]
    fn a_pause_ends_before_a_quarter_of_the_receive_buffer_fills() {
        let start = clock::now();
        let at = |us: u64| start + Duration::from_micros(us);
        // Linux's default buffer (net.core.rmem_max 212,992, doubled by the kernel), 100,000
        // datagrams of 1,400 octets a second: a quarter, 106,496 octets, is charged
        // (2 x 1,400 + 1,024 a datagram) in 278 us.
        let mut m = Moderation::new(425_984);
        assert_eq!(m.pause(at(0), 1, 1400), None);
        let pause = m.pause(at(10), 1, 1400).unwrap();
        assert_eq!(pause.as_micros(), 278);
    }
}
