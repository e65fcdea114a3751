//! UDP sockets: one datagram is one IPFIX Message (RFC 7011 §10.3.2); `worker.rs` receives.

use std::net::SocketAddr;
use std::net::UdpSocket;

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
pub fn granted_rcvbuf(socket: &UdpSocket) -> usize {
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
