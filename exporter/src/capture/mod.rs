//! Where packets come from: pcap/pcapng files ([`file`]) and live Linux interfaces ([`live`],
//! over the raw socket FFI of `sys`).

pub mod file;
pub mod live;
pub(crate) mod sys;

/// How a captured frame starts (the pcap link type, reduced to those the dissector reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II, possibly VLAN-tagged (pcap link type 1).
    Ethernet,
    /// Linux cooked capture v1 (113).
    LinuxSll,
    /// A bare IPv4 or IPv6 packet (101, 12, 14, 228, 229).
    RawIp,
    /// BSD loopback: a 4-octet address family, then IP (0, 108).
    Null,
    /// Anything else: counted and skipped.
    Other(u32),
}

impl LinkType {
    /// The link type of a pcap `LINKTYPE_*` number.
    pub fn from_pcap(linktype: i32) -> Self {
        match linktype {
            1 => Self::Ethernet,
            113 => Self::LinuxSll,
            101 | 12 | 14 | 228 | 229 => Self::RawIp,
            0 | 108 => Self::Null,
            other => Self::Other(u32::try_from(other).unwrap_or(u32::MAX)),
        }
    }
}

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct CapturedPacket<'a> {
    /// Capture time, nanoseconds since the UNIX epoch.
    pub timestamp_ns: u64,
    /// How `data` starts.
    pub link: LinkType,
    /// The captured octets (possibly fewer than were on the wire).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// The interface it was captured on: the ifindex of a live interface, the interface ID of a
    /// pcapng file, 0 for a pcap file. Exported as ingressInterface.
    pub interface: u32,
}
