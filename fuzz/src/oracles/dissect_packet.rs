//! `dissect_packet`: the exporter's dissector on arbitrary frames.
//!
//! Input: one octet for the link type (Ethernet, Linux cooked, raw IP, BSD loopback, or another
//! number), one octet of wire length beyond the captured octets (a snap length), then the frame.
//!
//! Oracle: no panic; and two models from etherparse, which the dissector is built on but whose
//! answers it must carry through unchanged:
//! - lax slicing: whenever etherparse's lax parse finds an IPv4 or IPv6 header and then either a
//!   fragment, a transport header, or a protocol without one the meter reads (the L3/L4 headers
//!   are complete), the dissector meters the frame and its flow key has those addresses, that
//!   protocol, and the ports (ICMP type and code) and TCP flags of the transport header: for a
//!   first fragment (offset 0) those of the whole transport header its payload starts with, for
//!   a later fragment none;
//! - strict slicing: whenever etherparse's strict parse of the whole frame succeeds with IP, the
//!   same, and the octets counted are the IP length (or the wire length when it is zero);
//!
//! and `udp_datagram` (what `flowvm decode` reads IPFIX from) finds a datagram only in a frame
//! the dissector meters as that UDP flow.

use etherparse::{
    EtherType, Icmpv4Slice, Icmpv6Slice, IpAuthHeaderSlice, IpNumber, Ipv6ExtensionsSlice,
    Ipv6FragmentHeaderSlice, Ipv6RawExtHeaderSlice, LaxNetSlice, LaxSlicedPacket, NetSlice,
    SlicedPacket, TcpSlice, TransportSlice, UdpSlice,
};
use flowvm_exporter::capture::LinkType;
use flowvm_exporter::dissect::{Addresses, Dissected, dissect, udp_datagram};
use flowvm_exporter::flow::{FlowKey, RecordFlags, Variant};

/// What a model says the dissector must report for a frame whose L3/L4 headers are complete.
#[derive(Debug)]
struct Expected {
    addresses: Addresses,
    protocol: u8,
    /// Source port, destination port (or ICMP type × 256 + code), and the TCP flags etherparse
    /// names (NS to FIN); `(0, 0, 0)` for fragments and protocols without a transport header.
    transport: (u16, u16, u16),
}

/// The transport fields of a transport header, as etherparse reads them.
fn transport(slice: &TransportSlice<'_>) -> (u16, u16, u16) {
    match slice {
        TransportSlice::Tcp(t) => {
            let flags = [
                t.fin(),
                t.syn(),
                t.rst(),
                t.psh(),
                t.ack(),
                t.urg(),
                t.ece(),
                t.cwr(),
                t.ns(),
            ]
            .iter()
            .enumerate()
            .map(|(bit, &on)| u16::from(on) << bit)
            .sum();
            (t.source_port(), t.destination_port(), flags)
        }
        TransportSlice::Udp(u) => (u.source_port(), u.destination_port(), 0),
        TransportSlice::Icmpv4(i) => (0, u16::from_be_bytes([i.type_u8(), i.code_u8()]), 0),
        TransportSlice::Icmpv6(i) => (0, u16::from_be_bytes([i.type_u8(), i.code_u8()]), 0),
        TransportSlice::Igmp(_) => (0, 0, 0),
    }
}

/// Whether the meter reads a transport header for `protocol`.
fn has_transport(protocol: IpNumber) -> bool {
    [
        IpNumber::TCP,
        IpNumber::UDP,
        IpNumber::ICMP,
        IpNumber::IPV6_ICMP,
    ]
    .contains(&protocol)
}

