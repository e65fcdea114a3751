//! Transport Sessions (RFC 7011 §2): what templates and sequence numbers are scoped by.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// One Transport Session.
///
/// Over UDP it is the exporter's address *and* port together with the collector's address
/// (§8.4: templates are scoped by the 5-tuple); over TCP, one connection; offline, one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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

/// A socket address as two words: its IP address (an IPv4 address as its IPv4-mapped IPv6
/// form) and its port. IPv6's flow label and scope are left out: sessions equal in full hash
/// equal all the same.
fn address_words(address: &SocketAddr) -> (u128, u16) {
    let ip = match address.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped().to_bits(),
        IpAddr::V6(ip) => ip.to_bits(),
    };
    (ip, address.port())
}

/// Hashed as a few whole words rather than field by field (the derived hash writes each
/// octet array with its length, a dozen writes a session): the decoder hashes a session a
/// few times per Message.
impl Hash for TransportSession {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Self::Udp {
                exporter,
                collector,
            } => {
                let (exporter, exporter_port) = address_words(exporter);
                let (collector, collector_port) = address_words(collector);
                state.write_u128(exporter);
                state.write_u128(collector);
                state.write_u64(u64::from(exporter_port) << 16 | u64::from(collector_port));
            }
            Self::Tcp {
                exporter,
                connection,
            } => {
                let (exporter, port) = address_words(exporter);
                state.write_u128(exporter);
                state.write_u64(*connection);
                state.write_u64(1 << 32 | u64::from(port));
            }
            Self::File { index } => state.write_u64(2 << 32 | u64::from(*index)),
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

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::collector::FastMap;

    #[test]
    fn sessions_hash_as_they_compare() {
        let v4: SocketAddr = ([192, 0, 2, 1], 5).into();
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:5".parse().unwrap();
        let collector: SocketAddr = ([127, 0, 0, 1], 4739).into();
        let sessions = [
            TransportSession::Udp {
                exporter: v4,
                collector,
            },
            TransportSession::Udp {
                exporter: mapped,
                collector,
            },
            TransportSession::Udp {
                exporter: collector,
                collector: v4,
            },
            TransportSession::Tcp {
                exporter: v4,
                connection: 1,
            },
            TransportSession::Tcp {
                exporter: v4,
                connection: 2,
            },
            TransportSession::File { index: 0 },
            TransportSession::File { index: 1 },
        ];
        let state = foldhash::fast::RandomState::default();
        let mut map = FastMap::default();
        for (i, s) in sessions.iter().enumerate() {
            let copy = *s;
            assert_eq!(state.hash_one(s), state.hash_one(copy));
            map.insert(*s, i);
        }
        assert_eq!(map.len(), sessions.len());
        for (i, s) in sessions.iter().enumerate() {
            assert_eq!(map.get(s), Some(&i));
        }
    }
}
