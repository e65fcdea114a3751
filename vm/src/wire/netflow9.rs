//! NetFlow version 9 (RFC 3954): the 20-octet packet header, FlowSets, and (Options) Template
//! Records decoded into the same owned [`TemplateDef`]s as IPFIX templates, so v9 templates
//! compile into the same programs.
//!
//! FlowSets are framed exactly as IPFIX Sets (an ID and a length that counts the 4-octet
//! header), so they are walked by the same [`Sets`]. Field types are IPFIX Information Element
//! identifiers (RFC 3954 §8: types 1 to 127 are the same elements; the IANA registry continues
//! the numbering); vendor types of 32768 and up keep their whole number (no Enterprise bit in
//! v9). Options scope types (System, Interface, Line Card, Cache, Template, §6.1) become
//! elements of [`EnterpriseNumber::NETFLOW9_SCOPE`], named `scopeSystem` and so on.

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::ids::{ElementId, EnterpriseNumber, SetId, TemplateId};
use crate::wire::reader::Reader;
use crate::wire::set::{Set, Sets};
use crate::wire::template::{FieldSpecifier, TemplateDef};

/// Version of NetFlow v9 export packets.
pub const VERSION: u16 = 9;
/// Length of the packet header.
pub const HEADER_LEN: usize = 20;
/// FlowSet ID of Template FlowSets.
pub const TEMPLATE_FLOWSET: SetId = SetId(0);
/// FlowSet ID of Options Template FlowSets.
pub const OPTIONS_TEMPLATE_FLOWSET: SetId = SetId(1);

//= https://www.rfc-editor.org/rfc/rfc3954#section-5.1
//# Count
//#       The total number of records in the Export Packet, which is the
//#       sum of Options FlowSet records, Template FlowSet records, and
//#       Data FlowSet records.
/// The 20-octet header of an export packet (RFC 3954 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Records (of every kind: templates, options templates, data) in the packet.
    pub count: u16,
    /// Milliseconds since the exporting device booted.
    pub sys_uptime: u32,
    /// Seconds since the UNIX epoch at which the packet left the device.
    pub unix_secs: u32,
    /// Export packets sent before this one by this Source ID, modulo 2^32.
    pub sequence_number: u32,
    /// The exporter's observation domain: templates are scoped by it.
    pub source_id: u32,
}

/// One NetFlow v9 export packet: its header and the bytes of its FlowSets.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// The decoded header.
    pub header: PacketHeader,
    body: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decodes a packet that fills `bytes` (one UDP datagram). Up to three octets after the
    /// last FlowSet are padding.
    ///
    /// # Errors
    /// [`DecodeErrorKind::Truncated`] on fewer than 20 octets,
    /// [`DecodeErrorKind::UnsupportedVersion`] for another version.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.version(VERSION)?;
        let header = PacketHeader {
            count: r.u16()?,
            sys_uptime: r.u32()?,
            unix_secs: r.u32()?,
            sequence_number: r.u32()?,
            source_id: r.u32()?,
        };
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        Ok(Self { header, body })
    }

    /// The FlowSets of this packet, in order, their lengths checked as IPFIX Sets'.
    pub fn flowsets(&self) -> Sets<'a> {
        Sets::padded(self.body, HEADER_LEN)
    }
}

/// Iterates over the records of a Template FlowSet (ID 0) or an Options Template FlowSet
/// (ID 1) as [`TemplateDef`]s.
///
/// What is left after the last record, too short for another record or all zero, is padding
/// (RFC 3954 §5.2, §6.1). Yields an error once and stops.
#[derive(Clone, Debug)]
pub struct TemplateRecords<'a> {
    reader: Reader<'a>,
    options: bool,
    failed: bool,
}

impl<'a> TemplateRecords<'a> {
    /// Walks the records of `flowset`, a Template or Options Template FlowSet.
    pub fn new(flowset: &Set<'a>) -> Self {
        Self {
            reader: flowset.reader(),
            options: flowset.id == OPTIONS_TEMPLATE_FLOWSET,
            failed: false,
        }
    }

    /// Whether the rest of the FlowSet is padding: too short for a record header, or zeros.
    fn at_padding(&self) -> bool {
        let header = if self.options { 6 } else { 4 };
        let mut rest = self.reader.clone();
        self.reader.len() < header
            || rest
                .take(self.reader.len())
                .is_ok_and(|b| b.iter().all(|&o| o == 0))
    }

