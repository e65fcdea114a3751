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
    #[inline]
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

/// A [`FlowKey`] packed into one cache line of eight words: what the flow table stores, hashes
/// and compares (eight word compares, one 64-octet hash input) instead of eleven fields.
///
/// Octets, little-endian: 0 variant, 1 protocol, 2-3 source port, 4-5 destination port, 6-7
/// EtherType, 8-9 VLAN, 10-13 interface, 14-19 source MAC, 20-25 destination MAC, 26-31 zero,
/// 32-47 source address, 48-63 destination address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedKey(pub [u64; 8]);

impl PackedKey {
    /// Equality without a branch per word (the derived `==` calls `memcmp`).
    #[inline]
    pub fn same(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .fold(0, |differ, (a, b)| differ | (a ^ b))
            == 0
    }
}

impl From<&FlowKey> for PackedKey {
    /// Words built by shifts, not octet stores read back as words (which would stall on
    /// store forwarding once per word).
    #[inline]
    fn from(key: &FlowKey) -> Self {
        let variant: u64 = match key.variant {
            Variant::Ip4 => 4,
            Variant::Ip6 => 6,
            Variant::L2 => 2,
        };
        let [s0, s1, s2, s3, s4, s5] = key.src_mac.map(u64::from);
        let [d0, d1, d2, d3, d4, d5] = key.dst_mac.map(u64::from);
        let half = |octets: &[u8; 16], i: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(&octets[i * 8..i * 8 + 8]);
            u64::from_le_bytes(word)
        };
        Self([
            variant
                | u64::from(key.protocol) << 8
                | u64::from(key.src_port) << 16
                | u64::from(key.dst_port) << 32
                | u64::from(key.ethertype) << 48,
            u64::from(key.vlan) | u64::from(key.interface) << 16 | s0 << 48 | s1 << 56,
            s2 | s3 << 8 | s4 << 16 | s5 << 24 | d0 << 32 | d1 << 40 | d2 << 48 | d3 << 56,
            d4 | d5 << 8,
            half(&key.src, 0),
            half(&key.src, 1),
            half(&key.dst, 0),
            half(&key.dst, 1),
        ])
    }
}

impl From<&PackedKey> for FlowKey {
    fn from(packed: &PackedKey) -> Self {
        let mut octets = [0_u8; 64];
        for (chunk, word) in octets.as_chunks_mut::<8>().0.iter_mut().zip(packed.0) {
            *chunk = word.to_le_bytes();
        }
        let u16_at = |i: usize| u16::from_le_bytes([octets[i], octets[i + 1]]);
        let mut src_mac = [0; 6];
        src_mac.copy_from_slice(&octets[14..20]);
        let mut dst_mac = [0; 6];
        dst_mac.copy_from_slice(&octets[20..26]);
        let mut src = [0; 16];
        src.copy_from_slice(&octets[32..48]);
        let mut dst = [0; 16];
        dst.copy_from_slice(&octets[48..64]);
        Self {
            variant: match octets[0] {
                4 => Variant::Ip4,
                6 => Variant::Ip6,
                _ => Variant::L2,
            },
            protocol: octets[1],
            src_port: u16_at(2),
            dst_port: u16_at(4),
            ethertype: u16_at(6),
            vlan: u16_at(8),
            interface: u32::from_le_bytes([octets[10], octets[11], octets[12], octets[13]]),
            src_mac,
            dst_mac,
            src,
            dst,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Packing loses nothing: every key comes back field for field.
        #[test]
        fn packed_keys_unpack_to_the_same_key(
            variant in prop::sample::select(Variant::ALL.to_vec()),
            protocol: u8, src_port: u16, dst_port: u16, ethertype: u16, vlan: u16,
            interface: u32, src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 16], dst: [u8; 16],
        ) {
            let key = FlowKey {
                variant, protocol, src_port, dst_port, ethertype, vlan, interface, src_mac,
                dst_mac, src, dst,
            };
            prop_assert_eq!(FlowKey::from(&PackedKey::from(&key)), key);
        }
    }
}
