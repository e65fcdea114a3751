//! Decode throughput in records per second: the template VM (op at a time and record at a time,
//! columns flushed to an Arrow `RecordBatch` every iteration) against the `netflow_parser`
//! crate on the same packet bytes.
//!
//! Each group builds, at setup, a stream of realistic export packets of at most 1400 octets
//! (one UDP datagram on a 1500-octet path), IPFIX Messages or NetFlow v9 packets: a packet of
//! templates first, then data packets holding about [`TARGET_RECORDS`] records. One iteration
//! decodes the whole stream, template packet included, with decoder state kept across
//! iterations the way a collector keeps it: a template that comes again unchanged is not
//! compiled again (the VM) or is re-cached (`netflow_parser`). The VM reads every packet
//! through the collector's protocol front end ([`ExportPacket`]) and then flushes every
//! template's columns, so the Arrow hand-over is measured too. `netflow_parser` gets every
//! decoded field value folded into a checksum so that no decoding can be skipped.
//!
//! `collector` runs the same stream through the collector's whole decode core
//! ([`Decoder::handle`]: both passes, the template table of one UDP Transport Session, the
//! batch builders with their provenance columns, counters, sequence numbers), then
//! [`Decoder::flush`]: the per-Set and per-Message overhead a collector pays on top of the VM.
//!
//! Setup asserts that every decoder produces exactly the number of records written.
//!
//! Run with `cargo bench --bench decode`.

use std::collections::HashMap;
use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowvm::clock;
use flowvm::collector::FastMap;
use flowvm::collector::decode::Decoder;
use flowvm::collector::session::TransportSession;
use flowvm::config::Config;
use flowvm::telemetry::Counters;
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::netflow9;
use flowvm_vm::wire::packet::{ExportPacket, Item};
use flowvm_vm::wire::template::{TemplateDef, TemplateRecord};
use flowvm_vm::wire::writer::MessageWriter;
use flowvm_vm::{Columns, Compiler, Mode};
use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::v9::FlowSetBody as V9Body;
use netflow_parser::{FieldValue, NetflowPacket, NetflowParser};

/// Records written per stream (rounded up to whole records).
const TARGET_RECORDS: usize = 20_000;
/// Message size budget: a 1500-octet MTU less IP/UDP headers and some slack, as exporters use.
const MAX_MESSAGE_LEN: usize = 1400;
/// Export Time of every Message: 2025-06-15T16:26:40Z.
const EXPORT_TIME: u32 = 1_750_004_800;
/// Seconds from the NTP epoch (1900) to the UNIX epoch (1970).
const NTP_UNIX_OFFSET: u32 = 2_208_988_800;
/// NetFlow v9 sysUpTime of every packet: the exporter booted 3 days before [`EXPORT_TIME`].
const SYS_UPTIME_MS: u32 = 3 * 86_400 * 1000;

// ---------------------------------------------------------------------------------------------
// Template shapes
// ---------------------------------------------------------------------------------------------

/// Builds a plain (non-options) template of IANA fields `(element id, field length)`.
fn template(id: u16, fields: &[(u16, u16)]) -> TemplateDef {
    TemplateDef::of_iana(TemplateId(id), fields)
}

/// (a) The simple 7-field report of VPP's `ipfix_doc` (`foreach_simple_report_ipfix_element`,
/// src/vnet/ipfix-export/ipfix_doc.md): 29 octets a record.
const FIXED_7_FIELDS: &[(u16, u16)] = &[
    (8, 4),   // sourceIPv4Address
    (12, 4),  // destinationIPv4Address
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (4, 1),   // protocolIdentifier
    (154, 8), // flowStartMicroseconds
    (155, 8), // flowEndMicroseconds
];

/// (b) VPP flowprobe's IPv4 template with L3 and L4 recording (`flowprobe_template_rewrite_inline`
/// for `FLOW_VARIANT_IP4`): `flowprobe_template_common_fields`, then
/// `flowprobe_template_ip4_fields`, then `flowprobe_template_l4_fields`, in that order, as in
/// FDio/vpp `src/plugins/flowprobe/flowprobe.c` (commit 0aa3d06c261db7ed60a8c7c4b0fc8851f06d72b4;
/// the `flowprobe_export_entry` of the node.c walk-through in the seed notes writes the record
/// in the same common / l3 ip4 / l4 order). Versions of VPP from 2022 on also add
/// flowDirection(61)/1 to the common fields; this is the earlier layout, 55 octets a record.
const FLOWPROBE_IP4_L3L4: &[(u16, u16)] = &[
    // flowprobe_template_common_fields
    (10, 4),  // ingressInterface
    (14, 4),  // egressInterface
    (2, 8),   // packetDeltaCount
    (156, 8), // flowStartNanoseconds
    (157, 8), // flowEndNanoseconds
    // flowprobe_template_ip4_fields
    (8, 4),  // sourceIPv4Address
    (12, 4), // destinationIPv4Address
    (4, 1),  // protocolIdentifier
    (1, 8),  // octetDeltaCount
    // flowprobe_template_l4_fields
    (7, 2),  // sourceTransportPort
    (11, 2), // destinationTransportPort
    (6, 2),  // tcpControlBits
];

