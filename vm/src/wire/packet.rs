//! The protocol front end: one export packet of any protocol flowvm collects (IPFIX, RFC 7011;
//! NetFlow v9, RFC 3954; NetFlow v5), told apart by its version field, and the neutral items
//! it holds. Whatever the protocol, the collector plans and decodes the same items: template
//! definitions and withdrawals, Data Sets with their Template ID, reserved Sets to skip.
//!
//! A new protocol adds a variant here, a header mapping in [`ExportPacket::header`] and its
//! items in [`ExportPacket::for_each_item`]; nothing after this seam changes.

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::header::Message;
use crate::wire::ids::{ObservationDomainId, SetId, TemplateId};
use crate::wire::netflow5;
use crate::wire::netflow9;
use crate::wire::set::{Set, SetKind};
use crate::wire::template::{TemplateRecord, TemplateRecords};

/// One whole export packet (one UDP datagram, one TCP frame, one Message of a file).
#[derive(Clone, Copy, Debug)]
pub enum ExportPacket<'a> {
    /// An IPFIX Message.
    Ipfix(Message<'a>),
    /// A NetFlow v9 export packet.
    Netflow9(netflow9::Packet<'a>),
    /// A NetFlow v5 export packet.
    Netflow5(netflow5::Packet<'a>),
}

/// How a packet's sequence number counts (what one step of it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SequenceUnit {
    /// Data Records sent before this packet (IPFIX, RFC 7011 §3.1; NetFlow v5's flows).
    Records,
    /// Export packets sent before this one (NetFlow v9, RFC 3954 §5.1).
    Packets,
}

/// The header fields every protocol has, in IPFIX terms, plus the NetFlow extras.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportHeader {
    /// The version field: 10, 9 or 5.
    pub version: u16,
    /// The Observation Domain (v9: the Source ID; v5: engine type × 256 + engine ID).
    pub observation_domain_id: ObservationDomainId,
    /// Seconds since the UNIX epoch at which the packet left the exporter.
    pub export_time: u32,
    /// Nanoseconds past `export_time` (v5 only; 0 otherwise).
    pub export_nanos: u32,
    /// The sequence number, counted in `sequence_unit`s.
    pub sequence_number: u32,
    /// What the sequence number counts.
    pub sequence_unit: SequenceUnit,
    /// Milliseconds the exporting device had been up when the packet left (NetFlow).
    pub sys_uptime: Option<u32>,
    /// The records the header says the packet holds (v9: of every kind; v5: flows).
    pub count: Option<u16>,
    /// The v5 header's engine and sampling fields.
    pub netflow5: Option<netflow5::PacketHeader>,
}

/// One neutral item of a packet, in packet order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A template definition or withdrawal.
    Template(TemplateRecord),
    /// A Data Set (IPFIX) or Data FlowSet (v9) for a template, or v5's records for its
    /// built-in template ([`netflow5::TEMPLATE_ID`]).
    Data(TemplateId, Set<'a>),
    /// A Set whose ID is reserved: skipped, and counted by the caller.
    Reserved(DecodeError),
}

