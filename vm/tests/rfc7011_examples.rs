//! The worked examples of RFC 7011 Appendix A ("IPFIX Encoding Examples"), byte for byte, from
//! `testdata/ipfix/rfc7011-*.hex` (provenance in `testdata/README.md`).
//!
//! Each test quotes its example and checks every decoded value, column name and Arrow type.
//! Where the RFC shows a Template without Data Records, the test checks the Template Record as
//! parsed and the schema it compiles to, and that the Message alone yields no rows.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers outside #[test] fns fail the test on malformed fixtures, as the tests do"
)]

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use flowvm_vm::Compiler;
use flowvm_vm::exec::Mode;
use flowvm_vm::wire::VERSION;
use flowvm_vm::wire::header::Message;
use flowvm_vm::wire::ids::{SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef, TemplateRecord, TemplateRecords};

/// RFC 5612's Enterprise Number for documentation, used where the RFC leaves it unspecified.
const DOC_PEN: u32 = 32_473;

fn ipv4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from(Ipv4Addr::new(a, b, c, d))
}

/// Decodes `messages` record at a time and op at a time, checks both agree, and returns the
/// batches.
fn decode(messages: &[&[u8]]) -> BTreeMap<TemplateId, RecordBatch> {
    let auto = common::decode(messages).expect("RFC 7011 examples decode");
    for mode in [Mode::RecordAtATime, Mode::OpAtATime] {
        let other = common::decode_with(messages, mode).expect("RFC 7011 examples decode");
        assert_eq!(other, auto, "{mode:?} disagrees with Mode::Auto");
    }
    auto
}

/// The one batch decoded for `id`, after checking no other template produced rows.
fn only_batch(batches: BTreeMap<TemplateId, RecordBatch>, id: u16) -> RecordBatch {
    let ids: Vec<_> = batches.keys().copied().collect();
    assert_eq!(ids, [TemplateId(id)]);
    batches.into_values().next().unwrap()
}

/// Column names and Arrow types, in schema order.
fn columns(schema: &Schema) -> Vec<(&str, DataType)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone()))
        .collect()
}

/// The `ipfix.scope` metadata of each column, in schema order.
fn scope_flags(schema: &Schema) -> Vec<Option<&str>> {
    schema
        .fields()
        .iter()
        .map(|f| f.metadata().get("ipfix.scope").map(String::as_str))
        .collect()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    assert_eq!(col.null_count(), 0, "{name} has nulls");
    col
}

fn u32s(batch: &RecordBatch, name: &str) -> Vec<u32> {
    column(batch, name)
        .as_primitive::<UInt32Type>()
        .values()
        .to_vec()
}

fn u64s(batch: &RecordBatch, name: &str) -> Vec<u64> {
    column(batch, name)
        .as_primitive::<UInt64Type>()
        .values()
        .to_vec()
}

fn binaries(batch: &RecordBatch, name: &str) -> Vec<Vec<u8>> {
    column(batch, name)
        .as_binary::<i32>()
        .iter()
        .map(|v| v.unwrap().to_vec())
        .collect()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    column(batch, name)
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_owned())
        .collect()
}

/// `(Set ID, Set Length)` of every Set of `message`, after checking its header.
fn sets(message: &[u8]) -> Vec<(SetId, usize)> {
    let message = Message::decode(message).unwrap();
    assert_eq!(message.header.version, VERSION);
    message
        .sets()
        .map(|set| set.map(|s| (s.id, s.body.len() + 4)).unwrap())
        .collect()
}

/// The single Template Record of a Message holding one (Options) Template Set.
fn only_template(message: &[u8]) -> TemplateDef {
    let mut defs = Vec::new();
    for set in Message::decode(message).unwrap().sets() {
        let set = set.unwrap();
        assert!(
            set.id == SetId::TEMPLATE || set.id == SetId::OPTIONS_TEMPLATE,
            "{:?}",
            set.id
        );
        for record in TemplateRecords::new(&set) {
            match record.unwrap() {
                TemplateRecord::Definition(def) => defs.push(def),
                other => panic!("expected a definition, got {other:?}"),
            }
        }
    }
    assert_eq!(defs.len(), 1, "{defs:?}");
    defs.pop().unwrap()
}

