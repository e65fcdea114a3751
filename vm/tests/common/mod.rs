//! Helpers shared by the vm integration tests: hex fixtures and whole-message decoding.

#![allow(
    dead_code,
    clippy::allow_attributes,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: each test binary uses a different subset, and failing loudly is the point"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use flowvm_vm::exec::Mode;
use flowvm_vm::wire::header::Message;
use flowvm_vm::wire::ids::TemplateId;
use flowvm_vm::wire::set::SetKind;
use flowvm_vm::wire::template::{TemplateRecord, TemplateRecords};
use flowvm_vm::{Columns, Compiler, DecodeError};

/// Reads a `testdata/ipfix/*.hex` file: hex octets, whitespace-separated or not, `#` comments.
pub(crate) fn hex(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/ipfix")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_hex(&text)
}

/// Parses hex text with `#` comments.
pub(crate) fn parse_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.bytes().filter(u8::is_ascii_hexdigit))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Decodes Messages in order, learning templates as they come, with `mode`; returns one batch
/// per Template ID that had data.
pub(crate) fn decode_with(
    messages: &[&[u8]],
    mode: Mode,
) -> Result<BTreeMap<TemplateId, RecordBatch>, DecodeError> {
    let compiler = Compiler::default();
    let mut columns: BTreeMap<TemplateId, Columns> = BTreeMap::new();
    for bytes in messages {
        let message = Message::decode(bytes)?;
        for set in message.sets() {
            let set = set?;
            match set.kind()? {
                SetKind::Template | SetKind::OptionsTemplate => {
                    for record in TemplateRecords::new(&set) {
                        if let TemplateRecord::Definition(def) = record? {
                            let program = compiler.compile(&def).expect("test templates compile");
                            columns.insert(def.template_id, Columns::new(Arc::new(program)));
                        }
                    }
                }
                SetKind::Data(id) => {
                    if let Some(cols) = columns.get_mut(&id) {
                        cols.run_with(&set, mode)?;
                    }
                }
            }
        }
    }
    Ok(columns
        .into_iter()
        .filter_map(|(id, mut c)| c.flush().unwrap().map(|b| (id, b)))
        .collect())
}

/// [`decode_with`] in [`Mode::Auto`].
pub(crate) fn decode(messages: &[&[u8]]) -> Result<BTreeMap<TemplateId, RecordBatch>, DecodeError> {
    decode_with(messages, Mode::Auto)
}
