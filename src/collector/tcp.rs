//! TCP receive: many concurrent exporters, each connection its own Transport Session, framed
//! by the Message Header's length (RFC 7011 §10.4). A malformed header closes that connection
//! only. A TLS listener runs the same path over the TLS stream once the handshake is done.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flowvm_vm::wire::HEADER_LEN;
use flowvm_vm::wire::header::MessageHeader;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info, warn};

use crate::clock;
use crate::collector::Inbound;
use crate::collector::allow::{AllowList, Refusals};
use crate::collector::session::TransportSession;
use crate::collector::tls::Acceptor;
use crate::telemetry::{Counters, DropReason, LogLimiter};

/// Seconds between two warnings about one exporter address and one reason.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Binds a TCP listener; an IPv6 one takes only IPv6, so `[::]` and `0.0.0.0` can share a
/// port. SO_REUSEADDR only lets a restarted collector bind while old connections sit in
/// TIME_WAIT: on Linux it never lets two listeners share a port.
///
/// # Errors
/// The socket cannot be created, bound (the port is taken) or put to listen.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if addr.is_ipv6() {
        socket2::SockRef::from(&socket).set_only_v6(true)?;
    }
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The bounds and deadlines of TCP connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections open at once over every TCP listener.
    pub max_connections: usize,
    /// Connections open at once from one exporter address: below `max_connections`, so that
    /// no address (stalled peers, a reconnect loop, an attack) can take every slot.
    pub max_per_exporter: usize,
    /// Time a new connection has to deliver its first complete Message Header.
    pub header_timeout: Duration,
    /// Silence mid-stream after which a connection is closed.
    pub idle: Duration,
}

/// The connection slots every TCP listener shares, counted in all and per exporter address.
#[derive(Debug)]
pub struct Slots {
    limits: TcpLimits,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// Open connections per address; an address leaves the map with its last connection, so
    /// the map never has more entries than `max_connections`.
    per_exporter: HashMap<IpAddr, usize>,
}

/// One open connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    exporter: IpAddr,
}

impl Slots {
    /// Slots for `limits`.
    pub fn new(limits: TcpLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for a connection from `exporter`, or the bound it would break.
    fn take(self: &Arc<Self>, exporter: IpAddr) -> Result<Slot, DropReason> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = held.per_exporter.get(&exporter).copied().unwrap_or(0);
        if mine >= self.limits.max_per_exporter {
            return Err(DropReason::ExporterConnectionLimit);
        }
        if held.total >= self.limits.max_connections {
            return Err(DropReason::ConnectionLimit);
        }
        held.total += 1;
        held.per_exporter.insert(exporter, mine + 1);
        Ok(Slot {
            slots: Arc::clone(self),
            exporter,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_exporter.get_mut(&self.exporter) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.per_exporter.remove(&self.exporter);
            }
        }
    }
}

/// Numbers the connections of every listener: each is its own Transport Session.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// What every connection of a listener shares.
#[derive(Clone, Debug)]
pub struct Shared {
    /// Each worker's queue: an exporter's connections all go to one worker, chosen by its
    /// address.
    pub workers: Arc<[mpsc::Sender<Inbound>]>,
    /// The queue's octet budget.
    pub budget: Arc<Semaphore>,
    /// The counters.
    pub counters: Arc<Counters>,
    /// The connection slots of every TCP listener.
    pub slots: Arc<Slots>,
    /// The sources allowed to connect.
    pub allow: Arc<AllowList>,
}

