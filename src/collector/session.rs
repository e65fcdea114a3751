//! Transport Sessions (RFC 7011 §2): what templates and sequence numbers are scoped by.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// One Transport Session.
///
/// Over UDP it is the exporter's address *and* port together with the collector's address
/// (§8.4: templates are scoped by the 5-tuple); over TCP, one connection; offline, one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportSession {
    /// Datagrams from `exporter` to `collector`.
    Udp {
        /// The Exporting Process's address and source port.
        exporter: SocketAddr,
        /// The address the datagrams arrived on.
        collector: SocketAddr,
    },
    /// One accepted TCP connection.
    Tcp {
        /// The Exporting Process's address and port.
        exporter: SocketAddr,
        /// A number unique to the connection for the collector's lifetime.
        connection: u64,
    },
    /// An IPFIX File (RFC 5655) read offline, by its index on the command line.
    File {
        /// Position of the file among those decoded.
        index: u32,
    },
}

impl TransportSession {
    /// The exporter's IP address, when there is one; an IPv4-mapped IPv6 address (a dual-stack
    /// socket's view of an IPv4 exporter) as the IPv4 address, so one exporter is one address
    /// for every bound and label.
    pub fn exporter_ip(&self) -> Option<IpAddr> {
        match self {
            Self::Udp { exporter, .. } | Self::Tcp { exporter, .. } => {
                Some(exporter.ip().to_canonical())
            }
            Self::File { .. } => None,
        }
    }

    /// Whether UDP rules apply: template lifetimes, withdrawals ignored (§8.4).
    pub fn is_udp(&self) -> bool {
        matches!(self, Self::Udp { .. })
    }

    /// The text stored in the `exporter` column: the exporter's IP address, or `file:N`.
    pub fn exporter_text(&self) -> String {
        self.exporter_ip()
            .map_or_else(|| self.to_string(), |ip| ip.to_string())
    }
}

#[cfg(test)]
impl TransportSession {
    /// A UDP session from 192.0.2.1:`port` (RFC 5737 documentation address) to the default
    /// collector port, for unit tests.
    pub(crate) fn example_udp(port: u16) -> Self {
        Self::Udp {
            exporter: ([192, 0, 2, 1], port).into(),
            collector: ([127, 0, 0, 1], 4739).into(),
        }
    }
}

impl fmt::Display for TransportSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Udp { exporter, .. } => write!(f, "udp:{exporter}"),
            Self::Tcp {
                exporter,
                connection,
            } => write!(f, "tcp:{exporter}#{connection}"),
            Self::File { index } => write!(f, "file:{index}"),
        }
    }
}
