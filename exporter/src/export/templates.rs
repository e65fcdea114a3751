//! Our templates: one per variant for the chosen record flags, with flowprobe's fields in
//! flowprobe's order, and the encoding of a [`FlowRecord`] as a Data Record of them.
//!
//! Fields (IANA names, resolved through the vm crate's registry, not typed as numbers):
//! - common: ingressInterface, egressInterface, flowStartNanoseconds, flowEndNanoseconds,
//!   packetDeltaCount, then (flowvm) octetDeltaCount and flowEndReason;
//! - `l2`: sourceMacAddress, destinationMacAddress, ethernetType, then (flowvm) vlanId;
//! - `l3`: source and destination IPv4 or IPv6 address, protocolIdentifier;
//! - `l4`: protocolIdentifier (when `l3` is off), sourceTransportPort,
//!   destinationTransportPort, tcpControlBits.
//!
//! Flowprobe exports octetDeltaCount with the L3 fields only, so `record l2` alone counts no
//! octets; flowvm keeps it with the common fields so every record has its volume. The VLAN ID
//! and flowEndReason are additions the issue asks for.

use flowvm_vm::Registry;
use flowvm_vm::wire::ids::TemplateId;
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;

use crate::flow::{FlowRecord, RecordFlags, Variant};

/// The first template ID (RFC 7011 §3.4.1: IDs below 256 are reserved).
const FIRST_TEMPLATE_ID: u16 = 256;

/// One field of our records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    IngressInterface,
    EgressInterface,
    FlowStart,
    FlowEnd,
    Packets,
    Octets,
    EndReason,
    SourceMac,
    DestinationMac,
    EtherType,
    Vlan,
    SourceIpv4,
    DestinationIpv4,
    SourceIpv6,
    DestinationIpv6,
    Protocol,
    SourcePort,
    DestinationPort,
    TcpFlags,
}

impl Field {
    /// The IANA name and the length we send it in.
    fn spec(self) -> (&'static str, u16) {
        match self {
            Self::IngressInterface => ("ingressInterface", 4),
            Self::EgressInterface => ("egressInterface", 4),
            Self::FlowStart => ("flowStartNanoseconds", 8),
            Self::FlowEnd => ("flowEndNanoseconds", 8),
            Self::Packets => ("packetDeltaCount", 8),
            Self::Octets => ("octetDeltaCount", 8),
            Self::EndReason => ("flowEndReason", 1),
            Self::SourceMac => ("sourceMacAddress", 6),
            Self::DestinationMac => ("destinationMacAddress", 6),
            Self::EtherType => ("ethernetType", 2),
            Self::Vlan => ("vlanId", 2),
            Self::SourceIpv4 => ("sourceIPv4Address", 4),
            Self::DestinationIpv4 => ("destinationIPv4Address", 4),
            Self::SourceIpv6 => ("sourceIPv6Address", 16),
            Self::DestinationIpv6 => ("destinationIPv6Address", 16),
            Self::Protocol => ("protocolIdentifier", 1),
            Self::SourcePort => ("sourceTransportPort", 2),
            Self::DestinationPort => ("destinationTransportPort", 2),
            Self::TcpFlags => ("tcpControlBits", 2),
        }
    }

    fn put(self, r: &FlowRecord, w: &mut MessageWriter) {
        let k = &r.key;
        match self {
            Self::IngressInterface => w.put_u32(k.interface),
            Self::EgressInterface => w.put_u32(0),
            Self::FlowStart => w.put_u64(ntp_nanos(r.start_ns)),
            Self::FlowEnd => w.put_u64(ntp_nanos(r.end_ns)),
            Self::Packets => w.put_u64(r.packets),
            Self::Octets => w.put_u64(r.octets),
            Self::EndReason => w.put_u8(r.end_reason.code()),
            Self::SourceMac => w.put_bytes(&k.src_mac),
            Self::DestinationMac => w.put_bytes(&k.dst_mac),
            Self::EtherType => w.put_u16(k.ethertype),
            Self::Vlan => w.put_u16(k.vlan),
            Self::SourceIpv4 => w.put_bytes(k.src.get(..4).unwrap_or_default()),
            Self::DestinationIpv4 => w.put_bytes(k.dst.get(..4).unwrap_or_default()),
            Self::SourceIpv6 => w.put_bytes(&k.src),
            Self::DestinationIpv6 => w.put_bytes(&k.dst),
            Self::Protocol => w.put_u8(k.protocol),
            Self::SourcePort => w.put_u16(k.src_port),
            Self::DestinationPort => w.put_u16(k.dst_port),
            Self::TcpFlags => w.put_u16(r.tcp_flags),
        }
    }
}

/// Seconds from the NTP era (1900) to the UNIX epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Nanoseconds since the UNIX epoch in the NTP format of dateTimeNanoseconds (RFC 7011 §6.1.10):
/// seconds since 1900, then a binary fraction of a second. The fraction is rounded up so that a
/// decoder that rounds down (as RFC 7011's `fraction * 10^9 / 2^32` does) reads the same
/// nanosecond back.
pub fn ntp_nanos(unix_ns: u64) -> u64 {
    let seconds = unix_ns / 1_000_000_000 + NTP_UNIX_OFFSET;
    let nanos = unix_ns % 1_000_000_000;
    let fraction = (nanos << 32).div_ceil(1_000_000_000);
    (seconds << 32) | fraction
}