/// (c) IPv6 5-tuple with counters: 53 octets a record.
const IPV6_5TUPLE: &[(u16, u16)] = &[
    (27, 16), // sourceIPv6Address
    (28, 16), // destinationIPv6Address
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (4, 1),   // protocolIdentifier
    (1, 8),   // octetDeltaCount
    (2, 8),   // packetDeltaCount
];

/// (d) Two variable-length strings after fixed fields: 16 + 2..=62 octets a record.
const VARLEN_STRING: &[(u16, u16)] = &[
    (8, 4),                // sourceIPv4Address
    (12, 4),               // destinationIPv4Address
    (1, 8),                // octetDeltaCount
    (82, VARIABLE_LENGTH), // interfaceName
    (96, VARIABLE_LENGTH), // applicationName
];

/// (e) Layer 2 flows.
const L2_FLOWS: &[(u16, u16)] = &[
    (56, 6),  // sourceMacAddress
    (80, 6),  // destinationMacAddress
    (256, 2), // ethernetType
    (58, 2),  // vlanId
    (2, 8),   // packetDeltaCount
    (1, 8),   // octetDeltaCount
];

/// (e) IPv4 flows with reduced-size counters (RFC 7011 §6.2), BGP AS numbers and millisecond
/// timestamps.
const IP4_BGP_REDUCED: &[(u16, u16)] = &[
    (8, 4),   // sourceIPv4Address
    (12, 4),  // destinationIPv4Address
    (16, 4),  // bgpSourceAsNumber
    (17, 4),  // bgpDestinationAsNumber
    (5, 1),   // ipClassOfService
    (1, 4),   // octetDeltaCount, reduced to 4 octets
    (2, 4),   // packetDeltaCount, reduced to 4 octets
    (152, 8), // flowStartMilliseconds
    (136, 1), // flowEndReason
];

/// (e) VPP flowprobe's IPv6 template with L3 and L4 (common, ip6, l4 fields).
const FLOWPROBE_IP6_L3L4: &[(u16, u16)] = &[
    (10, 4),  // ingressInterface
    (14, 4),  // egressInterface
    (2, 8),   // packetDeltaCount
    (156, 8), // flowStartNanoseconds
    (157, 8), // flowEndNanoseconds
    (27, 16), // sourceIPv6Address
    (28, 16), // destinationIPv6Address
    (4, 1),   // protocolIdentifier
    (1, 8),   // octetDeltaCount
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (6, 2),   // tcpControlBits
];

/// (e) A small interface report with one variable-length string.
const IFACE_REPORT: &[(u16, u16)] = &[
    (10, 4),               // ingressInterface
    (82, VARIABLE_LENGTH), // interfaceName
    (1, 8),                // octetDeltaCount
    (61, 1),               // flowDirection
];

/// (g) The classic Cisco IOS NetFlow v9 record (the v9 field types, RFC 3954 §8, in the order
/// IOS exports them): 45 octets a record, 4-octet counters and uptime-relative times.
const CISCO_IOS_V9: &[(u16, u16)] = &[
    (1, 4),  // IN_BYTES
    (2, 4),  // IN_PKTS
    (4, 1),  // PROTOCOL
    (5, 1),  // SRC_TOS
    (6, 1),  // TCP_FLAGS
    (7, 2),  // L4_SRC_PORT
    (8, 4),  // IPV4_SRC_ADDR
    (9, 1),  // SRC_MASK
    (10, 2), // INPUT_SNMP
    (11, 2), // L4_DST_PORT
    (12, 4), // IPV4_DST_ADDR
    (13, 1), // DST_MASK
    (14, 2), // OUTPUT_SNMP
    (15, 4), // IPV4_NEXT_HOP
    (16, 2), // SRC_AS
    (17, 2), // DST_AS
    (21, 4), // LAST_SWITCHED
    (22, 4), // FIRST_SWITCHED
];

/// The protocol a group's stream is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// IPFIX Messages (RFC 7011).
    Ipfix,
    /// NetFlow v9 export packets (RFC 3954); its field types are the IPFIX element numbers.
    Netflow9,
}

/// One benchmark group: its protocol, its templates and how many records go into a Data Set
/// before the writer moves on to the next template.
struct Shape {
    /// The criterion group name.
    name: &'static str,
    /// What the stream is written in.
    protocol: Protocol,
    /// Plain templates of IANA fields, IDs from 256.
    templates: Vec<TemplateDef>,
    /// `None`: one Data Set per packet, filled up. `Some(n)`: Sets of 1..=n records,
    /// templates taken in turn, so Sets of different templates interleave in each packet.
    records_per_set: Option<u64>,
}