/// The schema `def` compiles to.
fn compiled_schema(def: &TemplateDef) -> Schema {
    let program = Compiler::default().compile(def).unwrap();
    program.schema().as_ref().clone()
}

fn a3_expected_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("sourceIPv4Address", DataType::UInt32),
        ("destinationIPv4Address", DataType::UInt32),
        ("ipNextHopIPv4Address", DataType::UInt32),
        ("packetDeltaCount", DataType::UInt64),
        ("octetDeltaCount", DataType::UInt64),
    ]
}

/// The three Flow Records of Appendix A.3, decoded with the Template of Appendix A.2.1.
fn assert_a3_records(batch: &RecordBatch) {
    assert_eq!(columns(&batch.schema()), a3_expected_columns());
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(
        u32s(batch, "sourceIPv4Address"),
        [
            ipv4(192, 0, 2, 12),
            ipv4(192, 0, 2, 27),
            ipv4(192, 0, 2, 56)
        ]
    );
    assert_eq!(
        u32s(batch, "destinationIPv4Address"),
        [
            ipv4(192, 0, 2, 254),
            ipv4(192, 0, 2, 23),
            ipv4(192, 0, 2, 65)
        ]
    );
    assert_eq!(
        u32s(batch, "ipNextHopIPv4Address"),
        [ipv4(192, 0, 2, 1), ipv4(192, 0, 2, 2), ipv4(192, 0, 2, 3)]
    );
    assert_eq!(u64s(batch, "packetDeltaCount"), [5009, 748, 5]);
    assert_eq!(u64s(batch, "octetDeltaCount"), [5_344_385, 388_934, 6534]);
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A
//# Let's consider the example of an IPFIX Message composed of a Template
//# Set, a Data Set (which contains three Data Records), an Options
//# Template Set, and another Data Set (which contains two Data Records
//# related to the previous Options Template Record).

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.1
//# The Message Header is composed of:
//#
//#  0                   1                   2                   3
//#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |     Version = 0x000a          |         Length = 152          |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                          Export Time                          |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                        Sequence Number                        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                     Observation Domain ID                     |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn decodes_rfc7011_appendix_a1_message_of_152_octets_with_four_sets() {
    // A.2.1 + A.3 + A.4.1 + a Data Set for Template 258 holding A.4.4's two records (the RFC
    // shows no Data Set for 258; see the hex file).
    let message = common::hex("rfc7011-a1-message.hex");
    assert_eq!(message.len(), 152);
    assert_eq!(Message::decode(&message).unwrap().header.length, 152);
    assert_eq!(
        sets(&message),
        [
            (SetId::TEMPLATE, 28),
            (SetId(256), 64),
            (SetId::OPTIONS_TEMPLATE, 24),
            (SetId(258), 20),
        ]
    );

    let mut batches = decode(&[&message]);
    let ids: Vec<_> = batches.keys().copied().collect();
    assert_eq!(ids, [TemplateId(256), TemplateId(258)]);

    assert_a3_records(&batches.remove(&TemplateId(256)).unwrap());

    let options = batches.remove(&TemplateId(258)).unwrap();
    assert_eq!(
        columns(&options.schema()),
        [
            ("lineCardId", DataType::UInt32),
            ("exportedMessageTotalCount", DataType::UInt64),
            ("exportedFlowRecordTotalCount", DataType::UInt64),
        ]
    );
    assert_eq!(scope_flags(&options.schema()), [Some("true"), None, None]);
    assert_eq!(options.num_rows(), 2);
    assert_eq!(u32s(&options, "lineCardId"), [1, 2]);
    assert_eq!(u64s(&options, "exportedMessageTotalCount"), [345, 690]);
    assert_eq!(
        u64s(&options, "exportedFlowRecordTotalCount"),
        [10201, 20402]
    );
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.2.1
//# We want to report the following Information Elements:
//#
//# - IPv4 source IP address: sourceIPv4Address [IANA-IPFIX], with a
//#   length of 4 octets
//#
//# - IPv4 destination IP address: destinationIPv4Address [IANA-IPFIX],
//#   with a length of 4 octets
//#
//# - Next-hop IP address (IPv4): ipNextHopIPv4Address [IANA-IPFIX], with
//#   a length of 4 octets
//#
//# - Number of packets of the Flow: packetDeltaCount [IANA-IPFIX], with
//#   a length of 4 octets
//#
//# - Number of octets of the Flow: octetDeltaCount [IANA-IPFIX], with a
//#   length of 4 octets
//#
//# Therefore, the Template Set will be composed of the following:
//#
//#  0                   1                   2                   3
//#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |         Set ID = 2            |      Length = 28 octets       |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |       Template ID 256         |       Field Count = 5         |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0|    sourceIPv4Address = 8    |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0| destinationIPv4Address = 12 |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0|  ipNextHopIPv4Address = 15  |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0|    packetDeltaCount = 2     |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0|    octetDeltaCount = 1      |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn learns_rfc7011_appendix_a2_1_template_of_iana_elements() {
    let message = common::hex("rfc7011-a2-1-template-set-iana.hex");
    assert_eq!(sets(&message), [(SetId::TEMPLATE, 28)]);
    let def = only_template(&message);
    assert_eq!(
        def,
        TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields: vec![
                FieldSpecifier::iana(8, 4),
                FieldSpecifier::iana(12, 4),
                FieldSpecifier::iana(15, 4),
                FieldSpecifier::iana(2, 4),
                FieldSpecifier::iana(1, 4),
            ],
        }
    );
    let schema = compiled_schema(&def);
    assert_eq!(columns(&schema), a3_expected_columns());
    assert_eq!(scope_flags(&schema), [None; 5]);
    // A Template Set alone holds no Data Records.
    assert!(decode(&[&message]).is_empty());
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.2.2
//# We want to report the following Information Elements:
//#
//# - IPv4 source IP address: sourceIPv4Address [IANA-IPFIX], with a
//#   length of 4 octets
//#
//# - IPv4 destination IP address: destinationIPv4Address [IANA-IPFIX],
//#   with a length of 4 octets
//#
//# - An enterprise-specific Information Element representing proprietary
//#   information, with a type of 15 and a length of 4 octets
//#
//# - Number of packets of the Flow: packetDeltaCount [IANA-IPFIX], with
//#   a length of 4 octets
//#
//# - Number of octets of the Flow: octetDeltaCount [IANA-IPFIX], with a
//#   length of 4 octets
//#
//# Therefore, the Template Set will be composed of the following:
//#
//#  0                   1                   2                   3
//#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |         Set ID = 2            |      Length = 32 octets       |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |       Template ID 257         |       Field Count = 5         |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0|    sourceIPv4Address = 8    |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0| destinationIPv4Address = 12 |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |1| Information Element id. = 15|       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                       Enterprise number                       |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0|    packetDeltaCount = 2     |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |0|    octetDeltaCount = 1      |       Field Length = 4        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn learns_rfc7011_appendix_a2_2_template_with_an_enterprise_element() {
    let message = common::hex("rfc7011-a2-2-template-set-enterprise.hex");
    assert_eq!(sets(&message), [(SetId::TEMPLATE, 32)]);
    let def = only_template(&message);
    assert_eq!(
        def,
        TemplateDef {
            template_id: TemplateId(257),
            scope_field_count: 0,
            fields: vec![
                FieldSpecifier::iana(8, 4),
                FieldSpecifier::iana(12, 4),
                FieldSpecifier::enterprise(DOC_PEN, 15, 4),
                FieldSpecifier::iana(2, 4),
                FieldSpecifier::iana(1, 4),
            ],
        }
    );
    let schema = compiled_schema(&def);
    // The registry does not know enterprise 32473's element 15: it is kept as octets.
    assert_eq!(
        columns(&schema),
        [
            ("sourceIPv4Address", DataType::UInt32),
            ("destinationIPv4Address", DataType::UInt32),
            ("e32473_15", DataType::Binary),
            ("packetDeltaCount", DataType::UInt64),
            ("octetDeltaCount", DataType::UInt64),
        ]
    );
    let enterprise = schema.field_with_name("e32473_15").unwrap().metadata();
    assert_eq!(
        enterprise
            .get("ipfix.enterprise_number")
            .map(String::as_str),
        Some("32473")
    );
    assert_eq!(
        enterprise.get("ipfix.element_id").map(String::as_str),
        Some("15")
    );
    assert_eq!(scope_flags(&schema), [None; 5]);
    assert!(decode(&[&message]).is_empty());
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.3
//# In this example, we report the following three Flow Records:
//#
//#   Src IP Addr. | Dst IP Addr.  | Next-Hop Addr. | Packet | Octets
//#                |               |                | Number | Number
//#   ----------------------------------------------------------------
//#   192.0.2.12   | 192.0.2.254   | 192.0.2.1      | 5009   | 5344385
//#   192.0.2.27   | 192.0.2.23    | 192.0.2.2      | 748    | 388934
//#   192.0.2.56   | 192.0.2.65    | 192.0.2.3      | 5      | 6534
//#
//#    0                   1                   2                   3
//#    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |          Set ID = 256         |          Length = 64          |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.12                           |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.254                          |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.1                            |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                             5009                              |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                            5344385                            |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.27                           |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.23                           |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.2                            |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                              748                              |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                             388934                            |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.56                           |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.65                           |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                          192.0.2.3                            |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                               5                               |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                              6534                             |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#
//# Note that padding is not necessary in this example.
#[test]
fn decodes_rfc7011_appendix_a3_data_set_with_the_a2_1_template() {
    let template = common::hex("rfc7011-a2-1-template-set-iana.hex");
    let data = common::hex("rfc7011-a3-data-set.hex");
    assert_eq!(sets(&data), [(SetId(256), 64)]);
    let batch = only_batch(decode(&[&template, &data]), 256);
    assert_a3_records(&batch);
    // Reduced-size encoding (4 octets) keeps the unsigned64 type of the two counters.
    assert_eq!(
        batch
            .schema()
            .field_with_name("octetDeltaCount")
            .unwrap()
            .metadata()
            .get("ipfix.data_type")
            .map(String::as_str),
        Some("unsigned64")
    );
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.4.1
//# Per line card (the router being composed of two line cards), we want
//# to report the following Information Elements:
//#
//# - Total number of IPFIX Messages: exportedMessageTotalCount
//#   [IANA-IPFIX], with a length of 2 octets
//#
//# - Total number of exported Flows: exportedFlowRecordTotalCount
//#   [IANA-IPFIX], with a length of 2 octets
//#
//# The line card, which is represented by the lineCardId Information
//# Element [IANA-IPFIX], is used as the Scope Field.
//#
//# Therefore, the Options Template Set will be:
//#
//#    0                   1                   2                   3
//#    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |         Set ID = 3            |          Length = 24          |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Template ID 258         |        Field Count = 3        |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |     Scope Field Count = 1     |0|     lineCardId = 141        |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |   Scope 1 Field Length = 4    |0|exportedMessageTotalCount=41 |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Field Length = 2        |0|exportedFlowRecordTotalCo.=42|
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Field Length = 2        |           Padding             |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn learns_rfc7011_appendix_a4_1_options_template_scoped_by_line_card() {
    let message = common::hex("rfc7011-a4-1-options-template-set-iana.hex");
    assert_eq!(sets(&message), [(SetId::OPTIONS_TEMPLATE, 24)]);
    // The two octets of Padding are not taken for another record.
    let def = only_template(&message);
    assert_eq!(
        def,
        TemplateDef {
            template_id: TemplateId(258),
            scope_field_count: 1,
            fields: vec![
                FieldSpecifier::iana(141, 4),
                FieldSpecifier::iana(41, 2),
                FieldSpecifier::iana(42, 2),
            ],
        }
    );
    assert!(def.is_options());
    let schema = compiled_schema(&def);
    assert_eq!(
        columns(&schema),
        [
            ("lineCardId", DataType::UInt32),
            ("exportedMessageTotalCount", DataType::UInt64),
            ("exportedFlowRecordTotalCount", DataType::UInt64),
        ]
    );
    assert_eq!(scope_flags(&schema), [Some("true"), None, None]);
    assert!(decode(&[&message]).is_empty());
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.4.2
//# Per line card (the router being composed of two line cards), we want
//# to report the following Information Elements:
//#
//# - Total number of IPFIX Messages: exportedMessageTotalCount
//#   [IANA-IPFIX], with a length of 2 octets
//#
//# - An enterprise-specific number of exported Flows, with a type of 42
//#   and a length of 4 octets
//#
//# The line card, which is represented by the lineCardId Information
//# Element [IANA-IPFIX], is used as the Scope Field.
//#
//# The format of the Options Template Set is as follows:
//#
//#    0                   1                   2                   3
//#    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |         Set ID = 3            |          Length = 28          |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Template ID 259         |        Field Count = 3        |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |     Scope Field Count = 1     |0|     lineCardId = 141        |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |   Scope 1 Field Length = 4    |0|exportedMessageTotalCount=41 |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Field Length = 2        |1|Information Element id. = 42 |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Field Length = 4        |       Enterprise number      ...
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  ...       Enterprise number      |           Padding             |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn learns_rfc7011_appendix_a4_2_options_template_with_an_enterprise_element() {
    let message = common::hex("rfc7011-a4-2-options-template-set-enterprise.hex");
    assert_eq!(sets(&message), [(SetId::OPTIONS_TEMPLATE, 28)]);
    let def = only_template(&message);
    assert_eq!(
        def,
        TemplateDef {
            template_id: TemplateId(259),
            scope_field_count: 1,
            fields: vec![
                FieldSpecifier::iana(141, 4),
                FieldSpecifier::iana(41, 2),
                FieldSpecifier::enterprise(DOC_PEN, 42, 4),
            ],
        }
    );
    let schema = compiled_schema(&def);
    assert_eq!(
        columns(&schema),
        [
            ("lineCardId", DataType::UInt32),
            ("exportedMessageTotalCount", DataType::UInt64),
            ("e32473_42", DataType::Binary),
        ]
    );
    assert_eq!(scope_flags(&schema), [Some("true"), None, None]);
    assert!(decode(&[&message]).is_empty());
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.4.3
//# In this example, we want to export the same information as in the
//# example in Appendix A.4.1:
//#
//# - Total number of IPFIX Messages: exportedMessageTotalCount
//#   [IANA-IPFIX], with a length of 2 octets
//#
//# - Total number of exported Flows: exportedFlowRecordTotalCount
//#   [IANA-IPFIX], with a length of 2 octets
//#
//# But this time, the information pertains to a proprietary scope,
//# identified by enterprise-specific Information Element number 123.
//#
//# The format of the Options Template Set is now as follows:
//#
//#    0                   1                   2                   3
//#    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |         Set ID = 3            |          Length = 28          |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Template ID 260         |        Field Count = 3        |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |     Scope Field Count = 1     |1|Scope 1 Infor. El. id. = 123 |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |    Scope 1 Field Length = 4   |       Enterprise Number      ...
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  ...       Enterprise Number      |0|exportedMessageTotalCount=41 |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Field Length = 2        |0|exportedFlowRecordTotalCo.=42|
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |       Field Length = 2        |           Padding             |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn learns_rfc7011_appendix_a4_3_options_template_with_an_enterprise_scope() {
    let message = common::hex("rfc7011-a4-3-options-template-set-enterprise-scope.hex");
    assert_eq!(sets(&message), [(SetId::OPTIONS_TEMPLATE, 28)]);
    let def = only_template(&message);
    assert_eq!(
        def,
        TemplateDef {
            template_id: TemplateId(260),
            scope_field_count: 1,
            fields: vec![
                FieldSpecifier::enterprise(DOC_PEN, 123, 4),
                FieldSpecifier::iana(41, 2),
                FieldSpecifier::iana(42, 2),
            ],
        }
    );
    let schema = compiled_schema(&def);
    assert_eq!(columns(&schema), a4_4_expected_columns());
    assert_eq!(scope_flags(&schema), [Some("true"), None, None]);
    assert!(decode(&[&message]).is_empty());
}

fn a4_4_expected_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("e32473_123", DataType::Binary),
        ("exportedMessageTotalCount", DataType::UInt64),
        ("exportedFlowRecordTotalCount", DataType::UInt64),
    ]
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.4.4
//# In this example, we report the following two Data Records:
//#
//#   Enterprise field 123   | IPFIX Message  | Exported Flow Records
//#   ---------------------------------------------------------------
//#   1                      | 345            | 10201
//#   2                      | 690            | 20402
//#
//#   0                   1                   2                   3
//#   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |      Set ID = 260             |         Length = 20           |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                               1                               |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |             345               |            10201              |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                               2                               |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |             690               |            20402              |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn decodes_rfc7011_appendix_a4_4_data_set_with_an_enterprise_scope() {
    let template = common::hex("rfc7011-a4-3-options-template-set-enterprise-scope.hex");
    let data = common::hex("rfc7011-a4-4-data-set-enterprise-scope.hex");
    assert_eq!(sets(&data), [(SetId(260), 20)]);
    let batch = only_batch(decode(&[&template, &data]), 260);
    let schema = batch.schema();
    assert_eq!(columns(&schema), a4_4_expected_columns());
    assert_eq!(scope_flags(&schema), [Some("true"), None, None]);
    assert_eq!(
        schema
            .field_with_name("e32473_123")
            .unwrap()
            .metadata()
            .get("ipfix.enterprise_number")
            .map(String::as_str),
        Some("32473")
    );
    assert_eq!(batch.num_rows(), 2);
    // The scope element is unknown to the registry, so its 4 octets are kept as they came.
    assert_eq!(binaries(&batch, "e32473_123"), [[0, 0, 0, 1], [0, 0, 0, 2]]);
    assert_eq!(u64s(&batch, "exportedMessageTotalCount"), [345, 690]);
    assert_eq!(u64s(&batch, "exportedFlowRecordTotalCount"), [10201, 20402]);
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.5.1
//#   0                   1                   2                   3
//#   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |       5       |          5-octet Information Element          |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                               |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn decodes_rfc7011_appendix_a5_1_variable_length_field_with_one_octet_length() {
    // Template 261 (interfaceName, Field Length 65535) and its one record are chosen here: the
    // RFC shows only the field.
    let message = common::hex("rfc7011-a5-1-variable-length-short.hex");
    assert_eq!(sets(&message), [(SetId::TEMPLATE, 12), (SetId(261), 10)]);
    let batch = only_batch(decode(&[&message]), 261);
    assert_eq!(
        columns(&batch.schema()),
        [("interfaceName", DataType::Utf8)]
    );
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(strings(&batch, "interfaceName"), ["Gi0/1"]);
}

//= https://www.rfc-editor.org/rfc/rfc7011#appendix-A.5.2
//#   0                   1                   2                   3
//#   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |      255      |             1000              |    IE ...     |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                1000-octet Information Element                 |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  :                              ...                              :
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                             ... IE            |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#[test]
fn decodes_rfc7011_appendix_a5_2_variable_length_field_with_three_octet_length() {
    // Template 262 (ipPayloadPacketSection, Field Length 65535) and the 1000 octets (i mod 256)
    // are chosen here: the RFC shows only the field.
    let message = common::hex("rfc7011-a5-2-variable-length-long.hex");
    assert_eq!(message.len(), 1035);
    assert_eq!(sets(&message), [(SetId::TEMPLATE, 12), (SetId(262), 1007)]);
    let batch = only_batch(decode(&[&message]), 262);
    assert_eq!(
        columns(&batch.schema()),
        [("ipPayloadPacketSection", DataType::Binary)]
    );
    assert_eq!(batch.num_rows(), 1);
    let expected: Vec<u8> = (0..=u8::MAX).cycle().take(1000).collect();
    assert_eq!(binaries(&batch, "ipPayloadPacketSection"), [expected]);
}
