//! Decode throughput in records per second: the template VM (op at a time and record at a time,
//! columns flushed to an Arrow `RecordBatch` every iteration) against the `netflow_parser`
//! crate on the same message bytes.
//!
//! Each group builds, at setup, a stream of realistic IPFIX Messages of at most 1400 octets
//! (one UDP datagram on a 1500-octet path): a Template Message first, then Data Messages
//! holding about [`TARGET_RECORDS`] records. One iteration decodes the whole stream, Template
//! Message included, with decoder state kept across iterations the way a collector keeps it:
//! a template that comes again unchanged is not compiled again (the VM) or is re-cached
//! (`netflow_parser`). The VM then flushes every template's columns, so the Arrow hand-over is
//! measured too. `netflow_parser` gets every decoded field value folded into a checksum so that
//! no decoding can be skipped.
//!
//! Setup asserts that both decoders produce exactly the number of records written.
//!
//! Run with `cargo bench --bench decode`.

use std::collections::HashMap;
use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::header::Message;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef, TemplateRecord, TemplateRecords};
use flowvm_vm::wire::writer::MessageWriter;
use flowvm_vm::{Columns, Compiler, Mode};
use netflow_parser::variable_versions::ipfix::FlowSetBody;
use netflow_parser::{FieldValue, NetflowPacket, NetflowParser};

/// Records written per stream (rounded up to whole records).
const TARGET_RECORDS: usize = 20_000;
/// Message size budget: a 1500-octet MTU less IP/UDP headers and some slack, as exporters use.
const MAX_MESSAGE_LEN: usize = 1400;
/// Export Time of every Message: 2025-06-15T16:26:40Z.
const EXPORT_TIME: u32 = 1_750_004_800;
/// Seconds from the NTP epoch (1900) to the UNIX epoch (1970).
const NTP_UNIX_OFFSET: u32 = 2_208_988_800;

// ---------------------------------------------------------------------------------------------
// Template shapes
// ---------------------------------------------------------------------------------------------