/// One template: its definition and the fields in order.
#[derive(Clone, Debug)]
struct Layout {
    def: TemplateDef,
    fields: Vec<Field>,
    record_len: usize,
}

/// The templates of one exporter: one per variant the record flags meter.
#[derive(Clone, Debug)]
pub struct Templates {
    layouts: Vec<(Variant, Layout)>,
}

/// A template field whose name the registry does not know (a build of the vm crate whose
/// registry lacks an IANA element the exporter sends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownElement(pub &'static str);

impl std::fmt::Display for UnknownElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the IE registry has no element named {}", self.0)
    }
}

impl std::error::Error for UnknownElement {}

impl Templates {
    /// The templates for `flags`: ip4 and ip6 always, l2 when `l2` is recorded.
    ///
    /// # Errors
    /// [`UnknownElement`] if the registry lacks one of our fields.
    pub fn new(flags: RecordFlags, registry: &Registry) -> Result<Self, UnknownElement> {
        let mut layouts = Vec::new();
        for (n, variant) in (0_u16..).zip(Variant::ALL) {
            if variant == Variant::L2 && !flags.l2 {
                continue;
            }
            let fields = fields(variant, flags);
            let specs = fields
                .iter()
                .map(|f| {
                    let (name, len) = f.spec();
                    registry
                        .by_name(name)
                        .map(|ie| FieldSpecifier::iana(ie.element_id.0, len))
                        .ok_or(UnknownElement(name))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let record_len = fields.iter().map(|f| usize::from(f.spec().1)).sum();
            let def = TemplateDef {
                template_id: TemplateId(FIRST_TEMPLATE_ID + n),
                scope_field_count: 0,
                fields: specs,
            };
            layouts.push((
                variant,
                Layout {
                    def,
                    fields,
                    record_len,
                },
            ));
        }
        Ok(Self { layouts })
    }

    /// The template definitions, in ID order.
    pub fn defs(&self) -> impl Iterator<Item = &TemplateDef> {
        self.layouts.iter().map(|(_, l)| &l.def)
    }

    /// The template that carries records of `variant`, if it is metered.
    pub fn template_id(&self, variant: Variant) -> Option<TemplateId> {
        self.layout(variant).map(|l| l.def.template_id)
    }

    /// Octets of one Data Record of `variant`.
    pub fn record_len(&self, variant: Variant) -> Option<usize> {
        self.layout(variant).map(|l| l.record_len)
    }

    fn layout(&self, variant: Variant) -> Option<&Layout> {
        self.layouts
            .iter()
            .find(|(v, _)| *v == variant)
            .map(|(_, l)| l)
    }

    /// Appends `record` as a Data Record (uncommitted) to the open Data Set; `false`, with
    /// nothing written, if its variant has no template.
    pub fn put_record(&self, record: &FlowRecord, w: &mut MessageWriter) -> bool {
        let Some(layout) = self.layout(record.key.variant) else {
            return false;
        };
        for f in &layout.fields {
            f.put(record, w);
        }
        true
    }
}

fn fields(variant: Variant, flags: RecordFlags) -> Vec<Field> {
    use Field::*;
    let mut f = vec![
        IngressInterface,
        EgressInterface,
        FlowStart,
        FlowEnd,
        Packets,
        Octets,
        EndReason,
    ];
    if flags.l2 {
        f.extend([SourceMac, DestinationMac, EtherType, Vlan]);
    }
    if variant == Variant::L2 {
        return f;
    }
    if flags.l3 {
        f.extend(match variant {
            Variant::Ip6 => [SourceIpv6, DestinationIpv6],
            _ => [SourceIpv4, DestinationIpv4],
        });
    }
    if flags.l3 || flags.l4 {
        f.push(Protocol);
    }
    if flags.l4 {
        f.extend([SourcePort, DestinationPort, TcpFlags]);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_nanoseconds_read_back_exactly() {
        for ns in [0, 1, 999_999_999, 123_456_789, 500_000_000] {
            let unix = 1_700_000_000 * 1_000_000_000 + ns;
            let v = ntp_nanos(unix);
            let fraction = v & 0xffff_ffff;
            let back = (v >> 32) - NTP_UNIX_OFFSET;
            assert_eq!(
                back * 1_000_000_000 + ((fraction * 1_000_000_000) >> 32),
                unix
            );
        }
    }

    #[test]
    fn flags_choose_the_fields_and_the_l2_template() {
        let r = Registry::new();
        let t = Templates::new(RecordFlags::L3_L4, &r).unwrap();
        assert_eq!(t.defs().count(), 2);
        assert_eq!(t.template_id(Variant::L2), None);
        // 7 common (4+4+8+8+8+8+1) + 4+4+1 + 2+2+2
        assert_eq!(t.record_len(Variant::Ip4), Some(56));
        assert_eq!(t.record_len(Variant::Ip6), Some(80));
        let all: RecordFlags = "l2,l3,l4".parse().unwrap();
        let t = Templates::new(all, &r).unwrap();
        assert_eq!(t.defs().count(), 3);
        assert_eq!(t.record_len(Variant::L2), Some(41 + 16));
        let ids: Vec<u16> = t.defs().map(|d| d.template_id.0).collect();
        assert_eq!(ids, [256, 257, 258]);
    }
}