/// Every group, in the order of the README's table: (a)–(e) IPFIX, (f) and (g) NetFlow v9.
fn shapes() -> Vec<Shape> {
    let single = |name, protocol, fields| Shape {
        name,
        protocol,
        templates: vec![template(256, fields)],
        records_per_set: None,
    };
    vec![
        single("fixed_7_fields", Protocol::Ipfix, FIXED_7_FIELDS),
        single("flowprobe_ip4_l3l4", Protocol::Ipfix, FLOWPROBE_IP4_L3L4),
        single("ipv6_5tuple", Protocol::Ipfix, IPV6_5TUPLE),
        single("varlen_string", Protocol::Ipfix, VARLEN_STRING),
        Shape {
            name: "eight_templates",
            protocol: Protocol::Ipfix,
            templates: [
                FIXED_7_FIELDS,
                FLOWPROBE_IP4_L3L4,
                IPV6_5TUPLE,
                VARLEN_STRING,
                L2_FLOWS,
                IP4_BGP_REDUCED,
                FLOWPROBE_IP6_L3L4,
                IFACE_REPORT,
            ]
            .iter()
            .zip(256..)
            .map(|(fields, id)| template(id, fields))
            .collect(),
            records_per_set: Some(8),
        },
        // (f) the fields of (b) as v9 field types.
        single(
            "v9_flowprobe_ip4_l3l4",
            Protocol::Netflow9,
            FLOWPROBE_IP4_L3L4,
        ),
        single("v9_cisco_ios", Protocol::Netflow9, CISCO_IOS_V9),
    ]
}

// ---------------------------------------------------------------------------------------------
// Message generation
// ---------------------------------------------------------------------------------------------

/// xorshift64*: deterministic values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next() >> 32) * u128::from(n);
        u64::try_from(wide >> 32).unwrap_or(0)
    }

    fn u8(&mut self) -> u8 {
        self.next().to_be_bytes()[0]
    }

    fn u16(&mut self) -> u16 {
        let [a, b, ..] = self.next().to_be_bytes();
        u16::from_be_bytes([a, b])
    }

    fn u32(&mut self) -> u32 {
        let [a, b, c, d, ..] = self.next().to_be_bytes();
        u32::from_be_bytes([a, b, c, d])
    }

    /// One of `items`, which must not be empty.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let len = u64::try_from(items.len()).unwrap_or(u64::MAX);
        items[usize::try_from(self.below(len)).unwrap_or(0)]
    }

    /// A well-known service port or an ephemeral one.
    fn port(&mut self) -> u16 {
        if self.below(2) == 0 {
            self.pick(&[80, 443, 53, 123, 22, 8080])
        } else {
            0x8000 | self.u16()
        }
    }
}

/// Where [`put_record`] writes field values: an IPFIX Message or a NetFlow v9 packet.
trait Sink {
    /// Appends one octet.
    fn put_u8(&mut self, v: u8);
    /// Appends a network-order `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a network-order `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends a network-order `u64`.
    fn put_u64(&mut self, v: u64);
    /// Appends a variable-length field (IPFIX only: NetFlow v9 has none).
    fn put_var_len(&mut self, v: &[u8]);
}

/// Frames the packets of a stream: Sets (FlowSets), records committed under the size budget,
/// headers with each protocol's Sequence Number.
trait PacketWriter: Sink {
    /// The ID of the Set that holds Template Records.
    const TEMPLATE_SET: SetId;
    /// The open Set's ID, if any.
    fn open_set(&self) -> Option<SetId>;
    /// Opens a Set (closing any open one); `false`, with nothing written, if it would not fit.
    fn begin_set(&mut self, id: SetId) -> bool;
    /// Closes the open Set.
    fn end_set(&mut self);
    /// Appends a Template Record for `def`, a plain template of IANA fields.
    fn put_template(&mut self, def: &TemplateDef);
    /// Keeps the record put since the last commit if the packet still fits its budget;
    /// otherwise removes it and returns `false`.
    fn commit(&mut self) -> bool;
    /// Whether the packet holds no Set yet.
    fn is_empty(&self) -> bool;
    /// Closes the packet, returns its bytes and starts the next packet.
    fn finish(&mut self) -> Vec<u8>;
}

/// IPFIX Messages, built by the vm crate's [`MessageWriter`].
struct IpfixWriter {
    /// The Message being built.
    w: MessageWriter,
    /// Data Records sent before this Message (RFC 7011 §3.1).
    sequence: u32,
    /// Data Records committed to this Message.
    in_message: u32,
}

impl IpfixWriter {
    /// An empty first Message.
    fn new() -> Self {
        Self {
            w: MessageWriter::new(MAX_MESSAGE_LEN),
            sequence: 0,
            in_message: 0,
        }
    }
}

