//! Lax L2–L4 parsing of captured frames (through `etherparse`): Ethernet II with 802.1Q/802.1ad
//! tags, Linux cooked capture, raw IP and BSD loopback links; IPv4 and IPv6 with extension
//! headers walked to the transport header; TCP, UDP, ICMP and ICMPv6.
//!
//! Lax means a frame cut short by the capture's snap length still counts with the lengths its
//! headers announce, as a meter on a headers-only capture must; a frame whose headers themselves
//! are cut or invalid is skipped with a [`Skip`] reason the caller counts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::err::packet::SliceError;
use etherparse::{
    EtherType, Icmpv4Slice, Icmpv6Slice, LaxNetSlice, LaxSlicedPacket, LinkSlice, TcpSlice,
    TransportSlice, UdpSlice,
};

use crate::capture::LinkType;

/// IP protocol numbers the dissector reads a transport header for.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// The network-layer addresses of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// Not an IP packet.
    None,
    /// IPv4 source and destination.
    V4([u8; 4], [u8; 4]),
    /// IPv6 source and destination.
    V6([u8; 16], [u8; 16]),
}

/// What the meter needs from one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dissected {
    /// Ethernet source address (zero when the link has none).
    pub src_mac: [u8; 6],
    /// Ethernet destination address (zero when the link has none).
    pub dst_mac: [u8; 6],
    /// The outermost VLAN ID, 0 when untagged.
    pub vlan: u16,
    /// The EtherType after any VLAN tags.
    pub ethertype: u16,
    /// IP addresses, if IP.
    pub addresses: Addresses,
    /// The IP protocol of the transport header (after IPv6 extension headers), 0 if not IP.
    pub protocol: u8,
    /// TCP/UDP source port; 0 for other protocols and for fragments after the first (the
    /// first fragment carries the transport header and keeps its ports, as in softflowd and
    /// VPP's flowprobe).
    pub src_port: u16,
    /// TCP/UDP destination port; ICMP type × 256 + code, as NetFlow meters put it; 0 for
    /// fragments after the first.
    pub dst_port: u16,
    /// TCP header flags (the low 12 bits of the header's 13th and 14th octets, RFC 7125).
    pub tcp_flags: u16,
    /// Octets counted for the flow: the IP total length (IPv4) or payload length plus 40
    /// (IPv6), as flowprobe counts; the frame's wire length for non-IP frames.
    pub octets: u64,
}

/// Why a frame was not metered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A header ends before the frame does.
    Truncated,
    /// A header is invalid (bad version, header length, option length).
    Malformed,
    /// A link type the dissector does not read.
    UnsupportedLink,
}

impl Skip {
    /// The reason's label in the summary and counters.
    pub fn label(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::UnsupportedLink => "unsupported_link",
        }
    }
}

/// Slices `frame` by its link type.
fn slice(link: LinkType, frame: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::Truncated),
        LinkType::LinuxSll => {
            // 16-octet SLL header; the protocol type (an EtherType for IP) is its last field.
            let (header, rest) = frame.split_first_chunk::<16>().ok_or(Skip::Truncated)?;
            let ethertype = u16::from_be_bytes([header[14], header[15]]);
            Ok(LaxSlicedPacket::from_ether_type(EtherType(ethertype), rest))
        }
        LinkType::RawIp => ip(frame),
        LinkType::Null => ip(frame.get(4..).ok_or(Skip::Truncated)?),
        LinkType::Other(_) => Err(Skip::UnsupportedLink),
    }
}

fn ip(frame: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    LaxSlicedPacket::from_ip(frame).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => Skip::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => Skip::Malformed,
    })
}

fn stop_reason(packet: &LaxSlicedPacket<'_>) -> Skip {
    match packet.stop_err {
        Some((SliceError::Len(_), _)) | None => Skip::Truncated,
        Some(_) => Skip::Malformed,
    }
}

/// Reads the fields the meter keys and counts on from one frame: the common case (see
/// [`fast`]) directly, anything else through etherparse.
///
/// # Errors
/// The [`Skip`] reason when a header the frame announces is cut or invalid.
#[inline]
pub fn dissect(link: LinkType, frame: &[u8], orig_len: u32) -> Result<Dissected, Skip> {
    match fast(link, frame) {
        Some(d) => Ok(d),
        None => general(link, frame, orig_len),
    }
}