    fn next_record(&mut self) -> Result<TemplateDef, DecodeError> {
        let r = &mut self.reader;
        let at = r.offset();
        let template_id = r.u16()?;
        //= https://www.rfc-editor.org/rfc/rfc3954#section-5.2
        //# Templates that define data record formats begin numbering at 256
        //# since 0-255 are reserved for FlowSet IDs.
        if template_id < TemplateId::MIN_DATA.0 {
            return Err(DecodeError::new(
                DecodeErrorKind::BadTemplateId(template_id),
                at,
            ));
        }
        let (scope, fields) = if self.options {
            let scope_len = r.u16()?;
            let option_len = r.u16()?;
            // Each field is a type and a length, four octets: the lengths must be multiples.
            if scope_len % 4 != 0 || option_len % 4 != 0 {
                return Err(DecodeError::new(
                    DecodeErrorKind::BadScopeFieldCount(scope_len),
                    at + 2,
                ));
            }
            (scope_len / 4, option_len / 4)
        } else {
            (0, r.u16()?)
        };
        let count = usize::from(scope) + usize::from(fields);
        // The FlowSet bounds the allocation: every field takes four octets.
        let mut specs = Vec::with_capacity(count.min(r.len() / 4));
        for n in 0..count {
            let field_type = r.u16()?;
            let field_length = r.u16()?;
            let enterprise_number = if n < usize::from(scope) {
                EnterpriseNumber::NETFLOW9_SCOPE
            } else {
                EnterpriseNumber::IANA
            };
            // Built directly: vendor types of 32768 and up keep their high bit, which in
            // IPFIX would be the Enterprise bit.
            specs.push(FieldSpecifier {
                element_id: ElementId(field_type),
                field_length,
                enterprise_number,
            });
        }
        Ok(TemplateDef {
            template_id: TemplateId(template_id),
            scope_field_count: scope,
            fields: specs,
        })
    }
}

impl Iterator for TemplateRecords<'_> {
    type Item = Result<TemplateDef, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at_padding() {
            return None;
        }
        let record = self.next_record();
        self.failed = record.is_err();
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of `flowsets` (ID, content) with count 0.
    pub(crate) fn packet(flowsets: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = vec![
            0, 9, 0, 0, 0, 0, 0x10, 0, 0x5a, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 42,
        ];
        for (id, content) in flowsets {
            p.extend(id.to_be_bytes());
            p.extend(u16::try_from(content.len() + 4).unwrap().to_be_bytes());
            p.extend_from_slice(content);
        }
        p
    }

    fn records(p: &Packet<'_>) -> Result<Vec<TemplateDef>, DecodeError> {
        let mut out = Vec::new();
        for flowset in p.flowsets() {
            for def in TemplateRecords::new(&flowset?) {
                out.push(def?);
            }
        }
        Ok(out)
    }

    #[test]
    fn decodes_the_header() {
        let bytes = packet(&[]);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(
            p.header,
            PacketHeader {
                count: 0,
                sys_uptime: 0x1000,
                unix_secs: 0x5a00_0000,
                sequence_number: 7,
                source_id: 42,
            }
        );
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::decode(&bytes[..len]).unwrap_err().kind,
                DecodeErrorKind::Truncated,
                "prefix {len}"
            );
        }
        let mut v10 = bytes;
        v10[1] = 10;
        assert_eq!(
            Packet::decode(&v10).unwrap_err().kind,
            DecodeErrorKind::UnsupportedVersion(10)
        );
    }

    #[test]
    fn templates_and_options_templates_become_template_definitions() {
        // Template 256: IN_BYTES (1) 4, a Cisco vendor type 40000 of 2 octets; then padding.
        let template = [1, 0, 0, 2, 0, 1, 0, 4, 0x9c, 0x40, 0, 2, 0, 0];
        // Options template 257: scope Interface (2) 4; option SAMPLING_INTERVAL (34) 4; padding.
        let options = [1, 1, 0, 4, 0, 4, 0, 2, 0, 4, 0, 34, 0, 4, 0, 0];
        let bytes = packet(&[(0, &template), (1, &options)]);
        let defs = records(&Packet::decode(&bytes).unwrap()).unwrap();
        assert_eq!(
            defs,
            [
                TemplateDef {
                    template_id: TemplateId(256),
                    scope_field_count: 0,
                    fields: vec![
                        FieldSpecifier::iana(1, 4),
                        FieldSpecifier {
                            element_id: ElementId(40_000),
                            field_length: 2,
                            enterprise_number: EnterpriseNumber::IANA,
                        },
                    ],
                },
                TemplateDef {
                    template_id: TemplateId(257),
                    scope_field_count: 1,
                    fields: vec![
                        FieldSpecifier::enterprise(EnterpriseNumber::NETFLOW9_SCOPE.0, 2, 4),
                        FieldSpecifier::iana(34, 4),
                    ],
                },
            ]
        );
    }

    #[test]
    fn bad_template_ids_scope_lengths_and_flowset_lengths_are_errors() {
        let low_id = packet(&[(0, &[0, 255, 0, 1, 0, 1, 0, 4])]);
        let scope = packet(&[(1, &[1, 1, 0, 3, 0, 4, 0, 2, 0, 4, 0, 34, 0, 4, 0, 0])]);
        let cut = packet(&[(0, &[1, 0, 0, 2, 0, 1, 0, 4])]);
        for (bytes, kind) in [
            (low_id, DecodeErrorKind::BadTemplateId(255)),
            (scope, DecodeErrorKind::BadScopeFieldCount(3)),
            (cut, DecodeErrorKind::Truncated),
        ] {
            let p = Packet::decode(&bytes).unwrap();
            assert_eq!(records(&p).unwrap_err().kind, kind);
        }
        let mut long = packet(&[(256, &[0; 8])]);
        long[23] = 200;
        let p = Packet::decode(&long).unwrap();
        assert_eq!(
            p.flowsets().next().unwrap().unwrap_err().kind,
            DecodeErrorKind::BadSetLength(200)
        );
    }
}
