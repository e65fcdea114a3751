//! Compiles (Options) Template Records into [`Program`]s (`compile`: template -> program).
//!
//! The compiler proves everything about the program that the executor relies on (see
//! [`Program`]); the executor then checks only the data.

mod layout;
mod limits;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_schema::{Field, Schema};

pub use limits::Limits;

use crate::error::{CompileError, CompileErrorKind};
use crate::ie::registry::Registry;
use crate::ie::types::AbstractDataType;
use crate::op::Op;
use crate::program::{NonconformingField, Nonconformity, Place, Program};
use crate::wire::ids::{ElementId, EnterpriseNumber};
use crate::wire::template::TemplateDef;

/// Turns templates into programs, with a registry for names and types, limits, and the
/// elements to skip rather than keep.
#[derive(Clone, Debug, Default)]
pub struct Compiler {
    registry: Registry,
    limits: Limits,
    skip: HashSet<(EnterpriseNumber, ElementId)>,
}

impl Compiler {
    /// A compiler over `registry` within `limits`.
    pub fn new(registry: Registry, limits: Limits) -> Self {
        Self {
            registry,
            limits,
            skip: HashSet::new(),
        }
    }

    /// Skips an element instead of giving it a column (paddingOctets is always skipped).
    pub fn skip(&mut self, pen: EnterpriseNumber, id: ElementId) {
        self.skip.insert((pen, id));
    }

    /// Compiles one template.
    ///
    /// # Errors
    /// [`CompileErrorKind::TooManyFields`] and [`CompileErrorKind::TooManyColumns`] beyond the
    /// limits, [`CompileErrorKind::EmptyRecord`] for a template whose fields occupy no octets.
    /// A Field Length the element's type does not permit is no error: the field is decoded as
    /// [`Program::nonconforming`] says.
    pub fn compile(&self, def: &TemplateDef) -> Result<Program, CompileError> {
        let fail = |kind| CompileError::new(def.template_id, kind);
        let limit = self.limits.max_fields.min(usize::from(u16::MAX) - 8);
        if def.fields.len() > limit {
            return Err(fail(CompileErrorKind::TooManyFields {
                given: def.fields.len(),
                limit,
            }));
        }
        let mut ops = vec![Op::Jnmb { target: 0 }, Op::Nr];
        let mut comments = vec![String::new(), String::new()];
        let mut kinds = Vec::new();
        let mut fields = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut nonconforming = Vec::new();
        let mut min_record_len = 0_usize;
        let mut fixed_len = Some(0_usize);
        for (n, spec) in def.fields.iter().enumerate() {
            let ie = self
                .registry
                .lookup(spec.enterprise_number, spec.element_id);
            //= https://www.rfc-editor.org/rfc/rfc7011#section-9
            //# The Collecting Process MUST accept padding in Data Records and
            //# Template Records.
            let skipped = spec.element_id == ElementId::PADDING_OCTETS
                && spec.enterprise_number == EnterpriseNumber::IANA
                || self
                    .skip
                    .contains(&(spec.enterprise_number, spec.element_id));
            let (op, note) = if skipped {
                let op = match spec.field_length {
                    _ if spec.is_variable_length() => Op::Skipv,
                    len => Op::Skip { len },
                };
                (op, ", skipped".to_owned())
            } else {
                let col = u16::try_from(kinds.len()).unwrap_or(u16::MAX);
                if kinds.len() >= self.limits.max_columns {
                    let kind = CompileErrorKind::TooManyColumns {
                        given: kinds.len() + 1,
                        limit: self.limits.max_columns,
                    };
                    return Err(fail(kind));
                }
                let (op, kind, nonconformity) =
                    layout::read_op(ie.data_type, spec.field_length, col);
                let name = match nonconformity {
                    Some(Nonconformity::Raw) => {
                        unique_name(&mut names, &format!("{}_raw", ie.name))
                    }
                    _ => unique_name(&mut names, &ie.name),
                };
                // A raw column holds octets: readers must not take it for the declared type.
                let data_type = match nonconformity {
                    Some(Nonconformity::Raw) => AbstractDataType::OctetArray,
                    _ => ie.data_type,
                };
                let mut meta = HashMap::from([
                    ("ipfix.element_id".to_owned(), ie.element_id.0.to_string()),
                    ("ipfix.data_type".to_owned(), data_type.name().to_owned()),
                ]);
                if let Some(handling) = nonconformity {
                    meta.insert(
                        "ipfix.nonconforming".into(),
                        format!(
                            "{}: field length {} for {}",
                            handling.label(),
                            spec.field_length,
                            ie.data_type
                        ),
                    );
                    nonconforming.push(NonconformingField {
                        column: name.clone(),
                        data_type: ie.data_type,
                        field_length: spec.field_length,
                        handling,
                    });
                }
                if ie.enterprise_number != EnterpriseNumber::IANA {
                    meta.insert(
                        "ipfix.enterprise_number".into(),
                        ie.enterprise_number.0.to_string(),
                    );
                }
                for (key, value) in [
                    ("ipfix.semantics", &ie.semantics),
                    ("ipfix.units", &ie.units),
                ] {
                    if !value.is_empty() {
                        meta.insert(key.into(), value.to_string());
                    }
                }
                if n < usize::from(def.scope_field_count) {
                    meta.insert("ipfix.scope".into(), "true".into());
                }
                let nullable = matches!(op, Op::Rbool { .. });
                fields.push(Field::new(name, kind.data_type(), nullable).with_metadata(meta));
                kinds.push(kind);
                let note = match nonconformity {
                    Some(Nonconformity::WideInteger) => format!(", wider than {}", ie.data_type),
                    Some(Nonconformity::Raw) => format!(", raw: not a length of {}", ie.data_type),
                    None => String::new(),
                };
                (op, note)
            };
            match op.wire_len() {
                Some(len) => {
                    min_record_len += len;
                    fixed_len = fixed_len.map(|f| f + len);
                }
                None => {
                    // A variable-length field takes at least its one-octet length (§7).
                    min_record_len += 1;
                    fixed_len = None;
                }
            }
            ops.push(op);
            let length = if spec.is_variable_length() {
                "variable".to_owned()
            } else {
                spec.field_length.to_string()
            };
            comments.push(format!("{} ({length}{note})", ie.name));
        }
        if min_record_len == 0 {
            return Err(fail(CompileErrorKind::EmptyRecord));
        }
        ops.extend([Op::Adv, Op::Jmp { target: 0 }, Op::End]);
        comments.extend([String::new(), String::new(), String::new()]);
        let end = u16::try_from(ops.len() - 1).unwrap_or(u16::MAX);
        if let Some(first) = ops.first_mut() {
            *first = Op::Jnmb { target: end };
        }
        let fixed = fixed_len.map_or_else(Vec::new, |_| offsets(&ops));
        let (gaps, placed) = match fixed_len {
            Some(_) => (Vec::new(), Vec::new()),
            None => places(&ops),
        };
        let operands = ops.iter().map(|op| (op.column(), op.wire_len())).collect();
        Ok(Program {
            template_id: def.template_id,
            scope_field_count: def.scope_field_count,
            ops,
            comments,
            kinds,
            schema: Arc::new(Schema::new(fields)),
            min_record_len,
            record_len: fixed_len,
            fixed,
            operands,
            gaps,
            placed,
            nonconforming,
        })
    }
}

