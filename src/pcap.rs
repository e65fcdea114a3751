//! Reading pcap and pcapng captures (through `pcap-parser`), and finding the UDP datagrams in
//! them: Ethernet (with 802.1Q/802.1ad tags), Linux cooked, BSD loopback and raw IP links;
//! IPv4 and IPv6 (fixed header; extension headers are walked).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pcap_parser::data::{PacketData, get_packetdata};
use pcap_parser::pcapng::Block;
use pcap_parser::{Linktype, PcapBlockOwned, PcapError, create_reader};

/// Whether `head` starts like a pcap or pcapng file.
pub fn is_capture(head: &[u8]) -> bool {
    matches!(
        head.get(..4),
        Some(
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    )
}

/// Calls `packet(timestamp_ns, linktype, frame)` for every packet of a capture, in order.
///
/// # Errors
/// A capture that cannot be parsed; packets before the damage have been delivered.
pub fn for_each_packet(
    input: impl Read + Send,
    mut packet: impl FnMut(i64, Linktype, &[u8]),
) -> Result<(), String> {
    let mut reader = create_reader(1 << 20, input)
        .map_err(|e| format!("not a pcap or pcapng capture: {e:?}"))?;
    let mut legacy = (Linktype::ETHERNET, 1_000_i64);
    let mut interfaces: Vec<(Linktype, u64, i64)> = Vec::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = (
                            h.network,
                            if h.is_nanosecond_precision() {
                                1
                            } else {
                                1_000
                            },
                        );
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let ts =
                            i64::from(b.ts_sec) * 1_000_000_000 + i64::from(b.ts_usec) * legacy.1;
                        packet(ts, legacy.0, b.data);
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push((
                            idb.linktype,
                            idb.ts_resolution().unwrap_or(1_000_000),
                            idb.if_tsoffset,
                        ));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let (linktype, resolution, offset) = interfaces
                            .get(usize::try_from(epb.if_id).unwrap_or(usize::MAX))
                            .copied()
                            .unwrap_or((Linktype::ETHERNET, 1_000_000, 0));
                        let (seconds, fraction) =
                            epb.decode_ts(u64::try_from(offset).unwrap_or(0), resolution);
                        let nanos =
                            i64::try_from(u64::from(fraction) * 1_000_000_000 / resolution.max(1))
                                .unwrap_or(0);
                        let len = usize::try_from(epb.caplen).unwrap_or(0).min(epb.data.len());
                        packet(
                            i64::from(seconds) * 1_000_000_000 + nanos,
                            linktype,
                            epb.data.get(..len).unwrap_or_default(),
                        );
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let linktype = interfaces.first().map_or(Linktype::ETHERNET, |i| i.0);
                        packet(0, linktype, spb.data);
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => return Ok(()),
            Err(PcapError::Incomplete(_)) => {
                reader.refill().map_err(|e| format!("capture: {e:?}"))?;
            }
            Err(e) => return Err(format!("capture damaged: {e:?}")),
        }
    }
}

/// One UDP datagram found in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// The UDP datagram in `frame`, if it holds one (unfragmented).
pub fn udp_datagram(linktype: Linktype, frame: &[u8]) -> Option<Datagram<'_>> {
    let caplen = frame.len();
    let (mut ethertype, mut l3) = match get_packetdata(frame, linktype, caplen)? {
        PacketData::L3(ethertype, data) => (ethertype, data),
        PacketData::L2(data) => {
            let (ethertype, rest) = data
                .split_at_checked(14)
                .map(|(h, r)| (u16::from_be_bytes([h[12], h[13]]), r))?;
            (ethertype, rest)
        }
        _ => return None,
    };
    // 802.1Q and 802.1ad tags, possibly stacked.
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        let (tag, rest) = l3.split_first_chunk::<4>()?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 = rest;
    }
    match ethertype {
        0x0800 => ipv4(l3),
        0x86dd => ipv6(l3),
        _ => None,
    }
}

fn ipv4(p: &[u8]) -> Option<Datagram<'_>> {
    let header = p.first_chunk::<20>()?;
    let ihl = usize::from(header[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let fragmented = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
    if header[0] >> 4 != 4 || header[9] != 17 || fragmented || ihl < 20 {
        return None;
    }
    let source = IpAddr::V4(Ipv4Addr::new(
        header[12], header[13], header[14], header[15],
    ));
    let destination = IpAddr::V4(Ipv4Addr::new(
        header[16], header[17], header[18], header[19],
    ));
    udp(source, destination, p.get(ihl..total.min(p.len()))?)
}

fn ipv6(p: &[u8]) -> Option<Datagram<'_>> {
    let header = p.first_chunk::<40>()?;
    if header[0] >> 4 != 6 {
        return None;
    }
    let mut next = header[6];
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let octets =
        |range: std::ops::Range<usize>| -> Option<[u8; 16]> { header.get(range)?.try_into().ok() };
    let source = IpAddr::V6(Ipv6Addr::from(octets(8..24)?));
    let destination = IpAddr::V6(Ipv6Addr::from(octets(24..40)?));
    let mut rest = p.get(40..(40 + payload_len).min(p.len()))?;
    // Hop-by-hop, routing and destination options: walk to the transport header.
    while matches!(next, 0 | 43 | 60) {
        let ext = rest.first_chunk::<2>()?;
        let len = (usize::from(ext[1]) + 1) * 8;
        next = ext[0];
        rest = rest.get(len..)?;
    }
    if next != 17 {
        return None;
    }
    udp(source, destination, rest)
}

fn udp<'a>(source: IpAddr, destination: IpAddr, segment: &'a [u8]) -> Option<Datagram<'a>> {
    let header = segment.first_chunk::<8>()?;
    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let payload = segment.get(8..length.clamp(8, segment.len()))?;
    Some(Datagram {
        source: SocketAddr::new(source, u16::from_be_bytes([header[0], header[1]])),
        destination: SocketAddr::new(destination, u16::from_be_bytes([header[2], header[3]])),
        payload,
    })
}