/// Accepts connections until shutdown, within the bounds of `slots`: a connection past a
/// bound is closed at once, counted, and logged at most once per address and interval. With
/// `tls`, each connection first completes a TLS handshake within the first header's deadline,
/// holding its slot no longer; a failed one is counted by reason and logged rate-limited.
pub async fn accept(
    listener: TcpListener,
    shared: Shared,
    tls: Option<Arc<Acceptor>>,
    shutdown: watch::Receiver<bool>,
) {
    let Shared {
        workers,
        budget,
        counters,
        slots,
        allow,
    } = shared;
    let mut refusals = Refusals::default();
    let limiter = Arc::new(Mutex::new(LogLimiter::new(WARN_INTERVAL)));
    let mut stop = shutdown.clone();
    loop {
        let (stream, exporter) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "TCP accept error.");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        if !allow.permits(exporter.ip()) {
            refusals.refuse(exporter.ip(), "TCP connection", &counters);
            continue;
        }
        // An IPv4 exporter seen through a dual-stack socket is the same address.
        let slot = match slots.take(exporter.ip().to_canonical()) {
            Ok(slot) => slot,
            Err(reason) => {
                counters.record_drop(reason, 1);
                if let Some(suppressed) = warning_allowed(&limiter, exporter, reason.label()) {
                    warn!(%exporter, reason = reason.label(), suppressed, "Refused a TCP connection over a connection bound.");
                }
                continue;
            }
        };
        counters.connections_accepted.add(1);
        counters.connections_open.add(1);
        let session = TransportSession::Tcp {
            exporter,
            connection: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        };
        let (inbound, budget, counters, limiter, shutdown, tls) = (
            worker_for(&workers, exporter.ip()).clone(),
            Arc::clone(&budget),
            Arc::clone(&counters),
            Arc::clone(&limiter),
            shutdown.clone(),
            tls.clone(),
        );
        let limits = slots.limits;
        tokio::spawn(async move {
            let peer = Peer {
                inbound: &inbound,
                budget: &budget,
                counters: &counters,
                limiter: &limiter,
                limits,
            };
            let reason = match tls {
                None => connection(stream, exporter, session, peer, shutdown).await,
                Some(tls) => {
                    let mut stop = shutdown.clone();
                    let handshake = tokio::select! {
                        done = tls.handshake(stream, limits.header_timeout) => Some(done),
                        _ = stop.changed() => None,
                    };
                    match handshake {
                        None => "shutdown",
                        Some(Ok((stream, identity))) => {
                            counters.tls_sessions.add(1);
                            info!(%exporter, identity = identity.as_deref().unwrap_or("none"), "TLS session established.");
                            if let Some(identity) = identity {
                                let _ = inbound
                                    .send(Inbound::Authenticated {
                                        session,
                                        identity: Arc::from(identity),
                                    })
                                    .await;
                            }
                            connection(stream, exporter, session, peer, shutdown).await
                        }
                        Some(Err(reason)) => peer.handshake_failed(exporter, reason),
                    }
                }
            };
            debug!(%session, reason, "TCP connection closed.");
            let _ = inbound.send(Inbound::Closed(session)).await;
            counters
                .connections_open
                .set(counters.connections_open.get().saturating_sub(1));
            drop(slot);
        });
    }
}

/// The queue of the worker that takes `exporter`'s connections.
fn worker_for(workers: &[mpsc::Sender<Inbound>], exporter: IpAddr) -> &mpsc::Sender<Inbound> {
    let key = match exporter.to_canonical() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            // Fold the address: its high and low halves both count.
            u64::try_from((bits >> 64) ^ (bits & u128::from(u64::MAX))).unwrap_or(0)
        }
    };
    let n = u64::try_from(workers.len().max(1)).unwrap_or(1);
    let index = usize::try_from(key.wrapping_mul(0x9e37_79b9_7f4a_7c15) % n).unwrap_or(0);
    &workers[index]
}

/// Whether a warning about `reason` from `exporter`'s address may be logged now; how many
/// were suppressed since the last one.
fn warning_allowed(
    limiter: &Mutex<LogLimiter>,
    exporter: SocketAddr,
    reason: &'static str,
) -> Option<u64> {
    limiter
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .allow(exporter.ip(), reason, clock::now())
}

/// What a connection's task shares with the rest of the collector.
#[derive(Clone, Copy)]
struct Peer<'a> {
    inbound: &'a mpsc::Sender<Inbound>,
    budget: &'a Arc<Semaphore>,
    counters: &'a Counters,
    limiter: &'a Mutex<LogLimiter>,
    limits: TcpLimits,
}

impl Peer<'_> {
    /// A TLS handshake failed for `reason`: counted, logged at most once per address, reason
    /// and interval.
    fn handshake_failed(&self, exporter: SocketAddr, reason: &'static str) -> &'static str {
        self.counters.record_tls_failure(reason);
        if let Some(suppressed) = warning_allowed(self.limiter, exporter, reason) {
            warn!(%exporter, reason, suppressed, "Refused a TLS connection: the handshake failed.");
        }
        "TLS handshake failed"
    }

    /// The peer did not complete its first Message Header in time: counted, logged at most
    /// once per address and interval.
    fn header_timeout(&self, exporter: SocketAddr) -> &'static str {
        let reason = DropReason::TcpHeaderTimeout;
        self.counters.record_drop(reason, 1);
        if let Some(suppressed) = warning_allowed(self.limiter, exporter, reason.label()) {
            warn!(%exporter, suppressed, "Closed a TCP connection that sent no complete message header in time.");
        }
        "header timeout"
    }

    /// A Message cut short by the peer (closed, or silent past the idle timeout): counted
    /// as received and dropped, `truncated`.
    fn truncated(&self, exporter: SocketAddr, got: usize) {
        self.counters.messages_received.add(1);
        self.counters.messages_dropped.add(1);
        self.counters.record_drop(DropReason::Truncated, 1);
        warn!(%exporter, octets = got, "A TCP peer stopped mid-message; the partial message is dropped.");
    }

    /// Why the connection ends after `read`, with `before` octets of the Message already in
    /// hand; `None` when the buffer was filled. A Message cut part-way is counted.
    fn ended(&self, exporter: SocketAddr, read: Fill, before: usize) -> Option<&'static str> {
        let (got, closed) = match read {
            Fill::Full => return None,
            Fill::Reset(got) => return Some(self.reset(exporter, before + got)),
            Fill::Ended(got) => (before + got, true),
            Fill::Silent(got) => (before + got, false),
        };
        if got == 0 {
            return Some(if closed { "closed" } else { "idle" });
        }
        self.truncated(exporter, got);
        Some(match (closed, got < HEADER_LEN) {
            (true, true) => "closed mid-header",
            (true, false) => "closed mid-message",
            (false, true) => "idle mid-header",
            (false, false) => "idle mid-message",
        })
    }

    //= https://www.rfc-editor.org/rfc/rfc7011#section-11.6
    //# IPFIX Exporting and Collecting Processes SHOULD detect and log any
    //# SCTP association reset or TCP connection reset.
    /// The peer reset the connection, `got` octets into a Message (0: between Messages).
    fn reset(&self, exporter: SocketAddr, got: usize) -> &'static str {
        self.counters.connections_reset.add(1);
        if got > 0 {
            self.truncated(exporter, got);
        }
        warn!(%exporter, "A TCP peer reset its connection.");
        "reset"
    }
}

