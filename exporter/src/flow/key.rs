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
    /// (a non-IP frame when `l2` is not recorded). The meter keys packets by
    /// [`PackedKey::of`]; this is the same key, unpacked.
    pub fn new(packet: &Dissected, flags: RecordFlags, interface: u32) -> Option<Self> {
        PackedKey::of(packet, &KeyMask::new(flags), interface).map(|key| Self::from(&key))
    }
}

/// A [`FlowKey`] packed into one cache line of eight words: what the flow table stores, hashes
/// and compares (eight word compares, one 64-octet hash input) instead of eleven fields.
///
/// Octets, little-endian: 0 variant, 1 protocol, 2-3 source port, 4-5 destination port, 6-7
/// zero, 8-9 VLAN, 10-11 EtherType, 12-15 interface, 16-21 source MAC, 22-23 zero, 24-29
/// destination MAC, 30-31 zero, 32-47 source address, 48-63 destination address (IPv4 in the
/// first four octets of each).
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

    /// The key of a dissected packet, packed: every field put in its word by shifts, then
    /// the fields the record flags leave out cleared by `mask`. `None` when the packet is not
    /// metered (a non-IP frame when `l2` is not recorded).
    #[inline]
    pub fn of(packet: &Dissected, mask: &KeyMask, interface: u32) -> Option<Self> {
        let (variant, src, dst, mask) = match packet.addresses {
            Addresses::V4(s, d) => (
                Variant::Ip4,
                [u64::from(u32::from_le_bytes(s)), 0],
                [u64::from(u32::from_le_bytes(d)), 0],
                &mask.ip,
            ),
            Addresses::V6(s, d) => (Variant::Ip6, halves(&s), halves(&d), &mask.ip),
            Addresses::None => (Variant::L2, [0; 2], [0; 2], mask.other.as_ref()?),
        };
        let words = pack(
            &FlowKey {
                variant,
                protocol: packet.protocol,
                src_port: packet.src_port,
                dst_port: packet.dst_port,
                ethertype: packet.ethertype,
                vlan: packet.vlan,
                interface,
                src_mac: packet.src_mac,
                dst_mac: packet.dst_mac,
                src: [0; 16],
                dst: [0; 16],
            },
            src,
            dst,
        );
        Some(Self(std::array::from_fn(|i| words[i] & mask[i])))
    }
}

/// Which bits of a [`PackedKey`] the record flags keep, worked out once per meter: the
/// variant and the interface always; the MAC addresses, VLAN and EtherType with `l2`; the
/// addresses with `l3`; the protocol with `l3` or `l4`; the ports with `l4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMask {
    /// For IPv4 and IPv6 packets.
    ip: [u64; 8],
    /// For other frames: their L2 fields only; `None` when they are not metered (no `l2`).
    other: Option<[u64; 8]>,
}

impl KeyMask {
    /// The masks of `flags`.
    pub fn new(flags: RecordFlags) -> Self {
        let words = |l2: bool, l3: bool, l4: bool| {
            let all = |on: bool| if on { u64::MAX } else { 0 };
            let (l2, l3, l4) = (all(l2), all(l3), all(l4));
            [
                0xff | (l3 | l4) & 0xff00 | l4 & 0xffff_ffff_0000,
                0xffff_ffff << 32 | l2 & 0xffff_ffff,
                l2,
                l2,
                l3,
                l3,
                l3,
                l3,
            ]
        };
        Self {
            ip: words(flags.l2, flags.l3, flags.l4),
            other: flags.l2.then(|| words(true, false, false)),
        }
    }
}

/// The words of a key whose addresses are `src` and `dst` (as [`halves`]) and whose other
/// fields are `key`'s.
#[inline]
fn pack(key: &FlowKey, src: [u64; 2], dst: [u64; 2]) -> [u64; 8] {
    let variant: u64 = match key.variant {
        Variant::Ip4 => 4,
        Variant::Ip6 => 6,
        Variant::L2 => 2,
    };
    let mac =
        |[m0, m1, m2, m3, m4, m5]: [u8; 6]| u64::from_le_bytes([m0, m1, m2, m3, m4, m5, 0, 0]);
    [
        variant
            | u64::from(key.protocol) << 8
            | u64::from(key.src_port) << 16
            | u64::from(key.dst_port) << 32,
        u64::from(key.vlan) | u64::from(key.ethertype) << 16 | u64::from(key.interface) << 32,
        mac(key.src_mac),
        mac(key.dst_mac),
        src[0],
        src[1],
        dst[0],
        dst[1],
    ]
}