/// Builds a plain (non-options) template of IANA fields `(element id, field length)`.
fn template(id: u16, fields: &[(u16, u16)]) -> TemplateDef {
    TemplateDef {
        template_id: TemplateId(id),
        scope_field_count: 0,
        fields: fields
            .iter()
            .map(|&(element, len)| FieldSpecifier::iana(element, len))
            .collect(),
    }
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

/// One benchmark group: its templates and how many records go into a Data Set before the
/// writer moves on to the next template.
struct Shape {
    name: &'static str,
    templates: Vec<TemplateDef>,
    /// `None`: one Data Set per Message, filled up. `Some(n)`: Sets of 1..=n records,
    /// templates taken in turn, so Sets of different templates interleave in each Message.
    records_per_set: Option<u64>,
}

fn shapes() -> Vec<Shape> {
    let single = |name, fields| Shape {
        name,
        templates: vec![template(256, fields)],
        records_per_set: None,
    };
    vec![
        single("fixed_7_fields", FIXED_7_FIELDS),
        single("flowprobe_ip4_l3l4", FLOWPROBE_IP4_L3L4),
        single("ipv6_5tuple", IPV6_5TUPLE),
        single("varlen_string", VARLEN_STRING),
        Shape {
            name: "eight_templates",
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

/// Writes an NTP timestamp (RFC 7011 §6.1.9): seconds since 1900, then a 32-bit fraction.
fn put_ntp(w: &mut MessageWriter, unix_seconds: u32, fraction: u32) {
    w.put_u32(unix_seconds.wrapping_add(NTP_UNIX_OFFSET));
    w.put_u32(fraction);
}

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
fn put_name(w: &mut MessageWriter, rng: &mut Rng, element: u16) {
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
fn put_record(w: &mut MessageWriter, rng: &mut Rng, def: &TemplateDef) {
    let start = EXPORT_TIME - 60 - u32::try_from(rng.below(240)).unwrap_or(0);
    let duration = u32::try_from(rng.below(60)).unwrap_or(0);
    for f in &def.fields {
        match (f.element_id.0, f.field_length) {
            // Addresses: 10.0.0.0/8 and 2001:db8::/32.
            (8 | 12, 4) => w.put_u32(0x0a00_0000 | (rng.u32() & 0x00ff_ffff)),
            (27 | 28, 16) => {
                w.put_u32(0x2001_0db8);
                w.put_u32(rng.u32() & 0xffff);
                w.put_u64(rng.next());
            }
            (4, 1) => w.put_u8(rng.pick(&[6, 6, 6, 17, 17, 1, 58])),
            (7 | 11, 2) => w.put_u16(rng.port()),
            (6, 2) => w.put_u16(rng.u16() & 0x003f),
            (5, 1) => w.put_u8(rng.u8() & 0xfc),
            (136, 1) => w.put_u8(rng.pick(&[1, 2, 3, 4, 5])),
            (61, 1) => w.put_u8(rng.u8() & 1),
            (10 | 14, 4) => w.put_u32(1 + u32::try_from(rng.below(48)).unwrap_or(0)),
            (16 | 17, 4) => w.put_u32(64_512 + u32::try_from(rng.below(1000)).unwrap_or(0)),
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

/// The Messages of one group and how many Data Records they hold.
struct Stream {
    messages: Vec<Vec<u8>>,
    records: u64,
}

/// A Template Message with every template, then Data Messages of at most [`MAX_MESSAGE_LEN`]
/// octets until [`TARGET_RECORDS`] records are written.
fn build_stream(shape: &Shape) -> Stream {
    let domain = ObservationDomainId(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut w = MessageWriter::new(MAX_MESSAGE_LEN);
    let mut messages = Vec::new();

    w.begin_set(SetId::TEMPLATE);
    for def in &shape.templates {
        w.put_template(def);
        w.commit();
    }
    messages.push(w.finish(EXPORT_TIME, 0, domain).to_vec());

    // Sequence Number: Data Records sent before this Message (RFC 7011 §3.1).
    let mut sequence: u32 = 0;
    let mut records: u64 = 0;
    let mut in_message: u32 = 0;
    let mut which = 0;
    let mut left_in_set = u64::MAX;
    let target = u64::try_from(TARGET_RECORDS).unwrap_or(u64::MAX);
    w.clear();
    while records < target {
        let Some(def) = shape.templates.get(which) else {
            break;
        };
        if w.open_set() != Some(SetId(def.template_id.0)) && !w.begin_set(SetId(def.template_id.0))
        {
            messages.push(w.finish(EXPORT_TIME, sequence, domain).to_vec());
            w.clear();
            sequence = sequence.wrapping_add(in_message);
            in_message = 0;
            continue;
        }
        if left_in_set == u64::MAX {
            left_in_set = shape
                .records_per_set
                .map_or(u64::MAX - 1, |n| 1 + rng.below(n));
        }
        put_record(&mut w, &mut rng, def);
        if w.commit() {
            records += 1;
            in_message += 1;
            left_in_set -= 1;
            if left_in_set == 0 {
                w.end_set();
                which = (which + 1) % shape.templates.len();
                left_in_set = u64::MAX;
            }
        } else {
            // The record did not fit: send this Message, write a new record into the next one.
            messages.push(w.finish(EXPORT_TIME, sequence, domain).to_vec());
            w.clear();
            sequence = sequence.wrapping_add(in_message);
            in_message = 0;
        }
    }
    if !w.is_empty() {
        messages.push(w.finish(EXPORT_TIME, sequence, domain).to_vec());
    }
    Stream { messages, records }
}

// ---------------------------------------------------------------------------------------------
// The two decoders
// ---------------------------------------------------------------------------------------------

/// A minimal collector loop around the VM: learns templates, compiles each once, runs every
/// Data Set and flushes the columns into `RecordBatch`es.
struct VmDecoder {
    compiler: Compiler,
    mode: Mode,
    templates: HashMap<TemplateId, (TemplateDef, Columns)>,
}

impl VmDecoder {
    fn new(mode: Mode) -> Self {
        Self {
            compiler: Compiler::default(),
            mode,
            templates: HashMap::new(),
        }
    }

    /// Decodes one Message into the column buffers.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
        let message = Message::decode(bytes)?;
        for set in message.sets() {
            let set = set?;
            if set.id == SetId::TEMPLATE || set.id == SetId::OPTIONS_TEMPLATE {
                for record in TemplateRecords::new(&set) {
                    if let TemplateRecord::Definition(def) = record? {
                        if self
                            .templates
                            .get(&def.template_id)
                            .is_some_and(|(d, _)| *d == def)
                        {
                            continue; // a refresh of a known template
                        }
                        let columns = Columns::new(Arc::new(self.compiler.compile(&def)?));
                        self.templates.insert(def.template_id, (def, columns));
                    }
                }
            } else if let Some((_, columns)) = self.templates.get_mut(&TemplateId(set.id.0)) {
                columns.run_with(&set, self.mode)?;
            }
        }
        Ok(())
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
    records: u64,
    checksum: u64,
    /// Data Sets it could not decode for want of a template, plus parse errors.
    failures: u64,
}

/// One iteration of `netflow_parser`: every Message parsed as its own datagram, every field
/// value of every Data Record read.
fn netflow_parser_pass(parser: &mut NetflowParser, stream: &[Vec<u8>]) -> NpOutcome {
    let mut out = NpOutcome::default();
    for message in stream {
        for packet in parser.iter_packets(black_box(message)) {
            match packet {
                Ok(NetflowPacket::IPFix(ipfix)) => {
                    for set in &ipfix.flowsets {
                        match &set.body {
                            FlowSetBody::Data(data) => {
                                for record in &data.fields {
                                    out.records += 1;
                                    for (_, value) in record {
                                        out.checksum = out.checksum.rotate_left(5) ^ touch(value);
                                    }
                                }
                            }
                            FlowSetBody::NoTemplate(_) => out.failures += 1,
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

#[expect(
    clippy::expect_used,
    reason = "bench setup: a stream that does not decode must stop the run, not be measured"
)]
fn bench_shape(c: &mut Criterion, shape: &Shape) {
    let stream = build_stream(shape);
    let messages = &stream.messages;

    // Setup checks: both decoders see every record that was written, on their second pass too
    // (state kept from the first, as in the timed loop).
    for mode in [Mode::OpAtATime, Mode::RecordAtATime] {
        let mut vm = VmDecoder::new(mode);
        for _ in 0..2 {
            let rows = vm.pass(messages).expect("the VM decodes the stream");
            assert_eq!(rows, stream.records, "{}: VM {mode:?} rows", shape.name);
        }
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
        "{}: {} messages, {} octets, {} records ({} templates)",
        shape.name,
        messages.len(),
        octets,
        stream.records,
        shape.templates.len()
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
    let mut parser = NetflowParser::default();
    group.bench_function("netflow_parser", |b| {
        b.iter(|| black_box(netflow_parser_pass(&mut parser, messages)));
    });
    group.finish();
}

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