/// Whether no Fragment header of `extensions` has a non-zero offset. Each header read by
/// etherparse's checked slice constructors, one after the other, not by its iterator, which
/// reads past the end of a lax slice whose last header names another Hop-by-Hop header
/// (etherparse 0.19 and 0.21; the `dissect_packet` fuzzer found it in the exporter).
fn first_ipv6_fragment(extensions: &Ipv6ExtensionsSlice<'_>) -> bool {
    let Some(mut next) = extensions.first_header() else {
        return true;
    };
    let mut rest = extensions.slice();
    while !rest.is_empty() {
        let (len, following) = match next {
            IpNumber::IPV6_FRAGMENTATION_HEADER => {
                match Ipv6FragmentHeaderSlice::from_slice(rest) {
                    Ok(f) if f.fragment_offset().value() != 0 => return false,
                    Ok(f) => (f.slice().len(), f.next_header()),
                    Err(_) => break,
                }
            }
            IpNumber::AUTHENTICATION_HEADER => match IpAuthHeaderSlice::from_slice(rest) {
                Ok(a) => (a.slice().len(), a.next_header()),
                Err(_) => break,
            },
            _ => match Ipv6RawExtHeaderSlice::from_slice(rest) {
                Ok(h) => (h.slice().len(), h.next_header()),
                Err(_) => break,
            },
        };
        rest = rest.get(len..).unwrap_or_default();
        next = following;
    }
    true
}

/// The transport fields of a fragment: a first one's from the whole transport header its
/// payload starts with (none when it is too short for one), a later one's none.
fn fragment_transport(first: bool, protocol: IpNumber, payload: &[u8]) -> (u16, u16, u16) {
    let slice = match protocol {
        _ if !first => None,
        IpNumber::TCP => TcpSlice::from_slice(payload).ok().map(TransportSlice::Tcp),
        IpNumber::UDP => UdpSlice::from_slice_lax(payload)
            .ok()
            .map(TransportSlice::Udp),
        IpNumber::ICMP => Icmpv4Slice::from_slice(payload)
            .ok()
            .map(TransportSlice::Icmpv4),
        IpNumber::IPV6_ICMP => Icmpv6Slice::from_slice(payload)
            .ok()
            .map(TransportSlice::Icmpv6),
        _ => None,
    };
    slice.as_ref().map_or((0, 0, 0), transport)
}

/// The lax model: `Some` when the L3/L4 headers are complete.
fn lax(link: LinkType, frame: &[u8]) -> Option<Expected> {
    let packet = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(frame).ok()?,
        LinkType::LinuxSll => {
            let (header, rest) = frame.split_first_chunk::<16>()?;
            let ether_type = EtherType(u16::from_be_bytes([header[14], header[15]]));
            LaxSlicedPacket::from_ether_type(ether_type, rest)
        }
        LinkType::RawIp => LaxSlicedPacket::from_ip(frame).ok()?,
        LinkType::Null => LaxSlicedPacket::from_ip(frame.get(4..)?).ok()?,
        LinkType::Other(_) => return None,
    };
    let (addresses, payload) = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => (
            Addresses::V4(v4.header().source(), v4.header().destination()),
            v4.payload(),
        ),
        LaxNetSlice::Ipv6(v6) => (
            Addresses::V6(v6.header().source(), v6.header().destination()),
            v6.payload(),
        ),
        LaxNetSlice::Arp(_) => return None,
    };
    let first = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
        LaxNetSlice::Ipv6(v6) => first_ipv6_fragment(v6.extensions()),
        LaxNetSlice::Arp(_) => return None,
    };
    let transport = match (&packet.transport, payload.fragmented) {
        (_, true) => fragment_transport(first, payload.ip_number, payload.payload),
        (Some(t), false) => transport(t),
        (None, false) if !has_transport(payload.ip_number) => (0, 0, 0),
        (None, false) => return None,
    };
    Some(Expected {
        addresses,
        protocol: payload.ip_number.0,
        transport,
    })
}