/// The common case, read without etherparse (whose slicing and the moves of its large result
/// were a fifth of metering a pcap): an Ethernet II frame, untagged or with one 802.1Q tag,
/// carrying an unfragmented IPv4 packet or an IPv6 packet without extension headers, with a
/// whole TCP, UDP, ICMP or ICMPv6 header inside both the captured octets and the IP packet's
/// own length. `None` for anything else (other links and tags, fragments, extension headers,
/// other protocols, a length that disagrees, a header cut or invalid), which [`general`]
/// reads; the two agree wherever this one answers (a differential test over every test
/// capture and generated frames).
#[inline]
pub(crate) fn fast(link: LinkType, frame: &[u8]) -> Option<Dissected> {
    const VLAN: u16 = 0x8100;
    if link != LinkType::Ethernet {
        return None;
    }
    let (eth, rest) = frame.split_first_chunk::<14>()?;
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1] = *eth;
    let (vlan, ethertype, ip) = match u16::from_be_bytes([t0, t1]) {
        VLAN => {
            let (&[c0, c1, e0, e1], after) = rest.split_first_chunk::<4>()?;
            (
                u16::from_be_bytes([c0, c1]) & 0x0fff,
                u16::from_be_bytes([e0, e1]),
                after,
            )
        }
        ethertype => (0, ethertype, rest),
    };
    let (addresses, protocol, octets, transport) = match ethertype {
        0x0800 => {
            let header = ip.first_chunk::<20>()?;
            let header_len = usize::from(header[0] & 0x0f) * 4;
            let total = u16::from_be_bytes([header[2], header[3]]);
            let fragmented = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
            if header[0] >> 4 != 4 || header_len < 20 || fragmented {
                return None;
            }
            let addresses = Addresses::V4(
                [header[12], header[13], header[14], header[15]],
                [header[16], header[17], header[18], header[19]],
            );
            let transport = ip.get(header_len..usize::from(total).min(ip.len()))?;
            (addresses, header[9], u64::from(total), transport)
        }
        0x86dd => {
            let header = ip.first_chunk::<40>()?;
            let payload = u16::from_be_bytes([header[4], header[5]]);
            if header[0] >> 4 != 6 || payload == 0 {
                return None;
            }
            let mut source = [0; 16];
            let mut destination = [0; 16];
            source.copy_from_slice(header.get(8..24)?);
            destination.copy_from_slice(header.get(24..40)?);
            let transport = ip.get(40..(40 + usize::from(payload)).min(ip.len()))?;
            (
                Addresses::V6(source, destination),
                header[6],
                u64::from(payload) + 40,
                transport,
            )
        }
        _ => return None,
    };
    let (src_port, dst_port, tcp_flags) = match (protocol, &addresses) {
        (protocol::TCP, _) => {
            let header = transport.first_chunk::<20>()?;
            let header_len = usize::from(header[12] >> 4) * 4;
            if header_len < 20 || header_len > transport.len() {
                return None;
            }
            (
                u16::from_be_bytes([header[0], header[1]]),
                u16::from_be_bytes([header[2], header[3]]),
                u16::from_be_bytes([header[12], header[13]]) & 0x0fff,
            )
        }
        (protocol::UDP, _) => {
            let header = transport.first_chunk::<8>()?;
            // Only a length that fills the IP payload exactly, as a sender writes it.
            if usize::from(u16::from_be_bytes([header[4], header[5]])) != transport.len() {
                return None;
            }
            (
                u16::from_be_bytes([header[0], header[1]]),
                u16::from_be_bytes([header[2], header[3]]),
                0,
            )
        }
        (protocol::ICMP, Addresses::V4(..)) | (protocol::ICMPV6, Addresses::V6(..)) => {
            let header = transport.first_chunk::<8>()?;
            (0, u16::from_be_bytes([header[0], header[1]]), 0)
        }
        _ => return None,
    };
    // Built in place at the end, not moved out of a local (a copy of the whole value).
    Some(Dissected {
        src_mac: [s0, s1, s2, s3, s4, s5],
        dst_mac: [d0, d1, d2, d3, d4, d5],
        vlan,
        ethertype,
        addresses,
        protocol,
        src_port,
        dst_port,
        tcp_flags,
        octets,
    })
}

