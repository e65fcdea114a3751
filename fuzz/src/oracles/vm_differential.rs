//! `vm_differential`: the VM record at a time, op at a time and in its automatic choice, against
//! the naive reference decoder of `vm/tests/reference.rs` (the same file, through `#[path]`).
//!
//! Input: a template over the reference's test registry (enterprise 4242, one element per
//! abstract data type), each field at one of the lengths its type allows or at any length; then
//! either records (one value per field, encoded as the wire has it, variable-length fields with
//! their one- or three-octet length prefix, then padding) or arbitrary octets as the Set.
//!
//! Oracle: when the program's check accepts the Set, every mode gives the reference's batch and
//! its count of invalid values, and running the Set twice gives it twice; when the check refuses
//! the Set, every mode refuses it with the same error and appends nothing.

use std::sync::Arc;

use arbitrary::Arbitrary;
use flowvm_vm::exec::Mode;
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::ids::{SetId, TemplateId};
use flowvm_vm::wire::set::Set;
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::{Columns, Compiler, Limits};

use super::reference::{PEN, TYPES, lengths, reference, registry};

#[derive(Arbitrary, Debug)]
struct Field {
    /// Index into the reference's types.
    ty: u8,
    /// Index into the lengths the type allows, or `None` for any length.
    length: Option<u8>,
    any_length: u16,
}

#[derive(Arbitrary, Debug)]
enum Body {
    /// One value per field per record, then padding octets.
    Records(Vec<Vec<Vec<u8>>>, u8),
    /// Arbitrary octets as the Set.
    Octets(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    fields: Vec<Field>,
    body: Body,
}

impl Field {
    fn spec(&self) -> FieldSpecifier {
        let index = usize::from(self.ty) % TYPES.len();
        let allowed = TYPES.get(index).map(|&t| lengths(t)).unwrap_or_default();
        let length = match self.length {
            Some(l) => allowed
                .get(usize::from(l) % allowed.len().max(1))
                .copied()
                .unwrap_or(self.any_length),
            None => self.any_length,
        };
        FieldSpecifier::enterprise(PEN, u16::try_from(index + 1).unwrap_or(0), length)
    }
}

/// Encodes records as the wire has them: fixed-length values cut or zero-extended to the Field
/// Length, variable-length ones behind their length prefix (RFC 7011 §7).
fn encode(def: &TemplateDef, records: &[Vec<Vec<u8>>], padding: u8) -> Vec<u8> {
    let mut body = Vec::new();
    for record in records {
        for (i, spec) in def.fields.iter().enumerate() {
            let value = record.get(i).map_or(&[][..], Vec::as_slice);
            if spec.field_length == VARIABLE_LENGTH {
                let value = value.get(..300).unwrap_or(value);
                match u8::try_from(value.len()) {
                    Ok(short) if short < 255 => body.push(short),
                    _ => {
                        body.push(255);
                        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
                        body.extend(len.to_be_bytes());
                    }
                }
                body.extend_from_slice(value);
            } else {
                let len = usize::from(spec.field_length);
                body.extend(value.iter().copied().chain(std::iter::repeat(0)).take(len));
            }
        }
    }
    body.extend(std::iter::repeat_n(0, usize::from(padding % 4)));
    body
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let Some(input) = super::structured::<Input>(data) else {
        return;
    };
    let def = TemplateDef {
        template_id: TemplateId(256),
        scope_field_count: 0,
        fields: input.fields.iter().map(Field::spec).collect(),
    };
    let registry = registry();
    let Ok(program) = Compiler::new(registry.clone(), Limits::default()).compile(&def) else {
        return;
    };
    let program = Arc::new(program);
    let body = match &input.body {
        Body::Records(records, padding) => encode(&def, records, *padding),
        Body::Octets(octets) => octets.clone(),
    };
    let set = Set {
        id: SetId(256),
        body: &body,
        offset: 20,
    };
    let checked = program.check(&set);
    let expected = checked
        .is_ok()
        .then(|| reference(&def, &registry, &program, &body));
    for mode in [Mode::RecordAtATime, Mode::OpAtATime, Mode::Auto] {
        let mut cols = Columns::new(Arc::clone(&program));
        let first = cols.run_with(&set, mode);
        let second = cols.run_with(&set, mode);
        let batch = cols.flush();
        assert!(batch.is_ok(), "{mode:?}: {batch:?}");
        let batch = batch.ok().flatten();
        // Invalid values are counted when their records are read: op at a time stages them,
        // so a later run or the flush may count them; each is counted once.
        let flushed_invalid = cols.take_invalid_values();
        match (&expected, checked) {
            (Some((reference_batch, invalid)), Ok(shape)) => {
                let records = u64::try_from(shape.records).unwrap_or(u64::MAX);
                let mut counted = flushed_invalid;
                for run in [first, second] {
                    assert_eq!(run.map(|s| s.records), Ok(records), "{mode:?}");
                    counted += run.map_or(0, |s| s.invalid_values);
                }
                assert_eq!(counted, 2 * invalid, "{mode:?}");
                let rows = shape.records;
                assert_eq!(
                    batch.as_ref().map_or(0, |b| b.num_rows()),
                    2 * rows,
                    "{mode:?}"
                );
                if let (Some(batch), Some(reference_batch)) = (&batch, reference_batch) {
                    assert_eq!(
                        &batch.slice(0, rows),
                        reference_batch,
                        "{mode:?}, first run"
                    );
                    assert_eq!(
                        &batch.slice(rows, rows),
                        reference_batch,
                        "{mode:?}, second run"
                    );
                }
            }
            (_, Err(e)) => {
                assert_eq!(first.map(|_| ()), Err(e), "{mode:?}");
                assert_eq!(second.map(|_| ()), Err(e), "{mode:?}");
                assert!(batch.is_none(), "{mode:?}: a refused Set appended rows");
            }
            (None, Ok(_)) => {}
        }
    }
}