/// Every read of a fixed-length program with its offset in the record.
fn offsets(ops: &[Op]) -> Vec<(Op, usize)> {
    let mut at = 0;
    let mut out = Vec::new();
    for op in ops {
        let len = op.wire_len().unwrap_or(0);
        if op.column().is_some() {
            out.push((*op, at));
        }
        at += len;
    }
    out
}

/// The gaps of fixed octets around the variable-length fields of `ops`, and every read with
/// its [`Place`] relative to the bounds of a record (see [`Program`]).
fn places(ops: &[Op]) -> (Vec<usize>, Vec<(Op, Place)>) {
    let mut gaps = Vec::new();
    let mut placed = Vec::new();
    // The bound the next fixed-length field follows, and its distance from that bound.
    let mut base = 0;
    let mut offset = 0;
    for op in ops {
        match op.wire_len() {
            Some(len) => {
                if op.column().is_some() {
                    placed.push((*op, Place::Fixed { base, offset }));
                }
                offset += len;
            }
            None => {
                let start = 2 * gaps.len() + 1;
                if op.column().is_some() {
                    placed.push((*op, Place::Var { start }));
                }
                gaps.push(offset);
                base = start + 1;
                offset = 0;
            }
        }
    }
    gaps.push(offset);
    (gaps, placed)
}

