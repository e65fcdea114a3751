//! Sending Messages to the collector: UDP (each Message one datagram) or TCP (a stream of
//! Messages), from a bound source address and port.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::capture::sys;

/// UDP or TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportProtocol {
    /// RFC 7011 §10.3.
    Udp,
    /// RFC 7011 §10.4.
    Tcp,
}

/// Where and how Messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// The collector.
    pub collector: SocketAddr,
    /// The source address to bind (the unspecified address lets the kernel choose).
    pub src: Option<IpAddr>,
    /// The source port to bind (0 lets the kernel choose).
    pub src_port: u16,
    /// UDP or TCP.
    pub protocol: TransportProtocol,
    /// Compute UDP checksums (IPv4; IPv6 always has them).
    pub udp_checksum: bool,
}

impl TransportConfig {
    /// Octets of IP and transport header around each Message, which the path MTU must also
    /// hold.
    pub fn header_overhead(&self) -> usize {
        let ip = if self.collector.is_ipv4() { 20 } else { 40 };
        ip + match self.protocol {
            TransportProtocol::Udp => 8,
            TransportProtocol::Tcp => 20,
        }
    }
}

/// Something Messages can be sent through (a socket, or a vector in tests).
pub trait Transport {
    /// Opens the Transport Session if there is none; `true` when a new one was opened (its
    /// sequence numbers start again and it needs the templates).
    ///
    /// # Errors
    /// The session could not be opened (the collector refused the connection).
    fn open(&mut self) -> io::Result<bool>;

    /// Sends one whole Message.
    ///
    /// # Errors
    /// The send failed; a TCP session is closed and opened again by the next [`open`].
    ///
    /// [`open`]: Transport::open
    fn send(&mut self, message: &[u8]) -> io::Result<()>;

    /// Whether templates are re-sent on a timer (UDP) rather than once per session (TCP).
    fn unreliable(&self) -> bool;
}

/// A socket to the collector.
#[derive(Debug)]
pub struct SocketTransport {
    config: TransportConfig,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
}

impl SocketTransport {
    /// Binds the source address and, for UDP, connects the socket to the collector. A TCP
    /// connection opens on the first [`Transport::open`].
    ///
    /// # Errors
    /// The source address cannot be bound (in use: a collector on this host owns port 4739,
    /// say) or the collector is of the other address family.
    pub fn new(config: TransportConfig) -> io::Result<Self> {
        let mut t = Self {
            config,
            udp: None,
            tcp: None,
        };
        if t.config.protocol == TransportProtocol::Udp {
            let socket = t.bound_socket(Type::DGRAM, Protocol::UDP)?;
            if t.config.collector.is_ipv4() && !t.config.udp_checksum {
                //= https://www.rfc-editor.org/rfc/rfc7011#section-10.3.2
                //# When using UDP as the transport protocol, the UDP checksum
                //# SHOULD be used.
                // VPP sends without one unless `udp-checksum` is given, and so do we: the
                // option is the operator's. IPv6 requires the checksum (RFC 8200 §8.1).
                sys::set_udp_no_check(&socket, true)?;
            }
            socket.connect(&SockAddr::from(t.config.collector))?;
            t.udp = Some(socket.into());
        }
        Ok(t)
    }

    fn bound_socket(&self, ty: Type, protocol: Protocol) -> io::Result<Socket> {
        let c = &self.config;
        let domain = Domain::for_address(c.collector);
        let socket = Socket::new(domain, ty, Some(protocol))?;
        let src = c.src.unwrap_or_else(|| {
            if c.collector.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            }
        });
        socket
            .bind(&SockAddr::from(SocketAddr::new(src, c.src_port)))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot bind the source address {src}:{}: {e}", c.src_port),
                )
            })?;
        Ok(socket)
    }

    /// The bound source address and port (what the meter must not meter).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match (&self.udp, &self.tcp) {
            (Some(u), _) => u.local_addr().ok(),
            (_, Some(t)) => t.local_addr().ok(),
            _ => None,
        }
    }

    /// The collector's address.
    pub fn collector(&self) -> SocketAddr {
        self.config.collector
    }
}

impl Transport for SocketTransport {
    fn open(&mut self) -> io::Result<bool> {
        if self.config.protocol == TransportProtocol::Udp {
            return Ok(false);
        }
        if self.tcp.is_some() {
            return Ok(false);
        }
        let socket = self.bound_socket(Type::STREAM, Protocol::TCP)?;
        socket.connect_timeout(
            &SockAddr::from(self.config.collector),
            Duration::from_secs(5),
        )?;
        socket.set_tcp_nodelay(true)?;
        self.tcp = Some(socket.into());
        Ok(true)
    }

    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        if let Some(udp) = &self.udp {
            return udp.send(message).map(|_| ());
        }
        let Some(tcp) = &mut self.tcp else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no TCP connection",
            ));
        };
        let sent = tcp.write_all(message);
        if sent.is_err() {
            self.tcp = None;
        }
        sent
    }

    fn unreliable(&self) -> bool {
        self.config.protocol == TransportProtocol::Udp
    }
}
