//! Flow keys: which header fields tell flows apart, by record flags and variant (flowprobe's
//! `flowprobe_key_t`).

use std::fmt;
use std::str::FromStr;

use crate::dissect::{Addresses, Dissected};

/// Which groups of fields a record carries (flowprobe's `record l2 l3 l4`), and so which fields
/// are in the flow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordFlags {
    /// MAC addresses, EtherType and VLAN ID.
    pub l2: bool,
    /// IP addresses and protocol.
    pub l3: bool,
    /// Transport ports and TCP flags (and the protocol).
    pub l4: bool,
}

impl RecordFlags {
    /// Flowprobe's usual choice: `l3,l4`.
    pub const L3_L4: Self = Self {
        l2: false,
        l3: true,
        l4: true,
    };
}

impl Default for RecordFlags {
    fn default() -> Self {
        Self::L3_L4
    }
}

impl fmt::Display for RecordFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [(self.l2, "l2"), (self.l3, "l3"), (self.l4, "l4")];
        let mut first = true;
        for (_, name) in names.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
        Ok(())
    }
}

impl FromStr for RecordFlags {
    type Err = String;

    /// Parses a comma-separated list of `l2`, `l3`, `l4`; at least one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut flags = Self {
            l2: false,
            l3: false,
            l4: false,
        };
        for part in s.split(',').map(str::trim) {
            match part.to_ascii_lowercase().as_str() {
                "l2" => flags.l2 = true,
                "l3" => flags.l3 = true,
                "l4" => flags.l4 = true,
                other => {
                    return Err(format!(
                        "unknown record flag {other:?}: expected l2, l3 and/or l4"
                    ));
                }
            }
        }
        Ok(flags)
    }
}

/// The kind of packet a flow is made of; each has its own template (flowprobe's variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// IPv4 packets.
    Ip4,
    /// IPv6 packets.
    Ip6,
    /// Other frames (metered only when `l2` is recorded).
    L2,
}

impl Variant {
    /// All variants, in template-ID order.
    pub const ALL: [Self; 3] = [Self::Ip4, Self::Ip6, Self::L2];

    /// The variant's name in listings and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip4 => "ip4",
            Self::Ip6 => "ip6",
            Self::L2 => "l2",
        }
    }
}

/// The fields that tell one flow from another. Fields the record flags leave out are zero, so
/// packets that differ only there share a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The packet kind.
    pub variant: Variant,
    /// IP protocol (with `l3` or `l4`).
    pub protocol: u8,
    /// Transport source port (with `l4`).
    pub src_port: u16,
    /// Transport destination port, or ICMP type × 256 + code (with `l4`).
    pub dst_port: u16,
    /// EtherType after VLAN tags (with `l2`).
    pub ethertype: u16,
    /// Outermost VLAN ID (with `l2`).
    pub vlan: u16,
    /// Capture interface (ingressInterface): always part of the key, as in flowprobe.
    pub interface: u32,
    /// Ethernet source (with `l2`).
    pub src_mac: [u8; 6],
    /// Ethernet destination (with `l2`).
    pub dst_mac: [u8; 6],
    /// Source address, IPv4 in the first four octets (with `l3`).
    pub src: [u8; 16],
    /// Destination address, IPv4 in the first four octets (with `l3`).
    pub dst: [u8; 16],
}

impl FlowKey {
    /// The key of a dissected packet under `flags`, or `None` when the packet is not metered
    /// (a non-IP frame when `l2` is not recorded).
    pub fn new(packet: &Dissected, flags: RecordFlags, interface: u32) -> Option<Self> {
        let variant = match packet.addresses {
            Addresses::V4(..) => Variant::Ip4,
            Addresses::V6(..) => Variant::Ip6,
            Addresses::None if flags.l2 => Variant::L2,
            Addresses::None => return None,
        };
        let mut key = Self {
            variant,
            protocol: 0,
            src_port: 0,
            dst_port: 0,
            ethertype: 0,
            vlan: 0,
            interface,
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src: [0; 16],
            dst: [0; 16],
        };
        if flags.l2 {
            key.src_mac = packet.src_mac;
            key.dst_mac = packet.dst_mac;
            key.ethertype = packet.ethertype;
            key.vlan = packet.vlan;
        }
        if variant == Variant::L2 {
            return Some(key);
        }
        if flags.l3 {
            match packet.addresses {
                Addresses::V4(s, d) => {
                    key.src[..4].copy_from_slice(&s);
                    key.dst[..4].copy_from_slice(&d);
                }
                Addresses::V6(s, d) => {
                    key.src = s;
                    key.dst = d;
                }
                Addresses::None => {}
            }
        }
        if flags.l3 || flags.l4 {
            key.protocol = packet.protocol;
        }
        if flags.l4 {
            key.src_port = packet.src_port;
            key.dst_port = packet.dst_port;
        }
        Some(key)
    }
}
