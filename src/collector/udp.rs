//! UDP receive: one datagram is one IPFIX Message (RFC 7011 §10.3.2).

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::clock;
use crate::collector::Inbound;
use crate::collector::allow::{AllowList, Refusals};
use crate::collector::session::TransportSession;
use crate::telemetry::{Counters, DropReason};

/// Binds a UDP socket with a large receive buffer; IPv6 sockets take only IPv6.
///
/// Without `reuse_port` the socket sets neither SO_REUSEADDR nor SO_REUSEPORT, so a port
/// another socket holds fails to bind (`AddrInUse`): with either option on both, Linux lets
/// a second collector bind the same port and silently takes datagrams from the first. With
/// `reuse_port`, sockets that all ask for it share the port, the kernel spreading exporters
/// over them by a hash of their addresses (a deliberate fan-out).
///
/// # Errors
/// The socket cannot be created or bound.
pub fn bind(addr: SocketAddr, rcvbuf: usize, reuse_port: bool) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // The kernel may cap the size (net.core.rmem_max); what it granted is logged by the caller.
    let _ = socket.set_recv_buffer_size(rcvbuf);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The receive buffer size the kernel granted.
pub fn granted_rcvbuf(socket: &UdpSocket) -> usize {
    socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0)
}

/// Receives datagrams until shutdown, then drains what the kernel still holds, so nothing
/// received before the signal is lost.
pub async fn receive(
    socket: UdpSocket,
    inbound: mpsc::Sender<Inbound>,
    budget: Arc<Semaphore>,
    counters: Arc<Counters>,
    allow: Arc<AllowList>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut refusals = Refusals::default();
    let collector = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    //= https://www.rfc-editor.org/rfc/rfc7011#section-10
    //# A Collecting Process MUST be able to handle IPFIX Message lengths of
    //# up to 65535 octets.
    // One octet more than the largest Message, so a longer datagram shows as a mismatch.
    let mut buf = vec![0_u8; 65_536];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((_, exporter)) if !allow.permits(exporter.ip()) => {
                    refusals.refuse(exporter.ip(), "datagram", &counters);
                }
                Ok((len, exporter)) => forward(&buf, len, exporter, collector, &inbound, &budget, &counters),
                Err(e) => tracing::debug!(error = %e, "UDP receive error."),
            },
            _ = shutdown.changed() => break,
        }
    }
    while let Ok((len, exporter)) = socket.try_recv_from(&mut buf) {
        if allow.permits(exporter.ip()) {
            forward(&buf, len, exporter, collector, &inbound, &budget, &counters);
        } else {
            refusals.refuse(exporter.ip(), "datagram", &counters);
        }
    }
}

fn forward(
    buf: &[u8],
    len: usize,
    exporter: SocketAddr,
    collector: SocketAddr,
    inbound: &mpsc::Sender<Inbound>,
    budget: &Arc<Semaphore>,
    counters: &Counters,
) {
    let session = TransportSession::Udp {
        exporter,
        collector,
    };
    // Never block the receive loop on a slow decoder: a full queue (in Messages or in
    // octets) is a counted drop.
    let permits = u32::try_from(len).unwrap_or(u32::MAX);
    let full = || {
        if counters.archive_stalled.get() == 0 {
            DropReason::QueueFull
        } else {
            DropReason::ArchiveFull
        }
    };
    let Ok(budget) = Arc::clone(budget).try_acquire_many_owned(permits) else {
        counters.record_drop(full(), 1);
        return;
    };
    let bytes = buf.get(..len).unwrap_or_default().to_vec();
    if inbound
        .try_send(Inbound::Message {
            session,
            bytes,
            at: clock::now(),
            budget,
        })
        .is_err()
    {
        counters.record_drop(full(), 1);
    }
}

/// Datagrams the kernel dropped on the UDP sockets bound to `ports`, from `/proc/net/udp{,6}`
/// (the last column); 0 where that is not available.
pub fn kernel_drops(ports: &[u16]) -> u64 {
    let mut total = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if port.is_some_and(|p| ports.contains(&p)) {
                total += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}
