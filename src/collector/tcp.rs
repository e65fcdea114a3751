//! TCP receive: many concurrent exporters, each connection its own Transport Session, framed
//! by the Message Header's length (RFC 7011 §10.4). A malformed header closes that connection
//! only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flowvm_vm::wire::HEADER_LEN;
use flowvm_vm::wire::header::MessageHeader;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, warn};

use crate::clock;
use crate::collector::Inbound;
use crate::collector::session::TransportSession;
use crate::telemetry::{Counters, DropReason};

/// Accepts connections until shutdown, at most `max_connections` at once; more are closed at
/// once and counted.
pub async fn accept(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    budget: Arc<Semaphore>,
    counters: Arc<Counters>,
    max_connections: usize,
    idle: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let next = AtomicU64::new(1);
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            counters.record_drop(DropReason::ConnectionLimit, 1);
            warn!(%exporter, "Refused a TCP connection over the connection limit.");
            continue;
        };
        counters.connections_accepted.add(1);
        counters.connections_open.add(1);
        let session = TransportSession::Tcp {
            exporter,
            connection: next.fetch_add(1, Ordering::Relaxed),
        };
        let (inbound, budget, counters, shutdown) = (
            inbound.clone(),
            Arc::clone(&budget),
            Arc::clone(&counters),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let peer = Peer {
                inbound: &inbound,
                budget: &budget,
                counters: &counters,
                idle,
            };
            let reason = connection(stream, session, peer, shutdown).await;
            debug!(%session, reason, "TCP connection closed.");
            let _ = inbound.send(Inbound::Closed(session)).await;
            counters
                .connections_open
                .set(counters.connections_open.get().saturating_sub(1));
            drop(permit);
        });
    }
}

/// What a connection's task shares with the rest of the collector.
#[derive(Clone, Copy)]
struct Peer<'a> {
    inbound: &'a mpsc::Sender<Inbound>,
    budget: &'a Arc<Semaphore>,
    counters: &'a Counters,
    idle: Duration,
}

impl Peer<'_> {
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
async fn fill(stream: &mut TcpStream, buf: &mut [u8], idle: Duration) -> Fill {
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
async fn connection(
    mut stream: TcpStream,
    session: TransportSession,
    peer: Peer<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> &'static str {
    let Peer {
        inbound,
        budget,
        counters,
        idle,
    } = peer;
    let exporter: SocketAddr = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let mut header = [0_u8; HEADER_LEN];
        let read = tokio::select! {
            read = fill(&mut stream, &mut header, idle) => read,
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
