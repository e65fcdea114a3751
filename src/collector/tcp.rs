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
        let (inbound, counters, shutdown) =
            (inbound.clone(), Arc::clone(&counters), shutdown.clone());
        tokio::spawn(async move {
            let reason = connection(stream, session, &inbound, &counters, idle, shutdown).await;
            debug!(%session, reason, "TCP connection closed.");
            let _ = inbound.send(Inbound::Closed(session)).await;
            counters
                .connections_open
                .set(counters.connections_open.get().saturating_sub(1));
            drop(permit);
        });
    }
}

/// Reads Messages from one connection until it ends; returns why it ended.
async fn connection(
    mut stream: TcpStream,
    session: TransportSession,
    inbound: &mpsc::Sender<Inbound>,
    counters: &Counters,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> &'static str {
    let exporter: SocketAddr = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let mut header = [0_u8; HEADER_LEN];
        let read = tokio::select! {
            read = tokio::time::timeout(idle, stream.read_exact(&mut header)) => read,
            _ = shutdown.changed() => return "shutdown",
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return "closed",
            Err(_) => return "idle",
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
        match tokio::time::timeout(idle, stream.read_exact(body)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return "closed mid-message",
            Err(_) => return "idle mid-message",
        }
        // TCP is reliable: wait for room rather than drop (back-pressure to the exporter).
        if inbound
            .send(Inbound::Message {
                session,
                bytes,
                at: clock::now(),
            })
            .await
            .is_err()
        {
            return "shutdown";
        }
    }
}
