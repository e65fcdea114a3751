//! Differential tests: the VM, record at a time and op at a time, against a deliberately naive
//! reference decoder that walks the template field by field with Arrow's own builders.
//!
//! Templates are random over every abstract data type (with reduced sizes, fixed and variable
//! lengths), records are random octets encoded with the vm writer, and all three decoders must
//! produce the same `RecordBatch`.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed case"
)]

mod common;
#[path = "reference/decoder.rs"]
mod decoder;

use std::sync::Arc;

use arrow_array::RecordBatch;
use decoder::{PEN, TYPES, lengths, reference, registry};
use flowvm_vm::exec::Mode;
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::set::Set;
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;
use flowvm_vm::{Columns, Compiler, Limits};
use proptest::prelude::*;

fn field() -> impl Strategy<Value = FieldSpecifier> {
    (0..TYPES.len()).prop_flat_map(|i| {
        let ls = lengths(TYPES[i]);
        (Just(i), 0..ls.len()).prop_map(move |(i, l)| {
            FieldSpecifier::enterprise(PEN, u16::try_from(i + 1).unwrap(), ls[l])
        })
    })
}

/// Multi-byte UTF-8 (2, 3 and 4 octets a character) whose slices cut characters anywhere.
const MULTI_BYTE: &str = "é€𝄞ñ€é𝄞ü";

