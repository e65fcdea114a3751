//! NetFlow version 5: a 24-octet header and fixed 48-octet flow records. The record layout is
//! a built-in template ([`template`]) of IANA Information Elements, compiled into a program
//! like any template, so v5 records run through the same VM into the same columns as IPFIX
//! and NetFlow v9 ones.

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::ids::{ObservationDomainId, SetId, TemplateId};
use crate::wire::reader::Reader;
use crate::wire::set::Set;
use crate::wire::template::TemplateDef;

/// Version of NetFlow v5 export packets.
pub const VERSION: u16 = 5;
/// Length of the packet header.
pub const HEADER_LEN: usize = 24;
/// Length of one flow record.
pub const RECORD_LEN: usize = 48;
/// The Template ID the built-in layout is known by: below 256, so it can never be mistaken
/// for a template an exporter defined.
pub const TEMPLATE_ID: TemplateId = TemplateId(5);

/// The flow record as (Information Element, length) pairs, in wire order.
const LAYOUT: [(u16, u16); 20] = [
    (8, 4),   // srcaddr: sourceIPv4Address
    (12, 4),  // dstaddr: destinationIPv4Address
    (15, 4),  // nexthop: ipNextHopIPv4Address
    (10, 2),  // input: ingressInterface
    (14, 2),  // output: egressInterface
    (2, 4),   // dPkts: packetDeltaCount
    (1, 4),   // dOctets: octetDeltaCount
    (22, 4),  // First: flowStartSysUpTime
    (21, 4),  // Last: flowEndSysUpTime
    (7, 2),   // srcport: sourceTransportPort
    (11, 2),  // dstport: destinationTransportPort
    (210, 1), // pad1: paddingOctets
    (6, 1),   // tcp_flags: tcpControlBits
    (4, 1),   // prot: protocolIdentifier
    (5, 1),   // tos: ipClassOfService
    (16, 2),  // src_as: bgpSourceAsNumber
    (17, 2),  // dst_as: bgpDestinationAsNumber
    (9, 1),   // src_mask: sourceIPv4PrefixLength
    (13, 1),  // dst_mask: destinationIPv4PrefixLength
    (210, 2), // pad2: paddingOctets
];

/// The flow record layout as a template of IANA elements (reduced sizes where v5 is narrower
/// than the element's type).
pub fn template() -> TemplateDef {
    TemplateDef::of_iana(TEMPLATE_ID, &LAYOUT)
}

/// The 24-octet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Flow records in the packet.
    pub count: u16,
    /// Milliseconds since the exporting device booted.
    pub sys_uptime: u32,
    /// Seconds since the UNIX epoch at which the packet left the device.
    pub unix_secs: u32,
    /// Nanoseconds past `unix_secs`.
    pub unix_nsecs: u32,
    /// Flows seen before this packet's first, modulo 2^32.
    pub flow_sequence: u32,
    /// Type of the flow-switching engine.
    pub engine_type: u8,
    /// Slot number of the flow-switching engine.
    pub engine_id: u8,
    /// Sampling mode in the two high bits, interval in the other fourteen.
    pub sampling: u16,
}

impl PacketHeader {
    /// The Observation Domain the packet's records are archived under: engine type and engine
    /// ID side by side, `engine_type × 256 + engine_id`, as they tell a device's engines apart.
    pub fn observation_domain_id(&self) -> ObservationDomainId {
        ObservationDomainId(u32::from(self.engine_type) << 8 | u32::from(self.engine_id))
    }

    /// The sampling mode (the two high bits of the sampling field).
    pub fn sampling_mode(&self) -> u8 {
        u8::try_from(self.sampling >> 14).unwrap_or(0)
    }

    /// The sampling interval (the fourteen low bits).
    pub fn sampling_interval(&self) -> u16 {
        self.sampling & 0x3fff
    }
}

/// One NetFlow v5 export packet.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// The decoded header.
    pub header: PacketHeader,
    records: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decodes a packet that must fill `bytes` exactly: the header, then `count` records.
    ///
    /// # Errors
    /// [`DecodeErrorKind::Truncated`] on a short header, [`DecodeErrorKind::UnsupportedVersion`]
    /// for another version, [`DecodeErrorKind::LengthMismatch`] when `count` records do not
    /// fill the datagram exactly (`header` is then the length the count implies).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.version(VERSION)?;
        let header = PacketHeader {
            count: r.u16()?,
            sys_uptime: r.u32()?,
            unix_secs: r.u32()?,
            unix_nsecs: r.u32()?,
            flow_sequence: r.u32()?,
            engine_type: r.u8()?,
            engine_id: r.u8()?,
            sampling: r.u16()?,
        };
        let implied = HEADER_LEN + RECORD_LEN * usize::from(header.count);
        if implied != bytes.len() {
            let kind = DecodeErrorKind::LengthMismatch {
                header: u16::try_from(implied).unwrap_or(u16::MAX),
                actual: u16::try_from(bytes.len()).unwrap_or(u16::MAX),
            };
            return Err(DecodeError::new(kind, 2));
        }
        let records = bytes.get(HEADER_LEN..).unwrap_or_default();
        Ok(Self { header, records })
    }

    /// The flow records, as a Data Set of the built-in template.
    pub fn records(&self) -> Set<'a> {
        Set {
            id: SetId(TEMPLATE_ID.0),
            body: self.records,
            offset: HEADER_LEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(count: u16, records: usize) -> Vec<u8> {
        let mut p = vec![0, 5];
        p.extend(count.to_be_bytes());
        p.extend([0, 0, 0x27, 0x10]); // sys_uptime 10 s
        p.extend(0x5a00_0000_u32.to_be_bytes());
        p.extend(500_000_000_u32.to_be_bytes());
        p.extend(77_u32.to_be_bytes());
        p.extend([1, 2, 0x40, 0x64]); // engine 1/2, sampling mode 1 interval 100
        p.resize(HEADER_LEN + RECORD_LEN * records, 0);
        p
    }

    #[test]
    fn the_layout_is_48_octets() {
        let len: u16 = LAYOUT.iter().map(|&(_, l)| l).sum();
        assert_eq!(usize::from(len), RECORD_LEN);
    }

    #[test]
    fn decodes_the_header_and_checks_count_against_length() {
        let bytes = packet(2, 2);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.header.count, 2);
        assert_eq!(p.header.flow_sequence, 77);
        assert_eq!(
            p.header.observation_domain_id(),
            ObservationDomainId(0x0102)
        );
        assert_eq!(
            (p.header.sampling_mode(), p.header.sampling_interval()),
            (1, 100)
        );
        assert_eq!(p.records().body.len(), 2 * RECORD_LEN);
        // A count of 31 in a 200-octet datagram; a count short of the records sent.
        let mut lying = packet(31, 0);
        lying.resize(200, 0);
        for bytes in [lying, packet(1, 2)] {
            assert!(matches!(
                Packet::decode(&bytes).unwrap_err().kind,
                DecodeErrorKind::LengthMismatch { .. }
            ));
        }
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::decode(&bytes[..len]).unwrap_err().kind,
                DecodeErrorKind::Truncated
            );
        }
    }
}
