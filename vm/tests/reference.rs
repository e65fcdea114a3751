//! Differential tests: the VM, record at a time and op at a time, against a deliberately naive
//! reference decoder that walks the template field by field with Arrow's own builders.
//!
//! Templates are random over every abstract data type (with reduced sizes, fixed and variable
//! lengths), records are random octets encoded with the vm writer, and all three decoders must
//! produce the same `RecordBatch`.

#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_lossless,
    clippy::unwrap_used,
    reason = "the reference decoder is deliberately naive: plain casts and unwraps"
)]

mod common;

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
    TimestampSecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use flowvm_vm::exec::Mode;
use flowvm_vm::ie::types::AbstractDataType as T;
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::set::Set;
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;
use flowvm_vm::{Columns, Compiler, Limits, Program, Registry};
use proptest::prelude::*;

/// Enterprise 4242 holds one test element per abstract data type, id = index + 1.
const TYPES: [T; 23] = [
    T::OctetArray,
    T::Unsigned8,
    T::Unsigned16,
    T::Unsigned32,
    T::Unsigned64,
    T::Signed8,
    T::Signed16,
    T::Signed32,
    T::Signed64,
    T::Float32,
    T::Float64,
    T::Boolean,
    T::MacAddress,
    T::String,
    T::DateTimeSeconds,
    T::DateTimeMilliseconds,
    T::DateTimeMicroseconds,
    T::DateTimeNanoseconds,
    T::Ipv4Address,
    T::Ipv6Address,
    T::BasicList,
    T::SubTemplateList,
    T::SubTemplateMultiList,
];
const PEN: u32 = 4242;

fn registry() -> Registry {
    let mut r = Registry::new();
    let csv: String = TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{PEN},{},t{},{}\n", i + 1, t.name(), t.name()))
        .collect();
    assert_eq!(r.add_csv(&csv), Ok(TYPES.len()));
    r
}

/// The naive decoder: one pass per record, one field at a time, Arrow builders, no program.
fn reference(
    def: &TemplateDef,
    registry: &Registry,
    program: &Program,
    body: &[u8],
) -> Option<RecordBatch> {
    let types: Vec<(T, u16)> = def
        .fields
        .iter()
        .map(|f| {
            (
                registry.lookup(f.enterprise_number, f.element_id).data_type,
                f.field_length,
            )
        })
        .collect();
    let min_len: usize = types
        .iter()
        .map(|&(_, l)| {
            if l == VARIABLE_LENGTH {
                1
            } else {
                usize::from(l)
            }
        })
        .sum();
    let mut cols: Vec<Vec<Vec<u8>>> = vec![Vec::new(); types.len()];
    let mut pos = 0;
    while body.len() - pos >= min_len {
        for (i, &(_, len)) in types.iter().enumerate() {
            let len = if len == VARIABLE_LENGTH {
                let first = usize::from(body[pos]);
                pos += 1;
                if first == 255 {
                    let long = usize::from(body[pos]) * 256 + usize::from(body[pos + 1]);
                    pos += 2;
                    long
                } else {
                    first
                }
            } else {
                usize::from(len)
            };
            cols[i].push(body[pos..pos + len].to_vec());
            pos += len;
        }
    }
    if cols.first().is_none_or(Vec::is_empty) {
        return None;
    }
    let arrays: Vec<ArrayRef> = types
        .iter()
        .zip(cols)
        .map(|(&(ty, len), values)| build(ty, len, &values))
        .collect();
    Some(RecordBatch::try_new(Arc::clone(program.schema()), arrays).unwrap())
}

fn unsigned(b: &[u8]) -> u64 {
    let mut v = 0;
    for &x in b {
        v = v * 256 + u64::from(x);
    }
    v
}

fn signed(b: &[u8]) -> i64 {
    let v = unsigned(b);
    let bits = 8 * b.len();
    if bits < 64 && b[0] & 0x80 != 0 {
        (v as i64) - (1_i64 << bits)
    } else {
        v as i64
    }
}

fn ntp(b: &[u8], per_second: i64, mask: u64) -> i64 {
    let seconds = unsigned(&b[..4]) as i64 - 2_208_988_800;
    let fraction = unsigned(&b[4..]) & !mask;
    seconds * per_second + ((fraction as i128 * per_second as i128) / (1_i128 << 32)) as i64
}