/// Octets for one field: string-ish alphabets so strings hit NULs and invalid UTF-8, and
/// slices of multi-byte text, so that the halves of one character end one string and start
/// the next (each invalid, though the two together are UTF-8).
fn value(len: u16) -> BoxedStrategy<Vec<u8>> {
    let byte = prop_oneof![4 => any::<u8>(), 1 => Just(0_u8), 1 => Just(1_u8), 1 => Just(2_u8), 2 => b'a'..=b'z', 1 => Just(0xc3_u8), 1 => Just(0xa9_u8)];
    let text = MULTI_BYTE.as_bytes();
    let slice =
        (0..=text.len(), 0..=text.len()).prop_map(|(a, b)| text[a.min(b)..a.max(b)].to_vec());
    if len == VARIABLE_LENGTH {
        prop_oneof![
            8 => proptest::collection::vec(byte.clone(), 0..40),
            3 => slice,
            1 => proptest::collection::vec(byte, 250..300),
        ]
        .boxed()
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

/// Encodes `records` of `def` into one Data Set and runs it in every mode: each gives the
/// reference batch and the reference count of invalid values.
fn modes_match_reference(
    def: &TemplateDef,
    records: &[Vec<Vec<u8>>],
    pad: bool,
) -> Result<(), TestCaseError> {
    let registry = registry();
    let program = Arc::new(
        Compiler::new(registry.clone(), Limits::default())
            .compile(def)
            .unwrap(),
    );
    // Padding is only padding when it is shorter than any record (RFC 7011 §3.3.1).
    let pad = pad && program.min_record_len() > 3;
    let message = encode(def, records, pad);
    if message.len() == 16 {
        return Ok(()); // the empty Set was dropped by the writer
    }
    let set = data_set(&message);
    let (expected, expected_invalid) = reference(def, &registry, &program, set.body);
    for mode in [Mode::RecordAtATime, Mode::OpAtATime, Mode::Auto] {
        let mut cols = Columns::new(Arc::clone(&program));
        let stats = cols.run_with(&set, mode).unwrap();
        prop_assert_eq!(usize::try_from(stats.records).unwrap(), cols.rows());
        prop_assert_eq!(&cols.flush().unwrap(), &expected, "{:?}", mode);
        let invalid = stats.invalid_values + cols.take_invalid_values();
        prop_assert_eq!(invalid, expected_invalid, "{:?}", mode);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn vm_modes_and_reference_decode_the_same((def, records, pad) in template_and_records()) {
        modes_match_reference(&def, &records, pad)?;
    }

    /// UTF-8 text cut into strings at arbitrary octets, one string per record, so that the
    /// strings of a Set are UTF-8 together while some are not on their own: each of those is
    /// invalid, counted and repaired, whichever way the Set runs.
    #[test]
    fn strings_cut_inside_characters_are_invalid_each(
        text in proptest::collection::vec(prop_oneof![Just("a"), Just("é"), Just("€"), Just("𝄞")], 0..40),
        cuts in proptest::collection::vec(0_usize..200, 0..12),
        fixed_len in prop_oneof![Just(None), (1_u16..6).prop_map(Some)],
    ) {
        let text = text.concat().into_bytes();
        let string = FieldSpecifier::enterprise(PEN, 14, fixed_len.unwrap_or(VARIABLE_LENGTH));
        let def = TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields: vec![FieldSpecifier::enterprise(PEN, 2, 1), string],
        };
        let pieces: Vec<&[u8]> = match fixed_len {
            Some(len) => text.chunks_exact(usize::from(len)).collect(),
            None => {
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
                cuts.extend([0, text.len()]);
                cuts.sort_unstable();
                cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
            }
        };
        let records: Vec<Vec<Vec<u8>>> = pieces.iter().map(|p| vec![vec![7], p.to_vec()]).collect();
        modes_match_reference(&def, &records, false)?;
    }

    /// The same Set run twice into one `Columns` (rows appended to rows, the scratch reused)
    /// gives the reference batch twice over, in every mode.
    #[test]
    fn vm_modes_append_sets_to_the_rows_already_buffered((def, records, pad) in template_and_records()) {
        let registry = registry();
        let program = Arc::new(Compiler::new(registry.clone(), Limits::default()).compile(&def).unwrap());
        let pad = pad && program.min_record_len() > 3;
        let message = encode(&def, &records, pad);
        if message.len() == 16 {
            return Ok(());
        }
        let set = data_set(&message);
        let (expected, expected_invalid) = reference(&def, &registry, &program, set.body);
        for mode in [Mode::RecordAtATime, Mode::OpAtATime, Mode::Auto] {
            let mut cols = Columns::new(Arc::clone(&program));
            let mut invalid = 0;
            for _ in 0..2 {
                invalid += cols.run_with(&set, mode).unwrap().invalid_values;
            }
            let batch = cols.flush().unwrap();
            invalid += cols.take_invalid_values();
            prop_assert_eq!(invalid, 2 * expected_invalid, "{:?}", mode);
            let rows = expected.as_ref().map_or(0, RecordBatch::num_rows);
            prop_assert_eq!(batch.as_ref().map(RecordBatch::num_rows), expected.as_ref().map(|_| 2 * rows), "{:?}", mode);
            if let (Some(batch), Some(expected)) = (&batch, &expected) {
                prop_assert_eq!(&batch.slice(0, rows), expected, "{:?}", mode);
                prop_assert_eq!(&batch.slice(rows, rows), expected, "{:?}", mode);
            }
        }
    }

    /// Arbitrary octets as a Set of a random template: every mode gives the same error, or
    /// the same rows and counts.
    #[test]
    fn vm_modes_agree_on_arbitrary_octets(
        (def, _, _) in template_and_records(),
        body in proptest::collection::vec(prop_oneof![any::<u8>(), 0_u8..4, Just(255_u8)], 0..200),
    ) {
        let program = Arc::new(Compiler::new(registry(), Limits::default()).compile(&def).unwrap());
        let set = Set { id: SetId(256), body: &body, offset: 20 };
        let checked = program.check(&set);
        for mode in [Mode::RecordAtATime, Mode::OpAtATime, Mode::Auto] {
            let mut cols = Columns::new(Arc::clone(&program));
            let run = cols.run_with(&set, mode);
            prop_assert_eq!(run.map(|s| (s.records, s.padding_octets)), checked.map(|s| (s.records as u64, s.padding as u64)), "{:?}", mode);
            if checked.is_err() {
                prop_assert_eq!(cols.rows(), 0);
            }
        }
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
