//! Sending Messages to the collector: UDP (each Message one datagram), TCP (a stream of
//! Messages) or TLS over TCP (RFC 7011 §11), from a bound source address and port.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
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

    /// How many Messages of `message_len` octets one [`send_run`] may carry: more than one
    /// where the kernel cuts one send into datagrams (UDP segmentation offload), 1 otherwise.
    ///
    /// [`send_run`]: Transport::send_run
    fn run_capacity(&self, message_len: usize) -> usize {
        let _ = message_len;
        1
    }

    /// Sends a run of whole Messages of `message_len` octets each, laid end to end in
    /// `messages` (at most [`run_capacity`] of them), in order.
    ///
    /// # Errors
    /// The send of one of them failed: those before it went, it and those after did not.
    ///
    /// [`run_capacity`]: Transport::run_capacity
    fn send_run(&mut self, messages: &[u8], message_len: usize) -> Result<(), RunError> {
        send_each(self, messages, message_len)
    }
}

/// A run of Messages that failed part way.
#[derive(Debug)]
pub struct RunError {
    /// How many Messages of the run went before the failure.
    pub sent: usize,
    /// Why the next one did not.
    pub error: io::Error,
}

/// Sends a run's Messages one at a time (what [`Transport::send_run`] does unless the transport
/// has a better way).
///
/// # Errors
/// As [`Transport::send_run`].
pub fn send_each<T: Transport + ?Sized>(
    transport: &mut T,
    messages: &[u8],
    message_len: usize,
) -> Result<(), RunError> {
    for (sent, message) in messages.chunks(message_len.max(1)).enumerate() {
        transport
            .send(message)
            .map_err(|error| RunError { sent, error })?;
    }
    Ok(())
}

/// Datagrams one UDP segmentation offload send may carry (the kernel's `UDP_MAX_SEGMENTS`
/// before Linux 6.9 raised it to 128).
const MAX_SEGMENTS: usize = 64;

/// The largest UDP payload over IPv4, which a segmented send must stay within too.
const MAX_UDP_PAYLOAD: usize = 65_507;

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

    /// Ends the session cleanly: TLS's close_notify, the TCP FIN, then whatever the collector
    /// still sends (a TLS 1.3 server's session tickets, which nothing else reads) read and
    /// dropped until it closes its side too (at most [`CLOSE_READS`] reads of
    /// [`CLOSE_TIMEOUT`] each). A socket closed over unread octets is reset instead, and a
    /// reset can cost the collector the last Messages it had not read yet.
    fn close(mut self) {
        if let Self::Tls(tls) = &mut self {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        let mut tcp = self.tcp();
        let _ = tcp.shutdown(Shutdown::Write);
        let _ = tcp.set_read_timeout(Some(CLOSE_TIMEOUT));
        let mut unread = [0; 4096];
        for _ in 0..CLOSE_READS {
            if matches!(tcp.read(&mut unread), Ok(0) | Err(_)) {
                break;
            }
        }
    }
}

/// How long a closing session waits for each read of what the collector still sends.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Reads a closing session makes at most.
const CLOSE_READS: usize = 8;