impl Sink for IpfixWriter {
    fn put_u8(&mut self, v: u8) {
        self.w.put_u8(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.w.put_u16(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.w.put_u32(v);
    }
    fn put_u64(&mut self, v: u64) {
        self.w.put_u64(v);
    }
    fn put_var_len(&mut self, v: &[u8]) {
        self.w.put_var_len(v);
    }
}

impl PacketWriter for IpfixWriter {
    const TEMPLATE_SET: SetId = SetId::TEMPLATE;

    fn open_set(&self) -> Option<SetId> {
        self.w.open_set()
    }
    fn begin_set(&mut self, id: SetId) -> bool {
        self.w.begin_set(id)
    }
    fn end_set(&mut self) {
        self.w.end_set();
    }
    fn put_template(&mut self, def: &TemplateDef) {
        self.w.put_template(def);
    }
    fn commit(&mut self) -> bool {
        let data = self.w.open_set().is_some_and(SetId::is_data);
        let kept = self.w.commit();
        if kept && data {
            self.in_message += 1;
        }
        kept
    }
    fn is_empty(&self) -> bool {
        self.w.is_empty()
    }
    fn finish(&mut self) -> Vec<u8> {
        let message = self
            .w
            .finish(EXPORT_TIME, self.sequence, ObservationDomainId(1))
            .to_vec();
        self.w.clear();
        self.sequence = self.sequence.wrapping_add(self.in_message);
        self.in_message = 0;
        message
    }
}

/// NetFlow v9 export packets (RFC 3954): a 20-octet header, then FlowSets framed as IPFIX
/// Sets (an ID and a length that counts the 4-octet FlowSet header), each padded to 4 octets.
struct V9Writer {
    /// The packet being built, header space included.
    buf: Vec<u8>,
    /// Start of the open FlowSet's header, if a FlowSet is open.
    flowset_start: Option<usize>,
    /// Length at the last commit: what a rollback returns to.
    committed: usize,
    /// Records of every kind committed to this packet: the header's Count (§5.1).
    count: u16,
    /// Packets sent before this one: the header's Sequence Number (§5.1).
    sequence: u32,
}

impl V9Writer {
    /// An empty first packet.
    fn new() -> Self {
        Self {
            buf: vec![0; netflow9::HEADER_LEN],
            flowset_start: None,
            committed: netflow9::HEADER_LEN,
            count: 0,
            sequence: 0,
        }
    }

    /// Removes what was put since the last commit.
    fn rollback(&mut self) {
        self.buf.truncate(self.committed);
    }

    /// Whether the packet, its open FlowSet padded, fits [`MAX_MESSAGE_LEN`]. FlowSets start
    /// 4-aligned (the header is 20 octets, every FlowSet is padded), so the padded length is
    /// the buffer's rounded up.
    fn fits(&self) -> bool {
        self.buf.len().next_multiple_of(4) <= MAX_MESSAGE_LEN
    }
}

impl Sink for V9Writer {
    fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn put_var_len(&mut self, v: &[u8]) {
        // RFC 3954 has no variable-length fields; written as IPFIX's (RFC 7011 §7), the
        // encoding of the exporters that send Field Length 65535 in v9 anyway.
        let v = v.get(..usize::from(u16::MAX)).unwrap_or(v);
        match u8::try_from(v.len()) {
            Ok(short) if short < 255 => self.put_u8(short),
            _ => {
                self.put_u8(255);
                self.put_u16(u16::try_from(v.len()).unwrap_or(u16::MAX));
            }
        }
        self.buf.extend_from_slice(v);
    }
}

impl PacketWriter for V9Writer {
    const TEMPLATE_SET: SetId = netflow9::TEMPLATE_FLOWSET;

    fn open_set(&self) -> Option<SetId> {
        let start = self.flowset_start?;
        let &[high, low] = self.buf.get(start..)?.first_chunk::<2>()?;
        Some(SetId(u16::from_be_bytes([high, low])))
    }

    fn begin_set(&mut self, id: SetId) -> bool {
        self.end_set();
        if self.buf.len() + 4 > MAX_MESSAGE_LEN {
            return false;
        }
        self.flowset_start = Some(self.buf.len());
        self.put_u16(id.0);
        self.put_u16(0); // Length, patched by `end_set`
        self.committed = self.buf.len();
        true
    }

    fn end_set(&mut self) {
        self.rollback();
        let Some(start) = self.flowset_start.take() else {
            return;
        };
        if self.buf.len() == start + 4 {
            self.buf.truncate(start); // an empty FlowSet is not sent
        } else {
            // Padded with zeros so that the next FlowSet starts 4-aligned; the Length
            // counts the padding (RFC 3954 §5.3).
            self.buf.resize(self.buf.len().next_multiple_of(4), 0);
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            if let Some(dst) = self.buf.get_mut(start + 2..start + 4) {
                dst.copy_from_slice(&len.to_be_bytes());
            }
        }
        self.committed = self.buf.len();
    }

    fn put_template(&mut self, def: &TemplateDef) {
        // Template ID, Field Count, then (Field Type, Field Length) pairs (§5.2).
        self.put_u16(def.template_id.0);
        self.put_u16(u16::try_from(def.fields.len()).unwrap_or(u16::MAX));
        for f in &def.fields {
            self.put_u16(f.element_id.0);
            self.put_u16(f.field_length);
        }
    }

    fn commit(&mut self) -> bool {
        if !self.fits() {
            self.rollback();
            return false;
        }
        self.committed = self.buf.len();
        self.count = self.count.wrapping_add(1);
        true
    }

    fn is_empty(&self) -> bool {
        self.buf.len() == netflow9::HEADER_LEN
    }

    fn finish(&mut self) -> Vec<u8> {
        self.end_set();
        let mut header = Vec::with_capacity(netflow9::HEADER_LEN);
        header.extend_from_slice(&netflow9::VERSION.to_be_bytes());
        header.extend_from_slice(&self.count.to_be_bytes());
        header.extend_from_slice(&SYS_UPTIME_MS.to_be_bytes());
        header.extend_from_slice(&EXPORT_TIME.to_be_bytes());
        header.extend_from_slice(&self.sequence.to_be_bytes());
        header.extend_from_slice(&1_u32.to_be_bytes()); // Source ID
        if let Some(dst) = self.buf.get_mut(..netflow9::HEADER_LEN) {
            dst.copy_from_slice(&header);
        }
        let packet = self.buf.clone();
        self.buf.truncate(netflow9::HEADER_LEN);
        self.committed = netflow9::HEADER_LEN;
        self.count = 0;
        self.sequence = self.sequence.wrapping_add(1);
        packet
    }
}

/// Writes an NTP timestamp (RFC 7011 §6.1.9): seconds since 1900, then a 32-bit fraction.
fn put_ntp(w: &mut impl Sink, unix_seconds: u32, fraction: u32) {
    w.put_u32(unix_seconds.wrapping_add(NTP_UNIX_OFFSET));
    w.put_u32(fraction);
}

/// The NetFlow v9 sysUpTime (milliseconds) of a UNIX time before [`EXPORT_TIME`].
fn uptime_at(unix_seconds: u32) -> u32 {
    SYS_UPTIME_MS.wrapping_sub(EXPORT_TIME.wrapping_sub(unix_seconds).wrapping_mul(1000))
}

/// Application names for applicationName values.
const APP_NAMES: &[&str] = &[
    "http",
    "https",
    "dns",
    "ntp",
    "ssh",
    "quic",
    "bittorrent",
    "netflix-streaming",
    "microsoft-teams",
    "zoom-video-conferencing",
    "google-services-generic",
];

/// A lowercase ASCII name of 4..=30 characters.
fn put_name(w: &mut impl Sink, rng: &mut Rng, element: u16) {
    let mut name = [0u8; 30];
    if element == 96 && rng.below(2) == 0 {
        let app = rng.pick(APP_NAMES).as_bytes();
        w.put_var_len(app.get(..30).unwrap_or(app));
        return;
    }
    let len = usize::try_from(4 + rng.below(27)).unwrap_or(4);
    let prefix: &[u8] = if element == 82 { b"eth" } else { b"app-" };
    for (i, c) in name.iter_mut().enumerate().take(len) {
        *c = match prefix.get(i) {
            Some(&p) => p,
            None => b"abcdefghijklmnopqrstuvwxyz0123456789/-."[usize::from(rng.u8() % 39)],
        };
    }
    w.put_var_len(name.get(..len).unwrap_or(&name));
}

/// Puts one record of `def` with plausible values.
fn put_record(w: &mut impl Sink, rng: &mut Rng, def: &TemplateDef) {
    let start = EXPORT_TIME - 60 - u32::try_from(rng.below(240)).unwrap_or(0);
    let duration = u32::try_from(rng.below(60)).unwrap_or(0);
    for f in &def.fields {
        match (f.element_id.0, f.field_length) {
            // Addresses (and v9's IPV4_NEXT_HOP): 10.0.0.0/8 and 2001:db8::/32.
            (8 | 12 | 15, 4) => w.put_u32(0x0a00_0000 | (rng.u32() & 0x00ff_ffff)),
            (27 | 28, 16) => {
                w.put_u32(0x2001_0db8);
                w.put_u32(rng.u32() & 0xffff);
                w.put_u64(rng.next());
            }
            (4, 1) => w.put_u8(rng.pick(&[6, 6, 6, 17, 17, 1, 58])),
            (7 | 11, 2) => w.put_u16(rng.port()),
            (6, 2) => w.put_u16(rng.u16() & 0x003f),
            (6, 1) => w.put_u8(rng.u8() & 0x3f),
            (5, 1) => w.put_u8(rng.u8() & 0xfc),
            (9 | 13, 1) => w.put_u8(rng.pick(&[0, 8, 16, 22, 24, 24, 32])),
            (136, 1) => w.put_u8(rng.pick(&[1, 2, 3, 4, 5])),
            (61, 1) => w.put_u8(rng.u8() & 1),
            (10 | 14, 4) => w.put_u32(1 + u32::try_from(rng.below(48)).unwrap_or(0)),
            (10 | 14, 2) => w.put_u16(1 + u16::try_from(rng.below(48)).unwrap_or(0)),
            (16 | 17, 4) => w.put_u32(64_512 + u32::try_from(rng.below(1000)).unwrap_or(0)),
            (16 | 17, 2) => w.put_u16(64_512 + u16::try_from(rng.below(1000)).unwrap_or(0)),
            (58, 2) => w.put_u16(1 + rng.u16() % 4094),
            (256, 2) => w.put_u16(rng.pick(&[0x0800, 0x86dd, 0x0806])),
            (56 | 80, 6) => {
                w.put_u16(0x0250);
                w.put_u32(rng.u32());
            }
            // Counters, full and reduced-size.
            (1, 8) => w.put_u64(40 + rng.below(1_500_000)),
            (2, 8) => w.put_u64(1 + rng.below(1000)),
            (1 | 2, 4) => w.put_u32(1 + rng.u32() % 1_000_000),
            // Timestamps: flows that ended in the last few minutes.
            (152, 8) => w.put_u64(u64::from(start) * 1000 + rng.below(1000)),
            (154 | 156, 8) => put_ntp(w, start, rng.u32()),
            (155 | 157, 8) => put_ntp(w, start + duration, rng.u32()),
            // v9's LAST_SWITCHED and FIRST_SWITCHED: sysUpTime at the flow's end and start.
            (21, 4) => w.put_u32(uptime_at(start + duration)),
            (22, 4) => w.put_u32(uptime_at(start)),
            (82 | 96, VARIABLE_LENGTH) => put_name(w, rng, f.element_id.0),
            (_, VARIABLE_LENGTH) => w.put_var_len(&rng.next().to_be_bytes()),
            (_, len) => {
                for _ in 0..len {
                    w.put_u8(rng.u8());
                }
            }
        }
    }
}

/// The packets of one group and how many Data Records they hold.
struct Stream {
    /// Every packet, the template packet first.
    messages: Vec<Vec<u8>>,
    /// Data Records written.
    records: u64,
}

/// The stream of `shape` in its protocol.
fn build_stream(shape: &Shape) -> Stream {
    match shape.protocol {
        Protocol::Ipfix => write_stream(shape, &mut IpfixWriter::new()),
        Protocol::Netflow9 => write_stream(shape, &mut V9Writer::new()),
    }
}

/// A packet with every template, then data packets of at most [`MAX_MESSAGE_LEN`] octets
/// until [`TARGET_RECORDS`] records are written.
fn write_stream<W: PacketWriter>(shape: &Shape, w: &mut W) -> Stream {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut messages = Vec::new();

    w.begin_set(W::TEMPLATE_SET);
    for def in &shape.templates {
        w.put_template(def);
        w.commit();
    }
    messages.push(w.finish());

    let mut records: u64 = 0;
    let mut which = 0;
    let mut left_in_set = u64::MAX;
    let target = u64::try_from(TARGET_RECORDS).unwrap_or(u64::MAX);
    while records < target {
        let Some(def) = shape.templates.get(which) else {
            break;
        };
        let set_id = SetId(def.template_id.0);
        if w.open_set() != Some(set_id) && !w.begin_set(set_id) {
            messages.push(w.finish());
            continue;
        }
        if left_in_set == u64::MAX {
            left_in_set = shape
                .records_per_set
                .map_or(u64::MAX - 1, |n| 1 + rng.below(n));
        }
        put_record(w, &mut rng, def);
        if w.commit() {
            records += 1;
            left_in_set -= 1;
            if left_in_set == 0 {
                w.end_set();
                which = (which + 1) % shape.templates.len();
                left_in_set = u64::MAX;
            }
        } else {
            // The record did not fit: send this packet, write a new record into the next one.
            messages.push(w.finish());
        }
    }
    if !w.is_empty() {
        messages.push(w.finish());
    }
    Stream { messages, records }
}

// ---------------------------------------------------------------------------------------------
// The two decoders
// ---------------------------------------------------------------------------------------------

/// A minimal collector loop around the VM: reads every packet through the protocol front end
/// ([`ExportPacket`], IPFIX and NetFlow v9 alike), learns templates, compiles each once, runs
/// every Data Set and flushes the columns into `RecordBatch`es.
struct VmDecoder {
    /// Compiles each new template.
    compiler: Compiler,
    /// How every Data Set is run.
    mode: Mode,
    /// Every template learnt, with its columns, hashed as the collector's maps are
    /// (`flowvm::collector::FastMap`, foldhash).
    templates: FastMap<TemplateId, (TemplateDef, Columns)>,
}

impl VmDecoder {
    /// A decoder that knows no template yet.
    fn new(mode: Mode) -> Self {
        Self {
            compiler: Compiler::default(),
            mode,
            templates: FastMap::default(),
        }
    }

    /// Decodes one packet into the column buffers.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
        let packet = ExportPacket::decode(bytes)?;
        let mut compile_error = None;
        packet.for_each_item(|item| {
            match item {
                Item::Template(TemplateRecord::Definition(def)) => {
                    if self
                        .templates
                        .get(&def.template_id)
                        .is_some_and(|(d, _)| *d == def)
                    {
                        return Ok(()); // a refresh of a known template
                    }
                    match self.compiler.compile(&def) {
                        Ok(program) => {
                            let columns = Columns::new(Arc::new(program));
                            self.templates.insert(def.template_id, (def, columns));
                        }
                        Err(e) => compile_error = Some(e),
                    }
                }
                Item::Data(template_id, set) => {
                    if let Some((_, columns)) = self.templates.get_mut(&template_id) {
                        columns.run_with(&set, self.mode)?;
                    }
                }
                Item::Template(_) | Item::Reserved(_) => {}
            }
            Ok(())
        })?;
        compile_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Hands every template's rows over as a `RecordBatch`; returns the rows handed over.
    fn flush(&mut self) -> Result<u64, Box<dyn Error>> {
        let mut rows = 0;
        for (_, columns) in self.templates.values_mut() {
            if let Some(batch) = columns.flush()? {
                rows += u64::try_from(batch.num_rows())?;
                black_box(batch);
            }
        }
        Ok(rows)
    }

    /// One iteration: the whole stream, then a flush.
    fn pass(&mut self, stream: &[Vec<u8>]) -> Result<u64, Box<dyn Error>> {
        for message in stream {
            self.feed(black_box(message))?;
        }
        self.flush()
    }
}

/// The collector's decode core on one UDP Transport Session.
struct CollectorDecoder {
    decoder: Decoder,
    session: TransportSession,
    out: Vec<arrow_array::RecordBatch>,
}

impl CollectorDecoder {
    /// A decoder on the collector's default settings (batches of up to a million rows, so that
    /// a pass ends in one flush, as `VmDecoder`'s does).
    fn new() -> Self {
        let config = Config {
            batch_rows: 1 << 20,
            ..Config::default()
        };
        Self {
            decoder: Decoder::new(
                Compiler::default(),
                config.decoder(),
                Arc::new(Counters::default()),
            ),
            session: TransportSession::Udp {
                exporter: ([192, 0, 2, 1], 40_000).into(),
                collector: ([127, 0, 0, 1], 4739).into(),
            },
            out: Vec::new(),
        }
    }

    /// One iteration: the whole stream, then a flush; returns the rows handed over.
    fn pass(&mut self, stream: &[Vec<u8>]) -> u64 {
        let now = clock::now();
        for message in stream {
            self.decoder
                .handle(self.session, black_box(message), now, &mut self.out);
        }
        self.decoder.flush(&mut self.out);
        let rows = self
            .out
            .iter()
            .map(|b| u64::try_from(b.num_rows()).unwrap_or(0))
            .sum();
        self.out.clear();
        rows
    }
}

/// Folds one decoded value into a number, reading the value itself.
fn touch(value: &FieldValue) -> u64 {
    match value {
        FieldValue::DataNumber(_) | FieldValue::Duration(_) => value.as_u64().unwrap_or(1),
        FieldValue::Ip4Addr(a) => u64::from(a.to_bits()),
        FieldValue::Ip6Addr(a) => {
            let bits = a.to_bits();
            u64::try_from(bits >> 64).unwrap_or(0)
                ^ u64::try_from(bits & u128::from(u64::MAX)).unwrap_or(0)
        }
        FieldValue::String(s) => {
            let b = s.value.as_bytes();
            u64::try_from(b.len()).unwrap_or(0)
                ^ (u64::from(b.first().copied().unwrap_or(0)) << 8)
                ^ (u64::from(b.last().copied().unwrap_or(0)) << 16)
        }
        FieldValue::ProtocolType(p) => u64::from(u8::from(*p)),
        FieldValue::TcpControlBits(bits, width) => {
            (u64::from(u16::from(*bits)) << 8) | u64::from(*width)
        }
        FieldValue::MacAddr(m) => m.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)),
        FieldValue::Vec(v) => {
            u64::try_from(v.len()).unwrap_or(0) ^ (u64::from(v.first().copied().unwrap_or(0)) << 8)
        }
        other => u64::try_from(other.byte_len()).unwrap_or(0),
    }
}