/// How filling a buffer from the stream ended.
enum Fill {
    /// Every octet arrived.
    Full,
    /// The peer closed the stream (or it failed) after this many octets.
    Ended(usize),
    /// The peer reset the connection after this many octets.
    Reset(usize),
    /// The peer was silent for the idle timeout after this many octets.
    Silent(usize),
}

/// Fills `buf` from `stream`; the idle timeout applies to each wait for more octets, so a
/// slow but live peer is never cut off.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8], idle: Duration) -> Fill {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|rest| !rest.is_empty()) {
        match tokio::time::timeout(idle, stream.read(rest)).await {
            Ok(Err(e)) if is_reset(&e) => return Fill::Reset(got),
            Ok(Ok(0) | Err(_)) => return Fill::Ended(got),
            Ok(Ok(n)) => got += n,
            Err(_) => return Fill::Silent(got),
        }
    }
    Fill::Full
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
    )
}

/// Reads Messages from one connection until it ends; returns why it ended.
async fn connection<S: AsyncRead + Unpin>(
    mut stream: S,
    exporter: SocketAddr,
    session: TransportSession,
    peer: Peer<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> &'static str {
    let Peer {
        inbound,
        budget,
        counters,
        limits,
        ..
    } = peer;
    let idle = limits.idle;
    let mut first = true;
    loop {
        let mut header = [0_u8; HEADER_LEN];
        // The first header has a deadline of its own: a peer that connects and trickles or
        // stalls must not hold a slot for the whole idle timeout.
        let deadline = if first {
            limits.header_timeout
        } else {
            Duration::MAX
        };
        first = false;
        let read = tokio::select! {
            read = tokio::time::timeout(deadline, fill(&mut stream, &mut header, idle)) => match read {
                Ok(read) => read,
                Err(_) => return peer.header_timeout(exporter),
            },
            _ = shutdown.changed() => return "shutdown",
        };
        if let Some(end) = peer.ended(exporter, read, 0) {
            return end;
        }
        //= https://www.rfc-editor.org/rfc/rfc7011#section-10.4.1
        //# The IPFIX Message Header contains the Message Length
        // A bad header loses the framing of the stream: this connection ends, others go on.
        let length = match MessageHeader::decode(&header) {
            Ok(h) => usize::from(h.length),
            Err(e) => {
                counters.messages_received.add(1);
                counters.messages_dropped.add(1);
                counters.record_drop(DropReason::from(e.kind), 1);
                warn!(%exporter, reason = e.kind.label(), "Closed a TCP connection after a malformed message header.");
                return "malformed";
            }
        };
        let mut bytes = vec![0_u8; length];
        bytes
            .get_mut(..HEADER_LEN)
            .unwrap_or_default()
            .copy_from_slice(&header);
        let body = bytes.get_mut(HEADER_LEN..).unwrap_or_default();
        let read = fill(&mut stream, body, idle).await;
        if let Some(end) = peer.ended(exporter, read, HEADER_LEN) {
            return end;
        }
        // TCP is reliable: wait for room (in Messages and in octets) rather than drop: the
        // exporter is pushed back.
        let permits = u32::try_from(length).unwrap_or(u32::MAX);
        let Ok(budget) = Arc::clone(budget).acquire_many_owned(permits).await else {
            return "shutdown";
        };
        if inbound
            .send(Inbound::Message {
                session,
                bytes,
                at: clock::now(),
                budget,
            })
            .await
            .is_err()
        {
            return "shutdown";
        }
    }
}