/// Whether no Fragment header among an IPv6 packet's extension headers (`extensions`, their
/// octets as parsed, the first of type `next`) has a non-zero offset: the packet is whole or
/// a first fragment. Walked here by the headers' own lengths, each checked against the
/// octets, not by etherparse 0.19's iterator, which reads past the end of the headers when
/// the last one names another Hop-by-Hop header (undefined behaviour; found by the
/// `dissect_packet` fuzzer).
fn no_later_fragment(mut next: u8, mut extensions: &[u8]) -> bool {
    const FRAGMENT: u8 = 44;
    const AUTHENTICATION: u8 = 51;
    while let Some(&[following, len]) = extensions.first_chunk::<2>() {
        let octets = match next {
            FRAGMENT => {
                let Some(header) = extensions.first_chunk::<8>() else {
                    break;
                };
                if u16::from_be_bytes([header[2], header[3]]) >> 3 != 0 {
                    return false;
                }
                8
            }
            AUTHENTICATION => (usize::from(len) + 2) * 4,
            _ => (usize::from(len) + 1) * 8,
        };
        next = following;
        extensions = extensions.get(octets..).unwrap_or_default();
    }
    true
}

/// Reads a frame through etherparse: every link, tag, header and length the dissector knows.
pub(crate) fn general(link: LinkType, frame: &[u8], orig_len: u32) -> Result<Dissected, Skip> {
    let packet = slice(link, frame)?;
    let mut d = Dissected {
        src_mac: [0; 6],
        dst_mac: [0; 6],
        vlan: 0,
        ethertype: 0,
        addresses: Addresses::None,
        protocol: 0,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        octets: u64::from(orig_len),
    };
    if let Some(LinkSlice::Ethernet2(eth)) = &packet.link {
        d.src_mac = eth.source();
        d.dst_mac = eth.destination();
        d.ethertype = eth.ether_type().0;
    }
    if let Some(vlan) = packet.vlan_ids().first() {
        d.vlan = vlan.value();
    }
    if let Some(payload) = packet.ether_payload() {
        d.ethertype = payload.ether_type.0;
    }
    // `Some(payload)` for a fragment: the first (offset 0) with the octets after the IP
    // headers, which start with the transport header; a later one with none.
    let fragment = match &packet.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            d.addresses = Addresses::V4(h.source(), h.destination());
            d.protocol = v4.payload().ip_number.0;
            if h.total_len() != 0 {
                d.octets = u64::from(h.total_len());
            }
            let first = h.fragments_offset().value() == 0;
            v4.payload()
                .fragmented
                .then(|| first.then_some(v4.payload().payload))
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            d.addresses = Addresses::V6(h.source(), h.destination());
            d.protocol = v6.payload().ip_number.0;
            if h.payload_length() != 0 {
                d.octets = u64::from(h.payload_length()) + 40;
            }
            let extensions = v6.extensions();
            let first = extensions
                .first_header()
                .is_none_or(|next| no_later_fragment(next.0, extensions.slice()));
            v6.payload()
                .fragmented
                .then(|| first.then_some(v6.payload().payload))
        }
        Some(LaxNetSlice::Arp(_)) => return Ok(d),
        None => {
            return if d.ethertype == EtherType::IPV4.0 || d.ethertype == EtherType::IPV6.0 {
                Err(stop_reason(&packet))
            } else {
                Ok(d)
            };
        }
    };
    let transport = match fragment {
        // Later fragments carry no transport header: ports stay 0, as softflowd meters them.
        Some(None) => return Ok(d),
        Some(Some(payload)) => first_fragment_transport(d.protocol, payload),
        None => packet.transport.clone(),
    };
    match &transport {
        Some(TransportSlice::Tcp(tcp)) => {
            d.src_port = tcp.source_port();
            d.dst_port = tcp.destination_port();
            // Octets 12 and 13 of a header etherparse has checked to be at least 20 long.
            let flags = tcp.header_slice().get(12..).and_then(<[u8]>::first_chunk);
            d.tcp_flags = flags.map_or(0, |f| u16::from_be_bytes(*f)) & 0x0fff;
        }
        Some(TransportSlice::Udp(udp)) => {
            d.src_port = udp.source_port();
            d.dst_port = udp.destination_port();
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            d.dst_port = u16::from_be_bytes([icmp.type_u8(), icmp.code_u8()]);
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            d.dst_port = u16::from_be_bytes([icmp.type_u8(), icmp.code_u8()]);
        }
        // IGMP has no ports (etherparse 0.21 reads it; 0.19 left it as a payload).
        Some(TransportSlice::Igmp(_)) => {}
        None => {
            if fragment.is_none()
                && matches!(
                    d.protocol,
                    protocol::TCP | protocol::UDP | protocol::ICMP | protocol::ICMPV6
                )
            {
                return Err(stop_reason(&packet));
            }
        }
    }
    Ok(d)
}

