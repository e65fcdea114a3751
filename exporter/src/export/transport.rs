//! Sending Messages to the collector: UDP (each Message one datagram), TCP (a stream of
//! Messages) or TLS over TCP (RFC 7011 §11), from a bound source address and port.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::capture::sys;

/// UDP, TCP or TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportProtocol {
    /// RFC 7011 §10.3.
    Udp,
    /// RFC 7011 §10.4.
    Tcp,
    /// TCP with TLS (RFC 7011 §11); see [`SocketTransport::with_tls`].
    Tls,
}

/// What a TLS session to the collector needs.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// The trust anchors and the client certificate, if any.
    pub config: Arc<ClientConfig>,
    /// The name the collector's certificate must carry.
    pub server_name: ServerName<'static>,
}

/// TLS 1.2's worst record overhead with AES-GCM: header 5, explicit nonce 8, tag 16.
const TLS_RECORD_OVERHEAD: usize = 29;

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
            TransportProtocol::Tls => 20 + TLS_RECORD_OVERHEAD,
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

/// A connection to the collector: plain TCP, or TLS over it.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref(),
        }
    }

    fn write_all(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.write_all(message),
            Self::Tls(tls) => tls.write_all(message).and_then(|()| tls.flush()),
        }
    }
}

/// A socket to the collector.
#[derive(Debug)]
pub struct SocketTransport {
    config: TransportConfig,
    udp: Option<UdpSocket>,
    tcp: Option<Stream>,
    tls: Option<TlsClient>,
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
            tls: None,
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

    /// Sessions over TLS with `client` ([`TransportProtocol::Tls`]).
    #[must_use]
    pub fn with_tls(mut self, client: TlsClient) -> Self {
        self.tls = Some(client);
        self
    }

    /// The bound source address and port (what the meter must not meter).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match (&self.udp, &self.tcp) {
            (Some(u), _) => u.local_addr().ok(),
            (_, Some(t)) => t.tcp().local_addr().ok(),
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
        let mut tcp: TcpStream = socket.into();
        self.tcp = Some(match (self.config.protocol, &self.tls) {
            (TransportProtocol::Tls, Some(client)) => {
                let mut tls =
                    ClientConnection::new(Arc::clone(&client.config), client.server_name.clone())
                        .map_err(io::Error::other)?;
                // The handshake now, under a deadline: a certificate error is reported as the
                // session fails to open, not on the first Message.
                tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
                while tls.is_handshaking() {
                    tls.complete_io(&mut tcp)?;
                }
                tcp.set_read_timeout(None)?;
                Stream::Tls(Box::new(StreamOwned::new(tls, tcp)))
            }
            (TransportProtocol::Tls, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS transport without a TLS configuration",
                ));
            }
            _ => Stream::Plain(tcp),
        });
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