impl<'a> ExportPacket<'a> {
    /// Decodes a packet that fills `bytes`, by its version field: 10 is IPFIX, 9 NetFlow v9,
    /// 5 NetFlow v5.
    ///
    /// # Errors
    /// [`DecodeErrorKind::Truncated`] for fewer than two octets,
    /// [`DecodeErrorKind::UnsupportedVersion`] for any other version (1, 7, 8, …), and each
    /// protocol's own header errors.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let Some(&[high, low]) = bytes.first_chunk::<2>() else {
            return Err(DecodeError::new(DecodeErrorKind::Truncated, bytes.len()));
        };
        match u16::from_be_bytes([high, low]) {
            crate::wire::VERSION => Message::decode(bytes).map(Self::Ipfix),
            netflow9::VERSION => netflow9::Packet::decode(bytes).map(Self::Netflow9),
            netflow5::VERSION => netflow5::Packet::decode(bytes).map(Self::Netflow5),
            other => Err(DecodeError::new(
                DecodeErrorKind::UnsupportedVersion(other),
                0,
            )),
        }
    }

    /// Whether `bytes` starts with a version flowvm collects (10, 9 or 5): how a capture's
    /// other UDP traffic is told from export packets.
    pub fn is_collected_version(bytes: &[u8]) -> bool {
        matches!(bytes.get(..2), Some([0, 5 | 9 | 10]))
    }

    /// The header, in IPFIX terms.
    pub fn header(&self) -> ExportHeader {
        match self {
            Self::Ipfix(m) => ExportHeader {
                version: m.header.version,
                observation_domain_id: m.header.observation_domain_id,
                export_time: m.header.export_time,
                export_nanos: 0,
                sequence_number: m.header.sequence_number,
                sequence_unit: SequenceUnit::Records,
                sys_uptime: None,
                count: None,
                netflow5: None,
            },
            Self::Netflow9(p) => ExportHeader {
                version: netflow9::VERSION,
                observation_domain_id: ObservationDomainId(p.header.source_id),
                export_time: p.header.unix_secs,
                export_nanos: 0,
                sequence_number: p.header.sequence_number,
                sequence_unit: SequenceUnit::Packets,
                sys_uptime: Some(p.header.sys_uptime),
                count: Some(p.header.count),
                netflow5: None,
            },
            Self::Netflow5(p) => ExportHeader {
                version: netflow5::VERSION,
                observation_domain_id: p.header.observation_domain_id(),
                export_time: p.header.unix_secs,
                export_nanos: p.header.unix_nsecs,
                sequence_number: p.header.flow_sequence,
                sequence_unit: SequenceUnit::Records,
                sys_uptime: Some(p.header.sys_uptime),
                count: Some(p.header.count),
                netflow5: Some(p.header),
            },
        }
    }

    /// Calls `f` with every item of the packet, in order, stopping at the first error (of the
    /// framing, or returned by `f`).
    ///
    /// # Errors
    /// A Set or FlowSet whose length does not fit, a template record that does not parse, or
    /// whatever `f` returns.
    pub fn for_each_item(
        &self,
        mut f: impl FnMut(Item<'a>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        match self {
            Self::Ipfix(m) => {
                for set in m.sets() {
                    let set = set?;
                    match set.kind() {
                        Err(e) => f(Item::Reserved(e))?,
                        Ok(SetKind::Template | SetKind::OptionsTemplate) => {
                            for record in TemplateRecords::new(&set) {
                                f(Item::Template(record?))?;
                            }
                        }
                        Ok(SetKind::Data(id)) => f(Item::Data(id, set))?,
                    }
                }
            }
            Self::Netflow9(p) => {
                for flowset in p.flowsets() {
                    let flowset = flowset?;
                    match flowset.id {
                        netflow9::TEMPLATE_FLOWSET | netflow9::OPTIONS_TEMPLATE_FLOWSET => {
                            for def in netflow9::TemplateRecords::new(&flowset) {
                                f(Item::Template(TemplateRecord::Definition(def?)))?;
                            }
                        }
                        id if id.is_data() => f(Item::Data(TemplateId(id.0), flowset))?,
                        SetId(id) => f(Item::Reserved(DecodeError::new(
                            DecodeErrorKind::ReservedSetId(id),
                            flowset.offset.saturating_sub(4),
                        )))?,
                    }
                }
            }
            Self::Netflow5(p) => f(Item::Data(netflow5::TEMPLATE_ID, p.records()))?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(bytes: &[u8]) -> Result<Vec<Item<'_>>, DecodeError> {
        let packet = ExportPacket::decode(bytes)?;
        let mut out = Vec::new();
        packet.for_each_item(|item| {
            out.push(item);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn tells_the_protocols_apart_by_version() {
        for version in [1_u16, 7, 8, 11] {
            let mut bytes = version.to_be_bytes().to_vec();
            bytes.resize(48, 0);
            assert_eq!(
                ExportPacket::decode(&bytes).unwrap_err().kind,
                DecodeErrorKind::UnsupportedVersion(version)
            );
        }
        assert_eq!(
            ExportPacket::decode(&[0]).unwrap_err().kind,
            DecodeErrorKind::Truncated
        );
    }

    #[test]
    fn a_netflow9_packet_yields_templates_data_and_reserved_flowsets() {
        let mut p = vec![0, 9, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        p.extend([0, 0, 0, 12, 1, 0, 0, 1, 0, 8, 0, 4]); // template 256: sourceIPv4Address
        p.extend([1, 0, 0, 8, 10, 0, 0, 1]); // one record
        p.extend([0, 7, 0, 4]); // reserved FlowSet 7
        let got = items(&p).unwrap();
        assert_eq!(got.len(), 3);
        assert!(
            matches!(&got[0], Item::Template(TemplateRecord::Definition(d)) if d.template_id == TemplateId(256))
        );
        assert!(matches!(&got[1], Item::Data(TemplateId(256), s) if s.body == [10, 0, 0, 1]));
        assert!(
            matches!(&got[2], Item::Reserved(e) if e.kind == DecodeErrorKind::ReservedSetId(7))
        );
        let header = ExportPacket::decode(&p).unwrap().header();
        assert_eq!(header.observation_domain_id, ObservationDomainId(4));
        assert_eq!(header.sequence_unit, SequenceUnit::Packets);
        assert_eq!((header.sys_uptime, header.count), (Some(1), Some(3)));
    }

    #[test]
    fn a_netflow5_packet_is_data_of_the_built_in_template() {
        let mut p = vec![0, 5, 0, 1];
        p.resize(netflow5::HEADER_LEN + netflow5::RECORD_LEN, 0);
        let got = items(&p).unwrap();
        assert!(matches!(&got[..], [Item::Data(netflow5::TEMPLATE_ID, s)] if s.body.len() == 48));
    }
}