/// The strict model: `Some` when the whole frame parses strictly with IP; with the octets the
/// IP header gives (0 when it gives none).
fn strict(link: LinkType, frame: &[u8]) -> Option<(Expected, u64)> {
    let packet = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(frame).ok()?,
        LinkType::LinuxSll => {
            let (header, rest) = frame.split_first_chunk::<16>()?;
            let ether_type = EtherType(u16::from_be_bytes([header[14], header[15]]));
            SlicedPacket::from_ether_type(ether_type, rest).ok()?
        }
        LinkType::RawIp => SlicedPacket::from_ip(frame).ok()?,
        LinkType::Null => SlicedPacket::from_ip(frame.get(4..)?).ok()?,
        LinkType::Other(_) => return None,
    };
    let (addresses, payload, octets) = match packet.net.as_ref()? {
        NetSlice::Ipv4(v4) => (
            Addresses::V4(v4.header().source(), v4.header().destination()),
            v4.payload(),
            u64::from(v4.header().total_len()),
        ),
        NetSlice::Ipv6(v6) => (
            Addresses::V6(v6.header().source(), v6.header().destination()),
            v6.payload(),
            match v6.header().payload_length() {
                0 => 0,
                len => u64::from(len) + 40,
            },
        ),
        NetSlice::Arp(_) => return None,
    };
    let first = match packet.net.as_ref()? {
        NetSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
        NetSlice::Ipv6(v6) => first_ipv6_fragment(v6.extensions()),
        NetSlice::Arp(_) => return None,
    };
    let transport = match (&packet.transport, payload.fragmented) {
        (Some(t), false) => transport(t),
        (_, true) => fragment_transport(first, payload.ip_number, payload.payload),
        _ => (0, 0, 0),
    };
    let expected = Expected {
        addresses,
        protocol: payload.ip_number.0,
        transport,
    };
    Some((expected, octets))
}

/// Asserts that `d` (the dissector's answer) is what `model` expects, and keys a flow.
fn matches(model: &str, d: &Dissected, expected: &Expected) {
    assert_eq!(d.addresses, expected.addresses, "{model}");
    assert_eq!(d.protocol, expected.protocol, "{model}");
    let (src, dst, flags) = expected.transport;
    assert_eq!((d.src_port, d.dst_port), (src, dst), "{model}");
    assert_eq!(d.tcp_flags & 0x01ff, flags, "{model}: TCP flags");
    assert_eq!(d.tcp_flags & !0x0fff, 0, "{model}: TCP flags past 12 bits");
    let all = RecordFlags {
        l2: true,
        l3: true,
        l4: true,
    };
    for flags in [all, RecordFlags::L3_L4] {
        let key = FlowKey::new(d, flags, 7);
        assert!(key.is_some(), "{model}: an IP packet without a flow key");
        if let Some(key) = key {
            let variant = match d.addresses {
                Addresses::V6(..) => Variant::Ip6,
                _ => Variant::Ip4,
            };
            assert_eq!(key.variant, variant, "{model}");
            assert_eq!(
                (key.protocol, key.src_port, key.dst_port, key.interface),
                (d.protocol, d.src_port, d.dst_port, 7),
                "{model}"
            );
        }
    }
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let [kind, snapped, frame @ ..] = data else {
        return;
    };
    let link = match kind {
        0 => LinkType::Ethernet,
        1 => LinkType::LinuxSll,
        2 => LinkType::RawIp,
        3 => LinkType::Null,
        other => LinkType::Other(u32::from(*other)),
    };
    let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX) + u32::from(*snapped);
    let dissected = dissect(link, frame, orig_len);
    if let Some(expected) = lax(link, frame) {
        assert!(
            dissected.is_ok(),
            "lax: complete L3/L4 headers skipped: {dissected:?}"
        );
        if let Ok(d) = &dissected {
            matches("lax", d, &expected);
        }
    }
    if let Some((expected, octets)) = strict(link, frame) {
        assert!(
            dissected.is_ok(),
            "strict: a valid frame skipped: {dissected:?}"
        );
        if let Ok(d) = &dissected {
            matches("strict", d, &expected);
            let octets = if octets == 0 {
                u64::from(orig_len)
            } else {
                octets
            };
            assert_eq!(d.octets, octets, "strict: octets counted");
        }
    }
    if let Ok(d) = &dissected {
        let key = FlowKey::new(d, RecordFlags::L3_L4, 0);
        assert_eq!(key.is_some(), d.addresses != Addresses::None);
    }
    if let Some(datagram) = udp_datagram(link, frame) {
        assert!(dissected.is_ok(), "a UDP datagram in a skipped frame");
        if let Ok(d) = &dissected {
            assert_eq!(d.protocol, 17);
            assert_eq!(
                (d.src_port, d.dst_port),
                (datagram.source.port(), datagram.destination.port())
            );
        }
    }
}