/// An address's 16 octets as two little-endian words.
#[inline]
fn halves(octets: &[u8; 16]) -> [u64; 2] {
    let (low, high) = octets.split_at(8);
    let word = |half: &[u8]| {
        let mut word = [0; 8];
        word.copy_from_slice(half);
        u64::from_le_bytes(word)
    };
    [word(low), word(high)]
}

impl From<&FlowKey> for PackedKey {
    #[inline]
    fn from(key: &FlowKey) -> Self {
        Self(pack(key, halves(&key.src), halves(&key.dst)))
    }
}

impl From<&PackedKey> for FlowKey {
    fn from(packed: &PackedKey) -> Self {
        let [w0, w1, src_mac, dst_mac, s0, s1, d0, d1] = packed.0;
        let [variant, protocol, sp0, sp1, dp0, dp1, ..] = w0.to_le_bytes();
        let [v0, v1, e0, e1, i0, i1, i2, i3] = w1.to_le_bytes();
        let mac = |word: u64| {
            let [m0, m1, m2, m3, m4, m5, ..] = word.to_le_bytes();
            [m0, m1, m2, m3, m4, m5]
        };
        let address = |low: u64, high: u64| {
            let mut octets = [0; 16];
            octets[..8].copy_from_slice(&low.to_le_bytes());
            octets[8..].copy_from_slice(&high.to_le_bytes());
            octets
        };
        Self {
            variant: match variant {
                4 => Variant::Ip4,
                6 => Variant::Ip6,
                _ => Variant::L2,
            },
            protocol,
            src_port: u16::from_le_bytes([sp0, sp1]),
            dst_port: u16::from_le_bytes([dp0, dp1]),
            vlan: u16::from_le_bytes([v0, v1]),
            ethertype: u16::from_le_bytes([e0, e1]),
            interface: u32::from_le_bytes([i0, i1, i2, i3]),
            src_mac: mac(src_mac),
            dst_mac: mac(dst_mac),
            src: address(s0, s1),
            dst: address(d0, d1),
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

        /// A packet's packed key holds exactly the fields its record flags name, as a key
        /// built field by field from the flags' rules does.
        #[test]
        fn a_packets_key_keeps_what_the_record_flags_name(
            l2: bool, l3: bool, l4: bool, kind in 0_u8..3,
            protocol: u8, src_port: u16, dst_port: u16, ethertype: u16, vlan: u16,
            interface: u32, src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 16], dst: [u8; 16],
        ) {
            let flags = RecordFlags { l2, l3, l4 };
            let (variant, addresses) = match kind {
                0 => (Variant::Ip4, Addresses::V4(
                    [src[0], src[1], src[2], src[3]], [dst[0], dst[1], dst[2], dst[3]],
                )),
                1 => (Variant::Ip6, Addresses::V6(src, dst)),
                _ => (Variant::L2, Addresses::None),
            };
            let ip = variant != Variant::L2;
            // A non-IP frame has no protocol or ports (as the dissector leaves them).
            let (protocol, src_port, dst_port) =
                if ip { (protocol, src_port, dst_port) } else { (0, 0, 0) };
            let packet = Dissected {
                src_mac, dst_mac, vlan, ethertype, addresses, protocol, src_port, dst_port,
                tcp_flags: 0, octets: 0,
            };
            let mut want = FlowKey {
                variant, protocol: 0, src_port: 0, dst_port: 0, ethertype: 0, vlan: 0,
                interface, src_mac: [0; 6], dst_mac: [0; 6], src: [0; 16], dst: [0; 16],
            };
            if l2 {
                (want.src_mac, want.dst_mac, want.ethertype, want.vlan) =
                    (src_mac, dst_mac, ethertype, vlan);
            }
            if l3 {
                match addresses {
                    Addresses::V4(s, d) => {
                        want.src[..4].copy_from_slice(&s);
                        want.dst[..4].copy_from_slice(&d);
                    }
                    Addresses::V6(s, d) => (want.src, want.dst) = (s, d),
                    Addresses::None => {}
                }
            }
            if l3 || l4 {
                want.protocol = protocol;
            }
            if l4 {
                (want.src_port, want.dst_port) = (src_port, dst_port);
            }
            let want = (ip || l2).then_some(want);
            let got = PackedKey::of(&packet, &KeyMask::new(flags), interface);
            prop_assert_eq!(got, want.as_ref().map(PackedKey::from));
            prop_assert_eq!(FlowKey::new(&packet, flags, interface), want);
        }
    }
}