fn build(ty: T, len: u16, values: &[Vec<u8>]) -> ArrayRef {
    macro_rules! col {
        ($builder:expr, $f:expr) => {{
            let mut b = $builder;
            for v in values {
                b.append_value($f(v.as_slice()));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match ty {
        T::Unsigned8 => col!(UInt8Builder::new(), |b| unsigned(b) as u8),
        T::Unsigned16 => col!(UInt16Builder::new(), |b| unsigned(b) as u16),
        T::Unsigned32 => col!(UInt32Builder::new(), |b| unsigned(b) as u32),
        T::Ipv4Address => col!(UInt32Builder::new(), |b| unsigned(b) as u32),
        T::Unsigned64 => col!(UInt64Builder::new(), unsigned),
        T::Signed8 => col!(Int8Builder::new(), |b| signed(b) as i8),
        T::Signed16 => col!(Int16Builder::new(), |b| signed(b) as i16),
        T::Signed32 => col!(Int32Builder::new(), |b| signed(b) as i32),
        T::Signed64 => col!(Int64Builder::new(), signed),
        T::Float32 => col!(
            Float32Builder::new(),
            |b| f32::from_bits(unsigned(b) as u32)
        ),
        T::Float64 if len == 4 => col!(Float64Builder::new(), |b| f64::from(f32::from_bits(
            unsigned(b) as u32
        ))),
        T::Float64 => col!(Float64Builder::new(), |b| f64::from_bits(unsigned(b))),
        T::Boolean => {
            let mut b = BooleanBuilder::new();
            for v in values {
                b.append_option(match v[0] {
                    1 => Some(true),
                    2 => Some(false),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        T::MacAddress | T::Ipv6Address => {
            let mut b = FixedSizeBinaryBuilder::new(if ty == T::MacAddress { 6 } else { 16 });
            for v in values {
                b.append_value(v).unwrap();
            }
            Arc::new(b.finish())
        }
        T::DateTimeSeconds => col!(
            TimestampSecondBuilder::new().with_timezone("UTC"),
            |b| unsigned(b) as i64
        ),
        T::DateTimeMilliseconds => col!(
            TimestampMillisecondBuilder::new().with_timezone("UTC"),
            |b| unsigned(b) as i64
        ),
        T::DateTimeMicroseconds => col!(
            TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            |b| ntp(b, 1_000_000, 0x7ff)
        ),
        T::DateTimeNanoseconds => col!(
            TimestampNanosecondBuilder::new().with_timezone("UTC"),
            |b| ntp(b, 1_000_000_000, 0)
        ),
        T::String => {
            let mut b = StringBuilder::new();
            for v in values {
                let mut v = v.as_slice();
                if len != VARIABLE_LENGTH {
                    while let [rest @ .., 0] = v {
                        v = rest;
                    }
                }
                b.append_value(String::from_utf8_lossy(v));
            }
            Arc::new(b.finish())
        }
        T::OctetArray | T::BasicList | T::SubTemplateList | T::SubTemplateMultiList => {
            let mut b = BinaryBuilder::new();
            for v in values {
                b.append_value(v);
            }
            Arc::new(b.finish())
        }
    }
}

/// Field lengths an element of `ty` may have: reduced sizes, fixed and variable lengths.
fn lengths(ty: T) -> Vec<u16> {
    match (ty, ty.natural_len()) {
        (T::Float64, _) => vec![4, 8],
        (
            T::Unsigned16 | T::Unsigned32 | T::Unsigned64 | T::Signed16 | T::Signed32 | T::Signed64,
            Some(n),
        ) => (1..=n).collect(),
        (_, Some(n)) => vec![n],
        (_, None) => vec![1, 3, 16, VARIABLE_LENGTH],
    }
}

fn field() -> impl Strategy<Value = FieldSpecifier> {
    (0..TYPES.len()).prop_flat_map(|i| {
        let ls = lengths(TYPES[i]);
        (Just(i), 0..ls.len()).prop_map(move |(i, l)| {
            FieldSpecifier::enterprise(PEN, u16::try_from(i + 1).unwrap(), ls[l])
        })
    })
}

/// Octets for one field: string-ish alphabets so strings hit NULs and invalid UTF-8.
fn value(len: u16) -> BoxedStrategy<Vec<u8>> {
    let byte = prop_oneof![4 => any::<u8>(), 1 => Just(0_u8), 1 => Just(1_u8), 1 => Just(2_u8), 2 => b'a'..=b'z'];
    if len == VARIABLE_LENGTH {
        prop_oneof![8 => proptest::collection::vec(byte.clone(), 0..20), 1 => proptest::collection::vec(byte, 250..300)].boxed()
    } else {
        proptest::collection::vec(byte, usize::from(len)).boxed()
    }
}

fn template_and_records() -> impl Strategy<Value = (TemplateDef, Vec<Vec<Vec<u8>>>, bool)> {
    proptest::collection::vec(field(), 1..8).prop_flat_map(|fields| {
        let record = fields
            .iter()
            .map(|f| value(f.field_length))
            .collect::<Vec<_>>();
        let def = TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields,
        };
        (
            Just(def),
            proptest::collection::vec(record, 0..12),
            any::<bool>(),
        )
    })
}

/// Encodes the records of `def` into one Data Set with the writer; returns the Message.
fn encode(def: &TemplateDef, records: &[Vec<Vec<u8>>], pad: bool) -> Vec<u8> {
    let mut w = MessageWriter::new(65_535);
    assert!(w.begin_set(SetId(def.template_id.0)));
    for record in records {
        for (f, v) in def.fields.iter().zip(record) {
            if f.is_variable_length() {
                w.put_var_len(v)
            } else {
                w.put_bytes(v)
            }
        }
        if !w.commit() {
            break;
        }
    }
    if pad {
        w.end_set_padded(4)
    } else {
        w.end_set()
    }
    w.finish(0, 0, ObservationDomainId(1)).to_vec()
}

fn data_set(message: &[u8]) -> Set<'_> {
    let message = flowvm_vm::wire::header::Message::decode(message).unwrap();
    message.sets().next().unwrap().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn vm_modes_and_reference_decode_the_same((def, records, pad) in template_and_records()) {
        let registry = registry();
        let program = Arc::new(Compiler::new(registry.clone(), Limits::default()).compile(&def).unwrap());
        // Padding is only padding when it is shorter than any record (RFC 7011 §3.3.1).
        let pad = pad && program.min_record_len() > 3;
        let message = encode(&def, &records, pad);
        if message.len() == 16 {
            return Ok(()); // the empty Set was dropped by the writer
        }
        let set = data_set(&message);
        let mut batches = Vec::new();
        for mode in [Mode::RecordAtATime, Mode::OpAtATime, Mode::Auto] {
            let mut cols = Columns::new(Arc::clone(&program));
            let stats = cols.run_with(&set, mode).unwrap();
            prop_assert_eq!(usize::try_from(stats.records).unwrap(), cols.rows());
            batches.push(cols.flush().unwrap());
        }
        let expected = reference(&def, &registry, &program, set.body);
        prop_assert_eq!(&batches[0], &expected);
        prop_assert_eq!(&batches[1], &expected);
        prop_assert_eq!(&batches[2], &expected);
    }

    #[test]
    fn reduced_size_unsigned_values_round_trip(values in proptest::collection::vec(any::<u64>(), 1..50), len in 1_usize..=8) {
        let def = TemplateDef {
            template_id: TemplateId(300),
            scope_field_count: 0,
            fields: vec![FieldSpecifier::iana(1, u16::try_from(len).unwrap()), FieldSpecifier::iana(82, VARIABLE_LENGTH)],
        };
        let mask = if len == 8 { u64::MAX } else { (1_u64 << (8 * len)) - 1 };
        let mut w = MessageWriter::new(65_535);
        w.begin_set(SetId::TEMPLATE);
        w.put_template(&def);
        prop_assert!(w.commit());
        w.begin_set(SetId(300));
        for v in &values {
            w.put_bytes(&(v & mask).to_be_bytes()[8 - len..]);
            w.put_var_len(v.to_string().as_bytes());
            prop_assert!(w.commit());
        }
        let message = w.finish(0, 0, ObservationDomainId(0)).to_vec();
        let batches = common::decode(&[&message]).unwrap();
        let batch = &batches[&TemplateId(300)];
        let counts = batch.column(0).as_any().downcast_ref::<arrow_array::UInt64Array>().unwrap();
        let names = batch.column(1).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        for (i, v) in values.iter().enumerate() {
            prop_assert_eq!(counts.value(i), v & mask);
            prop_assert_eq!(names.value(i), v.to_string());
        }
    }
}

#[test]
fn a_set_of_only_padding_decodes_no_record() {
    let def = TemplateDef {
        template_id: TemplateId(256),
        scope_field_count: 0,
        fields: vec![FieldSpecifier::iana(8, 4), FieldSpecifier::iana(12, 4)],
    };
    let program = Arc::new(Compiler::default().compile(&def).unwrap());
    let body = [0_u8; 7];
    let set = Set {
        id: SetId(256),
        body: &body,
        offset: 20,
    };
    for mode in [Mode::RecordAtATime, Mode::OpAtATime] {
        let mut cols = Columns::new(Arc::clone(&program));
        let stats = cols.run_with(&set, mode).unwrap();
        assert_eq!((stats.records, stats.padding_octets), (0, 7));
        assert!(cols.flush().unwrap().is_none());
    }
}
