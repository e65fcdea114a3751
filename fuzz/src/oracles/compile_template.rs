//! `compile_template`: arbitrary templates through the compiler, and their programs over
//! arbitrary octets.
//!
//! Input: a `TemplateDef` (any Template ID, Scope Field Count, elements IANA or enterprise,
//! any Field Length, variable length included), compiler limits (the defaults or small ones),
//! elements to skip, and the octets of a Data Set.
//!
//! Oracle: `compile` never panics and is deterministic; every `Ok(program)` satisfies the
//! invariants [`Program`] documents, checked from its public face: `JNMB end`, `NR`, one read or
//! skip per Field Specifier with that field's wire length, `ADV`, `JMP 0`, `END`; every read
//! writes the next column, of the kind the read implies, with the schema's type;
//! `min_record_len >= 1` is the sum of the fixed lengths plus one per variable-length field;
//! `record_len` is that sum when no field is variable-length. The listing prints. Running the
//! program over the octets, in every mode, never panics, agrees with `Program::check`, decodes
//! `records` with `records * min_record_len <= set length` and padding shorter than a record,
//! appends exactly `records` rows, or appends nothing on an error; every mode gives the same
//! batch.

use std::sync::Arc;

use arbitrary::Arbitrary;
use flowvm_vm::exec::Mode;
use flowvm_vm::op::Op;
use flowvm_vm::program::ColumnKind;
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::ids::{ElementId, EnterpriseNumber, SetId, TemplateId};
use flowvm_vm::wire::set::Set;
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::{Columns, CompileErrorKind, Compiler, Limits, Program, Registry};

/// An Information Element: mostly IANA's well-known ones, where the types are.
#[derive(Arbitrary, Debug)]
enum Element {
    Iana(u8),
    AnyIana(u16),
    Enterprise(u32, u16),
}

/// A Field Length.
#[derive(Arbitrary, Debug)]
enum Length {
    Small(u8),
    Variable,
    Any(u16),
}

#[derive(Arbitrary, Debug)]
struct Field {
    element: Element,
    length: Length,
}

#[derive(Arbitrary, Debug)]
struct Input {
    template_id: u16,
    scope_field_count: u8,
    fields: Vec<Field>,
    /// Small limits `(fields, columns)` instead of the defaults.
    limits: Option<(u8, u8)>,
    /// IANA elements to skip rather than keep.
    skip: Vec<u8>,
    body: Vec<u8>,
}

impl Field {
    fn spec(&self) -> FieldSpecifier {
        let length = match self.length {
            Length::Small(l) => u16::from(l % 24),
            Length::Variable => VARIABLE_LENGTH,
            Length::Any(l) => l,
        };
        match self.element {
            Element::Iana(id) => FieldSpecifier::iana(u16::from(id), length),
            Element::AnyIana(id) => FieldSpecifier::iana(id & 0x7fff, length),
            Element::Enterprise(pen, id) => FieldSpecifier::enterprise(pen, id & 0x7fff, length),
        }
    }
}

/// The column kind a read fills; `None` for control instructions and skips.
fn kind_of(op: Op) -> Option<&'static [ColumnKind]> {
    use ColumnKind as K;
    Some(match op {
        Op::Rui8 { .. } => &[K::UInt8],
        Op::Rui16 { .. } => &[K::UInt16],
        Op::Rui32 { .. } => &[K::UInt32],
        Op::Rui64 { .. } => &[K::UInt64],
        Op::Rsi8 { .. } => &[K::Int8],
        Op::Rsi16 { .. } => &[K::Int16],
        Op::Rsi32 { .. } => &[K::Int32],
        Op::Rsi64 { .. } => &[K::Int64],
        Op::Rf32 { .. } => &[K::Float32],
        Op::Rf64 { .. } => &[K::Float64],
        Op::Rbool { .. } => &[K::Boolean],
        Op::Rmac { .. } => &[K::MacAddress],
        Op::Rip4 { .. } => &[K::Ipv4Address],
        Op::Rip6 { .. } => &[K::Ipv6Address],
        Op::Rdts { .. } => &[K::TimestampSeconds],
        Op::Rdtms { .. } => &[K::TimestampMilliseconds],
        Op::Rdtus { .. } => &[K::TimestampMicroseconds],
        Op::Rdtns { .. } => &[K::TimestampNanoseconds],
        Op::Rstr { .. } | Op::Rvstr { .. } => &[K::Utf8],
        Op::Roct { .. } | Op::Rvoct { .. } => &[K::Binary],
        _ => return None,
    })
}

/// The largest wire length of a read with a reduced-size form (§6.2), and the lengths allowed.
/// Octets and strings of a fixed length may be of any, 0 included: RFC 7011 sets no minimum,
/// and a field whose length fits no reading of its type (an unsigned32 in 0 octets) is kept
/// as its octets, an empty value each record (the template still needs one octet a record).
fn length_allowed(op: Op, len: usize) -> bool {
    match op {
        Op::Rui16 { .. } | Op::Rsi16 { .. } => (1..=2).contains(&len),
        Op::Rui32 { .. } | Op::Rsi32 { .. } => (1..=4).contains(&len),
        Op::Rui64 { .. } | Op::Rsi64 { .. } => (1..=8).contains(&len),
        Op::Rf64 { .. } => len == 4 || len == 8,
        Op::Roct { .. } | Op::Rstr { .. } | Op::Skip { .. } => true,
        _ => len >= 1,
    }
}