/// What `netflow_parser` produced in one pass.
#[derive(Debug, Default, PartialEq, Eq)]
struct NpOutcome {
    /// Data Records decoded.
    records: u64,
    /// Every field value of every record, folded.
    checksum: u64,
    /// Data Sets it could not decode for want of a template, plus parse errors.
    failures: u64,
}

impl NpOutcome {
    /// Counts the records of one decoded Data Set (IPFIX) or Data FlowSet (v9) and reads every
    /// value in them.
    fn read<F>(&mut self, records: &[Vec<(F, FieldValue)>]) {
        for record in records {
            self.records += 1;
            for (_, value) in record {
                self.checksum = self.checksum.rotate_left(5) ^ touch(value);
            }
        }
    }
}

/// One iteration of `netflow_parser`: every packet parsed as its own datagram, every field
/// value of every Data Record read, IPFIX and NetFlow v9 alike.
fn netflow_parser_pass(parser: &mut NetflowParser, stream: &[Vec<u8>]) -> NpOutcome {
    let mut out = NpOutcome::default();
    for message in stream {
        for packet in parser.iter_packets(black_box(message)) {
            match packet {
                Ok(NetflowPacket::IPFix(ipfix)) => {
                    for set in &ipfix.flowsets {
                        match &set.body {
                            IpfixBody::Data(data) => out.read(&data.fields),
                            IpfixBody::NoTemplate(_) => out.failures += 1,
                            _ => {}
                        }
                    }
                }
                Ok(NetflowPacket::V9(v9)) => {
                    for flowset in &v9.flowsets {
                        match &flowset.body {
                            V9Body::Data(data) => out.read(&data.fields),
                            V9Body::NoTemplate(_) => out.failures += 1,
                            _ => {}
                        }
                    }
                }
                Ok(_) | Err(_) => out.failures += 1,
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

/// Setup check of a NetFlow v9 stream's headers: each packet's Count is the records it holds,
/// templates and data alike, and its Sequence Number the packets sent before it (RFC 3954
/// §5.1).
fn check_v9_headers(messages: &[Vec<u8>]) -> Result<(), Box<dyn Error>> {
    let compiler = Compiler::default();
    let mut programs = HashMap::new();
    for (sent, bytes) in messages.iter().enumerate() {
        let packet = ExportPacket::decode(bytes)?;
        let mut held = 0;
        packet.for_each_item(|item| {
            match item {
                Item::Template(TemplateRecord::Definition(def)) => {
                    held += 1;
                    if let Ok(program) = compiler.compile(&def) {
                        programs.insert(def.template_id, program);
                    }
                }
                Item::Data(template_id, set) => {
                    if let Some(program) = programs.get(&template_id) {
                        held += program.check(&set)?.records;
                    }
                }
                Item::Template(_) | Item::Reserved(_) => {}
            }
            Ok(())
        })?;
        let header = packet.header();
        if header.count != Some(u16::try_from(held)?)
            || header.sequence_number != u32::try_from(sent)?
        {
            return Err(format!("packet {sent}: {header:?}, {held} records").into());
        }
    }
    Ok(())
}

/// One criterion group: builds the stream of `shape`, checks that both decoders read all of
/// it, then times the VM in both modes and `netflow_parser`.
#[expect(
    clippy::expect_used,
    reason = "bench setup: a stream that does not decode must stop the run, not be measured"
)]
fn bench_shape(c: &mut Criterion, shape: &Shape) {
    let stream = build_stream(shape);
    let messages = &stream.messages;
    assert!(
        messages.iter().all(|m| m.len() <= MAX_MESSAGE_LEN),
        "{}: a packet over budget",
        shape.name
    );
    if shape.protocol == Protocol::Netflow9 {
        check_v9_headers(messages).expect("the v9 headers count records and packets");
    }

    // Setup checks: both decoders see every record that was written, on their second pass too
    // (state kept from the first, as in the timed loop).
    for mode in [Mode::OpAtATime, Mode::RecordAtATime] {
        let mut vm = VmDecoder::new(mode);
        for _ in 0..2 {
            let rows = vm.pass(messages).expect("the VM decodes the stream");
            assert_eq!(rows, stream.records, "{}: VM {mode:?} rows", shape.name);
        }
    }
    let mut collector = CollectorDecoder::new();
    for _ in 0..2 {
        let rows = collector.pass(messages);
        assert_eq!(rows, stream.records, "{}: collector rows", shape.name);
    }
    let mut parser = NetflowParser::default();
    for _ in 0..2 {
        let outcome = netflow_parser_pass(&mut parser, messages);
        assert_eq!(
            outcome.failures, 0,
            "{}: netflow_parser failures",
            shape.name
        );
        assert_eq!(
            outcome.records, stream.records,
            "{}: netflow_parser records",
            shape.name
        );
    }

    let octets: usize = messages.iter().map(Vec::len).sum();
    println!(
        "{}: {} messages, {} octets, {} records ({} templates, {:?})",
        shape.name,
        messages.len(),
        octets,
        stream.records,
        shape.templates.len(),
        shape.protocol
    );

    let mut group = c.benchmark_group(shape.name);
    group.throughput(Throughput::Elements(stream.records));
    for (id, mode) in [
        ("vm_op_at_a_time", Mode::OpAtATime),
        ("vm_record_at_a_time", Mode::RecordAtATime),
    ] {
        let mut vm = VmDecoder::new(mode);
        group.bench_function(id, |b| b.iter(|| black_box(vm.pass(messages).is_ok())));
    }
    let mut collector = CollectorDecoder::new();
    group.bench_function("collector", |b| {
        b.iter(|| black_box(collector.pass(messages)));
    });
    let mut parser = NetflowParser::default();
    group.bench_function("netflow_parser", |b| {
        b.iter(|| black_box(netflow_parser_pass(&mut parser, messages)));
    });
    group.finish();
}

/// Every group, one after another in the same run.
fn decode(c: &mut Criterion) {
    for shape in &shapes() {
        bench_shape(c, shape);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = decode
}
criterion_main!(benches);