//= https://www.rfc-editor.org/rfc/rfc7011#section-8
//# Collecting Processes MUST properly handle Templates with multiple
//# identical Information Elements.
/// `name`, or `name_2`, `name_3`, ... when the template lists the same element again.
fn unique_name(seen: &mut HashMap<String, usize>, name: &str) -> String {
    let count = seen.entry(name.to_owned()).or_insert(0);
    *count += 1;
    if *count == 1 {
        return name.to_owned();
    }
    let mut n = *count;
    loop {
        let candidate = format!("{name}_{n}");
        if !seen.contains_key(&candidate) {
            seen.insert(candidate.clone(), 1);
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ids::TemplateId;
    use crate::wire::template::FieldSpecifier;

    fn def(fields: Vec<FieldSpecifier>) -> TemplateDef {
        TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields,
        }
    }

    #[test]
    fn compiles_the_seed_example_to_the_seed_listing() {
        let program = Compiler::default()
            .compile(&def(vec![
                FieldSpecifier::iana(8, 4),
                FieldSpecifier::iana(12, 4),
                FieldSpecifier::iana(2, 4),
            ]))
            .unwrap();
        let mnemonics: Vec<_> = program.ops().iter().map(|op| op.to_string()).collect();
        assert_eq!(
            mnemonics,
            [
                "JNMB 8",
                "NR",
                "RIP4 c0",
                "RIP4 c1",
                "RUI64 c2/4",
                "ADV",
                "JMP 1",
                "END"
            ]
        );
        assert_eq!(program.record_len(), Some(12));
        assert_eq!(program.min_record_len(), 12);
    }

    #[test]
    fn duplicate_elements_get_distinct_columns() {
        let program = Compiler::default()
            .compile(&def(vec![
                FieldSpecifier::iana(1, 8),
                FieldSpecifier::iana(1, 8),
                FieldSpecifier::iana(1, 4),
            ]))
            .unwrap();
        let names: Vec<_> = program
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            ["octetDeltaCount", "octetDeltaCount_2", "octetDeltaCount_3"]
        );
    }

    #[test]
    fn empty_records_and_limits_are_typed_errors() {
        let c = Compiler::default();
        assert_eq!(
            c.compile(&def(vec![])).unwrap_err().kind(),
            &CompileErrorKind::EmptyRecord
        );
        let nothing = def(vec![
            FieldSpecifier::iana(8, 0),
            FieldSpecifier::iana(210, 0),
        ]);
        assert_eq!(
            c.compile(&nothing).unwrap_err().kind(),
            &CompileErrorKind::EmptyRecord
        );
        let small = Compiler::new(
            Registry::new(),
            Limits {
                max_fields: 2,
                max_columns: 1,
            },
        );
        let three = def(vec![FieldSpecifier::iana(4, 1); 3]);
        assert_eq!(
            small.compile(&three).unwrap_err().kind(),
            &CompileErrorKind::TooManyFields { given: 3, limit: 2 }
        );
        let two = def(vec![FieldSpecifier::iana(4, 1); 2]);
        assert_eq!(
            small.compile(&two).unwrap_err().kind(),
            &CompileErrorKind::TooManyColumns { given: 2, limit: 1 }
        );
    }

    #[test]
    fn padding_octets_and_chosen_elements_are_skipped() {
        let mut c = Compiler::default();
        c.skip(EnterpriseNumber::IANA, ElementId(4));
        let p = c
            .compile(&def(vec![
                FieldSpecifier::iana(210, 3),
                FieldSpecifier::iana(4, 1),
                FieldSpecifier::iana(82, 65_535),
            ]))
            .unwrap();
        let mnemonics: Vec<_> = p.ops().iter().map(|op| op.to_string()).collect();
        assert_eq!(
            mnemonics,
            [
                "JNMB 8", "NR", "SKIP 3", "SKIP 1", "RVSTR c0", "ADV", "JMP 1", "END"
            ]
        );
        assert_eq!((p.min_record_len(), p.record_len()), (5, None));
    }

    #[test]
    fn odd_field_lengths_never_cost_the_template() {
        // Cisco's samplerId (IE 48, unsigned8) in 4 octets; an ipv4Address in 5 octets.
        let p = Compiler::default()
            .compile(&def(vec![
                FieldSpecifier::iana(48, 4),
                FieldSpecifier::iana(8, 5),
                FieldSpecifier::iana(2, 8),
            ]))
            .unwrap();
        let columns: Vec<_> = p
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            columns,
            [
                ("samplerId", arrow_schema::DataType::UInt32),
                ("sourceIPv4Address_raw", arrow_schema::DataType::Binary),
                ("packetDeltaCount", arrow_schema::DataType::UInt64),
            ]
        );
        let handling: Vec<_> = p
            .nonconforming()
            .iter()
            .map(|n| (n.column.as_str(), n.field_length, n.handling))
            .collect();
        assert_eq!(
            handling,
            [
                ("samplerId", 4, Nonconformity::WideInteger),
                ("sourceIPv4Address_raw", 5, Nonconformity::Raw),
            ]
        );
        let raw = p.schema().field(1).metadata();
        assert_eq!(raw["ipfix.data_type"], "octetArray");
        assert_eq!(
            raw["ipfix.nonconforming"],
            "raw_octets: field length 5 for ipv4Address"
        );
        let listing = p.to_string();
        assert!(
            listing.contains("samplerId (4, wider than unsigned8)"),
            "{listing}"
        );
        assert_eq!(p.record_len(), Some(17));
    }
}