/// A socket to the collector.
#[derive(Debug)]
pub struct SocketTransport {
    config: TransportConfig,
    udp: Option<UdpSocket>,
    tcp: Option<Stream>,
    tls: Option<TlsClient>,
    /// Runs of Messages go in one send, cut into datagrams by the kernel (UDP with checksums,
    /// until the kernel refuses it once).
    segmentation: bool,
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
            segmentation: false,
        };
        if t.config.protocol == TransportProtocol::Udp {
            let socket = t.bound_socket(Type::DGRAM, Protocol::UDP)?;
            //= https://www.rfc-editor.org/rfc/rfc7011#section-10.3.2
            //# When using UDP as the transport protocol, the UDP checksum
            //# SHOULD be used.
            // VPP sends without one unless `udp-checksum` is given; the kernel (or the NIC)
            // computes it for us, and segmentation offload needs it, so we send it unless the
            // operator turns it off. IPv6 requires it (RFC 8200 §8.1).
            t.segmentation = t.config.udp_checksum || t.config.collector.is_ipv6();
            if !t.segmentation {
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

impl Drop for SocketTransport {
    fn drop(&mut self) {
        if let Some(stream) = self.tcp.take() {
            stream.close();
        }
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

    fn run_capacity(&self, message_len: usize) -> usize {
        if self.segmentation {
            (MAX_UDP_PAYLOAD / message_len.max(1)).clamp(1, MAX_SEGMENTS)
        } else {
            1
        }
    }

    fn send_run(&mut self, messages: &[u8], message_len: usize) -> Result<(), RunError> {
        let segment = u16::try_from(message_len).unwrap_or(u16::MAX);
        if let (Some(udp), true) = (&self.udp, self.segmentation && messages.len() > message_len) {
            match sys::send_segmented(udp, messages, segment) {
                Ok(()) => return Ok(()),
                // The kernel cannot segment for this socket or route (an old kernel, a device
                // that cannot checksum, a route whose MTU is below the path MTU: EMSGSIZE):
                // send each Message alone from now on, which the kernel fragments as needed.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(
                            libc::EINVAL
                                | libc::EIO
                                | libc::EMSGSIZE
                                | libc::ENOPROTOOPT
                                | libc::EOPNOTSUPP
                        )
                    ) =>
                {
                    tracing::info!(error = %e, "UDP segmentation offload refused: one send a Message");
                    self.segmentation = false;
                }
                Err(error) => return Err(RunError { sent: 0, error }),
            }
        }
        send_each(self, messages, message_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_to(sink: &UdpSocket, udp_checksum: bool) -> SocketTransport {
        SocketTransport::new(TransportConfig {
            collector: sink.local_addr().unwrap(),
            src: None,
            src_port: 0,
            protocol: TransportProtocol::Udp,
            udp_checksum,
        })
        .unwrap()
    }

    /// Ten Messages of 300 octets, each filled with its own index.
    fn run() -> Vec<u8> {
        (0..10_u8).flat_map(|i| [i; 300]).collect()
    }

    fn received(sink: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0; 65_536];
        (0..n)
            .map(|_| {
                let len = sink.recv(&mut buf).unwrap();
                buf[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn a_run_leaves_in_one_segmented_send_and_arrives_as_its_datagrams() {
        for (sink, udp_checksum) in [("127.0.0.1:0", true), ("[::1]:0", false)] {
            // IPv6 always has the checksum, whatever the option says.
            let Ok(sink) = UdpSocket::bind(sink) else {
                eprintln!("skipped {sink}: no such loopback address here");
                continue;
            };
            let mut t = udp_to(&sink, udp_checksum);
            assert_eq!(t.run_capacity(300), 64);
            assert_eq!(t.run_capacity(1_400), 46);
            t.send_run(&run(), 300).unwrap();
            assert!(
                t.segmentation,
                "the kernel refused segmentation offload to {sink:?}"
            );
            assert_eq!(received(&sink, 10), run().chunks(300).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_refused_segmented_send_falls_back_to_a_send_a_message_for_good() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = udp_to(&sink, true);
        // Under SO_NO_CHECK the kernel refuses to segment (EINVAL), as an old kernel or a
        // route narrower than the path MTU would.
        let socket = socket2::SockRef::from(t.udp.as_ref().unwrap());
        sys::set_udp_no_check(&socket, true).unwrap();
        t.send_run(&run(), 300).unwrap();
        assert!(!t.segmentation);
        assert_eq!(t.run_capacity(300), 1);
        assert_eq!(received(&sink, 10), run().chunks(300).collect::<Vec<_>>());
    }

    #[test]
    fn a_session_ends_with_a_fin_even_over_octets_the_collector_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut t = SocketTransport::new(TransportConfig {
            collector: listener.local_addr().unwrap(),
            src: None,
            src_port: 0,
            protocol: TransportProtocol::Tcp,
            udp_checksum: true,
        })
        .unwrap();
        assert!(t.open().unwrap());
        let (mut collector, _) = listener.accept().unwrap();
        // Octets the exporter never reads, as a TLS 1.3 server's session tickets.
        collector.write_all(&[7; 100]).unwrap();
        t.send(&[1; 50]).unwrap();
        // The exporter reads the collector's octets before it lets go, so that its kernel
        // closes with a FIN rather than a reset; it waits for the collector's FIN.
        let closing = std::thread::spawn(move || drop(t));
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        collector.read_to_end(&mut got).unwrap();
        assert_eq!(got, [1; 50]);
        drop(collector);
        closing.join().unwrap();
    }

    #[test]
    fn without_the_checksum_each_message_is_a_send_of_its_own() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = udp_to(&sink, false);
        assert_eq!(t.run_capacity(300), 1);
        // A run handed over anyway still goes, a datagram a Message.
        t.send_run(&run(), 300).unwrap();
        assert_eq!(received(&sink, 10), run().chunks(300).collect::<Vec<_>>());
    }
}
