//! Snapshots of the disassembly of representative templates, so compiler changes are reviewed
//! as listings.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use flowvm_vm::Compiler;
use flowvm_vm::wire::VARIABLE_LENGTH;
use flowvm_vm::wire::ids::TemplateId;
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};

fn listing(scope_field_count: u16, fields: &[(u32, u16, u16)]) -> String {
    let def = TemplateDef {
        template_id: TemplateId(256),
        scope_field_count,
        fields: fields
            .iter()
            .map(|&(pen, id, len)| FieldSpecifier::enterprise(pen, id, len))
            .collect(),
    };
    Compiler::default().compile(&def).unwrap().to_string()
}

#[test]
fn seed_example_template() {
    insta::assert_snapshot!(listing(0, &[(0, 8, 4), (0, 12, 4), (0, 2, 4)]));
}

#[test]
fn vpp_ipfix_doc_simple_report() {
    insta::assert_snapshot!(listing(
        0,
        &[
            (0, 8, 4),
            (0, 12, 4),
            (0, 7, 2),
            (0, 11, 2),
            (0, 4, 1),
            (0, 154, 8),
            (0, 155, 8)
        ]
    ));
}

#[test]
fn variable_length_enterprise_and_reverse_fields() {
    insta::assert_snapshot!(listing(
        0,
        &[
            (0, 27, 16),
            (0, 1, 4),
            (29_305, 1, 4),
            (0, 82, VARIABLE_LENGTH),
            (9, 12_235, VARIABLE_LENGTH),
            (0, 210, 2),
            (0, 56, 6)
        ]
    ));
}

#[test]
fn options_template_with_scope() {
    insta::assert_snapshot!(listing(
        1,
        &[(0, 149, 4), (0, 305, 2), (0, 304, 2), (0, 160, 8)]
    ));
}