/// Checks every invariant [`Program`] documents against the template it came from.
fn check_program(def: &TemplateDef, program: &Program) {
    let ops = program.ops();
    let n = ops.len();
    assert_eq!(
        n,
        def.fields.len() + 5,
        "one instruction per field plus five"
    );
    let end = u16::try_from(n - 1).unwrap_or(u16::MAX);
    assert_eq!(ops.first(), Some(&Op::Jnmb { target: end }));
    assert_eq!(ops.get(1), Some(&Op::Nr));
    assert_eq!(
        ops.get(n - 3..),
        Some(&[Op::Adv, Op::Jmp { target: 0 }, Op::End][..])
    );
    let kinds = program.column_kinds();
    let schema = program.schema();
    assert_eq!(schema.fields().len(), kinds.len());
    for (field, kind) in schema.fields().iter().zip(kinds) {
        assert_eq!(field.data_type(), &kind.data_type(), "{}", field.name());
    }
    let mut next_column = 0_usize;
    let mut min_len = 0_usize;
    let mut fixed = Some(0_usize);
    for (op, spec) in ops.iter().skip(2).zip(&def.fields) {
        let wire = op.wire_len();
        assert_eq!(
            wire.is_none(),
            spec.is_variable_length(),
            "{op} for a field of length {}",
            spec.field_length
        );
        if let Some(len) = wire {
            assert_eq!(len, usize::from(spec.field_length), "{op}");
            assert!(length_allowed(*op, len), "{op} from {len} octets");
        }
        assert!(
            !matches!(
                op,
                Op::Jnmb { .. } | Op::Nr | Op::Adv | Op::Jmp { .. } | Op::End
            ),
            "control instruction {op} among the fields"
        );
        assert_eq!(op.column().is_some(), kind_of(*op).is_some(), "{op}");
        if let (Some(col), Some(allowed)) = (op.column(), kind_of(*op)) {
            assert_eq!(usize::from(col), next_column, "{op}: columns in order");
            let kind = kinds.get(next_column).copied();
            assert!(
                kind.is_some_and(|k| allowed.contains(&k)),
                "{op} writes a {kind:?} column"
            );
            next_column += 1;
        } else {
            assert!(matches!(op, Op::Skip { .. } | Op::Skipv), "{op}");
        }
        min_len += wire.unwrap_or(1);
        fixed = fixed.zip(wire).map(|(a, b)| a + b);
    }
    assert_eq!(next_column, kinds.len(), "every column is written");
    assert!(program.min_record_len() >= 1);
    assert_eq!(program.min_record_len(), min_len);
    assert_eq!(program.record_len(), fixed);
    assert_eq!(program.template_id(), def.template_id);
    assert_eq!(program.scope_field_count(), def.scope_field_count);
    let listing = program.to_string();
    assert_eq!(listing.lines().count(), n + 1, "{listing}");
}

/// Runs `program` over `body` in every mode and checks the shapes and the rows.
fn check_runs(program: &Arc<Program>, body: &[u8]) {
    let set = Set {
        id: SetId(program.template_id().0),
        body,
        offset: 20,
    };
    let checked = program.check(&set);
    if let Ok(shape) = checked {
        assert!(shape.records * program.min_record_len() <= body.len());
        assert!(shape.padding < program.min_record_len() || shape.padding == 0);
        if let Some(len) = program.record_len() {
            assert_eq!(shape.records * len + shape.padding, body.len());
        }
    }
    if let Err(e) = checked {
        let at = usize::from(e.offset);
        assert!(at >= set.offset && at <= set.offset + body.len(), "{e:?}");
    }
    let mut batches = Vec::new();
    for mode in [Mode::RecordAtATime, Mode::OpAtATime, Mode::Auto] {
        let mut cols = Columns::new(Arc::clone(program));
        let run = cols.run_with(&set, mode);
        assert_eq!(
            run.map(|s| s.records),
            checked.map(|s| u64::try_from(s.records).unwrap_or(u64::MAX)),
            "{mode:?}"
        );
        let rows = checked.map_or(0, |s| s.records);
        assert_eq!(cols.rows(), rows, "{mode:?}");
        let batch = cols.flush();
        assert!(batch.is_ok(), "{mode:?}: {batch:?}");
        let batch = batch.ok().flatten();
        assert_eq!(batch.as_ref().map_or(0, |b| b.num_rows()), rows, "{mode:?}");
        batches.push(batch);
    }
    assert!(
        batches.windows(2).all(|w| w.first() == w.get(1)),
        "the modes decode differently"
    );
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let Some(input) = super::structured::<Input>(data) else {
        return;
    };
    let def = TemplateDef {
        template_id: TemplateId(input.template_id),
        scope_field_count: u16::from(input.scope_field_count),
        fields: input.fields.iter().map(Field::spec).collect(),
    };
    let mut compiler = match input.limits {
        Some((fields, columns)) => Compiler::new(
            Registry::new(),
            Limits {
                max_fields: usize::from(fields),
                max_columns: usize::from(columns),
            },
        ),
        None => Compiler::default(),
    };
    for id in &input.skip {
        compiler.skip(EnterpriseNumber::IANA, ElementId(u16::from(*id)));
    }
    let compiled = compiler.compile(&def);
    assert_eq!(compiled, compiler.compile(&def), "compile is deterministic");
    match compiled {
        Ok(program) => {
            check_program(&def, &program);
            check_runs(&Arc::new(program), &input.body);
        }
        Err(e) => {
            let kind = e.kind();
            let explained = match kind {
                CompileErrorKind::EmptyRecord => def.fields.iter().all(|f| f.field_length == 0),
                CompileErrorKind::TooManyFields { given, limit } => {
                    *given == def.fields.len() && given > limit
                }
                CompileErrorKind::TooManyColumns { given, limit } => given > limit,
                _ => false,
            };
            assert!(explained, "{kind:?} for {def:?}");
        }
    }
}
