//! UDP sockets: one datagram is one IPFIX Message (RFC 7011 §10.3.2); `worker.rs` receives,
//! many datagrams to a system call ([`Batch`]).

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use socket2::{Domain, Protocol, Socket, Type};

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
    if rcvbuf > 0 {
        let _ = socket.set_recv_buffer_size(rcvbuf);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Binds `workers` sockets on `addr` that share its port through SO_REUSEPORT, one for each
/// worker: the kernel hashes each exporter's address and port to one of them, so a worker
/// sees all of an exporter's datagrams. Unless `reuse_port`, a port another socket holds is
/// still an error: it is tried alone first (a socket binding between that try and the group
/// would have to ask for SO_REUSEPORT itself, as the same user).
///
/// # Errors
/// A socket cannot be created or bound.
pub fn bind_group(
    addr: SocketAddr,
    rcvbuf: usize,
    reuse_port: bool,
    workers: usize,
) -> std::io::Result<Vec<UdpSocket>> {
    if workers <= 1 {
        return Ok(vec![bind(addr, rcvbuf, reuse_port)?]);
    }
    if !reuse_port && addr.port() != 0 {
        drop(bind(addr, 0, false)?);
    }
    let first = bind(addr, rcvbuf, true)?;
    let shared = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..workers {
        group.push(bind(shared, rcvbuf, true)?);
    }
    Ok(group)
}

/// The receive buffer size the kernel granted.
pub fn granted_rcvbuf(socket: &impl std::os::fd::AsFd) -> usize {
    socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0)
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

/// Datagrams one receive call takes at most (`recvmmsg`): under load a worker wakes to many
/// waiting datagrams, and takes them 16 to a system call rather than one.
pub const BATCH: usize = 16;

//= https://www.rfc-editor.org/rfc/rfc7011#section-10
//# A Collecting Process MUST be able to handle IPFIX Message lengths of
//# up to 65535 octets.
/// Room for a datagram: one octet more than the largest Message, so a longer datagram shows
/// as a length mismatch rather than as a Message cut to fit.
const DATAGRAM: usize = 65_536;

/// Buffers for a batch of datagrams, and what the last receive put in them. Made once per
/// socket, so receiving allocates nothing.
pub struct Batch {
    octets: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
    received: [(usize, Option<SocketAddr>); BATCH],
    count: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("count", &self.count).finish()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            octets: vec![0; BATCH * DATAGRAM],
            headers: MultiHeaders::preallocate(BATCH, None),
            received: [(0, None); BATCH],
            count: 0,
        }
    }
}

impl Batch {
    /// Receives the datagrams waiting on `socket`, at most [`BATCH`], in one call and without
    /// waiting; returns how many came (`WouldBlock` when none was waiting).
    ///
    /// # Errors
    /// The socket failed, or nothing was waiting (`WouldBlock`).
    pub fn receive(&mut self, socket: &impl AsRawFd) -> std::io::Result<usize> {
        self.count = 0;
        let mut chunks = self.octets.chunks_exact_mut(DATAGRAM);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let messages = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        for (slot, message) in self.received.iter_mut().zip(messages) {
            *slot = (message.bytes, message.address.and_then(socket_addr));
            self.count += 1;
        }
        Ok(self.count)
    }

    /// The datagrams of the last receive, in order, each with its sender (`None` when the
    /// kernel named none it could read).
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> {
        self.received
            .iter()
            .take(self.count)
            .zip(self.octets.chunks_exact(DATAGRAM))
            .map(|(&(len, from), octets)| (octets.get(..len).unwrap_or_default(), from))
    }
}

/// A sender's address as the kernel gave it.
fn socket_addr(storage: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams waiting are taken [`BATCH`] to a call, whole, in order, with their senders;
    /// then the socket says it is empty.
    #[test]
    fn a_batch_takes_the_waiting_datagrams_in_order_with_their_senders() {
        let collector = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 1 << 20, false).unwrap();
        let to = collector.local_addr().unwrap();
        let exporters = [
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        ];
        let sent: Vec<(Vec<u8>, SocketAddr)> = (0..BATCH + 4)
            .map(|i| {
                let exporter = &exporters[i % 2];
                // The largest datagram loopback carries, then small ones.
                let len = if i == 0 { 65_507 } else { 10 + i };
                let payload: Vec<u8> = (0..len).map(|b| ((b + i) % 251).to_le_bytes()[0]).collect();
                exporter.send_to(&payload, to).unwrap();
                (payload, exporter.local_addr().unwrap())
            })
            .collect();
        let mut batch = Batch::default();
        let mut received = Vec::new();
        let mut calls = 0;
        for _ in 0..1000 {
            match batch.receive(&collector) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    calls += 1;
                    received.extend(
                        batch
                            .datagrams()
                            .map(|(d, from)| (d.to_vec(), from.unwrap())),
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if received.len() == sent.len() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(received, sent);
        // Sent before the first call, on loopback they wait together: two calls take them.
        assert!(
            calls < sent.len(),
            "{calls} calls for {} datagrams",
            sent.len()
        );
        let empty = batch.receive(&collector).unwrap_err();
        assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
    }
}