/// The transport header at the start of a first fragment's payload. etherparse slices no
/// transport header in a fragment, so it is sliced here, laxly for UDP (whose length runs past
/// the fragment); a first fragment too short to hold the whole header (RFC 1858's tiny
/// fragments) gives none, and keeps ports 0.
fn first_fragment_transport(protocol: u8, payload: &[u8]) -> Option<TransportSlice<'_>> {
    match protocol {
        protocol::TCP => TcpSlice::from_slice(payload).ok().map(TransportSlice::Tcp),
        protocol::UDP => UdpSlice::from_slice_lax(payload)
            .ok()
            .map(TransportSlice::Udp),
        protocol::ICMP => Icmpv4Slice::from_slice(payload)
            .ok()
            .map(TransportSlice::Icmpv4),
        protocol::ICMPV6 => Icmpv6Slice::from_slice(payload)
            .ok()
            .map(TransportSlice::Icmpv6),
        _ => None,
    }
}

/// One UDP datagram found in a frame (what `flowvm decode` reads IPFIX from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// The whole UDP datagram in `frame`, if it holds one (unfragmented and not cut short).
pub fn udp_datagram(link: LinkType, frame: &[u8]) -> Option<Datagram<'_>> {
    let packet = slice(link, frame).ok()?;
    let (source, destination): (IpAddr, IpAddr) = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) if !v4.payload().incomplete => (
            Ipv4Addr::from(v4.header().source()).into(),
            Ipv4Addr::from(v4.header().destination()).into(),
        ),
        LaxNetSlice::Ipv6(v6) if !v6.payload().incomplete => (
            Ipv6Addr::from(v6.header().source()).into(),
            Ipv6Addr::from(v6.header().destination()).into(),
        ),
        _ => return None,
    };
    match packet.transport.as_ref()? {
        TransportSlice::Udp(udp) => Some(Datagram {
            source: SocketAddr::new(source, udp.source_port()),
            destination: SocketAddr::new(destination, udp.destination_port()),
            payload: udp.payload(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn frame(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        builder(&mut v);
        v
    }

    fn len(f: &[u8]) -> u32 {
        u32::try_from(f.len()).unwrap()
    }

    #[test]
    fn vlan_tagged_ipv4_tcp_gives_ports_flags_and_the_ip_length() {
        let f = frame(|v| {
            PacketBuilder::ethernet2(A, B)
                .single_vlan(etherparse::VlanId::try_new(42).unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(1234, 80, 1, 1024)
                .syn()
                .ack(5)
                .write(v, &[0; 10])
                .unwrap();
        });
        let d = dissect(LinkType::Ethernet, &f, len(&f)).unwrap();
        assert_eq!((d.src_mac, d.dst_mac, d.vlan), (A, B, 42));
        assert_eq!(d.ethertype, 0x0800);
        assert_eq!(d.addresses, Addresses::V4([10, 0, 0, 1], [10, 0, 0, 2]));
        assert_eq!((d.protocol, d.src_port, d.dst_port), (6, 1234, 80));
        assert_eq!(d.tcp_flags, 0x12);
        assert_eq!(d.octets, 20 + 20 + 10);
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_udp() {
        let mut f = frame(|v| {
            PacketBuilder::ethernet2(A, B)
                .ipv6([1; 16], [2; 16], 64)
                .udp(53, 5353)
                .write(v, &[7; 4])
                .unwrap();
        });
        // Insert an 8-octet hop-by-hop header (next header UDP) after the IPv6 header.
        f[14 + 6] = 0;
        let payload_len = u16::from_be_bytes([f[18], f[19]]) + 8;
        f[18..20].copy_from_slice(&payload_len.to_be_bytes());
        f.splice(54..54, [17, 0, 1, 4, 0, 0, 0, 0]);
        let d = dissect(LinkType::Ethernet, &f, len(&f)).unwrap();
        assert_eq!((d.protocol, d.src_port, d.dst_port), (17, 53, 5353));
        assert_eq!(d.octets, 40 + 8 + 8 + 4);
    }

    #[test]
    fn icmp_type_and_code_go_in_the_destination_port() {
        let f = frame(|v| {
            PacketBuilder::ethernet2(A, B)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .icmpv4_echo_request(1, 1)
                .write(v, &[])
                .unwrap();
        });
        let d = dissect(LinkType::Ethernet, &f, len(&f)).unwrap();
        assert_eq!((d.protocol, d.src_port, d.dst_port), (1, 0, 8 << 8));
    }

    #[test]
    fn a_snapped_payload_still_counts_the_ip_length() {
        let f = frame(|v| {
            PacketBuilder::ethernet2(A, B)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(1, 2)
                .write(v, &[0; 1000])
                .unwrap();
        });
        let d = dissect(LinkType::Ethernet, &f[..14 + 20 + 8 + 10], len(&f)).unwrap();
        assert_eq!((d.src_port, d.octets), (1, 1028));
    }

    #[test]
    fn cut_and_invalid_headers_are_skipped_with_a_reason() {
        let f = frame(|v| {
            PacketBuilder::ethernet2(A, B)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(1, 2, 3, 4)
                .write(v, &[])
                .unwrap();
        });
        assert_eq!(
            dissect(LinkType::Ethernet, &f[..10], 10),
            Err(Skip::Truncated)
        );
        assert_eq!(
            dissect(LinkType::Ethernet, &f[..30], 30),
            Err(Skip::Truncated)
        );
        assert_eq!(
            dissect(LinkType::Ethernet, &f[..40], 40),
            Err(Skip::Truncated)
        );
        let mut bad = f.clone();
        bad[14] = 0x75; // version 7
        assert_eq!(
            dissect(LinkType::Ethernet, &bad, len(&bad)),
            Err(Skip::Malformed)
        );
        assert_eq!(
            dissect(LinkType::Other(147), &f, len(&f)),
            Err(Skip::UnsupportedLink)
        );
    }

    #[test]
    fn non_ip_frames_keep_their_ethertype_and_wire_length() {
        let mut f = vec![0; 60];
        f[..6].copy_from_slice(&B);
        f[6..12].copy_from_slice(&A);
        f[12..14].copy_from_slice(&0x88cc_u16.to_be_bytes()); // LLDP
        let d = dissect(LinkType::Ethernet, &f, 64).unwrap();
        assert_eq!(
            (d.ethertype, d.addresses, d.octets),
            (0x88cc, Addresses::None, 64)
        );
    }

    #[test]
    fn udp_datagrams_are_found_for_the_offline_decoder() {
        let f = frame(|v| {
            PacketBuilder::ethernet2(A, B)
                .ipv6([1; 16], [2; 16], 64)
                .udp(4739, 4739)
                .write(v, &[9; 20])
                .unwrap();
        });
        let d = udp_datagram(LinkType::Ethernet, &f).unwrap();
        assert_eq!(d.payload, &[9; 20]);
        assert_eq!(d.destination.port(), 4739);
        assert_eq!(udp_datagram(LinkType::Ethernet, &f[..f.len() - 1]), None);
    }

    /// An Ethernet frame with one IPv4 or IPv6 fragment of a datagram of `protocol`: offset
    /// `offset` (in 8-octet units), more fragments to come or not, and `payload` after the IP
    /// headers.
    fn fragment(v6: bool, protocol: u8, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
        use etherparse::{
            Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header,
        };
        let mut v = Vec::new();
        let ether_type = if v6 { EtherType::IPV6 } else { EtherType::IPV4 };
        Ethernet2Header {
            source: A,
            destination: B,
            ether_type,
        }
        .write(&mut v)
        .unwrap();
        let offset = IpFragOffset::try_new(offset).unwrap();
        if v6 {
            let frag = Ipv6FragmentHeader::new(IpNumber(protocol), offset, more, 7);
            Ipv6Header {
                payload_length: u16::try_from(8 + payload.len()).unwrap(),
                next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
                hop_limit: 64,
                source: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                destination: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                ..Ipv6Header::default()
            }
            .write(&mut v)
            .unwrap();
            frag.write(&mut v).unwrap();
        } else {
            let mut h = Ipv4Header::new(
                u16::try_from(payload.len()).unwrap(),
                64,
                IpNumber(protocol),
                [10, 0, 0, 1],
                [10, 0, 0, 2],
            )
            .unwrap();
            h.identification = 7;
            h.more_fragments = more;
            h.fragment_offset = offset;
            h.header_checksum = h.calc_header_checksum();
            h.write(&mut v).unwrap();
        }
        v.extend_from_slice(payload);
        v
    }

    /// IPv6 fragments written octet by octet as RFC 8200 lays the Fragment header out (the
    /// offset in the top 13 bits of octets 2-3, M in the lowest), not by etherparse, whose
    /// 0.19 read and wrote those bits the other way round (a first fragment, `00 01`, read as
    /// a later one).
    #[test]
    fn ipv6_fragments_are_told_apart_by_the_rfc_8200_layout() {
        let frame = |[high, low]: [u8; 2], payload: &[u8]| {
            let mut f = vec![0_u8; 12];
            f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend(u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
            f.extend([44, 64]);
            f.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f.extend([protocol::UDP, 0, high, low, 0, 0, 0, 7]);
            f.extend(payload);
            f
        };
        let udp = [0x13, 0x88, 0, 53, 0x03, 0xe8, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7];
        // Offset 0, M set: the first fragment, its UDP header read.
        let first = frame([0x00, 0x01], &udp);
        let d = dissect(LinkType::Ethernet, &first, len(&first)).unwrap();
        assert_eq!((d.src_port, d.dst_port), (5000, 53));
        // Offset 185 (1480 octets), M set, and offset 370 the last: no ports.
        for later in [[0x05, 0xc9], [0x0b, 0x90]] {
            let f = frame(later, &[7; 16]);
            let d = dissect(LinkType::Ethernet, &f, len(&f)).unwrap();
            assert_eq!((d.src_port, d.dst_port, d.protocol), (0, 0, protocol::UDP));
        }
    }

    #[test]
    fn a_first_fragment_keeps_its_ports_and_later_fragments_have_none() {
        // A UDP datagram of 1000 octets in three fragments; a TCP segment in two.
        let udp = [[0x13, 0x88, 0, 53, 0x03, 0xe8, 0, 0].as_slice(), &[7; 24]].concat();
        let mut tcp = vec![
            0x04, 0xd2, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 4, 0, 0, 0, 0, 0,
        ];
        tcp.extend([9; 12]);
        for v6 in [false, true] {
            let cases = [
                (fragment(v6, protocol::UDP, 0, true, &udp), (5000, 53, 0)),
                (fragment(v6, protocol::UDP, 4, true, &[7; 32]), (0, 0, 0)),
                (fragment(v6, protocol::UDP, 8, false, &[7; 8]), (0, 0, 0)),
                (fragment(v6, protocol::TCP, 0, true, &tcp), (1234, 80, 0x18)),
                (fragment(v6, protocol::TCP, 4, false, &[9; 16]), (0, 0, 0)),
                // RFC 1858's tiny first fragment: too short for a TCP header, no ports.
                (fragment(v6, protocol::TCP, 0, true, &tcp[..8]), (0, 0, 0)),
            ];
            for (n, (f, (src, dst, flags))) in cases.iter().enumerate() {
                let d = dissect(LinkType::Ethernet, f, len(f)).unwrap();
                assert_eq!(
                    (d.src_port, d.dst_port, d.tcp_flags),
                    (*src, *dst, *flags),
                    "case {n}, IPv6 {v6}"
                );
            }
        }
        // An unfragmented datagram cut inside its UDP header is still an error, as before.
        let cut = fragment(false, protocol::UDP, 0, false, &udp[..4]);
        assert_eq!(
            dissect(LinkType::Ethernet, &cut, len(&cut)),
            Err(Skip::Truncated)
        );
    }

    /// Every frame of every capture in testdata/ with its link type.
    fn test_frames() -> Vec<(LinkType, Vec<u8>, u32)> {
        let mut frames = Vec::new();
        for dir in ["pcap", "captures"] {
            let dir = format!("{}/../testdata/{dir}", env!("CARGO_MANIFEST_DIR"));
            let mut paths: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
                .collect();
            paths.sort();
            for path in paths {
                let file = std::fs::File::open(&path).unwrap();
                crate::capture::file::for_each_packet(file, |p| {
                    frames.push((p.link, p.data.to_vec(), p.orig_len));
                    true
                })
                .unwrap();
            }
        }
        frames
    }

    /// The fast path agrees with the general one wherever it answers.
    fn agrees(link: LinkType, frame: &[u8], orig_len: u32) -> bool {
        match fast(link, frame) {
            Some(d) => general(link, frame, orig_len) == Ok(d),
            None => true,
        }
    }

    #[test]
    fn the_fast_path_agrees_with_etherparse_on_every_test_capture_and_takes_most_frames() {
        let frames = test_frames();
        let mut taken = 0;
        for (link, frame, orig_len) in &frames {
            assert!(
                agrees(*link, frame, *orig_len),
                "{link:?} {frame:02x?}: fast {:?}, general {:?}",
                fast(*link, frame),
                general(*link, frame, *orig_len)
            );
            taken += usize::from(fast(*link, frame).is_some());
            // Every cut of the frame too, as a snap length would leave it.
            for cut in 0..frame.len().min(80) {
                let short = frame.get(..cut).unwrap_or_default();
                assert!(agrees(*link, short, *orig_len), "{frame:02x?} cut at {cut}");
            }
        }
        assert!(frames.len() > 10_000, "{} frames", frames.len());
        assert!(
            taken * 2 > frames.len(),
            "{taken} of {} frames",
            frames.len()
        );
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_agrees_with_etherparse_on_generated_and_damaged_frames(
            v6 in proptest::bool::ANY,
            vlan in proptest::option::of(0_u16..4096),
            transport in 0_u8..4,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            cut in proptest::option::of(0_usize..128),
            damage in proptest::option::of((0_usize..96, proptest::num::u8::ANY)),
        ) {
            let mut f = Vec::new();
            let eth = PacketBuilder::ethernet2(A, B);
            let ip = match (vlan, v6) {
                (Some(id), false) => eth
                    .single_vlan(etherparse::VlanId::try_new(id).unwrap())
                    .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
                (Some(id), true) => eth
                    .single_vlan(etherparse::VlanId::try_new(id).unwrap())
                    .ipv6([1; 16], [2; 16], 64),
                (None, false) => eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
                (None, true) => eth.ipv6([1; 16], [2; 16], 64),
            };
            match transport {
                0 => ip.tcp(1234, 80, 7, 1024).syn().write(&mut f, &payload).unwrap(),
                1 => ip.udp(53, 5353).write(&mut f, &payload).unwrap(),
                2 if v6 => ip.icmpv6_echo_request(1, 2).write(&mut f, &payload).unwrap(),
                2 => ip.icmpv4_echo_request(1, 2).write(&mut f, &payload).unwrap(),
                _ => ip.write(&mut f, etherparse::IpNumber(47), &payload).unwrap(),
            }
            let orig_len = len(&f);
            if let Some((at, byte)) = damage
                && let Some(b) = f.get_mut(at)
            {
                *b = byte;
            }
            if let Some(cut) = cut {
                f.truncate(cut);
            }
            proptest::prop_assert!(
                agrees(LinkType::Ethernet, &f, orig_len),
                "{f:02x?}: fast {:?}, general {:?}",
                fast(LinkType::Ethernet, &f),
                general(LinkType::Ethernet, &f, orig_len)
            );
        }
    }
}
